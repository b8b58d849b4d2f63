//! The mysql source: a consistent snapshot, then the binlog from the snapshot's
//! coordinates.
//!
//! [`Source::open`] connects, checks the server's binlog settings and the tables, and
//! spawns the reader task; the task reads the snapshot and then the binlog stream, and
//! hands batches to [`Source::read`] through a bounded channel (which makes `read`
//! cancel-safe). The server keeps no state for the source: [`Source::ack`] has nothing
//! to tell it, since the position alone says where to resume.
//!
//! A snapshot first counts the rows it has to read (in its own transaction, after the
//! resumed key), so the source knows how many are left ([`Source::backlog`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Source};
use funnel_record::{
    Data, Metadata, Operation, Payload, Position, Record, StructuredData, metadata,
};
use futures::{FutureExt, StreamExt};
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Params, Row};
use tokio::sync::watch;

use super::config::MysqlSourceConfig;
use super::conn::{self, TableSchema};
use super::position::{Coordinates, KeyValue, MyPosition, SnapshotPositions};
use super::types::{Kind, quote_ident, to_value};
use super::{METADATA_BINLOG_POSITION, METADATA_GTID};
use crate::sql::reader::{BatchSender, ReaderTask, SnapshotLeft, snapshot_record};
use crate::util::unix_nanos_now;

/// How often the server sends a heartbeat on an idle binlog stream.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A MySQL / MariaDB source (see the [module docs](super)).
pub struct MysqlSource {
    id: String,
    who: String,
    config: MysqlSourceConfig,
    resume: Option<Position>,
    reader: ReaderTask,
}

/// A table the source reads.
struct Tracked {
    name: String,
    schema: Arc<TableSchema>,
    /// The snapshot's order: the primary key, or the sorting column (indexes into
    /// the schema's columns); empty: pages by offset (`unsafeSnapshot`).
    order: Vec<usize>,
}

/// What the reader does first.
enum Start {
    /// Snapshot (after this table and key when resuming), then the binlog from `from`.
    Snapshot {
        /// The transaction holding the consistent snapshot (none when resuming: a new
        /// one is started by the reader).
        snapshot: Option<Conn>,
        from: Coordinates,
        first_row: u64,
        after: Option<(String, Vec<KeyValue>)>,
    },
    /// The binlog from `from`, skipping row changes of the first transaction up to
    /// `skip` (its index).
    Stream {
        from: Coordinates,
        skip: Option<u32>,
    },
}

impl MysqlSource {
    /// A source with validated settings, resuming after `resume`. Nothing is
    /// connected until [`Source::open`].
    pub fn new(id: &str, config: MysqlSourceConfig, resume: Option<Position>) -> Self {
        Self {
            who: format!("mysql source {id}"),
            id: id.to_owned(),
            config,
            resume,
            reader: ReaderTask::new(&format!("mysql source {id}"), Duration::from_secs(2)),
        }
    }

    /// Fails with what to change when the server's binlog cannot feed the source.
    async fn check_binlog(&self, conn: &mut Conn) -> Result<(), ConnectorError> {
        let who = &self.who;
        let server = self.config.dsn.address();
        let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
            .query_first(
                "SELECT CAST(@@GLOBAL.log_bin AS CHAR), @@GLOBAL.binlog_format, \
                 @@GLOBAL.binlog_row_image",
            )
            .await
            .map_err(|e| {
                conn::error(
                    &format!("{who}: cannot read the binlog settings of {server}"),
                    &e,
                )
            })?;
        let (log_bin, format, image) = row.unwrap_or_default();
        match binlog_problem(log_bin.as_deref(), format.as_deref(), image.as_deref()) {
            Some(problem) => Err(ConnectorError::config(format!(
                "{who}: {problem} on {server} (set log_bin, binlog_format = ROW, \
                 binlog_row_image = FULL and server_id in the server's configuration, then \
                 restart it)"
            ))),
            None => Ok(()),
        }
    }

