//! [`Batch`]: records travelling together, each with its own status.
//!
//! Every mutator takes indices into the *active* view (records not filtered), as in
//! Conduit's funnel, so a processor's results line up with the records it was given.
//! Each record also remembers its *origin*: the sequence number of the source record
//! it descends from. Split pieces share their origin, which is how the engine acks a
//! source position once, after every piece is done, without keying anything by the
//! position's bytes.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use funnel_record::Record;

use crate::error::RecordError;

mod groups;

/// What should happen to a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecordFlag {
    /// Passed on to the next task (or, after the last one, acked).
    #[default]
    Ack,
    /// Failed: goes to the dead-letter queue.
    Nack,
    /// Not processed yet: fed again to the same task.
    Retry,
    /// Dropped: acked, never written.
    Filter,
}

impl fmt::Display for RecordFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ack => "ack",
            Self::Nack => "nack",
            Self::Retry => "retry",
            Self::Filter => "filter",
        })
    }
}

/// The status of one record in a batch: its flag, and the error of a nack.
///
/// A [`RecordFlag::Nack`] always comes with an error: [`Batch::nack`] takes
/// [`RecordError`]s, not optional ones, so a nack without a reason cannot be built.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordStatus {
    /// What should happen to the record.
    pub flag: RecordFlag,
    /// Why the record was nacked.
    pub error: Option<RecordError>,
}

/// Records processed together, with a status per record.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    records: Vec<Record>,
    statuses: Vec<RecordStatus>,
    origins: Vec<u64>,
    filter_count: usize,
    tainted: bool,
    /// Per split origin, the record as it was right before its first split.
    splits: Vec<(u64, Record)>,
}

impl Batch {
    /// A batch of `records`, all flagged ack, with origins `0..n`.
    pub fn new(records: Vec<Record>) -> Self {
        Self::with_origin_base(records, 0)
    }

    /// A batch of `records` whose origins are `base..base + n`.
    pub fn with_origin_base(records: Vec<Record>, base: u64) -> Self {
        let n = records.len();
        Self {
            statuses: vec![RecordStatus::default(); n],
            origins: (base..base + n as u64).collect(),
            records,
            filter_count: 0,
            tainted: false,
            splits: Vec::new(),
        }
    }

    /// Number of records, filtered ones included.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record, filtered ones included, in order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Every status, in order.
    pub fn statuses(&self) -> &[RecordStatus] {
        &self.statuses
    }

    /// The origin (source record sequence number) of every record, in order.
    pub fn origins(&self) -> &[u64] {
        &self.origins
    }

    /// Number of filtered records.
    pub fn filter_count(&self) -> usize {
        self.filter_count
    }

    /// True once any record was nacked or marked for retry.
    pub fn is_tainted(&self) -> bool {
        self.tainted
    }

    /// True while at least one record is not filtered.
    pub fn has_active_records(&self) -> bool {
        self.filter_count < self.records.len()
    }

