//! Go's `fmt.Sprint` (`%v`) and `%T` for the Go values Conduit's structured data holds.

use std::fmt::Write as _;

use super::FloatV;
use crate::{StructuredData, Value};

/// The Go type name (`%T`) of the value Conduit would hold for `value`, as Go's error
/// messages print it: `int`, `float64`, `[]interface {}`, `map[string]interface {}`, …
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Uint(_) => "uint64",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::Bytes(_) => "[]uint8",
        Value::Time(_) => "time.Time",
        Value::Array(_) => "[]interface {}",
        Value::Map(_) => "map[string]interface {}",
    }
}

/// `value` as Go's `fmt.Sprint` writes the equivalent Go value: `<nil>`, `true`, `42`,
/// `1e+06` (see [`FloatV`]), strings as they are, bytes as `[104 105]`, times as
/// `2021-01-21 18:40:12.345678999 +0000 UTC`, slices as `[a b]`, maps with sorted keys
/// as `map[a:1 b:2]`.
pub fn sprint(value: &Value) -> String {
    let mut out = String::new();
    write_sprint(&mut out, value);
    out
}

/// Appends [`sprint`] of `value` to `out`.
pub fn write_sprint(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Writing to a String cannot fail.
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Uint(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{}", FloatV(*f));
        }
        Value::String(s) => out.push_str(s),
        Value::Bytes(bytes) => write_sprint_bytes(out, bytes),
        Value::Time(t) => out.push_str(&t.to_go_string()),
        Value::Array(items) => write_sprint_slice(out, items),
        Value::Map(map) => write_sprint_map(out, map),
    }
}

/// Appends `fmt.Sprint` of a `[]byte`: the bytes in decimal, `[104 105]`.
pub fn write_sprint_bytes(out: &mut String, bytes: &[u8]) {
    out.push('[');
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b}");
    }
    out.push(']');
}

/// Appends `fmt.Sprint` of a `[]interface{}`: `[a 1 <nil>]`.
pub fn write_sprint_slice(out: &mut String, items: &[Value]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_sprint(out, item);
    }
    out.push(']');
}

/// Appends `fmt.Sprint` of a `map[string]interface{}`, keys sorted: `map[a:1 b:[2]]`.
pub fn write_sprint_map(out: &mut String, map: &StructuredData) {
    write_sprint_entries(out, map.iter(), write_sprint);
}

/// Appends `fmt.Sprint` of a Go map from its entries in key order, each value written
/// by `write_value`: `map[k:v k2:v2]`. For maps of other value types, such as
/// metadata's `map[string]string`.
pub fn write_sprint_entries<K: AsRef<str>, V>(
    out: &mut String,
    entries: impl IntoIterator<Item = (K, V)>,
    write_value: impl Fn(&mut String, V),
) {
    out.push_str("map[");
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key.as_ref());
        out.push(':');
        write_value(out, value);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    #[test]
    fn values_print_like_go_sprint() {
        let map: StructuredData = [
            (
                "b".to_owned(),
                Value::Array(vec![Value::Int(1), Value::Null, Value::Float(1e6)]),
            ),
            ("a".to_owned(), Value::Bool(true)),
            ("c".to_owned(), Value::Bytes(b"hi".to_vec().into())),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            sprint(&Value::Map(map)),
            "map[a:true b:[1 <nil> 1e+06] c:[104 105]]"
        );
        assert_eq!(
            sprint(&Value::Time(Timestamp::from_unix_nanos(1_500_000_000))),
            "1970-01-01 00:00:01.5 +0000 UTC"
        );
        assert_eq!(sprint(&Value::Uint(u64::MAX)), "18446744073709551615");
        let mut metadata = String::new();
        write_sprint_entries(&mut metadata, [("a", "x"), ("b", "y z")], String::push_str);
        assert_eq!(metadata, "map[a:x b:y z]");
    }

    #[test]
    fn type_names_are_go_percent_t() {
        assert_eq!(type_name(&Value::Int(1)), "int");
        assert_eq!(type_name(&Value::Array(vec![])), "[]interface {}");
        assert_eq!(type_name(&Value::Null), "<nil>");
    }
}
