//! The NATS JetStream source: a durable pull consumer read by a background task into
//! a bounded queue; acks go to the server only for released positions.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::jetstream::consumer::pull::{Config as PullConfig, MessagesErrorKind};
use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::Stream as JsStream;
use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Source};
use funnel_record::{Data, Metadata, Position, Record, metadata};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};

use super::config::{AckPolicy, DeliverPolicy, NatsSourceConfig};
use super::{METADATA_SEQUENCE, METADATA_STREAM, conn};
use crate::util::{AbortOnDrop, lock, unix_nanos_now};

/// How long the server waits for an ack before delivering a message again (the
/// source skips a message it already read in this run, so this only paces
/// redeliveries of what a stopped pipeline left unacknowledged).
const ACK_WAIT: Duration = Duration::from_secs(60);

/// How long `teardown` waits for the server's confirmation of the last ack sent (the
/// compliance suite allows a teardown 3 s).
const ACK_CONFIRM: Duration = Duration::from_secs(1);

/// Idle heartbeat of pull requests: a missed one tells the client the connection or
/// the consumer is gone.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Longest wait between attempts to create the consumer again.
const MOST_BACKOFF: Duration = Duration::from_secs(5);

/// Messages read together (at most `sdk.batch.size`), each with its stream sequence and
/// its reply subject (where its ack goes), or the error that stopped reading.
type Item = Result<(Vec<Record>, Vec<(u64, Subject)>), ConnectorError>;

/// What the consumer's `max_ack_pending` allows beyond `bufferSize`: the records the
/// engine holds in flight with its default credits (2,048), a batch being read past
/// them and one being acked. The engine's credits, not the server, then hold reading
/// back; a smaller window makes the server wait for acks while the pipeline idles.
const ENGINE_WINDOW: usize = 4096;

/// A NATS JetStream source. No I/O until [`Source::open`].
pub struct NatsSource {
    id: String,
    who: String,
    config: NatsSourceConfig,
    durable: String,
    resume: Option<Position>,
    /// Messages read by the background task, in stream order.
    queue: tokio::sync::Mutex<Option<mpsc::Receiver<Item>>>,
    /// Read and not yet acknowledged, in read order: stream sequence and reply subject.
    unacked: Mutex<VecDeque<(u64, Subject)>>,
    running: Mutex<Option<Running>>,
}

struct Running {
    task: AbortOnDrop,
    acks: Acks,
}

/// Where acks go: a connection of their own (on the reader's connection, an ack and the
/// server's confirmation of it queue behind the messages being pulled). The last ack of
/// each `ack` call asks for a confirmation, `<inbox>.<n>` for the `n`th call; the
/// server handles a connection's acks in the order they arrive, so confirmation `n`
/// means every ack of calls up to `n` is on the consumer's ack floor. `ack` does not
/// wait for it; `teardown` waits for the last one.
#[derive(Clone)]
struct Acks {
    client: async_nats::Client,
    inbox: Subject,
    /// The number of the last call that sent acks, and its last ack.
    sent: std::sync::Arc<Mutex<(u64, Option<Subject>)>>,
    /// The highest confirmation received.
    confirmed: watch::Receiver<u64>,
    /// Receives the confirmations; stopped with the source.
    _listener: std::sync::Arc<AbortOnDrop>,
}

