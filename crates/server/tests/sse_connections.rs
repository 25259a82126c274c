//! The SDK stream on the wire, over plain TCP: served without hyper when
//! it is a connection's first request (net/sse.rs), by hyper when it
//! follows other requests on a kept-alive connection, and the same either
//! way: chunked events, keep-alive comments, changes, the last chunk when
//! the key is revoked, errors answered and closed, HTTP/1.0.

mod common;

use std::time::Duration;

use common::{Backend, TestServer, start, start_with};
use serde_json::{Value, json};
use switchyard_server::ServerConfig;
use switchyard_store::ApiKeyKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// A flag of our own in `demo`/production and a server key: (key id, secret).
async fn setup(server: &TestServer) -> (String, String) {
    server
        .add_demo_flag(json!({
            "key": "w-switch", "name": "switch", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {"production": {"enabled": true, "off_variation": "off",
                                            "fallthrough": {"variation": "on"}}}}))
        .await;
    let key = server.demo_sdk_key(ApiKeyKind::Server).await;
    (key.key.id, key.secret)
}

async fn connect(server: &TestServer) -> TcpStream {
    let addr = server.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

fn stream_request(key: &str, version: &str) -> String {
    format!("GET /sdk/v1/stream {version}\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\r\n")
}

/// Everything read from a connection so far.
struct Wire {
    tcp: TcpStream,
    text: String,
    closed: bool,
}

impl Wire {
    fn new(tcp: TcpStream) -> Self {
        Wire {
            tcp,
            text: String::new(),
            closed: false,
        }
    }

    /// Reads until `needle` appears after byte `from` (returns its end),
    /// or the connection closes, or `WAIT` passes.
    async fn until(&mut self, from: usize, needle: &str) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(at) = self.text[from.min(self.text.len())..].find(needle) {
                return Some(from + at + needle.len());
            }
            if self.closed {
                return None;
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => self
                    .text
                    .push_str(std::str::from_utf8(&buf[..n]).expect("UTF-8")),
            }
        }
    }

    /// Reads until the server closes the connection.
    async fn read_to_close(&mut self) -> bool {
        self.until(usize::MAX, "\u{0}never").await;
        self.closed
    }
}

