//! Replay: metrics added after events arrived get, once the experiment is
//! replayed, the numbers they would have had from the start.

mod common;

use common::*;
use proptest::prelude::*;
use switchyard_aggregate::{
    Aggregator, AnalysisOptions, ExperimentResults, ExperimentSpec, InstallError, Limits,
};

fn event() -> impl Strategy<Value = Ev> {
    let kind = prop_oneof![
        1 => (0u8..2).prop_map(Kind::Expose),
        3 => (prop_oneof![Just("a"), Just("b"), Just("c")], 0u32..100, any::<bool>())
            .prop_map(|(name, v, tag)| Kind::Track { name, value: f64::from(v) / 4.0, tag }),
    ];
    (0u8..16, 0i64..(24 * 60), kind).prop_map(|(unit, m, kind)| Ev {
        unit,
        time: m * 60_000,
        kind,
    })
}

/// The experiment with only its first `n` metrics.
fn spec_with(n: usize) -> ExperimentSpec {
    let mut s = spec();
    s.metrics.truncate(n);
    s
}

fn feed(agg: &mut Aggregator, events: &[Ev], first_offset: usize) {
    for (i, e) in events.iter().enumerate() {
        with_event(e, |ev| agg.apply(ev));
        agg.advance((first_offset + i + 1) as u64);
    }
}

fn results(agg: &Aggregator) -> ExperimentResults {
    agg.results("p", "prod", "exp", &AnalysisOptions::default())
        .unwrap()
        .unwrap()
}

/// Replays `events[..upto]` (the whole stream so far) into a replayer of
/// `live` and installs it.
fn replay(live: &mut Aggregator, events: &[Ev], upto: usize) {
    let mut r = live.replayer("p", "prod", "exp", 0).unwrap();
    feed(&mut r, &events[..upto], 0);
    live.install(r).unwrap();
}

fn assert_same(a: &ExperimentResults, b: &ExperimentResults) {
    assert_eq!(a.variations, b.variations);
    assert_eq!(a.excluded_units, b.excluded_units);
    assert_eq!(a.metrics.len(), b.metrics.len());
    for (x, y) in a.metrics.iter().zip(&b.metrics) {
        assert_eq!(x.key, y.key);
        assert_eq!(x.shape, y.shape, "{}", x.key);
        let (x, y) = (
            serde_json::to_value(&x.statistics).unwrap(),
            serde_json::to_value(&y.statistics).unwrap(),
        );
        assert_eq!(x, y);
    }
    assert_eq!(a.series.len(), b.series.len());
    assert!(
        !a.warnings.iter().any(|w| w.code == "metric_incomplete"),
        "{:?}",
        a.warnings
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Events arrive with 2 of the 6 metrics defined; the rest are added
    /// at `added`; the experiment is replayed at `replayed` (the live
    /// aggregator keeps receiving events meanwhile), then the remaining
    /// events arrive, among them first exposures of units whose events
    /// of the new metrics came before the metrics existed. The results
    /// equal those of an aggregator that had all 6 metrics from the start.
    #[test]
    fn a_metric_added_after_its_events_arrived_gets_the_same_numbers_after_replay(
        events in prop::collection::vec(event(), 1..200),
        added in 0.0f64..1.0,
        replayed in 0.0f64..1.0,
    ) {
        let added = (added * events.len() as f64) as usize;
        let replayed = added + (replayed * (events.len() - added) as f64) as usize;
        let mut live = Aggregator::new(Limits::default(), (7, 11));
        live.configure(vec![spec_with(2)]);
        feed(&mut live, &events[..added], 0);
        live.configure(vec![spec()]);
        feed(&mut live, &events[added..replayed], added);
        replay(&mut live, &events, replayed);
        feed(&mut live, &events[replayed..], replayed);

        let mut fresh = Aggregator::new(Limits::default(), (1, 2));
        fresh.configure(vec![spec()]);
        feed(&mut fresh, &events, 0);
        assert_same(&results(&live), &results(&fresh));
    }
}

#[test]
fn without_replay_a_metric_added_later_misses_its_earlier_events() {
    // The other side of the property: the test can tell the difference.
    let events: Vec<Ev> = (0..8u8)
        .flat_map(|u| {
            [
                Ev {
                    unit: u,
                    time: 2 * H,
                    kind: Kind::Expose(u % 2),
                },
                Ev {
                    unit: u,
                    time: 2 * H + 60_000,
                    kind: Kind::Track {
                        name: "b",
                        value: 4.0,
                        tag: true,
                    },
                },
            ]
        })
        .collect();
    let mut live = Aggregator::new(Limits::default(), (7, 11));
    live.configure(vec![spec_with(2)]);
    feed(&mut live, &events, 0);
    live.configure(vec![spec()]);
    let before = results(&live);
    assert!(
        before
            .warnings
            .iter()
            .any(|w| w.code == "metric_incomplete")
    );
    let rev = |r: &ExperimentResults| serde_json::to_value(&r.metrics[2].statistics).unwrap();
    let mut fresh = Aggregator::new(Limits::default(), (1, 2));
    fresh.configure(vec![spec()]);
    feed(&mut fresh, &events, 0);
    assert_ne!(rev(&before), rev(&results(&fresh)));
    replay(&mut live, &events, events.len());
    assert_same(&results(&live), &results(&fresh));
}

#[test]
fn a_replay_is_not_installed_when_behind_or_when_the_experiment_changed() {
    let events: Vec<Ev> = (0..4u8)
        .map(|u| Ev {
            unit: u,
            time: 2 * H,
            kind: Kind::Expose(u % 2),
        })
        .collect();
    let mut live = Aggregator::new(Limits::default(), (7, 11));
    live.configure(vec![spec()]);
    feed(&mut live, &events, 0);

    let mut r = live.replayer("p", "prod", "exp", 0).unwrap();
    feed(&mut r, &events[..2], 0);
    assert_eq!(
        live.install(r),
        Err(InstallError::Behind { replay: 2, live: 4 })
    );

    let mut r = live.replayer("p", "prod", "exp", 0).unwrap();
    feed(&mut r, &events, 0);
    live.configure(vec![spec_with(3)]);
    assert_eq!(live.install(r), Err(InstallError::Changed));
    assert!(live.replayer("p", "prod", "nope", 0).is_none());
}
