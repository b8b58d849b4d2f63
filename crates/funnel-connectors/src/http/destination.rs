//! The HTTP destination: a request per record, or per run of records bound for the
//! same URL and headers; retried with backoff on connection errors, timeouts, 5xx and
//! 429; each record acked after its request got a 2xx.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::Record;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use tokio_util::sync::CancellationToken;

use super::config::{BatchFormat, HttpDestinationConfig};
use crate::ack::AckQueue;
use crate::format::RecordFormat;

/// The longest `Retry-After` honoured; a server asking for more is asked again then.
const MOST_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How much of a refusing response's body goes into the record's error.
const MOST_ERROR_TEXT: usize = 512;

/// An HTTP destination. No I/O until [`Destination::open`].
pub struct HttpDestination {
    who: String,
    config: HttpDestinationConfig,
    /// How each record becomes its bytes.
    format: RecordFormat,
    acks: AckQueue,
    running: Mutex<Option<(reqwest::Client, CancellationToken)>>,
}

/// One request: its records, where it goes and what it carries.
struct Request<'a> {
    records: &'a [Record],
    url: String,
    headers: HeaderMap,
    body: Bytes,
}

/// Why a request did not succeed.
enum Failure {
    /// The server refused the records (a 4xx other than 429, or another status):
    /// they are nacked with this text.
    Refused(String),
    /// Retries are used up, or the destination stopped: the destination fails.
    GaveUp(String),
}

/// What one attempt got.
enum Attempt {
    Done,
    Refused(String),
    /// Worth another try, after at least the server's `Retry-After`.
    Retry(String, Option<Duration>),
}

impl HttpDestination {
    /// A destination for connector `id` with validated settings.
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: HttpDestinationConfig, format: RecordFormat) -> Self {
        Self {
            who: format!("http destination {id}"),
            config,
            format,
            acks: AckQueue::new(),
            running: Mutex::new(None),
        }
    }

    fn running(&self) -> Option<(reqwest::Client, CancellationToken)> {
        crate::util::lock(&self.running).clone()
    }

    /// The URL and headers of `record`, or why its templates failed.
    fn target(&self, record: &Record) -> Result<(String, HeaderMap), String> {
        let url =
            self.config.url.render(record).map_err(|e| {
                format!("{}: the url template failed (setting `url`): {e}", self.who)
            })?;
        let mut headers = HeaderMap::new();
        for (name, template) in &self.config.headers {
            let value = template
                .render(record)
                .map_err(|e| format!("{}: the template of headers.{name} failed: {e}", self.who))?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                format!(
                    "{}: headers.{name} rendered {value:?}, not a header value",
                    self.who
                )
            })?;
            headers.insert(name.clone(), value);
        }
        if !headers.contains_key(CONTENT_TYPE) {
            let content_type = match self.config.batch_format {
                BatchFormat::Ndjson => "application/x-ndjson",
                BatchFormat::None | BatchFormat::Json => "application/json",
            };
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        Ok((url, headers))
    }

    /// The body of a request carrying the records encoded as `encoded`.
    fn body(&self, encoded: &[Vec<u8>]) -> Bytes {
        match self.config.batch_format {
            BatchFormat::None => Bytes::from(encoded.concat()),
            BatchFormat::Json => {
                let size: usize = encoded.iter().map(|e| e.len() + 1).sum();
                let mut out = Vec::with_capacity(size + 1);
                out.push(b'[');
                for (i, bytes) in encoded.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(bytes);
                }
                out.push(b']');
                Bytes::from(out)
            }
            BatchFormat::Ndjson => {
                let size: usize = encoded.iter().map(|e| e.len() + 1).sum();
                let mut out = Vec::with_capacity(size);
                for bytes in encoded {
                    out.extend_from_slice(bytes);
                    out.push(b'\n');
                }
                Bytes::from(out)
            }
        }
    }

    /// One attempt of `request`.
    async fn attempt(&self, client: &reqwest::Client, request: &Request<'_>) -> Attempt {
        let method: &Method = &self.config.method;
        let sent = client
            .request(method.clone(), &request.url)
            .headers(request.headers.clone())
            .body(request.body.clone())
            .timeout(self.config.client.timeout)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_builder() => {
                return Attempt::Refused(format!(
                    "{}: {method} {}: {}",
                    self.who,
                    request.url,
                    funnel_core::error_chain(&e)
                ));
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    format!(
                        "no answer within {:?} (setting `timeout`)",
                        self.config.client.timeout
                    )
                } else {
                    funnel_core::error_chain(&e)
                };
                return Attempt::Retry(
                    format!("{}: {method} {}: {what}", self.who, request.url),
                    None,
                );
            }
        };
        let status = response.status();
        if status.is_success() {
            // Read the body, so the connection can be used again.
            let _ = response.bytes().await;
            return Attempt::Done;
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MOST_RETRY_AFTER));
        let text = response.text().await.unwrap_or_default();
        let text = text.trim();
        let text = match text.char_indices().nth(MOST_ERROR_TEXT) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text.to_owned(),
        };
        let message = format!(
            "{}: {method} {} answered {status}: {text}",
            self.who, request.url
        );
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry(message, retry_after)
        } else {
            Attempt::Refused(message)
        }
    }

    /// Sends `request` until it succeeds, is refused, or the retries are used up.
    async fn send(
        &self,
        client: &reqwest::Client,
        stop: &CancellationToken,
        request: &Request<'_>,
    ) -> Result<(), Failure> {
        let stopped = || Failure::GaveUp(format!("{}: stopped while sending", self.who));
        let mut wait = self.config.retry_min_wait;
        let mut retries = 0;
        loop {
            let attempt = tokio::select! {
                biased;
                () = stop.cancelled() => return Err(stopped()),
                attempt = self.attempt(client, request) => attempt,
            };
            match attempt {
                Attempt::Done => return Ok(()),
                Attempt::Refused(text) => return Err(Failure::Refused(text)),
                Attempt::Retry(text, retry_after) => {
                    if retries >= self.config.retry_max {
                        return Err(Failure::GaveUp(format!(
                            "{text} (gave up after {retries} retries, setting `retry.max`)"
                        )));
                    }
                    let pause = retry_after.map_or(wait, |asked| asked.max(wait));
                    tracing::warn!(connector = %self.who, error = %text, wait_ms = pause.as_millis() as u64, "HTTP request failed; retrying.");
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => return Err(stopped()),
                        () = tokio::time::sleep(pause) => {}
                    }
                    wait = (wait * 2).min(self.config.retry_max_wait);
                    retries += 1;
                }
            }
        }
    }
}

