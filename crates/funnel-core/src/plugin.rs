//! The plugin traits: [`Source`], [`Destination`] and [`Processor`].
//!
//! All three work on batches, so dynamic dispatch costs one virtual call per batch.
//! Sources and destinations take `&self`: the engine reads from a source while it acks
//! earlier positions, and writes to a destination while it waits for acks of earlier
//! writes, from different stages. Processors are owned by one stage and take `&mut self`.

use async_trait::async_trait;
use funnel_record::{Position, Record};

use crate::error::{ConnectorError, RecordError};

/// A source of records: a database, a broker, a file.
///
/// # Contract
///
/// - [`read`](Source::read) returns the next records, in source order, each with a
///   distinct, non-empty position. It waits until at least one record is available
///   and must be cancel-safe: if the engine drops the future (on stop), no record may
///   be lost, since nothing unacked counts as delivered.
/// - When the source will never have more records, `read` returns `Ok(None)`: that is
///   an answer, not an error. The pipeline drains and finishes.
/// - [`ack`](Source::ack) receives positions strictly in read order, each once, only
///   after every destination has durably written the record (or it is in the DLQ) and
///   the position is committed. After a restart, reading resumes after the last acked
///   position.
#[async_trait]
pub trait Source: Send + Sync {
    /// Opens connections and positions the reader.
    ///
    /// # Errors
    ///
    /// When the source cannot be opened.
    async fn open(&self) -> Result<(), ConnectorError>;

    /// Reads the next batch of records; `None` when the source has no more records
    /// and never will.
    ///
    /// # Errors
    ///
    /// Any read failure, with its class (see [`ConnectorError`]).
    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError>;

    /// Acknowledges positions, in read order.
    ///
    /// # Errors
    ///
    /// When the source cannot take the acknowledgement.
    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError>;

    /// Closes connections. Called once, after the last ack.
    ///
    /// # Errors
    ///
    /// When tearing down fails.
    async fn teardown(&self) -> Result<(), ConnectorError>;

    /// How many records the source knows are still waiting to be read (its lag), when
    /// it knows: a generator with a `recordCount` knows how many it has still to make.
    /// Asked once per batch read, so it must be cheap. The default knows nothing.
    fn backlog(&self) -> Option<u64> {
        None
    }

    /// Hands the source where to report how far it is behind its system, in bytes (a
    /// PostgreSQL replication slot's WAL not yet confirmed, say) or in records per
    /// part (a Kafka partition's messages not yet read), once, before
    /// [`open`](Source::open), when the source's worker is built. A source that can
    /// tell keeps `lag` and sets it whenever it learns, independently of reads (so the
    /// figure stays true while the pipeline is idle or held back); the default ignores
    /// it.
    fn report_lag(&self, lag: LagReport) {
        let _ = lag;
    }
}

/// Where a source reports how far it is behind its system (see
/// [`Source::report_lag`]): the `funnel_source_lag_bytes` and
/// `funnel_source_lag_records` gauges and the worker's running totals (for the status
/// lines of `funnel run`). Cheap to clone and to set.
#[derive(Clone)]
pub struct LagReport {
    /// Registered on the first report, so that a source that never knows its lag in
    /// bytes exports no such series (rather than a made-up 0).
    gauge: std::sync::Arc<std::sync::OnceLock<metrics::Gauge>>,
    stats: Option<std::sync::Arc<crate::WorkerStats>>,
    /// The pipeline and the source's component ID, for the gauges per part; `None`:
    /// a report that goes nowhere.
    labels: Option<std::sync::Arc<(String, String)>>,
}

impl LagReport {
    /// A report into the gauge labelled with `pipeline` and `component_id`, and into
    /// `stats` when given.
    pub fn new(
        pipeline: &str,
        component_id: &str,
        stats: Option<std::sync::Arc<crate::WorkerStats>>,
    ) -> Self {
        Self {
            gauge: std::sync::Arc::default(),
            stats,
            labels: Some(std::sync::Arc::new((
                pipeline.to_owned(),
                component_id.to_owned(),
            ))),
        }
    }

    /// A report that goes nowhere (for tests and sources run outside a worker).
    pub fn noop() -> Self {
        Self {
            gauge: std::sync::Arc::default(),
            stats: None,
            labels: None,
        }
    }

    /// Sets the lag: the source is `bytes` behind.
    pub fn set_bytes(&self, bytes: u64) {
        if let Some(labels) = &self.labels {
            self.gauge
                .get_or_init(|| crate::telemetry::source_lag_bytes(&labels.0, &labels.1))
                .set(bytes as f64);
        }
        if let Some(stats) = &self.stats {
            stats.set_lag_bytes(bytes);
        }
    }

    /// Sets the lag in records of a source read in parts (Kafka partitions): one
    /// `funnel_source_lag_records` series per part, labelled with the part's `labels`
    /// beside `pipeline` and `component_id` (a partition: `topic` and `partition`),
    /// and their sum in the worker's totals. Call it with every part the source reads
    /// now; a part it no longer reads (a partition revoked) is best set to 0 once, so
    /// that its series does not keep a figure another reader now owns.
    pub fn set_records_by<L: AsRef<[(&'static str, String)]>>(&self, parts: &[(L, u64)]) {
        let Some(labels) = &self.labels else {
            return;
        };
        let mut total = 0u64;
        for (part, records) in parts {
            crate::telemetry::source_part_lag(&labels.0, &labels.1, part.as_ref())
                .set(*records as f64);
            total = total.saturating_add(*records);
        }
        if let Some(stats) = &self.stats {
            stats.set_lag_records(total);
        }
    }
}

impl std::fmt::Debug for LagReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagReport").finish_non_exhaustive()
    }
}

