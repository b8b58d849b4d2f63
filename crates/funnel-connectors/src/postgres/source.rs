//! The postgres source: an initial snapshot, then logical replication with `pgoutput`.
//!
//! [`Source::open`] connects, checks the tables, creates the publication and the slot
//! when they are missing and spawns the reader task; the task reads the snapshot and
//! then the replication stream, and hands batches to [`Source::read`] through a bounded
//! channel (which makes `read` cancel-safe). [`Source::ack`] passes the commit LSN of
//! the last acknowledged change to the task, which reports it to the server as flushed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use funnel_core::{ConnectorError, LagReport, Source};
use funnel_record::{
    Data, Metadata, Operation, Payload, Position, Record, SmolStr, StructuredData, metadata,
};
use futures::StreamExt;
use pgwire_replication::{
    Lsn, PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent,
};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::METADATA_LSN;
use super::config::PostgresSourceConfig;
use super::conn::{self, TableInfo};
use super::copy::{CopyLines, TextRow};
use super::pgoutput::{self, Cell, Message};
use super::position::{PgPosition, SnapshotPositions};
use super::types::{SESSION_OPTIONS, TypeMap, quote_ident, quote_literal};
use crate::sql::reader::{BatchSender, ReaderTask, SnapshotLeft, snapshot_record};
use crate::util::unix_nanos_now;

/// A change waits at most this long for more changes to fill its batch.
const LINGER: Duration = Duration::from_millis(5);
/// How often the slot's lag is read from the server.
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL source (see the [module docs](super)).
pub struct PostgresSource {
    id: String,
    who: String,
    config: PostgresSourceConfig,
    resume: Option<Position>,
    /// The reader task, and beside it where to send the last acked change (commit
    /// LSN, index).
    reader: ReaderTask<watch::Sender<Option<(u64, u32)>>>,
    /// Where the slot's lag goes, when the engine asked for it.
    lag: Mutex<Option<LagReport>>,
}

/// What the reader does first.
enum Start {
    /// Snapshot, then stream.
    Snapshot {
        /// The snapshot exported by the slot's creation and the slot's consistent
        /// point, held by this session.
        exported: Option<(String, String, ReplicationClient)>,
        /// Continue after this row.
        after: Option<(u64, String, Vec<String>)>,
    },
    /// Stream from the slot.
    Stream,
}

impl PostgresSource {
    /// A source with validated settings, resuming after `resume`. Nothing is
    /// connected until [`Source::open`].
    pub fn new(id: &str, config: PostgresSourceConfig, resume: Option<Position>) -> Self {
        Self {
            who: format!("postgres source {id}"),
            id: id.to_owned(),
            config,
            resume,
            reader: ReaderTask::new(&format!("postgres source {id}"), Duration::from_secs(5)),
            lag: Mutex::new(None),
        }
    }

    fn replication_config(&self) -> ReplicationConfig {
        let pg = &self.config.pg;
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let user = pg.get_user().unwrap_or("postgres");
        let password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let database = pg.get_dbname().unwrap_or(user);
        let tls = self.config.tls.replication(&host);
        let mut cfg = ReplicationConfig::new(
            host,
            user,
            password,
            database,
            self.config.slot.clone(),
            self.config.publication.as_str(),
        )
        .with_port(pg.get_ports().first().copied().unwrap_or(5432))
        .with_tls(tls);
        cfg.status_interval = Duration::from_secs(1);
        cfg.idle_wakeup_interval = Duration::from_secs(5);
        cfg.options = Some(SESSION_OPTIONS.to_owned());
        cfg.application_name = Some(format!("funnel {}", self.id));
        cfg
    }

    fn replication_error(&self, e: &PgWireError) -> ConnectorError {
        let text = e.to_string();
        let slot = &self.config.slot;
        let publication = &self.config.publication;
        let message = format!(
            "{}: replication (slot {slot}, publication {publication}): {text}",
            self.who
        );
        if matches!(e, PgWireError::Auth(_))
            || text.contains("does not exist")
            || text.contains("wal_level")
        {
            ConnectorError::fatal(message)
        } else {
            ConnectorError::transient(message)
        }
    }

