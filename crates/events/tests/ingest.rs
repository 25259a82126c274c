//! The ingestion service: partial acceptance, dead letters, replay,
//! exposures, and property tests of the parser against the durable log.

use std::io::Write;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use switchyard_events::{
    BodyFormat, DeadLetterFilter, Events, EventsConfig, ExposureConfig, IngestError, Limits,
};

const NOW: i64 = 1_767_225_600_000;

async fn read_events(events: &Events) -> Vec<serde_json::Value> {
    let s = events.stream();
    let (mut next, end) = s.bounds();
    let mut out = Vec::new();
    while next < end {
        let b = s.read(next, 1 << 20).await.unwrap();
        next = b.next;
        for r in b.records {
            let ev = switchyard_events::decode_event(&r.payload).expect("a stored event decodes");
            out.push(serde_json::to_value(&ev).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn a_batch_is_accepted_but_for_its_bad_events_which_become_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let events = Events::open(dir.path(), EventsConfig::default())
        .await
        .unwrap();
    let body = br#"[{"type":"track","id":"1","unit":"u","name":"buy"},
                    {"type":"track","unit":"u"},
                    {"type":"track","id":"1","unit":"u","name":"buy"}]"#;
    let r = events
        .ingest("p", "e", body, BodyFormat::Json, false, NOW)
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (1, 1));
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(
        (r.rejected[0].index, r.rejected[0].reason.code.as_str()),
        (1, "missing_field")
    );
    let dl = events
        .dead_letters(&DeadLetterFilter::default(), 100)
        .await
        .unwrap()
        .dead_letters;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].event.get(), r#"{"type":"track","unit":"u"}"#);
    assert_eq!(read_events(&events).await.len(), 1);
}

#[tokio::test]
async fn dead_letters_survive_a_restart_and_replay_once() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_event_bytes: 60,
        ..Limits::default()
    };
    let cfg = EventsConfig {
        limits: limits.clone(),
        ..EventsConfig::default()
    };
    {
        let events = Events::open(dir.path(), cfg.clone()).await.unwrap();
        let body = br#"[{"type":"track","unit":"u","name":"a-rather-long-event-name-here-that-exceeds-the-small-limit-set-above"},{"type":"nope","unit":"u"}]"#;
        let r = events
            .ingest("p", "e", body, BodyFormat::Json, false, NOW)
            .await
            .unwrap();
        assert_eq!(r.rejected.len(), 2);
    }
    // The limit is raised: one of the two now passes.
    let events = Events::open(dir.path(), EventsConfig::default())
        .await
        .unwrap();
    let all = DeadLetterFilter::default();
    assert_eq!(
        events
            .dead_letters(&all, 10)
            .await
            .unwrap()
            .dead_letters
            .len(),
        2
    );
    let report = events.replay(&all, 100, NOW).await.unwrap();
    assert_eq!(report.replayed, 1);
    assert_eq!(report.still_rejected.len(), 1);
    assert_eq!(report.still_rejected[0].reason.code, "invalid_type");
    let again = events.replay(&all, 100, NOW).await.unwrap();
    assert_eq!(again.replayed, 0, "a replayed letter is not replayed twice");
    drop(events);
    let events = Events::open(dir.path(), EventsConfig::default())
        .await
        .unwrap();
    assert_eq!(
        events
            .dead_letters(&all, 10)
            .await
            .unwrap()
            .dead_letters
            .len(),
        1
    );
    assert_eq!(read_events(&events).await.len(), 1);
}

