//! Running the real `funnel` binary in a scratch directory, injecting faults into it, and
//! reading what it wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use funnel_record::{Data, Record};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");

/// A scratch directory holding `pipelines/p.yaml`, the store `funnel.db`, the inputs and
/// outputs of one drill, and `funnel.log`: the stderr of every `funnel` run in it.
pub(crate) struct Drill {
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Drill {
    /// A drill whose only pipeline file is `pipeline`.
    pub(crate) fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pipelines")).unwrap();
        std::fs::write(dir.path().join("pipelines/p.yaml"), pipeline).unwrap();
        Self {
            dir,
            args: Vec::new(),
        }
    }

    /// The same drill, passing `args` to every `funnel run`.
    pub(crate) fn with_args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|&a| a.to_owned()).collect();
        self
    }

    /// `name` in the drill's directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, extra: &[&str]) -> Command {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("funnel.log"))
            .unwrap();
        let mut c = Command::new(FUNNEL);
        c.current_dir(self.dir.path()).arg("run");
        // An API on a port of its own, unless the run names one.
        if !extra.contains(&"--api.http.address") {
            c.args(["--api.http.address", "127.0.0.1:0"]);
        }
        c.args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        c
    }

    /// Starts `funnel run`; it follows its inputs until stopped.
    pub(crate) fn start(&self, extra: &[&str]) -> Funnel {
        self.start_with_env(extra, &[])
    }

    /// Starts `funnel run` with the environment variables `env` added.
    pub(crate) fn start_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Funnel {
        self.mark(&format!("funnel run {} {env:?}", extra.join(" ")));
        Funnel {
            child: Some(
                self.command(extra)
                    .envs(env.iter().copied())
                    .spawn()
                    .unwrap(),
            ),
        }
    }

    /// Runs `funnel run --pipelines.exit-on-done` until it exits (at most 2 minutes);
    /// its exit status and what it logged.
    pub(crate) fn run_to_end(&self, extra: &[&str]) -> (ExitStatus, String) {
        let from = self.log().len();
        let mut funnel = self.start(&[&["--pipelines.exit-on-done"], extra].concat());
        let status = funnel.wait(Duration::from_secs(120), self);
        (status, self.log()[from..].to_owned())
    }

    /// Runs another `funnel` command (`store repair ...`) to its end.
    pub(crate) fn funnel(&self, args: &[&str]) -> (ExitStatus, String) {
        let out = funnel_test_utils::process::funnel_once(FUNNEL, self.dir.path(), args);
        let text = funnel_test_utils::process::output_text(&out);
        self.mark(&format!("funnel {}: {text}", args.join(" ")));
        (out.status, text)
    }

    /// Everything the runs in this drill logged, with a line before each run.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.path("funnel.log")).unwrap_or_default()
    }

    /// Notes `what` in the log, so a failure shows where each fault came. The note is
    /// one `write` to the file opened for appending, so it cannot take in a line of a
    /// running `funnel` (which appends each of its lines with one `write` too); written
    /// in pieces, a note could have a record line land between them and hide it. After
    /// a line a SIGKILL cut short, the next note (that the run exited) follows it on the
    /// same line.
    pub(crate) fn mark(&self, what: &str) {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("funnel.log"))
            .unwrap();
        log.write_all(format!("==== drill: {what}\n").as_bytes())
            .unwrap();
    }

    /// Waits until `done` holds, at most `timeout`; a failure names `what` and shows
    /// the log.
    pub(crate) fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < timeout,
                "drill: {what}: not after {timeout:?}; funnel's log:\n{}",
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The records in the file destination's output `name`, skipping a last line
    /// without newline (still being written).
    pub(crate) fn records(&self, name: &str) -> Vec<Record> {
        let text = std::fs::read(self.path(name)).unwrap_or_default();
        let complete = text
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&text[..0], |end| &text[..=end]);
        complete
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                Record::from_json(line).unwrap_or_else(|e| {
                    panic!(
                        "drill: {name} holds a line that is not a record ({e}): {}",
                        String::from_utf8_lossy(line)
                    )
                })
            })
            .collect()
    }
}

/// Skips a drill that lacks `what` (PostgreSQL, root) with a message, except under
/// `CI=true`, where everything a drill needs is set up and a missing piece is a failure.
pub(crate) fn skip(what: &str, error: &str) {
    funnel_test_utils::skip_without(&format!("drill: {what}: {error}"));
}

/// The last 60 lines of a log.
pub(crate) fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A running `funnel`; killed when dropped.
pub(crate) struct Funnel {
    child: Option<Child>,
}

impl Funnel {
    /// Sends `signal` (`STOP`, `CONT`) and returns at once.
    pub(crate) fn send(&self, signal: &str, drill: &Drill) {
        let child = self.child.as_ref().unwrap();
        drill.mark(&format!("SIG{signal} to {}", child.id()));
        funnel_test_utils::process::signal(child, signal);
    }

    /// Sends `signal` (`KILL`, `TERM`) and waits until the process is gone.
    pub(crate) fn signal(&mut self, signal: &str, drill: &Drill) -> ExitStatus {
        let child = self.child.as_ref().unwrap();
        drill.mark(&format!("SIG{signal}"));
        funnel_test_utils::process::signal(child, signal);
        self.wait(Duration::from_secs(60), drill)
    }

