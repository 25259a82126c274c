//! One conformance suite for every backend: each case is written once, in
//! `conformance/cases*.rs`, and run against SQLite (a temporary file) and
//! PostgreSQL (a fresh database per test, dropped afterwards).
//!
//! PostgreSQL comes from `SWITCHYARD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). If it is unreachable the
//! PostgreSQL tests fail, saying so: they never skip.

#[path = "conformance/cases.rs"]
mod cases;
#[path = "conformance/cases_alerts.rs"]
mod cases_alerts;
#[path = "conformance/cases_metrics.rs"]
mod cases_metrics;
#[path = "conformance/cases_more.rs"]
mod cases_more;
#[path = "conformance/cases_users.rs"]
mod cases_users;
#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/lifecycle.rs"]
mod lifecycle;

macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::harness::run_sqlite(|t| Box::pin(crate::$module::$case(t))).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::harness::run_postgres(|t| Box::pin(crate::$module::$case(t))).await;
                }
            )*
        }
    };
}

conformance! {
    cases::projects_and_environments_are_created_read_renamed_and_deleted,
    cases::flags_are_created_read_updated_and_deleted_with_settings_per_environment,
    cases::segments_are_created_read_updated_and_deleted,
    cases::holdouts_are_created_read_updated_and_deleted,
    cases::a_stale_version_is_a_conflict_and_changes_nothing,
    cases::a_key_that_exists_already_cannot_be_created_again,
    cases::an_invalid_flag_is_rejected_with_the_compiler_message_and_nothing_is_written,
    cases::every_change_is_audited_with_who_what_before_and_after,
    cases::of_concurrent_updates_from_one_version_exactly_one_wins,
    cases_more::an_experiment_goes_from_draft_to_running_to_stopped_and_never_back_to_draft,
    lifecycle::an_experiment_pauses_resumes_ships_and_restarts_as_new_phases,
    lifecycle::one_write_creates_a_flag_and_its_running_experiment_or_nothing,
    cases_more::api_keys_authenticate_until_revoked_and_their_secret_is_not_stored,
    cases_more::the_environment_document_holds_that_environments_configuration,
    cases_more::subscribers_hear_of_every_committed_write,
    cases_more::bootstrap_creates_the_default_project_and_an_admin_key_once,
    cases_more::the_demo_project_compiles_in_both_environments,
    cases_more::a_nul_character_is_refused_alike_by_every_backend,
    cases_alerts::an_alert_is_recorded_once_per_finding_and_phase_and_audited,
    cases_metrics::metrics_are_created_read_replaced_and_deleted_with_audit,
    cases_metrics::an_invalid_metric_is_refused_naming_its_field_and_nothing_is_written,
    cases_metrics::experiments_name_defined_metrics_with_roles_and_keep_them_from_deletion,
    cases_users::users_sign_in_with_their_password_only_and_are_audited,
    cases_users::sessions_live_until_they_expire_or_end_and_are_unguessable,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_change_on_one_node_reaches_the_subscribers_of_another() {
    harness::run_postgres(|t| Box::pin(cases_more::another_node_hears_of_changes(t))).await;
}

#[tokio::test]
async fn a_url_of_another_scheme_is_refused_without_echoing_it() {
    match switchyard_store::open("mysql://root:secret@localhost/db").await {
        Err(switchyard_store::StoreError::Invalid(message)) => {
            assert!(message.contains("mysql"));
            assert!(!message.contains("secret"));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}
