//! The `generator` source: made-up records, for demos, tests and benchmarks.
//!
//! # Settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `format.type` | — | `raw`, `structured` or `file`: the payload of the default stream (records without a collection). This or one `collections.*.format.type` is required. |
//! | `format.options.<field>` | — | For `raw` and `structured`: a field and its type, one of `int`, `string`, `time`, `bool`, `duration`. |
//! | `format.options.path` | — | For `file`: a file whose whole content is the raw payload of every record (read once, at open). |
//! | `operations` | `create` | Comma-separated operations to pick from at random: `create`, `update`, `delete`, `snapshot`. |
//! | `collections.<name>.format.type` | — | Adds a stream whose records carry `opencdc.collection = <name>`. |
//! | `collections.<name>.format.options.*` | — | As `format.options.*`, for that collection. |
//! | `collections.<name>.operations` | `create` | As `operations`, for that collection. |
//! | `recordCount` | `-1` | The number of records to generate; `-1` or `0` is infinite. After the last one, `read` reports exhaustion. |
//! | `rate` | `0` | Maximum records per second (a float); `0` is unlimited. |
//! | `readTime` | `0` | Deprecated: the time one record takes, converted to `rate = 1 / readTime`. Setting it with `rate` is an error. |
//! | `burst.sleepTime` | `0` | When set, the source alternates sleep and generate phases, starting with a sleep. |
//! | `burst.generateTime` | `1s` | How long each generate phase lasts. |
//! | `sdk.batch.size` | `0` | Records per read; `0` means 1000. |
//!
//! The other SDK settings (`sdk.batch.delay`, `sdk.schema.*`) are accepted for
//! compatibility; see [`SDK_SOURCE_SETTINGS`](crate::SDK_SOURCE_SETTINGS).
//!
//! # Records
//!
//! - Key: a random word (raw). `create` and `snapshot` fill `payload.after`, `update`
//!   fills both sides, `delete` only `payload.before`.
//! - Structured payloads have the configured fields; raw payloads are the JSON of such
//!   a map. `int` is a random non-negative integer, `string` a random word, `bool` a
//!   random boolean, `duration` a random number of nanoseconds below an hour, `time`
//!   the read time as a timestamp (RFC 3339 text in OpenCDC JSON).
//! - Everything random is derived from the position, so a record is the same every
//!   time its position is generated (except `time` fields and timestamps).
//! - With several streams, each record goes to one picked at random (by position).
//! - Metadata: `opencdc.readAt` and `opencdc.createdAt` (Unix nanoseconds),
//!   `conduit.source.connector.id`, and `opencdc.collection` for named collections.
//!
//! # Position
//!
//! The record number as decimal text: `"1"`, `"2"`, ... across all streams.
//!
//! # Delivery guarantee
//!
//! Resumable: with a resume position `n` the generator continues at `n + 1`, so after a
//! restart no acknowledged record is generated again and `recordCount` counts across
//! restarts. (Conduit's generator does not resume and restarts at 1.)

pub(crate) mod config;
mod data;
mod source;

pub use config::{
    Burst, CollectionConfig, FieldType, Format, GeneratorConfig, PaceSettings, StreamSettings,
    validate,
};
pub use source::GeneratorSource;

use std::sync::Arc;

use funnel_core::component::{Build, Component};

use funnel_core::typed::SettingsStruct;

/// The generator source in the registry.
pub const SOURCE: Component = Component::new(
    "generator",
    "Generates records with random data, for demos, tests and benchmarks.",
    &[
        StreamSettings::SPEC,
        PaceSettings::SPEC,
        crate::SDK_SOURCE_SETTINGS,
    ],
    Build::Source(|id, settings, resume| {
        let config = validate(settings)?;
        Ok(Arc::new(GeneratorSource::new(id, config, resume)))
    }),
);
