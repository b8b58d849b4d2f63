//! The supervisor with real built-in connectors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use funnel_runtime::{Backoff, PipelineState, PipelineStatus, Supervisor, SupervisorOptions};
use funnel_store::{MemoryStore, Store};
use funnel_test_utils::yaml;

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

/// Waits (20 s at most; a pipeline restarting forever fails the test) until every
/// pipeline of `supervisor` has ended, and returns the error `state`'s pipeline is
/// degraded with.
async fn degraded(supervisor: &Supervisor, state: &PipelineState) -> Arc<funnel_runtime::Error> {
    tokio::time::timeout(Duration::from_secs(20), supervisor.wait_terminal())
        .await
        .expect("every pipeline ended");
    match state.current() {
        PipelineStatus::Degraded(error) => error,
        other => panic!("expected degraded, got {other:?}"),
    }
}

/// Generator source `id` of `count` records (`-1`: without end), their positions 1, 2, ...
fn generator(id: &str, count: &str) -> String {
    yaml::connector(
        id,
        "source",
        "builtin:generator",
        &[
            ("format.type", "raw"),
            ("format.options.id", "int"),
            ("recordCount", count),
        ],
    )
}

/// File destination `out` writing to `path`.
fn file_out(path: &Path) -> String {
    yaml::connector(
        "out",
        "destination",
        "builtin:file",
        &[("path", &path.display().to_string())],
    )
}

/// Pipeline `bad`: a generator without end to `<dir>/<parent>/out.jsonl`.
fn bad(dir: &Path, parent: &str) -> String {
    let out = dir.join(parent).join("out.jsonl");
    yaml::pipeline("bad", &[], &[generator("gen", "-1"), file_out(&out)], &[])
}

/// Pipeline `good`: a generator of `count` records to `<dir>/good.jsonl`.
fn good(dir: &Path, count: &str) -> String {
    let out = dir.join("good.jsonl");
    yaml::pipeline("good", &[], &[generator("gen", count), file_out(&out)], &[])
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
    let supervisor = Supervisor::new(store, options);
    let text = yaml::file(&[bad(dir.path(), "blocker"), good(dir.path(), "100")]);
    for p in pipelines(&text) {
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
    let e = degraded(&supervisor, &bad).await;
    assert!(
        recovering.await.unwrap(),
        "the failing pipeline never went recovering"
    );
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
    let good = &supervisor.states()[1];
    assert_eq!(good.current(), PipelineStatus::Finished);
    let lines = std::fs::read_to_string(dir.path().join("good.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 100);
    supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_stops_a_running_pipeline_and_keeps_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let text = yaml::file(&[good(dir.path(), "-1")]);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let supervisor = Supervisor::new(Arc::clone(&store), SupervisorOptions::default());
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
    let text = yaml::file(&[yaml::pipeline(
        "two",
        &[],
        &[
            generator("a", "50"),
            generator("b", "70"),
            file_out(&dir.path().join("out.jsonl")),
        ],
        &[],
    )]);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let supervisor = Supervisor::new(Arc::clone(&store), SupervisorOptions::default());
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
    let text = yaml::file(&[bad(dir.path(), "missing")]);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let supervisor = Supervisor::new(store, SupervisorOptions::default());
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
    let error = degraded(&supervisor, &state).await;
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
    let input = dir.join("in.txt").display().to_string();
    let reject = yaml::processor(
        "reject",
        "error",
        &[(
            "condition",
            r#"'{{ eq (printf "%s" .Payload.After) "bad" }}'"#,
        )],
        &[("message", "this record is refused")],
    );
    let pipeline = yaml::pipeline(
        "p",
        &[],
        &[
            yaml::connector("in", "source", "builtin:file", &[("path", &input)]),
            file_out(&dir.join("out.jsonl")),
        ],
        &[reject],
    );
    pipelines(&(yaml::file(&[pipeline]) + dlq))
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
    let supervisor = Supervisor::new(Arc::clone(&store), options.clone());
    for p in refusing_pipeline(dir.path(), "") {
        supervisor.start(p);
    }
    let state = Arc::clone(&supervisor.states()[0]);
    // Retried forever by default; a record failing the same way degrades it instead.
    let e = degraded(&supervisor, &state).await;
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
    supervisor.shutdown().await;
    // The records before it, each once over three runs; nothing after it (I4).
    assert_eq!(payloads(&out), ["a", "b"]);

    // Resolved: the bad record goes to a DLQ now, and the pipeline goes on from it.
    let supervisor = Supervisor::new(store, options);
    let dlq = format!(
        "    dead-letter-queue:\n      plugin: builtin:file\n      settings:\n        path: {}/dlq.jsonl\n      window-size: 0\n",
        dir.path().display()
    );
    for p in refusing_pipeline(dir.path(), &dlq) {
        supervisor.start(p);
    }
    funnel_test_utils::wait_until("c arrives", Duration::from_secs(20), || {
        payloads(&out).len() >= 3
    })
    .await;
    supervisor.shutdown().await;
    assert_eq!(payloads(&out), ["a", "b", "c"]);
    let dead = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("this record is refused"), "{dead}");
}

#[cfg(feature = "js")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_call_longer_than_its_timeout_fails_the_run_with_the_timeout_error() {
    let dir = tempfile::tempdir().unwrap();
    // Each call takes 3 s; the processor's `timeout` allows 200 ms.
    let slow = yaml::processor(
        "slow",
        "custom.javascript",
        &[("timeout", "200ms")],
        &[(
            "script",
            "function process(r) { var end = Date.now() + 3000; while (Date.now() < end) {} return r; }",
        )],
    );
    let text = yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[
            generator("gen", "1"),
            file_out(&dir.path().join("out.jsonl")),
        ],
        &[slow],
    )]);
    let loaded = pipelines(&text);
    assert_eq!(
        loaded[0].processors[0].timeout,
        Some(Duration::from_millis(200))
    );
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let options = with_backoff(Backoff {
        max_retries: 0,
        ..Backoff::default()
    });
    let supervisor = Supervisor::new(store, options);
    for p in loaded {
        supervisor.start(p);
    }
    let state = Arc::clone(&supervisor.states()[0]);
    let started = std::time::Instant::now();
    let error = degraded(&supervisor, &state).await;
    let funnel_runtime::Error::RetriesExhausted { last, .. } = &*error else {
        panic!("expected the retries to run out, got {error:?}");
    };
    assert!(
        matches!(
            **last,
            funnel_runtime::Error::Worker(funnel_core::Error::ProcessorTimeout { ref task, timeout })
                if task == "slow" && timeout == Duration::from_millis(200)
        ),
        "{last:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the run waited for the call to end: {:?}",
        started.elapsed()
    );
    supervisor.shutdown().await;
}

