//! The built-in processors, one module per family, and what they share: the
//! per-record adapter, error helpers, and the Go formatting Conduit's messages and
//! conversions use (`%T` type names, `fmt.Sprint`, JSON decoding into `any`).

use std::fmt::{self, Display, Write as _};

use async_trait::async_trait;
use funnel_core::{ProcessedRecord, Processor, RecordError};
use funnel_record::{Data, Record, StructuredData, Value};

pub(crate) mod base64;
pub(crate) mod clone;
pub(crate) mod error;
pub(crate) mod field;
pub(crate) mod filter;
pub(crate) mod json;
pub(crate) mod split;
pub(crate) mod time;
pub(crate) mod unwrap;
#[cfg(feature = "webhook")]
pub(crate) mod webhook;

/// A processor that handles each record on its own, without I/O.
pub(crate) trait RecordProcessor: Send + 'static {
    /// The result for one record.
    fn process_record(&mut self, record: &Record) -> ProcessedRecord;

    /// The result for one record the processor may change in place, with the contract
    /// of [`Processor::process_in_place`]: `Unchanged` for a record changed in place,
    /// and a record failed or filtered left as it was. The default calls
    /// [`process_record`](Self::process_record).
    fn process_record_in_place(&mut self, record: &mut Record) -> ProcessedRecord {
        self.process_record(record)
    }
}

/// Runs a [`RecordProcessor`] on batches: one result per record, in order.
pub(crate) struct PerRecord<P>(pub(crate) P);

#[async_trait]
impl<P: RecordProcessor> Processor for PerRecord<P> {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        records
            .iter()
            .map(|record| self.0.process_record(record))
            .collect()
    }

    async fn process_in_place(&mut self, records: &mut [Record]) -> Vec<ProcessedRecord> {
        records
            .iter_mut()
            .map(|record| self.0.process_record_in_place(record))
            .collect()
    }
}

/// Boxes a per-record processor as a [`Processor`].
pub(crate) fn boxed<P: RecordProcessor>(processor: P) -> Box<dyn Processor> {
    Box::new(PerRecord(processor))
}

/// Who failed a record: the plugin and the processor's ID, put in front of error
/// messages so a nacked record says which processor refused it.
#[derive(Clone, Debug)]
pub(crate) struct Label {
    plugin: &'static str,
    id: String,
}

impl Label {
    pub(crate) fn new(plugin: &'static str, id: &str) -> Self {
        Self {
            plugin,
            id: id.to_owned(),
        }
    }

    /// The record failed with `message`.
    pub(crate) fn fail(&self, message: impl Display) -> ProcessedRecord {
        ProcessedRecord::Error(RecordError::msg(format!("{self}: {message}")))
    }
}

impl Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "processor {:?} ({})", self.id, self.plugin)
    }
}

/// The Go type name (`%T`) of the value Conduit would hold for `value`, as its error
/// messages print it.
pub(crate) fn go_type(value: &Value) -> &'static str {
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

/// The Go type name of a key or payload side.
pub(crate) fn go_data_type(data: &Data) -> &'static str {
    match data {
        Data::Raw(_) => "opencdc.RawData",
        Data::Structured(_) => "opencdc.StructuredData",
    }
}

/// A float as Go's `strconv.FormatFloat(f, 'f', -1, 64)` writes it: the shortest text
/// that reads back as `f`, never in exponent form.
pub(crate) fn go_float_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        // Rust's Display is the shortest round-trip form without an exponent.
        format!("{f}")
    }
}

/// A float as Go's `fmt.Sprint` writes it (`%v`): shortest form, exponent form when
/// the exponent is below -4 or at least 21 (`1e+21`, `1e-05`).
pub(crate) fn go_float_v(f: f64) -> String {
    if !f.is_finite() {
        return go_float_f(f);
    }
    let sci = format!("{f:e}"); // e.g. "1.5e-5", "-1e21"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..21).contains(&exp) {
        return go_float_f(f);
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// A value as Go's `fmt.Sprint` writes the equivalent Go value.
pub(crate) fn go_sprint(value: &Value) -> String {
    let mut out = String::new();
    write_go_sprint(&mut out, value);
    out
}

fn write_go_sprint(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Uint(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => out.push_str(&go_float_v(*f)),
        Value::String(s) => out.push_str(s),
        Value::Bytes(bytes) => {
            out.push('[');
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{b}");
            }
            out.push(']');
        }
        // `time.Time.String()`: `2021-01-21 18:40:12.345678999 +0000 UTC`.
        Value::Time(t) => out.push_str(&t.to_go_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_go_sprint(out, item);
            }
            out.push(']');
        }
        Value::Map(map) => write_go_map(out, map),
    }
}

