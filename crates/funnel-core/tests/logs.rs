//! What the worker logs, as Conduit's users read it.
//!
//! Alone in its test binary: `tracing` caches per call site whether anyone listens, and
//! a test setting a thread-local subscriber while other tests in the same process hit
//! the same call sites may miss events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use funnel_core::WorkerConfig;
use funnel_test_utils::{MemoryDestination, MemorySource};

#[tokio::test]
async fn the_simple_stream_example_logs_the_opens_then_every_record_and_its_ack_in_order() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut p = pipeline(
        MemorySource::new("generator", records("generator", 10), 1),
        vec![],
        vec![MemoryDestination::new("printer")],
        (1, 0),
        WorkerConfig::default(),
    );
    p.worker.open().await.unwrap();
    let stopper = p.worker.stopper();
    let printer = p.destinations[0].clone();
    let (result, ()) = tokio::join!(p.worker.run(), async {
        wait_until("every record is written", || printer.written().len() >= 10).await;
        stopper.stop();
    });
    result.unwrap();
    p.worker.close().await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let opens: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("open"))
        .map(|l| l.trim())
        .collect();
    assert_eq!(
        opens,
        [
            "DEBUG opening source connector_id=source",
            "DEBUG source open connector_id=source",
            "DEBUG opening destination connector_id=dest-0",
            "DEBUG destination open connector_id=dest-0",
            "DEBUG opening destination connector_id=dlq",
            "DEBUG destination open connector_id=dlq",
        ]
    );
    let got: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("got record"))
        .map(|l| l.rsplit("position=").next().unwrap().to_owned())
        .collect();
    let acked: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("received ack"))
        .map(|l| l.rsplit("position=").next().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("generator/{i}")).collect();
    assert_eq!(got, expected);
    assert_eq!(acked, expected);
    // Each record is acked only after it was written.
    for i in 0..10 {
        let write = lines.iter().position(|l| {
            l.ends_with(&format!(
                "got record node_id=printer position=generator/{i}"
            ))
        });
        let ack = lines
            .iter()
            .position(|l| l.contains("received ack") && l.ends_with(&format!("generator/{i}")));
        assert!(
            write.unwrap() < ack.unwrap(),
            "record {i} acked before it was written"
        );
    }
}
