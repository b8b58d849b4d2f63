//! Driving a real source or destination from a connector's integration test: reading
//! a number of records, collecting a number of acks, each call bounded so a test that
//! goes wrong fails instead of hanging.

use std::time::Duration;

use funnel_core::{Destination, DestinationAck, Source};
use funnel_record::Record;

/// The longest one `read` or `ack` call may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Reads from `source` until `n` records arrived (a batch may bring more).
///
/// # Panics
///
/// When a read takes longer than [`PATIENCE`], fails, or finds the source exhausted.
pub async fn read_n(source: &dyn Source, n: usize) -> Vec<Record> {
    gather("records", n, || async {
        source
            .read()
            .await
            .unwrap_or_else(|e| panic!("read failed: {e}"))
            .unwrap_or_else(|| panic!("the source ended before {n} records"))
    })
    .await
}

/// Collects acks from `destination` until `n` arrived.
///
/// # Panics
///
/// When an ack call takes longer than [`PATIENCE`], fails, or returns an empty list
/// (the destination contract forbids it).
pub async fn ack_n(destination: &dyn Destination, n: usize) -> Vec<DestinationAck> {
    gather("acks", n, || async {
        let batch = destination
            .ack()
            .await
            .unwrap_or_else(|e| panic!("ack failed: {e}"));
        assert!(!batch.is_empty(), "ack returned an empty list");
        batch
    })
    .await
}

/// Reads from `source` until `n` records arrived, acking each batch as it comes (as
/// the engine does); each read and each ack within [`PATIENCE`].
///
/// # Panics
///
/// As [`read_n`], and when an ack fails or takes longer than [`PATIENCE`].
pub async fn read_and_ack(source: &dyn Source, n: usize) -> Vec<Record> {
    let mut records = Vec::with_capacity(n);
    while records.len() < n {
        let batch = read_n(source, 1).await;
        let positions: Vec<_> = batch.iter().map(|r| r.position.clone()).collect();
        tokio::time::timeout(PATIENCE, source.ack(&positions))
            .await
            .unwrap_or_else(|_| panic!("an ack took longer than {PATIENCE:?}"))
            .unwrap_or_else(|e| panic!("ack failed: {e}"));
        records.extend(batch);
    }
    records
}

/// Calls `next` until `n` items (`what`) arrived in all, each call within
/// [`PATIENCE`].
async fn gather<T, F: Future<Output = Vec<T>>>(
    what: &str,
    n: usize,
    mut next: impl FnMut() -> F,
) -> Vec<T> {
    let mut all = Vec::new();
    while all.len() < n {
        let batch = tokio::time::timeout(PATIENCE, next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} {what} arrived in time", all.len()));
        all.extend(batch);
    }
    all
}

/// [`read_n`] for a test that knows how the records come in batches: exactly `n`.
///
/// # Panics
///
/// As [`read_n`], and when the last batch brings more than `n` records in all.
pub async fn read_exactly(source: &dyn Source, n: usize) -> Vec<Record> {
    let records = read_n(source, n).await;
    assert_eq!(records.len(), n, "more records than expected");
    records
}

/// The raw data of `record`'s payload (`after`).
///
/// # Panics
///
/// When the payload is structured or missing.
pub fn raw(record: &Record) -> bytes::Bytes {
    match &record.payload.after {
        Some(funnel_record::Data::Raw(bytes)) => bytes.clone(),
        other => panic!("expected raw data, got {other:?}"),
    }
}

/// What opening `source` fails with, as text.
///
/// # Panics
///
/// When it opens.
pub async fn source_open_error(source: &dyn Source) -> String {
    match source.open().await {
        Ok(()) => panic!("the source opened"),
        Err(e) => e.to_string(),
    }
}

/// What opening `destination` fails with, as text.
///
/// # Panics
///
/// When it opens.
pub async fn destination_open_error(destination: &dyn Destination) -> String {
    match destination.open().await {
        Ok(()) => panic!("the destination opened"),
        Err(e) => e.to_string(),
    }
}

/// Why `ack` is a nack, as text.
///
/// # Panics
///
/// When `ack` is a plain ack.
pub fn nack_error(ack: &DestinationAck) -> String {
    match &ack.error {
        Some(e) => e.to_string(),
        None => panic!("the record at {:?} was acked, not nacked", ack.position),
    }
}

/// The records in the OpenCDC JSON lines file at `path`, in file order; none when it
/// does not exist yet. Only complete lines count: a running `funnel` may be in the
/// middle of writing the last one.
///
/// # Panics
///
/// When a line is not an OpenCDC record.
pub fn written_records(path: &std::path::Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            Record::from_json(line.as_bytes())
                .unwrap_or_else(|e| panic!("not an OpenCDC JSON line ({e}): {line}"))
        })
        .collect()
}

/// The position of `record` as a number (a generator's `1`, `2`, ..., a stream
/// sequence).
///
/// # Panics
///
/// When the position is not a number.
pub fn numbered_position(record: &Record) -> u64 {
    std::str::from_utf8(record.position.as_bytes())
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered position: {}", record.position))
}

/// The generator positions (`1`, `2`, ...) of the records [`written_records`] finds
/// at `path`.
///
/// # Panics
///
/// When a line is not an OpenCDC record or its position is not a number.
pub fn written_positions(path: &std::path::Path) -> Vec<u64> {
    written_records(path)
        .iter()
        .map(numbered_position)
        .collect()
}

/// Checks what a pipeline delivered at least once through crashes: `positions` (each
/// `1..=n` that was written, in output order) holds nothing beyond `n`, and repeats
/// at most `max_repeats` of them; returns how many it repeats.
///
/// # Panics
///
/// When a position is beyond `n` or more than `max_repeats` are repeated.
pub fn assert_repeats_at_most(positions: &[u64], n: u64, max_repeats: usize) -> usize {
    let distinct: std::collections::BTreeSet<u64> = positions.iter().copied().collect();
    assert!(
        distinct.iter().all(|p| (1..=n).contains(p)),
        "positions beyond {n}"
    );
    let repeats = positions.len() - distinct.len();
    assert!(
        repeats <= max_repeats,
        "{repeats} repeated positions, more than {max_repeats}"
    );
    repeats
}
