//! `jq`: transforms, filters or splits records with a jq program (jaq's dialect; not a
//! Conduit processor, a Funnel addition).
//!
//! # Settings
//!
//! | setting | default | |
//! |---|---|---|
//! | `filter` | — (required) | the jq program, compiled when the processor is built |
//! | `field` | `.Payload.After` | the data the program runs on: `.Key`, `.Payload.Before`, `.Payload.After` or a field inside one |
//! | `sdk.schema.*` | `true` | accepted for Conduit compatibility, no effect |
//!
//! A program that does not compile is a settings error on `filter` naming the problem
//! and where it is.
//!
//! # Input
//!
//! Structured data is the program's input as a JSON object. Raw data is parsed as JSON
//! first (a record whose raw data is not JSON is nacked); no data is `null`. For a field
//! inside `.Key` or a payload side, raw data holding a JSON object is parsed into
//! structured data first, and the field's value (or `null` when missing) is the input.
//!
//! # Results
//!
//! Every `null` result is dropped. Then:
//!
//! - no result: the record is filtered out (acked, not passed on);
//! - one result: it replaces the field;
//! - several results: the record is split into one record per result, in order, each a
//!   copy of the record with the field replaced;
//! - an error (`error("...")`, a type error, ...): the record is nacked with the
//!   error, naming the processor.
//!
//! A result replacing `.Key` or a payload side becomes structured data when it is an
//! object, raw data holding the text when it is a string, and raw data holding its JSON
//! otherwise. A result replacing a nested field is stored as it is.
//!
//! jq numbers map to Funnel integers when jaq holds them as integers, and to floats
//! otherwise; jq byte strings are bytes; a time is its RFC 3339 text. `halt` and
//! `halt_error` nack the record instead of stopping the process. `input` and `inputs`
//! have nothing to read.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::typed::FromSetting;
use funnel_core::{Component, ProcessedRecord, Processor, RecordError};
use funnel_record::{Data, DataSlot, FieldPath, Record, StructuredData, Target, Value};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data::JustLut};
use jaq_json::{Num, Val};

use crate::settings::{PayloadSideField, parse, processor};
use crate::{Built, Settings};

/// `jq` in the registry table.
pub(crate) const COMPONENT: Component = processor::<JqSettings>(
    "jq",
    "Transform, filter or split records with a jq program (Funnel addition, jaq dialect).",
    build,
);

funnel_core::settings! {
    /// The settings of `jq` (the SDK schema ones come on top).
    pub(crate) struct JqSettings {
        /// The jq program (jaq's dialect), applied to `field`. One result replaces the
        /// field, several split the record, none or null filter it out, an error nacks
        /// it.
        pub(crate) filter: Program = "filter",
        /// The data the program runs on: `.Key`, `.Payload.Before`, `.Payload.After` or
        /// a field inside one. Raw data is parsed as JSON first.
        pub(crate) field: PayloadSideField = "field" (default ".Payload.After"),
    }
}

/// jaq's data: values only (no inputs to read).
type JqData = JustLut<Val>;

/// A compiled jq program.
type Filter = jaq_core::Filter<JqData>;

/// The `filter` setting: a jq program, compiled when the processor is built; two are
/// equal when their texts are.
#[derive(Clone)]
pub(crate) struct Program {
    text: String,
    filter: Arc<Filter>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Program").field(&self.text).finish()
    }
}

impl PartialEq for Program {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl FromSetting for Program {
    fn from_setting(raw: &str) -> Result<Self, String> {
        compile(raw).map(|filter| Self {
            text: raw.to_owned(),
            filter: Arc::new(filter),
        })
    }
}

/// Builds `jq` processor `id`, compiling its program.
///
/// # Errors
///
/// A missing or invalid `filter`, an invalid `field`, unknown settings.
pub(crate) fn build(id: &str, settings: &Settings) -> Built {
    let JqSettings { filter, field } = parse(settings)?;
    Ok(Box::new(Jq {
        id: id.to_owned(),
        filter: filter.filter,
        field: field.0,
    }))
}

/// Compiles `program` with jaq's core, standard and JSON definitions.
fn compile(program: &str) -> Result<Filter, String> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let file = File {
        code: program,
        path: (),
    };
    let modules = loader
        .load(&arena, file)
        .map_err(|errors| load_errors(program, errors))?;
    Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| {
            let problems: Vec<String> = errors
                .into_iter()
                .flat_map(|(_, errors)| errors)
                .map(|(name, undefined)| {
                    let arity = match &undefined {
                        jaq_core::compile::Undefined::Filter(arity) => format!("/{arity}"),
                        _ => String::new(),
                    };
                    format!(
                        "undefined {} {name}{arity} {}",
                        undefined.as_str(),
                        location(program, name)
                    )
                })
                .collect();
            format!("jq program does not compile: {}", problems.join("; "))
        })
}

