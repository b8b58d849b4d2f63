//! The RabbitMQ source: one consumer with manual acks; `ack` acknowledges the last
//! released delivery with `multiple`, so the broker forgets a message only after Funnel
//! committed its position.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Source};
use funnel_record::{Data, Metadata, Position, Record, metadata};
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use tokio_util::sync::CancellationToken;

use super::config::RabbitmqSourceConfig;
use super::conn;
use crate::util::{unix_nanos_now, unless_stopped};

/// How long `teardown` waits for the server to close the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Distinguishes the sessions of one process (with the time, of every process).
static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// A RabbitMQ source; see the [module docs](super).
pub struct RabbitmqSource {
    id: String,
    who: String,
    config: RabbitmqSourceConfig,
    /// `amqp:<session>:`: delivery tags count from 1 on every channel, so positions
    /// carry the session that read them.
    prefix: String,
    state: Mutex<Option<Arc<Open>>>,
    stop: CancellationToken,
}

struct Open {
    connection: Connection,
    channel: Channel,
    consumer: tokio::sync::Mutex<Consumer>,
}

impl RabbitmqSource {
    /// A source for `config`; `id` is the connector ID. The resume position is not
    /// needed: the broker keeps every message not acknowledged.
    pub fn new(id: &str, config: RabbitmqSourceConfig) -> Self {
        let session = (unix_nanos_now() as u64) ^ (SESSIONS.fetch_add(1, Ordering::Relaxed) << 48);
        Self {
            id: id.to_owned(),
            who: format!("rabbitmq source {id}"),
            config,
            prefix: format!("amqp:{session:x}:"),
            state: Mutex::new(None),
            stop: CancellationToken::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<Arc<Open>>> {
        // Each critical section is one assignment or clone: a poisoned lock is usable.
        crate::util::lock(&self.state)
    }

    fn open_state(&self) -> Result<Arc<Open>, ConnectorError> {
        if self.stop.is_cancelled() {
            return Err(ConnectorError::transient(format!(
                "{}: torn down",
                self.who
            )));
        }
        self.state().clone().ok_or_else(|| {
            ConnectorError::internal(format!("{}: read or ack before open", self.who))
        })
    }

    fn server(&self) -> String {
        self.config.connection.url.address()
    }

    fn consumer_error(&self, e: &lapin::Error) -> ConnectorError {
        conn::classify(
            e,
            format!(
                "{}: consuming queue {:?} on {} failed: {e}",
                self.who,
                self.config.queue.name,
                self.server()
            ),
        )
    }

    /// The record of one delivery.
    fn record(&self, delivery: Delivery, read_at: &str) -> Record {
        let mut position = String::with_capacity(self.prefix.len() + 20);
        position.push_str(&self.prefix);
        position.push_str(&delivery.delivery_tag.to_string());
        let mut meta = Metadata::new();
        let props = &delivery.properties;
        if let Some(headers) = props.headers() {
            headers_to_metadata(headers, &mut meta);
        }
        meta.insert(metadata::COLLECTION, self.config.queue.name.clone());
        meta.insert(metadata::SOURCE_CONNECTOR_ID, self.id.clone());
        meta.insert(metadata::READ_AT, read_at.to_owned());
        meta.insert("rabbitmq.deliveryTag", delivery.delivery_tag.to_string());
        meta.insert("rabbitmq.redelivered", delivery.redelivered.to_string());
        meta.insert("rabbitmq.exchange", delivery.exchange.as_str());
        meta.insert("rabbitmq.routingKey", delivery.routing_key.as_str());
        properties_to_metadata(props, &mut meta);
        let key = props
            .message_id()
            .as_ref()
            .map(|id| Data::Raw(Bytes::copy_from_slice(id.as_str().as_bytes())));
        let mut record = Record::new(position, Bytes::from(delivery.data));
        record.metadata = meta;
        record.key = key;
        record
    }
}

/// Message properties as `rabbitmq.*` metadata (Conduit's names), and the timestamp as
/// `opencdc.createdAt`.
fn properties_to_metadata(props: &BasicProperties, meta: &mut Metadata) {
    let texts = [
        ("rabbitmq.contentType", props.content_type()),
        ("rabbitmq.contentEncoding", props.content_encoding()),
        ("rabbitmq.correlationId", props.correlation_id()),
        ("rabbitmq.replyTo", props.reply_to()),
        ("rabbitmq.expiration", props.expiration()),
        ("rabbitmq.messageId", props.message_id()),
        ("rabbitmq.type", props.kind()),
        ("rabbitmq.userId", props.user_id()),
        ("rabbitmq.appId", props.app_id()),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            meta.insert(key, value.as_str());
        }
    }
    if let Some(mode) = props.delivery_mode() {
        meta.insert("rabbitmq.deliveryMode", mode.to_string());
    }
    if let Some(priority) = props.priority() {
        meta.insert("rabbitmq.priority", priority.to_string());
    }
    if let Some(seconds) = props.timestamp() {
        meta.insert("rabbitmq.timestamp", seconds.to_string());
        meta.insert(
            metadata::CREATED_AT,
            (u128::from(*seconds) * 1_000_000_000).to_string(),
        );
    }
}

/// Message headers as metadata under their own names: text, numbers and booleans as
/// text; other values (tables, arrays, timestamps) are skipped.
pub(crate) fn headers_to_metadata(headers: &FieldTable, meta: &mut Metadata) {
    for (key, value) in headers.inner() {
        let text = match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.as_str().to_owned(),
            AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
            AMQPValue::Boolean(b) => b.to_string(),
            AMQPValue::ShortShortInt(n) => n.to_string(),
            AMQPValue::ShortShortUInt(n) => n.to_string(),
            AMQPValue::ShortInt(n) => n.to_string(),
            AMQPValue::ShortUInt(n) => n.to_string(),
            AMQPValue::LongInt(n) => n.to_string(),
            AMQPValue::LongUInt(n) => n.to_string(),
            AMQPValue::LongLongInt(n) => n.to_string(),
            AMQPValue::Float(n) => n.to_string(),
            AMQPValue::Double(n) => n.to_string(),
            _ => continue,
        };
        meta.insert(key.as_str(), text);
    }
}

