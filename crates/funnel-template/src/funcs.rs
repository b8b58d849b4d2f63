//! The functions: Go's builtins and the sprig functions pipelines use.

use std::fmt::Write as _;
use std::rc::Rc;

use funnel_record::{Data, SmolStr, StructuredData, Value};

use crate::gofmt;
use crate::gotime::Time;
use crate::value::{V, sprint_one};

/// The most bytes one render may write, and the longest string a function may return
/// in it: a template that would make more (a `range` over a huge integer, `repeat` with
/// a huge count, a string doubled in a loop) fails with an error instead of exhausting
/// memory. Go's templates have no such bound; no message or key comes near it.
pub const MAX_RENDER_BYTES: usize = 64 << 20;

/// Why a function failed.
pub(crate) enum FuncError {
    /// An argument has the wrong type (Go reports these without a prefix).
    Arg(String),
    /// The function itself failed ("error calling f: ...").
    Call(String),
}

type FR<'a> = Result<V<'a>, FuncError>;

macro_rules! funcs {
    ($($variant:ident = $name:literal, $min:literal, $max:expr;)*) => {
        /// A template function.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Func { $($variant,)* }

        impl Func {
            /// Every function: name, minimum and maximum (None: variadic) argument count.
            const TABLE: &'static [(&'static str, Func, usize, Option<usize>)] =
                &[$(($name, Func::$variant, $min, $max),)*];
        }
    };
}

funcs! {
    And = "and", 1, None;
    Or = "or", 1, None;
    Not = "not", 1, Some(1);
    Eq = "eq", 1, None;
    Ne = "ne", 2, Some(2);
    Lt = "lt", 2, Some(2);
    Le = "le", 2, Some(2);
    Gt = "gt", 2, Some(2);
    Ge = "ge", 2, Some(2);
    Index = "index", 1, None;
    Len = "len", 1, Some(1);
    Slice = "slice", 1, None;
    Print = "print", 0, None;
    Printf = "printf", 1, None;
    Println = "println", 0, None;
    Html = "html", 0, None;
    Js = "js", 0, None;
    Urlquery = "urlquery", 0, None;
    Upper = "upper", 1, Some(1);
    Lower = "lower", 1, Some(1);
    Title = "title", 1, Some(1);
    Trim = "trim", 1, Some(1);
    TrimAll = "trimAll", 2, Some(2);
    TrimPrefix = "trimPrefix", 2, Some(2);
    TrimSuffix = "trimSuffix", 2, Some(2);
    Nospace = "nospace", 1, Some(1);
    Contains = "contains", 2, Some(2);
    HasPrefix = "hasPrefix", 2, Some(2);
    HasSuffix = "hasSuffix", 2, Some(2);
    Replace = "replace", 3, Some(3);
    Default = "default", 1, None;
    Empty = "empty", 1, Some(1);
    Coalesce = "coalesce", 0, None;
    Ternary = "ternary", 3, Some(3);
    ToJson = "toJson", 1, Some(1);
    ToPrettyJson = "toPrettyJson", 1, Some(1);
    FromJson = "fromJson", 1, Some(1);
    Int = "int", 1, Some(1);
    Int64 = "int64", 1, Some(1);
    Float64 = "float64", 1, Some(1);
    ToString = "toString", 1, Some(1);
    Now = "now", 0, Some(0);
    Date = "date", 2, Some(2);
    UnixEpoch = "unixEpoch", 1, Some(1);
    B64enc = "b64enc", 1, Some(1);
    B64dec = "b64dec", 1, Some(1);
    Sha256sum = "sha256sum", 1, Some(1);
    Uuidv4 = "uuidv4", 0, Some(0);
    SplitList = "splitList", 2, Some(2);
    Join = "join", 2, Some(2);
    List = "list", 0, None;
    Dict = "dict", 0, None;
    Quote = "quote", 0, None;
    Squote = "squote", 0, None;
    Cat = "cat", 0, None;
    Repeat = "repeat", 2, Some(2);
    Substr = "substr", 3, Some(3);
    Trunc = "trunc", 2, Some(2);
}

