//! The administration pages (issue 5) over HTTP, as a browser without JavaScript uses
//! them: catalog entries added, renamed and archived reach the projection, the visit
//! log's menus and a phone; users are created; an enrolment code is shown as text and
//! QR code, enrols a phone, and the phone is revoked from the page. Then the attackers:
//! station staff, another district's coordinator, forged and missing CSRF tokens.

use crate::backends::{TestStore, conformance};
use crate::phone::Phone;
use crate::serving::Answer;
use crate::web_client::{Browser, STAFF_PASSWORD, coordinator, field, staff};
use crate::world::{COORDINATOR_PASSWORD, World, login};
use serde_json::json;
use server::store::catalog_rows::CatalogRow;
use sync_core::ids::*;
use sync_core::model::*;
use uuid::Uuid;

async fn district_of(w: &World) -> DistrictId {
    let user = w.server.store().user(w.coordinator).await.unwrap().unwrap();
    user.district.unwrap()
}

async fn rows(w: &World) -> Vec<CatalogRow> {
    w.server
        .store()
        .catalog_rows(district_of(w).await)
        .await
        .unwrap()
}

/// The one row of `kind` named `name`.
fn row<'a>(rows: &'a [CatalogRow], kind: CatalogKind, name: &str) -> &'a CatalogRow {
    let found: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == kind && r.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind:?} named {name}: {rows:?}");
    found[0]
}

/// Posts a page's form with its own CSRF token.
async fn post_with_csrf(b: &mut Browser, page: &str, path: &str, form: &[(&str, &str)]) -> Answer {
    let html = b.page(page).await;
    let csrf = field(&html, "csrf");
    let mut form = form.to_vec();
    form.push(("csrf", &csrf));
    b.post(path, &form).await
}

/// A 400 page that gives the reason in Chinese.
fn bad_request(answer: &Answer, reason: &str) {
    answer.expect(400);
    assert!(answer.text().contains(reason), "{}", answer.text());
}

/// One number from SQL, on either backend.
async fn count(w: &World, sql: &'static str) -> i64 {
    w.server.t.count(sql, None).await
}

/// The catalog as a phone of the district holds it after a sync.
async fn phone_catalog(phone: &mut Phone) -> Catalog {
    phone.sync().await.unwrap();
    phone
        .replica
        .catalog(DocId::from(phone.district))
        .unwrap()
        .expect("the phone holds the catalog")
        .hydrate()
        .unwrap()
}

