//! The postgres destination: upserts, deletes and inserts, one transaction per batch
//! (see [`crate::sql::destination`]).

use std::collections::HashMap;
use std::sync::Arc;

use funnel_core::{ConnectorError, DestinationAck};
use funnel_record::{Position, Record, StructuredData};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error, Statement};

use super::config::PostgresDestinationConfig;
use super::conn;
use super::types::{ColumnKind, quote_ident, to_text};
use crate::sql::destination::{
    Ident, POSITIONS_TABLE, Plan, RowWrite, Rules, SqlDestination, SqlServer, refused,
};

/// A PostgreSQL destination (see the [module docs](super)).
pub(crate) type PostgresDestination = SqlDestination<Postgres>;

/// PostgreSQL's part of the destination.
pub(crate) struct Postgres(PostgresDestinationConfig);

/// The open connection and its prepared statements.
pub(crate) struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A destination table.
pub(crate) struct Table {
    /// The name as the record or the settings gave it, for messages.
    name: String,
    /// Quoted `"schema"."name"`.
    sql: String,
    /// Column name -> (type for a cast, how values are rendered).
    columns: HashMap<String, (String, ColumnKind)>,
}

/// One SQL statement with its text parameters.
pub(crate) struct Exec {
    sql: String,
    params: Vec<Option<String>>,
}

/// The statements writing one record, to `table`.
pub(crate) struct Writes {
    table: String,
    execs: Vec<Exec>,
}

impl Connection {
    /// Prepares (once) and returns the statement for `sql`, its parameters typed
    /// `types`.
    async fn statement(&mut self, sql: &str, types: &[Type]) -> Result<Statement, Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare_typed(sql, types).await?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Prepares (once) and returns the statement of `exec`.
    async fn exec_statement(&mut self, exec: &Exec) -> Result<Statement, Error> {
        self.statement(&exec.sql, &vec![Type::TEXT; exec.params.len()])
            .await
    }

    /// The statement storing the last written position (exactly-once).
    async fn position_statement(&mut self) -> Result<Statement, Error> {
        let sql = format!(
            "INSERT INTO {POSITIONS_TABLE} (connector_id, position) VALUES ($1, $2) \
             ON CONFLICT (connector_id) DO UPDATE SET position = EXCLUDED.position"
        );
        self.statement(&sql, &[Type::TEXT, Type::BYTEA]).await
    }
}

/// `exec`'s parameters for a call.
fn params(exec: &Exec) -> Vec<&(dyn ToSql + Sync)> {
    exec.params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect()
}

impl SqlServer for Postgres {
    const PLUGIN: &'static str = "postgres";
    type Config = PostgresDestinationConfig;
    type Conn = Connection;
    type Table = Table;
    type Writes = Writes;
    type Error = Error;

    async fn open(
        &self,
        ident: &Ident,
        exactly_once: bool,
    ) -> Result<(Connection, Option<Vec<u8>>), ConnectorError> {
        let who = &ident.who;
        let client = conn::connect(&self.0.pg, &self.0.tls, who).await?;
        let mut stored = None;
        if exactly_once {
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
            stored = client
                .query_opt(
                    &format!("SELECT position FROM {POSITIONS_TABLE} WHERE connector_id = $1"),
                    &[&ident.id],
                )
                .await
                .map_err(|e| {
                    conn::error(&format!("{who}: cannot read table {POSITIONS_TABLE}"), e)
                })?
                .and_then(|row| row.get::<_, Option<Vec<u8>>>(0));
        }
        let connection = Connection {
            client,
            statements: HashMap::new(),
        };
        Ok((connection, stored))
    }

    async fn table(
        &self,
        ident: &Ident,
        connection: &mut Connection,
        name: &str,
    ) -> Result<Result<Table, String>, ConnectorError> {
        let who = &ident.who;
        let oid = connection
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
        let rows = connection
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
        Ok(Ok(Table {
            name: name.to_owned(),
            sql,
            columns,
        }))
    }

