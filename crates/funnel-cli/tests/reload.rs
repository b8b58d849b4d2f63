//! End-to-end: `funnel run` keeps the good pipelines running beside a bad file, and
//! reloads pipeline files on SIGHUP and with `--pipelines.watch`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use funnel_test_utils::connectors::written_positions;
use funnel_test_utils::json::strings_of;
use funnel_test_utils::{http, process, wait_until_blocking, yaml};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");
const WAIT: Duration = Duration::from_secs(60);

/// A generator -> file pipeline `id` writing `<id>.jsonl`.
fn pipeline(id: &str, count: i64, rate: u64, description: &str) -> String {
    yaml::file(&[yaml::pipeline(
        id,
        &[("description", description)],
        &[
            yaml::generator("gen", count, rate),
            yaml::file_destination("out", &format!("./{id}.jsonl")),
        ],
        &[],
    )])
}

/// A running `funnel run` and everything it logged so far.
struct Funnel {
    child: Child,
    log: Arc<Mutex<String>>,
    address: String,
    dir: PathBuf,
}

impl Funnel {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let address = funnel_test_utils::process::free_address();
        let mut child = Command::new(FUNNEL)
            .current_dir(dir)
            .args(["run", "--db.type", "redb", "--api.http.address", &address])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self {
            child,
            log,
            address,
            dir: dir.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn count_in_log(&self, text: &str) -> usize {
        self.log().matches(text).count()
    }

    fn wait_log(&self, what: &str, text: &str, times: usize) {
        wait_until_blocking(what, WAIT, || self.count_in_log(text) >= times);
    }

    fn readyz(&self) -> Option<(u16, String)> {
        http::get(&self.address, "/readyz")
    }

    fn signal(&self, sig: &str) {
        process::signal(&self.child, sig);
    }

    /// Stops it with SIGTERM; its exit code and log.
    fn stop(mut self) -> (Option<i32>, String) {
        self.signal("TERM");
        wait_until_blocking("funnel exits after SIGTERM", WAIT, || {
            self.child.try_wait().unwrap().is_some()
        });
        let code = self.child.wait().unwrap().code();
        // The reader thread has the last lines once the pipe closes.
        wait_until_blocking("the log is read to its end", WAIT, || {
            self.log().contains("pipeline summary") || code != Some(0)
        });
        (code, self.log())
    }

    fn positions(&self, id: &str) -> Vec<u64> {
        positions(&self.dir, id)
    }
}

/// Generator positions written by pipeline `id`, complete lines only.
fn positions(dir: &Path, id: &str) -> Vec<u64> {
    written_positions(&dir.join(format!("{id}.jsonl")))
}

fn setup(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("pipelines").join(name), text).unwrap();
    }
    dir
}

fn assert_exactly_once(positions: &[u64], what: &str) {
    let n = positions.len() as u64;
    assert!(n > 0, "{what}: nothing written");
    assert!(
        positions == (1..=n).collect::<Vec<_>>(),
        "{what}: records lost, duplicated or out of order ({n} written)"
    );
}

const BAD_LINE: &str = "b.yaml:16:17: pipelines[0].connectors[1].plugin";

fn three_files() -> tempfile::TempDir {
    setup(&[
        ("a.yaml", pipeline("a", 2000, 0, "one")),
        (
            "b.yaml",
            pipeline("b", 2000, 0, "two").replace("builtin:file", "builtin:nope"),
        ),
        ("c.yaml", pipeline("c", 2000, 0, "three")),
    ])
}

