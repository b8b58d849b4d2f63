//! Errors of the engine, each carrying its handling class.
//!
//! The engine decides what to do with an error from its [`Error::is_fatal`] and
//! [`Error::fault`], never from its text: a transient error stops the pipeline so the
//! runtime can restart it with backoff; a fatal one degrades it until a person acts.

use std::fmt;
use std::sync::Arc;

/// A boxed error from a connector, processor or other plugin.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whose fault an error is: who has to act to fix it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The pipeline's configuration (or the data it lets through).
    User,
    /// A system outside Funnel: a database, a broker, a file system.
    External,
    /// A bug in Funnel or in a connector or processor.
    Internal,
}

/// Why a record was nacked: a cheap-to-clone error attached to one record.
///
/// It is shared by every piece of a split record and ends up, as text, in the
/// dead-letter queue's `conduit.dlq.nack.error` metadata.
#[derive(Clone)]
pub struct RecordError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl RecordError {
    /// Wraps any error.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(Arc::from(error.into()))
    }

    /// An error holding just `message`.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::new(message.into())
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordError({:?})", self.0.to_string())
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for RecordError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// How a connector error should be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectorErrorKind {
    /// Worth retrying: the pipeline stops and the runtime restarts it with backoff.
    Transient,
    /// Retrying will not help: the pipeline is degraded.
    Fatal,
    /// Only from [`Source::read`](crate::Source::read): the source has no more
    /// records and will never have more. The pipeline drains and finishes.
    Exhausted,
}

/// An error returned by a source or destination.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct ConnectorError {
    kind: ConnectorErrorKind,
    #[source]
    source: BoxError,
}

impl ConnectorError {
    /// A transient error (the default for I/O problems).
    pub fn transient(error: impl Into<BoxError>) -> Self {
        Self {
            kind: ConnectorErrorKind::Transient,
            source: error.into(),
        }
    }

    /// A fatal error: restarting the pipeline will not help.
    pub fn fatal(error: impl Into<BoxError>) -> Self {
        Self {
            kind: ConnectorErrorKind::Fatal,
            source: error.into(),
        }
    }

    /// The source has no more records.
    pub fn exhausted() -> Self {
        Self {
            kind: ConnectorErrorKind::Exhausted,
            source: "source exhausted its records".into(),
        }
    }

    /// How the error should be handled.
    pub fn kind(&self) -> ConnectorErrorKind {
        self.kind
    }
}

