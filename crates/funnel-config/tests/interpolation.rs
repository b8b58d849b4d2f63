#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Environment-variable interpolation in pipeline files: Conduit's behaviour by default,
//! strict mode on request.

use std::collections::HashMap;
use std::path::Path;

use funnel_config::{ConfigErrorKind, LoadOptions, Loaded, parse};

const FILE: &str = "version: 2.2
pipelines:
  - id: ${PIPELINE}
    name: \"$TEAM shop\"
    connectors:
      - id: db
        type: source
        plugin: builtin:${PLUGIN}
        settings:
          url: postgres://${HOST}:$PORT/shop
          ${PREFIX}.size: 100
          price: \"$$5\"
          regex: 's/(a)/$1/'
          raw: !custom ${HOST}
";

fn env() -> HashMap<String, String> {
    [
        ("PIPELINE", "orders"),
        ("TEAM", "blue"),
        ("PLUGIN", "postgres"),
        ("HOST", "db.local"),
        ("PORT", "5432"),
        ("PREFIX", "sdk.batch"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn load_with(text: &str, strict: bool, env: HashMap<String, String>) -> Loaded {
    let opts = LoadOptions {
        strict_env: strict,
        env: Some(env),
    };
    parse(text, Path::new("env.yaml"), &opts).unwrap_or_else(|errors| panic!("{errors}"))
}

fn strict_errors(text: &str, env: HashMap<String, String>) -> Vec<String> {
    let opts = LoadOptions {
        strict_env: true,
        env: Some(env),
    };
    let errors = parse(text, Path::new("env.yaml"), &opts).unwrap_err();
    assert!(errors.iter().all(|e| e.kind == ConfigErrorKind::Env));
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn variables_are_expanded_in_any_string_field_not_only_in_settings() {
    let loaded = load_with(FILE, false, env());
    let p = &loaded.pipelines[0];
    assert_eq!(p.id, "orders");
    assert_eq!(p.name, "blue shop");
    assert_eq!(p.connectors[0].plugin, "builtin:postgres");
    assert_eq!(
        p.connectors[0].settings["url"],
        "postgres://db.local:5432/shop"
    );
}

#[test]
fn setting_keys_are_expanded_too() {
    let loaded = load_with(FILE, false, env());
    assert_eq!(
        loaded.pipelines[0].connectors[0].settings["sdk.batch.size"],
        "100"
    );
}

#[test]
fn compatible_mode_loses_dollar_dollar_and_regex_back_references_as_conduit_does() {
    let loaded = load_with(FILE, false, env());
    let settings = &loaded.pipelines[0].connectors[0].settings;
    assert_eq!(settings["price"], "5");
    assert_eq!(settings["regex"], "s/(a)//");
}

#[test]
fn scalars_with_a_non_string_tag_are_not_expanded() {
    let loaded = load_with(FILE, false, env());
    assert_eq!(loaded.pipelines[0].connectors[0].settings["raw"], "${HOST}");
}

#[test]
fn an_unset_variable_becomes_empty_silently_in_compatible_mode() {
    let loaded = load_with(
        "version: 2.2\npipelines:\n  - id: a\n    description: \"[${MISSING}]\"\n",
        false,
        HashMap::new(),
    );
    assert_eq!(loaded.pipelines[0].description, "[]");
    assert!(loaded.warnings.is_empty());
}

#[test]
fn strict_mode_reads_dollar_dollar_as_a_literal_dollar() {
    let text = FILE.replace("'s/(a)/$1/'", "'s/(a)/$$1/'");
    let loaded = load_with(&text, true, env());
    let settings = &loaded.pipelines[0].connectors[0].settings;
    assert_eq!(settings["price"], "$5");
    assert_eq!(settings["regex"], "s/(a)/$1/");
    assert_eq!(settings["url"], "postgres://db.local:5432/shop");
}

#[test]
fn strict_mode_reports_every_unset_variable_with_its_location_and_setting() {
    let mut env = env();
    env.remove("HOST");
    env.remove("PIPELINE");
    let text = FILE.replace("'s/(a)/$1/'", "'s/(a)/$$1/'");
    assert_eq!(
        strict_errors(&text, env),
        vec![
            "env.yaml:3:9: pipelines[0].id: environment variable PIPELINE is not set (strict mode); set it, or write $$ for a literal $",
            "env.yaml:10:16: pipelines[0].connectors[0].settings.url: environment variable HOST is not set (strict mode); set it, or write $$ for a literal $",
        ]
    );
}

#[test]
fn strict_mode_makes_a_shell_special_variable_an_error_so_it_can_be_escaped() {
    assert_eq!(
        strict_errors(
            "version: 2.2\npipelines:\n  - id: a\n    description: 's/(a)/$1/'\n",
            HashMap::new()
        ),
        vec![
            "env.yaml:4:18: pipelines[0].description: environment variable 1 is not set (strict mode); set it, or write $$ for a literal $"
        ]
    );
}

#[test]
fn strict_mode_rejects_empty_and_unclosed_braces() {
    assert_eq!(
        strict_errors(
            "version: 2.2\npipelines:\n  - id: a\n    description: x${}y${Z\n",
            HashMap::new()
        ),
        vec![
            "env.yaml:4:18: pipelines[0].description: invalid variable reference \"${}\" (strict mode); write ${NAME}, or $$ for a literal $",
            "env.yaml:4:18: pipelines[0].description: invalid variable reference \"${\" (strict mode); write ${NAME}, or $$ for a literal $",
        ]
    );
}

#[test]
fn an_integer_field_can_come_from_a_variable() {
    let loaded = load_with(
        "version: 2.2\npipelines:\n  - id: a\n    processors:\n      - id: p\n        plugin: x\n        workers: ${WORKERS}\n",
        true,
        HashMap::from([("WORKERS".to_owned(), "8".to_owned())]),
    );
    assert_eq!(loaded.pipelines[0].processors[0].workers, 8);
}

#[test]
fn without_an_env_map_the_process_environment_is_used() {
    let opts = LoadOptions::default();
    let loaded = parse(
        "version: 2.2\npipelines:\n  - id: a\n    description: \"${PATH}\"\n",
        Path::new("env.yaml"),
        &opts,
    )
    .unwrap();
    assert_eq!(
        loaded.pipelines[0].description,
        std::env::var("PATH").unwrap_or_default()
    );
}
