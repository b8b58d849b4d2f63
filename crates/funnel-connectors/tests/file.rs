//! The file source and destination, against real files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{Settings, destination, source};
use funnel_core::settings_of as settings;
use funnel_core::{Destination, Retry, Source};
use funnel_record::{Data, Metadata, Operation, Position, Record};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::{ack_n, read_exactly};

const PATIENCE: Duration = Duration::from_secs(5);

fn path_settings(path: &Path) -> Settings {
    settings(&[("path", path.to_str().unwrap())])
}

/// A temporary directory holding `in.txt` with `text`.
fn input_file(text: impl AsRef<[u8]>) -> (tempfile::TempDir, std::path::PathBuf) {
    temp_file("in.txt", text)
}

/// A temporary directory holding file `name` with `text`.
fn temp_file(name: &str, text: impl AsRef<[u8]>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn source_with(path: &Path, extra: &[(&str, &str)], resume: Option<Position>) -> Arc<dyn Source> {
    let mut pairs = vec![("path", path.to_str().unwrap())];
    pairs.extend_from_slice(extra);
    source("file", "p:in", &settings(&pairs), resume).unwrap()
}

async fn open_source(path: &Path, resume: Option<Position>) -> Arc<dyn Source> {
    let source = source_with(path, &[], resume);
    source.open().await.unwrap();
    source
}

async fn open_destination(path: &Path) -> Arc<dyn Destination> {
    let destination = destination("file", "p:out", &path_settings(path)).unwrap();
    destination.open().await.unwrap();
    destination
}

/// Writes record `1` (`x`) with a destination on `path`, then tears it down; what the
/// file holds then.
async fn write_one(path: &Path) -> String {
    let destination = open_destination(path).await;
    destination.write(&[record("1", "x")]).await.unwrap();
    ack_n(&*destination, 1).await;
    destination.teardown().await.unwrap();
    std::fs::read_to_string(path).unwrap()
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn record(position: &str, after: &str) -> Record {
    let mut record = Record::new(position, after.as_bytes().to_vec());
    record.metadata = [("a", "b")].into_iter().collect::<Metadata>();
    record
}

fn lines(records: &[Record]) -> Vec<(String, String, String)> {
    records
        .iter()
        .map(|r| {
            let key = match &r.key {
                Some(Data::Raw(k)) => String::from_utf8(k.to_vec()).unwrap(),
                other => panic!("key {other:?}"),
            };
            let line = match &r.payload.after {
                Some(Data::Raw(l)) => String::from_utf8(l.to_vec()).unwrap(),
                other => panic!("payload {other:?}"),
            };
            (offset(&r.position), key, line)
        })
        .collect()
}

/// The byte offset a file source position holds, as decimal text.
fn offset(position: &Position) -> String {
    let text = String::from_utf8(position.as_bytes().to_vec()).unwrap();
    let fields: Vec<&str> = text.split(':').collect();
    assert_eq!(fields.len(), 7, "not a file position: {text}");
    u64::from_str_radix(fields[2], 16).unwrap().to_string()
}

/// The payloads of `records`, as text.
fn texts(records: &[Record]) -> Vec<String> {
    lines(records)
        .into_iter()
        .map(|(_, _, line)| line)
        .collect()
}

fn triples(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test]
async fn file_destination_writes_exact_opencdc_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let destination = open_destination(&path).await;
    destination
        .write(&[record("1", "hello"), record("2", "world")])
        .await
        .unwrap();
    ack_n(&*destination, 2).await;
    let content = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        content,
        "{\"position\":\"MQ==\",\"operation\":\"create\",\"metadata\":{\"a\":\"b\"},\"key\":null,\
         \"payload\":{\"before\":null,\"after\":\"aGVsbG8=\"}}\n\
         {\"position\":\"Mg==\",\"operation\":\"create\",\"metadata\":{\"a\":\"b\"},\"key\":null,\
         \"payload\":{\"before\":null,\"after\":\"d29ybGQ=\"}}\n"
    );
    destination.teardown().await.unwrap();
}

