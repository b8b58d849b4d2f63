#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Loading: files and directories, documents, versions, defaults, warnings, errors.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use funnel_config::{
    ConfigError, ConfigErrorKind, ConfigErrors, ConnectorKind, LoadOptions, Loaded, Location,
    PipelineStatus, load, parse,
};

fn opts() -> LoadOptions {
    LoadOptions::with_env(HashMap::new())
}

fn ok(text: &str) -> Loaded {
    parse(text, Path::new("p.yaml"), &opts()).unwrap_or_else(|errors| panic!("{errors}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, Path::new("p.yaml"), &opts()) {
        Ok(loaded) => panic!("expected errors, loaded {loaded:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn warnings(loaded: &Loaded) -> Vec<String> {
    loaded.warnings.iter().map(ToString::to_string).collect()
}

fn pipeline(id: &str) -> String {
    format!(
        "version: \"2.2\"\npipelines:\n  - id: {id}\n    connectors:\n      - id: src\n        type: source\n        plugin: builtin:generator\n"
    )
}

#[test]
fn several_documents_and_several_pipelines_per_document_load_in_file_order() {
    let loaded = ok(
        "version: 2.2\npipelines:\n  - id: a\n  - id: b\n---\nversion: 1.1\npipelines:\n  c: {}\n  d: {}\n---\n# empty\n---\nversion: 2.0\npipelines:\n  - id: e\n",
    );
    let ids: Vec<&str> = loaded.pipelines.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b", "c", "d", "e"]);
    assert_eq!(loaded.pipelines[2].location, Location::new("p.yaml", 8, 6));
}

#[test]
fn a_directory_loads_its_yaml_files_sorted_by_name_without_recursing() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("b.yaml"), pipeline("from-b")).unwrap();
    fs::write(dir.path().join("A.YML"), pipeline("from-a")).unwrap();
    fs::write(dir.path().join("c.Yaml"), pipeline("from-c")).unwrap();
    fs::write(dir.path().join("notes.txt"), pipeline("from-txt")).unwrap();
    fs::write(dir.path().join("backup.yaml.bak"), pipeline("from-bak")).unwrap();
    fs::create_dir(dir.path().join("nested.yaml")).unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub/d.yaml"), pipeline("from-sub")).unwrap();

    let loaded = load(dir.path(), &opts()).unwrap_or_else(|errors| panic!("{errors}"));
    let ids: Vec<&str> = loaded.pipelines.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["from-a", "from-b", "from-c"]);
    assert_eq!(loaded.pipelines[1].location.file, dir.path().join("b.yaml"));
}

#[test]
fn a_file_named_directly_loads_whatever_its_extension() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.conf");
    fs::write(&file, pipeline("direct")).unwrap();
    let loaded = load(&file, &opts()).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(loaded.pipelines[0].id, "direct");
    assert_eq!(loaded.files, vec![file]);
}

#[test]
fn an_empty_directory_loads_no_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(dir.path(), &opts()).unwrap();
    assert!(loaded.pipelines.is_empty());
}

#[test]
fn a_missing_path_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let errors = load(&missing, &opts()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.errors()[0].kind, ConfigErrorKind::Io);
    assert!(
        errors.to_string().starts_with(&format!(
            "{}: cannot read the pipelines path: ",
            missing.display()
        )),
        "{errors}"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_and_other_files_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.yaml"), b"version: \"2.2\"\n\xff\xfe\n").unwrap();
    fs::write(
        dir.path().join("b.yaml"),
        "version: 2.2\npipelines:\n  - status: on\n",
    )
    .unwrap();
    let errors = load(dir.path(), &opts()).unwrap_err();
    let kinds: Vec<ConfigErrorKind> = errors.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ConfigErrorKind::Io,
            ConfigErrorKind::Invalid,
            ConfigErrorKind::Invalid
        ],
        "{errors}"
    );
}

