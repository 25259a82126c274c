//! Memory per unit-metric pair, measured as the growth of the process's
//! resident memory, and the estimate the aggregator reports checked
//! against it.

use switchyard_aggregate::{Aggregator, Event, ExperimentSpec, Limits, SpecMetric};

/// Resident memory of this process, from /proc (the workspace forbids the
/// `unsafe` a counting allocator needs).
fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024.0
}

#[test]
fn a_unit_metric_pair_costs_under_64_bytes_and_the_estimate_is_close() {
    let metrics = 10;
    let units: usize = 300_000;
    let spec = ExperimentSpec {
        project: "p".into(),
        environment: "prod".into(),
        key: "exp".into(),
        flag: "f".into(),
        phase: 0,
        variations: vec!["a".into(), "b".into()],
        start_ms: 0,
        stop_ms: None,
        metrics: (0..metrics)
            .map(|i| SpecMetric {
                definition: serde_json::from_value(serde_json::json!({
                    "key": format!("m{i}"), "kind": "sum", "numerator": {"event": format!("e{i}")}
                }))
                .unwrap(),
                role: Default::default(),
            })
            .collect(),
        breakdown: None,
    };
    let mut agg = Aggregator::new(
        Limits {
            ring_capacity: 0,
            ..Limits::default()
        },
        (3, 4),
    );
    agg.configure(vec![spec]);
    let mut name = String::with_capacity(32);
    let before = rss_bytes();
    for u in 0..units {
        use std::fmt::Write;
        name.clear();
        write!(name, "unit-{u}").unwrap();
        agg.apply(&Event::Exposure {
            project: "p",
            environment: "prod",
            unit: &name,
            time_ms: 1_000 + u as i64,
            experiment: Some("exp"),
            flag: None,
            variation: if u.is_multiple_of(2) { "a" } else { "b" },
            attributes: None,
        });
    }
    let used = rss_bytes() - before;
    let pairs = (units * metrics) as f64;
    let per_pair = used / pairs;
    let report = agg.memory();
    println!(
        "{units} units x {metrics} metrics: {used} bytes of resident memory, {per_pair:.1} bytes per unit-metric pair, {:.1} per unit; estimate {} bytes",
        used / units as f64,
        report.experiment_bytes
    );
    assert_eq!(report.unit_metric_pairs, units * metrics);
    assert!(per_pair < 64.0, "{per_pair} bytes per unit-metric pair");
    // The estimate counts allocated capacity, which the process has not
    // all touched yet: it may exceed resident memory, never fall short.
    let estimate = report.experiment_bytes as f64;
    assert!(estimate / pairs < 64.0, "estimate {estimate}");
    assert!(
        estimate > 0.9 * used,
        "the estimate {estimate} is below the resident growth {used}"
    );
}
