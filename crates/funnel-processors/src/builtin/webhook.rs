//! `webhook.http`: one HTTP request per record; the response body (and optionally the
//! status) is stored in the record.
//!
//! # Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `request.url` | required | URL, a Go template evaluated on the record. `http://` only (no TLS client yet). |
//! | `request.method` | `GET` | HTTP method. |
//! | `request.body` | the whole record as OpenCDC JSON | Body, a Go template evaluated on the record. |
//! | `headers.*` | `Content-Type: application/json` | Request headers, e.g. `headers.Authorization`. |
//! | `request.contentType` | | Deprecated: the `Content-Type` header; refused together with `headers.Content-Type`. |
//! | `response.body` | `.Payload.After` | Where the response body is stored (raw data, or bytes in a nested field). |
//! | `response.status` | not stored | Where the response status code is stored, as text. |
//! | `backoffRetry.count` | `0` | Retries of a failed request (a transport error or a status of 500 or more). |
//! | `backoffRetry.min` | `100ms` | Wait before the first retry. |
//! | `backoffRetry.max` | `5s` | Longest wait between retries. |
//! | `backoffRetry.factor` | `2` | Each wait is the previous one times this factor. |
//! | `request.timeout` | `30s` | Longest wait for one request: connecting, sending, the response and its body (a Funnel extension). |
//!
//! Every request is bounded by `request.timeout` (connecting alone by the smaller of it
//! and 10 s), so a server that stops answering fails the request (a retryable failure)
//! instead of holding the pipeline, and its drain, forever.
//!
//! A status of 500 or more, or a transport error, is retried with backoff; when the
//! retries are used up, the record fails (it is nacked). Any other status, 4xx
//! included, is a response like any other and is stored, as in Conduit. A template or
//! field error fails the record at once (retrying cannot help). Records of a batch are
//! sent one after the other, in order.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::typed::{FromSetting, Prefixed};
use funnel_core::{Component, ProcessedRecord, Processor};
use funnel_record::{FieldPath, Record, Value};
use funnel_template::Template;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::settings::{
    AnyField, GoDuration, GoFloat, SettingsReader, parse_checked, path_error, processor,
};
use crate::{Built, Settings};

use super::Label;

/// `webhook.http` in the registry table.
pub(crate) const COMPONENT: Component = processor::<WebhookSettings>(
    "webhook.http",
    "Sends an HTTP request per record and stores the response in the record.",
    build,
);

funnel_core::settings! {
    /// The settings `webhook.http` accepts (the SDK schema ones come on top).
    pub(crate) struct WebhookSettings {
        /// URL of the request: a Go template evaluated on the record (http:// only).
        pub(crate) url: UrlText = "request.url",
        /// HTTP method of the request.
        pub(crate) method: HttpMethod = "request.method" (default "GET"),
        /// Body of the request: a Go template evaluated on the record. Unset: the whole
        /// record as OpenCDC JSON.
        pub(crate) body: Option<BodyText> = "request.body",
        /// Deprecated: use headers.Content-Type.
        pub(crate) content_type: Option<String> = "request.contentType",
        /// Request headers, e.g. headers.Authorization. Content-Type defaults to
        /// application/json.
        pub(crate) headers: Prefixed = "headers.*",
        /// Field where the response body is stored.
        pub(crate) response_body: AnyField = "response.body" (default ".Payload.After"),
        /// Field where the response status code is stored; unset: not stored.
        pub(crate) response_status: Option<AnyField> = "response.status",
        /// Maximum number of retries of a request that failed (transport error or
        /// status >= 500).
        pub(crate) retries: RetryCount = "backoffRetry.count" (default "0"),
        /// Wait before the first retry.
        pub(crate) retry_min: GoDuration = "backoffRetry.min" (default "100ms"),
        /// Longest wait between retries.
        pub(crate) retry_max: GoDuration = "backoffRetry.max" (default "5s"),
        /// Multiplier of the wait after each retry.
        pub(crate) retry_factor: RetryFactor = "backoffRetry.factor" (default "2"),
        /// Longest wait for one request, response body included; a request that takes
        /// longer fails (and is retried like a transport error). A Funnel extension.
        pub(crate) timeout: RequestTimeout = "request.timeout" (default "30s"),
    }
}

