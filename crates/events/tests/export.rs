//! Raw events out: the chunked reader over a stream and the reader of a log
//! directory give the same lines, filtered by environment and time.

use switchyard_events::export::{CHUNK_BYTES, export_dir};
use switchyard_events::{BodyFormat, Events, EventsConfig, Export, ExportFilter};

const NOW: i64 = 1_767_225_600_000;

#[tokio::test]
async fn an_export_reads_chunk_by_chunk_and_matches_the_directory_reader() {
    let dir = tempfile::tempdir().unwrap();
    let events = Events::open(dir.path(), EventsConfig::default())
        .await
        .unwrap();
    let pad = "y".repeat(2000);
    for env in ["prod", "dev"] {
        let body: Vec<String> = (0..1500)
            .map(|i| {
                format!(
                    r#"{{"type":"track","id":"{env}{i}","unit":"u","name":"n","time":{},"attributes":{{"p":"{pad}"}}}}"#,
                    NOW - 10_000 + i
                )
            })
            .collect();
        let r = events
            .ingest(
                "p",
                env,
                body.join("\n").as_bytes(),
                BodyFormat::Ndjson,
                false,
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(r.accepted, 1500);
    }
    let filter = ExportFilter {
        project: "p".into(),
        environment: "prod".into(),
        from_ms: Some(NOW - 10_000 + 100),
        to_ms: None,
    };
    let mut export = Export::new(events.stream().as_ref(), filter.clone());
    let mut streamed = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = export.next_chunk(events.stream().as_ref()).await.unwrap() {
        assert!(chunk.len() <= 2 * CHUNK_BYTES, "a chunk is bounded");
        streamed.extend(chunk);
        chunks += 1;
    }
    assert!(chunks >= 6, "{chunks} chunks for about 6 MB");
    assert_eq!(export.events, 1400);
    let mut from_dir = Vec::new();
    let n = export_dir(&dir.path().join("log"), &filter, &mut from_dir).unwrap();
    assert_eq!(n, 1400);
    assert_eq!(streamed, from_dir);
    let first: serde_json::Value =
        serde_json::from_slice(streamed.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["id"], "prod100");
    assert_eq!(first["time"], NOW - 10_000 + 100);
}
