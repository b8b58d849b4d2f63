//! The engine's own overhead, in ns per record: an in-memory source, no processors,
//! no-op destinations that ack every write at once.
//!
//! Each iteration builds the tasks and a [`Worker`], opens it and runs it until the
//! source is exhausted, on a tokio `current_thread` runtime, so everything (read,
//! ledger, writers, ack readers, source acks) is on one core. Records are counted at
//! the sink and at the source after every run.
//!
//! - `pass/batch/{1,10,100,1000}`: one destination, source batches of that size.
//! - `fanout/destinations/{1,2,4}`: batch 1,000, that many destinations.
//!
//! Heap allocations per record are counted once per configuration (only for the
//! configurations a filter selects), outside the timed loop, and printed to stderr. Run with
//! `cargo bench -p funnel-core --bench engine` (see `docs/PERFORMANCE.md`).

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use funnel_core::record::{Position, Record};
use funnel_core::{
    ConnectorError, Destination, DestinationAck, DestinationTask, Dlq, Order, Source, SourceTask,
    Task, Worker, WorkerConfig,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Records per iteration.
const RECORDS: usize = 200_000;
/// Raw payload bytes per record.
const PAYLOAD: usize = 100;

/// `RECORDS` records with distinct positions; positions and payloads are slices of two
/// shared buffers, so cloning a record costs two reference-count increments.
fn records() -> Arc<[Record]> {
    let mut positions = Vec::with_capacity(RECORDS * 8);
    for i in 0..RECORDS {
        positions.extend_from_slice(format!("{i:08}").as_bytes());
    }
    let positions = Bytes::from(positions);
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    (0..RECORDS)
        .map(|i| {
            Record::new(
                Position::new(positions.slice(i * 8..i * 8 + 8)),
                payload.clone(),
            )
        })
        .collect()
}

/// Serves the prebuilt records in batches, then reports exhaustion.
struct BenchSource {
    records: Arc<[Record]>,
    batch: usize,
    next: AtomicUsize,
    acked: AtomicU64,
}

#[async_trait]
impl Source for BenchSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let start = self.next.load(Ordering::Relaxed);
        if start >= self.records.len() {
            return Ok(None);
        }
        let end = (start + self.batch).min(self.records.len());
        self.next.store(end, Ordering::Relaxed);
        Ok(Some(self.records[start..end].to_vec()))
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        self.acked
            .fetch_add(positions.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Acks every written record, in write order, as soon as `ack` is called.
#[derive(Default)]
struct NoopDestination {
    queue: Mutex<VecDeque<Position>>,
    notify: Notify,
    written: AtomicU64,
}

#[async_trait]
impl Destination for NoopDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(records.iter().map(|r| r.position.clone()));
        self.written
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.notify.notify_one();
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        loop {
            let notified = self.notify.notified();
            {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if !queue.is_empty() {
                    return Ok(queue.drain(..).map(DestinationAck::ok).collect());
                }
            }
            notified.await;
        }
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Builds a worker with `destinations` destinations, runs it to exhaustion and checks
/// that every record reached every destination and was acked at the source.
fn run_once(rt: &Runtime, records: &Arc<[Record]>, batch: usize, destinations: usize) {
    let source = Arc::new(BenchSource {
        records: Arc::clone(records),
        batch,
        next: AtomicUsize::new(0),
        acked: AtomicU64::new(0),
    });
    let sinks: Vec<Arc<NoopDestination>> = (0..destinations)
        .map(|_| Arc::new(NoopDestination::default()))
        .collect();
    let mut tasks: Vec<Task> = vec![SourceTask::new("source", source.clone()).into()];
    for (i, sink) in sinks.iter().enumerate() {
        tasks.push(DestinationTask::new(format!("destination-{i}"), sink.clone()).into());
    }
    let mut order = vec![(1..=destinations).collect::<Vec<_>>()];
    order.extend((0..destinations).map(|_| Vec::new()));
    let dlq = Dlq::new("dlq", Arc::new(NoopDestination::default()), 0, 0);
    let mut worker = Worker::new(tasks, Order::new(order), dlq, WorkerConfig::default())
        .expect("valid pipeline");
    rt.block_on(funnel_test_utils::run_to_end(&mut worker));
    assert!(worker.is_exhausted());
    let n = records.len() as u64;
    assert_eq!(source.acked.load(Ordering::Relaxed), n);
    for sink in &sinks {
        assert_eq!(sink.written.load(Ordering::Relaxed), n);
    }
}

/// Runs one configuration once, outside the timed loop, and prints its heap
/// allocations per source record.
fn report_allocations(
    rt: &Runtime,
    records: &Arc<[Record]>,
    name: &str,
    batch: usize,
    destinations: usize,
) {
    let region = Region::new(GLOBAL);
    run_once(rt, records, batch, destinations);
    let stats = region.change();
    let n = records.len() as f64;
    eprintln!(
        "allocations {name}: {:.3} allocs/record ({:.3} with reallocs), {:.1} bytes allocated/record",
        stats.allocations as f64 / n,
        (stats.allocations + stats.reallocations) as f64 / n,
        stats.bytes_allocated as f64 / n,
    );
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn pass(c: &mut Criterion) {
    let rt = runtime();
    let records = records();
    let mut group = c.benchmark_group("pass");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for batch in [1, 10, 100, 1000] {
        let mut reported = false;
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            if !std::mem::replace(&mut reported, true) {
                report_allocations(&rt, &records, &format!("pass/batch/{batch}"), batch, 1);
            }
            b.iter(|| run_once(&rt, &records, batch, 1));
        });
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let records = records();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for destinations in [1, 2, 4] {
        let mut reported = false;
        group.bench_with_input(
            BenchmarkId::new("destinations", destinations),
            &destinations,
            |b, &destinations| {
                if !std::mem::replace(&mut reported, true) {
                    let name = format!("fanout/destinations/{destinations}");
                    report_allocations(&rt, &records, &name, 1000, destinations);
                }
                b.iter(|| run_once(&rt, &records, 1000, destinations));
            },
        );
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
}

criterion_group! {
    name = benches;
    config = config();
    targets = pass, fanout
}
criterion_main!(benches);
