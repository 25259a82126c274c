//! Instructions per evaluation, the figure that does not move with the
//! machine's load (criterion's times on a shared 2-core machine do):
//! the same five-rule flag read through the SDK's public API, through the
//! engine directly, and through the OpenFeature provider (called directly,
//! its future is ready at once), counted by callgrind.
//!
//! ```sh
//! cargo bench -p switchyard-sdk --bench instructions --no-run   # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!   --toggle-collect='instructions::sdk_loop' --toggle-collect='instructions::core_loop' \\
//!   --toggle-collect='instructions::provider_loop' \
//!   target/release/deps/instructions-HASH 100000
//! callgrind_annotate /tmp/cg.out | grep -E 'sdk_loop|core_loop|provider_loop'   # inclusive counts / 100000
//! ```
//!
//! Without valgrind it runs the loops once and prints the time per
//! evaluation of each, as a sanity check.

use std::hint::black_box;
use std::time::Instant;

use futures_util::FutureExt;
use open_feature::EvaluationContext;
use open_feature::provider::FeatureProvider;
use serde_json::json;
use switchyard_core::Evaluator;
use switchyard_sdk::openfeature::SwitchyardProvider;
use switchyard_sdk::{Client, Context};

mod common;
use common::{attributes, five_rule_flag};

#[inline(never)]
fn sdk_loop(client: &Client, ctx: &Context, n: u64) -> u64 {
    let mut on = 0;
    for _ in 0..n {
        on += u64::from(client.bool_value(black_box("checkout-bool"), black_box(ctx), false));
    }
    on
}

#[inline(never)]
fn provider_loop(provider: &SwitchyardProvider, ctx: &EvaluationContext, n: u64) -> u64 {
    let mut on = 0;
    for _ in 0..n {
        let r = provider
            .resolve_bool_value(black_box("checkout-bool"), black_box(ctx))
            .now_or_never()
            .expect("ready at once");
        on += u64::from(r.map(|d| d.value).unwrap_or(false));
    }
    on
}

#[inline(never)]
fn core_loop(evaluator: &Evaluator, ctx: &Context, n: u64) -> u64 {
    let mut on = 0;
    for _ in 0..n {
        let e = evaluator.evaluate(black_box("checkout-bool"), black_box(ctx));
        on += u64::from(e.value.and_then(|v| v.as_bool()).unwrap_or(false));
    }
    on
}

fn main() {
    // `cargo bench` passes `--bench`; the count is the first number given.
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let flag = five_rule_flag(
        "checkout-bool",
        "boolean",
        [json!(false), json!(true), json!(true)],
    );
    let doc = json!({"environment": "bench", "revision": 1, "flags": [flag]}).to_string();
    let client = Client::offline(&doc).expect("compiles");
    let evaluator = Evaluator::from_json(&doc).expect("compiles");
    let ctx = Context::from_value(attributes()).expect("object");
    assert_eq!(
        client.bool_details("checkout-bool", &ctx, false).rule,
        Some(4)
    );

    let t = Instant::now();
    let a = sdk_loop(&client, &ctx, n);
    let sdk = t.elapsed();
    let t = Instant::now();
    let b = core_loop(&evaluator, &ctx, n);
    let core = t.elapsed();
    assert_eq!(a, b, "the SDK and the engine agree");
    let provider = SwitchyardProvider::new(client.clone());
    let of_ctx = EvaluationContext::default()
        .with_targeting_key("user-48213")
        .with_custom_field("email", "someone@customer.org")
        .with_custom_field("country", "US")
        .with_custom_field("age", 34)
        .with_custom_field("app_version", "2.4.1")
        .with_custom_field("plan", "pro");
    let t = Instant::now();
    let c = provider_loop(&provider, &of_ctx, n);
    let of = t.elapsed();
    assert_eq!(a, c, "the provider agrees");
    let each = |d: std::time::Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "{n} evaluations: sdk {:.1} ns each, core {:.1} ns, OpenFeature provider {:.1} ns",
        each(sdk),
        each(core),
        each(of)
    );
}
