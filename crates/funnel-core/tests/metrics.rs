//! What the engine registers with the metrics recorder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use funnel_core::{ProcessedRecord, WorkerConfig};
use funnel_record::Record;
use funnel_test_utils::{FnProcessor, MemorySource};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Remembers the key of every series registered.
#[derive(Clone, Default)]
struct Keys(Arc<Mutex<Vec<Key>>>);

impl Recorder for Keys {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0.lock().unwrap().push(key.clone());
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0.lock().unwrap().push(key.clone());
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0.lock().unwrap().push(key.clone());
        Histogram::noop()
    }
}

#[test]
fn metrics_never_register_a_series_with_an_empty_pipeline_label() {
    let keys = Keys::default();
    metrics::with_local_recorder(&keys, || {
        let processor = funnel_core::ProcessorTask::new(
            "proc",
            Box::new(FnProcessor(|rs: &[Record]| {
                rs.iter().cloned().map(ProcessedRecord::Single).collect()
            })),
        );
        let config = WorkerConfig {
            pipeline_id: "orders".into(),
            ..WorkerConfig::default()
        };
        one_destination(
            MemorySource::new("s", records("s", 3), 3),
            vec![processor],
            config,
        )
    });
    let keys = keys.0.lock().unwrap();
    assert!(!keys.is_empty(), "the worker registered no metrics");
    for key in keys.iter() {
        // The inspector's series are per component, whatever pipeline it is in.
        if key.name().contains("_inspector_") {
            let component = key.labels().find(|l| l.key() == "component_id");
            assert!(component.is_some_and(|l| !l.value().is_empty()), "{key:?}");
            continue;
        }
        // Funnel's series name the pipeline by ID, Conduit's by name (the ID here).
        let pipeline = key
            .labels()
            .find(|l| l.key() == "pipeline" || l.key() == "pipeline_name")
            .map(|l| l.value().to_owned());
        assert_eq!(pipeline.as_deref(), Some("orders"), "{key:?}");
    }
}
