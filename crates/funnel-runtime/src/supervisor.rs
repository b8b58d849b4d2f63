//! The supervisor: runs pipelines side by side, each isolated from the others.
//!
//! A pipeline is `running` while its workers run; `recovering` after a transient
//! error, until it is rebuilt and restarted after an exponential backoff (Conduit's
//! defaults: 1 s doubling up to 10 min, retried forever); `degraded` after a fatal
//! error or when the retries are used up; `stopped` after a graceful stop; `finished`
//! once every source is exhausted. One pipeline failing never stops another.
//!
//! As in Conduit, a restart stops counting towards the backoff (and `max_retries`)
//! once its delay and then [`Backoff::max_retries_window`] (5 min) have passed, so a
//! pipeline that has been healthy that long starts again from the shortest delay.
//! While a pipeline recovers, [`PipelineState::recovery`] says which restart is next and
//! when.
//!
//! Restart or degrade is decided from the error's class ([`Error::retry`]), and a
//! degraded pipeline keeps the error itself, not its text.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use funnel_config::PipelineConfig;
use funnel_core::{Stopper, WorkerStats};
use funnel_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::build::build_fenced;
use crate::error::Error;
use crate::fenced::Fences;
use crate::provision::{LoadFailure, Provision};
use funnel_core::telemetry::{CONDUIT_PIPELINE_RECOVERING, NEXT_RESTART, RESTARTS};

/// Where a pipeline is in its life.
///
/// Two `Degraded` statuses are equal when their errors read the same.
#[derive(Clone, Debug)]
pub enum PipelineStatus {
    /// Not started yet.
    Starting,
    /// Its workers are running.
    Running,
    /// Waiting to be restarted after a transient error.
    Recovering,
    /// Stopped after a fatal error, or out of retries; needs a person.
    Degraded(Arc<Error>),
    /// Stopped gracefully (by a signal or because it is configured `stopped`).
    Stopped,
    /// Every source is exhausted and everything was delivered.
    Finished,
}

impl PartialEq for PipelineStatus {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Degraded(a), Self::Degraded(b)) => {
                Arc::ptr_eq(a, b) || a.to_string() == b.to_string()
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for PipelineStatus {}

impl PipelineStatus {
    /// True when the pipeline will not change any more on its own.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Degraded(_) | Self::Stopped | Self::Finished)
    }

    /// The status as one word.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Recovering => "recovering",
            Self::Degraded(_) => "degraded",
            Self::Stopped => "stopped",
            Self::Finished => "finished",
        }
    }
}

/// Restart delays after transient errors.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The first delay (Conduit: 1 s).
    pub min_delay: Duration,
    /// The longest delay (Conduit: 10 min).
    pub max_delay: Duration,
    /// Growth per attempt (Conduit: 2).
    pub factor: f64,
    /// Restarts before the pipeline is degraded; negative means forever (Conduit: -1).
    pub max_retries: i64,
    /// How long after its delay a restart still counts (Conduit:
    /// `max-retries-window`, 5 min).
    pub max_retries_window: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            factor: 2.0,
            max_retries: -1,
            max_retries_window: Duration::from_secs(300),
        }
    }
}

/// The restarts that still count, each until its delay plus the retries window has
/// passed (Conduit's rule).
#[derive(Debug, Default)]
pub struct Restarts {
    /// When each counted restart stops counting, oldest first.
    counted_until: VecDeque<tokio::time::Instant>,
}

impl Restarts {
    /// Plans the next restart at `now`: its number (1 for the first that counts) and its
    /// delay. Restarts whose delay and window have passed no longer count.
    pub fn next(&mut self, backoff: &Backoff, now: tokio::time::Instant) -> (u32, Duration) {
        while self
            .counted_until
            .front()
            .is_some_and(|until| *until <= now)
        {
            self.counted_until.pop_front();
        }
        let attempt = u32::try_from(self.counted_until.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let delay = backoff.delay(attempt);
        self.counted_until
            .push_back(now + delay + backoff.max_retries_window);
        (attempt, delay)
    }
}

/// A pending restart of a recovering pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Which restart it is, among those that count (1-based).
    pub attempt: u32,
    /// The wait before it.
    pub delay: Duration,
    /// When it happens.
    pub next_attempt: SystemTime,
}