    /// The configured tables with their schemas.
    async fn tables(&self, conn: &mut Conn) -> Result<Vec<Tracked>, ConnectorError> {
        let who = &self.who;
        let database = &self.config.dsn.database;
        let all = conn::list_tables(conn, database, who).await?;
        let names: Vec<String> = all
            .iter()
            .filter(|t| self.config.tables.matches(t))
            .cloned()
            .collect();
        // A plain name that matches nothing is a missing table, not an empty pattern.
        for (include, regex) in &self.config.tables.0 {
            let literal = regex
                .as_str()
                .strip_prefix("^(?:")
                .and_then(|r| r.strip_suffix(")$"))
                .unwrap_or("");
            if *include
                && !literal.is_empty()
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
                && !all.iter().any(|t| t == literal)
            {
                return Err(ConnectorError::config(format!(
                    "{who}: table {literal} does not exist in database {database} on {} (setting `tables`)",
                    self.config.dsn.address()
                )));
            }
        }
        if names.is_empty() {
            return Err(ConnectorError::config(format!(
                "{who}: no table of database {database} matches `tables`"
            )));
        }
        let mut tracked = Vec::with_capacity(names.len());
        for name in names {
            let Some(schema) = conn::table_schema(conn, database, &name, who).await? else {
                continue;
            };
            let sorting = self
                .config
                .sorting_columns
                .iter()
                .find(|(t, _)| *t == name)
                .map(|(_, c)| c);
            let order = if let Some(column) = sorting {
                match schema.by_name.get(column) {
                    Some(&i) => vec![i],
                    None => {
                        return Err(ConnectorError::config(format!(
                            "{who}: table {name} has no column {column} (setting \
                             tableConfig.{name}.sortingColumn)"
                        )));
                    }
                }
            } else if !schema.key.is_empty() {
                schema.key.clone()
            } else if self.config.unsafe_snapshot {
                Vec::new()
            } else {
                return Err(ConnectorError::config(format!(
                    "{who}: table {name} has no primary key, so its snapshot cannot be read in a \
                     resumable order: set tableConfig.{name}.sortingColumn to a unique column, or \
                     unsafeSnapshot to true"
                )));
            };
            tracked.push(Tracked {
                name,
                schema,
                order,
            });
        }
        Ok(tracked)
    }

    /// Fails with what to do when the binlog file `from` is no longer on the server.
    async fn check_file(&self, conn: &mut Conn, from: &Coordinates) -> Result<(), ConnectorError> {
        let who = &self.who;
        let logs: Vec<Row> = conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| conn::error(&format!("{who}: cannot list the binary logs"), &e))?;
        let present = logs
            .into_iter()
            .any(|mut row| row.take::<String, _>(0).as_deref() == Some(from.file.as_str()));
        if present {
            Ok(())
        } else {
            Err(ConnectorError::config(format!(
                "{who}: the position needs binlog file {} (from position {}), which {} no longer \
                 has (purged, or binlog_expire_logs_seconds passed): changes since then are lost. \
                 Reset the pipeline's position to take a new snapshot, and keep binlogs longer",
                from.file,
                from.pos,
                self.config.dsn.address()
            )))
        }
    }
}

/// What keeps the server's binlog (`log_bin`, `binlog_format`, `binlog_row_image`)
/// from feeding the source, if anything.
fn binlog_problem(
    log_bin: Option<&str>,
    format: Option<&str>,
    image: Option<&str>,
) -> Option<String> {
    if !matches!(log_bin, Some("1" | "ON")) {
        return Some("the binary log is off; the source reads it".to_owned());
    }
    if !format.is_some_and(|f| f.eq_ignore_ascii_case("ROW")) {
        return Some(format!(
            "the binary log is in {} format; the source needs ROW",
            format.unwrap_or("no")
        ));
    }
    if !image.is_some_and(|i| i.eq_ignore_ascii_case("FULL")) {
        return Some(format!(
            "binlog_row_image is {}; the source needs FULL (whole rows before and after)",
            image.unwrap_or("unset")
        ));
    }
    None
}

