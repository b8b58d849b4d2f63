//! The HTTP source: an axum server on `address`. Each request's records go to the
//! pipeline through a bounded queue, and the request is answered once the pipeline
//! has released every one of them (or, 503, when it cannot).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use funnel_core::{ConnectorError, Source};
use funnel_record::{Metadata, Position, Record, metadata};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::METADATA_PATH;
use super::config::HttpSourceConfig;
use crate::util::lock;
use crate::util::unix_nanos_now;

/// What a request waiting for room is told to wait before sending again (seconds).
const RETRY_AFTER_SECONDS: &str = "1";

/// How long `open` waits for an address still in use.
const BIND_PATIENCE: Duration = Duration::from_secs(3);

/// How long `teardown` waits for the server to answer what is in flight.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// An HTTP (webhook) source. No I/O until [`Source::open`].
pub struct HttpSource {
    who: String,
    id: String,
    config: HttpSourceConfig,
    /// The records of accepted requests, in acceptance order.
    queue: tokio::sync::Mutex<Option<mpsc::Receiver<Vec<Record>>>>,
    running: Mutex<Option<Running>>,
}

struct Running {
    server: JoinHandle<()>,
    stop: CancellationToken,
    inbox: Arc<Inbox>,
    address: SocketAddr,
}

/// What the request handlers share with the source.
struct Inbox {
    who: String,
    id: String,
    config: HttpSourceConfig,
    /// Where accepted records go (the source reads them).
    tx: mpsc::Sender<Vec<Record>>,
    /// Positions are `<epoch>-<sequence>`; `epoch` tells this run's apart.
    epoch: String,
    order: Mutex<Order>,
    /// Requests whose records entered the queue since `open`.
    accepted: AtomicU64,
    stop: CancellationToken,
}

/// The sequence of the next record and the requests waiting for their records to
/// be released, in sequence order (each with the sequence of its last record).
#[derive(Default)]
struct Order {
    next: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl HttpSource {
    /// A source for connector `id` with validated settings.
    pub fn new(id: &str, config: HttpSourceConfig) -> Self {
        Self {
            who: format!("http source {id}"),
            id: id.to_owned(),
            config,
            queue: tokio::sync::Mutex::new(None),
            running: Mutex::new(None),
        }
    }

    /// The address the server listens on, once open (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        lock(&self.running).as_ref().map(|r| r.address)
    }

    /// How many requests had their records accepted into the queue since `open`.
    pub fn accepted_requests(&self) -> u64 {
        lock(&self.running)
            .as_ref()
            .map_or(0, |r| r.inbox.accepted.load(Ordering::SeqCst))
    }

    fn stop(&self) -> Option<Running> {
        let running = lock(&self.running).take()?;
        running.stop.cancel();
        // Every request still waiting is answered 503: its records were not released.
        lock(&running.inbox.order).waiting.clear();
        Some(running)
    }
}

/// Serves `app` on `listener` until `stop`, answering what is in flight first.
fn serve<L>(listener: L, app: axum::Router, stop: CancellationToken, who: String) -> JoinHandle<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = serve.await {
            tracing::warn!(connector = %who, error = %e, "The HTTP server stopped.");
        }
    })
}

/// The sequence of a position of this run (`None` for another run's).
fn sequence(epoch: &str, position: &Position) -> Option<u64> {
    let text = std::str::from_utf8(position.as_bytes()).ok()?;
    let (e, seq) = text.split_once('-')?;
    (e == epoch).then(|| seq.parse().ok()).flatten()
}

