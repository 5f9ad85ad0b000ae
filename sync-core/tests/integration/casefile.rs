//! Case files and catalogs: typed operations and reads, conflicts, history, migration.

use crate::support::*;
use sync_core::automerge::{Automerge, ReadDoc};
use sync_core::doc::casefile::{CaseFile, FieldValue, ProfileField};
use sync_core::doc::history::{Touched, history};
use sync_core::doc::migrate::migrate;
use sync_core::doc::paths::{Locator, Seg, Touch, touches};
use sync_core::doc::schema::CURRENT_SCHEMA;
use sync_core::ids::*;
use sync_core::model::*;

const SCHEMA1: &[u8] = include_bytes!("../fixtures/v1/resident-schema1.automerge");

fn fork(file: &CaseFile, actor_n: u8) -> CaseFile {
    let doc = file.doc().fork().with_actor(actor(actor_n));
    CaseFile::from_doc(doc).unwrap()
}

fn merge(into: &mut CaseFile, from: &CaseFile) {
    let mut doc = into.doc().clone();
    let mut other = from.doc().clone();
    doc.merge(&mut other).unwrap();
    *into = CaseFile::from_doc(doc).unwrap();
}

#[test]
fn a_new_case_file_hydrates_to_what_was_written() {
    let s = staff(STAFF_A, STATION_A);
    let file = new_case_file(&s, actor(1), resident(1), STATION_A);
    let r = file.hydrate().unwrap();
    assert_eq!(r.id, resident(1));
    assert_eq!((r.district, r.station), (DISTRICT, STATION_A));
    assert_eq!(r.profile, profile("王阿婆"));
    assert!(r.visits.is_empty() && r.follow_ups.is_empty());
}

#[test]
fn visits_amendments_tombstones_reviews_and_follow_ups_round_trip() {
    let s = staff(STAFF_A, STATION_A);
    let v = volunteer(VOLUNTEER_1, &[resident(1)]);
    let mut file = new_case_file(&s, actor(1), resident(1), STATION_A);
    let (a, b) = (VisitId(uuid(0xF1)), VisitId(uuid(0xF2)));
    file.log_visit(&editor(&v), a, &record(NOW - 2 * DAY))
        .unwrap();
    file.log_visit(&editor(&v), b, &record(NOW - DAY)).unwrap();
    let mut amended = record(NOW - DAY);
    amended.notes = "补记：血压偏高".into();
    amended.condition.systolic = Some(160);
    amended.hazards.clear();
    file.amend_visit(&editor(&v), b, &amended).unwrap();
    file.tombstone_visit(&editor(&v), a).unwrap();
    file.review_visit(&editor(&s), b, ReviewStatus::Approved, "很好")
        .unwrap();
    let ticket = FollowUpId(uuid(0xE1));
    file.open_follow_up(
        &editor(&v),
        ticket,
        Some(b),
        "血压复查",
        Some(STAFF_A),
        Some(NOW + 3 * DAY),
    )
    .unwrap();
    file.comment_follow_up(&editor(&v), ticket, CommentId(uuid(0xC1)), "已联系家属")
        .unwrap();
    file.close_follow_up(&editor(&s), ticket, "社区医生已上门")
        .unwrap();

    let r = file.hydrate().unwrap();
    assert_eq!(
        r.visits.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![a, b]
    );
    assert!(r.visits[0].tombstoned);
    assert_eq!(r.visits[1].record, amended);
    assert_eq!(r.visits[1].review_status(), ReviewStatus::Approved);
    assert_eq!(r.visits[1].review.as_ref().unwrap().reviewer, STAFF_A);
    assert_eq!(r.live_visits().count(), 1);
    assert_eq!(r.last_visit_at(), Some(NOW - DAY));
    assert_eq!(file.last_visit_at().unwrap(), Some(NOW - DAY));
    assert_eq!(file.visit(b).unwrap().as_ref(), Some(&r.visits[1]));
    let f = &r.follow_ups[0];
    assert_eq!(file.follow_up(ticket).unwrap().as_ref(), Some(f));
    assert_eq!(file.follow_up(FollowUpId(uuid(0xE2))).unwrap(), None);
    assert_eq!(
        (f.status, f.owner, f.visit),
        (FollowUpStatus::Closed, Some(STAFF_A), Some(b))
    );
    assert_eq!(f.comments[0].text, "已联系家属");
    assert_eq!(f.closed_by, Some(STAFF_A));
    assert!(!f.is_overdue(NOW + 10 * DAY));
}

