//! The kafka source and destination against a real Kafka-protocol broker on
//! 127.0.0.1:9092 (tansu, started by `scripts/setup-services.sh`). Every test makes its
//! own topics (unique names) through the admin API: the broker creates none by itself.
//! Without a broker the tests are skipped, except under `CI=true`, where a missing
//! broker fails them.
//!
//! The test broker cannot read snappy batches, so compression is tested with gzip,
//! lz4 and zstd, and the destinations here use `compression: none` unless a test is
//! about compression (snappy stays the default for real brokers).

#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use funnel_connectors::kafka::rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use funnel_connectors::kafka::{KafkaPosition, create_topic};
use funnel_connectors::{Settings, destination, source};
use funnel_core::{Destination, DestinationAck, Source};
use funnel_record::{Data, Position, Record};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::raw;
use funnel_test_utils::tansu::{PrivateBroker, ProxyTls};

const SERVERS: &str = "127.0.0.1:9092";
const PATIENCE: Duration = Duration::from_secs(60);

fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A kafka source `id` of the broker at [`SERVERS`] with `pairs` as its other settings.
fn kafka_source(id: &str, pairs: &[(&str, &str)]) -> Arc<dyn Source> {
    let mut all = vec![("servers", SERVERS)];
    all.extend_from_slice(pairs);
    source("kafka", id, &settings(&all), None).unwrap()
}

/// A [`kafka_source`] member of `group` reading `topics` from the beginning, with
/// `pairs` as its other settings.
fn member(id: &str, topics: &str, group: &str, pairs: &[(&str, &str)]) -> Arc<dyn Source> {
    let mut all = vec![
        ("topics", topics),
        ("groupID", group),
        ("readFromBeginning", "true"),
    ];
    all.extend_from_slice(pairs);
    kafka_source(id, &all)
}

/// The configuration of a plain consumer of `group` at `servers` that commits nothing
/// by itself.
fn consumer_config(servers: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    config
}

/// Whether the broker is up; skips (or fails under CI) when it is not.
fn broker() -> bool {
    match std::net::TcpStream::connect_timeout(&SERVERS.parse().unwrap(), Duration::from_secs(2)) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no Kafka broker at {SERVERS}: {e} (run scripts/setup-services.sh)"
            );
            eprintln!("skipping: no Kafka broker at {SERVERS}: {e}");
            false
        }
    }
}

/// A unique name for `tag`.
fn unique(tag: &str) -> String {
    funnel_test_utils::name::unique("funnel-test", tag, '-')
}

/// A new topic with `partitions` partitions.
async fn topic(tag: &str, partitions: i32) -> String {
    let name = unique(tag);
    create_topic(SERVERS, &name, partitions).await.unwrap();
    name
}

/// One message read back: partition, key, value and headers.
type Message = (i32, Option<Vec<u8>>, Vec<u8>, Vec<(String, String)>);

/// Every message of `topic` (all partitions, up to their end when called), read
/// without a group.
fn messages(topic: &str) -> Vec<Message> {
    let consumer: BaseConsumer = consumer_config(SERVERS, &unique("reader"))
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut list = TopicPartitionList::new();
    let mut remaining = 0;
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        remaining += high - low;
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while remaining > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} messages of {topic}, {remaining} missing",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let m = message.unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    use funnel_connectors::kafka::rdkafka::message::Headers;
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.partition(),
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
            remaining -= 1;
        }
    }
    out
}

/// Writes `records` with a new destination of `extra` settings and returns the acks.
async fn write(extra: &[(&str, &str)], records: &[Record]) -> Vec<DestinationAck> {
    write_at(SERVERS, extra, records).await
}

/// [`write`] to the brokers at `servers`.
async fn write_at(
    servers: &str,
    extra: &[(&str, &str)],
    records: &[Record],
) -> Vec<DestinationAck> {
    let mut pairs = vec![("servers", servers), ("compression", "none")];
    pairs.extend_from_slice(extra);
    write_with(&pairs, records).await
}

/// Writes `records` with a new destination of the settings `pairs` and returns the
/// acks.
async fn write_with(pairs: &[(&str, &str)], records: &[Record]) -> Vec<DestinationAck> {
    let d = destination("kafka", "p:out", &settings(pairs)).unwrap();
    d.open().await.unwrap();
    d.write(records).await.unwrap();
    let mut acks = Vec::new();
    while acks.len() < records.len() {
        acks.extend(
            tokio::time::timeout(PATIENCE, d.ack())
                .await
                .expect("acks in time")
                .unwrap(),
        );
    }
    d.teardown().await.unwrap();
    acks
}

// ---------------------------------------------------------------------------------
// Compliance.

/// The largest message (key + value) the test broker returns to a consumer, with
/// room to spare. tansu 0.6 caps every fetch at 5 MiB (`DEFAULT_MAX_BYTES` in
/// tansu-storage's `service/fetch.rs`) and its SQL storage returns only the records
/// whose running key + value size stays below that cap (`record_fetch.sql`), so a
/// message of 5 MiB or more is stored but never returned: consumers stop at it. (A
/// Kafka broker returns the first batch of a fetch whatever its size, KIP-74.) The
/// suites' 5 MiB records are therefore 4 MiB here.
const TANSU_LARGEST_MESSAGE: usize = 4 * 1024 * 1024;

/// A one-partition topic read by the kafka source as its own group.
struct SourceTopic {
    topic: String,
    group: String,
}

impl SourceTopic {
    async fn new() -> Self {
        Self {
            topic: topic("src", 1).await,
            group: unique("group"),
        }
    }
}

