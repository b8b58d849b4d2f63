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
/// A chunk's records are cloned to hand them to its task (the processor trait lends
/// records, and a task needs its own).
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
        let n = self.instances.len();
        if n == 1 || records.len() < 2 {
            return self.instance(0).process(records).await;
        }
        let chunk_len = records.len().div_ceil(n);
        let mut handles = Vec::with_capacity(n);
        for (i, chunk) in records.chunks(chunk_len).enumerate() {
            let mut instance = self.instances[i]
                .take()
                .unwrap_or_else(|| unreachable!("instance {i} is back after every call"));
            let chunk = chunk.to_vec();
            handles.push(tokio::spawn(async move {
                let results = instance.process(&chunk).await;
                (instance, results, chunk.len())
            }));
        }
        let mut out = Vec::with_capacity(records.len());
        let mut complete = true;
        let mut panic = None;
        for (i, handle) in handles.into_iter().enumerate() {
            match handle.await {
                Ok((instance, results, asked)) => {
                    self.instances[i] = Some(instance);
                    if complete {
                        complete = results.len() >= asked;
                        out.extend(results.into_iter().take(asked));
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
