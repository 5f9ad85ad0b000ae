//! A fake server that answers what a real one never would: bytes that are not an
//! envelope, deliveries of damaged or foreign documents, errors, silence. The phone
//! must answer each with an error (never a panic across the FFI), keep what it had
//! saved, and sync normally afterwards.

use crate::world::*;
use mobile_ffi::sync_core::automerge::{ActorId, Automerge};
use mobile_ffi::sync_core::doc::casefile::CaseFile;
use mobile_ffi::sync_core::ids::*;
use mobile_ffi::sync_core::model::{Principal, Role, Scope};
use mobile_ffi::sync_core::protocol::envelope::{Bytes, DocDelivery, SyncResponse};
use mobile_ffi::sync_core::protocol::store::ReplicaStore;
use mobile_ffi::sync_core::rules::Editor;
use mobile_ffi::{CancelToken, LinliClient, LinliError};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// One scripted answer to `POST /api/v1/sync`.
enum Reply {
    Ok(Vec<u8>),
    Status(u16, &'static str),
    Silence,
}

const DISTRICT: u128 = 1;
const STATION: u128 = 2;
const RESIDENT: u128 = 3;
const USER: u128 = 4;

/// Serves enrolment and scripted sync answers on 127.0.0.1:0; the last reply repeats.
fn fake_server(replies: Vec<Reply>) -> String {
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    serve(move |(method, path, _, _)| {
        let (status, content_type, bytes) = if method == "GET" && path == "/api/v1/hub" {
            // Not a station hub, as a district server answers.
            (
                "404 Not Found".to_owned(),
                "application/json",
                br#"{"code":"not_found","message":"no such route"}"#.to_vec(),
            )
        } else if path.contains("/api/v1/enrol") {
            let credential = serde_json::json!({
                "device_id": Uuid::from_u128(9).to_string(),
                "user": { "id": Uuid::from_u128(USER).to_string(), "login": "wang",
                          "display_name": "wang", "role": "volunteer",
                          "district": Uuid::from_u128(DISTRICT).to_string() },
                "actors": ["0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"],
                "refresh_token": "refresh", "access_token": "access", "expires_in": 900,
            });
            (
                "200 OK".to_owned(),
                "application/json",
                credential.to_string().into_bytes(),
            )
        } else {
            let reply = {
                let mut replies = replies.lock().unwrap();
                if replies.len() > 1 {
                    replies.pop_front().unwrap()
                } else {
                    match replies.front().unwrap() {
                        Reply::Ok(b) => Reply::Ok(b.clone()),
                        Reply::Status(s, r) => Reply::Status(*s, r),
                        Reply::Silence => Reply::Silence,
                    }
                }
            };
            match reply {
                Reply::Ok(bytes) => ("200 OK".to_owned(), "application/vnd.linli.sync", bytes),
                Reply::Status(s, r) => (
                    format!("{s} {r}"),
                    "application/json",
                    serde_json::json!({ "code": "unavailable", "message": "try later" })
                        .to_string()
                        .into_bytes(),
                ),
                Reply::Silence => {
                    // Hold the connection open without answering.
                    std::thread::sleep(Duration::from_secs(30));
                    return None;
                }
            }
        };
        Some((status, content_type, bytes))
    })
}

/// A real case file for the resident, made by station staff, saved whole.
fn case_file() -> Vec<u8> {
    let staff = Principal {
        user: UserId(Uuid::from_u128(5)),
        role: Role::StationStaff,
        scope: Scope::Stations {
            district: DistrictId(Uuid::from_u128(DISTRICT)),
            stations: [StationId(Uuid::from_u128(STATION))].into(),
        },
    };
    let editor = Editor {
        principal: &staff,
        now: now_ms(),
    };
    CaseFile::create(
        ActorId::from(vec![0x0b; 16]),
        &editor,
        ResidentId(Uuid::from_u128(RESIDENT)),
        DistrictId(Uuid::from_u128(DISTRICT)),
        StationId(Uuid::from_u128(STATION)),
        &mobile_ffi::sync_core::model::Profile::from(profile("王阿婆")),
    )
    .unwrap()
    .doc()
    .save()
}

fn response(docs: Vec<DocDelivery>) -> Vec<u8> {
    SyncResponse {
        cursor: 1,
        receipts: vec![],
        rejections: vec![],
        docs,
        purge: vec![],
        fallback: vec![],
        need_held: false,
        more: false,
        decisions: vec![],
    }
    .encode()
}

fn delivery(id: u128, snapshot: Option<Vec<u8>>, changes: Vec<Vec<u8>>) -> DocDelivery {
    DocDelivery {
        doc: DocId(Uuid::from_u128(id)),
        snapshot: snapshot.map(Bytes),
        changes: changes.into_iter().map(Bytes).collect(),
    }
}

#[test]
fn hostile_answers_are_errors_and_lose_nothing() {
    let file = case_file();
    let resident = Uuid::from_u128(RESIDENT).to_string();
    // A well-formed Automerge document that is not a Linli one.
    let foreign = Automerge::new().save();
    let mut truncated_change = CaseFile::load(&file, ActorId::from(vec![1; 16]))
        .unwrap()
        .doc()
        .get_changes(&[])
        .first()
        .unwrap()
        .raw_bytes()
        .to_vec();
    truncated_change.truncate(truncated_change.len() / 2);
    let base = fake_server(vec![
        Reply::Ok(response(vec![delivery(
            RESIDENT,
            Some(file.clone()),
            vec![],
        )])),
        Reply::Ok(b"not an envelope at all".to_vec()),
        Reply::Ok(response(vec![delivery(
            RESIDENT,
            Some(b"garbage".to_vec()),
            vec![],
        )])),
        Reply::Ok(response(vec![delivery(
            RESIDENT,
            None,
            vec![truncated_change],
        )])),
        Reply::Status(503, "Service Unavailable"),
        Reply::Ok(response(vec![delivery(77, Some(foreign), vec![])])),
        Reply::Silence,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let client = LinliClient::open_with_timeouts(
        dir.path(),
        &[3; 32],
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .unwrap();
    client.enrol(base, "code".into(), "phone".into()).unwrap();
    let sync = || client.sync(CancelToken::new());

    // The first answer delivers the resident; a visit is logged offline.
    sync().unwrap();
    let visit = client.log_visit(resident.clone(), visit("读报")).unwrap();
    let still_there = |client: &LinliClient| {
        let detail = client.resident(resident.clone()).unwrap();
        assert_eq!(detail.visits.len(), 1);
        assert_eq!(detail.visits[0].id, visit);
        assert_eq!(client.sync_status().unwrap().pending_changes, 1);
    };

    for expected in ["malformed", "malformed", "malformed", "network"] {
        let error = sync().unwrap_err();
        assert_eq!(error.code(), expected, "{error:?}");
        still_there(&client);
    }
    // A foreign document is taken in (its round succeeds) but is not a resident: the
    // lists skip it. The visit is still unreceipted, so the sync asks again and meets
    // a server that never answers: the request times out, retryable.
    let error = sync().unwrap_err();
    assert!(matches!(error, LinliError::Network { .. }), "{error:?}");
    let held = mobile_ffi::store::Store::open(dir.path(), &[3; 32])
        .unwrap()
        .doc_ids()
        .unwrap();
    assert!(held.contains(&DocId(Uuid::from_u128(77))), "{held:?}");
    assert_eq!(client.residents().unwrap().len(), 1);
    assert_eq!(client.due_visits(now_ms(), 480).unwrap().len(), 0);
    still_there(&client);
    let error = sync().unwrap_err();
    assert!(matches!(error, LinliError::Network { .. }), "{error:?}");
    drop(client);
    let reopened = LinliClient::open(dir.path().display().to_string(), vec![3; 32]).unwrap();
    still_there(&reopened);
}