#[test]
fn amending_writes_only_the_fields_that_changed() {
    let s = staff(STAFF_A, STATION_A);
    let v = volunteer(VOLUNTEER_1, &[resident(1)]);
    let mut file = new_case_file(&s, actor(1), resident(1), STATION_A);
    let a = VisitId(uuid(0xF1));
    file.log_visit(&editor(&v), a, &record(NOW - DAY)).unwrap();
    let mut amended = record(NOW - DAY);
    amended.notes = "改".into();
    let hash = file.amend_visit(&editor(&v), a, &amended).unwrap().unwrap();
    let change = file.doc().get_change_by_hash(&hash).unwrap();
    assert_eq!(change.len(), 1, "one op: the notes");
    assert_eq!(
        file.amend_visit(&editor(&v), a, &amended).unwrap(),
        None,
        "no change, no commit"
    );
}

#[test]
fn concurrent_profile_edits_surface_as_a_conflict_and_resolve() {
    let s = staff(STAFF_A, STATION_A);
    let c = coordinator();
    let mut phone1 = new_case_file(&s, actor(1), resident(1), STATION_A);
    let mut phone2 = fork(&phone1, 2);
    let v1 = FieldValue::Text("新地址 1".into());
    let v2 = FieldValue::Text("新地址 2".into());
    phone1
        .update_profile(&editor(&s), ProfileField::Address, &v1)
        .unwrap();
    phone2
        .update_profile(&editor(&c), ProfileField::Address, &v2)
        .unwrap();
    // Equal concurrent values are not a conflict.
    let same = FieldValue::Text("女儿 13911111111".into());
    phone1
        .update_profile(&editor(&s), ProfileField::EmergencyContact, &same)
        .unwrap();
    phone2
        .update_profile(&editor(&c), ProfileField::EmergencyContact, &same)
        .unwrap();
    merge(&mut phone1, &phone2);

    let conflicts = phone1.conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let conflict = &conflicts[0];
    assert_eq!(conflict.field, ProfileField::Address);
    let mut seen: Vec<_> = conflict
        .values
        .iter()
        .map(|v| (v.value.clone(), v.user, v.at))
        .collect();
    seen.sort_by_key(|(_, u, _)| *u);
    assert_eq!(
        seen,
        vec![(v1, Some(STAFF_A), NOW), (v2, Some(COORDINATOR), NOW)]
    );
    assert!(conflict.values.iter().all(|v| v.actor.len() == 32));

    let chosen = FieldValue::Text("核实后的地址".into());
    phone1
        .resolve_conflict(&editor(&c), ProfileField::Address, &chosen)
        .unwrap();
    assert!(phone1.conflicts().unwrap().is_empty());
    assert_eq!(phone1.profile().unwrap().address, "核实后的地址");
}

#[test]
fn history_names_the_time_device_user_and_what_changed() {
    let s = staff(STAFF_A, STATION_A);
    let v = volunteer(VOLUNTEER_1, &[resident(1)]);
    let mut file = new_case_file(&s, actor(1), resident(1), STATION_A);
    let mut doc = file.doc().clone().with_actor(actor(2));
    let a = VisitId(uuid(0xF1));
    {
        let mut on_phone = CaseFile::from_doc(std::mem::take(&mut doc)).unwrap();
        on_phone
            .log_visit(&editor(&v), a, &record(NOW - DAY))
            .unwrap();
        file = on_phone;
    }
    file.update_profile(
        &editor(&v),
        ProfileField::Needs,
        &FieldValue::Text("需要助听器".into()),
    )
    .unwrap();
    let h = history(file.doc()).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].user, Some(STAFF_A));
    assert_eq!(h[0].actor, actor(1).to_hex_string());
    assert!(h[0].touched.contains(&Touched::Root("profile".into())));
    assert_eq!(h[1].user, Some(VOLUNTEER_1));
    assert_eq!(h[1].actor, actor(2).to_hex_string());
    assert_eq!(
        h[1].touched.iter().collect::<Vec<_>>(),
        vec![&Touched::Visit(a)]
    );
    assert_eq!(
        h[2].touched.iter().collect::<Vec<_>>(),
        vec![&Touched::Profile("needs".into())]
    );
    assert_eq!(h[2].at, NOW);
}

