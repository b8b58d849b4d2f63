//! The dead-letter queue: where nacked records go, with a nack window.
//!
//! The window remembers the outcomes (ack or nack) of the last `window_size` source
//! records and tolerates at most `window_nack_threshold` nacks among them:
//!
//! - window size 0: no limit; every nacked record goes to the DLQ;
//! - threshold 0 (size > 0; Conduit's default is size 1, threshold 0): the first nack
//!   stops the pipeline with the record's own error, and nothing is written to the DLQ;
//! - threshold T > 0: the (T+1)-th nack within the window is a fatal error.
//!
//! A nacked record is acked to its source only after its envelope is durably in the
//! DLQ.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use funnel_record::{Data, Metadata, Operation, Payload, Record, Value, metadata};
use metrics::{Counter, Histogram, counter, histogram};

use crate::error::{Error, RecordError, Result};
use crate::plugin::Destination;
use crate::task::{DestinationTask, check_acks};
use crate::telemetry::{
    Binding, CONDUIT_DLQ_BYTES, CONDUIT_DLQ_EXECUTION_DURATION, DLQ_BYTES, DLQ_EXECUTION_DURATION,
    RECORDS_DLQ,
};

/// A nacked record on its way to the DLQ.
#[derive(Clone, Debug, PartialEq)]
pub struct NackedRecord {
    /// The record (for a split record, the record before it was split).
    pub record: Record,
    /// Why it was nacked.
    pub error: RecordError,
    /// ID of the task that nacked it (processor or destination).
    pub task: Arc<str>,
}

/// Names a record for a person: its position, and for a record read from a file (with
/// the file source's `file.path` metadata and its line number as key) the file and
/// line: `position "f1:…" (file /data/in.txt, line 3)`.
pub fn describe_record(record: &Record) -> String {
    let position = String::from_utf8_lossy(record.position.as_bytes());
    let mut text = format!("position {position:?}");
    if let Some(path) = record.metadata.get("file.path") {
        text.push_str(&format!(" (file {path}"));
        if let Some(funnel_record::Data::Raw(key)) = &record.key
            && !key.is_empty()
            && key.iter().all(u8::is_ascii_digit)
        {
            text.push_str(&format!(", line {}", String::from_utf8_lossy(key)));
        }
        text.push(')');
    }
    text
}

/// The ring of the most recent outcomes.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    slots: Vec<bool>,
    cursor: usize,
    nacks: usize,
    threshold: usize,
}

impl Window {
    pub(crate) fn new(size: usize, threshold: usize) -> Self {
        let size = if size > 0 && threshold == 0 { 1 } else { size };
        Self {
            slots: vec![false; size],
            cursor: 0,
            nacks: 0,
            threshold,
        }
    }

    /// Stores `count` outcomes; returns how many were accepted before the threshold
    /// was exceeded (all of them when it was not).
    pub(crate) fn store(&mut self, count: usize, nack: bool) -> usize {
        let size = self.slots.len();
        if size == 0 {
            return count;
        }
        if self.nacks > self.threshold {
            return 0;
        }
        for i in 0..count {
            self.cursor = (self.cursor + 1) % size;
            if self.slots[self.cursor] != nack {
                if nack {
                    self.nacks += 1;
                } else {
                    self.nacks -= 1;
                }
                self.slots[self.cursor] = nack;
            }
            if self.nacks > self.threshold {
                return i;
            }
            // Once every slot holds an ack, further acks change nothing.
            if !nack && self.nacks == 0 {
                return count;
            }
        }
        count
    }

    pub(crate) fn ack(&mut self, count: usize) {
        if self.nacks > 0 {
            self.store(count, false);
        }
    }
}

/// The dead-letter queue of one source: a destination and a nack window.
pub struct Dlq {
    id: String,
    destination: DestinationTask,
    window: Window,
    window_size: usize,
    threshold: usize,
    duration: Histogram,
    bytes: Histogram,
    records: Counter,
    conduit_duration: Histogram,
    conduit_bytes: Histogram,
}

