//! The API over HTTP, served on a loopback port, with pipelines kept in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use funnel_api::model::{
    Connector, ConnectorConfig, ConnectorPlugin, ConnectorType, CreateConnectorRequest, Parameter,
    ParameterType, Pipeline, PipelineConfig, PipelineState, PipelineStatus, ProvisionedBy,
};
use funnel_api::{
    ApiState, BoxFuture, Phase, PipelineView, Pipelines, Security, StallWatch, Status,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Pipelines in memory: `file` is provisioned from a file, others are created here.
#[derive(Default)]
struct Memory {
    pipelines: Mutex<BTreeMap<String, Pipeline>>,
    connectors: Mutex<Vec<Connector>>,
}

fn pipeline(id: &str, by: ProvisionedBy) -> Pipeline {
    Pipeline {
        id: id.into(),
        state: PipelineState {
            status: PipelineStatus::Stopped,
            error: String::new(),
        },
        config: PipelineConfig {
            name: id.into(),
            description: String::new(),
        },
        connector_ids: Vec::new(),
        processor_ids: Vec::new(),
        provisioned_by: by,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        records_read: 0,
        records_acked: 0,
    }
}

impl Memory {
    fn new() -> Self {
        let m = Self::default();
        m.pipelines
            .lock()
            .unwrap()
            .insert("file".into(), pipeline("file", ProvisionedBy::Config));
        m
    }

    fn set(&self, id: &str, status: PipelineStatus) -> Result<(), Status> {
        let mut all = self.pipelines.lock().unwrap();
        let p = all
            .get_mut(id)
            .ok_or_else(|| Status::not_found(format!("pipeline {id:?} not found")))?;
        p.state.status = status;
        Ok(())
    }
}

impl Pipelines for Memory {
    fn views(&self) -> Vec<PipelineView> {
        Vec::new()
    }

    fn failing_checks(&self) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async { Vec::new() })
    }

    fn pipelines(&self) -> Vec<Pipeline> {
        self.pipelines.lock().unwrap().values().cloned().collect()
    }

    fn connectors(&self) -> Vec<Connector> {
        self.connectors.lock().unwrap().clone()
    }

    fn connector_plugins(&self) -> Vec<ConnectorPlugin> {
        let param = Parameter {
            description: "the file".into(),
            default: String::new(),
            kind: ParameterType::String,
            validations: Vec::new(),
        };
        vec![ConnectorPlugin {
            name: "builtin:file".into(),
            summary: "files".into(),
            description: String::new(),
            version: "v0.1.0".into(),
            author: String::new(),
            source_params: BTreeMap::from([("path".into(), param.clone())]),
            destination_params: BTreeMap::from([("path".into(), param)]),
        }]
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move { self.set(id, PipelineStatus::Running) })
    }

    fn stop<'a>(&'a self, id: &'a str, _force: bool) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move { self.set(id, PipelineStatus::Stopped) })
    }

    fn create_pipeline(&self, config: PipelineConfig) -> BoxFuture<'_, Result<Pipeline, Status>> {
        Box::pin(async move {
            let mut p = pipeline(&config.name, ProvisionedBy::Api);
            p.config = config;
            self.pipelines
                .lock()
                .unwrap()
                .insert(p.id.clone(), p.clone());
            Ok(p)
        })
    }

    fn delete_pipeline<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let mut all = self.pipelines.lock().unwrap();
            match all.get(id) {
                None => Err(Status::not_found(format!("pipeline {id:?} not found"))),
                Some(p) if p.provisioned_by == ProvisionedBy::Config => Err(
                    Status::failed_precondition("provisioned from a file: read-only"),
                ),
                Some(_) => {
                    all.remove(id);
                    Ok(())
                }
            }
        })
    }

    fn create_connector(
        &self,
        request: CreateConnectorRequest,
    ) -> BoxFuture<'_, Result<Connector, Status>> {
        Box::pin(async move {
            let c = Connector {
                id: format!("{}:{}", request.pipeline_id, request.config.name),
                kind: request.kind,
                plugin: request.plugin,
                pipeline_id: request.pipeline_id,
                config: request.config,
                processor_ids: Vec::new(),
                source_state: None,
                created_at: String::new(),
                updated_at: String::new(),
            };
            self.connectors.lock().unwrap().push(c.clone());
            Ok(c)
        })
    }
}

struct Server {
    address: std::net::SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve(security: Security) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let state = ApiState {
        pipelines: Arc::new(Memory::new()),
        metrics: None,
        stall: Arc::new(StallWatch::new(Duration::from_secs(60))),
        security: Arc::new(security),
    };
    tokio::spawn(funnel_api::serve_on(
        listener,
        state,
        Duration::from_secs(10),
        shutdown.clone(),
    ));
    Server { address, shutdown }
}

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request with `extra` header lines; the answer, unchunked.
async fn request(server: &Server, method: &str, path: &str, extra: &str, body: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Length: {}\r\n",
        body.len()
    );
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    stream
        .write_all(format!("{head}{content_type}\r\n{body}").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers: headers.to_owned(),
        body,
    }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

