//! The PostgreSQL store (`--db.type postgres`): positions, pipeline documents and
//! leases in tables that several `funnel` processes share.
//!
//! # Tables
//!
//! - `<table>` (Conduit's `conduit_kv_store` by default), Conduit's layout `key text
//!   primary key, value bytea`; Funnel's rows have keys starting `funnel:` (a
//!   position `funnel:position:<pipeline>\x01<connector>`, a pipeline document
//!   `funnel:document:<pipeline>`, an entry `funnel:entry:<kind>\x01<key>`, the
//!   format row `funnel:format`). Each value is
//!   `crc32 || bytes` as in the redb store, the checksum covering the key and the
//!   bytes, verified on every read and for every position on open.
//! - `<table>_leases`: `pipeline, owner, epoch, expires_at`, one row per pipeline.
//! - `<table>_instances`: `instance, expires_at`, the live `funnel` processes.
//!
//! # Writes
//!
//! One task writes. It takes every request waiting at the time and sends the position
//! and document writes among them as one `INSERT ... ON CONFLICT` statement over
//! arrays (group commit: one round trip per batch, however many pipelines commit at
//! once). A fenced position is written only if its lease row still has the owner and
//! epoch it was committed under and has not expired, checked in that statement with
//! the lease row locked (`FOR SHARE`), so a claim cannot slip in between.
//!
//! # TLS
//!
//! [`PostgresStore::open`] connects without TLS; [`PostgresStore::open_with`] takes the
//! function that opens each connection, so `funnel run` connects as the postgres
//! connectors do (`sslmode` and `sslrootcert` in the connection string).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use funnel_record::Position;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::fence::{Fence, Lease, Leases};
use crate::format::{self, MAGIC};
use crate::{FORMAT_VERSION, Store, StoreError, key};

/// Conduit's default table (`--db.postgres.table`).
pub const DEFAULT_TABLE: &str = "conduit_kv_store";

const POSITION_PREFIX: &str = "funnel:position:";
const DOCUMENT_PREFIX: &str = "funnel:document:";
const ENTRY_PREFIX: &str = "funnel:entry:";
const FORMAT_KEY: &str = "funnel:format";

/// The row key of a position; pipeline and connector IDs never hold `\x01`.
fn position_key(pipeline: &str, connector: &str) -> String {
    format!("{POSITION_PREFIX}{pipeline}\u{1}{connector}")
}

/// The row key prefix of the entries of `kind`; kinds never hold `\x01`.
fn entry_prefix(kind: &str) -> String {
    format!("{ENTRY_PREFIX}{kind}\u{1}")
}

fn pipeline_prefix(pipeline: &str) -> String {
    format!("{POSITION_PREFIX}{pipeline}\u{1}")
}

/// `"name"`, with inner quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The text of a PostgreSQL error: the server's message with its code, or the
/// client's error and its causes.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    funnel_core::error_chain(e)
}

/// A position or document write waiting in a batch.
struct Upsert {
    key: String,
    value: Vec<u8>,
    /// Pipeline, owner and epoch of the lease it is fenced by.
    fence: Option<(String, String, i64)>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

enum Request {
    Upsert(Upsert),
    /// Deletes every row whose key starts with the prefix.
    DeletePrefix(String, oneshot::Sender<Result<(), StoreError>>),
    /// Deletes the row with this key.
    Delete(String, oneshot::Sender<Result<(), StoreError>>),
}

/// The statements, with the table names in them.
struct Sql {
    upsert: String,
    delete_prefix: String,
    delete: String,
    get: String,
    scan: String,
    insert_new: String,
}

impl Sql {
    fn new(table: &str, leases: &str) -> Self {
        Self {
            upsert: format!(
                "WITH input AS (
                    SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::int8[])
                        AS u(key, value, pipeline, owner, epoch)
                 )
                 INSERT INTO {table} (key, value)
                 SELECT i.key, i.value FROM input i
                 WHERE i.epoch IS NULL OR EXISTS (
                     SELECT 1 FROM {leases} l
                     WHERE l.pipeline = i.pipeline AND l.owner = i.owner AND l.epoch = i.epoch
                       AND l.expires_at > now()
                     FOR SHARE
                 )
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 RETURNING key"
            ),
            delete_prefix: format!("DELETE FROM {table} WHERE left(key, length($1)) = $1"),
            delete: format!("DELETE FROM {table} WHERE key = $1"),
            get: format!("SELECT value FROM {table} WHERE key = $1"),
            insert_new: format!(
                "INSERT INTO {table} (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ),
            scan: format!(
                "SELECT key, value FROM {table} WHERE left(key, length($1)) = $1 ORDER BY key"
            ),
        }
    }
}

