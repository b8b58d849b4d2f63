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
}

impl WorkerStats {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
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
            .field("max_records_in_flight", &self.max_records_in_flight)
            .field("max_bytes_in_flight", &self.max_bytes_in_flight)
            .field("retry", &self.retry)
            .field("committer", &self.committer.is_some())
            .field("channel_capacity", &self.channel_capacity)
            .field("stats", &self.stats)
            .finish()
    }
}