#[tokio::test]
async fn file_destination_writes_the_template_of_sdk_record_format_and_nacks_a_record_it_fails_on()
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.txt");
    let destination = destination(
        "file",
        "p:out",
        &settings(&[
            ("path", path.to_str().unwrap()),
            ("sdk.record.format", "template"),
            (
                "sdk.record.format.options",
                r#"{{ .Metadata.a }}:{{ printf "%s" .Payload.After }}"#,
            ),
        ]),
    )
    .unwrap();
    destination.open().await.unwrap();
    // The second record has no metadata `a`: with missingkey=error the template fails
    // on it, and only it.
    let mut no_a = record("2", "lost");
    no_a.metadata = Metadata::new();
    destination
        .write(&[record("1", "hello"), no_a, record("3", "world")])
        .await
        .unwrap();
    let acks = ack_n(&*destination, 3).await;
    let outcome: Vec<(String, Option<String>)> = acks
        .iter()
        .map(|a| {
            (
                String::from_utf8(a.position.as_bytes().to_vec()).unwrap(),
                a.error.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(outcome[0], ("1".to_owned(), None));
    assert_eq!(outcome[2], ("3".to_owned(), None));
    assert_eq!(outcome[1].0, "2");
    let error = outcome[1]
        .1
        .clone()
        .expect("the record the template fails on is nacked");
    assert!(
        error.contains("sdk.record.format template")
            && error.contains(r#"map has no entry for key "a""#),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "b:hello\nb:world\n"
    );
    destination.teardown().await.unwrap();
}

#[tokio::test]
async fn file_destination_writes_debezium_envelopes_with_sdk_record_format_debezium_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let destination = destination(
        "file",
        "p:out",
        &settings(&[
            ("path", path.to_str().unwrap()),
            ("sdk.record.format", "debezium/json"),
            ("sdk.record.format.options", "debezium.schema.name=users"),
        ]),
    )
    .unwrap();
    destination.open().await.unwrap();
    destination
        .write(&[record("1", r#"{"id":1}"#)])
        .await
        .unwrap();
    assert!(ack_n(&*destination, 1).await[0].error.is_none());
    let line = std::fs::read_to_string(&path).unwrap();
    assert!(
        line.starts_with(r#"{"schema":{"type":"struct","optional":false,"name":"users","fields":[{"type":"struct","optional":true,"fields":[{"type":"double","optional":false,"field":"id"}],"field":"before"}"#),
        "{line}"
    );
    assert!(
        line.ends_with(
            r#""payload":{"before":null,"after":{"id":1},"source":{"a":"b"},"op":"c","transaction":null}}
"#
        ),
        "{line}"
    );
    destination.teardown().await.unwrap();
}

#[tokio::test]
async fn file_destination_acks_in_write_order_only_once_the_lines_are_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let destination = open_destination(&path).await;
    let batches: Vec<Vec<Record>> = (0..5)
        .map(|b| {
            (0..20)
                .map(|i| record(&format!("{}", b * 20 + i + 1), &format!("line {b}/{i}")))
                .collect()
        })
        .collect();
    for batch in &batches {
        destination.write(batch).await.unwrap();
    }
    let all: Vec<&Record> = batches.iter().flatten().collect();
    let mut acked = Vec::new();
    while acked.len() < all.len() {
        let acks = tokio::time::timeout(PATIENCE, destination.ack())
            .await
            .unwrap()
            .unwrap();
        assert!(!acks.is_empty());
        // Everything acked so far is in the file already.
        let content = std::fs::read(&path).unwrap();
        acked.extend(acks);
        let mut expected = Vec::new();
        for record in &all[..acked.len()] {
            record.write_json(&mut expected);
            expected.push(b'\n');
        }
        assert!(content.starts_with(&expected), "acked before written");
    }
    let positions: Vec<Position> = acked.iter().map(|a| a.position.clone()).collect();
    let written: Vec<Position> = all.iter().map(|r| r.position.clone()).collect();
    assert_eq!(positions, written);
    assert!(acked.iter().all(|a| a.error.is_none()));
    destination.teardown().await.unwrap();
}

#[tokio::test]
async fn file_destination_ack_waits_until_there_are_acks() {
    let dir = tempfile::tempdir().unwrap();
    let destination = open_destination(&dir.path().join("out.jsonl")).await;
    let early = tokio::time::timeout(Duration::from_millis(100), destination.ack()).await;
    assert!(early.is_err(), "ack returned before anything was written");
    destination.write(&[record("1", "x")]).await.unwrap();
    assert_eq!(ack_n(&*destination, 1).await.len(), 1);
}

#[tokio::test]
async fn file_destination_appends_to_an_existing_file() {
    let (_dir, path) = temp_file("out.jsonl", "earlier\n");
    let content = write_one(&path).await;
    assert!(
        content.starts_with("earlier\n{\"position\":\"MQ==\""),
        "{content}"
    );
    assert_eq!(content.lines().count(), 2);
}

#[tokio::test]
async fn file_destination_cuts_off_a_line_torn_by_a_crash_before_appending() {
    for torn_tail in ["{\"position\":\"MQ", "x", &"y".repeat(200_000)] {
        let (_dir, path) = temp_file("out.jsonl", format!("first\nsecond\n{torn_tail}"));
        let content = write_one(&path).await;
        let lines: Vec<&str> = content.lines().collect();
        assert_eq!(lines.len(), 3, "{}", &content[..content.len().min(200)]);
        assert_eq!(&lines[..2], ["first", "second"]);
        assert!(
            lines[2].starts_with("{\"position\":\"MQ==\""),
            "{}",
            lines[2]
        );
    }
}

#[tokio::test]
async fn file_destination_drops_a_lone_torn_line() {
    let (_dir, path) = temp_file("out.jsonl", "no newline anywhere");
    let content = write_one(&path).await;
    assert!(content.starts_with("{\"position\":\"MQ==\""), "{content}");
    assert_eq!(content.lines().count(), 1);
}

#[tokio::test]
async fn file_destination_teardown_finishes_queued_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let destination = open_destination(&path).await;
    for i in 1..=10 {
        destination
            .write(&[record(&i.to_string(), "x")])
            .await
            .unwrap();
    }
    destination.teardown().await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 10);
}

#[tokio::test]
async fn file_destination_fails_to_open_when_the_directory_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("out.jsonl");
    let destination = destination("file", "p:out", &path_settings(&path)).unwrap();
    let error = destination.open().await.unwrap_err();
    assert_eq!(error.retry(), Retry::Fatal);
    assert!(error.to_string().contains("directory"), "{error}");
}

#[tokio::test]
async fn file_source_reads_lines_with_byte_offset_positions() {
    let (_dir, path) = input_file("hello\nworld\n\nlast\n");
    let source = open_source(&path, None).await;
    let records = read_exactly(&*source, 4).await;
    assert_eq!(
        lines(&records),
        triples(&[
            ("6", "1", "hello"),
            ("12", "2", "world"),
            ("13", "3", ""),
            ("18", "4", "last"),
        ])
    );
    for record in &records {
        assert_eq!(record.operation, Operation::Create);
        assert_eq!(record.payload.before, None);
        assert_eq!(record.metadata.get("file.path"), path.to_str());
        assert_eq!(
            record.metadata.get("conduit.source.connector.id"),
            Some("p:in")
        );
        assert!(record.metadata.get("opencdc.readAt").is_some());
    }
    source.teardown().await.unwrap();
}

#[tokio::test]
async fn file_source_resumes_after_the_offset_it_was_given() {
    let (_dir, path) = input_file("hello\nworld\n\nlast\n");
    let source = open_source(&path, Some(Position::from("12"))).await;
    let records = read_exactly(&*source, 2).await;
    // Line numbers keep counting from the start of the file.
    assert_eq!(
        lines(&records),
        triples(&[("13", "3", ""), ("18", "4", "last")])
    );
}

#[tokio::test]
async fn file_source_picks_up_appended_lines_once_they_are_complete() {
    let (_dir, path) = input_file("one\n");
    let source = open_source(&path, None).await;
    assert_eq!(
        lines(&read_exactly(&*source, 1).await),
        triples(&[("4", "1", "one")])
    );

    append(&path, "tw");
    let partial = tokio::time::timeout(Duration::from_millis(350), source.read()).await;
    assert!(partial.is_err(), "a line without its newline was emitted");
    append(&path, "o\nthree\n");
    assert_eq!(
        lines(&read_exactly(&*source, 2).await),
        triples(&[("8", "2", "two"), ("14", "3", "three")])
    );
}

#[tokio::test]
async fn file_source_waits_for_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.txt");
    let source = open_source(&path, None).await;
    let early = tokio::time::timeout(Duration::from_millis(250), source.read()).await;
    assert!(early.is_err());
    append(&path, "here\n");
    assert_eq!(
        lines(&read_exactly(&*source, 1).await),
        triples(&[("5", "1", "here")])
    );
}

#[tokio::test]
async fn file_source_reads_a_file_shorter_than_its_position_from_the_start() {
    let (_dir, path) = input_file("a\n");
    let source = open_source(&path, Some(Position::from("100"))).await;
    assert_eq!(
        lines(&read_exactly(&*source, 1).await),
        triples(&[("2", "1", "a")])
    );
}

#[tokio::test]
async fn file_source_reads_in_batches_of_sdk_batch_size() {
    let text: String = (1..=25).map(|i| format!("{i}\n")).collect();
    let (_dir, path) = input_file(text);
    let source = source_with(&path, &[("sdk.batch.size", "10")], None);
    source.open().await.unwrap();
    let sizes = [
        source.read().await.unwrap().expect("a batch").len(),
        source.read().await.unwrap().expect("a batch").len(),
        source.read().await.unwrap().expect("a batch").len(),
    ];
    assert_eq!(sizes, [10, 10, 5]);
}

#[tokio::test]
async fn file_source_reads_every_line_of_a_file_of_many_blocks_in_order() {
    // 5 MB: several of the source's 1 MiB blocks, with lines across their borders.
    let expected: Vec<String> = (0..20_000)
        .map(|i| format!("{i}:{}", "x".repeat(i * 7 % 500)))
        .collect();
    let mut text = expected.join("\n");
    text.push('\n');
    let (_dir, path) = input_file(&text);
    let source = open_source(&path, None).await;
    let records = read_exactly(&*source, expected.len()).await;
    assert_eq!(texts(&records), expected);
    let mut end = 0;
    for (record, line) in records.iter().zip(&expected) {
        end += line.len() + 1;
        assert_eq!(offset(&record.position), end.to_string());
    }
}

#[tokio::test]
async fn file_source_read_is_cancel_safe() {
    let (_dir, path) = input_file("");
    let source = open_source(&path, None).await;
    // Reads are abandoned at arbitrary points (waiting, or while the file is read)
    // while lines keep coming; no line may be lost or repeated.
    let mut records = Vec::new();
    for i in 0..5 {
        if let Ok(batch) = tokio::time::timeout(Duration::from_millis(30), source.read()).await {
            records.extend(batch.unwrap().expect("a batch"));
        }
        append(&path, &format!("line {i}\n"));
    }
    let rest = 5 - records.len();
    records.extend(read_exactly(&*source, rest).await);
    let keys: Vec<String> = lines(&records).into_iter().map(|(_, k, _)| k).collect();
    assert_eq!(keys, ["1", "2", "3", "4", "5"]);
}

#[tokio::test]
async fn file_source_and_destination_round_trip_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, "alpha\nbeta\n").unwrap();
    let source = open_source(&input, None).await;
    let destination = open_destination(&output).await;
    let records = read_exactly(&*source, 2).await;
    destination.write(&records).await.unwrap();
    ack_n(&*destination, 2).await;
    let decoded: Vec<Record> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|line| Record::from_json(line.as_bytes()).unwrap())
        .collect();
    assert_eq!(decoded, records);
}

