//! Conformance cases: CRUD, versions, keys, validation, audit.

use std::collections::BTreeMap;

use serde_json::json;
use switchyard_core::model::{FlagType, Serve, Variation};
use switchyard_store::*;

use crate::harness::Target;

pub const ACTOR: &str = "user:alice";

/// A project `p` with `development` and `production`.
pub async fn project(store: &dyn ConfigStore) {
    store
        .create_project(
            ACTOR,
            ProjectInput {
                key: "p".into(),
                name: "P".into(),
            },
        )
        .await
        .unwrap();
    for key in ["development", "production"] {
        store
            .create_environment(
                ACTOR,
                "p",
                EnvironmentInput {
                    key: key.into(),
                    name: key.into(),
                },
            )
            .await
            .unwrap();
    }
}

pub fn bool_flag(key: &str) -> FlagInput {
    FlagInput {
        key: key.into(),
        name: format!("Flag {key}"),
        description: String::new(),
        flag_type: FlagType::Boolean,
        variations: vec![
            Variation {
                key: "on".into(),
                value: json!(true),
            },
            Variation {
                key: "off".into(),
                value: json!(false),
            },
        ],
        tags: vec![],
        metadata: Default::default(),
        archived: false,
        environments: BTreeMap::new(),
    }
}

pub fn settings(value: serde_json::Value) -> FlagEnvironment {
    serde_json::from_value(value).unwrap()
}

