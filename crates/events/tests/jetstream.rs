//! `JetStreamEvents` and `PartitionConsumer` against real nats-server
//! processes: each test starts its own (a free port, JetStream in a
//! temporary store directory), so it can stop and restart it. The tests
//! fail, they do not skip, when `/usr/sbin/nats-server` is missing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard_events::jetstream::{
    JetStreamConfig, JetStreamEvents, PartitionConsumer, PartitionMessage, partition_of,
};
use switchyard_events::record::EncodedBatch;
use switchyard_events::{EventMetrics, EventRef, EventStream, KindRef, LogConfig, decode_event};

const NATS: &str = "/usr/sbin/nats-server";

/// A private nats-server with JetStream; killed when dropped.
struct Nats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// A free port below the ephemeral range (30000-32767 here; the cluster
/// test uses 20000-29999), so that no outgoing connection takes it while a
/// test's NATS is stopped.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let seed = std::process::id() as u16;
    (0..2000u16)
        .map(|_| {
            let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            30_000 + (seed.wrapping_add(i.wrapping_mul(13)) % 2_700)
        })
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port between 30000 and 32699")
}

impl Nats {
    fn start() -> Nats {
        assert!(
            Path::new(NATS).exists(),
            "{NATS} is missing: the JetStream tests need nats-server 2.9+ (apt-get install nats-server)"
        );
        let mut n = Nats {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        n.restart();
        n
    }

    /// Starts the server (again) on the same port and store directory.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .unwrap();
        let child = Command::new(NATS)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start nats-server");
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nats-server did not listen on {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(url: &str, partitions: u32) -> JetStreamConfig {
    JetStreamConfig {
        url: url.into(),
        stream: "EVENTS_TEST".into(),
        subject_prefix: "test.events".into(),
        partitions,
        publish_timeout: Duration::from_secs(1),
        ..JetStreamConfig::default()
    }
}

fn spool_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        max_pending_bytes: 8 << 20,
        max_group_bytes: 1 << 20,
        dedup_ids: 100_000,
        ..LogConfig::default()
    }
}

async fn connect(config: JetStreamConfig, spool: &Path) -> Arc<JetStreamEvents> {
    JetStreamEvents::connect(config, spool, spool_config(), Arc::new(EventMetrics::new()))
        .await
        .unwrap()
}

/// Events `(unit, id)`; `None` ids are never deduplicated.
fn batch(events: &[(String, Option<String>)]) -> EncodedBatch {
    let mut b = EncodedBatch::default();
    for (unit, id) in events {
        b.push_event(
            "proj",
            "env",
            &EventRef {
                id: id.as_deref().map(Into::into),
                unit: unit.as_str().into(),
                time_ms: 1_767_225_600_000,
                kind: KindRef::Track {
                    name: "clicked".into(),
                    value: Some(1.0),
                    attributes: None,
                },
            },
        );
    }
    b
}

/// `count` events from `start`: units spread over many partitions.
fn numbered(start: usize, count: usize) -> Vec<(String, Option<String>)> {
    (start..start + count)
        .map(|i| (format!("user-{}", i % 97), Some(format!("ev-{i}"))))
        .collect()
}

/// Every message of `partition` from `from`, until none comes for 300 ms.
async fn read_partition(
    config: &JetStreamConfig,
    partition: u32,
    from: u64,
) -> Vec<PartitionMessage> {
    let mut c = PartitionConsumer::open(config, partition, 1, from)
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let got = c.fetch(50, Duration::from_millis(300)).await.unwrap();
        if got.is_empty() {
            break;
        }
        out.extend(got);
    }
    assert_eq!(c.pending().await.unwrap(), 0);
    assert_eq!(c.bad_records(), 0);
    out
}

