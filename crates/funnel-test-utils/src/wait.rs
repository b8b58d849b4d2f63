//! Waiting for a condition with a deadline, instead of asserting after a fixed sleep.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `condition` holds, checking it every 10 ms on the tokio clock; fails the
/// test, naming `what`, when `timeout` of real time passes first (so it also ends on
/// paused tokio time).
///
/// # Panics
///
/// When `condition` still does not hold after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !holds(what, deadline, &mut condition) {
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for a condition that must be awaited (a query, say): awaits
/// `condition()` every 10 ms on the tokio clock until it is true.
///
/// # Panics
///
/// When `condition` still does not hold after `timeout`.
pub async fn wait_for<F: Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let holds = condition().await;
        if holds_by(what, deadline, holds) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for a test without a runtime: checks `condition` every 10 ms on this
/// thread.
///
/// # Panics
///
/// When `condition` still does not hold after `timeout`.
pub fn wait_until_blocking(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !holds(what, deadline, &mut condition) {
        std::thread::sleep(POLL);
    }
}

/// Whether `condition` holds now; fails the test when it does not and `deadline` passed.
fn holds(what: &str, deadline: Instant, condition: &mut impl FnMut() -> bool) -> bool {
    holds_by(what, deadline, condition())
}

/// `holds`; fails the test when it is false and `deadline` passed.
fn holds_by(what: &str, deadline: Instant, holds: bool) -> bool {
    assert!(
        holds || Instant::now() < deadline,
        "timed out waiting until {what}"
    );
    holds
}
