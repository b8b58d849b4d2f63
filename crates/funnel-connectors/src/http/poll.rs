//! The HTTP source's polling mode: `GET url` every `pollingPeriod`, the records taken
//! from the response (`response.records`), the next request carrying the cursor the
//! response gave (`response.cursor`, sent as the query parameter `cursor.param`).
//!
//! A position is `{"c":<cursor of the request>,"i":<index of the record in the
//! response>,"n":<records in it>,"next":<cursor it gave>}`. A restart from it asks for
//! `next` when the record was the last of its response, else asks for `c` again and
//! skips the records up to `i`: nothing acknowledged is read again, nothing is skipped.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Source};
use funnel_record::{Metadata, Position, Record, metadata};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::config::PollConfig;
use crate::util::unix_nanos_now;

/// Metadata key holding the URL a record was fetched from.
pub const METADATA_URL: &str = "http.url";

/// How much of a failed response's body goes into the error.
const MOST_ERROR_TEXT: usize = 512;

/// A polling HTTP source. No I/O until [`Source::open`].
pub struct HttpPollSource {
    who: String,
    id: String,
    config: PollConfig,
    batch_size: usize,
    state: tokio::sync::Mutex<State>,
    client: Mutex<Option<reqwest::Client>>,
}

/// Where the polling stands.
struct State {
    /// The cursor of the next request (`None`: the first, without one).
    cursor: Option<String>,
    /// Records of the response to `cursor` already read (skipped when it is asked
    /// again).
    read: usize,
    /// Records fetched and not read yet.
    pending: VecDeque<Record>,
    /// When the next request may go.
    next_request: Instant,
}

/// A record's place: see the module documentation.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Place {
    c: Option<String>,
    i: usize,
    n: usize,
    next: Option<String>,
}

impl HttpPollSource {
    /// A source for connector `id` polling as `config` says, resuming after `resume`.
    pub fn new(id: &str, config: PollConfig, batch_size: usize, resume: Option<&Position>) -> Self {
        let mut state = State {
            cursor: None,
            read: 0,
            pending: VecDeque::new(),
            next_request: Instant::now(),
        };
        // Without a cursor every response is a fresh snapshot: nothing to resume.
        let resume = resume.filter(|_| config.cursor.is_some());
        if let Some(place) = resume.and_then(|p| serde_json::from_slice::<Place>(p.as_bytes()).ok())
        {
            if place.i + 1 >= place.n && place.next.is_some() {
                state.cursor = place.next;
            } else {
                state.cursor = place.c;
                state.read = place.i + 1;
            }
        }
        Self {
            who: format!("http source {id}"),
            id: id.to_owned(),
            config,
            batch_size,
            state: tokio::sync::Mutex::new(state),
            client: Mutex::new(None),
        }
    }

    fn client(&self) -> Result<reqwest::Client, ConnectorError> {
        crate::util::lock(&self.client)
            .clone()
            .ok_or_else(|| crate::util::not_open(&self.who, "read"))
    }

    /// The URL of a request with `cursor`.
    fn url(&self, cursor: Option<&str>) -> reqwest::Url {
        let mut url = self.config.url.clone();
        if let Some(cursor) = cursor {
            url.query_pairs_mut()
                .append_pair(&self.config.cursor_param, cursor);
        }
        url
    }

