//! Settings validation and the registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use funnel_connectors::{
    SDK_DESTINATION_SETTINGS, SDK_SOURCE_SETTINGS, Settings, SettingsError, components,
    destination, source,
};
use funnel_core::ComponentKind;
use funnel_core::settings_of as settings;

fn source_errors(plugin: &str, pairs: &[(&str, &str)]) -> Vec<SettingsError> {
    match source(plugin, "p:c", &settings(pairs), None) {
        Ok(_) => panic!("{plugin} source accepted {pairs:?}"),
        Err(errors) => errors,
    }
}

fn destination_errors(plugin: &str, pairs: &[(&str, &str)]) -> Vec<SettingsError> {
    match destination(plugin, "p:c", &settings(pairs)) {
        Ok(_) => panic!("{plugin} destination accepted {pairs:?}"),
        Err(errors) => errors,
    }
}

/// The errors of a destination's settings, none when it builds.
fn errors_of(plugin: &str, pairs: &[(&str, &str)]) -> Vec<SettingsError> {
    destination(plugin, "p:c", &settings(pairs))
        .err()
        .unwrap_or_default()
}

fn keys(errors: &[SettingsError]) -> Vec<&str> {
    errors.iter().map(|e| e.setting.as_str()).collect()
}

#[test]
fn bad_generator_settings_give_every_error_with_its_setting() {
    let errors = source_errors(
        "generator",
        &[
            ("format.type", "xml"),
            ("recordCount", "ten"),
            ("rate", "-3"),
            ("operations", "create,upsert"),
            ("collections.users.format.type", "structured"),
            ("collections.users.format.options.id", "float"),
            ("collections.files.format.type", "file"),
            ("burst.sleepTime", "soon"),
            ("recrodCount", "5"),
        ],
    );
    let mut got = keys(&errors);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "burst.sleepTime",
            "collections.files.format.options.path",
            "collections.users.format.options.id",
            "format.type",
            "operations",
            "rate",
            "recordCount",
            "recrodCount",
        ],
        "{errors:#?}"
    );
    let message = |key: &str| {
        errors
            .iter()
            .find(|e| e.setting == key)
            .map(ToString::to_string)
            .unwrap()
    };
    assert_eq!(
        message("recrodCount"),
        "recrodCount: unrecognized parameter"
    );
    assert!(message("recordCount").contains("\"ten\""));
    assert!(message("format.type").contains("raw, structured, file"));
    assert!(message("collections.users.format.options.id").contains("float"));
    assert!(message("operations").contains("upsert"));
}

#[test]
fn generator_without_any_format_asks_for_a_collection() {
    let errors = source_errors("generator", &[("recordCount", "5")]);
    assert_eq!(keys(&errors), ["format.type"]);
    assert!(
        errors[0].message.contains("at least one collection"),
        "{errors:?}"
    );
}

#[test]
fn generator_refuses_the_older_list_of_fields_and_shows_the_form_it_takes() {
    let errors = source_errors(
        "generator",
        &[
            ("format.type", "structured"),
            ("format.options", "id:int,name:string"),
            ("collections.users.format.type", "structured"),
            ("collections.users.format.options", "id:int"),
        ],
    );
    let mut refused = keys(&errors);
    refused.sort_unstable();
    assert_eq!(
        refused,
        ["collections.users.format.options", "format.options"],
        "{errors:?}"
    );
    for error in &errors {
        assert!(
            error
                .message
                .starts_with("unrecognized parameter: the generator takes one setting per field, `format.options.<field>: <type>`"),
            "{error:?}"
        );
    }
}

#[test]
fn generator_refuses_read_time_together_with_rate() {
    let errors = source_errors(
        "generator",
        &[("format.type", "raw"), ("rate", "10"), ("readTime", "1s")],
    );
    assert_eq!(keys(&errors), ["readTime"]);
}

