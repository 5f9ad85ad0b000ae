//! Follow-up tickets on the web (issue 5, "Follow-ups"), over HTTP as a browser
//! without JavaScript uses them: a ticket opened from a visit's hazard, assigned with a
//! deadline already past (overdue on the list and the ticket's page), commented on and
//! closed, then read on the volunteer's phone; and, from the attacker's side, other
//! stations' staff, forged forms, made-up ids and bad input, none of which changes the
//! stored document.

use crate::backends::{TestStore, conformance};
use crate::web::{Log, log_world};
use crate::web_client::{Browser, STAFF_PASSWORD, field, staff, unescape};
use crate::world::{COORDINATOR_PASSWORD, World, stored};
use serde_json::json;
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::store::ServerStore;
use uuid::Uuid;

/// A form posted to a path with bad input, and the reason the page must give.
type BadForm<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);

/// Takes `user` off every station, as an administrator would in the database.
async fn unstaff(w: &World, user: UserId) {
    use sqlx::Connection;
    let url = &w.server.t.url;
    let sql = "DELETE FROM staff_stations WHERE user_id = $1";
    let id = user.0.as_bytes().to_vec();
    let done = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(id)
            .execute(&mut c)
            .await
            .unwrap()
            .rows_affected()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(id)
            .execute(&mut c)
            .await
            .unwrap()
            .rows_affected()
    };
    assert_eq!(done, 1);
}

/// A deadline's day in Shanghai.
fn day(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap());
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The HTML of the form with `id`, up to its end.
fn form<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no form {id} in {html}"));
    let end = start + html[start..].find("</form>").unwrap();
    &html[start..end]
}

/// A select's options in a piece of HTML: (value, label).
fn options(html: &str) -> Vec<(String, String)> {
    html.split("<option value=\"")
        .skip(1)
        .map(|o| {
            let (value, rest) = o.split_once('"').unwrap();
            let label = rest.split_once('>').unwrap().1.split('<').next().unwrap();
            (value.to_owned(), unescape(label))
        })
        .collect()
}

/// The ticket a redirect after opening one points at, and the path of its page.
fn ticket_of(location: &str, resident: ResidentId) -> (FollowUpId, String) {
    let prefix = format!("/web/follow-ups/{}/", resident.0);
    let rest = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{location} is not a ticket of {resident}"));
    let id = rest.split('?').next().unwrap();
    (FollowUpId(id.parse().unwrap()), format!("{prefix}{id}"))
}

/// Logs a visit with a hazard not fixed on the spot from the volunteer's phone.
async fn hazard_visit(log: &mut Log) -> VisitId {
    let id = VisitId(Uuid::now_v7());
    let mut record = crate::phone::record("查看用电");
    record.follow_up_needed = false;
    record.hazards = vec![Hazard {
        hazard_type: HazardTypeId(Uuid::from_u128(0x77)),
        severity: Severity::High,
        fixed_on_spot: false,
        note: "插线板老化".into(),
    }];
    let resident = log.resident_a;
    log.volunteer_a.edit(resident, |file, editor| {
        file.log_visit(editor, id, &record).unwrap();
    });
    log.volunteer_a.sync().await.unwrap();
    id
}

async fn signed_in(log: &Log, login: &str, password: &str) -> Browser {
    let mut b = Browser::new(&log.w.server);
    b.sign_in(login, password).await.expect(303);
    b
}

