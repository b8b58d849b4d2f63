//! The http source and destination: the compliance suite, and what each promises,
//! against real HTTP peers run in the test (a reqwest client posting to the source,
//! an axum server receiving from the destination) on 127.0.0.1.

#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/http.rs"]
mod support;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::StatusCode;
use bytes::Bytes;
use funnel_connectors::http::{self, HttpSource};
use funnel_connectors::{destination, source as build_source};
use funnel_core::{Destination, Source};
use funnel_record::{Position, Record};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities, Support,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::{ack_n, nack_error, raw, read_n};
use funnel_test_utils::wait::wait_until;
use support::{OrderedSender, Policy, Server, free_port, settings, source};

const PATIENCE: Duration = Duration::from_secs(30);

/// A port of its own for each check; payloads are posted raw, one per request, by
/// an [`OrderedSender`].
struct SourceSide {
    port: u16,
    current: Arc<Mutex<Weak<HttpSource>>>,
    sender: OrderedSender,
}

impl SourceSide {
    fn new() -> Self {
        let port = free_port();
        let current = Arc::new(Mutex::new(Weak::new()));
        let sender = OrderedSender::new(port, Arc::clone(&current));
        Self {
            port,
            current,
            sender,
        }
    }
}

#[async_trait]
impl SourceBackend for SourceSide {
    fn build(&self, _resume: Option<Position>) -> Arc<dyn Source> {
        let address = format!("127.0.0.1:{}", self.port);
        let source = source(
            "pipe:in",
            &[
                ("address", &address),
                ("sdk.batch.size", "10"),
                ("maxBodySize", "16777216"),
            ],
        );
        *self.current.lock().unwrap() = Arc::downgrade(&source);
        source
    }

    async fn inject(&self, payloads: &[Bytes]) {
        self.sender.send(payloads);
    }

