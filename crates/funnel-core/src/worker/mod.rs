//! The [`Worker`]: runs one source's pipeline, pipelined.
//!
//! ```text
//! reader ──(credits)──> writer per destination ──> ack reader per destination
//!   source.read +          branch processors,          matches acks FIFO
//!   trunk processors       write without waiting            │
//!        │                                                  v
//!        └── register ──> ledger ──> DLQ, position commit, source.ack, credits back
//! ```
//!
//! One module per stage: [`reader`], [`writer`], [`ack_reader`], and the ledger stage
//! in [`release`]; [`settle`] is what they tell the ledger, [`credits`] bounds what is
//! in flight, [`stage`] is what they share. Reading, processing, writing and acking of
//! different batches overlap, while everything each destination, the DLQ and the
//! source observe is what a stop-and-wait run would produce (see the
//! `funnel-test-utils` reference executor and the property tests comparing the two).
//!
//! - Credits bound the records and bytes read but not yet released (I5).
//! - The ledger releases positions strictly in read order, commits the last one, then
//!   acks the source (I1, I2).
//! - A record nacked by a trunk processor is a barrier: nothing read after it is handed
//!   to any destination before it is in the DLQ; a record nacked by a branch's own
//!   processor holds back only that branch (I4).

mod ack_reader;
mod config;
mod credits;
mod reader;
mod release;
mod settle;
mod stage;
mod writer;

use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use self::ack_reader::ack_reader_stage;
pub use self::config::{WorkerConfig, WorkerStats};
use self::reader::{Reader, ReaderEnd, reader_stage};
use self::release::{Release, ledger_stage};
use self::stage::Shared;
use self::writer::{Writer, writer_stage};
use crate::dlq::Dlq;
use crate::error::{Error, Result};
use crate::order::Order;
use crate::task::{DestinationTask, ProcessorTask, SourceTask, Task};

/// Asks a running worker to stop gracefully: no new reads; everything in flight is
/// written, acked and released before [`Worker::run`] returns.
#[derive(Clone, Debug)]
pub struct Stopper(CancellationToken);

impl Stopper {
    /// Requests the stop.
    pub fn stop(&self) {
        self.0.cancel();
    }

    /// True once a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.0.is_cancelled()
    }
}

struct BranchTasks {
    processors: Vec<ProcessorTask>,
    destination: DestinationTask,
}

/// Runs the tasks of one source.
pub struct Worker {
    config: WorkerConfig,
    source: SourceTask,
    trunk: Vec<ProcessorTask>,
    branches: Vec<BranchTasks>,
    dlq: Dlq,
    stop: CancellationToken,
    exhausted: bool,
    source_torn_down: bool,
}

