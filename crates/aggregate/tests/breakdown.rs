//! Breakdown by an exposure attribute: each segment's statistics equal an
//! aggregator's fed only that segment's units; values beyond the bound
//! share "other"; memory does not grow with units; checkpoints keep it; a
//! breakdown configured late says so and a replay completes it.

use switchyard_aggregate::breakdown::{MAX_VALUES, NONE_VALUE, TOP_VALUES};
use switchyard_aggregate::{
    Aggregator, AnalysisOptions, Event, ExperimentResults, ExperimentSpec, Limits, SpecMetric,
    checkpoint,
};

const H: i64 = 3_600_000;

fn spec(breakdown: Option<&str>) -> ExperimentSpec {
    let metrics = serde_json::json!([
        {"key": "buy", "kind": "binomial", "numerator": {"event": "buy"}},
        {"key": "rev", "kind": "sum", "numerator": {"event": "buy"}, "cap": {"fixed": 30.0}},
        {"key": "p90", "kind": "sum", "numerator": {"event": "buy"}, "cap": {"percentile": 0.9}}
    ]);
    ExperimentSpec {
        project: "p".into(),
        environment: "prod".into(),
        key: "exp".into(),
        flag: "f".into(),
        phase: 0,
        variations: vec!["a".into(), "b".into()],
        start_ms: 0,
        stop_ms: None,
        metrics: serde_json::from_value::<Vec<serde_json::Value>>(metrics)
            .unwrap()
            .into_iter()
            .map(|j| SpecMetric {
                definition: serde_json::from_value(j).unwrap(),
                role: Default::default(),
            })
            .collect(),
        breakdown: breakdown.map(str::to_string),
    }
}

/// Unit `u`: its country (or none), an exposure, maybe a second later
/// exposure with another country (the first one counts), purchases.
struct Unit {
    name: String,
    country: Option<String>,
    events: Vec<(i64, Option<String>, Option<f64>)>,
}

fn units(n: usize, countries: usize) -> Vec<Unit> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|u| {
            let r = next();
            let country =
                (!r.is_multiple_of(10)).then(|| format!("c{}", (r >> 8) as usize % countries));
            let t = H + u as i64 * 1000;
            let attrs = |c: &Option<String>| {
                Some(match c {
                    Some(c) => format!(r#"{{"country":"{c}","plan":"x"}}"#),
                    None => r#"{"plan":"x"}"#.to_string(),
                })
            };
            let mut events = vec![(t, attrs(&country), None)];
            if r.is_multiple_of(7) {
                events.push((t + 10, attrs(&Some("zz-later".into())), None));
            }
            for k in 0..(r >> 20) % 3 {
                events.push((t + 20 + k as i64, None, Some(((r >> 30) % 50) as f64)));
            }
            Unit {
                name: format!("user-{u}"),
                country,
                events,
            }
        })
        .collect()
}

fn feed(agg: &mut Aggregator, units: &[Unit], offset: &mut u64) {
    for (i, u) in units.iter().enumerate() {
        let variation = if i.is_multiple_of(2) { "a" } else { "b" };
        for (t, attrs, value) in &u.events {
            let ev = match value {
                None => Event::Exposure {
                    project: "p",
                    environment: "prod",
                    unit: &u.name,
                    time_ms: *t,
                    experiment: Some("exp"),
                    flag: None,
                    variation,
                    attributes: attrs.as_deref(),
                },
                Some(v) => Event::Track {
                    project: "p",
                    environment: "prod",
                    unit: &u.name,
                    time_ms: *t,
                    name: "buy",
                    value: Some(*v),
                    attributes: None,
                },
            };
            agg.apply(&ev);
            *offset += 1;
            agg.advance(*offset);
        }
    }
}

fn results(agg: &Aggregator) -> ExperimentResults {
    agg.results(
        "p",
        "prod",
        "exp",
        &AnalysisOptions {
            max_points: 0,
            ..AnalysisOptions::default()
        },
    )
    .unwrap()
    .unwrap()
}

fn json<T: serde::Serialize>(t: &T) -> serde_json::Value {
    serde_json::to_value(t).unwrap()
}

