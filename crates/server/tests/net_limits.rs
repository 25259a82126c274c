//! What a client that only opens sockets can do: hold connections without
//! sending, send a head or a body a byte at a time, idle, flood the
//! metrics with invented methods and paths. Every one has a bound; these
//! tests hold the server to it over real sockets.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestServer, start_with};
use switchyard_server::net::NetConfig;
use switchyard_server::{AppState, ServerConfig};
use switchyard_store::{ApiKeyInput, ApiKeyKind, ConfigStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ACTOR: &str = "test";

fn config(net: NetConfig) -> ServerConfig {
    ServerConfig {
        net,
        ..ServerConfig::default()
    }
}

/// Short timeouts, so that the tests wait little.
fn quick() -> NetConfig {
    NetConfig {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(1500),
        max_connections: 100,
        shutdown_timeout: Duration::from_secs(10),
    }
}

async fn connect(server: &TestServer) -> TcpStream {
    let addr = server.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (or resets it); `None`
/// if it is still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(got)
}

/// Reads one response whose body is `Content-Length` long.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert!(n > 0, "closed mid-response after {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_at_the_header_timeout() {
    let server = start_with(Backend::Sqlite, config(quick())).await;
    let mut stream = connect(&server).await;
    let start = Instant::now();
    let got = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server closes a silent connection");
    let took = start.elapsed();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}, the header timeout is 300 ms"
    );
    assert!(
        server
            .state
            .metrics
            .encode()
            .contains("switchyard_http_timeouts_total{kind=\"header\"} 1")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_head_trickling_in_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let server = start_with(Backend::Sqlite, config(quick())).await;
    let stream = connect(&server).await;
    let (mut reader, mut writer) = stream.into_split();
    let start = Instant::now();
    let trickle = tokio::spawn(async move {
        writer
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
            .await?;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.write_all(b"a").await?;
        }
        writer.write_all(b"\r\n\r\n").await
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(4), async {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let took = start.elapsed();
    assert!(read.is_ok(), "still open after 4 s of trickling");
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "the slow request was served"
    );
    assert!(took < Duration::from_secs(2), "cut after {took:?}");
    trickle.abort();
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_idles_for_the_idle_timeout_not_the_header_timeout() {
    let server = start_with(Backend::Sqlite, config(quick())).await;
    let mut stream = connect(&server).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout (300 ms): still served.
    tokio::time::sleep(Duration::from_millis(800)).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Then idle past the idle timeout (1.5 s): closed.
    let start = Instant::now();
    let got = read_until_closed(&mut stream, Duration::from_secs(6))
        .await
        .expect("an idle connection is closed");
    let took = start.elapsed();
    assert!(got.is_empty());
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_secs(4),
        "closed after {took:?}, the idle timeout is 1.5 s"
    );
    assert!(
        server
            .state
            .metrics
            .encode()
            .contains("switchyard_http_timeouts_total{kind=\"idle\"} 1")
    );
    server.stop().await;
}

/// A request with a body of 100 bytes of which only 10 are sent.
fn stalled_post(key: &str) -> Vec<u8> {
    format!(
        "POST /api/v1/projects HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"key\": \"s"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_body_that_stops_arriving_fails_at_the_body_timeout_and_the_connection_closes() {
    let server = start_with(Backend::Sqlite, config(quick())).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(&stalled_post(&server.admin_key))
        .await
        .unwrap();
    let start = Instant::now();
    let got = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server gives up on the body");
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "answered after {took:?}, the body timeout is 500 ms"
    );
    assert!(
        server
            .state
            .metrics
            .encode()
            .contains("switchyard_http_timeouts_total{kind=\"body\"} 1")
    );
    assert!(
        server.store.get_project("s").await.is_err(),
        "nothing was created"
    );
    server.stop().await;
}

#[tokio::test]
async fn past_the_connection_cap_a_connection_gets_a_503_and_is_counted() {
    let net = NetConfig {
        max_connections: 3,
        header_read_timeout: Duration::from_secs(30),
        ..quick()
    };
    let server = start_with(Backend::Sqlite, config(net)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&server).await);
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = connect(&server).await;
    let got = read_until_closed(&mut extra, Duration::from_secs(3))
        .await
        .expect("refused and closed at once");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let body: serde_json::Value = serde_json::from_str(body).expect("the 503 has a JSON body");
    assert_eq!(body["error"]["code"], "too_many_connections");
    let metrics = server.state.metrics.encode();
    assert!(
        metrics.contains("switchyard_connections_refused_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_connections_open 3"),
        "{metrics}"
    );
    // A slot that frees up is taken again.
    drop(held.pop());
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(3) {
        let mut s = connect(&server).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_until_closed(&mut s, Duration::from_secs(1))
            .await
            .unwrap_or_default();
        last = String::from_utf8_lossy(&got).to_string();
        if last.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(last.starts_with("HTTP/1.1 200"), "{last}");
    server.stop().await;
}

#[tokio::test]
async fn many_idle_sockets_delay_a_real_request_by_the_header_timeout_at_most() {
    let net = NetConfig {
        max_connections: 50,
        ..quick()
    };
    let server = start_with(Backend::Sqlite, config(net)).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect(&server).await);
    }
    let start = Instant::now();
    let client = reqwest::Client::new();
    let mut answered = None;
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(r) = client.get(format!("{}/healthz", server.url)).send().await
            && r.status() == 200
        {
            answered = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = answered.expect("a real request is answered");
    assert!(
        took < Duration::from_secs(2),
        "answered after {took:?}, the header timeout is 300 ms"
    );
    drop(idle);
    server.stop().await;
}

async fn sdk_key(store: &Arc<dyn ConfigStore>, kind: ApiKeyKind) -> String {
    store
        .create_api_key(
            ACTOR,
            ApiKeyInput {
                name: "sdk".into(),
                kind,
                project: Some("demo".into()),
                environment: Some("production".into()),
            },
        )
        .await
        .expect("key")
        .secret
}

#[tokio::test]
async fn an_event_stream_outlives_the_idle_and_header_timeouts() {
    let net = NetConfig {
        header_read_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(400),
        ..quick()
    };
    let cfg = ServerConfig {
        net,
        stream_keepalive: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, cfg).await;
    let key = sdk_key(&server.store, ApiKeyKind::Server).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(
            format!(
                "GET /sdk/v1/stream HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while start.elapsed() < Duration::from_millis(1500) {
        let n = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf))
            .await
            .expect("keep-alives keep coming")
            .expect("read");
        assert!(n > 0, "the stream was closed after {:?}", start.elapsed());
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("event: config"), "{text}");
    assert!(text.matches(":keep-alive").count() >= 5, "{text}");
    server.stop().await;
}