#[tokio::test]
async fn file_destination_writes_to_dev_null_and_acks_without_fsync() {
    let destination = open_destination(Path::new("/dev/null")).await;
    for batch in 0..3 {
        destination
            .write(&[record(&format!("{batch}"), "x"), record("b", "y")])
            .await
            .unwrap();
    }
    let acks = ack_n(&*destination, 6).await;
    assert!(acks.iter().all(|a| a.error.is_none()), "{acks:?}");
    destination.teardown().await.unwrap();
}

#[tokio::test]
async fn file_destination_writes_each_record_to_a_named_pipe_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    // The reader opens the pipe first and collects everything until the writer closes.
    let reader = std::thread::spawn({
        let path = path.clone();
        move || std::fs::read_to_string(path).unwrap()
    });
    let destination = open_destination(&path).await;
    destination
        .write(&[record("1", "hello"), record("2", "world")])
        .await
        .unwrap();
    let acks = ack_n(&*destination, 2).await;
    assert!(acks.iter().all(|a| a.error.is_none()), "{acks:?}");
    destination.teardown().await.unwrap();
    let content = reader.join().unwrap();
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), 2, "{content}");
    assert!(lines[0].starts_with("{\"position\":\"MQ==\""), "{content}");
    assert!(lines[1].starts_with("{\"position\":\"Mg==\""), "{content}");
}

