//! Whole exchanges between phones and a server, end to end through the envelope.

use crate::support::*;
use sync_core::model::ReviewStatus;
use sync_core::protocol::store::MemoryServerStore;

#[test]
fn visits_from_two_phones_and_a_review_converge() {
    let server = MemoryServerStore::new();
    let r = resident(1);

    // Station staff registers the resident and the coordinator publishes the catalog.
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    let file = new_case_file(staff_phone.principal(), actor(1), r, STATION_A);
    staff_phone.replica.save_case_file(&file).unwrap();
    let mut coord = Phone::new(9, coordinator());
    let catalog = new_catalog(actor(9));
    coord.replica.save_catalog(&catalog).unwrap();
    coord.sync(&server);
    let reports = staff_phone.sync(&server);
    assert_eq!(reports[0].receipted, vec![r.into()], "{reports:#?}");

    // Two volunteers assigned to the resident receive the case file and the catalog.
    let mut v1 = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    let mut v2 = Phone::new(3, volunteer(VOLUNTEER_2, &[r]));
    v1.sync(&server);
    v2.sync(&server);
    assert_eq!(v1.replica.doc_ids().unwrap().len(), 2);
    assert_eq!(v1.hydrate(r).profile.name, "王阿婆");

    // Offline, both log a visit.
    let visit1 = sync_core::ids::VisitId(uuid(0xF1));
    let visit2 = sync_core::ids::VisitId(uuid(0xF2));
    v1.edit(r, |f, e| {
        f.log_visit(e, visit1, &record(NOW - 3 * HOUR)).unwrap();
    });
    v2.edit(r, |f, e| {
        f.log_visit(e, visit2, &record(NOW - 2 * HOUR)).unwrap();
    });
    assert_eq!(v1.replica.unreceipted_visits(r.into()).unwrap().len(), 1);

    v1.sync(&server);
    assert!(v1.replica.unreceipted_visits(r.into()).unwrap().is_empty());
    v2.sync(&server);
    v1.sync(&server);
    assert_eq!(v1.hydrate(r).visits.len(), 2);
    assert_eq!(v1.hydrate(r), v2.hydrate(r));

    // The coordinator reviews visit 1; the review reaches both phones.
    coord.sync(&server);
    coord.edit(r, |f, e| {
        f.review_visit(e, visit1, ReviewStatus::NeedsAttention, "请补充血压记录")
            .unwrap();
    });
    coord.sync(&server);
    v1.sync(&server);
    v2.sync(&server);
    for phone in [&v1, &v2] {
        let res = phone.hydrate(r);
        let v = res.visits.iter().find(|v| v.id == visit1).unwrap();
        assert_eq!(v.review_status(), ReviewStatus::NeedsAttention);
        assert_eq!(v.review.as_ref().unwrap().comment, "请补充血压记录");
    }
    assert!(server.quarantined().is_empty());
}