/// Add, rename, archive and restore catalog entries; the rows, the visit log's menus
/// and a phone follow; stations are created; bad input is a 400 that changes nothing.
async fn catalog_entries_reach_rows_menus_and_phones(t: TestStore) {
    let w = World::new(t).await;
    let mut phone = w.coordinator_phone().await;
    phone.sync().await.unwrap();
    let district = district_of(&w).await;
    assert!(
        phone
            .replica
            .catalog(DocId::from(district))
            .unwrap()
            .is_none(),
        "no catalog yet"
    );
    let mut b = coordinator(&w).await;
    let log = b.page("/web/visits").await;
    assert!(log.contains("href=\"/web/admin/catalog\" id=\"nav-admin\""));
    let page = b.page("/web/admin/catalog").await;
    assert!(page.contains("<h1>目录</h1>") && page.contains("服务站"));

    // The first entry creates the district's catalog.
    let added = post_with_csrf(
        &mut b,
        "/web/admin/catalog",
        "/web/admin/catalog/alliances",
        &[("name", "邻里联盟"), ("name_en", "Neighbours")],
    )
    .await;
    added.expect(303);
    assert_eq!(added.location(), "/web/admin/catalog?saved=1#alliances");
    let alliance = row(&rows(&w).await, CatalogKind::Alliance, "邻里联盟").id;
    let alliance_text = alliance.to_string();
    for (kind, name, name_en, parent) in [
        (
            "units",
            "彭浦社区卫生中心",
            "Health Centre",
            alliance_text.as_str(),
        ),
        (
            "projects",
            "敲门行动",
            "Knock on the Door",
            alliance_text.as_str(),
        ),
        ("service_types", "代购", "Shopping", ""),
        ("hazard_types", "燃气泄漏", "Gas leak", ""),
    ] {
        post_with_csrf(
            &mut b,
            "/web/admin/catalog",
            &format!("/web/admin/catalog/{kind}"),
            &[("name", name), ("name_en", name_en), ("parent", parent)],
        )
        .await
        .expect(303);
    }
    let now = rows(&w).await;
    let unit = row(&now, CatalogKind::Unit, "彭浦社区卫生中心").clone();
    let project = row(&now, CatalogKind::Project, "敲门行动").clone();
    let service = row(&now, CatalogKind::ServiceType, "代购").clone();
    assert_eq!(unit.parent, Some(alliance));
    assert_eq!(project.parent, Some(alliance));
    assert_eq!(service.name_en, "Shopping");
    assert_eq!(service.parent, None);
    assert_eq!(
        row(&now, CatalogKind::HazardType, "燃气泄漏").name_en,
        "Gas leak"
    );
    assert!(now.iter().all(|r| !r.archived));
    let page = b.page("/web/admin/catalog").await;
    assert!(page.contains("彭浦社区卫生中心") && page.contains("Gas leak"));
    assert!(page.contains(&format!("<option value=\"{alliance}\">邻里联盟</option>")));

    // The visit log offers every new entry in its menus.
    let log = b.page("/web/visits").await;
    for id in [alliance, unit.id, project.id, service.id] {
        assert!(log.contains(&format!("<option value=\"{id}\"")), "{id}");
    }

    // Rename the alliance in both languages, archive the unit.
    post_with_csrf(
        &mut b,
        "/web/admin/catalog",
        &format!("/web/admin/catalog/alliances/{alliance}"),
        &[("name", " 彭浦邻里联盟 "), ("name_en", "Pengpu Neighbours")],
    )
    .await
    .expect(303);
    post_with_csrf(
        &mut b,
        "/web/admin/catalog",
        &format!("/web/admin/catalog/units/{}/archive", unit.id),
        &[("archived", "1")],
    )
    .await
    .expect(303);
    let now = rows(&w).await;
    let renamed = now.iter().find(|r| r.id == alliance).unwrap();
    assert_eq!(
        (
            renamed.name.as_str(),
            renamed.name_en.as_str(),
            renamed.archived
        ),
        ("彭浦邻里联盟", "Pengpu Neighbours", false)
    );
    let archived = now.iter().find(|r| r.id == unit.id).unwrap();
    assert!(archived.archived, "archived, never deleted");
    assert_eq!(archived.name, unit.name);
    assert_eq!(archived.parent, Some(alliance), "the rename kept the rest");
    let log = b.page("/web/visits").await;
    assert!(log.contains(&format!(
        "<option value=\"{alliance}\">彭浦邻里联盟</option>"
    )));
    assert!(
        !log.contains(&format!("<option value=\"{}\"", unit.id)),
        "an archived unit leaves the menus"
    );
    assert!(log.contains(&format!("<option value=\"{}\"", project.id)));

    // The phone receives the catalog with both changes.
    let held = phone_catalog(&mut phone).await;
    let a = held.alliances.iter().find(|e| e.id.0 == alliance).unwrap();
    assert_eq!(
        (a.name.as_str(), a.name_en.as_str()),
        ("彭浦邻里联盟", "Pengpu Neighbours")
    );
    let u = held.units.iter().find(|e| e.id.0 == unit.id).unwrap();
    assert!(u.archived && u.parent == Some(alliance));
    assert_eq!(held.projects.len(), 1);
    assert_eq!(held.service_types.len(), 1);
    assert_eq!(held.hazard_types.len(), 1);

    // Restoring brings it back to the menus.
    post_with_csrf(
        &mut b,
        "/web/admin/catalog",
        &format!("/web/admin/catalog/units/{}/archive", unit.id),
        &[("archived", "0")],
    )
    .await
    .expect(303);
    assert!(
        !rows(&w)
            .await
            .iter()
            .find(|r| r.id == unit.id)
            .unwrap()
            .archived
    );
    assert!(
        b.page("/web/visits")
            .await
            .contains(&format!("<option value=\"{}\"", unit.id))
    );
    assert!(!phone_catalog(&mut phone).await.units[0].archived);

    // A station: in the identity store (the roster's menu) and named in the catalog.
    post_with_csrf(
        &mut b,
        "/web/admin/catalog",
        "/web/admin/stations",
        &[("name", "新站党群服务站"), ("name_en", "New Station")],
    )
    .await
    .expect(303);
    let station = w
        .server
        .store()
        .station_named(district, "新站党群服务站")
        .await
        .unwrap();
    let named = rows(&w).await;
    let entry = row(&named, CatalogKind::Station, "新站党群服务站");
    assert_eq!(
        (entry.id, entry.name_en.as_str()),
        (station.0, "New Station")
    );
    assert!(
        b.page("/web/admin/catalog")
            .await
            .contains("新站党群服务站")
    );
    assert!(
        b.page("/web/residents/import")
            .await
            .contains(&station.0.to_string())
    );
    // Renamed: in the identity store (the pages' station names) and the catalog.
    post_with_csrf(
        &mut b,
        "/web/admin/catalog",
        &format!("/web/admin/stations/{}", station.0),
        &[("name", "新村党群服务站"), ("name_en", "New Village")],
    )
    .await
    .expect(303);
    let renamed = w.server.store().stations_in(district).await.unwrap();
    assert!(renamed.contains(&(station, "新村党群服务站".to_owned())));
    assert!(!renamed.iter().any(|(_, n)| n == "新站党群服务站"));
    let named = rows(&w).await;
    let entry = row(&named, CatalogKind::Station, "新村党群服务站");
    assert_eq!(
        (entry.id, entry.name_en.as_str()),
        (station.0, "New Village")
    );
    // A station made by the API has no catalog entry yet; a rename gives it one.
    post_with_csrf(
        &mut b,
        "/web/admin/catalog",
        &format!("/web/admin/stations/{}", w.station_b.0),
        &[("name", "翔宇品城服务站"), ("name_en", "Xiangyu")],
    )
    .await
    .expect(303);
    let named = rows(&w).await;
    assert_eq!(
        row(&named, CatalogKind::Station, "翔宇品城服务站").id,
        w.station_b.0
    );
    assert!(b.page("/web/visits").await.contains("翔宇品城服务站"));
    let held = phone_catalog(&mut phone).await;
    assert!(
        held.stations
            .iter()
            .any(|e| e.id == w.station_b && e.name_en == "Xiangyu")
    );

    // Bad input: a 400 with its reason in the page's language, and nothing changes.
    let before = rows(&w).await;
    let stations = w.server.store().stations_in(district).await.unwrap();
    let page = "/web/admin/catalog";
    let a = alliance.to_string();
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            "/web/admin/catalog/alliances",
            &[("name", "  ")],
        )
        .await,
        "名称不能为空",
    );
    let long = "长".repeat(201);
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            "/web/admin/catalog/service_types",
            &[("name", &long)],
        )
        .await,
        "名称太长",
    );
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            "/web/admin/catalog/units",
            &[("name", "某单位"), ("parent", &unit.id.to_string())],
        )
        .await,
        "未停用的联盟",
    );
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            "/web/admin/catalog/service_types",
            &[("name", "某服务"), ("parent", &a)],
        )
        .await,
        "未停用的联盟",
    );
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            "/web/admin/catalog/alliances/not-an-id",
            &[("name", "x")],
        )
        .await,
        "编号无效",
    );
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            &format!("/web/admin/catalog/alliances/{a}"),
            &[("name", "")],
        )
        .await,
        "名称不能为空",
    );
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            &format!("/web/admin/catalog/alliances/{a}/archive"),
            &[("archived", "maybe")],
        )
        .await,
        "所选的值无效",
    );
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            "/web/admin/stations",
            &[("name", "新村党群服务站")],
        )
        .await,
        "已有同名的服务站",
    );
    // Renaming a station to another's name, or to nothing; a bad station id.
    let s_a = format!("/web/admin/stations/{}", w.station_a.0);
    bad_request(
        &post_with_csrf(&mut b, page, &s_a, &[("name", "新村党群服务站")]).await,
        "已有同名的服务站",
    );
    bad_request(
        &post_with_csrf(&mut b, page, &s_a, &[("name", " ")]).await,
        "名称不能为空",
    );
    bad_request(
        &post_with_csrf(
            &mut b,
            page,
            "/web/admin/stations/nope",
            &[("name", "某站")],
        )
        .await,
        "编号无效",
    );
    // An id of another list, an unknown id, and a list that is not edited here: 404.
    for path in [
        format!("/web/admin/catalog/units/{a}"),
        format!("/web/admin/catalog/alliances/{}", Uuid::now_v7()),
        format!("/web/admin/catalog/stations/{}", station.0),
        "/web/admin/catalog/visits".to_owned(),
        format!("/web/admin/stations/{}", Uuid::now_v7()),
    ] {
        post_with_csrf(&mut b, page, &path, &[("name", "改名")])
            .await
            .expect(404);
    }
    assert_eq!(rows(&w).await, before, "no bad request changed the catalog");
    assert_eq!(
        w.server.store().stations_in(district).await.unwrap(),
        stations
    );
    // In English, the same refusal speaks English.
    b.get("/web/lang/en?back=%2Fweb%2Fadmin%2Fcatalog")
        .await
        .expect(303);
    let refused = post_with_csrf(
        &mut b,
        page,
        "/web/admin/catalog/alliances",
        &[("name", "")],
    )
    .await;
    bad_request(&refused, "The name must not be empty.");
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    &text[from..from + len]
}