#[test]
fn duplicate_pipeline_ids_across_two_files_are_an_error_on_each_naming_both_locations() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("one.yaml"), pipeline("shared")).unwrap();
    fs::write(
        dir.path().join("two.yaml"),
        format!("# second\n{}", pipeline("shared")),
    )
    .unwrap();
    let errors = load(dir.path(), &opts()).unwrap_err();
    let one = dir.path().join("one.yaml");
    let two = dir.path().join("two.yaml");
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        vec![
            format!(
                "{}:3:9: pipelines[0].id: duplicate pipeline id \"shared\": also defined at {}:4:9; pipeline ids must be unique across all pipeline files",
                one.display(),
                two.display()
            ),
            format!(
                "{}:4:9: pipelines[0].id: duplicate pipeline id \"shared\": also defined at {}:3:9; pipeline ids must be unique across all pipeline files",
                two.display(),
                one.display()
            ),
        ]
    );
}

#[test]
fn duplicate_pipeline_ids_in_one_file_are_an_error_on_each() {
    let errors = errors("version: 2.2\npipelines:\n  - id: x\n  - id: y\n  - id: x\n");
    assert_eq!(
        errors,
        vec![
            "p.yaml:3:9: pipelines[0].id: duplicate pipeline id \"x\": also defined at line 5, column 9; pipeline ids must be unique across all pipeline files",
            "p.yaml:5:9: pipelines[2].id: duplicate pipeline id \"x\": also defined at line 3, column 9; pipeline ids must be unique across all pipeline files",
        ]
    );
}

#[test]
fn pipeline_names_must_be_unique() {
    let errors =
        errors("version: 2.2\npipelines:\n  - id: x\n    name: Shop\n  - id: y\n    name: Shop\n");
    assert_eq!(
        errors,
        vec![
            "p.yaml:6:11: pipelines[1].name: duplicate pipeline name \"Shop\": pipeline \"x\" at line 4, column 11 has it already; names must be unique (they label metrics)"
        ]
    );
}

#[test]
fn defaults_are_filled_in_as_conduit_does() {
    let loaded = ok(
        "version: 2.2\npipelines:\n  - id: bare\n    connectors:\n      - id: c\n        type: destination\n        plugin: builtin:log\n    processors:\n      - id: p\n        plugin: noop\n        workers: 0\n",
    );
    let p = &loaded.pipelines[0];
    assert_eq!(p.status, PipelineStatus::Running);
    assert_eq!(p.name, "bare");
    assert_eq!(p.description, "");
    assert_eq!(p.connectors[0].name, "c");
    assert_eq!(p.connectors[0].kind, ConnectorKind::Destination);
    assert!(p.connectors[0].settings.is_empty());
    assert_eq!(p.processors[0].workers, 1);
    assert_eq!(p.processors[0].condition, None);
    assert_eq!(p.dlq.plugin, "builtin:log");
    assert_eq!(p.dlq.settings["level"], "warn");
    assert_eq!(p.dlq.settings["message"], "record delivery failed");
    assert_eq!(p.dlq.window_size, 1);
    assert_eq!(p.dlq.window_nack_threshold, 0);
    assert_eq!(p.dlq.location, p.location);
}

#[test]
fn dlq_settings_default_to_the_log_settings_even_for_another_plugin_unless_given_empty() {
    let loaded = ok(
        "version: 2.2\npipelines:\n  - id: a\n    dead-letter-queue:\n      plugin: builtin:file\n  - id: b\n    dead-letter-queue:\n      plugin: builtin:file\n      settings: {}\n",
    );
    assert_eq!(loaded.pipelines[0].dlq.plugin, "builtin:file");
    assert_eq!(loaded.pipelines[0].dlq.settings.len(), 2);
    assert!(loaded.pipelines[1].dlq.settings.is_empty());
}

#[test]
fn setting_values_of_any_scalar_type_are_kept_as_written() {
    let loaded = ok(
        "version: 2.2\npipelines:\n  - id: a\n    connectors:\n      - id: c\n        type: source\n        plugin: x\n        settings:\n          int: 5\n          bool: true\n          float: 1.50\n          hex: 0x10\n          null: null\n          empty:\n          quoted: '007'\n          5: five\n",
    );
    let settings = &loaded.pipelines[0].connectors[0].settings;
    let pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("5", "five"),
            ("bool", "true"),
            ("empty", ""),
            ("float", "1.50"),
            ("hex", "0x10"),
            ("int", "5"),
            ("null", ""),
            ("quoted", "007"),
        ]
    );
}

