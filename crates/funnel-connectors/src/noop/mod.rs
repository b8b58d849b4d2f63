//! The `noop` destination (a Funnel extension): acknowledges every record at once and
//! writes it nowhere. For benchmarks and for trying out sources and processors.
//!
//! # Settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `latency` | `false` | Measure each record's read-to-written latency (write time minus its `opencdc.readAt`) into a process-wide HDR histogram; see [`latency_summary`]. Costs one clock read per batch and a metadata lookup per record; nothing when off. |
//!
//! The SDK settings are accepted as for every destination (see
//! [`SDK_DESTINATION_SETTINGS`](crate::SDK_DESTINATION_SETTINGS)).
//!
//! # Guarantee
//!
//! Records are acknowledged in write order and discarded. [`written_total`] counts the
//! records every noop destination of the process acknowledged, and
//! [`latency_summary`] gives the latency percentiles of the destinations with
//! `latency: true` (the file destination has the same setting), so a benchmark can
//! report both at exit (`funnel run` logs them).

mod config;
mod destination;
mod latency;

pub use config::{NoopConfig, validate};
pub use destination::{NoopDestination, written_total};
pub use latency::{LatencySummary, latency_summary};
pub(crate) use latency::{now_nanos, read_at_nanos, record_batch};

use std::sync::Arc;

use funnel_core::component::{Build, Component};

use funnel_core::typed::SettingsStruct;

/// The noop destination in the registry.
pub const DESTINATION: Component = Component::new(
    "noop",
    "Acknowledges every record at once and writes it nowhere (Funnel extension, for \
     benchmarks).",
    &[NoopConfig::SPEC, crate::SDK_DESTINATION_SETTINGS],
    Build::Destination(|_id, settings| {
        let config = validate(settings)?;
        Ok(crate::paced(
            settings,
            Arc::new(NoopDestination::with_config(config)),
        ))
    }),
);
