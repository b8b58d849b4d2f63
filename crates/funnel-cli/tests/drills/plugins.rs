//! Conduit standalone connectors (written with Conduit's Python SDK, see
//! `funnel_test_utils::conduit`) in the connectors directory of `funnel run`: records
//! delivered once and in order, positions resumed after a restart, nothing lost through
//! SIGKILLs, and no plugin process left behind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use funnel_test_utils::{conduit, yaml};

use crate::harness::{Drill, Rng, assert_nothing_lost, generator_positions, tail};
use crate::pipelines::{file_destination, generator, pipeline};

/// Records a SIGKILL may replay: the worker's credit window plus one batch.
const REPLAY_BOUND: usize = 8192 + 1;

/// The counter source plugin (records `1..=count`, positions `1`, `2`, ...).
fn counter_source(count: u64) -> String {
    yaml::connector(
        "src",
        "source",
        "standalone:counter",
        &[("count", &count.to_string())],
    )
}

/// The collect destination plugin, appending JSON lines to `path`.
fn collect_destination(path: &str) -> String {
    yaml::connector("dst", "destination", "collect", &[("path", path)])
}

/// Installs the fixtures in the drill's `connectors` directory; the counter's path.
fn install(drill: &Drill) -> PathBuf {
    let dir = drill.path("connectors");
    conduit::install(&dir, "collect", "collect_destination.py");
    conduit::install(&dir, "counter", "counter_source.py")
}

/// Waits until no process runs the plugin at `path`.
fn no_plugin_left(drill: &Drill, path: &std::path::Path) {
    drill.wait_for("no plugin process is left", Duration::from_secs(10), || {
        conduit::running(path) == 0
    });
}

#[test]
fn generator_to_a_python_destination_delivers_every_record_once_in_order() {
    const N: u64 = 2000;
    let drill = Drill::new(&pipeline(
        &generator(N as i64, 0),
        &collect_destination("./collected.jsonl"),
    ));
    install(&drill);
    let (status, log) = drill.run_to_end(&[]);
    assert!(status.success(), "{}", tail(&log));
    let text = std::fs::read_to_string(drill.path("collected.jsonl")).unwrap();
    let positions: Vec<u64> = text
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["position"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(positions, (1..=N).collect::<Vec<_>>());
    no_plugin_left(&drill, &drill.path("connectors/collect"));
}

#[test]
fn a_python_source_to_file_resumes_after_its_committed_position_on_restart() {
    let drill = Drill::new(&pipeline(
        &counter_source(300),
        &file_destination("./out.jsonl"),
    ));
    let plugin = install(&drill);
    let mut funnel = drill.start(&[]);
    drill.wait_for("300 records", Duration::from_secs(60), || {
        drill.records("out.jsonl").len() >= 300
    });
    funnel.signal("TERM", &drill);
    no_plugin_left(&drill, &plugin);
    std::fs::write(
        drill.path("pipelines/p.yaml"),
        pipeline(&counter_source(500), &file_destination("./out.jsonl")),
    )
    .unwrap();
    let mut funnel = drill.start(&[]);
    drill.wait_for("500 records", Duration::from_secs(60), || {
        drill.records("out.jsonl").len() >= 500
    });
    funnel.signal("TERM", &drill);
    let positions = generator_positions(&drill.records("out.jsonl"));
    assert_eq!(
        positions,
        (1..=500).collect::<Vec<_>>(),
        "{}",
        tail(&drill.log())
    );
    no_plugin_left(&drill, &plugin);
}

#[test]
fn a_python_source_to_file_loses_no_record_through_sigkills_and_leaves_no_plugin_running() {
    const N: u64 = 3000;
    let drill = Drill::new(&pipeline(
        &counter_source(N),
        &file_destination("./out.jsonl"),
    ));
    let plugin = install(&drill);
    let mut rng = Rng::new("python_source_kill");
    let mut funnel = drill.start(&[]);
    let mut orphans = 0;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(rng.between(300, 1500)));
        funnel.signal("KILL", &drill);
        // The plugin notices (its guard's pipe closed) and goes; count what stays.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while conduit::running(&plugin) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        orphans += conduit::running(&plugin);
        funnel = drill.start(&[]);
    }
    drill.wait_for("every record is written", Duration::from_secs(120), || {
        generator_positions(&drill.records("out.jsonl")).contains(&N)
    });
    funnel.signal("TERM", &drill);
    assert_eq!(orphans, 0, "plugin processes outlived a killed funnel");
    no_plugin_left(&drill, &plugin);
    let got = generator_positions(&drill.records("out.jsonl"));
    assert_nothing_lost("python_source_kill", 1..=N, &got, &drill);
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &got {
        *counts.entry(*p).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= 5 * REPLAY_BOUND,
        "{duplicates} duplicates after 5 kills"
    );
    eprintln!("drill python_source_kill: {N} records, {duplicates} duplicates after 5 kills");
}

