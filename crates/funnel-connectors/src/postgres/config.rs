//! Postgres settings: parsing and validation (no I/O).

use std::str::FromStr;

use funnel_core::typed::FromSetting;

use crate::settings::{non_empty_list, parse_source};
use crate::sql::destination::{Rules, parse_settings};
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
    /// TLS: `sslmode` and `sslrootcert` of the URL.
    pub(crate) tls: super::tls::Tls,
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

pub use crate::sql::{Columns, Positive, TableName};

/// The validated settings of a postgres destination.
#[derive(Clone, Debug)]
pub struct PostgresDestinationConfig {
    /// `url` (required).
    pub url: String,
    /// The parsed connection settings.
    pub(crate) pg: tokio_postgres::Config,
    /// TLS: `sslmode` and `sslrootcert` of the URL.
    pub(crate) tls: super::tls::Tls,
    /// `table`, `key` and `exactlyOnce`: what the shared SQL destination reads.
    pub(crate) rules: Rules,
}

/// A connection URL (or key=value string) and its parsed form.
#[derive(Clone, Debug)]
pub struct PgUrl {
    /// As written.
    pub raw: String,
    /// Parsed.
    pub(crate) pg: tokio_postgres::Config,
    /// `sslmode` and `sslrootcert`.
    pub(crate) tls: super::tls::Tls,
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl FromSetting for PgUrl {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let (rest, tls) = super::tls::split(raw)?;
        match tokio_postgres::Config::from_str(&rest) {
            Ok(pg) if pg.get_hosts().is_empty() => {
                Err("the URL names no host (postgres://user@host:5432/db)".to_owned())
            }
            Ok(mut pg) => {
                pg.ssl_mode(tls.tokio_mode());
                Ok(Self {
                    raw: raw.to_owned(),
                    pg,
                    tls,
                })
            }
            Err(e) => Err(format!(
                "not a PostgreSQL connection URL ({e}); use postgres://user:password@host:5432/database"
            )),
        }
    }
}

impl FromSetting for Tables {
    fn from_setting(raw: &str) -> Result<Self, String> {
        if raw == "*" {
            return Ok(Self::All);
        }
        let names = non_empty_list(raw, "list at least one table, or * for all tables")?;
        Ok(Self::List(names))
    }
}

/// `snapshotMode`: whether the source reads every row before streaming changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMode(pub bool);

impl FromSetting for SnapshotMode {
    fn from_setting(raw: &str) -> Result<Self, String> {
        one_of(raw, &["initial", "never"]).map(|mode| Self(mode == "initial"))
    }
}

/// `cdcMode`: how changes are streamed (always logical replication).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdcMode;

impl FromSetting for CdcMode {
    fn from_setting(raw: &str) -> Result<Self, String> {
        one_of(raw, &["auto", "logrepl"]).map(|_| Self)
    }
}

/// `raw` when it is one of `allowed`.
fn one_of<'a>(raw: &'a str, allowed: &[&str]) -> Result<&'a str, String> {
    if allowed.contains(&raw) {
        Ok(raw)
    } else {
        Err(format!(
            "{raw:?} value must be one of: {}",
            allowed.join(", ")
        ))
    }
}

/// A publication name: lower-case letters, digits and `_`, at most 63 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicationName(pub String);

impl FromSetting for PublicationName {
    fn from_setting(raw: &str) -> Result<Self, String> {
        identifier(raw, "name").map(Self)
    }
}

/// `raw` when it is a valid PostgreSQL identifier; else why not, calling it `what`.
fn identifier(raw: &str, what: &str) -> Result<String, String> {
    if is_identifier(raw) {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?} is not a valid {what} (lower-case letters, digits and _, at most 63)"
        ))
    }
}

/// A replication slot name: lower-case letters, digits and `_`, at most 63 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotName(pub String);

impl FromSetting for SlotName {
    fn from_setting(raw: &str) -> Result<Self, String> {
        identifier(raw, "replication slot name").map(Self)
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

funnel_core::settings! {
    /// The postgres source's own settings (the SDK ones come on top).
    pub struct PostgresSourceSettings {
        /// Connection URL: postgres://user:password@host:5432/database.
        pub url: PgUrl = "url",
        /// Comma list of tables to read (name or schema.name), or * for all tables.
        pub tables: Tables = "tables",
        /// initial: read every row before streaming changes; never: only changes.
        pub snapshot_mode: SnapshotMode = "snapshotMode" (default "initial"),
        /// auto or logrepl: changes are streamed with logical replication (pgoutput).
        pub cdc_mode: CdcMode = "cdcMode" (default "auto"),
        /// Publication to stream; created when missing.
        pub publication: PublicationName = "logrepl.publicationName" (default "conduitpub"),
        /// Logical replication slot; created when missing.
        pub slot: SlotName = "logrepl.slotName" (default "conduitslot"),
        /// Drop the slot and the publication when the connector is deleted.
        pub auto_cleanup: bool = "logrepl.autoCleanup" (default "true"),
        /// Accepted for compatibility; Funnel attaches no schema.
        pub with_avro_schema: bool = "logrepl.withAvroSchema" (default "true"),
        /// Rows fetched per round trip while taking the snapshot.
        pub fetch_size: Positive = "snapshot.fetchSize" (default "50000"),
    }
}

/// Parses and validates postgres source settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<PostgresSourceConfig, Vec<SettingsError>> {
    let (own, sdk) = parse_source::<PostgresSourceSettings>(settings)?;
    Ok(PostgresSourceConfig {
        url: own.url.raw,
        pg: own.url.pg,
        tls: own.url.tls,
        tables: own.tables,
        snapshot: own.snapshot_mode.0,
        publication: own.publication.0,
        slot: own.slot.0,
        auto_cleanup: own.auto_cleanup,
        fetch_size: own.fetch_size.0,
        batch_size: sdk.batch_size,
    })
}

funnel_core::settings! {
    /// The postgres destination's own settings (the shared SQL destination ones and
    /// the SDK ones come on top).
    pub struct PostgresDestinationSettings {
        /// Connection URL: postgres://user:password@host:5432/database.
        pub url: PgUrl = "url",
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
    let (own, rules) = parse_settings::<PostgresDestinationSettings>(settings)?;
    Ok(PostgresDestinationConfig {
        url: own.url.raw,
        pg: own.url.pg,
        tls: own.url.tls,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::destination::SqlDestinationSettings;
    use crate::sql::table_name;

    use funnel_core::settings_of as settings;
    use funnel_core::typed::SettingsStruct;

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
    fn the_table_setting_defaults_to_a_lookup_of_the_collection_metadata() {
        assert_eq!(
            table_name(SqlDestinationSettings::SPEC[0].default.unwrap()),
            Ok(TableName::Metadata("opencdc.collection".into()))
        );
    }
}
