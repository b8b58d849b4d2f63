//! The type mapping: MySQL values (from the snapshot's binary protocol and from binlog
//! row events) to record [`Value`]s, and record values back to MySQL parameters.
//!
//! Both the snapshot and the binlog are read with the table's column types from
//! `information_schema` (a [`Kind`] per column), so one function maps both and a row
//! reads the same either way.

use bytes::Bytes;
use funnel_record::{Timestamp, Value};
use mysql_async::Value as My;

/// How a column's values are mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An integer type; `bytes` is its width (1, 2, 3, 4, 8).
    Int { unsigned: bool, bytes: u8 },
    /// DECIMAL / NUMERIC: text with every digit.
    Decimal,
    /// FLOAT (single precision).
    Float,
    /// DOUBLE.
    Double,
    /// DATE.
    Date,
    /// DATETIME.
    DateTime,
    /// TIMESTAMP.
    Timestamp,
    /// TIME.
    Time,
    /// YEAR.
    Year,
    /// Character data in a character set (its name, as `information_schema` gives it).
    Text { latin1: bool },
    /// BINARY, VARBINARY, BLOB, and anything with the `binary` character set.
    Binary,
    /// ENUM, with its values in order.
    Enum(Vec<String>),
    /// SET, with its values in order.
    Set(Vec<String>),
    /// BIT(n).
    Bit,
    /// JSON (MySQL's binary JSON, or MariaDB's LONGTEXT with `json_valid`).
    Json,
    /// Anything else (spatial types): its bytes.
    Other,
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ColumnInfo {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

impl Kind {
    /// The kind of a column from `information_schema.COLUMNS` (`DATA_TYPE`,
    /// `COLUMN_TYPE`, `CHARACTER_SET_NAME`), and whether a `json_valid` check or the
    /// type names it JSON.
    pub(crate) fn from_schema(
        data_type: &str,
        column_type: &str,
        charset: Option<&str>,
        json: bool,
    ) -> Self {
        let unsigned = column_type.contains("unsigned");
        let int = |bytes| Kind::Int { unsigned, bytes };
        match data_type {
            "tinyint" => int(1),
            "smallint" => int(2),
            "mediumint" => int(3),
            "int" | "integer" => int(4),
            "bigint" => int(8),
            "decimal" | "numeric" => Kind::Decimal,
            "float" => Kind::Float,
            "double" | "real" => Kind::Double,
            "date" => Kind::Date,
            "datetime" => Kind::DateTime,
            "timestamp" => Kind::Timestamp,
            "time" => Kind::Time,
            "year" => Kind::Year,
            "bit" => Kind::Bit,
            "json" => Kind::Json,
            "enum" => Kind::Enum(list_values(column_type)),
            "set" => Kind::Set(list_values(column_type)),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
                if json {
                    Kind::Json
                } else {
                    match charset {
                        None | Some("binary") => Kind::Binary,
                        Some(cs) => Kind::Text {
                            latin1: cs == "latin1",
                        },
                    }
                }
            }
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Kind::Binary
            }
            _ => Kind::Other,
        }
    }
}

/// The quoted values of `enum('a','b''c')` / `set(...)`.
fn list_values(column_type: &str) -> Vec<String> {
    let Some(inner) = column_type
        .find('(')
        .and_then(|i| column_type[i + 1..].strip_suffix(')'))
    else {
        return Vec::new();
    };
    let mut values = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    value.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                }
                c => value.push(c),
            }
        }
        values.push(value);
    }
    values
}