#[test]
fn conduits_standalone_connector_example_loads_once_its_connector_is_in_the_directory() {
    // The shape of Conduit's examples/pipelines/pipeline-with-standalone-connector.yaml.
    let example = yaml::file(&[yaml::pipeline(
        "chaos-to-file",
        &[("status", "running")],
        &[
            yaml::connector("chaos-source", "source", "standalone:chaos", &[]),
            yaml::connector(
                "file-destination",
                "destination",
                "builtin:file",
                &[("path", "./example.out")],
            ),
        ],
        &[],
    )]);
    let drill = Drill::new(&example);
    let (status, out) = drill.funnel(&["pipelines", "validate", "./pipelines"]);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("p.yaml:") && out.contains("standalone connector plugin \"chaos\" not found"),
        "{out}"
    );
    conduit::install_with_env(
        &drill.path("my-connectors"),
        "conduit-connector-chaos",
        "counter_source.py",
        &[("COUNTER_PLUGIN_NAME", "chaos")],
    );
    let (status, out) = drill.funnel(&["pipelines", "validate", "./pipelines"]);
    assert!(!status.success(), "not in the default directory: {out}");
    let mine = ["--connectors.path", "./my-connectors"];
    let (status, out) =
        drill.funnel(&[&["pipelines", "validate", "./pipelines"][..], &mine].concat());
    assert!(status.success(), "{out}");
    // Listed beside the built-in connectors, with its parameters.
    let (status, out) =
        drill.funnel(&[&["--json", "connectors", "ls", "--plugins"][..], &mine].concat());
    assert!(status.success(), "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let plugins = listed["result"]["plugins"].as_array().unwrap();
    let chaos = plugins
        .iter()
        .find(|p| p["name"] == "standalone:chaos@v0.1.0")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(chaos["sourceParams"]["count"]["type"], "TYPE_INT");
    assert_eq!(chaos["sourceParams"]["count"]["default"], "3");
    assert!(plugins.iter().any(|p| p["name"] == "builtin:file"), "{out}");
    let (status, out) = drill.funnel(&["connectors", "ls", "--plugins"]);
    assert!(status.success(), "{out}");
    assert!(
        !out.contains("standalone:chaos"),
        "not in the default directory: {out}"
    );
}

#[test]
fn settings_of_a_plugin_connector_are_checked_against_its_specification_with_file_and_line() {
    let drill = Drill::new(&pipeline(
        &yaml::connector("src", "source", "counter", &[("count", "-4")]),
        &yaml::connector("dst", "destination", "standalone:collect@v0.2.0", &[]),
    ));
    install(&drill);
    let (status, out) = drill.funnel(&["pipelines", "validate", "./pipelines"]);
    assert!(!status.success(), "{out}");
    assert!(
        out.lines().any(|l| l.contains("p.yaml:")
            && l.contains("count")
            && l.contains("should be greater than 0")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("p.yaml:")
            && l.contains("path")
            && l.contains("required parameter is not provided")),
        "{out}"
    );
    let wrong_version = pipeline(
        &counter_source(3),
        &yaml::connector(
            "dst",
            "destination",
            "standalone:collect@v9",
            &[("path", "x")],
        ),
    );
    std::fs::write(drill.path("pipelines/p.yaml"), wrong_version).unwrap();
    let (status, out) = drill.funnel(&["pipelines", "validate", "./pipelines"]);
    assert!(!status.success(), "{out}");
    assert!(out.contains("available versions: [v0.2.0]"), "{out}");
}

