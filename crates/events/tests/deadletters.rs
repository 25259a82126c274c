//! The dead-letter store: what is kept of a rejected event, paging with
//! bounded reads, and rendering that cannot fail whatever the log holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::value::RawValue;
use switchyard_events::stream::BoxFuture;
use switchyard_events::{
    Appended, BodyFormat, DeadLetterFilter, EncodedBatch, EventMetrics, EventStream, Events,
    EventsConfig, Limits, MemoryStream, ReadBatch, StreamError,
};

const NOW: i64 = 1_767_225_600_000;

/// A [`MemoryStream`] that counts the payload bytes read from it.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryStream,
    read: AtomicUsize,
}

impl EventStream for Counting {
    fn append(&self, batch: EncodedBatch) -> BoxFuture<'_, Result<Appended, StreamError>> {
        self.inner.append(batch)
    }
    fn read(&self, from: u64, max_bytes: usize) -> BoxFuture<'_, Result<ReadBatch, StreamError>> {
        Box::pin(async move {
            let b = self.inner.read(from, max_bytes).await?;
            let n: usize = b.records.iter().map(|r| r.payload.len()).sum();
            self.read.fetch_add(n, Ordering::Relaxed);
            Ok(b)
        })
    }
    fn commit(&self, consumer: &str, next: u64) -> BoxFuture<'_, Result<(), StreamError>> {
        self.inner.commit(consumer, next)
    }
    fn committed(&self, consumer: &str) -> BoxFuture<'_, Result<Option<u64>, StreamError>> {
        self.inner.committed(consumer)
    }
    fn bounds(&self) -> (u64, u64) {
        self.inner.bounds()
    }
}

async fn with_dead_letters(dead: Arc<dyn EventStream>, limits: Limits) -> Events {
    Events::with_streams(
        Arc::new(MemoryStream::default()),
        dead,
        limits,
        Default::default(),
        Arc::new(EventMetrics::new()),
    )
    .await
    .unwrap()
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn attributes_nested_deeper_than_the_limit_are_rejected_as_too_deep() {
    let events = Events::in_memory(EventsConfig::default()).await.unwrap();
    let ok = format!(r#"{{"a":{}}}"#, nested(31));
    let deep = format!(r#"{{"a":{}}}"#, nested(32));
    let body = format!(
        r#"[{{"type":"track","unit":"u","name":"n","attributes":{ok}}},
            {{"type":"track","unit":"u","name":"n","attributes":{deep}}}]"#
    );
    let r = events
        .ingest("p", "e", body.as_bytes(), BodyFormat::Json, false, NOW)
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].index, 1);
    assert_eq!(r.rejected[0].reason.code, "too_deep");
    assert_eq!(r.rejected[0].reason.field.as_deref(), Some("attributes"));
}