fn load_errors(program: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut problems = Vec::new();
    for (_, error) in errors {
        match error {
            Error::Io(errors) => {
                for (path, message) in errors {
                    problems.push(format!("cannot load {path:?}: {message}"));
                }
            }
            Error::Lex(errors) => {
                for (expected, found) in errors {
                    problems.push(format!(
                        "expected {} {}",
                        expected.as_str(),
                        location(program, found)
                    ));
                }
            }
            Error::Parse(errors) => {
                for (expected, found) in errors {
                    let found_text = if found.is_empty() {
                        "end of input".to_owned()
                    } else {
                        format!("{found:?}")
                    };
                    problems.push(format!(
                        "expected {}, found {found_text} {}",
                        expected.as_str(),
                        location(program, found)
                    ));
                }
            }
        }
    }
    format!("jq program does not parse: {}", problems.join("; "))
}

/// "at line L, column C" for `part`, a slice of `program` (jaq reports errors as slices
/// of the source); empty when `part` is not inside it.
fn location(program: &str, part: &str) -> String {
    let start = program.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    if at < start || at > start + program.len() {
        return String::new();
    }
    let offset = at - start;
    let before = program.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("at line {line}, column {column}")
}

/// The `jq` processor.
pub(crate) struct Jq {
    id: String,
    filter: Arc<Filter>,
    field: FieldPath,
}

impl Jq {
    fn error(&self, message: impl std::fmt::Display) -> ProcessedRecord {
        ProcessedRecord::Error(RecordError::msg(format!(
            "processor {:?} (jq): {message}",
            self.id
        )))
    }

    fn run(&self, records: &[Record]) -> Vec<ProcessedRecord> {
        records.iter().map(|r| self.process_one(r)).collect()
    }

    fn process_one(&self, record: &Record) -> ProcessedRecord {
        let mut record = record.clone();
        let input = match self.input(&mut record) {
            Ok(input) => input,
            Err(message) => return self.error(message),
        };
        let ctx = Ctx::<JqData>::new(&self.filter.lut, Vars::new([]));
        let mut results = Vec::new();
        for output in self.filter.id.run((ctx, input)) {
            match output {
                Ok(Val::Null) => {}
                Ok(value) => results.push(value),
                Err(exception) => {
                    let message = match exception.get_err() {
                        // error("text") reads as the text, other values as JSON.
                        Ok(error) => match error.into_val() {
                            Val::TStr(text) => String::from_utf8_lossy(&text).into_owned(),
                            other => other.to_string(),
                        },
                        Err(exception) => match exception.get_halt() {
                            Ok(code) => format!("the program halted (exit code {code})"),
                            Err(_) => "the program raised an exception".to_owned(),
                        },
                    };
                    return self.error(message);
                }
            }
        }
        let mut outputs = Vec::with_capacity(results.len());
        let count = results.len();
        for (i, result) in results.into_iter().enumerate() {
            let value = match val_to_value(&result) {
                Ok(value) => value,
                Err(message) => return self.error(format!("result: {message}")),
            };
            // The last result takes the record itself; the others a copy.
            let mut out = if i + 1 == count {
                std::mem::take(&mut record)
            } else {
                record.clone()
            };
            if let Err(message) = self.store(&mut out, value) {
                return self.error(message);
            }
            outputs.push(out);
        }
        match outputs.len() {
            0 => ProcessedRecord::Filter,
            1 => outputs
                .pop()
                .map_or(ProcessedRecord::Filter, ProcessedRecord::Single),
            _ => ProcessedRecord::Multi(outputs),
        }
    }

