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
            Self::RetriesExhausted { last, .. } => last.kind(),
        }
    }

    /// Whether restarting the pipeline can help.
    pub fn retry(&self) -> Retry {
        match self {
            Self::Build(e) => e.retry(),
            Self::Worker(e) => e.retry(),
            Self::Panicked { .. } | Self::RetriesExhausted { .. } => Retry::Fatal,
        }
    }

    /// True when restarting will not help: the pipeline is degraded.
    pub fn is_fatal(&self) -> bool {
        self.retry() == Retry::Fatal
    }
}
