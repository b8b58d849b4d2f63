//! End-to-end: generator -> s3 and, in a second pipeline of the same `funnel run`,
//! s3 -> file, against the S3 test server (moto on 127.0.0.1:4566, see
//! `scripts/s3-server.sh`), with SIGKILL at random moments. Each test uses a bucket of
//! its own. Without a server the tests are skipped, except under `CI=true`.

#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use funnel_record::{Data, Record};
use funnel_test_utils::connectors::{numbered_position, written_records};
use funnel_test_utils::process::{RunDir, client_runtime, kill_at_random, signal_and_wait};
use funnel_test_utils::s3::{TestBucket, available};
use funnel_test_utils::yaml;

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");

struct Env {
    dir: RunDir,
    runtime: tokio::runtime::Runtime,
    bucket: TestBucket,
}

impl Env {
    /// A bucket of its own and a directory for funnel, or `None` (skip) without a
    /// server.
    fn new(tag: &str) -> Option<Self> {
        let runtime = client_runtime();
        if !runtime.block_on(available()) {
            return None;
        }
        let bucket = runtime.block_on(TestBucket::new(tag, true));
        Some(Self {
            dir: RunDir::new(FUNNEL),
            runtime,
            bucket,
        })
    }

    /// The bucket's connector settings (as YAML pairs) and `extra`.
    fn s3(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        self.bucket.settings(extra)
    }

    /// generator (`n` records at `rate`/s) -> s3 `mid/`; s3 `mid/` -> `out.jsonl`.
    fn write_pipelines(&self, n: i64, rate: u64) {
        let to_s3 = self.s3(&[("prefix", "mid/"), ("sdk.batch.size", "100")]);
        let from_s3 = self.s3(&[("prefix", "mid/"), ("pollingPeriod", "200ms")]);
        let (to_s3, from_s3) = (pairs(&to_s3), pairs(&from_s3));
        let file = yaml::file(&[
            yaml::pipeline(
                "up",
                &[("status", "running")],
                &[
                    yaml::generator("gen", n, rate),
                    yaml::connector("s3out", "destination", "builtin:s3", &to_s3),
                ],
                &[],
            ),
            yaml::pipeline(
                "down",
                &[("status", "running")],
                &[
                    yaml::connector("s3in", "source", "builtin:s3", &from_s3),
                    yaml::file_destination("out", "./out.jsonl"),
                ],
                &[],
            ),
        ]);
        self.dir.write_pipelines(&file);
    }

    /// The objects in the output, in file order: (object key, generator positions in
    /// it, or for an object the test put, its content). Only complete lines count.
    fn output(&self) -> Vec<(String, Vec<u64>)> {
        written_records(&self.dir.path().join("out.jsonl"))
            .iter()
            .map(|record| {
                let key = match &record.key {
                    Some(Data::Raw(k)) => String::from_utf8(k.to_vec()).unwrap(),
                    other => panic!("not a raw key: {other:?}"),
                };
                let content = match &record.payload.after {
                    Some(Data::Raw(body)) => body.clone(),
                    other => panic!("object {key}: not a raw payload: {other:?}"),
                };
                (key, generator_positions(&content))
            })
            .collect()
    }

    /// Waits until the output holds every generator position up to `n`.
    fn wait_for_all(&self, n: u64) -> Vec<(String, Vec<u64>)> {
        self.dir.wait_for(
            &format!("the output holds all {n} records"),
            Duration::from_secs(180),
            || {
                let output = self.output();
                let seen: BTreeSet<u64> =
                    output.iter().flat_map(|(_, p)| p.iter().copied()).collect();
                (1..=n).all(|p| seen.contains(&p)).then_some(output)
            },
        )
    }

    /// Waits until the output holds object `key`.
    fn wait_for_object(&self, key: &str) -> Vec<(String, Vec<u64>)> {
        self.dir.wait_for(
            &format!("object {key} reaches the output"),
            Duration::from_secs(60),
            || {
                let output = self.output();
                output.iter().any(|(k, _)| k == key).then_some(output)
            },
        )
    }
}

/// The generator positions of the OpenCDC JSON lines in an object's content (none for
/// content that is not, such as an object the test put).
/// Settings as the YAML helpers take them.
fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn generator_positions(content: &Bytes) -> Vec<u64> {
    content
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| Record::from_json(l).ok())
        .map(|r| numbered_position(&r))
        .collect()
}

#[test]
fn generator_to_s3_to_s3_to_file_loses_nothing_through_sigkills_and_a_restart_rereads_nothing() {
    const N: u64 = 4_000;
    let Some(env) = Env::new("kill") else { return };
    let t0 = Instant::now();
    env.write_pipelines(N as i64, 400);
    let kills = 5;
    let mut child = kill_at_random(
        env.dir.spawn(),
        kills,
        Duration::from_millis(500),
        Duration::from_millis(1500),
        || env.dir.spawn(),
    );
    let output = env.wait_for_all(N);
    eprintln!(
        "{:?} all {N} records through after {kills} kills",
        t0.elapsed()
    );

    // Every record made it; objects read twice are those of a kill's in-flight window.
    let mut reads: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, _) in &output {
        *reads.entry(key.as_str()).or_default() += 1;
    }
    let again = output.len() - reads.len();
    eprintln!(
        "{} objects, {again} read again after {kills} kills ({} lines)",
        reads.len(),
        output.len()
    );
    assert!(
        reads.keys().all(|k| k.starts_with("mid/")),
        "objects from outside the prefix: {reads:?}"
    );

    // A graceful stop, then a restart: the source reads nothing it read before, and an
    // object added while it was stopped, with a key sorting before every other, is
    // read; so is one added while it runs.
    signal_and_wait(&mut child, "TERM");
    let before = env.output().len();
    env.runtime
        .block_on(env.bucket.put("mid/0-early", Bytes::from_static(b"early")));
    let mut child = env.dir.spawn();
    let output = env.wait_for_object("mid/0-early");
    env.runtime
        .block_on(env.bucket.put("mid/zz-late", Bytes::from_static(b"late")));
    let output_late = env.wait_for_object("mid/zz-late");
    signal_and_wait(&mut child, "TERM");
    let after: Vec<&str> = output_late[before..]
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        after,
        ["mid/0-early", "mid/zz-late"],
        "after SIGTERM a restart read objects again (or missed one)"
    );
    assert!(output.len() > before);
}
