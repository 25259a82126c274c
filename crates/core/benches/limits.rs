//! What the evaluation limits (`switchyard_core::limits`) cost and bound:
//! - the time of one cost unit (a flag of 200 non-matching `equals` rules,
//!   divided by its cost) next to one regex matched against hostile input
//!   of `REGEX_MAX_INPUT` bytes (per unit of its cost), so the unit weights
//!   can be checked;
//! - prerequisite resolution (a chain at the depth limit, a fan-in), next
//!   to a flag without prerequisites in the same run;
//! - compilation of 1k, 5k and 10k flags, which must grow linearly.
//!
//! Each benchmark's setup prints the cost (units) of what it measures, so
//! that ns per unit is a division away. The allocator is the server's
//! (mimalloc): compilation allocates much, and glibc's malloc makes it
//! look worse than it is in the server.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchyard_core::limits::{MAX_PREREQUISITE_DEPTH, REGEX_MAX_INPUT};
use switchyard_core::{ConfigDocument, Context, Evaluator, compile};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn flag(key: &str, prerequisites: &[String], rules: Value) -> Value {
    json!({
        "key": key, "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "enabled": true, "off_variation": "off",
        "prerequisites": prerequisites.iter()
            .map(|p| json!({"flag": p, "variations": ["on"]}))
            .collect::<Vec<_>>(),
        "rules": rules,
        "fallthrough": {"variation": "on"}
    })
}

fn evaluator(flags: Vec<Value>) -> Evaluator {
    let doc: ConfigDocument = serde_json::from_value(json!({"flags": flags})).expect("doc");
    compile(&doc).expect("compiles")
}

fn context(extra: Value) -> Context {
    let mut ctx = json!({"targetingKey": "user-48213", "country": "US", "plan": "pro"});
    if let (Some(m), Value::Object(extra)) = (ctx.as_object_mut(), extra) {
        m.extend(extra);
    }
    Context::from_value(ctx).expect("object")
}

fn units(c: &mut Criterion) {
    let mut g = c.benchmark_group("limits/unit");
    g.measurement_time(Duration::from_secs(3));
    let rules: Vec<Value> = (0..200)
        .map(|i| json!({"conditions": [{"attribute": "country", "op": "equals", "value": format!("C{i}")}],
                        "serve": {"variation": "off"}}))
        .collect();
    let ev = evaluator(vec![flag("f", &[], json!(rules))]);
    let ctx = context(json!({}));
    eprintln!(
        "limits/unit/200_equals_rules: {} units",
        ev.evaluation_cost()
    );
    g.bench_function("200_equals_rules", |b| {
        b.iter(|| black_box(ev.evaluate(black_box("f"), black_box(&ctx))))
    });

    // Patterns and the hostile input (REGEX_MAX_INPUT bytes) that keeps
    // them busy longest among the ones we tried.
    let cases = [
        (
            "email_domain",
            r"@example\.com$",
            "ab".repeat(REGEX_MAX_INPUT / 2),
        ),
        (
            "unicode_word_email",
            r"[\w\.]+@[\w\.]+",
            "aé1_".repeat(REGEX_MAX_INPUT / 5),
        ),
        (
            "unicode_word_x10",
            r"\w{10}",
            "aé1_x@".repeat(REGEX_MAX_INPUT / 7),
        ),
        (
            "counting",
            r"(a|b)*a(a|b){20}",
            "ab".repeat(REGEX_MAX_INPUT / 2),
        ),
    ];
    for (name, pattern, input) in cases {
        let rules = json!([{"conditions": [{"attribute": "s", "op": "matches", "value": pattern}],
                            "serve": {"variation": "off"}}]);
        let ev = evaluator(vec![flag("f", &[], rules)]);
        let ctx = context(json!({ "s": input }));
        eprintln!(
            "limits/unit/regex_{name}: {} units, {} bytes of regex memory",
            ev.evaluation_cost(),
            ev.regex_memory()
        );
        g.bench_function(format!("regex_{name}"), |b| {
            b.iter(|| black_box(ev.evaluate(black_box("f"), black_box(&ctx))))
        });
    }
    g.finish();
}