/// `request.url`: a template, or a literal URL checked at once.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UrlText(Text);

impl FromSetting for UrlText {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let text = Text::parse(raw, "error while parsing the URL template")?;
        if let Text::Literal(url) = &text {
            check_url(url).map_err(|err| format!("configuration check failed: {err}"))?;
        }
        Ok(Self(text))
    }
}

/// `request.body`: a template, or literal text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BodyText(Text);

impl FromSetting for BodyText {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Text::parse(raw, "failed parsing request.body").map(Self)
    }
}

/// `request.method`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HttpMethod(Method);

impl FromSetting for HttpMethod {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Method::from_bytes(raw.as_bytes())
            .map(Self)
            .map_err(|_| format!("configuration check failed: net/http: invalid method {raw:?}"))
    }
}

/// `backoffRetry.count`: a float greater than -1 (Conduit's `greater-than=-1`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RetryCount(f64);

impl FromSetting for RetryCount {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Float;

    fn from_setting(raw: &str) -> Result<Self, String> {
        let GoFloat(count) = GoFloat::from_setting(raw)?;
        if count <= -1.0 {
            return Err(format!(
                "\"{count}\" should be greater than -1: greater-than validation failed"
            ));
        }
        Ok(Self(count))
    }
}

/// `backoffRetry.factor`: a float greater than 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RetryFactor(f64);

impl FromSetting for RetryFactor {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Float;

    fn from_setting(raw: &str) -> Result<Self, String> {
        let GoFloat(factor) = GoFloat::from_setting(raw)?;
        if factor <= 0.0 {
            return Err(format!(
                "\"{factor}\" should be greater than 0: greater-than validation failed"
            ));
        }
        Ok(Self(factor))
    }
}

/// `request.timeout`: a duration greater than 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestTimeout(Duration);

impl FromSetting for RequestTimeout {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Duration;

    fn from_setting(raw: &str) -> Result<Self, String> {
        let GoDuration(timeout) = GoDuration::from_setting(raw)?;
        if timeout.is_zero() {
            return Err("should be greater than 0: a request must not wait forever".to_owned());
        }
        Ok(Self(timeout))
    }
}

/// How long connecting may take at most, whatever `request.timeout` says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Validates the settings and builds the processor. No connection is made.
pub(crate) fn build(id: &str, settings: &Settings) -> Built {
    let (own, headers) = parse_checked(settings, |own: WebhookSettings, reader| {
        let headers = read_headers(reader, &own.headers, own.content_type.as_deref());
        let same_field = own.response_status.as_ref().map(|s| s.0.as_str())
            == Some(own.response_body.0.as_str());
        if same_field {
            reader.error(
                "response.status",
                "invalid configuration: response.body and response.status set to same field",
            );
        }
        headers
            .filter(|_| !same_field)
            .map(|headers| (own, headers))
    })?;
    let timeout = own.timeout.0;
    Ok(Box::new(Webhook {
        label: Label::new("webhook.http", id),
        url: own.url.0,
        method: own.method.0,
        body: own.body.map_or(Body::Record, |body| Body::Text(body.0)),
        headers,
        response_body: own.response_body.0,
        response_status: own.response_status.map(|status| status.0),
        backoff: Backoff {
            // Conduit compares the attempt number (a float) with the count.
            retries: own.retries.0.max(0.0).ceil() as u32,
            min: own.retry_min.0,
            max: own.retry_max.0,
            factor: own.retry_factor.0,
        },
        timeout,
        client: {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(timeout.min(CONNECT_TIMEOUT)));
            Client::builder(TokioExecutor::new()).build(connector)
        },
    }))
}

