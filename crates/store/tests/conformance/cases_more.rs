//! Conformance cases: experiments, API keys, documents, notification, bootstrap.

use std::time::Duration;

use serde_json::json;
use switchyard_core::model::ExperimentStatus;
use switchyard_store::*;
use tokio::sync::broadcast;

use crate::cases::{ACTOR, bool_flag, project, settings};
use crate::harness::Target;

fn experiment(key: &str, flag: &str) -> ExperimentInput {
    serde_json::from_value(json!({
        "key": key, "flag": flag, "name": "Test", "hypothesis": "on is better",
        "variations": [{"variation": "on", "weight": 5000}, {"variation": "off", "weight": 5000}],
        "metrics": ["purchase"]
    }))
    .unwrap()
}

/// A binomial metric on the event of its name, which experiments may name.
async fn metric(store: &dyn ConfigStore, key: &str) -> Metric {
    let definition = serde_json::from_value(json!({
        "key": key, "kind": "binomial", "numerator": {"event": key}}))
    .unwrap();
    store.create_metric(ACTOR, "p", definition).await.unwrap()
}

pub async fn an_experiment_goes_from_draft_to_running_to_stopped_and_never_back_to_draft(
    t: Target,
) {
    let store = &*t.store;
    project(store).await;
    metric(store, "purchase").await;
    store.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    let draft = store
        .create_experiment(ACTOR, "p", "production", experiment("e", "f"))
        .await
        .unwrap();
    assert_eq!(
        (draft.status, draft.version, draft.started_at),
        (ExperimentStatus::Draft, 1, None)
    );
    assert_eq!(draft.metrics, ["purchase"]);
    let mut edit = experiment("e", "f");
    edit.coverage = 5000;
    let edited = store
        .update_experiment(ACTOR, "p", "production", "e", 1, edit.clone())
        .await
        .unwrap();
    assert_eq!((edited.coverage, edited.version), (5000, 2));
    assert!(
        store
            .list_experiments("p", "development")
            .await
            .unwrap()
            .is_empty()
    );

    assert!(matches!(
        store
            .stop_experiment(ACTOR, "p", "production", "e", 2, None)
            .await,
        Err(StoreError::WrongState(_))
    ));
    let running = store
        .start_experiment(ACTOR, "p", "production", "e", 2)
        .await
        .unwrap();
    assert_eq!(
        (running.status, running.version),
        (ExperimentStatus::Running, 3)
    );
    assert!(running.started_at.is_some());
    assert!(matches!(
        store
            .start_experiment(ACTOR, "p", "production", "e", 3)
            .await,
        Err(StoreError::WrongState(_))
    ));
    // A running experiment takes a ramp, not new weights.
    let mut reweighted = edit.clone();
    reweighted.variations[0].weight = 4000;
    reweighted.variations[1].weight = 6000;
    assert!(matches!(
        store
            .update_experiment(ACTOR, "p", "production", "e", 3, reweighted)
            .await,
        Err(StoreError::WrongState(m)) if m.contains("variations") && m.contains("restart")
    ));
    edit.coverage = 8000;
    let ramped = store
        .update_experiment(ACTOR, "p", "production", "e", 3, edit.clone())
        .await
        .unwrap();
    assert_eq!(
        (ramped.coverage, ramped.status, ramped.version),
        (8000, ExperimentStatus::Running, 4)
    );
    assert!(matches!(
        store
            .stop_experiment(ACTOR, "p", "production", "e", 4, Some("nope".into()))
            .await,
        Err(StoreError::InvalidField { field, .. }) if field == "winner"
    ));
    let stopped = store
        .stop_experiment(ACTOR, "p", "production", "e", 4, Some("on".into()))
        .await
        .unwrap();
    assert_eq!(
        (stopped.status, stopped.winner.as_deref()),
        (ExperimentStatus::Stopped, Some("on"))
    );
    assert!(stopped.stopped_at.is_some());
    assert_eq!(
        store.get_experiment("p", "production", "e").await.unwrap(),
        stopped
    );
    assert!(matches!(
        store
            .start_experiment(ACTOR, "p", "production", "e", 5)
            .await,
        Err(StoreError::WrongState(_))
    ));
    assert!(matches!(
        store
            .update_experiment(ACTOR, "p", "production", "e", 5, edit)
            .await,
        Err(StoreError::WrongState(_))
    ));
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
    assert_eq!(actions, ["stop", "update", "start", "update", "create"]);
    store
        .delete_experiment(ACTOR, "p", "production", "e", 5)
        .await
        .unwrap();
    assert!(matches!(
        store.get_experiment("p", "production", "e").await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn api_keys_authenticate_until_revoked_and_their_secret_is_not_stored(t: Target) {
    let store = &*t.store;
    project(store).await;
    let server = store
        .create_api_key(
            ACTOR,
            ApiKeyInput {
                name: "backend".into(),
                kind: ApiKeyKind::Server,
                project: Some("p".into()),
                environment: Some("production".into()),
            },
        )
        .await
        .unwrap();
    assert!(server.secret.starts_with("sy_server_"));
    assert_eq!(server.secret.len(), "sy_server_".len() + 32);
    assert!(server.secret.starts_with(&server.key.prefix));
    let admin = store
        .create_api_key(
            ACTOR,
            ApiKeyInput {
                name: "ops".into(),
                kind: ApiKeyKind::Admin(Role::Editor),
                project: None,
                environment: None,
            },
        )
        .await
        .unwrap();
    assert_ne!(admin.secret, server.secret);

    assert_eq!(
        store.authenticate(&server.secret).await.unwrap(),
        Some(server.key.clone())
    );
    let found = store.authenticate(&admin.secret).await.unwrap().unwrap();
    assert_eq!(found.kind, ApiKeyKind::Admin(Role::Editor));
    assert_eq!(
        store.authenticate("sy_server_notarealkey").await.unwrap(),
        None
    );
    assert_eq!(store.list_api_keys().await.unwrap().len(), 2);

    let raw = t.raw_api_keys().await;
    assert!(
        raw.contains(&server.key.id),
        "the dump should show the keys"
    );
    assert!(!raw.contains(&server.secret) && !raw.contains(&admin.secret));
    let audit =
        serde_json::to_string(&store.list_audit(AuditFilter::default()).await.unwrap()).unwrap();
    assert!(!audit.contains(&server.secret));

    let revoked = store.revoke_api_key(ACTOR, &server.key.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(store.authenticate(&server.secret).await.unwrap(), None);
    assert_eq!(store.get_api_key(&server.key.id).await.unwrap(), revoked);
    assert!(store.authenticate(&admin.secret).await.unwrap().is_some());

    let client_without_env = ApiKeyInput {
        name: "web".into(),
        kind: ApiKeyKind::Client,
        project: Some("p".into()),
        environment: None,
    };
    assert!(matches!(
        store.create_api_key(ACTOR, client_without_env).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn the_environment_document_holds_that_environments_configuration(t: Target) {
    let store = &*t.store;
    project(store).await;
    metric(store, "purchase").await;
    store
        .create_segment(
            ACTOR,
            "p",
            SegmentInput {
                key: "beta".into(),
                name: "Beta".into(),
                description: String::new(),
                included: vec!["u-1".into()],
                excluded: vec![],
                rules: vec![],
            },
        )
        .await
        .unwrap();
    let mut f = bool_flag("f");
    f.environments.insert(
        "production".into(),
        settings(json!({"enabled": true, "off_variation": "off",
            "rules": [{"conditions": [{"attribute": "targetingKey", "op": "in_segment", "value": ["beta"]}],
                       "serve": {"variation": "on"}}],
            "fallthrough": {"variation": "off"}})),
    );
    store.create_flag(ACTOR, "p", f).await.unwrap();
    let mut archived = bool_flag("old");
    archived.archived = true;
    store.create_flag(ACTOR, "p", archived).await.unwrap();
    store
        .create_holdout(
            ACTOR,
            "p",
            "production",
            HoldoutInput {
                key: "h".into(),
                size: 100,
                bucket_by: "targetingKey".into(),
            },
        )
        .await
        .unwrap();
    let mut e = experiment("e", "f");
    e.holdouts = vec!["h".into()];
    store
        .create_experiment(ACTOR, "p", "production", e)
        .await
        .unwrap();

    let prod = store.environment_document("p", "production").await.unwrap();
    let dev = store
        .environment_document("p", "development")
        .await
        .unwrap();
    assert_eq!(prod.environment, "production");
    let flag_keys: Vec<_> = prod.flags.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(flag_keys, ["f"], "archived flags stay out");
    assert!(prod.flags[0].enabled);
    assert_eq!(prod.flags[0].rules.len(), 1);
    assert!(!dev.flags[0].enabled);
    assert_eq!(prod.segments.len(), 1);
    assert_eq!(dev.segments.len(), 1, "segments belong to the project");
    assert_eq!(prod.experiments.len(), 1);
    assert_eq!(prod.experiments[0].holdouts, ["h"]);
    assert_eq!(prod.holdouts.len(), 1);
    assert!(dev.experiments.is_empty() && dev.holdouts.is_empty());
    assert_eq!(prod.revision, dev.revision);
    switchyard_core::compile(&prod).unwrap();

    // Every change raises the revision.
    store
        .update_environment(ACTOR, "p", "development", 1, "Dev")
        .await
        .unwrap();
    assert!(
        store
            .environment_document("p", "production")
            .await
            .unwrap()
            .revision
            > prod.revision
    );
    assert!(matches!(
        store.environment_document("p", "staging").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn next(rx: &mut broadcast::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no change notification within 5 s")
        .unwrap()
}

pub async fn subscribers_hear_of_every_committed_write(t: Target) {
    let store = &*t.store;
    let mut rx = store.subscribe();
    project(store).await;
    let mut last = 0;
    for expected_env in [None, Some("development"), Some("production")] {
        let change = next(&mut rx).await;
        assert_eq!(
            (change.project.as_str(), change.environment.as_deref()),
            ("p", expected_env)
        );
        assert!(change.revision > last);
        last = change.revision;
    }
    store.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    let change = next(&mut rx).await;
    assert_eq!(change.environment, None);
    assert_eq!(
        change.revision,
        store
            .environment_document("p", "production")
            .await
            .unwrap()
            .revision
    );
    // A rejected write announces nothing.
    assert!(store.create_flag(ACTOR, "p", bool_flag("f")).await.is_err());
    assert!(rx.try_recv().is_err());
}

pub async fn another_node_hears_of_changes(t: Target) {
    let other = t.open_another().await;
    let mut rx = other.subscribe();
    project(&*t.store).await;
    let first = next(&mut rx).await;
    assert_eq!((first.project.as_str(), first.environment), ("p", None));
    next(&mut rx).await;
    next(&mut rx).await;
    // And back: a write on the other node reaches this one, exactly once.
    let mut here = t.store.subscribe();
    other.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    let change = next(&mut here).await;
    assert_eq!(
        change.revision,
        t.store
            .environment_document("p", "production")
            .await
            .unwrap()
            .revision
    );
    let own = next(&mut rx).await;
    assert_eq!(own, change);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "a node hears its own change once");
}

pub async fn bootstrap_creates_the_default_project_and_an_admin_key_once(t: Target) {
    let store = &*t.store;
    let out = bootstrap(store, false)
        .await
        .unwrap()
        .expect("first start creates a key");
    assert!(out.admin_key_secret.starts_with("sy_admin_"));
    let key = store
        .authenticate(&out.admin_key_secret)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.kind, ApiKeyKind::Admin(Role::Admin));
    assert!(store.organisation().await.unwrap().is_some());
    let projects: Vec<_> = store
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(projects, ["default"]);
    let envs: Vec<_> = store
        .list_environments("default")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(envs, ["development", "production"]);

    assert!(bootstrap(store, false).await.unwrap().is_none());
    assert!(bootstrap(store, true).await.unwrap().is_none());
    assert!(bootstrap(store, true).await.unwrap().is_none());
    assert_eq!(store.list_api_keys().await.unwrap().len(), 1);
    assert_eq!(store.list_projects().await.unwrap().len(), 2);
}

pub async fn the_demo_project_compiles_in_both_environments(t: Target) {
    let store = &*t.store;
    bootstrap(store, true).await.unwrap().unwrap();
    assert_eq!(store.list_flags("demo").await.unwrap().len(), 5);
    assert_eq!(
        store
            .get_segment("demo", "beta-testers")
            .await
            .unwrap()
            .included
            .len(),
        2
    );
    for env in ["development", "production"] {
        let doc = store.environment_document("demo", env).await.unwrap();
        switchyard_core::compile(&doc).unwrap();
        let running: Vec<_> = doc
            .experiments
            .iter()
            .filter(|e| e.status == ExperimentStatus::Running)
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(running, ["checkout-test"]);
        assert_eq!(doc.experiments[0].variations.len(), 2);
    }
}

/// PostgreSQL cannot hold a NUL character in text and SQLite can: the store
/// refuses one in any text field on every backend, naming the field, and
/// writes nothing.
pub async fn a_nul_character_is_refused_alike_by_every_backend(t: Target) {
    let store = &*t.store;
    project(store).await;
    let refused = |r: Result<(), StoreError>, expected: &str| match r {
        Err(StoreError::InvalidField { field, message }) => {
            assert_eq!(field, expected);
            assert!(message.contains("NUL"), "{message}");
        }
        other => panic!("{expected}: expected InvalidField, got {other:?}"),
    };
    let mut flag = bool_flag("f");
    flag.name = "Check\0out".into();
    refused(store.create_flag(ACTOR, "p", flag).await.map(drop), "name");
    assert!(matches!(
        store.get_flag("p", "f").await,
        Err(StoreError::NotFound { .. })
    ));

    let mut flag = bool_flag("f");
    flag.tags = vec!["ok".into(), "b\0d".into()];
    refused(
        store.create_flag(ACTOR, "p", flag).await.map(drop),
        "tags[1]",
    );
    let mut flag = bool_flag("f");
    flag.variations[0].value = json!({"nested": ["\0"]});
    refused(
        store.create_flag(ACTOR, "p", flag).await.map(drop),
        "variations[0].value.nested[0]",
    );

    let f = store.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    let mut edit = bool_flag("f");
    edit.description = "\0".into();
    refused(
        store
            .update_flag(ACTOR, "p", "f", f.version, edit)
            .await
            .map(drop),
        "description",
    );
    assert_eq!(store.get_flag("p", "f").await.unwrap(), f);

    let segment = SegmentInput {
        key: "s".into(),
        name: "S".into(),
        description: String::new(),
        included: vec!["user\0".into()],
        excluded: vec![],
        rules: vec![],
    };
    refused(
        store.create_segment(ACTOR, "p", segment).await.map(drop),
        "included[0]",
    );
    refused(
        store
            .update_environment(ACTOR, "p", "production", 1, "Prod\0")
            .await
            .map(drop),
        "name",
    );
    refused(
        store
            .create_project(
                ACTOR,
                ProjectInput {
                    key: "q".into(),
                    name: "\0".into(),
                },
            )
            .await
            .map(drop),
        "name",
    );
    refused(
        store
            .create_api_key(
                ACTOR,
                ApiKeyInput {
                    name: "k\0".into(),
                    kind: ApiKeyKind::Admin(Role::Viewer),
                    project: None,
                    environment: None,
                },
            )
            .await
            .map(drop),
        "name",
    );
    refused(store.set_organisation(ACTOR, "Org\0").await, "name");
    assert_eq!(store.organisation().await.unwrap(), None);
    assert_eq!(
        store.get_environment("p", "production").await.unwrap().name,
        "production"
    );
}