/// Starts a consistent-snapshot transaction on `conn`; returns the binlog coordinates
/// of the snapshot.
async fn begin_snapshot(conn: &mut Conn, who: &str) -> Result<Coordinates, ConnectorError> {
    let fail = |what: &str, e: mysql_async::Error| conn::error(&format!("{who}: {what}"), &e);
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(|e| fail("cannot start the snapshot", e))?;
    let mariadb = conn.server_version() >= (10, 0, 0)
        && conn
            .query_first::<String, _>("SELECT @@version")
            .await
            .map_err(|e| fail("cannot read the server version", e))?
            .is_some_and(|v| v.contains("MariaDB"));
    if mariadb {
        // MariaDB gives the binlog coordinates of a consistent snapshot without a lock.
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(|e| fail("cannot start the snapshot", e))?;
        let rows: Vec<(String, String)> = conn
            .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
            .await
            .map_err(|e| fail("cannot read the snapshot's binlog coordinates", e))?;
        let get = |name: &str| {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if let (Some(file), Some(pos)) =
            (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
            && let Ok(pos) = pos.parse()
            && !file.is_empty()
        {
            return Ok(Coordinates { file, pos });
        }
        conn.query_drop("ROLLBACK")
            .await
            .map_err(|e| fail("snapshot", e))?;
    }
    // MySQL: a global read lock for the instant the snapshot starts (needs RELOAD).
    conn.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .map_err(|e| fail("cannot lock the tables for the snapshot's start", e))?;
    let started = async {
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await?;
        let row: Option<Row> = conn.query_first("SHOW MASTER STATUS").await?;
        Ok::<_, mysql_async::Error>(row)
    }
    .await;
    let unlocked = conn.query_drop("UNLOCK TABLES").await;
    let row = started.map_err(|e| fail("cannot start the snapshot", e))?;
    unlocked.map_err(|e| fail("cannot unlock the tables", e))?;
    let Some(mut row) = row else {
        return Err(ConnectorError::config(format!(
            "{who}: SHOW MASTER STATUS is empty: the binary log is off"
        )));
    };
    let file: Option<String> = row.take(0);
    let pos: Option<u64> = row.take(1);
    match (file, pos) {
        (Some(file), Some(pos)) => Ok(Coordinates { file, pos }),
        _ => Err(ConnectorError::transient(format!(
            "{who}: SHOW MASTER STATUS gave no coordinates"
        ))),
    }
}

/// The binlog coordinates now (where a source without snapshot would start).
async fn current_coordinates(conn: &mut Conn, who: &str) -> Result<Coordinates, ConnectorError> {
    let row: Option<Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(|e| conn::error(&format!("{who}: cannot read the binlog coordinates"), &e))?;
    let Some(mut row) = row else {
        return Err(ConnectorError::config(format!(
            "{who}: SHOW MASTER STATUS is empty: the binary log is off"
        )));
    };
    match (
        row.take::<Option<String>, _>(0).flatten(),
        row.take::<Option<u64>, _>(1).flatten(),
    ) {
        (Some(file), Some(pos)) => Ok(Coordinates { file, pos }),
        _ => Err(ConnectorError::transient(format!(
            "{who}: SHOW MASTER STATUS gave no coordinates"
        ))),
    }
}

/// A replica server id for this stream: any id the server does not have, chosen at
/// random so that two sources never share one.
fn server_id() -> u32 {
    let nanos = unix_nanos_now();
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    let mixed = mixed.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    0x4000_0000 | ((mixed >> 33) as u32 & 0x3FFF_FFFF)
}

#[async_trait]
impl Source for MysqlSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let who = self.who.clone();
        let resume = (self.resume.as_ref().map(MyPosition::decode).transpose())
            .map_err(|m| ConnectorError::data(format!("{who}: {m}")))?;
        let mut conn = conn::connect(&self.config.dsn, &who).await?;
        self.check_binlog(&mut conn).await?;
        // Needs REPLICATION CLIENT (BINLOG MONITOR on MariaDB): fail early when missing.
        current_coordinates(&mut conn, &who).await?;
        let tables = self.tables(&mut conn).await?;
        let start = match resume {
            None => {
                let mut snapshot = conn::connect(&self.config.dsn, &who).await?;
                let from = begin_snapshot(&mut snapshot, &who).await?;
                tracing::info!(connector = %self.id, file = %from.file, pos = from.pos, "snapshot started");
                Start::Snapshot {
                    snapshot: Some(snapshot),
                    from,
                    first_row: 0,
                    after: None,
                }
            }
            Some(MyPosition::Snapshot {
                row,
                start,
                table,
                key,
            }) => {
                self.check_file(&mut conn, &start).await?;
                Start::Snapshot {
                    snapshot: None,
                    from: start,
                    first_row: row + 1,
                    after: Some((table, key)),
                }
            }
            Some(MyPosition::Change { txn, index }) => {
                self.check_file(&mut conn, &txn).await?;
                Start::Stream {
                    from: txn,
                    skip: Some(index),
                }
            }
        };

        self.reader
            .start((), |tx, stop| {
                let reader = Reader {
                    id: self.id.clone(),
                    who: who.clone(),
                    config: self.config.clone(),
                    by_name: tables
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (t.name.clone(), i))
                        .collect(),
                    tables,
                    conn,
                    tx,
                    stop,
                    batch_size: self.config.batch_size.max(1),
                    snapshot_left: self.reader.snapshot_left(),
                };
                reader.run(start)
            })
            .await;
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        self.reader.read().await
    }

    async fn ack(&self, _positions: &[Position]) -> Result<(), ConnectorError> {
        // The server keeps nothing for the source: the committed position is all a
        // restart needs.
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        // The reader stops at its next step; one stuck on the server is aborted.
        self.reader.stop().await;
        Ok(())
    }

    /// During the snapshot: its rows not yet read (counted when the snapshot starts).
    /// After it: 0, the snapshot being done.
    fn backlog(&self) -> Option<u64> {
        self.reader.backlog()
    }
}

