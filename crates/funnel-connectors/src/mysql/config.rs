//! MySQL settings: parsing and validation (no I/O).

use funnel_core::typed::{FromSetting, Prefixed};
use regex::Regex;

use crate::settings::{parse_source, validated};
use crate::sql::destination::{Rules, parse_settings};
pub use crate::sql::{Columns, Positive};
use crate::{Settings, SettingsError};

/// A MySQL data source name: Go's `user:password@tcp(host:port)/database?...` (what
/// Conduit's connector takes) or a `mysql://user:password@host:port/database` URL.
#[derive(Clone, Debug)]
pub struct Dsn {
    /// As written.
    pub raw: String,
    /// User name.
    pub user: String,
    /// Password (empty: none).
    pub password: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The database (schema) the tables live in.
    pub database: String,
}

impl PartialEq for Dsn {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Dsn {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Connection options for mysql_async.
    pub(crate) fn opts(&self) -> mysql_async::Opts {
        let builder = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass((!self.password.is_empty()).then(|| self.password.clone()))
            .db_name(Some(self.database.clone()))
            .prefer_socket(false)
            .stmt_cache_size(256)
            // Sessions in UTC, so TIMESTAMP values read the same in the snapshot and
            // in the binlog (which stores them as Unix seconds).
            .setup(vec![
                "SET time_zone = '+00:00'".to_owned(),
                "SET NAMES utf8mb4".to_owned(),
            ]);
        builder.into()
    }
}

const DSN_HELP: &str =
    "use user:password@tcp(host:3306)/database (or mysql://user:password@host:3306/database)";

impl FromSetting for Dsn {
    fn from_setting(raw: &str) -> Result<Self, String> {
        parse_dsn(raw)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_dsn(raw: &str) -> Result<Dsn, String> {
    let text = raw.trim();
    if let Some(rest) = text.strip_prefix("mysql://") {
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (auth, rest),
            None => ("", rest),
        };
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        let database = path.split('?').next().unwrap_or("");
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        let (host, port) = host_port(hostport)?;
        return finish(
            raw,
            percent_decode(user),
            percent_decode(password),
            host,
            port,
            database,
        );
    }
    // Go's DSN: [user[:password]@][net[(addr)]]/dbname[?param=value&...]
    let Some(slash) = text.rfind('/') else {
        return Err(format!("{text:?} names no database; {DSN_HELP}"));
    };
    let (front, path) = (&text[..slash], &text[slash + 1..]);
    let database = path.split('?').next().unwrap_or("");
    let (auth, net) = match front.rfind('@') {
        Some(at) => (&front[..at], &front[at + 1..]),
        None => ("", front),
    };
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let addr = if net.is_empty() {
        "127.0.0.1:3306"
    } else {
        let Some(open) = net.find('(') else {
            return Err(format!("{net:?} is not a network address; {DSN_HELP}"));
        };
        let protocol = &net[..open];
        if protocol != "tcp" {
            return Err(format!(
                "only tcp connections are supported, not {protocol:?}; {DSN_HELP}"
            ));
        }
        net[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("{net:?} lacks its closing parenthesis; {DSN_HELP}"))?
    };
    let (host, port) = host_port(addr)?;
    finish(
        raw,
        user.to_owned(),
        password.to_owned(),
        host,
        port,
        database,
    )
}

fn host_port(addr: &str) -> Result<(String, u16), String> {
    match addr.rsplit_once(':') {
        Some((host, port)) => port
            .parse()
            .map(|p| (host.to_owned(), p))
            .map_err(|_| format!("{port:?} is not a port number; {DSN_HELP}")),
        None if addr.is_empty() => Ok(("127.0.0.1".to_owned(), 3306)),
        None => Ok((addr.to_owned(), 3306)),
    }
}

fn finish(
    raw: &str,
    user: String,
    password: String,
    host: String,
    port: u16,
    database: &str,
) -> Result<Dsn, String> {
    if database.is_empty() {
        return Err(format!("the DSN names no database; {DSN_HELP}"));
    }
    if host.is_empty() {
        return Err(format!("the DSN names no host; {DSN_HELP}"));
    }
    Ok(Dsn {
        raw: raw.to_owned(),
        user: if user.is_empty() {
            "root".to_owned()
        } else {
            user
        },
        password,
        host,
        port,
        database: percent_decode(database),
    })
}

/// The `tables` setting: comma-separated patterns applied in order; `*` includes every
/// table, `-regex` excludes the tables it matches, `+regex` or `regex` includes them
/// (each regex matches the whole table name).
#[derive(Clone, Debug)]
pub struct Tables(pub Vec<(bool, Regex)>);

impl PartialEq for Tables {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.0 == b.0 && a.1.as_str() == b.1.as_str())
    }
}

