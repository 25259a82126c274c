//! The client: its builder, its shared state, and evaluation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use serde_json::{Map, Value};
use switchyard_core::{Context, Evaluation, Evaluator};
use tokio::sync::watch;

use crate::details::{ErrorCode, EvaluationDetails, FlagDetails};
use crate::error::Error;
use crate::events::{EventStats, Events, EventsConfig};
use crate::http::Http;
use crate::sync::SyncConfig;

/// Where the client stands with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not synced yet. Evaluation serves a bootstrap or cached copy if the
    /// client has one, otherwise the caller's defaults
    /// ([`ErrorCode::ProviderNotReady`]).
    Initializing,
    /// Synced; the last contact with the server succeeded.
    Ready,
    /// The server cannot be reached (or sent a configuration this SDK
    /// cannot use); evaluation serves the last copy while the client keeps
    /// trying.
    Stale,
    /// The server refused the key (revoked, deleted, or not a server key).
    /// The client no longer syncs; evaluation serves the last copy.
    Failed,
}

/// A snapshot of the client's state, from [`Client::status`] or
/// [`Client::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub status: Status,
    /// The revision of the configuration serving (`0`: none).
    pub revision: u64,
    /// The environment of the configuration serving (empty: none).
    pub environment: String,
    /// Whether changes arrive by the stream right now (otherwise by polling).
    pub streaming: bool,
    /// When the client last heard from the server.
    pub last_sync: Option<SystemTime>,
    /// The last problem, while it lasts.
    pub error: Option<String>,
}

/// State shared by the client handles and the SDK's thread.
#[derive(Debug)]
pub(crate) struct Shared {
    config: ArcSwapOption<Evaluator>,
    status: watch::Sender<StatusReport>,
    events: Option<Events>,
    listener: Option<Listener>,
}

/// A function called with each configuration document the client installs.
#[derive(Clone)]
pub(crate) struct Listener(Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

impl Shared {
    pub fn has_config(&self) -> bool {
        self.config.load().is_some()
    }

    /// Swaps in `evaluator` unless the one serving is of the same
    /// environment and revision, or, unless `authoritative`, newer;
    /// `false` when nothing changed. Authoritative documents are the
    /// first of each stream connection and every downloaded one: they
    /// replace a bootstrap or cached copy, or what an earlier server
    /// sent, whatever the revisions (a store restored from a backup
    /// numbers its revisions lower than the copy an SDK kept). Within one
    /// stream an older revision never replaces a newer one.
    pub fn install(&self, evaluator: Evaluator, authoritative: bool) -> bool {
        if let Some(current) = self.config.load().as_ref()
            && current.environment() == evaluator.environment()
            && (current.revision() == evaluator.revision()
                || (!authoritative && current.revision() > evaluator.revision()))
        {
            return false;
        }
        let (revision, environment) = (evaluator.revision(), evaluator.environment().to_string());
        self.config.store(Some(Arc::new(evaluator)));
        self.update_status(|s| {
            s.revision = revision;
            s.environment = environment;
        });
        true
    }

    /// Tells the listener, if any, that `document` is installed.
    pub fn installed(&self, document: &str) {
        if let Some(listener) = &self.listener {
            (listener.0)(document);
        }
    }

    pub fn update_status(&self, change: impl FnOnce(&mut StatusReport)) {
        self.status.send_if_modified(|s| {
            let before = s.clone();
            change(s);
            *s != before
        });
    }
}

/// Stops the SDK's thread when the last client handle goes.
#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Becomes `true` when the SDK's thread has finished.
    stopped: watch::Receiver<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(events) = &self.shared.events {
            events.close();
        }
    }
}

