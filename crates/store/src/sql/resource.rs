//! One shape for the control plane's resources.
//!
//! A resource says only what is particular to it ([`Resource`]): its kind
//! and table, how its rows are read and written, how an input makes a new
//! one or changes one, and what a change to it announces ([`Announce`]).
//! [`SqlStore`] does the rest once for all of them: the parent check, the
//! key, existence and version checks, the check that no text holds a NUL
//! character, and the tail every write shares ([`Write::finish`]): the
//! compile check, the audit entry, the project's revision and the change
//! announcement, in one transaction.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::AnyConnection;

use super::documents::validate;
use super::{SqlStore, Write, check_version, rows};
use crate::error::{Result, StoreError};
use crate::types::{Change, Version, Versioned};

/// Where a resource lives: the keys of its parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    Organisation,
    Project(&'a str),
    Environment(&'a str, &'a str),
}

impl<'a> Scope<'a> {
    /// The project it is in.
    pub fn project(self) -> Result<&'a str> {
        match self {
            Scope::Project(p) | Scope::Environment(p, _) => Ok(p),
            Scope::Organisation => Err(StoreError::Backend("no project in scope".into())),
        }
    }

    /// The project and environment it is in.
    pub fn environment(self) -> Result<(&'a str, &'a str)> {
        match self {
            Scope::Environment(p, e) => Ok((p, e)),
            _ => Err(StoreError::Backend("no environment in scope".into())),
        }
    }

    /// Fails with `NotFound`, naming the parent, unless it exists.
    pub async fn require(self, conn: &mut AnyConnection) -> Result<()> {
        let found = match self {
            Scope::Organisation => return Ok(()),
            _ if !self.storable() => false,
            Scope::Project(p) => rows::find_project(conn, p).await?.is_some(),
            Scope::Environment(p, e) => rows::find_environment(conn, p, e).await?.is_some(),
        };
        match (found, self) {
            (true, _) | (_, Scope::Organisation) => Ok(()),
            (false, Scope::Project(p)) => Err(StoreError::not_found("project", p)),
            (false, Scope::Environment(p, e)) => {
                Err(StoreError::not_found("environment", format!("{p}/{e}")))
            }
        }
    }

    /// Whether its keys could be stored (a key with a NUL never is, and
    /// PostgreSQL refuses to even look one up).
    fn storable(self) -> bool {
        self.keys().iter().all(|k| storable(k))
    }

    /// The parent's keys, in the order of their columns.
    fn keys(self) -> Vec<String> {
        match self {
            Scope::Organisation => Vec::new(),
            Scope::Project(p) => vec![p.to_string()],
            Scope::Environment(p, e) => vec![p.to_string(), e.to_string()],
        }
    }

    /// `WHERE` conditions on the parent's columns, `$1`.. in [`Scope::keys`] order.
    fn condition(self) -> &'static str {
        match self {
            Scope::Organisation => "",
            Scope::Project(_) => "project = $1 AND ",
            Scope::Environment(..) => "project = $1 AND environment = $2 AND ",
        }
    }
}

/// What a committed change tells the nodes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Announce<'a> {
    /// The configuration of `project` changed, in one environment or (when
    /// `None`) in all of them; `compile`: the documents it touches must
    /// still compile.
    Config {
        project: &'a str,
        environment: Option<&'a str>,
        compile: bool,
    },
    /// The set of live API keys changed (`project`: the key's).
    ApiKeys { project: Option<&'a str> },
}

/// Anything whose changes are audited and announced.
pub(crate) trait Recorded: Serialize + Send + Sync {
    /// As the audit log names it: `flag`, `api_key`, ...
    const KIND: &'static str;
    /// The key (or id) the audit log names it by.
    fn id(&self) -> &str;
    fn announce(&self) -> Announce<'_>;
}

