//! JSON as Go's `encoding/json` writes it (for `toJson`), and reading (for `fromJson`).

use std::fmt::Write;

use base64::Engine as _;
use funnel_record::go::{self, JsonFloat};
use funnel_record::{Data, StructuredData, Value};

use crate::value::V;

/// Encodes `v` as Go's `json.Marshal` (or `json.MarshalIndent(v, "", "  ")` when `pretty`).
/// `None` where Go fails (NaN or infinite floats).
pub(crate) fn encode(v: &V<'_>, pretty: bool) -> Option<String> {
    let mut e = Enc {
        out: String::new(),
        pretty,
        depth: 0,
    };
    e.v(v)?;
    Some(e.out)
}

struct Enc {
    out: String,
    pretty: bool,
    depth: usize,
}

impl Enc {
    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push_str("  ");
            }
        }
    }

    fn object<'x, I>(&mut self, entries: I) -> Option<()>
    where
        I: IntoIterator<Item = (&'x str, Entry<'x>)>,
    {
        self.out.push('{');
        self.depth += 1;
        let mut any = false;
        for (k, v) in entries {
            if any {
                self.out.push(',');
            }
            any = true;
            self.newline();
            string(&mut self.out, k);
            self.out.push(':');
            if self.pretty {
                self.out.push(' ');
            }
            match v {
                Entry::V(v) => self.v(&v)?,
                Entry::Value(v) => self.value(v)?,
            }
        }
        self.depth -= 1;
        if any {
            self.newline();
        }
        self.out.push('}');
        Some(())
    }

    fn array(&mut self, items: &[Value]) -> Option<()> {
        self.out.push('[');
        self.depth += 1;
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.newline();
            self.value(x)?;
        }
        self.depth -= 1;
        if !items.is_empty() {
            self.newline();
        }
        self.out.push(']');
        Some(())
    }

    fn map(&mut self, m: &StructuredData) -> Option<()> {
        self.object(m.iter().map(|(k, v)| (k.as_str(), Entry::Value(v))))
    }

    fn bytes(&mut self, b: &[u8]) {
        self.out.push('"');
        self.out
            .push_str(&base64::engine::general_purpose::STANDARD.encode(b));
        self.out.push('"');
    }

    fn value(&mut self, v: &Value) -> Option<()> {
        match v {
            Value::Array(a) => self.array(a),
            Value::Map(m) => self.map(m),
            Value::Bytes(b) => {
                self.bytes(b);
                Some(())
            }
            other => self.v(&V::of(other)),
        }
    }

    fn v(&mut self, v: &V<'_>) -> Option<()> {
        match v {
            V::Missing | V::Nil | V::Data(None) => self.out.push_str("null"),
            V::Record(r) => {
                let pos = if r.position.is_empty() {
                    V::Nil
                } else {
                    V::Bytes(&r.position.0)
                };
                let meta = if r.metadata.is_nil() {
                    V::Nil
                } else {
                    V::Metadata(&r.metadata)
                };
                return self.object([
                    ("position", Entry::V(pos)),
                    ("operation", Entry::V(V::string(r.operation.to_string()))),
                    ("metadata", Entry::V(meta)),
                    ("key", Entry::V(V::Data(r.key.as_ref()))),
                    ("payload", Entry::V(V::Payload(&r.payload))),
                ]);
            }
            V::Payload(p) => {
                return self.object([
                    ("before", Entry::V(V::Data(p.before.as_ref()))),
                    ("after", Entry::V(V::Data(p.after.as_ref()))),
                ]);
            }
            V::Position(p) => {
                if p.is_empty() {
                    self.out.push_str("null");
                } else {
                    self.bytes(&p.0);
                }
            }
            V::Operation(o) => string(&mut self.out, &o.to_string()),
            V::Metadata(m) => match m.as_map() {
                None => self.out.push_str("null"),
                Some(m) => {
                    return self.object(m.iter().map(|(k, v)| (k.as_str(), Entry::V(V::Str(v)))));
                }
            },
            V::Data(Some(Data::Raw(b))) => self.bytes(b),
            V::Data(Some(Data::Structured(m))) => return self.map(m),
            V::Map(m) => return self.map(m),
            V::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            V::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            V::Uint(u) => {
                let _ = write!(self.out, "{u}");
            }
            V::Float(f) => float(&mut self.out, *f)?,
            V::Str(s) => string(&mut self.out, s),
            V::String(s) => string(&mut self.out, s),
            V::Bytes(b) => self.bytes(b),
            V::List(l) => return self.array(l),
            V::Owned(o) => return self.value(o),
            V::Time(t) => string(
                &mut self.out,
                &t.format("2006-01-02T15:04:05.999999999Z07:00"),
            ),
        }
        Some(())
    }
}

enum Entry<'x> {
    V(V<'x>),
    Value(&'x Value),
}

/// Go's float encoding ([`JsonFloat`]); `None` for NaN and infinities, which Go refuses.
fn float(out: &mut String, f: f64) -> Option<()> {
    if !f.is_finite() {
        return None;
    }
    let _ = write!(out, "{}", JsonFloat(f));
    Some(())
}

/// A JSON string with Go's escaping (HTML-safe).
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Decodes JSON as Go's `json.Unmarshal` into `interface{}`: numbers become float64.
pub(crate) fn decode(s: &str) -> Option<Value> {
    go::unmarshal_any(s.as_bytes()).ok()
}
