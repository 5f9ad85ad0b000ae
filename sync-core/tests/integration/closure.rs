//! Closing and reopening a case file (issue 16): a closed file leaves every phone at
//! its next sync, a visit logged offline before the phone heard of it is kept, and a
//! reopened file comes back. Only staff and above close or reopen.

use crate::exchange::seeded;
use crate::support::*;
use sync_core::Error;
use sync_core::automerge::Automerge;
use sync_core::doc::casefile::CaseFile;
use sync_core::ids::{DocId, ResidentId, VisitId};
use sync_core::model::{ClosureReason, Principal};
use sync_core::protocol::server::place_of;
use sync_core::protocol::store::{Append, AppendOutcome, MemoryServerStore, ServerStore};
use sync_core::rules::{Editor, Violation};

/// Edits the server's copy directly, as the coordinators' web pages do (the web
/// user's own actor, the rules checked by the edit), and stores the change.
fn edit_on_server(
    server: &MemoryServerStore,
    r: ResidentId,
    by: &Principal,
    edit: impl FnOnce(&mut CaseFile, &Editor<'_>),
) {
    let before: Automerge = stored_case_file(server, r).into_doc();
    let heads = before.get_heads();
    let mut file = CaseFile::from_doc(before.with_actor(actor(0x77))).unwrap();
    edit(
        &mut file,
        &Editor {
            principal: by,
            now: NOW,
        },
    );
    let after = file.into_doc();
    let changes = after.get_changes(&heads);
    let outcome = pollster::block_on(server.append(Append {
        doc: DocId(r.0),
        place: place_of(&after).unwrap(),
        expected_heads: &heads,
        changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect(),
        hashes: changes.iter().map(|c| c.hash()).collect(),
        after: &after,
        device: None,
        user: Some(by.user),
        received_at: NOW,
    }))
    .unwrap();
    assert!(matches!(outcome, AppendOutcome::Stored(_)));
}

#[test]
fn a_closed_case_file_leaves_the_phones_and_an_offline_visit_to_it_is_kept() {
    let (r1, r2) = (resident(1), resident(2));
    let server = seeded(&[r1, r2]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r1, r2]));
    v.sync(&server);
    assert_eq!(v.replica.doc_ids().unwrap().len(), 3);

    // Offline in the stairwell, the volunteer logs a visit to r1; meanwhile station
    // staff close r1's case file: she moved in with her daughter.
    let visit = VisitId(uuid(0xF1));
    v.edit(r1, |f, e| {
        f.log_visit(e, visit, &record(NOW - HOUR)).unwrap();
    });
    edit_on_server(&server, r1, &staff(STAFF_A, STATION_A), |f, e| {
        f.close(e, ClosureReason::MovedAway, "搬去女儿家住")
            .unwrap()
            .expect("a change");
    });
    let closure = stored_case_file(&server, r1)
        .closure()
        .unwrap()
        .expect("closed");
    assert_eq!(closure.reason, ClosureReason::MovedAway);
    assert_eq!((closure.by, closure.at), (STAFF_A, NOW));

    // The next sync hands the visit over (it is kept: the volunteer's scope covers the
    // resident), then purges the closed file. Nothing goes to quarantine.
    let reports = v.sync(&server);
    let receipted: Vec<_> = reports.iter().flat_map(|r| r.receipted.clone()).collect();
    let purged: Vec<_> = reports.iter().flat_map(|r| r.purged.clone()).collect();
    assert_eq!(receipted, vec![DocId(r1.0)], "{reports:#?}");
    assert_eq!(purged, vec![DocId(r1.0)], "{reports:#?}");
    assert!(v.replica.case_file(r1.into()).unwrap().is_none());
    assert!(v.replica.case_file(r2.into()).unwrap().is_some());
    assert!(server.quarantined().is_empty());
    let record = stored_case_file(&server, r1).hydrate().unwrap();
    assert_eq!(
        record.visits.iter().map(|v| v.id).collect::<Vec<_>>(),
        [visit]
    );
    assert!(record.closure.is_some());

    // A phone enrolled later never receives it; the coordinator's phone neither.
    let mut fresh = Phone::new(3, volunteer(VOLUNTEER_2, &[r1, r2]));
    fresh.sync(&server);
    assert!(fresh.replica.case_file(r1.into()).unwrap().is_none());
    let mut coord = Phone::new(9, coordinator());
    coord.sync(&server);
    assert!(coord.replica.case_file(r1.into()).unwrap().is_none());
    assert!(coord.replica.case_file(r2.into()).unwrap().is_some());

    // Reopened (she came back), the file returns to every phone, the visit with it.
    edit_on_server(&server, r1, &coordinator(), |f, e| {
        f.reopen(e).unwrap().expect("a change");
    });
    assert!(stored_case_file(&server, r1).closure().unwrap().is_none());
    for phone in [&mut v, &mut fresh, &mut coord] {
        phone.sync(&server);
        let back = phone.hydrate(r1);
        assert!(back.closure.is_none());
        assert_eq!(
            back.visits.iter().map(|v| v.id).collect::<Vec<_>>(),
            [visit]
        );
    }
    // Reopening an open file writes nothing.
    edit_on_server(&server, r2, &coordinator(), |f, e| {
        assert_eq!(f.reopen(e).unwrap(), None);
        f.close(e, ClosureReason::Deceased, "").unwrap();
    });
}

