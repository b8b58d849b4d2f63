//! The `log` destination: writes every record to Funnel's log.
//!
//! # Settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `level` | `info` | `trace`, `debug`, `info`, `warn` or `error`. |
//! | `message` | empty | The message of every log line. |
//! | `sdk.record.format` | `opencdc/json` | `opencdc/json`, `debezium/json`, or `template` with the Go template in `sdk.record.format.options` (see [`format`](crate::format)). |
//!
//! Each record is logged as one event at `level`, with the fields `connector` (the
//! destination's ID) and `record` (the record as compact OpenCDC JSON text, or its
//! `sdk.record.format`). Like Conduit's, it shows only if the log filter lets that
//! level through; when it does not, records in OpenCDC JSON are not even encoded (a
//! template is still rendered, so that a record it fails on is nacked either way).
//!
//! # Guarantee
//!
//! None beyond the log itself: a record is acknowledged, in write order, as soon as it
//! was handed to the logger. Handing it over writes its line: `funnel`'s logger writes
//! each event to stderr with one `write` before `write` here returns, so an
//! acknowledged record's line is whole in the log (not synced to disk: a process kill
//! cannot lose it, a machine crash can). A process killed in the middle of that
//! `write` leaves the start of the line, never finished nor mended; that record was not
//! acknowledged, so it is read and logged again, whole, after the restart. Conduit uses
//! this connector as its default dead-letter queue (at `warn`, message
//! `record delivery failed`).

mod config;
mod destination;

pub use config::{LogConfig, LogLevel, validate};
pub use destination::LogDestination;

use funnel_core::component::{Build, Component};
use funnel_core::typed::SettingsStruct;

/// The log destination in the registry.
pub const DESTINATION: Component = Component::new(
    "log",
    "Logs every record as OpenCDC JSON at a chosen level.",
    &[LogConfig::SPEC, crate::SDK_DESTINATION_SETTINGS],
    Build::Destination(|id, settings| {
        let config = validate(settings)?;
        crate::formatted(settings, |format| LogDestination::new(id, config, format))
    }),
);
