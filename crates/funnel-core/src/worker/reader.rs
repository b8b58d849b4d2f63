//! The reader stage: reads the source while credits last, numbers the records, runs
//! the trunk processors, registers the records with the ledger and hands each batch
//! to every branch writer, with the barrier of the last trunk nack still in effect.

use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use funnel_record::Record;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::WorkerStats;
use super::settle::{Delivery, LedgerEvent, Step, settle_into};
use super::stage::{Shared, unless_cancelled, yield_to_woken};
use crate::chain::{RetryLimits, Segment, run_read};
use crate::error::{ConnectorError, Result};
use crate::ledger::SlotInit;
use crate::plugin::Source;
use crate::task::{ProcessorTask, SourceTask};
use crate::telemetry::SourceWaits;

/// Why the reader stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReaderEnd {
    /// A stop was requested.
    Stopped,
    /// The source has no more records.
    Exhausted,
    /// An error was recorded (by the reader or another stage).
    Failed,
}

/// The reader's side of the run: it owns the source and the trunk processors while
/// the run lasts.
pub(super) struct Reader {
    pub(super) source: SourceTask,
    pub(super) trunk: Vec<ProcessorTask>,
    pub(super) writers: Vec<mpsc::Sender<Arc<Delivery>>>,
    pub(super) ledger: mpsc::Sender<LedgerEvent>,
    pub(super) stop: CancellationToken,
    pub(super) limits: RetryLimits,
    /// Join reads that are ready at once into one batch (see [`join_ready`]): only
    /// when no processor runs, since processors see the batches the source made.
    pub(super) join: bool,
    /// Yield after handing a batch on (see [`yield_to_woken`]).
    pub(super) yield_after_hand_on: bool,
    /// Where the reader's waits are recorded.
    pub(super) waits: SourceWaits,
}

/// Reads until stopped, exhausted or failed; hands the source and the trunk back.
pub(super) async fn reader_stage(
    mut r: Reader,
    shared: &Shared,
) -> (SourceTask, Vec<ProcessorTask>, ReaderEnd) {
    let end = read(&mut r, shared).await;
    (r.source, r.trunk, end)
}

