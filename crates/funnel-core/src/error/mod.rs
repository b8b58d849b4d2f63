//! Errors of the engine, each carrying its handling class.
//!
//! Every error says what kind of problem it is ([`ErrorKind`]: configuration, external
//! system, data, internal) and whether retrying can help ([`Retry`]). The engine and
//! the runtime decide from that, never from the text: a transient error stops the
//! pipeline so the runtime restarts it with backoff; a fatal one degrades it until a
//! person acts.

use std::fmt;
use std::sync::Arc;

mod connector;

pub use connector::ConnectorError;

/// A boxed error from a connector, processor or other plugin.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error's text followed by each of its causes', separated by `: ` (the way
/// `connection refused` shows, which sits a few levels down a client's error).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What kind of problem an error is, which says who has to act to fix it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The pipeline's configuration: a setting, a plugin name, the task order.
    Config,
    /// A system outside Funnel: a database, a broker, a file system, the network.
    External,
    /// The records themselves: a record a processor or the DLQ refused.
    Data,
    /// A bug in Funnel or in a connector or processor (a broken contract).
    Internal,
}

impl ErrorKind {
    /// The kind as one lowercase word (`config`, `external`, `data`, `internal`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::External => "external",
            Self::Data => "data",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retry {
    /// Worth retrying: the pipeline stops and the runtime restarts it with backoff.
    Transient,
    /// Retrying will not help: the pipeline is degraded until a person acts.
    Fatal,
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
    /// pipeline stops with the record's own error, naming the record.
    #[error("{error} (the record at {record}, nacked by {task})")]
    Nacked {
        /// The task that nacked the record.
        task: String,
        /// The record's error.
        error: RecordError,
        /// Which record: its position, and its file and line when it came from a
        /// file ([`describe_record`](crate::describe_record)).
        record: String,
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
    #[error("DLQ {dlq}: failed to write {count} records to the DLQ: {source}")]
    DlqWrite {
        /// The DLQ's ID.
        dlq: String,
        /// How many records were being written.
        count: usize,
        /// What went wrong: the DLQ destination's write or ack error, or the error of
        /// the record it refused.
        source: Box<Error>,
    },
    /// The task order is not a valid pipeline.
    #[error("invalid task order: {0}")]
    InvalidOrder(String),
    /// Tearing a task down failed.
    #[error("task {task} failed to tear down: {source}")]
    Teardown {
        /// The task's ID.
        task: String,
        /// What went wrong.
        source: ConnectorError,
    },
    /// Closing a worker failed: every failure, in close order (the source, the
    /// processors, the destinations, the DLQ).
    #[error("{}", join_errors(.0))]
    Close(Vec<Error>),
    /// A stage of the worker stopped unexpectedly (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The connector error behind this one, when a connector (or the DLQ's
    /// destination) failed an operation: its class is this error's class.
    fn connector_source(&self) -> Option<&ConnectorError> {
        match self {
            Self::Open { source, .. }
            | Self::DlqOpen { source, .. }
            | Self::Read { source, .. }
            | Self::SourceAck { source, .. }
            | Self::Commit { source, .. }
            | Self::Write { source, .. }
            | Self::ReceiveAcks { source, .. }
            | Self::Teardown { source, .. } => Some(source),
            _ => None,
        }
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Nacked { .. } | Self::DlqThresholdExceeded { .. } => ErrorKind::Data,
            Self::InvalidOrder(_) => ErrorKind::Config,
            // Most often a processor waiting on another system (a webhook, say).
            Self::ProcessorTimeout { .. } => ErrorKind::External,
            Self::EmptyPosition { .. }
            | Self::AckProtocol { .. }
            | Self::ProcessorOutput { .. }
            | Self::RetryNotConverging { .. }
            | Self::Internal(_) => ErrorKind::Internal,
            Self::DlqWrite { source, .. } => source.kind(),
            Self::Close(errors) => errors.first().map_or(ErrorKind::Internal, Error::kind),
            // An operation a connector failed: the connector error's class.
            _ => self
                .connector_source()
                .map_or(ErrorKind::Internal, ConnectorError::kind),
        }
    }

    /// Whether restarting the pipeline can help. Broken contracts (an empty position,
    /// acks out of order, a processor answering too much or never converging), a
    /// failing DLQ and an exceeded nack threshold are fatal; a record nacked while the
    /// DLQ tolerates no nacks is transient (the pipeline restarts and reads it again).
    pub fn retry(&self) -> Retry {
        match self {
            Self::RetryNotConverging { .. }
            | Self::DlqThresholdExceeded { .. }
            | Self::DlqWrite { .. }
            | Self::EmptyPosition { .. }
            | Self::AckProtocol { .. }
            | Self::ProcessorOutput { .. }
            | Self::InvalidOrder(_)
            | Self::Internal(_) => Retry::Fatal,
            Self::Nacked { .. } | Self::ProcessorTimeout { .. } => Retry::Transient,
            Self::Close(errors) => {
                if errors.iter().any(Error::is_fatal) {
                    Retry::Fatal
                } else {
                    Retry::Transient
                }
            }
            // An operation a connector failed: the connector error's class.
            _ => self
                .connector_source()
                .map_or(Retry::Fatal, ConnectorError::retry),
        }
    }

    /// True when restarting the pipeline will not help: it should be degraded.
    pub fn is_fatal(&self) -> bool {
        self.retry() == Retry::Fatal
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

/// `errors`, each on its own, joined with `; `.
fn join_errors(errors: &[Error]) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
