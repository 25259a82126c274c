//! The experiment lifecycle as evaluation sees it: ramping coverage keeps
//! every assigned unit in its arm, a paused experiment assigns nobody and
//! resumes with the same assignments, a shipped one serves its winner to
//! everyone who reaches its rule, and a new salt re-randomises.

use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_core::lifecycle::{phase_salt, reshuffling_changes};
use switchyard_core::model::Experiment;
use switchyard_core::{ConfigDocument, Context, Evaluator, Reason, compile};

/// A flag whose first rule serves the experiment and whose fallthrough
/// serves `control`; `experiment` is merged over a running 3-arm default.
fn doc(experiment: Value) -> ConfigDocument {
    let mut e = json!({
        "key": "exp", "flag": "f", "status": "running",
        "variations": [
            {"variation": "control", "weight": 3334},
            {"variation": "b", "weight": 3333},
            {"variation": "c", "weight": 3333}
        ],
        "coverage": 10_000
    });
    if let (Some(e), Some(over)) = (e.as_object_mut(), experiment.as_object()) {
        for (k, v) in over {
            e.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "flags": [{
            "key": "f", "type": "string",
            "variations": [
                {"key": "control", "value": "control"},
                {"key": "b", "value": "b"},
                {"key": "c", "value": "c"},
                {"key": "off", "value": "off"}
            ],
            "enabled": true, "off_variation": "off",
            "rules": [{"serve": {"experiment": "exp"}}],
            "fallthrough": {"variation": "control"}
        }],
        "experiments": [e]
    }))
    .expect("valid document")
}

fn eval(doc: &ConfigDocument) -> Evaluator {
    compile(doc).expect("compiles")
}

/// The arm each unit is assigned (None: not in the experiment).
fn assignments(ev: &Evaluator, units: usize) -> Vec<Option<String>> {
    (0..units)
        .map(|i| {
            let e = ev.evaluate("f", &Context::with_key(format!("user-{i}")));
            e.exposure.map(|x| x.variation.to_string())
        })
        .collect()
}

#[test]
fn ramping_coverage_from_10_to_50_percent_keeps_every_unit_in_its_variation() {
    let n = 20_000;
    let at10 = assignments(&eval(&doc(json!({"coverage": 1000}))), n);
    let at50 = assignments(&eval(&doc(json!({"coverage": 5000}))), n);
    let mut kept = 0;
    for (i, (before, after)) in at10.iter().zip(&at50).enumerate() {
        if let Some(v) = before {
            assert_eq!(after.as_ref(), Some(v), "user-{i} moved when coverage rose");
            kept += 1;
        }
    }
    let entered = at50.iter().flatten().count();
    // About 10 % and 50 % of 20 000 units (binomial sd ~ 42 and ~ 71).
    assert!((1_700..2_300).contains(&kept), "{kept} units at 10 %");
    assert!(
        (9_500..10_500).contains(&entered),
        "{entered} units at 50 %"
    );
}

#[test]
fn a_paused_experiment_assigns_nobody_and_resuming_gives_the_same_arms() {
    let n = 5_000;
    let running = eval(&doc(json!({"coverage": 6000})));
    let paused = eval(&doc(json!({"coverage": 6000, "status": "paused"})));
    for i in 0..n {
        let ctx = Context::with_key(format!("user-{i}"));
        let e = paused.evaluate("f", &ctx);
        assert_eq!(e.exposure, None, "user-{i} exposed while paused");
        // The rule does not match: the fallthrough serves.
        assert_eq!(e.variant, Some("control"));
        assert_eq!(e.reason, Reason::Default);
        assert_eq!(e.rule, None);
    }
    let before = assignments(&running, n);
    let resumed = assignments(
        &eval(&doc(json!({"coverage": 6000, "status": "running"}))),
        n,
    );
    assert_eq!(before, resumed);
    assert!(before.iter().flatten().count() > n / 2);
}

#[test]
fn a_shipped_experiment_serves_its_winner_to_everyone_reaching_its_rule() {
    let shipped = eval(&doc(
        json!({"status": "stopped", "winner": "c", "coverage": 1000}),
    ));
    for i in 0..5_000 {
        let e = shipped.evaluate("f", &Context::with_key(format!("user-{i}")));
        assert_eq!(e.variant, Some("c"));
        assert_eq!(e.reason, Reason::TargetingMatch);
        assert_eq!(e.exposure, None);
    }
}

#[test]
fn a_new_salt_re_randomises_and_the_default_salt_is_the_key() {
    let n = 10_000;
    let keyed = assignments(&eval(&doc(json!({}))), n);
    let explicit = assignments(&eval(&doc(json!({"salt": "exp"}))), n);
    assert_eq!(keyed, explicit);
    let phase2 = assignments(&eval(&doc(json!({"salt": phase_salt("exp", 2)}))), n);
    let same = keyed.iter().zip(&phase2).filter(|(a, b)| a == b).count();
    // Independent 3-arm assignments agree for about a third of units.
    assert!(
        (3_000..3_700).contains(&same),
        "{same} of {n} kept their arm"
    );
}

#[test]
fn an_empty_salt_is_a_compile_error() {
    let err = compile(&doc(json!({"salt": ""}))).unwrap_err();
    assert_eq!(err.field, "salt");
}

#[test]
fn only_changes_that_move_units_count_as_reshuffling() {
    let parse = |v: Value| -> Experiment { doc(v).experiments.remove(0) };
    let before = parse(json!({"coverage": 1000}));
    assert!(reshuffling_changes(&before, &parse(json!({"coverage": 5000}))).is_empty());
    assert_eq!(
        reshuffling_changes(
            &before,
            &parse(json!({"coverage": 5000, "bucket_by": "device"}))
        ),
        ["bucket_by"]
    );
}

fn arb_weights() -> impl Strategy<Value = Vec<u32>> {
    // 1..=4 arms adding up to 10 000 (cuts of 0..=10 000, sorted).
    proptest::collection::vec(0u32..=10_000, 0..4).prop_map(|mut cuts| {
        cuts.sort_unstable();
        let mut out = Vec::with_capacity(cuts.len() + 1);
        let mut prev = 0;
        for c in cuts {
            out.push(c - prev);
            prev = c;
        }
        out.push(10_000 - prev);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn raising_coverage_never_moves_an_assigned_unit(
        weights in arb_weights(),
        p in 0u32..=10_000,
        q in 0u32..=10_000,
        units in proptest::collection::vec("\\PC{1,16}", 1..200),
        holdout in 0u32..=3_000,
    ) {
        let (lo, hi) = if p <= q { (p, q) } else { (q, p) };
        let arms = ["control", "b", "c", "off"];
        let variations: Vec<Value> = weights
            .iter()
            .zip(arms)
            .map(|(w, a)| json!({"variation": a, "weight": w}))
            .collect();
        let with = |coverage: u32| {
            let mut d = doc(json!({
                "variations": variations, "coverage": coverage, "holdouts": ["h"]
            }));
            d.holdouts = vec![serde_json::from_value(json!({"key": "h", "size": holdout}))
                .unwrap_or_else(|_| unreachable!())];
            eval(&d)
        };
        let (low, high) = (with(lo), with(hi));
        for u in &units {
            let ctx = Context::with_key(u.clone());
            if let Some(x) = low.evaluate("f", &ctx).exposure {
                let after = high.evaluate("f", &ctx).exposure.map(|y| y.variation);
                prop_assert_eq!(after, Some(x.variation), "unit {:?} at {}->{}", u, lo, hi);
            }
        }
    }
}
