//! `switchyard eval`: evaluate a configuration document by hand. Prints
//! each evaluation as JSON with the names the HTTP answers use for the same
//! things (`errorCode`), and the evaluator's own reasons (`docs/evaluation.md`).

use std::path::Path;

use anyhow::Context as _;
use switchyard_core::{Context, Evaluator};

pub fn run(config: &Path, context: &str, flag: Option<&str>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let evaluator = Evaluator::from_json(&text)?;
    let ctx: serde_json::Value =
        serde_json::from_str(context).context("--context is not valid JSON")?;
    let ctx = Context::from_value(ctx).context("invalid --context")?;
    let out = match flag {
        Some(key) => serde_json::to_string_pretty(&evaluator.evaluate(key, &ctx))?,
        None => serde_json::to_string_pretty(&evaluator.evaluate_all(&ctx))?,
    };
    crate::print_stdout(&out)
}
