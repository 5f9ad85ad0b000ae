//! A resident's care on the web (issue 12), on both backends, over HTTP as a browser
//! without JavaScript uses the resident page: a coordinator assigns and unassigns a
//! volunteer (the phone receives, then purges, the case file), edits the profile (only
//! changed fields are written, and the phones receive them) and moves the resident to
//! another station (the old station's staff phone purges it, the new one's receives
//! it). From the attacker's side: another station's staff, a forged CSRF token, bad
//! input and another district's station change nothing.

use crate::backends::{TestStore, conformance};
use crate::web_client::{Browser, STAFF_PASSWORD, field, staff};
use crate::world::{COORDINATOR_PASSWORD, World, stored};
use serde_json::json;
use sync_core::model::RiskLevel;

async fn coordinator(w: &World) -> Browser {
    let mut b = Browser::new(&w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    b
}

async fn volunteers_are_assigned_and_unassigned_on_the_web(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let mut v = w.volunteer("wang").await;
    v.sync().await.unwrap();
    assert!(!v.holds(resident));
    let page_path = format!("/web/residents/{}", resident.0);

    // Station B's staff cannot assign anyone to station A's resident.
    staff(&w, "staff-b", &[w.station_b]).await;
    let mut sb = Browser::new(&w.server);
    sb.sign_in("staff-b", STAFF_PASSWORD).await.expect(303);
    let csrf_b = field(&sb.page("/web/visits").await, "csrf");
    let volunteer = v.user.0.to_string();
    sb.post(
        &format!("{page_path}/volunteers"),
        &[("csrf", &csrf_b), ("volunteer", &volunteer)],
    )
    .await
    .expect(404);

    let mut b = coordinator(&w).await;
    let page = b.page(&page_path).await;
    assert!(page.contains("id=\"no-volunteers\""), "{page}");
    let csrf = field(&page, "csrf");
    b.post(
        &format!("{page_path}/volunteers"),
        &[("csrf", "forged"), ("volunteer", &volunteer)],
    )
    .await
    .expect(403);
    v.sync().await.unwrap();
    assert!(!v.holds(resident), "nothing was assigned");

    let answer = b
        .post(
            &format!("{page_path}/volunteers"),
            &[("csrf", &csrf), ("volunteer", &volunteer)],
        )
        .await;
    answer.expect(303);
    let page = b.page(&answer.location()).await;
    assert!(
        page.contains(&format!("id=\"volunteer-{volunteer}\"")),
        "{page}"
    );
    v.sync().await.unwrap();
    assert!(v.holds(resident), "the phone receives the case file");

    // The coordinator is no volunteer: refused with a reason.
    let coordinator_id = w.coordinator.0.to_string();
    b.post(
        &format!("{page_path}/volunteers"),
        &[("csrf", &csrf), ("volunteer", &coordinator_id)],
    )
    .await
    .expect(400);

    b.post(
        &format!("{page_path}/volunteers/{volunteer}/remove"),
        &[("csrf", &csrf)],
    )
    .await
    .expect(303);
    let page = b.page(&page_path).await;
    assert!(page.contains("id=\"no-volunteers\""), "{page}");
    v.sync().await.unwrap();
    assert!(!v.holds(resident), "the phone purges the case file");
}

async fn the_profile_is_edited_on_the_web_and_reaches_the_phones(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();
    let page_path = format!("/web/residents/{}", resident.0);
    let mut b = coordinator(&w).await;
    let page = b.page(&page_path).await;
    let csrf = field(&page, "csrf");
    let post = |phone: &'static str, days: &'static str, risk: &'static str| {
        let csrf = csrf.clone();
        let path = format!("{page_path}/profile");
        (path, csrf, phone, days, risk)
    };

    // Bad input is a 400 and writes nothing.
    let before = stored(&w.server, resident).await;
    for (phone, days, risk) in [
        ("13800000001", "每周", "high"),
        ("13800000001", "0", "high"),
        ("13800000001", "7", "dangerous"),
    ] {
        let (path, csrf, ..) = post(phone, days, risk);
        b.post(
            &path,
            &[
                ("csrf", &csrf),
                ("phone", phone),
                ("address", "华沙六村 12 号 301"),
                ("visit_every_days", days),
                ("risk_level", risk),
            ],
        )
        .await
        .expect(400);
    }
    assert_eq!(stored(&w.server, resident).await.heads, before.heads);

    let (path, csrf, ..) = post("", "", "");
    let answer = b
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("phone", "13912345678"),
                ("address", "华沙六村 12 号 301"),
                ("visit_every_days", "3"),
                ("risk_level", "high"),
            ],
        )
        .await;
    answer.expect(303);
    assert!(
        answer.location().contains("care=saved"),
        "{}",
        answer.location()
    );
    let page = b.page(&page_path).await;
    assert!(page.contains("13912345678"), "{page}");
    // The same form again writes nothing.
    let after = stored(&w.server, resident).await;
    let again = b
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("phone", "13912345678"),
                ("address", "华沙六村 12 号 301"),
                ("visit_every_days", "3"),
                ("risk_level", "high"),
            ],
        )
        .await;
    assert!(
        again.location().contains("care=unchanged"),
        "{}",
        again.location()
    );
    assert_eq!(stored(&w.server, resident).await.feed, after.feed);

    v.sync().await.unwrap();
    let profile = v.resident(resident).profile;
    assert_eq!(profile.phone, "13912345678");
    assert_eq!(profile.visit_every_days, Some(3));
    assert_eq!(profile.risk_level, Some(RiskLevel::High));
}

