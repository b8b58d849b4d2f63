//! The mysql destination: upserts, deletes and inserts, one transaction per batch.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Data, Operation, Position, Record, StructuredData, Value};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Error, Params, Value as My};

use super::config::MysqlDestinationConfig;
use super::conn::{self, TableSchema};
use super::types::{quote_ident, to_param};
use crate::ack::AckQueue;
use crate::sql::{compare_positions, record_key};

/// The table holding the last written position of each exactly-once destination.
pub const POSITIONS_TABLE: &str = "funnel_positions";

/// Rows in one multi-row statement at most.
const ROWS_PER_STATEMENT: usize = 1000;
/// Placeholders in one statement at most (the protocol's limit is 65535).
const PARAMS_PER_STATEMENT: usize = 60_000;

/// A MySQL destination (see the [module docs](super)).
pub struct MysqlDestination {
    id: String,
    who: String,
    config: MysqlDestinationConfig,
    state: tokio::sync::Mutex<Option<State>>,
    acks: Arc<AckQueue>,
}

/// The open connection and what was learnt about the tables.
struct State {
    conn: Conn,
    tables: HashMap<String, Arc<Table>>,
    /// Exactly-once: records at or before this position were written before.
    skip_until: Option<Vec<u8>>,
}

/// A destination table.
struct Table {
    /// The name as the record or the settings gave it, for messages.
    name: String,
    /// Quoted `` `db`.`name` ``.
    sql: String,
    schema: Arc<TableSchema>,
}

/// One write of a record.
enum Op {
    /// `DELETE FROM table WHERE (key) IN (...)`.
    Delete {
        table: Arc<Table>,
        columns: Vec<String>,
        values: Vec<My>,
    },
    /// `INSERT INTO table (columns) VALUES (...)`, with `ON DUPLICATE KEY UPDATE` of
    /// the columns outside `key` when `key` is not empty.
    Insert {
        table: Arc<Table>,
        columns: Vec<String>,
        key: Vec<String>,
        values: Vec<My>,
    },
}

impl Op {
    /// Whether `other` can join this statement: the same kind, table and columns.
    fn joins(&self, other: &Op) -> bool {
        match (self, other) {
            (
                Op::Delete { table, columns, .. },
                Op::Delete {
                    table: t2,
                    columns: c2,
                    ..
                },
            ) => Arc::ptr_eq(table, t2) && columns == c2,
            (
                Op::Insert {
                    table,
                    columns,
                    key,
                    ..
                },
                Op::Insert {
                    table: t2,
                    columns: c2,
                    key: k2,
                    ..
                },
            ) => Arc::ptr_eq(table, t2) && columns == c2 && key == k2,
            _ => false,
        }
    }

    fn values(&self) -> &[My] {
        match self {
            Op::Delete { values, .. } | Op::Insert { values, .. } => values,
        }
    }

    fn table(&self) -> &Table {
        match self {
            Op::Delete { table, .. } | Op::Insert { table, .. } => table,
        }
    }

    /// The statement for `rows` rows like this one.
    fn sql(&self, rows: usize) -> String {
        match self {
            Op::Delete { table, columns, .. } => {
                let names: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                let one = format!("({})", vec!["?"; columns.len()].join(","));
                format!(
                    "DELETE FROM {} WHERE ({}) IN ({})",
                    table.sql,
                    names.join(","),
                    vec![one; rows].join(",")
                )
            }
            Op::Insert {
                table,
                columns,
                key,
                ..
            } => {
                let names: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                let one = format!("({})", vec!["?"; columns.len()].join(","));
                let mut sql = format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    table.sql,
                    names.join(","),
                    vec![one; rows].join(",")
                );
                if !key.is_empty() {
                    let updates: Vec<String> = columns
                        .iter()
                        .filter(|c| !key.contains(c))
                        .map(|c| format!("{0} = VALUES({0})", quote_ident(c)))
                        .collect();
                    if updates.is_empty() {
                        let k = quote_ident(&key[0]);
                        sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {k} = {k}"));
                    } else {
                        sql.push_str(" ON DUPLICATE KEY UPDATE ");
                        sql.push_str(&updates.join(", "));
                    }
                }
                sql
            }
        }
    }
}

