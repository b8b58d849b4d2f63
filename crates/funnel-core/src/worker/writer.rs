//! The branch writer stage: runs the branch's own processors over each delivery,
//! writes to the destination without waiting for acks, and queues each write for the
//! ack reader. Writes wait for barriers: nothing read after a nacked record is written
//! before that record is released (I4).

use std::ops::Range;
use std::sync::Arc;

use funnel_record::Record;
use tokio::sync::mpsc;

use super::ack_reader::Written;
use super::settle::{Delivery, LedgerEvent, Step, push_origin, settle_into};
use super::stage::{Shared, unless_cancelled, yield_to_woken};
use crate::batch::Batch;
use crate::chain::{RetryLimits, run_chain};
use crate::error::Result;
use crate::task::{DestinationTask, ProcessorTask};

/// One branch's writer: it owns the branch's processors while the run lasts.
pub(super) struct Writer {
    pub(super) branch: usize,
    pub(super) processors: Vec<ProcessorTask>,
    pub(super) destination: Arc<DestinationTask>,
    pub(super) rx: mpsc::Receiver<Arc<Delivery>>,
    pub(super) acker: mpsc::Sender<Written>,
    pub(super) ledger: mpsc::Sender<LedgerEvent>,
    pub(super) limits: RetryLimits,
    /// Yield after each delivery (see [`yield_to_woken`]).
    pub(super) yield_after_write: bool,
}

/// Writes what the reader delivers until the reader is done or the run fails; hands
/// the branch's processors back.
pub(super) async fn writer_stage(mut w: Writer, shared: &Shared) -> Vec<ProcessorTask> {
    write(&mut w, shared).await;
    w.processors
}

async fn write(w: &mut Writer, shared: &Shared) {
    let Writer {
        branch,
        processors,
        destination,
        rx,
        acker,
        ledger,
        limits,
        yield_after_write,
    } = w;
    let (branch, limits) = (*branch, *limits);
    let ids: Vec<Arc<str>> = processors.iter().map(|t| Arc::from(t.id())).collect();
    // Nacked origins not yet released: what follows them is not written yet (I4).
    let mut barriers: Vec<u64> = Vec::new();
    let mut steps = Vec::new();
    loop {
        let Some(Some(delivery)) = unless_cancelled(&shared.abort, rx.recv()).await else {
            return;
        };
        if let Some(origin) = delivery.barrier {
            add_barrier(&mut barriers, origin);
        }
        if *yield_after_write {
            // Before the write (which wakes the ack reader), not after: what this stage
            // does next may be a long processor call.
            yield_to_woken().await;
        }
        if processors.is_empty() {
            if !write_delivery(delivery, &mut barriers, destination, acker, shared).await {
                return;
            }
            continue;
        }
        // A branch with its own processors works on its own copy. On an error, like a
        // trunk processor's error: what the chain handed on before it still finishes;
        // then this branch takes nothing more, which stops the reader.
        let mut segments = Vec::new();
        let chain = run_chain(processors, delivery.batch.clone(), limits, &mut segments);
        // An abort interrupts a processor call in progress.
        let Some(result) = unless_cancelled(&shared.abort, chain).await else {
            return;
        };
        let failed = result.err();
        let first_pieces = delivery.first_pieces();
        let (mut tally, _) = settle_into(
            segments,
            &mut steps,
            delivery.piece_base,
            Some(&first_pieces),
            &ids,
            branch,
        );
        tally.copies = 1;
        // The pieces this branch was given are settled: they became what it delivers.
        // Those from a failure on never are: their records must not be released.
        let stuck_from = failed.as_ref().map_or(u64::MAX, |(origin, _)| *origin);
        for &o in delivery.batch.origins() {
            if o < stuck_from {
                push_origin(&mut tally.settled, o, 1);
            }
        }
        if !shared.send(ledger, LedgerEvent::Tally(tally)).await {
            return;
        }
        for step in steps.drain(..) {
            match step {
                Step::Barrier(o) => add_barrier(&mut barriers, o),
                Step::Deliver(d) => {
                    if !write_delivery(Arc::new(d), &mut barriers, destination, acker, shared).await
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
) -> Option<Range<usize>> {
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

/// Writes `delivery`, range by range as the barriers allow, queueing each write for
/// the ack reader. False when the stage must end.
async fn write_delivery(
    delivery: Arc<Delivery>,
    barriers: &mut Vec<u64>,
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
        if let Err(e) = write_records(destination, records, shared).await {
            shared.fail(delivery.batch.origins()[range.start], e);
            return false;
        }
        from = range.end;
        let written = Written {
            delivery: Arc::clone(&delivery),
            range,
        };
        if !shared.send(acker, written).await {
            return false;
        }
    }
    true
}

async fn write_records(
    destination: &DestinationTask,
    records: &[Record],
    shared: &Shared,
) -> Result<()> {
    unless_cancelled(&shared.abort, destination.write(records))
        .await
        .unwrap_or(Ok(()))
}
