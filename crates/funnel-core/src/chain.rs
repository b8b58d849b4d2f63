//! Running a batch through a chain of processors with the seed's sub-batch rules.
//!
//! After each processor, a tainted batch is cut into sub-batches of compatible flags
//! and each is handled in order, depth first: ack/filter groups go on to the next
//! processor (or out of the chain), nack groups leave the chain for the DLQ, retry
//! groups are fed again to the same processor, within the bounds of [`RetryLimits`].
//! The output is the sequence of [`Segment`]s a stop-and-wait engine would have handed
//! on, in the order it would have handed them on.

use crate::batch::{Batch, RecordFlag};
use crate::error::{Error, Result};
use crate::task::ProcessorTask;

/// Bounds on retrying records a processor returned no result for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryLimits {
    /// Consecutive attempts that do not shrink the retried group before giving up
    /// (Conduit: 3).
    pub max_stall: u32,
    /// Attempts of one retry chain before giving up (Conduit: 10,000).
    pub max_attempts: u32,
}

impl Default for RetryLimits {
    fn default() -> Self {
        Self {
            max_stall: 3,
            max_attempts: 10_000,
        }
    }
}

/// The history of one retry chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryHistory {
    count: u32,
    size: usize,
    stall: u32,
}

impl RetryHistory {
    /// The history after one more retry of `size` records, given the previous one.
    /// The first retry is never judged; from the second on, an attempt that is not
    /// smaller than the one before counts as a stall.
    ///
    /// # Errors
    ///
    /// [`Error::RetryNotConverging`] (fatal) after `max_stall` stalls in a row or more
    /// than `max_attempts` attempts.
    pub fn next(
        previous: Option<RetryHistory>,
        size: usize,
        limits: RetryLimits,
        task: &str,
    ) -> Result<RetryHistory> {
        let Some(prev) = previous else {
            return Ok(RetryHistory {
                count: 1,
                size,
                stall: 0,
            });
        };
        let count = prev.count + 1;
        let stall = if size >= prev.size { prev.stall + 1 } else { 0 };
        if stall >= limits.max_stall {
            return Err(Error::RetryNotConverging {
                task: task.to_owned(),
                message: format!(
                    "{stall} attempts in a row did not shrink the retried records \
                     ({count} attempts, last sizes {} then {size})",
                    prev.size
                ),
            });
        }
        if count > limits.max_attempts {
            return Err(Error::RetryNotConverging {
                task: task.to_owned(),
                message: format!(
                    "retry exceeded the maximum of {} attempts ({size} records left)",
                    limits.max_attempts
                ),
            });
        }
        Ok(RetryHistory { count, size, stall })
    }
}

/// A piece of chain output.
#[derive(Debug)]
pub(crate) enum Segment {
    /// Records that went through every processor: on to the destinations. May hold
    /// filtered records.
    Deliver(Batch),
    /// Records done before the end of the chain (all filtered).
    Done(Batch),
    /// Records nacked by processor `task`.
    Nack(Batch, usize),
}

enum Work {
    /// Feed the batch to processor `index` (or emit it when past the last one).
    Run(usize, Batch, Option<RetryHistory>),
    /// Feed a retried group again to processor `index`, after checking the bounds.
    Retry(usize, Batch, Option<RetryHistory>),
    /// Hand a segment on.
    Emit(Segment),
}

/// Runs a batch just read through `tasks` (possibly none), appending the output to `out`:
/// records the source marked unreadable are nacked first (see [`Batch::nack_unreadable`]), as
/// by task `source` (an index past the processors naming the source), with the text of
/// that metadata as the error; the other records go through the chain in order.
///
/// # Errors
///
/// As [`run_chain`].
pub(crate) async fn run_read(
    tasks: &mut [ProcessorTask],
    mut batch: Batch,
    limits: RetryLimits,
    source: usize,
    out: &mut Vec<Segment>,
) -> std::result::Result<(), (u64, Error)> {
    if !batch.nack_unreadable() {
        if tasks.is_empty() {
            out.push(Segment::Deliver(batch));
            return Ok(());
        }
        return run_chain(tasks, batch, limits, out).await;
    }
    for (flag, group) in batch.into_sub_batches() {
        if flag == RecordFlag::Nack {
            out.push(Segment::Nack(group, source));
        } else {
            run_chain(tasks, group, limits, out).await?;
        }
    }
    Ok(())
}

/// Runs `batch` through `tasks` (possibly none), appending the output to `out`.
///
/// # Errors
///
/// A processor's error, with the origin of the first record that was not handed on.
/// What was appended to `out` before the error stays valid.
pub(crate) async fn run_chain(
    tasks: &mut [ProcessorTask],
    batch: Batch,
    limits: RetryLimits,
    out: &mut Vec<Segment>,
) -> std::result::Result<(), (u64, Error)> {
    // A stack keeps the depth-first order without recursion.
    let mut stack = vec![Work::Run(0, batch, None)];
    while let Some(work) = stack.pop() {
        let (index, mut batch, history) = match work {
            Work::Emit(segment) => {
                out.push(segment);
                continue;
            }
            Work::Run(index, batch, history) => (index, batch, history),
            Work::Retry(index, mut batch, previous) => {
                let origin = batch.origins().first().copied().unwrap_or_default();
                let history = RetryHistory::next(previous, batch.len(), limits, tasks[index].id())
                    .map_err(|e| (origin, e))?;
                batch.reset_for_retry();
                (index, batch, Some(history))
            }
        };
        if index == tasks.len() {
            out.push(if batch.has_active_records() {
                Segment::Deliver(batch)
            } else {
                Segment::Done(batch)
            });
            continue;
        }
        let origin = batch.origins().first().copied().unwrap_or_default();
        tasks[index]
            .process(&mut batch)
            .await
            .map_err(|e| (origin, e))?;
        if !batch.is_tainted() {
            stack.push(if batch.has_active_records() {
                Work::Run(index + 1, batch, None)
            } else {
                Work::Emit(Segment::Done(batch))
            });
            continue;
        }
        let groups = batch.into_sub_batches();
        // Pushed in reverse so the first group is handled first.
        for (flag, group) in groups.into_iter().rev() {
            stack.push(match flag {
                RecordFlag::Ack | RecordFlag::Filter if group.has_active_records() => {
                    Work::Run(index + 1, group, None)
                }
                RecordFlag::Ack | RecordFlag::Filter => Work::Emit(Segment::Done(group)),
                RecordFlag::Nack => Work::Emit(Segment::Nack(group, index)),
                RecordFlag::Retry => Work::Retry(index, group, history),
            });
        }
    }
    Ok(())
}
