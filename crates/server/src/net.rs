//! The serving loop: accepting TCP connections and serving HTTP/1.1 on
//! them with hyper, within limits a client cannot push past.
//!
//! Anyone who can open a socket controls how many connections they hold
//! and how slowly they send. Each of these has a bound ([`NetConfig`]):
//!
//! - **Connections** are capped by a semaphore. Past the cap a new
//!   connection gets a `503` with `Retry-After` written straight to the
//!   socket and is closed, and a warning is logged (at most once every
//!   [`REFUSAL_LOG_EVERY`], with the number refused meanwhile), so the
//!   server never runs out of file descriptors and its accept loop keeps
//!   working.
//! - **Request heads** must be complete within `header_read_timeout`,
//!   counted from the connection's start for its first request and from
//!   the first byte for later ones (hyper's header timer, through
//!   [`ConnTimer`]).
//! - **Idle kept-alive connections** are closed after `idle_timeout`
//!   without a byte of a new request. A streaming response (SSE) is not
//!   idle: hyper reads no new head while a response is being written, and
//!   streams send keep-alive comments anyway.
//! - **Request bodies** must arrive within `body_read_timeout` once the
//!   handler starts waiting for them ([`TimedBody`]); the handler then sees
//!   a body error and answers 4xx, and hyper closes the connection.
//! - **Shutdown** asks every connection to finish its request and close,
//!   then waits at most `shutdown_timeout` before dropping the stragglers.
//!
//! - **Streams** (`GET /sdk/v1/stream` as a connection's first request)
//!   are served by `net/sse.rs` rather than hyper, which keeps 16 KiB
//!   of buffers per connection; it peeks at the first bytes to decide.
//!
//! hyper rather than `axum::serve`: the latter offers none of these
//! settings. The per-request cost is one boxed timer (hyper's, only while
//! a head is awaited) and, for a body that does not come with its head,
//! one more.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::metrics::{Metrics, TimeoutKind};

mod sse;

/// How often, at most, the "connection limit reached" warning is logged.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Connection limits and timeouts of the serving loop.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Time allowed for a complete request head (request line and
    /// headers): from the connection's start for its first request, from
    /// the first byte for later ones.
    pub header_read_timeout: Duration,
    /// Time allowed for a request body, from when the handler first waits
    /// for it.
    pub body_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Open connections at most; new ones past it are refused with 503.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests before closing
    /// their connections.
    pub shutdown_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            // Longer than the 60 s idle timeout of common load balancers,
            // so that they, not we, close an idle pooled connection (a
            // backend that closes first races with their next request).
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// What the connections of a serving loop are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Running,
    /// Finish the request in flight, then close.
    Graceful,
    /// Close now.
    Force,
}

/// Serves `router` on `listener` until `stop` leaves [`Stop::Running`];
/// returns once every connection has closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    config: Arc<NetConfig>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<Stop>,
) {
    let max = config.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let mut refusals = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s != Stop::Running) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or memory, usually: retrying at
                // once would spin. Existing connections go on meanwhile.
                tracing::error!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            refusals.refused(max);
            refuse(stream);
            continue;
        };
        // Responses are written whole; waiting to coalesce them (Nagle)
        // only adds latency.
        let _ = stream.set_nodelay(true);
        let open = metrics.connections_open.clone();
        open.inc();
        let conn = serve_connection(
            stream,
            router.clone(),
            config.clone(),
            metrics.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            conn.await;
            open.dec();
            drop(slot);
        });
    }
    // Every slot back means every connection is closed.
    let _ = slots.acquire_many(max as u32).await;
}

/// Keeps the "limit reached" warning to one line per
/// [`REFUSAL_LOG_EVERY`], however many connections are refused.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn refused(&mut self, limit: usize) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            limit,
            refused = self.unlogged,
            "connection limit reached: refusing new connections with 503 \
             (raise --max-connections if clients are legitimate)"
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 110\r\n\
\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server is at its connection limit; retry later\"}}";

/// Answers a connection over the cap without reading from it: one
/// non-blocking write (a fresh socket's buffer takes it whole), then close.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(REFUSAL);
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    config: Arc<NetConfig>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<Stop>,
) {
    let peer = stream.peer_addr().ok();
    // The first request's head is due `header_read_timeout` after the
    // connection opened, whoever reads it.
    let head_deadline = tokio::time::Instant::now() + config.header_read_timeout;
    match sse::peek_first(&stream, head_deadline).await {
        sse::First::Stream { request, len } => {
            return sse::serve(stream, *request, len, router, peer, stop).await;
        }
        sse::First::Gone => return,
        sse::First::Other => {}
    }
    // Boxed: a task's memory is its largest state, and hyper's connection
    // is far larger than a stream's, which would otherwise pay for it.
    Box::pin(serve_http(
        stream,
        router,
        config,
        metrics,
        stop,
        peer,
        head_deadline,
    ))
    .await;
}

/// Serves the connection with hyper.
async fn serve_http(
    stream: TcpStream,
    router: Router,
    config: Arc<NetConfig>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<Stop>,
    peer: Option<std::net::SocketAddr>,
    head_deadline: tokio::time::Instant,
) {
    let activity = Arc::new(Activity {
        reads: AtomicU64::new(0),
        heads: AtomicU64::new(0),
        metrics: metrics.clone(),
    });
    let timer = ConnTimer {
        activity: activity.clone(),
        header: config.header_read_timeout,
        idle: config.idle_timeout,
    };
    let io = TokioIo::new(CountingIo {
        inner: stream,
        activity,
    });
    let service = ConnService {
        router,
        peer,
        body_timeout: config.body_read_timeout,
        metrics,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(timer).header_read_timeout(
        head_deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(1)),
    );
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut graceful = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Timeouts are counted where they fire; the rest are
                    // clients going away mid-request, or speaking garbage.
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed() => {
                let now = if changed.is_err() { Stop::Force } else { *stop.borrow_and_update() };
                match now {
                    Stop::Running => {}
                    Stop::Graceful if !graceful => {
                        graceful = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Stop::Graceful => {}
                    Stop::Force => return,
                }
            }
        }
    }
}

