//! The ack reader stage: receives a destination's acks and matches them, in order, to
//! the records its writer wrote. Each ack settles one piece with the ledger; an ack
//! with an error also nacks it. An ack that does not match (none, one too many, a
//! position that was not the next written) is a protocol violation of the destination.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::config::WorkerStats;
use super::settle::{Delivery, LedgerEvent, Tally};
use super::stage::{Shared, unless_cancelled};
use crate::dlq::NackedRecord;
use crate::error::Error;
use crate::task::DestinationTask;

/// A write waiting for its acks.
pub(super) struct Written {
    pub(super) delivery: Arc<Delivery>,
    /// The records of the delivery that were written.
    pub(super) range: Range<usize>,
}

/// Writes waiting for acks, each with the index of its next record to be acked, and
/// how many records they still wait for in all.
#[derive(Default)]
struct Pending {
    writes: VecDeque<(Written, usize)>,
    waiting: usize,
}

impl Pending {
    fn push(&mut self, w: Written) {
        self.waiting += w.range.len();
        let start = w.range.start;
        self.writes.push_back((w, start));
    }

    /// Origin of the next record waiting for its ack (orders an error).
    fn origin(&self) -> u64 {
        self.writes
            .front()
            .and_then(|(w, cursor)| w.delivery.batch.origins().get(*cursor).copied())
            .unwrap_or(u64::MAX)
    }
}

/// Matches `destination`'s acks to the writes of branch `branch` until the writer is
/// done and every write is acked, or the run fails.
pub(super) async fn ack_reader_stage(
    branch: usize,
    destination: &DestinationTask,
    mut rx: mpsc::Receiver<Written>,
    ledger: mpsc::Sender<LedgerEvent>,
    shared: &Shared,
) {
    let id: Arc<str> = Arc::from(destination.id());
    let protocol = |message: String| Error::AckProtocol {
        task: id.to_string(),
        message,
    };
    let mut pending = Pending::default();
    loop {
        if pending.writes.is_empty() {
            match unless_cancelled(&shared.abort, rx.recv()).await {
                Some(Some(w)) => pending.push(w),
                Some(None) | None => return,
            }
        }
        while let Ok(w) = rx.try_recv() {
            pending.push(w);
        }
        let started = Instant::now();
        let waiting = pending.waiting;
        let Some(acks) = unless_cancelled(&shared.abort, destination.next_acks(waiting)).await
        else {
            return;
        };
        let acks = match acks {
            Ok(acks) => acks,
            Err(e) => return shared.fail(pending.origin(), e),
        };
        if acks.is_empty() {
            return shared.fail(
                pending.origin(),
                protocol(format!(
                    "received 0 acks, but {waiting} records are waiting; a destination's ack() \
                     must wait until it has acknowledgements"
                )),
            );
        }
        let mut tally = Tally {
            copies: 1,
            ..Tally::default()
        };
        let mut bytes = 0;
        let received = acks.len();
        // Where this call's acks of the front write began: they are settled together,
        // a stretch of consecutive origins at a time.
        let mut settled_from = None;
        for ack in acks {
            if pending.writes.is_empty() {
                // The writer may not have queued the write these acks are for yet.
                match unless_cancelled(&shared.abort, rx.recv()).await {
                    None => return,
                    Some(Some(w)) => pending.push(w),
                    Some(None) => {
                        return shared.fail(
                            u64::MAX,
                            protocol(format!(
                                "received {received} acks, but expected at most {}",
                                received.saturating_sub(1)
                            )),
                        );
                    }
                }
            }
            let Some((written, cursor)) = pending.writes.front_mut() else {
                return shared.fail(
                    0,
                    Error::Internal("ack reader lost its pending writes".into()),
                );
            };
            let delivery = &written.delivery;
            let index = *cursor;
            let from = *settled_from.get_or_insert(index);
            let record = &delivery.batch.records()[index];
            let origin = delivery.batch.origins()[index];
            if record.position != ack.position {
                return shared.fail(
                    origin,
                    protocol(format!(
                        "received unexpected ack, expected position \"{}\" but got \"{}\"",
                        record.position, ack.position
                    )),
                );
            }
            bytes += delivery
                .sizes
                .as_ref()
                .and_then(|sizes| sizes.get(index))
                .map_or_else(|| record.size_hint(), |&size| size as usize);
            if let Some(error) = ack.error {
                let nacked = NackedRecord {
                    record: delivery.batch.dlq_record(index).clone(),
                    error,
                    task: Arc::clone(&id),
                };
                tally
                    .nacks
                    .push((origin, delivery.nack_key(index, branch), nacked));
            }
            *cursor += 1;
            pending.waiting -= 1;
            if *cursor == written.range.end {
                let origins = &delivery.batch.origins()[from..*cursor];
                tally.settled.extend(origins, 1);
                settled_from = None;
                pending.writes.pop_front();
            }
        }
        if let (Some(from), Some((written, cursor))) = (settled_from, pending.writes.front()) {
            let origins = &written.delivery.batch.origins()[from..*cursor];
            tally.settled.extend(origins, 1);
        }
        destination
            .connector
            .metrics
            .observe(started, received, bytes);
        WorkerStats::add(&shared.stats.written, received);
        if !shared.send(&ledger, LedgerEvent::Tally(tally)).await {
            return;
        }
    }
}
