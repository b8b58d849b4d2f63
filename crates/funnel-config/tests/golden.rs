#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Golden tests: every broken file in `tests/data/broken/` fails to load with exactly the
//! errors in its `.err` file (paths shown relative to that directory), one test per file.
//!
//! Files whose name contains `strict` are loaded with strict environment interpolation.
//! All are loaded with an empty environment. Run with `FUNNEL_BLESS=1` to rewrite the
//! `.err` files from the current output (then review the diff).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use funnel_config::{LoadOptions, load};

fn broken_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/broken")
}

/// The errors `file` fails with, rendered with paths relative to its directory.
fn rendered_errors(file: &Path) -> String {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let opts = LoadOptions {
        strict_env: name.contains("strict"),
        env: Some(HashMap::new()),
    };
    let errors = match load(file, &opts) {
        Ok(loaded) => panic!("{name} loaded without errors: {loaded:?}"),
        Err(errors) => errors,
    };
    let prefix = format!("{}/", broken_dir().display());
    format!("{errors}\n").replace(&prefix, "")
}

fn broken_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(broken_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Compares what `name.yaml` fails with to `name.err`, or rewrites `name.err` under
/// `FUNNEL_BLESS`.
fn check_golden(name: &str) {
    let file = broken_dir().join(format!("{name}.yaml"));
    let golden = file.with_extension("err");
    let actual = rendered_errors(&file);
    if std::env::var_os("FUNNEL_BLESS").is_some() {
        fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected =
        fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    assert_eq!(
        actual, expected,
        "{name}.yaml: the errors differ from {name}.err"
    );
}

/// The golden cases: test name and file name (without extension).
macro_rules! golden {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_golden($name);
            }
        )*

        const CASES: &[&str] = &[$($name),*];
    };
}

golden! {
    a_yaml_syntax_error_is_reported_with_its_line_and_column => "bad-syntax",
    an_unknown_major_version_is_rejected => "unknown-major",
    a_connector_without_a_plugin_is_rejected => "missing-connector-plugin",
    two_connectors_with_one_id_are_rejected_naming_the_first => "duplicate-connector-ids",
    a_status_other_than_running_or_stopped_is_rejected => "bad-status",
    a_negative_dlq_window_size_is_rejected => "negative-dlq-window",
    workers_that_is_not_an_integer_is_a_type_error => "workers-abc",
    an_unset_variable_in_strict_mode_is_an_error_at_its_scalar => "unset-variable-strict",
    every_problem_of_a_file_is_reported_at_once => "many-problems",
    version_1_errors_name_settings_by_map_keys => "v1-missing-plugin",
}

#[test]
fn every_broken_file_has_a_golden_test() {
    for file in broken_files() {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(
            CASES.contains(&name.as_str()),
            "{name}.yaml has no golden test"
        );
    }
}

#[test]
fn every_golden_file_has_a_broken_file() {
    for entry in fs::read_dir(broken_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "err") {
            assert!(
                path.with_extension("yaml").exists(),
                "{} has no .yaml file",
                path.display()
            );
        }
    }
}
