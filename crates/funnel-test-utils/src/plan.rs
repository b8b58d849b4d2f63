//! Records that carry their own fate: processors and destinations driven by a plan
//! written in each record's metadata, and proptest strategies that generate plans.
//!
//! A record's metadata key `<stage>` (say `p0` for the first trunk processor, `b1` for
//! the processor of branch 1, `d0` for destination 0) holds what that stage does with
//! it: `pass`, `filter`, `nack`, `split2`, `split3`, `empty` (a `Multi` with no
//! record), `retry` (no result the first time it is seen), `stuck` (never a result),
//! `retry-tail` (no result for it and every later record the first time), or for destinations `fail`. Piece `i` of a split record reads `<stage>#<i>` first.
//! A record whose plan sets [`READ_ERROR`] is one the source could not read: the engine
//! nacks it at the read.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use funnel_core::{ProcessedRecord, Processor, RecordError};
use funnel_record::metadata::READ_ERROR;
use funnel_record::{Data, Metadata, Record};
use proptest::prelude::*;

use crate::memory::AckPlan;

/// Metadata key holding the index of a split piece.
pub const PIECE: &str = "plan.piece";
/// Metadata key holding the source position a record descends from.
pub const ORIGIN: &str = "plan.origin";

fn action<'a>(record: &'a Record, stage: &str) -> &'a str {
    let piece = record.metadata.get(PIECE).unwrap_or("0");
    record
        .metadata
        .get(&format!("{stage}#{piece}"))
        .or_else(|| record.metadata.get(stage))
        .unwrap_or("pass")
}

/// A processor following each record's plan for `stage`.
pub struct PlanProcessor {
    stage: String,
    retried: HashSet<(Vec<u8>, String)>,
}

impl PlanProcessor {
    /// A processor for plan key `stage`.
    pub fn new(stage: impl Into<String>) -> Self {
        Self {
            stage: stage.into(),
            retried: HashSet::new(),
        }
    }

    fn split(&self, record: &Record, n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let mut piece = record.clone();
                let parent = record.metadata.get(PIECE).unwrap_or("0").to_owned();
                piece.metadata.insert(PIECE, format!("{parent}.{i}"));
                piece
            })
            .collect()
    }
}

#[async_trait]
impl Processor for PlanProcessor {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let result = match action(record, &self.stage) {
                "filter" => ProcessedRecord::Filter,
                "nack" => ProcessedRecord::Error(RecordError::msg(format!(
                    "{} refused {}",
                    self.stage, record.position
                ))),
                "split2" => ProcessedRecord::Multi(self.split(record, 2)),
                "split3" => ProcessedRecord::Multi(self.split(record, 3)),
                "empty" => ProcessedRecord::Multi(Vec::new()),
                "stuck" => ProcessedRecord::Retry,
                "retry" => {
                    let key = (
                        record.position.as_bytes().to_vec(),
                        record.metadata.get(PIECE).unwrap_or("0").to_owned(),
                    );
                    if self.retried.insert(key) {
                        ProcessedRecord::Retry
                    } else {
                        ProcessedRecord::Single(stamp(record, &self.stage))
                    }
                }
                "retry-tail" => {
                    let key = (
                        record.position.as_bytes().to_vec(),
                        record.metadata.get(PIECE).unwrap_or("0").to_owned(),
                    );
                    if self.retried.insert(key) {
                        // No result for this record and every later one; a processor
                        // must return something, so a first record is retried alone.
                        if out.is_empty() {
                            out.push(ProcessedRecord::Retry);
                        }
                        break;
                    }
                    ProcessedRecord::Single(stamp(record, &self.stage))
                }
                _ => ProcessedRecord::Single(stamp(record, &self.stage)),
            };
            out.push(result);
        }
        out
    }
}

/// Marks that `stage` transformed the record, so a record transformed twice shows.
fn stamp(record: &Record, stage: &str) -> Record {
    let mut r = record.clone();
    let seen = r.metadata.get("plan.stamps").unwrap_or_default().to_owned();
    r.metadata.insert("plan.stamps", format!("{seen}{stage};"));
    r
}

/// The ack plan of destination `d`: nacks records planned `fail` for `d<d>`.
pub fn destination_plan(d: usize) -> AckPlan {
    let stage = format!("d{d}");
    Arc::new(move |r: &Record| {
        (action(r, &stage) == "fail")
            .then(|| RecordError::msg(format!("{stage} failed {}", r.position)))
    })
}

