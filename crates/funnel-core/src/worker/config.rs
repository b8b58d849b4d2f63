//! The worker's settings and running totals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::chain::RetryLimits;
use crate::plugin::PositionCommitter;

/// Settings of a worker.
#[derive(Clone)]
pub struct WorkerConfig {
    /// The pipeline's ID (a metric label).
    pub pipeline_id: String,
    /// The pipeline's name (Conduit's `pipeline_name` metric label); empty: the ID.
    pub pipeline_name: String,
    /// At most this many source records read but not yet released (plus one batch).
    pub max_records_in_flight: usize,
    /// At most this many bytes (key + payload) read but not yet released (plus one
    /// batch).
    pub max_bytes_in_flight: usize,
    /// Bounds on retrying records a processor gave no result for.
    pub retry: RetryLimits,
    /// Where positions are committed before the source is acked.
    pub committer: Option<Arc<dyn PositionCommitter>>,
    /// Batches queued between two stages.
    pub channel_capacity: usize,
    /// Counters the worker adds to, for progress lines and summaries.
    pub stats: Arc<WorkerStats>,
}

/// Running totals of one worker (or of every worker sharing it), updated per batch.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Source records read.
    pub read: AtomicU64,
    /// Records acked by destinations (a record written to two destinations counts twice).
    pub written: AtomicU64,
    /// Source records released to the source (written everywhere, filtered or in the DLQ).
    pub acked: AtomicU64,
    /// Records written to the DLQ.
    pub dlq: AtomicU64,
    /// What the source last said of its backlog (see [`Source::backlog`]), plus one; 0
    /// while it has said nothing. Read it with [`backlog`](Self::backlog).
    ///
    /// [`Source::backlog`]: crate::plugin::Source::backlog
    backlog: AtomicU64,
    /// What the source last said of its lag in bytes (see [`Source::report_lag`]),
    /// plus one; 0 while it has said nothing. Read it with [`lag_bytes`](Self::lag_bytes).
    ///
    /// [`Source::report_lag`]: crate::plugin::Source::report_lag
    lag_bytes: AtomicU64,
    /// What the source last said of its lag in records, summed over its parts (see
    /// [`LagReport::set_records_by`]), plus one; 0 while it has said nothing.
    ///
    /// [`LagReport::set_records_by`]: crate::LagReport::set_records_by
    lag_records: AtomicU64,
}

impl WorkerConfig {
    /// The pipeline's name: [`pipeline_name`](Self::pipeline_name), or the ID when
    /// that is empty.
    pub fn name(&self) -> &str {
        if self.pipeline_name.is_empty() {
            &self.pipeline_id
        } else {
            &self.pipeline_name
        }
    }
}

impl WorkerStats {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The records the source knows are still to be read, if it knows (with several
    /// sources sharing these totals: what the last one to read said).
    pub fn backlog(&self) -> Option<u64> {
        self.backlog.load(Ordering::Relaxed).checked_sub(1)
    }

    pub(super) fn set_backlog(&self, backlog: u64) {
        self.backlog
            .store(backlog.saturating_add(1), Ordering::Relaxed);
    }

    /// How many bytes the source is behind its system, if it knows (see
    /// [`LagReport`](crate::LagReport)).
    pub fn lag_bytes(&self) -> Option<u64> {
        self.lag_bytes.load(Ordering::Relaxed).checked_sub(1)
    }

    pub(crate) fn set_lag_bytes(&self, bytes: u64) {
        self.lag_bytes
            .store(bytes.saturating_add(1), Ordering::Relaxed);
    }

    /// How many records the source is behind its system, if it says so while it reads
    /// an open-ended stream (a Kafka consumer's lag, summed over its partitions; see
    /// [`LagReport::set_records_by`](crate::LagReport::set_records_by)).
    pub fn lag_records(&self) -> Option<u64> {
        self.lag_records.load(Ordering::Relaxed).checked_sub(1)
    }

    pub(crate) fn set_lag_records(&self, records: u64) {
        self.lag_records
            .store(records.saturating_add(1), Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            pipeline_id: "pipeline".into(),
            pipeline_name: String::new(),
            // Two batches of the default size (1,000) plus the one being read: enough to
            // keep reading, writing and acking overlapped, while bounding memory where
            // `size_hint` undercounts it (a ~400 B structured record costs ~7 KB of heap:
            // peak RSS of generator -> file was 86 MB at 8,192 and 34 MB at 2,048).
            max_records_in_flight: 2048,
            max_bytes_in_flight: 8 << 20,
            retry: RetryLimits::default(),
            committer: None,
            channel_capacity: 8,
            stats: Arc::default(),
        }
    }
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("pipeline_id", &self.pipeline_id)
            .field("pipeline_name", &self.pipeline_name)
            .field("max_records_in_flight", &self.max_records_in_flight)
            .field("max_bytes_in_flight", &self.max_bytes_in_flight)
            .field("retry", &self.retry)
            .field("committer", &self.committer.is_some())
            .field("channel_capacity", &self.channel_capacity)
            .field("stats", &self.stats)
            .finish()
    }
}
