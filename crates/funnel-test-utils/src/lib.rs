//! Test helpers for Funnel: in-memory connectors with fault injection, processors
//! driven by a per-record plan, the stop-and-wait reference executor the pipelined
//! worker is compared with, the connector compliance suite ([`compliance`]) every
//! connector's integration test runs, reading and acking a real connector with a
//! deadline ([`connectors`]), names no other test uses ([`name`]), the clock as
//! records carry it ([`clock`]), helpers for running records through a processor
//! ([`results`]), pipeline files written by code ([`yaml`]), the JSON `funnel` answers
//! with ([`json`]), a GET for the API of
//! ([`http`]) and runs of and signals to ([`process`]) a running `funnel`, TLS
//! certificates made in the test ([`tls`]), and private Kafka-protocol brokers that a
//! test may stop or put behind TLS ([`tansu`]).
//!
//! Nothing here is for production use; `publish = false`.

pub mod clock;
pub mod compliance;
pub mod conduit;
pub mod connectors;
pub mod http;
pub mod json;
pub mod memory;
pub mod name;
pub mod pg;
pub mod plan;
pub mod process;
pub mod reference;
pub mod results;
#[cfg(feature = "s3")]
pub mod s3;
pub mod tansu;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wait;
pub mod yaml;

pub use memory::{FnProcessor, MemoryDestination, MemorySource};
pub use wait::{wait_for, wait_until, wait_until_blocking};

/// Runs `worker` to its end: opens it, runs it until its sources are exhausted or it
/// stops, and closes it.
///
/// # Panics
///
/// When one of the three fails.
pub async fn run_to_end(worker: &mut funnel_core::Worker) {
    worker.open().await.unwrap_or_else(|e| panic!("open: {e}"));
    worker.run().await.unwrap_or_else(|e| panic!("run: {e}"));
    worker
        .close()
        .await
        .unwrap_or_else(|e| panic!("close: {e}"));
}

/// Skips a test because `missing` (a server that is not reachable, a program that is
/// not installed) is not there: says so on stderr. Under `CI=true`, where
/// `scripts/setup-services.sh` set everything up, fails the test instead.
///
/// # Panics
///
/// When `CI` is `true`.
pub fn skip_without(missing: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{missing} (run scripts/setup-services.sh)"
    );
    eprintln!("skipping: {missing}");
}
