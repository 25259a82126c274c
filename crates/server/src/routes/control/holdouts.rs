//! `/projects/{project}/environments/{env}/holdouts`: units kept out of
//! the experiments that name the holdout. Viewers read, editors write.

use axum::Router;
use serde::Deserialize;
use switchyard_core::model::{BasisPoints, default_bucket_by};
use switchyard_store::{HoldoutDefinition, HoldoutInput};

use super::input::{check_basis_points, check_key, check_name};
use super::resource::{ApiResource, InEnvironment, collection, item, store_calls};
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/environments/{env}/holdouts",
            collection::<Holdouts>(),
        )
        .route(
            "/projects/{project}/environments/{env}/holdouts/{holdout}",
            item::<Holdouts>(),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldoutBody {
    #[serde(default)]
    key: Option<String>,
    size: BasisPoints,
    #[serde(default = "default_bucket_by")]
    bucket_by: String,
}

struct Holdouts;

impl ApiResource for Holdouts {
    type Scope = InEnvironment;
    type Body = HoldoutBody;
    type Input = HoldoutInput;
    type Item = HoldoutDefinition;

    fn body_key(body: &HoldoutBody) -> Option<&str> {
        body.key.as_deref()
    }

    fn into_input(b: HoldoutBody, key: String) -> ApiResult<HoldoutInput> {
        check_key("key", &key)?;
        check_basis_points("size", b.size)?;
        check_name("bucket_by", &b.bucket_by)?;
        Ok(HoldoutInput {
            key,
            size: b.size,
            bucket_by: b.bucket_by,
        })
    }

    store_calls!(
        environment,
        list_holdouts,
        get_holdout,
        create_holdout,
        update_holdout,
        delete_holdout
    );
}
