//! The s3 source and destination against the S3 test server (moto on 127.0.0.1:4566,
//! see `scripts/s3-server.sh`). Each test uses buckets of its own. Without a server
//! the tests are skipped, except under `CI=true`, where a missing server fails them.

#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{Settings, destination, s3, source};
use funnel_core::{Destination, Source};
use funnel_record::{Data, Operation, Position, Record, metadata};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::{ack_n, raw, read_exactly, read_n};
use funnel_test_utils::s3::{TestBucket, available};

/// Listings every 100 ms, so the tests do not wait for the default second.
const POLL: (&str, &str) = ("pollingPeriod", "100ms");

fn settings(pairs: Vec<(String, String)>) -> Settings {
    pairs.into_iter().collect()
}

fn key(record: &Record) -> String {
    match &record.key {
        Some(Data::Raw(bytes)) => String::from_utf8(bytes.to_vec()).unwrap(),
        other => panic!("not a raw key: {other:?}"),
    }
}

fn s3_source(
    bucket: &TestBucket,
    extra: &[(&str, &str)],
    resume: Option<Position>,
) -> Arc<dyn Source> {
    let mut pairs = vec![("prefix", "in/"), POLL];
    pairs.extend_from_slice(extra);
    source("s3", "pipe:in", &settings(bucket.settings(&pairs)), resume).unwrap()
}

fn s3_destination(bucket: &TestBucket, extra: &[(&str, &str)]) -> Arc<dyn Destination> {
    let mut pairs = vec![("prefix", "out/")];
    pairs.extend_from_slice(extra);
    destination("s3", "pipe:out", &settings(bucket.settings(&pairs))).unwrap()
}

/// A bucket of its own for each check; objects are injected under `in/` with keys
/// that sort in injection order.
struct S3Backend {
    bucket: TestBucket,
    next: AtomicU64,
}

