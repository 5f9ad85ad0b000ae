//! Closing and reopening a case file on the web (issue 16), on both backends: station
//! staff close a resident's file with a reason from the resident page; the volunteer's
//! phone hands over the visit it logged offline and then purges the file; the file
//! leaves the due page and the default resident list (the "closed" filter shows it,
//! with its reason); a coordinator reopens it and the phone receives it again, visit
//! included. From the attacker's side: another station's staff (404), a forged CSRF
//! token (403) and an unknown reason (400) change nothing.

use crate::backends::{TestStore, conformance};
use crate::web_client::{Browser, STAFF_PASSWORD, coordinator, field, staff};
use crate::world::{World, stored};
use sync_core::doc::casefile::{FieldValue, ProfileField};

async fn a_case_file_is_closed_and_reopened_on_the_web(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let other = w.resident(&mut c, w.station_a, "李老伯").await;
    for r in [resident, other] {
        c.edit(r, |f, e| {
            f.update_profile(e, ProfileField::VisitEveryDays, &FieldValue::Int(7))
                .unwrap();
        });
    }
    c.sync().await.unwrap();
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    w.assign(v.user, other).await;
    v.sync().await.unwrap();
    assert!(v.holds(resident) && v.holds(other));
    // Offline, the volunteer logs a visit to 王阿婆 that the server has not seen.
    let visit = v.log_visit(resident, "最后一次走访，她说下周搬去女儿家");

    let page_path = format!("/web/residents/{}", resident.0);
    let close_path = format!("{page_path}/close");
    staff(&w, "staff-a", &[w.station_a]).await;
    staff(&w, "staff-b", &[w.station_b]).await;
    let mut sa = Browser::new(&w.server);
    sa.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    let page = sa.page(&page_path).await;
    assert!(page.contains("id=\"close-form\""), "{page}");
    let csrf = field(&page, "csrf");

    // The attacker's side: nothing is written.
    let before = stored(&w.server, resident).await;
    let mut sb = Browser::new(&w.server);
    sb.sign_in("staff-b", STAFF_PASSWORD).await.expect(303);
    let csrf_b = field(&sb.page("/web/visits").await, "csrf");
    sb.post(
        &close_path,
        &[("csrf", &csrf_b), ("reason", "moved_away"), ("note", "")],
    )
    .await
    .expect(404);
    sa.post(
        &close_path,
        &[("csrf", "forged"), ("reason", "moved_away"), ("note", "")],
    )
    .await
    .expect(403);
    sa.post(
        &close_path,
        &[("csrf", &csrf), ("reason", "bored"), ("note", "")],
    )
    .await
    .expect(400);
    assert_eq!(stored(&w.server, resident).await, before);

    // Staff close it: moved in with her daughter.
    let answer = sa
        .post(
            &close_path,
            &[
                ("csrf", &csrf),
                ("reason", "moved_away"),
                ("note", "搬去女儿家（宝山区）"),
            ],
        )
        .await;
    answer.expect(303);
    let page = sa.page(&answer.location()).await;
    assert!(page.contains("id=\"closed-banner\""), "{page}");
    assert!(
        page.contains("搬离") && page.contains("搬去女儿家（宝山区）"),
        "{page}"
    );
    assert!(page.contains("id=\"reopen-form\""), "{page}");

    // The phone hands the offline visit over, then purges the file; the other stays.
    let report = v.sync().await.unwrap();
    assert!(report.rejections.is_empty(), "{report:?}");
    assert!(!v.holds(resident), "the closed file left the phone");
    assert!(v.holds(other));
    assert_eq!(stored(&w.server, resident).await.quarantined, 0);
    let page = sa.page(&page_path).await;
    assert!(
        page.contains("下周搬去女儿家"),
        "the visit is on the record: {page}"
    );

    // The due page no longer lists her; the resident list shows her only as closed.
    let mut b = coordinator(&w).await;
    let due = b.page("/web/due").await;
    assert!(due.contains("李老伯") && !due.contains("王阿婆"), "{due}");
    let open = b.page("/web/residents").await;
    assert!(
        open.contains("李老伯") && !open.contains("王阿婆"),
        "{open}"
    );
    let closed = b.page("/web/residents?files=closed").await;
    assert!(
        closed.contains("王阿婆") && !closed.contains("李老伯"),
        "{closed}"
    );
    assert!(closed.contains("class=\"flag closed\""), "{closed}");
    let all = b.page("/web/residents?files=all").await;
    assert!(all.contains("王阿婆") && all.contains("李老伯"), "{all}");
    b.get("/web/residents?files=gone").await.expect(400);

    // A coordinator reopens it: the phone receives it again, the visit with it.
    let csrf = field(&b.page(&page_path).await, "csrf");
    b.post(&format!("{page_path}/reopen"), &[("csrf", "forged")])
        .await
        .expect(403);
    let answer = b
        .post(&format!("{page_path}/reopen"), &[("csrf", &csrf)])
        .await;
    answer.expect(303);
    let page = b.page(&answer.location()).await;
    assert!(!page.contains("id=\"closed-banner\""), "{page}");
    assert!(page.contains("id=\"close-form\""), "{page}");
    v.sync().await.unwrap();
    assert!(v.holds(resident), "the reopened file is back on the phone");
    let back = v.resident(resident);
    assert!(back.closure.is_none());
    assert!(back.visits.iter().any(|x| x.id == visit));
    // Back in the default list (not due: her last visit was today).
    assert!(b.page("/web/residents").await.contains("王阿婆"));
}

conformance!(a_case_file_is_closed_and_reopened_on_the_web);