/// Users are listed and created (roles and stations checked); a code is shown as text
/// and QR code and enrols a phone once; the phone is revoked from the page and its
/// refresh is refused.
async fn users_codes_and_devices(t: TestStore) {
    let w = World::new(t).await;
    let mut b = coordinator(&w).await;
    let users = b.page("/web/admin/users").await;
    assert!(users.contains("李协调") && users.contains("协调员"));
    // A coordinator creates anyone but an admin.
    for role in ["volunteer", "station_staff", "coordinator"] {
        assert!(
            users.contains(&format!("<option value=\"{role}\">")),
            "{role}"
        );
    }
    assert!(!users.contains("<option value=\"admin\">"));

    // A staff member covering station A, then a volunteer without a password.
    let station_a = w.station_a.0.to_string();
    let created = post_with_csrf(
        &mut b,
        "/web/admin/users",
        "/web/admin/users",
        &[
            ("login", "staff-a"),
            ("display_name", "张站长"),
            ("role", "station_staff"),
            ("stations", &station_a),
            ("password", STAFF_PASSWORD),
        ],
    )
    .await;
    created.expect(303);
    let staff_id: Uuid = between(&created.location(), "/web/admin/users/", "?created=1")
        .parse()
        .unwrap();
    let staff_user = w
        .server
        .store()
        .user(UserId(staff_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staff_user.role, Role::StationStaff);
    assert_eq!(staff_user.district, Some(district_of(&w).await));
    let principal = w
        .server
        .store()
        .principal(&staff_user)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&principal.scope, Scope::Stations { stations, .. } if stations.len() == 1 && stations.contains(&w.station_a))
    );
    let page = b.page(&created.location()).await;
    assert!(
        page.contains("已创建用户")
            && page.contains("张站长")
            && page.contains("华沙六村党群服务站")
    );
    // The new staff member signs in with the password given.
    Browser::new(&w.server)
        .sign_in("staff-a", STAFF_PASSWORD)
        .await
        .expect(303);

    let created = post_with_csrf(
        &mut b,
        "/web/admin/users",
        "/web/admin/users",
        &[
            ("login", "wang"),
            ("display_name", "王志愿者"),
            ("role", "volunteer"),
        ],
    )
    .await;
    created.expect(303);
    let volunteer = UserId(
        between(&created.location(), "/web/admin/users/", "?created=1")
            .parse()
            .unwrap(),
    );
    let users = b.page("/web/admin/users").await;
    assert!(
        users.contains("王志愿者")
            && users.contains("张站长")
            && users.contains("华沙六村党群服务站")
    );

    // Bad input: a 400 with its reason, and no user made.
    let how_many = count(&w, "SELECT COUNT(*) FROM users").await;
    let p = "/web/admin/users";
    for (form, reason) in [
        (
            vec![("login", "x1"), ("display_name", "某"), ("role", "boss")],
            "您可以创建的角色",
        ),
        (
            vec![
                ("login", "x2"),
                ("display_name", " "),
                ("role", "volunteer"),
            ],
            "名称不能为空",
        ),
        (
            vec![("login", ""), ("display_name", "某"), ("role", "volunteer")],
            "登录名应为",
        ),
        (
            vec![
                ("login", "wang"),
                ("display_name", "某"),
                ("role", "volunteer"),
            ],
            "已被使用",
        ),
        (
            vec![
                ("login", "x3"),
                ("display_name", "某"),
                ("role", "coordinator"),
                ("password", "short"),
            ],
            "至少 10 个字符",
        ),
        (
            vec![
                ("login", "x4"),
                ("display_name", "某"),
                ("role", "station_staff"),
                ("stations", "nope"),
            ],
            "编号无效",
        ),
        (
            vec![
                ("login", "x5"),
                ("display_name", "某"),
                ("role", "volunteer"),
                ("stations", &station_a),
            ],
            "只有服务站工作人员负责服务站",
        ),
    ] {
        bad_request(&post_with_csrf(&mut b, p, p, &form).await, reason);
    }
    // A role the coordinator may not create is forbidden, not merely bad.
    post_with_csrf(
        &mut b,
        p,
        p,
        &[
            ("login", "x6"),
            ("display_name", "某"),
            ("role", "admin"),
            ("password", STAFF_PASSWORD),
        ],
    )
    .await
    .expect(403);
    assert_eq!(count(&w, "SELECT COUNT(*) FROM users").await, how_many);

    // An enrolment code: as text and as an inline SVG QR code.
    let user_page = format!("/web/admin/users/{}", volunteer.0);
    assert!(b.page(&user_page).await.contains("还没有登记设备"));
    let issued = post_with_csrf(&mut b, &user_page, &format!("{user_page}/code"), &[]).await;
    issued.expect(200);
    let html = issued.text();
    let code = between(&html, "<code id=\"enrolment-code\">", "</code>").to_owned();
    assert_eq!(code.len(), 20, "{code}");
    let qr = between(&html, "<figure class=\"qr\" id=\"qr\">", "<figcaption>");
    assert!(
        qr.starts_with("<svg") && qr.contains("</svg>") && !qr.contains("&lt;"),
        "{qr}"
    );
    assert!(!html.contains("<?xml") && !html.contains("<script"));
    assert!(html.contains("王志愿者") && html.contains("有效期至"));

    // The code enrols a phone through the API, once.
    let mut phone = Phone::enrol(&w.server.base, &code).await;
    assert_eq!(phone.user, volunteer);
    w.server
        .post(
            "/api/v1/enrol",
            None,
            &json!({ "code": code, "device_name": "again" }),
        )
        .await
        .expect_error(401, "bad_credentials");
    phone.sync().await.unwrap();
    phone.refresh().await.unwrap();
    let page = b.page(&user_page).await;
    assert!(page.contains("test phone") && page.contains("使用中"));
    assert!(page.contains(&format!("/web/admin/devices/{}/revoke", phone.device.0)));

    // Revoked from the page: the phone's refresh and sync are refused, told to purge.
    let revoked = post_with_csrf(
        &mut b,
        &user_page,
        &format!("/web/admin/devices/{}/revoke", phone.device.0),
        &[],
    )
    .await;
    revoked.expect(303);
    assert_eq!(revoked.location(), format!("{user_page}?revoked=1"));
    let device = w
        .server
        .store()
        .device(phone.device)
        .await
        .unwrap()
        .unwrap();
    assert!(device.revoked_at.is_some());
    let refused = phone.refresh().await.unwrap_err().refused();
    refused.expect_error(401, "device_revoked");
    assert_eq!(refused.json()["purge"], json!(true));
    phone
        .sync()
        .await
        .unwrap_err()
        .refused()
        .expect_error(401, "device_revoked");
    let page = b.page(&revoked.location()).await;
    assert!(page.contains("设备已吊销") && page.contains("已吊销"));
    assert!(!page.contains(&format!("/web/admin/devices/{}/revoke", phone.device.0)));

    // A bad device id is a 400, an unknown one a 404.
    bad_request(
        &post_with_csrf(&mut b, &user_page, "/web/admin/devices/nope/revoke", &[]).await,
        "编号无效",
    );
    post_with_csrf(
        &mut b,
        &user_page,
        &format!("/web/admin/devices/{}/revoke", Uuid::now_v7()),
        &[],
    )
    .await
    .expect(404);
    b.get("/web/admin/users/not-an-id").await.expect(400);
    b.get(&format!("/web/admin/users/{}", Uuid::now_v7()))
        .await
        .expect(404);
}

