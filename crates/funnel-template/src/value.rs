//! The values a template works with: borrowed views of the record, plus the owned
//! values functions produce. Nothing here copies the record.

use std::fmt::Write;
use std::rc::Rc;

use funnel_record::{
    Data, Metadata, Operation, Payload, Position, Record, StructuredData, Value, go,
};

use crate::gotime::Time;

/// A value during execution, typed the way Go's reflection would see it.
#[derive(Debug, Clone)]
pub(crate) enum V<'a> {
    /// No value at all (Go's invalid `reflect.Value`): a missing map key.
    Missing,
    /// A nil `interface{}`, such as a JSON `null` inside structured data.
    Nil,
    /// `opencdc.Record`.
    Record(&'a Record),
    /// `opencdc.Change` (the payload).
    Payload(&'a Payload),
    /// `opencdc.Position`.
    Position(&'a Position),
    /// `opencdc.Operation`.
    Operation(Operation),
    /// `opencdc.Metadata`.
    Metadata(&'a Metadata),
    /// `opencdc.Data` (an interface; `None` is nil).
    Data(Option<&'a Data>),
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `uint64`.
    Uint(u64),
    /// `float64`.
    Float(f64),
    /// A borrowed `string`.
    Str(&'a str),
    /// An owned `string`.
    String(Rc<str>),
    /// A borrowed `[]byte`.
    Bytes(&'a [u8]),
    /// A borrowed `[]interface{}`.
    List(&'a [Value]),
    /// A borrowed `map[string]interface{}`.
    Map(&'a StructuredData),
    /// An owned list, map or byte slice.
    Owned(Rc<Value>),
    /// `time.Time`.
    Time(Time),
}

impl<'a> V<'a> {
    /// The view of a value stored in structured data.
    pub(crate) fn of(v: &'a Value) -> V<'a> {
        match v {
            Value::Null => V::Nil,
            Value::Bool(b) => V::Bool(*b),
            Value::Int(i) => V::Int(*i),
            Value::Uint(u) => V::Uint(*u),
            Value::Float(f) => V::Float(*f),
            Value::String(s) => V::Str(s),
            Value::Bytes(b) => V::Bytes(b),
            Value::Time(t) => V::Time(Time::from(*t)),
            Value::Array(a) => V::List(a),
            Value::Map(m) => V::Map(m),
        }
    }

    /// An owned value, viewed.
    pub(crate) fn owned(v: Value) -> V<'static> {
        match v {
            Value::Null => V::Nil,
            Value::Bool(b) => V::Bool(b),
            Value::Int(i) => V::Int(i),
            Value::Uint(u) => V::Uint(u),
            Value::Float(f) => V::Float(f),
            Value::String(s) => V::String(Rc::from(s.as_str())),
            Value::Time(t) => V::Time(Time::from(t)),
            other => V::Owned(Rc::new(other)),
        }
    }

    /// An owned string.
    pub(crate) fn string(s: impl Into<Rc<str>>) -> V<'static> {
        V::String(s.into())
    }

    /// The string, when this is a Go `string`.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            V::String(s) => Some(s),
            _ => None,
        }
    }

    /// Go's type name, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            V::Missing | V::Nil => "<nil>",
            V::Record(_) => "opencdc.Record",
            V::Payload(_) => "opencdc.Change",
            V::Position(_) => "opencdc.Position",
            V::Operation(_) => "opencdc.Operation",
            V::Metadata(_) => "opencdc.Metadata",
            V::Data(None) => "opencdc.Data",
            V::Data(Some(Data::Raw(_))) => "opencdc.RawData",
            V::Data(Some(Data::Structured(_))) => "opencdc.StructuredData",
            V::Bool(_) => "bool",
            V::Int(_) => "int",
            V::Uint(_) => "uint64",
            V::Float(_) => "float64",
            V::Str(_) | V::String(_) => "string",
            V::Bytes(_) => "[]uint8",
            V::List(_) => "[]interface {}",
            V::Map(_) => "map[string]interface {}",
            V::Owned(v) => go::type_name(v),
            V::Time(_) => "time.Time",
        }
    }

    /// Go's truth (`if`, `with`, `and`, `or`, `not`): false for zero values, nil and
    /// empty strings, slices and maps.
    pub(crate) fn truth(&self) -> bool {
        match self {
            V::Missing | V::Nil | V::Data(None) => false,
            V::Record(_) | V::Payload(_) | V::Time(_) => true,
            V::Position(p) => !p.is_empty(),
            V::Operation(o) => o.code() != 0,
            V::Metadata(m) => !m.is_empty(),
            V::Data(Some(Data::Raw(b))) => !b.is_empty(),
            V::Data(Some(Data::Structured(m))) => !m.is_empty(),
            V::Bool(b) => *b,
            V::Int(i) => *i != 0,
            V::Uint(u) => *u != 0,
            V::Float(f) => *f != 0.0,
            V::Str(s) => !s.is_empty(),
            V::String(s) => !s.is_empty(),
            V::Bytes(b) => !b.is_empty(),
            V::List(l) => !l.is_empty(),
            V::Map(m) => !m.is_empty(),
            V::Owned(v) => match &**v {
                Value::Array(a) => !a.is_empty(),
                Value::Map(m) => !m.is_empty(),
                Value::Bytes(b) => !b.is_empty(),
                _ => true,
            },
        }
    }

    /// True for nil-like values: no value, nil interfaces.
    pub(crate) fn is_nil(&self) -> bool {
        matches!(self, V::Missing | V::Nil | V::Data(None))
    }

    /// Converts to an owned structured value (for `list`, `dict`, `toJson` and the like).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            V::Missing | V::Nil | V::Data(None) => Value::Null,
            V::Record(r) => {
                let mut m = StructuredData::new();
                m.insert("position", Value::Bytes(r.position.0.clone()));
                m.insert("operation", Value::String(r.operation.to_string().into()));
                m.insert("metadata", V::Metadata(&r.metadata).to_value());
                m.insert("key", V::Data(r.key.as_ref()).to_value());
                m.insert("payload", V::Payload(&r.payload).to_value());
                Value::Map(m)
            }
            V::Payload(p) => {
                let mut m = StructuredData::new();
                m.insert("before", V::Data(p.before.as_ref()).to_value());
                m.insert("after", V::Data(p.after.as_ref()).to_value());
                Value::Map(m)
            }
            V::Position(p) => Value::Bytes(p.0.clone()),
            V::Operation(o) => Value::String(o.to_string().into()),
            V::Metadata(m) => match m.as_map() {
                None => Value::Null,
                Some(m) => Value::Map(
                    m.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.as_str().into())))
                        .collect(),
                ),
            },
            V::Data(Some(Data::Raw(b))) => Value::Bytes(b.clone()),
            V::Data(Some(Data::Structured(m))) => Value::Map(m.clone()),
            V::Bool(b) => Value::Bool(*b),
            V::Int(i) => Value::Int(*i),
            V::Uint(u) => Value::Uint(*u),
            V::Float(f) => Value::Float(*f),
            V::Str(s) => Value::String((*s).into()),
            V::String(s) => Value::String((**s).into()),
            V::Bytes(b) => Value::Bytes(bytes::Bytes::copy_from_slice(b)),
            V::List(l) => Value::Array(l.to_vec()),
            V::Map(m) => Value::Map((*m).clone()),
            V::Owned(v) => (**v).clone(),
            V::Time(t) => Value::Time((*t).into()),
        }
    }
}