/// An engine error: what stopped a worker, and how to handle it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task failed to open.
    #[error("task {task} failed to open: {source}")]
    Open {
        /// The task's ID.
        task: String,
        /// What went wrong.
        source: ConnectorError,
    },
    /// The DLQ's destination failed to open.
    #[error("failed to open DLQ {dlq}: {source}")]
    DlqOpen {
        /// The DLQ's ID.
        dlq: String,
        /// What went wrong.
        source: ConnectorError,
    },
    /// Reading from the source failed.
    #[error("task {task}: failed to read from source: {source}")]
    Read {
        /// The source task's ID.
        task: String,
        /// What went wrong.
        source: ConnectorError,
    },
    /// The source emitted a record without a position.
    #[error(
        "task {task}: source emitted a record with an empty position (record {index} of its batch); \
         a source must give every record a distinct, non-empty position, or it cannot resume: \
         this is a bug in the source connector"
    )]
    EmptyPosition {
        /// The source task's ID.
        task: String,
        /// Index of the record in the batch the source returned.
        index: usize,
    },
    /// Acking positions in the source failed.
    #[error("task {task}: failed to ack {count} records in source: {source}")]
    SourceAck {
        /// The source task's ID.
        task: String,
        /// How many positions were being acked.
        count: usize,
        /// What went wrong.
        source: ConnectorError,
    },
    /// Committing positions to the position store failed.
    #[error("task {task}: failed to commit position {position} before acking it: {source}")]
    Commit {
        /// The source task's ID.
        task: String,
        /// The position that was being committed.
        position: String,
        /// What went wrong.
        source: ConnectorError,
    },
    /// Writing to a destination failed.
    #[error("task {task}: failed to write {count} records to destination: {source}")]
    Write {
        /// The destination task's ID.
        task: String,
        /// How many records were being written.
        count: usize,
        /// What went wrong.
        source: ConnectorError,
    },
    /// Receiving acks from a destination failed.
    #[error("task {task}: failed to receive acks for {count} records from destination: {source}")]
    ReceiveAcks {
        /// The destination task's ID.
        task: String,
        /// How many records were waiting for acks.
        count: usize,
        /// What went wrong.
        source: ConnectorError,
    },
    /// A destination broke the ack protocol (out of order, too many, empty acks). Fatal:
    /// a restart would meet the same connector bug again.
    #[error("task {task}: failed to validate acks: {message}")]
    AckProtocol {
        /// The destination task's ID.
        task: String,
        /// What was wrong.
        message: String,
    },
    /// A processor returned a result that cannot be mapped onto its input.
    #[error("task {task}: {message}")]
    ProcessorOutput {
        /// The processor task's ID.
        task: String,
        /// What was wrong.
        message: String,
    },
    /// A processor call did not return within the task's timeout; the processor was
    /// abandoned to the call (it is torn down when the call returns).
    #[error(
        "task {task}: the processor did not return within {timeout:?}; it was abandoned and \
         the pipeline restarts"
    )]
    ProcessorTimeout {
        /// The processor task's ID.
        task: String,
        /// The per-call timeout.
        timeout: std::time::Duration,
    },
    /// A processor kept returning no result for some records.
    #[error(
        "task {task}: retry is not converging: {message}; a processor must return one result per \
         record it is given (a missing result means \"retry this record\")"
    )]
    RetryNotConverging {
        /// The processor task's ID.
        task: String,
        /// Attempts and sizes.
        message: String,
    },
    /// A record was nacked while the DLQ tolerates no nacks (threshold 0): the
    /// pipeline stops with the record's own error.
    #[error("{error}")]
    Nacked {
        /// The task that nacked the record.
        task: String,
        /// The record's error.
        error: RecordError,
    },
    /// The DLQ's nack threshold was exceeded.
    #[error("DLQ nack threshold exceeded ({threshold}/{window}), original error: {error}")]
    DlqThresholdExceeded {
        /// The configured threshold.
        threshold: usize,
        /// The configured window size.
        window: usize,
        /// The error of the record that tripped the threshold.
        error: RecordError,
    },
    /// Writing to the DLQ failed.
    #[error("DLQ {dlq}: failed to write {count} records to the DLQ: {message}")]
    DlqWrite {
        /// The DLQ's ID.
        dlq: String,
        /// How many records were being written.
        count: usize,
        /// What went wrong.
        message: String,
    },
    /// The task order is not a valid pipeline.
    #[error("invalid task order: {0}")]
    InvalidOrder(String),
    /// Tearing down or closing failed.
    #[error("{0}")]
    Close(String),
    /// A stage of the worker stopped unexpectedly (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// True when restarting the pipeline will not help: it should be degraded.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::RetryNotConverging { .. }
            | Self::DlqThresholdExceeded { .. }
            | Self::DlqWrite { .. }
            | Self::EmptyPosition { .. }
            | Self::ProcessorOutput { .. }
            | Self::AckProtocol { .. }
            | Self::InvalidOrder(_)
            | Self::Internal(_) => true,
            Self::Open { source, .. }
            | Self::DlqOpen { source, .. }
            | Self::Read { source, .. }
            | Self::SourceAck { source, .. }
            | Self::Commit { source, .. }
            | Self::Write { source, .. }
            | Self::ReceiveAcks { source, .. } => source.kind() == ConnectorErrorKind::Fatal,
            Self::ProcessorTimeout { .. } | Self::Nacked { .. } | Self::Close(_) => false,
        }
    }

    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Nacked { .. } | Self::DlqThresholdExceeded { .. } | Self::InvalidOrder(_) => {
                Fault::User
            }
            Self::EmptyPosition { .. }
            | Self::AckProtocol { .. }
            | Self::ProcessorOutput { .. }
            | Self::RetryNotConverging { .. }
            | Self::Internal(_) => Fault::Internal,
            _ => Fault::External,
        }
    }

    /// A stable code for errors users may look up (Conduit's names where one exists).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::RetryNotConverging { .. } => Some("pipeline.retry_not_converging"),
            Self::EmptyPosition { .. } => Some("pipeline.empty_source_position"),
            Self::AckProtocol { .. } => Some("pipeline.ack_protocol_violation"),
            Self::DlqThresholdExceeded { .. } => Some("pipeline.dlq_threshold_exceeded"),
            _ => None,
        }
    }
}

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