    /// Creates the publication if it is missing, and adds configured tables it lacks.
    /// True when it created the publication.
    async fn ensure_publication(
        &self,
        client: &Client,
        tables: &[TableInfo],
    ) -> Result<bool, ConnectorError> {
        let publication = &self.config.publication;
        let who = &self.who;
        let row = client
            .query_opt(
                "SELECT puballtables FROM pg_publication WHERE pubname = $1",
                &[publication],
            )
            .await
            .map_err(|e| conn::error(&format!("{who}: cannot read publications"), e))?;
        let create_error = |e: tokio_postgres::Error| {
            conn::error(
                &format!("{who}: cannot create publication {publication}"),
                e,
            )
        };
        let created = row.is_none();
        match row {
            None => {
                let target = match &self.config.tables {
                    super::config::Tables::All => "ALL TABLES".to_owned(),
                    super::config::Tables::List(_) => format!(
                        "TABLE {}",
                        tables
                            .iter()
                            .map(|t| t.sql.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                client
                    .batch_execute(&format!(
                        "CREATE PUBLICATION {} FOR {target}",
                        quote_ident(publication)
                    ))
                    .await
                    .map_err(create_error)?;
                tracing::info!(connector = %self.id, %publication, "created publication");
            }
            Some(row) if !row.get::<_, bool>(0) => {
                for table in tables {
                    let covered = client
                        .query_opt(
                            "SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid \
                             WHERE p.pubname = $1 AND r.prrelid = $2::int8::oid",
                            &[publication, &i64::from(table.oid)],
                        )
                        .await
                        .map_err(|e| conn::error(&format!("{who}: cannot read publications"), e))?;
                    if covered.is_none() {
                        client
                            .batch_execute(&format!(
                                "ALTER PUBLICATION {} ADD TABLE {}",
                                quote_ident(publication),
                                table.sql
                            ))
                            .await
                            .map_err(|e| {
                                conn::error(
                                    &format!(
                                        "{who}: cannot add table {} to publication {publication}",
                                        table.qualified
                                    ),
                                    e,
                                )
                            })?;
                        tracing::info!(connector = %self.id, %publication, table = %table.qualified, "added table to publication");
                    }
                }
            }
            Some(_) => {}
        }
        Ok(created)
    }

    /// Where the reader starts: resume the stream or the snapshot, or create the slot
    /// (with an exported snapshot when one is to be taken).
    async fn start_point(
        &self,
        client: &Client,
        resume: &Option<PgPosition>,
    ) -> Result<Start, ConnectorError> {
        let who = &self.who;
        let slot_exists = self.slot_exists(client).await?;
        let slot = &self.config.slot;
        let dropped = |what: &str| {
            ConnectorError::fatal(format!(
                "{who}: replication slot {slot} does not exist, but the pipeline's position is {what}: \
                 changes made since the slot was dropped are lost; reset the pipeline's position to \
                 take a new snapshot"
            ))
        };
        let start = match (resume, self.config.snapshot) {
            (Some(PgPosition::Change { .. }), _) => {
                if !slot_exists {
                    return Err(dropped("in the change stream"));
                }
                Start::Stream
            }
            (Some(PgPosition::Snapshot { row, table, key }), _) => {
                if !slot_exists {
                    return Err(dropped("in the snapshot"));
                }
                Start::Snapshot {
                    exported: None,
                    after: Some((*row, table.clone(), key.clone())),
                }
            }
            (None, true) if !slot_exists => {
                let mut replication = ReplicationClient::connect_gated(self.replication_config())
                    .await
                    .map_err(|e| self.replication_error(&e))?;
                let rows = replication
                    .simple_query(&format!(
                        "CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT"
                    ))
                    .await
                    .map_err(|e| self.replication_error(&e))?;
                let column = |i: usize| {
                    rows.first()
                        .and_then(|r| r.get(i).cloned().flatten())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .ok_or_else(|| {
                            ConnectorError::transient(format!(
                                "{who}: CREATE_REPLICATION_SLOT returned no snapshot"
                            ))
                        })
                };
                let consistent_point = column(1)?;
                let snapshot = column(2)?;
                tracing::info!(connector = %self.id, %slot, %snapshot, "created replication slot with an exported snapshot");
                Start::Snapshot {
                    exported: Some((snapshot, consistent_point, replication)),
                    after: None,
                }
            }
            (None, true) => {
                tracing::warn!(
                    connector = %self.id, %slot,
                    "the replication slot exists but the pipeline has no position: the snapshot is \
                     taken now and changes are streamed from the slot, so rows changed in between \
                     may be delivered twice"
                );
                Start::Snapshot {
                    exported: None,
                    after: None,
                }
            }
            (None, false) => {
                if !slot_exists {
                    client
                        .query(
                            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                            &[slot],
                        )
                        .await
                        .map_err(|e| {
                            conn::error(&format!("{who}: cannot create replication slot {slot}"), e)
                        })?;
                }
                Start::Stream
            }
        };
        Ok(start)
    }

    /// Drops the publication this open created, so a failed start leaves nothing behind.
    async fn drop_created_publication(&self, client: &Client) {
        let publication = &self.config.publication;
        let dropped = client
            .batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {}",
                quote_ident(publication)
            ))
            .await;
        match dropped {
            Ok(()) => {
                tracing::info!(connector = %self.id, %publication, "dropped the publication created by a failed start")
            }
            Err(e) => tracing::warn!(
                connector = %self.id, %publication, error = %conn::describe(&e),
                "cannot drop the publication created by a failed start; drop it by hand"
            ),
        }
    }

    /// Whether the slot exists; a fatal error when it exists for another plugin or
    /// database.
    async fn slot_exists(&self, client: &Client) -> Result<bool, ConnectorError> {
        let slot = &self.config.slot;
        let who = &self.who;
        let row = client
            .query_opt(
                "SELECT plugin::text, database::text, current_database()::text FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[slot],
            )
            .await
            .map_err(|e| conn::error(&format!("{who}: cannot read replication slots"), e))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let plugin: Option<String> = row.get(0);
        let database: Option<String> = row.get(1);
        let current: String = row.get(2);
        if plugin.as_deref() != Some("pgoutput") || database.as_deref() != Some(current.as_str()) {
            return Err(ConnectorError::config(format!(
                "{who}: replication slot {slot} exists but is not a pgoutput slot of database {current} \
                 (plugin {plugin:?}, database {database:?}); choose another logrepl.slotName"
            )));
        }
        Ok(true)
    }
}

#[async_trait]
impl Source for PostgresSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let who = self.who.clone();
        let resume = (self.resume.as_ref().map(PgPosition::decode).transpose())
            .map_err(|m| ConnectorError::data(format!("{who}: {m}")))?;
        let client = conn::connect(&self.config.pg, &self.config.tls, &who).await?;
        let level: String = client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(|e| conn::error(&format!("{who}: cannot read wal_level"), e))?
            .get(0);
        if level != "logical" {
            return Err(ConnectorError::config(format!(
                "{who}: the server runs with wal_level = {level}; logical replication needs \
                 wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart the server)"
            )));
        }
        let tables = conn::resolve_tables(&client, &self.config.tables, &who).await?;
        if tables.is_empty() {
            return Err(ConnectorError::config(format!(
                "{who}: no table matches `tables`"
            )));
        }
        let arrays = conn::array_types(&client, &who).await?;
        let created = self.ensure_publication(&client, &tables).await?;
        let start = match self.start_point(&client, &resume).await {
            Ok(start) => start,
            Err(e) => {
                if created {
                    self.drop_created_publication(&client).await;
                }
                return Err(e);
            }
        };