#[async_trait]
impl SourceBackend for SourceTopic {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        let settings = settings(&[
            ("servers", SERVERS),
            ("topics", &self.topic),
            ("groupID", &self.group),
            ("readFromBeginning", "true"),
            ("sdk.batch.size", "10"),
        ]);
        source("kafka", "p:in", &settings, resume).unwrap()
    }

    async fn inject(&self, payloads: &[Bytes]) {
        let records: Vec<Record> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Record::new(format!("{i}"), p.clone()))
            .collect();
        // Raw payloads as they are: a destination writing the value alone is the
        // template format, so the messages are produced with the client here.
        let producer: funnel_connectors::kafka::rdkafka::producer::BaseProducer =
            ClientConfig::new()
                .set("bootstrap.servers", SERVERS)
                .set("message.max.bytes", "10000000")
                .create()
                .unwrap();
        use funnel_connectors::kafka::rdkafka::producer::{BaseRecord, Producer};
        for record in &records {
            let value = raw(record);
            producer
                .send(BaseRecord::<(), [u8]>::to(&self.topic).payload(&value[..]))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(PATIENCE).unwrap();
    }

    fn payload(&self, record: &Record) -> Bytes {
        raw(record)
    }

    fn max_payload_bytes(&self) -> Option<usize> {
        Some(TANSU_LARGEST_MESSAGE)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_passes_the_source_compliance_suite() {
    if !broker() {
        return;
    }
    run_source_compliance("kafka source", SourceCapabilities::FULL, |_| {
        SourceTopic::new()
    })
    .await
    .assert_complete();
}

/// A one-partition topic the destination writes; read back by a plain consumer.
struct DestinationTopic {
    topic: String,
}

#[async_trait]
impl DestinationBackend for DestinationTopic {
    fn build(&self) -> Arc<dyn Destination> {
        let settings = settings(&[
            ("servers", SERVERS),
            ("topic", &self.topic),
            ("compression", "none"),
            ("batchBytes", "8000000"),
        ]);
        destination("kafka", "p:out", &settings).unwrap()
    }

    fn max_payload_bytes(&self) -> Option<usize> {
        // The message is the record as OpenCDC JSON: the raw payload in base64 (4/3
        // of its size) plus the metadata.
        Some(TANSU_LARGEST_MESSAGE / 4 * 3 - 64 * 1024)
    }

    async fn written(&self) -> Vec<Bytes> {
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || messages(&topic))
            .await
            .unwrap()
            .into_iter()
            .map(|(_, _, value, _)| raw(&Record::from_json(&value).unwrap()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_passes_the_destination_compliance_suite() {
    if !broker() {
        return;
    }
    run_destination_compliance(
        "kafka destination",
        DestinationCapabilities::FULL,
        |_| async {
            DestinationTopic {
                topic: topic("dst", 1).await,
            }
        },
    )
    .await
    .assert_complete();
}

// ---------------------------------------------------------------------------------
// Records.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_writes_the_key_metadata_as_headers_and_the_record_as_opencdc_json() {
    if !broker() {
        return;
    }
    let name = topic("shape", 1).await;
    let mut record = traced(b"hello", b"k1");
    record.metadata.insert("opencdc.collection", name.clone());
    // The default topic is the record's opencdc.collection.
    let acks = write(&[], std::slice::from_ref(&record)).await;
    assert_eq!(acks, [DestinationAck::ok("1".into())]);
    let got = tokio::task::spawn_blocking(move || messages(&name))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let (_, key, value, headers) = &got[0];
    assert_eq!(key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(Record::from_json(value).unwrap(), record);
    assert!(headers.contains(&("trace".to_owned(), "abc".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_makes_records_with_the_topic_partition_offset_headers_and_timestamp() {
    if !broker() {
        return;
    }
    let name = topic("meta", 1).await;
    let mut record = traced(b"v", b"k");
    // A header the source must not let override the topic it read.
    record.metadata.insert("opencdc.collection", "elsewhere");
    write(&[("topic", &name)], &[record]).await;
    let s = kafka_source("p:in", &[("topics", &name), ("readFromBeginning", "true")]);
    s.open().await.unwrap();
    let records = tokio::time::timeout(PATIENCE, s.read())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let r = &records[0];
    assert_eq!(r.key, Some(Data::Raw(Bytes::from_static(b"k"))));
    assert!(
        Record::from_json(&raw(r)).is_ok(),
        "the value is the OpenCDC JSON"
    );
    assert_eq!(r.metadata.get("opencdc.collection"), Some(name.as_str()));
    assert_eq!(r.metadata.get("kafka.partition"), Some("0"));
    assert_eq!(r.metadata.get("kafka.offset"), Some("0"));
    assert_eq!(r.metadata.get("trace"), Some("abc"));
    assert_eq!(r.metadata.get("conduit.source.connector.id"), Some("p:in"));
    funnel_test_utils::clock::assert_recent(
        r.metadata.get("opencdc.createdAt").unwrap(),
        Duration::from_secs(600),
    );
    let position = KafkaPosition::parse(r.position.as_bytes()).unwrap();
    assert_eq!(
        (
            position.group_id.as_str(),
            position.topic.as_str(),
            position.partition,
            position.offset
        ),
        ("funnel-p:in", name.as_str(), 0, 0)
    );
    s.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_lz4_and_zstd_batches_are_written_and_read_back() {
    if !broker() {
        return;
    }
    for codec in ["gzip", "lz4", "zstd"] {
        let name = topic(codec, 1).await;
        let records: Vec<Record> = (0..50)
            .map(|i| {
                Record::new(
                    format!("{i}"),
                    Bytes::from(format!("{codec} {i} ").repeat(20)),
                )
            })
            .collect();
        let acks = write(&[("topic", &name), ("compression", codec)], &records).await;
        assert!(acks.iter().all(|a| a.error.is_none()), "{codec}: {acks:?}");
        let s = kafka_source(
            &format!("p:{codec}"),
            &[("topics", &name), ("readFromBeginning", "true")],
        );
        s.open().await.unwrap();
        let mut got = Vec::new();
        while got.len() < records.len() {
            let batch = tokio::time::timeout(PATIENCE, s.read())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            got.extend(
                batch
                    .iter()
                    .map(|r| raw(&Record::from_json(&raw(r)).unwrap())),
            );
        }
        let want: Vec<Bytes> = records.iter().map(raw).collect();
        assert_eq!(got, want, "{codec}");
        s.teardown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------
// Offsets and groups.

/// Reads `n` records (or more) from `s`.
async fn read_n(s: &dyn Source, n: usize) -> Vec<Record> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(
            tokio::time::timeout(PATIENCE, s.read())
                .await
                .expect("records in time")
                .unwrap()
                .unwrap(),
        );
    }
    got
}

/// The record `1` of `value` and `key` with the metadata `trace: abc`.
fn traced(value: &'static [u8], key: &'static [u8]) -> Record {
    let mut record = Record::new("1", Bytes::from_static(value));
    record.key = Some(Data::Raw(Bytes::from_static(key)));
    record.metadata.insert("trace", "abc");
    record
}

fn numbered(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("{i}"), Bytes::from(format!("m{i}"))))
        .collect()
}

fn inner(record: &Record) -> Bytes {
    raw(&Record::from_json(&raw(record)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_for_acked_records_and_a_new_member_resumes_there() {
    if !broker() {
        return;
    }
    let name = topic("commit", 1).await;
    write(&[("topic", &name)], &numbered(20)).await;
    let group = unique("g");
    // Commit at every ack: what is committed is exactly what was acked.
    let build = || member("p:in", &name, &group, &[("commitOffsetsSize", "1")]);
    let s = build();
    s.open().await.unwrap();
    let records = read_n(&*s, 20).await;
    let positions: Vec<Position> = records[..7].iter().map(|r| r.position.clone()).collect();
    s.ack(&positions).await.unwrap();
    // Killed: no teardown, and no resume position (the position store was lost too):
    // the group's committed offset alone decides.
    drop(s);
    let s = build();
    s.open().await.unwrap();
    let again = read_n(&*s, 13).await;
    let got: Vec<Bytes> = again.iter().map(inner).collect();
    let want: Vec<Bytes> = (7..20).map(|i| Bytes::from(format!("m{i}"))).collect();
    assert_eq!(got, want);
    s.teardown().await.unwrap();
}

/// Keyed messages `m{i}` for `range`, spread over the partitions by their keys.
fn keyed(range: std::ops::Range<usize>) -> Vec<Record> {
    range
        .map(|i| {
            let mut r = Record::new(format!("{i}"), Bytes::from(format!("m{i}")));
            r.key = Some(Data::Raw(Bytes::from(format!("key{i}"))));
            r
        })
        .collect()
}

/// What one member read: the payloads and the partitions they came from.
#[derive(Default)]
struct Seen {
    payloads: std::collections::BTreeSet<Bytes>,
    partitions: std::collections::BTreeSet<String>,
}

impl Seen {
    /// Acks `batch` on `s` and keeps what it holds.
    async fn take(&mut self, s: &dyn Source, batch: Vec<Record>) {
        let positions: Vec<Position> = batch.iter().map(|r| r.position.clone()).collect();
        s.ack(&positions).await.unwrap();
        for r in &batch {
            self.payloads.insert(inner(r));
            self.partitions
                .insert(r.metadata.get("kafka.partition").unwrap().to_owned());
        }
    }
}

/// Reads from `a` and `b` until together they hold every payload of `want`.
async fn read_both(a: &dyn Source, b: &dyn Source, want: &[Record]) -> (Seen, Seen) {
    let want: std::collections::BTreeSet<Bytes> = want.iter().map(raw).collect();
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let deadline = std::time::Instant::now() + PATIENCE * 2;
    while !want.is_subset(&(&seen_a.payloads | &seen_b.payloads)) {
        assert!(
            std::time::Instant::now() < deadline,
            "a {} b {} of {}",
            seen_a.payloads.len(),
            seen_b.payloads.len(),
            want.len()
        );
        tokio::select! {
            batch = a.read() => seen_a.take(a, batch.unwrap().unwrap()).await,
            batch = b.read() => seen_b.take(b, batch.unwrap().unwrap()).await,
        }
    }
    (seen_a, seen_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_one_group_split_the_partitions_and_one_takes_over_when_the_other_leaves() {
    if !broker() {
        return;
    }
    let name = topic("split", 4).await;
    let group = unique("g");
    let build = |id: &str| member(id, &name, &group, &[("commitOffsetsSize", "1")]);
    let a = build("p:a");
    let b = build("p:b");
    a.open().await.unwrap();
    b.open().await.unwrap();
    // Delivery is at least once: while the group rebalances (b joining after a had
    // every partition), a partition's unacked records may be read by both. Once the
    // group is stable, each partition has one reader: waves of messages are written
    // until one wave is read by both members from disjoint partitions.
    let deadline = std::time::Instant::now() + PATIENCE * 3;
    let mut next = 0;
    let mut acked_by_b = std::collections::BTreeSet::new();
    loop {
        let wave = keyed(next..next + 100);
        next += 100;
        write(&[("topic", &name)], &wave).await;
        let (seen_a, seen_b) = read_both(&*a, &*b, &wave).await;
        acked_by_b.extend(seen_b.payloads.iter().cloned());
        if !seen_a.partitions.is_empty()
            && !seen_b.partitions.is_empty()
            && seen_a.partitions.is_disjoint(&seen_b.partitions)
        {
            assert!(seen_a.payloads.is_disjoint(&seen_b.payloads));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the members never split the partitions: a read {:?}, b read {:?}",
            seen_a.partitions,
            seen_b.partitions
        );
    }
    // b leaves (committing what it acked); a gets its partitions and reads what is
    // written next, on all four, and nothing b had acked.
    b.teardown().await.unwrap();
    let more = keyed(next..next + 60);
    write(&[("topic", &name)], &more).await;
    let want: std::collections::BTreeSet<Bytes> = more.iter().map(raw).collect();
    let mut later = Seen::default();
    while !want.is_subset(&later.payloads) {
        let batch = tokio::time::timeout(PATIENCE, a.read())
            .await
            .expect("the remaining member reads every partition")
            .unwrap()
            .unwrap();
        later.take(&*a, batch).await;
    }
    assert_eq!(later.partitions.len(), 4, "{:?}", later.partitions);
    assert!(
        later.payloads.is_disjoint(&acked_by_b),
        "read again after b acked them and left: {:?}",
        later.payloads.intersection(&acked_by_b).collect::<Vec<_>>()
    );
    a.teardown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Bad input.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_fail_open_with_the_connector_and_the_reason() {
    let s = source(
        "kafka",
        "p:in",
        &settings(&[("servers", "127.0.0.1:1"), ("topics", "t")]),
        None,
    )
    .unwrap();
    let error = s.open().await.unwrap_err().to_string();
    assert!(error.contains("kafka source p:in"), "{error}");
    assert!(
        error.contains("cannot get the cluster's metadata"),
        "{error}"
    );
    let d = destination("kafka", "p:out", &settings(&[("servers", "127.0.0.1:1")])).unwrap();
    let error = d.open().await.unwrap_err().to_string();
    assert!(error.contains("kafka destination p:out"), "{error}");
    d.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_of_an_unknown_topic_fails_open_naming_it() {
    if !broker() {
        return;
    }
    let missing = unique("missing");
    let s = kafka_source("p:in", &[("topics", &missing)]);
    let error = s.open().await.unwrap_err().to_string();
    assert!(error.contains("kafka source p:in"), "{error}");
    assert!(
        error.contains(&missing) && error.contains("does not exist"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_size_limit_is_nacked_with_the_reason_and_the_others_are_written() {
    if !broker() {
        return;
    }
    let name = topic("big", 1).await;
    let records = vec![
        Record::new("1", Bytes::from_static(b"small")),
        Record::new("2", Bytes::from(vec![b'x'; 5000])),
        Record::new("3", Bytes::from_static(b"small again")),
    ];
    let acks = write(&[("topic", &name), ("batchBytes", "2000")], &records).await;
    assert_eq!(acks.len(), 3);
    assert!(
        acks[0].error.is_none() && acks[2].error.is_none(),
        "{acks:?}"
    );
    let error = acks[1]
        .error
        .as_ref()
        .expect("the big record is nacked")
        .to_string();
    assert!(error.contains("kafka destination p:out"), "{error}");
    assert!(error.contains(&name), "{error}");
    assert!(error.to_lowercase().contains("too large"), "{error}");
    let got = tokio::task::spawn_blocking(move || messages(&name))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_for_an_unknown_topic_is_nacked_naming_the_topic() {
    if !broker() {
        return;
    }
    let name = topic("known", 1).await;
    let missing = unique("missing");
    let mut lost = Record::new("1", Bytes::from_static(b"nowhere"));
    lost.metadata.insert("opencdc.collection", missing.clone());
    let mut kept = Record::new("2", Bytes::from_static(b"somewhere"));
    kept.metadata.insert("opencdc.collection", name.clone());
    let acks = write(&[], &[lost, kept]).await;
    let error = acks[0].error.as_ref().expect("nacked").to_string();
    assert!(error.contains(&missing), "{error}");
    assert!(acks[1].error.is_none(), "{acks:?}");
}

// ---------------------------------------------------------------------------------
// Settings that must have an effect.

/// A client of `group` that reads the group's committed offsets of `topic`.
struct Committed {
    consumer: BaseConsumer,
    topic: String,
}

impl Committed {
    fn new(servers: &str, group: &str, topic: &str) -> Self {
        let consumer = consumer_config(servers, group).create().unwrap();
        Self {
            consumer,
            topic: topic.to_owned(),
        }
    }

    /// The committed offset of `partition`, `None` before the first commit.
    fn get(&self, partition: i32) -> Option<i64> {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.topic, partition);
        let got = self
            .consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        match got.find_partition(&self.topic, partition).unwrap().offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        }
    }

    async fn wait_for(&self, partition: i32, offset: i64) -> std::time::Instant {
        funnel_test_utils::wait::wait_until(
            &format!("offset {offset} committed"),
            PATIENCE,
            || self.get(partition) == Some(offset),
        )
        .await;
        std::time::Instant::now()
    }
}

/// An open member of a new group with the commit settings `commits` that has read the
/// `n` numbered messages of a new one-partition topic `tag`; the records and the
/// group's committed offsets.
async fn committing_member(
    tag: &str,
    n: usize,
    commits: &[(&str, &str)],
) -> (Arc<dyn Source>, Vec<Record>, Committed) {
    let name = topic(tag, 1).await;
    write(&[("topic", &name)], &numbered(n)).await;
    let group = unique("g");
    let s = member("p:in", &name, &group, commits);
    s.open().await.unwrap();
    let records = read_n(&*s, n).await;
    (s, records, Committed::new(SERVERS, &group, &name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_offsets_size_commits_as_soon_as_that_many_records_are_acked_and_not_before() {
    if !broker() {
        return;
    }
    // Never due by time: only the size commits before teardown.
    let commits = [("commitOffsetsSize", "5"), ("commitOffsetsDelay", "1h")];
    let (s, records, committed) = committing_member("size", 12, &commits).await;
    let mut seen = std::collections::BTreeSet::new();
    for (i, record) in records.iter().enumerate() {
        s.ack(std::slice::from_ref(&record.position)).await.unwrap();
        let acked = i as i64 + 1;
        if acked % 5 == 0 {
            committed.wait_for(0, acked).await;
        }
        seen.insert(committed.get(0));
    }
    assert!(
        seen.iter().all(|c| matches!(c, None | Some(5 | 10))),
        "commits only at every 5th ack: {seen:?}"
    );
    // Teardown commits the rest.
    s.teardown().await.unwrap();
    committed.wait_for(0, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_offsets_delay_holds_acked_offsets_back_until_it_passes_then_commits_them() {
    if !broker() {
        return;
    }
    // Never due by size: only the delay commits.
    let commits = [
        ("commitOffsetsSize", "1000000"),
        ("commitOffsetsDelay", "2s"),
    ];
    let (s, records, committed) = committing_member("delay", 6, &commits).await;
    let positions: Vec<Position> = records.iter().map(|r| r.position.clone()).collect();
    s.ack(&positions[..3]).await.unwrap();
    let first = committed.wait_for(0, 3).await;
    // Acked right after a commit: committed one delay after it, with no other ack.
    s.ack(&positions[3..]).await.unwrap();
    let second = committed.wait_for(0, 6).await;
    let gap = second - first;
    assert!(
        gap >= Duration::from_millis(1500) && gap < Duration::from_millis(4500),
        "the second commit came {gap:?} after the first (commitOffsetsDelay 2s)"
    );
    s.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_beginning_false_reads_only_messages_written_after_the_member_joined() {
    if !broker() {
        return;
    }
    let name = topic("latest", 1).await;
    let old: Vec<Record> = (0..5)
        .map(|i| Record::new(format!("{i}"), Bytes::from(format!("old{i}"))))
        .collect();
    write(&[("topic", &name)], &old).await;
    let s = kafka_source("p:in", &[("topics", &name)]);
    s.open().await.unwrap();
    // Until the member has its partition, new messages may be missed too: write one
    // at a time until one is read.
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut n = 0;
    while got.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no new message read");
        write(
            &[("topic", &name)],
            &[Record::new(format!("n{n}"), Bytes::from(format!("new{n}")))],
        )
        .await;
        n += 1;
        if let Ok(batch) = tokio::time::timeout(Duration::from_secs(2), s.read()).await {
            got.extend(batch.unwrap().unwrap().iter().map(inner));
        }
    }
    assert!(
        got.iter().all(|v| v.starts_with(b"new")),
        "an old message was read: {got:?}"
    );
    s.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_reads_every_topic_of_a_comma_list_and_topic_is_the_former_spelling() {
    if !broker() {
        return;
    }
    let (one, two) = (topic("list1", 1).await, topic("list2", 1).await);
    write(&[("topic", &one)], &numbered(3)).await;
    write(&[("topic", &two)], &numbered(4)).await;
    for key in ["topics", "topic"] {
        let list = format!("{one}, {two}");
        let s = kafka_source(
            "p:in",
            &[
                (key, &list),
                ("groupID", &unique("g")),
                ("readFromBeginning", "true"),
            ],
        );
        s.open().await.unwrap();
        let records = read_n(&*s, 7).await;
        let per_topic = |t: &str| {
            records
                .iter()
                .filter(|r| r.metadata.get("opencdc.collection") == Some(t))
                .count()
        };
        assert_eq!((per_topic(&one), per_topic(&two)), (3, 4), "{key}");
        s.teardown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_template_sends_each_record_to_the_topic_it_renders() {
    if !broker() {
        return;
    }
    let base = unique("tmpl");
    let (a, b) = (format!("{base}-a"), format!("{base}-b"));
    create_topic(SERVERS, &a, 1).await.unwrap();
    create_topic(SERVERS, &b, 1).await.unwrap();
    let records: Vec<Record> = ["a", "b", "a"]
        .iter()
        .enumerate()
        .map(|(i, suffix)| {
            let mut r = Record::new(format!("{i}"), Bytes::from(format!("m{i}")));
            r.metadata.insert("suffix", *suffix);
            r
        })
        .collect();
    let template = format!("{base}-{{{{ index .Metadata \"suffix\" }}}}");
    let acks = write(&[("topic", &template)], &records).await;
    assert!(acks.iter().all(|a| a.error.is_none()), "{acks:?}");
    let (in_a, in_b) = tokio::task::spawn_blocking(move || (messages(&a), messages(&b)))
        .await
        .unwrap();
    assert_eq!((in_a.len(), in_b.len()), (2, 1));
}

/// A member of `group` reading `topic` with the cooperative-sticky assignor only, once
/// it has the partitions: members that offer only eager assignors cannot join.
fn cooperative_member(group: &str, topic: &str) -> BaseConsumer {
    let member: BaseConsumer = consumer_config(SERVERS, group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()
        .unwrap();
    member.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while member.assignment().unwrap().count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the member got no partition"
        );
        let _ = member.poll(Duration::from_millis(100));
    }
    member
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_group_join_errors_false_fails_the_read_when_the_group_refuses_the_member() {
    if !broker() {
        return;
    }
    let name = topic("join", 1).await;
    let group = unique("g");
    let other = cooperative_member(&group, &name);
    let s = member("p:in", &name, &group, &[("retryGroupJoinErrors", "false")]);
    s.open().await.unwrap();
    let error = tokio::time::timeout(PATIENCE, s.read())
        .await
        .expect("the read fails in time")
        .unwrap_err()
        .to_string();
    assert!(error.contains("kafka source p:in"), "{error}");
    assert!(
        error.contains("joining the consumer group failed"),
        "{error}"
    );
    s.teardown().await.unwrap();
    tokio::task::spawn_blocking(move || drop(other))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tansu 0.6 keeps an emptied group's protocol: when the last member leaves, its group moves to Forming with the protocol name kept (leave in tansu-broker's coordinator/group/administrator.rs), so every later member that does not offer cooperative-sticky is refused with InconsistentGroupProtocol, and the retrying source never joins"]
async fn retry_group_join_errors_true_joins_once_the_refusing_member_has_left() {
    if !broker() {
        return;
    }
    let name = topic("join", 1).await;
    let group = unique("g");
    let other = cooperative_member(&group, &name);
    let s = member("p:in", &name, &group, &[("retryGroupJoinErrors", "true")]);
    s.open().await.unwrap();
    write(&[("topic", &name)], &numbered(3)).await;
    tokio::task::spawn_blocking(move || {
        other.unsubscribe();
        drop(other);
    })
    .await
    .unwrap();
    let records = read_n(&*s, 3).await;
    assert_eq!(records.len(), 3);
    s.teardown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// What the connectors send on the wire: a private broker behind a proxy that keeps
// the requests.

/// One Kafka request a client sent: API key and version, client id and the body after
/// the header's client id.
struct Request {
    key: i16,
    version: i16,
    client_id: String,
    body: Vec<u8>,
}

/// API keys of the requests the tests look for.
const PRODUCE: i16 = 0;
const SASL_HANDSHAKE: i16 = 17;
const API_VERSIONS: i16 = 18;
const INIT_PRODUCER_ID: i16 = 22;
const JOIN_GROUP: i16 = 11;
const SASL_AUTHENTICATE: i16 = 36;

/// A TCP proxy on 127.0.0.1:`listen` forwarding to 127.0.0.1:`upstream`, keeping
/// what clients send on each connection.
struct Recorder {
    connections: Arc<std::sync::Mutex<Vec<Sent>>>,
}

/// What a client sent on one connection.
type Sent = Arc<std::sync::Mutex<Vec<u8>>>;

impl Recorder {
    fn start(listen: u16, upstream: u16) -> Self {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        let listener = TcpListener::bind(("127.0.0.1", listen)).unwrap();
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&connections);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
                kept.lock().unwrap().push(Arc::clone(&sent));
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf) {
                        sent.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(Shutdown::Both);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                });
            }
        });
        Self { connections }
    }

    /// The requests of each connection so far, in order.
    fn connections(&self) -> Vec<Vec<Request>> {
        let connections = self.connections.lock().unwrap();
        connections
            .iter()
            .map(|sent| parse_requests(&sent.lock().unwrap()))
            .collect()
    }

    /// Every request of the client `client_id`.
    fn requests_of(&self, client_id: &str) -> Vec<Request> {
        self.connections()
            .into_iter()
            .flatten()
            .filter(|r| r.client_id == client_id)
            .collect()
    }
}

fn parse_requests(mut bytes: &[u8]) -> Vec<Request> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let size = i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        if bytes.len() < 4 + size || size < 10 {
            break;
        }
        let frame = &bytes[4..4 + size];
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let id_len = i16::from_be_bytes([frame[8], frame[9]]);
        let id_len = usize::try_from(id_len).unwrap_or(0);
        out.push(Request {
            key,
            version,
            client_id: String::from_utf8_lossy(&frame[10..10 + id_len]).into_owned(),
            body: frame[10 + id_len..].to_vec(),
        });
        bytes = &bytes[4 + size..];
    }
    out
}

fn uvarint(bytes: &[u8], mut at: usize) -> (u64, usize) {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let b = bytes[at];
        at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (value, at);
        }
        shift += 7;
    }
}

impl Request {
    /// The `acks` field of a produce request (v3 and later).
    fn acks(&self) -> i16 {
        let b = &self.body;
        let at = if self.version >= 9 {
            // Flexible versions: the header's tagged fields, then a compact nullable
            // transactional id.
            let (_, at) = uvarint(b, 0);
            let (len, at) = uvarint(b, at);
            at + usize::try_from(len.saturating_sub(1)).unwrap()
        } else {
            let len = i16::from_be_bytes([b[0], b[1]]);
            2 + usize::try_from(len).unwrap_or(0)
        };
        i16::from_be_bytes([b[at], b[at + 1]])
    }

    fn contains(&self, needle: &[u8]) -> bool {
        self.body.windows(needle.len()).any(|w| w == needle)
    }
}

/// A private broker whose advertised address is a [`Recorder`] in front of it, so
/// every connection of its clients goes through the recorder, and a new topic `tag`
/// on it; `None` (the test is skipped) when tansu is not installed.
async fn recorded_broker(tag: &str) -> Option<(PrivateBroker, Recorder, String)> {
    let listen = funnel_test_utils::tansu::free_port();
    let Some(broker) = PrivateBroker::start_advertising(listen) else {
        private_broker_missing();
        return None;
    };
    let recorder = Recorder::start(listen, broker.port);
    let name = unique(tag);
    create_topic(&broker.plain_servers(), &name, 1)
        .await
        .unwrap();
    Some((broker, recorder, name))
}

/// Skips a test that needs a private tansu (or fails it under CI).
fn private_broker_missing() {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "tansu is not installed (run scripts/setup-services.sh)"
    );
    eprintln!("skipping: tansu is not installed (run scripts/setup-services.sh)");
}

/// Creates `topic` through the client configuration `config` (TLS, say).
async fn create_topic_with(config: &ClientConfig, topic: &str, partitions: i32) {
    use funnel_connectors::kafka::rdkafka::admin::{
        AdminClient, AdminOptions, NewTopic, TopicReplication,
    };
    use funnel_connectors::kafka::rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// Writes `records` to `topic` through the connectors' settings `pairs` (servers,
/// TLS, SASL...) and reads them back with a source of the same settings: the values
/// read, in order.
async fn round_trip(pairs: &[(&str, &str)], topic: &str, records: &[Record]) -> Vec<Bytes> {
    let mut out = pairs.to_vec();
    out.extend_from_slice(&[("topic", topic), ("compression", "none")]);
    let acks = write_with(&out, records).await;
    assert!(acks.iter().all(|a| a.error.is_none()), "{acks:?}");
    let group = unique("g");
    let mut inp = pairs.to_vec();
    inp.extend_from_slice(&[
        ("topics", topic),
        ("groupID", &group),
        ("readFromBeginning", "true"),
    ]);
    let s = source("kafka", "p:in", &settings(&inp), None).unwrap();
    s.open().await.unwrap();
    let got: Vec<Bytes> = read_n(&*s, records.len()).await.iter().map(inner).collect();
    s.teardown().await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_names_every_request_and_acks_sets_the_produce_requests_acks() {
    let Some((broker, recorder, name)) = recorded_broker("acks").await else {
        return;
    };
    let servers = broker.servers();
    for (acks, wire) in [("none", 0), ("one", 1), ("all", -1)] {
        let client = format!("funnel-acks-{acks}");
        let got = write_at(
            &servers,
            &[("topic", &name), ("acks", acks), ("clientID", &client)],
            &numbered(3),
        )
        .await;
        assert!(got.iter().all(|a| a.error.is_none()), "{acks}: {got:?}");
        let requests = recorder.requests_of(&client);
        let produced: Vec<i16> = requests
            .iter()
            .filter(|r| r.key == PRODUCE)
            .map(Request::acks)
            .collect();
        assert!(!produced.is_empty(), "{acks}: no produce request");
        assert!(
            produced.iter().all(|&a| a == wire),
            "acks {acks}: the produce requests ask for {produced:?}"
        );
        // acks: all makes the producer idempotent: it asks for a producer id.
        let idempotent = requests.iter().any(|r| r.key == INIT_PRODUCER_ID);
        assert_eq!(idempotent, acks == "all", "acks {acks}: InitProducerId");
    }
    // Without clientID, Conduit's.
    let default = write_at(&servers, &[("topic", &name)], &numbered(1)).await;
    assert!(default[0].error.is_none());
    assert!(
        !recorder.requests_of("conduit-connector-kafka").is_empty(),
        "the default client id is Conduit's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_instance_id_is_in_every_join_group_request_and_absent_without_it() {
    let Some((broker, recorder, name)) = recorded_broker("static").await else {
        return;
    };
    let servers = broker.servers();
    let acks = write_at(&servers, &[("topic", &name)], &numbered(3)).await;
    assert!(acks.iter().all(|a| a.error.is_none()), "{acks:?}");
    const INSTANCE: &str = "funnel-instance-7";
    for (client, instance) in [("funnel-static", Some(INSTANCE)), ("funnel-dynamic", None)] {
        let group = unique("g");
        let mut pairs = vec![
            ("servers", servers.as_str()),
            ("topics", name.as_str()),
            ("groupID", group.as_str()),
            ("readFromBeginning", "true"),
            ("clientID", client),
        ];
        pairs.extend(instance.map(|i| ("groupInstanceID", i)));
        let s = source("kafka", "p:in", &settings(&pairs), None).unwrap();
        s.open().await.unwrap();
        assert_eq!(read_n(&*s, 3).await.len(), 3, "{client}");
        s.teardown().await.unwrap();
        let joins: Vec<Request> = recorder
            .requests_of(client)
            .into_iter()
            .filter(|r| r.key == JOIN_GROUP)
            .collect();
        assert!(!joins.is_empty(), "{client}: no JoinGroup request");
        for join in &joins {
            // The group instance id exists in JoinGroup from version 5 on.
            assert!(join.version >= 5, "{client}: JoinGroup v{}", join.version);
            assert_eq!(
                join.contains(INSTANCE.as_bytes()),
                instance.is_some(),
                "{client}: the group instance id in JoinGroup v{}",
                join.version
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_shrinks_the_produce_requests_with_gzip_lz4_and_zstd() {
    let Some((broker, recorder, name)) = recorded_broker("codec").await else {
        return;
    };
    let records: Vec<Record> = (0..200)
        .map(|i| Record::new(format!("{i}"), Bytes::from("compressible ".repeat(150))))
        .collect();
    let mut sizes = Vec::new();
    for codec in ["none", "gzip", "lz4", "zstd"] {
        let client = format!("funnel-codec-{codec}");
        let acks = write_at(
            &broker.servers(),
            &[
                ("topic", &name),
                ("compression", codec),
                ("clientID", &client),
            ],
            &records,
        )
        .await;
        assert!(acks.iter().all(|a| a.error.is_none()), "{codec}: {acks:?}");
        let bytes: usize = recorder
            .requests_of(&client)
            .iter()
            .filter(|r| r.key == PRODUCE)
            .map(|r| r.body.len())
            .sum();
        sizes.push((codec, bytes));
    }
    let plain = sizes[0].1;
    assert!(plain > 200 * 1950, "{sizes:?}");
    for &(codec, bytes) in &sizes[1..] {
        assert!(bytes * 5 < plain, "{codec} does not compress: {sizes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tansu 0.6 has no SASL PLAIN: its rsasl is built with the scram-sha-2 and oauthbearer features only, so with --authentication it offers SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER and closes the connection on a PLAIN SaslHandshake (NoSharedMechanism in its log), and without it answers every SaslHandshake with UnsupportedSaslMechanism"]
async fn sasl_plain_authenticates_every_connection_with_the_username_and_password() {
    let Some((mut broker, recorder, name)) = recorded_broker("plain").await else {
        return;
    };
    // From now on the broker requires SASL (tansu takes any PLAIN user and password).
    broker.restart_authenticating(true);
    let servers = broker.servers();
    let pairs = [
        ("servers", servers.as_str()),
        ("clientID", "funnel-sasl-plain"),
        ("saslMechanism", "PLAIN"),
        ("saslUsername", "funnel-user"),
        ("saslPassword", "funnel-secret"),
    ];
    let got = round_trip(&pairs, &name, &numbered(3)).await;
    assert_eq!(got.len(), 3);
    let mut connections = 0;
    for connection in recorder.connections() {
        let ours: Vec<&Request> = connection
            .iter()
            .filter(|r| r.client_id == "funnel-sasl-plain")
            .collect();
        let Some(first) = ours.iter().find(|r| r.key != API_VERSIONS) else {
            continue;
        };
        connections += 1;
        assert_eq!(
            first.key, SASL_HANDSHAKE,
            "the first request after ApiVersions"
        );
        assert!(first.contains(b"PLAIN"));
        let auth = connection
            .iter()
            .find(|r| r.key == SASL_AUTHENTICATE)
            .expect("a SaslAuthenticate request");
        assert!(auth.contains(b"\0funnel-user\0funnel-secret"));
    }
    assert!(
        connections >= 2,
        "the destination's and the source's connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_timeout_fails_the_destination_when_the_broker_is_gone_that_long() {
    let Some(mut broker) = PrivateBroker::start() else {
        private_broker_missing();
        return;
    };
    let name = unique("timeout");
    create_topic(&broker.servers(), &name, 1).await.unwrap();
    let d = destination(
        "kafka",
        "p:out",
        &settings(&[
            ("servers", &broker.servers()),
            ("topic", &name),
            ("compression", "none"),
            ("deliveryTimeout", "2s"),
        ]),
    )
    .unwrap();
    d.open().await.unwrap();
    broker.kill();
    let started = std::time::Instant::now();
    d.write(&numbered(1)).await.unwrap();
    // librdkafka's default would wait 5 minutes; 2 s fails the destination soon.
    let error = tokio::time::timeout(Duration::from_secs(30), d.ack())
        .await
        .expect("the delivery fails within the timeout")
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() >= Duration::from_secs(1), "{error}");
    assert!(error.contains("kafka destination p:out"), "{error}");
    assert!(error.to_lowercase().contains("timed out"), "{error}");
    d.teardown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// SCRAM, with users made by `tansu user create` on a private broker that then requires
// SASL.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_with_the_right_password_reads_and_writes_and_a_wrong_one_fails_open_with_the_reason()
{
    let Some(mut broker) = PrivateBroker::start() else {
        private_broker_missing();
        return;
    };
    let mechanisms = [
        ("SCRAM-SHA-256", "scram256", unique("user")),
        ("SCRAM-SHA-512", "scram512", unique("user")),
    ];
    // tansu makes users only through a broker that does not require SASL yet.
    let plain = format!("tcp://{}", broker.plain_servers());
    for (_, tool, user) in &mechanisms {
        let (made, out) = broker.tool(&[
            "user",
            "create",
            "--broker",
            &plain,
            "--mechanism",
            tool,
            user,
            "right-password",
        ]);
        assert!(made, "tansu user create: {out}");
    }
    let topics = [unique("scram256"), unique("scram512")];
    for name in &topics {
        create_topic(&broker.plain_servers(), name, 1)
            .await
            .unwrap();
    }
    broker.restart_authenticating(true);
    let servers = broker.servers();
    for ((mechanism, _, user), name) in mechanisms.iter().zip(&topics) {
        let mechanism = *mechanism;
        let pairs = [
            ("servers", servers.as_str()),
            ("saslMechanism", mechanism),
            ("saslUsername", user.as_str()),
            ("saslPassword", "right-password"),
        ];
        let got = round_trip(&pairs, name, &numbered(2)).await;
        assert_eq!(got, [Bytes::from("m0"), Bytes::from("m1")], "{mechanism}");

        let wrong = [
            ("servers", servers.as_str()),
            ("saslMechanism", mechanism),
            ("saslUsername", user.as_str()),
            ("saslPassword", "wrong-password"),
        ];
        let error = open_error(&wrong, name)
            .await
            .unwrap_or_else(|| panic!("{mechanism}: a wrong password opens"));
        assert!(error.contains("kafka source p:in"), "{mechanism}: {error}");
        assert!(
            error.to_lowercase().contains("authentication"),
            "{mechanism}: {error}"
        );
        let error = destination_error(&wrong)
            .await
            .unwrap_or_else(|| panic!("{mechanism}: a wrong password opens"));
        assert!(
            error.contains("kafka destination p:out"),
            "{mechanism}: {error}"
        );
        assert!(
            error.to_lowercase().contains("authentication"),
            "{mechanism}: {error}"
        );
    }
}

// ---------------------------------------------------------------------------------
// TLS: a private broker behind a TLS proxy (socat with OpenSSL) that it advertises,
// with a CA made here.

/// A CA, a server certificate it signed for `localhost`, and a client certificate it
/// signed, as PEM text and files.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Funnel kafka test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "funnel-client");
        let client = client.signed_by(&client_key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        Self {
            ca: ca.pem(),
            client_cert: client.pem(),
            client_key: client_key.serialize_pem(),
            dir,
        }
    }

    /// The proxy's files; `mutual`: clients need a certificate of this CA.
    fn proxy(&self, mutual: bool) -> ProxyTls {
        ProxyTls {
            cert: self.dir.path().join("server.pem"),
            key: self.dir.path().join("server.key"),
            client_ca: mutual.then(|| self.dir.path().join("ca.pem")),
        }
    }

    /// A librdkafka client configuration for the proxy (to make topics).
    fn admin(&self, servers: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", servers)
            .set("security.protocol", "ssl")
            .set("ssl.ca.pem", &self.ca)
            .set("ssl.certificate.pem", &self.client_cert)
            .set("ssl.key.pem", &self.client_key);
        config
    }
}

/// A private broker behind a TLS proxy with `pki`'s certificates; `None` (the test is
/// skipped) when tansu is not installed.
fn tls_broker(pki: &Pki, mutual: bool) -> Option<PrivateBroker> {
    let broker = PrivateBroker::start_tls(pki.proxy(mutual));
    if broker.is_none() {
        private_broker_missing();
    }
    broker
}

/// A private broker behind a TLS proxy with `pki`'s certificates, its servers and a new
/// topic `tag` on it; `None` (the test is skipped) when tansu is not installed.
async fn tls_topic(pki: &Pki, mutual: bool, tag: &str) -> Option<(PrivateBroker, String, String)> {
    let broker = tls_broker(pki, mutual)?;
    let servers = broker.servers();
    let name = unique(tag);
    create_topic_with(&pki.admin(&servers), &name, 1).await;
    Some((broker, servers, name))
}

/// The settings of a client of `servers` with TLS on, and `more`.
fn tls_pairs<'a>(servers: &'a str, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![("servers", servers), ("tls.enabled", "true")];
    pairs.extend_from_slice(more);
    pairs
}

/// Opens a source of `pairs` reading `topic`: its error, if it fails.
async fn open_error(pairs: &[(&str, &str)], topic: &str) -> Option<String> {
    let mut all = pairs.to_vec();
    all.push(("topics", topic));
    let s = source("kafka", "p:in", &settings(&all), None).unwrap();
    let result = s.open().await;
    s.teardown().await.unwrap();
    result.err().map(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_ca_cert_reads_and_writes_and_without_it_the_certificate_is_refused() {
    let pki = Pki::new();
    let Some((_broker, servers, name)) = tls_topic(&pki, false, "tls").await else {
        return;
    };
    let tls = tls_pairs(&servers, &[("caCert", &pki.ca)]);
    let got = round_trip(&tls, &name, &numbered(3)).await;
    assert_eq!(got.len(), 3);

    // The system CAs do not know this CA.
    let error = open_error(&tls_pairs(&servers, &[]), &name)
        .await
        .expect("a certificate of an unknown CA is refused");
    assert!(error.contains("kafka source p:in"), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // Without TLS the proxy does not answer the Kafka protocol.
    let error = open_error(&[("servers", &servers)], &name)
        .await
        .expect("a plain connection to a TLS listener fails");
    assert!(
        error.contains("cannot get the cluster's metadata"),
        "{error}"
    );
}

/// Opens a destination of `pairs` (and tears it down): its error, if it fails.
async fn destination_error(pairs: &[(&str, &str)]) -> Option<String> {
    let d = destination("kafka", "p:out", &settings(pairs)).unwrap();
    let result = d.open().await;
    d.teardown().await.unwrap();
    result.err().map(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_the_client_does_not_trust_fails_open_naming_the_certificate() {
    // Only the TLS handshake is at stake: a port that presents a certificate of a CA
    // made here, and speaks no Kafka (the handshake fails before any request).
    let ca = funnel_test_utils::tls::TestCa::new();
    let port = funnel_test_utils::tls::TlsPort::start(&ca).await;
    let servers = format!("127.0.0.1:{}", port.address.port());
    let other = funnel_test_utils::tls::TestCa::new();
    let system_cas = [("servers", servers.as_str()), ("tls.enabled", "true")];
    let another_ca = [
        ("servers", servers.as_str()),
        ("tls.enabled", "true"),
        ("caCert", other.ca_pem.as_str()),
    ];
    let (source_system, source_other, destination_system) = tokio::join!(
        open_error(&system_cas, "t"),
        open_error(&another_ca, "t"),
        destination_error(&system_cas),
    );
    for (what, error, who) in [
        ("source, system CAs", source_system, "kafka source p:in"),
        ("source, another CA", source_other, "kafka source p:in"),
        (
            "destination, system CAs",
            destination_system,
            "kafka destination p:out",
        ),
    ] {
        let error = error.unwrap_or_else(|| panic!("{what}: open succeeds"));
        assert!(error.contains(who), "{what}: {error}");
        assert!(
            error.contains("certificate verify failed"),
            "{what}: {error}"
        );
        assert!(error.contains("`caCert`"), "{what}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_accepts_a_certificate_of_an_unknown_ca() {
    let pki = Pki::new();
    let Some((_broker, servers, name)) = tls_topic(&pki, false, "insecure").await else {
        return;
    };
    let insecure = tls_pairs(&servers, &[("insecureSkipVerify", "true")]);
    let got = round_trip(&insecure, &name, &numbered(2)).await;
    assert_eq!(got.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_reads_and_writes_with_the_client_certificate_and_fails_without_it() {
    let pki = Pki::new();
    let Some((_broker, servers, name)) = tls_topic(&pki, true, "mtls").await else {
        return;
    };
    let mutual = tls_pairs(
        &servers,
        &[
            ("caCert", &pki.ca),
            ("clientCert", &pki.client_cert),
            ("clientKey", &pki.client_key),
        ],
    );
    let got = round_trip(&mutual, &name, &numbered(3)).await;
    assert_eq!(got.len(), 3);

    let error = open_error(&mutual[..3], &name)
        .await
        .expect("the proxy refuses a client without a certificate");
    assert!(error.contains("kafka source p:in"), "{error}");
    assert!(
        error.contains("cannot get the cluster's metadata"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------
// Lag.

/// The `funnel_source_lag_records` series of `component` in `text` (Prometheus
/// exposition): partition label and value.
fn lag_series(text: &str, component: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("funnel_source_lag_records{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        if !labels.contains(&format!("component_id=\"{component}\"")) {
            continue;
        }
        let partition = labels
            .split(',')
            .find_map(|l| l.strip_prefix("partition=\""))
            .unwrap()
            .trim_end_matches('"')
            .to_owned();
        out.insert(partition, value.parse().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_lag_per_partition_counts_the_backlog_and_falls_to_zero_as_records_are_read() {
    if !broker() {
        return;
    }
    use funnel_core::{LagReport, WorkerStats};
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let name = topic("lag", 3).await;
    const BACKLOG: usize = 600;
    write(&[("topic", &name)], &keyed(0..BACKLOG)).await;
    let s = member("p:lag", &name, &unique("g"), &[("sdk.batch.size", "50")]);
    let stats = Arc::new(WorkerStats::default());
    s.report_lag(LagReport::new(
        "lag-test",
        "p:lag",
        Some(Arc::clone(&stats)),
    ));
    s.open().await.unwrap();

    // Nothing read by the engine yet (whatever the reader fetched ahead counts).
    funnel_test_utils::wait_until("the lag is the whole backlog", PATIENCE, || {
        stats.lag_records() == Some(BACKLOG as u64)
    })
    .await;
    let series = lag_series(&metrics.render(), "p:lag");
    assert_eq!(
        series.keys().map(String::as_str).collect::<Vec<_>>(),
        ["0", "1", "2"],
        "one series per partition: {series:?}"
    );
    assert_eq!(series.values().sum::<f64>(), BACKLOG as f64, "{series:?}");
    assert!(
        series.values().all(|&v| v > 0.0),
        "the keys spread the backlog over every partition: {series:?}"
    );

    // Read (not yet acked): the lag falls by what the engine read.
    let first = read_n(&*s, 200).await;
    let left = (BACKLOG - first.len()) as u64;
    funnel_test_utils::wait_until("the lag falls by what was read", PATIENCE, || {
        stats.lag_records() == Some(left)
    })
    .await;
    let rest = read_n(&*s, BACKLOG - first.len()).await;
    let positions: Vec<Position> = first
        .iter()
        .chain(&rest)
        .map(|r| r.position.clone())
        .collect();
    s.ack(&positions).await.unwrap();
    funnel_test_utils::wait_until("the lag is 0 once everything is read", PATIENCE, || {
        stats.lag_records() == Some(0)
    })
    .await;
    let series = lag_series(&metrics.render(), "p:lag");
    assert_eq!(series.len(), 3, "{series:?}");
    assert!(series.values().all(|&v| v == 0.0), "{series:?}");

    // New messages are lag again while nobody reads them.
    write(&[("topic", &name)], &keyed(BACKLOG..BACKLOG + 30)).await;
    funnel_test_utils::wait_until("new messages count as lag", PATIENCE, || {
        stats.lag_records() == Some(30)
    })
    .await;
    s.teardown().await.unwrap();
}
