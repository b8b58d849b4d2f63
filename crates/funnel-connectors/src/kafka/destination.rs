//! The kafka destination: an idempotent producer, each record acked after its
//! delivery report.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Data, Position, Record, Value};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use tokio::sync::Notify;

use super::config::{KafkaDestinationConfig, TopicName};
use super::{LastError, Reasons};
use crate::ack::AckQueue;
use crate::format::RecordFormat;

/// A Kafka destination (see the [module docs](super)).
pub struct KafkaDestination {
    who: String,
    config: KafkaDestinationConfig,
    /// How each record becomes its bytes.
    format: RecordFormat,
    producer: Mutex<Option<ThreadedProducer<Reports>>>,
    reports: Arc<Shared>,
}

/// What the delivery reports and the writer share.
struct Shared {
    who: String,
    acks: AckQueue,
    order: Mutex<Order>,
    /// Notified by every delivery report: room in librdkafka's queue.
    room: Notify,
}

/// Outcomes of written records, released to the ack queue in write order.
#[derive(Default)]
struct Order {
    /// Sequence number of `pending[0]`.
    first: usize,
    /// Sequence number the next written record gets.
    next: usize,
    /// One slot per record written and not yet released: its position, and its ack
    /// once the delivery report came.
    pending: VecDeque<(Position, Option<DestinationAck>)>,
}

/// The producer context: turns delivery reports into acks.
struct Reports(Arc<Shared>, LastError);

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("{}: {error}: {reason}", self.0.who);
        self.1.set(&error, reason);
    }
}

impl Reasons for Reports {
    fn last_error(&self) -> &LastError {
        &self.1
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let shared = &self.0;
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, message)) => Err((error.clone(), message.topic().to_owned())),
        };
        shared.settle(seq, outcome);
        shared.room.notify_waiters();
    }
}

/// How the destination answers a failed delivery.
enum Failure {
    /// The record cannot be written (too large, unknown topic, refused): nack it.
    Record(String),
    /// The broker cannot be reached or the producer stopped: fail the writer, so the
    /// pipeline restarts and writes the unacked records again.
    Writer(String),
}

/// The errors that are about one record, not about the connection.
fn classify(error: &KafkaError, topic: &str, who: &str) -> Failure {
    use RDKafkaErrorCode as C;
    let code = error.rdkafka_error_code();
    let text = format!("{who}: topic {topic}: {error}");
    match code {
        Some(
            C::MessageSizeTooLarge
            | C::UnknownTopic
            | C::UnknownTopicOrPartition
            | C::InvalidRecord
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::TopicAuthorizationFailed
            | C::InvalidTopic
            | C::MessageBatchTooLarge
            | C::InvalidRequiredAcks
            | C::UnknownPartition
            | C::PolicyViolation,
        ) => Failure::Record(text),
        _ => Failure::Writer(text),
    }
}

impl Shared {
    fn order(&self) -> MutexGuard<'_, Order> {
        // Critical sections only push, fill or pop slots, so a poisoned lock is still
        // consistent.
        crate::util::lock(&self.order)
    }

    /// Records the outcome of record `seq` and releases the acks now in order.
    fn settle(&self, seq: usize, outcome: Result<(), (KafkaError, String)>) {
        let mut order = self.order();
        let Some(index) = seq.checked_sub(order.first) else {
            return;
        };
        let Some(slot) = order.pending.get_mut(index) else {
            return;
        };
        let position = slot.0.clone();
        match outcome {
            Ok(()) => slot.1 = Some(DestinationAck::ok(position)),
            Err((error, topic)) => match classify(&error, &topic, &self.who) {
                Failure::Record(text) => {
                    slot.1 = Some(DestinationAck::nack(position, RecordError::msg(text)));
                }
                Failure::Writer(text) => {
                    drop(order);
                    self.acks.fail(text);
                    return;
                }
            },
        }
        drop(order);
        self.settle_released();
    }
}

