//! Provisioning from files and reloading them: one bad file never stops the others; a
//! changed file restarts only its pipelines, keeping their positions; a removed file
//! stops its pipelines; a new file starts one; an invalid change keeps the old
//! configuration running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use funnel_config::LoadOptions;
use funnel_runtime::{PipelineStatus, Supervisor, SupervisorOptions, provision};
use funnel_store::{MemoryStore, Store};
use funnel_test_utils::connectors::written_positions;
use funnel_test_utils::yaml;

const WAIT: Duration = Duration::from_secs(30);

/// A generator -> file pipeline `id` writing `out/<id>.jsonl`.
fn pipeline(dir: &Path, id: &str, count: i64, rate: u64, description: &str) -> String {
    let out = dir.join(format!("out/{id}.jsonl")).display().to_string();
    yaml::file(&[yaml::pipeline(
        id,
        &[("description", description)],
        &[
            yaml::generator("gen", count, rate),
            yaml::file_destination("out", &out),
        ],
        &[],
    )])
}

fn options() -> LoadOptions {
    LoadOptions::default()
}

/// Generator positions written by pipeline `id`, complete lines only.
fn positions(dir: &Path, id: &str) -> Vec<u64> {
    written_positions(&dir.join(format!("out/{id}.jsonl")))
}

/// Every position from 1 to the highest written exactly once, in order.
fn assert_exactly_once(positions: &[u64]) {
    let n = positions.len() as u64;
    if positions != (1..=n).collect::<Vec<_>>() {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for p in positions {
            *counts.entry(*p).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(10).collect();
        panic!("not exactly once in order: {n} records, written twice: {twice:?}");
    }
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Supervisor) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    let files = dir.path().join("pipelines");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    (
        dir,
        files,
        Supervisor::new(store, SupervisorOptions::default()),
    )
}

/// Loads the pipeline files again and applies them, as a SIGHUP does.
async fn reload(supervisor: &Supervisor, files: &Path) -> funnel_runtime::ReloadReport {
    supervisor
        .apply(provision(files, &options()).unwrap())
        .await
}