    fn payload(&self, record: &Record) -> Bytes {
        raw(record)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_passes_the_source_compliance_suite() {
    let capabilities = SourceCapabilities {
        input: Support::Yes,
        exact_resume: Support::No(
            "a request not answered 2xx before the source stopped is sent again by its sender",
        ),
    };
    run_source_compliance("http source", capabilities, |_| async { SourceSide::new() })
        .await
        .assert_complete();
}

/// The destination posts to a server of its own for each check.
struct DestinationSide {
    server: Server,
}

#[async_trait]
impl DestinationBackend for DestinationSide {
    fn build(&self) -> Arc<dyn Destination> {
        destination(
            "http",
            "pipe:out",
            &settings(&[("url", &self.server.url("/records"))]),
        )
        .unwrap()
    }

    async fn written(&self) -> Vec<Bytes> {
        self.server
            .received()
            .iter()
            .map(|r| raw(&Record::from_json(&r.body).unwrap()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_passes_the_destination_compliance_suite() {
    run_destination_compliance(
        "http destination",
        DestinationCapabilities::FULL,
        |_| async {
            DestinationSide {
                server: Server::ok().await,
            }
        },
    )
    .await
    .assert_complete();
}

// ---------------------------------------------------------------------------------
// Source.

/// An open source on a port of its own, with `extra` settings, and its URL.
async fn open_source(extra: &[(&str, &str)]) -> (Arc<HttpSource>, String) {
    let mut pairs = vec![("address", "127.0.0.1:0")];
    pairs.extend_from_slice(extra);
    let source = source("pipe:in", &pairs);
    source.open().await.unwrap();
    let url = format!("http://{}/hook", source.local_addr().unwrap());
    (source, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_answered_only_after_every_record_in_it_was_acked() {
    let (source, url) = open_source(&[]).await;
    let client = reqwest::Client::new();
    let post = tokio::spawn(
        client
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body("{\"n\":1}\n\n{\"n\":2}\r\n{\"n\":3}")
            .send(),
    );
    let records = read_n(&*source, 3).await;
    let payloads: Vec<Bytes> = records.iter().map(raw).collect();
    assert_eq!(payloads, ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
    assert_eq!(records[0].metadata.get(http::METADATA_PATH), Some("/hook"));
    source.ack(&[records[1].position.clone()]).await.unwrap();
    // Two of three acked: still no answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !post.is_finished(),
        "answered before the last record was acked"
    );
    source.ack(&[records[2].position.clone()]).await.unwrap();
    let response = post.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap().trim(), "{\"records\":3}");
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_document_is_one_record_and_anything_else_is_one_raw_record() {
    let (source, url) = open_source(&[]).await;
    let client = reqwest::Client::new();
    let json = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"a\":\n 1}")
        .send();
    let json = tokio::spawn(json);
    let first = read_n(&*source, 1).await;
    assert_eq!(raw(&first[0]), "{\"a\":\n 1}");
    source.ack(&[first[0].position.clone()]).await.unwrap();
    assert_eq!(json.await.unwrap().unwrap().status(), 200);
    let text = tokio::spawn(client.post(&url).body("line one\nline two").send());
    let second = read_n(&*source, 1).await;
    assert_eq!(raw(&second[0]), "line one\nline two");
    source.ack(&[second[0].position.clone()]).await.unwrap();
    assert_eq!(text.await.unwrap().unwrap().status(), 200);
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_is_refused_with_400_and_nothing_of_it_is_read() {
    let (source, url) = open_source(&[]).await;
    let client = reqwest::Client::new();
    let response = client
        .post(&url)
        .header("content-type", "application/x-ndjson")
        .body("{\"ok\":1}\n{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("http source pipe:in") && text.contains("line 2"),
        "{text}"
    );
    assert_eq!(source.accepted_requests(), 0);
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_bearer_token_gets_401() {
    let (source, url) = open_source(&[("auth.bearerToken", "t0ken")]).await;
    let client = reqwest::Client::new();
    for auth in [None, Some("Bearer nope"), Some("t0ken")] {
        let mut request = client.post(&url).body("x");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert!(response.text().await.unwrap().contains("auth.bearerToken"));
    }
    let post = tokio::spawn(client.post(&url).bearer_auth("t0ken").body("x").send());
    let records = read_n(&*source, 1).await;
    source.ack(&[records[0].position.clone()]).await.unwrap();
    assert_eq!(post.await.unwrap().unwrap().status(), 200);
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_its_hmac_signature_gets_401_and_a_signed_one_is_read() {
    let (source, url) = open_source(&[
        ("auth.hmacSecret", "s3cret"),
        ("auth.hmacHeader", "X-Hub-Signature-256"),
    ])
    .await;
    let client = reqwest::Client::new();
    let body = "{\"event\":\"push\"}";
    for signature in [None, Some(http::sign(b"other", body.as_bytes()))] {
        let mut request = client.post(&url).body(body);
        if let Some(signature) = &signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("X-Hub-Signature-256")
        );
    }
    let signed = client
        .post(&url)
        .header(
            "x-hub-signature-256",
            http::sign(b"s3cret", body.as_bytes()),
        )
        .body(body)
        .send();
    let post = tokio::spawn(signed);
    let records = read_n(&*source, 1).await;
    assert_eq!(raw(&records[0]), body);
    source.ack(&[records[0].position.clone()]).await.unwrap();
    assert_eq!(post.await.unwrap().unwrap().status(), 200);
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_413_naming_the_setting_and_the_next_request_is_read() {
    let (source, url) = open_source(&[("maxBodySize", "1000")]).await;
    let client = reqwest::Client::new();
    let response = client
        .post(&url)
        .body(vec![b'x'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("http source pipe:in") && text.contains("maxBodySize"),
        "{text}"
    );
    let post = tokio::spawn(client.post(&url).body(vec![b'y'; 1000]).send());
    let records = read_n(&*source, 1).await;
    assert_eq!(raw(&records[0]).len(), 1000);
    source.ack(&[records[0].position.clone()]).await.unwrap();
    assert_eq!(post.await.unwrap().unwrap().status(), 200);
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_buffer_stays_full_a_request_gets_503_with_retry_after() {
    let (source, url) = open_source(&[("bufferSize", "1"), ("backpressureTimeout", "300ms")]).await;
    let client = reqwest::Client::new();
    // Nothing reads: the first request fills the buffer, the second waits and is refused.
    let first = tokio::spawn(client.post(&url).body("1").send());
    wait_until("the first request is accepted", PATIENCE, || {
        source.accepted_requests() == 1
    })
    .await;
    let started = Instant::now();
    let second = client.post(&url).body("2").send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    assert!(second.text().await.unwrap().contains("backpressureTimeout"));
    let records = read_n(&*source, 1).await;
    assert_eq!(raw(&records[0]), "1");
    source.ack(&[records[0].position.clone()]).await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_records_were_not_acked_gets_503_at_teardown() {
    let (source, url) = open_source(&[]).await;
    let client = reqwest::Client::new();
    let post = tokio::spawn(client.post(&url).body("lost?").send());
    read_n(&*source, 1).await;
    source.teardown().await.unwrap();
    let response = post.await.unwrap().unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("send again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_is_an_error_naming_the_connector_and_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let source =
        build_source("http", "pipe:in", &settings(&[("address", &address)]), None).unwrap();
    let error = source.open().await.unwrap_err().to_string();
    assert!(
        error.contains("http source pipe:in") && error.contains(&address),
        "{error}"
    );
}

/// The files of a test CA's server certificate and key, and the CA to trust.
struct ServerFiles {
    _dir: tempfile::TempDir,
    cert: String,
    key: String,
    ca: reqwest::Certificate,
}

fn server_files() -> ServerFiles {
    let ca = funnel_test_utils::tls::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, &ca.server_chain_pem).unwrap();
    std::fs::write(&key, &ca.server_key_pem).unwrap();
    ServerFiles {
        cert: cert.to_str().unwrap().to_owned(),
        key: key.to_str().unwrap().to_owned(),
        ca: reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_and_key_the_source_serves_https_to_clients_trusting_its_ca() {
    let files = server_files();
    let source = source(
        "pipe:in",
        &[
            ("address", "127.0.0.1:0"),
            ("tls.certPath", &files.cert),
            ("tls.keyPath", &files.key),
        ],
    );
    source.open().await.unwrap();
    let address = source.local_addr().unwrap();

    // A client trusting the test CA (and only it) posts over https.
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(files.ca.clone())
        .build()
        .unwrap();
    let post = tokio::spawn(
        trusting
            .post(format!("https://{address}/secure"))
            .header("content-type", "application/json")
            .body("{\"over\":\"tls\"}")
            .send(),
    );
    let records = read_n(&*source, 1).await;
    assert_eq!(raw(&records[0]), "{\"over\":\"tls\"}");
    assert_eq!(
        records[0].metadata.get(http::METADATA_PATH),
        Some("/secure")
    );
    source.ack(&[records[0].position.clone()]).await.unwrap();
    let response = post.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);

    // A client that does not trust the CA is refused in the handshake, and plain http
    // to the same port gets no answer: neither gets a record in.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let error = untrusting
        .post(format!("https://{address}/secure"))
        .body("nope")
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .post(format!("http://{address}/secure"))
        .body("nope")
        .send()
        .await;
    assert!(plain.is_err(), "plain http was answered: {plain:?}");

    // The server still serves trusting clients after those.
    let again = tokio::spawn(
        trusting
            .post(format!("https://{address}/again"))
            .body("raw")
            .send(),
    );
    let records = read_n(&*source, 1).await;
    assert_eq!(raw(&records[0]), "raw");
    source.ack(&[records[0].position.clone()]).await.unwrap();
    assert_eq!(again.await.unwrap().unwrap().status(), 200);
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_certificate_or_key_fails_open_naming_the_setting_and_file() {
    let files = server_files();
    let missing = "/nonexistent/funnel-http-cert.pem";
    for (cert, key, setting, path) in [
        (missing, files.key.as_str(), "tls.certPath", missing),
        (files.cert.as_str(), missing, "tls.keyPath", missing),
        // A key file without a key in it.
        (
            files.cert.as_str(),
            files.cert.as_str(),
            "tls.keyPath",
            files.cert.as_str(),
        ),
    ] {
        let source = build_source(
            "http",
            "pipe:in",
            &settings(&[
                ("address", "127.0.0.1:0"),
                ("tls.certPath", cert),
                ("tls.keyPath", key),
            ]),
            None,
        )
        .unwrap();
        let error = source.open().await.unwrap_err().to_string();
        assert!(
            error.contains("http source pipe:in")
                && error.contains(setting)
                && error.contains(path),
            "{error}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Source, polling mode.

/// A paged API on 127.0.0.1: `GET /items?after=K&limit=L` answers the items with ids
/// over K (all without `after`), at most L, and `next`: the last id given (absent
/// when none). Requests without `Authorization: Bearer s3cret` get 401. It records
/// each request's query.
struct Api {
    address: std::net::SocketAddr,
    items: Arc<Mutex<Vec<u64>>>,
    queries: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Api {
    async fn start(items: u64) -> Self {
        let items = Arc::new(Mutex::new((0..items).collect::<Vec<u64>>()));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new().route(
            "/items",
            axum::routing::get({
                let (items, queries) = (Arc::clone(&items), Arc::clone(&queries));
                move |request: axum::extract::Request| {
                    let (items, queries) = (Arc::clone(&items), Arc::clone(&queries));
                    async move {
                        let authorized = request
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v == "Bearer s3cret");
                        if !authorized {
                            return (StatusCode::UNAUTHORIZED, "who are you?".to_owned());
                        }
                        let query = request.uri().query().unwrap_or("").to_owned();
                        queries.lock().unwrap().push(query.clone());
                        let param = |name: &str| {
                            query
                                .split('&')
                                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                                .map(|v| v.parse::<u64>().unwrap())
                        };
                        let limit = usize::try_from(param("limit").unwrap_or(100)).unwrap();
                        let page: Vec<u64> = items
                            .lock()
                            .unwrap()
                            .iter()
                            .copied()
                            .filter(|id| param("after").is_none_or(|after| *id > after))
                            .take(limit)
                            .collect();
                        let mut body = serde_json::json!({
                            "items": page.iter().map(|id| serde_json::json!({"id": id})).collect::<Vec<_>>(),
                        });
                        if let Some(last) = page.last() {
                            body["next"] = serde_json::json!(last.to_string());
                        }
                        (StatusCode::OK, body.to_string())
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            address,
            items,
            queries,
            task,
        }
    }

    fn add(&self, ids: std::ops::Range<u64>) {
        self.items.lock().unwrap().extend(ids);
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }

    /// A polling source on this API, resuming after `resume`.
    fn source(&self, resume: Option<Position>, extra: &[(&str, &str)]) -> Arc<dyn Source> {
        let url = format!("http://{}/items", self.address);
        let mut pairs = vec![
            ("url", url.as_str()),
            ("params.limit", "10"),
            ("headers.Authorization", "Bearer s3cret"),
            ("response.records", "/items"),
            ("response.cursor", "/next"),
            ("cursor.param", "after"),
            ("pollingPeriod", "200ms"),
        ];
        pairs.extend_from_slice(extra);
        build_source("http", "pipe:poll", &settings(&pairs), resume).unwrap()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn id(record: &Record) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(&raw(record)).unwrap();
    value["id"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_follows_the_cursor_page_by_page_and_then_waits_for_new_items() {
    let api = Api::start(25).await;
    let source = api.source(None, &[]);
    source.open().await.unwrap();
    let records = read_n(&*source, 25).await;
    assert_eq!(
        records.iter().map(id).collect::<Vec<_>>(),
        (0..25).collect::<Vec<_>>()
    );
    assert_eq!(
        records[0].metadata.get(http::METADATA_URL),
        Some(format!("http://{}/items?limit=10", api.address).as_str())
    );
    // Pages one after the other, each asking after the last id of the one before.
    assert_eq!(
        api.queries(),
        ["limit=10", "limit=10&after=9", "limit=10&after=19"]
    );
    // Nothing new: the source asks again with the same cursor every pollingPeriod,
    // and new items come in when they are there.
    let reading = tokio::spawn({
        let source = Arc::clone(&source);
        async move { read_n(&*source, 5).await }
    });
    wait_until("two polls with nothing new", PATIENCE, || {
        api.queries().len() >= 5
    })
    .await;
    assert!(!reading.is_finished());
    api.add(25..30);
    let more = reading.await.unwrap();
    assert_eq!(
        more.iter().map(id).collect::<Vec<_>>(),
        (25..30).collect::<Vec<_>>()
    );
    assert!(
        api.queries()[3..].iter().all(|q| q == "limit=10&after=24"),
        "{:?}",
        api.queries()
    );
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_poller_reads_on_after_its_position_without_rereading_or_skipping() {
    let api = Api::start(25).await;
    let first = api.source(None, &[]);
    first.open().await.unwrap();
    let records = read_n(&*first, 25).await;
    first.teardown().await.unwrap();

    // From the middle of a page: that page again, from the record after.
    let mid = api.source(Some(records[12].position.clone()), &[]);
    mid.open().await.unwrap();
    let again = read_n(&*mid, 12).await;
    assert_eq!(
        again.iter().map(id).collect::<Vec<_>>(),
        (13..25).collect::<Vec<_>>()
    );
    mid.teardown().await.unwrap();

    // From the last record of a page: the next cursor, so new items only.
    api.add(25..28);
    let last = api.source(Some(records[24].position.clone()), &[]);
    last.open().await.unwrap();
    let fresh = read_n(&*last, 3).await;
    assert_eq!(fresh.iter().map(id).collect::<Vec<_>>(), [25, 26, 27]);
    assert_eq!(
        api.queries().last().map(String::as_str),
        Some("limit=10&after=24")
    );
    last.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_response_settings_each_poll_is_one_record_of_the_whole_body() {
    let api = Api::start(3).await;
    let url = format!("http://{}/items", api.address);
    let source = build_source(
        "http",
        "pipe:poll",
        &settings(&[
            ("url", &url),
            ("headers", "Authorization: Bearer s3cret"),
            ("pollingPeriod", "100ms"),
        ]),
        None,
    )
    .unwrap();
    source.open().await.unwrap();
    let records = read_n(&*source, 2).await;
    for record in &records {
        let body: serde_json::Value = serde_json::from_slice(&raw(record)).unwrap();
        assert_eq!(body["items"].as_array().unwrap().len(), 3);
    }
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_poll_is_a_fatal_error_naming_the_connector_url_and_status() {
    let api = Api::start(1).await;
    let source = api.source(None, &[("headers.Authorization", "Bearer wrong")]);
    source.open().await.unwrap();
    let error = source.read().await.unwrap_err();
    assert_eq!(error.retry(), funnel_core::Retry::Fatal);
    let text = error.to_string();
    assert!(
        text.contains("http source pipe:poll")
            && text.contains(&format!("{}/items", api.address))
            && text.contains("401")
            && text.contains("who are you?"),
        "{text}"
    );
    let unreachable = build_source(
        "http",
        "pipe:poll",
        &settings(&[("url", &format!("http://127.0.0.1:{}/x", free_port()))]),
        None,
    )
    .unwrap();
    unreachable.open().await.unwrap();
    let error = unreachable.read().await.unwrap_err();
    assert_eq!(error.retry(), funnel_core::Retry::Transient);
    assert!(
        error.to_string().contains("http source pipe:poll"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------
// Destination.

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut record = Record::new(format!("{i:06}"), format!("payload {i}"));
            record
                .metadata
                .insert("table", if i % 2 == 0 { "even" } else { "odd" });
            record
        })
        .collect()
}

fn payloads_received(server: &Server) -> Vec<Bytes> {
    server
        .received()
        .iter()
        .flat_map(|r| {
            let text = std::str::from_utf8(&r.body).unwrap();
            text.lines()
                .map(|l| raw(&Record::from_json(l.as_bytes()).unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_in_order_through_500s_and_429s() {
    let policy: Policy = Arc::new(|n| match n % 20 {
        3 | 11 => (StatusCode::INTERNAL_SERVER_ERROR, None),
        7 => (StatusCode::TOO_MANY_REQUESTS, Some(0)),
        _ => (StatusCode::OK, None),
    });
    let server = Server::with_policy(policy).await;
    let out = destination(
        "http",
        "pipe:out",
        &settings(&[
            ("url", &server.url("/in")),
            ("retry.minWait", "1ms"),
            ("retry.maxWait", "5ms"),
        ]),
    )
    .unwrap();
    out.open().await.unwrap();
    let all = records(1000);
    let writer = {
        let out = Arc::clone(&out);
        let all = all.clone();
        tokio::spawn(async move {
            for batch in all.chunks(50) {
                out.write(batch).await.unwrap();
            }
        })
    };
    let acks = ack_n(&*out, 1000).await;
    writer.await.unwrap();
    assert!(acks.iter().all(|a| a.error.is_none()));
    let positions: Vec<Position> = acks.into_iter().map(|a| a.position).collect();
    let expected: Vec<Position> = all.iter().map(|r| r.position.clone()).collect();
    assert_eq!(positions, expected);
    let want: Vec<Bytes> = all.iter().map(raw).collect();
    assert_eq!(payloads_received(&server), want);
    assert!(server.calls() >= 1150, "{} calls", server.calls());
    out.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_is_honoured() {
    let policy: Policy = Arc::new(|n| match n {
        0 => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
        _ => (StatusCode::OK, None),
    });
    let server = Server::with_policy(policy).await;
    let out = destination(
        "http",
        "pipe:out",
        &settings(&[("url", &server.url("/in")), ("retry.minWait", "1ms")]),
    )
    .unwrap();
    out.open().await.unwrap();
    let started = Instant::now();
    out.write(&records(1)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ack_n(&*out, 1).await[0].error, None);
    out.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_nacks_the_record_with_the_status_and_response_text_and_the_next_goes_on() {
    let policy: Policy = Arc::new(|n| match n {
        0 => (StatusCode::UNAUTHORIZED, None),
        1 => (StatusCode::FORBIDDEN, None),
        _ => (StatusCode::OK, None),
    });
    let server = Server::with_policy(policy).await;
    let out = destination(
        "http",
        "pipe:out",
        &settings(&[("url", &server.url("/in"))]),
    )
    .unwrap();
    out.open().await.unwrap();
    out.write(&records(3)).await.unwrap();
    let acks = ack_n(&*out, 3).await;
    let first = acks[0].error.as_ref().unwrap().to_string();
    assert!(
        first.contains("http destination pipe:out")
            && first.contains("401 Unauthorized")
            && first.contains("refused with 401")
            && first.contains(&server.url("/in")),
        "{first}"
    );
    let error = nack_error(&acks[1]);
    assert!(error.contains("403 Forbidden"), "{error}");
    assert_eq!(acks[2].error, None);
    assert_eq!(server.calls(), 3, "a 4xx is not retried");
    out.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_the_destination_after_the_retries_naming_it() {
    let url = format!("http://127.0.0.1:{}/in", free_port());
    let out = destination(
        "http",
        "pipe:out",
        &settings(&[("url", &url), ("retry.max", "2"), ("retry.minWait", "1ms")]),
    )
    .unwrap();
    out.open().await.unwrap();
    let error = out.write(&records(1)).await.unwrap_err().to_string();
    assert!(
        error.contains("http destination pipe:out")
            && error.contains(&url)
            && error.contains("retry.max"),
        "{error}"
    );
    assert!(out.ack().await.is_err(), "nothing is acked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_slower_than_the_timeout_is_retried_and_named() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    // Accepts connections and never answers.
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let out = destination(
        "http",
        "pipe:out",
        &settings(&[
            ("url", &url),
            ("timeout", "100ms"),
            ("retry.max", "1"),
            ("retry.minWait", "1ms"),
        ]),
    )
    .unwrap();
    out.open().await.unwrap();
    let started = Instant::now();
    let error = out.write(&records(1)).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(error.contains("setting `timeout`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_and_headers_are_templates_and_batches_group_records_going_to_the_same_place() {
    let server = Server::ok().await;
    let url = format!("{}/{{{{ index .Metadata \"table\" }}}}", server.url(""));
    for (format, per_line) in [("ndjson", true), ("json", false)] {
        let out = destination(
            "http",
            "pipe:out",
            &settings(&[
                ("url", &url),
                ("method", "PUT"),
                ("headers.X-Table", "t-{{ index .Metadata \"table\" }}"),
                ("batch.format", format),
            ]),
        )
        .unwrap();
        out.open().await.unwrap();
        let mut batch = records(4);
        batch[1].metadata.insert("table", "even");
        // even, even, even, odd: two requests.
        out.write(&batch).await.unwrap();
        assert_eq!(ack_n(&*out, 4).await.len(), 4);
        out.teardown().await.unwrap();
        let got = server.received();
        let last_two = &got[got.len() - 2..];
        assert_eq!(last_two[0].path, "/even");
        assert_eq!(last_two[0].headers["x-table"], "t-even");
        assert_eq!(last_two[1].path, "/odd");
        let body = std::str::from_utf8(&last_two[0].body).unwrap();
        if per_line {
            assert_eq!(last_two[0].headers["content-type"], "application/x-ndjson");
            assert_eq!(body.lines().count(), 3);
        } else {
            let array: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(array.as_array().unwrap().len(), 3);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_works_with_a_ca_trusted_through_tls_ca_cert_path() {
    let got = Arc::new(Mutex::new(Vec::<Bytes>::new()));
    let router = axum::Router::new().fallback({
        let got = Arc::clone(&got);
        move |body: Bytes| {
            let got = Arc::clone(&got);
            async move {
                got.lock().unwrap().push(body);
                StatusCode::NO_CONTENT
            }
        }
    });
    let server = funnel_test_utils::tls::HttpsServer::start(router).await;
    let url = server.url("/in");
    let trusting = destination(
        "http",
        "pipe:out",
        &settings(&[
            ("url", &url),
            ("tls.caCertPath", server.ca_path.to_str().unwrap()),
        ]),
    )
    .unwrap();
    trusting.open().await.unwrap();
    trusting.write(&records(2)).await.unwrap();
    assert!(ack_n(&*trusting, 2).await.iter().all(|a| a.error.is_none()));
    assert_eq!(got.lock().unwrap().len(), 2);
    trusting.teardown().await.unwrap();

    let untrusting = destination(
        "http",
        "pipe:out",
        &settings(&[("url", &url), ("retry.max", "0")]),
    )
    .unwrap();
    untrusting.open().await.unwrap();
    let error = untrusting.write(&records(1)).await.unwrap_err().to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}