/// A Switchyard client: evaluates flags in this process from a copy of
/// one environment's configuration that it keeps current, and sends
/// exposures and tracked events in the background.
///
/// Build one per environment and share it (it is cheap to clone: every
/// clone is the same client). Evaluation never blocks, never does I/O and
/// never fails: on any problem it serves the default you pass and says why
/// in the `*_details` variants.
///
/// ```
/// use switchyard_sdk::{Client, Context};
///
/// // A client that never contacts a server, from a document (for tests).
/// let client = Client::offline(r#"{"flags": [{"key": "new-checkout", "type": "boolean",
///     "variations": [{"key": "off", "value": false}, {"key": "on", "value": true}],
///     "enabled": true, "off_variation": "off", "fallthrough": {"variation": "on"}}]}"#)?;
///
/// let mut user = Context::with_key("user-42");
/// user.set("country", "NL");
/// assert!(client.bool_value("new-checkout", &user, false));
/// assert_eq!(client.string_value("missing", &user, "fallback"), "fallback");
/// # Ok::<(), switchyard_sdk::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Settings of a [`Client`]; start from [`Client::builder`]. Its `Debug`
/// output leaves the key out.
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    key: String,
    offline: bool,
    bootstrap: Option<Bootstrap>,
    cache_file: Option<PathBuf>,
    sync: SyncConfig,
    events_enabled: bool,
    events: EventsConfig,
    connect_timeout: Duration,
    request_timeout: Duration,
    close_timeout: Duration,
    listener: Option<Listener>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("key", &"<redacted>")
            .field("offline", &self.offline)
            .field("bootstrap", &self.bootstrap.is_some())
            .field("cache_file", &self.cache_file)
            .field("sync", &self.sync)
            .field("events_enabled", &self.events_enabled)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum Bootstrap {
    File(PathBuf),
    Json(String),
}

