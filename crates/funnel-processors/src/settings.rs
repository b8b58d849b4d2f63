//! Reading processor settings the way Conduit's processor SDK does: string values, an
//! empty value counts as unset, every error is collected with its key, and a key no
//! processor reads is refused.
//!
//! Messages follow Conduit's wording (`required parameter is not provided`, `"x" value
//! is not an integer`, `... should match the regex ...`), so an error Conduit users know
//! reads the same; a [`SettingsError`] renders as `<setting>: <message>`.

use std::time::Duration;

use funnel_core::typed::{FromSetting, SettingsStruct};
use funnel_record::{FieldPath, PathError};

use crate::{SettingSpec, Settings, SettingsError};

/// Declares a processor's settings followed by the schema settings every Conduit
/// processor accepts ([`SDK_SCHEMA_SETTINGS`]).
macro_rules! settings_with_sdk {
    ($($spec:expr),* $(,)?) => {
        &[
            $($spec,)*
            $crate::settings::SDK_DECODE_KEY,
            $crate::settings::SDK_DECODE_PAYLOAD,
            $crate::settings::SDK_ENCODE_KEY,
            $crate::settings::SDK_ENCODE_PAYLOAD,
        ]
    };
}
pub(crate) use settings_with_sdk;

const NO_SCHEMA_MIDDLEWARE: &str =
    "Accepted for Conduit compatibility; no effect (Funnel has no schema middleware yet).";

/// `sdk.schema.decode.key.enabled`.
pub(crate) const SDK_DECODE_KEY: SettingSpec = SettingSpec {
    name: "sdk.schema.decode.key.enabled",
    default: Some("true"),
    required: false,
    description: NO_SCHEMA_MIDDLEWARE,
};
/// `sdk.schema.decode.payload.enabled`.
pub(crate) const SDK_DECODE_PAYLOAD: SettingSpec = SettingSpec {
    name: "sdk.schema.decode.payload.enabled",
    default: Some("true"),
    required: false,
    description: NO_SCHEMA_MIDDLEWARE,
};
/// `sdk.schema.encode.key.enabled`.
pub(crate) const SDK_ENCODE_KEY: SettingSpec = SettingSpec {
    name: "sdk.schema.encode.key.enabled",
    default: Some("true"),
    required: false,
    description: NO_SCHEMA_MIDDLEWARE,
};
/// `sdk.schema.encode.payload.enabled`.
pub(crate) const SDK_ENCODE_PAYLOAD: SettingSpec = SettingSpec {
    name: "sdk.schema.encode.payload.enabled",
    default: Some("true"),
    required: false,
    description: NO_SCHEMA_MIDDLEWARE,
};

/// The schema settings every Conduit processor accepts (its schema middleware:
/// decode key and payload before processing, encode them after). Funnel has no schema
/// middleware yet: they are accepted, must be booleans, and have no effect.
pub(crate) const SDK_SCHEMA_SETTINGS: &[SettingSpec] = &[
    SDK_DECODE_KEY,
    SDK_DECODE_PAYLOAD,
    SDK_ENCODE_KEY,
    SDK_ENCODE_PAYLOAD,
];

/// Reads settings, remembering which keys were used and every error found.
///
/// Getters return `None` both for a missing and for an invalid setting (the error is
/// recorded); [`finish`](Self::finish) refuses every key no getter asked for.
pub(crate) struct SettingsReader<'a>(funnel_core::SettingsReader<'a>);

