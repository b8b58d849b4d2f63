//! RFC 3339 times for `field.convert` to `time`, parsed and written the way Go's
//! `time.Parse(time.RFC3339Nano, ...)` and `time.Time`'s JSON form do.
//!
//! Funnel's values have no time kind, so a converted time is stored as its RFC 3339
//! text with nanoseconds (trailing zeros dropped), the text Conduit writes for a
//! `time.Time` in JSON.

use std::fmt::Write as _;

/// Go's layout name for RFC 3339 with nanoseconds, as its errors quote it.
const LAYOUT: &str = "2006-01-02T15:04:05.999999999Z07:00";

/// A moment: seconds since the Unix epoch, nanoseconds, and the UTC offset it was
/// written with (in seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Time {
    unix: i64,
    nanos: u32,
    offset: i32,
}

impl Time {
    /// The time `nanos` nanoseconds after the Unix epoch, in UTC (Go's
    /// `time.Unix(0, nanos).UTC()`).
    pub(crate) fn from_unix_nanos(nanos: i64) -> Self {
        Self {
            unix: nanos.div_euclid(1_000_000_000),
            nanos: nanos.rem_euclid(1_000_000_000) as u32,
            offset: 0,
        }
    }

    /// Parses RFC 3339 text with optional fractional seconds, keeping its offset.
    ///
    /// # Errors
    ///
    /// Go's `time.Parse` message: `parsing time "x" as "<layout>": cannot parse "..." as
    /// "..."`, or `parsing time "x": month out of range` and the like.
    pub(crate) fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let cannot = |rest: &str, elem: &str| {
            format!("parsing time {text:?} as {LAYOUT:?}: cannot parse {rest:?} as {elem:?}")
        };
        let out_of_range = |what: &str| format!("parsing time {text:?}: {what} out of range");
        let mut rest = text;
        let year = take_digits(&mut rest, 4).ok_or_else(|| cannot(rest, "2006"))?;
        take_char(&mut rest, '-').ok_or_else(|| cannot(rest, "-"))?;
        let month = take_digits(&mut rest, 2).ok_or_else(|| cannot(rest, "01"))?;
        take_char(&mut rest, '-').ok_or_else(|| cannot(rest, "-"))?;
        let day = take_digits(&mut rest, 2).ok_or_else(|| cannot(rest, "02"))?;
        take_char(&mut rest, 'T').ok_or_else(|| cannot(rest, "T"))?;
        let hour = take_digits(&mut rest, 2).ok_or_else(|| cannot(rest, "15"))?;
        take_char(&mut rest, ':').ok_or_else(|| cannot(rest, ":"))?;
        let minute = take_digits(&mut rest, 2).ok_or_else(|| cannot(rest, "04"))?;
        take_char(&mut rest, ':').ok_or_else(|| cannot(rest, ":"))?;
        let second = take_digits(&mut rest, 2).ok_or_else(|| cannot(rest, "05"))?;
        let mut nanos = 0u32;
        if let Some(fraction) = rest.strip_prefix(['.', ',']) {
            let len = fraction
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(fraction.len());
            if len == 0 || len > 9 {
                return Err(cannot(rest, ".999999999"));
            }
            let digits = &fraction[..len];
            nanos = digits.parse::<u32>().unwrap_or(0) * 10u32.pow(9 - len as u32);
            rest = &fraction[len..];
        }
        let offset = if let Some(after) = rest.strip_prefix('Z') {
            rest = after;
            0
        } else {
            let zone = rest;
            let sign = match zone.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(cannot(zone, "Z07:00")),
            };
            rest = &zone[1..];
            let hh = take_digits(&mut rest, 2).ok_or_else(|| cannot(zone, "Z07:00"))?;
            take_char(&mut rest, ':').ok_or_else(|| cannot(zone, "Z07:00"))?;
            let mm = take_digits(&mut rest, 2).ok_or_else(|| cannot(zone, "Z07:00"))?;
            if hh >= 24 || mm >= 60 {
                return Err(out_of_range("time zone offset"));
            }
            sign * (hh as i32 * 3600 + mm as i32 * 60)
        };
        if !rest.is_empty() {
            return Err(format!("parsing time {text:?}: extra text: {rest:?}"));
        }
        if !(1..=12).contains(&month) {
            return Err(out_of_range("month"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(out_of_range("day"));
        }
        if hour >= 24 {
            return Err(out_of_range("hour"));
        }
        if minute >= 60 {
            return Err(out_of_range("minute"));
        }
        if second >= 60 {
            return Err(out_of_range("second"));
        }
        let local = days_from_civil(year as i64, month, day) * 86_400
            + hour as i64 * 3600
            + minute as i64 * 60
            + second as i64;
        Ok(Self {
            unix: local - offset as i64,
            nanos,
            offset,
        })
    }

    /// The time as Go writes a `time.Time` in JSON (without the quotes): RFC 3339 with
    /// nanoseconds, trailing zeros dropped, `Z` for UTC.
    pub(crate) fn to_rfc3339(self) -> String {
        let local = self.unix + self.offset as i64;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let mut out = String::with_capacity(35);
        let _ = write!(
            out,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        );
        if self.nanos > 0 {
            let fraction = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(fraction.trim_end_matches('0'));
        }
        if self.offset == 0 {
            out.push('Z');
        } else {
            let sign = if self.offset < 0 { '-' } else { '+' };
            let abs = self.offset.abs();
            let _ = write!(out, "{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60);
        }
        out
    }
}

fn take_digits(rest: &mut &str, n: usize) -> Option<u32> {
    let digits = rest.get(..n)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    *rest = &rest[n..];
    digits.parse().ok()
}

fn take_char(rest: &mut &str, c: char) -> Option<()> {
    *rest = rest.strip_prefix(c)?;
    Some(())
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_nanoseconds_are_written_in_utc_without_trailing_zeros() {
        assert_eq!(
            Time::from_unix_nanos(1_611_254_412_345_678_999).to_rfc3339(),
            "2021-01-21T18:40:12.345678999Z"
        );
        assert_eq!(
            Time::from_unix_nanos(0).to_rfc3339(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            Time::from_unix_nanos(1_500_000_000).to_rfc3339(),
            "1970-01-01T00:00:01.5Z"
        );
        assert_eq!(
            Time::from_unix_nanos(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn rfc3339_text_round_trips_with_its_offset() {
        for text in [
            "2021-01-21T18:40:12.345678999Z",
            "2024-02-29T00:00:00+05:30",
            "1999-12-31T23:59:59.1-08:00",
        ] {
            assert_eq!(Time::parse_rfc3339(text).unwrap().to_rfc3339(), text);
        }
        assert_eq!(
            Time::parse_rfc3339("2021-01-21T20:40:12+02:00")
                .unwrap()
                .unix,
            Time::parse_rfc3339("2021-01-21T18:40:12Z").unwrap().unix
        );
    }

    #[test]
    fn invalid_text_fails_with_go_messages() {
        assert_eq!(
            Time::parse_rfc3339("21.01.2021 18:40:12").unwrap_err(),
            "parsing time \"21.01.2021 18:40:12\" as \"2006-01-02T15:04:05.999999999Z07:00\": \
             cannot parse \"21.01.2021 18:40:12\" as \"2006\""
        );
        assert!(
            Time::parse_rfc3339("2021-02-30T00:00:00Z")
                .unwrap_err()
                .ends_with("day out of range")
        );
        assert!(
            Time::parse_rfc3339("2021-01-01T00:00:00")
                .unwrap_err()
                .contains("as \"Z07:00\"")
        );
        assert!(
            Time::parse_rfc3339("2021-01-01T00:00:00Zx")
                .unwrap_err()
                .contains("extra text")
        );
    }
}
