//! The postgres destination: upserts, deletes and inserts, one transaction per batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Data, Operation, Position, Record, StructuredData, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::config::PostgresDestinationConfig;
use super::conn;
use super::position::compare_positions;
use super::types::{ColumnKind, quote_ident, to_text};
use crate::ack::AckQueue;
use crate::sql::record_key;

/// The table holding the last written position of each exactly-once destination.
pub const POSITIONS_TABLE: &str = "funnel_positions";

/// A PostgreSQL destination (see the [module docs](super)).
pub struct PostgresDestination {
    id: String,
    who: String,
    config: PostgresDestinationConfig,
    state: tokio::sync::Mutex<Option<State>>,
    acks: Arc<AckQueue>,
}

/// The open connection and what was learnt about the tables.
struct State {
    client: Client,
    tables: HashMap<String, Arc<Table>>,
    statements: HashMap<String, Statement>,
    /// Exactly-once: records at or before this position were written before.
    skip_until: Option<Vec<u8>>,
}

/// A destination table.
struct Table {
    /// The name as the record or the settings gave it, for messages.
    name: String,
    /// Quoted `"schema"."name"`.
    sql: String,
    /// Column name -> (type for a cast, how values are rendered).
    columns: HashMap<String, (String, ColumnKind)>,
}

/// One SQL statement with its text parameters.
struct Exec {
    sql: String,
    params: Vec<Option<String>>,
}

/// What to do with one record.
enum Plan {
    /// Already written before a restart (exactly-once): ack.
    Skip,
    /// Cannot be written: nack.
    Fail(RecordError),
    /// Run these statements (a key change deletes the old row first).
    Run { table: String, execs: Vec<Exec> },
}

