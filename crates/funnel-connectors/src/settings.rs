//! Reading settings: typed getters that collect every error, Go-syntax durations, the
//! SDK settings every connector accepts, and the check for unrecognized keys.

use std::time::Duration;

use funnel_record::go;

use crate::{SettingSpec, Settings, SettingsError};

/// The batch size a source uses when `sdk.batch.size` is 0 (unset).
pub(crate) const DEFAULT_SOURCE_BATCH_SIZE: usize = 1000;

/// Reads settings, remembering which keys were used and every error found.
///
/// Getters return `None` both for a missing setting and for an invalid one (the error
/// is recorded); [`finish`](Self::finish) adds an error for every key no getter asked
/// for and returns all errors.
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
    pub(crate) fn new(settings: &'a Settings) -> Self {
        Self(funnel_core::SettingsReader::new(settings))
    }

    /// An integer setting.
    pub(crate) fn int(&mut self, key: &str) -> Option<i64> {
        let raw = self.str(key)?;
        match raw.trim().parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(key, format!("{raw:?} value is not an integer"));
                None
            }
        }
    }

    /// A non-negative integer setting that fits a `usize`.
    pub(crate) fn count(&mut self, key: &str) -> Option<usize> {
        let value = self.int(key)?;
        match usize::try_from(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(key, format!("{value} should be greater or equal to 0"));
                None
            }
        }
    }

    /// A finite, non-negative float setting.
    pub(crate) fn non_negative_float(&mut self, key: &str) -> Option<f64> {
        let raw = self.str(key)?;
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
            Ok(_) => {
                self.error(
                    key,
                    format!("{raw:?} should be a number greater or equal to 0"),
                );
                None
            }
            Err(_) => {
                self.error(key, format!("{raw:?} value is not a float"));
                None
            }
        }
    }

    /// A boolean setting, in Go's `strconv.ParseBool` syntax.
    pub(crate) fn bool(&mut self, key: &str) -> Option<bool> {
        let raw = self.str(key)?;
        match go::parse_bool(raw) {
            Some(v) => Some(v),
            None => {
                self.error(key, format!("{raw:?} value is not a bool"));
                None
            }
        }
    }

    /// A non-negative duration setting in Go syntax (`250ms`, `1m30s`).
    pub(crate) fn duration(&mut self, key: &str) -> Option<Duration> {
        let raw = self.str(key)?;
        match parse_duration(raw) {
            Ok(d) => Some(d),
            Err(message) => {
                self.error(key, message);
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
                format!("{raw:?} value must be one of: {}", allowed.join(", ")),
            );
            None
        }
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

/// Parses a non-negative duration in Go's `time.ParseDuration` syntax: a sequence of
/// decimal numbers, each with an optional fraction and a unit (`ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h`), as in `300ms` or `1h2m3.5s`; a bare `0` is zero.
pub(crate) fn parse_duration(raw: &str) -> Result<Duration, String> {
    match go::parse_duration(raw) {
        Ok(nanos) => u64::try_from(nanos)
            .map(Duration::from_nanos)
            .map_err(|_| format!("{raw:?} should be greater or equal to 0")),
        Err(_) => Err(format!(
            "{raw:?} is not a duration (use Go syntax such as 250ms, 5s, 1m30s)"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// SDK settings
// ---------------------------------------------------------------------------------------

/// The SDK settings every source accepts.
pub const SDK_SOURCE_SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        name: "sdk.batch.size",
        default: Some("0"),
        required: false,
        description: "Maximum number of records one read returns; 0 means the connector's \
                      default (1000 for the built-in sources).",
    },
    SettingSpec {
        name: "sdk.batch.delay",
        default: Some("0"),
        required: false,
        description: "Maximum time to wait while collecting a batch (Go duration). \
                      Accepted for compatibility; the engine applies it.",
    },
    SettingSpec {
        name: "sdk.schema.extract.type",
        default: Some("avro"),
        required: false,
        description: "Schema type to extract. Accepted for compatibility; only `avro` is \
                      valid. Funnel does not extract schemas yet.",
    },
    SettingSpec {
        name: "sdk.schema.extract.payload.enabled",
        default: Some("true"),
        required: false,
        description: "Whether to extract the payload schema. Accepted for compatibility.",
    },
    SettingSpec {
        name: "sdk.schema.extract.payload.subject",
        default: Some("payload"),
        required: false,
        description: "Subject of the payload schema. Accepted for compatibility.",
    },
    SettingSpec {
        name: "sdk.schema.extract.key.enabled",
        default: Some("true"),
        required: false,
        description: "Whether to extract the key schema. Accepted for compatibility.",
    },
    SettingSpec {
        name: "sdk.schema.extract.key.subject",
        default: Some("key"),
        required: false,
        description: "Subject of the key schema. Accepted for compatibility.",
    },
    SettingSpec {
        name: "sdk.schema.context.enabled",
        default: Some("true"),
        required: false,
        description: "Whether schema subjects are prefixed with a context. Accepted for \
                      compatibility.",
    },
    SettingSpec {
        name: "sdk.schema.context.name",
        default: None,
        required: false,
        description: "The schema context name (defaults to the connector ID). Accepted for \
                      compatibility.",
    },
];

/// The SDK settings every destination accepts.
pub const SDK_DESTINATION_SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        name: "sdk.batch.size",
        default: Some("0"),
        required: false,
        description: "Maximum number of records in one write; 0 means the engine's default.",
    },
    SettingSpec {
        name: "sdk.batch.delay",
        default: Some("0"),
        required: false,
        description: "Maximum time to wait while collecting a batch (Go duration); the \
                      engine applies it.",
    },
    SettingSpec {
        name: "sdk.rate.perSecond",
        default: Some("0"),
        required: false,
        description: "Maximum records written per second (0 = no limit); the engine \
                      applies it.",
    },
    SettingSpec {
        name: "sdk.rate.burst",
        default: Some("0"),
        required: false,
        description: "Burst allowed by the rate limit; the engine applies it.",
    },
    SettingSpec {
        name: "sdk.record.format",
        default: Some("opencdc/json"),
        required: false,
        description: "Output format of records. Funnel supports `opencdc/json` only; \
                      `debezium/json` and `template` are refused.",
    },
    SettingSpec {
        name: "sdk.record.format.options",
        default: None,
        required: false,
        description: "Options of the record format. Accepted and ignored for \
                      `opencdc/json`.",
    },
    SettingSpec {
        name: "sdk.schema.extract.payload.enabled",
        default: Some("true"),
        required: false,
        description: "Whether to decode the payload with its schema. Accepted for \
                      compatibility.",
    },
    SettingSpec {
        name: "sdk.schema.extract.key.enabled",
        default: Some("true"),
        required: false,
        description: "Whether to decode the key with its schema. Accepted for \
                      compatibility.",
    },
];

/// The SDK settings of a source that change what a connector does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SdkSource {
    /// Maximum records per read (`sdk.batch.size`, or the default when 0).
    pub(crate) batch_size: usize,
}

