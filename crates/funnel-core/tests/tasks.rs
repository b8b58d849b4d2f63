//! Processor and destination tasks: how results and acks map onto a batch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use funnel_core::{
    Batch, DestinationAck, DestinationTask, ProcessedRecord, ProcessorTask, RecordError, RecordFlag,
};
use funnel_record::Record;
use funnel_test_utils::{FnProcessor, MemoryDestination};

use RecordFlag::{Ack as A, Filter as F, Nack as N, Retry as R};

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(i.to_string(), format!("r{i}")))
        .collect()
}

fn flags(b: &Batch) -> Vec<RecordFlag> {
    b.statuses().iter().map(|s| s.flag).collect()
}

fn processor(results: Vec<ProcessedRecord>) -> ProcessorTask {
    let mut results = Some(results);
    ProcessorTask::new(
        "proc",
        Box::new(FnProcessor(move |_: &[Record]| {
            results.take().unwrap_or_default()
        })),
    )
}

#[tokio::test]
async fn passthrough_results_leave_records_acked() {
    let mut batch = Batch::new(records(3));
    let mut task = ProcessorTask::new(
        "proc",
        Box::new(FnProcessor(|rs: &[Record]| {
            rs.iter().cloned().map(ProcessedRecord::Single).collect()
        })),
    );
    task.process(&mut batch).await.unwrap();
    assert_eq!(flags(&batch), [A, A, A]);
    assert!(!batch.is_tainted());
}

#[tokio::test]
async fn mixed_results_on_a_partly_filtered_batch_mark_the_right_records() {
    let mut batch = Batch::new(records(10));
    for i in [9, 3, 2, 0] {
        batch.filter(i..i + 1);
    }
    // Active records are now 1, 4, 5, 6, 7, 8; five results for six records.
    let mut task = processor(vec![
        ProcessedRecord::Filter,
        ProcessedRecord::Single(Record::new("4", "four")),
        ProcessedRecord::Filter,
        ProcessedRecord::Multi(vec![
            Record::new("6a", ""),
            Record::new("6b", ""),
            Record::new("6c", ""),
        ]),
        ProcessedRecord::Error(RecordError::msg("seven")),
    ]);
    task.process(&mut batch).await.unwrap();
    assert_eq!(flags(&batch), [F, F, F, F, A, F, A, A, A, N, R, F]);
    assert_eq!(batch.filter_count(), 6);
    assert_eq!(
        batch.records()[4].payload.after,
        Some(funnel_record::Data::raw("four"))
    );
    assert_eq!(batch.origins()[6..9], [6, 6, 6]);
    assert!(batch.split_original(6).is_some());
    assert_eq!(batch.statuses()[9].error, Some(RecordError::msg("seven")));
}

#[tokio::test]
async fn multi_results_filter_replace_or_split() {
    let mut batch = Batch::new(records(3));
    let mut task = processor(vec![
        ProcessedRecord::Multi(vec![]),
        ProcessedRecord::Multi(vec![Record::new("x", "x")]),
        ProcessedRecord::Multi(vec![Record::new("a", "a"), Record::new("b", "b")]),
    ]);
    task.process(&mut batch).await.unwrap();
    assert_eq!(flags(&batch), [F, A, A, A]);
    assert_eq!(batch.records()[1].position, "x".into());
    assert_eq!(batch.origins(), [0, 1, 2, 2]);
}

#[tokio::test]
async fn split_then_empty_filters_the_right_record() {
    let mut batch = Batch::new(records(2));
    let mut task = processor(vec![
        ProcessedRecord::Multi(vec![Record::new("a", "a"), Record::new("b", "b")]),
        ProcessedRecord::Multi(vec![]),
    ]);
    task.process(&mut batch).await.unwrap();
    assert_eq!(flags(&batch), [A, A, F]);
    assert_eq!(batch.origins(), [0, 0, 1]);
}

#[tokio::test]
async fn multi_results_on_a_pre_filtered_batch_mark_the_right_records() {
    let mut batch = Batch::new(records(4));
    batch.filter(1..2);
    let mut task = processor(vec![
        ProcessedRecord::Multi(vec![]),
        ProcessedRecord::Multi(vec![Record::new("a", "a"), Record::new("b", "b")]),
        ProcessedRecord::Multi(vec![]),
    ]);
    task.process(&mut batch).await.unwrap();
    assert_eq!(flags(&batch), [F, F, A, A, F]);
    assert_eq!(batch.filter_count(), 3);
}

#[tokio::test]
async fn fewer_results_than_records_mark_the_rest_for_retry() {
    let mut batch = Batch::new(records(3));
    let mut task = processor(vec![ProcessedRecord::Filter]);
    task.process(&mut batch).await.unwrap();
    assert_eq!(flags(&batch), [F, R, R]);
    assert!(batch.is_tainted());
}