/// Writes `v` as Go's `fmt.Sprint` (the `%v` verb) does.
pub(crate) fn write_value(out: &mut String, v: &V<'_>) {
    match v {
        V::Missing | V::Nil | V::Data(None) => out.push_str("<nil>"),
        V::Record(r) => {
            out.push('{');
            write_value(out, &V::Position(&r.position));
            out.push(' ');
            write_value(out, &V::Operation(r.operation));
            out.push(' ');
            write_value(out, &V::Metadata(&r.metadata));
            out.push(' ');
            write_value(out, &V::Data(r.key.as_ref()));
            out.push(' ');
            write_value(out, &V::Payload(&r.payload));
            out.push_str(" <nil>}");
        }
        V::Payload(p) => {
            out.push('{');
            write_value(out, &V::Data(p.before.as_ref()));
            out.push(' ');
            write_value(out, &V::Data(p.after.as_ref()));
            out.push('}');
        }
        V::Position(p) => {
            let _ = write!(out, "{p}");
        }
        V::Operation(o) => {
            let _ = write!(out, "{o}");
        }
        V::Metadata(m) => go::write_sprint_entries(out, m.iter(), String::push_str),
        V::Data(Some(Data::Raw(b))) => go::write_sprint_bytes(out, b),
        V::Data(Some(Data::Structured(m))) => go::write_sprint_map(out, m),
        V::Bool(b) => go::write_sprint(out, &Value::Bool(*b)),
        V::Int(i) => go::write_sprint(out, &Value::Int(*i)),
        V::Uint(u) => go::write_sprint(out, &Value::Uint(*u)),
        V::Float(f) => go::write_sprint(out, &Value::Float(*f)),
        V::Str(s) => out.push_str(s),
        V::String(s) => out.push_str(s),
        V::Bytes(b) => go::write_sprint_bytes(out, b),
        V::List(l) => go::write_sprint_slice(out, l),
        V::Map(m) => go::write_sprint_map(out, m),
        V::Owned(v) => go::write_sprint(out, v),
        V::Time(t) => {
            let _ = write!(out, "{t}");
        }
    }
}

/// `%v` of `v` as a new string.
pub(crate) fn sprint_one(v: &V<'_>) -> String {
    let mut s = String::new();
    write_value(&mut s, v);
    s
}
