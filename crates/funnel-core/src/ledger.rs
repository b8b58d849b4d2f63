//! The ack ledger: one slot per source record, released strictly in read order.
//!
//! A slot holds *tokens*: one per (delivered piece, destination) still to be
//! acknowledged. Pieces resolved before any destination (filtered, nacked by a
//! processor) hold none. A slot is terminal when it is registered, not stuck and holds
//! no token; the ledger releases the longest terminal prefix, each slot as an ack or,
//! if any piece of it was nacked, as a nack carrying the first nack in pipeline order.
//!
//! This is where invariants I2 (ordered release) and I3 (nack wins) live; the worker
//! adds the store commit and the DLQ around [`Ledger::pop_released`].

use std::collections::VecDeque;
use std::time::Instant;

use funnel_record::Position;

use crate::dlq::NackedRecord;

/// Orders nacks of one slot: the earliest piece in pipeline order wins, then the lowest
/// branch.
pub(crate) type NackKey = (u64, usize);

#[derive(Debug)]
struct Slot {
    position: Position,
    tokens: u32,
    bytes: u32,
    stuck: bool,
    /// Boxed: nacks are rare, and a slot is moved several times.
    nack: Option<Box<(NackKey, NackedRecord)>>,
}

/// What [`Ledger::register`] needs to know of one source record.
#[derive(Debug)]
pub(crate) struct SlotInit {
    pub(crate) position: Position,
    pub(crate) bytes: u32,
    /// The slot will never become terminal (its processing failed).
    pub(crate) stuck: bool,
}

/// A released slot.
#[derive(Debug)]
pub(crate) struct Released {
    pub(crate) position: Position,
    /// Set when the record goes to the DLQ.
    pub(crate) nack: Option<Box<NackedRecord>>,
}

/// What one call of [`Ledger::pop_released`] released.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReleasedRun {
    /// Key + payload bytes of the released records.
    pub(crate) bytes: usize,
    /// When the oldest of them was read.
    pub(crate) oldest: Instant,
}

/// The per-source ledger.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Origin of `slots[0]`.
    front: u64,
    slots: VecDeque<Slot>,
    /// Per registered read: its first origin and when it was read.
    reads: VecDeque<(u64, Instant)>,
}

impl Ledger {
    /// Registers the slots `base..base + n`, which must follow the last registered.
    /// They hold no token until pieces of them are [delivered](Self::deliver).
    pub(crate) fn register(&mut self, base: u64, read_at: Instant, slots: Vec<SlotInit>) {
        debug_assert_eq!(
            base,
            self.front + self.slots.len() as u64,
            "slots registered out of order"
        );
        if self.slots.is_empty() {
            self.front = base;
        }
        self.reads.push_back((base, read_at));
        self.slots.extend(slots.into_iter().map(|s| Slot {
            position: s.position,
            tokens: 0,
            bytes: s.bytes,
            stuck: s.stuck,
            nack: None,
        }));
    }

    #[inline]
    fn slot(&mut self, origin: u64) -> Option<&mut Slot> {
        let index = origin.checked_sub(self.front)?;
        self.slots.get_mut(usize::try_from(index).ok()?)
    }

    /// The pending slots `origin..origin + len`; `None` unless all are pending.
    #[inline]
    fn slots(&mut self, origin: u64, len: u32) -> Option<impl Iterator<Item = &mut Slot>> {
        let start = usize::try_from(origin.checked_sub(self.front)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > self.slots.len() {
            return None;
        }
        Some(self.slots.range_mut(start..end))
    }

    /// Adds `count` tokens to each slot `origin..origin + len`: pieces of them handed
    /// on, each waiting for a destination. Returns false when a slot is not pending (a
    /// bug).
    #[inline]
    pub(crate) fn deliver(&mut self, origin: u64, len: u32, count: u32) -> bool {
        let Some(slots) = self.slots(origin, len) else {
            return false;
        };
        for slot in slots {
            slot.tokens = slot.tokens.saturating_add(count);
        }
        true
    }

    /// Consumes `count` tokens of each slot `origin..origin + len`. Returns false when a
    /// slot is not pending or holds fewer tokens (a bug: resolved twice or never
    /// registered).
    #[inline]
    pub(crate) fn resolve(&mut self, origin: u64, len: u32, count: u32) -> bool {
        let Some(slots) = self.slots(origin, len) else {
            return false;
        };
        let mut ok = true;
        for slot in slots {
            match slot.tokens.checked_sub(count) {
                Some(left) => slot.tokens = left,
                None => ok = false,
            }
        }
        ok
    }

    /// Records a nack of a piece of slot `origin`; the earliest key wins.
    #[inline]
    pub(crate) fn nack(&mut self, origin: u64, key: NackKey, record: NackedRecord) -> bool {
        match self.slot(origin) {
            Some(slot) => {
                if slot.nack.as_ref().is_none_or(|nack| key < nack.0) {
                    slot.nack = Some(Box::new((key, record)));
                }
                true
            }
            None => false,
        }
    }

    /// Moves the longest prefix of terminal slots, in order, into `out`.
    pub(crate) fn pop_released(&mut self, out: &mut Vec<Released>) -> Option<ReleasedRun> {
        let ready = self
            .slots
            .iter()
            .take_while(|s| s.tokens == 0 && !s.stuck)
            .count();
        if ready == 0 {
            return None;
        }
        let oldest = self.reads.front().map_or_else(Instant::now, |r| r.1);
        self.front += ready as u64;
        let mut bytes = 0;
        out.extend(self.slots.drain(..ready).map(|s| {
            bytes += s.bytes as usize;
            Released {
                position: s.position,
                nack: s.nack.map(|nack| Box::new(nack.1)),
            }
        }));
        // Forget the reads whose records are all released.
        while self.reads.get(1).is_some_and(|r| r.0 <= self.front) {
            self.reads.pop_front();
        }
        if self.slots.is_empty() {
            self.reads.clear();
        }
        Some(ReleasedRun { bytes, oldest })
    }

    /// Origin of the first slot not yet released.
    pub(crate) fn released_through(&self) -> u64 {
        self.front
    }

    /// Number of registered slots not yet released.
    pub(crate) fn pending(&self) -> usize {
        self.slots.len()
    }
}
