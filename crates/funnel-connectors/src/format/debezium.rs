//! `debezium/json`: a record as a Kafka Connect envelope holding a Debezium change
//! event, the bytes Conduit's SDK (`DebeziumConverter` with the JSON encoder) writes:
//!
//! ```json
//! {"schema":{"type":"struct","optional":false,"fields":[...]},
//!  "payload":{"before":null,"after":{"id":1},"source":{"opencdc.readAt":"..."},
//!             "op":"c","ts_ms":1700000000000,"transaction":null}}
//! ```
//!
//! * `before` / `after`: structured data as it is; raw data that is a JSON object is
//!   parsed (numbers become floats, as Go's `json.Unmarshal` reads them); other raw
//!   data becomes `{"<debezium.rawData.key>": <base64 of the bytes>}`; empty raw data and
//!   no data are `null`.
//! * `source`: the record's metadata; `op`: `c`, `u`, `d` or `r` (snapshot), `""` for
//!   another operation; `ts_ms`: `opencdc.readAt` in milliseconds, left out when it is
//!   missing or 0; `transaction`: `null`.
//! * `schema`: the Kafka Connect schema of that payload, as the SDK reflects it from the
//!   values: `before` and `after` are optional structs whose fields are those of the
//!   side that has data (the other side when one is `null`), `source` an optional
//!   struct of strings, then `op`, `ts_ms` and `transaction`. Its `name` is
//!   `debezium.schema.name` when set.
//!
//! Differences from the SDK: the fields of a struct schema are in key order (the SDK
//! lists a Go map's keys in random order); a time in structured data has a `string`
//! schema (the SDK fails on it).

use funnel_record::go::{Numbers, value_from_json};
use funnel_record::{Data, Metadata, Operation, Record, StructuredData, Value};

/// The default of `debezium.rawData.key`.
pub(crate) const DEFAULT_RAW_DATA_KEY: &str = "opencdc.rawData";

/// The options of `debezium/json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debezium {
    /// `debezium.schema.name`: the name of the envelope's schema (none when empty).
    pub schema_name: Option<String>,
    /// `debezium.rawData.key`: the field raw data that is not a JSON object goes in.
    pub raw_data_key: String,
}

impl Default for Debezium {
    fn default() -> Self {
        Self {
            schema_name: None,
            raw_data_key: DEFAULT_RAW_DATA_KEY.to_owned(),
        }
    }
}

