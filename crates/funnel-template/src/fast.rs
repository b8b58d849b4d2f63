//! The fast path: a template made only of text and actions whose pipelines declare no
//! variables (the usual shape of a condition or a templated setting) is compiled, once,
//! into expressions evaluated straight on the record.
//!
//! Compilation resolves the record-level names (`.Metadata`, `.Payload.After`, ...) to
//! the part of the record they name and flattens pipelines into nested calls, so
//! evaluation needs no execution state, variable stack or command bookkeeping. It uses
//! the general evaluator's own pieces ([`field_of`], [`Func::call`], [`print_action`]),
//! so a successful fast evaluation gives the general evaluator's value. It never
//! reports errors itself: when anything fails it returns [`Fallback`], and the caller
//! runs the general evaluator, which gives the error with Go's wording and position.

use funnel_record::{Data, Record, StructuredData, Value};

use crate::exec::{field_of, print_action};
use crate::funcs::Func;
use crate::parse::{Arg, Cmd, List, Node, Pipe};
use crate::value::V;

/// The fast path could not complete: run the general evaluator (it reports the error).
#[derive(Debug)]
pub(crate) struct Fallback;

/// One piece of a compiled template.
#[derive(Debug)]
pub(crate) enum Seg {
    /// Text, printed as is.
    Text(Box<str>),
    /// An action, printed as an action prints its value.
    Action(Expr),
}

/// Where a field chain starts: the record, or the part of it its first names select.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Root {
    /// `.` (the record itself).
    Record,
    /// `.Position`.
    Position,
    /// `.Operation`.
    Operation,
    /// `.Metadata`.
    Metadata,
    /// `.Key`.
    Key,
    /// `.Payload`.
    Payload,
    /// `.Payload.Before`.
    Before,
    /// `.Payload.After`.
    After,
}

impl Root {
    fn of(self, r: &Record) -> V<'_> {
        match self {
            Root::Record => V::Record(r),
            Root::Position => V::Position(&r.position),
            Root::Operation => V::Operation(r.operation),
            Root::Metadata => V::Metadata(&r.metadata),
            Root::Key => V::Data(r.key.as_ref()),
            Root::Payload => V::Payload(&r.payload),
            Root::Before => V::Data(r.payload.before.as_ref()),
            Root::After => V::Data(r.payload.after.as_ref()),
        }
    }
}

/// A compiled expression.
#[derive(Debug)]
pub(crate) enum Expr {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal.
    Str(Box<str>),
    /// A metadata lookup, `.Metadata.key`.
    Meta(Box<str>),
    /// A field of the key or payload data, `.Payload.After.foo` (root `Key`, `Before`
    /// or `After`, the name not `Bytes`), then the remaining names.
    Data(Root, Box<str>, Box<[Box<str>]>),
    /// A field chain from the record: its resolved start, then the remaining names.
    Path(Root, Box<[Box<str>]>),
    /// `(expr).a.b`.
    Chain(Box<Expr>, Box<[Box<str>]>),
    /// `eq a b` (or `ne a b` when `ne`): the commonest condition.
    Eq {
        /// True for `ne`.
        ne: bool,
        /// The operands.
        args: Box<[Expr; 2]>,
    },
    /// `eq x "lit"` or `eq "lit" x` (`ne` when `ne`): the commonest condition, with the
    /// string compared in place.
    EqStr {
        /// True for `ne`.
        ne: bool,
        /// True when the literal is the first argument.
        lit_first: bool,
        /// The other operand.
        expr: Box<Expr>,
        /// The literal.
        lit: Box<str>,
    },
    /// A function call; `fin` is the value piped in from the previous command (it is
    /// evaluated first and passed last).
    Call {
        /// The function.
        f: Func,
        /// The arguments as written.
        args: Box<[Expr]>,
        /// The piped-in value.
        fin: Option<Box<Expr>>,
    },
}

