//! Starting `funnel run` in a test's directory, reading its log, signalling and
//! stopping it; starting a server of the test's own (`nats-server`, `redis-server`) on
//! a free port.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A runtime for a test's own clients (a feed, a check of what funnel wrote) while
/// the test's thread drives the `funnel` process: one worker thread, with I/O and time.
///
/// # Panics
///
/// When the runtime cannot be built.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a runtime: {e}"))
}

/// What a finished process wrote: its standard output, then its standard error.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `command` (a database's command-line client, say) to its end; returns its
/// standard output, trimmed.
///
/// # Errors
///
/// Its standard error, trimmed, when it fails; the reason when it cannot run.
pub fn trimmed_output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| {
        let program = command.get_program().to_string_lossy();
        format!("cannot run {program}: {e}")
    })?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

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

/// [`signal`], then waits up to 30 s for `child` to exit.
///
/// # Panics
///
/// When the signal cannot be sent, or `child` is still running after 30 s.
pub fn signal_and_wait(child: &mut Child, sig: &str) {
    signal(child, sig);
    crate::wait_until_blocking(
        &format!("funnel exits after SIG{sig}"),
        Duration::from_secs(30),
        || {
            child
                .try_wait()
                .unwrap_or_else(|e| panic!("cannot wait for funnel: {e}"))
                .is_some()
        },
    );
}

/// A port of 127.0.0.1 that is free now.
///
/// # Panics
///
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
        .port()
}

/// A loopback address (`127.0.0.1:port`) with a port that is free now, for a
/// `funnel run` whose API a test calls.
///
/// # Panics
///
/// When no port can be bound.
pub fn free_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Whether `program` runs (`program --version`); a test skips without it, and fails
/// under `CI=true`.
///
/// # Panics
///
/// When `program` is missing and `CI` is `true`.
pub fn installed(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        crate::skip_without(&format!("{program} is not installed"));
    }
    found
}

/// A server process of the test's own listening on 127.0.0.1:`port`, killed when
/// dropped.
pub struct Server {
    /// Where it listens.
    pub port: u16,
    child: Child,
}

impl Server {
    /// Spawns `command` (told to listen on `port`, from [`free_port`]) with no output,
    /// and waits up to 20 s until the port accepts connections.
    ///
    /// # Panics
    ///
    /// When it cannot be spawned or does not listen in time.
    pub fn start(mut command: Command, port: u16) -> Self {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let server = Self { port, child };
        crate::wait_until_blocking(
            &format!("{program} listens on port {port}"),
            Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// `bin args...` (a one-shot command: `pipelines ls`, `inspect`, a `run` that ends)
/// run to its end in `dir`, with stdin closed and no API token taken from the
/// environment (a test gives the token it means), and what it printed.
///
/// # Panics
///
/// When the program cannot be started.
pub fn funnel_once(bin: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .current_dir(dir)
        .args(args)
        .env_remove("FUNNEL_API_AUTH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} {args:?}: {e}"))
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

/// A directory of its own where a test runs `funnel run` again and again: its pipeline
/// file is `pipelines/p.yaml`, and every run appends what it logs to `funnel.log`.
/// Removed when dropped.
pub struct RunDir {
    bin: String,
    dir: tempfile::TempDir,
}

impl RunDir {
    /// A new directory for runs of the `funnel` binary `bin`.
    ///
    /// # Panics
    ///
    /// When the directory cannot be made.
    pub fn new(bin: &str) -> Self {
        Self {
            bin: bin.to_owned(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a directory: {e}")),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the pipeline file: `yaml`, from [`crate::yaml::file`].
    pub fn write_pipelines(&self, yaml: &str) {
        write_pipelines(self.path(), yaml);
    }

    /// Writes a pipeline file of one running pipeline `p` from connector `source` to
    /// connector `destination` (each from [`crate::yaml::connector`]).
    pub fn write_pipeline(&self, source: &str, destination: &str) {
        let connectors = [source.to_owned(), destination.to_owned()];
        self.write_pipelines(&crate::yaml::file(&[crate::yaml::pipeline(
            "p",
            &[("status", "running")],
            &connectors,
            &[],
        )]));
    }

    /// `funnel run` here with `extra` arguments (see [`funnel_run`]).
    pub fn command(&self, extra: &[&str]) -> Command {
        funnel_run(&self.bin, self.path(), extra)
    }

    /// Starts `funnel run` here.
    ///
    /// # Panics
    ///
    /// When it cannot be started.
    pub fn spawn(&self) -> Child {
        self.command(&[])
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin))
    }

    /// Runs `funnel run --pipelines.exit-on-done` here until it exits.
    ///
    /// # Panics
    ///
    /// When it cannot be started or does not exit successfully (with the log).
    pub fn run_to_end(&self) {
        let out = self
            .command(&["--pipelines.exit-on-done"])
            .output()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin));
        assert!(out.status.success(), "{}", self.log());
    }

    /// What the runs logged so far.
    pub fn log(&self) -> String {
        funnel_log(self.path())
    }

    /// Waits until `done` gives a value, checking every 200 ms; fails the test naming
    /// `what`, with the log, when `timeout` passes first.
    ///
    /// # Panics
    ///
    /// When `done` still gives nothing after `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(value) = done() {
                return value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting until {what}; funnel logged:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Kills `child` (SIGKILL) `kills` times, each after a pause of `pause` plus a random
/// part of `spread`, starting it again with `spawn` each time; returns the last one
/// started. The random seed comes from the clock and is printed (`DRILL_SEED=`).
pub fn kill_at_random(
    mut child: Child,
    kills: usize,
    pause: Duration,
    spread: Duration,
    mut spawn: impl FnMut() -> Child,
) -> Child {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("DRILL_SEED={seed}");
    let spread = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX).max(1);
    for _ in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(pause + Duration::from_millis(seed % spread));
        signal_and_wait(&mut child, "KILL");
        child = spawn();
    }
    child
}

/// The input and output of an end-to-end test of a source feeding a file: inputs are
/// numbered from 1, and the output gives back the numbers it holds.
pub trait NumberedFeed: Sync {
    /// Where `funnel` runs.
    fn dir(&self) -> &RunDir;

