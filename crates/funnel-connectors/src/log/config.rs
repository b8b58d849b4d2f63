//! Log destination settings: parsing and validation.

use tracing::Level;

use crate::settings::{SettingsReader, sdk_destination};
use crate::{Settings, SettingsError};

/// The validated settings of a log destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `level` (default `info`): the level records are logged at.
    pub level: Level,
    /// `message` (default empty): the message of every log line.
    pub message: String,
}

/// Parses and validates log destination settings.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate(settings: &Settings) -> Result<LogConfig, Vec<SettingsError>> {
    let mut r = SettingsReader::new(settings);
    sdk_destination(&mut r);
    let level = match r.one_of("level", &["trace", "debug", "info", "warn", "error"]) {
        Some("trace") => Level::TRACE,
        Some("debug") => Level::DEBUG,
        Some("warn") => Level::WARN,
        Some("error") => Level::ERROR,
        _ => Level::INFO,
    };
    let message = r.str("message").unwrap_or_default().to_owned();
    r.finish()?;
    Ok(LogConfig { level, message })
}