/// Opens one connection with `config` (with TLS or without), running it on a task of
/// its own until its client is dropped; a failure is described in words.
pub type Connect = Arc<
    dyn Fn(&Config) -> Pin<Box<dyn Future<Output = Result<Client, String>> + Send>> + Send + Sync,
>;

/// [`Connect`] without TLS.
fn plain() -> Connect {
    Arc::new(|config: &Config| {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(NoTls).await.map_err(|e| describe(&e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "store connection ended");
                }
            });
            Ok(client)
        })
    })
}

/// One connection, opened again when it breaks.
struct Connection {
    config: Config,
    connect: Connect,
    store: String,
    client: AsyncMutex<Option<Arc<Client>>>,
}

impl Connection {
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut client = self.client.lock().await;
        if let Some(c) = client.as_ref()
            && !c.is_closed()
        {
            return Ok(Arc::clone(c));
        }
        let c = (self.connect)(&self.config)
            .await
            .map_err(|detail| StoreError::Database {
                store: self.store.clone(),
                detail: format!("cannot connect: {detail}"),
            })?;
        let c = Arc::new(c);
        *client = Some(Arc::clone(&c));
        Ok(c)
    }

    fn error(&self, doing: &str, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Database {
            store: self.store.clone(),
            detail: format!("{doing}: {}", describe(e)),
        }
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::CorruptTable {
            store: self.store.clone(),
            detail,
        }
    }
}

/// The PostgreSQL store (`--db.type postgres`): see the module documentation.
pub struct PostgresStore {
    connection: Arc<Connection>,
    /// Leases have a connection of their own, so a renewal never waits behind a batch
    /// of position writes.
    lease_connection: Connection,
    sql: Arc<Sql>,
    leases: String,
    instances: String,
    writer: std::sync::Mutex<Option<mpsc::UnboundedSender<Request>>>,
    round_trips: Arc<AtomicU64>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("store", &self.connection.store)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database of `connection_string` (a URL or key=value pairs, as
    /// libpq takes them), creates the tables named after `table` if they are missing,
    /// and checks the format row and every stored position.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when the connection string is invalid or the database
    /// cannot be reached or written, [`StoreError::CorruptTable`] for a damaged
    /// position or format row, or one from a newer Funnel.
    pub async fn open(connection_string: &str, table: &str) -> Result<Self, StoreError> {
        let config: Config = connection_string
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Database {
                store: format!("postgres table {table}"),
                detail: format!(
                    "--db.postgres.connection-string is not a connection string: {}",
                    describe(&e)
                ),
            })?;
        Self::open_with(config, table, plain()).await
    }

