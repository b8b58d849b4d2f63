//! The OpenCDC JSON codec, byte-compatible with Conduit's record JSON.
//!
//! A record is written as compact JSON with its members in a fixed order:
//!
//! ```json
//! {"position":"Zm9v","operation":"create","metadata":{"a":"b"},"key":"YmFy","payload":{"before":null,"after":{"id":1}}}
//! ```
//!
//! - `position`: standard base64 with padding; an empty (unset) position is `null`.
//! - `operation`: `create`, `update`, `delete`, `snapshot` or `Operation(N)`.
//! - `metadata`: an object with sorted keys; no map at all is `null`, an empty map `{}`.
//! - `key`, `payload.before`, `payload.after`: raw data is a base64 string (or, with
//!   [`JsonOptions::with_raw_data_as_string`], the bytes as a JSON string), structured
//!   data an object with sorted keys, no data `null`.
//!
//! Values are written the way Go's `encoding/json` (and `goccy/go-json`, which Conduit
//! uses) writes them: integers plainly, floats in their shortest round-trip form (`4.0`
//! is `4`, exponent form `1e+21` / `1e-7` below 1e-6 and from 1e21 on), strings with
//! `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`, `\u003e`, `\u0026`, `\u2028`,
//! `\u2029`, control characters other than `\n`, `\r` and `\t` as `\u00XX`, and invalid
//! UTF-8 in raw-data-as-string output as `\ufffd`. [`Value::Bytes`] is a base64 string,
//! [`Value::Time`] a string as Go's `time.Time.MarshalJSON` writes it: RFC 3339 with
//! nanoseconds, trailing zeros dropped, `Z` for UTC (`"2021-01-21T18:40:12.345678999Z"`).
//! Decoding never produces a [`Value::Time`]: JSON has no time type, so such a string
//! reads back as a [`Value::String`], as it does in Conduit.
//!
//! # Deliberate differences from Conduit
//!
//! - **`null` data is "no data".** Conduit decodes a `null` key or payload side into
//!   structured data holding a nil map; Funnel reads it as `None`. Both write it back as
//!   `null`, so the bytes round-trip identically; only a type check on the decoded record
//!   differs.
//! - **Numbers keep their kind.** Conduit decodes every number inside structured data as
//!   a float64. Funnel keeps integer literals as [`Value::Int`] (or [`Value::Uint`] above
//!   `i64::MAX`) and literals with a fraction or exponent as [`Value::Float`]. The JSON
//!   written back is identical, since Go writes a float64 `1` as `1`.
//! - **A missing `key`, `payload`, `before` or `after` member is `null`.** Conduit panics
//!   on a missing data member; Funnel decodes the record with no data there.
//! - **An empty position is written as `null`.** Funnel has no "empty but set" position,
//!   so `"position":""` reads as unset and is written back as `null`.
//! - **Non-finite floats are written as `null`.** Go refuses to marshal NaN and
//!   infinities (Conduit panics); Funnel cannot fail while writing, so it writes `null`.

use std::collections::BTreeMap;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde_json::value::RawValue;

use crate::go::{Numbers, value_from_json, write_json_float};
use crate::map::StructuredData;
use crate::record::{Data, Metadata, Operation, Payload, Position, Record, Value};

/// Options for writing OpenCDC JSON. The default matches Conduit's default serializer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonOptions {
    raw_data_as_string: bool,
}

impl JsonOptions {
    /// The default options: raw data written as base64.
    pub const fn new() -> Self {
        Self {
            raw_data_as_string: false,
        }
    }

    /// Writes raw key and payload data as JSON strings holding the bytes as text
    /// (invalid UTF-8 becomes U+FFFD) instead of base64, like Conduit's
    /// `RawDataAsString` serializer option. The position stays base64.
    pub const fn with_raw_data_as_string(mut self, enabled: bool) -> Self {
        self.raw_data_as_string = enabled;
        self
    }

    /// True when raw data is written as a plain string.
    pub const fn raw_data_as_string(&self) -> bool {
        self.raw_data_as_string
    }
}