        let (acked, acked_rx) = watch::channel(None);
        let resume_change = match resume {
            Some(PgPosition::Change { commit_lsn, index }) => Some((commit_lsn, index)),
            _ => None,
        };
        let lag = crate::util::lock(&self.lag).clone();
        self.reader
            .start(acked, |tx, stop| {
                if let Some(report) = lag {
                    // Ends when the reader is told to stop (or dropped).
                    let watcher = LagWatcher {
                        id: self.id.clone(),
                        who: who.clone(),
                        config: self.config.clone(),
                        report,
                    };
                    tokio::spawn(watcher.run(stop.clone()));
                }
                let reader = Reader {
                    id: self.id.clone(),
                    who: who.clone(),
                    config: self.config.clone(),
                    replication: self.replication_config(),
                    types: TypeMap::new(arrays),
                    by_oid: tables.iter().map(|t| (t.oid, t.clone())).collect(),
                    tables,
                    client,
                    tx,
                    acked: acked_rx,
                    stop,
                    resume_change,
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

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        let Some(last) = positions.last() else {
            return Ok(());
        };
        let position = PgPosition::decode(last)
            .map_err(|m| ConnectorError::internal(format!("{}: ack: {m}", self.who)))?;
        if let PgPosition::Change { commit_lsn, index } = position {
            self.reader.beside(|acked| {
                acked.send_replace(Some((commit_lsn, index)));
            });
        }
        Ok(())
    }

    /// During the snapshot: its rows not yet read (each table is counted when the
    /// snapshot starts). After it: 0, the snapshot being done.
    fn backlog(&self) -> Option<u64> {
        self.reader.backlog()
    }

    /// Reads the slot's lag (`pg_current_wal_lsn()` minus the slot's
    /// `confirmed_flush_lsn`) every second on a connection of its own while the source
    /// is open.
    fn report_lag(&self, lag: LagReport) {
        *crate::util::lock(&self.lag) = Some(lag);
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        // The reader stops at its next step (a full queue does not hold it); a reader
        // stuck on the server is aborted.
        self.reader.stop().await;
        Ok(())
    }
}

/// Reads how far the slot is behind the server's WAL, in bytes, every
/// [`LAG_INTERVAL`], and reports it; reconnects after a failure.
struct LagWatcher {
    id: String,
    who: String,
    config: PostgresSourceConfig,
    report: LagReport,
}

impl LagWatcher {
    /// The WAL written since what the slot confirmed (on a standby, the WAL replayed).
    const QUERY: &'static str = "SELECT pg_wal_lsn_diff(\
         CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
         confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1";

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut client: Option<Client> = None;
        let mut warned = false;
        let mut tick = tokio::time::interval(LAG_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => return,
                _ = tick.tick() => {}
            }
            match self.read(&mut client).await {
                Ok(Some(bytes)) => {
                    self.report.set_bytes(bytes);
                    warned = false;
                }
                // No slot yet, or one that has confirmed nothing: nothing to say.
                Ok(None) => {}
                Err(e) => {
                    client = None;
                    if !warned {
                        tracing::warn!(connector = %self.id, error = %e, "cannot read the replication slot's lag");
                        warned = true;
                    }
                }
            }
        }
    }

