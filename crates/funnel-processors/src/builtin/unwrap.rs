//! The `unwrap.*` processors: replace the record with one carried inside a field.
//!
//! # Settings (all three)
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `field` | `.Payload.After` | The field holding the wrapped record, under `.Payload`. |
//!
//! The field may hold raw data or a string with JSON (read as Go reads JSON into `any`:
//! numbers become floats), or structured data / a map. In every case the wrapping
//! record's **position is kept**.
//!
//! - `unwrap.opencdc`: the field is an OpenCDC record (`operation`, `metadata`, `key`,
//!   `payload.before/after`; raw data as base64 strings). Everything but the position
//!   comes from it.
//! - `unwrap.debezium`: the field is a Debezium event `{schema, payload}`. The operation
//!   comes from `op` (`c`, `u`, `d`, `r`, `$unset`), before/after from the same names,
//!   `ts_ms` (milliseconds) becomes `opencdc.readAt`, the `source` map is flattened into
//!   the metadata (winning over everything), other fields become `debezium.<name>`
//!   metadata. The key's `payload` replaces the key (a map stays structured, anything
//!   else becomes raw text).
//! - `unwrap.kafkaconnect`: the field is a Kafka Connect `{schema, payload}`. The payload
//!   becomes `.Payload.After`, the operation is `create`, metadata is kept, and the key
//!   is unwrapped like Debezium's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use funnel_core::{Component, ProcessedRecord};
use funnel_record::{
    Data, FieldPath, FieldRef, Metadata, Operation, Payload, Record, StructuredData, Value, go,
};

use crate::settings::{PayloadField, parse, path_error, processor};
use crate::{Built, Settings};

use super::{Label, RecordProcessor, boxed};

/// `unwrap.opencdc` in the registry table.
pub(crate) const OPENCDC: Component = processor::<UnwrapSettings>(
    "unwrap.opencdc",
    "Replaces the record with an OpenCDC record stored in a field.",
    build_opencdc,
);
/// `unwrap.debezium` in the registry table.
pub(crate) const DEBEZIUM: Component = processor::<UnwrapSettings>(
    "unwrap.debezium",
    "Unwraps a Debezium event stored in a field.",
    build_debezium,
);
/// `unwrap.kafkaconnect` in the registry table.
pub(crate) const KAFKACONNECT: Component = processor::<UnwrapSettings>(
    "unwrap.kafkaconnect",
    "Unwraps a Kafka Connect {schema, payload} stored in a field.",
    build_kafkaconnect,
);

