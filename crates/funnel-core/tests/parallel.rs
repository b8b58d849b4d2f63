//! `workers: N`: a processor run as several instances keeps the output order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use funnel_core::{
    DestinationTask, Dlq, Order, Parallel, ProcessedRecord, Processor, ProcessorTask, SourceTask,
    Task, Worker, WorkerConfig,
};
use funnel_record::{Position, Record};
use funnel_test_utils::{MemoryDestination, MemorySource};

fn index_of(r: &Record) -> u64 {
    r.position.to_string().parse().unwrap()
}

/// Sleeps a pseudo-random while on some records, then tags each record with its
/// instance number; remembers the indices it saw.
struct Jittery {
    instance: usize,
    state: u64,
    seen: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl Jittery {
    fn next_random(&mut self) -> u64 {
        // xorshift64: deterministic per instance, different between instances.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
}

#[async_trait]
impl Processor for Jittery {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let roll = self.next_random();
            if roll.is_multiple_of(64) {
                tokio::time::sleep(Duration::from_micros(roll % 1500)).await;
            } else if roll.is_multiple_of(7) {
                tokio::task::yield_now().await;
            }
            self.seen.lock().unwrap()[self.instance].push(index_of(r));
            let mut r = r.clone();
            r.metadata.insert("instance", self.instance.to_string());
            out.push(ProcessedRecord::Single(r));
        }
        out
    }
}

fn jittery(n: usize, seen: &Arc<Mutex<Vec<Vec<u64>>>>) -> Parallel {
    *seen.lock().unwrap() = vec![Vec::new(); n];
    Parallel::new(
        (0..n)
            .map(|i| {
                Box::new(Jittery {
                    instance: i,
                    state: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
                    seen: Arc::clone(seen),
                }) as Box<dyn Processor>
            })
            .collect(),
    )
}

async fn run_pipeline(
    records: Vec<Record>,
    batch: usize,
    processor: Box<dyn Processor>,
) -> (Arc<MemorySource>, Arc<MemoryDestination>) {
    let source = Arc::new(MemorySource::new("s", records, batch).exhausting());
    let destination = Arc::new(MemoryDestination::new("d"));
    let tasks: Vec<Task> = vec![
        SourceTask::new("s", source.clone()).into(),
        ProcessorTask::new("p", processor).into(),
        DestinationTask::new("d", destination.clone()).into(),
    ];
    let dlq = Dlq::new("dlq", Arc::new(MemoryDestination::new("dlq")), 1, 0);
    let mut worker =
        Worker::new(tasks, Order::linear(3), dlq, WorkerConfig::default()).expect("valid");
    worker.open().await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), worker.run())
        .await
        .expect("finished")
        .unwrap();
    (source, destination)
}

