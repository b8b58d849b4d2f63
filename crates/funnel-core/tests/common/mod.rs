//! Helpers shared by the engine scenario tests: records, in-memory pipelines, and
//! waiting for a condition with a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use funnel_core::{
    Destination, DestinationTask, Dlq, Error, Order, ProcessedRecord, ProcessorTask, RecordError,
    SourceTask, Task, Worker, WorkerConfig,
};
use funnel_record::{Position, Record};
use funnel_test_utils::{FnProcessor, MemoryDestination, MemorySource};

/// `n` records with positions `prefix/0`, `prefix/1`, ...
pub(crate) fn records(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("{prefix}/{i}"), format!("payload {i}")))
        .collect()
}

/// The positions `prefix/i` for `i` in `range`.
pub(crate) fn positions(prefix: &str, range: std::ops::Range<usize>) -> Vec<Position> {
    range
        .map(|i| Position::from(format!("{prefix}/{i}")))
        .collect()
}

/// The positions a destination received, in order.
pub(crate) fn written_positions(d: &MemoryDestination) -> Vec<Position> {
    d.written().into_iter().map(|r| r.position).collect()
}

/// The `i` of a record at position `prefix/i`.
pub(crate) fn index_of(r: &Record) -> usize {
    r.position
        .to_string()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A DLQ writing to a fresh in-memory destination.
pub(crate) fn memory_dlq(window: usize, threshold: usize) -> Dlq {
    Dlq::new(
        "dlq",
        Arc::new(MemoryDestination::new("dlq")),
        window,
        threshold,
    )
}

/// A source task `s` reading from `source`.
pub(crate) fn source_task(source: &Arc<MemorySource>) -> Task {
    SourceTask::new("s", source.clone()).into()
}

/// A destination task `id` writing to `destination`.
pub(crate) fn destination_task(id: &str, destination: Arc<dyn Destination>) -> Task {
    DestinationTask::new(id, destination).into()
}

/// A worker from `source` (task `s`) to `destination` (task `d`), with a DLQ that
/// tolerates no nack.
pub(crate) fn source_to(
    source: &Arc<MemorySource>,
    destination: Arc<dyn Destination>,
    config: WorkerConfig,
) -> Worker {
    let tasks = vec![source_task(source), destination_task("d", destination)];
    Worker::new(tasks, Order::linear(2), memory_dlq(1, 0), config).expect("valid pipeline")
}

/// A pipeline: source -> processors -> destinations (fan-out when several).
pub(crate) struct Pipeline {
    pub(crate) source: Arc<MemorySource>,
    pub(crate) destinations: Vec<Arc<MemoryDestination>>,
    pub(crate) dlq: Arc<MemoryDestination>,
    pub(crate) worker: Worker,
}

/// Builds a [`Pipeline`]; destinations are `dest-0`, `dest-1`, ...
pub(crate) fn pipeline(
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

/// A [`Pipeline`] from `source` through `processors` to one destination `d`, with the
/// default DLQ (the first nack stops the pipeline).
pub(crate) fn one_destination(
    source: MemorySource,
    processors: Vec<ProcessorTask>,
    config: WorkerConfig,
) -> Pipeline {
    pipeline(
        source,
        processors,
        vec![MemoryDestination::new("d")],
        (1, 0),
        config,
    )
}

/// `n` records `s/i`, all in one batch, fanned out to `destinations` with the DLQ
/// window `dlq_window`.
pub(crate) fn fan_out(
    n: usize,
    destinations: Vec<MemoryDestination>,
    dlq_window: (usize, usize),
) -> Pipeline {
    let source = MemorySource::new("s", records("s", n), n).exhausting();
    pipeline(
        source,
        vec![],
        destinations,
        dlq_window,
        WorkerConfig::default(),
    )
}

/// The most common [`Pipeline`]: `n` records `s/i` read `batch` at a time until the
/// source is exhausted, `processors`, one destination `d`, the default settings.
pub(crate) fn simple(n: usize, batch: usize, processors: Vec<ProcessorTask>) -> Pipeline {
    let source = MemorySource::new("s", records("s", n), batch).exhausting();
    one_destination(source, processors, WorkerConfig::default())
}

/// Like [`simple`], but the source has 1,000 records and is never exhausted: the run
/// ends when it is stopped.
pub(crate) fn endless(batch: usize, processors: Vec<ProcessorTask>) -> Pipeline {
    let source = MemorySource::new("s", records("s", 1000), batch);
    one_destination(source, processors, WorkerConfig::default())
}

/// Source `s` -> `nack_at(&[2])` -> destination `d`, every nack to `dlq`.
pub(crate) fn nack_2_worker(
    source: &Arc<MemorySource>,
    dest: &Arc<MemoryDestination>,
    dlq: &Arc<MemoryDestination>,
) -> Worker {
    let tasks = vec![
        source_task(source),
        nack_at(&[2]).into(),
        destination_task("d", dest.clone()),
    ];
    let dlq = Dlq::new("dlq", dlq.clone(), 0, 0);
    Worker::new(tasks, Order::linear(3), dlq, WorkerConfig::default()).expect("valid pipeline")
}

/// Opens two workers, runs them side by side and checks both succeeded.
pub(crate) async fn run_both(a: &mut Worker, b: &mut Worker) {
    a.open().await.unwrap();
    b.open().await.unwrap();
    let (ra, rb) = tokio::join!(a.run(), b.run());
    ra.unwrap();
    rb.unwrap();
}

/// A processor `proc` nacking the records `s/i` for `i` in `indices`.
pub(crate) fn nack_at(indices: &'static [usize]) -> ProcessorTask {
    ProcessorTask::new(
        "proc",
        Box::new(FnProcessor(move |rs: &[Record]| {
            rs.iter()
                .map(|r| {
                    let i = index_of(r);
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

/// Opens the pipeline and runs it, failing the test after 10 s.
pub(crate) async fn open_and_run(p: &mut Pipeline) -> Result<(), Error> {
    p.worker.open().await.expect("open");
    tokio::time::timeout(Duration::from_secs(10), p.worker.run())
        .await
        .expect("run finished")
}

/// Waits until `condition` holds, checking every millisecond; fails the test after
/// 20 s of real time, however slow the machine.
pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A log writer shared with the test.
#[derive(Clone, Default)]
pub(crate) struct Logs(pub(crate) Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
