//! `base64.decode` and `base64.encode`: standard base64 (with padding) of a field.
//!
//! # Settings (both)
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `field` | required | The field to decode or encode; anything but `.Position`. |
//!
//! Raw data stays raw data; a string field stays a string (decoded bytes that are not
//! UTF-8 are kept as bytes). `base64.encode` writes numbers and booleans as text first
//! (`1` is `MQ==`); structured data and maps are refused (`unexpected data type`), and a
//! field with no value is left alone.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use funnel_core::{Component, ProcessedRecord, Processor};
use funnel_record::{Data, FieldPath, FieldRef, Record, Value, go};

use crate::settings::{NotPositionField, parse, path_error, processor};
use crate::{Built, Settings};

use super::{Label, RecordProcessor, boxed, bytes_value, go_data_type};

/// `base64.decode` in the registry table.
pub(crate) const DECODE: Component =
    processor::<DecodeSettings>("base64.decode", "Decodes a base64 field.", build_decode);
/// `base64.encode` in the registry table.
pub(crate) const ENCODE: Component =
    processor::<EncodeSettings>("base64.encode", "Encodes a field as base64.", build_encode);

funnel_core::settings! {
    /// The settings `base64.decode` accepts (the SDK schema ones come on top).
    pub(crate) struct DecodeSettings {
        /// Reference to the field to decode (anything but .Position), e.g.
        /// .Payload.After.foo.
        pub(crate) field: NotPositionField = "field",
    }
}

funnel_core::settings! {
    /// The settings `base64.encode` accepts (the SDK schema ones come on top).
    pub(crate) struct EncodeSettings {
        /// Reference to the field to encode (anything but .Position), e.g.
        /// .Payload.After.foo.
        pub(crate) field: NotPositionField = "field",
    }
}

/// Validates the settings and builds `base64.decode`.
pub(crate) fn build_decode(id: &str, settings: &Settings) -> Built {
    let field = parse::<DecodeSettings>(settings)?.field.0;
    Ok(Base64::boxed("base64.decode", id, field, false))
}

/// Validates the settings and builds `base64.encode`.
pub(crate) fn build_encode(id: &str, settings: &Settings) -> Built {
    let field = parse::<EncodeSettings>(settings)?.field.0;
    Ok(Base64::boxed("base64.encode", id, field, true))
}

struct Base64 {
    label: Label,
    field: FieldPath,
    encode: bool,
}

/// What the field holds, in the two forms base64 cares about.
enum Input {
    Raw(Vec<u8>),
    Text(String),
}

impl Base64 {
    /// Processor `id` of `plugin`, encoding (or decoding) `field`.
    fn boxed(plugin: &'static str, id: &str, field: FieldPath, encode: bool) -> Box<dyn Processor> {
        boxed(Self {
            label: Label::new(plugin, id),
            field,
            encode,
        })
    }

    fn input(&self, record: &Record) -> Result<Option<Input>, String> {
        let found = record.get(&self.field).map_err(|e| path_error(&e))?;
        Ok(Some(match found {
            None | Some(FieldRef::Value(Value::Null)) => return Ok(None),
            Some(FieldRef::Data(Data::Raw(bytes))) => Input::Raw(bytes.to_vec()),
            Some(FieldRef::Value(Value::Bytes(bytes))) => Input::Raw(bytes.to_vec()),
            Some(FieldRef::Value(Value::String(s))) => Input::Text(s.to_string()),
            Some(FieldRef::MetadataValue(s)) => Input::Text(s.to_owned()),
            Some(FieldRef::Data(data)) => {
                return Err(format!("unexpected data type {}", go_data_type(data)));
            }
            Some(FieldRef::Value(value @ (Value::Map(_) | Value::Array(_)))) => {
                return Err(format!("unexpected data type {}", go::type_name(value)));
            }
            Some(FieldRef::Value(value)) if self.encode => Input::Text(go::sprint(value)),
            Some(FieldRef::Value(value)) => {
                return Err(format!("unexpected data type {}", go::type_name(value)));
            }
            Some(FieldRef::Operation(op)) if self.encode => Input::Text(op.to_string()),
            Some(_) => return Err("unexpected data type".to_owned()),
        }))
    }
}

