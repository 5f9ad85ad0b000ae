//! The HTTP service's stories: phones and a coordinator working through the real server,
//! and an attacker refused at every door.

use crate::backends::{TestStore, conformance};
use crate::phone::Phone;
use crate::serving::{Answer, SECRET, TestServer, sample};
use crate::world::{COORDINATOR_PASSWORD, Scene, Stored, World, scene, scene_with_limits, stored};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};
use server::auth::{ACCESS_TOKEN_SECS, ENROLMENT_CODE_MS, Keys};
use server::http::HttpLimits;
use std::time::Duration;
use sync_core::automerge::transaction::{CommitOptions, Transactable, Transaction};
use sync_core::automerge::{ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value as AmValue};
use sync_core::doc::casefile::{CaseFile, FieldValue, ProfileField};
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::replica::Replica;
use sync_core::protocol::store::{ReplicaStore, ServerStore};
use uuid::Uuid;

/// Two volunteers edit one resident offline; the server merges; the coordinator's
/// review and choice between the conflicting values reach both phones.
async fn offline_edits_converge_and_the_review_reaches_both_phones(t: TestStore) {
    let w = World::new(t).await;
    let mut coordinator = w.coordinator_phone().await;
    let resident = w.resident(&mut coordinator, w.station_a, "王阿婆").await;
    let mut v1 = w.volunteer("wang").await;
    let mut v2 = w.volunteer("zhang").await;
    w.assign(v1.user, resident).await;
    w.assign(v2.user, resident).await;
    for phone in [&mut v1, &mut v2] {
        phone.sync().await.unwrap();
        assert!(phone.holds(resident));
    }

    // Offline: a visit on each phone, and two different phone numbers.
    let a = v1.log_visit(resident, "读报，检查插线板");
    let b = v2.log_visit(resident, "量血压 150/95");
    let phone_number = |n: &str| FieldValue::Text(n.into());
    v1.edit(resident, |f, e| {
        f.update_profile(e, ProfileField::Phone, &phone_number("13800000001"))
            .unwrap()
    });
    v2.edit(resident, |f, e| {
        f.update_profile(e, ProfileField::Phone, &phone_number("13900000002"))
            .unwrap()
    });

    assert_eq!(v1.sync().await.unwrap().receipted, vec![resident.into()]);
    assert_eq!(v2.sync().await.unwrap().receipted, vec![resident.into()]);
    v1.sync().await.unwrap();
    let stored = w
        .server
        .store()
        .load(resident.into())
        .await
        .unwrap()
        .unwrap();
    let mut server_heads = stored.get_heads();
    server_heads.sort();
    for phone in [&v1, &v2] {
        assert_eq!(phone.pending(), 0);
        assert_eq!(phone.heads(resident), server_heads);
        assert!(
            phone
                .replica
                .unreceipted_visits(resident.into())
                .unwrap()
                .is_empty()
        );
        let r = phone.resident(resident);
        let ids: Vec<_> = r.visits.iter().map(|v| v.id).collect();
        assert!(ids.contains(&a) && ids.contains(&b), "{ids:?}");
        let conflicts = phone.case_file(resident).conflicts().unwrap();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].field, ProfileField::Phone);
        assert_eq!(conflicts[0].values.len(), 2);
    }
    assert_eq!(v1.resident(resident), v2.resident(resident));

    // The coordinator reviews both visits and picks a number.
    coordinator.sync().await.unwrap();
    coordinator.edit(resident, |f, e| {
        f.review_visit(e, a, ReviewStatus::NeedsAttention, "请联系社区医生")
            .unwrap();
        f.review_visit(e, b, ReviewStatus::Approved, "").unwrap();
        f.resolve_conflict(e, ProfileField::Phone, &phone_number("13800000001"))
            .unwrap();
    });
    assert_eq!(
        coordinator.sync().await.unwrap().receipted,
        vec![resident.into()]
    );
    for phone in [&mut v1, &mut v2] {
        phone.sync().await.unwrap();
        let r = phone.resident(resident);
        let visit = |id| r.visits.iter().find(|v| v.id == id).unwrap();
        let review = visit(a).review.clone().unwrap();
        assert_eq!(review.status, ReviewStatus::NeedsAttention);
        assert_eq!(review.comment, "请联系社区医生");
        assert_eq!(review.reviewer, w.coordinator);
        assert_eq!(visit(b).review_status(), ReviewStatus::Approved);
        assert_eq!(r.profile.phone, "13800000001");
        assert!(phone.case_file(resident).conflicts().unwrap().is_empty());
    }
    assert_eq!(v1.resident(resident), coordinator.resident(resident));
    assert_eq!(v2.resident(resident), coordinator.resident(resident));
    assert!(w.server.store().quarantined(10).await.unwrap().is_empty());
}

