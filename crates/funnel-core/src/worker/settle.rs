//! What the stages tell the ledger, and the one function that turns a chain's output
//! into it.
//!
//! The ledger is the only place that counts. Stages report *tallies*: pieces of a source
//! record delivered to destinations (each piece a token per destination that receives
//! it), pieces settled (acked, nacked, filtered, or turned by a branch's processors into
//! pieces of their own), and nacks. The reader and every branch writer run a processor
//! chain; [`settle`] is how either turns the chain's [`Segment`]s into batches to hand
//! on, barriers and a tally.

use std::sync::Arc;
use std::time::Instant;

use super::runs::Runs;
use crate::batch::Batch;
use crate::chain::Segment;
use crate::dlq::NackedRecord;
use crate::error::RecordError;
use crate::ledger::{NackKey, SlotInit};

/// A nack for the ledger: the record's origin, where the nacked piece sits in pipeline
/// order (the earliest wins), and what goes to the DLQ.
pub(super) type Nack = (u64, NackKey, NackedRecord);

/// Counts for the ledger, from one stage.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// (origin, pieces) handed on to destinations, run-length encoded.
    pub(super) delivered: Runs,
    /// Destinations each delivered piece goes to.
    pub(super) copies: u32,
    /// (origin, tokens) settled, run-length encoded.
    pub(super) settled: Runs,
    pub(super) nacks: Vec<Nack>,
}

/// What the ledger hears.
pub(super) enum LedgerEvent {
    /// The reader read records `base..base + slots.len()` and handed them on as
    /// `tally` says.
    Register {
        base: u64,
        read_at: Instant,
        slots: Vec<SlotInit>,
        tally: Tally,
    },
    /// A writer or an ack reader settled pieces.
    Tally(Tally),
}

/// Records handed to the destinations: shared by every branch.
pub(super) struct Delivery {
    pub(super) batch: Batch,
    /// Pipeline-order number of the batch's first record (orders nacks).
    pub(super) piece_base: u64,
    /// A trunk-nacked origin not yet in the DLQ when this was handed on: records after
    /// it may be processed by the branch but not written before it is released (I4).
    pub(super) barrier: Option<u64>,
    /// `size_hint` of each record, when the reader computed them already (records
    /// unchanged since the read): the ack reader's byte metric then needs no second
    /// walk over structured payloads.
    pub(super) sizes: Option<Vec<u32>>,
    /// For what a branch's own processors made: per origin, the pipeline-order number
    /// of its first piece in the delivery they were given. A nack of any piece made
    /// from it is ordered there.
    pub(super) first_pieces: Option<Arc<[(u64, u64)]>>,
}

impl Delivery {
    /// Where a nack of record `index` of this delivery, by `branch`, is ordered.
    pub(super) fn nack_key(&self, index: usize, branch: usize) -> NackKey {
        let piece = match &self.first_pieces {
            None => self.piece_base + index as u64,
            Some(first) => first_piece(first, self.batch.origins()[index]),
        };
        (piece, branch)
    }

    /// Per origin of the batch, the pipeline-order number of its first record.
    pub(super) fn first_pieces(&self) -> Arc<[(u64, u64)]> {
        let mut first: Vec<(u64, u64)> = Vec::new();
        for (i, &o) in self.batch.origins().iter().enumerate() {
            if first.last().is_none_or(|&(last, _)| last != o) {
                first.push((o, self.piece_base + i as u64));
            }
        }
        first.into()
    }
}

fn first_piece(first: &[(u64, u64)], origin: u64) -> u64 {
    let at = first.partition_point(|&(o, _)| o < origin);
    first.get(at).map_or(u64::MAX, |&(_, piece)| piece)
}

/// What the reader or a writer does with a processed batch, in pipeline order.
pub(super) enum Step {
    /// Hand the records on.
    Deliver(Delivery),
    /// A record of this origin was nacked: what follows waits for its release (I4).
    Barrier(u64),
}

/// A chain's output, settled.
#[cfg(test)]
pub(super) struct Settled {
    pub(super) steps: Vec<Step>,
    /// Pieces delivered and nacks; nothing settled yet.
    pub(super) tally: Tally,
    /// Pipeline-order number after the last piece.
    pub(super) next_piece: u64,
}

/// [`settle_into`] a new vector of steps.
#[cfg(test)]
pub(super) fn settle(
    segments: Vec<Segment>,
    piece_base: u64,
    first_pieces: Option<&Arc<[(u64, u64)]>>,
    ids: &[Arc<str>],
    branch: usize,
) -> Settled {
    let mut steps = Vec::with_capacity(segments.len());
    let (tally, next_piece) =
        settle_into(segments, &mut steps, piece_base, first_pieces, ids, branch);
    Settled {
        steps,
        tally,
        next_piece,
    }
}