impl KafkaDestination {
    /// A destination with validated settings. Nothing is connected until
    /// [`Destination::open`].
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: KafkaDestinationConfig, format: RecordFormat) -> Self {
        let who = format!("kafka destination {id}");
        Self {
            reports: Arc::new(Shared {
                who: who.clone(),
                acks: AckQueue::new(),
                order: Mutex::default(),
                room: Notify::new(),
            }),
            who,
            config,
            format,
            producer: Mutex::new(None),
        }
    }

    fn producer(&self) -> MutexGuard<'_, Option<ThreadedProducer<Reports>>> {
        crate::util::lock(&self.producer)
    }

    /// The topic of `record`, or why it has none.
    fn topic(&self, record: &Record) -> Result<String, String> {
        let name = match &self.config.topic {
            TopicName::Literal(name) => return Ok(name.clone()),
            TopicName::Metadata(key) => match record.metadata.get(key) {
                Some(name) => name.to_owned(),
                None => {
                    return Err(format!(
                        "{}: the record has no metadata {key:?} to name its topic (setting `topic`)",
                        self.who
                    ));
                }
            },
            TopicName::Template(template) => template.render(record).map_err(|e| {
                format!(
                    "{}: the topic template failed (setting `topic`): {e}",
                    self.who
                )
            })?,
        };
        let name = name.trim();
        super::config::check_topic_name(name)
            .map_err(|e| format!("{}: setting `topic`: {e}", self.who))?;
        Ok(name.to_owned())
    }

    /// Queues one message, waiting while librdkafka's queue is full. `Err` for a
    /// record librdkafka refuses at once.
    async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: Option<OwnedHeaders>,
        seq: usize,
    ) -> Result<(), ConnectorError> {
        let mut headers = headers;
        loop {
            let room = self.reports.room.notified();
            let result = {
                let guard = self.producer();
                let Some(producer) = guard.as_ref() else {
                    return Err(self.stopped());
                };
                let mut message = BaseRecord::with_opaque_to(topic, seq).payload(value);
                if let Some(key) = key {
                    message = message.key(key);
                }
                if let Some(h) = headers.take() {
                    message = message.headers(h);
                }
                producer.send(message).map_err(|(error, message)| {
                    headers = message.headers;
                    error
                })
            };
            match result {
                Ok(()) => return Ok(()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // A delivery report makes room; the timeout covers a report that
                    // came between the send and this wait.
                    let _ = tokio::time::timeout(Duration::from_millis(10), room).await;
                }
                Err(error) => {
                    self.reports.settle(seq, Err((error, topic.to_owned())));
                    if let Some(reason) = self.reports.acks.failure() {
                        return Err(ConnectorError::transient(reason));
                    }
                    return Ok(());
                }
            }
        }
    }

    fn stopped(&self) -> ConnectorError {
        let reason = self
            .reports
            .acks
            .failure()
            .unwrap_or_else(|| "the destination is not open".to_owned());
        ConnectorError::transient(format!("{}: producer stopped: {reason}", self.who))
    }
}

/// The bytes of a record's key: raw data as it is, structured data as JSON.
fn key_bytes(record: &Record, out: &mut Vec<u8>) -> bool {
    match &record.key {
        None => false,
        Some(Data::Raw(bytes)) => {
            out.extend_from_slice(bytes);
            true
        }
        Some(Data::Structured(fields)) => {
            Value::Map(fields.clone()).write_json(out);
            true
        }
    }
}

/// The record's metadata as message headers.
fn headers(record: &Record) -> Option<OwnedHeaders> {
    if record.metadata.is_empty() {
        return None;
    }
    let mut headers = OwnedHeaders::new_with_capacity(record.metadata.len());
    for (key, value) in record.metadata.iter() {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    Some(headers)
}

#[async_trait]
impl Destination for KafkaDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let context = Reports(Arc::clone(&self.reports), LastError::default());
        let producer: ThreadedProducer<Reports> = self
            .config
            .producer_config()
            .create_with_context(context)
            .map_err(|e| super::client_error(&self.who, &e))?;
        // Ask for the cluster's metadata once, so unreachable servers or refused
        // credentials fail `open` with a clear error instead of the first write.
        let checked = {
            let producer = producer.clone();
            let who = self.who.clone();
            // The producer's own thread polls it: its events reach the context as they
            // come.
            tokio::task::spawn_blocking(move || {
                super::check_reachable(producer.client(), &|| (), &who)
            })
        };
        *self.producer() = Some(producer);
        match checked.await {
            Ok(result) => result,
            Err(e) => Err(ConnectorError::internal(format!("{}: {e}", self.who))),
        }
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        if let Some(reason) = self.reports.acks.failure() {
            return Err(ConnectorError::transient(reason));
        }
        let mut value = Vec::new();
        let mut key = Vec::new();
        for record in records {
            let seq = {
                let mut order = self.reports.order();
                let seq = order.next;
                order.next += 1;
                order.pending.push_back((record.position.clone(), None));
                seq
            };
            value.clear();
            let topic = self
                .topic(record)
                .map_err(RecordError::msg)
                .and_then(|topic| {
                    self.format.write(record, &mut value)?;
                    Ok(topic)
                });
            let topic = match topic {
                Ok(topic) => topic,
                Err(error) => {
                    let mut order = self.reports.order();
                    let first = order.first;
                    if let Some(slot) = order.pending.get_mut(seq - first) {
                        slot.1 = Some(DestinationAck::nack(record.position.clone(), error));
                    }
                    drop(order);
                    // Release through the common path (this slot may be the first).
                    self.reports.settle_released();
                    continue;
                }
            };
            key.clear();
            let has_key = key_bytes(record, &mut key);
            self.send(
                &topic,
                has_key.then_some(key.as_slice()),
                &value,
                headers(record),
                seq,
            )
            .await?;
        }
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.reports.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.reports.acks.close_torn_down(&self.who);
        let producer = self.producer().take();
        if let Some(producer) = producer {
            // Delivered messages are acked while the flush waits; what is still queued
            // after it is purged when the producer is dropped, and written again by
            // the next run (it was never acked).
            let flushed = tokio::task::spawn_blocking(move || {
                let _ = producer.flush(Duration::from_secs(1));
                drop(producer);
            });
            let _ = tokio::time::timeout(Duration::from_millis(1500), flushed).await;
        }
        Ok(())
    }
}

impl Shared {
    /// Releases the acks at the front that are settled (after a record was nacked
    /// without being sent).
    fn settle_released(&self) {
        let mut order = self.order();
        let mut released = Vec::new();
        while order.pending.front().is_some_and(|(_, ack)| ack.is_some()) {
            if let Some((_, Some(ack))) = order.pending.pop_front() {
                released.push(ack);
            }
            order.first += 1;
        }
        drop(order);
        if !released.is_empty() {
            self.acks.push(released);
        }
    }
}
