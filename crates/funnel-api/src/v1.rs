//! The `/v1` routes, `/info`, `/healthz` and `/openapi`: Conduit's HTTP API over the
//! [`Pipelines`] interface.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::error::Status;
use crate::model::{
    Cluster, Connector, ConnectorList, ConnectorPlugin, ConnectorPluginList,
    CreateConnectorRequest, CreateProcessorRequest, DeadLetterQueue, Empty, Health, Info, Pipeline,
    PipelineList, PipelineRequest, Processor, ProcessorList, ProcessorPlugin, ProcessorPluginList,
    StopRequest, UpdateConnectorRequest, UpdateProcessorRequest, ValidateConnectorRequest,
};
use crate::{MAX_BODY_BYTES, Pipelines};

type Api = Arc<dyn Pipelines>;
type Answer<T> = Result<Json<T>, Status>;

/// The services `/healthz?service=` knows, as Conduit registers them.
pub const SERVICES: [&str; 5] = [
    "PipelineService",
    "ConnectorService",
    "ProcessorService",
    "ConnectorPluginService",
    "ProcessorPluginService",
];

/// A JSON body; a body that is not one is a `google.rpc.Status` error.
pub(crate) struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    8
                } else {
                    3
                };
                let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes")
                } else {
                    rejection.body_text()
                };
                Err((status, Json(Status::new(code, message))).into_response())
            }
        }
    }
}

/// Query of `GET /v1/pipelines` and the plugin lists.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct NameFilter {
    /// Only those whose name matches this regular expression, anywhere in the name as
    /// in Conduit (`ord` matches `orders`, `^ord` only names starting with it).
    name: Option<String>,
}

impl NameFilter {
    /// The expression; a bad one is an invalid argument (400, code 3).
    fn regex(&self) -> Result<Option<regex::Regex>, Status> {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(|n| {
                regex::Regex::new(n).map_err(|e| {
                    Status::invalid_argument(format!("name {n:?} is not a regular expression: {e}"))
                })
            })
            .transpose()
    }
}

/// Query of `GET /v1/connectors`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct ConnectorFilter {
    /// Only the connectors of this pipeline.
    pipeline_id: Option<String>,
}

/// Query of `GET /v1/processors`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct ProcessorFilter {
    /// Only the processors attached to these pipelines or connectors (comma-separated).
    parent_ids: Option<String>,
}

/// Query of `GET /healthz`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub(crate) struct HealthQuery {
    /// One service to check (`PipelineService`, `ConnectorService`,
    /// `ProcessorService`, `ConnectorPluginService`, `ProcessorPluginService`).
    service: Option<String>,
}

fn matches(name: &str, filter: Option<&regex::Regex>) -> bool {
    filter.is_none_or(|f| f.is_match(name))
}

fn pipeline(api: &Api, id: &str) -> Result<Pipeline, Status> {
    api.pipelines()
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| Status::not_found(format!("pipeline {id:?} not found")))
}

/// List the pipelines.
#[utoipa::path(get, path = "/v1/pipelines", params(NameFilter),
    responses((status = 200, body = PipelineList), (status = "default", body = Status)))]
pub(crate) async fn list_pipelines(
    State(api): State<Api>,
    Query(q): Query<NameFilter>,
) -> Answer<PipelineList> {
    let filter = q.regex()?;
    let pipelines = api
        .pipelines()
        .into_iter()
        .filter(|p| matches(&p.config.name, filter.as_ref()))
        .collect();
    Ok(Json(PipelineList {
        pipelines,
        invalid_files: api.invalid_files(),
    }))
}

/// Create a pipeline (with no connectors yet; it starts stopped).
#[utoipa::path(post, path = "/v1/pipelines", request_body = PipelineRequest,
    responses((status = 200, body = Pipeline), (status = "default", body = Status)))]
pub(crate) async fn create_pipeline(
    State(api): State<Api>,
    JsonBody(req): JsonBody<PipelineRequest>,
) -> Answer<Pipeline> {
    api.create_pipeline(req.config).await.map(Json)
}

/// Get a pipeline.
#[utoipa::path(get, path = "/v1/pipelines/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Pipeline), (status = "default", body = Status)))]
pub(crate) async fn get_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Answer<Pipeline> {
    pipeline(&api, &id).map(Json)
}

/// Change a pipeline's name and description.
#[utoipa::path(put, path = "/v1/pipelines/{id}", params(("id" = String, Path)),
    request_body = PipelineRequest,
    responses((status = 200, body = Pipeline), (status = "default", body = Status)))]
pub(crate) async fn update_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<PipelineRequest>,
) -> Answer<Pipeline> {
    api.update_pipeline(&id, req.config).await.map(Json)
}

