//! Noop destination settings: parsing and validation (no I/O).

use crate::settings::parse_destination;
use crate::{Settings, SettingsError};

funnel_core::settings! {
    /// The validated settings of a noop destination (the SDK ones come on top).
    #[derive(Copy, Default, Eq)]
    pub struct NoopConfig {
        /// Record each record's read-to-written latency (now - opencdc.readAt) in an
        /// HDR histogram; funnel run logs p50/p99/p99.9 at exit.
        pub latency: bool = "latency" (default "false"),
    }
}

/// Parses and validates noop destination settings.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate(settings: &Settings) -> Result<NoopConfig, Vec<SettingsError>> {
    parse_destination(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    #[test]
    fn latency_is_off_by_default_and_parsed_as_a_bool() {
        assert!(!validate(&settings(&[])).unwrap().latency);
        assert!(validate(&settings(&[("latency", "true")])).unwrap().latency);
        let errors = validate(&settings(&[("latency", "maybe")])).unwrap_err();
        assert_eq!(errors[0].setting, "latency");
    }
}
