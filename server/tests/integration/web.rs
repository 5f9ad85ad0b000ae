//! The coordinators' web pages over HTTP, as a browser without JavaScript uses them:
//! sign-in, sessions and CSRF, the visit log's scope and filters, the resident page,
//! and a review written on the web reaching the volunteer's phone.

use crate::backends::{TestStore, conformance};
use crate::web_client::{Browser, STAFF_PASSWORD, field, staff};
use crate::world::{COORDINATOR_PASSWORD, World};
use serde_json::json;
use std::collections::BTreeSet;
use sync_core::ids::*;
use sync_core::model::*;
use uuid::Uuid;

/// Every `visit-<uuid>` anchor linked from a visit log page, in order.
pub fn visits_listed(html: &str) -> Vec<String> {
    html.match_indices("#visit-")
        .map(|(i, _)| html[i + 7..i + 7 + 36].to_owned())
        .collect()
}

/// Sign-in and sign-out, sessions that end, CSRF, volunteers kept out, headers, and the
/// language switch.
async fn sign_in_sessions_and_headers(t: TestStore) {
    let w = World::new(t).await;
    let mut b = Browser::new(&w.server);

    // Signed out: every page sends the browser to sign in, and back afterwards.
    let answer = b.get("/web/visits?review=pending").await;
    answer.expect(303);
    assert_eq!(
        answer.location(),
        "/web/login?next=%2Fweb%2Fvisits%3Freview%3Dpending"
    );
    b.get("/web/residents/00000000-0000-0000-0000-000000000000")
        .await
        .expect(303);
    // A form posted without a session (it expired) returns to the log after sign-in,
    // never to a URL that only takes POST.
    let expired = b
        .post(
            "/web/residents/00000000-0000-0000-0000-000000000000/visits/00000000-0000-0000-0000-000000000000/review",
            &[("csrf", "x"), ("status", "approved")],
        )
        .await;
    expired.expect(303);
    assert_eq!(expired.location(), "/web/login?next=%2Fweb%2Fvisits");

    // The sign-in page: Chinese by default, with the security headers.
    let login = b.get("/web/login").await;
    login.expect(200);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert_eq!(login.headers["x-content-type-options"], "nosniff");
    assert!(login.text().contains("<html lang=\"zh-CN\">") && login.text().contains("登录"));
    assert!(!login.text().contains("<script"), "no scripts at all");

    // A form without its token (another site's, say) is refused.
    let refused = b
        .post(
            "/web/login",
            &[("login", "coordinator"), ("password", COORDINATOR_PASSWORD)],
        )
        .await;
    refused.expect(400);
    assert!(!b.cookies.contains_key("linli_session"));

    // Wrong password: refused, no session.
    let wrong = b.sign_in("coordinator", "not the password").await;
    wrong.expect(401);
    assert!(wrong.text().contains("用户名或密码不正确"));
    assert!(!b.cookies.contains_key("linli_session"));

    // Right password: a session cookie, HttpOnly, SameSite=Strict, for /web only.
    let ok = b.sign_in("coordinator", COORDINATOR_PASSWORD).await;
    ok.expect(303);
    assert_eq!(ok.location(), "/web/visits");
    let cookie = ok
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("linli_session="))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/web"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    let log = b.page("/web/visits").await;
    assert!(log.contains("李协调"), "the signed-in user is named");
    assert_eq!(
        Browser::new(&w.server).get("/web/visits").await.status,
        303,
        "the cookie is what signs in"
    );

    // English, remembered in a cookie; every visible string follows.
    let switched = b.get("/web/lang/en?back=%2Fweb%2Fvisits").await;
    switched.expect(303);
    assert_eq!(switched.location(), "/web/visits");
    let log = b.page("/web/visits").await;
    assert!(log.contains("<html lang=\"en\">") && log.contains("Visit log"));
    assert!(!log.contains("走访记录"));
    // The switch never sends the browser elsewhere.
    let evil = b
        .get("/web/lang/zh?back=https%3A%2F%2Fevil.example%2F")
        .await;
    assert_eq!(evil.location(), "/web/visits");

    // Sign-out needs the session's CSRF token.
    let csrf = field(&log, "csrf");
    b.post("/web/logout", &[("csrf", "forged")])
        .await
        .expect(403);
    b.get("/web/visits").await.expect(200);
    let session = b.cookies["linli_session"].clone();
    b.post("/web/logout", &[("csrf", &csrf)]).await.expect(303);
    assert!(!b.cookies.contains_key("linli_session"));
    // The old cookie is dead on the server, not only forgotten by the browser.
    b.cookies.insert("linli_session".into(), session);
    b.get("/web/visits").await.expect(303);

    // Volunteers use the phone app: no session for them.
    let answer = w
        .server
        .post(
            "/api/v1/users",
            Some(&w.coordinator_token),
            &json!({ "login": "zhao", "display_name": "赵志愿者", "role": "volunteer",
                     "password": "a volunteer's password" }),
        )
        .await;
    answer.expect(201);
    let mut v = Browser::new(&w.server);
    let refused = v.sign_in("zhao", "a volunteer's password").await;
    refused.expect(403);
    assert!(refused.text().contains("手机应用"));
    assert!(!v.cookies.contains_key("linli_session"));

    // A disabled or changed account is checked on every request: a made-up cookie is
    // worth nothing.
    let mut forged = Browser::new(&w.server);
    forged
        .cookies
        .insert("linli_session".into(), "made-up-token".into());
    forged.get("/web/visits").await.expect(303);

    // Unknown pages are a 404 page, in HTML.
    let missing = b.get("/web/nothing-here").await;
    missing.expect(404);
    assert!(missing.text().contains("<html"));
}

