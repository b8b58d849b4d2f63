//! Metric names and the handles the engine records into, in one place.
//!
//! Names follow Conduit's with the `funnel_` prefix. Labels stay low-cardinality:
//! pipeline, connector or processor ID, plugin type. Everything is recorded per batch,
//! never per record, on the hot path.

use metrics::{Counter, Histogram, counter, histogram};

// What a pipeline and its DLQ record.
/// Time from reading a record to acking it at the source (seconds), one sample per
/// released chunk, measured from the oldest record in it. Labels: `pipeline`.
pub const PIPELINE_EXECUTION_DURATION: &str = "funnel_pipeline_execution_duration_seconds";
/// Source records acked to the source (written everywhere, filtered or in the DLQ).
/// Labels: `pipeline`, `component_id`.
pub const RECORDS_ACKED: &str = "funnel_pipeline_records_acked_total";
/// When the next restart of a recovering pipeline happens (Unix seconds; 0 when none
/// is pending). Labels: `pipeline`.
pub const NEXT_RESTART: &str = "funnel_pipeline_next_restart_timestamp_seconds";
/// Restarts of a pipeline after transient errors. Labels: `pipeline`.
pub const RESTARTS: &str = "funnel_pipeline_restarts_total";

// What an instance of a cluster records (`--cluster.enabled`).
/// Pipeline leases this instance holds now.
pub const LEASES_HELD: &str = "funnel_cluster_leases_held";
/// Pipeline leases this instance claimed. Labels: `pipeline`.
pub const LEASES_CLAIMED: &str = "funnel_cluster_leases_claimed_total";
/// Pipeline leases this instance lost (expired before a renewal, or taken over): the
/// pipeline was stopped at once. Labels: `pipeline`.
pub const LEASES_LOST: &str = "funnel_cluster_leases_lost_total";
/// Pipelines this instance handed over to even out the load (drained, committed,
/// released). Labels: `pipeline`.
pub const REBALANCES: &str = "funnel_cluster_rebalances_total";
/// Live instances of the cluster, as this instance last saw them.
pub const INSTANCES: &str = "funnel_cluster_instances";
/// Time per record spent writing to the DLQ (seconds). Labels: `pipeline`, `dlq`.
pub const DLQ_EXECUTION_DURATION: &str = "funnel_dlq_execution_duration_seconds";
/// Bytes written to the DLQ. Labels: `pipeline`, `dlq`.
pub const DLQ_BYTES: &str = "funnel_dlq_bytes";
/// Records written to the DLQ. Labels: `pipeline`, `dlq`.
pub const RECORDS_DLQ: &str = "funnel_pipeline_records_dlq_total";

// What a source or destination task records (through `ConnectorMetrics`).
/// Time per record spent in a source read or a destination ack chunk (seconds).
/// Labels: `pipeline`, `type` (`source` | `destination`), `component_id`.
pub const CONNECTOR_EXECUTION_DURATION: &str = "funnel_connector_execution_duration_seconds";
/// Bytes (key + payload) per read or acked chunk. Labels as above.
pub const CONNECTOR_BYTES: &str = "funnel_connector_bytes";
/// Records read from a source. Labels: `pipeline`, `component_id`.
pub const RECORDS_READ: &str = "funnel_pipeline_records_read_total";
/// Records acked by a destination. Labels: `pipeline`, `component_id`.
pub const RECORDS_WRITTEN: &str = "funnel_pipeline_records_written_total";

/// The handles a source or destination task records into.
#[derive(Clone)]
pub(crate) struct ConnectorMetrics {
    pub(crate) duration: Histogram,
    pub(crate) bytes: Histogram,
    pub(crate) records: Counter,
}

impl ConnectorMetrics {
    /// Handles that record nothing, until the task knows its pipeline: a series with
    /// an empty `pipeline` label is never exported.
    pub(crate) fn unbound() -> Self {
        Self {
            duration: Histogram::noop(),
            bytes: Histogram::noop(),
            records: Counter::noop(),
        }
    }

    pub(crate) fn new(pipeline: &str, kind: &'static str, id: &str) -> Self {
        let labels = [
            ("pipeline", pipeline.to_owned()),
            ("type", kind.to_owned()),
            ("component_id", id.to_owned()),
        ];
        let counted = [
            ("pipeline", pipeline.to_owned()),
            ("component_id", id.to_owned()),
        ];
        let records = if kind == "source" {
            counter!(RECORDS_READ, &counted)
        } else {
            counter!(RECORDS_WRITTEN, &counted)
        };
        Self {
            duration: histogram!(CONNECTOR_EXECUTION_DURATION, &labels),
            bytes: histogram!(CONNECTOR_BYTES, &labels),
            records,
        }
    }

    /// Records one call that handled `records` records of `bytes` bytes.
    pub(crate) fn observe(&self, started: std::time::Instant, records: usize, bytes: usize) {
        if records == 0 {
            return;
        }
        self.duration
            .record(started.elapsed().as_secs_f64() / records as f64);
        self.bytes.record(bytes as f64);
        self.records.increment(records as u64);
    }
}

/// Time per record spent in a processor (seconds). Labels: `pipeline`, `processor`.
pub const PROCESSOR_EXECUTION_DURATION: &str = "funnel_processor_execution_duration_seconds";

/// The handle a processor task records into.
#[derive(Clone)]
pub(crate) struct ProcessorMetrics {
    pub(crate) duration: Histogram,
}

impl ProcessorMetrics {
    /// A handle that records nothing, until the task knows its pipeline.
    pub(crate) fn unbound() -> Self {
        Self {
            duration: Histogram::noop(),
        }
    }

    pub(crate) fn new(pipeline: &str, id: &str) -> Self {
        let labels = [
            ("pipeline", pipeline.to_owned()),
            ("processor", id.to_owned()),
        ];
        Self {
            duration: histogram!(PROCESSOR_EXECUTION_DURATION, &labels),
        }
    }
}
