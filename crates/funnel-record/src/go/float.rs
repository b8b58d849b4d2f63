//! Go's float64 text forms: `fmt`'s `%v`, `strconv`'s `'f'` format and `encoding/json`.
//!
//! All three write the shortest digits that read back as the same float64; they differ
//! in when they switch to exponent form and in how they write the exponent:
//!
//! | form | exponent form | examples |
//! |---|---|---|
//! | [`FloatV`]: `%v`, `fmt.Sprint`, `FormatFloat(f, 'g', -1, 64)` | below 1e-4 and from 1e6 on, two exponent digits at least | `123456`, `1e+06`, `1.5e-05` |
//! | [`FloatF`]: `FormatFloat(f, 'f', -1, 64)` | never | `1000000`, `0.000015` |
//! | [`JsonFloat`]: `json.Marshal` | below 1e-6 and from 1e21 on, no padding | `1e+21`, `1e-7` |
//!
//! Each is a [`Display`](fmt::Display) adapter, so it writes straight into a `String`,
//! a formatter or any other [`fmt::Write`] without an intermediate string.

use std::fmt::{self, Write as _};

/// `f` as Go's `%v` verb (`fmt.Sprint`, `strconv.FormatFloat(f, 'g', -1, 64)`) writes it:
/// `4`, `0.5`, `123456`, `1e+06`, `1.234567e+06`, `0.0001`, `1e-05`, `NaN`, `+Inf`.
#[derive(Clone, Copy, Debug)]
pub struct FloatV(pub f64);

/// `f` as Go's `strconv.FormatFloat(f, 'f', -1, 64)` writes it: the shortest digits
/// that read back as `f`, never in exponent form (`1000000`, `0.00001`, `NaN`, `+Inf`).
#[derive(Clone, Copy, Debug)]
pub struct FloatF(pub f64);

/// `f` as Go's `encoding/json` writes a float64: `4`, `0.000001`, `1e-7`,
/// `100000000000000000000`, `1e+21`.
///
/// Go refuses to encode NaN and infinities; this adapter writes them as `null`. A caller
/// that must fail where Go fails checks [`f64::is_finite`] first.
#[derive(Clone, Copy, Debug)]
pub struct JsonFloat(pub f64);

impl fmt::Display for FloatV {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_float_v(out, self.0)
    }
}

impl fmt::Display for FloatF {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let f = self.0;
        if f.is_finite() {
            // Rust's `Display` for f64 is the shortest round-trip text without an
            // exponent, like Go's 'f' format with precision -1 (`4.0` is `4`).
            fmt::Display::fmt(&f, out)
        } else {
            out.write_str(non_finite(f))
        }
    }
}

impl fmt::Display for JsonFloat {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let f = self.0;
        if !f.is_finite() {
            out.write_str("null")
        } else if json_uses_exponent(f) {
            write_exponent_form(out, f, false)
        } else {
            fmt::Display::fmt(&f, out)
        }
    }
}

/// Writes [`FloatV`] of `f` to `out`.
///
/// # Errors
///
/// Only those of `out`.
pub fn write_float_v<W: fmt::Write + ?Sized>(out: &mut W, f: f64) -> fmt::Result {
    if !f.is_finite() {
        return out.write_str(non_finite(f));
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e6).contains(&abs) {
        write_exponent_form(out, f, true)
    } else {
        write!(out, "{f}")
    }
}

/// Appends [`JsonFloat`] of `f` to `out`: the OpenCDC JSON writer's float path, which
/// formats straight into the output buffer.
#[inline]
pub fn write_json_float(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let start = out.len();
    // Writing into a Vec cannot fail, and the exponent's place is always there.
    if json_uses_exponent(f) {
        let _ = fmt::write(&mut VecWriter(out), format_args!("{f:e}"));
        let _ = go_exponent(out, start, false);
    } else {
        let _ = fmt::write(&mut VecWriter(out), format_args!("{f}"));
    }
}

/// Whether Go's `encoding/json` writes `f` in exponent form.
fn json_uses_exponent(f: f64) -> bool {
    let abs = f.abs();
    abs != 0.0 && !(1e-6..1e21).contains(&abs)
}

