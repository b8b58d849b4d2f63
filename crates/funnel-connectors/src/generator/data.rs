//! Deterministic random data: a small seeded generator and a word list.

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
}
