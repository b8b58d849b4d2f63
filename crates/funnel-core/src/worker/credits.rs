//! Credits: the records and bytes read but not yet released, bounded (I5).
//!
//! The reader takes credits for every batch it reads and waits while none are left; the
//! ledger gives them back as it releases records (written everywhere, filtered or in
//! the DLQ), before their positions are committed and acked. The reader may
//! overshoot by one batch: it only checks that some room is left before reading.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Records and bytes in flight, bounded.
pub(super) struct Credits {
    max_records: usize,
    max_bytes: usize,
    used: Mutex<(usize, usize)>,
    notify: Notify,
}

impl Credits {
    /// At most `max_records` records and `max_bytes` bytes (each at least 1).
    pub(super) fn new(max_records: usize, max_bytes: usize) -> Self {
        Self {
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
            used: Mutex::new((0, 0)),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (usize, usize)> {
        // Critical sections only add and subtract: a poisoned lock is still usable.
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while another batch may be read.
    pub(super) fn has_room(&self) -> bool {
        let used = self.lock();
        used.0 < self.max_records && used.1 < self.max_bytes
    }

    /// The records and bytes that may still be taken before the credits run out. Only
    /// the ledger gives credits back, so the room can only grow until the caller
    /// takes some.
    pub(super) fn room(&self) -> (usize, usize) {
        let used = self.lock();
        (
            self.max_records.saturating_sub(used.0),
            self.max_bytes.saturating_sub(used.1),
        )
    }

    /// At most this many records are read into one batch by joining reads that are
    /// ready at once: a quarter of the records in flight, so that several batches
    /// still overlap.
    pub(super) fn join_limit(&self) -> usize {
        (self.max_records / 4).max(1)
    }

    /// Waits until another batch may be read.
    pub(super) async fn available(&self) {
        loop {
            let notified = self.notify.notified();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// Takes credits for a batch just read.
    pub(super) fn take(&self, records: usize, bytes: usize) {
        let mut used = self.lock();
        used.0 += records;
        used.1 += bytes;
    }

    /// Gives back the credits of released records.
    pub(super) fn give_back(&self, records: usize, bytes: usize) {
        {
            let mut used = self.lock();
            used.0 = used.0.saturating_sub(records);
            used.1 = used.1.saturating_sub(bytes);
        }
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_run_out_at_either_bound_and_come_back_when_given_back() {
        let credits = Credits::new(10, 100);
        credits.take(9, 10);
        assert!(credits.has_room());
        credits.take(1, 0);
        assert!(!credits.has_room(), "10 records of 10");
        credits.give_back(5, 0);
        assert!(credits.has_room());
        credits.take(0, 95);
        assert!(!credits.has_room(), "105 bytes of 100");
        credits.give_back(100, 1_000);
        assert!(credits.has_room(), "giving back more than taken saturates");
        credits.take(5, 50);
        assert_eq!(credits.room(), (5, 50));
        credits.take(6, 0);
        assert_eq!(credits.room(), (0, 50), "room never goes below nothing");
    }

    #[tokio::test]
    async fn a_reader_waiting_for_credits_wakes_when_they_are_given_back() {
        let credits = std::sync::Arc::new(Credits::new(1, 100));
        credits.take(1, 1);
        let waiter = tokio::spawn({
            let credits = std::sync::Arc::clone(&credits);
            async move { credits.available().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        credits.give_back(1, 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
    }
}