/// Delete a stopped pipeline created through the API, with its connectors.
#[utoipa::path(delete, path = "/v1/pipelines/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Empty), (status = "default", body = Status)))]
pub(crate) async fn delete_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Answer<Empty> {
    api.delete_pipeline(&id).await.map(|()| Json(Empty {}))
}

/// Start a pipeline.
#[utoipa::path(post, path = "/v1/pipelines/{id}/start", params(("id" = String, Path)),
    responses((status = 200, body = Empty), (status = "default", body = Status)))]
pub(crate) async fn start_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Answer<Empty> {
    api.start(&id).await.map(|()| Json(Empty {}))
}

/// Stop a pipeline: gracefully (every record in flight delivered), or at once with
/// `force`.
#[utoipa::path(post, path = "/v1/pipelines/{id}/stop", params(("id" = String, Path)),
    request_body = StopRequest,
    responses((status = 200, body = Empty), (status = "default", body = Status)))]
pub(crate) async fn stop_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Answer<Empty> {
    let force = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        serde_json::from_slice::<StopRequest>(&body)
            .map_err(|e| Status::invalid_argument(format!("the request body: {e}")))?
            .force
    };
    api.stop(&id, force).await.map(|()| Json(Empty {}))
}

/// Get a pipeline's dead-letter queue.
#[utoipa::path(get, path = "/v1/pipelines/{id}/dead-letter-queue", params(("id" = String, Path)),
    responses((status = 200, body = DeadLetterQueue), (status = "default", body = Status)))]
pub(crate) async fn get_dead_letter_queue(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Answer<DeadLetterQueue> {
    api.dead_letter_queue(&id).map(Json)
}

/// Replace the dead-letter queue of a stopped pipeline created through the API.
#[utoipa::path(put, path = "/v1/pipelines/{id}/dead-letter-queue", params(("id" = String, Path)),
    request_body = DeadLetterQueue,
    responses((status = 200, body = DeadLetterQueue), (status = "default", body = Status)))]
pub(crate) async fn update_dead_letter_queue(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonBody(dlq): JsonBody<DeadLetterQueue>,
) -> Answer<DeadLetterQueue> {
    api.update_dead_letter_queue(&id, dlq).await.map(Json)
}

/// Check a connector's plugin and settings without adding it anywhere, and run its
/// plugin's connection test when it has one.
#[utoipa::path(post, path = "/v1/connectors/validate", request_body = ValidateConnectorRequest,
    responses((status = 200, body = Empty), (status = "default", body = Status)))]
pub(crate) async fn validate_connector(
    State(api): State<Api>,
    JsonBody(req): JsonBody<ValidateConnectorRequest>,
) -> Answer<Empty> {
    api.validate_connector(req).await.map(|()| Json(Empty {}))
}

/// List the connectors.
#[utoipa::path(get, path = "/v1/connectors", params(ConnectorFilter),
    responses((status = 200, body = ConnectorList), (status = "default", body = Status)))]
pub(crate) async fn list_connectors(
    State(api): State<Api>,
    Query(q): Query<ConnectorFilter>,
) -> Json<ConnectorList> {
    let connectors = api
        .connectors()
        .into_iter()
        .filter(|c| q.pipeline_id.as_ref().is_none_or(|p| *p == c.pipeline_id))
        .collect();
    Json(ConnectorList { connectors })
}

/// Add a connector to a stopped pipeline created through the API.
#[utoipa::path(post, path = "/v1/connectors", request_body = CreateConnectorRequest,
    responses((status = 200, body = Connector), (status = "default", body = Status)))]
pub(crate) async fn create_connector(
    State(api): State<Api>,
    JsonBody(req): JsonBody<CreateConnectorRequest>,
) -> Answer<Connector> {
    api.create_connector(req).await.map(Json)
}

/// Get a connector.
#[utoipa::path(get, path = "/v1/connectors/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Connector), (status = "default", body = Status)))]
pub(crate) async fn get_connector(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Answer<Connector> {
    api.connectors()
        .into_iter()
        .find(|c| c.id == id)
        .map(Json)
        .ok_or_else(|| Status::not_found(format!("connector {id:?} not found")))
}

/// Change a connector's settings (its pipeline must be stopped and created through
/// the API).
#[utoipa::path(put, path = "/v1/connectors/{id}", params(("id" = String, Path)),
    request_body = UpdateConnectorRequest,
    responses((status = 200, body = Connector), (status = "default", body = Status)))]
pub(crate) async fn update_connector(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateConnectorRequest>,
) -> Answer<Connector> {
    api.update_connector(&id, req).await.map(Json)
}

