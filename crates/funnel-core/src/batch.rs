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

    /// Splits the batch into maximal runs of compatible flags, in order: ack and
    /// filter together, nack alone, retry alone. Each sub-batch is untainted and keeps
    /// the split originals of the origins it holds.
    pub fn into_sub_batches(self) -> Vec<(RecordFlag, Batch)> {
        let Batch {
            records,
            statuses,
            origins,
            splits,
            ..
        } = self;
        let mut out: Vec<(RecordFlag, Batch)> = Vec::new();
        for ((record, status), origin) in records.into_iter().zip(statuses).zip(origins) {
            let group = group_of(status.flag);
            let start_new = match out.last() {
                Some((flag, _)) => group_of(*flag) != group,
                None => true,
            };
            if start_new {
                out.push((status.flag, Batch::default()));
            }
            if let Some((_, b)) = out.last_mut() {
                if status.flag == RecordFlag::Filter {
                    b.filter_count += 1;
                }
                b.records.push(record);
                b.statuses.push(status);
                b.origins.push(origin);
            }
        }
        if !splits.is_empty() {
            for (_, b) in &mut out {
                b.splits = splits
                    .iter()
                    .filter(|(o, _)| b.origins.contains(o))
                    .cloned()
                    .collect();
            }
        }
        out
    }

    /// Removes the filtered records, returning the origins they had (in order).
    pub fn take_filtered(&mut self) -> Vec<u64> {
        if self.filter_count == 0 {
            return Vec::new();
        }
        let keep = self.records.len() - self.filter_count;
        let mut filtered = Vec::with_capacity(self.filter_count);
        let mut records = Vec::with_capacity(keep);
        let mut statuses = Vec::with_capacity(keep);
        let mut origins = Vec::with_capacity(keep);
        let old_records = std::mem::take(&mut self.records);
        let old_statuses = std::mem::take(&mut self.statuses);
        let old_origins = std::mem::take(&mut self.origins);
        for ((record, status), origin) in old_records.into_iter().zip(old_statuses).zip(old_origins)
        {
            if status.flag == RecordFlag::Filter {
                filtered.push(origin);
            } else {
                records.push(record);
                statuses.push(status);
                origins.push(origin);
            }
        }
        self.records = records;
        self.statuses = statuses;
        self.origins = origins;
        self.filter_count = 0;
        filtered
    }

    /// Splits off the records from physical index `at` on into a new batch (split
    /// originals are copied to both halves as needed).
    pub fn split_off(&mut self, at: usize) -> Batch {
        let records = self.records.split_off(at);
        let statuses = self.statuses.split_off(at);
        let origins = self.origins.split_off(at);
        let filter_count = statuses
            .iter()
            .filter(|s| s.flag == RecordFlag::Filter)
            .count();
        self.filter_count -= filter_count;
        let splits = self
            .splits
            .iter()
            .filter(|(o, _)| origins.contains(o))
            .cloned()
            .collect();
        Batch {
            records,
            statuses,
            origins,
            filter_count,
            tainted: self.tainted,
            splits,
        }
    }
}

