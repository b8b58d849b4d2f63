//! Several sources writing to the same destinations: each keeps its own order, acks
//! and DLQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use funnel_core::{
    DestinationTask, Dlq, Order, RecordError, SourceTask, Task, Worker, WorkerConfig,
};
use funnel_record::{Data, Record, metadata};
use funnel_test_utils::{MemoryDestination, MemorySource};

fn shared_worker(
    source: &Arc<MemorySource>,
    id: &str,
    shared: &[Arc<funnel_core::SharedDestination>],
) -> Worker {
    let mut tasks: Vec<Task> = vec![SourceTask::new(id, source.clone()).into()];
    let mut order = vec![Vec::new()];
    for (d, s) in shared.iter().enumerate() {
        order[0].push(tasks.len());
        order.push(Vec::new());
        tasks.push(DestinationTask::new(format!("dest-{d}"), s.handle()).into());
    }
    Worker::new(
        tasks,
        Order::new(order),
        Dlq::new(
            format!("dlq-{id}"),
            Arc::new(MemoryDestination::new("dlq")),
            0,
            0,
        ),
        WorkerConfig::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn sources_sharing_destinations_each_get_their_own_acks_even_with_colliding_positions() {
    let a = Arc::new(MemorySource::new("a", records("p", 30), 4).exhausting());
    let b = Arc::new(MemorySource::new("b", records("p", 30), 3).exhausting());
    let destinations: Vec<Arc<MemoryDestination>> = (0..2)
        .map(|d| Arc::new(MemoryDestination::new(format!("d{d}")).ack_chunk(5)))
        .collect();
    let shared: Vec<_> = destinations
        .iter()
        .map(|d| funnel_core::SharedDestination::new(d.clone()))
        .collect();
    let mut wa = shared_worker(&a, "a", &shared);
    let mut wb = shared_worker(&b, "b", &shared);
    run_both(&mut wa, &mut wb).await;
    assert_eq!(a.acked(), positions("p", 0..30));
    assert_eq!(b.acked(), positions("p", 0..30));
    for d in &destinations {
        assert_eq!(d.written().len(), 60);
        assert!(
            !d.saw_concurrent_writes(),
            "writes of two sources overlapped"
        );
    }
    wa.close().await.unwrap();
    assert!(
        destinations[0].is_open(),
        "closing one source closed the shared destination"
    );
    wb.close().await.unwrap();
    assert!(!destinations[0].is_open());
    assert_eq!(destinations[0].teardowns(), 1);
}

#[tokio::test]
async fn a_destination_nack_of_one_source_goes_to_that_sources_dlq_only() {
    let b = Arc::new(MemorySource::new("b", records("p", 5), 5).exhausting());
    let failing = Arc::new(
        MemoryDestination::new("d").with_plan(Arc::new(|r: &Record| {
            (r.payload.after == Some(Data::raw("payload 2")) && r.metadata.get("from") == Some("a"))
                .then(|| RecordError::msg("not from a"))
        })),
    );
    let shared = [funnel_core::SharedDestination::new(failing.clone())];
    let mut ra = records("p", 5);
    for r in &mut ra {
        r.metadata.insert("from", "a");
    }
    let a = Arc::new(MemorySource::new("a", ra, 5).exhausting());
    let dlq_a = Arc::new(MemoryDestination::new("dlq-a"));
    let dlq_b = Arc::new(MemoryDestination::new("dlq-b"));
    let make = |s: &Arc<MemorySource>, id: &str, dlq: &Arc<MemoryDestination>| {
        Worker::new(
            vec![
                SourceTask::new(id, s.clone()).into(),
                DestinationTask::new("dest", shared[0].handle()).into(),
            ],
            Order::linear(2),
            Dlq::new(format!("dlq-{id}"), dlq.clone(), 0, 0),
            WorkerConfig::default(),
        )
        .unwrap()
    };
    let mut wa = make(&a, "a", &dlq_a);
    let mut wb = make(&b, "b", &dlq_b);
    run_both(&mut wa, &mut wb).await;
    assert_eq!(dlq_a.written().len(), 1);
    assert_eq!(
        dlq_a.written()[0].metadata.get(metadata::DLQ_NACK_NODE_ID),
        Some("dest")
    );
    assert!(dlq_b.written().is_empty());
    assert_eq!(a.acked().len(), 5);
    assert_eq!(b.acked().len(), 5);
}