#[test]
fn plugins_get_the_connector_id_log_level_and_message_size_funnel_is_given() {
    let drill = Drill::new(&pipeline(
        &counter_source(1),
        &file_destination("./out.jsonl"),
    ))
    .with_args(&[
        "--log.level",
        "debug",
        "--connectors.max-receive-record-size",
        "1234",
    ]);
    let plugin = install(&drill);
    let mut funnel = drill.start(&[]);
    drill.wait_for("the record", Duration::from_secs(60), || {
        !drill.records("out.jsonl").is_empty()
    });
    funnel.signal("TERM", &drill);
    let records = drill.records("out.jsonl");
    let meta = &records[0].metadata;
    assert_eq!(meta.get("test.connector.id"), Some("p:src"));
    assert_eq!(meta.get("test.log.level"), Some("debug"));
    assert_eq!(meta.get("test.max.size"), Some("1234"));
    no_plugin_left(&drill, &plugin);
}

#[test]
fn a_plugin_that_never_answers_configure_fails_its_pipeline_after_the_call_timeout() {
    let drill = Drill::new(&pipeline(
        &yaml::connector(
            "src",
            "source",
            "standalone:counter",
            &[("configure_hangs", "true")],
        ),
        &file_destination("./out.jsonl"),
    ));
    let plugin = install(&drill);
    let (status, log) = drill.run_to_end(&[
        "--connectors.call-timeout",
        "1s",
        "--pipelines.error-recovery.max-retries",
        "0",
        "--pipelines.exit-on-degraded",
    ]);
    assert!(!status.success(), "{}", tail(&log));
    assert!(
        log.contains("could not configure source connector plugin: no answer within 1s"),
        "{}",
        tail(&log)
    );
    no_plugin_left(&drill, &plugin);
}

#[test]
fn a_python_destination_is_told_created_then_updated_then_deleted_by_pipelines_delete() {
    let drill = Drill::new(&pipeline(
        &generator(10, 0),
        &collect_destination("./a.jsonl"),
    ));
    let calls = drill.path("lifecycle.jsonl");
    let plugin = conduit::install_collect_destination(&drill.path("connectors"), &calls);
    let recorded = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for _ in 0..2 {
        let (status, log) = drill.run_to_end(&[]);
        assert!(status.success(), "{}", tail(&log));
    }
    let events = recorded();
    assert_eq!(events.len(), 1, "created once, then nothing: {events:?}");
    assert_eq!(events[0]["event"], "created");
    assert_eq!(events[0]["config"]["path"], "./a.jsonl");
    std::fs::write(
        drill.path("pipelines/p.yaml"),
        pipeline(&generator(10, 0), &collect_destination("./b.jsonl")),
    )
    .unwrap();
    let (status, log) = drill.run_to_end(&[]);
    assert!(status.success(), "{}", tail(&log));
    let events = recorded();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["event"], "updated");
    assert_eq!(events[1]["before"]["path"], "./a.jsonl");
    assert_eq!(events[1]["after"]["path"], "./b.jsonl");
    let (status, out) = drill.funnel(&["pipelines", "delete", "p", "--yes"]);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("LifecycleOnDeleted"),
        "the plan says so: {out}"
    );
    let events = recorded();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2]["event"], "deleted");
    assert_eq!(events[2]["config"]["path"], "./b.jsonl");
    no_plugin_left(&drill, &plugin);
}
