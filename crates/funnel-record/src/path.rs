//! Field references, as Conduit processors take them in their `field`, `fields` and
//! `mapping` settings.
//!
//! | reference | points at |
//! |---|---|
//! | `.` (or `$`) | the whole record |
//! | `.Position`, `.Operation` | the position, the operation |
//! | `.Metadata`, `.Metadata.foo`, `.Metadata["opencdc.readAt"]` | the metadata map, one value |
//! | `.Key`, `.Key.id` | the key, a field of a structured key |
//! | `.Payload` | the payload (both sides) |
//! | `.Payload.Before`, `.Payload.After.user.id`, `.Payload.After["a key"]` | one side, a field inside it |
//!
//! A name after a dot is letters, digits and `_`, not starting with a digit; any other
//! name goes in brackets as a double-quoted string, where `\"` and `\\` stand for `"`
//! and `\`. Brackets may follow any name (`.Payload["After"]`). Nested fields exist only
//! in structured data: reaching into raw data, or through a value that is not a map, is
//! an error. [`FieldPath::parse`] checks a reference against the record's shape, so
//! `.Position.x`, `.Metadata.a.b` and `.Payload.Middle` are refused up front.
//!
//! # Differences from Conduit
//!
//! - Conduit keeps bracketed names verbatim, backslashes included; Funnel unescapes `\"`
//!   and `\\` and refuses other escapes, so any key can be written.
//! - Conduit's resolver creates missing maps while it walks, even to read or delete a
//!   field (deleting `.Payload.After.a.b` from a record with no payload leaves
//!   `{"a":{}}`). Funnel creates maps only in [`Record::set`]; [`Record::get`],
//!   [`Record::remove`] and [`Record::rename`] leave a record they find nothing in
//!   unchanged, and renaming a missing field does nothing (Conduit sets the new name to
//!   an empty value).
//! - An empty reference is an error (Conduit reads it as the whole record).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::map::StructuredData;
use crate::record::{Data, Metadata, Operation, Payload, Position, Record, Value};

/// A parsed field reference such as `.Payload.After.name` (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldPath {
    raw: String,
    target: Target,
}

/// What a [`FieldPath`] points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `.`: the whole record.
    Record,
    /// `.Position`.
    Position,
    /// `.Operation`.
    Operation,
    /// `.Metadata`: the whole map.
    Metadata,
    /// `.Metadata.name`: one metadata value.
    MetadataField(String),
    /// `.Payload`: both sides of the payload.
    Payload,
    /// `.Key`, `.Payload.Before` or `.Payload.After` as a whole.
    Data(DataSlot),
    /// A field inside structured data: the names from the outermost map inwards (never
    /// empty).
    DataField(DataSlot, Vec<String>),
}

/// One of the three places in a record that hold [`Data`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataSlot {
    /// `.Key`.
    Key,
    /// `.Payload.Before`.
    Before,
    /// `.Payload.After`.
    After,
}

impl DataSlot {
    /// The slot's reference: `.Key`, `.Payload.Before` or `.Payload.After`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => ".Key",
            Self::Before => ".Payload.Before",
            Self::After => ".Payload.After",
        }
    }
}

