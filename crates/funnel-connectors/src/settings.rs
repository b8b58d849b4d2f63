//! Reading settings: the SDK settings every connector accepts, and parsing a
//! connector's own settings struct together with them, refusing unrecognized keys.

use std::time::Duration;

use funnel_core::SettingsReader;
use funnel_core::typed::{FromSetting, NonNegative, SettingsStruct};

use crate::format::{RecordFormat, RecordFormatName};
use crate::{SettingSpec, Settings, SettingsError};

/// The batch size a source uses when `sdk.batch.size` is 0 (unset).
pub(crate) const DEFAULT_SOURCE_BATCH_SIZE: usize = 1000;

// ---------------------------------------------------------------------------------------
// SDK settings
// ---------------------------------------------------------------------------------------

/// `sdk.schema.extract.type`: the only schema type Conduit extracts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avro;

impl FromSetting for Avro {
    fn from_setting(raw: &str) -> Result<Self, String> {
        if raw == "avro" {
            Ok(Self)
        } else {
            Err(format!("{raw:?} value must be one of: avro"))
        }
    }
}

funnel_core::settings! {
    /// The SDK settings every source accepts.
    pub struct SdkSourceSettings {
        /// Maximum number of records one read returns; 0 means the connector's
        /// default (1000 for the built-in sources).
        pub batch_size: usize = "sdk.batch.size" (default "0"),
        /// Maximum time to wait while collecting a batch (Go duration).
        /// Accepted for compatibility; the engine applies it.
        pub batch_delay: Duration = "sdk.batch.delay" (default "0"),
        /// Schema type to extract. Accepted for compatibility; only `avro` is
        /// valid. Funnel does not extract schemas yet.
        pub schema_type: Avro = "sdk.schema.extract.type" (default "avro"),
        /// Whether to extract the payload schema. Accepted for compatibility.
        pub payload_schema: bool = "sdk.schema.extract.payload.enabled" (default "true"),
        /// Subject of the payload schema. Accepted for compatibility.
        pub payload_subject: String = "sdk.schema.extract.payload.subject" (default "payload"),
        /// Whether to extract the key schema. Accepted for compatibility.
        pub key_schema: bool = "sdk.schema.extract.key.enabled" (default "true"),
        /// Subject of the key schema. Accepted for compatibility.
        pub key_subject: String = "sdk.schema.extract.key.subject" (default "key"),
        /// Whether schema subjects are prefixed with a context. Accepted for
        /// compatibility.
        pub schema_context: bool = "sdk.schema.context.enabled" (default "true"),
        /// The schema context name (defaults to the connector ID). Accepted for
        /// compatibility.
        pub schema_context_name: Option<String> = "sdk.schema.context.name",
    }
}

impl SdkSourceSettings {
    /// Maximum records per read: `sdk.batch.size`, or the default when it is 0.
    pub fn batch_size(&self) -> usize {
        match self.batch_size {
            0 => DEFAULT_SOURCE_BATCH_SIZE,
            n => n,
        }
    }
}

funnel_core::settings! {
    /// The SDK settings every destination accepts.
    pub struct SdkDestinationSettings {
        /// Maximum number of records in one write; 0 means the engine's default.
        pub batch_size: usize = "sdk.batch.size" (default "0"),
        /// Maximum time to wait while collecting a batch (Go duration); the
        /// engine applies it.
        pub batch_delay: Duration = "sdk.batch.delay" (default "0"),
        /// Maximum records written per second (0 = no limit); the engine
        /// applies it.
        pub rate: NonNegative = "sdk.rate.perSecond" (default "0"),
        /// Burst allowed by the rate limit; the engine applies it.
        pub burst: usize = "sdk.rate.burst" (default "0"),
        /// Output format of records: `opencdc/json`, `debezium/json` or `template`.
        pub format: RecordFormatName = "sdk.record.format" (default "opencdc/json"),
        /// Options of the record format: for `template`, the Go template each record
        /// is written as (sprig functions, `missingkey=error`); for `debezium/json`,
        /// `debezium.schema.name=<name>,debezium.rawData.key=<key>`; ignored for
        /// `opencdc/json`.
        pub format_options: Option<String> = "sdk.record.format.options",
        /// Whether to decode the payload with its schema. Accepted for
        /// compatibility.
        pub payload_schema: bool = "sdk.schema.extract.payload.enabled" (default "true"),
        /// Whether to decode the key with its schema. Accepted for
        /// compatibility.
        pub key_schema: bool = "sdk.schema.extract.key.enabled" (default "true"),
    }
}

/// The SDK settings every source accepts.
pub const SDK_SOURCE_SETTINGS: &[SettingSpec] = SdkSourceSettings::SPEC;

/// The SDK settings every destination accepts.
pub const SDK_DESTINATION_SETTINGS: &[SettingSpec] = SdkDestinationSettings::SPEC;

/// The SDK settings of a source that change what a connector does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SdkSource {
    /// Maximum records per read (`sdk.batch.size`, or the default when 0).
    pub(crate) batch_size: usize,
}

