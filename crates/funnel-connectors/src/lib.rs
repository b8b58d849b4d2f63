//! Funnel's built-in connectors, compatible with Conduit's builtin plugins of the same
//! names:
//!
//! | Plugin | Source | Destination | Module |
//! |---|---|---|---|
//! | `generator` | yes | — | [`generator`] |
//! | `file` | yes | yes | [`file`](mod@file) |
//! | `log` | — | yes | [`log`] |
//! | `noop` | — | yes | [`noop`] (a Funnel extension) |
//! | `postgres` | yes | yes | `postgres` (feature `postgres`, on by default) |
//!
//! The registry is three plain functions: [`specs`] lists every built-in with its
//! settings (for `funnel connectors ls` and the docs), [`source`] and [`destination`]
//! validate settings and build a connector by its bare plugin name. Building does no
//! I/O; files are opened by [`Source::open`] and [`Destination::open`].
//!
//! Settings follow the Conduit SDK: values are strings, durations use Go syntax (`250ms`,
//! `1m30s`), an unknown key is an error (`"<key>": unrecognized parameter`), and every
//! connector also accepts the SDK's `sdk.*` settings ([`SDK_SOURCE_SETTINGS`],
//! [`SDK_DESTINATION_SETTINGS`]). Validation reports every error at once, each with the
//! key it is about.
//!
//! This crate implements the engine's connector traits and depends only on
//! `funnel-core` and `funnel-record`; it must never depend on the runtime, the
//! configuration, the position store or the API.

mod ack;
pub mod file;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod generator;
pub mod log;
pub mod noop;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod rate;
mod settings;
mod util;

use std::sync::Arc;

use funnel_core::{Destination, Source};
use funnel_record::Position;

pub use settings::{SDK_DESTINATION_SETTINGS, SDK_SOURCE_SETTINGS};

pub use funnel_core::{SettingSpec, Settings, SettingsError};

/// The description of one built-in connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorSpec {
    /// The plugin name (`generator`, `file`, ...).
    pub name: &'static str,
    /// One line about what it does.
    pub summary: &'static str,
    /// The settings of its source, if it has one (the `sdk.*` settings in
    /// [`SDK_SOURCE_SETTINGS`] come on top).
    pub source: Option<&'static [SettingSpec]>,
    /// The settings of its destination, if it has one (the `sdk.*` settings in
    /// [`SDK_DESTINATION_SETTINGS`] come on top).
    pub destination: Option<&'static [SettingSpec]>,
}

/// Every built-in connector, by name.
pub fn specs() -> Vec<ConnectorSpec> {
    vec![
        ConnectorSpec {
            name: "file",
            summary: "Reads the lines of a file and follows appends; writes records as \
                      OpenCDC JSON lines.",
            source: Some(file::SOURCE_SETTINGS),
            destination: Some(file::DESTINATION_SETTINGS),
        },
        ConnectorSpec {
            name: "generator",
            summary: "Generates records with random data, for demos, tests and benchmarks.",
            source: Some(generator::SOURCE_SETTINGS),
            destination: None,
        },
        ConnectorSpec {
            name: "log",
            summary: "Logs every record as OpenCDC JSON at a chosen level.",
            source: None,
            destination: Some(log::DESTINATION_SETTINGS),
        },
        ConnectorSpec {
            name: "noop",
            summary: "Acknowledges every record at once and writes it nowhere (Funnel \
                      extension, for benchmarks).",
            source: None,
            destination: Some(noop::DESTINATION_SETTINGS),
        },
        #[cfg(feature = "postgres")]
        ConnectorSpec {
            name: "postgres",
            summary: "Reads a snapshot of PostgreSQL tables, then their changes with logical \
                      replication; upserts and deletes rows.",
            source: Some(postgres::SOURCE_SETTINGS),
            destination: Some(postgres::DESTINATION_SETTINGS),
        },
    ]
}