impl Dlq {
    /// A DLQ writing to `destination`, tolerating `window_nack_threshold` nacks among
    /// the last `window_size` records (see the module docs).
    pub fn new(
        id: impl Into<String>,
        destination: Arc<dyn Destination>,
        window_size: usize,
        window_nack_threshold: usize,
    ) -> Self {
        let id = id.into();
        Self {
            destination: DestinationTask::new(id.clone(), destination),
            window: Window::new(window_size, window_nack_threshold),
            window_size,
            threshold: window_nack_threshold,
            duration: Histogram::noop(),
            bytes: Histogram::noop(),
            records: Counter::noop(),
            conduit_duration: Histogram::noop(),
            conduit_bytes: Histogram::noop(),
            id,
        }
    }

    /// Names the DLQ destination's plugin (Conduit's `plugin` metric label).
    #[must_use]
    pub fn with_plugin(mut self, plugin: impl Into<String>) -> Self {
        self.destination = self.destination.with_plugin(plugin);
        self
    }

    pub(crate) fn bind_pipeline(&mut self, to: Binding<'_>) {
        let conduit = [
            ("pipeline_name", to.name.to_owned()),
            ("plugin", self.destination.plugin().to_owned()),
        ];
        self.conduit_duration = histogram!(CONDUIT_DLQ_EXECUTION_DURATION, &conduit);
        self.conduit_bytes = histogram!(CONDUIT_DLQ_BYTES, &conduit);
        let labels = [
            ("pipeline", to.pipeline.to_owned()),
            ("dlq", self.id.clone()),
        ];
        self.duration = histogram!(DLQ_EXECUTION_DURATION, &labels);
        self.bytes = histogram!(DLQ_BYTES, &labels);
        self.records = counter!(RECORDS_DLQ, &labels);
    }

    /// The DLQ's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Opens the DLQ's destination.
    ///
    /// # Errors
    ///
    /// [`Error::DlqOpen`] when it fails to open.
    pub async fn open(&self) -> Result<()> {
        self.destination.open().await.map_err(|e| match e {
            Error::Open { source, .. } => Error::DlqOpen {
                dlq: self.id.clone(),
                source,
            },
            other => other,
        })
    }

    /// Tears the DLQ's destination down.
    ///
    /// # Errors
    ///
    /// [`Error::Close`] when tearing down fails.
    pub async fn close(&self) -> Result<()> {
        self.destination.close().await
    }

    /// Counts `count` acked source records in the window.
    pub fn ack(&mut self, count: usize) {
        self.window.ack(count);
    }

    /// Sends nacked records to the DLQ, in order, as far as the window allows.
    ///
    /// Returns how many leading records are durably in the DLQ, and the error that
    /// stopped the rest: the record's own error with threshold 0
    /// ([`Error::Nacked`]), [`Error::DlqThresholdExceeded`] (fatal) past a threshold,
    /// or [`Error::DlqWrite`] (fatal) when the DLQ's destination failed.
    pub async fn nack(&mut self, records: &[NackedRecord]) -> (usize, Result<()>) {
        if records.is_empty() {
            return (0, Ok(()));
        }
        let accepted = self.window.store(records.len(), true);
        if accepted > 0 {
            let (written, result) = self.write(&records[..accepted]).await;
            if result.is_err() {
                return (written, result);
            }
        }
        if accepted < records.len() {
            let rejected = &records[accepted];
            let error = if self.threshold == 0 {
                Error::Nacked {
                    task: rejected.task.to_string(),
                    error: rejected.error.clone(),
                    record: describe_record(&rejected.record),
                }
            } else {
                Error::DlqThresholdExceeded {
                    threshold: self.threshold,
                    window: self.window_size,
                    error: rejected.error.clone(),
                }
            };
            return (accepted, Err(error));
        }
        (accepted, Ok(()))
    }

