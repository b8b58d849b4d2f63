//! Engine scenarios with in-memory connectors: the worker's behaviour as users see it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use funnel_core::{
    Error, Order, ProcessedRecord, ProcessorTask, RecordError, Task, Worker, WorkerConfig,
};
use funnel_record::{Data, Position, Record, Value, metadata};
use funnel_test_utils::{FnProcessor, MemoryDestination, MemorySource};

#[tokio::test]
async fn fan_out_to_two_and_three_destinations_writes_everything_and_acks_in_order() {
    for m in [2, 3] {
        let dests = (0..m)
            .map(|d| MemoryDestination::new(format!("d{d}")))
            .collect();
        let mut p = pipeline(
            MemorySource::new("s", records("s", 10), 3).exhausting(),
            vec![],
            dests,
            (1, 0),
            WorkerConfig::default(),
        );
        open_and_run(&mut p).await.unwrap();
        for d in &p.destinations {
            assert_eq!(written_positions(d), positions("s", 0..10));
        }
        assert_eq!(p.source.acked(), positions("s", 0..10));
    }
}

/// Asserts the DLQ holds one record, the one at `position`, nacked by `node` with `error`.
fn assert_one_dead_letter(dlq: &MemoryDestination, position: &str, error: &str, node: &str) {
    let dlq = dlq.written();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].position, position.into());
    assert_eq!(dlq[0].metadata.get(metadata::DLQ_NACK_ERROR), Some(error));
    assert_eq!(dlq[0].metadata.get(metadata::DLQ_NACK_NODE_ID), Some(node));
}

#[tokio::test]
async fn a_destination_nack_in_a_fan_out_goes_to_the_dlq_once_and_every_position_is_acked() {
    let failing = MemoryDestination::new("b").with_plan(Arc::new(|r: &Record| {
        (index_of(r) == 2).then(|| RecordError::msg("b cannot take it"))
    }));
    let mut p = fan_out(5, vec![MemoryDestination::new("a"), failing], (0, 0));
    open_and_run(&mut p).await.unwrap();
    assert_eq!(written_positions(&p.destinations[0]), positions("s", 0..5));
    assert_eq!(p.source.acked(), positions("s", 0..5));
    assert_one_dead_letter(&p.dlq, "s/2", "b cannot take it", "dest-1");
}

#[tokio::test]
async fn with_the_default_dlq_the_first_nack_stops_the_pipeline_with_the_records_own_error() {
    let mut p = simple(5, 5, vec![nack_at(&[2])]);
    let err = open_and_run(&mut p).await.unwrap_err();
    // The record's own error, then which record it was.
    assert_eq!(
        err.to_string(),
        "bad record 2 (the record at position \"s/2\", nacked by proc)"
    );
    assert!(
        !err.is_fatal(),
        "a nack with threshold 0 is transient: the pipeline restarts"
    );
    assert_eq!(p.source.acked(), positions("s", 0..2));
    assert!(p.dlq.written().is_empty());
    assert_eq!(
        written_positions(&p.destinations[0]),
        positions("s", 0..2),
        "i4: nothing after the nack was written"
    );
}

#[tokio::test]
async fn exceeding_a_nack_threshold_is_fatal_after_the_tolerated_nacks_are_in_the_dlq() {
    let mut p = pipeline(
        MemorySource::new("s", records("s", 6), 6).exhausting(),
        vec![nack_at(&[1, 3])],
        vec![MemoryDestination::new("d")],
        (3, 1),
        WorkerConfig::default(),
    );
    let err = open_and_run(&mut p).await.unwrap_err();
    assert!(err.is_fatal());
    assert_eq!(
        err.to_string(),
        "DLQ nack threshold exceeded (1/3), original error: bad record 3"
    );
    assert_eq!(p.source.acked(), positions("s", 0..3));
    assert_eq!(p.dlq.written().len(), 1);
}