/// Reads and checks the SDK settings of a source.
pub(crate) fn sdk_source(reader: &mut SettingsReader<'_>) -> SdkSource {
    let batch_size = match reader.count("sdk.batch.size") {
        Some(0) | None => DEFAULT_SOURCE_BATCH_SIZE,
        Some(n) => n,
    };
    reader.duration("sdk.batch.delay");
    reader.one_of("sdk.schema.extract.type", &["avro"]);
    reader.bool("sdk.schema.extract.payload.enabled");
    reader.str("sdk.schema.extract.payload.subject");
    reader.bool("sdk.schema.extract.key.enabled");
    reader.str("sdk.schema.extract.key.subject");
    reader.bool("sdk.schema.context.enabled");
    reader.str("sdk.schema.context.name");
    SdkSource { batch_size }
}

/// Reads and checks the SDK settings of a destination.
pub(crate) fn sdk_destination(reader: &mut SettingsReader<'_>) {
    reader.count("sdk.batch.size");
    reader.duration("sdk.batch.delay");
    reader.non_negative_float("sdk.rate.perSecond");
    reader.count("sdk.rate.burst");
    if let Some(format) = reader.str("sdk.record.format") {
        match format {
            "opencdc/json" => {}
            "debezium/json" | "template" => reader.error(
                "sdk.record.format",
                format!("{format:?} is not supported by Funnel yet; use \"opencdc/json\""),
            ),
            other => reader.error(
                "sdk.record.format",
                format!(
                    "{other:?} is not a record format \
                     (known: opencdc/json, debezium/json, template; Funnel supports opencdc/json)"
                ),
            ),
        }
    }
    reader.str("sdk.record.format.options");
    reader.bool("sdk.schema.extract.payload.enabled");
    reader.bool("sdk.schema.extract.key.enabled");
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

    #[test]
    fn the_reader_reports_every_bad_value_and_every_unknown_key() {
        let s = settings(&[
            ("a", "x"),
            ("b", "-2"),
            ("c", "maybe"),
            ("d", "5 minutes"),
            ("zzz", "1"),
        ]);
        let mut reader = SettingsReader::new(&s);
        assert_eq!(reader.int("a"), None);
        assert_eq!(reader.count("b"), None);
        assert_eq!(reader.bool("c"), None);
        assert_eq!(reader.duration("d"), None);
        let errors = reader.finish().unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "zzz"]);
        assert_eq!(errors[4].to_string(), "zzz: unrecognized parameter");
    }

    #[test]
    fn prefixed_settings_are_found_in_key_order_and_marked_used() {
        let s = settings(&[("format.options.b", "int"), ("format.options.a", "string")]);
        let mut reader = SettingsReader::new(&s);
        assert_eq!(
            reader.prefixed("format.options."),
            [("a", "string"), ("b", "int")]
        );
        assert!(reader.finish().is_ok());
    }
}
