//! The mqtt source and destination against the real Mosquitto on 127.0.0.1:1883 (see
//! `scripts/setup-services.sh`). Each test uses its own topics and client IDs. Without
//! a broker the tests are skipped, except under `CI=true`, where a missing broker fails
//! them.

#![cfg(feature = "mqtt")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{Settings, destination, source};
use funnel_core::settings_of as settings;
use funnel_core::{Destination, ErrorKind, Source};
use funnel_record::{Position, Record};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::{ack_n, nack_error, raw, read_and_ack, read_n};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const URL: &str = "tcp://127.0.0.1:1883";
const PATIENCE: Duration = Duration::from_secs(30);

fn unique(tag: &str) -> String {
    funnel_test_utils::name::unique("funnel-test", tag, '-')
}

fn options(client_id: &str, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", 1883);
    o.set_clean_session(clean)
        .set_max_packet_size(64 << 20, 64 << 20)
        .set_keep_alive(Duration::from_secs(30));
    o
}

/// Whether the broker is there (`false`: skip).
async fn broker() -> bool {
    match tokio::net::TcpStream::connect("127.0.0.1:1883").await {
        Ok(_) => true,
        Err(e) => {
            funnel_test_utils::skip_without(&format!("Mosquitto is not reachable at {URL}: {e}"));
            false
        }
    }
}

/// Publishes `payloads` to `topic` at QoS 1 and waits for every PUBACK.
async fn publish(topic: &str, payloads: &[Bytes]) {
    let (client, mut events) = AsyncClient::new(options(&unique("pub"), true), 1024);
    let total = payloads.len();
    let sender = {
        let client = client.clone();
        let topic = topic.to_owned();
        let payloads = payloads.to_vec();
        tokio::spawn(async move {
            for p in payloads {
                client
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, p.to_vec())
                    .await
                    .unwrap();
            }
        })
    };
    let mut acked = 0;
    while acked < total {
        let event = tokio::time::timeout(PATIENCE, events.poll()).await.unwrap();
        if let Event::Incoming(Packet::PubAck(_)) = event.unwrap() {
            acked += 1;
        }
    }
    sender.await.unwrap();
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