impl Tables {
    /// Whether `table` is selected.
    pub fn matches(&self, table: &str) -> bool {
        let mut selected = false;
        for (include, regex) in &self.0 {
            if regex.is_match(table) {
                selected = *include;
            }
        }
        selected
    }
}

impl FromSetting for Tables {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (include, pattern) = match part.as_bytes()[0] {
                b'-' => (false, &part[1..]),
                b'+' => (true, &part[1..]),
                _ => (true, part),
            };
            let pattern = if pattern == "*" { ".*" } else { pattern };
            let regex = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("{pattern:?} is not a regular expression: {e}"))?;
            patterns.push((include, regex));
        }
        if patterns.is_empty() {
            return Err("list at least one table (or regex), or * for all tables".to_owned());
        }
        Ok(Self(patterns))
    }
}

funnel_core::settings! {
    /// The mysql source's own settings (the SDK ones come on top).
    pub struct MysqlSourceSettings {
        /// Data source name: user:password@tcp(host:3306)/database, or
        /// mysql://user:password@host:3306/database.
        pub dsn: Dsn = "dsn",
        /// Comma list of table patterns, applied in order: * for all tables, regex or
        /// +regex to include, -regex to exclude (each matches the whole name).
        pub tables: Tables = "tables",
        /// Accepted for compatibility (Conduit's go-mysql canal logs); Funnel logs
        /// through its own logger.
        pub disable_canal_logs: bool = "disableCanalLogs" (default "false"),
        /// Rows read per query while taking the snapshot (keyset pages).
        pub fetch_size: Positive = "fetchSize" (default "10000"),
        /// tableConfig.<table>.sortingColumn: the column that orders the snapshot of a
        /// table without primary key (its values should be unique).
        pub table_config: Prefixed = "tableConfig.*",
        /// Snapshot tables with neither primary key nor sorting column (in pages by
        /// offset; a restart reads such a table again from its start).
        pub unsafe_snapshot: bool = "unsafeSnapshot" (default "false"),
    }
}

/// The validated settings of a mysql source.
#[derive(Clone, Debug)]
pub struct MysqlSourceConfig {
    /// `dsn` (required).
    pub dsn: Dsn,
    /// `tables` (required).
    pub tables: Tables,
    /// `fetchSize` (10000).
    pub fetch_size: usize,
    /// `tableConfig.<table>.sortingColumn`: table -> column.
    pub sorting_columns: Vec<(String, String)>,
    /// `unsafeSnapshot` (false).
    pub unsafe_snapshot: bool,
    /// Records per read at most (`sdk.batch.size`, default 1000).
    pub batch_size: usize,
}

/// Parses and validates mysql source settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<MysqlSourceConfig, Vec<SettingsError>> {
    let (own, sdk) = parse_source::<MysqlSourceSettings>(settings)?;
    validated(|errors| {
        let mut sorting_columns = Vec::new();
        for (key, value) in &own.table_config.0 {
            match key.strip_suffix(".sortingColumn") {
                Some(table) if !table.is_empty() && !value.trim().is_empty() => {
                    sorting_columns.push((table.to_owned(), value.trim().to_owned()));
                }
                _ => errors.push(SettingsError::new(
                    format!("tableConfig.{key}"),
                    "unrecognized parameter: the only table setting is tableConfig.<table>.sortingColumn, \
                     naming a column",
                )),
            }
        }
        MysqlSourceConfig {
            dsn: own.dsn,
            tables: own.tables,
            fetch_size: own.fetch_size.0,
            sorting_columns,
            unsafe_snapshot: own.unsafe_snapshot,
            batch_size: sdk.batch_size,
        }
    })
}

