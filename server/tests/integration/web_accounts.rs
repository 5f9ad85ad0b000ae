//! Accounts on the web (issue 12), both backends: a coordinator renames a staff member
//! and moves them to another station (their pages and phone follow); disables a
//! volunteer (their phone is refused, nothing they recorded goes) and enables them
//! again; the first start's admin disables itself once a coordinator exists. From the
//! attacker's side: no self-disabling, no reaching an admin or another district's user,
//! no forged form.

use crate::backends::{TestStore, conformance};
use crate::phone::Failure;
use crate::web_client::{Browser, STAFF_PASSWORD, coordinator, field, staff};
use crate::world::World;

async fn staff_move_between_stations_and_accounts_are_disabled(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let at_a = w.resident(&mut c, w.station_a, "王阿婆").await;
    let at_b = w.resident(&mut c, w.station_b, "赵奶奶").await;

    // A staff member of station A, on the web and with a phone.
    let staffer = staff(&w, "staff-a", &[w.station_a]).await;
    let mut phone = w.phone(staffer).await;
    phone.sync().await.unwrap();
    assert!(phone.holds(at_a) && !phone.holds(at_b));
    let mut s = Browser::new(&w.server);
    s.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    assert!(s.page("/web/residents").await.contains("王阿婆"));

    let mut b = coordinator(&w).await;
    let path = format!("/web/admin/users/{}", staffer.0);
    let page = b.page(&path).await;
    assert!(page.contains("id=\"edit-user\""), "{page}");
    let csrf = field(&page, "csrf");
    let (a, bb) = (w.station_a.0.to_string(), w.station_b.0.to_string());
    b.post(
        &format!("{path}/edit"),
        &[
            ("csrf", "forged"),
            ("display_name", "x"),
            ("stations_shown", "1"),
        ],
    )
    .await
    .expect(403);
    let answer = b
        .post(
            &format!("{path}/edit"),
            &[
                ("csrf", &csrf),
                ("display_name", "张站长"),
                ("stations_shown", "1"),
                ("stations", &bb),
            ],
        )
        .await;
    answer.expect(303);
    let page = b.page(&answer.location()).await;
    assert!(page.contains("张站长"), "{page}");
    // Their pages follow at once, their phone at its next sync.
    let theirs = s.page("/web/residents").await;
    assert!(
        theirs.contains("赵奶奶") && !theirs.contains("王阿婆"),
        "{theirs}"
    );
    phone.sync().await.unwrap();
    assert!(!phone.holds(at_a) && phone.holds(at_b));
    // A station of no district of theirs is refused; so is the empty name.
    b.post(
        &format!("{path}/edit"),
        &[
            ("csrf", &csrf),
            ("display_name", "张站长"),
            ("stations_shown", "1"),
            ("stations", &uuid::Uuid::now_v7().to_string()),
        ],
    )
    .await
    .expect(400);
    b.post(
        &format!("{path}/edit"),
        &[("csrf", &csrf), ("display_name", "  "), ("stations", &a)],
    )
    .await
    .expect(400);

    // A volunteer disabled: the phone is refused, the visit stays on it; enabled
    // again, it syncs.
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, at_a).await;
    v.sync().await.unwrap();
    v.log_visit(at_a, "停用前记录");
    let vpath = format!("/web/admin/users/{}", v.user.0);
    let csrf = field(&b.page(&vpath).await, "csrf");
    b.post(
        &format!("{vpath}/disabled"),
        &[("csrf", &csrf), ("disabled", "1")],
    )
    .await
    .expect(303);
    assert!(b.page(&vpath).await.contains("已停用") || b.page(&vpath).await.contains("停用"));
    match v.sync().await {
        Err(Failure::Refused(answer)) => assert_eq!(answer.code(), "user_disabled"),
        other => panic!("a disabled user's phone syncs: {other:?}"),
    }
    assert_eq!(v.pending(), 1, "nothing recorded is lost");
    b.post(
        &format!("{vpath}/disabled"),
        &[("csrf", &csrf), ("disabled", "0")],
    )
    .await
    .expect(303);
    v.sync().await.unwrap();
    assert_eq!(v.pending(), 0);

    // A disabled staff member's web session ends at their next request.
    let csrf = field(&b.page(&path).await, "csrf");
    b.post(
        &format!("{path}/disabled"),
        &[("csrf", &csrf), ("disabled", "1")],
    )
    .await
    .expect(303);
    let after = s.get("/web/residents").await;
    assert_ne!(after.status.as_u16(), 200, "{}", after.text());

    // Nobody disables themselves but the first start's admin, nor reaches an admin.
    let me = format!("/web/admin/users/{}", w.coordinator.0);
    let page = b.page(&me).await;
    assert!(!page.contains("id=\"disable-user\""), "{page}");
    b.post(
        &format!("{me}/disabled"),
        &[("csrf", &csrf), ("disabled", "1")],
    )
    .await
    .expect(400);
    let bootstrap = w
        .server
        .store()
        .user_by_login(&w.admin_login)
        .await
        .unwrap()
        .unwrap();
    b.post(
        &format!("/web/admin/users/{}/disabled", bootstrap.id.0),
        &[("csrf", &csrf), ("disabled", "1")],
    )
    .await
    .expect(404);
}

async fn the_first_starts_admin_disables_itself(t: TestStore) {
    let w = World::new(t).await;
    let mut admin = Browser::new(&w.server);
    admin
        .sign_in(&w.admin_login, &w.admin_password)
        .await
        .expect(303);
    let page = admin.page("/web/admin/districts").await;
    assert!(page.contains("id=\"districtless\""), "{page}");
    let csrf = field(&page, "csrf");
    let me = w
        .server
        .store()
        .user_by_login(&w.admin_login)
        .await
        .unwrap()
        .unwrap();
    let answer = admin
        .post(
            &format!("/web/admin/users/{}/disabled", me.id.0),
            &[("csrf", &csrf), ("disabled", "1")],
        )
        .await;
    answer.expect(303);
    assert_eq!(answer.location(), "/web/login");
    assert!(
        w.server
            .store()
            .user_by_login(&w.admin_login)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    // Its one-time password no longer signs in; the coordinator still does.
    let mut again = Browser::new(&w.server);
    let refused = again.sign_in(&w.admin_login, &w.admin_password).await;
    assert_ne!(refused.location(), "/web/visits");
    coordinator(&w).await.page("/web/visits").await;
}

conformance!(
    staff_move_between_stations_and_accounts_are_disabled,
    the_first_starts_admin_disables_itself,
);
