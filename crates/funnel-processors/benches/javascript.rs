//! `custom.javascript` cost per record: a batch of records with small structured
//! payloads through a script that sets one field, and the same with raw payloads.
//!
//! Run with `cargo bench -p funnel-processors --bench javascript`. The target is at most
//! 3 µs per record for the structured case.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use funnel_core::Processor;
use funnel_processors::{Settings, build};
use funnel_record::{Data, Operation, Payload, Position, Record, Value};

const BATCH: usize = 100;

fn records(after: impl Fn(usize) -> Data) -> Vec<Record> {
    (0..BATCH)
        .map(|i| Record {
            position: Position::from(format!("position-{i}")),
            operation: Operation::Create,
            metadata: [
                ("opencdc.collection", "orders"),
                ("opencdc.readAt", "1747353650123456789"),
            ]
            .into_iter()
            .collect(),
            key: Some(Data::raw(format!("key-{i}"))),
            payload: Payload {
                before: None,
                after: Some(after(i)),
            },
        })
        .collect()
}

fn structured(i: usize) -> Data {
    Data::Structured(
        [
            ("id".to_owned(), Value::Int(i as i64)),
            ("customer".to_owned(), Value::String("ann".into())),
            ("total".to_owned(), Value::Float(12.5)),
            ("paid".to_owned(), Value::Bool(true)),
        ]
        .into_iter()
        .collect(),
    )
}

fn processor(runtime: &tokio::runtime::Runtime, script: &str) -> Box<dyn Processor> {
    let settings: Settings = [("script".to_owned(), script.to_owned())]
        .into_iter()
        .collect();
    let mut processor = build("custom.javascript", "bench", &settings).unwrap();
    runtime.block_on(processor.open()).unwrap();
    processor
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("custom.javascript");
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut set_field = processor(
        &runtime,
        "function process(r) { r.Payload.After.processed = true; return r; }",
    );
    let input = records(structured);
    group.bench_function("set a structured field, batch of 100", |b| {
        b.iter(|| black_box(runtime.block_on(set_field.process(black_box(&input)))));
    });

    let mut metadata = processor(
        &runtime,
        "function process(r) { r.Metadata['processed'] = 'true'; return r; }",
    );
    let raw = records(|i| Data::raw(format!("{{\"id\":{i},\"customer\":\"ann\"}}")));
    group.bench_function(
        "set metadata, raw payload of ~30 bytes, batch of 100",
        |b| {
            b.iter(|| black_box(runtime.block_on(metadata.process(black_box(&raw)))));
        },
    );

    let mut filter = processor(&runtime, "function process(r) { return null; }");
    group.bench_function("filter everything, batch of 100", |b| {
        b.iter(|| black_box(runtime.block_on(filter.process(black_box(&input)))));
    });
    group.finish();
}

/// `FUNNEL_JS_BENCH_CASE=set-field|metadata|filter FUNNEL_JS_BENCH_BATCHES=n` runs
/// that case for `n` batches without Criterion, for instruction counts
/// (`valgrind --tool=callgrind`): the difference between two values of `n` over the
/// records processed is the cost per record. `FUNNEL_JS_BENCH_SCRIPT` runs another
/// script on the case's records.
fn count_instructions(case: &str) {
    let batches: usize = std::env::var("FUNNEL_JS_BENCH_BATCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (script, input) = match case {
        "set-field" => (
            "function process(r) { r.Payload.After.processed = true; return r; }",
            records(structured),
        ),
        "metadata" => (
            "function process(r) { r.Metadata['processed'] = 'true'; return r; }",
            records(|i| Data::raw(format!("{{\"id\":{i},\"customer\":\"ann\"}}"))),
        ),
        "filter" => ("function process(r) { return null; }", records(structured)),
        other => panic!("unknown case {other:?}"),
    };
    // `FUNNEL_JS_BENCH_SCRIPT` replaces the case's script (its records stay).
    let script = std::env::var("FUNNEL_JS_BENCH_SCRIPT").unwrap_or_else(|_| script.to_owned());
    let mut processor = processor(&runtime, &script);
    // A case that fails its records would measure error handling.
    for result in runtime.block_on(processor.process(&input)) {
        if let funnel_core::ProcessedRecord::Error(e) = result {
            panic!("case {case:?} fails its records: {e}");
        }
    }
    for _ in 0..batches {
        black_box(runtime.block_on(processor.process(black_box(&input))));
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(case) = std::env::var("FUNNEL_JS_BENCH_CASE") {
        count_instructions(&case);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
