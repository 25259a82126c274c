//! Bounded-memory deduplication windows.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

/// The keys are already hashes: use them as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// The last `capacity` distinct event ids (as 64-bit hashes), first in,
/// first out. About 20 bytes per id.
#[derive(Debug)]
pub struct IdWindow {
    set: IdSet,
    order: VecDeque<u64>,
    capacity: usize,
}

impl IdWindow {
    pub fn new(capacity: usize) -> Self {
        IdWindow {
            set: IdSet::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// `true` if `id` is new (and now remembered), `false` for a repeat.
    pub fn insert(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Forgets ids just inserted (newest last in `ids`), as when the write
    /// that carried them failed: a retry must not be taken for a repeat.
    /// Ids evicted to make room for them stay forgotten.
    pub fn undo(&mut self, ids: &[u64]) {
        for id in ids.iter().rev() {
            if self.order.back() == Some(id) {
                self.order.pop_back();
                self.set.remove(id);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Remembers keys for at least `window` (and at most twice that), in two
/// generations; a generation also turns over when it holds `capacity / 2`
/// keys, which bounds memory and may shorten the window under heavy load.
#[derive(Debug)]
pub struct TimeWindow {
    current: IdSet,
    previous: IdSet,
    turned: Instant,
    window: Duration,
    capacity: usize,
}

impl TimeWindow {
    pub fn new(window: Duration, capacity: usize, now: Instant) -> Self {
        TimeWindow {
            current: IdSet::default(),
            previous: IdSet::default(),
            turned: now,
            window,
            capacity: capacity.max(2),
        }
    }

    /// `true` if `key` was not seen within the window (and now is).
    pub fn insert(&mut self, key: u64, now: Instant) -> bool {
        if now.saturating_duration_since(self.turned) >= self.window
            || self.current.len() >= self.capacity / 2
        {
            self.previous = std::mem::take(&mut self.current);
            self.turned = now;
        }
        if self.previous.contains(&key) {
            return false;
        }
        self.current.insert(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_window_forgets_the_oldest_id_beyond_its_capacity() {
        let mut w = IdWindow::new(2);
        assert!(w.insert(1));
        assert!(!w.insert(1));
        assert!(w.insert(2));
        assert!(w.insert(3));
        assert!(w.insert(1), "1 was evicted");
        assert!(!w.insert(3));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn a_time_window_remembers_a_key_for_at_least_its_window() {
        let t0 = Instant::now();
        let win = Duration::from_secs(10);
        let mut w = TimeWindow::new(win, 1000, t0);
        assert!(w.insert(7, t0));
        assert!(!w.insert(7, t0 + Duration::from_secs(9)));
        assert!(!w.insert(7, t0 + Duration::from_secs(11)));
        assert!(w.insert(7, t0 + Duration::from_secs(21)));
    }
}
