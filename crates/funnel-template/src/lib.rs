//! Go `text/template`, with the sprig functions pipelines use, evaluated directly on
//! OpenCDC records: Conduit's processor conditions and templated processor settings.
//!
//! A [`Template`] is parsed once and rendered many times. Rendering walks a borrowed
//! view of the [`Record`]; nothing is converted or copied per call, and field lookups do
//! not allocate. A [`Condition`] is a template whose output is read with
//! [`parse_bool`], as Conduit reads a processor's `condition`.
//!
//! ```
//! use funnel_record::Record;
//! use funnel_template::{Condition, Template};
//!
//! let mut record = Record::new("pos-1", "raw");
//! record.metadata.insert("table", "orders");
//! let t = Template::parse("table={{ .Metadata.table | upper }}").unwrap();
//! assert_eq!(t.render(&record).unwrap(), "table=ORDERS");
//! let c = Condition::parse(r#"{{ eq .Metadata.table "orders" }}"#).unwrap().unwrap();
//! assert!(c.evaluate(&record).unwrap());
//! ```
//!
//! A template made only of text and actions that declare no variables (the usual
//! condition or templated setting, such as `{{ eq .Metadata.key "val" }}` or
//! `{{ .Payload.After.foo | upper }}`) is also compiled at parse time into expressions
//! with the record-level names resolved, and evaluated without the general executor's
//! bookkeeping; a comparison in a condition yields its bool directly, and a string field
//! is copied straight into the output. When that evaluation fails, the general executor
//! runs instead and reports the error, so both give the same output and errors.
//!
//! # The data
//!
//! The template runs against the record as Go's `text/template` runs against Conduit's
//! `opencdc.Record`, with Go's field names:
//!
//! | Expression | Go type | Prints as |
//! |---|---|---|
//! | `.Position` | `opencdc.Position` (`[]byte` with `String()`) | the bytes as text; `.Position.String` too |
//! | `.Operation` | `opencdc.Operation` (an `int` with `String()`) | `create`, `update`, `delete`, `snapshot`; `.Operation.String` too; compares equal to its number (`eq .Operation 1`) |
//! | `.Metadata` | `opencdc.Metadata` (`map[string]string`) | `map[k:v ...]`; `.Metadata.key`, `index .Metadata "opencdc.collection"` |
//! | `.Key`, `.Payload.Before`, `.Payload.After` | `opencdc.Data` (interface) | `<nil>` when absent; structured data as `map[a:1 b:x]`, raw data as a byte list `[104 105]` (Go has no `String()` on `RawData`) |
//! | `.Key.Bytes`, `.Payload.After.Bytes` | `[]byte` | raw bytes, or the JSON of structured data |
//!
//! Field access walks structured data (`.Payload.After.user.name`). A missing map key is
//! "no value": it prints `<no value>` and is false in `if`, and a field of it is again no
//! value (Go's default `missingkey` option); a template parsed with
//! [`Template::parse_strict`] fails instead (`missingkey=error`). Field access on raw data is an error
//! (`can't evaluate field foo in type opencdc.Data`), as is field access on absent data
//! (`nil pointer evaluating opencdc.Data.foo`). `index` on a map with a missing key gives
//! the zero value: `""` for metadata, nil for structured data.
//!
//! Values print like Go's `fmt.Sprint`: maps as `map[a:1 b:2]` with sorted keys, lists as
//! `[1 2 3]`, nil as `<nil>`, floats like `%v` (`4`, `0.5`, `1e+06`, `1.5e-07`). A JSON
//! `null` inside structured data is a nil `interface{}`, which an action prints as
//! `<no value>` (as Go does) and `print` as `<nil>`.
//!
//! # Syntax
//!
//! Everything of Go's `text/template` except named templates:
//! text and `{{ actions }}`; trim markers `{{- ` and ` -}}`; comments `{{/* ... */}}`;
//! pipelines with `|`; parenthesised pipelines; variables (`$x := ...`, `$x = ...`, `$`);
//! `if` / `else if` / `else` / `end`; `range` over lists, maps (in key order), metadata,
//! byte slices and integers, with `$v :=` or `$i, $v :=`, `else`, `break` and `continue`;
//! `with` / `else with` / `else` / `end`; string (`"..."` with Go escapes), raw string
//! (`` `...` ``), character (`'a'`), number (decimal, hex, octal, binary, underscores,
//! floats), `true`, `false` and `nil` literals; field chains on any value (`.a.b`,
//! `$x.a`, `(index .Metadata "k").x`).
//!
//! Parse-time checks are Go's: unknown functions (`function "x" not defined`), undefined
//! variables, `break` outside `range`, and the lexer's errors, in Go's wording:
//! `template: :1: function "invalid" not defined`, `template: :1: bad character U+002D '-'`.
//! Execution errors read `template: :1:3: executing "" at <eq .a 1>: error calling eq:
//! incompatible types for comparison`.
//!
//! # Functions
//!
//! Go builtins: `and or not eq ne lt le gt ge index len slice print printf println html js
//! urlquery`. `and`/`or` short-circuit. The comparisons follow Go: `eq` takes several
//! arguments (`eq .x "a" "b"` is "x is a or b"); ints and floats do not compare (`eq 1 1.0`
//! is an error, as in Go); a missing value or nil compares equal only to nil.
//!
//! Sprig (with sprig's argument orders, so they pipe well: `.x | trimPrefix "tmp_"`):
//! `upper lower title trim trimAll trimPrefix trimSuffix nospace contains hasPrefix
//! hasSuffix replace default empty coalesce ternary toJson toPrettyJson fromJson int int64
//! float64 toString now date unixEpoch b64enc b64dec sha256sum uuidv4 splitList join list
//! dict quote squote cat repeat substr trunc`. For example `hasPrefix "tmp_" .x` is true
//! when `.x` starts with `tmp_`; `replace old new s`; `trimPrefix prefix s`;
//! `default "dflt" .x`. `date` takes a Go layout (`date "2006-01-02" now`) and accepts a
//! time or Unix seconds.
//!
//! # Deviations from Go and sprig
//!
//! * No `define`, `template`, `block` or `call` (Conduit's conditions and settings are a
//!   single template and cannot pass functions in); they fail to parse. No complex
//!   numbers or hex-float literals.
//! * Record methods other than `String` (on `.Position` and `.Operation`) and `Bytes` (on
//!   data) are not available; an upper-case name on metadata or structured data is a map
//!   lookup.
//! * Times are UTC (the zone name prints as `UTC`), and printing a time omits Go's
//!   monotonic clock suffix (`m=+0.001`). A time held in structured data
//!   ([`funnel_record::Value::Time`]) is a `time.Time`: it prints as `String()` does,
//!   `toJson` writes it as `MarshalJSON` does, and `eq` compares it only with another
//!   time (against a string it fails with `incompatible types for comparison`).
//! * An execution error inside a command's argument is reported at the command
//!   (`at <upper .Metadata.nope>`), where Go names the argument (`at <.Metadata.nope>`).
//! * Go's type names in error messages are approximated where Go would name the static
//!   type (`interface {}`) of a value read from structured data.
//! * Only the sprig functions listed above exist; any other name fails to parse, as an
//!   unknown function does in Go.

