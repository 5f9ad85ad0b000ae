//! The resident roster import (issue 5) over HTTP, as a browser without JavaScript
//! uses it: a CSV (UTF-8 with a BOM, and GBK) and an XLSX built here become exactly
//! their residents, in the projection and on a staff phone after its sync; a file with
//! one bad row imports nothing and names that row; and a station's staff try to import
//! into another station, and to post without the CSRF token.

use crate::backends::{TestStore, conformance};
use crate::serving::Answer;
use crate::web_client::{Browser, STAFF_PASSWORD, field, staff};
use crate::world::{COORDINATOR_PASSWORD, World};
use reqwest::header::CONTENT_TYPE;
use std::collections::BTreeMap;
use sync_core::ids::*;
use sync_core::model::*;
use uuid::Uuid;

const BOUNDARY: &str = "linli-roster-test-boundary";

/// Uploads `file` as `file_name` for `station`, with the form's token (`csrf`
/// `None`: the token the page gave).
async fn upload(
    b: &mut Browser,
    station: StationId,
    file_name: &str,
    file: &[u8],
    csrf: Option<&str>,
) -> Answer {
    let page = b.page("/web/residents/import").await;
    let token = csrf.map_or_else(|| field(&page, "csrf"), str::to_owned);
    let mut body = Vec::new();
    let mut part = |name: &str, file_name: Option<&str>, value: &[u8]| {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match file_name {
            Some(f) => format!(
                "form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream"
            ),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n\r\n").as_bytes());
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    };
    if !token.is_empty() {
        part("csrf", None, token.as_bytes());
    }
    part("station", None, station.0.to_string().as_bytes());
    part("file", Some(file_name), file);
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let request = (b.request(reqwest::Method::POST, "/web/residents/import"))
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body);
    b.send(request).await
}

