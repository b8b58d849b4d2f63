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

/// A plugin installed in `dir` from `fixture`, known without asking its specification.
fn plugin(dir: &std::path::Path, name: &str, fixture: &str) -> Arc<PluginSpec> {
    Arc::new(PluginSpec {
        path: conduit::install(dir, name, fixture),
        name: name.to_owned(),
        summary: String::new(),
        description: String::new(),
        version: "v0.1.0".to_owned(),
        author: String::new(),
        source_params: None,
        destination_params: None,
    })
}

fn path_settings(path: &std::path::Path) -> Settings {
    [("path".to_owned(), path.to_str().unwrap().to_owned())]
        .into_iter()
        .collect()
}

struct Lines {
    _dir: tempfile::TempDir,
    spec: Arc<PluginSpec>,
    input: PathBuf,
}

#[async_trait]
impl SourceBackend for Lines {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        Arc::new(PluginSource::new(
            Arc::clone(&self.spec),
            "p:lines",
            &path_settings(&self.input),
            resume,
            &options(),
        ))
    }

    async fn inject(&self, payloads: &[Bytes]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.input)
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
            let dir = tempfile::tempdir().unwrap();
            let spec = plugin(dir.path(), "lines", "lines_source.py");
            let input = dir.path().join("in.txt");
            Lines {
                _dir: dir,
                spec,
                input,
            }
        })
        .await;
    report.assert_complete();
}

struct Collect {
    _dir: tempfile::TempDir,
    spec: Arc<PluginSpec>,
    output: PathBuf,
}

#[async_trait]
impl DestinationBackend for Collect {
    fn build(&self) -> Arc<dyn Destination> {
        Arc::new(PluginDestination::new(
            Arc::clone(&self.spec),
            "p:collect",
            &path_settings(&self.output),
            &options(),
        ))
    }

    fn max_payload_bytes(&self) -> Option<usize> {
        Some(PYTHON_MAX_PAYLOAD)
    }

    async fn written(&self) -> Vec<Bytes> {
        std::fs::read_to_string(&self.output)
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
            let dir = tempfile::tempdir().unwrap();
            let spec = plugin(dir.path(), "collect", "collect_destination.py");
            let output = dir.path().join("out.jsonl");
            Collect {
                _dir: dir,
                spec,
                output,
            }
        },
    )
    .await;
    report.assert_complete();
}
