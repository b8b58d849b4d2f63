//! Log destination settings: parsing and validation.

use funnel_core::typed::FromSetting;
use tracing::Level;

use crate::settings::parse_destination;
use crate::{Settings, SettingsError};

/// The level a log destination logs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLevel(pub Level);

impl FromSetting for LogLevel {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "trace" => Ok(Self(Level::TRACE)),
            "debug" => Ok(Self(Level::DEBUG)),
            "info" => Ok(Self(Level::INFO)),
            "warn" => Ok(Self(Level::WARN)),
            "error" => Ok(Self(Level::ERROR)),
            _ => Err(format!(
                "{raw:?} value must be one of: trace, debug, info, warn, error"
            )),
        }
    }
}

funnel_core::settings! {
    /// The validated settings of a log destination (the SDK ones come on top).
    #[derive(Eq)]
    pub struct LogConfig {
        /// Level of the log lines: trace, debug, info, warn or error.
        pub level: LogLevel = "level" (default "info"),
        /// Message of every log line (empty by default).
        pub message: Option<String> = "message",
    }
}

/// Parses and validates log destination settings.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate(settings: &Settings) -> Result<LogConfig, Vec<SettingsError>> {
    parse_destination(settings)
}
