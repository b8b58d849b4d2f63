//! Reading processor settings the way Conduit's processor SDK does: string values, an
//! empty value counts as unset, every error is collected with its key, and a key no
//! processor reads is refused.
//!
//! Messages follow Conduit's wording (`required parameter is not provided`, `"x" value
//! is not an integer`, `... should match the regex ...`), so an error Conduit users know
//! reads the same; a [`SettingsError`] renders as `<setting>: <message>`.

use funnel_core::component::{Build, BuildProcessor, Component};
use funnel_core::typed::{FromSetting, SettingsStruct};
use funnel_record::{FieldPath, PathError};

use crate::{SettingSpec, Settings, SettingsError};

const NO_SCHEMA_MIDDLEWARE: &str =
    "Accepted for Conduit compatibility; no effect (Funnel has no schema middleware yet).";

/// One schema setting of the processor SDK.
const fn sdk_schema(name: &'static str) -> SettingSpec {
    SettingSpec {
        name,
        default: Some("true"),
        required: false,
        description: NO_SCHEMA_MIDDLEWARE,
        kind: funnel_core::SettingType::Bool,
    }
}

/// The schema settings every Conduit processor accepts (its schema middleware:
/// decode key and payload before processing, encode them after). Funnel has no schema
/// middleware yet: they are accepted, must be booleans, and have no effect.
pub(crate) const SDK_SCHEMA_SETTINGS: &[SettingSpec] = &[
    sdk_schema("sdk.schema.decode.key.enabled"),
    sdk_schema("sdk.schema.decode.payload.enabled"),
    sdk_schema("sdk.schema.encode.key.enabled"),
    sdk_schema("sdk.schema.encode.payload.enabled"),
];

/// The registry entry of processor `name`, whose own settings are `S` (the SDK schema
/// settings come on top).
pub(crate) const fn processor<S: SettingsStruct>(
    name: &'static str,
    summary: &'static str,
    build: BuildProcessor,
) -> Component {
    Component::new(
        name,
        summary,
        &const { [S::SPEC, SDK_SCHEMA_SETTINGS] },
        Build::Processor(build),
    )
}

/// Reads settings, remembering which keys were used and every error found; the SDK
/// schema settings are read (and checked) when it is made.
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
            // Conduit's wording: `"x" value is not a bool: invalid parameter type`.
            if let Some(raw) = reader.str(spec.name)
                && funnel_template::parse_bool(raw).is_none()
            {
                reader.error(spec.name, invalid_type(raw, "a bool"));
            }
        }
        reader
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
    parse_checked(settings, |own: T, _| Some(own))
}

/// [`parse`], then `check` on the parsed settings as a whole (settings that depend on
/// each other), which records what is wrong on the reader and returns `None` when
/// anything is. Its errors come with those of single settings, unknown keys last.
///
/// # Errors
///
/// Every invalid setting, each with its key; unknown keys last.
pub(crate) fn parse_checked<T: SettingsStruct, U>(
    settings: &Settings,
    check: impl FnOnce(T, &mut SettingsReader<'_>) -> Option<U>,
) -> Result<U, Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    let checked = T::read(&mut reader).and_then(|own| check(own, &mut reader));
    reader.finish()?;
    // Whatever left `checked` unset recorded an error, so `finish` has already failed;
    // this is the guard should one forget to.
    checked.ok_or_else(|| vec![SettingsError::new("plugin", "invalid settings")])
}

/// Conduit's message for a value of the wrong type: `"x" value is not a float: invalid
/// parameter type`.
pub(crate) fn invalid_type(raw: &str, what: &str) -> String {
    format!("{raw:?} value is not {what}: invalid parameter type")
}

/// A float setting (Go `float64`), with Conduit's wording.
#[cfg(feature = "webhook")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GoFloat(pub(crate) f64);

#[cfg(feature = "webhook")]
impl FromSetting for GoFloat {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Float;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.parse::<f64>() {
            Ok(v) if !v.is_nan() => Ok(Self(v)),
            _ => Err(invalid_type(raw, "a float")),
        }
    }
}

/// A non-negative duration setting in Go's `time.ParseDuration` syntax (`250ms`,
/// `1m30s`), with Conduit's wording.
#[cfg(feature = "webhook")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GoDuration(pub(crate) std::time::Duration);

#[cfg(feature = "webhook")]
impl FromSetting for GoDuration {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Duration;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match funnel_record::go::parse_duration(raw).map(u64::try_from) {
            Ok(Ok(nanos)) => Ok(Self(std::time::Duration::from_nanos(nanos))),
            _ => Err(invalid_type(raw, "a duration")),
        }
    }
}

/// Declares `$name`, a Go template setting parsed when the processor is built (two are
/// equal when their texts are); a template that does not parse is refused with
/// `$message` and the parse error.
macro_rules! template_setting {
    ($(#[$meta:meta])* $name:ident, $message:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub(crate) struct $name(pub(crate) funnel_template::Template);

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.source() == other.0.source()
            }
        }

        impl funnel_core::typed::FromSetting for $name {
            fn from_setting(raw: &str) -> Result<Self, String> {
                funnel_template::Template::parse(raw)
                    .map(Self)
                    .map_err(|err| format!(concat!($message, ": {}"), err))
            }
        }
    };
}
pub(crate) use template_setting;

/// `raw` as a field reference that `rule` allows.
fn field_path(raw: &str, rule: FieldRule) -> Result<FieldPath, String> {
    if let Some(message) = rule.check(raw) {
        return Err(message);
    }
    FieldPath::parse(raw).map_err(|err| path_error(&err))
}

/// Declares field reference settings, each a newtype of [`FieldPath`] that parses
/// only a reference its [`FieldRule`] allows.
macro_rules! field_settings {
    ($($(#[$meta:meta])* $name:ident => $rule:expr;)*) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub(crate) struct $name(pub(crate) FieldPath);

        $(#[$meta])*
        impl FromSetting for $name {
            fn from_setting(raw: &str) -> Result<Self, String> {
                field_path(raw, $rule).map(Self)
            }
        }
    )*};
}

field_settings! {
    /// A field reference that may point anywhere but `.Position` (Conduit's
    /// `exclusion=.Position`).
    NotPositionField => FieldRule::NotPosition;
    /// A field reference under `.Key` or `.Payload` (Conduit's `regex=^\.(Payload|Key).*`).
    KeyOrPayloadField => FieldRule::KeyOrPayload;
    /// A field reference under `.Payload` (Conduit's `regex=^.Payload`).
    PayloadField => FieldRule::Payload;
    /// A field reference under `.Key` or `.Payload`, not `.Payload` itself (json.decode /
    /// json.encode, jq).
    PayloadSideField => FieldRule::KeyOrPayloadSide;
    /// A field reference that may point anywhere (`webhook.http`'s response fields).
    #[cfg(feature = "webhook")]
    AnyField => FieldRule::Any;
}

/// Where a field reference setting may point, as Conduit validates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldRule {
    /// Anything.
    #[cfg(feature = "webhook")]
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
            #[cfg(feature = "webhook")]
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
