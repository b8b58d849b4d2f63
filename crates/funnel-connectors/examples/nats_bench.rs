//! A small NATS JetStream client loop, the baseline `bench/brokers.sh` compares the
//! nats connector with (the `nats bench` tool is not packaged here). It uses the same
//! client library as the connector, and nothing of Funnel.
//!
//!   nats_bench pub <url> <stream> <subject> <count> <payload file>
//!       creates the stream (file storage, storing every subject under the parent
//!       of <subject>: `a.b.>` for `a.b.in`) when missing and publishes <count>
//!       messages, up to 4096 awaiting their publish ack (or NATS_BENCH_WINDOW);
//!   nats_bench pub-id <url> <stream> <subject> <count> <payload file>
//!       as `pub`, each message with a `Nats-Msg-Id` header (`bench/<n>`, as the
//!       destination sets one from the record's position), so the stream
//!       de-duplicates: the server's share of the destination's work;
//!   nats_bench sub <url> <stream> <count>
//!       reads <count> messages with a durable pull consumer from the start of the
//!       stream, acking each (explicit acks, max_ack_pending 1024, like the source's
//!       default);
//!   nats_bench rm <url> <stream>
//!       deletes the stream.
//!
//! Prints the count, the seconds and the messages per second.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[cfg(feature = "nats")]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    use std::collections::VecDeque;
    use std::time::Instant;

    use async_nats::jetstream::{self, consumer, stream};
    use futures::StreamExt;

    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: nats_bench pub|pub-id <url> <stream> <subject> <count> <payload file> | sub <url> <stream> <count> | rm <url> <stream>";
    let mode = args.get(1).expect(usage).as_str();
    let client = async_nats::connect(args[2].as_str()).await.unwrap();
    let js = jetstream::new(client);
    let name = args[3].clone();
    let start = Instant::now();
    let count: usize;
    match mode {
        "pub" | "pub-id" => {
            let subject = args[4].clone();
            count = args[5].parse().unwrap();
            let payload = bytes::Bytes::from(std::fs::read(&args[6]).unwrap());
            // The stream stores every subject under the parent of <subject>, so
            // other runs publish to siblings of it (`bench.x.in`, `bench.x.out`).
            let parent = subject
                .rsplit_once('.')
                .map_or(subject.as_str(), |(p, _)| p);
            js.get_or_create_stream(stream::Config {
                name,
                subjects: vec![format!("{parent}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
            let mut acks = VecDeque::new();
            let with_id = mode == "pub-id";
            // Publish acks awaited at most (NATS_BENCH_WINDOW, default 4096).
            let window: usize = std::env::var("NATS_BENCH_WINDOW")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(4096);
            for n in 0..count {
                let ack = if with_id {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("bench/{n}"));
                    js.publish_with_headers(subject.clone(), headers, payload.clone())
                        .await
                } else {
                    js.publish(subject.clone(), payload.clone()).await
                };
                acks.push_back(ack.unwrap());
                if acks.len() >= window {
                    acks.pop_front().unwrap().await.unwrap();
                }
            }
            for ack in acks {
                ack.await.unwrap();
            }
        }
        "sub" => {
            count = args[4].parse().unwrap();
            let stream = js.get_stream(&name).await.unwrap();
            let consumer = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(format!("bench-{}", std::process::id())),
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_ack_pending: 1024,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut messages = consumer.messages().await.unwrap();
            for _ in 0..count {
                let message = messages.next().await.unwrap().unwrap();
                message.ack().await.unwrap();
            }
        }
        "rm" => {
            js.delete_stream(&name).await.unwrap();
            return;
        }
        _ => panic!("{usage}"),
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{mode}: {count} messages in {secs:.2} s = {:.0} messages/s",
        count as f64 / secs
    );
}

#[cfg(not(feature = "nats"))]
fn main() {
    eprintln!("nats_bench needs the cargo feature nats");
}