/// The acknowledgement of one written record.
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationAck {
    /// The position of the record, as it was written.
    pub position: Position,
    /// Set when the record could not be written: the record is nacked.
    pub error: Option<RecordError>,
}

impl DestinationAck {
    /// A successful ack.
    pub fn ok(position: Position) -> Self {
        Self {
            position,
            error: None,
        }
    }

    /// A failed write of one record.
    pub fn nack(position: Position, error: RecordError) -> Self {
        Self {
            position,
            error: Some(error),
        }
    }
}

/// Whether this process may still write for a pipeline: in a cluster, the lease on the
/// pipeline it holds (see `docs/cluster.md`). Checked before every write; once it says
/// no, it never says yes again.
pub trait WriteFence: Send + Sync {
    /// True while writes are allowed.
    fn permits(&self) -> bool;

    /// Why writes are refused, for the error a refused write returns.
    fn refusal(&self) -> String;
}

/// A destination of records.
///
/// # Contract
///
/// - [`write`](Destination::write) takes records in order. It may return before they
///   are durable; the engine keeps writing later batches without waiting.
/// - [`ack`](Destination::ack) waits for and returns the next acknowledgements, one per
///   written record, **in write order**, each after the record is durable (or with an
///   error when it failed). It is called only while records are waiting for acks, and
///   must not return an empty list: acks out of order, too many, or an empty list are
///   protocol errors that stop the pipeline.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Opens connections.
    ///
    /// # Errors
    ///
    /// When the destination cannot be opened.
    async fn open(&self) -> Result<(), ConnectorError>;

    /// Writes records, in order.
    ///
    /// # Errors
    ///
    /// When the records cannot be written at all (per-record failures go in acks).
    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError>;

    /// Waits for the next acknowledgements, in write order.
    ///
    /// # Errors
    ///
    /// When acks can no longer be received.
    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError>;

    /// Flushes and closes connections.
    ///
    /// # Errors
    ///
    /// When tearing down fails.
    async fn teardown(&self) -> Result<(), ConnectorError>;

    /// Makes the destination check `fence` right before each of its own writes to the
    /// external system, for a destination that writes after [`write`](Self::write)
    /// returned (on a thread of its own, say): a write refused there fails the
    /// destination. The engine checks the fence before every `write` call anyway; the
    /// default does nothing more.
    fn fence(&self, fence: std::sync::Arc<dyn WriteFence>) {
        let _ = fence;
    }
}

/// What a processor made of one input record.
#[derive(Clone, Debug, PartialEq)]
pub enum ProcessedRecord {
    /// The record, transformed (or not).
    Single(Record),
    /// The record goes on as it is in the slice the processor was given: unchanged
    /// after [`Processor::process`], possibly changed in place after
    /// [`Processor::process_in_place`]. The same as `Single` with a copy, without the
    /// copy.
    Unchanged,
    /// The record is dropped: acked, never written.
    Filter,
    /// The record failed: it is nacked and goes to the dead-letter queue.
    Error(RecordError),
    /// The record became zero records (filtered), one, or several (split; the source
    /// position is acked once, after every piece is done).
    Multi(Vec<Record>),
    /// No result yet: the record is fed again to the processor (Go's `nil` result).
    /// A processor that keeps answering this without making progress stops the
    /// pipeline (see [`RetryLimits`](crate::RetryLimits)).
    Retry,
}

/// A processor: transforms, filters, splits or fails records.
///
/// [`process`](Processor::process) returns one result per input record, in order.
/// Returning fewer results means "the rest could not be processed now": those records
/// are fed again (retried); a processor that never resolves them stops the pipeline.
#[async_trait]
pub trait Processor: Send {
    /// Prepares the processor.
    ///
    /// # Errors
    ///
    /// When the processor cannot be opened.
    async fn open(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Processes a batch of records.
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord>;

    /// Processes a batch of records the processor may change in place, which spares
    /// it a copy of each record it changes. The engine calls this one.
    ///
    /// A record changed in place is answered with [`ProcessedRecord::Unchanged`]. A
    /// record answered with `Filter`, `Error` or `Retry`, or left without an answer,
    /// must be left as it was: the engine sends it to the dead-letter queue, or feeds
    /// it again. A record answered with `Single` or `Multi` may be left in any state.
    ///
    /// The default calls [`process`](Processor::process).
    async fn process_in_place(&mut self, records: &mut [Record]) -> Vec<ProcessedRecord> {
        self.process(records).await
    }

    /// Releases resources.
    ///
    /// # Errors
    ///
    /// When tearing down fails.
    async fn teardown(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Where committed positions go before the source is acked (the position store).
///
/// The engine calls [`commit`](PositionCommitter::commit) with the last position of
/// every released prefix and waits for it before calling [`Source::ack`], so a position
/// is durable before the source may forget it.
#[async_trait]
pub trait PositionCommitter: Send + Sync {
    /// Durably records that everything up to `position` is done.
    ///
    /// # Errors
    ///
    /// When the position cannot be made durable; the pipeline stops.
    async fn commit(&self, position: &Position) -> Result<(), ConnectorError>;
}
