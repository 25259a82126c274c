//! SDK evaluation through the public API (issue target: a flag with five
//! rules under 100 ns median), all-flags evaluation of 20 flags, and the
//! OpenFeature provider's overhead over the direct call.
//!
//! The five-rule flag is the one of `switchyard-core`'s `eval` bench, so
//! the two read side by side: the difference is what the SDK adds (the
//! atomic load of the snapshot, the typed read).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use open_feature::EvaluationContext;
use open_feature::provider::FeatureProvider;
use serde_json::{Value, json};
use switchyard_sdk::openfeature::SwitchyardProvider;
use switchyard_sdk::{Client, Context};

mod common;
use common::{attributes, five_rule_flag};

fn bench(c: &mut Criterion) {
    let mut flags = vec![
        five_rule_flag("checkout", "string", [json!("A"), json!("B"), json!("C")]),
        five_rule_flag(
            "checkout-bool",
            "boolean",
            [json!(false), json!(true), json!(true)],
        ),
    ];
    for i in 0..18 {
        flags.push(five_rule_flag(
            &format!("flag-{i}"),
            "string",
            [json!("A"), json!("B"), json!("C")],
        ));
    }
    let doc = json!({"environment": "bench", "revision": 1, "flags": flags}).to_string();
    let client = Client::offline(&doc).expect("compiles");
    let ctx = Context::from_value(attributes()).expect("object");
    let d = client.string_details("checkout", &ctx, "x");
    assert_eq!(d.rule, Some(4), "the fifth rule serves");
    assert_eq!(client.all_flags(&ctx).len(), 20);

    c.bench_function("sdk/bool_value/5_rules", |b| {
        b.iter(|| client.bool_value(black_box("checkout-bool"), black_box(&ctx), false))
    });
    c.bench_function("sdk/string_value/5_rules", |b| {
        b.iter(|| client.string_value(black_box("checkout"), black_box(&ctx), "x"))
    });
    c.bench_function("sdk/with_value/5_rules", |b| {
        b.iter(|| {
            client.with_value(black_box("checkout"), black_box(&ctx), |v| {
                v.and_then(Value::as_str).map_or(0, str::len)
            })
        })
    });
    c.bench_function("sdk/string_details/5_rules", |b| {
        b.iter(|| client.string_details(black_box("checkout"), black_box(&ctx), "x"))
    });
    c.bench_function("sdk/all_flags/20_flags", |b| {
        b.iter(|| client.all_flags(black_box(&ctx)))
    });

    // OpenFeature: the provider called directly (its future is ready at
    // once, so no runtime is involved), and through the OpenFeature
    // client (context merging, hooks, the API's lock) on a runtime.
    let provider = SwitchyardProvider::new(client.clone());
    let mut of_ctx = EvaluationContext::default().with_targeting_key("user-48213");
    for (k, v) in attributes().as_object().expect("object") {
        if k == "targetingKey" {
            continue;
        }
        let field: open_feature::EvaluationContextFieldValue = match v {
            Value::String(s) => s.clone().into(),
            Value::Number(n) => n.as_i64().expect("integer").into(),
            _ => unreachable!(),
        };
        of_ctx = of_ctx.with_custom_field(k.as_str(), field);
    }
    c.bench_function("openfeature/provider_resolve_bool/5_rules", |b| {
        b.iter(|| {
            provider
                .resolve_bool_value(black_box("checkout-bool"), black_box(&of_ctx))
                .now_or_never()
                .expect("ready")
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let of_client = runtime.block_on(async {
        let mut api = open_feature::OpenFeature::default();
        api.set_provider(SwitchyardProvider::new(client.clone()))
            .await;
        api.create_client()
    });
    c.bench_function("openfeature/client_get_bool/5_rules", |b| {
        b.iter(|| {
            runtime.block_on(of_client.get_bool_value(
                black_box("checkout-bool"),
                Some(black_box(&of_ctx)),
                None,
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