    /// One request: the records of the response after the first `skip`, as records
    /// placed for `cursor`, and the cursor the response gave.
    async fn fetch(
        &self,
        cursor: Option<&str>,
        skip: usize,
    ) -> Result<(Vec<Record>, Option<String>), ConnectorError> {
        let client = self.client()?;
        let url = self.url(cursor);
        let failed = |what: String| format!("{}: GET {url}: {what}", self.who);
        let response = client
            .get(url.clone())
            .headers(self.config.headers.clone())
            .timeout(self.config.client.timeout)
            .send()
            .await
            .map_err(|e| ConnectorError::transient(failed(funnel_core::error_chain(&e))))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ConnectorError::transient(failed(funnel_core::error_chain(&e))))?;
        if !status.is_success() {
            let text =
                String::from_utf8_lossy(&body[..body.len().min(MOST_ERROR_TEXT)]).into_owned();
            let message = failed(format!("{status}: {}", text.trim()));
            return Err(match status.as_u16() {
                401 | 403 => {
                    ConnectorError::fatal(format!("{message} (check the credentials in `headers`)"))
                }
                _ => ConnectorError::transient(message),
            });
        }
        let (payloads, next) = self
            .parse(&body)
            .map_err(|e| ConnectorError::data(failed(e)))?;
        let n = payloads.len();
        let read_at = unix_nanos_now().to_string();
        let url_text = url.as_str();
        let records = payloads
            .into_iter()
            .enumerate()
            .skip(skip)
            .map(|(i, payload)| {
                let place = Place {
                    c: cursor.map(str::to_owned),
                    i,
                    n,
                    next: next.clone(),
                };
                let position = serde_json::to_vec(&place).unwrap_or_default();
                let mut meta = Metadata::new();
                meta.insert(metadata::READ_AT, read_at.as_str());
                meta.insert(metadata::SOURCE_CONNECTOR_ID, self.id.as_str());
                meta.insert(METADATA_URL, url_text);
                let mut record = Record::new(Position::from(position), payload);
                record.metadata = meta;
                record
            })
            .collect();
        Ok((records, next))
    }

    /// The records of a response body and the cursor it gives.
    fn parse(&self, body: &Bytes) -> Result<(Vec<Bytes>, Option<String>), String> {
        if self.config.records.is_none() && self.config.cursor.is_none() {
            return Ok((vec![body.clone()], None));
        }
        let document: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the response is not JSON: {e}"))?;
        let payloads = match self.config.records.as_deref() {
            None => vec![body.clone()],
            Some(pointer) => match document.pointer(pointer) {
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|item| Bytes::from(serde_json::to_vec(item).unwrap_or_default()))
                    .collect(),
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(other) => {
                    return Err(format!(
                        "{pointer} (setting `response.records`) is not an array but {}",
                        kind(other)
                    ));
                }
            },
        };
        let next = match self.config.cursor.as_deref().map(|p| document.pointer(p)) {
            None | Some(None | Some(serde_json::Value::Null)) => None,
            Some(Some(serde_json::Value::String(s))) if s.is_empty() => None,
            Some(Some(serde_json::Value::String(s))) => Some(s.clone()),
            Some(Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)))) => {
                Some(v.to_string())
            }
            Some(Some(other)) => {
                return Err(format!(
                    "the cursor (setting `response.cursor`) is {}, not a string or number",
                    kind(other)
                ));
            }
        };
        Ok((payloads, next))
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[async_trait]
impl Source for HttpPollSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let client = self.config.client.client(&self.who)?;
        *crate::util::lock(&self.client) = Some(client);
        tracing::info!(connector = %self.id, url = %self.config.url, "Polling over HTTP.");
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let mut state = self.state.lock().await;
        while state.pending.is_empty() {
            tokio::time::sleep_until(state.next_request).await;
            let cursor = state.cursor.clone();
            let (records, next) = self.fetch(cursor.as_deref(), state.read).await?;
            let got = records.len();
            let moved = next.is_some() && next != cursor;
            if self.config.cursor.is_some() {
                if moved {
                    state.cursor = next;
                    state.read = 0;
                } else {
                    // The same cursor again: its records read so far are skipped.
                    state.read += got;
                }
            }
            // A response that brought records and a new cursor: the next page at
            // once; otherwise wait for new data.
            state.next_request = if got > 0 && moved {
                Instant::now()
            } else {
                Instant::now() + self.config.polling_period
            };
            state.pending.extend(records);
        }
        let n = state.pending.len().min(self.batch_size.max(1));
        Ok(Some(state.pending.drain(..n).collect()))
    }

    async fn ack(&self, _positions: &[Position]) -> Result<(), ConnectorError> {
        // Nothing to tell the server: the position carries the cursor.
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        crate::util::lock(&self.client).take();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::ClientConfig;

    fn config(records: Option<&str>, cursor: Option<&str>) -> PollConfig {
        PollConfig {
            url: reqwest::Url::parse("http://127.0.0.1:9/items").unwrap(),
            headers: reqwest::header::HeaderMap::new(),
            polling_period: Duration::from_secs(1),
            records: records.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
            cursor_param: "after".to_owned(),
            client: ClientConfig {
                timeout: Duration::from_secs(1),
                ca_cert_path: None,
            },
        }
    }

    fn position(place: &Place) -> Position {
        Position::from(serde_json::to_vec(place).unwrap())
    }

    /// A source restarted after record `i` of a three-record response asked with
    /// cursor `a`, whose next cursor was `b`.
    fn resumed_after(i: usize) -> HttpPollSource {
        let place = Place {
            c: Some("a".into()),
            i,
            n: 3,
            next: Some("b".into()),
        };
        HttpPollSource::new(
            "p:in",
            config(Some("/items"), Some("/next")),
            10,
            Some(&position(&place)),
        )
    }

    #[test]
    fn a_restart_after_the_last_record_of_a_response_asks_for_the_next_cursor() {
        let source = resumed_after(2);
        let state = source.state.try_lock().unwrap();
        assert_eq!((state.cursor.as_deref(), state.read), (Some("b"), 0));
    }

    #[test]
    fn a_restart_inside_a_response_asks_for_it_again_and_skips_what_was_read() {
        let source = resumed_after(0);
        let state = source.state.try_lock().unwrap();
        assert_eq!((state.cursor.as_deref(), state.read), (Some("a"), 1));
        assert_eq!(
            source.url(Some("a x")).as_str(),
            "http://127.0.0.1:9/items?after=a+x"
        );
    }

    #[test]
    fn records_and_cursor_are_taken_from_the_response_by_json_pointer() {
        let source = HttpPollSource::new(
            "p:in",
            config(Some("/data/items"), Some("/meta/next")),
            10,
            None,
        );
        let body =
            Bytes::from_static(br#"{"data":{"items":[{"a":1},{"a":2}]},"meta":{"next":17}}"#);
        let (payloads, next) = source.parse(&body).unwrap();
        assert_eq!(
            payloads,
            [
                Bytes::from_static(br#"{"a":1}"#),
                Bytes::from_static(br#"{"a":2}"#)
            ]
        );
        assert_eq!(next.as_deref(), Some("17"));
        let error = source
            .parse(&Bytes::from_static(br#"{"data":{"items":{}}}"#))
            .unwrap_err();
        assert!(error.contains("response.records"), "{error}");
        let whole = HttpPollSource::new("p:in", config(None, None), 10, None);
        assert_eq!(
            whole
                .parse(&Bytes::from_static(b"not json"))
                .unwrap()
                .0
                .len(),
            1
        );
    }
}