/// Creates the persistent session of `client_id` with a QoS 1 subscription to
/// `filter`, so messages published from now on are kept for it.
async fn session(client_id: &str, filter: &str) {
    let (client, mut events) = AsyncClient::new(options(client_id, false), 16);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = tokio::time::timeout(PATIENCE, events.poll())
            .await
            .unwrap()
            .unwrap()
        {
            break;
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

/// Removes the persistent session of `client_id`.
async fn end_session(client_id: &str) {
    let (client, mut events) = AsyncClient::new(options(client_id, true), 16);
    let _ = tokio::time::timeout(Duration::from_secs(2), events.poll()).await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

// ---------------------------------------------------------------------------------
// The compliance suite.

struct MqttSourceBackend {
    topic: String,
    client_id: String,
}

impl MqttSourceBackend {
    async fn new() -> Self {
        let topic = unique("src");
        let client_id = unique("c");
        session(&client_id, &topic).await;
        Self { topic, client_id }
    }

    fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut s = settings(&[
            ("url", URL),
            ("topic", &self.topic),
            ("clientId", &self.client_id),
        ]);
        s.extend(settings(extra));
        s
    }
}

#[async_trait]
impl SourceBackend for MqttSourceBackend {
    fn build(&self, _resume: Option<Position>) -> Arc<dyn Source> {
        source(
            "mqtt",
            "pipe:mqtt",
            &self.settings(&[("sdk.batch.size", "10")]),
            None,
        )
        .unwrap()
    }

    async fn inject(&self, payloads: &[Bytes]) {
        publish(&self.topic, payloads).await;
    }

    fn payload(&self, record: &Record) -> Bytes {
        raw(record)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_passes_the_source_compliance_suite() {
    if !broker().await {
        return;
    }
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let report = run_source_compliance("mqtt source", SourceCapabilities::FULL, |_| {
        let ids = Arc::clone(&ids);
        async move {
            let backend = MqttSourceBackend::new().await;
            ids.lock().unwrap().push(backend.client_id.clone());
            backend
        }
    })
    .await;
    report.assert_complete();
    let ids = ids.lock().unwrap().clone();
    for id in ids {
        end_session(&id).await;
    }
}

/// The destination publishes to a topic a persistent session subscribed to; reading
/// back drains that session.
struct MqttDestinationBackend {
    topic: String,
    reader: String,
}

#[async_trait]
impl DestinationBackend for MqttDestinationBackend {
    fn build(&self) -> Arc<dyn Destination> {
        destination(
            "mqtt",
            "pipe:mqtt-out",
            &settings(&[
                ("url", URL),
                ("topic", &self.topic),
                ("clientId", &format!("{}-out", self.reader)),
            ]),
        )
        .unwrap()
    }

    async fn written(&self) -> Vec<Bytes> {
        drain(&self.reader)
            .await
            .iter()
            .map(|body| raw(&Record::from_json(body).unwrap()))
            .collect()
    }
}

/// Every message kept for the session `client_id`, in order, acknowledged (it
/// stops after a second without messages).
async fn drain(client_id: &str) -> Vec<Bytes> {
    let (client, mut events) = AsyncClient::new(options(client_id, false), 1024);
    let mut bodies = Vec::new();
    while let Ok(event) = tokio::time::timeout(Duration::from_secs(1), events.poll()).await {
        if let Event::Incoming(Packet::Publish(p)) = event.unwrap() {
            bodies.push(p.payload.clone());
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_passes_the_destination_compliance_suite() {
    if !broker().await {
        return;
    }
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let report =
        run_destination_compliance("mqtt destination", DestinationCapabilities::FULL, |_| {
            let ids = Arc::clone(&ids);
            async move {
                let topic = unique("dst");
                let reader = unique("r");
                session(&reader, &topic).await;
                ids.lock().unwrap().push(reader.clone());
                MqttDestinationBackend { topic, reader }
            }
        })
        .await;
    report.assert_complete();
    let ids = ids.lock().unwrap().clone();
    for id in ids {
        end_session(&id).await;
    }
}

// ---------------------------------------------------------------------------------
// Behaviour.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_messages_published_by_a_client_are_read_once_in_order_through_a_wildcard() {
    if !broker().await {
        return;
    }
    let backend = MqttSourceBackend::new().await;
    let payloads: Vec<Bytes> = (0..50_000)
        .map(|i| Bytes::from(format!("m{i:05}")))
        .collect();
    let source = source(
        "mqtt",
        "pipe:mqtt",
        &settings(&[
            ("url", URL),
            ("topic", &format!("{}/+", backend.topic)),
            ("clientId", &backend.client_id),
        ]),
        None,
    )
    .unwrap();
    source.open().await.unwrap();
    let topic = format!("{}/sub", backend.topic);
    let publisher = tokio::spawn({
        let payloads = payloads.clone();
        async move { publish(&topic, &payloads).await }
    });
    let got: Vec<Bytes> = read_and_ack(&*source, payloads.len())
        .await
        .iter()
        .map(raw)
        .collect();
    publisher.await.unwrap();
    assert!(
        got == payloads,
        "the records differ from what was published, or their order does"
    );
    source.teardown().await.unwrap();
    end_session(&backend.client_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_carries_the_payload_and_topic_and_unacked_messages_come_again() {
    if !broker().await {
        return;
    }
    let backend = MqttSourceBackend::new().await;
    let payloads: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("r{i}"))).collect();
    publish(&backend.topic, &payloads).await;
    let first = source("mqtt", "pipe:mqtt", &backend.settings(&[]), None).unwrap();
    first.open().await.unwrap();
    let records = read_n(&*first, 10).await;
    let meta = &records[0].metadata;
    assert_eq!(meta.get("opencdc.collection"), Some(backend.topic.as_str()));
    assert_eq!(meta.get("mqtt.qos"), Some("1"));
    assert_eq!(meta.get("mqtt.dup"), Some("false"));
    first.ack(&[records[3].position.clone()]).await.unwrap();
    // What SIGKILL leaves: no teardown.
    drop(first);
    let second = source("mqtt", "pipe:mqtt", &backend.settings(&[]), None).unwrap();
    second.open().await.unwrap();
    let again = read_n(&*second, 6).await;
    let bodies: Vec<Bytes> = again.iter().map(raw).collect();
    assert_eq!(bodies, payloads[4..]);
    second.teardown().await.unwrap();
    end_session(&backend.client_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_publishes_to_a_templated_topic_with_retain_and_nacks_a_wildcard_topic() {
    if !broker().await {
        return;
    }
    let base = unique("tpl");
    let reader = unique("r");
    session(&reader, &format!("{base}/#")).await;
    let d = destination(
        "mqtt",
        "pipe:out",
        &settings(&[
            ("url", URL),
            (
                "topic",
                &format!("{base}/{{{{ index .Metadata \"table\" }}}}"),
            ),
            ("clientId", &unique("w")),
            ("retain", "true"),
        ]),
    )
    .unwrap();
    d.open().await.unwrap();
    let mut records = Vec::new();
    for (i, table) in ["orders", "#", "users"].iter().enumerate() {
        let mut r = Record::new(format!("p{i}"), Bytes::from(format!("body {i}")));
        r.metadata.insert("table", *table);
        records.push(r);
    }
    d.write(&records).await.unwrap();
    let acks = ack_n(&*d, 3).await;
    assert!(
        acks[0].error.is_none() && acks[2].error.is_none(),
        "{acks:?}"
    );
    let error = nack_error(&acks[1]);
    assert!(error.contains("wildcard"), "{error}");
    d.teardown().await.unwrap();
    let bodies = drain(&reader).await;
    let got: Vec<Bytes> = bodies
        .iter()
        .map(|b| raw(&Record::from_json(b).unwrap()))
        .collect();
    assert_eq!(
        got,
        [Bytes::from_static(b"body 0"), Bytes::from_static(b"body 2")]
    );
    // Retained: a new subscriber gets the last message of each topic.
    let late = unique("late");
    let (client, mut events) = AsyncClient::new(options(&late, true), 16);
    client
        .subscribe(format!("{base}/orders"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let retained = loop {
        if let Event::Incoming(Packet::Publish(p)) = tokio::time::timeout(PATIENCE, events.poll())
            .await
            .unwrap()
            .unwrap()
        {
            break p;
        }
    };
    assert!(retained.retain);
    // Clear the retained messages.
    for t in ["orders", "users"] {
        client
            .publish(format!("{base}/{t}"), QoS::AtLeastOnce, true, Vec::new())
            .await
            .unwrap();
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    end_session(&reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_with_a_message_naming_connector_and_broker() {
    if !broker().await {
        return;
    }
    let away = source(
        "mqtt",
        "pipe:away",
        &settings(&[("url", "tcp://127.0.0.1:1"), ("topic", "t")]),
        None,
    )
    .unwrap();
    let error = away.open().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("mqtt source pipe:away") && text.contains("127.0.0.1:1"),
        "{text}"
    );
    assert_eq!(error.retry(), funnel_core::Retry::Transient, "{text}");
    assert_ne!(error.kind(), ErrorKind::Config, "{text}");
}