#[test]
fn generator_refuses_a_negative_record_count_below_minus_one() {
    let errors = source_errors(
        "generator",
        &[("format.type", "raw"), ("recordCount", "-2")],
    );
    assert_eq!(keys(&errors), ["recordCount"]);
    for ok in ["-1", "0", "7"] {
        let built = source(
            "generator",
            "p:c",
            &settings(&[("format.type", "raw"), ("recordCount", ok)]),
            None,
        );
        assert!(built.is_ok(), "recordCount {ok}");
    }
}

#[test]
fn generator_field_types_are_case_insensitive_as_in_conduit() {
    let built = source(
        "generator",
        "p:c",
        &settings(&[("format.type", "structured"), ("format.options.id", "INT")]),
        None,
    );
    assert!(built.is_ok());
}

#[test]
fn file_connectors_require_a_path() {
    assert_eq!(keys(&source_errors("file", &[])), ["path"]);
    let errors = destination_errors("file", &[("pth", "/tmp/x")]);
    assert_eq!(keys(&errors), ["path", "pth"]);
    assert_eq!(errors[0].message, "required parameter is not provided");
}

#[test]
fn unknown_plugins_are_one_error_about_the_plugin() {
    let errors = source_errors("kinesis", &[]);
    assert_eq!(keys(&errors), ["plugin"]);
    assert!(errors[0].message.contains("kinesis"));
    assert!(errors[0].message.contains("file, generator"), "{errors:?}");

    let errors = destination_errors("generator", &[]);
    assert_eq!(keys(&errors), ["plugin"]);
    assert!(
        errors[0].message.contains("has no destination"),
        "{errors:?}"
    );

    assert_eq!(keys(&source_errors("log", &[])), ["plugin"]);
    assert_eq!(keys(&source_errors("noop", &[])), ["plugin"]);
}

#[test]
fn log_level_must_be_a_known_level() {
    let errors = destination_errors("log", &[("level", "verbose"), ("message", "hi")]);
    assert_eq!(keys(&errors), ["level"]);
    for level in ["trace", "debug", "info", "warn", "error"] {
        assert!(destination("log", "p:c", &settings(&[("level", level)])).is_ok());
    }
}

#[test]
fn noop_has_no_settings_of_its_own() {
    assert_eq!(
        keys(&destination_errors("noop", &[("path", "x")])),
        ["path"]
    );
    assert!(destination("noop", "p:c", &Settings::new()).is_ok());
}

#[test]
fn sdk_settings_are_accepted_by_every_connector() {
    let source_sdk = [
        ("sdk.batch.size", "100"),
        ("sdk.batch.delay", "250ms"),
        ("sdk.schema.extract.type", "avro"),
        ("sdk.schema.extract.payload.enabled", "false"),
        ("sdk.schema.extract.payload.subject", "payload"),
        ("sdk.schema.extract.key.enabled", "true"),
        ("sdk.schema.extract.key.subject", "key"),
        ("sdk.schema.context.enabled", "false"),
        ("sdk.schema.context.name", "ctx"),
    ];
    let destination_sdk = [
        ("sdk.batch.size", "100"),
        ("sdk.batch.delay", "1s"),
        ("sdk.rate.perSecond", "2.5"),
        ("sdk.rate.burst", "10"),
        ("sdk.record.format", "opencdc/json"),
        ("sdk.record.format.options", ""),
        ("sdk.schema.extract.payload.enabled", "true"),
        ("sdk.schema.extract.key.enabled", "false"),
    ];
    let mut generator = source_sdk.to_vec();
    generator.push(("format.type", "raw"));
    assert!(source("generator", "p:c", &settings(&generator), None).is_ok());
    let mut file = source_sdk.to_vec();
    file.push(("path", "/tmp/in.txt"));
    assert!(source("file", "p:c", &settings(&file), None).is_ok());
    for plugin in ["file", "log", "noop"] {
        let mut pairs = destination_sdk.to_vec();
        if plugin == "file" {
            pairs.push(("path", "/tmp/out.txt"));
        }
        assert!(
            destination(plugin, "p:c", &settings(&pairs)).is_ok(),
            "{plugin}"
        );
    }
}

