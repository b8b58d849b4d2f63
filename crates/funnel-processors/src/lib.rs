//! Funnel's built-in processors, compatible with Conduit's builtin processors of the
//! same names (see `docs/processors.md` for every processor and its settings).
//!
//! The registry is plain functions, like the connectors': [`specs`] lists every
//! built-in with its settings (for `funnel processors ls` and the docs), [`build`]
//! validates settings and builds one processor by its plugin name. Building does no
//! I/O; a processor that needs any (compiling a script file, say) does it in
//! [`Processor::open`].
//!
//! Settings follow Conduit: values are strings, an unknown key is an error, and every
//! error is reported at once with the key it is about.

use funnel_core::{ProcessedRecord, Processor};
use funnel_record::Record;

pub use funnel_core::{SettingSpec, Settings, SettingsError};

mod builtin;
mod condition;
#[cfg(feature = "jq")]
mod jq;
#[cfg(feature = "js")]
mod js;
mod settings;

pub use condition::build_configured;

/// The description of one built-in processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorSpec {
    /// The plugin name (`field.set`, `filter`, ...).
    pub name: &'static str,
    /// One line about what it does.
    pub summary: &'static str,
    /// The settings it accepts.
    pub settings: &'static [SettingSpec],
}

/// Every built-in processor, sorted by name.
pub fn specs() -> Vec<ProcessorSpec> {
    use builtin::{base64, clone, error, field, filter, json, split, unwrap};
    let spec = |name, summary, settings| ProcessorSpec {
        name,
        summary,
        settings,
    };
    let mut specs: Vec<ProcessorSpec> = vec![
        spec(
            "base64.decode",
            base64::DECODE_SUMMARY,
            base64::DECODE_SETTINGS,
        ),
        spec(
            "base64.encode",
            base64::ENCODE_SUMMARY,
            base64::ENCODE_SETTINGS,
        ),
        spec("clone", clone::SUMMARY, clone::SETTINGS),
        spec("error", error::SUMMARY, error::SETTINGS),
        spec(
            "field.convert",
            field::CONVERT_SUMMARY,
            field::CONVERT_SETTINGS,
        ),
        spec(
            "field.exclude",
            field::EXCLUDE_SUMMARY,
            field::EXCLUDE_SETTINGS,
        ),
        spec(
            "field.rename",
            field::RENAME_SUMMARY,
            field::RENAME_SETTINGS,
        ),
        spec("field.set", field::SET_SUMMARY, field::SET_SETTINGS),
        spec("filter", filter::SUMMARY, filter::SETTINGS),
        spec("json.decode", json::DECODE_SUMMARY, json::DECODE_SETTINGS),
        spec("json.encode", json::ENCODE_SUMMARY, json::ENCODE_SETTINGS),
        spec("split", split::SUMMARY, split::SETTINGS),
        spec(
            "unwrap.debezium",
            unwrap::DEBEZIUM_SUMMARY,
            unwrap::SETTINGS,
        ),
        spec(
            "unwrap.kafkaconnect",
            unwrap::KAFKACONNECT_SUMMARY,
            unwrap::SETTINGS,
        ),
        spec("unwrap.opencdc", unwrap::OPENCDC_SUMMARY, unwrap::SETTINGS),
    ];
    #[cfg(feature = "webhook")]
    specs.push(spec(
        "webhook.http",
        builtin::webhook::SUMMARY,
        builtin::webhook::SETTINGS,
    ));
    #[cfg(feature = "js")]
    specs.push(spec("custom.javascript", js::SUMMARY, js::SETTINGS));
    #[cfg(feature = "jq")]
    specs.push(spec("jq", jq::SUMMARY, jq::SETTINGS));
    specs.sort_by_key(|s| s.name);
    specs
}

/// Builds processor `id` (its ID in the pipeline file, used in error messages) of the
/// built-in `plugin` from its settings. No I/O happens here, only validation.
///
/// # Errors
///
/// Every invalid setting; an unknown plugin is one error about the setting `plugin`.
pub fn build(
    plugin: &str,
    id: &str,
    settings: &Settings,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    use builtin::{base64, clone, error, field, filter, json, split, unwrap};
    match plugin {
        "base64.decode" => base64::build_decode(id, settings),
        "base64.encode" => base64::build_encode(id, settings),
        "clone" => clone::build(id, settings),
        "error" => error::build(id, settings),
        "field.convert" => field::build_convert(id, settings),
        "field.exclude" => field::build_exclude(id, settings),
        "field.rename" => field::build_rename(id, settings),
        "field.set" => field::build_set(id, settings),
        "filter" => filter::build(id, settings),
        "json.decode" => json::build_decode(id, settings),
        "json.encode" => json::build_encode(id, settings),
        "split" => split::build(id, settings),
        "unwrap.debezium" => unwrap::build_debezium(id, settings),
        "unwrap.kafkaconnect" => unwrap::build_kafkaconnect(id, settings),
        "unwrap.opencdc" => unwrap::build_opencdc(id, settings),
        #[cfg(feature = "webhook")]
        "webhook.http" => builtin::webhook::build(id, settings),
        #[cfg(feature = "js")]
        "custom.javascript" => js::build(id, settings),
        #[cfg(feature = "jq")]
        "jq" => jq::build(id, settings),
        _ => Err(vec![unknown_plugin(plugin)]),
    }
}

/// The error for a plugin name no built-in has.
fn unknown_plugin(plugin: &str) -> SettingsError {
    let names: Vec<&str> = specs().iter().map(|s| s.name).collect();
    SettingsError::new(
        "plugin",
        format!(
            "unknown builtin processor {plugin:?} (builtin processors: {})",
            names.join(", ")
        ),
    )
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
