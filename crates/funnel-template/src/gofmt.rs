//! Go's `fmt` and `strconv` formatting, as far as templates need it.

use std::fmt::Write;

use funnel_record::go::FloatV;
use funnel_record::{Data, Value};

use crate::value::{V, write_value};

/// The largest width or precision Go's fmt accepts (its `tooLarge`).
const TOO_LARGE: usize = 1_000_000;

/// Go's `strconv.Quote`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_exp(out: &mut String, exp: i32) {
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.abs());
}

fn write_e_digits(out: &mut String, digits: &str, exp: i32) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    write_exp(out, exp);
}

/// Digits after which the exact decimal expansion of an `f64` holds only zeros (at most
/// 1074 after the point, 767 significant). Rust's formatter takes a precision up to
/// 65535, Go's fmt up to a million: beyond this, zeros are appended.
const EXACT_DIGITS: usize = 1100;

/// `f` with `prec` digits after the point, as `{:.prec$}` for any `prec`.
fn fixed(f: f64, prec: usize) -> String {
    let mut s = format!("{:.*}", prec.min(EXACT_DIGITS), f);
    s.extend(std::iter::repeat_n('0', prec.saturating_sub(EXACT_DIGITS)));
    s
}

/// `f` with `prec` digits after the point of its mantissa, as `{:.prec$e}` for any
/// `prec`.
fn scientific(f: f64, prec: usize) -> String {
    let s = format!("{:.*e}", prec.min(EXACT_DIGITS), f);
    let extra = prec.saturating_sub(EXACT_DIGITS);
    match s.split_once('e') {
        Some((mantissa, exp)) if extra > 0 => {
            format!("{mantissa}{}e{exp}", "0".repeat(extra))
        }
        _ => s,
    }
}

/// `%e` with `prec` digits after the point.
fn fmt_e(f: f64, prec: usize, upper: bool) -> String {
    let s = scientific(f.abs(), prec);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    out.push_str(mant);
    out.push(if upper { 'E' } else { 'e' });
    write_exp(&mut out, exp.parse().unwrap_or(0));
    out
}

/// `%g` with a precision (significant digits).
fn fmt_g(f: f64, prec: Option<usize>, upper: bool) -> String {
    let Some(p) = prec else {
        let s = FloatV(f).to_string();
        return if upper { s.to_uppercase() } else { s };
    };
    let p = p.max(1);
    let e = scientific(f.abs(), p - 1);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    if exp < -4 || exp >= p as i32 {
        write_e_digits(&mut out, &digits, exp);
        if upper {
            out = out.to_uppercase();
        }
    } else {
        let decimals = (digits.len() as i32 - exp - 1).max(0) as usize;
        out.push_str(&fixed(f.abs(), decimals));
    }
    out
}

fn is_string(v: &V<'_>) -> bool {
    matches!(v, V::Str(_) | V::String(_))
}

/// `fmt.Sprint`: operands formatted with `%v`, a space between two operands when neither
/// is a string.
pub(crate) fn sprint(args: &[V<'_>]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !is_string(a) && !is_string(&args[i - 1]) {
            out.push(' ');
        }
        write_value(&mut out, a);
    }
    out
}

/// `fmt.Sprintln`: operands with spaces between them and a newline.
pub(crate) fn sprintln(args: &[V<'_>]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(&mut out, a);
    }
    out.push('\n');
    out
}

#[derive(Default, Clone, Copy)]
struct Spec {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(out: &mut String, s: &str, spec: &Spec, numeric: bool) {
    let Some(w) = spec.width else {
        out.push_str(s);
        return;
    };
    let n = s.chars().count();
    if n >= w {
        out.push_str(s);
        return;
    }
    let fill = w - n;
    if spec.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero && numeric {
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'-' | b'+' | b' ') => s.split_at(1),
            _ => ("", s),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(s);
    }
}

fn bad_verb(out: &mut String, verb: char, v: &V<'_>) {
    let _ = write!(out, "%!{verb}(");
    if v.is_nil() && !matches!(v, V::Data(None)) {
        out.push_str("<nil>");
    } else {
        out.push_str(v.type_name());
        out.push('=');
        write_value(out, v);
    }
    out.push(')');
}

