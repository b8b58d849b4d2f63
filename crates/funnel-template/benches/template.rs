//! Template hot paths: a metadata condition and a payload field render.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use funnel_record::{Data, Value};
use funnel_template::{Condition, Template};

mod common;
use common::record;

fn bench(c: &mut Criterion) {
    let r = record();
    // Calibration: the hand-written Rust equivalent of the condition, to read the
    // template figures against on a loaded machine.
    c.bench_function("baseline: metadata get and compare", |b| {
        b.iter(|| std::hint::black_box(std::hint::black_box(&r).metadata.get("key") == Some("val")))
    });
    c.bench_function("baseline: String from payload field", |b| {
        b.iter(|| {
            let r = std::hint::black_box(&r);
            let Some(Data::Structured(m)) = &r.payload.after else {
                unreachable!()
            };
            let Some(Value::String(s)) = m.get("foo") else {
                unreachable!()
            };
            std::hint::black_box(s.clone())
        })
    });
    let cond = Condition::parse(r#"{{ eq .Metadata.key "val" }}"#)
        .unwrap()
        .unwrap();
    c.bench_function("condition eq .Metadata.key", |b| {
        b.iter(|| std::hint::black_box(cond.evaluate(std::hint::black_box(&r)).unwrap()))
    });
    let t = Template::parse("{{ .Payload.After.foo }}").unwrap();
    c.bench_function("render .Payload.After.foo", |b| {
        b.iter(|| std::hint::black_box(t.render(std::hint::black_box(&r)).unwrap()))
    });
    let mut out = String::new();
    c.bench_function("render_into .Payload.After.foo (reused buffer)", |b| {
        b.iter(|| {
            out.clear();
            t.render_into(std::hint::black_box(&r), &mut out).unwrap();
        })
    });
    let t = Template::parse(
        r#"{{ .Payload.After.foo | upper }}-{{ index .Metadata "opencdc.collection" }}"#,
    )
    .unwrap();
    c.bench_function("render pipeline with upper and index", |b| {
        b.iter(|| std::hint::black_box(t.render(std::hint::black_box(&r)).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