/// A district with a resident at each station, each with a volunteer's visit.
pub struct Log {
    pub w: World,
    pub resident_a: ResidentId,
    pub resident_b: ResidentId,
    pub visit_a: VisitId,
    pub visit_b: VisitId,
    pub volunteer_a: crate::phone::Phone,
}

pub async fn log_world(t: TestStore) -> Log {
    let w = World::new(t).await;
    let mut coordinator = w.coordinator_phone().await;
    let resident_a = w.resident(&mut coordinator, w.station_a, "王阿婆").await;
    let resident_b = w.resident(&mut coordinator, w.station_b, "李老伯").await;
    let mut volunteer_a = w.volunteer("wang").await;
    let mut volunteer_b = w.volunteer("zhang").await;
    w.assign(volunteer_a.user, resident_a).await;
    w.assign(volunteer_b.user, resident_b).await;
    volunteer_a.sync().await.unwrap();
    volunteer_b.sync().await.unwrap();
    let visit_a = volunteer_a.log_visit(resident_a, "读报，聊天");
    let visit_b = volunteer_b.log_visit(resident_b, "检查电线");
    volunteer_a.sync().await.unwrap();
    volunteer_b.sync().await.unwrap();
    Log {
        w,
        resident_a,
        resident_b,
        visit_a,
        visit_b,
        volunteer_a,
    }
}