fn int_of(v: &V<'_>) -> Option<i128> {
    match v {
        V::Int(i) => Some(i128::from(*i)),
        V::Uint(u) => Some(i128::from(*u)),
        V::Operation(o) => Some(i128::from(o.code())),
        _ => None,
    }
}

/// What `%s` prints for `v` when that is its text as is: a string, or bytes that are
/// valid UTF-8.
pub(crate) fn plain_text<'x>(v: &'x V<'_>) -> Option<&'x str> {
    std::str::from_utf8(bytes_of(v)?).ok()
}

fn bytes_of<'x>(v: &'x V<'_>) -> Option<&'x [u8]> {
    match v {
        V::Str(s) => Some(s.as_bytes()),
        V::String(s) => Some(s.as_bytes()),
        V::Bytes(b) => Some(b),
        V::Data(Some(Data::Raw(b))) => Some(b),
        V::Owned(o) => match &**o {
            Value::Bytes(b) => Some(b),
            _ => None,
        },
        _ => None,
    }
}

fn stringer(v: &V<'_>) -> Option<String> {
    match v {
        V::Position(_) | V::Operation(_) | V::Time(_) => Some(crate::value::sprint_one(v)),
        _ => None,
    }
}

fn fmt_one(out: &mut String, verb: char, spec: &Spec, v: &V<'_>) {
    match verb {
        'v' => {
            let mut s = String::new();
            if let (true, Some(q)) = (spec.sharp, v.as_str()) {
                s = quote(q);
            } else if let (Some(i), false) = (int_of(v), matches!(v, V::Operation(_))) {
                if spec.plus && i >= 0 {
                    s.push('+');
                }
                let _ = write!(s, "{i}");
            } else {
                write_value(&mut s, v);
            }
            pad(
                out,
                &s,
                spec,
                int_of(v).is_some() || matches!(v, V::Float(_)),
            );
        }
        's' | 'q' => {
            // `%s` of bytes or a string, the common case (a raw payload as text): written
            // straight through, without an owned copy when it is valid UTF-8.
            if verb == 's'
                && spec.prec.is_none()
                && spec.width.is_none()
                && let Some(b) = bytes_of(v)
            {
                match std::str::from_utf8(b) {
                    Ok(text) => out.push_str(text),
                    Err(_) => out.push_str(&String::from_utf8_lossy(b)),
                }
                return;
            }
            let text = if let Some(s) = stringer(v) {
                s
            } else if let Some(b) = bytes_of(v) {
                String::from_utf8_lossy(b).into_owned()
            } else if verb == 'q' && int_of(v).is_some() {
                let c = int_of(v)
                    .and_then(|i| u32::try_from(i).ok())
                    .and_then(char::from_u32);
                let q = c.map_or("'\u{FFFD}'".to_owned(), |c| {
                    let inner = quote(&c.to_string());
                    format!("'{}'", &inner[1..inner.len() - 1].replace("\\\"", "\""))
                });
                pad(out, &q, spec, false);
                return;
            } else {
                return bad_verb(out, verb, v);
            };
            let text = match spec.prec {
                Some(p) => text.chars().take(p).collect(),
                None => text,
            };
            let text = if verb == 'q' {
                if spec.sharp && !text.contains('`') {
                    format!("`{text}`")
                } else {
                    quote(&text)
                }
            } else {
                text
            };
            pad(out, &text, spec, false);
        }
        'd' | 'b' | 'o' | 'O' | 'x' | 'X' | 'c' | 'U' => {
            if let Some(i) = int_of(v) {
                let mut s = String::new();
                if i < 0 {
                    s.push('-');
                } else if spec.plus {
                    s.push('+');
                } else if spec.space {
                    s.push(' ');
                }
                let a = i.unsigned_abs();
                let sharp = |prefix: &'static str| if spec.sharp { prefix } else { "" };
                let _ = match verb {
                    'd' => write!(s, "{a}"),
                    'b' => write!(s, "{a:b}"),
                    'o' => write!(s, "{}{a:o}", sharp("0")),
                    'O' => write!(s, "0o{a:o}"),
                    'x' => write!(s, "{}{a:x}", sharp("0x")),
                    'X' => write!(s, "{}{a:X}", sharp("0X")),
                    'c' => {
                        s.clear();
                        s.push(
                            u32::try_from(i)
                                .ok()
                                .and_then(char::from_u32)
                                .unwrap_or('\u{FFFD}'),
                        );
                        Ok(())
                    }
                    _ => {
                        s.clear();
                        write!(s, "U+{a:04X}")
                    }
                };
                pad(out, &s, spec, verb != 'c' && verb != 'U');
            } else if let (Some(b), 'x' | 'X') = (bytes_of(v), verb) {
                let s: String = b
                    .iter()
                    .map(|x| {
                        if verb == 'x' {
                            format!("{x:02x}")
                        } else {
                            format!("{x:02X}")
                        }
                    })
                    .collect();
                pad(out, &s, spec, false);
            } else {
                bad_verb(out, verb, v);
            }
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            let V::Float(f) = v else {
                return bad_verb(out, verb, v);
            };
            let f = *f;
            let mut s = match verb {
                _ if !f.is_finite() => FloatV(f).to_string(),
                'e' | 'E' => fmt_e(f, spec.prec.unwrap_or(6), verb == 'E'),
                'f' | 'F' => fixed(f, spec.prec.unwrap_or(6)),
                _ => fmt_g(f, spec.prec, verb == 'G'),
            };
            if spec.plus && !s.starts_with(['-', '+']) {
                s.insert(0, '+');
            } else if spec.space && !s.starts_with(['-', '+']) {
                s.insert(0, ' ');
            }
            pad(out, &s, spec, f.is_finite());
        }
        't' => match v {
            V::Bool(b) => pad(out, if *b { "true" } else { "false" }, spec, false),
            _ => bad_verb(out, verb, v),
        },
        'T' => pad(
            out,
            if v.is_nil() && !matches!(v, V::Data(None)) {
                "<nil>"
            } else {
                v.type_name()
            },
            spec,
            false,
        ),
        other => bad_verb(out, other, v),
    }
}

