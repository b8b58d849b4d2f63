#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Hostile files: whatever a pipeline file or `funnel.yaml` holds, reading it takes
//! bounded memory and time, and its errors stay short.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use funnel_config::{ConfigErrors, LoadOptions, engine_settings, parse};

fn opts() -> LoadOptions {
    LoadOptions::with_env(HashMap::new())
}

fn parse_errors(text: &str) -> ConfigErrors {
    match parse(text, Path::new("p.yaml"), &opts()) {
        Ok(loaded) => panic!(
            "expected errors, loaded {} pipelines",
            loaded.pipelines.len()
        ),
        Err(errors) => errors,
    }
}

/// The classic "billion laughs": nine levels of nine aliases each, 9^9 (387 million)
/// strings once expanded, from a text of about 400 bytes.
fn alias_bomb(prefix: &str) -> String {
    let mut text = format!(
        "{prefix}a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
    );
    for level in 1..9u8 {
        let name = char::from(b'a' + level);
        let prev = char::from(b'a' + level - 1);
        let items = vec![format!("*{prev}"); 9].join(",");
        writeln!(text, "{name}: &{name} [{items}]").unwrap();
    }
    text
}

#[test]
fn an_alias_bomb_in_a_pipeline_file_is_refused_at_the_alias_that_crosses_the_bound() {
    let text = alias_bomb("version: \"2.2\"\npipelines: []\n");
    assert!(text.len() < 450, "{} bytes", text.len());
    let errors = parse_errors(&text);
    let error = errors
        .iter()
        .find(|e| e.message.contains("aliases"))
        .unwrap_or_else(|| panic!("no alias error in {errors}"));
    assert_eq!(error.location.file, Path::new("p.yaml"));
    assert!(error.location.line > 3, "{error}");
    assert!(error.message.contains("use fewer aliases"), "{error}");
}

#[test]
fn an_alias_bomb_in_funnel_yaml_is_refused_with_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.yaml");
    std::fs::write(&path, alias_bomb("log:\n  level: info\n")).unwrap();
    let errors = engine_settings(&path).unwrap_err();
    let error = errors
        .iter()
        .find(|e| e.message.contains("aliases"))
        .unwrap_or_else(|| panic!("no alias error in {errors}"));
    assert_eq!(error.location.file, path);
    assert!(error.location.line > 2, "{error}");
}

#[test]
fn aliases_within_the_bounds_still_work() {
    let text = "version: \"2.2\"\npipelines:\n  - id: p\n    connectors:\n      - id: src\n        type: source\n        plugin: builtin:generator\n        settings: &s\n          a: \"1\"\n      - id: dst\n        type: destination\n        plugin: builtin:log\n        settings: *s\n";
    let loaded = parse(text, Path::new("p.yaml"), &opts()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.pipelines[0].connectors[1].settings["a"], "1");
}

#[test]
fn duplicate_key_detection_is_linear_in_the_number_of_keys() {
    // 80,000 distinct keys took 14 s when each key was compared with every earlier one.
    let mut text = String::from("version: \"2.2\"\npipelines: []\nx:\n");
    for i in 0..80_000 {
        writeln!(text, "  key{i}: {i}").unwrap();
    }
    text.push_str("  key17: again\n");
    let started = Instant::now();
    let errors = parse_errors(&text);
    let took = started.elapsed();
    assert!(
        errors
            .iter()
            .any(|e| e.message == "mapping key \"key17\" already defined at line 21"),
        "{errors}"
    );
    // Linear: about 2 s unoptimised on a loaded machine; quadratic: over 100 s.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn errors_about_a_huge_value_quote_only_its_start() {
    let huge = "x".repeat(2 * 1024 * 1024);
    let texts = [
        format!("version: \"{huge}\"\npipelines: []\n"),
        format!("version: \"2.2\"\npipelines:\n  - id: \"{huge}\"\n"),
        format!(
            "version: \"2.2\"\npipelines:\n  - id: p\n    processors:\n      - id: a\n        plugin: b\n        workers: \"{huge}\"\n"
        ),
        format!("version: \"2.2\"\npipelines: []\n\"{huge}\": 1\n\"{huge}\": 2\n"),
    ];
    for text in &texts {
        let errors = parse_errors(text);
        for error in &errors {
            let shown = error.to_string();
            assert!(
                shown.len() < 2048,
                "{} bytes: {}",
                shown.len(),
                &shown[..200]
            );
        }
        assert!(!errors.is_empty());
    }
}
