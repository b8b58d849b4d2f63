//! Conduit's gauges of what exists (`conduit_info`, `conduit_pipelines`,
//! `conduit_pipeline_status`, `conduit_connectors`, `conduit_processors`), set from
//! the [`Pipelines`] just before `/metrics` renders, so they are never stale.
//!
//! Funnel does not tell a pipeline stopped by a person from one stopped by the
//! system: a stopped pipeline counts as `userstopped` (3).

use std::collections::BTreeMap;

use funnel_core::telemetry::{
    BYTES_BUCKETS, CONDUIT_CONNECTORS, CONDUIT_INFO, CONDUIT_PIPELINE_STATUS, CONDUIT_PIPELINES,
    CONDUIT_PROCESSORS, DURATION_BUCKETS, conduit_status_code,
};
use metrics::gauge;

use crate::Pipelines;
use crate::model::{ConnectorType, PipelineStatus};

/// Every status `conduit_pipelines` has a series for.
const STATUSES: [&str; 5] = [
    "running",
    "systemstopped",
    "userstopped",
    "degraded",
    "recovering",
];

/// Conduit's name of an API status.
fn conduit_status(status: PipelineStatus) -> &'static str {
    match status {
        PipelineStatus::Running => "running",
        PipelineStatus::Stopped => "userstopped",
        PipelineStatus::Degraded => "degraded",
        PipelineStatus::Recovering => "recovering",
    }
}

/// How often the recorder's histograms are drained when nobody scrapes.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the Prometheus recorder as the global one: every histogram gets Conduit's
/// buckets, durations (`*_seconds`) its duration buckets and sizes (`*_bytes`) its byte
/// buckets, Funnel's own as well as Conduit's names; and a thread drains what the
/// histograms gathered every few seconds, so their memory stays bounded when nobody
/// scrapes `/metrics`.
///
/// Funnel's own are not rendered as summaries: a summary keeps, per series, sketches
/// that grow with the range of values seen and are copied at every scrape (about 3 MB
/// on a PostgreSQL snapshot scraped every 10 ms, a tenth of the process), and the
/// quantiles of several instances cannot be added up, where buckets can.
///
/// # Errors
///
/// When a recorder is already installed.
pub fn install_recorder()
-> Result<metrics_exporter_prometheus::PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &BYTES_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread: histograms grow until scraped");
    }
    Ok(handle)
}

/// Sets the gauges from what `pipelines` holds now.
pub(crate) fn set(pipelines: &dyn Pipelines) {
    gauge!(CONDUIT_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let mut per_status: BTreeMap<&str, u32> = STATUSES.iter().map(|s| (*s, 0)).collect();
    for p in pipelines.pipelines() {
        let status = conduit_status(p.state.status);
        *per_status.entry(status).or_default() += 1;
        let code = conduit_status_code(status).unwrap_or(0);
        gauge!(CONDUIT_PIPELINE_STATUS, "pipeline_name" => p.config.name.clone())
            .set(f64::from(code));
    }
    for (status, count) in per_status {
        gauge!(CONDUIT_PIPELINES, "status" => status).set(f64::from(count));
    }
    let (mut sources, mut destinations) = (0u32, 0u32);
    for c in pipelines.connectors() {
        match c.kind {
            ConnectorType::Source => sources += 1,
            ConnectorType::Destination => destinations += 1,
        }
    }
    gauge!(CONDUIT_CONNECTORS, "type" => "source").set(f64::from(sources));
    gauge!(CONDUIT_CONNECTORS, "type" => "destination").set(f64::from(destinations));
    let mut per_plugin: BTreeMap<String, u32> = BTreeMap::new();
    for p in pipelines.processors() {
        *per_plugin.entry(p.plugin).or_default() += 1;
    }
    for (plugin, count) in per_plugin {
        gauge!(CONDUIT_PROCESSORS, "type" => plugin).set(f64::from(count));
    }
}