    /// As [`open`](Self::open), with `config` parsed already and each connection opened
    /// by `connect` (with TLS, say).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn open_with(
        mut config: Config,
        table: &str,
        connect: Connect,
    ) -> Result<Self, StoreError> {
        config.application_name("funnel");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let store = format!("postgres table {table} at {}", address(&config));
        let lease_connection = Connection {
            config: config.clone(),
            connect: Arc::clone(&connect),
            store: store.clone(),
            client: AsyncMutex::new(None),
        };
        let connection = Arc::new(Connection {
            config,
            connect,
            store,
            client: AsyncMutex::new(None),
        });
        let quoted = quote_ident(table);
        let leases = quote_ident(&format!("{table}_leases"));
        let instances = quote_ident(&format!("{table}_instances"));
        let client = connection.client().await?;
        // Several processes may start at once: CREATE TABLE IF NOT EXISTS races on the
        // catalog, so they take turns.
        client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(hashtext('funnel store ' || {name}));
                 CREATE TABLE IF NOT EXISTS {quoted} (key text PRIMARY KEY, value bytea NOT NULL);
                 CREATE TABLE IF NOT EXISTS {leases} (
                     pipeline text PRIMARY KEY,
                     owner text,
                     epoch bigint NOT NULL DEFAULT 0,
                     expires_at timestamptz NOT NULL DEFAULT '-infinity'
                 );
                 CREATE TABLE IF NOT EXISTS {instances} (
                     instance text PRIMARY KEY,
                     expires_at timestamptz NOT NULL
                 );
                 COMMIT;",
                name = literal(table),
            ))
            .await
            .map_err(|e| connection.error("cannot create the store tables", &e))?;
        let sql = Arc::new(Sql::new(&quoted, &leases));
        check_format(&connection, &client, &sql).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let round_trips = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(
            Arc::clone(&connection),
            Arc::clone(&sql),
            rx,
            Arc::clone(&round_trips),
        ));
        Ok(Self {
            connection,
            lease_connection,
            sql,
            leases,
            instances,
            writer: std::sync::Mutex::new(Some(tx)),
            round_trips,
        })
    }

    /// `postgres table conduit_kv_store at 127.0.0.1:5432`, for messages.
    pub fn describe(&self) -> &str {
        &self.connection.store
    }

    /// Stops the writer after the writes already asked for; later writes fail with
    /// [`StoreError::Closed`].
    pub fn close(&self) {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    async fn request(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> Request,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let writer = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(writer) = writer.as_ref() else {
                return Err(StoreError::Closed);
            };
            writer.send(make(tx)).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn upsert(
        &self,
        key: String,
        value: Vec<u8>,
        fence: Option<(String, String, i64)>,
    ) -> Result<(), StoreError> {
        self.request(move |reply| {
            Request::Upsert(Upsert {
                key,
                value,
                fence,
                reply,
            })
        })
        .await
    }

    /// Rows whose key starts with `prefix`, by key.
    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let client = self.connection.client().await?;
        let rows = client
            .query(&self.sql.scan, &[&prefix])
            .await
            .map_err(|e| self.connection.error("cannot read", &e))?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, Vec<u8>>(1)))
            .collect())
    }

    fn decode(&self, checked_key: &str, what: &str, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        format::decode(checked_key, stored)
            .map(<[u8]>::to_vec)
            .map_err(|why| {
                self.connection
                    .corrupt(format!("the {what} is damaged: {why}"))
            })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// `'text'` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `host:port/database` of `config`, for messages.
fn address(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or("");
    format!("{host}:{port}/{database}")
}

/// The format row: the magic number and the format version, big-endian.
fn format_row() -> Vec<u8> {
    let mut row = MAGIC.to_be_bytes().to_vec();
    row.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    row
}

/// Writes the format row into a new store, refuses a damaged or newer one, and checks
/// every position.
async fn check_format(
    connection: &Connection,
    client: &Client,
    sql: &Sql,
) -> Result<(), StoreError> {
    let read_error = |e: tokio_postgres::Error| connection.error("cannot read", &e);
    let row = client
        .query_opt(&sql.get, &[&FORMAT_KEY])
        .await
        .map_err(read_error)?;
    match row.map(|r| r.get::<_, Vec<u8>>(0)) {
        None => {
            client
                .execute(&sql.insert_new, &[&FORMAT_KEY, &format_row()])
                .await
                .map_err(|e| connection.error("cannot write the format row", &e))?;
        }
        Some(row) => {
            let (magic, version) = match row.split_first_chunk::<8>() {
                Some((magic, rest)) if rest.len() == 8 => {
                    let mut v = [0u8; 8];
                    v.copy_from_slice(rest);
                    (u64::from_be_bytes(*magic), u64::from_be_bytes(v))
                }
                _ => (0, 0),
            };
            if magic != MAGIC {
                return Err(connection.corrupt(format!(
                    "its format row ({FORMAT_KEY}) is damaged: {} bytes that are not a \
                     Funnel store's header",
                    row.len()
                )));
            }
            if version > FORMAT_VERSION {
                return Err(connection.corrupt(format!(
                    "its format version is {version}, but this funnel reads up to version \
                     {FORMAT_VERSION}; run a newer funnel, or use another \
                     --db.postgres.table"
                )));
            }
        }
    }
    let rows = client
        .query(&sql.scan, &[&POSITION_PREFIX])
        .await
        .map_err(read_error)?;
    let damaged: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let stored_key: String = row.get(0);
            let value: Vec<u8> = row.get(1);
            let (pipeline, connector) = split_position_key(&stored_key);
            let name = key(pipeline, connector);
            format::decode(&name, &value)
                .err()
                .map(|why| format!("{}: {why}", format::describe(&name)))
        })
        .collect();
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(connection.corrupt(format!(
            "{} damaged position(s): {}",
            damaged.len(),
            damaged.join("; ")
        )))
    }
}

