//! I4 under the default DLQ (window 1, nack threshold 0): a record nacked by the
//! source (unreadable) or by a trunk processor is refused by the DLQ and stops the
//! pipeline, and nothing read after it reaches any destination, exactly as the
//! stop-and-wait reference executor does it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use funnel_core::{
    DestinationTask, Dlq, Error, Order, ProcessorTask, RetryLimits, SourceTask, Task, Worker,
    WorkerConfig,
};
use funnel_record::{Position, metadata};
use funnel_test_utils::reference::Reference;
use funnel_test_utils::{MemoryDestination, MemorySource};

/// Who nacks record `s/2` of the five records `s/0`..`s/4`, read in one batch.
#[derive(Clone, Copy, Debug)]
enum Nacker {
    /// The source could not read it; no trunk processor.
    Source,
    /// The source could not read it; a trunk processor passes everything else.
    SourceBeforeAProcessor,
    /// A trunk processor nacks it.
    Processor,
}

/// What one run left behind.
#[derive(Debug, PartialEq)]
struct Outcome {
    error: String,
    fatal: bool,
    written: Vec<Vec<Position>>,
    dlq: usize,
    acked: Vec<Position>,
}

/// Source `s` -> trunk -> two destinations with a default DLQ, and the handles to
/// look at afterwards.
struct Built {
    tasks: Vec<Task>,
    order: Order,
    dlq: Dlq,
    source: Arc<MemorySource>,
    destinations: Vec<Arc<MemoryDestination>>,
    dlq_destination: Arc<MemoryDestination>,
}

fn build(nacker: Nacker) -> Built {
    let mut input = records("s", 5);
    if !matches!(nacker, Nacker::Processor) {
        input[2]
            .metadata
            .insert(metadata::READ_ERROR, "file in.txt: line 3 is too long");
        input[2].payload.after = None;
    }
    let source = Arc::new(MemorySource::new("s", input, 5).exhausting());
    let mut tasks: Vec<Task> = vec![SourceTask::new("source", source.clone()).into()];
    let trunk: Option<ProcessorTask> = match nacker {
        Nacker::Source => None,
        Nacker::SourceBeforeAProcessor => Some(nack_at(&[])),
        Nacker::Processor => Some(nack_at(&[2])),
    };
    tasks.extend(trunk.map(Task::from));
    let fan = tasks.len() - 1;
    let mut order = Order::linear(tasks.len());
    let destinations: Vec<Arc<MemoryDestination>> = (0..2)
        .map(|d| Arc::new(MemoryDestination::new(format!("dest-{d}"))))
        .collect();
    order.0[fan] = (0..destinations.len()).map(|d| fan + 1 + d).collect();
    for (d, dest) in destinations.iter().enumerate() {
        tasks.push(DestinationTask::new(format!("dest-{d}"), dest.clone()).into());
        order.0.push(Vec::new());
    }
    let dlq_destination = Arc::new(MemoryDestination::new("dlq"));
    let dlq = Dlq::new("dlq", dlq_destination.clone(), 1, 0);
    Built {
        tasks,
        order,
        dlq,
        source,
        destinations,
        dlq_destination,
    }
}

fn outcome(
    result: Result<(), Error>,
    source: &MemorySource,
    destinations: &[Arc<MemoryDestination>],
    dlq: &MemoryDestination,
) -> Outcome {
    let error = result.expect_err("the DLQ refuses the nack: the run fails");
    Outcome {
        error: error.to_string(),
        fatal: error.is_fatal(),
        written: destinations.iter().map(|d| written_positions(d)).collect(),
        dlq: dlq.written().len(),
        acked: source.acked(),
    }
}

/// One run, by the pipelined worker or by the reference executor.
async fn run(nacker: Nacker, pipelined: bool) -> Outcome {
    let built = build(nacker);
    let (tasks, order, dlq) = (built.tasks, built.order, built.dlq);
    let result = if pipelined {
        let mut worker = Worker::new(tasks, order, dlq, WorkerConfig::default()).unwrap();
        worker.open().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), worker.run())
            .await
            .expect("the run ended")
    } else {
        Reference::new(tasks, order, dlq, RetryLimits::default())
            .run()
            .await
    };
    outcome(
        result,
        &built.source,
        &built.destinations,
        &built.dlq_destination,
    )
}

/// Runs every kind of nacker `rounds` times on `runtime`, pipelined and by the
/// reference, and checks both stop at `s/2` with only `s/0` and `s/1` delivered.
fn check(runtime: &tokio::runtime::Runtime, rounds: usize) {
    for nacker in [
        Nacker::Source,
        Nacker::SourceBeforeAProcessor,
        Nacker::Processor,
    ] {
        let (error, task) = match nacker {
            Nacker::Processor => ("bad record 2", "proc"),
            _ => ("file in.txt: line 3 is too long", "source"),
        };
        let expected = Outcome {
            error: format!("{error} (the record at position \"s/2\", nacked by {task})"),
            fatal: false,
            written: vec![positions("s", 0..2); 2],
            dlq: 0,
            acked: positions("s", 0..2),
        };
        assert_eq!(
            runtime.block_on(run(nacker, false)),
            expected,
            "reference, {nacker:?}"
        );
        for round in 0..rounds {
            assert_eq!(
                runtime.block_on(run(nacker, true)),
                expected,
                "pipelined, {nacker:?}, round {round}"
            );
        }
    }
}

#[test]
fn under_the_default_dlq_nothing_after_a_record_nacked_at_the_read_or_by_a_trunk_processor_reaches_a_destination_on_one_thread()
 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    check(&runtime, 20);
}

#[test]
fn under_the_default_dlq_nothing_after_a_record_nacked_at_the_read_or_by_a_trunk_processor_reaches_a_destination_on_two_threads()
 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    check(&runtime, 200);
}
