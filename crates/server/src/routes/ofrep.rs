//! OpenFeature Remote Evaluation Protocol (OFREP), as the protocol's
//! `service/openapi.yaml` specifies it:
//!
//! - `POST /ofrep/v1/evaluate/flags/{key}`: one flag. `200 {key, value,
//!   reason, variant, metadata}`; `400 {key, errorCode, errorDetails}` for
//!   `PARSE_ERROR`, `INVALID_CONTEXT`, `TARGETING_KEY_MISSING`; `404` with
//!   `FLAG_NOT_FOUND`.
//! - `POST /ofrep/v1/evaluate/flags`: every flag of the key's environment.
//!   `200 {flags: [...]}` where each item is a success or a failure item,
//!   with an `ETag`; `If-None-Match` naming the current tag gives `304`.
//!   A request that cannot be read at all gives `400 {errorCode,
//!   errorDetails}`.
//!
//! Authentication (`401`, `403`) and rate limits (`429` with `Retry-After`)
//! come from the [`Principal`] extractor; client and server SDK keys may
//! evaluate.
//!
//! Reasons on the wire are OpenFeature's only ([`wire_reason`]): a failed
//! prerequisite is `DEFAULT`, with `PREREQUISITE_FAILED` kept in the
//! metadata under [`REASON_METADATA`].
//!
//! Exposures: a single-flag evaluation that assigns the unit to a running
//! experiment logs one (the application asked for that flag, so the unit
//! is served it where it matters). A bulk evaluation is a pre-fetch of
//! every flag, most of which the application may never read: it logs none;
//! the SDK reports an exposure when a flag is read (`POST /api/v1/events`).
//!
//! This is the hot path of the server. The snapshot is read lock-free, the
//! evaluation borrows from it, and the response is serialized straight from
//! the borrowed [`Evaluation`] into one buffer: the request's context is the
//! only structure built per request. The database is never touched (the
//! key lookup is served from the auth cache).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};
use switchyard_core::{Context, ContextError, Evaluation, Reason};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::snapshots::Snapshot;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_flag))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_flags))
}

/// OFREP error codes this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfrepCode {
    ParseError,
    InvalidContext,
    TargetingKeyMissing,
    FlagNotFound,
    General,
}

impl OfrepCode {
    fn as_str(self) -> &'static str {
        match self {
            OfrepCode::ParseError => "PARSE_ERROR",
            OfrepCode::InvalidContext => "INVALID_CONTEXT",
            OfrepCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            OfrepCode::FlagNotFound => "FLAG_NOT_FOUND",
            OfrepCode::General => "GENERAL",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            OfrepCode::FlagNotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request that failed before any flag was evaluated.
#[derive(Debug)]
struct RequestError {
    code: OfrepCode,
    details: String,
    status: StatusCode,
}

impl RequestError {
    fn new(code: OfrepCode, details: impl Into<String>) -> Self {
        RequestError {
            code,
            details: details.into(),
            status: code.status(),
        }
    }

    /// The single-flag failure shape, `{key, errorCode, errorDetails}`.
    fn for_flag(self, key: &str) -> Response {
        let body = FailureItem {
            key: Some(key),
            code: self.code,
            details: &self.details,
        };
        json_response(self.status, &body)
    }

    /// The bulk failure shape, `{errorCode, errorDetails}`.
    fn for_bulk(self) -> Response {
        let body = FailureItem {
            key: None,
            code: self.code,
            details: &self.details,
        };
        json_response(self.status, &body)
    }
}

/// The flag key of `POST /ofrep/v1/evaluate/flags/{key}`: the path's last
/// segment, percent-decoded. Read from the request's URI (a reference-
/// counted clone) rather than through axum's `Path`, which copies it.
struct FlagKey(axum::http::Uri);

impl<S: Send + Sync> FromRequestParts<S> for FlagKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(FlagKey(parts.uri.clone()))
    }
}

impl FlagKey {
    fn decode(&self) -> Result<std::borrow::Cow<'_, str>, RequestError> {
        let raw = self.0.path().rsplit('/').next().unwrap_or_default();
        if !raw.contains('%') {
            return Ok(std::borrow::Cow::Borrowed(raw));
        }
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| {
                RequestError::new(
                    OfrepCode::General,
                    "the flag key in the path is not UTF-8 once percent-decoded",
                )
            })
    }
}

/// The request body, read whole up to the server's body limit (413 over
/// it). Hyper hands a small body over as one frame, which is then used as
/// it is: no intermediate buffer list, no copy.
struct OfrepBody(Result<Bytes, RequestError>);

