//! Whole exchanges between phones and a server, end to end through the envelope.

use crate::support::*;
use std::collections::BTreeSet;
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

/// Staff registers `residents` at station A and a coordinator publishes the catalog.
pub(crate) fn seeded(residents: &[sync_core::ids::ResidentId]) -> MemoryServerStore {
    let server = MemoryServerStore::new();
    let mut coord = Phone::new(9, coordinator());
    coord.replica.save_catalog(&new_catalog(actor(9))).unwrap();
    coord.sync(&server);
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    for r in residents {
        let file = new_case_file(staff_phone.principal(), actor(1), *r, STATION_A);
        staff_phone.replica.save_case_file(&file).unwrap();
    }
    staff_phone.sync(&server);
    server
}

#[test]
fn a_reassigned_resident_is_purged_and_its_unsynced_visit_quarantined() {
    let (r1, r2) = (resident(1), resident(2));
    let server = seeded(&[r1, r2]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r1, r2]));
    v.sync(&server);
    assert_eq!(v.replica.doc_ids().unwrap().len(), 3);

    // Offline, the volunteer logs a visit to r1; meanwhile r1 is reassigned away.
    let visit = sync_core::ids::VisitId(uuid(0xF1));
    v.edit(r1, |f, e| {
        f.log_visit(e, visit, &record(NOW - HOUR)).unwrap();
    });
    v.auth.principal = volunteer(VOLUNTEER_1, &[r2]);
    let report = v.sync_once(&server);

    assert_eq!(report.purged, vec![r1.into()]);
    assert_eq!(report.rejections.len(), 1);
    assert_eq!(report.rejections[0].code, "out_of_scope");
    assert!(v.replica.case_file(r1.into()).unwrap().is_none());
    assert!(v.replica.case_file(r2.into()).unwrap().is_some());
    // The visit is not lost: it waits in quarantine for an administrator.
    let q = server.quarantined();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].doc, q[0].code.as_str()), (r1.into(), "out_of_scope"));
}

#[test]
fn a_lost_response_is_recovered_through_the_held_list() {
    let r1 = resident(1);
    let server = seeded(&[r1]);
    let r2 = resident(2);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r1, r2]));
    v.sync(&server);

    // r2 is registered; the volunteer's next response (which carried it) is lost.
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    staff_phone.sync(&server);
    let file = new_case_file(staff_phone.principal(), actor(1), r2, STATION_A);
    staff_phone.replica.save_case_file(&file).unwrap();
    staff_phone.sync(&server);
    let request = v.replica.prepare(NOW).unwrap();
    let lost = v.serve(&server, &request);
    assert_eq!(lost.docs.len(), 1, "the lost response carried r2");

    // The server's record now says the phone holds r2; the phone's digest says not.
    let first = v.sync_once(&server);
    assert!(first.receipted.is_empty() && first.received_changes == 0);
    assert!(v.replica.store().need_held_flag());
    v.sync(&server);
    assert_eq!(v.hydrate(r2).id, r2);
    assert!(!v.replica.store().need_held_flag());
}

