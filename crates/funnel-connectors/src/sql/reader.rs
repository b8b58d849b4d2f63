//! A source's reader task, as the SQL sources run it: a task reads the server and
//! sends batches through a short queue; `read` takes the next one; `teardown` tells
//! the task to stop and waits for it a moment; a source dropped without `teardown`
//! stops its task at once, which closes its connections, as the end of a killed
//! process would.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use funnel_core::ConnectorError;
use funnel_record::{Data, Metadata, Operation, Payload, Position, Record, StructuredData};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Batches waiting for `read`, at most.
const QUEUED_BATCHES: usize = 4;

/// Where the reader task sends its batches (and the error that ends it).
pub(crate) type BatchSender = mpsc::Sender<Result<Vec<Record>, ConnectorError>>;

type Batches = mpsc::Receiver<Result<Vec<Record>, ConnectorError>>;

/// The reader task of a source, and `H`, what the source keeps beside it while it runs.
pub(crate) struct ReaderTask<H = ()> {
    who: String,
    /// How long `teardown` waits for the task to stop before aborting it.
    grace: Duration,
    batches: tokio::sync::Mutex<Option<Batches>>,
    running: Mutex<Option<Running<H>>>,
    /// The snapshot rows the task has not sent yet (the source's backlog).
    snapshot_left: SnapshotLeft,
}

/// The handle of the running task.
struct Running<H> {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    // Only the postgres source keeps something beside its task.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    beside: H,
}

impl<H> Drop for Running<H> {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.task.abort();
    }
}

impl<H> ReaderTask<H> {
    /// No task yet; `who` starts the messages, `grace` is how long `stop` waits.
    pub(crate) fn new(who: &str, grace: Duration) -> Self {
        Self {
            who: who.to_owned(),
            grace,
            batches: tokio::sync::Mutex::new(None),
            running: Mutex::new(None),
            snapshot_left: SnapshotLeft::default(),
        }
    }

    /// The count of snapshot rows not sent yet, for the task to keep.
    pub(crate) fn snapshot_left(&self) -> SnapshotLeft {
        self.snapshot_left.clone()
    }

    /// The source's backlog: during the snapshot its rows not yet sent (counted when
    /// the snapshot starts), 0 after it, `None` before it is counted.
    pub(crate) fn backlog(&self) -> Option<u64> {
        self.snapshot_left.backlog()
    }

    /// Starts the task `run(batches, stop)`, keeping `beside` while it runs. An error
    /// `run` returns is the next `read`'s, unless the task was told to stop.
    pub(crate) async fn start<F, Fut>(&self, beside: H, run: F)
    where
        F: FnOnce(BatchSender, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = Result<(), ConnectorError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
        let (stop, mut stop_rx) = watch::channel(false);
        let reader = run(tx.clone(), stop_rx.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = reader.await {
                tokio::select! {
                    biased;
                    _ = stop_rx.wait_for(|stopped| *stopped) => {}
                    _ = tx.send(Err(e)) => {}
                }
            }
        });
        *self.batches.lock().await = Some(rx);
        *crate::util::lock(&self.running) = Some(Running { stop, task, beside });
    }

    /// Calls `f` with what is kept beside the task, while it runs.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn beside(&self, f: impl FnOnce(&H)) {
        if let Some(running) = &*crate::util::lock(&self.running) {
            f(&running.beside);
        }
    }

    /// The next batch from the task.
    pub(crate) async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let mut batches = self.batches.lock().await;
        let Some(rx) = batches.as_mut() else {
            return Err(ConnectorError::internal(format!(
                "{}: read before open",
                self.who
            )));
        };
        match rx.recv().await {
            Some(result) => result.map(Some),
            None => Err(ConnectorError::transient(format!(
                "{}: the reader stopped",
                self.who
            ))),
        }
    }

    /// Tells the task to stop and waits for it at most the grace period; a task stuck
    /// on the server is aborted then.
    pub(crate) async fn stop(&self) {
        let running = crate::util::lock(&self.running).take();
        if let Some(mut running) = running {
            running.stop.send_replace(true);
            let _ = tokio::time::timeout(self.grace, &mut running.task).await;
        }
        *self.batches.lock().await = None;
    }
}

/// The snapshot rows a source has not handed on yet, shared by the source (its
/// backlog) and its reader task. Kept plus one: 0 before the snapshot is counted, 1
/// once every row is sent.
#[derive(Clone, Default)]
pub(crate) struct SnapshotLeft(Arc<AtomicU64>);

impl SnapshotLeft {
    /// The snapshot, of `total` rows, starts.
    pub(crate) fn start(&self, total: u64) {
        self.0.store(total + 1, Ordering::Relaxed);
    }

    /// Counts `n` snapshot rows as sent.
    pub(crate) fn sent(&self, n: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (left > 1).then(|| left.saturating_sub(n as u64).max(1))
            });
    }

    /// The rows not yet sent: `None` before the snapshot is counted, 0 after it.
    pub(crate) fn backlog(&self) -> Option<u64> {
        self.0.load(Ordering::Relaxed).checked_sub(1)
    }
}

/// A snapshot row as a record.
pub(crate) fn snapshot_record(
    position: Position,
    metadata: &Metadata,
    key: Option<Data>,
    row: StructuredData,
) -> Record {
    Record {
        position,
        operation: Operation::Snapshot,
        metadata: metadata.clone(),
        key,
        payload: Payload {
            before: None,
            after: Some(Data::Structured(row)),
        },
    }
}
