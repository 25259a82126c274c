//! Conformance cases: web UI users and sessions.

use switchyard_store::*;

use crate::cases::{ACTOR, project};
use crate::harness::Target;

const PASSWORD: &str = "a long enough password";

fn input(email: &str, role: Role, project: Option<&str>) -> UserInput {
    UserInput {
        email: email.into(),
        password: PASSWORD.into(),
        role,
        project: project.map(str::to_string),
    }
}

pub async fn users_sign_in_with_their_password_only_and_are_audited(t: Target) {
    let store = &*t.store;
    project(store).await;
    let ann = store
        .create_user(ACTOR, input("  Ann@Example.COM ", Role::Admin, None))
        .await
        .unwrap();
    assert_eq!(ann.email, "ann@example.com");
    assert!(ann.id.starts_with("usr_"));
    let bob = store
        .create_user(ACTOR, input("bob@example.com", Role::Viewer, Some("p")))
        .await
        .unwrap();
    assert_eq!(bob.project.as_deref(), Some("p"));

    // The email is unique whatever its case.
    assert!(matches!(
        store
            .create_user(ACTOR, input("ANN@example.com", Role::Viewer, None))
            .await,
        Err(StoreError::AlreadyExists { kind: "user", .. })
    ));
    // Bad input is refused, naming the field, and nothing is written.
    for (email, password, field) in [
        ("no-at-sign", PASSWORD, "email"),
        ("a b@example.com", PASSWORD, "email"),
        ("carl@example.com", "short", "password"),
    ] {
        let mut i = input(email, Role::Viewer, None);
        i.password = password.into();
        match store.create_user(ACTOR, i).await {
            Err(StoreError::InvalidField { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{email:?}: expected InvalidField, got {other:?}"),
        }
    }
    assert!(matches!(
        store
            .create_user(ACTOR, input("carl@example.com", Role::Viewer, Some("nope")))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.list_users().await.unwrap(),
        vec![ann.clone(), bob.clone()]
    );

    // Only the right password signs in; the email's case does not matter.
    let signed = store
        .check_login("ANN@example.com", PASSWORD)
        .await
        .unwrap();
    assert_eq!(signed.as_ref(), Some(&ann));
    assert_eq!(
        store
            .check_login("ann@example.com", "wrong password!")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .check_login("nobody@example.com", PASSWORD)
            .await
            .unwrap(),
        None
    );

    // The creation is audited, without the password or its hash.
    let audit = store
        .list_audit(AuditFilter {
            resource_kind: Some("user".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1].resource_key, "ann@example.com");
    assert_eq!(audit[1].actor, ACTOR);
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        !text.contains(PASSWORD) && !text.contains("argon2"),
        "{text}"
    );

    // A disabled user cannot sign in, and their sessions end.
    let s = store
        .create_session(&bob.id, time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(store.session(&s.token).await.unwrap().unwrap().user, bob);
    let disabled = store.disable_user(ACTOR, "BOB@example.com").await.unwrap();
    assert!(disabled.disabled_at.is_some());
    assert_eq!(store.session(&s.token).await.unwrap(), None);
    assert_eq!(
        store
            .check_login("bob@example.com", PASSWORD)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .create_session(&bob.id, time::Duration::hours(1))
            .await
            .is_err()
    );
}

pub async fn sessions_live_until_they_expire_or_end_and_are_unguessable(t: Target) {
    let store = &*t.store;
    let ann = store
        .create_user(ACTOR, input("ann@example.com", Role::Editor, None))
        .await
        .unwrap();
    let s = store
        .create_session(&ann.id, time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(s.token.len(), 43);
    let found = store.session(&s.token).await.unwrap().unwrap();
    assert_eq!(found.user, ann);
    assert_eq!(
        found.expires_at.unix_timestamp(),
        s.session.expires_at.unix_timestamp()
    );
    // Every session has its own id; a malformed id is no session.
    let other = store
        .create_session(&ann.id, time::Duration::hours(1))
        .await
        .unwrap();
    assert_ne!(other.token, s.token);
    assert_eq!(store.session("not a token").await.unwrap(), None);
    // Ending it ends it, and only it.
    store.delete_session(&s.token).await.unwrap();
    assert_eq!(store.session(&s.token).await.unwrap(), None);
    assert!(store.session(&other.token).await.unwrap().is_some());

    // An expired session is not live.
    let short = store
        .create_session(&ann.id, time::Duration::seconds(1))
        .await
        .unwrap();
    assert!(store.session(&short.token).await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(store.session(&short.token).await.unwrap(), None);
    assert!(store.session(&other.token).await.unwrap().is_some());
}
