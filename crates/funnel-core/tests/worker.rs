//! Engine scenarios with in-memory connectors: the worker's behaviour as users see it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use funnel_core::{
    ConnectorError, DestinationTask, Dlq, Error, Order, PositionCommitter, ProcessedRecord,
    ProcessorTask, RecordError, SourceTask, Task, Worker, WorkerConfig,
};
use funnel_record::{Data, Position, Record, Value, metadata};
use funnel_test_utils::{FnProcessor, MemoryDestination, MemorySource};

fn records(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("{prefix}/{i}"), format!("payload {i}")))
        .collect()
}

fn positions(prefix: &str, range: std::ops::Range<usize>) -> Vec<Position> {
    range
        .map(|i| Position::from(format!("{prefix}/{i}")))
        .collect()
}

fn written_positions(d: &MemoryDestination) -> Vec<Position> {
    d.written().into_iter().map(|r| r.position).collect()
}

/// A pipeline: source -> processors -> destinations (fan-out when several).
struct Pipeline {
    source: Arc<MemorySource>,
    destinations: Vec<Arc<MemoryDestination>>,
    dlq: Arc<MemoryDestination>,
    worker: Worker,
}

fn pipeline(
    source: MemorySource,
    processors: Vec<ProcessorTask>,
    destinations: Vec<MemoryDestination>,
    dlq_window: (usize, usize),
    config: WorkerConfig,
) -> Pipeline {
    let source = Arc::new(source);
    let destinations: Vec<Arc<MemoryDestination>> =
        destinations.into_iter().map(Arc::new).collect();
    let mut tasks: Vec<Task> = vec![SourceTask::new("source", source.clone()).into()];
    let n = processors.len();
    tasks.extend(processors.into_iter().map(Task::from));
    let mut order = Order::linear(n + 1);
    let last = order.0.len() - 1;
    order.0[last] = (0..destinations.len()).map(|d| n + 1 + d).collect();
    for (d, dest) in destinations.iter().enumerate() {
        tasks.push(DestinationTask::new(format!("dest-{d}"), dest.clone()).into());
        order.0.push(Vec::new());
    }
    let dlq = Arc::new(MemoryDestination::new("dlq"));
    let worker = Worker::new(
        tasks,
        order,
        Dlq::new("dlq", dlq.clone(), dlq_window.0, dlq_window.1),
        config,
    )
    .expect("valid pipeline");
    Pipeline {
        source,
        destinations,
        dlq,
        worker,
    }
}

fn nack_at(indices: &'static [usize]) -> ProcessorTask {
    ProcessorTask::new(
        "proc",
        Box::new(FnProcessor(move |rs: &[Record]| {
            rs.iter()
                .map(|r| {
                    let i: usize = r
                        .position
                        .to_string()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    if indices.contains(&i) {
                        ProcessedRecord::Error(RecordError::msg(format!("bad record {i}")))
                    } else {
                        ProcessedRecord::Single(r.clone())
                    }
                })
                .collect()
        })),
    )
}

fn index_of(r: &Record) -> usize {
    r.position
        .to_string()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn open_and_run(p: &mut Pipeline) -> Result<(), Error> {
    p.worker.open().await.expect("open");
    tokio::time::timeout(Duration::from_secs(10), p.worker.run())
        .await
        .expect("run finished")
}

/// A log writer shared with the test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_simple_stream_example_logs_the_opens_then_every_record_and_its_ack_in_order() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut p = pipeline(
        MemorySource::new("generator", records("generator", 10), 1),
        vec![],
        vec![MemoryDestination::new("printer")],
        (1, 0),
        WorkerConfig::default(),
    );
    p.worker.open().await.unwrap();
    let stopper = p.worker.stopper();
    let printer = p.destinations[0].clone();
    let (result, ()) = tokio::join!(p.worker.run(), async {
        // Stop once every record is written (however slow the machine is).
        let start = std::time::Instant::now();
        while printer.written().len() < 10 && start.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stopper.stop();
    });
    result.unwrap();
    p.worker.close().await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let opens: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("open"))
        .map(|l| l.trim())
        .collect();
    assert_eq!(
        opens,
        [
            "DEBUG opening source connector_id=source",
            "DEBUG source open connector_id=source",
            "DEBUG opening destination connector_id=dest-0",
            "DEBUG destination open connector_id=dest-0",
            "DEBUG opening destination connector_id=dlq",
            "DEBUG destination open connector_id=dlq",
        ]
    );
    let got: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("got record"))
        .map(|l| l.rsplit("position=").next().unwrap().to_owned())
        .collect();
    let acked: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("received ack"))
        .map(|l| l.rsplit("position=").next().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("generator/{i}")).collect();
    assert_eq!(got, expected);
    assert_eq!(acked, expected);
    // Each record is acked only after it was written.
    for i in 0..10 {
        let write = lines.iter().position(|l| {
            l.ends_with(&format!(
                "got record node_id=printer position=generator/{i}"
            ))
        });
        let ack = lines
            .iter()
            .position(|l| l.contains("received ack") && l.ends_with(&format!("generator/{i}")));
        assert!(
            write.unwrap() < ack.unwrap(),
            "record {i} acked before it was written"
        );
    }
}

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