fn numbered(n: u64) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(i.to_string(), format!("payload {i}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_with_random_delays_keep_the_order_of_100k_records() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (source, destination) =
        run_pipeline(numbered(100_000), 1000, Box::new(jittery(4, &seen))).await;
    let written: Vec<u64> = destination.written().iter().map(index_of).collect();
    assert_eq!(written, (0..100_000).collect::<Vec<_>>());
    assert_eq!(source.acked().len(), 100_000);
    let seen = seen.lock().unwrap();
    for (i, indices) in seen.iter().enumerate() {
        assert!(
            indices.len() >= 20_000,
            "instance {i} did a fair share of the work: {}",
            indices.len()
        );
        assert!(
            indices.windows(2).all(|w| w[0] < w[1]),
            "instance {i} saw its records in order"
        );
    }
    let instances: std::collections::BTreeSet<String> = destination
        .written()
        .iter()
        .map(|r| r.metadata.get("instance").unwrap().to_string())
        .collect();
    assert_eq!(instances.len(), 4, "every instance wrote records");
}

/// Counts the records it has processed so far: per-instance state.
struct Counter(u64);

#[async_trait]
impl Processor for Counter {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        records
            .iter()
            .map(|r| {
                self.0 += 1;
                let mut r = r.clone();
                r.metadata.insert("count", self.0.to_string());
                ProcessedRecord::Single(r)
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_keeps_its_own_state_across_batches() {
    let mut parallel = Parallel::new(vec![Box::new(Counter(0)), Box::new(Counter(0))]);
    let batch = numbered(4);
    for round in 1..=3u64 {
        let out = parallel.process(&batch).await;
        let counts: Vec<u64> = out
            .iter()
            .map(|p| match p {
                ProcessedRecord::Single(r) => r.metadata.get("count").unwrap().parse().unwrap(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // Instance 0 takes records 0-1, instance 1 records 2-3, every time.
        let base = (round - 1) * 2;
        assert_eq!(counts, vec![base + 1, base + 2, base + 1, base + 2]);
    }
}

/// Answers only the first `cap` records of each call.
struct Capped(usize);

#[async_trait]
impl Processor for Capped {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        records
            .iter()
            .take(self.0)
            .cloned()
            .map(ProcessedRecord::Single)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_answer_from_one_instance_drops_the_answers_after_it() {
    let mut parallel = Parallel::new(vec![Box::new(Capped(1)), Box::new(Capped(10))]);
    let out = parallel.process(&numbered(6)).await;
    // Instance 0 answered one of its three records; instance 1's answers come after
    // the unanswered ones, so they are dropped and fed again later.
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], ProcessedRecord::Single(r) if r.position == Position::from("0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_answers_from_parallel_instances_still_deliver_every_record_once_in_order() {
    let (source, destination) = run_pipeline(
        numbered(1000),
        100,
        Box::new(Parallel::new(vec![
            Box::new(Capped(7)),
            Box::new(Capped(3)),
            Box::new(Capped(50)),
        ])),
    )
    .await;
    let written: Vec<u64> = destination.written().iter().map(index_of).collect();
    assert_eq!(written, (0..1000).collect::<Vec<_>>());
    assert_eq!(source.acked().len(), 1000);
}

/// Tags records in place with its instance number; refuses odd positions.
struct InPlace(usize);

#[async_trait]
impl Processor for InPlace {
    async fn process(&mut self, _: &[Record]) -> Vec<ProcessedRecord> {
        unreachable!("the engine processes in place")
    }

    async fn process_in_place(&mut self, records: &mut [Record]) -> Vec<ProcessedRecord> {
        records
            .iter_mut()
            .map(|r| {
                if index_of(r) % 2 == 1 {
                    return ProcessedRecord::Error(funnel_core::RecordError::msg("odd"));
                }
                r.metadata.insert("instance", self.0.to_string());
                ProcessedRecord::Unchanged
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_changed_in_place_by_parallel_instances_arrive_changed_and_in_order() {
    let parallel = Parallel::new(
        (0..3)
            .map(|i| Box::new(InPlace(i)) as Box<dyn Processor>)
            .collect(),
    );
    let source = Arc::new(MemorySource::new("s", numbered(3000), 300).exhausting());
    let destination = Arc::new(MemoryDestination::new("d"));
    let dlq_destination = Arc::new(MemoryDestination::new("dlq"));
    let tasks: Vec<Task> = vec![
        SourceTask::new("s", source.clone()).into(),
        ProcessorTask::new("p", Box::new(parallel)).into(),
        DestinationTask::new("d", destination.clone()).into(),
    ];
    let dlq = Dlq::new("dlq", dlq_destination.clone(), 0, 0);
    let mut worker =
        Worker::new(tasks, Order::linear(3), dlq, WorkerConfig::default()).expect("valid");
    worker.open().await.unwrap();
    worker.run().await.unwrap();
    let written = destination.written();
    let evens: Vec<u64> = written.iter().map(index_of).collect();
    assert_eq!(evens, (0..3000).step_by(2).collect::<Vec<_>>());
    assert!(written.iter().all(|r| r.metadata.get("instance").is_some()));
    // The refused records reach the DLQ as they came in: not tagged.
    let dead = dlq_destination.written();
    assert_eq!(dead.len(), 1500);
    assert!(
        dead.iter()
            .all(|r| !format!("{:?}", r.payload.after).contains("instance"))
    );
    assert_eq!(source.acked().len(), 3000);
}
