//! [`Timestamp`]: the instant held by [`Value::Time`](crate::Value::Time), Funnel's
//! counterpart of a Go `time.Time` inside Conduit's structured data.
//!
//! A timestamp is a UTC instant with nanosecond precision: whole seconds since the Unix
//! epoch (`i64`, negative before 1970) plus nanoseconds within the second (`0..1e9`). It
//! keeps no time zone or UTC offset: Go's times carry a location, Funnel's are always in
//! UTC (what `time.Unix(..).UTC()` and `time.Parse` of a `Z` time give in Go).
//!
//! Two text forms are provided, both as Go writes them for a UTC time:
//!
//! - [`Timestamp::to_rfc3339`] (also `Display`): `time.Time.MarshalJSON` without the
//!   quotes, RFC 3339 with nanoseconds, trailing zeros dropped, `Z` for UTC:
//!   `2021-01-21T18:40:12.345678999Z`, `1970-01-01T00:00:01.5Z`, `2024-01-01T00:00:00Z`.
//! - [`Timestamp::to_go_string`]: `time.Time.String()`, the form Go's `fmt` and
//!   `text/template` print: `2021-01-21 18:40:12.345678999 +0000 UTC`.
//!
//! Years outside 0..=9999 are written with a sign or more digits (`-0001`, `10000`), as
//! Go's `Format` writes them; Go's `MarshalJSON` refuses such years with an error, but
//! Funnel's writers cannot fail, so they write the extended year instead.

use std::fmt;

use crate::go::{civil_from_days, days_from_civil, days_in_month};

const NANOS_PER_SEC: u32 = 1_000_000_000;

/// A UTC instant with nanosecond precision: seconds since 1970-01-01T00:00:00Z and
/// nanoseconds within the second. See the [module docs](self) for its text forms.
///
/// Ordering is chronological.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Self = Self { secs: 0, nanos: 0 };

    /// The instant `secs` seconds and `nanos` nanoseconds after the Unix epoch, or `None`
    /// when `nanos` is a whole second or more.
    pub const fn new(secs: i64, nanos: u32) -> Option<Self> {
        if nanos < NANOS_PER_SEC {
            Some(Self { secs, nanos })
        } else {
            None
        }
    }

    /// The instant `nanos` nanoseconds after the Unix epoch (Go's
    /// `time.Unix(0, nanos).UTC()`); negative values are before 1970.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self {
            secs: nanos.div_euclid(NANOS_PER_SEC as i64),
            // rem_euclid is in 0..1e9, so it fits a u32.
            nanos: nanos.rem_euclid(NANOS_PER_SEC as i64) as u32,
        }
    }

    /// The instant at a proleptic Gregorian date and time of day in UTC, or `None` when a
    /// part is out of range (month 1-12, a day the month has, hour < 24, minute < 60,
    /// second < 60, nanos < 1e9) or the instant is beyond `i64` seconds.
    pub fn from_utc(
        year: i64,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        nanos: u32,
    ) -> Option<Self> {
        // Far beyond i64 seconds either way; the bound keeps the day count from overflowing.
        const YEARS: i64 = 1_000_000_000_000;
        if !(-YEARS..=YEARS).contains(&year)
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour >= 24
            || minute >= 60
            || second >= 60
            || nanos >= NANOS_PER_SEC
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs = days
            .checked_mul(86_400)?
            .checked_add(i64::from(hour * 3600 + minute * 60 + second))?;
        Some(Self { secs, nanos })
    }

    /// Whole seconds since the Unix epoch (rounded down: -0.5 s is -1 s plus 5e8 ns).
    pub const fn unix_secs(self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub const fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// Nanoseconds since the Unix epoch (never overflows an `i128`).
    pub const fn unix_nanos(self) -> i128 {
        self.secs as i128 * NANOS_PER_SEC as i128 + self.nanos as i128
    }

    /// The UTC date and time of day: (year, month 1-12, day 1-31, hour, minute, second).
    pub fn to_utc(self) -> (i64, u32, u32, u32, u32, u32) {
        let days = self.secs.div_euclid(86_400);
        // rem_euclid is in 0..86400, so it fits a u32.
        let secs = self.secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        (year, month, day, secs / 3600, secs % 3600 / 60, secs % 60)
    }

    /// Go's `time.Time.MarshalJSON` text without the quotes: RFC 3339 with nanoseconds,
    /// trailing zeros dropped, `Z` for UTC (`2021-01-21T18:40:12.3456Z`).
    pub fn to_rfc3339(self) -> String {
        let mut out = Vec::with_capacity(32);
        self.write_rfc3339(&mut out);
        ascii_string(out)
    }

    /// Appends [`Timestamp::to_rfc3339`]'s text to `out`, allocating nothing else.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        self.write_date_time(out, b'T');
        out.push(b'Z');
    }

    /// Go's `time.Time.String()` for a UTC time: `2021-01-21 18:40:12.3456 +0000 UTC`
    /// (layout `2006-01-02 15:04:05.999999999 -0700 MST`).
    pub fn to_go_string(self) -> String {
        let mut out = Vec::with_capacity(40);
        self.write_date_time(&mut out, b' ');
        out.extend_from_slice(b" +0000 UTC");
        ascii_string(out)
    }

    /// `yyyy-mm-dd<sep>hh:mm:ss[.fraction]`, fraction without trailing zeros; the year
    /// has at least four digits.
    fn write_date_time(self, out: &mut Vec<u8>, separator: u8) {
        let (year, month, day, hour, minute, second) = self.to_utc();
        if year < 0 {
            out.push(b'-');
        }
        let year = year.unsigned_abs();
        if year < 10_000 {
            // Below 10,000, so it fits a u32.
            push_digits(out, year as u32, 4);
        } else {
            out.extend_from_slice(itoa::Buffer::new().format(year).as_bytes());
        }
        out.push(b'-');
        push_digits(out, month, 2);
        out.push(b'-');
        push_digits(out, day, 2);
        out.push(separator);
        push_digits(out, hour, 2);
        out.push(b':');
        push_digits(out, minute, 2);
        out.push(b':');
        push_digits(out, second, 2);
        if self.nanos > 0 {
            out.push(b'.');
            let mut nanos = self.nanos;
            let mut width = 9;
            while nanos.is_multiple_of(10) {
                nanos /= 10;
                width -= 1;
            }
            push_digits(out, nanos, width);
        }
    }
}