/// The reader task's state.
struct Reader {
    id: String,
    who: String,
    config: MysqlSourceConfig,
    tables: Vec<Tracked>,
    by_name: HashMap<String, usize>,
    /// Catalog look-ups (schemas after DDL).
    conn: Conn,
    tx: BatchSender,
    stop: watch::Receiver<bool>,
    batch_size: usize,
    /// Rows of the snapshot not yet sent (see [`Source::backlog`]).
    snapshot_left: SnapshotLeft,
}

/// The transaction being read from the binlog.
struct Txn {
    start: Coordinates,
    index: u32,
    /// Row changes up to this index were delivered before a restart.
    skip: Option<u32>,
    gtid: Option<String>,
}

impl Txn {
    /// The transaction starting at `begin` in `file`, after this one; when both are
    /// the transaction a resume starts in, it keeps the rows to skip.
    fn next(&self, file: &str, begin: u64, gtid: Option<String>) -> Txn {
        let same = self.start.file == file && self.start.pos == begin;
        Txn {
            start: Coordinates {
                file: file.to_owned(),
                pos: begin,
            },
            index: 0,
            skip: self.skip.filter(|_| same),
            gtid,
        }
    }
}

impl Reader {
    async fn run(mut self, start: Start) -> Result<(), ConnectorError> {
        let (from, skip) = match start {
            Start::Snapshot {
                snapshot,
                from,
                first_row,
                after,
            } => {
                let snapshot = match snapshot {
                    Some(conn) => conn,
                    None => {
                        let mut conn = conn::connect(&self.config.dsn, &self.who).await?;
                        begin_snapshot(&mut conn, &self.who).await?;
                        conn
                    }
                };
                if !self.snapshot(snapshot, &from, first_row, after).await? {
                    return Ok(());
                }
                (from, None)
            }
            Start::Stream { from, skip } => (from, skip),
        };
        self.stream(from, skip).await
    }

    /// Sends a batch; false when the source is stopping.
    async fn send(&mut self, batch: Vec<Record>) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.wait_for(|stopped| *stopped) => false,
            sent = self.tx.send(Ok(batch)) => sent.is_ok(),
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Reads every table in the snapshot transaction of `conn`, in pages by key;
    /// false when stopped.
    async fn snapshot(
        &mut self,
        mut conn: Conn,
        from: &Coordinates,
        mut row_number: u64,
        after: Option<(String, Vec<KeyValue>)>,
    ) -> Result<bool, ConnectorError> {
        let who = self.who.clone();
        let created_at = unix_nanos_now().to_string();
        let binlog_position = format!("{}:{}", from.file, from.pos);
        let first = match &after {
            Some((table, _)) => self.by_name.get(table).copied().unwrap_or(0),
            None => 0,
        };
        let tables: Vec<(String, Arc<TableSchema>, Vec<usize>)> = self.tables[first..]
            .iter()
            .map(|t| (t.name.clone(), Arc::clone(&t.schema), t.order.clone()))
            .collect();
        let database = quote_ident(&self.config.dsn.database);
        let table_sql = |name: &str| format!("{database}.{}", quote_ident(name));
        let order_sql = |schema: &TableSchema, order: &[usize]| -> Vec<String> {
            order
                .iter()
                .map(|&i| quote_ident(&schema.columns[i].name))
                .collect()
        };
        // The resumed table reads after its key; the others from their start.
        let resumed = |n: usize, name: &str| match &after {
            Some((table, key)) if n == 0 && table == name && !key.is_empty() => Some(key.clone()),
            _ => None,
        };
        // The rows to read, for the progress of the snapshot (`backlog`).
        let mut total = 0u64;
        for (n, (name, schema, order)) in tables.iter().enumerate() {
            let last = resumed(n, name);
            let (sql, params) =
                count_query(&table_sql(name), &order_sql(schema, order), last.as_deref());
            let counted: Option<u64> = conn
                .exec_first(sql, params)
                .await
                .map_err(|e| conn::error(&format!("{who}: cannot count table {name}"), &e))?;
            total += counted.unwrap_or(0);
        }
        self.snapshot_left.start(total);
        for (n, (name, schema, order)) in tables.into_iter().enumerate() {
            let mut last = resumed(n, &name);
            let columns: Vec<String> = schema
                .columns
                .iter()
                .map(|c| quote_ident(&c.name))
                .collect();
            let order_sql = order_sql(&schema, &order);
            let table_sql = table_sql(&name);
            let mut template = Metadata::new();
            template.insert(metadata::COLLECTION, name.clone());
            template.insert(metadata::CREATED_AT, created_at.clone());
            template.insert(METADATA_BINLOG_POSITION, binlog_position.clone());
            template.insert(metadata::SOURCE_CONNECTOR_ID, self.id.clone());
            let positions = SnapshotPositions::new(from, &name);
            let mut offset = 0usize;
            let mut rows_read = 0u64;
            loop {
                if self.stopped() {
                    return Ok(false);
                }
                let (sql, params) = page_query(
                    &table_sql,
                    &columns,
                    &order_sql,
                    last.as_deref(),
                    self.config.fetch_size,
                    offset,
                );
                let rows: Vec<Row> = conn
                    .exec(sql, params)
                    .await
                    .map_err(|e| conn::error(&format!("{who}: snapshot of table {name}"), &e))?;
                let count = rows.len();
                offset += count;
                let mut batch = Vec::with_capacity(self.batch_size.min(count));
                template.insert(metadata::READ_AT, unix_nanos_now().to_string());
                for row in rows {
                    let values = row.unwrap();
                    if !order.is_empty() {
                        last = Some(order.iter().map(|&i| KeyValue::of(&values[i])).collect());
                    }
                    let mut after = StructuredData::new();
                    for (column, value) in schema.columns.iter().zip(values) {
                        // The session's character set is utf8mb4: the server converts
                        // text in other character sets (the binlog does not).
                        let kind = match &column.kind {
                            Kind::Text { .. } => &Kind::Text { latin1: false },
                            kind => kind,
                        };
                        after.insert(column.name.clone(), to_value(kind, value));
                    }
                    let key = key_of(&schema, &after);
                    let position = positions.encode(
                        row_number,
                        if order.is_empty() {
                            &[]
                        } else {
                            last.as_deref().unwrap_or_default()
                        },
                    );
                    row_number += 1;
                    rows_read += 1;
                    batch.push(snapshot_record(position, &template, key, after));
                    if batch.len() >= self.batch_size {
                        let full =
                            std::mem::replace(&mut batch, Vec::with_capacity(self.batch_size));
                        let sent = full.len();
                        if !self.send(full).await {
                            return Ok(false);
                        }
                        self.snapshot_left.sent(sent);
                    }
                }
                let sent = batch.len();
                if !batch.is_empty() && !self.send(batch).await {
                    return Ok(false);
                }
                self.snapshot_left.sent(sent);
                if count < self.config.fetch_size {
                    break;
                }
            }
            tracing::info!(connector = %self.id, table = %name, rows = rows_read, "snapshot of table done");
        }
        let _ = conn.query_drop("COMMIT").await;
        let _ = conn.disconnect().await;
        tracing::info!(connector = %self.id, file = %from.file, pos = from.pos, "snapshot done; streaming the binlog");
        Ok(true)
    }