/// A file of its own, read by the file source or written by the file destination.
struct FileBackend {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl FileBackend {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.txt");
        Self { _dir: dir, path }
    }
}

fn raw_after(record: &Record) -> Bytes {
    match &record.payload.after {
        Some(Data::Raw(bytes)) => bytes.clone(),
        other => panic!("expected raw payload.after, got {other:?}"),
    }
}

#[async_trait]
impl SourceBackend for FileBackend {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        let mut settings = path_settings(&self.path);
        settings.insert("sdk.batch.size".into(), "10".into());
        source("file", "p:in", &settings, resume).unwrap()
    }

    async fn inject(&self, payloads: &[Bytes]) {
        let mut text = Vec::new();
        for payload in payloads {
            text.extend_from_slice(payload);
            text.push(b'\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap();
        file.write_all(&text).unwrap();
    }

    fn payload(&self, record: &Record) -> Bytes {
        raw_after(record)
    }
}

#[async_trait]
impl DestinationBackend for FileBackend {
    fn build(&self) -> Arc<dyn Destination> {
        destination("file", "p:out", &path_settings(&self.path)).unwrap()
    }

    async fn written(&self) -> Vec<Bytes> {
        let content = std::fs::read(&self.path).unwrap_or_default();
        content
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| raw_after(&Record::from_json(line).unwrap()))
            .collect()
    }
}

