//! Drills that restart the shared NATS server (127.0.0.1:4222) while the nats source
//! and destination run: `scripts/nats-server.sh stop`, then `start`. They live in
//! their own test binary so no other nats test runs during a restart. Without a
//! server they are skipped, except under `CI=true`.

#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/nats.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use funnel_core::DestinationAck;
use funnel_record::{Position, Record};
use funnel_test_utils::connectors::read_and_ack;
use funnel_test_utils::process::restart_service;
use support::{PATIENCE, TestStream, client, payload_of_json, raw};

/// Held by each drill: a restart takes the server away from every other drill, so
/// drills take turns.
static DRILL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Publishes `payload` with message ID `id` until the stream confirms it (the
/// message ID keeps a retried publish from being stored twice).
async fn publish_until_stored(
    js: &async_nats::jetstream::Context,
    subject: &str,
    id: &str,
    payload: Bytes,
) {
    let start = Instant::now();
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let sent = js
            .publish_with_headers(subject.to_owned(), headers, payload.clone())
            .await;
        if let Ok(ack) = sent
            && ack.await.is_ok()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "could not publish {id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_while_reading_with_a_publisher_running_loses_and_repeats_nothing() {
    const N: usize = 20_000;
    let _turn = DRILL.lock().await;
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "rsrc").await;
    let subject = stream.subject();
    let source = stream.source(
        "drill",
        &[("maxReconnects", "-1"), ("reconnectWait", "1s")],
        None,
    );
    source.open().await.unwrap();
    let publisher = {
        let (js, subject) = (stream.js.clone(), subject.clone());
        tokio::spawn(async move {
            for i in 0..N {
                publish_until_stored(
                    &js,
                    &subject,
                    &format!("m{i}"),
                    Bytes::from(format!("m{i:06}")),
                )
                .await;
            }
        })
    };
    // A quarter read and acked, then the restart, then the rest.
    let mut got: Vec<Bytes> = read_and_ack(&*source, N / 4)
        .await
        .iter()
        .map(raw)
        .collect();
    tokio::task::spawn_blocking(|| restart_service("nats"))
        .await
        .unwrap();
    let rest = read_and_ack(&*source, N.saturating_sub(got.len())).await;
    got.extend(rest.iter().map(raw));
    publisher.await.unwrap();
    let want: Vec<Bytes> = (0..N).map(|i| Bytes::from(format!("m{i:06}"))).collect();
    assert!(
        got == want,
        "messages were lost, repeated or reordered across the restart"
    );
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_while_writing_fails_the_destination_or_goes_on_and_a_rewrite_stores_each_record_once()
 {
    const N: usize = 20_000;
    let _turn = DRILL.lock().await;
    let Some(client) = client().await else { return };
    let stream = TestStream::new(&client, "rdst").await;
    let records: Vec<Record> = (0..N)
        .map(|i| {
            Record::new(
                Position::from(format!("{i:08}")),
                Bytes::from(format!("r{i:06}")),
            )
        })
        .collect();
    let extra = [
        ("maxReconnects", "-1"),
        ("reconnectWait", "1s"),
        ("retryWait", "1s"),
    ];
    // What the engine does: write, collect acks; when the destination fails, open a new
    // one and write again everything not acked.
    let mut acked = 0;
    let mut restarted = false;
    let start = Instant::now();
    while acked < N {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {acked} of {N} acked"
        );
        let d = stream.destination("pipe:drill", &extra);
        if d.open().await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut written = acked;
        'run: while acked < N {
            if written < N && written - acked < 4000 {
                let end = (written + 500).min(N);
                if d.write(&records[written..end]).await.is_err() {
                    break 'run;
                }
                written = end;
            }
            if !restarted && acked >= N / 4 {
                tokio::task::spawn_blocking(|| restart_service("nats"))
                    .await
                    .unwrap();
                restarted = true;
            }
            match tokio::time::timeout(PATIENCE, d.ack()).await.unwrap() {
                Ok(acks) => {
                    assert!(acks.iter().all(|a: &DestinationAck| a.error.is_none()));
                    acked += acks.len();
                }
                Err(_) => break 'run,
            }
        }
        d.teardown().await.unwrap();
    }
    let messages = stream.messages().await;
    let stored: BTreeSet<Bytes> = messages
        .iter()
        .map(|m| payload_of_json(&m.payload))
        .collect();
    let want: BTreeSet<Bytes> = records.iter().map(raw).collect();
    let missing: Vec<&Bytes> = want.difference(&stored).take(10).collect();
    assert!(
        missing.is_empty(),
        "records are missing from the stream: {missing:?}"
    );
    assert_eq!(
        messages.len(),
        N,
        "the stream holds {} messages for {N} records",
        messages.len()
    );
}
