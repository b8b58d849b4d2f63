//! Standalone connectors written with Conduit's Python SDK (the fixtures of
//! funnel-test-utils), driven as Funnel sources and destinations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use funnel_core::SettingType;
use funnel_core::{Destination, Settings, Source};
use funnel_plugins::spec::Check;
use funnel_plugins::state::LAST_ACTIVE;
use funnel_plugins::{
    Catalogue, HostOptions, LastActive, PluginDestination, PluginSource, PluginSpec, Role,
};
use funnel_record::{Position, Record};
use funnel_store::{MemoryStore, Store};
use funnel_test_utils::conduit;
use funnel_test_utils::connectors::{ack_n, read_exactly};
use funnel_test_utils::wait_until;

fn options() -> HostOptions {
    HostOptions {
        call_timeout: Duration::from_secs(20),
        ..HostOptions::default()
    }
}

fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A connectors directory with the counter source and the collect destination.
async fn catalogue(dir: &Path) -> Catalogue {
    conduit::install(dir, "counter", "counter_source.py");
    conduit::install(dir, "collect", "collect_destination.py");
    Catalogue::discover(dir, &options()).await
}

fn spec(catalogue: &Catalogue, name: &str) -> Arc<PluginSpec> {
    catalogue.find(name, None).unwrap().expect(name)
}

/// A temporary connectors directory made by [`catalogue`] and the specification of
/// plugin `name` in it.
async fn installed(name: &str) -> (tempfile::TempDir, Arc<PluginSpec>) {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = catalogue(dir.path()).await;
    let spec = spec(&catalogue, name);
    (dir, spec)
}

/// Installs as `dir/garbage` an executable that is no plugin: it prints a line and
/// sleeps.
fn install_garbage(dir: &Path) -> PathBuf {
    let script = "#!/bin/sh\necho 'hello, I am not a plugin'\nsleep 60\n";
    conduit::install_script(dir, "garbage", script)
}

/// Whether `state` told plugin `spec` as `role` that its connector is deleted (the
/// connector was not deleted already).
async fn told_deleted(state: &LastActive, spec: &PluginSpec, role: Role) -> bool {
    state.delete(spec, role, &options()).await.unwrap()
}

/// Waits until no process runs the plugin at `path` any more.
async fn gone(path: &Path) {
    wait_until(
        "the plugin's processes to exit",
        Duration::from_secs(10),
        || conduit::running(path) == 0,
    )
    .await;
}

