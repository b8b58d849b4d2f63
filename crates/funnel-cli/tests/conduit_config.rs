//! End-to-end: a Conduit deployment's `conduit.yaml`, `CONDUIT_*` variables and `run`
//! flags start `funnel run`, with warnings for what means nothing in Funnel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use funnel_test_utils::yaml;

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");

fn pipeline(count: u64) -> String {
    yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[
            yaml::generator("gen", count as i64, 0),
            yaml::file_destination("out", "./out.jsonl"),
        ],
        &[],
    )])
}

/// A Conduit deployment: `conduit.yaml` with every group of Conduit's settings, and a
/// pipelines folder.
fn deployment() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir(dir.path().join("connectors")).unwrap();
    std::fs::write(dir.path().join("pipelines/p.yaml"), pipeline(100)).unwrap();
    std::fs::write(
        dir.path().join("conduit.yaml"),
        r#"db:
  type: badger
  badger:
    path: ./conduit.db
api:
  enabled: true
  http:
    address: ""
  grpc:
    address: ":8084"
log:
  level: info
  format: cli
pipelines:
  path: ./pipelines
  exit-on-degraded: false
  error-recovery:
    min-delay: 1s
    max-delay: 10m
    backoff-factor: 2
    max-retries: -1
    max-retries-window: 5m
connectors:
  path: ./connectors
  max-receive-record-size: 4194304
processors:
  path: ./processors
schema-registry:
  type: builtin
preview:
  pipeline-arch-v2: true
"#,
    )
    .unwrap();
    dir
}

fn funnel(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = Command::new(FUNNEL);
    c.current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_conduit_deployment_with_its_conduit_yaml_and_run_flags_starts_funnel_with_warnings_only() {
    let dir = deployment();
    let out = funnel(
        dir.path(),
        &[
            "run",
            "--pipelines.path",
            "./pipelines",
            "--connectors.path",
            "./connectors",
            "--db.type",
            "badger",
            "--api.grpc.address",
            ":8084",
            "--log.format",
            "cli",
            "--pipelines.exit-on-done",
        ],
        &[("CONDUIT_PROCESSORS_PATH", "./processors")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(lines(&dir.path().join("out.jsonl")), 100, "{stderr}");
    // Positions went to the redb store, not to a badger directory.
    assert!(dir.path().join("funnel.db").exists(), "{stderr}");
    assert!(!dir.path().join("conduit.db").exists(), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ignored Conduit settings"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning naming them all: {stderr}");
    for named in [
        "db.type badger (positions are kept in redb at ./funnel.db)",
        "--api.grpc.address",
        "db.badger.path (",
        "conduit.yaml:4:11)",
        "api.grpc.address (",
        "processors.path (CONDUIT_PROCESSORS_PATH)",
        "schema-registry.type (",
        "preview.pipeline-arch-v2 (",
    ] {
        assert!(
            warnings[0].contains(named),
            "{named} not named: {}",
            warnings[0]
        );
    }
    // The standalone plugin host reads the plugin directory and the message limit, so
    // neither is among the ignored settings.
    for read in ["connectors.path", "connectors.max-receive-record-size"] {
        assert!(
            !warnings[0].contains(read),
            "{read} is read: {}",
            warnings[0]
        );
    }
    // `--log.format cli` is the text format, not JSON.
    assert!(warnings[0].contains(" WARN "), "{}", warnings[0]);
    assert!(
        !warnings[0].trim_start().starts_with('{'),
        "{}",
        warnings[0]
    );
}

#[test]
fn conduit_settings_lose_to_conduit_variables_then_funnel_yaml_then_funnel_variables_then_flags() {
    let dir = deployment();
    std::fs::write(
        dir.path().join("conduit.yaml"),
        "db:\n  type: inmemory\npipelines:\n  exit-on-done: yes\napi:\n  enabled: off\n",
    )
    .unwrap();
    let run = |vars: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["run"];
        all.extend(args);
        let out = funnel(dir.path(), &all, vars);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    // conduit.yaml: an in-memory store, exit when done, no API.
    let stderr = run(&[], &["--db.redb.path", "a.db"]);
    assert!(!dir.path().join("a.db").exists(), "{stderr}");
    assert!(
        !stderr.contains("API listening"),
        "api.enabled: false ignored: {stderr}"
    );
    // CONDUIT_* beats conduit.yaml.
    run(&[("CONDUIT_DB_TYPE", "redb")], &["--db.redb.path", "b.db"]);
    assert!(dir.path().join("b.db").exists());
    // funnel.yaml beats CONDUIT_*.
    std::fs::write(dir.path().join("funnel.yaml"), "db:\n  type: memory\n").unwrap();
    run(&[("CONDUIT_DB_TYPE", "redb")], &["--db.redb.path", "c.db"]);
    assert!(!dir.path().join("c.db").exists());
    // FUNNEL_* beats funnel.yaml, and a flag beats FUNNEL_*.
    run(&[("FUNNEL_DB_TYPE", "redb")], &["--db.redb.path", "d.db"]);
    assert!(dir.path().join("d.db").exists());
    run(
        &[("FUNNEL_DB_TYPE", "redb")],
        &["--db.redb.path", "e.db", "--db.type", "memory"],
    );
    assert!(!dir.path().join("e.db").exists());
}

#[test]
fn conduit_error_recovery_settings_drive_restarts_max_retries_zero_degrades_at_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    // The destination needs a directory where a file is: opening it fails, transiently.
    std::fs::write(dir.path().join("blocker"), "not a directory").unwrap();
    std::fs::write(
        dir.path().join("pipelines/p.yaml"),
        pipeline(10).replace("./out.jsonl", "./blocker/out.jsonl"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conduit.yaml"),
        "pipelines:\n  error-recovery:\n    max-retries: 0\n",
    )
    .unwrap();
    let out = funnel(
        dir.path(),
        &[
            "run",
            "--api.http.address",
            "",
            "--db.type",
            "inmemory",
            "--pipelines.exit-on-error=true",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed to recover pipeline after 0 attempts"),
        "{stderr}"
    );
    // A min-delay above max-delay is refused, naming both.
    let out = funnel(
        dir.path(),
        &[
            "run",
            "--pipelines.error-recovery.min-delay",
            "2m",
            "--pipelines.error-recovery.max-delay",
            "1m",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("min-delay (120s) must not be above max-delay (60s)"),
        "{stderr}"
    );
}
