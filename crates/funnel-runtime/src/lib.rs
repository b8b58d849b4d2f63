//! Funnel's runtime: from pipeline configuration to running workers.
//!
//! - [`registry`]: the table of every built-in component (connectors and processors)
//!   by its Conduit name, and the checks a configuration must pass before anything
//!   starts (settings, and connection tests);
//! - [`build`]: one [`Worker`](funnel_core::Worker) per source of a pipeline;
//! - [`processors`]: a declared processor, with its `condition` and `workers`;
//! - [`provision`]: the pipelines the pipeline files ask for, file by file, and the
//!   files that cannot be used (one bad file never stops the others);
//! - [`cluster`]: several `funnel` processes sharing one PostgreSQL store, each
//!   pipeline on one of them at a time under a lease;
//! - [`supervisor`]: runs pipelines side by side and isolated, restarts them with
//!   backoff after transient errors, degrades them after fatal ones, stops them
//!   gracefully, and applies reloaded pipeline files (only what changed restarts);
//! - [`Error`]: why a pipeline stopped, with its kind and whether a retry can help.
//!
//! The runtime knows no HTTP and no command line; `funnel-api` and `funnel-cli` sit on
//! top of it.

pub mod build;
pub mod cluster;
mod error;
mod fenced;
pub mod processors;
pub mod provision;
mod reference;
pub mod registry;
pub mod supervisor;

pub use error::Error;
/// The standalone connector plugin host, for the command line to set up.
#[cfg(feature = "standalone")]
pub use funnel_plugins;
pub use provision::{LoadFailure, Provision, Provisioned, provision};
pub use supervisor::{
    Backoff, Overview, PipelineState, PipelineStatus, Recovery, ReloadReport, Restarts, Supervisor,
    SupervisorOptions,
};