#[test]
fn a_setting_that_is_a_list_is_a_type_error() {
    let errors = errors(
        "version: 2.2\npipelines:\n  - id: a\n    connectors:\n      - id: c\n        type: source\n        plugin: x\n        settings:\n          tables: [a, b]\n",
    );
    assert_eq!(
        errors,
        vec![
            "p.yaml:9:19: pipelines[0].connectors[0].settings.tables: expected a string, found a list"
        ]
    );
}

#[test]
fn a_missing_version_falls_back_to_2_2_with_a_warning() {
    let loaded = ok("pipelines:\n  - id: a\n");
    assert_eq!(loaded.pipelines[0].id, "a");
    assert_eq!(
        warnings(&loaded),
        vec!["p.yaml:1:1: version: no version defined, falling back to parser version 2.2"]
    );
}

#[test]
fn an_unknown_minor_version_falls_back_to_the_latest_of_its_major_with_a_warning() {
    let loaded =
        ok("version: 1.7\npipelines:\n  a: {}\n---\nversion: '2.12'\npipelines:\n  - id: b\n");
    let ids: Vec<&str> = loaded.pipelines.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert_eq!(
        warnings(&loaded),
        vec![
            "p.yaml:1:10: version: unrecognized version 1.7, falling back to parser version 1.1",
            "p.yaml:5:10: version: unrecognized version 2.12, falling back to parser version 2.2",
        ]
    );
}

#[test]
fn an_unknown_major_version_is_an_error() {
    let errors = errors("version: 3\npipelines: []\n");
    assert_eq!(
        errors,
        vec![
            "p.yaml:1:10: version: unsupported version \"3\": Funnel reads versions 1.0, 1.1, 2.0, 2.1, 2.2"
        ]
    );
}

#[test]
fn processor_type_is_the_plugin_in_2_0_and_plugin_wins_when_both_are_set() {
    let loaded = ok(
        "version: 2.0\npipelines:\n  - id: a\n    processors:\n      - id: old\n        type: field.set\n      - id: both\n        type: field.set\n        plugin: field.rename\n",
    );
    let p = &loaded.pipelines[0];
    assert_eq!(p.processors[0].plugin, "field.set");
    assert_eq!(p.processors[1].plugin, "field.rename");
    assert_eq!(
        warnings(&loaded),
        vec![
            "p.yaml:9:9: pipelines[0].processors[1].plugin: field plugin was introduced in version 2.2, please update the pipeline config version (it is honoured anyway)"
        ]
    );
}

#[test]
fn processor_type_is_deprecated_in_2_2_but_still_honoured() {
    let loaded = ok(
        "version: 2.2\npipelines:\n  - id: a\n    processors:\n      - id: old\n        type: field.set\n",
    );
    assert_eq!(loaded.pipelines[0].processors[0].plugin, "field.set");
    assert_eq!(
        warnings(&loaded),
        vec![
            "p.yaml:6:9: pipelines[0].processors[0].type: field type is deprecated since version 2.2, use plugin instead (plugin wins when both are set)"
        ]
    );
}

#[test]
fn a_condition_under_version_2_0_is_honoured_with_a_warning() {
    let loaded = ok(
        "version: 2.0\npipelines:\n  - id: a\n    processors:\n      - id: p\n        type: filter\n        condition: '{{ true }}'\n",
    );
    assert_eq!(
        loaded.pipelines[0].processors[0].condition.as_deref(),
        Some("{{ true }}")
    );
    assert_eq!(warnings(&loaded).len(), 1);
    assert!(warnings(&loaded)[0].contains("field condition was introduced in version 2.1"));
}

#[test]
fn a_dead_letter_queue_under_version_1_0_is_honoured_with_a_warning() {
    let loaded =
        ok("version: 1.0\npipelines:\n  a:\n    dead-letter-queue:\n      window-size: 3\n");
    assert_eq!(loaded.pipelines[0].dlq.window_size, 3);
    assert_eq!(
        warnings(&loaded),
        vec![
            "p.yaml:4:5: pipelines.a.dead-letter-queue: field dead-letter-queue was introduced in version 1.1, please update the pipeline config version (it is honoured anyway)"
        ]
    );
}

