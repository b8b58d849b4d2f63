//! Funnel's HTTP API: Conduit's `/v1` API, `/info`, `/openapi`, `/healthz`, `/readyz`
//! and `/metrics`.
//!
//! - `/v1/...`: pipelines, connectors, processors and plugins in Conduit's JSON shape
//!   (see [`model`]); errors are `google.rpc.Status` objects ([`Status`]); `?pretty`
//!   indents. The OpenAPI document at `/openapi` is generated from the handlers.
//! - `GET /healthz`: `{"status":"SERVING"}` while the process serves requests;
//!   `?service=` names one of Conduit's services.
//! - `GET /readyz`: Conduit's newer shape, `{"status":"ready","pipelines":{total,
//!   running, degraded, degradedPipelines, invalidFiles}, "notReady":[...]}`: 200 once
//!   every pipeline has started (running, finished or stopped on purpose), 503
//!   (`not_ready`) naming the pipelines that are not (starting, recovering, degraded),
//!   are stalled (running with records in flight of which none was acknowledged for
//!   the stall threshold: a stage that hangs), the pipeline files that could not be
//!   used, and the connectors failing their connection test.
//! - `/v1/connectors/{id}/inspect`, `/v1/processors/{id}/inspect-in|-out`: WebSockets
//!   streaming the records passing there, one OpenCDC JSON text message each.
//! - `GET /`: the dashboard (see the `ui` module), built into the binary.
//! - `GET /metrics`: every metric in Prometheus text format, Funnel's and Conduit's
//!   names.
//!
//! A connection that sends no complete request header within [`HEADER_READ_TIMEOUT`]
//! is closed, so idle and half-open connections do not pile up. A body over
//! [`MAX_BODY_BYTES`] is refused; with a token ([`Security`]) every request but the
//! probes needs it; CORS is closed unless origins are allowed.
//!
//! It knows the small [`Pipelines`] interface and nothing else: it must never depend on
//! the runtime, the connectors or the processors (`funnel run` implements the
//! interface).

mod error;
mod gauges;
mod inspect;
pub mod model;
mod security;
mod stall;
mod ui;
mod v1;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Status;
pub use gauges::install_recorder;
pub use security::{MAX_BODY_BYTES, Security};
pub use stall::StallWatch;
pub use v1::{ApiDoc, SERVICES};

/// A boxed future, for the object-safe [`Pipelines`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a connection may take to send a request's header (the first one, or the
/// next one on a kept-alive connection) before it is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a pipeline is, as `/readyz` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Its workers run: ready unless stalled.
    Running,
    /// Finished or stopped on purpose: ready.
    Done,
    /// Stopped by an error that needs a person: not ready, with the error.
    Degraded(String),
    /// Not ready, with a word or two saying why (`recovering, next attempt at ...`).
    NotReady(String),
}

/// One pipeline, as `/readyz` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineView {
    /// The pipeline's ID.
    pub id: String,
    /// Where it is.
    pub phase: Phase,
    /// Records read so far.
    pub read: u64,
    /// Records acknowledged so far.
    pub acked: u64,
}

/// Where an inspector session watches records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InspectPoint {
    /// What a connector reads or is given to write.
    Connector,
    /// What goes into a processor.
    ProcessorIn,
    /// What a processor hands on.
    ProcessorOut,
}

/// An open inspector session.
pub trait Inspection: Send {
    /// The next record passing, as OpenCDC JSON; `None` once the session ended.
    fn next(&mut self) -> BoxFuture<'_, Option<String>>;
}

