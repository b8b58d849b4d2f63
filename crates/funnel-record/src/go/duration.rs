//! Go's `time.ParseDuration`, exactly: syntax, rounding, range and error messages.

use std::fmt;

/// Why text is not a Go duration; `Display` is Go's error message
/// (`time: invalid duration "x"`, `time: missing unit in duration "1"`,
/// `time: unknown unit "d" in duration "1d"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError(String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DurationError {}

const NANOS_PER_UNIT: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 MICRO SIGN
    ("μs", 1_000), // U+03BC GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The largest magnitude a Go duration can hold, 2^63 ns (only as a negative value).
const LIMIT: u64 = 1 << 63;

/// Parses a duration as Go's `time.ParseDuration` does, into signed nanoseconds (Go's
/// `time.Duration`): an optional sign, then one or more decimal numbers, each with an
/// optional fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), as in
/// `300ms`, `-1.5h` or `2h45m`; a bare `0` is zero. Nothing else is accepted, not even
/// surrounding whitespace. Fractions below a nanosecond are dropped, as Go drops them.
///
/// # Errors
///
/// Go's message when `text` is not a duration or is beyond ±292 years.
pub fn parse_duration(text: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError(format!("time: invalid duration {}", quote(text)));
    let mut s = text.as_bytes();
    let mut negative = false;
    if let Some((&sign @ (b'-' | b'+'), rest)) = s.split_first() {
        negative = sign == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let has_whole = s.len() != before;
        let (mut fraction, mut scale, mut has_fraction) = (0, 1.0, false);
        if let Some((b'.', rest)) = s.split_first() {
            let before = rest.len();
            (fraction, scale, s) = leading_fraction(rest);
            has_fraction = s.len() != before;
        }
        if !has_whole && !has_fraction {
            return Err(invalid());
        }
        let unit_len = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError(format!(
                "time: missing unit in duration {}",
                quote(text)
            )));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let Some(&(_, nanos)) = NANOS_PER_UNIT.iter().find(|(u, _)| u.as_bytes() == unit) else {
            // `unit` ends where `text` has an ASCII byte or ends, so it is whole UTF-8.
            let unit = String::from_utf8_lossy(unit);
            return Err(DurationError(format!(
                "time: unknown unit {} in duration {}",
                quote(&unit),
                quote(text)
            )));
        };
        if whole > LIMIT / nanos {
            return Err(invalid());
        }
        let mut value = whole * nanos;
        if fraction > 0 {
            // As Go: a float64 is exact enough for fractions of the largest unit, and
            // the cast truncates what is below a nanosecond.
            value += (fraction as f64 * (nanos as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // `total` is at most 2^63, so its negation fits an i64.
        Ok(0_i64.wrapping_sub_unsigned(total))
    } else {
        i64::try_from(total).map_err(|_| invalid())
    }
}

/// Go's `leadingInt`: the leading decimal digits as a number (`None` past 2^63).
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let len = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut x: u64 = 0;
    for &c in &s[..len] {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return None;
        }
    }
    Some((x, &s[len..]))
}

/// Go's `leadingFraction`: the leading digits after a point as `x / scale`; digits past
/// what a u64 holds are read but add no precision.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let len = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (mut x, mut scale, mut overflow) = (0_u64, 1.0_f64, false);
    for &c in &s[..len] {
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[len..])
}

/// The `time` package's `quote`: `"` + text + `"`, with `"` and `\` escaped and the bytes
/// of control and non-ASCII characters as `\xNN`.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut utf8 = [0; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn durations_parse_to_go_nanoseconds() {
        let cases = [
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("0s", 0),
            ("5s", 5 * SECOND),
            ("30s", 30 * SECOND),
            ("1478s", 1478 * SECOND),
            ("-5s", -5 * SECOND),
            ("+5s", 5 * SECOND),
            ("5.0s", 5 * SECOND),
            ("5.6s", 5 * SECOND + 600_000_000),
            ("5.s", 5 * SECOND),
            (".5s", SECOND / 2),
            ("1.004s", SECOND + 4_000_000),
            ("100.00100s", 100 * SECOND + 1_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14 * SECOND),
            ("15m", 15 * 60 * SECOND),
            ("16h", 16 * 3600 * SECOND),
            ("3h30m", 12_600 * SECOND),
            ("10.5s4m", 4 * 60 * SECOND + 10 * SECOND + SECOND / 2),
            ("-2m3.4s", -(2 * 60 * SECOND + 3 * SECOND + 400_000_000)),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * SECOND),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * SECOND),
            (
                "0.830103483285477580700h",
                49 * 60 * SECOND + 48_372_539_827,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn text_go_refuses_is_refused_with_go_messages() {
        let invalid = [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "\u{FFFD}",
            "9223372036854775808ns",
            "9223372036854775.808us",
            "-9223372036854775809ns",
            " 1s",
            "1s ",
            "1 s",
            "1s,2m",
        ];
        for text in invalid {
            assert!(parse_duration(text).is_err(), "{text:?} should fail");
        }
        let message = |text| parse_duration(text).unwrap_err().to_string();
        assert_eq!(message(""), r#"time: invalid duration """#);
        assert_eq!(message(" 1s"), r#"time: invalid duration " 1s""#);
        assert_eq!(message("3"), r#"time: missing unit in duration "3""#);
        assert_eq!(message("1d"), r#"time: unknown unit "d" in duration "1d""#);
        assert_eq!(
            message("1s "),
            r#"time: unknown unit "s " in duration "1s ""#
        );
        assert_eq!(
            message("1\u{00e9}s"),
            r#"time: unknown unit "\xc3\xa9s" in duration "1\xc3\xa9s""#
        );
    }
}
