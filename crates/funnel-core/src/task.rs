//! Tasks: the nodes of a pipeline, each wrapping one plugin.
//!
//! [`SourceTask`] reads batches, [`ProcessorTask`] maps a processor's results onto a
//! batch's statuses, [`DestinationTask`] writes a batch and matches the destination's
//! acks. The worker decides when each runs; the tasks decide what a run means.

use std::sync::Arc;
use std::time::Instant;

use funnel_record::{Position, Record};
use tracing::debug;

use crate::batch::{Batch, RecordFlag};
use crate::error::{Error, Result};
use crate::plugin::{Destination, DestinationAck, ProcessedRecord, Processor, Source};
use crate::telemetry::{ConnectorMetrics, ProcessorMetrics};

/// A node of a pipeline.
pub enum Task {
    /// Reads records.
    Source(SourceTask),
    /// Transforms records.
    Processor(ProcessorTask),
    /// Writes records.
    Destination(DestinationTask),
}

impl Task {
    /// The task's ID, unique within its pipeline.
    pub fn id(&self) -> &str {
        match self {
            Self::Source(t) => t.id(),
            Self::Processor(t) => t.id(),
            Self::Destination(t) => t.id(),
        }
    }

    pub(crate) fn bind_pipeline(&mut self, pipeline: &str) {
        match self {
            Self::Source(t) => t.metrics = ConnectorMetrics::new(pipeline, "source", &t.id),
            Self::Processor(t) => t.metrics = ProcessorMetrics::new(pipeline, &t.id),
            Self::Destination(t) => {
                t.metrics = ConnectorMetrics::new(pipeline, "destination", &t.id)
            }
        }
    }
}

impl From<SourceTask> for Task {
    fn from(t: SourceTask) -> Self {
        Self::Source(t)
    }
}

impl From<ProcessorTask> for Task {
    fn from(t: ProcessorTask) -> Self {
        Self::Processor(t)
    }
}

impl From<DestinationTask> for Task {
    fn from(t: DestinationTask) -> Self {
        Self::Destination(t)
    }
}

/// Reads batches from a [`Source`] and numbers their records.
pub struct SourceTask {
    id: String,
    source: Arc<dyn Source>,
    next_origin: u64,
    metrics: ConnectorMetrics,
}

impl SourceTask {
    /// A task reading from `source`.
    pub fn new(id: impl Into<String>, source: Arc<dyn Source>) -> Self {
        let id = id.into();
        Self {
            metrics: ConnectorMetrics::new("", "source", &id),
            id,
            source,
            next_origin: 0,
        }
    }

    /// The task's ID (the source connector's ID).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The source.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    /// Opens the source.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] when the source fails to open.
    pub async fn open(&self) -> Result<()> {
        debug!(connector_id = %self.id, "opening source");
        self.source.open().await.map_err(|source| Error::Open {
            task: self.id.clone(),
            source,
        })?;
        debug!(connector_id = %self.id, "source open");
        Ok(())
    }

    /// Reads the next batch (the seed's `Do`): a fresh batch whose records are numbered
    /// after every record read before.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] when the read fails (including exhaustion, whose source error
    /// has kind [`Exhausted`](crate::ConnectorErrorKind::Exhausted)), and
    /// [`Error::EmptyPosition`] when a record has no position.
    pub async fn read(&mut self) -> Result<Batch> {
        let started = Instant::now();
        let batch = self.read_unmetered().await?;
        let bytes = batch.records().iter().map(Record::size_hint).sum();
        self.observe_read(started, batch.len(), bytes);
        Ok(batch)
    }

    /// [`read`](Self::read) without recording metrics: the worker computes each
    /// record's size once, for credits, and records the metrics from those sizes.
    pub(crate) async fn read_unmetered(&mut self) -> Result<Batch> {
        let records = self.source.read().await.map_err(|source| Error::Read {
            task: self.id.clone(),
            source,
        })?;
        if let Some(index) = records.iter().position(|r| r.position.is_empty()) {
            return Err(Error::EmptyPosition {
                task: self.id.clone(),
                index,
            });
        }
        let batch = Batch::with_origin_base(records, self.next_origin);
        self.next_origin += batch.len() as u64;
        Ok(batch)
    }

    /// Records the metrics of a read that started at `started`.
    pub(crate) fn observe_read(&self, started: Instant, records: usize, bytes: usize) {
        self.metrics.observe(started, records, bytes);
    }
}

