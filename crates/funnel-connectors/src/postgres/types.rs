//! The type mapping: PostgreSQL values in text format to record [`Value`]s (source), and
//! record values back to text for a typed parameter (destination).
//!
//! Both the snapshot (simple query protocol) and the replication stream (`pgoutput`
//! without `binary`) deliver values in PostgreSQL's text output format, so one mapping
//! serves both. The sessions pin the settings the text depends on (see
//! [`SESSION_OPTIONS`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use funnel_record::{SmolStr, Value};

/// Startup options of every session the connector opens, so that values are rendered
/// the same way on every server: timestamps in UTC and ISO style, floats round-trip,
/// bytea in hex.
pub(crate) const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO,YMD \
     -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex";

/// Type OIDs with a mapping of their own.
pub(crate) mod oid {
    pub(crate) const BOOL: u32 = 16;
    pub(crate) const BYTEA: u32 = 17;
    pub(crate) const INT8: u32 = 20;
    pub(crate) const INT2: u32 = 21;
    pub(crate) const INT4: u32 = 23;
    pub(crate) const OID: u32 = 26;
    pub(crate) const JSON: u32 = 114;
    pub(crate) const FLOAT4: u32 = 700;
    pub(crate) const FLOAT8: u32 = 701;
    pub(crate) const TIMESTAMP: u32 = 1114;
    pub(crate) const TIMESTAMPTZ: u32 = 1184;
    pub(crate) const JSONB: u32 = 3802;
}

/// Array type OID -> element type OID, for the array types of the built-in types the
/// mapping knows; other arrays are looked up in `pg_type` when the source opens.
pub(crate) fn builtin_array_element(array_oid: u32) -> Option<u32> {
    Some(match array_oid {
        1000 => oid::BOOL,
        1001 => oid::BYTEA,
        1005 => oid::INT2,
        1007 => oid::INT4,
        1016 => oid::INT8,
        1028 => oid::OID,
        199 => oid::JSON,
        3807 => oid::JSONB,
        1021 => oid::FLOAT4,
        1022 => oid::FLOAT8,
        1115 => oid::TIMESTAMP,
        1185 => oid::TIMESTAMPTZ,
        1009 | 1015 | 1014 | 1231 | 1182 | 2951 | 1183 | 1270 | 1187 => 25,
        _ => return None,
    })
}

/// Converts values of one column type, given the array element types known.
pub(crate) struct TypeMap {
    arrays: BTreeMap<u32, u32>,
}

impl TypeMap {
    /// A mapping that knows the built-in arrays and `arrays` (array OID -> element OID).
    pub(crate) fn new(arrays: BTreeMap<u32, u32>) -> Self {
        Self { arrays }
    }

    fn element(&self, array_oid: u32) -> Option<u32> {
        builtin_array_element(array_oid).or_else(|| self.arrays.get(&array_oid).copied())
    }

    /// The value of a column of type `type_oid` whose text form is `text`.
    pub(crate) fn value(&self, type_oid: u32, text: &str) -> Value {
        if let Some(element) = self.element(type_oid) {
            return match parse_array(text) {
                Some(items) => self.array_value(element, items),
                None => Value::String(text.into()),
            };
        }
        scalar(type_oid, text)
    }

    fn array_value(&self, element: u32, items: Vec<ArrayItem>) -> Value {
        Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    ArrayItem::Null => Value::Null,
                    ArrayItem::Text(t) => self.value(element, &t),
                    ArrayItem::Nested(inner) => self.array_value(element, inner),
                })
                .collect(),
        )
    }
}