fn prerequisites(c: &mut Criterion) {
    let mut g = c.benchmark_group("limits/prerequisites");
    g.measurement_time(Duration::from_secs(3));
    let ctx = context(json!({}));
    let key = |i: usize| format!("f{i}");

    let plain = evaluator(vec![flag("f0", &[], json!([]))]);
    g.bench_function("no_prerequisite", |b| {
        b.iter(|| black_box(plain.evaluate(black_box("f0"), black_box(&ctx))))
    });
    let one = evaluator(vec![
        flag("f0", &[], json!([])),
        flag("f1", &[key(0)], json!([])),
    ]);
    g.bench_function("one_prerequisite", |b| {
        b.iter(|| black_box(one.evaluate(black_box("f1"), black_box(&ctx))))
    });

    let depth = MAX_PREREQUISITE_DEPTH;
    let chain = evaluator(
        (0..=depth)
            .map(|i| {
                let p: Vec<String> = i.checked_sub(1).map(key).into_iter().collect();
                flag(&key(i), &p, json!([]))
            })
            .collect(),
    );
    let top = key(depth);
    g.bench_function(format!("chain_{depth}_deep"), |b| {
        b.iter(|| black_box(chain.evaluate(black_box(&top), black_box(&ctx))))
    });

    // Each flag requires the three before it: exponential without a memo.
    let fan = evaluator(
        (0..30)
            .map(|i: usize| {
                let p: Vec<String> = (i.saturating_sub(3)..i).map(key).collect();
                flag(&key(i), &p, json!([]))
            })
            .collect(),
    );
    g.bench_function("fan_in_30x3_top", |b| {
        b.iter(|| black_box(fan.evaluate(black_box("f29"), black_box(&ctx))))
    });
    g.bench_function("fan_in_30x3_all", |b| {
        b.iter(|| black_box(fan.evaluate_all(black_box(&ctx))))
    });
    g.finish();
}

/// A flag like the evaluation benchmark's: five rules, common operators.
fn five_rule_flag(key: &str) -> Value {
    json!({
        "key": key, "type": "string",
        "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}, {"key": "c", "value": "C"}],
        "enabled": true, "off_variation": "a",
        "rules": [
            {"conditions": [{"attribute": "email", "op": "ends_with", "value": "@example.com"}], "serve": {"variation": "b"}},
            {"conditions": [{"attribute": "country", "op": "in", "value": ["DE", "FR", "NL", "SE", "NO"]}], "serve": {"variation": "c"}},
            {"conditions": [{"attribute": "age", "op": "gte", "value": 65}], "serve": {"variation": "b"}},
            {"conditions": [{"attribute": "app_version", "op": "semver_lt", "value": "2.0.0"}], "serve": {"variation": "a"}},
            {"conditions": [{"attribute": "plan", "op": "equals", "value": "pro"}],
             "serve": {"split": {"weights": [{"variation": "b", "weight": 5000}, {"variation": "c", "weight": 5000}]}}}
        ],
        "fallthrough": {"variation": "a"}
    })
}

fn compilation(c: &mut Criterion) {
    let mut g = c.benchmark_group("limits/compile");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    for n in [1_000usize, 5_000, 10_000] {
        // Every tenth flag requires the one before it.
        let flags: Vec<Value> = (0..n)
            .map(|i| {
                let mut f = five_rule_flag(&format!("flag-{i:05}"));
                if i % 10 == 1 {
                    f["prerequisites"] =
                        json!([{"flag": format!("flag-{:05}", i - 1), "variations": ["a"]}]);
                }
                f
            })
            .collect();
        let doc: ConfigDocument = serde_json::from_value(json!({"flags": flags})).expect("doc");
        g.bench_with_input(BenchmarkId::new("flags", n), &doc, |b, doc| {
            b.iter(|| black_box(compile(black_box(doc)).expect("compiles")))
        });
    }
    g.finish();
}

criterion_group!(benches, units, prerequisites, compilation);
criterion_main!(benches);