/// What to do with one record.
enum Plan {
    /// Already written before a restart (exactly-once): ack.
    Skip,
    /// Cannot be written: nack.
    Fail(RecordError),
    /// Run these writes (a key change deletes the old row first).
    Run(Vec<Op>),
}

impl MysqlDestination {
    /// A destination with validated settings. Nothing is connected until
    /// [`Destination::open`].
    pub fn new(id: &str, config: MysqlDestinationConfig) -> Self {
        Self {
            who: format!("mysql destination {id}"),
            id: id.to_owned(),
            config,
            state: tokio::sync::Mutex::new(None),
            acks: Arc::new(AckQueue::new()),
        }
    }

    fn fail(&self, table: &str, message: impl std::fmt::Display) -> Plan {
        Plan::Fail(RecordError::msg(format!(
            "{}: table {table}: {message}",
            self.who
        )))
    }

    /// Looks a table up (cached once found).
    async fn table(
        &self,
        state: &mut State,
        name: &str,
    ) -> Result<Result<Arc<Table>, String>, ConnectorError> {
        if let Some(t) = state.tables.get(name) {
            return Ok(Ok(Arc::clone(t)));
        }
        let (database, table) = match name.split_once('.') {
            Some((db, t)) => (db.to_owned(), t.to_owned()),
            None => (self.config.dsn.database.clone(), name.to_owned()),
        };
        let Some(schema) =
            conn::table_schema(&mut state.conn, &database, &table, &self.who).await?
        else {
            return Ok(Err(format!(
                "the table does not exist in database {database}"
            )));
        };
        let table = Arc::new(Table {
            name: name.to_owned(),
            sql: format!("{}.{}", quote_ident(&database), quote_ident(&table)),
            schema,
        });
        state.tables.insert(name.to_owned(), Arc::clone(&table));
        Ok(Ok(table))
    }

    /// Decides what to do with one record.
    async fn plan(&self, state: &mut State, record: &Record) -> Result<Plan, ConnectorError> {
        if let Some(until) = &state.skip_until {
            if compare_positions(record.position.as_bytes(), until).is_le() {
                return Ok(Plan::Skip);
            }
            state.skip_until = None;
        }
        let name = match self.config.table.of(record, &self.who) {
            Ok(name) => name,
            Err(message) => return Ok(Plan::Fail(RecordError::msg(message))),
        };
        let table = match self.table(state, &name).await? {
            Ok(t) => t,
            Err(message) => return Ok(self.fail(&name, message)),
        };
        Ok(match self.ops(&table, record) {
            Ok(ops) => Plan::Run(ops),
            Err(message) => self.fail(&name, message),
        })
    }