impl RecordProcessor for Base64 {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let input = match self.input(record) {
            Ok(Some(input)) => input,
            Ok(None) => return ProcessedRecord::Single(record.clone()),
            Err(err) => return self.label.fail(err),
        };
        let value = if self.encode {
            let encoded = match &input {
                Input::Raw(bytes) => STANDARD.encode(bytes),
                Input::Text(text) => STANDARD.encode(text),
            };
            match input {
                Input::Raw(_) => Value::Bytes(encoded.into_bytes().into()),
                Input::Text(_) => Value::String(encoded.into()),
            }
        } else {
            let (bytes, raw) = match &input {
                Input::Raw(bytes) => (bytes.as_slice(), true),
                Input::Text(text) => (text.as_bytes(), false),
            };
            let decoded = match STANDARD.decode(bytes) {
                Ok(decoded) => decoded,
                Err(err) => {
                    return self.label.fail(format_args!(
                        "failed to decode the value: {}",
                        go_base64_error(&err, bytes.len())
                    ));
                }
            };
            if raw {
                Value::Bytes(decoded.into())
            } else {
                bytes_value(decoded)
            }
        };
        let mut record = record.clone();
        match record.set(&self.field, value) {
            Ok(()) => ProcessedRecord::Single(record),
            Err(err) => self.label.fail(path_error(&err)),
        }
    }
}

/// Go's `base64.CorruptInputError` text: `illegal base64 data at input byte N`, where
/// N is the offending byte or the start of an incomplete final group.
fn go_base64_error(err: &base64::DecodeError, len: usize) -> String {
    let offset = match err {
        base64::DecodeError::InvalidByte(offset, _)
        | base64::DecodeError::InvalidLastSymbol(offset, _) => *offset,
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
            len - len % 4
        }
    };
    format!("illegal base64 data at input byte {offset}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_test_utils::results::{self, error_text, single};

    fn settings(field: &str) -> Settings {
        results::settings(&[("field", field)])
    }

    fn with_key(value: Value) -> Record {
        let mut record = Record::new("p", "");
        record.key = Some(Data::Structured(results::fields(&[("foo", value)])));
        record
    }

    #[tokio::test]
    async fn encode_then_decode_round_trips_raw_and_string_fields() {
        let mut enc = build_encode("e", &settings(".Payload.After")).unwrap();
        let mut dec = build_decode("d", &settings(".Payload.After")).unwrap();
        let encoded = enc.process(&[Record::new("p", "foo")]).await;
        assert_eq!(single(&encoded[0]).payload.after, Some(Data::raw("Zm9v")));
        let decoded = dec.process(&[single(&encoded[0]).clone()]).await;
        assert_eq!(single(&decoded[0]).payload.after, Some(Data::raw("foo")));

        let mut enc = build_encode("e", &settings(".Key.foo")).unwrap();
        let out = enc
            .process(&[
                with_key(Value::String("bar".into())),
                with_key(Value::Int(1)),
            ])
            .await;
        assert_eq!(
            single(&out[0]).key,
            with_key(Value::String("YmFy".into())).key
        );
        assert_eq!(
            single(&out[1]).key,
            with_key(Value::String("MQ==".into())).key
        );
    }

    #[tokio::test]
    async fn structured_data_and_maps_are_refused_with_go_type_names() {
        let mut enc = build_encode("e", &settings(".Key")).unwrap();
        let out = enc.process(&[with_key(Value::Null)]).await;
        assert!(error_text(&out[0]).ends_with("unexpected data type opencdc.StructuredData"));
        let mut dec = build_decode("d", &settings(".Key.foo")).unwrap();
        let out = dec
            .process(&[
                with_key(Value::Int(1)),
                with_key(Value::Map(Default::default())),
            ])
            .await;
        assert!(error_text(&out[0]).ends_with("unexpected data type int"));
        assert!(error_text(&out[1]).ends_with("unexpected data type map[string]interface {}"));
    }

    #[tokio::test]
    async fn invalid_base64_fails_with_the_go_offset() {
        let mut dec = build_decode("d", &settings(".Key.foo")).unwrap();
        let out = dec
            .process(&[
                with_key(Value::String("bar".into())),
                with_key(Value::String("Zm9v!".into())),
            ])
            .await;
        assert!(
            error_text(&out[0])
                .ends_with("failed to decode the value: illegal base64 data at input byte 0")
        );
        assert!(error_text(&out[1]).ends_with("illegal base64 data at input byte 4"));
    }

    #[tokio::test]
    async fn a_missing_field_is_left_alone() {
        let mut enc = build_encode("e", &settings(".Key")).unwrap();
        let record = Record::new("p", "x");
        assert_eq!(
            enc.process(std::slice::from_ref(&record)).await,
            vec![ProcessedRecord::Single(record)]
        );
    }

    #[test]
    fn position_and_missing_fields_are_refused() {
        assert!(build_encode("e", &settings(".Position")).is_err());
        assert!(build_decode("d", &Settings::new()).is_err());
    }
}
