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

use funnel_core::typed::FromSetting;
use funnel_core::{Component, ProcessedRecord};
use funnel_record::{Data, FieldPath, FieldRef, Record, Target, Timestamp, Value, go};
use funnel_template::Template;

use crate::settings::{
    KeyOrPayloadField, NotPositionField, parse, path_error, processor, template_setting,
};
use crate::{Built, Settings};

use super::time::parse_rfc3339;
use super::{Label, RecordProcessor, boxed};

// ---------------------------------------------------------------------------------------
// field.set
// ---------------------------------------------------------------------------------------

/// `field.set` in the registry table.
pub(crate) const SET: Component = processor::<SetSettings>(
    "field.set",
    "Sets a field to the output of a Go template.",
    build_set,
);

funnel_core::settings! {
    /// The settings `field.set` accepts (the SDK schema ones come on top).
    pub(crate) struct SetSettings {
        /// Reference to the field to set (anything but .Position), e.g. .Metadata.table.
        pub(crate) field: NotPositionField = "field",
        /// Go template evaluated on the record; its output (a string) is the new value.
        pub(crate) value: ValueTemplate = "value",
    }
}

template_setting!(
    /// The `value` template of `field.set`.
    ValueTemplate,
    "failed to parse the \"value\" param template"
);

/// Validates the settings and builds `field.set`.
pub(crate) fn build_set(id: &str, settings: &Settings) -> Built {
    let SetSettings { field, value } = parse(settings)?;
    Ok(boxed(SetField {
        label: Label::new("field.set", id),
        literal: value.0.as_literal().map(str::to_owned),
        field: field.0,
        value: value.0,
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
        match record.set(&self.field, Value::String(value.into())) {
            Ok(()) => ProcessedRecord::Unchanged,
            Err(err) => self.label.fail(path_error(&err)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// field.rename
// ---------------------------------------------------------------------------------------

/// `field.rename` in the registry table.
pub(crate) const RENAME: Component = processor::<RenameSettings>(
    "field.rename",
    "Renames metadata keys and structured data fields.",
    build_rename,
);

funnel_core::settings! {
    /// The settings `field.rename` accepts (the SDK schema ones come on top).
    pub(crate) struct RenameSettings {
        /// Comma-separated reference:newName pairs, e.g.
        /// .Metadata.key:id,.Payload.After.foo:bar. Top-level fields (.Metadata,
        /// .Payload, .Key, ...) cannot be renamed.
        pub(crate) mapping: RenameMapping = "mapping",
    }
}

/// The `reference:newName` pairs of `field.rename`, each reference a metadata key or a
/// field inside structured data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RenameMapping(Vec<(FieldPath, String)>);

impl FromSetting for RenameMapping {
    fn from_setting(text: &str) -> Result<Self, String> {
        let pair = |pair: &str| {
            let parts: Vec<&str> = pair.split(':').map(str::trim).collect();
            let [reference, new_name] = parts.as_slice() else {
                return Err(format!(
                    "wrong format for the \"mapping\" param {pair:?}, should be a comma separated \
                     list of reference:newName pairs, e.g. .Metadata.key:id,.Payload.After.foo:bar"
                ));
            };
            if new_name.is_empty() {
                return Err(format!("the new name for {reference:?} is empty"));
            }
            match FieldPath::parse(reference) {
                Ok(path)
                    if matches!(
                        path.target(),
                        Target::MetadataField(_) | Target::DataField(..)
                    ) =>
                {
                    Ok((path, (*new_name).to_owned()))
                }
                Ok(_) => Err(format!(
                    "cannot rename one of the top-level fields {reference:?}"
                )),
                Err(err) => Err(path_error(&err)),
            }
        };
        text.split(',')
            .map(pair)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Validates the settings and builds `field.rename`.
pub(crate) fn build_rename(id: &str, settings: &Settings) -> Built {
    let mapping = parse::<RenameSettings>(settings)?.mapping.0;
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

/// `field.exclude` in the registry table.
pub(crate) const EXCLUDE: Component = processor::<ExcludeSettings>(
    "field.exclude",
    "Removes fields from the record.",
    build_exclude,
);

funnel_core::settings! {
    /// The settings `field.exclude` accepts (the SDK schema ones come on top).
    pub(crate) struct ExcludeSettings {
        /// Comma-separated references of the fields to remove, e.g.
        /// .Metadata,.Payload.After.foo. .Position and .Operation cannot be excluded.
        pub(crate) fields: ExcludedFields = "fields",
    }
}

/// The references `field.exclude` removes: anything but `.Position`, `.Operation` and
/// the whole record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExcludedFields(Vec<FieldPath>);

impl FromSetting for ExcludedFields {
    fn from_setting(text: &str) -> Result<Self, String> {
        let field = |reference: &str| {
            let path = FieldPath::parse(reference).map_err(|err| path_error(&err))?;
            match path.target() {
                Target::Position | Target::Operation => Err(
                    "it is not allowed to exclude the fields \".Operation\" and \".Position\""
                        .to_owned(),
                ),
                Target::Record => Err("cannot exclude the whole record (\".\")".to_owned()),
                _ => Ok(path),
            }
        };
        text.split(',')
            .map(|reference| field(reference.trim()))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Validates the settings and builds `field.exclude`.
pub(crate) fn build_exclude(id: &str, settings: &Settings) -> Built {
    let fields = parse::<ExcludeSettings>(settings)?.fields.0;
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

/// `field.convert` in the registry table.
pub(crate) const CONVERT: Component = processor::<ConvertSettings>(
    "field.convert",
    "Converts a field to string, int, float, bool or time.",
    build_convert,
);

funnel_core::settings! {
    /// The settings `field.convert` accepts (the SDK schema ones come on top).
    pub(crate) struct ConvertSettings {
        /// Reference to the field to convert, under .Key or .Payload (structured data).
        pub(crate) field: KeyOrPayloadField = "field",
        /// Target type: string, int, float, bool or time (Unix nanoseconds or RFC 3339
        /// text).
        pub(crate) kind: Kind = "type",
    }
}

/// The type `field.convert` converts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Int,
    Float,
    Bool,
    Time,
}

impl FromSetting for Kind {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "string" => Ok(Self::String),
            "int" => Ok(Self::Int),
            "float" => Ok(Self::Float),
            "bool" => Ok(Self::Bool),
            "time" => Ok(Self::Time),
            _ => Err(format!(
                "{raw:?} value must be included in the list [string,int,float,bool,time]: \
                 inclusion validation failed"
            )),
        }
    }
}

/// Validates the settings and builds `field.convert`.
pub(crate) fn build_convert(id: &str, settings: &Settings) -> Built {
    let ConvertSettings { field, kind } = parse(settings)?;
    Ok(boxed(ConvertField {
        label: Label::new("field.convert", id),
        field: field.0,
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
            Some(FieldRef::Value(Value::String(s))) => s.to_string(),
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
            Kind::String => Ok(Value::String(text.into())),
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
