//! JSON into record values: Go's `json.Unmarshal` into `any`, and Funnel's own reading
//! that keeps integers.

use crate::Value;

/// What a JSON number becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbers {
    /// Every number is a float64 ([`Value::Float`]), as Go's `json.Unmarshal` into `any`
    /// decodes it: what Conduit's processors and templates see.
    Float64,
    /// Integer literals stay integers ([`Value::Int`], or [`Value::Uint`] above
    /// `i64::MAX`) and other numbers are [`Value::Float`]: how Funnel reads structured
    /// data, which writes back as the same JSON.
    KeepIntegers,
}

/// A parsed JSON document as a record value: objects become [`Value::Map`], arrays
/// [`Value::Array`], numbers as `numbers` says.
pub fn value_from_json(json: serde_json::Value, numbers: Numbers) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (numbers, n.as_i64(), n.as_u64()) {
            (Numbers::KeepIntegers, Some(i), _) => Value::Int(i),
            (Numbers::KeepIntegers, None, Some(u)) => Value::Uint(u),
            // Without serde_json's `arbitrary_precision` every number has an f64 value.
            _ => n.as_f64().map_or(Value::Null, Value::Float),
        },
        serde_json::Value::String(s) => Value::String(s.into()),
        serde_json::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| value_from_json(item, numbers))
                .collect(),
        ),
        serde_json::Value::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, value_from_json(v, numbers)))
                .collect(),
        ),
    }
}

/// Decodes JSON as Go's `json.Unmarshal` into `any` does: every number is a float64
/// ([`Numbers::Float64`]).
///
/// # Errors
///
/// The parser's error when `bytes` is not exactly one JSON value.
pub fn unmarshal_any(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(bytes).map(|json| value_from_json(json, Numbers::Float64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_any_decodes_every_number_as_a_float() {
        assert_eq!(
            unmarshal_any(br#"{"a": [1, 2.5, -3, 18446744073709551615]}"#).unwrap(),
            Value::Map(
                [(
                    "a".to_owned(),
                    Value::Array(vec![
                        Value::Float(1.0),
                        Value::Float(2.5),
                        Value::Float(-3.0),
                        Value::Float(18_446_744_073_709_551_615.0),
                    ])
                )]
                .into_iter()
                .collect()
            )
        );
        assert!(unmarshal_any(b"{").is_err());
        assert!(unmarshal_any(b"1 2").is_err());
    }

    #[test]
    fn keeping_integers_reads_each_literal_as_its_kind() {
        let json = serde_json::json!([1, -2, 18_446_744_073_709_551_615_u64, 2.0, null, "x", true]);
        assert_eq!(
            value_from_json(json, Numbers::KeepIntegers),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Uint(u64::MAX),
                Value::Float(2.0),
                Value::Null,
                Value::String("x".into()),
                Value::Bool(true),
            ])
        );
    }
}
