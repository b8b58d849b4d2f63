//! Plain core-NATS subjects (`mode: pubsub`): a subscription as a source and publishes
//! as a destination. Core NATS stores nothing and has no acks, so both are at most
//! once: a message published while the source is not subscribed, or dropped by the
//! server for a slow subscriber, is lost; a destination's record is acked once the
//! client wrote it to the server's socket.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::Subscriber;
use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError, Source};
use funnel_record::{Metadata, Position, Record, metadata};
use futures::{FutureExt, StreamExt};

use super::config::{NatsDestinationConfig, NatsSourceConfig};
use super::conn;
use super::destination::{headers, subject_of};
use super::source::header_metadata;
use crate::ack::AckQueue;
use crate::format::RecordFormat;
use crate::util::unix_nanos_now;

/// A core-NATS source: subscribes to `subject`; positions are `<open time>-<count>`
/// (Unix nanoseconds and a counter), unique and increasing, but nothing to resume
/// from: a subscription starts with what is published after it.
pub struct NatsPubSubSource {
    id: String,
    who: String,
    config: NatsSourceConfig,
    subscriber: tokio::sync::Mutex<Option<Subscriber>>,
    client: Mutex<Option<async_nats::Client>>,
    /// Unix nanoseconds when the source opened: the first half of each position.
    opened: AtomicU64,
    /// Messages read since open.
    count: AtomicU64,
}

impl NatsPubSubSource {
    /// A source for connector `id` with validated settings (`mode: pubsub`).
    pub fn new(id: &str, config: NatsSourceConfig) -> Self {
        Self {
            id: id.to_owned(),
            who: format!("nats source {id}"),
            config,
            subscriber: tokio::sync::Mutex::new(None),
            client: Mutex::new(None),
            opened: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn record(&self, message: async_nats::Message, read_at: &str) -> Record {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let position = format!("{:020}-{n:020}", self.opened.load(Ordering::Relaxed));
        let mut meta = Metadata::new();
        let key = header_metadata(message.headers.as_ref(), &mut meta);
        meta.insert(metadata::COLLECTION, message.subject.as_str());
        meta.insert(metadata::READ_AT, read_at);
        meta.insert(metadata::SOURCE_CONNECTOR_ID, self.id.as_str());
        let mut record = Record::new(Position::from(position), message.payload);
        record.metadata = meta;
        record.key = key;
        record
    }
}

#[async_trait]
impl Source for NatsPubSubSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let c = &self.config;
        let client = conn::connect_with(&c.connection, &self.who, &self.id, |options| {
            options.subscription_capacity(c.buffer_size)
        })
        .await?;
        let cannot_subscribe = |e: &dyn std::fmt::Display| {
            ConnectorError::transient(format!(
                "{}: cannot subscribe to {} on {}: {e}",
                self.who,
                c.subject,
                conn::servers(&c.connection)
            ))
        };
        let subscriber = client
            .subscribe(c.subject.clone())
            .await
            .map_err(|e| cannot_subscribe(&e))?;
        // The subscription is in place on the server once the client's buffer is
        // flushed: what is published from now on is delivered.
        client.flush().await.map_err(|e| cannot_subscribe(&e))?;
        let opened = u64::try_from(unix_nanos_now()).unwrap_or_default();
        self.opened.store(opened, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        *self.subscriber.lock().await = Some(subscriber);
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
        tracing::info!(connector = %self.id, subject = %c.subject, "Subscribed to a core NATS subject (at most once).");
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let mut guard = self.subscriber.lock().await;
        let Some(subscriber) = guard.as_mut() else {
            return Err(crate::util::not_open(&self.who, "read"));
        };
        let first = subscriber.next().await.ok_or_else(|| {
            ConnectorError::transient(format!(
                "{}: the subscription to {} ended (connection closed)",
                self.who, self.config.subject
            ))
        })?;
        let read_at = unix_nanos_now().to_string();
        let mut records = vec![self.record(first, &read_at)];
        while records.len() < self.config.batch_size {
            match subscriber.next().now_or_never() {
                Some(Some(message)) => records.push(self.record(message, &read_at)),
                _ => break,
            }
        }
        Ok(Some(records))
    }

    async fn ack(&self, _positions: &[Position]) -> Result<(), ConnectorError> {
        // Core NATS has nothing to acknowledge.
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        if let Some(mut subscriber) = self.subscriber.lock().await.take() {
            let _ = subscriber.unsubscribe().await;
        }
        self.client.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }
}

/// A core-NATS destination: publishes each record and acks a batch once the client
/// flushed it to the server.
pub struct NatsPubSubDestination {
    id: String,
    who: String,
    config: NatsDestinationConfig,
    /// How each record becomes its message.
    format: RecordFormat,
    acks: AckQueue,
    client: Mutex<Option<async_nats::Client>>,
}

impl NatsPubSubDestination {
    /// A destination for connector `id` with validated settings (`mode: pubsub`).
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: NatsDestinationConfig, format: RecordFormat) -> Self {
        Self {
            id: id.to_owned(),
            who: format!("nats destination {id}"),
            config,
            format,
            acks: AckQueue::new(),
            client: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Destination for NatsPubSubDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let client = conn::connect(&self.config.connection, &self.who, &self.id).await?;
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let Some(client) = self
            .client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Err(crate::util::not_open(&self.who, "write"));
        };
        let servers = || conn::servers(&self.config.connection);
        let mut acks = Vec::with_capacity(records.len());
        for record in records {
            let encoded = subject_of(&self.who, &self.config.subject, record)
                .map_err(RecordError::msg)
                .and_then(|subject| Ok((subject, self.format.to_vec(record)?)));
            let (subject, payload) = match encoded {
                Ok(encoded) => encoded,
                Err(error) => {
                    acks.push(DestinationAck::nack(record.position.clone(), error));
                    continue;
                }
            };
            client
                .publish_with_headers(subject.clone(), headers(&record.metadata), payload.into())
                .await
                .map_err(|e| {
                    ConnectorError::transient(format!(
                        "{}: cannot publish to {subject} on {}: {e}",
                        self.who,
                        servers()
                    ))
                })?;
            acks.push(DestinationAck::ok(record.position.clone()));
        }
        client.flush().await.map_err(|e| {
            ConnectorError::transient(format!(
                "{}: cannot send to NATS at {}: {e}",
                self.who,
                servers()
            ))
        })?;
        self.acks.push(acks);
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let client = self.client.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.acks.close_torn_down(&self.who);
        if let Some(client) = client {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), client.flush()).await;
        }
        Ok(())
    }
}
