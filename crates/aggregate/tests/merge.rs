//! The union of partition aggregators (`Aggregator::merge`) gives the same
//! results as one aggregator over all the events, when the events are
//! partitioned by unit as a cluster's stream is.

mod common;

use common::*;
use proptest::prelude::*;
use switchyard_aggregate::{Aggregator, AnalysisOptions, Limits, checkpoint};

fn event() -> impl Strategy<Value = Ev> {
    let kind = prop_oneof![
        1 => (0u8..2).prop_map(Kind::Expose),
        3 => (prop_oneof![Just("a"), Just("b"), Just("c")], 0u32..100, any::<bool>())
            .prop_map(|(name, v, tag)| Kind::Track { name, value: f64::from(v) / 4.0, tag }),
    ];
    (0u8..24, 0i64..(24 * 60), kind).prop_map(|(unit, m, kind)| Ev {
        unit,
        time: m * 60_000,
        kind,
    })
}

fn with_breakdown() -> switchyard_aggregate::ExperimentSpec {
    let mut s = spec();
    s.breakdown = Some("tag".into());
    s
}

/// One aggregator over all events, and `k` over the events of the units
/// each partition holds (unit modulo `k`), each key of its own; every
/// partition has read the whole stream (offset `n`).
fn aggregate(
    events: &[Ev],
    k: u8,
    spec: &switchyard_aggregate::ExperimentSpec,
) -> (Aggregator, Aggregator) {
    let mut whole = Aggregator::new(Limits::default(), (7, 11));
    whole.configure(vec![spec.clone()]);
    let mut parts: Vec<Aggregator> = (0..k)
        .map(|i| {
            let mut a = Aggregator::new(Limits::default(), (u64::from(i), 3));
            a.configure(vec![spec.clone()]);
            a
        })
        .collect();
    for (i, e) in events.iter().enumerate() {
        with_event(e, |ev| whole.apply(ev));
        whole.advance(i as u64 + 1);
        let p = &mut parts[usize::from(e.unit % k)];
        with_event(e, |ev| p.apply(ev));
    }
    for p in &mut parts {
        p.advance(events.len() as u64);
    }
    // A partition's state goes through its checkpoint, as a worker's does.
    let parts = parts
        .iter()
        .map(|p| checkpoint::decode(&checkpoint::encode(p), Limits::default()).unwrap())
        .collect();
    (whole, Aggregator::merge(parts))
}

fn results(a: &Aggregator) -> String {
    serde_json::to_string_pretty(
        &a.results("p", "prod", "exp", &AnalysisOptions::default())
            .unwrap(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn merged_partitions_give_the_results_of_one_aggregator(
        events in prop::collection::vec(event(), 0..200).prop_shuffle(),
        k in 1u8..5,
        breakdown in any::<bool>(),
    ) {
        let s = if breakdown { with_breakdown() } else { spec() };
        let (whole, merged) = aggregate(&events, k, &s);
        prop_assert_eq!(results(&whole), results(&merged));
        prop_assert_eq!(whole.position(), merged.position());
    }
}

/// `n` units exposed alternately to each variation, and one aggregator of
/// them.
fn exposed(n: u8) -> (Vec<Ev>, Aggregator) {
    let events: Vec<Ev> = (0..n)
        .map(|u| Ev {
            unit: u,
            time: 2 * H,
            kind: Kind::Expose(u % 2),
        })
        .collect();
    let whole = aggregate(&events, 1, &spec()).0;
    (events, whole)
}

#[test]
fn an_experiment_only_some_partitions_saw_is_merged_from_those() {
    let (_, whole) = exposed(6);
    // Partition 0 has the experiment, partition 1 has no experiments at all.
    let mut empty = Aggregator::new(Limits::default(), (1, 1));
    empty.advance(6);
    let merged = Aggregator::merge(vec![
        empty,
        checkpoint::decode(&checkpoint::encode(&whole), Limits::default()).unwrap(),
    ]);
    assert_eq!(results(&whole), results(&merged));
}

#[test]
fn a_partition_on_an_older_definition_is_left_out_and_counted() {
    let (events, whole) = exposed(4);
    let mut old = spec();
    old.variations.push("third".into());
    let mut stale = Aggregator::new(Limits::default(), (1, 1));
    stale.configure(vec![old]);
    with_event(&events[0], |ev| stale.apply(ev));
    stale.advance(4);
    let skipped = whole.counters().skipped_definitions;
    let merged = Aggregator::merge(vec![
        checkpoint::decode(&checkpoint::encode(&whole), Limits::default()).unwrap(),
        stale,
    ]);
    assert_eq!(merged.counters().skipped_definitions, skipped + 1);
    let r = merged
        .results("p", "prod", "exp", &AnalysisOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(r.variations.iter().map(|v| v.units).sum::<u64>(), 4);
}