/// A record at position `pos-<i>` with the given plan entries.
pub fn planned_record(i: usize, plan: &[(String, String)]) -> Record {
    let mut metadata = Metadata::new();
    metadata.insert(ORIGIN, format!("pos-{i}"));
    for (k, v) in plan {
        metadata.insert(k.clone(), v.clone());
    }
    // A record the source could not read has no payload.
    let after = (metadata.get(READ_ERROR).is_none()).then(|| Data::raw(format!("payload {i}")));
    Record {
        position: format!("pos-{i}").into(),
        metadata,
        payload: funnel_record::Payload {
            before: None,
            after,
        },
        ..Record::default()
    }
}

/// The shape of a generated pipeline.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Trunk processors.
    pub trunk: usize,
    /// Per destination: whether it has its own processor.
    pub branches: Vec<bool>,
    /// Records read per source read.
    pub batch_size: usize,
    /// DLQ window size and nack threshold.
    pub dlq: (usize, usize),
    /// Acks per destination ack call.
    pub ack_chunk: usize,
}

fn processor_action(allow_stuck: bool) -> BoxedStrategy<&'static str> {
    let mut options = vec![
        (40, Just("pass").boxed()),
        (6, Just("filter").boxed()),
        (4, Just("nack").boxed()),
        (4, Just("split2").boxed()),
        (2, Just("split3").boxed()),
        (2, Just("empty").boxed()),
        (3, Just("retry").boxed()),
        (3, Just("retry-tail").boxed()),
    ];
    if allow_stuck {
        options.push((1, Just("stuck").boxed()));
    }
    proptest::strategy::Union::new_weighted(options).boxed()
}

/// A pipeline shape and the plan of each of its records.
pub fn scenario(allow_stuck: bool) -> impl Strategy<Value = (Shape, Vec<Record>)> {
    let shape = (
        0usize..=2,
        prop::collection::vec(prop::bool::weighted(0.3), 1..=3),
        1usize..=6,
        prop::sample::select(vec![(0, 0), (0, 0), (1, 0), (3, 1), (4, 2), (10, 3)]),
        prop::sample::select(vec![1usize, 2, 3, 1000]),
    )
        .prop_map(|(trunk, branches, batch_size, dlq, ack_chunk)| Shape {
            trunk,
            branches,
            batch_size,
            dlq,
            ack_chunk,
        });
    shape.prop_flat_map(move |shape| {
        let mut stages: Vec<String> = (0..shape.trunk).map(|k| format!("p{k}")).collect();
        for (b, has) in shape.branches.iter().enumerate() {
            if *has {
                stages.push(format!("b{b}"));
            }
        }
        let dests: Vec<String> = (0..shape.branches.len()).map(|d| format!("d{d}")).collect();
        let entry = {
            let stages = stages.clone();
            let dests = dests.clone();
            let per_stage: Vec<BoxedStrategy<Option<(String, String)>>> = stages
                .iter()
                .flat_map(|s| {
                    let plain = s.clone();
                    let piece = format!("{s}#1");
                    [
                        proptest::option::weighted(0.6, processor_action(allow_stuck))
                            .prop_map(move |a| a.map(|a| (plain.clone(), a.to_owned())))
                            .boxed(),
                        proptest::option::weighted(0.15, processor_action(false))
                            .prop_map(move |a| a.map(|a| (piece.clone(), a.to_owned())))
                            .boxed(),
                    ]
                })
                .chain(dests.iter().map(|d| {
                    let d = d.clone();
                    prop::bool::weighted(0.08)
                        .prop_map(move |fail| fail.then(|| (d.clone(), "fail".to_owned())))
                        .boxed()
                }))
                // Now and then a record the source could not read: nacked at the read.
                .chain(std::iter::once(
                    prop::bool::weighted(0.04)
                        .prop_map(|unreadable| {
                            unreadable.then(|| (READ_ERROR.to_owned(), "unreadable".to_owned()))
                        })
                        .boxed(),
                ))
                .collect();
            per_stage.prop_map(|entries| entries.into_iter().flatten().collect::<Vec<_>>())
        };
        let records = prop::collection::vec(entry, 0..40).prop_map(|plans| {
            plans
                .iter()
                .enumerate()
                .map(|(i, plan)| planned_record(i, plan))
                .collect::<Vec<_>>()
        });
        (Just(shape), records)
    })
}
