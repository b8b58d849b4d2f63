//! The worker's stages run as tasks of their own: a processor stuck in a call neither
//! holds up the writers and the ack path nor keeps a stop from ending the run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use funnel_core::{ConnectorError, Error, ProcessedRecord, Processor, ProcessorTask};
use funnel_record::{Position, Record};

/// How a [`Stuck`] processor's call waits.
enum Wait {
    /// Blocks its thread until the test sends (or hangs up): a script in a loop.
    Thread(Mutex<mpsc::Receiver<()>>),
    /// Awaits forever: a call waiting on a server that never answers.
    Forever,
}

/// Passes records through, except that the call given record `s/{at}` gets stuck.
struct Stuck {
    at: usize,
    wait: Wait,
    entered: Arc<AtomicBool>,
    torn_down: Arc<AtomicBool>,
}

impl Stuck {
    fn task(at: usize, wait: Wait) -> (ProcessorTask, Arc<AtomicBool>, Arc<AtomicBool>) {
        let entered = Arc::new(AtomicBool::new(false));
        let torn_down = Arc::new(AtomicBool::new(false));
        let stuck = Stuck {
            at,
            wait,
            entered: entered.clone(),
            torn_down: torn_down.clone(),
        };
        (
            ProcessorTask::new("stuck", Box::new(stuck)),
            entered,
            torn_down,
        )
    }
}

/// Waits until `flag` is set.
async fn wait_for(flag: &AtomicBool, what: &str) {
    wait_until(what, || flag.load(Ordering::SeqCst)).await;
}

#[async_trait]
impl Processor for Stuck {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        if records.iter().any(|r| index_of(r) == self.at) {
            self.entered.store(true, Ordering::SeqCst);
            match &self.wait {
                Wait::Thread(release) => {
                    // Either a release or the test hanging up ends the wait.
                    let _ = release.lock().unwrap().recv();
                }
                Wait::Forever => std::future::pending::<()>().await,
            }
        }
        records
            .iter()
            .cloned()
            .map(ProcessedRecord::Single)
            .collect()
    }

    async fn teardown(&mut self) -> Result<(), ConnectorError> {
        self.torn_down.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_blocking_its_thread_does_not_hold_up_the_writer_and_the_ack_path() {
    let (release, waiting) = mpsc::channel();
    let (stuck, entered, _) = Stuck::task(1, Wait::Thread(Mutex::new(waiting)));
    let mut p = simple(3, 1, vec![stuck]);
    p.worker.open().await.unwrap();
    let source = p.source.clone();
    let (result, ()) = tokio::join!(p.worker.run(), async move {
        wait_for(&entered, "the processor is stuck on s/1").await;
        // s/0 went through before: it is written, acked and released while the
        // reader's thread is blocked in the processor.
        wait_until("s/0 is acked at the source", || {
            source.acked() == [Position::from("s/0")]
        })
        .await;
        release.send(()).unwrap();
    });
    result.unwrap();
    assert_eq!(p.source.acked(), positions("s", 0..3));
}

#[tokio::test]
async fn a_processor_call_over_its_timeout_fails_the_run_and_the_processor_is_torn_down_when_it_returns()
 {
    let (release, waiting) = mpsc::channel::<()>();
    let (stuck, entered, torn_down) = Stuck::task(0, Wait::Thread(Mutex::new(waiting)));
    let stuck = stuck.with_timeout(Some(Duration::from_millis(50)));
    let mut p = simple(3, 3, vec![stuck]);
    let err = open_and_run(&mut p).await.unwrap_err();
    assert!(entered.load(Ordering::SeqCst));
    assert!(matches!(err, Error::ProcessorTimeout { .. }), "{err}");
    assert!(err.to_string().starts_with("task stuck: "), "{err}");
    assert!(!err.is_fatal(), "a restart may help");
    assert!(p.source.acked().is_empty());
    assert!(p.destinations[0].written().is_empty());
    assert!(
        !torn_down.load(Ordering::SeqCst),
        "torn down while in a call"
    );
    p.worker.close().await.unwrap();
    drop(release);
    wait_until("the abandoned processor is torn down", || {
        torn_down.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn an_abort_interrupts_a_processor_waiting_in_a_call_and_releases_nothing_more() {
    let (stuck, entered, torn_down) = Stuck::task(2, Wait::Forever);
    let mut p = endless(2, vec![stuck]);
    p.worker.open().await.unwrap();
    let stopper = p.worker.stopper();
    let source = p.source.clone();
    let (result, ()) = tokio::join!(p.worker.run(), async move {
        wait_for(&entered, "the processor is stuck on s/2").await;
        wait_until("s/0 and s/1 are released", || source.acked().len() == 2).await;
        stopper.abort();
    });
    result.unwrap();
    assert_eq!(p.source.acked(), positions("s", 0..2));
    assert_eq!(written_positions(&p.destinations[0]), positions("s", 0..2));
    assert!(!p.worker.is_exhausted());
    p.worker.close().await.unwrap();
    assert!(torn_down.load(Ordering::SeqCst), "closed with the worker");
}

#[tokio::test]
async fn a_graceful_stop_lets_a_processor_call_in_progress_finish_and_releases_its_records() {
    let (release, waiting) = mpsc::channel();
    let (stuck, entered, _) = Stuck::task(1, Wait::Thread(Mutex::new(waiting)));
    let stuck = stuck.with_timeout(Some(Duration::from_secs(30)));
    let mut p = endless(2, vec![stuck]);
    p.worker.open().await.unwrap();
    let stopper = p.worker.stopper();
    let (result, ()) = tokio::join!(p.worker.run(), async move {
        wait_for(&entered, "the processor is in its call").await;
        stopper.stop();
        release.send(()).unwrap();
    });
    result.unwrap();
    assert_eq!(p.source.acked(), positions("s", 0..2));
    assert_eq!(written_positions(&p.destinations[0]), positions("s", 0..2));
}