/// `fmt.Sprintf` for the common verbs: `%v %s %q %d %b %o %O %x %X %c %U %e %E %f %F %g %G
/// %t %T %%` with flags `+ - # space 0`, width and precision (`*` too). Errors are written
/// inline the way Go does (`%!d(string=x)`, `%!d(MISSING)`, `%!(EXTRA ...)`).
pub(crate) fn sprintf(format: &str, args: &[V<'_>]) -> String {
    let mut out = String::with_capacity(format.len() + 8);
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '+' => spec.plus = true,
                '-' => spec.minus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = !spec.minus,
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, next: &mut usize| {
            if chars.peek() == Some(&'*') {
                chars.next();
                let v = args.get(*next).and_then(int_of);
                *next += 1;
                // Go's fmt refuses a width or precision argument beyond a million.
                return v
                    .and_then(|v| usize::try_from(v).ok())
                    .filter(|&v| v <= TOO_LARGE);
            }
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                let so_far = n.unwrap_or(0);
                if so_far > TOO_LARGE {
                    // As Go's fmt: a crazy long number swallows the rest of the format,
                    // which then has no verb.
                    chars.by_ref().for_each(drop);
                    return None;
                }
                n = Some(so_far * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = number(&mut chars, &mut next);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(number(&mut chars, &mut next).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            None => {
                let _ = write!(out, "%!{verb}(MISSING)");
            }
            Some(v) => fmt_one(&mut out, verb, &spec, v),
        }
        next += 1;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, v) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            if v.is_nil() && !matches!(v, V::Data(None)) {
                out.push_str("<nil>");
            } else {
                out.push_str(v.type_name());
                out.push('=');
                write_value(&mut out, v);
            }
        }
        out.push(')');
    }
    out
}
