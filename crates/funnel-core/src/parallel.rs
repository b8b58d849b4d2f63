//! `workers: N`: one processor run as N instances in parallel, output order kept.

use async_trait::async_trait;
use funnel_record::Record;

use crate::error::ConnectorError;
use crate::plugin::{ProcessedRecord, Processor};

/// N instances of one processor sharing its work, as a processor's `workers` setting
/// asks for.
///
/// Each batch is cut into up to N contiguous chunks of nearly equal size; instance `i`
/// always gets chunk `i`, and each chunk runs on its own Tokio task, so the instances
/// use several cores on a multi-threaded runtime. The results are joined back in chunk
/// order, so the output order is the input order whatever each instance takes. An
/// instance keeps its own state across batches (a script's globals, say); instances
/// share nothing.
///
/// Parallelism is within a batch: a batch of one record runs on the first instance.
/// In [`process_in_place`](Processor::process_in_place) (the engine's path) a chunk's
/// records move to its task and back; [`process`](Processor::process) copies them.
///
/// When an instance returns fewer results than its chunk had records (the "retry the
/// rest" answer), the results of the chunks after it are dropped, so the unanswered
/// records and everything after them are fed again, in order.
pub struct Parallel {
    instances: Vec<Option<Box<dyn Processor>>>,
}

impl Parallel {
    /// Runs `instances` in parallel. With one instance, it is called directly.
    ///
    /// # Panics
    ///
    /// When `instances` is empty.
    pub fn new(instances: Vec<Box<dyn Processor>>) -> Self {
        assert!(
            !instances.is_empty(),
            "Parallel needs at least one instance"
        );
        Self {
            instances: instances.into_iter().map(Some).collect(),
        }
    }

    /// Runs chunk `i` of `records` on instance `i`, each on its own task: the records
    /// move to the task and back (no copy), changed in place or not.
    async fn run_chunks(&mut self, records: &mut [Record]) -> Vec<ProcessedRecord> {
        let chunk_len = records.len().div_ceil(self.instances.len());
        let mut handles = Vec::with_capacity(self.instances.len());
        for (i, chunk) in records.chunks_mut(chunk_len).enumerate() {
            let mut instance = self.instances[i]
                .take()
                .unwrap_or_else(|| unreachable!("instance {i} is back after every call"));
            let mut chunk: Vec<Record> = chunk.iter_mut().map(std::mem::take).collect();
            handles.push(tokio::spawn(async move {
                let results = instance.process_in_place(&mut chunk).await;
                (instance, results, chunk)
            }));
        }
        let mut out = Vec::with_capacity(records.len());
        let mut complete = true;
        let mut panic = None;
        for ((i, handle), slot) in handles
            .into_iter()
            .enumerate()
            .zip(records.chunks_mut(chunk_len))
        {
            match handle.await {
                Ok((instance, results, chunk)) => {
                    self.instances[i] = Some(instance);
                    for (place, record) in slot.iter_mut().zip(chunk) {
                        *place = record;
                    }
                    if complete {
                        complete = results.len() >= slot.len();
                        out.extend(results.into_iter().take(slot.len()));
                    }
                }
                Err(e) => panic = Some(e),
            }
        }
        if let Some(e) = panic {
            // An instance panicked: behave as if it had panicked on the caller's task.
            std::panic::resume_unwind(e.into_panic());
        }
        out
    }

    fn instance(&mut self, i: usize) -> &mut Box<dyn Processor> {
        self.instances[i]
            .as_mut()
            .unwrap_or_else(|| unreachable!("instance {i} is back after every call"))
    }
}

#[async_trait]
impl Processor for Parallel {
    async fn open(&mut self) -> Result<(), ConnectorError> {
        for i in 0..self.instances.len() {
            self.instance(i).open().await?;
        }
        Ok(())
    }

    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        if self.instances.len() == 1 || records.len() < 2 {
            return self.instance(0).process(records).await;
        }
        // The tasks need records of their own: copies.
        let mut owned = records.to_vec();
        self.run_chunks(&mut owned).await
    }

    async fn process_in_place(&mut self, records: &mut [Record]) -> Vec<ProcessedRecord> {
        if self.instances.len() == 1 || records.len() < 2 {
            return self.instance(0).process_in_place(records).await;
        }
        self.run_chunks(records).await
    }

    async fn teardown(&mut self) -> Result<(), ConnectorError> {
        let mut first = None;
        for i in 0..self.instances.len() {
            if let Err(e) = self.instance(i).teardown().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