    /// Streams the binlog from `from` until stopped.
    async fn stream(mut self, from: Coordinates, skip: Option<u32>) -> Result<(), ConnectorError> {
        let who = self.who.clone();
        let mut conn = conn::connect(&self.config.dsn, &who).await?;
        let heartbeat = u64::try_from(HEARTBEAT.as_nanos()).unwrap_or(u64::MAX);
        conn.query_drop(format!("SET @master_heartbeat_period = {heartbeat}"))
            .await
            .map_err(|e| conn::error(&format!("{who}: cannot set up the binlog stream"), &e))?;
        // The first (fake) rotate event comes before the format description that says
        // whether events end in a checksum: with checksums on, its name ends in one.
        let checksums: Option<String> = conn
            .query_first("SELECT @@binlog_checksum")
            .await
            .map_err(|e| conn::error(&format!("{who}: cannot read binlog_checksum"), &e))?;
        let mut strip_checksum = checksums.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        let request = BinlogStreamRequest::new(server_id())
            .with_filename(from.file.as_bytes())
            .with_pos(from.pos);
        let mut stream = conn.get_binlog_stream(request).await.map_err(|e| {
            conn::error(
                &format!(
                    "{who}: cannot stream the binlog from {}:{} on {}",
                    from.file,
                    from.pos,
                    self.config.dsn.address()
                ),
                &e,
            )
        })?;
        let mut file = from.file.clone();
        // Row changes before the first BEGIN (a resume exactly at one) belong to it.
        let mut txn = Txn {
            start: from.clone(),
            index: 0,
            skip,
            gtid: None,
        };
        let mut batch: Vec<Record> = Vec::with_capacity(self.batch_size);
        loop {
            let event = match stream.next().now_or_never() {
                Some(event) => event,
                None => {
                    if !batch.is_empty() {
                        let full =
                            std::mem::replace(&mut batch, Vec::with_capacity(self.batch_size));
                        if !self.send(full).await {
                            return Ok(());
                        }
                    }
                    tokio::select! {
                        biased;
                        _ = self.stop.wait_for(|stopped| *stopped) => return Ok(()),
                        event = stream.next() => event,
                    }
                }
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    return Err(conn::error(
                        &format!("{who}: reading the binlog at {file}"),
                        &e,
                    ));
                }
                None => {
                    return Err(ConnectorError::transient(format!(
                        "{who}: the server ended the binlog stream"
                    )));
                }
            };
            let header = event.header();
            let end = u64::from(header.log_pos());
            let begin = end.saturating_sub(u64::from(header.event_size()));
            let data = match event.read_data() {
                Ok(Some(data)) => data,
                Ok(None) => continue,
                Err(e) => {
                    return Err(ConnectorError::fatal(format!(
                        "{who}: cannot decode a binlog event at {file}:{begin}: {e}"
                    )));
                }
            };
            match data {
                EventData::RotateEvent(rotate) => {
                    let name = rotate.name_raw();
                    let name = if strip_checksum && name.len() > 4 {
                        &name[..name.len() - 4]
                    } else {
                        name
                    };
                    file = String::from_utf8_lossy(name).into_owned();
                }
                EventData::FormatDescriptionEvent(_) => strip_checksum = false,
                EventData::GtidEvent(gtid) => {
                    let gtid = format!("{}:{}", uuid_text(&gtid.sid()), gtid.gno());
                    txn = txn.next(&file, begin, Some(gtid));
                }
                EventData::QueryEvent(query) => {
                    let text = query.query();
                    let trimmed = text.trim();
                    if trimmed.eq_ignore_ascii_case("BEGIN") {
                        if txn.start.pos != begin || txn.start.file != file {
                            // A BEGIN after a GTID event belongs to the GTID's transaction.
                            let gtid_started = txn.gtid.is_some() && txn.index == 0;
                            if !gtid_started {
                                txn = txn.next(&file, begin, None);
                            }
                        }
                    } else if !trimmed.eq_ignore_ascii_case("COMMIT") {
                        // DDL: the tables' schemas may have changed.
                        self.refresh_schemas(&query.schema(), trimmed).await?;
                    }
                }
                EventData::RowsEvent(rows) => {
                    if header.timestamp() == 0 {
                        continue;
                    }
                    let Some(tme) = stream.get_tme(rows.table_id()) else {
                        return Err(ConnectorError::fatal(format!(
                            "{who}: a row event at {file}:{begin} has no table map"
                        )));
                    };
                    let table_name = tme.table_name().into_owned();
                    let tracked = tme.database_name() == self.config.dsn.database.as_str()
                        && self.by_name.contains_key(&table_name);
                    let operation =
                        match &rows {
                            RowsEventData::WriteRowsEvent(_)
                            | RowsEventData::WriteRowsEventV1(_) => Operation::Create,
                            RowsEventData::UpdateRowsEvent(_)
                            | RowsEventData::UpdateRowsEventV1(_)
                            | RowsEventData::PartialUpdateRowsEvent(_) => Operation::Update,
                            RowsEventData::DeleteRowsEvent(_)
                            | RowsEventData::DeleteRowsEventV1(_) => Operation::Delete,
                        };
                    let binlog_position = format!("{file}:{begin}");
                    let mut template = Metadata::new();
                    if tracked {
                        template.insert(metadata::COLLECTION, table_name.clone());
                        template.insert(
                            metadata::CREATED_AT,
                            (i128::from(header.timestamp()) * 1_000_000_000).to_string(),
                        );
                        template.insert(metadata::READ_AT, unix_nanos_now().to_string());
                        template.insert(METADATA_BINLOG_POSITION, binlog_position.clone());
                        if let Some(gtid) = &txn.gtid {
                            template.insert(METADATA_GTID, gtid.clone());
                        }
                        template.insert(metadata::SOURCE_CONNECTOR_ID, self.id.clone());
                    }
                    for row in rows.rows(tme) {
                        let index = txn.index;
                        txn.index += 1;
                        if !tracked || txn.skip.is_some_and(|s| index <= s) {
                            continue;
                        }
                        let (before, after) = row.map_err(|e| {
                            ConnectorError::fatal(format!(
                                "{who}: cannot decode a row of table {table_name} at {binlog_position}: {e}"
                            ))
                        })?;
                        let record = self.change(
                            &table_name,
                            operation,
                            before,
                            after,
                            MyPosition::Change {
                                txn: txn.start.clone(),
                                index,
                            }
                            .encode(),
                            template.clone(),
                        );
                        batch.push(record);
                        if batch.len() >= self.batch_size {
                            let full =
                                std::mem::replace(&mut batch, Vec::with_capacity(self.batch_size));
                            if !self.send(full).await {
                                return Ok(());
                            }
                        }
                    }
                }
                EventData::XidEvent(_) => {
                    // The transaction is over; the resume skip applied to it only.
                    txn.skip = None;
                }
                _ => {}
            }
        }
    }

    /// Reloads the schemas of the tracked tables after a DDL statement in `database`.
    async fn refresh_schemas(&mut self, database: &str, query: &str) -> Result<(), ConnectorError> {
        let own = &self.config.dsn.database;
        let lower = query.to_ascii_lowercase();
        let names: Vec<String> = self
            .tables
            .iter()
            .filter(|t| lower.contains(&t.name.to_ascii_lowercase()))
            .map(|t| t.name.clone())
            .collect();
        if names.is_empty() || (database != own && !lower.contains(&own.to_ascii_lowercase())) {
            return Ok(());
        }
        for name in names {
            let schema = conn::table_schema(&mut self.conn, own, &name, &self.who).await?;
            if let Some(schema) = schema
                && let Some(&i) = self.by_name.get(&name)
            {
                tracing::info!(connector = %self.id, table = %name, "table changed; schema reloaded");
                self.tables[i].schema = schema;
            }
        }
        Ok(())
    }

    /// One row change as a record.
    fn change(
        &self,
        table: &str,
        operation: Operation,
        before: Option<BinlogRow>,
        after: Option<BinlogRow>,
        position: Position,
        meta: Metadata,
    ) -> Record {
        let schema = self
            .by_name
            .get(table)
            .map(|&i| Arc::clone(&self.tables[i].schema));
        let before = before.map(|r| row_data(schema.as_deref(), r));
        let after = after.map(|r| row_data(schema.as_deref(), r));
        let key = schema.as_deref().and_then(|s| {
            after
                .as_ref()
                .or(before.as_ref())
                .and_then(|row| key_of(s, row))
        });
        Record {
            position,
            operation,
            metadata: meta,
            key,
            payload: Payload {
                before: before.map(Data::Structured),
                after: if operation == Operation::Delete {
                    None
                } else {
                    after.map(Data::Structured)
                },
            },
        }
    }
}

