//! The wall clock as records carry it: nanoseconds since 1970.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since 1970.
///
/// # Panics
///
/// When the clock is before 1970.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("the clock is before 1970: {e}"))
        .as_nanos()
}

/// Asserts that `nanos`, a time in nanoseconds since 1970 as text (a record's
/// `opencdc.createdAt`, say), is not after now and at most `within` before it.
///
/// # Panics
///
/// When `nanos` is not a number, or not in that span.
pub fn assert_recent(nanos: &str, within: Duration) {
    let then: u128 = nanos
        .parse()
        .unwrap_or_else(|e| panic!("{nanos:?} is not a time in nanoseconds: {e}"));
    let now = unix_nanos();
    assert!(
        then <= now && now - then < within.as_nanos(),
        "{then} ns is not within {within:?} before now ({now} ns)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_just_before_now_is_recent_and_one_in_the_future_is_not() {
        assert_recent(&(unix_nanos() - 1_000).to_string(), Duration::from_secs(1));
        let later = (unix_nanos() + 60_000_000_000).to_string();
        assert!(
            std::panic::catch_unwind(|| assert_recent(&later, Duration::from_secs(1))).is_err()
        );
        let earlier = (unix_nanos() - 60_000_000_000).to_string();
        assert!(
            std::panic::catch_unwind(|| assert_recent(&earlier, Duration::from_secs(1))).is_err()
        );
    }
}
