//! What the http tests share: an in-test HTTP server that records what it receives and
//! answers as a test says, and a sender that posts to the http source in order,
//! sending again every request that did not get a 2xx.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use funnel_connectors::http::{HttpSource, validate_source};
pub(crate) use funnel_core::settings_of as settings;
pub(crate) use funnel_test_utils::process::free_port;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How a [`Server`] answers request number `n` (from 0): a status, and a
/// `Retry-After` in seconds.
pub(crate) type Policy = Arc<dyn Fn(usize) -> (StatusCode, Option<u64>) + Send + Sync>;

/// A request the server received (and answered 2xx, unless kept by `keep_all`).
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// An HTTP server on 127.0.0.1 (port 0) answering by its policy, keeping the requests
/// it answered 2xx.
pub(crate) struct Server {
    pub(crate) address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    calls: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct ServerState {
    policy: Policy,
    received: Arc<Mutex<Vec<Received>>>,
    calls: Arc<AtomicUsize>,
}

impl Server {
    /// A server answering 200 to everything.
    pub(crate) async fn ok() -> Self {
        Self::with_policy(Arc::new(|_| (StatusCode::OK, None))).await
    }

    pub(crate) async fn with_policy(policy: Policy) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let state = ServerState {
            policy,
            received: Arc::clone(&received),
            calls: Arc::clone(&calls),
        };
        let app = axum::Router::new().fallback(answer).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            address,
            received,
            calls,
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The requests answered 2xx, in arrival order.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every request, answered 2xx or not.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(state): State<ServerState>, request: Request) -> Response {
    let n = state.calls.fetch_add(1, Ordering::SeqCst);
    let (status, retry_after) = (state.policy)(n);
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    if status.is_success() {
        state.received.lock().unwrap().push(Received {
            path,
            headers,
            body,
        });
        return status.into_response();
    }
    let mut response = (status, format!("refused with {}", status.as_u16())).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}

/// An http source built from `pairs` (plus nothing else).
pub(crate) fn source(id: &str, pairs: &[(&str, &str)]) -> Arc<HttpSource> {
    Arc::new(HttpSource::new(
        id,
        validate_source(&settings(pairs)).unwrap(),
    ))
}

/// Posts payloads to the source at `port`, one raw request each, in order: a payload
/// is sent once the one before it was accepted by the source (it counts it in
/// [`HttpSource::accepted_requests`]); a request answered other than 2xx, or not at
/// all, goes back and is sent again before any later payload.
pub(crate) struct OrderedSender {
    tx: mpsc::UnboundedSender<Bytes>,
    task: JoinHandle<()>,
}

impl OrderedSender {
    /// A sender to 127.0.0.1:`port`, watching whichever source `current` holds.
    pub(crate) fn new(port: u16, current: Arc<Mutex<Weak<HttpSource>>>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(send_in_order(port, current, rx));
        Self { tx, task }
    }

    pub(crate) fn send(&self, payloads: &[Bytes]) {
        for payload in payloads {
            self.tx.send(payload.clone()).unwrap();
        }
    }
}

impl Drop for OrderedSender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn send_in_order(
    port: u16,
    current: Arc<Mutex<Weak<HttpSource>>>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let url = format!("http://127.0.0.1:{port}/in");
    let client = reqwest::Client::new();
    // Payloads to send again, by their number; fresh ones get the next number.
    let again: Arc<Mutex<BTreeMap<u64, Bytes>>> = Arc::default();
    let mut next = 0u64;
    loop {
        let retry = again.lock().unwrap().pop_first();
        let (n, payload) = match retry {
            Some(item) => item,
            None => {
                let received = tokio::select! {
                    p = rx.recv() => p,
                    () = tokio::time::sleep(Duration::from_millis(5)) => continue,
                };
                let Some(payload) = received else { return };
                next += 1;
                (next, payload)
            }
        };
        let accepted = || {
            current
                .lock()
                .unwrap()
                .upgrade()
                .map_or(0, |s| s.accepted_requests())
        };
        let before = accepted();
        let post = tokio::spawn({
            let (client, url, again, payload) = (
                client.clone(),
                url.clone(),
                Arc::clone(&again),
                payload.clone(),
            );
            async move {
                let ok = client
                    .post(&url)
                    .header("content-type", "application/octet-stream")
                    .body(payload.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    again.lock().unwrap().insert(n, payload);
                }
                ok
            }
        });
        // Wait until the source took it, or it failed (then it is in `again`).
        loop {
            if accepted() > before {
                break;
            }
            if post.is_finished() {
                if again.lock().unwrap().contains_key(&n) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
