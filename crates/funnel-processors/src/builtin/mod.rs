//! The built-in processors, one module per family, and what they share: the
//! per-record adapter and error helpers. The Go behaviour Conduit's messages and
//! conversions show (`%T` type names, `fmt.Sprint`, JSON decoding into `any`) comes
//! from [`funnel_record::go`].

use std::fmt::{self, Display};

use async_trait::async_trait;
use funnel_core::{ProcessedRecord, Processor, RecordError};
use funnel_record::{Data, Record, Value};

pub(crate) mod base64;
pub(crate) mod clone;
pub(crate) mod error;
pub(crate) mod field;
pub(crate) mod filter;
pub(crate) mod json;
pub(crate) mod split;
pub(crate) mod time;
pub(crate) mod unwrap;
#[cfg(feature = "webhook")]
pub(crate) mod webhook;

/// A processor that handles each record on its own, without I/O.
pub(crate) trait RecordProcessor: Send + 'static {
    /// The result for one record.
    fn process_record(&mut self, record: &Record) -> ProcessedRecord;

    /// The result for one record the processor may change in place, with the contract
    /// of [`Processor::process_in_place`]: `Unchanged` for a record changed in place,
    /// and a record failed or filtered left as it was. The default calls
    /// [`process_record`](Self::process_record).
    fn process_record_in_place(&mut self, record: &mut Record) -> ProcessedRecord {
        self.process_record(record)
    }
}

/// Runs a [`RecordProcessor`] on batches: one result per record, in order.
pub(crate) struct PerRecord<P>(pub(crate) P);

#[async_trait]
impl<P: RecordProcessor> Processor for PerRecord<P> {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        records
            .iter()
            .map(|record| self.0.process_record(record))
            .collect()
    }

    async fn process_in_place(&mut self, records: &mut [Record]) -> Vec<ProcessedRecord> {
        records
            .iter_mut()
            .map(|record| self.0.process_record_in_place(record))
            .collect()
    }
}

/// Boxes a per-record processor as a [`Processor`].
pub(crate) fn boxed<P: RecordProcessor>(processor: P) -> Box<dyn Processor> {
    Box::new(PerRecord(processor))
}

/// Runs `work`, a batch of `len` records of CPU work of unknown length (a script, a jq
/// program), so that it does not stall other tasks: on a multi-threaded runtime and
/// for more than one record, Tokio first moves this worker's other tasks elsewhere.
#[cfg(any(feature = "js", feature = "jq"))]
pub(crate) fn cpu_heavy<T>(len: usize, work: impl FnOnce() -> T) -> T {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded && len > 1 {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Who failed a record: the plugin and the processor's ID, put in front of error
/// messages so a nacked record says which processor refused it.
#[derive(Clone, Debug)]
pub(crate) struct Label {
    plugin: &'static str,
    id: String,
}

impl Label {
    pub(crate) fn new(plugin: &'static str, id: &str) -> Self {
        Self {
            plugin,
            id: id.to_owned(),
        }
    }

    /// The record failed with `message`.
    pub(crate) fn fail(&self, message: impl Display) -> ProcessedRecord {
        ProcessedRecord::Error(RecordError::msg(format!("{self}: {message}")))
    }
}

impl Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "processor {:?} ({})", self.id, self.plugin)
    }
}

/// The Go type name of a key or payload side.
pub(crate) fn go_data_type(data: &Data) -> &'static str {
    match data {
        Data::Raw(_) => "opencdc.RawData",
        Data::Structured(_) => "opencdc.StructuredData",
    }
}

/// Text of raw bytes for a Go `string(bytes)` conversion: the bytes as a string when
/// they are UTF-8, otherwise kept as [`Value::Bytes`].
pub(crate) fn bytes_value(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => Value::String(text.into()),
        Err(err) => Value::Bytes(err.into_bytes().into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_registered_processor_builds_and_accepts_the_schema_settings() {
        let schema: crate::Settings = crate::settings::SDK_SCHEMA_SETTINGS
            .iter()
            .map(|s| (s.name.to_owned(), "false".to_owned()))
            .collect();
        let specs = crate::components();
        assert!(specs.windows(2).all(|w| w[0].name < w[1].name));
        for spec in specs {
            for sdk in crate::settings::SDK_SCHEMA_SETTINGS {
                assert!(
                    spec.settings().any(|s| s == sdk),
                    "{} lacks {}",
                    spec.name,
                    sdk.name
                );
            }
            match crate::build(spec.name, "id", &schema) {
                Ok(_) => assert!(
                    spec.settings().all(|s| !s.required),
                    "{} built without its required settings",
                    spec.name
                ),
                Err(errors) => {
                    // Only the processor's own settings may be wrong (a required one
                    // missing, or one of a pair such as script / script.path).
                    for error in &errors {
                        let own = spec
                            .settings()
                            .any(|s| s.name == error.setting && !s.name.starts_with("sdk.schema."));
                        assert!(own, "{}: {error}", spec.name);
                    }
                }
            }
        }
    }

    #[test]
    fn an_unknown_plugin_is_an_error_on_the_plugin_setting() {
        let errors = crate::build("nope", "id", &crate::Settings::new())
            .err()
            .unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].setting, "plugin");
        assert!(errors[0].message.contains("field.set"));
    }
}