    /// The records that are not filtered, in order (borrowed when none is filtered).
    pub fn active_records(&self) -> Cow<'_, [Record]> {
        if self.filter_count == 0 {
            return Cow::Borrowed(&self.records);
        }
        Cow::Owned(
            self.records
                .iter()
                .zip(&self.statuses)
                .filter(|(_, s)| s.flag != RecordFlag::Filter)
                .map(|(r, _)| r.clone())
                .collect(),
        )
    }

    /// Physical indices of the records that are not filtered.
    pub fn active_indices(&self) -> Vec<usize> {
        self.statuses
            .iter()
            .enumerate()
            .filter(|(_, s)| s.flag != RecordFlag::Filter)
            .map(|(i, _)| i)
            .collect()
    }

    /// The record as it was before its first split, for records that were split.
    pub fn split_original(&self, origin: u64) -> Option<&Record> {
        self.splits
            .iter()
            .find(|(o, _)| *o == origin)
            .map(|(_, r)| r)
    }

    /// The record the dead-letter queue gets for the record at physical index `p`:
    /// the record before its first split, or the record itself.
    pub fn dlq_record(&self, p: usize) -> &Record {
        self.split_original(self.origins[p])
            .unwrap_or(&self.records[p])
    }

    fn physical(&self, active: usize) -> usize {
        if self.filter_count == 0 {
            assert!(active < self.records.len(), "index out of range: {active}");
            return active;
        }
        match self
            .statuses
            .iter()
            .enumerate()
            .filter(|(_, s)| s.flag != RecordFlag::Filter)
            .nth(active)
        {
            Some((p, _)) => p,
            None => panic!("index out of range: {active}"),
        }
    }

    fn physical_range(&self, range: Range<usize>) -> Vec<usize> {
        assert!(range.start < range.end, "invalid range (i >= j)");
        if self.filter_count == 0 {
            assert!(
                range.end <= self.records.len(),
                "index out of range: {}",
                range.end
            );
            return range.collect();
        }
        let active = self.active_indices();
        assert!(
            range.end <= active.len(),
            "index out of range: {}",
            range.end
        );
        active[range].to_vec()
    }

    fn set_flag(&mut self, p: usize, flag: RecordFlag) {
        let old = self.statuses[p].flag;
        if old == RecordFlag::Filter && flag != RecordFlag::Filter {
            self.filter_count -= 1;
        } else if old != RecordFlag::Filter && flag == RecordFlag::Filter {
            self.filter_count += 1;
        }
        self.statuses[p].flag = flag;
    }

    /// Flags the active records in `range` ack (errors are kept, as in Conduit).
    ///
    /// # Panics
    ///
    /// When the range is empty or out of bounds.
    pub fn ack(&mut self, range: Range<usize>) {
        for p in self.physical_range(range) {
            self.set_flag(p, RecordFlag::Ack);
        }
    }

    /// Flags the active records in `range` for retry and taints the batch.
    ///
    /// # Panics
    ///
    /// When the range is empty or out of bounds.
    pub fn retry(&mut self, range: Range<usize>) {
        for p in self.physical_range(range) {
            self.set_flag(p, RecordFlag::Retry);
        }
        self.tainted = true;
    }

    /// Filters the active records in `range` out. They leave the active view and are
    /// acked with the rest of the batch. Filtering does not taint.
    ///
    /// # Panics
    ///
    /// When the range is empty or out of bounds.
    pub fn filter(&mut self, range: Range<usize>) {
        for p in self.physical_range(range) {
            self.set_flag(p, RecordFlag::Filter);
        }
    }

    /// Nacks the active records from `i` on, one per error, and taints the batch (even
    /// with no error given).
    ///
    /// Nacking one piece of a split record nacks every piece of it in this batch, with
    /// the same error (filtered pieces included), so the record goes to the DLQ whole.
    ///
    /// # Panics
    ///
    /// When an index is out of bounds.
    pub fn nack(&mut self, i: usize, errors: impl IntoIterator<Item = RecordError>) {
        self.tainted = true;
        let errors: Vec<RecordError> = errors.into_iter().collect();
        if errors.is_empty() {
            return;
        }
        let targets = self.physical_range(i..i + errors.len());
        for (p, error) in targets.into_iter().zip(errors) {
            self.nack_at(p, error);
        }
    }

    /// Nacks every record its source could not read (no `payload.after`, and metadata
    /// [`READ_ERROR`](funnel_record::metadata::READ_ERROR)), with that metadata's text as
    /// the error. Returns whether there was one. Records with a `payload.after` (nearly
    /// all) cost one comparison each: the metadata is looked up only for the others.
    pub fn nack_unreadable(&mut self) -> bool {
        if self.records.iter().all(|r| r.payload.after.is_some()) {
            return false;
        }
        let unreadable: Vec<(usize, RecordError)> = self
            .records
            .iter()
            .enumerate()
            .filter_map(|(p, r)| {
                if r.payload.after.is_some() {
                    return None;
                }
                let text = r.metadata.get(funnel_record::metadata::READ_ERROR)?;
                Some((p, RecordError::msg(text)))
            })
            .collect();
        let any = !unreadable.is_empty();
        for (p, error) in unreadable {
            self.nack_at(p, error);
        }
        any
    }

    /// [`nack`](Self::nack) of the record at physical index `p`.
    pub(crate) fn nack_at(&mut self, p: usize, error: RecordError) {
        self.tainted = true;
        let origin = self.origins[p];
        let span = if self.split_original(origin).is_some() {
            self.origin_span(p)
        } else {
            p..p + 1
        };
        for q in span {
            self.set_flag(q, RecordFlag::Nack);
            self.statuses[q].error = Some(error.clone());
        }
    }

    /// Flags the record at physical index `p`.
    pub(crate) fn flag_at(&mut self, p: usize, flag: RecordFlag) {
        if flag == RecordFlag::Retry {
            self.tainted = true;
        }
        self.set_flag(p, flag);
    }

    /// Replaces the record at physical index `p`.
    /// Every record, to change in place, when none is filtered.
    pub(crate) fn records_mut_if_all_active(&mut self) -> Option<&mut [Record]> {
        (self.filter_count == 0).then_some(self.records.as_mut_slice())
    }

    /// Moves the record at physical index `p` out, leaving an empty record until
    /// [`set_at`](Self::set_at) puts one back.
    pub(crate) fn take_at(&mut self, p: usize) -> Record {
        std::mem::take(&mut self.records[p])
    }

    pub(crate) fn set_at(&mut self, p: usize, record: Record) {
        self.records[p] = record;
    }

    /// The contiguous range of records around `p` sharing its origin.
    fn origin_span(&self, p: usize) -> Range<usize> {
        let origin = self.origins[p];
        let mut start = p;
        while start > 0 && self.origins[start - 1] == origin {
            start -= 1;
        }
        let mut end = p + 1;
        while end < self.origins.len() && self.origins[end] == origin {
            end += 1;
        }
        start..end
    }

    /// Replaces the active records from `i` on with `records`, in order. Flags are
    /// not touched.
    ///
    /// # Panics
    ///
    /// When there are more records than active slots from `i`.
    pub fn set_records(&mut self, i: usize, records: impl IntoIterator<Item = Record>) {
        let records: Vec<Record> = records.into_iter().collect();
        if records.is_empty() {
            return;
        }
        for (p, record) in self
            .physical_range(i..i + records.len())
            .into_iter()
            .zip(records)
        {
            self.records[p] = record;
        }
    }

    /// Replaces the active record `i` with `pieces`. The first piece keeps the record's
    /// status; the others are flagged ack. All pieces keep the record's origin, so its
    /// position is acked once, after every piece is done. No pieces filters the
    /// record; one piece replaces it.
    ///
    /// # Panics
    ///
    /// When `i` is out of bounds.
    pub fn split_record(&mut self, i: usize, pieces: Vec<Record>) {
        match pieces.len() {
            0 => return self.filter(i..i + 1),
            1 => return self.set_records(i, pieces),
            _ => {}
        }
        let p = self.physical(i);
        self.split_at(p, pieces);
    }

    /// [`split_record`](Self::split_record) of the record at physical index `p`, with
    /// at least two pieces.
    pub(crate) fn split_at(&mut self, p: usize, pieces: Vec<Record>) {
        let origin = self.origins[p];
        if self.split_original(origin).is_none() {
            self.splits.push((origin, self.records[p].clone()));
        }
        let extra = pieces.len() - 1;
        let mut pieces = pieces.into_iter();
        if let Some(head) = pieces.next() {
            self.records[p] = head;
        }
        self.records.splice(p + 1..p + 1, pieces);
        self.statuses.splice(
            p + 1..p + 1,
            std::iter::repeat_n(RecordStatus::default(), extra),
        );
        self.origins
            .splice(p + 1..p + 1, std::iter::repeat_n(origin, extra));
    }

    /// Clears the taint and every retry flag (used before a retried group is fed
    /// again).
    pub fn reset_for_retry(&mut self) {
        for s in &mut self.statuses {
            if s.flag == RecordFlag::Retry {
                s.flag = RecordFlag::Ack;
            }
        }
        self.tainted = false;
    }
}

#[cfg(test)]
mod tests;
