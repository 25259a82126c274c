//! Property tests of the bucketing contract and of evaluation robustness.

use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_core::bucket::{Salted, bucket, hash_to_bucket, murmur3_x86_32};
use switchyard_core::model::Operator;
use switchyard_core::{ConfigDocument, Context, Reason, compile};

/// Chi-square critical values at p = 0.001.
const CHI2_999_DF99: f64 = 148.230;
const CHI2_999_DF9: f64 = 27.877;

fn chi_square(observed: &[u64], expected_each: f64) -> f64 {
    observed
        .iter()
        .map(|&o| {
            let d = o as f64 - expected_each;
            d * d / expected_each
        })
        .sum()
}

#[test]
fn buckets_are_uniform_over_100_cells_for_100k_units() {
    for salt in ["new-checkout", "exp-2026-pricing", "layer/α", ""] {
        let mut cells = [0u64; 100];
        for i in 0..100_000 {
            let b = bucket(salt, &format!("user-{i}"));
            assert!(b < 10_000);
            cells[(b / 100) as usize] += 1;
        }
        let stat = chi_square(&cells, 1_000.0);
        assert!(
            stat < CHI2_999_DF99,
            "salt {salt:?}: chi-square {stat:.1} >= {CHI2_999_DF99} (p < 0.001)"
        );
    }
}

#[test]
fn differently_salted_assignments_are_independent() {
    // 4 x 4 contingency table of (bucket quartile under salt A, under salt B).
    let mut table = [[0u64; 4]; 4];
    for i in 0..100_000 {
        let unit = format!("u{i}");
        let a = bucket("experiment-a", &unit) / 2_500;
        let b = bucket("experiment-b", &unit) / 2_500;
        table[a as usize][b as usize] += 1;
    }
    let n = 100_000.0;
    let rows: Vec<f64> = table.iter().map(|r| r.iter().sum::<u64>() as f64).collect();
    let cols: Vec<f64> = (0..4)
        .map(|j| table.iter().map(|r| r[j]).sum::<u64>() as f64)
        .collect();
    let mut stat = 0.0;
    for i in 0..4 {
        for j in 0..4 {
            let e = rows[i] * cols[j] / n;
            let d = table[i][j] as f64 - e;
            stat += d * d / e;
        }
    }
    assert!(stat < CHI2_999_DF9, "independence chi-square {stat:.2}");
}

fn rollout_doc(percent_bp: u32) -> ConfigDocument {
    serde_json::from_value(json!({
        "flags": [{
            "key": "ramp", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "enabled": true, "off_variation": "off",
            "fallthrough": {"split": {"weights": [
                {"variation": "on", "weight": percent_bp},
                {"variation": "off", "weight": 10_000 - percent_bp}]}}
        }]
    }))
    .expect("valid document")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn raising_a_rollout_keeps_every_unit_that_was_in(
        units in proptest::collection::vec("\\PC{0,24}", 1..40),
        p in 0u32..=10_000,
        q in 0u32..=10_000,
    ) {
        let (lo, hi) = if p <= q { (p, q) } else { (q, p) };
        let low = compile(&rollout_doc(lo)).expect("compiles");
        let high = compile(&rollout_doc(hi)).expect("compiles");
        for u in &units {
            let ctx = Context::with_key(u.clone());
            let before = low.evaluate("ramp", &ctx);
            let after = high.evaluate("ramp", &ctx);
            if before.variant == Some("on") {
                prop_assert_eq!(after.variant, Some("on"), "unit {:?} left at {}->{}", u, lo, hi);
            }
        }
    }

    #[test]
    fn non_ascii_units_hash_their_utf8_bytes(salt in "\\PC{0,16}", unit in "\\PC{0,32}") {
        let joined = format!("{salt}/{unit}");
        prop_assert_eq!(bucket(&salt, &unit), hash_to_bucket(murmur3_x86_32(joined.as_bytes(), 0)));
        prop_assert_eq!(Salted::new(&salt).bucket(&unit), bucket(&salt, &unit));
    }
}

#[test]
fn non_ascii_units_have_the_buckets_of_their_utf8_bytes() {
    // The same text in NFC and NFD is two different units: bytes decide.
    let nfc = "Zo\u{eb}";
    let nfd = "Zoe\u{308}";
    assert_eq!(
        bucket("s", nfc),
        hash_to_bucket(murmur3_x86_32("s/Zo\u{eb}".as_bytes(), 0))
    );
    assert_ne!(nfc.as_bytes(), nfd.as_bytes());
    assert_eq!(
        bucket("s", nfd),
        hash_to_bucket(murmur3_x86_32(nfd_joined().as_bytes(), 0))
    );
}

fn nfd_joined() -> String {
    "s/Zoe\u{308}".to_string()
}

// ---- robustness: arbitrary configurations and contexts never panic ----

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z0-9.:+-]{0,12}".prop_map(Value::String),
        Just(json!("1.2.3-beta.1")),
        Just(json!("2026-01-01T00:00:00Z")),
        Just(json!("(a+)+$")),
        Just(json!("[")),
    ]
}

fn arb_operand() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_scalar(),
        proptest::collection::vec(arb_scalar(), 0..4).prop_map(Value::Array),
        Just(json!(["seg"])),
        Just(json!(["missing-seg"])),
    ]
}