impl PostgresDestination {
    /// A destination with validated settings. Nothing is connected until
    /// [`Destination::open`].
    pub fn new(id: &str, config: PostgresDestinationConfig) -> Self {
        Self {
            who: format!("postgres destination {id}"),
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

    /// Looks a table up (cached).
    async fn table(
        &self,
        state: &mut State,
        name: &str,
    ) -> Result<Result<Arc<Table>, String>, ConnectorError> {
        if let Some(t) = state.tables.get(name) {
            return Ok(Ok(Arc::clone(t)));
        }
        let who = &self.who;
        let oid = state
            .client
            .query_one("SELECT to_regclass($1)::oid::int8", &[&name])
            .await;
        let oid: Option<i64> = match oid {
            Ok(row) => row.get(0),
            Err(e) if conn::is_permanent(&e) => return Ok(Err(conn::describe(&e))),
            Err(e) => {
                return Err(conn::error(
                    &format!("{who}: cannot look up table {name}"),
                    e,
                ));
            }
        };
        let Some(oid) = oid else {
            return Ok(Err("the table does not exist".to_owned()));
        };
        let rows = state
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, NULL), t.typname::text, t.typcategory::text, \
                 n.nspname::text, c.relname::text \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped",
                &[&oid],
            )
            .await
            .map_err(|e| conn::error(&format!("{who}: cannot read the columns of table {name}"), e))?;
        let mut sql = String::new();
        let mut columns = HashMap::new();
        for row in &rows {
            let column: String = row.get(0);
            let type_sql: String = row.get(1);
            let type_name: String = row.get(2);
            let category: String = row.get(3);
            let kind = match (type_name.as_str(), category.as_str()) {
                ("bytea", _) => ColumnKind::Bytea,
                ("json" | "jsonb", _) => ColumnKind::Json,
                (_, "A") => ColumnKind::Array,
                _ => ColumnKind::Other,
            };
            if sql.is_empty() {
                sql = format!("{}.{}", quote_ident(row.get(4)), quote_ident(row.get(5)));
            }
            columns.insert(column, (type_sql, kind));
        }
        let table = Arc::new(Table {
            name: name.to_owned(),
            sql,
            columns,
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
        Ok(match self.statements(&table, record) {
            Ok(execs) => Plan::Run {
                table: table.name.clone(),
                execs,
            },
            Err(message) => self.fail(&name, message),
        })
    }

    /// The statements writing one record to `table`.
    fn statements(&self, table: &Table, record: &Record) -> Result<Vec<Exec>, String> {
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
        let mut execs = Vec::with_capacity(2);
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Ok(vec![insert(table, &after, &[])?]);
        };
        for (k, v) in &key {
            after.entry(k.clone()).or_insert_with(|| v.clone());
        }
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
                execs.push(delete(table, &old)?);
            }
        }
        let names: Vec<String> = key.keys().cloned().collect();
        execs.push(insert(table, &after, &names)?);
        Ok(execs)
    }

    /// Prepares (once) and returns the statement for `sql`.
    async fn statement(
        state: &mut State,
        sql: &str,
        params: usize,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = state.statements.get(sql) {
            return Ok(s.clone());
        }
        let types = vec![Type::TEXT; params];
        let statement = state.client.prepare_typed(sql, &types).await?;
        state.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// The statement storing the last written position (exactly-once).
    async fn position_statement(state: &mut State) -> Result<Statement, tokio_postgres::Error> {
        let sql = format!(
            "INSERT INTO {POSITIONS_TABLE} (connector_id, position) VALUES ($1, $2) \
             ON CONFLICT (connector_id) DO UPDATE SET position = EXCLUDED.position"
        );
        if let Some(s) = state.statements.get(&sql) {
            return Ok(s.clone());
        }
        let statement = state
            .client
            .prepare_typed(&sql, &[Type::TEXT, Type::BYTEA])
            .await?;
        state.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Writes a batch in one transaction; `Err` from the server with the error of the
    /// first failing statement.
    async fn write_all(
        &self,
        state: &mut State,
        plans: &[Plan],
        last: &Position,
    ) -> Result<(), tokio_postgres::Error> {
        let mut prepared = Vec::new();
        for plan in plans {
            if let Plan::Run { execs, .. } = plan {
                for exec in execs {
                    prepared.push((
                        Self::statement(state, &exec.sql, exec.params.len()).await?,
                        exec,
                    ));
                }
            }
        }
        let position_statement = if self.config.exactly_once {
            Some(Self::position_statement(state).await?)
        } else {
            None
        };
        let transaction = state.client.transaction().await?;
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = prepared
            .iter()
            .map(|(_, exec)| {
                exec.params
                    .iter()
                    .map(|p| p as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        // Sent in one pipeline: the client writes every statement before reading results.
        let results = futures::future::join_all(
            prepared
                .iter()
                .zip(&params)
                .map(|((statement, _), params)| transaction.execute(statement, params)),
        )
        .await;
        for result in results {
            result?;
        }
        if let Some(statement) = position_statement {
            transaction
                .execute(&statement, &[&self.id, &last.as_bytes()])
                .await?;
        }
        transaction.commit().await
    }

    /// Writes a batch record by record, each under a savepoint, so that a failing record
    /// is nacked and the others are written. Returns the acks.
    async fn write_each(
        &self,
        state: &mut State,
        records: &[Record],
        plans: Vec<Plan>,
    ) -> Result<Vec<DestinationAck>, tokio_postgres::Error> {
        let mut statements = Vec::with_capacity(plans.len());
        for plan in &plans {
            let mut list = Vec::new();
            if let Plan::Run { execs, .. } = plan {
                for exec in execs {
                    match Self::statement(state, &exec.sql, exec.params.len()).await {
                        Ok(s) => list.push(Ok(s)),
                        Err(e) if e.code().is_some() && conn::is_permanent(&e) => list.push(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
            }
            statements.push(list);
        }
        let position_statement = if self.config.exactly_once {
            Some(Self::position_statement(state).await?)
        } else {
            None
        };
        let transaction = state.client.transaction().await?;
        let mut acks = Vec::with_capacity(records.len());
        for ((record, plan), prepared) in records.iter().zip(plans).zip(statements) {
            let (table, execs) = match plan {
                Plan::Skip => {
                    acks.push(DestinationAck::ok(record.position.clone()));
                    continue;
                }
                Plan::Fail(e) => {
                    acks.push(DestinationAck::nack(record.position.clone(), e));
                    continue;
                }
                Plan::Run { table, execs } => (table, execs),
            };
            transaction.batch_execute("SAVEPOINT funnel_record").await?;
            let mut failure = None;
            for (exec, statement) in execs.iter().zip(prepared) {
                let result = match statement {
                    Ok(statement) => {
                        let params: Vec<&(dyn ToSql + Sync)> = exec
                            .params
                            .iter()
                            .map(|p| p as &(dyn ToSql + Sync))
                            .collect();
                        transaction.execute(&statement, &params).await.map(drop)
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    if e.code().is_none() || !conn::is_permanent(&e) {
                        return Err(e);
                    }
                    failure = Some(e);
                    break;
                }
            }
            match failure {
                None => {
                    transaction
                        .batch_execute("RELEASE SAVEPOINT funnel_record")
                        .await?;
                    acks.push(DestinationAck::ok(record.position.clone()));
                }
                Some(e) => {
                    transaction
                        .batch_execute("ROLLBACK TO SAVEPOINT funnel_record")
                        .await?;
                    let message = format!("{}: table {table}: {}", self.who, conn::describe(&e));
                    acks.push(DestinationAck::nack(
                        record.position.clone(),
                        RecordError::msg(message),
                    ));
                }
            }
        }
        if let (Some(statement), Some(last)) = (position_statement, records.last()) {
            transaction
                .execute(&statement, &[&self.id, &last.position.as_bytes()])
                .await?;
        }
        transaction.commit().await?;
        Ok(acks)
    }
}

fn column<'t>(table: &'t Table, name: &str) -> Result<&'t (String, ColumnKind), String> {
    table
        .columns
        .get(name)
        .ok_or_else(|| format!("column {name:?} does not exist"))
}

fn delete(table: &Table, key: &StructuredData) -> Result<Exec, String> {
    let mut conditions = Vec::with_capacity(key.len());
    let mut params = Vec::with_capacity(key.len());
    for (i, (name, value)) in key.iter().enumerate() {
        let (type_sql, kind) = column(table, name)?;
        conditions.push(format!("{} = ${}::{type_sql}", quote_ident(name), i + 1));
        params.push(to_text(value, *kind));
    }
    Ok(Exec {
        sql: format!(
            "DELETE FROM {} WHERE {}",
            table.sql,
            conditions.join(" AND ")
        ),
        params,
    })
}

/// An insert of `row`; an upsert on `key` when it is not empty.
fn insert(table: &Table, row: &BTreeMap<String, Value>, key: &[String]) -> Result<Exec, String> {
    if row.is_empty() {
        return Err("payload.after has no fields".to_owned());
    }
    let mut names = Vec::with_capacity(row.len());
    let mut values = Vec::with_capacity(row.len());
    let mut params = Vec::with_capacity(row.len());
    for (i, (name, value)) in row.iter().enumerate() {
        let (type_sql, kind) = column(table, name)?;
        names.push(quote_ident(name));
        values.push(format!("${}::{type_sql}", i + 1));
        params.push(to_text(value, *kind));
    }
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.sql,
        names.join(", "),
        values.join(", ")
    );
    if !key.is_empty() {
        let updates: Vec<String> = row
            .keys()
            .filter(|c| !key.contains(c))
            .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
            .collect();
        let target = key
            .iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ");
        if updates.is_empty() {
            sql.push_str(&format!(" ON CONFLICT ({target}) DO NOTHING"));
        } else {
            sql.push_str(&format!(
                " ON CONFLICT ({target}) DO UPDATE SET {}",
                updates.join(", ")
            ));
        }
    }
    Ok(Exec { sql, params })
}

#[async_trait]
impl Destination for PostgresDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let who = &self.who;
        let client = conn::connect(&self.config.pg, &self.config.tls, who).await?;
        let mut skip_until = None;
        if self.config.exactly_once {
            let created = client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (connector_id text PRIMARY KEY, position bytea)"
                ))
                .await;
            match created {
                // Another destination created it at the same moment.
                Err(e)
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                        || e.code() == Some(&SqlState::DUPLICATE_TABLE) => {}
                Err(e) => {
                    return Err(conn::error(
                        &format!("{who}: cannot create table {POSITIONS_TABLE}"),
                        e,
                    ));
                }
                Ok(()) => {}
            }
            skip_until = client
                .query_opt(
                    &format!("SELECT position FROM {POSITIONS_TABLE} WHERE connector_id = $1"),
                    &[&self.id],
                )
                .await
                .map_err(|e| {
                    conn::error(&format!("{who}: cannot read table {POSITIONS_TABLE}"), e)
                })?
                .and_then(|row| row.get::<_, Option<Vec<u8>>>(0));
            if let Some(p) = &skip_until {
                tracing::info!(connector = %self.id, position = %String::from_utf8_lossy(p), "exactly-once: skipping records up to the stored position");
            }
        }
        *self.state.lock().await = Some(State {
            client,
            tables: HashMap::new(),
            statements: HashMap::new(),
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
        let all_run = plans
            .iter()
            .all(|p| matches!(p, Plan::Run { .. } | Plan::Skip));
        let any_run = plans.iter().any(|p| matches!(p, Plan::Run { .. }));
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
                Err(e) if e.code().is_some() && conn::is_permanent(&e) => {
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
        *self.state.lock().await = None;
        self.acks.close(format!("{}: torn down", self.who));
        Ok(())
    }
}

impl PostgresDestination {
    /// A failure of the whole batch (connection lost, server shutting down, ...): the
    /// records are not acknowledged; the pipeline restarts and writes them again.
    fn transient(&self, e: &tokio_postgres::Error) -> ConnectorError {
        if e.is_closed() {
            tracing::warn!(connector = %self.id, "postgres connection closed");
        }
        ConnectorError::transient(format!(
            "{}: writing to {} failed: {}",
            self.who,
            conn::address(&self.config.pg),
            conn::describe(e)
        ))
    }
}