/// What the API needs to know of the pipelines.
pub trait Pipelines: Send + Sync + 'static {
    /// Every pipeline, now.
    fn views(&self) -> Vec<PipelineView>;

    /// The connectors of running pipelines that fail their connection test, one line
    /// each (empty when every test passes).
    fn failing_checks(&self) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>>;

    /// Every pipeline, in the API's shape, by ID.
    fn pipelines(&self) -> Vec<model::Pipeline> {
        Vec::new()
    }

    /// The pipeline files that could not be used.
    fn invalid_files(&self) -> Vec<model::InvalidFile> {
        Vec::new()
    }

    /// The dead-letter queue of pipeline `id`.
    fn dead_letter_queue(&self, id: &str) -> Result<model::DeadLetterQueue, Status> {
        Err(Status::unimplemented(format!(
            "no dead-letter queue of {id} here"
        )))
    }

    /// Replaces the dead-letter queue of pipeline `id`.
    fn update_dead_letter_queue<'a>(
        &'a self,
        id: &'a str,
        dlq: model::DeadLetterQueue,
    ) -> BoxFuture<'a, Result<model::DeadLetterQueue, Status>> {
        let _ = dlq;
        Box::pin(async move { Err(Status::unimplemented(format!("cannot update {id}"))) })
    }

    /// Checks a connector's plugin and settings without adding it anywhere, and runs
    /// its plugin's connection test when it has one.
    fn validate_connector(
        &self,
        request: model::ValidateConnectorRequest,
    ) -> BoxFuture<'_, Result<(), Status>> {
        let _ = request;
        Box::pin(async { Err(Status::unimplemented("cannot validate connectors")) })
    }

    /// Adds a processor to a pipeline or a connector.
    fn create_processor(
        &self,
        request: model::CreateProcessorRequest,
    ) -> BoxFuture<'_, Result<model::Processor, Status>> {
        let _ = request;
        Box::pin(async { Err(Status::unimplemented("cannot create processors")) })
    }

    /// Changes processor `id`.
    fn update_processor<'a>(
        &'a self,
        id: &'a str,
        request: model::UpdateProcessorRequest,
    ) -> BoxFuture<'a, Result<model::Processor, Status>> {
        let _ = request;
        Box::pin(async move { Err(Status::unimplemented(format!("cannot update {id}"))) })
    }

    /// Removes processor `id`.
    fn delete_processor<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move { Err(Status::unimplemented(format!("cannot delete {id}"))) })
    }

    /// Every connector of every pipeline.
    fn connectors(&self) -> Vec<model::Connector> {
        Vec::new()
    }

    /// Every processor of every pipeline and connector.
    fn processors(&self) -> Vec<model::Processor> {
        Vec::new()
    }

    /// The connector plugins this instance has.
    fn connector_plugins(&self) -> Vec<model::ConnectorPlugin> {
        Vec::new()
    }

    /// The processor plugins this instance has.
    fn processor_plugins(&self) -> Vec<model::ProcessorPlugin> {
        Vec::new()
    }

    /// Who runs which pipeline, when this instance is part of a fleet.
    fn cluster(&self) -> Option<model::Cluster> {
        None
    }

    /// Opens an inspector session on component `id` (a connector, or a processor) at
    /// `point`; a not-found status when there is no such component.
    fn inspect(&self, id: &str, point: InspectPoint) -> Result<Box<dyn Inspection>, Status> {
        let _ = point;
        Err(Status::unimplemented(format!("cannot inspect {id}")))
    }

    /// Starts pipeline `id`.
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move { Err(Status::unimplemented(format!("cannot start {id}"))) })
    }

    /// Stops pipeline `id`: gracefully, or at once with `force`; returns once it is
    /// stopped.
    fn stop<'a>(&'a self, id: &'a str, force: bool) -> BoxFuture<'a, Result<(), Status>> {
        let _ = force;
        Box::pin(async move { Err(Status::unimplemented(format!("cannot stop {id}"))) })
    }

    /// Creates a pipeline, stopped and with no connectors.
    fn create_pipeline(
        &self,
        config: model::PipelineConfig,
    ) -> BoxFuture<'_, Result<model::Pipeline, Status>> {
        let _ = config;
        Box::pin(async { Err(Status::unimplemented("cannot create pipelines")) })
    }

    /// Changes the name and description of pipeline `id`.
    fn update_pipeline<'a>(
        &'a self,
        id: &'a str,
        config: model::PipelineConfig,
    ) -> BoxFuture<'a, Result<model::Pipeline, Status>> {
        let _ = config;
        Box::pin(async move { Err(Status::unimplemented(format!("cannot update {id}"))) })
    }

    /// Deletes pipeline `id`.
    fn delete_pipeline<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move { Err(Status::unimplemented(format!("cannot delete {id}"))) })
    }

    /// Adds a connector to a pipeline.
    fn create_connector(
        &self,
        request: model::CreateConnectorRequest,
    ) -> BoxFuture<'_, Result<model::Connector, Status>> {
        let _ = request;
        Box::pin(async { Err(Status::unimplemented("cannot create connectors")) })
    }

    /// Changes connector `id`.
    fn update_connector<'a>(
        &'a self,
        id: &'a str,
        request: model::UpdateConnectorRequest,
    ) -> BoxFuture<'a, Result<model::Connector, Status>> {
        let _ = request;
        Box::pin(async move { Err(Status::unimplemented(format!("cannot update {id}"))) })
    }

    /// Removes connector `id`.
    fn delete_connector<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move { Err(Status::unimplemented(format!("cannot delete {id}"))) })
    }
}

