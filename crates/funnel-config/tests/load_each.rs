#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Loading file by file: one bad file leaves the others loaded; ids shared between
//! files fail every file that defines them; comparing pipelines ignores where they
//! were written.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use funnel_config::{FileLoad, LoadOptions, load_each, parse};

fn opts() -> LoadOptions {
    LoadOptions::with_env(HashMap::new())
}

fn pipeline(id: &str) -> String {
    format!(
        "version: \"2.2\"\npipelines:\n  - id: {id}\n    connectors:\n      - id: src\n        type: source\n        plugin: builtin:generator\n"
    )
}

fn ids(load: &FileLoad) -> Vec<String> {
    load.result
        .as_ref()
        .unwrap_or_else(|e| panic!("{}: {e}", load.file.display()))
        .pipelines
        .iter()
        .map(|p| p.id.clone())
        .collect()
}

fn error(load: &FileLoad) -> String {
    match &load.result {
        Ok(loaded) => panic!("{} loaded: {loaded:?}", load.file.display()),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn a_file_with_a_syntax_error_fails_alone_and_the_files_beside_it_load() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.yaml"), pipeline("a")).unwrap();
    fs::write(
        dir.path().join("b.yaml"),
        "version: \"2.2\"\npipelines:\n  - id: b\n    connectors: [\n",
    )
    .unwrap();
    fs::write(dir.path().join("c.yaml"), pipeline("c")).unwrap();
    let loads = load_each(dir.path(), &opts()).unwrap();
    assert_eq!(loads.len(), 3);
    assert_eq!(ids(&loads[0]), ["a"]);
    assert!(error(&loads[1]).contains("b.yaml:"), "{}", error(&loads[1]));
    assert_eq!(ids(&loads[2]), ["c"]);
}

#[test]
fn a_pipeline_id_defined_in_two_files_fails_both_naming_the_other_and_the_rest_load() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.yaml"), pipeline("same")).unwrap();
    fs::write(dir.path().join("b.yaml"), pipeline("same")).unwrap();
    fs::write(dir.path().join("c.yaml"), pipeline("c")).unwrap();
    let loads = load_each(dir.path(), &opts()).unwrap();
    let a = error(&loads[0]);
    let b = error(&loads[1]);
    assert!(
        a.contains("a.yaml:3:9: pipelines[0].id: duplicate pipeline id \"same\": also defined at")
            && a.contains("b.yaml:3:9"),
        "{a}"
    );
    assert!(b.contains("b.yaml:3:9") && b.contains("a.yaml:3:9"), "{b}");
    assert_eq!(ids(&loads[2]), ["c"]);
}

#[test]
fn an_unreadable_pipelines_path_is_the_only_error_of_load_each() {
    let dir = tempfile::tempdir().unwrap();
    let errors = load_each(&dir.path().join("missing"), &opts()).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("cannot read the pipelines path")
    );
}

#[test]
fn pipelines_that_differ_only_in_where_they_were_written_have_the_same_settings() {
    let first = parse(&pipeline("p"), Path::new("p.yaml"), &opts()).unwrap();
    let moved = parse(
        &format!("# a comment\n\n{}", pipeline("p")),
        Path::new("q.yaml"),
        &opts(),
    )
    .unwrap();
    let (a, b) = (&first.pipelines[0], &moved.pipelines[0]);
    assert_ne!(a, b, "the locations differ");
    assert!(a.same_settings(b));
    let changed = parse(
        &pipeline("p").replace("builtin:generator", "builtin:file"),
        Path::new("p.yaml"),
        &opts(),
    )
    .unwrap();
    assert!(!a.same_settings(&changed.pipelines[0]));
}
