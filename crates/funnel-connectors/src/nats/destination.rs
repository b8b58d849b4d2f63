//! The NATS JetStream destination: publishes each record and acks it once the stream
//! confirmed it stored the message (the JetStream publish ack).
//!
//! A JetStream publish is a core-NATS publish with a reply subject: the stream answers
//! on it with its publish ack (or an error). Rather than one request per message (an
//! inbox subject, a reply channel, a timer and a future each), the destination
//! subscribes once to `<inbox>.*` and publishes message `n` with the reply subject
//! `<inbox>.<n>`; one task matches the replies to the records by `n`, with one timer
//! for the oldest publish still waiting.

use std::collections::VecDeque;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::header::{HeaderName, NATS_MESSAGE_ID};
use async_nats::{HeaderMap, StatusCode, Subject, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Metadata, Position, Record};
use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::config::NatsDestinationConfig;
use super::conn;
use crate::ack::AckQueue;
use crate::format::RecordFormat;
use crate::util::AbortOnDrop;

/// Publishes in flight (sent, publish ack not yet received) at most.
const MAX_IN_FLIGHT: usize = 4096;

/// Records numbered and queued at a time: room for them in the window is taken at once.
const CHUNK: usize = 256;

/// How long a publish ack may take.
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a record became: a message to publish, or why there is none.
enum Pending {
    /// What the message is made of (cheap shared handles, not a copy), to publish it
    /// again.
    Sent {
        position: Position,
        subject: Subject,
        payload: Bytes,
        metadata: Metadata,
    },
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
    acks: Arc<AckQueue>,
    running: Mutex<Option<Running>>,
}

struct Running {
    client: async_nats::Client,
    /// Replies go to `<inbox>.<n>`: this is `<inbox>.`.
    reply_prefix: Arc<str>,
    /// The number of the next message.
    next: u64,
    /// Batches of numbered records, in number order, for the confirming task.
    sender: mpsc::UnboundedSender<(u64, Vec<Pending>)>,
    /// Room for publishes in flight; closed when the confirming task ends.
    window: Arc<Semaphore>,
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
            acks: Arc::new(AckQueue::new()),
            running: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        crate::util::lock(&self.running)
    }

    fn torn_down(&self) -> ConnectorError {
        ConnectorError::transient(format!("{}: the destination was torn down", self.who))
    }
}

/// The headers of the metadata last seen, reused (cloned, not built again) for the
/// following records while they share that metadata map, as a source's records of one
/// batch usually do. The cached headers hold a `Nats-Msg-Id` already, so setting a
/// record's replaces a value instead of growing the map.
#[derive(Default)]
struct HeaderCache {
    /// Holds the map alive, so the same address means the same, unchanged map (a
    /// shared map is copied before any change).
    metadata: Option<Metadata>,
    headers: HeaderMap,
}