async fn read(r: &mut Reader, shared: &Shared) -> ReaderEnd {
    let Reader {
        source,
        trunk,
        writers,
        ledger,
        stop,
        limits,
        join,
        yield_after_hand_on,
        waits,
    } = r;
    let limits = *limits;
    // The processors, then the source (which nacks the records it could not read).
    let trunk_ids: Vec<Arc<str>> = trunk
        .iter()
        .map(|t| Arc::from(t.id()))
        .chain(std::iter::once(Arc::from(source.id())))
        .collect();
    let branches = u32::try_from(writers.len()).unwrap_or(u32::MAX);
    let mut piece_seq = 0u64;
    let mut barrier: Option<u64> = None;
    // Reused from read to read: no allocation per batch for them.
    let mut segments = Vec::with_capacity(1);
    let mut steps = Vec::with_capacity(1);
    let from = Arc::clone(source.source());
    let mut ahead = None;
    loop {
        if shared.abort.is_cancelled() || shared.drain.is_cancelled() {
            return ReaderEnd::Failed;
        }
        if stop.is_cancelled() {
            return ReaderEnd::Stopped;
        }
        if !shared.credits.has_room() {
            let waiting = Instant::now();
            tokio::select! {
                biased;
                () = shared.abort.cancelled() => return ReaderEnd::Failed,
                () = shared.drain.cancelled() => return ReaderEnd::Failed,
                () = stop.cancelled() => return ReaderEnd::Stopped,
                () = shared.credits.available() => {}
            }
            waits.credits.record(waiting.elapsed().as_secs_f64());
        }
        let started = Instant::now();
        let read = match ahead.take() {
            Some(Ahead::Ready(read)) => read,
            pending => {
                let mut read = match pending {
                    Some(Ahead::Pending(read)) => read,
                    _ => from.read(),
                };
                let raw = match futures::poll!(read.as_mut()) {
                    Poll::Ready(raw) => raw,
                    Poll::Pending => tokio::select! {
                        biased;
                        () = shared.abort.cancelled() => return ReaderEnd::Failed,
                        () = shared.drain.cancelled() => return ReaderEnd::Failed,
                        () = stop.cancelled() => return ReaderEnd::Stopped,
                        raw = read => raw,
                    },
                };
                waits.read.record(started.elapsed().as_secs_f64());
                source.check_read(raw)
            }
        };
        let records = match read {
            Ok(Some(records)) => records,
            Ok(None) => return ReaderEnd::Exhausted,
            Err(e) => {
                shared.record(u64::MAX, e);
                return ReaderEnd::Failed;
            }
        };
        if records.is_empty() {
            continue;
        }
        let mut sizes: Vec<u32> = records.iter().map(size_of).collect();
        let records = if *join && records.len() < JOIN_BELOW {
            join_ready(records, &mut sizes, &from, source, shared, &mut ahead).await
        } else {
            records
        };
        let mut batch = source.number(records);
        let read_at = Instant::now();
        let base = batch.origins()[0];
        let mut slots: Vec<SlotInit> = batch
            .records()
            .iter()
            .zip(&sizes)
            .map(|(r, &bytes)| SlotInit {
                position: r.position.clone(),
                bytes,
                stuck: false,
            })
            .collect();
        let bytes: usize = sizes.iter().map(|&b| b as usize).sum();
        if let Some(backlog) = source.observe_read(started, slots.len(), bytes) {
            shared.stats.set_backlog(backlog);
        }
        shared.credits.take(slots.len(), bytes);
        WorkerStats::add(&shared.stats.read, slots.len());

        let failed = if trunk.is_empty() && !batch.nack_unreadable() {
            // Nothing to run: no future to build, poll and move.
            segments.push(Segment::Deliver(batch));
            None
        } else {
            let source_task = trunk.len();
            // An abort interrupts a processor call in progress.
            let read = run_read(trunk, batch, limits, source_task, &mut segments);
            match unless_cancelled(&shared.abort, read).await {
                Some(result) => result.err(),
                None => return ReaderEnd::Failed,
            }
        };
        let (mut tally, next_piece) = settle_into(
            segments.drain(..),
            &mut steps,
            piece_seq,
            None,
            &trunk_ids,
            0,
        );
        piece_seq = next_piece;
        tally.copies = branches;
        if trunk.is_empty() {
            // Without trunk processors the records are the ones just sized (unless some
            // were nacked as unreadable: then the delivery holds fewer).
            let mut sizes = Some(sizes);
            for step in &mut steps {
                if let Step::Deliver(d) = step
                    && d.batch.len() == slots.len()
                {
                    d.sizes = sizes.take();
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
            tally,
        };
        if !shared.send(ledger, register).await {
            return ReaderEnd::Failed;
        }
        for step in steps.drain(..) {
            match step {
                Step::Barrier(origin) => barrier = Some(origin),
                Step::Deliver(delivery) => {
                    if !deliver(delivery, &mut barrier, writers, shared).await {
                        return ReaderEnd::Failed;
                    }
                }
            }
        }
        if let Some((origin, e)) = failed {
            shared.record(origin, e);
            return ReaderEnd::Failed;
        }
        if *yield_after_hand_on {
            yield_to_woken().await;
        }
    }
}

/// Reads are joined only after a read of fewer records than this. Joining copies each
/// record once more, which costs about what the per-batch work saves at ~100 records
/// a read (engine bench, callgrind: 853 instructions per record at batch 100 without
/// joining, 895 with).
const JOIN_BELOW: usize = 64;

/// What one [`Source::read`] returns.
type RawRead = std::result::Result<Option<Vec<Record>>, ConnectorError>;

/// A read started while joining reads, carried over to the next batch.
enum Ahead<'a> {
    /// Not ready yet: the next batch awaits this same read (a read is never dropped
    /// and started again, except on a stop).
    Pending(BoxFuture<'a, RawRead>),
    /// Its outcome, an error or the end of the source, comes after the batch it was
    /// not joined to.
    Ready(Result<Option<Vec<Record>>>),
}

/// What a record counts for the byte credits.
fn size_of(record: &Record) -> u32 {
    u32::try_from(record.size_hint()).unwrap_or(u32::MAX)
}

/// Appends to `records` (sized in `sizes`) whatever further reads of `from` return at
/// once, while the credits have room and up to [`Credits::join_limit`] records: a
/// source that returns small batches as fast as they are asked for pays the engine's
/// per-batch cost once per joined batch. A read that is not ready, fails or ends the
/// source is left in `ahead` for the next batch. Write and ack call boundaries may
/// differ from the source's batches; what reaches each destination and the source
/// does not.
///
/// [`Credits::join_limit`]: super::credits::Credits::join_limit
async fn join_ready<'a>(
    mut records: Vec<Record>,
    sizes: &mut Vec<u32>,
    from: &'a Arc<dyn Source>,
    source: &SourceTask,
    shared: &Shared,
    ahead: &mut Option<Ahead<'a>>,
) -> Vec<Record> {
    let limit = shared.credits.join_limit();
    // Read before these records take their credits; it only grows meanwhile.
    let (room, byte_room) = shared.credits.room();
    let mut bytes: usize = sizes.iter().map(|&b| b as usize).sum();
    while records.len() < limit.min(room) && bytes < byte_room {
        let mut read = from.read();
        let raw = match futures::poll!(read.as_mut()) {
            Poll::Ready(raw) => raw,
            Poll::Pending => {
                *ahead = Some(Ahead::Pending(read));
                break;
            }
        };
        match source.check_read(raw) {
            Ok(Some(more)) if more.is_empty() => break,
            Ok(Some(more)) => {
                if records.len() == records.capacity() {
                    records.reserve(limit.saturating_sub(records.len()).max(more.len()));
                    sizes.reserve(limit.saturating_sub(sizes.len()).max(more.len()));
                }
                let start = sizes.len();
                sizes.extend(more.iter().map(size_of));
                bytes += sizes[start..].iter().map(|&b| b as usize).sum::<usize>();
                records.extend(more);
            }
            outcome => {
                *ahead = Some(Ahead::Ready(outcome));
                break;
            }
        }
    }
    records
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
    let delivery = Arc::new(delivery);
    for tx in writers {
        if !shared.send(tx, Arc::clone(&delivery)).await {
            return false;
        }
    }
    true
}
