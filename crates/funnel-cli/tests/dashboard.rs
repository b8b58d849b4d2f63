//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core (`tests/browser/dashboard.mjs`) against a running `funnel run` with
//! two pipelines. scripts/setup-services.sh installs both; without them the test is
//! skipped, except under `CI=true`, where that is a failure.
//!
//! Screenshots go to `$CARGO_TARGET_TMPDIR/dashboard-screenshots` (or
//! `FUNNEL_SCREENSHOTS`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use funnel_test_utils::process;
use funnel_test_utils::{http, wait_until_blocking, yaml};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");
const TOKEN: &str = "dashboard-test-token";

/// Where scripts/setup-services.sh installs playwright-core.
fn playwright_dir() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/funnel/browser")
}

/// The browser and the driver, or why they are missing.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("no chromium (apt-get install chromium)")?;
    let driver = playwright_dir();
    if !driver.join("node_modules/playwright-core").exists() {
        return Err(format!("no playwright-core in {}", driver.display()));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("no node".into());
    }
    Ok((chromium, driver))
}

fn pipeline(id: &str, sink: &Path) -> String {
    yaml::pipeline(
        id,
        &[],
        &[
            yaml::generator("gen", -1, 300),
            yaml::file_destination("out", &sink.display().to_string()),
        ],
        &[],
    )
}

#[test]
fn the_dashboard_lists_pipelines_moves_numbers_stops_a_pipeline_and_inspects_records() {
    let (chromium, driver) = match tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{why}: scripts/setup-services.sh installs the browser test's tools")
        }
        Err(why) => {
            eprintln!("skipped: {why} (scripts/setup-services.sh installs them)");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (sink_a, sink_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/both.yaml"),
        yaml::file(&[pipeline("a", &sink_a), pipeline("b", &sink_b)]),
    )
    .unwrap();
    let address = process::free_address();
    let child = process::funnel_command(
        FUNNEL,
        dir.path(),
        &address,
        &["--db.type", "memory", "--api.auth.token", TOKEN],
    )
    .spawn()
    .unwrap();
    wait_until_blocking(
        "the dashboard answers",
        Duration::from_secs(30),
        || matches!(http::get(&address, "/"), Some((200, page)) if page.contains("<title>Funnel")),
    );
    let screenshots = std::env::var_os("FUNNEL_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"),
        PathBuf::from,
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("FUNNEL_URL", format!("http://{address}"))
        .env("FUNNEL_TOKEN", TOKEN)
        .env("SINK_A", &sink_a)
        .env("SINK_B", &sink_b)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT_DIR", &driver)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = process::output_text(&out);
    eprintln!("{report}screenshots in {}", screenshots.display());
    process::stop(child);
    assert!(out.status.success(), "{report}");
}