/// Writes into a held case file as a modified app would: straight into the document,
/// past the phone's own rules, committed as the phone's user.
fn tamper(phone: &mut Phone, resident: ResidentId, write: impl FnOnce(&mut Transaction<'_>)) {
    let mut doc = phone.case_file(resident).into_doc();
    let mut tx = doc.transaction();
    write(&mut tx);
    tx.commit_with(
        CommitOptions::default()
            .with_message(phone.user.to_string())
            .with_time(server::now_ms()),
    );
    phone
        .replica
        .save_case_file(&CaseFile::from_doc(doc).unwrap())
        .unwrap();
}

fn object(tx: &Transaction<'_>, parent: &ObjId, key: &str) -> ObjId {
    match tx.get(parent, key).unwrap() {
        Some((AmValue::Object(_), id)) => id,
        other => panic!("{key} is not an object: {other:?}"),
    }
}

/// Checks the single quarantined batch: who sent it, why, and its bytes.
async fn quarantined_once(server: &TestServer, phone: &Phone, code: &str, bytes: &[Vec<u8>]) {
    let q = server.store().quarantined(10).await.unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].code, code);
    assert_eq!(q[0].device, phone.device);
    assert_eq!(q[0].user, phone.user);
    assert_eq!(q[0].bytes, bytes);
}

/// The raw changes a phone would upload for `resident` now.
fn upload_of(phone: &Phone, resident: ResidentId) -> Vec<Vec<u8>> {
    let request = phone.replica.prepare(server::now_ms()).unwrap();
    let upload = request
        .uploads
        .iter()
        .find(|u| u.doc == resident.into())
        .unwrap();
    upload.changes.iter().map(|b| b.0.clone()).collect()
}

/// A modified app writes a visit under another device's actor: refused as
/// `foreign_actor`, kept only in quarantine, and the other device never sees it.
async fn a_change_under_another_devices_actor_is_refused(t: TestStore) {
    let Scene {
        w,
        resident,
        v: mut victim,
        ..
    } = scene(t).await;
    let mut attacker = w.volunteer("zhang").await;
    w.assign(attacker.user, resident).await;
    attacker.sync().await.unwrap();
    let before = stored(&w.server, resident).await;

    let store = attacker.replica.store().clone();
    attacker.replica = Replica::new(store, victim.replica.actor().clone());
    let visit = attacker.log_visit(resident, "冒名顶替");
    let bytes = upload_of(&attacker, resident);
    let report = attacker
        .send(&attacker.replica.prepare(server::now_ms()).unwrap())
        .await
        .unwrap();
    assert!(report.receipted.is_empty());
    assert_eq!(report.rejections.len(), 1);
    assert_eq!(report.rejections[0].code, "foreign_actor");
    assert_eq!(
        stored(&w.server, resident).await,
        Stored {
            quarantined: 1,
            ..before.clone()
        }
    );
    quarantined_once(&w.server, &attacker, "foreign_actor", &bytes).await;

    // The attacker's phone starts again from the server's copy; the victim's never
    // hears of the visit.
    attacker.sync().await.unwrap();
    victim.sync().await.unwrap();
    for phone in [&attacker, &victim] {
        assert!(
            phone
                .resident(resident)
                .visits
                .iter()
                .all(|v| v.id != visit)
        );
        assert_eq!(phone.heads(resident), before.heads);
    }
    let metrics = w.server.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"linli_rejected_uploads_total{code="foreign_actor"}"#
        ),
        1.0,
        "{metrics}"
    );
    assert!(sample(&metrics, r#"linli_syncs_total{outcome="ok"}"#) >= 5.0);
}

/// A volunteer's modified app approves its own visit: refused as `role_not_allowed`.
async fn a_volunteer_cannot_write_review_fields(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    let visit = v.log_visit(resident, "读报");
    v.sync().await.unwrap();
    let before = stored(&w.server, resident).await;

    let user = v.user;
    tamper(&mut v, resident, |tx| {
        let visits = object(tx, &ROOT, "visits");
        let visit = object(tx, &visits, &visit.to_string());
        let review = tx.put_object(&visit, "review", ObjType::Map).unwrap();
        tx.put(&review, "status", "approved").unwrap();
        tx.put(&review, "reviewer", user.0.as_bytes().to_vec())
            .unwrap();
        tx.put(&review, "comment", "自己批准").unwrap();
        tx.put(&review, "at", ScalarValue::Timestamp(server::now_ms()))
            .unwrap();
    });
    let bytes = upload_of(&v, resident);
    let report = v.sync().await.unwrap();
    assert!(report.receipted.is_empty());
    assert_eq!(report.rejections.len(), 1);
    assert_eq!(report.rejections[0].code, "role_not_allowed");
    assert_eq!(
        stored(&w.server, resident).await,
        Stored {
            quarantined: 1,
            ..before.clone()
        }
    );
    quarantined_once(&w.server, &v, "role_not_allowed", &bytes).await;
    let r = v.resident(resident);
    assert_eq!(r.visits.len(), 1);
    assert_eq!(r.visits[0].review, None);
    assert_eq!(v.heads(resident), before.heads);
    assert_eq!(v.pending(), 0);
    let metrics = w.server.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"linli_rejected_uploads_total{code="role_not_allowed"}"#
        ),
        1.0
    );
}