async fn get(server: &Server, path: &str) -> Answer {
    request(server, "GET", path, "", "").await
}

/// `POST path` with the JSON `body`.
async fn post(server: &Server, path: &str, body: &str) -> Answer {
    request(server, "POST", path, "", body).await
}

/// `GET path` with one more header (`Name: value`).
async fn get_with(server: &Server, path: &str, header: &str) -> Answer {
    request(server, "GET", path, &format!("{header}\r\n"), "").await
}

/// Asserts that `answer` has HTTP status `status` and is a google.rpc.Status of `code`
/// with a message.
fn assert_status_shaped(answer: &Answer, status: u16, code: i64) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["code"], code, "{}", answer.body);
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        answer.body
    );
    assert_eq!(json["details"], Value::Array(Vec::new()), "{}", answer.body);
}

#[tokio::test]
async fn pipelines_are_listed_created_started_stopped_and_deleted_in_conduits_json_shape() {
    let server = serve(Security::default()).await;
    let created = post(
        &server,
        "/v1/pipelines",
        r#"{"config":{"name":"orders","description":"d"}}"#,
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.json()["config"]["name"], "orders");
    assert_eq!(created.json()["provisionedBy"], "PROVISIONED_BY_API");
    assert_eq!(created.json()["connectorIds"], Value::Array(Vec::new()));

    let connector = post(
        &server,
        "/v1/connectors",
        r#"{"type":"TYPE_SOURCE","plugin":"builtin:file","pipelineId":"orders","config":{"name":"in","settings":{"path":"x"}}}"#,
    )
    .await;
    assert_eq!(connector.status, 200, "{}", connector.body);
    assert_eq!(connector.json()["type"], "TYPE_SOURCE");
    let got = get(&server, "/v1/connectors/orders:in").await;
    assert_eq!(got.json()["pipelineId"], "orders");
    let listed = get(&server, "/v1/connectors?pipeline_id=orders").await;
    assert_eq!(listed.json()["connectors"].as_array().unwrap().len(), 1);
    let none = get(&server, "/v1/connectors?pipeline_id=file").await;
    assert_eq!(none.json()["connectors"], Value::Array(Vec::new()));

    let start = post(&server, "/v1/pipelines/orders/start", "").await;
    assert_eq!((start.status, start.body.as_str()), (200, "{}"));
    let got = get(&server, "/v1/pipelines/orders").await;
    assert_eq!(got.json()["state"]["status"], "STATUS_RUNNING");
    let stop = post(&server, "/v1/pipelines/orders/stop", r#"{"force":true}"#).await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    let list = get(&server, "/v1/pipelines").await.json();
    let statuses: Vec<(&str, &str)> = list["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap(),
                p["state"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [("file", "STATUS_STOPPED"), ("orders", "STATUS_STOPPED")]
    );
    let filtered = get(&server, "/v1/pipelines?name=ord").await.json();
    assert_eq!(filtered["pipelines"].as_array().unwrap().len(), 1);
    // `name` is a regular expression, as Conduit's.
    let anchored = get(&server, "/v1/pipelines?name=%5E(file%7Cord)")
        .await
        .json();
    assert_eq!(anchored["pipelines"].as_array().unwrap().len(), 2);
    let none = get(&server, "/v1/pipelines?name=%5Erders").await.json();
    assert_eq!(none["pipelines"], Value::Array(Vec::new()));
    let bad = get(&server, "/v1/pipelines?name=(").await;
    assert_status_shaped(&bad, 400, 3);

    let deleted = request(&server, "DELETE", "/v1/pipelines/orders", "", "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let gone = get(&server, "/v1/pipelines/orders").await;
    assert_status_shaped(&gone, 404, 5);
}

#[tokio::test]
async fn every_error_is_a_google_rpc_status_with_the_http_status_of_its_code() {
    let server = serve(Security::default()).await;
    let refused = request(&server, "DELETE", "/v1/pipelines/file", "", "").await;
    assert_status_shaped(&refused, 400, 9);

    let missing = get(&server, "/v1/processors/nope").await;
    assert_status_shaped(&missing, 404, 5);

    let bad_json = post(&server, "/v1/pipelines", "{not json").await;
    assert_status_shaped(&bad_json, 400, 3);

    let bad_enum = post(
        &server,
        "/v1/connectors",
        r#"{"type":"TYPE_SIDEWAYS","plugin":"builtin:file","pipelineId":"x"}"#,
    )
    .await;
    assert_status_shaped(&bad_enum, 422, 3);

    let no_route = get(&server, "/v2/nothing").await;
    assert_status_shaped(&no_route, 404, 5);

    let unimplemented = request(&server, "DELETE", "/v1/connectors/x:y", "", "").await;
    assert_status_shaped(&unimplemented, 501, 12);

    // axum's own refusals are shaped too: a method the route does not serve (its
    // `Allow` header kept), a query that does not parse, a WebSocket route asked
    // without an upgrade, a body that is not declared JSON.
    let wrong_method = request(&server, "PATCH", "/v1/pipelines", "", "").await;
    assert_status_shaped(&wrong_method, 405, 12);
    assert!(
        wrong_method
            .header("allow")
            .is_some_and(|a| a.contains("GET")),
        "{}",
        wrong_method.headers
    );
    let bad_query = get(&server, "/v1/pipelines?name=a&name=b").await;
    assert_status_shaped(&bad_query, 400, 3);
    let no_upgrade = get(&server, "/v1/connectors/file:in/inspect").await;
    assert_status_shaped(&no_upgrade, 400, 3);
    let not_json = request(
        &server,
        "POST",
        "/v1/pipelines",
        "Content-Type: text/plain\r\n",
        "",
    )
    .await;
    assert_status_shaped(&not_json, 415, 3);
    // The answer stays prettied on request.
    let pretty = request(&server, "PATCH", "/v1/pipelines?pretty", "", "").await;
    assert!(pretty.body.contains("\n  \"code\": 12"), "{}", pretty.body);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let server = serve(Security::default()).await;
    let description = "x".repeat(funnel_api::MAX_BODY_BYTES);
    let body = format!(r#"{{"config":{{"name":"big","description":"{description}"}}}}"#);
    let answer = post(&server, "/v1/pipelines", &body).await;
    assert_status_shaped(&answer, 413, 8);
}

#[tokio::test]
async fn pretty_indents_json_answers() {
    let server = serve(Security::default()).await;
    let compact = get(&server, "/v1/pipelines/file").await;
    assert!(!compact.body.contains('\n'), "{}", compact.body);
    let pretty = get(&server, "/v1/pipelines/file?pretty").await;
    assert!(
        pretty.body.contains("\n  \"id\": \"file\""),
        "{}",
        pretty.body
    );
    let accept = get_with(
        &server,
        "/v1/pipelines/file",
        "Accept: application/json+pretty",
    )
    .await;
    assert_eq!(accept.body, pretty.body);
    let error = get(&server, "/v1/pipelines/nope?pretty").await;
    assert!(error.body.contains("\n  \"code\": 5"), "{}", error.body);
}

#[tokio::test]
async fn healthz_serves_and_knows_conduits_service_names() {
    let server = serve(Security::default()).await;
    let all = get(&server, "/healthz").await;
    assert_eq!(
        (all.status, all.json()),
        (200, serde_json::json!({"status": "SERVING"}))
    );
    for service in funnel_api::SERVICES {
        let one = get(&server, &format!("/healthz?service={service}")).await;
        assert_eq!(one.status, 200, "{service}");
    }
    let unknown = get(&server, "/healthz?service=Nope").await;
    assert_status_shaped(&unknown, 404, 5);
    let info = get(&server, "/info").await.json();
    assert_eq!(info["os"], std::env::consts::OS);
    assert_eq!(info["arch"], std::env::consts::ARCH);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn connector_plugins_list_their_parameter_specs() {
    let server = serve(Security::default()).await;
    let plugins = get(&server, "/v1/connectors/plugins?name=file")
        .await
        .json();
    let file = &plugins["plugins"][0];
    assert_eq!(file["name"], "builtin:file");
    assert_eq!(file["sourceParams"]["path"]["type"], "TYPE_STRING");
    let none = get(&server, "/v1/connectors/plugins?name=kafka")
        .await
        .json();
    assert_eq!(none["plugins"], Value::Array(Vec::new()));
}

#[tokio::test]
async fn every_route_of_the_openapi_document_answers() {
    let server = serve(Security::default()).await;
    let doc = get(&server, "/openapi").await.json();
    assert_eq!(
        doc,
        serde_json::to_value(<funnel_api::ApiDoc as utoipa::OpenApi>::openapi()).unwrap()
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{:?}", paths.keys());
    let mut answered = 0;
    for (path, operations) in paths {
        // An existing resource for every parameter.
        let concrete = path.replace("{id}", "file");
        for method in operations.as_object().unwrap().keys() {
            let body = if method == "get" || method == "delete" {
                ""
            } else {
                "{}"
            };
            let answer = request(&server, &method.to_uppercase(), &concrete, "", body).await;
            assert!(
                !(answer.status == 404 && answer.body.contains("no route")),
                "{method} {path}: no route ({})",
                answer.body
            );
            assert_ne!(answer.status, 405, "{method} {path}");
            assert!(
                answer.status < 500 || answer.status == 501,
                "{method} {path}: {}",
                answer.body
            );
            // Errors are `google.rpc.Status` objects.
            if answer.status >= 400 && path != "/readyz" {
                let json = answer.json();
                assert!(
                    json["code"].as_i64().is_some_and(|c| c > 0)
                        && json["message"].is_string()
                        && json["details"].is_array(),
                    "{method} {path}: {}",
                    answer.body
                );
            } else if !["/readyz", "/metrics"].contains(&path.as_str()) {
                let _ = answer.json();
            }
            answered += 1;
        }
    }
    assert!(answered >= 19, "{answered}");
}

#[tokio::test]
async fn with_a_token_requests_without_it_get_401_and_with_it_200_and_probes_stay_open() {
    let server = serve(Security {
        token: Some("s3cret-token-0123456789".into()),
        cors_allowed_origins: Vec::new(),
    })
    .await;
    let without = get(&server, "/v1/pipelines").await;
    assert_status_shaped(&without, 401, 16);
    assert_eq!(
        without.header("www-authenticate").as_deref(),
        Some("Bearer")
    );
    let wrong = get_with(
        &server,
        "/v1/pipelines",
        "Authorization: Bearer s3cret-token-012345678",
    )
    .await;
    assert_eq!(wrong.status, 401);
    let with = get_with(
        &server,
        "/v1/pipelines",
        "Authorization: Bearer s3cret-token-0123456789",
    )
    .await;
    assert_eq!(with.status, 200, "{}", with.body);
    assert_eq!(get(&server, "/metrics").await.status, 401);
    assert_eq!(get(&server, "/healthz").await.status, 200);
    assert_eq!(get(&server, "/readyz").await.status, 200);
}

#[tokio::test]
async fn cors_is_closed_by_default_and_open_to_the_allowed_origins_only() {
    let closed = serve(Security::default()).await;
    let answer = get_with(&closed, "/v1/pipelines", "Origin: http://evil.example").await;
    assert_eq!(answer.header("access-control-allow-origin"), None);

    let open = serve(Security {
        token: None,
        cors_allowed_origins: vec!["http://localhost:4200".into()],
    })
    .await;
    let allowed = get_with(&open, "/v1/pipelines", "Origin: http://localhost:4200").await;
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:4200")
    );
    let other = get_with(&open, "/v1/pipelines", "Origin: http://evil.example").await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    let preflight = request(
        &open,
        "OPTIONS",
        "/v1/pipelines",
        "Origin: http://localhost:4200\r\nAccess-Control-Request-Method: POST\r\n",
        "",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-methods").as_deref(),
        Some("GET, POST, PUT, DELETE")
    );
}

/// `Phase` and `PipelineView` stay the readiness interface.
#[test]
fn views_are_plain_data() {
    let v = PipelineView {
        id: "p".into(),
        phase: Phase::Running,
        read: 1,
        acked: 1,
    };
    assert_eq!(v.clone(), v);
    let _ = ConnectorConfig::default();
    let _ = ConnectorType::Destination;
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_without_a_token_and_loads_nothing_from_elsewhere()
{
    let server = serve(Security {
        token: Some("s3cret-token-0123456789".into()),
        cors_allowed_origins: Vec::new(),
    })
    .await;
    let page = get(&server, "/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<title>Funnel</title>"), "{}", page.body);
    let ui = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    assert_eq!(
        page.body,
        std::fs::read_to_string(ui.join("index.html")).unwrap()
    );
    // Every asset the page names is one of its own, served from the binary as it is
    // in the repository, without a token (they hold no data).
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.body.match_indices(attribute) {
            let rest = &page.body[at + attribute.len()..];
            assets.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    assert_eq!(assets.len(), 2, "{assets:?}");
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(!policy.contains("http"), "{policy}");
    for asset in assets {
        let file = asset
            .strip_prefix("/ui/")
            .unwrap_or_else(|| panic!("{asset} is not one of the dashboard's own"));
        let answer = get(&server, &asset).await;
        assert_eq!(answer.status, 200, "{asset}");
        assert_eq!(
            answer.body,
            std::fs::read_to_string(ui.join(file)).unwrap(),
            "{asset}"
        );
        assert!(
            !answer.body.contains("http://") && !answer.body.contains("https://"),
            "{asset} names another origin"
        );
        let policy = answer.header("content-security-policy").unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
    }
    assert!(!page.body.contains("http://") && !page.body.contains("https://"));
    // The data behind it needs the token.
    assert_eq!(get(&server, "/v1/pipelines").await.status, 401);
}