#[test]
fn a_schema_1_document_is_read_in_place_and_migrated_forward() {
    let doc = Automerge::load(SCHEMA1).unwrap();
    let old = CaseFile::from_doc(doc.clone()).unwrap();
    // Read in place: the frequency label becomes days.
    assert_eq!(old.profile().unwrap().visit_every_days, Some(14));
    assert_eq!(old.hydrate().unwrap().visits.len(), 1);

    let mut migrated = doc;
    assert!(migrate(&mut migrated, NOW).unwrap());
    assert!(
        !migrate(&mut migrated, NOW).unwrap(),
        "migrating twice writes nothing"
    );
    let header = sync_core::doc::header(&migrated).unwrap().unwrap();
    assert_eq!(header.schema, CURRENT_SCHEMA);
    let file = CaseFile::from_doc(migrated).unwrap();
    assert_eq!(file.profile().unwrap().visit_every_days, Some(14));
    assert_eq!(file.hydrate().unwrap(), old.hydrate().unwrap());
    // The label is gone from the document itself.
    let h = history(file.doc()).unwrap();
    assert_eq!(
        h.last().unwrap().user,
        None,
        "migrations are the server's, not a user's"
    );
}

#[test]
fn the_server_migrates_an_old_document_before_a_phone_writes_to_it() {
    use sync_core::protocol::server::place_of;
    use sync_core::protocol::store::{MemoryServerStore, ServerStore};
    let server = MemoryServerStore::new();
    let doc = Automerge::load(SCHEMA1).unwrap();
    let id: DocId = resident(1).into();
    server.put_doc(id, place_of(&doc).unwrap(), SCHEMA1.to_vec());

    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[resident(1)]));
    v.sync(&server);
    v.edit(resident(1), |f, e| {
        f.log_visit(e, VisitId(uuid(0xF9)), &record(NOW - HOUR))
            .unwrap();
    });
    let reports = v.sync(&server);
    assert!(
        reports.iter().all(|r| r.rejections.is_empty()),
        "{reports:#?}"
    );
    let stored = pollster::block_on(server.load(id)).unwrap().unwrap();
    assert_eq!(
        sync_core::doc::header(&stored).unwrap().unwrap().schema,
        CURRENT_SCHEMA
    );
    assert_eq!(
        CaseFile::from_doc(stored)
            .unwrap()
            .hydrate()
            .unwrap()
            .visits
            .len(),
        2
    );
}