/// A volunteer who got hold of another resident's case file writes to it: refused as
/// `out_of_scope`, and the server never hands that case file over.
async fn a_volunteer_cannot_sync_a_resident_outside_their_scope(t: TestStore) {
    let Scene {
        w,
        mut coordinator,
        resident,
        mut v,
    } = scene(t).await;
    let other = w.resident(&mut coordinator, w.station_b, "赵阿姨").await;
    let before = stored(&w.server, other).await;

    // A copy of the other case file, taken from the coordinator's phone.
    let saved = coordinator
        .replica
        .store()
        .load_doc(other.into())
        .unwrap()
        .unwrap();
    let file = CaseFile::load(&saved, v.replica.actor().clone()).unwrap();
    let copied = file.doc().get_heads();
    v.replica.save_case_file(&file).unwrap();
    let visit = v.log_visit(other, "不该有的访问");
    // The modified app uploads only its own change, as if the server had sent it the rest.
    let mut state = v.replica.store().sync_state(other.into()).unwrap().unwrap();
    state.acked = copied;
    state.known_to_server = true;
    v.replica
        .store_mut()
        .save_sync_state(other.into(), &state)
        .unwrap();
    let bytes = upload_of(&v, other);
    let report = v.sync().await.unwrap();
    assert!(report.receipted.is_empty(), "{report:?}");
    assert_eq!(report.rejections.len(), 1);
    assert_eq!(report.rejections[0].code, "out_of_scope");
    assert_eq!(
        stored(&w.server, other).await,
        Stored {
            quarantined: 1,
            ..before.clone()
        }
    );
    quarantined_once(&w.server, &v, "out_of_scope", &bytes).await;
    assert!(!v.holds(other), "the server let the phone keep {other}");
    assert!(v.holds(resident));
    coordinator.sync().await.unwrap();
    assert!(
        coordinator
            .resident(other)
            .visits
            .iter()
            .all(|x| x.id != visit)
    );
}

/// A revoked device is refused on sync, refresh and every other call, and told to
/// purge; its unsent visit is not stored. The user's other phone keeps working.
async fn a_revoked_device_is_refused_and_told_to_purge(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    let mut second = w.phone(v.user).await;
    second.sync().await.unwrap();
    v.log_visit(resident, "被撤销前记录");
    let before = stored(&w.server, resident).await;
    w.server
        .call(
            Method::POST,
            &format!("/api/v1/devices/{}/revoke", v.device),
            Some(&w.coordinator_token),
            None,
        )
        .await
        .expect(204);

    let purge = |a: &Answer| {
        a.expect_error(401, "device_revoked");
        assert_eq!(a.json()["purge"], json!(true), "{a:?}");
    };
    purge(&v.sync().await.unwrap_err().refused());
    purge(&v.post_token(&v.refresh).await.unwrap());
    purge(&w.server.get("/api/v1/me", Some(&v.access)).await);
    assert_eq!(stored(&w.server, resident).await, before);

    second.log_visit(resident, "另一部手机");
    assert_eq!(
        second.sync().await.unwrap().receipted,
        vec![resident.into()]
    );
}