/// The hyper service of one connection: the router, with each request's
/// body under the body timeout.
#[derive(Debug, Clone)]
struct ConnService {
    router: Router,
    /// The client's address, for handlers (`ConnectInfo`).
    peer: Option<std::net::SocketAddr>,
    body_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        use tower::Service as _;
        let body_timeout = self.body_timeout;
        let metrics = &self.metrics;
        let mut req: Request<TimedBody> =
            req.map(|body| TimedBody::new(body, body_timeout, metrics.body_timeouts()));
        if let Some(peer) = self.peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        self.router.clone().call(req)
    }
}

/// Bytes read on a connection, shared by its IO (which counts) and its
/// header timer (which tells an idle connection from one sending a head).
#[derive(Debug)]
struct Activity {
    reads: AtomicU64,
    /// Head waits begun; the first is the connection's first request.
    heads: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Activity {
    /// One writer at a time (the connection's task): a plain store is
    /// enough, and cheaper than an atomic add.
    fn bump(counter: &AtomicU64) -> u64 {
        let n = counter.load(Ordering::Relaxed);
        counter.store(n + 1, Ordering::Relaxed);
        n
    }
}

pin_project_lite::pin_project! {
    /// The TCP stream, counting reads that brought bytes.
    struct CountingIo {
        #[pin]
        inner: TcpStream,
        activity: Arc<Activity>,
    }
}

impl AsyncRead for CountingIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            Activity::bump(&this.activity.reads);
        }
        result
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// hyper's timer for one connection. hyper (1.x) uses a server
/// connection's timer only for its header-read timeout, which it arms as
/// soon as it starts waiting for a head: on a kept-alive connection, right
/// after the previous response. So every head wait but the first starts
/// in an idle phase with `idle` to run, and switches to `header` when the
/// first byte arrives.
#[derive(Debug, Clone)]
struct ConnTimer {
    activity: Arc<Activity>,
    header: Duration,
    idle: Duration,
}

impl ConnTimer {
    fn head_sleep(&self, first: bool, deadline: tokio::time::Instant) -> HeadSleep {
        let (phase, until) = if first {
            (TimeoutKind::Header, deadline)
        } else {
            (TimeoutKind::Idle, tokio::time::Instant::now() + self.idle)
        };
        HeadSleep {
            sleep: tokio::time::sleep_until(until),
            phase,
            reads_at_start: self.activity.reads.load(Ordering::Relaxed),
            activity: self.activity.clone(),
            header: self.header,
        }
    }
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(PlainSleep {
            inner: tokio::time::sleep(duration),
        })
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let first = Activity::bump(&self.activity.heads) == 0;
        Box::pin(self.head_sleep(first, deadline.into()))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        Activity::bump(&self.activity.heads);
        if let Some(mut s) = sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            let fresh = self.head_sleep(false, new_deadline.into());
            let this = s.as_mut().project();
            *this.phase = fresh.phase;
            *this.reads_at_start = fresh.reads_at_start;
            this.sleep.reset(fresh.sleep.deadline());
        } else if let Some(s) = sleep.as_mut().downcast_mut_pin::<PlainSleep>() {
            s.project().inner.reset(new_deadline.into());
        }
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

pin_project_lite::pin_project! {
    /// A wait for a request head: idle until a byte arrives (except for a
    /// connection's first request), then the header timeout.
    struct HeadSleep {
        #[pin]
        sleep: tokio::time::Sleep,
        phase: TimeoutKind,
        reads_at_start: u64,
        activity: Arc<Activity>,
        header: Duration,
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        // hyper polls this after every read that left the head incomplete,
        // so the switch happens when the first byte comes in.
        if *this.phase == TimeoutKind::Idle
            && this.activity.reads.load(Ordering::Relaxed) != *this.reads_at_start
        {
            *this.phase = TimeoutKind::Header;
            this.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + *this.header);
        }
        std::task::ready!(this.sleep.poll(cx));
        this.activity.metrics.timeouts(*this.phase).inc();
        tracing::debug!(kind = this.phase.as_str(), "closing a connection: timeout");
        Poll::Ready(())
    }
}

impl hyper::rt::Sleep for HeadSleep {}

pin_project_lite::pin_project! {
    struct PlainSleep {
        #[pin]
        inner: tokio::time::Sleep,
    }
}

impl Future for PlainSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().inner.poll(cx)
    }
}

impl hyper::rt::Sleep for PlainSleep {}

/// A request body that fails once it has kept the handler waiting
/// `timeout`. The timer starts only when a read finds nothing to take, so
/// a body that came with its head costs nothing.
#[derive(Debug)]
pub struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: bool,
    counter: Counter,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration, counter: Counter) -> Self {
        TimedBody {
            inner,
            timeout,
            deadline: None,
            timed_out: false,
            counter,
        }
    }
}

/// A request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimeout(Duration);

/// What reading a [`TimedBody`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Timeout(#[from] BodyTimeout),
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.timed_out {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Hyper)));
        }
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        std::task::ready!(deadline.as_mut().poll(cx));
        self.timed_out = true;
        self.counter.inc();
        tracing::debug!("request body timed out");
        Poll::Ready(Some(Err(BodyTimeout(timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