#[test]
fn a_bad_file_beside_two_good_ones_is_logged_and_in_readyz_with_its_line_and_the_good_ones_deliver_every_record()
 {
    let dir = three_files();
    let funnel = Funnel::start(dir.path(), &[]);
    wait_until_blocking("a and c deliver every record", WAIT, || {
        funnel.positions("a").len() == 2000 && funnel.positions("c").len() == 2000
    });
    assert_eq!(funnel.positions("a"), (1..=2000).collect::<Vec<_>>());
    assert_eq!(funnel.positions("c"), (1..=2000).collect::<Vec<_>>());
    let mut readyz = None;
    wait_until_blocking("/readyz answers", WAIT, || {
        readyz = funnel.readyz();
        readyz.is_some()
    });
    let (code, body) = readyz.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(BAD_LINE), "{body}");
    assert!(!body.contains("a:") && !body.contains("c:"), "{body}");
    // `funnel pipelines ls` lists the two good pipelines, then the bad file and line.
    let out = process::funnel_once(
        FUNNEL,
        dir.path(),
        &["pipelines", "ls", "--api.address", &funnel.address],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(BAD_LINE), "{text}");
    let out = process::funnel_once(
        FUNNEL,
        dir.path(),
        &[
            "--json",
            "pipelines",
            "ls",
            "--api.address",
            &funnel.address,
        ],
    );
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = strings_of(&ls["result"]["pipelines"], "id");
    assert_eq!(ids, ["a", "c"], "{ls}");
    let invalid = &ls["result"]["invalidFiles"][0];
    assert!(
        invalid["file"].as_str().unwrap().ends_with("b.yaml")
            && invalid["line"] == 16
            && invalid["column"] == 17,
        "{ls}"
    );
    let (code, log) = funnel.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("pipeline file skipped, the other files run") && log.contains(BAD_LINE),
        "{log}"
    );
}

