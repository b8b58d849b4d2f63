//! File settings: parsing and validation (no I/O).

use std::path::PathBuf;

use crate::settings::{SettingsReader, sdk_destination, sdk_source};
use crate::{Settings, SettingsError};

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

/// The validated settings of a file destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDestinationConfig {
    /// `path` (required): the file to append to.
    pub path: PathBuf,
    /// `latency` (default false): record each record's read-to-durable latency in the
    /// process-wide histogram (see [`latency_summary`](crate::noop::latency_summary)).
    pub latency: bool,
}

/// Parses and validates file source settings. Pure: the file is not touched (a missing
/// file is waited for when reading).
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<FileSourceConfig, Vec<SettingsError>> {
    let mut r = SettingsReader::new(settings);
    let sdk = sdk_source(&mut r);
    let path = r.required_str("path");
    let max_record_size = r.count("maxRecordSize");
    if max_record_size == Some(0) {
        r.error(
            "maxRecordSize",
            "0 is too small: a record needs at least 1 byte",
        );
    }
    r.finish()?;
    Ok(FileSourceConfig {
        // `finish` fails when the required path is missing.
        path: PathBuf::from(path.unwrap_or_default()),
        batch_size: sdk.batch_size,
        max_record_size: max_record_size.unwrap_or(DEFAULT_MAX_RECORD_SIZE),
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
    let mut r = SettingsReader::new(settings);
    sdk_destination(&mut r);
    let path = r.required_str("path");
    let latency = r.bool("latency").unwrap_or(false);
    r.finish()?;
    Ok(FileDestinationConfig {
        // `finish` fails when the required path is missing.
        path: PathBuf::from(path.unwrap_or_default()),
        latency,
    })
}