    async fn write(&self, records: &[NackedRecord]) -> (usize, Result<()>) {
        let started = Instant::now();
        let envelopes: Vec<Record> = records.iter().map(envelope).collect();
        let fail = |count: usize, source: Error| Error::DlqWrite {
            dlq: self.id.clone(),
            count,
            source: Box::new(source),
        };
        if let Err(e) = self.destination.write(&envelopes).await {
            return (0, Err(fail(envelopes.len(), e)));
        }
        let mut cursor = 0;
        while cursor < envelopes.len() {
            let acks = match self.destination.next_acks(envelopes.len() - cursor).await {
                Ok(acks) => acks,
                Err(e) => return (cursor, Err(fail(envelopes.len() - cursor, e))),
            };
            let expected = envelopes[cursor..].iter().map(|r| &r.position);
            if let Err(e) = check_acks(&self.id, &acks, expected) {
                return (cursor, Err(fail(envelopes.len() - cursor, e)));
            }
            for ack in &acks {
                if let Some(error) = &ack.error {
                    let refused = Error::Nacked {
                        task: self.id.clone(),
                        error: error.clone(),
                        record: describe_record(&records[cursor].record),
                    };
                    return (cursor, Err(fail(envelopes.len() - cursor, refused)));
                }
                cursor += 1;
            }
        }
        let bytes: usize = envelopes.iter().map(Record::size_hint).sum();
        let per_record = started.elapsed().as_secs_f64() / envelopes.len() as f64;
        self.duration.record(per_record);
        self.bytes.record(bytes as f64);
        self.records.increment(envelopes.len() as u64);
        self.conduit_duration.record(per_record);
        self.conduit_bytes
            .record(bytes as f64 / envelopes.len() as f64);
        (envelopes.len(), Ok(()))
    }
}

/// The DLQ record wrapping a nacked record: position of the record, operation
/// `create`, no key, the record as a structured map in `payload.after`, and metadata
/// naming the error and the task that nacked it.
pub fn envelope(nacked: &NackedRecord) -> Record {
    let record = &nacked.record;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut meta = Metadata::new();
    meta.insert(metadata::CREATED_AT, now.to_string());
    meta.insert(
        metadata::SOURCE_CONNECTOR_ID,
        record
            .metadata
            .get_raw(metadata::SOURCE_CONNECTOR_ID)
            .unwrap_or_default(),
    );
    meta.insert(metadata::DLQ_NACK_ERROR, nacked.error.to_string());
    meta.insert(metadata::DLQ_NACK_NODE_ID, nacked.task.to_string());
    Record {
        position: record.position.clone(),
        operation: Operation::Create,
        metadata: meta,
        key: None,
        payload: Payload {
            before: None,
            after: Some(Data::Structured(record_map(record))),
        },
    }
}

/// A record as a structured map (Conduit's `Record.Map()`). Structured data is copied
/// as it is, so its values keep their kinds: a [`Value::Time`] stays a time (written in
/// JSON as Go's `time.Time.MarshalJSON` does), as a `time.Time` does in Conduit's map.
pub fn record_map(record: &Record) -> funnel_record::StructuredData {
    let data = |d: &Option<Data>| match d {
        None => Value::Null,
        Some(Data::Raw(b)) => Value::Bytes(b.clone()),
        Some(Data::Structured(m)) => Value::Map(m.clone()),
    };
    let meta = match record.metadata.as_map() {
        None => Value::Null,
        Some(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.as_str().into())))
                .collect(),
        ),
    };
    let mut payload = funnel_record::StructuredData::new();
    payload.insert("before", data(&record.payload.before));
    payload.insert("after", data(&record.payload.after));
    let mut map = funnel_record::StructuredData::new();
    map.insert("position", Value::Bytes(record.position.0.clone()));
    map.insert(
        "operation",
        Value::String(record.operation.to_string().into()),
    );
    map.insert("metadata", meta);
    map.insert("key", data(&record.key));
    map.insert("payload", Value::Map(payload));
    map
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use funnel_record::Timestamp;

    use super::*;

    #[test]
    fn record_map_keeps_times_in_structured_data() {
        let time = Value::Time(Timestamp::from_unix_nanos(1_611_254_412_345_678_999));
        let mut record = Record::new("p", "");
        record.key = Some(Data::Structured([("t".to_owned(), time.clone())].into()));
        let map = record_map(&record);
        let Value::Map(key) = &map["key"] else {
            panic!("key is {:?}", map["key"]);
        };
        assert_eq!(key["t"], time);
        let json = String::from_utf8(Value::Map(map).to_json()).unwrap();
        assert!(
            json.contains(r#""key":{"t":"2021-01-21T18:40:12.345678999Z"}"#),
            "{json}"
        );
    }
}