/// Reads and checks the SDK settings of a source.
pub(crate) fn sdk_source(reader: &mut SettingsReader<'_>) -> SdkSource {
    let batch_size =
        SdkSourceSettings::read(reader).map_or(DEFAULT_SOURCE_BATCH_SIZE, |sdk| sdk.batch_size());
    SdkSource { batch_size }
}

/// Parses the settings of a source whose own settings are `T`: `T` and the SDK's,
/// refusing every other key.
///
/// # Errors
///
/// Every invalid setting, each with its key; unknown keys last.
pub(crate) fn parse_source<T: SettingsStruct>(
    settings: &Settings,
) -> Result<(T, SdkSource), Vec<SettingsError>> {
    parse_source_with(settings, T::read)
}

/// [`parse_source`] for a source whose own settings `read` reads (several structs, as
/// [`both`] does).
///
/// # Errors
///
/// Every invalid setting, each with its key; unknown keys last.
pub(crate) fn parse_source_with<T>(
    settings: &Settings,
    read: impl FnOnce(&mut SettingsReader<'_>) -> Option<T>,
) -> Result<(T, SdkSource), Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    let sdk = sdk_source(&mut reader);
    let own = read(&mut reader);
    reader.finish()?;
    // `finish` fails whenever a field failed to read, so `own` is set here.
    own.map(|own| (own, sdk)).ok_or_else(Vec::new)
}

/// Parses the settings of a destination whose own settings are `T`: `T` and the
/// SDK's, refusing every other key.
///
/// # Errors
///
/// Every invalid setting, each with its key; unknown keys last.
pub(crate) fn parse_destination<T: SettingsStruct>(
    settings: &Settings,
) -> Result<T, Vec<SettingsError>> {
    parse_destination_with(settings, T::read)
}

/// [`parse_destination`] for a destination whose own settings `read` reads (several
/// structs, as [`both`] does).
///
/// # Errors
///
/// Every invalid setting, each with its key; unknown keys last.
pub(crate) fn parse_destination_with<T>(
    settings: &Settings,
    read: impl FnOnce(&mut SettingsReader<'_>) -> Option<T>,
) -> Result<T, Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    sdk_destination(&mut reader);
    let own = read(&mut reader);
    reader.finish()?;
    // `finish` fails whenever a field failed to read, so `own` is set here.
    own.ok_or_else(Vec::new)
}

/// The end of a validation: `check` builds the config from parsed settings, pushing
/// every mistake it finds to the list it is given; any mistake makes the result the
/// whole list.
///
/// # Errors
///
/// Every mistake `check` pushed, in its order.
#[cfg_attr(
    not(any(
        feature = "http",
        feature = "kafka",
        feature = "mqtt",
        feature = "mysql",
        feature = "nats",
        feature = "rabbitmq",
        feature = "redis",
        feature = "s3"
    )),
    allow(dead_code)
)]
pub(crate) fn validated<T>(
    check: impl FnOnce(&mut Vec<SettingsError>) -> T,
) -> Result<T, Vec<SettingsError>> {
    let mut errors = Vec::new();
    let config = check(&mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Reads `A`, then `B` (a connection's settings and a connector's own, say): both,
/// so that the mistakes of each are recorded; `None` when either has one.
#[cfg_attr(
    not(any(
        feature = "kafka",
        feature = "mqtt",
        feature = "mysql",
        feature = "nats",
        feature = "postgres",
        feature = "rabbitmq",
        feature = "redis"
    )),
    allow(dead_code)
)]
pub(crate) fn both<A: SettingsStruct, B: SettingsStruct>(
    reader: &mut SettingsReader<'_>,
) -> Option<(A, B)> {
    let a = A::read(reader);
    let b = B::read(reader);
    a.zip(b)
}

/// The items of a comma list, trimmed, without the empty ones.
#[cfg_attr(
    not(any(
        feature = "kafka",
        feature = "mqtt",
        feature = "mysql",
        feature = "postgres"
    )),
    allow(dead_code)
)]
pub(crate) fn comma_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// The items of a comma list ([`comma_list`]), or `missing` when there are none.
///
/// # Errors
///
/// `missing`, when the list has no item.
#[cfg_attr(
    not(any(feature = "kafka", feature = "mqtt", feature = "postgres")),
    allow(dead_code)
)]
pub(crate) fn non_empty_list(raw: &str, missing: &str) -> Result<Vec<String>, String> {
    let items = comma_list(raw);
    if items.is_empty() {
        return Err(missing.to_owned());
    }
    Ok(items)
}

/// Reads and checks the SDK settings of a destination, the record format with them
/// (a template that does not parse is an error on `sdk.record.format.options`).
pub(crate) fn sdk_destination(reader: &mut SettingsReader<'_>) {
    let Some(sdk) = SdkDestinationSettings::read(reader) else {
        return;
    };
    if let Err(e) = RecordFormat::new(sdk.format, sdk.format_options.as_deref()) {
        reader.error(crate::format::OPTIONS, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

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
