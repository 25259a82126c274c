//! One shape for the routes of a control-plane resource: list and create on
//! its collection, read, replace (`PUT` with `If-Match`) and delete (with
//! `If-Match`) on each item. Every handler checks the caller's role on the
//! project first, then reads `If-Match` and the body, so a caller without
//! the right gets 403 whatever it sent; the store records the audit entry.
//!
//! A resource module implements [`ApiResource`] (its body and how it
//! becomes the store's input, which store calls serve it) and routes its
//! paths to [`collection`] and [`item`], or to single handlers when a
//! method is particular to it.

use std::future::Future;

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_store::{ConfigStore, Role, Version, Versioned};

use super::etag::{IfMatch, created, deleted, listed, versioned};
use super::input::{ApiPath, Body, allow, body, check_same_key};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Where a resource lives, from the path parameters of its routes.
pub trait Scope: Send + Sync + Sized + 'static {
    /// The collection's path parameters.
    type Path: DeserializeOwned + Send + 'static;
    /// An item's path parameters: the collection's and the item's key.
    type ItemPath: DeserializeOwned + Send + 'static;
    fn from_path(path: Self::Path) -> Self;
    fn from_item_path(path: Self::ItemPath) -> (Self, String);
    /// The project whose roles govern access.
    fn project(&self) -> &str;
}

/// `/projects/{project}/...`
#[derive(Debug)]
pub struct InProject {
    pub project: String,
}

impl Scope for InProject {
    type Path = String;
    type ItemPath = (String, String);
    fn from_path(project: String) -> Self {
        InProject { project }
    }
    fn from_item_path((project, key): (String, String)) -> (Self, String) {
        (InProject { project }, key)
    }
    fn project(&self) -> &str {
        &self.project
    }
}

/// `/projects/{project}/environments/{env}/...`
#[derive(Debug)]
pub struct InEnvironment {
    pub project: String,
    pub env: String,
}

impl Scope for InEnvironment {
    type Path = (String, String);
    type ItemPath = (String, String, String);
    fn from_path((project, env): (String, String)) -> Self {
        InEnvironment { project, env }
    }
    fn from_item_path((project, env, key): (String, String, String)) -> (Self, String) {
        (InEnvironment { project, env }, key)
    }
    fn project(&self) -> &str {
        &self.project
    }
}

/// A versioned resource as the API serves it: only what is particular to it.
pub trait ApiResource: Send + Sync + 'static {
    type Scope: Scope;
    /// What create and replace take. On create the key is in the body; on
    /// replace it may be repeated there but must be the URL's.
    type Body: DeserializeOwned + Send + 'static;
    /// The store's input.
    type Input: Send;
    /// The store's resource, as it is answered.
    type Item: Serialize + Versioned + Send;

    /// The role that reads, and the role that writes.
    const READ: Role = Role::Viewer;
    const WRITE: Role = Role::Editor;
    /// Deleting one deletes the API keys bound to it: the node forgets
    /// cached keys at once.
    const DELETE_TAKES_KEYS: bool = false;

    fn body_key(body: &Self::Body) -> Option<&str>;
    /// Checks the body (400 naming the field) and makes the store's input.
    fn into_input(body: Self::Body, key: String) -> ApiResult<Self::Input>;

    /// Whether the item at version `expected` may be replaced now (a 409
    /// when its state forbids it); the store checks the version again.
    fn check_replace(
        _store: &dyn ConfigStore,
        _scope: &Self::Scope,
        _key: &str,
        _expected: Version,
    ) -> impl Future<Output = ApiResult<()>> + Send {
        async { Ok(()) }
    }

    fn list(
        store: &dyn ConfigStore,
        scope: &Self::Scope,
    ) -> impl Future<Output = ApiResult<Vec<Self::Item>>> + Send;
    fn get(
        store: &dyn ConfigStore,
        scope: &Self::Scope,
        key: &str,
    ) -> impl Future<Output = ApiResult<Self::Item>> + Send;
    fn create(
        store: &dyn ConfigStore,
        actor: &str,
        scope: &Self::Scope,
        input: Self::Input,
    ) -> impl Future<Output = ApiResult<Self::Item>> + Send;
    fn replace(
        store: &dyn ConfigStore,
        actor: &str,
        scope: &Self::Scope,
        key: &str,
        expected: Version,
        input: Self::Input,
    ) -> impl Future<Output = ApiResult<Self::Item>> + Send;
    fn delete(
        store: &dyn ConfigStore,
        actor: &str,
        scope: &Self::Scope,
        key: &str,
        expected: Version,
    ) -> impl Future<Output = ApiResult<()>> + Send;
}

type CollectionPath<R> = ApiPath<<<R as ApiResource>::Scope as Scope>::Path>;
type ItemPath<R> = ApiPath<<<R as ApiResource>::Scope as Scope>::ItemPath>;

/// The collection's route of `R`: list and create.
pub fn collection<R: ApiResource>() -> MethodRouter<AppState> {
    get(list::<R>).post(create::<R>)
}

