//! The `log` destination: writes every record to Funnel's log.
//!
//! # Settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `level` | `info` | `trace`, `debug`, `info`, `warn` or `error`. |
//! | `message` | empty | The message of every log line. |
//! | `sdk.record.format` | `opencdc/json` | Only `opencdc/json` is supported. |
//!
//! Each record is logged as one event at `level`, with the fields `connector` (the
//! destination's ID) and `record` (the record as compact OpenCDC JSON text). Like
//! Conduit's, it shows only if the log filter lets that level through; when it does
//! not, records are not even encoded.
//!
//! # Guarantee
//!
//! None beyond the log itself: a record is acknowledged, in write order, as soon as it
//! was handed to the logger. Conduit uses this connector as its default dead-letter
//! queue (at `warn`, message `record delivery failed`).

mod config;
mod destination;

pub use config::{LogConfig, LogLevel, validate};
pub use destination::LogDestination;

use std::sync::Arc;

use funnel_core::component::{Build, Component};

use funnel_core::typed::SettingsStruct;

/// The log destination in the registry.
pub const DESTINATION: Component = Component::new(
    "log",
    "Logs every record as OpenCDC JSON at a chosen level.",
    &[LogConfig::SPEC, crate::SDK_DESTINATION_SETTINGS],
    Build::Destination(|id, settings| {
        let config = validate(settings)?;
        Ok(crate::paced(
            settings,
            Arc::new(LogDestination::new(id, config)),
        ))
    }),
);