/// An access token past its expiry is refused as `token_expired` (without purge); a
/// refresh makes the phone work again.
async fn an_expired_token_is_refused(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    v.log_visit(resident, "过期令牌");
    let before = stored(&w.server, resident).await;
    let issued = u64::try_from(server::now_ms() / 1000).unwrap() - 2 * ACCESS_TOKEN_SECS;
    v.access = w
        .server
        .keys()
        .issue(v.user.0, Some(v.device.0), issued)
        .unwrap();
    let refused = v.sync().await.unwrap_err().refused();
    refused.expect_error(401, "token_expired");
    assert_eq!(refused.json().get("purge"), None);
    assert_eq!(stored(&w.server, resident).await, before);

    v.refresh().await.unwrap();
    assert_eq!(v.sync().await.unwrap().receipted, vec![resident.into()]);
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

/// Tokens the server did not sign as they stand are refused as `invalid_token`: signed
/// with another key, with a changed payload, unsigned, with another algorithm, or
/// naming a device of another user.
async fn forged_tokens_are_refused(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    let other = w.volunteer("zhang").await;
    v.log_visit(resident, "伪造令牌");
    let before = stored(&w.server, resident).await;
    let now = u64::try_from(server::now_ms() / 1000).unwrap();
    let genuine = v.access.clone();
    let claims = json!({
        "sub": v.user.0, "dev": v.device.0, "iat": now, "exp": now + ACCESS_TOKEN_SECS, "aud": "linli",
    });
    let signature = genuine.rsplit('.').next().unwrap();
    let header = genuine.split('.').next().unwrap();

    let another_key = Keys::new(b"not the server's key, but long enough")
        .unwrap()
        .issue(v.user.0, Some(v.device.0), now)
        .unwrap();
    let mut later = claims.clone();
    later["exp"] = json!(now + 365 * 24 * 3600);
    let mut as_other = claims.clone();
    as_other["sub"] = json!(other.user.0);
    as_other["dev"] = json!(other.device.0);
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let forged = [
        ("another key", another_key),
        (
            "a later expiry",
            format!("{header}.{}.{signature}", b64(&later)),
        ),
        (
            "another user's device",
            format!("{header}.{}.{signature}", b64(&as_other)),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({ "alg": "none", "typ": "JWT" })),
                b64(&claims)
            ),
        ),
        ("HS512", hs512),
        (
            "user A with user B's device",
            w.server
                .keys()
                .issue(v.user.0, Some(other.device.0), now)
                .unwrap(),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in forged {
        v.access = token;
        let refused = v.sync().await.unwrap_err().refused();
        assert_eq!(refused.code(), "invalid_token", "{what}: {refused:?}");
        refused.expect_error(401, "invalid_token");
        w.server
            .get("/api/v1/me", Some(&v.access))
            .await
            .expect_error(401, "invalid_token");
    }
    assert_eq!(stored(&w.server, resident).await, before);

    v.access = genuine;
    assert_eq!(v.sync().await.unwrap().receipted, vec![resident.into()]);
}

/// Each refresh rotates the refresh token. The old one stops working once the new one
/// has been used; until then it still works, so a lost refresh response costs nothing.
async fn refresh_tokens_rotate(t: TestStore) {
    let Scene { w, mut v, .. } = scene(t).await;
    let first = v.refresh.clone();
    v.refresh().await.unwrap();
    let second = v.refresh.clone();
    assert_ne!(first, second);
    w.server
        .get("/api/v1/me", Some(&v.access))
        .await
        .expect(200);

    // The answer carrying `second` was lost: the phone still holds `first`.
    v.refresh = first.clone();
    v.refresh().await.unwrap();
    let third = v.refresh.clone();
    assert!(third != first && third != second);
    w.server
        .get("/api/v1/me", Some(&v.access))
        .await
        .expect(200);
    v.post_token(&second)
        .await
        .unwrap()
        .expect_error(401, "bad_credentials");

    // Using `third` retires `first`; using the next retires `third`.
    v.refresh().await.unwrap();
    for old in [&first, &second] {
        v.post_token(old)
            .await
            .unwrap()
            .expect_error(401, "bad_credentials");
    }
    v.refresh().await.unwrap();
    v.post_token(&third)
        .await
        .unwrap()
        .expect_error(401, "bad_credentials");
    v.refresh().await.unwrap();
    v.sync().await.unwrap();
}

/// An enrolment code works once, and not after it expires.
async fn enrolment_codes_work_once_and_expire(t: TestStore) {
    let w = World::new(t).await;
    let user = w.user("wang", "volunteer", &[]).await;
    let code = w.code(user).await;
    let phone = Phone::enrol(&w.server.base, &code).await;
    let enrol = |code: String| {
        let server = &w.server;
        async move {
            server
                .post(
                    "/api/v1/enrol",
                    None,
                    &json!({ "code": code, "device_name": "x" }),
                )
                .await
        }
    };
    enrol(code.clone())
        .await
        .expect_error(401, "bad_credentials");
    // Typed by hand, in lower case and with spaces: still the same, used, code.
    enrol(format!(" {} ", code.to_lowercase()))
        .await
        .expect_error(401, "bad_credentials");

    let issued = server::now_ms() - ENROLMENT_CODE_MS - 1000;
    let (old, _) = w
        .server
        .store()
        .issue_enrolment_code(w.coordinator, user, issued)
        .await
        .unwrap();
    enrol(old).await.expect_error(401, "bad_credentials");
    enrol("0000000000000000000".into())
        .await
        .expect_error(401, "bad_credentials");
    // Only the one device was made.
    w.server
        .get("/api/v1/me", Some(&phone.access))
        .await
        .expect(200);
}

/// A phone enrols whatever its name holds: control characters (a NUL, which PostgreSQL
/// would refuse) are dropped from the name the admin pages list, and the enrolment
/// goes through. Names people give are refused with a clear 400 instead.
async fn names_with_control_characters_are_cleaned_or_refused(t: TestStore) {
    let w = World::new(t).await;
    let user = w.user("wang", "volunteer", &[]).await;
    let code = w.code(user).await;
    w.server
        .post(
            "/api/v1/enrol",
            None,
            &json!({ "code": code, "device_name": " 小王的\0手机\u{7} " }),
        )
        .await
        .expect(200);
    let devices = w.server.store().devices_of(user).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].name, "小王的手机");

    let token = w.coordinator_token.clone();
    w.server
        .post(
            "/api/v1/stations",
            Some(&token),
            &json!({ "name": "新\0站" }),
        )
        .await
        .expect_error(400, "control_character");
    w.server
        .post(
            "/api/v1/users",
            Some(&token),
            &json!({ "login": "li\0", "display_name": "李", "role": "volunteer" }),
        )
        .await
        .expect_error(400, "invalid_login");
    w.server
        .post(
            "/api/v1/users",
            Some(&token),
            &json!({ "login": "li", "display_name": "李\0", "role": "volunteer" }),
        )
        .await
        .expect_error(400, "control_character");
}

