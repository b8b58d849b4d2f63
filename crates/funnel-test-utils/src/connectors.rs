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

/// The generator positions (`1`, `2`, ...) of the records in the OpenCDC JSON lines
/// file at `path`, in file order; none when it does not exist yet. Only complete lines
/// count: a running `funnel` may be in the middle of writing the last one.
///
/// # Panics
///
/// When a line is not an OpenCDC record or its position is not a number.
pub fn written_positions(path: &std::path::Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let record = Record::from_json(line.as_bytes())
                .unwrap_or_else(|e| panic!("not an OpenCDC JSON line ({e}): {line}"));
            std::str::from_utf8(record.position.as_bytes())
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("not a generator position: {}", record.position))
        })
        .collect()
}