/// A row of the binlog as structured data: column names from the binlog's metadata
/// (`binlog_row_metadata = FULL`) or the schema's order, kinds from the schema.
fn row_data(schema: Option<&TableSchema>, row: BinlogRow) -> StructuredData {
    let columns = row.columns();
    let values = row.unwrap();
    let mut data = StructuredData::new();
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        let binlog_name = column.name_str();
        let name = if binlog_name.starts_with('@') {
            schema
                .and_then(|s| s.columns.get(i))
                .map_or_else(|| binlog_name.into_owned(), |c| c.name.clone())
        } else {
            binlog_name.into_owned()
        };
        let kind = schema
            .and_then(|s| s.kind(&name))
            .cloned()
            .unwrap_or(Kind::Other);
        let value = match value {
            BinlogValue::Value(v) => to_value(&kind, v),
            BinlogValue::Jsonb(j) => match serde_json::Value::try_from(j) {
                Ok(json) => funnel_record::Value::from_json(json.to_string().as_bytes())
                    .unwrap_or(funnel_record::Value::Null),
                Err(_) => funnel_record::Value::Null,
            },
            BinlogValue::JsonDiff(_) => funnel_record::Value::Null,
        };
        data.insert(name, value);
    }
    data
}

/// The record key: the primary key columns of `row`.
fn key_of(schema: &TableSchema, row: &StructuredData) -> Option<Data> {
    if schema.key.is_empty() {
        return None;
    }
    let mut key = StructuredData::new();
    for &i in &schema.key {
        let name = &schema.columns[i].name;
        key.insert(
            name.clone(),
            row.get(name).cloned().unwrap_or(funnel_record::Value::Null),
        );
    }
    Some(Data::Structured(key))
}

