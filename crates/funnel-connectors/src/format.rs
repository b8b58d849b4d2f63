//! `sdk.record.format`: the bytes a destination writes for a record, as Conduit's SDK
//! makes them (its `RecordSerializer`s).
//!
//! One [`RecordFormat`] is chosen per destination from its settings, when the pipeline
//! is built, and every destination that writes a record as bytes (file, log, nats,
//! kafka, rabbitmq, mqtt, http, s3) encodes each record with it:
//!
//! * `opencdc/json` (the default): the record's compact OpenCDC JSON (options ignored);
//! * `template`: `sdk.record.format.options` is a Go template (with the sprig functions
//!   and `missingkey=error`), rendered on the record; its output is the message;
//! * `debezium/json`: a Kafka Connect envelope holding a Debezium change event (see
//!   [`Debezium`]), with the options `debezium.schema.name` and `debezium.rawData.key`
//!   (`k=v,k2=v2` in `sdk.record.format.options`).
//!
//! A template that does not parse is a configuration error on
//! `sdk.record.format.options`. A template that fails on a record (a missing key, a
//! failing function) fails that record only: the destination nacks it (the engine
//! sends it to the dead-letter queue) and writes the rest. Conduit's SDK instead falls
//! back to the OpenCDC JSON of such a record; Funnel does not write a message the
//! configuration did not ask for.

use funnel_core::typed::FromSetting;
use funnel_core::{DestinationAck, RecordError};
use funnel_record::{JsonLines, JsonOptions, Position, Record};
use funnel_template::Template;

use crate::{Settings, SettingsError};

mod debezium;
pub use debezium::Debezium;

/// `sdk.record.format`: the name of a record format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFormatName {
    /// `opencdc/json`.
    OpenCdcJson,
    /// `template`.
    Template,
    /// `debezium/json`.
    DebeziumJson,
}

impl FromSetting for RecordFormatName {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "opencdc/json" => Ok(Self::OpenCdcJson),
            "template" => Ok(Self::Template),
            "debezium/json" => Ok(Self::DebeziumJson),
            other => Err(format!(
                "{other:?} is not a record format (known: opencdc/json, debezium/json, template)"
            )),
        }
    }
}

/// The setting naming the format.
pub const FORMAT: &str = "sdk.record.format";
/// The setting holding the format's options (the template, for `template`).
pub const OPTIONS: &str = "sdk.record.format.options";

/// How a destination encodes a record: `sdk.record.format` with its options.
#[derive(Clone, Debug, Default)]
pub enum RecordFormat {
    /// `opencdc/json`: the record's compact OpenCDC JSON.
    #[default]
    OpenCdcJson,
    /// `template`: the Go template of `sdk.record.format.options`, rendered with
    /// `missingkey=error`.
    Template(Template),
    /// `debezium/json`: a Kafka Connect envelope of a Debezium change event.
    Debezium(Debezium),
}