/// Staff see their stations only, whatever they ask for; coordinators see the
/// district; filters narrow and bad filters are refused.
async fn visit_log_scope_and_filters(t: TestStore) {
    let Log {
        w,
        resident_a,
        resident_b,
        visit_a,
        visit_b,
        ..
    } = log_world(t).await;
    let (a, b) = (visit_a.0.to_string(), visit_b.0.to_string());

    let mut coordinator = Browser::new(&w.server);
    coordinator
        .sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    let log = coordinator.page("/web/visits").await;
    let listed = visits_listed(&log);
    assert_eq!(listed.len(), 2, "{log}");
    assert!(listed.contains(&a) && listed.contains(&b));
    assert!(log.contains("王阿婆") && log.contains("李老伯"));
    // The volunteer and station are named.
    assert!(log.contains("wang") && log.contains("华沙六村党群服务站"));

    // Filters: station, volunteer, review status, hazards, dates.
    let only_b = coordinator
        .page(&format!("/web/visits?station={}", w.station_b.0))
        .await;
    assert_eq!(visits_listed(&only_b), vec![b.clone()]);
    let volunteers = coordinator.page("/web/visits").await;
    assert!(volunteers.contains("filter-volunteer"));
    assert_eq!(
        visits_listed(&coordinator.page("/web/visits?review=approved").await),
        Vec::<String>::new()
    );
    assert_eq!(
        visits_listed(&coordinator.page("/web/visits?review=pending").await).len(),
        2
    );
    assert_eq!(
        visits_listed(&coordinator.page("/web/visits?hazards=yes").await).len(),
        0
    );
    assert_eq!(
        visits_listed(&coordinator.page("/web/visits?hazards=no").await).len(),
        2
    );
    assert_eq!(
        visits_listed(
            &coordinator
                .page("/web/visits?from=2000-01-01&to=2000-12-31")
                .await
        )
        .len(),
        0
    );
    assert_eq!(
        visits_listed(&coordinator.page("/web/visits?from=2000-01-01").await).len(),
        2
    );
    // Bad filters are a 400 page, never a query: no injection, no 500.
    for bad in [
        "station=%27%20OR%201%3D1%20--",
        "review=approved%27--",
        "from=yesterday",
        "hazards=maybe",
        "after=1_2",
        "from=%ZZ",
        "station=a&station=b",
    ] {
        let answer = coordinator.get(&format!("/web/visits?{bad}")).await;
        answer.expect(400);
        assert!(answer.text().contains("<html"), "{bad}");
    }

    // Station A's staff: A's visit only, however they ask for B's.
    staff(&w, "staff_a", &[w.station_a]).await;
    let mut s = Browser::new(&w.server);
    s.sign_in("staff_a", STAFF_PASSWORD).await.expect(303);
    let log = s.page("/web/visits").await;
    assert_eq!(visits_listed(&log), vec![a.clone()]);
    assert!(
        !log.contains("李老伯"),
        "B's resident is not named anywhere"
    );
    assert!(
        !log.contains("翔宇品城"),
        "B's station is not even a menu option"
    );
    let crafted = s
        .page(&format!("/web/visits?station={}", w.station_b.0))
        .await;
    assert_eq!(visits_listed(&crafted), Vec::<String>::new());
    assert!(!crafted.contains("李老伯"));
    let by_volunteer = s
        .page(&format!(
            "/web/visits?volunteer={}",
            w.server
                .store()
                .user_by_login("zhang")
                .await
                .unwrap()
                .unwrap()
                .id
                .0
        ))
        .await;
    assert_eq!(visits_listed(&by_volunteer), Vec::<String>::new());
    // B's resident page does not exist for them; A's does.
    s.get(&format!("/web/residents/{}", resident_b.0))
        .await
        .expect(404);
    s.get("/web/residents/not-an-id").await.expect(404);
    let page = s.page(&format!("/web/residents/{}", resident_a.0)).await;
    assert!(page.contains("王阿婆") && page.contains("读报，聊天"));
    // And a review of B's visit from A's staff finds nothing to review.
    let csrf = field(&page, "csrf");
    s.post(
        &format!(
            "/web/residents/{}/visits/{}/review",
            resident_b.0, visit_b.0
        ),
        &[("csrf", &csrf), ("status", "approved"), ("comment", "")],
    )
    .await
    .expect(404);

    // Staff with no station see nothing at all.
    staff(&w, "staff_none", &[]).await;
    let mut n = Browser::new(&w.server);
    n.sign_in("staff_none", STAFF_PASSWORD).await.expect(303);
    assert_eq!(visits_listed(&n.page("/web/visits").await).len(), 0);
    n.get(&format!("/web/residents/{}", resident_a.0))
        .await
        .expect(404);
}

