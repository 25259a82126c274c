//! A provider for the official OpenFeature Rust SDK (`open-feature`
//! 0.3): flags resolve locally through a [`Client`], with OpenFeature's
//! reasons and error codes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use open_feature::{EvaluationContext, OpenFeature};
//! use switchyard_sdk::Client;
//! use switchyard_sdk::openfeature::SwitchyardProvider;
//!
//! let client = Client::builder("http://127.0.0.1:8080", "sk_server_...").build()?;
//! let mut api = OpenFeature::singleton_mut().await;
//! // `set_provider` waits for the first sync (at most 5 s by default).
//! api.set_provider(SwitchyardProvider::new(client.clone())).await;
//! let flags = api.create_client();
//! let ctx = EvaluationContext::default().with_targeting_key("user-42");
//! let on = flags.get_bool_value("new-checkout", Some(&ctx), None).await.unwrap_or(false);
//! // Conversions go to the server through the Switchyard client.
//! client.track("user-42", "purchase", Some(12.5), None);
//! # Ok(()) }
//! ```
//!
//! What `open-feature` 0.3 offers and what this provider does with it:
//!
//! - **Status** ([`FeatureProvider::status`]): `NotReady` before the first
//!   sync (unless a bootstrap or cached copy serves), `Ready`, `STALE`
//!   while the server is unreachable, `Error` once the key is refused.
//! - **Reasons**: Switchyard's, except `PREREQUISITE_FAILED`, which
//!   OpenFeature lacks: it resolves as `DEFAULT` with the flag metadata
//!   `switchyard.reason = PREREQUISITE_FAILED`, as OFREP answers.
//! - **Error codes**: `FLAG_NOT_FOUND`, `TYPE_MISMATCH`,
//!   `TARGETING_KEY_MISSING`, `PROVIDER_NOT_READY`; the OpenFeature
//!   client returns them as `Err(EvaluationError)`, and the caller supplies
//!   the fallback (`.unwrap_or(default)`).
//! - **Start**: `set_provider` runs `initialize`, which waits for the first
//!   sync (at most [`SwitchyardProvider::ready_timeout`], 5 s) unless a
//!   bootstrap or cached copy already serves; `open-feature` 0.3 holds its
//!   lock meanwhile, so evaluations wait too.
//! - **Provider events and tracking**: the crate has neither yet, so
//!   watch [`Client::subscribe`] for readiness, changes of configuration,
//!   errors and staleness, and record conversions with [`Client::track`].
//! - **Context**: the targeting key and every custom field; a date-time
//!   becomes its RFC 3339 text (what Switchyard's date operators read); a
//!   structure is used when it holds a `serde_json::Value`, skipped
//!   otherwise.

use std::time::Duration;

use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, StructValue, Value as OfValue,
};
use serde_json::Value;

use crate::Context;
use crate::client::{Client, Status};
use crate::details::{ErrorCode, EvaluationDetails, Reason};

/// An OpenFeature provider that evaluates with a Switchyard [`Client`].
#[derive(Debug, Clone)]
pub struct SwitchyardProvider {
    client: Client,
    metadata: ProviderMetadata,
    ready_timeout: Duration,
}

impl SwitchyardProvider {
    pub fn new(client: Client) -> Self {
        SwitchyardProvider {
            client,
            metadata: ProviderMetadata::new("switchyard"),
            ready_timeout: Duration::from_secs(5),
        }
    }

    /// How long `initialize` (run by `set_provider`) waits for the first
    /// sync (default 5 s). The provider works before it anyway, from a
    /// bootstrap or cached copy or with the callers' defaults.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The Switchyard client behind the provider (for `track`, `flush`,
    /// `subscribe`).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[open_feature::async_trait]
impl FeatureProvider for SwitchyardProvider {
    async fn initialize(&mut self, _context: &EvaluationContext) {
        // `open-feature` 0.3 holds its providers' lock while this runs, so
        // every evaluation waits on it: when a copy already serves (a
        // bootstrap or cache), don't wait for the server.
        if self.client.status().revision > 0 {
            return;
        }
        if let Err(e) = self.client.wait_until_ready(self.ready_timeout).await {
            tracing::warn!(error = %e, "switchyard: the OpenFeature provider starts without a fresh configuration");
        }
    }