/// Why OpenCDC JSON could not be decoded.
///
/// Every variant is a fault in the input: decoding the same bytes again fails the
/// same way, so the error is never worth retrying. Line and column are 1-based and
/// count bytes, like `serde_json`'s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is not JSON, or its top level is not an object (the message names
    /// the problem with its line and column).
    #[error("invalid OpenCDC JSON: {0}")]
    Json(serde_json::Error),
    /// A string in `key`, `payload.before` or `payload.after` is not valid base64.
    #[error("failed to unmarshal raw data in {field} at line {line} column {column}: {reason}")]
    RawData {
        /// `key`, `payload.before` or `payload.after`.
        field: &'static str,
        /// Line of the value.
        line: usize,
        /// Column of the value.
        column: usize,
        /// What is wrong with the base64.
        reason: String,
    },
    /// `key`, `payload.before` or `payload.after` is neither a string, an object nor
    /// `null`.
    #[error(
        "failed to unmarshal structured data in {field} at line {line} column {column}: expected an object, found {found}"
    )]
    StructuredData {
        /// `key`, `payload.before` or `payload.after`.
        field: &'static str,
        /// Line of the value.
        line: usize,
        /// Column of the value.
        column: usize,
        /// The JSON type found instead (`a number`, `an array`, ...).
        found: &'static str,
    },
    /// The operation is not one of the four names nor `Operation(N)`.
    #[error("operation {value:?}: unknown operation (line {line} column {column})")]
    UnknownOperation {
        /// The operation text as found.
        value: String,
        /// Line of the value.
        line: usize,
        /// Column of the value.
        column: usize,
    },
    /// `position`, `operation`, `metadata` or `payload` has the wrong JSON type, or the
    /// position is not valid base64.
    #[error("invalid {field} at line {line} column {column}: {reason}")]
    Member {
        /// The member's name (`metadata["k"]` for a metadata value).
        field: String,
        /// Line of the value.
        line: usize,
        /// Column of the value.
        column: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl Record {
    /// The record as OpenCDC JSON with default options (see the [module docs](self)).
    pub fn to_json(&self) -> Vec<u8> {
        self.to_json_with(JsonOptions::new())
    }

    /// The record as OpenCDC JSON written with `options`.
    pub fn to_json_with(&self, options: JsonOptions) -> Vec<u8> {
        // Base64 grows raw data by a third; the rest is member names and metadata.
        let size = self.size_hint();
        let mut out = Vec::with_capacity(size + size / 3 + 128);
        self.write_json_with(&mut out, options);
        out
    }

    /// Appends the record as OpenCDC JSON with default options to `out`.
    ///
    /// Writes straight into the buffer; reusing one buffer for a batch of records
    /// allocates only when it grows.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_with(out, JsonOptions::new());
    }

    /// Appends the record as OpenCDC JSON written with `options` to `out`.
    pub fn write_json_with(&self, out: &mut Vec<u8>, options: JsonOptions) {
        self.write_json_parts(out, options, |out| write_metadata(out, &self.metadata));
    }

    /// The record's JSON with the metadata object (or `null`) written by `metadata`.
    fn write_json_parts(
        &self,
        out: &mut Vec<u8>,
        options: JsonOptions,
        metadata: impl FnOnce(&mut Vec<u8>),
    ) {
        out.extend_from_slice(b"{\"position\":");
        write_position(out, &self.position);
        out.extend_from_slice(b",\"operation\":");
        write_operation(out, self.operation);
        out.extend_from_slice(b",\"metadata\":");
        metadata(out);
        out.extend_from_slice(b",\"key\":");
        write_data(out, self.key.as_ref(), options);
        out.extend_from_slice(b",\"payload\":{\"before\":");
        write_data(out, self.payload.before.as_ref(), options);
        out.extend_from_slice(b",\"after\":");
        write_data(out, self.payload.after.as_ref(), options);
        out.extend_from_slice(b"}}");
    }

    /// Decodes a record from OpenCDC JSON (see the [module docs](self) for how `null`,
    /// missing members and numbers are read). Unknown members are ignored; member names
    /// match exactly, or else ignoring ASCII case, as Go does.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the input is not JSON, is not an object, or a member has a
    /// value Conduit would refuse: raw data that is not base64 (`failed to unmarshal raw
    /// data`), data that is a number, array or boolean (`failed to unmarshal structured
    /// data`), an unknown operation (`unknown operation`), or a position, metadata or
    /// payload of the wrong type.
    pub fn from_json(input: &[u8]) -> Result<Self, DecodeError> {
        let members: BTreeMap<String, &RawValue> =
            serde_json::from_slice(input).map_err(DecodeError::Json)?;
        let doc = Doc { input };

        let position = match member(&members, "position") {
            Some(raw) => doc.position(raw)?,
            None => Position::default(),
        };
        let operation = match member(&members, "operation") {
            Some(raw) => doc.operation(raw)?,
            None => Operation::Other(0),
        };
        let metadata = match member(&members, "metadata") {
            Some(raw) => doc.metadata(raw)?,
            None => Metadata::none(),
        };
        let key = match member(&members, "key") {
            Some(raw) => doc.data(raw, "key")?,
            None => None,
        };
        let payload = match member(&members, "payload") {
            Some(raw) => doc.payload(raw)?,
            None => Payload::default(),
        };
        Ok(Self {
            position,
            operation,
            metadata,
            key,
            payload,
        })
    }
}

/// Writes records as OpenCDC JSON lines (each record's JSON and a `\n`) into one
/// buffer, the bytes of [`Record::write_json_with`] for each.
///
/// A metadata map that consecutive records share (a source stamps one map on every
/// record of a batch, and clones of a record share it) is written once; for the next
/// records sharing it, the bytes already written are copied.
#[derive(Debug)]
pub struct JsonLines<'r, 'o> {
    out: &'o mut Vec<u8>,
    options: JsonOptions,
    /// The last metadata map written and where its JSON is in `out`.
    metadata: Option<(&'r BTreeMap<String, String>, Range<usize>)>,
}

impl<'r, 'o> JsonLines<'r, 'o> {
    /// Lines appended to `out`, written with `options`.
    pub fn new(out: &'o mut Vec<u8>, options: JsonOptions) -> Self {
        Self {
            out,
            options,
            metadata: None,
        }
    }

