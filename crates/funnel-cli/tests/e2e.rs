//! End-to-end: the `funnel` binary on pipeline files in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use funnel_test_utils::connectors::written_positions;
use funnel_test_utils::process::{self, signal};
use funnel_test_utils::{http, yaml};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");

/// Records in flight per source that a crash may replay: the worker's default credit
/// window plus one generator batch (see docs/runtime.md).
const REPLAY_BOUND: usize = 8192 + 1000;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pipelines")).unwrap();
        std::fs::write(dir.path().join("pipelines/p.yaml"), pipeline).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, extra: &[&str]) -> Command {
        self.command_at("127.0.0.1:0", extra)
    }

    /// `funnel run` with `extra` arguments and its API on `address`.
    fn command_at(&self, address: &str, extra: &[&str]) -> Command {
        process::funnel_command(FUNNEL, self.dir.path(), address, extra)
    }

    fn run_to_end(&self) -> std::process::Output {
        let child = self.command(&["--pipelines.exit-on-done"]).spawn().unwrap();
        wait_with_timeout(child, Duration::from_secs(60))
    }

    fn spawn(&self) -> Child {
        self.command(&[]).spawn().unwrap()
    }

    /// Generator positions found in the output file, in file order. Only complete
    /// lines count: a running funnel may be in the middle of writing the last one.
    fn output_positions(&self) -> Vec<u64> {
        written_positions(&self.path("out.jsonl"))
    }
}

fn wait_with_timeout(mut child: Child, timeout: Duration) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > timeout {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "funnel did not exit in time: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pipeline `id` with `fields` (`status`), from a generator of `count` records at
/// `rate` per second through `processors` to the file `out`.
fn generator_to_file(
    id: &str,
    fields: &[(&str, &str)],
    (count, rate): (i64, u64),
    out: &str,
    processors: &[String],
) -> String {
    yaml::pipeline(
        id,
        fields,
        &[
            yaml::generator("gen", count, rate),
            yaml::file_destination("out", out),
        ],
        processors,
    )
}

/// A file with pipeline `p`: a generator of `count` records at `rate` per second to
/// `./out.jsonl`.
fn generator_pipeline(count: i64, rate: u64) -> String {
    yaml::file(&[generator_to_file(
        "p",
        &[],
        (count, rate),
        "./out.jsonl",
        &[],
    )])
}

fn assert_complete(positions: &[u64], n: u64) -> usize {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for p in positions {
        *counts.entry(*p).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=n)
        .filter(|p| !counts.contains_key(p))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "lost records, first missing: {missing:?}"
    );
    assert!(
        counts.keys().all(|p| (1..=n).contains(p)),
        "records beyond {n}"
    );
    positions.len() - counts.len()
}

#[test]
fn generator_to_file_writes_exactly_n_lines_in_order_and_a_second_run_writes_nothing_twice() {
    let env = Env::new(&generator_pipeline(2500, 0));
    let out = env.run_to_end();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.output_positions(), (1..=2500).collect::<Vec<_>>());
    let out = env.run_to_end();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.output_positions(),
        (1..=2500).collect::<Vec<_>>(),
        "the second run wrote again"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipeline summary"), "{stderr}");
}

/// Two runs, each stopped by `sig` once it has written records: every record is
/// written exactly once, in order.
fn a_signal_drains_in_flight_records_and_a_restart_continues_without_duplicates(sig: &str) {
    let env = Env::new(&generator_pipeline(-1, 5000));
    for _ in 0..2 {
        let before = env.output_positions().len();
        let child = env.spawn();
        let start = Instant::now();
        // Records written by this run: it is up and its signal handlers installed.
        while env.output_positions().len() < before + 200 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nothing written before SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        signal(&child, sig);
        let out = wait_with_timeout(child, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "SIG{sig}: {stderr}");
        assert!(
            stderr.contains("pipeline summary"),
            "SIG{sig} did not drain: {stderr}"
        );
    }
    let positions = env.output_positions();
    let n = positions.len() as u64;
    assert_eq!(
        positions,
        (1..=n).collect::<Vec<_>>(),
        "a graceful stop on SIG{sig} lost or duplicated records"
    );
}

#[test]
fn sigterm_drains_in_flight_records_and_a_restart_continues_without_duplicates() {
    a_signal_drains_in_flight_records_and_a_restart_continues_without_duplicates("TERM");
}

