//! The record inspector: copies of the records passing a connector or a processor,
//! for whoever watches, sampled and lossy by design.
//!
//! Every task holds a [`Tap`] for each point it can be watched at (a connector's
//! records; a processor's records in and out), taken from the process-wide
//! [`Inspector`] by component ID. A [`Subscription`] opens a session on a tap with a
//! bounded buffer of its own. The task hands each batch to its tap:
//!
//! - nobody watching: one relaxed atomic load per batch, nothing else;
//! - someone watching: each record is cloned into each session's buffer with
//!   `try_send`; a record that does not fit is dropped and counted in
//!   `funnel_inspector_dropped_records_total` (and Conduit's
//!   `conduit_inspector_dropped_records_total`). The pipeline never waits for a session.
//!
//! A session ends when its [`Subscription`] is dropped. Taps outlive the tasks that
//! feed them, so a session survives its pipeline's restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use funnel_record::Record;
use metrics::{Counter, counter, gauge};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::telemetry::{
    CONDUIT_INSPECTOR_DROPPED, CONDUIT_INSPECTOR_SESSIONS, INSPECTOR_DROPPED, INSPECTOR_SESSIONS,
};

/// Where records are watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    /// The records a source reads, or a destination is given to write.
    Connector,
    /// The records going into a processor.
    ProcessorIn,
    /// The records a processor hands on (filtered ones left out).
    ProcessorOut,
}

/// Records a session buffers when its client is slower than the pipeline; more are
/// dropped (Conduit's inspector buffers as many).
pub const SESSION_BUFFER: usize = 1000;

/// Every tap of the process, by component ID and point.
#[derive(Default)]
pub struct Inspector {
    taps: Mutex<HashMap<(String, Point), Arc<Tap>>>,
}

/// The process-wide inspector.
pub fn inspector() -> &'static Inspector {
    static INSPECTOR: OnceLock<Inspector> = OnceLock::new();
    INSPECTOR.get_or_init(Inspector::default)
}

impl Inspector {
    /// The tap of `component_id` at `point`, made on first use.
    pub fn tap(&self, component_id: &str, point: Point) -> Arc<Tap> {
        let mut taps = self.taps.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            taps.entry((component_id.to_owned(), point))
                .or_insert_with(|| Arc::new(Tap::new(component_id))),
        )
    }

    /// Opens a session on `component_id` at `point` buffering at most `buffer` records.
    pub fn subscribe(&self, component_id: &str, point: Point, buffer: usize) -> Subscription {
        self.tap(component_id, point).subscribe(buffer)
    }
}

/// One session's sending side.
struct Session {
    id: u64,
    tx: mpsc::Sender<Record>,
}

/// Where a task hands the records passing one point.
pub struct Tap {
    component_id: String,
    /// Open sessions: read on every batch, so nobody watching costs one load.
    watched: AtomicUsize,
    sessions: Mutex<Vec<Session>>,
    next_session: AtomicU64,
    dropped: Counter,
    conduit_dropped: Counter,
}

impl Tap {
    fn new(component_id: &str) -> Self {
        let labels = [("component_id", component_id.to_owned())];
        Self {
            component_id: component_id.to_owned(),
            watched: AtomicUsize::new(0),
            sessions: Mutex::new(Vec::new()),
            next_session: AtomicU64::new(0),
            dropped: counter!(INSPECTOR_DROPPED, &labels),
            conduit_dropped: counter!(CONDUIT_INSPECTOR_DROPPED, &labels),
        }
    }

    /// A tap nobody can watch, for tasks that are not inspected.
    pub fn unwatched() -> Arc<Self> {
        static NONE: OnceLock<Arc<Tap>> = OnceLock::new();
        Arc::clone(NONE.get_or_init(|| {
            Arc::new(Self {
                component_id: String::new(),
                watched: AtomicUsize::new(0),
                sessions: Mutex::new(Vec::new()),
                next_session: AtomicU64::new(0),
                dropped: Counter::noop(),
                conduit_dropped: Counter::noop(),
            })
        }))
    }

