//! The ledger stage: applies the stages' tallies to the [`Ledger`] and releases what
//! it can, strictly in read order: nacked records to the DLQ and the credits back at
//! once, then the last position to the committer, then the positions to
//! `Source::ack` (I1, I2, I3).
//!
//! Commits are pipelined: while one commit (and the source ack after it) is in
//! flight, the ledger keeps applying tallies and releasing, and the positions
//! released meanwhile wait to be committed together as the next commit. A released
//! record is written everywhere already (or filtered, or in the DLQ), so its credits
//! come back when it is released, not when its position is committed: a commit's
//! round trip does not hold up reading. What waits for a commit is bounded too: once
//! as many records as the credit window are released and not yet committed, the
//! ledger releases nothing more until the commit in flight is done. A source is acked
//! only after the commit of its positions (I1), and commits and acks follow read
//! order, one at a time (I2).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use funnel_record::Position;
use metrics::{Counter, Histogram, counter, histogram};
use tokio::sync::mpsc;
use tracing::debug;

use super::config::WorkerStats;
use super::settle::LedgerEvent;
use super::stage::{Shared, unless_cancelled};
use crate::dlq::Dlq;
use crate::error::{Error, Result};
use crate::ledger::{Ledger, Released};
use crate::plugin::{PositionCommitter, Source};
use crate::telemetry::{
    CONDUIT_PIPELINE_EXECUTION_DURATION, PIPELINE_EXECUTION_DURATION, RECORDS_ACKED, SourceWaits,
    timed,
};

/// What the ledger stage releases to; it owns the DLQ while the run lasts.
pub(super) struct Release {
    pub(super) source: Arc<dyn Source>,
    pub(super) source_id: String,
    pub(super) dlq: Dlq,
    pub(super) committer: Option<Arc<dyn PositionCommitter>>,
    pub(super) pipeline: String,
    pub(super) pipeline_name: String,
    pub(super) waits: SourceWaits,
    /// At most this many records released and not yet committed (the credit window).
    pub(super) max_uncommitted: usize,
}

struct LedgerMetrics {
    latency: Histogram,
    conduit_latency: Histogram,
    acked: Counter,
}

/// Positions released and not yet committed: the commit in flight, or the one waiting
/// for it.
#[derive(Default)]
struct Uncommitted {
    /// The positions to ack, in read order (records sent to the DLQ included; filtered
    /// ones too). The last one is committed.
    positions: Vec<Position>,
    /// Released records, for the bound on what waits for a commit.
    records: usize,
    /// When the oldest of them was read.
    oldest: Option<Instant>,
    /// Origin of the first record after them.
    through: u64,
}

/// A commit and the source ack after it, done.
struct Committed {
    batch: Uncommitted,
    result: Result<()>,
}

type InFlight = Pin<Box<dyn Future<Output = Committed> + Send>>;

/// The commits of one source: at most one in flight, and the positions released
/// since, waiting for it.
struct Commits {
    in_flight: Option<(InFlight, usize)>,
    waiting: Uncommitted,
    /// A buffer of an acked commit, kept for the next one.
    spare: Vec<Position>,
    limit: usize,
    source_id: Arc<str>,
}

impl Commits {
    fn new(limit: usize, source_id: &str) -> Self {
        Self {
            in_flight: None,
            waiting: Uncommitted::default(),
            spare: Vec::new(),
            limit: limit.max(1),
            source_id: source_id.into(),
        }
    }

    /// Nothing released waits for a commit or an ack.
    fn idle(&self) -> bool {
        self.in_flight.is_none() && self.waiting.records == 0
    }

    /// True while more records may be released.
    fn has_room(&self) -> bool {
        let in_flight = self.in_flight.as_ref().map_or(0, |(_, records)| *records);
        in_flight + self.waiting.records < self.limit
    }

    /// Starts committing what waits, if nothing is in flight.
    fn start(&mut self, to: &Release) {
        if self.in_flight.is_some() || self.waiting.records == 0 {
            return;
        }
        let spare = std::mem::take(&mut self.spare);
        let batch = std::mem::replace(
            &mut self.waiting,
            Uncommitted {
                positions: spare,
                ..Uncommitted::default()
            },
        );
        let records = batch.records;
        let committer = to.committer.clone();
        let source = Arc::clone(&to.source);
        let source_id = Arc::clone(&self.source_id);
        let waits = to.waits.clone();
        let commit: InFlight = Box::pin(async move {
            let result = flush(
                &batch.positions,
                committer.as_deref(),
                &*source,
                &source_id,
                &waits,
            )
            .await;
            Committed { batch, result }
        });
        self.in_flight = Some((commit, records));
    }