fn group_of(flag: RecordFlag) -> u8 {
    match flag {
        RecordFlag::Ack | RecordFlag::Filter => 0,
        RecordFlag::Nack => 1,
        RecordFlag::Retry => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record::new(i.to_string(), format!("r{i}")))
            .collect()
    }

    fn flags(b: &Batch) -> Vec<RecordFlag> {
        b.statuses().iter().map(|s| s.flag).collect()
    }

    use RecordFlag::{Ack as A, Filter as F, Nack as N, Retry as R};

    #[test]
    fn a_new_batch_acks_every_record_and_numbers_origins_in_order() {
        let b = Batch::with_origin_base(records(2), 7);
        assert_eq!(flags(&b), [A, A]);
        assert_eq!(b.origins(), [7, 8]);
        assert_eq!(b.records()[1].position, "1".into());
        assert!(!b.is_tainted());
        assert_eq!(b.filter_count(), 0);
    }

    #[test]
    fn ack_after_retry_sets_the_flag_back() {
        let mut b = Batch::new(records(1));
        b.retry(0..1);
        b.ack(0..1);
        assert_eq!(flags(&b), [A]);
    }

    #[test]
    fn nack_flags_the_record_with_its_error_and_taints_the_batch() {
        let mut b = Batch::new(records(2));
        b.nack(1, [RecordError::msg("boom")]);
        assert_eq!(flags(&b), [A, N]);
        assert_eq!(b.statuses()[1].error, Some(RecordError::msg("boom")));
        assert!(b.is_tainted());
    }

    #[test]
    fn nack_without_errors_taints_but_flags_nothing() {
        let mut b = Batch::new(records(2));
        b.nack(0, []);
        assert_eq!(flags(&b), [A, A]);
        assert!(b.is_tainted());
    }

    #[test]
    fn retry_flags_and_taints() {
        let mut b = Batch::new(records(2));
        b.retry(0..2);
        assert_eq!(flags(&b), [R, R]);
        assert!(b.is_tainted());
    }

    #[test]
    fn filter_counts_filtered_records_and_does_not_taint() {
        let mut b = Batch::new(records(2));
        b.filter(0..1);
        assert_eq!(flags(&b), [F, A]);
        assert_eq!(b.filter_count(), 1);
        assert!(!b.is_tainted());
    }

    #[test]
    fn set_records_overwrites_all_then_one() {
        let mut b = Batch::new(records(2));
        b.set_records(0, [Record::new("x", "x"), Record::new("y", "y")]);
        b.set_records(1, [Record::new("z", "z")]);
        assert_eq!(b.records()[0].position, "x".into());
        assert_eq!(b.records()[1].position, "z".into());
    }

    #[test]
    fn set_records_addresses_active_records_only() {
        let mut b = Batch::new(records(3));
        b.filter(1..2);
        b.set_records(0, [Record::new("x", "x"), Record::new("y", "y")]);
        let positions: Vec<_> = b.records().iter().map(|r| r.position.to_string()).collect();
        assert_eq!(positions, ["x", "1", "y"]);
    }

    #[test]
    fn split_record_inserts_pieces_sharing_the_origin_and_keeps_the_original() {
        let mut b = Batch::new(records(2));
        b.split_record(1, vec![Record::new("a", "a"), Record::new("b", "b")]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.origins(), [0, 1, 1]);
        assert_eq!(flags(&b), [A, A, A]);
        assert_eq!(
            b.split_original(1).map(|r| r.position.clone()),
            Some("1".into())
        );
        assert_eq!(b.dlq_record(2).position, "1".into());
        assert!(!b.is_tainted());
    }

    #[test]
    fn nacking_one_piece_of_a_split_record_nacks_every_piece() {
        let mut b = Batch::new(records(2));
        b.split_record(
            0,
            vec![
                Record::new("a", "a"),
                Record::new("b", "b"),
                Record::new("c", "c"),
            ],
        );
        b.filter(2..3);
        b.nack(1, [RecordError::msg("bad")]);
        assert_eq!(flags(&b), [N, N, N, A]);
        assert_eq!(b.filter_count(), 0);
        assert!(
            b.statuses()[..3]
                .iter()
                .all(|s| s.error == Some(RecordError::msg("bad")))
        );
    }

    #[test]
    fn has_active_records_until_every_record_is_filtered() {
        let mut b = Batch::new(records(2));
        assert!(b.has_active_records());
        b.filter(0..1);
        assert!(b.has_active_records());
        b.filter(0..1);
        assert!(!b.has_active_records());
        assert!(!Batch::new(Vec::new()).has_active_records());
    }

    #[test]
    fn active_records_and_indices_leave_filtered_records_out() {
        let mut b = Batch::new(records(2));
        assert_eq!(b.active_indices(), [0, 1]);
        b.filter(0..1);
        assert_eq!(b.active_indices(), [1]);
        assert_eq!(b.active_records().len(), 1);
        assert_eq!(b.active_records()[0].position, "1".into());
    }

    #[test]
    fn sub_batches_group_ack_with_filter_and_keep_nacks_apart() {
        let mut b = Batch::new(records(5));
        b.filter(2..4);
        b.nack(2, [RecordError::msg("x")]);
        let groups: Vec<(RecordFlag, usize)> = b
            .into_sub_batches()
            .iter()
            .map(|(f, g)| (*f, g.len()))
            .collect();
        assert_eq!(groups, [(A, 4), (N, 1)]);
    }

    #[test]
    fn sub_batches_are_untainted_and_count_their_filtered_records() {
        let mut b = Batch::new(records(4));
        b.filter(0..1);
        b.retry(1..2);
        let groups = b.into_sub_batches();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].1.filter_count(), 1);
        assert!(groups.iter().all(|(_, g)| !g.is_tainted()));
        assert_eq!(groups[1].0, R);
    }

    #[test]
    fn a_clone_changes_independently_of_the_original() {
        let mut original = Batch::new(records(4));
        let mut clone = original.clone();
        clone.filter(0..1);
        clone.nack(0, [RecordError::msg("n")]);
        clone.split_record(1, vec![Record::new("a", "a"), Record::new("b", "b")]);
        clone.retry(3..4);
        assert_eq!(flags(&clone), [F, N, A, A, R]);
        assert_eq!(clone.origins(), [0, 1, 2, 2, 3]);
        assert_eq!(flags(&original), [A, A, A, A]);
        original.split_record(0, vec![Record::new("x", "x"), Record::new("y", "y")]);
        assert_eq!(
            original.split_original(0).map(|r| r.position.clone()),
            Some("0".into())
        );
        assert_eq!(clone.split_original(0), None);
        assert_eq!(
            clone.split_original(2).map(|r| r.position.clone()),
            Some("2".into())
        );
    }

    #[test]
    fn take_filtered_removes_filtered_records_and_reports_their_origins() {
        let mut b = Batch::new(records(4));
        b.filter(1..3);
        assert_eq!(b.take_filtered(), [1, 2]);
        assert_eq!(b.origins(), [0, 3]);
        assert_eq!(b.filter_count(), 0);
    }

    #[test]
    #[should_panic(expected = "invalid range (i >= j)")]
    fn an_empty_range_is_a_bug() {
        Batch::new(records(2)).filter(1..1);
    }

    #[test]
    #[should_panic(expected = "index out of range")]
    fn an_index_past_the_active_records_is_a_bug() {
        let mut b = Batch::new(records(2));
        b.filter(0..1);
        b.filter(1..2);
    }
}