/// Go's text for NaN and the infinities.
fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// Writes finite `f` in Go's exponent form (see [`go_exponent`]).
fn write_exponent_form<W: fmt::Write + ?Sized>(out: &mut W, f: f64, pad: bool) -> fmt::Result {
    let mut buf = StackText::default();
    write!(buf, "{f:e}")?;
    go_exponent(&mut buf, 0, pad)?;
    out.write_str(std::str::from_utf8(buf.bytes()).map_err(|_| fmt::Error)?)
}

/// Rewrites Rust's `{:e}` text (the shortest round-trip mantissa and a bare exponent,
/// `1e6`, `-2.5e-7`) that starts at `start` of `buf` into Go's exponent form: the
/// exponent's sign always, and with `pad` at least two exponent digits (`1e+06`,
/// `-2.5e-07`).
fn go_exponent<B: ByteBuf>(buf: &mut B, start: usize, pad: bool) -> fmt::Result {
    let text = &buf.bytes()[start..];
    let e = text.iter().rposition(|&b| b == b'e').ok_or(fmt::Error)?;
    let mut digits_at = start + e + 1;
    if text.get(e + 1) != Some(&b'-') {
        buf.insert(digits_at, b'+')?;
    }
    digits_at += 1;
    if pad && buf.bytes().len() - digits_at < 2 {
        buf.insert(digits_at, b'0')?;
    }
    Ok(())
}

/// A byte buffer a formatted float can be rewritten in.
trait ByteBuf {
    fn bytes(&self) -> &[u8];
    /// Inserts `byte` at `at`, moving the rest one place on.
    fn insert(&mut self, at: usize, byte: u8) -> fmt::Result;
}

impl ByteBuf for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn insert(&mut self, at: usize, byte: u8) -> fmt::Result {
        if at > self.len() {
            return Err(fmt::Error);
        }
        Vec::insert(self, at, byte);
        Ok(())
    }
}

/// `fmt::Write` into a byte buffer.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A fixed buffer for one float in exponent form (`-1.2345678901234567e-308` is 24
/// bytes, the longest there is), so formatting does not allocate.
#[derive(Default)]
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl ByteBuf for StackText {
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn insert(&mut self, at: usize, byte: u8) -> fmt::Result {
        if self.len >= self.bytes.len() || at > self.len {
            return Err(fmt::Error);
        }
        self.bytes.copy_within(at..self.len, at + 1);
        self.bytes[at] = byte;
        self.len += 1;
        Ok(())
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_v_switches_to_exponent_form_below_1e_minus_4_and_from_1e6() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (27.0, "27"),
            (0.5, "0.5"),
            (123.345, "123.345"),
            (100_000.0, "100000"),
            (999_999.0, "999999"),
            (1e6, "1e+06"),
            (-1e6, "-1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (123_456_789.0, "1.23456789e+08"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (f, want) in cases {
            assert_eq!(FloatV(f).to_string(), want, "{f:e}");
        }
    }

    #[test]
    fn f_format_never_uses_an_exponent() {
        assert_eq!(FloatF(54.0).to_string(), "54");
        assert_eq!(FloatF(123.345).to_string(), "123.345");
        assert_eq!(FloatF(1e19).to_string(), "10000000000000000000");
        assert_eq!(FloatF(1e6).to_string(), "1000000");
        assert_eq!(FloatF(0.00001).to_string(), "0.00001");
        assert_eq!(FloatF(f64::NEG_INFINITY).to_string(), "-Inf");
    }

    #[test]
    fn json_switches_to_exponent_form_below_1e_minus_6_and_from_1e21() {
        let cases = [
            (4.0, "4"),
            (-0.0, "-0"),
            (1e6, "1000000"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (-1.5e300, "-1.5e+300"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (5e-324, "5e-324"),
            (f64::NAN, "null"),
        ];
        for (f, want) in cases {
            assert_eq!(JsonFloat(f).to_string(), want, "{f:e}");
            let mut out = b"x".to_vec();
            write_json_float(&mut out, f);
            assert_eq!(out, format!("x{want}").as_bytes(), "{f:e}");
        }
    }
}
