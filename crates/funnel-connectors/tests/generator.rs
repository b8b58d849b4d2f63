//! The generator source, through the public registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use funnel_connectors::source;
use funnel_core::settings_of as settings;
use funnel_core::{Retry, Source};
use funnel_record::{Data, Operation, Position, Record, Value};
use funnel_test_utils::compliance::{
    SourceBackend, SourceCapabilities, Support, run_source_compliance,
};

/// A generator built from `pairs`, resuming from `resume`, not opened.
fn built(pairs: &[(&str, &str)], resume: Option<&str>) -> Arc<dyn Source> {
    source(
        "generator",
        "pipe:gen",
        &settings(pairs),
        resume.map(Position::from),
    )
    .unwrap()
}

/// Asserts a generator built from `pairs` (resuming from `resume`) fails to open with
/// a fatal error mentioning `mention`.
async fn assert_open_fails_for_good(pairs: &[(&str, &str)], resume: Option<&str>, mention: &str) {
    let source = built(pairs, resume);
    let error = source.open().await.unwrap_err();
    assert_eq!(error.retry(), Retry::Fatal);
    assert!(error.to_string().contains(mention), "{error}");
}

async fn open(pairs: &[(&str, &str)], resume: Option<&str>) -> Arc<dyn Source> {
    let source = built(pairs, resume);
    source.open().await.unwrap();
    source
}

/// Reads until the source is exhausted; fails after `limit` records.
async fn read_all(source: &dyn Source, limit: usize) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        match source.read().await {
            Ok(Some(batch)) => {
                assert!(!batch.is_empty(), "a read returned no records");
                all.extend(batch);
                assert!(all.len() <= limit, "more than {limit} records");
            }
            Ok(None) => return all,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn positions(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.position.to_string()).collect()
}

fn numbers(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|n| n.to_string()).collect()
}

fn structured(data: Option<&Data>) -> &funnel_record::StructuredData {
    match data {
        Some(Data::Structured(map)) => map,
        other => panic!("expected structured data, got {other:?}"),
    }
}

#[tokio::test]
async fn generator_honours_record_count_and_then_reports_exhaustion() {
    let source = open(
        &[
            ("format.type", "structured"),
            ("recordCount", "25"),
            ("sdk.batch.size", "10"),
        ],
        None,
    )
    .await;
    let records = read_all(&*source, 25).await;
    assert_eq!(records.len(), 25);
    // Exhaustion is permanent.
    assert!(source.read().await.unwrap().is_none());
}

#[tokio::test]
async fn generator_reads_batches_of_sdk_batch_size() {
    let source = open(
        &[("format.type", "structured"), ("sdk.batch.size", "7")],
        None,
    )
    .await;
    assert_eq!(source.read().await.unwrap().expect("a batch").len(), 7);
    let default = open(&[("format.type", "structured")], None).await;
    assert_eq!(default.read().await.unwrap().expect("a batch").len(), 1000);
}

#[tokio::test]
async fn generator_positions_run_from_one_to_record_count() {
    let source = open(&[("format.type", "raw"), ("recordCount", "12")], None).await;
    let records = read_all(&*source, 12).await;
    assert_eq!(positions(&records), numbers(1..=12));
}

#[tokio::test]
async fn generator_resumes_after_the_resumed_position() {
    let source = open(&[("format.type", "raw"), ("recordCount", "12")], Some("8")).await;
    let records = read_all(&*source, 4).await;
    assert_eq!(positions(&records), numbers(9..=12));

    let done = funnel_connectors::source(
        "generator",
        "pipe:gen",
        &settings(&[("format.type", "raw"), ("recordCount", "12")]),
        Some(Position::from("12")),
    )
    .unwrap();
    done.open().await.unwrap();
    assert!(done.read().await.unwrap().is_none());
}

#[tokio::test]
async fn generator_payloads_are_deterministic_per_position() {
    let pairs = [
        ("format.type", "structured"),
        ("format.options.id", "int"),
        ("format.options.name", "string"),
        ("operations", "create,update,delete"),
        ("recordCount", "20"),
    ];
    let first = read_all(&*open(&pairs, None).await, 20).await;
    let resumed = read_all(&*open(&pairs, Some("10")).await, 10).await;
    for (a, b) in first[10..].iter().zip(&resumed) {
        assert_eq!(a.position, b.position);
        assert_eq!(a.operation, b.operation);
        assert_eq!(a.key, b.key);
        assert_eq!(a.payload, b.payload);
    }
}

#[tokio::test]
async fn generator_invalid_resume_position_fails_to_open() {
    assert_open_fails_for_good(
        &[("format.type", "raw")],
        Some("not-a-number"),
        "not-a-number",
    )
    .await;
}

