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
//! The stages are futures joined on the worker's task: reading, processing, writing
//! and acking of different batches overlap, while everything each destination, the DLQ
//! and the source observe is what a stop-and-wait run would produce (see the
//! `funnel-test-utils` reference executor and the property tests comparing the two).
//!
//! - Credits bound the records and bytes read but not yet released (I5).
//! - The ledger releases positions strictly in read order, commits the last one, then
//!   acks the source (I1, I2).
//! - A record nacked by a trunk processor is a barrier: nothing read after it is handed
//!   to any destination before it is in the DLQ; a record nacked by a branch's own
//!   processor holds back only that branch (I4).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use funnel_record::{Position, Record};
use futures::future::join_all;
use metrics::{Counter, Histogram, counter, histogram};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::batch::Batch;
use crate::chain::{RetryLimits, Segment, run_chain};
use crate::dlq::{Dlq, NackedRecord};
use crate::error::{ConnectorErrorKind, Error, RecordError, Result};
use crate::ledger::{Ledger, NackKey, Released, SlotInit};
use crate::order::Order;
use crate::plugin::{DestinationAck, PositionCommitter, Source};
use crate::task::{DestinationTask, ProcessorTask, SourceTask, Task};
use crate::telemetry::{PIPELINE_EXECUTION_DURATION, RECORDS_ACKED};

/// Settings of a worker.
#[derive(Clone)]
pub struct WorkerConfig {
    /// The pipeline's ID (a metric label).
    pub pipeline_id: String,
    /// At most this many source records read but not yet released (plus one batch).
    pub max_records_in_flight: usize,
    /// At most this many bytes (key + payload) read but not yet released (plus one
    /// batch).
    pub max_bytes_in_flight: usize,
    /// Bounds on retrying records a processor gave no result for.
    pub retry: RetryLimits,
    /// Where positions are committed before the source is acked.
    pub committer: Option<Arc<dyn PositionCommitter>>,
    /// Batches queued between two stages.
    pub channel_capacity: usize,
    /// Counters the worker adds to, for progress lines and summaries.
    pub stats: Arc<WorkerStats>,
}

/// Running totals of one worker (or of every worker sharing it), updated per batch.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Source records read.
    pub read: std::sync::atomic::AtomicU64,
    /// Records acked by destinations (a record written to two destinations counts twice).
    pub written: std::sync::atomic::AtomicU64,
    /// Source records released to the source (written everywhere, filtered or in the DLQ).
    pub acked: std::sync::atomic::AtomicU64,
    /// Records written to the DLQ.
    pub dlq: std::sync::atomic::AtomicU64,
}