#[test]
fn a_server_restored_from_backup_is_repaired_by_the_phones() {
    use sync_core::protocol::server::place_of;
    use sync_core::protocol::store::ServerStore;
    let r = resident(1);
    let live = seeded(&[r]);
    let mut v1 = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    let mut v2 = Phone::new(3, volunteer(VOLUNTEER_2, &[r]));
    v1.sync(&live);
    v2.sync(&live);

    // Back up the server now.
    let backup = MemoryServerStore::new();
    for id in live.doc_ids() {
        let doc = pollster::block_on(live.load(id)).unwrap().unwrap();
        backup.put_doc(id, place_of(&doc).unwrap(), doc.save());
    }

    // After the backup: v1 logs X and gets a receipt; v2 receives X.
    let x = sync_core::ids::VisitId(uuid(0xF1));
    v1.edit(r, |f, e| {
        f.log_visit(e, x, &record(NOW - 5 * HOUR)).unwrap();
    });
    v1.sync(&live);
    v2.sync(&live);
    assert_eq!(v2.hydrate(r).visits.len(), 1);

    // The server is restored from the backup: X is gone from it. v2 logs Y, which
    // depends on X; v1 logs Z.
    let restored = backup;
    let y = sync_core::ids::VisitId(uuid(0xF2));
    let z = sync_core::ids::VisitId(uuid(0xF3));
    v2.edit(r, |f, e| {
        f.log_visit(e, y, &record(NOW - 4 * HOUR)).unwrap();
    });
    v1.edit(r, |f, e| {
        f.log_visit(e, z, &record(NOW - 3 * HOUR)).unwrap();
    });

    // v2 cannot hand over X (it is v1's): Y waits, nothing is stored, quarantined or
    // lost, and the server says why (its repair stays open until then, so sync a few
    // single rounds).
    let reports: Vec<_> = (0..3).map(|_| v2.sync_once(&restored)).collect();
    let waits = |r: &sync_core::protocol::replica::SyncReport| {
        r.rejections
            .iter()
            .all(|j| j.code == "needs_others" && j.quarantine == 0)
    };
    assert!(reports.iter().all(waits), "{reports:#?}");
    assert!(
        reports.iter().skip(1).all(|r| r.rejections.len() == 1),
        "{reports:#?}"
    );
    assert!(restored.quarantined().is_empty());
    assert_eq!(v2.replica.pending_changes().unwrap(), 1);

    // v1 repairs the server with X and Z; then v2's Y goes through.
    let reports = v1.sync(&restored);
    assert!(
        reports.iter().any(|r| !r.repairing.is_empty()),
        "v1 went through repair: {reports:#?}"
    );
    v2.sync(&restored);
    v1.sync(&restored);
    let stored = stored_resident(&restored, r);
    let ids: Vec<_> = stored.visits.iter().map(|v| v.id).collect();
    assert_eq!(ids, vec![x, y, z]);
    assert_eq!(v1.hydrate(r), stored);
    assert_eq!(v2.hydrate(r), stored);
    assert_eq!(
        v1.replica.pending_changes().unwrap() + v2.replica.pending_changes().unwrap(),
        0
    );
    assert!(restored.quarantined().is_empty());
}

#[test]
fn a_rejected_upload_resets_the_phone_to_the_servers_copy() {
    use sync_core::doc::casefile::{FieldValue, ProfileField};
    let r = resident(1);
    let server = seeded(&[r]);
    let mut phone = Phone::new(5, staff(STAFF_B, STATION_A));
    phone.sync(&server);
    // Edited while still staff; synced after being made a volunteer.
    phone.edit(r, |f, e| {
        f.update_profile(e, ProfileField::RiskLevel, &FieldValue::Text("high".into()))
            .unwrap();
    });
    phone.auth.principal = volunteer(STAFF_B, &[r]);
    let reports = phone.sync(&server);
    assert_eq!(reports[0].rejections[0].code, "role_not_allowed");
    let stored = sync_core::doc::casefile::CaseFile::from_doc(
        pollster::block_on(sync_core::protocol::store::ServerStore::load(
            &server,
            r.into(),
        ))
        .unwrap()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(phone.hydrate(r), stored.hydrate().unwrap());
    assert_eq!(
        phone.hydrate(r).profile.risk_level,
        Some(sync_core::model::RiskLevel::Medium)
    );
    assert_eq!(server.quarantined().len(), 1);
}

#[test]
fn a_visit_logged_during_a_sync_that_purges_its_resident_is_not_lost() {
    let r = resident(1);
    let server = seeded(&[r]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&server);
    // The resident is reassigned away; the phone's sync is under way when the
    // volunteer saves a visit; then the response (purge r) arrives.
    let request = v.replica.prepare(NOW).unwrap();
    let visit = sync_core::ids::VisitId(uuid(0xF1));
    v.edit(r, |f, e| {
        f.log_visit(e, visit, &record(NOW - HOUR)).unwrap();
    });
    v.auth.principal = volunteer(VOLUNTEER_1, &[]);
    let response = v.serve(&server, &request);
    assert_eq!(response.purge, vec![r.into()]);
    let report = v.replica.apply(&response).unwrap();
    assert!(
        report.purged.is_empty() && report.more,
        "kept until handed over: {report:?}"
    );
    assert!(v.replica.case_file(r.into()).unwrap().is_some());

    // The next sync hands the visit over (into quarantine: out of scope), then purges.
    v.sync(&server);
    assert!(v.replica.case_file(r.into()).unwrap().is_none());
    let q = server.quarantined();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].code, "out_of_scope");
}