#[test]
fn unknown_fields_are_warnings_with_their_location_not_errors() {
    let loaded = ok(
        "version: 2.2\nextra: 1\npipelines:\n  - id: a\n    colour: blue\n    connectors:\n      - id: c\n        type: source\n        plugin: x\n        setings: {}\n",
    );
    assert_eq!(
        warnings(&loaded),
        vec![
            "p.yaml:2:1: extra: unknown field \"extra\" (version 2.2), ignored",
            "p.yaml:5:5: pipelines[0].colour: unknown field \"colour\" (version 2.2), ignored",
            "p.yaml:10:9: pipelines[0].connectors[0].setings: unknown field \"setings\" (version 2.2), ignored",
        ]
    );
}

#[test]
fn a_v2_field_in_a_v1_file_is_an_unknown_field() {
    let loaded = ok(
        "version: 1.1\npipelines:\n  a:\n    processors:\n      p:\n        plugin: field.set\n        type: field.set\n",
    );
    assert_eq!(loaded.pipelines[0].processors[0].plugin, "field.set");
    assert_eq!(
        warnings(&loaded),
        vec![
            "p.yaml:6:9: pipelines.a.processors.p.plugin: unknown field \"plugin\" (version 1.1), ignored"
        ]
    );
}

#[test]
fn the_v2_list_layout_under_a_v1_version_is_a_type_error() {
    let errors = errors("version: 1.1\npipelines:\n  - id: a\n");
    assert_eq!(
        errors,
        vec!["p.yaml:3:3: pipelines: expected a mapping keyed by id (version 1.1), found a list"]
    );
}

#[test]
fn integer_fields_accept_a_quoted_integer_and_reject_floats() {
    let loaded = ok(
        "version: 2.2\npipelines:\n  - id: a\n    processors:\n      - id: p\n        plugin: x\n        workers: \"3\"\n",
    );
    assert_eq!(loaded.pipelines[0].processors[0].workers, 3);
    let errors = errors(
        "version: 2.2\npipelines:\n  - id: a\n    processors:\n      - id: p\n        plugin: x\n        workers: 1.5\n",
    );
    assert_eq!(
        errors,
        vec!["p.yaml:7:18: pipelines[0].processors[0].workers: expected an integer, found 1.5"]
    );
}

#[test]
fn a_key_written_twice_in_one_mapping_is_an_error() {
    let errors =
        errors("version: 2.2\npipelines:\n  - id: a\n    status: running\n    status: stopped\n");
    assert_eq!(
        errors,
        vec!["p.yaml:5:5: mapping key \"status\" already defined at line 4"]
    );
}

#[test]
fn ids_and_names_longer_than_the_limits_are_errors() {
    let long = "x".repeat(129);
    let errors = errors(&format!(
        "version: 2.2\npipelines:\n  - id: {long}\n    description: ok\n"
    ));
    assert_eq!(
        errors,
        vec!["p.yaml:3:9: pipelines[0].id: too long: 129 characters, at most 128 are allowed"]
    );
}

#[test]
fn a_full_connector_id_longer_than_256_characters_is_an_error() {
    let pid = "p".repeat(128);
    let cid = "c".repeat(128);
    let errors = errors(&format!(
        "version: 2.2\npipelines:\n  - id: {pid}\n    connectors:\n      - id: {cid}\n        type: source\n        plugin: x\n"
    ));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("too long: the full connector id")
            && errors[0].contains("257 characters"),
        "{}",
        errors[0]
    );
}

#[test]
fn processor_ids_have_no_character_rules_as_in_conduit() {
    let loaded = ok(
        "version: 2.2\npipelines:\n  - id: a\n    processors:\n      - id: my processor!\n        plugin: x\n",
    );
    assert_eq!(loaded.pipelines[0].processors[0].id, "my processor!");
}

