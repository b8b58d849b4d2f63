//! The record types.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use smol_str::SmolStr;

use crate::map::StructuredData;
use crate::time::Timestamp;

/// Where a record sits in its source: opaque bytes, chosen by the source connector.
///
/// Positions identify a record within one source only; two sources may emit identical
/// positions. An empty position means "unset": the engine refuses to ack one, because
/// a source cannot resume from it.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub Bytes);

impl Position {
    /// A position holding `bytes`.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// The raw bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True when the position is unset (no bytes).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<nil>");
        }
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for Position {
    fn from(value: &str) -> Self {
        Self(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl From<String> for Position {
    fn from(value: String) -> Self {
        Self(Bytes::from(value))
    }
}

impl From<Vec<u8>> for Position {
    fn from(value: Vec<u8>) -> Self {
        Self(Bytes::from(value))
    }
}

/// What kind of change a record describes.
///
/// Written as `create`, `update`, `delete` or `snapshot`; any other number `n` (including
/// the Go zero value 0) is written and read as `Operation(n)`, as Conduit does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A new row or message (1).
    #[default]
    Create,
    /// A change to an existing row (2).
    Update,
    /// A removed row (3).
    Delete,
    /// A row read by a snapshot (4).
    Snapshot,
    /// Any other value, kept as its number.
    Other(i64),
}

impl Operation {
    /// The operation's number (create = 1 ... snapshot = 4).
    pub fn code(self) -> i64 {
        match self {
            Self::Create => 1,
            Self::Update => 2,
            Self::Delete => 3,
            Self::Snapshot => 4,
            Self::Other(n) => n,
        }
    }

    /// The operation with number `n`.
    pub fn from_code(n: i64) -> Self {
        match n {
            1 => Self::Create,
            2 => Self::Update,
            3 => Self::Delete,
            4 => Self::Snapshot,
            n => Self::Other(n),
        }
    }

    /// Parses a non-empty operation text as Conduit's `Operation.UnmarshalText` does:
    /// one of the four names (exact, lower case), or a decimal number with an optional
    /// `Operation(` prefix and `)` suffix (`Operation(2)`, `2`). `None` for anything else.
    pub(crate) fn parse_text(text: &str) -> Option<Self> {
        match text {
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            "snapshot" => Some(Self::Snapshot),
            other => {
                let number = other.strip_prefix("Operation(").unwrap_or(other);
                let number = number.strip_suffix(')').unwrap_or(number);
                number.parse::<i64>().ok().map(Self::from_code)
            }
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create => f.write_str("create"),
            Self::Update => f.write_str("update"),
            Self::Delete => f.write_str("delete"),
            Self::Snapshot => f.write_str("snapshot"),
            Self::Other(n) => write!(f, "Operation({n})"),
        }
    }
}

/// String-to-string metadata, kept sorted by key (as OpenCDC JSON writes it).
///
/// A record may have no metadata map at all (written as JSON `null`) or an empty one
/// (written as `{}`); the two compare equal but serialize differently, as in Conduit.
#[derive(Clone, Default)]
pub struct Metadata(Repr);

/// An empty map is its own variant: many records carry none, and creating, cloning and
/// dropping an empty `BTreeMap` is not free (its drop walks an iterator). A map is
/// shared between clones until one of them changes it: a source that stamps the same
/// metadata on every record of a batch clones one map, not its strings, per record.
#[derive(Clone, Default)]
enum Repr {
    /// No map (`null`).
    #[default]
    Nil,
    /// An empty map (`{}`) with nothing allocated.
    Empty,
    /// A map, possibly emptied by removals, copied on its first change while shared.
    Map(Arc<BTreeMap<String, String>>),
}

/// What [`Metadata::as_map`] lends for an empty map.
static EMPTY: BTreeMap<String, String> = BTreeMap::new();

impl Metadata {
    /// An empty, present metadata map (serialized as `{}`).
    #[inline]
    pub fn new() -> Self {
        Self(Repr::Empty)
    }

    /// No metadata map at all (serialized as `null`).
    #[inline]
    pub fn none() -> Self {
        Self(Repr::Nil)
    }

    /// True when there is no map at all (as opposed to an empty one).
    pub fn is_nil(&self) -> bool {
        matches!(self.0, Repr::Nil)
    }

    /// The value of `key`. A missing key and an empty value are both "not found", as
    /// Conduit's getters treat them.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_raw(key).filter(|v| !v.is_empty())
    }

    /// The raw value of `key`, empty values included.
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        match &self.0 {
            Repr::Map(m) => m.get(key).map(String::as_str),
            Repr::Nil | Repr::Empty => None,
        }
    }

    /// Sets `key` to `value`, creating the map if there was none.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.as_map_mut().insert(key.into(), value.into())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        match &mut self.0 {
            Repr::Map(m) if m.contains_key(key) => Arc::make_mut(m).remove(key),
            Repr::Map(_) | Repr::Nil | Repr::Empty => None,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Map(m) => m.len(),
            Repr::Nil | Repr::Empty => 0,
        }
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let map = match &self.0 {
            Repr::Map(m) => Some(m),
            Repr::Nil | Repr::Empty => None,
        };
        map.into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The underlying map, if any.
    pub fn as_map(&self) -> Option<&BTreeMap<String, String>> {
        match &self.0 {
            Repr::Nil => None,
            Repr::Empty => Some(&EMPTY),
            Repr::Map(m) => Some(&**m),
        }
    }

    /// The underlying map, created if there was none (and copied if it was shared with
    /// a clone).
    pub fn as_map_mut(&mut self) -> &mut BTreeMap<String, String> {
        if !matches!(self.0, Repr::Map(_)) {
            self.0 = Repr::Map(Arc::default());
        }
        match &mut self.0 {
            Repr::Map(m) => Arc::make_mut(m),
            // Just made a map.
            Repr::Nil | Repr::Empty => unreachable!("metadata map was just created"),
        }
    }

    /// Removes every entry and the map itself (back to `null`).
    pub fn clear_to_nil(&mut self) {
        self.0 = Repr::Nil;
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Metadata").field(&self.as_map()).finish()
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Metadata {}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Self(Repr::Map(Arc::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )))
    }
}

