//! Conformance cases: metric definitions and the experiments that name them.

use serde_json::json;
use switchyard_core::metric::{MetricDefinition, MetricKind, MetricRole};
use switchyard_store::*;

use crate::cases::{ACTOR, bool_flag, project};
use crate::harness::Target;

fn definition(value: serde_json::Value) -> MetricDefinition {
    serde_json::from_value(value).unwrap()
}

fn revenue() -> MetricDefinition {
    definition(json!({"key": "revenue", "kind": "sum", "numerator": {"event": "purchase"}}))
}

fn experiment(metrics: serde_json::Value) -> ExperimentInput {
    serde_json::from_value(json!({
        "key": "e", "flag": "f", "name": "E",
        "variations": [{"variation": "on", "weight": 5000}, {"variation": "off", "weight": 5000}],
        "metrics": metrics
    }))
    .unwrap()
}

fn invalid_field<T: std::fmt::Debug>(r: Result<T, StoreError>) -> (String, String) {
    match r {
        Err(StoreError::InvalidField { field, message }) => (field, message),
        other => panic!("expected InvalidField, got {other:?}"),
    }
}

pub async fn metrics_are_created_read_replaced_and_deleted_with_audit(t: Target) {
    let store = &*t.store;
    project(store).await;
    let created = store.create_metric(ACTOR, "p", revenue()).await.unwrap();
    assert_eq!((created.project.as_str(), created.version), ("p", 1));
    assert_eq!(created.definition, revenue());
    assert_eq!(store.get_metric("p", "revenue").await.unwrap(), created);

    let mut capped = revenue();
    capped.cap = Some(switchyard_core::metric::Cap::Fixed(500.0));
    capped.window_hours = Some(72);
    assert!(matches!(
        store
            .update_metric(ACTOR, "p", "revenue", 9, capped.clone())
            .await,
        Err(StoreError::Conflict { current: 1, .. })
    ));
    let replaced = store
        .update_metric(ACTOR, "p", "revenue", 1, capped.clone())
        .await
        .unwrap();
    assert_eq!((replaced.version, &replaced.definition), (2, &capped));
    let mut renamed = capped.clone();
    renamed.key = "other".into();
    assert!(matches!(
        store.update_metric(ACTOR, "p", "revenue", 2, renamed).await,
        Err(StoreError::Invalid(_))
    ));
    let mut rate =
        definition(json!({"key": "a-rate", "kind": "binomial", "numerator": {"event": "a"}}));
    store.create_metric(ACTOR, "p", rate.clone()).await.unwrap();
    let keys: Vec<_> = store
        .list_metrics("p")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.definition.key)
        .collect();
    assert_eq!(keys, ["a-rate", "revenue"]);
    assert!(matches!(
        store.create_metric(ACTOR, "p", rate.clone()).await,
        Err(StoreError::AlreadyExists { kind: "metric", .. })
    ));
    rate.key = "b".into();
    assert!(matches!(
        store.create_metric(ACTOR, "nope", rate).await,
        Err(StoreError::NotFound {
            kind: "project",
            ..
        })
    ));

    store.delete_metric(ACTOR, "p", "revenue", 2).await.unwrap();
    assert!(matches!(
        store.get_metric("p", "revenue").await,
        Err(StoreError::NotFound { kind: "metric", .. })
    ));
    let audit = store
        .list_audit(AuditFilter {
            resource_kind: Some("metric".into()),
            resource_key: Some("revenue".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["delete", "update", "create"]);
    assert_eq!(audit[1].before.as_ref().unwrap()["version"], 1);
    assert_eq!(
        audit[1].after.as_ref().unwrap()["cap"],
        json!({"fixed": 500.0})
    );
    assert_eq!(audit[0].project.as_deref(), Some("p"));
}

pub async fn an_invalid_metric_is_refused_naming_its_field_and_nothing_is_written(t: Target) {
    let store = &*t.store;
    project(store).await;
    let bad = [
        (
            json!({"key": "r", "kind": "ratio", "numerator": {"event": "a"}}),
            "denominator",
        ),
        (
            json!({"key": "r", "kind": "sum", "numerator": {"event": "a"}, "cap": {"percentile": 1.5}}),
            "cap.percentile",
        ),
        (
            json!({"key": "r", "kind": "count", "numerator": {"event": "a"}, "window_hours": 0}),
            "window_hours",
        ),
        (
            json!({"key": "r", "kind": "count", "numerator": {"event": "a",
                "conditions": [{"attribute": "x", "op": "matches", "value": "("}]}}),
            "numerator.conditions[0].value",
        ),
    ];
    for (value, field) in bad {
        let (f, message) = invalid_field(store.create_metric(ACTOR, "p", definition(value)).await);
        assert_eq!(f, field);
        assert!(message.contains(field), "{message}");
    }
    assert!(store.list_metrics("p").await.unwrap().is_empty());
    let created = store.create_metric(ACTOR, "p", revenue()).await.unwrap();
    let mut bad = revenue();
    bad.kind = MetricKind::Binomial;
    bad.cap = Some(switchyard_core::metric::Cap::Fixed(1.0));
    let (f, _) = invalid_field(store.update_metric(ACTOR, "p", "revenue", 1, bad).await);
    assert_eq!(f, "cap");
    assert_eq!(store.get_metric("p", "revenue").await.unwrap(), created);
}

pub async fn experiments_name_defined_metrics_with_roles_and_keep_them_from_deletion(t: Target) {
    let store = &*t.store;
    project(store).await;
    store.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    store.create_metric(ACTOR, "p", revenue()).await.unwrap();

    let (field, message) = invalid_field(
        store
            .create_experiment(
                ACTOR,
                "p",
                "production",
                experiment(json!(["revenue", "nope"])),
            )
            .await,
    );
    assert_eq!(field, "metrics[1]");
    assert!(message.contains("\"nope\""), "{message}");
    let (field, _) = invalid_field(
        store
            .create_experiment(
                ACTOR,
                "p",
                "production",
                experiment(json!(["revenue", "revenue"])),
            )
            .await,
    );
    assert_eq!(field, "metrics[1]");
    assert!(
        store
            .list_experiments("p", "production")
            .await
            .unwrap()
            .is_empty()
    );

    let e = store
        .create_experiment(
            ACTOR,
            "p",
            "production",
            experiment(json!([{"metric": "revenue", "role": "guardrail"}])),
        )
        .await
        .unwrap();
    assert_eq!(
        e.metrics,
        [MetricRef {
            metric: "revenue".into(),
            role: MetricRole::Guardrail
        }]
    );
    let (field, _) = invalid_field(
        store
            .update_experiment(
                ACTOR,
                "p",
                "production",
                "e",
                1,
                experiment(json!(["gone"])),
            )
            .await,
    );
    assert_eq!(field, "metrics[0]");

    match store.delete_metric(ACTOR, "p", "revenue", 1).await {
        Err(StoreError::InUse {
            kind: "metric",
            users,
            ..
        }) => {
            assert_eq!(users, ["experiment \"production/e\""]);
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    assert!(store.get_metric("p", "revenue").await.is_ok());
    store
        .delete_experiment(ACTOR, "p", "production", "e", e.version)
        .await
        .unwrap();
    store.delete_metric(ACTOR, "p", "revenue", 1).await.unwrap();
}