pub async fn projects_and_environments_are_created_read_renamed_and_deleted(t: Target) {
    let store = &*t.store;
    assert!(store.list_projects().await.unwrap().is_empty());
    project(store).await;
    let p = store.get_project("p").await.unwrap();
    assert_eq!((p.name.as_str(), p.version), ("P", 1));
    let renamed = store
        .update_project(ACTOR, "p", 1, "Payments")
        .await
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.version), ("Payments", 2));
    assert_eq!(store.get_project("p").await.unwrap(), renamed);

    let envs = store.list_environments("p").await.unwrap();
    let keys: Vec<_> = envs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["development", "production"]);
    let dev = store
        .update_environment(ACTOR, "p", "development", 1, "Dev")
        .await
        .unwrap();
    assert_eq!((dev.name.as_str(), dev.version), ("Dev", 2));
    store
        .delete_environment(ACTOR, "p", "development", 2)
        .await
        .unwrap();
    assert!(matches!(
        store.get_environment("p", "development").await,
        Err(StoreError::NotFound {
            kind: "environment",
            ..
        })
    ));

    store.delete_project(ACTOR, "p", 2).await.unwrap();
    assert!(matches!(
        store.get_project("p").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.list_environments("p").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .create_project(
                ACTOR,
                ProjectInput {
                    key: "Bad Key".into(),
                    name: "x".into()
                }
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn flags_are_created_read_updated_and_deleted_with_settings_per_environment(t: Target) {
    let store = &*t.store;
    project(store).await;
    let mut input = bool_flag("checkout");
    input.environments.insert(
        "development".into(),
        settings(
            json!({"enabled": true, "off_variation": "off", "fallthrough": {"variation": "on"}}),
        ),
    );
    let created = store.create_flag(ACTOR, "p", input.clone()).await.unwrap();
    assert_eq!(created.version, 1);
    assert!(created.environments["development"].enabled);
    // Environments not named on create are off, serving `false`.
    let prod = &created.environments["production"];
    assert!(!prod.enabled);
    assert_eq!(prod.off_variation, "off");
    assert_eq!(store.get_flag("p", "checkout").await.unwrap(), created);
    assert_eq!(store.list_flags("p").await.unwrap(), vec![created.clone()]);

    // An update names only production; development keeps its settings.
    let mut update = input.clone();
    update.name = "Checkout".into();
    update.tags = vec!["payments".into()];
    update.metadata = json!({"owner": "payments", "tier": 1, "beta": true})
        .as_object()
        .unwrap()
        .clone();
    update.environments = BTreeMap::from([(
        "production".to_string(),
        settings(
            json!({"enabled": true, "off_variation": "off", "fallthrough": {"variation": "off"}}),
        ),
    )]);
    let updated = store
        .update_flag(ACTOR, "p", "checkout", 1, update)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.name, "Checkout");
    assert_eq!(updated.tags, ["payments"]);
    assert_eq!(updated.metadata["tier"], json!(1));
    assert_eq!(store.get_flag("p", "checkout").await.unwrap(), updated);
    // Metadata OFREP cannot carry (an object) is refused; nothing changes.
    let mut bad = input.clone();
    bad.metadata = json!({"nested": {"a": 1}}).as_object().unwrap().clone();
    assert!(matches!(
        store.update_flag(ACTOR, "p", "checkout", 2, bad).await,
        Err(StoreError::Invalid(m)) if m.contains("metadata.nested")
    ));
    assert_eq!(store.get_flag("p", "checkout").await.unwrap(), updated);
    assert!(updated.environments["development"].enabled);
    assert_eq!(
        updated.environments["production"].fallthrough,
        Serve::Variation("off".into())
    );
    assert!(updated.updated_at >= created.updated_at);

    let mut unknown_env = input.clone();
    unknown_env.environments = BTreeMap::from([("staging".to_string(), prod.clone())]);
    assert!(matches!(
        store.update_flag(ACTOR, "p", "checkout", 2, unknown_env).await,
        Err(StoreError::Invalid(m)) if m.contains("staging")
    ));

    store.delete_flag(ACTOR, "p", "checkout", 2).await.unwrap();
    assert!(matches!(
        store.get_flag("p", "checkout").await,
        Err(StoreError::NotFound { kind: "flag", .. })
    ));
    assert!(matches!(
        store.create_flag(ACTOR, "nope", bool_flag("x")).await,
        Err(StoreError::NotFound {
            kind: "project",
            ..
        })
    ));
}

pub async fn segments_are_created_read_updated_and_deleted(t: Target) {
    let store = &*t.store;
    project(store).await;
    let input = SegmentInput {
        key: "beta".into(),
        name: "Beta".into(),
        description: "opted in".into(),
        included: vec!["u-1".into()],
        excluded: vec![],
        rules: serde_json::from_value(json!([{"conditions": [
            {"attribute": "plan", "op": "equals", "value": "pro"}]}]))
        .unwrap(),
    };
    let created = store
        .create_segment(ACTOR, "p", input.clone())
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.rules, input.rules);
    assert_eq!(store.get_segment("p", "beta").await.unwrap(), created);
    let mut change = input.clone();
    change.excluded = vec!["u-2".into()];
    let updated = store
        .update_segment(ACTOR, "p", "beta", 1, change)
        .await
        .unwrap();
    assert_eq!(
        (updated.excluded.as_slice(), updated.version),
        (&["u-2".to_string()][..], 2)
    );
    assert_eq!(store.list_segments("p").await.unwrap(), vec![updated]);
    store.delete_segment(ACTOR, "p", "beta", 2).await.unwrap();
    assert!(store.list_segments("p").await.unwrap().is_empty());
}

pub async fn holdouts_are_created_read_updated_and_deleted(t: Target) {
    let store = &*t.store;
    project(store).await;
    let input = HoldoutInput {
        key: "h-2026".into(),
        size: 500,
        bucket_by: "targetingKey".into(),
    };
    let created = store
        .create_holdout(ACTOR, "p", "production", input.clone())
        .await
        .unwrap();
    assert_eq!((created.size, created.version), (500, 1));
    assert_eq!(
        store
            .get_holdout("p", "production", "h-2026")
            .await
            .unwrap(),
        created
    );
    assert!(
        store
            .list_holdouts("p", "development")
            .await
            .unwrap()
            .is_empty()
    );
    let bigger = HoldoutInput {
        size: 1000,
        ..input
    };
    let updated = store
        .update_holdout(ACTOR, "p", "production", "h-2026", 1, bigger)
        .await
        .unwrap();
    assert_eq!((updated.size, updated.version), (1000, 2));
    store
        .delete_holdout(ACTOR, "p", "production", "h-2026", 2)
        .await
        .unwrap();
    assert!(
        store
            .list_holdouts("p", "production")
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_stale_version_is_a_conflict_and_changes_nothing(t: Target) {
    let store = &*t.store;
    project(store).await;
    store.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    // Alice and Bob both read version 1; Alice saves first.
    let mut alice = bool_flag("f");
    alice.name = "Alice's".into();
    let mut bob = bool_flag("f");
    bob.name = "Bob's".into();
    store
        .update_flag("user:alice", "p", "f", 1, alice)
        .await
        .unwrap();
    match store.update_flag("user:bob", "p", "f", 1, bob).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, 2),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_flag("p", "f").await.unwrap().name, "Alice's");
    assert!(matches!(
        store.delete_flag(ACTOR, "p", "f", 1).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.update_project(ACTOR, "p", 7, "x").await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .update_environment(ACTOR, "p", "production", 2, "x")
            .await,
        Err(StoreError::Conflict { current: 1, .. })
    ));
}

pub async fn a_key_that_exists_already_cannot_be_created_again(t: Target) {
    let store = &*t.store;
    project(store).await;
    assert!(matches!(
        store
            .create_project(
                ACTOR,
                ProjectInput {
                    key: "p".into(),
                    name: "again".into()
                }
            )
            .await,
        Err(StoreError::AlreadyExists {
            kind: "project",
            ..
        })
    ));
    assert!(matches!(
        store
            .create_environment(
                ACTOR,
                "p",
                EnvironmentInput {
                    key: "production".into(),
                    name: "x".into()
                }
            )
            .await,
        Err(StoreError::AlreadyExists {
            kind: "environment",
            ..
        })
    ));
    store.create_flag(ACTOR, "p", bool_flag("f")).await.unwrap();
    assert!(matches!(
        store.create_flag(ACTOR, "p", bool_flag("f")).await,
        Err(StoreError::AlreadyExists { kind: "flag", .. })
    ));
    // The same key in another project is another flag.
    store
        .create_project(
            ACTOR,
            ProjectInput {
                key: "q".into(),
                name: "Q".into(),
            },
        )
        .await
        .unwrap();
    store.create_flag(ACTOR, "q", bool_flag("f")).await.unwrap();
}

pub async fn an_invalid_flag_is_rejected_with_the_compiler_message_and_nothing_is_written(
    t: Target,
) {
    let store = &*t.store;
    project(store).await;
    let revision = store
        .environment_document("p", "production")
        .await
        .unwrap()
        .revision;
    let audit_before = store
        .list_audit(AuditFilter::default())
        .await
        .unwrap()
        .len();
    let mut bad = bool_flag("broken");
    bad.environments.insert(
        "production".into(),
        settings(
            json!({"enabled": true, "off_variation": "nope", "fallthrough": {"variation": "on"}}),
        ),
    );
    match store.create_flag(ACTOR, "p", bad).await {
        Err(StoreError::Invalid(message)) => {
            assert!(message.contains("broken"), "{message}");
            assert!(message.contains("production"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        store.get_flag("p", "broken").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .environment_document("p", "production")
            .await
            .unwrap()
            .revision,
        revision
    );
    assert_eq!(
        store
            .list_audit(AuditFilter::default())
            .await
            .unwrap()
            .len(),
        audit_before
    );

    // A valid flag, then an update that breaks it: the old one stays.
    store
        .create_flag(ACTOR, "p", bool_flag("ok"))
        .await
        .unwrap();
    let mut breaking = bool_flag("ok");
    breaking.environments.insert(
        "development".into(),
        settings(json!({"off_variation": "missing", "fallthrough": {"variation": "on"}})),
    );
    assert!(matches!(
        store.update_flag(ACTOR, "p", "ok", 1, breaking).await,
        Err(StoreError::Invalid(_))
    ));
    let kept = store.get_flag("p", "ok").await.unwrap();
    assert_eq!(
        (
            kept.version,
            kept.environments["development"].off_variation.as_str()
        ),
        (1, "off")
    );
}

pub async fn every_change_is_audited_with_who_what_before_and_after(t: Target) {
    let store = &*t.store;
    project(store).await;
    store
        .create_flag("user:bob", "p", bool_flag("f"))
        .await
        .unwrap();
    let mut renamed = bool_flag("f");
    renamed.name = "Renamed".into();
    store
        .update_flag("user:carol", "p", "f", 1, renamed)
        .await
        .unwrap();
    store.delete_flag("user:dave", "p", "f", 2).await.unwrap();

    let filter = AuditFilter {
        project: Some("p".into()),
        resource_kind: Some("flag".into()),
        resource_key: Some("f".into()),
        ..Default::default()
    };
    let entries = store.list_audit(filter.clone()).await.unwrap();
    let summary: Vec<_> = entries
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("user:dave", "delete"),
            ("user:carol", "update"),
            ("user:bob", "create")
        ]
    );
    let (delete, update, create) = (&entries[0], &entries[1], &entries[2]);
    assert!(create.before.is_none());
    assert_eq!(create.after.as_ref().unwrap()["name"], "Flag f");
    assert_eq!(update.before.as_ref().unwrap()["name"], "Flag f");
    assert_eq!(update.after.as_ref().unwrap()["name"], "Renamed");
    assert_eq!(update.after.as_ref().unwrap()["version"], 2);
    assert!(delete.after.is_none());
    assert_eq!(delete.before.as_ref().unwrap()["name"], "Renamed");
    assert!(delete.at >= create.at);

    // Paging newest first with a cursor.
    let page = store
        .list_audit(AuditFilter {
            limit: Some(2),
            ..filter.clone()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    let rest = store
        .list_audit(AuditFilter {
            before_id: Some(page[1].id),
            ..filter
        })
        .await
        .unwrap();
    assert_eq!(rest, vec![create.clone()]);
    // Project and environment creation are in the log too.
    let all = store.list_audit(AuditFilter::default()).await.unwrap();
    assert!(
        all.iter()
            .any(|e| e.resource_kind == "environment" && e.resource_key == "production")
    );
}

pub async fn of_concurrent_updates_from_one_version_exactly_one_wins(t: Target) {
    project(&*t.store).await;
    t.store
        .create_flag(ACTOR, "p", bool_flag("f"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = t.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut input = bool_flag("f");
            input.name = format!("writer {i}");
            store
                .update_flag(&format!("user:{i}"), "p", "f", 1, input)
                .await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(flag) => winners.push(flag.name),
            Err(StoreError::Conflict { current: 2, .. }) => {}
            Err(other) => panic!("expected success or a conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let stored = t.store.get_flag("p", "f").await.unwrap();
    assert_eq!((stored.version, &stored.name), (2, &winners[0]));
}
