//! The frozen evaluation corpus `spec/eval/v1`, case by case, through the
//! SDK's public API only: a client per case file built from the file's
//! configuration, `json_details` for value, variant, reason, error and
//! rule, and the client's event queue for whether an exposure was logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_sdk::{Client, Context};

#[derive(Deserialize)]
struct CaseFile {
    config: Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    flag: String,
    context: Value,
    expected: Value,
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/eval/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the corpus directory exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.extension().is_some_and(|x| x == "json")
                && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        })
        .collect();
    files.sort();
    files
}

/// A client that serves `config` and queues exposures (to a server that
/// is never reached: port 9 on loopback refuses), so the queue shows
/// whether an evaluation logged one.
fn client(config: &Value) -> Client {
    Client::builder("http://127.0.0.1:9", "sdk-spec-test")
        .bootstrap_json(config.to_string())
        .streaming(false)
        .poll_interval(Duration::from_secs(3600))
        .event_batching(10_000, Duration::from_secs(3600))
        .close_timeout(Duration::ZERO)
        .build()
        .expect("the corpus configuration loads")
}

#[test]
fn every_v1_case_passes_through_the_public_api() {
    let files = case_files();
    assert!(files.len() >= 10, "expected the corpus, found {files:?}");
    let mut failures = Vec::new();
    let mut count = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable case file");
        let file: CaseFile = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: cannot parse: {e}", path.display()));
        for case in &file.cases {
            count += 1;
            // A fresh client per case: exposure deduplication must not
            // hide one case's exposure behind another's.
            let client = client(&file.config);
            let ctx = Context::from_value(case.context.clone())
                .unwrap_or_else(|e| panic!("{}: bad context: {e}", case.name));
            let queued = client.event_stats().pending;
            let d = client.json_details(&case.flag, &ctx, Value::Null);
            let exposed = client.event_stats().pending > queued;
            let got = json!({
                "value": d.value,
                "variant": d.variant,
                "reason": d.reason,
                "error_code": d.error,
                "rule": d.rule,
            });
            let mut want = case.expected.clone();
            let want_exposure = want
                .as_object_mut()
                .and_then(|o| o.remove("exposure"))
                .is_some_and(|x| !x.is_null());
            if got != want || exposed != want_exposure {
                failures.push(format!(
                    "{} / {}:\n  expected {} (exposure: {want_exposure})\n  got      {got} (exposure: {exposed})",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    case.name,
                    want,
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count >= 100, "only {count} cases in the corpus");
}