#[test]
fn a_refused_upload_with_later_local_writes_is_kept_and_handed_over_whole() {
    use sync_core::doc::casefile::{FieldValue, ProfileField};
    let r = resident(1);
    let server = seeded(&[r]);
    let mut phone = Phone::new(5, staff(STAFF_B, STATION_A));
    phone.sync(&server);
    phone.edit(r, |f, e| {
        f.update_profile(e, ProfileField::RiskLevel, &FieldValue::Text("high".into()))
            .unwrap();
    });
    phone.auth.principal = volunteer(STAFF_B, &[r]);
    let request = phone.replica.prepare(NOW).unwrap();
    // Written while the refused upload was in flight.
    phone.edit(r, |f, e| {
        f.update_profile(e, ProfileField::Needs, &FieldValue::Text("助听器".into()))
            .unwrap();
    });
    let response = phone.serve(&server, &request);
    assert_eq!(response.rejections[0].code, "role_not_allowed");
    let report = phone.replica.apply(&response).unwrap();
    assert!(report.more);
    assert_eq!(
        phone.hydrate(r).profile.needs,
        "助听器",
        "the later write is kept"
    );
    // Next sync: the whole batch (both writes) goes to quarantine, in place of the
    // first (one decision for a coordinator), then the reset.
    phone.sync(&server);
    let q = server.quarantined();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].bytes.len(), 2, "both changes are in quarantine");
    assert_eq!(phone.hydrate(r).profile.needs, "行动不便");
}

#[test]
fn small_feed_pages_and_byte_budgets_still_deliver_everything() {
    use sync_core::protocol::envelope::{SyncRequest, SyncResponse};
    use sync_core::protocol::server::{Limits, handle_sync};
    let residents: Vec<_> = (1..=3).map(resident).collect();
    let server = seeded(&residents);
    let mut v1 = Phone::new(2, volunteer(VOLUNTEER_1, &residents));
    let mut v2 = Phone::new(3, volunteer(VOLUNTEER_2, &residents));
    v1.sync(&server);
    v2.sync(&server);
    for (i, r) in residents.iter().enumerate() {
        for j in 0..4u128 {
            let id = sync_core::ids::VisitId(uuid(0xF000 + 16 * i as u128 + j));
            v1.edit(*r, |f, e| {
                f.log_visit(e, id, &record(NOW - DAY + j as i64 * HOUR))
                    .unwrap();
            });
            v1.sync(&server);
        }
    }
    // v2 pulls 12 feed entries two at a time, with a budget that cuts pages short.
    let tight = Limits {
        response_bytes: 1_000,
        feed_entries: 2,
        append_retries: 8,
    };
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 40, "did not finish");
        let request = SyncRequest::decode(&v2.replica.prepare(NOW).unwrap().encode()).unwrap();
        let response =
            pollster::block_on(handle_sync(&server, &v2.auth, &request, NOW, tight)).unwrap();
        let report = v2
            .replica
            .apply(&SyncResponse::decode(&response.encode()).unwrap())
            .unwrap();
        if !report.more {
            break;
        }
    }
    assert!(rounds >= 6, "pages were small: {rounds} rounds");
    for r in &residents {
        assert_eq!(v2.hydrate(*r), v1.hydrate(*r));
        assert_eq!(v2.hydrate(*r).visits.len(), 4);
    }
}