    /// The program's input; decodes raw JSON in `record` when the field is inside it.
    fn input(&self, record: &mut Record) -> Result<Val, String> {
        match self.field.target() {
            Target::Data(slot) => match slot_mut(record, *slot) {
                None => Ok(Val::Null),
                Some(Data::Structured(map)) => Ok(map_to_val(map)),
                Some(Data::Raw(bytes)) => parse_json(&self.field, bytes).map(|v| value_to_val(&v)),
            },
            Target::DataField(slot, _) => {
                let data = slot_mut(record, *slot);
                if let Some(Data::Raw(bytes)) = data {
                    match parse_json(&self.field, bytes)? {
                        Value::Map(map) => *data = Some(Data::Structured(map)),
                        _ => {
                            return Err(format!(
                                "{} holds raw JSON that is not an object, so it has no field {}",
                                slot, self.field
                            ));
                        }
                    }
                }
                match record.get(&self.field) {
                    Ok(Some(funnel_record::FieldRef::Value(value))) => Ok(value_to_val(value)),
                    Ok(_) => Ok(Val::Null),
                    Err(error) => Err(error.to_string()),
                }
            }
            // build() accepts only fields under .Key and the payload sides.
            _ => Err(format!("field {} is not data", self.field)),
        }
    }

    /// Stores a result in `record`'s field.
    fn store(&self, record: &mut Record, value: Value) -> Result<(), String> {
        let value = match (self.field.target(), value) {
            (Target::Data(_), value @ (Value::Map(_) | Value::String(_) | Value::Bytes(_))) => {
                value
            }
            (Target::Data(_), other) => Value::Bytes(Bytes::from(other.to_json())),
            (_, value) => value,
        };
        record.set(&self.field, value).map_err(|e| e.to_string())
    }
}

fn slot_mut(record: &mut Record, slot: DataSlot) -> &mut Option<Data> {
    match slot {
        DataSlot::Key => &mut record.key,
        DataSlot::Before => &mut record.payload.before,
        DataSlot::After => &mut record.payload.after,
    }
}

fn parse_json(field: &FieldPath, bytes: &[u8]) -> Result<Value, String> {
    Value::from_json(bytes).map_err(|error| {
        let reason = match error {
            funnel_record::DecodeError::Json(e) => e.to_string(),
            other => other.to_string(),
        };
        format!("{field} holds raw data that is not JSON: {reason}")
    })
}

#[async_trait]
impl Processor for Jq {
    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        crate::builtin::cpu_heavy(records.len(), || self.run(records))
    }
}

/// Structured data as a jq object.
fn map_to_val(map: &StructuredData) -> Val {
    Val::obj(
        map.iter()
            .map(|(k, v)| (Val::from(k.to_string()), value_to_val(v)))
            .collect(),
    )
}

/// A Funnel value as a jq value.
fn value_to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::from(*b),
        Value::Int(i) => Val::Num(Num::from_integral(*i)),
        Value::Uint(u) => Val::Num(Num::from_integral(*u)),
        Value::Float(f) => Val::from(*f),
        Value::String(s) => Val::from(s.to_string()),
        Value::Bytes(b) => Val::byte_str(b.clone()),
        // jq has no time type: a time is its RFC 3339 text (`fromdate` reads it).
        Value::Time(t) => Val::from(t.to_rfc3339()),
        Value::Array(items) => items.iter().map(value_to_val).collect(),
        Value::Map(map) => map_to_val(map),
    }
}

/// A jq value as a Funnel value.
fn val_to_value(val: &Val) -> Result<Value, String> {
    Ok(match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_value(n),
        Val::TStr(s) => Value::String(String::from_utf8_lossy(s).into()),
        Val::BStr(b) => Value::Bytes(Bytes::clone(b)),
        Val::Arr(items) => Value::Array(items.iter().map(val_to_value).collect::<Result<_, _>>()?),
        Val::Obj(map) => {
            let mut out = StructuredData::new();
            for (key, value) in map.iter() {
                let Val::TStr(key) = key else {
                    return Err(format!("object key {key} is not a string"));
                };
                out.insert(
                    String::from_utf8_lossy(key).into_owned(),
                    val_to_value(value)?,
                );
            }
            Value::Map(out)
        }
    })
}

fn num_to_value(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::Int(*i as i64),
        Num::Float(f) => Value::Float(*f),
        // Big integers and decimal literals: read back from their text.
        other => {
            let text = other.to_string();
            if let Ok(i) = text.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(u) = text.parse::<u64>() {
                Value::Uint(u)
            } else {
                Value::Float(text.parse::<f64>().unwrap_or(f64::NAN))
            }
        }
    }
}
