//! The `s3` source and destination for Amazon S3 and S3-compatible stores (cargo
//! feature `s3`, on by default), with the settings of Conduit's built-in s3
//! connector. The user documentation is the s3 section of `docs/connectors.md`.
//!
//! # Settings (source and destination)
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `aws.accessKeyId` | — (required) | Access key ID. |
//! | `aws.secretAccessKey` | — (required) | Secret access key. |
//! | `aws.sessionToken` | — | Session token of temporary credentials. |
//! | `aws.region` | — (required) | Region of the bucket. |
//! | `aws.bucket` | — (required) | Bucket name. |
//! | `prefix` | `""` | Key prefix read or written. |
//! | `aws.endpoint` | AWS | URL of an S3-compatible store. |
//! | `aws.pathStyle` | `false` | Address the bucket in the path (`endpoint/bucket`). |
//!
//! # Source
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `pollingPeriod` | `1s` | Time between listings. |
//! | `lookback` | `30s` | How late after its LastModified an object may appear and still be read after a restart. |
//!
//! The source lists the object versions under the prefix (ListObjectVersions, which
//! shows overwrites and, in a bucket with versioning, deletes) every `pollingPeriod`.
//! The first listing of a source without a position is a snapshot: one `snapshot`
//! record per object. After that each new object is a `create` record, a new
//! version of a known key an `update`, and a delete marker a `delete` (payload
//! empty). Records come in (LastModified, key) order. Key: the object key (raw).
//! Payload: the object's content (raw), fetched by version; a record holds its object
//! whole. Metadata: `s3.bucket`, `s3.etag`, `s3.versionId` (with versioning),
//! `opencdc.createdAt` (LastModified), `opencdc.readAt`, `conduit.source.connector.id`.
//!
//! **Position**: a floor time and the versions read since it (see [`position`]), so a
//! restart reads exactly the versions not read yet, also those with keys sorting
//! before the last one read, as long as they appear within `lookback` of their
//! LastModified time.
//!
//! **Guarantee**: nothing is acked to the store; the committed position is the whole
//! state, so a restart re-reads exactly what was not committed.
//!
//! # Destination
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `format` | `json` | OpenCDC JSON lines (`parquet` is refused). |
//! | `compression` | `none` | `none` or `gzip`. |
//!
//! Each batch becomes one object, `<prefix><UTC time>-<run ID>-<sequence>.json`
//! (`.json.gz` with gzip): names sort in write order and a new run never reuses one.
//! Batches larger than 16 MiB are uploaded in 8 MiB parts. Records are acked, in
//! write order, once the upload of their object has completed; a failed upload (after
//! the client's retries) fails the destination and the pipeline restarts, writing
//! the unacked records again into new objects (at least once).

mod client;
mod config;
mod destination;
pub mod position;
mod source;

use std::sync::Arc;

use funnel_core::component::{Build, Component};
use funnel_core::typed::SettingsStruct;

pub use config::{
    Compression, Endpoint, Format, S3Connection, S3ConnectionSettings, S3DestinationConfig,
    S3DestinationSettings, S3SourceConfig, S3SourceSettings, validate_destination, validate_source,
};
pub use destination::S3Destination;
pub use source::S3Source;

/// Metadata key holding the bucket an object was read from.
pub const METADATA_BUCKET: &str = "s3.bucket";

/// Metadata key holding an object's ETag.
pub const METADATA_ETAG: &str = "s3.etag";

/// Metadata key holding an object's version ID (buckets with versioning).
pub const METADATA_VERSION: &str = "s3.versionId";

/// The S3 source in the registry: its check lists the prefix.
pub const SOURCE: Component = Component::new(
    "s3",
    "Reads the objects under a prefix of an S3 bucket: a snapshot, then new, changed and deleted objects.",
    &[
        S3ConnectionSettings::SPEC,
        S3SourceSettings::SPEC,
        crate::SDK_SOURCE_SETTINGS,
    ],
    Build::Source(|id, settings, resume| {
        let config = validate_source(settings)?;
        Ok(Arc::new(S3Source::new(id, config, resume)))
    }),
)
.with_check(|id, settings| {
    crate::checked(id, validate_source(&settings), |config, id| async move {
        client::Bucket::new(&config.connection, &format!("s3 source {id}"))?
            .check()
            .await
    })
});

/// The S3 destination in the registry: its check lists the prefix.
pub const DESTINATION: Component = Component::new(
    "s3",
    "Writes each batch as an object of OpenCDC JSON lines to an S3 bucket, acking after the upload.",
    &[
        S3ConnectionSettings::SPEC,
        S3DestinationSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        crate::formatted(settings, |format| S3Destination::new(id, config, format))
    }),
)
.with_check(|id, settings| {
    crate::checked(id, validate_destination(&settings), |config, id| async move {
        client::Bucket::new(&config.connection, &format!("s3 destination {id}"))?
            .check()
            .await
    })
});