    /// Whether a session is open.
    #[inline]
    pub fn is_watched(&self) -> bool {
        self.watched.load(Ordering::Relaxed) > 0
    }

    /// Hands `records` to every open session, dropping what does not fit; never waits.
    #[inline]
    pub fn send(&self, records: &[Record]) {
        if self.is_watched() {
            self.send_watched(records);
        }
    }

    #[cold]
    fn send_watched(&self, records: &[Record]) {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dropped = 0u64;
        for session in sessions.iter() {
            for (i, record) in records.iter().enumerate() {
                match session.tx.try_send(record.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        // The rest of the batch would not fit either.
                        dropped += (records.len() - i) as u64;
                        break;
                    }
                    Err(TrySendError::Closed(_)) => break,
                }
            }
        }
        drop(sessions);
        if dropped > 0 {
            self.dropped.increment(dropped);
            self.conduit_dropped.increment(dropped);
        }
    }

    /// Opens a session buffering at most `buffer` records.
    pub fn subscribe(self: Arc<Self>, buffer: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Session { id, tx });
        let open = self.watched.fetch_add(1, Ordering::Relaxed) + 1;
        self.set_session_gauges(open);
        Subscription { rx, tap: self, id }
    }

    fn set_session_gauges(&self, open: usize) {
        let labels = [("component_id", self.component_id.clone())];
        gauge!(INSPECTOR_SESSIONS, &labels).set(open as f64);
        gauge!(CONDUIT_INSPECTOR_SESSIONS, &labels).set(open as f64);
    }
}

/// An open inspector session: the records of one point, as they pass.
pub struct Subscription {
    rx: mpsc::Receiver<Record>,
    tap: Arc<Tap>,
    id: u64,
}

impl Subscription {
    /// The next record, waiting for one.
    pub async fn recv(&mut self) -> Option<Record> {
        self.rx.recv().await
    }

    /// The component watched.
    pub fn component_id(&self) -> &str {
        &self.tap.component_id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.tap
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| s.id != self.id);
        let open = self.tap.watched.fetch_sub(1, Ordering::Relaxed) - 1;
        self.tap.set_session_gauges(open);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_record::Position;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                position: Position::from(i.to_string()),
                ..Record::default()
            })
            .collect()
    }

    #[test]
    fn an_unwatched_tap_keeps_nothing() {
        let tap = inspector().tap("inspect-test-unwatched", Point::Connector);
        assert!(!tap.is_watched());
        tap.send(&records(3));
        let mut session = Arc::clone(&tap).subscribe(10);
        assert!(tap.is_watched());
        assert!(
            session.rx.try_recv().is_err(),
            "a record sent before subscribing arrived"
        );
    }

    #[test]
    fn a_session_gets_copies_until_its_buffer_is_full_and_the_rest_are_dropped() {
        let tap = inspector().tap("inspect-test-full", Point::ProcessorIn);
        let mut session = Arc::clone(&tap).subscribe(4);
        tap.send(&records(3));
        tap.send(&records(3));
        let mut got = Vec::new();
        while let Ok(r) = session.rx.try_recv() {
            got.push(r.position.to_string());
        }
        assert_eq!(got, ["0", "1", "2", "0"]);
    }

    #[test]
    fn a_dropped_session_stops_the_copies() {
        let tap = inspector().tap("inspect-test-drop", Point::ProcessorOut);
        let first = Arc::clone(&tap).subscribe(4);
        let second = Arc::clone(&tap).subscribe(4);
        drop(first);
        assert!(tap.is_watched());
        drop(second);
        assert!(!tap.is_watched());
        assert!(tap.sessions.lock().unwrap().is_empty());
    }

    #[test]
    fn the_same_component_and_point_share_a_tap() {
        let a = inspector().tap("inspect-test-share", Point::Connector);
        let b = inspector().tap("inspect-test-share", Point::Connector);
        let c = inspector().tap("inspect-test-share", Point::ProcessorIn);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
