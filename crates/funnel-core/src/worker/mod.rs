//! The [`Worker`]: runs one source's pipeline, pipelined.
//!
//! ```text
//! reader ──(credits)──> writer per destination ──> ack reader per destination
//!   source.read +          branch processors,          matches acks FIFO
//!   trunk processors       write without waiting            │
//!        │                                                  v
//!        └── register ──> ledger ──> DLQ, credits back; position commit, source.ack
//! ```
//!
//! One module per stage: [`reader`], [`writer`], [`ack_reader`], and the ledger stage
//! in [`release`]; [`settle`] is what they tell the ledger, [`credits`] bounds what is
//! in flight, [`stage`] is what they share, [`tasks`] opens and closes the tasks.
//!
//! On a multi-threaded runtime each stage is a tokio task of its own, owning the tasks
//! it runs for the length of a run (the source and the trunk processors for the
//! reader, a branch's processors for its writer, the DLQ for the ledger): reading and
//! processing run on one core while encoding and writing run on another, and a
//! CPU-heavy processor never holds up the writers and ack readers. On a current-thread
//! runtime the same stage futures are joined on the caller's task, where handing a
//! batch on costs a poll rather than a task switch. Reading, processing, writing and
//! acking of different batches overlap, while everything each destination, the DLQ
//! and the source observe is what a stop-and-wait run would produce (see the
//! `funnel-test-utils` reference executor and the property tests comparing the two,
//! on both kinds of runtime).
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
mod runs;
mod settle;
mod stage;
mod tasks;
mod writer;

use std::sync::Arc;

use futures::future::{BoxFuture, join_all};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::ack_reader::ack_reader_stage;
pub use self::config::{WorkerConfig, WorkerStats};
use self::reader::{Reader, ReaderEnd, reader_stage};
use self::release::{Release, ledger_stage};
use self::stage::Shared;
use self::tasks::{BranchTasks, SourceHandle, Tasks};
use self::writer::{Writer, writer_stage};
use crate::dlq::Dlq;
use crate::error::{Error, Result};
use crate::order::Order;
use crate::task::{DestinationTask, ProcessorTask, SourceTask, Task};
use crate::telemetry::SourceWaits;

/// Stops a running worker from elsewhere.
#[derive(Clone, Debug)]
pub struct Stopper {
    stop: CancellationToken,
    abort: CancellationToken,
}

impl Stopper {
    /// Requests a graceful stop: no new reads; everything in flight is processed,
    /// written, acked and released before [`Worker::run`] returns.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops at once: reads, processor calls, writes and acks in progress are
    /// interrupted and nothing more is released. What was not released is read again
    /// after a restart. [`Worker::run`] returns `Ok` unless something failed first.
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    /// True once a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Runs the tasks of one source.
pub struct Worker {
    config: WorkerConfig,
    ids: Vec<String>,
    source: SourceHandle,
    /// Lent to the stages while a run is in progress; `None` after a run lost them (a
    /// stage panicked, or the run was dropped before it returned).
    tasks: Option<Tasks>,
    stopper: Stopper,
    exhausted: bool,
}

/// What a stage hands back when it ends.
enum Returned {
    Reader(SourceTask, Vec<ProcessorTask>, ReaderEnd),
    Writer(usize, Vec<ProcessorTask>),
    AckReader,
    Ledger(Dlq),
}

impl Worker {
    /// A worker running `tasks` in `order`, with `dlq` for nacked records.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOrder`] when the order is not a valid pipeline (see
    /// [`Order`]).
    pub fn new(tasks: Vec<Task>, order: Order, dlq: Dlq, config: WorkerConfig) -> Result<Self> {
        let binding = crate::telemetry::Binding {
            pipeline: &config.pipeline_id,
            name: config.name(),
        };
        let tasks = Tasks::new(tasks, &order, dlq, binding)?;
        tasks.source.source().report_lag(crate::LagReport::new(
            &config.pipeline_id,
            tasks.source.id(),
            Some(Arc::clone(&config.stats)),
        ));
        Ok(Self {
            ids: tasks.ids(),
            source: SourceHandle::new(
                tasks.source.id().to_owned(),
                Arc::clone(tasks.source.source()),
            ),
            tasks: Some(tasks),
            config,
            stopper: Stopper {
                stop: CancellationToken::new(),
                abort: CancellationToken::new(),
            },
            exhausted: false,
        })
    }

