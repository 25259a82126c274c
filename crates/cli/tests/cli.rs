//! The binary as a user runs it: `eval`, `analyze`, `version`, and bad input.

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_prints_the_package_version() {
    let out = bin().arg("version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("switchyard {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn eval_prints_one_flag_with_value_variant_and_reason() {
    let doc = serde_json::json!({
        "flags": [{
            "key": "beta", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "enabled": true, "off_variation": "off",
            "rules": [{"conditions": [{"attribute": "country", "op": "in", "value": ["DE"]}],
                       "serve": {"variation": "on"}}],
            "fallthrough": {"variation": "off"}
        }]
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let out = bin()
        .args(["eval", "--config"])
        .arg(&path)
        .args([
            "--context",
            r#"{"targetingKey":"u1","country":"DE"}"#,
            "--flag",
            "beta",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["value"], true);
    assert_eq!(v["variant"], "on");
    assert_eq!(v["reason"], "TARGETING_MATCH");

    // Every flag when --flag is absent.
    let out = bin()
        .args(["eval", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["reason"], "DEFAULT");
}

#[test]
fn eval_names_the_error_code_errorcode_as_every_http_answer_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"flags": []}"#).unwrap();
    let out = bin()
        .args(["eval", "--config"])
        .arg(&path)
        .args(["--flag", "ghost"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reason"], "ERROR", "{v}");
    assert_eq!(v["errorCode"], "FLAG_NOT_FOUND", "{v}");
    assert!(v.get("error_code").is_none(), "{v}");
}

#[test]
fn eval_rejects_an_invalid_document_naming_the_flag_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"flags":[{"key":"f","type":"boolean","variations":[{"key":"on","value":"yes"}],
            "enabled":true,"off_variation":"on","fallthrough":{"variation":"on"}}]}"#,
    )
    .unwrap();
    let out = bin()
        .args(["eval", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"f\"") && err.contains("variations[0].value"),
        "{err}"
    );
}

#[test]
fn analyze_reads_stdin_and_reports_effects_and_srm() {
    let doc = std::fs::read_to_string(repo("spec/stats/cases.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let input = cases["cases"][0]["request"].to_string();
    let mut child = bin()
        .arg("analyze")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["metrics"].as_array().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(v["srm"]["p_value"].is_number(), "{v}");
}

#[test]
fn analyze_rejects_a_bad_document_with_the_field_named() {
    let mut child = bin()
        .arg("analyze")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"variations": []}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("variations"));
}

#[test]
fn the_documented_example_configuration_compiles_and_matches_the_doc() {
    // docs/example-config.json is the document shown in docs/evaluation.md.
    let doc = std::fs::read_to_string(repo("docs/evaluation.md")).unwrap();
    let start = doc.find("```json\n").unwrap() + 8;
    let end = start + doc[start..].find("```").unwrap();
    let shown: serde_json::Value = serde_json::from_str(&doc[start..end]).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("docs/example-config.json")).unwrap())
            .unwrap();
    assert_eq!(shown, file, "docs/example-config.json differs from the doc");
    let out = bin()
        .args(["eval", "--config", &repo("docs/example-config.json")])
        .args([
            "--context",
            r#"{"targetingKey":"u-9","email":"a@example.com"}"#,
        ])
        .args(["--flag", "new-checkout"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reason"], "TARGETING_MATCH");
    assert_eq!(v["variant"], "on");
}

#[test]
fn admin_key_creates_a_working_key_in_an_existing_store_and_refuses_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    // No store yet: a clear error, nothing created.
    let out = bin()
        .args(["admin-key", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no config store"));
    assert!(!dir.path().join("config.db").exists());

    // Create the store as `serve` would, then a viewer key through the CLI.
    let url = format!("sqlite://{}", dir.path().join("config.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = switchyard_store::open(&url).await.unwrap();
        switchyard_store::bootstrap(store.as_ref(), false)
            .await
            .unwrap();
    });
    let out = bin()
        .args([
            "admin-key",
            "--role",
            "viewer",
            "--name",
            "ci",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    rt.block_on(async {
        let store = switchyard_store::open(&url).await.unwrap();
        let key = store
            .authenticate(&secret)
            .await
            .unwrap()
            .expect("key works");
        assert_eq!(key.name, "ci");
        assert_eq!(
            key.kind,
            switchyard_store::ApiKeyKind::Admin(switchyard_store::Role::Viewer)
        );
    });
}

#[test]
fn events_export_prints_the_stored_events_of_one_environment_as_ndjson() {
    let data = tempfile::tempdir().unwrap();
    let now = 1_767_225_600_000i64;
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let events = switchyard_events::Events::open(
                &data.path().join("events"),
                switchyard_events::EventsConfig::default(),
            )
            .await
            .unwrap();
            for (env, t) in [
                ("production", now),
                ("production", now + 1000),
                ("staging", now),
            ] {
                let body = format!(r#"[{{"type":"track","unit":"u","name":"buy","time":{t}}}]"#);
                let body = body.as_bytes();
                let fmt = switchyard_events::BodyFormat::Json;
                let r = events
                    .ingest("demo", env, body, fmt, false, now)
                    .await
                    .unwrap();
                assert_eq!(r.accepted, 1);
            }
        });
    let out = bin()
        .args([
            "events",
            "export",
            "--project",
            "demo",
            "--environment",
            "production",
        ])
        .args(["--to", "2026-01-01T00:00:01Z", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["environment"], "production");
    assert_eq!(lines[0]["time"], now);
    let bad = bin()
        .args([
            "events",
            "export",
            "--project",
            "demo",
            "--environment",
            "production",
        ])
        .args(["--from", "soon", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--from"));
}

#[test]
fn user_add_creates_a_user_who_signs_in_with_the_printed_or_given_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("config.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = switchyard_store::open(&url).await.unwrap();
        switchyard_store::bootstrap(store.as_ref(), false)
            .await
            .unwrap();
    });
    // A generated password, printed once on stdout.
    let out = bin()
        .args(["user", "add", "--admin", "Ann@Example.com", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(generated.len(), 20, "{generated}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&generated));

    // A password from stdin: too short is refused, a good one is taken.
    let add_bob = |password: &str| {
        let mut child = bin()
            .args(["user", "add", "--password-stdin", "--role", "editor"])
            .args(["bob@example.com", "--data-dir"])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = add_bob("short");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10 characters"));
    let out = add_bob("a good long password");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "a given password is not printed");
    // The same email again: refused.
    let out = add_bob("a good long password");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    rt.block_on(async {
        let store = switchyard_store::open(&url).await.unwrap();
        let ann = store
            .check_login("ann@example.com", &generated)
            .await
            .unwrap()
            .expect("the printed password works");
        assert_eq!(ann.role, switchyard_store::Role::Admin);
        let bob = store
            .check_login("bob@example.com", "a good long password")
            .await
            .unwrap()
            .expect("the given password works");
        assert_eq!(bob.role, switchyard_store::Role::Editor);
    });
}