#[tokio::test]
async fn a_window_of_zero_sends_every_nack_to_the_dlq_and_acks_everything() {
    let mut p = pipeline(
        MemorySource::new("s", records("s", 6), 2).exhausting(),
        vec![nack_at(&[0, 1, 4])],
        vec![MemoryDestination::new("d")],
        (0, 0),
        WorkerConfig::default(),
    );
    open_and_run(&mut p).await.unwrap();
    assert_eq!(p.source.acked(), positions("s", 0..6));
    let dlq: Vec<Position> = p.dlq.written().into_iter().map(|r| r.position).collect();
    assert_eq!(dlq, ["s/0", "s/1", "s/4"].map(Position::from));
    assert_eq!(
        written_positions(&p.destinations[0]),
        ["s/2", "s/3", "s/5"].map(Position::from)
    );
}

#[tokio::test]
async fn a_dlq_envelope_wraps_the_record_with_the_error_and_the_task_that_nacked_it() {
    let mut p = pipeline(
        MemorySource::new("s", records("s", 1), 1).exhausting(),
        vec![nack_at(&[0])],
        vec![MemoryDestination::new("d")],
        (0, 0),
        WorkerConfig::default(),
    );
    open_and_run(&mut p).await.unwrap();
    let env = &p.dlq.written()[0];
    assert_eq!(env.position, "s/0".into());
    assert_eq!(env.operation, funnel_record::Operation::Create);
    assert_eq!(env.key, None);
    assert_eq!(
        env.metadata.get(metadata::DLQ_NACK_ERROR),
        Some("bad record 0")
    );
    assert_eq!(env.metadata.get(metadata::DLQ_NACK_NODE_ID), Some("proc"));
    assert!(env.metadata.get(metadata::CREATED_AT).is_some());
    let Some(Data::Structured(after)) = &env.payload.after else {
        panic!("structured after")
    };
    assert_eq!(after["position"], Value::Bytes("s/0".into()));
    assert_eq!(after["operation"], Value::String("create".into()));
}

#[tokio::test]
async fn a_failing_dlq_is_fatal_and_nothing_after_the_nacked_record_is_acked() {
    let source = Arc::new(MemorySource::new("s", records("s", 4), 4).exhausting());
    let dest = Arc::new(MemoryDestination::new("d"));
    let dlq = Arc::new(MemoryDestination::new("dlq").fail_write_at(1));
    let mut worker = nack_2_worker(&source, &dest, &dlq);
    worker.open().await.unwrap();
    let err = worker.run().await.unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(
        err.to_string()
            .contains("failed to write 1 records to the DLQ"),
        "{err}"
    );
    assert_eq!(source.acked(), positions("s", 0..2));
}

