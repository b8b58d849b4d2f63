//! The supervisor with real built-in connectors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use funnel_runtime::{Backoff, PipelineStatus, Supervisor, SupervisorOptions};
use funnel_store::{MemoryStore, Store};

fn pipelines(text: &str) -> Vec<funnel_config::PipelineConfig> {
    let loaded = funnel_config::parse(text, Path::new("test.yaml"), &Default::default()).unwrap();
    funnel_runtime::registry::validate(&loaded.pipelines).unwrap();
    loaded.pipelines
}

/// A backoff of `min_ms` to `max_ms` milliseconds, otherwise the default one.
fn quick_backoff(min_ms: u64, max_ms: u64) -> Backoff {
    Backoff {
        min_delay: Duration::from_millis(min_ms),
        max_delay: Duration::from_millis(max_ms),
        ..Backoff::default()
    }
}

/// The default supervisor options with `backoff`.
fn with_backoff(backoff: Backoff) -> SupervisorOptions {
    SupervisorOptions {
        backoff,
        ..SupervisorOptions::default()
    }
}

fn yaml(dir: &Path) -> String {
    format!(
        r#"version: "2.2"
pipelines:
  - id: bad
    connectors:
      - id: gen
        type: source
        plugin: builtin:generator
        settings:
          format.type: raw
          format.options.id: int
      - id: out
        type: destination
        plugin: builtin:file
        settings:
          path: {dir}/blocker/out.jsonl
  - id: good
    connectors:
      - id: gen
        type: source
        plugin: builtin:generator
        settings:
          format.type: raw
          format.options.id: int
          recordCount: "100"
      - id: out
        type: destination
        plugin: builtin:file
        settings:
          path: {dir}/good.jsonl
"#,
        dir = dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pipeline_recovers_with_backoff_then_degrades_while_the_others_run_on() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the destination needs a directory: opening it fails, transiently.
    std::fs::write(dir.path().join("blocker"), b"not a directory").unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let options = with_backoff(Backoff {
        factor: 2.0,
        max_retries: 2,
        ..quick_backoff(20, 40)
    });
    let mut supervisor = Supervisor::new(store, options);
    for p in pipelines(&yaml(dir.path())) {
        supervisor.start(p);
    }
    let bad = Arc::clone(&supervisor.states()[0]);
    let mut seen = bad.status.subscribe();
    let watched = Arc::clone(&bad);
    let recovering = tokio::spawn(async move {
        seen.wait_for(|s| *s == PipelineStatus::Recovering)
            .await
            .is_ok()
            // The pending restart is shown while recovering.
            && watched.recovery().is_none_or(|r| r.attempt >= 1 && r.describe().starts_with("restart "))
    });
    tokio::time::timeout(Duration::from_secs(20), supervisor.wait_terminal())
        .await
        .expect("every pipeline ended");
    assert!(
        recovering.await.unwrap(),
        "the failing pipeline never went recovering"
    );
    match bad.current() {
        PipelineStatus::Degraded(e) => {
            assert!(
                matches!(
                    *e,
                    funnel_runtime::Error::RetriesExhausted { attempts: 2, .. }
                ),
                "{e}"
            );
            assert!(
                e.to_string()
                    .starts_with("failed to recover pipeline after 2 attempts"),
                "{e}"
            );
        }
        other => panic!("expected degraded, got {other:?}"),
    }
    let good = &supervisor.states()[1];
    assert_eq!(good.current(), PipelineStatus::Finished);
    let lines = std::fs::read_to_string(dir.path().join("good.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 100);
    supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_stops_a_running_pipeline_and_keeps_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = yaml(dir.path())
        .split("  - id: good")
        .nth(1)
        .map(|good| {
            format!(
                "version: \"2.2\"\npipelines:\n  - id: good{}",
                good.replace("\"100\"", "\"-1\"")
            )
        })
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut supervisor = Supervisor::new(Arc::clone(&store), SupervisorOptions::default());
    for p in pipelines(&text) {
        supervisor.start(p);
    }
    let state = Arc::clone(&supervisor.states()[0]);
    let mut status = state.status.subscribe();
    status
        .wait_for(|s| *s == PipelineStatus::Running)
        .await
        .unwrap();
    let out = dir.path().join("good.jsonl");
    funnel_test_utils::wait_until("records reach good.jsonl", Duration::from_secs(20), || {
        std::fs::read_to_string(&out).is_ok_and(|text| text.lines().next().is_some())
    })
    .await;
    supervisor.shutdown().await;
    assert_eq!(state.current(), PipelineStatus::Stopped);
    let written = std::fs::read_to_string(dir.path().join("good.jsonl"))
        .unwrap()
        .lines()
        .count();
    let position = store
        .position("good", "gen")
        .await
        .unwrap()
        .expect("a committed position");
    assert_eq!(
        String::from_utf8(position.as_bytes().to_vec()).unwrap(),
        written.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_share_one_file_destination_and_each_commits_its_own_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"version: "2.2"
pipelines:
  - id: two
    connectors:
      - id: a
        type: source
        plugin: builtin:generator
        settings:
          format.type: raw
          format.options.id: int
          recordCount: "50"
      - id: b
        type: source
        plugin: builtin:generator
        settings:
          format.type: raw
          format.options.id: int
          recordCount: "70"
      - id: out
        type: destination
        plugin: builtin:file
        settings:
          path: {}/out.jsonl
"#,
        dir.path().display()
    );
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut supervisor = Supervisor::new(Arc::clone(&store), SupervisorOptions::default());
    for p in pipelines(&text) {
        supervisor.start(p);
    }
    tokio::time::timeout(Duration::from_secs(20), supervisor.wait_terminal())
        .await
        .unwrap();
    assert_eq!(supervisor.states()[0].current(), PipelineStatus::Finished);
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 120);
    let position = |source: &'static str| {
        let store = Arc::clone(&store);
        async move { store.position("two", source).await.unwrap().unwrap() }
    };
    assert_eq!(position("a").await, "50".into());
    assert_eq!(position("b").await, "70".into());
    supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_degrades_at_once_and_keeps_the_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    // The destination's directory does not exist: retrying cannot help.
    let text = yaml(dir.path())
        .split("  - id: good")
        .next()
        .unwrap()
        .replace("blocker/out.jsonl", "missing/out.jsonl");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut supervisor = Supervisor::new(store, SupervisorOptions::default());
    for p in pipelines(&text) {
        supervisor.start(p);
    }
    let state = Arc::clone(&supervisor.states()[0]);
    let mut seen = state.status.subscribe();
    // The first status past running: recovering (a restart) or the terminal one. The
    // default backoff keeps a restarting pipeline recovering for a second, long enough
    // to be seen.
    let first_after_running = tokio::spawn(async move {
        seen.wait_for(|s| *s == PipelineStatus::Recovering || s.is_terminal())
            .await
            .map(|s| s.name())
            .unwrap_or("closed")
    });
    tokio::time::timeout(Duration::from_secs(20), supervisor.wait_terminal())
        .await
        .expect("the pipeline ended");
    let PipelineStatus::Degraded(error) = state.current() else {
        panic!("expected degraded, got {:?}", state.current());
    };
    let funnel_runtime::Error::Worker(funnel_core::Error::Open { task, source }) = &*error else {
        panic!("expected the destination's open error, got {error:?}");
    };
    assert_eq!(task, "bad:out");
    assert_eq!(source.retry(), funnel_core::Retry::Fatal);
    let io = std::error::Error::source(source)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .expect("the io::Error is kept");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(
        first_after_running.await.unwrap(),
        "degraded",
        "a fatal error must not restart the pipeline"
    );
    supervisor.shutdown().await;
}

/// The payloads of the records in OpenCDC JSON file `path`, one a line (none when
/// the file does not exist yet).
fn payloads(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let record = funnel_record::Record::from_json(line.as_bytes()).unwrap();
            match record.payload.after {
                Some(funnel_record::Data::Raw(bytes)) => String::from_utf8(bytes.to_vec()).unwrap(),
                other => panic!("a raw payload, not {other:?}"),
            }
        })
        .collect()
}

