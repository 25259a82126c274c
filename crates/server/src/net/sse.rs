//! A lean path for server-sent-event streams: a connection whose first
//! request is `GET /sdk/v1/stream` is served here instead of by hyper.
//!
//! Why: an SDK stream holds its connection for hours and sends a few bytes
//! a minute, so what it costs is what it keeps. A hyper HTTP/1 connection
//! keeps an 8 KiB read buffer and an 8 KiB write buffer for its whole life
//! (their sizes cannot be set below that), plus the dispatcher and its
//! boxed service future: about 21 KiB of resident memory per idle stream
//! measured. Here the connection keeps its socket, the response body (the
//! stream's state) and this task, and writes each event straight from the
//! shared, once-rendered frame (`writev` of the chunk-size line, the frame
//! and `\r\n`): no buffer of its own.
//!
//! How, without parsing requests twice: the first bytes of every new
//! connection are *peeked* (`MSG_PEEK`, nothing consumed). Unless they are
//! a complete, body-less `GET /sdk/v1/stream` head of at most
//! [`PEEK_LIMIT`] bytes, the untouched socket goes to hyper as before, so
//! every other request, a stream asked on a kept-alive connection after
//! other requests, and anything unusual (a body, an unparsable head) are
//! served exactly as they were. The request itself still goes through the
//! whole router (CORS, metrics, authentication, the handler), so the two
//! paths answer the same; only the bytes on the wire are written here.
//! After a stream the connection closes (a stream ends only when the
//! server stops, the key is revoked or the environment deleted).
//!
//! Limits hold as on hyper's path: the head must be complete within the
//! header timeout (counted from the connection's start, as hyper counts
//! it), a client that sends more bytes than a head while streaming has
//! them discarded, a closed socket ends the stream at once, and a forced
//! shutdown drops the connection even in the middle of a write to a client
//! that does not read.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Version, header};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Stop;

/// The request-target that takes this path (with or without a query).
const STREAM_PATH: &str = "/sdk/v1/stream";
/// The first bytes such a request starts with.
const PREFIX: &[u8] = b"GET /sdk/v1/stream";
/// Largest head served here; a longer one goes to hyper.
pub(super) const PEEK_LIMIT: usize = 8 * 1024;
/// Headers read at most; more go to hyper.
const MAX_HEADERS: usize = 64;
/// How long to wait before peeking at an incomplete stream head again:
/// doubling from the first to the last, so a client that sends its head a
/// byte at a time (on purpose or not) costs a few dozen peeks over the
/// header timeout, not thousands.
const REPEEK: Duration = Duration::from_millis(5);
const REPEEK_MAX: Duration = Duration::from_millis(200);
/// Largest body of an answer that is not a stream (an error), written
/// whole; larger ones are cut (it is our own JSON error, far smaller).
const MAX_PLAIN_BODY: usize = 64 * 1024;

/// What the first bytes of a connection are.
pub(super) enum First {
    /// A complete stream request, its head `len` bytes long, still unread.
    Stream { request: Box<Request>, len: usize },
    /// Anything else: hyper serves the connection, which is untouched.
    Other,
    /// The client closed, or no complete head came before `deadline`.
    Gone,
}

/// Waits for the first bytes and decides who serves the connection,
/// consuming nothing. Returns [`First::Other`] as soon as the bytes cannot
/// be a stream request, so other connections wait for nothing extra.
pub(super) async fn peek_first(stream: &TcpStream, deadline: tokio::time::Instant) -> First {
    // A few bytes first, on the stack: most connections are decided here.
    let mut start = [0u8; PREFIX.len()];
    let mut wait = REPEEK;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut start)).await {
            Err(_) => return First::Other, // hyper times the head out and counts it
            Ok(Ok(0)) | Ok(Err(_)) => return First::Gone,
            Ok(Ok(n)) => n,
        };
        if start[..n] != PREFIX[..n] {
            return First::Other;
        }
        if n == PREFIX.len() {
            break;
        }
        // A prefix of the stream request line: wait for more.
        if tokio::time::Instant::now() + wait >= deadline {
            return First::Other;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(REPEEK_MAX);
    }
    // Then the whole head, on the heap only for as long as it is parsed.
    let mut buf = vec![0u8; PEEK_LIMIT];
    let mut parsed = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return First::Other,
            Ok(Ok(0)) | Ok(Err(_)) => return First::Gone,
            Ok(Ok(n)) => n,
        };
        // Parse only when more arrived since the last look.
        if n > parsed {
            parsed = n;
            match parse(&buf[..n]) {
                Parsed::Stream(request, len) => return First::Stream { request, len },
                Parsed::Other => return First::Other,
                Parsed::Partial if n < PEEK_LIMIT => {}
                Parsed::Partial => return First::Other,
            }
        }
        if tokio::time::Instant::now() + wait >= deadline {
            return First::Other;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(REPEEK_MAX);
    }
}