#[test]
fn a_corrupted_change_is_refused_never_a_panic() {
    let r = resident(1);
    let server = seeded(&[r]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&server);
    v.edit(r, |f, e| {
        f.log_visit(e, sync_core::ids::VisitId(uuid(0xF1)), &record(NOW - HOUR))
            .unwrap();
    });
    let request = v.replica.prepare(NOW).unwrap();
    let change = request.uploads[0].changes[0].0.clone();
    // Every byte of the change flipped in turn, on a server that never saw it: refused
    // as malformed and quarantined, never applied, never a panic.
    for i in 0..change.len() {
        let server = seeded(&[r]);
        let mut corrupted = request.clone();
        corrupted.uploads[0].changes[0].0[i] ^= 0x55;
        let response = v.serve(&server, &corrupted);
        assert!(response.receipts.is_empty(), "byte {i}: {response:?}");
        assert_eq!(response.rejections.len(), 1, "byte {i}: {response:?}");
        assert_eq!(response.rejections[0].code, "malformed", "byte {i}");
        assert_eq!(server.quarantined().len(), 1, "byte {i}");
    }
}

#[test]
fn a_well_formed_but_inconsistent_change_is_refused_never_a_panic() {
    use sync_core::automerge::legacy::{ObjectId, OpId};
    use sync_core::automerge::{Change, ChangeHash, ExpandedChange};
    let r = resident(1);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&seeded(&[r]));
    v.edit(r, |f, e| {
        f.log_visit(e, sync_core::ids::VisitId(uuid(0xF1)), &record(NOW - HOUR))
            .unwrap();
    });
    let request = v.replica.prepare(NOW).unwrap();
    let change = Change::from_bytes(request.uploads[0].changes[0].0.clone()).unwrap();
    let honest: ExpandedChange = change.decode();
    let actor = honest.actor_id.clone();
    type Craft = Box<dyn Fn(&mut ExpandedChange)>;
    let crafted: Vec<(&str, Craft)> = vec![
        ("a later seq", Box::new(|c| c.seq += 5)),
        ("seq 0", Box::new(|c| c.seq = 0)),
        ("no deps", Box::new(|c| c.deps.clear())),
        (
            "an unknown dep",
            Box::new(|c| c.deps = vec![ChangeHash([7; 32])]),
        ),
        (
            "op ids from 1",
            Box::new(|c| c.start_op = 1.try_into().unwrap()),
        ),
        (
            "an unknown object",
            Box::new(move |c| c.operations[0].obj = ObjectId::Id(OpId(999, actor.clone()))),
        ),
    ];
    for (what, craft) in crafted {
        let server = seeded(&[r]);
        let before = pollster::block_on(sync_core::protocol::store::ServerStore::load(
            &server,
            r.into(),
        ))
        .unwrap()
        .unwrap()
        .get_heads();
        let mut expanded = honest.clone();
        craft(&mut expanded);
        let mut request = request.clone();
        // This server never met the phone: the request lists what it holds, so the
        // answer is a whole one (a receipt only ever comes with a cursor past it).
        request.held = Some(v.replica.doc_ids().unwrap());
        request.cursor = 0;
        request.uploads[0].changes[0].0 = Change::from(expanded).raw_bytes().to_vec();
        let response = v.serve(&server, &request);
        let answered =
            response.receipts.len() + response.rejections.len() + response.fallback.len();
        assert_eq!(answered, 1, "{what}: {response:?}");
        let stored = pollster::block_on(sync_core::protocol::store::ServerStore::load(
            &server,
            r.into(),
        ))
        .unwrap()
        .unwrap();
        if response.receipts.is_empty() {
            assert_eq!(stored.get_heads(), before, "{what}");
        }
        // Whatever was stored still loads.
        sync_core::automerge::Automerge::load(&stored.save()).unwrap();
    }
}