#[test]
fn records_survive_twenty_kills_with_duplicates_within_the_in_flight_bound() {
    const N: u64 = 60_000;
    let env = Env::new(&generator_pipeline(N as i64, 40_000));
    // A small xorshift: kill moments differ from run to run.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut kills = 0;
    while kills < 20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let child = env.spawn();
        std::thread::sleep(Duration::from_millis(50 + seed % 350));
        signal(&child, "KILL");
        let _ = wait_with_timeout(child, Duration::from_secs(10));
        kills += 1;
    }
    let out = env.run_to_end();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let positions = env.output_positions();
    let duplicates = assert_complete(&positions, N);
    assert!(
        duplicates <= kills * REPLAY_BOUND,
        "{duplicates} duplicates after {kills} kills exceed {} per kill",
        REPLAY_BOUND
    );
}

#[test]
fn validate_lists_every_error_with_its_location_and_exits_two() {
    let env = Env::new(&yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[
            yaml::connector(
                "gen",
                "source",
                "builtin:generator",
                &[("recordCount", "many")],
            ),
            yaml::connector("out", "destination", "builtin:nosuch", &[]),
        ],
        &[],
    )]));
    let out = process::funnel_once(
        FUNNEL,
        env.dir.path(),
        &["pipelines", "validate", "pipelines"],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("p.yaml:9:"), "{stderr}");
    assert!(stderr.contains("recordCount"), "{stderr}");
    assert!(stderr.contains("p.yaml:12:"), "{stderr}");
    assert!(stderr.contains("nosuch"), "{stderr}");
}