    /// Waits for the commit in flight (pending forever when there is none).
    async fn finished(&mut self) -> Committed {
        match self.in_flight.as_mut() {
            Some((commit, _)) => commit.await,
            None => std::future::pending().await,
        }
    }

    /// The commit in flight if it is done already, without waiting.
    async fn poll_now(&mut self) -> Option<Committed> {
        let (commit, _) = self.in_flight.as_mut()?;
        match futures::poll!(commit.as_mut()) {
            std::task::Poll::Ready(done) => Some(done),
            std::task::Poll::Pending => None,
        }
    }

    /// Accounts for a finished commit; on a failure, the origin of its last record and
    /// the error.
    fn done(
        &mut self,
        committed: Committed,
        shared: &Shared,
        metrics: &LedgerMetrics,
    ) -> std::result::Result<(), (u64, Error)> {
        self.in_flight = None;
        let Committed { mut batch, result } = committed;
        if let Err(e) = result {
            return Err((batch.through.saturating_sub(1), e));
        }
        let acked = batch.positions.len();
        metrics.acked.increment(acked as u64);
        WorkerStats::add(&shared.stats.acked, acked);
        if let Some(oldest) = batch.oldest {
            let latency = oldest.elapsed().as_secs_f64();
            metrics.latency.record(latency);
            metrics.conduit_latency.record(latency);
        }
        batch.positions.clear();
        self.spare = batch.positions;
        Ok(())
    }
}

/// Applies what the stages report and releases, until every stage is done and every
/// release committed, or the run aborts; hands the DLQ back.
pub(super) async fn ledger_stage(
    mut to: Release,
    rx: mpsc::Receiver<LedgerEvent>,
    shared: &Shared,
) -> Dlq {
    settle_all(&mut to, rx, shared).await;
    to.dlq
}

async fn settle_all(to: &mut Release, mut rx: mpsc::Receiver<LedgerEvent>, shared: &Shared) {
    let metrics = LedgerMetrics {
        latency: histogram!(PIPELINE_EXECUTION_DURATION, "pipeline" => to.pipeline.clone()),
        conduit_latency: histogram!(CONDUIT_PIPELINE_EXECUTION_DURATION, "pipeline_name" => to.pipeline_name.clone()),
        acked: counter!(RECORDS_ACKED, "pipeline" => to.pipeline.clone(), "component_id" => to.source_id.clone()),
    };
    let mut ledger = Ledger::default();
    let mut released = Vec::new();
    let mut commits = Commits::new(to.max_uncommitted, &to.source_id);
    // Whether the stages may still report, and whether a release failed (the
    // positions before the failing record are committed first).
    let mut open = true;
    let mut failed = false;
    loop {
        if (!open || failed) && commits.idle() {
            if failed {
                return shared.abort.cancel();
            }
            if ledger.pending() > 0 {
                debug!(
                    source_id = %to.source_id,
                    pending = ledger.pending(),
                    "stopped with records not released"
                );
            }
            return;
        }
        let event = if commits.in_flight.is_none() {
            // Nothing to wait for but the stages (the common case without a store).
            match unless_cancelled(&shared.abort, rx.recv()).await {
                None => return,
                Some(event) => Some(event),
            }
        } else {
            let receive = open && !failed;
            tokio::select! {
                biased;
                () = shared.abort.cancelled() => return,
                committed = commits.finished() => {
                    if let Err((origin, e)) = commits.done(committed, shared, &metrics) {
                        return shared.fail(origin, e);
                    }
                    None
                }
                event = rx.recv(), if receive => Some(event),
            }
        };
        match event {
            Some(None) => open = false,
            Some(Some(event)) => {
                if let Err(e) = apply(&mut ledger, event) {
                    return shared.fail(0, e);
                }
                while let Ok(event) = rx.try_recv() {
                    if let Err(e) = apply(&mut ledger, event) {
                        return shared.fail(0, e);
                    }
                }
            }
            None => {}
        }
        // Release, commit, and again for as long as commits finish at once. Whenever a
        // commit finishes, the ledger looks again for what it can release: it may have
        // skipped releasing for want of room, and with every credit held by records
        // that wait to be released, no stage would report anything that woke it. So
        // this loop ends only with nothing releasable left (no room is missing when no
        // commit is in flight) or with a commit in flight, whose end the wait above
        // sees and which brings the ledger back here.
        loop {
            if !failed
                && commits.has_room()
                && let Err((origin, e)) =
                    release(&mut ledger, to, shared, &mut released, &mut commits).await
            {
                // The reader stops at once; the run fails once the positions before
                // the failing record are committed.
                shared.record(origin, e);
                failed = true;
            }
            commits.start(to);
            // A commit that needs no waiting (no store, a source that acks at once)
            // is accounted for at once.
            let Some(committed) = commits.poll_now().await else {
                break;
            };
            if let Err((origin, e)) = commits.done(committed, shared, &metrics) {
                return shared.fail(origin, e);
            }
        }
    }
}