impl Worker {
    /// A worker running `tasks` in `order`, with `dlq` for nacked records.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOrder`] when the order is not a valid pipeline (see
    /// [`Order`]).
    pub fn new(tasks: Vec<Task>, order: Order, mut dlq: Dlq, config: WorkerConfig) -> Result<Self> {
        let topology = order.topology(&tasks)?;
        let mut tasks: Vec<Option<Task>> = tasks
            .into_iter()
            .map(|mut t| {
                t.bind_pipeline(&config.pipeline_id);
                Some(t)
            })
            .collect();
        dlq.bind_pipeline(&config.pipeline_id);
        let mut take_processor = |i: usize| match tasks[i].take() {
            Some(Task::Processor(p)) => Ok(p),
            _ => Err(Error::InvalidOrder(format!("task {i} must be a processor"))),
        };
        let trunk = topology
            .trunk
            .iter()
            .map(|&i| take_processor(i))
            .collect::<Result<Vec<_>>>()?;
        let mut branches = Vec::with_capacity(topology.branches.len());
        for branch in &topology.branches {
            let processors = branch
                .processors
                .iter()
                .map(|&i| take_processor(i))
                .collect::<Result<Vec<_>>>()?;
            branches.push((processors, branch.destination));
        }
        let branches = branches
            .into_iter()
            .map(|(processors, d)| match tasks[d].take() {
                Some(Task::Destination(destination)) => Ok(BranchTasks {
                    processors,
                    destination,
                }),
                _ => Err(Error::InvalidOrder(format!(
                    "task {d} must be a destination"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let source = match tasks[0].take() {
            Some(Task::Source(s)) => s,
            _ => return Err(Error::InvalidOrder("first task must be a source".into())),
        };
        Ok(Self {
            config,
            source,
            trunk,
            branches,
            dlq,
            stop: CancellationToken::new(),
            exhausted: false,
            source_torn_down: false,
        })
    }

    /// A handle to stop the worker gracefully from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Stops the worker gracefully (see [`Stopper::stop`]).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// True when the last [`run`](Self::run) ended because the source was exhausted.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// IDs of the tasks in open order: source, trunk processors, then per branch its
    /// processors and destination.
    pub fn task_ids(&self) -> Vec<&str> {
        let mut ids = vec![self.source.id()];
        ids.extend(self.trunk.iter().map(ProcessorTask::id));
        for b in &self.branches {
            ids.extend(b.processors.iter().map(ProcessorTask::id));
            ids.push(b.destination.id());
        }
        ids
    }

    /// Opens every task, then the DLQ. On failure, what was opened is closed again in
    /// reverse order, the source included.
    ///
    /// # Errors
    ///
    /// The first open failure.
    pub async fn open(&mut self) -> Result<()> {
        let result = self.open_all().await;
        if let Err(e) = &result {
            warn!(pipeline = %self.config.pipeline_id, error = %e, "open failed, rolling back");
        }
        result
    }

    async fn open_all(&mut self) -> Result<()> {
        if let Err(e) = self.source.open().await {
            self.rollback(0, 0).await;
            return Err(e);
        }
        for i in 0..self.trunk.len() {
            if let Err(e) = self.trunk[i].open().await {
                self.rollback(i, 0).await;
                return Err(e);
            }
        }
        let trunk = self.trunk.len();
        for b in 0..self.branches.len() {
            for i in 0..self.branches[b].processors.len() {
                if let Err(e) = self.branches[b].processors[i].open().await {
                    close_processors(&mut self.branches[b].processors[..i]).await;
                    self.rollback(trunk, b).await;
                    return Err(e);
                }
            }
            if let Err(e) = self.branches[b].destination.open().await {
                close_processors(&mut self.branches[b].processors).await;
                self.rollback(trunk, b).await;
                return Err(e);
            }
        }
        if let Err(e) = self.dlq.open().await {
            self.rollback(trunk, self.branches.len()).await;
            return Err(e);
        }
        Ok(())
    }

    /// Closes the first `trunk` trunk processors and the first `branches` branches,
    /// in reverse order, then tears the source down. Errors are only logged.
    async fn rollback(&mut self, trunk: usize, branches: usize) {
        for b in self.branches[..branches].iter_mut().rev() {
            if let Err(e) = b.destination.close().await {
                error!(error = %e, "failed to execute rollback");
            }
            close_processors(&mut b.processors).await;
        }
        for p in self.trunk[..trunk].iter_mut().rev() {
            if let Err(e) = p.close().await {
                error!(error = %e, "failed to execute rollback");
            }
        }
        if let Err(e) = self.teardown_source().await {
            error!(error = %e, "failed to execute rollback");
        }
    }

    async fn teardown_source(&mut self) -> Result<()> {
        if self.source_torn_down {
            return Ok(());
        }
        self.source
            .source()
            .teardown()
            .await
            .map_err(|e| Error::Close(format!("failed to tear down source: {e}")))?;
        self.source_torn_down = true;
        Ok(())
    }

    /// Closes everything: the source (unless already torn down), processors and
    /// destinations in open order, then the DLQ.
    ///
    /// # Errors
    ///
    /// Every failure, joined into one [`Error::Close`].
    pub async fn close(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        if let Err(e) = self.teardown_source().await {
            errors.push(e.to_string());
        }
        for p in &mut self.trunk {
            if let Err(e) = p.close().await {
                errors.push(e.to_string());
            }
        }
        for b in &mut self.branches {
            for p in &mut b.processors {
                if let Err(e) = p.close().await {
                    errors.push(e.to_string());
                }
            }
            if let Err(e) = b.destination.close().await {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = self.dlq.close().await {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Close(errors.join("; ")))
        }
    }

    /// Runs the pipeline (the seed's `Do`) until it is stopped, the source is
    /// exhausted, or something fails.
    ///
    /// On a stop or exhaustion everything already read is written, acked and released
    /// first; an exhausted source is then torn down. A failure while reading or
    /// processing also lets what was handed on before it finish; a failure of a
    /// destination, the DLQ or an ack stops everything at once (what was not released
    /// is read again after a restart).
    ///
    /// # Errors
    ///
    /// The first error: transient or fatal, see [`Error::is_fatal`].
    pub async fn run(&mut self) -> Result<()> {
        let shared = Shared::new(&self.config);
        let branches = self.branches.len();
        let cap = self.config.channel_capacity.max(1);
        let (ledger_tx, ledger_rx) = mpsc::channel(cap * (2 * branches + 1));
        let mut writer_txs = Vec::with_capacity(branches);
        let mut writer_stages = Vec::with_capacity(branches);
        let mut ack_reader_stages = Vec::with_capacity(branches);
        for (branch, tasks) in self.branches.iter_mut().enumerate() {
            let (tx, rx) = mpsc::channel(cap);
            let (ack_tx, ack_rx) = mpsc::channel(cap * 4);
            writer_txs.push(tx);
            let destination = &tasks.destination;
            let writer = Writer {
                branch,
                processors: &mut tasks.processors,
                destination,
                rx,
                acker: ack_tx,
                ledger: ledger_tx.clone(),
                limits: self.config.retry,
            };
            writer_stages.push(writer_stage(writer, &shared));
            ack_reader_stages.push(ack_reader_stage(
                branch,
                destination,
                ack_rx,
                ledger_tx.clone(),
                &shared,
            ));
        }
        let source = Arc::clone(self.source.source());
        let source_id = self.source.id().to_owned();
        let reader = Reader {
            source: &mut self.source,
            trunk: &mut self.trunk,
            writers: writer_txs,
            ledger: ledger_tx,
            stop: &self.stop,
            limits: self.config.retry,
        };
        let release = Release {
            source: source.as_ref(),
            source_id: &source_id,
            dlq: &mut self.dlq,
            committer: self.config.committer.as_deref(),
            pipeline: &self.config.pipeline_id,
        };
        let (end, (), _, _) = tokio::join!(
            reader_stage(reader, &shared),
            ledger_stage(release, ledger_rx, &shared),
            join_all(writer_stages),
            join_all(ack_reader_stages)
        );
        if let Some(e) = shared.take_error() {
            return Err(e);
        }
        if end == ReaderEnd::Exhausted {
            info!(
                source_id = %source_id,
                stop_requested = self.stop.is_cancelled(),
                "source exhausted its records and is stopping gracefully"
            );
            self.exhausted = true;
            self.teardown_source().await.map_err(|e| {
                Error::Close(format!("source finished but failed to tear down: {e}"))
            })?;
        }
        Ok(())
    }
}

async fn close_processors(processors: &mut [ProcessorTask]) {
    for p in processors.iter_mut().rev() {
        if let Err(e) = p.close().await {
            error!(error = %e, "failed to execute rollback");
        }
    }
}
