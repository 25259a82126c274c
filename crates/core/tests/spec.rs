//! Runs the frozen evaluation corpora `spec/eval/v1` and `spec/eval/v2`
//! (v1 plus the experiment lifecycle) against the evaluator.
//! Every case file is read; a case that fails is reported with its file and
//! name, and all failures are listed before the test fails.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::bucket::{Salted, bucket, murmur3_x86_32};
use switchyard_core::{ConfigDocument, Context, compile};

/// Every published corpus version; each must pass whole.
const VERSIONS: [&str; 2] = ["v1", "v2"];

fn corpus_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../spec/eval")
        .join(version)
}

#[derive(Deserialize)]
struct CaseFile {
    config: ConfigDocument,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    flag: String,
    context: Value,
    expected: Value,
}

#[derive(Deserialize)]
struct InvalidFile {
    cases: Vec<InvalidCase>,
}

#[derive(Deserialize)]
struct InvalidCase {
    name: String,
    config: Value,
    error_contains: Vec<String>,
}

fn case_files(version: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(version))
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

#[test]
fn every_corpus_case_evaluates_to_its_hand_derived_result() {
    for version in VERSIONS {
        corpus_cases_pass(version);
    }
}

fn corpus_cases_pass(version: &str) {
    let files = case_files(version);
    assert!(
        files.len() >= 10,
        "expected the corpus files, found {files:?}"
    );
    let mut failures = Vec::new();
    let mut count = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable case file");
        let file: CaseFile = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: cannot parse: {e}", path.display()));
        let evaluator = compile(&file.config)
            .unwrap_or_else(|e| panic!("{}: config does not compile: {e}", path.display()));
        for case in &file.cases {
            count += 1;
            let ctx = Context::from_value(case.context.clone())
                .unwrap_or_else(|e| panic!("{}: {}: bad context: {e}", path.display(), case.name));
            let e = evaluator.evaluate(&case.flag, &ctx);
            let got = json!({
                "value": e.value,
                "variant": e.variant,
                "reason": e.reason,
                "error_code": e.error_code,
                "rule": e.rule,
                "exposure": e.exposure,
            });
            if got != case.expected {
                failures.push(format!(
                    "{version}/{} / {}:\n  expected {}\n  got      {}",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    case.name,
                    case.expected,
                    got
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

#[test]
fn every_invalid_corpus_config_is_rejected_naming_entity_and_field() {
    for version in VERSIONS {
        invalid_configs_are_rejected(version);
    }
}

fn invalid_configs_are_rejected(version: &str) {
    let text = std::fs::read_to_string(corpus_dir(version).join("invalid-configs.json"))
        .expect("invalid-configs.json exists");
    let file: InvalidFile = serde_json::from_str(&text).expect("parses");
    let mut failures = Vec::new();
    for case in &file.cases {
        let outcome = serde_json::from_value::<ConfigDocument>(case.config.clone())
            .map_err(|e| e.to_string())
            .and_then(|doc| compile(&doc).map(|_| ()).map_err(|e| e.to_string()));
        match outcome {
            Ok(()) => failures.push(format!("{}: compiled, expected an error", case.name)),
            Err(msg) => {
                for want in &case.error_contains {
                    if !msg.contains(want.as_str()) {
                        failures.push(format!("{}: error {msg:?} lacks {want:?}", case.name));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{version}: {}", failures.join("\n"));
}

#[derive(Deserialize)]
struct Vectors {
    murmur3: Vec<HashVector>,
    buckets: Vec<BucketVector>,
}

#[derive(Deserialize)]
struct HashVector {
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    hex: Option<String>,
    seed: u32,
    expected: u32,
}

#[derive(Deserialize)]
struct BucketVector {
    salt: String,
    unit: String,
    bucket: u32,
}

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn murmur3_and_bucket_vectors_match() {
    for version in VERSIONS {
        vectors_match(version);
    }
}

fn vectors_match(version: &str) {
    let text = std::fs::read_to_string(corpus_dir(version).join("murmur3-vectors.json"))
        .expect("murmur3-vectors.json exists");
    let v: Vectors = serde_json::from_str(&text).expect("parses");
    assert!(!v.murmur3.is_empty() && !v.buckets.is_empty());
    for h in &v.murmur3 {
        let bytes = match (&h.hex, &h.input) {
            (Some(hex), _) => from_hex(hex),
            (None, Some(s)) => s.as_bytes().to_vec(),
            (None, None) => panic!("vector without input"),
        };
        assert_eq!(
            murmur3_x86_32(&bytes, h.seed),
            h.expected,
            "{:?}/{:?}",
            h.input,
            h.hex
        );
    }
    for b in &v.buckets {
        assert_eq!(bucket(&b.salt, &b.unit), b.bucket, "{}/{}", b.salt, b.unit);
        // What compiled splits and experiments use: the salt hashed once.
        assert_eq!(
            Salted::new(&b.salt).bucket(&b.unit),
            b.bucket,
            "{}/{}",
            b.salt,
            b.unit
        );
    }
}
