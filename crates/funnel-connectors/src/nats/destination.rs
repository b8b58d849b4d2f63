//! The NATS JetStream destination: publishes each record and acks it once the stream
//! confirmed it stored the message (the JetStream publish ack).

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::header::{HeaderName, NATS_MESSAGE_ID};
use async_nats::jetstream::context::{Context, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::{HeaderMap, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Metadata, Position, Record};
use tokio::sync::mpsc;

use super::config::NatsDestinationConfig;
use super::conn;
use crate::ack::AckQueue;
use crate::format::RecordFormat;
use crate::util::AbortOnDrop;

/// Publishes in flight (sent, publish ack not yet received) at most.
const MAX_IN_FLIGHT: usize = 4096;

/// How long a publish ack may take.
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// One message sent, waiting for its publish ack; what it was made of is kept (cheap
/// shared handles, not a copy of the message) to publish it again.
struct InFlight {
    position: Position,
    subject: Subject,
    payload: Bytes,
    metadata: Metadata,
    ack: PublishAckFuture,
}

/// What a destination publishes, waiting for the acks in order.
enum Pending {
    Sent(Box<InFlight>),
    /// A record that could not be published at all (its subject template failed):
    /// nacked in its place in the order.
    Refused(Position, RecordError),
}

/// A NATS JetStream destination. No I/O until [`Destination::open`].
pub struct NatsDestination {
    id: String,
    who: String,
    config: NatsDestinationConfig,
    /// How each record becomes its message.
    format: RecordFormat,
    acks: std::sync::Arc<AckQueue>,
    running: Mutex<Option<Running>>,
}

struct Running {
    js: Context,
    client: async_nats::Client,
    sender: mpsc::UnboundedSender<Pending>,
    task: AbortOnDrop,
}

impl NatsDestination {
    /// A destination for connector `id` with validated settings.
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: NatsDestinationConfig, format: RecordFormat) -> Self {
        Self {
            id: id.to_owned(),
            who: format!("nats destination {id}"),
            format,
            config,
            acks: std::sync::Arc::new(AckQueue::new()),
            running: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        crate::util::lock(&self.running)
    }
}

/// The message of a record: `payload` (the record in `sdk.record.format`: OpenCDC
/// JSON, as the other destinations write it), `headers` (its metadata, from
/// [`headers`]) and a message ID from the connector `id` and the `position`, for the
/// stream's de-duplication.
fn message(
    id: &str,
    position: &Position,
    payload: Bytes,
    mut headers: HeaderMap,
) -> PublishMessage {
    headers.insert(NATS_MESSAGE_ID, message_id(id, position));
    PublishMessage::build().payload(payload).headers(headers)
}

/// The headers of the metadata last seen, reused (cloned, not built again) for the
/// following records while they share that metadata map, as a source's records of one
/// batch usually do.
#[derive(Default)]
struct HeaderCache {
    /// Holds the map alive, so the same address means the same, unchanged map (a
    /// shared map is copied before any change).
    metadata: Option<Metadata>,
    headers: HeaderMap,
}

impl HeaderCache {
    /// The headers of `metadata`.
    fn headers(&mut self, metadata: &Metadata) -> HeaderMap {
        let same = self.metadata.as_ref().is_some_and(|cached| {
            match (cached.as_map(), metadata.as_map()) {
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                (None, None) => true,
                _ => false,
            }
        });
        if !same {
            self.headers = headers(metadata);
            self.metadata = Some(metadata.clone());
        }
        self.headers.clone()
    }
}

/// The subject of `record` from the `subject` template, or why there is none; `who`
/// names the connector.
pub(crate) fn subject_of(
    who: &str,
    template: &funnel_template::Template,
    record: &Record,
) -> Result<String, String> {
    if let Some(literal) = template.as_literal() {
        return Ok(literal.to_owned());
    }
    match template.render(record) {
        Ok(subject) if !valid_subject(&subject) => Err(format!(
            "{who}: the subject template rendered {subject:?}, which is not a subject to \
             publish to (setting `subject`)"
        )),
        Ok(subject) => Ok(subject),
        Err(e) => Err(format!(
            "{who}: the subject template failed (setting `subject`): {e}"
        )),
    }
}

/// The headers of a record's `metadata`, without JetStream's own `Nats-*` headers and
/// keys that are not header names.
pub(crate) fn headers(metadata: &Metadata) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in metadata.iter() {
        if name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-") {
            continue;
        }
        if name.contains(char::is_whitespace) {
            continue;
        }
        if let Ok(name) = HeaderName::from_str(name) {
            headers.insert(name, value);
        }
    }
    headers
}

/// Whether `subject` can be published to: dot-separated non-empty tokens without
/// whitespace or wildcards.
pub(crate) fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && !token.chars().any(char::is_whitespace)
        })
}

