//! Simulated traffic for the demo experiment (`switchyard serve --demo`),
//! so a newcomer sees a live result within seconds of the first start.
//!
//! A task sends, at a bounded rate and up to a bounded total, exposures of
//! simulated units to the demo experiment and, for some of them, a
//! `purchase` event with the order value, through the same ingestion path as
//! `POST /api/v1/events` (validated, durable, deduplicated by id). The true
//! effect is known: units in the second variation purchase more often
//! ([`Simulation::purchase_rates`]); order values are the same in both.
//!
//! Everything it sends is labelled: unit ids and event ids start with
//! `sim-`, tracked events carry the attribute `"simulated": true`, and the
//! results API says `"simulated": true` (with a `simulated_traffic`
//! warning) for the experiment it feeds. It runs only when the binary is
//! started with `--demo`. Ids are deterministic, so a restart repeats
//! ids the log already holds and they are stored once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchyard_events::{BodyFormat, Events};
use tokio::sync::watch;

/// What the simulated traffic source sends, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub project: String,
    pub environment: String,
    pub experiment: String,
    pub flag: String,
    /// The experiment's variations, in order; unit `n` gets `n % len`.
    pub variations: Vec<String>,
    /// Probability that a unit purchases, per variation (the true effect).
    pub purchase_rates: Vec<f64>,
    /// New units per second.
    pub units_per_second: u32,
    /// Units in all; the source stops after them.
    pub max_units: u64,
    /// How often a batch is sent.
    pub tick: Duration,
}

impl Simulation {
    /// The demo project's `checkout-test` in `development`: 10 % of units
    /// purchase with the classic checkout, 14 % with the one-page one; 20
    /// units a second, 20,000 units in all (under 17 minutes).
    pub fn demo() -> Simulation {
        Simulation {
            project: "demo".into(),
            environment: "development".into(),
            experiment: "checkout-test".into(),
            flag: "checkout-flow".into(),
            variations: vec!["classic".into(), "one-page".into()],
            purchase_rates: vec![0.10, 0.14],
            units_per_second: 20,
            max_units: 20_000,
            tick: Duration::from_millis(250),
        }
    }

    /// The results API's warning text for the experiment this feeds.
    pub fn note(&self) -> String {
        let truth: Vec<String> = self
            .variations
            .iter()
            .zip(&self.purchase_rates)
            .map(|(v, r)| format!("{v} {:.0} %", r * 100.0))
            .collect();
        format!(
            "SIMULATED: this server was started with --demo and sends simulated events to this experiment (units and event ids start with sim-, tracked events carry \"simulated\": true); the true purchase rates are {}",
            truth.join(", ")
        )
    }

    /// Whether the results of this experiment include simulated events.
    pub fn feeds(&self, project: &str, environment: &str, experiment: &str) -> bool {
        self.project == project && self.environment == environment && self.experiment == experiment
    }
}

/// A small deterministic generator (SplitMix64): the simulation is the same
/// on every start, which keeps its ids (and so deduplication) stable.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uniform(seed: u64) -> f64 {
    (mix(seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// The events of simulated unit `n`, at time `now_ms`.
pub fn unit_events(sim: &Simulation, n: u64, now_ms: i64) -> Vec<Value> {
    let v = (n % sim.variations.len().max(1) as u64) as usize;
    let Some(variation) = sim.variations.get(v) else {
        return Vec::new();
    };
    let unit = format!("sim-{n}");
    let mut out = vec![json!({
        "id": format!("sim-x-{n}"), "type": "exposure", "unit": unit,
        "experiment": sim.experiment, "flag": sim.flag, "variation": variation,
        "time": now_ms,
    })];
    let rate = sim.purchase_rates.get(v).copied().unwrap_or(0.0);
    if uniform(n.wrapping_mul(2)) < rate {
        // Orders of 20 to 120, the same in both variations.
        let amount = (20.0 + 100.0 * uniform(n.wrapping_mul(2) + 1)).round();
        // The demo's `purchase` (binomial) and `revenue` (sum of value)
        // metrics both read it.
        out.push(json!({
            "id": format!("sim-purchase-{n}"), "type": "track", "unit": unit,
            "name": "purchase", "value": amount, "time": now_ms + 1,
            "attributes": {"simulated": true},
        }));
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sends the simulation's events until `max_units` or `shutdown`.
pub async fn run(sim: Simulation, events: Arc<Events>, mut shutdown: watch::Receiver<bool>) {
    let per_tick = (f64::from(sim.units_per_second) * sim.tick.as_secs_f64())
        .ceil()
        .max(1.0) as u64;
    tracing::info!(
        project = %sim.project,
        environment = %sim.environment,
        experiment = %sim.experiment,
        units_per_second = sim.units_per_second,
        max_units = sim.max_units,
        "demo: sending simulated traffic (unit ids start with sim-, events carry \"simulated\": true)"
    );
    let mut next = 0u64;
    let mut tick = tokio::time::interval(sim.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while next < sim.max_units {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let now = now_ms();
        let end = (next + per_tick).min(sim.max_units);
        let batch: Vec<Value> = (next..end)
            .flat_map(|n| unit_events(&sim, n, now))
            .collect();
        let body = serde_json::to_vec(&batch).unwrap_or_default();
        match events
            .ingest(
                &sim.project,
                &sim.environment,
                &body,
                BodyFormat::Json,
                false,
                now,
            )
            .await
        {
            Ok(_) => next = end,
            // Overloaded or the disk is full: try the same units later.
            Err(e) => tracing::warn!(error = %e, "demo: simulated events not stored; retrying"),
        }
    }
    tracing::info!(units = sim.max_units, "demo: simulated traffic finished");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_purchase_rates_are_the_configured_ones() {
        let sim = Simulation::demo();
        let mut units = [0u64; 2];
        let mut buyers = [0u64; 2];
        for n in 0..40_000 {
            let evs = unit_events(&sim, n, 1_800_000_000_000);
            let v = (n % 2) as usize;
            units[v] += 1;
            if evs.len() > 1 {
                buyers[v] += 1;
                assert_eq!(evs[1]["attributes"]["simulated"], true);
                assert!(evs[1]["unit"].as_str().unwrap().starts_with("sim-"));
            }
        }
        for v in 0..2 {
            let rate = buyers[v] as f64 / units[v] as f64;
            assert!(
                (rate - sim.purchase_rates[v]).abs() < 0.01,
                "{v}: {rate} against {}",
                sim.purchase_rates[v]
            );
        }
    }
}
