//! The built-in connectors' cost per record.
//!
//! - `generator/file_1k`: reads of 1,000 records whose payload is a shared 1 KiB file
//!   (`format.type: file`), the benchmark source.
//! - `generator/structured_5`: reads of 1,000 records with five structured fields.
//! - `noop/write_ack`: a 1,000-record write to the noop destination and its ack.
//! - `file/write_ack`: a 1,000-record write of 1 KiB records to the file destination
//!   and its acks (encoding, one write, one `fsync`).
//! - `file_source/read_100k_lines`: the file source reading a 10 MB file of 100,000
//!   lines of 100 bytes from its start, in batches of 1,000.
//!
//! Run with `cargo bench -p funnel-connectors --bench connectors`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use funnel_connectors::{Settings, destination, source};
use funnel_core::settings_of as settings;
use funnel_core::{Destination, Source};
use funnel_record::Record;
use tokio::runtime::Runtime;

const BATCH: usize = 1000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn open_source(rt: &Runtime, pairs: &[(&str, &str)]) -> Arc<dyn Source> {
    let source = source("generator", "bench:gen", &settings(pairs), None).unwrap();
    rt.block_on(source.open()).unwrap();
    source
}

fn generator(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.bin");
    std::fs::write(&payload, vec![b'x'; 1024]).unwrap();
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(BATCH as u64));

    let file = open_source(
        &rt,
        &[
            ("format.type", "file"),
            ("format.options.path", payload.to_str().unwrap()),
        ],
    );
    group.bench_function("file_1k", |b| {
        b.iter(|| rt.block_on(file.read()).unwrap());
    });

    let structured = open_source(
        &rt,
        &[
            ("format.type", "structured"),
            ("format.options.id", "int"),
            ("format.options.name", "string"),
            ("format.options.at", "time"),
            ("format.options.ok", "bool"),
            ("format.options.took", "duration"),
        ],
    );
    group.bench_function("structured_5", |b| {
        b.iter(|| rt.block_on(structured.read()).unwrap());
    });
    group.finish();
}

fn batch(rt: &Runtime, payload: &std::path::Path) -> Vec<Record> {
    let source = open_source(
        rt,
        &[
            ("format.type", "file"),
            ("format.options.path", payload.to_str().unwrap()),
        ],
    );
    rt.block_on(source.read()).unwrap().expect("a batch")
}

fn write_and_ack(rt: &Runtime, destination: &dyn Destination, records: &[Record]) {
    rt.block_on(async {
        destination.write(records).await.unwrap();
        let mut acked = 0;
        while acked < records.len() {
            acked += destination.ack().await.unwrap().len();
        }
    });
}

fn destinations(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.bin");
    std::fs::write(&payload, vec![b'x'; 1024]).unwrap();
    let records = batch(&rt, &payload);
    let mut group = c.benchmark_group("destination");
    group.throughput(Throughput::Elements(BATCH as u64));

    let noop = destination("noop", "bench:noop", &Settings::new()).unwrap();
    rt.block_on(noop.open()).unwrap();
    group.bench_function("noop/write_ack", |b| {
        b.iter(|| write_and_ack(&rt, &*noop, &records));
    });

    let out = dir.path().join("out.jsonl");
    let file = destination(
        "file",
        "bench:file",
        &settings(&[("path", out.to_str().unwrap())]),
    )
    .unwrap();
    rt.block_on(file.open()).unwrap();
    group.sample_size(20);
    group.bench_function("file/write_ack", |b| {
        b.iter(|| write_and_ack(&rt, &*file, &records));
    });
    rt.block_on(file.teardown()).unwrap();
    group.finish();
}

fn file_source(c: &mut Criterion) {
    const LINES: usize = 100_000;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let mut text = Vec::with_capacity(LINES * 100);
    for i in 0..LINES {
        text.extend_from_slice(format!("{i:>99}\n").as_bytes());
    }
    std::fs::write(&path, &text).unwrap();
    let mut group = c.benchmark_group("file_source");
    group.throughput(Throughput::Elements(LINES as u64));
    group.sample_size(20);
    group.bench_function("read_100k_lines", |b| {
        b.iter(|| {
            let source = source(
                "file",
                "bench:in",
                &settings(&[("path", path.to_str().unwrap())]),
                None,
            )
            .unwrap();
            rt.block_on(async {
                source.open().await.unwrap();
                let mut read = 0;
                while read < LINES {
                    read += source.read().await.unwrap().expect("a batch").len();
                }
                source.teardown().await.unwrap();
            });
        });
    });
    group.finish();
}

criterion_group!(benches, generator, destinations, file_source);
criterion_main!(benches);
