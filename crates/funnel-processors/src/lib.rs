//! Funnel's built-in processors, compatible with Conduit's builtin processors of the
//! same names (see `docs/processors.md` for every processor and its settings).
//!
//! [`components`] is the processors' part of the registry table: one [`Component`]
//! per processor, declared in its module with its name, summary, settings (a struct
//! declared with `funnel_core::settings!`, plus the SDK schema settings) and build
//! function; nothing else lists processor names. [`build`] looks one up and builds it. Building does no
//! I/O; a processor that needs any (compiling a script file, say) does it in
//! [`Processor::open`].
//!
//! Settings follow Conduit: values are strings, an unknown key is an error, and every
//! error is reported at once with the key it is about.

use funnel_core::{Component, ProcessedRecord, Processor, Registry};
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

/// What building a processor gives: the processor, or every invalid setting.
pub(crate) type Built = funnel_core::component::Built<Box<dyn Processor>>;

/// Every built-in processor: the processors' part of the registry table, one entry per
/// processor, sorted by name, each declared next to its code (name, summary, settings,
/// build).
pub fn components() -> Vec<Component> {
    use builtin::{base64, clone, error, field, filter, json, split, unwrap};
    let mut all = vec![
        base64::DECODE,
        base64::ENCODE,
        clone::COMPONENT,
        error::COMPONENT,
        field::CONVERT,
        field::EXCLUDE,
        field::RENAME,
        field::SET,
        filter::COMPONENT,
        json::DECODE,
        json::ENCODE,
        split::COMPONENT,
        unwrap::DEBEZIUM,
        unwrap::KAFKACONNECT,
        unwrap::OPENCDC,
        #[cfg(feature = "webhook")]
        builtin::webhook::COMPONENT,
        #[cfg(feature = "js")]
        js::COMPONENT,
        #[cfg(feature = "jq")]
        jq::COMPONENT,
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