#[tokio::test]
async fn generator_structured_format_emits_the_configured_field_types() {
    let source = open(
        &[
            ("format.type", "structured"),
            ("format.options.id", "int"),
            ("format.options.name", "string"),
            ("format.options.at", "time"),
            ("format.options.ok", "bool"),
            ("format.options.took", "duration"),
            ("recordCount", "50"),
        ],
        None,
    )
    .await;
    let records = read_all(&*source, 50).await;
    for record in &records {
        assert_eq!(record.operation, Operation::Create);
        assert_eq!(record.payload.before, None);
        let map = structured(record.payload.after.as_ref());
        let keys: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["at", "id", "name", "ok", "took"]);
        assert!(matches!(map["id"], Value::Int(n) if n >= 0));
        assert!(matches!(&map["name"], Value::String(s) if !s.is_empty()));
        assert!(matches!(map["at"], Value::Time(t) if t.unix_secs() > 1_700_000_000));
        let json = String::from_utf8(map["at"].to_json()).unwrap();
        assert!(json.starts_with("\"20") && json.ends_with("Z\""), "{json}");
        assert!(matches!(map["ok"], Value::Bool(_)));
        assert!(matches!(map["took"], Value::Int(n) if (0..3_600_000_000_000).contains(&n)));
        assert!(matches!(&record.key, Some(Data::Raw(k)) if !k.is_empty()));
    }
    let distinct: BTreeSet<String> = records
        .iter()
        .map(|r| format!("{:?}", structured(r.payload.after.as_ref())["id"]))
        .collect();
    assert!(distinct.len() > 40, "ids should be random: {distinct:?}");
}

#[tokio::test]
async fn generator_raw_format_emits_the_json_of_a_structured_map() {
    let source = open(
        &[
            ("format.type", "raw"),
            ("format.options.id", "int"),
            ("format.options.name", "string"),
            ("recordCount", "5"),
        ],
        None,
    )
    .await;
    for record in read_all(&*source, 5).await {
        let Some(Data::Raw(bytes)) = &record.payload.after else {
            panic!("expected raw data, got {:?}", record.payload.after);
        };
        let json: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let object = json.as_object().unwrap();
        assert!(object["id"].is_i64() || object["id"].is_u64());
        assert!(object["name"].is_string());
        assert_eq!(object.len(), 2);
    }
}

#[tokio::test]
async fn generator_file_format_reuses_the_file_as_every_payload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.bin");
    let content = vec![b'x'; 1024];
    std::fs::write(&path, &content).unwrap();
    let source = open(
        &[
            ("format.type", "file"),
            ("format.options.path", path.to_str().unwrap()),
            ("recordCount", "3"),
        ],
        None,
    )
    .await;
    let records = read_all(&*source, 3).await;
    assert_eq!(records.len(), 3);
    for record in &records {
        assert_eq!(record.payload.after, Some(Data::raw(content.clone())));
    }
    // The payload is shared, not copied.
    let pointers: BTreeSet<usize> = records
        .iter()
        .map(|r| match &r.payload.after {
            Some(Data::Raw(b)) => b.as_ptr() as usize,
            _ => 0,
        })
        .collect();
    assert_eq!(pointers.len(), 1);
}

#[tokio::test]
async fn generator_with_a_missing_payload_file_fails_to_open() {
    let pairs = [
        ("format.type", "file"),
        ("format.options.path", "/nonexistent/x"),
    ];
    assert_open_fails_for_good(&pairs, None, "/nonexistent/x").await;
}

#[tokio::test]
async fn generator_operations_fill_before_and_after_as_conduit_does() {
    let source = open(
        &[
            ("format.type", "structured"),
            ("format.options.id", "int"),
            ("operations", "create, update,delete,snapshot"),
            ("recordCount", "400"),
        ],
        None,
    )
    .await;
    let records = read_all(&*source, 400).await;
    let mut seen = BTreeSet::new();
    for record in &records {
        let (before, after) = (&record.payload.before, &record.payload.after);
        match record.operation {
            Operation::Create | Operation::Snapshot => {
                assert!(before.is_none() && after.is_some());
            }
            Operation::Update => assert!(before.is_some() && after.is_some()),
            Operation::Delete => assert!(before.is_some() && after.is_none()),
            other => panic!("unexpected operation {other}"),
        }
        seen.insert(record.operation.to_string());
    }
    assert_eq!(
        seen.len(),
        4,
        "every configured operation appears: {seen:?}"
    );

    let only_create = open(&[("format.type", "raw"), ("recordCount", "50")], None).await;
    let records = read_all(&*only_create, 50).await;
    assert!(records.iter().all(|r| r.operation == Operation::Create));
}

#[tokio::test]
async fn generator_collections_set_the_collection_metadata() {
    let source = open(
        &[
            ("collections.users.format.type", "structured"),
            ("collections.users.format.options.id", "int"),
            ("collections.orders.format.type", "raw"),
            ("collections.orders.format.options.total", "int"),
            ("collections.orders.operations", "update"),
            ("recordCount", "200"),
        ],
        None,
    )
    .await;
    let records = read_all(&*source, 200).await;
    let mut collections = BTreeSet::new();
    for record in &records {
        let collection = record.metadata.get("opencdc.collection").unwrap();
        collections.insert(collection.to_owned());
        match collection {
            "users" => {
                assert_eq!(record.operation, Operation::Create);
                assert!(matches!(record.payload.after, Some(Data::Structured(_))));
            }
            "orders" => {
                assert_eq!(record.operation, Operation::Update);
                assert!(matches!(record.payload.after, Some(Data::Raw(_))));
            }
            other => panic!("unexpected collection {other}"),
        }
    }
    assert_eq!(collections.len(), 2);
    // Positions stay one sequence across collections.
    assert_eq!(positions(&records), numbers(1..=200));
}

