//! [`Order`]: which task runs after which.

use crate::error::{Error, Result};
use crate::task::Task;

/// The order of a pipeline's tasks: entry `i` lists the tasks that run after task `i`.
/// No entry means task `i` is last; several mean parallel branches (fan-out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Order(pub Vec<Vec<usize>>);

impl Order {
    /// An order from its entries.
    pub fn new(next: Vec<Vec<usize>>) -> Self {
        Self(next)
    }

    /// A linear order of `n` tasks: 0 -> 1 -> ... -> n-1.
    pub fn linear(n: usize) -> Self {
        Self(
            (0..n)
                .map(|i| if i + 1 < n { vec![i + 1] } else { Vec::new() })
                .collect(),
        )
    }

    /// Appends `next` after the last task of this order: the last task is linked to
    /// the first of `next`, whose indices are shifted past this order's tasks.
    pub fn append_order(mut self, next: Order) -> Order {
        if self.0.is_empty() {
            return next;
        }
        let len = self.0.len();
        if let Some(last) = self.0.last_mut() {
            last.push(len);
        }
        self.0.extend(next.increase(len).0);
        self
    }

    /// Appends one task whose next tasks are `next`, linked after the last task.
    pub fn append_single(mut self, next: Vec<usize>) -> Order {
        if self.0.is_empty() {
            return Order(vec![next]);
        }
        let len = self.0.len();
        if let Some(last) = self.0.last_mut() {
            last.push(len);
        }
        self.0.push(next);
        self
    }

    /// Adds `incr` to every index.
    pub fn increase(self, incr: usize) -> Order {
        Order(
            self.0
                .into_iter()
                .map(|next| next.into_iter().map(|i| i + incr).collect())
                .collect(),
        )
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the order against `tasks` and returns its shape.
    ///
    /// The first task must be the only source; every other task must follow exactly
    /// one task (so each appears once and there is no cycle); every leaf must be a
    /// destination and every destination a leaf. Fan-out may happen once, after the
    /// source and the pipeline's processors; each branch is processors then one
    /// destination.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOrder`] naming the first problem found.
    pub(crate) fn topology(&self, tasks: &[Task]) -> Result<Topology> {
        let invalid = |m: String| Err(Error::InvalidOrder(m));
        if self.0.len() != tasks.len() {
            return invalid(format!(
                "order has {} entries for {} tasks",
                self.0.len(),
                tasks.len()
            ));
        }
        match tasks.first() {
            Some(Task::Source(_)) => {}
            Some(t) => return invalid(format!("first task must be a source task, got {}", t.id())),
            None => return invalid("no tasks".into()),
        }
        let mut parent: Vec<Option<usize>> = vec![None; tasks.len()];
        for (i, next) in self.0.iter().enumerate() {
            for &n in next {
                if n >= tasks.len() {
                    return invalid(format!(
                        "task {} is followed by unknown task {n}",
                        tasks[i].id()
                    ));
                }
                if n == 0 || parent[n].is_some() {
                    return invalid(format!(
                        "task {} included multiple times in order",
                        tasks[n].id()
                    ));
                }
                parent[n] = Some(i);
            }
        }
        for (i, task) in tasks.iter().enumerate().skip(1) {
            if parent[i].is_none() {
                return invalid(format!(
                    "task {} is not reachable from the source",
                    task.id()
                ));
            }
            if matches!(task, Task::Source(_)) {
                return invalid(format!(
                    "task {} is a source; only the first task may be one",
                    task.id()
                ));
            }
        }
        for (i, task) in tasks.iter().enumerate() {
            let leaf = self.0[i].is_empty();
            let destination = matches!(task, Task::Destination(_));
            if leaf && !destination {
                return invalid(format!("last task {} must be a destination", task.id()));
            }
            if destination && !leaf {
                return invalid(format!("destination {} must be a last task", task.id()));
            }
        }
        // Walk the trunk: the source, then processors with a single next task.
        let mut trunk = Vec::new();
        let mut node = 0;
        loop {
            let next = &self.0[node];
            if next.len() != 1 || matches!(tasks[next[0]], Task::Destination(_)) {
                break;
            }
            node = next[0];
            trunk.push(node);
        }
        let mut branches = Vec::new();
        for &head in &self.0[node] {
            let mut processors = Vec::new();
            let mut n = head;
            loop {
                match self.0[n].len() {
                    0 => break,
                    1 => {
                        processors.push(n);
                        n = self.0[n][0];
                    }
                    _ => {
                        return invalid(format!(
                            "task {} fans out inside a branch; fan-out is supported once, \
                             before the destinations' own processors",
                            tasks[n].id()
                        ));
                    }
                }
            }
            branches.push(Branch {
                processors,
                destination: n,
            });
        }
        Ok(Topology { trunk, branches })
    }
}

/// The validated shape of an order: source (task 0), trunk processors, branches.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Topology {
    /// Processors after the source, before any fan-out, in order.
    pub(crate) trunk: Vec<usize>,
    /// One per destination.
    pub(crate) branches: Vec<Branch>,
}

/// One branch: processors, then a destination.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Branch {
    pub(crate) processors: Vec<usize>,
    pub(crate) destination: usize,
}
