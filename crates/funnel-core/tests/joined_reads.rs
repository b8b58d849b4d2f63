//! Reads that are ready at once are joined into one batch when no processor runs: the
//! destinations and the source see the same records, in fewer calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use funnel_core::{ProcessedRecord, ProcessorTask, WorkerConfig};
use funnel_record::Record;
use funnel_test_utils::{FnProcessor, MemorySource};

#[tokio::test]
async fn records_read_one_at_a_time_are_written_together_and_acked_in_order() {
    let mut p = simple(40, 1, vec![]);
    open_and_run(&mut p).await.unwrap();
    assert_eq!(written_positions(&p.destinations[0]), positions("s", 0..40));
    assert_eq!(p.source.acked(), positions("s", 0..40));
    assert!(
        p.destinations[0].writes() < 40,
        "40 ready reads of one record each were written in {} writes",
        p.destinations[0].writes()
    );
}

#[tokio::test]
async fn a_batch_joins_at_most_a_quarter_of_the_records_in_flight() {
    let config = WorkerConfig {
        max_records_in_flight: 8,
        ..WorkerConfig::default()
    };
    let source = MemorySource::new("s", records("s", 40), 1).exhausting();
    let mut p = one_destination(source, vec![], config);
    open_and_run(&mut p).await.unwrap();
    assert_eq!(written_positions(&p.destinations[0]), positions("s", 0..40));
    assert!(
        p.destinations[0].writes() >= 20,
        "batches of at most 2 records take at least 20 writes, not {}",
        p.destinations[0].writes()
    );
}

#[tokio::test]
async fn processors_see_the_batches_the_source_made() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sizes);
    let pass = ProcessorTask::new(
        "proc",
        Box::new(FnProcessor(move |rs: &[Record]| {
            seen.lock().unwrap().push(rs.len());
            rs.iter()
                .map(|r| ProcessedRecord::Single(r.clone()))
                .collect()
        })),
    );
    let mut p = simple(10, 1, vec![pass]);
    open_and_run(&mut p).await.unwrap();
    assert_eq!(*sizes.lock().unwrap(), vec![1; 10]);
    assert_eq!(p.source.acked(), positions("s", 0..10));
}

#[tokio::test]
async fn a_read_failing_after_ready_reads_comes_after_the_records_read_before_it() {
    let source = MemorySource::new("s", records("s", 10), 1)
        .exhausting()
        .fail_read_at(4);
    let mut p = one_destination(source, vec![], WorkerConfig::default());
    let err = open_and_run(&mut p).await.unwrap_err();
    assert!(err.to_string().contains("read failed"), "{err}");
    assert_eq!(written_positions(&p.destinations[0]), positions("s", 0..3));
    assert_eq!(p.source.acked(), positions("s", 0..3));
}

#[tokio::test]
async fn records_that_come_while_a_joined_read_waits_are_delivered_when_they_come() {
    // Not exhausting: once the 5 records are read, the next read waits for more.
    let source = MemorySource::new("s", records("s", 5), 1);
    let Pipeline {
        source,
        destinations,
        mut worker,
        ..
    } = one_destination(source, vec![], WorkerConfig::default());
    worker.open().await.unwrap();
    let stopper = worker.stopper();
    let run = tokio::spawn(async move { worker.run().await });
    wait_until("the first records are acked", || source.acked().len() == 5).await;
    source.push(records("t", 3));
    wait_until("records pushed later are acked", || {
        source.acked().len() == 8
    })
    .await;
    stopper.stop();
    run.await.unwrap().unwrap();
    let mut expected = positions("s", 0..5);
    expected.extend(positions("t", 0..3));
    assert_eq!(written_positions(&destinations[0]), expected);
}