    fn writes(table: &Arc<Table>, writes: Vec<RowWrite>) -> Result<Writes, String> {
        let execs = writes
            .into_iter()
            .map(|write| match write {
                RowWrite::Delete(key) => delete(table, &key),
                RowWrite::Upsert { row, key } => insert(table, &row, &key),
            })
            .collect::<Result<_, _>>()?;
        Ok(Writes {
            table: table.name.clone(),
            execs,
        })
    }

    async fn write_all(
        &self,
        ident: &Ident,
        connection: &mut Connection,
        writes: &[&Writes],
        position: Option<&Position>,
    ) -> Result<(), Error> {
        let mut prepared = Vec::new();
        for exec in writes.iter().flat_map(|w| &w.execs) {
            prepared.push((connection.exec_statement(exec).await?, params(exec)));
        }
        let position_statement = match position {
            Some(_) => Some(connection.position_statement().await?),
            None => None,
        };
        let transaction = connection.client.transaction().await?;
        // Sent in one pipeline: the client writes every statement before reading results.
        let results = futures::future::join_all(
            prepared
                .iter()
                .map(|(statement, params)| transaction.execute(statement, params)),
        )
        .await;
        for result in results {
            result?;
        }
        if let (Some(statement), Some(position)) = (position_statement, position) {
            transaction
                .execute(&statement, &[&ident.id, &position.as_bytes()])
                .await?;
        }
        transaction.commit().await
    }

    async fn write_each(
        &self,
        ident: &Ident,
        connection: &mut Connection,
        records: &[Record],
        plans: Vec<Plan<Writes>>,
        position: Option<&Position>,
    ) -> Result<Vec<DestinationAck>, Error> {
        let mut statements = Vec::with_capacity(plans.len());
        for plan in &plans {
            let mut list = Vec::new();
            if let Plan::Run(writes) = plan {
                for exec in &writes.execs {
                    match connection.exec_statement(exec).await {
                        Ok(s) => list.push(Ok(s)),
                        Err(e) if Self::refuses(&e) => list.push(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
            }
            statements.push(list);
        }
        let position_statement = match position {
            Some(_) => Some(connection.position_statement().await?),
            None => None,
        };
        let transaction = connection.client.transaction().await?;
        let mut acks = Vec::with_capacity(records.len());
        for ((record, plan), prepared) in records.iter().zip(plans).zip(statements) {
            let Some(writes) = plan.or_ack(&record.position, &mut acks) else {
                continue;
            };
            transaction.batch_execute("SAVEPOINT funnel_record").await?;
            let mut failure = None;
            for (exec, statement) in writes.execs.iter().zip(prepared) {
                let result = match statement {
                    Ok(statement) => transaction
                        .execute(&statement, &params(exec))
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    if !Self::refuses(&e) {
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
                    acks.push(DestinationAck::nack(
                        record.position.clone(),
                        refused(&ident.who, &writes.table, conn::describe(&e)),
                    ));
                }
            }
        }
        if let (Some(statement), Some(last)) = (position_statement, position) {
            transaction
                .execute(&statement, &[&ident.id, &last.as_bytes()])
                .await?;
        }
        transaction.commit().await?;
        Ok(acks)
    }

    fn refuses(e: &Error) -> bool {
        e.code().is_some() && conn::is_permanent(e)
    }

    fn describe(e: &Error) -> String {
        conn::describe(e)
    }

    fn new(config: PostgresDestinationConfig) -> (Self, Rules) {
        let rules = config.rules.clone();
        (Self(config), rules)
    }

    fn transient(&self, ident: &Ident, e: &Error) -> ConnectorError {
        if e.is_closed() {
            tracing::warn!(connector = %ident.id, "postgres connection closed");
        }
        ConnectorError::transient(format!(
            "{}: writing to {} failed: {}",
            ident.who,
            conn::address(&self.0.pg),
            conn::describe(e)
        ))
    }

    async fn close(_connection: Connection) {}
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
fn insert(table: &Table, row: &StructuredData, key: &[String]) -> Result<Exec, String> {
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
            .filter(|c| !key.iter().any(|k| k == **c))
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
