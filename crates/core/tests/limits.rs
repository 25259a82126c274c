//! The bounds `compile` puts on what an environment may cost to evaluate
//! (`switchyard_core::limits`), and evaluation within them.

use serde_json::{Value, json};
use switchyard_core::limits::{
    MAX_EVALUATION_COST, MAX_PREREQUISITE_DEPTH, REGEX_MAX_INPUT, REGEX_MEMORY_LIMIT,
};
use switchyard_core::{CompileError, ConfigDocument, Context, Evaluator, Reason, compile};

fn flag(key: &str, prerequisites: &[&str]) -> Value {
    json!({
        "key": key, "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "enabled": true, "off_variation": "off",
        "prerequisites": prerequisites.iter()
            .map(|p| json!({"flag": p, "variations": ["on"]}))
            .collect::<Vec<_>>(),
        "fallthrough": {"variation": "on"}
    })
}

fn document(flags: Vec<Value>, segments: Vec<Value>) -> ConfigDocument {
    serde_json::from_value(json!({"flags": flags, "segments": segments})).expect("document")
}

fn compile_doc(flags: Vec<Value>) -> Result<Evaluator, CompileError> {
    compile(&document(flags, Vec::new()))
}

fn key(i: usize) -> String {
    format!("f-{i:05}")
}

/// `f-00000` <- `f-00001` <- ... : flag `i` requires flag `i - 1`.
fn chain(len: usize) -> Vec<Value> {
    (0..len)
        .map(|i| {
            let prerequisite = i.checked_sub(1).map(key);
            flag(
                &key(i),
                prerequisite
                    .as_slice()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice(),
            )
        })
        .collect()
}

fn user() -> Context {
    Context::from_value(json!({"targetingKey": "user-1"})).expect("context")
}

#[test]
fn a_prerequisite_chain_thousands_deep_is_rejected_naming_the_first_flag_too_deep() {
    let err = compile_doc(chain(10_000)).expect_err("too deep");
    let too_deep = key(MAX_PREREQUISITE_DEPTH + 1);
    assert_eq!(
        (err.kind, err.key.as_str()),
        ("flag", too_deep.as_str()),
        "{err}"
    );
    assert_eq!(err.field, "prerequisites");
    assert!(
        err.message
            .contains(&format!("{} levels deep", MAX_PREREQUISITE_DEPTH + 1))
            && err
                .message
                .contains(&format!("limit is {MAX_PREREQUISITE_DEPTH}")),
        "{err}"
    );
}

#[test]
fn a_chain_as_deep_as_the_limit_compiles_and_evaluates_along_its_whole_length() {
    let mut flags = chain(MAX_PREREQUISITE_DEPTH + 1);
    let top = key(MAX_PREREQUISITE_DEPTH);
    let ev = compile_doc(flags.clone()).expect("at the limit");
    let e = ev.evaluate(&top, &user());
    assert_eq!((e.variant, e.reason), (Some("on"), Reason::Default));

    // Switching the bottom flag off fails every flag above it.
    flags[0]["enabled"] = json!(false);
    let ev = compile_doc(flags).expect("at the limit");
    let e = ev.evaluate(&top, &user());
    assert_eq!(
        (e.variant, e.reason),
        (Some("off"), Reason::PrerequisiteFailed)
    );
    let all = ev.evaluate_all(&user());
    assert_eq!(all[0].reason, Reason::Disabled);
    assert!(
        all[1..]
            .iter()
            .all(|e| e.reason == Reason::PrerequisiteFailed),
        "{all:?}"
    );
}

#[test]
fn evaluation_at_the_depth_limit_needs_little_stack() {
    // 64 KiB of stack: prerequisites are resolved on an explicit stack,
    // not by recursion, so the depth of the chain does not matter.
    let ev = compile_doc(chain(MAX_PREREQUISITE_DEPTH + 1)).expect("at the limit");
    let top = key(MAX_PREREQUISITE_DEPTH);
    let variant = std::thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(move || ev.evaluate(&top, &user()).variant.map(str::to_string))
        .expect("thread")
        .join()
        .expect("no stack overflow");
    assert_eq!(variant.as_deref(), Some("on"));
}