    /// Adds the inputs `from+1..=to`, pausing `pause_every_100` after every 100.
    fn add(&self, from: u64, to: u64, pause_every_100: Duration);

    /// The numbers in the output, in output order; only complete records count.
    fn output(&self) -> Vec<u64>;
}

/// Waits (at most 120 s) until the output of `feed` holds every number up to `n`, and
/// returns it.
///
/// # Panics
///
/// When it does not in time.
pub fn wait_for_numbers(feed: &impl NumberedFeed, n: u64) -> Vec<u64> {
    feed.dir().wait_for(
        &format!("the output holds all {n} inputs"),
        Duration::from_secs(120),
        || {
            let out = feed.output();
            let seen: std::collections::HashSet<u64> = out.iter().copied().collect();
            (1..=n).all(|p| seen.contains(&p)).then_some(out)
        },
    )
}

/// The crash drill of a source feeding a file. First `n` inputs are added while
/// `funnel` is killed (SIGKILL) `kills` times at random moments: the output holds
/// every one, and repeats at most `kills * replay_bound`. Then two runs are stopped by
/// SIGTERM with inputs flowing, and a last run reads what is left: nothing after the
/// first `n` comes twice, and all of it comes in order.
///
/// # Panics
///
/// When an input is lost, repeated beyond those bounds, or out of order, or `funnel`
/// does not get there in time.
pub fn loses_nothing_through_kills_and_repeats_nothing_after_term(
    feed: &impl NumberedFeed,
    n: u64,
    kills: usize,
    replay_bound: usize,
) {
    let dir = feed.dir();
    let t0 = std::time::Instant::now();
    let positions = std::thread::scope(|scope| {
        let adder = scope.spawn(move || feed.add(0, n, Duration::from_millis(15)));
        let mut child = kill_at_random(
            dir.spawn(),
            kills,
            Duration::from_millis(400),
            Duration::from_millis(1200),
            || dir.spawn(),
        );
        adder
            .join()
            .unwrap_or_else(|_| panic!("adding the inputs failed"));
        eprintln!("{:?} added and killed {kills} times", t0.elapsed());
        let positions = wait_for_numbers(feed, n);
        eprintln!("{:?} all {n} written", t0.elapsed());
        signal_and_wait(&mut child, "TERM");
        positions
    });
    let duplicates = crate::connectors::assert_repeats_at_most(&positions, n, kills * replay_bound);
    eprintln!("{duplicates} duplicates after {kills} kills");

    let before = positions.len();
    let mut added = n;
    for _ in 0..2 {
        let mut child = dir.spawn();
        feed.add(added, added + 2000, Duration::ZERO);
        added += 2000;
        wait_for_numbers(feed, added);
        eprintln!("{:?} run written", t0.elapsed());
        feed.add(added, added + 500, Duration::ZERO);
        added += 500;
        signal_and_wait(&mut child, "TERM");
    }
    let mut child = dir.spawn();
    let positions = wait_for_numbers(feed, added);
    signal_and_wait(&mut child, "TERM");
    assert_eq!(
        positions[before..],
        (n + 1..=added).collect::<Vec<_>>()[..],
        "after SIGTERM a restart repeated or lost inputs"
    );
}

/// Restarts a shared service the way an operator would: `scripts/<name>-server.sh stop`,
/// then `start` (`name`: `nats`, `redis`).
///
/// # Panics
///
/// When the script cannot be run or fails.
pub fn restart_service(name: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/");
    let script = format!("{script}{name}-server.sh");
    for action in ["stop", "start"] {
        let out = Command::new("bash")
            .arg(&script)
            .arg(action)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(
            out.status.success(),
            "{name}-server.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