/// Everything an attacker tries is refused and changes nothing: station staff on every
/// page and POST, another district's coordinator on this district's user and device,
/// and forms without this session's CSRF token.
async fn attackers_change_nothing(t: TestStore) {
    let w = World::new(t).await;
    let district = district_of(&w).await;
    let mut b = coordinator(&w).await;
    post_with_csrf(
        &mut b,
        "/web/admin/catalog",
        "/web/admin/catalog/alliances",
        &[("name", "邻里联盟")],
    )
    .await
    .expect(303);
    let alliance = rows(&w).await[0].id;
    let volunteer = w.user("wang", "volunteer", &[]).await;
    let phone = w.phone(volunteer).await;
    let _ = staff(&w, "staff-a", &[w.station_a]).await;

    // What must stay as it is.
    let snapshot = || async {
        (
            rows(&w).await,
            w.server.store().stations_in(district).await.unwrap(),
            // This district's users: the other district's coordinator may add theirs.
            (w.server
                .store()
                .users_in(district)
                .await
                .unwrap()
                .into_iter())
            .map(|u| u.login)
            .collect::<Vec<_>>(),
            count(&w, "SELECT COUNT(*) FROM enrolment_codes").await,
            count(
                &w,
                "SELECT COUNT(*) FROM devices WHERE revoked_at IS NOT NULL",
            )
            .await,
        )
    };
    let before = snapshot().await;
    assert_eq!(before.4, 0);

    // The POSTs of the administration pages, each with a plausible form.
    let v = volunteer.0.to_string();
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/web/admin/catalog/alliances".into(),
            vec![("name", "攻击联盟")],
        ),
        (
            format!("/web/admin/catalog/alliances/{alliance}"),
            vec![("name", "改名")],
        ),
        (
            format!("/web/admin/catalog/alliances/{alliance}/archive"),
            vec![("archived", "1")],
        ),
        ("/web/admin/stations".into(), vec![("name", "攻击站")]),
        (
            format!("/web/admin/stations/{}", w.station_a.0),
            vec![("name", "改名站")],
        ),
        (
            "/web/admin/users".into(),
            vec![
                ("login", "mallory"),
                ("display_name", "某"),
                ("role", "volunteer"),
            ],
        ),
        (format!("/web/admin/users/{v}/code"), vec![]),
        (
            format!("/web/admin/devices/{}/revoke", phone.device.0),
            vec![],
        ),
    ];

    // Station staff: no link, 403 on every page and every POST (with their own token).
    let mut s = Browser::new(&w.server);
    s.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    let log = s.page("/web/visits").await;
    assert!(!log.contains("nav-admin") && !log.contains("/web/admin"));
    let csrf = field(&log, "csrf");
    for page in [
        "/web/admin/catalog",
        "/web/admin/users",
        &format!("/web/admin/users/{v}"),
    ] {
        s.get(page).await.expect(403);
    }
    s.get("/web/admin").await.expect(303);
    for (path, form) in &posts {
        let mut form = form.clone();
        form.push(("csrf", &csrf));
        s.post(path, &form).await.expect(403);
    }
    assert_eq!(snapshot().await, before, "station staff changed something");

    // Another district's coordinator: 404 for this district's user and device, and
    // their own pages name nothing of this district.
    let admin = Some(w.admin_token.as_str());
    let answer = w
        .server
        .post("/api/v1/districts", admin, &json!({ "name": "大宁路街道" }))
        .await;
    answer.expect(201);
    let other: Uuid = answer.json()["id"].as_str().unwrap().parse().unwrap();
    w.server
        .post(
            "/api/v1/users",
            admin,
            &json!({ "login": "other", "display_name": "别的协调员", "role": "coordinator",
                     "district": other, "password": COORDINATOR_PASSWORD }),
        )
        .await
        .expect(201);
    let _ = login(&w.server, "other", COORDINATOR_PASSWORD).await;
    let mut o = Browser::new(&w.server);
    o.sign_in("other", COORDINATOR_PASSWORD).await.expect(303);
    let users = o.page("/web/admin/users").await;
    assert!(!users.contains("wang") && !users.contains("李协调"));
    assert!(!o.page("/web/admin/catalog").await.contains("邻里联盟"));
    o.get(&format!("/web/admin/users/{v}")).await.expect(404);
    let csrf = field(&o.page("/web/admin/users").await, "csrf");
    // This district's ids are not found; a station and a user are made in their own
    // district (which is theirs to administer).
    let expected = [404, 404, 303, 404, 303, 404, 404];
    assert_eq!(expected.len(), posts.len() - 1);
    for ((path, form), status) in posts[1..].iter().zip(expected) {
        let mut form = form.clone();
        form.push(("csrf", &csrf));
        o.post(path, &form).await.expect(status);
    }
    // Nor may they give their staff this district's station.
    let station_a = w.station_a.0.to_string();
    o.post(
        "/web/admin/users",
        &[
            ("csrf", csrf.as_str()),
            ("login", "mallory-staff"),
            ("display_name", "某"),
            ("role", "station_staff"),
            ("stations", &station_a),
        ],
    )
    .await
    .expect(404);
    // The other coordinator made a station and a user in their own district, never
    // in this one.
    assert_eq!(
        snapshot().await,
        before,
        "another district's coordinator changed this one"
    );
    let theirs = w.server.store().users_in(DistrictId(other)).await.unwrap();
    assert!(theirs.iter().any(|u| u.login == "mallory"));
    assert!(theirs.iter().all(|u| u.login != "mallory-staff"));
    let stations = w
        .server
        .store()
        .stations_in(DistrictId(other))
        .await
        .unwrap();
    assert!(stations.iter().any(|(_, n)| n == "攻击站"));

    // This district's coordinator, with a missing or forged token: 403, nothing done.
    let before = snapshot().await;
    let posts = vec![
        (
            "/web/admin/catalog/alliances".to_owned(),
            vec![("name", "另一个联盟")],
        ),
        (
            format!("/web/admin/catalog/alliances/{alliance}"),
            vec![("name", "改名")],
        ),
        (
            format!("/web/admin/catalog/alliances/{alliance}/archive"),
            vec![("archived", "1")],
        ),
        ("/web/admin/stations".into(), vec![("name", "另一个站")]),
        (
            format!("/web/admin/stations/{}", w.station_a.0),
            vec![("name", "改名站")],
        ),
        (
            "/web/admin/users".into(),
            vec![
                ("login", "eve"),
                ("display_name", "某"),
                ("role", "volunteer"),
            ],
        ),
        (format!("/web/admin/users/{v}/code"), vec![]),
        (
            format!("/web/admin/devices/{}/revoke", phone.device.0),
            vec![],
        ),
    ];
    for (path, form) in &posts {
        b.post(path, form).await.expect(403);
        let mut forged = form.clone();
        forged.push(("csrf", "forged"));
        b.post(path, &forged).await.expect(403);
        // Another session's token is no better.
        let mut borrowed = form.clone();
        borrowed.push(("csrf", &csrf));
        b.post(path, &borrowed).await.expect(403);
    }
    // Signed out: to the sign-in page, never done.
    let mut nobody = Browser::new(&w.server);
    for (path, form) in &posts {
        nobody.post(path, form).await.expect(303);
    }
    assert_eq!(snapshot().await, before, "a refused form changed something");
}