/// Flag `i` requires the `width` flags before it: without memoisation the
/// top flag's evaluation visits the others exponentially often.
fn fan_in(len: usize, width: usize) -> Vec<Value> {
    (0..len)
        .map(|i| {
            let before: Vec<String> = (i.saturating_sub(width)..i).map(key).collect();
            flag(
                &key(i),
                &before.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        })
        .collect()
}

#[test]
fn prerequisites_that_fan_in_evaluate_to_the_same_results_as_a_plain_chain() {
    // 30 flags, each requiring the three before it: about 50 million
    // visits of the bottom flag without memoisation.
    let mut flags = fan_in(30, 3);
    let ev = compile_doc(flags.clone()).expect("compiles");
    let top = key(29);
    assert_eq!(ev.evaluate(&top, &user()).variant, Some("on"));
    assert!(
        ev.evaluate_all(&user())
            .iter()
            .all(|e| e.variant == Some("on"))
    );
    flags[5]["enabled"] = json!(false);
    let ev = compile_doc(flags).expect("compiles");
    let all = ev.evaluate_all(&user());
    for (i, e) in all.iter().enumerate() {
        let expected = match i {
            0 => Reason::Static,
            1..5 => Reason::Default,
            5 => Reason::Disabled,
            _ => Reason::PrerequisiteFailed,
        };
        assert_eq!(e.reason, expected, "{}", key(i));
        // A single evaluation agrees with the bulk one.
        assert_eq!(ev.evaluate(e.key, &user()), *e);
    }
    assert_eq!(
        ev.evaluate(&top, &user()).reason,
        Reason::PrerequisiteFailed
    );
}

#[test]
fn a_fan_in_deeper_than_the_limit_is_rejected() {
    let err = compile_doc(fan_in(MAX_PREREQUISITE_DEPTH + 2, 2)).expect_err("too deep");
    assert_eq!(err.key, key(MAX_PREREQUISITE_DEPTH + 1), "{err}");
}

#[test]
fn prerequisite_cycles_are_still_found_and_blamed_on_the_closing_edge() {
    let mut flags = chain(5000);
    flags[0]["prerequisites"] = json!([{"flag": key(2), "variations": ["on"]}]);
    let err = compile_doc(flags).expect_err("cycle");
    assert_eq!(err.key, key(1), "{err}");
    assert_eq!(err.field, "prerequisites[0].flag");
    assert!(
        err.message
            .contains("f-00000 -> f-00002 -> f-00001 -> f-00000"),
        "{err}"
    );
}

fn regex_flag(key: &str, patterns: impl Iterator<Item = String>) -> Value {
    let rules: Vec<Value> = patterns
        .map(|p| {
            json!({"conditions": [{"attribute": "email", "op": "matches", "value": p}],
                        "serve": {"variation": "on"}})
        })
        .collect();
    let mut f = flag(key, &[]);
    f["rules"] = json!(rules);
    f["fallthrough"] = json!({"variation": "off"});
    f
}

#[test]
fn a_thousand_short_regexes_with_large_programs_are_rejected_within_the_regex_memory_limit() {
    // `\w{10}` is six characters, but Unicode word characters make its
    // program over half a megabyte: a thousand of them held over a
    // gigabyte before the environment-wide limit.
    let flags = vec![regex_flag(
        "regexes",
        (0..1000).map(|i| format!(r"\w{{10}}{i}")),
    )];
    let err = compile_doc(flags).expect_err("over the regex memory limit");
    assert_eq!((err.kind, err.key.as_str()), ("flag", "regexes"), "{err}");
    assert!(
        err.field.starts_with("rules[") && err.field.ends_with("].conditions[0].value"),
        "{err}"
    );
    let rule: usize = err.field["rules[".len()..err.field.find(']').expect("]")]
        .parse()
        .expect("rule index");
    assert!((10..200).contains(&rule), "stopped at rule {rule}: {err}");
    assert!(err.message.contains("limit"), "{err}");
}

#[test]
fn hundreds_of_ordinary_regexes_fit_the_regex_memory_limit() {
    let flags = vec![regex_flag(
        "domains",
        (0..500).map(|i| format!(r"@(mail|team)-{i}\.example\.(com|org)$")),
    )];
    let ev = compile_doc(flags).expect("ordinary patterns fit");
    assert!(
        ev.regex_memory() <= REGEX_MEMORY_LIMIT,
        "{}",
        ev.regex_memory()
    );
    let ctx =
        Context::from_value(json!({"targetingKey": "u", "email": "ann@team-321.example.org"}))
            .expect("context");
    let e = ev.evaluate("domains", &ctx);
    assert_eq!((e.variant, e.rule), (Some("on"), Some(321)));
}

#[test]
fn a_regex_is_not_matched_against_a_string_longer_than_the_input_limit() {
    let mut f = flag("long", &[]);
    f["rules"] = json!([
        {"conditions": [{"attribute": "s", "op": "matches", "value": "^a+$"}], "serve": {"variation": "on"}},
        {"conditions": [{"attribute": "s", "op": "not_matches", "value": "^a+$"}], "serve": {"variation": "on"}}
    ]);
    f["fallthrough"] = json!({"variation": "off"});
    let ev = compile_doc(vec![f]).expect("compiles");
    let at = |len: usize| {
        let ctx = Context::from_value(json!({"targetingKey": "u", "s": "a".repeat(len)}))
            .expect("context");
        ev.evaluate("long", &ctx).rule
    };
    assert_eq!(at(REGEX_MAX_INPUT), Some(0));
    // Longer: neither `matches` nor `not_matches` holds.
    assert_eq!(at(REGEX_MAX_INPUT + 1), None);
}

#[test]
fn an_environment_over_the_evaluation_cost_limit_is_rejected_naming_its_most_expensive_flag() {
    // A segment of 2,000 rules, named by 300 rules of one flag: a bulk
    // evaluation would test 1.2 million conditions.
    let segment = json!({
        "key": "big", "included": [], "excluded": [],
        "rules": (0..2000)
            .map(|i| json!({"conditions": [{"attribute": "n", "op": "equals", "value": i}]}))
            .collect::<Vec<_>>()
    });
    let mut heavy = flag("heavy", &[]);
    heavy["rules"] = json!((0..300)
        .map(|_| json!({"conditions": [{"attribute": "targetingKey", "op": "in_segment", "value": ["big"]}],
                        "serve": {"variation": "on"}}))
        .collect::<Vec<_>>());
    let light = flag("light", &[]);
    let err = compile(&document(vec![light.clone(), heavy], vec![segment.clone()]))
        .expect_err("too costly");
    assert_eq!((err.kind, err.key.as_str()), ("flag", "heavy"), "{err}");
    assert!(
        err.message.contains(&MAX_EVALUATION_COST.to_string()),
        "{err}"
    );

    // The same segment named a few times is fine, and its cost is counted.
    let mut fine = flag("fine", &[]);
    fine["rules"] = json!([{"conditions": [{"attribute": "targetingKey", "op": "in_segment", "value": ["big"]}],
                            "serve": {"variation": "on"}}]);
    let ev = compile(&document(vec![light, fine], vec![segment])).expect("within the limit");
    assert!(ev.evaluation_cost() > 4000, "{}", ev.evaluation_cost());
    assert!(ev.evaluation_cost() < MAX_EVALUATION_COST);
}