/// Compiles a template's top-level list, when every node is text or an action without
/// variable declarations whose commands compile. With `strict` (`missingkey=error`),
/// only templates that look up no map key compile: the general evaluator reports a
/// missing key.
pub(crate) fn compile(list: &List, strict: bool) -> Option<Box<[Seg]>> {
    let segs: Box<[Seg]> = list
        .iter()
        .map(|node| match node {
            Node::Text(t) => Some(Seg::Text(t.clone())),
            Node::Action(pipe) => compile_pipe(pipe).map(Seg::Action),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if strict
        && segs.iter().any(|seg| match seg {
            Seg::Text(_) => false,
            Seg::Action(e) => e.looks_up_keys(),
        })
    {
        return None;
    }
    Some(segs)
}

impl Expr {
    /// True when evaluating the expression may look up a map key: metadata, fields of
    /// data, or any field name past the record's own (`Bytes` and `String` are methods).
    fn looks_up_keys(&self) -> bool {
        let names = |rest: &[Box<str>]| rest.iter().any(|n| !matches!(&**n, "Bytes" | "String"));
        match self {
            Expr::Nil | Expr::Bool(_) | Expr::Int(_) | Expr::Float(_) | Expr::Str(_) => false,
            Expr::Meta(_) | Expr::Data(..) => true,
            Expr::Path(_, rest) => names(rest),
            Expr::Chain(inner, rest) => names(rest) || inner.looks_up_keys(),
            Expr::Eq { args, .. } => args.iter().any(Expr::looks_up_keys),
            Expr::EqStr { expr, .. } => expr.looks_up_keys(),
            Expr::Call { args, fin, .. } => {
                args.iter().any(Expr::looks_up_keys)
                    || fin.as_deref().is_some_and(Expr::looks_up_keys)
            }
        }
    }
}

fn compile_pipe(pipe: &Pipe) -> Option<Expr> {
    if !pipe.decl.is_empty() {
        return None;
    }
    let mut value = None;
    for cmd in &pipe.cmds {
        value = Some(compile_cmd(cmd, value)?);
    }
    value
}

fn compile_cmd(cmd: &Cmd, fin: Option<Expr>) -> Option<Expr> {
    let first = cmd.args.first()?;
    if let Arg::Func(f) = first {
        let args = cmd.args[1..]
            .iter()
            .map(compile_arg)
            .collect::<Option<Box<[Expr]>>>()?;
        return call(*f, args, fin);
    }
    if cmd.args.len() > 1 || fin.is_some() {
        // An error ("can't give argument to non-function"): the general path reports it.
        return None;
    }
    compile_arg(first)
}

fn call(f: Func, args: Box<[Expr]>, fin: Option<Expr>) -> Option<Expr> {
    // A wrong argument count is an error, reported by the general path.
    f.check_arity(args.len() + usize::from(fin.is_some()))
        .ok()?;
    if matches!(f, Func::Eq | Func::Ne) && fin.is_none() && args.len() == 2 {
        let ne = f == Func::Ne;
        let mut args = args.into_vec();
        let (Some(y), Some(x)) = (args.pop(), args.pop()) else {
            return None;
        };
        return Some(match (x, y) {
            (Expr::Str(lit), expr) => Expr::EqStr {
                ne,
                lit_first: true,
                expr: Box::new(expr),
                lit,
            },
            (expr, Expr::Str(lit)) => Expr::EqStr {
                ne,
                lit_first: false,
                expr: Box::new(expr),
                lit,
            },
            (x, y) => Expr::Eq {
                ne,
                args: Box::new([x, y]),
            },
        });
    }
    Some(Expr::Call {
        f,
        args,
        fin: fin.map(Box::new),
    })
}

fn compile_arg(arg: &Arg) -> Option<Expr> {
    Some(match arg {
        Arg::Dot => Expr::Path(Root::Record, Box::new([])),
        Arg::Nil => Expr::Nil,
        Arg::Bool(b) => Expr::Bool(*b),
        Arg::Str(s) => Expr::Str(s.clone()),
        Arg::Num(n) => {
            if n.ideal_float {
                Expr::Float(n.float.unwrap_or_default())
            } else {
                // No int: an overflow error, reported by the general path.
                Expr::Int(n.int?)
            }
        }
        Arg::Field(fields) => path(fields),
        // Without declarations, `$` is the only variable and it is the record.
        Arg::Var(name, fields) if &**name == "$" => path(fields),
        Arg::Var(..) => return None,
        Arg::Func(f) => call(*f, Box::new([]), None)?,
        Arg::Pipe(p) => compile_pipe(p)?,
        Arg::Chain(inner, fields) => Expr::Chain(Box::new(compile_arg(inner)?), fields.clone()),
    })
}

/// A field chain from the record, with its record-level names resolved.
fn path(fields: &[Box<str>]) -> Expr {
    let (root, used) = match fields {
        [] => (Root::Record, 0),
        [p, ba, ..] if &**p == "Payload" && &**ba == "Before" => (Root::Before, 2),
        [p, ba, ..] if &**p == "Payload" && &**ba == "After" => (Root::After, 2),
        [first, ..] => match &**first {
            "Position" => (Root::Position, 1),
            "Operation" => (Root::Operation, 1),
            "Metadata" => (Root::Metadata, 1),
            "Key" => (Root::Key, 1),
            "Payload" => (Root::Payload, 1),
            // An unknown name: the general field lookup gives the error.
            _ => (Root::Record, 0),
        },
    };
    match (root, &fields[used..]) {
        (Root::Metadata, [key]) => Expr::Meta(key.clone()),
        (Root::Key | Root::Before | Root::After, [name, rest @ ..]) if &**name != "Bytes" => {
            Expr::Data(root, name.clone(), rest.into())
        }
        (root, rest) => Expr::Path(root, rest.into()),
    }
}

impl Expr {
    /// Evaluates the expression on `r`: leaves inline, calls out of line.
    #[inline]
    pub(crate) fn eval<'a>(&'a self, r: &'a Record) -> Result<V<'a>, Fallback> {
        Ok(match self {
            Expr::Nil => V::Nil,
            Expr::Bool(b) => V::Bool(*b),
            Expr::Int(i) => V::Int(*i),
            Expr::Float(f) => V::Float(*f),
            Expr::Str(s) => V::Str(s),
            Expr::Meta(key) => r.metadata.get_raw(key).map_or(V::Missing, V::Str),
            Expr::Data(root, name, rest) => {
                let v = structured(*root, r)?.get(&**name).map_or(V::Missing, V::of);
                if rest.is_empty() { v } else { fields(v, rest)? }
            }
            Expr::Path(root, rest) => fields(root.of(r), rest)?,
            Expr::Chain(inner, rest) => fields(inner.eval(r)?, rest)?,
            Expr::Eq { .. } | Expr::EqStr { .. } => match self.eval_bool(r) {
                Some(b) => V::Bool(b?),
                None => return Err(Fallback),
            },
            Expr::Call { f, args, fin } => call_fn(*f, args, fin.as_deref(), r)?,
        })
    }
}

impl Expr {
    /// A comparison's result, without going through a value; `None` when the
    /// expression is not a comparison.
    #[inline]
    pub(crate) fn eval_bool(&self, r: &Record) -> Option<Result<bool, Fallback>> {
        match self {
            Expr::Eq { ne, args } => Some(eq(&args[0], &args[1], r).map(|t| t != *ne)),
            Expr::EqStr {
                ne,
                lit_first,
                expr,
                lit,
            } => Some(eq_str(expr, lit, *lit_first, r).map(|t| t != *ne)),
            _ => None,
        }
    }
}

/// The structured data of `root` (`Key`, `Before` or `After`); absent or raw data is a
/// field-access error (for any name but `Bytes`).
#[inline]
fn structured(root: Root, r: &Record) -> Result<&StructuredData, Fallback> {
    let data = match root {
        Root::Key => r.key.as_ref(),
        Root::Before => r.payload.before.as_ref(),
        _ => r.payload.after.as_ref(),
    };
    match data {
        Some(Data::Structured(m)) => Ok(m),
        _ => Err(Fallback),
    }
}

/// `eq x "lit"` (or `eq "lit" x` when `lit_first`).
#[inline]
fn eq_str(expr: &Expr, lit: &str, lit_first: bool, r: &Record) -> Result<bool, Fallback> {
    let v = match expr {
        Expr::Meta(key) => r.metadata.get_raw(key).map_or(V::Missing, V::Str),
        e => e.eval(r)?,
    };
    match v.as_str() {
        Some(s) => Ok(s == lit),
        None if lit_first => eq_values(V::Str(lit), v),
        None => eq_values(v, V::Str(lit)),
    }
}

/// `eq a b`: strings and ints compared directly, anything else by the `eq` function.
fn eq<'a>(a: &'a Expr, b: &'a Expr, r: &'a Record) -> Result<bool, Fallback> {
    let a = a.eval(r)?;
    let b = b.eval(r)?;
    match (&a, &b) {
        (V::Str(x), V::Str(y)) => Ok(x == y),
        (V::Int(x), V::Int(y)) => Ok(x == y),
        _ => eq_values(a, b),
    }
}

/// `eq a b` by the `eq` function.
fn eq_values(a: V<'_>, b: V<'_>) -> Result<bool, Fallback> {
    match Func::Eq.call(&[a, b]) {
        Ok(V::Bool(t)) => Ok(t),
        _ => Err(Fallback),
    }
}

fn fields<'a>(mut v: V<'a>, names: &[Box<str>]) -> Result<V<'a>, Fallback> {
    for name in names {
        v = field_of(v, name).map_err(|_| Fallback)?;
    }
    Ok(v)
}

