//! What the SQL connectors (postgres, mysql) share: the `table` setting, the record
//! key as columns, the order of source positions for their exactly-once mode, the
//! destination's batch rules (`destination`) and the source's reader task
//! (`reader`).

pub(crate) mod destination;
pub(crate) mod reader;

use std::cmp::Ordering;

use funnel_core::typed::FromSetting;
use funnel_record::{Data, Record, StructuredData, Value};

/// A count that must be at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Positive(pub usize);

impl FromSetting for Positive {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match usize::from_setting(raw)? {
            0 => Err("must be greater than 0".to_owned()),
            n => Ok(Self(n)),
        }
    }
}

/// A comma list of column names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns(pub Vec<String>);

impl FromSetting for Columns {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Ok(Self(crate::settings::comma_list(raw)))
    }
}

/// Where a destination writes a record.
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

impl FromSetting for TableName {
    fn from_setting(raw: &str) -> Result<Self, String> {
        table_name(raw)
    }
}

impl TableName {
    /// The table of `record`, or why it has none (a message naming the `table`
    /// setting), prefixed with `who`.
    pub(crate) fn of(&self, record: &Record, who: &str) -> Result<String, String> {
        match self {
            Self::Literal(name) => Ok(name.clone()),
            Self::Metadata(key) => match record.metadata.get(key) {
                Some(name) => Ok(name.to_owned()),
                None => Err(format!(
                    "{who}: the record has no metadata {key:?} to name its table (setting `table`)"
                )),
            },
            Self::Template(template) => match template.0.render(record) {
                Ok(name) if !name.trim().is_empty() => Ok(name.trim().to_owned()),
                Ok(_) => Err(format!(
                    "{who}: the table template rendered an empty name (setting `table`)"
                )),
                Err(e) => Err(format!(
                    "{who}: the table template failed (setting `table`): {e}"
                )),
            },
        }
    }
}

/// Parses the `table` setting: a table name, a metadata lookup (`{{ index .Metadata
/// "key" }}` or `{{ .Metadata.key }}`, read directly), or any other Go template.
pub(crate) fn table_name(raw: &str) -> Result<TableName, String> {
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

/// The record's key as column -> value: the `key` setting's columns (taken from the
/// record key, or from the payload), or the fields of a structured record key.
pub(crate) fn record_key(
    record: &Record,
    columns: &[String],
) -> Result<Option<StructuredData>, String> {
    let structured_key = match &record.key {
        Some(Data::Structured(k)) => Some(k.clone()),
        Some(Data::Raw(raw)) if !raw.is_empty() => match Value::from_json(raw) {
            Ok(Value::Map(map)) => Some(map),
            _ if columns.len() == 1 => Some(
                [(
                    columns[0].clone(),
                    Value::String(String::from_utf8_lossy(raw).into()),
                )]
                .into_iter()
                .collect(),
            ),
            _ => {
                return Err(
                    "the record key is raw data; set `key` to the key column to write it"
                        .to_owned(),
                );
            }
        },
        _ => None,
    };
    if columns.is_empty() {
        return Ok(structured_key);
    }
    let sources = [
        structured_key.as_ref(),
        match &record.payload.after {
            Some(Data::Structured(d)) => Some(d),
            _ => None,
        },
        match &record.payload.before {
            Some(Data::Structured(d)) => Some(d),
            _ => None,
        },
    ];
    let mut key = StructuredData::new();
    for column in columns {
        let value = sources
            .iter()
            .flatten()
            .find_map(|d| d.get(column))
            .ok_or_else(|| {
                format!("key column {column:?} is neither in the record key nor in its payload")
            })?;
        key.insert(column.clone(), value.clone());
    }
    Ok(Some(key))
}

/// The order of two positions of one source, as the exactly-once destinations compare
/// them: positions made only of decimal digits (the generator's counters, the bare
/// offsets of earlier file source versions) compare as numbers; anything else (the
/// postgres, mysql and file sources' positions among them) compares byte by byte.
pub fn compare_positions(a: &[u8], b: &[u8]) -> Ordering {
    let decimal = |p: &[u8]| !p.is_empty() && p.iter().all(u8::is_ascii_digit);
    if decimal(a) && decimal(b) {
        let strip = |p: &[u8]| -> usize { p.iter().take_while(|&&c| c == b'0').count() };
        let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_setting_is_a_name_or_a_metadata_lookup() {
        assert_eq!(
            table_name("{{ index .Metadata \"opencdc.collection\" }}"),
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

    #[test]
    fn decimal_positions_compare_as_numbers_and_others_byte_by_byte() {
        assert_eq!(compare_positions(b"9", b"10"), Ordering::Less);
        assert_eq!(compare_positions(b"010", b"10"), Ordering::Equal);
        assert_eq!(compare_positions(b"b", b"a"), Ordering::Greater);
    }
}