#[test]
fn exit_on_degraded_still_exits_with_one_on_a_bad_file_and_exit_on_done_exits_with_one_after_the_good_ones()
 {
    let dir = three_files();
    let out = process::funnel_once(
        FUNNEL,
        dir.path(),
        &[
            "run",
            "--api.http.address",
            "",
            "--pipelines.exit-on-degraded",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(BAD_LINE), "{stderr}");
    assert!(!dir.path().join("a.jsonl").exists(), "a ran: {stderr}");

    let out = process::funnel_once(
        FUNNEL,
        dir.path(),
        &["run", "--api.http.address", "", "--pipelines.exit-on-done"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for id in ["a", "c"] {
        let lines = std::fs::read_to_string(dir.path().join(format!("{id}.jsonl"))).unwrap();
        assert_eq!(lines.lines().count(), 2000, "{id}: {stderr}");
    }
}

#[test]
fn a_watched_file_edited_five_times_under_load_delivers_every_record_exactly_once_and_an_invalid_edit_leaves_it_running()
 {
    let dir = setup(&[
        ("edited.yaml", pipeline("edited", -1, 2000, "v0")),
        ("other.yaml", pipeline("other", -1, 500, "x")),
    ]);
    let file = dir.path().join("pipelines/edited.yaml");
    let funnel = Funnel::start(dir.path(), &["--pipelines.watch"]);
    const RESTARTED: &str = "pipeline configuration changed, restarted pipeline=edited";
    for version in 1..=5 {
        let before = funnel.positions("edited").len();
        wait_until_blocking("records flow before the edit", WAIT, || {
            funnel.positions("edited").len() > before + 200
        });
        std::fs::write(&file, pipeline("edited", -1, 2000, &format!("v{version}"))).unwrap();
        funnel.wait_log("the edit is applied", RESTARTED, version);
    }
    assert_eq!(
        funnel.count_in_log("restarted pipeline=other"),
        0,
        "{}",
        funnel.log()
    );

    // An invalid edit: reported, and the pipeline keeps running its last configuration.
    std::fs::write(
        &file,
        "version: \"2.2\"\npipelines:\n  - id: edited\n    connectors: [\n",
    )
    .unwrap();
    funnel.wait_log(
        "the invalid edit is reported",
        "pipeline file skipped, the other files run",
        1,
    );
    let mut body = String::new();
    wait_until_blocking("/readyz names the invalid file", WAIT, || {
        body = funnel.readyz().map(|(_, b)| b).unwrap_or_default();
        body.contains("edited.yaml:4:")
    });
    assert!(
        body.contains("still running the previous configuration of edited"),
        "{body}"
    );
    let before = funnel.positions("edited").len();
    wait_until_blocking(
        "the pipeline keeps running after the invalid edit",
        WAIT,
        || funnel.positions("edited").len() > before + 200,
    );
    assert_eq!(funnel.count_in_log(RESTARTED), 5);

    let (code, log) = funnel.stop();
    assert_eq!(code, Some(0), "{log}");
    assert_exactly_once(&positions(dir.path(), "edited"), "edited");
    assert_exactly_once(&positions(dir.path(), "other"), "other");
}

#[test]
fn sighup_reloads_the_files_a_new_file_starts_a_pipeline_and_a_removed_file_stops_one() {
    let dir = setup(&[("first.yaml", pipeline("first", -1, 1000, "f"))]);
    let funnel = Funnel::start(dir.path(), &[]);
    wait_until_blocking("first writes", WAIT, || {
        !funnel.positions("first").is_empty()
    });
    std::fs::remove_file(dir.path().join("pipelines/first.yaml")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/second.yaml"),
        pipeline("second", 300, 0, "s"),
    )
    .unwrap();
    funnel.signal("HUP");
    funnel.wait_log(
        "the reload is applied",
        "pipeline no longer in any file, removed pipeline=first",
        1,
    );
    funnel.wait_log("second starts", "new pipeline, started pipeline=second", 1);
    wait_until_blocking("second delivers every record", WAIT, || {
        funnel.positions("second").len() == 300
    });
    // first was drained and stays stopped: it writes nothing more.
    let first = funnel.positions("first");
    assert_exactly_once(&first, "first");
    // A reload that cannot read the pipelines path changes nothing.
    std::fs::write(
        dir.path().join("pipelines/third.yaml"),
        pipeline("third", -1, 1000, "t"),
    )
    .unwrap();
    funnel.signal("HUP");
    funnel.wait_log("third starts", "new pipeline, started pipeline=third", 1);
    std::fs::rename(dir.path().join("pipelines"), dir.path().join("gone")).unwrap();
    funnel.signal("HUP");
    funnel.wait_log(
        "the failed reload is reported",
        "cannot reload the pipeline files, nothing changed",
        1,
    );
    let before = funnel.positions("third").len();
    wait_until_blocking("third keeps running", WAIT, || {
        funnel.positions("third").len() > before + 100
    });
    let (code, log) = funnel.stop();
    assert_eq!(code, Some(0), "SIGHUP must not stop funnel: {log}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("first.jsonl"))
            .unwrap()
            .lines()
            .count(),
        first.len(),
        "first wrote after it was removed"
    );
}

#[test]
fn a_watched_edit_tells_a_standalone_destination_on_updated_with_its_old_and_new_settings() {
    let plugged = |path: &str| {
        yaml::file(&[yaml::pipeline(
            "plugged",
            &[],
            &[
                yaml::generator("gen", -1, 200),
                yaml::connector("dst", "destination", "collect", &[("path", path)]),
            ],
            &[],
        )])
    };
    let dir = setup(&[("plugged.yaml", plugged("./a.jsonl"))]);
    let calls = dir.path().join("lifecycle.jsonl");
    funnel_test_utils::conduit::install_collect_destination(&dir.path().join("connectors"), &calls);
    let written = |name: &str| {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let funnel = Funnel::start(dir.path(), &["--pipelines.watch"]);
    wait_until_blocking("records reach a.jsonl", WAIT, || written("a.jsonl") > 0);
    std::fs::write(
        dir.path().join("pipelines/plugged.yaml"),
        plugged("./b.jsonl"),
    )
    .unwrap();
    funnel.wait_log(
        "the edit is applied",
        "pipeline configuration changed, restarted pipeline=plugged",
        1,
    );
    wait_until_blocking("records reach b.jsonl", WAIT, || written("b.jsonl") > 0);
    let (code, log) = funnel.stop();
    assert_eq!(code, Some(0), "{log}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event"], "created");
    assert_eq!(events[1]["event"], "updated", "{events:?}");
    assert_eq!(events[1]["before"]["path"], "./a.jsonl");
    assert_eq!(events[1]["after"]["path"], "./b.jsonl");
}