/// A server run by the test itself, to time its shutdown.
async fn spawn_server(
    net: NetConfig,
) -> (
    String,
    String,
    AppState,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("config.db").display());
    let store = switchyard_store::open(&url).await.unwrap();
    let boot = switchyard_store::bootstrap(store.as_ref(), false)
        .await
        .unwrap()
        .unwrap();
    let state = AppState::new(store, config(net)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(switchyard_server::run(listener, state.clone(), async {
        let _ = rx.await;
    }));
    (addr, boot.admin_key_secret, state, tx, task, dir)
}

#[tokio::test]
async fn shutdown_waits_for_a_slow_body_no_longer_than_the_shutdown_timeout() {
    let net = NetConfig {
        body_read_timeout: Duration::from_secs(60),
        shutdown_timeout: Duration::from_millis(500),
        ..quick()
    };
    let (addr, admin, _state, stop, task, _dir) = spawn_server(net).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(&stalled_post(&admin)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), task).await;
    let took = start.elapsed();
    assert!(result.is_ok(), "shutdown still waiting after 5 s");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "shut down after {took:?}, the shutdown timeout is 500 ms"
    );
    let got = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(got.is_some(), "the slow client's connection is closed");
}

#[tokio::test]
async fn shutdown_lets_a_quick_request_finish_and_stops_accepting() {
    let (addr, _admin, _state, stop, task, _dir) = spawn_server(quick()).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let start = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("an idle kept-alive connection does not hold shutdown")
        .unwrap()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "still accepting after shutdown"
    );
}