    async fn read(&self, client: &mut Option<Client>) -> Result<Option<u64>, ConnectorError> {
        if client.is_none() {
            *client = Some(conn::connect(&self.config.pg, &self.config.tls, &self.who).await?);
        }
        let Some(connected) = client.as_ref() else {
            return Ok(None);
        };
        let row = connected
            .query_opt(Self::QUERY, &[&self.config.slot])
            .await
            .map_err(|e| conn::error(&format!("{}: slot lag", self.who), e))?;
        Ok(row
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|bytes| u64::try_from(bytes).unwrap_or(0)))
    }
}

/// `names`, each quoted by `quote`, joined with commas.
fn joined(names: &[String], quote: fn(&str) -> String) -> String {
    names
        .iter()
        .map(|n| quote(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reader task's state.
struct Reader {
    id: String,
    who: String,
    config: PostgresSourceConfig,
    replication: ReplicationConfig,
    types: TypeMap,
    tables: Vec<TableInfo>,
    by_oid: HashMap<u32, TableInfo>,
    /// A regular connection: snapshot reads and catalog look-ups.
    client: Client,
    tx: BatchSender,
    acked: watch::Receiver<Option<(u64, u32)>>,
    stop: watch::Receiver<bool>,
    /// Changes at or before this (commit LSN, index) were delivered before a restart.
    resume_change: Option<(u64, u32)>,
    /// Rows of the snapshot not yet sent (see [`Source::backlog`]).
    snapshot_left: SnapshotLeft,
}

/// A relation as the stream describes it.
struct Relation {
    table: TableInfo,
    /// Columns of the stream's tuples: name and type OID.
    columns: Vec<(SmolStr, u32)>,
    /// Indexes in `columns` of the primary key columns (or of the replica identity).
    key: Vec<usize>,
    /// Names of the `key` columns.
    key_names: Vec<SmolStr>,
}

/// The transaction being read.
struct Txn {
    commit_lsn: u64,
    /// The metadata its changes share: created at, LSN and connector ID.
    metadata: Metadata,
    index: u32,
}

impl Reader {
    async fn run(mut self, start: Start) -> Result<(), ConnectorError> {
        let replication = match start {
            Start::Stream => None,
            Start::Snapshot { exported, after } => {
                let (snapshot, client) = match exported {
                    Some((name, lsn, client)) => (Some((name, lsn)), Some(client)),
                    None => (None, None),
                };
                if !self.snapshot(snapshot, after).await? {
                    return Ok(());
                }
                client
            }
        };
        let mut client = match replication {
            Some(mut client) => {
                client
                    .start()
                    .await
                    .map_err(|e| self.replication_error(&e))?;
                client
            }
            None => ReplicationClient::connect(self.replication.clone())
                .await
                .map_err(|e| self.replication_error(&e))?,
        };
        client
            .wait_started()
            .await
            .map_err(|e| self.replication_error(&e))?;
        tracing::info!(connector = %self.id, slot = %self.config.slot, "streaming changes");
        let result = self.stream(&mut client).await;
        let _ = client.shutdown().await;
        result
    }

    fn replication_error(&self, e: &PgWireError) -> ConnectorError {
        let text = e.to_string();
        let message = format!(
            "{}: replication (slot {}, publication {}): {text}",
            self.who, self.config.slot, self.config.publication
        );
        if matches!(e, PgWireError::Auth(_)) || text.contains("does not exist") {
            ConnectorError::fatal(message)
        } else {
            ConnectorError::transient(message)
        }
    }

    /// Sends a batch; false when the source is gone or stopping (a stop does not
    /// wait for room in a queue nobody reads any more).
    async fn send(&self, batch: Vec<Record>) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => false,
            sent = self.tx.send(Ok(batch)) => sent.is_ok(),
        }
    }

    /// Reads every table in one repeatable-read transaction (in the exported snapshot
    /// when there is one). False when the source stopped meanwhile.
    async fn snapshot(
        &mut self,
        exported: Option<(String, String)>,
        after: Option<(u64, String, Vec<String>)>,
    ) -> Result<bool, ConnectorError> {
        let who = self.who.clone();
        let sql_error = |what: &str, e: tokio_postgres::Error| {
            conn::error(&format!("{who}: snapshot: {what}"), e)
        };
        self.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| sql_error("cannot begin", e))?;
        let mut lsn_text = String::new();
        if let Some((name, lsn)) = exported {
            self.client
                .batch_execute(&format!(
                    "SET TRANSACTION SNAPSHOT {}",
                    quote_literal(&name)
                ))
                .await
                .map_err(|e| sql_error("cannot use the exported snapshot", e))?;
            lsn_text = lsn;
        }
        let (mut row_number, start_table, start_key) = match after {
            Some((row, table, key)) => (row + 1, Some(table), key),
            None => (0, None, Vec::new()),
        };
        let first = match &start_table {
            Some(name) => self
                .tables
                .iter()
                .position(|t| &t.qualified == name)
                .unwrap_or(0),
            None => 0,
        };
        let tables = self.tables[first..].to_vec();
        // After the resumed row in the first table, everything in the others.
        let filters: Vec<String> = tables
            .iter()
            .enumerate()
            .map(|(i, table)| {
                if i == 0
                    && start_table.is_some()
                    && !table.key.is_empty()
                    && start_key.len() == table.key.len()
                {
                    let key_cols = joined(&table.key, quote_ident);
                    let values = joined(&start_key, quote_literal);
                    format!(" WHERE ({key_cols}) > ({values})")
                } else {
                    String::new()
                }
            })
            .collect();
        // The rows to read, for the progress of the snapshot (`backlog`).
        let mut total = 0u64;
        for (table, filter) in tables.iter().zip(&filters) {
            let counted = self
                .client
                .query_one(&format!("SELECT count(*) FROM {}{filter}", table.sql), &[])
                .await
                .map_err(|e| sql_error(&format!("cannot count table {}", table.qualified), e))?;
            total += u64::try_from(counted.get::<_, i64>(0)).unwrap_or(0);
        }
        self.snapshot_left.start(total);
        let created_at = unix_nanos_now().to_string();
        for (table, filter) in tables.iter().zip(&filters) {
            let columns = table
                .columns
                .iter()
                .map(|(n, _)| quote_ident(n))
                .collect::<Vec<_>>()
                .join(", ");
            let mut query = format!("COPY (SELECT {columns} FROM {}{filter}", table.sql);
            if !table.key.is_empty() {
                query.push_str(&format!(" ORDER BY {}", joined(&table.key, quote_ident)));
            }
            query.push_str(") TO STDOUT");
            let read_error = |e: tokio_postgres::Error| {
                sql_error(&format!("cannot read table {}", table.qualified), e)
            };
            let stream = self.client.copy_out(&query).await.map_err(read_error)?;
            futures::pin_mut!(stream);
            let key_index: Vec<usize> = table
                .key
                .iter()
                .filter_map(|k| table.columns.iter().position(|(n, _)| n == k))
                .collect();
            // Column names made once per table: a row's keys are clones of these
            // (inline or shared, never allocated per row).
            let names: Vec<SmolStr> = table.columns.iter().map(|(n, _)| SmolStr::new(n)).collect();
            let key_names: Vec<SmolStr> = table.key.iter().map(SmolStr::new).collect();
            let mut sorted: Vec<usize> = (0..names.len()).collect();
            sorted.sort_by(|&a, &b| names[a].cmp(&names[b]));
            let mut template = Metadata::new();
            template.insert(metadata::COLLECTION, table.collection.clone());
            template.insert(metadata::CREATED_AT, created_at.clone());
            template.insert(metadata::SOURCE_CONNECTOR_ID, self.id.clone());
            if !lsn_text.is_empty() {
                template.insert(METADATA_LSN, lsn_text.clone());
            }
            template.insert(metadata::READ_AT, unix_nanos_now().to_string());
            let batch_size = self.config.batch_size;
            let mut batch = Vec::with_capacity(batch_size);
            let mut lines = CopyLines::default();
            let mut row = TextRow::default();
            let mut position = SnapshotPositions::new(&table.qualified);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(read_error)?;
                lines.push(chunk);
                while let Some(parsed) = lines.next_row(&mut row) {
                    parsed.map_err(|m| {
                        ConnectorError::data(format!(
                            "{who}: snapshot: table {}: {m}",
                            table.qualified
                        ))
                    })?;
                    // In key order, so that the map is built without moving or comparing entries
                    // more than once.
                    let after: StructuredData = sorted
                        .iter()
                        .map(|&i| {
                            let value = match row.get(i) {
                                Some(text) => self.types.value(table.columns[i].1, text),
                                None => funnel_record::Value::Null,
                            };
                            (names[i].clone(), value)
                        })
                        .collect();
                    let record_position = position.encode(
                        row_number,
                        key_index.iter().map(|&i| row.get(i).unwrap_or_default()),
                    );
                    let key = key_data(&after, &key_names);
                    batch.push(snapshot_record(record_position, &template, key, after));
                    row_number += 1;
                    if batch.len() >= batch_size {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                        let sent = full.len();
                        if !self.send(full).await {
                            return Ok(false);
                        }
                        self.snapshot_left.sent(sent);
                        template.insert(metadata::READ_AT, unix_nanos_now().to_string());
                    }
                }
            }
            if !lines.is_empty() {
                return Err(ConnectorError::transient(format!(
                    "{who}: snapshot: table {}: COPY ended in the middle of a row",
                    table.qualified
                )));
            }
            let sent = batch.len();
            if !batch.is_empty() && !self.send(batch).await {
                return Ok(false);
            }
            self.snapshot_left.sent(sent);
            tracing::info!(connector = %self.id, table = %table.qualified, rows = row_number, "snapshot of table done");
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| sql_error("cannot commit", e))?;
        Ok(true)
    }

    /// Streams changes until stopped.
    async fn stream(&mut self, client: &mut ReplicationClient) -> Result<(), ConnectorError> {
        let mut relations: HashMap<u32, Relation> = HashMap::new();
        let mut txn: Option<Txn> = None;
        let mut batch: Vec<Record> = Vec::with_capacity(self.config.batch_size);
        let mut read_at = String::new();
        let mut deadline = tokio::time::Instant::now();
        let mut last_emitted: Option<(u64, u32)> = None;
        let mut stop = self.stop.clone();
        let mut acked = self.acked.clone();
        loop {
            let event = tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                changed = acked.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if let Some((lsn, _)) = *acked.borrow_and_update() {
                        client.update_applied_lsn(Lsn(lsn));
                    }
                    continue;
                }
                () = tokio::time::sleep_until(deadline), if !batch.is_empty() => {
                    last_emitted = batch.last().and_then(change_of);
                    if !self.send(std::mem::replace(&mut batch, Vec::with_capacity(self.config.batch_size))).await {
                        return Ok(());
                    }
                    continue;
                }
                event = client.recv() => event,
            };
            let event = match event {
                Ok(Some(event)) => event,
                Ok(None) => {
                    return Err(ConnectorError::transient(format!(
                        "{}: the replication stream ended",
                        self.who
                    )));
                }
                Err(e) => return Err(self.replication_error(&e)),
            };
            match event {
                ReplicationEvent::Begin {
                    final_lsn,
                    commit_time_micros,
                    ..
                } => {
                    let nanos = i128::from(commit_time_micros + PG_EPOCH_MICROS) * 1000;
                    let mut metadata = Metadata::new();
                    metadata.insert(metadata::CREATED_AT, nanos.to_string());
                    metadata.insert(metadata::SOURCE_CONNECTOR_ID, self.id.clone());
                    metadata.insert(METADATA_LSN, final_lsn.to_pg_string());
                    txn = Some(Txn {
                        commit_lsn: final_lsn.0,
                        metadata,
                        index: 0,
                    });
                }
                ReplicationEvent::Commit { .. } => txn = None,
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    // Nothing in flight: everything the server sent is delivered, so the
                    // slot may move on (keeps an idle slot from holding WAL back).
                    if txn.is_none() && batch.is_empty() && last_emitted == *acked.borrow() {
                        client.update_applied_lsn(wal_end);
                    }
                }
                ReplicationEvent::XLogData { data, .. } => {
                    let message = pgoutput::decode(&data)
                        .map_err(|e| ConnectorError::data(e).context(self.who.clone()))?;
                    if batch.is_empty() {
                        // The read time of the changes of a batch.
                        read_at.clear();
                        let _ = write!(read_at, "{}", unix_nanos_now());
                    }
                    if let Some(record) = self
                        .change(message, &mut relations, txn.as_mut(), &read_at)
                        .await?
                    {
                        if batch.is_empty() {
                            deadline = tokio::time::Instant::now() + LINGER;
                        }
                        batch.push(record);
                        if batch.len() >= self.config.batch_size {
                            last_emitted = batch.last().and_then(change_of);
                            if !self
                                .send(std::mem::replace(
                                    &mut batch,
                                    Vec::with_capacity(self.config.batch_size),
                                ))
                                .await
                            {
                                return Ok(());
                            }
                        }
                    }
                }
                ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
            }
        }
    }

    /// Handles one decoded message: a record for a change, `None` for the rest.
    async fn change(
        &mut self,
        message: Message<'_>,
        relations: &mut HashMap<u32, Relation>,
        txn: Option<&mut Txn>,
        read_at: &str,
    ) -> Result<Option<Record>, ConnectorError> {
        let (relation_oid, operation, old, new) = match message {
            Message::Relation(r) => {
                let table = match self.by_oid.get(&r.oid) {
                    Some(t) => t.clone(),
                    None => match conn::table_by_oid(&self.client, r.oid, &self.who).await? {
                        Some(t) => {
                            self.by_oid.insert(r.oid, t.clone());
                            t
                        }
                        None => TableInfo {
                            oid: r.oid,
                            qualified: format!("{}.{}", r.namespace, r.name),
                            sql: format!("{}.{}", quote_ident(&r.namespace), quote_ident(&r.name)),
                            collection: if r.namespace == "public" {
                                r.name.clone()
                            } else {
                                format!("{}.{}", r.namespace, r.name)
                            },
                            columns: Vec::new(),
                            key: Vec::new(),
                        },
                    },
                };
                let columns: Vec<(SmolStr, u32)> = r
                    .columns
                    .iter()
                    .map(|c| (SmolStr::new(&c.name), c.type_oid))
                    .collect();
                let mut key: Vec<usize> = table
                    .key
                    .iter()
                    .filter_map(|k| columns.iter().position(|(n, _)| n == k))
                    .collect();
                if key.len() != table.key.len() || key.is_empty() {
                    // No primary key (or it changed): the replica identity columns.
                    key = if r.replica_identity == b'f' {
                        Vec::new()
                    } else {
                        r.columns
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| c.identity)
                            .map(|(i, _)| i)
                            .collect()
                    };
                }
                let key_names = key.iter().map(|&i| columns[i].0.clone()).collect();
                relations.insert(
                    r.oid,
                    Relation {
                        table,
                        columns,
                        key,
                        key_names,
                    },
                );
                return Ok(None);
            }
            Message::Insert { relation, new } => (relation, Operation::Create, None, new),
            Message::Update { relation, old, new } => (relation, Operation::Update, old, new),
            Message::Delete { relation, old } => {
                (relation, Operation::Delete, Some(old), Vec::new())
            }
            Message::Truncate { relations: oids } => {
                let names: Vec<String> = oids
                    .iter()
                    .map(|oid| {
                        relations
                            .get(oid)
                            .map_or_else(|| oid.to_string(), |r| r.table.qualified.clone())
                    })
                    .collect();
                tracing::warn!(connector = %self.id, tables = ?names, "TRUNCATE is not replicated (skipped)");
                return Ok(None);
            }
            Message::Begin
            | Message::Commit
            | Message::Type
            | Message::Origin
            | Message::Logical => return Ok(None),
        };
        let Some(txn) = txn else {
            return Err(ConnectorError::data(format!(
                "{}: a change arrived outside a transaction",
                self.who
            )));
        };
        let index = txn.index;
        txn.index += 1;
        if let Some((lsn, last)) = self.resume_change
            && (txn.commit_lsn < lsn || (txn.commit_lsn == lsn && index <= last))
        {
            return Ok(None);
        }
        let Some(relation) = relations.get(&relation_oid) else {
            return Err(ConnectorError::data(format!(
                "{}: a change for relation {relation_oid} arrived before its Relation message",
                self.who
            )));
        };
        let after = (operation != Operation::Delete).then(|| self.tuple(relation, &new, false));
        let old_data = old.map(|(kind, cells)| (kind, self.tuple(relation, &cells, kind == b'K')));
        let key_source = match (&after, &old_data) {
            (Some(after), _) => Some(after),
            (None, Some((_, old))) => Some(old),
            (None, None) => None,
        };
        let key = key_source.and_then(|d| key_data(d, &relation.key_names));
        let before = match (operation, old_data) {
            (Operation::Delete, Some((b'K', _))) => None,
            (_, Some((_, old))) => Some(Data::Structured(old)),
            _ => None,
        };
        let mut meta = txn.metadata.clone();
        meta.insert(metadata::COLLECTION, relation.table.collection.clone());
        meta.insert(metadata::READ_AT, read_at.to_owned());
        Ok(Some(Record {
            position: PgPosition::Change {
                commit_lsn: txn.commit_lsn,
                index,
            }
            .encode(),
            operation,
            metadata: meta,
            key,
            payload: Payload {
                before,
                after: after.map(Data::Structured),
            },
        }))
    }

    /// A tuple as structured data. Unchanged TOASTed values are left out; for an old
    /// key tuple (`key_only`), only the key columns are kept.
    fn tuple(&self, relation: &Relation, cells: &[Cell], key_only: bool) -> StructuredData {
        let mut data = StructuredData::with_capacity(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            let Some((name, type_oid)) = relation.columns.get(i) else {
                continue;
            };
            if key_only && !relation.key.contains(&i) {
                continue;
            }
            let value = match cell {
                Cell::Null => funnel_record::Value::Null,
                Cell::Unchanged => continue,
                Cell::Text(b) => self.types.value(*type_oid, &String::from_utf8_lossy(b)),
                Cell::Binary(b) => funnel_record::Value::Bytes(bytes::Bytes::copy_from_slice(b)),
            };
            data.insert(name.clone(), value);
        }
        data
    }
}