/// Posts the preview's confirm form as it is.
async fn confirm(b: &mut Browser, preview: &str) -> Answer {
    let form = [
        ("csrf", field(preview, "csrf")),
        ("station", field(preview, "station")),
        ("file_name", field(preview, "file_name")),
        ("data", field(preview, "data")),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post("/web/residents/import/confirm", &form).await
}

/// The residents of `station` in the projection, by name.
pub(crate) async fn residents_of(
    w: &World,
    station: StationId,
) -> BTreeMap<String, (ResidentId, Profile)> {
    use sqlx::Connection;
    let url = &w.server.t.url;
    let sql = "SELECT id FROM resident_rows WHERE station = $1";
    let station_bytes = station.0.as_bytes().to_vec();
    let ids: Vec<Vec<u8>> = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(station_bytes)
            .fetch_all(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(station_bytes)
            .fetch_all(&mut c)
            .await
            .unwrap()
    };
    let mut out = BTreeMap::new();
    for id in ids {
        let id = ResidentId(Uuid::from_slice(&id).unwrap());
        let p = w.server.store().projection(id).await.unwrap().unwrap();
        assert_eq!(p.resident.station, station);
        let profile = p.resident.profile;
        assert!(
            out.insert(profile.name.clone(), (id, profile)).is_none(),
            "one resident per name here"
        );
    }
    out
}

fn profile(
    name: &str,
    address: &str,
    phone: &str,
    birth_year: Option<i64>,
    living: Option<LivingSituation>,
    risk: Option<RiskLevel>,
    every: Option<i64>,
) -> Profile {
    Profile {
        name: name.into(),
        address: address.into(),
        phone: phone.into(),
        birth_year,
        living_situation: living,
        emergency_contact: String::new(),
        needs: String::new(),
        risk_level: risk,
        visit_every_days: every,
    }
}

/// A staff member imports a CSV into their station: the preview lists the rows and
/// warns of an unknown column; the confirm creates exactly those residents, which a
/// staff phone then receives; the same file again is refused as duplicates. A GBK file
/// reads the same.
async fn csv_roster_becomes_residents_on_the_phones(t: TestStore) {
    let w = World::new(t).await;
    let staff_a = staff(&w, "staff_a", &[w.station_a]).await;
    let mut b = Browser::new(&w.server);
    b.sign_in("staff_a", STAFF_PASSWORD).await.expect(303);

    let csv = "\u{feff}备注,走访频率（天）,姓名,地址,电话,出生年份,居住情况,风险等级,紧急联系人,需求\r\n\
               老党员,7,王阿婆,华沙六村 3 号 201,13800000001,1938,独居,高,女儿 13900000001,读报\r\n\
               ,14,李老伯,华沙六村 5 号 102,,1941年,with_spouse,low,,\r\n\
               ,,,,,,,,,\r\n\
               ,30,\"Zhang, Wei\",华沙六村 8 号,,,,,,\r\n";
    let preview = upload(&mut b, w.station_a, "名册.csv", csv.as_bytes(), None).await;
    preview.expect(200);
    let html = preview.text();
    assert!(html.contains("id=\"import-ready\""), "{html}");
    assert!(html.contains("3 位居民可以导入"), "{html}");
    assert!(html.contains("备注"), "the unknown column is named: {html}");
    assert!(html.contains("王阿婆") && html.contains("Zhang, Wei"));
    // Nothing yet.
    assert!(residents_of(&w, w.station_a).await.is_empty());

    let done = confirm(&mut b, &html).await;
    done.expect(200);
    let done_html = done.text();
    assert!(done_html.contains("id=\"import-done\""), "{done_html}");
    let got = residents_of(&w, w.station_a).await;
    let want = [
        Profile {
            emergency_contact: "女儿 13900000001".into(),
            needs: "读报".into(),
            ..profile(
                "王阿婆",
                "华沙六村 3 号 201",
                "13800000001",
                Some(1938),
                Some(LivingSituation::Alone),
                Some(RiskLevel::High),
                Some(7),
            )
        },
        profile(
            "李老伯",
            "华沙六村 5 号 102",
            "",
            Some(1941),
            Some(LivingSituation::WithSpouse),
            Some(RiskLevel::Low),
            Some(14),
        ),
        profile(
            "Zhang, Wei",
            "华沙六村 8 号",
            "",
            None,
            None,
            None,
            Some(30),
        ),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for p in &want {
        assert_eq!(got[&p.name].1, *p);
        assert!(done_html.contains(&format!("/web/residents/{}", got[&p.name].0.0)));
    }
    assert!(residents_of(&w, w.station_b).await.is_empty());

    // The staff member's phone receives them at its next sync.
    let mut phone = w.phone(staff_a).await;
    phone.sync().await.unwrap();
    for p in &want {
        let id = got[&p.name].0;
        assert!(phone.holds(id), "{} reached the phone", p.name);
        assert_eq!(phone.resident(id).profile, *p);
    }

    // The same file again: every row is a duplicate of an existing resident.
    let again = upload(&mut b, w.station_a, "名册.csv", csv.as_bytes(), None).await;
    again.expect(422);
    let again_html = again.text();
    assert_eq!(
        again_html.matches("该服务站已有同名同地址的居民").count(),
        3
    );
    assert!(!again_html.contains("id=\"confirm-form\""));
    // Confirming the earlier preview once more is checked again, and refused.
    confirm(&mut b, &html).await.expect(422);
    assert_eq!(residents_of(&w, w.station_a).await.len(), 3);

    // GBK, as Chinese Excel saves CSV files.
    let (gbk, _, _) = encoding_rs::GBK.encode("姓名,地址\n陈阿姨,华沙六村 9 号\n");
    let preview = upload(&mut b, w.station_a, "gbk.csv", &gbk, None).await;
    preview.expect(200);
    confirm(&mut b, &preview.text()).await.expect(200);
    let got = residents_of(&w, w.station_a).await;
    assert_eq!(got["陈阿姨"].1.address, "华沙六村 9 号");
    assert_eq!(got.len(), 4);
}

/// The coordinator imports an XLSX with English headers into a station of the district.
async fn xlsx_roster_becomes_residents(t: TestStore) {
    use rust_xlsxwriter::Workbook;
    let w = World::new(t).await;
    let mut b = Browser::new(&w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);

    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let header = [
        "Name",
        "Birth year",
        "Risk level",
        "Visit every (days)",
        "Phone",
        "Address",
        "Living situation",
    ];
    for (c, h) in header.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    sheet.write_string(1, 0, "周奶奶").unwrap();
    sheet.write_number(1, 1, 1935.0).unwrap();
    sheet.write_string(1, 2, "Medium").unwrap();
    sheet.write_number(1, 3, 10.0).unwrap();
    sheet.write_number(1, 4, 13800000002.0).unwrap();
    sheet.write_string(1, 5, "翔宇品城 2 号").unwrap();
    sheet.write_string(1, 6, "与家人同住").unwrap();
    sheet.write_string(2, 0, "Old Wu").unwrap();
    sheet.write_string(2, 5, "翔宇品城 7 号").unwrap();
    let bytes = book.save_to_buffer().unwrap();

    let preview = upload(&mut b, w.station_b, "roster.xlsx", &bytes, None).await;
    preview.expect(200);
    let html = preview.text();
    assert!(html.contains("2 位居民可以导入"), "{html}");
    confirm(&mut b, &html).await.expect(200);

    let got = residents_of(&w, w.station_b).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got["周奶奶"].1,
        profile(
            "周奶奶",
            "翔宇品城 2 号",
            "13800000002",
            Some(1935),
            Some(LivingSituation::WithFamily),
            Some(RiskLevel::Medium),
            Some(10),
        )
    );
    assert_eq!(
        got["Old Wu"].1,
        profile("Old Wu", "翔宇品城 7 号", "", None, None, None, None)
    );
    assert!(residents_of(&w, w.station_a).await.is_empty());
}

/// One bad row: the preview names it (row and column), offers no confirm, and a
/// confirm made up from the file anyway creates nobody.
async fn a_bad_row_imports_nothing(t: TestStore) {
    let w = World::new(t).await;
    staff(&w, "staff_a", &[w.station_a]).await;
    let mut b = Browser::new(&w.server);
    b.sign_in("staff_a", STAFF_PASSWORD).await.expect(303);

    let csv = "姓名,出生年份,风险等级\n王阿婆,1938,high\n李老伯,1700,high\n张三,1950,很高\n";
    let preview = upload(&mut b, w.station_a, "bad.csv", csv.as_bytes(), None).await;
    preview.expect(422);
    let html = preview.text();
    assert!(html.contains("id=\"import-errors\""), "{html}");
    assert!(
        !html.contains("id=\"confirm-form\""),
        "no confirm with errors"
    );
    assert!(
        html.contains("<td>3</td><td>出生年份</td><td>出生年份 1700 不合理。</td>"),
        "{html}"
    );
    assert!(
        html.contains("<td>4</td><td>风险等级</td><td>“很高”无效"),
        "{html}"
    );
    assert_eq!(html.matches("class=\"import-error\"").count(), 2);

    // The confirm checks the file itself, whatever the browser says.
    let data = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        csv.as_bytes(),
    );
    let csrf = field(&b.page("/web/residents/import").await, "csrf");
    let station = w.station_a.0.to_string();
    let answer = b
        .post(
            "/web/residents/import/confirm",
            &[
                ("csrf", csrf.as_str()),
                ("station", station.as_str()),
                ("file_name", "bad.csv"),
                ("data", &data),
            ],
        )
        .await;
    answer.expect(422);
    assert!(residents_of(&w, w.station_a).await.is_empty());

    // What the file says is shown as text, never as markup.
    let csv = "姓名,<i>备注</i>\n\"<script>alert(1)</script>\",x\n";
    let preview = upload(&mut b, w.station_a, "x.csv", csv.as_bytes(), None).await;
    preview.expect(200);
    let html = preview.text();
    assert!(
        !html.contains("<script>alert") && !html.contains("<i>"),
        "{html}"
    );
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{html}"
    );

    // A file that is not a roster at all.
    let answer = upload(&mut b, w.station_a, "photo.png", b"\x89PNG", None).await;
    answer.expect(422);
    assert!(answer.text().contains("只支持 .xlsx 和 .csv 文件"));
    assert!(residents_of(&w, w.station_a).await.is_empty());
}

