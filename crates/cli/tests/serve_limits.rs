//! `switchyard serve` under a flood of idle connections, with a low
//! open-file limit as many hosts have: the server must neither run out of
//! descriptors nor stop answering.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_flood_of_idle_connections_does_not_exhaust_descriptors_or_stop_a_real_request() {
    let dir = tempfile::tempdir().unwrap();
    // The limits come from the environment, as an operator would set them.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 512 && exec \"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\" --log-format json")
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .arg(dir.path())
        // Long enough that even a starved server accepts more than its
        // cap of the flood before the first idle connection times out
        // (at 500 ms, a debug build on a loaded machine accepted the
        // flood so slowly that it never reached the cap).
        .env("SWITCHYARD_HEADER_READ_TIMEOUT", "2s")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no \"listening\" line; log: {log:#?}"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        log.push(line);
        if v["fields"]["message"] == "listening" {
            break v["fields"]["address"].as_str().unwrap().to_string();
        }
    };

    // More connections than the server has descriptors for, none of
    // which ever sends a byte.
    let mut idle = Vec::new();
    for _ in 0..700 {
        match TcpStream::connect(&addr) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect failed after {} connections: {e}", idle.len()),
        }
    }

    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(12) {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            last = got;
            if last.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    assert!(
        last.starts_with("HTTP/1.1 200"),
        "no answer in {took:?} with 700 idle connections open; last: {last:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "answered after {took:?}, the header timeout is 2 s"
    );
    drop(idle);
    drop(server);
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(log.contains("connection limit reached"), "{log}");
    assert!(
        !log.contains("accept failed"),
        "the server ran out of descriptors: {log}"
    );
    // Rate-limited: one warning, not one per refused connection.
    assert!(
        log.matches("connection limit reached").count() <= 2,
        "{log}"
    );
}
