//! The pipelined worker produces, per destination, for the DLQ and for the source
//! acks, exactly what the stop-and-wait reference executor produces (DESIGN.md I7).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use funnel_core::{
    DestinationTask, Dlq, Order, ProcessorTask, RetryLimits, SourceTask, Task, Worker, WorkerConfig,
};
use funnel_record::{Position, Record, metadata};
use funnel_test_utils::plan::{ORIGIN, PlanProcessor, Shape, destination_plan, scenario};
use funnel_test_utils::reference::Reference;
use funnel_test_utils::{MemoryDestination, MemorySource};
use proptest::prelude::*;

/// What runs: the tasks, their order and the DLQ.
struct Built {
    tasks: Vec<Task>,
    order: Order,
    dlq: Dlq,
}

/// What is looked at afterwards.
struct Handles {
    source: Arc<MemorySource>,
    destinations: Vec<Arc<MemoryDestination>>,
    dlq_destination: Arc<MemoryDestination>,
}

/// A processor task following its plan, named `id`.
fn plan_processor(id: String) -> Task {
    ProcessorTask::new(id.clone(), Box::new(PlanProcessor::new(id))).into()
}

fn build(shape: &Shape, records: &[Record]) -> (Built, Handles) {
    let source =
        Arc::new(MemorySource::new("src", records.to_vec(), shape.batch_size).exhausting());
    let mut tasks: Vec<Task> = vec![SourceTask::new("src", source.clone()).into()];
    let mut next: Vec<Vec<usize>> = vec![Vec::new()];
    for k in 0..shape.trunk {
        let i = tasks.len();
        next[i - 1].push(i);
        next.push(Vec::new());
        tasks.push(plan_processor(format!("p{k}")));
    }
    let fan = tasks.len() - 1;
    let mut destinations = Vec::new();
    for (b, has_processor) in shape.branches.iter().enumerate() {
        let mut parent = fan;
        if *has_processor {
            let i = tasks.len();
            next[parent].push(i);
            next.push(Vec::new());
            tasks.push(plan_processor(format!("b{b}")));
            parent = i;
        }
        let d = Arc::new(
            MemoryDestination::new(format!("dest-{b}"))
                .with_plan(destination_plan(b))
                .ack_chunk(shape.ack_chunk),
        );
        let i = tasks.len();
        next[parent].push(i);
        next.push(Vec::new());
        tasks.push(DestinationTask::new(format!("dest-{b}"), d.clone()).into());
        destinations.push(d);
    }
    let dlq_destination = Arc::new(MemoryDestination::new("dlq"));
    let dlq = Dlq::new("dlq", dlq_destination.clone(), shape.dlq.0, shape.dlq.1);
    (
        Built {
            tasks,
            order: Order::new(next),
            dlq,
        },
        Handles {
            source,
            destinations,
            dlq_destination,
        },
    )
}

#[derive(Debug, PartialEq)]
struct DlqEntry {
    position: Position,
    error: String,
    node: String,
}

#[derive(Debug)]
struct Outcome {
    result: Result<(), (bool, String)>,
    acked: Vec<Position>,
    written: Vec<Vec<Record>>,
    dlq: Vec<DlqEntry>,
    /// The nacked record the DLQ refused, ending the run (reference only): its
    /// position and the task that nacked it.
    refused: Option<(Position, String)>,
}

fn outcome(built: &Handles, result: Result<(), funnel_core::Error>) -> Outcome {
    Outcome {
        result: result.map_err(|e| (e.is_fatal(), e.to_string())),
        acked: built.source.acked(),
        written: built.destinations.iter().map(|d| d.written()).collect(),
        dlq: built
            .dlq_destination
            .written()
            .into_iter()
            .map(|r| DlqEntry {
                position: r.position.clone(),
                error: r
                    .metadata
                    .get_raw(metadata::DLQ_NACK_ERROR)
                    .unwrap_or("")
                    .to_owned(),
                node: r
                    .metadata
                    .get_raw(metadata::DLQ_NACK_NODE_ID)
                    .unwrap_or("")
                    .to_owned(),
            })
            .collect(),
        refused: None,
    }
}

/// Runs the reference and the pipelined worker on one scenario. `multi_thread`: on a
/// two-thread runtime, where the worker's stages run as tasks of their own, in
/// parallel; otherwise they are joined on one task.
fn run_both(shape: &Shape, records: &[Record], multi_thread: bool) -> (Outcome, Outcome) {
    let rt = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
    }
    .expect("runtime");
    rt.block_on(async {
        let reference = {
            let (Built { tasks, order, dlq }, handles) = build(shape, records);
            let mut reference = Reference::new(tasks, order, dlq, RetryLimits::default());
            let result = reference.run().await;
            Outcome {
                refused: reference
                    .refused()
                    .map(|n| (n.record.position.clone(), n.task.to_string())),
                ..outcome(&handles, result)
            }
        };
        let pipelined = {
            let (Built { tasks, order, dlq }, handles) = build(shape, records);
            for d in &handles.destinations {
                use funnel_core::Destination;
                d.open().await.expect("open");
            }
            let config = WorkerConfig {
                max_records_in_flight: 16,
                channel_capacity: 2,
                ..WorkerConfig::default()
            };
            let mut worker = Worker::new(tasks, order, dlq, config).expect("valid order");
            worker.open().await.expect("open");
            let result = tokio::time::timeout(Duration::from_secs(3), worker.run())
                .await
                .expect("the pipelined worker deadlocked");
            outcome(&handles, result)
        };
        (reference, pipelined)
    })
}

