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

conformance!(a_coordinator_enrols_lists_and_revokes_a_hub_from_the_page);
