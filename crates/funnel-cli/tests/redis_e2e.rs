//! End-to-end: pipelines from and to a Redis stream run by the `funnel` binary, with
//! entries being added and SIGKILL at random moments, against the real server on
//! 127.0.0.1:6379 (see `scripts/redis-server.sh`). Each test uses its own key, deleted
//! at the end. Without a server the tests are skipped, except under `CI=true`.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use funnel_record::{Data, Record};
use funnel_test_utils::{process, yaml};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");
const URL: &str = "redis://127.0.0.1:6379/";

/// Records a kill may replay: the worker's default credit window plus one source
/// batch (see docs/runtime.md); the redis source reads ahead at most one batch more.
const REPLAY_BOUND: usize = 8192 + 2000;

struct Env {
    dir: tempfile::TempDir,
    key: String,
}

impl Env {
    fn new(tag: &str) -> Option<Self> {
        if let Err(e) = redis::Client::open(URL).and_then(|c| c.get_connection()) {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "Redis is not reachable at {URL}: {e} (run scripts/setup-services.sh)"
            );
            eprintln!("skipping: Redis is not reachable at {URL}: {e}");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = tempfile::tempdir().unwrap();
        Some(Self {
            dir,
            key: format!("fe2e:{tag}:{}:{nanos}", std::process::id()),
        })
    }

    fn con(&self) -> redis::Connection {
        redis::Client::open(URL).unwrap().get_connection().unwrap()
    }

    /// Writes pipeline `p` from connector `src` to connector `dst` (each from
    /// `yaml::connector`).
    fn write_pipeline(&self, source: &str, destination: &str) {
        let connectors = [source.to_owned(), destination.to_owned()];
        let file = yaml::file(&[yaml::pipeline(
            "p",
            &[("status", "running")],
            &connectors,
            &[],
        )]);
        process::write_pipelines(self.dir.path(), &file);
    }

    fn command(&self, extra: &[&str]) -> Command {
        process::funnel_run(FUNNEL, self.dir.path(), extra)
    }

    fn log(&self) -> String {
        process::funnel_log(self.dir.path())
    }

    /// The numbers of the entries in the output file, in file order (complete lines).
    fn output(&self) -> Vec<u64> {
        let text = std::fs::read_to_string(self.dir.path().join("out.jsonl")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = Record::from_json(l.as_bytes()).expect("an OpenCDC JSON line");
                let Some(Data::Raw(json)) = &r.payload.after else {
                    panic!("not raw")
                };
                let fields: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(json).unwrap();
                fields["n"].as_str().unwrap().parse().unwrap()
            })
            .collect()
    }

    fn wait_for_output(&self, n: u64) -> Vec<u64> {
        let start = Instant::now();
        loop {
            let out = self.output();
            let seen: HashSet<u64> = out.iter().copied().collect();
            if (1..=n).all(|p| seen.contains(&p)) {
                return out;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the output never held all {n} entries ({} lines): {}",
                out.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// XADDs entries `from+1..=to` (field `n`), 100 per pipeline.
    fn add(&self, from: u64, to: u64, pause_every_100: Duration) {
        let mut con = self.con();
        let mut i = from;
        while i < to {
            let mut pipe = redis::pipe();
            for n in i + 1..=(i + 100).min(to) {
                pipe.cmd("XADD")
                    .arg(&self.key)
                    .arg("*")
                    .arg("n")
                    .arg(n.to_string());
            }
            let _: () = pipe.query(&mut con).unwrap();
            i = (i + 100).min(to);
            std::thread::sleep(pause_every_100);
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&self.key).query(&mut self.con());
    }
}

fn kill(child: &mut Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "funnel did not exit after SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The redis connector `id` of `kind` on stream `key`.
fn redis_stream(id: &str, kind: &str, key: &str) -> String {
    yaml::connector(
        id,
        kind,
        "builtin:redis",
        &[
            ("redis.host", "127.0.0.1"),
            ("redis.key", key),
            ("mode", "stream"),
        ],
    )
}

#[test]
fn a_redis_stream_to_file_pipeline_loses_nothing_through_sigkills_and_repeats_nothing_after_sigterm()
 {
    const N: u64 = 30_000;
    let Some(env) = Env::new("kill") else { return };
    env.write_pipeline(
        &redis_stream("src", "source", &env.key),
        &yaml::file_destination("dst", "./out.jsonl"),
    );
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let (kills, positions) = std::thread::scope(|scope| {
        let env = &env;
        let adder = scope.spawn(move || env.add(0, N, Duration::from_millis(15)));
        let mut kills = 0;
        let mut child = env.command(&[]).spawn().unwrap();
        while kills < 5 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_millis(400 + seed % 1200));
            kill(&mut child, "KILL");
            kills += 1;
            child = env.command(&[]).spawn().unwrap();
        }
        adder.join().unwrap();
        let positions = env.wait_for_output(N);
        kill(&mut child, "TERM");
        (kills, positions)
    });
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &positions {
        *counts.entry(*p).or_default() += 1;
    }
    assert!(
        counts.keys().all(|p| (1..=N).contains(p)),
        "entries beyond {N}"
    );
    let duplicates = positions.len() - counts.len();
    assert!(
        duplicates <= kills * REPLAY_BOUND,
        "{duplicates} duplicates after {kills} kills exceed {REPLAY_BOUND} per kill"
    );

    // Graceful stops: nothing after the first N comes twice, and all of it in order.
    let before = positions.len();
    let mut added = N;
    for _ in 0..2 {
        let mut child = env.command(&[]).spawn().unwrap();
        env.add(added, added + 2000, Duration::ZERO);
        added += 2000;
        env.wait_for_output(added);
        env.add(added, added + 500, Duration::ZERO);
        added += 500;
        kill(&mut child, "TERM");
    }
    let mut child = env.command(&[]).spawn().unwrap();
    let positions = env.wait_for_output(added);
    kill(&mut child, "TERM");
    assert_eq!(
        positions[before..],
        (N + 1..=added).collect::<Vec<_>>()[..],
        "after SIGTERM a restart repeated or lost entries"
    );
}

#[test]
fn fifty_thousand_generated_records_written_to_redis_are_all_in_the_stream() {
    const N: usize = 50_000;
    let Some(env) = Env::new("gen") else { return };
    let count = N.to_string();
    env.write_pipeline(
        &yaml::connector(
            "src",
            "source",
            "builtin:generator",
            &[
                ("format.type", "structured"),
                ("format.options.id", "int"),
                ("recordCount", &count),
            ],
        ),
        &redis_stream("dst", "destination", &env.key),
    );
    let out = env.command(&["--pipelines.exit-on-done"]).output().unwrap();
    assert!(out.status.success(), "{}", env.log());
    let len: usize = redis::cmd("XLEN")
        .arg(&env.key)
        .query(&mut env.con())
        .unwrap();
    assert_eq!(len, N, "the stream holds {len} entries for {N} records");
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(&env.key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut env.con())
        .unwrap();
    assert!(last.ids[0].map.contains_key("id"), "{:?}", last.ids[0].map);
}
