//! The SQL destinations' shared half: what a record becomes (row writes), the
//! exactly-once skip after a restart, the table cache, and the batch rules — a batch
//! goes in one transaction; when the server refuses something in it, it is written
//! again record by record so that only the refused records are nacked. The server's
//! half ([`SqlServer`]) connects, describes tables, turns row writes into statements
//! and runs them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use funnel_core::typed::SettingsStruct;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Data, Operation, Position, Record, StructuredData, Value};

use super::{Columns, TableName, compare_positions, record_key};
use crate::ack::AckQueue;
use crate::settings::{both, parse_destination_with};
use crate::{Settings, SettingsError};

/// The table holding the last written position of each exactly-once destination.
pub const POSITIONS_TABLE: &str = "funnel_positions";

/// One row write of a record, before it is SQL.
pub(crate) enum RowWrite {
    /// Delete the row with this key.
    Delete(StructuredData),
    /// Insert `row`; on a conflict of the `key` columns (when there are any), update
    /// the row's other columns.
    Upsert {
        row: StructuredData,
        key: Vec<String>,
    },
}

/// The row writes of `record`, whose key columns are `key_columns` (see
/// [`record_key`]): a delete of its key, or an upsert of `payload.after` (key columns
/// filled in from the key), after a delete of the old row when an update changes the
/// key.
pub(crate) fn row_writes(record: &Record, key_columns: &[String]) -> Result<Vec<RowWrite>, String> {
    let key = record_key(record, key_columns)?.filter(|k| !k.is_empty());
    if record.operation == Operation::Delete {
        let Some(key) = key else {
            return Err(
                "a delete needs a key (the record has none, and `key` is not set)".to_owned(),
            );
        };
        return Ok(vec![RowWrite::Delete(key)]);
    }
    let mut row = match &record.payload.after {
        Some(Data::Structured(d)) => d.clone(),
        Some(Data::Raw(bytes)) => match Value::from_json(bytes) {
            Ok(Value::Map(map)) => map,
            _ => return Err("payload.after is raw data that is not a JSON object".to_owned()),
        },
        None => return Err(format!("a {} record needs payload.after", record.operation)),
    };
    let Some(key) = key else {
        return Ok(vec![RowWrite::Upsert {
            row,
            key: Vec::new(),
        }]);
    };
    for (k, v) in &key {
        row.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut writes = Vec::with_capacity(2);
    // A key change: the old row goes first.
    if record.operation == Operation::Update
        && let Some(Data::Structured(before)) = &record.payload.before
    {
        let old: Option<StructuredData> = key
            .keys()
            .map(|k| before.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        if let Some(old) = old
            && old != key
        {
            writes.push(RowWrite::Delete(old));
        }
    }
    writes.push(RowWrite::Upsert {
        row,
        key: key.into_keys().map(String::from).collect(),
    });
    Ok(writes)
}

/// What to do with one record.
pub(crate) enum Plan<W> {
    /// Already written before a restart (exactly-once): ack.
    Skip,
    /// Cannot be written: nack.
    Fail(RecordError),
    /// Run these writes.
    Run(W),
}

impl<W> Plan<W> {
    /// The writes to run; for a record to skip or fail, `None` once its ack is in
    /// `acks`.
    pub(crate) fn or_ack(self, position: &Position, acks: &mut Vec<DestinationAck>) -> Option<W> {
        match self {
            Plan::Skip => acks.push(DestinationAck::ok(position.clone())),
            Plan::Fail(e) => acks.push(DestinationAck::nack(position.clone(), e)),
            Plan::Run(writes) => return Some(writes),
        }
        None
    }
}

/// Why a record of table `table` is nacked, for destination `who`.
pub(crate) fn refused(who: &str, table: &str, message: impl std::fmt::Display) -> RecordError {
    RecordError::msg(format!("{who}: table {table}: {message}"))
}

funnel_core::settings! {
    /// The settings every SQL destination has beside its connection: where each record
    /// goes and how.
    pub struct SqlDestinationSettings {
        /// Table to write: a name, or a Go template rendered per record (e.g. a
        /// metadata look-up).
        pub table: TableName = "table" (default "{{ index .Metadata \"opencdc.collection\" }}"),
        /// Comma list of key columns for upserts and deletes (default: the record
        /// key's fields).
        pub key: Option<Columns> = "key",
        /// Funnel extension: store the last written position in funnel_positions in the
        /// same transaction and skip records it covers after a restart.
        pub exactly_once: bool = "exactlyOnce" (default "false"),
    }
}

impl SqlDestinationSettings {
    /// What the shared half reads of these settings.
    pub(crate) fn rules(self) -> Rules {
        Rules {
            table: self.table,
            key: self.key.unwrap_or_default().0,
            exactly_once: self.exactly_once,
        }
    }
}

/// Parses the settings of a SQL destination whose connection settings are `T`: `T`,
/// the shared [`SqlDestinationSettings`] and the SDK's, refusing every other key.
///
/// # Errors
///
/// Every invalid setting, each with its key; unknown keys last.
pub(crate) fn parse_settings<T: SettingsStruct>(
    settings: &Settings,
) -> Result<(T, Rules), Vec<SettingsError>> {
    let (own, shared) = parse_destination_with(settings, both::<T, SqlDestinationSettings>)?;
    Ok((own, shared.rules()))
}

/// What the shared half reads of a destination's settings.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    /// `table`: where each record goes.
    pub(crate) table: TableName,
    /// `key`: the key columns (empty: the fields of the record's key).
    pub(crate) key: Vec<String>,
    /// `exactlyOnce`.
    pub(crate) exactly_once: bool,
}

/// Which destination: its connector ID, and how messages name it.
pub(crate) struct Ident {
    /// The connector ID.
    pub(crate) id: String,
    /// `<plugin> destination <id>`, the start of every message.
    pub(crate) who: String,
}

/// One SQL server's part of a destination (see the [module docs](self)).
pub(crate) trait SqlServer: Send + Sync + Sized + 'static {
    /// The plugin's name.
    const PLUGIN: &'static str;
    /// The validated settings.
    type Config;
    /// The open connection.
    type Conn: Send;
    /// What was learnt about a table.
    type Table: Send + Sync;
    /// The statements writing one record.
    type Writes: Send + Sync;
    /// A failure of a statement or of the connection.
    type Error: Send + Sync;

    /// The server's part of a destination, and what the shared half reads of
    /// `config`.
    fn new(config: Self::Config) -> (Self, Rules);

    /// Connects; with `exactly_once`, also creates [`POSITIONS_TABLE`] and returns the
    /// position stored there.
    fn open(
        &self,
        ident: &Ident,
        exactly_once: bool,
    ) -> impl Future<Output = Result<(Self::Conn, Option<Vec<u8>>), ConnectorError>> + Send;

    /// Describes table `name`: `Ok(Err(message))` when it cannot be written (it does
    /// not exist, ...).
    fn table(
        &self,
        ident: &Ident,
        conn: &mut Self::Conn,
        name: &str,
    ) -> impl Future<Output = Result<Result<Self::Table, String>, ConnectorError>> + Send;

    /// The statements for `writes` (one record's) to `table`.
    fn writes(table: &Arc<Self::Table>, writes: Vec<RowWrite>) -> Result<Self::Writes, String>;

    /// Runs `writes` in one transaction; stores `position` in it when there is one
    /// (exactly-once).
    fn write_all(
        &self,
        ident: &Ident,
        conn: &mut Self::Conn,
        writes: &[&Self::Writes],
        position: Option<&Position>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Runs each record's writes in one transaction, each under a savepoint, so that
    /// a record the server refuses is nacked and the others are written; stores
    /// `position` in it when there is one. Returns the acks, in record order.
    fn write_each(
        &self,
        ident: &Ident,
        conn: &mut Self::Conn,
        records: &[Record],
        plans: Vec<Plan<Self::Writes>>,
        position: Option<&Position>,
    ) -> impl Future<Output = Result<Vec<DestinationAck>, Self::Error>> + Send;

    /// Whether the server refused a statement for what it holds (the batch is then
    /// written record by record), rather than the connection failing.
    fn refuses(e: &Self::Error) -> bool;

    /// `e` for a message.
    fn describe(e: &Self::Error) -> String;

    /// A failure of a whole batch (connection lost, server shutting down, ...): the
    /// records are not acknowledged; the pipeline restarts and writes them again.
    fn transient(&self, ident: &Ident, e: &Self::Error) -> ConnectorError;

    /// Closes the connection.
    fn close(conn: Self::Conn) -> impl Future<Output = ()> + Send;
}

/// A SQL destination: upserts, deletes and inserts, one transaction per batch.
pub(crate) struct SqlDestination<S: SqlServer> {
    ident: Ident,
    table: TableName,
    key: Vec<String>,
    exactly_once: bool,
    server: S,
    state: tokio::sync::Mutex<Option<State<S>>>,
    acks: Arc<AckQueue>,
}

/// The open connection and what was learnt about the tables.
struct State<S: SqlServer> {
    conn: S::Conn,
    tables: HashMap<String, Arc<S::Table>>,
    /// Exactly-once: records at or before this position were written before.
    skip_until: Option<Vec<u8>>,
}

impl<S: SqlServer> SqlDestination<S> {
    /// Destination `id` with validated settings. Nothing is connected until
    /// [`Destination::open`].
    pub(crate) fn new(id: &str, config: S::Config) -> Self {
        let (server, rules) = S::new(config);
        Self {
            ident: Ident {
                id: id.to_owned(),
                who: format!("{} destination {id}", S::PLUGIN),
            },
            table: rules.table,
            key: rules.key,
            exactly_once: rules.exactly_once,
            server,
            state: tokio::sync::Mutex::new(None),
            acks: Arc::new(AckQueue::new()),
        }
    }

    /// Decides what to do with one record.
    async fn plan(
        &self,
        state: &mut State<S>,
        record: &Record,
    ) -> Result<Plan<S::Writes>, ConnectorError> {
        if let Some(until) = &state.skip_until {
            if compare_positions(record.position.as_bytes(), until).is_le() {
                return Ok(Plan::Skip);
            }
            state.skip_until = None;
        }
        let name = match self.table.of(record, &self.ident.who) {
            Ok(name) => name,
            Err(message) => return Ok(Plan::Fail(RecordError::msg(message))),
        };
        let table = match state.tables.get(&name) {
            Some(t) => Arc::clone(t),
            None => match self
                .server
                .table(&self.ident, &mut state.conn, &name)
                .await?
            {
                Ok(t) => {
                    let t = Arc::new(t);
                    state.tables.insert(name.clone(), Arc::clone(&t));
                    t
                }
                Err(message) => {
                    return Ok(Plan::Fail(refused(&self.ident.who, &name, message)));
                }
            },
        };
        Ok(
            match row_writes(record, &self.key).and_then(|w| S::writes(&table, w)) {
                Ok(writes) => Plan::Run(writes),
                Err(message) => Plan::Fail(refused(&self.ident.who, &name, message)),
            },
        )
    }
}

#[async_trait]
impl<S: SqlServer> Destination for SqlDestination<S> {
    async fn open(&self) -> Result<(), ConnectorError> {
        let (conn, skip_until) = self.server.open(&self.ident, self.exactly_once).await?;
        if let Some(p) = &skip_until {
            tracing::info!(connector = %self.ident.id, position = %String::from_utf8_lossy(p), "exactly-once: skipping records up to the stored position");
        }
        *self.state.lock().await = Some(State {
            conn,
            tables: HashMap::new(),
            skip_until,
        });
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut guard = self.state.lock().await;
        let Some(state) = guard.as_mut() else {
            return Err(ConnectorError::transient(format!(
                "{}: write before open",
                self.ident.who
            )));
        };
        let mut plans = Vec::with_capacity(records.len());
        for record in records {
            plans.push(self.plan(state, record).await?);
        }
        let position = self.exactly_once.then_some(&last.position);
        if !plans.iter().any(|p| matches!(p, Plan::Fail(_))) {
            let writes: Vec<&S::Writes> = plans
                .iter()
                .filter_map(|p| match p {
                    Plan::Run(writes) => Some(writes),
                    _ => None,
                })
                .collect();
            let result = if writes.is_empty() && position.is_none() {
                Ok(())
            } else {
                let conn = &mut state.conn;
                self.server
                    .write_all(&self.ident, conn, &writes, position)
                    .await
            };
            match result {
                Ok(()) => {
                    self.acks.push_ok(records);
                    return Ok(());
                }
                Err(e) if S::refuses(&e) => {
                    tracing::debug!(connector = %self.ident.id, error = %S::describe(&e), "batch failed; writing record by record");
                }
                Err(e) => return Err(self.server.transient(&self.ident, &e)),
            }
        }
        match self
            .server
            .write_each(&self.ident, &mut state.conn, records, plans, position)
            .await
        {
            Ok(acks) => {
                self.acks.push(acks);
                Ok(())
            }
            Err(e) => Err(self.server.transient(&self.ident, &e)),
        }
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let state = self.state.lock().await.take();
        if let Some(state) = state {
            S::close(state.conn).await;
        }
        self.acks.close(format!("{}: torn down", self.ident.who));
        Ok(())
    }
}
