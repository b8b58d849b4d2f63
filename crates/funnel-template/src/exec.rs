//! The executor: walks the tree against a borrowed view of the record.

use funnel_record::{Data, Record, Value};

use crate::funcs::{Func, FuncError, MAX_RENDER_BYTES};
use crate::parse::{Arg, Branch, Cmd, List, Node, Pipe};
use crate::value::{V, write_value};

/// An execution error, before it is given its position.
pub(crate) struct ExecError {
    pub(crate) msg: String,
    pub(crate) pos: usize,
    pub(crate) node: Box<str>,
}

type R<T> = Result<T, ExecError>;

enum Flow {
    Normal,
    Break,
    Continue,
}

/// Execution state for one render.
pub(crate) struct State<'a> {
    /// `$`: the record.
    root: V<'a>,
    /// Declared variables, innermost last (allocated on first use).
    vars: Vec<(&'a str, V<'a>)>,
    /// The command being evaluated, for error positions.
    cmd: Option<&'a Cmd>,
    /// Range iterations so far in this render, bounded by [`MAX_RANGE_ITERATIONS`].
    iterations: u64,
    /// `missingkey=error`: a missing map key is an error.
    strict: bool,
}

/// The most `range` iterations one render may run, all loops together: a template
/// that ranges over a huge integer (or nests large ranges) fails with an error
/// instead of running for hours or exhausting memory.
pub const MAX_RANGE_ITERATIONS: u64 = 10_000_000;

impl<'a> State<'a> {
    pub(crate) fn new(record: &'a Record, strict: bool) -> Self {
        Self {
            root: V::Record(record),
            vars: Vec::new(),
            cmd: None,
            iterations: 0,
            strict,
        }
    }

    fn err(&self, msg: impl Into<String>) -> ExecError {
        let (pos, node) = self.cmd.map_or((0, "".into()), |c| (c.pos, c.text.clone()));
        ExecError {
            msg: msg.into(),
            pos,
            node,
        }
    }

    /// Fails once the output is longer than [`MAX_RENDER_BYTES`].
    fn bounded(&self, out: &str) -> R<()> {
        if out.len() > MAX_RENDER_BYTES {
            return Err(self.err(format!(
                "the output exceeds {MAX_RENDER_BYTES} bytes in one render"
            )));
        }
        Ok(())
    }

    pub(crate) fn walk_list(&mut self, list: &'a List, dot: &V<'a>, out: &mut String) -> R<()> {
        match self.walk(list, dot, out)? {
            Flow::Normal | Flow::Break | Flow::Continue => Ok(()),
        }
    }

