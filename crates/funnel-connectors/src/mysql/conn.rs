//! Connections, error classes and the catalog look-ups the source and destination
//! share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use funnel_core::ConnectorError;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Error, Row};

use super::config::Dsn;
use super::types::{ColumnInfo, Kind};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects; errors name `who` and the server, and say what to change.
pub(crate) async fn connect(dsn: &Dsn, who: &str) -> Result<Conn, ConnectorError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(dsn.opts())).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(error(
            &format!("{who}: cannot connect to {} as {}", dsn.address(), dsn.user),
            &e,
        )),
        Err(_) => Err(ConnectorError::transient(format!(
            "{who}: cannot connect to {}: no answer within {}s",
            dsn.address(),
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// The server's error code, if the error came from the server.
pub(crate) fn code(e: &Error) -> Option<u16> {
    match e {
        Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Server error codes worth a retry: the statement or connection may succeed later.
const TRANSIENT_CODES: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1205, // lock wait timeout
    1213, // deadlock
    1317, // query interrupted
    1927, // connection killed
    1158, 1159, 1160, 1161, // network read/write errors
    2006, 2013, // server gone away, lost connection
];

/// Whether the server refused the statement for what it holds (a value, a constraint,
/// a missing table or column), so retrying it cannot help.
pub(crate) fn is_permanent(e: &Error) -> bool {
    matches!(code(e), Some(c) if !TRANSIENT_CODES.contains(&c))
}

/// The error with its text, and what to do when the cause is known.
pub(crate) fn describe(e: &Error) -> String {
    match e {
        Error::Server(s) => {
            let hint = match s.code {
                1045 | 1698 => "; check the user and password in `dsn`",
                1049 => "; create the database or fix the database name in `dsn`",
                1044 | 1142 | 1143 | 1227 => {
                    "; grant the user SELECT, REPLICATION SLAVE and REPLICATION CLIENT (and RELOAD on MySQL)"
                }
                1236 => {
                    "; the binlog the position needs is gone (purged or rotated away): reset the \
                     pipeline's position to take a new snapshot, and keep binlogs longer \
                     (binlog_expire_logs_seconds)"
                }
                _ => "",
            };
            format!(
                "{} (error {}, SQLSTATE {}){hint}",
                s.message, s.code, s.state
            )
        }
        other => other.to_string(),
    }
}

/// A connector error for `e` while doing `what`: transient for network failures and
/// busy servers, a configuration error for credentials, privileges and missing
/// objects.
pub(crate) fn error(what: &str, e: &Error) -> ConnectorError {
    let message = format!("{what}: {}", describe(e));
    match code(e) {
        Some(1044 | 1045 | 1698 | 1049 | 1142 | 1143 | 1146 | 1227 | 1236 | 1054) => {
            ConnectorError::config(message)
        }
        Some(c) if TRANSIENT_CODES.contains(&c) => ConnectorError::transient(message),
        Some(_) => ConnectorError::fatal(message),
        None => ConnectorError::transient(message),
    }
}

/// A table: its columns in order and its primary key.
#[derive(Debug)]
pub(crate) struct TableSchema {
    pub(crate) columns: Vec<ColumnInfo>,
    /// Indexes in `columns` of the primary key, in key order.
    pub(crate) key: Vec<usize>,
    /// Column name -> index.
    pub(crate) by_name: HashMap<String, usize>,
}

impl TableSchema {
    /// The kind of a column.
    pub(crate) fn kind(&self, column: &str) -> Option<&Kind> {
        self.by_name.get(column).map(|&i| &self.columns[i].kind)
    }
}

/// The base tables of `database`, in name order.
pub(crate) async fn list_tables(
    conn: &mut Conn,
    database: &str,
    who: &str,
) -> Result<Vec<String>, ConnectorError> {
    conn.exec(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
         AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        (database,),
    )
    .await
    .map_err(|e| error(&format!("{who}: cannot list the tables of {database}"), &e))
}

/// The schema of `database`.`table`, or `None` when it does not exist.
pub(crate) async fn table_schema(
    conn: &mut Conn,
    database: &str,
    table: &str,
    who: &str,
) -> Result<Option<Arc<TableSchema>>, ConnectorError> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.CHARACTER_SET_NAME, c.COLUMN_KEY, \
             EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k \
                     WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
                       AND k.CHECK_CLAUSE LIKE CONCAT('%json_valid(`', c.COLUMN_NAME, '`)%')) \
             FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? \
             ORDER BY c.ORDINAL_POSITION",
            (database, table),
        )
        .await
        .map_err(|e| {
            error(
                &format!("{who}: cannot read the columns of table {table}"),
                &e,
            )
        })?;
    if rows.is_empty() {
        return Ok(None);
    }
    let key_rows: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (database, table),
        )
        .await
        .map_err(|e| {
            error(
                &format!("{who}: cannot read the primary key of table {table}"),
                &e,
            )
        })?;
    let mut columns = Vec::with_capacity(rows.len());
    for mut row in rows {
        let text = |row: &mut Row, i: usize| -> Option<String> {
            row.take_opt::<Option<String>, _>(i)
                .and_then(Result::ok)
                .flatten()
        };
        let name = text(&mut row, 0).unwrap_or_default();
        let data_type = text(&mut row, 1).unwrap_or_default().to_ascii_lowercase();
        let column_type = text(&mut row, 2).unwrap_or_default().to_ascii_lowercase();
        let charset = text(&mut row, 3);
        let json = row
            .take_opt::<Option<i64>, _>(5)
            .and_then(Result::ok)
            .flatten()
            .unwrap_or(0)
            != 0;
        let kind = Kind::from_schema(&data_type, &column_type, charset.as_deref(), json);
        columns.push(ColumnInfo { name, kind });
    }
    let by_name: HashMap<String, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let key = key_rows
        .iter()
        .filter_map(|k| by_name.get(k).copied())
        .collect();
    Ok(Some(Arc::new(TableSchema {
        columns,
        key,
        by_name,
    })))
}