funnel_core::settings! {
    /// The settings of every `unwrap.*` processor (the SDK schema ones come on top).
    pub(crate) struct UnwrapSettings {
        /// Reference to the field holding the wrapped record (under .Payload).
        pub(crate) field: PayloadField = "field" (default ".Payload.After"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    OpenCdc,
    Debezium,
    KafkaConnect,
}

/// Validates the settings and builds `unwrap.opencdc`.
pub(crate) fn build_opencdc(id: &str, settings: &Settings) -> Built {
    build(id, settings, Format::OpenCdc, "unwrap.opencdc")
}

/// Validates the settings and builds `unwrap.debezium`.
pub(crate) fn build_debezium(id: &str, settings: &Settings) -> Built {
    build(id, settings, Format::Debezium, "unwrap.debezium")
}

/// Validates the settings and builds `unwrap.kafkaconnect`.
pub(crate) fn build_kafkaconnect(id: &str, settings: &Settings) -> Built {
    build(id, settings, Format::KafkaConnect, "unwrap.kafkaconnect")
}

fn build(id: &str, settings: &Settings, format: Format, plugin: &'static str) -> Built {
    let field = parse::<UnwrapSettings>(settings)?.field.0;
    Ok(boxed(Unwrap {
        label: Label::new(plugin, id),
        field,
        format,
    }))
}

struct Unwrap {
    label: Label,
    field: FieldPath,
    format: Format,
}

impl RecordProcessor for Unwrap {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let result = self.wrapped(record).and_then(|event| match self.format {
            Format::OpenCdc => {
                unwrap_opencdc(&event).map_err(|e| format!("failed unmarshalling record: {e}"))
            }
            Format::Debezium => unwrap_debezium(record, &event),
            Format::KafkaConnect => unwrap_kafkaconnect(record, &event),
        });
        match result {
            Ok(mut unwrapped) => {
                unwrapped.position = record.position.clone();
                ProcessedRecord::Single(unwrapped)
            }
            Err(err) => self.label.fail(err),
        }
    }
}

impl Unwrap {
    /// The wrapped record as a map, decoded from JSON if need be.
    fn wrapped(&self, record: &Record) -> Result<StructuredData, String> {
        let (json, from): (&[u8], &str) = match record.get(&self.field) {
            Err(err) => return Err(format!("failed resolving reference: {}", path_error(&err))),
            Ok(Some(FieldRef::Data(Data::Structured(map)))) => return Ok(map.clone()),
            Ok(Some(FieldRef::Value(Value::Map(map)))) => return Ok(map.clone()),
            Ok(Some(FieldRef::Data(Data::Raw(bytes)))) => (bytes, "raw data"),
            Ok(Some(FieldRef::Value(Value::Bytes(bytes)))) => (bytes, "raw data"),
            Ok(Some(FieldRef::Value(Value::String(text)))) => (text.as_bytes(), "string"),
            Ok(None | Some(FieldRef::Value(Value::Null))) if self.format == Format::OpenCdc => {
                return Err("field to unmarshal is nil".to_owned());
            }
            Ok(None) => return Err(self.unexpected("<nil>")),
            Ok(Some(FieldRef::Value(other))) => return Err(self.unexpected(go::type_name(other))),
            Ok(Some(_)) => return Err(self.unexpected("unknown")),
        };
        let prefix = match self.format {
            Format::OpenCdc => "failed to unmarshal raw data as JSON".to_owned(),
            _ => format!("failed unmarshalling JSON from {from}"),
        };
        match go::unmarshal_any(json) {
            Ok(Value::Map(map)) => Ok(map),
            Ok(other) => Err(format!(
                "{prefix}: expected a JSON object, found {}",
                go::type_name(&other)
            )),
            Err(err) => Err(format!("{prefix}: {err}")),
        }
    }

    fn unexpected(&self, type_name: &str) -> String {
        match self.format {
            Format::KafkaConnect => {
                format!("unexpected data type {type_name} (only structured data is supported)")
            }
            _ => format!("unexpected data type {type_name}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// unwrap.opencdc
// ---------------------------------------------------------------------------------------

fn unwrap_opencdc(event: &StructuredData) -> Result<Record, String> {
    let operation = match event.get("operation") {
        None => return Err("failed unmarshalling operation: no operation".to_owned()),
        Some(Value::String(text)) => parse_operation(text)
            .ok_or_else(|| format!("failed unmarshalling operation: invalid operation {text:?}"))?,
        Some(other) => {
            return Err(format!(
                "failed unmarshalling operation: expected a opencdc.Operation or a string, got {}",
                go::type_name(other)
            ));
        }
    };
    let metadata = match event.get("metadata") {
        None => return Err("failed unmarshalling metadata: no metadata".to_owned()),
        Some(Value::Map(map)) => map
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => go::sprint(other).into(),
                };
                (k.clone(), text)
            })
            .collect::<Metadata>(),
        Some(other) => {
            return Err(format!(
                "failed unmarshalling metadata: expected a opencdc.Metadata or a map[string]interface{{}}, got {}",
                go::type_name(other)
            ));
        }
    };
    let key = opencdc_data(event, "key").map_err(|e| format!("failed unmarshalling key: {e}"))?;
    let payload = match event.get("payload") {
        None => return Err("failed unmarshalling payload: no payload".to_owned()),
        Some(Value::Map(sides)) => Payload {
            before: opencdc_data(sides, "before")
                .map_err(|e| format!("failed unmarshalling payload: {e}"))?,
            after: opencdc_data(sides, "after")
                .map_err(|e| format!("failed unmarshalling payload: {e}"))?,
        },
        Some(other) => {
            return Err(format!(
                "failed unmarshalling payload: expected a opencdc.Change or a map[string]interface{{}}, got {}",
                go::type_name(other)
            ));
        }
    };
    Ok(Record {
        position: Default::default(),
        operation,
        metadata,
        key,
        payload,
    })
}

/// Conduit's `Operation.UnmarshalText`: a name, or a number with an optional
/// `Operation(...)` around it; empty text is the zero value.
fn parse_operation(text: &str) -> Option<Operation> {
    Some(match text {
        "" => Operation::Other(0),
        "create" => Operation::Create,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        "snapshot" => Operation::Snapshot,
        other => {
            let number = other.strip_prefix("Operation(").unwrap_or(other);
            let number = number.strip_suffix(')').unwrap_or(number);
            Operation::from_code(number.parse().ok()?)
        }
    })
}

/// A key or payload side of a wrapped OpenCDC record: a map is structured data, a
/// string is base64 of raw data, null or missing is no data.
fn opencdc_data(map: &StructuredData, name: &str) -> Result<Option<Data>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Map(inner)) => Ok(Some(Data::Structured(inner.clone()))),
        Some(Value::Bytes(bytes)) => Ok(Some(Data::Raw(bytes.clone()))),
        Some(Value::String(text)) => STANDARD
            .decode(text)
            .map(|bytes| Some(Data::raw(bytes)))
            .map_err(|e| format!("couldn't decode {name}: {e}")),
        Some(other) => Err(format!(
            "expected a map[string]interface{{}} or string, got: {}",
            go::type_name(other)
        )),
    }
}

