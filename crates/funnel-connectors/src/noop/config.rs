//! Noop destination settings: only the SDK ones.

use crate::settings::{SettingsReader, sdk_destination};
use crate::{Settings, SettingsError};

/// Checks noop destination settings: it has none of its own.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate(settings: &Settings) -> Result<(), Vec<SettingsError>> {
    let mut r = SettingsReader::new(settings);
    sdk_destination(&mut r);
    r.finish()
}
