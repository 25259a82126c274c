//! Conformance cases: experiment alerts.

use serde_json::json;
use switchyard_store::*;

use crate::cases::{ACTOR, bool_flag, project};
use crate::harness::Target;

fn harmed(phase: u32, metric: &str) -> AlertInput {
    AlertInput {
        phase,
        kind: "guardrail_harmed".into(),
        metric: Some(metric.into()),
        variation: Some("on".into()),
        message: format!("guardrail {metric:?} harmed"),
        action: "recorded".into(),
    }
}

pub async fn an_alert_is_recorded_once_per_finding_and_phase_and_audited(t: Target) {
    let store = &*t.store;
    project(store).await;
    store.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    let input: ExperimentInput = serde_json::from_value(json!({
        "key": "e", "flag": "f", "name": "Test",
        "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
        "metrics": []
    }))
    .unwrap();
    store
        .create_experiment(ACTOR, "p", "production", input)
        .await
        .unwrap();

    let first = store
        .record_experiment_alert(
            "system:guardrails",
            "p",
            "production",
            "e",
            harmed(0, "errors"),
        )
        .await
        .unwrap()
        .expect("a new finding is recorded");
    assert_eq!(first.metric.as_deref(), Some("errors"));
    // The same finding again: nothing new, nothing audited.
    assert_eq!(
        store
            .record_experiment_alert(
                "system:guardrails",
                "p",
                "production",
                "e",
                harmed(0, "errors")
            )
            .await
            .unwrap(),
        None
    );
    // Another metric, the same metric in a new phase, and a mismatch.
    for input in [
        harmed(0, "latency"),
        harmed(1, "errors"),
        AlertInput {
            phase: 1,
            kind: "sample_ratio_mismatch".into(),
            metric: None,
            variation: None,
            message: "sample ratio mismatch".into(),
            action: "stopped".into(),
        },
    ] {
        assert!(
            store
                .record_experiment_alert("system:guardrails", "p", "production", "e", input)
                .await
                .unwrap()
                .is_some()
        );
    }
    let listed = store
        .list_experiment_alerts("p", "production", "e")
        .await
        .unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let srm = listed
        .iter()
        .find(|a| a.kind == "sample_ratio_mismatch")
        .unwrap();
    assert_eq!(
        (srm.metric.as_deref(), srm.action.as_str()),
        (None, "stopped")
    );
    let audited = store
        .list_audit(AuditFilter {
            project: Some("p".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let alerts: Vec<_> = audited.iter().filter(|a| a.action == "alert").collect();
    assert_eq!(alerts.len(), 4, "one audit entry per recorded alert");
    assert!(alerts.iter().all(|a| a.actor == "system:guardrails"));
    // Elsewhere: no alerts, and an unknown experiment is not found.
    assert!(
        store
            .list_experiment_alerts("p", "development", "e")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .record_experiment_alert(ACTOR, "p", "production", "nope", harmed(0, "x"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // A NUL character is refused like everywhere else.
    assert!(matches!(
        store
            .record_experiment_alert(ACTOR, "p", "production", "e", harmed(0, "a\0b"))
            .await,
        Err(StoreError::InvalidField { .. })
    ));
    // Deleting the experiment deletes its alerts.
    let current = store.get_experiment("p", "production", "e").await.unwrap();
    store
        .delete_experiment(ACTOR, "p", "production", "e", current.version)
        .await
        .unwrap();
    assert!(
        store
            .list_experiment_alerts("p", "production", "e")
            .await
            .unwrap()
            .is_empty()
    );
}