#[tokio::test]
async fn a_destination_nack_in_a_fan_out_goes_to_the_dlq_once_and_every_position_is_acked() {
    let failing = MemoryDestination::new("b").with_plan(Arc::new(|r: &Record| {
        (index_of(r) == 2).then(|| RecordError::msg("b cannot take it"))
    }));
    let mut p = pipeline(
        MemorySource::new("s", records("s", 5), 5).exhausting(),
        vec![],
        vec![MemoryDestination::new("a"), failing],
        (0, 0),
        WorkerConfig::default(),
    );
    open_and_run(&mut p).await.unwrap();
    assert_eq!(written_positions(&p.destinations[0]), positions("s", 0..5));
    assert_eq!(p.source.acked(), positions("s", 0..5));
    let dlq = p.dlq.written();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].position, "s/2".into());
    assert_eq!(
        dlq[0].metadata.get(metadata::DLQ_NACK_ERROR),
        Some("b cannot take it")
    );
    assert_eq!(
        dlq[0].metadata.get(metadata::DLQ_NACK_NODE_ID),
        Some("dest-1")
    );
}

#[tokio::test]
async fn i2_a_slow_destination_keeps_the_source_from_advancing_past_its_records() {
    let slow = MemoryDestination::new("slow");
    let mut p = pipeline(
        MemorySource::new("s", records("s", 5), 5).exhausting(),
        vec![],
        vec![MemoryDestination::new("fast"), slow],
        (1, 0),
        WorkerConfig::default(),
    );
    p.destinations[1].pause();
    p.worker.open().await.unwrap();
    let slow = p.destinations[1].clone();
    let source = p.source.clone();
    let fast = p.destinations[0].clone();
    let (result, ()) = tokio::join!(p.worker.run(), async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            written_positions(&fast),
            positions("s", 0..5),
            "the fast destination wrote"
        );
        assert!(source.acked().is_empty(), "acked past the slow destination");
        slow.resume();
    });
    result.unwrap();
    assert_eq!(p.source.acked(), positions("s", 0..5));
}

