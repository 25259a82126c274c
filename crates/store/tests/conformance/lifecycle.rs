//! Conformance cases: the experiment lifecycle (pause, resume, ship, restart
//! as a new phase) and the one-write creation of a flag with its running
//! experiment.

use serde_json::json;
use switchyard_core::model::{ExperimentStatus, Serve};
use switchyard_store::*;

use crate::cases::{ACTOR, bool_flag, project};
use crate::harness::Target;

fn experiment(key: &str, flag: &str) -> ExperimentInput {
    serde_json::from_value(json!({
        "key": key, "flag": flag, "name": "Test",
        "variations": [{"variation": "off", "weight": 5000}, {"variation": "on", "weight": 5000}],
        "breakdown_by": "country"
    }))
    .unwrap()
}

async fn step(
    store: &dyn ConfigStore,
    version: Version,
    step: ExperimentStep,
) -> Result<ExperimentDefinition> {
    store
        .experiment_step(ACTOR, "p", "production", "e", version, step)
        .await
}

pub async fn an_experiment_pauses_resumes_ships_and_restarts_as_new_phases(t: Target) {
    let store = &*t.store;
    project(store).await;
    store.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    store
        .create_experiment(ACTOR, "p", "production", experiment("e", "f"))
        .await
        .unwrap();
    assert!(matches!(
        step(store, 1, ExperimentStep::Pause).await,
        Err(StoreError::WrongState(_))
    ));
    let running = store
        .start_experiment(ACTOR, "p", "production", "e", 1)
        .await
        .unwrap();
    assert_eq!(
        (
            running.phase,
            running.salt.as_deref(),
            running.breakdown_by.as_deref()
        ),
        (0, None, Some("country"))
    );
    assert!(matches!(
        step(store, 2, ExperimentStep::Resume).await,
        Err(StoreError::WrongState(_))
    ));
    assert!(matches!(
        step(store, 1, ExperimentStep::Pause).await,
        Err(StoreError::Conflict { .. })
    ));
    let paused = step(store, 2, ExperimentStep::Pause).await.unwrap();
    assert_eq!(
        (paused.status, paused.version),
        (ExperimentStatus::Paused, 3)
    );
    assert_eq!(
        store.get_experiment("p", "production", "e").await.unwrap(),
        paused
    );
    let doc = store.environment_document("p", "production").await.unwrap();
    assert_eq!(doc.experiments[0].status, ExperimentStatus::Paused);
    let resumed = step(store, 3, ExperimentStep::Resume).await.unwrap();
    assert_eq!(resumed.status, ExperimentStatus::Running);
    assert_eq!(
        resumed.started_at, running.started_at,
        "resume keeps the phase"
    );

    assert!(matches!(
        step(store, 4, ExperimentStep::Ship { variation: "nope".into() }).await,
        Err(StoreError::InvalidField { field, .. }) if field == "variation"
    ));
    let shipped = step(
        store,
        4,
        ExperimentStep::Ship {
            variation: "on".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (shipped.status, shipped.winner.as_deref(), shipped.version),
        (ExperimentStatus::Stopped, Some("on"), 5)
    );
    assert!(shipped.stopped_at.is_some());

    let restarted = step(
        store,
        5,
        ExperimentStep::Restart(RestartInput {
            reshuffle: true,
            coverage: Some(2500),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        (restarted.status, restarted.phase, restarted.salt.as_deref()),
        (ExperimentStatus::Running, 1, Some("e#1"))
    );
    assert_eq!(
        (restarted.winner.as_deref(), restarted.stopped_at),
        (None, None)
    );
    assert_eq!(restarted.coverage, 2500);
    assert!(restarted.started_at >= shipped.stopped_at);
    assert_eq!(
        store.get_experiment("p", "production", "e").await.unwrap(),
        restarted
    );
    let doc = store.environment_document("p", "production").await.unwrap();
    assert_eq!(doc.experiments[0].salt.as_deref(), Some("e#1"));

    let actions: Vec<_> = store
        .list_audit(AuditFilter {
            resource_kind: Some("experiment".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["restart", "ship", "resume", "pause", "start", "create"]
    );
}

pub async fn one_write_creates_a_flag_and_its_running_experiment_or_nothing(t: Target) {
    let store = &*t.store;
    project(store).await;
    let audit_len = || async {
        store
            .list_audit(AuditFilter::default())
            .await
            .unwrap()
            .len()
    };
    let before = audit_len().await;
    // The experiment names a variation the new flag lacks: the compile
    // check refuses it, and neither is written.
    let mut bad = experiment("e", "g");
    bad.variations[1].variation = "purple".into();
    let r = store
        .create_experiment_with(
            ACTOR,
            "p",
            "production",
            NewExperiment {
                experiment: bad,
                flag: Some(bool_flag("g")),
                start: true,
            },
        )
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert!(matches!(
        store.get_flag("p", "g").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(audit_len().await, before);

    let created = store
        .create_experiment_with(
            ACTOR,
            "p",
            "production",
            NewExperiment {
                experiment: experiment("e", "g"),
                flag: Some(bool_flag("g")),
                start: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (created.status, created.version, created.phase),
        (ExperimentStatus::Running, 1, 0)
    );
    assert!(created.started_at.is_some());
    let flag = store.get_flag("p", "g").await.unwrap();
    let prod = flag.settings_for("production");
    assert!(prod.enabled);
    assert_eq!(prod.fallthrough, Serve::Experiment("e".into()));
    assert_eq!(prod.off_variation, "off");
    assert!(!flag.settings_for("development").enabled);
    assert_eq!(audit_len().await, before + 2);

    // A taken experiment key: nothing more is written, not even the flag.
    let r = store
        .create_experiment_with(
            ACTOR,
            "p",
            "production",
            NewExperiment {
                experiment: experiment("e", "h"),
                flag: Some(bool_flag("h")),
                start: false,
            },
        )
        .await;
    assert!(matches!(r, Err(StoreError::AlreadyExists { .. })), "{r:?}");
    assert!(matches!(
        store.get_flag("p", "h").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(audit_len().await, before + 2);
}