impl Debezium {
    /// The options read from `sdk.record.format.options` (`k=v,k2=v2`, as the SDK
    /// splits them; other keys are ignored, as the SDK ignores them).
    pub fn from_options(options: Option<&str>) -> Self {
        let mut debezium = Self::default();
        for pair in options.map(str::trim).unwrap_or_default().split(',') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "debezium.schema.name" if !value.is_empty() => {
                    debezium.schema_name = Some(value.to_owned());
                }
                "debezium.rawData.key" if !value.is_empty() => {
                    value.clone_into(&mut debezium.raw_data_key);
                }
                _ => {}
            }
        }
        debezium
    }

    /// Appends the envelope of `record` to `out`.
    pub fn write(&self, record: &Record, out: &mut Vec<u8>) {
        let before = self.structured(record.payload.before.as_ref());
        let after = self.structured(record.payload.after.as_ref());
        let before = before.as_ref().map(Side::map);
        let after = after.as_ref().map(Side::map);
        let ts_ms = record
            .metadata
            .get(funnel_record::metadata::READ_AT)
            .and_then(|nanos| nanos.parse::<i64>().ok())
            .map_or(0, |nanos| nanos.div_euclid(1_000_000));

        let envelope = Schema {
            name: self.schema_name.clone(),
            fields: vec![
                side_schema("before", before.or(after)),
                side_schema("after", after.or(before)),
                source_schema(&record.metadata),
                Schema::of("string", false).field("op"),
                Schema::of("int64", true).field("ts_ms"),
                Schema {
                    fields: vec![
                        Schema::of("string", false).field("id"),
                        Schema::of("int64", false).field("total_order"),
                        Schema::of("int64", false).field("data_collection_order"),
                    ],
                    ..Schema::of("struct", true)
                }
                .field("transaction"),
            ],
            ..Schema::of("struct", false)
        };
        out.extend_from_slice(b"{\"schema\":");
        envelope.write(out);
        out.extend_from_slice(b",\"payload\":{\"before\":");
        write_side(out, before);
        out.extend_from_slice(b",\"after\":");
        write_side(out, after);
        out.extend_from_slice(b",\"source\":");
        write_metadata(out, &record.metadata);
        out.extend_from_slice(b",\"op\":");
        let op = match record.operation {
            Operation::Create => "c",
            Operation::Update => "u",
            Operation::Delete => "d",
            Operation::Snapshot => "r",
            Operation::Other(_) => "",
        };
        write_str(out, op);
        if ts_ms != 0 {
            out.extend_from_slice(b",\"ts_ms\":");
            out.extend_from_slice(ts_ms.to_string().as_bytes());
        }
        out.extend_from_slice(b",\"transaction\":null}}");
    }

    /// One side of the change as the SDK's `getStructuredData` makes it.
    fn structured<'a>(&self, data: Option<&'a Data>) -> Option<Side<'a>> {
        match data? {
            Data::Structured(map) => Some(Side::Borrowed(map)),
            Data::Raw(bytes) if bytes.is_empty() => None,
            Data::Raw(bytes) => match serde_json::from_slice::<serde_json::Value>(bytes) {
                // `json.Unmarshal` of `null` into a map leaves it nil.
                Ok(serde_json::Value::Null) => None,
                Ok(json @ serde_json::Value::Object(_)) => {
                    match value_from_json(json, Numbers::Float64) {
                        Value::Map(map) => Some(Side::Owned(map)),
                        _ => None,
                    }
                }
                // Not a JSON object: hoisted into a field.
                _ => {
                    let mut map = StructuredData::new();
                    map.insert(self.raw_data_key.as_str(), Value::Bytes(bytes.clone()));
                    Some(Side::Owned(map))
                }
            },
        }
    }
}

/// One side of the change: the record's own structured data, or data made from raw
/// data.
enum Side<'a> {
    Borrowed(&'a StructuredData),
    Owned(StructuredData),
}

impl Side<'_> {
    fn map(&self) -> &StructuredData {
        match self {
            Side::Borrowed(map) => map,
            Side::Owned(map) => map,
        }
    }
}

fn write_side(out: &mut Vec<u8>, side: Option<&StructuredData>) {
    match side {
        // Written as the record's own structured data is (sorted keys, Go's encoding).
        Some(map) => Value::Map(map.clone()).write_json(out),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_metadata(out: &mut Vec<u8>, metadata: &Metadata) {
    if metadata.is_nil() {
        out.extend_from_slice(b"null");
        return;
    }
    out.push(b'{');
    for (i, (key, value)) in metadata.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_str(out, value);
    }
    out.push(b'}');
}

/// A JSON string, escaped as Go's `encoding/json` escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) {
    Value::String(s.into()).write_json(out);
}

/// A Kafka Connect schema (the SDK's `kafkaconnect.Schema`), written with its members
/// in the SDK's order and its empty ones left out.
#[derive(Debug)]
struct Schema {
    kind: &'static str,
    optional: bool,
    name: Option<String>,
    items: Option<Box<Schema>>,
    fields: Vec<Schema>,
    field: Option<String>,
}

impl Schema {
    fn of(kind: &'static str, optional: bool) -> Self {
        Self {
            kind,
            optional,
            name: None,
            items: None,
            fields: Vec::new(),
            field: None,
        }
    }

