//! File settings: parsing and validation (no I/O).

use std::path::PathBuf;

use crate::settings::{parse_destination, parse_source};
use crate::{Settings, SettingsError};

funnel_core::settings! {
    /// The file source's own settings (the SDK ones come on top).
    pub struct FileSourceSettings {
        /// Path of the file to read; the source follows appended lines, rotation and
        /// truncation.
        pub path: PathBuf = "path",
        /// Longest line, in bytes, that becomes a record (64 MiB); a longer line is
        /// skipped and nacked (to the dead-letter queue) with an error naming the file,
        /// line and offset.
        pub max_record_size: usize = "maxRecordSize" (default "67108864"),
    }
}

/// The validated settings of a file source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSourceConfig {
    /// `path` (required): the file to read.
    pub path: PathBuf,
    /// Maximum lines per read (`sdk.batch.size`, default 1000).
    pub batch_size: usize,
    /// `maxRecordSize` (default [`DEFAULT_MAX_RECORD_SIZE`]): the longest line, in bytes
    /// without its newline, that becomes a record; a longer one is skipped and nacked.
    pub max_record_size: usize,
}

/// The default `maxRecordSize`: 64 MiB.
pub const DEFAULT_MAX_RECORD_SIZE: usize = 64 * 1024 * 1024;

funnel_core::settings! {
    /// The validated settings of a file destination (the SDK ones come on top).
    #[derive(Eq)]
    pub struct FileDestinationConfig {
        /// Path of the file to append OpenCDC JSON lines to; created if missing.
        pub path: PathBuf = "path",
        /// Record each record's read-to-durable latency (after fsync -
        /// opencdc.readAt) in an HDR histogram; funnel run logs p50/p99/p99.9 at exit.
        pub latency: bool = "latency" (default "false"),
    }
}

/// Parses and validates file source settings. Pure: the file is not touched (a missing
/// file is waited for when reading).
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<FileSourceConfig, Vec<SettingsError>> {
    let (own, sdk) = parse_source::<FileSourceSettings>(settings)?;
    if own.max_record_size == 0 {
        return Err(vec![SettingsError::new(
            "maxRecordSize",
            "0 is too small: a record needs at least 1 byte",
        )]);
    }
    Ok(FileSourceConfig {
        path: own.path,
        batch_size: sdk.batch_size,
        max_record_size: own.max_record_size,
    })
}

/// Parses and validates file destination settings. Pure: the file is created when the
/// destination opens.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<FileDestinationConfig, Vec<SettingsError>> {
    parse_destination(settings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_declared_max_record_size_default_is_64_mib() {
        let config = validate_source(&[("path".to_owned(), "/x".to_owned())].into()).unwrap();
        assert_eq!(config.max_record_size, DEFAULT_MAX_RECORD_SIZE);
    }
}