#[test]
fn a_missing_connector_type_is_an_error() {
    let errors = errors(
        "version: 2.2\npipelines:\n  - id: a\n    connectors:\n      - id: c\n        plugin: x\n",
    );
    assert_eq!(
        errors,
        vec![
            "p.yaml:5:9: pipelines[0].connectors[0].type: missing: every connector needs a type, source or destination"
        ]
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_a_type_error() {
    let errors = errors("- just\n- a list\n");
    assert_eq!(
        errors,
        vec!["p.yaml:1:1: expected a mapping with `version` and `pipelines`, found a list"]
    );
}

#[test]
fn anchors_and_merge_keys_share_settings_between_connectors() {
    let loaded = ok(
        "version: 2.2\npipelines:\n  - id: a\n    connectors:\n      - id: one\n        type: destination\n        plugin: builtin:file\n        settings: &common\n          sdk.batch.size: 100\n          path: one.jsonl\n      - id: two\n        type: destination\n        plugin: builtin:file\n        settings:\n          <<: *common\n          path: two.jsonl\n",
    );
    let two = &loaded.pipelines[0].connectors[1];
    assert_eq!(two.settings["sdk.batch.size"], "100");
    assert_eq!(two.settings["path"], "two.jsonl");
}

#[test]
fn errors_display_as_file_line_column_setting_message_one_per_line() {
    let errors = ConfigErrors(vec![
        ConfigError::new(
            ConfigErrorKind::Invalid,
            Location::new("a.yaml", 3, 7),
            "pipelines[0].id",
            "bad",
        ),
        ConfigError::new(
            ConfigErrorKind::Syntax,
            Location::new("a.yaml", 9, 1),
            "",
            "YAML syntax error: oops",
        ),
    ]);
    assert_eq!(
        errors.to_string(),
        "a.yaml:3:7: pipelines[0].id: bad\na.yaml:9:1: YAML syntax error: oops"
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once_in_line_order() {
    let errors = errors(
        "version: 2.2\npipelines:\n  - id: a\n    status: nope\n    connectors:\n      - id: c\n        type: source\n  - status: stopped\n",
    );
    assert_eq!(
        errors,
        vec![
            "p.yaml:4:13: pipelines[0].status: invalid status \"nope\": use running or stopped",
            "p.yaml:6:9: pipelines[0].connectors[0].plugin: missing: every connector needs a plugin, such as builtin:file",
            "p.yaml:8:5: pipelines[1].id: missing: every pipeline needs an id",
        ]
    );
}

/// Pipeline `a` of version 2.2 with one processor whose `timeout` line is `timeout`.
fn with_timeout(timeout: &str) -> String {
    format!(
        "version: 2.2\npipelines:\n  - id: a\n    processors:\n      - id: p\n        plugin: x\n{timeout}"
    )
}

#[test]
fn a_processor_timeout_is_a_go_duration_and_absent_empty_or_zero_means_no_bound() {
    let timeout = |line: &str| {
        let loaded = ok(&with_timeout(line));
        assert!(warnings(&loaded).is_empty(), "{:?}", warnings(&loaded));
        loaded.pipelines[0].processors[0].timeout
    };
    assert_eq!(
        timeout("        timeout: 1m30s\n"),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        timeout("        timeout: \"250ms\"\n"),
        Some(Duration::from_millis(250))
    );
    assert_eq!(timeout("        timeout: 0\n"), None);
    assert_eq!(timeout("        timeout:\n"), None);
    assert_eq!(timeout(""), None);
    let v1 =
        ok("version: 1.1\npipelines:\n  a:\n    processors:\n      p: { type: x, timeout: 2s }\n");
    assert!(warnings(&v1).is_empty(), "{:?}", warnings(&v1));
    assert_eq!(
        v1.pipelines[0].processors[0].timeout,
        Some(Duration::from_secs(2))
    );
}

#[test]
fn a_malformed_or_negative_processor_timeout_is_an_error_at_its_value() {
    assert_eq!(
        errors(&with_timeout("        timeout: 5\n")),
        vec![
            "p.yaml:7:18: pipelines[0].processors[0].timeout: time: missing unit in duration \"5\": use a duration such as 30s, 500ms or 1m30s"
        ]
    );
    assert_eq!(
        errors(&with_timeout("        timeout: -1s\n")),
        vec![
            "p.yaml:7:18: pipelines[0].processors[0].timeout: timeout can't be negative (-1s); use 0 for no bound"
        ]
    );
}