/// A value inside structured data: the JSON types, with Go's int/float distinction kept,
/// plus bytes and times (Go's `[]byte` and `time.Time`, which JSON has no type for).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `i64`.
    Uint(u64),
    /// A floating point number.
    Float(f64),
    /// A string: up to 23 bytes inline, longer ones shared between clones, so that
    /// building or cloning a record's short strings allocates nothing (see [`SmolStr`];
    /// [`SmolStr::new_static`] wraps a `&'static str` without copying it).
    String(SmolStr),
    /// Bytes (written as base64 in JSON, like Go's `[]byte`).
    Bytes(Bytes),
    /// A UTC instant with nanosecond precision, like a Go `time.Time` in Conduit's
    /// structured data (what `field.convert` with `type: time` produces). Written in JSON
    /// as Go's `time.Time.MarshalJSON` does (`"2021-01-21T18:40:12.345678999Z"`); parsing
    /// JSON never produces one, since JSON has no time type.
    Time(Timestamp),
    /// An ordered list.
    Array(Vec<Value>),
    /// A string-keyed map, sorted by key.
    Map(StructuredData),
}

/// A key or one side of a payload: raw bytes or structured data.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Opaque bytes (written as base64 in OpenCDC JSON).
    Raw(Bytes),
    /// A map of values (written as a JSON object).
    Structured(StructuredData),
}

impl Data {
    /// Raw data holding `bytes`.
    pub fn raw(bytes: impl Into<Bytes>) -> Self {
        Self::Raw(bytes.into())
    }

    /// An approximation of the data's size in bytes: the length of raw data, or of
    /// the structured data's keys and scalar values.
    #[inline]
    pub fn size_hint(&self) -> usize {
        match self {
            Self::Raw(b) => b.len(),
            Self::Structured(m) => map_size(m),
        }
    }
}

fn map_size(m: &StructuredData) -> usize {
    m.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Int(_) | Value::Uint(_) | Value::Float(_) => 8,
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        // Seconds (8 bytes) and nanoseconds (4 bytes).
        Value::Time(_) => 12,
        Value::Array(a) => a.iter().map(value_size).sum(),
        Value::Map(m) => map_size(m),
    }
}

/// The change a record carries: the data before and after it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Payload {
    /// State before the change (updates and deletes), if known.
    pub before: Option<Data>,
    /// State after the change (everything but deletes).
    pub after: Option<Data>,
}

/// An OpenCDC record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// Where the record sits in its source.
    pub position: Position,
    /// What kind of change it is.
    pub operation: Operation,
    /// String metadata.
    pub metadata: Metadata,
    /// The key, if any.
    pub key: Option<Data>,
    /// The data before and after the change.
    pub payload: Payload,
}

impl Record {
    /// A `create` record at `position` with raw `after` data and empty metadata.
    pub fn new(position: impl Into<Position>, after: impl Into<Bytes>) -> Self {
        Self {
            position: position.into(),
            operation: Operation::Create,
            metadata: Metadata::new(),
            key: None,
            payload: Payload {
                before: None,
                after: Some(Data::Raw(after.into())),
            },
        }
    }

    /// Approximate size of key and payload in bytes (what Conduit's `connector_bytes`
    /// metric measures; also what byte credits count).
    #[inline]
    pub fn size_hint(&self) -> usize {
        let size = |data: &Option<Data>| data.as_ref().map_or(0, Data::size_hint);
        size(&self.key) + size(&self.payload.before) + size(&self.payload.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metadata_clone_changed_leaves_the_original_as_it_was() {
        let mut original = Metadata::new();
        original.insert("a", "1");
        original.insert("b", "2");
        let mut changed = original.clone();
        changed.insert("a", "changed");
        changed.remove("b");
        changed.as_map_mut().insert("c".into(), "3".into());
        assert_eq!(
            original.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2")]
        );
        assert_eq!(
            changed.iter().collect::<Vec<_>>(),
            [("a", "changed"), ("c", "3")]
        );
        let mut emptied = original.clone();
        emptied.clear_to_nil();
        assert!(emptied.is_nil() && !original.is_nil());
    }

    #[test]
    fn empty_and_missing_metadata_compare_equal_but_stay_apart() {
        let empty = Metadata::new();
        assert!(!empty.is_nil());
        assert_eq!(empty.as_map().map(BTreeMap::len), Some(0));
        assert_eq!(Metadata::none().as_map(), None);
        assert_eq!(empty, Metadata::none());
        let mut emptied = Metadata::new();
        emptied.insert("k", "v");
        assert_eq!(emptied.remove("k").as_deref(), Some("v"));
        assert_eq!(emptied.remove("k"), None);
        assert!(!emptied.is_nil() && emptied.is_empty());
        assert_eq!(format!("{empty:?}"), "Metadata(Some({}))");
        assert_eq!(format!("{:?}", Metadata::none()), "Metadata(None)");
    }
}