/// The (commit LSN, index) of a change record.
fn change_of(record: &Record) -> Option<(u64, u32)> {
    match PgPosition::decode(&record.position) {
        Ok(PgPosition::Change { commit_lsn, index }) => Some((commit_lsn, index)),
        _ => None,
    }
}

/// The key of a row: its key columns as structured data (`None` without key columns).
fn key_data(row: &StructuredData, key: &[SmolStr]) -> Option<Data> {
    if key.is_empty() {
        return None;
    }
    let mut data = StructuredData::with_capacity(key.len());
    for k in key {
        data.insert(
            k.clone(),
            row.get(k).cloned().unwrap_or(funnel_record::Value::Null),
        );
    }
    Some(Data::Structured(data))
}

/// Drops the replication slot and the publication of a source (`logrepl.autoCleanup`).
/// Waits up to 10 s for the slot to be released by a reader that is stopping.
///
/// # Errors
///
/// When the server cannot be reached or the objects cannot be dropped.
pub(crate) async fn cleanup(config: &PostgresSourceConfig, id: &str) -> Result<(), ConnectorError> {
    let who = format!("postgres source {id}");
    if !config.auto_cleanup {
        return Ok(());
    }
    let client = conn::connect(&config.pg, &config.tls, &who).await?;
    let slot = &config.slot;
    let mut attempts = 0;
    loop {
        let result = client
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[slot],
            )
            .await;
        match result {
            Ok(_) => break,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    && attempts < 100 =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(conn::error(
                    &format!("{who}: cannot drop replication slot {slot}"),
                    e,
                ));
            }
        }
    }
    client
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {}",
            quote_ident(&config.publication)
        ))
        .await
        .map_err(|e| {
            conn::error(
                &format!("{who}: cannot drop publication {}", config.publication),
                e,
            )
        })?;
    tracing::info!(connector = %id, %slot, publication = %config.publication, "dropped replication slot and publication");
    Ok(())
}