impl fmt::Display for DataSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A borrowed view of what a [`FieldPath`] points at in a record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldRef<'a> {
    /// The whole record.
    Record(&'a Record),
    /// The position.
    Position(&'a Position),
    /// The operation.
    Operation(Operation),
    /// The metadata map.
    Metadata(&'a Metadata),
    /// One metadata value (possibly empty).
    MetadataValue(&'a str),
    /// The payload.
    Payload(&'a Payload),
    /// A key or payload side.
    Data(&'a Data),
    /// A value inside structured data.
    Value(&'a Value),
}

/// Why a field reference could not be parsed or applied to a record.
///
/// Every variant is a fault in the configuration or the data, never worth retrying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The reference does not parse, or names a field records do not have.
    #[error("invalid field reference {path:?}: {reason}")]
    Invalid {
        /// The reference as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The reference reaches into something that is not structured data.
    #[error("cannot access field {field} of {found} at {at}")]
    NotStructured {
        /// The field that was to be accessed.
        field: String,
        /// What was found instead (`raw data`, `a string value`, ...).
        found: &'static str,
        /// The reference of what was found, e.g. `.Payload.After`.
        at: String,
    },
    /// The field cannot be changed this way (e.g. setting `.Position`, renaming
    /// `.Metadata`).
    #[error("cannot {action} {path}")]
    Unsupported {
        /// `set`, `remove` or `rename`.
        action: &'static str,
        /// The reference.
        path: String,
    },
    /// The value has the wrong type for the field.
    #[error("cannot set {path} to {found}: expected {expected}")]
    UnexpectedType {
        /// The reference.
        path: String,
        /// What the field accepts.
        expected: &'static str,
        /// What was given.
        found: &'static str,
    },
    /// `.Operation` was set to something other than create, update, delete or snapshot.
    #[error("cannot set .Operation to {value}: unknown operation")]
    UnknownOperation {
        /// The value given, as text.
        value: String,
    },
}

impl FieldPath {
    /// Parses a field reference (see the [module docs](self) for the syntax).
    ///
    /// # Errors
    ///
    /// [`PathError::Invalid`] when the text is not a reference or names a field records
    /// do not have (`.Foo`, `.Position.x`, `.Metadata.a.b`, `.Payload.Middle`).
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let invalid = |reason: String| PathError::Invalid {
            path: text.to_owned(),
            reason,
        };
        let names = lex(text).map_err(invalid)?;
        let target = target_of(names).map_err(invalid)?;
        Ok(Self {
            raw: text.to_owned(),
            target,
        })
    }

    /// The reference as it was written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// What the reference points at.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl FromStr for FieldPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Splits a reference into its names: `.Payload.After["a b"]` is
/// `["Payload", "After", "a b"]`.
fn lex(text: &str) -> Result<Vec<String>, String> {
    let mut rest = text.strip_prefix('$').unwrap_or(text);
    if text.is_empty() {
        return Err("it is empty; use . for the whole record".to_owned());
    }
    // `.` and `$` alone are the record.
    if rest.is_empty() || (rest == "." && !text.starts_with('$')) {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    while let Some(c) = rest.chars().next() {
        match c {
            '.' => {
                let after = &rest[1..];
                let end = after
                    .find(|c: char| !(c == '_' || c.is_alphanumeric()))
                    .unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() {
                    return Err(match after.chars().next() {
                        None => "it ends with a dot".to_owned(),
                        Some(c) => format!("expected a name after the dot, found {c:?}"),
                    });
                }
                if name.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(format!(
                        "name {name:?} starts with a digit; use [\"{name}\"]"
                    ));
                }
                names.push(name.to_owned());
                rest = &after[end..];
            }
            '[' => {
                if names.is_empty() {
                    return Err("brackets must follow a name, as in .Metadata[\"key\"]".to_owned());
                }
                let (name, after) = lex_bracket(&rest[1..])?;
                names.push(name);
                rest = after;
            }
            other => {
                return Err(format!(
                    "unexpected {other:?}; names start with . or are in brackets"
                ));
            }
        }
    }
    Ok(names)
}

/// Reads `"name"]` (the `[` already consumed), returning the name and what follows.
fn lex_bracket(text: &str) -> Result<(String, &str), String> {
    let Some(body) = text.strip_prefix('"') else {
        return Err("expected a double-quoted name after [".to_owned());
    };
    let mut name = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let after = &body[i + 1..];
                return match after.strip_prefix(']') {
                    Some(after) => Ok((name, after)),
                    None => Err(format!("expected ] after the quoted name {name:?}")),
                };
            }
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => name.push(escaped),
                Some((_, other)) => {
                    return Err(format!(
                        "unsupported escape \\{other} in a quoted name; only \\\" and \\\\ are allowed"
                    ));
                }
                None => break,
            },
            '\n' => break,
            c => name.push(c),
        }
    }
    Err("unterminated quoted name".to_owned())
}

/// Checks names against the record's shape.
fn target_of(names: Vec<String>) -> Result<Target, String> {
    let mut names = names.into_iter();
    let Some(first) = names.next() else {
        return Ok(Target::Record);
    };
    let rest: Vec<String> = names.collect();
    let no_more = |target: Target, what: &str| {
        if rest.is_empty() {
            Ok(target)
        } else {
            Err(format!("{what} has no fields"))
        }
    };
    match first.as_str() {
        "Position" => no_more(Target::Position, ".Position"),
        "Operation" => no_more(Target::Operation, ".Operation"),
        "Metadata" => {
            let mut rest = rest.into_iter();
            match (rest.next(), rest.next()) {
                (None, _) => Ok(Target::Metadata),
                (Some(name), None) => Ok(Target::MetadataField(name)),
                (Some(_), Some(_)) => {
                    Err("metadata values are strings and have no fields".to_owned())
                }
            }
        }
        "Key" => Ok(data_target(DataSlot::Key, rest)),
        "Payload" => {
            let mut rest = rest.into_iter();
            match rest.next().as_deref() {
                None => Ok(Target::Payload),
                Some("Before") => Ok(data_target(DataSlot::Before, rest.collect())),
                Some("After") => Ok(data_target(DataSlot::After, rest.collect())),
                Some(other) => Err(format!(
                    "unexpected field {other:?} of .Payload; expected Before or After"
                )),
            }
        }
        other => Err(format!(
            "unexpected field {other:?}; expected Position, Operation, Metadata, Key or Payload"
        )),
    }
}

fn data_target(slot: DataSlot, fields: Vec<String>) -> Target {
    if fields.is_empty() {
        Target::Data(slot)
    } else {
        Target::DataField(slot, fields)
    }
}

/// Appends `name` to a reference: `.name`, or `["name"]` when it is not a plain name.
fn push_name(path: &mut String, name: &str) {
    let plain = name.starts_with(|c: char| !c.is_ascii_digit())
        && name.chars().all(|c| c == '_' || c.is_alphanumeric());
    if plain {
        path.push('.');
        path.push_str(name);
    } else {
        path.push_str("[\"");
        for c in name.chars() {
            if matches!(c, '"' | '\\') {
                path.push('\\');
            }
            path.push(c);
        }
        path.push_str("\"]");
    }
}

/// The reference of `fields` inside `slot`.
fn data_path(slot: DataSlot, fields: &[String]) -> String {
    let mut path = slot.as_str().to_owned();
    for name in fields {
        push_name(&mut path, name);
    }
    path
}

fn metadata_path(name: &str) -> String {
    let mut path = ".Metadata".to_owned();
    push_name(&mut path, name);
    path
}

/// `a string value`, `an array value`, ... for error messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "a null value",
        Value::Bool(_) => "a boolean value",
        Value::Int(_) | Value::Uint(_) | Value::Float(_) => "a number value",
        Value::String(_) => "a string value",
        Value::Bytes(_) => "a bytes value",
        Value::Time(_) => "a time value",
        Value::Array(_) => "an array value",
        Value::Map(_) => "a map value",
    }
}

