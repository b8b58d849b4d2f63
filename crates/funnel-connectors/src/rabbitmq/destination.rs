//! The RabbitMQ destination: publishes on a channel in confirm mode; a record is acked
//! when the broker confirms its message (for a persistent message on a durable queue:
//! once it is on disk).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Position, Record, metadata};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use lapin::{Confirmation, PublisherConfirm};
use tokio::sync::mpsc;

use super::config::RabbitmqDestinationConfig;
use super::conn;
use crate::ack::AckQueue;
use crate::format::RecordFormat;

/// How long `teardown` waits for the server to close the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A RabbitMQ destination; see the [module docs](super).
pub struct RabbitmqDestination {
    who: String,
    config: RabbitmqDestinationConfig,
    /// How each record becomes its bytes.
    format: RecordFormat,
    state: Mutex<Option<Arc<Open>>>,
    acks: Arc<AckQueue>,
}

struct Open {
    connection: Connection,
    channel: Channel,
    exchange: ShortString,
    /// The routing key when it is fixed.
    routing_key: Option<ShortString>,
    properties: BasicProperties,
    pending: mpsc::UnboundedSender<Pending>,
    confirmer: tokio::task::JoinHandle<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.confirmer.abort();
    }
}

/// A written record waiting for its ack, in write order.
enum Pending {
    Confirm(Position, PublisherConfirm),
    Failed(Position, RecordError),
}