#[tokio::test]
async fn file_source_passes_the_source_compliance_suite() {
    run_source_compliance("file source", SourceCapabilities::FULL, |_| async {
        FileBackend::new()
    })
    .await
    .assert_complete();
}

#[tokio::test]
async fn file_destination_passes_the_destination_compliance_suite() {
    run_destination_compliance(
        "file destination",
        DestinationCapabilities::FULL,
        |_| async { FileBackend::new() },
    )
    .await
    .assert_complete();
}

/// Reads until the source returns an error.
async fn read_until_error(source: &dyn Source) -> (Vec<Record>, funnel_core::ConnectorError) {
    let mut records = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, source.read())
            .await
            .expect("no error in time")
        {
            Ok(batch) => records.extend(batch.expect("the file source never ends")),
            Err(e) => return (records, e),
        }
    }
}

#[tokio::test]
async fn file_source_finishes_a_rotated_file_then_reads_the_new_one_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let rotated = dir.path().join("in.txt.1");
    std::fs::write(&path, "old 1\nold 2\n").unwrap();
    let source = open_source(&path, None).await;
    assert_eq!(texts(&read_exactly(&*source, 2).await), ["old 1", "old 2"]);

    // `mv in.txt in.txt.1`; the writer, still holding the old file, adds two lines
    // (the last without newline) before it reopens `in.txt`.
    std::fs::rename(&path, &rotated).unwrap();
    append(&rotated, "old 3\nold 4");
    append(&path, "new 1\nnew 2\n");
    let records = read_exactly(&*source, 4).await;
    assert_eq!(
        lines(&records),
        triples(&[
            ("18", "3", "old 3"),
            ("23", "4", "old 4"),
            ("6", "1", "new 1"),
            ("12", "2", "new 2"),
        ])
    );
    // Positions keep increasing across files, byte by byte.
    assert!(records.windows(2).all(|w| w[0].position < w[1].position));
}