fn split_position_key(stored: &str) -> (&str, &str) {
    let rest = stored.strip_prefix(POSITION_PREFIX).unwrap_or(stored);
    rest.split_once('\u{1}').unwrap_or((rest, ""))
}

/// The writer task: sends every waiting request, the writes of a batch in one
/// statement, until the store is closed.
async fn write_loop(
    connection: Arc<Connection>,
    sql: Arc<Sql>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    round_trips: Arc<AtomicU64>,
) {
    let mut batch = Vec::new();
    let mut prepared = None;
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let mut upserts: Vec<Upsert> = Vec::new();
        for request in batch.drain(..) {
            match request {
                Request::Upsert(u) => upserts.push(u),
                Request::DeletePrefix(prefix, reply) => {
                    flush(&connection, &sql, &mut upserts, &round_trips, &mut prepared).await;
                    let result = execute(&connection, &sql.delete_prefix, &prefix).await;
                    round_trips.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(result);
                }
                Request::Delete(key, reply) => {
                    flush(&connection, &sql, &mut upserts, &round_trips, &mut prepared).await;
                    let result = execute(&connection, &sql.delete, &key).await;
                    round_trips.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(result);
                }
            }
        }
        flush(&connection, &sql, &mut upserts, &round_trips, &mut prepared).await;
    }
}

async fn execute(connection: &Connection, statement: &str, arg: &str) -> Result<(), StoreError> {
    let client = connection.client().await?;
    client
        .execute(statement, &[&arg])
        .await
        .map(|_| ())
        .map_err(|e| connection.error("cannot delete", &e))
}

/// The write statement, prepared once per connection: a batch of writes is then one
/// round trip (bind and execute), not two (parse, then bind and execute).
async fn prepared_upsert(
    connection: &Connection,
    sql: &Sql,
    cache: &mut Option<(Arc<Client>, Statement)>,
) -> Result<(Arc<Client>, Statement), StoreError> {
    let client = connection.client().await?;
    if let Some((prepared_on, statement)) = cache.as_ref()
        && Arc::ptr_eq(prepared_on, &client)
    {
        return Ok((client, statement.clone()));
    }
    let statement = client
        .prepare(&sql.upsert)
        .await
        .map_err(|e| connection.error("cannot write", &e))?;
    *cache = Some((Arc::clone(&client), statement.clone()));
    Ok((client, statement))
}