/// A station's staff craft the form for another station, and post without the CSRF
/// token: refused, and nothing created.
async fn crafted_station_and_missing_csrf_are_refused(t: TestStore) {
    let w = World::new(t).await;
    staff(&w, "staff_a", &[w.station_a]).await;
    let mut b = Browser::new(&w.server);
    b.sign_in("staff_a", STAFF_PASSWORD).await.expect(303);
    let page = b.page("/web/residents/import").await;
    assert!(page.contains(&w.station_a.0.to_string()));
    assert!(
        !page.contains(&w.station_b.0.to_string()),
        "only the user's stations are offered"
    );

    let csv = "姓名,地址\n王阿婆,翔宇品城 1 号\n";
    let answer = upload(&mut b, w.station_b, "r.csv", csv.as_bytes(), None).await;
    answer.expect(403);

    // A preview for the own station, then the confirm pointed at the other one.
    let preview = upload(&mut b, w.station_a, "r.csv", csv.as_bytes(), None).await;
    preview.expect(200);
    let html = preview
        .text()
        .replace(&w.station_a.0.to_string(), &w.station_b.0.to_string());
    confirm(&mut b, &html).await.expect(403);
    // A made-up station id.
    let html = preview
        .text()
        .replace(&w.station_a.0.to_string(), &Uuid::nil().to_string());
    confirm(&mut b, &html).await.expect(403);

    // Without the CSRF token, or with a wrong one.
    upload(&mut b, w.station_a, "r.csv", csv.as_bytes(), Some(""))
        .await
        .expect(403);
    upload(&mut b, w.station_a, "r.csv", csv.as_bytes(), Some("forged"))
        .await
        .expect(403);
    let html = preview
        .text()
        .replace(&field(&preview.text(), "csrf"), "forged");
    confirm(&mut b, &html).await.expect(403);

    assert!(residents_of(&w, w.station_a).await.is_empty());
    assert!(residents_of(&w, w.station_b).await.is_empty());

    // Too large a file: a clear refusal.
    let big = vec![b'a'; (2 << 20) + 1];
    let answer = upload(&mut b, w.station_a, "big.csv", &big, None).await;
    answer.expect(413);
    assert!(answer.text().contains("文件太大"), "{}", answer.text());
    // Larger than the upload's whole body limit: the same refusal.
    let bigger = vec![b'a'; 3 << 20];
    let answer = upload(&mut b, w.station_a, "big.csv", &bigger, None).await;
    answer.expect(413);
    assert!(answer.text().contains("文件太大"), "{}", answer.text());
}