impl FromRequest<AppState> for OfrepBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(OfrepBody(
            read_body(req.into_body(), state.config.body_limit).await,
        ))
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, RequestError> {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt as _;

    let too_large = || {
        let mut e = RequestError::new(
            OfrepCode::ParseError,
            format!("request body is larger than {limit} bytes"),
        );
        e.status = StatusCode::PAYLOAD_TOO_LARGE;
        e
    };
    let unreadable =
        |e: axum::Error| RequestError::new(OfrepCode::ParseError, format!("reading the body: {e}"));
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    // The first frame is kept as it is; a second one starts a copy.
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue; // trailers
        };
        if first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len() > limit {
            return Err(too_large());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// Reads `{"context": {...}}`. An empty body is an empty context; a
/// missing or `null` context too.
fn parse_context(body: &[u8]) -> Result<Context, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    // JSON is UTF-8 (RFC 8259). Checking the whole body at once lets the
    // parser take it as text, which is about a quarter faster than having
    // it check every string it reads (`context/parse_6_attributes*` in
    // `cargo bench -p switchyard-core --bench eval`).
    let body = std::str::from_utf8(body).map_err(|e| {
        RequestError::new(
            OfrepCode::ParseError,
            format!("request body is not UTF-8 text: {e}"),
        )
    })?;
    // Fast path: straight into the context's own map. Anything unusual
    // takes the slow path below, which says precisely what is wrong.
    #[derive(serde::Deserialize)]
    struct Request {
        context: Option<Context>,
    }
    if let Ok(Request { context }) = serde_json::from_str::<Request>(body)
        && let Ok(context) = context.unwrap_or_default().checked()
    {
        return Ok(context);
    }
    let request: Value = serde_json::from_str(body).map_err(|e| {
        RequestError::new(
            OfrepCode::ParseError,
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut request) = request else {
        return Err(RequestError::new(
            OfrepCode::ParseError,
            "request body must be a JSON object such as {\"context\": {...}}",
        ));
    };
    match request.remove("context") {
        None | Some(Value::Null) => Ok(Context::new()),
        Some(context) => Context::from_value(context).map_err(|e| {
            let details = match e {
                ContextError::TargetingKeyNotString => {
                    "context.targetingKey must be a string".to_string()
                }
                other => other.to_string(),
            };
            RequestError::new(OfrepCode::InvalidContext, details)
        }),
    }
}

/// The snapshot of the environment the SDK key is bound to.
fn snapshot_for(state: &AppState, principal: &Principal) -> Result<Arc<Snapshot>, ApiError> {
    let (project, environment) = principal.sdk_environment(true)?;
    match state.snapshots.get(project, environment) {
        Some(slot) => Ok(slot.load()),
        None => Err(ApiError::Forbidden(format!(
            "the environment {project}/{environment} of this key does not exist"
        ))),
    }
}

async fn evaluate_flag(
    State(state): State<AppState>,
    principal: Principal,
    key: FlagKey,
    OfrepBody(body): OfrepBody,
) -> Response {
    let snapshot = match snapshot_for(&state, &principal) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let key = match key.decode() {
        Ok(k) => k,
        Err(e) => return e.for_bulk(),
    };
    let context = match body.and_then(|b| parse_context(&b)) {
        Ok(c) => c,
        Err(e) => return e.for_flag(&key),
    };
    let evaluator = &snapshot.evaluator;
    let index = evaluator.index_of(&key);
    let evaluation = match index {
        Some(i) => evaluator.evaluate_at(i, &context),
        None => evaluator.evaluate(&key, &context),
    };
    if evaluation.reason != Reason::Error {
        // Served evaluations are counted (as before); failures are not.
        // This is the one place that logs exposures (see the module doc).
        if let Some(i) = index {
            snapshot.evaluation_counters(&state.metrics)[i].inc();
        }
        log_exposure(&state, &snapshot, &context, &evaluation);
        return json_response(StatusCode::OK, &SuccessItem(&evaluation));
    }
    let (code, details) = failure_of(&evaluation, &snapshot);
    RequestError::new(code, details).for_flag(&key)
}

/// Server-side evaluation of an experiment flag is an exposure: hand it to
/// the event log, which deduplicates per (unit, experiment, phase, variation) and
/// appends in the background. Never blocks the request.
fn log_exposure(state: &AppState, snapshot: &Snapshot, context: &Context, e: &Evaluation<'_>) {
    let (Some(exposure), Some(events)) = (e.exposure, state.events.as_ref()) else {
        return;
    };
    if let Some(unit) = context.unit(exposure.bucket_by) {
        events.log_exposure(
            &snapshot.project,
            &snapshot.environment,
            &unit,
            exposure.experiment,
            exposure.phase,
            exposure.variation,
            std::time::SystemTime::now(),
            switchyard_core::exposure::attributes_of(context),
        );
    }
}

/// `If-None-Match`, borrowed from the request without copying the headers.
#[derive(Debug)]
struct IfNoneMatch(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(
            parts.headers.get(header::IF_NONE_MATCH).cloned(),
        ))
    }
}

