//! Running records through a processor in a test and reading what came back: settings
//! from pairs, one record in and its result out, the record of a `Single` and the text
//! of an `Error`.

use funnel_core::{ProcessedRecord, Processor, Settings, SettingsError};
use funnel_record::{Record, StructuredData, Value};

/// Settings from `(key, value)` pairs.
pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Structured data from `(field, value)` pairs.
pub fn fields(pairs: &[(&str, Value)]) -> StructuredData {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The result `processor` gives for `record` alone.
///
/// # Panics
///
/// When the processor does not return exactly one result.
pub async fn process_one(processor: &mut Box<dyn Processor>, record: Record) -> ProcessedRecord {
    let mut results = processor.process(&[record]).await;
    assert_eq!(results.len(), 1, "one record in, one result out");
    results.remove(0)
}

/// The one record `processor` makes of `record`.
///
/// # Panics
///
/// When the result is not a single record.
pub async fn output(processor: &mut Box<dyn Processor>, record: Record) -> Record {
    single(&process_one(processor, record).await).clone()
}

/// The record of a `Single` result.
///
/// # Panics
///
/// When the result is anything else.
pub fn single(result: &ProcessedRecord) -> &Record {
    match result {
        ProcessedRecord::Single(record) => record,
        other => panic!("expected one record, got {other:?}"),
    }
}

/// The message of an `Error` result.
///
/// # Panics
///
/// When the result is anything else.
pub fn error_text(result: &ProcessedRecord) -> String {
    match result {
        ProcessedRecord::Error(error) => error.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The one error of `errors`; fails the test when there is not exactly one.
pub fn the_only_error(errors: &[SettingsError]) -> &SettingsError {
    assert_eq!(errors.len(), 1, "{errors:?}");
    &errors[0]
}