/// A confirm pressed twice at once makes each resident once; a later confirm of the
/// same file, after a resident moved to another station, makes nobody again.
async fn a_roster_confirmed_twice_is_imported_once(t: TestStore) {
    let w = World::new(t).await;
    staff(&w, "staff_a", &[w.station_a]).await;
    let mut b = Browser::new(&w.server);
    b.sign_in("staff_a", STAFF_PASSWORD).await.expect(303);
    let csv = "姓名,地址\n陈阿姨,华沙六村 9 号\n周老伯,华沙六村 12 号\n";
    let preview = upload(&mut b, w.station_a, "r.csv", csv.as_bytes(), None).await;
    preview.expect(200);
    let html = preview.text();

    // Two tabs (or a double click) post the same confirm at the same moment.
    let mut other = Browser::new(&w.server);
    other.cookies = b.cookies.clone();
    let (first, second) = tokio::join!(confirm(&mut b, &html), confirm(&mut other, &html));
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert!(
        statuses == [200, 409] || statuses == [200, 422],
        "one confirm imports, the other is refused: {statuses:?}"
    );
    let got = residents_of(&w, w.station_a).await;
    assert_eq!(
        got.keys().map(String::as_str).collect::<Vec<_>>(),
        ["周老伯", "陈阿姨"]
    );

    // 陈阿姨 moves to station B; confirming the old preview again makes no second
    // 陈阿姨 at A (the duplicate check no longer sees her there) and no 周老伯.
    let moved = got["陈阿姨"].0;
    let mut coordinator = w.coordinator_phone().await;
    coordinator.sync().await.unwrap();
    coordinator.edit(moved, |file, editor| {
        file.set_station(editor, w.station_b).unwrap();
    });
    coordinator.sync().await.unwrap();
    assert_eq!(residents_of(&w, w.station_a).await.len(), 1);
    let again = confirm(&mut b, &html).await;
    // 周老伯 is still at A: the check of the file names him as a duplicate.
    again.expect(422);
    assert!(again.text().contains("该服务站已有同名同地址的居民"));
    let only_chen = "姓名,地址\n陈阿姨,华沙六村 9 号\n";
    let preview = upload(&mut b, w.station_a, "r.csv", only_chen.as_bytes(), None).await;
    preview.expect(200);
    let again = confirm(&mut b, &preview.text()).await;
    again.expect(409);
    assert!(
        again.text().contains("这份名册已经导入过"),
        "{}",
        again.text()
    );
    assert_eq!(residents_of(&w, w.station_a).await.len(), 1);
    assert_eq!(residents_of(&w, w.station_b).await.len(), 1);
}

conformance!(
    csv_roster_becomes_residents_on_the_phones,
    xlsx_roster_becomes_residents,
    a_bad_row_imports_nothing,
    a_roster_confirmed_twice_is_imported_once,
    crafted_station_and_missing_csrf_are_refused,
);
