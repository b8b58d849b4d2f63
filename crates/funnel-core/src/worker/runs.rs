//! Per-origin counts, run-length encoded over consecutive origins.
//!
//! A tally counts, per source record (origin), the pieces delivered or settled. Without
//! processors that split or filter, a batch is a range of consecutive origins with one
//! piece each: one [`Run`], held inline, instead of one entry per record in a vector
//! allocated per batch.

/// Origins `from..from + len`, each with `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) from: u64,
    pub(super) len: u32,
    pub(super) count: u32,
}

impl Run {
    fn end(&self) -> u64 {
        self.from + u64::from(self.len)
    }
}

/// A sequence of (origin, count), stored as runs; the first run needs no allocation.
#[derive(Debug, Default)]
pub(super) struct Runs {
    first: Option<Run>,
    more: Vec<Run>,
}

impl Runs {
    /// Adds `count` to `origin` if it is the last origin added, else appends it.
    #[inline]
    pub(super) fn push(&mut self, origin: u64, count: u32) {
        let last = match self.more.last_mut() {
            Some(last) => last,
            None => match &mut self.first {
                Some(first) => first,
                None => {
                    self.first = Some(Run {
                        from: origin,
                        len: 1,
                        count,
                    });
                    return;
                }
            },
        };
        if last.len > 0 && origin == last.end() - 1 {
            // The last origin again.
            if last.len == 1 {
                last.count = last.count.saturating_add(count);
                return;
            }
            last.len -= 1;
            let count = last.count.saturating_add(count);
            self.more.push(Run {
                from: origin,
                len: 1,
                count,
            });
        } else if origin == last.end() && count == last.count && last.len < u32::MAX {
            last.len += 1;
        } else {
            self.more.push(Run {
                from: origin,
                len: 1,
                count,
            });
        }
    }

    /// [`push`](Self::push)es each of `origins` with `count`; a stretch of consecutive
    /// origins (a batch no processor split or filtered) costs one comparison each.
    pub(super) fn extend(&mut self, origins: &[u64], count: u32) {
        let mut rest = origins;
        while let Some((&first, tail)) = rest.split_first() {
            self.push(first, count);
            let stretch = tail
                .iter()
                .zip(first + 1..)
                .take_while(|(o, next)| **o == *next)
                .count();
            let last = self.more.last_mut().or(self.first.as_mut());
            match (last, u32::try_from(stretch)) {
                (Some(last), Ok(n))
                    if n > 0
                        && last.end() == first + 1
                        && last.count == count
                        && last.len.checked_add(n).is_some() =>
                {
                    last.len += n;
                    rest = &tail[stretch..];
                }
                _ => rest = tail,
            }
        }
    }

    /// The runs, in the order added.
    pub(super) fn runs(&self) -> impl Iterator<Item = Run> + '_ {
        self.first.iter().chain(&self.more).copied()
    }

    /// (origin, count) pairs, in the order added.
    pub(super) fn per_origin(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.runs()
            .flat_map(|r| (r.from..r.end()).map(move |o| (o, r.count)))
    }
}

impl<const N: usize> PartialEq<[(u64, u32); N]> for Runs {
    fn eq(&self, other: &[(u64, u32); N]) -> bool {
        self.per_origin().eq(other.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs_of(pairs: &[(u64, u32)]) -> Runs {
        let mut runs = Runs::default();
        for &(o, c) in pairs {
            runs.push(o, c);
        }
        runs
    }

    #[test]
    fn consecutive_origins_with_equal_counts_make_one_run() {
        let runs = runs_of(&[(5, 1), (6, 1), (7, 1)]);
        assert_eq!(
            runs.runs().collect::<Vec<_>>(),
            [Run {
                from: 5,
                len: 3,
                count: 1
            }]
        );
        assert_eq!(runs, [(5, 1), (6, 1), (7, 1)]);
    }

    #[test]
    fn the_last_origin_added_again_adds_to_its_count_only() {
        let runs = runs_of(&[(1, 1), (2, 1), (2, 3), (3, 4), (3, 1), (7, 2)]);
        assert_eq!(runs, [(1, 1), (2, 4), (3, 5), (7, 2)]);
        assert_eq!(runs.runs().count(), 4);
    }

    #[test]
    fn a_gap_or_a_different_count_starts_a_new_run() {
        let runs = runs_of(&[(0, 2), (1, 1), (3, 1), (4, 1)]);
        assert_eq!(runs, [(0, 2), (1, 1), (3, 1), (4, 1)]);
        assert_eq!(runs.runs().count(), 3);
    }

    #[test]
    fn extending_by_origins_counts_as_pushing_each() {
        let origins = [3, 4, 5, 5, 6, 9, 10, 10, 11];
        for count in [1, 2] {
            let mut one_by_one = runs_of(&[(1, count), (2, count)]);
            for &o in &origins {
                one_by_one.push(o, count);
            }
            let mut extended = runs_of(&[(1, count), (2, count)]);
            extended.extend(&origins, count);
            assert_eq!(
                extended.runs().collect::<Vec<_>>(),
                one_by_one.runs().collect::<Vec<_>>()
            );
        }
        let mut runs = Runs::default();
        runs.extend(&[7, 8, 9], 1);
        runs.extend(&[10, 11], 1);
        assert_eq!(runs.runs().count(), 1, "consecutive batches make one run");
        assert_eq!(runs, [(7, 1), (8, 1), (9, 1), (10, 1), (11, 1)]);
    }

    #[test]
    fn an_empty_tally_has_no_runs() {
        let runs = Runs::default();
        assert_eq!(runs.runs().count(), 0);
        assert_eq!(runs, []);
    }
}