fn call_fn<'a>(
    f: Func,
    args: &'a [Expr],
    fin: Option<&'a Expr>,
    r: &'a Record,
) -> Result<V<'a>, Fallback> {
    let fin = match fin {
        Some(e) => Some(e.eval(r)?),
        None => None,
    };
    if matches!(f, Func::And | Func::Or) {
        // Short-circuit, as the general evaluator does.
        let want = matches!(f, Func::Or);
        let mut last = V::Missing;
        for a in args {
            last = a.eval(r)?;
            if last.truth() == want {
                return Ok(last);
            }
        }
        return Ok(fin.unwrap_or(last));
    }
    let n = args.len() + usize::from(fin.is_some());
    let res = match args {
        [] => match fin {
            Some(v) => f.call(&[v]),
            None => f.call(&[]),
        },
        [a] => {
            let a = a.eval(r)?;
            match fin {
                Some(v) => f.call(&[a, v]),
                None => f.call(&[a]),
            }
        }
        [a, b] => {
            let a = a.eval(r)?;
            let b = b.eval(r)?;
            match fin {
                Some(v) => f.call(&[a, b, v]),
                None => f.call(&[a, b]),
            }
        }
        _ => {
            let mut v = Vec::with_capacity(n);
            for a in args {
                v.push(a.eval(r)?);
            }
            v.extend(fin);
            f.call(&v)
        }
    };
    res.map_err(|_| Fallback)
}