impl S3Backend {
    async fn new(tag: &str) -> Self {
        Self {
            bucket: TestBucket::new(tag, true).await,
            next: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl SourceBackend for S3Backend {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        s3_source(&self.bucket, &[("sdk.batch.size", "10")], resume)
    }

    async fn inject(&self, payloads: &[Bytes]) {
        for payload in payloads {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            self.bucket
                .put(&format!("in/{n:08}"), payload.clone())
                .await;
        }
    }

    fn payload(&self, record: &Record) -> Bytes {
        raw(record)
    }
}

#[async_trait]
impl DestinationBackend for S3Backend {
    fn build(&self) -> Arc<dyn Destination> {
        s3_destination(&self.bucket, &[])
    }

    async fn written(&self) -> Vec<Bytes> {
        self.bucket
            .records("out/", |b| b)
            .await
            .iter()
            .map(raw)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_passes_the_source_compliance_suite() {
    if !available().await {
        return;
    }
    run_source_compliance("s3 source", SourceCapabilities::FULL, S3Backend::new)
        .await
        .assert_complete();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_passes_the_destination_compliance_suite() {
    if !available().await {
        return;
    }
    run_destination_compliance(
        "s3 destination",
        DestinationCapabilities::FULL,
        S3Backend::new,
    )
    .await
    .assert_complete();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_objects_with_earlier_keys_that_came_later_and_nothing_acked_again() {
    if !available().await {
        return;
    }
    let bucket = TestBucket::new("restart", false).await;
    for k in ["in/m1", "in/m2", "in/m3"] {
        bucket.put(k, Bytes::from(k.to_owned())).await;
    }
    let first = s3_source(&bucket, &[], None);
    first.open().await.unwrap();
    let records = read_exactly(&*first, 3).await;
    assert!(records.iter().all(|r| r.operation == Operation::Snapshot));
    assert_eq!(
        records.iter().map(key).collect::<Vec<_>>(),
        ["in/m1", "in/m2", "in/m3"]
    );
    // Two acknowledged; the third was read but its position never committed.
    first.teardown().await.unwrap();
    drop(first);
    // New objects sorting before and after the last one read, in the same second.
    bucket.put("in/a", Bytes::from_static(b"in/a")).await;
    bucket.put("in/z", Bytes::from_static(b"in/z")).await;
    let again = s3_source(&bucket, &[], Some(records[1].position.clone()));
    again.open().await.unwrap();
    let got = read_n(&*again, 3).await;
    let mut keys: Vec<String> = got.iter().map(key).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["in/a", "in/m3", "in/z"],
        "exactly what was not committed"
    );
    assert!(
        got.iter().all(|r| r.operation == Operation::Create),
        "{got:?}"
    );
    // And nothing else comes: an object added now is the next record.
    bucket.put("in/b", Bytes::from_static(b"in/b")).await;
    let next = read_exactly(&*again, 1).await;
    assert_eq!(key(&next[0]), "in/b");
    again.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_versioning_an_overwrite_is_an_update_and_a_delete_a_delete_record() {
    if !available().await {
        return;
    }
    let bucket = TestBucket::new("versions", true).await;
    bucket.put("in/a", Bytes::from_static(b"one")).await;
    bucket
        .put("other/x", Bytes::from_static(b"outside the prefix"))
        .await;
    let source = s3_source(&bucket, &[], None);
    source.open().await.unwrap();
    let snapshot = read_exactly(&*source, 1).await;
    assert_eq!(snapshot[0].operation, Operation::Snapshot);
    assert_eq!(raw(&snapshot[0]), "one");
    let meta = &snapshot[0].metadata;
    assert_eq!(meta.get(s3::METADATA_BUCKET), Some(bucket.name.as_str()));
    assert!(meta.get(s3::METADATA_VERSION).is_some(), "{meta:?}");
    assert!(meta.get(s3::METADATA_ETAG).is_some(), "{meta:?}");
    assert_eq!(meta.get(metadata::SOURCE_CONNECTOR_ID), Some("pipe:in"));
    assert!(
        meta.get(metadata::CREATED_AT)
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );

    bucket.put("in/b", Bytes::from_static(b"new")).await;
    let created = read_exactly(&*source, 1).await;
    assert_eq!(
        (key(&created[0]), created[0].operation),
        ("in/b".to_owned(), Operation::Create)
    );
    bucket.put("in/a", Bytes::from_static(b"two")).await;
    let updated = read_exactly(&*source, 1).await;
    assert_eq!(updated[0].operation, Operation::Update);
    assert_eq!(raw(&updated[0]), "two");
    bucket.delete("in/a").await;
    let deleted = read_exactly(&*source, 1).await;
    assert_eq!(deleted[0].operation, Operation::Delete);
    assert_eq!(key(&deleted[0]), "in/a");
    assert_eq!(deleted[0].payload.after, None);
    source.teardown().await.unwrap();

    // A restart from the delete's position reads nothing of this again.
    let again = s3_source(&bucket, &[], Some(deleted[0].position.clone()));
    again.open().await.unwrap();
    bucket.put("in/c", Bytes::from_static(b"after")).await;
    let next = read_exactly(&*again, 1).await;
    assert_eq!(key(&next[0]), "in/c");
    again.teardown().await.unwrap();
}

fn records(n: usize, size: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut payload = vec![b'a' + (i % 26) as u8; size];
            payload[0] = b'#';
            Record::new(Position::from(format!("{i:08}")), payload)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_sixteen_mebibytes_is_uploaded_in_parts_and_acked_after() {
    if !available().await {
        return;
    }
    let bucket = TestBucket::new("multipart", false).await;
    let destination = s3_destination(&bucket, &[]);
    destination.open().await.unwrap();
    // Three 5 MiB records: about 21 MiB of JSON (base64 payloads).
    let batch = records(3, 5 * 1024 * 1024);
    destination.write(&batch).await.unwrap();
    let acks = ack_n(&*destination, 3).await;
    assert!(acks.iter().all(|a| a.error.is_none()));
    let keys = bucket.keys("out/").await;
    assert_eq!(keys.len(), 1, "one object per batch: {keys:?}");
    let written = bucket.records("out/", |b| b).await;
    assert_eq!(written, batch);
    destination.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_objects_hold_the_json_lines_and_end_in_gz() {
    if !available().await {
        return;
    }
    let bucket = TestBucket::new("gzip", false).await;
    let destination = s3_destination(&bucket, &[("compression", "gzip")]);
    destination.open().await.unwrap();
    let batch = records(100, 100);
    destination.write(&batch[..40]).await.unwrap();
    destination.write(&batch[40..]).await.unwrap();
    ack_n(&*destination, 100).await;
    let keys = bucket.keys("out/").await;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.ends_with(".json.gz")), "{keys:?}");
    let gunzip = |bytes: Bytes| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        Bytes::from(out)
    };
    assert_eq!(bucket.records("out/", gunzip).await, batch);
    destination.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_and_an_unreachable_endpoint_fail_open_naming_connector_and_bucket() {
    if !available().await {
        return;
    }
    let bucket = TestBucket::new("missing", false).await;
    let missing = [("aws.bucket", "ft-no-such-bucket-here")];
    let error = s3_source(&bucket, &missing, None).open().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("s3 source pipe:in")
            && text.contains("ft-no-such-bucket-here")
            && text.contains("NoSuchBucket"),
        "{text}"
    );
    assert_eq!(error.kind(), funnel_core::ErrorKind::Config, "{text}");
    let error = s3_destination(&bucket, &missing).open().await.unwrap_err();
    assert!(
        error.to_string().contains("s3 destination pipe:out")
            && error.to_string().contains("ft-no-such-bucket-here"),
        "{error}"
    );

    // Nothing listens on port 9 of the loopback address.
    let nowhere = [("aws.endpoint", "http://127.0.0.1:9")];
    let started = Instant::now();
    let error = s3_destination(&bucket, &nowhere).open().await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("s3 destination pipe:out")
            && text.contains(&bucket.name)
            && text.contains("127.0.0.1:9"),
        "{text}"
    );
    assert!(
        !error.is_fatal(),
        "a store that is down is transient: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_fail_open_as_a_configuration_error_naming_the_settings() {
    if !available().await {
        return;
    }
    let bucket = TestBucket::new("creds", false).await;
    // The second test server checks credentials and knows none.
    let refused = [
        ("aws.endpoint", "http://127.0.0.1:4567"),
        ("aws.accessKeyId", "AKIANOTAKEY"),
    ];
    for error in [
        s3_source(&bucket, &refused, None).open().await.unwrap_err(),
        s3_destination(&bucket, &refused).open().await.unwrap_err(),
    ] {
        let text = error.to_string();
        assert!(
            text.contains("pipe:")
                && text.contains(&bucket.name)
                && text.contains("InvalidAccessKeyId")
                && text.contains("check aws.accessKeyId, aws.secretAccessKey and aws.region"),
            "{text}"
        );
        assert_eq!(error.kind(), funnel_core::ErrorKind::Config, "{text}");
    }
}