/// A pipeline reading `in.txt` in `dir` to `out.jsonl`, refusing the record `bad`,
/// with `dlq` as its `dead-letter-queue` (the default when empty).
fn refusing_pipeline(dir: &Path, dlq: &str) -> Vec<funnel_config::PipelineConfig> {
    let dir = dir.display();
    pipelines(&format!(
        r#"version: "2.2"
pipelines:
  - id: p
    processors:
      - id: reject
        plugin: error
        condition: '{{{{ eq (printf "%s" .Payload.After) "bad" }}}}'
        settings:
          message: this record is refused
    connectors:
      - id: in
        type: source
        plugin: builtin:file
        settings:
          path: {dir}/in.txt
      - id: out
        type: destination
        plugin: builtin:file
        settings:
          path: {dir}/out.jsonl
{dlq}"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_under_the_default_dlq_degrades_the_pipeline_and_what_follows_it_arrives_only_once_a_dlq_takes_it()
 {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nb\nbad\nc\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let options = with_backoff(quick_backoff(10, 20));
    let mut supervisor = Supervisor::new(Arc::clone(&store), options.clone());
    for p in refusing_pipeline(dir.path(), "") {
        supervisor.start(p);
    }
    let state = Arc::clone(&supervisor.states()[0]);
    // Retried forever by default; a record failing the same way degrades it instead.
    tokio::time::timeout(Duration::from_secs(20), supervisor.wait_terminal())
        .await
        .expect("the pipeline restarted forever");
    match state.current() {
        PipelineStatus::Degraded(e) => {
            assert!(
                matches!(
                    *e,
                    funnel_runtime::Error::RecordKeepsFailing { failures: 3, .. }
                ),
                "{e}"
            );
            let text = e.to_string();
            assert!(text.contains("this record is refused"), "{text}");
            assert!(
                text.contains(&format!("file {}, line 3", input.display())),
                "{text}"
            );
        }
        other => panic!("expected degraded, got {other:?}"),
    }
    supervisor.shutdown().await;
    // The records before it, each once over three runs; nothing after it (I4).
    assert_eq!(payloads(&out), ["a", "b"]);

    // Resolved: the bad record goes to a DLQ now, and the pipeline goes on from it.
    let mut supervisor = Supervisor::new(store, options);
    let dlq = format!(
        "    dead-letter-queue:\n      plugin: builtin:file\n      settings:\n        path: {}/dlq.jsonl\n      window-size: 0\n",
        dir.path().display()
    );
    for p in refusing_pipeline(dir.path(), &dlq) {
        supervisor.start(p);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while payloads(&out).len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "c never arrived: {:?}",
            payloads(&out)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    supervisor.shutdown().await;
    assert_eq!(payloads(&out), ["a", "b", "c"]);
    let dead = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("this record is refused"), "{dead}");
}