#[test]
fn each_segment_equals_an_aggregator_fed_only_its_units() {
    let all = units(3_000, 8);
    let mut agg = Aggregator::new(Limits::default(), (1, 2));
    agg.configure(vec![spec(Some("country"))]);
    feed(&mut agg, &all, &mut 0);
    let r = results(&agg);
    let b = r.breakdown.as_ref().unwrap();
    assert_eq!(b.attribute, "country");
    assert_eq!(
        b.metrics,
        vec!["buy", "rev"],
        "percentile caps are left out"
    );
    assert_eq!(b.unassigned_units, 0);
    // 8 countries, the units without one, and the later exposures' value
    // never counts (the first exposure's does).
    assert_eq!(b.distinct_values, 9);
    assert!(b.segments.iter().all(|s| s.value != "zz-later" && !s.other));
    let total: u64 = r.variations.iter().map(|v| v.units).sum();
    let summed: u64 = b.segments.iter().flat_map(|s| &s.units).sum();
    assert_eq!(summed, total);
    for s in &b.segments {
        let only: Vec<Unit> = units(3_000, 8)
            .into_iter()
            .enumerate()
            // Keep the variation each unit had (by its index).
            .filter(|(_, u)| u.country.as_deref().unwrap_or(NONE_VALUE) == s.value)
            .map(|(i, mut u)| {
                u.name = format!("user-{i}");
                u
            })
            .collect();
        // Feed them in the same order with the same variations.
        let mut one = Aggregator::new(Limits::default(), (1, 2));
        one.configure(vec![spec(None)]);
        let mut off = 0;
        for u in &only {
            let i: usize = u.name[5..].parse().unwrap();
            let variation = if i.is_multiple_of(2) { "a" } else { "b" };
            for (t, attrs, value) in &u.events {
                match value {
                    None => one.apply(&Event::Exposure {
                        project: "p",
                        environment: "prod",
                        unit: &u.name,
                        time_ms: *t,
                        experiment: Some("exp"),
                        flag: None,
                        variation,
                        attributes: attrs.as_deref(),
                    }),
                    Some(v) => one.apply(&Event::Track {
                        project: "p",
                        environment: "prod",
                        unit: &u.name,
                        time_ms: *t,
                        name: "buy",
                        value: Some(*v),
                        attributes: None,
                    }),
                }
                off += 1;
                one.advance(off);
            }
        }
        let want = results(&one);
        assert_eq!(
            s.units,
            want.variations.iter().map(|v| v.units).collect::<Vec<_>>(),
            "{}",
            s.value
        );
        for (k, stats) in s.statistics.iter().enumerate() {
            assert_eq!(
                json(stats),
                json(&want.metrics[k].statistics),
                "{}",
                s.value
            );
        }
        assert_eq!(
            json(&s.analysis.metrics[0]),
            json(&want.analysis.metrics[0]),
            "{}",
            s.value
        );
    }
}

#[test]
fn values_beyond_the_bound_are_other_and_memory_does_not_grow_with_units() {
    let many = units(20_000, 150);
    let mut with = Aggregator::new(Limits::default(), (1, 2));
    with.configure(vec![spec(Some("country"))]);
    feed(&mut with, &many, &mut 0);
    let mut without = Aggregator::new(Limits::default(), (1, 2));
    without.configure(vec![spec(None)]);
    feed(&mut without, &many, &mut 0);

    let r = results(&with);
    let b = r.breakdown.as_ref().unwrap();
    assert_eq!(b.distinct_values, MAX_VALUES);
    assert_eq!(b.segments.len(), TOP_VALUES + 1);
    let other = b.segments.last().unwrap();
    assert!(other.other && other.value == "other");
    let total: u64 = r.variations.iter().map(|v| v.units).sum();
    let summed: u64 = b.segments.iter().flat_map(|s| &s.units).sum();
    assert_eq!(summed, total);
    // Ranked by units.
    let sizes: Vec<u64> = b.segments[..TOP_VALUES]
        .iter()
        .map(|s| s.units.iter().sum())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    // The breakdown costs its segments, not its units: at most 101
    // segments of 2 variations x 3 metrics.
    let extra = with.memory().experiment_bytes as i64 - without.memory().experiment_bytes as i64;
    assert!((0..100_000).contains(&extra), "{extra} bytes");
    // Without asking, there is none in the results.
    let plain = with
        .results(
            "p",
            "prod",
            "exp",
            &AnalysisOptions {
                breakdown: false,
                ..AnalysisOptions::default()
            },
        )
        .unwrap()
        .unwrap();
    assert!(plain.breakdown.is_none());
    assert!(json(&plain).get("breakdown").is_none());
}

#[test]
fn a_checkpoint_keeps_the_breakdown() {
    let all = units(2_000, 30);
    let mut agg = Aggregator::new(Limits::default(), (1, 2));
    agg.configure(vec![spec(Some("country"))]);
    let mut off = 0;
    feed(&mut agg, &all[..1_000], &mut off);
    let mut restored = checkpoint::decode(&checkpoint::encode(&agg), Limits::default()).unwrap();
    feed(&mut agg, &all[1_000..], &mut off.clone());
    feed(&mut restored, &all[1_000..], &mut off);
    assert_eq!(
        json(&results(&agg).breakdown),
        json(&results(&restored).breakdown)
    );
}

#[test]
fn a_breakdown_configured_late_says_so_and_a_replay_completes_it() {
    let all = units(1_000, 5);
    let mut agg = Aggregator::new(Limits::default(), (1, 2));
    agg.configure(vec![spec(None)]);
    let mut off = 0;
    feed(&mut agg, &all[..400], &mut off);
    agg.configure(vec![spec(Some("country"))]);
    feed(&mut agg, &all[400..], &mut off);
    let r = results(&agg);
    let b = r.breakdown.as_ref().unwrap();
    assert_eq!(b.unassigned_units, 400);
    assert!(r.warnings.iter().any(|w| w.code == "breakdown_incomplete"));
    let summed: u64 = b.segments.iter().flat_map(|s| &s.units).sum();
    assert_eq!(summed, 600);

    let mut replay = agg.replayer("p", "prod", "exp", 0).unwrap();
    feed(&mut replay, &all, &mut 0);
    agg.install(replay).unwrap();
    let r = results(&agg);
    let b = r.breakdown.as_ref().unwrap();
    assert_eq!(b.unassigned_units, 0);
    assert!(!r.warnings.iter().any(|w| w.code == "breakdown_incomplete"));
    let summed: u64 = b.segments.iter().flat_map(|s| &s.units).sum();
    assert_eq!(summed, 1_000);
}
