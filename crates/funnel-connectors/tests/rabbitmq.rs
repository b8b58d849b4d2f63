//! The rabbitmq source and destination against the real RabbitMQ on 127.0.0.1:5672
//! (guest/guest; see `scripts/setup-services.sh`). Each test uses its own queues, and
//! deletes them at the end. Without a server the tests are skipped, except under
//! `CI=true`, where a missing server fails them.

#![cfg(feature = "rabbitmq")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{Settings, destination, source};
use funnel_core::settings_of as settings;
use funnel_core::{Destination, ErrorKind, Source};
use funnel_record::{Data, Position, Record};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::{ack_n, nack_error, raw, read_and_ack, read_n};
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A connection for setting up and checking, or `None` (skip) without a server.
async fn connect() -> Option<Connection> {
    match Connection::connect(URL, ConnectionProperties::default()).await {
        Ok(conn) => Some(conn),
        Err(e) => {
            funnel_test_utils::skip_without(&format!("RabbitMQ is not reachable at {URL}: {e}"));
            None
        }
    }
}

/// A queue name no other test (or engineer sharing the server) uses.
fn unique(tag: &str) -> String {
    funnel_test_utils::name::unique("funnel-test", tag, '-')
}

/// A queue, deleted when dropped.
struct Queue {
    name: String,
}

impl Queue {
    async fn new(conn: &Connection, tag: &str) -> Self {
        let name = unique(tag);
        let channel = conn.create_channel().await.unwrap();
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = channel.close(200, "ok".into()).await;
        Self { name }
    }

    /// Publishes `payloads` to the queue with confirms, each with the headers given.
    async fn publish(&self, conn: &Connection, payloads: &[Bytes], headers: &[(&str, &str)]) {
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert((*k).into(), AMQPValue::LongString(LongString::from(*v)));
        }
        for (i, payload) in payloads.iter().enumerate() {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(format!("m{i}").into())
                .with_timestamp(1_700_000_000)
                .with_headers(table.clone());
            // A confirm dropped unawaited is waited for by `wait_for_confirms`.
            let confirm = channel
                .basic_publish(
                    "".into(),
                    self.name.as_str().into(),
                    BasicPublishOptions::default(),
                    payload,
                    props,
                )
                .await
                .unwrap();
            drop(confirm);
        }
        channel.wait_for_confirms().await.unwrap();
        let _ = channel.close(200, "ok".into()).await;
    }

    /// The bodies in the queue, in order, left in it.
    async fn peek(&self, conn: &Connection) -> Vec<Bytes> {
        self.get_all(conn, false)
            .await
            .iter()
            .map(|m| Bytes::from(m.delivery.data.clone()))
            .collect()
    }

    /// The messages in the queue, in order: taken off it when `no_ack`, else left in
    /// it (fetched without ack, then requeued when the channel closes).
    async fn get_all(&self, conn: &Connection, no_ack: bool) -> Vec<BasicGetMessage> {
        let channel = conn.create_channel().await.unwrap();
        let mut messages = Vec::new();
        while let Some(message) = channel
            .basic_get(self.name.as_str().into(), BasicGetOptions { no_ack })
            .await
            .unwrap()
        {
            messages.push(message);
        }
        let _ = channel.close(200, "ok".into()).await;
        messages
    }

    async fn delete(&self, conn: &Connection) {
        let channel = conn.create_channel().await.unwrap();
        let _ = channel
            .queue_delete(self.name.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = channel.close(200, "ok".into()).await;
    }
}

fn source_settings(queue: &str, extra: &[(&str, &str)]) -> Settings {
    let mut s = settings(&[("url", URL), ("queue.name", queue)]);
    s.extend(settings(extra));
    s
}

/// An open source `pipe:amqp` of `queue` with the default settings.
async fn open_source(queue: &Queue) -> Arc<dyn Source> {
    let source = source(
        "rabbitmq",
        "pipe:amqp",
        &source_settings(&queue.name, &[]),
        None,
    )
    .unwrap();
    source.open().await.unwrap();
    source
}

/// A destination `pipe:out` publishing through the direct exchange `exchange`
/// (auto-deleted) bound to `queue`, with `extra` settings.
fn exchange_destination(
    queue: &Queue,
    exchange: &str,
    extra: &[(&str, &str)],
) -> Arc<dyn Destination> {
    let mut pairs = vec![
        ("exchange.name", exchange),
        ("exchange.type", "direct"),
        ("exchange.autoDelete", "true"),
    ];
    pairs.extend_from_slice(extra);
    destination(
        "rabbitmq",
        "pipe:out",
        &source_settings(&queue.name, &pairs),
    )
    .unwrap()
}

/// The payload of a record the destination wrote (its OpenCDC JSON).
fn payload_of_json(body: &[u8]) -> Bytes {
    let record = Record::from_json(body).unwrap();
    raw(&record)
}

// ---------------------------------------------------------------------------------
// The compliance suite.

/// A queue of its own for one compliance check, and a connection of its own.
struct Rabbit {
    conn: Connection,
    queue: Queue,
}

