//! The redis source and destination against the real server on 127.0.0.1:6379 (see
//! `scripts/redis-server.sh`). Each test uses its own keys, deleted at the end. Without
//! a server the tests are skipped, except under `CI=true`, where a missing server fails
//! them.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{Settings, destination, source};
use funnel_core::settings_of as settings;
use funnel_core::{Destination, Source};
use funnel_record::{Data, Metadata, Position, Record, metadata};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities, Support,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::{
    ack_n, destination_open_error, nack_error, read_n, source_open_error,
};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

const URL: &str = "redis://127.0.0.1:6379/";
const PATIENCE: Duration = Duration::from_secs(30);

/// A connection, or `None` (skip) without a server.
async fn connect() -> Option<MultiplexedConnection> {
    let result = async {
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
        redis::Client::open(URL)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
    .await;
    match result {
        Ok(con) => Some(con),
        Err(e) => {
            funnel_test_utils::skip_without(&format!("Redis is not reachable at {URL}: {e}"));
            None
        }
    }
}

/// A key of its own (`ft:<tag>:<pid>:<nanos>`), deleted when dropped.
struct Key {
    name: String,
    con: MultiplexedConnection,
}

impl Key {
    async fn new(tag: &str) -> Option<Self> {
        let con = connect().await?;
        Some(Self {
            name: funnel_test_utils::name::unique("ft", tag, ':'),
            con,
        })
    }

    fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut s = settings(&[
            ("redis.host", "127.0.0.1"),
            ("redis.key", &self.name),
            ("mode", "stream"),
        ]);
        s.extend(settings(extra));
        s
    }

    /// XADDs one entry per payload (field `payload`).
    async fn add(&self, payloads: &[Bytes]) {
        xadd(self.con.clone(), &self.name, payloads).await;
    }

    /// How many entries of the stream are pending in consumer group `group`.
    async fn pending(&self, group: &str) -> i64 {
        let pending: (i64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
            .arg(&self.name)
            .arg(group)
            .query_async(&mut self.con.clone())
            .await
            .unwrap();
        pending.0
    }

    /// Every entry: ID and fields.
    async fn entries(&self) -> Vec<(String, Vec<(String, Bytes)>)> {
        let reply: redis::streams::StreamRangeReply =
            self.con.clone().xrange_all(&self.name).await.unwrap();
        reply
            .ids
            .into_iter()
            .map(|e| {
                let mut fields: Vec<(String, Bytes)> = e
                    .map
                    .into_iter()
                    .map(|(k, v)| match v {
                        redis::Value::BulkString(b) => (k, Bytes::from(b)),
                        other => panic!("field {k} is {other:?}"),
                    })
                    .collect();
                fields.sort();
                (e.id, fields)
            })
            .collect()
    }
}

/// XADDs one entry per payload (field `payload`) to stream `name`.
async fn xadd(mut con: MultiplexedConnection, name: &str, payloads: &[Bytes]) {
    let mut pipe = redis::pipe();
    for p in payloads {
        pipe.cmd("XADD")
            .arg(name)
            .arg("*")
            .arg("payload")
            .arg(p.as_ref());
    }
    let _: () = pipe.query_async(&mut con).await.unwrap();
}

impl Drop for Key {
    fn drop(&mut self) {
        if let Ok(mut con) = redis::Client::open(URL).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&self.name).query(&mut con);
        }
    }
}

/// The `payload` field of a source record's JSON payload.
fn payload(record: &Record) -> Bytes {
    let Some(Data::Raw(json)) = &record.payload.after else {
        panic!("expected raw data, got {:?}", record.payload.after)
    };
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).unwrap();
    Bytes::from(fields["payload"].as_str().unwrap().to_owned())
}

struct StreamBackend {
    key: Key,
    extra: Vec<(&'static str, &'static str)>,
}

