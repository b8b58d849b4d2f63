//! The supervisor: runs pipelines side by side, each isolated from the others.
//!
//! A pipeline is `running` while its workers run; `recovering` after a transient
//! error, until it is rebuilt and restarted after an exponential backoff (Conduit's
//! defaults: 1 s doubling up to 10 min, retried forever); `degraded` after a fatal
//! error or when the retries are used up; `stopped` after a graceful stop; `finished`
//! once every source is exhausted. One pipeline failing never stops another.
//!
//! Restart or degrade is decided from the error's class ([`Error::retry`]), and a
//! degraded pipeline keeps the error itself, not its text.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use funnel_config::PipelineConfig;
use funnel_core::{Stopper, WorkerStats};
use funnel_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::build::build;
use crate::error::Error;

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
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            factor: 2.0,
            max_retries: -1,
        }
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
#[derive(Clone, Debug, Default)]
pub struct SupervisorOptions {
    /// Restart delays.
    pub backoff: Backoff,
}

/// What the outside world sees of one pipeline.
pub struct PipelineState {
    /// The pipeline's ID.
    pub id: String,
    /// Its status, updated as it changes.
    pub status: watch::Sender<PipelineStatus>,
    /// Its running totals (across restarts).
    pub stats: Arc<WorkerStats>,
    stoppers: Mutex<Vec<Stopper>>,
}

impl PipelineState {
    fn set(&self, status: PipelineStatus) {
        self.status.send_replace(status);
    }

    /// The current status.
    pub fn current(&self) -> PipelineStatus {
        self.status.borrow().clone()
    }
}

/// Runs pipelines.
pub struct Supervisor {
    store: Arc<dyn Store>,
    options: SupervisorOptions,
    shutdown: CancellationToken,
    states: Vec<Arc<PipelineState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Supervisor {
    /// A supervisor keeping positions in `store`.
    pub fn new(store: Arc<dyn Store>, options: SupervisorOptions) -> Self {
        Self {
            store,
            options,
            shutdown: CancellationToken::new(),
            states: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Every pipeline started so far.
    pub fn states(&self) -> &[Arc<PipelineState>] {
        &self.states
    }

    /// Starts `pipeline` on its own task (a `stopped` one is only registered).
    pub fn start(&mut self, pipeline: PipelineConfig) {
        let state = Arc::new(PipelineState {
            id: pipeline.id.clone(),
            status: watch::Sender::new(PipelineStatus::Starting),
            stats: Arc::default(),
            stoppers: Mutex::new(Vec::new()),
        });
        self.states.push(Arc::clone(&state));
        if pipeline.status == funnel_config::PipelineStatus::Stopped {
            state.set(PipelineStatus::Stopped);
            return;
        }
        let store = Arc::clone(&self.store);
        let backoff = self.options.backoff;
        let shutdown = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            supervise(pipeline, store, backoff, shutdown, state).await;
        }));
    }

    /// Stops every pipeline gracefully: no new reads, everything in flight delivered and
    /// committed. Returns once they have all stopped.
    pub async fn shutdown(&mut self) {
        self.shutdown.cancel();
        for state in &self.states {
            for stopper in state
                .stoppers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                stopper.stop();
            }
        }
        self.wait().await;
    }

    /// Waits until every pipeline task has ended.
    pub async fn wait(&mut self) {
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await {
                error!(error = %e, "a pipeline task panicked");
            }
        }
    }

    /// Waits until every pipeline is in a terminal status.
    pub async fn wait_terminal(&self) {
        for state in &self.states {
            let mut rx = state.status.subscribe();
            // The sender lives in the state, so this only ends when terminal.
            let _ = rx.wait_for(PipelineStatus::is_terminal).await;
        }
    }
}

enum Outcome {
    Finished,
    Stopped,
    Failed(Error),
}

async fn supervise(
    pipeline: PipelineConfig,
    store: Arc<dyn Store>,
    backoff: Backoff,
    shutdown: CancellationToken,
    state: Arc<PipelineState>,
) {
    let mut attempt: u32 = 0;
    loop {
        match run_once(&pipeline, &store, &shutdown, &state).await {
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
                attempt += 1;
                if backoff.max_retries >= 0 && i64::from(attempt) > backoff.max_retries {
                    let error = Error::RetriesExhausted {
                        attempts: attempt - 1,
                        last: Box::new(error),
                    };
                    error!(pipeline = %pipeline.id, %error, "pipeline degraded");
                    state.set(PipelineStatus::Degraded(Arc::new(error)));
                    return;
                }
                let delay = backoff.delay(attempt);
                warn!(pipeline = %pipeline.id, %error, ?delay, attempt, "restarting with backoff");
                state.set(PipelineStatus::Recovering);
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
    state: &Arc<PipelineState>,
) -> Outcome {
    let mut workers = match build(pipeline, store, &state.stats).await {
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
    state.set(PipelineStatus::Running);
    info!(pipeline = %pipeline.id, sources = workers.len(), "pipeline started");

    // Each worker on its own task; the first error stops the others gracefully.
    let first_error: Arc<Mutex<Option<Error>>> = Arc::default();
    let mut handles = Vec::new();
    for mut w in workers {
        let stoppers = stoppers.clone();
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
                stoppers.iter().for_each(Stopper::stop);
            }
            if let Err(e) = w.worker.close().await {
                warn!(pipeline = %pipeline_id, source = %w.source_id, error = %e, "failed to close worker");
            }
            exhausted
        })));
    }
    let stop_on_shutdown = {
        let shutdown = shutdown.clone();
        let stoppers = stoppers.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stoppers.iter().for_each(Stopper::stop);
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
    stop_on_shutdown.abort();
    state
        .stoppers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let error = first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    match error {
        Some(e) => Outcome::Failed(e),
        None if all_exhausted => Outcome::Finished,
        None => Outcome::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_ten_minutes() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(2), Duration::from_secs(2));
        assert_eq!(b.delay(4), Duration::from_secs(8));
        assert_eq!(b.delay(30), Duration::from_secs(600));
    }
}
