//! Whole pipelines of built-in connectors through the engine, in records per second and
//! heap allocations per record.
//!
//! Each iteration builds a [`Worker`] of one source and the noop destination, opens it,
//! runs it until the source is exhausted and closes it, on a tokio `current_thread`
//! runtime (one core); the records acked by the noop destination are checked after each
//! run.
//!
//! - `generator_structured_noop`: the structured generator with the twelve fields of
//!   `bench/pipelines/noop-structured.yaml`, 100,000 records in batches of 1,000 (the
//!   default `sdk.batch.size`).
//! - `generator_1k_noop`: the generator with a fixed 1 KiB payload (`format.type: file`).
//!
//! Heap allocations are counted by a counting global allocator (`stats_alloc`) in one
//! extra run per workload, outside the timed loop, and printed to stderr as
//! `allocations <workload>: ...`. Run with
//! `cargo bench -p funnel-connectors --bench pipeline` (see `docs/PERFORMANCE.md`).

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::alloc::System;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use funnel_connectors::{Settings, destination, noop, source};
use funnel_core::{DestinationTask, Dlq, Order, SourceTask, Task, Worker, WorkerConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Records per run.
const RECORDS: u64 = 100_000;

/// The twelve fields of the structured bench pipelines.
const STRUCTURED: &[(&str, &str)] = &[
    ("format.type", "structured"),
    ("format.options.id", "int"),
    ("format.options.name", "string"),
    ("format.options.email", "string"),
    ("format.options.city", "string"),
    ("format.options.country", "string"),
    ("format.options.street", "string"),
    ("format.options.company", "string"),
    ("format.options.job", "string"),
    ("format.options.active", "bool"),
    ("format.options.score", "int"),
    ("format.options.created", "time"),
    ("format.options.ttl", "duration"),
];

fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([("recordCount".to_owned(), RECORDS.to_string())])
        .collect()
}

/// Runs the generator with `pairs` into the noop destination until it is exhausted.
fn run_once(rt: &Runtime, pairs: &[(&str, &str)]) {
    let before = noop::written_total();
    let source = source("generator", "bench:gen", &settings(pairs), None).unwrap();
    let sink = destination("noop", "bench:sink", &Settings::new()).unwrap();
    let dlq = destination("noop", "bench:dlq", &Settings::new()).unwrap();
    let tasks: Vec<Task> = vec![
        SourceTask::new("source", source).into(),
        DestinationTask::new("destination", sink).into(),
    ];
    let order = Order::new(vec![vec![1], Vec::new()]);
    let mut worker = Worker::new(
        tasks,
        order,
        Dlq::new("dlq", dlq, 0, 0),
        WorkerConfig::default(),
    )
    .expect("valid pipeline");
    rt.block_on(funnel_test_utils::run_to_end(&mut worker));
    assert!(worker.is_exhausted());
    assert_eq!(noop::written_total() - before, RECORDS);
}

/// Runs a workload once, outside the timed loop, and prints its heap allocations per
/// record.
fn report_allocations(rt: &Runtime, name: &str, pairs: &[(&str, &str)]) {
    let region = Region::new(GLOBAL);
    run_once(rt, pairs);
    let stats = region.change();
    let n = RECORDS as f64;
    eprintln!(
        "allocations {name}: {:.3} allocs/record ({:.3} with reallocs), {:.1} bytes allocated/record",
        stats.allocations as f64 / n,
        (stats.allocations + stats.reallocations) as f64 / n,
        stats.bytes_allocated as f64 / n,
    );
}

fn pipelines(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.bin");
    std::fs::write(&payload, vec![b'x'; 1024]).unwrap();
    let fixed = [
        ("format.type", "file"),
        ("format.options.path", payload.to_str().unwrap()),
    ];
    let workloads: [(&str, &[(&str, &str)]); 2] = [
        ("generator_structured_noop", STRUCTURED),
        ("generator_1k_noop", &fixed),
    ];
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    for (name, pairs) in workloads {
        report_allocations(&rt, name, pairs);
        group.bench_function(name, |b| b.iter(|| run_once(&rt, pairs)));
    }
    group.finish();
}

criterion_group!(benches, pipelines);
criterion_main!(benches);