impl RecordFormat {
    /// The format the settings of a destination ask for (already validated with the
    /// rest of its settings when the destination was).
    ///
    /// # Errors
    ///
    /// An unknown format name (on `sdk.record.format`); a template that is missing or
    /// does not parse (on `sdk.record.format.options`).
    pub fn from_settings(settings: &Settings) -> Result<Self, Vec<SettingsError>> {
        let get = |key: &str| {
            settings
                .get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let name = RecordFormatName::from_setting(get(FORMAT).unwrap_or("opencdc/json"))
            .map_err(|e| vec![SettingsError::new(FORMAT, e)])?;
        Self::new(name, get(OPTIONS)).map_err(|e| vec![SettingsError::new(OPTIONS, e)])
    }

    /// The format `name` with its `options` (`sdk.record.format.options`).
    ///
    /// # Errors
    ///
    /// What is wrong with the options: a template that is missing or does not parse.
    pub fn new(name: RecordFormatName, options: Option<&str>) -> Result<Self, String> {
        match name {
            RecordFormatName::OpenCdcJson => Ok(Self::OpenCdcJson),
            RecordFormatName::DebeziumJson => Ok(Self::Debezium(Debezium::from_options(options))),
            RecordFormatName::Template => {
                let text = options.ok_or_else(|| {
                    "required with sdk.record.format \"template\": the Go template each \
                     record is written as, e.g. {{ printf \"%s\" .Payload.After }}"
                        .to_owned()
                })?;
                Template::parse_strict(text)
                    .map(Self::Template)
                    .map_err(|e| format!("not a valid Go template: {e}"))
            }
        }
    }

    /// Appends the bytes of `record` to `out`. On error `out` is left as it was.
    ///
    /// # Errors
    ///
    /// When the template fails on this record.
    pub fn write(&self, record: &Record, out: &mut Vec<u8>) -> Result<(), RecordError> {
        match self {
            Self::OpenCdcJson => {
                record.write_json(out);
                Ok(())
            }
            Self::Template(template) => {
                let text = render(template, record)?;
                out.extend_from_slice(text.as_bytes());
                Ok(())
            }
            Self::Debezium(debezium) => {
                debezium.write(record, out);
                Ok(())
            }
        }
    }

    /// The bytes of `record`.
    ///
    /// # Errors
    ///
    /// When the template fails on this record.
    pub fn to_vec(&self, record: &Record) -> Result<Vec<u8>, RecordError> {
        match self {
            Self::OpenCdcJson => Ok(record.to_json()),
            Self::Template(template) => render(template, record).map(String::into_bytes),
            Self::Debezium(debezium) => {
                let mut out = Vec::with_capacity(record.size_hint() * 2 + 512);
                debezium.write(record, &mut out);
                Ok(out)
            }
        }
    }

    /// Appends each record's bytes and a `\n` to `out` (a file of lines); the records
    /// that failed are left out and returned.
    pub(crate) fn write_lines(&self, records: &[Record], out: &mut Vec<u8>) -> Unencoded {
        if let Self::OpenCdcJson = self {
            // Metadata a batch's records share is written once.
            let mut lines = JsonLines::new(out, JsonOptions::new());
            records.iter().for_each(|record| lines.write_line(record));
            return Unencoded::default();
        }
        let mut failed = Unencoded::default();
        for (i, record) in records.iter().enumerate() {
            match self.write(record, out) {
                Ok(()) => out.push(b'\n'),
                Err(e) => failed.0.push((i, e)),
            }
        }
        failed
    }

    /// True when encoding cannot fail (so a destination that skips encoding, as the
    /// log destination does when its level is off, loses no nack).
    pub(crate) fn infallible(&self) -> bool {
        !matches!(self, Self::Template(_))
    }
}

fn render(template: &Template, record: &Record) -> Result<String, RecordError> {
    template
        .render(record)
        .map_err(|e| RecordError::msg(format!("{FORMAT} template: {e}")))
}

/// The records of a batch that could not be encoded: their index in the batch and why.
#[derive(Debug, Default)]
pub(crate) struct Unencoded(Vec<(usize, RecordError)>);

impl Unencoded {
    /// The acks of a batch whose encoded records were written: a nack for each record
    /// that could not be encoded, an ack for the others, in order.
    pub(crate) fn acks(self, positions: Vec<Position>) -> impl Iterator<Item = DestinationAck> {
        let mut failed = self.0.into_iter().peekable();
        positions.into_iter().enumerate().map(move |(i, position)| {
            match failed.next_if(|(at, _)| *at == i) {
                Some((_, error)) => DestinationAck::nack(position, error),
                None => DestinationAck::ok(position),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use funnel_core::settings_of as settings;
    use funnel_record::{Data, Operation, Value};

    use super::*;

    fn record() -> Record {
        let mut r = Record::new("pos-1", "the payload");
        r.operation = Operation::Update;
        r.metadata.insert("table", "users");
        let mut key = funnel_record::StructuredData::new();
        key.insert("id", Value::Int(7));
        r.key = Some(Data::Structured(key));
        r
    }

    fn format(pairs: &[(&str, &str)]) -> RecordFormat {
        RecordFormat::from_settings(&settings(pairs)).unwrap()
    }

    fn template(text: &str) -> RecordFormat {
        format(&[
            ("sdk.record.format", "template"),
            ("sdk.record.format.options", text),
        ])
    }

    #[test]
    fn the_default_format_is_the_records_opencdc_json() {
        let r = record();
        for f in [
            format(&[]),
            format(&[("sdk.record.format", "opencdc/json")]),
        ] {
            assert_eq!(f.to_vec(&r).unwrap(), r.to_json());
            let mut out = b"x".to_vec();
            f.write(&r, &mut out).unwrap();
            assert_eq!(out[1..], r.to_json());
        }
    }

    #[test]
    fn a_template_format_writes_the_rendered_template() {
        let r = record();
        let f = template(r#"{{ printf "%s" .Payload.After }}"#);
        assert_eq!(f.to_vec(&r).unwrap(), b"the payload");
        let f = template(
            r#"{{ .Operation }} {{ .Metadata.table | upper }} {{ .Key.id }} {{ toJson .Key }}"#,
        );
        assert_eq!(
            String::from_utf8(f.to_vec(&r).unwrap()).unwrap(),
            r#"update USERS 7 {"id":7}"#
        );
        let mut out = b"x".to_vec();
        f.write(&r, &mut out).unwrap();
        assert_eq!(out, br#"xupdate USERS 7 {"id":7}"#);
    }

    #[test]
    fn a_missing_key_fails_the_record_and_leaves_the_output_as_it_was() {
        let f = template("{{ .Metadata.table }}/{{ .Metadata.nope }}");
        let mut out = b"before".to_vec();
        let e = f.write(&record(), &mut out).unwrap_err().to_string();
        assert_eq!(out, b"before");
        assert!(
            e.starts_with("sdk.record.format template: template: :1:"),
            "{e}"
        );
        assert!(e.ends_with(r#"map has no entry for key "nope""#), "{e}");
        assert!(f.to_vec(&record()).is_err());
    }

    #[test]
    fn lines_leave_out_the_records_that_failed_and_their_acks_are_nacks_in_order() {
        let f = template("{{ .Metadata.table }}");
        let mut other = record();
        other.metadata = funnel_record::Metadata::new();
        let records = [record(), other, record()];
        let mut out = Vec::new();
        let unencoded = f.write_lines(&records, &mut out);
        assert_eq!(out, b"users\nusers\n");
        let acks: Vec<bool> = unencoded
            .acks(vec!["a".into(), "b".into(), "c".into()])
            .map(|a| a.error.is_none())
            .collect();
        assert_eq!(acks, [true, false, true]);
    }

    #[test]
    fn unknown_formats_and_bad_templates_are_errors_on_their_settings() {
        let errors = |pairs: &[(&str, &str)]| -> Vec<String> {
            RecordFormat::from_settings(&settings(pairs))
                .unwrap_err()
                .iter()
                .map(|e| e.setting.clone())
                .collect()
        };
        assert_eq!(errors(&[(FORMAT, "avro")]), [FORMAT]);
        assert_eq!(errors(&[(FORMAT, "debezium")]), [FORMAT]);
        assert_eq!(errors(&[(FORMAT, "template")]), [OPTIONS]);
        assert_eq!(
            errors(&[(FORMAT, "template"), (OPTIONS, "{{ .Key")]),
            [OPTIONS]
        );
    }
}
