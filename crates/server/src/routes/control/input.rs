//! Request plumbing shared by the resources: path parameters and bodies
//! with JSON errors, key and name validation, access checks.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use switchyard_store::Role;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiJson;

/// `Path<T>` whose failure is an [`ApiError`].
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(ApiError::BadRequest {
                code: "invalid_path",
                message: r.body_text(),
                field: None,
            }),
        }
    }
}

/// A JSON body, parsed but not yet unwrapped: handlers check access first
/// and then call [`body`], so that a caller without the right gets 403
/// whatever it sent.
pub type Body<T> = Result<ApiJson<T>, ApiError>;

pub fn body<T>(b: Body<T>) -> Result<T, ApiError> {
    b.map(|ApiJson(v)| v)
}

/// Keys are short URL-safe identifiers: `[a-z0-9][a-z0-9_.-]{0,63}`.
pub fn check_key(field: &str, key: &str) -> Result<(), ApiError> {
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
        Err(ApiError::invalid_field(
            field,
            format!(
                "{field} {key:?} must be 1 to 64 characters of a-z, 0-9, '_', '-', '.', \
                 starting with a letter or digit"
            ),
        ))
    }
}

/// Display names: not blank, at most 200 characters.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must not be empty"),
        ));
    }
    check_len(field, name, 200)
}

pub fn check_len(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.chars().count() > max {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// A share in basis points: 0 to 10 000 (100 %).
pub fn check_basis_points(field: &str, value: u32) -> Result<(), ApiError> {
    if value > 10_000 {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} is in basis points, 0 to 10000 (100 %); got {value}"),
        ));
    }
    Ok(())
}

/// In a PUT the key may be repeated in the body, but must be the path's.
pub fn check_same_key(path_key: &str, body_key: Option<&str>) -> Result<(), ApiError> {
    match body_key {
        Some(k) if k != path_key => Err(ApiError::invalid_field(
            "key",
            format!("the key {k:?} differs from the URL's {path_key:?}; keys never change"),
        )),
        _ => Ok(()),
    }
}

/// `role` on `project`.
pub fn allow(p: &Principal, role: Role, project: &str) -> Result<(), ApiError> {
    p.require_admin(role, Some(project))
}

/// `role` somewhere: an admin key with at least `role`, whatever its
/// project. Lists then show only what the key may see.
pub fn allow_any_project(p: &Principal, role: Role) -> Result<(), ApiError> {
    p.require_admin(role, p.key().project.as_deref())
}

/// `role` over the whole organisation (an unbound key).
pub fn allow_organisation(p: &Principal, role: Role) -> Result<(), ApiError> {
    p.require_admin(role, None)
}

/// Whether `p` may see things of `project` (`None`: organisation-wide).
pub fn sees(p: &Principal, project: Option<&str>) -> bool {
    match (&p.key().project, project) {
        (None, _) => true,
        (Some(bound), Some(q)) => bound == q,
        (Some(_), None) => false,
    }
}
