//! `time.Time` as far as sprig's `now` and `date` need it: UTC instants and Go layouts.

use std::fmt;

use funnel_record::go;

/// Writes one layout element.
type Chunk<'f> = dyn Fn(&mut String) + 'f;

/// An instant, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Time {
    /// Seconds since the Unix epoch.
    pub(crate) secs: i64,
    /// Nanoseconds within the second.
    pub(crate) nanos: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl Time {
    /// The current time.
    pub(crate) fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(_) => Self { secs: 0, nanos: 0 },
        }
    }

    /// `time.Unix(secs, nanos)`.
    pub(crate) fn from_unix(secs: i64, nanos: u32) -> Self {
        Self { secs, nanos }
    }

    /// Formats with a Go layout such as `2006-01-02T15:04:05Z07:00`.
    pub(crate) fn format(&self, layout: &str) -> String {
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400);
        let (year, month, day) = go::civil_from_days(days);
        let (hour, min, sec) = (sod / 3600, (sod / 60) % 60, sod % 60);
        let weekday = go::weekday(days) as usize;
        let yday = go::day_of_year(year, month, day);
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        let mut out = String::with_capacity(layout.len() + 8);
        let mut rest = layout;
        while !rest.is_empty() {
            let table: &[(&str, &Chunk<'_>)] = &[
                ("January", &|o| o.push_str(MONTHS[(month - 1) as usize])),
                ("Jan", &|o| o.push_str(&MONTHS[(month - 1) as usize][..3])),
                ("Monday", &|o| o.push_str(DAYS[weekday])),
                ("Mon", &|o| o.push_str(&DAYS[weekday][..3])),
                ("MST", &|o| o.push_str("UTC")),
                ("002", &|o| o.push_str(&format!("{yday:03}"))),
                ("01", &|o| o.push_str(&format!("{month:02}"))),
                ("02", &|o| o.push_str(&format!("{day:02}"))),
                ("03", &|o| o.push_str(&format!("{h12:02}"))),
                ("04", &|o| o.push_str(&format!("{min:02}"))),
                ("05", &|o| o.push_str(&format!("{sec:02}"))),
                ("06", &|o| {
                    o.push_str(&format!("{:02}", year.rem_euclid(100)))
                }),
                ("15", &|o| o.push_str(&format!("{hour:02}"))),
                ("1", &|o| o.push_str(&month.to_string())),
                ("2006", &|o| o.push_str(&format!("{year:04}"))),
                ("2", &|o| o.push_str(&day.to_string())),
                ("_2006", &|o| o.push_str(&format!("_{year:04}"))),
                ("__2", &|o| o.push_str(&format!("{yday:>3}"))),
                ("_2", &|o| o.push_str(&format!("{day:>2}"))),
                ("3", &|o| o.push_str(&h12.to_string())),
                ("4", &|o| o.push_str(&min.to_string())),
                ("5", &|o| o.push_str(&sec.to_string())),
                ("PM", &|o| o.push_str(if hour >= 12 { "PM" } else { "AM" })),
                ("pm", &|o| o.push_str(if hour >= 12 { "pm" } else { "am" })),
                ("-07:00:00", &|o| o.push_str("+00:00:00")),
                ("-070000", &|o| o.push_str("+000000")),
                ("-07:00", &|o| o.push_str("+00:00")),
                ("-0700", &|o| o.push_str("+0000")),
                ("-07", &|o| o.push_str("+00")),
                ("Z07:00:00", &|o| o.push('Z')),
                ("Z070000", &|o| o.push('Z')),
                ("Z07:00", &|o| o.push('Z')),
                ("Z0700", &|o| o.push('Z')),
                ("Z07", &|o| o.push('Z')),
            ];
            if let Some((tok, f)) = table.iter().find(|(t, _)| rest.starts_with(t)) {
                f(&mut out);
                rest = &rest[tok.len()..];
                continue;
            }
            // Fractional seconds: `.000` / `,999` not followed by a digit.
            let b = rest.as_bytes();
            if (b[0] == b'.' || b[0] == b',') && b.len() > 1 && (b[1] == b'0' || b[1] == b'9') {
                let n = 1 + b[1..].iter().take_while(|c| **c == b[1]).count();
                if !b.get(n).is_some_and(u8::is_ascii_digit) {
                    let digits = format!("{:09}", self.nanos);
                    // Go prints at most nine digits, however many the layout repeats.
                    let digits = &digits[..(n - 1).min(9)];
                    if b[1] == b'0' {
                        out.push(b[0] as char);
                        out.push_str(digits);
                    } else {
                        let trimmed = digits.trim_end_matches('0');
                        if !trimmed.is_empty() {
                            out.push(b[0] as char);
                            out.push_str(trimmed);
                        }
                    }
                    rest = &rest[n..];
                    continue;
                }
            }
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

impl From<funnel_record::Timestamp> for Time {
    /// A `time.Time` held in structured data ([`funnel_record::Value::Time`]).
    fn from(t: funnel_record::Timestamp) -> Self {
        Self {
            secs: t.unix_secs(),
            nanos: t.subsec_nanos(),
        }
    }
}

impl From<Time> for funnel_record::Timestamp {
    /// The instant, for structured data (`list now`, `dict "t" now`).
    fn from(t: Time) -> Self {
        // `nanos` is always below one second, so `new` never refuses it.
        funnel_record::Timestamp::new(t.secs, t.nanos.min(999_999_999)).unwrap_or_default()
    }
}

impl fmt::Display for Time {
    /// Go's `Time.String()` (without the monotonic clock reading).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format("2006-01-02 15:04:05.999999999 -0700 MST"))
    }
}
