//! Metric names and the handles the engine records into, in one place.
//!
//! Names follow Conduit's with the `funnel_` prefix. Labels stay low-cardinality:
//! pipeline, connector or processor ID, plugin type. Everything is recorded per batch,
//! never per record, on the hot path.
//!
//! Beside them the same measurements go out under Conduit's own names and labels (the
//! `CONDUIT_*` constants: `pipeline_name` and `plugin` labels, fixed histogram
//! buckets), so dashboards built for Conduit keep working.

use std::future::Future;
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

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

// Conduit's names and labels.
/// The version. Labels: `version`.
pub const CONDUIT_INFO: &str = "conduit_info";
/// Pipelines per status (`running`, `systemstopped`, `userstopped`, `degraded`,
/// `recovering`). Labels: `status`.
pub const CONDUIT_PIPELINES: &str = "conduit_pipelines";
/// A pipeline's status: 1 running, 2 stopped by the system, 3 stopped by the user,
/// 4 degraded, 5 recovering. Labels: `pipeline_name`.
pub const CONDUIT_PIPELINE_STATUS: &str = "conduit_pipeline_status";
/// Restarts of a recovering pipeline (no `conduit_` prefix, as in Conduit). Labels:
/// `pipeline_name`.
pub const CONDUIT_PIPELINE_RECOVERING: &str = "pipeline_recovering_count";
/// Connectors per type. Labels: `type` (`source` | `destination`).
pub const CONDUIT_CONNECTORS: &str = "conduit_connectors";
/// Processors per plugin. Labels: `type` (the plugin name).
pub const CONDUIT_PROCESSORS: &str = "conduit_processors";
/// Open inspector sessions. Labels: `component_id`.
pub const CONDUIT_INSPECTOR_SESSIONS: &str = "conduit_inspector_sessions";
/// Records an inspector session dropped because its client was slow. Labels:
/// `component_id`.
pub const CONDUIT_INSPECTOR_DROPPED: &str = "conduit_inspector_dropped_records_total";
/// Bytes per record read or written (one sample per batch: its mean). Labels:
/// `pipeline_name`, `plugin`, `type`. Buckets [`BYTES_BUCKETS`].
pub const CONDUIT_CONNECTOR_BYTES: &str = "conduit_connector_bytes";
/// Bytes per record written to the DLQ. Labels: `pipeline_name`, `plugin`.
pub const CONDUIT_DLQ_BYTES: &str = "conduit_dlq_bytes";
/// Time from reading a record to acking it (seconds). Labels: `pipeline_name`.
pub const CONDUIT_PIPELINE_EXECUTION_DURATION: &str = "conduit_pipeline_execution_duration_seconds";
/// Time per record of a read or an ack chunk (seconds). Labels: `pipeline_name`,
/// `plugin`, `type`.
pub const CONDUIT_CONNECTOR_EXECUTION_DURATION: &str =
    "conduit_connector_execution_duration_seconds";
/// Time per record in a processor (seconds). Labels: `pipeline_name`, `processor` (the
/// plugin name).
pub const CONDUIT_PROCESSOR_EXECUTION_DURATION: &str =
    "conduit_processor_execution_duration_seconds";
/// Time per record written to the DLQ (seconds). Labels: `pipeline_name`, `plugin`.
pub const CONDUIT_DLQ_EXECUTION_DURATION: &str = "conduit_dlq_execution_duration_seconds";

// Funnel's inspector and source metrics.
/// Records an inspector session dropped because its client was slow. Labels:
/// `component_id`.
pub const INSPECTOR_DROPPED: &str = "funnel_inspector_dropped_records_total";
/// Open inspector sessions. Labels: `component_id`.
pub const INSPECTOR_SESSIONS: &str = "funnel_inspector_sessions";
/// How far a source is behind what its system holds, in records, where the source
/// knows (records still to produce, for a generator with a `recordCount`). Labels:
/// `pipeline`, `component_id`; a source read in parts has one series per part, with
/// the part's labels beside those (a Kafka partition: `topic`, `partition`; see
/// [`LagReport::set_records_by`](crate::LagReport::set_records_by)).
pub const SOURCE_LAG: &str = "funnel_source_lag_records";
/// How far a source is behind its system, in bytes, where the source knows (the WAL a
/// PostgreSQL replication slot holds that the source has not confirmed; see
/// [`Source::report_lag`](crate::Source::report_lag)). Labels: `pipeline`,
/// `component_id`.
pub const SOURCE_LAG_BYTES: &str = "funnel_source_lag_bytes";

