//! Segments: reusable sets of units, in every environment of the project.

use async_trait::async_trait;
use sqlx::AnyConnection;

use super::resource::{Announce, Recorded, Resource, Scope};
use super::{Write, rows, to_json};
use crate::error::Result;
use crate::types::*;

impl Recorded for SegmentDefinition {
    const KIND: &'static str = "segment";
    fn id(&self) -> &str {
        &self.key
    }
    fn announce(&self) -> Announce<'_> {
        Announce::Config {
            project: &self.project,
            environment: None,
            compile: true,
        }
    }
}

#[async_trait]
impl Resource for SegmentDefinition {
    const TABLE: &'static str = "segments";
    type Input = SegmentInput;

    fn input_key(input: &SegmentInput) -> &str {
        &input.key
    }

    async fn load(
        conn: &mut AnyConnection,
        scope: Scope<'_>,
        key: Option<&str>,
    ) -> Result<Vec<SegmentDefinition>> {
        rows::segments(conn, scope.project()?, key).await
    }

    async fn build(
        _w: &mut Write<'_>,
        scope: Scope<'_>,
        input: SegmentInput,
    ) -> Result<SegmentDefinition> {
        let mut new = SegmentDefinition {
            project: scope.project()?.to_string(),
            key: input.key.clone(),
            name: String::new(),
            description: String::new(),
            included: Vec::new(),
            excluded: Vec::new(),
            rules: Vec::new(),
            version: 1,
        };
        new.apply(input)?;
        Ok(new)
    }

    fn apply(&mut self, input: SegmentInput) -> Result<()> {
        self.name = input.name;
        self.description = input.description;
        self.included = input.included;
        self.excluded = input.excluded;
        self.rules = input.rules;
        Ok(())
    }

    async fn insert(w: &mut Write<'_>, new: &SegmentDefinition) -> Result<()> {
        sqlx::query(
            "INSERT INTO segments (project, key, name, description, included, excluded, rules, \
             version) VALUES ($1, $2, '', '', '[]', '[]', '[]', 0)",
        )
        .bind(&new.project)
        .bind(&new.key)
        .execute(w.conn())
        .await?;
        Self::save(w, new).await
    }

    async fn save(w: &mut Write<'_>, changed: &SegmentDefinition) -> Result<()> {
        sqlx::query(
            "UPDATE segments SET name = $1, description = $2, included = $3, excluded = $4, \
             rules = $5, version = version + 1 WHERE project = $6 AND key = $7",
        )
        .bind(&changed.name)
        .bind(&changed.description)
        .bind(to_json(&changed.included)?)
        .bind(to_json(&changed.excluded)?)
        .bind(to_json(&changed.rules)?)
        .bind(&changed.project)
        .bind(&changed.key)
        .execute(w.conn())
        .await?;
        Ok(())
    }
}