/// What the API serves.
#[derive(Clone)]
pub struct ApiState {
    /// The pipelines.
    pub pipelines: Arc<dyn Pipelines>,
    /// The Prometheus recorder's handle.
    pub metrics: Option<PrometheusHandle>,
    /// Which running pipelines have stopped making progress.
    pub stall: Arc<StallWatch>,
    /// The token and CORS origins.
    pub security: Arc<Security>,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    let security = Arc::clone(&state.security);
    let api = Arc::clone(&state.pipelines);
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(v1::routes(api))
        .merge(ui::routes())
        .fallback(v1::not_found)
        .layer(axum::middleware::from_fn(v1::status_shaped))
        .layer(axum::middleware::from_fn(v1::pretty))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            security,
            security::guard,
        ))
}

/// Samples every pipeline's progress into `state.stall`.
fn observe(state: &ApiState) -> Vec<PipelineView> {
    let views = state.pipelines.views();
    for p in &views {
        state
            .stall
            .observe(&p.id, p.phase == Phase::Running, p.read, p.acked);
    }
    views
}

/// Whether every pipeline runs (or is done) and the connectors of the running ones
/// pass their connection test, in Conduit's newer shape
/// (`{"status":"ready","pipelines":{...}}`); 503 naming what is not.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready", body = model::Readiness),
    (status = 503, description = "not ready: what is not", body = model::Readiness)))]
async fn readyz(State(state): State<ApiState>) -> (StatusCode, axum::Json<model::Readiness>) {
    let views = observe(&state);
    let invalid_files = state.pipelines.invalid_files();
    let mut counts = model::ReadyPipelines {
        total: views.len() as u64,
        ..model::ReadyPipelines::default()
    };
    let mut not_ready = Vec::new();
    for p in views {
        match p.phase {
            Phase::Running => {
                counts.running += 1;
                if let Some(idle) = state.stall.stalled_for(&p.id) {
                    not_ready.push(format!(
                        "{}: stalled (records in flight, none acknowledged for {}s)",
                        p.id,
                        idle.as_secs()
                    ));
                }
            }
            Phase::Done => {}
            Phase::Degraded(why) => {
                counts.degraded += 1;
                counts.degraded_pipelines.push(p.id.clone());
                not_ready.push(format!("{}: degraded: {why}", p.id));
            }
            Phase::NotReady(why) => not_ready.push(format!("{}: {why}", p.id)),
        }
    }
    not_ready.extend(
        invalid_files
            .iter()
            .map(|f| format!("{}: {}", f.file, f.error)),
    );
    counts.invalid_files = invalid_files;
    not_ready.extend(state.pipelines.failing_checks().await);
    let (code, status) = if not_ready.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (
        code,
        axum::Json(model::Readiness {
            status: status.to_owned(),
            pipelines: counts,
            not_ready,
            cluster: state.pipelines.cluster(),
        }),
    )
}

/// Every metric in Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text", content_type = "text/plain")))]
async fn metrics(State(state): State<ApiState>) -> (StatusCode, String) {
    match &state.metrics {
        Some(handle) => {
            gauges::set(state.pipelines.as_ref());
            (StatusCode::OK, handle.render())
        }
        None => (StatusCode::NOT_FOUND, "metrics are disabled\n".into()),
    }
}

