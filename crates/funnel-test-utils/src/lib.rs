//! Test helpers for Funnel: in-memory connectors with fault injection, processors
//! driven by a per-record plan, the stop-and-wait reference executor the pipelined
//! worker is compared with, the connector compliance suite ([`compliance`]) every
//! connector's integration test runs, reading and acking a real connector with a
//! deadline ([`connectors`]), helpers for running records through a
//! processor ([`results`]), pipeline files written by code ([`yaml`]), and a GET for
//! the API of ([`http`]) and signals to ([`process`]) a running `funnel`, and private
//! Kafka-protocol brokers that a test may stop or put behind TLS ([`tansu`]).
//!
//! Nothing here is for production use; `publish = false`.

pub mod compliance;
pub mod conduit;
pub mod connectors;
pub mod http;
pub mod memory;
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