enum Parsed {
    Stream(Box<Request>, usize),
    Other,
    Partial,
}

/// Reads a request head; only a body-less `GET` of the stream path over
/// HTTP/1.0 or 1.1, with headers `http` accepts, is a [`Parsed::Stream`].
fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some("GET"), Some(path)) = (req.method, req.path) else {
        return Parsed::Other;
    };
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    if bare != STREAM_PATH {
        return Parsed::Other;
    }
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Parsed::Other,
    };
    let mut builder = axum::http::Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(version);
    for h in req.headers.iter() {
        let name = match HeaderName::from_bytes(h.name.as_bytes()) {
            Ok(n) => n,
            Err(_) => return Parsed::Other,
        };
        // A body (or a protocol switch) is not for this path.
        if (name == header::CONTENT_LENGTH && h.value != b"0")
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
        {
            return Parsed::Other;
        }
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return Parsed::Other;
        };
        builder = builder.header(name, value);
    }
    match builder.body(Body::empty()) {
        Ok(request) => Parsed::Stream(Box::new(request), len),
        Err(_) => Parsed::Other,
    }
}

/// Serves a stream request found by [`peek_first`]: consumes its head,
/// runs it through the router, writes the answer and, for a stream, its
/// events until the stream or the connection ends.
pub(super) async fn serve(
    stream: TcpStream,
    mut request: Request,
    head_len: usize,
    router: Router,
    peer: Option<SocketAddr>,
    mut stop: watch::Receiver<Stop>,
) {
    if discard(&stream, head_len).await.is_err() {
        return;
    }
    let http10 = request.version() == Version::HTTP_10;
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
    }
    let response = {
        use tower::ServiceExt as _;
        match router.oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    let (parts, mut body) = response.into_parts();
    let is_stream = parts.status == StatusCode::OK
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        // An error (a bad key, say): answered whole, then closed, since
        // the connection's bytes after the head were never hyper's.
        let limited = http_body_util::Limited::new(body, MAX_PLAIN_BODY);
        let bytes = limited
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let head = head(parts.status, &parts.headers, Framing::Length(bytes.len()));
        let _ = write_all(&stream, &[&head[..], &bytes[..]], &mut stop).await;
        return;
    }
    let framing = if http10 {
        Framing::Close
    } else {
        Framing::Chunked
    };
    if write_all(
        &stream,
        &[&head(parts.status, &parts.headers, framing)[..]],
        &mut stop,
    )
    .await
    .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow_and_update() == Stop::Force {
                    return;
                }
                // Graceful: the stream ends by itself on shutdown.
            }
            gone = client_gone(&stream) => {
                if gone {
                    return;
                }
            }
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    let written = if framing == Framing::Chunked {
                        let size = ChunkSize::new(data.len());
                        write_all(&stream, &[size.as_bytes(), &data[..], &b"\r\n"[..]], &mut stop).await
                    } else {
                        write_all(&stream, &[&data[..]], &mut stop).await
                    };
                    if written.is_err() {
                        return;
                    }
                }
                Some(Err(_)) => return,
                None => {
                    if framing == Framing::Chunked {
                        let _ = write_all(&stream, &[&b"0\r\n\r\n"[..]], &mut stop).await;
                    }
                    return;
                }
            },
        }
    }
}

