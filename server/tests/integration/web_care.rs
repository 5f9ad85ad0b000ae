//! A resident's care on the web (issue 12), on both backends, over HTTP as a browser
//! without JavaScript uses the resident page: a coordinator assigns and unassigns a
//! volunteer (the phone receives, then purges, the case file), edits the profile (only
//! changed fields are written, and the phones receive them) and moves the resident to
//! another station (the old station's staff phone purges it, the new one's receives
//! it). From the attacker's side: another station's staff, a forged CSRF token, bad
//! input and another district's station change nothing.

use crate::backends::{TestStore, conformance};
use crate::web_client::{Browser, STAFF_PASSWORD, coordinator, field, other_district, staff};
use crate::world::{World, stored};
use serde_json::json;
use sync_core::model::RiskLevel;

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
    let other_district = other_district(&w).await;
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

/// The rows of the resident list: the residents' names, in order.
fn listed(html: &str) -> Vec<String> {
    html.split("<a class=\"resident\" href=\"")
        .skip(1)
        .map(|s| {
            s.split_once('>')
                .unwrap()
                .1
                .split('<')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn the_resident_list_searches_filters_and_flags_conflicts(t: TestStore) {
    use sync_core::doc::casefile::{FieldValue, ProfileField};
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let wang = w.resident(&mut c, w.station_a, "王阿婆").await;
    let li = w.resident(&mut c, w.station_a, "李老伯").await;
    let zhao = w.resident(&mut c, w.station_b, "赵奶奶").await;
    c.edit(li, |f, e| {
        f.update_profile(e, ProfileField::RiskLevel, &FieldValue::Text("low".into()))
            .unwrap();
    });
    c.sync().await.unwrap();

    let mut b = coordinator(&w).await;
    let all = b.page("/web/residents").await;
    assert_eq!(listed(&all), vec!["李老伯", "王阿婆", "赵奶奶"], "{all}");
    assert!(all.contains("id=\"nav-residents\""));
    let found = b.page("/web/residents?q=%E7%8E%8B").await; // 王
    assert_eq!(listed(&found), vec!["王阿婆"]);
    let by_address = b.page("/web/residents?q=%E5%8D%8E%E6%B2%99").await; // 华沙
    assert_eq!(listed(&by_address).len(), 3, "{by_address}");
    // LIKE's wildcards are searched for, not obeyed.
    let wild = b.page("/web/residents?q=%25").await;
    assert!(listed(&wild).is_empty(), "{wild}");
    // A NUL (which PostgreSQL refuses in text) is searched for like any character.
    let nul = b.page("/web/residents?q=%E7%8E%8B%00").await;
    assert!(listed(&nul).is_empty(), "{nul}");
    let at_b = b
        .page(&format!("/web/residents?station={}", w.station_b.0))
        .await;
    assert_eq!(listed(&at_b), vec!["赵奶奶"]);
    let low = b.page("/web/residents?risk=low").await;
    assert_eq!(listed(&low), vec!["李老伯"]);
    b.get("/web/residents?risk=extreme").await.expect(400);

    // Station A's staff see station A's residents only, whatever they ask for.
    staff(&w, "staff-a", &[w.station_a]).await;
    let mut sa = Browser::new(&w.server);
    sa.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    let theirs = sa.page("/web/residents").await;
    assert_eq!(listed(&theirs), vec!["李老伯", "王阿婆"]);
    let asked = sa
        .page(&format!(
            "/web/residents?station={}&q=%E8%B5%B5",
            w.station_b.0
        ))
        .await;
    assert!(listed(&asked).is_empty(), "{asked}");

    // Two phones change 王阿婆's phone number at once: flagged in the list and the log.
    let staff_id = w
        .user("staff-a-phone", "station_staff", &[w.station_a])
        .await;
    let mut s = w.phone(staff_id).await;
    s.sync().await.unwrap();
    c.edit(wang, |f, e| {
        f.update_profile(
            e,
            ProfileField::Phone,
            &FieldValue::Text("13900000001".into()),
        )
        .unwrap();
    });
    s.edit(wang, |f, e| {
        f.update_profile(
            e,
            ProfileField::Phone,
            &FieldValue::Text("13900000002".into()),
        )
        .unwrap();
    });
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, wang).await;
    v.sync().await.unwrap();
    v.log_visit(wang, "看望");
    v.sync().await.unwrap();
    c.sync().await.unwrap();
    s.sync().await.unwrap();
    let flagged = b.page("/web/residents?conflicts=1").await;
    assert_eq!(listed(&flagged), vec!["王阿婆"], "{flagged}");
    assert!(flagged.contains("档案有冲突 (1)"), "{flagged}");
    let log = b.page("/web/visits").await;
    assert!(log.contains("class=\"flag conflict\""), "{log}");
    let _ = zhao;
}

/// The due page and the phones apply one rule (`Profile::due_on`): on the same
/// residents, the page lists exactly those the rule lists, with the same status; a
/// resident with no visit frequency is never listed, however long ago the last visit.
async fn the_due_page_and_the_phones_agree(t: TestStore) {
    use sync_core::doc::casefile::{FieldValue, ProfileField};
    use sync_core::model::{DueOn, LocalDay};
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let mut v = w.volunteer("wang").await;
    const DAY: i64 = 86_400_000;
    // (name, visit every N days, days ago of the last visit)
    let cases: [(&str, Option<i64>, Option<i64>); 7] = [
        ("甲 never visited", Some(7), None),
        ("乙 overdue", Some(7), Some(8)),
        ("丙 visited lately", Some(7), Some(0)),
        ("丁 no frequency", None, Some(60)),
        ("戊 no frequency never", None, None),
        ("己 daily", Some(1), Some(0)),
        ("庚 daily yesterday", Some(1), Some(1)),
    ];
    let mut residents = Vec::new();
    for (name, every, ago) in cases {
        let r = w.resident(&mut c, w.station_a, name).await;
        let value = every.map_or(FieldValue::Empty, FieldValue::Int);
        c.edit(r, |f, e| {
            f.update_profile(e, ProfileField::VisitEveryDays, &value)
                .unwrap();
        });
        c.sync().await.unwrap();
        if let Some(days) = ago {
            w.assign(v.user, r).await;
            v.sync().await.unwrap();
            v.clock_offset = -days * DAY;
            v.log_visit(r, "走访");
            v.clock_offset = 0;
            v.sync().await.unwrap();
        }
        residents.push((r, name));
    }
    c.sync().await.unwrap();

    let now = server::now_ms();
    let day = LocalDay::of(now, 480);
    let mut expected = Vec::new();
    for (r, name) in &residents {
        let copy = c.resident(*r);
        if let Some((due, _)) = copy.profile.due_on(copy.last_visit_at(), day) {
            let status = match due {
                DueOn::NeverVisited => "从未走访",
                DueOn::Overdue => "已逾期",
                DueOn::DueToday => "今日到期",
            };
            expected.push((name.to_string(), status.to_owned()));
        }
    }
    expected.sort();
    assert!(expected.iter().any(|(n, _)| n.starts_with('甲')));
    assert!(
        expected
            .iter()
            .any(|(n, s)| n.starts_with('乙') && s == "已逾期")
    );
    assert!(
        !expected
            .iter()
            .any(|(n, _)| n.starts_with('丁') || n.starts_with('戊'))
    );

    let mut b = coordinator(&w).await;
    let page = b.page("/web/due").await;
    let mut shown: Vec<(String, String)> = page
        .split("<tr class=\"due\">")
        .skip(1)
        .map(|row| {
            let name = row.split("class=\"resident\"").nth(1).unwrap();
            let name = name.split_once('>').unwrap().1.split('<').next().unwrap();
            let status = row.split("class=\"due-status\">").nth(1).unwrap();
            let status = status.split('<').next().unwrap();
            (name.to_owned(), status.to_owned())
        })
        .collect();
    shown.sort();
    assert_eq!(shown, expected, "{page}");
}

conformance!(
    the_due_page_and_the_phones_agree,
    the_resident_list_searches_filters_and_flags_conflicts,
    volunteers_are_assigned_and_unassigned_on_the_web,
    the_profile_is_edited_on_the_web_and_reaches_the_phones,
    a_resident_moves_station_and_the_staff_phones_follow,
);
