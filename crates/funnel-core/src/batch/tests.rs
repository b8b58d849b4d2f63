//! Unit tests of [`Batch`](super::Batch).

use super::*;

fn records(n: usize) -> Vec<Record> {
    (0..n).map(record).collect()
}

fn record(i: usize) -> Record {
    Record::new(i.to_string(), format!("r{i}"))
}

/// A batch of `n` records after `change`.
fn after(n: usize, change: impl FnOnce(&mut Batch)) -> Batch {
    let mut b = Batch::new(records(n));
    change(&mut b);
    b
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
    let b = after(2, |b| b.nack(1, [RecordError::msg("boom")]));
    assert_eq!(flags(&b), [A, N]);
    assert_eq!(b.statuses()[1].error, Some(RecordError::msg("boom")));
    assert!(b.is_tainted());
}

#[test]
fn nack_without_errors_taints_but_flags_nothing() {
    let b = after(2, |b| b.nack(0, []));
    assert_eq!(flags(&b), [A, A]);
    assert!(b.is_tainted());
}

#[test]
fn retry_flags_and_taints() {
    let b = after(2, |b| b.retry(0..2));
    assert_eq!(flags(&b), [R, R]);
    assert!(b.is_tainted());
}

#[test]
fn filter_counts_filtered_records_and_does_not_taint() {
    let b = after(2, |b| b.filter(0..1));
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