/// A MySQL value of a column of `kind` as a record value.
pub(crate) fn to_value(kind: &Kind, value: My) -> Value {
    match (kind, value) {
        (_, My::NULL) => Value::Null,
        (Kind::Int { unsigned, bytes }, My::Int(i)) => {
            if *unsigned && i < 0 {
                // A binlog without signedness metadata: the bits of an unsigned value.
                let bits = u64::from_le_bytes(i.to_le_bytes());
                let masked = if *bytes >= 8 {
                    bits
                } else {
                    bits & ((1u64 << (u32::from(*bytes) * 8)) - 1)
                };
                uint(masked)
            } else {
                Value::Int(i)
            }
        }
        (Kind::Int { .. } | Kind::Year, My::UInt(u)) => uint(u),
        (Kind::Year, My::Int(i)) => Value::Int(i),
        (Kind::Year, My::Bytes(b)) => std::str::from_utf8(&b)
            .ok()
            .and_then(|t| t.parse().ok())
            .map_or_else(|| Value::String(lossy(b).into()), Value::Int),
        (Kind::Float, My::Float(f)) => Value::Float(f32_to_f64(f)),
        (Kind::Float | Kind::Double, My::Double(d)) => Value::Float(d),
        (Kind::Double, My::Float(f)) => Value::Float(f64::from(f)),
        (Kind::Date, My::Date(y, m, d, ..)) => {
            Value::String(format!("{y:04}-{m:02}-{d:02}").into())
        }
        (Kind::DateTime | Kind::Timestamp, My::Date(y, mo, d, h, mi, s, us)) => {
            Value::String(datetime(i64::from(y), mo, d, h, mi, s, us).into())
        }
        // TIMESTAMP in the binlog: Unix seconds, with a fraction.
        (Kind::Timestamp, My::Bytes(b)) => {
            let text = lossy(b);
            Value::String(timestamp_text(&text).unwrap_or(text).into())
        }
        (Kind::Timestamp, My::Int(i)) => {
            let text = i.to_string();
            Value::String(timestamp_text(&text).unwrap_or(text).into())
        }
        (Kind::Time, My::Time(negative, days, h, m, s, us)) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if negative { "-" } else { "" };
            Value::String(format!("{sign}{hours:02}:{m:02}:{s:02}{}", fraction(us)).into())
        }
        (Kind::Text { latin1 }, My::Bytes(b)) => Value::String(if *latin1 {
            b.iter().map(|&c| char::from(c)).collect()
        } else {
            lossy(b).into()
        }),
        (Kind::Decimal, My::Bytes(b)) => Value::String(lossy(b).into()),
        (Kind::Enum(values), My::Int(i)) => Value::String(
            usize::try_from(i - 1)
                .ok()
                .and_then(|i| values.get(i))
                .cloned()
                .unwrap_or_default()
                .into(),
        ),
        (Kind::Enum(_) | Kind::Set(_), My::Bytes(b)) if is_text_list(kind, &b) => {
            Value::String(lossy(b).into())
        }
        (Kind::Set(values), My::Bytes(b)) => {
            let mut bits = 0u64;
            for (i, byte) in b.iter().enumerate().take(8) {
                bits |= u64::from(*byte) << (8 * i);
            }
            let names: Vec<&str> = values
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, v)| v.as_str())
                .collect();
            Value::String(names.join(",").into())
        }
        (Kind::Bit, My::Bytes(b)) => {
            let mut n = 0u64;
            for byte in b.iter().rev().take(8).rev() {
                n = (n << 8) | u64::from(*byte);
            }
            uint(n)
        }
        (Kind::Json, My::Bytes(b)) => match Value::from_json(&b) {
            Ok(v) => v,
            Err(_) => Value::String(lossy(b).into()),
        },
        (Kind::Binary | Kind::Other, My::Bytes(b)) => Value::Bytes(Bytes::from(b)),
        // Anything the mapping did not expect (a column type changed under a running
        // source): the value as it came.
        (_, My::Bytes(b)) => match String::from_utf8(b) {
            Ok(s) => Value::String(s.into()),
            Err(e) => Value::Bytes(Bytes::from(e.into_bytes())),
        },
        (_, My::Int(i)) => Value::Int(i),
        (_, My::UInt(u)) => uint(u),
        (_, My::Float(f)) => Value::Float(f32_to_f64(f)),
        (_, My::Double(d)) => Value::Float(d),
        (_, My::Date(y, mo, d, h, mi, s, us)) => {
            Value::String(datetime(i64::from(y), mo, d, h, mi, s, us).into())
        }
        (_, My::Time(negative, days, h, m, s, us)) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if negative { "-" } else { "" };
            Value::String(format!("{sign}{hours:02}:{m:02}:{s:02}{}", fraction(us)).into())
        }
    }
}