impl Client {
    /// Settings for a client of the server at `base_url`
    /// (`https://flags.example.com`) with a server SDK key.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchyard_sdk::Error> {
    /// use std::time::Duration;
    /// use switchyard_sdk::Client;
    ///
    /// let client = Client::builder("http://127.0.0.1:8080", "sk_server_...")
    ///     .cache_file("/var/cache/my-service/switchyard.json")
    ///     .build()?;
    /// // Evaluation works at once (from the cache, or the defaults);
    /// // waiting is optional.
    /// if let Err(e) = client.wait_until_ready(Duration::from_secs(5)).await {
    ///     eprintln!("starting without a fresh configuration: {e}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn builder(base_url: impl Into<String>, sdk_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            key: sdk_key.into(),
            offline: false,
            bootstrap: None,
            cache_file: None,
            sync: SyncConfig {
                streaming: true,
                poll_interval: Duration::from_secs(30),
                backoff_min: Duration::from_secs(1),
                backoff_max: Duration::from_secs(30),
                stream_idle_timeout: Duration::from_secs(45),
                request_timeout: Duration::from_secs(10),
                document_limit: 64 << 20,
                cache_file: None,
            },
            events_enabled: true,
            events: EventsConfig {
                capacity: 10_000,
                batch: 500,
                flush_interval: Duration::from_secs(1),
                exposure_window: Duration::from_secs(3600),
                exposure_keys: 200_000,
                retry_min: Duration::from_millis(500),
                retry_max: Duration::from_secs(30),
            },
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            listener: None,
        }
    }

    /// A client that never contacts a server, serving `document` (the
    /// format of `GET /sdk/v1/config`, docs/evaluation.md): for tests and
    /// for tools. It sends no events.
    pub fn offline(document: &str) -> Result<Client, Error> {
        Client::builder("http://offline.invalid", "")
            .offline(true)
            .bootstrap_json(document)
            .build()
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The flag's boolean value, or `default`.
    #[inline]
    pub fn bool_value(&self, key: &str, ctx: &Context, default: bool) -> bool {
        self.value(key, ctx, default, Value::as_bool)
    }

    /// The flag's boolean value with how it was chosen.
    ///
    /// ```
    /// use switchyard_sdk::{Client, Context, ErrorCode, Reason};
    ///
    /// let client = Client::offline(r#"{"flags": [{"key": "beta", "type": "boolean",
    ///     "variations": [{"key": "off", "value": false}, {"key": "on", "value": true}],
    ///     "enabled": true, "off_variation": "off",
    ///     "rules": [{"conditions": [{"attribute": "plan", "op": "equals", "value": "pro"}],
    ///                "serve": {"variation": "on"}}],
    ///     "fallthrough": {"variation": "off"}}]}"#)?;
    /// let mut ctx = Context::with_key("user-1");
    /// ctx.set("plan", "pro");
    /// let d = client.bool_details("beta", &ctx, false);
    /// assert_eq!((d.value, d.variant.as_deref(), d.reason, d.rule), (true, Some("on"), Reason::TargetingMatch, Some(0)));
    ///
    /// let d = client.bool_details("nope", &ctx, false);
    /// assert_eq!((d.value, d.reason, d.error), (false, Reason::Error, Some(ErrorCode::FlagNotFound)));
    /// # Ok::<(), switchyard_sdk::Error>(())
    /// ```
    pub fn bool_details(&self, key: &str, ctx: &Context, default: bool) -> EvaluationDetails<bool> {
        self.details(key, ctx, default, Value::as_bool)
    }

    /// The flag's string value, or `default`.
    #[inline]
    pub fn string_value(&self, key: &str, ctx: &Context, default: &str) -> String {
        self.value(key, ctx, None, |v| v.as_str().map(|s| Some(s.to_string())))
            .unwrap_or_else(|| default.to_string())
    }

    /// The flag's string value with how it was chosen.
    pub fn string_details(
        &self,
        key: &str,
        ctx: &Context,
        default: &str,
    ) -> EvaluationDetails<String> {
        self.details(key, ctx, default.to_string(), |v| {
            v.as_str().map(str::to_string)
        })
    }

    /// The flag's numeric value, or `default`.
    #[inline]
    pub fn number_value(&self, key: &str, ctx: &Context, default: f64) -> f64 {
        self.value(key, ctx, default, Value::as_f64)
    }

    /// The flag's numeric value with how it was chosen.
    pub fn number_details(&self, key: &str, ctx: &Context, default: f64) -> EvaluationDetails<f64> {
        self.details(key, ctx, default, Value::as_f64)
    }

    /// The flag's value as an integer, or `default` (also when the value
    /// is a number with a fraction).
    #[inline]
    pub fn int_value(&self, key: &str, ctx: &Context, default: i64) -> i64 {
        self.value(key, ctx, default, Value::as_i64)
    }

    /// The flag's integer value with how it was chosen.
    pub fn int_details(&self, key: &str, ctx: &Context, default: i64) -> EvaluationDetails<i64> {
        self.details(key, ctx, default, Value::as_i64)
    }

    /// The flag's value as JSON (any type), or `default`.
    pub fn json_value(&self, key: &str, ctx: &Context, default: Value) -> Value {
        self.value(key, ctx, default, |v| Some(v.clone()))
    }

    /// The flag's JSON value with how it was chosen.
    pub fn json_details(
        &self,
        key: &str,
        ctx: &Context,
        default: Value,
    ) -> EvaluationDetails<Value> {
        self.details(key, ctx, default, |v| Some(v.clone()))
    }

    /// Evaluates `key` and hands the served value (`None` on any error)
    /// to `read`, without copying it: the fastest way to read a large
    /// JSON value or to avoid allocating a `String`. An experiment flag's
    /// exposure is logged whenever a value is served (the typed reads log
    /// it only when the value has the type asked for).
    ///
    /// ```
    /// # let client = switchyard_sdk::Client::offline(r#"{"flags": [{"key": "banner", "type": "string",
    /// #   "variations": [{"key": "a", "value": "Hello"}], "enabled": true, "off_variation": "a",
    /// #   "fallthrough": {"variation": "a"}}]}"#)?;
    /// # let ctx = switchyard_sdk::Context::with_key("u1");
    /// let len = client.with_value("banner", &ctx, |v| v.and_then(|v| v.as_str()).map_or(0, str::len));
    /// assert_eq!(len, 5);
    /// # Ok::<(), switchyard_sdk::Error>(())
    /// ```
    #[inline]
    pub fn with_value<R>(
        &self,
        key: &str,
        ctx: &Context,
        read: impl FnOnce(Option<&Value>) -> R,
    ) -> R {
        let guard = self.shared().config.load();
        match guard.as_deref() {
            Some(evaluator) => {
                let e = evaluator.evaluate(key, ctx);
                self.expose(evaluator, &e, ctx);
                read(e.value)
            }
            None => read(None),
        }
    }

    #[inline]
    fn value<T>(
        &self,
        key: &str,
        ctx: &Context,
        default: T,
        read: impl FnOnce(&Value) -> Option<T>,
    ) -> T {
        let guard = self.shared().config.load();
        let Some(evaluator) = guard.as_deref() else {
            return default;
        };
        let e = evaluator.evaluate(key, ctx);
        match e.value.and_then(read) {
            Some(value) => {
                self.expose(evaluator, &e, ctx);
                value
            }
            // The caller gets its default: the unit saw no variation.
            None => default,
        }
    }

    fn details<T>(
        &self,
        key: &str,
        ctx: &Context,
        default: T,
        read: impl FnOnce(&Value) -> Option<T>,
    ) -> EvaluationDetails<T> {
        let guard = self.shared().config.load();
        let Some(evaluator) = guard.as_deref() else {
            return EvaluationDetails::error(default, ErrorCode::ProviderNotReady, 0);
        };
        let e = evaluator.evaluate(key, ctx);
        let details = details_of(&e, evaluator.revision(), default, read);
        if details.is_ok() {
            self.expose(evaluator, &e, ctx);
        }
        details
    }

    /// Logs the exposure of an experiment flag (deduplicated, queued).
    #[inline]
    fn expose(&self, evaluator: &Evaluator, e: &Evaluation<'_>, ctx: &Context) {
        if let (Some(exposure), Some(events)) = (&e.exposure, &self.shared().events) {
            events.exposure(evaluator.environment(), e.key, ctx, exposure);
        }
    }

    /// Every flag of the environment for `ctx`, in the configuration's
    /// order. Like a bulk OFREP evaluation this is a pre-fetch, not a
    /// read: it logs no exposures (read an experiment flag with a typed
    /// method when the application uses it).
    pub fn all_flags(&self, ctx: &Context) -> Vec<FlagDetails> {
        let guard = self.shared().config.load();
        let Some(evaluator) = guard.as_deref() else {
            return Vec::new();
        };
        evaluator
            .evaluate_all(ctx)
            .iter()
            .map(|e| FlagDetails {
                key: e.key.to_string(),
                details: details_of(e, evaluator.revision(), Value::Null, |v| Some(v.clone())),
            })
            .collect()
    }

    /// Records that `unit` did `event` (a purchase, a sign-up), with an
    /// optional numeric `value` and attributes: what experiment metrics
    /// are computed from. Queued and sent in the background; never blocks.
    ///
    /// ```
    /// # let client = switchyard_sdk::Client::offline(r#"{"flags": []}"#)?;
    /// let mut attributes = serde_json::Map::new();
    /// attributes.insert("plan".into(), "pro".into());
    /// client.track("user-42", "purchase", Some(12.5), Some(attributes));
    /// # Ok::<(), switchyard_sdk::Error>(())
    /// ```
    pub fn track(
        &self,
        unit: &str,
        event: &str,
        value: Option<f64>,
        attributes: Option<Map<String, Value>>,
    ) {
        if let Some(events) = &self.shared().events {
            events.track(unit, event, value, attributes.as_ref());
        }
    }

    /// Where the client stands now.
    ///
    /// ```no_run
    /// # async fn run(client: switchyard_sdk::Client) {
    /// use switchyard_sdk::Status;
    ///
    /// // Log every change of status or configuration revision.
    /// let mut changes = client.subscribe();
    /// while changes.changed().await.is_ok() {
    ///     let report = changes.borrow_and_update().clone();
    ///     if report.status == Status::Stale {
    ///         eprintln!("serving revision {} while the server is away: {:?}", report.revision, report.error);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn status(&self) -> StatusReport {
        self.shared().status.borrow().clone()
    }

    /// A receiver that wakes on every change of status or configuration
    /// revision.
    pub fn subscribe(&self) -> watch::Receiver<StatusReport> {
        self.shared().status.subscribe()
    }

    /// Waits until the client has synced with the server, at most
    /// `timeout`. Returns at once with [`Error::Unauthorized`] if the
    /// server refused the key. Evaluation does not need this: before it,
    /// the client serves its bootstrap or cached copy, or the defaults.
    /// Needs a Tokio runtime.
    pub async fn wait_until_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.subscribe();
        let _ = tokio::time::timeout(timeout, async {
            // The borrow the wait returns is dropped at once.
            rx.wait_for(|s| matches!(s.status, Status::Ready | Status::Failed))
                .await
                .map(|_| ())
        })
        .await;
        let report = self.status();
        match report.status {
            Status::Ready => Ok(()),
            Status::Failed => Err(Error::Unauthorized(report.error.unwrap_or_default())),
            _ => Err(Error::NotReady {
                waited: timeout,
                status: match report.error {
                    Some(e) => format!("{:?}: {e}", report.status),
                    None => format!("{:?}", report.status),
                },
            }),
        }
    }

    /// What happened to events so far.
    pub fn event_stats(&self) -> EventStats {
        self.shared()
            .events
            .as_ref()
            .map(Events::stats)
            .unwrap_or_default()
    }

    /// Sends every event queued before this call, waiting at most
    /// `timeout`. Needs a Tokio runtime.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let Some(events) = &self.shared().events else {
            return Ok(());
        };
        if *self.inner.stop.borrow() {
            return Err(Error::Closed);
        }
        let target = events.newest();
        match tokio::time::timeout(timeout, events.wait_resolved(target)).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::FlushTimeout {
                pending: events.stats().pending as usize,
                waited: timeout,
            }),
        }
    }

    /// Stops syncing and sends the events still queued (for at most the
    /// builder's `close_timeout`), then stops the SDK's thread. Evaluation
    /// keeps working on every handle, from the last configuration;
    /// `track` then drops events. Call it on shutdown, or queued events
    /// are lost with the process.
    pub async fn close(&self) {
        self.inner.stop.send_replace(true);
        if let Some(events) = &self.shared().events {
            events.close();
        }
        // Every caller waits for the end, not only the first.
        let mut stopped = self.inner.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// Turns an evaluation into typed details; `default` on any error.
fn details_of<T>(
    e: &Evaluation<'_>,
    revision: u64,
    default: T,
    read: impl FnOnce(&Value) -> Option<T>,
) -> EvaluationDetails<T> {
    let Some(value) = e.value else {
        let code = match e.error_code {
            Some(switchyard_core::ErrorCode::TargetingKeyMissing) => ErrorCode::TargetingKeyMissing,
            _ => ErrorCode::FlagNotFound,
        };
        return EvaluationDetails::error(default, code, revision);
    };
    match read(value) {
        Some(value) => EvaluationDetails {
            value,
            variant: e.variant.map(str::to_string),
            reason: e.reason,
            error: None,
            rule: e.rule,
            revision,
        },
        None => EvaluationDetails::error(default, ErrorCode::TypeMismatch, revision),
    }
}

impl ClientBuilder {
    /// Evaluate from `bootstrap_*` only; never contact the server, send no
    /// events (for tests and tools).
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Start from the configuration document in this file (as written by
    /// `curl -H 'Authorization: Bearer KEY' .../sdk/v1/config`), until
    /// the server is reached. A missing or broken file fails `build`.
    pub fn bootstrap_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.bootstrap = Some(Bootstrap::File(path.into()));
        self
    }

    /// Start from this configuration document, until the server is reached.
    pub fn bootstrap_json(mut self, document: impl Into<String>) -> Self {
        self.bootstrap = Some(Bootstrap::Json(document.into()));
        self
    }

    /// Keep a copy of the configuration in this file, written at every
    /// change (atomically), and start from it when it exists: a service
    /// that restarts while the server is unreachable serves its last
    /// configuration instead of defaults. A bootstrap document, if given,
    /// wins over the cache. Use one file per environment.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// Receive changes by server-sent events (the default: a change
    /// arrives in milliseconds), or only by polling every `poll_interval`.
    pub fn streaming(mut self, streaming: bool) -> Self {
        self.sync.streaming = streaming;
        self
    }

    /// How often to poll when not streaming (default 30 s, at least 50 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.sync.poll_interval = interval.max(Duration::from_millis(50));
        self
    }

    /// The wait before reconnecting a broken stream grows from `min` to
    /// `max`, with jitter (defaults 1 s and 30 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.sync.backoff_min = min;
        self.sync.backoff_max = max;
        self
    }

    /// A stream silent this long is taken for dead and reopened (default
    /// 45 s, three of the server's keep-alives).
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.sync.stream_idle_timeout = timeout;
        self
    }

    /// The timeout of each request other than the stream (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self.sync.request_timeout = timeout;
        self
    }

    /// Send exposures and tracked events (default `true`).
    pub fn events(mut self, enabled: bool) -> Self {
        self.events_enabled = enabled;
        self
    }

    /// The most events kept waiting to be sent (default 10 000, at most
    /// 32 KiB each); beyond it the oldest are dropped and counted.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.events.capacity = capacity.max(1);
        self
    }

    /// Events per request (default 500) and the longest an event waits
    /// before it is sent (default 1 s, at least 10 ms).
    pub fn event_batching(mut self, batch: usize, flush_interval: Duration) -> Self {
        self.events.batch = batch.clamp(1, 10_000);
        self.events.flush_interval = flush_interval.max(Duration::from_millis(10));
        self
    }

    /// The wait before resending a batch the server could not take grows
    /// from `min` to `max`, with jitter (defaults 0.5 s and 30 s); a
    /// `Retry-After` from the server wins.
    pub fn event_retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.events.retry_min = min;
        self.events.retry_max = max;
        self
    }

    /// How long `close` keeps trying to send queued events (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Calls `listener` with the configuration document (the JSON of
    /// `GET /sdk/v1/config`) each time the client installs a new one: the
    /// bootstrap or cached copy during [`ClientBuilder::build`], then every
    /// newer one from the server. It runs on the SDK's thread, so keep it
    /// short; `switchyard relay` uses it to serve what it syncs.
    pub fn on_configuration(mut self, listener: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.listener = Some(Listener(Arc::new(listener)));
        self
    }

    /// Starts the client: loads the bootstrap or cached document, then
    /// starts the SDK's thread, which syncs and sends events. Returns at
    /// once, without waiting for the server. Needs no runtime of the
    /// caller's.
    pub fn build(self) -> Result<Client, Error> {
        let initial = self.initial_document()?;
        let base = if self.offline {
            None
        } else {
            let base = reqwest::Url::parse(&self.base_url)
                .map_err(|e| Error::Config(format!("base URL {:?}: {e}", self.base_url)))?;
            if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
                return Err(Error::Config(format!(
                    "base URL {:?} is not an http(s) URL",
                    self.base_url
                )));
            }
            if self.key.trim().is_empty() {
                return Err(Error::Config("the SDK key is empty".into()));
            }
            Some(base)
        };
        let offline = base.is_none();
        let status = StatusReport {
            status: if offline {
                Status::Ready
            } else {
                Status::Initializing
            },
            revision: 0,
            environment: String::new(),
            streaming: false,
            last_sync: None,
            error: None,
        };
        let shared = Arc::new(Shared {
            config: ArcSwapOption::empty(),
            status: watch::Sender::new(status),
            events: (!offline && self.events_enabled).then(|| Events::new(self.events.clone())),
            listener: self.listener.clone(),
        });
        if let Some((evaluator, text)) = initial {
            if shared.install(evaluator, false) {
                shared.installed(&text);
            }
        } else if offline {
            return Err(Error::Config(
                "an offline client needs a bootstrap document".into(),
            ));
        }
        let (stop, stop_rx) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(false);
        if let Some(base) = base {
            let http = Http::new(
                base,
                &self.key,
                self.connect_timeout,
                self.request_timeout,
                self.sync.document_limit,
            )
            .map_err(Error::Config)?;
            let mut sync = self.sync.clone();
            sync.cache_file = self.cache_file.clone();
            let worker = shared.clone();
            let close_timeout = self.close_timeout;
            std::thread::Builder::new()
                .name("switchyard-sdk".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "switchyard: cannot start the SDK's runtime");
                            // Dropping `stopped_tx` ends every `close`.
                            return;
                        }
                    };
                    runtime.block_on(async {
                        let sync = crate::sync::run(worker.clone(), http.clone(), sync, stop_rx.clone());
                        let events = async {
                            if let Some(events) = &worker.events {
                                events.run(http.clone(), stop_rx.clone(), close_timeout).await;
                            }
                        };
                        tokio::join!(sync, events);
                    });
                    stopped_tx.send_replace(true);
                })
                .map_err(Error::Thread)?;
        } else {
            stopped_tx.send_replace(true);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                stop,
                stopped,
            }),
        })
    }

    /// The bootstrap document, else the cache file's, compiled, with its text.
    fn initial_document(&self) -> Result<Option<(Evaluator, String)>, Error> {
        let document = |source: &str, text: &str| {
            Evaluator::from_json(text)
                .map(|e| (e, text.to_string()))
                .map_err(|e| Error::Document {
                    source_name: source.to_string(),
                    message: e.to_string(),
                })
        };
        match &self.bootstrap {
            Some(Bootstrap::Json(text)) => return document("the bootstrap JSON", text).map(Some),
            Some(Bootstrap::File(path)) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| Error::Document {
                    source_name: name.clone(),
                    message: e.to_string(),
                })?;
                return document(&name, &text).map(Some);
            }
            None => {}
        }
        let Some(path) = &self.cache_file else {
            return Ok(None);
        };
        match std::fs::read_to_string(path) {
            Ok(text) => match document(&path.display().to_string(), &text) {
                Ok(e) => Ok(Some(e)),
                // A broken cache is not fatal: the server will send a
                // fresh copy.
                Err(e) => {
                    tracing::warn!(error = %e, "switchyard: ignoring the configuration cache");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "switchyard: cannot read the configuration cache");
                Ok(None)
            }
        }
    }
}
