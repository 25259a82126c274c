//! The durable log: the stream conformance suite (run on the embedded log
//! and on the in-memory stream), recovery, retention, backpressure.

use std::io::Write;
use std::sync::Arc;

use switchyard_events::log::{EventLog, LogConfig};
use switchyard_events::record::EncodedBatch;
use switchyard_events::{EventStream, LogMetrics, MemoryStream, StreamError};

/// Real events (the log rebuilds its id window by decoding them).
fn events(ids: &[Option<&str>], tag: &str) -> EncodedBatch {
    use switchyard_events::{EventRef, KindRef};
    let mut b = EncodedBatch::default();
    for (i, id) in ids.iter().enumerate() {
        let name = format!("{tag}-{i}");
        let ev = EventRef {
            id: id.map(Into::into),
            unit: "u".into(),
            time_ms: 1_767_225_600_000,
            kind: KindRef::Track {
                name: name.as_str().into(),
                value: None,
                attributes: None,
            },
        };
        b.push_event("p", "e", &ev);
    }
    b
}

fn names(payloads: Vec<Vec<u8>>) -> Vec<String> {
    payloads
        .iter()
        .map(|p| {
            let ev = switchyard_events::decode_event(p).unwrap();
            ev.name.unwrap().to_string()
        })
        .collect()
}

fn batch(ids: &[Option<&str>], tag: &str) -> EncodedBatch {
    let mut b = EncodedBatch::default();
    for (i, id) in ids.iter().enumerate() {
        let payload = format!("{tag}-{i}");
        let id = id.map(|s| switchyard_events::record::id_hash("p", "e", s));
        b.push_raw(payload.as_bytes(), id);
    }
    b
}

async fn all(stream: &dyn EventStream) -> Vec<String> {
    all_raw(stream)
        .await
        .into_iter()
        .map(|p| String::from_utf8(p).unwrap())
        .collect()
}

async fn all_raw(stream: &dyn EventStream) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let (mut next, end) = stream.bounds();
    while next < end {
        let b = stream.read(next, 64).await.unwrap();
        assert!(b.next > next, "a read makes progress");
        next = b.next;
        out.extend(b.records.into_iter().map(|r| r.payload));
    }
    out
}

/// What every EventStream must do.
async fn conformance(stream: Arc<dyn EventStream>) {
    let a = stream
        .append(batch(&[Some("x"), None, Some("y")], "a"))
        .await
        .unwrap();
    assert_eq!(a.written, 3);
    let b = stream
        .append(batch(&[Some("y"), Some("z"), Some("z")], "b"))
        .await
        .unwrap();
    assert_eq!((b.written, b.duplicates.clone()), (1, vec![0, 2]));
    assert_eq!(all(stream.as_ref()).await, ["a-0", "a-1", "a-2", "b-1"]);

    let first = stream.read(0, 1).await.unwrap();
    assert_eq!(
        first.records.len(),
        1,
        "at least one record even past max_bytes"
    );
    let rest = stream.read(first.next, 1 << 20).await.unwrap();
    assert_eq!(rest.records.len(), 3);
    assert_eq!(stream.bounds().1, rest.next);

    assert_eq!(stream.committed("agg").await.unwrap(), None);
    stream.commit("agg", first.next).await.unwrap();
    assert_eq!(stream.committed("agg").await.unwrap(), Some(first.next));

    // Many concurrent appends all land, each once.
    let mut tasks = Vec::new();
    for t in 0..20 {
        let s = stream.clone();
        tasks.push(tokio::spawn(async move {
            s.append(batch(&[None, None], &format!("c{t}")))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().written, 2);
    }
    assert_eq!(all(stream.as_ref()).await.len(), 44);
}

#[tokio::test]
async fn the_memory_stream_passes_the_conformance_suite() {
    conformance(Arc::new(MemoryStream::default())).await;
}

#[tokio::test]
async fn the_embedded_log_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogConfig::default(), LogMetrics::default()).unwrap();
    conformance(Arc::new(log)).await;
}

#[tokio::test]
async fn the_embedded_log_passes_the_conformance_suite_with_tiny_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 30,
        ..LogConfig::default()
    };
    let log = Arc::new(EventLog::open(dir.path(), cfg, LogMetrics::default()).unwrap());
    conformance(log.clone()).await;
    // Group commit may merge the suite's concurrent appends into one write;
    // appends awaited one by one are one write each, each past the limit.
    for i in 0..3 {
        log.append(batch(&[None], &format!("seq{i}")))
            .await
            .unwrap();
    }
    assert!(
        switchyard_events::segment::list_segments(dir.path())
            .unwrap()
            .len()
            > 3
    );
}

#[tokio::test]
async fn records_ids_and_consumer_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path(), LogConfig::default(), LogMetrics::default()).unwrap();
        log.append(events(&[Some("x"), Some("y")], "a"))
            .await
            .unwrap();
        log.commit("agg", 7).await.unwrap();
    }
    let log = EventLog::open(dir.path(), LogConfig::default(), LogMetrics::default()).unwrap();
    let again = log
        .append(events(&[Some("y"), Some("w")], "b"))
        .await
        .unwrap();
    assert_eq!(
        again.duplicates,
        vec![0],
        "the id window is rebuilt from the log"
    );
    assert_eq!(names(all_raw(&log).await), ["a-0", "a-1", "b-1"]);
    assert_eq!(log.committed("agg").await.unwrap(), Some(7));
}

