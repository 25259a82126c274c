//! Aggregation throughput on one core, and the results request of a large
//! experiment.
//!
//! The throughput group feeds 200,000 events over 40,000 units, the same
//! mix as the ingestion benchmark (`crates/loadgen/src/bin/events.rs`):
//! 20 % exposures, 80 % tracked events carrying two attributes, to an
//! aggregator holding two experiments with 10 metrics each (every kind:
//! binomial, count, sum, mean, ratio; one metric filters on an attribute,
//! so its events' attributes are parsed; one event name no metric reads).
//! - `decode`: decoding the log records (`switchyard_events::decode_event`),
//!   the baseline the consumer pays anyway;
//! - `apply`: `Aggregator::apply` on pre-decoded events;
//! - `decode_apply`: both, what the consumer does per record.
//!
//! `results_10m_units_10_metrics` times one results computation over 10
//! million exposed units and 10 metrics, exposed over 7 days (168 hourly
//! points in the series). Set `AGG_BENCH_UNITS` to change the size.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchyard_aggregate::{
    Aggregator, AnalysisOptions, Event, ExperimentSpec, Limits, SpecMetric,
};

const H: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z: stored events must be dated after 2000.
const T0: i64 = 1_767_225_600_000;

fn metric(j: serde_json::Value) -> SpecMetric {
    SpecMetric {
        definition: serde_json::from_value(j).unwrap(),
        role: Default::default(),
    }
}

/// `metrics` metrics over the events `e0`..`e4`, cycling through every
/// kind; metric 5 counts only events with `plan = "pro"`.
fn spec(key: &str, metrics: usize) -> ExperimentSpec {
    let kinds = ["binomial", "count", "sum", "mean", "ratio"];
    let metrics = (0..metrics)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            let mut j = serde_json::json!({
                "key": format!("m{i}"),
                "kind": kind,
                "numerator": {"event": format!("e{}", i % 5)},
            });
            if kind == "ratio" {
                j["numerator"]["aggregate"] = "sum".into();
                j["denominator"] = serde_json::json!({"event": format!("e{}", (i + 1) % 5)});
            }
            if i == 5 {
                j["numerator"]["conditions"] =
                    serde_json::json!([{"attribute": "plan", "op": "equals", "value": "pro"}]);
            }
            metric(j)
        })
        .collect();
    ExperimentSpec {
        project: "p".into(),
        environment: "prod".into(),
        key: key.into(),
        flag: format!("flag-{key}"),
        phase: 0,
        variations: vec!["control".into(), "treatment".into()],
        start_ms: 0,
        stop_ms: None,
        metrics,
        breakdown: None,
    }
}

const ATTRIBUTES: [&str; 2] = [
    r#"{"plan":"pro","country":"DE"}"#,
    r#"{"plan":"free","country":"FR"}"#,
];

struct Owned {
    unit: String,
    time: i64,
    /// `None`: an exposure.
    name: Option<&'static str>,
    experiment: &'static str,
    variation: &'static str,
    attributes: &'static str,
}

fn events(n: usize, units: usize) -> Vec<Owned> {
    let names = ["e0", "e1", "e2", "e3", "e4", "other"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x % units as u64) as usize;
            Owned {
                unit: format!("user-{u:08}"),
                time: T0 + (i as i64) * 10,
                name: (!i.is_multiple_of(5)).then(|| names[(x >> 20) as usize % names.len()]),
                experiment: if u.is_multiple_of(3) { "exp2" } else { "exp" },
                variation: if u.is_multiple_of(2) {
                    "control"
                } else {
                    "treatment"
                },
                attributes: ATTRIBUTES[(x >> 40) as usize % 2],
            }
        })
        .collect()
}

fn view(o: &Owned) -> Event<'_> {
    match o.name {
        None => Event::Exposure {
            project: "p",
            environment: "prod",
            unit: &o.unit,
            time_ms: o.time,
            experiment: Some(o.experiment),
            flag: None,
            variation: o.variation,
            attributes: None,
        },
        Some(name) => Event::Track {
            project: "p",
            environment: "prod",
            unit: &o.unit,
            time_ms: o.time,
            name,
            value: Some(1.5),
            attributes: Some(o.attributes),
        },
    }
}

/// What the consumer does with a stored event (server/src/aggregation.rs).
fn stored<'a>(e: &'a switchyard_events::StoredEvent<'a>) -> Event<'a> {
    if e.kind == "track" {
        Event::Track {
            project: e.project,
            environment: e.environment,
            unit: e.unit,
            time_ms: e.time,
            name: e.name.unwrap_or(""),
            value: e.value,
            attributes: e.attributes.map(|a| a.get()),
        }
    } else {
        Event::Exposure {
            project: e.project,
            environment: e.environment,
            unit: e.unit,
            time_ms: e.time,
            experiment: e.experiment,
            flag: e.flag,
            variation: e.variation.unwrap_or(""),
            attributes: e.attributes.map(|a| a.get()),
        }
    }
}