/// Nobody manages people beyond their reach: 403 for what the role may never do, 404
/// for what lies outside the caller's scope (so its existence is not revealed).
async fn managing_others_is_refused_outside_ones_reach(t: TestStore) {
    let Scene {
        w,
        mut coordinator,
        resident,
        mut v,
    } = scene(t).await;
    let resident_b = w.resident(&mut coordinator, w.station_b, "赵阿姨").await;
    let mut other = w.volunteer("zhang").await;
    let staff_a = w.user("staff-a", "station_staff", &[w.station_a]).await;
    let staff = w.phone(staff_a).await;
    let before_feed = w.server.store().feed_head().await.unwrap();
    let put = |token: String, volunteer: UserId, resident: ResidentId| {
        let server = &w.server;
        async move {
            server
                .call(
                    Method::PUT,
                    &format!(
                        "/api/v1/volunteers/{}/residents/{}",
                        volunteer.0, resident.0
                    ),
                    Some(&token),
                    None,
                )
                .await
        }
    };
    let post = |path: String, token: String, body: Value| {
        let server = &w.server;
        async move { server.post(&path, Some(&token), &body).await }
    };
    let revoke = |device: DeviceId| format!("/api/v1/devices/{device}/revoke");

    // A volunteer.
    let codes = "/api/v1/enrolment-codes".to_owned();
    // Codes come from password sign-ins only: a device token, even for oneself, mints
    // no devices.
    for target in [v.user, other.user, w.coordinator, staff_a] {
        post(codes.clone(), v.access.clone(), json!({ "user": target.0 }))
            .await
            .expect_error(403, "forbidden");
    }
    for device in [other.device, coordinator.device, staff.device] {
        post(revoke(device), v.access.clone(), json!({}))
            .await
            .expect_error(404, "not_found");
    }
    put(v.access.clone(), v.user, resident_b)
        .await
        .expect_error(403, "forbidden");
    put(v.access.clone(), other.user, resident)
        .await
        .expect_error(403, "forbidden");
    for (path, body) in [
        ("/api/v1/districts", json!({ "name": "另一个镇" })),
        ("/api/v1/stations", json!({ "name": "另一个站" })),
        (
            "/api/v1/users",
            json!({ "login": "mallory", "display_name": "m", "role": "coordinator" }),
        ),
    ] {
        post(path.into(), v.access.clone(), body)
            .await
            .expect_error(403, "forbidden");
    }

    // Staff of station A.
    put(staff.access.clone(), other.user, resident_b)
        .await
        .expect_error(404, "not_found");
    post(revoke(coordinator.device), staff.access.clone(), json!({}))
        .await
        .expect_error(404, "not_found");
    for target in [w.coordinator, other.user] {
        post(
            codes.clone(),
            staff.access.clone(),
            json!({ "user": target.0 }),
        )
        .await
        .expect_error(403, "forbidden");
    }
    // … who may do all of it within reach.
    put(staff.access.clone(), other.user, resident)
        .await
        .expect(204);
    // Signed in with a password, staff issue codes for the volunteers of their district,
    // and still not for a coordinator.
    w.server
        .post(
            "/api/v1/users",
            Some(&w.coordinator_token),
            &json!({ "login": "staff-pw", "display_name": "社工", "role": "station_staff",
                     "stations": [w.station_a.0], "password": "staff's long password" }),
        )
        .await
        .expect(201);
    let staff_session = crate::world::login(&w.server, "staff-pw", "staff's long password").await;
    post(
        codes.clone(),
        staff_session.clone(),
        json!({ "user": other.user.0 }),
    )
    .await
    .expect(201);
    post(
        codes.clone(),
        staff_session,
        json!({ "user": w.coordinator.0 }),
    )
    .await
    .expect_error(404, "not_found");

    // A coordinator of another district.
    let admin = w.admin_token.clone();
    let answer = post(
        "/api/v1/districts".into(),
        admin.clone(),
        json!({ "name": "五角场镇" }),
    )
    .await;
    answer.expect(201);
    let district = answer.json()["id"].clone();
    let answer = post(
        "/api/v1/users".into(),
        admin.clone(),
        json!({ "login": "coordinator-2", "display_name": "c2", "role": "coordinator", "district": district,
                 "password": "coordinator-2's password" }),
    )
    .await;
    answer.expect(201);
    let foreign: Uuid = answer.json()["id"].as_str().unwrap().parse().unwrap();
    let answer = post(codes.clone(), admin, json!({ "user": foreign })).await;
    answer.expect(201);
    let foreign = Phone::enrol(&w.server.base, answer.json()["code"].as_str().unwrap()).await;
    let foreign_session =
        crate::world::login(&w.server, "coordinator-2", "coordinator-2's password").await;
    post(codes.clone(), foreign_session, json!({ "user": v.user.0 }))
        .await
        .expect_error(404, "not_found");
    post(revoke(v.device), foreign.access.clone(), json!({}))
        .await
        .expect_error(404, "not_found");
    put(foreign.access.clone(), v.user, resident_b)
        .await
        .expect_error(404, "not_found");

    // Nothing changed but the one allowed assignment.
    for phone in [&mut v, &mut other, &mut coordinator] {
        phone.sync().await.unwrap();
    }
    assert!(v.holds(resident) && !v.holds(resident_b));
    assert!(other.holds(resident) && !other.holds(resident_b));
    assert_eq!(w.server.store().feed_head().await.unwrap(), before_feed);
}

