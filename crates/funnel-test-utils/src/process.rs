//! Starting `funnel run` in a test's directory, reading its log, and signalling it.

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

/// `funnel run` with `dir` as its working directory (where `pipelines/` is read
/// from), the API on a free port, `extra` arguments, and stderr appended to
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
    let mut command = Command::new(bin);
    command
        .current_dir(dir)
        .args(["run", "--api.http.address", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    command
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