async fn wait_status(supervisor: &Supervisor, id: &str, want: PipelineStatus) {
    let state = supervisor
        .states()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no pipeline {id}"));
    let mut rx = state.status.subscribe();
    tokio::time::timeout(WAIT, rx.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("{id} never became {}", want.name()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_beside_two_good_ones_is_reported_with_its_line_and_the_good_ones_deliver_every_record()
 {
    let (dir, files, supervisor) = setup();
    std::fs::write(
        files.join("a.yaml"),
        pipeline(dir.path(), "a", 500, 0, "one"),
    )
    .unwrap();
    std::fs::write(
        files.join("b.yaml"),
        pipeline(dir.path(), "b", 500, 0, "two").replace("builtin:file", "builtin:nope"),
    )
    .unwrap();
    std::fs::write(
        files.join("c.yaml"),
        pipeline(dir.path(), "c", 500, 0, "three"),
    )
    .unwrap();
    let provision = provision(&files, &options()).unwrap();
    assert_eq!(provision.pipelines.len(), 2);
    let report = supervisor.apply(provision).await;
    assert_eq!(report.started, ["a", "c"]);
    let failures = supervisor.overview().failures();
    assert_eq!(failures.len(), 1);
    let shown = failures[0].to_string();
    assert!(
        shown.starts_with("invalid pipeline file ")
            && shown.contains("b.yaml:16:17: pipelines[0].connectors[1].plugin:"),
        "{shown}"
    );
    wait_status(&supervisor, "a", PipelineStatus::Finished).await;
    wait_status(&supervisor, "c", PipelineStatus::Finished).await;
    assert_eq!(positions(dir.path(), "a"), (1..=500).collect::<Vec<_>>());
    assert_eq!(positions(dir.path(), "c"), (1..=500).collect::<Vec<_>>());
    supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_restarts_only_its_pipeline_five_times_and_every_record_arrives_exactly_once()
 {
    let (dir, files, supervisor) = setup();
    let edited = files.join("edited.yaml");
    std::fs::write(&edited, pipeline(dir.path(), "edited", -1, 2000, "v0")).unwrap();
    std::fs::write(
        files.join("other.yaml"),
        pipeline(dir.path(), "other", -1, 500, "x"),
    )
    .unwrap();
    reload(&supervisor, &files).await;
    let other = supervisor.states()[1].clone();
    wait_status(&supervisor, "edited", PipelineStatus::Running).await;
    let mut written = 0;
    for version in 1..=5 {
        // Records flow between edits.
        funnel_test_utils::wait_until("records written since the last edit", WAIT, || {
            positions(dir.path(), "edited").len() > written + 100
        })
        .await;
        std::fs::write(
            &edited,
            pipeline(dir.path(), "edited", -1, 2000, &format!("v{version}")),
        )
        .unwrap();
        let report = reload(&supervisor, &files).await;
        assert_eq!(report.restarted, ["edited"], "edit {version}");
        assert!(report.started.is_empty() && report.removed.is_empty());
        written = positions(dir.path(), "edited").len();
        let state = supervisor.states()[0].clone();
        assert_eq!(state.config().description, format!("v{version}"));
    }
    // The other pipeline was never restarted: the same state, running all along.
    assert!(Arc::ptr_eq(&other, &supervisor.states()[1]));
    assert_eq!(other.current(), PipelineStatus::Running);
    funnel_test_utils::wait_until("records written after the last edit", WAIT, || {
        positions(dir.path(), "edited").len() > written + 100
    })
    .await;
    supervisor.shutdown().await;
    assert_exactly_once(&positions(dir.path(), "edited"));
    assert_exactly_once(&positions(dir.path(), "other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_keeps_the_old_pipeline_running_and_reports_the_file_until_it_is_fixed() {
    let (dir, files, supervisor) = setup();
    let file = files.join("p.yaml");
    std::fs::write(&file, pipeline(dir.path(), "p", -1, 1000, "good")).unwrap();
    reload(&supervisor, &files).await;
    wait_status(&supervisor, "p", PipelineStatus::Running).await;
    let state = supervisor.states()[0].clone();

    std::fs::write(
        &file,
        "version: \"2.2\"\npipelines:\n  - id: p\n    connectors: [\n",
    )
    .unwrap();
    let report = reload(&supervisor, &files).await;
    assert_eq!(report.kept, ["p"]);
    assert!(report.restarted.is_empty() && report.removed.is_empty());
    assert_eq!(state.current(), PipelineStatus::Running);
    let failures = supervisor.overview().failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].kept, ["p"]);
    assert!(
        failures[0].to_string().contains("p.yaml:")
            && failures[0]
                .to_string()
                .ends_with("still running the previous configuration of p"),
        "{}",
        failures[0]
    );
    let before = positions(dir.path(), "p").len();
    funnel_test_utils::wait_until("the old pipeline keeps writing", WAIT, || {
        positions(dir.path(), "p").len() > before + 100
    })
    .await;

    std::fs::write(&file, pipeline(dir.path(), "p", -1, 1000, "fixed")).unwrap();
    let report = reload(&supervisor, &files).await;
    assert_eq!(report.restarted, ["p"]);
    assert!(supervisor.overview().failures().is_empty());
    wait_status(&supervisor, "p", PipelineStatus::Running).await;
    supervisor.shutdown().await;
    assert_exactly_once(&positions(dir.path(), "p"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_file_stops_its_pipeline_and_a_new_file_starts_one() {
    let (dir, files, supervisor) = setup();
    std::fs::write(
        files.join("old.yaml"),
        pipeline(dir.path(), "old", -1, 1000, "o"),
    )
    .unwrap();
    reload(&supervisor, &files).await;
    wait_status(&supervisor, "old", PipelineStatus::Running).await;
    let old = supervisor.states()[0].clone();
    funnel_test_utils::wait_until("old writes", WAIT, || {
        !positions(dir.path(), "old").is_empty()
    })
    .await;

    std::fs::remove_file(files.join("old.yaml")).unwrap();
    std::fs::write(
        files.join("new.yaml"),
        pipeline(dir.path(), "new", 300, 0, "n"),
    )
    .unwrap();
    let report = reload(&supervisor, &files).await;
    assert_eq!(report.removed, ["old"]);
    assert_eq!(report.started, ["new"]);
    // Drained before it was removed: stopped, with every record it read delivered.
    assert_eq!(old.current(), PipelineStatus::Stopped);
    assert_exactly_once(&positions(dir.path(), "old"));
    let ids: Vec<String> = supervisor.states().iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, ["new"]);
    wait_status(&supervisor, "new", PipelineStatus::Finished).await;
    assert_eq!(positions(dir.path(), "new"), (1..=300).collect::<Vec<_>>());
    supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_edit_stops_and_starts_the_pipeline_and_a_pipeline_moved_to_another_file_is_untouched()
 {
    let (dir, files, supervisor) = setup();
    let text = pipeline(dir.path(), "p", -1, 1000, "d");
    std::fs::write(files.join("a.yaml"), &text).unwrap();
    reload(&supervisor, &files).await;
    wait_status(&supervisor, "p", PipelineStatus::Running).await;
    let state = supervisor.states()[0].clone();

    // Moved to another file, a comment above it: the same configuration, untouched.
    std::fs::remove_file(files.join("a.yaml")).unwrap();
    std::fs::write(files.join("b.yaml"), format!("# moved\n{text}")).unwrap();
    let report = reload(&supervisor, &files).await;
    assert_eq!(report, funnel_runtime::ReloadReport::default());
    assert_eq!(state.current(), PipelineStatus::Running);
    assert_eq!(state.file(), Some(files.join("b.yaml")));

    let stopped = text.replace(
        "    description: d\n",
        "    status: stopped\n    description: d\n",
    );
    std::fs::write(files.join("b.yaml"), &stopped).unwrap();
    let report = reload(&supervisor, &files).await;
    assert_eq!(report.restarted, ["p"]);
    assert_eq!(state.current(), PipelineStatus::Stopped);
    let when_stopped = positions(dir.path(), "p").len();

    std::fs::write(files.join("b.yaml"), &text).unwrap();
    reload(&supervisor, &files).await;
    wait_status(&supervisor, "p", PipelineStatus::Running).await;
    funnel_test_utils::wait_until("p writes again", WAIT, || {
        positions(dir.path(), "p").len() > when_stopped + 100
    })
    .await;
    supervisor.shutdown().await;
    assert_exactly_once(&positions(dir.path(), "p"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_pipeline_whose_file_is_fixed_is_started_again_and_an_unchanged_one_stays_degraded()
 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    let files = dir.path().join("pipelines");
    // Its destination needs a directory where a file is: it cannot open, and with no
    // retries it is degraded at once.
    std::fs::write(dir.path().join("out"), "not a directory").unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let options_no_retries = SupervisorOptions {
        backoff: funnel_runtime::Backoff {
            max_retries: 0,
            ..funnel_runtime::Backoff::default()
        },
        ..SupervisorOptions::default()
    };
    let supervisor = Supervisor::new(store, options_no_retries);
    let broken = pipeline(dir.path(), "p", 200, 0, "d");
    std::fs::write(files.join("p.yaml"), &broken).unwrap();
    reload(&supervisor, &files).await;
    let state = supervisor.states()[0].clone();
    let mut rx = state.status.subscribe();
    tokio::time::timeout(
        WAIT,
        rx.wait_for(|s| matches!(s, PipelineStatus::Degraded(_))),
    )
    .await
    .unwrap()
    .unwrap();
    let report = reload(&supervisor, &files).await;
    assert!(report.restarted.is_empty());
    assert!(matches!(state.current(), PipelineStatus::Degraded(_)));

    let fixed_out = dir.path().join("fixed.jsonl");
    let fixed = broken.replace(
        &dir.path().join("out/p.jsonl").display().to_string(),
        &fixed_out.display().to_string(),
    );
    std::fs::write(files.join("p.yaml"), fixed).unwrap();
    let report = reload(&supervisor, &files).await;
    assert_eq!(report.restarted, ["p"]);
    wait_status(&supervisor, "p", PipelineStatus::Finished).await;
    assert_eq!(
        std::fs::read_to_string(&fixed_out).unwrap().lines().count(),
        200
    );
    supervisor.shutdown().await;
}