/// Reads and drops `len` bytes: the head already parsed from a peek.
async fn discard(stream: &TcpStream, mut len: usize) -> std::io::Result<()> {
    while len > 0 {
        stream.readable().await?;
        let mut sink = [0u8; 1024];
        let want = len.min(sink.len());
        match stream.try_read(&mut sink[..want]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => len -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Resolves when the client sent something: `true` if it closed the
/// connection (or it failed), `false` if it sent bytes, which a stream
/// client has no reason to and which are discarded.
async fn client_gone(stream: &TcpStream) -> bool {
    loop {
        if stream.readable().await.is_err() {
            return true;
        }
        let mut sink = [0u8; 256];
        match stream.try_read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return true,
        }
    }
}

/// Writes every byte of `parts` (at most three) in order, vectored, or
/// fails when the connection does, or when the server is forced to stop
/// meanwhile (a client that does not read cannot hold shutdown up).
async fn write_all(
    stream: &TcpStream,
    parts: &[&[u8]],
    stop: &mut watch::Receiver<Stop>,
) -> std::io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow_and_update() == Stop::Force {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
            }
            ready = stream.writable() => {
                ready?;
                let mut slices = [IoSlice::new(&[]); 3];
                let mut count = 0;
                for part in remaining(parts, done).take(slices.len()) {
                    slices[count] = IoSlice::new(part);
                    count += 1;
                }
                match stream.try_write_vectored(&slices[..count]) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// The parts of `parts` after the first `skip` bytes.
fn remaining<'a>(parts: &'a [&'a [u8]], mut skip: usize) -> impl Iterator<Item = &'a [u8]> {
    parts.iter().filter_map(move |p| {
        if skip >= p.len() {
            skip -= p.len();
            return None;
        }
        let rest = &p[skip..];
        skip = 0;
        Some(rest)
    })
}

/// How the body of the answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    /// HTTP/1.0: the body runs until the connection closes.
    Close,
    Length(usize),
}

/// The status line and headers of an answer. The connection closes after
/// it, which is said for HTTP/1.1 clients only when the body has a length
/// (a stream's end is its own signal).
fn head(status: StatusCode, headers: &axum::http::HeaderMap, framing: Framing) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Close => out.extend_from_slice(b"connection: close\r\n"),
        Framing::Length(n) => {
            out.extend_from_slice(b"connection: close\r\ncontent-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The size line of a chunk, `{len:x}\r\n`, without allocating.
struct ChunkSize {
    bytes: [u8; 18],
    start: usize,
}

impl ChunkSize {
    fn new(len: usize) -> Self {
        let mut bytes = [0u8; 18];
        bytes[16] = b'\r';
        bytes[17] = b'\n';
        let mut pos = 16;
        let mut n = len;
        loop {
            pos -= 1;
            bytes[pos] = b"0123456789abcdef"[n & 0xf];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        ChunkSize { bytes, start: pos }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_lowercase_hex_lines() {
        assert_eq!(ChunkSize::new(0).as_bytes(), b"0\r\n");
        assert_eq!(ChunkSize::new(15).as_bytes(), b"f\r\n");
        assert_eq!(ChunkSize::new(0x1a2b).as_bytes(), b"1a2b\r\n");
        assert_eq!(
            ChunkSize::new(usize::MAX).as_bytes(),
            b"ffffffffffffffff\r\n"
        );
    }

    #[test]
    fn only_a_complete_bodyless_stream_get_takes_the_lean_path() {
        let ok = b"GET /sdk/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n";
        match parse(ok) {
            Parsed::Stream(req, len) => {
                assert_eq!(len, ok.len());
                assert_eq!(req.uri().path(), "/sdk/v1/stream");
                assert_eq!(req.headers()["authorization"], "Bearer k");
            }
            _ => panic!("not taken"),
        }
        assert!(matches!(
            parse(b"GET /sdk/v1/stream?x=1 HTTP/1.0\r\n\r\n"),
            Parsed::Stream(..)
        ));
        assert!(matches!(
            parse(b"GET /sdk/v1/stream HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        for other in [
            &b"GET /sdk/v1/streams HTTP/1.1\r\n\r\n"[..],
            b"GET /sdk/v1/config HTTP/1.1\r\n\r\n",
            b"POST /sdk/v1/stream HTTP/1.1\r\n\r\n",
            b"GET /sdk/v1/stream HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc",
            b"GET /sdk/v1/stream HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET /sdk/v1/stream HTTP/1.1\r\nupgrade: websocket\r\n\r\n",
            b"GET /sdk/v1/stream HTTP/1.1\r\nbad header\r\n\r\n",
        ] {
            assert!(
                matches!(parse(other), Parsed::Other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        // Too many headers: hyper's.
        let mut many = b"GET /sdk/v1/stream HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&many), Parsed::Other));
    }

    #[test]
    fn writes_resume_where_a_partial_write_stopped() {
        let parts: [&[u8]; 3] = [b"ab", b"cde", b"f"];
        let rest = |skip| remaining(&parts, skip).collect::<Vec<_>>();
        assert_eq!(rest(0), vec![&b"ab"[..], b"cde", b"f"]);
        assert_eq!(rest(3), vec![&b"de"[..], b"f"]);
        assert_eq!(rest(5), vec![&b"f"[..]]);
        assert!(rest(6).is_empty());
    }

    #[test]
    fn heads_frame_the_body_and_close() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        let h = String::from_utf8(head(StatusCode::OK, &headers, Framing::Chunked)).unwrap();
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(h.contains("content-type: text/event-stream\r\n"), "{h}");
        assert!(h.contains("transfer-encoding: chunked\r\n"), "{h}");
        assert!(!h.contains("content-length"), "{h}");
        assert!(h.ends_with("\r\n\r\n"));
        let h = String::from_utf8(head(StatusCode::UNAUTHORIZED, &headers, Framing::Length(7)))
            .unwrap();
        assert!(h.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{h}");
        assert!(h.contains("content-length: 7\r\n") && h.contains("connection: close\r\n"));
    }
}
