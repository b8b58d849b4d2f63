//! The registry table: one entry per component, and each component's declared
//! settings are exactly the settings it reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use funnel_core::component::Build;
use funnel_core::{Component, ComponentKind, Settings, record_reads};
use funnel_runtime::registry::{components, registry};

/// Builds `component` from `settings`, ignoring whether the settings are valid.
fn build(component: &Component, settings: &Settings) {
    let _ = match component.build {
        Build::Source(build) => build("p:c", settings, None).map(drop),
        Build::Destination(build) => build("p:c", settings).map(drop),
        Build::Processor(build) => build("p1", settings).map(drop),
    };
}

/// True when the read key (or `prefix*`) is covered by the declared name (`*` stands
/// for any part of a key).
fn covers(declared: &str, read: &str) -> bool {
    if let Some(prefix) = read.strip_suffix('*') {
        // A prefix lookup reads every key under it.
        return declared.starts_with(prefix);
    }
    match declared.split_once('*') {
        None => declared == read,
        Some((head, tail)) => {
            read.len() > head.len() + tail.len() && read.starts_with(head) && read.ends_with(tail)
        }
    }
}

/// Every declared setting at its default (or a placeholder).
fn every_setting(component: &Component) -> Settings {
    component
        .settings()
        .filter(|s| !s.name.contains('*'))
        .map(|s| (s.name.to_owned(), s.default.unwrap_or("x").to_owned()))
        .collect()
}

#[test]
fn every_component_reads_exactly_the_settings_it_declares() {
    let mut problems = Vec::new();
    for component in components() {
        let label = format!("{} {}", component.kind().name(), component.name);
        let declared: Vec<&str> = component.settings().map(|s| s.name).collect();
        let mut reads = BTreeSet::new();
        for settings in [Settings::new(), every_setting(&component)] {
            let ((), read) = record_reads(|| build(&component, &settings));
            reads.extend(read);
        }
        for read in &reads {
            if !declared.iter().any(|d| covers(d, read)) {
                problems.push(format!("{label} reads {read:?} but does not declare it"));
            }
        }
        for name in &declared {
            if !reads.iter().any(|r| covers(name, r)) {
                problems.push(format!("{label} declares {name:?} but never reads it"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn declared_names_cover_the_keys_read_under_them() {
    assert!(covers("path", "path"));
    assert!(!covers("path", "paths"));
    assert!(covers("format.options.*", "format.options.id"));
    assert!(covers("format.options.*", "format.options.*"));
    assert!(covers("format.options.path", "format.options.*"));
    assert!(covers(
        "collections.*.format.type",
        "collections.users.format.type"
    ));
    assert!(!covers(
        "collections.*.format.type",
        "collections.users.operations"
    ));
}

#[test]
fn no_component_is_declared_twice() {
    let mut seen = BTreeSet::new();
    for component in components() {
        assert!(
            seen.insert((component.name, component.kind())),
            "{} {} is in the table twice",
            component.kind().name(),
            component.name
        );
    }
}

#[test]
fn a_setting_nobody_declares_is_an_unrecognized_parameter_for_every_component() {
    for component in components() {
        let mut settings = every_setting(&component);
        settings.insert("no.such.setting".into(), "1".into());
        let errors = match component.build {
            Build::Source(build) => build("p:c", &settings, None).err(),
            Build::Destination(build) => build("p:c", &settings).err(),
            Build::Processor(build) => build("p1", &settings).err(),
        }
        .unwrap_or_default();
        assert!(
            errors
                .iter()
                .any(|e| e.setting == "no.such.setting" && e.message == "unrecognized parameter"),
            "{} {}: {errors:?}",
            component.kind().name(),
            component.name
        );
    }
}

#[test]
fn lookups_name_the_components_of_the_wanted_kind() {
    let error = registry()
        .find("log", ComponentKind::Source)
        .expect_err("log has no source");
    assert_eq!(error.setting, "plugin");
    assert!(error.message.contains("has no source"), "{error}");
    assert!(error.message.contains("generator"), "{error}");
    let error = registry()
        .find("nope", ComponentKind::Processor)
        .expect_err("no such processor");
    assert!(error.message.contains("field.set"), "{error}");
}
