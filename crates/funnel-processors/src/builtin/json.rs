//! `json.decode` and `json.encode`: between JSON text (raw data or a string field) and
//! structured values.
//!
//! # Settings (both)
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `field` | required | The field, under `.Key` or `.Payload` but not `.Payload` itself. |
//!
//! `json.decode` reads raw data or a string as JSON, as Go's `json.Unmarshal` into
//! `any` does: **every number becomes a float** (`4` reads as `4.0`), as in Conduit.
//! Empty text becomes no value; data that is already structured, or missing, is left
//! alone. `json.encode` writes the value as compact JSON with sorted keys (floats in
//! Go's shortest form, `4.0` as `4`, bytes as base64, a time as Go's
//! `time.Time.MarshalJSON` writes it: `"2021-01-21T18:40:12.345678999Z"`); the key or a
//! payload side becomes raw data, a nested field a string. A missing value is left
//! alone. `json.decode` of a time fails (`unexpected data type time.Time`), as in Conduit.

use funnel_core::{Component, ProcessedRecord};
use funnel_record::{Data, FieldPath, FieldRef, Record, Value, go};

use crate::settings::{PayloadSideField, parse, path_error, processor};
use crate::{Built, Settings};

use super::{Label, RecordProcessor, boxed};

/// `json.decode` in the registry table.
pub(crate) const DECODE: Component = processor::<JsonSettings>(
    "json.decode",
    "Decodes a JSON field (raw data or string) into structured data.",
    build_decode,
);
/// `json.encode` in the registry table.
pub(crate) const ENCODE: Component =
    processor::<JsonSettings>("json.encode", "Encodes a field as JSON text.", build_encode);

funnel_core::settings! {
    /// The settings `json.decode` and `json.encode` accept (the SDK schema ones come
    /// on top).
    pub(crate) struct JsonSettings {
        /// Reference to the field to decode from or encode to JSON (under .Key or
        /// .Payload, not .Payload itself).
        pub(crate) field: PayloadSideField = "field",
    }
}

/// Validates the settings and builds `json.decode`.
pub(crate) fn build_decode(id: &str, settings: &Settings) -> Built {
    let field = parse::<JsonSettings>(settings)?.field.0;
    Ok(boxed(JsonDecode {
        label: Label::new("json.decode", id),
        field,
    }))
}

/// Validates the settings and builds `json.encode`.
pub(crate) fn build_encode(id: &str, settings: &Settings) -> Built {
    let field = parse::<JsonSettings>(settings)?.field.0;
    Ok(boxed(JsonEncode {
        label: Label::new("json.encode", id),
        field,
    }))
}

struct JsonDecode {
    label: Label,
    field: FieldPath,
}

impl RecordProcessor for JsonDecode {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let text: &[u8] = match record.get(&self.field) {
            Err(err) => return self.label.fail(path_error(&err)),
            Ok(Some(FieldRef::Data(Data::Raw(bytes)))) => bytes,
            Ok(Some(FieldRef::Value(Value::String(s)))) => s.as_bytes(),
            Ok(Some(FieldRef::Value(Value::Bytes(bytes)))) => bytes,
            Ok(
                None
                | Some(FieldRef::Data(Data::Structured(_)))
                | Some(FieldRef::Value(Value::Map(_) | Value::Null)),
            ) => return ProcessedRecord::Single(record.clone()),
            Ok(Some(FieldRef::Value(other))) => {
                return self.label.fail(format_args!(
                    "unexpected data type {}",
                    go::type_name(other)
                ));
            }
            Ok(Some(_)) => return self.label.fail("unexpected data type"),
        };
        let value = if text.is_empty() {
            Value::Null
        } else {
            match go::unmarshal_any(text) {
                Ok(value) => value,
                Err(err) => {
                    return self
                        .label
                        .fail(format_args!("failed to unmarshal raw data as JSON: {err}"));
                }
            }
        };
        let mut record = record.clone();
        match record.set(&self.field, value) {
            Ok(()) => ProcessedRecord::Single(record),
            Err(err) => self.label.fail(path_error(&err)),
        }
    }
}

struct JsonEncode {
    label: Label,
    field: FieldPath,
}