/// Makes a [`Rabbit`] for each compliance check, and deletes the queues at the end.
struct Queues {
    conn: Arc<Connection>,
    names: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Queues {
    fn new(conn: Connection) -> Self {
        Self {
            conn: Arc::new(conn),
            names: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }

    fn backend(&self, check: &'static str) -> impl Future<Output = Rabbit> + use<> {
        let (conn, names) = (Arc::clone(&self.conn), Arc::clone(&self.names));
        async move {
            let c = Connection::connect(URL, ConnectionProperties::default())
                .await
                .unwrap();
            let queue = Queue::new(&conn, &check.replace([' ', ','], "-")).await;
            names.lock().unwrap().push(queue.name.clone());
            Rabbit { conn: c, queue }
        }
    }

    async fn delete(self) {
        let names = self.names.lock().unwrap().clone();
        for name in names {
            Queue { name }.delete(&self.conn).await;
        }
    }
}

#[async_trait]
impl SourceBackend for Rabbit {
    fn build(&self, _resume: Option<Position>) -> Arc<dyn Source> {
        source(
            "rabbitmq",
            "pipe:amqp",
            &source_settings(&self.queue.name, &[("sdk.batch.size", "10")]),
            None,
        )
        .unwrap()
    }

    async fn inject(&self, payloads: &[Bytes]) {
        self.queue.publish(&self.conn, payloads, &[]).await;
    }

    fn payload(&self, record: &Record) -> Bytes {
        raw(record)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_passes_the_source_compliance_suite() {
    let Some(conn) = connect().await else { return };
    let queues = Queues::new(conn);
    run_source_compliance("rabbitmq source", SourceCapabilities::FULL, |c| {
        queues.backend(c)
    })
    .await
    .assert_complete();
    queues.delete().await;
}

#[async_trait]
impl DestinationBackend for Rabbit {
    fn build(&self) -> Arc<dyn Destination> {
        destination(
            "rabbitmq",
            "pipe:amqp-out",
            &source_settings(&self.queue.name, &[]),
        )
        .unwrap()
    }

    async fn written(&self) -> Vec<Bytes> {
        let bodies = self.queue.peek(&self.conn).await;
        bodies.iter().map(|b| payload_of_json(b)).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_passes_the_destination_compliance_suite() {
    let Some(conn) = connect().await else { return };
    let queues = Queues::new(conn);
    run_destination_compliance("rabbitmq destination", DestinationCapabilities::FULL, |c| {
        queues.backend(c)
    })
    .await
    .assert_complete();
    queues.delete().await;
}

// ---------------------------------------------------------------------------------
// Behaviour.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_messages_published_by_a_client_are_read_once_in_queue_order() {
    let Some(conn) = connect().await else { return };
    let queue = Queue::new(&conn, "fifty").await;
    let payloads: Vec<Bytes> = (0..50_000)
        .map(|i| Bytes::from(format!("m{i:05}")))
        .collect();
    queue.publish(&conn, &payloads, &[]).await;
    let source = open_source(&queue).await;
    let got: Vec<Bytes> = read_and_ack(&*source, payloads.len())
        .await
        .iter()
        .map(raw)
        .collect();
    assert!(
        got == payloads,
        "the records differ from what was published, or their order does"
    );
    source.teardown().await.unwrap();
    assert!(
        queue.peek(&conn).await.is_empty(),
        "acked messages are still in the queue"
    );
    queue.delete(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_carries_the_body_message_id_headers_properties_and_queue() {
    let Some(conn) = connect().await else { return };
    let queue = Queue::new(&conn, "shape").await;
    queue
        .publish(
            &conn,
            &[Bytes::from_static(b"{\"a\":1}")],
            &[("tenant", "t1")],
        )
        .await;
    let source = open_source(&queue).await;
    let record = read_n(&*source, 1).await.remove(0);
    assert_eq!(raw(&record), Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(record.key, Some(Data::Raw(Bytes::from_static(b"m0"))));
    let meta = &record.metadata;
    assert_eq!(meta.get("opencdc.collection"), Some(queue.name.as_str()));
    assert_eq!(meta.get("tenant"), Some("t1"));
    assert_eq!(meta.get("rabbitmq.messageId"), Some("m0"));
    assert_eq!(meta.get("rabbitmq.deliveryMode"), Some("2"));
    assert_eq!(meta.get("rabbitmq.redelivered"), Some("false"));
    assert_eq!(meta.get("rabbitmq.routingKey"), Some(queue.name.as_str()));
    assert_eq!(meta.get("opencdc.createdAt"), Some("1700000000000000000"));
    assert_eq!(meta.get("conduit.source.connector.id"), Some("pipe:amqp"));
    assert!(meta.get("opencdc.readAt").is_some());
    source.teardown().await.unwrap();
    queue.delete(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_read_but_not_acked_come_again_marked_redelivered_and_acked_ones_never() {
    let Some(conn) = connect().await else { return };
    let queue = Queue::new(&conn, "redeliver").await;
    let payloads: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("r{i}"))).collect();
    queue.publish(&conn, &payloads, &[]).await;
    let settings = source_settings(&queue.name, &[("sdk.batch.size", "5")]);
    let first = source("rabbitmq", "pipe:amqp", &settings, None).unwrap();
    first.open().await.unwrap();
    let records = read_n(&*first, 20).await;
    let positions: Vec<Position> = records.iter().map(|r| r.position.clone()).collect();
    first.ack(&positions[..8]).await.unwrap();
    // What SIGKILL leaves: no teardown.
    drop(first);
    let second = source("rabbitmq", "pipe:amqp", &settings, None).unwrap();
    second.open().await.unwrap();
    let again = read_n(&*second, 12).await;
    let bodies: Vec<Bytes> = again.iter().map(raw).collect();
    assert_eq!(bodies, payloads[8..]);
    assert!(
        again
            .iter()
            .all(|r| r.metadata.get("rabbitmq.redelivered") == Some("true")),
        "redelivered messages are marked"
    );
    let new_positions: HashSet<&Position> = again.iter().map(|r| &r.position).collect();
    assert!(
        positions.iter().all(|p| !new_positions.contains(p)),
        "a new session's positions differ from the old one's"
    );
    second.teardown().await.unwrap();
    queue.delete(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_publishes_json_records_with_headers_through_an_exchange_and_a_templated_key()
 {
    let Some(conn) = connect().await else { return };
    let queue = Queue::new(&conn, "routed").await;
    let exchange = unique("exchange");
    // A first destination with a fixed routing key declares the exchange and binds the
    // queue with "orders"; a templated key then routes by metadata.
    let fixed = exchange_destination(&queue, &exchange, &[("routingKey", "orders")]);
    fixed.open().await.unwrap();
    fixed.teardown().await.unwrap();
    let d = exchange_destination(
        &queue,
        &exchange,
        &[
            ("routingKey", "{{ index .Metadata \"table\" }}"),
            ("delivery.mandatory", "true"),
            ("delivery.appID", "funnel-test"),
        ],
    );
    d.open().await.unwrap();
    let mut records = Vec::new();
    for (i, table) in ["orders", "nowhere", "orders"].iter().enumerate() {
        let mut r = Record::new(format!("p{i}"), Bytes::from(format!("body {i}")));
        r.metadata.insert("table", *table);
        r.metadata
            .insert("opencdc.createdAt", "1700000000123456789");
        records.push(r);
    }
    d.write(&records).await.unwrap();
    let got = ack_n(&*d, 3).await;
    assert!(got[0].error.is_none() && got[2].error.is_none(), "{got:?}");
    let error = nack_error(&got[1]);
    assert!(error.contains("no queue took it"), "{error}");
    d.teardown().await.unwrap();

    let messages = queue.get_all(&conn, true).await;
    assert_eq!(messages.len(), 2);
    let first = &messages[0].delivery;
    assert_eq!(payload_of_json(&first.data), Bytes::from_static(b"body 0"));
    let props = &first.properties;
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(props.message_id().as_ref().map(|s| s.as_str()), Some("p0"));
    assert_eq!(
        props.app_id().as_ref().map(|s| s.as_str()),
        Some("funnel-test")
    );
    assert_eq!(props.timestamp(), &Some(1_700_000_000));
    let headers = props.headers().as_ref().unwrap();
    assert_eq!(
        headers.inner().get("table"),
        Some(&AMQPValue::LongString(LongString::from("orders")))
    );
    assert_eq!(
        payload_of_json(&messages[1].delivery.data),
        Bytes::from_static(b"body 2")
    );
    queue.delete(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_a_missing_queue_and_an_unreachable_server_fail_with_clear_messages() {
    let Some(conn) = connect().await else { return };
    let missing = unique("missing");

    let bad = source(
        "rabbitmq",
        "pipe:bad",
        &settings(&[
            ("url", "amqp://guest:wrong@127.0.0.1:5672/%2f"),
            ("queue.name", "q"),
        ]),
        None,
    )
    .unwrap();
    let error = bad.open().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("rabbitmq source pipe:bad") && text.contains("127.0.0.1:5672"),
        "{text}"
    );
    assert_eq!(error.kind(), ErrorKind::Config, "{text}");

    let absent = source(
        "rabbitmq",
        "pipe:absent",
        &source_settings(&missing, &[("queue.declare", "false")]),
        None,
    )
    .unwrap();
    let error = absent.open().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("rabbitmq source pipe:absent")
            && text.contains("127.0.0.1:5672")
            && text.contains(&format!("cannot find queue {missing:?}")),
        "{text}"
    );
    assert_eq!(error.kind(), ErrorKind::Config, "{text}");

    let away = destination(
        "rabbitmq",
        "pipe:away",
        &settings(&[
            ("url", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("queue.name", "q"),
        ]),
    )
    .unwrap();
    let error = away.open().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("rabbitmq destination pipe:away") && text.contains("127.0.0.1:1"),
        "{text}"
    );
    assert_eq!(error.retry(), funnel_core::Retry::Transient, "{text}");
    drop(conn);
}