impl HeaderCache {
    /// The headers of a record with `metadata` at `position`: the metadata's and the
    /// `Nats-Msg-Id` from the connector `id` and the position, for the stream's
    /// de-duplication.
    fn headers(&mut self, id: &str, position: &Position, metadata: &Metadata) -> HeaderMap {
        let same = self.metadata.as_ref().is_some_and(|cached| {
            match (cached.as_map(), metadata.as_map()) {
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                (None, None) => true,
                _ => false,
            }
        });
        if !same {
            self.headers = headers(metadata);
            self.headers.insert(NATS_MESSAGE_ID, "");
            self.metadata = Some(metadata.clone());
        }
        let mut headers = self.headers.clone();
        headers.insert(NATS_MESSAGE_ID, message_id(id, position));
        headers
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
    let printable = bytes.iter().all(u8::is_ascii_graphic);
    let len = if printable {
        bytes.len()
    } else {
        1 + bytes.len() * 2
    };
    let mut out = String::with_capacity(id.len() + 1 + len);
    out.push_str(id);
    out.push('/');
    match std::str::from_utf8(bytes) {
        Ok(text) if printable => out.push_str(text),
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

/// The reply subject of message `n`: `prefix` (`<inbox>.`) and `n` in decimal.
fn reply_subject(prefix: &str, n: u64) -> Subject {
    let mut buf = [0u8; 20];
    let digits = crate::util::decimal(n, &mut buf);
    let mut out = String::with_capacity(prefix.len() + digits.len());
    out.push_str(prefix);
    // Only ASCII digits.
    out.push_str(std::str::from_utf8(digits).unwrap_or_default());
    Subject::from(out)
}

/// The number of the message a reply on `subject` answers, when it has `prefix`.
fn reply_number(prefix: &str, subject: &str) -> Option<u64> {
    subject.strip_prefix(prefix)?.parse().ok()
}

/// What the stream answered: `Ok` for a publish ack (the message is stored, or was
/// stored before under its `Nats-Msg-Id`), else the error.
fn publish_result(reply: &async_nats::Message) -> Result<(), String> {
    if reply.status == Some(StatusCode::NO_RESPONDERS) {
        return Err("no stream found for the subject (no responders)".to_owned());
    }
    let body = &reply.payload[..];
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    // The ack is `{"stream":...,"seq":...}`, an error `{"error":{...}}`; a quote in a
    // stream name is escaped, so `"error":` is only ever the error's key.
    if !has(b"\"error\":") && has(b"\"seq\":") {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => match value.get("error") {
            Some(error) => Err(error
                .get("description")
                .and_then(serde_json::Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned)),
            None => Err(format!("unexpected reply {text}")),
        },
        Err(_) => Err(format!("unexpected reply {text}")),
    }
}

/// Where a published record stands.
enum Stage {
    /// Sent; publish again (or fail) when no ack came by `due`.
    Sent { due: Instant },
    /// Its publish failed or timed out; publish again at `due`.
    Again { due: Instant },
    /// Its ack, to be passed on in order.
    Done(DestinationAck),
}

/// A record waiting for its publish ack.
struct Slot {
    /// The message to publish again (none for a refused record).
    pending: Option<Pending>,
    stage: Stage,
    /// Publishes of it after the first.
    tries: usize,
}

/// Matches publish acks to records and queues the destination's acks in write order;
/// a publish that times out or fails is sent again up to `attempts` times after
/// `wait`, then the queue fails.
struct Confirm {
    id: String,
    who: String,
    client: async_nats::Client,
    reply_prefix: Arc<str>,
    acks: Arc<AckQueue>,
    window: Arc<Semaphore>,
    attempts: usize,
    wait: Duration,
    /// Records in number order, the oldest first.
    slots: VecDeque<Slot>,
    /// The number of the oldest.
    first: u64,
    /// Slots published again or waiting to be: while any, the earliest due is found by
    /// a scan rather than at the front.
    irregular: usize,
}

/// Closes the window when the confirming task ends (also when it is aborted), so a
/// write waiting for room fails instead of waiting forever.
struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Confirm {
    async fn run(
        mut self,
        mut queued: mpsc::UnboundedReceiver<(u64, Vec<Pending>)>,
        mut replies: Subscriber,
    ) {
        let _close = CloseOnDrop(Arc::clone(&self.window));
        let mut timer: Pin<Box<tokio::time::Sleep>> =
            Box::pin(tokio::time::sleep(Duration::from_secs(86_400)));
        // Whether the timer is set to a due (else it waits for the next one).
        let mut armed = false;
        loop {
            if !armed && let Some(due) = self.earliest_due() {
                timer.as_mut().reset(due);
                armed = true;
            }
            let outcome = tokio::select! {
                biased;
                reply = replies.next() => match reply {
                    Some(reply) => {
                        // The record of a reply was queued before its publish.
                        self.take_queued(&mut queued);
                        let mut outcome = self.resolve(&reply);
                        let mut more = 0;
                        while outcome.is_ok() && more < 1024 {
                            let Some(Some(reply)) = replies.next().now_or_never() else {
                                break;
                            };
                            outcome = self.resolve(&reply);
                            more += 1;
                        }
                        outcome
                    }
                    None => Err(format!(
                        "{}: the subscription for publish acks ended",
                        self.who
                    )),
                },
                batch = queued.recv() => match batch {
                    Some((first, pending)) => {
                        self.queue(first, pending);
                        Ok(())
                    }
                    // The destination is gone.
                    None => return,
                },
                () = &mut timer, if armed => {
                    armed = false;
                    self.expire().await
                }
            };
            self.pass_on();
            if let Err(failure) = outcome {
                self.acks.fail(failure);
                return;
            }
            // A publish failed or sent again may be due before the timer.
            if armed
                && self.irregular > 0
                && let Some(due) = self.earliest_due()
                && due < timer.deadline()
            {
                timer.as_mut().reset(due);
            }
        }
    }

    /// Takes the batches queued so far.
    fn take_queued(&mut self, queued: &mut mpsc::UnboundedReceiver<(u64, Vec<Pending>)>) {
        while let Ok((first, pending)) = queued.try_recv() {
            self.queue(first, pending);
        }
    }

    /// Adds records numbered from `first`, just published (or about to be).
    fn queue(&mut self, first: u64, pending: Vec<Pending>) {
        if self.slots.is_empty() {
            self.first = first;
        }
        let due = Instant::now() + PUBLISH_ACK_TIMEOUT;
        self.slots
            .extend(pending.into_iter().map(|pending| match pending {
                Pending::Refused(position, error) => Slot {
                    pending: None,
                    stage: Stage::Done(DestinationAck::nack(position, error)),
                    tries: 0,
                },
                sent @ Pending::Sent { .. } => Slot {
                    pending: Some(sent),
                    stage: Stage::Sent { due },
                    tries: 0,
                },
            }));
    }

    /// Applies a reply to its record.
    fn resolve(&mut self, reply: &async_nats::Message) -> Result<(), String> {
        let Some(n) = reply_number(&self.reply_prefix, reply.subject.as_str()) else {
            return Ok(());
        };
        // A late reply for a record already passed on is dropped.
        let Some(index) = n
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return Ok(());
        };
        let attempts = self.attempts;
        let wait = self.wait;
        let Some(slot) = self.slots.get_mut(index) else {
            return Ok(());
        };
        let Some(Pending::Sent {
            position, subject, ..
        }) = &slot.pending
        else {
            return Ok(());
        };
        if matches!(slot.stage, Stage::Done(_)) {
            return Ok(());
        }
        let irregular_before = slot.tries > 0 || matches!(slot.stage, Stage::Again { .. });
        match publish_result(reply) {
            Ok(()) => {
                slot.stage = Stage::Done(DestinationAck::ok(position.clone()));
                if irregular_before {
                    self.irregular -= 1;
                }
            }
            // A reply for a record already waiting to be published again changes nothing.
            Err(_) if matches!(slot.stage, Stage::Again { .. }) => {}
            Err(error) => {
                if slot.tries >= attempts {
                    return Err(format!(
                        "{}: no publish ack from JetStream for subject {subject}: {error}",
                        self.who
                    ));
                }
                tracing::warn!(connector = %self.who, %subject, %error, attempt = slot.tries + 1, "Publishing to NATS failed; publishing again.");
                slot.stage = Stage::Again {
                    due: Instant::now() + wait,
                };
                if !irregular_before {
                    self.irregular += 1;
                }
            }
        }
        Ok(())
    }

    /// Handles every record whose due passed: one sent without an ack by then is
    /// published again after `wait` (or fails the destination after `attempts`), one
    /// waiting to be published again is.
    async fn expire(&mut self) -> Result<(), String> {
        let now = Instant::now();
        for index in 0..self.slots.len() {
            let n = self.first + index as u64;
            let slot = &mut self.slots[index];
            let Some(Pending::Sent {
                position,
                subject,
                payload,
                metadata,
            }) = &slot.pending
            else {
                continue;
            };
            match &slot.stage {
                Stage::Sent { due } if *due <= now => {
                    let error = "timed out: no publish ack in time".to_owned();
                    if slot.tries >= self.attempts {
                        return Err(format!(
                            "{}: no publish ack from JetStream for subject {subject}: {error}",
                            self.who
                        ));
                    }
                    tracing::warn!(connector = %self.who, %subject, %error, attempt = slot.tries + 1, "Publishing to NATS failed; publishing again.");
                    if slot.tries == 0 {
                        self.irregular += 1;
                    }
                    slot.stage = Stage::Again {
                        due: now + self.wait,
                    };
                }
                Stage::Again { due } if *due <= now => {
                    let headers = HeaderCache::default().headers(&self.id, position, metadata);
                    let reply = reply_subject(&self.reply_prefix, n);
                    if let Err(e) = self
                        .client
                        .publish_with_reply_and_headers(
                            subject.clone(),
                            reply,
                            headers,
                            payload.clone(),
                        )
                        .await
                    {
                        return Err(format!(
                            "{}: cannot publish to subject {subject} again: {e}",
                            self.who
                        ));
                    }
                    slot.tries += 1;
                    slot.stage = Stage::Sent {
                        due: Instant::now() + PUBLISH_ACK_TIMEOUT,
                    };
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The earliest due of a record not done yet: the oldest's while none was published
    /// again (they were sent in order), else found by a scan.
    fn earliest_due(&self) -> Option<Instant> {
        let due = |slot: &Slot| match slot.stage {
            Stage::Sent { due } | Stage::Again { due } => Some(due),
            Stage::Done(_) => None,
        };
        if self.irregular == 0 {
            self.slots.iter().find_map(due)
        } else {
            self.slots.iter().filter_map(due).min()
        }
    }

    /// Passes on the acks of the oldest records that are done, and frees their room.
    fn pass_on(&mut self) {
        let mut done = Vec::new();
        while let Some(slot) = self.slots.front() {
            if !matches!(slot.stage, Stage::Done(_)) {
                break;
            }
            if let Some(Slot {
                stage: Stage::Done(ack),
                ..
            }) = self.slots.pop_front()
            {
                done.push(ack);
            }
            self.first += 1;
        }
        if !done.is_empty() {
            self.window.add_permits(done.len());
            self.acks.push(done);
        }
    }
}

#[async_trait]
impl Destination for NatsDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let c = &self.config;
        let client = conn::connect(&c.connection, &self.who, &self.id).await?;
        // A literal subject must be stored by a stream, or every publish would fail.
        if let Some(subject) = c.subject.as_literal() {
            let js = async_nats::jetstream::ContextBuilder::new()
                .timeout(PUBLISH_ACK_TIMEOUT)
                .build(client.clone());
            js.stream_by_subject(subject).await.map_err(|e| {
                ConnectorError::config(format!(
                    "{}: no JetStream stream on {} stores subject {subject}: {e}",
                    self.who,
                    conn::servers(&c.connection)
                ))
            })?;
        }
        let inbox = client.new_inbox();
        let replies = client.subscribe(format!("{inbox}.*")).await.map_err(|e| {
            ConnectorError::transient(format!(
                "{}: cannot subscribe to publish acks on {}: {e}",
                self.who,
                conn::servers(&c.connection)
            ))
        })?;
        let reply_prefix: Arc<str> = format!("{inbox}.").into();
        let window = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let (sender, receiver) = mpsc::unbounded_channel();
        let confirm = Confirm {
            id: self.id.clone(),
            who: self.who.clone(),
            client: client.clone(),
            reply_prefix: Arc::clone(&reply_prefix),
            acks: Arc::clone(&self.acks),
            window: Arc::clone(&window),
            attempts: c.retry_attempts,
            wait: c.retry_wait,
            slots: VecDeque::new(),
            first: 0,
            irregular: 0,
        };
        let task = tokio::spawn(confirm.run(receiver, replies));
        if let Some(old) = self.lock().replace(Running {
            client,
            reply_prefix,
            next: 0,
            sender,
            window,
            task: AbortOnDrop(task),
        }) {
            old.task.abort();
        }
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let (client, reply_prefix, window) = match &*self.lock() {
            Some(running) => (
                running.client.clone(),
                Arc::clone(&running.reply_prefix),
                Arc::clone(&running.window),
            ),
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
        let mut messages = Vec::with_capacity(records.len().min(CHUNK));
        for chunk in records.chunks(CHUNK) {
            // Room for the chunk's publishes, freed as their acks are passed on.
            window
                .acquire_many(u32::try_from(chunk.len()).unwrap_or(u32::MAX))
                .await
                .map_err(|_| match self.acks.failure() {
                    Some(failure) => ConnectorError::transient(failure),
                    None => self.torn_down(),
                })?
                .forget();
            let mut pending = Vec::with_capacity(chunk.len());
            for record in chunk {
                let subject = match &literal {
                    Some(subject) => Ok(subject.clone()),
                    None => subject_of(&self.who, &self.config.subject, record)
                        .map(Subject::from)
                        .map_err(RecordError::msg),
                };
                let encoded = subject.and_then(|s| Ok((s, self.format.to_vec(record)?)));
                match encoded {
                    Ok((subject, payload)) => {
                        let payload = Bytes::from(payload);
                        let headers = cache.headers(&self.id, &record.position, &record.metadata);
                        messages.push(Some((subject.clone(), payload.clone(), headers)));
                        pending.push(Pending::Sent {
                            position: record.position.clone(),
                            subject,
                            payload,
                            metadata: record.metadata.clone(),
                        });
                    }
                    Err(error) => {
                        messages.push(None);
                        pending.push(Pending::Refused(record.position.clone(), error));
                    }
                }
            }
            // Numbered and queued in one step, so the queue is in number order; queued
            // before publishing, so a reply never comes before its record.
            let first = {
                let mut running = self.lock();
                let running = running.as_mut().ok_or_else(|| self.torn_down())?;
                let first = running.next;
                running.next += pending.len() as u64;
                running
                    .sender
                    .send((first, pending))
                    .map_err(|_| self.torn_down())?;
                first
            };
            for (n, message) in (first..).zip(messages.drain(..)) {
                let Some((subject, payload, headers)) = message else {
                    continue;
                };
                let reply = reply_subject(&reply_prefix, n);
                client
                    .publish_with_reply_and_headers(subject.clone(), reply, headers, payload)
                    .await
                    .map_err(|e| {
                        ConnectorError::transient(format!(
                            "{}: cannot publish to subject {subject}: {e}",
                            self.who
                        ))
                    })?;
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
        let at = Position::from("7");
        let mut headers = |m: &Metadata| cache.headers("p:out", &at, m);
        let value = |h: &HeaderMap| h.get("opencdc.collection").map(|v| v.as_str().to_owned());
        assert_eq!(value(&headers(&shared)).as_deref(), Some("orders"));
        assert_eq!(value(&headers(&same)).as_deref(), Some("orders"));
        assert_eq!(value(&headers(&changed)).as_deref(), Some("users"));
        assert_eq!(value(&headers(&Metadata::none())), None);
        assert_eq!(value(&headers(&shared)).as_deref(), Some("orders"));
    }

    #[test]
    fn each_record_gets_its_own_message_id_over_the_cached_headers() {
        let mut shared = Metadata::new();
        shared.insert("opencdc.collection", "orders");
        let mut cache = HeaderCache::default();
        let id = |h: &HeaderMap| {
            h.get_all(NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let first = cache.headers("p:out", &Position::from("1"), &shared);
        let second = cache.headers("p:out", &Position::from("2"), &shared.clone());
        assert_eq!(id(&first), ["p:out/1"]);
        assert_eq!(id(&second), ["p:out/2"]);
        assert_eq!(second.len(), 2);
    }

    #[test]
    fn replies_are_matched_to_their_messages_by_number() {
        let subject = reply_subject("_INBOX.abc.", 4096);
        assert_eq!(subject.as_str(), "_INBOX.abc.4096");
        assert_eq!(reply_number("_INBOX.abc.", subject.as_str()), Some(4096));
        assert_eq!(reply_subject("_INBOX.abc.", 0).as_str(), "_INBOX.abc.0");
        assert_eq!(reply_number("_INBOX.abc.", "_INBOX.other.1"), None);
    }

    #[test]
    fn a_publish_ack_is_told_from_an_error_reply() {
        let reply = |body: &'static str| async_nats::Message {
            subject: "_INBOX.a.1".into(),
            reply: None,
            payload: Bytes::from_static(body.as_bytes()),
            headers: None,
            status: None,
            description: None,
            length: body.len(),
        };
        assert_eq!(publish_result(&reply(r#"{"stream":"s","seq":7}"#)), Ok(()));
        assert_eq!(
            publish_result(&reply(r#"{"stream":"error","seq":8,"duplicate":true}"#)),
            Ok(())
        );
        assert_eq!(
            publish_result(&reply(
                r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#
            )),
            Err("maximum messages exceeded".to_owned())
        );
        assert!(publish_result(&reply("garbage")).is_err());
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