/// Serves the API on `address` until `shutdown` is cancelled; logs the address it
/// listens on (the port the system chose, for port 0).
///
/// # Errors
///
/// When the address cannot be bound.
pub async fn serve(
    address: SocketAddr,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address).await?;
    // The bound address: with port 0 the system picks one, and this line tells which.
    let address = listener.local_addr()?;
    tracing::info!(%address, "API listening");
    Ok(tokio::spawn(serve_on(
        listener,
        state,
        HEADER_READ_TIMEOUT,
        shutdown,
    )))
}

/// Serves the API on `listener`, sampling pipeline progress every second, until
/// `shutdown`; then lets the requests in progress finish.
pub async fn serve_on(
    listener: TcpListener,
    state: ApiState,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let service = hyper_util::service::TowerToHyperService::new(router(state.clone()));
    let mut connections = tokio::task::JoinSet::new();
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = sample.tick() => drop(observe(&state)),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "API: cannot accept a connection");
                        continue;
                    }
                };
                let service = service.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_read_timeout);
                    // With upgrades: the inspector's WebSockets.
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let mut connection = std::pin::pin!(connection);
                    tokio::select! {
                        result = connection.as_mut() => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "API connection closed");
                            }
                        }
                        () = shutdown.cancelled() => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
        }
    }
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Fixed pipelines and connection test failures.
    struct Fixed(Vec<PipelineView>, Vec<String>);

    impl Pipelines for Fixed {
        fn views(&self) -> Vec<PipelineView> {
            self.0.clone()
        }

        fn failing_checks(&self) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>> {
            Box::pin(async move { self.1.clone() })
        }
    }

    fn view(id: &str, phase: Phase) -> PipelineView {
        PipelineView {
            id: id.into(),
            phase,
            read: 0,
            acked: 0,
        }
    }

    fn with(pipelines: Vec<PipelineView>, failing: Vec<String>) -> ApiState {
        ApiState {
            pipelines: Arc::new(Fixed(pipelines, failing)),
            metrics: None,
            stall: Arc::new(StallWatch::new(Duration::from_secs(60))),
            security: Arc::default(),
        }
    }

    #[tokio::test]
    async fn readyz_is_ok_when_every_pipeline_runs_or_is_done() {
        let state = with(
            vec![view("a", Phase::Running), view("b", Phase::Done)],
            Vec::new(),
        );
        let (code, axum::Json(body)) = readyz(State(state)).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body.status, "ready");
        assert_eq!((body.pipelines.total, body.pipelines.running), (2, 1));
        assert!(body.not_ready.is_empty());
    }

    #[tokio::test]
    async fn readyz_names_the_pipelines_not_ready_and_the_failing_connectors() {
        let state = with(
            vec![
                view("a", Phase::Running),
                view("b", Phase::NotReady("recovering".into())),
            ],
            vec!["pipeline a: connector db: connection refused".into()],
        );
        let (status, axum::Json(body)) = readyz(State(state)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.status, "not_ready");
        assert_eq!(
            body.not_ready,
            [
                "b: recovering",
                "pipeline a: connector db: connection refused"
            ]
        );
    }

    fn state() -> ApiState {
        ApiState {
            pipelines: Arc::new(Fixed(Vec::new(), Vec::new())),
            metrics: None,
            stall: Arc::new(StallWatch::new(Duration::from_secs(60))),
            security: Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_that_sends_no_header_is_closed_after_the_header_read_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_on(
            listener,
            state(),
            Duration::from_secs(10),
            shutdown.clone(),
        ));
        let start = tokio::time::Instant::now();
        let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut buf = Vec::new();
        // The server closes the connection; on the paused clock this takes no real time.
        let _ = idle.read_to_end(&mut buf).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(10), "closed after {waited:?}");
        assert!(waited < Duration::from_secs(12), "closed after {waited:?}");

        // A request that is sent is answered.
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        shutdown.cancel();
        server.await.unwrap();
    }
}