    /// Waits for the process to exit, at most `timeout`.
    pub(crate) fn wait(&mut self, timeout: Duration, drill: &Drill) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                drill.mark(&format!("funnel exited: {status}"));
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "drill: funnel did not exit within {timeout:?}; its log:\n{}",
                    tail(&drill.log())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Drill {
    /// When the drill failed, shows what its runs warned of and its marks (the last
    /// 300 such lines), so a failure in CI says what happened before it.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let log = self.log();
        let told: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("==== drill") || l.contains("WARN") || l.contains("ERROR"))
            .collect();
        let from = told.len().saturating_sub(300);
        eprintln!("---- the drill's marks, warnings and errors ----");
        for line in &told[from..] {
            eprintln!("{line}");
        }
    }
}

impl Drop for Funnel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small xorshift generator. Its seed comes from `DRILL_SEED` or the clock, and is
/// printed, so a failing drill can be replayed with the same fault moments.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for the drill `name`.
    pub(crate) fn new(name: &str) -> Self {
        let seed = std::env::var("DRILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("drill {name}: DRILL_SEED={seed}");
        Self(seed | 1)
    }

    /// A number in `range`.
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low + 1)
    }
}

/// The text of a record's raw `payload.after` (what the file source read), or its
/// structured form as JSON.
pub(crate) fn after_text(record: &Record) -> String {
    match &record.payload.after {
        Some(Data::Raw(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(Data::Structured(fields)) => format!("{fields:?}"),
        None => String::new(),
    }
}

/// The generator's positions of `records` (decimal counters).
pub(crate) fn generator_positions(records: &[Record]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            std::str::from_utf8(r.position.as_bytes())
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("not a generator position: {}", r.position))
        })
        .collect()
}

/// Asserts that every one of `expected` is in `got` at least once (duplicates are
/// allowed: delivery is at least once) and nothing else is; `what` names the drill.
pub(crate) fn assert_nothing_lost<T: Ord + std::fmt::Debug + Clone>(
    what: &str,
    expected: impl IntoIterator<Item = T>,
    got: &[T],
    drill: &Drill,
) {
    let mut counts: BTreeMap<&T, usize> = BTreeMap::new();
    for item in got {
        *counts.entry(item).or_default() += 1;
    }
    let expected: Vec<T> = expected.into_iter().collect();
    let missing: Vec<&T> = expected
        .iter()
        .filter(|e| !counts.contains_key(e))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "drill {what}: lost {} of {} records, the first: {missing:?}; funnel's log:\n{}",
        expected.iter().filter(|e| !counts.contains_key(e)).count(),
        expected.len(),
        tail(&drill.log())
    );
    let expected: BTreeSet<&T> = expected.iter().collect();
    let unexpected: Vec<&T> = counts
        .keys()
        .filter(|k| !expected.contains(*k))
        .take(10)
        .copied()
        .collect();
    assert!(
        unexpected.is_empty(),
        "drill {what}: records that were never input: {unexpected:?}"
    );
}

/// Asserts that `log` has a line holding every one of `needles`: the error names what
/// failed and what to do about it.
pub(crate) fn assert_says(what: &str, log: &str, needles: &[&str]) {
    assert!(
        log.lines()
            .any(|line| needles.iter().all(|n| line.contains(n))),
        "drill {what}: no line of the log says all of {needles:?}:\n{}",
        tail(log)
    );
}

/// Appends `lines` to the file at `path`, each with its newline, in one write.
pub(crate) fn append_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The drill's notes share `funnel.log` with a running `funnel`, which appends a line
/// for every record it logs: each note must stay a line of its own, or a record line
/// written into the middle of one would no longer read as a record.
#[test]
fn marks_stay_lines_of_their_own_while_funnel_logs_records_into_the_same_file() {
    const MARKS: usize = 10_000;
    let drill = Drill::new(&crate::pipelines::pipeline(
        &crate::pipelines::generator(-1, 0),
        &crate::pipelines::log_destination(),
    ))
    .with_args(&["--log.format", "json"]);
    let mut funnel = drill.start(&[]);
    drill.wait_for("funnel logs records", Duration::from_secs(60), || {
        drill.log().matches("\"record\"").count() > 1000
    });
    for i in 0..MARKS {
        drill.mark(&format!("note {i}"));
    }
    funnel.signal("TERM", &drill);
    let log = drill.log();
    let whole: BTreeSet<&str> = log
        .lines()
        .filter_map(|line| line.strip_prefix("==== drill: note "))
        .collect();
    let broken: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("==== drill: ") && !line.starts_with("==== drill: "))
        .chain(log.lines().filter(|line| {
            line.strip_prefix("==== drill: ")
                .is_some_and(|rest| rest.contains('{'))
        }))
        .collect();
    let missing = (0..MARKS)
        .filter(|i| !whole.contains(i.to_string().as_str()))
        .count();
    assert!(
        broken.is_empty() && missing == 0,
        "{missing} of {MARKS} notes are not a line of their own; lines mixing a note and \
         funnel's output:\n{}",
        broken
            .iter()
            .take(5)
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