impl Acks {
    /// Connects the acks' own client and subscribes to its confirmations.
    async fn connect(
        config: &NatsSourceConfig,
        who: &str,
        id: &str,
    ) -> Result<Self, ConnectorError> {
        let client = conn::connect(&config.connection, who, id).await?;
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(format!("{inbox}.*")).await.map_err(|e| {
            ConnectorError::transient(format!(
                "{who}: cannot subscribe to ack confirmations on {}: {e}",
                conn::servers(&config.connection)
            ))
        })?;
        let (tx, confirmed) = watch::channel(0);
        let listener = tokio::spawn(async move {
            while let Some(reply) = replies.next().await {
                let n = reply
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|n| n.parse().ok());
                if let Some(n) = n {
                    tx.send_if_modified(|c| {
                        let newer = n > *c;
                        *c = (*c).max(n);
                        newer
                    });
                }
            }
        });
        Ok(Self {
            client,
            inbox: Subject::from(inbox),
            sent: std::sync::Arc::default(),
            confirmed,
            _listener: std::sync::Arc::new(AbortOnDrop(listener)),
        })
    }

    /// Sends the acks to `replies`, in order, the last one asking for a confirmation.
    async fn send(&self, mut replies: Vec<Subject>) -> Result<(), async_nats::PublishError> {
        let Some(last) = replies.pop() else {
            return Ok(());
        };
        for reply in replies {
            self.client.publish(reply, Bytes::new()).await?;
        }
        // `ack` calls come one at a time (in read order), so the numbers follow the
        // order the acks are sent in.
        let n = lock(&self.sent).0 + 1;
        let confirm = Subject::from(format!("{}.{n}", self.inbox));
        self.client
            .publish_with_reply(last.clone(), confirm, Bytes::from_static(b"+ACK"))
            .await?;
        *lock(&self.sent) = (n, Some(last));
        Ok(())
    }

    /// Waits up to [`ACK_CONFIRM`] for the confirmation of the last ack sent, so that
    /// every ack sent is on the ack floor; without one (the server is restarting, the
    /// connection is down), the last ack goes once more without a reply and the client
    /// gets a second to write what it holds.
    async fn confirm_all(&self) {
        let (n, last) = lock(&self.sent).clone();
        let Some(last) = last else {
            return;
        };
        let mut confirmed = self.confirmed.clone();
        // (The confirmation's guard is not held past this statement.)
        let in_time = matches!(
            tokio::time::timeout(ACK_CONFIRM, confirmed.wait_for(|c| *c >= n)).await,
            Ok(Ok(_))
        );
        if !in_time {
            let again = async {
                let _ = self.client.publish(last, Bytes::new()).await;
                let _ = self.client.flush().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), again).await;
        }
    }
}

impl NatsSource {
    /// A source for connector `id` with validated settings, resuming after `resume`
    /// (a position it emitted) or from the consumer's state and `deliverPolicy`.
    pub fn new(id: &str, config: NatsSourceConfig, resume: Option<Position>) -> Self {
        let durable = config
            .durable
            .clone()
            .unwrap_or_else(|| default_durable(id));
        Self {
            id: id.to_owned(),
            who: format!("nats source {id}"),
            config,
            durable,
            resume,
            queue: tokio::sync::Mutex::new(None),
            unacked: Mutex::new(VecDeque::new()),
            running: Mutex::new(None),
        }
    }

    /// The durable consumer's name.
    pub fn durable(&self) -> &str {
        &self.durable
    }
}

/// `funnel-` and the connector ID, with the characters a consumer name cannot hold
/// replaced by `_`.
pub(crate) fn default_durable(id: &str) -> String {
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("funnel-{name}")
}

/// Parses a position this source emitted: the stream sequence in decimal.
fn sequence(who: &str, position: &Position) -> Result<u64, ConnectorError> {
    std::str::from_utf8(position.as_bytes())
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| {
            ConnectorError::config(format!(
                "{who}: {position} is not a position of this source (a stream sequence)"
            ))
        })
}

/// Puts the first value of each of a message's `headers` in `meta`; the record key is
/// its `Nats-Msg-Id`, when it has one.
pub(super) fn header_metadata(
    headers: Option<&async_nats::HeaderMap>,
    meta: &mut Metadata,
) -> Option<Data> {
    let mut key = None;
    for (name, values) in headers.into_iter().flat_map(|h| h.iter()) {
        if let Some(value) = values.first() {
            let name: &str = name.as_ref();
            if name == "Nats-Msg-Id" {
                key = Some(Data::Raw(Bytes::copy_from_slice(value.as_str().as_bytes())));
            }
            meta.insert(name, value.as_str());
        }
    }
    key
}

/// Sends the batch gathered so far, if there is one, leaving `records` and `acks`
/// empty; false when nobody receives any more.
async fn flush(
    tx: &mpsc::Sender<Item>,
    records: &mut Vec<Record>,
    acks: &mut Vec<(u64, Subject)>,
) -> bool {
    records.is_empty()
        || tx
            .send(Ok((std::mem::take(records), std::mem::take(acks))))
            .await
            .is_ok()
}

