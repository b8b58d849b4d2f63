//! Postgres settings: parsing and validation (no I/O).

use std::str::FromStr;

use crate::settings::{SettingsReader, sdk_destination, sdk_source};
use crate::{Settings, SettingsError};

/// Which tables the source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tables {
    /// `*`: every table of the database outside the system schemas.
    All,
    /// These tables (`name` or `schema.name`), in the order given.
    List(Vec<String>),
}

/// The validated settings of a postgres source.
#[derive(Clone, Debug)]
pub struct PostgresSourceConfig {
    /// `url` (required): the connection URL or key=value string.
    pub url: String,
    /// The parsed connection settings.
    pub(crate) pg: tokio_postgres::Config,
    /// `tables` (required): a comma list, or `*`.
    pub tables: Tables,
    /// `snapshotMode` (`initial`): take a snapshot before streaming changes.
    pub snapshot: bool,
    /// `logrepl.publicationName` (`conduitpub`).
    pub publication: String,
    /// `logrepl.slotName` (`conduitslot`).
    pub slot: String,
    /// `logrepl.autoCleanup` (`true`): [`cleanup`](super::cleanup) drops the slot and
    /// the publication.
    pub auto_cleanup: bool,
    /// `snapshot.fetchSize` (50000): accepted and validated for compatibility; the
    /// snapshot streams each table with `COPY`, which has no fetch size.
    pub fetch_size: usize,
    /// Records per read at most (`sdk.batch.size`, default 1000).
    pub batch_size: usize,
}

/// Where the destination writes a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableName {
    /// Always this table.
    Literal(String),
    /// The table named by this metadata key of the record.
    Metadata(String),
    /// Any other Go template, rendered on each record.
    Template(TableTemplate),
}

/// A parsed `table` template; two are equal when their texts are.
#[derive(Clone, Debug)]
pub struct TableTemplate(pub funnel_template::Template);

impl PartialEq for TableTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.0.source() == other.0.source()
    }
}

impl Eq for TableTemplate {}

/// The validated settings of a postgres destination.
#[derive(Clone, Debug)]
pub struct PostgresDestinationConfig {
    /// `url` (required).
    pub url: String,
    /// The parsed connection settings.
    pub(crate) pg: tokio_postgres::Config,
    /// `table` (`{{ index .Metadata "opencdc.collection" }}`).
    pub table: TableName,
    /// `key`: the key columns (default: the fields of the record's key).
    pub key: Vec<String>,
    /// `exactlyOnce` (`false`, Funnel extension): store the last written position in
    /// `funnel_positions` in the same transaction, and skip what it covers on restart.
    pub exactly_once: bool,
}

/// The default of the destination's `table` setting.
pub(crate) const DEFAULT_TABLE: &str = "{{ index .Metadata \"opencdc.collection\" }}";

