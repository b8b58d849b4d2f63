//! End-to-end: pipelines from and to a Redis stream run by the `funnel` binary, with
//! entries being added and SIGKILL at random moments, against the real server on
//! 127.0.0.1:6379 (see `scripts/redis-server.sh`). Each test uses its own key, deleted
//! at the end. Without a server the tests are skipped, except under `CI=true`.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use funnel_record::Data;
use funnel_test_utils::connectors::written_records;
use funnel_test_utils::process::{
    NumberedFeed, RunDir, loses_nothing_through_kills_and_repeats_nothing_after_term,
};
use funnel_test_utils::yaml;

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");
const URL: &str = "redis://127.0.0.1:6379/";

/// Records a kill may replay: the worker's default credit window plus one source
/// batch (see docs/runtime.md); the redis source reads ahead at most one batch more.
const REPLAY_BOUND: usize = 8192 + 2000;

struct Env {
    dir: RunDir,
    key: String,
}

impl Env {
    fn new(tag: &str) -> Option<Self> {
        if let Err(e) = redis::Client::open(URL).and_then(|c| c.get_connection()) {
            funnel_test_utils::skip_without(&format!("Redis is not reachable at {URL}: {e}"));
            return None;
        }
        Some(Self {
            dir: RunDir::new(FUNNEL),
            key: funnel_test_utils::name::unique("fe2e", tag, ':'),
        })
    }

    fn con(&self) -> redis::Connection {
        redis::Client::open(URL).unwrap().get_connection().unwrap()
    }
}

impl NumberedFeed for Env {
    fn dir(&self) -> &RunDir {
        &self.dir
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

    /// The numbers of the entries in the output file, in file order (complete lines).
    fn output(&self) -> Vec<u64> {
        written_records(&self.dir.path().join("out.jsonl"))
            .iter()
            .map(|r| {
                let Some(Data::Raw(json)) = &r.payload.after else {
                    panic!("not raw")
                };
                let fields: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(json).unwrap();
                fields["n"].as_str().unwrap().parse().unwrap()
            })
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&self.key).query(&mut self.con());
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
    env.dir.write_pipeline(
        &redis_stream("src", "source", &env.key),
        &yaml::file_destination("dst", "./out.jsonl"),
    );
    loses_nothing_through_kills_and_repeats_nothing_after_term(&env, N, 5, REPLAY_BOUND);
}

#[test]
fn fifty_thousand_generated_records_written_to_redis_are_all_in_the_stream() {
    const N: usize = 50_000;
    let Some(env) = Env::new("gen") else { return };
    let count = N.to_string();
    env.dir.write_pipeline(
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
    env.dir.run_to_end();
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
