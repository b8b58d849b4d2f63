//! Runs one template hot path a fixed number of times, for instruction counting under
//! `valgrind --tool=callgrind`: `tmpl_count <case> <iterations>`. Compare two iteration
//! counts to get instructions per evaluation.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use funnel_template::{Condition, Template};

#[path = "../benches/common/mod.rs"]
mod common;
use common::record;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let r = record();
    let cond = Condition::parse(r#"{{ eq .Metadata.key "val" }}"#)
        .unwrap()
        .unwrap();
    let field = Template::parse("{{ .Payload.After.foo }}").unwrap();
    let pipe = Template::parse(
        r#"{{ .Payload.After.foo | upper }}-{{ index .Metadata "opencdc.collection" }}"#,
    )
    .unwrap();
    let mut out = String::new();
    let mut acc = 0usize;
    for _ in 0..n {
        match case.as_str() {
            "baseline" => acc += usize::from(black_box(&r).metadata.get("key") == Some("val")),
            "cond" => acc += usize::from(cond.evaluate(black_box(&r)).unwrap()),
            "render" => acc += field.render(black_box(&r)).unwrap().len(),
            "render_into" => {
                out.clear();
                field.render_into(black_box(&r), &mut out).unwrap();
                acc += out.len();
            }
            "pipeline" => acc += pipe.render(black_box(&r)).unwrap().len(),
            _ => {}
        }
    }
    println!("{acc}");
}