#[test]
fn a_document_from_a_newer_schema_is_refused_clearly() {
    use sync_core::automerge::{ROOT, ScalarValue, transaction::Transactable};
    let s = staff(STAFF_A, STATION_A);
    let file = new_case_file(&s, actor(1), resident(1), STATION_A);
    let mut doc = file.into_doc();
    let mut tx = doc.transaction();
    tx.put(ROOT, "schema", ScalarValue::Uint(CURRENT_SCHEMA + 1))
        .unwrap();
    tx.commit();
    let err = CaseFile::from_doc(doc).unwrap_err();
    assert!(
        matches!(err, sync_core::Error::SchemaTooNew { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("update the app"));
}

#[test]
fn the_catalog_hydrates_sorted_and_keeps_archived_entries() {
    let cat = new_catalog(actor(9));
    let c = cat.hydrate().unwrap();
    assert_eq!(c.stations.len(), 2);
    assert_eq!(c.projects[0].name, "安守晚晴天");
    assert!(c.service_types.iter().any(|e| e.id == SERVICE_READING));
    let mut cat = cat;
    let coord = coordinator();
    cat.put_entries(
        &editor(&coord),
        &[sync_core::doc::catalog::EntryInput {
            kind: CatalogKind::Project,
            id: PROJECT.0,
            name: "安守晚晴天",
            name_en: "Safe twilight",
            parent: None,
            archived: true,
        }],
    )
    .unwrap();
    assert!(cat.hydrate().unwrap().projects[0].archived);
}

#[test]
fn a_phone_may_write_to_a_document_the_server_has_not_migrated_yet() {
    let mut file =
        CaseFile::from_doc(Automerge::load(SCHEMA1).unwrap().with_actor(actor(2))).unwrap();
    let v = volunteer(VOLUNTEER_1, &[resident(1)]);
    file.log_visit(&editor(&v), VisitId(uuid(0xF9)), &record(NOW - HOUR))
        .unwrap();
    assert_eq!(file.hydrate().unwrap().visits.len(), 2);
    assert_eq!(file.profile().unwrap().visit_every_days, Some(14));
}

/// `changes_since` answers what `get_changes` does: the one change of a local edit
/// (found by hash), nothing when nothing moved, every change past a merge.
#[test]
fn changes_since_matches_get_changes() {
    let s = staff(STAFF_A, STATION_A);
    let v = volunteer(VOLUNTEER_1, &[resident(1)]);
    let mut file = new_case_file(&s, actor(1), resident(1), STATION_A);
    let hashes = |changes: Vec<sync_core::automerge::Change>| {
        changes.iter().map(|c| c.hash()).collect::<Vec<_>>()
    };
    let same = |doc: &Automerge, before: &[sync_core::automerge::ChangeHash]| {
        assert_eq!(
            hashes(sync_core::doc::changes_since(doc, before)),
            hashes(doc.get_changes(before))
        );
    };
    let before = file.doc().get_heads();
    same(file.doc(), &before);
    file.log_visit(&editor(&v), VisitId(uuid(0x7001)), &record(NOW - HOUR))
        .unwrap();
    same(file.doc(), &before);
    assert_eq!(sync_core::doc::changes_since(file.doc(), &before).len(), 1);
    // Two writers, merged: more than one change past the old heads.
    let mut other = fork(&file, 2);
    let base = file.doc().get_heads();
    other
        .log_visit(&editor(&v), VisitId(uuid(0x7002)), &record(NOW - HOUR))
        .unwrap();
    file.log_visit(&editor(&v), VisitId(uuid(0x7003)), &record(NOW - HOUR))
        .unwrap();
    merge(&mut file, &other);
    same(file.doc(), &base);
    same(file.doc(), &[]);
    assert_eq!(sync_core::doc::changes_since(file.doc(), &base).len(), 2);
}

/// `listing_after` gives what `listing` reads whole, write after write: visits logged
/// (earlier and later than the last), reviewed, amended, tombstoned, a follow-up, a
/// profile edit, a closure, and another phone's visits merged in.
#[test]
fn listing_after_follows_listing_through_every_kind_of_write() {
    use sync_core::doc::casefile::{listing, listing_after};
    let s = staff(STAFF_A, STATION_A);
    let v = volunteer(VOLUNTEER_1, &[resident(1)]);
    let mut file = new_case_file(&s, actor(1), resident(1), STATION_A);
    let mut known = listing(file.doc()).unwrap();
    let step = |file: &CaseFile,
                known: &mut sync_core::doc::casefile::Listing,
                before: &[sync_core::automerge::ChangeHash]| {
        let changes = sync_core::doc::changes_since(file.doc(), before);
        let after = listing_after(file.doc(), before, known, &changes).unwrap();
        assert_eq!(after, listing(file.doc()).unwrap());
        *known = after;
    };
    let visit = |n: u128| VisitId(uuid(0x7000 + n));
    type Write<'a> = Box<dyn Fn(&mut CaseFile) + 'a>;
    let writes: Vec<Write<'_>> = vec![
        Box::new(|f| {
            f.log_visit(&editor(&v), visit(1), &record(NOW - 5 * DAY))
                .unwrap();
        }),
        Box::new(|f| {
            f.log_visit(&editor(&v), visit(2), &record(NOW - 9 * DAY))
                .unwrap();
        }),
        Box::new(|f| {
            f.log_visit(&editor(&v), visit(3), &record(NOW - HOUR))
                .unwrap();
        }),
        Box::new(|f| {
            f.review_visit(&editor(&s), visit(3), ReviewStatus::Approved, "好")
                .unwrap();
        }),
        Box::new(|f| {
            f.amend_visit(&editor(&v), visit(3), &record(NOW - 20 * DAY))
                .unwrap();
        }),
        Box::new(|f| {
            f.tombstone_visit(&editor(&v), visit(1)).unwrap();
        }),
        Box::new(|f| {
            f.open_follow_up(
                &editor(&s),
                FollowUpId(uuid(0xF1)),
                Some(visit(2)),
                "换门锁",
                None,
                None,
            )
            .unwrap();
        }),
        Box::new(|f| {
            f.update_profile(
                &editor(&s),
                ProfileField::Address,
                &FieldValue::Text("华沙七村".into()),
            )
            .unwrap();
        }),
        Box::new(|f| {
            f.close(&editor(&s), ClosureReason::InHospital, "住院")
                .unwrap();
        }),
    ];
    for write in &writes {
        let before = file.doc().get_heads();
        write(&mut file);
        step(&file, &mut known, &before);
    }
    // Another phone's visit, merged in with one of ours.
    let before = file.doc().get_heads();
    let mut other = fork(&file, 2);
    other
        .log_visit(&editor(&v), visit(8), &record(NOW - 2 * HOUR))
        .unwrap();
    file.log_visit(&editor(&v), visit(9), &record(NOW - 3 * DAY))
        .unwrap();
    merge(&mut file, &other);
    step(&file, &mut known, &before);
    assert_eq!(known.last_visit_at, Some(NOW - 2 * HOUR));
}

/// Where an operation of `change` writes, found the slow way: the object's path from
/// Automerge's own parent lookup, for every operation.
fn located_by_parents(doc: &Automerge, change: &sync_core::automerge::Change) -> Vec<Touch> {
    use sync_core::automerge::{Prop, legacy};
    let expanded = change.decode();
    expanded
        .operations
        .iter()
        .map(|op| {
            let mut path: Vec<Seg> = match &op.obj {
                legacy::ObjectId::Root => Vec::new(),
                legacy::ObjectId::Id(legacy::OpId(counter, actor)) => {
                    let obj = doc.import_obj(&format!("{counter}@{actor}")).unwrap();
                    let mut up: Vec<Seg> = doc
                        .parents(&obj)
                        .unwrap()
                        .map(|p| match p.prop {
                            Prop::Map(k) => Seg::Key(k),
                            Prop::Seq(_) => Seg::Index,
                        })
                        .collect();
                    up.reverse();
                    up
                }
            };
            path.push(match &op.key {
                legacy::Key::Map(k) => Seg::Key(k.to_string()),
                legacy::Key::Seq(_) => Seg::Index,
            });
            Touch {
                path,
                delete: matches!(op.action, legacy::OpType::Delete),
                make: matches!(op.action, legacy::OpType::Make(_)),
                replaces: !op.pred.is_empty(),
            }
        })
        .collect()
}

/// The locator names an object made by a change from the operation that made it, and
/// remembers every path across changes; Automerge's parent lookup must agree on every
/// operation of a history with nested objects (hazards, services, reviews, comments),
/// amendments, deletions and two phones' concurrent writes.
#[test]
fn the_locator_agrees_with_automerges_parent_lookup_on_every_operation() {
    let s = staff(STAFF_A, STATION_A);
    let v = volunteer(VOLUNTEER_1, &[resident(1)]);
    let mut file = new_case_file(&s, actor(1), resident(1), STATION_A);
    let (a, b) = (VisitId(uuid(0xF1)), VisitId(uuid(0xF2)));
    file.log_visit(&editor(&v), a, &record(NOW - 2 * DAY))
        .unwrap();
    let mut other = fork(&file, 2);
    file.log_visit(&editor(&v), b, &record(NOW - DAY)).unwrap();
    let mut amended = record(NOW - 2 * DAY);
    amended.hazards.clear();
    amended.notes = "另一台手机补记".into();
    other.amend_visit(&editor(&v), a, &amended).unwrap();
    other
        .update_profile(
            &editor(&s),
            ProfileField::Address,
            &FieldValue::Text("新地址".into()),
        )
        .unwrap();
    merge(&mut file, &other);
    file.review_visit(&editor(&s), b, ReviewStatus::Approved, "很好")
        .unwrap();
    let ticket = FollowUpId(uuid(0xE1));
    file.open_follow_up(&editor(&v), ticket, Some(b), "血压复查", None, None)
        .unwrap();
    file.comment_follow_up(&editor(&v), ticket, CommentId(uuid(0xC1)), "已联系家属")
        .unwrap();
    file.tombstone_visit(&editor(&v), a).unwrap();

    let doc = file.doc();
    let changes = doc.get_changes(&[]);
    let mut locator = Locator::new(doc);
    let mut ops = 0;
    for change in &changes {
        let shared = locator.touches(change).unwrap();
        assert_eq!(shared, located_by_parents(doc, change), "{}", change.hash());
        assert_eq!(touches(doc, change).unwrap(), shared);
        ops += shared.len();
    }
    // Nested objects were made: a visit's condition, its hazards and their entries.
    let made_nested = changes
        .iter()
        .flat_map(|c| locator.touches(c).unwrap())
        .filter(|t| t.make && t.path.len() > 2)
        .count();
    assert!(made_nested >= 4, "{made_nested} nested objects made");
    assert!(ops > 50, "{ops} operations located");
}
