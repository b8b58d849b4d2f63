//! Funnel's built-in processors, compatible with Conduit's builtin processors of the
//! same names (see `docs/processors.md` for every processor and its settings).
//!
//! [`components`] is the processors' part of the registry table: one [`Component`]
//! per processor with its name, summary, settings and build function; nothing else
//! lists processor names. [`build`] looks one up and builds it. Building does no
//! I/O; a processor that needs any (compiling a script file, say) does it in
//! [`Processor::open`].
//!
//! Settings follow Conduit: values are strings, an unknown key is an error, and every
//! error is reported at once with the key it is about.

use funnel_core::component::{Build, Component};
use funnel_core::typed::SettingsStruct;
use funnel_core::{ProcessedRecord, Processor, Registry};
use funnel_record::Record;

pub use funnel_core::{SettingSpec, Settings, SettingsError};

mod builtin;
mod condition;
#[cfg(feature = "jq")]
mod jq;
#[cfg(feature = "js")]
mod js;
mod settings;

pub use condition::{build_configured, with_condition};

/// Every built-in processor: the processors' part of the registry table, one entry per
/// processor, sorted by name, each declared once (name, summary, settings, build).
pub fn components() -> Vec<Component> {
    use builtin::{base64, clone, error, field, filter, json, split, unwrap};
    let entry = |name, summary, settings, build| {
        Component::new(name, summary, settings, Build::Processor(build))
    };
    let mut all = vec![
        entry(
            "base64.decode",
            base64::DECODE_SUMMARY,
            &[base64::DecodeSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            base64::build_decode,
        ),
        entry(
            "base64.encode",
            base64::ENCODE_SUMMARY,
            &[base64::EncodeSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            base64::build_encode,
        ),
        entry(
            "clone",
            clone::SUMMARY,
            &[clone::CloneSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            clone::build,
        ),
        entry(
            "error",
            error::SUMMARY,
            &[error::ErrorSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            error::build,
        ),
        entry(
            "field.convert",
            field::CONVERT_SUMMARY,
            &[field::CONVERT_SETTINGS],
            field::build_convert,
        ),
        entry(
            "field.exclude",
            field::EXCLUDE_SUMMARY,
            &[field::EXCLUDE_SETTINGS],
            field::build_exclude,
        ),
        entry(
            "field.rename",
            field::RENAME_SUMMARY,
            &[field::RENAME_SETTINGS],
            field::build_rename,
        ),
        entry(
            "field.set",
            field::SET_SUMMARY,
            &[field::SET_SETTINGS],
            field::build_set,
        ),
        entry(
            "filter",
            filter::SUMMARY,
            &[filter::SETTINGS],
            filter::build,
        ),
        entry(
            "json.decode",
            json::DECODE_SUMMARY,
            &[json::JsonSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            json::build_decode,
        ),
        entry(
            "json.encode",
            json::ENCODE_SUMMARY,
            &[json::JsonSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            json::build_encode,
        ),
        entry(
            "split",
            split::SUMMARY,
            &[split::SplitSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            split::build,
        ),
        entry(
            "unwrap.debezium",
            unwrap::DEBEZIUM_SUMMARY,
            &[unwrap::UnwrapSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            unwrap::build_debezium,
        ),
        entry(
            "unwrap.kafkaconnect",
            unwrap::KAFKACONNECT_SUMMARY,
            &[unwrap::UnwrapSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            unwrap::build_kafkaconnect,
        ),
        entry(
            "unwrap.opencdc",
            unwrap::OPENCDC_SUMMARY,
            &[unwrap::UnwrapSettings::SPEC, settings::SDK_SCHEMA_SETTINGS],
            unwrap::build_opencdc,
        ),
        #[cfg(feature = "webhook")]
        entry(
            "webhook.http",
            builtin::webhook::SUMMARY,
            &[builtin::webhook::SETTINGS],
            builtin::webhook::build,
        ),
        #[cfg(feature = "js")]
        entry("custom.javascript", js::SUMMARY, &[js::SETTINGS], js::build),
        #[cfg(feature = "jq")]
        entry("jq", jq::SUMMARY, &[jq::SETTINGS], jq::build),
    ];
    all.sort_by_key(|c| c.name);
    all
}

/// Builds processor `id` (its ID in the pipeline file, used in error messages) of the
/// built-in `plugin` of [`components`] from its settings. No I/O happens here, only
/// validation.
///
/// # Errors
///
/// Every invalid setting; an unknown plugin is one error about the setting `plugin`.
pub fn build(
    plugin: &str,
    id: &str,
    settings: &Settings,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    Registry::new(components()).processor(plugin, id, settings)
}

/// [`Processor::process`] for a processor whose real work is in
/// [`Processor::process_in_place`]: runs it on copies, and answers with the copies what
/// it left in place, so `Unchanged` keeps meaning "the input as it was".
pub(crate) async fn process_copy<P: Processor + ?Sized>(
    processor: &mut P,
    records: &[Record],
) -> Vec<ProcessedRecord> {
    let mut copies = records.to_vec();
    let results = processor.process_in_place(&mut copies).await;
    results
        .into_iter()
        .zip(copies)
        .map(|(result, copy)| match result {
            ProcessedRecord::Unchanged => ProcessedRecord::Single(copy),
            other => other,
        })
        .collect()
}
