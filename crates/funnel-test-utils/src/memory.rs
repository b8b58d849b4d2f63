//! In-memory connectors.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use funnel_core::{
    ConnectorError, Destination, DestinationAck, ProcessedRecord, Processor, RecordError, Source,
};
use funnel_record::{Position, Record};
use tokio::sync::Notify;
use tracing::debug;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct SourceState {
    records: Vec<Record>,
    next: usize,
    acked: Vec<Position>,
    reads: usize,
    fail_read_at: Option<usize>,
    opened: bool,
    teardowns: usize,
    fail_open: bool,
}

/// A source serving a list of records in batches, checking that acks arrive in read
/// order, once each.
pub struct MemorySource {
    id: String,
    batch_size: usize,
    exhaust: bool,
    state: Mutex<SourceState>,
    notify: Notify,
}

impl MemorySource {
    /// A source of `records`, read `batch_size` at a time. When they run out, `read`
    /// waits for more (see [`exhausting`](Self::exhausting)).
    pub fn new(id: impl Into<String>, records: Vec<Record>, batch_size: usize) -> Self {
        Self {
            id: id.into(),
            batch_size: batch_size.max(1),
            exhaust: false,
            state: Mutex::new(SourceState {
                records,
                ..SourceState::default()
            }),
            notify: Notify::new(),
        }
    }

    /// Reports exhaustion once every record was read.
    pub fn exhausting(mut self) -> Self {
        self.exhaust = true;
        self
    }

    /// Fails the `n`-th read (counting from 1) with a transient error.
    pub fn fail_read_at(self, n: usize) -> Self {
        lock(&self.state).fail_read_at = Some(n);
        self
    }

    /// Fails `open`.
    pub fn failing_open(self) -> Self {
        lock(&self.state).fail_open = true;
        self
    }

    /// Adds records to serve.
    pub fn push(&self, records: impl IntoIterator<Item = Record>) {
        lock(&self.state).records.extend(records);
        self.notify.notify_waiters();
    }

    /// Positions acked so far, in ack order.
    pub fn acked(&self) -> Vec<Position> {
        lock(&self.state).acked.clone()
    }

    /// Number of records read so far.
    pub fn read_count(&self) -> usize {
        lock(&self.state).next
    }

    /// Times `teardown` was called.
    pub fn teardowns(&self) -> usize {
        lock(&self.state).teardowns
    }

    /// True while opened and not torn down.
    pub fn is_open(&self) -> bool {
        lock(&self.state).opened
    }

    /// Simulates a restart: reading resumes after the last acked record.
    pub fn restart(&self) {
        let mut s = lock(&self.state);
        s.next = s.acked.len();
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let mut s = lock(&self.state);
        if s.fail_open {
            return Err(ConnectorError::transient("source refused to open"));
        }
        s.opened = true;
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = lock(&self.state);
                s.reads += 1;
                if s.fail_read_at == Some(s.reads) {
                    return Err(ConnectorError::transient("read failed"));
                }
                if s.next < s.records.len() {
                    let end = (s.next + self.batch_size).min(s.records.len());
                    let batch = s.records[s.next..end].to_vec();
                    s.next = end;
                    return Ok(Some(batch));
                }
                s.reads -= 1;
                if self.exhaust {
                    return Ok(None);
                }
            }
            notified.await;
        }
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        let mut s = lock(&self.state);
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
        let mut s = lock(&self.state);
        s.opened = false;
        s.teardowns += 1;
        drop(s);
        self.notify.notify_waiters();
        Ok(())
    }
}

/// Decides the ack of a written record: `None` acks it, an error nacks it.
pub type AckPlan = Arc<dyn Fn(&Record) -> Option<RecordError> + Send + Sync>;

#[derive(Default)]
struct DestinationState {
    written: Vec<Record>,
    pending: VecDeque<DestinationAck>,
    writes: usize,
    in_write: bool,
    concurrent_writes: bool,
    paused: bool,
    fail_write_at: Option<usize>,
    opened: bool,
    teardowns: usize,
    fail_open: bool,
}

/// A destination keeping what it was given, acking (or nacking) each record by plan.
pub struct MemoryDestination {
    id: String,
    plan: Option<AckPlan>,
    ack_chunk: usize,
    state: Mutex<DestinationState>,
    notify: Notify,
}

impl MemoryDestination {
    /// A destination acking every record.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            plan: None,
            ack_chunk: usize::MAX,
            state: Mutex::new(DestinationState::default()),
            notify: Notify::new(),
        }
    }

    /// Nacks the records for which `plan` returns an error.
    pub fn with_plan(mut self, plan: AckPlan) -> Self {
        self.plan = Some(plan);
        self
    }

    /// Returns at most `n` acks per `ack` call.
    pub fn ack_chunk(mut self, n: usize) -> Self {
        self.ack_chunk = n.max(1);
        self
    }

    /// Fails the `n`-th write (counting from 1) with a transient error.
    pub fn fail_write_at(self, n: usize) -> Self {
        lock(&self.state).fail_write_at = Some(n);
        self
    }

    /// Fails `open`.
    pub fn failing_open(self) -> Self {
        lock(&self.state).fail_open = true;
        self
    }

    /// Holds every ack back until [`resume`](Self::resume).
    pub fn pause(&self) {
        lock(&self.state).paused = true;
    }

    /// Releases held acks.
    pub fn resume(&self) {
        lock(&self.state).paused = false;
        self.notify.notify_waiters();
    }

    /// Everything written, in order.
    pub fn written(&self) -> Vec<Record> {
        lock(&self.state).written.clone()
    }

    /// Number of `write` calls.
    pub fn writes(&self) -> usize {
        lock(&self.state).writes
    }

    /// True if two writes ever overlapped.
    pub fn saw_concurrent_writes(&self) -> bool {
        lock(&self.state).concurrent_writes
    }

    /// True while opened and not torn down.
    pub fn is_open(&self) -> bool {
        lock(&self.state).opened
    }

    /// Times `teardown` was called.
    pub fn teardowns(&self) -> usize {
        lock(&self.state).teardowns
    }
}

#[async_trait]
impl Destination for MemoryDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let mut s = lock(&self.state);
        if s.fail_open {
            return Err(ConnectorError::transient("destination refused to open"));
        }
        s.opened = true;
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        {
            let mut s = lock(&self.state);
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
        let mut s = lock(&self.state);
        for r in records {
            debug!(node_id = %self.id, position = %r.position, "got record");
            s.written.push(r.clone());
            let error = self.plan.as_ref().and_then(|plan| plan(r));
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
        loop {
            let notified = self.notify.notified();
            {
                let mut s = lock(&self.state);
                if !s.paused && !s.pending.is_empty() {
                    let n = s.pending.len().min(self.ack_chunk);
                    return Ok(s.pending.drain(..n).collect());
                }
                if !s.opened {
                    return Err(ConnectorError::transient("destination is closed"));
                }
            }
            notified.await;
        }
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let mut s = lock(&self.state);
        s.opened = false;
        s.teardowns += 1;
        drop(s);
        self.notify.notify_waiters();
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
