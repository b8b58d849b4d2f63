//! What the stages of one run share: the first error, the two ways of stopping, the
//! credits and how far the ledger got; and the two helpers every stage waits with.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::{WorkerConfig, WorkerStats};
use super::credits::Credits;
use crate::error::Error;

/// State shared by the stages of one run.
pub(super) struct Shared {
    pub(super) stats: Arc<WorkerStats>,
    /// Cancelled to stop every stage at once.
    pub(super) abort: CancellationToken,
    /// Cancelled once an error was recorded: the reader stops reading, and what was
    /// handed on drains.
    pub(super) drain: CancellationToken,
    error: Mutex<Option<(u64, Error)>>,
    pub(super) credits: Credits,
    released: watch::Sender<Release>,
}

/// How far the ledger got.
#[derive(Clone, Copy, Debug)]
struct Release {
    /// Origin of the first record not released yet.
    through: u64,
    /// Origin from which records will never be released (their processing failed).
    stuck_from: u64,
}

impl Shared {
    /// State for one run; `abort` stops it at once (a child of it is cancelled when
    /// the run fails).
    pub(super) fn new(config: &WorkerConfig, abort: &CancellationToken) -> Self {
        Self {
            stats: Arc::clone(&config.stats),
            abort: abort.child_token(),
            drain: CancellationToken::new(),
            error: Mutex::new(None),
            credits: Credits::new(config.max_records_in_flight, config.max_bytes_in_flight),
            released: watch::Sender::new(Release {
                through: 0,
                stuck_from: u64::MAX,
            }),
        }
    }

    /// Remembers an error that concerns records from `origin` on, without stopping
    /// the other stages: what was handed on before it still finishes. Of several
    /// errors, the one earliest in read order is the one reported, as a
    /// one-batch-at-a-time run would have met it first.
    pub(super) fn record(&self, origin: u64, e: Error) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_none_or(|(o, _)| origin < *o) {
            *slot = Some((origin, e));
        }
        drop(slot);
        self.drain.cancel();
        // Records from `origin` on will never be released: nobody may wait for them.
        self.released
            .send_modify(|r| r.stuck_from = r.stuck_from.min(origin));
    }

    /// Remembers an error at `origin` and stops every stage at once.
    pub(super) fn fail(&self, origin: u64, e: Error) {
        self.record(origin, e);
        self.abort.cancel();
    }

    /// The error to report, if any.
    pub(super) fn take_error(&self) -> Option<Error> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map(|(_, e)| e)
    }

    /// Notes that every record before `through` is released.
    pub(super) fn released_through(&self, through: u64) {
        self.released.send_modify(|r| r.through = through);
    }

    /// Waits until slot `origin` is released; false when the run is aborting or the
    /// slot will never be released.
    pub(super) async fn wait_released(&self, origin: u64) -> bool {
        let mut rx = self.released.subscribe();
        tokio::select! {
            biased;
            () = self.abort.cancelled() => false,
            r = rx.wait_for(|r| r.through > origin || r.stuck_from <= origin) => {
                r.is_ok_and(|r| r.through > origin)
            }
        }
    }

    /// True once slot `origin` is released.
    pub(super) fn is_released(&self, origin: u64) -> bool {
        self.released.borrow().through > origin
    }

    /// Sends on a stage channel; false when the run is aborting or the receiver is
    /// gone.
    pub(super) async fn send<T>(&self, tx: &mpsc::Sender<T>, value: T) -> bool {
        if self.abort.is_cancelled() {
            return false;
        }
        let value = match tx.try_send(value) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(value)) => value,
        };
        tokio::select! {
            biased;
            () = self.abort.cancelled() => false,
            r = tx.send(value) => r.is_ok(),
        }
    }
}

/// Runs `fut` unless `token` is cancelled first (`None` then).
///
/// A future ready on its first poll never registers with the token: racing a token
/// costs a lock and a waiter-list insert and removal, which is most of the engine's
/// cost per batch when batches are small. Once `fut` is pending it is raced against
/// the token, so cancel safety is that of `fut`.
pub(super) async fn unless_cancelled<F: Future>(
    token: &CancellationToken,
    fut: F,
) -> Option<F::Output> {
    if token.is_cancelled() {
        return None;
    }
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(v) = futures::poll!(fut.as_mut()) {
        return Some(v);
    }
    tokio::select! {
        biased;
        () = token.cancelled() => None,
        v = fut => Some(v),
    }
}

/// Lets the tasks this stage just woke run elsewhere before it goes on.
///
/// On a multi-threaded tokio runtime a task woken from a worker thread waits in that
/// thread's "LIFO slot", which no other thread may steal: if the waking stage then
/// spends a long time in a call (a CPU-heavy processor, a source building records), the
/// woken writer or ack reader waits with it while the other cores idle. Yielding puts
/// this stage at the back of the queue and wakes an idle thread, so the woken stage
/// runs now and one of the two moves to the other core.
pub(super) async fn yield_to_woken() {
    tokio::task::yield_now().await;
}
