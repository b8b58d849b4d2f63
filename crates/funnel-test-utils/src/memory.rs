//! In-memory connectors.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use funnel_core::{
    ConnectorError, Destination, DestinationAck, ProcessedRecord, Processor, RecordError, Source,
};
use funnel_record::{Position, Record};
use tokio::sync::Notify;
use tracing::debug;

/// An in-memory connector: its state `S` ([`SourceState`] or [`DestinationState`])
/// behind a lock, whether it is open, and a wake-up for the calls waiting on it.
pub struct Memory<S> {
    id: String,
    state: Mutex<Locked<S>>,
    notify: Notify,
}

/// What is behind the lock: the connector's own state, and its open / teardown
/// bookkeeping.
struct Locked<S> {
    own: S,
    opened: bool,
    teardowns: usize,
    fail_open: bool,
}

impl<S> Deref for Locked<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.own
    }
}

impl<S> DerefMut for Locked<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.own
    }
}

impl<S> Memory<S> {
    fn with_state(id: impl Into<String>, own: S) -> Self {
        Self {
            id: id.into(),
            state: Mutex::new(Locked {
                own,
                opened: false,
                teardowns: 0,
                fail_open: false,
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Locked<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails `open`.
    pub fn failing_open(self) -> Self {
        self.lock().fail_open = true;
        self
    }

    /// True while opened and not torn down.
    pub fn is_open(&self) -> bool {
        self.lock().opened
    }

    /// Times `teardown` was called.
    pub fn teardowns(&self) -> usize {
        self.lock().teardowns
    }

    /// `open`: fails when [`failing_open`](Self::failing_open) (`what` refused to open).
    fn open_as(&self, what: &str) -> Result<(), ConnectorError> {
        let mut s = self.lock();
        if s.fail_open {
            return Err(ConnectorError::transient(format!("{what} refused to open")));
        }
        s.opened = true;
        Ok(())
    }

    /// `teardown`: closed, counted, and every waiting call woken.
    fn close(&self) {
        let mut s = self.lock();
        s.opened = false;
        s.teardowns += 1;
        drop(s);
        self.notify.notify_waiters();
    }

    /// Calls `step` until it returns something, waiting for a change in between.
    async fn wait_for<T>(&self, mut step: impl FnMut(&mut Locked<S>) -> Option<T>) -> T {
        loop {
            let notified = self.notify.notified();
            if let Some(done) = step(&mut self.lock()) {
                return done;
            }
            notified.await;
        }
    }
}

/// The state of a [`MemorySource`].
pub struct SourceState {
    records: Vec<Record>,
    next: usize,
    acked: Vec<Position>,
    reads: usize,
    fail_read_at: Option<usize>,
    batch_size: usize,
    exhaust: bool,
}

/// A source serving a list of records in batches, checking that acks arrive in read
/// order, once each.
pub type MemorySource = Memory<SourceState>;

impl MemorySource {
    /// A source of `records`, read `batch_size` at a time. When they run out, `read`
    /// waits for more (see [`exhausting`](Self::exhausting)).
    pub fn new(id: impl Into<String>, records: Vec<Record>, batch_size: usize) -> Self {
        Self::with_state(
            id,
            SourceState {
                records,
                next: 0,
                acked: Vec::new(),
                reads: 0,
                fail_read_at: None,
                batch_size: batch_size.max(1),
                exhaust: false,
            },
        )
    }

    /// Reports exhaustion once every record was read.
    pub fn exhausting(self) -> Self {
        self.lock().exhaust = true;
        self
    }

    /// Fails the `n`-th read (counting from 1) with a transient error.
    pub fn fail_read_at(self, n: usize) -> Self {
        self.lock().fail_read_at = Some(n);
        self
    }

    /// Adds records to serve.
    pub fn push(&self, records: impl IntoIterator<Item = Record>) {
        self.lock().records.extend(records);
        self.notify.notify_waiters();
    }

    /// Positions acked so far, in ack order.
    pub fn acked(&self) -> Vec<Position> {
        self.lock().acked.clone()
    }

    /// Number of records read so far.
    pub fn read_count(&self) -> usize {
        self.lock().next
    }

    /// Simulates a restart: reading resumes after the last acked record.
    pub fn restart(&self) {
        let mut s = self.lock();
        s.next = s.acked.len();
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn open(&self) -> Result<(), ConnectorError> {
        self.open_as("source")
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        self.wait_for(|s| {
            s.reads += 1;
            if s.fail_read_at == Some(s.reads) {
                return Some(Err(ConnectorError::transient("read failed")));
            }
            if s.next < s.records.len() {
                let end = (s.next + s.batch_size).min(s.records.len());
                let batch = s.records[s.next..end].to_vec();
                s.next = end;
                return Some(Ok(Some(batch)));
            }
            s.reads -= 1;
            s.exhaust.then_some(Ok(None))
        })
        .await
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        let mut s = self.lock();
        for p in positions {
            let index = s.acked.len();
            let expected = s.records.get(index).map(|r| r.position.clone());
            if expected.as_ref() != Some(p) {
                return Err(ConnectorError::internal(format!(
                    "ack out of order: expected {expected:?}, got {p:?}"
                )));
            }
            if index >= s.next {
                return Err(ConnectorError::internal(format!(
                    "ack of unread position {p:?}"
                )));
            }
            s.acked.push(p.clone());
            debug!(node_id = %self.id, position = %p, "received ack");
        }
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.close();
        Ok(())
    }
}

/// Decides the ack of a written record: `None` acks it, an error nacks it.
pub type AckPlan = Arc<dyn Fn(&Record) -> Option<RecordError> + Send + Sync>;

/// The state of a [`MemoryDestination`].
pub struct DestinationState {
    written: Vec<Record>,
    pending: VecDeque<DestinationAck>,
    writes: usize,
    in_write: bool,
    concurrent_writes: bool,
    paused: bool,
    fail_write_at: Option<usize>,
    plan: Option<AckPlan>,
    ack_chunk: usize,
}

/// A destination keeping what it was given, acking (or nacking) each record by plan.
pub type MemoryDestination = Memory<DestinationState>;

impl MemoryDestination {
    /// A destination acking every record.
    pub fn new(id: impl Into<String>) -> Self {
        Self::with_state(
            id,
            DestinationState {
                written: Vec::new(),
                pending: VecDeque::new(),
                writes: 0,
                in_write: false,
                concurrent_writes: false,
                paused: false,
                fail_write_at: None,
                plan: None,
                ack_chunk: usize::MAX,
            },
        )
    }

    /// Nacks the records for which `plan` returns an error.
    pub fn with_plan(self, plan: AckPlan) -> Self {
        self.lock().plan = Some(plan);
        self
    }

    /// Returns at most `n` acks per `ack` call.
    pub fn ack_chunk(self, n: usize) -> Self {
        self.lock().ack_chunk = n.max(1);
        self
    }

    /// Fails the `n`-th write (counting from 1) with a transient error.
    pub fn fail_write_at(self, n: usize) -> Self {
        self.lock().fail_write_at = Some(n);
        self
    }

    /// Holds every ack back until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    /// Releases held acks.
    pub fn resume(&self) {
        self.lock().paused = false;
        self.notify.notify_waiters();
    }

    /// Everything written, in order.
    pub fn written(&self) -> Vec<Record> {
        self.lock().written.clone()
    }

    /// Number of `write` calls.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// True if two writes ever overlapped.
    pub fn saw_concurrent_writes(&self) -> bool {
        self.lock().concurrent_writes
    }
}

#[async_trait]
impl Destination for MemoryDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        self.open_as("destination")
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        {
            let mut s = self.lock();
            s.writes += 1;
            if s.fail_write_at == Some(s.writes) {
                return Err(ConnectorError::transient("write failed"));
            }
            if s.in_write {
                s.concurrent_writes = true;
            }
            s.in_write = true;
        }
        tokio::task::yield_now().await;
        let mut s = self.lock();
        for r in records {
            debug!(node_id = %self.id, position = %r.position, "got record");
            s.written.push(r.clone());
            let error = s.plan.as_ref().and_then(|plan| plan(r));
            s.pending.push_back(DestinationAck {
                position: r.position.clone(),
                error,
            });
        }
        s.in_write = false;
        drop(s);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.wait_for(|s| {
            if !s.paused && !s.pending.is_empty() {
                let n = s.pending.len().min(s.ack_chunk);
                return Some(Ok(s.pending.drain(..n).collect()));
            }
            (!s.opened).then(|| Err(ConnectorError::transient("destination is closed")))
        })
        .await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.close();
        Ok(())
    }
}

/// A processor running a closure over each batch.
pub struct FnProcessor<F>(pub F);

#[async_trait]
impl<F> Processor for FnProcessor<F>
where
    F: FnMut(&[Record]) -> Vec<ProcessedRecord> + Send,
{
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        (self.0)(records)
    }
}
