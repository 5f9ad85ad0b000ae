//! Station hubs on the coordinators' pages (issue 15): a coordinator issues a hub code
//! for a station and sees the commands to run; the code enrols a hub once; the page
//! lists the hub and revokes it. Station staff and another district's coordinator are
//! refused.

use crate::backends::{TestStore, conformance};
use crate::web_client::{
    Browser, STAFF_PASSWORD, coordinator, field, other_district_coordinator, staff, unescape,
};
use crate::world::World;
use serde_json::json;

/// What the code page shows: the code and the enrol command.
fn code_of(html: &str) -> String {
    let from =
        html.find("id=\"hub-enrolment-code\">").unwrap() + "id=\"hub-enrolment-code\">".len();
    let to = html[from..].find('<').unwrap();
    html[from..from + to].to_owned()
}

async fn issue(b: &mut Browser, station: &str) -> crate::serving::Answer {
    let csrf = field(&b.page("/web/admin/hubs").await, "csrf");
    b.post(
        "/web/admin/hubs/code",
        &[("csrf", &csrf), ("station", station)],
    )
    .await
}

async fn a_coordinator_enrols_lists_and_revokes_a_hub_from_the_page(t: TestStore) {
    let w = World::new(t).await;
    let mut b = coordinator(&w).await;
    let page = b.page("/web/admin/hubs").await;
    assert!(
        page.contains("站点中继") && page.contains("id=\"no-hubs\""),
        "{page}"
    );
    assert!(
        b.page("/web/admin/users")
            .await
            .contains("href=\"/web/admin/hubs\"")
    );

    let answer = issue(&mut b, &w.station_a.0.to_string()).await;
    answer.expect(200);
    let html = answer.text();
    let code = code_of(&html);
    assert!(html.contains("<svg"), "a QR code");
    let command = unescape(&html);
    assert!(
        command.contains(&format!(
            "server hub enrol --upstream http://{}",
            w.server.base.trim_start_matches("http://")
        )) && command.contains(&format!("--code {code}")),
        "{command}"
    );

    // The code enrols a hub once.
    let enrolled = w
        .server
        .post(
            "/api/v1/hubs/enrol",
            None,
            &json!({ "code": code, "name": "华沙站中继" }),
        )
        .await;
    enrolled.expect(200);
    let hub = enrolled.json()["hub_id"].as_str().unwrap().to_owned();
    w.server
        .post("/api/v1/hubs/enrol", None, &json!({ "code": code }))
        .await
        .expect_error(401, "bad_credentials");
    let page = b.page("/web/admin/hubs").await;
    assert!(page.contains(&format!("id=\"hub-{hub}\"")) && page.contains("华沙站中继"));
    assert!(page.contains("华沙六村党群服务站"));
    assert!(page.contains("在站点待转交") && page.contains("<td class=\"waiting\">—</td>"));

    // What the hub still holds for the district server, as it says at each call, is
    // on the page: a hub whose outbox does not drain is noticed.
    let access = enrolled.json()["access_token"].as_str().unwrap().to_owned();
    let oldest = server::now_ms() - 2 * 86_400_000;
    w.server
        .get(
            &format!("/api/v1/hubs/roster?waiting=3&oldest={oldest}"),
            Some(&access),
        )
        .await
        .expect(200);
    let page = b.page("/web/admin/hubs").await;
    assert!(page.contains("<td class=\"waiting\">3 (最早 "), "{page}");
    w.server
        .get("/api/v1/hubs/roster?waiting=0", Some(&access))
        .await
        .expect(200);
    assert!(
        b.page("/web/admin/hubs")
            .await
            .contains("<td class=\"waiting\">0</td>")
    );

    // Another district's coordinator can neither revoke it nor issue codes here.
    let mut next_door = other_district_coordinator(&w, "waiqu", "another long password").await;
    let csrf = field(&next_door.page("/web/admin/hubs").await, "csrf");
    next_door
        .post(&format!("/web/admin/hubs/{hub}/revoke"), &[("csrf", &csrf)])
        .await
        .expect(404);
    next_door
        .post(
            "/web/admin/hubs/code",
            &[("csrf", &csrf), ("station", &w.station_a.0.to_string())],
        )
        .await
        .expect(404);
    assert!(!next_door.page("/web/admin/hubs").await.contains(&hub));
    // Station staff administer nothing.
    staff(&w, "zhanzhang", &[w.station_a]).await;
    let mut s = Browser::new(&w.server);
    s.sign_in("zhanzhang", STAFF_PASSWORD).await.expect(303);
    assert_eq!(s.get("/web/admin/hubs").await.status, 403);
    // No form without its CSRF token.
    b.post(&format!("/web/admin/hubs/{hub}/revoke"), &[])
        .await
        .expect(403);

    // Revoked from the page: its refresh is refused from now on.
    let csrf = field(&b.page("/web/admin/hubs").await, "csrf");
    let revoked = b
        .post(&format!("/web/admin/hubs/{hub}/revoke"), &[("csrf", &csrf)])
        .await;
    revoked.expect(303);
    let page = b.page("/web/admin/hubs?revoked=1").await;
    assert!(page.contains("已停用"), "{page}");
    let refresh = enrolled.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    w.server
        .post(
            "/api/v1/hubs/token",
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await
        .expect_error(401, "hub_revoked");
}

/// A code for enrolling at a station's hub, from the user's page: offered once the
/// station has a hub, it says where it works and lasts a week, and the hub's roster
/// carries its hash (never the code). Another district's coordinator cannot issue one.
async fn a_coordinator_issues_a_code_for_a_stations_hub_from_the_users_page(t: TestStore) {
    let w = World::new(t).await;
    let li = w.user("li", "volunteer", &[]).await;
    let mut b = coordinator(&w).await;
    let user_page = format!("/web/admin/users/{}", li.0);
    assert!(!b.page(&user_page).await.contains("id=\"issue-hub-code\""));

    let code = code_of(&issue(&mut b, &w.station_a.0.to_string()).await.text());
    let enrolled = w
        .server
        .post(
            "/api/v1/hubs/enrol",
            None,
            &json!({ "code": code, "name": "华沙站中继" }),
        )
        .await;
    enrolled.expect(200);
    let page = b.page(&user_page).await;
    assert!(page.contains("id=\"issue-hub-code\""), "{page}");
    assert!(page.contains(&format!("<option value=\"{}\">", w.station_a.0)));

    let csrf = field(&page, "csrf");
    let station = w.station_a.0.to_string();
    let answer = b
        .post(
            &format!("{user_page}/code"),
            &[("csrf", &csrf), ("station", &station)],
        )
        .await;
    answer.expect(200);
    let html = answer.text();
    assert!(
        html.contains("id=\"at-hub\"") && html.contains("华沙六村党群服务站"),
        "{html}"
    );
    let from = html.find("id=\"enrolment-code\">").unwrap() + "id=\"enrolment-code\">".len();
    let phone_code = &html[from..from + html[from..].find('<').unwrap()];
    // The hub's roster carries the code's hash, not the code.
    let access = enrolled.json()["access_token"].as_str().unwrap().to_owned();
    let roster = w.server.get("/api/v1/hubs/roster", Some(&access)).await;
    roster.expect(200);
    let hash = hex::encode(sync_core::protocol::channel::code_hash(phone_code));
    assert_eq!(roster.json()["codes"][0]["hash"], json!(hash));
    assert_eq!(roster.json()["codes"][0]["user"], json!(li.0));
    assert!(!roster.text().contains(phone_code));
    // A week, not 15 minutes.
    let expires = roster.json()["codes"][0]["expires_at"].as_i64().unwrap();
    assert!(expires > server::now_ms() + 6 * 86_400_000);

    // Another district's coordinator: the user is not theirs.
    let mut next_door = other_district_coordinator(&w, "waiqu", "another long password").await;
    let csrf = field(&next_door.page("/web/admin/hubs").await, "csrf");
    next_door
        .post(
            &format!("{user_page}/code"),
            &[("csrf", &csrf), ("station", &station)],
        )
        .await
        .expect(404);
    // A station of no district here.
    let csrf = field(&b.page(&user_page).await, "csrf");
    b.post(
        &format!("{user_page}/code"),
        &[("csrf", &csrf), ("station", &uuid::Uuid::nil().to_string())],
    )
    .await
    .expect(404);
}

conformance!(
    a_coordinator_enrols_lists_and_revokes_a_hub_from_the_page,
    a_coordinator_issues_a_code_for_a_stations_hub_from_the_users_page,
);
