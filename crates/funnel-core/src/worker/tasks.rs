//! The tasks of a worker, in pipeline shape: the source, the trunk processors, and per
//! branch its processors and destination; plus the DLQ. Opened in that order, closed
//! in that order, rolled back in reverse when an open fails.

use std::sync::Arc;

use tracing::error;

use crate::dlq::Dlq;
use crate::error::{Error, Result};
use crate::order::Order;
use crate::plugin::Source;
use crate::task::{DestinationTask, ProcessorTask, SourceTask, Task};
use crate::telemetry::Binding;

/// One branch: the destination's own processors, then the destination (shared by the
/// branch's writer and ack reader).
pub(super) struct BranchTasks {
    pub(super) processors: Vec<ProcessorTask>,
    pub(super) destination: Arc<DestinationTask>,
}

/// Every task of a worker.
pub(super) struct Tasks {
    pub(super) source: SourceTask,
    pub(super) trunk: Vec<ProcessorTask>,
    pub(super) branches: Vec<BranchTasks>,
    pub(super) dlq: Dlq,
}

/// The source, torn down at most once whatever happens to its task.
pub(super) struct SourceHandle {
    id: String,
    source: Arc<dyn Source>,
    torn_down: bool,
}

impl SourceHandle {
    pub(super) fn new(id: String, source: Arc<dyn Source>) -> Self {
        Self {
            id,
            source,
            torn_down: false,
        }
    }

    /// Tears the source down, unless that was done already.
    pub(super) async fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        let torn_down = self.source.teardown().await;
        torn_down.map_err(|source| Error::Teardown {
            task: self.id.clone(),
            source,
        })?;
        self.torn_down = true;
        Ok(())
    }
}

impl Tasks {
    /// `tasks` in the shape `order` gives them, bound to `pipeline`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOrder`] when the order is not a valid pipeline.
    pub(super) fn new(
        tasks: Vec<Task>,
        order: &Order,
        mut dlq: Dlq,
        pipeline: Binding<'_>,
    ) -> Result<Self> {
        let topology = order.topology(&tasks)?;
        let mut tasks: Vec<Option<Task>> = tasks
            .into_iter()
            .map(|mut t| {
                t.bind_pipeline(pipeline);
                Some(t)
            })
            .collect();
        dlq.bind_pipeline(pipeline);
        let mut take_processor = |i: usize| match tasks[i].take() {
            Some(Task::Processor(p)) => Ok(p),
            _ => Err(Error::InvalidOrder(format!("task {i} must be a processor"))),
        };
        let trunk = topology
            .trunk
            .iter()
            .map(|&i| take_processor(i))
            .collect::<Result<Vec<_>>>()?;
        let mut branches = Vec::with_capacity(topology.branches.len());
        for branch in &topology.branches {
            let processors = branch
                .processors
                .iter()
                .map(|&i| take_processor(i))
                .collect::<Result<Vec<_>>>()?;
            branches.push((processors, branch.destination));
        }
        let branches = branches
            .into_iter()
            .map(|(processors, d)| match tasks[d].take() {
                Some(Task::Destination(destination)) => Ok(BranchTasks {
                    processors,
                    destination: Arc::new(destination),
                }),
                _ => Err(Error::InvalidOrder(format!(
                    "task {d} must be a destination"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let source = match tasks[0].take() {
            Some(Task::Source(s)) => s,
            _ => return Err(Error::InvalidOrder("first task must be a source".into())),
        };
        Ok(Self {
            source,
            trunk,
            branches,
            dlq,
        })
    }

    /// IDs of the tasks in open order: source, trunk processors, then per branch its
    /// processors and destination.
    pub(super) fn ids(&self) -> Vec<String> {
        let mut ids = vec![self.source.id().to_owned()];
        ids.extend(self.trunk.iter().map(|p| p.id().to_owned()));
        for b in &self.branches {
            ids.extend(b.processors.iter().map(|p| p.id().to_owned()));
            ids.push(b.destination.id().to_owned());
        }
        ids
    }

    /// Opens every task, then the DLQ. On failure, what was opened is closed again in
    /// reverse order, and `source` torn down (also when the source's own open failed).
    pub(super) async fn open(&mut self, source: &mut SourceHandle) -> Result<()> {
        if let Err(e) = self.source.open().await {
            self.rollback(0, 0, source).await;
            return Err(e);
        }
        for i in 0..self.trunk.len() {
            if let Err(e) = self.trunk[i].open().await {
                self.rollback(i, 0, source).await;
                return Err(e);
            }
        }
        let trunk = self.trunk.len();
        for b in 0..self.branches.len() {
            for i in 0..self.branches[b].processors.len() {
                if let Err(e) = self.branches[b].processors[i].open().await {
                    close_processors(&mut self.branches[b].processors[..i]).await;
                    self.rollback(trunk, b, source).await;
                    return Err(e);
                }
            }
            if let Err(e) = self.branches[b].destination.open().await {
                close_processors(&mut self.branches[b].processors).await;
                self.rollback(trunk, b, source).await;
                return Err(e);
            }
        }
        if let Err(e) = self.dlq.open().await {
            self.rollback(trunk, self.branches.len(), source).await;
            return Err(e);
        }
        Ok(())
    }

    /// Closes the first `trunk` trunk processors and the first `branches` branches,
    /// in reverse order, then tears the source down. Errors are only logged.
    async fn rollback(&mut self, trunk: usize, branches: usize, source: &mut SourceHandle) {
        for b in self.branches[..branches].iter_mut().rev() {
            if let Err(e) = b.destination.close().await {
                error!(error = %e, "failed to execute rollback");
            }
            close_processors(&mut b.processors).await;
        }
        close_processors(&mut self.trunk[..trunk]).await;
        if let Err(e) = source.teardown().await {
            error!(error = %e, "failed to execute rollback");
        }
    }

    /// Closes processors and destinations in open order, then the DLQ, collecting
    /// every failure into `errors`.
    pub(super) async fn close(&mut self, errors: &mut Vec<Error>) {
        for p in &mut self.trunk {
            if let Err(e) = p.close().await {
                errors.push(e);
            }
        }
        for b in &mut self.branches {
            for p in &mut b.processors {
                if let Err(e) = p.close().await {
                    errors.push(e);
                }
            }
            if let Err(e) = b.destination.close().await {
                errors.push(e);
            }
        }
        if let Err(e) = self.dlq.close().await {
            errors.push(e);
        }
    }
}

async fn close_processors(processors: &mut [ProcessorTask]) {
    for p in processors.iter_mut().rev() {
        if let Err(e) = p.close().await {
            error!(error = %e, "failed to execute rollback");
        }
    }
}
