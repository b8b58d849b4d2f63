//! Connections, catalog look-ups and error messages shared by the source and the
//! destination.

use std::collections::BTreeMap;

use funnel_core::ConnectorError;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use super::config::Tables;
use super::tls::{SslMode, Tls};
use super::types::{SESSION_OPTIONS, quote_ident};
use tokio_postgres_rustls::MakeRustlsConnect;

/// `host:port` of the first host of `pg`, for messages.
pub(crate) fn address(pg: &Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// The text of a PostgreSQL error: the server's message with its code, detail and hint,
/// or the client's error and its causes.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            s.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!("; hint: {hint}"));
        }
        return s;
    }
    funnel_core::error_chain(e)
}

/// True for server errors that retrying will not fix (configuration, permissions,
/// missing objects).
pub(crate) fn is_permanent(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        return false;
    };
    let class = &code.code()[..2];
    matches!(class, "28" | "3D" | "42" | "55" | "22" | "23" | "0A")
        && *code != SqlState::LOCK_NOT_AVAILABLE
        && *code != SqlState::OBJECT_IN_USE
}

/// A PostgreSQL error with its full text ([`describe`]): the server's detail and hint
/// are in the message, the client's error stays the source.
#[derive(Debug)]
pub(crate) struct PgError {
    text: String,
    source: tokio_postgres::Error,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A connector error for a failed operation: fatal when retrying cannot help (a
/// configuration, permission or missing-object error is a config error, bad data a
/// data error), transient otherwise.
pub(crate) fn error(context: &str, e: tokio_postgres::Error) -> ConnectorError {
    let class = e.code().map(|code| code.code()[..2].to_owned());
    let permanent = is_permanent(&e);
    let error = PgError {
        text: describe(&e),
        source: e,
    };
    let error = match class.as_deref() {
        Some("22" | "23") if permanent => ConnectorError::data(error),
        Some("28" | "3D" | "42" | "0A") if permanent => ConnectorError::config(error),
        _ if permanent => ConnectorError::fatal(error),
        _ => ConnectorError::transient(error),
    };
    error.context(context)
}

/// Opens a connection with the connector's session settings; the connection runs on
/// its own task until the client is dropped.
///
/// # Errors
///
/// Unreachable server (transient), bad credentials or database (fatal).
pub(crate) async fn connect(pg: &Config, tls: &Tls, who: &str) -> Result<Client, ConnectorError> {
    let mut pg = pg.clone();
    pg.options(SESSION_OPTIONS);
    pg.application_name("funnel");
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(std::time::Duration::from_secs(10));
    }
    let connected = match tls.mode {
        SslMode::Disable => pg.connect(NoTls).await.map(|(client, connection)| {
            tokio::spawn(run(connection));
            client
        }),
        _ => {
            let connector = MakeRustlsConnect::new(tls.client_config(who)?);
            pg.connect(connector).await.map(|(client, connection)| {
                tokio::spawn(run(connection));
                client
            })
        }
    };
    let client = connected.map_err(|e| {
        let user = pg.get_user().unwrap_or("?");
        let context = match e.code() {
            Some(c) if c.code().starts_with("28") => {
                format!(
                    "{who}: authentication failed for user {user:?} at {}",
                    address(&pg)
                )
            }
            Some(&SqlState::INVALID_CATALOG_NAME) => {
                format!("{who}: the database does not exist at {}", address(&pg))
            }
            _ => format!("{who}: cannot connect to PostgreSQL at {}", address(&pg)),
        };
        error(&context, e)
    })?;
    Ok(client)
}

/// Drives a connection until the client is dropped.
async fn run<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "postgres connection ended");
    }
}

/// A table the source reads.
#[derive(Clone, Debug)]
pub(crate) struct TableInfo {
    pub(crate) oid: u32,
    /// `schema.name`, as positions record it.
    pub(crate) qualified: String,
    /// Quoted `"schema"."name"` for SQL.
    pub(crate) sql: String,
    /// `opencdc.collection`: the name, with its schema unless it is `public`.
    pub(crate) collection: String,
    /// Columns: name and type OID, in table order.
    pub(crate) columns: Vec<(String, u32)>,
    /// Primary key columns, in key order (empty without a primary key).
    pub(crate) key: Vec<String>,
}

