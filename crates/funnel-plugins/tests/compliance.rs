//! The connector compliance suite for a source and a destination plugin written with
//! Conduit's Python SDK (the `lines` source and the `collect` destination fixtures).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{Destination, Settings, Source};
use funnel_plugins::{HostOptions, PluginDestination, PluginSource, PluginSpec};
use funnel_record::{Data, Position, Record};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::conduit;

/// The largest gRPC message a Python plugin receives is 4 MiB; room for the envelope.
const PYTHON_MAX_PAYLOAD: usize = 4 * 1024 * 1024 - 4096;

fn options() -> HostOptions {
    HostOptions {
        call_timeout: Duration::from_secs(20),
        ..HostOptions::default()
    }
}

/// A plugin installed in a temporary directory, known without asking its specification,
/// and the file its setting `path` names.
struct Installed {
    _dir: tempfile::TempDir,
    spec: Arc<PluginSpec>,
    path: PathBuf,
}

impl Installed {
    /// Plugin `name` from `fixture`, its `path` the file `file` in its directory.
    fn new(name: &str, fixture: &str, file: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = Arc::new(PluginSpec {
            path: conduit::install(dir.path(), name, fixture),
            name: name.to_owned(),
            summary: String::new(),
            description: String::new(),
            version: "v0.1.0".to_owned(),
            author: String::new(),
            source_params: None,
            destination_params: None,
        });
        let path = dir.path().join(file);
        Self {
            _dir: dir,
            spec,
            path,
        }
    }

    /// The settings: `path`.
    fn settings(&self) -> Settings {
        [("path".to_owned(), self.path.to_str().unwrap().to_owned())]
            .into_iter()
            .collect()
    }
}

/// The `lines` source, reading the lines of its file.
struct Lines(Installed);

#[async_trait]
impl SourceBackend for Lines {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        Arc::new(PluginSource::new(
            Arc::clone(&self.0.spec),
            "p:lines",
            &self.0.settings(),
            resume,
            &options(),
        ))
    }

    async fn inject(&self, payloads: &[Bytes]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0.path)
            .unwrap();
        let mut text = Vec::new();
        for payload in payloads {
            text.extend_from_slice(payload);
            text.push(b'\n');
        }
        file.write_all(&text).unwrap();
    }

    fn payload(&self, record: &Record) -> Bytes {
        match &record.payload.after {
            Some(Data::Raw(bytes)) => bytes.clone(),
            other => panic!("payload.after is {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_source_plugin_passes_the_source_compliance_suite() {
    let report =
        run_source_compliance("python lines source", SourceCapabilities::FULL, |_| async {
            Lines(Installed::new("lines", "lines_source.py", "in.txt"))
        })
        .await;
    report.assert_complete();
}

/// The `collect` destination, writing records to its file as JSON lines.
struct Collect(Installed);

#[async_trait]
impl DestinationBackend for Collect {
    fn build(&self) -> Arc<dyn Destination> {
        Arc::new(PluginDestination::new(
            Arc::clone(&self.0.spec),
            "p:collect",
            &self.0.settings(),
            &options(),
        ))
    }

    fn max_payload_bytes(&self) -> Option<usize> {
        Some(PYTHON_MAX_PAYLOAD)
    }

    async fn written(&self) -> Vec<Bytes> {
        std::fs::read_to_string(&self.0.path)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                Bytes::from(value["after"].as_str().unwrap().to_owned())
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_destination_plugin_passes_the_destination_compliance_suite() {
    let report = run_destination_compliance(
        "python collect destination",
        DestinationCapabilities::FULL,
        |_| async {
            Collect(Installed::new(
                "collect",
                "collect_destination.py",
                "out.jsonl",
            ))
        },
    )
    .await;
    report.assert_complete();
}