#[test]
fn only_staff_and_above_close_or_reopen_and_what_they_write_is_checked() {
    let r = resident(1);
    let server = seeded(&[r]);
    let refused = |by: &Principal, close: bool| {
        let mut file = CaseFile::from_doc(
            stored_case_file(&server, r)
                .into_doc()
                .with_actor(actor(0x66)),
        )
        .unwrap();
        let editor = Editor {
            principal: by,
            now: NOW,
        };
        let result = if close {
            file.close(&editor, ClosureReason::Other, "")
        } else {
            file.reopen(&editor)
        };
        match result {
            Err(Error::Rejected(v)) => v,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    // A volunteer, even one assigned to the resident, may not close.
    assert!(matches!(
        refused(&volunteer(VOLUNTEER_1, &[r]), true),
        Violation::RoleNotAllowed { .. }
    ));
    // Another station's staff may not either.
    assert_eq!(
        refused(&staff(STAFF_B, STATION_B), true),
        Violation::OutOfScope
    );

    // Closed by staff, a volunteer may not reopen it.
    edit_on_server(&server, r, &staff(STAFF_A, STATION_A), |f, e| {
        f.close(e, ClosureReason::InHospital, "第一人民医院")
            .unwrap();
    });
    assert!(matches!(
        refused(&volunteer(VOLUNTEER_1, &[r]), false),
        Violation::RoleNotAllowed { .. }
    ));

    // A note over 200 characters is refused, and nothing of it stays.
    let mut file = CaseFile::from_doc(
        stored_case_file(&server, r)
            .into_doc()
            .with_actor(actor(0x66)),
    )
    .unwrap();
    let by = staff(STAFF_A, STATION_A);
    let editor = Editor {
        principal: &by,
        now: NOW,
    };
    let long = "长".repeat(201);
    assert!(matches!(
        file.close(&editor, ClosureReason::Other, &long),
        Err(Error::Rejected(Violation::Invalid { .. }))
    ));
    assert_eq!(
        file.closure().unwrap().unwrap().note,
        "第一人民医院",
        "the refused change was undone"
    );
}

#[test]
fn a_phone_crafting_a_closure_is_refused_and_quarantined() {
    // A volunteer's phone that writes a closure itself (an old or hostile build): the
    // server step refuses the upload and keeps it for a coordinator.
    let r = resident(1);
    let server = seeded(&[r]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&server);
    let mut file = v.replica.case_file(r.into()).unwrap().unwrap();
    let heads = file.doc().get_heads();
    let mut doc = file.into_doc();
    {
        use sync_core::automerge::transaction::Transactable;
        use sync_core::automerge::{ObjType, ROOT};
        let mut tx = doc.transaction();
        let c = tx.put_object(ROOT, "closure", ObjType::Map).unwrap();
        tx.put(&c, "reason", "deceased").unwrap();
        tx.put(&c, "note", "").unwrap();
        tx.put(&c, "at", sync_core::automerge::ScalarValue::Timestamp(NOW))
            .unwrap();
        tx.put(
            &c,
            "by",
            sync_core::automerge::ScalarValue::Bytes(VOLUNTEER_1.0.as_bytes().to_vec()),
        )
        .unwrap();
        tx.commit_with(
            sync_core::automerge::transaction::CommitOptions::default()
                .with_message(VOLUNTEER_1.to_string())
                .with_time(NOW),
        );
    }
    assert_ne!(doc.get_heads(), heads);
    file = CaseFile::from_doc(doc).unwrap();
    v.replica.save_case_file(&file).unwrap();
    let report = v.sync_once(&server);
    assert_eq!(report.rejections.len(), 1, "{report:#?}");
    assert_eq!(report.rejections[0].code, "role_not_allowed");
    assert!(stored_case_file(&server, r).closure().unwrap().is_none());
    assert_eq!(server.quarantined().len(), 1);
}

#[test]
fn an_erased_case_file_leaves_every_phone_and_cannot_come_back() {
    let r = resident(1);
    let server = seeded(&[r]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    v.sync(&server);
    staff_phone.sync(&server);
    assert!(v.replica.case_file(r.into()).unwrap().is_some());

    // Offline, the volunteer logs a visit and staff edit the profile; meanwhile the
    // resident's data is erased at her family's request.
    v.edit(r, |f, e| {
        f.log_visit(e, VisitId(uuid(0xF1)), &record(NOW - HOUR))
            .unwrap();
    });
    staff_phone.edit(r, |f, e| {
        f.close(e, ClosureReason::Deceased, "").unwrap();
    });
    server.erase(DocId(r.0));

    // Each phone's upload is refused as `erased`, nothing is kept aside or in
    // quarantine, and the phone deletes its copy.
    for phone in [&mut v, &mut staff_phone] {
        let reports = phone.sync(&server);
        let codes: Vec<_> = reports
            .iter()
            .flat_map(|r| r.rejections.iter().map(|x| x.code.clone()))
            .collect();
        assert_eq!(codes, ["erased"], "{reports:#?}");
        assert!(phone.replica.case_file(r.into()).unwrap().is_none());
        assert!(phone.replica.refused().unwrap().is_empty());
    }
    assert!(server.quarantined().is_empty());
    // No phone's copy made the document again.
    assert!(
        pollster::block_on(server.load(DocId(r.0)))
            .unwrap()
            .is_none()
    );
    let mut fresh = Phone::new(3, volunteer(VOLUNTEER_2, &[r]));
    fresh.sync(&server);
    assert!(fresh.replica.case_file(r.into()).unwrap().is_none());
}
