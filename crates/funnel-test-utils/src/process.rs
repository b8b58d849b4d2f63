//! Signalling a `funnel` process a test started.

use std::process::{Child, Command};

/// Sends signal `sig` (`TERM`, `KILL`, `HUP`) to `child`, as `kill -<sig>` would.
///
/// # Panics
///
/// When `kill` fails (the process is gone, say).
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -{sig} {} failed", child.id());
}