#[tokio::test]
async fn file_source_reads_a_file_replaced_by_rename_from_its_start() {
    let (dir, path) = input_file("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
    let source = open_source(&path, None).await;
    read_exactly(&*source, 10).await;
    let fresh = dir.path().join("fresh.txt");
    std::fs::write(&fresh, "a\nb\n").unwrap();
    std::fs::rename(&fresh, &path).unwrap();
    assert_eq!(
        lines(&read_exactly(&*source, 2).await),
        triples(&[("2", "1", "a"), ("4", "2", "b")])
    );
}

#[tokio::test]
async fn file_source_reads_a_file_rewritten_in_place_from_its_start() {
    let (_dir, path) = input_file("first line\nsecond line\n");
    let source = open_source(&path, None).await;
    read_exactly(&*source, 2).await;
    // `seq 30 > in.txt`: truncated and rewritten, longer than before, same inode.
    let text: String = (1..=30).map(|i| format!("{i}\n")).collect();
    std::fs::write(&path, &text).unwrap();
    let records = read_exactly(&*source, 30).await;
    let expected: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    assert_eq!(texts(&records), expected);
    assert_eq!(lines(&records)[0].1, "1");
}

#[tokio::test]
async fn file_source_restarts_from_zero_when_the_file_is_truncated() {
    let (_dir, path) = input_file("alpha\nbeta\n");
    let source = open_source(&path, None).await;
    read_exactly(&*source, 2).await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, "z\n");
    assert_eq!(
        lines(&read_exactly(&*source, 1).await),
        triples(&[("2", "1", "z")])
    );
}

#[tokio::test]
async fn file_source_reports_a_deleted_input() {
    let (_dir, path) = input_file("one\n");
    let source = open_source(&path, None).await;
    read_exactly(&*source, 1).await;
    // Lines written before the deletion are still read from the open file.
    append(&path, "two\n");
    std::fs::remove_file(&path).unwrap();
    let (records, error) = read_until_error(&*source).await;
    assert_eq!(texts(&records), ["two"]);
    assert_eq!(error.retry(), Retry::Transient);
    let message = error.to_string();
    assert!(message.contains("deleted"), "{message}");
    assert!(message.contains(path.to_str().unwrap()), "{message}");

    // Restarted from the last position while the file is still missing, it says so too.
    let last = records[0].position.clone();
    let restarted = open_source(&path, Some(last)).await;
    let (_, error) = read_until_error(&*restarted).await;
    assert!(error.to_string().contains("deleted"), "{error}");
}

