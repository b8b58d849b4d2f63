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
//! | `rabbitmq` | yes | yes | `rabbitmq` (feature `rabbitmq`, on by default) |
//! | `nats` | yes | yes | `nats` (JetStream; feature `nats`, on by default) |
//! | `mqtt` | yes | yes | `mqtt` (feature `mqtt`, on by default) |
//! | `redis` | yes | yes | `redis` (streams and pub/sub; feature `redis`, on by default) |
//! | `http` | yes | yes | `http` (webhook receiver and HTTP client; feature `http`, on by default) |
//! | `s3` | yes | yes | `s3` (feature `s3`, on by default) |
//! | `kafka` | yes | yes | `kafka` (feature `kafka`, off by default) |
//!
//! [`components`] is the connectors' part of the registry table: one
//! [`Component`] per source and per destination, declared in its module (`SOURCE`,
//! `DESTINATION`) with its name, summary, settings, build function, and its connection
//! test and cleanup when it has them. Nothing else lists plugin names: [`source`] and
//! [`destination`] look a connector up in the table. Building does no I/O; files are
//! opened by [`Source::open`] and [`Destination::open`].
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
pub mod format;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod generator;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod log;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "nats")]
pub mod nats;
pub mod noop;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
pub mod rate;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "s3")]
pub mod s3;
mod settings;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub mod sql;
#[cfg(any(
    feature = "http",
    feature = "kafka",
    feature = "mqtt",
    feature = "nats",
    feature = "rabbitmq",
    feature = "redis"
))]
pub mod tls;
mod util;

use std::sync::Arc;

use funnel_core::{Component, Destination, Registry, Source};
use funnel_record::Position;

pub use format::{RecordFormat, RecordFormatName};
pub use settings::{
    Avro, SDK_DESTINATION_SETTINGS, SDK_SOURCE_SETTINGS, SdkDestinationSettings, SdkSourceSettings,
};

pub use funnel_core::{SettingSpec, Settings, SettingsError};

/// Every built-in connector: the connectors' part of the registry table, one entry per
/// source and per destination, each declared next to its code (name, summary,
/// settings, build, and its connection test and cleanup when it has them).
pub fn components() -> Vec<Component> {
    vec![
        file::SOURCE,
        file::DESTINATION,
        generator::SOURCE,
        #[cfg(feature = "http")]
        http::SOURCE,
        #[cfg(feature = "http")]
        http::DESTINATION,
        #[cfg(feature = "kafka")]
        kafka::SOURCE,
        #[cfg(feature = "kafka")]
        kafka::DESTINATION,
        log::DESTINATION,
        noop::DESTINATION,
        #[cfg(feature = "postgres")]
        postgres::SOURCE,
        #[cfg(feature = "postgres")]
        postgres::DESTINATION,
        #[cfg(feature = "mysql")]
        mysql::SOURCE,
        #[cfg(feature = "mysql")]
        mysql::DESTINATION,
        #[cfg(feature = "rabbitmq")]
        rabbitmq::SOURCE,
        #[cfg(feature = "rabbitmq")]
        rabbitmq::DESTINATION,
        #[cfg(feature = "nats")]
        nats::SOURCE,
        #[cfg(feature = "nats")]
        nats::DESTINATION,
        #[cfg(feature = "mqtt")]
        mqtt::SOURCE,
        #[cfg(feature = "mqtt")]
        mqtt::DESTINATION,
        #[cfg(feature = "redis")]
        redis::SOURCE,
        #[cfg(feature = "redis")]
        redis::DESTINATION,
        #[cfg(feature = "s3")]
        s3::SOURCE,
        #[cfg(feature = "s3")]
        s3::DESTINATION,
    ]
}

/// Builds the source `plugin` (bare name) of [`components`]. `id` is the full
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
    Registry::new(components()).source(plugin, id, settings, resume)
}

/// Builds the destination `plugin` (bare name) of [`components`]; `id` is the full
/// connector ID. No I/O happens here, only validation; the destination does its I/O
/// in [`Destination::open`] and later.
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
    Registry::new(components()).destination(plugin, id, settings)
}

/// `destination`, its writes paced by `sdk.rate.perSecond` and `sdk.rate.burst` when
/// they are set (every destination's build goes through here).
pub(crate) fn paced(
    settings: &Settings,
    destination: Arc<dyn Destination>,
) -> Arc<dyn Destination> {
    match rate::from_settings(settings) {
        Some(bucket) => Arc::new(rate::RateLimited::new(destination, bucket)),
        None => destination,
    }
}

/// The destination `build` makes with the record format of its SDK settings
/// (`sdk.record.format`), paced like every destination ([`paced`]).
///
/// # Errors
///
/// What [`RecordFormat::from_settings`] finds wrong.
pub(crate) fn formatted<D: Destination + 'static>(
    settings: &Settings,
    build: impl FnOnce(RecordFormat) -> D,
) -> funnel_core::Built<Arc<dyn Destination>> {
    let format = RecordFormat::from_settings(settings)?;
    Ok(paced(settings, Arc::new(build(format))))
}

/// What a connection test ([`Component::with_check`]) gives.
pub(crate) type CheckResult =
    std::pin::Pin<Box<dyn Future<Output = Result<(), funnel_core::ConnectorError>> + Send>>;

/// The connection test of connector `id` whose settings `validated` gives: invalid
/// settings are a configuration error naming the connector and every mistake; a valid
/// config is handed, with `id`, to `check`, which tries the connection.
pub(crate) fn checked<C, F>(
    id: String,
    validated: Result<C, Vec<SettingsError>>,
    check: impl FnOnce(C, String) -> F,
) -> CheckResult
where
    F: Future<Output = Result<(), funnel_core::ConnectorError>> + Send + 'static,
{
    match validated {
        Ok(config) => Box::pin(check(config, id)),
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(SettingsError::to_string).collect();
            let error =
                funnel_core::ConnectorError::config(format!("connector {id}: {}", text.join("; ")));
            Box::pin(std::future::ready(Err(error)))
        }
    }
}
