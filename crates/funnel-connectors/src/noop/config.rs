//! Noop destination settings: parsing and validation (no I/O).

use crate::settings::{SettingsReader, sdk_destination};
use crate::{Settings, SettingsError};

/// The validated settings of a noop destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoopConfig {
    /// `latency` (default false): record the read-to-written latency of every record in
    /// the process-wide histogram (see [`latency_summary`](super::latency_summary)).
    pub latency: bool,
}

/// Parses and validates noop destination settings.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate(settings: &Settings) -> Result<NoopConfig, Vec<SettingsError>> {
    let mut r = SettingsReader::new(settings);
    sdk_destination(&mut r);
    let latency = r.bool("latency").unwrap_or(false);
    r.finish()?;
    Ok(NoopConfig { latency })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn latency_is_off_by_default_and_parsed_as_a_bool() {
        assert!(!validate(&settings(&[])).unwrap().latency);
        assert!(validate(&settings(&[("latency", "true")])).unwrap().latency);
        let errors = validate(&settings(&[("latency", "maybe")])).unwrap_err();
        assert_eq!(errors[0].setting, "latency");
    }
}