/// Sends `upserts` as one statement and answers each.
async fn flush(
    connection: &Connection,
    sql: &Sql,
    upserts: &mut Vec<Upsert>,
    round_trips: &AtomicU64,
    prepared: &mut Option<(Arc<Client>, Statement)>,
) {
    if upserts.is_empty() {
        return;
    }
    // A key written twice in one batch: the later value wins (one row may be changed
    // only once per statement).
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, u) in upserts.iter().enumerate() {
        last.insert(u.key.as_str(), i);
    }
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let mut pipelines = Vec::new();
    let mut owners = Vec::new();
    let mut epochs = Vec::new();
    for (i, u) in upserts.iter().enumerate() {
        if last.get(u.key.as_str()) != Some(&i) {
            continue;
        }
        keys.push(u.key.as_str());
        values.push(u.value.as_slice());
        pipelines.push(u.fence.as_ref().map(|f| f.0.as_str()));
        owners.push(u.fence.as_ref().map(|f| f.1.as_str()));
        epochs.push(u.fence.as_ref().map(|f| f.2));
    }
    round_trips.fetch_add(1, Ordering::Relaxed);
    let result = match prepared_upsert(connection, sql, prepared).await {
        Ok((client, upsert)) => client
            .query(&upsert, &[&keys, &values, &pipelines, &owners, &epochs])
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<std::collections::HashSet<String>>()
            })
            .map_err(|e| connection.error("cannot write", &e)),
        Err(e) => Err(e),
    };
    for u in upserts.drain(..) {
        let reply = match &result {
            Err(e) => Err(e.clone()),
            Ok(written) if written.contains(&u.key) => Ok(()),
            Ok(_) => Err(match u.fence {
                Some((pipeline, owner, epoch)) => StoreError::Fenced {
                    pipeline,
                    owner,
                    epoch,
                },
                None => connection.corrupt(format!("the write of {} was lost", u.key)),
            }),
        };
        let _ = u.reply.send(reply);
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn position(
        &self,
        pipeline: &str,
        connector: &str,
    ) -> Result<Option<Position>, StoreError> {
        let client = self.connection.client().await?;
        let row = client
            .query_opt(&self.sql.get, &[&position_key(pipeline, connector)])
            .await
            .map_err(|e| self.connection.error("cannot read", &e))?;
        row.map(|r| {
            let name = key(pipeline, connector);
            let what = format!("position of {}", format::describe(&name));
            self.decode(&name, &what, &r.get::<_, Vec<u8>>(0))
                .map(Position::from)
        })
        .transpose()
    }

    async fn positions(&self, pipeline: &str) -> Result<Vec<(String, Position)>, StoreError> {
        let mut found = Vec::new();
        for (stored_key, value) in self.scan(&pipeline_prefix(pipeline)).await? {
            let (_, connector) = split_position_key(&stored_key);
            let name = key(pipeline, connector);
            let what = format!("position of {}", format::describe(&name));
            let position = self.decode(&name, &what, &value)?;
            found.push((connector.to_owned(), Position::from(position)));
        }
        Ok(found)
    }

    async fn set_position(
        &self,
        pipeline: &str,
        connector: &str,
        position: &Position,
    ) -> Result<(), StoreError> {
        let value = format::encode(&key(pipeline, connector), position.as_bytes());
        self.upsert(position_key(pipeline, connector), value, None)
            .await
    }

    async fn set_position_fenced(
        &self,
        pipeline: &str,
        connector: &str,
        position: &Position,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let value = format::encode(&key(pipeline, connector), position.as_bytes());
        let lease = (
            fence.pipeline().to_owned(),
            fence.owner().to_owned(),
            fence.epoch(),
        );
        self.upsert(position_key(pipeline, connector), value, Some(lease))
            .await
    }

    async fn delete_pipeline(&self, pipeline: &str) -> Result<(), StoreError> {
        let prefix = pipeline_prefix(pipeline);
        self.request(move |reply| Request::DeletePrefix(prefix, reply))
            .await
    }

    async fn documents(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut found = Vec::new();
        for (stored_key, value) in self.scan(DOCUMENT_PREFIX).await? {
            let pipeline = stored_key
                .strip_prefix(DOCUMENT_PREFIX)
                .unwrap_or(&stored_key);
            let what = format!("document of pipeline {pipeline:?}");
            let document = self.decode(pipeline, &what, &value)?;
            found.push((pipeline.to_owned(), document));
        }
        Ok(found)
    }

    async fn set_document(&self, pipeline: &str, document: &[u8]) -> Result<(), StoreError> {
        let value = format::encode(pipeline, document);
        self.upsert(format!("{DOCUMENT_PREFIX}{pipeline}"), value, None)
            .await
    }

    async fn delete_document(&self, pipeline: &str) -> Result<(), StoreError> {
        let key = format!("{DOCUMENT_PREFIX}{pipeline}");
        self.request(move |reply| Request::Delete(key, reply)).await
    }

    async fn entries(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = entry_prefix(kind);
        let mut found = Vec::new();
        for (stored_key, value) in self.scan(&prefix).await? {
            let name = stored_key.strip_prefix(&prefix).unwrap_or(&stored_key);
            let what = format!("{kind} entry {name:?}");
            let value = self.decode(&stored_key, &what, &value)?;
            found.push((name.to_owned(), value));
        }
        Ok(found)
    }

    async fn set_entry(&self, kind: &str, entry: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = format!("{}{entry}", entry_prefix(kind));
        let value = format::encode(&key, value);
        self.upsert(key, value, None).await
    }

    async fn delete_entry(&self, kind: &str, entry: &str) -> Result<(), StoreError> {
        let key = format!("{}{entry}", entry_prefix(kind));
        self.request(move |reply| Request::Delete(key, reply)).await
    }

    fn write_round_trips(&self) -> Option<u64> {
        Some(self.round_trips.load(Ordering::Relaxed))
    }
}

