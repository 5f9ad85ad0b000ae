//! Nothing a volunteer records is lost (issue 12), over HTTP on both backends: a phone
//! whose clock runs two days fast is receipted (and flagged on the devices page, not
//! refused); a version-1 phone is answered in version 1; a visit logged offline to a
//! resident unassigned before the sync is refused, stays on the phone with its reason,
//! reaches the coordinators' refused-changes page decoded, and is accepted into the
//! record or dismissed with a reason that reaches the phone; and, from the attacker's
//! side, station staff, another district's coordinator and forged forms decide nothing.

use crate::backends::{TestStore, conformance};
use crate::web_client::{
    Browser, STAFF_PASSWORD, coordinator, field, other_district_coordinator, staff,
};
use crate::world::{COORDINATOR_PASSWORD, World, stored};
use sync_core::protocol::envelope::SyncResponse;

const DAY_MS: i64 = 24 * 3_600_000;

async fn a_phone_whose_clock_runs_two_days_fast_is_receipted_and_flagged(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();

    // Offline for weeks, the phone's clock drifted two days ahead.
    v.clock_offset = 2 * DAY_MS;
    let visit = v.log_visit(resident, "钟快了两天");
    let report = v.sync().await.unwrap();
    assert!(report.rejections.is_empty(), "{report:?}");
    assert_eq!(report.receipted, vec![resident.into()]);
    assert_eq!(v.pending(), 0);
    assert_eq!(stored(&w.server, resident).await.quarantined, 0);

    // The coordinator sees the visit, and the phone's clock flagged on its user's page.
    let mut b = coordinator(&w).await;
    let page = b.page(&format!("/web/residents/{}", resident.0)).await;
    assert!(page.contains("钟快了两天"), "{page}");
    assert!(page.contains(&visit.0.to_string()));
    let user = b.page(&format!("/web/admin/users/{}", v.user.0)).await;
    assert!(user.contains("快了 2 天"), "{user}");
    // A phone whose clock is right is not flagged.
    v.clock_offset = 0;
    v.log_visit(resident, "钟已校准");
    v.sync().await.unwrap();
    let user = b.page(&format!("/web/admin/users/{}", v.user.0)).await;
    assert!(!user.contains("快了"), "{user}");
    assert!(user.contains("准确"), "{user}");
}

async fn a_version_1_phone_is_answered_in_version_1(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();
    v.log_visit(resident, "旧版本的手机");
    // A version-1 request is version 2's without its last two fields; with clock 0
    // and nothing refused those are the last two bytes (0, 0).
    let mut request = v.replica.prepare(0).unwrap().encode();
    assert_eq!(request.split_off(request.len() - 2), vec![0, 0]);
    request[4] = 1;
    let answer = v.post_sync(request).await.unwrap();
    assert_eq!(&answer[..6], b"LNSY\x01\x02", "answered in version 1");
    // Version 2's answer adds only the (here empty) decisions after version 1's body.
    let mut as_v2 = answer.clone();
    as_v2[4] = 2;
    as_v2.push(0);
    let response = SyncResponse::decode(&as_v2).unwrap();
    assert_eq!(response.receipts.len(), 1);
    assert_eq!(response.receipts[0].doc, resident.into());
}

/// The number of the refusal in a sync report.
fn refused_number(report: &sync_core::protocol::replica::SyncReport) -> u64 {
    assert_eq!(report.rejections.len(), 1, "{report:?}");
    assert_eq!(report.rejections[0].code, "out_of_scope");
    let n = report.rejections[0].quarantine;
    assert!(n > 0, "kept in quarantine: {report:?}");
    n
}

