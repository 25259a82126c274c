//! Parsing and validation of event batches.

use switchyard_events::record::{EncodedBatch, decode_event};
use switchyard_events::schema::{BatchError, Limits, parse_json, parse_ndjson};
use switchyard_events::{EventRef, KindRef};

const NOW: i64 = 1_767_225_600_000; // 2026-01-01

fn validate_all(body: &str) -> Vec<Result<EventRef<'_>, String>> {
    parse_json(body.as_bytes(), &Limits::default())
        .expect("batch parses")
        .iter()
        .map(|r| r.validate(&Limits::default(), NOW).map_err(|e| e.code))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|r| r.map(|e| EventRef { ..e }))
        .collect()
}

#[test]
fn a_valid_exposure_and_a_valid_track_event_are_accepted() {
    let body = r#"[
        {"type":"exposure","id":"a","unit":"u1","experiment":"exp","variation":"b","time":1767225600000},
        {"type":"track","unit":"u1","name":"purchase","value":12.5,"time":"2026-01-01T00:00:00Z","attributes":{"plan":"pro"},"extra":[1,2]}
    ]"#;
    let raws = parse_json(body.as_bytes(), &Limits::default()).unwrap();
    let a = raws[0].validate(&Limits::default(), NOW).unwrap();
    assert_eq!(a.id.as_deref(), Some("a"));
    assert_eq!(a.unit, "u1");
    assert!(matches!(a.kind, KindRef::Exposure { ref variation, .. } if variation == "b"));
    let t = raws[1].validate(&Limits::default(), NOW).unwrap();
    assert_eq!(t.time_ms, NOW);
    match t.kind {
        KindRef::Track {
            name,
            value,
            attributes,
        } => {
            assert_eq!(name, "purchase");
            assert_eq!(value, Some(12.5));
            assert_eq!(attributes, Some(r#"{"plan":"pro"}"#));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_bad_event_is_rejected_alone_with_a_reason() {
    let body = r#"[
        {"type":"track","unit":"u","name":"ok"},
        {"type":"track","unit":5,"name":"n"},
        {"type":"track","name":"n"},
        {"type":"exposure","unit":"u","variation":"v"},
        {"type":"track","unit":"u","name":"n","value":"12"},
        {"type":"track","unit":"u","name":"n","attributes":[1]},
        {"type":"click","unit":"u"},
        {"type":"track","unit":"u","name":"n","time":12},
        {"type":"track","unit":"u","unit":"v","name":"n"},
        42,
        [1,2],
        {"type":"track","unit":"","name":"n"}
    ]"#;
    let codes: Vec<_> = validate_all(body)
        .into_iter()
        .map(|r| r.err().unwrap_or_else(|| "ok".into()))
        .collect();
    assert_eq!(
        codes,
        [
            "ok",
            "invalid_type",
            "missing_field",
            "missing_field",
            "invalid_type",
            "invalid_type",
            "invalid_type",
            "invalid_time",
            "duplicate_field",
            "invalid_type",
            "invalid_type",
            "invalid_length"
        ]
    );
}

#[test]
fn escaped_strings_are_decoded_and_plain_ones_borrowed() {
    let body = r#"[{"type":"track","unit":"a\"b\u00e9","name":"plain"}]"#;
    let raws = parse_json(body.as_bytes(), &Limits::default()).unwrap();
    let ev = raws[0].validate(&Limits::default(), NOW).unwrap();
    assert_eq!(ev.unit, "a\"bé");
    match ev.kind {
        KindRef::Track { name, .. } => assert!(matches!(name, std::borrow::Cow::Borrowed("plain"))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_batch_may_be_wrapped_in_an_events_object() {
    let body = r#"{"sdk":"x","events":[{"type":"track","unit":"u","name":"n"}]}"#;
    assert_eq!(
        parse_json(body.as_bytes(), &Limits::default())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn syntax_errors_and_oversized_batches_reject_the_whole_batch() {
    let limits = Limits {
        max_events: 2,
        ..Limits::default()
    };
    assert!(matches!(
        parse_json(b"[{\"type\":", &limits),
        Err(BatchError::InvalidJson(_))
    ));
    assert!(matches!(
        parse_json(b"[{},{},{}]", &limits),
        Err(BatchError::TooManyEvents { max: 2 })
    ));
    assert!(matches!(
        parse_json(b"[\"\xff\"]", &limits),
        Err(BatchError::NotUtf8)
    ));
}

#[test]
fn an_event_larger_than_the_limit_is_rejected() {
    let limits = Limits {
        max_event_bytes: 64,
        ..Limits::default()
    };
    let body = format!(
        r#"[{{"type":"track","unit":"u","name":"n","attributes":{{"k":"{}"}}}}]"#,
        "x".repeat(100)
    );
    let raws = parse_json(body.as_bytes(), &limits).unwrap();
    assert_eq!(
        raws[0].validate(&limits, NOW).unwrap_err().code,
        "event_too_large"
    );
}

#[test]
fn an_ndjson_line_that_is_not_json_rejects_only_that_event() {
    let body = b"{\"type\":\"track\",\"unit\":\"u\",\"name\":\"n\"}\n{oops\n\n{\"type\":\"track\",\"unit\":\"v\",\"name\":\"n\"}\n";
    let raws = parse_ndjson(body, &Limits::default()).unwrap();
    assert_eq!(raws.len(), 3);
    assert!(raws[0].validate(&Limits::default(), NOW).is_ok());
    assert_eq!(
        raws[1].validate(&Limits::default(), NOW).unwrap_err().code,
        "invalid_json"
    );
    assert_eq!(raws[1].to_json(), "\"{oops\"");
    assert!(raws[2].validate(&Limits::default(), NOW).is_ok());
}

#[test]
fn a_rejected_event_keeps_its_recognised_fields_as_json() {
    let body = r#"[{"type":"track","unit":5,"name":"n","junk":true}]"#;
    let raws = parse_json(body.as_bytes(), &Limits::default()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&raws[0].to_json()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type":"track","unit":5,"name":"n"})
    );
}

#[test]
fn an_encoded_event_decodes_to_the_same_fields() {
    let body = r#"[{"type":"track","id":"i","unit":"u","name":"n","value":-1.5,"attributes":{"a":[1]}},
                   {"type":"exposure","unit":"u","flag":"f","variation":"on"}]"#;
    let raws = parse_json(body.as_bytes(), &Limits::default()).unwrap();
    let mut batch = EncodedBatch::default();
    for r in &raws {
        batch.push_event("p", "e", &r.validate(&Limits::default(), NOW).unwrap());
    }
    let mut at = 0;
    let mut out = Vec::new();
    for m in &batch.records {
        let rec = &batch.data[at..at + m.len as usize];
        at += m.len as usize;
        let ev = decode_event(&rec[8..]).unwrap();
        out.push(serde_json::to_value(&ev).unwrap());
    }
    assert_eq!(
        out[0],
        serde_json::json!({"type":"track","id":"i","project":"p","environment":"e","unit":"u",
            "time":NOW,"name":"n","value":-1.5,"attributes":{"a":[1]}})
    );
    assert_eq!(
        out[1],
        serde_json::json!({"type":"exposure","project":"p","environment":"e","unit":"u",
            "time":NOW,"flag":"f","variation":"on"})
    );
    assert!(batch.records[0].id.is_some() && batch.records[1].id.is_none());
}

#[test]
fn an_exposure_keeps_its_attributes_and_one_without_keeps_the_old_record_shape() {
    let body = r#"[{"type":"exposure","unit":"u","experiment":"x","variation":"on","attributes":{"country":"DE"}},
                   {"type":"exposure","unit":"u","experiment":"x","variation":"on"},
                   {"type":"exposure","unit":"u","experiment":"x","variation":"on","attributes":null},
                   {"type":"exposure","unit":"u","experiment":"x","variation":"on","attributes":[1]}]"#;
    let raws = parse_json(body.as_bytes(), &Limits::default()).unwrap();
    let results: Vec<_> = raws
        .iter()
        .map(|r| r.validate(&Limits::default(), NOW))
        .collect();
    assert_eq!(
        results[3].as_ref().unwrap_err().field.as_deref(),
        Some("attributes")
    );
    let mut batch = EncodedBatch::default();
    for r in results.iter().take(3) {
        batch.push_event("p", "e", r.as_ref().unwrap());
    }
    let mut at = 0;
    let mut out = Vec::new();
    for m in &batch.records {
        let rec = &batch.data[at..at + m.len as usize];
        at += m.len as usize;
        out.push((
            rec[8],
            serde_json::to_value(decode_event(&rec[8..]).unwrap()).unwrap(),
        ));
    }
    assert_eq!(out[0].1["attributes"], serde_json::json!({"country": "DE"}));
    assert_eq!(out[0].1["variation"], "on");
    // Kind 1, as before attributes existed: old logs read the same.
    assert_eq!(out[1].0, 1);
    assert_eq!(out[2].0, 1);
    assert!(out[1].1.get("attributes").is_none());
    assert_ne!(out[0].0, 1);
}