#[tokio::test]
async fn with_the_default_dlq_the_first_nack_stops_the_pipeline_with_the_records_own_error() {
    let mut p = pipeline(
        MemorySource::new("s", records("s", 5), 5).exhausting(),
        vec![nack_at(&[2])],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
    let err = open_and_run(&mut p).await.unwrap_err();
    assert_eq!(err.to_string(), "bad record 2");
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
    let mut worker = Worker::new(
        vec![
            SourceTask::new("s", source.clone()).into(),
            nack_at(&[2]).into(),
            DestinationTask::new("d", dest.clone()).into(),
        ],
        Order::linear(3),
        Dlq::new("dlq", dlq.clone(), 0, 0),
        WorkerConfig::default(),
    )
    .unwrap();
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
    let mut p = pipeline(
        MemorySource::new("s", records("s", 3), 3).exhausting(),
        vec![stalling(usize::MAX, calls.clone())],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
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
    let mut p = pipeline(
        MemorySource::new("s", records("s", 3), 3).exhausting(),
        vec![stalling(2, calls.clone())],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
    open_and_run(&mut p).await.unwrap();
    assert_eq!(*calls.lock().unwrap(), 3);
    assert_eq!(p.source.acked(), positions("s", 0..3));
}

#[tokio::test]
async fn the_retry_attempt_cap_stops_a_slowly_shrinking_retry() {
    let calls = Arc::new(Mutex::new(0));
    let mut p = pipeline(
        MemorySource::new("s", records("s", 8), 8).exhausting(),
        vec![capped(1, calls.clone())],
        vec![MemoryDestination::new("d")],
        (1, 0),
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
    let mut p = pipeline(
        MemorySource::new("s", records("s", 5), 5).exhausting(),
        vec![capped(2, calls.clone())],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
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
    let mut p = pipeline(
        MemorySource::new("s", records("s", 6), 6).exhausting(),
        vec![splitter],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
    open_and_run(&mut p).await.unwrap();
    assert_eq!(p.source.acked(), positions("s", 0..6));
    assert_eq!(p.destinations[0].written().len(), 8);
}

#[tokio::test]
async fn a_failed_open_closes_what_was_opened_and_tears_the_source_down() {
    let source = Arc::new(MemorySource::new("s", records("s", 1), 1));
    let good = Arc::new(MemoryDestination::new("good"));
    let bad = Arc::new(MemoryDestination::new("bad").failing_open());
    let mut worker = Worker::new(
        vec![
            SourceTask::new("s", source.clone()).into(),
            DestinationTask::new("good", good.clone()).into(),
            DestinationTask::new("bad", bad.clone()).into(),
        ],
        Order::new(vec![vec![1, 2], vec![], vec![]]),
        Dlq::new("dlq", Arc::new(MemoryDestination::new("dlq")), 1, 0),
        WorkerConfig::default(),
    )
    .unwrap();
    let err = worker.open().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "task bad failed to open: destination refused to open"
    );
    assert!(!source.is_open(), "the source was left open");
    assert_eq!(source.teardowns(), 1);
    assert!(!good.is_open());
}

#[tokio::test]
async fn a_source_that_fails_to_open_is_still_torn_down() {
    let source = Arc::new(MemorySource::new("s", vec![], 1).failing_open());
    let mut worker = Worker::new(
        vec![
            SourceTask::new("s", source.clone()).into(),
            DestinationTask::new("d", Arc::new(MemoryDestination::new("d"))).into(),
        ],
        Order::linear(2),
        Dlq::new("dlq", Arc::new(MemoryDestination::new("dlq")), 1, 0),
        WorkerConfig::default(),
    )
    .unwrap();
    assert!(worker.open().await.is_err());
    assert_eq!(source.teardowns(), 1);
}

#[tokio::test]
async fn a_graceful_stop_drains_everything_in_flight_and_acks_all_that_was_read() {
    let mut p = pipeline(
        MemorySource::new("s", records("s", 1000), 10),
        vec![],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
    p.destinations[0].pause();
    p.worker.open().await.unwrap();
    let stopper = p.worker.stopper();
    let d = p.destinations[0].clone();
    let (result, ()) = tokio::join!(p.worker.run(), async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stopper.stop();
        tokio::time::sleep(Duration::from_millis(20)).await;
        d.resume();
    });
    result.unwrap();
    let read = p.source.read_count();
    assert!(read > 0);
    assert_eq!(
        p.source.acked(),
        positions("s", 0..read),
        "everything read is acked"
    );
    assert_eq!(
        written_positions(&p.destinations[0]),
        positions("s", 0..read)
    );
    assert!(!p.worker.is_exhausted());
}

#[tokio::test]
async fn an_exhausted_source_ends_the_run_cleanly_and_is_torn_down_after_the_last_ack() {
    let mut p = pipeline(
        MemorySource::new("s", records("s", 7), 3).exhausting(),
        vec![],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
    open_and_run(&mut p).await.unwrap();
    assert!(p.worker.is_exhausted());
    assert_eq!(p.source.acked(), positions("s", 0..7));
    assert_eq!(p.source.teardowns(), 1);
    p.worker.close().await.unwrap();
    assert_eq!(p.source.teardowns(), 1, "torn down once");
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
async fn i5_records_in_flight_stay_within_the_credits() {
    let mut p = pipeline(
        MemorySource::new("s", records("s", 1000), 4),
        vec![],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig {
            max_records_in_flight: 10,
            ..WorkerConfig::default()
        },
    );
    p.destinations[0].pause();
    p.worker.open().await.unwrap();
    let stopper = p.worker.stopper();
    let source = p.source.clone();
    let d = p.destinations[0].clone();
    let (result, ()) = tokio::join!(p.worker.run(), async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let read = source.read_count();
        assert!(
            read <= 10 + 4,
            "read {read} records with 10 credits and batches of 4"
        );
        stopper.stop();
        d.resume();
    });
    result.unwrap();
}

#[tokio::test]
async fn i4_nothing_after_a_processor_nacked_record_reaches_a_destination_before_it_is_in_the_dlq()
{
    let source = Arc::new(MemorySource::new("s", records("s", 6), 6).exhausting());
    let dest = Arc::new(MemoryDestination::new("d"));
    let dlq = Arc::new(MemoryDestination::new("dlq"));
    dlq.pause();
    let mut worker = Worker::new(
        vec![
            SourceTask::new("s", source.clone()).into(),
            nack_at(&[2]).into(),
            DestinationTask::new("d", dest.clone()).into(),
        ],
        Order::linear(3),
        Dlq::new("dlq", dlq.clone(), 0, 0),
        WorkerConfig::default(),
    )
    .unwrap();
    worker.open().await.unwrap();
    let (d, q) = (dest.clone(), dlq.clone());
    let (result, ()) = tokio::join!(worker.run(), async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            written_positions(&d),
            positions("s", 0..2),
            "records after the nack were written first"
        );
        q.resume();
    });
    result.unwrap();
    assert_eq!(
        written_positions(&dest),
        ["s/0", "s/1", "s/3", "s/4", "s/5"].map(Position::from)
    );
    assert_eq!(source.acked(), positions("s", 0..6));
}

/// Remembers commits and checks none comes after the source was acked.
struct Committer {
    source: Arc<MemorySource>,
    commits: Mutex<Vec<Position>>,
    late: Mutex<bool>,
}

#[async_trait]
impl PositionCommitter for Committer {
    async fn commit(&self, position: &Position) -> Result<(), ConnectorError> {
        if self.source.acked().contains(position) {
            *self.late.lock().unwrap() = true;
        }
        self.commits.lock().unwrap().push(position.clone());
        Ok(())
    }
}

#[tokio::test]
async fn i1_a_position_is_committed_before_the_source_is_acked() {
    let source = Arc::new(MemorySource::new("s", records("s", 20), 3).exhausting());
    let committer = Arc::new(Committer {
        source: source.clone(),
        commits: Mutex::new(Vec::new()),
        late: Mutex::new(false),
    });
    let mut worker = Worker::new(
        vec![
            SourceTask::new("s", source.clone()).into(),
            DestinationTask::new("d", Arc::new(MemoryDestination::new("d"))).into(),
        ],
        Order::linear(2),
        Dlq::new("dlq", Arc::new(MemoryDestination::new("dlq")), 1, 0),
        WorkerConfig {
            committer: Some(committer.clone()),
            ..WorkerConfig::default()
        },
    )
    .unwrap();
    worker.open().await.unwrap();
    worker.run().await.unwrap();
    assert!(
        !*committer.late.lock().unwrap(),
        "a position was acked before it was committed"
    );
    assert_eq!(
        committer.commits.lock().unwrap().last(),
        Some(&Position::from("s/19"))
    );
    assert_eq!(source.acked().len(), 20);
}

#[tokio::test]
async fn i3_a_record_nacked_by_every_destination_goes_to_the_dlq_once() {
    let nack2 = |name: &str| {
        MemoryDestination::new(name.to_owned()).with_plan(Arc::new(|r: &Record| {
            (index_of(r) == 1).then(|| RecordError::msg("no"))
        }))
    };
    let mut p = pipeline(
        MemorySource::new("s", records("s", 3), 3).exhausting(),
        vec![],
        vec![nack2("a"), nack2("b")],
        (0, 0),
        WorkerConfig::default(),
    );
    open_and_run(&mut p).await.unwrap();
    assert_eq!(p.dlq.written().len(), 1);
    assert_eq!(p.source.acked(), positions("s", 0..3));
}

/// A destination that acks a position it was never given.
struct WrongAcks(MemoryDestination);

#[async_trait]
impl funnel_core::Destination for WrongAcks {
    async fn open(&self) -> Result<(), ConnectorError> {
        self.0.open().await
    }
    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        self.0.write(records).await
    }
    async fn ack(&self) -> Result<Vec<funnel_core::DestinationAck>, ConnectorError> {
        let mut acks = self.0.ack().await?;
        acks[0].position = "elsewhere".into();
        Ok(acks)
    }
    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.0.teardown().await
    }
}

#[tokio::test]
async fn i6_an_ack_for_a_position_never_written_stops_the_pipeline_and_nothing_is_acked() {
    let source = Arc::new(MemorySource::new("s", records("s", 3), 3).exhausting());
    let mut worker = Worker::new(
        vec![
            SourceTask::new("s", source.clone()).into(),
            DestinationTask::new("d", Arc::new(WrongAcks(MemoryDestination::new("d")))).into(),
        ],
        Order::linear(2),
        Dlq::new("dlq", Arc::new(MemoryDestination::new("dlq")), 1, 0),
        WorkerConfig::default(),
    )
    .unwrap();
    worker.open().await.unwrap();
    let err = worker.run().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"task d: failed to validate acks: received unexpected ack, expected position "s/0" but got "elsewhere""#
    );
    assert!(source.acked().is_empty());
}

#[tokio::test]
async fn a_stop_while_the_source_waits_for_records_returns_promptly() {
    let mut p = pipeline(
        MemorySource::new("s", vec![], 1),
        vec![],
        vec![MemoryDestination::new("d")],
        (1, 0),
        WorkerConfig::default(),
    );
    p.worker.open().await.unwrap();
    p.worker.stop();
    tokio::time::timeout(Duration::from_secs(1), p.worker.run())
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn an_order_naming_a_task_twice_is_refused() {
    let err = Worker::new(
        vec![
            SourceTask::new("s", Arc::new(MemorySource::new("s", vec![], 1))).into(),
            DestinationTask::new("d", Arc::new(MemoryDestination::new("d"))).into(),
        ],
        Order::new(vec![vec![1, 1], vec![]]),
        Dlq::new("dlq", Arc::new(MemoryDestination::new("dlq")), 1, 0),
        WorkerConfig::default(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid task order: task d included multiple times in order"
    );
}

#[test]
fn the_first_task_must_be_a_source_and_every_leaf_a_destination() {
    let dlq = || Dlq::new("dlq", Arc::new(MemoryDestination::new("dlq")), 1, 0);
    let err = Worker::new(
        vec![DestinationTask::new("d", Arc::new(MemoryDestination::new("d"))).into()],
        Order::new(vec![vec![]]),
        dlq(),
        WorkerConfig::default(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid task order: first task must be a source task, got d"
    );
    let err = Worker::new(
        vec![
            SourceTask::new("s", Arc::new(MemorySource::new("s", vec![], 1))).into(),
            nack_at(&[]).into(),
        ],
        Order::linear(2),
        dlq(),
        WorkerConfig::default(),
    )
    .err()
    .unwrap();
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
    wa.open().await.unwrap();
    wb.open().await.unwrap();
    let (ra, rb) = tokio::join!(wa.run(), wb.run());
    ra.unwrap();
    rb.unwrap();
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
    wa.open().await.unwrap();
    wb.open().await.unwrap();
    let (ra, rb) = tokio::join!(wa.run(), wb.run());
    ra.unwrap();
    rb.unwrap();
    assert_eq!(dlq_a.written().len(), 1);
    assert_eq!(
        dlq_a.written()[0].metadata.get(metadata::DLQ_NACK_NODE_ID),
        Some("dest")
    );
    assert!(dlq_b.written().is_empty());
    assert_eq!(a.acked().len(), 5);
    assert_eq!(b.acked().len(), 5);
}

#[tokio::test]
async fn a_record_the_source_could_not_read_is_nacked_by_the_source_into_the_dlq() {
    for processors in [0, 1] {
        let mut input = records("s", 4);
        input[1]
            .metadata
            .insert(metadata::READ_ERROR, "file in.txt: line 2 is too long");
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
        let dlq = p.dlq.written();
        assert_eq!(dlq.len(), 1);
        assert_eq!(dlq[0].position, "s/1".into());
        assert_eq!(
            dlq[0].metadata.get(metadata::DLQ_NACK_ERROR),
            Some("file in.txt: line 2 is too long")
        );
        assert_eq!(
            dlq[0].metadata.get(metadata::DLQ_NACK_NODE_ID),
            Some("source")
        );
    }
}
