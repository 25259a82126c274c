//! A small experiment with one metric of each kind, and a from-scratch
//! model of what its statistics must be, written independently of the
//! crate (straight from the rules in docs/results.md).
#![allow(dead_code)]

use switchyard_aggregate::{Event, ExperimentSpec, SpecMetric};
use switchyard_core::metric::MetricDefinition;

pub const H: i64 = 3_600_000;
pub const START: i64 = H;
pub const STOP: i64 = 20 * H;

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Expose(u8),
    Track {
        name: &'static str,
        value: f64,
        tag: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub unit: u8,
    pub time: i64,
    pub kind: Kind,
}

pub fn unit_name(u: u8) -> String {
    format!("user-{u}")
}

pub const TAG_X: &str = r#"{"tag":"x"}"#;
pub const TAG_Y: &str = r#"{"tag":"y"}"#;

pub fn with_event<R>(e: &Ev, f: impl FnOnce(&Event<'_>) -> R) -> R {
    let unit = unit_name(e.unit);
    let ev = match &e.kind {
        Kind::Expose(v) => Event::Exposure {
            project: "p",
            environment: "prod",
            unit: &unit,
            time_ms: e.time,
            experiment: Some("exp"),
            flag: None,
            variation: if *v == 0 { "control" } else { "treatment" },
            attributes: None,
        },
        Kind::Track { name, value, tag } => Event::Track {
            project: "p",
            environment: "prod",
            unit: &unit,
            time_ms: e.time,
            name,
            value: Some(*value),
            attributes: Some(if *tag { TAG_X } else { TAG_Y }),
        },
    };
    f(&ev)
}

pub fn metrics() -> Vec<MetricDefinition> {
    let j = serde_json::json!([
        {"key":"conv","kind":"binomial","numerator":{"event":"a"},"cuped":{"enabled":true,"lookback_hours":2}},
        {"key":"cnt","kind":"count","numerator":{"event":"a","conditions":[{"attribute":"tag","op":"equals","value":"x"}]},"window_hours":3,"cuped":{"enabled":true,"lookback_hours":1}},
        {"key":"rev","kind":"sum","numerator":{"event":"b"},"cap":{"fixed":50.0}},
        {"key":"avg","kind":"mean","numerator":{"event":"b"}},
        {"key":"rat","kind":"ratio","numerator":{"event":"b","aggregate":"sum"},"denominator":{"event":"a","aggregate":"count"}},
        {"key":"p90","kind":"sum","numerator":{"event":"b"},"cap":{"percentile":0.9},"cuped":{"enabled":false,"lookback_hours":1}}
    ]);
    serde_json::from_value(j).unwrap()
}

pub fn spec() -> ExperimentSpec {
    ExperimentSpec {
        project: "p".into(),
        environment: "prod".into(),
        key: "exp".into(),
        flag: "f".into(),
        phase: 0,
        variations: vec!["control".into(), "treatment".into()],
        start_ms: START,
        stop_ms: Some(STOP),
        metrics: metrics()
            .into_iter()
            .map(|definition| SpecMetric {
                definition,
                role: Default::default(),
            })
            .collect(),
        breakdown: None,
    }
}

/// Per metric, per variation: (n, sum x, sum x^2, sum y, sum y^2, sum xy).
pub type Sums = Vec<Vec<[f64; 6]>>;

pub struct Model {
    pub units: [u64; 2],
    pub excluded: u64,
    pub sums: Sums,
}

/// Computes every statistic from scratch, from the whole set of events.
pub fn model(events: &[Ev]) -> Model {
    use std::collections::BTreeMap;
    let mut exposures: BTreeMap<u8, Vec<(i64, u8)>> = BTreeMap::new();
    for e in events {
        if let Kind::Expose(v) = e.kind
            && e.time >= START
            && e.time < STOP
        {
            exposures.entry(e.unit).or_default().push((e.time, v));
        }
    }
    let mut out = Model {
        units: [0; 2],
        excluded: 0,
        sums: vec![vec![[0.0; 6]; 2]; 6],
    };
    // Per metric, the included units' (variation, x, y) before percentile caps.
    let mut per_unit: Vec<Vec<(usize, f64, f64)>> = vec![Vec::new(); 6];
    for (unit, xs) in &exposures {
        let v = xs[0].1;
        if xs.iter().any(|x| x.1 != v) {
            out.excluded += 1;
            continue;
        }
        let v = v as usize;
        out.units[v] += 1;
        let first = xs.iter().map(|x| x.0).min().unwrap();
        let tracks: Vec<(&str, f64, bool, i64)> = events
            .iter()
            .filter(|e| e.unit == *unit)
            .filter_map(|e| match e.kind {
                Kind::Track { name, value, tag } => Some((name, value, tag, e.time)),
                _ => None,
            })
            .collect();
        let post = |t: i64, window: Option<i64>| {
            t >= first && t < window.map_or(STOP, |w| (first + w).min(STOP))
        };
        let pre = |t: i64, lb: i64| t < first && t >= first - lb;
        // conv: binomial on a, lookback 2h.
        let a_post = tracks
            .iter()
            .filter(|x| x.0 == "a" && post(x.3, None))
            .count();
        let a_pre = tracks
            .iter()
            .filter(|x| x.0 == "a" && pre(x.3, 2 * H))
            .count();
        per_unit[0].push((v, (a_post > 0) as u8 as f64, (a_pre > 0) as u8 as f64));
        // cnt: count of a with tag x, window 3h, lookback 1h.
        let c_post = tracks
            .iter()
            .filter(|x| x.0 == "a" && x.2 && post(x.3, Some(3 * H)))
            .count() as f64;
        let c_pre = tracks
            .iter()
            .filter(|x| x.0 == "a" && x.2 && pre(x.3, H))
            .count() as f64;
        per_unit[1].push((v, c_post, c_pre));
        // rev: sum of b capped at 50, CUPED default lookback (7 days).
        let b_post: f64 = tracks
            .iter()
            .filter(|x| x.0 == "b" && post(x.3, None))
            .map(|x| x.1)
            .sum();
        let b_pre: f64 = tracks
            .iter()
            .filter(|x| x.0 == "b" && pre(x.3, 168 * H))
            .map(|x| x.1)
            .sum();
        per_unit[2].push((v, b_post.min(50.0), b_pre.min(50.0)));
        // avg: mean of b: (sum, count).
        let b_n = tracks
            .iter()
            .filter(|x| x.0 == "b" && post(x.3, None))
            .count() as f64;
        per_unit[3].push((v, b_post, b_n));
        // rat: sum of b over count of a.
        per_unit[4].push((v, b_post, a_post as f64));
        // p90: sum of b capped at its 90th percentile, no CUPED.
        per_unit[5].push((v, b_post, 0.0));
    }
    let mut p90: Vec<f64> = per_unit[5].iter().map(|x| x.1).collect();
    p90.sort_by(|a, b| a.total_cmp(b));
    if !p90.is_empty() {
        let rank = ((0.9 * p90.len() as f64).ceil() as usize).clamp(1, p90.len());
        let cap = p90[rank - 1];
        for x in &mut per_unit[5] {
            x.1 = x.1.min(cap);
        }
    }
    for (m, rows) in per_unit.iter().enumerate() {
        for &(v, x, y) in rows {
            let s = &mut out.sums[m][v];
            s[0] += 1.0;
            s[1] += x;
            s[2] += x * x;
            s[3] += y;
            s[4] += y * y;
            s[5] += x * y;
        }
    }
    out
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}
