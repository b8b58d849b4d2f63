//! Records between Funnel and the wire (`opencdc.v1.Record`).

use funnel_record::{
    Data, Metadata, Operation, Payload, Position, Record, StructuredData, Value, metadata,
};
use prost_types::value::Kind;

use crate::pb::opencdc::v1 as wire;

/// A record a source plugin sent, as Conduit takes it in: missing data becomes empty
/// raw data, and `opencdc.readAt` (`read_at`, Unix nanoseconds) and
/// `conduit.source.connector.id` are set when the plugin left them out.
pub(crate) fn from_wire(record: wire::Record, connector_id: &str, read_at: &str) -> Record {
    let mut meta = Metadata::new();
    for (key, value) in record.metadata {
        meta.insert(key, value);
    }
    if meta.get(metadata::READ_AT).is_none() {
        meta.insert(metadata::READ_AT, read_at);
    }
    if meta.get(metadata::SOURCE_CONNECTOR_ID).is_none() {
        meta.insert(metadata::SOURCE_CONNECTOR_ID, connector_id);
    }
    let payload = record.payload.unwrap_or_default();
    Record {
        position: Position::new(record.position),
        operation: Operation::from_code(i64::from(record.operation)),
        metadata: meta,
        key: Some(data_from_wire(record.key)),
        payload: Payload {
            before: Some(data_from_wire(payload.before)),
            after: Some(data_from_wire(payload.after)),
        },
    }
}

/// A record for a destination plugin.
pub(crate) fn to_wire(record: &Record) -> wire::Record {
    wire::Record {
        position: record.position.0.to_vec(),
        operation: i32::try_from(record.operation.code()).unwrap_or_default(),
        metadata: record
            .metadata
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        key: record.key.as_ref().map(data_to_wire),
        payload: Some(wire::Change {
            before: record.payload.before.as_ref().map(data_to_wire),
            after: record.payload.after.as_ref().map(data_to_wire),
        }),
    }
}

fn data_from_wire(data: Option<wire::Data>) -> Data {
    match data.and_then(|d| d.data) {
        Some(wire::data::Data::RawData(bytes)) => Data::raw(bytes),
        Some(wire::data::Data::StructuredData(s)) => Data::Structured(struct_from_wire(s)),
        None => Data::raw(Vec::new()),
    }
}

fn struct_from_wire(s: prost_types::Struct) -> StructuredData {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, value_from_wire(v)))
        .collect()
}

fn value_from_wire(value: prost_types::Value) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => Value::Float(n),
        Some(Kind::StringValue(s)) => Value::String(s.into()),
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StructValue(s)) => Value::Map(struct_from_wire(s)),
        Some(Kind::ListValue(l)) => {
            Value::Array(l.values.into_iter().map(value_from_wire).collect())
        }
    }
}

fn data_to_wire(data: &Data) -> wire::Data {
    wire::Data {
        data: Some(match data {
            Data::Raw(bytes) => wire::data::Data::RawData(bytes.to_vec()),
            Data::Structured(map) => wire::data::Data::StructuredData(struct_to_wire(map)),
        }),
    }
}

fn struct_to_wire(map: &StructuredData) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.to_string(), value_to_wire(v)))
            .collect(),
    }
}

/// A structured value as protobuf's `Value`, as Go's `structpb.NewValue` makes it:
/// numbers become doubles, bytes base64 text, times RFC 3339 text.
#[allow(clippy::cast_precision_loss)]
fn value_to_wire(value: &Value) -> prost_types::Value {
    use base64::Engine as _;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Int(n) => Kind::NumberValue(*n as f64),
        Value::Uint(n) => Kind::NumberValue(*n as f64),
        Value::Float(n) => Kind::NumberValue(*n),
        Value::String(s) => Kind::StringValue(s.to_string()),
        Value::Bytes(b) => Kind::StringValue(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Time(t) => Kind::StringValue(t.to_rfc3339()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(value_to_wire).collect(),
        }),
        Value::Map(map) => Kind::StructValue(struct_to_wire(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_wire_and_gets_conduits_metadata() {
        let mut record = Record::new(Position::new(b"7".to_vec()), b"after".to_vec());
        record.key = Some(Data::Structured(StructuredData::from([(
            "id".to_owned(),
            Value::Int(3),
        )])));
        let back = from_wire(to_wire(&record), "p:src", "42");
        assert_eq!(back.position, record.position);
        assert_eq!(back.payload.after, record.payload.after);
        assert_eq!(back.payload.before, Some(Data::raw(Vec::new())));
        assert_eq!(
            back.key,
            Some(Data::Structured(StructuredData::from([(
                "id".to_owned(),
                Value::Float(3.0)
            )])))
        );
        assert_eq!(back.metadata.get(metadata::READ_AT), Some("42"));
        assert_eq!(
            back.metadata.get(metadata::SOURCE_CONNECTOR_ID),
            Some("p:src")
        );
    }
}
