//! What the processor integration tests share: settings from pairs, running one record
//! through a processor, and reading its result.

// Each test file uses its own part of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;

use funnel_core::{ProcessedRecord, Processor};
use funnel_processors::{Settings, SettingsError, build};
use funnel_record::{Record, Value};

/// Settings from `(key, value)` pairs.
pub(crate) fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The errors `build` refuses these settings of `plugin` with.
pub(crate) fn build_errors(plugin: &str, id: &str, pairs: &[(&str, &str)]) -> Vec<SettingsError> {
    match build(plugin, id, &settings(pairs)) {
        Ok(_) => panic!("settings {pairs:?} were accepted"),
        Err(errors) => errors,
    }
}

/// A structured map from `(key, value)` pairs.
pub(crate) fn map(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The result of `processor` for one record.
pub(crate) async fn process_one(
    processor: &mut Box<dyn Processor>,
    record: Record,
) -> ProcessedRecord {
    processor.process(&[record]).await.remove(0)
}

/// The one record `processor` makes of `record`.
pub(crate) async fn output(processor: &mut Box<dyn Processor>, record: Record) -> Record {
    single(process_one(processor, record).await)
}

/// The record of a `Single` result.
pub(crate) fn single(result: ProcessedRecord) -> Record {
    match result {
        ProcessedRecord::Single(record) => record,
        other => panic!("expected one record, got {other:?}"),
    }
}

/// The message of an `Error` result.
pub(crate) fn error_text(result: &ProcessedRecord) -> String {
    match result {
        ProcessedRecord::Error(error) => error.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}