impl<'a> std::ops::Deref for SettingsReader<'a> {
    type Target = funnel_core::SettingsReader<'a>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for SettingsReader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> SettingsReader<'a> {
    /// A reader of `settings`; the SDK schema settings are read (and checked) at once.
    pub(crate) fn new(settings: &'a Settings) -> Self {
        let mut reader = Self(funnel_core::SettingsReader::new(settings));
        for spec in SDK_SCHEMA_SETTINGS {
            reader.bool(spec.name);
        }
        reader
    }

    /// A float setting (Go `float64`).
    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn float(&mut self, key: &str) -> Option<f64> {
        let raw = self.str(key)?;
        match raw.parse::<f64>() {
            Ok(v) if !v.is_nan() => Some(v),
            _ => {
                self.error(
                    key,
                    format!("{raw:?} value is not a float: invalid parameter type"),
                );
                None
            }
        }
    }

    /// A boolean setting, in Go's `strconv.ParseBool` syntax.
    pub(crate) fn bool(&mut self, key: &str) -> Option<bool> {
        let raw = self.str(key)?;
        match funnel_template::parse_bool(raw) {
            Some(v) => Some(v),
            None => {
                self.error(
                    key,
                    format!("{raw:?} value is not a bool: invalid parameter type"),
                );
                None
            }
        }
    }

    /// A non-negative duration setting in Go's `time.ParseDuration` syntax (`250ms`,
    /// `1m30s`).
    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn duration(&mut self, key: &str) -> Option<Duration> {
        let raw = self.str(key)?;
        match funnel_record::go::parse_duration(raw).map(u64::try_from) {
            Ok(Ok(nanos)) => Some(Duration::from_nanos(nanos)),
            _ => {
                self.error(
                    key,
                    format!("{raw:?} value is not a duration: invalid parameter type"),
                );
                None
            }
        }
    }

    /// A setting that must be one of `allowed`.
    pub(crate) fn one_of(&mut self, key: &str, allowed: &[&str]) -> Option<&'a str> {
        let raw = self.str(key)?;
        if allowed.contains(&raw) {
            Some(raw)
        } else {
            self.error(
                key,
                format!(
                    "{raw:?} value must be included in the list [{}]: inclusion validation failed",
                    allowed.join(",")
                ),
            );
            None
        }
    }

    /// A field reference setting. `rule` restricts where it may point (Conduit's regex
    /// and exclusion validations); the reference itself must parse.
    pub(crate) fn field(&mut self, key: &str, value: &str, rule: FieldRule) -> Option<FieldPath> {
        if let Some(message) = rule.check(value) {
            self.error(key, message);
            return None;
        }
        match FieldPath::parse(value) {
            Ok(path) => Some(path),
            Err(err) => {
                self.error(key, path_error(&err));
                None
            }
        }
    }

    /// Ends reading like [`finish`](Self::finish) and returns `value`, the processor
    /// built from the settings read (`None` only when an error was recorded).
    ///
    /// # Errors
    ///
    /// Every error recorded, unknown keys last.
    pub(crate) fn finish_with<T>(self, value: Option<T>) -> Result<T, Vec<SettingsError>> {
        self.finish()?;
        // Getters record an error whenever they return `None` for a needed value, so
        // `finish` has already failed; this is the guard should one forget to.
        value.ok_or_else(|| vec![SettingsError::new("plugin", "invalid settings")])
    }

    /// Ends reading: every key nobody asked for is an unrecognized parameter.
    ///
    /// # Errors
    ///
    /// Every error recorded, unknown keys last.
    pub(crate) fn finish(self) -> Result<(), Vec<SettingsError>> {
        self.0.finish()
    }
}

/// Parses the settings of a processor whose own settings are `T`: `T` and the SDK
/// schema settings, refusing every other key.
///
/// # Errors
///
/// Every invalid setting, each with its key; unknown keys last.
pub(crate) fn parse<T: SettingsStruct>(settings: &Settings) -> Result<T, Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    let own = T::read(&mut reader);
    reader.finish_with(own)
}

/// `raw` as a field reference that `rule` allows.
fn field_path(raw: &str, rule: FieldRule) -> Result<FieldPath, String> {
    if let Some(message) = rule.check(raw) {
        return Err(message);
    }
    FieldPath::parse(raw).map_err(|err| path_error(&err))
}

/// A field reference that may point anywhere but `.Position` (Conduit's
/// `exclusion=.Position`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NotPositionField(pub(crate) FieldPath);

impl FromSetting for NotPositionField {
    fn from_setting(raw: &str) -> Result<Self, String> {
        field_path(raw, FieldRule::NotPosition).map(Self)
    }
}

/// A field reference under `.Key` or `.Payload` (Conduit's `regex=^\.(Payload|Key).*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyOrPayloadField(pub(crate) FieldPath);