#[cfg(feature = "webhook")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_outlasts_the_grace_period_aborts_a_processor_stuck_in_a_call() {
    let dir = tempfile::tempdir().unwrap();
    // A server that accepts connections and never answers: each webhook call waits for
    // its (hour-long) request timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let (connected, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
            let _ = connected.send(());
        }
    });
    let hook = yaml::processor(
        "hook",
        "webhook.http",
        &[],
        &[("request.url", &url), ("request.timeout", "1h")],
    );
    let out = dir.path().join("out.jsonl");
    let text = yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[generator("gen", "-1"), file_out(&out)],
        &[hook],
    )]);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let options = SupervisorOptions {
        stop_grace: Duration::from_millis(300),
        ..SupervisorOptions::default()
    };
    let supervisor = Supervisor::new(Arc::clone(&store), options);
    for p in pipelines(&text) {
        supervisor.start(p);
    }
    let state = Arc::clone(&supervisor.states()[0]);
    // The processor is in its call once the server has the request's connection.
    tokio::time::timeout(Duration::from_secs(20), accepted.recv())
        .await
        .expect("the webhook never connected");
    tokio::time::timeout(Duration::from_secs(10), supervisor.shutdown())
        .await
        .expect("the stop waited for the stuck call instead of aborting it");
    assert_eq!(state.current(), PipelineStatus::Stopped);
    assert!(
        !state.drained(),
        "an aborted stop is not a clean drain: a hand-over leaves its lease to expire"
    );
    // Nothing got past the stuck call, so nothing was written or committed.
    assert!(payloads(&out).is_empty());
    assert_eq!(store.position("p", "gen").await.unwrap(), None);
    server.abort();
}

fn endless(id: &str, dir: &Path) -> funnel_config::PipelineConfig {
    let out = format!("{}/{id}.jsonl", dir.display());
    let text = yaml::file(&[yaml::pipeline(
        id,
        &[],
        &[
            yaml::generator("gen", -1, 2000),
            yaml::file_destination("out", &out),
        ],
        &[],
    )]);
    pipelines(&text).remove(0)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_from_no_file_is_stopped_restarted_aborted_and_removed_while_the_other_runs_on()
{
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let supervisor = Supervisor::new(Arc::clone(&store), SupervisorOptions::default());
    assert!(supervisor.start_configured(endless("a", dir.path())).await);
    supervisor.start(endless("b", dir.path()));
    let a = Arc::clone(&supervisor.states()[0]);
    let b = Arc::clone(&supervisor.states()[1]);
    let (a_out, b_out) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    funnel_test_utils::wait_until("both write", Duration::from_secs(20), || {
        lines(&a_out) > 0 && lines(&b_out) > 0
    })
    .await;
    // Running: not started twice.
    assert!(!supervisor.start_configured(endless("a", dir.path())).await);
    assert!(!supervisor.remove_pipeline("a").await);

    assert!(supervisor.stop_pipeline("a").await);
    assert_eq!(a.current(), PipelineStatus::Stopped);
    let stopped_at = lines(&a_out);
    let b_then = lines(&b_out);
    funnel_test_utils::wait_until("b runs on", Duration::from_secs(20), || {
        lines(&b_out) > b_then + 100
    })
    .await;
    assert_eq!(b.current(), PipelineStatus::Running);
    assert_eq!(lines(&a_out), stopped_at, "a wrote after it stopped");

    // Started again: it goes on from its committed position.
    assert!(supervisor.start_configured(endless("a", dir.path())).await);
    funnel_test_utils::wait_until("a writes again", Duration::from_secs(20), || {
        lines(&a_out) > stopped_at + 100
    })
    .await;
    assert!(store.position("a", "gen").await.unwrap().is_some());

    // By force: stopped at once.
    assert!(supervisor.abort_pipeline("a").await);
    assert_eq!(a.current(), PipelineStatus::Stopped);
    assert!(!supervisor.abort_pipeline("nope").await);
    assert!(supervisor.remove_pipeline("a").await);
    assert_eq!(supervisor.states().len(), 1);
    supervisor.shutdown().await;
    assert_eq!(b.current(), PipelineStatus::Stopped);
}
