//! Small helpers shared by the connectors.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use funnel_core::ConnectorError;

/// A spawned task that is aborted when this is dropped: a connector dropped without a
/// teardown, or a task replaced by a new `open`, stops its background work.
#[cfg(any(feature = "nats", feature = "redis", feature = "s3"))]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

#[cfg(any(feature = "nats", feature = "redis", feature = "s3"))]
impl AbortOnDrop {
    /// Aborts the task now.
    pub(crate) fn abort(&self) {
        self.0.abort();
    }
}

#[cfg(any(feature = "nats", feature = "redis", feature = "s3"))]
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The error of a call (`read`, `write`) to connector `who` while it is not open:
/// before `open` or after `teardown`. Transient: a restarted pipeline opens it again.
#[cfg_attr(
    not(any(feature = "http", feature = "nats", feature = "redis", feature = "s3")),
    allow(dead_code)
)]
pub(crate) fn not_open(who: &str, call: &str) -> ConnectorError {
    ConnectorError::transient(format!("{who}: {call} before open or after teardown"))
}

/// What source `who`'s reader task sends next through `queue` (`None`: not open).
///
/// # Errors
///
/// The source is not open, or was torn down (the task is gone), or the error the task
/// sent.
#[cfg(any(feature = "nats", feature = "redis", feature = "s3"))]
pub(crate) async fn next_from<T>(
    queue: Option<&mut tokio::sync::mpsc::Receiver<Result<T, ConnectorError>>>,
    who: &str,
) -> Result<T, ConnectorError> {
    let Some(rx) = queue else {
        return Err(not_open(who, "read"));
    };
    rx.recv()
        .await
        .ok_or_else(|| ConnectorError::transient(format!("{who}: the source was torn down")))?
}

/// The output of `future`, unless `stop` (the teardown of source `who`) comes first:
/// then a transient "torn down" error. Stop wins when both are ready.
#[cfg(any(feature = "mqtt", feature = "rabbitmq"))]
pub(crate) async fn unless_stopped<T>(
    stop: &tokio_util::sync::CancellationToken,
    future: impl std::future::Future<Output = T>,
    who: &str,
) -> Result<T, ConnectorError> {
    tokio::select! {
        biased;
        () = stop.cancelled() => Err(ConnectorError::transient(format!("{who}: torn down"))),
        output = future => Ok(output),
    }
}

/// Installs ring as the process's default rustls provider, for clients that build their
/// TLS configuration from the default (async-nats, redis-rs). Several providers are
/// compiled into the workspace, so none is the default until one is installed; a second
/// install is refused, which changes nothing.
#[cfg(any(feature = "nats", feature = "redis"))]
pub(crate) fn install_default_crypto_provider() {
    // ring's provider is deprecated only for lacking post-quantum key exchange; it is
    // the one every connector here uses.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Locks `mutex`, using a poisoned one as it is: the connectors' critical sections
/// (a push, a pop, an assignment) leave their data consistent even when a panic cuts
/// one short.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `n` as decimal ASCII into `buf` and returns the digits (no allocation).
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        // A digit: `n % 10` is below 10.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The decimal texts of `count` numbers, written into one buffer: one allocation per
/// batch instead of one per record; each text is a `Bytes` slice of the buffer.
pub(crate) fn decimal_slices(numbers: impl Iterator<Item = u64>, count: usize) -> DecimalSlices {
    let mut buf = Vec::with_capacity(count * 20);
    let mut ends = Vec::with_capacity(count);
    let mut digits = [0u8; 20];
    for n in numbers {
        buf.extend_from_slice(decimal(n, &mut digits));
        ends.push(buf.len());
    }
    DecimalSlices {
        bytes: Bytes::from(buf),
        ends: ends.into_iter(),
        start: 0,
    }
}

/// The texts made by [`decimal_slices`], in order.
pub(crate) struct DecimalSlices {
    bytes: Bytes,
    ends: std::vec::IntoIter<usize>,
    start: usize,
}

impl Iterator for DecimalSlices {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let end = self.ends.next()?;
        let text = self.bytes.slice(self.start..end);
        self.start = end;
        Some(text)
    }
}

/// The current time as Unix nanoseconds (0 for a clock before 1970).
pub(crate) fn unix_nanos_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "nats", feature = "redis", feature = "s3"))]
    #[tokio::test]
    async fn next_from_says_not_open_torn_down_or_the_tasks_error() {
        let message = |r: Result<u8, ConnectorError>| r.unwrap_err().to_string();
        assert!(message(next_from(None, "s").await).contains("s: read before open"));
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tx.send(Ok(1)).await.unwrap();
        tx.send(Err(ConnectorError::transient("broken")))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(next_from(Some(&mut rx), "s").await.unwrap(), 1);
        assert!(message(next_from(Some(&mut rx), "s").await).contains("broken"));
        assert!(
            message(next_from(Some(&mut rx), "s").await).contains("s: the source was torn down")
        );
    }

    #[test]
    fn decimal_writes_numbers_like_display() {
        let mut buf = [0; 20];
        for n in [0, 1, 9, 10, 12345, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn decimal_slices_are_the_numbers_in_order() {
        let texts: Vec<Bytes> = decimal_slices([7, 10, 0, 123].into_iter(), 4).collect();
        assert_eq!(
            texts,
            ["7", "10", "0", "123"].map(|t| Bytes::from_static(t.as_bytes()))
        );
    }
}