#[test]
fn bad_sdk_values_and_unknown_sdk_keys_are_errors() {
    let errors = source_errors(
        "generator",
        &[
            ("format.type", "raw"),
            ("sdk.batch.size", "-1"),
            ("sdk.batch.delay", "forever"),
            ("sdk.schema.extract.type", "protobuf"),
            ("sdk.bogus", "1"),
        ],
    );
    assert_eq!(
        keys(&errors),
        [
            "sdk.batch.size",
            "sdk.batch.delay",
            "sdk.schema.extract.type",
            "sdk.bogus"
        ]
    );
}

#[test]
fn unknown_record_format_names_are_refused() {
    for format in ["debezium", "avro", "opencdc/avro", "Template"] {
        let errors = destination_errors(
            "file",
            &[("path", "/tmp/out.txt"), ("sdk.record.format", format)],
        );
        assert_eq!(keys(&errors), ["sdk.record.format"], "{format}");
        assert!(errors[0].message.contains("opencdc/json"), "{format}");
    }
    for format in ["opencdc/json", "debezium/json", ""] {
        let errors = errors_of(
            "file",
            &[("path", "/tmp/out.txt"), ("sdk.record.format", format)],
        );
        assert!(errors.is_empty(), "{format}: {errors:?}");
    }
}

