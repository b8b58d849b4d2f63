//! Typed settings: a component declares one struct, and from it come both the settings
//! list it documents ([`SettingsStruct::SPEC`], printed by `funnel connectors ls` and
//! the docs) and the parsed values ([`SettingsStruct::read`]), so the two cannot
//! diverge.
//!
//! The [`settings!`](crate::settings) macro writes the struct and its
//! [`SettingsStruct`] implementation. Each field names its key as Conduit spells it
//! (dotted: `sdk.batch.size`), its default (a string, parsed like a value from the
//! pipeline file, so the documented default is the default used), and its doc comment,
//! which becomes the setting's description. Values arrive as strings; [`FromSetting`]
//! parses each field's type (integers, floats, Go booleans, Go durations, paths, or a
//! component's own enum). Every bad value is reported with its key, and
//! [`parse`] refuses every key no field declares (`"<key>": unrecognized parameter`, as
//! Conduit's SDK does).

use std::path::PathBuf;
use std::time::Duration;

use funnel_record::go;

use crate::spec::{SettingSpec, SettingType, Settings, SettingsError, SettingsReader};

/// A value one setting parses to, from its string form.
pub trait FromSetting: Sized {
    /// True for a type whose setting may be left out without a default (an
    /// [`Option`]); every other setting without a default is required.
    const OPTIONAL: bool = false;

    /// The kind of value the setting takes, as the parameter specs report it.
    const KIND: SettingType = SettingType::String;

    /// Parses `raw` (never empty: an empty value counts as unset).
    ///
    /// # Errors
    ///
    /// What is wrong with the value, for a person to read after the key.
    fn from_setting(raw: &str) -> Result<Self, String>;

    /// The value when the setting is unset and has no default; `None` makes it a
    /// required setting.
    fn missing() -> Option<Self> {
        None
    }

    /// Reads the setting `key` (with its `default`) from `reader`, recording any error.
    /// `None` when it is invalid or missing.
    fn read(reader: &mut SettingsReader<'_>, key: &str, default: Option<&str>) -> Option<Self> {
        let raw = match (reader.str(key), default) {
            (Some(raw), _) => raw,
            (None, Some(default)) => default,
            (None, None) => {
                let missing = Self::missing();
                if missing.is_none() {
                    reader.error(key, "required parameter is not provided");
                }
                return missing;
            }
        };
        match Self::from_setting(raw) {
            Ok(value) => Some(value),
            Err(message) => {
                reader.error(key, message);
                None
            }
        }
    }
}

impl<T: FromSetting> FromSetting for Option<T> {
    const OPTIONAL: bool = true;
    const KIND: SettingType = T::KIND;

    fn from_setting(raw: &str) -> Result<Self, String> {
        T::from_setting(raw).map(Some)
    }

    fn missing() -> Option<Self> {
        Some(None)
    }
}

impl FromSetting for String {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Ok(raw.to_owned())
    }
}

impl FromSetting for PathBuf {
    const KIND: SettingType = SettingType::File;

    fn from_setting(raw: &str) -> Result<Self, String> {
        Ok(PathBuf::from(raw))
    }
}

impl FromSetting for i64 {
    const KIND: SettingType = SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse()
            .map_err(|_| format!("{raw:?} value is not an integer"))
    }
}

impl FromSetting for usize {
    const KIND: SettingType = SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        let value = i64::from_setting(raw)?;
        usize::try_from(value).map_err(|_| format!("{value} should be greater or equal to 0"))
    }
}

impl FromSetting for bool {
    const KIND: SettingType = SettingType::Bool;

    fn from_setting(raw: &str) -> Result<Self, String> {
        go::parse_bool(raw).ok_or_else(|| format!("{raw:?} value is not a bool"))
    }
}

/// A finite float that is 0 or more (a rate).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct NonNegative(pub f64);

impl FromSetting for NonNegative {
    const KIND: SettingType = SettingType::Float;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Self(v)),
            Ok(_) => Err(format!("{raw:?} should be a number greater or equal to 0")),
            Err(_) => Err(format!("{raw:?} value is not a float")),
        }
    }
}

impl FromSetting for Duration {
    const KIND: SettingType = SettingType::Duration;