/// The request headers: `headers.*` and the deprecated `request.contentType`; what is
/// wrong is recorded on `reader`.
fn read_headers(
    reader: &mut SettingsReader<'_>,
    declared: &Prefixed,
    content_type: Option<&str>,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = Vec::new();
    let mut ok = true;
    for (name, value) in &declared.0 {
        let key = format!("headers.{name}");
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => headers.push((name, value)),
            (Err(_), _) => {
                reader.error(key, format!("invalid header name {name:?}"));
                ok = false;
            }
            (_, Err(_)) => {
                reader.error(key, format!("invalid value for header {name:?}"));
                ok = false;
            }
        }
    }
    let has_content_type = headers.iter().any(|(name, _)| name == CONTENT_TYPE);
    match content_type {
        Some(_) if has_content_type => {
            reader.error(
                "request.contentType",
                "configuration error, cannot provide both \"request.contentType\" and \
                 \"headers.Content-Type\", use \"headers.Content-Type\" only",
            );
            ok = false;
        }
        Some(value) => match HeaderValue::from_str(value) {
            Ok(value) => headers.push((CONTENT_TYPE, value)),
            Err(_) => {
                reader.error(
                    "request.contentType",
                    format!("invalid header value {value:?}"),
                );
                ok = false;
            }
        },
        None if !has_content_type => {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        None => {}
    }
    ok.then_some(headers)
}

/// Checks a URL the way Go's `http.NewRequest` would refuse it, plus Funnel's
/// limitation to plain HTTP.
fn check_url(text: &str) -> Result<Uri, String> {
    // Go: a colon before any scheme letters means "missing protocol scheme".
    let scheme_end = text.find(':');
    let has_scheme = scheme_end.is_some_and(|i| {
        let scheme = &text[..i];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !has_scheme {
        return Err(format!("parse {text:?}: missing protocol scheme"));
    }
    let uri: Uri = text.parse().map_err(|e| format!("parse {text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => Ok(uri),
        Some("https") => Err(format!(
            "{text:?}: https is not supported yet (Funnel's webhook.http has no TLS client); \
             use http:// or a local TLS proxy"
        )),
        other => Err(format!(
            "{text:?}: unsupported protocol scheme {:?}",
            other.unwrap_or_default()
        )),
    }
}

/// Go's `url.Values.Encode` of the query: pairs sorted by key, keys and values
/// query-escaped (what Conduit does to a templated URL before sending it).
fn normalize_query(url: &str) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (url, None),
    };
    let Some((base, query)) = rest.split_once('?') else {
        return url.to_owned();
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(k), unescape(v))
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(url.len() + 8);
    out.push_str(base);
    if !pairs.is_empty() {
        out.push('?');
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            escape_into(&mut out, k);
            out.push('=');
            escape_into(&mut out, v);
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn escape_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            other => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(other >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(other & 15)]));
            }
        }
    }
}

/// A templated setting, or its text when it has no actions.
#[derive(Clone, Debug)]
enum Text {
    Literal(String),
    Template(Template),
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Literal(a), Self::Literal(b)) => a == b,
            (Self::Template(a), Self::Template(b)) => a.source() == b.source(),
            _ => false,
        }
    }
}

impl Text {
    /// `raw` as a template when it has actions, else as it is; a template that does not
    /// parse is refused with `what` in front of the error.
    fn parse(raw: &str, what: &str) -> Result<Self, String> {
        if !raw.contains("{{") {
            return Ok(Self::Literal(raw.to_owned()));
        }
        Template::parse(raw)
            .map(Self::Template)
            .map_err(|err| format!("{what}: {err}"))
    }

    fn render(&self, record: &Record) -> Result<String, String> {
        match self {
            Self::Literal(text) => Ok(text.clone()),
            Self::Template(t) => t.render(record).map_err(|e| e.to_string()),
        }
    }
}

/// What is sent as the request body.
enum Body {
    /// The record as OpenCDC JSON.
    Record,
    Text(Text),
}

/// Exponential backoff without jitter (jpillora/backoff, as Conduit uses it).
#[derive(Clone, Copy, Debug)]
struct Backoff {
    retries: u32,
    min: Duration,
    max: Duration,
    factor: f64,
}