#[async_trait]
impl Destination for HttpDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let client = self.config.client.client(&self.who)?;
        *crate::util::lock(&self.running) = Some((client, CancellationToken::new()));
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let Some((client, stop)) = self.running() else {
            return Err(crate::util::not_open(&self.who, "write"));
        };
        self.acks.check()?;
        let mut encoded: Vec<Result<Vec<u8>, RecordError>> =
            records.iter().map(|r| self.format.to_vec(r)).collect();
        let mut start = 0;
        while start < records.len() {
            let target = match &mut encoded[start] {
                Ok(_) => self.target(&records[start]).map_err(RecordError::msg),
                Err(error) => Err(error.clone()),
            };
            let (url, headers) = match target {
                Ok(target) => target,
                Err(error) => {
                    self.acks
                        .push([DestinationAck::nack(records[start].position.clone(), error)]);
                    start += 1;
                    continue;
                }
            };
            let mut end = start + 1;
            if self.config.batch_format != BatchFormat::None {
                while end < records.len()
                    && encoded[end].is_ok()
                    && self
                        .target(&records[end])
                        .is_ok_and(|(u, h)| u == url && h == headers)
                {
                    end += 1;
                }
            }
            let group = &records[start..end];
            let bodies: Vec<Vec<u8>> = encoded[start..end]
                .iter_mut()
                .map(|e| e.as_mut().map(std::mem::take).unwrap_or_default())
                .collect();
            let request = Request {
                records: group,
                body: self.body(&bodies),
                url,
                headers,
            };
            match self.send(&client, &stop, &request).await {
                Ok(()) => self.acks.push_ok(request.records),
                Err(Failure::Refused(text)) => {
                    let error = RecordError::msg(text);
                    self.acks.push(
                        group
                            .iter()
                            .map(|r| DestinationAck::nack(r.position.clone(), error.clone())),
                    );
                }
                Err(Failure::GaveUp(text)) => {
                    self.acks.fail(text.clone());
                    return Err(ConnectorError::transient(text));
                }
            }
            start = end;
        }
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        if let Some((_, stop)) = crate::util::lock(&self.running).take() {
            stop.cancel();
        }
        self.acks.close(format!("{}: torn down", self.who));
        Ok(())
    }
}

impl Drop for HttpDestination {
    fn drop(&mut self) {
        if let Some((_, stop)) = self.running() {
            stop.cancel();
        }
    }
}