/// Runs a [`Processor`] over the active records of a batch and maps its results onto
/// the batch.
pub struct ProcessorTask {
    id: String,
    processor: Box<dyn Processor>,
    metrics: ProcessorMetrics,
}

impl ProcessorTask {
    /// A task running `processor`.
    pub fn new(id: impl Into<String>, processor: Box<dyn Processor>) -> Self {
        let id = id.into();
        Self {
            metrics: ProcessorMetrics::new("", &id),
            id,
            processor,
        }
    }

    /// The task's ID (the processor's ID).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Opens the processor.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] when the processor fails to open.
    pub async fn open(&mut self) -> Result<()> {
        debug!(processor_id = %self.id, "opening processor");
        self.processor.open().await.map_err(|source| Error::Open {
            task: self.id.clone(),
            source,
        })?;
        debug!(processor_id = %self.id, "processor open");
        Ok(())
    }

    /// Tears the processor down.
    ///
    /// # Errors
    ///
    /// [`Error::Close`] when tearing down fails.
    pub async fn close(&mut self) -> Result<()> {
        debug!(processor_id = %self.id, "tearing down processor");
        self.processor
            .teardown()
            .await
            .map_err(|e| Error::Close(format!("task {} failed to close: {e}", self.id)))
    }

    /// Processes the batch's active records (the seed's `Do`).
    ///
    /// One result per active record, mapped in place: `Single` replaces the record,
    /// `Unchanged` keeps it,
    /// `Filter` filters it, `Error` nacks it, `Multi` filters (no record), replaces (one)
    /// or splits it (several). Records without a result (a shorter output) are marked
    /// for retry.
    ///
    /// # Errors
    ///
    /// [`Error::ProcessorOutput`] when the processor returns no result at all or more
    /// results than records.
    pub async fn process(&mut self, batch: &mut Batch) -> Result<()> {
        let active = batch.active_indices();
        if active.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // The processor works on the records in place: directly in the batch when
        // none is filtered, otherwise moved out (not copied) and back.
        let output = if let Some(records) = batch.records_mut_if_all_active() {
            self.processor.process_in_place(records).await
        } else {
            let mut records: Vec<Record> = active.iter().map(|&p| batch.take_at(p)).collect();
            let output = self.processor.process_in_place(&mut records).await;
            for (&p, record) in active.iter().zip(records) {
                batch.set_at(p, record);
            }
            output
        };
        if output.is_empty() {
            return Err(Error::ProcessorOutput {
                task: self.id.clone(),
                message: format!(
                    "processor didn't return any records (given {})",
                    active.len()
                ),
            });
        }
        if output.len() > active.len() {
            return Err(Error::ProcessorOutput {
                task: self.id.clone(),
                message: format!(
                    "processor returned {} results for {} records; it must return at most \
                     one result per record",
                    output.len(),
                    active.len()
                ),
            });
        }
        let per_record = started.elapsed().as_secs_f64() / output.len() as f64;
        self.metrics.duration.record(per_record);
        // Walk from the end so that a split or filter never moves an index still to be
        // handled; physical indices were taken before any change.
        for &p in active[output.len()..].iter().rev() {
            batch.flag_at(p, RecordFlag::Retry);
        }
        for (result, &p) in output.into_iter().zip(&active).rev() {
            match result {
                ProcessedRecord::Single(record) => batch.set_at(p, record),
                ProcessedRecord::Unchanged => {}
                ProcessedRecord::Filter => batch.flag_at(p, RecordFlag::Filter),
                ProcessedRecord::Error(error) => batch.nack_at(p, error),
                ProcessedRecord::Retry => batch.flag_at(p, RecordFlag::Retry),
                ProcessedRecord::Multi(mut pieces) => match pieces.len() {
                    0 => batch.flag_at(p, RecordFlag::Filter),
                    1 => {
                        if let Some(record) = pieces.pop() {
                            batch.set_at(p, record);
                        }
                    }
                    _ => batch.split_at(p, pieces),
                },
            }
        }
        Ok(())
    }
}

/// Writes batches to a [`Destination`] and matches its acks.
pub struct DestinationTask {
    id: String,
    destination: Arc<dyn Destination>,
    pub(crate) metrics: ConnectorMetrics,
}