/// Password guessing is slowed down: after 5 attempts a minute on one login, 429 with
/// Retry-After, even for the right password.
async fn password_logins_are_rate_limited(t: TestStore) {
    let w = World::new(t).await;
    let attempt = |password: &'static str| {
        let server = &w.server;
        async move {
            server
                .post(
                    "/api/v1/login",
                    None,
                    &json!({ "login": "coordinator", "password": password }),
                )
                .await
        }
    };
    let mut refused = 0;
    let limited = loop {
        let answer = attempt("guess").await;
        if answer.status == 429 {
            break answer;
        }
        answer.expect_error(401, "bad_credentials");
        refused += 1;
        assert!(refused <= 5, "still not limited after {refused} guesses");
    };
    assert!(refused >= 4, "limited after only {refused} guesses");
    for answer in [limited, attempt(COORDINATOR_PASSWORD).await] {
        answer.expect_error(429, "rate_limited");
        let retry: u64 = answer.headers[RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    }
    // Another login is not held back.
    w.server
        .post(
            "/api/v1/login",
            None,
            &json!({ "login": "admin", "password": "wrong" }),
        )
        .await
        .expect_error(401, "bad_credentials");
    let metrics = w.server.metrics().await;
    assert_eq!(
        sample(&metrics, r#"linli_logins_total{outcome="refused"}"#),
        f64::from(refused + 1)
    );
}

/// Reads `changed` events from a live stream until one names `until`; returns the
/// documents named, in order.
pub(crate) async fn events_until(response: &mut reqwest::Response, until: ResidentId) -> Vec<Uuid> {
    events_after(response, 0, until).await
}

/// The documents of the `changed` events read from `response` whose feed numbers are
/// above `after`, up to and including `until`'s. On PostgreSQL the announcement of a
/// change stored before the stream opened can still be on its way through `NOTIFY`
/// and arrive on it; `after` (the feed's head then) leaves those out.
pub(crate) async fn events_after(
    response: &mut reqwest::Response,
    after: u64,
    until: ResidentId,
) -> Vec<Uuid> {
    let mut text = String::new();
    let mut docs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("no event in time")
            .unwrap()
            .expect("the stream ended");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if !event.lines().any(|l| l == "event: changed") {
                continue;
            }
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            let event: Value = serde_json::from_str(data).unwrap();
            if event["seq"].as_u64().unwrap() <= after {
                continue;
            }
            let doc: Uuid = event["doc"].as_str().unwrap().parse().unwrap();
            docs.push(doc);
            if doc == until.0 {
                return docs;
            }
        }
    }
}