/// Builds a source. `plugin` is the bare name (`generator`, `file`); `id` the full
/// connector ID (`pipeline:connector`, written to `conduit.source.connector.id`);
/// `resume` the last committed position (`None`: from the start). No I/O happens here,
/// only validation; the source does its I/O in [`Source::open`] and later.
///
/// # Errors
///
/// Every invalid setting; an unknown plugin, or one without a source, is one error
/// about the setting `plugin`.
pub fn source(
    plugin: &str,
    id: &str,
    settings: &Settings,
    resume: Option<Position>,
) -> Result<Arc<dyn Source>, Vec<SettingsError>> {
    match plugin {
        "generator" => {
            let config = generator::validate(settings)?;
            Ok(Arc::new(generator::GeneratorSource::new(
                id, config, resume,
            )))
        }
        "file" => {
            let config = file::validate_source(settings)?;
            Ok(Arc::new(file::FileSource::new(id, config, resume)))
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let config = postgres::validate_source(settings)?;
            Ok(Arc::new(postgres::PostgresSource::new(id, config, resume)))
        }
        _ => Err(vec![plugin_error(plugin, "source", |spec| {
            spec.source.is_some()
        })]),
    }
}

/// Builds a destination. `plugin` is the bare name (`file`, `log`, `noop`); `id` the
/// full connector ID. No I/O happens here, only validation; the destination does its
/// I/O in [`Destination::open`] and later.
///
/// # Errors
///
/// Every invalid setting; an unknown plugin, or one without a destination, is one error
/// about the setting `plugin`.
pub fn destination(
    plugin: &str,
    id: &str,
    settings: &Settings,
) -> Result<Arc<dyn Destination>, Vec<SettingsError>> {
    let destination = build_destination(plugin, id, settings)?;
    Ok(match rate::from_settings(settings) {
        Some(bucket) => Arc::new(rate::RateLimited::new(destination, bucket)),
        None => destination,
    })
}

fn build_destination(
    plugin: &str,
    id: &str,
    settings: &Settings,
) -> Result<Arc<dyn Destination>, Vec<SettingsError>> {
    match plugin {
        "file" => {
            let config = file::validate_destination(settings)?;
            Ok(Arc::new(file::FileDestination::new(id, config)))
        }
        "log" => {
            let config = log::validate(settings)?;
            Ok(Arc::new(log::LogDestination::new(id, config)))
        }
        "noop" => {
            let config = noop::validate(settings)?;
            Ok(Arc::new(noop::NoopDestination::with_config(config)))
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let config = postgres::validate_destination(settings)?;
            Ok(Arc::new(postgres::PostgresDestination::new(id, config)))
        }
        _ => Err(vec![plugin_error(plugin, "destination", |spec| {
            spec.destination.is_some()
        })]),
    }
}

/// Releases what a source keeps outside Funnel once its pipeline is deleted (Conduit's
/// `LifecycleOnDeleted`): the postgres source drops its replication slot and
/// publication when `logrepl.autoCleanup` is on. Returns whether the plugin had
/// anything to clean up; plugins that keep nothing outside Funnel return `false`.
///
/// # Errors
///
/// Invalid settings, or a failure to reach the system holding the resources.
pub async fn cleanup_source(
    plugin: &str,
    id: &str,
    settings: &Settings,
) -> Result<bool, funnel_core::ConnectorError> {
    match plugin {
        #[cfg(feature = "postgres")]
        "postgres" => postgres::cleanup(id, settings).await.map(|()| true),
        _ => {
            let _ = (id, settings);
            Ok(false)
        }
    }
}

/// What [`cleanup_source`] would release for a source of `plugin`, one line per
/// resource, for a person to confirm first; empty for plugins that keep nothing
/// outside Funnel.
///
/// # Errors
///
/// Invalid settings.
pub fn cleanup_plan(
    plugin: &str,
    id: &str,
    settings: &Settings,
) -> Result<Vec<String>, funnel_core::ConnectorError> {
    match plugin {
        #[cfg(feature = "postgres")]
        "postgres" => postgres::cleanup_plan(id, settings),
        _ => {
            let _ = (id, settings);
            Ok(Vec::new())
        }
    }
}

/// The error for a plugin that is unknown or lacks the wanted kind of connector.
fn plugin_error(plugin: &str, kind: &str, has: fn(&ConnectorSpec) -> bool) -> SettingsError {
    let specs = specs();
    let with_kind: Vec<&str> = specs.iter().filter(|s| has(s)).map(|s| s.name).collect();
    let message = if specs.iter().any(|s| s.name == plugin) {
        format!(
            "the builtin connector {plugin:?} has no {kind} (builtin {kind}s: {})",
            with_kind.join(", ")
        )
    } else {
        format!(
            "unknown builtin {kind} connector {plugin:?} (builtin {kind}s: {})",
            with_kind.join(", ")
        )
    };
    SettingsError {
        setting: "plugin".into(),
        message,
    }
}
