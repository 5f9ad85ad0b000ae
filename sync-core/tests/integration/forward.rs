//! A request a station hub forwards is taken as its phone's: stored under the phone's
//! device with every rule, restricted to the hub's station, and it changes nothing of
//! what the district server records about the phone's own syncs.

use crate::exchange::seeded;
use crate::support::*;
use sync_core::ids::{DocId, VisitId};
use sync_core::model::{Principal, Role, Scope};
use sync_core::protocol::server::{Limits, handle_forwarded};
use sync_core::protocol::store::{MemoryServerStore, ServerStore};

fn forward(
    server: &MemoryServerStore,
    phone: &Phone,
    station: sync_core::ids::StationId,
) -> sync_core::protocol::forward::Taken {
    let request = phone.replica.prepare(NOW).unwrap();
    pollster::block_on(handle_forwarded(
        server,
        &phone.auth,
        station,
        &request,
        NOW,
        Limits::default(),
    ))
    .unwrap()
}

fn held_by(server: &MemoryServerStore, phone: &Phone) -> std::collections::BTreeSet<DocId> {
    pollster::block_on(server.device_docs(phone.auth.device)).unwrap()
}

#[test]
fn a_forwarded_visit_is_stored_as_the_phones_and_delivers_nothing() {
    let r = resident(1);
    let server = seeded(&[r]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&server);
    let held = held_by(&server, &v);
    let visit = VisitId(uuid(0xF1));
    v.edit(r, |f, e| {
        f.log_visit(e, visit, &record(NOW - HOUR)).unwrap();
    });

    let taken = forward(&server, &v, STATION_A);
    assert_eq!(taken.receipts.len(), 1, "{taken:?}");
    assert_eq!(taken.receipts[0].doc, DocId::from(r));
    assert!(taken.rejections.is_empty() && taken.missing.is_empty());
    let stored = stored_case_file(&server, r);
    assert!(
        stored
            .hydrate()
            .unwrap()
            .visits
            .iter()
            .any(|x| x.id == visit)
    );
    let by = stored
        .doc()
        .get_changes(&[])
        .into_iter()
        .filter(|c| c.actor_id() == &v.auth.actors[0])
        .count();
    assert_eq!(by, 1, "the visit is stored under the phone's actor");
    assert_eq!(
        held_by(&server, &v),
        held,
        "the phone's own sync record is untouched"
    );

    // Forwarded twice (a hub killed before it recorded the answer): receipted again,
    // stored once.
    let again = forward(&server, &v, STATION_A);
    assert_eq!(again.receipts, taken.receipts);
    assert_eq!(
        stored_case_file(&server, r).doc().get_changes(&[]).len(),
        stored.doc().get_changes(&[]).len()
    );
}

#[test]
fn a_hub_forwards_nothing_beyond_its_station() {
    let (r1, r2) = (resident(1), resident(2));
    let server = seeded(&[r1]);
    // r2 lives at station B.
    let mut coord = Phone::new(9, coordinator());
    coord.sync(&server);
    let file = new_case_file(coord.principal(), actor(9), r2, STATION_B);
    coord.replica.save_case_file(&file).unwrap();
    coord.sync(&server);

    // A volunteer serving both stations visits both residents, and hub A forwards.
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r1, r2]));
    v.sync(&server);
    for (r, n) in [(r1, 0xF1), (r2, 0xF2)] {
        v.edit(r, |f, e| {
            f.log_visit(e, VisitId(uuid(n)), &record(NOW - HOUR))
                .unwrap();
        });
    }
    let taken = forward(&server, &v, STATION_A);
    assert_eq!(
        taken.receipts.iter().map(|r| r.doc).collect::<Vec<_>>(),
        vec![DocId::from(r1)]
    );
    assert_eq!(taken.rejections.len(), 1, "{taken:?}");
    assert_eq!(taken.rejections[0].doc, DocId::from(r2));
    assert_eq!(taken.rejections[0].code, "out_of_scope");
    assert_ne!(taken.rejections[0].quarantine, 0, "kept for a coordinator");
    let kept = server.quarantined();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].device, kept[0].doc),
        (v.auth.device, DocId::from(r2))
    );
    let f2 = VisitId(uuid(0xF2));
    assert!(
        !stored_resident(&server, r2)
            .visits
            .iter()
            .any(|x| x.id == f2)
    );

    // Staff of both stations register a new resident at B through hub A: refused too.
    let both = Principal {
        user: STAFF_A,
        role: Role::StationStaff,
        scope: Scope::Stations {
            district: DISTRICT,
            stations: [STATION_A, STATION_B].into(),
        },
    };
    let mut s = Phone::new(3, both);
    s.sync(&server);
    let r3 = resident(3);
    let file = new_case_file(s.principal(), actor(3), r3, STATION_B);
    s.replica.save_case_file(&file).unwrap();
    let taken = forward(&server, &s, STATION_A);
    assert!(taken.receipts.is_empty(), "{taken:?}");
    assert_eq!(taken.rejections[0].code, "out_of_scope");
    assert!(
        pollster::block_on(server.load(r3.into()))
            .unwrap()
            .is_none()
    );
}