    fn status(&self) -> ProviderStatus {
        let report = self.client.status();
        match report.status {
            Status::Ready => ProviderStatus::Ready,
            Status::Stale => ProviderStatus::STALE,
            Status::Failed => ProviderStatus::Error,
            // A bootstrap or cached copy serves: usable, but not current.
            Status::Initializing if report.revision > 0 => ProviderStatus::STALE,
            Status::Initializing => ProviderStatus::NotReady,
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let ctx = context_of(evaluation_context);
        resolution(self.client.bool_details(flag_key, &ctx, false))
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        let ctx = context_of(evaluation_context);
        resolution(self.client.int_details(flag_key, &ctx, 0))
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        let ctx = context_of(evaluation_context);
        resolution(self.client.number_details(flag_key, &ctx, 0.0))
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        let ctx = context_of(evaluation_context);
        resolution(self.client.string_details(flag_key, &ctx, ""))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        let ctx = context_of(evaluation_context);
        let details = self.client.json_details(flag_key, &ctx, Value::Null);
        let details = match &details.value {
            Value::Object(_) if details.is_ok() => {
                let value = match of_value(&details.value) {
                    OfValue::Struct(s) => s,
                    _ => StructValue::default(),
                };
                EvaluationDetails {
                    value,
                    variant: details.variant,
                    reason: details.reason,
                    error: None,
                    rule: details.rule,
                    revision: details.revision,
                }
            }
            _ => EvaluationDetails {
                value: StructValue::default(),
                variant: None,
                reason: Reason::Error,
                error: Some(details.error.unwrap_or(ErrorCode::TypeMismatch)),
                rule: None,
                revision: details.revision,
            },
        };
        resolution(details)
    }
}

/// OpenFeature's context as Switchyard's.
pub fn context_of(ctx: &EvaluationContext) -> Context {
    let mut out = Context::with_capacity(ctx.custom_fields.len() + 1);
    if let Some(key) = &ctx.targeting_key {
        out.set("targetingKey", key.as_str());
    }
    for (name, value) in &ctx.custom_fields {
        let value = match value {
            EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
            EvaluationContextFieldValue::Int(i) => Value::from(*i),
            EvaluationContextFieldValue::Float(f) => Value::from(*f),
            EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
            EvaluationContextFieldValue::DateTime(t) => {
                match t.format(&time::format_description::well_known::Rfc3339) {
                    Ok(text) => Value::String(text),
                    Err(_) => continue,
                }
            }
            EvaluationContextFieldValue::Struct(any) => match any.downcast_ref::<Value>() {
                Some(v) => v.clone(),
                None => continue,
            },
        };
        out.set(name.as_str(), value);
    }
    out
}

fn resolution<T>(details: EvaluationDetails<T>) -> EvaluationResult<ResolutionDetails<T>> {
    if let Some(code) = details.error {
        let code = match code {
            ErrorCode::ProviderNotReady => EvaluationErrorCode::ProviderNotReady,
            ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
            ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
            ErrorCode::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        };
        return Err(EvaluationError {
            message: Some(format!("switchyard: {code}")),
            code,
        });
    }
    let (reason, flag_metadata) = match details.reason {
        Reason::Static => (EvaluationReason::Static, None),
        Reason::Default => (EvaluationReason::Default, None),
        Reason::TargetingMatch => (EvaluationReason::TargetingMatch, None),
        Reason::Split => (EvaluationReason::Split, None),
        Reason::Disabled => (EvaluationReason::Disabled, None),
        Reason::PrerequisiteFailed => (
            EvaluationReason::Default,
            Some(FlagMetadata::default().with_value("switchyard.reason", "PREREQUISITE_FAILED")),
        ),
        Reason::Error => (EvaluationReason::Error, None),
    };
    Ok(ResolutionDetails {
        value: details.value,
        variant: details.variant,
        reason: Some(reason),
        flag_metadata,
    })
}

/// A JSON value as OpenFeature's (`null` has no counterpart: it becomes
/// an empty structure; a number beyond `i64` becomes a float).
fn of_value(v: &Value) -> OfValue {
    match v {
        Value::Null => OfValue::Struct(StructValue::default()),
        Value::Bool(b) => OfValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OfValue::Int(i),
            None => OfValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => OfValue::String(s.clone()),
        Value::Array(items) => OfValue::Array(items.iter().map(of_value).collect()),
        Value::Object(map) => {
            let mut s = StructValue::default();
            for (k, v) in map {
                s.add_field(k, of_value(v));
            }
            OfValue::Struct(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"flags": [
        {"key": "b", "type": "boolean", "variations": [{"key": "off", "value": false}, {"key": "on", "value": true}],
         "enabled": true, "off_variation": "off",
         "rules": [{"conditions": [{"attribute": "country", "op": "equals", "value": "NL"}], "serve": {"variation": "on"}}],
         "fallthrough": {"variation": "off"}},
        {"key": "j", "type": "json", "variations": [{"key": "v", "value": {"limit": 3, "tags": ["x"], "ratio": 0.5}}],
         "enabled": true, "off_variation": "v", "fallthrough": {"variation": "v"}},
        {"key": "s", "type": "string", "variations": [{"key": "a", "value": "A"}],
         "enabled": true, "off_variation": "a", "fallthrough": {"variation": "a"}},
        {"key": "gated", "type": "string", "variations": [{"key": "x", "value": "X"}, {"key": "y", "value": "Y"}],
         "enabled": true, "off_variation": "x", "prerequisites": [{"flag": "b", "variations": ["on"]}],
         "fallthrough": {"variation": "y"}}
    ]}"#;

    fn provider() -> SwitchyardProvider {
        SwitchyardProvider::new(Client::offline(DOC).unwrap())
    }

    #[tokio::test]
    async fn values_reasons_and_errors_map_to_openfeature() {
        let p = provider();
        let mut ctx = EvaluationContext::default().with_targeting_key("u1");
        ctx.custom_fields.insert(
            "country".into(),
            EvaluationContextFieldValue::String("NL".into()),
        );
        let b = p.resolve_bool_value("b", &ctx).await.unwrap();
        assert!(b.value);
        assert_eq!(b.variant.as_deref(), Some("on"));
        assert_eq!(b.reason, Some(EvaluationReason::TargetingMatch));

        let e = p.resolve_bool_value("missing", &ctx).await.unwrap_err();
        assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);
        let e = p.resolve_int_value("s", &ctx).await.unwrap_err();
        assert_eq!(e.code, EvaluationErrorCode::TypeMismatch);
        let e = p.resolve_struct_value("s", &ctx).await.unwrap_err();
        assert_eq!(e.code, EvaluationErrorCode::TypeMismatch);

        let j = p.resolve_struct_value("j", &ctx).await.unwrap();
        assert_eq!(j.value.fields.get("limit"), Some(&OfValue::Int(3)));
        assert_eq!(j.value.fields.get("ratio"), Some(&OfValue::Float(0.5)));

        // Not NL: the prerequisite fails, served as DEFAULT with the reason
        // in the metadata, as OFREP does.
        let other = EvaluationContext::default().with_targeting_key("u2");
        let g = p.resolve_string_value("gated", &other).await.unwrap();
        assert_eq!(g.value, "X");
        assert_eq!(g.reason, Some(EvaluationReason::Default));
        let meta = g.flag_metadata.unwrap();
        assert!(meta.values.contains_key("switchyard.reason"));
        assert_eq!(p.status(), ProviderStatus::Ready);
    }

    #[tokio::test]
    async fn through_the_openfeature_api_the_default_serves_on_errors() {
        let mut api = open_feature::OpenFeature::default();
        api.set_provider(provider()).await;
        let client = api.create_client();
        let ctx = EvaluationContext::default().with_targeting_key("u1");
        assert_eq!(
            client
                .get_string_value("s", Some(&ctx), None)
                .await
                .unwrap(),
            "A"
        );
        let details = client.get_bool_details("nope", Some(&ctx), None).await;
        assert!(details.is_err() || !details.unwrap().value);
    }
}
