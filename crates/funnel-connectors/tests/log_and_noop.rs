//! The log and noop destinations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{Settings, destination, noop};
use funnel_core::settings_of as settings;
use funnel_core::{Destination, DestinationAck};
use funnel_record::{Data, Payload, Position, Record};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, Support, run_destination_compliance,
};
use funnel_test_utils::connectors::ack_n;
use tracing::Level;

fn records(range: std::ops::RangeInclusive<u32>) -> Vec<Record> {
    range
        .map(|i| Record::new(i.to_string().as_str(), format!("payload {i}").into_bytes()))
        .collect()
}

fn positions(acks: &[DestinationAck]) -> Vec<Position> {
    acks.iter().map(|a| a.position.clone()).collect()
}

/// Writes `batches` one after the other and collects their acks, checking there is
/// one per record, in write order.
async fn write_and_ack_in_order(
    destination: &dyn Destination,
    batches: &[&[Record]],
) -> Vec<DestinationAck> {
    for batch in batches {
        destination.write(batch).await.unwrap();
    }
    let written: Vec<Position> = batches
        .iter()
        .flat_map(|batch| batch.iter().map(|r| r.position.clone()))
        .collect();
    let acks = ack_n(destination, written.len()).await;
    assert_eq!(positions(&acks), written);
    acks
}

/// A log sink the test can read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs(max: Level) -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(max)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

#[tokio::test]
async fn log_destination_logs_each_record_as_opencdc_json_and_acks_in_order() {
    let (captured, _guard) = capture_logs(Level::TRACE);
    let destination = destination(
        "log",
        "p:log",
        &settings(&[("level", "warn"), ("message", "record delivery failed")]),
    )
    .unwrap();
    destination.open().await.unwrap();
    let batch_one = records(1..=3);
    let batch_two = records(4..=5);
    let acks = write_and_ack_in_order(&*destination, &[&batch_one, &batch_two]).await;
    assert!(acks.iter().all(|a| a.error.is_none()));

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 5, "{output}");
    for (line, record) in lines.iter().zip(batch_one.iter().chain(&batch_two)) {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("record delivery failed"), "{line}");
        assert!(line.contains("connector=p:log"), "{line}");
        let json = String::from_utf8(record.to_json()).unwrap();
        assert!(line.contains(&format!("record={json}")), "{line}");
    }
    destination.teardown().await.unwrap();
}

/// A log sink that keeps each `write` call apart.
#[derive(Clone, Default)]
struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

impl Write for Writes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the kill drills count on (`funnel-cli/tests/drills/kill.rs`): a record's line
/// is whole in the log, written with a single `write`, before the record is acked.
/// A process killed mid-line therefore never acked that record, and a line of the log
/// never holds a piece of another.
#[tokio::test]
async fn log_destination_acks_a_record_only_after_its_whole_line_went_out_in_one_write() {
    let writes = Writes::default();
    let writer = writes.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let destination = destination("log", "p:log", &Settings::new()).unwrap();
    destination.open().await.unwrap();
    let batch = records(1..=50);
    destination.write(&batch).await.unwrap();
    // Everything the acks will report is in the log already, one write per record.
    let written = writes.0.lock().unwrap().clone();
    let acks = ack_n(&*destination, batch.len()).await;
    assert_eq!(written.len(), batch.len());
    for ((chunk, record), ack) in written.iter().zip(&batch).zip(&acks) {
        let line = std::str::from_utf8(chunk).unwrap();
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "not one whole line: {line:?}"
        );
        let (_, logged) = line.trim_end().split_once(" record=").unwrap();
        assert_eq!(Record::from_json(logged.as_bytes()).unwrap(), *record);
        assert_eq!(ack.position, record.position);
    }
    destination.teardown().await.unwrap();
}

#[tokio::test]
async fn log_destination_below_the_log_filter_logs_nothing_but_still_acks() {
    let (captured, _guard) = capture_logs(Level::INFO);
    let destination = destination("log", "p:log", &settings(&[("level", "debug")])).unwrap();
    destination.open().await.unwrap();
    destination.write(&records(1..=4)).await.unwrap();
    assert_eq!(ack_n(&*destination, 4).await.len(), 4);
    assert!(captured.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn noop_destination_acks_in_order_and_counts_what_it_acked() {
    let destination = destination("noop", "p:noop", &Settings::new()).unwrap();
    destination.open().await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(50), destination.ack()).await;
    assert!(early.is_err(), "ack returned before anything was written");

    let before = noop::written_total();
    write_and_ack_in_order(&*destination, &[&records(1..=100), &records(101..=150)]).await;
    // Other tests of this process may count too, so the total grew by at least ours.
    assert!(noop::written_total() >= before + 150);
    destination.teardown().await.unwrap();
}

/// A log destination whose lines go to a captured log, read back by its connector ID.
struct LogBackend {
    id: String,
    log: Captured,
}

#[async_trait]
impl DestinationBackend for LogBackend {
    fn build(&self) -> Arc<dyn Destination> {
        destination("log", &self.id, &settings(&[("level", "info")])).unwrap()
    }

    async fn written(&self) -> Vec<Bytes> {
        let output = self.log.0.lock().unwrap().clone();
        let marker = format!(" connector={} record=", self.id);
        String::from_utf8(output)
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once(&marker))
            .map(|(_, json)| match Record::from_json(json.as_bytes()) {
                Ok(Record {
                    payload:
                        Payload {
                            after: Some(Data::Raw(bytes)),
                            ..
                        },
                    ..
                }) => bytes,
                other => panic!("not a logged record: {other:?}"),
            })
            .collect()
    }
}

#[tokio::test]
async fn log_destination_passes_the_destination_compliance_suite() {
    let (log, _guard) = capture_logs(Level::INFO);
    let mut checks = 0;
    let report = run_destination_compliance("log", DestinationCapabilities::FULL, |_| {
        // Each check reads back the lines of its own connector ID.
        checks += 1;
        let backend = LogBackend {
            id: format!("p:log-{checks}"),
            log: log.clone(),
        };
        async { backend }
    })
    .await;
    report.assert_complete();
}

/// The noop destination: nothing to read back.
struct NoopBackend;

impl DestinationBackend for NoopBackend {
    fn build(&self) -> Arc<dyn Destination> {
        destination("noop", "p:noop", &Settings::new()).unwrap()
    }
}

#[tokio::test]
async fn noop_destination_passes_the_destination_compliance_suite() {
    let capabilities = DestinationCapabilities {
        readback: Support::No("noop writes records nowhere: there is nothing to read back"),
    };
    let report = run_destination_compliance("noop", capabilities, |_| async { NoopBackend }).await;
    assert_eq!(report.ran.len(), 6, "{report:?}");
}