fn numbers(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.position.as_bytes().to_vec()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_plugins_are_found_with_their_specifications_and_bad_executables_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = install_garbage(dir.path());
    std::fs::write(dir.path().join("README"), "not a plugin\n").unwrap();
    let catalogue = catalogue(dir.path()).await;
    let names: Vec<String> = catalogue.plugins().iter().map(|p| p.full_name()).collect();
    assert_eq!(
        names,
        ["standalone:collect@v0.2.0", "standalone:counter@v0.1.0"]
    );
    let counter = spec(&catalogue, "counter");
    let params = counter.source_params.as_ref().unwrap();
    let count = &params["count"];
    assert_eq!(
        (count.default.as_str(), count.kind),
        ("3", SettingType::Int)
    );
    assert!(
        count
            .checks
            .iter()
            .any(|c| matches!(c, Check::GreaterThan(b) if *b == 0.0))
    );
    assert!(params.contains_key("sdk.batch.size"));
    let collect = spec(&catalogue, "collect");
    assert!(collect.destination_params.as_ref().unwrap()["path"].required());
    let errors = collect.validate(false, &Settings::new());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].setting, "path");
    gone(&garbage).await;
    gone(&counter.path).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_source_is_read_in_order_and_resumes_after_the_committed_position() {
    let (_dir, spec) = installed("counter").await;
    let config = settings(&[("count", "5")]);
    let source = PluginSource::new(Arc::clone(&spec), "p:src", &config, None, &options());
    source.open().await.unwrap();
    let records = read_exactly(&source, 5).await;
    assert_eq!(numbers(&records), ["1", "2", "3", "4", "5"]);
    let meta = &records[0].metadata;
    assert_eq!(meta.get("conduit.source.connector.id"), Some("p:src"));
    assert_eq!(meta.get("test.connector.id"), Some("p:src"));
    assert_eq!(meta.get("test.log.level"), Some("info"));
    assert_eq!(meta.get("test.max.size"), Some("4194304"));
    let first: Vec<Position> = records[..3].iter().map(|r| r.position.clone()).collect();
    source.ack(&first).await.unwrap();
    source.teardown().await.unwrap();
    gone(&spec.path).await;

    let resumed = PluginSource::new(
        Arc::clone(&spec),
        "p:src",
        &config,
        Some(Position::from("3")),
        &options(),
    );
    resumed.open().await.unwrap();
    let records = read_exactly(&resumed, 2).await;
    assert_eq!(numbers(&records), ["4", "5"]);
    resumed.teardown().await.unwrap();
    gone(&spec.path).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_destination_acks_every_record_in_write_order_once_written() {
    let (dir, spec) = installed("collect").await;
    let out = dir.path().join("out.jsonl");
    let config = settings(&[("path", out.to_str().unwrap())]);
    let destination = PluginDestination::new(Arc::clone(&spec), "p:dst", &config, &options());
    destination.open().await.unwrap();
    let records: Vec<Record> = (1..=20)
        .map(|i| {
            Record::new(
                Position::from(i.to_string().as_str()),
                format!("r{i}").into_bytes(),
            )
        })
        .collect();
    destination.write(&records[..5]).await.unwrap();
    destination.write(&records[5..]).await.unwrap();
    let acks = ack_n(&destination, 20).await;
    let positions: Vec<Position> = acks.iter().map(|a| a.position.clone()).collect();
    let expected: Vec<Position> = records.iter().map(|r| r.position.clone()).collect();
    assert_eq!(positions, expected);
    assert!(acks.iter().all(|a| a.error.is_none()));
    destination.teardown().await.unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[19]["after"], "r20");
    gone(&spec.path).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_exits_mid_run_fails_the_read_with_what_it_said() {
    let (_dir, spec) = installed("counter").await;
    let config = settings(&[("count", "10"), ("exit_after", "2")]);
    let source = PluginSource::new(Arc::clone(&spec), "p:src", &config, None, &options());
    source.open().await.unwrap();
    let mut read = 0;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(30), source.read())
            .await
            .unwrap()
        {
            Ok(Some(records)) => read += records.len(),
            Ok(None) => panic!("the source ended"),
            Err(e) => break e,
        }
    };
    assert_eq!(read, 2);
    assert_eq!(error.retry(), funnel_core::Retry::Transient);
    assert!(
        error.to_string().contains("error reading from source"),
        "{error}"
    );
    source.teardown().await.unwrap_err();
    gone(&spec.path).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_never_answers_configure_fails_open_after_the_call_timeout() {
    let (_dir, spec) = installed("counter").await;
    let options = HostOptions {
        call_timeout: Duration::from_secs(2),
        ..options()
    };
    let config = settings(&[("configure_hangs", "true")]);
    let source = PluginSource::new(Arc::clone(&spec), "p:src", &config, None, &options);
    let started = std::time::Instant::now();
    let error = source.open().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error
            .to_string()
            .contains("could not configure source connector plugin: no answer within 2s"),
        "{error}"
    );
    gone(&spec.path).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_whose_handshake_is_garbage_fails_open_with_go_plugins_words() {
    let dir = tempfile::tempdir().unwrap();
    let path = install_garbage(dir.path());
    let spec = Arc::new(PluginSpec {
        path: path.clone(),
        name: "garbage".into(),
        summary: String::new(),
        description: String::new(),
        version: "v1".into(),
        author: String::new(),
        source_params: None,
        destination_params: None,
    });
    let source = PluginSource::new(spec, "p:src", &Settings::new(), None, &options());
    let error = source.open().await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Unrecognized remote plugin message: \"hello, I am not a plugin\""),
        "{error}"
    );
    gone(&path).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_nacks_every_record_gives_each_record_its_error() {
    let (dir, spec) = installed("collect").await;
    let out = dir.path().join("out.jsonl");
    let config = settings(&[("path", out.to_str().unwrap()), ("nack", "true")]);
    let destination = PluginDestination::new(Arc::clone(&spec), "p:dst", &config, &options());
    destination.open().await.unwrap();
    let records: Vec<Record> = (1..=3)
        .map(|i| Record::new(Position::from(i.to_string().as_str()), b"x".to_vec()))
        .collect();
    destination.write(&records).await.unwrap();
    let acks = ack_n(&destination, 3).await;
    for ack in &acks {
        let error = ack.error.as_ref().expect("a nack").to_string();
        assert!(error.contains("refused by the collect plugin"), "{error}");
    }
    destination.teardown().await.unwrap();
    gone(&spec.path).await;
}