    /// Appends the JSON of `record` and a `\n`.
    pub fn write_line(&mut self, record: &'r Record) {
        let last = &mut self.metadata;
        record.write_json_parts(self.out, self.options, |out| {
            let Some(map) = record.metadata.as_map() else {
                out.extend_from_slice(b"null");
                return;
            };
            match last {
                // The same map (a borrow lives as long as its record, so the same
                // address is the same map): copy its JSON.
                Some((written, range)) if std::ptr::eq(*written, map) => {
                    out.extend_from_within(range.clone());
                }
                _ => {
                    let start = out.len();
                    write_metadata_map(out, map);
                    *last = Some((map, start..out.len()));
                }
            }
        });
        self.out.push(b'\n');
    }
}

impl Value {
    /// The value as JSON, written the way Go's `encoding/json` writes the equivalent Go
    /// value (maps with sorted keys, bytes as base64).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }

    /// Appends the value as JSON to `out` (see [`Value::to_json`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_value(out, self);
    }

    /// Decodes any JSON value. Integer literals become [`Value::Int`] (or
    /// [`Value::Uint`] above `i64::MAX`), literals with a fraction or exponent
    /// [`Value::Float`], objects [`Value::Map`].
    ///
    /// # Errors
    ///
    /// [`DecodeError::Json`] when the input is not a single JSON value.
    pub fn from_json(input: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice::<serde_json::Value>(input)
            .map(|json| value_from_json(json, Numbers::KeepIntegers))
            .map_err(DecodeError::Json)
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

fn write_position(out: &mut Vec<u8>, position: &Position) {
    if position.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        write_base64_string(out, position.as_bytes());
    }
}

fn write_operation(out: &mut Vec<u8>, operation: Operation) {
    match operation {
        Operation::Create => out.extend_from_slice(b"\"create\""),
        Operation::Update => out.extend_from_slice(b"\"update\""),
        Operation::Delete => out.extend_from_slice(b"\"delete\""),
        Operation::Snapshot => out.extend_from_slice(b"\"snapshot\""),
        Operation::Other(n) => {
            out.extend_from_slice(b"\"Operation(");
            write_i64(out, n);
            out.extend_from_slice(b")\"");
        }
    }
}

fn write_metadata(out: &mut Vec<u8>, metadata: &Metadata) {
    match metadata.as_map() {
        Some(map) => write_metadata_map(out, map),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_metadata_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    write_object(out, map.iter(), |out, value: &String| {
        write_string(out, value)
    });
}

fn write_data(out: &mut Vec<u8>, data: Option<&Data>, options: JsonOptions) {
    match data {
        None => out.extend_from_slice(b"null"),
        Some(Data::Raw(bytes)) if options.raw_data_as_string => write_bytes_as_string(out, bytes),
        Some(Data::Raw(bytes)) => write_base64_string(out, bytes),
        Some(Data::Structured(map)) => write_map(out, map),
    }
}

fn write_map(out: &mut Vec<u8>, map: &StructuredData) {
    write_object(out, map.iter(), write_value);
}

/// Writes the entries of a map (in key order) as a JSON object, each value with
/// `write_member`.
fn write_object<'a, K: AsRef<str> + 'a, V: 'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a K, &'a V)>,
    write_member: impl Fn(&mut Vec<u8>, &V),
) {
    out.push(b'{');
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key.as_ref());
        out.push(b':');
        write_member(out, value);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(n) => write_i64(out, *n),
        Value::Uint(n) => write_u64(out, *n),
        // Go's `encoding/json` form; NaN and infinities as `null` (see the module docs).
        Value::Float(f) => write_json_float(out, *f),
        Value::String(s) => write_string(out, s),
        Value::Bytes(b) => write_base64_string(out, b),
        Value::Time(t) => {
            // RFC 3339 text needs no escaping.
            out.push(b'"');
            t.write_rfc3339(out);
            out.push(b'"');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Map(map) => write_map(out, map),
    }
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_base64_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    if let Some(len) = base64::encoded_len(bytes.len(), true) {
        out.resize(start + len, 0);
        match STANDARD.encode_slice(bytes, &mut out[start..]) {
            Ok(written) => out.truncate(start + written),
            Err(_) => {
                // Cannot happen: the slice has exactly the encoded length.
                out.truncate(start);
                out.extend_from_slice(STANDARD.encode(bytes).as_bytes());
            }
        }
    } else {
        out.extend_from_slice(STANDARD.encode(bytes).as_bytes());
    }
    out.push(b'"');
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Writes bytes as a JSON string; each byte of invalid UTF-8 becomes `\ufffd`, as Go
/// does.
fn write_bytes_as_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        write_escaped(out, chunk.valid());
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

/// Needs no escape.
const NO: u8 = 0;
/// Written as `\u00XX`.
const HEX: u8 = b'u';
/// First byte of U+2028 and U+2029: check the next two bytes.
const LINE_SEP: u8 = 1;