/// A volunteer's live stream hears of its own residents only; the coordinator's of
/// every resident of the district.
async fn live_events_follow_the_listeners_scope(t: TestStore) {
    let Scene {
        w,
        mut coordinator,
        resident,
        v,
    } = scene(t).await;
    let other = w.resident(&mut coordinator, w.station_a, "赵阿姨").await;
    let listen = |token: String| {
        let server = &w.server;
        async move {
            let response = server
                .http
                .get(server.url("/api/v1/events"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response
        }
    };
    let mut volunteer = listen(v.access.clone()).await;
    let mut staff = listen(w.coordinator_token.clone()).await;
    w.server
        .get("/api/v1/events", None)
        .await
        .expect_error(401, "unauthenticated");
    let head = w.server.store().feed_head().await.unwrap();

    for r in [other, resident] {
        coordinator.edit(r, |f, e| {
            f.update_profile(e, ProfileField::Needs, &FieldValue::Text("助浴".into()))
                .unwrap()
        });
        coordinator.sync().await.unwrap();
    }
    assert_eq!(
        events_after(&mut volunteer, head, resident).await,
        vec![resident.0]
    );
    assert_eq!(
        events_after(&mut staff, head, resident).await,
        vec![other.0, resident.0]
    );
    let metrics = w.server.metrics().await;
    assert_eq!(sample(&metrics, "linli_live_listeners"), 2.0, "{metrics}");
}

/// A live stream re-checks its listener: a volunteer unassigned from a resident stops
/// hearing of it, and a revoked phone's stream ends with `ended` and closes.
async fn live_streams_follow_reassignment_and_revocation(t: TestStore) {
    let limits = HttpLimits {
        events_recheck: Duration::from_millis(100),
        ..HttpLimits::default()
    };
    let Scene {
        w,
        mut coordinator,
        resident,
        v,
    } = scene_with_limits(t, limits).await;
    let second = w.resident(&mut coordinator, w.station_a, "赵阿姨").await;
    w.assign(v.user, second).await;
    let mut stream = w
        .server
        .http
        .get(w.server.url("/api/v1/events"))
        .bearer_auth(&v.access)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let head = w.server.store().feed_head().await.unwrap();
    // Each edit writes a new value, so that each makes a change.
    let edit = |coordinator: &mut Phone, r: ResidentId, needs: &str| {
        coordinator.edit(r, |f, e| {
            f.update_profile(e, ProfileField::Needs, &FieldValue::Text(needs.into()))
                .unwrap()
        });
    };
    edit(&mut coordinator, resident, "助餐");
    coordinator.sync().await.unwrap();
    assert_eq!(
        events_after(&mut stream, head, resident).await,
        vec![resident.0]
    );

    w.server
        .call(
            Method::DELETE,
            &format!("/api/v1/volunteers/{}/residents/{}", v.user.0, resident.0),
            Some(&w.coordinator_token),
            None,
        )
        .await
        .expect(204);
    // Past a few re-checks, the stream has the new scope.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for r in [resident, second] {
        edit(&mut coordinator, r, "助浴");
        coordinator.sync().await.unwrap();
    }
    let heard = events_until(&mut stream, second).await;
    assert!(
        !heard.contains(&resident.0),
        "a resident no longer in scope was announced: {heard:?}"
    );

    w.server
        .call(
            Method::POST,
            &format!("/api/v1/devices/{}/revoke", v.device),
            Some(&w.coordinator_token),
            None,
        )
        .await
        .expect(204);
    let mut rest = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Some(chunk) = tokio::time::timeout_at(deadline, stream.chunk())
        .await
        .expect("the stream of a revoked device did not end")
        .unwrap()
    {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        rest.contains("event: ended\ndata: device_revoked"),
        "{rest:?}"
    );
}

/// An admin naming a district that does not exist gets a 400 that says so, not a 503
/// the client would retry forever.
async fn an_unknown_district_is_a_clear_400(t: TestStore) {
    let w = World::new(t).await;
    let nowhere = uuid::Uuid::now_v7();
    let admin = Some(w.admin_token.as_str());
    w.server
        .post(
            "/api/v1/stations",
            admin,
            &json!({ "name": "不存在的站", "district": nowhere }),
        )
        .await
        .expect_error(400, "unknown_district");
    w.server
        .post(
            "/api/v1/users",
            admin,
            &json!({ "login": "nobody", "display_name": "无人", "role": "coordinator",
                     "district": nowhere, "password": "a long enough password" }),
        )
        .await
        .expect_error(400, "unknown_district");
    // Nothing was created.
    assert!(
        w.server
            .store()
            .user_by_login("nobody")
            .await
            .unwrap()
            .is_none()
    );
}

/// A request whose seal is not its device's seal of the body (another device's, an
/// altered body's, or not a seal at all) is refused before anything is read, and the
/// phone keeps its visit; an unsealed request (an older phone) is taken.
async fn a_request_sealed_wrongly_is_refused_and_loses_nothing(t: TestStore) {
    let Scene {
        w, resident, mut v, ..
    } = scene(t).await;
    let other = w.volunteer("zhang").await;
    let before = stored(&w.server, resident).await;
    let visit = v.log_visit(resident, "读报");
    let body = v.replica.prepare(v.now()).unwrap().encode();
    let mut altered = body.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    for (why, body, seal) in [
        ("another device's seal", body.clone(), other.seal(&body)),
        ("a seal of another body", body.clone(), v.seal(&altered)),
        ("an altered body", altered.clone(), v.seal(&body)),
        ("not hex", body.clone(), "z".repeat(64)),
        ("too short", body.clone(), v.seal(&body)[..62].to_owned()),
    ] {
        let refused = v.post_sync_sealed(body, Some(&seal)).await.unwrap_err();
        refused.refused().expect_error(400, "bad_seal");
        assert_eq!(stored(&w.server, resident).await, before, "{why}");
    }
    assert!(v.pending() > 0, "the visit waits on the phone");

    // Unsealed, as an older phone sends it: taken.
    let bytes = v.post_sync_sealed(body, None).await.unwrap();
    let report = v
        .replica
        .apply(&sync_core::protocol::envelope::SyncResponse::decode(&bytes).unwrap())
        .unwrap();
    assert_eq!(report.receipted, vec![DocId::from(resident)]);
    // And the sealed path, as every other test's phone uses it.
    v.sync().await.unwrap();
    assert!(v.resident(resident).visits.iter().any(|x| x.id == visit));
    assert_eq!(v.pending(), 0);
}

conformance!(
    an_unknown_district_is_a_clear_400,
    a_request_sealed_wrongly_is_refused_and_loses_nothing,
    offline_edits_converge_and_the_review_reaches_both_phones,
    a_change_under_another_devices_actor_is_refused,
    a_volunteer_cannot_write_review_fields,
    a_volunteer_cannot_sync_a_resident_outside_their_scope,
    a_revoked_device_is_refused_and_told_to_purge,
    an_expired_token_is_refused,
    forged_tokens_are_refused,
    refresh_tokens_rotate,
    enrolment_codes_work_once_and_expire,
    names_with_control_characters_are_cleaned_or_refused,
    managing_others_is_refused_outside_ones_reach,
    password_logins_are_rate_limited,
    live_events_follow_the_listeners_scope,
    live_streams_follow_reassignment_and_revocation,
);
