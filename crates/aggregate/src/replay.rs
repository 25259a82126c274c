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
//! aggregator. Nothing is installed if the experiment's definition changed
//! meanwhile.

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
        for m in &mut state.metrics {
            let (num, den) = m.sources;
            let def = |id: u32| {
                sources
                    .get(id as usize)
                    .map(|s| s.def.clone())
                    .ok_or_else(|| InstallError::Source(format!("unknown source {id}")))
            };
            let num = self.intern(&def(num)?).map_err(InstallError::Source)?;
            let den = match den {
                Some(d) => Some(self.intern(&def(d)?).map_err(InstallError::Source)?),
                None => None,
            };
            m.sources = (num, den);
        }
        state.index_sources();
        self.experiments[i] = state;
        self.reindex();
        Ok(())
    }
}
