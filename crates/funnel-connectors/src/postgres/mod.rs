//! The `postgres` source and destination (cargo feature `postgres`, on by default),
//! compatible with Conduit's builtin postgres connector. The user documentation, with
//! the full type mapping, is the postgres section of `docs/connectors.md`.
//!
//! # Source settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `url` | — (required) | `postgres://user:password@host:5432/database` (or key=value). TLS as libpq: `sslmode` (disable, the default; allow, prefer, require, verify-ca, verify-full) and `sslrootcert` in the URL (see `tls`). |
//! | `tables` | — (required) | Comma list of tables (`name` or `schema.name`), or `*` for every table. |
//! | `snapshotMode` | `initial` | `initial`: read every row first; `never`: only changes. |
//! | `cdcMode` | `auto` | `auto` or `logrepl`: both stream with logical replication. |
//! | `logrepl.publicationName` | `conduitpub` | Publication, created (or extended) when missing. |
//! | `logrepl.slotName` | `conduitslot` | Replication slot, created when missing. |
//! | `logrepl.autoCleanup` | `true` | [`cleanup`] drops the slot and the publication. |
//! | `logrepl.withAvroSchema` | `true` | Accepted for compatibility; no schema is attached. |
//! | `snapshot.fetchSize` | `50000` | Accepted for compatibility: the snapshot streams each table with `COPY`. |
//!
//! The server needs `wal_level = logical` (`scripts/setup-services.sh` sets it).
//!
//! **Snapshot then changes, no gap, no overlap.** On a first start the source creates
//! the slot on a replication connection with `EXPORT_SNAPSHOT` and reads every table in
//! that snapshot (`SET TRANSACTION SNAPSHOT`, one repeatable-read transaction, one
//! `COPY (SELECT ... ORDER BY <primary key>) TO STDOUT` per table). The slot streams exactly the transactions that
//! committed after the snapshot, so each row is seen once. Snapshot records have
//! operation `snapshot`; changes are `create`, `update` (with `payload.before` when the
//! table has `REPLICA IDENTITY FULL`, or the old key when an update changed the key)
//! and `delete` (key, and `before` with `REPLICA IDENTITY FULL`). TRUNCATE is skipped
//! with a warning.
//!
//! **Records.** Key: the primary key columns (structured; without a primary key, the
//! replica identity columns, or no key). `payload.after`: the row (structured), with the
//! type mapping of the `types` module. Metadata: `opencdc.collection` (the table, with
//! its schema unless `public`), `opencdc.createdAt` (commit time of the transaction in
//! Unix nanoseconds; the snapshot's start time for snapshot rows), `opencdc.readAt`,
//! `postgres.lsn` (the commit LSN, or the slot's consistent point for snapshot rows)
//! and `conduit.source.connector.id`.
//!
//! **Positions** (byte order = read order, see `position`): `pg:1:<row>:<table and key>`
//! in the snapshot and `pg:2:<commit LSN>:<index>` for changes. After a restart:
//!
//! - in the snapshot: the exported snapshot is gone, so the remaining rows (after the
//!   saved key of the saved table, then the following tables) are read in a new
//!   snapshot, and then changes stream from the slot. The slot was created before the
//!   first snapshot and has not moved, so every change since then is streamed again:
//!   rows read by the new snapshot may then see older changes replayed on top
//!   (at-least-once; applied in order, the destination converges to the source);
//! - in the change stream: streaming resumes from the slot, and changes at or before
//!   the saved (commit LSN, index) are skipped, so nothing is delivered twice.
//!
//! **Guarantee.** The slot's confirmed flush LSN moves only in [`Source::ack`], which
//! the engine calls after the position is committed: it becomes the commit LSN of the
//! last acknowledged change (the transaction is sent again after a restart, and its
//! delivered changes skipped). When everything read is acknowledged and the server
//! sends a keepalive, it moves to the keepalive's WAL end, so an idle slot does not hold
//! WAL back. Standby status updates go out every second when the position moved, and
//! at once when the server asks for one.
//!
//! # Destination settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `url` | — (required) | As for the source. |
//! | `table` | `{{ index .Metadata "opencdc.collection" }}` | A table name, or a metadata look-up `{{ index .Metadata "key" }}` / `{{ .Metadata.key }}`. |
//! | `key` | the record key's fields | Comma list of key columns (need a unique constraint). |
//! | `exactlyOnce` | `false` | Funnel extension: store the last position in `funnel_positions` in the same transaction and skip what it covers after a restart. |
//!
//! Create, snapshot and update upsert (`INSERT ... ON CONFLICT (key) DO UPDATE`), an
//! update whose `before` has another key deletes the old row first, delete deletes by
//! key, and a record without key is inserted. Each batch is one transaction, acked after
//! its commit. A record the server refuses (type mismatch, constraint, missing column
//! or table) is nacked with the connector, the table and the server's message, and
//! the rest of the batch is written (the batch is then written again record by record,
//! each under a savepoint). Connection failures fail the write as a transient error:
//! nothing is acked, and the restarted pipeline writes the records again.
//!
//! [`Source::ack`]: funnel_core::Source::ack