fn write_go_map(out: &mut String, map: &StructuredData) {
    out.push_str("map[");
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        write_go_sprint(out, item);
    }
    out.push(']');
}

/// Decodes JSON the way Go's `json.Unmarshal` into `any` does: every number becomes a
/// float64 ([`Value::Float`]), objects maps, arrays slices.
///
/// # Errors
///
/// The JSON parser's message when `bytes` is not one JSON value.
pub(crate) fn decode_json_go(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map(value_from_json_go)
        .map_err(|e| e.to_string())
}

fn value_from_json_go(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(value_from_json_go).collect())
        }
        serde_json::Value::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, value_from_json_go(v)))
                .collect(),
        ),
    }
}

/// Text of raw bytes for a Go `string(bytes)` conversion: the bytes as a string when
/// they are UTF-8, otherwise kept as [`Value::Bytes`].
pub(crate) fn bytes_value(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => Value::String(text),
        Err(err) => Value::Bytes(err.into_bytes().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_processor_builds_and_accepts_the_schema_settings() {
        let schema: crate::Settings = crate::settings::SDK_SCHEMA_SETTINGS
            .iter()
            .map(|s| (s.name.to_owned(), "false".to_owned()))
            .collect();
        let specs = crate::specs();
        assert!(specs.windows(2).all(|w| w[0].name < w[1].name));
        for spec in specs {
            for sdk in crate::settings::SDK_SCHEMA_SETTINGS {
                assert!(
                    spec.settings.contains(sdk),
                    "{} lacks {}",
                    spec.name,
                    sdk.name
                );
            }
            match crate::build(spec.name, "id", &schema) {
                Ok(_) => assert!(
                    spec.settings.iter().all(|s| !s.required),
                    "{} built without its required settings",
                    spec.name
                ),
                Err(errors) => {
                    // Only the processor's own settings may be wrong (a required one
                    // missing, or one of a pair such as script / script.path).
                    for error in &errors {
                        let own = spec
                            .settings
                            .iter()
                            .any(|s| s.name == error.setting && !s.name.starts_with("sdk.schema."));
                        assert!(own, "{}: {error}", spec.name);
                    }
                }
            }
        }
    }

    #[test]
    fn an_unknown_plugin_is_an_error_on_the_plugin_setting() {
        let errors = crate::build("nope", "id", &crate::Settings::new())
            .err()
            .unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].setting, "plugin");
        assert!(errors[0].message.contains("field.set"));
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go_float_f(54.0), "54");
        assert_eq!(go_float_f(123.345), "123.345");
        assert_eq!(go_float_f(1e19), "10000000000000000000");
        assert_eq!(go_float_v(27.0), "27");
        assert_eq!(go_float_v(1e21), "1e+21");
        assert_eq!(go_float_v(0.00001), "1e-05");
        assert_eq!(go_float_v(0.0001), "0.0001");
        assert_eq!(go_float_v(-2.5e-7), "-2.5e-07");
    }

    #[test]
    fn values_print_like_go_sprint() {
        let map: StructuredData = [
            (
                "b".to_owned(),
                Value::Array(vec![Value::Int(1), Value::Null]),
            ),
            ("a".to_owned(), Value::Bool(true)),
        ]
        .into_iter()
        .collect();
        assert_eq!(go_sprint(&Value::Map(map)), "map[a:true b:[1 <nil>]]");
    }

    #[test]
    fn json_decodes_every_number_as_a_float() {
        assert_eq!(
            decode_json_go(br#"[1, 2.5]"#).unwrap(),
            Value::Array(vec![Value::Float(1.0), Value::Float(2.5)])
        );
        assert!(decode_json_go(b"{").is_err());
    }
}
