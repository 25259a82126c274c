//! `/projects/{project}/metrics`: metric definitions (see
//! `docs/metrics.md`), which experiments name with a role. Viewers read,
//! editors write. A definition `validate` refuses is a 422 naming the
//! field; deleting a metric an experiment names is a 409 naming it.

use axum::Router;
use serde::Deserialize;
use switchyard_core::metric::MetricDefinition;
use switchyard_store::Metric;

use super::input::{check_key, check_len, check_name};
use super::resource::{ApiResource, InProject, collection, item, store_calls};
use crate::error::{ApiError, ApiResult};
use crate::extract::serde_error;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects/{project}/metrics", collection::<Metrics>())
        .route("/projects/{project}/metrics/{metric}", item::<Metrics>())
}

/// A definition as a client writes it: on create with its `key`, on
/// replace with the URL's key (repeated or not).
#[derive(Debug, Deserialize)]
pub struct MetricBody(serde_json::Map<String, serde_json::Value>);

struct Metrics;

impl ApiResource for Metrics {
    type Scope = InProject;
    type Body = MetricBody;
    type Input = MetricDefinition;
    type Item = Metric;

    fn body_key(body: &MetricBody) -> Option<&str> {
        body.0.get("key").and_then(|k| k.as_str())
    }

    fn into_input(MetricBody(mut b): MetricBody, key: String) -> ApiResult<MetricDefinition> {
        check_key("key", &key)?;
        b.insert("key".into(), key.into());
        let definition: MetricDefinition = serde_json::from_value(b.into())
            .map_err(|e| serde_error(&e, format!("not a metric definition: {e}")))?;
        if !definition.name.is_empty() {
            check_name("name", &definition.name)?;
        }
        check_len("description", &definition.description, 10_000)?;
        definition
            .validate()
            .map_err(|e| ApiError::UnprocessableField {
                message: e.to_string(),
                field: e.field,
            })?;
        Ok(definition)
    }

    store_calls!(
        project,
        list_metrics,
        get_metric,
        create_metric,
        update_metric,
        delete_metric
    );
}