impl RecordProcessor for JsonEncode {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let mut json = Vec::new();
        match record.get(&self.field) {
            Err(err) => return self.label.fail(path_error(&err)),
            Ok(None | Some(FieldRef::Value(Value::Null))) => {
                return ProcessedRecord::Single(record.clone());
            }
            Ok(Some(FieldRef::Data(Data::Structured(map)))) => {
                // funnel-record writes values, not bare maps: one clone of the map.
                Value::Map(map.clone()).write_json(&mut json);
            }
            // Go marshals raw bytes as a base64 string.
            Ok(Some(FieldRef::Data(Data::Raw(bytes)))) => {
                Value::Bytes(bytes.clone()).write_json(&mut json);
            }
            Ok(Some(FieldRef::Value(value))) => value.write_json(&mut json),
            Ok(Some(_)) => return self.label.fail("unexpected data type"),
        }
        // JSON writing produces UTF-8 (strings are valid UTF-8 and escaped).
        let text = String::from_utf8_lossy(&json).into_owned();
        let mut record = record.clone();
        match record.set(&self.field, Value::String(text.into())) {
            Ok(()) => ProcessedRecord::Single(record),
            Err(err) => self.label.fail(path_error(&err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_test_utils::results::{self, fields, single};

    fn settings(field: &str) -> Settings {
        results::settings(&[("field", field)])
    }

    #[tokio::test]
    async fn decode_turns_raw_json_into_structured_data_with_float_numbers() {
        let mut p = build_decode("d", &settings(".Payload.After")).unwrap();
        let out = p
            .process(&[
                Record::new("p", r#"{"id":3,"tags":["a"]}"#),
                Record::new("q", ""),
            ])
            .await;
        assert_eq!(
            single(&out[0]).payload.after,
            Some(Data::Structured(fields(&[
                ("id", Value::Float(3.0)),
                ("tags", Value::Array(vec![Value::String("a".into())])),
            ])))
        );
        assert_eq!(single(&out[1]).payload.after, None);
    }

    #[tokio::test]
    async fn decode_of_a_nested_string_and_of_structured_data() {
        let mut p = build_decode("d", &settings(".Payload.After.foo")).unwrap();
        let mut record = Record::new("p", "");
        record.payload.after = Some(Data::Structured(fields(&[(
            "foo",
            Value::String("[1]".into()),
        )])));
        let out = p.process(&[record]).await;
        assert_eq!(
            single(&out[0]).payload.after,
            Some(Data::Structured(fields(&[(
                "foo",
                Value::Array(vec![Value::Float(1.0)])
            )])))
        );
        let mut p = build_decode("d", &settings(".Payload.After")).unwrap();
        let mut structured = Record::new("p", "");
        structured.payload.after = Some(Data::Structured(fields(&[("a", Value::Int(1))])));
        let out = p.process(std::slice::from_ref(&structured)).await;
        assert_eq!(single(&out[0]), &structured);
    }

    #[tokio::test]
    async fn decode_fails_invalid_json() {
        let mut p = build_decode("d", &settings(".Key")).unwrap();
        let mut record = Record::new("p", "");
        record.key = Some(Data::raw(r#""invalid":"json""#));
        let out = p.process(&[record]).await;
        let ProcessedRecord::Error(e) = &out[0] else {
            panic!("{out:?}")
        };
        assert!(
            e.to_string()
                .contains("failed to unmarshal raw data as JSON")
        );
    }

    #[tokio::test]
    async fn encode_writes_compact_sorted_json_as_raw_data_or_a_string() {
        let mut p = build_encode("e", &settings(".Payload.After")).unwrap();
        let mut record = Record::new("p", "");
        record.payload.after = Some(Data::Structured(fields(&[
            ("b", Value::Float(4.0)),
            ("a", Value::String("<x>".into())),
        ])));
        let out = p.process(&[record.clone(), Record::new("q", "hi")]).await;
        assert_eq!(
            single(&out[0]).payload.after,
            Some(Data::raw(r#"{"a":"\u003cx\u003e","b":4}"#))
        );
        assert_eq!(single(&out[1]).payload.after, Some(Data::raw(r#""aGk=""#)));

        let mut p = build_encode("e", &settings(".Payload.After.b")).unwrap();
        let out = p.process(&[record]).await;
        let Some(Data::Structured(after)) = &single(&out[0]).payload.after else {
            panic!()
        };
        assert_eq!(after["b"], Value::String("4".into()));
    }

    #[tokio::test]
    async fn encode_writes_a_time_as_go_marshal_json() {
        let time = Value::Time(funnel_record::Timestamp::from_unix_nanos(
            1_611_254_412_500_000_000,
        ));
        let mut record = Record::new("p", "");
        record.payload.after = Some(Data::Structured(fields(&[("t", time)])));
        let mut p = build_encode("e", &settings(".Payload.After")).unwrap();
        let out = p.process(&[record.clone()]).await;
        assert_eq!(
            single(&out[0]).payload.after,
            Some(Data::raw(r#"{"t":"2021-01-21T18:40:12.5Z"}"#))
        );
        let mut p = build_encode("e", &settings(".Payload.After.t")).unwrap();
        let out = p.process(&[record.clone()]).await;
        let Some(Data::Structured(after)) = &single(&out[0]).payload.after else {
            panic!()
        };
        assert_eq!(
            after["t"],
            Value::String(r#""2021-01-21T18:40:12.5Z""#.into())
        );
        let mut p = build_decode("d", &settings(".Payload.After.t")).unwrap();
        let out = p.process(&[record]).await;
        let ProcessedRecord::Error(err) = &out[0] else {
            panic!("{:?}", out[0])
        };
        assert!(
            err.to_string().contains("unexpected data type time.Time"),
            "{err}"
        );
    }

    #[test]
    fn the_field_must_be_under_key_or_a_payload_side() {
        for field in [".Metadata", ".Payload", ".Position"] {
            assert!(build_decode("d", &settings(field)).is_err(), "{field}");
            assert!(build_encode("e", &settings(field)).is_err(), "{field}");
        }
        assert!(build_encode("e", &Settings::new()).is_err());
    }
}