/// `Nats-Msg-Id` of a record: the connector ID and the position (hex when it is not
/// printable ASCII), so a record written again after a restart is stored once.
pub(crate) fn message_id(id: &str, position: &Position) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = position.as_bytes();
    let mut out = String::with_capacity(id.len() + 2 + bytes.len() * 2);
    out.push_str(id);
    out.push('/');
    match std::str::from_utf8(bytes) {
        Ok(text) if bytes.iter().all(u8::is_ascii_graphic) => out.push_str(text),
        _ => {
            out.push('x');
            for b in bytes {
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// Waits for publish acks in write order and queues the destination's acks; a
/// publish that fails is sent again up to `attempts` times, then the queue fails.
async fn confirm(
    id: String,
    who: String,
    js: Context,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    acks: std::sync::Arc<AckQueue>,
    attempts: usize,
    wait: Duration,
) {
    while let Some(item) = pending.recv().await {
        let mut batch = vec![item];
        while batch.len() < 1024 {
            match pending.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let mut done = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Pending::Refused(position, error) => {
                    done.push(DestinationAck::nack(position, error))
                }
                Pending::Sent(in_flight) => {
                    let InFlight {
                        position,
                        subject,
                        payload,
                        metadata,
                        ack,
                    } = *in_flight;
                    let mut result = ack.await;
                    let mut tries = 0;
                    while let Err(e) = &result {
                        if tries >= attempts {
                            break;
                        }
                        tries += 1;
                        tracing::warn!(connector = %who, %subject, error = %e, attempt = tries, "Publishing to NATS failed; publishing again.");
                        tokio::time::sleep(wait).await;
                        let message = message(&id, &position, payload.clone(), headers(&metadata));
                        result = match js.send_publish(subject.clone(), message).await {
                            Ok(ack) => ack.await,
                            Err(e) => Err(e),
                        };
                    }
                    match result {
                        Ok(_) => done.push(DestinationAck::ok(position)),
                        Err(e) => {
                            acks.push(done);
                            acks.fail(format!(
                                "{who}: no publish ack from JetStream for subject {subject}: {e}"
                            ));
                            return;
                        }
                    }
                }
            }
        }
        acks.push(done);
    }
}

#[async_trait]
impl Destination for NatsDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let c = &self.config;
        let client = conn::connect(&c.connection, &self.who, &self.id).await?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(PUBLISH_ACK_TIMEOUT)
            .max_ack_inflight(MAX_IN_FLIGHT)
            .backpressure_on_inflight(true)
            .build(client.clone());
        // A literal subject must be stored by a stream, or every publish would fail.
        if let Some(subject) = c.subject.as_literal() {
            js.stream_by_subject(subject).await.map_err(|e| {
                ConnectorError::config(format!(
                    "{}: no JetStream stream on {} stores subject {subject}: {e}",
                    self.who,
                    conn::servers(&c.connection)
                ))
            })?;
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(confirm(
            self.id.clone(),
            self.who.clone(),
            js.clone(),
            receiver,
            std::sync::Arc::clone(&self.acks),
            c.retry_attempts,
            c.retry_wait,
        ));
        if let Some(old) = self.lock().replace(Running {
            js,
            client,
            sender,
            task: AbortOnDrop(task),
        }) {
            old.task.abort();
        }
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let (js, sender) = match &*self.lock() {
            Some(running) => (running.js.clone(), running.sender.clone()),
            None => {
                return Err(crate::util::not_open(&self.who, "write"));
            }
        };
        self.acks.check()?;
        // A literal subject is made once per batch, not per record.
        let literal = self
            .config
            .subject
            .as_literal()
            .map(|s| Subject::from(s.to_owned()));
        let mut cache = HeaderCache::default();
        for record in records {
            let subject = match &literal {
                Some(subject) => Ok(subject.clone()),
                None => subject_of(&self.who, &self.config.subject, record)
                    .map(Subject::from)
                    .map_err(RecordError::msg),
            };
            let encoded = subject.and_then(|s| Ok((s, self.format.to_vec(record)?)));
            let item = match encoded {
                Ok((subject, payload)) => {
                    let payload = Bytes::from(payload);
                    let message = message(
                        &self.id,
                        &record.position,
                        payload.clone(),
                        cache.headers(&record.metadata),
                    );
                    let ack = js
                        .send_publish(subject.clone(), message)
                        .await
                        .map_err(|e| {
                            ConnectorError::transient(format!(
                                "{}: cannot publish to subject {subject}: {e}",
                                self.who
                            ))
                        })?;
                    Pending::Sent(Box::new(InFlight {
                        position: record.position.clone(),
                        subject,
                        payload,
                        metadata: record.metadata.clone(),
                        ack,
                    }))
                }
                Err(error) => Pending::Refused(record.position.clone(), error),
            };
            if sender.send(item).is_err() {
                return Err(ConnectorError::transient(format!(
                    "{}: the destination was torn down",
                    self.who
                )));
            }
        }
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let running = self.lock().take();
        self.acks.close_torn_down(&self.who);
        if let Some(running) = running {
            running.task.abort();
            let _ = tokio::time::timeout(Duration::from_secs(1), running.client.flush()).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_with_empty_tokens_whitespace_or_wildcards_are_refused() {
        assert!(valid_subject("orders.eu.new"));
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a.<no value>"] {
            assert!(!valid_subject(bad), "{bad:?}");
        }
    }

    #[test]
    fn headers_are_reused_only_for_records_sharing_one_metadata_map() {
        let mut shared = Metadata::new();
        shared.insert("opencdc.collection", "orders");
        let same = shared.clone();
        let mut changed = shared.clone();
        changed.insert("opencdc.collection", "users");
        let mut cache = HeaderCache::default();
        let value = |h: &HeaderMap| h.get("opencdc.collection").map(|v| v.as_str().to_owned());
        assert_eq!(value(&cache.headers(&shared)).as_deref(), Some("orders"));
        assert_eq!(value(&cache.headers(&same)).as_deref(), Some("orders"));
        assert_eq!(value(&cache.headers(&changed)).as_deref(), Some("users"));
        assert_eq!(value(&cache.headers(&Metadata::none())), None);
        assert_eq!(value(&cache.headers(&shared)).as_deref(), Some("orders"));
    }

    #[test]
    fn message_ids_hold_the_connector_and_the_position() {
        assert_eq!(
            message_id("p:out", &Position::from("00000001")),
            "p:out/00000001"
        );
        assert_eq!(
            message_id("p:out", &Position::new(vec![0u8, 255])),
            "p:out/x00ff"
        );
    }
}
