//! What sources and destinations share below [`Connector`](crate::connector): calls
//! with a deadline, the error mapping, and the `Run` stream's answers, which arrive
//! once the plugin sends its first message.

use std::future::Future;
use std::time::Duration;

use funnel_core::ConnectorError;
use tokio::task::JoinHandle;
use tonic::{Status, Streaming};

use crate::process::Diagnostics;

/// The largest message Funnel accepts from a plugin (gRPC's own limit).
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

/// Whether a failed call was one the plugin does not implement.
pub(crate) fn unimplemented(status: &Status) -> bool {
    status.code() == tonic::Code::Unimplemented
}

/// The error of a failed call: a plugin that refused its configuration gives a
/// configuration error (fatal: a restart will not fix it); anything else is a
/// transient failure, so the pipeline restarts with backoff.
pub(crate) fn status_error(
    diagnostics: &Diagnostics,
    what: &str,
    status: &Status,
) -> ConnectorError {
    let error = diagnostics.failure(format!("{what}: {}", status.message()));
    if status.code() == tonic::Code::InvalidArgument {
        ConnectorError::config(error)
    } else {
        ConnectorError::transient(error)
    }
}

/// Runs one call, within `deadline`.
pub(crate) async fn call<T>(
    diagnostics: &Diagnostics,
    what: &str,
    deadline: Duration,
    future: impl Future<Output = Result<T, Status>>,
) -> Result<Result<T, Status>, ConnectorError> {
    match tokio::time::timeout(deadline, future).await {
        Ok(answer) => Ok(answer),
        Err(_) => Err(ConnectorError::transient(
            diagnostics.failure(format!("{what}: no answer within {deadline:?}")),
        )),
    }
}

/// Runs one call within `deadline` and turns a failure into an error (`what` says
/// what failed, as Conduit words it).
pub(crate) async fn call_ok<T>(
    diagnostics: &Diagnostics,
    what: &str,
    deadline: Duration,
    future: impl Future<Output = Result<T, Status>>,
) -> Result<T, ConnectorError> {
    call(diagnostics, what, deadline, future)
        .await?
        .map_err(|status| status_error(diagnostics, what, &status))
}

/// A lifecycle call: UNIMPLEMENTED is fine.
pub(crate) async fn lifecycle<T>(
    diagnostics: &Diagnostics,
    what: &str,
    deadline: Duration,
    future: impl Future<Output = Result<T, Status>>,
) -> Result<(), ConnectorError> {
    match call(diagnostics, what, deadline, future).await? {
        Ok(_) => Ok(()),
        Err(status) if unimplemented(&status) => Ok(()),
        Err(status) => Err(status_error(diagnostics, what, &status)),
    }
}

/// The answers of a `Run` stream: first the pending call (it resolves when the plugin
/// sends its first message or its headers), then the stream.
pub(crate) enum Answers<T> {
    /// The call, still waiting for the plugin.
    Pending(JoinHandle<Result<Streaming<T>, Status>>),
    /// The stream.
    Ready(Box<Streaming<T>>),
    /// Closed.
    Closed,
}

impl<T> Answers<T> {
    /// The next message; `Ok(None)` at the end of the stream. Cancel-safe: an
    /// interrupted wait loses nothing.
    pub(crate) async fn next(&mut self) -> Result<Option<T>, Status> {
        loop {
            match self {
                Self::Pending(handle) => {
                    let stream = match handle.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(status)) => {
                            *self = Self::Closed;
                            return Err(status);
                        }
                        Err(e) => {
                            *self = Self::Closed;
                            return Err(Status::internal(format!("the Run call failed: {e}")));
                        }
                    };
                    *self = Self::Ready(Box::new(stream));
                }
                Self::Ready(stream) => return stream.message().await,
                Self::Closed => return Ok(None),
            }
        }
    }
}

impl<T> Drop for Answers<T> {
    fn drop(&mut self) {
        if let Self::Pending(handle) = self {
            handle.abort();
        }
    }
}

/// The current time in Unix nanoseconds, as text (`opencdc.readAt`).
pub(crate) fn now_nanos() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}