impl Recovery {
    /// `restart 3 at 2026-12-05T03:20:00Z (in 4s)`.
    pub fn describe(&self) -> String {
        let at = self
            .next_attempt
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|d| funnel_record::Timestamp::new(i64::try_from(d.as_secs()).ok()?, 0))
            .map_or_else(|| "?".to_owned(), funnel_record::Timestamp::to_rfc3339);
        let left = self
            .next_attempt
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        format!("restart {} at {at} (in {}s)", self.attempt, left.as_secs())
    }
}

impl Backoff {
    /// The delay before restart number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .factor
            .powi(i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX));
        let secs = (self.min_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// Options of the supervisor.
#[derive(Clone, Debug)]
pub struct SupervisorOptions {
    /// Restart delays.
    pub backoff: Backoff,
    /// Runs in a row that one record may fail the same way (nacked with no
    /// dead-letter queue to take it) before the pipeline is degraded rather than
    /// restarted again (default 3).
    pub record_failures: u32,
    /// How long a graceful stop may take before what is still in progress (a processor
    /// stuck in a call, a write that never returns) is aborted (default 30 s, the
    /// longest Conduit waits for a pipeline to stop). What an abort leaves unreleased is
    /// read again on the next start.
    pub stop_grace: Duration,
    /// In a cluster (see [`Cluster`](crate::cluster::Cluster)): the leases this process
    /// holds. A pipeline runs only under its lease; without one it is only registered
    /// (`stopped`), and it stops, rather than restarts, once the lease is lost.
    pub fences: Option<Arc<Fences>>,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            record_failures: 3,
            stop_grace: Duration::from_secs(30),
            fences: None,
        }
    }
}

/// What the outside world sees of one pipeline.
pub struct PipelineState {
    /// The pipeline's ID.
    pub id: String,
    /// Its status, updated as it changes.
    pub status: watch::Sender<PipelineStatus>,
    /// Its running totals (across restarts and reloads).
    pub stats: Arc<WorkerStats>,
    stoppers: Mutex<Vec<Stopper>>,
    recovery: Mutex<Option<Recovery>>,
    config: Mutex<Arc<PipelineConfig>>,
    file: Mutex<Option<PathBuf>>,
    /// Whether the last run that started left nothing written and not committed.
    drained: AtomicBool,
}

impl PipelineState {
    fn new(pipeline: &PipelineConfig, file: Option<PathBuf>) -> Self {
        Self {
            id: pipeline.id.clone(),
            status: watch::Sender::new(PipelineStatus::Starting),
            stats: Arc::default(),
            stoppers: Mutex::new(Vec::new()),
            recovery: Mutex::new(None),
            config: Mutex::new(Arc::new(pipeline.clone())),
            file: Mutex::new(file),
            drained: AtomicBool::new(true),
        }
    }