    /// A handle to stop the worker from elsewhere.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Stops the worker gracefully (see [`Stopper::stop`]).
    pub fn stop(&self) {
        self.stopper.stop();
    }

    /// True when the last [`run`](Self::run) ended because the source was exhausted.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// IDs of the tasks in open order: source, trunk processors, then per branch its
    /// processors and destination.
    pub fn task_ids(&self) -> Vec<&str> {
        self.ids.iter().map(String::as_str).collect()
    }

    fn tasks(&mut self) -> Result<&mut Tasks> {
        self.tasks.as_mut().ok_or_else(|| {
            Error::Internal(
                "the worker lost its tasks: an earlier run panicked or was dropped".into(),
            )
        })
    }

    /// Opens every task, then the DLQ. On failure, what was opened is closed again in
    /// reverse order, the source included.
    ///
    /// # Errors
    ///
    /// The first open failure.
    pub async fn open(&mut self) -> Result<()> {
        let Some(tasks) = self.tasks.as_mut() else {
            return self.tasks().map(|_| ());
        };
        let result = tasks.open(&mut self.source).await;
        if let Err(e) = &result {
            warn!(pipeline = %self.config.pipeline_id, error = %e, "open failed, rolling back");
        }
        result
    }

    /// Closes everything: the source (unless already torn down), processors and
    /// destinations in open order, then the DLQ.
    ///
    /// # Errors
    ///
    /// Every failure, each kept, in one [`Error::Close`].
    pub async fn close(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        if let Err(e) = self.source.teardown().await {
            errors.push(e);
        }
        match self.tasks.as_mut() {
            Some(tasks) => tasks.close(&mut errors).await,
            None => errors.push(Error::Internal(
                "processors, destinations and the DLQ were lost with an interrupted run".into(),
            )),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Close(errors))
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
    /// On a multi-threaded runtime each stage runs as a tokio task of its own; dropping
    /// this future aborts them, and the processors and DLQ they held are dropped with
    /// them.
    ///
    /// # Errors
    ///
    /// The first error: transient or fatal, see [`Error::is_fatal`].
    pub async fn run(&mut self) -> Result<()> {
        self.tasks()?;
        let Some(Tasks {
            source,
            trunk,
            branches,
            dlq,
        }) = self.tasks.take()
        else {
            return Err(Error::Internal("no tasks".into()));
        };
        let shared = Arc::new(Shared::new(&self.config, &self.stopper.abort));
        // One core per stage is only to be had on a multi-threaded runtime.
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let cap = self.config.channel_capacity.max(1);
        let (ledger_tx, ledger_rx) = mpsc::channel(cap * (2 * branches.len() + 1));
        // Processors see the batches the source made; without any, reads that are
        // ready at once may be joined.
        let join = trunk.is_empty() && branches.iter().all(|b| b.processors.is_empty());
        let mut stages: Vec<BoxFuture<'static, Returned>> = Vec::new();
        let mut writer_txs = Vec::with_capacity(branches.len());
        let mut destinations = Vec::with_capacity(branches.len());
        for (branch, tasks) in branches.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(cap);
            let (ack_tx, ack_rx) = mpsc::channel(cap * 4);
            writer_txs.push(tx);
            let writer = Writer {
                branch,
                processors: tasks.processors,
                destination: Arc::clone(&tasks.destination),
                rx,
                acker: ack_tx,
                ledger: ledger_tx.clone(),
                limits: self.config.retry,
                yield_after_write: multi_thread,
            };
            let s = Arc::clone(&shared);
            stages.push(Box::pin(async move {
                Returned::Writer(branch, writer_stage(writer, &s).await)
            }));
            let destination = Arc::clone(&tasks.destination);
            let (ledger, s) = (ledger_tx.clone(), Arc::clone(&shared));
            stages.push(Box::pin(async move {
                ack_reader_stage(branch, &destination, ack_rx, ledger, &s).await;
                Returned::AckReader
            }));
            destinations.push(tasks.destination);
        }
        let source_id = source.id().to_owned();
        let waits = SourceWaits::new(&self.config.pipeline_id, &source_id);
        let release = Release {
            waits: waits.clone(),
            source: Arc::clone(source.source()),
            source_id: source_id.clone(),
            dlq,
            committer: self.config.committer.clone(),
            pipeline: self.config.pipeline_id.clone(),
            pipeline_name: self.config.name().to_owned(),
            max_uncommitted: self.config.max_records_in_flight,
        };
        let s = Arc::clone(&shared);
        stages.push(Box::pin(async move {
            Returned::Ledger(ledger_stage(release, ledger_rx, &s).await)
        }));
        let reader = Reader {
            source,
            trunk,
            writers: writer_txs,
            ledger: ledger_tx,
            stop: self.stopper.stop.clone(),
            limits: self.config.retry,
            join,
            yield_after_hand_on: multi_thread,
            waits,
        };
        let s = Arc::clone(&shared);
        stages.push(Box::pin(async move {
            let (source, trunk, end) = reader_stage(reader, &s).await;
            Returned::Reader(source, trunk, end)
        }));

        let returned = if multi_thread {
            run_on_tasks(stages).await
        } else {
            // One core: the stages are joined on this task, where handing a batch on
            // costs a poll rather than a task switch.
            join_all(stages).await.into_iter().map(Ok).collect()
        };
        let end = self.take_back(returned, destinations, &shared);
        if let Some(e) = shared.take_error() {
            return Err(e);
        }
        if end == Some(ReaderEnd::Exhausted) {
            info!(
                source_id = %source_id,
                stop_requested = self.stopper.is_stopping(),
                "source exhausted its records and is stopping gracefully"
            );
            self.exhausted = true;
            self.source.teardown().await?;
        }
        Ok(())
    }