/// Fifty visits a page, newest first, each visit on exactly one page.
async fn visit_log_pages(t: TestStore) {
    let Log {
        w,
        mut volunteer_a,
        resident_a,
        ..
    } = log_world(t).await;
    for i in 0..55 {
        volunteer_a.log_visit(resident_a, &format!("第{i}次"));
    }
    volunteer_a.sync().await.unwrap();
    let mut b = Browser::new(&w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    let first = b.page("/web/visits").await;
    let one = visits_listed(&first);
    assert_eq!(one.len(), 50);
    assert!(!first.contains("id=\"first-page\""));
    let next = field_href(&first, "next-page");
    let second = b.page(&next).await;
    let two = visits_listed(&second);
    assert_eq!(two.len(), 57 - 50);
    assert!(!second.contains("id=\"next-page\""));
    assert!(second.contains("id=\"first-page\""));
    let all: BTreeSet<&String> = one.iter().chain(&two).collect();
    assert_eq!(all.len(), 57, "no visit on two pages, none left out");
    // The filter travels with the page link.
    let filtered = b
        .page(&format!("/web/visits?station={}", w.station_a.0))
        .await;
    let next = field_href(&filtered, "next-page");
    assert!(
        next.contains(&format!("station={}", w.station_a.0)),
        "{next}"
    );
    assert_eq!(visits_listed(&b.page(&next).await).len(), 56 - 50);
}

/// The `href` of the link with `id`, unescaped.
pub fn field_href(html: &str, id: &str) -> String {
    let marker = "href=\"";
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no {id} in {html}"));
    let start = html[..at].rfind(marker).unwrap() + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// A review written on the web is an Automerge change under the coordinator's name:
/// the volunteer's phone receives it at its next sync, and the log shows it.
async fn review_on_the_web_reaches_the_phone(t: TestStore) {
    let Log {
        w,
        resident_a,
        visit_a,
        mut volunteer_a,
        ..
    } = log_world(t).await;
    let mut b = Browser::new(&w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    let page = b.page(&format!("/web/residents/{}", resident_a.0)).await;
    let action = format!(
        "/web/residents/{}/visits/{}/review",
        resident_a.0, visit_a.0
    );
    assert!(page.contains(&action), "the page offers the review form");
    let csrf = field(&page, "csrf");

    // Without the session's token nothing is written.
    let feed = w
        .server
        .store()
        .projection(resident_a)
        .await
        .unwrap()
        .unwrap();
    b.post(
        &action,
        &[("csrf", "forged"), ("status", "approved"), ("comment", "")],
    )
    .await
    .expect(403);
    b.post(
        &action,
        &[("csrf", &csrf), ("status", "pending"), ("comment", "")],
    )
    .await
    .expect(400);
    assert_eq!(
        w.server
            .store()
            .projection(resident_a)
            .await
            .unwrap()
            .unwrap(),
        feed
    );

    let comment = "请复查血压 <b>&</b>";
    let done = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("status", "needs_attention"),
                ("comment", comment),
            ],
        )
        .await;
    done.expect(303);
    let page = b.page(&done.location()).await;
    assert!(page.contains("id=\"notice\""));
    assert!(
        page.contains("请复查血压 &#60;b&#62;&#38;&#60;/b&#62;")
            || page.contains("请复查血压 &lt;b&gt;&amp;&lt;/b&gt;"),
        "escaped: {page}"
    );
    assert!(!page.contains("<b>&</b>"));
    assert_eq!(
        visits_listed(&b.page("/web/visits?review=needs_attention").await),
        vec![visit_a.0.to_string()]
    );

    // The phone receives it at its next sync.
    let report = volunteer_a.sync().await.unwrap();
    assert!(report.received_changes >= 1, "{report:?}");
    let visit = volunteer_a
        .resident(resident_a)
        .visits
        .into_iter()
        .find(|v| v.id == visit_a)
        .unwrap();
    let review = visit.review.clone().expect("the review reached the phone");
    assert_eq!(review.status, ReviewStatus::NeedsAttention);
    assert_eq!(review.comment, comment);
    assert_eq!(review.reviewer, w.coordinator);
    // Nothing was quarantined, and the store checks clean.
    assert!(w.server.store().quarantined(10).await.unwrap().is_empty());
    assert!(w.server.store().check().await.unwrap().ok());

    // Approving afterwards replaces the review; the phone follows again.
    b.post(
        &action,
        &[("csrf", &csrf), ("status", "approved"), ("comment", "")],
    )
    .await
    .expect(303);
    volunteer_a.sync().await.unwrap();
    let visit = volunteer_a
        .resident(resident_a)
        .visits
        .into_iter()
        .find(|v| v.id == visit_a)
        .unwrap();
    assert_eq!(visit.review_status(), ReviewStatus::Approved);
}

/// Two phones change one profile field offline: the resident page lists both values
/// with the history of changes; the coordinator keeps one, and both phones follow.
async fn conflicts_are_resolved_on_the_web(t: TestStore) {
    use sync_core::doc::casefile::{FieldValue, ProfileField};
    let Log {
        w,
        resident_a,
        mut volunteer_a,
        ..
    } = log_world(t).await;
    let mut other = w.volunteer("li").await;
    w.assign(other.user, resident_a).await;
    other.sync().await.unwrap();
    for (phone, number) in [(&mut volunteer_a, "021-1111"), (&mut other, "021-2222")] {
        phone.edit(resident_a, |file, editor| {
            file.update_profile(
                editor,
                ProfileField::Phone,
                &FieldValue::Text(number.into()),
            )
            .unwrap();
        });
    }
    volunteer_a.sync().await.unwrap();
    other.sync().await.unwrap();

    let mut b = Browser::new(&w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    let path = format!("/web/residents/{}", resident_a.0);
    let page = b.page(&path).await;
    assert!(page.contains("id=\"conflict-phone\""), "{page}");
    assert!(page.contains("021-1111") && page.contains("021-2222"));
    // The history names the phones that wrote, newest first.
    assert!(page.matches("class=\"change\"").count() >= 4, "{page}");
    assert!(page.contains("test phone"));
    let csrf = field(&page, "csrf");
    let action = format!("/web/residents/{}/resolve", resident_a.0);

    // Bad choices are refused, and nothing is written.
    for form in [
        [("field", "salary"), ("kind", "text"), ("value", "1")],
        [("field", "birth_year"), ("kind", "int"), ("value", "old")],
        [("field", "birth_year"), ("kind", "int"), ("value", "1700")],
    ] {
        let mut form = form.to_vec();
        form.push(("csrf", &csrf));
        b.post(&action, &form).await.expect(400);
    }
    b.post(
        &action,
        &[
            ("csrf", "forged"),
            ("field", "phone"),
            ("kind", "text"),
            ("value", "021-2222"),
        ],
    )
    .await
    .expect(403);
    assert!(b.page(&path).await.contains("id=\"conflict-phone\""));

    // Staff of the other station cannot even find it.
    staff(&w, "staff_b", &[w.station_b]).await;
    let mut s = Browser::new(&w.server);
    s.sign_in("staff_b", STAFF_PASSWORD).await.expect(303);
    let their_csrf = field(&s.page("/web/visits").await, "csrf");
    s.post(
        &action,
        &[
            ("csrf", &their_csrf),
            ("field", "phone"),
            ("kind", "text"),
            ("value", "x"),
        ],
    )
    .await
    .expect(404);

    let done = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("field", "phone"),
                ("kind", "text"),
                ("value", "021-2222"),
            ],
        )
        .await;
    done.expect(303);
    let page = b.page(&done.location()).await;
    assert!(page.contains("id=\"no-conflicts\"") && page.contains("id=\"notice\""));
    assert!(page.contains("网页"), "the history shows the web edit");
    for phone in [&mut volunteer_a, &mut other] {
        phone.sync().await.unwrap();
        assert_eq!(phone.resident(resident_a).profile.phone, "021-2222");
        assert!(phone.case_file(resident_a).conflicts().unwrap().is_empty());
    }
    assert!(w.server.store().quarantined(10).await.unwrap().is_empty());
}