    fn field(mut self, name: &str) -> Self {
        self.field = Some(name.to_owned());
        self
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":");
        write_str(out, self.kind);
        out.extend_from_slice(if self.optional {
            b",\"optional\":true"
        } else {
            b",\"optional\":false"
        });
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            out.extend_from_slice(b",\"name\":");
            write_str(out, name);
        }
        if let Some(items) = &self.items {
            out.extend_from_slice(b",\"items\":");
            items.write(out);
        }
        if !self.fields.is_empty() {
            out.extend_from_slice(b",\"fields\":[");
            for (i, field) in self.fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                field.write(out);
            }
            out.push(b']');
        }
        if let Some(field) = self.field.as_deref().filter(|f| !f.is_empty()) {
            out.extend_from_slice(b",\"field\":");
            write_str(out, field);
        }
        out.push(b'}');
    }
}

/// The schema of `before` or `after`: an optional struct of the fields of `map` (none
/// when neither side has data).
fn side_schema(name: &str, map: Option<&StructuredData>) -> Schema {
    map.map_or_else(|| Schema::of("struct", true), map_schema)
        .field(name)
}

/// The schema of the metadata: an optional struct of strings.
fn source_schema(metadata: &Metadata) -> Schema {
    Schema {
        fields: metadata
            .iter()
            .map(|(key, _)| Schema::of("string", false).field(key))
            .collect(),
        ..Schema::of("struct", true)
    }
    .field("source")
}

/// A string-keyed map: an optional struct with a field per key.
fn map_schema(map: &StructuredData) -> Schema {
    Schema {
        fields: map
            .iter()
            .map(|(key, value)| value_schema(value).field(key.as_ref()))
            .collect(),
        ..Schema::of("struct", true)
    }
}

