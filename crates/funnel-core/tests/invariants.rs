//! The worker's invariants (I1-I6 of DESIGN.md) and its lifecycle: open, stop,
//! exhaustion, close.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use funnel_core::{
    ConnectorError, Error, Order, PositionCommitter, RecordError, Worker, WorkerConfig,
};
use funnel_record::{Position, Record};
use funnel_test_utils::{MemoryDestination, MemorySource};

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

/// A worker from `source` to a memory destination with `config`, committing positions
/// to `committer`.
fn committing_worker(
    source: &Arc<MemorySource>,
    committer: Arc<dyn PositionCommitter>,
    config: WorkerConfig,
) -> Worker {
    let config = WorkerConfig {
        committer: Some(committer),
        ..config
    };
    source_to(source, Arc::new(MemoryDestination::new("d")), config)
}

#[tokio::test]
async fn i1_a_position_is_committed_before_the_source_is_acked() {
    let source = Arc::new(MemorySource::new("s", records("s", 20), 3).exhausting());
    let committer = Arc::new(Committer {
        source: source.clone(),
        commits: Mutex::new(Vec::new()),
        late: Mutex::new(false),
    });
    let mut worker = committing_worker(&source, committer.clone(), WorkerConfig::default());
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
async fn i2_a_slow_destination_keeps_the_source_from_advancing_past_its_records() {
    let slow = MemoryDestination::new("slow");
    let mut p = fan_out(5, vec![MemoryDestination::new("fast"), slow], (1, 0));
    p.destinations[1].pause();
    p.worker.open().await.unwrap();
    let slow = p.destinations[1].clone();
    let source = p.source.clone();
    let fast = p.destinations[0].clone();
    let (result, ()) = tokio::join!(p.worker.run(), async move {
        // Both wrote everything; the slow one acks nothing until it resumes.
        wait_until("both destinations wrote", || {
            fast.written().len() == 5 && slow.written().len() == 5
        })
        .await;
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

#[tokio::test]
async fn i4_nothing_after_a_processor_nacked_record_reaches_a_destination_before_it_is_in_the_dlq()
{
    let source = Arc::new(MemorySource::new("s", records("s", 6), 6).exhausting());
    let dest = Arc::new(MemoryDestination::new("d"));
    let dlq = Arc::new(MemoryDestination::new("dlq"));
    dlq.pause();
    let mut worker = nack_2_worker(&source, &dest, &dlq);
    worker.open().await.unwrap();
    let (d, q) = (dest.clone(), dlq.clone());
    let (result, ()) = tokio::join!(worker.run(), async move {
        // The nacked record is written to the DLQ, which does not ack it yet.
        wait_until("the DLQ got the nacked record", || q.written().len() == 1).await;
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

// Paused time: the sleep below returns only once every stage waits (the clock
// advances when the runtime is idle), so the reader has read all it ever will.
#[tokio::test(start_paused = true)]
async fn i5_records_in_flight_stay_within_the_credits() {
    let mut p = one_destination(
        MemorySource::new("s", records("s", 1000), 4),
        vec![],
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
        wait_until("the reader used its credits", || source.read_count() >= 10).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
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

/// Holds every commit until the test lets commits through, and notes a commit that
/// comes after its position was acked.
struct HeldCommits {
    source: Arc<MemorySource>,
    gate: tokio::sync::Semaphore,
    started: std::sync::atomic::AtomicUsize,
    late: Mutex<bool>,
}

#[async_trait]
impl PositionCommitter for HeldCommits {
    async fn commit(&self, position: &Position) -> Result<(), ConnectorError> {
        if self.source.acked().contains(position) {
            *self.late.lock().unwrap() = true;
        }
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        Ok(())
    }
}

// Paused time, as in the test above: the sleep returns once every stage waits.
#[tokio::test(start_paused = true)]
async fn a_commit_in_flight_does_not_hold_up_reading_and_its_records_are_acked_only_after_it() {
    let source = Arc::new(MemorySource::new("s", records("s", 1000), 4).exhausting());
    let committer = Arc::new(HeldCommits {
        source: source.clone(),
        gate: tokio::sync::Semaphore::new(0),
        started: Default::default(),
        late: Mutex::new(false),
    });
    let config = WorkerConfig {
        max_records_in_flight: 10,
        ..WorkerConfig::default()
    };
    let mut worker = committing_worker(&source, committer.clone(), config);
    worker.open().await.unwrap();
    let (s, c) = (source.clone(), committer.clone());
    let (result, ()) = tokio::join!(worker.run(), async move {
        wait_until("a commit is in flight", || {
            c.started.load(std::sync::atomic::Ordering::SeqCst) >= 1
        })
        .await;
        // Released records gave their credits back: reading goes on past the credit
        // window while the commit waits...
        wait_until("the reader reads past the credit window", || {
            s.read_count() > 10 + 4
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // ...but only until a credit window of released records waits for the commit.
        let read = s.read_count();
        assert!(
            read <= 2 * (10 + 4),
            "read {read} records with 10 credits, batches of 4 and one commit held"
        );
        assert!(
            s.acked().is_empty(),
            "records were acked before their commit: {:?}",
            s.acked()
        );
        assert_eq!(c.started.load(std::sync::atomic::Ordering::SeqCst), 1);
        c.gate.add_permits(1_000_000);
    });
    result.unwrap();
    assert!(
        !*committer.late.lock().unwrap(),
        "a position was acked before it was committed"
    );
    assert_eq!(source.acked(), positions("s", 0..1000));
}

/// Commits at once, without waiting for anything outside the run: each commit only
/// yields to the scheduler a few times (0 to 3, varying from commit to commit), as a
/// store does that hands the commit to a thread of its own and finishes before the
/// ledger looks again.
struct QuickCommits {
    commits: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl PositionCommitter for QuickCommits {
    async fn commit(&self, _: &Position) -> Result<(), ConnectorError> {
        let n = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..(n * 7 + n / 3) % 4 {
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

/// Runs 600 records through a worker with `credits` records in flight, source batches
/// of `batch` and a committer that finishes at once; fails if the run stops making
/// progress.
async fn run_with_quick_commits(credits: usize, batch: usize) {
    let n = 600;
    let source = Arc::new(MemorySource::new("s", records("s", n), batch).exhausting());
    let committer = Arc::new(QuickCommits {
        commits: Default::default(),
    });
    let config = WorkerConfig {
        max_records_in_flight: credits,
        ..WorkerConfig::default()
    };
    let mut worker = committing_worker(&source, committer, config);
    worker.open().await.unwrap();
    let run = tokio::time::timeout(Duration::from_secs(10), worker.run()).await;
    let Ok(result) = run else {
        panic!(
            "the run stopped making progress ({credits} credits, batches of {batch}): \
             {} records read, {} acked",
            source.read_count(),
            source.acked().len()
        );
    };
    result.unwrap();
    assert_eq!(source.acked(), positions("s", 0..n));
}

#[tokio::test]
async fn commits_that_finish_at_once_never_leave_released_records_waiting_with_no_credits_left() {
    for credits in 1..=8 {
        for batch in 1..=credits + 1 {
            run_with_quick_commits(credits, batch).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_that_finish_at_once_never_stall_a_run_on_several_threads() {
    for credits in 1..=8 {
        for batch in 1..=credits + 1 {
            run_with_quick_commits(credits, batch).await;
        }
    }
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
    let (source, err) = run_with_wrong_acks().await;
    assert_eq!(
        err.to_string(),
        r#"task d: failed to validate acks: received unexpected ack, expected position "s/0" but got "elsewhere""#
    );
    assert!(source.acked().is_empty());
}

#[tokio::test]
async fn an_ack_protocol_violation_is_fatal_and_names_the_destination() {
    let (_, err) = run_with_wrong_acks().await;
    assert!(err.is_fatal(), "a restart would meet the same bug: {err}");
    assert_eq!(err.code(), Some("pipeline.ack_protocol_violation"));
    assert!(err.to_string().starts_with("task d: "), "{err}");
}

/// Runs three records to a destination `d` whose first ack is for a position it was
/// never given; returns the source and the error the run ended with.
async fn run_with_wrong_acks() -> (Arc<MemorySource>, Error) {
    let source = Arc::new(MemorySource::new("s", records("s", 3), 3).exhausting());
    let mut worker = source_to(
        &source,
        Arc::new(WrongAcks(MemoryDestination::new("d"))),
        WorkerConfig::default(),
    );
    worker.open().await.unwrap();
    let err = worker.run().await.unwrap_err();
    (source, err)
}

#[tokio::test]
async fn a_failed_open_closes_what_was_opened_and_tears_the_source_down() {
    let source = Arc::new(MemorySource::new("s", records("s", 1), 1));
    let good = Arc::new(MemoryDestination::new("good"));
    let bad = Arc::new(MemoryDestination::new("bad").failing_open());
    let mut worker = Worker::new(
        vec![
            source_task(&source),
            destination_task("good", good.clone()),
            destination_task("bad", bad.clone()),
        ],
        Order::new(vec![vec![1, 2], vec![], vec![]]),
        memory_dlq(1, 0),
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
    let mut worker = source_to(
        &source,
        Arc::new(MemoryDestination::new("d")),
        WorkerConfig::default(),
    );
    assert!(worker.open().await.is_err());
    assert_eq!(source.teardowns(), 1);
}

#[tokio::test]
async fn a_graceful_stop_drains_everything_in_flight_and_acks_all_that_was_read() {
    let mut p = endless(10, vec![]);
    p.destinations[0].pause();
    p.worker.open().await.unwrap();
    let stopper = p.worker.stopper();
    let d = p.destinations[0].clone();
    let (result, ()) = tokio::join!(p.worker.run(), async move {
        wait_until("records are in flight", || !d.written().is_empty()).await;
        stopper.stop();
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
    let mut p = simple(7, 3, vec![]);
    open_and_run(&mut p).await.unwrap();
    assert!(p.worker.is_exhausted());
    assert_eq!(p.source.acked(), positions("s", 0..7));
    assert_eq!(p.source.teardowns(), 1);
    p.worker.close().await.unwrap();
    assert_eq!(p.source.teardowns(), 1, "torn down once");
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
