//! A pipeline file written for Conduit, with the processors its users reach for,
//! produces through `funnel run` the records Conduit produces: the golden files in
//! `tests/golden/conduit-users/` hold the input lines (Debezium change events), the
//! pipeline file, and the expected destination and dead-letter-queue lines.
//!
//! The pipeline decodes each line (`json.decode`, a source processor), unwraps the
//! Debezium envelope, drops deletes (`filter` with a condition), renames and excludes
//! fields, sends banned users to the DLQ (`error` with a condition and a templated
//! message), tags the team in metadata (`field.set` with a template value) and greets
//! the user in JavaScript (`custom.javascript`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");

fn golden(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/conduit-users");
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// JSON lines, with the one value no run can reproduce (the DLQ record's creation
/// time) removed, and file source positions reduced to their byte offset.
fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("opencdc.createdAt");
            }
            offsets_only(&mut v);
            v
        })
        .collect()
}

/// Replaces every file source position (`f1:{files}:{offset}:...`, which also names the
/// file so that rotation is followed) by its byte offset in decimal, Conduit's file
/// position, at any depth (the DLQ record holds the original's position too).
fn offsets_only(value: &mut serde_json::Value) {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "position"
                    && let Some(text) = v.as_str()
                    && let Ok(bytes) = STANDARD.decode(text)
                    && let Some(rest) = bytes.strip_prefix(b"f1:")
                {
                    let fields: Vec<&[u8]> = rest.split(|&b| b == b':').collect();
                    let hex = std::str::from_utf8(fields[1]).unwrap();
                    let offset = u64::from_str_radix(hex, 16).unwrap();
                    *v = STANDARD.encode(offset.to_string()).into();
                } else {
                    offsets_only(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(offsets_only),
        _ => {}
    }
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_conduit_pipeline_with_builtin_and_javascript_processors_writes_what_conduit_writes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/users.yaml"),
        golden("pipeline.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("in.jsonl"), golden("in.jsonl")).unwrap();
    let expected_out = lines(&golden("out.jsonl"));
    let expected_dlq = lines(&golden("dlq.jsonl"));

    let mut child = Command::new(FUNNEL)
        .current_dir(dir.path())
        .args(["run", "--api.http.address", ""])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The file source follows its file: wait for every expected line (or an early
    // exit), then stop. No extra line can slip in unseen: the destination writes in
    // read order and the filtered delete is the third of five input lines, so once the
    // last expected line is written every line before it was written or dropped; the
    // graceful stop drains what was read before `funnel` exits, and the summary line
    // checked below says all five were read and acked exactly once.
    let out = dir.path().join("out.jsonl");
    let dlq = dir.path().join("dlq.jsonl");
    funnel_test_utils::wait_until_blocking(
        "every expected line is written",
        Duration::from_secs(30),
        || {
            (line_count(&out) >= expected_out.len() && line_count(&dlq) >= expected_dlq.len())
                || child.try_wait().unwrap().is_some()
        },
    );
    funnel_test_utils::process::signal(&child, "TERM");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");

    let written = lines(&std::fs::read_to_string(&out).unwrap_or_default());
    let dead = lines(&std::fs::read_to_string(&dlq).unwrap_or_default());
    assert_eq!(
        written, expected_out,
        "destination records differ; log:\n{log}"
    );
    assert_eq!(dead, expected_dlq, "DLQ records differ; log:\n{log}");
    assert!(
        log.contains("read=5 written=3 acked=5 dlq=1"),
        "every line acked once (one filtered, one in the DLQ): {log}"
    );
}
