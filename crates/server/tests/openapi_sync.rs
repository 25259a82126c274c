//! The OpenAPI document and the router agree, both ways:
//! - every path the route modules register (`.route("...")` in
//!   `src/routes/**`, with the prefix of the `.nest` that mounts them) is
//!   documented;
//! - every documented path is served with exactly the documented methods,
//!   as the running app reports them (`Allow` of a 405 answer to OPTIONS;
//!   an unrouted path is the fallback's 404 instead).
//!
//! Routes documented before their handler lands are listed in
//! [`NOT_YET_SERVED`]; the test fails as soon as one is served, so the list
//! only shrinks.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{Backend, start};
use serde_json::Value;

/// Documented, not yet registered by their module.
const NOT_YET_SERVED: &[&str] = &[];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document() -> Value {
    serde_json::from_str(switchyard_server::routes::control::OPENAPI_JSON)
        .expect("openapi.json is JSON")
}

fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("path item")
                .keys()
                .filter(|m| METHODS.contains(&m.as_str()))
                .map(|m| m.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// String literals following `marker` (whitespace allowed in between).
fn literals_after(source: &str, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let trimmed = rest.trim_start();
        if let Some(lit) = trimmed.strip_prefix('"')
            && let Some(end) = lit.find('"')
        {
            found.push(lit[..end].to_string());
        }
    }
    found
}

/// Every path registered under `src/routes`, with its nest prefix.
fn registered() -> BTreeSet<String> {
    let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    // `.nest("/api/v1", control::router())` in routes/mod.rs: module -> prefix.
    let mod_rs = std::fs::read_to_string(routes.join("mod.rs")).expect("routes/mod.rs");
    let mut prefixes = BTreeMap::new();
    for part in mod_rs.split(".nest(").skip(1) {
        if let Some((lit, rest)) = part
            .trim_start()
            .strip_prefix('"')
            .and_then(|p| p.split_once('"'))
            && let Some(module) = rest.trim_start_matches([',', ' ', '\n']).split("::").next()
        {
            prefixes.insert(module.trim().to_string(), lit.to_string());
        }
    }
    let mut files = Vec::new();
    rust_files(&routes, &mut files);
    let mut paths = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(&routes).expect("under routes");
        let module = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .unwrap_or_default();
        let prefix = prefixes.get(&module).cloned().unwrap_or_default();
        let source = std::fs::read_to_string(&file).expect("source");
        for lit in literals_after(&source, ".route(") {
            paths.insert(format!("{prefix}{lit}"));
        }
    }
    paths
}

#[test]
fn every_route_registered_in_the_source_is_documented() {
    let doc = documented(&document());
    let registered = registered();
    assert!(
        registered.contains("/api/v1/projects/{project}/flags/{flag}")
            && registered.contains("/healthz"),
        "the scan finds routes: {registered:?}"
    );
    let missing: Vec<_> = registered
        .iter()
        .filter(|p| !doc.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    for pending in NOT_YET_SERVED {
        assert!(
            !registered.contains(*pending),
            "{pending} is registered now: remove it from NOT_YET_SERVED"
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operation_ids_and_resolvable_refs() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: operationId"));
            assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            for name in path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split_once('}'))
                .map(|(n, _)| n)
            {
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(
                    declared,
                    "{method} {path}: path parameter {name} is declared"
                );
            }
        }
    }
    // Every $ref points at something.
    let text = doc.to_string();
    for r in literals_after(&text, "\"$ref\":") {
        let pointer = r.strip_prefix('#').expect("local ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
}

#[tokio::test]
async fn every_documented_path_is_served_with_exactly_the_documented_methods() {
    let server = start(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    let served: Value = client
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        served,
        document(),
        "the served document is the file, without auth"
    );

    for (path, methods) in documented(&document()) {
        // Any segment value routes the same way as a real key would.
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let r = client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}{concrete}", server.url),
            )
            .send()
            .await
            .unwrap();
        if NOT_YET_SERVED.contains(&path.as_str()) {
            assert_eq!(
                r.status(),
                404,
                "{path} is served now: remove it from NOT_YET_SERVED"
            );
            continue;
        }
        assert_eq!(
            r.status(),
            405,
            "{path} is routed (OPTIONS is answered by the method router)"
        );
        let allow: BTreeSet<String> = r
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_uppercase())
            .filter(|m| !m.is_empty() && m != "HEAD" && m != "OPTIONS")
            .collect();
        assert_eq!(allow, methods, "methods of {path}: served vs documented");
    }
    server.stop().await;
}