mod exec;
mod fast;
mod funcs;
mod gofmt;
mod gotime;
mod json;
mod lex;
mod parse;
mod value;

use std::sync::Arc;

use funnel_record::Record;

pub use exec::MAX_RANGE_ITERATIONS;
pub use funcs::{MAX_RENDER_BYTES, function_names};
/// Go's `strconv.ParseBool`, as Conduit reads a condition's output (from
/// [`funnel_record::go`]).
pub use funnel_record::go::parse_bool;

use crate::parse::{List, Node};
use crate::value::V;

/// A template that could not be parsed or executed. The text reads like Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A parsed template: parse once, render many times. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Template {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Box<str>,
    src: Box<str>,
    tree: List,
    /// The compiled form, when the template has the shape the fast path handles.
    fast: Option<Box<[fast::Seg]>>,
    /// The initial capacity of a rendered string: the text plus a little per action, so
    /// a typical render allocates once.
    size_hint: usize,
    /// Go's `missingkey=error`: a map lookup of a missing key fails the render.
    strict: bool,
}

/// The capacity [`Template::render`] starts with: the top-level text, plus 16 bytes per
/// other node (at most 256 in all when there are actions).
fn size_hint(tree: &List) -> usize {
    let (text, nodes) = tree.iter().fold((0, 0), |(t, n), node| match node {
        Node::Text(s) => (t + s.len(), n),
        _ => (t, n + 1),
    });
    if nodes == 0 {
        text
    } else {
        text + (16 * nodes).min(256)
    }
}