#[test]
fn a_restored_server_numbers_its_feed_above_every_cursor_given_before() {
    // Found by the convergence test with restores: the restored feed numbered new
    // entries with numbers phones had passed already, and a phone skipped them.
    use sync_core::doc::casefile::{FieldValue, ProfileField};
    let live = MemoryServerStore::new();
    let r = resident(3);
    let mut coord = Phone::new(2, coordinator());
    let file = new_case_file(coord.principal(), actor(2), r, STATION_B);
    coord.replica.save_case_file(&file).unwrap();
    coord.replica.save_catalog(&new_catalog(actor(2))).unwrap();
    coord.sync(&live);
    let restored = live.backup();
    let mut v1 = Phone::new(3, volunteer(VOLUNTEER_1, &[r]));
    v1.sync(&live);

    // Restored; then each phone writes something the other must receive.
    v1.edit(r, |f, e| {
        f.update_profile(e, ProfileField::Address, &FieldValue::Text("新地址".into()))
            .unwrap();
    });
    let visit = sync_core::ids::VisitId(uuid(0xF1));
    coord.edit(r, |f, e| {
        f.log_visit(e, visit, &record(NOW - HOUR)).unwrap();
    });
    for _ in 0..3 {
        coord.sync(&restored);
        v1.sync(&restored);
    }
    assert_eq!(coord.hydrate(r).profile.address, "新地址");
    assert!(v1.hydrate(r).visits.iter().any(|v| v.id == visit));
    assert_eq!(coord.hydrate(r), v1.hydrate(r));
}

#[test]
fn a_document_a_restored_server_lost_is_handed_back_not_purged() {
    // Found by the convergence test with restores: a case file registered after the
    // backup was purged from the phones holding it, as if it had left their scope.
    let live = MemoryServerStore::new();
    let restored = live.backup();
    let r = resident(2);
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    let file = new_case_file(staff_phone.principal(), actor(1), r, STATION_A);
    staff_phone.replica.save_case_file(&file).unwrap();
    staff_phone.sync(&live);
    let mut v = Phone::new(3, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&live);

    // The server goes back to before the registration; the volunteer logs a visit.
    let visit = sync_core::ids::VisitId(uuid(0xF2));
    v.edit(r, |f, e| {
        f.log_visit(e, visit, &record(NOW - HOUR)).unwrap();
    });
    for _ in 0..3 {
        staff_phone.sync_for_a_while(&restored);
        v.sync_for_a_while(&restored);
    }
    assert!(staff_phone.replica.case_file(r.into()).unwrap().is_some());
    let stored = stored_resident(&restored, r);
    assert!(stored.visits.iter().any(|x| x.id == visit));
    assert!(restored.quarantined().is_empty());
}

#[test]
fn two_reviewers_reviewing_one_visit_at_once_are_both_accepted() {
    // Found by the convergence test at 10,000 schedules: the merged document shows one
    // review, and the other reviewer's upload was refused as written by someone else.
    let r = resident(1);
    let server = seeded(&[r]);
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    let mut coord = Phone::new(9, coordinator());
    staff_phone.sync(&server);
    let visit = sync_core::ids::VisitId(uuid(0xF1));
    staff_phone.edit(r, |f, e| {
        f.log_visit(e, visit, &record(NOW - HOUR)).unwrap();
    });
    staff_phone.sync(&server);
    coord.sync(&server);
    coord.edit(r, |f, e| {
        f.review_visit(e, visit, ReviewStatus::Approved, "好")
            .unwrap();
    });
    staff_phone.edit(r, |f, e| {
        f.review_visit(e, visit, ReviewStatus::NeedsAttention, "请复测血压")
            .unwrap();
    });
    for reports in [
        coord.sync(&server),
        staff_phone.sync(&server),
        coord.sync(&server),
    ] {
        assert!(
            reports.iter().all(|r| r.rejections.is_empty()),
            "{reports:#?}"
        );
    }
    assert!(server.quarantined().is_empty());
    assert_eq!(coord.hydrate(r), staff_phone.hydrate(r));
}