    /// A non-negative duration in Go's `time.ParseDuration` syntax (`250ms`, `1m30s`;
    /// a bare `0` is zero).
    fn from_setting(raw: &str) -> Result<Self, String> {
        parse_duration(raw)
    }
}

/// Parses a non-negative duration in Go's `time.ParseDuration` syntax: a sequence of
/// decimal numbers, each with an optional fraction and a unit (`ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h`), as in `300ms` or `1h2m3.5s`; a bare `0` is zero.
///
/// # Errors
///
/// A malformed or negative duration, worded for the person who wrote it.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    match go::parse_duration(raw) {
        Ok(nanos) => u64::try_from(nanos)
            .map(Duration::from_nanos)
            .map_err(|_| format!("{raw:?} should be greater or equal to 0")),
        Err(_) => Err(format!(
            "{raw:?} is not a duration (use Go syntax such as 250ms, 5s, 1m30s)"
        )),
    }
}

/// Every setting whose key starts with a prefix (a field declared as `prefix.*`), as
/// (rest of the key, value), in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefixed(pub Vec<(String, String)>);

impl FromSetting for Prefixed {
    const OPTIONAL: bool = true;

    fn from_setting(_raw: &str) -> Result<Self, String> {
        Err("a prefix setting has no value of its own".to_owned())
    }

    fn read(reader: &mut SettingsReader<'_>, key: &str, _default: Option<&str>) -> Option<Self> {
        let prefix = key.strip_suffix('*').unwrap_or(key);
        Some(Self(
            reader
                .prefixed(prefix)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ))
    }
}

/// A settings struct: its declared settings and how to read them.
pub trait SettingsStruct: Sized {
    /// Every setting the struct has, in field order.
    const SPEC: &'static [SettingSpec];

    /// Reads every field from `reader`, recording each bad value with its key. `None`
    /// when any field is invalid or a required one is missing.
    fn read(reader: &mut SettingsReader<'_>) -> Option<Self>;
}

/// Parses `settings` into `T`, refusing every key `T` does not declare.
///
/// # Errors
///
/// Every invalid setting, each with its key; unknown keys last.
pub fn parse<T: SettingsStruct>(settings: &Settings) -> Result<T, Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    let value = T::read(&mut reader);
    reader.finish()?;
    // `finish` fails whenever a field failed to read, so `value` is set here.
    value.ok_or_else(Vec::new)
}

