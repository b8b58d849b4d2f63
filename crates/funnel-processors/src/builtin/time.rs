//! RFC 3339 text for `field.convert` to `time`, parsed the way Go's
//! `time.Parse(time.RFC3339Nano, ...)` does, errors included.
//!
//! The result is a [`Timestamp`] (a UTC instant): a time written with an offset
//! (`+02:00`) is the same instant in UTC. Go keeps the offset as the time's zone, so its
//! JSON form would show `+02:00` where Funnel's shows `Z` for the same instant.

use funnel_record::{Timestamp, go};

/// Go's layout name for RFC 3339 with nanoseconds, as its errors quote it.
const LAYOUT: &str = "2006-01-02T15:04:05.999999999Z07:00";

/// Parses RFC 3339 text with optional fractional seconds into the UTC instant it names.
///
/// # Errors
///
/// Go's `time.Parse` message: `parsing time "x" as "<layout>": cannot parse "..." as
/// "..."`, or `parsing time "x": month out of range` and the like.
pub(crate) fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
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
    if day < 1 || day > go::days_in_month(i64::from(year), month) {
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
    // Every part is in range (checked above), so the date exists.
    let local = Timestamp::from_utc(i64::from(year), month, day, hour, minute, second, nanos)
        .ok_or_else(|| out_of_range("day"))?;
    Timestamp::new(local.unix_secs() - i64::from(offset), nanos)
        .ok_or_else(|| out_of_range("second"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> String {
        parse_rfc3339(text).unwrap().to_rfc3339()
    }

    #[test]
    fn rfc3339_text_parses_to_the_utc_instant() {
        assert_eq!(
            utc("2021-01-21T18:40:12.345678999Z"),
            "2021-01-21T18:40:12.345678999Z"
        );
        assert_eq!(utc("2024-02-29T05:30:00+05:30"), "2024-02-29T00:00:00Z");
        assert_eq!(utc("1999-12-31T23:59:59.1-08:00"), "2000-01-01T07:59:59.1Z");
        assert_eq!(utc("1970-01-01T00:00:00,5Z"), "1970-01-01T00:00:00.5Z");
        assert_eq!(
            parse_rfc3339("2021-01-21T20:40:12+02:00"),
            parse_rfc3339("2021-01-21T18:40:12Z")
        );
    }

    #[test]
    fn invalid_text_fails_with_go_messages() {
        assert_eq!(
            parse_rfc3339("21.01.2021 18:40:12").unwrap_err(),
            "parsing time \"21.01.2021 18:40:12\" as \"2006-01-02T15:04:05.999999999Z07:00\": \
             cannot parse \"21.01.2021 18:40:12\" as \"2006\""
        );
        assert!(
            parse_rfc3339("2021-02-30T00:00:00Z")
                .unwrap_err()
                .ends_with("day out of range")
        );
        assert!(
            parse_rfc3339("2021-01-01T00:00:00")
                .unwrap_err()
                .contains("as \"Z07:00\"")
        );
        assert!(
            parse_rfc3339("2021-01-01T00:00:00Zx")
                .unwrap_err()
                .contains("extra text")
        );
    }
}