// ---------------------------------------------------------------------------------------
// unwrap.debezium
// ---------------------------------------------------------------------------------------

fn unwrap_debezium(record: &Record, event: &StructuredData) -> Result<Record, String> {
    let Some(Value::Map(payload)) = event.get("payload") else {
        return Err("data to be unwrapped doesn't contain a payload field".to_owned());
    };
    let missing: Vec<String> = ["after", "source", "op"]
        .into_iter()
        .filter(|name| !payload.contains_key(*name))
        .map(|name| format!("the {name:?} field is missing from debezium payload"))
        .collect();
    if !missing.is_empty() {
        return Err(format!("invalid record: {}", missing.join("; ")));
    }
    let before = debezium_data(payload.get("before"))
        .map_err(|e| format!("failed to parse field before: {e}"))?;
    let after = debezium_data(payload.get("after"))
        .map_err(|e| format!("failed to parse field after: {e}"))?;
    let operation = match payload.get("op") {
        Some(Value::String(op)) => match op.as_str() {
            "c" => Operation::Create,
            "u" | "$unset" => Operation::Update,
            "d" => Operation::Delete,
            "r" => Operation::Snapshot,
            other => {
                return Err(format!(
                    "error unwrapping operation: {other:?} is an invalid operation"
                ));
            }
        },
        other => {
            return Err(format!(
                "operation is not a string, got {}",
                other.map_or("<nil>", go::type_name)
            ));
        }
    };
    let mut metadata = record.metadata.clone();
    let mut source = Vec::new();
    for (name, value) in payload {
        match name.as_str() {
            "after" | "before" | "op" => {}
            "ts_ms" => {
                // Conduit requires a float64 (what JSON decoding yields); Funnel keeps
                // integer literals as integers, so it takes both.
                let millis = match value {
                    Value::Float(f) => *f as i64,
                    Value::Int(n) => *n,
                    _ => return Err("error unwrapping metadata: ts_ms is not a float".to_owned()),
                };
                metadata.insert(
                    funnel_record::metadata::READ_AT,
                    millis.saturating_mul(1_000_000).to_string(),
                );
            }
            "source" => flatten("", value, &mut source),
            other => {
                let mut flat = Vec::new();
                flatten(&format!("debezium.{other}"), value, &mut flat);
                for (k, v) in flat {
                    metadata.insert(k, v);
                }
            }
        }
    }
    // The source map is applied last, so it wins.
    for (k, v) in source {
        metadata.insert(k, v);
    }
    Ok(Record {
        position: Default::default(),
        operation,
        metadata,
        key: unwrap_key(record.key.as_ref()),
        payload: Payload { before, after },
    })
}

