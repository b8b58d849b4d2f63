//! Drills that restart the shared Redis server (127.0.0.1:6379) while the redis source
//! and destination run: `scripts/redis-server.sh stop`, then `start`. The server keeps
//! nothing across a restart (no persistence), so the drills check that the connectors
//! reconnect and go on, losing and repeating nothing of what the server still has. In
//! their own test binary, so no other redis test runs during a restart. Without a
//! server they are skipped, except under `CI=true`.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use funnel_connectors::{Settings, destination, source};
use funnel_record::{Data, Position, Record};
use funnel_test_utils::process::restart_service;

const URL: &str = "redis://127.0.0.1:6379/";
const PATIENCE: Duration = Duration::from_secs(30);

/// Held by each drill: a restart wipes the server, so drills take turns.
static DRILL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn available() -> bool {
    match redis::Client::open(URL).and_then(|c| c.get_connection()) {
        Ok(_) => true,
        Err(e) => {
            funnel_test_utils::skip_without(&format!("Redis is not reachable at {URL}: {e}"));
            false
        }
    }
}

fn key(tag: &str) -> String {
    funnel_test_utils::name::unique("ft", tag, ':')
}

fn settings(key: &str) -> Settings {
    funnel_core::settings_of(&[
        ("redis.host", "127.0.0.1"),
        ("redis.key", key),
        ("mode", "stream"),
    ])
}

/// XADDs `payload` (field `payload`), retrying while the server is down.
fn add(key: &str, payload: &str) {
    let start = Instant::now();
    loop {
        let added: redis::RedisResult<String> = redis::Client::open(URL)
            .and_then(|c| c.get_connection())
            .and_then(|mut con| {
                redis::cmd("XADD")
                    .arg(key)
                    .arg("*")
                    .arg("payload")
                    .arg(payload)
                    .query(&mut con)
            });
        if added.is_ok() {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "cannot add to {key}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn payload(record: &Record) -> String {
    let Some(Data::Raw(json)) = &record.payload.after else {
        panic!("not raw")
    };
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).unwrap();
    fields["payload"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_while_reading_is_survived_and_what_is_added_after_it_is_read_once() {
    if !available() {
        return;
    }
    let _turn = DRILL.lock().await;
    let key = key("rsrc");
    let source = source("redis", "pipe:drill", &settings(&key), None).unwrap();
    source.open().await.unwrap();
    let want: Vec<String> = (0..2000).map(|i| format!("e{i:05}")).collect();
    let mut got: Vec<String> = Vec::new();
    for (i, p) in want.iter().enumerate() {
        if i == 1000 {
            // Everything before the restart was read: restart, then go on adding.
            while got.len() < 1000 {
                let batch = tokio::time::timeout(PATIENCE, source.read())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                got.extend(batch.iter().map(payload));
            }
            tokio::task::spawn_blocking(|| restart_service("redis"))
                .await
                .unwrap();
        }
        let (key, p) = (key.clone(), p.clone());
        tokio::task::spawn_blocking(move || add(&key, &p))
            .await
            .unwrap();
    }
    while got.len() < want.len() {
        let batch = tokio::time::timeout(PATIENCE, source.read())
            .await
            .unwrap_or_else(|_| panic!("only {} of {} entries arrived", got.len(), want.len()))
            .unwrap()
            .unwrap();
        got.extend(batch.iter().map(payload));
    }
    assert_eq!(
        got, want,
        "entries were lost, repeated or reordered across the restart"
    );
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_while_writing_fails_the_write_and_a_new_destination_writes_on() {
    if !available() {
        return;
    }
    let _turn = DRILL.lock().await;
    let key = key("rdst");
    let records: Vec<Record> = (0..2000)
        .map(|i| {
            Record::new(
                Position::from(format!("{i}")),
                Bytes::from(format!("r{i:05}")),
            )
        })
        .collect();
    let d = destination("redis", "pipe:drill", &settings(&key)).unwrap();
    d.open().await.unwrap();
    d.write(&records[..1000]).await.unwrap();
    let mut acked = 0;
    while acked < 1000 {
        acked += tokio::time::timeout(PATIENCE, d.ack())
            .await
            .unwrap()
            .unwrap()
            .len();
    }
    tokio::task::spawn_blocking(|| restart_service("redis"))
        .await
        .unwrap();
    // What the engine does after a failed write: a new destination, the write again.
    let mut d = d;
    let start = Instant::now();
    let mut acked = 0;
    while acked < 1000 {
        assert!(
            start.elapsed() < PATIENCE,
            "the destination never wrote after the restart"
        );
        match d.write(&records[1000 + acked..]).await {
            Ok(()) => {
                acked += tokio::time::timeout(PATIENCE, d.ack())
                    .await
                    .unwrap()
                    .unwrap()
                    .len();
            }
            Err(e) => {
                assert!(
                    e.to_string().contains("redis destination pipe:drill"),
                    "{e}"
                );
                d.teardown().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                d = destination("redis", "pipe:drill", &settings(&key)).unwrap();
                let _ = d.open().await;
            }
        }
    }
    d.teardown().await.unwrap();
    let mut con = redis::Client::open(URL).unwrap().get_connection().unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let stored: Vec<Vec<u8>> = entries
        .ids
        .iter()
        .map(|e| match &e.map["data"] {
            redis::Value::BulkString(b) => b.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<Vec<u8>> = (1000..2000)
        .map(|i| format!("r{i:05}").into_bytes())
        .collect();
    assert_eq!(
        stored, want,
        "what was written after the restart is not there once, in order"
    );
    let _: () = redis::cmd("DEL").arg(&key).query(&mut con).unwrap();
}
