//! The mysql destination: upserts, deletes and inserts, one transaction per batch (see
//! [`crate::sql::destination`]).

use std::sync::Arc;

use funnel_core::{ConnectorError, DestinationAck};
use funnel_record::{Position, Record, StructuredData};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Error, Params, Value as My};

use super::config::MysqlDestinationConfig;
use super::conn::{self, TableSchema};
use super::types::{quote_ident, to_param};
use crate::sql::destination::{
    Ident, POSITIONS_TABLE, Plan, RowWrite, Rules, SqlDestination, SqlServer, refused,
};

/// Rows in one multi-row statement at most.
const ROWS_PER_STATEMENT: usize = 1000;
/// Placeholders in one statement at most (the protocol's limit is 65535).
const PARAMS_PER_STATEMENT: usize = 60_000;

/// A MySQL destination (see the [module docs](super)).
pub(crate) type MysqlDestination = SqlDestination<Mysql>;

/// MySQL's part of the destination.
pub(crate) struct Mysql(MysqlDestinationConfig);

/// A destination table.
pub(crate) struct Table {
    /// The name as the record or the settings gave it, for messages.
    name: String,
    /// Quoted `` `db`.`name` ``.
    sql: String,
    schema: Arc<TableSchema>,
}

/// One write of a record.
pub(crate) enum Op {
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

/// Stores the position of the batch's last record for connector `id` (exactly-once).
async fn store_position(conn: &mut Conn, id: &str, last: &Position) -> Result<(), Error> {
    conn.exec_drop(
        format!(
            "INSERT INTO {POSITIONS_TABLE} (connector_id, position) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE position = VALUES(position)"
        ),
        (id, last.as_bytes().to_vec()),
    )
    .await
}

impl SqlServer for Mysql {
    const PLUGIN: &'static str = "mysql";
    type Config = MysqlDestinationConfig;
    type Conn = Conn;
    type Table = Table;
    type Writes = Vec<Op>;
    type Error = Error;

    async fn open(
        &self,
        ident: &Ident,
        exactly_once: bool,
    ) -> Result<(Conn, Option<Vec<u8>>), ConnectorError> {
        let who = &ident.who;
        let mut conn = conn::connect(&self.0.dsn, who).await?;
        if !exactly_once {
            return Ok((conn, None));
        }
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} \
             (connector_id VARCHAR(255) PRIMARY KEY, position LONGBLOB)"
        ))
        .await
        .map_err(|e| conn::error(&format!("{who}: cannot create table {POSITIONS_TABLE}"), &e))?;
        let stored = conn
            .exec_first::<Option<Vec<u8>>, _, _>(
                format!("SELECT position FROM {POSITIONS_TABLE} WHERE connector_id = ?"),
                (ident.id.as_str(),),
            )
            .await
            .map_err(|e| conn::error(&format!("{who}: cannot read table {POSITIONS_TABLE}"), &e))?
            .flatten();
        Ok((conn, stored))
    }

    async fn table(
        &self,
        ident: &Ident,
        conn: &mut Conn,
        name: &str,
    ) -> Result<Result<Table, String>, ConnectorError> {
        let (database, table) = match name.split_once('.') {
            Some((db, t)) => (db.to_owned(), t.to_owned()),
            None => (self.0.dsn.database.clone(), name.to_owned()),
        };
        let Some(schema) = conn::table_schema(conn, &database, &table, &ident.who).await? else {
            return Ok(Err(format!(
                "the table does not exist in database {database}"
            )));
        };
        Ok(Ok(Table {
            name: name.to_owned(),
            sql: format!("{}.{}", quote_ident(&database), quote_ident(&table)),
            schema,
        }))
    }

    fn writes(table: &Arc<Table>, writes: Vec<RowWrite>) -> Result<Vec<Op>, String> {
        writes
            .into_iter()
            .map(|write| match write {
                RowWrite::Delete(key) => delete(table, &key),
                RowWrite::Upsert { row, key } => insert(table, &row, key),
            })
            .collect()
    }

    async fn write_all(
        &self,
        ident: &Ident,
        conn: &mut Conn,
        writes: &[&Vec<Op>],
        position: Option<&Position>,
    ) -> Result<(), Error> {
        let ops: Vec<&Op> = writes.iter().flat_map(|ops| ops.iter()).collect();
        conn.query_drop("START TRANSACTION").await?;
        let result = async {
            run_ops(conn, &ops).await?;
            if let Some(position) = position {
                store_position(conn, &ident.id, position).await?;
            }
            conn.query_drop("COMMIT").await
        }
        .await;
        if result.is_err() {
            let _ = conn.query_drop("ROLLBACK").await;
        }
        result
    }

    async fn write_each(
        &self,
        ident: &Ident,
        conn: &mut Conn,
        records: &[Record],
        plans: Vec<Plan<Vec<Op>>>,
        position: Option<&Position>,
    ) -> Result<Vec<DestinationAck>, Error> {
        conn.query_drop("START TRANSACTION").await?;
        let mut acks = Vec::with_capacity(records.len());
        for (record, plan) in records.iter().zip(plans) {
            let Some(ops) = plan.or_ack(&record.position, &mut acks) else {
                continue;
            };
            conn.query_drop("SAVEPOINT funnel_record").await?;
            let refs: Vec<&Op> = ops.iter().collect();
            match run_ops(conn, &refs).await {
                Ok(()) => {
                    conn.query_drop("RELEASE SAVEPOINT funnel_record").await?;
                    acks.push(DestinationAck::ok(record.position.clone()));
                }
                Err(e) if conn::is_permanent(&e) => {
                    conn.query_drop("ROLLBACK TO SAVEPOINT funnel_record")
                        .await?;
                    let table = ops.first().map_or("?", |op| op.table().name.as_str());
                    acks.push(DestinationAck::nack(
                        record.position.clone(),
                        refused(&ident.who, table, conn::describe(&e)),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(position) = position {
            store_position(conn, &ident.id, position).await?;
        }
        conn.query_drop("COMMIT").await?;
        Ok(acks)
    }

    fn refuses(e: &Error) -> bool {
        conn::is_permanent(e)
    }

    fn describe(e: &Error) -> String {
        conn::describe(e)
    }

    fn new(config: MysqlDestinationConfig) -> (Self, Rules) {
        let rules = config.rules.clone();
        (Self(config), rules)
    }

    fn transient(&self, ident: &Ident, e: &Error) -> ConnectorError {
        ConnectorError::transient(format!(
            "{}: writing to {} failed: {}",
            ident.who,
            self.0.dsn.address(),
            conn::describe(e)
        ))
    }

    async fn close(conn: Conn) {
        // Closing politely waits for the server; a dead server must not hold teardown.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn.disconnect()).await;
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
        columns.push(name.to_string());
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
        columns.push(name.to_string());
        values.push(to_param(Some(kind), value));
    }
    Ok(Op::Insert {
        table: Arc::clone(table),
        columns,
        key,
        values,
    })
}
