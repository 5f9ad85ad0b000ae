//! Station hubs on the district server: a coordinator's code enrols a hub for one
//! station; the hub forwards what its phones sent while the uplink was down, and the
//! server takes each request as its phone's. The hub is tried as an attacker too: it
//! cannot upload under a phone's name, reach another station, or use its token as a
//! user's.

use crate::backends::{TestStore, conformance};
use crate::phone::Phone;
use crate::serving::{Answer, TestServer};
use crate::world::{Scene, World, login, scene, stored};
use reqwest::Method;
use serde_json::json;
use sync_core::ids::*;
use sync_core::protocol::envelope::{Bytes, SyncRequest};
use sync_core::protocol::forward::{
    ForwardItem, ForwardRequest, ForwardResponse, ForwardResult, Taken,
};
use sync_core::protocol::replica::Replica;
use sync_core::protocol::seal;
use sync_core::protocol::store::ServerStore;

struct TestHub {
    id: String,
    access: String,
    refresh: String,
}

async fn hub_code(w: &World, token: &str, station: StationId) -> Answer {
    w.server
        .post(
            "/api/v1/hub-codes",
            Some(token),
            &json!({ "station": station.0 }),
        )
        .await
}

async fn enrol_hub(w: &World, station: StationId) -> TestHub {
    let answer = hub_code(w, &w.coordinator_token, station).await;
    answer.expect(201);
    let code = answer.json()["code"].as_str().unwrap().to_owned();
    let answer = w
        .server
        .post(
            "/api/v1/hubs/enrol",
            None,
            &json!({ "code": code, "name": "华沙站 hub" }),
        )
        .await;
    answer.expect(200);
    let c = answer.json();
    assert_eq!(c["station"].as_str().unwrap(), station.0.to_string());
    // A code works once.
    w.server
        .post("/api/v1/hubs/enrol", None, &json!({ "code": code }))
        .await
        .expect_error(401, "bad_credentials");
    TestHub {
        id: c["hub_id"].as_str().unwrap().to_owned(),
        access: c["access_token"].as_str().unwrap().to_owned(),
        refresh: c["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// What a phone would have sent the hub: its next request, and its seal.
fn held_request(phone: &Phone) -> (Vec<u8>, [u8; 32]) {
    let body = phone.replica.prepare(phone.now()).unwrap().encode();
    let seal = seal::from_header(&phone.seal(&body)).unwrap();
    (body, seal)
}

/// A forwarded request whose every upload the hub took.
fn item(id: u64, device: DeviceId, body: Vec<u8>, seal: [u8; 32]) -> ForwardItem {
    let docs = SyncRequest::decode(&body)
        .map(|r| r.uploads.iter().map(|u| u.doc).collect())
        .unwrap_or_default();
    ForwardItem {
        id,
        device,
        received_at: server::now_ms(),
        body: Bytes(body),
        seal,
        docs,
    }
}

async fn forward_raw(server: &TestServer, token: &str, items: Vec<ForwardItem>) -> Answer {
    server
        .raw(
            Method::POST,
            "/api/v1/hubs/forward",
            Some(token),
            "application/vnd.linli.sync",
            ForwardRequest { items }.encode(),
        )
        .await
}

async fn forward(
    server: &TestServer,
    hub: &TestHub,
    items: Vec<ForwardItem>,
) -> Vec<ForwardResult> {
    let answer = forward_raw(server, &hub.access, items).await;
    answer.expect(200);
    ForwardResponse::decode(&answer.body)
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.result)
        .collect()
}

#[track_caller]
fn taken(result: &ForwardResult) -> &Taken {
    match result {
        ForwardResult::Taken(t) => t,
        other => panic!("expected the item taken, got {other:?}"),
    }
}

#[track_caller]
fn refused_code(result: &ForwardResult) -> &str {
    match result {
        ForwardResult::Refused { code, .. } => code,
        other => panic!("expected the item refused, got {other:?}"),
    }
}

/// The story's centre: a visit logged at a station with no uplink reaches the district
/// server through the hub, under the volunteer's device, and the phone's own sync
/// later finds it already there.
async fn a_hub_forwards_a_phones_visit_as_the_phones(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    let hub = enrol_hub(&w, w.station_a).await;
    let before = stored(&w.server, resident).await;
    let visit = v.log_visit(resident, "读报，量血压");
    let (body, seal) = held_request(&v);

    let results = forward(&w.server, &hub, vec![item(1, v.device, body.clone(), seal)]).await;
    let t = taken(&results[0]);
    assert_eq!(t.receipts.len(), 1, "{t:?}");
    assert_eq!(t.receipts[0].doc, DocId::from(resident));
    assert!(t.rejections.is_empty() && t.missing.is_empty());
    let after = stored(&w.server, resident).await;
    assert_ne!(after.heads, before.heads);
    assert_eq!(after.quarantined, 0);

    // Forwarded again (a hub that died before it recorded the answer): the same
    // receipt, nothing stored twice.
    let again = forward(&w.server, &hub, vec![item(2, v.device, body, seal)]).await;
    assert_eq!(taken(&again[0]).receipts, t.receipts);
    assert_eq!(stored(&w.server, resident).await, after);

    // Stored under the phone's own actor: authorship is the phone's, not the hub's.
    let doc = w
        .server
        .store()
        .load(resident.into())
        .await
        .unwrap()
        .unwrap();
    let new: Vec<_> = doc.get_changes(&before.heads);
    assert!(!new.is_empty());
    assert!(new.iter().all(|c| c.actor_id() == v.replica.actor()));
    // The phone, syncing directly later, finds the visit held.
    v.sync().await.unwrap();
    assert_eq!(v.pending(), 0);
    assert!(v.resident(resident).visits.iter().any(|x| x.id == visit));
    assert_eq!(stored(&w.server, resident).await.heads, after.heads);
}

/// A hub (or anyone holding a hub's token) tries to upload under a phone's name: with
/// another phone's seal, a seal of another body, an altered body, or for a device of no
/// district it serves. Each item is refused whole and nothing is stored.
async fn a_hub_cannot_upload_under_a_phones_name(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    let hub = enrol_hub(&w, w.station_a).await;
    let mut accomplice = w.volunteer("zhang").await;
    w.assign(accomplice.user, resident).await;
    accomplice.sync().await.unwrap();
    let before = stored(&w.server, resident).await;

    v.log_visit(resident, "真实的探访");
    let (body, seal) = held_request(&v);
    accomplice.log_visit(resident, "伪造的探访");
    let (other_body, other_seal) = held_request(&accomplice);
    // What a dishonest hub would make: a visit written as v (v's actor, which every
    // copy of the case file names, and v's user id), sealed with the only key it has.
    let mut forger = w.volunteer("forger").await;
    w.assign(forger.user, resident).await;
    forger.sync().await.unwrap();
    let store = forger.replica.store().clone();
    forger.replica = Replica::new(store, v.replica.actor().clone());
    forger.user = v.user;
    forger.log_visit(resident, "以王的名义伪造");
    let (forged_body, forged_seal) = held_request(&forger);
    let mut altered = body.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let results = forward(
        &w.server,
        &hub,
        vec![
            // A visit under v's actor, passed off as v's.
            item(0, v.device, forged_body, forged_seal),
            // The accomplice's request, sealed by the accomplice, passed off as v's.
            item(1, v.device, other_body.clone(), other_seal),
            // v's seal on the accomplice's body.
            item(2, v.device, other_body, seal),
            // v's request with a byte changed.
            item(3, v.device, altered, seal),
            // A device that does not exist.
            item(
                4,
                DeviceId(uuid::Uuid::from_u128(0xBAD)),
                body.clone(),
                seal,
            ),
        ],
    )
    .await;
    let codes: Vec<&str> = results.iter().map(refused_code).collect();
    assert_eq!(
        codes,
        [
            "bad_seal",
            "bad_seal",
            "bad_seal",
            "bad_seal",
            "not_this_station"
        ]
    );
    assert_eq!(stored(&w.server, resident).await, before);

    // Malformed batches are a clear 400.
    w.server
        .raw(
            Method::POST,
            "/api/v1/hubs/forward",
            Some(&hub.access),
            "application/vnd.linli.sync",
            b"LNSY\x02\x03garbage".to_vec(),
        )
        .await
        .expect_error(400, "malformed");
    // v's genuine request still goes through.
    let results = forward(&w.server, &hub, vec![item(5, v.device, body, seal)]).await;
    assert_eq!(taken(&results[0]).receipts.len(), 1);
}

/// Tokens: a user's token opens no hub endpoint and a hub's no user's; only the
/// district's coordinators and admins issue hub codes, from a password sign-in; a
/// revoked hub is refused at once, and so is its refresh.
async fn hub_tokens_and_codes_are_kept_to_their_doors(t: TestStore) {
    let Scene { w, v, .. } = scene(t).await;
    let hub = enrol_hub(&w, w.station_a).await;
    let (body, seal) = held_request(&v);

    // A user's token on the hub endpoint, a hub's on the phone's.
    forward_raw(&w.server, &v.access, vec![])
        .await
        .expect_error(401, "invalid_token");
    forward_raw(&w.server, &w.coordinator_token, vec![])
        .await
        .expect_error(401, "invalid_token");
    w.server
        .raw(
            Method::POST,
            "/api/v1/sync",
            Some(&hub.access),
            "application/vnd.linli.sync",
            body.clone(),
        )
        .await
        .expect_error(401, "invalid_token");
    w.server
        .get("/api/v1/me", Some(&hub.access))
        .await
        .expect_error(401, "invalid_token");
    forward_raw(&w.server, "not.a.token", vec![])
        .await
        .expect_error(401, "invalid_token");

    // Who may issue hub codes: not station staff, even with a password sign-in; not
    // a volunteer; nobody from a device's token.
    w.server
        .post(
            "/api/v1/users",
            Some(&w.coordinator_token),
            &json!({ "login": "staff", "display_name": "站长", "role": "station_staff",
                     "stations": [w.station_a.0], "password": "staff's long password" }),
        )
        .await
        .expect(201);
    let staff = login(&w.server, "staff", "staff's long password").await;
    hub_code(&w, &staff, w.station_a).await.expect(404);
    let coordinator_phone = w.coordinator_phone().await;
    hub_code(&w, &coordinator_phone.access, w.station_a)
        .await
        .expect_error(403, "forbidden");
    hub_code(&w, &v.access, w.station_a).await.expect(403);
    hub_code(
        &w,
        &w.coordinator_token,
        StationId(uuid::Uuid::from_u128(7)),
    )
    .await
    .expect(404);
    hub_code(&w, &w.admin_token, w.station_b).await.expect(201);

    // The refresh token rotates.
    let answer = w
        .server
        .post(
            "/api/v1/hubs/token",
            None,
            &json!({ "refresh_token": hub.refresh }),
        )
        .await;
    answer.expect(200);
    let access = answer.json()["access_token"].as_str().unwrap().to_owned();
    let refresh = answer.json()["refresh_token"].as_str().unwrap().to_owned();
    // A phone's refresh token is no hub's.
    w.server
        .post(
            "/api/v1/hubs/token",
            None,
            &json!({ "refresh_token": v.refresh }),
        )
        .await
        .expect_error(401, "bad_credentials");

    // Revoked by the coordinator: refused at once, and its refresh too.
    let path = format!("/api/v1/hubs/{}/revoke", hub.id);
    w.server
        .post(&path, Some(&staff), &json!({}))
        .await
        .expect(404);
    w.server
        .post(&path, Some(&v.access), &json!({}))
        .await
        .expect(404);
    w.server
        .post(&path, Some(&w.coordinator_token), &json!({}))
        .await
        .expect(204);
    forward_raw(&w.server, &access, vec![item(1, v.device, body, seal)])
        .await
        .expect_error(401, "hub_revoked");
    w.server
        .post(
            "/api/v1/hubs/token",
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await
        .expect_error(401, "hub_revoked");
}

/// A phone revoked (or its user disabled) after it handed a visit to the hub: the
/// visit is not taken, and not lost either: it waits in quarantine for a coordinator.
async fn a_revoked_phones_forwarded_visit_waits_for_a_coordinator(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    let hub = enrol_hub(&w, w.station_a).await;
    let before = stored(&w.server, resident).await;
    v.log_visit(resident, "吊销前的探访");
    let (body, seal) = held_request(&v);
    w.server
        .post(
            &format!("/api/v1/devices/{}/revoke", v.device.0),
            Some(&w.coordinator_token),
            &json!({}),
        )
        .await
        .expect(204);

    let results = forward(&w.server, &hub, vec![item(1, v.device, body.clone(), seal)]).await;
    let t = taken(&results[0]);
    assert!(t.receipts.is_empty());
    assert_eq!(t.rejections.len(), 1);
    assert_eq!(t.rejections[0].code, "device_revoked");
    assert_ne!(t.rejections[0].quarantine, 0);
    let after = stored(&w.server, resident).await;
    assert_eq!(after.heads, before.heads);
    assert_eq!(after.quarantined, before.quarantined + 1);
    // Forwarded again (a hub stopped before it recorded the answer): the same batch,
    // under the same number, kept once.
    let again = forward(&w.server, &hub, vec![item(2, v.device, body, seal)]).await;
    assert_eq!(taken(&again[0]).rejections, t.rejections);
    assert_eq!(stored(&w.server, resident).await, after);
}

/// What the district server refused of a hub's forwarded request, a phone reads back
/// at the district server (`GET /api/v1/sync/refused`), to set it aside; only its own
/// undecided batches, and only with a device's token.
async fn a_phone_reads_its_own_refusals_and_no_one_elses(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    let hub = enrol_hub(&w, w.station_a).await;
    let mut other = w.volunteer("zhao").await;
    w.assign(other.user, resident).await;
    other.sync().await.unwrap();
    w.unassign(v.user, resident).await;
    v.log_visit(resident, "撤销分配后的探访");
    let heads: Vec<String> = v.heads(resident).iter().map(ToString::to_string).collect();
    let (body, seal) = held_request(&v);
    let results = forward(&w.server, &hub, vec![item(1, v.device, body, seal)]).await;
    let number = taken(&results[0]).rejections[0].quarantine;
    assert_ne!(number, 0);

    let answer = w.server.get("/api/v1/sync/refused", Some(&v.access)).await;
    answer.expect(200);
    let refused = answer.json()["refused"].clone();
    assert_eq!(refused.as_array().map(Vec::len), Some(1), "{refused}");
    assert_eq!(refused[0]["doc"], json!(resident.0));
    assert_eq!(refused[0]["code"], "out_of_scope");
    assert_eq!(refused[0]["quarantine"], json!(number));
    assert_eq!(
        refused[0]["heads"],
        json!(heads),
        "the refused upload's heads"
    );

    // Another volunteer's phone, a coordinator's sign-in, a hub and no one at all.
    let answer = w
        .server
        .get("/api/v1/sync/refused", Some(&other.access))
        .await;
    answer.expect(200);
    assert_eq!(answer.json()["refused"], json!([]));
    w.server
        .get("/api/v1/sync/refused", Some(&w.coordinator_token))
        .await
        .expect(403);
    w.server
        .get("/api/v1/sync/refused", Some(&hub.access))
        .await
        .expect(401);
    w.server.get("/api/v1/sync/refused", None).await.expect(401);

    // Decided, it is no longer listed.
    let decided = server::store::quarantine::QuarantineDecision {
        accepted: false,
        by: w.coordinator,
        at: 0,
        note: "已转给别人".into(),
    };
    assert!(
        w.server
            .store()
            .decide_quarantined(number, &decided)
            .await
            .unwrap()
    );
    let answer = w.server.get("/api/v1/sync/refused", Some(&v.access)).await;
    assert_eq!(answer.json()["refused"], json!([]));
}

conformance!(
    a_phone_reads_its_own_refusals_and_no_one_elses,
    a_hub_forwards_a_phones_visit_as_the_phones,
    a_hub_cannot_upload_under_a_phones_name,
    hub_tokens_and_codes_are_kept_to_their_doors,
    a_revoked_phones_forwarded_visit_waits_for_a_coordinator,
);
