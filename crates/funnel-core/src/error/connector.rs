//! The error a connector, processor or position committer returns.

use std::fmt;

use super::{BoxError, ErrorKind, Retry};

/// An error returned by a source, destination, processor or position committer: what
/// went wrong (its source error, kept), what kind of problem it is, and whether a
/// retry can help.
///
/// ```
/// use funnel_core::{ConnectorError, ErrorKind, Retry};
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let e = ConnectorError::transient(io).context("postgres source db:users");
/// assert_eq!(e.kind(), ErrorKind::External);
/// assert_eq!(e.retry(), Retry::Transient);
/// assert_eq!(e.to_string(), "postgres source db:users: refused");
/// ```
#[derive(Debug)]
pub struct ConnectorError {
    kind: ErrorKind,
    retry: Retry,
    context: Option<String>,
    source: BoxError,
}

impl ConnectorError {
    /// An error of `kind`, handled as `retry`, caused by `source`.
    pub fn new(kind: ErrorKind, retry: Retry, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            retry,
            context: None,
            source: source.into(),
        }
    }

    /// A transient failure of an external system (the default for I/O problems).
    pub fn transient(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::External, Retry::Transient, source)
    }

    /// A failure of an external system that retrying will not fix (access refused, a
    /// table that does not exist).
    pub fn fatal(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::External, Retry::Fatal, source)
    }

    /// A configuration the connector cannot work with (fatal).
    pub fn config(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Config, Retry::Fatal, source)
    }

    /// Data the connector cannot handle (fatal).
    pub fn data(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Data, Retry::Fatal, source)
    }

    /// A broken contract: a bug in Funnel or in the connector (fatal).
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Internal, Retry::Fatal, source)
    }

    /// The same error, its message prefixed with `context` (`"file source"`, a
    /// connector ID): the source error stays as it is.
    #[must_use]
    pub fn context(mut self, context: impl Into<String>) -> Self {
        let context = context.into();
        self.context = Some(match self.context.take() {
            Some(inner) => format!("{context}: {inner}"),
            None => context,
        });
        self
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// True when retrying will not help.
    pub fn is_fatal(&self) -> bool {
        self.retry == Retry::Fatal
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(context) => write!(f, "{context}: {}", self.source),
            None => fmt::Display::fmt(&self.source, f),
        }
    }
}

impl std::error::Error for ConnectorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
