//! Why a pipeline stopped: the runtime's error, with the handling class the supervisor
//! decides from (restart with backoff or degrade), never from the text.

use funnel_core::{ErrorKind, Retry};

use crate::build::BuildError;

/// What stopped a pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipeline could not be built or opened.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A worker stopped with an engine error.
    #[error(transparent)]
    Worker(#[from] funnel_core::Error),
    /// A worker's task panicked (a bug).
    #[error("pipeline {pipeline}: the worker of source {source_id} panicked: {message}")]
    Panicked {
        /// The pipeline's ID.
        pipeline: String,
        /// The source connector's ID.
        source_id: String,
        /// The panic's message.
        message: String,
    },
    /// The same record failed the same way on every run, restart after restart: a
    /// restart cannot help, so the pipeline is degraded instead of restarting forever.
    #[error(
        "pipeline {pipeline}: the record at {record} failed {failures} times in a row with \
         the same error: {error}. Fix the record or what refuses it, or let a dead-letter \
         queue take such records (dead-letter-queue.window-size: 0 sends every failed \
         record to it)"
    )]
    RecordKeepsFailing {
        /// The pipeline's ID.
        pipeline: String,
        /// Which record ([`funnel_core::describe_record`]).
        record: String,
        /// How many runs in a row it failed.
        failures: u32,
        /// Its error.
        error: String,
    },
    /// The pipeline kept failing with transient errors until the retries ran out.
    #[error("failed to recover pipeline after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// How many restarts were tried.
        attempts: u32,
        /// The last error.
        last: Box<Error>,
    },
}

impl Error {
    /// What kind of problem it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Build(e) => e.kind(),
            Self::Worker(e) => e.kind(),
            Self::Panicked { .. } => ErrorKind::Internal,
            Self::RecordKeepsFailing { .. } => ErrorKind::Data,
            Self::RetriesExhausted { last, .. } => last.kind(),
        }
    }

    /// Whether restarting the pipeline can help.
    pub fn retry(&self) -> Retry {
        match self {
            Self::Build(e) => e.retry(),
            Self::Worker(e) => e.retry(),
            Self::Panicked { .. }
            | Self::RecordKeepsFailing { .. }
            | Self::RetriesExhausted { .. } => Retry::Fatal,
        }
    }

    /// The record that stopped the pipeline and its error, when one record did (it was
    /// nacked with no dead-letter queue to take it).
    pub fn failed_record(&self) -> Option<(&str, String)> {
        match self {
            Self::Worker(funnel_core::Error::Nacked { record, error, .. }) => {
                Some((record.as_str(), error.to_string()))
            }
            _ => None,
        }
    }

    /// True when restarting will not help: the pipeline is degraded.
    pub fn is_fatal(&self) -> bool {
        self.retry() == Retry::Fatal
    }
}