/// What to do with each byte of a string; otherwise the letter written after `\`.
static ESCAPE: [u8; 256] = {
    let mut table = [NO; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = HEX;
        b += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'<' as usize] = HEX;
    table[b'>' as usize] = HEX;
    table[b'&' as usize] = HEX;
    table[0xE2] = LINE_SEP;
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes the body of a JSON string (no quotes), escaping like Go's `encoding/json`
/// with HTML escaping on, in its `goccy/go-json` form (`\b` and `\f` as `\u0008` and
/// `\u000c`).
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !any_may_need_escape(bytes) {
        // Most keys and values: nothing to escape.
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    let mut i = 0;
    loop {
        // Eight bytes at a time past text that needs no escape.
        while let Some(chunk) = bytes
            .get(i..i + 8)
            .and_then(|c| <[u8; 8]>::try_from(c).ok())
        {
            if may_need_escape(u64::from_le_bytes(chunk)) {
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        match ESCAPE[usize::from(b)] {
            NO => i += 1,
            LINE_SEP => {
                // U+2028 is E2 80 A8, U+2029 is E2 80 A9.
                if let [0x80, last @ (0xA8 | 0xA9)] = bytes.get(i + 1..i + 3).unwrap_or_default() {
                    out.extend_from_slice(&bytes[start..i]);
                    out.extend_from_slice(b"\\u202");
                    out.push(HEX_DIGITS[usize::from(last & 0x0F)]);
                    i += 3;
                    start = i;
                } else {
                    i += 1;
                }
            }
            HEX => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX_DIGITS[usize::from(b >> 4)]);
                out.push(HEX_DIGITS[usize::from(b & 0x0F)]);
                i += 1;
                start = i;
            }
            letter => {
                out.extend_from_slice(&bytes[start..i]);
                out.push(b'\\');
                out.push(letter);
                i += 1;
                start = i;
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// False only when no byte of `bytes` needs escaping (see [`may_need_escape`]).
fn any_may_need_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let whole = chunks.any(|chunk| {
        <[u8; 8]>::try_from(chunk).is_ok_and(|c| may_need_escape(u64::from_le_bytes(c)))
    });
    // The last bytes, padded with spaces (which need no escape).
    let rest = chunks.remainder();
    let mut last = [b' '; 8];
    last[..rest.len()].copy_from_slice(rest);
    whole || may_need_escape(u64::from_le_bytes(last))
}

/// False only when none of the eight bytes of `word` needs escaping: none is a control
/// character, `"`, `\`, `<`, `>`, `&` or outside ASCII (U+2028 and U+2029 start with
/// 0xE2). May be true for bytes that need none; [`write_escaped`] then looks at them
/// one by one.
const fn may_need_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte's high bit set here means the byte is zero (exact for ASCII bytes; a byte
    // at 0x80 or above is caught by `word & HIGH` anyway).
    const fn zero_byte(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x
    }
    const fn equal(word: u64, c: u8) -> u64 {
        zero_byte(word ^ (ONES * c as u64))
    }
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let special = equal(word, b'"')
        | equal(word, b'\\')
        | equal(word, b'<')
        | equal(word, b'>')
        | equal(word, b'&');
    (control | special | word) & HIGH != 0
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Standard base64 as Go's `base64.StdEncoding` reads it: padding required, non-zero
/// trailing bits accepted.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Decodes base64 like Go's `encoding/json` does for `[]byte`: `\r` and `\n` are
/// skipped.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if text.contains(['\r', '\n']) {
        let cleaned: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        GO_STD_BASE64.decode(cleaned)
    } else {
        GO_STD_BASE64.decode(text)
    }
}

/// The member called `name`: an exact match, or else the first whose name matches
/// ignoring ASCII case (Go matches struct fields case-insensitively).
fn member<'a>(members: &BTreeMap<String, &'a RawValue>, name: &str) -> Option<&'a RawValue> {
    members.get(name).copied().or_else(|| {
        members
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    })
}

/// What a JSON value is, from its first byte, in words for error messages.
fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// The input being decoded, for turning a value into its line and column.
struct Doc<'a> {
    input: &'a [u8],
}

