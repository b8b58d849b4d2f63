//! The nats (JetStream) source and destination against the real server on
//! 127.0.0.1:4222 (JetStream on, max_payload 8 MB: see `scripts/nats-server.sh`). Each
//! test uses its own stream, deleted at the end. Without a server the tests are
//! skipped, except under `CI=true`, where a missing server fails them.

#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/nats.rs"]
mod support;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{destination, nats, source};
use funnel_core::{Destination, Source};
use funnel_record::{Metadata, Position, Record, metadata};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::{
    ack_n, destination_open_error, nack_error, read_and_ack, read_n, source_open_error,
};
use futures::StreamExt;
use support::{TestStream, URL, client, payload_of_json, raw, settings};

/// A stream of its own for each check; the source reads it with `sdk.batch.size` 10.
struct NatsBackend {
    stream: TestStream,
}

impl NatsBackend {
    /// A backend with a new stream tagged `tag`.
    async fn new(client: &async_nats::Client, tag: &str) -> Self {
        Self {
            stream: TestStream::new(client, tag).await,
        }
    }
}

#[async_trait]
impl SourceBackend for NatsBackend {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        self.stream
            .source("compliance", &[("sdk.batch.size", "10")], resume)
    }

    async fn inject(&self, payloads: &[Bytes]) {
        self.stream.publish(&self.stream.subject(), payloads).await;
    }

    fn payload(&self, record: &Record) -> Bytes {
        raw(record)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_passes_the_source_compliance_suite() {
    let Some(client) = client().await else { return };
    run_source_compliance("nats source", SourceCapabilities::FULL, |_| {
        NatsBackend::new(&client, "src")
    })
    .await
    .assert_complete();
}

#[async_trait]
impl DestinationBackend for NatsBackend {
    fn build(&self) -> Arc<dyn Destination> {
        self.stream.destination("pipe:out", &[])
    }

    async fn written(&self) -> Vec<Bytes> {
        self.stream
            .messages()
            .await
            .iter()
            .map(|m| payload_of_json(&m.payload))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_passes_the_destination_compliance_suite() {
    let Some(client) = client().await else { return };
    run_destination_compliance("nats destination", DestinationCapabilities::FULL, |_| {
        NatsBackend::new(&client, "dst")
    })
    .await
    .assert_complete();
}

fn numbered(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("message {i:06}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_messages_published_by_the_nats_client_are_read_once_in_order_and_acked() {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "fifty").await;
    let subject = stream.subject();
    let payloads = numbered(50_000);
    let source = stream.source("fifty", &[], None);
    source.open().await.unwrap();
    // Half before the source reads, half while it reads.
    stream.publish(&subject, &payloads[..25_000]).await;
    let publisher = {
        let (js, subject, rest) = (
            stream.js.clone(),
            subject.clone(),
            payloads[25_000..].to_vec(),
        );
        tokio::spawn(async move {
            for chunk in rest.chunks(500) {
                let mut acks = Vec::new();
                for p in chunk {
                    acks.push(js.publish(subject.clone(), p.clone()).await.unwrap());
                }
                for ack in acks {
                    ack.await.unwrap();
                }
            }
        })
    };
    let records = read_and_ack(&*source, 50_000).await;
    publisher.await.unwrap();
    assert_eq!(records.len(), 50_000);
    let got: Vec<Bytes> = records.iter().map(raw).collect();
    assert!(got == payloads, "the messages came out of order or changed");
    let first = &records[0];
    assert_eq!(first.position, Position::from("1"));
    assert_eq!(
        first.metadata.get(metadata::COLLECTION),
        Some(subject.as_str())
    );
    assert_eq!(first.metadata.get(nats::METADATA_SEQUENCE), Some("1"));
    assert_eq!(
        first.metadata.get(nats::METADATA_STREAM),
        Some(stream.name.as_str())
    );
    assert!(
        first
            .metadata
            .get(metadata::CREATED_AT)
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert_eq!(records[49_999].position, Position::from("50000"));
    source.teardown().await.unwrap();

    // Everything was acked: the consumer's ack floor is the last message, and a source
    // without a saved position starts after it.
    let info = stream.handle().await.consumer_info("fifty").await.unwrap();
    assert_eq!(info.ack_floor.stream_sequence, 50_000);
    stream
        .publish(&subject, &[Bytes::from_static(b"after")])
        .await;
    let again = stream.source("fifty", &[], None);
    again.open().await.unwrap();
    let next = read_n(&*again, 1).await;
    assert_eq!(raw(&next[0]), "after");
    again.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_become_metadata_and_the_message_id_becomes_the_key() {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "hdr").await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "order-7");
    headers.insert("trace", "abc");
    stream
        .js
        .publish_with_headers(stream.subject(), headers, Bytes::from_static(b"body"))
        .await
        .unwrap()
        .await
        .unwrap();
    let source = stream.source("hdr", &[], None);
    source.open().await.unwrap();
    let record = read_n(&*source, 1).await.remove(0);
    assert_eq!(record.metadata.get("trace"), Some("abc"));
    assert_eq!(
        record.key,
        Some(funnel_record::Data::Raw(Bytes::from_static(b"order-7")))
    );
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_policy_new_reads_only_what_comes_after_the_consumer_and_ack_policy_all_acks_the_prefix()
 {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "new").await;
    let subject = stream.subject();
    stream.publish(&subject, &numbered(3)).await;
    let extra = [("deliverPolicy", "new"), ("ackPolicy", "all")];
    let source = stream.source("new", &extra, None);
    source.open().await.unwrap();
    stream
        .publish(
            &subject,
            &[
                Bytes::from_static(b"fresh 1"),
                Bytes::from_static(b"fresh 2"),
            ],
        )
        .await;
    let records = read_n(&*source, 2).await;
    assert_eq!(raw(&records[0]), "fresh 1");
    assert_eq!(records[0].position, Position::from("4"));
    source.ack(&[records[0].position.clone()]).await.unwrap();
    source.teardown().await.unwrap();
    // Only the first was acked: without a saved position the consumer restarts after
    // its ack floor, so the second comes again; nothing before the consumer does.
    let again = stream.source("new", &extra, None);
    again.open().await.unwrap();
    let records = read_n(&*again, 1).await;
    assert_eq!(raw(&records[0]), "fresh 2");
    again.teardown().await.unwrap();
}

fn record_with(position: &str, payload: &str, meta: &[(&str, &str)]) -> Record {
    let mut record = Record::new(
        Position::from(position.to_owned()),
        Bytes::from(payload.to_owned()),
    );
    let mut m = Metadata::new();
    for (k, v) in meta {
        m.insert(*k, *v);
    }
    record.metadata = m;
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_records_are_stored_once_with_headers_and_written_again_are_not_stored_twice()
 {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "dfifty").await;
    let records: Vec<Record> = (0..50_000)
        .map(|i| {
            record_with(
                &format!("{i:08}"),
                &format!("record {i}"),
                &[("table", "t1"), ("bad name", "x")],
            )
        })
        .collect();
    let d = stream.destination("pipe:dfifty", &[]);
    d.open().await.unwrap();
    for chunk in records.chunks(1000) {
        d.write(chunk).await.unwrap();
    }
    let got = ack_n(&*d, 50_000).await;
    assert!(got.iter().all(|a| a.error.is_none()));
    assert!(
        got.iter()
            .map(|a| &a.position)
            .eq(records.iter().map(|r| &r.position))
    );
    d.teardown().await.unwrap();
    // A restarted pipeline writes the last thousand again: the message IDs keep them
    // from being stored twice.
    let d = stream.destination("pipe:dfifty", &[]);
    d.open().await.unwrap();
    d.write(&records[49_000..]).await.unwrap();
    ack_n(&*d, 1000).await;
    d.teardown().await.unwrap();

    let messages = stream.messages().await;
    assert_eq!(messages.len(), 50_000);
    assert_eq!(payload_of_json(&messages[0].payload), "record 0");
    assert_eq!(payload_of_json(&messages[49_999].payload), "record 49999");
    let headers = &messages[7].headers;
    assert_eq!(headers.get("table").map(|v| v.as_str()), Some("t1"));
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some("pipe:dfifty/00000007")
    );
    assert!(headers.iter().all(|(name, _)| {
        let name: &str = name.as_ref();
        name != "bad name"
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_one_kilobyte_records_written_while_acks_are_read_all_get_acked() {
    // What the engine does, at the size of the benchmark: one task writes batches
    // without waiting for acks, another collects them. Publish acks awaited in the
    // wrong place, a full in-flight window or a lost wake-up would stop the acks; each
    // ack call must bring some within PATIENCE, and all must come within the deadline.
    const N: usize = 100_000;
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "big").await;
    let body = "x".repeat(1000);
    let d = stream.destination("pipe:big", &[]);
    d.open().await.unwrap();
    let writer = {
        let d = Arc::clone(&d);
        tokio::spawn(async move {
            for start in (0..N).step_by(1000) {
                let batch: Vec<Record> = (start..start + 1000)
                    .map(|i| record_with(&format!("{i:08}"), &body, &[]))
                    .collect();
                d.write(&batch).await.unwrap();
            }
        })
    };
    let got = tokio::time::timeout(std::time::Duration::from_secs(600), ack_n(&*d, N))
        .await
        .expect("not every record was acked within 600 s");
    writer.await.unwrap();
    assert!(got.iter().all(|a| a.error.is_none()));
    assert_eq!(
        got.last().unwrap().position,
        Position::from(format!("{:08}", N - 1))
    );
    d.teardown().await.unwrap();
    let info = stream.handle().await.get_info().await.unwrap();
    assert_eq!(info.state.messages, N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_is_published_as_its_opencdc_json_like_the_other_destinations() {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "json").await;
    let mut record = record_with("p1", "the body", &[("table", "users")]);
    record.key = Some(funnel_record::Data::Raw(Bytes::from_static(b"user-1")));
    record.operation = funnel_record::Operation::Update;
    let d = stream.destination("pipe:json", &[("sdk.record.format", "opencdc/json")]);
    d.open().await.unwrap();
    d.write(std::slice::from_ref(&record)).await.unwrap();
    assert!(ack_n(&*d, 1).await[0].error.is_none());
    d.teardown().await.unwrap();
    let messages = stream.messages().await;
    let published = Record::from_json(&messages[0].payload).unwrap();
    assert_eq!(published, record);
    // An unknown record format is refused when the pipeline is built.
    let refused = destination(
        "nats",
        "pipe:json",
        &settings(&[
            ("urls", URL),
            ("subject", "x"),
            ("sdk.record.format", "opencdc/avro"),
        ]),
    );
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_template_record_format_each_message_is_the_rendered_template() {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "tmpl").await;
    let d = stream.destination(
        "pipe:tmpl",
        &[
            ("sdk.record.format", "template"),
            (
                "sdk.record.format.options",
                r#"{{ printf "%s" .Payload.After }}"#,
            ),
        ],
    );
    d.open().await.unwrap();
    let records = [
        record_with("p1", "the body", &[]),
        record_with("p2", "another", &[]),
    ];
    d.write(&records).await.unwrap();
    assert!(ack_n(&*d, 2).await.iter().all(|a| a.error.is_none()));
    d.teardown().await.unwrap();
    let payloads: Vec<Bytes> = stream
        .messages()
        .await
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(payloads, [Bytes::from("the body"), Bytes::from("another")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_template_routes_each_record_and_a_failing_one_nacks_only_that_record() {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "tmpl").await;
    let template = format!("{}.{{{{ .Metadata.table }}}}", stream.prefix);
    let d = stream.destination("pipe:tmpl", &[("subject", &template)]);
    d.open().await.unwrap();
    d.write(&[
        record_with("1", "a", &[("table", "users")]),
        record_with("2", "b", &[]),
        record_with("3", "c", &[("table", "orders")]),
    ])
    .await
    .unwrap();
    let got = ack_n(&*d, 3).await;
    assert!(got[0].error.is_none() && got[2].error.is_none());
    let error = nack_error(&got[1]);
    assert!(error.contains("subject"), "{error}");
    d.teardown().await.unwrap();
    let subjects: Vec<String> = stream
        .messages()
        .await
        .iter()
        .map(|m| m.subject.to_string())
        .collect();
    assert_eq!(
        subjects,
        [
            format!("{}.users", stream.prefix),
            format!("{}.orders", stream.prefix)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_no_stream_stores_is_sent_again_then_fails_the_destination_naming_the_subject() {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "nostore").await;
    let stored = format!("{}.a", stream.prefix);
    // A sibling of the stream's subjects that no stream stores: the server answers
    // each publish to it with "no responders".
    let unstored = format!("{}_none.b", stream.prefix);
    let d = stream.destination(
        "pipe:nostore",
        &[
            ("subject", "{{ index .Metadata \"to\" }}"),
            ("retryAttempts", "2"),
            ("retryWait", "100ms"),
        ],
    );
    d.open().await.unwrap();
    d.write(&[
        record_with("1", "a", &[("to", &stored)]),
        record_with("2", "b", &[("to", &unstored)]),
        record_with("3", "c", &[("to", &stored)]),
    ])
    .await
    .unwrap();
    let mut acked = Vec::new();
    let error = loop {
        match tokio::time::timeout(support::PATIENCE, d.ack())
            .await
            .unwrap()
        {
            Ok(acks) => acked.extend(acks),
            Err(e) => break e.to_string(),
        }
    };
    assert_eq!(
        acked.len(),
        1,
        "only the record before the unstored one is acked"
    );
    assert!(acked[0].error.is_none());
    assert!(
        error.contains("nats destination pipe:nostore")
            && error.contains("no publish ack")
            && error.contains(&unstored),
        "{error}"
    );
    assert!(
        d.write(&[record_with("4", "d", &[("to", &stored)])])
            .await
            .is_err()
    );
    d.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_missing_stream_and_unstored_subject_fail_with_clear_messages() {
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "bad").await;

    let unreachable = settings(&[
        ("urls", "nats://127.0.0.1:1"),
        ("stream", &stream.name),
        ("subject", "x"),
    ]);
    let error = source_open_error(&*source("nats", "p:in", &unreachable, None).unwrap()).await;
    assert!(
        error.contains("nats source p:in") && error.contains("nats://127.0.0.1:1"),
        "{error}"
    );

    let missing = settings(&[
        ("urls", URL),
        ("stream", "FT_NO_SUCH_STREAM"),
        ("subject", "x"),
    ]);
    let error = source_open_error(&*source("nats", "p:in", &missing, None).unwrap()).await;
    assert!(
        error.contains("nats source p:in")
            && error.contains("FT_NO_SUCH_STREAM")
            && error.contains(URL),
        "{error}"
    );

    let foreign = stream.source_settings("bad", &[("subject", "elsewhere.>")]);
    let error = source_open_error(&*source("nats", "p:in", &foreign, None).unwrap()).await;
    assert!(
        error.contains(&stream.name) && error.contains("elsewhere.>"),
        "{error}"
    );

    let unstored = settings(&[("urls", URL), ("subject", "ft.nobody.stores.this")]);
    let error = destination_open_error(&*destination("nats", "p:out", &unstored).unwrap()).await;
    assert!(
        error.contains("nats destination p:out") && error.contains("ft.nobody.stores.this"),
        "{error}"
    );
}

/// A subject of its own for a core-NATS test (no stream stores it).
fn core_subject(tag: &str) -> String {
    funnel_test_utils::name::unique("ftcore", tag, '.')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pubsub_source_reads_a_core_subject_without_a_stream_in_publish_order() {
    let Some(client) = client().await else { return };
    let prefix = core_subject("src");
    let s = settings(&[
        ("urls", URL),
        ("mode", "pubsub"),
        ("subject", &format!("{prefix}.>")),
        ("bufferSize", "20000"),
    ]);
    let source = source("nats", "pipe:core", &s, None).unwrap();
    source.open().await.unwrap();
    let payloads = numbered(10_000);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "first");
    client
        .publish_with_headers(format!("{prefix}.a"), headers, payloads[0].clone())
        .await
        .unwrap();
    for p in &payloads[1..] {
        client
            .publish(format!("{prefix}.a"), p.clone())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let records = read_n(&*source, 10_000).await;
    let got: Vec<Bytes> = records.iter().map(raw).collect();
    assert!(got == payloads, "messages were lost, repeated or reordered");
    assert_eq!(
        records[0].metadata.get(metadata::COLLECTION),
        Some(format!("{prefix}.a").as_str())
    );
    assert_eq!(
        records[0].key,
        Some(funnel_record::Data::Raw(Bytes::from_static(b"first")))
    );
    assert!(records.windows(2).all(|w| w[0].position < w[1].position));
    // Nothing to acknowledge: acks succeed and change nothing.
    source
        .ack(&[records[9_999].position.clone()])
        .await
        .unwrap();
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pubsub_destination_publishes_opencdc_json_to_core_subscribers_without_a_stream() {
    let Some(client) = client().await else { return };
    let prefix = core_subject("dst");
    let mut subscriber = client.subscribe(format!("{prefix}.>")).await.unwrap();
    client.flush().await.unwrap();
    let template = format!("{prefix}.{{{{ .Metadata.table }}}}");
    let d = destination(
        "nats",
        "pipe:core",
        &settings(&[("urls", URL), ("mode", "pubsub"), ("subject", &template)]),
    )
    .unwrap();
    d.open().await.unwrap();
    let records: Vec<Record> = (0..1000)
        .map(|i| record_with(&format!("{i:04}"), &format!("r{i}"), &[("table", "t")]))
        .collect();
    d.write(&records[..500]).await.unwrap();
    d.write(&[record_with("x", "no table", &[])]).await.unwrap();
    d.write(&records[500..]).await.unwrap();
    let acks = ack_n(&*d, 1001).await;
    assert!(
        acks[500].error.is_some(),
        "a record without a subject is nacked"
    );
    assert_eq!(acks.iter().filter(|a| a.error.is_none()).count(), 1000);
    d.teardown().await.unwrap();
    for (i, want) in records.iter().enumerate() {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), subscriber.next())
            .await
            .unwrap_or_else(|_| panic!("only {i} of 1000 messages arrived"))
            .unwrap();
        assert_eq!(message.subject.as_str(), format!("{prefix}.t"));
        assert_eq!(&Record::from_json(&message.payload).unwrap(), want);
        assert_eq!(
            message
                .headers
                .as_ref()
                .and_then(|h| h.get("table"))
                .map(|v| v.as_str()),
            Some("t")
        );
    }
}