#[test]
fn a_station_first_upload_is_checked_together_and_its_refusals_stay_apart() {
    use sync_core::rules::Violation;
    let server = seeded(&[]);
    let mut phone = Phone::new(1, staff(STAFF_A, STATION_A));
    phone.sync(&server);
    // More case files than the step checks at once, each with a visit; one of them
    // registered at another station (the server refuses it: out of scope), and one
    // whose bytes get damaged on the way (refused: malformed).
    let (count, elsewhere, damaged) = (45u128, 7usize, 38usize);
    let mut ids = Vec::new();
    for n in 0..count {
        let station = if n as usize == elsewhere {
            STATION_B
        } else {
            STATION_A
        };
        let r = resident(0x100 + n);
        let mut file = new_case_file(&staff(STAFF_A, station), actor(1), r, station);
        file.log_visit(
            &editor(&staff(STAFF_A, station)),
            sync_core::ids::VisitId(uuid(0x1000 + n)),
            &record(NOW - DAY),
        )
        .unwrap();
        phone.replica.save_case_file(&file).unwrap();
        ids.push(sync_core::ids::DocId::from(r));
    }
    let mut request = phone.replica.prepare(NOW).unwrap();
    let uploaded: Vec<_> = request.uploads.iter().map(|u| u.doc).collect();
    assert_eq!(uploaded.len(), ids.len());
    let elsewhere = ids[elsewhere];
    let damaged = ids[damaged];
    let at = uploaded.iter().position(|d| *d == damaged).unwrap();
    request.uploads[at].changes[0].0[12] ^= 0x55;

    let response = phone.serve(&server, &request);

    // Every other file is receipted, in the request's order, and stored.
    let expected: Vec<_> = uploaded
        .iter()
        .copied()
        .filter(|d| *d != elsewhere && *d != damaged)
        .collect();
    let receipted: Vec<_> = response.receipts.iter().map(|r| r.doc).collect();
    assert_eq!(receipted, expected);
    for (n, doc) in ids.iter().enumerate() {
        if expected.contains(doc) {
            let file = stored_case_file(&server, resident(0x100 + n as u128));
            assert_eq!(file.hydrate().unwrap().visits.len(), 1);
        }
    }
    // The two refusals are answered each with its own code and quarantined apart.
    let mut refused: Vec<_> = response
        .rejections
        .iter()
        .map(|r| (r.doc, r.code.as_str(), r.quarantine > 0))
        .collect();
    refused.sort();
    let mut want = vec![
        (elsewhere, Violation::OutOfScope.code(), true),
        (damaged, "malformed", true),
    ];
    want.sort();
    assert_eq!(refused, want);
    let quarantined: BTreeSet<_> = server.quarantined().iter().map(|q| q.doc).collect();
    assert_eq!(quarantined, BTreeSet::from([elsewhere, damaged]));
    // Every file that parsed was checked through the host's hook: with several files
    // in one request the server checks them on its worker threads.
    assert_eq!(server.checks_run(), ids.len() - 1);

    // The phone keeps both refused files, with their visits, for a person to decide.
    let report = phone.replica.apply(&response).unwrap();
    assert_eq!(report.rejections.len(), 2);
    let kept: BTreeSet<_> = phone
        .replica
        .refused()
        .unwrap()
        .iter()
        .map(|r| r.doc)
        .collect();
    assert_eq!(kept, BTreeSet::from([elsewhere, damaged]));
}