fn not_structured(
    slot: DataSlot,
    fields: &[String],
    depth: usize,
    found: &'static str,
) -> PathError {
    PathError::NotStructured {
        field: fields[depth].clone(),
        found,
        at: data_path(slot, &fields[..depth]),
    }
}

impl Record {
    /// What `path` points at, or `None` when there is nothing there (no data, no such
    /// metadata key or structured field).
    ///
    /// # Errors
    ///
    /// [`PathError::NotStructured`] when the path reaches into raw data or through a
    /// value that is not a map.
    pub fn get(&self, path: &FieldPath) -> Result<Option<FieldRef<'_>>, PathError> {
        Ok(match path.target() {
            Target::Record => Some(FieldRef::Record(self)),
            Target::Position => Some(FieldRef::Position(&self.position)),
            Target::Operation => Some(FieldRef::Operation(self.operation)),
            Target::Metadata => Some(FieldRef::Metadata(&self.metadata)),
            Target::MetadataField(name) => self.metadata.get_raw(name).map(FieldRef::MetadataValue),
            Target::Payload => Some(FieldRef::Payload(&self.payload)),
            Target::Data(slot) => self.slot(*slot).as_ref().map(FieldRef::Data),
            Target::DataField(slot, fields) => {
                let mut map = match self.slot(*slot) {
                    None => return Ok(None),
                    Some(Data::Raw(_)) => return Err(not_structured(*slot, fields, 0, "raw data")),
                    Some(Data::Structured(map)) => map,
                };
                let (last, parents) = split_fields(fields);
                for (depth, name) in parents.iter().enumerate() {
                    map = match map.get(name) {
                        None | Some(Value::Null) => return Ok(None),
                        Some(Value::Map(inner)) => inner,
                        Some(other) => {
                            return Err(not_structured(*slot, fields, depth + 1, kind_of(other)));
                        }
                    };
                }
                map.get(last).map(FieldRef::Value)
            }
        })
    }

    /// Sets what `path` points at to `value`, creating the data and maps on the way to
    /// a nested field (a missing or null intermediate field becomes an empty map).
    ///
    /// - `.Operation`: a name or `Operation(N)` string, or an integer; only create,
    ///   update, delete and snapshot are accepted.
    /// - `.Metadata`: a map of strings (`null` empties it); `.Metadata.name`: a string
    ///   (`null` removes it).
    /// - `.Key`, `.Payload.Before`, `.Payload.After`: a string or bytes (raw data), a map
    ///   (structured data), or `null` (no data).
    /// - Nested fields: any value.
    ///
    /// # Errors
    ///
    /// [`PathError::Unsupported`] for `.`, `.Position` and `.Payload`;
    /// [`PathError::UnexpectedType`] or [`PathError::UnknownOperation`] for a value the
    /// field cannot hold; [`PathError::NotStructured`] when the path reaches into raw
    /// data or through a value that is not a map. On error the record is unchanged.
    pub fn set(&mut self, path: &FieldPath, value: Value) -> Result<(), PathError> {
        let unexpected = |expected: &'static str, value: &Value| PathError::UnexpectedType {
            path: path.as_str().to_owned(),
            expected,
            found: kind_of(value),
        };
        match path.target() {
            Target::Record | Target::Position | Target::Payload => Err(PathError::Unsupported {
                action: "set",
                path: path.as_str().to_owned(),
            }),
            Target::Operation => {
                self.operation = operation_from_value(&value)
                    .ok_or_else(|| unexpected("an operation name or number", &value))?
                    .map_err(|value| PathError::UnknownOperation { value })?;
                Ok(())
            }
            Target::Metadata => {
                self.metadata = match value {
                    Value::Null => Metadata::new(),
                    Value::Map(map) => {
                        let mut metadata = Metadata::new();
                        for (key, value) in map {
                            let Value::String(text) = value else {
                                return Err(PathError::UnexpectedType {
                                    path: metadata_path(&key),
                                    expected: "a string",
                                    found: kind_of(&value),
                                });
                            };
                            metadata.insert(key, text);
                        }
                        metadata
                    }
                    other => return Err(unexpected("a map of strings", &other)),
                };
                Ok(())
            }
            Target::MetadataField(name) => match value {
                Value::String(text) => {
                    self.metadata.insert(name.clone(), text);
                    Ok(())
                }
                Value::Null => {
                    self.metadata.remove(name);
                    Ok(())
                }
                other => Err(unexpected("a string", &other)),
            },
            Target::Data(slot) => {
                *self.slot_mut(*slot) = match value {
                    Value::Null => None,
                    Value::String(text) => Some(Data::Raw(Bytes::from(String::from(text)))),
                    Value::Bytes(bytes) => Some(Data::Raw(bytes)),
                    Value::Map(map) => Some(Data::Structured(map)),
                    other => return Err(unexpected("a string, bytes, a map or null", &other)),
                };
                Ok(())
            }
            Target::DataField(slot, fields) => {
                // Check first, so a failed set leaves the record unchanged.
                self.check_settable(*slot, fields)?;
                let data = self
                    .slot_mut(*slot)
                    .get_or_insert_with(|| Data::Structured(StructuredData::new()));
                let Data::Structured(map) = data else {
                    return Err(not_structured(*slot, fields, 0, "raw data"));
                };
                let mut map: &mut StructuredData = map;
                let (last, parents) = split_fields(fields);
                for (depth, name) in parents.iter().enumerate() {
                    let entry = map.entry(name.clone()).or_insert(Value::Null);
                    if matches!(entry, Value::Null) {
                        *entry = Value::Map(StructuredData::new());
                    }
                    map = match entry {
                        Value::Map(inner) => inner,
                        other => {
                            return Err(not_structured(*slot, fields, depth + 1, kind_of(other)));
                        }
                    };
                }
                map.insert(last.to_owned(), value);
                Ok(())
            }
        }
    }

    /// Removes what `path` points at: `.Metadata` becomes an empty map, a metadata key
    /// or structured field is deleted, `.Key` or a payload side becomes no data,
    /// `.Payload` clears both sides. Removing something that is not there does nothing.
    ///
    /// # Errors
    ///
    /// [`PathError::Unsupported`] for `.`, `.Position` and `.Operation`;
    /// [`PathError::NotStructured`] when the path reaches into raw data or through a
    /// value that is not a map.
    pub fn remove(&mut self, path: &FieldPath) -> Result<(), PathError> {
        match path.target() {
            Target::Record | Target::Position | Target::Operation => Err(PathError::Unsupported {
                action: "remove",
                path: path.as_str().to_owned(),
            }),
            Target::Metadata => {
                self.metadata = Metadata::new();
                Ok(())
            }
            Target::MetadataField(name) => {
                self.metadata.remove(name);
                Ok(())
            }
            Target::Payload => {
                self.payload = Payload::default();
                Ok(())
            }
            Target::Data(slot) => {
                *self.slot_mut(*slot) = None;
                Ok(())
            }
            Target::DataField(slot, fields) => {
                if let Some(map) = self.parent_map_mut(*slot, fields)? {
                    let (last, _) = split_fields(fields);
                    map.remove(last);
                }
                Ok(())
            }
        }
    }

    /// Renames the metadata key or structured field `path` points at to `new_name`
    /// (in the same map), replacing any value already under `new_name`. Returns whether
    /// there was a field to rename.
    ///
    /// # Errors
    ///
    /// [`PathError::Unsupported`] unless `path` is a metadata key or a field inside
    /// structured data; [`PathError::NotStructured`] when the path reaches into raw data
    /// or through a value that is not a map.
    pub fn rename(&mut self, path: &FieldPath, new_name: &str) -> Result<bool, PathError> {
        match path.target() {
            Target::MetadataField(name) => Ok(match self.metadata.remove(name) {
                Some(value) => {
                    self.metadata.insert(new_name, value);
                    true
                }
                None => false,
            }),
            Target::DataField(slot, fields) => {
                let Some(map) = self.parent_map_mut(*slot, fields)? else {
                    return Ok(false);
                };
                let (last, _) = split_fields(fields);
                Ok(match map.remove(last) {
                    Some(value) => {
                        map.insert(new_name.to_owned(), value);
                        true
                    }
                    None => false,
                })
            }
            _ => Err(PathError::Unsupported {
                action: "rename",
                path: path.as_str().to_owned(),
            }),
        }
    }

    fn slot(&self, slot: DataSlot) -> &Option<Data> {
        match slot {
            DataSlot::Key => &self.key,
            DataSlot::Before => &self.payload.before,
            DataSlot::After => &self.payload.after,
        }
    }

    fn slot_mut(&mut self, slot: DataSlot) -> &mut Option<Data> {
        match slot {
            DataSlot::Key => &mut self.key,
            DataSlot::Before => &mut self.payload.before,
            DataSlot::After => &mut self.payload.after,
        }
    }

    /// Fails like [`Record::set`] would part-way, before anything is created.
    fn check_settable(&self, slot: DataSlot, fields: &[String]) -> Result<(), PathError> {
        let mut map = match self.slot(slot) {
            None => return Ok(()),
            Some(Data::Raw(_)) => return Err(not_structured(slot, fields, 0, "raw data")),
            Some(Data::Structured(map)) => map,
        };
        let (_, parents) = split_fields(fields);
        for (depth, name) in parents.iter().enumerate() {
            map = match map.get(name) {
                None | Some(Value::Null) => return Ok(()),
                Some(Value::Map(inner)) => inner,
                Some(other) => return Err(not_structured(slot, fields, depth + 1, kind_of(other))),
            };
        }
        Ok(())
    }

    /// The map holding the last of `fields`, if it exists; creates nothing.
    fn parent_map_mut(
        &mut self,
        slot: DataSlot,
        fields: &[String],
    ) -> Result<Option<&mut StructuredData>, PathError> {
        let mut map = match self.slot_mut(slot) {
            None => return Ok(None),
            Some(Data::Raw(_)) => return Err(not_structured(slot, fields, 0, "raw data")),
            Some(Data::Structured(map)) => map,
        };
        let (_, parents) = split_fields(fields);
        for (depth, name) in parents.iter().enumerate() {
            map = match map.get_mut(name) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Map(inner)) => inner,
                Some(other) => {
                    return Err(not_structured(slot, fields, depth + 1, kind_of(other)));
                }
            };
        }
        Ok(Some(map))
    }
}

