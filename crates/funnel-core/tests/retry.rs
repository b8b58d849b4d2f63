//! Processors that return no result for some records: retried, bounded, never lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use funnel_core::{ProcessedRecord, ProcessorTask, WorkerConfig};
use funnel_record::Record;
use funnel_test_utils::{FnProcessor, MemorySource};

/// A processor that returns results for at most `cap` records per call.
fn capped(cap: usize, calls: Arc<Mutex<usize>>) -> ProcessorTask {
    ProcessorTask::new(
        "capped",
        Box::new(FnProcessor(move |rs: &[Record]| {
            *calls.lock().unwrap() += 1;
            rs.iter()
                .take(cap)
                .cloned()
                .map(ProcessedRecord::Single)
                .collect()
        })),
    )
}

/// A processor answering `Retry` for everything during its first `stalls` calls.
fn stalling(stalls: usize, calls: Arc<Mutex<usize>>) -> ProcessorTask {
    ProcessorTask::new(
        "stalling",
        Box::new(FnProcessor(move |rs: &[Record]| {
            let mut n = calls.lock().unwrap();
            *n += 1;
            if *n <= stalls {
                rs.iter().map(|_| ProcessedRecord::Retry).collect()
            } else {
                rs.iter().cloned().map(ProcessedRecord::Single).collect()
            }
        })),
    )
}

#[tokio::test]
async fn a_processor_that_never_resolves_its_records_fails_fatally_after_four_calls() {
    let calls = Arc::new(Mutex::new(0));
    let mut p = simple(3, 3, vec![stalling(usize::MAX, calls.clone())]);
    let err = open_and_run(&mut p).await.unwrap_err();
    assert!(err.is_fatal());
    assert_eq!(err.code(), Some("pipeline.retry_not_converging"));
    assert!(
        err.to_string()
            .starts_with("task stalling: retry is not converging"),
        "{err}"
    );
    assert_eq!(*calls.lock().unwrap(), 4);
    assert!(p.source.acked().is_empty());
    assert!(p.destinations[0].written().is_empty());
}

#[tokio::test]
async fn a_processor_that_stalls_twice_then_recovers_completes_normally() {
    let calls = Arc::new(Mutex::new(0));
    let mut p = simple(3, 3, vec![stalling(2, calls.clone())]);
    let result = open_and_run(&mut p).await;
    result.unwrap();
    assert_eq!(*calls.lock().unwrap(), 3);
    assert_eq!(p.source.acked(), positions("s", 0..3));
}

#[tokio::test]
async fn the_retry_attempt_cap_stops_a_slowly_shrinking_retry() {
    let calls = Arc::new(Mutex::new(0));
    let mut p = one_destination(
        MemorySource::new("s", records("s", 8), 8).exhausting(),
        vec![capped(1, calls.clone())],
        WorkerConfig {
            retry: funnel_core::RetryLimits {
                max_stall: 3,
                max_attempts: 3,
            },
            ..WorkerConfig::default()
        },
    );
    let err = open_and_run(&mut p).await.unwrap_err();
    assert!(err.to_string().contains("maximum of 3 attempts"), "{err}");
    assert_eq!(*calls.lock().unwrap(), 4);
    assert_eq!(p.source.acked(), positions("s", 0..4));
}

#[tokio::test]
async fn a_cap_two_processor_on_five_records_converges_in_three_calls_and_acks_each_once() {
    let calls = Arc::new(Mutex::new(0));
    let mut p = simple(5, 5, vec![capped(2, calls.clone())]);
    open_and_run(&mut p).await.unwrap();
    assert_eq!(*calls.lock().unwrap(), 3);
    assert_eq!(p.source.acked(), positions("s", 0..5));
    assert_eq!(written_positions(&p.destinations[0]), positions("s", 0..5));
}

#[tokio::test]
async fn a_record_retried_then_split_is_acked_once_and_nothing_is_skipped() {
    let mut seen = false;
    let splitter = ProcessorTask::new(
        "split",
        Box::new(FnProcessor(move |rs: &[Record]| {
            let mut out = Vec::new();
            for r in rs {
                if index_of(r) == 1 {
                    if !seen {
                        seen = true;
                        break;
                    }
                    out.push(ProcessedRecord::Multi(vec![
                        r.clone(),
                        r.clone(),
                        r.clone(),
                    ]));
                } else {
                    out.push(ProcessedRecord::Single(r.clone()));
                }
            }
            out
        })),
    );
    let mut p = simple(6, 6, vec![splitter]);
    open_and_run(&mut p).await.unwrap();
    assert_eq!(p.source.acked(), positions("s", 0..6));
    assert_eq!(p.destinations[0].written().len(), 8);
}