#[async_trait]
impl Source for HttpSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let address = self.config.address;
        // A source dropped a moment ago (a restart) may still hold the address: wait
        // for it a little.
        let deadline = tokio::time::Instant::now() + BIND_PATIENCE;
        let listener = loop {
            match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => break listener,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(ConnectorError::transient(format!(
                        "{}: cannot listen on {address}: {e} (setting `address`)",
                        self.who
                    )));
                }
            }
        };
        let local = listener.local_addr().map_err(|e| {
            ConnectorError::transient(format!("{}: cannot listen on {address}: {e}", self.who))
        })?;
        let (tx, rx) = mpsc::channel(self.config.buffer_size);
        let stop = CancellationToken::new();
        let inbox = Arc::new(Inbox {
            who: self.who.clone(),
            id: self.id.clone(),
            config: self.config.clone(),
            tx,
            epoch: format!("{:x}", unix_nanos_now()),
            order: Mutex::new(Order {
                next: 1,
                waiting: VecDeque::new(),
            }),
            accepted: AtomicU64::new(0),
            stop: stop.clone(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inbox));
        let server = match &self.config.tls {
            None => serve(listener, app, stop.clone(), self.who.clone()),
            Some(tls) => {
                let acceptor = super::tls::acceptor(tls, &self.who)?;
                let listener = super::tls::TlsListener::new(listener, acceptor, stop.clone());
                serve(listener, app, stop.clone(), self.who.clone())
            }
        };
        *self.queue.lock().await = Some(rx);
        let previous = lock(&self.running).replace(Running {
            server,
            stop,
            inbox,
            address: local,
        });
        if let Some(old) = previous {
            old.stop.cancel();
            old.server.abort();
        }
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(connector = %self.id, address = %local, scheme, "Listening for HTTP requests.");
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let stopped = || ConnectorError::transient(format!("{}: the source was stopped", self.who));
        let Some(stop) = lock(&self.running).as_ref().map(|r| r.stop.clone()) else {
            return Err(crate::util::not_open(&self.who, "read"));
        };
        let mut guard = self.queue.lock().await;
        let Some(rx) = guard.as_mut() else {
            return Err(stopped());
        };
        let mut records = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(stopped()),
            first = rx.recv() => first.ok_or_else(stopped)?,
        };
        while records.len() < self.config.batch_size {
            match rx.try_recv() {
                Ok(more) => records.extend(more),
                Err(_) => break,
            }
        }
        Ok(Some(records))
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        let Some(last) = positions.last() else {
            return Ok(());
        };
        let Some(inbox) = lock(&self.running).as_ref().map(|r| Arc::clone(&r.inbox)) else {
            return Ok(());
        };
        let Some(last) = sequence(&inbox.epoch, last) else {
            return Ok(());
        };
        let released: Vec<oneshot::Sender<()>> = {
            let mut order = lock(&inbox.order);
            let n = order
                .waiting
                .iter()
                .take_while(|(seq, _)| *seq <= last)
                .count();
            order.waiting.drain(..n).map(|(_, tx)| tx).collect()
        };
        for waiter in released {
            // A request whose client went away has no one to answer.
            let _ = waiter.send(());
        }
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        if let Some(running) = self.stop() {
            let mut server = running.server;
            if tokio::time::timeout(STOP_WAIT, &mut server).await.is_err() {
                server.abort();
            }
        }
        self.queue.lock().await.take();
        Ok(())
    }
}

impl Drop for HttpSource {
    fn drop(&mut self) {
        if let Some(running) = self.stop() {
            running.server.abort();
        }
    }
}

/// How the body of a request becomes records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// One JSON document: one record.
    Json,
    /// One JSON document per line: a record per non-empty line.
    Ndjson,
    /// Anything else: one record holding the body.
    Raw,
}

fn shape(headers: &HeaderMap) -> Shape {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Shape::Ndjson,
        "application/json" => Shape::Json,
        other if other.starts_with("application/") && other.ends_with("+json") => Shape::Json,
        _ => Shape::Raw,
    }
}

fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// An answer with a text body.
fn answer(status: StatusCode, text: String) -> Response {
    (status, text).into_response()
}

/// 503 with `Retry-After`.
fn unavailable(text: String) -> Response {
    let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, text);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

async fn handle(State(inbox): State<Arc<Inbox>>, request: Request) -> Response {
    let who = &inbox.who;
    if inbox.stop.is_cancelled() {
        return unavailable(format!("{who}: stopping; send again later\n"));
    }
    if request.method() != Method::POST {
        let mut response = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{who}: only POST is accepted\n"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let (parts, body) = request.into_parts();
    if let Some(token) = &inbox.config.bearer_token
        && !bearer_matches(&parts.headers, token)
    {
        let mut response = answer(
            StatusCode::UNAUTHORIZED,
            format!("{who}: missing or wrong bearer token (setting `auth.bearerToken`)\n"),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let body = match read_body(body, inbox.config.max_body_size).await {
        Ok(body) => body,
        Err(response) => return response(who, inbox.config.max_body_size),
    };
    if let Some(secret) = &inbox.config.hmac_secret {
        let header = parts
            .headers
            .get(inbox.config.hmac_header.to_ascii_lowercase())
            .and_then(|v| v.to_str().ok());
        if !super::signature::verify(secret.as_bytes(), &body, header) {
            return answer(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{who}: missing or wrong HMAC-SHA256 signature in header {} (setting `auth.hmacSecret`)\n",
                    inbox.config.hmac_header
                ),
            );
        }
    }
    let records = match records(&inbox, shape(&parts.headers), parts.uri.path(), body) {
        Ok(records) => records,
        Err(text) => return answer(StatusCode::BAD_REQUEST, format!("{who}: {text}\n")),
    };
    let count = records.len();
    if count == 0 {
        return answer(StatusCode::OK, "{\"records\":0}\n".to_owned());
    }
    let waiter = match enqueue(&inbox, records).await {
        Ok(waiter) => waiter,
        Err(response) => return response,
    };
    match waiter.await {
        Ok(()) => answer(StatusCode::OK, format!("{{\"records\":{count}}}\n")),
        Err(_) => unavailable(format!(
            "{who}: the pipeline stopped before the records of this request were delivered; send again\n"
        )),
    }
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    super::signature::constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

type Refusal = fn(&str, usize) -> Response;

/// The whole body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Refusal> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(|who, limit| {
            answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{who}: the request body is over {limit} bytes (setting `maxBodySize`)\n"),
            )
        }),
        Err(_) => Err(|who, _| {
            answer(
                StatusCode::BAD_REQUEST,
                format!("{who}: the request body could not be read\n"),
            )
        }),
    }
}