/// (partition, unit, id) of every stored event, over all partitions.
async fn read_all(config: &JetStreamConfig, partitions: u32) -> Vec<(u32, String, Option<String>)> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let msgs = read_partition(config, p, 1).await;
        let seqs: Vec<u64> = msgs.iter().map(|m| m.sequence).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "partition {p} in sequence order: {seqs:?}"
        );
        for m in msgs {
            for r in &m.records {
                let ev = decode_event(r).expect("an event");
                out.push((p, ev.unit.to_string(), ev.id.map(str::to_string)));
            }
        }
    }
    out
}

fn count_ids(events: &[(u32, String, Option<String>)]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for (_, _, id) in events {
        if let Some(id) = id {
            *n.entry(id.clone()).or_insert(0) += 1;
        }
    }
    n
}

async fn wait_drained(js: &JetStreamEvents, within: Duration) {
    let t = Instant::now();
    loop {
        let s = js.spool();
        if !s.spooling && s.pending_bytes == 0 {
            return;
        }
        assert!(
            t.elapsed() < within,
            "the spool did not drain within {within:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_once_each_in_their_units_partition_and_a_consumer_starts_where_asked() {
    let nats = Nats::start();
    let spool = tempfile::tempdir().unwrap();
    let cfg = config(&nats.url(), 4);
    let js = connect(cfg.clone(), spool.path()).await;
    assert_eq!(js.partitions(), 4);

    // 20 batches of 25, half of them appended concurrently.
    let mut tasks = Vec::new();
    for b in 0..20 {
        let js = js.clone();
        let events = numbered(b * 25, 25);
        tasks.push(tokio::spawn(async move { js.append(batch(&events)).await }));
        if b % 2 == 0 {
            let a = tasks.pop().unwrap().await.unwrap().unwrap();
            assert_eq!((a.written, a.next - a.first), (25, 25));
            assert!(a.duplicates.is_empty());
        }
    }
    for t in tasks {
        let a = t.await.unwrap().unwrap();
        assert_eq!(a.written, 25);
    }
    let s = js.spool();
    assert!(!s.spooling, "{s:?}");
    assert_eq!((s.pending_bytes, s.forwarded), (0, 0));

    let all = read_all(&cfg, 4).await;
    let ids = count_ids(&all);
    assert_eq!(ids.len(), 500);
    assert!(ids.values().all(|&n| n == 1), "each event once");
    let mut per_partition = [0usize; 4];
    for (p, unit, _) in &all {
        assert_eq!(*p, partition_of(unit, 4), "{unit} in its partition");
        per_partition[*p as usize] += 1;
    }
    assert!(per_partition.iter().all(|&n| n > 0), "{per_partition:?}");

    // Re-opened from a message in the middle: exactly from there.
    let p0 = read_partition(&cfg, 0, 1).await;
    assert!(p0.len() >= 4, "{} messages", p0.len());
    let mid = &p0[p0.len() / 2..];
    let again = read_partition(&cfg, 0, mid[0].sequence).await;
    assert_eq!(again, mid);
    // From a sequence of another partition: the next message of this one.
    let between = read_partition(&cfg, 0, mid[0].sequence - 1).await;
    let expected = if p0[p0.len() / 2 - 1].sequence == mid[0].sequence - 1 {
        &p0[p0.len() / 2 - 1..]
    } else {
        mid
    };
    assert_eq!(between, expected);

    // `pending` counts what is after the last delivery.
    let mut c = PartitionConsumer::open(&cfg, 0, 1, 1).await.unwrap();
    assert_eq!(c.pending().await.unwrap(), p0.len() as u64);
    let first = c.fetch(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first, p0[..1]);
    assert_eq!(c.pending().await.unwrap(), p0.len() as u64 - 1);
    assert_eq!(c.next_sequence(), p0[0].sequence + 1);
    // A second holder of the partition cuts the first one off; it reads
    // everything after reopening where it stood.
    let mut second = PartitionConsumer::open(&cfg, 0, 1, 1).await.unwrap();
    assert!(c.fetch(10, Duration::from_millis(200)).await.is_err());
    let mut got: Vec<PartitionMessage> = Vec::new();
    let mut reopened = 0;
    loop {
        match second.fetch(50, Duration::from_millis(300)).await {
            Ok(m) if m.is_empty() => break,
            Ok(m) => got.extend(m),
            Err(e) => {
                reopened += 1;
                assert!(reopened < 3, "{e}");
                second = PartitionConsumer::open(&cfg, 0, 1, second.next_sequence())
                    .await
                    .unwrap()
            }
        }
    }
    assert_eq!(got, p0);

    let mut text = String::new();
    js.encode_metrics(&mut text);
    assert!(
        text.contains("# TYPE switchyard_jetstream_published_messages counter"),
        "{text}"
    );
    assert!(text.contains("switchyard_spool_spooling 0"), "{text}");
    assert!(
        text.contains("switchyard_spool_forwarded_events_total 0"),
        "{text}"
    );
    // The trait's reading side points to PartitionConsumer.
    let e = js.read(0, 1000).await.unwrap_err().to_string();
    assert!(e.contains("PartitionConsumer"), "{e}");
    assert_eq!(js.bounds(), (0, 0));
    assert!(js.health().is_ok());
    js.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_down_appends_are_spooled_and_forwarded_once_after_it_returns() {
    let mut nats = Nats::start();
    let spool = tempfile::tempdir().unwrap();
    let cfg = config(&nats.url(), 4);
    let js = connect(cfg.clone(), spool.path()).await;
    js.append(batch(&numbered(0, 20))).await.unwrap();

    nats.kill();
    let mut slowest = Duration::ZERO;
    for b in 1..=10 {
        let t = Instant::now();
        let a = js.append(batch(&numbered(b * 20, 20))).await.unwrap();
        assert_eq!(a.written, 20);
        if b > 1 {
            slowest = slowest.max(t.elapsed());
        }
        assert!(
            t.elapsed() < cfg.publish_timeout + Duration::from_millis(500),
            "append {b} took {:?}",
            t.elapsed()
        );
    }
    // Once spooling, an append does not wait for a timeout.
    assert!(slowest < Duration::from_millis(300), "{slowest:?}");
    let s = js.spool();
    assert!(s.spooling, "{s:?}");
    assert!(s.pending_bytes > 0, "{s:?}");
    assert!(s.last_error.is_some(), "{s:?}");
    assert!(js.health().is_ok(), "spooling is not unhealthy");
    let mut text = String::new();
    js.encode_metrics(&mut text);
    assert!(text.contains("switchyard_spool_spooling 1"), "{text}");

    nats.restart();
    wait_drained(&js, Duration::from_secs(15)).await;
    let s = js.spool();
    assert_eq!(s.forwarded, 200, "{s:?}");
    assert_eq!(s.last_error, None);

    let all = read_all(&cfg, 4).await;
    let ids = count_ids(&all);
    assert_eq!(ids.len(), 220);
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    for (p, unit, _) in &all {
        assert_eq!(*p, partition_of(unit, 4));
    }
    // Direct again.
    js.append(batch(&numbered(1000, 5))).await.unwrap();
    assert!(!js.spool().spooling);
    js.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_is_reported_and_published_once() {
    let nats = Nats::start();
    let spool = tempfile::tempdir().unwrap();
    let cfg = config(&nats.url(), 4);
    let js = connect(cfg.clone(), spool.path()).await;
    let ev = |unit: &str, id: Option<&str>| (unit.to_string(), id.map(str::to_string));

    let a = js
        .append(batch(&[
            ev("u1", Some("a")),
            ev("u2", Some("b")),
            ev("u3", Some("c")),
        ]))
        .await
        .unwrap();
    assert_eq!((a.written, a.duplicates.clone()), (3, vec![]));
    let a = js
        .append(batch(&[
            ev("u3", Some("c")),
            ev("u4", Some("d")),
            ev("u5", Some("d")),
        ]))
        .await
        .unwrap();
    assert_eq!((a.written, a.duplicates), (1, vec![0, 2]));
    let a = js
        .append(batch(&[ev("u1", Some("a")), ev("u2", Some("b"))]))
        .await
        .unwrap();
    assert_eq!((a.written, a.duplicates), (0, vec![0, 1]));
    // Events without an id are never taken for repeats.
    let a = js
        .append(batch(&[ev("u6", None), ev("u6", None)]))
        .await
        .unwrap();
    assert_eq!((a.written, a.duplicates), (2, vec![]));

    let all = read_all(&cfg, 4).await;
    let ids = count_ids(&all);
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        [("a", 1), ("b", 1), ("c", 1), ("d", 1)].map(|(k, n)| (k.to_string(), n))
    );
    let units: Vec<&str> = all.iter().map(|(_, u, _)| u.as_str()).collect();
    assert_eq!(units.iter().filter(|u| **u == "u6").count(), 2);
    assert!(!units.contains(&"u5"), "the repeat of d was not published");
    js.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_keeps_its_partition_count() {
    let nats = Nats::start();
    let first = tempfile::tempdir().unwrap();
    let two = connect(config(&nats.url(), 2), first.path()).await;
    assert_eq!(two.partitions(), 2);
    two.close();
    drop(two);

    let second = tempfile::tempdir().unwrap();
    let cfg = config(&nats.url(), 4);
    let js = connect(cfg.clone(), second.path()).await;
    assert_eq!(
        js.partitions(),
        2,
        "the stream's count, not the configured 4"
    );
    js.append(batch(&numbered(0, 60))).await.unwrap();
    let all = read_all(&cfg, 2).await;
    assert_eq!(count_ids(&all).len(), 60);
    for (p, unit, _) in &all {
        assert_eq!(*p, partition_of(unit, 2));
    }
    let e = PartitionConsumer::open(&cfg, 3, 1, 1).await.unwrap_err();
    assert!(e.to_string().contains("2 partitions"), "{e}");
    js.close();
}

/// Ids `ev-{lo}` to `ev-{hi-1}`?
fn in_range(id: &str, lo: usize, hi: usize) -> bool {
    id.strip_prefix("ev-")
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| (lo..hi).contains(&n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_while_nats_is_down_spools_with_its_cached_layout() {
    let mut nats = Nats::start();
    let spool = tempfile::tempdir().unwrap();
    let cfg = config(&nats.url(), 3);
    let js = connect(cfg.clone(), spool.path()).await;
    let instance = js.instance().to_string();
    js.append(batch(&numbered(0, 10))).await.unwrap();
    nats.kill();
    // Spooled; the forwarder's step (these 10) fails and is cut short.
    js.append(batch(&numbered(10, 10))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(js.spool().spooling);
    js.shutdown().await;
    drop(js);

    // Without a cached layout there is no partition count: a clear error.
    let fresh = tempfile::tempdir().unwrap();
    let e = JetStreamEvents::connect(
        cfg.clone(),
        fresh.path(),
        spool_config(),
        Arc::new(EventMetrics::new()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains(&cfg.url) && e.contains("partition count"), "{e}");

    let t = Instant::now();
    let js = connect(cfg.clone(), spool.path()).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(js.partitions(), 3);
    assert_eq!(js.instance(), instance, "the instance id is kept");
    assert!(js.spool().spooling);
    js.append(batch(&numbered(20, 10))).await.unwrap();
    nats.restart();
    wait_drained(&js, Duration::from_secs(15)).await;
    let all = read_all(&cfg, 3).await;
    let ids = count_ids(&all);
    assert_eq!(ids.len(), 30);
    assert!(ids.values().all(|&n| n == 1), "{ids:?}");
    // The cut-short step is sent again as the same messages (so JetStream
    // would drop what it had stored of them by id): the events spooled
    // after the restart are never folded into them.
    for p in 0..3 {
        for m in read_partition(&cfg, p, 1).await {
            let ids: Vec<String> = m
                .records
                .iter()
                .filter_map(|r| decode_event(r).unwrap().id.map(str::to_string))
                .collect();
            let before = ids.iter().any(|id| in_range(id, 10, 20));
            let after = ids.iter().any(|id| in_range(id, 20, 30));
            assert!(!(before && after), "one message of both steps: {ids:?}");
        }
    }
    js.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_appends_and_forgets_their_ids() {
    let mut nats = Nats::start();
    let spool = tempfile::tempdir().unwrap();
    let cfg = config(&nats.url(), 4);
    let js = JetStreamEvents::connect(
        cfg.clone(),
        spool.path(),
        LogConfig {
            max_consumer_lag: Some(4096),
            ..spool_config()
        },
        Arc::new(EventMetrics::new()),
    )
    .await
    .unwrap();
    nats.kill();
    let mut stored = 0;
    let refused = loop {
        let events = numbered(stored, 20);
        match js.append(batch(&events)).await {
            Ok(a) => {
                assert_eq!(a.written, 20);
                stored += 20;
                assert!(stored < 2000, "the spool never refused");
            }
            Err(e) => break (events, e),
        }
    };
    assert!(
        matches!(refused.1, switchyard_events::StreamError::Overloaded { .. }),
        "{:?}",
        refused.1
    );
    nats.restart();
    wait_drained(&js, Duration::from_secs(15)).await;
    // The refused batch is stored when retried: its ids were forgotten.
    let a = js.append(batch(&refused.0)).await.unwrap();
    assert_eq!((a.written, a.duplicates.len()), (20, 0));
    let ids = count_ids(&read_all(&cfg, 4).await);
    assert_eq!(ids.len(), stored + 20);
    assert!(ids.values().all(|&n| n == 1), "{ids:?}");
    js.close();
}

/// A TCP proxy whose client-to-server direction can be held: what the
/// client sends meanwhile is delivered when it is released.
struct Proxy {
    port: u16,
    hold: Arc<AtomicBool>,
}

async fn proxy(target: u16) -> Proxy {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = Arc::new(AtomicBool::new(false));
    let held = hold.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let held = held.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = cr.read(&mut buf).await {
                    while held.load(Ordering::Acquire) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = sr.read(&mut buf).await {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Proxy { port, hold }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stored_after_its_publish_timed_out_is_not_stored_twice() {
    let nats = Nats::start();
    let proxy = proxy(nats.port).await;
    let spool = tempfile::tempdir().unwrap();
    let through_proxy = JetStreamConfig {
        publish_timeout: Duration::from_millis(500),
        ..config(&format!("nats://127.0.0.1:{}", proxy.port), 4)
    };
    let direct = config(&nats.url(), 4);
    let js = connect(through_proxy, spool.path()).await;
    js.append(batch(&numbered(0, 20))).await.unwrap();

    // The publish reaches the server only after its timeout: spooled with
    // its message id, and stored once when the client delivers it late.
    proxy.hold.store(true, Ordering::Release);
    let t = Instant::now();
    js.append(batch(&numbered(20, 20))).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "{:?}",
        t.elapsed()
    );
    assert!(js.spool().spooling);
    // Spooling: straight to the spool.
    js.append(batch(&numbered(40, 20))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.hold.store(false, Ordering::Release);

    wait_drained(&js, Duration::from_secs(15)).await;
    let all = read_all(&direct, 4).await;
    let ids = count_ids(&all);
    assert_eq!(ids.len(), 60);
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    js.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_nats_server_connect_fails_clearly() {
    let spool = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", free_port());
    let e = JetStreamEvents::connect(
        config(&url, 4),
        spool.path(),
        spool_config(),
        Arc::new(EventMetrics::new()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains(&url), "{e}");
}