#[tokio::test]
async fn recovery_keeps_complete_records_and_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let end = {
        let log = EventLog::open(dir.path(), LogConfig::default(), LogMetrics::default()).unwrap();
        log.append(batch(&[None, None, None], "a"))
            .await
            .unwrap()
            .next
    };
    let seg = dir.path().join(format!("{:020}.log", 0));
    let full = std::fs::read(&seg).unwrap();
    // A torn write: the first half of a copy of the last record, then zeros.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&full[full.len() - 5..full.len() - 2]).unwrap();
    f.write_all(&[0; 64]).unwrap();
    drop(f);
    let log = EventLog::open(dir.path(), LogConfig::default(), LogMetrics::default()).unwrap();
    assert_eq!(log.bounds().1, end);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), end);
    log.append(batch(&[None], "b")).await.unwrap();
    assert_eq!(all(&log).await, ["a-0", "a-1", "a-2", "b-0"]);
}

#[tokio::test]
async fn a_corrupted_record_ends_the_log_there_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path(), LogConfig::default(), LogMetrics::default()).unwrap();
        log.append(batch(&[None, None, None], "a")).await.unwrap();
    }
    let seg = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let second = 8 + 3; // header + "a-0"
    bytes[second + 9] ^= 0xff; // flip a payload byte of the second record
    std::fs::write(&seg, &bytes).unwrap();
    let log = EventLog::open(dir.path(), LogConfig::default(), LogMetrics::default()).unwrap();
    assert_eq!(all(&log).await, ["a-0"]);
}

#[tokio::test]
async fn retention_deletes_the_oldest_closed_segments_past_the_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 100,
        retention_bytes: Some(250),
        ..LogConfig::default()
    };
    let log = EventLog::open(dir.path(), cfg, LogMetrics::default()).unwrap();
    for i in 0..20 {
        log.append(batch(&[None; 4], &format!("r{i:02}")))
            .await
            .unwrap();
    }
    let segs = switchyard_events::segment::list_segments(dir.path()).unwrap();
    let on_disk: u64 = segs
        .iter()
        .map(|s| std::fs::metadata(&s.path).unwrap().len())
        .sum();
    assert!(
        on_disk <= 250 + 100,
        "{on_disk} bytes in {} segments",
        segs.len()
    );
    let (start, _) = log.bounds();
    assert!(start > 0);
    let left = all(&log).await;
    assert_eq!(left.last().map(String::as_str), Some("r19-3"));
    assert!(!left.contains(&"r00-0".to_string()));
    assert!(log.size_bytes() <= 250 + 100);
}

#[tokio::test]
async fn appends_are_refused_with_overloaded_when_a_consumer_lags_too_far() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        max_consumer_lag: Some(50),
        ..LogConfig::default()
    };
    let log = EventLog::open(dir.path(), cfg, LogMetrics::default()).unwrap();
    log.commit("agg", 0).await.unwrap();
    log.append(batch(&[None; 10], "a")).await.unwrap();
    let err = log.append(batch(&[None], "b")).await.unwrap_err();
    assert!(matches!(err, StreamError::Overloaded { .. }), "{err}");
    let (_, end) = log.bounds();
    log.commit("agg", end).await.unwrap();
    log.append(batch(&[None], "c")).await.unwrap();
}

#[tokio::test]
async fn appends_are_refused_with_overloaded_past_the_pending_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        max_pending_bytes: 1,
        ..LogConfig::default()
    };
    let log = Arc::new(EventLog::open(dir.path(), cfg, LogMetrics::default()).unwrap());
    // Submitted together: the first is admitted (nothing pending), the
    // others find it pending.
    let futs: Vec<_> = (0..50)
        .map(|_| log.append(batch(&[None; 100], "x")))
        .collect();
    let mut overloaded = 0;
    for f in futs {
        match f.await {
            Ok(_) => {}
            Err(StreamError::Overloaded { .. }) => overloaded += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(overloaded > 0);
}

#[tokio::test]
async fn a_malformed_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogConfig::default(), LogMetrics::default()).unwrap();
    let mut b = batch(&[None], "a");
    b.data.push(0);
    assert!(matches!(
        log.append(b).await,
        Err(StreamError::InvalidBatch(_))
    ));
}

#[test]
fn a_second_process_cannot_open_a_log_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let first = switchyard_events::EventLog::open(
        dir.path(),
        switchyard_events::LogConfig::default(),
        Default::default(),
    )
    .unwrap();
    let second = switchyard_events::EventLog::open(
        dir.path(),
        switchyard_events::LogConfig::default(),
        Default::default(),
    );
    let err = second.expect_err("the directory is locked");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(first);
    // Released with the first log: the directory opens again.
    switchyard_events::EventLog::open(
        dir.path(),
        switchyard_events::LogConfig::default(),
        Default::default(),
    )
    .unwrap();
}