/// An operand that fits the operator (most of the time), or anything.
fn operand_for(op: Operator) -> BoxedStrategy<Value> {
    use Operator::*;
    let fitting: BoxedStrategy<Value> = match op {
        Equals | NotEquals => arb_scalar().prop_filter("scalar", |v| !v.is_null()).boxed(),
        In | NotIn => {
            proptest::collection::vec(arb_scalar().prop_filter("scalar", |v| !v.is_null()), 0..4)
                .prop_map(Value::Array)
                .boxed()
        }
        Contains | NotContains | StartsWith | EndsWith => {
            "[a-z0-9]{0,4}".prop_map(Value::String).boxed()
        }
        Matches | NotMatches => prop_oneof![
            Just(json!("^u[0-9]+$")),
            Just(json!("(a+)+$")),
            Just(json!("é|ß"))
        ]
        .boxed(),
        Lt | Lte | Gt | Gte => (-100i32..100).prop_map(|i| json!(i)).boxed(),
        SemverEq | SemverLt | SemverLte | SemverGt | SemverGte => prop_oneof![
            Just(json!("1.2.3")),
            Just(json!("v2")),
            Just(json!("1.0.0-rc.1"))
        ]
        .boxed(),
        Before | After => prop_oneof![
            Just(json!("2026-01-01T00:00:00Z")),
            Just(json!(1_700_000_000))
        ]
        .boxed(),
        Exists | NotExists => Just(Value::Null).boxed(),
        InSegment | NotInSegment => Just(json!(["seg"])).boxed(),
    };
    prop_oneof![9 => fitting, 1 => arb_operand()].boxed()
}

fn arb_condition() -> impl Strategy<Value = Value> {
    (
        prop_oneof![4 => Just("targetingKey"), 4 => Just("a"), 4 => Just("b"), 1 => Just("")],
        proptest::sample::select(Operator::ALL.to_vec()),
    )
        .prop_flat_map(|(attr, op)| {
            operand_for(op)
                .prop_map(move |value| json!({"attribute": attr, "op": op, "value": value}))
        })
}

fn arb_serve() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop_oneof![5 => Just("x"), 5 => Just("y"), 1 => Just("nope")].prop_map(|v| json!({"variation": v})),
        3 => (0u32..=10_000, prop_oneof![5 => Just("targetingKey"), 5 => Just("a"), 1 => Just("")]).prop_map(
            |(w, by)| json!({"split": {"bucket_by": by, "weights": [
                {"variation": "x", "weight": w}, {"variation": "y", "weight": 10_000 - w}]}})
        ),
        1 => Just(json!({"split": {"weights": [{"variation": "x", "weight": 3}]}})),
        3 => prop_oneof![5 => Just("exp"), 1 => Just("nope")].prop_map(|e| json!({"experiment": e})),
    ]
}

fn arb_doc() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(
            (proptest::collection::vec(arb_condition(), 0..3), arb_serve()),
            0..3,
        ),
        arb_serve(),
        any::<bool>(),
        proptest::collection::vec(arb_condition(), 0..2),
        prop_oneof![Just("draft"), Just("running"), Just("stopped")],
        prop_oneof![9 => 0u32..=10_000, 1 => Just(10_001u32)],
        any::<bool>(),
        prop_oneof![Just("x"), Just("y"), Just(r#"{"k":1}"#)],
    )
        .prop_map(|(rules, fallthrough, enabled, exp_conds, status, coverage, prereq, other_value)| {
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|(c, s)| json!({"conditions": c, "serve": s}))
                .collect();
            let prerequisites = if prereq { json!([{"flag": "g", "variations": ["x"]}]) } else { json!([]) };
            json!({
                "flags": [
                    {"key": "f", "type": "string",
                     "variations": [{"key": "x", "value": "X"}, {"key": "y", "value": other_value}],
                     "enabled": enabled, "off_variation": "x", "prerequisites": prerequisites,
                     "rules": rules, "fallthrough": fallthrough},
                    {"key": "g", "type": "string",
                     "variations": [{"key": "x", "value": "X"}, {"key": "y", "value": "Y"}],
                     "enabled": true, "off_variation": "y",
                     "fallthrough": {"variation": "x"}}
                ],
                "segments": [{"key": "seg", "included": ["u1"], "excluded": ["u2"],
                              "rules": [{"conditions": exp_conds.clone()}]}],
                "experiments": [{"key": "exp", "flag": "f", "status": status,
                    "variations": [{"variation": "x", "weight": 5000}, {"variation": "y", "weight": 5000}],
                    "coverage": coverage, "conditions": exp_conds,
                    "layer": {"key": "L", "start": 0, "end": 7000}, "holdouts": ["h"]}],
                "holdouts": [{"key": "h", "size": 1000}]
            })
        })
}

fn arb_context() -> impl Strategy<Value = Value> {
    (
        proptest::option::of("\\PC{0,8}"),
        arb_scalar(),
        arb_scalar(),
    )
        .prop_map(|(key, a, b)| {
            let mut m = serde_json::Map::new();
            if let Some(k) = key {
                m.insert("targetingKey".into(), Value::String(k));
            }
            m.insert("a".into(), a);
            m.insert("b".into(), b);
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_generated_config_or_context_makes_evaluation_panic(
        doc in arb_doc(),
        contexts in proptest::collection::vec(arb_context(), 1..6),
    ) {
        let Ok(doc) = serde_json::from_value::<ConfigDocument>(doc) else { return Ok(()); };
        let Ok(evaluator) = compile(&doc) else { return Ok(()); };
        for c in contexts {
            let ctx = Context::from_value(c).expect("object with string key");
            for e in evaluator.evaluate_all(&ctx) {
                prop_assert_eq!(e.value.is_some(), e.reason != Reason::Error);
                prop_assert_eq!(e.variant.is_some(), e.value.is_some());
                if let Some(x) = e.exposure {
                    prop_assert_eq!(Some(x.variation), e.variant);
                    prop_assert_eq!(e.reason, Reason::Split);
                }
            }
            let missing = evaluator.evaluate("does-not-exist", &ctx);
            prop_assert_eq!(missing.reason, Reason::Error);
        }
    }
}