impl Backoff {
    /// The wait before retry number `attempt` (0-based).
    fn wait(&self, attempt: u32) -> Duration {
        let secs = self.min.as_secs_f64() * self.factor.powi(attempt as i32);
        let max = self.max.as_secs_f64();
        if !secs.is_finite() || secs > max {
            self.max
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }
}

/// Why one request failed.
enum Failure {
    /// Worth retrying: a transport error or a 5xx status.
    Retryable(String),
    /// Retrying cannot help (a template, URL or field error).
    Permanent(String),
}

struct Webhook {
    label: Label,
    url: Text,
    method: Method,
    body: Body,
    headers: Vec<(HeaderName, HeaderValue)>,
    response_body: FieldPath,
    response_status: Option<FieldPath>,
    backoff: Backoff,
    /// Longest wait for one request (`request.timeout`).
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[async_trait]
impl Processor for Webhook {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            out.push(self.process_with_retries(record).await);
        }
        out
    }
}

impl Webhook {
    async fn process_with_retries(&self, record: &Record) -> ProcessedRecord {
        let mut attempt = 0;
        loop {
            match self.call(record).await {
                Ok(processed) => return processed,
                Err(Failure::Retryable(message)) if attempt < self.backoff.retries => {
                    let wait = self.backoff.wait(attempt);
                    tracing::debug!(
                        processor = %self.label,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        error = %message,
                        "retrying HTTP request"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(Failure::Retryable(message) | Failure::Permanent(message)) => {
                    return self.label.fail(message);
                }
            }
        }
    }

    /// One request for `record`, without retries.
    async fn call(&self, record: &Record) -> Result<ProcessedRecord, Failure> {
        let url = self
            .url
            .render(record)
            .map_err(|e| Failure::Permanent(format!("error while evaluating URL template: {e}")))?;
        let url = if matches!(self.url, Text::Template(_)) {
            let normalized = normalize_query(&url);
            check_url(&normalized)
                .map_err(|e| Failure::Permanent(format!("error parsing URL: {e}")))?;
            normalized
        } else {
            url
        };
        let body = match &self.body {
            Body::Record => Bytes::from(record.to_json()),
            Body::Text(text) => Bytes::from(text.render(record).map_err(|e| {
                Failure::Permanent(format!("error while evaluating request body template: {e}"))
            })?),
        };
        let mut request = Request::builder().method(self.method.clone()).uri(&url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| Failure::Permanent(format!("cannot create HTTP request: {e}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                Failure::Retryable(format!(
                    "error executing HTTP request: {}",
                    funnel_core::error_chain(&e)
                ))
            })?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Retryable(format!("error reading response body: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                Failure::Retryable(format!(
                    "no complete answer from {url} within {:?} (request.timeout)",
                    self.timeout
                ))
            })??;
        if status >= 500 {
            return Err(Failure::Retryable(format!(
                "error status code {status} (body: {:?})",
                String::from_utf8_lossy(&body)
            )));
        }
        let mut record = record.clone();
        record
            .set(&self.response_body, Value::Bytes(body))
            .map_err(|e| {
                Failure::Permanent(format!("failed setting response body: {}", path_error(&e)))
            })?;
        if let Some(path) = &self.response_status {
            record
                .set(path, Value::String(status.to_string().into()))
                .map_err(|e| {
                    Failure::Permanent(format!(
                        "failed setting response status: {}",
                        path_error(&e)
                    ))
                })?;
        }
        Ok(ProcessedRecord::Single(record))
    }
}

#[cfg(test)]
mod tests {
    use funnel_test_utils::results::{error_text, settings};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::any;
    use funnel_record::Data;

    use super::*;