funnel_core::settings! {
    /// The mysql destination's own settings (the shared SQL destination ones and the
    /// SDK ones come on top).
    pub struct MysqlDestinationSettings {
        /// Data source name: user:password@tcp(host:3306)/database, or
        /// mysql://user:password@host:3306/database.
        pub dsn: Dsn = "dsn",
    }
}

/// The validated settings of a mysql destination.
#[derive(Clone, Debug)]
pub struct MysqlDestinationConfig {
    /// `dsn` (required).
    pub dsn: Dsn,
    /// `table`, `key` and `exactlyOnce`: what the shared SQL destination reads.
    pub(crate) rules: Rules,
}

/// Parses and validates mysql destination settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<MysqlDestinationConfig, Vec<SettingsError>> {
    let (own, rules) = parse_settings::<MysqlDestinationSettings>(settings)?;
    Ok(MysqlDestinationConfig {
        dsn: own.dsn,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sql::TableName;
    use funnel_core::settings_of as settings;

    #[test]
    fn go_dsns_and_urls_parse_to_the_same_connection() {
        let parts = |d: &Dsn| {
            (
                d.user.clone(),
                d.password.clone(),
                d.host.clone(),
                d.port,
                d.database.clone(),
            )
        };
        let expected = (
            "app".to_owned(),
            "s3cr%et".to_owned(),
            "db.local".to_owned(),
            3307,
            "shop".to_owned(),
        );
        let go = parse_dsn("app:s3cr%et@tcp(db.local:3307)/shop?parseTime=true").unwrap();
        assert_eq!(parts(&go), expected);
        let url = parse_dsn("mysql://app:s3cr%25et@db.local:3307/shop").unwrap();
        assert_eq!(parts(&url), expected);
        let bare = parse_dsn("root@tcp(127.0.0.1)/test").unwrap();
        assert_eq!((bare.port, bare.password.as_str()), (3306, ""));
        assert!(parse_dsn("root@tcp(127.0.0.1:3306)/").is_err());
        assert!(parse_dsn("root@unix(/tmp/s)/test").is_err());
        assert!(parse_dsn("root@tcp(h:x)/test").is_err());
    }

    #[test]
    fn table_patterns_apply_in_order_and_match_whole_names() {
        let t = Tables::from_setting("*, -.*meta$, wp_postmeta").unwrap();
        assert!(t.matches("users"));
        assert!(!t.matches("usermeta"));
        assert!(t.matches("wp_postmeta"));
        let t = Tables::from_setting("orders").unwrap();
        assert!(t.matches("orders"));
        assert!(!t.matches("orders_old"));
        assert!(Tables::from_setting("(").is_err());
        assert!(Tables::from_setting(" , ").is_err());
    }

    #[test]
    fn source_defaults_follow_conduit_and_bad_settings_are_reported_with_their_keys() {
        let c = validate_source(&settings(&[
            ("dsn", "root@tcp(127.0.0.1:3306)/test"),
            ("tables", "a,b"),
            ("tableConfig.a.sortingColumn", "created"),
        ]))
        .unwrap();
        assert_eq!(c.fetch_size, 10_000);
        assert!(!c.unsafe_snapshot);
        assert_eq!(
            c.sorting_columns,
            vec![("a".to_owned(), "created".to_owned())]
        );
        assert_eq!(c.batch_size, 1000);
        let errors =
            validate_source(&settings(&[("fetchSize", "0"), ("surprise", "1")])).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["dsn", "tables", "fetchSize", "surprise"]);
        let errors = validate_source(&settings(&[
            ("dsn", "root@tcp(127.0.0.1:3306)/test"),
            ("tables", "a"),
            ("tableConfig.a.other", "x"),
        ]))
        .unwrap_err();
        assert_eq!(errors[0].setting, "tableConfig.a.other");
    }

    #[test]
    fn destination_defaults_to_the_collection_and_the_record_key() {
        let c =
            validate_destination(&settings(&[("dsn", "root@tcp(127.0.0.1:3306)/test")])).unwrap();
        assert_eq!(
            c.rules.table,
            TableName::Metadata("opencdc.collection".into())
        );
        assert!(c.rules.key.is_empty());
        assert!(!c.rules.exactly_once);
    }
}
