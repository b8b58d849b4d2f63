//! The stop-and-wait reference executor: Conduit's synchronous worker, one batch at a
//! time, driving the very same tasks as the pipelined [`Worker`](funnel_core::Worker).
//!
//! Each batch is read, then handed depth first through the task tree: after every
//! task a tainted batch is cut into sub-batches that are handled in order, each to the
//! end (written, acked or sent to the DLQ) before the next one starts. Split pieces
//! and fan-out copies are counted per source record, which is released to the source
//! (or the DLQ) once every copy of every piece is done, strictly in read order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use funnel_core::{
    Batch, Dlq, Error, NackedRecord, Order, RecordError, RecordFlag, RetryHistory, RetryLimits,
    Source, Task,
};
use funnel_record::Position;
use futures::future::BoxFuture;

struct Slot {
    position: Position,
    tokens: i64,
    nack: Option<NackedRecord>,
}

/// The reference executor.
pub struct Reference {
    tasks: Vec<Task>,
    order: Order,
    dlq: Dlq,
    limits: RetryLimits,
    source: Arc<dyn Source>,
    front: u64,
    slots: VecDeque<Slot>,
    refused: Option<NackedRecord>,
}

impl Reference {
    /// An executor of `tasks` in `order` (task 0 must be a source).
    ///
    /// # Panics
    ///
    /// When task 0 is not a source.
    pub fn new(tasks: Vec<Task>, order: Order, dlq: Dlq, limits: RetryLimits) -> Self {
        let source = match &tasks[0] {
            Task::Source(s) => Arc::clone(s.source()),
            _ => panic!("task 0 must be a source"),
        };
        Self {
            tasks,
            order,
            dlq,
            limits,
            source,
            front: 0,
            slots: VecDeque::new(),
            refused: None,
        }
    }

    /// The nacked record the DLQ refused (its window, its threshold or its
    /// destination), which ended the run: nothing after it was handed on further.
    pub fn refused(&self) -> Option<&NackedRecord> {
        self.refused.as_ref()
    }

    /// Reads and handles batches until the source is exhausted or something fails.
    ///
    /// # Errors
    ///
    /// The first error, as the seed would return it.
    pub async fn run(&mut self) -> Result<(), Error> {
        loop {
            let Task::Source(source) = &mut self.tasks[0] else {
                unreachable!("checked in new")
            };
            let Some(mut batch) = source.read().await? else {
                return Ok(());
            };
            if batch.is_empty() {
                continue;
            }
            // Records the source could not read are nacked by the source.
            batch.nack_unreadable();
            if self.slots.is_empty() {
                self.front = batch.origins()[0];
            }
            for r in batch.records() {
                self.slots.push_back(Slot {
                    position: r.position.clone(),
                    tokens: 1,
                    nack: None,
                });
            }
            self.after(0, batch, None).await?;
        }
    }

    fn slot(&mut self, origin: u64) -> &mut Slot {
        let i = usize::try_from(origin - self.front).unwrap_or(usize::MAX);
        &mut self.slots[i]
    }

    fn add_tokens(&mut self, batch: &Batch, per_entry: i64) {
        for &o in batch.origins() {
            self.slot(o).tokens += per_entry;
        }
    }

    async fn ack_all(&mut self, batch: Batch) -> Result<(), Error> {
        self.add_tokens(&batch, -1);
        self.release().await
    }

    async fn nack_all(&mut self, batch: Batch, task: Arc<str>) -> Result<(), Error> {
        for (p, &o) in batch.origins().iter().enumerate() {
            let nacked = NackedRecord {
                record: batch.dlq_record(p).clone(),
                error: batch.statuses()[p]
                    .error
                    .clone()
                    .unwrap_or_else(|| RecordError::msg("record was nacked without an error")),
                task: Arc::clone(&task),
            };
            let slot = self.slot(o);
            slot.tokens -= 1;
            if slot.nack.is_none() {
                slot.nack = Some(nacked);
            }
        }
        self.release().await
    }

    async fn release(&mut self) -> Result<(), Error> {
        while self.slots.front().is_some_and(|s| s.tokens == 0) {
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.front += 1;
            match slot.nack {
                None => {
                    self.dlq.ack(1);
                    self.ack_source(slot.position).await?;
                }
                Some(nacked) => {
                    let (written, result) = self.dlq.nack(std::slice::from_ref(&nacked)).await;
                    if written == 1 {
                        self.ack_source(slot.position).await?;
                    }
                    if let Err(e) = result {
                        // A single record: refused, as it was not written.
                        self.refused = Some(nacked);
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    async fn ack_source(&mut self, position: Position) -> Result<(), Error> {
        let source = Arc::clone(&self.source);
        source
            .ack(&[position])
            .await
            .map_err(|source| Error::SourceAck {
                task: "source".into(),
                count: 1,
                source,
            })
    }

    fn run_node(
        &mut self,
        node: usize,
        mut batch: Batch,
        history: Option<RetryHistory>,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            match &mut self.tasks[node] {
                Task::Processor(p) => {
                    let before = counts(&batch);
                    p.process(&mut batch).await?;
                    let after = counts(&batch);
                    for (o, n) in after {
                        let delta = n - before.get(&o).copied().unwrap_or(0);
                        self.slot(o).tokens += delta;
                    }
                }
                Task::Destination(d) => d.process(&mut batch).await?,
                Task::Source(_) => {}
            }
            self.after(node, batch, history).await
        })
    }

    fn after(
        &mut self,
        node: usize,
        batch: Batch,
        history: Option<RetryHistory>,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let last = self.order.0[node].is_empty();
            if !batch.is_tainted() {
                if last || !batch.has_active_records() {
                    return self.ack_all(batch).await;
                }
                return self.advance(node, batch).await;
            }
            let id: Arc<str> = Arc::from(self.tasks[node].id());
            for (flag, mut group) in batch.into_sub_batches() {
                match flag {
                    RecordFlag::Ack | RecordFlag::Filter => {
                        if last || !group.has_active_records() {
                            self.ack_all(group).await?;
                        } else {
                            self.advance(node, group).await?;
                        }
                    }
                    RecordFlag::Nack => self.nack_all(group, Arc::clone(&id)).await?,
                    RecordFlag::Retry => {
                        let next = RetryHistory::next(history, group.len(), self.limits, &id)?;
                        group.reset_for_retry();
                        self.run_node(node, group, Some(next)).await?;
                    }
                }
            }
            Ok(())
        })
    }

    async fn advance(&mut self, node: usize, batch: Batch) -> Result<(), Error> {
        let next = self.order.0[node].clone();
        if next.len() == 1 {
            return self.run_node(next[0], batch, None).await;
        }
        self.add_tokens(&batch, next.len() as i64 - 1);
        let mut first_error = None;
        for n in next {
            if let Err(e) = self.run_node(n, batch.clone(), None).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn counts(batch: &Batch) -> BTreeMap<u64, i64> {
    let mut m = BTreeMap::new();
    for &o in batch.origins() {
        *m.entry(o).or_insert(0) += 1;
    }
    m
}
