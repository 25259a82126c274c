//! The incremental statistics equal a from-scratch computation over the
//! same events, whatever order the events arrive in.

mod common;

use common::*;
use proptest::prelude::*;
use switchyard_aggregate::{Aggregator, AnalysisOptions, Limits, checkpoint};
use switchyard_stats::MetricStatistic;

fn event() -> impl Strategy<Value = Ev> {
    let kind = prop_oneof![
        1 => (0u8..2).prop_map(Kind::Expose),
        3 => (prop_oneof![Just("a"), Just("b"), Just("c")], 0u32..100, any::<bool>())
            .prop_map(|(name, v, tag)| Kind::Track { name, value: f64::from(v) / 4.0, tag }),
    ];
    // Minutes over a day: before the start, inside, after the stop.
    (0u8..16, 0i64..(24 * 60), kind).prop_map(|(unit, m, kind)| Ev {
        unit,
        time: m * 60_000,
        kind,
    })
}

fn aggregate(events: &[Ev]) -> Aggregator {
    let mut agg = Aggregator::new(Limits::default(), (7, 11));
    agg.configure(vec![spec()]);
    for (i, e) in events.iter().enumerate() {
        with_event(e, |ev| agg.apply(ev));
        agg.advance(i as u64 + 1);
    }
    agg
}

/// The aggregator's per-variation sums of every metric: its moments, and
/// for the percentile-capped metric the statistic the results give.
fn sums_of(agg: &Aggregator) -> (Vec<u64>, u64, Sums) {
    let r = agg
        .results("p", "prod", "exp", &AnalysisOptions::default())
        .unwrap()
        .unwrap();
    let e = agg.experiment("p", "prod", "exp").unwrap();
    assert_eq!(
        e.metric_keys(),
        vec!["conv", "cnt", "rev", "avg", "rat", "p90"]
    );
    let units = r.variations.iter().map(|v| v.units).collect();
    let mut sums: Sums = (0..5)
        .map(|m| {
            e.totals(m)
                .iter()
                .map(|t| [t.n as f64, t.sum_x, t.sum_xx, t.sum_y, t.sum_yy, t.sum_xy])
                .collect()
        })
        .collect();
    sums.push(
        r.metrics[5]
            .statistics
            .iter()
            .map(|s| match s {
                MetricStatistic::Mean(m) => [m.n as f64, m.sum, m.sum_squares, 0.0, 0.0, 0.0],
                other => panic!("p90 is analysed as a mean, not {other:?}"),
            })
            .collect(),
    );
    (units, r.excluded_units, sums)
}