fn debezium_data(value: Option<&Value>) -> Result<Option<Data>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Map(map)) => Ok(Some(Data::Structured(map.clone()))),
        Some(Value::String(text)) => Ok(Some(Data::raw(bytes::Bytes::copy_from_slice(
            text.as_bytes(),
        )))),
        Some(other) => Err(format!(
            "expected a map or a string, got {}",
            go::type_name(other)
        )),
    }
}

/// Flattens nested maps into `prefix.a.b` keys with text values (Go's `fmt.Sprint`);
/// null values are dropped.
fn flatten(key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Map(map) => {
            for (k, v) in map {
                let nested = if key.is_empty() {
                    k.to_string()
                } else {
                    format!("{key}.{k}")
                };
                flatten(&nested, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((key.to_owned(), s.to_string())),
        other => out.push((key.to_owned(), go::sprint(other))),
    }
}

/// The key's `payload` member, when the key (structured, or raw JSON) has one: a map
/// becomes structured data, anything else raw text. Otherwise the key is kept.
fn unwrap_key(key: Option<&Data>) -> Option<Data> {
    let decoded;
    let map = match key {
        Some(Data::Structured(map)) => map,
        Some(Data::Raw(bytes)) => match go::unmarshal_any(bytes) {
            Ok(Value::Map(map)) => {
                decoded = map;
                &decoded
            }
            _ => return key.cloned(),
        },
        None => return None,
    };
    match map.get("payload") {
        None => key.cloned(),
        Some(Value::Map(inner)) => Some(Data::Structured(inner.clone())),
        Some(other) => Some(Data::raw(go::sprint(other))),
    }
}

// ---------------------------------------------------------------------------------------
// unwrap.kafkaconnect
// ---------------------------------------------------------------------------------------

fn unwrap_kafkaconnect(record: &Record, event: &StructuredData) -> Result<Record, String> {
    let Some(Value::Map(payload)) = event.get("payload") else {
        return Err("referenced record field doesn't contain a payload field".to_owned());
    };
    Ok(Record {
        position: Default::default(),
        operation: Operation::Create,
        metadata: record.metadata.clone(),
        key: unwrap_key(record.key.as_ref()),
        payload: Payload {
            before: None,
            after: Some(Data::Structured(payload.clone())),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_test_utils::results::{error_text, settings, single};

    #[tokio::test]
    async fn opencdc_unwraps_raw_json_and_keeps_the_position() {
        let mut p = build_opencdc("u", &Settings::new()).unwrap();
        let wrapped = r#"{"position":"eA==","operation":"update","metadata":{"a":"b"},
            "key":"aWQ=","payload":{"before":null,"after":{"n":1}}}"#;
        let out = p
            .process(&[Record::new("outer", wrapped), Record::new("other", "[]")])
            .await;
        let record = single(&out[0]);
        assert_eq!(record.position, "outer".into());
        assert_eq!(record.operation, Operation::Update);
        assert_eq!(record.metadata.get("a"), Some("b"));
        assert_eq!(record.key, Some(Data::raw("id")));
        assert_eq!(
            record.payload.after,
            Some(Data::Structured(
                [("n".to_owned(), Value::Float(1.0))].into_iter().collect()
            ))
        );
        assert!(error_text(&out[1]).contains("failed to unmarshal raw data as JSON"));
    }

    #[tokio::test]
    async fn opencdc_reports_what_is_wrong_with_the_wrapped_record() {
        let mut p = build_opencdc("u", &Settings::new()).unwrap();
        let out = p
            .process(&[
                Record::new("1", r#"{"operation":"foobar","metadata":{},"payload":{}}"#),
                Record::new("2", r#"{"operation":"create","metadata":"x","payload":{}}"#),
                Record::new(
                    "3",
                    r#"{"operation":"create","metadata":{},"key":1,"payload":{}}"#,
                ),
            ])
            .await;
        assert!(error_text(&out[0]).ends_with(
            "failed unmarshalling record: failed unmarshalling operation: invalid operation \"foobar\""
        ));
        assert!(
            error_text(&out[1])
                .contains("failed unmarshalling metadata: expected a opencdc.Metadata")
        );
        assert!(error_text(&out[2]).contains(
            "failed unmarshalling key: expected a map[string]interface{} or string, got: float64"
        ));
        let mut empty = Record::new("4", "");
        empty.payload.after = None;
        assert!(error_text(&p.process(&[empty]).await[0]).ends_with("field to unmarshal is nil"));
    }

    #[tokio::test]
    async fn debezium_unwraps_operation_metadata_and_key() {
        let mut p = build_debezium("d", &Settings::new()).unwrap();
        let mut record = Record::new(
            "pos",
            r#"{"payload":{"after":{"id":1},"before":null,"op":"u",
            "source":{"table":"t","nested":{"x":2}},"ts_ms":1000,"transaction":{"id":"tx"}},"schema":{}}"#,
        );
        record.key = Some(Data::raw(r#"{"payload":27}"#));
        let out = p.process(&[record]).await;
        let r = single(&out[0]);
        assert_eq!(r.operation, Operation::Update);
        assert_eq!(r.position, "pos".into());
        assert_eq!(r.key, Some(Data::raw("27")));
        assert_eq!(r.metadata.get("table"), Some("t"));
        assert_eq!(r.metadata.get("nested.x"), Some("2"));
        assert_eq!(r.metadata.get("debezium.transaction.id"), Some("tx"));
        assert_eq!(r.metadata.get("opencdc.readAt"), Some("1000000000"));
    }

    #[tokio::test]
    async fn debezium_fails_events_without_payload_or_with_a_bad_op() {
        let mut p = build_debezium("d", &Settings::new()).unwrap();
        let out = p
            .process(&[
                Record::new("1", r#"{"schema":{}}"#),
                Record::new("2", r#"{"payload":{"after":null,"source":{},"op":"x"}}"#),
                Record::new("3", r#"{"payload":{"op":"c"}}"#),
            ])
            .await;
        assert!(
            error_text(&out[0]).ends_with("data to be unwrapped doesn't contain a payload field")
        );
        assert!(error_text(&out[1]).contains("\"x\" is an invalid operation"));
        assert!(error_text(&out[2]).contains("the \"after\" field is missing"));
    }

    #[tokio::test]
    async fn kafkaconnect_unwraps_structured_and_raw_payloads() {
        let mut p = build_kafkaconnect("k", &Settings::new()).unwrap();
        let mut structured = Record::new("1", "");
        structured.operation = Operation::Snapshot;
        structured.payload.after = Some(Data::Structured(
            [
                (
                    "payload".to_owned(),
                    Value::Map([("id".to_owned(), Value::Int(1))].into_iter().collect()),
                ),
                ("schema".to_owned(), Value::Map(Default::default())),
            ]
            .into_iter()
            .collect(),
        ));
        let raw = Record::new("2", r#"{"payload":{"a":"b"},"schema":{}}"#);
        let out = p.process(&[structured, raw, Record::new("3", "{}")]).await;
        assert_eq!(single(&out[0]).operation, Operation::Create);
        assert_eq!(
            single(&out[0]).payload.after,
            Some(Data::Structured(
                [("id".to_owned(), Value::Int(1))].into_iter().collect()
            ))
        );
        assert_eq!(single(&out[1]).position, "2".into());
        assert!(error_text(&out[2]).contains("doesn't contain a payload field"));
    }

    #[test]
    fn the_field_must_be_under_payload_and_valid() {
        let e = build_debezium("d", &settings(&[("field", ".Key")]))
            .err()
            .unwrap();
        assert_eq!(
            e[0].message,
            "\".Key\" should match the regex \"^.Payload\": regex validation failed"
        );
        let e = build_opencdc("u", &settings(&[("field", ".Payload.Something")]))
            .err()
            .unwrap();
        assert!(
            e[0].message.contains(
                "invalid reference \".Payload.Something\": unexpected field \"Something\""
            )
        );
        assert!(build_kafkaconnect("k", &settings(&[("field", ".Payload.Before")])).is_ok());
    }
}