/// Opened from a hazard, assigned past its deadline, commented on, closed: the list,
/// the ticket's page and the volunteer's phone follow each step.
async fn a_ticket_from_a_hazard_reaches_the_phone(t: TestStore) {
    let mut log = log_world(t).await;
    let hazard = hazard_visit(&mut log).await;
    let w = &log.w;
    let (r, volunteer) = (log.resident_a, log.volunteer_a.user);
    let staff_a = staff(w, "staff_a", &[w.station_a]).await;
    let staff_b = staff(w, "staff_b", &[w.station_b]).await;
    let mut b = signed_in(&log, "coordinator", COORDINATOR_PASSWORD).await;

    // The resident page offers a form on the visit with the hazard, its title taken
    // from the hazard, its owners the station's staff, the coordinator and the
    // visit's volunteer; never another station's staff.
    let page = b.page(&format!("/web/residents/{}", r.0)).await;
    let from_visit = form(&page, &format!("open-visit-{}", hazard.0));
    let title = field(from_visit, "title");
    assert!(title.contains("插线板老化"), "{title}");
    assert_eq!(field(from_visit, "visit"), hazard.0.to_string());
    let owners = options(from_visit);
    let owner_ids: Vec<&str> = owners.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(owners[0].0, "", "unassigned comes first");
    for u in [staff_a, w.coordinator, volunteer] {
        assert!(owner_ids.contains(&u.0.to_string().as_str()), "{owners:?}");
    }
    assert!(!owner_ids.contains(&staff_b.0.to_string().as_str()));
    assert_eq!(owners.len(), 4, "{owners:?}");
    // The general form offers staff and coordinators, not the volunteer.
    let general = options(form(&page, "open-follow-up"));
    assert_eq!(general.len(), 3, "{general:?}");
    assert!(!general.iter().any(|(v, _)| *v == volunteer.0.to_string()));
    // log_world's own visit asked for a follow-up: it has a form too.
    assert!(page.contains(&format!("id=\"open-visit-{}\"", log.visit_a.0)));

    let csrf = field(&page, "csrf");
    let opened = b
        .post(
            &format!("/web/residents/{}/follow-ups", r.0),
            &[
                ("csrf", &csrf),
                ("title", &title),
                ("visit", &hazard.0.to_string()),
                ("owner", &staff_a.0.to_string()),
                ("deadline", ""),
            ],
        )
        .await;
    opened.expect(303);
    let (id, href) = ticket_of(&opened.location(), r);
    let ticket = b.page(&opened.location()).await;
    assert!(ticket.contains("id=\"notice\""));
    assert!(ticket.contains("插线板老化"));
    assert!(ticket.contains("<span id=\"status\" class=\"status open\">处理中</span>"));
    assert!(ticket.contains("<dd id=\"owner\">staff_a</dd>"), "{ticket}");
    assert!(ticket.contains(&format!("/web/residents/{}#visit-{}", r.0, hazard.0)));
    assert!(ticket.contains("id=\"no-comments\""));
    assert!(!ticket.contains("overdue"));

    // Reassigned to the volunteer with a deadline already past: overdue.
    b.post(
        &format!("{href}/assign"),
        &[
            ("csrf", &csrf),
            ("owner", &volunteer.0.to_string()),
            ("deadline", "2025-01-02"),
        ],
    )
    .await
    .expect(303);
    let ticket = b.page(&href).await;
    assert!(ticket.contains("<dd id=\"owner\">wang</dd>"));
    assert!(ticket.contains("<dd id=\"deadline\" class=\"overdue\">2025-01-02"));
    assert!(ticket.contains("id=\"overdue\"") && ticket.contains("已逾期"));
    // The deadline's form keeps what was set.
    let assign = form(&ticket, "assign-form");
    assert!(assign.contains("value=\"2025-01-02\""));
    assert!(
        options(assign)
            .iter()
            .any(|(v, _)| *v == volunteer.0.to_string())
    );
    // The list marks it and links to it, in both filters that hold it.
    for list in ["/web/follow-ups", "/web/follow-ups?status=overdue"] {
        let list = b.page(list).await;
        let row = &list[list.find(&href).expect("the list links the ticket")..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains("class=\"overdue\"") && row.contains("已逾期"),
            "{row}"
        );
        assert!(row.contains("wang"));
    }
    // The resident page's list marks it too.
    let page = b.page(&format!("/web/residents/{}", r.0)).await;
    assert!(page.contains(&format!("href=\"{href}\"")));
    assert!(page.contains("<span class=\"flag overdue\">已逾期</span>"));

    // Comments, from the coordinator and from the station's staff, oldest first.
    let comment = "已联系物业 <b>&</b>";
    b.post(
        &format!("{href}/comment"),
        &[("csrf", &csrf), ("text", comment)],
    )
    .await
    .expect(303);
    let mut s = signed_in(&log, "staff_a", STAFF_PASSWORD).await;
    let theirs = s.page(&href).await;
    let staff_csrf = field(&theirs, "csrf");
    let done = s
        .post(
            &format!("{href}/comment"),
            &[("csrf", &staff_csrf), ("text", "明天上门更换")],
        )
        .await;
    done.expect(303);
    assert_eq!(done.location(), format!("{href}?done=commented"));
    let ticket = b.page(&href).await;
    let first = ticket
        .find("已联系物业 &#60;b&#62;&#38;&#60;/b&#62;")
        .or_else(|| ticket.find("已联系物业 &lt;b&gt;&amp;&lt;/b&gt;"));
    let second = ticket.find("明天上门更换");
    assert!(
        first.is_some() && second.is_some() && first < second,
        "{ticket}"
    );
    assert!(!ticket.contains("<b>&</b>"));
    assert_eq!(ticket.matches("<li class=\"comment\">").count(), 2);
    assert!(ticket.contains("李协调") && ticket.contains("staff_a"));

    // Closed with a resolution: no longer overdue, no more assigning or closing.
    b.post(
        &format!("{href}/close"),
        &[("csrf", &csrf), ("resolution", "已更换插线板")],
    )
    .await
    .expect(303);
    let ticket = b.page(&format!("{href}?done=closed")).await;
    assert!(ticket.contains("id=\"notice\""));
    assert!(ticket.contains("class=\"status closed\">已关闭"));
    assert!(ticket.contains("<dd id=\"resolution\" class=\"notes\">已更换插线板</dd>"));
    assert!(ticket.contains("id=\"closed-by\">李协调"));
    assert!(!ticket.contains("overdue"));
    assert!(!ticket.contains("id=\"assign-form\"") && !ticket.contains("id=\"close-form\""));
    // In English too.
    b.get("/web/lang/en?back=%2Fweb%2Fvisits").await.expect(303);
    let english = b.page(&href).await;
    assert!(english.contains("class=\"status closed\">Closed") && english.contains("Resolution"));
    assert!(!english.contains("已关闭") && !english.contains("处理结果"));
    b.get("/web/lang/zh?back=%2Fweb%2Fvisits").await.expect(303);
    assert!(!b.page("/web/follow-ups").await.contains(&href));
    assert!(
        b.page("/web/follow-ups?status=closed")
            .await
            .contains(&href)
    );

    // The volunteer's phone receives all of it at its next sync.
    let report = log.volunteer_a.sync().await.unwrap();
    assert!(report.received_changes >= 5, "{report:?}");
    let on_phone = log
        .volunteer_a
        .resident(r)
        .follow_ups
        .into_iter()
        .find(|f| f.id == id)
        .expect("the ticket reached the phone");
    assert_eq!(on_phone.title, title);
    assert_eq!(on_phone.visit, Some(hazard));
    assert_eq!(on_phone.status, FollowUpStatus::Closed);
    assert_eq!(on_phone.owner, Some(volunteer));
    assert_eq!(on_phone.opened_by, w.coordinator);
    assert_eq!(on_phone.closed_by, Some(w.coordinator));
    assert_eq!(on_phone.resolution, "已更换插线板");
    assert!(on_phone.deadline.is_some_and(|d| d < server::now_ms()));
    let comments: Vec<(UserId, &str)> = on_phone
        .comments
        .iter()
        .map(|c| (c.author, c.text.as_str()))
        .collect();
    assert_eq!(
        comments,
        vec![(w.coordinator, comment), (staff_a, "明天上门更换")]
    );

    // A ticket not tied to a visit, from the general form, owned by a staff member
    // who then leaves the station.
    let leaving = staff(w, "staff_leaving", &[w.station_a]).await;
    let opened = b
        .post(
            &format!("/web/residents/{}/follow-ups", r.0),
            &[
                ("csrf", &csrf),
                ("title", "  联系家属确认用药  "),
                ("visit", ""),
                ("owner", &leaving.0.to_string()),
                ("deadline", "2099-12-31"),
            ],
        )
        .await;
    opened.expect(303);
    let (general, href) = ticket_of(&opened.location(), r);
    let ticket = b.page(&href).await;
    assert!(ticket.contains("联系家属确认用药") && !ticket.contains("id=\"visit-link\""));
    assert!(ticket.contains("2099-12-31") && !ticket.contains("overdue"));
    unstaff(w, leaving).await;
    // New tickets no longer offer them; theirs keeps them, and changing only its
    // deadline keeps them as its owner.
    let page = b.page(&format!("/web/residents/{}", r.0)).await;
    let leaving_id = leaving.0.to_string();
    assert!(
        !options(form(&page, "open-follow-up"))
            .iter()
            .any(|(v, _)| *v == leaving_id)
    );
    let ticket = b.page(&href).await;
    assert!(ticket.contains(&format!("<option value=\"{leaving_id}\" selected>")));
    b.post(
        &format!("{href}/assign"),
        &[
            ("csrf", &csrf),
            ("owner", &leaving_id),
            ("deadline", "2099-06-30"),
        ],
    )
    .await
    .expect(303);
    log.volunteer_a.sync().await.unwrap();
    let on_phone = log.volunteer_a.resident(r).follow_ups;
    let general = on_phone.iter().find(|f| f.id == general).unwrap();
    assert_eq!(general.title, "联系家属确认用药");
    assert_eq!(general.visit, None);
    assert_eq!(general.owner, Some(leaving));
    assert_eq!(general.deadline.map(day), Some("2099-06-30".to_owned()));

    assert!(w.server.store().quarantined(10).await.unwrap().is_empty());
    assert!(w.server.store().check().await.unwrap().ok());
}

