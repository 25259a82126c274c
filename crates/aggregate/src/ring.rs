//! The ring of recent tracked events: how an event that arrives before its
//! unit's exposure record is still attributed, in bounded memory.
//!
//! Every tracked event that some experiment's metric reads is kept here,
//! compactly (unit key, event time, value, source: 40 bytes), in a ring of
//! fixed capacity: when it is full the oldest entry is dropped and counted.
//! Entries of one unit are chained (each points at the unit's previous
//! entry), so a unit's retained events are found without a scan. When a
//! unit's first exposure arrives (or an exposure earlier than the one
//! recorded), the experiment replays the unit's retained events against
//! its attribution and CUPED windows.
//!
//! **Bound:** attribution is exact for every event still in the ring when
//! its unit's exposure is processed: with capacity `C` and an event rate
//! `r`, events up to `C / r` older (in arrival) than the exposure record.
//! Older ones are lost to that unit, counted in `evicted`. The CUPED
//! covariate reads pre-exposure events from here, so the same bound limits
//! how far back it sees.

use serde::Serialize;

use crate::hash::UnitMap;

const NONE: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    pub unit: u64,
    pub time: i64,
    pub value: f64,
    /// Sequence number of the unit's previous entry, or `NONE`.
    pub prev: u64,
    pub source: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Ring {
    capacity: usize,
    entries: Vec<Entry>,
    /// Sequence number of the oldest live entry.
    head: u64,
    /// Sequence number the next entry gets.
    next: u64,
    /// The newest entry of each unit (stale ones are pruned lazily).
    last: UnitMap<u64>,
    pub evicted: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RingStats {
    pub capacity: usize,
    pub len: usize,
    pub evicted: u64,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            capacity,
            entries: Vec::new(),
            head: 0,
            next: 0,
            last: UnitMap::default(),
            evicted: 0,
        }
    }

    pub fn stats(&self) -> RingStats {
        RingStats {
            capacity: self.capacity,
            len: (self.next - self.head) as usize,
            evicted: self.evicted,
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.last.capacity() * (std::mem::size_of::<(u64, u64)>() + 1)
    }

    pub fn push(&mut self, unit: u64, time: i64, value: f64, source: u32) {
        if self.capacity == 0 {
            return;
        }
        if (self.next - self.head) as usize == self.capacity {
            self.head += 1;
            self.evicted += 1;
        }
        let prev = match self.last.get(&unit) {
            Some(&s) if s >= self.head => s,
            _ => NONE,
        };
        let e = Entry {
            unit,
            time,
            value,
            prev,
            source,
        };
        let slot = (self.next % self.capacity as u64) as usize;
        if slot == self.entries.len() {
            self.entries.push(e);
        } else {
            self.entries[slot] = e;
        }
        self.last.insert(unit, self.next);
        self.next += 1;
        if self.last.len() > 2 * self.capacity {
            let head = self.head;
            self.last.retain(|_, s| *s >= head);
        }
    }

    /// The unit's retained entries, newest first.
    pub fn of_unit(&self, unit: u64) -> impl Iterator<Item = &Entry> + '_ {
        let mut at = match self.last.get(&unit) {
            Some(&s) if s >= self.head => s,
            _ => NONE,
        };
        std::iter::from_fn(move || {
            if at == NONE || at < self.head {
                return None;
            }
            let e = &self.entries[(at % self.capacity as u64) as usize];
            at = e.prev;
            Some(e)
        })
    }

    /// Live entries, oldest first (for checkpoints).
    pub fn live(&self) -> impl Iterator<Item = &Entry> + '_ {
        (self.head..self.next).map(|s| &self.entries[(s % self.capacity as u64) as usize])
    }

    /// Rebuilds a ring from entries oldest first (checkpoint restore). The
    /// `prev` links are recomputed.
    pub fn restore(capacity: usize, evicted: u64, entries: Vec<(u64, i64, f64, u32)>) -> Ring {
        let mut r = Ring::new(capacity);
        for (unit, time, value, source) in entries {
            r.push(unit, time, value, source);
        }
        r.evicted = evicted;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_ring_drops_its_oldest_entries_and_counts_them() {
        let mut r = Ring::new(3);
        for i in 0..5 {
            r.push(i % 2, i as i64, 0.0, 0);
        }
        assert_eq!(r.evicted, 2);
        let times: Vec<i64> = r.of_unit(0).map(|e| e.time).collect();
        assert_eq!(times, vec![4, 2]);
        let times: Vec<i64> = r.of_unit(1).map(|e| e.time).collect();
        assert_eq!(times, vec![3]);
        assert_eq!(r.live().count(), 3);
    }

    #[test]
    fn a_ring_of_capacity_zero_keeps_nothing() {
        let mut r = Ring::new(0);
        r.push(1, 1, 1.0, 0);
        assert_eq!(r.of_unit(1).count(), 0);
        assert_eq!(r.stats().len, 0);
    }
}
