//! Aggregation throughput on one core, and the results request of a large
//! experiment.
//!
//! `apply` feeds pre-decoded events (20 % exposures, 80 % tracked events
//! read by 3 of 10 metrics) to a fresh aggregator; `decode` is the
//! baseline in the same run: decoding the same events from their log
//! records with `switchyard_events::decode_event`, which the consumer does
//! anyway. `results_10m_units_10_metrics` times one results computation
//! over 10 million exposed units and 10 metrics (set `AGG_BENCH_UNITS` to
//! change the size).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchyard_aggregate::{
    Aggregator, AnalysisOptions, Event, ExperimentSpec, Limits, SpecMetric,
};

const H: i64 = 3_600_000;

fn spec(metrics: usize) -> ExperimentSpec {
    let kinds = ["binomial", "count", "sum", "mean"];
    let metrics = (0..metrics)
        .map(|i| {
            let j = serde_json::json!({
                "key": format!("m{i}"),
                "kind": kinds[i % kinds.len()],
                "numerator": {"event": format!("e{}", i % 5)},
            });
            SpecMetric {
                definition: serde_json::from_value(j).unwrap(),
                role: Default::default(),
            }
        })
        .collect();
    ExperimentSpec {
        project: "p".into(),
        environment: "prod".into(),
        key: "exp".into(),
        flag: "f".into(),
        phase: 0,
        variations: vec!["control".into(), "treatment".into()],
        start_ms: 0,
        stop_ms: None,
        metrics,
    }
}

struct Owned {
    unit: String,
    time: i64,
    name: Option<&'static str>,
    variation: &'static str,
}

fn events(n: usize, units: usize) -> Vec<Owned> {
    let names = ["e0", "e1", "e2", "other", "other2"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x % units as u64) as usize;
            Owned {
                unit: format!("user-{u:08}"),
                time: H + (i as i64) * 10,
                name: (!i.is_multiple_of(5)).then(|| names[(x >> 20) as usize % names.len()]),
                variation: if u.is_multiple_of(2) {
                    "control"
                } else {
                    "treatment"
                },
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
            experiment: Some("exp"),
            flag: None,
            variation: o.variation,
        },
        Some(name) => Event::Track {
            project: "p",
            environment: "prod",
            unit: &o.unit,
            time_ms: o.time,
            name,
            value: Some(1.5),
            attributes: None,
        },
    }
}

fn encode(evs: &[Owned]) -> Vec<Vec<u8>> {
    use switchyard_events::record::EncodedBatch;
    let body: Vec<serde_json::Value> = evs
        .iter()
        .map(|o| match o.name {
            None => serde_json::json!({"type":"exposure","unit":o.unit,"experiment":"exp","variation":o.variation,"time":o.time}),
            Some(n) => serde_json::json!({"type":"track","unit":o.unit,"name":n,"value":1.5,"time":o.time}),
        })
        .collect();
    let text = serde_json::to_string(&body).unwrap();
    let limits = switchyard_events::Limits::default();
    let raw = switchyard_events::schema::parse_json(text.as_bytes(), &limits).unwrap();
    let mut batch = EncodedBatch::default();
    for r in &raw {
        let ev = r.validate(&limits, 2 * H + 10 * evs.len() as i64).unwrap();
        batch.push_event("p", "prod", &ev);
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
            || {
                let mut a = Aggregator::new(Limits::default(), (1, 2));
                a.configure(vec![spec(10)]);
                a
            },
            |mut a| {
                for o in &evs {
                    a.apply(&view(o));
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
    a.configure(vec![spec(10)]);
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
        });
        if u.is_multiple_of(3) {
            a.apply(&Event::Track {
                project: "p",
                environment: "prod",
                unit: &name,
                time_ms: t + 1,
                name: "e1",
                value: Some((u % 17) as f64),
                attributes: None,
            });
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
    g.finish();
}

criterion_group!(benches, throughput, results);
criterion_main!(benches);
