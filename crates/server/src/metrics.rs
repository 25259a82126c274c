//! Prometheus metrics (`prometheus-client`), exposed at `/metrics`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Instant;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a request. Every value comes from a closed set, never from
/// the request as sent: `method` is a standard method's name or `other`
/// ([`method_label`]), `route` the matched route's template or
/// `unmatched`, `status` a status this server answers with. A client
/// inventing methods or paths therefore adds no series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// The `method` label of a request: the standard methods by name, any
/// other (extension) method as `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Why the server closed a connection or failed a body on its own.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum TimeoutKind {
    /// A request head was not complete in time.
    Header,
    /// A kept-alive connection waited too long for its next request.
    Idle,
    /// A request body did not arrive in time.
    Body,
}

impl TimeoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Header => "header",
            TimeoutKind::Idle => "idle",
            TimeoutKind::Body => "body",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlagLabels {
    pub project: String,
    pub environment: String,
    pub flag: String,
}

/// Latency histogram and request counters (by method, status) per route.
type RequestCache = HashMap<String, (Histogram, HashMap<String, HashMap<u16, Counter>>)>;

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub evaluations: Family<FlagLabels, Counter>,
    request_handles: RwLock<RequestCache>,
    pub store_errors: Counter,
    pub stream_clients: Gauge,
    /// Open HTTP connections (of every listener).
    pub connections_open: Gauge,
    /// Connections refused at the connection cap.
    pub connections_refused: Counter,
    /// Header, idle and body timeouts, in [`TimeoutKind`]'s order.
    timeouts: [Counter; 3],
    /// Event ingestion's own registry, appended by [`Metrics::encode`]
    /// (set by [`AppState::with_events`]).
    pub events: std::sync::OnceLock<std::sync::Arc<switchyard_events::Events>>,
    /// The aggregator, reported by [`Metrics::encode`] (set by
    /// [`crate::AppState::with_aggregation`]).
    pub aggregation: std::sync::OnceLock<std::sync::Arc<crate::aggregation::Aggregation>>,
    /// A relay's upstream, reported by [`Metrics::encode`] (set by
    /// [`crate::AppState::with_upstream`]).
    pub upstream: std::sync::OnceLock<std::sync::Arc<dyn crate::state::UpstreamHealth>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ])
        });
        let evaluations = Family::<FlagLabels, Counter>::default();
        let store_errors = Counter::default();
        let stream_clients = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "flag_evaluations",
            "Flag evaluations served",
            evaluations.clone(),
        );
        registry.register(
            "store_errors",
            "Config store failures",
            store_errors.clone(),
        );
        registry.register(
            "stream_clients",
            "Connected streaming (SSE) clients",
            stream_clients.clone(),
        );
        let connections_open = Gauge::default();
        let connections_refused = Counter::default();
        registry.register(
            "connections_open",
            "Open HTTP connections",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "HTTP connections refused because the connection limit was reached",
            connections_refused.clone(),
        );
        let timeout_family = Family::<TimeoutLabels, Counter>::default();
        let timeouts = [TimeoutKind::Header, TimeoutKind::Idle, TimeoutKind::Body].map(|kind| {
            timeout_family
                .get_or_create(&TimeoutLabels {
                    kind: kind.as_str(),
                })
                .clone()
        });
        registry.register(
            "http_timeouts",
            "Connections closed (header, idle) or bodies failed (body) by a timeout",
            timeout_family,
        );
        Metrics {
            registry,
            requests,
            latency,
            evaluations,
            request_handles: RwLock::new(HashMap::new()),
            store_errors,
            stream_clients,
            connections_open,
            connections_refused,
            timeouts,
            events: std::sync::OnceLock::new(),
            aggregation: std::sync::OnceLock::new(),
            upstream: std::sync::OnceLock::new(),
        }
    }

    /// The evaluation counters of an environment's flags, in the order of
    /// `flags`. A snapshot asks once and keeps them, so counting an
    /// evaluation is one atomic add (no label lookup per request). Every
    /// flag of the environment thus gets a series, at 0 until evaluated.
    pub fn evaluation_counters<'a>(
        &self,
        project: &str,
        environment: &str,
        flags: impl Iterator<Item = &'a str>,
    ) -> Vec<Counter> {
        flags
            .map(|flag| {
                self.evaluations
                    .get_or_create(&FlagLabels {
                        project: project.to_string(),
                        environment: environment.to_string(),
                        flag: flag.to_string(),
                    })
                    .clone()
            })
            .collect()
    }

    /// The counter of one kind of timeout.
    pub fn timeouts(&self, kind: TimeoutKind) -> &Counter {
        &self.timeouts[kind as usize]
    }

    /// The body-timeout counter, for a request's body to keep.
    pub(crate) fn body_timeouts(&self) -> Counter {
        self.timeouts[TimeoutKind::Body as usize].clone()
    }

    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        if encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if let Some(events) = self.events.get() {
            events.metrics().encode(&mut out);
            events.stream().encode_metrics(&mut out);
        }
        if let Some(a) = self.aggregation.get() {
            a.encode_metrics(&mut out);
        }
        if let Some(u) = self.upstream.get() {
            u.encode_metrics(&mut out);
        }
        let _ = encode_eof(&mut out);
        out
    }
}

/// Records request count and latency per matched route: a tower layer
/// around every route. Unlike `axum::middleware::from_fn`, it adds no
/// service clone and no boxed future of its own per request. It wraps the
/// catch-panic layer, so a request whose handler panicked is counted (500).
#[derive(Debug, Clone)]
pub struct TrackLayer {
    metrics: Arc<Metrics>,
}

impl TrackLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        TrackLayer { metrics }
    }
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        TrackFuture {
            inner: self.inner.call(req),
            start,
            route,
            method,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The route's future, timed.
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        route: Option<MatchedPath>,
        method: &'static str,
        metrics: Arc<Metrics>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &result {
            let status = resp.status().as_u16();
            let route = this.route.as_ref().map_or("unmatched", |m| m.as_str());
            if status >= 500 {
                tracing::warn!(%route, status, "request failed");
            }
            this.metrics.observe_request(
                this.method,
                route,
                status,
                this.start.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(result)
    }
}

impl Metrics {
    /// Counts a request and records its latency; handles are cached by
    /// borrowed keys so a request allocates nothing after a route's first use.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(cache) = self.request_handles.read()
            && let Some((hist, by_method)) = cache.get(route)
            && let Some(counter) = by_method.get(method).and_then(|m| m.get(&status))
        {
            hist.observe(seconds);
            counter.inc();
            return;
        }
        let hist = self
            .latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .clone();
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .clone();
        hist.observe(seconds);
        counter.inc();
        if let Ok(mut cache) = self.request_handles.write() {
            let entry = cache
                .entry(route.to_string())
                .or_insert_with(|| (hist, HashMap::new()));
            entry
                .1
                .entry(method.to_string())
                .or_default()
                .insert(status, counter);
        }
    }
}
