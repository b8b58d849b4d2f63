//! Reading `COPY ... TO STDOUT` output in text format (the snapshot's rows).
//!
//! The text format is one row per line, columns separated by tabs, `\N` for NULL, and
//! backslash escapes for the backslash itself and for control characters (`\t`, `\n`,
//! `\r`, `\b`, `\f`, `\v`, octal `\ooo` and hex `\xhh`; any other escaped character
//! stands for itself). The values are the types' text output, the same text as a
//! `SELECT` returns, so the type mapping of the `types` module applies unchanged.

use bytes::{Buf, Bytes, BytesMut};

/// Splits the `CopyData` chunks of a `COPY TO STDOUT` into lines (without the `\n`).
/// The server sends one row per chunk; a row split over chunks is joined.
#[derive(Default)]
pub(crate) struct CopyLines {
    chunk: Bytes,
    pending: BytesMut,
}

impl CopyLines {
    /// Adds the next chunk; call [`next_line`](Self::next_line) until it returns `None`
    /// before pushing another.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !self.chunk.is_empty() {
            self.pending.extend_from_slice(&self.chunk);
        }
        self.chunk = chunk;
    }

    /// Parses the next complete line into `row`: `None` when no complete line is left.
    ///
    /// # Errors
    ///
    /// When the line is not a well-formed row (see [`TextRow::parse`]).
    pub(crate) fn next_row(&mut self, row: &mut TextRow) -> Option<Result<(), String>> {
        let end = memchr::memchr(b'\n', &self.chunk)?;
        let result = if self.pending.is_empty() {
            row.parse(&self.chunk[..end])
        } else {
            self.pending.extend_from_slice(&self.chunk[..end]);
            let result = row.parse(&self.pending);
            self.pending.clear();
            result
        };
        self.chunk.advance(end + 1);
        Some(result)
    }

    /// True when no partial line is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunk.is_empty() && self.pending.is_empty()
    }
}

/// Where a field's text is.
#[derive(Clone, Copy)]
enum Span {
    Null,
    /// `line[start..end]`.
    Line(usize, usize),
    /// `scratch[start..end]` (the field had escapes).
    Scratch(usize, usize),
}

/// One parsed row of the text format; reused from row to row.
#[derive(Default)]
pub(crate) struct TextRow {
    /// The line, checked to be UTF-8 once (fields are slices of it at tab boundaries).
    line: String,
    spans: Vec<Span>,
    scratch: Vec<u8>,
}

impl TextRow {
    /// Parses `line` (a row without its `\n`).
    ///
    /// # Errors
    ///
    /// When the line is not UTF-8 or has a bad escape.
    pub(crate) fn parse(&mut self, line: &[u8]) -> Result<(), String> {
        self.spans.clear();
        self.scratch.clear();
        self.line.clear();
        let Ok(text) = std::str::from_utf8(line) else {
            return Err("COPY row is not UTF-8".to_owned());
        };
        let mut start = 0;
        loop {
            let end = memchr::memchr(b'\t', &line[start..]).map_or(line.len(), |i| start + i);
            let field = &line[start..end];
            let span = if field == b"\\N" {
                Span::Null
            } else if memchr::memchr(b'\\', field).is_none() {
                Span::Line(start, end)
            } else {
                let from = self.scratch.len();
                unescape(field, &mut self.scratch);
                if std::str::from_utf8(&self.scratch[from..]).is_err() {
                    return Err("COPY field is not UTF-8 after unescaping".to_owned());
                }
                Span::Scratch(from, self.scratch.len())
            };
            self.spans.push(span);
            if end == line.len() {
                break;
            }
            start = end + 1;
        }
        self.line.push_str(text);
        Ok(())
    }

    /// The text of field `i`: `None` for NULL (or a missing field).
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        match *self.spans.get(i)? {
            Span::Null => None,
            // A field boundary is always an ASCII tab (or an end), so a char boundary.
            Span::Line(a, b) => self.line.get(a..b),
            // Checked to be UTF-8 in `parse`.
            Span::Scratch(a, b) => std::str::from_utf8(&self.scratch[a..b]).ok(),
        }
    }
}

/// Appends `field` with its backslash escapes resolved to `out`.
fn unescape(field: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < field.len() {
        let c = field[i];
        i += 1;
        if c != b'\\' || i == field.len() {
            out.push(c);
            continue;
        }
        let e = field[i];
        i += 1;
        match e {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match field.get(i).and_then(|&d| char::from(d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &'static [u8]) -> Vec<Option<String>> {
        let mut row = TextRow::default();
        row.parse(line).unwrap();
        (0..row.spans.len())
            .map(|i| row.get(i).map(str::to_owned))
            .collect()
    }

    #[test]
    fn fields_nulls_and_escapes() {
        assert_eq!(
            fields(b"1\t\\N\tab\\tc\\\\d\\ne\t\t\\101\\x41\\q"),
            [
                Some("1".to_owned()),
                None,
                Some("ab\tc\\d\ne".to_owned()),
                Some(String::new()),
                Some("AAq".to_owned()),
            ]
        );
        assert_eq!(fields(b""), [Some(String::new())]);
        assert_eq!(
            fields("é\t\\\\N".as_bytes()),
            [Some("é".to_owned()), Some("\\N".to_owned())]
        );
    }

    #[test]
    fn lines_are_joined_across_chunks() {
        let mut lines = CopyLines::default();
        let mut row = TextRow::default();
        let mut next = |lines: &mut CopyLines| {
            lines
                .next_row(&mut row)
                .map(|r| r.map(|()| (row.get(0).map(str::to_owned), row.get(1).map(str::to_owned))))
        };
        lines.push(Bytes::from_static(b"a\tb\nc"));
        assert_eq!(
            next(&mut lines),
            Some(Ok((Some("a".into()), Some("b".into()))))
        );
        assert_eq!(next(&mut lines), None);
        assert!(!lines.is_empty());
        lines.push(Bytes::from_static(b"d\ne\t\\N\n"));
        assert_eq!(next(&mut lines), Some(Ok((Some("cd".into()), None))));
        assert_eq!(next(&mut lines), Some(Ok((Some("e".into()), None))));
        assert_eq!(next(&mut lines), None);
        assert!(lines.is_empty());
        lines.push(Bytes::from_static(b"\xff\n"));
        assert!(matches!(next(&mut lines), Some(Err(_))));
    }
}