/// The snapshot reads ENUM and SET as their text; the binlog as numbers (an index, a
/// bitmask). A SET bitmask is at most 8 bytes and never valid text of its values...
/// except by accident, so text is recognised by being one of the values (or a comma
/// list of them).
fn is_text_list(kind: &Kind, bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    match kind {
        Kind::Enum(values) => text.is_empty() || values.iter().any(|v| v == text),
        Kind::Set(values) => {
            text.is_empty() || text.split(',').all(|part| values.iter().any(|v| v == part))
        }
        _ => false,
    }
}

fn uint(u: u64) -> Value {
    i64::try_from(u).map_or(Value::Uint(u), Value::Int)
}

fn lossy(b: Vec<u8>) -> String {
    match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// A FLOAT as the double its shortest text names (`0.1f32` -> `0.1`, not
/// `0.10000000149011612`).
fn f32_to_f64(f: f32) -> f64 {
    if f.is_finite() {
        f.to_string().parse().unwrap_or(f64::from(f))
    } else {
        f64::from(f)
    }
}

/// `.ffffff` without trailing zeros, or nothing for whole seconds.
fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let text = format!(".{micros:06}");
    text.trim_end_matches('0').to_owned()
}

/// RFC 3339 in UTC: `2024-01-02T03:04:05.123456Z` (zero dates keep MySQL's text).
fn datetime(y: i64, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> String {
    if mo == 0 || d == 0 {
        return format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    }
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}Z",
        fraction(us)
    )
}

/// Unix seconds with an optional `.ffffff` fraction as RFC 3339 in UTC.
fn timestamp_text(text: &str) -> Option<String> {
    let (secs, micros) = match text.split_once('.') {
        Some((s, f)) if f.len() <= 6 => (
            s.parse::<i64>().ok()?,
            format!("{f:0<6}").parse::<u32>().ok()?,
        ),
        Some(_) => return None,
        None => (text.parse::<i64>().ok()?, 0),
    };
    if secs == 0 && micros == 0 {
        return Some("0000-00-00 00:00:00".to_owned());
    }
    let (y, mo, d, h, mi, s) = Timestamp::new(secs, 0)?.to_utc();
    Some(datetime(
        y,
        u8::try_from(mo).ok()?,
        u8::try_from(d).ok()?,
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
        micros,
    ))
}

/// A record value as a parameter for a column of `kind` (`None`: the column is not
/// known, the value goes as it is).
pub(crate) fn to_param(kind: Option<&Kind>, value: &Value) -> My {
    match value {
        Value::Null => My::NULL,
        Value::Bool(b) => My::Int(i64::from(*b)),
        Value::Int(i) => My::Int(*i),
        Value::Uint(u) => My::UInt(*u),
        Value::Float(f) => My::Double(*f),
        Value::String(s) => match kind {
            Some(Kind::DateTime | Kind::Timestamp) => My::Bytes(sql_datetime(s).into_bytes()),
            _ => My::Bytes(s.as_bytes().to_vec()),
        },
        Value::Bytes(b) => My::Bytes(b.to_vec()),
        Value::Time(t) => {
            let (y, mo, d, h, mi, s) = t.to_utc();
            My::Bytes(
                format!(
                    "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{:06}",
                    t.subsec_nanos() / 1000
                )
                .into_bytes(),
            )
        }
        Value::Array(_) | Value::Map(_) => My::Bytes(value.to_json()),
    }
}