/// A scalar value from its text form.
fn scalar(type_oid: u32, text: &str) -> Value {
    match type_oid {
        oid::BOOL => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            other => Value::String(other.into()),
        },
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => text
            .parse::<i64>()
            .map_or_else(|_| Value::String(text.into()), Value::Int),
        oid::FLOAT4 | oid::FLOAT8 => match text.parse::<f64>() {
            // NaN and the infinities have no JSON number: they stay text.
            Ok(f) if f.is_finite() => Value::Float(f),
            _ => Value::String(text.into()),
        },
        oid::BYTEA => decode_bytea(text).map_or_else(|| Value::String(text.into()), Value::Bytes),
        oid::JSON | oid::JSONB => {
            Value::from_json(text.as_bytes()).unwrap_or_else(|_| Value::String(text.into()))
        }
        oid::TIMESTAMPTZ => Value::String(rfc3339(text, true)),
        oid::TIMESTAMP => Value::String(rfc3339(text, false)),
        // numeric, money, text, varchar, char, name, uuid, date, time, timetz,
        // interval, inet, enums, ...: the text form, which loses nothing.
        _ => Value::String(text.into()),
    }
}

/// `2024-01-02 03:04:05.123456+00` -> `2024-01-02T03:04:05.123456Z`, and a timestamp
/// without time zone as the same instant in UTC. Values without an RFC 3339 form
/// (`infinity`, years BC or beyond 9999) keep PostgreSQL's text.
fn rfc3339(text: &str, with_zone: bool) -> SmolStr {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() >= 19
        && bytes[4] == b'-'
        && bytes[10] == b' '
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && !text.ends_with(" BC");
    if !well_formed {
        return SmolStr::new(text);
    }
    let (datetime, zone) = if with_zone {
        // The session's TimeZone is UTC, so the zone is `+00`.
        match text.rfind(['+', '-']) {
            Some(i) if i > 10 => (&text[..i], &text[i..]),
            _ => (text, ""),
        }
    } else {
        (text, "")
    };
    // Built on the stack, so that the value costs one allocation (a `SmolStr` longer
    // than 23 bytes), not two.
    let mut out = StackText::default();
    out.push(&datetime[..10]);
    out.push("T");
    out.push(&datetime[11..]);
    match zone {
        "" | "+00" | "-00" | "+00:00" => out.push("Z"),
        z if z.len() == 3 => {
            out.push(z);
            out.push(":00");
        }
        z => out.push(z),
    }
    out.finish()
}

/// Text built in a fixed buffer, spilling to the heap only when it outgrows it.
struct StackText {
    buffer: [u8; 64],
    len: usize,
    spilled: Option<String>,
}

impl Default for StackText {
    fn default() -> Self {
        Self {
            buffer: [0; 64],
            len: 0,
            spilled: None,
        }
    }
}