#[test]
fn validate_check_runs_the_connection_tests_and_names_the_connectors_that_fail_them() {
    let db = [
        ("url", "postgres://funnel@127.0.0.1:1/funnel"),
        ("table", "t"),
    ];
    let env = Env::new(&yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[
            yaml::generator("gen", -1, 0),
            yaml::file_destination("out", "./missing/out.jsonl"),
            yaml::connector("db", "destination", "builtin:postgres", &db),
        ],
        &[],
    )]));
    // Without --check the file is valid: nothing is reached.
    let (code, stdout, stderr) = funnel_in(&env, &["pipelines", "validate", "pipelines"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, stderr) = funnel_in(&env, &["pipelines", "validate", "--check", "pipelines"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("pipeline p: connector out:"), "{stderr}");
    assert!(stderr.contains("pipeline p: connector db:"), "{stderr}");
    assert!(!stderr.contains("connector gen"), "{stderr}");

    std::fs::create_dir(env.path("missing")).unwrap();
    std::fs::write(
        env.path("pipelines/p.yaml"),
        std::fs::read_to_string(env.path("pipelines/p.yaml"))
            .unwrap()
            .split("      - id: db")
            .next()
            .unwrap(),
    )
    .unwrap();
    let (code, stdout, stderr) =
        funnel_in(&env, &["pipelines", "validate", "--check", "pipelines"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("every connector passed"), "{stdout}");
}

#[test]
fn init_writes_a_pipeline_that_validates_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["pipelines", "init", "demo"][..],
        &["pipelines", "validate"],
    ] {
        let out = process::funnel_once(FUNNEL, dir.path(), args);
        assert!(
            out.status.success(),
            "funnel {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = Path::new("unused");
}

#[test]
fn funnel_yaml_sets_defaults_that_flags_override() {
    let env = Env::new(&generator_pipeline(10, 0));
    std::fs::write(
        env.path("funnel.yaml"),
        "db:\n  type: memory\npipelines:\n  exit-on-done: true\n",
    )
    .unwrap();
    let child = env.command(&[]).spawn().unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !env.path("funnel.db").exists(),
        "db.type: memory from funnel.yaml was ignored"
    );
    assert_eq!(env.output_positions().len(), 10);

    std::fs::write(env.path("funnel.yaml"), "db:\n  kind: memory\n").unwrap();
    let out = env.command(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("funnel.yaml:2:9: db.kind: unknown setting"),
        "{stderr}"
    );
}

#[test]
fn the_api_answers_health_readiness_and_prometheus_metrics() {
    let env = Env::new(&generator_pipeline(-1, 1000));
    let address = format!("127.0.0.1:{}", 20_000 + std::process::id() % 20_000);
    let child = env.command_at(&address, &[]).spawn().unwrap();
    funnel_test_utils::wait_until_blocking(
        "/healthz answers ok and /readyz ready",
        Duration::from_secs(20),
        || {
            matches!(http::get(&address, "/healthz"), Some((200, _)))
                && matches!(http::get(&address, "/readyz"), Some((200, body))
                    if body.contains(r#""status":"ready""#) && body.contains(r#""running":1"#))
        },
    );
    let mut metrics = String::new();
    funnel_test_utils::wait_until_blocking(
        "/metrics shows records read and their execution duration",
        Duration::from_secs(20),
        || {
            let (code, body) = http::get(&address, "/metrics").unwrap();
            assert_eq!(code, 200);
            metrics = body;
            metrics.contains("funnel_pipeline_records_read_total{pipeline=\"p\"")
                && metrics.contains("funnel_pipeline_execution_duration_seconds")
        },
    );
    assert!(
        metrics.contains("funnel_pipeline_records_read_total{pipeline=\"p\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("funnel_pipeline_execution_duration_seconds"),
        "{metrics}"
    );
    assert!(!metrics.contains("pipeline=\"\""), "{metrics}");
    signal(&child, "TERM");
    let out = wait_with_timeout(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn funnel_in(env: &Env, args: &[&str]) -> (i32, String, String) {
    let out = process::funnel_once(FUNNEL, env.dir.path(), args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_corrupt_store_that_is_empty_stops_funnel_run_naming_the_file_and_store_repair_recovers() {
    let env = Env::new(&generator_pipeline(50, 0));
    assert!(env.run_to_end().status.success());
    let (code, stdout, _) = funnel_in(&env, &["store", "check"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("1 position(s)") && stdout.contains("p:gen"),
        "{stdout}"
    );

    std::fs::write(env.path("funnel.db"), b"").unwrap();
    let out = env.run_to_end();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("funnel.db") && stderr.contains("empty"),
        "{stderr}"
    );
    assert!(stderr.contains("funnel store repair"), "{stderr}");
    assert_eq!(std::fs::metadata(env.path("funnel.db")).unwrap().len(), 0);

    let (code, _, stderr) = funnel_in(&env, &["store", "check"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
    let (code, stdout, stderr) = funnel_in(&env, &["store", "repair"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("damaged file is kept as"), "{stdout}");
    let (code, stdout, _) = funnel_in(&env, &["store", "check"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(env.run_to_end().status.success());
}

#[test]
fn pipelines_delete_against_the_wrong_store_refuses_creates_nothing_and_asks_before_dropping() {
    // A second pipeline that never ran: the store holds nothing of it.
    let env = Env::new(&yaml::file(&[
        generator_to_file("p", &[], (50, 0), "./out.jsonl", &[]),
        generator_to_file(
            "never-run",
            &[("status", "stopped")],
            (1, 0),
            "./other.jsonl",
            &[],
        ),
    ]));
    assert!(env.run_to_end().status.success());

    // A store that does not exist is neither created nor taken for an empty one.
    let (code, _, stderr) = funnel_in(
        &env,
        &[
            "pipelines",
            "delete",
            "p",
            "--db.redb.path",
            "typo.db",
            "--yes",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("typo.db") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(!env.path("typo.db").exists(), "a store was created");

    // A store without the pipeline's state is refused.
    let (code, _, stderr) = funnel_in(&env, &["pipelines", "delete", "never-run", "--yes"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("holds no position") && stderr.contains("--force"),
        "{stderr}"
    );

    // Without a terminal and without --yes, it says what it would drop and stops.
    let (code, stdout, stderr) = funnel_in(&env, &["pipelines", "delete", "p"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains("p:gen: forget its position"), "{stdout}");
    assert!(stderr.contains("--yes"), "{stderr}");
    let (_, stdout, _) = funnel_in(&env, &["store", "check"]);
    assert!(
        stdout.contains("p:gen"),
        "the position was dropped: {stdout}"
    );

    let (code, stdout, stderr) = funnel_in(&env, &["pipelines", "delete", "p", "--yes"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("pipeline p deleted"), "{stdout}");
    let (_, stdout, _) = funnel_in(&env, &["store", "check"]);
    assert!(stdout.contains("0 position(s)"), "{stdout}");

    let (code, _, stderr) = funnel_in(
        &env,
        &["pipelines", "delete", "never-run", "--force", "--yes"],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_webhook_whose_server_stops_answering_makes_readyz_report_stalled_and_cannot_hang_the_drain() {
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let hook = yaml::processor(
        "hook",
        "webhook.http",
        &[],
        &[("request.url", &url), ("request.timeout", "4s")],
    );
    let env = Env::new(&yaml::file(&[generator_to_file(
        "p",
        &[],
        (-1, 100),
        "./out.jsonl",
        &[hook],
    )]));
    let address = format!("127.0.0.1:{}", 20_000 + (std::process::id() + 7) % 20_000);
    let child = env
        .command_at(&address, &["--pipelines.stall-threshold", "1s"])
        .spawn()
        .unwrap();
    funnel_test_utils::wait_until_blocking(
        "/readyz reports the stall",
        Duration::from_secs(20),
        || matches!(http::get(&address, "/readyz"), Some((503, body)) if body.contains("p: stalled")),
    );
    let stopping = Instant::now();
    signal(&child, "TERM");
    let out = wait_with_timeout(child, Duration::from_secs(30));
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "the drain waited {:?} on a server that does not answer",
        stopping.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("request.timeout"), "{stderr}");
}