/// Turns a chain's `segments` into steps, appended to `steps`, and a tally: delivered
/// batches lose their filtered records and count their pieces per origin, nacked ones
/// become a barrier and one nack per origin. Pieces are numbered from `piece_base` in
/// pipeline order; `first_pieces`, for a branch's own processors, orders their nacks at
/// the piece the branch was given instead. `ids` names the chain's processors. Returns
/// the tally and the pipeline-order number after the last piece. The reader and the
/// writers reuse `steps` from batch to batch: one allocation less per batch.
pub(super) fn settle_into(
    segments: impl IntoIterator<Item = Segment>,
    steps: &mut Vec<Step>,
    piece_base: u64,
    first_pieces: Option<&Arc<[(u64, u64)]>>,
    ids: &[Arc<str>],
    branch: usize,
) -> (Tally, u64) {
    let mut piece = piece_base;
    let mut tally = Tally::default();
    for segment in segments {
        match segment {
            Segment::Deliver(mut batch) => {
                batch.take_filtered();
                tally.delivered.extend(batch.origins(), 1);
                let len = batch.len() as u64;
                steps.push(Step::Deliver(Delivery {
                    batch,
                    piece_base: piece,
                    barrier: None,
                    sizes: None,
                    first_pieces: first_pieces.map(Arc::clone),
                }));
                piece += len;
            }
            Segment::Done(batch) => piece += batch.len() as u64,
            Segment::Nack(batch, task) => {
                let mut last = None;
                for (p, &o) in batch.origins().iter().enumerate() {
                    if last != Some(o) {
                        let at = match first_pieces {
                            None => piece + p as u64,
                            Some(first) => first_piece(first, o),
                        };
                        tally
                            .nacks
                            .push((o, (at, branch), nacked(&batch, p, &ids[task])));
                        last = Some(o);
                    }
                }
                piece += batch.len() as u64;
                if let Some(o) = last {
                    steps.push(Step::Barrier(o));
                }
            }
        }
    }
    (tally, piece)
}

/// Adds `count` to the run of `origin`, or starts one.
#[inline]
pub(super) fn push_origin(origins: &mut Runs, origin: u64, count: u32) {
    origins.push(origin, count);
}

/// The DLQ entry of the nacked record at physical index `p` of `batch`.
pub(super) fn nacked(batch: &Batch, p: usize, task: &Arc<str>) -> NackedRecord {
    NackedRecord {
        record: batch.dlq_record(p).clone(),
        error: batch.statuses()[p]
            .error
            .clone()
            .unwrap_or_else(|| RecordError::msg("record was nacked without an error")),
        task: Arc::clone(task),
    }
}

#[cfg(test)]
mod tests {
    use funnel_record::Record;

    use super::*;

    /// `n` records with origins from `base` on.
    fn batch(base: u64, n: usize) -> Batch {
        Batch::with_origin_base(
            (0..n).map(|i| Record::new(i.to_string(), "x")).collect(),
            base,
        )
    }

    #[test]
    fn settling_counts_delivered_pieces_per_origin_and_numbers_them_in_pipeline_order() {
        let mut nacked = batch(2, 1);
        nacked.nack(0, [RecordError::msg("no")]);
        let ids: Vec<Arc<str>> = vec![Arc::from("p")];
        let settled = settle(
            vec![
                Segment::Deliver(batch(0, 2)),
                Segment::Nack(nacked, 0),
                Segment::Deliver(batch(3, 1)),
            ],
            10,
            None,
            &ids,
            0,
        );
        assert_eq!(settled.tally.delivered, [(0, 1), (1, 1), (3, 1)]);
        assert_eq!(settled.next_piece, 14);
        assert_eq!(settled.tally.nacks.len(), 1);
        assert_eq!(
            settled.tally.nacks[0].1,
            (12, 0),
            "the nack is the third piece"
        );
        let kinds: Vec<String> = settled
            .steps
            .iter()
            .map(|s| match s {
                Step::Deliver(d) => format!("deliver@{}", d.piece_base),
                Step::Barrier(o) => format!("barrier {o}"),
            })
            .collect();
        assert_eq!(kinds, ["deliver@10", "barrier 2", "deliver@13"]);
    }

    #[test]
    fn a_branch_orders_its_nacks_at_the_piece_it_was_given() {
        let mut pieces = batch(4, 2);
        pieces.split_record(1, vec![Record::new("a", "a"), Record::new("b", "b")]);
        let given = Delivery {
            batch: pieces,
            piece_base: 20,
            barrier: None,
            sizes: None,
            first_pieces: None,
        };
        let first = given.first_pieces();
        assert_eq!(&first[..], [(4, 20), (5, 21)]);
        let mut nacked = batch(5, 1);
        nacked.nack(0, [RecordError::msg("no")]);
        let settled = settle(
            vec![Segment::Nack(nacked, 0)],
            20,
            Some(&first),
            &[Arc::from("b")],
            3,
        );
        assert_eq!(settled.tally.nacks[0].1, (21, 3));
    }
}
