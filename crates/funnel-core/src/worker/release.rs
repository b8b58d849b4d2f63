//! The ledger stage: applies the stages' tallies to the [`Ledger`] and releases what
//! it can, strictly in read order: nacked records to the DLQ, then the last position to
//! the committer, then the positions to `Source::ack`, then the credits back (I1, I2,
//! I3).

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
}

struct LedgerMetrics {
    latency: Histogram,
    conduit_latency: Histogram,
    acked: Counter,
}

/// Applies what the stages report and releases, until every stage is done or the run
/// aborts; hands the DLQ back.
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
    let mut buffers = (Vec::new(), Vec::new());
    loop {
        let Some(event) = unless_cancelled(&shared.abort, rx.recv()).await else {
            return;
        };
        let Some(event) = event else {
            if ledger.pending() > 0 {
                debug!(
                    source_id = %to.source_id,
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
        if let Err((origin, e)) = release(&mut ledger, to, shared, &metrics, &mut buffers).await {
            // Everything before the failing record was released, so this error comes
            // before any error recorded for records still in flight.
            return shared.fail(origin, e);
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

/// Releases what the ledger can. On a failure, the origin of the record it concerns
/// (the first one not released) and the error.
async fn release(
    ledger: &mut Ledger,
    to: &mut Release,
    shared: &Shared,
    metrics: &LedgerMetrics,
    buffers: &mut (Vec<Released>, Vec<Position>),
) -> std::result::Result<(), (u64, Error)> {
    let (released, positions) = buffers;
    released.clear();
    positions.clear();
    let Some(run) = ledger.pop_released(released) else {
        return Ok(());
    };
    let count = released.len();
    let mut through = ledger.released_through();
    let base = through - count as u64;
    let mut window_acks = 0;
    let mut failure = None;
    for (i, r) in released.drain(..).enumerate() {
        match r.nack {
            None => {
                positions.push(r.position);
                window_acks += 1;
            }
            Some(nacked) => {
                to.dlq.ack(window_acks);
                window_acks = 0;
                let (written, result) = to.dlq.nack(std::slice::from_ref(&*nacked)).await;
                WorkerStats::add(&shared.stats.dlq, written);
                if written == 1 {
                    positions.push(r.position);
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
    let acked = positions.len();
    let flushed = flush(positions, to).await;
    if flushed.is_ok() {
        metrics.acked.increment(acked as u64);
        WorkerStats::add(&shared.stats.acked, acked);
        let latency = run.oldest.elapsed().as_secs_f64();
        metrics.latency.record(latency);
        metrics.conduit_latency.record(latency);
        shared.credits.give_back(count, run.bytes);
        shared.released_through(through);
    }
    match failure {
        Some(e) => Err((through, e)),
        None => flushed.map_err(|e| (through.saturating_sub(1), e)),
    }
}

/// Commits the last of `positions`, then acks them all to the source.
async fn flush(positions: &[Position], to: &Release) -> Result<()> {
    let Some(last) = positions.last() else {
        return Ok(());
    };
    if let Some(committer) = &to.committer {
        let started = Instant::now();
        let committed = committer.commit(last).await;
        to.waits.commit.record(started.elapsed().as_secs_f64());
        committed.map_err(|source| Error::Commit {
            task: to.source_id.clone(),
            position: last.to_string(),
            source,
        })?;
    }
    let started = Instant::now();
    let acked = to.source.ack(positions).await;
    to.waits.ack.record(started.elapsed().as_secs_f64());
    acked.map_err(|source| Error::SourceAck {
        task: to.source_id.clone(),
        count: positions.len(),
        source,
    })
}