/// The query of one snapshot page: rows after `last` in `order`, or at `offset` without
/// an order.
fn page_query(
    table: &str,
    columns: &[String],
    order: &[String],
    last: Option<&[KeyValue]>,
    limit: usize,
    offset: usize,
) -> (String, Params) {
    let select = format!("SELECT {} FROM {table}", columns.join(", "));
    if order.is_empty() {
        return (
            format!("{select} LIMIT {limit} OFFSET {offset}"),
            Params::Empty,
        );
    }
    let order_by = order.join(", ");
    let (filter, params) = after_key(order, last);
    (
        format!("{select}{filter} ORDER BY {order_by} LIMIT {limit}"),
        params,
    )
}

/// The query counting the rows a snapshot of `table` reads: those after `last` in
/// `order` (all of them without an order or a key).
fn count_query(table: &str, order: &[String], last: Option<&[KeyValue]>) -> (String, Params) {
    let (filter, params) = after_key(order, last);
    (format!("SELECT COUNT(*) FROM {table}{filter}"), params)
}

/// ` WHERE` the row is after `last` in `order`, with its parameters; empty without a
/// key (or an order).
fn after_key(order: &[String], last: Option<&[KeyValue]>) -> (String, Params) {
    let Some(last) = last.filter(|_| !order.is_empty()) else {
        return (String::new(), Params::Empty);
    };
    // (a, b) > (x, y) as a OR of prefixes, which every server plans as a range.
    let mut ors = Vec::with_capacity(order.len());
    let mut params = Vec::new();
    for i in 0..order.len() {
        let mut ands = Vec::with_capacity(i + 1);
        for (j, column) in order.iter().enumerate().take(i) {
            ands.push(format!("{column} = ?"));
            params.push(last[j].param());
        }
        ands.push(format!("{} > ?", order[i]));
        params.push(last[i].param());
        ors.push(format!("({})", ands.join(" AND ")));
    }
    (
        format!(" WHERE {}", ors.join(" OR ")),
        Params::Positional(params),
    )
}

