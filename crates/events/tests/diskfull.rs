//! A full disk, simulated with [`SpaceLimit`] (a filesystem limit the log's
//! writes see): whole batches are refused, nothing of a refused batch is
//! stored, the log says it cannot write, and it recovers by itself once
//! space returns.

use std::time::{Duration, Instant};

use switchyard_events::log::SpaceLimit;
use switchyard_events::{BodyFormat, Events, EventsConfig, IngestError, LogConfig};

const NOW: i64 = 1_767_225_600_000;

fn batch(tag: &str, n: usize) -> Vec<u8> {
    let evs: Vec<String> = (0..n)
        .map(|i| {
            format!(r#"{{"type":"track","id":"{tag}-{i}","unit":"u{i}","name":"buy","value":{i}}}"#)
        })
        .collect();
    format!("[{}]", evs.join(",")).into_bytes()
}

fn stored(dir: &std::path::Path) -> Vec<String> {
    let mut ids = Vec::new();
    switchyard_events::read_dir(&dir.join("log"), |_, p| {
        let ev = switchyard_events::decode_event(p).expect("an event");
        ids.push(ev.id.unwrap_or_default().to_string());
    })
    .unwrap();
    ids
}

fn config(events: &std::sync::Arc<SpaceLimit>, dead: &std::sync::Arc<SpaceLimit>) -> EventsConfig {
    let d = EventsConfig::default();
    EventsConfig {
        log: LogConfig {
            space: Some(events.clone()),
            ..d.log.clone()
        },
        dead_letter_log: LogConfig {
            space: Some(dead.clone()),
            ..d.dead_letter_log.clone()
        },
        ..d
    }
}

async fn wait_healthy(events: &Events) {
    let t = Instant::now();
    while events.health().is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the log did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_full_disk_refuses_whole_batches_and_the_log_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let space = SpaceLimit::new(u64::MAX / 2);
    let dead_space = SpaceLimit::new(u64::MAX / 2);
    let events = Events::open(dir.path(), config(&space, &dead_space))
        .await
        .unwrap();
    let r = events
        .ingest("p", "e", &batch("a", 5), BodyFormat::Json, false, NOW)
        .await
        .unwrap();
    assert_eq!(r.accepted, 5);
    let size = std::fs::metadata(dir.path().join("log/00000000000000000000.log"))
        .unwrap()
        .len();

    // Room for about two of the next batch's ten events: the write is torn.
    space.set_free(150);
    let err = events
        .ingest("p", "e", &batch("b", 10), BodyFormat::Json, false, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Unavailable(_)), "{err}");
    assert!(events.health().is_err(), "the log reports it cannot write");
    assert_eq!(
        std::fs::metadata(dir.path().join("log/00000000000000000000.log"))
            .unwrap()
            .len(),
        size,
        "nothing of the refused batch is left in the segment"
    );
    assert_eq!(stored(dir.path()).len(), 5);
    // Still full: refused again, and still nothing stored.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        events
            .ingest("p", "e", &batch("b", 10), BodyFormat::Json, false, NOW)
            .await
            .is_err()
    );
    assert!(events.health().is_err());

    // Space returns: no restart, no request needed to notice.
    space.set_free(u64::MAX / 2);
    wait_healthy(&events).await;
    let r = events
        .ingest("p", "e", &batch("b", 10), BodyFormat::Json, false, NOW)
        .await
        .unwrap();
    assert_eq!(
        (r.accepted, r.duplicates),
        (10, 0),
        "the retry is stored, not taken for a repeat of the refused batch"
    );
    drop(events);
    let ids = stored(dir.path());
    assert_eq!(ids.len(), 15);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 15, "each event once");
}

#[tokio::test]
async fn a_refused_batch_leaves_nothing_that_recovery_would_keep_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let space = SpaceLimit::new(u64::MAX / 2);
    let dead_space = SpaceLimit::new(u64::MAX / 2);
    {
        let events = Events::open(dir.path(), config(&space, &dead_space))
            .await
            .unwrap();
        events
            .ingest("p", "e", &batch("a", 3), BodyFormat::Json, false, NOW)
            .await
            .unwrap();
        // Room for several whole records of the ten, but not all of them.
        space.set_free(400);
        assert!(
            events
                .ingest("p", "e", &batch("b", 10), BodyFormat::Json, false, NOW)
                .await
                .is_err()
        );
    }
    let events = Events::open(dir.path(), EventsConfig::default())
        .await
        .unwrap();
    drop(events);
    assert_eq!(
        stored(dir.path()),
        vec!["a-0", "a-1", "a-2"],
        "no event of the refused batch"
    );
}

#[tokio::test]
async fn a_full_dead_letter_store_does_not_refuse_stored_events_and_the_answer_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let space = SpaceLimit::new(u64::MAX / 2);
    let dead_space = SpaceLimit::new(0);
    let events = Events::open(dir.path(), config(&space, &dead_space))
        .await
        .unwrap();
    let body = br#"[{"type":"track","id":"x","unit":"u","name":"n"},{"type":"track","unit":"u"}]"#;
    let r = events
        .ingest("p", "e", body, BodyFormat::Json, false, NOW)
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
    assert_eq!(r.rejected.len(), 1);
    assert!(!r.dead_letters_stored);
    assert_eq!(events.metrics().dead_letters_lost.get(), 1);
    assert!(events.health().is_err(), "the dead-letter store reports it");
    // A batch of rejections only has nothing stored: it is refused whole.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let only_bad = br#"[{"type":"track","unit":"u"}]"#;
    assert!(
        events
            .ingest("p", "e", only_bad, BodyFormat::Json, false, NOW)
            .await
            .is_err()
    );
    dead_space.set_free(u64::MAX / 2);
    wait_healthy(&events).await;
    let r = events
        .ingest("p", "e", only_bad, BodyFormat::Json, false, NOW)
        .await
        .unwrap();
    assert!(r.dead_letters_stored);
}
