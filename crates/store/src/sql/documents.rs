//! Loading environment documents, and validating changes by compiling them.

use sqlx::AnyConnection;
use switchyard_core::model::ConfigDocument;

use super::resource::storable;
use super::{Backend, SqlStore, rows};
use crate::document::{self, Parts};
use crate::error::{Result, StoreError};

/// One environment's document, as the evaluator will see it.
pub(crate) async fn load(
    conn: &mut AnyConnection,
    project: &str,
    environment: &str,
) -> Result<ConfigDocument> {
    if !storable(project) || !storable(environment) {
        return Err(StoreError::not_found(
            "environment",
            format!("{project}/{environment}"),
        ));
    }
    let revision = rows::project_revision(conn, project).await?;
    if rows::find_environment(conn, project, environment)
        .await?
        .is_none()
    {
        return Err(StoreError::not_found(
            "environment",
            format!("{project}/{environment}"),
        ));
    }
    let parts = Parts {
        flags: rows::flags(conn, project, None).await?,
        segments: rows::segments(conn, project, None).await?,
        experiments: rows::experiments(conn, project, environment, None).await?,
        holdouts: rows::holdouts(conn, project, environment, None).await?,
    };
    Ok(document::build(
        environment,
        u64::try_from(revision).unwrap_or_default(),
        parts,
    ))
}

/// Compiles the documents of `environment` (or of every environment of
/// the project), as they stand inside the caller's transaction; the first
/// error becomes [`StoreError::Invalid`].
pub(crate) async fn validate(
    conn: &mut AnyConnection,
    project: &str,
    environment: Option<&str>,
) -> Result<()> {
    let keys = match environment {
        Some(e) => vec![e.to_string()],
        None => rows::environments(conn, project)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect(),
    };
    for key in keys {
        document::check(&load(conn, project, &key).await?)?;
    }
    Ok(())
}

impl SqlStore {
    pub(crate) async fn environment_document_impl(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<ConfigDocument> {
        // One snapshot for all the reads, so a concurrent write is either
        // wholly in the document or wholly out of it.
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        };
        let doc = load(&mut tx, project, environment).await?;
        tx.commit().await?;
        Ok(doc)
    }
}