impl RabbitmqDestination {
    /// A destination for `config`; `id` is the connector ID.
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: RabbitmqDestinationConfig, format: RecordFormat) -> Self {
        Self {
            who: format!("rabbitmq destination {id}"),
            config,
            format,
            state: Mutex::new(None),
            acks: Arc::new(AckQueue::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<Arc<Open>>> {
        // Each critical section is one assignment or clone: a poisoned lock is usable.
        crate::util::lock(&self.state)
    }

    fn server(&self) -> String {
        self.config.connection.url.address()
    }

    /// The properties every message shares (headers and the message ID are added per
    /// record).
    fn properties(&self) -> Result<BasicProperties, ConnectorError> {
        let p = &self.config.publish;
        let short = |text: &str, key: &str| conn::short(text, key, &self.who);
        let mut props = BasicProperties::default()
            .with_content_type(short(&p.content_type, "delivery.contentType")?)
            .with_delivery_mode(p.delivery_mode.0)
            .with_priority(p.priority.0);
        let optional = [
            (&p.content_encoding, "delivery.contentEncoding"),
            (&p.correlation_id, "delivery.correlationID"),
            (&p.reply_to, "delivery.replyTo"),
            (&p.expiration, "delivery.expiration"),
            (&p.message_type, "delivery.messageTypeName"),
            (&p.user_id, "delivery.userID"),
            (&p.app_id, "delivery.appID"),
        ];
        for (value, key) in optional {
            let Some(value) = value else { continue };
            let value = short(value, key)?;
            props = match key {
                "delivery.contentEncoding" => props.with_content_encoding(value),
                "delivery.correlationID" => props.with_correlation_id(value),
                "delivery.replyTo" => props.with_reply_to(value),
                "delivery.expiration" => props.with_expiration(value),
                "delivery.messageTypeName" => props.with_type(value),
                "delivery.userID" => props.with_user_id(value),
                _ => props.with_app_id(value),
            };
        }
        Ok(props)
    }

    /// The routing key of `record`: the fixed one, or the template rendered.
    fn routing_key(&self, open: &Open, record: &Record) -> Result<ShortString, RecordError> {
        if let Some(key) = &open.routing_key {
            return Ok(key.clone());
        }
        let Some(template) = &self.config.publish.routing_key else {
            return ShortString::try_new(self.config.queue.name.as_str())
                .map_err(|e| RecordError::msg(e.to_string()));
        };
        let key = template.0.render(record).map_err(|e| {
            RecordError::msg(format!("{}: routingKey template failed: {e}", self.who))
        })?;
        ShortString::try_new(key).map_err(|e| {
            RecordError::msg(format!(
                "{}: the routing key is too long for AMQP ({e})",
                self.who
            ))
        })
    }

    async fn declare(
        &self,
        channel: &Channel,
        open_key: Option<&str>,
    ) -> Result<(), ConnectorError> {
        let server = self.server();
        conn::declare_queue(channel, &self.config.queue, &self.who, &server).await?;
        let p = &self.config.publish;
        let Some(exchange) = p.exchange.as_deref() else {
            return Ok(());
        };
        let kind = match p.exchange_type.0.as_str() {
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            _ => ExchangeKind::Direct,
        };
        let options = ExchangeDeclareOptions {
            passive: false,
            durable: p.exchange_durable,
            auto_delete: p.exchange_auto_delete,
            internal: p.exchange_internal,
            nowait: p.exchange_no_wait,
        };
        let name = conn::short(exchange, "exchange.name", &self.who)?;
        channel
            .exchange_declare(name.clone(), kind, options, FieldTable::default())
            .await
            .map_err(|e| {
                conn::classify(
                    &e,
                    format!(
                        "{}: cannot declare exchange {exchange:?} on {server}: {e}",
                        self.who
                    ),
                )
            })?;
        // A fixed routing key binds the queue to the exchange (a templated one routes
        // to whatever the user bound).
        if let Some(key) = open_key {
            let queue = conn::short(&self.config.queue.name, "queue.name", &self.who)?;
            let key = conn::short(key, "routingKey", &self.who)?;
            channel
                .queue_bind(
                    queue,
                    name,
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| {
                    conn::classify(
                        &e,
                        format!(
                            "{}: cannot bind queue {:?} to exchange {exchange:?} on {server}: {e}",
                            self.who, self.config.queue.name
                        ),
                    )
                })?;
        }
        Ok(())
    }
}

/// Record metadata as message headers (long strings); keys longer than AMQP allows are
/// left out.
fn headers(record: &Record) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in record.metadata.iter() {
        if let Ok(key) = ShortString::try_new(key) {
            table.insert(
                key,
                AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
            );
        }
    }
    table
}

/// `opencdc.createdAt` (Unix nanoseconds) as an AMQP timestamp (seconds).
fn timestamp(record: &Record) -> Option<u64> {
    let nanos: u128 = record.metadata.get(metadata::CREATED_AT)?.parse().ok()?;
    u64::try_from(nanos / 1_000_000_000).ok()
}

/// Turns confirms into acks, in write order, until the channel fails.
async fn confirm_loop(
    mut pending: mpsc::UnboundedReceiver<Pending>,
    acks: Arc<AckQueue>,
    who: String,
) {
    while let Some(next) = pending.recv().await {
        let ack = match next {
            Pending::Failed(position, error) => DestinationAck::nack(position, error),
            Pending::Confirm(position, confirm) => match confirm.await {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {
                    DestinationAck::ok(position)
                }
                Ok(Confirmation::Ack(Some(returned))) => DestinationAck::nack(
                    position,
                    RecordError::msg(format!(
                        "{who}: the server returned the message: no queue took it ({} {})",
                        returned.reply_code, returned.reply_text
                    )),
                ),
                Ok(Confirmation::Nack(_)) => DestinationAck::nack(
                    position,
                    RecordError::msg(format!("{who}: the server refused the message (nack)")),
                ),
                Err(e) => {
                    acks.fail(format!(
                        "{who}: waiting for the publisher confirm failed: {e}"
                    ));
                    return;
                }
            },
        };
        acks.push([ack]);
    }
}

#[async_trait]
impl Destination for RabbitmqDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let server = self.server();
        let connection = conn::connect(&self.config.connection, &self.who).await?;
        let channel = conn::channel(&connection, &self.who, &server).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| {
                conn::classify(
                    &e,
                    format!(
                        "{}: cannot turn publisher confirms on at {server}: {e}",
                        self.who
                    ),
                )
            })?;
        let fixed_key = match &self.config.publish.routing_key {
            None => Some(self.config.queue.name.clone()),
            Some(template) => template.0.as_literal().map(str::to_owned),
        };
        self.declare(&channel, fixed_key.as_deref()).await?;
        let routing_key = match fixed_key {
            Some(key) => Some(conn::short(&key, "routingKey", &self.who)?),
            None => None,
        };
        let exchange = conn::short(
            self.config.publish.exchange.as_deref().unwrap_or(""),
            "exchange.name",
            &self.who,
        )?;
        let (tx, rx) = mpsc::unbounded_channel();
        let confirmer = tokio::spawn(confirm_loop(rx, Arc::clone(&self.acks), self.who.clone()));
        *self.state() = Some(Arc::new(Open {
            connection,
            channel,
            exchange,
            routing_key,
            properties: self.properties()?,
            pending: tx,
            confirmer,
        }));
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let open = self.state().clone().ok_or_else(|| {
            ConnectorError::internal(format!("{}: write before open or after teardown", self.who))
        })?;
        self.acks.check()?;
        let options = BasicPublishOptions {
            mandatory: self.config.publish.mandatory,
            immediate: false,
        };
        let mut body = Vec::new();
        for record in records {
            let routing_key = match self.routing_key(&open, record) {
                Ok(key) => key,
                Err(error) => {
                    let _ = open
                        .pending
                        .send(Pending::Failed(record.position.clone(), error));
                    continue;
                }
            };
            body.clear();
            if let Err(error) = self.format.write(record, &mut body) {
                let _ = open
                    .pending
                    .send(Pending::Failed(record.position.clone(), error));
                continue;
            }
            let mut props = open.properties.clone().with_headers(headers(record));
            if let Ok(id) = std::str::from_utf8(record.position.as_bytes())
                && let Ok(id) = ShortString::try_new(id)
            {
                props = props.with_message_id(id);
            }
            if let Some(seconds) = timestamp(record) {
                props = props.with_timestamp(seconds);
            }
            let confirm = open
                .channel
                .basic_publish(open.exchange.clone(), routing_key, options, &body, props)
                .await
                .map_err(|e| {
                    conn::classify(
                        &e,
                        format!(
                            "{}: publishing to queue {:?} on {} failed: {e}",
                            self.who,
                            self.config.queue.name,
                            self.server()
                        ),
                    )
                })?;
            if open
                .pending
                .send(Pending::Confirm(record.position.clone(), confirm))
                .is_err()
            {
                return Err(ConnectorError::transient(format!(
                    "{}: the confirm loop stopped",
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
        self.acks.close(format!("{}: torn down", self.who));
        let open = self.state().take();
        if let Some(open) = open {
            open.confirmer.abort();
            let close = open.connection.close(200, "teardown".into());
            if let Ok(Err(e)) = tokio::time::timeout(CLOSE_TIMEOUT, close).await {
                tracing::debug!(connector = %self.who, error = %e, "closing the connection failed");
            }
        }
        Ok(())
    }
}
