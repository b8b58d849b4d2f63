//! Starting `funnel run` in a test's directory, reading its log, signalling and
//! stopping it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// A loopback address (`127.0.0.1:port`) with a port that is free now, for a
/// `funnel run` whose API a test calls.
///
/// # Panics
///
/// When no port can be bound.
pub fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
        .to_string()
}

/// `funnel run` with `dir` as its working directory (where `pipelines/` is read
/// from), the API on `address` (`127.0.0.1:0`: a port nobody calls), `extra`
/// arguments, no stdin or stdout, and stderr piped (read it with
/// [`Child::wait_with_output`] or [`stop`]).
pub fn funnel_command(bin: &str, dir: &Path, address: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(bin);
    command
        .current_dir(dir)
        .args(["run", "--api.http.address", address])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// [`funnel_command`] with the API on a port nobody calls and stderr appended to
/// `dir/funnel.log` (see [`funnel_log`]).
///
/// # Panics
///
/// When the log file cannot be opened.
pub fn funnel_run(bin: &str, dir: &Path, extra: &[&str]) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("funnel.log"))
        .unwrap_or_else(|e| panic!("cannot open {}/funnel.log: {e}", dir.display()));
    let mut command = funnel_command(bin, dir, "127.0.0.1:0", extra);
    command.stderr(Stdio::from(log));
    command
}

/// Stops `child` (a [`funnel_command`]) with SIGTERM, checks that it exits 0 and
/// returns what it wrote on stderr.
///
/// # Panics
///
/// When the signal cannot be sent, or the process exits otherwise (with its stderr).
pub fn stop(child: Child) -> String {
    signal(&child, "TERM");
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for funnel: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "funnel exited with {}: {stderr}",
        out.status
    );
    stderr
}

/// What the runs [`funnel_run`] started in `dir` logged so far.
pub fn funnel_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("funnel.log")).unwrap_or_default()
}

/// Writes `yaml` (a pipeline file, see [`crate::yaml`]) as `dir/pipelines/p.yaml`.
///
/// # Panics
///
/// When the file cannot be written.
pub fn write_pipelines(dir: &Path, yaml: &str) {
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines)
        .and_then(|()| std::fs::write(pipelines.join("p.yaml"), yaml))
        .unwrap_or_else(|e| panic!("cannot write {}/p.yaml: {e}", pipelines.display()));
}