impl StreamBackend {
    /// A backend with a new key tagged `tag`, its source built with `extra` settings.
    async fn new(tag: &str, extra: &[(&'static str, &'static str)]) -> Self {
        Self {
            key: Key::new(tag).await.unwrap(),
            extra: extra.to_vec(),
        }
    }
}

#[async_trait]
impl SourceBackend for StreamBackend {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        let mut extra = self.extra.clone();
        extra.push(("sdk.batch.size", "10"));
        source("redis", "pipe:redis", &self.key.settings(&extra), resume).unwrap()
    }

    async fn inject(&self, payloads: &[Bytes]) {
        self.key.add(payloads).await;
    }

    fn payload(&self, record: &Record) -> Bytes {
        payload(record)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_source_passes_the_source_compliance_suite() {
    if connect().await.is_none() {
        return;
    }
    run_source_compliance("redis source (XREAD)", SourceCapabilities::FULL, |_| {
        StreamBackend::new("src", &[])
    })
    .await
    .assert_complete();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_group_source_passes_the_source_compliance_suite() {
    if connect().await.is_none() {
        return;
    }
    let capabilities = SourceCapabilities {
        input: Support::Yes,
        exact_resume: Support::No(
            "a consumer group resumes from its pending entries: an entry committed but not \
             yet XACKed when the source stopped comes again (at least once, as the redis \
             docs say)",
        ),
    };
    let group = [("stream.group", "funnel"), ("stream.consumer", "c1")];
    run_source_compliance("redis source (consumer group)", capabilities, |_| {
        StreamBackend::new("grp", &group)
    })
    .await
    .assert_complete();
}

#[async_trait]
impl DestinationBackend for StreamBackend {
    fn build(&self) -> Arc<dyn Destination> {
        destination("redis", "pipe:out", &self.key.settings(&[])).unwrap()
    }

    async fn written(&self) -> Vec<Bytes> {
        self.key
            .entries()
            .await
            .into_iter()
            .map(|(_, fields)| {
                assert_eq!(fields.len(), 1, "{fields:?}");
                assert_eq!(fields[0].0, "data");
                fields[0].1.clone()
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_destination_passes_the_destination_compliance_suite() {
    if connect().await.is_none() {
        return;
    }
    run_destination_compliance("redis destination", DestinationCapabilities::FULL, |_| {
        StreamBackend::new("dst", &[])
    })
    .await
    .assert_complete();
}

fn numbered(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("entry {i:06}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_entries_added_by_a_redis_client_are_read_once_in_order_with_their_metadata()
{
    let Some(key) = Key::new("fifty").await else {
        return;
    };
    let payloads = numbered(50_000);
    let source = source("redis", "pipe:fifty", &key.settings(&[]), None).unwrap();
    source.open().await.unwrap();
    key.add(&payloads[..25_000]).await;
    let adder = {
        let (name, con, rest) = (
            key.name.clone(),
            key.con.clone(),
            payloads[25_000..].to_vec(),
        );
        tokio::spawn(async move {
            for chunk in rest.chunks(500) {
                xadd(con.clone(), &name, chunk).await;
            }
        })
    };
    let records = read_n(&*source, 50_000).await;
    adder.await.unwrap();
    assert_eq!(records.len(), 50_000);
    let got: Vec<Bytes> = records.iter().map(payload).collect();
    assert!(got == payloads, "entries came out of order or changed");
    let first = &records[0];
    let id = first.metadata.get("redis.id").unwrap();
    assert_eq!(first.position, Position::from(id.to_owned()));
    assert_eq!(
        first.metadata.get(metadata::COLLECTION),
        Some(key.name.as_str())
    );
    let ms: i64 = id.split('-').next().unwrap().parse().unwrap();
    assert_eq!(
        first.metadata.get(metadata::CREATED_AT),
        Some((i128::from(ms) * 1_000_000).to_string().as_str())
    );
    assert_eq!(first.key, Some(Data::Raw(Bytes::from(key.name.clone()))));
    source.teardown().await.unwrap();
}

/// Reads `n` records from `source`, one read at a time, and returns each read's records.
async fn reads_of(source: &dyn Source, n: usize) -> Vec<Vec<Record>> {
    let mut reads = Vec::new();
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got < n {
        let read = tokio::time::timeout_at(deadline, source.read())
            .await
            .unwrap_or_else(|_| panic!("only {got} of {n} records in time"))
            .unwrap()
            .unwrap();
        got += read.len();
        reads.push(read);
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reads_return_at_most_the_batch_size_in_order_with_and_without_a_group() {
    for group in [None, Some("brokerperf-batches")] {
        let Some(key) = Key::new("batches").await else {
            return;
        };
        let payloads = numbered(100);
        key.add(&payloads).await;
        let mut extra = vec![("sdk.batch.size", "7")];
        if let Some(group) = group {
            extra.push(("stream.group", group));
        }
        let source = source("redis", "pipe:batches", &key.settings(&extra), None).unwrap();
        source.open().await.unwrap();
        let reads = reads_of(&*source, 100).await;
        let sizes: Vec<usize> = reads.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().all(|&n| n <= 7),
            "{group:?}: read sizes {sizes:?}"
        );
        assert!(sizes.contains(&7), "{group:?}: read sizes {sizes:?}");
        let got: Vec<Bytes> = reads.iter().flatten().map(payload).collect();
        assert!(
            got == payloads,
            "{group:?}: entries came out of order or changed"
        );
        source.teardown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_source_acks_only_released_entries_and_claims_those_a_dead_consumer_left() {
    let Some(key) = Key::new("claim").await else {
        return;
    };
    key.add(&numbered(4)).await;
    // Consumer `name` of group g, claiming entries idle for `claim_idle`.
    let consumer = |name, claim_idle| {
        key.settings(&[
            ("stream.group", "g"),
            ("stream.consumer", name),
            ("stream.claimIdle", claim_idle),
        ])
    };
    let dead = source("redis", "pipe:a", &consumer("dead", "0"), None).unwrap();
    dead.open().await.unwrap();
    let records = read_n(&*dead, 4).await;
    dead.ack(&[records[0].position.clone()]).await.unwrap();
    drop(dead);
    // One XACKed, three pending with the dead consumer.
    assert_eq!(key.pending("g").await, 3);
    let alive = source("redis", "pipe:b", &consumer("alive", "100ms"), None).unwrap();
    alive.open().await.unwrap();
    let claimed = read_n(&*alive, 3).await;
    let got: Vec<Bytes> = claimed.iter().map(payload).collect();
    assert_eq!(got, numbered(4)[1..]);
    let positions: Vec<Position> = claimed.iter().map(|r| r.position.clone()).collect();
    alive.ack(&positions).await.unwrap();
    alive.teardown().await.unwrap();
    assert_eq!(key.pending("g").await, 0, "everything released was XACKed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_messages_published_while_subscribed_are_read() {
    let Some(key) = Key::new("chan").await else {
        return;
    };
    let s = key.settings(&[("mode", "pubsub")]);
    let source = source("redis", "pipe:chan", &s, None).unwrap();
    source.open().await.unwrap();
    let mut con = key.con.clone();
    // Publish until the subscription is up, then a known message.
    let mut got = Vec::new();
    let start = std::time::Instant::now();
    while got.is_empty() {
        assert!(
            start.elapsed() < PATIENCE,
            "the subscription never received a message"
        );
        let _: i64 = con.publish(&key.name, "hello").await.unwrap();
        if let Ok(batch) = tokio::time::timeout(Duration::from_millis(200), source.read()).await {
            got = batch.unwrap().unwrap();
        }
    }
    assert_eq!(
        got[0].payload.after,
        Some(Data::Raw(Bytes::from_static(b"hello")))
    );
    assert_ne!(got[0].position, Position::from(""));
    source.teardown().await.unwrap();
}

fn record(position: &str, after: &str, table: Option<&str>) -> Record {
    let mut r = Record::new(
        Position::from(position.to_owned()),
        Bytes::from(after.to_owned()),
    );
    let mut m = Metadata::new();
    if let Some(t) = table {
        m.insert("table", t);
    }
    r.metadata = m;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_records_are_added_as_entries_json_objects_as_fields_and_max_len_trims() {
    let Some(key) = Key::new("dfifty").await else {
        return;
    };
    let d = destination("redis", "pipe:d", &key.settings(&[])).unwrap();
    d.open().await.unwrap();
    let records: Vec<Record> = (0..50_000)
        .map(|i| {
            record(
                &format!("{i}"),
                &format!("{{\"n\":{i},\"s\":\"x{i}\"}}"),
                None,
            )
        })
        .collect();
    for chunk in records.chunks(1000) {
        d.write(chunk).await.unwrap();
    }
    let got = ack_n(&*d, 50_000).await;
    assert!(got.iter().all(|a| a.error.is_none()));
    d.teardown().await.unwrap();
    let entries = key.entries().await;
    assert_eq!(entries.len(), 50_000);
    assert_eq!(
        entries[49_999].1,
        [
            ("n".to_owned(), Bytes::from("49999")),
            ("s".to_owned(), Bytes::from("x49999"))
        ]
    );

    let trimmed = Key::new("trim").await.unwrap();
    let d = destination(
        "redis",
        "pipe:t",
        &trimmed.settings(&[("stream.maxLen", "100")]),
    )
    .unwrap();
    d.open().await.unwrap();
    d.write(&records[..5000]).await.unwrap();
    ack_n(&*d, 5000).await;
    d.teardown().await.unwrap();
    let left = trimmed.entries().await.len();
    assert!(
        (100..1000).contains(&left),
        "{left} entries after MAXLEN ~ 100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_template_routes_each_record_and_a_refused_record_is_nacked_alone() {
    let Some(users) = Key::new("users").await else {
        return;
    };
    let template = format!("{}:{{{{ .Metadata.table }}}}", users.name);
    let s = settings(&[
        ("redis.host", "127.0.0.1"),
        ("mode", "stream"),
        ("redis.key", &template),
    ]);
    let d = destination("redis", "pipe:tmpl", &s).unwrap();
    d.open().await.unwrap();
    // A string key: XADD to it is refused.
    let taken = format!("{}:taken", users.name);
    let _: () = users.con.clone().set(&taken, "x").await.unwrap();
    d.write(&[
        record("1", "a", Some("orders")),
        record("2", "b", None),
        record("3", "c", Some("taken")),
        record("4", "d", Some("orders")),
    ])
    .await
    .unwrap();
    let got = ack_n(&*d, 4).await;
    assert!(got[0].error.is_none() && got[3].error.is_none());
    let error = nack_error(&got[1]);
    assert!(error.contains("redis.key"), "{error}");
    let error = nack_error(&got[2]);
    assert!(error.contains("WRONGTYPE"), "{:?}", got[2]);
    d.teardown().await.unwrap();
    let orders: redis::streams::StreamRangeReply = users
        .con
        .clone()
        .xrange_all(format!("{}:orders", users.name))
        .await
        .unwrap();
    assert_eq!(orders.ids.len(), 2);
    let mut con = users.con.clone();
    let _: () = con
        .del(&[format!("{}:orders", users.name), taken])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_wrong_password_and_a_key_of_another_type_fail_with_clear_messages() {
    let Some(key) = Key::new("bad").await else {
        return;
    };
    let unreachable = settings(&[
        ("redis.host", "127.0.0.1"),
        ("redis.port", "1"),
        ("redis.key", "k"),
        ("mode", "stream"),
    ]);
    let error = source_open_error(&*source("redis", "p:in", &unreachable, None).unwrap()).await;
    assert!(
        error.contains("redis source p:in") && error.contains("127.0.0.1:1"),
        "{error}"
    );

    let wrong = key.settings(&[("redis.password", "not-the-password")]);
    let error = destination_open_error(&*destination("redis", "p:out", &wrong).unwrap()).await;
    assert!(
        error.contains("redis destination p:out") && error.contains("127.0.0.1:6379"),
        "{error}"
    );

    let _: () = key.con.clone().set(&key.name, "a string").await.unwrap();
    let error =
        source_open_error(&*source("redis", "p:in", &key.settings(&[]), None).unwrap()).await;
    assert!(
        error.contains(&key.name) && error.contains("string"),
        "{error}"
    );
}

fn keyed(key: &str, operation: funnel_record::Operation, after: &str) -> Record {
    let mut r = record(key, after, None);
    r.key = Some(Data::Raw(Bytes::from(key.to_owned())));
    r.operation = operation;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyvalue_mode_sets_updates_and_deletes_the_key_of_each_record_in_order() {
    use funnel_record::Operation::{Create, Delete, Update};
    let Some(key) = Key::new("kv").await else {
        return;
    };
    let prefix = format!("{}:", key.name);
    let d = destination(
        "redis",
        "pipe:kv",
        &settings(&[
            ("redis.host", "127.0.0.1"),
            ("mode", "keyvalue"),
            ("redis.key", &prefix),
        ]),
    )
    .unwrap();
    d.open().await.unwrap();
    let mut records: Vec<Record> = (0..1000)
        .map(|i| keyed(&format!("k{i}"), Create, &format!("v{i}")))
        .collect();
    records.extend((0..500).map(|i| keyed(&format!("k{i}"), Update, &format!("w{i}"))));
    records.extend((500..1000).map(|i| keyed(&format!("k{i}"), Delete, "")));
    let mut keyless = record("none", "no key", None);
    keyless.key = None;
    records.insert(1200, keyless);
    for chunk in records.chunks(500) {
        d.write(chunk).await.unwrap();
    }
    let acks = ack_n(&*d, records.len()).await;
    assert!(
        acks[1200].error.is_some(),
        "a record without a key is nacked"
    );
    assert_eq!(acks.iter().filter(|a| a.error.is_none()).count(), 2000);
    d.teardown().await.unwrap();

    let mut con = key.con.clone();
    let updated: Option<String> = con.get(format!("{prefix}k7")).await.unwrap();
    assert_eq!(updated.as_deref(), Some("w7"));
    let deleted: Option<String> = con.get(format!("{prefix}k700")).await.unwrap();
    assert_eq!(deleted, None);
    let live: Vec<String> = con.keys(format!("{prefix}*")).await.unwrap();
    assert_eq!(live.len(), 500);
    let _: () = con.del(live).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyvalue_mode_with_hash_values_stores_exactly_the_fields_of_the_last_write() {
    use funnel_record::Operation::{Create, Delete, Update};
    let Some(key) = Key::new("kvhash").await else {
        return;
    };
    let d = destination(
        "redis",
        "pipe:kvh",
        &settings(&[
            ("redis.host", "127.0.0.1"),
            ("mode", "keyvalue"),
            ("keyvalue.valueType", "hash"),
        ]),
    )
    .unwrap();
    d.open().await.unwrap();
    let other = format!("{}:other", key.name);
    d.write(&[
        keyed(&key.name, Create, r#"{"a":"1","b":"2"}"#),
        keyed(&key.name, Update, r#"{"a":"3"}"#),
        keyed(&other, Create, "plain"),
        keyed(&other, Delete, ""),
    ])
    .await
    .unwrap();
    assert!(ack_n(&*d, 4).await.iter().all(|a| a.error.is_none()));
    d.teardown().await.unwrap();
    let mut con = key.con.clone();
    let fields: std::collections::BTreeMap<String, String> = con.hgetall(&key.name).await.unwrap();
    assert_eq!(
        fields,
        std::collections::BTreeMap::from([("a".to_owned(), "3".to_owned())])
    );
    let exists: bool = con.exists(&other).await.unwrap();
    assert!(!exists);
}