/// What the reader task needs.
struct Reader {
    who: String,
    id: String,
    stream: JsStream,
    template: PullConfig,
    batch: usize,
    client: async_nats::Client,
    give_up_after: Option<Duration>,
}

impl Reader {
    /// (Re)creates the durable consumer so that it starts at stream sequence `start`.
    async fn consumer_from(&self, start: u64) -> Result<PullConsumer, ConnectorError> {
        let name = self.template.durable_name.clone().unwrap_or_default();
        let mut config = self.template.clone();
        config.deliver_policy = consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start.max(1),
        };
        // A consumer's start cannot be changed: it is made again.
        let _ = self.stream.delete_consumer(&name).await;
        self.stream.create_consumer(config).await.map_err(|e| {
            ConnectorError::transient(format!(
                "{}: cannot create the consumer {name} on stream {} (subject {}): {e}",
                self.who,
                self.stream.cached_info().config.name,
                self.template.filter_subject
            ))
        })
    }

    /// Reads from `consumer` into `tx` until the pipeline stops, remaking the consumer
    /// after the last message read when it goes away.
    async fn run(self, mut consumer: PullConsumer, mut last: u64, tx: mpsc::Sender<Item>) {
        let mut backoff = Duration::from_millis(100);
        let mut failing_since: Option<Instant> = None;
        loop {
            match consumer
                .stream()
                .max_messages_per_batch(self.batch)
                .heartbeat(HEARTBEAT)
                .expires(HEARTBEAT * 4)
                .messages()
                .await
            {
                Ok(mut messages) => {
                    let mut read_at = String::new();
                    let mut records = Vec::new();
                    let mut acks = Vec::new();
                    let mut next = messages.next().await;
                    while let Some(item) = next {
                        match item {
                            Ok(message) => {
                                failing_since = None;
                                backoff = Duration::from_millis(100);
                                // The records of a batch share the time they were read.
                                if records.is_empty() {
                                    read_at = unix_nanos_now().to_string();
                                }
                                // Not a redelivery of a message this run already read.
                                if let Some((record, seq, reply)) = self.record(message, &read_at)
                                    && seq > last
                                {
                                    records.push(record);
                                    acks.push((seq, reply));
                                    last = seq;
                                }
                            }
                            Err(e) => {
                                if !flush(&tx, &mut records, &mut acks).await {
                                    return;
                                }
                                tracing::warn!(connector = %self.id, error = %e, "Reading from NATS failed; going on.");
                                if self.gave_up(&mut failing_since, &tx, &e.to_string()).await {
                                    return;
                                }
                                if matches!(
                                    e.kind(),
                                    MessagesErrorKind::ConsumerDeleted
                                        | MessagesErrorKind::RequestLimitExceeded
                                        | MessagesErrorKind::PushBasedConsumer
                                ) {
                                    break;
                                }
                            }
                        }
                        // Messages already received join the batch; the batch goes
                        // out when none is ready or it is full.
                        let ready = if records.len() < self.batch {
                            messages.next().now_or_never()
                        } else {
                            None
                        };
                        next = match ready {
                            Some(item) => item,
                            None => {
                                if !flush(&tx, &mut records, &mut acks).await {
                                    return;
                                }
                                messages.next().await
                            }
                        };
                    }
                    if !flush(&tx, &mut records, &mut acks).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(connector = %self.id, error = %e, "Pulling from NATS failed; retrying.");
                    if self.gave_up(&mut failing_since, &tx, &e.to_string()).await {
                        return;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MOST_BACKOFF);
            match self.consumer_from(last + 1).await {
                Ok(c) => consumer = c,
                Err(e) => {
                    tracing::warn!(connector = %self.id, error = %e, "Remaking the NATS consumer failed; retrying.");
                    if self.gave_up(&mut failing_since, &tx, &e.to_string()).await {
                        return;
                    }
                }
            }
        }
    }

    /// Whether reading has failed for too long; then the error goes to the pipeline.
    async fn gave_up(
        &self,
        failing_since: &mut Option<Instant>,
        tx: &mpsc::Sender<Item>,
        error: &str,
    ) -> bool {
        let since = *failing_since.get_or_insert_with(Instant::now);
        let closed = self.client.connection_state() == async_nats::connection::State::Disconnected
            && self
                .give_up_after
                .is_some_and(|limit| since.elapsed() > limit);
        if closed {
            let _ = tx
                .send(Err(ConnectorError::transient(format!(
                    "{}: lost the connection to NATS and could not reconnect: {error}",
                    self.who
                ))))
                .await;
        }
        closed
    }

    /// The record of a message, read at `read_at` (Unix nanoseconds); `None` (logged)
    /// for a message without JetStream metadata, which a pull consumer never delivers.
    fn record(
        &self,
        message: async_nats::jetstream::Message,
        read_at: &str,
    ) -> Option<(Record, u64, Subject)> {
        let (seq, published) = match message.info() {
            Ok(info) => (info.stream_sequence, info.published.unix_timestamp_nanos()),
            Err(e) => {
                tracing::warn!(connector = %self.id, error = %e, "Skipping a NATS message without JetStream metadata.");
                return None;
            }
        };
        let mut message = message.message;
        let reply = message.reply.take()?;
        let seq_text = seq.to_string();
        // Nanoseconds since 1970 fit an i64 until 2262, which formats faster than an i128.
        let created =
            i64::try_from(published).map_or_else(|_| published.to_string(), |n| n.to_string());
        // The metadata collected in one go (sorted and built at once, not six inserts);
        // the source's own keys come after the headers, so they win over a header of
        // the same name.
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(8);
        let mut key = None;
        for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
            if let Some(value) = values.first() {
                let name: &str = name.as_ref();
                if name == "Nats-Msg-Id" {
                    key = Some(Data::Raw(Bytes::copy_from_slice(value.as_str().as_bytes())));
                }
                pairs.push((name, value.as_str()));
            }
        }
        pairs.extend([
            (metadata::COLLECTION, message.subject.as_str()),
            (METADATA_SEQUENCE, seq_text.as_str()),
            (
                METADATA_STREAM,
                self.stream.cached_info().config.name.as_str(),
            ),
            (metadata::CREATED_AT, created.as_str()),
            (metadata::READ_AT, read_at),
            (metadata::SOURCE_CONNECTOR_ID, self.id.as_str()),
        ]);
        let meta: Metadata = pairs.into_iter().collect();
        let mut record = Record::new(Position::from(seq_text), message.payload);
        record.metadata = meta;
        record.key = key;
        Some((record, seq, reply))
    }
}

