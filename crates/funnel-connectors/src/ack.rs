//! The acknowledgement queue the destinations share.
//!
//! Writers push acks in write order; [`AckQueue::next`] waits until there is at least
//! one and takes every ack queued so far, so the engine never receives an empty list.
//! Once the queue has failed, `next` returns the failure (after the acks that were
//! queued before it); once it is closed (the destination was torn down), `next`
//! returns an error instead of waiting for acks that will never come.

use std::collections::VecDeque;
use std::sync::Mutex;

use funnel_core::{ConnectorError, DestinationAck};
use funnel_record::Record;
use tokio::sync::Notify;

/// Acks in write order, and the error that stopped the writer, if any.
#[derive(Default)]
pub(crate) struct AckQueue {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    acks: VecDeque<DestinationAck>,
    failure: Option<String>,
    /// Set by `close`: why no more acks will come.
    closed: Option<String>,
}

impl AckQueue {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Queues acks after those already queued.
    pub(crate) fn push(&self, acks: impl IntoIterator<Item = DestinationAck>) {
        self.lock().acks.extend(acks);
        self.notify.notify_one();
    }

    /// Queues a positive ack for each of `records`, in order.
    pub(crate) fn push_ok(&self, records: &[Record]) {
        self.push(
            records
                .iter()
                .map(|record| DestinationAck::ok(record.position.clone())),
        );
    }

    /// Marks the queue failed: once the acks queued so far are taken, `next` returns
    /// `message` as a transient error.
    pub(crate) fn fail(&self, message: String) {
        self.lock().failure.get_or_insert(message);
        self.notify.notify_one();
    }

    /// Closes the queue: once the acks queued so far are taken, `next` (also one
    /// already waiting) returns `message` as a transient error.
    pub(crate) fn close(&self, message: String) {
        self.lock().closed.get_or_insert(message);
        self.notify.notify_one();
    }

    /// [`close`](Self::close) for the teardown of the destination `who`.
    #[cfg_attr(
        not(any(feature = "kafka", feature = "nats", feature = "redis", feature = "s3")),
        allow(dead_code)
    )]
    pub(crate) fn close_torn_down(&self, who: &str) {
        self.close(format!("{who}: the destination was torn down"));
    }

    /// The error that stopped the writer, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// `Ok` while the writer has not failed.
    ///
    /// # Errors
    ///
    /// The writer's failure, as a transient error: a write after it would be lost.
    #[cfg_attr(
        not(any(
            feature = "http",
            feature = "mqtt",
            feature = "nats",
            feature = "rabbitmq",
            feature = "s3"
        )),
        allow(dead_code)
    )]
    pub(crate) fn check(&self) -> Result<(), ConnectorError> {
        match self.failure() {
            Some(failure) => Err(ConnectorError::transient(failure)),
            None => Ok(()),
        }
    }

    /// Waits for acks and takes all that are queued. Cancel-safe: acks are taken only
    /// in the poll that returns them.
    ///
    /// # Errors
    ///
    /// A transient error when the writer failed or the queue is closed.
    pub(crate) async fn next(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        loop {
            {
                let mut state = self.lock();
                if !state.acks.is_empty() {
                    return Ok(state.acks.drain(..).collect());
                }
                if let Some(message) = state.failure.as_ref().or(state.closed.as_ref()) {
                    return Err(ConnectorError::transient(message.clone()));
                }
            }
            // `notify_one` stores a permit when nobody waits, so a push between the
            // check above and this await is not missed.
            self.notify.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves the queue consistent (every critical
        // section is a single push, drain or set), so a poisoned lock is still usable.
        crate::util::lock(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn check_passes_until_the_writer_fails_then_gives_its_failure() {
        let queue = AckQueue::new();
        assert!(queue.check().is_ok());
        queue.fail("broken pipe".to_owned());
        let error = queue.check().unwrap_err();
        assert!(!error.is_fatal());
        assert!(error.to_string().contains("broken pipe"));
    }

    #[tokio::test]
    async fn next_waits_for_acks_and_takes_them_all_in_order() {
        let queue = Arc::new(AckQueue::new());
        let waiter = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.next().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        queue.push([
            DestinationAck::ok("1".into()),
            DestinationAck::ok("2".into()),
        ]);
        let acks = waiter.await.unwrap().unwrap();
        assert_eq!(
            acks,
            [
                DestinationAck::ok("1".into()),
                DestinationAck::ok("2".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_failure_comes_after_the_acks_queued_before_it() {
        let queue = AckQueue::new();
        queue.push([DestinationAck::ok("1".into())]);
        queue.fail("disk full".into());
        assert_eq!(queue.next().await.unwrap().len(), 1);
        let error = queue.next().await.unwrap_err();
        assert_eq!(error.to_string(), "disk full");
    }

    #[tokio::test]
    async fn closing_ends_a_waiting_next_after_the_queued_acks() {
        let queue = Arc::new(AckQueue::new());
        queue.push([DestinationAck::ok("1".into())]);
        assert_eq!(queue.next().await.unwrap().len(), 1);
        let waiter = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.next().await }
        });
        queue.close("torn down".into());
        let error = waiter.await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "torn down");
        assert_eq!(queue.failure(), None, "closing is not a failure");
    }
}