/// A MySQL server UUID as text.
fn uuid_text(sid: &[u8; 16]) -> String {
    let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binlog_off_in_statement_format_or_without_full_rows_is_refused_with_what_to_set() {
        assert_eq!(binlog_problem(Some("1"), Some("ROW"), Some("FULL")), None);
        let off = binlog_problem(Some("0"), Some("ROW"), Some("FULL")).unwrap();
        assert!(off.contains("binary log is off"), "{off}");
        let statement = binlog_problem(Some("1"), Some("STATEMENT"), Some("FULL")).unwrap();
        assert!(
            statement.contains("STATEMENT format; the source needs ROW"),
            "{statement}"
        );
        let mixed = binlog_problem(Some("ON"), Some("MIXED"), Some("FULL")).unwrap();
        assert!(mixed.contains("MIXED"), "{mixed}");
        let minimal = binlog_problem(Some("1"), Some("ROW"), Some("MINIMAL")).unwrap();
        assert!(minimal.contains("binlog_row_image is MINIMAL"), "{minimal}");
    }

    #[test]
    fn snapshot_pages_continue_after_the_last_key_in_key_order() {
        let (sql, params) = page_query("`t`", &["`a`".into()], &["`a`".into()], None, 10, 0);
        assert_eq!(sql, "SELECT `a` FROM `t` ORDER BY `a` LIMIT 10");
        assert_eq!(params, Params::Empty);
        let last = [KeyValue::Int(1), KeyValue::Bytes(b"x".to_vec())];
        let (sql, params) = page_query(
            "`t`",
            &["`a`".into(), "`b`".into()],
            &["`a`".into(), "`b`".into()],
            Some(&last),
            10,
            0,
        );
        assert_eq!(
            sql,
            "SELECT `a`, `b` FROM `t` WHERE (`a` > ?) OR (`a` = ? AND `b` > ?) ORDER BY `a`, `b` LIMIT 10"
        );
        assert_eq!(
            params,
            Params::Positional(vec![
                mysql_async::Value::Int(1),
                mysql_async::Value::Int(1),
                mysql_async::Value::Bytes(b"x".to_vec())
            ])
        );
        let (sql, _) = page_query("`t`", &["`a`".into()], &[], None, 10, 20);
        assert_eq!(sql, "SELECT `a` FROM `t` LIMIT 10 OFFSET 20");
    }

    #[test]
    fn the_snapshot_counts_the_rows_after_the_resumed_key_as_its_pages_read_them() {
        let (sql, params) = count_query("`t`", &["`a`".into()], None);
        assert_eq!(sql, "SELECT COUNT(*) FROM `t`");
        assert_eq!(params, Params::Empty);
        let last = [KeyValue::Int(1), KeyValue::Int(2)];
        let order = ["`a`".to_owned(), "`b`".to_owned()];
        let (sql, params) = count_query("`t`", &order, Some(&last));
        assert_eq!(
            sql,
            "SELECT COUNT(*) FROM `t` WHERE (`a` > ?) OR (`a` = ? AND `b` > ?)"
        );
        let (page, page_params) = page_query("`t`", &order, &order, Some(&last), 10, 0);
        assert!(page.contains(" WHERE (`a` > ?) OR (`a` = ? AND `b` > ?) ORDER BY"));
        assert_eq!(params, page_params);
        // Without an order (pages by offset) every row is read, so every row counts.
        let (sql, _) = count_query("`t`", &[], Some(&last));
        assert_eq!(sql, "SELECT COUNT(*) FROM `t`");
    }
}