/// The schema the SDK reflects from a value of structured data; a nil value (whose
/// type the SDK cannot know) is an optional string.
fn value_schema(value: &Value) -> Schema {
    match value {
        Value::Null => Schema::of("string", true),
        Value::Bool(_) => Schema::of("boolean", false),
        Value::Int(_) | Value::Uint(_) => Schema::of("int64", false),
        Value::Float(_) => Schema::of("double", false),
        Value::String(_) | Value::Time(_) => Schema::of("string", false),
        Value::Bytes(_) => Schema::of("bytes", true),
        Value::Array(items) => Schema {
            items: Some(Box::new(
                items
                    .first()
                    .map_or_else(|| Schema::of("string", true), value_schema),
            )),
            ..Schema::of("array", true)
        },
        Value::Map(map) => map_schema(map),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;

    fn envelope(debezium: &Debezium, record: &Record) -> String {
        let mut out = Vec::new();
        debezium.write(record, &mut out);
        String::from_utf8(out).unwrap()
    }

    const OP: &str = r#"{"type":"string","optional":false,"field":"op"}"#;
    const TS_MS: &str = r#"{"type":"int64","optional":true,"field":"ts_ms"}"#;
    const TRANSACTION: &str = r#"{"type":"struct","optional":true,"fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],"field":"transaction"}"#;

    #[test]
    fn a_create_is_the_envelope_the_sdk_writes() {
        let mut record = Record::new("p1", Bytes::new());
        record.operation = Operation::Create;
        let mut after = StructuredData::new();
        after.insert("id", Value::Int(1));
        after.insert("name", Value::String("ann".into()));
        record.payload.before = None;
        record.payload.after = Some(Data::Structured(after));
        record.metadata = Metadata::new();
        record
            .metadata
            .insert("opencdc.readAt", "1700000000123456789");
        record.metadata.insert("table", "users");
        let fields = r#"[{"type":"int64","optional":false,"field":"id"},{"type":"string","optional":false,"field":"name"}]"#;
        let want = format!(
            concat!(
                r#"{{"schema":{{"type":"struct","optional":false,"fields":["#,
                r#"{{"type":"struct","optional":true,"fields":{fields},"field":"before"}},"#,
                r#"{{"type":"struct","optional":true,"fields":{fields},"field":"after"}},"#,
                r#"{{"type":"struct","optional":true,"fields":[{{"type":"string","optional":false,"field":"opencdc.readAt"}},{{"type":"string","optional":false,"field":"table"}}],"field":"source"}},"#,
                r#"{op},{ts},{tx}]}},"#,
                r#""payload":{{"before":null,"after":{{"id":1,"name":"ann"}},"#,
                r#""source":{{"opencdc.readAt":"1700000000123456789","table":"users"}},"#,
                r#""op":"c","ts_ms":1700000000123,"transaction":null}}}}"#
            ),
            fields = fields,
            op = OP,
            ts = TS_MS,
            tx = TRANSACTION
        );
        assert_eq!(envelope(&Debezium::default(), &record), want);
    }

    #[test]
    fn raw_json_objects_are_parsed_other_raw_data_is_hoisted_and_the_schema_is_named() {
        let mut record = Record::new("p2", Bytes::new());
        record.operation = Operation::Update;
        record.metadata = Metadata::none();
        record.payload.before = Some(Data::Raw(Bytes::from_static(b"not json")));
        record.payload.after = Some(Data::Raw(Bytes::from_static(br#"{"b":[true],"a":1}"#)));
        let debezium = Debezium::from_options(Some(" debezium.schema.name=my.schema,x=y"));
        let want = format!(
            concat!(
                r#"{{"schema":{{"type":"struct","optional":false,"name":"my.schema","fields":["#,
                r#"{{"type":"struct","optional":true,"fields":[{{"type":"bytes","optional":true,"field":"opencdc.rawData"}}],"field":"before"}},"#,
                r#"{{"type":"struct","optional":true,"fields":[{{"type":"double","optional":false,"field":"a"}},{{"type":"array","optional":true,"items":{{"type":"boolean","optional":false}},"field":"b"}}],"field":"after"}},"#,
                r#"{{"type":"struct","optional":true,"field":"source"}},"#,
                r#"{op},{ts},{tx}]}},"#,
                r#""payload":{{"before":{{"opencdc.rawData":"bm90IGpzb24="}},"after":{{"a":1,"b":[true]}},"#,
                r#""source":null,"op":"u","transaction":null}}}}"#
            ),
            op = OP,
            ts = TS_MS,
            tx = TRANSACTION
        );
        assert_eq!(envelope(&debezium, &record), want);
        let custom = Debezium::from_options(Some("debezium.rawData.key=raw"));
        assert!(envelope(&custom, &record).contains(r#""before":{"raw":"bm90IGpzb24="}"#));
        assert_eq!(custom.schema_name, None);
    }

    #[test]
    fn a_side_without_data_takes_the_schema_of_the_other_and_operations_map_to_debezium_ops() {
        let mut record = Record::new("p3", Bytes::new());
        let mut before = StructuredData::new();
        before.insert("x", Value::Null);
        record.payload.before = Some(Data::Structured(before));
        record.payload.after = None;
        let text = envelope(&Debezium::default(), &record);
        assert!(text.contains(r#"{"type":"struct","optional":true,"fields":[{"type":"string","optional":true,"field":"x"}],"field":"after"}"#), "{text}");
        assert!(
            text.contains(r#""before":{"x":null},"after":null"#),
            "{text}"
        );
        record.payload.before = Some(Data::Raw(Bytes::new()));
        let text = envelope(&Debezium::default(), &record);
        assert!(text.contains(r#"{"type":"struct","optional":true,"field":"before"},{"type":"struct","optional":true,"field":"after"}"#), "{text}");
        assert!(text.contains(r#""before":null,"after":null"#), "{text}");
        for (operation, op) in [
            (Operation::Create, "c"),
            (Operation::Update, "u"),
            (Operation::Delete, "d"),
            (Operation::Snapshot, "r"),
            (Operation::Other(9), ""),
        ] {
            record.operation = operation;
            let text = envelope(&Debezium::default(), &record);
            assert!(text.contains(&format!(r#""op":"{op}","#)), "{text}");
        }
    }
}