fn bug(message: String) -> Error {
    Error::Internal(format!("(bug) {message}"))
}

/// Applies one event: delivered pieces first, so that pieces a branch's processors
/// made of the pieces they were given never leave a record without tokens.
fn apply(ledger: &mut Ledger, event: LedgerEvent) -> Result<()> {
    let tally = match event {
        LedgerEvent::Register {
            base,
            read_at,
            slots,
            tally,
        } => {
            ledger.register(base, read_at, slots);
            tally
        }
        LedgerEvent::Tally(tally) => tally,
    };
    for run in tally.delivered.runs() {
        if !ledger.deliver(run.from, run.len, run.count.saturating_mul(tally.copies)) {
            return Err(bug(format!(
                "pieces of records {}..{} delivered, which are not all pending",
                run.from,
                run.from + u64::from(run.len)
            )));
        }
    }
    for (origin, key, record) in tally.nacks {
        if !ledger.nack(origin, key, record) {
            return Err(bug(format!(
                "nack of record {origin}, which is not pending"
            )));
        }
    }
    for run in tally.settled.runs() {
        if !ledger.resolve(run.from, run.len, run.count) {
            return Err(bug(format!(
                "a record of {}..{} was resolved more often than it was handed on",
                run.from,
                run.from + u64::from(run.len)
            )));
        }
    }
    Ok(())
}

/// Releases what the ledger can: nacked records to the DLQ, the credits back, the
/// positions to the commit waiting. On a failure (a DLQ write), the origin of the
/// record it concerns (the first one not released) and the error; the positions
/// before it still wait for their commit.
async fn release(
    ledger: &mut Ledger,
    to: &mut Release,
    shared: &Shared,
    released: &mut Vec<Released>,
    commits: &mut Commits,
) -> std::result::Result<(), (u64, Error)> {
    released.clear();
    let Some(run) = ledger.pop_released(released) else {
        return Ok(());
    };
    let count = released.len();
    let mut through = ledger.released_through();
    let base = through - count as u64;
    let mut window_acks = 0;
    let mut failure = None;
    let waiting = &mut commits.waiting;
    for (i, r) in released.drain(..).enumerate() {
        match r.nack {
            None => {
                waiting.positions.push(r.position);
                window_acks += 1;
            }
            Some(nacked) => {
                to.dlq.ack(window_acks);
                window_acks = 0;
                let (written, result) = to.dlq.nack(std::slice::from_ref(&*nacked)).await;
                WorkerStats::add(&shared.stats.dlq, written);
                if written == 1 {
                    waiting.positions.push(r.position);
                }
                if let Err(e) = result {
                    // Neither this record nor any after it is released: the writers
                    // keep holding back what follows it (I4).
                    through = base + i as u64;
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    to.dlq.ack(window_acks);
    waiting.records += count;
    waiting.oldest.get_or_insert(run.oldest);
    waiting.through = through;
    shared.credits.give_back(count, run.bytes);
    shared.released_through(through);
    match failure {
        Some(e) => Err((through, e)),
        None => Ok(()),
    }
}

/// Commits the last of `positions`, then acks them all to the source.
async fn flush(
    positions: &[Position],
    committer: Option<&dyn PositionCommitter>,
    source: &dyn Source,
    source_id: &str,
    waits: &SourceWaits,
) -> Result<()> {
    let Some(last) = positions.last() else {
        return Ok(());
    };
    if let Some(committer) = committer {
        let committed = timed(&waits.commit, committer.commit(last)).await;
        committed.map_err(|source| Error::Commit {
            task: source_id.to_owned(),
            position: last.to_string(),
            source,
        })?;
    }
    let acked = timed(&waits.ack, source.ack(positions)).await;
    acked.map_err(|source| Error::SourceAck {
        task: source_id.to_owned(),
        count: positions.len(),
        source,
    })
}
