//! Tasks: the nodes of a pipeline, each wrapping one plugin.
//!
//! [`SourceTask`] reads batches, [`ProcessorTask`] maps a processor's results onto a
//! batch's statuses, [`DestinationTask`] writes a batch and matches the destination's
//! acks. The worker decides when each runs; the tasks decide what a run means.

use std::sync::Arc;
use std::time::Instant;

use funnel_record::Record;
use tracing::debug;

use crate::batch::Batch;
use crate::error::{ConnectorError, Error, Result};
use crate::inspect::{Point, Tap, inspector};
use crate::plugin::Source;
use crate::telemetry::{Binding, ConnectorMetrics};

mod destination;
mod processor;

pub use self::destination::DestinationTask;
pub(crate) use self::destination::check_acks;
pub use self::processor::ProcessorTask;

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

    pub(crate) fn bind_pipeline(&mut self, to: Binding<'_>) {
        match self {
            Self::Source(t) => t.connector.bind_pipeline(to, "source"),
            Self::Processor(t) => t.bind_pipeline(to),
            Self::Destination(t) => t.bind_pipeline(to),
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

/// What a source task and a destination task both keep about their connector.
pub(crate) struct Connector {
    /// The connector's ID.
    pub(crate) id: String,
    /// The plugin name (a metric label).
    pub(crate) plugin: String,
    pub(crate) metrics: ConnectorMetrics,
    /// The records read or written, for the inspector.
    pub(crate) tap: Arc<Tap>,
}

impl Connector {
    /// Connector `id`, its metrics not bound to a pipeline yet.
    pub(crate) fn new(id: String) -> Self {
        Self {
            metrics: ConnectorMetrics::unbound(),
            tap: inspector().tap(&id, Point::Connector),
            id,
            plugin: String::new(),
        }
    }

    /// Binds the metrics to a pipeline, as a `kind` (`source`, `destination`).
    pub(crate) fn bind_pipeline(&mut self, to: Binding<'_>, kind: &'static str) {
        self.metrics = ConnectorMetrics::new(to, kind, &self.id, &self.plugin);
    }
}

/// Reads batches from a [`Source`] and numbers their records.
pub struct SourceTask {
    connector: Connector,
    source: Arc<dyn Source>,
    next_origin: u64,
}

impl SourceTask {
    /// A task reading from `source`.
    pub fn new(id: impl Into<String>, source: Arc<dyn Source>) -> Self {
        Self {
            connector: Connector::new(id.into()),
            source,
            next_origin: 0,
        }
    }

    /// Names the source's plugin (Conduit's `plugin` metric label).
    #[must_use]
    pub fn with_plugin(mut self, plugin: impl Into<String>) -> Self {
        self.connector.plugin = plugin.into();
        self
    }

    /// The task's ID (the source connector's ID).
    pub fn id(&self) -> &str {
        &self.connector.id
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
        debug!(connector_id = %self.connector.id, "opening source");
        self.source.open().await.map_err(|source| Error::Open {
            task: self.connector.id.clone(),
            source,
        })?;
        debug!(connector_id = %self.connector.id, "source open");
        Ok(())
    }

    /// Reads the next batch (the seed's `Do`): a fresh batch whose records are numbered
    /// after every record read before; `None` once the source has no more records.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] when the read fails, and [`Error::EmptyPosition`] when a record
    /// has no position.
    pub async fn read(&mut self) -> Result<Option<Batch>> {
        let started = Instant::now();
        let Some(batch) = self.read_unmetered().await? else {
            return Ok(None);
        };
        let bytes = batch.records().iter().map(Record::size_hint).sum();
        self.observe_read(started, batch.len(), bytes);
        Ok(Some(batch))
    }

    /// [`read`](Self::read) without recording metrics: the worker computes each
    /// record's size once, for credits, and records the metrics from those sizes.
    pub(crate) async fn read_unmetered(&mut self) -> Result<Option<Batch>> {
        let read = self.source.read().await;
        Ok(self.check_read(read)?.map(|records| self.number(records)))
    }

    /// Checks what one [`Source::read`] returned.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] for a failed read, [`Error::EmptyPosition`] when a record has no
    /// position.
    pub(crate) fn check_read(
        &self,
        read: std::result::Result<Option<Vec<Record>>, ConnectorError>,
    ) -> Result<Option<Vec<Record>>> {
        let read = read.map_err(|source| Error::Read {
            task: self.connector.id.clone(),
            source,
        })?;
        let Some(records) = read else {
            return Ok(None);
        };
        if let Some(index) = records.iter().position(|r| r.position.is_empty()) {
            return Err(Error::EmptyPosition {
                task: self.connector.id.clone(),
                index,
            });
        }
        Ok(Some(records))
    }

    /// A batch of `records`, numbered after every record read before.
    pub(crate) fn number(&mut self, records: Vec<Record>) -> Batch {
        self.connector.tap.send(&records);
        let batch = Batch::with_origin_base(records, self.next_origin);
        self.next_origin += batch.len() as u64;
        batch
    }

    /// Records the metrics of a read that started at `started`; returns the source's
    /// backlog when it knows it (and sets its gauge).
    pub(crate) fn observe_read(
        &self,
        started: Instant,
        records: usize,
        bytes: usize,
    ) -> Option<u64> {
        self.connector.metrics.observe(started, records, bytes);
        let backlog = self.source.backlog()?;
        self.connector.metrics.set_lag(backlog);
        Some(backlog)
    }
}