#[tokio::test]
async fn a_record_without_a_position_stops_the_pipeline_before_anything_is_written() {
    let mut rs = records("s", 3);
    rs[1].position = Position::default();
    let mut p = pipeline(
        MemorySource::new("s", rs, 3).exhausting(),
        vec![],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
    let err = open_and_run(&mut p).await.unwrap_err();
    assert!(err.is_fatal());
    assert_eq!(err.code(), Some("pipeline.empty_source_position"));
    assert!(p.destinations[0].written().is_empty());
}

#[tokio::test]
async fn a_position_spelled_nil_and_repeated_positions_are_ordinary_positions() {
    let rs = vec![
        Record::new("<nil>", "a"),
        Record::new("same", "b"),
        Record::new("same", "c"),
    ];
    let splitter = ProcessorTask::new(
        "split",
        Box::new(FnProcessor(|rs: &[Record]| {
            rs.iter()
                .map(|r| ProcessedRecord::Multi(vec![r.clone(), r.clone()]))
                .collect()
        })),
    );
    let mut p = pipeline(
        MemorySource::new("s", rs, 3).exhausting(),
        vec![splitter],
        vec![MemoryDestination::new("a"), MemoryDestination::new("b")],
        (1, 0),
        WorkerConfig::default(),
    );
    open_and_run(&mut p).await.unwrap();
    assert_eq!(
        p.source.acked(),
        ["<nil>", "same", "same"].map(Position::from)
    );
    assert_eq!(p.destinations[1].written().len(), 6);
}

#[tokio::test]
async fn stats_count_what_was_read_written_acked_and_sent_to_the_dlq() {
    let config = WorkerConfig::default();
    let stats = config.stats.clone();
    let mut p = pipeline(
        MemorySource::new("s", records("s", 5), 2).exhausting(),
        vec![nack_at(&[1])],
        vec![MemoryDestination::new("a"), MemoryDestination::new("b")],
        (0, 0),
        config,
    );
    open_and_run(&mut p).await.unwrap();
    use funnel_core::WorkerStats as S;
    assert_eq!(S::get(&stats.read), 5);
    assert_eq!(S::get(&stats.written), 8);
    assert_eq!(S::get(&stats.acked), 5);
    assert_eq!(S::get(&stats.dlq), 1);
}

#[test]
fn a_worker_can_run_on_any_thread() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let p = pipeline(
        MemorySource::new("s", vec![], 1),
        vec![],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
    let mut worker = p.worker;
    let run = async move { worker.run().await };
    assert_send(&run);
}

/// The error of building a worker from `tasks` in `order`.
fn refused(tasks: Vec<Task>, order: Order) -> Error {
    Worker::new(tasks, order, memory_dlq(1, 0), WorkerConfig::default())
        .err()
        .expect("the pipeline is refused")
}

#[test]
fn an_order_naming_a_task_twice_is_refused() {
    let err = refused(
        vec![
            source_task(&Arc::new(MemorySource::new("s", vec![], 1))),
            destination_task("d", Arc::new(MemoryDestination::new("d"))),
        ],
        Order::new(vec![vec![1, 1], vec![]]),
    );
    assert_eq!(
        err.to_string(),
        "invalid task order: task d included multiple times in order"
    );
}

#[test]
fn the_first_task_must_be_a_source_and_every_leaf_a_destination() {
    let err = refused(
        vec![destination_task("d", Arc::new(MemoryDestination::new("d")))],
        Order::new(vec![vec![]]),
    );
    assert_eq!(
        err.to_string(),
        "invalid task order: first task must be a source task, got d"
    );
    let err = refused(
        vec![
            source_task(&Arc::new(MemorySource::new("s", vec![], 1))),
            nack_at(&[]).into(),
        ],
        Order::linear(2),
    );
    assert_eq!(
        err.to_string(),
        "invalid task order: last task proc must be a destination"
    );
}

#[test]
fn append_order_and_append_single_link_the_last_task_to_what_follows() {
    let o = Order::new(vec![vec![]])
        .append_single(vec![])
        .append_order(Order::linear(2));
    assert_eq!(o, Order::new(vec![vec![1], vec![2], vec![3], vec![]]));
    assert_eq!(
        Order::linear(2).increase(3),
        Order::new(vec![vec![4], vec![]])
    );
}

#[tokio::test]
async fn a_record_the_source_could_not_read_is_nacked_by_the_source_into_the_dlq() {
    for processors in [0, 1] {
        let mut input = records("s", 4);
        input[1]
            .metadata
            .insert(metadata::READ_ERROR, "file in.txt: line 2 is too long");
        input[1].payload.after = None;
        let trunk = if processors == 0 {
            Vec::new()
        } else {
            vec![nack_at(&[])]
        };
        let mut p = pipeline(
            MemorySource::new("s", input, 4).exhausting(),
            trunk,
            vec![MemoryDestination::new("d")],
            (0, 0),
            WorkerConfig::default(),
        );
        open_and_run(&mut p).await.unwrap();
        assert_eq!(p.source.acked(), positions("s", 0..4));
        assert_eq!(
            written_positions(&p.destinations[0]),
            ["s/0", "s/2", "s/3"].map(Position::from)
        );
        assert_one_dead_letter(&p.dlq, "s/1", "file in.txt: line 2 is too long", "source");
    }
}
