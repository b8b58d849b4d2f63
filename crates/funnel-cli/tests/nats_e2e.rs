//! End-to-end: pipelines from and to NATS JetStream run by the `funnel` binary, with
//! a publisher running and SIGKILL at random moments, against the real server on
//! 127.0.0.1:4222 (see `scripts/nats-server.sh`). Each test uses its own stream,
//! deleted at the end. Without a server the tests are skipped, except under `CI=true`.

#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use funnel_record::Data;
use funnel_test_utils::connectors::{numbered_position, written_records};
use funnel_test_utils::name::unique;
use funnel_test_utils::process::{
    NumberedFeed, RunDir, client_runtime,
    loses_nothing_through_kills_and_repeats_nothing_after_term,
};
use funnel_test_utils::yaml;
use futures::StreamExt;

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");
const URL: &str = "nats://127.0.0.1:4222";

/// The consumer's `max_ack_pending` with the source's defaults (`bufferSize` 1024 plus
/// 4096 for the engine's records in flight), so at most this many records are read and
/// not committed when funnel is killed.
const REPLAY_BOUND: usize = 1024 + 4096;

struct Env {
    dir: RunDir,
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    stream: String,
    prefix: String,
}

impl Env {
    /// A stream of its own and a directory for funnel, or `None` (skip) without a server.
    fn new(tag: &str) -> Option<Self> {
        let runtime = client_runtime();
        let client = match runtime.block_on(async_nats::connect(URL)) {
            Ok(client) => client,
            Err(e) => {
                funnel_test_utils::skip_without(&format!("NATS is not reachable at {URL}: {e}"));
                return None;
            }
        };
        let stream = unique("FE2E", tag, '_');
        let prefix = unique("fe2e", tag, '.');
        let js = {
            let _inside = runtime.enter();
            jetstream::new(client)
        };
        runtime
            .block_on(js.create_stream(stream::Config {
                name: stream.clone(),
                subjects: vec![format!("{prefix}.>")],
                ..Default::default()
            }))
            .unwrap();
        Some(Self {
            dir: RunDir::new(FUNNEL),
            runtime,
            js,
            stream,
            prefix,
        })
    }

    /// Every message of the stream, read with an ephemeral consumer: (message ID,
    /// payload).
    fn read_back(&self, n: usize) -> Vec<(String, Bytes)> {
        self.runtime.block_on(async {
            let stream = self.js.get_stream(&self.stream).await.unwrap();
            let consumer = stream
                .create_consumer(consumer::pull::Config {
                    ack_policy: consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut messages = consumer.messages().await.unwrap();
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
                    .await
                    .unwrap_or_else(|_| panic!("only {} of {n} messages in the stream", out.len()))
                    .unwrap()
                    .unwrap();
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                out.push((id, message.payload.clone()));
            }
            out
        })
    }
}

impl NumberedFeed for Env {
    fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// Publishes messages `from..to` (stream sequences `from+1..=to`), each with a
    /// message ID so that a retried publish is stored once.
    fn add(&self, from: u64, to: u64, pause_every_100: Duration) {
        let subject = format!("{}.in", self.prefix);
        self.runtime.block_on(async {
            for chunk_start in (from..to).step_by(100) {
                let mut acks = Vec::new();
                for i in chunk_start..(chunk_start + 100).min(to) {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", format!("m{i}").as_str());
                    let ack = self
                        .js
                        .publish_with_headers(subject.clone(), headers, body_of(i + 1))
                        .await
                        .unwrap();
                    acks.push(ack);
                }
                for ack in acks {
                    ack.await.unwrap();
                }
                tokio::time::sleep(pause_every_100).await;
            }
        });
    }

    /// Stream sequences (the source's positions) in the output file, in file order;
    /// only complete lines count.
    fn output(&self) -> Vec<u64> {
        written_records(&self.dir.path().join("out.jsonl"))
            .iter()
            .map(|r| {
                let seq = numbered_position(r);
                match &r.payload.after {
                    Some(Data::Raw(body)) => {
                        assert_eq!(body, &body_of(seq), "the body of message {seq}");
                    }
                    other => panic!("not a raw payload: {other:?}"),
                }
                seq
            })
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.js.delete_stream(&self.stream));
    }
}

/// The body of the message at stream sequence `seq`.
fn body_of(seq: u64) -> Bytes {
    Bytes::from(format!("message {seq:08}"))
}

fn source_block(env: &Env) -> String {
    let subject = format!("{}.>", env.prefix);
    yaml::connector(
        "src",
        "source",
        "builtin:nats",
        &[
            ("urls", URL),
            ("stream", &env.stream),
            ("subject", &subject),
        ],
    )
}

fn file() -> String {
    yaml::file_destination("dst", "./out.jsonl")
}

#[test]
fn a_nats_to_file_pipeline_loses_nothing_through_sigkills_and_repeats_nothing_after_sigterm() {
    const N: u64 = 30_000;
    let Some(env) = Env::new("kill") else { return };
    env.dir.write_pipeline(&source_block(&env), &file());
    // A publisher runs while funnel is killed five times at random moments.
    loses_nothing_through_kills_and_repeats_nothing_after_term(&env, N, 5, REPLAY_BOUND);
}

#[test]
fn fifty_thousand_generated_records_written_to_nats_are_all_in_the_stream_once() {
    const N: usize = 50_000;
    let Some(env) = Env::new("gen") else { return };
    let subject = format!("{}.gen", env.prefix);
    env.dir.write_pipeline(
        &yaml::generator("src", N as i64, 0),
        &yaml::connector(
            "dst",
            "destination",
            "builtin:nats",
            &[("urls", URL), ("subject", &subject)],
        ),
    );
    env.dir.run_to_end();
    let messages = env.read_back(N);
    let ids: std::collections::BTreeSet<&str> =
        messages.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), N, "message IDs are not distinct");
    assert!(
        ids.contains("p:dst/1") && ids.contains(format!("p:dst/{N}").as_str()),
        "{:?}",
        ids.iter().next()
    );
    let info = env.runtime.block_on(async {
        env.js
            .get_stream(&env.stream)
            .await
            .unwrap()
            .get_info()
            .await
            .unwrap()
    });
    assert_eq!(
        info.state.messages, N as u64,
        "the stream holds more than the records"
    );
}