fn assert_matches_model(agg: &Aggregator, events: &[Ev]) {
    let m = model(events);
    let (units, excluded, sums) = sums_of(agg);
    assert_eq!(units, m.units.to_vec(), "units");
    assert_eq!(excluded, m.excluded, "excluded");
    for (k, (got, want)) in sums.iter().zip(&m.sums).enumerate() {
        for v in 0..2 {
            for i in 0..6 {
                assert!(
                    close(got[v][i], want[v][i]),
                    "metric {k} variation {v} sum {i}: aggregator {} model {}",
                    got[v][i],
                    want[v][i]
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_statistics_equal_a_from_scratch_computation_in_any_order(
        events in prop::collection::vec(event(), 0..160).prop_shuffle()
    ) {
        let agg = aggregate(&events);
        assert_matches_model(&agg, &events);
    }

    #[test]
    fn two_orders_of_the_same_events_give_the_same_statistics(
        (a, b) in prop::collection::vec(event(), 0..120)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        let (ua, xa, sa) = sums_of(&aggregate(&a));
        let (ub, xb, sb) = sums_of(&aggregate(&b));
        prop_assert_eq!(ua, ub);
        prop_assert_eq!(xa, xb);
        for (x, y) in sa.iter().flatten().flatten().zip(sb.iter().flatten().flatten()) {
            prop_assert!(close(*x, *y), "{} vs {}", x, y);
        }
    }

    #[test]
    fn a_state_restored_from_a_checkpoint_continues_exactly_as_an_uninterrupted_run(
        events in prop::collection::vec(event(), 0..120),
        cut in 0usize..120,
    ) {
        let cut = cut.min(events.len());
        let whole = aggregate(&events);
        let mut first = aggregate(&events[..cut]);
        let bytes = checkpoint::encode(&first);
        first = checkpoint::decode(&bytes, Limits::default()).unwrap();
        prop_assert_eq!(first.position().offset, cut as u64);
        for (i, e) in events.iter().enumerate().skip(cut) {
            with_event(e, |ev| first.apply(ev));
            first.advance(i as u64 + 1);
        }
        let opts = AnalysisOptions::default();
        let a = serde_json::to_string(&whole.results("p", "prod", "exp", &opts).unwrap()).unwrap();
        let b = serde_json::to_string(&first.results("p", "prod", "exp", &opts).unwrap()).unwrap();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn a_tracked_event_before_its_exposure_record_is_attributed() {
    let events = vec![
        Ev {
            unit: 1,
            time: 2 * H,
            kind: Kind::Track {
                name: "a",
                value: 1.0,
                tag: true,
            },
        },
        Ev {
            unit: 1,
            time: 2 * H - 60_000,
            kind: Kind::Expose(1),
        },
    ];
    let agg = aggregate(&events);
    let e = agg.experiment("p", "prod", "exp").unwrap();
    assert_eq!(e.totals(0)[1].sum_x, 1.0, "conv");
    assert_eq!(e.totals(1)[1].sum_x, 1.0, "cnt");
    assert_matches_model(&agg, &events);
}

#[test]
fn a_unit_exposed_to_both_variations_is_excluded_and_counted() {
    let events = vec![
        Ev {
            unit: 1,
            time: 2 * H,
            kind: Kind::Expose(0),
        },
        Ev {
            unit: 1,
            time: 2 * H + 5,
            kind: Kind::Track {
                name: "a",
                value: 1.0,
                tag: true,
            },
        },
        Ev {
            unit: 1,
            time: 3 * H,
            kind: Kind::Expose(1),
        },
        Ev {
            unit: 2,
            time: 3 * H,
            kind: Kind::Expose(1),
        },
    ];
    let agg = aggregate(&events);
    let r = agg
        .results("p", "prod", "exp", &AnalysisOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(r.excluded_units, 1);
    assert_eq!(r.variations[0].units, 0);
    assert_eq!(r.variations[1].units, 1);
    let e = agg.experiment("p", "prod", "exp").unwrap();
    assert_eq!(
        e.totals(0)[0].sum_x,
        0.0,
        "the excluded unit's conversion is gone"
    );
}

#[test]
fn events_that_left_the_ring_are_counted_and_warned_about() {
    let mut agg = Aggregator::new(
        Limits {
            ring_capacity: 2,
            ..Limits::default()
        },
        (1, 2),
    );
    agg.configure(vec![spec()]);
    for i in 0..5 {
        let e = Ev {
            unit: i,
            time: 2 * H,
            kind: Kind::Track {
                name: "a",
                value: 1.0,
                tag: true,
            },
        };
        with_event(&e, |ev| agg.apply(ev));
    }
    let e = Ev {
        unit: 0,
        time: 2 * H,
        kind: Kind::Expose(0),
    };
    with_event(&e, |ev| agg.apply(ev));
    let r = agg
        .results("p", "prod", "exp", &AnalysisOptions::default())
        .unwrap()
        .unwrap();
    // Each event of 'a' feeds two sources (with and without the tag
    // condition): ten entries in a ring of two.
    assert_eq!(agg.memory().ring.evicted, 8);
    assert!(r.warnings.iter().any(|w| w.code == "attribution_bounded"));
    // Unit 0's event was evicted before its exposure arrived.
    assert_eq!(
        agg.experiment("p", "prod", "exp").unwrap().totals(0)[0].sum_x,
        0.0
    );
}

#[test]
fn the_unit_limit_drops_new_units_and_says_so() {
    let mut agg = Aggregator::new(
        Limits {
            max_units_per_experiment: 3,
            ..Limits::default()
        },
        (1, 2),
    );
    agg.configure(vec![spec()]);
    for i in 0..5 {
        let e = Ev {
            unit: i,
            time: 2 * H,
            kind: Kind::Expose(0),
        };
        with_event(&e, |ev| agg.apply(ev));
    }
    let r = agg
        .results("p", "prod", "exp", &AnalysisOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(r.variations[0].units, 3);
    assert_eq!(r.dropped_units, 2);
    assert!(r.warnings.iter().any(|w| w.code == "units_truncated"));
}

#[test]
fn a_damaged_checkpoint_is_refused() {
    let agg = aggregate(&[Ev {
        unit: 1,
        time: 2 * H,
        kind: Kind::Expose(0),
    }]);
    let mut bytes = checkpoint::encode(&agg);
    assert!(checkpoint::decode(&bytes, Limits::default()).is_ok());
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(checkpoint::decode(&bytes, Limits::default()).is_err());
    assert!(checkpoint::decode(&bytes[..bytes.len() / 2], Limits::default()).is_err());
    assert!(checkpoint::decode(b"nonsense", Limits::default()).is_err());
}

#[test]
fn a_metric_added_later_starts_empty_and_is_flagged_while_others_keep_their_values() {
    let mut s = spec();
    let added = s.metrics.remove(2);
    let mut agg = Aggregator::new(Limits::default(), (1, 2));
    agg.configure(vec![s.clone()]);
    let e = Ev {
        unit: 1,
        time: 2 * H,
        kind: Kind::Expose(0),
    };
    with_event(&e, |ev| agg.apply(ev));
    let e = Ev {
        unit: 1,
        time: 2 * H + 1,
        kind: Kind::Track {
            name: "a",
            value: 1.0,
            tag: true,
        },
    };
    with_event(&e, |ev| agg.apply(ev));
    agg.advance(2);
    s.metrics.push(added);
    agg.configure(vec![s]);
    let r = agg
        .results("p", "prod", "exp", &AnalysisOptions::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        agg.experiment("p", "prod", "exp").unwrap().totals(0)[0].sum_x,
        1.0
    );
    let rev = r.metrics.iter().find(|m| m.key == "rev").unwrap();
    assert_eq!(rev.since_offset, 2);
    assert_eq!(
        rev.statistics[0],
        switchyard_stats::MetricStatistic::Mean(switchyard_stats::MeanStatistic {
            n: 1,
            sum: 0.0,
            sum_squares: 0.0
        })
    );
    assert!(r.warnings.iter().any(|w| w.code == "metric_incomplete"));
}