impl FromSetting for KeyOrPayloadField {
    fn from_setting(raw: &str) -> Result<Self, String> {
        field_path(raw, FieldRule::KeyOrPayload).map(Self)
    }
}

/// A field reference under `.Payload` (Conduit's `regex=^.Payload`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PayloadField(pub(crate) FieldPath);

impl FromSetting for PayloadField {
    fn from_setting(raw: &str) -> Result<Self, String> {
        field_path(raw, FieldRule::Payload).map(Self)
    }
}

/// A field reference under `.Key` or `.Payload`, not `.Payload` itself (json.decode /
/// json.encode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PayloadSideField(pub(crate) FieldPath);

impl FromSetting for PayloadSideField {
    fn from_setting(raw: &str) -> Result<Self, String> {
        field_path(raw, FieldRule::KeyOrPayloadSide).map(Self)
    }
}

/// Where a field reference setting may point, as Conduit validates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldRule {
    /// Anything.
    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    Any,
    /// Anything but `.Position` (`exclusion=.Position`).
    NotPosition,
    /// Under `.Key` or `.Payload` (`regex=^\.(Payload|Key).*`).
    KeyOrPayload,
    /// Under `.Key` or `.Payload`, not `.Payload` itself (json.decode / json.encode).
    KeyOrPayloadSide,
    /// Under `.Payload` (`regex=^.Payload`, the unwrap processors).
    Payload,
}

impl FieldRule {
    /// The error for `value`, or `None` when it is allowed.
    fn check(self, value: &str) -> Option<String> {
        let regex =
            |re: &str| format!("{value:?} should match the regex {re:?}: regex validation failed");
        let excluded = |list: &str| {
            format!(
                "{value:?} value must be excluded from the list [{list}]: exclusion validation failed"
            )
        };
        let key_or_payload = value.starts_with(".Payload") || value.starts_with(".Key");
        match self {
            Self::Any => None,
            Self::NotPosition => (value == ".Position").then(|| excluded(".Position")),
            Self::KeyOrPayload => (!key_or_payload).then(|| regex(r"^\.(Payload|Key).*")),
            Self::KeyOrPayloadSide => {
                if !key_or_payload {
                    Some(regex(r"^\.(Payload|Key).*"))
                } else if value == ".Payload" {
                    Some(excluded(".Payload"))
                } else {
                    None
                }
            }
            Self::Payload => {
                // `.` in the regex matches any one character.
                let mut chars = value.chars();
                let ok = chars.next().is_some() && chars.as_str().starts_with("Payload");
                (!ok).then(|| regex("^.Payload"))
            }
        }
    }
}

/// A field reference error in Conduit's words (`invalid reference ".X": ...`).
pub(crate) fn path_error(err: &PathError) -> String {
    match err {
        PathError::Invalid { path, reason } => format!("invalid reference {path:?}: {reason}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unknown_keys_are_refused_and_schema_settings_accepted() {
        let s = settings(&[("sdk.schema.decode.key.enabled", "false"), ("nope", "x")]);
        let errors = SettingsReader::new(&s).finish().unwrap_err();
        assert_eq!(
            errors,
            vec![SettingsError::new("nope", "unrecognized parameter")]
        );
    }

    #[test]
    fn schema_settings_must_be_booleans() {
        let s = settings(&[("sdk.schema.encode.payload.enabled", "maybe")]);
        let errors = SettingsReader::new(&s).finish().unwrap_err();
        assert_eq!(errors[0].setting, "sdk.schema.encode.payload.enabled");
        assert!(errors[0].message.contains("is not a bool"));
    }

    #[test]
    fn field_rules_follow_conduit_validations() {
        assert!(FieldRule::Payload.check(".Payload.After").is_none());
        assert!(FieldRule::Payload.check(".Key").is_some());
        assert!(FieldRule::KeyOrPayload.check(".Metadata.foo").is_some());
        assert_eq!(
            FieldRule::KeyOrPayloadSide.check(".Payload").as_deref(),
            Some(
                "\".Payload\" value must be excluded from the list [.Payload]: exclusion validation failed"
            )
        );
        assert!(FieldRule::NotPosition.check(".Position").is_some());
    }
}