/// Remove a connector from a stopped pipeline created through the API.
#[utoipa::path(delete, path = "/v1/connectors/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Empty), (status = "default", body = Status)))]
pub(crate) async fn delete_connector(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Answer<Empty> {
    api.delete_connector(&id).await.map(|()| Json(Empty {}))
}

/// List the connector plugins with their parameters.
#[utoipa::path(get, path = "/v1/connectors/plugins", params(NameFilter),
    responses((status = 200, body = ConnectorPluginList), (status = "default", body = Status)))]
pub(crate) async fn list_connector_plugins(
    State(api): State<Api>,
    Query(q): Query<NameFilter>,
) -> Answer<ConnectorPluginList> {
    let filter = q.regex()?;
    let plugins: Vec<ConnectorPlugin> = api
        .connector_plugins()
        .into_iter()
        .filter(|p| matches(&p.name, filter.as_ref()))
        .collect();
    Ok(Json(ConnectorPluginList { plugins }))
}

/// List the processors.
#[utoipa::path(get, path = "/v1/processors", params(ProcessorFilter),
    responses((status = 200, body = ProcessorList), (status = "default", body = Status)))]
pub(crate) async fn list_processors(
    State(api): State<Api>,
    Query(q): Query<ProcessorFilter>,
) -> Json<ProcessorList> {
    let parents: Option<Vec<&str>> = q
        .parent_ids
        .as_deref()
        .map(|ids| ids.split(',').filter(|s| !s.is_empty()).collect());
    let processors = api
        .processors()
        .into_iter()
        .filter(|p| {
            parents
                .as_ref()
                .is_none_or(|ids| ids.contains(&p.parent.id.as_str()))
        })
        .collect();
    Json(ProcessorList { processors })
}

/// Get a processor.
#[utoipa::path(get, path = "/v1/processors/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Processor), (status = "default", body = Status)))]
pub(crate) async fn get_processor(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Answer<Processor> {
    api.processors()
        .into_iter()
        .find(|p| p.id == id)
        .map(Json)
        .ok_or_else(|| Status::not_found(format!("processor {id:?} not found")))
}

/// Add a processor to a stopped pipeline created through the API, or to one of its
/// connectors.
#[utoipa::path(post, path = "/v1/processors", request_body = CreateProcessorRequest,
    responses((status = 200, body = Processor), (status = "default", body = Status)))]
pub(crate) async fn create_processor(
    State(api): State<Api>,
    JsonBody(req): JsonBody<CreateProcessorRequest>,
) -> Answer<Processor> {
    api.create_processor(req).await.map(Json)
}

/// Change a processor's settings and condition.
#[utoipa::path(put, path = "/v1/processors/{id}", params(("id" = String, Path)),
    request_body = UpdateProcessorRequest,
    responses((status = 200, body = Processor), (status = "default", body = Status)))]
pub(crate) async fn update_processor(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateProcessorRequest>,
) -> Answer<Processor> {
    api.update_processor(&id, req).await.map(Json)
}

/// Remove a processor.
#[utoipa::path(delete, path = "/v1/processors/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Empty), (status = "default", body = Status)))]
pub(crate) async fn delete_processor(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Answer<Empty> {
    api.delete_processor(&id).await.map(|()| Json(Empty {}))
}

/// List the processor plugins with their parameters.
#[utoipa::path(get, path = "/v1/processors/plugins", params(NameFilter),
    responses((status = 200, body = ProcessorPluginList), (status = "default", body = Status)))]
pub(crate) async fn list_processor_plugins(
    State(api): State<Api>,
    Query(q): Query<NameFilter>,
) -> Answer<ProcessorPluginList> {
    let filter = q.regex()?;
    let plugins: Vec<ProcessorPlugin> = api
        .processor_plugins()
        .into_iter()
        .filter(|p| matches(&p.name, filter.as_ref()))
        .collect();
    Ok(Json(ProcessorPluginList { plugins }))
}

/// Funnel's version, operating system and architecture.
#[utoipa::path(get, path = "/info", responses((status = 200, body = Info)))]
pub(crate) async fn info() -> Json<Info> {
    Json(Info {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
    })
}

/// Who runs which pipeline in a fleet of instances sharing one store (404 when this
/// instance is not part of one).
#[utoipa::path(get, path = "/v1/cluster", responses((status = 200, body = Cluster), (status = "default", body = Status)))]
pub(crate) async fn cluster(State(api): State<Api>) -> Answer<Cluster> {
    api.cluster().map(Json).ok_or_else(|| {
        Status::not_found("this instance is not part of a fleet (see --cluster.enabled)")
    })
}