    /// The writes of one record to `table`.
    fn ops(&self, table: &Arc<Table>, record: &Record) -> Result<Vec<Op>, String> {
        let key = record_key(record, &self.config.key)?;
        if record.operation == Operation::Delete {
            let Some(key) = key.filter(|k| !k.is_empty()) else {
                return Err(
                    "a delete needs a key (the record has none, and `key` is not set)".to_owned(),
                );
            };
            return Ok(vec![delete(table, &key)?]);
        }
        let mut after = match &record.payload.after {
            Some(Data::Structured(d)) => d.clone(),
            Some(Data::Raw(bytes)) => match Value::from_json(bytes) {
                Ok(Value::Map(map)) => map,
                _ => return Err("payload.after is raw data that is not a JSON object".to_owned()),
            },
            None => return Err(format!("a {} record needs payload.after", record.operation)),
        };
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Ok(vec![insert(table, &after, Vec::new())?]);
        };
        for (k, v) in &key {
            after.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut ops = Vec::with_capacity(2);
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
                ops.push(delete(table, &old)?);
            }
        }
        ops.push(insert(table, &after, key.keys().cloned().collect())?);
        Ok(ops)
    }

    /// Runs `ops` in order, joining neighbours that fit one statement.
    async fn run_ops(conn: &mut Conn, ops: &[&Op]) -> Result<(), Error> {
        let mut i = 0;
        while i < ops.len() {
            let first = ops[i];
            let width = first.values().len().max(1);
            let most = ROWS_PER_STATEMENT.min(PARAMS_PER_STATEMENT / width).max(1);
            let mut j = i + 1;
            while j < ops.len() && j - i < most && first.joins(ops[j]) {
                j += 1;
            }
            let mut params = Vec::with_capacity(width * (j - i));
            for op in &ops[i..j] {
                params.extend(op.values().iter().cloned());
            }
            conn.exec_drop(first.sql(j - i), Params::Positional(params))
                .await?;
            i = j;
        }
        Ok(())
    }

    /// Stores the position of the batch's last record (exactly-once).
    async fn store_position(&self, conn: &mut Conn, last: &Position) -> Result<(), Error> {
        conn.exec_drop(
            format!(
                "INSERT INTO {POSITIONS_TABLE} (connector_id, position) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE position = VALUES(position)"
            ),
            (self.id.as_str(), last.as_bytes().to_vec()),
        )
        .await
    }

    /// Writes a batch in one transaction.
    async fn write_all(
        &self,
        state: &mut State,
        plans: &[Plan],
        last: &Position,
    ) -> Result<(), Error> {
        let ops: Vec<&Op> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Run(ops) => Some(ops.iter()),
                _ => None,
            })
            .flatten()
            .collect();
        let conn = &mut state.conn;
        conn.query_drop("START TRANSACTION").await?;
        let result = async {
            Self::run_ops(conn, &ops).await?;
            if self.config.exactly_once {
                self.store_position(conn, last).await?;
            }
            conn.query_drop("COMMIT").await
        }
        .await;
        if result.is_err() {
            let _ = conn.query_drop("ROLLBACK").await;
        }
        result
    }

    /// Writes a batch record by record, each under a savepoint, so that a failing record
    /// is nacked and the others are written. Returns the acks.
    async fn write_each(
        &self,
        state: &mut State,
        records: &[Record],
        plans: Vec<Plan>,
    ) -> Result<Vec<DestinationAck>, Error> {
        let conn = &mut state.conn;
        conn.query_drop("START TRANSACTION").await?;
        let mut acks = Vec::with_capacity(records.len());
        for (record, plan) in records.iter().zip(plans) {
            let ops = match plan {
                Plan::Skip => {
                    acks.push(DestinationAck::ok(record.position.clone()));
                    continue;
                }
                Plan::Fail(e) => {
                    acks.push(DestinationAck::nack(record.position.clone(), e));
                    continue;
                }
                Plan::Run(ops) => ops,
            };
            conn.query_drop("SAVEPOINT funnel_record").await?;
            let refs: Vec<&Op> = ops.iter().collect();
            match Self::run_ops(conn, &refs).await {
                Ok(()) => {
                    conn.query_drop("RELEASE SAVEPOINT funnel_record").await?;
                    acks.push(DestinationAck::ok(record.position.clone()));
                }
                Err(e) if conn::is_permanent(&e) => {
                    conn.query_drop("ROLLBACK TO SAVEPOINT funnel_record")
                        .await?;
                    let table = ops.first().map_or("?", |op| op.table().name.as_str());
                    let message = format!("{}: table {table}: {}", self.who, conn::describe(&e));
                    acks.push(DestinationAck::nack(
                        record.position.clone(),
                        RecordError::msg(message),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        if let (true, Some(last)) = (self.config.exactly_once, records.last()) {
            self.store_position(conn, &last.position).await?;
        }
        conn.query_drop("COMMIT").await?;
        Ok(acks)
    }

    /// A failure of the whole batch (connection lost, server shutting down, ...): the
    /// records are not acknowledged; the pipeline restarts and writes them again.
    fn transient(&self, e: &Error) -> ConnectorError {
        ConnectorError::transient(format!(
            "{}: writing to {} failed: {}",
            self.who,
            self.config.dsn.address(),
            conn::describe(e)
        ))
    }
}

fn column<'t>(table: &'t Table, name: &str) -> Result<&'t super::types::Kind, String> {
    table
        .schema
        .kind(name)
        .ok_or_else(|| format!("column {name:?} does not exist"))
}

fn delete(table: &Arc<Table>, key: &StructuredData) -> Result<Op, String> {
    let mut columns = Vec::with_capacity(key.len());
    let mut values = Vec::with_capacity(key.len());
    for (name, value) in key {
        let kind = column(table, name)?;
        columns.push(name.clone());
        values.push(to_param(Some(kind), value));
    }
    Ok(Op::Delete {
        table: Arc::clone(table),
        columns,
        values,
    })
}

/// An insert of `row`; an upsert on `key` when it is not empty.
fn insert(table: &Arc<Table>, row: &StructuredData, key: Vec<String>) -> Result<Op, String> {
    if row.is_empty() {
        return Err("payload.after has no fields".to_owned());
    }
    let mut columns = Vec::with_capacity(row.len());
    let mut values = Vec::with_capacity(row.len());
    for (name, value) in row {
        let kind = column(table, name)?;
        columns.push(name.clone());
        values.push(to_param(Some(kind), value));
    }
    Ok(Op::Insert {
        table: Arc::clone(table),
        columns,
        key,
        values,
    })
}

#[async_trait]
impl Destination for MysqlDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let who = &self.who;
        let mut conn = conn::connect(&self.config.dsn, who).await?;
        let mut skip_until = None;
        if self.config.exactly_once {
            conn.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} \
                 (connector_id VARCHAR(255) PRIMARY KEY, position LONGBLOB)"
            ))
            .await
            .map_err(|e| {
                conn::error(&format!("{who}: cannot create table {POSITIONS_TABLE}"), &e)
            })?;
            skip_until = conn
                .exec_first::<Option<Vec<u8>>, _, _>(
                    format!("SELECT position FROM {POSITIONS_TABLE} WHERE connector_id = ?"),
                    (self.id.as_str(),),
                )
                .await
                .map_err(|e| {
                    conn::error(&format!("{who}: cannot read table {POSITIONS_TABLE}"), &e)
                })?
                .flatten();
            if let Some(p) = &skip_until {
                tracing::info!(connector = %self.id, position = %String::from_utf8_lossy(p), "exactly-once: skipping records up to the stored position");
            }
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
                self.who
            )));
        };
        let mut plans = Vec::with_capacity(records.len());
        for record in records {
            plans.push(self.plan(state, record).await?);
        }
        let all_run = plans.iter().all(|p| matches!(p, Plan::Run(_) | Plan::Skip));
        let any_run = plans.iter().any(|p| matches!(p, Plan::Run(_)));
        if all_run {
            let result = if any_run || self.config.exactly_once {
                self.write_all(state, &plans, &last.position).await
            } else {
                Ok(())
            };
            match result {
                Ok(()) => {
                    self.acks.push_ok(records);
                    return Ok(());
                }
                Err(e) if conn::is_permanent(&e) => {
                    tracing::debug!(connector = %self.id, error = %conn::describe(&e), "batch failed; writing record by record");
                }
                Err(e) => return Err(self.transient(&e)),
            }
        }
        match self.write_each(state, records, plans).await {
            Ok(acks) => {
                self.acks.push(acks);
                Ok(())
            }
            Err(e) => Err(self.transient(&e)),
        }
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let state = self.state.lock().await.take();
        if let Some(state) = state {
            // Closing politely waits for the server; a dead server must not hold
            // teardown.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), state.conn.disconnect())
                    .await;
        }
        self.acks.close(format!("{}: torn down", self.who));
        Ok(())
    }
}