/// The records of a request body.
fn records(inbox: &Inbox, shape: Shape, path: &str, body: Bytes) -> Result<Vec<Record>, String> {
    let payloads: Vec<Bytes> = match shape {
        Shape::Raw => vec![body],
        Shape::Json => {
            if !is_json(&body) {
                return Err(
                    "the body is not a JSON document (Content-Type application/json)".to_owned(),
                );
            }
            vec![body]
        }
        Shape::Ndjson => {
            let mut lines = Vec::new();
            let mut start = 0;
            for (n, line) in body.split(|b| *b == b'\n').enumerate() {
                let end = start + line.len();
                let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
                if !trimmed.iter().all(u8::is_ascii_whitespace) {
                    if !is_json(trimmed) {
                        return Err(format!(
                            "line {} is not a JSON document (Content-Type application/x-ndjson)",
                            n + 1
                        ));
                    }
                    lines.push(body.slice(start..start + trimmed.len()));
                }
                start = end + 1;
            }
            lines
        }
    };
    let read_at = unix_nanos_now().to_string();
    Ok(payloads
        .into_iter()
        .map(|payload| {
            let mut meta = Metadata::new();
            meta.insert(metadata::READ_AT, read_at.as_str());
            meta.insert(metadata::SOURCE_CONNECTOR_ID, inbox.id.as_str());
            meta.insert(METADATA_PATH, path);
            let mut record = Record::new(Position::from(""), payload);
            record.metadata = meta;
            record
        })
        .collect())
}

/// Puts the records of a request in the queue, waiting at most `backpressureTimeout`
/// for room; the receiver is told when they are all released.
async fn enqueue(
    inbox: &Inbox,
    mut records: Vec<Record>,
) -> Result<oneshot::Receiver<()>, Response> {
    let who = &inbox.who;
    let full = || {
        unavailable(format!(
            "{who}: the pipeline is behind; send again later (waited {:?}, setting `backpressureTimeout`)\n",
            inbox.config.backpressure_timeout
        ))
    };
    let permit = tokio::select! {
        biased;
        () = inbox.stop.cancelled() => return Err(unavailable(format!("{who}: stopping; send again later\n"))),
        permit = tokio::time::timeout(inbox.config.backpressure_timeout, inbox.tx.reserve()) => match permit {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(unavailable(format!("{who}: stopping; send again later\n"))),
            Err(_) => return Err(full()),
        },
    };
    let (tx, rx) = oneshot::channel();
    // Sequences, waiters and the queue advance together, so the queue holds records
    // in sequence order.
    let mut order = lock(&inbox.order);
    if inbox.stop.is_cancelled() {
        return Err(unavailable(format!("{who}: stopping; send again later\n")));
    }
    for record in &mut records {
        record.position = Position::from(format!("{}-{}", inbox.epoch, order.next));
        order.next += 1;
    }
    let last = order.next - 1;
    order.waiting.push_back((last, tx));
    permit.send(records);
    inbox.accepted.fetch_add(1, Ordering::SeqCst);
    drop(order);
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_type_decides_how_a_body_becomes_records() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            shape(&headers)
        };
        assert_eq!(with("application/json; charset=utf-8"), Shape::Json);
        assert_eq!(with("application/cloudevents+json"), Shape::Json);
        assert_eq!(with("application/x-ndjson"), Shape::Ndjson);
        assert_eq!(with("application/jsonl"), Shape::Ndjson);
        assert_eq!(with("text/plain"), Shape::Raw);
        assert_eq!(shape(&HeaderMap::new()), Shape::Raw);
    }

    #[test]
    fn positions_of_another_run_are_not_this_runs() {
        assert_eq!(sequence("a1", &Position::from("a1-42")), Some(42));
        assert_eq!(sequence("a1", &Position::from("b2-42")), None);
        assert_eq!(sequence("a1", &Position::from("x")), None);
    }
}