/// An item's route of `R`: read, replace and delete.
pub fn item<R: ApiResource>() -> MethodRouter<AppState> {
    get(read::<R>).put(replace::<R>).delete(remove::<R>)
}

pub async fn list<R: ApiResource>(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(path): CollectionPath<R>,
) -> ApiResult<Response> {
    let scope = R::Scope::from_path(path);
    allow(&p, R::READ, scope.project())?;
    Ok(listed(&R::list(&*state.store, &scope).await?))
}

pub async fn create<R: ApiResource>(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    p: Principal,
    ApiPath(path): CollectionPath<R>,
    b: Body<R::Body>,
) -> ApiResult<Response> {
    let scope = R::Scope::from_path(path);
    allow(&p, R::WRITE, scope.project())?;
    let input = body(b)?;
    let key = R::body_key(&input)
        .ok_or_else(|| ApiError::invalid_field("key", "missing field `key`"))?
        .to_string();
    let input = R::into_input(input, key)?;
    let item = R::create(&*state.store, &p.actor(), &scope, input).await?;
    let location = format!("{}/{}", uri.path(), item.key());
    Ok(created(&location, item.version(), &item))
}

pub async fn read<R: ApiResource>(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(path): ItemPath<R>,
) -> ApiResult<Response> {
    let (scope, key) = R::Scope::from_item_path(path);
    allow(&p, R::READ, scope.project())?;
    let item = R::get(&*state.store, &scope, &key).await?;
    Ok(versioned(StatusCode::OK, item.version(), &item))
}

pub async fn replace<R: ApiResource>(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(path): ItemPath<R>,
    if_match: IfMatch,
    b: Body<R::Body>,
) -> ApiResult<Response> {
    let (scope, key) = R::Scope::from_item_path(path);
    allow(&p, R::WRITE, scope.project())?;
    let expected = if_match.version()?;
    let input = body(b)?;
    check_same_key(&key, R::body_key(&input))?;
    let input = R::into_input(input, key.clone())?;
    R::check_replace(&*state.store, &scope, &key, expected).await?;
    let item = R::replace(&*state.store, &p.actor(), &scope, &key, expected, input).await?;
    Ok(versioned(StatusCode::OK, item.version(), &item))
}

pub async fn remove<R: ApiResource>(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(path): ItemPath<R>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    let (scope, key) = R::Scope::from_item_path(path);
    allow(&p, R::WRITE, scope.project())?;
    let expected = if_match.version()?;
    R::delete(&*state.store, &p.actor(), &scope, &key, expected).await?;
    if R::DELETE_TAKES_KEYS {
        state.auth.clear();
    }
    Ok(deleted())
}

/// The five store calls of an [`ApiResource`] whose store methods follow
/// the naming of the others (`list_x`, `get_x`, `create_x`, `update_x`,
/// `delete_x`), for a resource in a project or in an environment.
macro_rules! store_calls {
    (project, $list:ident, $get:ident, $create:ident, $update:ident, $delete:ident) => {
        $crate::routes::control::resource::store_calls!(@ (s) [&s.project],
            $list, $get, $create, $update, $delete);
    };
    (environment, $list:ident, $get:ident, $create:ident, $update:ident, $delete:ident) => {
        $crate::routes::control::resource::store_calls!(@ (s) [&s.project, &s.env],
            $list, $get, $create, $update, $delete);
    };
    (@ ($s:ident) [$($scope:expr),*], $list:ident, $get:ident, $create:ident, $update:ident,
        $delete:ident) => {
        async fn list(
            store: &dyn switchyard_store::ConfigStore,
            $s: &Self::Scope,
        ) -> $crate::error::ApiResult<Vec<Self::Item>> {
            Ok(store.$list($($scope),*).await?)
        }
        async fn get(
            store: &dyn switchyard_store::ConfigStore,
            $s: &Self::Scope,
            key: &str,
        ) -> $crate::error::ApiResult<Self::Item> {
            Ok(store.$get($($scope),*, key).await?)
        }
        async fn create(
            store: &dyn switchyard_store::ConfigStore,
            actor: &str,
            $s: &Self::Scope,
            input: Self::Input,
        ) -> $crate::error::ApiResult<Self::Item> {
            Ok(store.$create(actor, $($scope),*, input).await?)
        }
        async fn replace(
            store: &dyn switchyard_store::ConfigStore,
            actor: &str,
            $s: &Self::Scope,
            key: &str,
            expected: switchyard_store::Version,
            input: Self::Input,
        ) -> $crate::error::ApiResult<Self::Item> {
            Ok(store.$update(actor, $($scope),*, key, expected, input).await?)
        }
        async fn delete(
            store: &dyn switchyard_store::ConfigStore,
            actor: &str,
            $s: &Self::Scope,
            key: &str,
            expected: switchyard_store::Version,
        ) -> $crate::error::ApiResult<()> {
            Ok(store.$delete(actor, $($scope),*, key, expected).await?)
        }
    };
}
pub(crate) use store_calls;