/// The last field and the ones before it. `fields` is never empty (see
/// [`Target::DataField`]); an empty slice yields an empty name.
fn split_fields(fields: &[String]) -> (&str, &[String]) {
    match fields.split_last() {
        Some((last, parents)) => (last, parents),
        None => ("", &[]),
    }
}

/// The operation a value stands for: `None` for a value of the wrong type,
/// `Some(Err(text))` for a string or number that is not one of the four operations.
fn operation_from_value(value: &Value) -> Option<Result<Operation, String>> {
    let operation = match value {
        Value::String(text) => match Operation::parse_text(text) {
            Some(op) => op,
            None => return Some(Err(format!("{text:?}"))),
        },
        Value::Int(n) => Operation::from_code(*n),
        Value::Uint(n) => return Some(Err(n.to_string())),
        _ => return None,
    };
    Some(match operation {
        Operation::Other(n) => Err(match value {
            Value::String(text) => format!("{text:?}"),
            _ => n.to_string(),
        }),
        op => Ok(op),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> FieldPath {
        FieldPath::parse(text).unwrap()
    }

    fn parse_err(text: &str) -> String {
        FieldPath::parse(text).unwrap_err().to_string()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn map(entries: &[(&str, Value)]) -> StructuredData {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn string(s: &str) -> Value {
        Value::String(s.into())
    }

    fn record_with_after(after: StructuredData) -> Record {
        let mut record = Record::new("p", "");
        record.payload.after = Some(Data::Structured(after));
        record
    }

    #[test]
    fn top_level_references_parse_to_their_targets() {
        assert_eq!(path(".").target(), &Target::Record);
        assert_eq!(path("$").target(), &Target::Record);
        assert_eq!(path(".Position").target(), &Target::Position);
        assert_eq!(path(".Operation").target(), &Target::Operation);
        assert_eq!(path(".Metadata").target(), &Target::Metadata);
        assert_eq!(path(".Key").target(), &Target::Data(DataSlot::Key));
        assert_eq!(path(".Payload").target(), &Target::Payload);
        assert_eq!(
            path(".Payload.Before").target(),
            &Target::Data(DataSlot::Before)
        );
        assert_eq!(
            path("$.Payload.After").target(),
            &Target::Data(DataSlot::After)
        );
    }

    #[test]
    fn nested_references_parse_dots_and_brackets() {
        assert_eq!(
            path(".Metadata.foo").target(),
            &Target::MetadataField("foo".into())
        );
        assert_eq!(
            path(r#".Metadata["opencdc.readAt"]"#).target(),
            &Target::MetadataField("opencdc.readAt".into())
        );
        assert_eq!(
            path(".Key.a.b").target(),
            &Target::DataField(DataSlot::Key, names(&["a", "b"]))
        );
        assert_eq!(
            path(r#".Payload.After.name["weird key!"].nested_2"#).target(),
            &Target::DataField(DataSlot::After, names(&["name", "weird key!", "nested_2"]))
        );
        assert_eq!(
            path(r#".Payload["After"]["x"]"#).target(),
            &Target::DataField(DataSlot::After, names(&["x"]))
        );
        assert_eq!(
            path(".Payload.After.ünïcode").target(),
            &Target::DataField(DataSlot::After, names(&["ünïcode"]))
        );
    }

    #[test]
    fn quoted_names_unescape_quotes_and_backslashes() {
        assert_eq!(
            path(r#".Key["a\"b\\c]"]"#).target(),
            &Target::DataField(DataSlot::Key, names(&["a\"b\\c]"]))
        );
        assert!(parse_err(r#".Key["a\nb"]"#).contains("unsupported escape"));
    }

    #[test]
    fn malformed_references_are_refused_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("Payload", "unexpected 'P'"),
            (".Payload.", "ends with a dot"),
            ("..", "expected a name after the dot"),
            ("$.", "ends with a dot"),
            (".Payload .After", "unexpected ' '"),
            (".Key.1a", "starts with a digit"),
            (".Key.a-b", "unexpected '-'"),
            (r#".["Key"]"#, "expected a name after the dot, found '['"),
            (r#"$["Key"]"#, "brackets must follow a name"),
            (".Key[a]", "double-quoted"),
            (r#".Key["a""#, "expected ]"),
            (r#".Key["a"#, "unterminated"),
            (".Key]", "unexpected ']'"),
            (".Metadata.[\"a\"]", "expected a name after the dot"),
        ] {
            let err = parse_err(text);
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn references_to_fields_records_do_not_have_are_refused() {
        assert!(parse_err(".Foo").contains("unexpected field \"Foo\""));
        assert!(parse_err(".position").contains("unexpected field"));
        assert!(parse_err(".Position.x").contains(".Position has no fields"));
        assert!(parse_err(".Operation.x").contains(".Operation has no fields"));
        assert!(parse_err(".Metadata.a.b").contains("metadata values are strings"));
        assert!(parse_err(".Payload.Middle").contains("expected Before or After"));
    }

    #[test]
    fn paths_display_as_written() {
        let p: FieldPath = r#"$.Metadata["x"]"#.parse().unwrap();
        assert_eq!(p.to_string(), r#"$.Metadata["x"]"#);
        assert_eq!(p.as_str(), r#"$.Metadata["x"]"#);
    }

    #[test]
    fn get_reads_top_level_fields() {
        let mut record = Record::new("pos", "raw");
        record.metadata.insert("opencdc.readAt", "1");
        assert_eq!(
            record.get(&path(".")).unwrap(),
            Some(FieldRef::Record(&record))
        );
        assert_eq!(
            record.get(&path(".Position")).unwrap(),
            Some(FieldRef::Position(&record.position))
        );
        assert_eq!(
            record.get(&path(".Operation")).unwrap(),
            Some(FieldRef::Operation(Operation::Create))
        );
        assert_eq!(
            record.get(&path(r#".Metadata["opencdc.readAt"]"#)).unwrap(),
            Some(FieldRef::MetadataValue("1"))
        );
        assert_eq!(record.get(&path(".Metadata.missing")).unwrap(), None);
        assert_eq!(
            record.get(&path(".Payload.After")).unwrap(),
            Some(FieldRef::Data(&Data::raw("raw")))
        );
        assert_eq!(record.get(&path(".Key")).unwrap(), None);
    }

    #[test]
    fn get_reads_nested_structured_fields() {
        let record = record_with_after(map(&[
            ("name", Value::Map(map(&[("nested", string("x"))]))),
            ("gone", Value::Null),
        ]));
        assert_eq!(
            record.get(&path(".Payload.After.name.nested")).unwrap(),
            Some(FieldRef::Value(&string("x")))
        );
        assert_eq!(
            record.get(&path(".Payload.After.name.other")).unwrap(),
            None
        );
        assert_eq!(
            record.get(&path(".Payload.After.gone.deeper")).unwrap(),
            None
        );
        assert_eq!(record.get(&path(".Payload.Before.x")).unwrap(), None);
    }

    #[test]
    fn reaching_into_raw_data_is_an_error_naming_the_field() {
        let mut record = Record::new("p", "raw");
        let err = record.get(&path(".Payload.After.x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot access field x of raw data at .Payload.After"
        );
        assert!(
            record
                .set(&path(".Payload.After.x"), Value::Int(1))
                .is_err()
        );
        assert!(record.remove(&path(".Payload.After.x")).is_err());
        assert_eq!(record.payload.after, Some(Data::raw("raw")));
    }

    #[test]
    fn reaching_through_a_non_map_value_is_an_error_naming_where() {
        let mut record = record_with_after(map(&[("a b", Value::Int(1))]));
        let p = path(r#".Payload.After["a b"].c"#);
        let err = record.get(&p).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot access field c of a number value at .Payload.After["a b"]"#
        );
        assert_eq!(record.set(&p, Value::Null).unwrap_err(), err);
    }

    #[test]
    fn set_creates_data_and_intermediate_maps() {
        let mut record = Record::new("p", "");
        record.payload.after = None;
        record.payload.before = Some(Data::Structured(map(&[("a", Value::Null)])));
        record
            .set(&path(".Payload.After.a.b"), Value::Int(1))
            .unwrap();
        record
            .set(&path(".Payload.Before.a.b"), Value::Int(2))
            .unwrap();
        let expected = |n| {
            Some(Data::Structured(map(&[(
                "a",
                Value::Map(map(&[("b", Value::Int(n))])),
            )])))
        };
        assert_eq!(record.payload.after, expected(1));
        assert_eq!(record.payload.before, expected(2));
    }

    #[test]
    fn set_replaces_whole_data_by_value_type() {
        let mut record = Record::new("p", "");
        record.set(&path(".Key"), string("k")).unwrap();
        assert_eq!(record.key, Some(Data::raw("k")));
        record
            .set(&path(".Key"), Value::Map(map(&[("id", Value::Int(1))])))
            .unwrap();
        assert_eq!(
            record.key,
            Some(Data::Structured(map(&[("id", Value::Int(1))])))
        );
        record.set(&path(".Key"), Value::Null).unwrap();
        assert_eq!(record.key, None);
        let err = record.set(&path(".Key"), Value::Int(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot set .Key to a number value: expected a string, bytes, a map or null"
        );
    }

    #[test]
    fn set_metadata_fields_creates_the_map() {
        let mut record = Record::new("p", "");
        record.metadata = Metadata::none();
        record
            .set(&path(".Metadata.table"), string("users"))
            .unwrap();
        assert_eq!(record.metadata.get("table"), Some("users"));
        record.set(&path(".Metadata.table"), Value::Null).unwrap();
        assert!(record.metadata.is_empty());
        assert!(record.set(&path(".Metadata.table"), Value::Int(1)).is_err());
        let err = record
            .set(
                &path(".Metadata"),
                Value::Map(map(&[("a.b", Value::Bool(true))])),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot set .Metadata["a.b"] to a boolean value: expected a string"#
        );
        record
            .set(&path(".Metadata"), Value::Map(map(&[("a", string("b"))])))
            .unwrap();
        assert_eq!(record.metadata.get("a"), Some("b"));
    }

    #[test]
    fn set_operation_accepts_only_the_four_operations() {
        let mut record = Record::new("p", "");
        record.set(&path(".Operation"), string("delete")).unwrap();
        assert_eq!(record.operation, Operation::Delete);
        record
            .set(&path(".Operation"), string("Operation(4)"))
            .unwrap();
        assert_eq!(record.operation, Operation::Snapshot);
        record.set(&path(".Operation"), Value::Int(2)).unwrap();
        assert_eq!(record.operation, Operation::Update);
        let err = record
            .set(&path(".Operation"), string("Operation(9)"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot set .Operation to "Operation(9)": unknown operation"#
        );
        assert!(record.set(&path(".Operation"), string("")).is_err());
        assert!(record.set(&path(".Operation"), Value::Int(0)).is_err());
        assert!(record.set(&path(".Operation"), Value::Bool(true)).is_err());
        assert_eq!(record.operation, Operation::Update);
    }

    #[test]
    fn position_record_and_payload_cannot_be_set() {
        let mut record = Record::new("p", "");
        for text in [".", ".Position", ".Payload"] {
            let err = record.set(&path(text), string("x")).unwrap_err();
            assert_eq!(err.to_string(), format!("cannot set {text}"));
        }
    }

    #[test]
    fn remove_clears_fields_like_field_exclude() {
        let mut record = Record::new("p", "");
        record.metadata.insert("a", "b");
        record.key = Some(Data::Structured(map(&[
            ("k1", string("v1")),
            ("k2", string("v2")),
        ])));
        record.payload.before = Some(Data::raw("b"));
        record.remove(&path(".Metadata")).unwrap();
        assert!(!record.metadata.is_nil() && record.metadata.is_empty());
        record.remove(&path(".Key.k1")).unwrap();
        assert_eq!(
            record.key,
            Some(Data::Structured(map(&[("k2", string("v2"))])))
        );
        record.remove(&path(".Payload")).unwrap();
        assert_eq!(record.payload, Payload::default());
        assert!(record.remove(&path(".Position")).is_err());
        assert!(record.remove(&path(".Operation")).is_err());
    }

    #[test]
    fn removing_what_is_not_there_changes_nothing() {
        let mut record = Record::new("p", "");
        record.metadata = Metadata::none();
        record.payload.after = None;
        let before = record.clone();
        record.remove(&path(".Metadata.x")).unwrap();
        record.remove(&path(".Payload.After.a.b")).unwrap();
        assert!(record.metadata.is_nil());
        assert_eq!(record, before);
    }

    #[test]
    fn rename_moves_metadata_and_structured_fields() {
        let mut record = record_with_after(map(&[("foo", string("bar"))]));
        record.metadata.insert("key1", "val1");
        assert!(record.rename(&path(".Metadata.key1"), "newKey").unwrap());
        assert!(
            record
                .rename(&path(".Payload.After.foo"), "new.Foo")
                .unwrap()
        );
        assert!(!record.rename(&path(".Payload.After.missing"), "x").unwrap());
        assert_eq!(record.metadata.get("newKey"), Some("val1"));
        assert_eq!(record.metadata.get("key1"), None);
        assert_eq!(
            record.payload.after,
            Some(Data::Structured(map(&[("new.Foo", string("bar"))])))
        );
        let err = record.rename(&path(".Metadata"), "x").unwrap_err();
        assert_eq!(err.to_string(), "cannot rename .Metadata");
    }
}