/// The names of every supported function, for documentation and tests.
pub fn function_names() -> impl Iterator<Item = &'static str> {
    Func::TABLE.iter().map(|(n, ..)| *n)
}

impl Func {
    /// The function named `name`.
    pub(crate) fn lookup(name: &str) -> Option<Func> {
        Self::TABLE
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, f, ..)| *f)
    }

    /// The function's name.
    pub(crate) fn name(self) -> &'static str {
        self.entry().map_or("?", |(n, ..)| n)
    }

    /// The function's table entry: the table lists the functions in declaration order,
    /// so the discriminant indexes it (checked, with a search as the fallback).
    fn entry(self) -> Option<&'static (&'static str, Func, usize, Option<usize>)> {
        match Self::TABLE.get(self as usize) {
            Some(e) if e.1 == self => Some(e),
            _ => Self::TABLE.iter().find(|(_, f, ..)| *f == self),
        }
    }

    /// Go's argument count check.
    pub(crate) fn check_arity(self, got: usize) -> Result<(), String> {
        let Some((name, _, min, max)) = self.entry() else {
            return Ok(());
        };
        match max {
            Some(max) if got != *max => Err(format!(
                "wrong number of args for {name}: want {max} got {got}"
            )),
            None if got < *min => Err(format!(
                "wrong number of args for {name}: want at least {min} got {got}"
            )),
            _ => Ok(()),
        }
    }

    /// Calls the function with evaluated arguments.
    pub(crate) fn call<'a>(self, a: &[V<'a>]) -> FR<'a> {
        use Func as F;
        Ok(match self {
            // `and` and `or` short-circuit and are handled by the executor.
            F::And | F::Or => a.last().cloned().unwrap_or(V::Missing),
            F::Not => V::Bool(!a[0].truth()),
            F::Eq => V::Bool(eq(&a[0], &a[1..])?),
            F::Ne => V::Bool(!eq(&a[0], &a[1..])?),
            F::Lt => V::Bool(lt(&a[0], &a[1])?),
            F::Le => V::Bool(lt(&a[0], &a[1])? || eq(&a[0], &a[1..])?),
            F::Gt => V::Bool(!(lt(&a[0], &a[1])? || eq(&a[0], &a[1..])?)),
            F::Ge => V::Bool(!lt(&a[0], &a[1])?),
            F::Index => index(&a[0], &a[1..])?,
            F::Len => V::Int(len(&a[0])?),
            F::Slice => slice(&a[0], &a[1..])?,
            F::Print => V::string(gofmt::sprint(a)),
            F::Println => V::string(gofmt::sprintln(a)),
            F::Printf => {
                let format = string_arg(&a[0])?;
                V::string(gofmt::sprintf(format, &a[1..]))
            }
            F::Html => V::string(html_escape(&eval_args(a))),
            F::Js => V::string(js_escape(&eval_args(a))),
            F::Urlquery => V::string(query_escape(&eval_args(a))),
            F::Upper => V::string(string_arg(&a[0])?.to_uppercase()),
            F::Lower => V::string(string_arg(&a[0])?.to_lowercase()),
            F::Title => V::string(title(string_arg(&a[0])?)),
            F::Trim => V::string(string_arg(&a[0])?.trim()),
            F::TrimAll => {
                let cut = string_arg(&a[0])?;
                V::string(string_arg(&a[1])?.trim_matches(|c| cut.contains(c)))
            }
            F::TrimPrefix => {
                let (p, s) = (string_arg(&a[0])?, string_arg(&a[1])?);
                V::string(s.strip_prefix(p).unwrap_or(s))
            }
            F::TrimSuffix => {
                let (p, s) = (string_arg(&a[0])?, string_arg(&a[1])?);
                V::string(s.strip_suffix(p).unwrap_or(s))
            }
            F::Nospace => V::string(
                string_arg(&a[0])?
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>(),
            ),
            F::Contains => V::Bool(string_arg(&a[1])?.contains(string_arg(&a[0])?)),
            F::HasPrefix => V::Bool(string_arg(&a[1])?.starts_with(string_arg(&a[0])?)),
            F::HasSuffix => V::Bool(string_arg(&a[1])?.ends_with(string_arg(&a[0])?)),
            F::Replace => {
                let (old, new, s) = (string_arg(&a[0])?, string_arg(&a[1])?, string_arg(&a[2])?);
                V::string(go_replace(s, old, new))
            }
            F::Default => match a.get(1) {
                Some(v) if v.truth() => v.clone(),
                _ => a[0].clone(),
            },
            F::Empty => V::Bool(!a[0].truth()),
            F::Coalesce => a.iter().find(|v| v.truth()).cloned().unwrap_or(V::Nil),
            F::Ternary => {
                let V::Bool(t) = a[2] else {
                    return Err(wrong_type("bool", &a[2]));
                };
                if t { a[0].clone() } else { a[1].clone() }
            }
            F::ToJson => V::string(crate::json::encode(&a[0], false).unwrap_or_default()),
            F::ToPrettyJson => V::string(crate::json::encode(&a[0], true).unwrap_or_default()),
            F::FromJson => crate::json::decode(string_arg(&a[0])?).map_or(V::Nil, V::owned),
            F::Int | F::Int64 => V::Int(to_int(&a[0])),
            F::Float64 => V::Float(to_float(&a[0])),
            F::ToString => V::string(strval(&a[0])),
            F::Now => V::Time(Time::now()),
            F::Date => {
                let layout = string_arg(&a[0])?;
                let t = match a[1] {
                    V::Time(t) => t,
                    V::Int(secs) => Time::from_unix(secs, 0),
                    _ => Time::now(),
                };
                V::string(t.format(layout))
            }
            F::UnixEpoch => match a[0] {
                V::Time(t) => V::string(t.secs.to_string()),
                ref other => return Err(wrong_type("time.Time", other)),
            },
            F::B64enc => {
                use base64::Engine as _;
                V::string(base64::engine::general_purpose::STANDARD.encode(string_arg(&a[0])?))
            }
            F::B64dec => V::string(b64dec(string_arg(&a[0])?)),
            F::Sha256sum => V::string(sha256_hex(string_arg(&a[0])?.as_bytes())),
            F::Uuidv4 => V::string(uuid::Uuid::new_v4().to_string()),
            F::SplitList => {
                let (sep, s) = (string_arg(&a[0])?, string_arg(&a[1])?);
                let parts: Vec<Value> = go_split(s, sep).map(|p| Value::String(p.into())).collect();
                V::Owned(Rc::new(Value::Array(parts)))
            }
            F::Join => {
                let sep = string_arg(&a[0])?;
                V::string(strslice(&a[1]).join(sep))
            }
            F::List => V::Owned(Rc::new(Value::Array(a.iter().map(V::to_value).collect()))),
            F::Dict => {
                let mut m = StructuredData::new();
                for pair in a.chunks(2) {
                    let v = pair
                        .get(1)
                        .map_or(Value::String(SmolStr::default()), V::to_value);
                    m.insert(strval(&pair[0]), v);
                }
                V::Owned(Rc::new(Value::Map(m)))
            }
            F::Quote => V::string(
                a.iter()
                    .filter(|v| !v.is_nil())
                    .map(|v| gofmt::quote(&strval(v)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            F::Squote => V::string(
                a.iter()
                    .filter(|v| !v.is_nil())
                    .map(|v| format!("'{}'", strval(v)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            F::Cat => V::string(
                a.iter()
                    .filter(|v| !v.is_nil())
                    .map(sprint_one)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            F::Repeat => {
                let (n, s) = (int_arg(&a[0])?, string_arg(&a[1])?);
                if n < 0 {
                    return Err(FuncError::Call("strings: negative Repeat count".into()));
                }
                if (n as u128) * (s.len() as u128) > MAX_RENDER_BYTES as u128 {
                    return Err(FuncError::Call(format!(
                        "strings: Repeat output longer than {MAX_RENDER_BYTES} bytes"
                    )));
                }
                V::string(s.repeat(n as usize))
            }
            F::Substr => {
                let (start, end, s) = (int_arg(&a[0])?, int_arg(&a[1])?, string_arg(&a[2])?);
                V::string(substr(start, end, s)?)
            }
            F::Trunc => {
                let (c, s) = (int_arg(&a[0])?, string_arg(&a[1])?);
                let len = s.len() as i64;
                let out = if c < 0 && len + c > 0 {
                    byte_slice(s, (len + c) as usize, s.len())?
                } else if c >= 0 && len > c {
                    byte_slice(s, 0, c as usize)?
                } else {
                    s
                };
                V::string(out)
            }
        })
    }
}

fn wrong_type(want: &str, got: &V<'_>) -> FuncError {
    if matches!(got, V::Missing) {
        FuncError::Arg(format!("invalid value; expected {want}"))
    } else if matches!(got, V::Nil) {
        FuncError::Arg(format!("cannot assign nil to {want}"))
    } else {
        FuncError::Arg(format!(
            "wrong type for value; expected {want}; got {}",
            got.type_name()
        ))
    }
}

fn string_arg<'x>(v: &'x V<'_>) -> Result<&'x str, FuncError> {
    v.as_str().ok_or_else(|| wrong_type("string", v))
}

fn int_arg(v: &V<'_>) -> Result<i64, FuncError> {
    match v {
        V::Int(i) => Ok(*i),
        V::Uint(u) => i64::try_from(*u).map_err(|_| wrong_type("int", v)),
        other => Err(wrong_type("int", other)),
    }
}

/// The comparison class of a value (Go's `basicKind`); `None` for nil and missing values.
#[derive(PartialEq)]
enum Basic<'x> {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(&'x str),
    /// A value of another, non-basic kind.
    Other,
}

fn basic<'x>(v: &'x V<'_>) -> Option<Basic<'x>> {
    Some(match v {
        V::Missing | V::Nil | V::Data(None) => return None,
        V::Bool(b) => Basic::Bool(*b),
        V::Int(i) => Basic::Int(*i),
        V::Operation(o) => Basic::Int(o.code()),
        V::Uint(u) => Basic::Uint(*u),
        V::Float(f) => Basic::Float(*f),
        V::Str(s) => Basic::Str(s),
        V::String(s) => Basic::Str(s),
        _ => Basic::Other,
    })
}

fn same_kind(a: &Basic<'_>, b: &Basic<'_>) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn eq(a: &V<'_>, rest: &[V<'_>]) -> Result<bool, FuncError> {
    if rest.is_empty() {
        return Err(FuncError::Call("missing argument for comparison".into()));
    }
    let k1 = basic(a);
    for b in rest {
        let k2 = basic(b);
        let truth = match (&k1, &k2) {
            (None, None) => true,
            (None, Some(_)) | (Some(_), None) => false,
            (Some(x), Some(y)) => match (x, y) {
                (Basic::Int(i), Basic::Uint(u)) | (Basic::Uint(u), Basic::Int(i)) => {
                    *i >= 0 && *i as u64 == *u
                }
                (Basic::Other, Basic::Other) => match (a, b) {
                    (V::Time(x), V::Time(y)) => x == y,
                    _ => {
                        return Err(FuncError::Call(format!(
                            "non-comparable types {}: {}, {}: {}",
                            sprint_one(a),
                            a.type_name(),
                            b.type_name(),
                            sprint_one(b)
                        )));
                    }
                },
                (x, y) if !same_kind(x, y) => {
                    return Err(FuncError::Call("incompatible types for comparison".into()));
                }
                (x, y) => x == y,
            },
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a: &V<'_>, b: &V<'_>) -> Result<bool, FuncError> {
    let bad_type = || FuncError::Call("invalid type for comparison".into());
    let (Some(x), Some(y)) = (basic(a), basic(b)) else {
        return Err(bad_type());
    };
    Ok(match (x, y) {
        (Basic::Int(i), Basic::Uint(u)) => i < 0 || (i as u64) < u,
        (Basic::Uint(u), Basic::Int(i)) => i >= 0 && u < i as u64,
        (Basic::Int(x), Basic::Int(y)) => x < y,
        (Basic::Uint(x), Basic::Uint(y)) => x < y,
        (Basic::Float(x), Basic::Float(y)) => x < y,
        (Basic::Str(x), Basic::Str(y)) => x < y,
        (Basic::Bool(_), Basic::Bool(_)) | (Basic::Other, _) | (_, Basic::Other) => {
            return Err(bad_type());
        }
        _ => return Err(FuncError::Call("incompatible types for comparison".into())),
    })
}

fn index_int(v: &V<'_>, what: &str) -> Result<i64, FuncError> {
    match v {
        V::Int(i) => Ok(*i),
        V::Uint(u) => Ok(i64::try_from(*u).unwrap_or(i64::MAX)),
        V::Missing | V::Nil => Err(FuncError::Call(format!("cannot index {what} with nil"))),
        other => Err(FuncError::Call(format!(
            "cannot index {what} with type {}",
            other.type_name()
        ))),
    }
}

fn checked_index(i: i64, len: usize) -> Result<usize, FuncError> {
    if i < 0 || i as u64 >= len as u64 {
        return Err(FuncError::Call(format!("index out of range: {i}")));
    }
    Ok(i as usize)
}

fn map_key<'x>(v: &'x V<'_>) -> Result<&'x str, FuncError> {
    match v {
        V::Missing | V::Nil => Err(FuncError::Call(
            "value is nil; should be of type string".into(),
        )),
        other => other.as_str().ok_or_else(|| {
            FuncError::Call(format!(
                "value has type {}; should be string",
                other.type_name()
            ))
        }),
    }
}

fn index<'a>(item: &V<'a>, indices: &[V<'a>]) -> FR<'a> {
    let mut v = item.clone();
    for ix in indices {
        v = match &v {
            V::Missing | V::Nil => return Err(FuncError::Call("index of untyped nil".into())),
            V::Data(None) => return Err(FuncError::Call("index of nil pointer".into())),
            V::List(l) => V::of(&l[checked_index(index_int(ix, "slice")?, l.len())?]),
            V::Bytes(b) => V::Int(i64::from(
                b[checked_index(index_int(ix, "slice")?, b.len())?],
            )),
            V::Data(Some(Data::Raw(b))) => V::Int(i64::from(
                b[checked_index(index_int(ix, "slice")?, b.len())?],
            )),
            V::Position(p) => V::Int(i64::from(
                p.0[checked_index(index_int(ix, "slice")?, p.0.len())?],
            )),
            V::Str(_) | V::String(_) => {
                let s = v.as_str().unwrap_or_default();
                V::Int(i64::from(
                    s.as_bytes()[checked_index(index_int(ix, "string")?, s.len())?],
                ))
            }
            V::Map(m) => m.get(map_key(ix)?).map_or(V::Nil, V::of),
            V::Data(Some(Data::Structured(m))) => m.get(map_key(ix)?).map_or(V::Nil, V::of),
            V::Metadata(m) => V::Str(m.get_raw(map_key(ix)?).unwrap_or("")),
            V::Owned(o) => match &**o {
                Value::Array(l) => {
                    V::owned(l[checked_index(index_int(ix, "slice")?, l.len())?].clone())
                }
                Value::Map(m) => m.get(map_key(ix)?).map_or(V::Nil, |x| V::owned(x.clone())),
                Value::Bytes(b) => V::Int(i64::from(
                    b[checked_index(index_int(ix, "slice")?, b.len())?],
                )),
                _ => {
                    return Err(FuncError::Call(format!(
                        "can't index item of type {}",
                        v.type_name()
                    )));
                }
            },
            other => {
                return Err(FuncError::Call(format!(
                    "can't index item of type {}",
                    other.type_name()
                )));
            }
        };
    }
    Ok(v)
}

fn len(v: &V<'_>) -> Result<i64, FuncError> {
    let n = match v {
        V::Missing | V::Nil => return Err(FuncError::Call("len of untyped nil".into())),
        V::Data(None) => return Err(FuncError::Call("len of nil pointer".into())),
        V::Str(s) => s.len(),
        V::String(s) => s.len(),
        V::Bytes(b) => b.len(),
        V::Data(Some(Data::Raw(b))) => b.len(),
        V::Data(Some(Data::Structured(m))) => m.len(),
        V::Position(p) => p.0.len(),
        V::Metadata(m) => m.len(),
        V::List(l) => l.len(),
        V::Map(m) => m.len(),
        V::Owned(o) => match &**o {
            Value::Array(a) => a.len(),
            Value::Map(m) => m.len(),
            Value::Bytes(b) => b.len(),
            _ => return Err(FuncError::Call(format!("len of type {}", v.type_name()))),
        },
        other => {
            return Err(FuncError::Call(format!(
                "len of type {}",
                other.type_name()
            )));
        }
    };
    Ok(n as i64)
}

fn slice<'a>(item: &V<'a>, idx: &[V<'a>]) -> FR<'a> {
    if idx.len() > 3 {
        return Err(FuncError::Call(format!(
            "too many slice indexes: {}",
            idx.len()
        )));
    }
    let ints = idx
        .iter()
        .map(|v| index_int(v, "slice"))
        .collect::<Result<Vec<_>, _>>()?;
    let bounds = |len: usize| -> Result<(usize, usize), FuncError> {
        let i = ints.first().copied().unwrap_or(0);
        let j = ints.get(1).copied().unwrap_or(len as i64);
        if i < 0 || j < i || j as u64 > len as u64 {
            return Err(FuncError::Call(format!(
                "index out of range: {}",
                if i < 0 { i } else { j }
            )));
        }
        Ok((i as usize, j as usize))
    };
    match item {
        V::Str(_) | V::String(_) => {
            if ints.len() == 3 {
                return Err(FuncError::Call("cannot 3-index slice a string".into()));
            }
            let s = item.as_str().unwrap_or_default();
            let (i, j) = bounds(s.len())?;
            Ok(V::string(byte_slice(s, i, j)?))
        }
        V::List(l) => {
            let (i, j) = bounds(l.len())?;
            Ok(V::List(&l[i..j]))
        }
        V::Owned(o) => match &**o {
            Value::Array(l) => {
                let (i, j) = bounds(l.len())?;
                Ok(V::Owned(Rc::new(Value::Array(l[i..j].to_vec()))))
            }
            _ => Err(FuncError::Call(format!(
                "can't slice item of type {}",
                item.type_name()
            ))),
        },
        V::Bytes(b) => {
            let (i, j) = bounds(b.len())?;
            Ok(V::Bytes(&b[i..j]))
        }
        V::Missing | V::Nil => Err(FuncError::Call("slice of untyped nil".into())),
        other => Err(FuncError::Call(format!(
            "can't slice item of type {}",
            other.type_name()
        ))),
    }
}

/// Byte-slices `s`, as Go does; an error where Go would panic or split a character.
fn byte_slice(s: &str, i: usize, j: usize) -> Result<&str, FuncError> {
    s.get(i..j).ok_or_else(|| {
        FuncError::Call(format!(
            "runtime error: slice bounds out of range [{i}:{j}] with length {} (or not at a character boundary)",
            s.len()
        ))
    })
}

fn substr(start: i64, end: i64, s: &str) -> Result<&str, FuncError> {
    let oob = |a: i64, b: i64| {
        FuncError::Call(format!(
            "runtime error: slice bounds out of range [{a}:{b}] with length {}",
            s.len()
        ))
    };
    let len = s.len() as i64;
    if start < 0 {
        if end < 0 || end > len {
            return Err(oob(0, end));
        }
        return byte_slice(s, 0, end as usize);
    }
    if end < 0 || end > len {
        if start > len {
            return Err(oob(start, len));
        }
        return byte_slice(s, start as usize, s.len());
    }
    if start > end {
        return Err(oob(start, end));
    }
    byte_slice(s, start as usize, end as usize)
}

/// Go's `evalArgs` for `html`, `js` and `urlquery`: one string as is, else `fmt.Sprint`.
fn eval_args(a: &[V<'_>]) -> String {
    if let [one] = a
        && let Some(s) = one.as_str()
    {
        return s.to_owned();
    }
    gofmt::sprint(a)
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 || c.is_control() => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's (deprecated) `strings.Title`, which sprig's `title` uses.
fn title(s: &str) -> String {
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_sep(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Go's `strings.Replace(s, old, new, -1)`, including the empty `old` case.
fn go_replace(s: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        let mut out = String::from(new);
        for c in s.chars() {
            out.push(c);
            out.push_str(new);
        }
        return out;
    }
    s.replace(old, new)
}

/// Go's `strings.Split`.
fn go_split<'s>(s: &'s str, sep: &'s str) -> Box<dyn Iterator<Item = &'s str> + 's> {
    if sep.is_empty() {
        Box::new(s.char_indices().map(move |(i, c)| &s[i..i + c.len_utf8()]))
    } else {
        Box::new(s.split(sep))
    }
}

/// Sprig's `strval`: strings and bytes as text, Stringers by their method, else `%v`.
pub(crate) fn strval(v: &V<'_>) -> String {
    match v {
        V::Str(s) => (*s).to_owned(),
        V::String(s) => s.to_string(),
        V::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        V::Data(Some(Data::Raw(b))) => String::from_utf8_lossy(b).into_owned(),
        V::Owned(o) if matches!(**o, Value::Bytes(_)) => match &**o {
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        },
        other => sprint_one(other),
    }
}

/// Sprig's `strslice`, used by `join`.
fn strslice(v: &V<'_>) -> Vec<String> {
    let from = |l: &[Value]| -> Vec<String> {
        l.iter()
            .filter(|x| !matches!(x, Value::Null))
            .map(|x| strval(&V::of(x)))
            .collect()
    };
    match v {
        V::List(l) => from(l),
        V::Owned(o) => match &**o {
            Value::Array(l) => from(l),
            _ => vec![strval(v)],
        },
        V::Missing | V::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

/// `cast.ToInt`, which sprig's `int` and `int64` use: 0 when it cannot convert.
fn to_int(v: &V<'_>) -> i64 {
    match v {
        V::Int(i) => *i,
        V::Uint(u) => *u as i64,
        V::Float(f) => *f as i64,
        V::Bool(b) => i64::from(*b),
        V::Operation(o) => o.code(),
        V::Str(_) | V::String(_) => {
            let s = v.as_str().unwrap_or_default();
            let s = match s.split_once('.') {
                Some((int, frac)) if !int.is_empty() && frac.bytes().all(|b| b == b'0') => int,
                _ => s,
            };
            funnel_record::go::parse_int(s)
                .and_then(|i| i64::try_from(i).ok())
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// `cast.ToFloat64`, which sprig's `float64` uses: 0 when it cannot convert.
fn to_float(v: &V<'_>) -> f64 {
    match v {
        V::Int(i) => *i as f64,
        V::Uint(u) => *u as f64,
        V::Float(f) => *f,
        V::Bool(b) => f64::from(u8::from(*b)),
        V::Operation(o) => o.code() as f64,
        V::Str(_) | V::String(_) => v.as_str().unwrap_or_default().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Sprig's `b64dec`: the decoded text, or Go's error text when the input is not base64.
fn b64dec(s: &str) -> String {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            let at = match e {
                base64::DecodeError::InvalidByte(i, _)
                | base64::DecodeError::InvalidLastSymbol(i, _) => i,
                base64::DecodeError::InvalidLength(n) => n - n % 4,
                base64::DecodeError::InvalidPadding => s.len().saturating_sub(1),
            };
            format!("illegal base64 data at input byte {at}")
        }
    }
}

/// Sprig's `sha256sum`: the SHA-256 digest of `data` as lower-case hex.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    let mut hex = String::with_capacity(64);
    for byte in sha2::Sha256::digest(data) {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}