    /// Whether the pipeline's last run ended with every record it wrote committed: it
    /// stopped gracefully or finished, with no error and within the stop grace period
    /// (true, too, when no run has started). False after a run that failed or was
    /// aborted: what it wrote since its last commit is written again by the next run,
    /// here or on another instance.
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// The configuration it runs (the latest one that loaded without errors).
    pub fn config(&self) -> Arc<PipelineConfig> {
        Arc::clone(&self.config.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The pipeline file it was provisioned from, if any.
    pub fn file(&self) -> Option<PathBuf> {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, status: PipelineStatus) {
        self.status.send_replace(status);
    }

    /// The current status.
    pub fn current(&self) -> PipelineStatus {
        self.status.borrow().clone()
    }

    /// The pending restart while the pipeline is recovering.
    pub fn recovery(&self) -> Option<Recovery> {
        if self.current() != PipelineStatus::Recovering {
            return None;
        }
        self.recovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the pending restart, shown in status and metrics.
    fn plan_restart(&self, recovery: Recovery) {
        let at = recovery
            .next_attempt
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!(NEXT_RESTART, "pipeline" => self.id.clone()).set(at);
        metrics::counter!(RESTARTS, "pipeline" => self.id.clone()).increment(1);
        metrics::counter!(CONDUIT_PIPELINE_RECOVERING, "pipeline_name" => self.config().name.clone())
            .increment(1);
        *self.recovery.lock().unwrap_or_else(PoisonError::into_inner) = Some(recovery);
        self.set(PipelineStatus::Recovering);
    }

    /// Marks the pipeline running: no restart pending.
    fn running(&self) {
        metrics::gauge!(NEXT_RESTART, "pipeline" => self.id.clone()).set(0.0);
        self.set(PipelineStatus::Running);
    }
}

/// What is provisioned now: every pipeline and every pipeline file that could not be
/// used. Shared (through [`Supervisor::overview`]) with whatever reports on the
/// pipelines (`/readyz`, the API, the command line); it changes as pipelines are
/// reloaded.
#[derive(Default)]
pub struct Overview {
    pipelines: Mutex<Vec<Arc<PipelineState>>>,
    failures: Mutex<Vec<LoadFailure>>,
}

impl Overview {
    /// Every pipeline, in the order of their files.
    pub fn pipelines(&self) -> Vec<Arc<PipelineState>> {
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The pipeline files that could not be used at the last load or reload.
    pub fn failures(&self) -> Vec<LoadFailure> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a reload changed, by pipeline ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Pipelines new in the files, started.
    pub started: Vec<String>,
    /// Pipelines whose configuration changed: drained, then started with the new one.
    pub restarted: Vec<String>,
    /// Pipelines no longer in any file: drained and removed.
    pub removed: Vec<String>,
    /// Pipelines whose file has errors now: they keep running their previous
    /// configuration.
    pub kept: Vec<String>,
}

/// One supervised pipeline: its state, its configuration, how to stop it.
struct Managed {
    state: Arc<PipelineState>,
    config: PipelineConfig,
    file: Option<PathBuf>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Runs pipelines.
///
/// Every method takes `&self`, so a supervisor can be shared; changes to the set of
/// pipelines ([`apply`](Self::apply), [`stop_pipeline`](Self::stop_pipeline)) happen
/// one at a time.
pub struct Supervisor {
    store: Arc<dyn Store>,
    options: SupervisorOptions,
    shutdown: CancellationToken,
    overview: Arc<Overview>,
    managed: Mutex<Vec<Managed>>,
    changes: tokio::sync::Mutex<()>,
}

impl Supervisor {
    /// A supervisor keeping positions in `store`.
    pub fn new(store: Arc<dyn Store>, options: SupervisorOptions) -> Self {
        Self {
            store,
            options,
            shutdown: CancellationToken::new(),
            overview: Arc::default(),
            managed: Mutex::new(Vec::new()),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// Every pipeline, now.
    pub fn states(&self) -> Vec<Arc<PipelineState>> {
        self.overview.pipelines()
    }

    /// The pipelines and the files that failed to load, shared and kept up to date.
    pub fn overview(&self) -> Arc<Overview> {
        Arc::clone(&self.overview)
    }

    fn managed(&self) -> std::sync::MutexGuard<'_, Vec<Managed>> {
        self.managed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the managed pipelines to the overview.
    fn publish(&self, managed: &[Managed]) {
        *self
            .overview
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            managed.iter().map(|m| Arc::clone(&m.state)).collect();
    }

    /// Starts `pipeline` on its own task (a `stopped` one is only registered).
    pub fn start(&self, pipeline: PipelineConfig) {
        self.start_from(pipeline, None);
    }

    /// Starts `pipeline`, provisioned from `file`, on its own task.
    fn start_from(&self, pipeline: PipelineConfig, file: Option<PathBuf>) {
        let state = Arc::new(PipelineState::new(&pipeline, file.clone()));
        let mut managed = self.managed();
        let mut entry = Managed {
            state,
            config: pipeline,
            file,
            stop: self.shutdown.child_token(),
            task: None,
        };
        self.launch(&mut entry);
        managed.push(entry);
        self.publish(&managed);
    }

    /// Starts the task of `entry` with its configuration, or marks it stopped when it is
    /// configured `stopped`.
    fn launch(&self, entry: &mut Managed) {
        let state = Arc::clone(&entry.state);
        *state.config.lock().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(entry.config.clone());
        *state.file.lock().unwrap_or_else(PoisonError::into_inner) = entry.file.clone();
        if entry.config.status == funnel_config::PipelineStatus::Stopped {
            state.set(PipelineStatus::Stopped);
            return;
        }
        if let Some(fences) = &self.options.fences
            && fences.get(&entry.state.id).is_none()
        {
            // Another instance runs it, or will once it claims it.
            state.set(PipelineStatus::Stopped);
            return;
        }
        state.set(PipelineStatus::Starting);
        entry.stop = self.shutdown.child_token();
        let pipeline = entry.config.clone();
        let store = Arc::clone(&self.store);
        let options = self.options.clone();
        let stop = entry.stop.clone();
        entry.task = Some(tokio::spawn(async move {
            supervise(pipeline, store, options, stop, state).await;
        }));
    }

    /// Stops pipeline `id` gracefully (no new reads, everything in flight delivered and
    /// committed) and waits for it; it stays listed as `stopped`. False when there is
    /// no such pipeline.
    pub async fn stop_pipeline(&self, id: &str) -> bool {
        self.halt(id, Stopper::stop).await
    }

    /// Cancels pipeline `id`, tells each of its workers `how` to stop, and waits for
    /// it. False when there is no such pipeline.
    async fn halt(&self, id: &str, how: fn(&Stopper)) -> bool {
        let _one_at_a_time = self.changes.lock().await;
        let task = {
            let mut managed = self.managed();
            let Some(entry) = managed.iter_mut().find(|m| m.state.id == id) else {
                return false;
            };
            entry.stop.cancel();
            each_worker(&entry.state, how);
            entry.task.take()
        };
        join(task).await;
        true
    }

    /// Starts pipeline `id` again with its configuration, after it stopped (by
    /// [`stop_pipeline`](Self::stop_pipeline), or finished, or degraded). False when there is no
    /// such pipeline or it is still running.
    pub async fn start_pipeline(&self, id: &str) -> bool {
        let _one_at_a_time = self.changes.lock().await;
        let mut managed = self.managed();
        let Some(entry) = managed.iter_mut().find(|m| m.state.id == id) else {
            return false;
        };
        if entry.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return false;
        }
        entry.config.status = funnel_config::PipelineStatus::Running;
        self.launch(entry);
        true
    }

    /// Stops pipeline `id` at once (reads, processor calls, writes and acks in progress
    /// are interrupted; what was not acknowledged is read again on the next start) and
    /// waits for it; it stays listed as `stopped`. False when there is no such pipeline.
    pub async fn abort_pipeline(&self, id: &str) -> bool {
        self.halt(id, Stopper::abort).await
    }

    /// Starts `pipeline`, provisioned from no file: a new pipeline, or one with the ID
    /// of a pipeline that is not running, which then runs this configuration (its
    /// positions kept) with its state and totals. False when a pipeline with its ID is
    /// running.
    pub async fn start_configured(&self, mut pipeline: PipelineConfig) -> bool {
        let _one_at_a_time = self.changes.lock().await;
        pipeline.status = funnel_config::PipelineStatus::Running;
        let mut managed = self.managed();
        if let Some(entry) = managed.iter_mut().find(|m| m.state.id == pipeline.id) {
            if entry.task.as_ref().is_some_and(|t| !t.is_finished()) {
                return false;
            }
            entry.config = pipeline;
            entry.file = None;
            self.launch(entry);
            return true;
        }
        drop(managed);
        self.start_from(pipeline, None);
        true
    }

    /// Removes pipeline `id`, which must not be running. False when there is no such
    /// pipeline or it runs.
    pub async fn remove_pipeline(&self, id: &str) -> bool {
        let _one_at_a_time = self.changes.lock().await;
        let mut managed = self.managed();
        let Some(i) = managed.iter().position(|m| m.state.id == id) else {
            return false;
        };
        if managed[i].task.as_ref().is_some_and(|t| !t.is_finished()) {
            return false;
        }
        managed.remove(i);
        self.publish(&managed);
        true
    }

    /// Makes the running pipelines what `provision` says: pipelines new in the files are
    /// started, pipelines whose configuration changed (in anything but where it is
    /// written) are drained and started again with the new one (their positions are
    /// kept: same pipeline and connector IDs), pipelines no longer in any file are
    /// drained and removed, and the pipelines of files that fail to load keep running
    /// their previous configuration. `provision.failures` become the overview's
    /// failures. Pipelines added with [`start`](Self::start) (from no file) are left
    /// alone.
    pub async fn apply(&self, provision: Provision) -> ReloadReport {
        let _one_at_a_time = self.changes.lock().await;
        let mut report = ReloadReport::default();
        let failing: Vec<&Path> = provision
            .failures
            .iter()
            .map(|f| f.file.as_path())
            .collect();
        // Drain what changes or goes, all at once.
        let mut draining = Vec::new();
        {
            let managed = self.managed();
            for entry in managed.iter() {
                let wanted = provision
                    .pipelines
                    .iter()
                    .find(|p| p.config.id == entry.state.id);
                let change = match wanted {
                    Some(p) => !p.config.same_settings(&entry.config),
                    None => {
                        entry.file.is_some()
                            && !entry.file.as_deref().is_some_and(|f| failing.contains(&f))
                    }
                };
                if change {
                    entry.stop.cancel();
                    stop_workers(&entry.state);
                    draining.push(entry.state.id.clone());
                }
            }
        }
        let tasks: Vec<_> = {
            let mut managed = self.managed();
            managed
                .iter_mut()
                .filter(|m| draining.contains(&m.state.id))
                .map(|m| m.task.take())
                .collect()
        };
        for task in tasks {
            join(task).await;
        }
        let mut managed = self.managed();
        let mut next = Vec::with_capacity(provision.pipelines.len());
        for p in provision.pipelines {
            match managed.iter().position(|m| m.state.id == p.config.id) {
                Some(i) => {
                    let mut entry = managed.remove(i);
                    entry.file = Some(p.file.clone());
                    *entry
                        .state
                        .file
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(p.file.clone());
                    if draining.contains(&entry.state.id) {
                        info!(pipeline = %entry.state.id, file = %p.file.display(), "pipeline configuration changed, restarted");
                        report.restarted.push(entry.state.id.clone());
                        entry.config = p.config;
                        entry.file = Some(p.file);
                        self.launch(&mut entry);
                    }
                    next.push(entry);
                }
                None => {
                    info!(pipeline = %p.config.id, file = %p.file.display(), "new pipeline, started");
                    report.started.push(p.config.id.clone());
                    let mut entry = Managed {
                        state: Arc::new(PipelineState::new(&p.config, Some(p.file.clone()))),
                        config: p.config,
                        file: Some(p.file),
                        stop: self.shutdown.child_token(),
                        task: None,
                    };
                    self.launch(&mut entry);
                    next.push(entry);
                }
            }
        }
        for entry in managed.drain(..) {
            if draining.contains(&entry.state.id) {
                info!(pipeline = %entry.state.id, "pipeline no longer in any file, removed");
                report.removed.push(entry.state.id.clone());
                continue;
            }
            if entry.file.is_some() {
                warn!(pipeline = %entry.state.id, file = %entry.file.as_deref().unwrap_or(Path::new("")).display(), "pipeline file has errors, the pipeline keeps running its previous configuration");
                report.kept.push(entry.state.id.clone());
            }
            next.push(entry);
        }
        *managed = next;
        let mut failures = provision.failures;
        for failure in &mut failures {
            failure.kept = managed
                .iter()
                .filter(|m| m.file.as_deref() == Some(failure.file.as_path()))
                .map(|m| m.state.id.clone())
                .collect();
        }
        self.publish(&managed);
        drop(managed);
        *self
            .overview
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = failures;
        report
    }

    /// Stops every pipeline gracefully: no new reads, everything in flight delivered and
    /// committed. Returns once they have all stopped.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        for state in self.states() {
            stop_workers(&state);
        }
        self.wait().await;
    }

    /// Waits until every pipeline task has ended.
    pub async fn wait(&self) {
        let tasks: Vec<_> = self.managed().iter_mut().map(|m| m.task.take()).collect();
        for task in tasks {
            join(task).await;
        }
    }

    /// Waits until every pipeline is in a terminal status.
    pub async fn wait_terminal(&self) {
        for state in self.states() {
            let mut rx = state.status.subscribe();
            // The sender lives in the state, so this only ends when terminal.
            let _ = rx.wait_for(PipelineStatus::is_terminal).await;
        }
    }
}

/// Tells each worker of a running pipeline `how` to stop.
fn each_worker(state: &PipelineState, how: fn(&Stopper)) {
    for stopper in state
        .stoppers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        how(stopper);
    }
}

/// Asks the workers of a running pipeline to stop reading and drain.
fn stop_workers(state: &PipelineState) {
    each_worker(state, Stopper::stop);
}

/// Waits for a pipeline's task, if it has one.
async fn join(task: Option<tokio::task::JoinHandle<()>>) {
    if let Some(task) = task
        && let Err(e) = task.await
    {
        error!(error = %e, "a pipeline task panicked");
    }
}

enum Outcome {
    Finished,
    Stopped,
    Failed(Error),
}

/// The record that failed the last runs the same way, and how many runs in a row.
#[derive(Default)]
struct RepeatedRecord {
    last: Option<(String, String)>,
    runs: u32,
}

impl RepeatedRecord {
    /// Counts a failed run: how many runs in a row `error`'s record failed with it (0
    /// when no record stopped this run).
    fn count(&mut self, error: &Error) -> u32 {
        let failed = error
            .failed_record()
            .map(|(record, text)| (record.to_owned(), text));
        if failed.is_some() && failed == self.last {
            self.runs += 1;
        } else {
            self.runs = u32::from(failed.is_some());
            self.last = failed;
        }
        self.runs
    }
}

async fn supervise(
    pipeline: PipelineConfig,
    store: Arc<dyn Store>,
    options: SupervisorOptions,
    shutdown: CancellationToken,
    state: Arc<PipelineState>,
) {
    let backoff = options.backoff;
    let mut restarts = Restarts::default();
    let mut repeated = RepeatedRecord::default();
    loop {
        let fence = match &options.fences {
            None => None,
            Some(fences) => match fences.get(&pipeline.id) {
                Some(fence) => Some(fence),
                None => {
                    info!(pipeline = %pipeline.id, "pipeline stopped: this instance does not hold its lease");
                    state.set(PipelineStatus::Stopped);
                    return;
                }
            },
        };
        let outcome = run_once(
            &pipeline,
            &store,
            &shutdown,
            options.stop_grace,
            &state,
            fence.as_ref(),
        )
        .await;
        if let (Outcome::Failed(error), Some(fence)) = (&outcome, &fence)
            && !funnel_core::WriteFence::permits(fence.as_ref())
        {
            warn!(pipeline = %pipeline.id, %error, epoch = fence.epoch(), "pipeline stopped: its lease is lost, another instance takes it over");
            state.set(PipelineStatus::Stopped);
            return;
        }
        match outcome {
            Outcome::Finished => {
                info!(pipeline = %pipeline.id, "pipeline finished: every source is exhausted");
                state.set(PipelineStatus::Finished);
                return;
            }
            Outcome::Stopped => {
                info!(pipeline = %pipeline.id, "pipeline stopped");
                state.set(PipelineStatus::Stopped);
                return;
            }
            Outcome::Failed(error) if error.is_fatal() => {
                error!(pipeline = %pipeline.id, %error, kind = %error.kind(), "pipeline degraded");
                state.set(PipelineStatus::Degraded(Arc::new(error)));
                return;
            }
            Outcome::Failed(error) => {
                if shutdown.is_cancelled() {
                    state.set(PipelineStatus::Stopped);
                    return;
                }
                let runs = repeated.count(&error);
                if runs >= options.record_failures.max(1)
                    && let Some((record, text)) = error.failed_record()
                {
                    let error = Error::RecordKeepsFailing {
                        pipeline: pipeline.id.clone(),
                        record: record.to_owned(),
                        failures: runs,
                        error: text,
                    };
                    error!(pipeline = %pipeline.id, %error, "pipeline degraded");
                    state.set(PipelineStatus::Degraded(Arc::new(error)));
                    return;
                }
                let (attempt, delay) = restarts.next(&backoff, tokio::time::Instant::now());
                if backoff.max_retries >= 0 && i64::from(attempt) > backoff.max_retries {
                    let error = Error::RetriesExhausted {
                        attempts: attempt - 1,
                        last: Box::new(error),
                    };
                    error!(pipeline = %pipeline.id, %error, "pipeline degraded");
                    state.set(PipelineStatus::Degraded(Arc::new(error)));
                    return;
                }
                warn!(pipeline = %pipeline.id, %error, ?delay, attempt, "restarting with backoff");
                state.plan_restart(Recovery {
                    attempt,
                    delay,
                    next_attempt: SystemTime::now() + delay,
                });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => {
                        state.set(PipelineStatus::Stopped);
                        return;
                    }
                }
            }
        }
    }
}

async fn run_once(
    pipeline: &PipelineConfig,
    store: &Arc<dyn Store>,
    shutdown: &CancellationToken,
    stop_grace: Duration,
    state: &Arc<PipelineState>,
    fence: Option<&Arc<funnel_store::Fence>>,
) -> Outcome {
    let mut workers = match build_fenced(pipeline, store, &state.stats, fence).await {
        Ok(workers) => workers,
        Err(e) => return Outcome::Failed(e.into()),
    };
    for i in 0..workers.len() {
        if let Err(e) = workers[i].worker.open().await {
            for opened in &mut workers[..i] {
                if let Err(close) = opened.worker.close().await {
                    warn!(pipeline = %pipeline.id, error = %close, "failed to close after a failed open");
                }
            }
            return Outcome::Failed(e.into());
        }
    }
    let stoppers: Vec<Stopper> = workers.iter().map(|w| w.worker.stopper()).collect();
    *state
        .stoppers
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = stoppers.clone();
    if shutdown.is_cancelled() {
        stoppers.iter().for_each(Stopper::stop);
    }
    state.running();
    info!(pipeline = %pipeline.id, sources = workers.len(), "pipeline started");

    // Each worker on its own task; the first error stops the others gracefully. Any
    // stop of this run (that or a shutdown) that takes longer than the grace period is
    // turned into an abort.
    let stopping = CancellationToken::new();
    let first_error: Arc<Mutex<Option<Error>>> = Arc::default();
    let mut handles = Vec::new();
    for mut w in workers {
        let stopping = stopping.clone();
        let first_error = Arc::clone(&first_error);
        let pipeline_id = pipeline.id.clone();
        let source_id = w.source_id.clone();
        handles.push((source_id, tokio::spawn(async move {
            let result = w.worker.run().await;
            let exhausted = w.worker.is_exhausted();
            if let Err(e) = result {
                warn!(pipeline = %pipeline_id, source = %w.source_id, error = %e, "pipeline source worker stopped");
                let mut slot = first_error.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.is_none() {
                    *slot = Some(e.into());
                }
                drop(slot);
                stopping.cancel();
            }
            if let Err(e) = w.worker.close().await {
                warn!(pipeline = %pipeline_id, source = %w.source_id, error = %e, "failed to close worker");
            }
            exhausted
        })));
    }
    let aborted = Arc::new(AtomicBool::new(false));
    let stop_then_abort = {
        let shutdown = shutdown.clone();
        let pipeline_id = pipeline.id.clone();
        let aborted = Arc::clone(&aborted);
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = stopping.cancelled() => {}
            }
            stoppers.iter().for_each(Stopper::stop);
            tokio::time::sleep(stop_grace).await;
            warn!(
                pipeline = %pipeline_id,
                grace = ?stop_grace,
                "the pipeline did not stop within the grace period: aborting what is in progress (it is read again on the next start)"
            );
            aborted.store(true, Ordering::Release);
            stoppers.iter().for_each(Stopper::abort);
        })
    };
    let mut all_exhausted = true;
    for (source_id, handle) in handles {
        match handle.await {
            Ok(exhausted) => all_exhausted &= exhausted,
            Err(e) => {
                all_exhausted = false;
                first_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(Error::Panicked {
                        pipeline: pipeline.id.clone(),
                        source_id,
                        message: e.to_string(),
                    });
            }
        }
    }
    stop_then_abort.abort();
    state
        .stoppers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let error = first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    state.drained.store(
        error.is_none() && !aborted.load(Ordering::Acquire),
        Ordering::Release,
    );
    match error {
        Some(e) => Outcome::Failed(e),
        None if all_exhausted => Outcome::Finished,
        None => Outcome::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn restart_backoff_resets_after_the_pipeline_has_been_healthy_for_the_retries_window() {
        let backoff = Backoff::default();
        let mut restarts = Restarts::default();
        let next = |restarts: &mut Restarts| restarts.next(&backoff, tokio::time::Instant::now());
        // Failures in a row back off: 1 s, doubling.
        let mut delays = Vec::new();
        for _ in 0..5 {
            let (_, delay) = next(&mut restarts);
            delays.push(delay.as_secs());
            tokio::time::advance(delay).await;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16]);
        // Healthy for the window (5 min) after the last delay: every restart has
        // stopped counting, and the next failure waits the shortest delay again.
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(next(&mut restarts), (1, Duration::from_secs(1)));
        // A failure an hour, for ten hours: each costs 1 s, never a 10-minute outage.
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(3600)).await;
            assert_eq!(next(&mut restarts), (1, Duration::from_secs(1)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_stops_counting_once_its_delay_and_the_window_have_passed() {
        let backoff = Backoff {
            max_retries_window: Duration::from_secs(60),
            ..Backoff::default()
        };
        let mut restarts = Restarts::default();
        assert_eq!(restarts.next(&backoff, tokio::time::Instant::now()).0, 1);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(restarts.next(&backoff, tokio::time::Instant::now()).0, 2);
        // The first counted until 1 s + 60 s; the second until 30 + 2 + 60 s.
        tokio::time::advance(Duration::from_secs(32)).await;
        assert_eq!(restarts.next(&backoff, tokio::time::Instant::now()).0, 2);
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_ten_minutes() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(2), Duration::from_secs(2));
        assert_eq!(b.delay(4), Duration::from_secs(8));
        assert_eq!(b.delay(30), Duration::from_secs(600));
    }
}
