//! Streaming aggregation: exposures and tracked events in, per-variation
//! sufficient statistics out, kept incrementally and checkpointed.
//!
//! # Layout
//! - `aggregator.rs`: [`Aggregator`], which routes each [`Event`] to the
//!   experiments and metrics that read it; [`Aggregator::configure`] sets
//!   the experiments ([`ExperimentSpec`]) and keeps what is unchanged.
//! - `experiment.rs`: [`ExperimentState`]: units by hash with their first
//!   exposure, per-unit metric values, per-hour per-variation [`Moments`].
//! - `breakdown.rs`: per-segment moments by one exposure attribute (top
//!   values plus "other", bounded).
//! - `ring.rs`: the bounded ring of recent tracked events, from which a
//!   unit's events are attributed when its exposure arrives after them.
//! - `results.rs`: from the state to the statistics engine's output, SRM,
//!   freshness, warnings and the cumulative series.
//! - `replay.rs`: a second aggregator that recomputes one experiment from
//!   the retained stream ([`Aggregator::replayer`]) and the swap of its
//!   state into the live one ([`Aggregator::install`]).
//! - `checkpoint.rs`: the state as bytes (and back), and the atomic file
//!   write (temp file, fsync, rename, fsync of the directory).
//! - `hash.rs`: the keyed 64-bit unit hash and its collision bound.
//! - `merge.rs`: [`Aggregator::merge`], the union of the aggregators of a
//!   stream partitioned by unit (a cluster's workers), for results.
//! - `guardrail.rs`: which results call for an alert (a harmed guardrail
//!   metric under a sequential test, a sample ratio mismatch).
//!
//! # Invariants
//! - No clock, no randomness, no async runtime; the only I/O is
//!   [`checkpoint::write_file`]/[`checkpoint::read_file`], outside the state
//!   machine. Event time is what attributes events.
//! - The per-variation moments equal, up to floating-point rounding, the
//!   sums computed from scratch over the per-unit values of the included
//!   units, whatever the order of the events (property-tested), as long
//!   as the ring still holds a unit's events when its exposure arrives.
//! - Memory is bounded by [`Limits`]; what a limit turns away is counted
//!   and reported with the results.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod aggregator;
pub mod breakdown;
pub mod checkpoint;
mod experiment;
pub mod guardrail;
pub mod hash;
mod merge;
mod moments;
mod replay;
mod results;
mod ring;
mod spec;

pub use aggregator::{Aggregator, Counters, Event, MemoryReport, Position};
pub use experiment::{ExperimentCounters, ExperimentState, HOUR_MS};
pub use moments::{Moments, Shape};
pub use replay::InstallError;
pub use results::{
    AnalysisOptions, BreakdownResults, BreakdownSegment, ExperimentResults, Freshness,
    MetricDetail, ResultsError, SeriesEffect, SeriesMetric, SeriesPoint, VariationSummary, Warning,
    percentile, results_of,
};
pub use ring::RingStats;
pub use spec::{ExperimentSpec, Limits, SpecMetric};