/// From the attacker's side: another station's staff, forms without the session's
/// token, made-up and crossed ids, a volunteer's sign-in, bad input and a closed
/// ticket. Each gets its 403, 404 or 400, and the stored document does not move.
async fn attackers_and_bad_input_change_nothing(t: TestStore) {
    let log = log_world(t).await;
    let w = &log.w;
    let (r, other) = (log.resident_a, log.resident_b);
    let staff_b = staff(w, "staff_b", &[w.station_b]).await;
    let mut b = signed_in(&log, "coordinator", COORDINATOR_PASSWORD).await;
    let page = b.page(&format!("/web/residents/{}", r.0)).await;
    let csrf = field(&page, "csrf");
    let open_path = format!("/web/residents/{}/follow-ups", r.0);
    let opened = b
        .post(
            &open_path,
            &[
                ("csrf", &csrf),
                ("title", "复查血压"),
                ("visit", &log.visit_a.0.to_string()),
            ],
        )
        .await;
    opened.expect(303);
    let (id, href) = ticket_of(&opened.location(), r);
    let before = &(stored(&w.server, r).await, stored(&w.server, other).await);
    let unchanged = move || async move {
        assert_eq!(
            &(stored(&w.server, r).await, stored(&w.server, other).await),
            before,
            "nothing may change"
        );
    };

    // Station B's staff: station A's resident and its ticket do not exist for them,
    // whatever they post, with their own valid token.
    let mut s = signed_in(&log, "staff_b", STAFF_PASSWORD).await;
    let theirs = s.page(&format!("/web/residents/{}", other.0)).await;
    let staff_csrf = field(&theirs, "csrf");
    s.get(&href).await.expect(404);
    s.post(&open_path, &[("csrf", &staff_csrf), ("title", "x")])
        .await
        .expect(404);
    for (action, field_name) in [("comment", "text"), ("close", "resolution")] {
        s.post(
            &format!("{href}/{action}"),
            &[("csrf", &staff_csrf), (field_name, "x")],
        )
        .await
        .expect(404);
    }
    s.post(
        &format!("{href}/assign"),
        &[("csrf", &staff_csrf), ("owner", &staff_b.0.to_string())],
    )
    .await
    .expect(404);
    // A's ticket under B's resident, whom they may see: still no such ticket.
    let crossed = format!("/web/follow-ups/{}/{}", other.0, id.0);
    s.get(&crossed).await.expect(404);
    s.post(
        &format!("{crossed}/comment"),
        &[("csrf", &staff_csrf), ("text", "x")],
    )
    .await
    .expect(404);
    // A visit of A's resident on B's resident's ticket form: no such visit.
    s.post(
        &format!("/web/residents/{}/follow-ups", other.0),
        &[
            ("csrf", &staff_csrf),
            ("title", "x"),
            ("visit", &log.visit_a.0.to_string()),
        ],
    )
    .await
    .expect(404);
    unchanged().await;

    // Forms without the session's token, or with another's.
    for token in ["", "forged", staff_csrf.as_str()] {
        b.post(&open_path, &[("csrf", token), ("title", "x")])
            .await
            .expect(403);
        b.post(
            &format!("{href}/comment"),
            &[("csrf", token), ("text", "x")],
        )
        .await
        .expect(403);
        b.post(&format!("{href}/assign"), &[("csrf", token), ("owner", "")])
            .await
            .expect(403);
        b.post(
            &format!("{href}/close"),
            &[("csrf", token), ("resolution", "x")],
        )
        .await
        .expect(403);
    }
    // Signed out, a form goes to the sign-in page and writes nothing.
    Browser::new(&w.server)
        .post(
            &format!("{href}/comment"),
            &[("csrf", &csrf), ("text", "x")],
        )
        .await
        .expect(303);
    unchanged().await;

    // Made-up ids: 404, never a panic.
    let nobody = Uuid::now_v7();
    for path in [
        format!("/web/follow-ups/{}/{nobody}", r.0),
        format!("/web/follow-ups/{}/not-an-id", r.0),
        format!("/web/follow-ups/{nobody}/{}", id.0),
        format!("/web/follow-ups/x/{}", id.0),
        format!("/web/follow-ups/{}/%00", r.0),
    ] {
        b.get(&path).await.expect(404);
        b.post(
            &format!("{path}/comment"),
            &[("csrf", &csrf), ("text", "x")],
        )
        .await
        .expect(404);
        b.post(
            &format!("{path}/close"),
            &[("csrf", &csrf), ("resolution", "x")],
        )
        .await
        .expect(404);
    }
    for visit in [
        "not-an-id".to_owned(),
        nobody.to_string(),
        log.visit_b.0.to_string(),
    ] {
        b.post(
            &open_path,
            &[("csrf", &csrf), ("title", "x"), ("visit", &visit)],
        )
        .await
        .expect(404);
    }
    b.post(
        &format!("/web/residents/{nobody}/follow-ups"),
        &[("csrf", &csrf), ("title", "x")],
    )
    .await
    .expect(404);
    unchanged().await;

    // Bad input: a 400 whose reason the page gives in its language.
    let long = "长".repeat(201);
    let staff_b_id = staff_b.0.to_string();
    let cases: Vec<BadForm> = vec![
        (
            open_path.clone(),
            vec![("title", "  ")],
            "请填写跟进事项的内容",
        ),
        (open_path.clone(), vec![("title", &long)], "内容太长"),
        (
            open_path.clone(),
            vec![("title", "x"), ("deadline", "2026-13-01")],
            "日期应写成",
        ),
        (
            open_path.clone(),
            vec![("title", "x"), ("deadline", "2019-12-31")],
            "期限应在 2020 年至 2099 年之间",
        ),
        (
            open_path.clone(),
            vec![("title", "x"), ("owner", &staff_b_id)],
            "所选负责人不能负责此事项",
        ),
        (
            open_path.clone(),
            vec![("title", "x"), ("owner", "somebody")],
            "所选负责人不能负责此事项",
        ),
        (
            format!("{href}/comment"),
            vec![("text", "\n ")],
            "留言不能为空",
        ),
        (
            format!("{href}/assign"),
            vec![("owner", &staff_b_id)],
            "所选负责人不能负责此事项",
        ),
        (
            format!("{href}/assign"),
            vec![("deadline", "next week")],
            "日期应写成",
        ),
        (
            format!("{href}/close"),
            vec![("resolution", "")],
            "请写明处理结果",
        ),
    ];
    for (path, fields, reason) in &cases {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields.iter().copied());
        let answer = b.post(path, &form).await;
        answer.expect(400);
        assert!(
            answer.text().contains(reason),
            "{path} {fields:?}: {}",
            answer.text()
        );
    }
    // A body that is not a form at all.
    let garbled = b
        .send(
            b.request(reqwest::Method::POST, &format!("{href}/comment"))
                .body(format!("csrf={csrf}&text=x")),
        )
        .await;
    assert_eq!(garbled.status, 400);
    // In English, the reason is in English.
    b.get("/web/lang/en?back=%2Fweb%2Fvisits").await.expect(303);
    let answer = b.post(&open_path, &[("csrf", &csrf), ("title", "")]).await;
    answer.expect(400);
    assert!(answer.text().contains("Write what the follow-up is about."));
    b.get("/web/lang/zh?back=%2Fweb%2Fvisits").await.expect(303);
    unchanged().await;

    // A volunteer cannot sign in to the web at all.
    w.server
        .post(
            "/api/v1/users",
            Some(&w.coordinator_token),
            &json!({ "login": "zhao", "display_name": "赵志愿者", "role": "volunteer",
                     "password": "a volunteer's password" }),
        )
        .await
        .expect(201);
    let mut v = Browser::new(&w.server);
    v.sign_in("zhao", "a volunteer's password")
        .await
        .expect(403);
    v.get(&href).await.expect(303);
    unchanged().await;

    // A closed ticket takes comments but is not assigned or closed again.
    b.post(
        &format!("{href}/close"),
        &[("csrf", &csrf), ("resolution", "已复查")],
    )
    .await
    .expect(303);
    let closed = stored(&w.server, r).await;
    let again = b
        .post(
            &format!("{href}/close"),
            &[("csrf", &csrf), ("resolution", "改写")],
        )
        .await;
    again.expect(400);
    assert!(again.text().contains("该跟进事项已经关闭"));
    b.post(
        &format!("{href}/assign"),
        &[("csrf", &csrf), ("owner", ""), ("deadline", "")],
    )
    .await
    .expect(400);
    assert_eq!(stored(&w.server, r).await, closed);
    let file = w.server.store().load(r.into()).await.unwrap().unwrap();
    let ticket = sync_core::doc::casefile::CaseFile::from_doc(file)
        .unwrap()
        .follow_up(id)
        .unwrap()
        .unwrap();
    assert_eq!(ticket.resolution, "已复查");
    assert!(w.server.store().quarantined(10).await.unwrap().is_empty());
}

conformance!(
    a_ticket_from_a_hazard_reaches_the_phone,
    attackers_and_bad_input_change_nothing,
);