async fn a_resident_moves_station_and_the_staff_phones_follow(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let staff_a_id = w
        .user("staff-a-phone", "station_staff", &[w.station_a])
        .await;
    let staff_b_id = w
        .user("staff-b-phone", "station_staff", &[w.station_b])
        .await;
    let mut staff_a = w.phone(staff_a_id).await;
    let mut staff_b = w.phone(staff_b_id).await;
    staff_a.sync().await.unwrap();
    staff_b.sync().await.unwrap();
    assert!(staff_a.holds(resident) && !staff_b.holds(resident));

    let page_path = format!("/web/residents/{}", resident.0);
    // Station A's staff on the web are offered no move, and cannot post one.
    staff(&w, "staff-a", &[w.station_a]).await;
    let mut sa = Browser::new(&w.server);
    sa.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    let page = sa.page(&page_path).await;
    assert!(!page.contains("id=\"station-form\""), "{page}");
    let csrf_a = field(&page, "csrf");
    let b_station = w.station_b.0.to_string();
    sa.post(
        &format!("{page_path}/station"),
        &[("csrf", &csrf_a), ("station", &b_station)],
    )
    .await
    .expect(403);

    let mut b = coordinator(&w).await;
    let page = b.page(&page_path).await;
    assert!(page.contains("id=\"station-form\""), "{page}");
    let csrf = field(&page, "csrf");
    // Another district's station is refused.
    let other = w
        .server
        .post(
            "/api/v1/districts",
            Some(&w.admin_token),
            &json!({ "name": "临汾路街道" }),
        )
        .await;
    let other_district = other.json()["id"].as_str().unwrap().to_owned();
    let elsewhere = w
        .server
        .post(
            "/api/v1/stations",
            Some(&w.admin_token),
            &json!({ "name": "别处的站", "district": other_district }),
        )
        .await;
    elsewhere.expect(201);
    let elsewhere = elsewhere.json()["id"].as_str().unwrap().to_owned();
    b.post(
        &format!("{page_path}/station"),
        &[("csrf", &csrf), ("station", &elsewhere)],
    )
    .await
    .expect(400);

    b.post(
        &format!("{page_path}/station"),
        &[("csrf", &csrf), ("station", &b_station)],
    )
    .await
    .expect(303);
    let page = b.page(&page_path).await;
    assert!(page.contains("翔宇品城党群服务站"), "{page}");
    staff_a.sync().await.unwrap();
    staff_b.sync().await.unwrap();
    assert!(
        !staff_a.holds(resident),
        "the old station's phone purges it"
    );
    assert!(
        staff_b.holds(resident),
        "the new station's phone receives it"
    );
    assert_eq!(staff_b.resident(resident).station, w.station_b);
}

conformance!(
    volunteers_are_assigned_and_unassigned_on_the_web,
    the_profile_is_edited_on_the_web_and_reaches_the_phones,
    a_resident_moves_station_and_the_staff_phones_follow,
);