#[tokio::test]
async fn generator_default_stream_has_no_collection_metadata() {
    let source = open(&[("format.type", "raw"), ("recordCount", "3")], None).await;
    for record in read_all(&*source, 3).await {
        assert_eq!(record.metadata.get("opencdc.collection"), None);
    }
}

#[tokio::test]
async fn generator_metadata_carries_read_time_creation_time_and_connector_id() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let source = open(&[("format.type", "raw"), ("recordCount", "2")], None).await;
    for record in read_all(&*source, 2).await {
        assert_eq!(
            record.metadata.get("conduit.source.connector.id"),
            Some("pipe:gen")
        );
        for key in ["opencdc.readAt", "opencdc.createdAt"] {
            let at: u128 = record.metadata.get(key).unwrap().parse().unwrap();
            assert!(at >= before, "{key} {at} is before {before}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn generator_rate_limits_approximately() {
    let source = open(&[("format.type", "raw"), ("rate", "100")], None).await;
    let start = tokio::time::Instant::now();
    let mut count = 0;
    while start.elapsed() < Duration::from_secs(3) {
        count += source.read().await.unwrap().expect("a batch").len();
    }
    // 100 records a second for 3 seconds, give or take the bucket (10 records).
    assert!(
        (290..=315).contains(&count),
        "read {count} records in 3s at 100/s"
    );
}

#[tokio::test(start_paused = true)]
async fn generator_read_time_is_a_rate_of_one_record_per_read_time() {
    let source = open(&[("format.type", "raw"), ("readTime", "100ms")], None).await;
    let start = tokio::time::Instant::now();
    let mut count = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let batch = source.read().await.unwrap().expect("a batch");
        assert_eq!(batch.len(), 1);
        count += 1;
    }
    assert!(
        (20..=22).contains(&count),
        "read {count} records in 2s at 100ms each"
    );
}

#[tokio::test(start_paused = true)]
async fn generator_read_is_cancel_safe_while_waiting_for_the_rate() {
    let source = open(&[("format.type", "raw"), ("rate", "10")], None).await;
    let mut got = source.read().await.unwrap().expect("a batch");
    // Abandon several reads while they wait for a token.
    for _ in 0..5 {
        let abandoned = tokio::time::timeout(Duration::from_millis(10), source.read()).await;
        assert!(
            abandoned.is_err(),
            "a read finished before its token was due"
        );
    }
    while got.len() < 5 {
        got.extend(source.read().await.unwrap().expect("a batch"));
    }
    assert_eq!(positions(&got[..5]), numbers(1..=5));
}

#[tokio::test(start_paused = true)]
async fn generator_bursts_sleep_then_generate() {
    let source = open(
        &[
            ("format.type", "raw"),
            ("burst.sleepTime", "2s"),
            ("burst.generateTime", "1s"),
            ("rate", "10"),
        ],
        None,
    )
    .await;
    let start = tokio::time::Instant::now();
    let first = source.read().await.unwrap().expect("a batch");
    assert!(!first.is_empty());
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "starts with a sleep phase"
    );
    // Reads during the generate phase [2s, 3s) come at the rate, then the next read
    // waits for the next generate phase at 5s.
    let mut count = first.len();
    loop {
        let batch = source.read().await.unwrap().expect("a batch");
        let at = start.elapsed();
        if at >= Duration::from_secs(3) {
            assert!(
                at >= Duration::from_secs(5),
                "read at {at:?}, during a sleep phase"
            );
            break;
        }
        count += batch.len();
    }
    assert!(
        (9..=12).contains(&count),
        "{count} records in a 1s burst at 10/s"
    );
}

/// The generator for the compliance suite: raw payloads without time fields, so a
/// record is the same every time its position is generated.
struct GeneratorBackend;

impl SourceBackend for GeneratorBackend {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        let settings = settings(&[
            ("format.type", "raw"),
            ("format.options.id", "int"),
            ("format.options.name", "string"),
            ("sdk.batch.size", "4"),
        ]);
        source("generator", "pipe:gen", &settings, resume).unwrap()
    }

    fn payload(&self, record: &Record) -> Bytes {
        match &record.payload.after {
            Some(Data::Raw(bytes)) => bytes.clone(),
            other => panic!("expected raw data, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn generator_passes_the_source_compliance_suite() {
    let capabilities = SourceCapabilities {
        input: Support::No(
            "the generator makes its own records from its settings: there is no input to \
             inject, so no empty or large record can be asked for and a read never waits for \
             input (waiting for its rate is cancel-safe: see \
             generator_read_is_cancel_safe_while_waiting_for_the_rate)",
        ),
        exact_resume: Support::Yes,
    };
    let report =
        run_source_compliance("generator", capabilities, |_| async { GeneratorBackend }).await;
    assert_eq!(report.ran.len(), 4, "{report:?}");
}
