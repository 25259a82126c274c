//! The ingestion hot path: parse + validate + encode a batch of 500 events
//! (against serde_json's parse of the same bytes into borrowed structs, the
//! floor), and a durable log append of such a batch.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchyard_events::log::{EventLog, LogConfig};
use switchyard_events::record::EncodedBatch;
use switchyard_events::schema::{Limits, parse_json};
use switchyard_events::{EventStream, LogMetrics};

const NOW: i64 = 1_767_225_600_000;

/// A batch as the load generator sends it.
pub fn sample_batch(n: usize, seed: usize) -> Vec<u8> {
    let mut out = String::from("[");
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let k = seed * n + i;
        if i % 5 == 0 {
            out.push_str(&format!(
                r#"{{"type":"exposure","id":"ev-{k}","unit":"user-{u}","experiment":"checkout","flag":"new-checkout","variation":"v{v}","time":{NOW}}}"#,
                u = k % 100_000,
                v = k % 2
            ));
        } else {
            out.push_str(&format!(
                r#"{{"type":"track","id":"ev-{k}","unit":"user-{u}","name":"purchase","value":{val}.5,"time":{NOW},"attributes":{{"plan":"pro"}}}}"#,
                u = k % 100_000,
                val = k % 100
            ));
        }
    }
    out.push(']');
    out.into_bytes()
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Plain<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    id: Option<&'a str>,
    unit: &'a str,
    time: Option<i64>,
    experiment: Option<&'a str>,
    flag: Option<&'a str>,
    variation: Option<&'a str>,
    name: Option<&'a str>,
    value: Option<f64>,
    #[serde(borrow)]
    attributes: Option<&'a serde_json::value::RawValue>,
}

fn bench(c: &mut Criterion) {
    let body = sample_batch(500, 1);
    let limits = Limits::default();
    let mut g = c.benchmark_group("batch_500");
    g.throughput(Throughput::Elements(500));
    g.bench_function("serde_json_borrowed_parse", |b| {
        b.iter(|| {
            let v: Vec<Plain<'_>> = serde_json::from_slice(black_box(&body)).unwrap_or_default();
            black_box(v.len())
        })
    });
    g.bench_function("parse_validate_encode", |b| {
        b.iter(|| {
            let raws = parse_json(black_box(&body), &limits).unwrap_or_default();
            let mut batch = EncodedBatch::with_capacity(body.len(), raws.len());
            for r in &raws {
                if let Ok(ev) = r.validate(&limits, NOW) {
                    batch.push_event("demo", "production", &ev);
                }
            }
            black_box(batch.data.len())
        })
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let log = EventLog::open(
        dir.path(),
        LogConfig {
            dedup_ids: 1_000_000,
            retention_bytes: Some(256 << 20),
            segment_bytes: 32 << 20,
            ..LogConfig::default()
        },
        LogMetrics::default(),
    )
    .unwrap_or_else(|e| panic!("open: {e}"));
    let raws = parse_json(&body, &limits).unwrap_or_default();
    let mut encoded = EncodedBatch::default();
    for r in &raws {
        if let Ok(mut ev) = r.validate(&limits, NOW) {
            ev.id = None; // no dedup: every append writes
            encoded.push_event("demo", "production", &ev);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    g.bench_function("durable_append_one_request", |b| {
        b.iter(|| rt.block_on(log.append(encoded.clone())).map(|a| a.written))
    });
    g.bench_function("durable_append_16_concurrent_requests", |b| {
        b.iter(|| {
            rt.block_on(async {
                let fs: Vec<_> = (0..16).map(|_| log.append(encoded.clone())).collect();
                for f in fs {
                    let _ = f.await;
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
