//! The `demo` project (`switchyard serve --demo`): one flag of each type, a
//! percentage rollout, a segment, two metric definitions and a running
//! experiment measuring them, in both environments.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use switchyard_core::model::{FlagType, Rule, Serve, Variation};

use crate::bootstrap::BOOTSTRAP_ACTOR;
use crate::error::Result;
use crate::store::ConfigStore;
use crate::types::*;

const PROJECT: &str = "demo";
const ENVIRONMENTS: [(&str, &str); 2] =
    [("development", "Development"), ("production", "Production")];

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

fn variations(values: &[(&str, Value)]) -> Vec<Variation> {
    values
        .iter()
        .map(|(key, value)| Variation {
            key: key.to_string(),
            value: value.clone(),
        })
        .collect()
}

/// The same settings in every environment.
fn everywhere(settings: Value) -> Result<BTreeMap<String, FlagEnvironment>> {
    let settings: FlagEnvironment = from_json(settings)?;
    Ok(ENVIRONMENTS
        .iter()
        .map(|(env, _)| (env.to_string(), settings.clone()))
        .collect())
}

fn flag(
    key: &str,
    name: &str,
    flag_type: FlagType,
    vars: Vec<Variation>,
    settings: Value,
) -> Result<FlagInput> {
    Ok(FlagInput {
        key: key.into(),
        name: name.into(),
        description: String::new(),
        flag_type,
        variations: vars,
        tags: vec!["demo".into()],
        metadata: Default::default(),
        archived: false,
        environments: everywhere(settings)?,
    })
}

pub(crate) async fn create(store: &dyn ConfigStore) -> Result<()> {
    let a = BOOTSTRAP_ACTOR;
    let project = ProjectInput {
        key: PROJECT.into(),
        name: "Demo".into(),
    };
    store.create_project(a, project).await?;
    for (key, name) in ENVIRONMENTS {
        let env = EnvironmentInput {
            key: key.into(),
            name: name.into(),
        };
        store.create_environment(a, PROJECT, env).await?;
    }
    store
        .create_segment(
            a,
            PROJECT,
            SegmentInput {
                key: "beta-testers".into(),
                name: "Beta testers".into(),
                description: "Users who opted in to early features".into(),
                included: vec!["user-1".into(), "user-2".into()],
                excluded: Vec::new(),
                rules: from_json(json!([{"conditions": [
                    {"attribute": "email", "op": "ends_with", "value": "@beta.example.com"}
                ]}]))?,
            },
        )
        .await?;
    let flags = [
        flag(
            "payments-kill-switch",
            "Payments kill switch",
            FlagType::Boolean,
            variations(&[("on", json!(true)), ("off", json!(false))]),
            json!({"enabled": true, "off_variation": "off", "fallthrough": {"variation": "on"}}),
        )?,
        flag(
            "max-cart-items",
            "Maximum items in the cart",
            FlagType::Number,
            variations(&[
                ("small", json!(10)),
                ("medium", json!(25)),
                ("large", json!(50)),
            ]),
            json!({"enabled": true, "off_variation": "medium",
                   "rules": [{"id": "pro-plan", "conditions": [
                       {"attribute": "plan", "op": "equals", "value": "pro"}],
                       "serve": {"variation": "large"}}],
                   "fallthrough": {"variation": "medium"}}),
        )?,
        flag(
            "welcome-banner",
            "Welcome banner",
            FlagType::Json,
            variations(&[
                ("blue", json!({"color": "blue", "text": "Welcome!"})),
                ("green", json!({"color": "green", "text": "Hello again"})),
            ]),
            json!({"enabled": true, "off_variation": "blue",
                   "rules": [{"conditions": [
                       {"attribute": "targetingKey", "op": "in_segment", "value": ["beta-testers"]}],
                       "serve": {"variation": "green"}}],
                   "fallthrough": {"variation": "blue"}}),
        )?,
        flag(
            "new-search",
            "New search (20 % rollout)",
            FlagType::Boolean,
            variations(&[("on", json!(true)), ("off", json!(false))]),
            json!({"enabled": true, "off_variation": "off",
                   "fallthrough": {"split": {"weights": [
                       {"variation": "on", "weight": 2000}, {"variation": "off", "weight": 8000}]}}}),
        )?,
        flag(
            "checkout-flow",
            "Checkout flow",
            FlagType::String,
            variations(&[
                ("classic", json!("classic")),
                ("one-page", json!("one-page")),
            ]),
            json!({"enabled": true, "off_variation": "classic",
                   "rules": [{"id": "staff", "conditions": [
                       {"attribute": "email", "op": "ends_with", "value": "@example.com"}],
                       "serve": {"variation": "one-page"}}],
                   "fallthrough": {"variation": "classic"}}),
        )?,
    ];
    for input in flags {
        store.create_flag(a, PROJECT, input).await?;
    }
    // What the experiment measures: whether a unit buys (a goal), and how
    // much (the sum of the purchases' `value`), from `purchase` events.
    let metrics = [
        json!({"key": "purchase", "name": "Purchase rate", "kind": "binomial",
               "numerator": {"event": "purchase"}}),
        json!({"key": "revenue", "name": "Revenue per unit", "kind": "sum",
               "numerator": {"event": "purchase"}}),
    ];
    for metric in metrics {
        store.create_metric(a, PROJECT, from_json(metric)?).await?;
    }
    // The experiment exists before the rule that hands units to it.
    for (env, _) in ENVIRONMENTS {
        let experiment = ExperimentInput {
            key: "checkout-test".into(),
            flag: "checkout-flow".into(),
            name: "One-page checkout".into(),
            hypothesis: "A one-page checkout raises the purchase rate".into(),
            variations: from_json(json!([
                {"variation": "classic", "weight": 5000},
                {"variation": "one-page", "weight": 5000}]))?,
            coverage: 10_000,
            bucket_by: "targetingKey".into(),
            conditions: Vec::new(),
            layer: None,
            holdouts: Vec::new(),
            metrics: vec!["purchase".into(), "revenue".into()],
            breakdown_by: None,
            guardrails: Default::default(),
        };
        let created = store.create_experiment(a, PROJECT, env, experiment).await?;
        store
            .start_experiment(a, PROJECT, env, &created.key, created.version)
            .await?;
    }
    let mut checkout = store.get_flag(PROJECT, "checkout-flow").await?;
    for settings in checkout.environments.values_mut() {
        settings.rules.push(Rule {
            id: Some("experiment".into()),
            conditions: Vec::new(),
            serve: Serve::Experiment("checkout-test".into()),
        });
    }
    let update = FlagInput {
        key: checkout.key.clone(),
        name: checkout.name,
        description: checkout.description,
        flag_type: checkout.flag_type,
        variations: checkout.variations,
        tags: checkout.tags,
        // Returned with every evaluation of the flag (OFREP `metadata`).
        metadata: serde_json::Map::from_iter([
            ("owner".to_string(), Value::from("growth-team")),
            ("experiment".to_string(), Value::from("checkout-test")),
        ]),
        archived: checkout.archived,
        environments: checkout.environments,
    };
    store
        .update_flag(a, PROJECT, &checkout.key, checkout.version, update)
        .await?;
    Ok(())
}
