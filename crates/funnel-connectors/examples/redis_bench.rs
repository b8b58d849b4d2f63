//! A small Redis Streams consumer loop, the like-for-like baseline `bench/brokers.sh`
//! compares the redis source with. `redis-benchmark` can only repeat one command: its
//! `XREAD COUNT 1000 STREAMS <key> 0` re-reads the same first 1,000 entries, never
//! advancing, so it is an upper bound for the server's replies rather than a consumer.
//! This loop reads a whole stream, as a consumer does, with the same client library as
//! the connector and nothing of Funnel.
//!
//!   redis_bench xread <url> <key> <count>
//!       reads <count> entries from the start of stream <key> with
//!       `XREAD COUNT 1000 STREAMS <key> <last id>`, one read after the other, each
//!       reply parsed into entries (ID and a map of fields) by redis-rs
//!       (`StreamReadReply`), the next read starting after the last ID.
//!
//! Prints the count, the seconds and the entries per second.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[cfg(feature = "redis")]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    use std::time::Instant;

    use redis::streams::{StreamReadOptions, StreamReadReply};

    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: redis_bench xread <url> <key> <count>";
    assert_eq!(args.get(1).map(String::as_str), Some("xread"), "{usage}");
    let client = redis::Client::open(args.get(2).expect(usage).as_str()).unwrap();
    let key = args.get(3).expect(usage).clone();
    let count: usize = args.get(4).expect(usage).parse().unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let start = Instant::now();
    let options = StreamReadOptions::default().count(1000);
    let mut last = "0".to_owned();
    let (mut entries, mut bytes) = (0usize, 0usize);
    while entries < count {
        let reply: StreamReadReply = redis::AsyncCommands::xread_options(
            &mut con,
            &[key.as_str()],
            &[last.as_str()],
            &options,
        )
        .await
        .unwrap();
        let ids = &reply
            .keys
            .first()
            .expect("the stream has no more entries")
            .ids;
        for entry in ids {
            for value in entry.map.values() {
                if let redis::Value::BulkString(b) = value {
                    bytes += b.len();
                }
            }
        }
        entries += ids.len();
        last.clone_from(&ids.last().expect("the stream has no more entries").id);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "xread: {entries} entries ({bytes} bytes of values) in {secs:.2} s = {:.0} entries/s",
        entries as f64 / secs
    );
}

#[cfg(not(feature = "redis"))]
fn main() {
    eprintln!("redis_bench needs the cargo feature redis");
}
