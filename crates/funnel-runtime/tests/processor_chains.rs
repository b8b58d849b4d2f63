//! Random chains of real built-in processors, with conditions, on random records:
//! every source position is acked exactly once and in order (written, filtered or sent
//! to the DLQ), and the pipelined worker produces exactly what the stop-and-wait
//! reference executor produces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use funnel_core::{
    DestinationTask, Dlq, Order, Processor, ProcessorTask, RetryLimits, SourceTask, Task, Worker,
    WorkerConfig,
};
use funnel_record::{Data, Position, Record, StructuredData, Value, metadata};
use funnel_test_utils::reference::Reference;
use funnel_test_utils::{MemoryDestination, MemorySource};
use proptest::prelude::*;

/// One step of a chain: plugin, settings, condition.
type Step = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// The menu chains are drawn from. Together they filter, fail, split, clone and change
/// the fields later steps look at, so later steps meet every kind of record.
const MENU: &[Step] = &[
    ("filter", &[], r#"{{ eq .Metadata.k "a" }}"#),
    (
        "error",
        &[("message", "refused {{ .Metadata.k }}")],
        r#"{{ eq .Metadata.k "b" }}"#,
    ),
    ("split", &[("field", ".Payload.After.items")], ""),
    ("clone", &[("count", "1")], r#"{{ eq .Metadata.k2 "x" }}"#),
    (
        "field.set",
        &[("field", ".Metadata.k"), ("value", "{{ .Metadata.k2 }}")],
        "",
    ),
    ("json.encode", &[("field", ".Payload.After.items")], ""),
    ("field.exclude", &[("fields", ".Payload.After.name")], ""),
    (
        "base64.encode",
        &[("field", ".Payload.After.name")],
        r#"{{ eq .Metadata.k "c" }}"#,
    ),
];

fn processor(step: &Step) -> Box<dyn Processor> {
    let (plugin, settings, condition) = step;
    let settings: BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let condition = (!condition.is_empty()).then_some(*condition);
    funnel_processors::build_configured(plugin, plugin, &settings, condition)
        .unwrap_or_else(|e| panic!("{plugin} builds: {e:?}"))
}

fn record(i: usize, k: &str, k2: &str, items: usize) -> Record {
    let mut r = Record::new(i.to_string(), "");
    r.metadata.insert("k", k);
    r.metadata.insert("k2", k2);
    let mut after = StructuredData::new();
    after.insert(
        "items".to_owned(),
        Value::Array((0..items as i64).map(Value::Int).collect()),
    );
    after.insert("name".to_owned(), Value::String(format!("n{i}").into()));
    r.payload.after = Some(Data::Structured(after));
    r
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    let one = (
        prop::sample::select(vec!["a", "b", "c", "d"]),
        prop::sample::select(vec!["a", "b", "x", "y"]),
        0usize..4,
    );
    prop::collection::vec(one, 1..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (k, k2, items))| record(i, k, k2, items))
            .collect()
    })
}

struct Handles {
    source: Arc<MemorySource>,
    destination: Arc<MemoryDestination>,
    dlq: Arc<MemoryDestination>,
}

fn build(chain: &[usize], records: &[Record], batch: usize) -> (Vec<Task>, Order, Dlq, Handles) {
    let source = Arc::new(MemorySource::new("src", records.to_vec(), batch).exhausting());
    let destination = Arc::new(MemoryDestination::new("dest"));
    let dlq = Arc::new(MemoryDestination::new("dlq"));
    let mut tasks: Vec<Task> = vec![SourceTask::new("src", source.clone()).into()];
    for (n, &step) in chain.iter().enumerate() {
        tasks.push(ProcessorTask::new(format!("p{n}"), processor(&MENU[step])).into());
    }
    tasks.push(DestinationTask::new("dest", destination.clone()).into());
    let order = Order::linear(tasks.len());
    (
        tasks,
        order,
        Dlq::new("dlq", dlq.clone(), 0, 0),
        Handles {
            source,
            destination,
            dlq,
        },
    )
}

type Outcome = (Vec<Position>, Vec<Record>, Vec<(Position, String)>);

fn outcome(h: &Handles) -> Outcome {
    (
        h.source.acked(),
        h.destination.written(),
        h.dlq
            .written()
            .into_iter()
            .map(|r| {
                let error = r.metadata.get_raw(metadata::DLQ_NACK_ERROR).unwrap_or("");
                (r.position.clone(), error.to_owned())
            })
            .collect(),
    )
}

fn run_both(chain: &[usize], records: &[Record], batch: usize) -> (Outcome, Outcome) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tasks, order, dlq, handles) = build(chain, records, batch);
        Reference::new(tasks, order, dlq, RetryLimits::default())
            .run()
            .await
            .expect("the reference runs");
        let reference = outcome(&handles);

        let (tasks, order, dlq, handles) = build(chain, records, batch);
        let config = WorkerConfig {
            max_records_in_flight: 16,
            channel_capacity: 2,
            ..WorkerConfig::default()
        };
        let mut worker = Worker::new(tasks, order, dlq, config).unwrap();
        worker.open().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), worker.run())
            .await
            .expect("the worker finished")
            .expect("the worker runs");
        (reference, outcome(&handles))
    })
}

proptest! {
    #[test]
    fn every_position_is_acked_exactly_once_through_random_processor_chains(
        chain in prop::collection::vec(0..MENU.len(), 0..6),
        records in records(),
        batch in 1usize..8,
    ) {
        let (reference, pipelined) = run_both(&chain, &records, batch);
        let all: Vec<Position> = records.iter().map(|r| r.position.clone()).collect();
        prop_assert_eq!(&pipelined.0, &all, "every position acked once, in order");
        prop_assert_eq!(&reference.0, &all);
        prop_assert_eq!(&pipelined.1, &reference.1, "written records differ");
        prop_assert_eq!(&pipelined.2, &reference.2, "DLQ differs");
        for r in pipelined.1.iter() {
            prop_assert!(all.contains(&r.position), "written record from a known position");
        }
    }
}
