//! The `field.*` processors: `field.set`, `field.rename`, `field.exclude` and
//! `field.convert`. Each works on fields named by references (`.Metadata.table`,
//! `.Payload.After.user.id`, `.Key["a key"]`, see `funnel_record::path`).
//!
//! # `field.set`
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `field` | required | The field to set; anything but `.Position`. A missing nested field is created. |
//! | `value` | required | A Go template evaluated on the record; its output is stored as a string. |
//!
//! # `field.rename`
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `mapping` | required | Comma-separated `reference:newName` pairs, e.g. `.Metadata.a:b,.Payload.After.c:d`. Only metadata keys and fields inside structured data can be renamed; a missing field is skipped. |
//!
//! # `field.exclude`
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `fields` | required | Comma-separated references to remove; `.Metadata` empties the map, `.Payload` clears both sides. `.Position` and `.Operation` are refused. |
//!
//! # `field.convert`
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `field` | required | The field to convert, under `.Key` or `.Payload`. |
//! | `type` | required | `string`, `int`, `float`, `bool` or `time`. |
//!
//! As in Conduit, the value is first written as text (`1.5`, `true`, or `1`/`0` for a
//! boolean converted to a number) and the text is then parsed into the type with Go's
//! rules (`strconv.Atoi`, `ParseFloat`, `ParseBool`). `time` reads an integer as Unix
//! nanoseconds (UTC) and anything else as RFC 3339 (`time.Parse(time.RFC3339Nano, ..)`),
//! and stores a [`Value::Time`], written in JSON as `"2021-01-21T18:40:12.345678999Z"`.
//! A time written with an offset (`+02:00`) is kept as the same instant in UTC (Go keeps
//! the offset as its zone). A time field is first written as Go's `time.Time.String()`
//! (`2021-01-21 18:40:12.345678999 +0000 UTC`), as Conduit's `fmt.Sprintf("%v")` does:
//! converting it to `string` gives that text, and converting it to `int`, `float`,
//! `bool` or even `time` fails, since that text parses as none of them (as in Conduit).

use funnel_core::{ProcessedRecord, Processor};
use funnel_record::{Data, FieldPath, FieldRef, Record, Target, Timestamp, Value, go};
use funnel_template::Template;

use crate::settings::{FieldRule, SettingsReader, path_error, settings_with_sdk};
use crate::{SettingSpec, Settings, SettingsError};

use super::time::parse_rfc3339;
use super::{Label, RecordProcessor, boxed};

// ---------------------------------------------------------------------------------------
// field.set
// ---------------------------------------------------------------------------------------

/// One line about `field.set`.
pub(crate) const SET_SUMMARY: &str = "Sets a field to the output of a Go template.";

/// The settings `field.set` accepts.
pub(crate) const SET_SETTINGS: &[SettingSpec] = settings_with_sdk![
    SettingSpec {
        name: "field",
        default: None,
        required: true,
        description: "Reference to the field to set (anything but .Position), e.g. .Metadata.table.",
    },
    SettingSpec {
        name: "value",
        default: None,
        required: true,
        description: "Go template evaluated on the record; its output (a string) is the new value.",
    },
];

/// Validates the settings and builds `field.set`.
pub(crate) fn build_set(
    id: &str,
    settings: &Settings,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    let field = reader
        .required_str("field")
        .and_then(|f| reader.field("field", f, FieldRule::NotPosition));
    let value = reader
        .required_str("value")
        .and_then(|v| match Template::parse(v) {
            Ok(t) => Some(t),
            Err(err) => {
                reader.error(
                    "value",
                    format!("failed to parse the \"value\" param template: {err}"),
                );
                None
            }
        });
    let (field, value) = reader.finish_with(field.zip(value))?;
    Ok(boxed(SetField {
        label: Label::new("field.set", id),
        literal: value.as_literal().map(str::to_owned),
        field,
        value,
    }))
}

struct SetField {
    label: Label,
    field: FieldPath,
    value: Template,
    /// The value when the template has no actions (rendered once).
    literal: Option<String>,
}

