//! `/projects/{project}/segments`: reusable sets of units, in every
//! environment of the project. Viewers read, editors write.

use axum::Router;
use serde::Deserialize;
use switchyard_core::model::SegmentRule;
use switchyard_store::{SegmentDefinition, SegmentInput};

use super::input::{check_key, check_len, check_name};
use super::resource::{ApiResource, InProject, collection, item, store_calls};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projects/{project}/segments", collection::<Segments>())
        .route("/projects/{project}/segments/{segment}", item::<Segments>())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentBody {
    #[serde(default)]
    key: Option<String>,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    included: Vec<String>,
    #[serde(default)]
    excluded: Vec<String>,
    #[serde(default)]
    rules: Vec<SegmentRule>,
}

struct Segments;

impl ApiResource for Segments {
    type Scope = InProject;
    type Body = SegmentBody;
    type Input = SegmentInput;
    type Item = SegmentDefinition;

    fn body_key(body: &SegmentBody) -> Option<&str> {
        body.key.as_deref()
    }

    fn into_input(b: SegmentBody, key: String) -> ApiResult<SegmentInput> {
        check_key("key", &key)?;
        check_name("name", &b.name)?;
        check_len("description", &b.description, 10_000)?;
        for (field, units) in [("included", &b.included), ("excluded", &b.excluded)] {
            for (i, unit) in units.iter().enumerate() {
                if unit.is_empty() {
                    return Err(ApiError::invalid_field(
                        format!("{field}[{i}]"),
                        "a unit is a non-empty targeting key",
                    ));
                }
            }
        }
        Ok(SegmentInput {
            key,
            name: b.name,
            description: b.description,
            included: b.included,
            excluded: b.excluded,
            rules: b.rules,
        })
    }

    store_calls!(
        project,
        list_segments,
        get_segment,
        create_segment,
        update_segment,
        delete_segment
    );
}
