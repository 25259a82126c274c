//! Read-your-writes on the writing node: after a successful change through
//! the control API, this node's snapshots (or its key ring) are brought up
//! to date *before* the answer leaves. When the API says a kill switch is
//! off, an evaluation on the same node that starts after the answer sees it
//! off; other nodes follow through the store's change notifications.
//!
//! One middleware on the control router, not a line in every handler: it
//! reads what changed from the request path.
//! - `/projects/{p}/...` (and `/projects/{p}` itself): the snapshots of
//!   project `p`, every environment (a rebuilt environment whose document
//!   did not change is neither recompiled nor published, see
//!   `snapshots.rs`); a `DELETE` also re-reads the key ring (a deleted
//!   project or environment takes its keys with it).
//! - `POST /projects`: the project named by the `Location` of the answer.
//! - `/api-keys/...`: the key ring; a revoked key is dropped from it
//!   first, without the store, so the revocation holds on this node even
//!   if the store fails right after the commit.
//!
//! A refresh that fails (the store went away after the commit) is logged;
//! the answer stays the write's, which did happen. The follower task and
//! the periodic resync catch up when the store is back.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// What a successful write changed, read from its path (relative to
/// `/api/v1`).
#[derive(Debug, PartialEq, Eq)]
enum Changed<'a> {
    Project(&'a str),
    /// A new project; its key is in the answer's `Location`.
    NewProject,
    Keys {
        revoked: Option<&'a str>,
    },
    Nothing,
}

fn changed<'a>(method: &Method, path: &'a str) -> Changed<'a> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("projects"), None | Some(""), None) if method == Method::POST => Changed::NewProject,
        (Some("projects"), Some(p), _) if !p.is_empty() => Changed::Project(p),
        (Some("api-keys"), id, None) => Changed::Keys {
            revoked: id.filter(|id| !id.is_empty() && method == Method::DELETE),
        },
        (Some("api-keys"), _, _) => Changed::Keys { revoked: None },
        _ => Changed::Nothing,
    }
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn after_write(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_write(req.method()) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let result = match changed(&method, &path) {
        // A deleted environment or project took its keys with it. The
        // follower may have dropped its snapshot (and be re-reading the
        // keys) already, so the ring is re-read here, not only when this
        // reload is the one that finds the environment gone.
        Changed::Project(p) if method == Method::DELETE => {
            match state.snapshots.reload_project(p, None).await {
                Ok(()) => state.auth.refresh().await.map(drop),
                Err(e) => Err(e),
            }
        }
        Changed::Project(p) => state.snapshots.reload_project(p, None).await,
        Changed::NewProject => match new_project(&resp) {
            Some(p) => state.snapshots.reload_project(&p, None).await,
            None => Ok(()),
        },
        Changed::Keys { revoked } => {
            if let Some(id) = revoked {
                state.auth.forget(id).await;
            }
            state.auth.refresh().await.map(drop)
        }
        Changed::Nothing => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, %path, "refreshing this node's snapshots after a write failed");
    }
    resp
}

/// The project key in the `Location` of a creation answer.
fn new_project(resp: &Response) -> Option<String> {
    let location = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    let key = location.strip_prefix("/api/v1/projects/")?;
    (!key.is_empty() && !key.contains('/')).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_path_names_what_it_changed() {
        let cases = [
            (Method::POST, "/projects", Changed::NewProject),
            (Method::POST, "/api/v1/projects", Changed::NewProject),
            (Method::DELETE, "/projects/demo", Changed::Project("demo")),
            (
                Method::PATCH,
                "/projects/demo/flags/f/environments/production",
                Changed::Project("demo"),
            ),
            (
                Method::POST,
                "/api/v1/projects/demo/environments/staging/experiments/x/start",
                Changed::Project("demo"),
            ),
            (Method::POST, "/api-keys", Changed::Keys { revoked: None }),
            (
                Method::DELETE,
                "/api-keys/key_1",
                Changed::Keys {
                    revoked: Some("key_1"),
                },
            ),
            (Method::PUT, "/organisation", Changed::Nothing),
            (Method::POST, "/", Changed::Nothing),
            (Method::POST, "/projects//flags", Changed::Nothing),
        ];
        for (method, path, want) in cases {
            assert_eq!(changed(&method, path), want, "{method} {path}");
        }
    }
}
