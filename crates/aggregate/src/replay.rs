//! Replay: recomputing one experiment from the retained stream, beside the
//! live aggregator, then swapping the result in.
//!
//! [`Aggregator::replayer`] makes a second aggregator holding only that
//! experiment (same unit-hash key and limits, empty state, positioned at
//! the stream offset the replay starts from). The caller feeds it the
//! stream's records up to the live aggregator's offset, then, with the
//! live aggregator locked and both at the same offset, calls
//! [`Aggregator::install`]: the experiment's state is replaced by the
//! replayed one, whose event sources are re-interned in the live
//! aggregator, and the replayer's recent events of those sources replace
//! the live ring's (so units first exposed after the swap are attributed
//! events that arrived before a metric existed). Nothing is installed if
//! the experiment's definition changed meanwhile.

use crate::aggregator::Aggregator;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error("the experiment is no longer aggregated")]
    Gone,
    #[error("the experiment's definition changed during the replay; start it again")]
    Changed,
    #[error("the replay stopped at offset {replay}, the live state is at {live}")]
    Behind { replay: u64, live: u64 },
    #[error("a replayed metric does not fit: {0}")]
    Source(String),
}

impl Aggregator {
    /// A fresh aggregator for replaying one experiment from stream offset
    /// `from`: same limits and unit-hash key, only that experiment
    /// (as currently defined) configured. `None` if it is not aggregated.
    pub fn replayer(
        &self,
        project: &str,
        environment: &str,
        key: &str,
        from: u64,
    ) -> Option<Aggregator> {
        let spec = self.experiment(project, environment, key)?.spec.clone();
        let mut r = Aggregator::new(self.limits.clone(), self.hasher.key());
        r.position.offset = from;
        r.configure(vec![spec]);
        Some(r)
    }

    /// Replaces the experiment's state with the replayed one. `replayed`
    /// must be at this aggregator's offset, and the experiment's
    /// definition the same as when the replay began.
    pub fn install(&mut self, replayed: Aggregator) -> Result<(), InstallError> {
        let Aggregator {
            sources,
            mut experiments,
            position,
            ring,
            ..
        } = replayed;
        let Some(mut state) = experiments.pop() else {
            return Err(InstallError::Gone);
        };
        if position.offset != self.position.offset {
            return Err(InstallError::Behind {
                replay: position.offset,
                live: self.position.offset,
            });
        }
        let i = {
            let s = &state.spec;
            let current = self
                .experiment(&s.project, &s.environment, &s.key)
                .ok_or(InstallError::Gone)?;
            if current.spec != state.spec {
                return Err(InstallError::Changed);
            }
            self.experiments
                .iter()
                .position(|e| std::ptr::eq(e, current))
                .ok_or(InstallError::Gone)?
        };
        // The replayer's source ids to this aggregator's.
        let mut remap: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for (id, s) in sources.iter().enumerate() {
            let live = self.intern(&s.def).map_err(InstallError::Source)?;
            remap.insert(id as u32, live);
        }
        let map = |id: u32| {
            remap
                .get(&id)
                .copied()
                .ok_or_else(|| InstallError::Source(format!("unknown source {id}")))
        };
        for m in &mut state.metrics {
            let (num, den) = m.sources;
            m.sources = (map(num)?, den.map(map).transpose()?);
        }
        state.index_sources();
        // The recent-event ring: the replayer's holds every retained event
        // of this experiment's sources (its most recent ones, up to the
        // same capacity); the live one holds those of its sources only
        // since they were defined. Take the replayer's for these sources
        // and the live ones for the others, so a unit first exposed after
        // the swap is attributed its earlier events too.
        let replayed_sources: std::collections::HashSet<u32> = remap.values().copied().collect();
        let mut entries: Vec<(u64, i64, f64, u32)> = self
            .ring
            .live()
            .filter(|e| !replayed_sources.contains(&e.source))
            .map(|e| (e.unit, e.time, e.value, e.source))
            .collect();
        for e in ring.live() {
            entries.push((e.unit, e.time, e.value, map(e.source)?));
        }
        let capacity = self.limits.ring_capacity;
        let skip = entries.len().saturating_sub(capacity);
        self.ring = crate::ring::Ring::restore(
            capacity,
            self.ring.evicted + skip as u64,
            entries.into_iter().skip(skip).collect(),
        );
        self.experiments[i] = state;
        self.reindex();
        Ok(())
    }
}
