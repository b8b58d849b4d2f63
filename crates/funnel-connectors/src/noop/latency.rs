//! Read-to-written latency at the sink: an HDR histogram of (write time -
//! `opencdc.readAt`) per record, shared by every destination of the process that has
//! `latency: true` (the noop and file destinations).
//!
//! Nothing is allocated and nothing is measured until a destination with the setting
//! on records its first batch; with the setting off the destinations never call in
//! here. A batch takes the clock once and the histogram's lock once.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use funnel_record::{Record, metadata};
use hdrhistogram::Histogram;

/// Lowest latency told apart, in nanoseconds: one microsecond.
const LOWEST_NANOS: u64 = 1_000;
/// Highest latency kept, in nanoseconds: one hour (longer ones count as one hour).
const HIGHEST_NANOS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept per value.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The histogram of every recording destination, created by the first batch.
static HISTOGRAM: Mutex<Option<Latencies>> = Mutex::new(None);

struct Latencies {
    histogram: Histogram<u64>,
    /// Records without a parsable `opencdc.readAt`.
    missing: u64,
}

/// Read-to-written latency percentiles over every record the recording destinations
/// wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencySummary {
    /// Records measured.
    pub count: u64,
    /// Records that carried no parsable `opencdc.readAt` (not measured).
    pub missing: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest value.
    pub max: Duration,
}

/// The latency percentiles recorded so far by destinations with `latency: true`;
/// `None` when none recorded anything.
pub fn latency_summary() -> Option<LatencySummary> {
    let guard = lock();
    let latencies = guard.as_ref()?;
    let h = &latencies.histogram;
    let at = |q: f64| Duration::from_nanos(h.value_at_quantile(q));
    Some(LatencySummary {
        count: h.len(),
        missing: latencies.missing,
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: Duration::from_nanos(h.max()),
    })
}

fn lock() -> MutexGuard<'static, Option<Latencies>> {
    // Every critical section is one histogram update: a poisoned lock is still usable.
    crate::util::lock(&HISTOGRAM)
}

/// The `opencdc.readAt` of `record` in Unix nanoseconds, if it has a valid one.
pub(crate) fn read_at_nanos(record: &Record) -> Option<u64> {
    record.metadata.get(metadata::READ_AT)?.parse().ok()
}

/// Records one batch written at `written_nanos` (Unix nanoseconds): the read times of
/// its records, `None` for a record without one.
pub(crate) fn record_batch(read_at: impl IntoIterator<Item = Option<u64>>, written_nanos: u64) {
    let mut guard = lock();
    let latencies = match &mut *guard {
        Some(latencies) => latencies,
        None => {
            let Ok(histogram) =
                Histogram::new_with_bounds(LOWEST_NANOS, HIGHEST_NANOS, SIGNIFICANT_DIGITS)
            else {
                // The bounds are constants that `new_with_bounds` accepts (tested).
                return;
            };
            guard.insert(Latencies {
                histogram,
                missing: 0,
            })
        }
    };
    for read_at in read_at {
        match read_at {
            // A clock that stepped back counts as zero latency.
            Some(read_at) => latencies
                .histogram
                .saturating_record(written_nanos.saturating_sub(read_at)),
            None => latencies.missing += 1,
        }
    }
}

/// The current time as Unix nanoseconds, for [`record_batch`].
pub(crate) fn now_nanos() -> u64 {
    u64::try_from(crate::util::unix_nanos_now()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_bounds_are_valid() {
        assert!(
            Histogram::<u64>::new_with_bounds(LOWEST_NANOS, HIGHEST_NANOS, SIGNIFICANT_DIGITS)
                .is_ok()
        );
    }

    #[test]
    fn batches_are_summarised_as_percentiles_and_missing_read_times_counted() {
        // The only test of this binary that records into the process-wide histogram.
        let written = 10_000_000_000u64;
        record_batch(
            (1..=1000u64)
                .map(|i| Some(written - i * 1_000_000))
                .chain([None]),
            written,
        );
        let summary = latency_summary().unwrap();
        assert_eq!(summary.count, 1000);
        assert_eq!(summary.missing, 1);
        // 1 ms .. 1 s: within the histogram's 3 significant digits.
        assert!(
            (499..=501).contains(&summary.p50.as_millis()),
            "{summary:?}"
        );
        assert!(
            (989..=991).contains(&summary.p99.as_millis()),
            "{summary:?}"
        );
        assert!(
            (998..=1000).contains(&summary.p999.as_millis()),
            "{summary:?}"
        );
        assert!(
            (999..=1001).contains(&summary.max.as_millis()),
            "{summary:?}"
        );
    }

    #[test]
    fn read_at_is_parsed_from_metadata_and_missing_ones_are_none() {
        let mut record = Record::new("1", "x");
        assert_eq!(read_at_nanos(&record), None);
        record
            .metadata
            .insert(metadata::READ_AT, "1700000000000000000");
        assert_eq!(read_at_nanos(&record), Some(1_700_000_000_000_000_000));
        record.metadata.insert(metadata::READ_AT, "soon");
        assert_eq!(read_at_nanos(&record), None);
    }
}