async fn evaluate_flags(
    State(state): State<AppState>,
    principal: Principal,
    IfNoneMatch(if_none_match): IfNoneMatch,
    OfrepBody(body): OfrepBody,
) -> Response {
    let snapshot = match snapshot_for(&state, &principal) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let context = match body.and_then(|b| parse_context(&b)) {
        Ok(c) => c,
        Err(e) => return e.for_bulk(),
    };
    let etag = bulk_etag(&snapshot, &context);
    let Ok(etag_header) = HeaderValue::from_str(&etag) else {
        return ApiError::Internal(format!("unusable ETag {etag:?}")).into_response();
    };
    if let Some(inm) = if_none_match
        && etag_matches(&inm, &etag)
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        resp.headers_mut().insert(header::ETAG, etag_header);
        return resp;
    }
    let evaluator = &snapshot.evaluator;
    for counter in snapshot.evaluation_counters(&state.metrics) {
        counter.inc();
    }
    // No exposures: a pre-fetch is not a read (see the module doc).
    let evaluations = evaluator.evaluate_all(&context);
    let body = BulkBody {
        evaluations: &evaluations,
        snapshot: &snapshot,
    };
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut().insert(header::ETAG, etag_header);
    resp
}

/// The OFREP error code and details of an evaluation whose reason is ERROR.
fn failure_of(e: &Evaluation<'_>, snapshot: &Snapshot) -> (OfrepCode, String) {
    use switchyard_core::ErrorCode;
    match e.error_code {
        Some(ErrorCode::FlagNotFound) => (
            OfrepCode::FlagNotFound,
            format!(
                "flag {:?} does not exist in environment {}/{}",
                e.key, snapshot.project, snapshot.environment
            ),
        ),
        Some(ErrorCode::TargetingKeyMissing) => (
            OfrepCode::TargetingKeyMissing,
            format!(
                "flag {:?} splits traffic by an attribute the context lacks (usually targetingKey)",
                e.key
            ),
        ),
        None => (OfrepCode::General, format!("flag {:?} failed", e.key)),
    }
}

/// The metadata entry that carries the evaluator's own reason where it is
/// finer than OpenFeature's (`PREREQUISITE_FAILED`).
pub const REASON_METADATA: &str = "switchyard.reason";

/// The OpenFeature reason of an evaluation, and the evaluator's finer
/// reason when OpenFeature has no word for it. A failed prerequisite
/// serves the flag's off variation as a fallback, without evaluating its
/// targeting: OpenFeature's `DEFAULT` ("fell back to a pre-configured
/// value"), not `DISABLED` (the flag itself is on).
pub fn wire_reason(reason: Reason) -> (&'static str, Option<&'static str>) {
    match reason {
        Reason::PrerequisiteFailed => ("DEFAULT", Some(reason.as_str())),
        Reason::Static
        | Reason::Default
        | Reason::TargetingMatch
        | Reason::Split
        | Reason::Disabled
        | Reason::Error => (reason.as_str(), None),
    }
}

/// `{key, value, reason, variant, metadata}`.
struct SuccessItem<'a>(&'a Evaluation<'a>);

impl Serialize for SuccessItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let (reason, detail) = wire_reason(e.reason);
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("key", e.key)?;
        m.serialize_entry("value", &e.value)?;
        m.serialize_entry("reason", reason)?;
        if let Some(variant) = e.variant {
            m.serialize_entry("variant", variant)?;
        }
        m.serialize_entry("metadata", &Metadata(e.metadata, detail))?;
        m.end()
    }
}

/// Flag metadata, plus the finer reason if there is one (it replaces a
/// flag's own entry of that name); always an object, `{}` when empty.
struct Metadata<'a>(Option<&'a Map<String, Value>>, Option<&'static str>);

impl Serialize for Metadata<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0, self.1) {
            (Some(map), None) => map.serialize(s),
            (None, None) => s.serialize_map(Some(0))?.end(),
            (map, Some(detail)) => {
                let mut m = s.serialize_map(None)?;
                for (k, v) in map.into_iter().flatten() {
                    if k != REASON_METADATA {
                        m.serialize_entry(k, v)?;
                    }
                }
                m.serialize_entry(REASON_METADATA, detail)?;
                m.end()
            }
        }
    }
}

/// `{key?, errorCode, errorDetails}`.
struct FailureItem<'a> {
    key: Option<&'a str>,
    code: OfrepCode,
    details: &'a str,
}

