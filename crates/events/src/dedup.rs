//! Bounded-memory deduplication windows.

use std::collections::VecDeque;

type IdSet = switchyard_core::exposure::HashedSet;

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

    /// Forgets `ids` wherever they are in the window, for writers that
    /// store several batches at once (the JetStream stream): other ids may
    /// have been inserted after them. Cheap when they are among the newest.
    pub fn forget(&mut self, ids: &[u64]) {
        for id in ids {
            if self.set.remove(id)
                && let Some(at) = self.order.iter().rposition(|x| x == id)
            {
                self.order.remove(at);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The remembered ids, oldest first, as 8 little-endian bytes each
    /// (a worker saves its window with its state).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.order.len() * 8);
        for id in &self.order {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// A window of `capacity` holding the ids of [`IdWindow::to_bytes`]
    /// (the newest `capacity` of them; a trailing partial id is ignored).
    pub fn from_bytes(capacity: usize, bytes: &[u8]) -> IdWindow {
        let mut w = IdWindow::new(capacity);
        for c in bytes.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            w.insert(u64::from_le_bytes(b));
        }
        w
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

pub use switchyard_core::exposure::TimeWindow;

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
    fn a_window_round_trips_through_bytes_and_keeps_its_newest_ids() {
        let mut w = IdWindow::new(3);
        for id in [1, 2, 3, 4] {
            assert!(w.insert(id));
        }
        let back = IdWindow::from_bytes(3, &w.to_bytes());
        assert_eq!(back.to_bytes(), w.to_bytes());
        let mut small = IdWindow::from_bytes(2, &w.to_bytes());
        assert!(!small.insert(4));
        assert!(
            small.insert(2),
            "the oldest id fell out of the smaller window"
        );
    }

    #[test]
    fn forgetting_an_id_behind_newer_ones_frees_it_and_keeps_the_others() {
        let mut w = IdWindow::new(10);
        for id in 1..=5 {
            assert!(w.insert(id));
        }
        w.forget(&[2, 4, 99]);
        assert_eq!(w.len(), 3);
        assert!(w.insert(2), "2 was forgotten");
        assert!(w.insert(4), "4 was forgotten");
        for id in [1, 3, 5] {
            assert!(!w.insert(id), "{id} is still remembered");
        }
    }
}
