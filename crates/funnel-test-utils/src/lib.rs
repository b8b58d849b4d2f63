//! Test helpers for Funnel: in-memory connectors with fault injection, processors
//! driven by a per-record plan, and the stop-and-wait reference executor the
//! pipelined worker is compared with.
//!
//! Nothing here is for production use; `publish = false`.

pub mod memory;
pub mod plan;
pub mod reference;

pub use memory::{FnProcessor, MemoryDestination, MemorySource};