impl Doc<'_> {
    /// Line and column (1-based, in bytes) where `raw` starts in the input.
    fn line_column(&self, raw: &RawValue) -> (usize, usize) {
        let start = self.input.as_ptr() as usize;
        let offset = (raw.get().as_ptr() as usize)
            .checked_sub(start)
            .filter(|&o| o <= self.input.len())
            .unwrap_or(0);
        let before = &self.input[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        (line, offset - line_start + 1)
    }

    fn member_error(
        &self,
        raw: &RawValue,
        field: impl Into<String>,
        reason: String,
    ) -> DecodeError {
        let (line, column) = self.line_column(raw);
        DecodeError::Member {
            field: field.into(),
            line,
            column,
            reason,
        }
    }

    /// Reads a JSON string; `raw` must start with `"`.
    fn string(&self, raw: &RawValue, field: &str) -> Result<String, DecodeError> {
        serde_json::from_str(raw.get()).map_err(|e| self.member_error(raw, field, e.to_string()))
    }

    fn position(&self, raw: &RawValue) -> Result<Position, DecodeError> {
        match raw.get().as_bytes().first() {
            Some(b'n') => Ok(Position::default()),
            Some(b'"') => {
                let text = self.string(raw, "position")?;
                decode_base64(&text)
                    .map(Position::from)
                    .map_err(|e| self.member_error(raw, "position", format!("not base64: {e}")))
            }
            _ => Err(self.member_error(
                raw,
                "position",
                format!("expected a base64 string or null, found {}", json_kind(raw)),
            )),
        }
    }

    fn operation(&self, raw: &RawValue) -> Result<Operation, DecodeError> {
        match raw.get().as_bytes().first() {
            // Like Conduit: null and "" leave the operation unset (0).
            Some(b'n') => Ok(Operation::Other(0)),
            Some(b'"') => {
                let text = self.string(raw, "operation")?;
                if text.is_empty() {
                    return Ok(Operation::Other(0));
                }
                Operation::parse_text(&text).ok_or_else(|| {
                    let (line, column) = self.line_column(raw);
                    DecodeError::UnknownOperation {
                        value: text,
                        line,
                        column,
                    }
                })
            }
            _ => Err(self.member_error(
                raw,
                "operation",
                format!("expected a string, found {}", json_kind(raw)),
            )),
        }
    }

    /// The members of an object member `field`, or `None` for `null`.
    fn object<'r>(
        &self,
        raw: &'r RawValue,
        field: &'static str,
    ) -> Result<Option<BTreeMap<String, &'r RawValue>>, DecodeError> {
        match raw.get().as_bytes().first() {
            Some(b'n') => Ok(None),
            Some(b'{') => serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|e| self.member_error(raw, field, e.to_string())),
            _ => Err(self.member_error(
                raw,
                field,
                format!("expected an object or null, found {}", json_kind(raw)),
            )),
        }
    }

    fn metadata(&self, raw: &RawValue) -> Result<Metadata, DecodeError> {
        let Some(members) = self.object(raw, "metadata")? else {
            return Ok(Metadata::none());
        };
        let mut metadata = Metadata::new();
        for (key, value) in members {
            let text = match value.get().as_bytes().first() {
                // Go leaves a null string at its zero value.
                Some(b'n') => String::new(),
                Some(b'"') => self.string(value, "metadata")?,
                _ => {
                    return Err(self.member_error(
                        value,
                        format!("metadata[{key:?}]"),
                        format!("expected a string, found {}", json_kind(value)),
                    ));
                }
            };
            metadata.insert(key, text);
        }
        Ok(metadata)
    }

    fn payload(&self, raw: &RawValue) -> Result<Payload, DecodeError> {
        let Some(members) = self.object(raw, "payload")? else {
            return Ok(Payload::default());
        };
        let side = |name, field| match member(&members, name) {
            Some(raw) => self.data(raw, field),
            None => Ok(None),
        };
        Ok(Payload {
            before: side("before", "payload.before")?,
            after: side("after", "payload.after")?,
        })
    }

    /// Decodes a key or payload side: a string is raw data (base64), an object is
    /// structured data, `null` is no data, anything else an error.
    fn data(&self, raw: &RawValue, field: &'static str) -> Result<Option<Data>, DecodeError> {
        match raw.get().as_bytes().first() {
            Some(b'"') => {
                let text: String = serde_json::from_str(raw.get())
                    .map_err(|e| self.raw_data_error(raw, field, e.to_string()))?;
                let bytes = decode_base64(&text)
                    .map_err(|e| self.raw_data_error(raw, field, format!("not base64: {e}")))?;
                Ok(Some(Data::Raw(bytes.into())))
            }
            Some(b'{') => {
                let map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(raw.get()).map_err(|e| {
                        self.member_error(
                            raw,
                            field,
                            format!("failed to unmarshal structured data: {e}"),
                        )
                    })?;
                Ok(Some(Data::Structured(
                    map.into_iter()
                        .map(|(k, v)| (k, value_from_json(v, Numbers::KeepIntegers)))
                        .collect(),
                )))
            }
            Some(b'n') => Ok(None),
            _ => {
                let (line, column) = self.line_column(raw);
                Err(DecodeError::StructuredData {
                    field,
                    line,
                    column,
                    found: json_kind(raw),
                })
            }
        }
    }

    fn raw_data_error(&self, raw: &RawValue, field: &'static str, reason: String) -> DecodeError {
        let (line, column) = self.line_column(raw);
        DecodeError::RawData {
            field,
            line,
            column,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float_json(f: f64) -> String {
        String::from_utf8(Value::Float(f).to_json()).unwrap()
    }

    fn string_json(s: &str) -> String {
        String::from_utf8(Value::String(s.into()).to_json()).unwrap()
    }

    /// Go's escaping, one character at a time (the reference for `write_escaped`).
    fn escaped_char_by_char(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '"' | '\\' => format!("\\{c}"),
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                '\u{0}'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    format!("\\u{:04x}", u32::from(c))
                }
                c => c.to_string(),
            })
            .collect()
    }

    #[test]
    fn strings_escape_the_same_wherever_the_character_falls_in_an_eight_byte_block() {
        let specials = [
            "\"", "\\", "<", ">", "&", "\n", "\r", "\t", "\u{0}", "\u{1f}", "\u{7f}", "\u{2028}",
            "\u{2029}", "\u{2027}", "\u{e2}", "é", "€", "😀", " ", "~", "!", "#", "=", "?",
        ];
        for special in specials {
            for before in 0..20 {
                for after in [0, 1, 7, 8, 9, 17] {
                    let text = format!("{}{special}{}", "a".repeat(before), "z".repeat(after));
                    let mut out = Vec::new();
                    write_escaped(&mut out, &text);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        escaped_char_by_char(&text),
                        "{text:?}"
                    );
                }
            }
        }
        // Every ASCII byte and a few multi-byte characters, in one long string.
        let all: String = (0u8..128)
            .map(char::from)
            .chain("é€\u{2028}😀\u{2029}".chars())
            .collect();
        let text = all.repeat(3);
        let mut out = Vec::new();
        write_escaped(&mut out, &text);
        assert_eq!(String::from_utf8(out).unwrap(), escaped_char_by_char(&text));
    }

    #[test]
    fn json_lines_are_each_records_json_whether_its_metadata_is_shared_or_not() {
        let mut shared = Metadata::new();
        shared.insert("opencdc.readAt", "1");
        shared.insert("h", "<b>\"");
        let record = |metadata: &Metadata, n: i64| Record {
            position: Position::from(n.to_string()),
            operation: Operation::Create,
            metadata: metadata.clone(),
            key: None,
            payload: Payload {
                before: None,
                after: Some(structured(&[("n", Value::Int(n))])),
            },
        };
        let mut own = shared.clone();
        own.insert("own", "yes");
        let records = vec![
            record(&shared, 1),
            record(&shared, 2),
            record(&own, 3),
            record(&shared, 4),
            record(&Metadata::none(), 5),
            record(&Metadata::new(), 6),
            record(&Metadata::new(), 7),
            record(&shared, 8),
        ];
        let mut expected = b"already here\n".to_vec();
        for r in &records {
            r.write_json(&mut expected);
            expected.push(b'\n');
        }
        let mut out = b"already here\n".to_vec();
        let mut lines = JsonLines::new(&mut out, JsonOptions::new());
        for r in &records {
            lines.write_line(r);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    fn structured(entries: &[(&str, Value)]) -> Data {
        Data::Structured(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn decode(json: &str) -> Record {
        Record::from_json(json.as_bytes()).unwrap()
    }

    fn decode_err(json: &str) -> String {
        Record::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    fn roundtrip(json: &str) -> String {
        String::from_utf8(decode(json).to_json()).unwrap()
    }

    const MINIMAL: &str = r#"{"position":"Zm9v","operation":"create","metadata":{},"key":null,"payload":{"before":null,"after":null}}"#;

    #[test]
    fn float_with_zero_fraction_is_written_without_it() {
        assert_eq!(float_json(4.0), "4");
        assert_eq!(float_json(-4.0), "-4");
        assert_eq!(float_json(1674061777225.0), "1674061777225");
    }

    #[test]
    fn floats_are_written_in_their_shortest_round_trip_form() {
        assert_eq!(float_json(1.2), "1.2");
        assert_eq!(float_json(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float_json(2.5), "2.5");
        assert_eq!(float_json(0.000001), "0.000001");
        assert_eq!(float_json(1e20), "100000000000000000000");
        assert_eq!(float_json(123456789012345680000.0), "123456789012345680000");
        assert_eq!(float_json(f64::MIN_POSITIVE), "2.2250738585072014e-308");
    }

    #[test]
    fn very_large_and_very_small_floats_use_go_exponent_form() {
        assert_eq!(float_json(1e21), "1e+21");
        assert_eq!(float_json(-1.5e300), "-1.5e+300");
        assert_eq!(float_json(1e-7), "1e-7");
        assert_eq!(float_json(1.25e-7), "1.25e-7");
        assert_eq!(float_json(1e-10), "1e-10");
        assert_eq!(float_json(5e-324), "5e-324");
    }

    #[test]
    fn zero_floats_keep_their_sign() {
        assert_eq!(float_json(0.0), "0");
        assert_eq!(float_json(-0.0), "-0");
    }

    #[test]
    fn non_finite_floats_are_written_as_null() {
        assert_eq!(float_json(f64::NAN), "null");
        assert_eq!(float_json(f64::INFINITY), "null");
    }

    #[test]
    fn integers_are_written_plainly() {
        assert_eq!(Value::Int(i64::MIN).to_json(), b"-9223372036854775808");
        assert_eq!(Value::Int(0).to_json(), b"0");
        assert_eq!(Value::Uint(u64::MAX).to_json(), b"18446744073709551615");
    }

    #[test]
    fn html_characters_are_escaped_like_go() {
        assert_eq!(
            string_json("<a href=\"x\">&</a>"),
            r#""\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e""#
        );
    }

    #[test]
    fn line_and_paragraph_separators_are_escaped() {
        assert_eq!(string_json("a\u{2028}b\u{2029}c"), r#""a\u2028b\u2029c""#);
        // Other characters starting with byte E2 stay as they are.
        assert_eq!(string_json("€ → \u{2027}"), "\"€ → \u{2027}\"");
    }

    #[test]
    fn control_characters_are_escaped_like_goccy_go_json() {
        assert_eq!(string_json("\n\r\t"), r#""\n\r\t""#);
        assert_eq!(
            string_json("\u{8}\u{c}\u{0}\u{1f}"),
            r#""\u0008\u000c\u0000\u001f""#
        );
        assert_eq!(string_json("\\ \" \u{7f}"), "\"\\\\ \\\" \u{7f}\"");
    }

    #[test]
    fn bytes_values_are_written_as_base64() {
        assert_eq!(Value::Bytes("hi?".into()).to_json(), br#""aGk/""#);
    }

    fn time_json(secs: i64, nanos: u32) -> String {
        let time = crate::Timestamp::new(secs, nanos).unwrap();
        String::from_utf8(Value::Time(time).to_json()).unwrap()
    }

    #[test]
    fn time_values_are_written_like_go_marshal_json() {
        // Whole seconds: no fraction.
        assert_eq!(time_json(1_611_254_412, 0), r#""2021-01-21T18:40:12Z""#);
        // Nanoseconds, all nine digits.
        assert_eq!(
            time_json(1_611_254_412, 345_678_999),
            r#""2021-01-21T18:40:12.345678999Z""#
        );
        // Trailing zeros dropped, leading zeros kept.
        assert_eq!(
            time_json(1_611_254_412, 500_000_000),
            r#""2021-01-21T18:40:12.5Z""#
        );
        assert_eq!(
            time_json(1_611_254_412, 1_200),
            r#""2021-01-21T18:40:12.0000012Z""#
        );
        // Before 1970.
        assert_eq!(
            time_json(-1, 999_999_999),
            r#""1969-12-31T23:59:59.999999999Z""#
        );
        assert_eq!(time_json(-2_208_988_800, 0), r#""1900-01-01T00:00:00Z""#);
    }

    #[test]
    fn time_values_read_back_as_strings() {
        let mut record = Record::new("p", "");
        let time = crate::Timestamp::from_unix_nanos(1_704_198_896_123_456_789);
        record.payload.after = Some(structured(&[("t", Value::Time(time))]));
        let json = String::from_utf8(record.to_json()).unwrap();
        assert!(
            json.contains(r#""after":{"t":"2024-01-02T12:34:56.123456789Z"}"#),
            "{json}"
        );
        let decoded = Record::from_json(json.as_bytes()).unwrap();
        assert_eq!(
            decoded.payload.after,
            Some(structured(&[(
                "t",
                Value::String("2024-01-02T12:34:56.123456789Z".into())
            )]))
        );
        assert_eq!(record.size_hint(), 1 + 12);
    }

    #[test]
    fn nested_values_are_written_with_sorted_keys() {
        let value = Value::Map(
            [
                (
                    "b".to_owned(),
                    Value::Array(vec![Value::Null, Value::Bool(true)]),
                ),
                ("a".to_owned(), Value::Map(StructuredData::new())),
            ]
            .into(),
        );
        assert_eq!(value.to_json(), br#"{"a":{},"b":[null,true]}"#);
    }

    #[test]
    fn empty_position_and_nil_metadata_are_written_as_null() {
        let record = Record {
            position: Position::default(),
            operation: Operation::Other(0),
            metadata: Metadata::none(),
            key: None,
            payload: Payload::default(),
        };
        assert_eq!(
            record.to_json(),
            br#"{"position":null,"operation":"Operation(0)","metadata":null,"key":null,"payload":{"before":null,"after":null}}"#
        );
    }

    #[test]
    fn empty_metadata_is_written_as_an_empty_object() {
        let record = Record::new("p", "x");
        let json = String::from_utf8(record.to_json()).unwrap();
        assert!(json.contains(r#""metadata":{}"#), "{json}");
    }

    #[test]
    fn raw_data_as_string_writes_invalid_utf8_as_replacement_characters() {
        let mut record = Record::new("p", &b"a<\xff\xe2\x82b"[..]);
        record.key = Some(Data::raw("k\n"));
        let json = record.to_json_with(JsonOptions::new().with_raw_data_as_string(true));
        let json = String::from_utf8(json).unwrap();
        assert!(json.contains(r#""key":"k\n""#), "{json}");
        assert!(
            json.contains(r#""after":"a\u003c\ufffd\ufffd\ufffdb""#),
            "{json}"
        );
        assert!(json.starts_with(r#"{"position":"cA==""#), "{json}");
    }

    #[test]
    fn write_json_appends_to_the_buffer() {
        let mut out = b"[".to_vec();
        Record::new("p", "x").write_json(&mut out);
        assert!(out.starts_with(b"[{\"position\":\"cA==\""));
        assert!(out.ends_with(b"}}"));
    }

    #[test]
    fn decoding_keeps_integers_and_floats_apart() {
        let record = decode(
            r#"{"position":null,"operation":"create","metadata":null,"key":null,"payload":{"before":null,"after":{"i":54,"f":54.0,"e":1e+19,"big":18446744073709551615,"neg":-3,"nz":-0}}}"#,
        );
        let Some(Data::Structured(after)) = record.payload.after else {
            panic!("expected structured data");
        };
        assert_eq!(after["i"], Value::Int(54));
        assert_eq!(after["f"], Value::Float(54.0));
        assert_eq!(after["e"], Value::Float(1e19));
        assert_eq!(after["big"], Value::Uint(u64::MAX));
        assert_eq!(after["neg"], Value::Int(-3));
        assert!(matches!(after["nz"], Value::Float(f) if f == 0.0 && f.is_sign_negative()));
    }

    #[test]
    fn decoded_floats_reserialize_to_the_same_text() {
        let json = r#"{"position":null,"operation":"create","metadata":null,"key":null,"payload":{"before":null,"after":{"a":0.1,"b":1.7976931348623157e+308,"c":2.2250738585072014e-308,"d":123.456,"e":-0}}}"#;
        assert_eq!(roundtrip(json), json);
    }

    #[test]
    fn null_data_decodes_as_no_data() {
        let record = decode(MINIMAL);
        assert_eq!(record.key, None);
        assert_eq!(record.payload, Payload::default());
    }

    #[test]
    fn missing_key_and_payload_members_decode_as_no_data() {
        let record = decode(r#"{"position":"Zm9v","operation":"create","metadata":{}}"#);
        assert_eq!(record.key, None);
        assert_eq!(record.payload, Payload::default());
        let record = decode(r#"{"position":"Zm9v","payload":{"after":"YQ=="}}"#);
        assert_eq!(record.payload.before, None);
        assert_eq!(record.payload.after, Some(Data::raw("a")));
    }

    #[test]
    fn missing_operation_and_metadata_decode_as_unset() {
        let record = decode("{}");
        assert_eq!(record.operation, Operation::Other(0));
        assert!(record.metadata.is_nil());
        assert!(record.position.is_empty());
    }

    #[test]
    fn operation_accepts_names_numbers_and_empty_text() {
        let op = |text: &str| decode(&format!(r#"{{"operation":{text}}}"#)).operation;
        assert_eq!(op(r#""snapshot""#), Operation::Snapshot);
        assert_eq!(op(r#""Operation(2)""#), Operation::Update);
        assert_eq!(op(r#""Operation(-7)""#), Operation::Other(-7));
        assert_eq!(op(r#""3""#), Operation::Delete);
        assert_eq!(op(r#""""#), Operation::Other(0));
        assert_eq!(op("null"), Operation::Other(0));
    }

    #[test]
    fn unknown_operation_is_an_error_naming_it() {
        let err = decode_err(r#"{"operation":"CREATE"}"#);
        assert_eq!(
            err,
            r#"operation "CREATE": unknown operation (line 1 column 14)"#
        );
        assert!(decode_err(r#"{"operation":1}"#).contains("expected a string, found a number"));
    }

    #[test]
    fn number_array_and_boolean_data_are_structured_data_errors() {
        for (json, found) in [
            (r#"{"key":1}"#, "a number"),
            (r#"{"payload":{"after":[1,2]}}"#, "an array"),
            (r#"{"payload":{"before":true}}"#, "a boolean"),
        ] {
            let err = decode_err(json);
            assert!(err.contains("failed to unmarshal structured data"), "{err}");
            assert!(err.contains(found), "{err}");
        }
    }

    #[test]
    fn invalid_base64_is_a_raw_data_error_with_its_position() {
        let err = decode_err("{\n  \"key\": \"not base64!\"\n}");
        assert!(
            err.starts_with("failed to unmarshal raw data in key at line 2 column 10"),
            "{err}"
        );
    }

    #[test]
    fn base64_with_line_breaks_and_loose_trailing_bits_is_accepted_like_go() {
        let record = decode(r#"{"key":"YW\nJj","payload":{"after":"YR=="}}"#);
        assert_eq!(record.key, Some(Data::raw("abc")));
        assert_eq!(record.payload.after, Some(Data::raw("a")));
    }

    #[test]
    fn unpadded_base64_is_rejected_like_go() {
        assert!(decode_err(r#"{"key":"YQ"}"#).contains("failed to unmarshal raw data"));
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = decode_err("{\n\"key\": nul}");
        assert!(err.starts_with("invalid OpenCDC JSON: "), "{err}");
        assert!(err.contains("line 2 column"), "{err}");
        assert!(decode_err("[1]").contains("invalid OpenCDC JSON"));
        assert!(decode_err("{} x").contains("trailing characters"));
        assert!(decode_err("").contains("EOF"));
    }

    #[test]
    fn wrongly_typed_members_are_errors() {
        assert!(decode_err(r#"{"position":1}"#).contains("invalid position"));
        assert!(decode_err(r#"{"position":"@@@@"}"#).contains("not base64"));
        assert!(decode_err(r#"{"metadata":[]}"#).contains("invalid metadata"));
        let err = decode_err(r#"{"metadata":{"a":1}}"#);
        assert!(err.contains(r#"invalid metadata["a"]"#), "{err}");
        assert!(decode_err(r#"{"payload":"x"}"#).contains("invalid payload"));
    }

    #[test]
    fn metadata_null_values_read_as_empty_strings_like_go() {
        let record = decode(r#"{"metadata":{"a":null}}"#);
        assert_eq!(record.metadata.get_raw("a"), Some(""));
    }

    #[test]
    fn member_names_match_ignoring_case_when_there_is_no_exact_match() {
        let record = decode(r#"{"Key":"YQ==","OPERATION":"update"}"#);
        assert_eq!(record.key, Some(Data::raw("a")));
        assert_eq!(record.operation, Operation::Update);
        let record = decode(r#"{"Key":"YQ==","key":"Yg=="}"#);
        assert_eq!(record.key, Some(Data::raw("b")));
    }

    #[test]
    fn escaped_strings_decode_and_reencode_like_go() {
        let json = r#"{"position":null,"operation":"create","metadata":{"h":"\u003cb\u003e"},"key":null,"payload":{"before":null,"after":{"s":"\u2028 \u0008 \"q\""}}}"#;
        let record = decode(json);
        assert_eq!(record.metadata.get("h"), Some("<b>"));
        assert_eq!(roundtrip(json), json);
    }

    #[test]
    fn structured_data_roundtrips() {
        let mut record = Record::new("p", "");
        record.payload.after = Some(structured(&[
            ("z", Value::Array(vec![Value::Int(1), Value::Float(1.5)])),
            ("a", Value::Map([("x".to_owned(), Value::Null)].into())),
        ]));
        let json = record.to_json();
        assert_eq!(Record::from_json(&json).unwrap(), record);
    }

    #[test]
    fn value_from_json_reads_any_value() {
        assert_eq!(
            Value::from_json(b"[1, 2.0]").unwrap(),
            Value::Array(vec![Value::Int(1), Value::Float(2.0)])
        );
        assert!(Value::from_json(b"{").is_err());
    }
}