    fn walk(&mut self, list: &'a List, dot: &V<'a>, out: &mut String) -> R<Flow> {
        for node in list {
            match node {
                Node::Text(t) => {
                    out.push_str(t);
                    self.bounded(out)?;
                }
                Node::Action(pipe) => {
                    let v = self.pipeline(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        print_action(out, &v);
                        self.bounded(out)?;
                    }
                }
                Node::If(b) => {
                    let f = self.if_or_with(b, dot, out, false)?;
                    if !matches!(f, Flow::Normal) {
                        return Ok(f);
                    }
                }
                Node::With(b) => {
                    let f = self.if_or_with(b, dot, out, true)?;
                    if !matches!(f, Flow::Normal) {
                        return Ok(f);
                    }
                }
                Node::Range(b) => self.range(b, dot, out)?,
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn if_or_with(&mut self, b: &'a Branch, dot: &V<'a>, out: &mut String, with: bool) -> R<Flow> {
        let mark = self.vars.len();
        let v = self.pipeline(&b.pipe, dot)?;
        let flow = if v.truth() {
            if with {
                self.walk(&b.list, &v, out)?
            } else {
                self.walk(&b.list, dot, out)?
            }
        } else if let Some(e) = &b.else_list {
            self.walk(e, dot, out)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, b: &'a Branch, dot: &V<'a>, out: &mut String) -> R<()> {
        let mark = self.vars.len();
        let v = self.commands(&b.pipe, dot)?;
        let decl = &b.pipe.decl;
        if !b.pipe.is_assign {
            for d in decl.iter() {
                self.vars.push((d, V::Missing));
            }
        }
        let mut items: Vec<(V<'a>, V<'a>)> = Vec::new();
        let mut count = 0;
        match &v {
            V::List(l) => items.extend(
                l.iter()
                    .enumerate()
                    .map(|(i, x)| (V::Int(i as i64), V::of(x))),
            ),
            V::Map(m) => items.extend(m.iter().map(|(k, x)| (V::Str(k.as_str()), V::of(x)))),
            V::Data(Some(Data::Structured(m))) => {
                items.extend(m.iter().map(|(k, x)| (V::Str(k.as_str()), V::of(x))));
            }
            V::Metadata(m) => items.extend(m.iter().map(|(k, x)| (V::Str(k), V::Str(x)))),
            V::Bytes(bs) => items.extend(
                bs.iter()
                    .enumerate()
                    .map(|(i, x)| (V::Int(i as i64), V::Int(i64::from(*x)))),
            ),
            V::Data(Some(Data::Raw(bs))) => {
                items.extend(
                    bs.iter()
                        .enumerate()
                        .map(|(i, x)| (V::Int(i as i64), V::Int(i64::from(*x)))),
                );
            }
            V::Position(p) => {
                items.extend(
                    p.0.iter()
                        .enumerate()
                        .map(|(i, x)| (V::Int(i as i64), V::Int(i64::from(*x)))),
                );
            }
            V::Owned(o) => match &**o {
                Value::Array(a) => items.extend(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| (V::Int(i as i64), V::owned(x.clone()))),
                ),
                Value::Map(m) => items.extend(
                    m.iter()
                        .map(|(k, x)| (V::string(k.as_str()), V::owned(x.clone()))),
                ),
                Value::Bytes(bs) => items.extend(
                    bs.iter()
                        .enumerate()
                        .map(|(i, x)| (V::Int(i as i64), V::Int(i64::from(*x)))),
                ),
                _ => {
                    return Err(self.err(format!(
                        "range can't iterate over {}",
                        crate::value::sprint_one(&v)
                    )));
                }
            },
            V::Int(n) => {
                if decl.len() > 1 {
                    return Err(self.err(format!(
                        "can't use {n} to iterate over more than one variable"
                    )));
                }
                // Counted lazily: the range of a large integer is never collected.
                count = (*n).max(0);
            }
            V::Missing | V::Nil => {}
            other => {
                return Err(self.err(format!(
                    "range can't iterate over {}",
                    crate::value::sprint_one(other)
                )));
            }
        }
        if items.is_empty() && count == 0 {
            if let Some(e) = &b.else_list {
                self.walk(e, dot, out)?;
            }
            self.vars.truncate(mark);
            return Ok(());
        }
        let base = self.vars.len();
        let counted = (0..count).map(|i| (V::Int(i), V::Int(i)));
        for (k, elem) in items.into_iter().chain(counted) {
            self.iterations += 1;
            if self.iterations > MAX_RANGE_ITERATIONS {
                return Err(self.err(format!(
                    "range exceeds {MAX_RANGE_ITERATIONS} iterations in one render"
                )));
            }
            match (decl.len(), b.pipe.is_assign) {
                (0, _) => {}
                (1, false) => self.vars[base - 1].1 = elem.clone(),
                (_, false) => {
                    self.vars[base - 2].1 = k;
                    self.vars[base - 1].1 = elem.clone();
                }
                (1, true) => self.set_var(&decl[0], elem.clone()),
                (_, true) => {
                    self.set_var(&decl[0], k);
                    self.set_var(&decl[1], elem.clone());
                }
            }
            let flow = self.walk(&b.list, &elem, out)?;
            self.vars.truncate(base);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn set_var(&mut self, name: &str, v: V<'a>) {
        if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            slot.1 = v;
        } else if name == "$" {
            self.root = v;
        }
    }

    /// Evaluates the commands of a pipeline, without its declarations.
    fn commands(&mut self, pipe: &'a Pipe, dot: &V<'a>) -> R<V<'a>> {
        let mut value: Option<V<'a>> = None;
        for cmd in &pipe.cmds {
            let saved = self.cmd.replace(cmd);
            let v = self.command(cmd, dot, value.take())?;
            self.cmd = saved;
            value = Some(v);
        }
        Ok(value.unwrap_or(V::Missing))
    }

    fn pipeline(&mut self, pipe: &'a Pipe, dot: &V<'a>) -> R<V<'a>> {
        let v = self.commands(pipe, dot)?;
        for d in pipe.decl.iter() {
            if pipe.is_assign {
                self.set_var(d, v.clone());
            } else {
                self.vars.push((d, v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, cmd: &'a Cmd, dot: &V<'a>, fin: Option<V<'a>>) -> R<V<'a>> {
        let first = &cmd.args[0];
        if let Arg::Func(f) = first {
            return self.call(*f, &cmd.args[1..], fin, dot);
        }
        if cmd.args.len() > 1 || fin.is_some() {
            let what = match first {
                Arg::Field(f) | Arg::Var(_, f) | Arg::Chain(_, f) if !f.is_empty() => {
                    let name = f[f.len() - 1].to_string();
                    return Err(self.err(format!("{name} is not a method but has arguments")));
                }
                _ => cmd.text.split(' ').next().unwrap_or_default().to_owned(),
            };
            return Err(self.err(format!("can't give argument to non-function {what}")));
        }
        self.arg(first, dot)
    }

    fn arg(&mut self, arg: &'a Arg, dot: &V<'a>) -> R<V<'a>> {
        Ok(match arg {
            Arg::Dot => dot.clone(),
            Arg::Nil => V::Nil,
            Arg::Bool(b) => V::Bool(*b),
            Arg::Str(s) => V::Str(s),
            Arg::Num(n) => {
                if n.ideal_float {
                    V::Float(n.float.unwrap_or_default())
                } else if let Some(i) = n.int {
                    V::Int(i)
                } else {
                    return Err(self.err(format!("{} overflows int", n.text)));
                }
            }
            Arg::Field(fields) => self.fields(dot.clone(), fields)?,
            Arg::Var(name, fields) => {
                let found = self.vars.iter().rev().find(|(n, _)| **n == **name);
                let v = match found {
                    Some((_, v)) => v.clone(),
                    None if &**name == "$" => self.root.clone(),
                    None => return Err(self.err(format!("undefined variable: {name}"))),
                };
                self.fields(v, fields)?
            }
            Arg::Func(f) => self.call(*f, &[], None, dot)?,
            Arg::Pipe(p) => {
                let mark = self.vars.len();
                let v = self.pipeline(p, dot)?;
                self.vars.truncate(mark);
                v
            }
            Arg::Chain(inner, fields) => {
                let v = self.arg(inner, dot)?;
                self.fields(v, fields)?
            }
        })
    }

    fn fields(&self, mut v: V<'a>, fields: &'a [Box<str>]) -> R<V<'a>> {
        for f in fields {
            v = self.field(v, f)?;
        }
        Ok(v)
    }

    fn field(&self, recv: V<'a>, name: &'a str) -> R<V<'a>> {
        let is_map = self.strict && is_map(&recv);
        match field_of(recv, name) {
            Ok(V::Missing) if is_map => Err(self.err(format!(
                "map has no entry for key {}",
                crate::gofmt::quote(name)
            ))),
            found => found.map_err(|msg| self.err(msg)),
        }
    }

    fn call(&mut self, f: Func, args: &'a [Arg], fin: Option<V<'a>>, dot: &V<'a>) -> R<V<'a>> {
        let n = args.len() + usize::from(fin.is_some());
        if let Err(msg) = f.check_arity(n) {
            return Err(self.err(msg));
        }
        if matches!(f, Func::And | Func::Or) {
            // Short-circuit: the first falsy (and) or truthy (or) argument, else the last.
            let want = matches!(f, Func::Or);
            let mut last = V::Missing;
            for a in args {
                last = self.arg(a, dot)?;
                if last.truth() == want {
                    return Ok(last);
                }
            }
            if let Some(v) = fin {
                last = v;
            }
            return Ok(last);
        }
        let res = if n <= 4 {
            let mut buf: [V<'a>; 4] = [V::Missing, V::Missing, V::Missing, V::Missing];
            for (slot, a) in buf.iter_mut().zip(args) {
                *slot = self.arg(a, dot)?;
            }
            if let Some(v) = fin {
                buf[n - 1] = v;
            }
            f.call(&buf[..n])
        } else {
            let mut v = Vec::with_capacity(n);
            for a in args {
                v.push(self.arg(a, dot)?);
            }
            v.extend(fin);
            f.call(&v)
        };
        let v = res.map_err(|e| match e {
            FuncError::Arg(m) => self.err(m),
            FuncError::Call(m) => self.err(format!("error calling {}: {m}", f.name())),
        })?;
        if let V::String(s) = &v
            && s.len() > MAX_RENDER_BYTES
        {
            return Err(self.err(format!(
                "error calling {}: the result exceeds {MAX_RENDER_BYTES} bytes",
                f.name()
            )));
        }
        Ok(v)
    }

    /// Evaluates a single-action template's pipeline (for conditions).
    pub(crate) fn eval_pipe(&mut self, pipe: &'a Pipe, dot: &V<'a>) -> R<V<'a>> {
        self.pipeline(pipe, dot)
    }
}

/// Field `name` of `recv`, as Go's `evalField` does it; the error is the message only.
pub(crate) fn field_of<'a>(recv: V<'a>, name: &str) -> Result<V<'a>, String> {
    let cant = |ty: &str| format!("can't evaluate field {name} in type {ty}");
    Ok(match recv {
        V::Missing => V::Missing,
        V::Record(r) => match name {
            "Position" => V::Position(&r.position),
            "Operation" => V::Operation(r.operation),
            "Metadata" => V::Metadata(&r.metadata),
            "Key" => V::Data(r.key.as_ref()),
            "Payload" => V::Payload(&r.payload),
            _ => return Err(cant("opencdc.Record")),
        },
        V::Payload(p) => match name {
            "Before" => V::Data(p.before.as_ref()),
            "After" => V::Data(p.after.as_ref()),
            _ => return Err(cant("opencdc.Change")),
        },
        V::Position(p) => match (name, std::str::from_utf8(&p.0)) {
            ("String", _) if p.is_empty() => V::Str("<nil>"),
            ("String", Ok(s)) => V::Str(s),
            ("String", Err(_)) => V::string(String::from_utf8_lossy(&p.0)),
            _ => return Err(cant("opencdc.Position")),
        },
        V::Operation(o) => match name {
            "String" => V::string(o.to_string()),
            _ => return Err(cant("opencdc.Operation")),
        },
        V::Metadata(m) => m.get_raw(name).map_or(V::Missing, V::Str),
        V::Data(None) => return Err(format!("nil pointer evaluating opencdc.Data.{name}")),
        V::Data(Some(Data::Raw(b))) => match name {
            "Bytes" => V::Bytes(b),
            _ => return Err(cant("opencdc.Data")),
        },
        V::Data(Some(Data::Structured(m))) => match name {
            "Bytes" => V::Owned(std::rc::Rc::new(Value::Bytes(
                crate::json::encode(&V::Map(m), false)
                    .unwrap_or_default()
                    .into_bytes()
                    .into(),
            ))),
            _ => m.get(name).map_or(V::Missing, V::of),
        },
        V::Map(m) => m.get(name).map_or(V::Missing, V::of),
        V::Owned(ref o) => match &**o {
            Value::Map(m) => m.get(name).map_or(V::Missing, |x| V::owned(x.clone())),
            _ => return Err(cant(recv.type_name())),
        },
        V::Nil => return Err(format!("nil pointer evaluating interface {{}}.{name}")),
        other => return Err(cant(other.type_name())),
    })
}

/// True for a value whose fields are map lookups (a missing key gives no value, or an
/// error under `missingkey=error`).
fn is_map(v: &V<'_>) -> bool {
    match v {
        V::Metadata(_) | V::Map(_) | V::Data(Some(Data::Structured(_))) => true,
        V::Owned(o) => matches!(&**o, Value::Map(_)),
        _ => false,
    }
}

/// Prints an action's value: a missing or nil `interface{}` value prints `<no value>`.
pub(crate) fn print_action(out: &mut String, v: &V<'_>) {
    match v {
        V::Missing | V::Nil => out.push_str("<no value>"),
        V::Str(s) => out.push_str(s),
        V::String(s) => out.push_str(s),
        other => write_value(out, other),
    }
}