#[tokio::test]
async fn file_source_resumes_in_a_file_rotated_while_it_was_stopped() {
    let (dir, path) = input_file("a\nb\n");
    let source = open_source(&path, None).await;
    let records = read_exactly(&*source, 2).await;
    source.teardown().await.unwrap();

    // While stopped: one more line, then rotation and a new file.
    append(&path, "c\n");
    std::fs::rename(&path, dir.path().join("in.txt.1")).unwrap();
    std::fs::write(&path, "new\n").unwrap();

    let resumed = open_source(&path, Some(records[1].position.clone())).await;
    let more = read_exactly(&*resumed, 2).await;
    assert_eq!(lines(&more), triples(&[("6", "3", "c"), ("4", "1", "new")]));
    assert!(records[1].position < more[0].position);
    assert!(more[0].position < more[1].position);
}

#[tokio::test]
async fn file_source_resumes_in_the_same_file_after_a_restart() {
    let (_dir, path) = input_file("a\nb\n");
    let source = open_source(&path, None).await;
    let records = read_exactly(&*source, 2).await;
    source.teardown().await.unwrap();
    let resumed = open_source(&path, Some(records[0].position.clone())).await;
    assert_eq!(
        lines(&read_exactly(&*resumed, 1).await),
        triples(&[("4", "2", "b")])
    );
}

#[tokio::test]
async fn file_source_nacks_a_line_longer_than_max_record_size_and_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let long = "x".repeat(100);
    std::fs::write(&path, format!("short\n{long}\nafter\n")).unwrap();
    let source = source_with(&path, &[("maxRecordSize", "10")], None);
    source.open().await.unwrap();
    let records = read_exactly(&*source, 3).await;
    let error_of = |r: &Record| r.metadata.get("funnel.read.error").map(str::to_owned);
    assert_eq!(error_of(&records[0]), None);
    let error = error_of(&records[1]).expect("the long line is marked unreadable");
    assert!(error.contains(path.to_str().unwrap()), "{error}");
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("byte 6"), "{error}");
    assert!(error.contains("maxRecordSize"), "{error}");
    assert_eq!(records[1].payload.after, None);
    assert_eq!(offset(&records[1].position), "107");
    assert_eq!(lines(&records[2..]), triples(&[("113", "3", "after")]));
}

#[tokio::test]
async fn file_source_skips_a_stream_without_newline_in_bounded_memory() {
    let (_dir, path) = input_file("");
    let source = source_with(&path, &[("maxRecordSize", "1000")], None);
    source.open().await.unwrap();
    // 4 MiB without a newline, written while the source reads: it never holds them.
    let chunk = "y".repeat(64 * 1024);
    for _ in 0..64 {
        append(&path, &chunk);
        let pending = tokio::time::timeout(Duration::from_millis(5), source.read()).await;
        assert!(pending.is_err(), "a record before the newline");
    }
    append(&path, "\nok\n");
    let records = read_exactly(&*source, 2).await;
    let error = records[0].metadata.get("funnel.read.error").unwrap();
    assert!(error.contains("4194304 bytes"), "{error}");
    assert_eq!(lines(&records[1..]), triples(&[("4194308", "2", "ok")]));
}

#[tokio::test]
async fn file_source_reads_a_long_line_in_linear_time() {
    // 64 MB in one line: 17 s for 200 MB when each read searched the whole line again.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let mut text = vec![b'z'; 64_000_000];
    text.push(b'\n');
    std::fs::write(&path, &text).unwrap();
    drop(text);
    let source = open_source(&path, None).await;
    let started = std::time::Instant::now();
    let records = tokio::time::timeout(Duration::from_secs(60), source.read())
        .await
        .unwrap()
        .unwrap()
        .expect("a batch");
    let took = started.elapsed();
    match &records[0].payload.after {
        Some(Data::Raw(line)) => assert_eq!(line.len(), 64_000_000),
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn file_source_max_record_size_must_be_positive() {
    let errors = funnel_connectors::file::validate_source(&settings(&[
        ("path", "/tmp/x"),
        ("maxRecordSize", "0"),
    ]))
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].setting, "maxRecordSize");
}