impl Serialize for FailureItem<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        if let Some(key) = self.key {
            m.serialize_entry("key", key)?;
        }
        m.serialize_entry("errorCode", self.code.as_str())?;
        m.serialize_entry("errorDetails", self.details)?;
        m.end()
    }
}

/// `{"flags": [...]}`, each item a success or a failure.
struct BulkBody<'a> {
    evaluations: &'a [Evaluation<'a>],
    snapshot: &'a Snapshot,
}

impl Serialize for BulkBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Items<'a>(&'a BulkBody<'a>);
        impl Serialize for Items<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(Some(self.0.evaluations.len()))?;
                for e in self.0.evaluations {
                    if e.reason == Reason::Error {
                        let (code, details) = failure_of(e, self.0.snapshot);
                        seq.serialize_element(&FailureItem {
                            key: Some(e.key),
                            code,
                            details: &details,
                        })?;
                    } else {
                        seq.serialize_element(&SuccessItem(e))?;
                    }
                }
                seq.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("flags", &Items(self))?;
        m.end()
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let mut buf = Vec::with_capacity(256);
    if let Err(e) = serde_json::to_writer(&mut buf, body) {
        return ApiError::Internal(format!("serializing an OFREP response: {e}")).into_response();
    }
    let mut resp = Response::new(axum::body::Body::from(buf));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The bulk ETag: the snapshot's tag (its revision) plus a hash of the
/// context, so it changes when either does. The hash walks the context in
/// key order (serde_json maps are sorted), so equal contexts sent with
/// their keys in a different order share a tag.
fn bulk_etag(snapshot: &Snapshot, context: &Context) -> String {
    let mut h = Fnv64::new();
    for (k, v) in context.attributes() {
        h.bytes(k.as_bytes());
        h.bytes(&[0xff]);
        h.value(v);
    }
    format!(
        "\"{}-{:016x}\"",
        snapshot.etag.trim_start_matches("W/").trim_matches('"'),
        h.0
    )
}

/// Whether an `If-None-Match` list names `etag` (weak comparison).
fn etag_matches(header: &HeaderValue, etag: &str) -> bool {
    let Ok(list) = header.to_str() else {
        return false;
    };
    fn bare(t: &str) -> &str {
        t.trim().trim_start_matches("W/")
    }
    let ours = bare(etag);
    list.split(',').any(|t| t.trim() == "*" || bare(t) == ours)
}

/// FNV-1a, 64 bits: small, fast, stable across processes and releases
/// (unlike `std`'s hasher), so every node derives the same tag.
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Type tag, then content; containers are delimited, so distinct
    /// values cannot feed the same bytes.
    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.bytes(b"n"),
            Value::Bool(b) => self.bytes(if *b { b"t" } else { b"f" }),
            Value::Number(n) => {
                self.bytes(b"#");
                let _ = write!(self, "{n}");
                self.bytes(b";");
            }
            Value::String(s) => {
                self.bytes(b"s");
                self.bytes(&(s.len() as u64).to_le_bytes());
                self.bytes(s.as_bytes());
            }
            Value::Array(items) => {
                self.bytes(b"[");
                for item in items {
                    self.value(item);
                }
                self.bytes(b"]");
            }
            Value::Object(map) => {
                self.bytes(b"{");
                for (k, item) in map {
                    self.bytes(&(k.len() as u64).to_le_bytes());
                    self.bytes(k.as_bytes());
                    self.value(item);
                }
                self.bytes(b"}");
            }
        }
    }
}

impl std::fmt::Write for Fnv64 {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_if_none_match_list_matches_weak_and_strong_forms_of_the_tag() {
        let tag = "\"7-abc\"";
        for header in ["\"7-abc\"", "W/\"7-abc\"", "\"x\", \"7-abc\"", "*"] {
            assert!(
                etag_matches(&HeaderValue::from_static(header), tag),
                "{header}"
            );
        }
        assert!(!etag_matches(&HeaderValue::from_static("\"7-abd\""), tag));
    }

    #[test]
    fn the_context_hash_ignores_key_order_and_separates_types() {
        let hash = |json: &str| {
            let c = Context::from_value(serde_json::from_str(json).unwrap()).unwrap();
            let mut h = Fnv64::new();
            for (k, v) in c.attributes() {
                h.bytes(k.as_bytes());
                h.value(v);
            }
            h.0
        };
        assert_eq!(hash(r#"{"a":1,"b":"x"}"#), hash(r#"{"b":"x","a":1}"#));
        assert_ne!(hash(r#"{"a":1}"#), hash(r#"{"a":"1"}"#));
        assert_ne!(hash(r#"{"a":["x","y"]}"#), hash(r#"{"a":["xy"]}"#));
    }
}
