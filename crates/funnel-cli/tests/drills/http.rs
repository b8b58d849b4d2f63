//! The http (webhook) source under SIGKILL: senders post NDJSON requests to a pipeline
//! writing to a file and send again every request that did not get a 2xx (a refused
//! connection, a connection cut by the kill, a 503), while Funnel is killed five times
//! at random moments and started again.
//!
//! Checked: every record arrives at least once, and when a request gets its 2xx every
//! one of its records is already in the output file (written and `fsync`ed): no 2xx
//! comes before delivery.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::harness::{Drill, Rng, after_text, assert_nothing_lost, tail};
use crate::pipelines::{connector, file_destination, pipeline};

/// Records in all, in requests of `PER_REQUEST`.
const RECORDS: u64 = 100_000;
const PER_REQUEST: u64 = 100;
/// Senders posting at the same time (request `r` is sent by sender `r % SENDERS`).
const SENDERS: u64 = 8;
/// Kills; before kill `k` requests up to `k / (KILLS + 1)` of all may go, and the kill
/// comes once half of that last share was answered, so each lands with requests in
/// flight.
const KILLS: u64 = 5;

/// The id of the record on an output line, from its `{"id":N}` payload.
fn id_of(text: &str) -> u64 {
    let value: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not a posted record ({e}): {text}"));
    value["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id: {text}"))
}

/// The ids in the output file so far, read on from where the last look stopped (only
/// whole lines: a torn last line is cut off by the next run, never completed).
struct Delivered {
    path: std::path::PathBuf,
    read: Mutex<(usize, BTreeSet<u64>)>,
}

impl Delivered {
    /// Whether every id of `ids` is in the output now.
    fn holds(&self, ids: std::ops::Range<u64>) -> bool {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let (offset, seen) = &mut *read;
        let mut new = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            file.seek(SeekFrom::Start(*offset as u64)).unwrap();
            file.read_to_end(&mut new).unwrap();
        }
        {
            if let Some(end) = new.iter().rposition(|&b| b == b'\n') {
                for line in new[..=end].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let record = funnel_record::Record::from_json(line).unwrap();
                    seen.insert(id_of(&after_text(&record)));
                }
                *offset += end + 1;
            }
        }
        ids.clone().all(|id| seen.contains(&id))
    }
}

/// The body of request `r`: records `r * PER_REQUEST ..` as NDJSON.
fn body(r: u64) -> String {
    (r * PER_REQUEST..(r + 1) * PER_REQUEST)
        .map(|id| format!("{{\"id\":{id}}}\n"))
        .collect()
}

/// Posts `body` once; the status, or `None` when the connection failed or was cut.
fn post(port: u16, body: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!(
        "POST /hook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let status_line = response.split(|&b| b == b'\r').next()?;
    let status = std::str::from_utf8(status_line).ok()?.split(' ').nth(1)?;
    status.parse().ok()
}

#[test]
fn http_source_delivers_every_record_of_retrying_senders_through_sigkills_and_answers_2xx_only_after_delivery()
 {
    let port = funnel_test_utils::process::free_port();
    let address = format!("127.0.0.1:{port}");
    let drill = Drill::new(&pipeline(
        &connector(
            "src",
            "source",
            "http",
            &[("address", &address), ("bufferSize", "64")],
        ),
        &file_destination("./out.jsonl"),
    ));
    let delivered = Arc::new(Delivered {
        path: drill.path("out.jsonl"),
        read: Mutex::new((0, BTreeSet::new())),
    });
    let mut rng = Rng::new("http_source_kill");
    let mut funnel = drill.start(&[]);

    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let early: Arc<Mutex<Vec<u64>>> = Arc::default();
    let allowed = Arc::new(AtomicU64::new(0));
    let requests = RECORDS / PER_REQUEST;
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (delivered, done, answered, retries, early, allowed) = (
                Arc::clone(&delivered),
                Arc::clone(&done),
                Arc::clone(&answered),
                Arc::clone(&retries),
                Arc::clone(&early),
                Arc::clone(&allowed),
            );
            std::thread::spawn(move || {
                for r in (s..requests).step_by(usize::try_from(SENDERS).unwrap()) {
                    let body = body(r);
                    while r >= allowed.load(Ordering::SeqCst) {
                        if done.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    loop {
                        if done.load(Ordering::SeqCst) {
                            return;
                        }
                        match post(port, &body) {
                            Some(status) if (200..300).contains(&status) => {
                                if !delivered.holds(r * PER_REQUEST..(r + 1) * PER_REQUEST) {
                                    early.lock().unwrap().push(r);
                                }
                                answered.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            // 503 while the pipeline stops or is behind, a refused or
                            // cut connection while Funnel is down: send again.
                            _ => {
                                retries.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let share = requests / (KILLS + 1);
    for kill in 1..=KILLS {
        allowed.store(kill * share, Ordering::SeqCst);
        let half = (kill - 1) * share + share / 2;
        drill.wait_for(
            &format!("{half} requests answered before kill {kill}"),
            Duration::from_secs(120),
            || answered.load(Ordering::SeqCst) >= half,
        );
        std::thread::sleep(Duration::from_millis(rng.between(0, 100)));
        funnel.signal("KILL", &drill);
        funnel = drill.start(&[]);
    }
    allowed.store(requests, Ordering::SeqCst);
    let start = Instant::now();
    while answered.load(Ordering::SeqCst) < requests {
        if start.elapsed() > Duration::from_secs(300) {
            done.store(true, Ordering::SeqCst);
            panic!(
                "only {} of {requests} requests answered 2xx after 300 s; funnel's log:\n{}",
                answered.load(Ordering::SeqCst),
                tail(&drill.log())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for sender in senders {
        sender.join().unwrap();
    }
    funnel.signal("TERM", &drill);

    let early = early.lock().unwrap();
    assert!(
        early.is_empty(),
        "requests answered 2xx before all their records were in the output: {:?}",
        &early[..early.len().min(10)]
    );
    let got: Vec<u64> = drill
        .records("out.jsonl")
        .iter()
        .map(|r| id_of(&after_text(r)))
        .collect();
    eprintln!(
        "http_source_kill: {RECORDS} records in {requests} requests, {} sends again, {} lines written ({} twice)",
        retries.load(Ordering::SeqCst),
        got.len(),
        got.len() as u64 - RECORDS.min(got.len() as u64)
    );
    assert_nothing_lost("http_source_kill", 0..RECORDS, &got, &drill);
}