/// A versioned control-plane resource, with only what is particular to it.
#[async_trait]
pub(crate) trait Resource: Recorded + Versioned + Clone + Sized + 'static {
    /// The table of its rows, keyed by its scope's columns and `key`.
    const TABLE: &'static str;
    /// What a caller writes to create or replace one.
    type Input: Send + 'static;

    fn input_key(input: &Self::Input) -> &str;
    /// How a missing or taken key is named in errors.
    fn path(_scope: Scope<'_>, key: &str) -> String {
        key.to_string()
    }

    /// The resources of `scope` (or only `key`), in key order.
    async fn load(
        conn: &mut AnyConnection,
        scope: Scope<'_>,
        key: Option<&str>,
    ) -> Result<Vec<Self>>;
    /// A new one at version 1, from its input; may read (inside the write)
    /// what it refers to.
    async fn build(w: &mut Write<'_>, scope: Scope<'_>, input: Self::Input) -> Result<Self>;
    /// Replaces what a caller may set with `input` (of the same key).
    fn apply(&mut self, input: Self::Input) -> Result<()>;
    /// Checks, inside the write, what a new or changed one refers to.
    async fn check_references(_w: &mut Write<'_>, _r: &Self) -> Result<()> {
        Ok(())
    }
    /// Whether it may be deleted, inside the write: what the compile check
    /// cannot see refers to it (`StoreError::InUse`).
    async fn check_unused(_w: &mut Write<'_>, _r: &Self) -> Result<()> {
        Ok(())
    }
    async fn insert(w: &mut Write<'_>, new: &Self) -> Result<()>;
    /// Writes `changed` over the stored row of the same key, and sets the
    /// row's version to the next one.
    async fn save(w: &mut Write<'_>, changed: &Self) -> Result<()>;
}

impl Write<'_> {
    /// The tail of every write: checks that the documents it touches still
    /// compile, records the audit entry and the project's revision, commits
    /// and announces the change.
    pub async fn finish<R: Recorded>(
        mut self,
        actor: &str,
        action: &str,
        before: Option<&R>,
        after: Option<&R>,
    ) -> Result<()> {
        let Some(subject) = after.or(before) else {
            return Err(StoreError::Backend("a write with nothing to record".into()));
        };
        match subject.announce() {
            Announce::Config {
                project,
                environment,
                compile,
            } => {
                if compile {
                    validate(self.conn(), project, environment).await?;
                }
                self.audit(
                    actor,
                    action,
                    R::KIND,
                    Some(project),
                    subject.id(),
                    before,
                    after,
                )
                .await?;
                self.touch(project, environment).await?;
            }
            Announce::ApiKeys { project } => {
                self.audit(actor, action, R::KIND, project, subject.id(), before, after)
                    .await?;
                self.changes.push(Change {
                    project: project.unwrap_or_default().to_string(),
                    environment: None,
                    revision: u64::try_from(self.revision).unwrap_or_default(),
                    api_keys: true,
                    resync: false,
                });
            }
        }
        self.commit().await
    }
}

async fn find<R: Resource>(
    conn: &mut AnyConnection,
    scope: Scope<'_>,
    key: &str,
) -> Result<Option<R>> {
    if !storable(key) || !scope.storable() {
        return Ok(None);
    }
    Ok(R::load(conn, scope, Some(key)).await?.pop())
}

async fn existing<R: Resource>(conn: &mut AnyConnection, scope: Scope<'_>, key: &str) -> Result<R> {
    find(conn, scope, key)
        .await?
        .ok_or_else(|| StoreError::not_found(R::KIND, R::path(scope, key)))
}

/// Inserts a new resource built from `input` (then changed by `prepare`)
/// inside `w`, whose scope the caller checked, and reads it back;
/// `AlreadyExists` when the key is taken. The caller records it (`finish`,
/// or `audit` when one write creates several).
pub(crate) async fn insert_new<R: Resource>(
    w: &mut Write<'_>,
    scope: Scope<'_>,
    input: R::Input,
    prepare: impl FnOnce(&mut R) + Send,
) -> Result<R> {
    let key = R::input_key(&input).to_string();
    check_key(R::KIND, &key)?;
    if find::<R>(w.conn(), scope, &key).await?.is_some() {
        return Err(StoreError::AlreadyExists {
            kind: R::KIND,
            key: R::path(scope, &key),
        });
    }
    let mut new = R::build(w, scope, input).await?;
    prepare(&mut new);
    check_text(&new)?;
    R::check_references(w, &new).await?;
    R::insert(w, &new).await?;
    existing(w.conn(), scope, &key).await
}

impl SqlStore {
    /// Every resource of `scope`; `NotFound` when the scope does not exist.
    pub(crate) async fn list<R: Resource>(&self, scope: Scope<'_>) -> Result<Vec<R>> {
        let mut conn = self.read().await?;
        scope.require(&mut conn).await?;
        R::load(&mut conn, scope, None).await
    }

    pub(crate) async fn get<R: Resource>(&self, scope: Scope<'_>, key: &str) -> Result<R> {
        existing(&mut *self.read().await?, scope, key).await
    }

    pub(crate) async fn create<R: Resource>(
        &self,
        actor: &str,
        scope: Scope<'_>,
        input: R::Input,
    ) -> Result<R> {
        check_key(R::KIND, R::input_key(&input))?;
        let mut w = self.write().await?;
        scope.require(w.conn()).await?;
        let after: R = insert_new(&mut w, scope, input, |_| {}).await?;
        w.finish(actor, "create", None, Some(&after)).await?;
        Ok(after)
    }