#[test]
fn a_template_record_format_needs_a_template_that_parses_in_its_options() {
    let with = |options: &[(&'static str, &'static str)]| {
        let mut all = vec![("path", "/tmp/out.txt"), ("sdk.record.format", "template")];
        all.extend_from_slice(options);
        errors_of("file", &all)
    };
    assert!(
        with(&[(
            "sdk.record.format.options",
            r#"{{ printf "%s" .Payload.After }}"#
        )])
        .is_empty()
    );
    for options in [&[][..], &[("sdk.record.format.options", "")][..]] {
        let errors = with(options);
        assert_eq!(keys(&errors), ["sdk.record.format.options"]);
        assert!(errors[0].message.contains("required"), "{errors:?}");
    }
    let errors = with(&[("sdk.record.format.options", "{{ nope .Key }}")]);
    assert_eq!(keys(&errors), ["sdk.record.format.options"]);
    assert!(
        errors[0].message.contains(r#"function "nope" not defined"#),
        "{errors:?}"
    );
    // Every destination that writes records as bytes checks it.
    for (plugin, settings) in [
        ("log", vec![]),
        (
            "nats",
            vec![("urls", "nats://127.0.0.1:4222"), ("subject", "x")],
        ),
        (
            "mqtt",
            vec![("url", "tcp://127.0.0.1:1883"), ("topic", "x")],
        ),
        ("http", vec![("url", "http://127.0.0.1:1/in")]),
    ] {
        let mut all = settings;
        all.extend([
            ("sdk.record.format", "template"),
            ("sdk.record.format.options", "{{ .Key"),
        ]);
        let errors = destination_errors(plugin, &all);
        assert_eq!(
            keys(&errors),
            ["sdk.record.format.options"],
            "{plugin}: {errors:?}"
        );
    }
}

#[test]
fn the_registry_lists_every_builtin_with_its_settings() {
    let table = components();
    let entries: Vec<(&str, ComponentKind)> = table.iter().map(|c| (c.name, c.kind())).collect();
    #[allow(unused_mut)] // only the `kafka` feature adds to it
    let mut expected = vec![
        ("file", ComponentKind::Source),
        ("file", ComponentKind::Destination),
        ("generator", ComponentKind::Source),
        ("http", ComponentKind::Source),
        ("http", ComponentKind::Destination),
        ("log", ComponentKind::Destination),
        ("noop", ComponentKind::Destination),
        ("postgres", ComponentKind::Source),
        ("postgres", ComponentKind::Destination),
        ("mysql", ComponentKind::Source),
        ("mysql", ComponentKind::Destination),
        ("rabbitmq", ComponentKind::Source),
        ("rabbitmq", ComponentKind::Destination),
        ("nats", ComponentKind::Source),
        ("nats", ComponentKind::Destination),
        ("mqtt", ComponentKind::Source),
        ("mqtt", ComponentKind::Destination),
        ("redis", ComponentKind::Source),
        ("redis", ComponentKind::Destination),
        ("s3", ComponentKind::Source),
        ("s3", ComponentKind::Destination),
    ];
    #[cfg(feature = "kafka")]
    expected.splice(
        5..5,
        [
            ("kafka", ComponentKind::Source),
            ("kafka", ComponentKind::Destination),
        ],
    );
    assert_eq!(entries, expected);
    for component in &table {
        assert!(!component.summary.is_empty());
        let sdk = match component.kind() {
            ComponentKind::Source => SDK_SOURCE_SETTINGS,
            _ => SDK_DESTINATION_SETTINGS,
        };
        for setting in sdk {
            assert!(
                component.settings().any(|s| s == setting),
                "{} lacks {}",
                component.name,
                setting.name
            );
        }
        for setting in component.settings() {
            assert!(!setting.description.is_empty(), "{}", setting.name);
        }
    }
    let find = |name, kind| {
        table
            .iter()
            .find(|c| c.name == name && c.kind() == kind)
            .unwrap()
    };
    let file = find("file", ComponentKind::Source);
    assert!(file.settings().any(|s| s.name == "path" && s.required));
    let record_count = find("generator", ComponentKind::Source)
        .settings()
        .find(|s| s.name == "recordCount")
        .unwrap();
    assert_eq!(record_count.default, Some("-1"));
    let postgres = find("postgres", ComponentKind::Source);
    assert!(postgres.check.is_some() && postgres.cleanup.is_some());
    assert!(find("file", ComponentKind::Destination).check.is_some());
}

#[test]
fn building_does_no_io() {
    // A path that does not exist, under a directory that does not exist: building
    // still succeeds, only opening would fail.
    let pairs = [("path", "/nonexistent/dir/file.txt")];
    assert!(source("file", "p:c", &settings(&pairs), None).is_ok());
    assert!(destination("file", "p:c", &settings(&pairs)).is_ok());
    let generator = [
        ("format.type", "file"),
        ("format.options.path", "/nonexistent"),
    ];
    assert!(source("generator", "p:c", &settings(&generator), None).is_ok());
}

#[tokio::test(start_paused = true)]
async fn sdk_rate_per_second_and_burst_pace_the_writes_of_a_destination() {
    use funnel_record::Record;
    let records: Vec<Record> = (0..50).map(|i| Record::new(i.to_string(), "x")).collect();
    let mut took = Vec::new();
    for pairs in [
        vec![],
        vec![("sdk.rate.perSecond", "100"), ("sdk.rate.burst", "50")],
    ] {
        let d = destination("noop", "p:c", &settings(&pairs)).unwrap();
        d.open().await.unwrap();
        let start = tokio::time::Instant::now();
        // The burst (50) goes at once, then 250 more at 100 a second.
        for _ in 0..6 {
            d.write(&records).await.unwrap();
        }
        took.push(start.elapsed().as_secs_f64());
    }
    assert!(took[0] < 0.001, "unlimited writes waited {} s", took[0]);
    assert!(
        (2.49..2.51).contains(&took[1]),
        "300 records at 100/s after a burst of 50 took {} s",
        took[1]
    );
}

#[tokio::test]
async fn a_connection_test_with_invalid_settings_is_a_configuration_error_naming_the_connector() {
    let table = components();
    let check = table
        .iter()
        .find(|c| c.name == "file" && c.kind() == ComponentKind::Destination)
        .and_then(|c| c.check)
        .unwrap();
    let error = check("p:c".to_owned(), settings(&[("bogus", "1")]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), funnel_core::ErrorKind::Config);
    let text = error.to_string();
    assert!(
        text.contains("connector p:c") && text.contains("bogus"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let valid = settings(&[("path", path.to_str().unwrap())]);
    assert!(check("p:c".to_owned(), valid).await.is_ok());
}