/// Time a source's worker spent waiting, per batch (seconds), by `phase`: `credits`
/// (the reader waiting for records in flight to be released before it may read
/// more), `read` (a `Source::read` call until it returned records), `commit` (the
/// position store committing a release) and `ack` (a `Source::ack` call). Its `_sum`
/// says where a source's time goes: a reader that mostly waits for credits is held
/// back by the engine (destinations, commits, acks), one that mostly waits in `read`
/// by its system. Labels: `pipeline`, `component_id`, `phase`.
pub const SOURCE_WAIT: &str = "funnel_source_wait_seconds";

/// The [`SOURCE_WAIT`] histograms of one source, one per phase.
#[derive(Clone)]
pub(crate) struct SourceWaits {
    pub(crate) credits: Histogram,
    pub(crate) read: Histogram,
    pub(crate) commit: Histogram,
    pub(crate) ack: Histogram,
}

impl SourceWaits {
    /// Handles that record nothing.
    pub(crate) fn unbound() -> Self {
        Self {
            credits: Histogram::noop(),
            read: Histogram::noop(),
            commit: Histogram::noop(),
            ack: Histogram::noop(),
        }
    }

    /// The histograms of source `component_id` of `pipeline`; none while the pipeline
    /// is not known (an empty ID).
    pub(crate) fn new(pipeline: &str, component_id: &str) -> Self {
        if pipeline.is_empty() {
            return Self::unbound();
        }
        let one = |phase: &'static str| {
            histogram!(
                SOURCE_WAIT,
                "pipeline" => pipeline.to_owned(),
                "component_id" => component_id.to_owned(),
                "phase" => phase
            )
        };
        Self {
            credits: one("credits"),
            read: one("read"),
            commit: one("commit"),
            ack: one("ack"),
        }
    }
}

/// Awaits `work` and records how long it took, in seconds, into `histogram`.
pub(crate) async fn timed<T>(histogram: &Histogram, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    histogram.record(started.elapsed().as_secs_f64());
    out
}

/// The [`SOURCE_LAG_BYTES`] gauge of one source.
pub(crate) fn source_lag_bytes(pipeline: &str, component_id: &str) -> Gauge {
    gauge!(
        SOURCE_LAG_BYTES,
        "pipeline" => pipeline.to_owned(),
        "component_id" => component_id.to_owned()
    )
}

