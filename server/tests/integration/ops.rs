//! What operators and tools rely on: liveness, readiness, metrics, and an OpenAPI
//! document that describes every route the router serves.

use crate::backends::{TestStore, conformance};
use crate::serving::TestServer;
use reqwest::Method;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The router's table, read from its source: `(method, path)` for every `.route(…)`.
fn served_routes() -> BTreeSet<(String, String)> {
    const METHODS: &[&str] = &["get", "post", "put", "delete", "patch", "head", "options"];
    let source = include_str!("../../src/http/mod.rs");
    let mut routes = BTreeSet::new();
    for (start, _) in source.match_indices(".route(") {
        // The call's text, up to its closing parenthesis.
        let mut depth = 0;
        let call: String = source[start + ".route".len()..]
            .chars()
            .take_while(|&c| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth > 0
            })
            .collect();
        let path = call.split('"').nth(1).unwrap().to_owned();
        let rest = call.splitn(3, '"').nth(2).unwrap();
        let mut methods = 0;
        for (at, _) in rest.match_indices('(') {
            let before = &rest[..at];
            let word_start = before
                .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .map_or(0, |i| i + 1);
            let word = &before[word_start..];
            let qualified = before[..word_start].ends_with("::");
            if METHODS.contains(&word) && !qualified {
                routes.insert((word.to_owned(), path.clone()));
                methods += 1;
            }
        }
        assert!(methods > 0, "no method found for {path} in {call:?}");
    }
    assert!(
        routes.len() > 10,
        "the route table did not parse: {routes:?}"
    );
    routes
}

/// `/healthz` and `/readyz` answer; `/metrics` names the server's series; the OpenAPI
/// document lists exactly the routes served, and each of them is served.
async fn operators_see_health_metrics_and_every_route(t: TestStore) {
    let server = TestServer::start(t).await;
    let health = server.get("/healthz", None).await;
    health.expect(200);
    assert_eq!(health.body, b"ok");
    let ready = server.get("/readyz", None).await;
    ready.expect(200);
    assert_eq!(ready.body, b"ready");
    // Labelled families (syncs by outcome, rejections by code) appear with their
    // first sample; the attacker's stories check those.
    let metrics = server.metrics().await;
    for family in [
        "linli_sync_duration_seconds",
        "linli_sync_request_bytes",
        "linli_receipts",
        "linli_live_listeners",
        "linli_document_cache_entries",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family} missing from:\n{metrics}"
        );
    }

    let answer = server.get("/api/openapi.json", None).await;
    answer.expect(200);
    let doc = answer.json();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let served = served_routes();
    assert_eq!(
        documented, served,
        "the OpenAPI document and the router differ"
    );

    // Each route is served: a request reaches its handler (which refuses it), not the
    // router's "no such route" (404 without a body) or "wrong method" (405).
    let id = Uuid::now_v7().to_string();
    for (method, path) in &served {
        let concrete = path
            .split('/')
            .map(|part| {
                if part.starts_with('{') {
                    id.as_str()
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let answer = server.call(method.clone(), &concrete, None, None).await;
        let missing = answer.status == 405 || (answer.status == 404 && answer.body.is_empty());
        assert!(!missing, "{method} {concrete}: {answer:?}");
    }
    let nowhere = server.get("/api/v1/nowhere", None).await;
    assert!(nowhere.status == 404 && nowhere.body.is_empty());
    server.stop().await;
}

conformance!(operators_see_health_metrics_and_every_route);