async fn a_refused_visit_reaches_a_coordinator_who_accepts_or_dismisses_it(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let wang_a = w.resident(&mut c, w.station_a, "王阿婆").await;
    let li_b = w.resident(&mut c, w.station_a, "李老伯").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, wang_a).await;
    w.assign(v.user, li_b).await;
    v.sync().await.unwrap();

    // Offline, a visit to 王阿婆; before the phone syncs she is unassigned from it.
    let visit = v.log_visit(wang_a, "量血压 160/100，头晕");
    w.unassign(v.user, wang_a).await;
    let report = v.sync().await.unwrap();
    let first = refused_number(&report);
    // The phone no longer holds her case file, but keeps the refused visit.
    assert!(!v.holds(wang_a));
    assert_eq!(v.pending(), 0);
    let refused = v.replica.refused().unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].quarantine, refused[0].doc),
        (first, wang_a.into())
    );
    let (_, what) = v.replica.refused_contents(&refused[0]).unwrap();
    assert!(what.visits.contains(&visit));

    // From the attacker's side first: station staff are not shown the page, another
    // district's coordinator cannot see or decide the batch, a forged form decides
    // nothing.
    staff(&w, "staff-a", &[w.station_a]).await;
    let mut s = Browser::new(&w.server);
    s.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    s.get("/web/quarantine").await.expect(403);
    let mut e = other_district_coordinator(&w, "elsewhere", COORDINATOR_PASSWORD).await;
    let list = e.page("/web/quarantine").await;
    assert!(!list.contains(&format!("refusal-{first}")), "{list}");
    e.get(&format!("/web/quarantine/{first}")).await.expect(404);
    let csrf = field(&e.page("/web/quarantine").await, "csrf");
    e.post(
        &format!("/web/quarantine/{first}/accept"),
        &[("csrf", csrf.as_str())],
    )
    .await
    .expect(404);

    // The district's coordinator sees the batch decoded: who, what, why; and the
    // volunteer's devices list counts it as awaiting a decision.
    let mut b = coordinator(&w).await;
    let devices = b.page(&format!("/web/admin/users/{}", v.user.0)).await;
    assert!(
        devices.contains("<td class=\"awaiting\"><a class=\"flag\" href=\"/web/quarantine\">1</a>"),
        "{devices}"
    );
    assert!(devices.contains("id=\"revoke-help\""), "{devices}");
    let list = b.page("/web/quarantine").await;
    assert!(list.contains(&format!("refusal-{first}")), "{list}");
    assert!(list.contains("王阿婆"), "{list}");
    assert!(list.contains("wang"), "{list}");
    assert!(list.contains("量血压 160/100，头晕"), "{list}");
    assert!(list.contains("out_of_scope"), "{list}");
    let page = b.page(&format!("/web/quarantine/{first}")).await;
    assert!(page.contains("id=\"accept\""), "{page}");
    let log = b.page("/web/visits").await;
    assert_eq!(log.matches("<tr class=\"visit\">").count(), 0, "{log}");
    // Without the session's CSRF token nothing is decided.
    b.post(
        &format!("/web/quarantine/{first}/accept"),
        &[("csrf", "forged")],
    )
    .await
    .expect(403);
    assert!(v.replica.prepare(0).unwrap().refused == vec![first]);

    // Accepted: the visit enters the record under the volunteer's name.
    let csrf = field(&page, "csrf");
    let answer = b
        .post(
            &format!("/web/quarantine/{first}/accept"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    answer.expect(303);
    assert_eq!(
        answer.location(),
        format!("/web/quarantine/{first}?done=accepted")
    );
    let resident_page = b.page(&format!("/web/residents/{}", wang_a.0)).await;
    assert!(
        resident_page.contains("量血压 160/100，头晕"),
        "{resident_page}"
    );
    let log = b.page("/web/visits").await;
    assert_eq!(log.matches("<tr class=\"visit\">").count(), 1, "{log}");
    assert!(log.contains("王阿婆"), "{log}");
    // Deciding twice is refused.
    b.post(
        &format!("/web/quarantine/{first}/dismiss"),
        &[("csrf", csrf.as_str()), ("note", "再次")],
    )
    .await
    .expect(409);
    // The phone learns of it at its next sync and lets the refused copy go.
    let report = v.sync().await.unwrap();
    assert!(report.rejections.is_empty());
    assert!(v.replica.refused().unwrap().is_empty());
    // The coordinator's phone receives the accepted visit like any other.
    c.sync().await.unwrap();
    assert!(c.resident(wang_a).visits.iter().any(|x| x.id == visit));

    // A second refusal, dismissed: the reason is required, and it reaches the phone.
    v.log_visit(li_b, "重复录入的走访");
    w.unassign(v.user, li_b).await;
    let second = refused_number(&v.sync().await.unwrap());
    let page = b.page(&format!("/web/quarantine/{second}")).await;
    let csrf = field(&page, "csrf");
    b.post(
        &format!("/web/quarantine/{second}/dismiss"),
        &[("csrf", csrf.as_str()), ("note", "   ")],
    )
    .await
    .expect(400);
    b.post(
        &format!("/web/quarantine/{second}/dismiss"),
        &[("csrf", csrf.as_str()), ("note", "重复记录，已有同日走访")],
    )
    .await
    .expect(303);
    let page = b.page(&format!("/web/quarantine/{second}")).await;
    assert!(page.contains("重复记录，已有同日走访"), "{page}");
    assert!(!page.contains("id=\"accept\""), "decided: {page}");
    v.sync().await.unwrap();
    let refused = v.replica.refused().unwrap();
    assert_eq!(refused.len(), 1);
    let note = refused[0].dismissed.as_ref().unwrap().note.clone();
    assert!(
        note.contains("重复记录，已有同日走访") && note.contains("李协调"),
        "{note}"
    );
    // The dismissed visit is not in the record.
    let li = b.page(&format!("/web/residents/{}", li_b.0)).await;
    assert!(li.contains("李老伯"), "{li}");
    assert!(!li.contains("重复录入的走访"), "{li}");
    // The volunteer has read it: the phone lets it go.
    assert!(v.replica.acknowledge_dismissal(second).unwrap());
    assert!(v.replica.refused().unwrap().is_empty());

    // Both are listed as decided.
    let decided = b.page("/web/quarantine?decided=1").await;
    assert!(decided.contains(&format!("refusal-{first}")), "{decided}");
    assert!(decided.contains(&format!("refusal-{second}")), "{decided}");
    let waiting = b.page("/web/quarantine").await;
    assert!(waiting.contains("id=\"no-refusals\""), "{waiting}");
}

conformance!(
    a_phone_whose_clock_runs_two_days_fast_is_receipted_and_flagged,
    a_version_1_phone_is_answered_in_version_1,
    a_refused_visit_reaches_a_coordinator_who_accepts_or_dismisses_it,
);