impl DestinationTask {
    /// A task writing to `destination`.
    pub fn new(id: impl Into<String>, destination: Arc<dyn Destination>) -> Self {
        let id = id.into();
        Self {
            metrics: ConnectorMetrics::new("", "destination", &id),
            id,
            destination,
        }
    }

    /// The task's ID (the destination connector's ID).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The destination.
    pub fn destination(&self) -> &Arc<dyn Destination> {
        &self.destination
    }

    /// Opens the destination.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] when the destination fails to open.
    pub async fn open(&self) -> Result<()> {
        debug!(connector_id = %self.id, "opening destination");
        self.destination
            .open()
            .await
            .map_err(|source| Error::Open {
                task: self.id.clone(),
                source,
            })?;
        debug!(connector_id = %self.id, "destination open");
        Ok(())
    }

    /// Tears the destination down.
    ///
    /// # Errors
    ///
    /// [`Error::Close`] when tearing down fails.
    pub async fn close(&self) -> Result<()> {
        self.destination
            .teardown()
            .await
            .map_err(|e| Error::Close(format!("task {} failed to close: {e}", self.id)))
    }

    /// Writes `records` (no ack is awaited).
    ///
    /// # Errors
    ///
    /// [`Error::Write`] when the destination refuses the write.
    pub async fn write(&self, records: &[Record]) -> Result<()> {
        self.destination
            .write(records)
            .await
            .map_err(|source| Error::Write {
                task: self.id.clone(),
                count: records.len(),
                source,
            })
    }

    /// Waits for the next acks while `waiting` records wait for one.
    ///
    /// # Errors
    ///
    /// [`Error::ReceiveAcks`] when acks cannot be received.
    pub async fn next_acks(&self, waiting: usize) -> Result<Vec<DestinationAck>> {
        self.destination
            .ack()
            .await
            .map_err(|source| Error::ReceiveAcks {
                task: self.id.clone(),
                count: waiting,
                source,
            })
    }

    /// Writes the batch's active records and waits for all their acks (the seed's
    /// `Do`): records acked with an error are nacked with it.
    ///
    /// # Errors
    ///
    /// Write and ack failures, and acks that do not match the written records (out of
    /// order, too many, an empty ack list).
    pub async fn process(&self, batch: &mut Batch) -> Result<()> {
        let active = batch.active_indices();
        if active.is_empty() {
            return Ok(());
        }
        let records = batch.active_records().into_owned();
        self.write(&records).await?;
        let mut cursor = 0;
        while cursor < records.len() {
            let started = Instant::now();
            let acks = self.next_acks(records.len() - cursor).await?;
            let expected = records[cursor..].iter().map(|r| &r.position);
            check_acks(&self.id, &acks, expected)?;
            let bytes = records[cursor..cursor + acks.len()]
                .iter()
                .map(Record::size_hint)
                .sum();
            self.metrics.observe(started, acks.len(), bytes);
            let received = acks.len();
            // End to start: a nack may spread over a split record's pieces.
            for (k, ack) in acks.into_iter().enumerate().rev() {
                if let Some(error) = ack.error {
                    batch.nack_at(active[cursor + k], error);
                }
            }
            cursor += received;
        }
        Ok(())
    }
}

/// Checks a chunk of acks against the positions still expected, in write order.
///
/// # Errors
///
/// [`Error::AckProtocol`] for an empty chunk, more acks than expected, or a position
/// that is not the next one expected.
pub(crate) fn check_acks<'a>(
    task: &str,
    acks: &[DestinationAck],
    mut expected: impl ExactSizeIterator<Item = &'a Position>,
) -> Result<()> {
    let waiting = expected.len();
    let protocol = |message: String| Error::AckProtocol {
        task: task.to_owned(),
        message,
    };
    if acks.is_empty() {
        return Err(protocol(format!(
            "received 0 acks, but {waiting} records are waiting; a destination's ack() must \
             wait until it has acknowledgements"
        )));
    }
    if acks.len() > waiting {
        return Err(protocol(format!(
            "received {} acks, but expected at most {waiting}",
            acks.len()
        )));
    }
    for ack in acks {
        match expected.next() {
            Some(want) if *want == ack.position => {}
            Some(want) => {
                return Err(protocol(format!(
                    "received unexpected ack, expected position \"{want}\" but got \"{}\"",
                    ack.position
                )));
            }
            None => unreachable!("length checked above"),
        }
    }
    Ok(())
}
