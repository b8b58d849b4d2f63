//! The OpenCDC JSON writer's hot path: a structured record of twelve fields (strings,
//! integers and floats in both plain and exponent form) written into a reused buffer.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use funnel_record::{Data, Record, StructuredData, Value};

fn record() -> Record {
    let mut r = Record::new("position-0001", "");
    r.metadata.insert("opencdc.collection", "orders");
    r.metadata.insert("opencdc.readAt", "1704067200000000000");
    let fields: [(&str, Value); 12] = [
        ("id", Value::Int(123_456)),
        ("name", Value::String("Ada Lovelace".into())),
        ("email", Value::String("ada@example.com".into())),
        ("active", Value::Bool(true)),
        ("price", Value::Float(19.99)),
        ("ratio", Value::Float(0.125)),
        ("big", Value::Float(1.5e22)),
        ("tiny", Value::Float(2.5e-9)),
        ("count", Value::Int(-42)),
        ("total", Value::Float(1_234_567.0)),
        ("note", Value::String("<b>&</b>".into())),
        ("missing", Value::Null),
    ];
    let after: StructuredData = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    r.payload.after = Some(Data::Structured(after));
    r
}

fn bench(c: &mut Criterion) {
    let r = record();
    let mut out = Vec::with_capacity(1024);
    c.bench_function("write_json structured 12 fields", |b| {
        b.iter(|| {
            out.clear();
            r.write_json(&mut out);
            std::hint::black_box(out.len())
        });
    });
    let floats = [19.99, 0.125, 1.5e22, 2.5e-9, 1_234_567.0, -0.0, 1e21, 1e-7];
    c.bench_function("write_json 8 floats", |b| {
        b.iter(|| {
            out.clear();
            for f in floats {
                Value::Float(std::hint::black_box(f)).write_json(&mut out);
            }
            std::hint::black_box(out.len())
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