#[tokio::test]
async fn a_letter_nested_thousands_deep_is_listed_and_serialised_as_it_was_sent() {
    let events = Events::in_memory(EventsConfig::default()).await.unwrap();
    let deep = nested(5000);
    let body = format!(r#"{{"type":"track","unit":{deep}}}"#);
    let r = events
        .ingest("p", "e", body.as_bytes(), BodyFormat::Ndjson, false, NOW)
        .await
        .unwrap();
    assert_eq!(r.rejected.len(), 1);
    let page = events
        .dead_letters(&DeadLetterFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(page.dead_letters.len(), 1);
    let json = serde_json::to_string(&page).unwrap();
    assert!(json.contains(&deep), "the event is written out verbatim");
    serde_json::from_str::<&RawValue>(&json).expect("the page is JSON");
}

#[tokio::test]
async fn listing_one_letter_reads_one_read_batch_not_the_whole_log() {
    let dead = Arc::new(Counting::default());
    let events = with_dead_letters(dead.clone(), Limits::default()).await;
    let bad = format!(
        r#"{{"type":"track","unit":"u","padding":0,"name":5,"attributes":{{"x":"{}"}}}}"#,
        "y".repeat(1000)
    );
    for i in 0..40 {
        let body = vec![bad.replace("\"padding\":0", &format!("\"id\":\"{i}\"")); 100].join("\n");
        let r = events
            .ingest("p", "e", body.as_bytes(), BodyFormat::Ndjson, false, NOW)
            .await
            .unwrap();
        assert_eq!(r.rejected.len(), 100);
    }
    let page = events
        .dead_letters(&DeadLetterFilter::default(), 1)
        .await
        .unwrap();
    assert_eq!(page.dead_letters.len(), 1);
    let read = dead.read.swap(0, Ordering::Relaxed);
    let (mut next, end) = dead.bounds();
    while next < end {
        next = dead.read(next, 1 << 20).await.unwrap().next;
    }
    let total = dead.read.load(Ordering::Relaxed);
    assert!(total > 4_000_000, "the log holds about 4 MB ({total})");
    assert!(
        read <= 300 * 1024,
        "listing one letter read {read} bytes of a {total}-byte log"
    );
}

#[tokio::test]
async fn pages_follow_each_other_without_gaps_or_repeats_on_the_durable_log() {
    let dir = tempfile::tempdir().unwrap();
    let events = Events::open(dir.path(), EventsConfig::default())
        .await
        .unwrap();
    for i in 0..7 {
        let body = format!(r#"[{{"type":"track","unit":"u{i}"}}]"#);
        events
            .ingest("p", "e", body.as_bytes(), BodyFormat::Json, false, NOW)
            .await
            .unwrap();
    }
    let mut filter = DeadLetterFilter::default();
    let mut units = Vec::new();
    let mut pages = 0;
    loop {
        let page = events.dead_letters(&filter, 3).await.unwrap();
        pages += 1;
        for l in &page.dead_letters {
            let ev: serde_json::Value = serde_json::from_str(l.event.get()).unwrap();
            units.push(ev["unit"].as_str().unwrap().to_string());
        }
        match page.next {
            Some(n) => filter.from = n,
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    let want: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
    assert_eq!(units, want);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn a_letter_over_the_stored_size_is_kept_cut_and_marked_and_is_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let events = Events::open(dir.path(), EventsConfig::default())
        .await
        .unwrap();
    // Two megabytes on one NDJSON line that is not JSON: more than a log
    // record holds.
    let line = format!(
        "{{\"type\":\"track\",\"unit\":\"u\",\"name\":\"{}",
        "é".repeat(1 << 20)
    );
    let r = events
        .ingest("p", "e", line.as_bytes(), BodyFormat::Ndjson, false, NOW)
        .await
        .unwrap();
    assert_eq!(r.rejected.len(), 1);
    let all = DeadLetterFilter::default();
    let page = events.dead_letters(&all, 10).await.unwrap();
    assert_eq!(page.dead_letters.len(), 1, "the letter is stored");
    let l = &page.dead_letters[0];
    assert_eq!(l.reason.code, "invalid_json");
    assert!(
        l.truncated.is_some_and(|n| n > 2 << 20),
        "{:?}",
        l.truncated
    );
    let kept: String = serde_json::from_str(l.event.get()).unwrap();
    let max = switchyard_events::deadletter::MAX_STORED_EVENT;
    assert!(kept.len() <= max && kept.len() > max - 4, "{}", kept.len());
    // The first bytes of the stored text (for a line that is not JSON,
    // that text is the line as a JSON string).
    assert!(serde_json::to_string(&line).unwrap().starts_with(&kept));
    let report = events.replay(&all, 10, NOW).await.unwrap();
    assert_eq!(report.replayed, 0);
    assert_eq!(report.still_rejected.len(), 1);
    assert_eq!(report.still_rejected[0].reason.code, "truncated");
}

#[tokio::test]
async fn a_letter_rejected_for_a_repeated_field_keeps_both_and_stays_rejected_on_replay() {
    let events = Events::in_memory(EventsConfig::default()).await.unwrap();
    let body = br#"[{"type":"track","unit":"u","name":"a","name":"b"}]"#;
    let r = events
        .ingest("p", "e", body, BodyFormat::Json, false, NOW)
        .await
        .unwrap();
    assert_eq!(r.rejected[0].reason.code, "duplicate_field");
    let all = DeadLetterFilter::default();
    let page = events.dead_letters(&all, 10).await.unwrap();
    assert_eq!(
        page.dead_letters[0].event.get(),
        r#"{"type":"track","unit":"u","name":"a","name":"b"}"#
    );
    let report = events.replay(&all, 10, NOW).await.unwrap();
    assert_eq!(report.replayed, 0);
    assert_eq!(report.still_rejected[0].reason.code, "duplicate_field");
}

#[tokio::test]
async fn replay_goes_through_more_letters_than_one_page_and_says_where_it_stopped() {
    let events = Events::in_memory(EventsConfig::default()).await.unwrap();
    let body: Vec<String> = (0..2500)
        .map(|i| format!(r#"{{"type":"track","unit":"u{i}","name":"n","time":5}}"#))
        .collect();
    let r = events
        .ingest(
            "p",
            "e",
            body.join("\n").as_bytes(),
            BodyFormat::Ndjson,
            false,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(r.rejected.len(), 2500);
    let all = DeadLetterFilter::default();
    let report = events.replay(&all, 2200, NOW).await.unwrap();
    assert_eq!(report.still_rejected.len(), 2200);
    let rest = DeadLetterFilter {
        from: report.next.expect("letters are left"),
        ..DeadLetterFilter::default()
    };
    let report = events.replay(&rest, 2200, NOW).await.unwrap();
    assert_eq!(report.still_rejected.len(), 300);
    assert_eq!(report.next, None);
}

/// Arbitrary JSON, possibly very deep.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\\PC{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    let tree = leaf.prop_recursive(6, 40, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("\\PC{0,4}", inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    });
    (tree, 0usize..3000)
        .prop_map(|(t, depth)| format!("{}{t}{}", "[".repeat(depth), "]".repeat(depth)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever bytes the dead-letter log holds (letters of any event, any
    /// depth, or records that are not letters at all), listing answers a
    /// page and the page serialises to JSON.
    #[test]
    fn listing_and_rendering_never_fail_whatever_the_log_holds(
        raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 0..4),
        fields in proptest::collection::vec(("(type|unit|name|id|time|attributes|value)", json_text()), 0..5),
        ndjson in any::<bool>(),
    ) {
        runtime().block_on(async {
            let dead = Arc::new(MemoryStream::default());
            let mut batch = EncodedBatch::default();
            for r in &raw {
                batch.push_raw(r, None);
            }
            dead.append(batch).await.unwrap();
            let events = with_dead_letters(dead, Limits::default()).await;
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let body = format!("{{{}}}", fields.join(","));
            let (format, body) = if ndjson {
                (BodyFormat::Ndjson, body)
            } else {
                (BodyFormat::Json, format!("[{body}]"))
            };
            let _ = events.ingest("p", "e", body.as_bytes(), format, false, NOW).await;
            let page = events.dead_letters(&DeadLetterFilter::default(), 100).await.unwrap();
            prop_assert!(page.dead_letters.len() >= raw.len());
            let json = serde_json::to_vec(&page).unwrap();
            prop_assert!(serde_json::from_slice::<&RawValue>(&json).is_ok());
            let _ = events.replay(&DeadLetterFilter::default(), 100, NOW).await.unwrap();
            Ok(())
        })?;
    }
}