/// A phone back from weeks offline, or a station's first upload of its records: what
/// waits goes up in requests of bounded size, whole documents at a time (never none),
/// and every change goes up once; documents parked earlier in a sync are left out.
#[test]
fn a_large_backlog_goes_up_in_requests_of_bounded_size() {
    use sync_core::ids::DocId;
    use sync_core::protocol::envelope::SyncRequest;
    let residents = [resident(1), resident(2), resident(3)];
    let server = seeded(&residents);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &residents));
    v.sync(&server);
    for (n, r) in (0xF1..).zip(residents) {
        v.edit(r, |f, e| {
            f.log_visit(e, sync_core::ids::VisitId(uuid(n)), &record(NOW - HOUR))
                .unwrap();
        });
    }
    let size = |request: &SyncRequest| -> usize {
        let changes = request.uploads.iter().flat_map(|u| &u.changes);
        changes.map(|c| c.0.len()).sum()
    };
    let none = BTreeSet::new();
    let all = v.replica.prepare(NOW).unwrap();
    assert_eq!(all.uploads.len(), 3);
    let two = v
        .replica
        .prepare_within(NOW, size(&all) - 1, &none)
        .unwrap();
    assert_eq!(two.uploads.len(), 2);
    let one = v.replica.prepare_within(NOW, 1, &none).unwrap();
    assert_eq!(one.uploads.len(), 1, "never none");
    let parked: BTreeSet<DocId> = [DocId::from(residents[0])].into();
    let rest = v.replica.prepare_within(NOW, usize::MAX, &parked).unwrap();
    let docs: Vec<DocId> = rest.uploads.iter().map(|u| u.doc).collect();
    assert_eq!(docs, vec![residents[1].into(), residents[2].into()]);

    // One document a request: three requests, and everything is up, once.
    for _ in 0..3 {
        let request = v.replica.prepare_within(NOW, 1, &none).unwrap();
        assert_eq!(request.uploads.len(), 1);
        let response = v.serve(&server, &request);
        v.replica.apply(&response).unwrap();
    }
    assert_eq!(v.replica.pending_changes().unwrap(), 0);
    for r in residents {
        assert_eq!(stored_resident(&server, r).visits.len(), 1);
    }
}

/// A phone sends its changes in causal order. An upload in any other order, with a
/// change twice or one the server already holds, is stored whole all the same, and
/// another phone receives every visit of it.
#[test]
fn an_upload_out_of_causal_order_or_with_repeats_is_stored_whole() {
    let r = resident(1);
    for shuffle in ["reversed", "repeated", "one already held"] {
        let server = seeded(&[r]);
        let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
        v.sync(&server);
        let visits: Vec<_> = (0..3)
            .map(|n| sync_core::ids::VisitId(uuid(0xF1 + n)))
            .collect();
        for (n, visit) in visits.iter().enumerate() {
            v.edit(r, |f, e| {
                f.log_visit(e, *visit, &record(NOW - (n as i64 + 1) * HOUR))
                    .unwrap();
            });
        }
        let mut request = v.replica.prepare(NOW).unwrap();
        assert_eq!(request.uploads[0].changes.len(), 3, "{shuffle}");
        if shuffle == "one already held" {
            let mut first = request.clone();
            first.uploads[0].changes.truncate(1);
            first.uploads[0].heads.clear();
            assert!(v.serve(&server, &first).rejections.is_empty());
        }
        let changes = &mut request.uploads[0].changes;
        match shuffle {
            "reversed" => changes.reverse(),
            "repeated" => {
                let again = changes[1].clone();
                changes.insert(0, again.clone());
                changes.push(again);
            }
            _ => {}
        }
        let response = v.serve(&server, &request);
        assert!(response.rejections.is_empty(), "{shuffle}: {response:?}");
        assert_eq!(response.receipts.len(), 1, "{shuffle}: {response:?}");
        let stored = stored_resident(&server, r);
        let ids: BTreeSet<_> = stored.visits.iter().map(|v| v.id).collect();
        assert_eq!(ids, visits.iter().copied().collect(), "{shuffle}");

        let mut reader = Phone::new(3, staff(STAFF_A, STATION_A));
        reader.sync(&server);
        assert_eq!(reader.hydrate(r).visits.len(), 3, "{shuffle}");
    }
}