impl StackText {
    fn push(&mut self, text: &str) {
        if let Some(spilled) = &mut self.spilled {
            spilled.push_str(text);
            return;
        }
        let end = self.len + text.len();
        if let Some(room) = self.buffer.get_mut(self.len..end) {
            room.copy_from_slice(text.as_bytes());
            self.len = end;
        } else {
            let mut spilled = String::with_capacity(end);
            spilled.push_str(self.as_str());
            spilled.push_str(text);
            self.spilled = Some(spilled);
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, so the bytes are UTF-8.
        std::str::from_utf8(&self.buffer[..self.len]).unwrap_or_default()
    }

    fn finish(self) -> SmolStr {
        match &self.spilled {
            Some(spilled) => SmolStr::new(spilled),
            None => SmolStr::new(self.as_str()),
        }
    }
}

/// Decodes bytea in hex output format (`\x0102`).
pub(crate) fn decode_bytea(text: &str) -> Option<Bytes> {
    let hex = text.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

/// A record value as a JSON document.
pub(crate) fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Uint(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::Bytes(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        // As Go's `time.Time.MarshalJSON` writes it.
        Value::Time(t) => serde_json::Value::String(t.to_rfc3339()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        ),
    }
}

/// One element of an array literal.
#[derive(Debug, PartialEq)]
enum ArrayItem {
    Null,
    Text(String),
    Nested(Vec<ArrayItem>),
}

/// Parses an array in PostgreSQL's text output (`{1,2,NULL}`, `{"a b","c\"d"}`,
/// `{{1,2},{3,4}}`, with an optional `[1:2]=` bounds prefix). `None` if malformed.
fn parse_array(text: &str) -> Option<Vec<ArrayItem>> {
    let text = match text.find("={") {
        Some(i) if text.starts_with('[') => &text[i + 1..],
        _ => text,
    };
    let mut chars = text.chars().peekable();
    let items = parse_array_level(&mut chars)?;
    chars.next().is_none().then_some(items)
}

fn parse_array_level(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Option<Vec<ArrayItem>> {
    if chars.next()? != '{' {
        return None;
    }
    let mut items = Vec::new();
    if chars.peek() == Some(&'}') {
        chars.next();
        return Some(items);
    }
    loop {
        match chars.peek()? {
            '{' => items.push(ArrayItem::Nested(parse_array_level(chars)?)),
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '\\' => s.push(chars.next()?),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                items.push(ArrayItem::Text(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                if s == "NULL" {
                    items.push(ArrayItem::Null);
                } else {
                    items.push(ArrayItem::Text(s));
                }
            }
        }
        match chars.next()? {
            ',' => {}
            '}' => return Some(items),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Destination: record values to text parameters
// ---------------------------------------------------------------------------------------

/// What a destination column is, as far as rendering a value for it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    /// `bytea`: bytes are written in hex.
    Bytea,
    /// `json` or `jsonb`: any value is written as a JSON document.
    Json,
    /// An array type: arrays are written as array literals.
    Array,
    /// Anything else: scalars as text, maps and arrays as JSON.
    Other,
}

/// The text form of `value` for a column of kind `kind`; `None` for NULL.
pub(crate) fn to_text(value: &Value, kind: ColumnKind) -> Option<String> {
    match (value, kind) {
        (Value::Null, _) => None,
        (Value::Bytes(b), ColumnKind::Bytea) => Some(encode_bytea(b)),
        (Value::String(s), ColumnKind::Json) => {
            // A string holding a JSON document (from a raw source) is written as is;
            // any other string becomes a JSON string.
            if serde_json::from_str::<serde_json::Value>(s).is_ok() {
                Some(s.to_string())
            } else {
                Some(serde_json::Value::String(s.to_string()).to_string())
            }
        }
        (v, ColumnKind::Json) => Some(to_json(v).to_string()),
        (Value::Array(items), ColumnKind::Array) => Some(array_literal(items)),
        (v, _) => Some(scalar_text(v)),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::String(s) => s.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        // RFC 3339 in UTC (`2021-01-21T18:40:12.345678999Z`): PostgreSQL reads it as a
        // timestamptz (rounded to microseconds), a timestamp (the `Z` ignored; sessions
        // run in UTC) or a date, and a text column keeps it as written.
        Value::Time(t) => t.to_rfc3339(),
        Value::Array(_) | Value::Map(_) => to_json(value).to_string(),
    }
}

fn encode_bytea(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

fn array_literal(items: &[Value]) -> String {
    let mut s = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match item {
            Value::Null => s.push_str("NULL"),
            Value::Array(inner) => s.push_str(&array_literal(inner)),
            Value::Bytes(b) => push_quoted(&mut s, &encode_bytea(b)),
            other => push_quoted(&mut s, &scalar_text(other)),
        }
    }
    s.push('}');
    s
}

fn push_quoted(s: &mut String, text: &str) {
    s.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a quoted SQL string literal (standard_conforming_strings on).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> TypeMap {
        TypeMap::new(BTreeMap::new())
    }

    #[test]
    fn integers_booleans_and_floats_become_numbers_and_bools() {
        let m = map();
        assert_eq!(
            m.value(oid::INT8, "-9223372036854775808"),
            Value::Int(i64::MIN)
        );
        assert_eq!(m.value(oid::INT2, "7"), Value::Int(7));
        assert_eq!(m.value(oid::BOOL, "t"), Value::Bool(true));
        assert_eq!(m.value(oid::FLOAT8, "0.1"), Value::Float(0.1));
        assert_eq!(m.value(oid::FLOAT8, "NaN"), Value::String("NaN".into()));
        assert_eq!(
            m.value(oid::FLOAT4, "-Infinity"),
            Value::String("-Infinity".into())
        );
    }

    #[test]
    fn numeric_keeps_every_digit_as_text() {
        let text = "12345678901234567890.123456789012345678901";
        assert_eq!(map().value(1700, text), Value::String(text.into()));
    }

    #[test]
    fn timestamps_become_rfc3339_text_in_utc() {
        let m = map();
        assert_eq!(
            m.value(oid::TIMESTAMPTZ, "2024-01-02 03:04:05.123456+00"),
            Value::String("2024-01-02T03:04:05.123456Z".into())
        );
        assert_eq!(
            m.value(oid::TIMESTAMPTZ, "2024-01-02 03:04:05+05:30"),
            Value::String("2024-01-02T03:04:05+05:30".into())
        );
        assert_eq!(
            m.value(oid::TIMESTAMP, "1999-12-31 23:59:59"),
            Value::String("1999-12-31T23:59:59Z".into())
        );
        assert_eq!(
            m.value(oid::TIMESTAMPTZ, "infinity"),
            Value::String("infinity".into())
        );
        assert_eq!(
            m.value(1082, "2024-02-29"),
            Value::String("2024-02-29".into())
        );
    }

    #[test]
    fn json_becomes_nested_structured_data() {
        let v = map().value(
            oid::JSONB,
            r#"{"a": [1, 2.5, "x", null], "b": {"c": true}}"#,
        );
        let Value::Map(m) = v else {
            panic!("not a map: {v:?}")
        };
        assert_eq!(
            m["a"],
            Value::Array(vec![
                Value::Int(1),
                Value::Float(2.5),
                Value::String("x".into()),
                Value::Null
            ])
        );
        assert_eq!(
            m["b"],
            Value::Map([("c".to_owned(), Value::Bool(true))].into_iter().collect())
        );
    }

    #[test]
    fn bytea_hex_becomes_bytes() {
        assert_eq!(
            map().value(oid::BYTEA, "\\x00ff10"),
            Value::Bytes(Bytes::from_static(&[0, 255, 16]))
        );
    }

    #[test]
    fn arrays_become_lists_of_typed_elements() {
        let m = map();
        assert_eq!(
            m.value(1007, "{1,NULL,3}"),
            Value::Array(vec![Value::Int(1), Value::Null, Value::Int(3)])
        );
        assert_eq!(
            m.value(1009, r#"{"a b","c\"d",NULL,"NULL",plain}"#),
            Value::Array(vec![
                Value::String("a b".into()),
                Value::String("c\"d".into()),
                Value::Null,
                Value::String("NULL".into()),
                Value::String("plain".into()),
            ])
        );
        assert_eq!(
            m.value(1007, "[0:1]={{1,2},{3,4}}"),
            Value::Array(vec![
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
                Value::Array(vec![Value::Int(3), Value::Int(4)]),
            ])
        );
        assert_eq!(m.value(1007, "{}"), Value::Array(vec![]));
    }

    #[test]
    fn values_render_back_to_text_postgres_accepts() {
        assert_eq!(to_text(&Value::Int(5), ColumnKind::Other), Some("5".into()));
        assert_eq!(to_text(&Value::Null, ColumnKind::Other), None);
        assert_eq!(
            to_text(
                &Value::Bytes(Bytes::from_static(&[1, 171])),
                ColumnKind::Bytea
            ),
            Some("\\x01ab".into())
        );
        assert_eq!(
            to_text(
                &Value::Array(vec![Value::String("a\"b".into()), Value::Null]),
                ColumnKind::Array
            ),
            Some(r#"{"a\"b",NULL}"#.into())
        );
        assert_eq!(
            to_text(&Value::String("x".into()), ColumnKind::Json),
            Some("\"x\"".into())
        );
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