// ---- The district list: the first run's admin --------------------------------------

/// An admin without a district, like the first start's `admin`, signed in on the web.
/// (The world's bootstrap admin keeps no password, so this one is made the same way,
/// through the identity store.)
async fn root(w: &World) -> Browser {
    w.server
        .store()
        .create_user(
            "root",
            "根管理员",
            Role::Admin,
            None,
            &[],
            Some(STAFF_PASSWORD),
            server::now_ms(),
        )
        .await
        .unwrap();
    let mut b = Browser::new(&w.server);
    b.sign_in("root", STAFF_PASSWORD).await.expect(303);
    b
}

/// The districts, as (name, stations, users), by name.
async fn districts(w: &World) -> Vec<(String, i64, i64)> {
    (w.server.store().districts().await.unwrap().into_iter())
        .map(|d| (d.name, d.stations, d.users))
        .collect()
}

/// The bootstrap admin, who belongs to no district, creates a district and its first
/// coordinator in the browser; bad input is a 400 with its reason that changes
/// nothing; the coordinator signs in and sets up the new district, and only it.
async fn the_first_admin_sets_up_a_district_on_the_web(t: TestStore) {
    let w = World::new(t).await;
    let mut b = root(&w).await;
    let p = "/web/admin/districts";

    // The nav leads this admin to the district list; the district pages stay refused.
    let log = b.page("/web/visits").await;
    assert!(log.contains("href=\"/web/admin/districts\" id=\"nav-admin\""));
    assert!(!log.contains("/web/admin/catalog"));
    let index = b.get("/web/admin").await;
    index.expect(303);
    assert_eq!(index.location(), p);
    b.get("/web/admin/catalog").await.expect(403);
    let page = b.page(p).await;
    assert!(page.contains("<h1>街镇</h1>"), "{page}");
    assert!(
        page.contains("<tr><td>彭浦镇</td><td>2</td><td>1</td></tr>"),
        "{page}"
    );
    assert!(!page.contains("id=\"admin-catalog\""));

    // A district is created.
    let created = post_with_csrf(&mut b, p, p, &[("name", " 大宁路街道 ")]).await;
    created.expect(303);
    let daning = w.server.store().district_named("大宁路街道").await.unwrap();
    assert_eq!(
        created.location(),
        format!("/web/admin/districts?created=1#district-{}", daning.0)
    );
    let page = b.page(&created.location()).await;
    assert!(page.contains("已建立街镇"));
    assert!(page.contains("<tr><td>大宁路街道</td><td>0</td><td>0</td></tr>"));
    let action = format!("/web/admin/districts/{}/coordinators", daning.0);
    assert!(page.contains(&format!("action=\"{action}\"")));

    // Bad names: a 400 with the reason, and no district more.
    let before = districts(&w).await;
    assert_eq!(before.len(), 2);
    let long = "长".repeat(201);
    for (name, reason) in [
        ("", "名称不能为空"),
        ("  ", "名称不能为空"),
        (long.as_str(), "名称太长"),
        ("彭浦镇", "已有同名的街镇"),
        (" 大宁路街道", "已有同名的街镇"),
    ] {
        bad_request(
            &post_with_csrf(&mut b, p, p, &[("name", name)]).await,
            reason,
        );
    }
    // The API applies the same check on the name.
    w.server
        .post(
            "/api/v1/districts",
            Some(&w.admin_token),
            &json!({ "name": " " }),
        )
        .await
        .expect_error(400, "empty_name");
    assert_eq!(districts(&w).await, before);

    // Bad coordinators: a 400 with the reason (a crafted district: 400 or 404), and no
    // user more.
    let users = count(&w, "SELECT COUNT(*) FROM users").await;
    let good = [
        ("display_name", "张协调"),
        ("login", "daning"),
        ("password", COORDINATOR_PASSWORD),
    ];
    let with = |key: &'static str, value: &'static str| {
        let mut form = good.to_vec();
        form.retain(|(k, _)| *k != key);
        form.push((key, value));
        form
    };
    for (form, reason) in [
        (with("display_name", " "), "名称不能为空"),
        (with("login", " "), "登录名应为 1 至 64 个字符"),
        (with("login", "coordinator"), "该登录名已被使用"),
        (with("password", ""), "密码至少 10 个字符"),
        (with("password", "123456789"), "密码至少 10 个字符"),
    ] {
        bad_request(&post_with_csrf(&mut b, p, &action, &form).await, reason);
    }
    bad_request(
        &post_with_csrf(&mut b, p, "/web/admin/districts/nope/coordinators", &good).await,
        "编号无效",
    );
    post_with_csrf(
        &mut b,
        p,
        &format!("/web/admin/districts/{}/coordinators", Uuid::now_v7()),
        &good,
    )
    .await
    .expect(404);
    assert_eq!(count(&w, "SELECT COUNT(*) FROM users").await, users);

    // The first coordinator of the new district.
    let made = post_with_csrf(&mut b, p, &action, &good).await;
    made.expect(303);
    assert_eq!(
        made.location(),
        format!("/web/admin/districts?saved=1#district-{}", daning.0)
    );
    let page = b.page(&made.location()).await;
    assert!(page.contains("已创建协调员"));
    assert!(page.contains("<tr><td>大宁路街道</td><td>0</td><td>1</td></tr>"));
    let theirs = w.server.store().users_in(daning).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(
        (theirs[0].login.as_str(), theirs[0].display_name.as_str()),
        ("daning", "张协调")
    );
    assert_eq!(theirs[0].role, Role::Coordinator);
    assert_eq!(count(&w, "SELECT COUNT(*) FROM users").await, users + 1);

    // They sign in and reach the new district's catalog, not the other's, nor the
    // district list.
    let mut c = Browser::new(&w.server);
    c.sign_in("daning", COORDINATOR_PASSWORD).await.expect(303);
    let log = c.page("/web/visits").await;
    assert!(log.contains("href=\"/web/admin/catalog\" id=\"nav-admin\""));
    assert!(!log.contains("/web/admin/districts"));
    let catalog = c.page("/web/admin/catalog").await;
    assert!(catalog.contains("<h1>目录</h1>"));
    assert!(!catalog.contains("华沙六村党群服务站") && !catalog.contains("/web/admin/districts"));
    c.get(p).await.expect(403);
    let old = district_of(&w).await;
    let old_stations = w.server.store().stations_in(old).await.unwrap();
    post_with_csrf(
        &mut c,
        "/web/admin/catalog",
        "/web/admin/stations",
        &[("name", "大宁第一党群服务站")],
    )
    .await
    .expect(303);
    let new_stations = w.server.store().stations_in(daning).await.unwrap();
    assert_eq!(new_stations.len(), 1);
    assert_eq!(new_stations[0].1, "大宁第一党群服务站");
    assert_eq!(
        w.server.store().stations_in(old).await.unwrap(),
        old_stations
    );
    assert!(
        c.page("/web/admin/catalog")
            .await
            .contains("大宁第一党群服务站")
    );
    let users_page = c.page("/web/admin/users").await;
    assert!(users_page.contains("张协调") && !users_page.contains("李协调"));

    // In English, the page and its refusals speak English.
    b.get("/web/lang/en?back=%2Fweb%2Fadmin%2Fdistricts")
        .await
        .expect(303);
    let page = b.page(p).await;
    assert!(page.contains("<h1>Districts</h1>") && page.contains("Create coordinator"));
    bad_request(
        &post_with_csrf(&mut b, p, p, &[("name", "彭浦镇")]).await,
        "A district of this name exists",
    );
}