fn origin(r: &Record) -> String {
    r.metadata.get_raw(ORIGIN).unwrap_or("").to_owned()
}

/// The read index `i` of source position `pos-i`.
fn read_index(position: &[u8]) -> usize {
    let text = String::from_utf8_lossy(position);
    text.trim_start_matches("pos-")
        .parse()
        .expect("a planned position")
}

fn check(shape: &Shape, records: &[Record], multi_thread: bool) -> Result<(), TestCaseError> {
    let (reference, pipelined) = run_both(shape, records, multi_thread);
    match (&reference.result, &pipelined.result) {
        (Ok(()), Ok(())) => {
            prop_assert_eq!(&pipelined.acked, &reference.acked, "source acks differ");
            prop_assert_eq!(&pipelined.dlq, &reference.dlq, "DLQ differs");
            for (d, (p, r)) in pipelined.written.iter().zip(&reference.written).enumerate() {
                prop_assert_eq!(p, r, "destination {} differs", d);
            }
            prop_assert_eq!(reference.acked.len(), records.len(), "not everything acked");
        }
        (Err(re), Err(pe)) => {
            // I4: when the DLQ refused a nacked record, nothing read after it reaches
            // a destination it holds back: every destination when the source or a
            // trunk processor nacked it, its own when a branch's processor did (a
            // destination's nack holds back nothing).
            if let Some((position, task)) = &reference.refused {
                let refused = read_index(position.as_bytes());
                for (d, written) in pipelined.written.iter().enumerate() {
                    let held = task == "src" || task.starts_with('p') || *task == format!("b{d}");
                    for r in written.iter().filter(|_| held) {
                        prop_assert!(
                            read_index(origin(r).as_bytes()) <= refused,
                            "destination {} got {:?}, read after {:?} which {} nacked and the DLQ refused",
                            d,
                            origin(r),
                            position,
                            task
                        );
                    }
                }
            }
            // Branches run concurrently (one after the other in the reference): when
            // two branches fail in one pass, either error may come first.
            if shape.branches.len() == 1 {
                prop_assert_eq!(re, pe, "errors differ");
            }
            // Both ack a prefix of the source, in order (the memory source refuses
            // anything else). The pipelined worker may ack further than the reference:
            // it drains what it handed on before the failure, and releases filtered
            // records without waiting for the branches.
            let common = reference.acked.len().min(pipelined.acked.len());
            let key = |p: &Position| String::from_utf8_lossy(p.as_bytes()).into_owned();
            for p in &pipelined.acked[common..] {
                let in_dlq = pipelined.dlq.iter().any(|e| &e.position == p);
                let written_alike =
                    pipelined
                        .written
                        .iter()
                        .zip(&reference.written)
                        .all(|(pw, rw)| {
                            let pw: Vec<&Record> =
                                pw.iter().filter(|r| origin(r) == key(p)).collect();
                            let rw: Vec<&Record> =
                                rw.iter().filter(|r| origin(r) == key(p)).collect();
                            pw == rw
                        });
                prop_assert!(
                    in_dlq || written_alike,
                    "{:?} was acked only by the pipelined worker, and is neither in its DLQ nor written as the reference wrote it",
                    p
                );
            }
            let acked: HashSet<String> = reference.acked[..common].iter().map(key).collect();
            let dlq_of = |o: &Outcome| -> Vec<String> {
                o.dlq
                    .iter()
                    .filter(|e| acked.contains(&key(&e.position)))
                    .map(|e| format!("{:?}", e))
                    .collect()
            };
            prop_assert_eq!(
                dlq_of(&pipelined),
                dlq_of(&reference),
                "DLQ differs on records both acked"
            );
            for (d, (p, r)) in pipelined.written.iter().zip(&reference.written).enumerate() {
                let p: Vec<&Record> = p.iter().filter(|r| acked.contains(&origin(r))).collect();
                let r: Vec<&Record> = r.iter().filter(|r| acked.contains(&origin(r))).collect();
                prop_assert_eq!(p, r, "destination {} differs on records both acked", d);
            }
        }
        (r, p) => prop_assert!(
            false,
            "reference ended with {:?}, pipelined with {:?}",
            r,
            p
        ),
    }
    Ok(())
}

/// At least 300 random pipelines per run; `PROPTEST_CASES` asks for more (or fewer).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn pipelined_worker_matches_the_reference_executor((shape, records) in scenario(true)) {
        check(&shape, &records, false)?;
        check(&shape, &records, true)?;
    }
}