#[async_trait]
impl Source for RabbitmqSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let server = self.server();
        let connection = conn::connect(&self.config.connection, &self.who).await?;
        let channel = conn::channel(&connection, &self.who, &server).await?;
        let consumer = &self.config.consumer;
        if !consumer.auto_ack {
            channel
                .basic_qos(self.config.prefetch(), BasicQosOptions::default())
                .await
                .map_err(|e| {
                    conn::classify(
                        &e,
                        format!("{}: basic.qos on {server} failed: {e}", self.who),
                    )
                })?;
        }
        conn::declare_queue(&channel, &self.config.queue, &self.who, &server).await?;
        let queue = conn::short(&self.config.queue.name, "queue.name", &self.who)?;
        let tag = conn::short(
            consumer.name.as_deref().unwrap_or(""),
            "consumer.name",
            &self.who,
        )?;
        let options = BasicConsumeOptions {
            no_local: consumer.no_local,
            no_ack: consumer.auto_ack,
            exclusive: consumer.exclusive,
            nowait: consumer.no_wait,
        };
        let stream = channel
            .basic_consume(queue, tag, options, FieldTable::default())
            .await
            .map_err(|e| {
                conn::classify(
                    &e,
                    format!(
                        "{}: cannot consume queue {:?} on {server}: {e}",
                        self.who, self.config.queue.name
                    ),
                )
            })?;
        *self.state() = Some(Arc::new(Open {
            connection,
            channel,
            consumer: tokio::sync::Mutex::new(stream),
        }));
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let open = self.open_state()?;
        let mut consumer = unless_stopped(&self.stop, open.consumer.lock(), &self.who).await?;
        // Cancel-safe: a delivery leaves the consumer only in the poll that returns it,
        // and nothing awaits after that.
        let first = match unless_stopped(&self.stop, consumer.next(), &self.who).await? {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => return Err(self.consumer_error(&e)),
            None => {
                return Err(ConnectorError::transient(format!(
                    "{}: the server cancelled the consumer of queue {:?} on {} (was the queue deleted?)",
                    self.who,
                    self.config.queue.name,
                    self.server()
                )));
            }
        };
        let read_at = unix_nanos_now().to_string();
        let mut records = Vec::with_capacity(self.config.batch_size.min(64));
        records.push(self.record(first, &read_at));
        while records.len() < self.config.batch_size {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => records.push(self.record(delivery, &read_at)),
                // An error or the end comes again on the next read.
                _ => break,
            }
        }
        Ok(Some(records))
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        if self.config.consumer.auto_ack {
            return Ok(());
        }
        let Some(last) = positions.last() else {
            return Ok(());
        };
        let open = self.open_state()?;
        // Positions come in read order: acknowledging the last with `multiple`
        // acknowledges them all.
        let tag = std::str::from_utf8(last.as_bytes())
            .ok()
            .and_then(|p| p.strip_prefix(&self.prefix))
            .and_then(|tag| tag.parse::<u64>().ok());
        let Some(tag) = tag else {
            return Err(ConnectorError::internal(format!(
                "{}: position {last} was not read by this source",
                self.who
            )));
        };
        open.channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
            .map_err(|e| {
                conn::classify(
                    &e,
                    format!(
                        "{}: cannot acknowledge messages of queue {:?} on {}: {e}",
                        self.who,
                        self.config.queue.name,
                        self.server()
                    ),
                )
            })
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.stop.cancel();
        let open = self.state().take();
        if let Some(open) = open {
            // Unacknowledged messages go back to the queue when the channel closes.
            let close = open.connection.close(200, "teardown".into());
            if let Ok(Err(e)) = tokio::time::timeout(CLOSE_TIMEOUT, close).await {
                tracing::debug!(connector = %self.id, error = %e, "closing the connection failed");
            }
        }
        Ok(())
    }
}