/// Looks a table up by OID.
///
/// # Errors
///
/// When the catalog cannot be read.
pub(crate) async fn table_by_oid(
    client: &Client,
    oid: u32,
    who: &str,
) -> Result<Option<TableInfo>, ConnectorError> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::int8::oid",
            &[&i64::from(oid)],
        )
        .await
        .map_err(|e| error(&format!("{who}: cannot read the catalog"), e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let schema: String = row.get(0);
    let name: String = row.get(1);
    let columns = client
        .query(
            "SELECT attname::text, atttypid::int8 FROM pg_attribute \
             WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&i64::from(oid)],
        )
        .await
        .map_err(|e| {
            error(
                &format!("{who}: cannot read the columns of {schema}.{name}"),
                e,
            )
        })?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u32))
        .collect();
    let key = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::int8::oid AND i.indisprimary ORDER BY k.ord",
            &[&i64::from(oid)],
        )
        .await
        .map_err(|e| {
            error(
                &format!("{who}: cannot read the primary key of {schema}.{name}"),
                e,
            )
        })?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let collection = if schema == "public" {
        name.clone()
    } else {
        format!("{schema}.{name}")
    };
    Ok(Some(TableInfo {
        oid,
        sql: format!("{}.{}", quote_ident(&schema), quote_ident(&name)),
        qualified: format!("{schema}.{name}"),
        collection,
        columns,
        key,
    }))
}

/// The tables the source reads, in the configured order (`*`: by schema and name).
///
/// # Errors
///
/// A fatal error naming a table that does not exist.
pub(crate) async fn resolve_tables(
    client: &Client,
    tables: &Tables,
    who: &str,
) -> Result<Vec<TableInfo>, ConnectorError> {
    let oids: Vec<u32> = match tables {
        Tables::All => client
            .query(
                "SELECT c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg\\_%' ORDER BY n.nspname, c.relname",
                &[],
            )
            .await
            .map_err(|e| error(&format!("{who}: cannot list tables"), e))?
            .iter()
            .map(|r| r.get::<_, i64>(0) as u32)
            .collect(),
        Tables::List(names) => {
            let mut oids = Vec::with_capacity(names.len());
            for name in names {
                let row = client
                    .query_one("SELECT to_regclass($1)::oid::int8", &[name])
                    .await
                    .map_err(|e| error(&format!("{who}: cannot look up table {name}"), e))?;
                match row.get::<_, Option<i64>>(0) {
                    Some(oid) => oids.push(oid as u32),
                    None => {
                        return Err(ConnectorError::fatal(format!(
                            "{who}: table {name:?} does not exist (setting `tables`)"
                        )));
                    }
                }
            }
            oids
        }
    };
    let mut infos = Vec::with_capacity(oids.len());
    for oid in oids {
        if let Some(info) = table_by_oid(client, oid, who).await? {
            infos.push(info);
        }
    }
    Ok(infos)
}

/// Array type OID -> element type OID for every array type in the database.
///
/// # Errors
///
/// When the catalog cannot be read.
pub(crate) async fn array_types(
    client: &Client,
    who: &str,
) -> Result<BTreeMap<u32, u32>, ConnectorError> {
    Ok(client
        .query(
            "SELECT oid::int8, typelem::int8 FROM pg_type WHERE typcategory = 'A' AND typelem <> 0",
            &[],
        )
        .await
        .map_err(|e| error(&format!("{who}: cannot read the catalog"), e))?
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u32, r.get::<_, i64>(1) as u32))
        .collect())
}

/// Opens one connection with a configuration, running it on a task of its own until
/// its client is dropped; a failure is described in words.
pub type ConnectFn = std::sync::Arc<
    dyn Fn(
            &Config,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Client, String>> + Send>>
        + Send
        + Sync,
>;

/// For another user of PostgreSQL (the position store): the connection string `raw` (a
/// URL or key=value pairs, with `sslmode` and `sslrootcert` as the connectors take
/// them) as tokio-postgres's configuration, and a function opening connections with
/// its TLS settings, as the connectors do. `who` names the user in TLS errors.
///
/// # Errors
///
/// An unknown `sslmode`, or a string that is no connection string.
pub fn client_setup(raw: &str, who: &str) -> Result<(Config, ConnectFn), String> {
    let (rest, tls) = super::tls::split(raw)?;
    let mut pg: Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| describe(&e))?;
    pg.ssl_mode(tls.tokio_mode());
    let who = who.to_owned();
    let connect: ConnectFn = std::sync::Arc::new(move |config: &Config| {
        let (config, tls, who) = (config.clone(), tls.clone(), who.clone());
        Box::pin(async move {
            let client = match tls.mode {
                SslMode::Disable => {
                    let (client, connection) =
                        config.connect(NoTls).await.map_err(|e| describe(&e))?;
                    tokio::spawn(run(connection));
                    client
                }
                _ => {
                    let rustls = tls.client_config(&who).map_err(|e| e.to_string())?;
                    let (client, connection) = config
                        .connect(MakeRustlsConnect::new(rustls))
                        .await
                        .map_err(|e| describe(&e))?;
                    tokio::spawn(run(connection));
                    client
                }
            };
            Ok(client)
        })
    });
    Ok((pg, connect))
}