/// Milliseconds, for `interval` arithmetic in SQL.
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[async_trait]
impl Leases for PostgresStore {
    async fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>, StoreError> {
        let client = self.lease_connection.client().await?;
        let statement = format!(
            "WITH up AS (
                 INSERT INTO {t} (instance, expires_at)
                 VALUES ($1, now() + $2::float8 * interval '1 millisecond')
                 ON CONFLICT (instance) DO UPDATE SET expires_at = excluded.expires_at
                 RETURNING instance
             )
             SELECT instance FROM {t} WHERE expires_at > now() AND instance <> $1
             UNION SELECT instance FROM up
             ORDER BY 1",
            t = self.instances
        );
        let rows = client
            .query(&statement, &[&instance, &millis(ttl)])
            .await
            .map_err(|e| {
                self.lease_connection
                    .error("cannot record this instance", &e)
            })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn leave(&self, instance: &str) -> Result<(), StoreError> {
        let client = self.lease_connection.client().await?;
        client
            .execute(
                &format!("DELETE FROM {} WHERE instance = $1", self.instances),
                &[&instance],
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                self.lease_connection
                    .error("cannot remove this instance", &e)
            })
    }

    async fn claim(
        &self,
        instance: &str,
        candidates: &[String],
        max: usize,
        ttl: Duration,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        if candidates.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let client = self.lease_connection.client().await?;
        let statement = format!(
            "UPDATE {t} SET owner = $2, epoch = epoch + 1,
                 expires_at = now() + $3::float8 * interval '1 millisecond'
             WHERE pipeline IN (
                 SELECT pipeline FROM {t}
                 WHERE pipeline = ANY($1) AND (owner IS NULL OR expires_at <= now())
                 ORDER BY random() LIMIT $4 FOR UPDATE SKIP LOCKED
             ) AND (owner IS NULL OR expires_at <= now())
             RETURNING pipeline, epoch",
            t = self.leases
        );
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        // A pipeline seen for the first time gets its row, unowned.
        client
            .execute(
                &format!(
                    "INSERT INTO {} (pipeline) SELECT unnest($1::text[])
                     ON CONFLICT (pipeline) DO NOTHING",
                    self.leases
                ),
                &[&candidates],
            )
            .await
            .map_err(|e| self.lease_connection.error("cannot claim pipelines", &e))?;
        let rows = client
            .query(&statement, &[&candidates, &instance, &millis(ttl), &limit])
            .await
            .map_err(|e| self.lease_connection.error("cannot claim pipelines", &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn renew(
        &self,
        instance: &str,
        held: &[(String, i64)],
        ttl: Duration,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.lease_connection.client().await?;
        let statement = format!(
            "UPDATE {t} l SET expires_at = now() + $4::float8 * interval '1 millisecond'
             FROM unnest($2::text[], $3::int8[]) AS h(pipeline, epoch)
             WHERE l.pipeline = h.pipeline AND l.epoch = h.epoch AND l.owner = $1
               AND l.expires_at > now()
             RETURNING l.pipeline, l.epoch",
            t = self.leases
        );
        let pipelines: Vec<&str> = held.iter().map(|(p, _)| p.as_str()).collect();
        let epochs: Vec<i64> = held.iter().map(|(_, e)| *e).collect();
        let rows = client
            .query(&statement, &[&instance, &pipelines, &epochs, &millis(ttl)])
            .await
            .map_err(|e| self.lease_connection.error("cannot renew leases", &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn release(&self, instance: &str, pipeline: &str, epoch: i64) -> Result<(), StoreError> {
        let client = self.lease_connection.client().await?;
        client
            .execute(
                &format!(
                    "UPDATE {} SET owner = NULL, expires_at = '-infinity'
                     WHERE pipeline = $1 AND owner = $2 AND epoch = $3",
                    self.leases
                ),
                &[&pipeline, &instance, &epoch],
            )
            .await
            .map(|_| ())
            .map_err(|e| self.lease_connection.error("cannot release a lease", &e))
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let client = self.lease_connection.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT pipeline, CASE WHEN expires_at > now() THEN owner END, epoch
                     FROM {} ORDER BY pipeline",
                    self.leases
                ),
                &[],
            )
            .await
            .map_err(|e| self.lease_connection.error("cannot read leases", &e))?;
        Ok(rows
            .iter()
            .map(|r| Lease {
                pipeline: r.get(0),
                owner: r.get(1),
                epoch: r.get(2),
            })
            .collect())
    }
}