#[tokio::test]
async fn no_result_at_all_is_an_error_naming_the_processor() {
    let mut batch = Batch::new(records(2));
    let err = processor(vec![]).process(&mut batch).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("task proc: processor didn't return any records"),
        "{err}"
    );
}

#[tokio::test]
async fn more_results_than_records_is_a_fatal_error() {
    let mut batch = Batch::new(records(1));
    let err = processor(vec![ProcessedRecord::Filter, ProcessedRecord::Filter])
        .process(&mut batch)
        .await
        .unwrap_err();
    assert!(err.is_fatal());
    assert!(
        err.to_string().contains("returned 2 results for 1 records"),
        "{err}"
    );
}

struct ScriptedAcks(std::sync::Mutex<Vec<Vec<DestinationAck>>>);

#[async_trait::async_trait]
impl funnel_core::Destination for ScriptedAcks {
    async fn open(&self) -> Result<(), funnel_core::ConnectorError> {
        Ok(())
    }
    async fn write(&self, _: &[Record]) -> Result<(), funnel_core::ConnectorError> {
        Ok(())
    }
    async fn ack(&self) -> Result<Vec<DestinationAck>, funnel_core::ConnectorError> {
        let mut chunks = self.0.lock().unwrap();
        if chunks.is_empty() {
            return Err(funnel_core::ConnectorError::transient("no more acks"));
        }
        Ok(chunks.remove(0))
    }
    async fn teardown(&self) -> Result<(), funnel_core::ConnectorError> {
        Ok(())
    }
}

/// Checks that writing ten records to a destination answering with `chunks` of acks,
/// one chunk per `ack` call, fails with an error saying `expected` (`case` names the
/// check when it fails).
async fn assert_ack_error(case: &str, chunks: Vec<Vec<DestinationAck>>, expected: &str) {
    let d = ScriptedAcks(std::sync::Mutex::new(chunks));
    let err = DestinationTask::new("dest", Arc::new(d))
        .process(&mut Batch::new(records(10)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(expected), "{case}: {err}");
}

fn acks(range: std::ops::Range<usize>) -> Vec<DestinationAck> {
    range
        .map(|i| DestinationAck::ok(i.to_string().into()))
        .collect()
}

#[tokio::test]
async fn a_destination_writes_active_records_and_nacks_those_acked_with_an_error() {
    let mut batch = Batch::new(records(10));
    for i in [9, 5, 2, 0] {
        batch.filter(i..i + 1);
    }
    let failing =
        |i: usize| (i == 3 || i == 6 || i == 8).then(|| RecordError::msg(format!("bad {i}")));
    let d = Arc::new(
        MemoryDestination::new("dest").with_plan(Arc::new(move |r: &Record| {
            failing(r.position.to_string().parse().unwrap())
        })),
    );
    funnel_core::Destination::open(d.as_ref()).await.unwrap();
    DestinationTask::new("dest", d.clone())
        .process(&mut batch)
        .await
        .unwrap();
    assert_eq!(d.written().len(), 6);
    assert_eq!(flags(&batch), [F, A, F, N, A, F, N, A, N, F]);
    assert_eq!(batch.statuses()[6].error, Some(RecordError::msg("bad 6")));
}

#[tokio::test]
async fn acks_may_arrive_in_several_chunks() {
    let d = ScriptedAcks(std::sync::Mutex::new(vec![
        acks(0..3),
        acks(3..6),
        acks(6..7),
        acks(7..10),
    ]));
    let mut batch = Batch::new(records(10));
    DestinationTask::new("dest", Arc::new(d))
        .process(&mut batch)
        .await
        .unwrap();
    assert!(flags(&batch).iter().all(|f| *f == A));
}

#[tokio::test]
async fn every_ack_protocol_violation_is_an_error_saying_what_went_wrong() {
    let cases = [
        (
            "an ack out of order names both positions",
            vec![acks(0..3), acks(4..5)],
            r#"failed to validate acks: received unexpected ack, expected position "3" but got "4""#,
        ),
        (
            "more acks than records",
            vec![acks(0..11)],
            "failed to validate acks: received 11 acks, but expected at most 10",
        ),
        (
            "an empty ack list is not a silent success",
            vec![acks(0..9), Vec::new()],
            "received 0 acks, but 1 records are waiting",
        ),
        (
            "a failed ack stream counts the records waiting",
            vec![acks(0..9)],
            "failed to receive acks for 1 records from destination: no more acks",
        ),
    ];
    for (case, chunks, expected) in cases {
        assert_ack_error(case, chunks, expected).await;
    }
}

#[tokio::test]
async fn a_write_failure_is_returned() {
    let d = Arc::new(MemoryDestination::new("dest").fail_write_at(1));
    let err = DestinationTask::new("dest", d)
        .process(&mut Batch::new(records(2)))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("failed to write 2 records to destination: write failed"),
        "{err}"
    );
}