#[tokio::test]
async fn gzip_and_ndjson_bodies_are_accepted_and_limits_answer_clear_errors() {
    let events = Events::in_memory(EventsConfig {
        limits: Limits {
            max_events: 3,
            max_body_bytes: 1000,
            ..Limits::default()
        },
        ..EventsConfig::default()
    })
    .await
    .unwrap();
    let nd = b"{\"type\":\"track\",\"unit\":\"u\",\"name\":\"n\"}\n{\"type\":\"track\",\"unit\":\"v\",\"name\":\"n\"}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(nd).unwrap();
    let gz = gz.finish().unwrap();
    let r = events
        .ingest("p", "e", &gz, BodyFormat::Ndjson, true, NOW)
        .await
        .unwrap();
    assert_eq!(r.accepted, 2);
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 100_000]).unwrap();
        gz.finish().unwrap()
    };
    assert!(matches!(
        events
            .ingest("p", "e", &bomb, BodyFormat::Json, true, NOW)
            .await,
        Err(IngestError::BodyTooLarge { max: 1000 })
    ));
    assert!(matches!(
        events
            .ingest("p", "e", b"[{},{},{},{}]", BodyFormat::Json, false, NOW)
            .await,
        Err(IngestError::TooManyEvents { max: 3 })
    ));
    assert!(matches!(
        events
            .ingest("p", "e", b"not gzip", BodyFormat::Json, true, NOW)
            .await,
        Err(IngestError::InvalidBody(_))
    ));
}

#[tokio::test]
async fn exposures_are_deduplicated_within_the_window_and_appended_in_batches() {
    let events = Events::in_memory(EventsConfig {
        exposures: ExposureConfig {
            linger: Duration::from_millis(10),
            ..ExposureConfig::default()
        },
        ..EventsConfig::default()
    })
    .await
    .unwrap();
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(NOW as u64);
    for _ in 0..3 {
        events.log_exposure("p", "e", "u1", "exp", 0, "a", at, None);
    }
    events.log_exposure("p", "e", "u2", "exp", 0, "b", at, None);
    // A new phase of the experiment counts the unit again.
    events.log_exposure("p", "e", "u1", "exp", 1, "a", at, None);
    events.close();
    let stored = read_events(&events).await;
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0]["experiment"], "exp");
    assert_eq!(stored[1]["variation"], "b");
    assert_eq!(stored[2]["unit"], "u1");
    assert_eq!(events.metrics().exposures_deduplicated.get(), 2);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let limits = Limits::default();
        for raws in [
            switchyard_events::schema::parse_json(&body, &limits),
            switchyard_events::schema::parse_ndjson(&body, &limits),
        ].into_iter().flatten() {
            for r in raws {
                let _ = r.validate(&limits, NOW);
                let _ = serde_json::from_str::<serde_json::Value>(&r.to_json()).expect("dead letters are JSON");
            }
        }
    }

    #[test]
    fn whatever_is_sent_the_log_holds_exactly_the_accepted_events(
        units in proptest::collection::vec(prop_oneof![
            Just(serde_json::json!("u")), Just(serde_json::json!(5)), Just(serde_json::json!("")),
            "\\PC{1,8}".prop_map(serde_json::Value::from), Just(serde_json::json!(null))], 0..20),
        noise in proptest::collection::vec(any::<u8>(), 0..50),
    ) {
        let evs: Vec<_> = units.iter().enumerate().map(|(i, u)| serde_json::json!(
            {"type": if i % 3 == 0 {"exposure"} else {"track"}, "unit": u, "name": "n",
             "experiment": "x", "variation": "v", "value": i})).collect();
        let mut body = serde_json::to_vec(&evs).unwrap();
        body.extend(noise.iter().filter(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r')));
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let events = Events::open(dir.path(), EventsConfig::default()).await.unwrap();
            let r = events.ingest("p", "e", &body, BodyFormat::Json, false, NOW).await.unwrap();
            prop_assert_eq!(r.accepted + r.rejected.len(), units.len());
            let stored = read_events(&events).await;
            prop_assert_eq!(stored.len(), r.accepted);
            let mut n = 0;
            switchyard_events::read_dir(&dir.path().join("log"), |_, p| {
                assert!(switchyard_events::decode_event(p).is_some());
                n += 1;
            }).unwrap();
            prop_assert_eq!(n, r.accepted);
            Ok(())
        })?;
    }
}