fn fresh() -> Aggregator {
    let mut a = Aggregator::new(Limits::default(), (1, 2));
    a.configure(vec![spec("exp", 10), spec("exp2", 10)]);
    a
}

fn encode(evs: &[Owned]) -> Vec<Vec<u8>> {
    use switchyard_events::record::EncodedBatch;
    let body: Vec<serde_json::Value> = evs
        .iter()
        .map(|o| match o.name {
            None => serde_json::json!({"type":"exposure","unit":o.unit,"experiment":o.experiment,"variation":o.variation,"time":o.time}),
            Some(n) => serde_json::json!({"type":"track","unit":o.unit,"name":n,"value":1.5,"time":o.time,
                "attributes": serde_json::from_str::<serde_json::Value>(o.attributes).unwrap()}),
        })
        .collect();
    let limits = switchyard_events::Limits::default();
    let mut batch = EncodedBatch::default();
    for chunk in body.chunks(5_000) {
        let text = serde_json::to_string(chunk).unwrap();
        let raw = switchyard_events::schema::parse_json(text.as_bytes(), &limits).unwrap();
        for r in &raw {
            let ev = r.validate(&limits, T0 + 10 * evs.len() as i64).unwrap();
            batch.push_event("p", "prod", &ev);
        }
    }
    switchyard_events::stream::split_batch(&batch)
        .unwrap()
        .into_iter()
        .map(|r| r[switchyard_events::record::HEADER..].to_vec())
        .collect()
}

fn throughput(c: &mut Criterion) {
    let evs = events(200_000, 40_000);
    let records = encode(&evs);
    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    g.bench_function("decode", |b| {
        b.iter(|| {
            for r in &records {
                black_box(switchyard_events::decode_event(r));
            }
        })
    });
    g.bench_function("apply", |b| {
        b.iter_batched(
            fresh,
            |mut a| {
                for o in &evs {
                    a.apply(&view(o));
                }
                a
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("decode_apply", |b| {
        b.iter_batched(
            fresh,
            |mut a| {
                for r in &records {
                    if let Some(e) = switchyard_events::decode_event(r) {
                        a.apply(&stored(&e));
                    }
                }
                a
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn results(c: &mut Criterion) {
    let units: usize = std::env::var("AGG_BENCH_UNITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let mut a = Aggregator::new(
        Limits {
            ring_capacity: 0,
            ..Limits::default()
        },
        (1, 2),
    );
    a.configure(vec![spec("exp", 10)]);
    let mut name = String::new();
    for u in 0..units {
        name.clear();
        use std::fmt::Write;
        let _ = write!(name, "user-{u:08}");
        let t = H + (u as i64 * 7 * 24 * H) / units as i64;
        a.apply(&Event::Exposure {
            project: "p",
            environment: "prod",
            unit: &name,
            time_ms: t,
            experiment: Some("exp"),
            flag: None,
            variation: if u.is_multiple_of(2) {
                "control"
            } else {
                "treatment"
            },
            attributes: None,
        });
        // Some units convert on a few of the events, one before its
        // exposure (a CUPED covariate for the metrics that have one).
        for (k, (event, dt)) in [("e1", 1), ("e0", 5), ("e2", -10), ("e3", 7), ("e4", 9)]
            .into_iter()
            .enumerate()
        {
            if u.is_multiple_of(k + 2) {
                a.apply(&Event::Track {
                    project: "p",
                    environment: "prod",
                    unit: &name,
                    time_ms: t + dt,
                    name: event,
                    value: Some((u % 17) as f64),
                    attributes: Some(ATTRIBUTES[0]),
                });
            }
        }
    }
    let m = a.memory();
    eprintln!(
        "results bench: {} units, {} unit-metric pairs, {} experiment bytes ({:.1} bytes per unit-metric pair)",
        m.units,
        m.unit_metric_pairs,
        m.experiment_bytes,
        m.experiment_bytes as f64 / m.unit_metric_pairs as f64
    );
    let opts = AnalysisOptions::default();
    let mut g = c.benchmark_group("results");
    g.sample_size(20);
    g.bench_function("results_10m_units_10_metrics", |b| {
        b.iter(|| black_box(a.results("p", "prod", "exp", &opts).unwrap().unwrap()))
    });
    g.bench_function("results_10m_units_10_metrics_json", |b| {
        b.iter(|| {
            let r = a.results("p", "prod", "exp", &opts).unwrap().unwrap();
            black_box(serde_json::to_vec(&r).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, throughput, results);
criterion_main!(benches);