/// Appends the last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        // `n % 10` is below 10, so the cast cannot truncate.
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The text of bytes that are all ASCII digits and punctuation.
fn ascii_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl fmt::Display for Timestamp {
    /// The RFC 3339 form ([`Timestamp::to_rfc3339`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64, nanos: u32) -> Timestamp {
        Timestamp::new(secs, nanos).unwrap()
    }

    #[test]
    fn whole_seconds_have_no_fraction() {
        assert_eq!(Timestamp::UNIX_EPOCH.to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(ts(1_704_067_200, 0).to_rfc3339(), "2024-01-01T00:00:00Z");
        assert_eq!(ts(951_782_400, 0).to_rfc3339(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn nanoseconds_are_written_and_trailing_zeros_dropped() {
        assert_eq!(
            Timestamp::from_unix_nanos(1_611_254_412_345_678_999).to_rfc3339(),
            "2021-01-21T18:40:12.345678999Z"
        );
        assert_eq!(ts(1, 500_000_000).to_rfc3339(), "1970-01-01T00:00:01.5Z");
        assert_eq!(ts(0, 120_000).to_rfc3339(), "1970-01-01T00:00:00.00012Z");
        assert_eq!(ts(0, 1).to_rfc3339(), "1970-01-01T00:00:00.000000001Z");
    }

    #[test]
    fn times_before_1970_count_down_from_the_epoch() {
        assert_eq!(
            Timestamp::from_unix_nanos(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999999999Z"
        );
        assert_eq!(ts(-1, 500_000_000).unix_nanos(), -500_000_000);
        assert_eq!(ts(-86_400, 0).to_rfc3339(), "1969-12-31T00:00:00Z");
        assert_eq!(
            Timestamp::from_utc(1900, 3, 1, 12, 30, 0, 0)
                .unwrap()
                .to_rfc3339(),
            "1900-03-01T12:30:00Z"
        );
    }

    #[test]
    fn years_outside_four_digits_are_written_like_go_format() {
        let year = |y| Timestamp::from_utc(y, 1, 1, 0, 0, 0, 0).unwrap();
        assert_eq!(year(0).to_rfc3339(), "0000-01-01T00:00:00Z");
        assert_eq!(year(-1).to_rfc3339(), "-0001-01-01T00:00:00Z");
        assert_eq!(year(12345).to_rfc3339(), "12345-01-01T00:00:00Z");
    }

    #[test]
    fn go_string_form() {
        assert_eq!(
            Timestamp::from_unix_nanos(1_611_254_412_345_678_999).to_go_string(),
            "2021-01-21 18:40:12.345678999 +0000 UTC"
        );
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_go_string(),
            "1970-01-01 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn civil_round_trips_and_validates() {
        for secs in [
            -62_135_596_800,
            -1,
            0,
            951_868_799,
            1_704_198_896,
            253_402_300_799,
        ] {
            let t = ts(secs, 7);
            let (y, mo, d, h, mi, s) = t.to_utc();
            assert_eq!(Timestamp::from_utc(y, mo, d, h, mi, s, 7), Some(t));
        }
        assert_eq!(Timestamp::from_utc(2023, 2, 29, 0, 0, 0, 0), None);
        assert_eq!(Timestamp::from_utc(2023, 13, 1, 0, 0, 0, 0), None);
        assert_eq!(Timestamp::from_utc(2023, 1, 1, 24, 0, 0, 0), None);
        assert_eq!(Timestamp::new(0, 1_000_000_000), None);
    }

    #[test]
    fn ordering_is_chronological() {
        assert!(ts(-1, 999_999_999) < ts(0, 0));
        assert!(ts(5, 1) < ts(5, 2));
        assert_eq!(
            Timestamp::from_unix_nanos(i64::MIN).unix_nanos(),
            i128::from(i64::MIN)
        );
    }
}
