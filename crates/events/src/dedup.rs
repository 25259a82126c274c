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