impl WorkerStats {
    fn add(counter: &std::sync::atomic::AtomicU64, n: usize) {
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            pipeline_id: "pipeline".into(),
            // Two batches of the default size (1,000) plus the one being read: enough to
            // keep reading, writing and acking overlapped, while bounding memory where
            // `size_hint` undercounts it (a ~400 B structured record costs ~7 KB of heap:
            // peak RSS of generator -> file was 86 MB at 8,192 and 34 MB at 2,048).
            max_records_in_flight: 2048,
            max_bytes_in_flight: 8 << 20,
            retry: RetryLimits::default(),
            committer: None,
            channel_capacity: 8,
            stats: Arc::default(),
        }
    }
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("pipeline_id", &self.pipeline_id)
            .field("max_records_in_flight", &self.max_records_in_flight)
            .field("max_bytes_in_flight", &self.max_bytes_in_flight)
            .field("retry", &self.retry)
            .field("committer", &self.committer.is_some())
            .field("channel_capacity", &self.channel_capacity)
            .field("stats", &self.stats)
            .finish()
    }
}

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
        let mut acker_stages = Vec::with_capacity(branches);
        for (b, branch) in self.branches.iter_mut().enumerate() {
            let (tx, rx) = mpsc::channel(cap);
            let (ack_tx, ack_rx) = mpsc::channel(cap * 4);
            writer_txs.push(tx);
            let destination = &branch.destination;
            writer_stages.push(writer_stage(
                b,
                &mut branch.processors,
                destination,
                rx,
                ack_tx,
                ledger_tx.clone(),
                &shared,
                self.config.retry,
            ));
            acker_stages.push(acker_stage(
                b,
                destination,
                ack_rx,
                ledger_tx.clone(),
                &shared,
            ));
        }
        let source = Arc::clone(self.source.source());
        let source_id = self.source.id().to_owned();
        let reader = reader_stage(
            &mut self.source,
            &mut self.trunk,
            writer_txs,
            ledger_tx,
            &shared,
            &self.stop,
            self.config.retry,
        );
        let ledger = ledger_stage(
            source.as_ref(),
            &source_id,
            &mut self.dlq,
            self.config.committer.as_deref(),
            ledger_rx,
            &shared,
            &self.config.pipeline_id,
        );
        let (end, (), _, _) = tokio::join!(
            reader,
            ledger,
            join_all(writer_stages),
            join_all(acker_stages)
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

/// State shared by the stages of one run.
struct Shared {
    stats: Arc<WorkerStats>,
    abort: CancellationToken,
    /// Cancelled once an error was recorded: the reader stops reading, and what was
    /// handed on drains.
    drain: CancellationToken,
    error: Mutex<Option<(u64, Error)>>,
    credits: Credits,
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
    fn new(config: &WorkerConfig) -> Self {
        Self {
            stats: Arc::clone(&config.stats),
            abort: CancellationToken::new(),
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
    fn record(&self, origin: u64, e: Error) {
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
    fn fail(&self, origin: u64, e: Error) {
        self.record(origin, e);
        self.abort.cancel();
    }

    fn take_error(&self) -> Option<Error> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map(|(_, e)| e)
    }

    /// Waits until slot `origin` is released; false when the run is aborting or the
    /// slot will never be released.
    async fn wait_released(&self, origin: u64) -> bool {
        let mut rx = self.released.subscribe();
        tokio::select! {
            biased;
            () = self.abort.cancelled() => false,
            r = rx.wait_for(|r| r.through > origin || r.stuck_from <= origin) => {
                r.is_ok_and(|r| r.through > origin)
            }
        }
    }

    fn is_released(&self, origin: u64) -> bool {
        self.released.borrow().through > origin
    }
}

/// Records and bytes in flight, bounded.
struct Credits {
    max_records: usize,
    max_bytes: usize,
    used: Mutex<(usize, usize)>,
    notify: Notify,
}

impl Credits {
    fn new(max_records: usize, max_bytes: usize) -> Self {
        Self {
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
            used: Mutex::new((0, 0)),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_room(&self) -> bool {
        let used = self.lock();
        used.0 < self.max_records && used.1 < self.max_bytes
    }

    async fn available(&self) {
        loop {
            let notified = self.notify.notified();
            {
                let used = self.lock();
                if used.0 < self.max_records && used.1 < self.max_bytes {
                    return;
                }
            }
            notified.await;
        }
    }

    fn take(&self, records: usize, bytes: usize) {
        let mut used = self.lock();
        used.0 += records;
        used.1 += bytes;
    }

    fn give_back(&self, records: usize, bytes: usize) {
        {
            let mut used = self.lock();
            used.0 = used.0.saturating_sub(records);
            used.1 = used.1.saturating_sub(bytes);
        }
        self.notify.notify_waiters();
    }
}

/// Records handed to the destinations: shared by every branch.
struct Delivery {
    batch: Batch,
    /// Pipeline-order number of the batch's first record (orders nacks).
    piece_base: u64,
    /// A trunk-nacked origin not yet in the DLQ when this was handed on: records after
    /// it may be processed by the branch but not written before it is released (I4).
    barrier: Option<u64>,
    /// `size_hint` of each record, when the reader computed them already (records
    /// unchanged since the read): the ack reader's byte metric then needs no second
    /// walk over structured payloads.
    sizes: Option<Vec<u32>>,
}

/// What the ledger hears.
enum LedgerEvent {
    Register {
        base: u64,
        read_at: Instant,
        slots: Vec<SlotInit>,
        nacks: Vec<(u64, NackKey, NackedRecord)>,
    },
    Resolve {
        /// (origin, tokens consumed), run-length encoded.
        origins: Vec<(u64, u32)>,
        nacks: Vec<(u64, NackKey, NackedRecord)>,
    },
}

fn push_origin(origins: &mut Vec<(u64, u32)>, origin: u64, count: u32) {
    match origins.last_mut() {
        Some((o, c)) if *o == origin => *c += count,
        _ => origins.push((origin, count)),
    }
}

fn nacked(batch: &Batch, p: usize, task: &Arc<str>) -> NackedRecord {
    NackedRecord {
        record: batch.dlq_record(p).clone(),
        error: batch.statuses()[p]
            .error
            .clone()
            .unwrap_or_else(|| RecordError::msg("record was nacked without an error")),
        task: Arc::clone(task),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReaderEnd {
    Stopped,
    Exhausted,
    Failed,
}

/// What the reader does with a processed batch, in pipeline order.
enum Step {
    Deliver(Delivery),
    Barrier(u64),
}

async fn reader_stage(
    source: &mut SourceTask,
    trunk: &mut [ProcessorTask],
    writers: Vec<mpsc::Sender<Arc<Delivery>>>,
    ledger: mpsc::Sender<LedgerEvent>,
    shared: &Shared,
    stop: &CancellationToken,
    limits: RetryLimits,
) -> ReaderEnd {
    let trunk_ids: Vec<Arc<str>> = trunk.iter().map(|t| Arc::from(t.id())).collect();
    let branches = u32::try_from(writers.len()).unwrap_or(u32::MAX);
    let mut piece_seq = 0u64;
    let mut barrier: Option<u64> = None;
    loop {
        if shared.abort.is_cancelled() || shared.drain.is_cancelled() {
            return ReaderEnd::Failed;
        }
        if stop.is_cancelled() {
            return ReaderEnd::Stopped;
        }
        if !shared.credits.has_room() {
            tokio::select! {
                biased;
                () = shared.abort.cancelled() => return ReaderEnd::Failed,
                () = shared.drain.cancelled() => return ReaderEnd::Failed,
                () = stop.cancelled() => return ReaderEnd::Stopped,
                () = shared.credits.available() => {}
            }
        }
        let started = Instant::now();
        let read = {
            let mut read = std::pin::pin!(source.read_unmetered());
            match futures::poll!(read.as_mut()) {
                std::task::Poll::Ready(read) => read,
                std::task::Poll::Pending => tokio::select! {
                    biased;
                    () = shared.abort.cancelled() => return ReaderEnd::Failed,
                    () = shared.drain.cancelled() => return ReaderEnd::Failed,
                    () = stop.cancelled() => return ReaderEnd::Stopped,
                    read = read => read,
                },
            }
        };
        let batch = match read {
            Ok(batch) => batch,
            Err(Error::Read { source: e, .. }) if e.kind() == ConnectorErrorKind::Exhausted => {
                return ReaderEnd::Exhausted;
            }
            Err(e) => {
                shared.record(u64::MAX, e);
                return ReaderEnd::Failed;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let read_at = Instant::now();
        let base = batch.origins()[0];
        let mut slots: Vec<SlotInit> = batch
            .records()
            .iter()
            .map(|r| SlotInit {
                position: r.position.clone(),
                tokens: 0,
                bytes: u32::try_from(r.size_hint()).unwrap_or(u32::MAX),
                stuck: false,
            })
            .collect();
        let bytes: usize = slots.iter().map(|s| s.bytes as usize).sum();
        source.observe_read(started, slots.len(), bytes);
        shared.credits.take(slots.len(), bytes);
        WorkerStats::add(&shared.stats.read, slots.len());

        let mut segments = Vec::with_capacity(1);
        let failed = if trunk.is_empty() {
            segments.push(Segment::Deliver(batch));
            None
        } else {
            run_chain(trunk, batch, limits, &mut segments).await.err()
        };
        let mut nacks = Vec::new();
        let mut steps = Vec::with_capacity(segments.len());
        for segment in segments {
            match segment {
                Segment::Deliver(mut batch) => {
                    batch.take_filtered();
                    for &o in batch.origins() {
                        slots[(o - base) as usize].tokens += branches;
                    }
                    let piece_base = piece_seq;
                    piece_seq += batch.len() as u64;
                    // Without trunk processors the records are the ones just sized.
                    let sizes = trunk
                        .is_empty()
                        .then(|| slots.iter().map(|s| s.bytes).collect());
                    steps.push(Step::Deliver(Delivery {
                        batch,
                        piece_base,
                        barrier: None,
                        sizes,
                    }));
                }
                Segment::Done(batch) => piece_seq += batch.len() as u64,
                Segment::Nack(batch, task) => {
                    let mut last = None;
                    for (p, &o) in batch.origins().iter().enumerate() {
                        if last != Some(o) {
                            nacks.push((
                                o,
                                (piece_seq + p as u64, 0),
                                nacked(&batch, p, &trunk_ids[task]),
                            ));
                            last = Some(o);
                        }
                    }
                    piece_seq += batch.len() as u64;
                    if let Some(o) = last {
                        steps.push(Step::Barrier(o));
                    }
                }
            }
        }
        if let Some((from, _)) = &failed {
            for slot in slots.iter_mut().skip(from.saturating_sub(base) as usize) {
                slot.stuck = true;
            }
        }
        let register = LedgerEvent::Register {
            base,
            read_at,
            slots,
            nacks,
        };
        if !send(shared, &ledger, register).await {
            return ReaderEnd::Failed;
        }
        for step in steps {
            match step {
                Step::Barrier(origin) => barrier = Some(origin),
                Step::Deliver(delivery) => {
                    if !deliver(delivery, &mut barrier, &writers, shared).await {
                        return ReaderEnd::Failed;
                    }
                }
            }
        }
        if let Some((origin, e)) = failed {
            shared.record(origin, e);
            return ReaderEnd::Failed;
        }
    }
}

/// Sends on a stage channel; false when the run is aborting or the receiver is gone.
async fn send<T>(shared: &Shared, tx: &mpsc::Sender<T>, value: T) -> bool {
    if shared.abort.is_cancelled() {
        return false;
    }
    let value = match tx.try_send(value) {
        Ok(()) => return true,
        Err(mpsc::error::TrySendError::Closed(_)) => return false,
        Err(mpsc::error::TrySendError::Full(value)) => value,
    };
    tokio::select! {
        biased;
        () = shared.abort.cancelled() => false,
        r = tx.send(value) => r.is_ok(),
    }
}

/// Runs `fut` unless `token` is cancelled first (`None` then).
///
/// A future ready on its first poll never registers with the token: racing a token
/// costs a lock and a waiter-list insert and removal, which is most of the engine's
/// cost per batch when batches are small. Once `fut` is pending it is raced against
/// the token, so cancel safety is that of `fut`.
async fn unless_cancelled<F: std::future::Future>(
    token: &CancellationToken,
    fut: F,
) -> Option<F::Output> {
    if token.is_cancelled() {
        return None;
    }
    let mut fut = std::pin::pin!(fut);
    if let std::task::Poll::Ready(v) = futures::poll!(fut.as_mut()) {
        return Some(v);
    }
    tokio::select! {
        biased;
        () = token.cancelled() => None,
        v = fut => Some(v),
    }
}

/// Hands `delivery` to every writer, with the barrier in effect (writers hold back
/// what follows it).
async fn deliver(
    mut delivery: Delivery,
    barrier: &mut Option<u64>,
    writers: &[mpsc::Sender<Arc<Delivery>>],
    shared: &Shared,
) -> bool {
    if barrier.is_some_and(|origin| shared.is_released(origin)) {
        *barrier = None;
    }
    delivery.barrier = *barrier;
    hand_on(delivery, writers, shared).await
}

async fn hand_on(
    delivery: Delivery,
    writers: &[mpsc::Sender<Arc<Delivery>>],
    shared: &Shared,
) -> bool {
    let delivery = Arc::new(delivery);
    for tx in writers {
        if !send(shared, tx, Arc::clone(&delivery)).await {
            return false;
        }
    }
    true
}

/// Per branch: what one input origin of a delivery became.
#[derive(Debug)]
struct Unit {
    origin: u64,
    inputs: u32,
    outstanding: u32,
    key: NackKey,
    nack: Option<NackedRecord>,
}

/// A write waiting for its acks.
struct Written {
    delivery: Arc<Delivery>,
    /// The records of the delivery that were written.
    range: std::ops::Range<usize>,
    /// For branches with processors: what the written records descend from.
    units: Option<Arc<Mutex<Vec<Unit>>>>,
}

#[allow(clippy::too_many_arguments)]
async fn writer_stage(
    branch: usize,
    processors: &mut [ProcessorTask],
    destination: &DestinationTask,
    mut rx: mpsc::Receiver<Arc<Delivery>>,
    acker: mpsc::Sender<Written>,
    ledger: mpsc::Sender<LedgerEvent>,
    shared: &Shared,
    limits: RetryLimits,
) {
    let ids: Vec<Arc<str>> = processors.iter().map(|t| Arc::from(t.id())).collect();
    // Nacked origins not yet released: what follows them is not written yet (I4).
    let mut barriers: Vec<u64> = Vec::new();
    loop {
        let Some(Some(delivery)) = unless_cancelled(&shared.abort, rx.recv()).await else {
            return;
        };
        if let Some(origin) = delivery.barrier {
            add_barrier(&mut barriers, origin);
        }
        if processors.is_empty() {
            if !write_delivery(delivery, &mut barriers, None, destination, &acker, shared).await {
                return;
            }
            continue;
        }
        // A branch with its own processors works on its own copy.
        let mut segments = Vec::new();
        // On an error, like a trunk processor's error: what the chain handed on before it
        // still finishes; then this branch takes nothing more, which stops the reader.
        let failed = run_chain(processors, delivery.batch.clone(), limits, &mut segments)
            .await
            .err();
        let stuck_from = failed.as_ref().map_or(u64::MAX, |(origin, _)| *origin);
        let mut units: Vec<Unit> = Vec::new();
        for (i, &o) in delivery.batch.origins().iter().enumerate() {
            match units.last_mut() {
                Some(u) if u.origin == o => u.inputs += 1,
                _ => units.push(Unit {
                    origin: o,
                    inputs: 1,
                    outstanding: 0,
                    key: (delivery.piece_base + i as u64, branch),
                    nack: None,
                }),
            }
        }
        let unit_of = |units: &mut Vec<Unit>, o: u64| -> Option<usize> {
            units.binary_search_by_key(&o, |u| u.origin).ok()
        };
        let mut steps = Vec::with_capacity(segments.len());
        for segment in segments {
            match segment {
                Segment::Deliver(mut batch) => {
                    batch.take_filtered();
                    for &o in batch.origins() {
                        if let Some(u) = unit_of(&mut units, o) {
                            units[u].outstanding += 1;
                        }
                    }
                    steps.push(Step::Deliver(Delivery {
                        batch,
                        piece_base: delivery.piece_base,
                        barrier: None,
                        sizes: None,
                    }));
                }
                Segment::Done(_) => {}
                Segment::Nack(batch, task) => {
                    let mut last = None;
                    for (p, &o) in batch.origins().iter().enumerate() {
                        if let Some(u) = unit_of(&mut units, o)
                            && units[u].nack.is_none()
                        {
                            units[u].nack = Some(nacked(&batch, p, &ids[task]));
                        }
                        last = Some(o);
                    }
                    if let Some(o) = last {
                        steps.push(Step::Barrier(o));
                    }
                }
            }
        }
        // Units with nothing to write are done now.
        let mut origins = Vec::new();
        let mut nacks = Vec::new();
        for u in units
            .iter_mut()
            .filter(|u| u.outstanding == 0 && u.origin < stuck_from)
        {
            push_origin(&mut origins, u.origin, u.inputs);
            if let Some(n) = u.nack.take() {
                nacks.push((u.origin, u.key, n));
            }
        }
        if !origins.is_empty()
            && !send(shared, &ledger, LedgerEvent::Resolve { origins, nacks }).await
        {
            return;
        }
        let units = Arc::new(Mutex::new(units));
        for step in steps {
            match step {
                Step::Barrier(o) => add_barrier(&mut barriers, o),
                Step::Deliver(d) => {
                    let d = Arc::new(d);
                    if !write_delivery(d, &mut barriers, Some(&units), destination, &acker, shared)
                        .await
                    {
                        return;
                    }
                }
            }
        }
        if let Some((origin, e)) = failed {
            return shared.record(origin, e);
        }
    }
}

/// The records of `batch` from `from` on that may be written now: up to the first one
/// after the barrier's origin. When none may be written yet, waits for the barrier's
/// release first. `None` when the run is aborting or the barrier will never lift.
async fn next_range(
    batch: &Batch,
    from: usize,
    barriers: &mut Vec<u64>,
    shared: &Shared,
) -> Option<std::ops::Range<usize>> {
    loop {
        barriers.retain(|&b| !shared.is_released(b));
        let Some(&origin) = barriers.first() else {
            return Some(from..batch.len());
        };
        match batch.origins()[from..].iter().position(|&o| o > origin) {
            None => return Some(from..batch.len()),
            Some(0) => {
                if !shared.wait_released(origin).await {
                    return None;
                }
            }
            Some(cut) => return Some(from..from + cut),
        }
    }
}

/// Adds a barrier origin, keeping them sorted.
fn add_barrier(barriers: &mut Vec<u64>, origin: u64) {
    if let Err(at) = barriers.binary_search(&origin) {
        barriers.insert(at, origin);
    }
}

/// Writes `delivery` (or the part `units` say was produced from it), range by range as
/// the barrier allows, queueing each write for the ack reader. False when the stage
/// must end.
async fn write_delivery(
    delivery: Arc<Delivery>,
    barriers: &mut Vec<u64>,
    units: Option<&Arc<Mutex<Vec<Unit>>>>,
    destination: &DestinationTask,
    acker: &mpsc::Sender<Written>,
    shared: &Shared,
) -> bool {
    let mut from = 0;
    while from < delivery.batch.len() {
        let Some(range) = next_range(&delivery.batch, from, barriers, shared).await else {
            return false;
        };
        let records = &delivery.batch.records()[range.clone()];
        if let Err(e) = write(destination, records, shared).await {
            shared.fail(delivery.batch.origins()[range.start], e);
            return false;
        }
        from = range.end;
        let written = Written {
            delivery: Arc::clone(&delivery),
            range,
            units: units.map(Arc::clone),
        };
        if !send(shared, acker, written).await {
            return false;
        }
    }
    true
}

async fn write(destination: &DestinationTask, records: &[Record], shared: &Shared) -> Result<()> {
    unless_cancelled(&shared.abort, destination.write(records))
        .await
        .unwrap_or(Ok(()))
}

async fn acker_stage(
    branch: usize,
    destination: &DestinationTask,
    mut rx: mpsc::Receiver<Written>,
    ledger: mpsc::Sender<LedgerEvent>,
    shared: &Shared,
) {
    let id: Arc<str> = Arc::from(destination.id());
    // Writes waiting for acks, each with the index of its next record to be acked.
    let mut pending: VecDeque<(Written, usize)> = VecDeque::new();
    let mut waiting = 0usize;
    let queue = |pending: &mut VecDeque<(Written, usize)>, waiting: &mut usize, w: Written| {
        *waiting += w.range.len();
        let start = w.range.start;
        pending.push_back((w, start));
    };
    loop {
        if pending.is_empty() {
            match unless_cancelled(&shared.abort, rx.recv()).await {
                Some(Some(w)) => queue(&mut pending, &mut waiting, w),
                Some(None) | None => return,
            }
        }
        while let Ok(w) = rx.try_recv() {
            queue(&mut pending, &mut waiting, w);
        }
        let started = Instant::now();
        let Some(acks) = unless_cancelled(&shared.abort, destination.next_acks(waiting)).await
        else {
            return;
        };
        let at = pending_origin(&pending);
        let acks = match acks {
            Ok(acks) => acks,
            Err(e) => return shared.fail(at, e),
        };
        if acks.is_empty() {
            return shared.fail(
                at,
                Error::AckProtocol {
                    task: id.to_string(),
                    message: format!(
                        "received 0 acks, but {waiting} records are waiting; a destination's ack() \
                     must wait until it has acknowledgements"
                    ),
                },
            );
        }
        let mut origins = Vec::new();
        let mut nacks = Vec::new();
        let mut bytes = 0;
        let received = acks.len();
        for ack in acks {
            if pending.is_empty() {
                // The writer may not have queued the write these acks are for yet.
                match unless_cancelled(&shared.abort, rx.recv()).await {
                    None => return,
                    Some(Some(w)) => queue(&mut pending, &mut waiting, w),
                    Some(None) => {
                        return shared.fail(
                            u64::MAX,
                            Error::AckProtocol {
                                task: id.to_string(),
                                message: format!(
                                    "received {received} acks, but expected at most {}",
                                    received.saturating_sub(1)
                                ),
                            },
                        );
                    }
                }
            }
            let Some((written, cursor)) = pending.front_mut() else {
                return shared.fail(
                    0,
                    Error::Internal("ack reader lost its pending writes".into()),
                );
            };
            let batch = &written.delivery.batch;
            let index = *cursor;
            let record = &batch.records()[index];
            if record.position != ack.position {
                return shared.fail(
                    batch.origins()[index],
                    Error::AckProtocol {
                        task: id.to_string(),
                        message: format!(
                            "received unexpected ack, expected position \"{}\" but got \"{}\"",
                            record.position, ack.position
                        ),
                    },
                );
            }
            bytes += written
                .delivery
                .sizes
                .as_ref()
                .and_then(|sizes| sizes.get(index))
                .map_or_else(|| record.size_hint(), |&size| size as usize);
            resolve_ack(branch, &id, written, index, &ack, &mut origins, &mut nacks);
            *cursor += 1;
            waiting -= 1;
            if *cursor == written.range.end {
                pending.pop_front();
            }
        }
        destination.metrics.observe(started, received, bytes);
        WorkerStats::add(&shared.stats.written, received);
        if !origins.is_empty()
            && !send(shared, &ledger, LedgerEvent::Resolve { origins, nacks }).await
        {
            return;
        }
    }
}

fn pending_origin(pending: &VecDeque<(Written, usize)>) -> u64 {
    pending
        .front()
        .and_then(|(w, cursor)| w.delivery.batch.origins().get(*cursor).copied())
        .unwrap_or(u64::MAX)
}

fn resolve_ack(
    branch: usize,
    id: &Arc<str>,
    written: &Written,
    index: usize,
    ack: &DestinationAck,
    origins: &mut Vec<(u64, u32)>,
    nacks: &mut Vec<(u64, NackKey, NackedRecord)>,
) {
    let batch = &written.delivery.batch;
    let origin = batch.origins()[index];
    let nack = ack.error.as_ref().map(|error| NackedRecord {
        record: batch.dlq_record(index).clone(),
        error: error.clone(),
        task: Arc::clone(id),
    });
    match &written.units {
        None => {
            push_origin(origins, origin, 1);
            if let Some(n) = nack {
                nacks.push((
                    origin,
                    (written.delivery.piece_base + index as u64, branch),
                    n,
                ));
            }
        }
        Some(units) => {
            let mut units = units.lock().unwrap_or_else(PoisonError::into_inner);
            let Ok(u) = units.binary_search_by_key(&origin, |u| u.origin) else {
                return;
            };
            let unit = &mut units[u];
            if unit.nack.is_none() {
                unit.nack = nack;
            }
            unit.outstanding = unit.outstanding.saturating_sub(1);
            if unit.outstanding == 0 {
                push_origin(origins, origin, unit.inputs);
                if let Some(n) = unit.nack.take() {
                    nacks.push((origin, unit.key, n));
                }
            }
        }
    }
}

struct LedgerMetrics {
    latency: Histogram,
    acked: Counter,
}

async fn ledger_stage(
    source: &dyn Source,
    source_id: &str,
    dlq: &mut Dlq,
    committer: Option<&dyn PositionCommitter>,
    mut rx: mpsc::Receiver<LedgerEvent>,
    shared: &Shared,
    pipeline: &str,
) {
    let metrics = LedgerMetrics {
        latency: histogram!(PIPELINE_EXECUTION_DURATION, "pipeline" => pipeline.to_owned()),
        acked: counter!(RECORDS_ACKED, "pipeline" => pipeline.to_owned(), "component_id" => source_id.to_owned()),
    };
    let mut ledger = Ledger::default();
    let mut buffers = (Vec::new(), Vec::new());
    loop {
        let Some(event) = unless_cancelled(&shared.abort, rx.recv()).await else {
            return;
        };
        let Some(event) = event else {
            if ledger.pending() > 0 {
                debug!(
                    source_id,
                    pending = ledger.pending(),
                    "stopped with records not released"
                );
            }
            return;
        };
        if let Err(e) = apply(&mut ledger, event) {
            return shared.fail(0, e);
        }
        while let Ok(event) = rx.try_recv() {
            if let Err(e) = apply(&mut ledger, event) {
                return shared.fail(0, e);
            }
        }
        if let Err(e) = release(
            &mut ledger,
            source,
            source_id,
            dlq,
            committer,
            shared,
            &metrics,
            &mut buffers,
        )
        .await
        {
            // Everything before the failing record was released, so this error comes
            // before any error recorded for records still in flight.
            return shared.fail(ledger.released_through().saturating_sub(1), e);
        }
    }
}

fn apply(ledger: &mut Ledger, event: LedgerEvent) -> Result<()> {
    let (origins, nacks) = match event {
        LedgerEvent::Register {
            base,
            read_at,
            slots,
            nacks,
        } => {
            ledger.register(base, read_at, slots);
            (Vec::new(), nacks)
        }
        LedgerEvent::Resolve { origins, nacks } => (origins, nacks),
    };
    for (origin, key, record) in nacks {
        if !ledger.nack(origin, key, record) {
            return Err(Error::Internal(format!(
                "(bug) nack of record {origin}, which is not pending"
            )));
        }
    }
    for (origin, count) in origins {
        if !ledger.resolve(origin, count) {
            return Err(Error::Internal(format!(
                "(bug) record {origin} was resolved more often than it was handed on"
            )));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn release(
    ledger: &mut Ledger,
    source: &dyn Source,
    source_id: &str,
    dlq: &mut Dlq,
    committer: Option<&dyn PositionCommitter>,
    shared: &Shared,
    metrics: &LedgerMetrics,
    buffers: &mut (Vec<Released>, Vec<Position>),
) -> Result<()> {
    let (released, positions) = buffers;
    released.clear();
    positions.clear();
    let Some(run) = ledger.pop_released(released) else {
        return Ok(());
    };
    let count = released.len();
    let mut window_acks = 0;
    let mut failure = None;
    for r in released.drain(..) {
        match r.nack {
            None => {
                positions.push(r.position);
                window_acks += 1;
            }
            Some(nacked) => {
                dlq.ack(window_acks);
                window_acks = 0;
                let (written, result) = dlq.nack(std::slice::from_ref(&*nacked)).await;
                WorkerStats::add(&shared.stats.dlq, written);
                if written == 1 {
                    positions.push(r.position);
                }
                if let Err(e) = result {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    dlq.ack(window_acks);
    let acked = positions.len();
    let flushed = flush(positions, source, source_id, committer).await;
    if flushed.is_ok() {
        metrics.acked.increment(acked as u64);
        WorkerStats::add(&shared.stats.acked, acked);
        metrics.latency.record(run.oldest.elapsed().as_secs_f64());
        shared.credits.give_back(count, run.bytes);
        let through = ledger.released_through();
        shared.released.send_modify(|r| r.through = through);
    }
    match failure {
        Some(e) => Err(e),
        None => flushed,
    }
}

async fn flush(
    positions: &[Position],
    source: &dyn Source,
    source_id: &str,
    committer: Option<&dyn PositionCommitter>,
) -> Result<()> {
    let Some(last) = positions.last() else {
        return Ok(());
    };
    if let Some(committer) = committer {
        committer
            .commit(last)
            .await
            .map_err(|source| Error::Commit {
                task: source_id.to_owned(),
                position: last.to_string(),
                source,
            })?;
    }
    match source.ack(positions).await {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::SourceAck {
            task: source_id.to_owned(),
            count: positions.len(),
            source: e,
        }),
    }
}