    /// Takes the tasks back from what the stages returned. A stage that panicked is an
    /// internal error, and what it held is lost.
    fn take_back(
        &mut self,
        returned: Vec<std::result::Result<Returned, JoinError>>,
        destinations: Vec<Arc<DestinationTask>>,
        shared: &Shared,
    ) -> Option<ReaderEnd> {
        let mut reader = None;
        let mut ledger = None;
        let mut writers: Vec<Option<Vec<ProcessorTask>>> =
            destinations.iter().map(|_| None).collect();
        for joined in returned {
            match joined {
                Ok(Returned::Reader(source, trunk, end)) => reader = Some((source, trunk, end)),
                Ok(Returned::Writer(branch, processors)) => writers[branch] = Some(processors),
                Ok(Returned::AckReader) => {}
                Ok(Returned::Ledger(dlq)) => ledger = Some(dlq),
                Err(e) => shared.fail(
                    0,
                    Error::Internal(format!("a stage of the worker stopped: {e}")),
                ),
            }
        }
        let (source, trunk, end) = reader?;
        let branches = writers
            .into_iter()
            .zip(destinations)
            .map(|(processors, destination)| {
                processors.map(|processors| BranchTasks {
                    processors,
                    destination,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        self.tasks = Some(Tasks {
            source,
            trunk,
            branches,
            dlq: ledger?,
        });
        Some(end)
    }
}

/// Runs each stage as a tokio task of its own (on a multi-threaded runtime they run in
/// parallel) and waits for all of them. Dropping this future aborts them.
async fn run_on_tasks(
    stages: Vec<BoxFuture<'static, Returned>>,
) -> Vec<std::result::Result<Returned, JoinError>> {
    let mut tasks = JoinSet::new();
    for stage in stages {
        tasks.spawn(stage);
    }
    let mut returned = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        returned.push(joined);
    }
    returned
}