/// Whether the process, or one of its services, serves requests.
#[utoipa::path(get, path = "/healthz", params(HealthQuery),
    responses((status = 200, body = Health), (status = "default", body = Status)))]
pub(crate) async fn healthz(Query(q): Query<HealthQuery>) -> Answer<Health> {
    match q.service.as_deref() {
        None | Some("") => {}
        Some(s) if SERVICES.contains(&s) => {}
        Some(s) => {
            return Err(Status::not_found(format!(
                "unknown service {s:?}; known: {}",
                SERVICES.join(", ")
            )));
        }
    }
    Ok(Json(Health {
        status: "SERVING".to_owned(),
    }))
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi", responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The API's OpenAPI document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Funnel API",
        description = "Conduit's HTTP API, served by Funnel."
    ),
    paths(
        list_pipelines,
        create_pipeline,
        get_pipeline,
        update_pipeline,
        delete_pipeline,
        start_pipeline,
        stop_pipeline,
        get_dead_letter_queue,
        update_dead_letter_queue,
        list_connectors,
        create_connector,
        validate_connector,
        get_connector,
        update_connector,
        delete_connector,
        list_connector_plugins,
        list_processors,
        create_processor,
        get_processor,
        update_processor,
        delete_processor,
        list_processor_plugins,
        info,
        cluster,
        healthz,
        openapi,
        crate::readyz,
        crate::metrics,
        crate::inspect::connector,
        crate::inspect::processor_in,
        crate::inspect::processor_out
    ),
    components(schemas(Status))
)]
pub struct ApiDoc;

/// The routes of this module.
pub(crate) fn routes(api: Api) -> Router {
    Router::new()
        .route("/v1/pipelines", get(list_pipelines).post(create_pipeline))
        .route(
            "/v1/pipelines/{id}",
            get(get_pipeline)
                .put(update_pipeline)
                .delete(delete_pipeline),
        )
        .route("/v1/pipelines/{id}/start", post(start_pipeline))
        .route("/v1/pipelines/{id}/stop", post(stop_pipeline))
        .route(
            "/v1/pipelines/{id}/dead-letter-queue",
            get(get_dead_letter_queue).put(update_dead_letter_queue),
        )
        .route("/v1/connectors/validate", post(validate_connector))
        .route(
            "/v1/connectors",
            get(list_connectors).post(create_connector),
        )
        .route("/v1/connectors/plugins", get(list_connector_plugins))
        .route(
            "/v1/connectors/{id}",
            get(get_connector)
                .put(update_connector)
                .delete(delete_connector),
        )
        .route(
            "/v1/processors",
            get(list_processors).post(create_processor),
        )
        .route("/v1/processors/plugins", get(list_processor_plugins))
        .route(
            "/v1/processors/{id}",
            get(get_processor)
                .put(update_processor)
                .delete(delete_processor),
        )
        .route(
            "/v1/connectors/{id}/inspect",
            get(crate::inspect::connector),
        )
        .route(
            "/v1/processors/{id}/inspect-in",
            get(crate::inspect::processor_in),
        )
        .route(
            "/v1/processors/{id}/inspect-out",
            get(crate::inspect::processor_out),
        )
        .route("/info", get(info))
        .route("/v1/cluster", get(cluster))
        .route("/healthz", get(healthz))
        .route("/openapi", get(openapi))
        .with_state(api)
}

/// Indents JSON answers when the URL has `?pretty` or the request accepts
/// `application/json+pretty`.
pub(crate) async fn pretty(request: Request, next: Next) -> Response {
    let wants = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "pretty" || kv.starts_with("pretty="))
    }) || request
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json+pretty"));
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
    if !wants || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Status::internal("cannot read the answer").into_response();
    };
    let text = serde_json::from_slice::<serde_json::Value>(&bytes)
        .and_then(|v| serde_json::to_vec_pretty(&v))
        .unwrap_or_else(|_| bytes.to_vec());
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(text))
}

/// Turns every error answer that is not JSON into a `google.rpc.Status` with the same
/// HTTP status: axum's own refusals (a method the route does not serve, a query or
/// path that does not parse, a WebSocket route asked without an upgrade) and plain
/// text errors. Headers such as `Allow` are kept; the text becomes the message.
pub(crate) async fn status_shaped(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut shaped = (status, Json(Status::from_http(status, message))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().append(name, value.clone());
        }
    }
    shaped
}

/// A `google.rpc.Status` 404 for every path no route serves.
pub(crate) async fn not_found(request: Request) -> Status {
    Status::not_found(format!(
        "no route {} {}",
        request.method(),
        request.uri().path()
    ))
}