#[async_trait]
impl Source for NatsSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let who = &self.who;
        let resume = self.resume.as_ref().map(|p| sequence(who, p)).transpose()?;
        let c = &self.config;
        let client = conn::connect(&c.connection, who, &self.id).await?;
        let acks = Acks::connect(c, who, &self.id).await?;
        let servers = conn::servers(&c.connection);
        let js = async_nats::jetstream::new(client.clone());
        let stream = js.get_stream(&c.stream).await.map_err(|e| {
            ConnectorError::config(format!(
                "{who}: cannot open stream {} on {servers}: {e}",
                c.stream
            ))
        })?;
        // Where to start: after the committed position; else where the consumer's
        // acknowledgements got to; else from `deliverPolicy`.
        let start = match resume {
            Some(seq) => Some(seq + 1),
            None => match stream.consumer_info(&self.durable).await {
                Ok(info) => Some(info.ack_floor.stream_sequence + 1),
                Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => None,
                Err(e) => {
                    return Err(ConnectorError::transient(format!(
                        "{who}: cannot look up consumer {} on stream {} at {servers}: {e}",
                        self.durable, c.stream
                    )));
                }
            },
        };
        let template = PullConfig {
            durable_name: Some(self.durable.clone()),
            filter_subject: c.subject.clone(),
            ack_policy: match c.ack_policy {
                AckPolicy::Explicit => consumer::AckPolicy::Explicit,
                AckPolicy::All => consumer::AckPolicy::All,
                AckPolicy::None => consumer::AckPolicy::None,
            },
            ack_wait: ACK_WAIT,
            max_ack_pending: i64::try_from(c.buffer_size + ENGINE_WINDOW).unwrap_or(i64::MAX),
            ..PullConfig::default()
        };
        let give_up_after = c.connection.max_reconnects.map(|n| {
            c.connection.reconnect_wait * u32::try_from(n + 1).unwrap_or(u32::MAX) + HEARTBEAT * 6
        });
        let reader = Reader {
            who: who.clone(),
            id: self.id.clone(),
            stream,
            template,
            batch: c.batch_size.min(c.buffer_size),
            client: client.clone(),
            give_up_after,
        };
        let consumer = match start {
            Some(start) => reader.consumer_from(start).await,
            None => {
                let mut config = reader.template.clone();
                config.deliver_policy = match c.deliver_policy {
                    DeliverPolicy::All => consumer::DeliverPolicy::All,
                    DeliverPolicy::New => consumer::DeliverPolicy::New,
                };
                reader.stream.create_consumer(config).await.map_err(|e| {
                    ConnectorError::config(format!(
                        "{who}: cannot create consumer {} on stream {} (subject {}) at {servers}: {e}",
                        self.durable, c.stream, c.subject
                    ))
                })
            }
        }
        .map_err(|e| ConnectorError::config(e.to_string()))?;
        let last = start.map_or(0, |s| s - 1);
        // Batches of up to `batch` messages: `bufferSize` messages in all.
        let (tx, rx) = mpsc::channel(c.buffer_size.div_ceil(c.batch_size.max(1)).max(2));
        let task = tokio::spawn(reader.run(consumer, last, tx));
        *self.queue.lock().await = Some(rx);
        if let Some(old) = lock(&self.running).replace(Running {
            task: AbortOnDrop(task),
            acks,
        }) {
            old.task.abort();
        }
        tracing::info!(connector = %self.id, stream = %c.stream, consumer = %self.durable, start = ?start, "Reading from NATS JetStream.");
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let mut guard = self.queue.lock().await;
        let (records, acks) = crate::util::next_from(guard.as_mut(), &self.who).await?;
        lock(&self.unacked).extend(acks);
        Ok(Some(records))
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        let Some(last) = positions.last() else {
            return Ok(());
        };
        let last = sequence(&self.who, last)?;
        let released: Vec<(u64, Subject)> = {
            let mut unacked = lock(&self.unacked);
            let n = unacked.iter().take_while(|(seq, _)| *seq <= last).count();
            unacked.drain(..n).collect()
        };
        let to_ack: Vec<Subject> = match self.config.ack_policy {
            AckPolicy::Explicit => released.into_iter().map(|(_, reply)| reply).collect(),
            AckPolicy::All => released
                .into_iter()
                .last()
                .map(|(_, r)| r)
                .into_iter()
                .collect(),
            AckPolicy::None => Vec::new(),
        };
        if to_ack.is_empty() {
            return Ok(());
        }
        let Some(acks) = lock(&self.running).as_ref().map(|r| r.acks.clone()) else {
            return Err(ConnectorError::transient(format!(
                "{}: ack before open or after teardown",
                self.who
            )));
        };
        acks.send(to_ack).await.map_err(|e| {
            ConnectorError::transient(format!("{}: cannot ack a message: {e}", self.who))
        })
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let running = lock(&self.running).take();
        if let Some(running) = running {
            running.task.abort();
            // Every ack sent reaches the ack floor before the source closes, without
            // waiting long for a dead server.
            running.acks.confirm_all().await;
        }
        lock(&self.unacked).clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_consumer_name_is_the_connector_id_made_safe() {
        assert_eq!(default_durable("pipe:in.1"), "funnel-pipe_in_1");
    }

    #[test]
    fn positions_are_stream_sequences() {
        assert_eq!(sequence("s", &Position::from("42")).unwrap(), 42);
        assert!(sequence("s", &Position::from("x")).is_err());
    }
}
