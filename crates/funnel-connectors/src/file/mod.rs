//! The `file` source and destination: lines of a file in, OpenCDC JSON lines out.
//!
//! # Source settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `path` | — (required) | The file to read. If it does not exist yet, the source waits for it. |
//! | `maxRecordSize` | `67108864` | The longest line (bytes, without its newline) that becomes a record; a longer one is skipped and nacked. |
//! | `sdk.batch.size` | `0` | Lines per read at most; `0` means 1000. |
//!
//! The source reads the file line by line and then follows it, like `tail -F`: at the
//! end of the file it checks for appended lines every 100 ms. A last line without a
//! newline is emitted once its newline is written (or its file is finished by rotation).
//! Each record has operation `create`, key = the line number in its file (from 1, as
//! decimal text, raw), `payload.after` = the line without its `\n` (raw), and metadata
//! `file.path` (the `path` setting as given), `opencdc.readAt` and
//! `conduit.source.connector.id`.
//!
//! **Position:** `f1:{files}:{offset}:{dev}:{ino}:{fingerprint length}:{fingerprint}`
//! (hexadecimal; see `position.rs`): the file (device, inode and a hash of its first
//! bytes, up to 1 KiB), the files started before it, and the byte offset just after the
//! line's `\n`. A bare decimal offset (earlier versions) is read as an offset in the file
//! at `path`.
//!
//! **Rotation:** when `path` names another file, the old one is finished through the
//! open handle and the new one read from its start; a file shorter than the offset read
//! (truncated) or no longer starting with its first bytes (rewritten) is read again from
//! its start; a `path` that stays missing for 1 s after the file was read is reported as
//! a transient error (the pipeline restarts with backoff until a file appears). On
//! restart, a position whose file was rotated away is finished from the file found next
//! to `path` with the same identity, then `path` is read from its start.
//!
//! **Oversized lines:** a line longer than `maxRecordSize` is skipped as it is read
//! (bounded memory) and replaced by a record with metadata
//! [`READ_ERROR`](funnel_record::metadata::READ_ERROR) naming the file, line and offset;
//! the engine nacks it to the dead-letter queue. Each byte is scanned once.
//!
//! **Guarantee:** exactly once per line across restarts, given the position of the last
//! acknowledged line, when the file is appended to and rotated by renaming.
//!
//! # Destination settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `path` | — (required) | The file to append to; created if missing (its directory must exist). |
//! | `sdk.record.format` | `opencdc/json` | `opencdc/json`, `debezium/json`, or `template` with the Go template in `sdk.record.format.options` (see [`format`](crate::format)). |
//! | `latency` | `false` | Measure each record's read-to-durable latency (time after the `fsync` minus its `opencdc.readAt`) into the process-wide histogram of [`latency_summary`](crate::noop::latency_summary). |
//!
//! Each record is written as one line of compact OpenCDC JSON (or its
//! `sdk.record.format`) followed by `\n`; a record the template fails on is nacked. A batch
//! is encoded into one buffer and written with one call on a dedicated writer thread,
//! which then calls `fsync` (`sync_data`); several batches waiting together share one
//! write and one `fsync`.
//!
//! **Guarantee:** a record is acknowledged only after its line is durable on disk, in
//! write order. A crash in the middle of a write can leave a last line without its
//! newline; the next open cuts it off (it was never acknowledged, so it is written
//! again) rather than glue the next line onto it. If a write or `fsync` fails, the file
//! is cut back to its last durable length and the destination reports the error on its
//! next `ack`, so a restart appends again from a whole line (at least once: records
//! written but not yet acked before a crash are written again).
//!
//! **Not a regular file** (`/dev/null`, `/dev/stdout`, a terminal, a named pipe): the
//! path is opened for writing as it is (never created or cut), lines are written the
//! same way and acknowledged once written, without `fsync` — such a target holds
//! nothing durable to sync. Opening a named pipe waits until a process opens it for
//! reading; a reader that goes away fails the next write (`Broken pipe`).
//!
//! The SDK settings of sources and destinations are accepted as for every connector
//! (see [`SDK_SOURCE_SETTINGS`](crate::SDK_SOURCE_SETTINGS) and
//! [`SDK_DESTINATION_SETTINGS`](crate::SDK_DESTINATION_SETTINGS)).

mod config;
mod destination;
mod position;
#[cfg(feature = "fuzzing")]
pub(crate) use position::FilePosition;
mod source;

pub use config::{
    DEFAULT_MAX_RECORD_SIZE, FileDestinationConfig, FileSourceConfig, FileSourceSettings,
    validate_destination, validate_source,
};
pub use destination::FileDestination;
pub use source::FileSource;

use std::sync::Arc;

use funnel_core::component::{Build, Component};

use funnel_core::typed::SettingsStruct;

/// Metadata key holding the path of the file a record was read from.
pub const METADATA_FILE_PATH: &str = "file.path";

/// The file source in the registry.
pub const SOURCE: Component = Component::new(
    "file",
    "Reads the lines of a file and follows appends, rotation and truncation.",
    &[FileSourceSettings::SPEC, crate::SDK_SOURCE_SETTINGS],
    Build::Source(|id, settings, resume| {
        let config = validate_source(settings)?;
        Ok(Arc::new(FileSource::new(id, config, resume)))
    }),
);

/// The file destination in the registry; its check is that the file's directory
/// exists.
pub const DESTINATION: Component = Component::new(
    "file",
    "Writes records as OpenCDC JSON lines to a file.",
    &[FileDestinationConfig::SPEC, crate::SDK_DESTINATION_SETTINGS],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        crate::formatted(settings, |format| FileDestination::new(id, config, format))
    }),
)
.with_check(|id, settings| {
    crate::checked(
        id,
        validate_destination(&settings),
        |config, _| async move { destination::check(&config).await },
    )
});
