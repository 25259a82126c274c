//! Guardrail checks on streamed results: a harmed guardrail and a sample
//! ratio mismatch raise alerts; an unharmed guardrail, a secondary metric
//! and too few units do not.

use switchyard_aggregate::guardrail::{AlertKind, MIN_UNITS, check, guardrail_options};
use switchyard_aggregate::{Aggregator, Event, ExperimentSpec, Limits, SpecMetric};
use switchyard_core::metric::{MetricDefinition, MetricRole};

const H: i64 = 3_600_000;

fn spec(metrics: &[(&str, MetricRole)]) -> ExperimentSpec {
    let defs: Vec<MetricDefinition> = serde_json::from_value(serde_json::json!([
        {"key": "errors", "kind": "count", "numerator": {"event": "error"}, "direction": "lower"},
        {"key": "checkout", "kind": "binomial", "numerator": {"event": "checkout"}},
        {"key": "errors_2nd", "kind": "count", "numerator": {"event": "error"}, "direction": "lower"}
    ]))
    .unwrap();
    ExperimentSpec {
        project: "p".into(),
        environment: "prod".into(),
        key: "exp".into(),
        flag: "f".into(),
        phase: 0,
        variations: vec!["control".into(), "treatment".into()],
        start_ms: 0,
        stop_ms: None,
        metrics: metrics
            .iter()
            .map(|(key, role)| SpecMetric {
                definition: defs.iter().find(|d| d.key == *key).unwrap().clone(),
                role: *role,
            })
            .collect(),
        breakdown: None,
    }
}

/// `control` and `treatment` units; unit `i` of an arm tracks
/// `errors(arm, i)` errors and a checkout when `i` is even.
fn run(
    spec: ExperimentSpec,
    control: u32,
    treatment: u32,
    errors: impl Fn(usize, u32) -> u32,
) -> Aggregator {
    let mut agg = Aggregator::new(Limits::default(), (3, 5));
    agg.configure(vec![spec]);
    let mut offset = 0;
    for (arm, (variation, n)) in [("control", control), ("treatment", treatment)]
        .into_iter()
        .enumerate()
    {
        for i in 0..n {
            let unit = format!("{variation}-{i}");
            agg.apply(&Event::Exposure {
                project: "p",
                environment: "prod",
                unit: &unit,
                time_ms: H,
                experiment: Some("exp"),
                flag: None,
                variation,
                attributes: None,
            });
            let mut names = vec!["error"; errors(arm, i) as usize];
            if i % 2 == 0 {
                names.push("checkout");
            }
            for name in names {
                agg.apply(&Event::Track {
                    project: "p",
                    environment: "prod",
                    unit: &unit,
                    time_ms: H + 1000,
                    name,
                    value: None,
                    attributes: None,
                });
            }
            offset += 1;
            agg.advance(offset);
        }
    }
    agg
}

fn alerts(agg: &Aggregator) -> Vec<switchyard_aggregate::guardrail::Alert> {
    let r = agg
        .results(
            "p",
            "prod",
            "exp",
            &guardrail_options(0.05, 0, vec![0.5, 0.5]),
        )
        .unwrap()
        .unwrap();
    assert!(
        r.analysis.sequential,
        "the check reads a sequential analysis"
    );
    check(&r)
}

#[test]
fn a_guardrail_harmed_in_the_treatment_raises_one_alert_naming_it() {
    // Control: 0-2 errors per unit; treatment: 2-4.
    let agg = run(
        spec(&[
            ("checkout", MetricRole::Goal),
            ("errors", MetricRole::Guardrail),
        ]),
        1000,
        1000,
        |arm, i| (i % 3) + 2 * arm as u32,
    );
    let found = alerts(&agg);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, AlertKind::GuardrailHarmed);
    assert_eq!(found[0].metric.as_deref(), Some("errors"));
    assert_eq!(found[0].variation.as_deref(), Some("treatment"));
    assert!(
        found[0].message.contains("lower is better"),
        "{}",
        found[0].message
    );
}

#[test]
fn an_improved_guardrail_or_a_harmed_secondary_metric_raises_nothing() {
    // Fewer errors in the treatment: better, not harmed.
    let better = run(
        spec(&[("errors", MetricRole::Guardrail)]),
        1000,
        1000,
        |arm, i| (i % 3) + 2 * (1 - arm as u32),
    );
    assert_eq!(alerts(&better), vec![]);
    // More errors, but the metric is only secondary.
    let secondary = run(
        spec(&[("errors_2nd", MetricRole::Secondary)]),
        1000,
        1000,
        |arm, i| (i % 3) + 2 * arm as u32,
    );
    assert_eq!(alerts(&secondary), vec![]);
    // The same distribution in both arms.
    let same = run(
        spec(&[("errors", MetricRole::Guardrail)]),
        1000,
        1000,
        |_, i| i % 3,
    );
    assert_eq!(alerts(&same), vec![]);
}

#[test]
fn a_sample_ratio_mismatch_raises_an_alert() {
    let agg = run(spec(&[("checkout", MetricRole::Goal)]), 1000, 700, |_, _| 0);
    let found = alerts(&agg);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, AlertKind::SampleRatioMismatch);
    assert!(
        found[0].message.contains("control 1000"),
        "{}",
        found[0].message
    );
}

#[test]
fn no_alert_before_enough_units() {
    let n = (MIN_UNITS / 2 - 1) as u32;
    // A gross mismatch and a gross harm, on too few units.
    let agg = run(
        spec(&[("errors", MetricRole::Guardrail)]),
        n,
        1,
        |arm, _| 10 * arm as u32,
    );
    assert_eq!(alerts(&agg), vec![]);
}
