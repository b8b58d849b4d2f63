//! Processor throughput on batches of 1000 records.
//!
//! - `field.set` with value `{{ .Payload.After.foo }}` and condition
//!   `{{ eq .Metadata.key "val" }}`: target at most 300 ns per record.
//! - `filter` with the same condition: target at most 150 ns per record.
//!
//! Each is measured with every record matching the condition, and with half of them
//! matching (the condition wrapper then copies the matching records into a batch of
//! their own).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use funnel_processors::{Settings, build_configured};
use funnel_record::{Data, Record, Value};

const BATCH: usize = 1000;
const CONDITION: &str = r#"{{ eq .Metadata.key "val" }}"#;

fn records(matching_every: usize) -> Vec<Record> {
    (0..BATCH)
        .map(|i| {
            let mut r = Record::new(format!("pos-{i}"), "");
            r.metadata.insert("opencdc.readAt", "1706028953606997000");
            r.metadata.insert(
                "key",
                if i % matching_every == 0 {
                    "val"
                } else {
                    "other"
                },
            );
            r.payload.after = Some(Data::Structured(
                [
                    ("foo".to_owned(), Value::String(format!("value-{i}").into())),
                    ("id".to_owned(), Value::Int(i as i64)),
                    ("name".to_owned(), Value::String("a name".into())),
                ]
                .into_iter()
                .collect(),
            ));
            r
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("processors");
    group.throughput(Throughput::Elements(BATCH as u64));

    let set_settings: Settings = [
        ("field".to_owned(), ".Payload.After.bar".to_owned()),
        ("value".to_owned(), "{{ .Payload.After.foo }}".to_owned()),
    ]
    .into_iter()
    .collect();
    let cases = [
        (
            "field.set+condition/all-match",
            "field.set",
            &set_settings,
            1,
        ),
        (
            "field.set+condition/half-match",
            "field.set",
            &set_settings,
            2,
        ),
        ("filter+condition/all-match", "filter", &Settings::new(), 1),
        ("filter+condition/half-match", "filter", &Settings::new(), 2),
    ];
    for (name, plugin, settings, every) in cases {
        let mut processor = build_configured(plugin, "bench", settings, Some(CONDITION)).unwrap();
        let input = records(every);
        group.bench_function(name, |b| {
            // The engine's path: records processed in place (the copy made for each
            // iteration is set-up, not measured).
            b.iter_batched_ref(
                || input.clone(),
                |records| runtime.block_on(processor.process_in_place(records)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
