//! The `switchyard analyze` contract: a JSON document in, JSON results out,
//! errors that name the offending field, and no NaN or panic on any data.

use proptest::prelude::*;
use serde_json::{Value, json};
use switchyard_stats::{
    AnalysisRequest, AnalyzeError, Engine, MeanStatistic, Metric, MetricStatistic, Settings,
    Variation, analyze, analyze_document,
};

fn two_arm_document() -> Value {
    json!({
        "variations": [
            {"id": "control", "weight": 0.5, "units": 1000},
            {"id": "treatment", "weight": 0.5, "units": 1010}
        ],
        "metrics": [{
            "id": "revenue",
            "data": [
                {"type": "mean", "n": 1000, "sum": 10000.0, "sum_squares": 116000.0},
                {"type": "mean", "n": 1010, "sum": 10400.0, "sum_squares": 123000.0}
            ]
        }]
    })
}

fn error_of(doc: &Value) -> String {
    match analyze_document(&doc.to_string()) {
        Ok(v) => panic!("accepted: {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_minimal_document_gives_srm_and_both_effects_for_the_treatment() {
    let out = analyze_document(&two_arm_document().to_string()).unwrap();
    assert!(out["srm"]["p_value"].as_f64().unwrap() > 0.5);
    let treatment = &out["metrics"][0]["variations"][1];
    assert_eq!(treatment["id"], "treatment");
    for scale in ["absolute", "relative"] {
        let effect = &treatment["comparison"][scale];
        assert!(effect["p_value"].as_f64().is_some(), "{scale}: {effect}");
        assert!(effect["ci"]["lower"].as_f64().unwrap() < effect["ci"]["upper"].as_f64().unwrap());
    }
    assert!(
        out["metrics"][0]["variations"][0]
            .get("comparison")
            .is_none()
    );
}

#[test]
fn a_missing_field_is_named_with_its_path() {
    let mut doc = two_arm_document();
    doc["metrics"][0]["data"][1]
        .as_object_mut()
        .unwrap()
        .remove("sum_squares");
    let msg = error_of(&doc);
    assert!(
        msg.contains("metrics[0].data[1]") && msg.contains("sum_squares"),
        "{msg}"
    );
}

#[test]
fn an_unknown_setting_is_rejected_by_name() {
    let mut doc = two_arm_document();
    doc["settings"] = json!({"alpah": 0.1});
    let msg = error_of(&doc);
    assert!(msg.contains("settings") && msg.contains("alpah"), "{msg}");
}

#[test]
fn an_alpha_outside_zero_one_is_rejected_by_name() {
    let mut doc = two_arm_document();
    doc["settings"] = json!({"alpha": 1.5});
    assert!(error_of(&doc).contains("settings.alpha"));
}

#[test]
fn data_of_the_wrong_length_names_the_metric() {
    let mut doc = two_arm_document();
    doc["metrics"][0]["data"].as_array_mut().unwrap().pop();
    let msg = error_of(&doc);
    assert!(
        msg.contains("metrics[0].data") && msg.contains("2 variations"),
        "{msg}"
    );
}

#[test]
fn mixed_statistic_types_in_one_metric_are_rejected() {
    let mut doc = two_arm_document();
    doc["metrics"][0]["data"][1] = json!({"type": "proportion", "n": 10, "successes": 3});
    assert!(error_of(&doc).contains("metrics[0].data[1].type"));
}

#[test]
fn sequential_one_sided_tests_are_rejected() {
    let mut doc = two_arm_document();
    doc["settings"] = json!({"sequential": true, "alternative": "greater"});
    assert!(error_of(&doc).contains("settings.alternative"));
}

#[test]
fn trailing_garbage_after_the_document_is_an_error() {
    let text = format!("{} x", two_arm_document());
    assert!(matches!(
        analyze_document(&text),
        Err(AnalyzeError::Parse { .. })
    ));
}

#[test]
fn one_sided_intervals_have_a_null_open_end() {
    let mut doc = two_arm_document();
    doc["settings"] = json!({"alternative": "greater"});
    let out = analyze_document(&doc.to_string()).unwrap();
    let ci = &out["metrics"][0]["variations"][1]["comparison"]["absolute"]["ci"];
    assert!(ci["lower"].is_f64() && ci["upper"].is_null(), "{ci}");
}

#[test]
fn a_bayesian_zero_baseline_mean_gives_an_absolute_result_and_a_relative_error_code() {
    let mut doc = two_arm_document();
    doc["settings"] = json!({"engine": "bayesian"});
    doc["metrics"][0]["data"][0] =
        json!({"type": "mean", "n": 100, "sum": 0.0, "sum_squares": 100.0});
    let out = analyze_document(&doc.to_string()).unwrap();
    let c = &out["metrics"][0]["variations"][1]["comparison"];
    assert!(c["absolute"].get("error").is_none(), "{c}");
    assert_eq!(c["relative"]["error"], "ZERO_BASELINE_MEAN");
    assert_eq!(c["relative"]["chance_to_win"], 0.5);
}

fn finite_effects(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
        Value::Array(a) => a.iter().all(finite_effects),
        // Only interval ends may be null (unbounded); nulls elsewhere would hide a NaN.
        Value::Object(o) => o.iter().all(|(k, x)| {
            (matches!(k.as_str(), "lower" | "upper") && x.is_null()) || finite_effects(x)
        }),
        Value::Null => false,
        Value::String(_) | Value::Bool(_) => true,
    }
}

fn arbitrary_mean() -> impl Strategy<Value = MeanStatistic> {
    (0u64..6, -1e3f64..1e3, -10.0f64..1e6).prop_map(|(n, sum, sum_squares)| MeanStatistic {
        n,
        sum,
        sum_squares,
    })
}

proptest! {
    #[test]
    fn degenerate_and_inconsistent_statistics_never_produce_nan_or_panic(
        a in arbitrary_mean(),
        b in arbitrary_mean(),
        c in arbitrary_mean(),
        bayesian in any::<bool>(),
        sequential in any::<bool>(),
    ) {
        let request = AnalysisRequest {
            settings: Settings {
                engine: if bayesian { Engine::Bayesian } else { Engine::Frequentist },
                sequential: sequential && !bayesian,
                correction: switchyard_stats::Correction::Holm,
                ..Settings::default()
            },
            variations: ["a", "b", "c"]
                .iter()
                .map(|id| Variation { id: (*id).to_owned(), weight: 1.0, units: 10 })
                .collect(),
            metrics: vec![Metric {
                id: "m".to_owned(),
                inverse: false,
                prior: None,
                data: vec![MetricStatistic::Mean(a), MetricStatistic::Mean(b), MetricStatistic::Mean(c)],
            }],
        };
        let out = serde_json::to_value(analyze(&request)).unwrap();
        prop_assert!(finite_effects(&out), "{}", out);
    }
}

#[test]
fn the_example_document_in_the_user_docs_is_accepted() {
    let docs = include_str!("../../../docs/statistics.md");
    let start = docs.find("## The analyze document").unwrap();
    let block = &docs[start..];
    let open = block.find("```json\n").unwrap() + "```json\n".len();
    let close = open + block[open..].find("```").unwrap();
    let out = analyze_document(&block[open..close]).unwrap();
    assert_eq!(out["metrics"].as_array().unwrap().len(), 4);
    assert!(finite_effects(&out), "{out}");
}