/// A doc comment's lines as one description: `concat!` of `/// a` and `/// b` gives
/// `" a b"`; this drops the leading space.
#[doc(hidden)]
pub const fn description(doc: &'static str) -> &'static str {
    doc.trim_ascii()
}

/// Declares a settings struct and its [`SettingsStruct`] implementation, so that the
/// settings a component documents are exactly the ones it reads.
///
/// ```
/// use funnel_core::typed::{SettingsStruct, parse};
///
/// funnel_core::settings! {
///     /// The settings of an example.
///     pub struct Example {
///         /// The file to read.
///         pub path: std::path::PathBuf = "path",
///         /// Lines per read.
///         pub batch: usize = "sdk.batch.size" (default "1000"),
///     }
/// }
///
/// assert_eq!(Example::SPEC[0].name, "path");
/// assert!(Example::SPEC[0].required);
/// assert_eq!(Example::SPEC[1].description, "Lines per read.");
/// let settings = [("path".to_owned(), "/tmp/x".to_owned())].into_iter().collect();
/// let example: Example = parse(&settings).unwrap();
/// assert_eq!(example.batch, 1000);
/// ```
///
/// A field's type decides how its value parses ([`FromSetting`]); an [`Option`] field
/// without a default is optional, any other field without one is required. A key
/// ending in `*` reads every key under it into a [`Prefixed`] field.
#[macro_export]
macro_rules! settings {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $fvis:vis $field:ident : $ty:ty = $key:literal $((default $default:literal))?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                #[doc = concat!("\n\nSetting `", $key, "`", $(", default `", $default, "`",)? ".")]
                $fvis $field: $ty,
            )*
        }

        impl $crate::typed::SettingsStruct for $name {
            const SPEC: &'static [$crate::SettingSpec] = &[
                $(
                    $crate::SettingSpec {
                        name: $key,
                        default: $crate::settings!(@default $($default)?),
                        required: $crate::settings!(@default $($default)?).is_none()
                            && !<$ty as $crate::typed::FromSetting>::OPTIONAL,
                        description: $crate::typed::description(concat!($($doc),*)),
                        kind: <$ty as $crate::typed::FromSetting>::KIND,
                    },
                )*
            ];

            fn read(reader: &mut $crate::SettingsReader<'_>) -> Option<Self> {
                $(
                    let $field = <$ty as $crate::typed::FromSetting>::read(
                        reader,
                        $key,
                        $crate::settings!(@default $($default)?),
                    );
                )*
                Some(Self { $($field: $field?,)* })
            }
        }
    };
    (@default) => { None::<&str> };
    (@default $default:literal) => { Some($default) };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    crate::settings! {
        /// Every kind of field.
        struct All {
            /// A required path,
            /// on two lines.
            path: PathBuf = "path",
            /// A count.
            size: usize = "sdk.batch.size" (default "0"),
            /// A flag.
            on: bool = "flag.enabled" (default "false"),
            /// A wait.
            wait: Duration = "wait" (default "1s"),
            /// A rate.
            rate: NonNegative = "rate" (default "0"),
            /// A name.
            name: Option<String> = "name",
            /// Options.
            options: Prefixed = "format.options.*",
        }
    }

    use crate::settings_of as settings;

    #[test]
    fn the_spec_lists_every_field_with_its_key_default_and_doc() {
        let names: Vec<&str> = All::SPEC.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "path",
                "sdk.batch.size",
                "flag.enabled",
                "wait",
                "rate",
                "name",
                "format.options.*"
            ]
        );
        assert!(All::SPEC[0].required);
        assert_eq!(All::SPEC[0].description, "A required path, on two lines.");
        assert_eq!(All::SPEC[1].default, Some("0"));
        assert!(!All::SPEC[1].required);
        assert!(!All::SPEC[5].required);
        assert!(!All::SPEC[6].required);
    }

    #[test]
    fn declared_settings_are_parsed_from_strings_and_defaults() {
        let all: All = parse(&settings(&[
            ("path", "/tmp/a"),
            ("flag.enabled", "T"),
            ("wait", "1m30s"),
            ("rate", "2.5"),
            ("format.options.b", "int"),
            ("format.options.a", "string"),
        ]))
        .unwrap();
        assert_eq!(
            all,
            All {
                path: PathBuf::from("/tmp/a"),
                size: 0,
                on: true,
                wait: Duration::from_secs(90),
                rate: NonNegative(2.5),
                name: None,
                options: Prefixed(vec![
                    ("a".into(), "string".into()),
                    ("b".into(), "int".into())
                ]),
            }
        );
    }

    #[test]
    fn every_bad_value_missing_setting_and_unknown_key_is_reported_with_its_key() {
        let errors = parse::<All>(&settings(&[
            ("sdk.batch.size", "-2"),
            ("flag.enabled", "maybe"),
            ("wait", "5 minutes"),
            ("rate", "x"),
            ("zzz", "1"),
        ]))
        .unwrap_err();
        let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "path: required parameter is not provided",
                "sdk.batch.size: -2 should be greater or equal to 0",
                "flag.enabled: \"maybe\" value is not a bool",
                "wait: \"5 minutes\" is not a duration (use Go syntax such as 250ms, 5s, 1m30s)",
                "rate: \"x\" value is not a float",
                "zzz: unrecognized parameter",
            ]
        );
    }

    #[test]
    fn go_durations_parse_to_their_length() {
        let cases = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("1s", Duration::from_secs(1)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
            ("+2s", Duration::from_secs(2)),
            (".5s", Duration::from_millis(500)),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_duration(raw), Ok(want), "{raw}");
        }
    }

    #[test]
    fn malformed_or_negative_durations_are_refused() {
        for raw in [
            "", "1", "s", "1x", "1.s.", "-1s", "1s2", "abc", ".", " 1s", "1s ",
        ] {
            assert!(parse_duration(raw).is_err(), "{raw} should fail");
        }
    }
}
