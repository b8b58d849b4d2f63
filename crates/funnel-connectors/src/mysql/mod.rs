//! The `mysql` source and destination (cargo feature `mysql`, on by default), for MySQL
//! and MariaDB, with the settings of Conduit's MySQL connector. The user documentation,
//! with the full type mapping, is the mysql section of `docs/connectors.md`.
//!
//! # Source settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `dsn` | — (required) | As for the destination below. |
//! | `tables` | — (required) | Comma list of patterns applied in order: `*` (all tables of the DSN's database), `regex` / `+regex` (include), `-regex` (exclude); each matches a whole name. |
//! | `fetchSize` | `10000` | Rows per snapshot query (keyset pages). |
//! | `tableConfig.<table>.sortingColumn` | — | The column ordering the snapshot of a table without primary key. |
//! | `unsafeSnapshot` | `false` | Snapshot tables with neither (pages by offset, not resumable inside the table). |
//! | `disableCanalLogs` | `false` | Accepted for compatibility. |
//!
//! The server needs `log_bin`, `binlog_format = ROW`, `binlog_row_image = FULL` (and
//! `binlog_row_metadata = FULL` so that column names come with each change); the user
//! needs `SELECT`, `REPLICATION SLAVE`, `REPLICATION CLIENT` (and `RELOAD` on MySQL).
//!
//! **Snapshot then changes, no gap, no overlap.** On a first start the source opens
//! one repeatable-read transaction `WITH CONSISTENT SNAPSHOT` and takes the binlog
//! coordinates of that snapshot (MariaDB: `binlog_snapshot_file` /
//! `binlog_snapshot_position`, without a lock; MySQL: under `FLUSH TABLES WITH READ
//! LOCK` for the instant of the start). It reads every table in that transaction in
//! primary-key pages of `fetchSize` rows, then streams the binlog from exactly those
//! coordinates as a replica (`COM_BINLOG_DUMP`, a random server id).
//!
//! **Records.** Snapshot rows are `snapshot`; row events are `create`, `update` (with
//! the full old row in `payload.before`) and `delete` (old row in `before`). Key: the
//! primary key columns (structured). Metadata: `opencdc.collection` (the table),
//! `opencdc.createdAt` (the event's time; the snapshot's start for snapshot rows),
//! `opencdc.readAt`, [`METADATA_BINLOG_POSITION`], [`METADATA_GTID`] (MySQL GTIDs) and
//! `conduit.source.connector.id`. DDL statements (query events) reload the schemas of
//! the tables they name.
//!
//! **Positions** (byte order = read order, see `position`): `my:1:<row>:<json>` in the
//! snapshot (row number, the snapshot's binlog coordinates, table and key) and
//! `my:2:<file>:<transaction start>:<index>` for changes. After a restart inside the
//! snapshot the rest is read in a new snapshot, then the binlog streams from the first
//! snapshot's coordinates (changes made in between come again: at least once); in the
//! stream, reading resumes at the start of the saved transaction and skips its row
//! changes up to the saved index (exactly once). A binlog file the server has purged
//! is a clear fatal error.
//!
//! **Guarantee.** The server holds nothing for the source, so `ack` has nothing to do:
//! the committed position is the whole state (the binlog must still be on the server
//! when the pipeline restarts).
//!
//! # Destination settings
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `dsn` | — (required) | `user:password@tcp(host:3306)/database` (Go's DSN, as Conduit) or `mysql://user:password@host:3306/database`. TLS is not supported yet. |
//! | `table` | `{{ index .Metadata "opencdc.collection" }}` | A table name (`t` or `db.t`), a metadata look-up, or a Go template. |
//! | `key` | the record key's fields | Comma list of key columns. |
//! | `exactlyOnce` | `false` | Funnel extension: store the last position in `funnel_positions` in the same transaction and skip what it covers after a restart. |
//!
//! Create, snapshot and update upsert (`INSERT ... ON DUPLICATE KEY UPDATE`; neighbours
//! of one table and column set share one multi-row statement), an update whose `before`
//! has another key deletes the old row first, delete deletes by key, and a record
//! without key is inserted. Each batch is one transaction, acked after its commit. A
//! record the server refuses is nacked with the connector, the table and the server's
//! message, and the rest of the batch is written (the batch is then written again
//! record by record, each under a savepoint). Connection failures fail the write as a
//! transient error: nothing is acked, and the restarted pipeline writes the records
//! again.

mod config;
mod conn;
mod destination;
mod position;
mod source;
mod types;

use std::sync::Arc;

use funnel_core::component::{Build, Component};
use funnel_core::typed::SettingsStruct;

pub use crate::sql::destination::POSITIONS_TABLE;
pub use config::{
    Columns, Dsn, MysqlDestinationConfig, MysqlDestinationSettings, MysqlSourceConfig,
    MysqlSourceSettings, Positive, Tables, validate_destination, validate_source,
};
use destination::MysqlDestination;
pub use source::MysqlSource;

/// Metadata key holding where a record was read in the binlog (`file:position` of its
/// row event; for snapshot rows, where the change stream starts).
pub const METADATA_BINLOG_POSITION: &str = "mysql.binlog.position";

/// Metadata key holding the GTID of a change's transaction (`uuid:number`), when the
/// server sends GTID events.
pub const METADATA_GTID: &str = "mysql.gtid";

/// The mysql source in the registry: its check connects to the server and checks its
/// binlog settings.
pub const SOURCE: Component = Component::new(
    "mysql",
    "Reads a consistent snapshot of MySQL / MariaDB tables, then their changes from the binlog.",
    &[MysqlSourceSettings::SPEC, crate::SDK_SOURCE_SETTINGS],
    Build::Source(|id, settings, resume| {
        let config = validate_source(settings)?;
        Ok(Arc::new(MysqlSource::new(id, config, resume)))
    }),
)
.with_check(|id, settings| {
    crate::checked(id, validate_source(&settings), |config, id| async move {
        let conn = conn::connect(&config.dsn, &format!("mysql source {id}")).await?;
        let _ = conn.disconnect().await;
        Ok(())
    })
});

/// The mysql destination in the registry: its check connects to the server.
pub const DESTINATION: Component = Component::new(
    "mysql",
    "Upserts and deletes rows of MySQL / MariaDB tables.",
    &[
        MysqlDestinationSettings::SPEC,
        crate::sql::destination::SqlDestinationSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        Ok(crate::paced(
            settings,
            Arc::new(MysqlDestination::new(id, config)),
        ))
    }),
)
.with_check(|id, settings| {
    crate::checked(
        id,
        validate_destination(&settings),
        |config, id| async move {
            let conn = conn::connect(&config.dsn, &format!("mysql destination {id}")).await?;
            let _ = conn.disconnect().await;
            Ok(())
        },
    )
});