fn line_of(src: &str, pos: usize) -> (usize, usize) {
    let before = &src[..pos.min(src.len())];
    let line = 1 + before.matches('\n').count();
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1);
    (line, col)
}

impl Template {
    /// Parses `text` as a template named `""` (as Conduit names its templates).
    ///
    /// # Errors
    ///
    /// When the template does not parse, with Go's message, e.g.
    /// `template: :1: function "invalid" not defined`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        Self::parse_named("", text)
    }

    /// Parses `text` as a template named `name` (the name appears in error messages).
    ///
    /// # Errors
    ///
    /// When the template does not parse.
    pub fn parse_named(name: &str, text: &str) -> Result<Self, TemplateError> {
        Self::parse_with(name, text, false)
    }

    /// Parses `text` as a template named `""` with Go's `Option("missingkey=error")`:
    /// looking up a key a map does not have (`.Metadata.nope`, `.Payload.After.nope`)
    /// fails the render with `map has no entry for key "nope"` instead of giving no
    /// value. `index` is unaffected (it gives the zero value, as in Go).
    ///
    /// # Errors
    ///
    /// When the template does not parse.
    pub fn parse_strict(text: &str) -> Result<Self, TemplateError> {
        Self::parse_with("", text, true)
    }

    fn parse_with(name: &str, text: &str, strict: bool) -> Result<Self, TemplateError> {
        match parse::parse(text) {
            Ok(tree) => Ok(Self {
                inner: Arc::new(Inner {
                    name: name.into(),
                    src: text.into(),
                    fast: fast::compile(&tree, strict),
                    size_hint: size_hint(&tree),
                    tree,
                    strict,
                }),
            }),
            Err(e) => {
                let (line, _) = line_of(text, e.pos);
                Err(TemplateError(format!("template: {name}:{line}: {}", e.msg)))
            }
        }
    }

    /// Renders the template on `record`.
    ///
    /// # Errors
    ///
    /// When execution fails (an error Go's `Execute` would return).
    pub fn render(&self, record: &Record) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.inner.size_hint);
        self.render_into(record, &mut out)?;
        Ok(out)
    }

    /// Renders the template on `record`, appending to `out`. On error, `out` holds
    /// whatever was written before the failing action (as Go's writer would).
    ///
    /// # Errors
    ///
    /// When execution fails.
    pub fn render_into(&self, record: &Record, out: &mut String) -> Result<(), TemplateError> {
        if let Some(segs) = &self.inner.fast {
            let start = out.len();
            if fast::render(segs, record, out).is_ok() {
                return Ok(());
            }
            // The general evaluator reports the error, and writes what Go would have.
            out.truncate(start);
        }
        self.render_general_into(record, out)
    }

    /// Renders with the general evaluator only (the reference for the fast path).
    fn render_general_into(&self, record: &Record, out: &mut String) -> Result<(), TemplateError> {
        let mut state = exec::State::new(record, self.inner.strict);
        state
            .walk_list(&self.inner.tree, &V::Record(record), out)
            .map_err(|e| self.exec_error(e))
    }

    fn exec_error(&self, e: exec::ExecError) -> TemplateError {
        let (line, col) = line_of(&self.inner.src, e.pos);
        let name = &self.inner.name;
        TemplateError(format!(
            "template: {name}:{line}:{col}: executing {} at <{}>: {}",
            gofmt::quote(name),
            e.node,
            e.msg
        ))
    }

    /// The template's text when it has no actions (only text and comments): rendering it
    /// always gives this text.
    pub fn as_literal(&self) -> Option<&str> {
        match self.inner.tree.as_slice() {
            [] => Some(""),
            [Node::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.inner.src
    }
}

/// A processor condition: a template whose output is read with [`parse_bool`].
#[derive(Debug, Clone)]
pub struct Condition {
    template: Template,
}

impl Condition {
    /// Parses a condition. `None` for an empty or whitespace-only condition ("always").
    ///
    /// # Errors
    ///
    /// When the template does not parse.
    pub fn parse(text: &str) -> Result<Option<Self>, TemplateError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            template: Template::parse(text)?,
        }))
    }

    /// Renders the condition on `record` and reads the output as a boolean.
    ///
    /// # Errors
    ///
    /// When execution fails, or the output is not a boolean: then the text reads like
    /// Conduit's, `error converting the condition go-template output to boolean,
    /// strconv.ParseBool: parsing "hi": invalid syntax: ...`.
    pub fn evaluate(&self, record: &Record) -> Result<bool, TemplateError> {
        // Fast path: a single compiled action, read without printing when it gives a bool
        // or a string.
        match self.template.inner.fast.as_deref() {
            Some([fast::Seg::Action(e)]) => match e.eval_bool(record) {
                Some(Ok(b)) => Ok(b),
                Some(Err(fast::Fallback)) => self.evaluate_general(record),
                None => match e.eval(record) {
                    Ok(v) => Self::read_value(&v),
                    Err(fast::Fallback) => self.evaluate_general(record),
                },
            },
            Some(_) => Self::read(&self.template.render(record)?),
            None => self.evaluate_general(record),
        }
    }
    /// Evaluates with the general evaluator only (the reference for the fast path).
    fn evaluate_general(&self, record: &Record) -> Result<bool, TemplateError> {
        // A single action whose value is a bool prints `true`/`false`.
        if let [Node::Action(pipe)] = self.template.inner.tree.as_slice()
            && pipe.decl.is_empty()
        {
            let mut state = exec::State::new(record, self.template.inner.strict);
            let v = state
                .eval_pipe(pipe, &V::Record(record))
                .map_err(|e| self.template.exec_error(e))?;
            if let V::Bool(b) = v {
                return Ok(b);
            }
            let mut out = String::new();
            exec::print_action(&mut out, &v);
            return Self::read(&out);
        }
        let mut out = String::new();
        self.template.render_general_into(record, &mut out)?;
        Self::read(&out)
    }

    /// Reads an action's value as its printed form would be read.
    fn read_value(v: &V<'_>) -> Result<bool, TemplateError> {
        match v {
            V::Bool(b) => Ok(*b),
            // An action prints a string as is.
            V::Str(s) => Self::read(s),
            V::String(s) => Self::read(s),
            other => {
                let mut out = String::new();
                exec::print_action(&mut out, other);
                Self::read(&out)
            }
        }
    }

    fn read(out: &str) -> Result<bool, TemplateError> {
        parse_bool(out).ok_or_else(|| {
            let e = format!(
                "strconv.ParseBool: parsing {}: invalid syntax",
                gofmt::quote(out)
            );
            TemplateError(format!(
                "error converting the condition go-template output to boolean, {e}: {e}"
            ))
        })
    }

    /// The condition's template.
    pub fn template(&self) -> &Template {
        &self.template
    }
}
