//! Runs every golden case of spec/stats/cases.json through `analyze_document` and
//! checks each expected number to 1e-6 relative (1e-9 absolute near zero). The
//! expected values come from gbstats, scipy and statsmodels (spec/stats/generate.py).

use serde_json::Value;

const CASES: &str = include_str!("../../../spec/stats/cases.json");

fn close(actual: f64, expected: f64) -> bool {
    let diff = (actual - expected).abs();
    diff <= 1e-6 * expected.abs() || diff <= 1e-9
}

/// Every leaf of `expected` must be present in `actual` and equal (numbers within
/// tolerance). Keys of `actual` absent from `expected` are not checked, except
/// `error`: a result must not carry an error code the reference did not give.
fn compare(path: &str, actual: &Value, expected: &Value, failures: &mut Vec<String>) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (key, ev) in e {
                let p = format!("{path}.{key}");
                match a.get(key) {
                    Some(av) => compare(&p, av, ev, failures),
                    None => failures.push(format!("{p}: missing, expected {ev}")),
                }
            }
            if let (Some(code), None) = (a.get("error"), e.get("error"))
                && e.contains_key("estimate")
            {
                failures.push(format!("{path}.error: unexpected {code}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                failures.push(format!("{path}: {} items, expected {}", a.len(), e.len()));
                return;
            }
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                compare(&format!("{path}[{i}]"), av, ev, failures);
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (
                a.as_f64().unwrap_or(f64::NAN),
                e.as_f64().unwrap_or(f64::NAN),
            );
            if !close(a, e) {
                failures.push(format!("{path}: {a:e}, expected {e:e}"));
            }
        }
        (a, e) if a == e => {}
        (a, e) => failures.push(format!("{path}: {a}, expected {e}")),
    }
}

#[test]
fn every_golden_case_matches_the_reference_implementations() {
    let spec: Value = serde_json::from_str(CASES).unwrap();
    let cases = spec["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "the corpus lost cases");
    let mut failures = Vec::new();
    let mut numbers_checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input = serde_json::to_string(&case["request"]).unwrap();
        let actual = match switchyard_stats::analyze_document(&input) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: rejected: {e}"));
                continue;
            }
        };
        numbers_checked += count_numbers(&case["expected"]);
        compare(name, &actual, &case["expected"], &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        numbers_checked > 500,
        "only {numbers_checked} numbers checked"
    );
}

fn count_numbers(v: &Value) -> usize {
    match v {
        Value::Number(_) => 1,
        Value::Array(a) => a.iter().map(count_numbers).sum(),
        Value::Object(o) => o.values().map(count_numbers).sum(),
        _ => 0,
    }
}

#[test]
fn the_golden_corpus_covers_every_method() {
    let names: Vec<String> = serde_json::from_str::<Value>(CASES).unwrap()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["request"].to_string())
        .collect();
    let all = names.join("\n");
    for needle in [
        "\"sequential\":true",
        "\"engine\":\"bayesian\"",
        "\"holm\"",
        "\"benjamini_hochberg\"",
        "\"regression_adjusted\"",
        "\"ratio\"",
        "\"proportion\"",
        "\"greater\"",
        "\"less\"",
        "\"scale\":\"absolute\"",
    ] {
        assert!(all.contains(needle), "no golden case uses {needle}");
    }
}
