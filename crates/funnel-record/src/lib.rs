//! OpenCDC records, the unit of data every Funnel pipeline moves.
//!
//! A [`Record`] has a [`Position`] (opaque bytes chosen by its source), an
//! [`Operation`], string [`Metadata`], a key and a payload (`before` and `after`), where
//! each piece of data is either raw bytes or structured ([`Data`]). Structured values
//! ([`Value`]) include times ([`Timestamp`], a UTC instant with nanosecond precision),
//! the counterpart of the Go `time.Time` values Conduit's structured data can hold.
//!
//! [`Record::to_json`] and [`Record::from_json`] are the OpenCDC JSON codec, byte-compatible
//! with Conduit (its differences are listed in the `json` module docs and in
//! `docs/opencdc.md`). [`FieldPath`] is a field reference such as `.Payload.After.id`, as
//! processors take them, with [`Record::get`], [`Record::set`], [`Record::remove`] and
//! [`Record::rename`] to use one.
//!
//! [`go`] holds what Go does that Funnel imitates (float text, `fmt.Sprint`, JSON
//! numbers, durations, the calendar), for every crate that must match Conduit.
//!
//! This crate is the data model only: no async, no I/O. It must never depend on the
//! engine (`funnel-core`) or on any connector.

pub mod go;
pub mod json;
pub mod map;
pub mod path;
mod record;
pub mod time;

pub use json::{DecodeError, JsonLines, JsonOptions};
pub use map::StructuredData;
pub use path::{DataSlot, FieldPath, FieldRef, PathError, Target};
pub use record::{Data, Metadata, Operation, Payload, Position, Record, Value};
pub use smol_str::SmolStr;
pub use time::Timestamp;

/// Well-known metadata keys (Conduit's `opencdc.*` and `conduit.*` names).
pub mod metadata {
    /// Version of the OpenCDC format (`"v1"`).
    pub const VERSION: &str = "opencdc.version";
    /// When the change happened at the source, Unix nanoseconds as decimal text.
    pub const CREATED_AT: &str = "opencdc.createdAt";
    /// When the record was read, Unix nanoseconds as decimal text.
    pub const READ_AT: &str = "opencdc.readAt";
    /// Table, topic or collection the record belongs to.
    pub const COLLECTION: &str = "opencdc.collection";
    /// Schema subject of a structured key.
    pub const KEY_SCHEMA_SUBJECT: &str = "opencdc.key.schema.subject";
    /// Schema version of a structured key.
    pub const KEY_SCHEMA_VERSION: &str = "opencdc.key.schema.version";
    /// Schema subject of a structured payload.
    pub const PAYLOAD_SCHEMA_SUBJECT: &str = "opencdc.payload.schema.subject";
    /// Schema version of a structured payload.
    pub const PAYLOAD_SCHEMA_VERSION: &str = "opencdc.payload.schema.version";
    /// Full ID of the source connector that read the record.
    pub const SOURCE_CONNECTOR_ID: &str = "conduit.source.connector.id";
    /// Set by a source on a record it could not read (such as a line longer than the
    /// file source's `maxRecordSize`), which then has no `payload.after`: the engine nacks
    /// such a record as soon as it is read, with this text as the error, so it goes to
    /// the dead-letter queue.
    pub const READ_ERROR: &str = "funnel.read.error";
    /// Error text of the nack that sent a record to the dead-letter queue.
    pub const DLQ_NACK_ERROR: &str = "conduit.dlq.nack.error";
    /// ID of the task (processor or destination) that nacked a record.
    pub const DLQ_NACK_NODE_ID: &str = "conduit.dlq.nack.node.id";
}