/// The follow-up and visits-due lists: what they hold, their filters, and staff who
/// see only their stations.
async fn follow_up_and_due_lists(t: TestStore) {
    let Log {
        w,
        resident_a,
        resident_b,
        ..
    } = log_world(t).await;
    let mut coordinator = w.coordinator_phone().await;
    coordinator.sync().await.unwrap();
    // Two residents nobody has visited, one at each station.
    w.resident(&mut coordinator, w.station_a, "孙阿姨").await;
    w.resident(&mut coordinator, w.station_b, "周老伯").await;
    let now = server::now_ms();
    for (resident, title, deadline) in [
        (resident_a, "更换插线板", now - 86_400_000),
        (resident_b, "联系家属", now + 7 * 86_400_000),
    ] {
        coordinator.edit(resident, |file, editor| {
            file.open_follow_up(
                editor,
                FollowUpId(Uuid::now_v7()),
                None,
                title,
                None,
                Some(deadline),
            )
            .unwrap();
        });
    }
    coordinator.sync().await.unwrap();

    let mut b = Browser::new(&w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    let open = b.page("/web/follow-ups").await;
    assert_eq!(open.matches("class=\"follow-up\"").count(), 2, "{open}");
    assert!(open.contains("更换插线板") && open.contains("联系家属"));
    let overdue = b.page("/web/follow-ups?status=overdue").await;
    assert_eq!(overdue.matches("class=\"follow-up\"").count(), 1);
    assert!(overdue.contains("更换插线板") && overdue.contains("已逾期"));
    assert!(
        b.page("/web/follow-ups?status=closed")
            .await
            .contains("id=\"no-follow-ups\"")
    );
    let due = b.page("/web/due").await;
    assert_eq!(due.matches("class=\"due\"").count(), 2, "{due}");
    assert!(due.contains("孙阿姨") && due.contains("周老伯") && due.contains("从未走访"));
    assert!(
        !due.contains("王阿婆"),
        "visited an hour ago, every 7 days: not due"
    );
    for bad in [
        "/web/follow-ups?status=lost",
        "/web/due?page=-1",
        "/web/due?station=nope",
    ] {
        b.get(bad).await.expect(400);
    }

    staff(&w, "staff_a", &[w.station_a]).await;
    let mut s = Browser::new(&w.server);
    s.sign_in("staff_a", STAFF_PASSWORD).await.expect(303);
    let theirs = s.page("/web/follow-ups").await;
    assert_eq!(theirs.matches("class=\"follow-up\"").count(), 1);
    assert!(theirs.contains("更换插线板") && !theirs.contains("联系家属"));
    let crafted = s
        .page(&format!("/web/follow-ups?station={}", w.station_b.0))
        .await;
    assert!(crafted.contains("id=\"no-follow-ups\"") && !crafted.contains("联系家属"));
    let due = s.page("/web/due").await;
    assert!(due.contains("孙阿姨") && !due.contains("周老伯"), "{due}");
    let crafted = s.page(&format!("/web/due?station={}", w.station_b.0)).await;
    assert!(crafted.contains("id=\"no-due\"") && !crafted.contains("周老伯"));
}

/// Exports: the log's rows within the scope, as CSV and as a workbook, with text that
/// a spreadsheet would take for a formula defused.
async fn exports_follow_filters_and_scope(t: TestStore) {
    let Log {
        w,
        resident_a,
        mut volunteer_a,
        ..
    } = log_world(t).await;
    volunteer_a.log_visit(resident_a, "=HYPERLINK(\"http://evil.example\",\"点我\")");
    volunteer_a.sync().await.unwrap();

    let mut b = Browser::new(&w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    let log = b.page("/web/visits?review=pending").await;
    assert!(
        log.contains("/web/visits/export.csv?review=pending"),
        "the links keep the filters"
    );
    let csv = b.get("/web/visits/export.csv").await;
    csv.expect(200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert!(csv.body.starts_with(b"\xEF\xBB\xBF"), "a BOM for Excel");
    let text = csv.text();
    assert_eq!(text.lines().count(), 1 + 3, "{text}");
    assert!(text.contains("时间") && text.contains("王阿婆") && text.contains("李老伯"));
    assert!(
        text.contains("'=HYPERLINK") && !text.contains(",=HYPERLINK"),
        "{text}"
    );
    let only_b = b
        .get(&format!("/web/visits/export.csv?station={}", w.station_b.0))
        .await
        .text();
    assert_eq!(only_b.lines().count(), 2);
    assert!(only_b.contains("李老伯") && !only_b.contains("王阿婆"));
    b.get("/web/visits/export.csv?from=soon").await.expect(400);

    let xlsx = b.get("/web/visits/export.xlsx").await;
    xlsx.expect(200);
    let strings = workbook_strings(&xlsx.body);
    // A workbook holds the note as a string cell, never a formula: it keeps its text.
    assert!(
        strings.contains("王阿婆") && strings.contains("李老伯") && strings.contains("=HYPERLINK")
    );
    assert!(!strings.contains("<f>"), "no formula cells");

    // Station A's staff export A's visits only, however they ask.
    staff(&w, "staff_a", &[w.station_a]).await;
    let mut s = Browser::new(&w.server);
    s.sign_in("staff_a", STAFF_PASSWORD).await.expect(303);
    let theirs = s.get("/web/visits/export.csv").await.text();
    assert_eq!(theirs.lines().count(), 1 + 2);
    assert!(!theirs.contains("李老伯"));
    let crafted = s
        .get(&format!("/web/visits/export.csv?station={}", w.station_b.0))
        .await
        .text();
    assert_eq!(crafted.lines().count(), 1, "the header alone: {crafted}");
    let strings = workbook_strings(&s.get("/web/visits/export.xlsx").await.body);
    assert!(strings.contains("王阿婆") && !strings.contains("李老伯"));
    // Signed out, no export.
    Browser::new(&w.server)
        .get("/web/visits/export.csv")
        .await
        .expect(303);
}

/// Every XML part of an .xlsx workbook, concatenated.
fn workbook_strings(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut all = String::new();
    for i in 0..zip.len() {
        let mut part = zip.by_index(i).unwrap();
        if part.name().unwrap().ends_with(".xml") {
            part.read_to_string(&mut all).unwrap();
        }
    }
    all
}

conformance!(
    sign_in_sessions_and_headers,
    visit_log_scope_and_filters,
    visit_log_pages,
    review_on_the_web_reaches_the_phone,
    conflicts_are_resolved_on_the_web,
    follow_up_and_due_lists,
    exports_follow_filters_and_scope,
);