impl RecordProcessor for SetField {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let mut copy = record.clone();
        match self.process_record_in_place(&mut copy) {
            ProcessedRecord::Unchanged => ProcessedRecord::Single(copy),
            other => other,
        }
    }

    fn process_record_in_place(&mut self, record: &mut Record) -> ProcessedRecord {
        let value = match &self.literal {
            Some(text) => text.clone(),
            None => match self.value.render(record) {
                Ok(text) => text,
                Err(err) => {
                    return self.label.fail(format_args!(
                        "failed to execute the \"value\" template: {err}"
                    ));
                }
            },
        };
        // A failed set leaves the record as it was.
        match record.set(&self.field, Value::String(value)) {
            Ok(()) => ProcessedRecord::Unchanged,
            Err(err) => self.label.fail(path_error(&err)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// field.rename
// ---------------------------------------------------------------------------------------

/// One line about `field.rename`.
pub(crate) const RENAME_SUMMARY: &str = "Renames metadata keys and structured data fields.";

/// The settings `field.rename` accepts.
pub(crate) const RENAME_SETTINGS: &[SettingSpec] = settings_with_sdk![SettingSpec {
    name: "mapping",
    default: None,
    required: true,
    description: "Comma-separated reference:newName pairs, e.g. .Metadata.key:id,.Payload.After.foo:bar. \
                  Top-level fields (.Metadata, .Payload, .Key, ...) cannot be renamed.",
}];

/// Validates the settings and builds `field.rename`.
pub(crate) fn build_rename(
    id: &str,
    settings: &Settings,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    let mapping = reader.required_str("mapping").and_then(|text| {
        let mut pairs = Vec::new();
        let mut ok = true;
        for pair in text.split(',') {
            let parts: Vec<&str> = pair.split(':').map(str::trim).collect();
            let [reference, new_name] = parts.as_slice() else {
                reader.error(
                    "mapping",
                    format!(
                        "wrong format for the \"mapping\" param {pair:?}, should be a comma separated \
                         list of reference:newName pairs, e.g. .Metadata.key:id,.Payload.After.foo:bar"
                    ),
                );
                ok = false;
                continue;
            };
            if new_name.is_empty() {
                reader.error("mapping", format!("the new name for {reference:?} is empty"));
                ok = false;
                continue;
            }
            match FieldPath::parse(reference) {
                Ok(path)
                    if matches!(
                        path.target(),
                        Target::MetadataField(_) | Target::DataField(..)
                    ) =>
                {
                    pairs.push((path, (*new_name).to_owned()));
                }
                Ok(_) => {
                    reader.error(
                        "mapping",
                        format!("cannot rename one of the top-level fields {reference:?}"),
                    );
                    ok = false;
                }
                Err(err) => {
                    reader.error("mapping", path_error(&err));
                    ok = false;
                }
            }
        }
        ok.then_some(pairs)
    });
    let mapping = reader.finish_with(mapping)?;
    Ok(boxed(RenameField {
        label: Label::new("field.rename", id),
        mapping,
    }))
}

struct RenameField {
    label: Label,
    mapping: Vec<(FieldPath, String)>,
}

impl RecordProcessor for RenameField {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let mut record = record.clone();
        for (path, new_name) in &self.mapping {
            if let Err(err) = record.rename(path, new_name) {
                return self.label.fail(path_error(&err));
            }
        }
        ProcessedRecord::Single(record)
    }
}

// ---------------------------------------------------------------------------------------
// field.exclude
// ---------------------------------------------------------------------------------------

/// One line about `field.exclude`.
pub(crate) const EXCLUDE_SUMMARY: &str = "Removes fields from the record.";

/// The settings `field.exclude` accepts.
pub(crate) const EXCLUDE_SETTINGS: &[SettingSpec] = settings_with_sdk![SettingSpec {
    name: "fields",
    default: None,
    required: true,
    description: "Comma-separated references of the fields to remove, e.g. .Metadata,.Payload.After.foo. \
                  .Position and .Operation cannot be excluded.",
}];

/// Validates the settings and builds `field.exclude`.
pub(crate) fn build_exclude(
    id: &str,
    settings: &Settings,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    let fields = reader.required_str("fields").and_then(|text| {
        let mut paths = Vec::new();
        let mut ok = true;
        for reference in text.split(',').map(str::trim) {
            match FieldPath::parse(reference) {
                Ok(path) => match path.target() {
                    Target::Position | Target::Operation => {
                        reader.error(
                            "fields",
                            "it is not allowed to exclude the fields \".Operation\" and \".Position\"",
                        );
                        ok = false;
                    }
                    Target::Record => {
                        reader.error("fields", "cannot exclude the whole record (\".\")");
                        ok = false;
                    }
                    _ => paths.push(path),
                },
                Err(err) => {
                    reader.error("fields", path_error(&err));
                    ok = false;
                }
            }
        }
        ok.then_some(paths)
    });
    let fields = reader.finish_with(fields)?;
    Ok(boxed(ExcludeFields {
        label: Label::new("field.exclude", id),
        fields,
    }))
}

struct ExcludeFields {
    label: Label,
    fields: Vec<FieldPath>,
}

impl RecordProcessor for ExcludeFields {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let mut record = record.clone();
        for path in &self.fields {
            if let Err(err) = record.remove(path) {
                return self.label.fail(path_error(&err));
            }
        }
        ProcessedRecord::Single(record)
    }
}

// ---------------------------------------------------------------------------------------
// field.convert
// ---------------------------------------------------------------------------------------

/// One line about `field.convert`.
pub(crate) const CONVERT_SUMMARY: &str = "Converts a field to string, int, float, bool or time.";

/// The settings `field.convert` accepts.
pub(crate) const CONVERT_SETTINGS: &[SettingSpec] = settings_with_sdk![
    SettingSpec {
        name: "field",
        default: None,
        required: true,
        description: "Reference to the field to convert, under .Key or .Payload (structured data).",
    },
    SettingSpec {
        name: "type",
        default: None,
        required: true,
        description: "Target type: string, int, float, bool or time (Unix nanoseconds or RFC 3339 text).",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Int,
    Float,
    Bool,
    Time,
}

/// Validates the settings and builds `field.convert`.
pub(crate) fn build_convert(
    id: &str,
    settings: &Settings,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    let mut reader = SettingsReader::new(settings);
    let field = reader
        .required_str("field")
        .and_then(|f| reader.field("field", f, FieldRule::KeyOrPayload));
    let kind = match reader.str("type") {
        None => {
            reader.error("type", "required parameter is not provided");
            None
        }
        Some(_) => reader
            .one_of("type", &["string", "int", "float", "bool", "time"])
            .map(|t| match t {
                "int" => Kind::Int,
                "float" => Kind::Float,
                "bool" => Kind::Bool,
                "time" => Kind::Time,
                _ => Kind::String,
            }),
    };
    let (field, kind) = reader.finish_with(field.zip(kind))?;
    Ok(boxed(ConvertField {
        label: Label::new("field.convert", id),
        field,
        kind,
    }))
}

struct ConvertField {
    label: Label,
    field: FieldPath,
    kind: Kind,
}

impl ConvertField {
    /// The value as text, as Conduit's `toString` writes it before parsing.
    fn text(&self, value: Option<FieldRef<'_>>) -> String {
        match value {
            None | Some(FieldRef::Value(Value::Null)) => "<nil>".to_owned(),
            Some(FieldRef::Value(Value::String(s))) => s.clone(),
            Some(FieldRef::Value(Value::Int(n))) => n.to_string(),
            Some(FieldRef::Value(Value::Uint(n))) => n.to_string(),
            Some(FieldRef::Value(Value::Float(f))) => go::FloatF(*f).to_string(),
            Some(FieldRef::Value(Value::Bool(b))) => {
                if matches!(self.kind, Kind::Int | Kind::Float) {
                    if *b { "1" } else { "0" }.to_owned()
                } else {
                    b.to_string()
                }
            }
            Some(FieldRef::Value(other)) => go::sprint(other),
            Some(FieldRef::Data(Data::Raw(bytes))) => String::from_utf8_lossy(bytes).into_owned(),
            Some(FieldRef::Data(Data::Structured(map))) => {
                let mut text = String::new();
                go::write_sprint_map(&mut text, map);
                text
            }
            // The field rule keeps references under .Key and .Payload.
            Some(_) => String::new(),
        }
    }

    fn convert(&self, text: String) -> Result<Value, String> {
        match self.kind {
            Kind::String => Ok(Value::String(text)),
            Kind::Int => parse_int(&text).map(Value::Int),
            Kind::Float => parse_float(&text).map(Value::Float),
            Kind::Bool => funnel_template::parse_bool(&text)
                .map(Value::Bool)
                .ok_or_else(|| format!("strconv.ParseBool: parsing {text:?}: invalid syntax")),
            Kind::Time => {
                let time = match parse_int(&text) {
                    Ok(nanos) => Timestamp::from_unix_nanos(nanos),
                    Err(_) => parse_rfc3339(&text)?,
                };
                Ok(Value::Time(time))
            }
        }
    }
}

impl RecordProcessor for ConvertField {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let text = match record.get(&self.field) {
            Ok(value) => self.text(value),
            Err(err) => return self.label.fail(path_error(&err)),
        };
        let value = match self.convert(text) {
            Ok(value) => value,
            Err(err) => return self.label.fail(err),
        };
        let mut record = record.clone();
        match record.set(&self.field, value) {
            Ok(()) => ProcessedRecord::Single(record),
            Err(err) => self.label.fail(path_error(&err)),
        }
    }
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits.
fn parse_int(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {text:?}: invalid syntax"));
    }
    text.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {text:?}: value out of range"))
}

/// Go's `strconv.ParseFloat(text, 64)`.
fn parse_float(text: &str) -> Result<f64, String> {
    let invalid = || format!("strconv.ParseFloat: parsing {text:?}: invalid syntax");
    // Rust accepts "infinity" and "nan" spelled like Go does, plus nothing Go refuses
    // that matters here; a finite literal that overflows is Go's range error.
    let value: f64 = text.parse().map_err(|_| invalid())?;
    let lower = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if value.is_infinite() && !matches!(lower.as_str(), "inf" | "infinity") {
        return Err(format!(
            "strconv.ParseFloat: parsing {text:?}: value out of range"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_test_utils::results::{error_text, fields, output, process_one, settings, single};

    fn structured(after: &[(&str, Value)]) -> Record {
        let mut record = Record::new("p", "");
        record.payload.after = Some(Data::Structured(fields(after)));
        record
    }

    // field.set

    #[tokio::test]
    async fn field_set_writes_a_literal_into_metadata_and_structured_data() {
        let mut p = build_set(
            "s",
            &settings(&[("field", ".Metadata.table"), ("value", "users")]),
        )
        .unwrap();
        let out = output(&mut p, Record::new("p", "raw")).await;
        assert_eq!(out.metadata.get("table"), Some("users"));

        let mut p = build_set(
            "s",
            &settings(&[("field", ".Payload.After.a.b"), ("value", "x")]),
        )
        .unwrap();
        let out = output(&mut p, structured(&[])).await;
        assert_eq!(
            out.payload.after,
            Some(Data::Structured(fields(&[(
                "a",
                Value::Map(fields(&[("b", Value::String("x".into()))]))
            )])))
        );
    }

    #[tokio::test]
    async fn field_set_fails_a_raw_payload_it_cannot_reach_into() {
        let mut p = build_set(
            "s",
            &settings(&[("field", ".Payload.After.a"), ("value", "x")]),
        )
        .unwrap();
        let out = process_one(&mut p, Record::new("p", "raw")).await;
        let message = error_text(&out);
        assert!(message.contains("processor \"s\" (field.set)"), "{message}");
        assert!(message.contains("raw data"), "{message}");
    }

    #[tokio::test]
    async fn field_set_renders_the_template_per_record_of_a_batch() {
        let mut p = build_set(
            "s",
            &settings(&[
                ("field", ".Metadata.copy"),
                ("value", "{{ .Payload.After.name }}"),
            ]),
        )
        .unwrap();
        let batch = [
            structured(&[("name", Value::String("a".into()))]),
            structured(&[("name", Value::String("b".into()))]),
        ];
        let out = p.process(&batch).await;
        let names: Vec<String> = out
            .into_iter()
            .map(|r| {
                single(&r)
                    .clone()
                    .metadata
                    .get("copy")
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn field_set_refuses_position_missing_settings_and_bad_templates() {
        let e = build_set("s", &settings(&[("field", ".Position"), ("value", "x")]))
            .err()
            .unwrap();
        assert!(
            e[0].message
                .contains("must be excluded from the list [.Position]")
        );
        let e = build_set("s", &Settings::new()).err().unwrap();
        assert_eq!(e.len(), 2);
        let e = build_set("s", &settings(&[("field", ".Foo"), ("value", "x")]))
            .err()
            .unwrap();
        assert!(e[0].message.contains("invalid reference \".Foo\""));
        let e = build_set("s", &settings(&[("field", ".Key"), ("value", "{{")]))
            .err()
            .unwrap();
        assert_eq!(e[0].setting, "value");
    }

    // field.rename

    #[tokio::test]
    async fn field_rename_moves_metadata_and_payload_fields() {
        let mut p = build_rename(
            "r",
            &settings(&[("mapping", ".Metadata.a:b, .Payload.After.c:d")]),
        )
        .unwrap();
        let mut record = structured(&[("c", Value::Int(1))]);
        record.metadata.insert("a", "x");
        let out = output(&mut p, record).await;
        assert_eq!(out.metadata.get("b"), Some("x"));
        assert_eq!(
            out.payload.after,
            Some(Data::Structured(fields(&[("d", Value::Int(1))])))
        );
    }

    #[tokio::test]
    async fn field_rename_fails_raw_data_and_skips_missing_fields() {
        let mut p = build_rename("r", &settings(&[("mapping", ".Payload.After.c:d")])).unwrap();
        let out = p.process(&[Record::new("p", "raw"), structured(&[])]).await;
        assert!(error_text(&out[0]).contains("raw data"));
        assert_eq!(single(&out[1]).clone(), structured(&[]));
    }

    #[test]
    fn field_rename_refuses_top_level_fields_and_malformed_pairs() {
        let e = build_rename("r", &settings(&[("mapping", ".Metadata:foo")]))
            .err()
            .unwrap();
        assert!(
            e[0].message
                .contains("cannot rename one of the top-level fields \".Metadata\"")
        );
        let e = build_rename("r", &settings(&[("mapping", ".Metadata.a")]))
            .err()
            .unwrap();
        assert!(e[0].message.contains("wrong format"));
        let e = build_rename("r", &settings(&[("mapping", ".Metadata.a:")]))
            .err()
            .unwrap();
        assert!(e[0].message.contains("empty"));
        let e = build_rename("r", &Settings::new()).err().unwrap();
        assert_eq!(e[0].message, "required parameter is not provided");
    }

    // field.exclude

    #[tokio::test]
    async fn field_exclude_removes_every_listed_field() {
        let mut p =
            build_exclude("x", &settings(&[("fields", ".Metadata,.Payload.After.a")])).unwrap();
        let mut record = structured(&[("a", Value::Int(1)), ("b", Value::Int(2))]);
        record.metadata.insert("k", "v");
        let out = output(&mut p, record).await;
        assert!(out.metadata.is_empty() && !out.metadata.is_nil());
        assert_eq!(
            out.payload.after,
            Some(Data::Structured(fields(&[("b", Value::Int(2))])))
        );
    }

    #[tokio::test]
    async fn field_exclude_of_a_whole_payload_side_works_on_raw_data_too() {
        let mut p = build_exclude("x", &settings(&[("fields", ".Payload.After")])).unwrap();
        let out = p.process(&[Record::new("p", "raw"), structured(&[])]).await;
        for result in out {
            assert_eq!(single(&result).payload.after, None);
        }
    }

    #[test]
    fn field_exclude_refuses_position_operation_and_the_record() {
        for fields in [".Position", ".Operation", ".Metadata,.Operation"] {
            let e = build_exclude("x", &settings(&[("fields", fields)]))
                .err()
                .unwrap();
            assert!(e[0].message.contains("not allowed to exclude"), "{fields}");
        }
        assert!(build_exclude("x", &settings(&[("fields", ".")])).is_err());
        assert!(build_exclude("x", &Settings::new()).is_err());
    }

    // field.convert

    #[tokio::test]
    async fn field_convert_parses_text_into_each_type() {
        for (kind, input, expected) in [
            ("int", Value::String("54".into()), Value::Int(54)),
            ("float", Value::Int(54), Value::Float(54.0)),
            ("bool", Value::Float(1.0), Value::Bool(true)),
            (
                "string",
                Value::Float(123.345),
                Value::String("123.345".into()),
            ),
            ("int", Value::Bool(true), Value::Int(1)),
            (
                "time",
                Value::Int(1_704_198_896_123_456_789),
                Value::Time(Timestamp::from_unix_nanos(1_704_198_896_123_456_789)),
            ),
            (
                "time",
                Value::String("2024-01-02T14:34:56.5+02:00".into()),
                Value::Time(Timestamp::from_unix_nanos(1_704_198_896_500_000_000)),
            ),
            (
                "string",
                Value::Time(Timestamp::from_unix_nanos(1_704_198_896_123_456_789)),
                Value::String("2024-01-02 12:34:56.123456789 +0000 UTC".into()),
            ),
        ] {
            let mut p = build_convert(
                "c",
                &settings(&[("field", ".Payload.After.v"), ("type", kind)]),
            )
            .unwrap();
            let out = output(&mut p, structured(&[("v", input.clone())])).await;
            assert_eq!(
                out.payload.after,
                Some(Data::Structured(fields(&[("v", expected)]))),
                "{kind} of {input:?}"
            );
        }
    }

    #[tokio::test]
    async fn field_convert_fails_with_go_parse_errors() {
        let mut p =
            build_convert("c", &settings(&[("field", ".Key.id"), ("type", "int")])).unwrap();
        let mut out_of_range = Record::new("p", "");
        out_of_range.key = Some(Data::Structured(fields(&[("id", Value::Float(1e19))])));
        let mut not_a_number = Record::new("p", "");
        not_a_number.key = Some(Data::Structured(fields(&[(
            "id",
            Value::String("nan".into()),
        )])));
        let out = p
            .process(&[out_of_range, not_a_number, Record::new("p", "raw")])
            .await;
        assert!(error_text(&out[0]).contains("value out of range"));
        assert!(error_text(&out[1]).contains("invalid syntax"));
        // No key at all: Conduit reads nil as "<nil>", which is not a number.
        assert!(error_text(&out[2]).contains("invalid syntax"));
    }

    #[tokio::test]
    async fn field_convert_of_a_time_to_anything_but_string_fails_like_conduit() {
        // Conduit writes the time with `%v` (Go's `time.Time.String()`) and parses that.
        let time = Value::Time(Timestamp::from_unix_nanos(1_611_254_412_000_000_000));
        for (kind, message) in [
            (
                "int",
                "strconv.Atoi: parsing \"2021-01-21 18:40:12 +0000 UTC\": invalid syntax",
            ),
            (
                "time",
                "parsing time \"2021-01-21 18:40:12 +0000 UTC\" as \
                 \"2006-01-02T15:04:05.999999999Z07:00\": cannot parse \
                 \" 18:40:12 +0000 UTC\" as \"T\"",
            ),
        ] {
            let mut p = build_convert(
                "c",
                &settings(&[("field", ".Payload.After.v"), ("type", kind)]),
            )
            .unwrap();
            let out = p.process(&[structured(&[("v", time.clone())])]).await;
            assert!(
                error_text(&out[0]).contains(message),
                "{}",
                error_text(&out[0])
            );
        }
    }

    #[test]
    fn field_convert_refuses_fields_outside_key_and_payload_and_unknown_types() {
        let e = build_convert("c", &settings(&[("field", ".Metadata.a"), ("type", "int")]))
            .err()
            .unwrap();
        assert!(e[0].message.contains("should match the regex"));
        let e = build_convert("c", &settings(&[("field", ".Key.a"), ("type", "map")]))
            .err()
            .unwrap();
        assert!(e[0].message.contains("[string,int,float,bool,time]"));
        let e = build_convert("c", &Settings::new()).err().unwrap();
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn go_number_parsing_matches_strconv() {
        assert_eq!(parse_int("-12"), Ok(-12));
        assert!(parse_int("1.5").unwrap_err().contains("invalid syntax"));
        assert!(parse_int("").unwrap_err().contains("invalid syntax"));
        assert!(parse_float("1e400").unwrap_err().contains("out of range"));
        assert_eq!(parse_float("-Inf"), Ok(f64::NEG_INFINITY));
    }
}