/// The [`SOURCE_LAG`] gauge of one part of a source: `pipeline`, `component_id` and
/// the part's `labels`.
pub(crate) fn source_part_lag(
    pipeline: &str,
    component_id: &str,
    labels: &[(&'static str, String)],
) -> Gauge {
    let mut all = Vec::with_capacity(labels.len() + 2);
    all.push(("pipeline", pipeline.to_owned()));
    all.push(("component_id", component_id.to_owned()));
    all.extend(labels.iter().cloned());
    gauge!(SOURCE_LAG, &all)
}

/// Buckets of Conduit's byte histograms: 1 KiB to 2 MiB, doubling.
pub const BYTES_BUCKETS: [f64; 12] = [
    1024.0,
    2048.0,
    4096.0,
    8192.0,
    16384.0,
    32768.0,
    65536.0,
    131_072.0,
    262_144.0,
    524_288.0,
    1_048_576.0,
    2_097_152.0,
];
/// Buckets of Conduit's duration histograms (seconds).
pub const DURATION_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Conduit's status number of a pipeline status named as [`CONDUIT_PIPELINES`] labels
/// it (`running` is 1 ... `recovering` is 5); `None` for others.
pub fn conduit_status_code(status: &str) -> Option<u8> {
    Some(match status {
        "running" => 1,
        "systemstopped" => 2,
        "userstopped" => 3,
        "degraded" => 4,
        "recovering" => 5,
        _ => return None,
    })
}

/// Where a task's measurements go: the pipeline's ID and name, the plugin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Binding<'a> {
    /// The pipeline's ID (Funnel's `pipeline` label).
    pub(crate) pipeline: &'a str,
    /// The pipeline's name (Conduit's `pipeline_name` label).
    pub(crate) name: &'a str,
}

/// The handles a source or destination task records into.
#[derive(Clone)]
pub(crate) struct ConnectorMetrics {
    pub(crate) duration: Histogram,
    pub(crate) bytes: Histogram,
    pub(crate) records: Counter,
    conduit_duration: Histogram,
    conduit_bytes: Histogram,
    /// The source's backlog ([`SOURCE_LAG`]), registered at its first value: a source
    /// that never knows its backlog has no series. Empty labels: not a source.
    lag: std::sync::OnceLock<Gauge>,
    lag_labels: Vec<(&'static str, String)>,
}

impl ConnectorMetrics {
    /// Handles that record nothing, until the task knows its pipeline: a series with
    /// an empty `pipeline` label is never exported.
    pub(crate) fn unbound() -> Self {
        Self {
            duration: Histogram::noop(),
            bytes: Histogram::noop(),
            records: Counter::noop(),
            conduit_duration: Histogram::noop(),
            conduit_bytes: Histogram::noop(),
            lag: std::sync::OnceLock::new(),
            lag_labels: Vec::new(),
        }
    }

    pub(crate) fn new(to: Binding<'_>, kind: &'static str, id: &str, plugin: &str) -> Self {
        let pipeline = to.pipeline;
        let conduit = [
            ("pipeline_name", to.name.to_owned()),
            ("plugin", plugin.to_owned()),
            ("type", kind.to_owned()),
        ];
        let labels = [
            ("pipeline", pipeline.to_owned()),
            ("type", kind.to_owned()),
            ("component_id", id.to_owned()),
        ];
        let counted = [
            ("pipeline", pipeline.to_owned()),
            ("component_id", id.to_owned()),
        ];
        let (records, lag_labels) = if kind == "source" {
            (counter!(RECORDS_READ, &counted), counted.to_vec())
        } else {
            (counter!(RECORDS_WRITTEN, &counted), Vec::new())
        };
        Self {
            duration: histogram!(CONNECTOR_EXECUTION_DURATION, &labels),
            bytes: histogram!(CONNECTOR_BYTES, &labels),
            records,
            conduit_duration: histogram!(CONDUIT_CONNECTOR_EXECUTION_DURATION, &conduit),
            conduit_bytes: histogram!(CONDUIT_CONNECTOR_BYTES, &conduit),
            lag: std::sync::OnceLock::new(),
            lag_labels,
        }
    }

    /// Sets the source's backlog gauge (registering it the first time).
    pub(crate) fn set_lag(&self, backlog: u64) {
        if self.lag_labels.is_empty() {
            return;
        }
        self.lag
            .get_or_init(|| gauge!(SOURCE_LAG, &self.lag_labels))
            .set(backlog as f64);
    }

    /// Records one call that handled `records` records of `bytes` bytes.
    pub(crate) fn observe(&self, started: std::time::Instant, records: usize, bytes: usize) {
        if records == 0 {
            return;
        }
        let per_record = started.elapsed().as_secs_f64() / records as f64;
        self.duration.record(per_record);
        self.bytes.record(bytes as f64);
        self.records.increment(records as u64);
        self.conduit_duration.record(per_record);
        self.conduit_bytes.record(bytes as f64 / records as f64);
    }
}

/// Time per record spent in a processor (seconds). Labels: `pipeline`, `processor`.
pub const PROCESSOR_EXECUTION_DURATION: &str = "funnel_processor_execution_duration_seconds";

/// The handle a processor task records into.
#[derive(Clone)]
pub(crate) struct ProcessorMetrics {
    duration: Histogram,
    conduit_duration: Histogram,
}

impl ProcessorMetrics {
    /// A handle that records nothing, until the task knows its pipeline.
    pub(crate) fn unbound() -> Self {
        Self {
            duration: Histogram::noop(),
            conduit_duration: Histogram::noop(),
        }
    }

    pub(crate) fn new(to: Binding<'_>, id: &str, plugin: &str) -> Self {
        let labels = [
            ("pipeline", to.pipeline.to_owned()),
            ("processor", id.to_owned()),
        ];
        let conduit = [
            ("pipeline_name", to.name.to_owned()),
            ("processor", plugin.to_owned()),
        ];
        Self {
            duration: histogram!(PROCESSOR_EXECUTION_DURATION, &labels),
            conduit_duration: histogram!(CONDUIT_PROCESSOR_EXECUTION_DURATION, &conduit),
        }
    }

    /// Records one call's time per record.
    pub(crate) fn record(&self, per_record: f64) {
        self.duration.record(per_record);
        self.conduit_duration.record(per_record);
    }
}