    /// Replaces what a caller may set; the key never changes.
    pub(crate) async fn replace<R: Resource>(
        &self,
        actor: &str,
        scope: Scope<'_>,
        key: &str,
        expected: Version,
        input: R::Input,
    ) -> Result<R> {
        if R::input_key(&input) != key {
            return Err(StoreError::Invalid(format!(
                "{} key {key:?} cannot change to {:?}",
                R::KIND,
                R::input_key(&input)
            )));
        }
        self.change(actor, "update", scope, key, expected, |r: &mut R| {
            r.apply(input)
        })
        .await
    }

    /// Reads one resource at version `expected`, changes it with `change`,
    /// and writes it back as its next version (audited as `action`).
    pub(crate) async fn change<R: Resource>(
        &self,
        actor: &str,
        action: &str,
        scope: Scope<'_>,
        key: &str,
        expected: Version,
        change: impl FnOnce(&mut R) -> Result<()> + Send,
    ) -> Result<R> {
        let mut w = self.write().await?;
        let before: R = existing(w.conn(), scope, key).await?;
        check_version(R::KIND, key, before.version(), expected)?;
        let mut next = before.clone();
        change(&mut next)?;
        check_text(&next)?;
        R::check_references(&mut w, &next).await?;
        R::save(&mut w, &next).await?;
        let after: R = existing(w.conn(), scope, key).await?;
        w.finish(actor, action, Some(&before), Some(&after)).await?;
        Ok(after)
    }

    pub(crate) async fn delete<R: Resource>(
        &self,
        actor: &str,
        scope: Scope<'_>,
        key: &str,
        expected: Version,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let before: R = existing(w.conn(), scope, key).await?;
        check_version(R::KIND, key, before.version(), expected)?;
        R::check_unused(&mut w, &before).await?;
        let sql = format!(
            "DELETE FROM {} WHERE {}key = ${}",
            R::TABLE,
            scope.condition(),
            scope.keys().len() + 1
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for k in scope.keys() {
            query = query.bind(k);
        }
        query.bind(key).execute(w.conn()).await?;
        // What is left may still refer to it (a prerequisite, a rule): the
        // compile check in `finish` refuses the delete then.
        w.finish(actor, "delete", Some(&before), None).await
    }
}

/// Keys are short, URL-safe identifiers: `[a-z0-9][a-z0-9_.-]{0,63}`.
pub(crate) fn check_key(kind: &str, key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'_' | b'-' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{kind} key {key:?} must be 1 to 64 characters of a-z, 0-9, '_', '-', '.', starting with a letter or digit"
        )))
    }
}

/// Whether `text` could be stored: a key with a NUL is never found, and is
/// not looked up (PostgreSQL would fail the query).
pub(crate) fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// Refuses a NUL character (`\u0000`) anywhere in what is about to be
/// stored, naming the field: PostgreSQL cannot hold one in text, so no
/// backend accepts one. Every write of every resource goes through here.
pub(crate) fn check_text(value: &impl Serialize) -> Result<()> {
    let value = serde_json::to_value(value)?;
    match find_nul(&value, &mut String::new()) {
        None => Ok(()),
        Some(field) => Err(StoreError::InvalidField {
            message: format!("{field} must not contain a NUL character (\\u0000)"),
            field,
        }),
    }
}

/// The path (`rules[0].name`) of the first string or object key holding a NUL.
fn find_nul(value: &serde_json::Value, path: &mut String) -> Option<String> {
    use serde_json::Value;
    let field = |path: &String| {
        if path.is_empty() {
            "value".to_string()
        } else {
            path.clone()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(field(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = find_nul(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(name, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&name.replace('\0', "\\u0000"));
            let found = if name.contains('\0') {
                Some(field(path))
            } else {
                find_nul(item, path)
            };
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_is_found_with_the_path_of_its_field() {
        let v = serde_json::json!({"name": "ok", "rules": [{"a": "x"}, {"b": "y\u{0}"}]});
        assert_eq!(
            find_nul(&v, &mut String::new()).as_deref(),
            Some("rules[1].b")
        );
        let v = serde_json::json!({"metadata": {"k\u{0}": 1}});
        assert_eq!(
            find_nul(&v, &mut String::new()).as_deref(),
            Some("metadata.k\\u0000")
        );
        assert!(
            find_nul(
                &serde_json::json!({"a": ["b", 1, null]}),
                &mut String::new()
            )
            .is_none()
        );
    }
}
