//! A request a station hub forwards is taken as its phone's: stored under the phone's
//! device with every rule, restricted to the hub's station, and it changes nothing of
//! what the district server records about the phone's own syncs.

use crate::exchange::seeded;
use crate::support::*;
use sync_core::ids::{DocId, VisitId};
use sync_core::model::{Principal, Role, Scope};
use sync_core::protocol::envelope::{Hash, Receipt, Rejection, SyncResponse};
use sync_core::protocol::server::{Limits, handle_forwarded};
use sync_core::protocol::store::{MemoryServerStore, ReplicaStore, ServerStore};

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

/// The phone's half of a refusal relayed by a hub: the hub receipted the visit (held at
/// the station), the district server refused it into its quarantine. The phone sets
/// the refused changes aside once, under the district server's number, and starts its
/// copy again from the server's; had it written more since, it keeps everything as it
/// is, since the later changes build on the refused ones and are in no quarantine.
#[test]
fn a_refusal_relayed_by_a_hub_is_set_aside_once_unless_the_phone_wrote_more() {
    let r = resident(1);
    let server = seeded(&[r]);
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&server);
    let heads = |v: &Phone| {
        v.replica
            .case_file(r.into())
            .unwrap()
            .unwrap()
            .doc()
            .get_heads()
    };
    let confirmed = heads(&v);
    let visit = VisitId(uuid(0xF1));
    v.edit(r, |f, e| {
        f.log_visit(e, visit, &record(NOW - HOUR)).unwrap();
    });
    // Forwarded by a hub of another station: refused, and kept for a coordinator.
    let taken = forward(&server, &v, STATION_B);
    let rejection = taken.rejections[0].clone();
    assert_ne!(rejection.quarantine, 0);
    // Meanwhile the hub had receipted it: held at the station.
    let held_at_station = |v: &mut Phone| {
        let heads = heads(v).iter().map(|h| Hash(h.0)).collect();
        v.replica
            .apply(&SyncResponse {
                receipts: vec![Receipt {
                    doc: r.into(),
                    heads,
                }],
                ..SyncResponse::default()
            })
            .unwrap();
        assert_eq!(v.replica.pending_changes().unwrap(), 0);
    };
    held_at_station(&mut v);

    // Written more since: nothing is set aside, nothing leaves the phone.
    let mut later = Phone {
        replica: sync_core::protocol::replica::Replica::new(
            v.replica.store().clone(),
            v.auth.actors[0].clone(),
        ),
        auth: v.auth.clone(),
    };
    later.edit(r, |f, e| {
        f.log_visit(e, VisitId(uuid(0xF2)), &record(NOW - HOUR))
            .unwrap();
    });
    held_at_station(&mut later);
    let taken = later.replica.take_relayed_refusal(&rejection, &confirmed);
    assert!(!taken.unwrap());
    assert!(later.replica.refused().unwrap().is_empty());
    assert_eq!(later.hydrate(r).visits.len(), 2);

    // Nothing written since: set aside, under the district server's number.
    let other = Rejection {
        heads: vec![Hash([7; 32])],
        ..rejection.clone()
    };
    assert!(!v.replica.take_relayed_refusal(&other, &confirmed).unwrap());
    assert!(
        v.replica
            .take_relayed_refusal(&rejection, &confirmed)
            .unwrap()
    );
    let refused = v.replica.refused().unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].quarantine, refused[0].code.as_str()),
        (rejection.quarantine, "out_of_scope")
    );
    let (_, what) = v.replica.refused_contents(&refused[0]).unwrap();
    assert_eq!(what.visits.into_iter().collect::<Vec<_>>(), vec![visit]);
    let held = v.replica.doc_ids().unwrap();
    assert!(
        !held.contains(&r.into()),
        "the copy starts again from the server's"
    );
    assert!(v.replica.store().need_held().unwrap());
    // Told again: nothing more happens.
    assert!(
        !v.replica
            .take_relayed_refusal(&rejection, &confirmed)
            .unwrap()
    );
    // The next sync brings the server's copy back, without the refused visit, and
    // the phone asks after the decision.
    v.sync(&server);
    assert!(v.hydrate(r).visits.is_empty());
    assert_eq!(v.replica.pending_changes().unwrap(), 0);
    assert_eq!(
        v.replica.prepare(NOW).unwrap().refused,
        vec![rejection.quarantine]
    );
}