/// Renders compiled segments on `r`, appending to `out`. On [`Fallback`], `out` may hold
/// part of the output: the caller truncates it before running the general evaluator.
#[inline]
pub(crate) fn render(segs: &[Seg], r: &Record, out: &mut String) -> Result<(), Fallback> {
    if let [Seg::Action(e)] = segs {
        return e.print(r, out);
    }
    for seg in segs {
        match seg {
            Seg::Text(t) => out.push_str(t),
            Seg::Action(e) => e.print(r, out)?,
        }
    }
    Ok(())
}

impl Expr {
    /// Prints the expression's value as an action does, a string found in the record
    /// copied straight into `out`.
    #[inline]
    fn print(&self, r: &Record, out: &mut String) -> Result<(), Fallback> {
        let v = match self {
            Expr::Meta(key) => r.metadata.get_raw(key).map_or(V::Missing, V::Str),
            Expr::Data(root, name, rest) if rest.is_empty() => {
                match structured(*root, r)?.get(&**name) {
                    Some(Value::String(s)) => {
                        out.push_str(s);
                        return Ok(());
                    }
                    Some(v) => V::of(v),
                    None => V::Missing,
                }
            }
            Expr::Call {
                f: Func::Printf,
                args,
                fin,
            } => {
                // `printf "%s" x` (or `x | printf "%s"`) of a string or of valid UTF-8
                // bytes is x itself: written straight through, without formatting a
                // copy first.
                let arg = match (&**args, fin.as_deref()) {
                    ([Expr::Str(format), arg], None) | ([Expr::Str(format)], Some(arg))
                        if &**format == "%s" =>
                    {
                        Some(arg)
                    }
                    _ => None,
                };
                if let Some(arg) = arg {
                    let v = arg.eval(r)?;
                    if let Some(text) = crate::gofmt::plain_text(&v) {
                        out.push_str(text);
                        return Ok(());
                    }
                }
                self.eval(r)?
            }
            e => e.eval(r)?,
        };
        print_action(out, &v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The fast path against the general evaluator: same output, same error text, on
    //! records with missing keys, raw data, absent data, ints, uints and floats.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use bytes::Bytes;
    use funnel_record::{Data, Metadata, Operation, Record, StructuredData, Value};
    use funnel_test_utils::results::fields;

    use super::{Fallback, Seg, render};
    use crate::{Condition, Template};

    fn structured() -> StructuredData {
        fields(&[
            ("foo", Value::String("bar".into())),
            ("n", Value::Int(42)),
            ("u", Value::Uint(7)),
            ("f", Value::Float(4.0)),
            ("half", Value::Float(0.5)),
            ("t", Value::Bool(true)),
            ("null", Value::Null),
            ("empty", Value::String(funnel_record::SmolStr::default())),
            ("flag", Value::String("true".into())),
            ("list", Value::Array(vec![Value::Int(1), Value::Int(2)])),
            (
                "user",
                Value::Map(fields(&[
                    ("name", Value::String("ann".into())),
                    ("age", Value::Int(7)),
                ])),
            ),
        ])
    }

    /// Varied records: full, raw data, absent data, nil metadata, numbers of other types.
    fn records() -> Vec<Record> {
        let mut full = Record::new("pos-1", "");
        full.operation = Operation::Update;
        full.metadata.insert("key", "val");
        full.metadata.insert("table", "tmp_users");
        full.metadata.insert("opencdc.collection", "orders");
        full.metadata.insert("flag", "true");
        full.metadata.insert("empty", "");
        full.key = Some(Data::Structured(fields(&[("id", Value::Int(1))])));
        full.payload.before = Some(Data::Raw(Bytes::from_static(b"hi")));
        full.payload.after = Some(Data::Structured(structured()));

        let mut raw = Record::new("", "raw");
        raw.operation = Operation::Create;
        raw.metadata.insert("key", "other");
        raw.payload.after = Some(Data::Raw(Bytes::from_static(b"\x00raw")));

        let mut absent = Record::new("pos-3", "");
        absent.metadata = Metadata::none();
        absent.key = None;
        absent.payload.before = None;
        absent.payload.after = None;

        let mut floats = Record::new("pos-4", "k");
        floats.operation = Operation::Delete;
        floats.metadata.insert("key", "val");
        floats.payload.before = Some(Data::Structured(structured()));
        floats.payload.after = Some(Data::Structured(fields(&[
            ("foo", Value::Int(1)),
            ("n", Value::Float(42.0)),
            ("u", Value::Int(7)),
            ("f", Value::Int(4)),
            ("t", Value::String("true".into())),
            ("user", Value::String("ann".into())),
            ("null", Value::Map(StructuredData::new())),
            ("flag", Value::Bool(false)),
        ])));

        let mut empty = Record::new("pos-5", "");
        empty.metadata = Metadata::new();
        empty.payload.after = Some(Data::Structured(StructuredData::new()));

        vec![full, raw, absent, floats, empty]
    }

    /// Templates the fast path must compile.
    const FAST: &[&str] = &[
        "",
        "plain text",
        "{{ . }}",
        "{{ $ }}",
        "{{ $.Metadata.key }}",
        "{{ .Position }}",
        "{{ .Position.String }}",
        "{{ .Operation }}",
        "{{ .Operation.String }}",
        "{{ .Operation.Foo }}",
        "{{ .Foo }}",
        "{{ .Foo.Bar }}",
        "{{ .Metadata }}",
        "{{ .Metadata.key }}",
        "{{ .Metadata.missing }}",
        "{{ .Metadata.key.x }}",
        "{{ .Metadata.missing.x }}",
        "{{ .Key }}",
        "{{ .Key.id }}",
        "{{ .Key.Bytes }}",
        "{{ .Key.foo.bar }}",
        "{{ .Payload }}",
        "{{ .Payload.Foo }}",
        "{{ .Payload.Before }}",
        "{{ .Payload.Before.foo }}",
        "{{ .Payload.Before.Bytes }}",
        "{{ .Payload.After }}",
        "{{ .Payload.After.foo }}",
        "{{ .Payload.After.n }}",
        "{{ .Payload.After.u }}",
        "{{ .Payload.After.f }}",
        "{{ .Payload.After.half }}",
        "{{ .Payload.After.t }}",
        "{{ .Payload.After.null }}",
        "{{ .Payload.After.null.x }}",
        "{{ .Payload.After.missing }}",
        "{{ .Payload.After.missing.x }}",
        "{{ .Payload.After.user.name }}",
        "{{ .Payload.After.user.name.x }}",
        "{{ .Payload.After.list }}",
        "{{ .Payload.After.Bytes }}",
        "{{ .Payload.After.foo.Bytes }}",
        "{{ (.Payload.After.user).name }}",
        "{{ (index .Metadata \"key\").x }}",
        "{{ (index .Payload.After \"user\").age }}",
        "{{ eq .Metadata.key \"val\" }}",
        "{{ ne .Metadata.key \"val\" }}",
        "{{ eq \"val\" .Metadata.key }}",
        "{{ ne \"val\" .Metadata.key }}",
        "{{ eq .Metadata.missing \"val\" }}",
        "{{ eq .Metadata.missing nil }}",
        "{{ eq .Payload.After.foo \"bar\" }}",
        "{{ eq .Payload.After.foo .Metadata.key }}",
        "{{ eq .Payload.After.n 42 }}",
        "{{ eq .Payload.After.n 42.0 }}",
        "{{ ne .Payload.After.n 42 }}",
        "{{ eq 42 .Payload.After.n }}",
        "{{ eq .Payload.After.f 4.0 }}",
        "{{ eq .Payload.After.f 4 }}",
        "{{ eq .Payload.After.u 7 }}",
        "{{ eq .Payload.After.n \"42\" }}",
        "{{ eq \"42\" .Payload.After.n }}",
        "{{ eq .Payload.After.t true }}",
        "{{ eq .Payload.After.null nil }}",
        "{{ eq .Payload.After.missing nil }}",
        "{{ eq .Payload.After.missing \"x\" }}",
        "{{ eq .Payload.After.user \"x\" }}",
        "{{ eq \"x\" .Payload.After.user }}",
        "{{ eq .Payload.After.user .Payload.After.user }}",
        "{{ eq .Payload.After.list .Payload.After.list }}",
        "{{ eq .Key.id 1 }}",
        "{{ eq .Key.foo \"x\" }}",
        "{{ eq \"x\" .Key.foo }}",
        "{{ eq .Operation 2 }}",
        "{{ eq .Operation \"update\" }}",
        "{{ eq .Operation.String \"update\" }}",
        "{{ eq .Position.String \"pos-1\" }}",
        "{{ eq .Metadata.key \"a\" \"val\" }}",
        "{{ eq .Metadata.key \"a\" 1 }}",
        "{{ eq 1 1 }}",
        "{{ ne 1 2 }}",
        "{{ eq \"a\" \"a\" }}",
        "{{ eq 1 1.0 }}",
        "{{ .Metadata.key | eq \"val\" }}",
        "{{ .Metadata.key | ne \"val\" }}",
        "{{ lt .Payload.After.n 50 }}",
        "{{ ge .Payload.After.f 1.5 }}",
        "{{ .Payload.After.foo | upper }}",
        "{{ upper .Payload.After.n }}",
        "{{ .Payload.After.foo | upper | lower }}",
        "{{ not .Payload.After.t }}",
        "{{ not .Metadata.missing }}",
        "{{ and (eq .Metadata.key \"val\") (ne .Payload.After.n 1) }}",
        "{{ or (eq .Metadata.key \"x\") (eq .Metadata.key \"val\") }}",
        "{{ or .Metadata.missing \"dflt\" }}",
        "{{ and .Key.foo true }}",
        "{{ and false .Key.foo }}",
        "{{ or true .Key.foo }}",
        "{{ .Payload.After.foo | and false }}",
        "{{ .Key.foo | and false }}",
        "{{ .Payload.After.n | or 0 }}",
        "{{ hasPrefix \"tmp_\" .Metadata.table }}",
        "{{ .Metadata.table | trimPrefix \"tmp_\" }}",
        "{{ index .Metadata \"opencdc.collection\" }}",
        "{{ index .Payload.After \"missing\" }}",
        "{{ index .Key \"id\" }}",
        "{{ len .Payload.After.list }}",
        "{{ len .Payload.After.n }}",
        "{{ printf \"%s-%v\" .Payload.After.foo .Payload.After.n }}",
        "{{ printf \"%s\" .Payload.After }}",
        "{{ .Payload.After | printf \"%s\" }}",
        "{{ printf \"%s\" .Payload.Before }}",
        "{{ printf \"%s\" .Metadata.key }}",
        "{{ printf \"%s\" .Payload.After.user }}",
        "{{ printf \"%s\" .Position }}",
        "{{ print 1 2 3 4 5 6 }}",
        "{{ print .Payload.After.foo .Metadata.key .Key.id .Payload.After.n .Payload.After.f }}",
        "{{ default \"d\" .Metadata.missing }}",
        "{{ default \"d\" .Payload.After.empty }}",
        "{{ toJson .Payload.After.user }}",
        "{{ 1 }}",
        "{{ 1.5 }}",
        "{{ 'a' }}",
        "{{ nil }}",
        "{{ true }}",
        "{{ \"true\" }}",
        "{{ \"x\" | upper }}",
        "a={{ .Metadata.key }} b={{ .Payload.After.foo }}",
        "a={{ .Metadata.key }} b={{ .Key.foo }} c={{ .Payload.After.n }}",
        "x{{ .Payload.After.foo }}y{{- \" \" -}}z",
        " {{ true }} ",
        "{{/* comment */}}{{ eq .Metadata.key \"val\" }}",
        "{{ (eq .Metadata.key \"val\") }}",
        "{{ (.Payload.After.foo | upper) }}",
    ];

    /// Templates compiled or not (variables, control structures): checked all the same.
    const OTHER: &[&str] = &[
        "{{ if eq .Metadata.key \"val\" }}yes{{ else }}no{{ end }}",
        "{{ $x := .Metadata.key }}{{ $x }}",
        "{{ range .Payload.After.list }}{{ . }}{{ end }}",
        "{{ with .Payload.After.user }}{{ .name }}{{ end }}",
        "{{ ($x := 1) }}",
        "{{ eq ($x := .Metadata.key) \"val\" }}",
        // Errors found before evaluation: the general path reports them.
        "{{ 18446744073709551615 }}",
        "{{ eq }}",
        "{{ ne 1 }}",
        "{{ .Payload.After.foo 1 }}",
        "{{ .Payload.After.foo | .Metadata.key }}",
    ];

    /// Renders with both evaluators and compares the output and the error; when the
    /// template compiled, also checks that the fast path on its own never falls back
    /// on a render that succeeds, and gives the same output when it does not.
    fn check_render(src: &str, r: &Record, must_compile: bool) {
        let t = Template::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(
            !must_compile || t.inner.fast.is_some(),
            "{src}: not compiled"
        );
        let mut general = String::from("<");
        let g = t.render_general_into(r, &mut general);
        let mut out = String::from("<");
        let f = t.render_into(r, &mut out);
        assert_eq!(f, g, "{src} on {r:?}");
        assert_eq!(out, general, "{src} on {r:?}");
        if let Some(segs) = &t.inner.fast {
            let mut direct = String::from("<");
            match render(segs, r, &mut direct) {
                Ok(()) => {
                    assert!(g.is_ok(), "{src}: fast succeeded, general failed: {g:?}");
                    assert_eq!(direct, general, "{src} on {r:?}");
                }
                Err(Fallback) => assert!(g.is_err(), "{src}: fast fell back on {r:?}"),
            }
        }
    }

    fn check_condition(src: &str, r: &Record) {
        let Some(c) = Condition::parse(src).unwrap_or_else(|e| panic!("{src}: {e}")) else {
            return;
        };
        let g = c.evaluate_general(r);
        assert_eq!(c.evaluate(r), g, "condition {src} on {r:?}");
        if let Some([Seg::Action(e)]) = c.template.inner.fast.as_deref() {
            match e.eval(r) {
                Ok(v) => assert_eq!(Condition::read_value(&v), g, "condition {src} on {r:?}"),
                Err(Fallback) => assert!(g.is_err(), "condition {src}: fast fell back on {r:?}"),
            }
        }
    }

    #[test]
    fn fast_path_matches_general_evaluator() {
        let records = records();
        for r in &records {
            for src in FAST {
                check_render(src, r, true);
                check_condition(src, r);
            }
            for src in OTHER {
                check_render(src, r, false);
                check_condition(src, r);
            }
        }
    }

    #[test]
    fn fast_path_resolves_record_names() {
        let t = Template::parse("{{ eq .Metadata.key \"val\" }}").unwrap();
        let segs = t.inner.fast.as_deref().unwrap();
        assert!(matches!(
            segs,
            [Seg::Action(super::Expr::EqStr { expr, .. })] if matches!(**expr, super::Expr::Meta(_))
        ));
        let t = Template::parse("{{ .Payload.After.foo }}").unwrap();
        let segs = t.inner.fast.as_deref().unwrap();
        assert!(matches!(
            segs,
            [Seg::Action(super::Expr::Data(super::Root::After, _, _))]
        ));
        // Control structures and variables take the general path.
        let t = Template::parse("{{ if .Key }}x{{ end }}").unwrap();
        assert!(t.inner.fast.is_none());
    }

    #[test]
    fn render_into_keeps_what_general_writes_on_error() {
        let r = &records()[2];
        let t = Template::parse("a={{ .Metadata.key }} b={{ .Key.foo }} c").unwrap();
        let mut out = String::from("start ");
        let err = t.render_into(r, &mut out).unwrap_err();
        assert_eq!(out, "start a=<no value> b=");
        assert!(
            err.0.contains("nil pointer evaluating opencdc.Data.foo"),
            "{err}"
        );
    }
}
