//! The `noop` destination (a Funnel extension): acknowledges every record at once and
//! writes it nowhere. For benchmarks and for trying out sources and processors.
//!
//! # Settings
//!
//! None of its own; the SDK settings are accepted as for every destination (see
//! [`SDK_DESTINATION_SETTINGS`](crate::SDK_DESTINATION_SETTINGS)).
//!
//! # Guarantee
//!
//! Records are acknowledged in write order and discarded. [`written_total`] counts the
//! records every noop destination of the process acknowledged, so a benchmark can
//! report its throughput at exit.

mod config;
mod destination;

pub use config::validate;
pub use destination::{NoopDestination, written_total};

use crate::SettingSpec;

/// The noop destination has no settings of its own.
pub(crate) static DESTINATION_SETTINGS: &[SettingSpec] = &[];