/// The lifecycle calls a fixture recorded in `path`, one JSON object each.
fn lifecycle_calls(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_connectors_are_told_created_once_updated_on_a_changed_config_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("lifecycle.jsonl");
    let env = [("FUNNEL_TEST_LIFECYCLE_LOG", calls.to_str().unwrap())];
    let connectors = dir.path().join("connectors");
    conduit::install_with_env(&connectors, "counter", "counter_source.py", &env);
    conduit::install_with_env(&connectors, "collect", "collect_destination.py", &env);
    let catalogue = Catalogue::discover(&connectors, &options()).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let counter = spec(&catalogue, "counter");
    let source_state = LastActive::new(Arc::clone(&store), "p:src");
    let run_source = async |config: &Settings| {
        let source = PluginSource::new(Arc::clone(&counter), "p:src", config, None, &options())
            .with_last_active(source_state.clone());
        source.open().await.unwrap();
        source.teardown().await.unwrap();
        gone(&counter.path).await;
    };
    let first = settings(&[("count", "5")]);
    run_source(&first).await;
    run_source(&first).await;
    let second = settings(&[("count", "7")]);
    run_source(&second).await;
    let config = |c: &Settings| serde_json::to_value(c).unwrap();
    assert_eq!(
        lifecycle_calls(&calls),
        [
            serde_json::json!({"event": "created", "config": config(&first)}),
            serde_json::json!({"event": "updated", "before": config(&first), "after": config(&second)}),
        ],
        "created on the first run, nothing on an unchanged one, updated on a changed one"
    );
    assert!(told_deleted(&source_state, &counter, Role::Source).await);
    gone(&counter.path).await;
    assert_eq!(
        lifecycle_calls(&calls)[2],
        serde_json::json!({"event": "deleted", "config": config(&second)})
    );
    assert_eq!(store.entries(LAST_ACTIVE).await.unwrap(), Vec::new());
    assert!(
        !told_deleted(&source_state, &counter, Role::Source).await,
        "a connector deleted (or never started) is not told again"
    );

    let collect = spec(&catalogue, "collect");
    let out = dir.path().join("out.jsonl");
    let config_out = settings(&[("path", out.to_str().unwrap())]);
    let destination_state = LastActive::new(Arc::clone(&store), "p:dst");
    let destination =
        PluginDestination::new(Arc::clone(&collect), "p:dst", &config_out, &options())
            .with_last_active(destination_state.clone());
    destination.open().await.unwrap();
    destination.teardown().await.unwrap();
    assert!(told_deleted(&destination_state, &collect, Role::Destination).await);
    gone(&collect.path).await;
    assert_eq!(
        lifecycle_calls(&calls)[3..],
        [
            serde_json::json!({"event": "created", "config": config(&config_out)}),
            serde_json::json!({"event": "deleted", "config": config(&config_out)}),
        ]
    );
}