mod config;
mod conn;
mod copy;
mod destination;
mod pgoutput;
mod position;
mod source;
mod tls;
mod types;

/// The private decoders, for [`crate::fuzzing`].
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks {
    pub(crate) use super::pgoutput::{Cell, Message, decode as decode_pgoutput};
    pub(crate) use super::position::PgPosition;
    pub(crate) use super::types::TypeMap;
}

use std::sync::Arc;

use funnel_core::component::{Build, Cleanup, Component};

pub use crate::sql::destination::POSITIONS_TABLE;
pub use config::{
    CdcMode, Columns, PgUrl, Positive, PostgresDestinationConfig, PostgresDestinationSettings,
    PostgresSourceConfig, PostgresSourceSettings, PublicationName, SlotName, SnapshotMode,
    TableName, Tables, validate_destination, validate_source,
};
pub use conn::{ConnectFn, client_setup};
use destination::PostgresDestination;
pub use position::compare_positions;
pub use source::PostgresSource;
pub use tls::{SslMode, Tls};

use funnel_core::ConnectorError;

use funnel_core::typed::SettingsStruct;

use crate::{Settings, SettingsError};

/// Metadata key holding the LSN of a change (its commit LSN, as `X/Y`).
pub const METADATA_LSN: &str = "postgres.lsn";

/// Drops the replication slot and the publication of a source whose
/// `logrepl.autoCleanup` is true (the default); does nothing when it is false. This is
/// Conduit's `LifecycleOnDeleted` for the postgres source: call it when the pipeline
/// is deleted, after its source was torn down (it waits up to 10 s for the slot to be
/// released).
///
/// # Errors
///
/// Invalid settings (as [`validate_source`]), or a failure to reach the server or drop
/// the objects.
pub async fn cleanup(id: &str, settings: &Settings) -> Result<(), ConnectorError> {
    let config = source_config(id, settings)?;
    source::cleanup(&config, id).await
}

fn source_config(id: &str, settings: &Settings) -> Result<PostgresSourceConfig, ConnectorError> {
    validate_source(settings).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(SettingsError::to_string).collect();
        ConnectorError::config(format!("postgres source {id}: {}", text.join("; ")))
    })
}

/// What [`cleanup`] would drop, one line each; nothing when `logrepl.autoCleanup` is
/// off.
///
/// # Errors
///
/// Invalid settings.
pub fn cleanup_plan(id: &str, settings: &Settings) -> Result<Vec<String>, ConnectorError> {
    let config = source_config(id, settings)?;
    if !config.auto_cleanup {
        return Ok(Vec::new());
    }
    let database = config.pg.get_dbname().unwrap_or("postgres");
    Ok(vec![format!(
        "{id}: drop replication slot {} and publication {} of database {database} on {}",
        config.slot,
        config.publication,
        conn::address(&config.pg)
    )])
}

/// The postgres source in the registry: its check connects to the server, its cleanup
/// drops the replication slot and publication.
pub const SOURCE: Component = Component::new(
    "postgres",
    "Reads a snapshot of PostgreSQL tables, then their changes with logical replication.",
    &[PostgresSourceSettings::SPEC, crate::SDK_SOURCE_SETTINGS],
    Build::Source(|id, settings, resume| {
        let config = validate_source(settings)?;
        Ok(Arc::new(PostgresSource::new(id, config, resume)))
    }),
)
.with_check(|id, settings| {
    crate::checked(id, validate_source(&settings), |config, id| async move {
        conn::connect(&config.pg, &config.tls, &format!("postgres source {id}"))
            .await
            .map(drop)
    })
})
.with_cleanup(Cleanup {
    plan: cleanup_plan,
    run: |id, settings| Box::pin(async move { cleanup(&id, &settings).await }),
});

/// The postgres destination in the registry: its check connects to the server.
pub const DESTINATION: Component = Component::new(
    "postgres",
    "Upserts and deletes rows of PostgreSQL tables.",
    &[
        PostgresDestinationSettings::SPEC,
        crate::sql::destination::SqlDestinationSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        Ok(crate::paced(
            settings,
            Arc::new(PostgresDestination::new(id, config)),
        ))
    }),
)
.with_check(|id, settings| {
    crate::checked(
        id,
        validate_destination(&settings),
        |config, id| async move {
            conn::connect(
                &config.pg,
                &config.tls,
                &format!("postgres destination {id}"),
            )
            .await
            .map(drop)
        },
    )
});