/// Only admins reach the district list: a coordinator and station staff get 403 on it
/// and its POSTs (with their own tokens); the admin's forms without this session's
/// token are refused; signed out is to the sign-in page. Nothing changes. An admin
/// with a district keeps the district's pages and also reaches the list.
async fn only_admins_reach_the_district_list(t: TestStore) {
    let w = World::new(t).await;
    let district = district_of(&w).await;
    let _ = staff(&w, "staff-a", &[w.station_a]).await;
    let mut r = root(&w).await;
    let root_csrf = field(&r.page("/web/admin/districts").await, "csrf");
    let snapshot = || async {
        (
            districts(&w).await,
            count(&w, "SELECT COUNT(*) FROM users").await,
        )
    };
    let before = snapshot().await;
    let own = format!("/web/admin/districts/{}/coordinators", district.0);
    let posts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/web/admin/districts", vec![("name", "攻击街道")]),
        (
            &own,
            vec![
                ("display_name", "某"),
                ("login", "mallory"),
                ("password", COORDINATOR_PASSWORD),
            ],
        ),
    ];

    // A coordinator (who may create coordinators in their own district, but not
    // here) and station staff: no link, 403 on the page and every POST.
    let mut coordinator = coordinator(&w).await;
    let mut s = Browser::new(&w.server);
    s.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    for b in [&mut coordinator, &mut s] {
        let log = b.page("/web/visits").await;
        assert!(!log.contains("/web/admin/districts") && !log.contains("admin-districts"));
        let csrf = field(&log, "csrf");
        b.get("/web/admin/districts").await.expect(403);
        for (path, form) in &posts {
            let mut form = form.clone();
            form.push(("csrf", &csrf));
            b.post(path, &form).await.expect(403);
        }
    }
    let index = coordinator.get("/web/admin").await;
    index.expect(303);
    assert_eq!(index.location(), "/web/admin/catalog");
    assert!(
        !coordinator
            .page("/web/admin/catalog")
            .await
            .contains("/web/admin/districts")
    );
    assert_eq!(snapshot().await, before, "a non-admin changed something");

    // The admin, with a missing, forged or another session's token: 403.
    let theirs = field(&coordinator.page("/web/visits").await, "csrf");
    for (path, form) in &posts {
        r.post(path, form).await.expect(403);
        for token in ["forged", theirs.as_str()] {
            let mut forged = form.clone();
            forged.push(("csrf", token));
            r.post(path, &forged).await.expect(403);
        }
    }
    // Signed out: to the sign-in page.
    let mut nobody = Browser::new(&w.server);
    for (path, form) in &posts {
        let mut form = form.clone();
        form.push(("csrf", &root_csrf));
        nobody.post(path, &form).await.expect(303);
    }
    nobody.get("/web/admin/districts").await.expect(303);
    assert_eq!(snapshot().await, before, "a refused form changed something");

    // An admin of the district: its catalog first, the district list one link away.
    w.server
        .store()
        .create_user(
            "district-admin",
            "区管理员",
            Role::Admin,
            Some(district),
            &[],
            Some(STAFF_PASSWORD),
            server::now_ms(),
        )
        .await
        .unwrap();
    let mut a = Browser::new(&w.server);
    a.sign_in("district-admin", STAFF_PASSWORD)
        .await
        .expect(303);
    assert_eq!(a.get("/web/admin").await.location(), "/web/admin/catalog");
    let catalog = a.page("/web/admin/catalog").await;
    assert!(catalog.contains("href=\"/web/admin/districts\" id=\"admin-districts\""));
    let list = a.page("/web/admin/districts").await;
    assert!(list.contains("id=\"admin-catalog\"") && list.contains("彭浦镇"));
}

conformance!(
    catalog_entries_reach_rows_menus_and_phones,
    users_codes_and_devices,
    attackers_change_nothing,
    the_first_admin_sets_up_a_district_on_the_web,
    only_admins_reach_the_district_list,
);