    /// A server on 127.0.0.1:0: `/echo` answers with the method, content type, a
    /// header and the body; `/status/{code}` with that status; `/flaky` with 503 for
    /// the first two calls, then 200.
    async fn server() -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/echo",
                any(
                    |method: axum::http::Method, headers: HeaderMap, body: String| async move {
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        format!(
                            "{method} {} {} {body}",
                            header("content-type"),
                            header("x-token")
                        )
                    },
                ),
            )
            .route(
                "/status/{code}",
                any(|Path(code): Path<u16>| async move {
                    (
                        StatusCode::from_u16(code).unwrap(),
                        format!("status {code}"),
                    )
                }),
            )
            .route(
                "/flaky",
                any(|State(calls): State<Arc<AtomicUsize>>| async move {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        (StatusCode::SERVICE_UNAVAILABLE, "down")
                    } else {
                        (StatusCode::OK, "up")
                    }
                }),
            )
            .route(
                "/query",
                any(|uri: axum::http::Uri| async move { uri.query().unwrap_or("").to_owned() }),
            )
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), calls)
    }

    /// Processor `w` calling `path` of a fresh [`server`], with
    /// `extra` settings; and the server's count of `/flaky` calls.
    async fn hook(path: &str, extra: &[(&str, &str)]) -> (Box<dyn Processor>, Arc<AtomicUsize>) {
        let (base, calls) = server().await;
        let url = format!("{base}{path}");
        let mut pairs = vec![("request.url", url.as_str())];
        pairs.extend_from_slice(extra);
        (build("w", &settings(&pairs)).unwrap(), calls)
    }

    fn after(result: &ProcessedRecord) -> String {
        match result {
            ProcessedRecord::Single(r) => match &r.payload.after {
                Some(Data::Raw(b)) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("expected raw data, got {other:?}"),
            },
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_default_request_sends_the_record_as_json_and_stores_the_response() {
        let (mut p, _) = hook("/echo", &[("response.status", ".Metadata.status")]).await;
        let record = Record::new("pos", "hi");
        let out = p.process(std::slice::from_ref(&record)).await;
        let expected_json = String::from_utf8(record.to_json()).unwrap();
        assert_eq!(
            after(&out[0]),
            format!("GET application/json - {expected_json}")
        );
        let ProcessedRecord::Single(r) = &out[0] else {
            panic!()
        };
        assert_eq!(r.metadata.get("status"), Some("200"));
    }

    #[tokio::test]
    async fn templated_url_body_method_and_headers_are_used_per_record_of_a_batch() {
        let (mut p, _) = hook(
            "/{{ .Metadata.path }}",
            &[
                ("request.method", "POST"),
                ("request.body", "name={{ .Payload.After.name }}"),
                ("headers.X-Token", "secret"),
                ("headers.Content-Type", "text/plain"),
                ("response.body", ".Payload.After.response"),
            ],
        )
        .await;
        let make = |name: &str| {
            let mut r = Record::new(name, "");
            r.metadata.insert("path", "echo");
            r.payload.after = Some(Data::Structured(
                [("name".to_owned(), Value::String(name.into()))]
                    .into_iter()
                    .collect(),
            ));
            r
        };
        let out = p.process(&[make("a"), make("b")]).await;
        for (result, name) in out.iter().zip(["a", "b"]) {
            let ProcessedRecord::Single(r) = result else {
                panic!("{result:?}")
            };
            let Some(Data::Structured(after)) = &r.payload.after else {
                panic!()
            };
            assert_eq!(
                after["response"],
                Value::Bytes(Bytes::from(format!("POST text/plain secret name={name}")))
            );
        }
    }

    #[tokio::test]
    async fn templated_query_strings_are_sorted_and_escaped_like_go() {
        let (mut p, _) = hook("/query?b={{ .Metadata.v }}&a=1", &[]).await;
        let mut record = Record::new("p", "");
        record.metadata.insert("v", "x%20y");
        let out = p.process(&[record]).await;
        assert_eq!(after(&out[0]), "a=1&b=x+y");
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_backoff_until_they_succeed() {
        let (mut p, calls) = hook(
            "/flaky",
            &[
                ("backoffRetry.count", "3"),
                ("backoffRetry.min", "1ms"),
                ("backoffRetry.max", "5ms"),
            ],
        )
        .await;
        let out = p.process(&[Record::new("p", "")]).await;
        assert_eq!(after(&out[0]), "up");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn server_errors_fail_the_record_once_retries_are_used_up() {
        let (mut p, _) = hook(
            "/status/503",
            &[("backoffRetry.count", "1"), ("backoffRetry.min", "1ms")],
        )
        .await;
        let out = p
            .process(&[Record::new("p", ""), Record::new("q", "")])
            .await;
        assert_eq!(out.len(), 2);
        for result in &out {
            let message = error_text(result);
            assert!(
                message.contains("processor \"w\" (webhook.http)"),
                "{message}"
            );
            assert!(
                message.contains("error status code 503 (body: \"status 503\")"),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn client_errors_are_responses_stored_like_any_other() {
        let (mut p, _) = hook("/status/404", &[("response.status", ".Metadata.code")]).await;
        let out = p.process(&[Record::new("p", "")]).await;
        assert_eq!(after(&out[0]), "status 404");
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_the_record() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/");
        let mut p = build("w", &settings(&[("request.url", url.as_str())])).unwrap();
        let out = p.process(&[Record::new("p", "")]).await;
        assert!(error_text(&out[0]).contains("error executing HTTP request"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_stops_answering_fails_the_record_after_the_request_timeout() {
        // Accepts connections and reads requests, but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let url = format!("http://{addr}/");
        let mut p = build(
            "w",
            &settings(&[
                ("request.url", url.as_str()),
                ("request.timeout", "2s"),
                ("backoffRetry.count", "1"),
            ]),
        )
        .unwrap();
        let start = tokio::time::Instant::now();
        let out = p.process(&[Record::new("p", "")]).await;
        assert!(
            error_text(&out[0]).contains("request.timeout"),
            "{}",
            error_text(&out[0])
        );
        // Two attempts of 2 s each and a retry wait of 100 ms, on the paused clock.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(4100) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        silent.abort();
    }

    #[test]
    fn bad_settings_are_refused_with_conduit_messages() {
        // (settings, setting in error, text of the message)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (&[], "request.url", "required parameter is not provided"),
            (
                &[("request.url", ":not/a/valid/url")],
                "request.url",
                "missing protocol scheme",
            ),
            (
                &[("request.url", "https://example.com")],
                "request.url",
                "https is not supported",
            ),
            (
                &[("request.url", "http://x"), ("request.method", ":foo")],
                "request.method",
                "invalid method \":foo\"",
            ),
            (
                &[("request.url", "http://x"), ("backoffRetry.count", "x")],
                "backoffRetry.count",
                "\"x\" value is not a float",
            ),
            (
                &[("request.url", "http://x"), ("backoffRetry.min", "x")],
                "backoffRetry.min",
                "\"x\" value is not a duration",
            ),
            (
                &[("request.url", "http://x"), ("backoffRetry.factor", "0")],
                "backoffRetry.factor",
                "greater than 0",
            ),
            (
                &[
                    ("request.url", "http://x"),
                    ("request.contentType", "a/b"),
                    ("headers.content-type", "a/b"),
                ],
                "request.contentType",
                "cannot provide both",
            ),
            (
                &[
                    ("request.url", "http://x"),
                    ("response.body", ".Payload.After"),
                    ("response.status", ".Payload.After"),
                ],
                "response.status",
                "set to same field",
            ),
            (
                &[("request.url", "http://x"), ("response.status", ".Nope")],
                "response.status",
                "invalid reference",
            ),
            (
                &[("request.url", "http://x"), ("headers.bad name", "v")],
                "headers.bad name",
                "invalid header name",
            ),
        ];
        for (pairs, setting, message) in cases {
            let errors = build("w", &settings(pairs)).err().unwrap();
            assert!(
                errors
                    .iter()
                    .any(|e| e.setting == *setting && e.message.contains(message)),
                "{pairs:?}: {errors:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_maximum() {
        let b = Backoff {
            retries: 5,
            min: Duration::from_millis(100),
            max: Duration::from_millis(500),
            factor: 2.0,
        };
        assert_eq!(b.wait(0), Duration::from_millis(100));
        assert_eq!(b.wait(2), Duration::from_millis(400));
        assert_eq!(b.wait(3), Duration::from_millis(500));
    }
}