fn url(r: &mut SettingsReader<'_>) -> Option<(String, tokio_postgres::Config)> {
    let raw = r.required_str("url")?;
    match tokio_postgres::Config::from_str(raw) {
        Ok(pg) => {
            if pg.get_hosts().is_empty() {
                r.error(
                    "url",
                    "the URL names no host (postgres://user@host:5432/db)",
                );
                return None;
            }
            Some((raw.to_owned(), pg))
        }
        Err(e) => {
            r.error(
                "url",
                format!("not a PostgreSQL connection URL ({e}); use postgres://user:password@host:5432/database"),
            );
            None
        }
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Parses and validates postgres source settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<PostgresSourceConfig, Vec<SettingsError>> {
    let mut r = SettingsReader::new(settings);
    let sdk = sdk_source(&mut r);
    let url = url(&mut r);
    let tables = match r.required_str("tables") {
        Some("*") => Some(Tables::All),
        Some(list) => {
            let names: Vec<String> = list
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            if names.is_empty() {
                r.error("tables", "list at least one table, or * for all tables");
                None
            } else {
                Some(Tables::List(names))
            }
        }
        None => None,
    };
    let snapshot = r.one_of("snapshotMode", &["initial", "never"]) != Some("never");
    r.one_of("cdcMode", &["auto", "logrepl"]);
    let publication = r
        .str("logrepl.publicationName")
        .unwrap_or("conduitpub")
        .to_owned();
    if !is_identifier(&publication) {
        r.error(
            "logrepl.publicationName",
            format!(
                "{publication:?} is not a valid name (lower-case letters, digits and _, at most 63)"
            ),
        );
    }
    let slot = r
        .str("logrepl.slotName")
        .unwrap_or("conduitslot")
        .to_owned();
    if !is_identifier(&slot) {
        r.error(
            "logrepl.slotName",
            format!("{slot:?} is not a valid replication slot name (lower-case letters, digits and _, at most 63)"),
        );
    }
    let auto_cleanup = r.bool("logrepl.autoCleanup").unwrap_or(true);
    r.bool("logrepl.withAvroSchema");
    let fetch_size = match r.count("snapshot.fetchSize") {
        Some(0) => {
            r.error("snapshot.fetchSize", "must be greater than 0");
            1
        }
        Some(n) => n,
        None => 50_000,
    };
    r.finish()?;
    let (Some((url, pg)), Some(tables)) = (url, tables) else {
        // `finish` fails when either is missing or invalid.
        return Err(vec![SettingsError::new(
            "url",
            "required parameter is not provided",
        )]);
    };
    Ok(PostgresSourceConfig {
        url,
        pg,
        tables,
        snapshot,
        publication,
        slot,
        auto_cleanup,
        fetch_size,
        batch_size: sdk.batch_size,
    })
}

/// Parses the `table` setting: a table name, a metadata lookup (`{{ index .Metadata
/// "key" }}` or `{{ .Metadata.key }}`, read directly), or any other Go template.
fn table_name(raw: &str) -> Result<TableName, String> {
    match fixed_table_name(raw) {
        Some(name) => Ok(name),
        None => funnel_template::Template::parse(raw)
            .map(|t| TableName::Template(TableTemplate(t)))
            .map_err(|e| format!("{raw:?}: the table template does not parse: {e}")),
    }
}

/// A table name or a plain metadata lookup; `None` for any other template.
fn fixed_table_name(raw: &str) -> Option<TableName> {
    let Some(inner) = raw
        .trim()
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
    else {
        if raw.contains("{{") {
            return None;
        }
        return Some(TableName::Literal(raw.trim().to_owned()));
    };
    let inner = inner
        .trim()
        .trim_start_matches('-')
        .trim_end_matches('-')
        .trim();
    let words: Vec<&str> = inner.split_whitespace().collect();
    match words.as_slice() {
        ["index", ".Metadata", key]
            if key.len() >= 2 && key.starts_with('"') && key.ends_with('"') =>
        {
            Some(TableName::Metadata(key[1..key.len() - 1].to_owned()))
        }
        [path] if path.starts_with(".Metadata.") => {
            Some(TableName::Metadata(path[".Metadata.".len()..].to_owned()))
        }
        _ => None,
    }
}

/// Parses and validates postgres destination settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<PostgresDestinationConfig, Vec<SettingsError>> {
    let mut r = SettingsReader::new(settings);
    sdk_destination(&mut r);
    let url = url(&mut r);
    let table = match table_name(r.str("table").unwrap_or(DEFAULT_TABLE)) {
        Ok(t) => Some(t),
        Err(message) => {
            r.error("table", message);
            None
        }
    };
    let key = r
        .str("key")
        .map(|k| {
            k.split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let exactly_once = r.bool("exactlyOnce").unwrap_or(false);
    r.finish()?;
    let (Some((url, pg)), Some(table)) = (url, table) else {
        return Err(vec![SettingsError::new(
            "url",
            "required parameter is not provided",
        )]);
    };
    Ok(PostgresDestinationConfig {
        url,
        pg,
        table,
        key,
        exactly_once,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn source_defaults_follow_conduit() {
        let c = validate_source(&settings(&[
            ("url", "postgres://postgres@127.0.0.1:5432/test"),
            ("tables", "users, orders"),
        ]))
        .unwrap();
        assert_eq!(
            c.tables,
            Tables::List(vec!["users".into(), "orders".into()])
        );
        assert!(c.snapshot);
        assert_eq!(
            (c.publication.as_str(), c.slot.as_str()),
            ("conduitpub", "conduitslot")
        );
        assert!(c.auto_cleanup);
        assert_eq!(c.fetch_size, 50_000);
        assert_eq!(c.batch_size, 1000);
    }

    #[test]
    fn bad_source_settings_are_all_reported_with_their_keys() {
        let errors = validate_source(&settings(&[
            ("snapshotMode", "sometimes"),
            ("logrepl.slotName", "Bad-Slot"),
            ("snapshot.fetchSize", "0"),
            ("surprise", "1"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            keys,
            [
                "url",
                "tables",
                "snapshotMode",
                "logrepl.slotName",
                "snapshot.fetchSize",
                "surprise"
            ]
        );
    }

    #[test]
    fn the_table_setting_is_a_name_or_a_metadata_lookup() {
        assert_eq!(
            table_name(DEFAULT_TABLE),
            Ok(TableName::Metadata("opencdc.collection".into()))
        );
        assert_eq!(
            table_name("{{ .Metadata.table }}"),
            Ok(TableName::Metadata("table".into()))
        );
        assert_eq!(
            table_name("public.t"),
            Ok(TableName::Literal("public.t".into()))
        );
        assert!(matches!(
            table_name("{{ printf \"%s_copy\" (index .Metadata \"opencdc.collection\") }}"),
            Ok(TableName::Template(_))
        ));
        assert!(table_name("{{ printf ").is_err());
    }
}
