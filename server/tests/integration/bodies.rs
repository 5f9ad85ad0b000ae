//! Request bodies the server must refuse cleanly: malformed, truncated and oversized
//! sync envelopes, and malformed JSON. Always a 4xx with a JSON error (413 may be
//! plain), never a 5xx, nothing stored, and the server answers normally afterwards.

use crate::backends::{TestStore, conformance};
use crate::phone::Failure;
use crate::serving::{Answer, sample};
use crate::world::{Scene, scene_with_limits, stored};
use reqwest::Method;
use serde_json::json;
use server::http::HttpLimits;
use sync_core::protocol::envelope::SyncResponse;

const MAX_BODY: usize = 256 * 1024;

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Sync bodies that are not sync requests get 400 `malformed`; a body above the limit
/// gets 413. Nothing is stored or quarantined, and the real request then goes through.
async fn malformed_sync_bodies_are_refused(t: TestStore) {
    let limits = HttpLimits {
        max_body: MAX_BODY,
        ..HttpLimits::default()
    };
    let Scene {
        w, resident, mut v, ..
    } = scene_with_limits(t, limits).await;
    let visit = v.log_visit(resident, "截断的请求");
    let real = v.replica.prepare(server::now_ms()).unwrap().encode();
    assert!(real.len() > 100, "the request carries the visit");
    let before = stored(&w.server, resident).await;

    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for n in 0..real.len() {
        bodies.push((format!("the first {n} bytes"), real[..n].to_vec()));
    }
    let mut random = XorShift(0x5eed_1234_abcd_ef01);
    for n in [1, 5, 6, 7, 64, 1000, 65_536] {
        bodies.push((format!("{n} random bytes"), random.bytes(n)));
        // Past the header, so the decoder gets to the body.
        let mut headed = real[..6].to_vec();
        headed.extend(random.bytes(n));
        bodies.push((format!("the header and {n} random bytes"), headed));
    }
    let mut trailing = real.clone();
    trailing.push(0);
    bodies.push(("a trailing byte".into(), trailing));
    bodies.push((
        "a response instead of a request".into(),
        SyncResponse::default().encode(),
    ));
    let mut future = real.clone();
    future[4] = 99;
    bodies.push(("an unknown version".into(), future));
    bodies.push(("exactly the limit".into(), random.bytes(MAX_BODY)));

    for (what, body) in &bodies {
        let answer = match v.post_sync(body.clone()).await {
            Err(Failure::Refused(a)) => a,
            other => panic!("{what}: {other:?}"),
        };
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        assert!(answer.is_json_error(), "{what}: {answer:?}");
        assert_eq!(answer.code(), "malformed", "{what}");
    }
    for n in [MAX_BODY + 1, 4 * MAX_BODY] {
        let answer = v.post_sync(random.bytes(n)).await.unwrap_err().refused();
        assert_eq!(answer.status, 413, "{n} bytes: {answer:?}");
    }
    assert_eq!(stored(&w.server, resident).await, before);

    // Every byte flipped in turn: whatever it decodes to, never a server error.
    let mut malformed = bodies.len();
    for i in 0..real.len() {
        let mut flipped = real.clone();
        flipped[i] ^= 0x55;
        match v.post_sync(flipped).await {
            Ok(_) => {}
            Err(Failure::Refused(a)) => {
                assert_eq!(a.status, 400, "byte {i} flipped: {a:?}");
                assert_eq!(a.code(), "malformed");
                malformed += 1;
            }
            Err(e) => panic!("byte {i} flipped: {e:?}"),
        }
    }

    // The server still answers, and the real request goes through.
    w.server.get("/readyz", None).await.expect(200);
    let report = v.sync().await.unwrap();
    assert!(report.receipted.contains(&resident.into()), "{report:?}");
    assert!(v.resident(resident).visits.iter().any(|x| x.id == visit));
    let metrics = w.server.metrics().await;
    assert_eq!(
        sample(&metrics, r#"linli_syncs_total{outcome="malformed"}"#),
        malformed as f64,
        "{metrics}"
    );
}

/// Malformed JSON bodies and path parameters on the JSON endpoints: a 4xx with a JSON
/// error, never a 5xx; and the server answers normally afterwards.
async fn malformed_json_is_refused(t: TestStore) {
    let limits = HttpLimits {
        max_body: MAX_BODY,
        ..HttpLimits::default()
    };
    let Scene { w, v, .. } = scene_with_limits(t, limits).await;
    let token = w.coordinator_token.clone();
    let json_endpoints = [
        "/api/v1/login",
        "/api/v1/enrol",
        "/api/v1/token",
        "/api/v1/districts",
        "/api/v1/stations",
        "/api/v1/users",
        "/api/v1/enrolment-codes",
    ];
    let deep = "[".repeat(10_000);
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("empty", "application/json", vec![]),
        ("cut short", "application/json", b"{\"login\": \"a".to_vec()),
        ("not an object", "application/json", b"[1, 2]".to_vec()),
        ("null", "application/json", b"null".to_vec()),
        ("no fields", "application/json", b"{}".to_vec()),
        (
            "wrong types",
            "application/json",
            br#"{"login": 5, "password": [], "code": {}, "refresh_token": 1, "name": 2, "user": "x"}"#
                .to_vec(),
        ),
        ("not UTF-8", "application/json", vec![0xff, 0xfe, 0x7b, 0x00]),
        (
            // PostgreSQL's text takes no NUL: a 4xx, not the database's error.
            "NUL characters",
            "application/json",
            br#"{"login": "ad\u0000min", "password": "x\u0000", "code": "\u0000",
                 "refresh_token": "\u0000", "name": "\u0000", "display_name": "\u0000",
                 "role": "volunteer", "user": "\u0000"}"#
                .to_vec(),
        ),
        ("nested too deep", "application/json", deep.into_bytes()),
        ("not JSON at all", "text/plain", b"login=admin".to_vec()),
        (
            "JSON without its content type",
            "text/plain",
            br#"{"login": "admin", "password": "x"}"#.to_vec(),
        ),
    ];
    let mut answers: Vec<(String, Answer)> = Vec::new();
    for path in json_endpoints {
        for (what, content_type, body) in &bodies {
            let answer = w
                .server
                .raw(Method::POST, path, Some(&token), content_type, body.clone())
                .await;
            answers.push((format!("{path}: {what}"), answer));
        }
        let answer = w
            .server
            .raw(
                Method::POST,
                path,
                Some(&token),
                "application/json",
                vec![b' '; MAX_BODY + 1],
            )
            .await;
        assert_eq!(answer.status, 413, "{path}: too large: {answer:?}");
    }
    for path in [
        "/api/v1/devices/not-a-uuid/revoke".to_owned(),
        format!("/api/v1/devices/{}x/revoke", v.device),
    ] {
        let answer = w.server.call(Method::POST, &path, Some(&token), None).await;
        answers.push((path, answer));
    }
    for path in [
        "/api/v1/volunteers/nobody/residents/nothing".to_owned(),
        format!("/api/v1/volunteers/{}/residents/42", v.user),
    ] {
        for method in [Method::PUT, Method::DELETE] {
            let answer = w
                .server
                .call(method.clone(), &path, Some(&token), None)
                .await;
            answers.push((format!("{method} {path}"), answer));
        }
    }
    for (what, answer) in &answers {
        assert!(
            answer.status.is_client_error(),
            "{what}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            answer.is_json_error(),
            "{what}: not a JSON error: {answer:?}"
        );
    }

    w.server.get("/readyz", None).await.expect(200);
    w.server
        .post("/api/v1/stations", Some(&token), &json!({ "name": "新站" }))
        .await
        .expect(201);
}

conformance!(malformed_sync_bodies_are_refused, malformed_json_is_refused);