/// RFC 3339 (`2024-01-02T03:04:05.5Z`, `...+02:00`) as MySQL's DATETIME text in UTC;
/// anything else unchanged (MySQL parses its own formats).
fn sql_datetime(text: &str) -> String {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[10] != b'T' {
        return text.to_owned();
    }
    let (body, offset_secs) = if let Some(body) = text.strip_suffix('Z') {
        (body, 0i64)
    } else if let Some(i) = text.rfind(['+', '-']).filter(|&i| i > 18) {
        let sign = if bytes[i] == b'-' { -1 } else { 1 };
        let (h, m) = text[i + 1..]
            .split_once(':')
            .unwrap_or((&text[i + 1..], "0"));
        let (Ok(h), Ok(m)) = (h.parse::<i64>(), m.parse::<i64>()) else {
            return text.to_owned();
        };
        (&text[..i], sign * (h * 3600 + m * 60))
    } else {
        return text.replacen('T', " ", 1);
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if offset_secs == 0 {
        let mut out = whole.replacen('T', " ", 1);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(&frac[..frac.len().min(6)]);
        }
        return out;
    }
    let parse = |r: std::ops::Range<usize>| whole.get(r).and_then(|t| t.parse::<u32>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        whole.get(0..4).and_then(|t| t.parse::<i64>().ok()),
        parse(5..7),
        parse(8..10),
        parse(11..13),
        parse(14..16),
        parse(17..19),
    ) else {
        return text.to_owned();
    };
    let Some(t) = Timestamp::from_utc(y, mo, d, h, mi, s, 0) else {
        return text.to_owned();
    };
    let Some(utc) = Timestamp::new(t.unix_secs() - offset_secs, 0) else {
        return text.to_owned();
    };
    let (y, mo, d, h, mi, s) = utc.to_utc();
    let mut out = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac[..frac.len().min(6)]);
    }
    out
}

/// A quoted identifier: `` `name` ``, and `` `db`.`name` `` for a dotted name.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_and_set_values_are_read_from_the_column_type() {
        assert_eq!(list_values("enum('a','b''c','d,e')"), ["a", "b'c", "d,e"]);
        assert_eq!(list_values("set('x','y')"), ["x", "y"]);
    }

    #[test]
    fn binlog_and_snapshot_forms_map_to_the_same_values() {
        let unsigned = Kind::Int {
            unsigned: true,
            bytes: 1,
        };
        assert_eq!(to_value(&unsigned, My::Int(-1)), Value::Int(255));
        let big = Kind::Int {
            unsigned: true,
            bytes: 8,
        };
        assert_eq!(to_value(&big, My::Int(-1)), Value::Uint(u64::MAX));
        assert_eq!(to_value(&big, My::UInt(u64::MAX)), Value::Uint(u64::MAX));
        let e = Kind::Enum(vec!["a".into(), "b".into()]);
        assert_eq!(to_value(&e, My::Int(2)), Value::String("b".into()));
        assert_eq!(
            to_value(&e, My::Bytes(b"b".to_vec())),
            Value::String("b".into())
        );
        let s = Kind::Set(vec!["x".into(), "y".into(), "z".into()]);
        assert_eq!(
            to_value(&s, My::Bytes(vec![0b101])),
            Value::String("x,z".into())
        );
        assert_eq!(
            to_value(&s, My::Bytes(b"x,z".to_vec())),
            Value::String("x,z".into())
        );
        assert_eq!(
            to_value(&Kind::Timestamp, My::Bytes(b"1704164645.123".to_vec())),
            Value::String("2024-01-02T03:04:05.123Z".into())
        );
        assert_eq!(
            to_value(&Kind::Timestamp, My::Date(2024, 1, 2, 3, 4, 5, 123_000)),
            Value::String("2024-01-02T03:04:05.123Z".into())
        );
        assert_eq!(
            to_value(&Kind::Time, My::Time(true, 1, 2, 3, 4, 500_000)),
            Value::String("-26:03:04.5".into())
        );
        assert_eq!(to_value(&Kind::Float, My::Float(0.1)), Value::Float(0.1));
        assert_eq!(to_value(&Kind::Bit, My::Bytes(vec![1, 2])), Value::Int(258));
        assert_eq!(
            to_value(&Kind::Text { latin1: true }, My::Bytes(vec![0xe9])),
            Value::String("é".into())
        );
        assert_eq!(
            to_value(&Kind::Year, My::Bytes(b"2024".to_vec())),
            Value::Int(2024)
        );
    }

    #[test]
    fn rfc3339_strings_become_utc_datetime_text() {
        assert_eq!(
            sql_datetime("2024-01-02T03:04:05.123456Z"),
            "2024-01-02 03:04:05.123456"
        );
        assert_eq!(
            sql_datetime("2024-01-02T03:04:05+02:00"),
            "2024-01-02 01:04:05"
        );
        assert_eq!(sql_datetime("2024-01-02 03:04:05"), "2024-01-02 03:04:05");
    }
}