async fn patch_flag(server: &TestServer, enabled: bool) {
    let client = reqwest::Client::new();
    let url = format!(
        "{}/api/v1/projects/demo/flags/w-switch/environments/production",
        server.url
    );
    let etag = client
        .get(format!(
            "{}/api/v1/projects/demo/flags/w-switch",
            server.url
        ))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .expect("flag")
        .headers()["etag"]
        .to_str()
        .expect("etag")
        .to_string();
    let resp = client
        .patch(url)
        .bearer_auth(&server.admin_key)
        .header("If-Match", etag)
        .json(&json!({"enabled": enabled}))
        .send()
        .await
        .expect("patch");
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// The `data` of the last `config` event in `text`.
fn last_document(text: &str) -> Value {
    let data = text
        .rsplit("event: config\n")
        .next()
        .and_then(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .expect("a config event with data");
    serde_json::from_str(data).expect("JSON document")
}

fn enabled(document: &Value) -> Option<bool> {
    document["flags"]
        .as_array()?
        .iter()
        .find(|f| f["key"] == "w-switch")?["enabled"]
        .as_bool()
}

#[tokio::test]
async fn a_first_request_stream_is_chunked_and_ends_with_the_last_chunk_on_revocation() {
    let config = ServerConfig {
        stream_keepalive: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    let (id, key) = setup(&server).await;
    let mut tcp = connect(&server).await;
    tcp.write_all(stream_request(&key, "HTTP/1.1").as_bytes())
        .await
        .unwrap();
    let mut wire = Wire::new(tcp);
    let head_end = wire.until(0, "\r\n\r\n").await.expect("a head");
    let head = wire.text[..head_end].to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let first = wire.until(head_end, "\n\n\r\n").await.expect("first event");
    // One chunk: its size line, then the event.
    let chunk = &wire.text[head_end..first];
    let (size, event) = chunk.split_once("\r\n").expect("size line");
    assert_eq!(
        usize::from_str_radix(size, 16).unwrap(),
        event.len() - 2,
        "{chunk}"
    );
    assert!(event.starts_with("event: config\nid: "), "{event}");
    assert_eq!(enabled(&last_document(&wire.text)), Some(true));
    assert_eq!(server.state.metrics.stream_clients.get(), 1);

    // Heartbeats, then a change.
    let beat = wire
        .until(first, ":keep-alive\n\n")
        .await
        .expect("keep-alive");
    patch_flag(&server, false).await;
    let change = wire
        .until(beat, "event: config\n")
        .await
        .expect("the change");
    wire.until(change, "\n\n").await.expect("whole event");
    assert_eq!(enabled(&last_document(&wire.text)), Some(false));

    // Revocation: the terminating chunk, then the connection closes.
    let resp = reqwest::Client::new()
        .delete(format!("{}/api/v1/api-keys/{id}", server.url))
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .expect("revoke");
    assert!(resp.status().is_success());
    assert!(wire.read_to_close().await, "the stream ends");
    assert!(
        wire.text.ends_with("\r\n0\r\n\r\n"),
        "{:?}",
        &wire.text[wire.text.len().saturating_sub(40)..]
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.state.metrics.stream_clients.get() != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.state.metrics.stream_clients.get(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_stream_after_other_requests_on_a_kept_alive_connection_works_the_same() {
    let config = ServerConfig {
        stream_keepalive: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    let (_, key) = setup(&server).await;
    let mut tcp = connect(&server).await;
    // A first request (served by hyper), then the stream on the same
    // connection.
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut wire = Wire::new(tcp);
    let ok = wire.until(0, "\r\n\r\n").await.expect("healthz head");
    assert!(wire.text.starts_with("HTTP/1.1 200"), "{}", wire.text);
    let length: usize = wire.text[..ok]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    while wire.text.len() < ok + length {
        let mut buf = [0u8; 256];
        let n = wire.tcp.read(&mut buf).await.unwrap();
        wire.text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let start = wire.text.len();
    wire.tcp
        .write_all(stream_request(&key, "HTTP/1.1").as_bytes())
        .await
        .unwrap();
    let head_end = wire.until(start, "\r\n\r\n").await.expect("stream head");
    let head = wire.text[start..head_end].to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let first = wire
        .until(head_end, "event: config\n")
        .await
        .expect("first event");
    let beat = wire
        .until(first, ":keep-alive\n\n")
        .await
        .expect("keep-alive");
    patch_flag(&server, false).await;
    let change = wire.until(beat, "event: config\n").await.expect("change");
    wire.until(change, "\n\n").await.expect("whole event");
    assert_eq!(enabled(&last_document(&wire.text)), Some(false));
    server.stop().await;
}

#[tokio::test]
async fn a_refused_stream_gets_its_error_whole_and_the_connection_closes() {
    let server = start(Backend::Sqlite).await;
    let mut tcp = connect(&server).await;
    tcp.write_all(stream_request("sy_srv_not-a-key", "HTTP/1.1").as_bytes())
        .await
        .unwrap();
    let mut wire = Wire::new(tcp);
    assert!(wire.read_to_close().await, "closed after the answer");
    let (head, body) = wire.text.split_once("\r\n\r\n").expect("head and body");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}\n{body}"
    );
    let json: Value = serde_json::from_str(body).expect("JSON error");
    assert!(json["error"]["code"].is_string(), "{json}");
    assert_eq!(server.state.metrics.stream_clients.get(), 0);
    server.stop().await;
}

#[tokio::test]
async fn an_http_1_0_stream_is_delimited_by_the_connection_and_ends_at_shutdown() {
    let server = start(Backend::Sqlite).await;
    let (_, key) = setup(&server).await;
    let mut tcp = connect(&server).await;
    tcp.write_all(stream_request(&key, "HTTP/1.0").as_bytes())
        .await
        .unwrap();
    let mut wire = Wire::new(tcp);
    let head_end = wire.until(0, "\r\n\r\n").await.expect("a head");
    let head = wire.text[..head_end].to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    // No chunk framing: the event follows the head directly.
    assert!(
        wire.until(head_end, "\n\n").await.is_some()
            && wire.text[head_end..].starts_with("event: config\n"),
        "{}",
        &wire.text[head_end..]
    );
    server.stop().await;
    assert!(wire.read_to_close().await, "shutdown closes the stream");
}

#[tokio::test]
async fn a_slow_partial_stream_head_is_still_served_and_a_silent_one_times_out() {
    let server = start(Backend::Sqlite).await;
    let (_, key) = setup(&server).await;
    let request = stream_request(&key, "HTTP/1.1");
    let mut tcp = connect(&server).await;
    // The head in three pieces, the first shorter than the request line.
    for piece in [&request[..6], &request[6..30], &request[30..]] {
        tcp.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut wire = Wire::new(tcp);
    let head_end = wire.until(0, "\r\n\r\n").await.expect("a head");
    assert!(wire.text.starts_with("HTTP/1.1 200"), "{}", wire.text);
    wire.until(head_end, "event: config\n")
        .await
        .expect("first event");
    server.stop().await;

    let config = ServerConfig {
        net: switchyard_server::net::NetConfig {
            header_read_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let server = start_with(Backend::Sqlite, config).await;
    let mut tcp = connect(&server).await;
    tcp.write_all(b"GET /sdk/v1/stream HTTP/1.1\r\nHost: x")
        .await
        .unwrap();
    let mut wire = Wire::new(tcp);
    let started = std::time::Instant::now();
    assert!(wire.read_to_close().await, "an incomplete head is closed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !wire.text.contains("200"),
        "no stream without a head: {}",
        wire.text
    );
    let metrics = server.state.metrics.encode();
    assert!(
        metrics.contains("switchyard_http_timeouts_total{kind=\"header\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("timeout"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.stop().await;
}
