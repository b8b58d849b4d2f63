//! Deterministic random data: a small seeded generator, a word list, number and time
//! formatting.

/// SplitMix64: tiny, fast, and stable across versions, so the same position always
/// yields the same record (a `rand` generator may change its stream between releases).
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed` (the record's position number).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0), without modulo bias worth mentioning.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index into a slice of length `len` (> 0).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        // `len` fits u64 and the result is below it, so both conversions are lossless.
        self.below(len as u64) as usize
    }

    /// A random word.
    pub(crate) fn word(&mut self) -> &'static str {
        WORDS[self.index(WORDS.len())]
    }
}

/// Words for keys and `string` fields.
const WORDS: &[&str] = &[
    "agate", "amber", "anvil", "aspen", "basalt", "birch", "bison", "breeze", "brook", "cedar",
    "chalk", "cinder", "clover", "cobalt", "comet", "copper", "coral", "crane", "dune", "ember",
    "falcon", "fern", "fjord", "flint", "garnet", "glacier", "granite", "harbor", "hazel", "heron",
    "indigo", "iris", "jade", "juniper", "kestrel", "lagoon", "larch", "lichen", "lotus", "lynx",
    "maple", "marble", "meadow", "mesa", "moss", "nickel", "oak", "obsidian", "onyx", "opal",
    "orchid", "osprey", "otter", "pebble", "pine", "plume", "quartz", "quill", "raven", "reef",
    "ridge", "river", "ruby", "sable", "sage", "shale", "slate", "sparrow", "spruce", "summit",
    "thistle", "tide", "topaz", "tundra", "umber", "valley", "velvet", "willow", "wren", "yarrow",
    "zephyr", "zinc",
];

/// Unix nanoseconds as RFC 3339 in UTC with Go's `RFC3339Nano` layout: trailing zeros
/// of the fraction removed, no fraction at all when it is zero.
pub(crate) fn rfc3339_nanos(unix_nanos: i128) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(42);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = SplitMix64::new(42);
        let b: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(SplitMix64::new(43).next_u64(), a[0]);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(7);
        assert!((0..1000).all(|_| r.below(3) < 3));
    }

    #[test]
    fn timestamps_are_written_like_go_rfc3339_nano() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_718_000_000_123_456_789),
            "2024-06-10T06:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_500_000_000),
            "2000-02-29T00:00:00.5Z"
        );
        assert_eq!(rfc3339_nanos(-1_000_000_000), "1969-12-31T23:59:59Z");
    }
}