/// A receipt settles a document without loading it only when it names the document
/// as the phone saved it. A visit logged while the request was away is past the
/// receipt: it stays pending, and the next sync takes it up.
#[test]
fn a_visit_logged_while_a_sync_is_away_stays_pending_past_the_receipt() {
    let r = resident(1);
    let server = seeded(&[r]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&server);
    let (first, second) = (
        sync_core::ids::VisitId(uuid(0xF1)),
        sync_core::ids::VisitId(uuid(0xF2)),
    );
    v.edit(r, |f, e| {
        f.log_visit(e, first, &record(NOW - HOUR)).unwrap();
    });
    let request = v.replica.prepare(NOW).unwrap();
    let response = v.serve(&server, &request);
    assert_eq!(response.receipts.len(), 1);
    v.edit(r, |f, e| {
        f.log_visit(e, second, &record(NOW - 30 * 60_000)).unwrap();
    });
    let report = v.replica.apply(&response).unwrap();
    assert_eq!(report.receipted, vec![r.into()]);
    assert_eq!(v.replica.pending_changes().unwrap(), 1, "the second visit");

    // Without the later visit the receipt names the saved heads: nothing is pending.
    v.sync(&server);
    assert_eq!(v.replica.pending_changes().unwrap(), 0);
    let ids: BTreeSet<_> = stored_resident(&server, r)
        .visits
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, [first, second].into_iter().collect());
}

/// The replica keeps the documents it saved loaded, and knows them again by the heads
/// the store saved: a write that reaches the store another way (and so other heads) is
/// what the next read sees, never the copy kept.
#[test]
fn a_document_kept_loaded_gives_way_to_what_the_store_holds() {
    use sync_core::protocol::store::ReplicaStore;
    let r = resident(1);
    let server = seeded(&[r]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&server);
    let (kept, elsewhere) = (
        sync_core::ids::VisitId(uuid(0xF1)),
        sync_core::ids::VisitId(uuid(0xF2)),
    );
    v.edit(r, |f, e| {
        f.log_visit(e, kept, &record(NOW - HOUR)).unwrap();
    });
    assert_eq!(v.hydrate(r).visits.len(), 1);
    // Another writer of the same store (the app's other screen, a restore) adds a visit.
    let mut other = v.replica.case_file(r.into()).unwrap().unwrap();
    let doc = other.doc().fork().with_actor(actor(9));
    other = sync_core::doc::casefile::CaseFile::from_doc(doc).unwrap();
    other
        .log_visit(&v.editor(), elsewhere, &record(NOW - 2 * HOUR))
        .unwrap();
    let state = v.replica.store().sync_state(r.into()).unwrap().unwrap();
    v.replica
        .store_mut()
        .save_doc_changes(r.into(), other.doc(), &state)
        .unwrap();
    let ids: BTreeSet<_> = v.hydrate(r).visits.iter().map(|v| v.id).collect();
    assert_eq!(ids, [kept, elsewhere].into_iter().collect());
}

/// A request's uploads are worked out in batches, loaded at once on the phone's cores:
/// over more than one batch they still come in the store's order, each once, and a
/// budget still cuts them off in that order.
#[test]
fn a_first_upload_of_many_case_files_keeps_its_order_across_batches() {
    use sync_core::ids::DocId;
    let server = seeded(&[]);
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    staff_phone.sync(&server);
    let residents: Vec<_> = (1..=150).map(|n| resident(0x1000 + n)).collect();
    for &r in &residents {
        let file = new_case_file(staff_phone.principal(), actor(1), r, STATION_A);
        staff_phone.replica.save_case_file(&file).unwrap();
    }
    let mut expected: Vec<DocId> = residents.iter().map(|&r| r.into()).collect();
    expected.sort();
    let none = BTreeSet::new();
    let all = staff_phone.replica.prepare(NOW).unwrap();
    let docs: Vec<DocId> = all.uploads.iter().map(|u| u.doc).collect();
    assert_eq!(docs, expected);
    let first: usize = all.uploads[..100]
        .iter()
        .flat_map(|u| &u.changes)
        .map(|c| c.0.len())
        .sum();
    let part = staff_phone
        .replica
        .prepare_within(NOW, first, &none)
        .unwrap();
    let docs: Vec<DocId> = part.uploads.iter().map(|u| u.doc).collect();
    assert_eq!(docs, expected[..100]);
    staff_phone.sync(&server);
    assert_eq!(staff_phone.replica.pending_changes().unwrap(), 0);
    for r in residents {
        assert_eq!(stored_resident(&server, r).id, r);
    }
}
