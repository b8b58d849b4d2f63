//! Funnel's HTTP API: `/healthz`, `/readyz` and `/metrics`.
//!
//! - `GET /healthz`: 200 while the process serves requests.
//! - `GET /readyz`: 200 once every pipeline has started (running, finished or stopped
//!   on purpose), 503 with the pipelines that are not (starting, recovering, degraded).
//! - `GET /metrics`: every metric in Prometheus text format.
//!
//! It knows the runtime's pipeline states and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use funnel_runtime::{PipelineState, PipelineStatus};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// What the API serves.
#[derive(Clone)]
pub struct ApiState {
    /// The pipelines.
    pub pipelines: Arc<Vec<Arc<PipelineState>>>,
    /// The Prometheus recorder's handle.
    pub metrics: Option<PrometheusHandle>,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<ApiState>) -> (StatusCode, String) {
    let not_ready: Vec<String> = state
        .pipelines
        .iter()
        .filter_map(|p| {
            let status = p.current();
            match status {
                PipelineStatus::Running | PipelineStatus::Finished | PipelineStatus::Stopped => {
                    None
                }
                other => Some(format!("{}: {}", p.id, other.name())),
            }
        })
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", not_ready.join(", ")),
        )
    }
}

async fn metrics(State(state): State<ApiState>) -> (StatusCode, String) {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (StatusCode::NOT_FOUND, "metrics are disabled\n".into()),
    }
}

/// Serves the API on `address` until `shutdown` is cancelled.
///
/// # Errors
///
/// When the address cannot be bound.
pub async fn serve(
    address: SocketAddr,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "API listening");
    Ok(tokio::spawn(async move {
        let server = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "API server failed");
        }
    }))
}
