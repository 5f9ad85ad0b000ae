//! The read-side projections: after every kind of change, through the sync protocol,
//! the rows equal what the server's document hydrates to; refused or failed appends
//! leave no rows; wiped rows come back identical from a rebuild.

use crate::backends::{TestStore, conformance};
use server::store::projections::*;
use sync_core::automerge::transaction::{CommitOptions, Transactable};
use sync_core::automerge::{ActorId, Automerge, ChangeHash, ROOT, ReadDoc};
use sync_core::doc::casefile::{CaseFile, FieldValue, ProfileField};
use sync_core::doc::catalog::CatalogDoc;
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::envelope::{Bytes, DocUpload, SyncRequest, SyncResponse, to_wire_hashes};
use sync_core::protocol::replica::{Replica, SyncReport};
use sync_core::protocol::server::{DeviceAuth, Limits, handle_sync, place_of};
use sync_core::protocol::store::{Append, AppendOutcome, MemoryReplicaStore, ServerStore};
use sync_core::rules::Editor;
use uuid::Uuid;

const NOW: Timestamp = 1_763_942_400_000;
const HOUR: Timestamp = 3_600_000;
const DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0xD1));
const STATION_A: StationId = StationId(Uuid::from_u128(0x5A));
const STATION_B: StationId = StationId(Uuid::from_u128(0x5B));
const RESIDENT: ResidentId = ResidentId(Uuid::from_u128(0x1001));
const COORDINATOR: UserId = UserId(Uuid::from_u128(0xC0));
const VOLUNTEER: UserId = UserId(Uuid::from_u128(0x71));

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

struct Phone {
    replica: Replica<MemoryReplicaStore>,
    auth: DeviceAuth,
}

impl Phone {
    fn new(n: u8, user: UserId, role: Role, scope: Scope) -> Self {
        let actor = ActorId::from(vec![n; 16]);
        Phone {
            replica: Replica::new(MemoryReplicaStore::new(), actor.clone()),
            auth: DeviceAuth {
                device: DeviceId(uuid(0xDE00 + u128::from(n))),
                principal: Principal { user, role, scope },
                actors: vec![actor],
            },
        }
    }

    fn coordinator() -> Self {
        Phone::new(1, COORDINATOR, Role::Coordinator, Scope::District(DISTRICT))
    }

    fn volunteer(n: u8, user: UserId, residents: &[ResidentId]) -> Self {
        let scope = Scope::Residents {
            district: DISTRICT,
            residents: residents.iter().copied().collect(),
        };
        Phone::new(n, user, Role::Volunteer, scope)
    }

    async fn send(&mut self, t: &TestStore, request: &SyncRequest) -> SyncReport {
        let response = handle_sync(&t.store, &self.auth, request, NOW, Limits::default())
            .await
            .unwrap();
        let response = SyncResponse::decode(&response.encode()).unwrap();
        self.replica.apply(&response).unwrap()
    }

    /// Syncs and expects every upload to be accepted.
    async fn sync(&mut self, t: &TestStore) {
        let request = self.replica.prepare(NOW).unwrap();
        let report = self.send(t, &request).await;
        assert!(report.rejections.is_empty(), "{:?}", report.rejections);
    }

    /// Runs one typed edit on the phone's copy of a case file.
    fn edit<T>(
        &mut self,
        resident: ResidentId,
        write: impl FnOnce(&mut CaseFile, &Editor<'_>) -> sync_core::Result<T>,
    ) {
        let mut file = self.replica.case_file(resident.into()).unwrap().unwrap();
        let editor = Editor {
            principal: &self.auth.principal,
            now: NOW,
        };
        write(&mut file, &editor).unwrap();
        self.replica.save_case_file(&file).unwrap();
    }

    /// Registers a resident (staff only) with a catalog beside it the first time.
    fn register(&mut self, resident: ResidentId, station: StationId, name: &str) {
        let editor = Editor {
            principal: &self.auth.principal,
            now: NOW,
        };
        if self.replica.catalog(DISTRICT.into()).unwrap().is_none() {
            let catalog =
                crate::phone::test_catalog(self.replica.actor().clone(), &editor, DISTRICT);
            self.replica.save_catalog(&catalog).unwrap();
        }
        let profile = Profile {
            name: name.into(),
            address: "华沙六村 3号".into(),
            phone: String::new(),
            birth_year: Some(1938),
            living_situation: Some(LivingSituation::Alone),
            emergency_contact: "女儿 138".into(),
            needs: String::new(),
            risk_level: Some(RiskLevel::Medium),
            visit_every_days: Some(7),
        };
        let file = CaseFile::create(
            self.replica.actor().clone(),
            &editor,
            resident,
            DISTRICT,
            station,
            &profile,
        )
        .unwrap();
        self.replica.save_case_file(&file).unwrap();
    }
}

fn record(started_at: Timestamp) -> VisitRecord {
    VisitRecord {
        project: ProjectId(uuid(0x90)),
        unit: Some(UnitId(uuid(0x80))),
        started_at,
        ended_at: started_at + 45 * 60_000 + 59_000,
        services: vec![ServiceTypeId(uuid(0x51)), ServiceTypeId(uuid(0x52))],
        condition: Condition {
            wellbeing: Wellbeing::Fair,
            systolic: Some(150),
            diastolic: Some(95),
            blood_sugar_dmmol: Some(61),
            remarks: "头晕".into(),
        },
        hazards: vec![
            Hazard {
                hazard_type: HazardTypeId(uuid(0x61)),
                severity: Severity::High,
                fixed_on_spot: true,
                note: "插线板老化，已更换".into(),
            },
            Hazard {
                hazard_type: HazardTypeId(uuid(0x62)),
                severity: Severity::Low,
                fixed_on_spot: false,
                note: String::new(),
            },
        ],
        notes: "建议复查血压".into(),
        follow_up_needed: true,
    }
}

/// The rows a hydrated case file should have, written out here field by field
/// rather than borrowed from the server, so that the two can disagree.
fn expected(r: &Resident, profile_conflicts: i64) -> Projection {
    let mut visits = Vec::new();
    let mut services = Vec::new();
    let mut hazards = Vec::new();
    for v in &r.visits {
        let rec = &v.record;
        visits.push(VisitRow {
            resident: r.id,
            id: v.id,
            district: r.district,
            station: r.station,
            volunteer: v.volunteer,
            project: rec.project,
            unit: rec.unit,
            started_at: rec.started_at,
            ended_at: rec.ended_at,
            duration_minutes: (rec.ended_at - rec.started_at) / 60_000,
            wellbeing: rec.condition.wellbeing,
            systolic: rec.condition.systolic,
            diastolic: rec.condition.diastolic,
            blood_sugar_dmmol: rec.condition.blood_sugar_dmmol,
            remarks: rec.condition.remarks.clone(),
            notes: rec.notes.clone(),
            follow_up_needed: rec.follow_up_needed,
            tombstoned: v.tombstoned,
            review_status: v
                .review
                .as_ref()
                .map_or(ReviewStatus::Pending, |x| x.status),
            reviewer: v.review.as_ref().map(|x| x.reviewer),
            reviewed_at: v.review.as_ref().map(|x| x.at),
            review_comment: v.review.as_ref().map(|x| x.comment.clone()),
            hazards_found: rec.hazards.len() as i64,
            hazards_fixed: rec.hazards.iter().filter(|h| h.fixed_on_spot).count() as i64,
        });
        for (i, s) in rec.services.iter().enumerate() {
            services.push(ServiceRow {
                resident: r.id,
                visit: v.id,
                position: i as i64,
                service_type: *s,
            });
        }
        for (i, h) in rec.hazards.iter().enumerate() {
            hazards.push(HazardRow {
                resident: r.id,
                visit: v.id,
                position: i as i64,
                hazard_type: h.hazard_type,
                severity: h.severity,
                fixed_on_spot: h.fixed_on_spot,
                note: h.note.clone(),
            });
        }
    }
    let mut follow_ups: Vec<FollowUpRow> = r
        .follow_ups
        .iter()
        .map(|f| FollowUpRow {
            resident: r.id,
            id: f.id,
            district: r.district,
            station: r.station,
            visit: f.visit,
            title: f.title.clone(),
            status: f.status,
            owner: f.owner,
            deadline: f.deadline,
            opened_by: f.opened_by,
            opened_at: f.opened_at,
            closed_by: f.closed_by,
            closed_at: f.closed_at,
            resolution: f.resolution.clone(),
            comments: f.comments.len() as i64,
        })
        .collect();
    let live = || r.visits.iter().filter(|v| !v.tombstoned);
    visits.sort_by_key(|v| v.id);
    services.sort_by_key(|s| (s.visit, s.position));
    hazards.sort_by_key(|h| (h.visit, h.position));
    follow_ups.sort_by_key(|f| f.id);
    Projection {
        resident: ResidentRow {
            id: r.id,
            district: r.district,
            station: r.station,
            profile: r.profile.clone(),
            last_visit_at: live().map(|v| v.started_at).max(),
            live_visits: live().count() as i64,
            open_follow_ups: r
                .follow_ups
                .iter()
                .filter(|f| f.status == FollowUpStatus::Open)
                .count() as i64,
            profile_conflicts,
            closure: r.closure.clone(),
        },
        visits,
        services,
        hazards,
        follow_ups,
    }
}

/// The server's copy of a case file, hydrated, and how many profile fields hold
/// concurrent values (counted here from Automerge, not by the core's `conflicts`).
async fn server_copy(t: &TestStore, resident: ResidentId) -> (Resident, i64) {
    let doc = t.store.load(resident.into()).await.unwrap().unwrap();
    let conflicts = match doc.get(ROOT, "profile").unwrap() {
        Some((_, profile)) => ProfileField::ALL
            .iter()
            .filter(|f| doc.get_all(&profile, f.key()).unwrap().len() > 1)
            .count() as i64,
        None => 0,
    };
    (
        CaseFile::from_doc(doc).unwrap().hydrate().unwrap(),
        conflicts,
    )
}

/// The stored rows equal what the server's document hydrates to; returns them.
async fn assert_projected(t: &TestStore, resident: ResidentId) -> Projection {
    let (resident_now, conflicts) = server_copy(t, resident).await;
    let want = expected(&resident_now, conflicts);
    let got = t.store.projection(resident).await.unwrap();
    assert_eq!(got.as_ref(), Some(&want));
    want
}

/// Runs SQL on the store's database through a connection of its own.
async fn execute(t: &TestStore, sql: &str) {
    t.try_execute(sql).await.unwrap();
}

const WIPE: &str = "DELETE FROM resident_rows; DELETE FROM visit_rows; \
    DELETE FROM visit_services; DELETE FROM visit_hazards; DELETE FROM follow_up_rows;";

async fn projections_follow_every_kind_of_change(t: TestStore) {
    let mut c = Phone::coordinator();
    c.register(RESIDENT, STATION_A, "王阿婆");
    c.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert!(p.visits.is_empty() && p.resident.last_visit_at.is_none());

    let mut v = Phone::volunteer(2, VOLUNTEER, &[RESIDENT]);
    let mut w = Phone::volunteer(3, UserId(uuid(0x72)), &[RESIDENT]);
    v.sync(&t).await;
    w.sync(&t).await;
    let (a, b, x) = (
        VisitId(uuid(0xF1)),
        VisitId(uuid(0xF2)),
        VisitId(uuid(0xF3)),
    );
    // Log: two volunteers offline at once, merged on the server.
    v.edit(RESIDENT, |f, e| f.log_visit(e, a, &record(NOW - 30 * HOUR)));
    w.edit(RESIDENT, |f, e| f.log_visit(e, x, &record(NOW - 20 * HOUR)));
    v.sync(&t).await;
    w.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(
        (p.visits.len(), p.services.len(), p.hazards.len()),
        (2, 4, 4)
    );
    assert_eq!(p.visits[0].duration_minutes, 45);
    assert_eq!(
        (p.visits[0].hazards_found, p.visits[0].hazards_fixed),
        (2, 1)
    );

    v.sync(&t).await;
    v.edit(RESIDENT, |f, e| f.log_visit(e, b, &record(NOW - 2 * HOUR)));
    v.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.resident.last_visit_at, Some(NOW - 2 * HOUR));
    assert_eq!(p.resident.live_visits, 3);

    // Amend: fewer services, no hazards, new notes.
    let mut amended = record(NOW - 30 * HOUR);
    amended.services.truncate(1);
    amended.hazards.clear();
    amended.notes = "补记：血压已复查".into();
    amended.condition.systolic = None;
    v.edit(RESIDENT, |f, e| f.amend_visit(e, a, &amended));
    v.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.services.iter().filter(|s| s.visit == a).count(), 1);
    assert!(p.hazards.iter().all(|h| h.visit != a));

    // Tombstone: the row stays, flagged; the resident's figures drop it.
    v.edit(RESIDENT, |f, e| f.tombstone_visit(e, b));
    v.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert!(p.visits.iter().any(|row| row.id == b && row.tombstoned));
    assert_eq!(p.resident.last_visit_at, Some(NOW - 20 * HOUR));
    assert_eq!(p.resident.live_visits, 2);

    // Review.
    c.sync(&t).await;
    c.edit(RESIDENT, |f, e| {
        f.review_visit(e, a, ReviewStatus::NeedsAttention, "请联系社区医生")
    });
    c.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    let reviewed = p.visits.iter().find(|row| row.id == a).unwrap();
    assert_eq!(reviewed.review_status, ReviewStatus::NeedsAttention);
    assert_eq!(reviewed.reviewer, Some(COORDINATOR));

    // Follow-up: opened by the volunteer, assigned, commented, closed.
    let ticket = FollowUpId(uuid(0xE1));
    v.sync(&t).await;
    v.edit(RESIDENT, |f, e| {
        f.open_follow_up(e, ticket, Some(a), "血压复查", None, None)
    });
    v.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.resident.open_follow_ups, 1);
    c.sync(&t).await;
    c.edit(RESIDENT, |f, e| {
        f.assign_follow_up(e, ticket, Some(VOLUNTEER), Some(NOW + 72 * HOUR))
    });
    c.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.follow_ups[0].owner, Some(VOLUNTEER));
    v.sync(&t).await;
    v.edit(RESIDENT, |f, e| {
        f.comment_follow_up(e, ticket, CommentId(uuid(0xCC1)), "已联系家属")
    });
    v.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.follow_ups[0].comments, 1);
    c.sync(&t).await;
    c.edit(RESIDENT, |f, e| {
        f.close_follow_up(e, ticket, "社区医生已上门")
    });
    c.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.follow_ups[0].status, FollowUpStatus::Closed);
    assert_eq!(p.resident.open_follow_ups, 0);

    // Profile edits, then a station move that every row follows.
    c.edit(RESIDENT, |f, e| {
        f.update_profile(
            e,
            ProfileField::RiskLevel,
            &FieldValue::Text(RiskLevel::High.code().into()),
        )?;
        f.update_profile(
            e,
            ProfileField::Address,
            &FieldValue::Text("华沙七村".into()),
        )
    });
    c.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.resident.profile.risk_level, Some(RiskLevel::High));
    c.edit(RESIDENT, |f, e| f.set_station(e, STATION_B));
    c.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert!(p.visits.iter().all(|row| row.station == STATION_B));
    assert!(p.follow_ups.iter().all(|row| row.station == STATION_B));

    let check = t.store.check_projections().await.unwrap();
    assert!(check.is_clean(), "{check:?}");
    assert_eq!(check.residents, 1);
}

async fn a_refused_batch_writes_no_projection_rows(t: TestStore) {
    let mut c = Phone::coordinator();
    c.register(RESIDENT, STATION_A, "李老伯");
    c.sync(&t).await;
    let before = assert_projected(&t, RESIDENT).await;

    // A volunteer's batch: a proper visit, then a restricted field written directly.
    let mut v = Phone::volunteer(2, VOLUNTEER, &[RESIDENT]);
    v.sync(&t).await;
    let mut file = v.replica.case_file(RESIDENT.into()).unwrap().unwrap();
    let base = file.doc().get_heads();
    let editor = Editor {
        principal: &v.auth.principal,
        now: NOW,
    };
    file.log_visit(&editor, VisitId(uuid(0xF1)), &record(NOW - HOUR))
        .unwrap();
    let mut doc = file.into_doc();
    let mut tx = doc.transaction();
    let profile = tx.get(ROOT, "profile").unwrap().unwrap().1;
    tx.put(&profile, "risk_level", "low").unwrap();
    tx.commit_with(
        CommitOptions::default()
            .with_message(VOLUNTEER.to_string())
            .with_time(NOW),
    );
    let report = v.send(&t, &upload(RESIDENT.into(), &doc, &base)).await;
    assert_eq!(report.rejections[0].code, "role_not_allowed");
    assert_eq!(
        t.store.projection(RESIDENT).await.unwrap(),
        Some(before.clone())
    );

    // A volunteer may not register a resident: no rows for it anywhere.
    let stranger = ResidentId(uuid(0x1002));
    let mut other = Phone::volunteer(3, UserId(uuid(0x73)), &[stranger]);
    // Made as staff would make it, uploaded under the volunteer's name and role.
    let posing = Principal {
        role: Role::Coordinator,
        scope: Scope::District(DISTRICT),
        ..other.auth.principal.clone()
    };
    let editor = Editor {
        principal: &posing,
        now: NOW,
    };
    let file = CaseFile::create(
        other.replica.actor().clone(),
        &editor,
        stranger,
        DISTRICT,
        STATION_A,
        &before.resident.profile,
    )
    .unwrap();
    let report = other
        .send(&t, &upload(stranger.into(), file.doc(), &[]))
        .await;
    assert_eq!(report.rejections[0].code, "role_not_allowed");
    assert_eq!(t.store.projection(stranger).await.unwrap(), None);

    let check = t.store.check_projections().await.unwrap();
    assert!(check.is_clean(), "{check:?}");
    assert_eq!(check.residents, 1);
}

/// A request uploading everything in `doc` since `base`.
fn upload(doc_id: DocId, doc: &Automerge, base: &[ChangeHash]) -> SyncRequest {
    SyncRequest {
        cursor: 0,
        held_digest: [0; 16],
        held: Some(vec![doc_id]),
        uploads: vec![DocUpload {
            doc: doc_id,
            heads: to_wire_hashes(&doc.get_heads()),
            changes: doc
                .get_changes(base)
                .iter()
                .map(|c| Bytes(c.raw_bytes().to_vec()))
                .collect(),
        }],
        fallback: vec![],
        ..SyncRequest::default()
    }
}

async fn an_append_whose_projection_fails_stores_nothing(t: TestStore) {
    let mut c = Phone::coordinator();
    c.register(RESIDENT, STATION_A, "张老师");
    c.sync(&t).await;
    let before = assert_projected(&t, RESIDENT).await;
    let heads = t
        .store
        .load(RESIDENT.into())
        .await
        .unwrap()
        .unwrap()
        .get_heads();
    let feed = t.store.feed_head().await.unwrap();

    // The database refuses visit rows: the append must fail whole.
    if t.url.starts_with("sqlite:") {
        execute(
            &t,
            "CREATE TRIGGER refuse BEFORE INSERT ON visit_rows BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .await;
    } else {
        execute(
            &t,
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse BEFORE INSERT ON visit_rows FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await;
    }
    let mut file =
        CaseFile::from_doc(t.store.load(RESIDENT.into()).await.unwrap().unwrap()).unwrap();
    let editor = Editor {
        principal: &c.auth.principal,
        now: NOW,
    };
    file.log_visit(&editor, VisitId(uuid(0xF1)), &record(NOW - HOUR))
        .unwrap();
    let changes = file.doc().get_changes(&heads);
    let outcome = t
        .store
        .append(Append {
            doc: RESIDENT.into(),
            place: place_of(file.doc()).unwrap(),
            expected_heads: &heads,
            changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect(),
            hashes: changes.iter().map(|c| c.hash()).collect(),
            after: file.doc(),
            device: None,
            user: None,
            received_at: NOW,
        })
        .await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(t.store.feed_head().await.unwrap(), feed);
    let mut stored = t
        .store
        .load(RESIDENT.into())
        .await
        .unwrap()
        .unwrap()
        .get_heads();
    let mut heads = heads;
    stored.sort();
    heads.sort();
    assert_eq!(stored, heads);
    assert_eq!(t.store.projection(RESIDENT).await.unwrap(), Some(before));
}

async fn wiped_projections_rebuild_to_the_same_rows(t: TestStore) {
    let residents: Vec<ResidentId> = (0..3).map(|n| ResidentId(uuid(0x1001 + n))).collect();
    let mut c = Phone::coordinator();
    for (n, r) in residents.iter().enumerate() {
        let station = if n == 2 { STATION_B } else { STATION_A };
        c.register(*r, station, &format!("居民 {n}"));
    }
    c.sync(&t).await;
    let mut v = Phone::volunteer(2, VOLUNTEER, &residents);
    v.sync(&t).await;
    for (n, r) in (0u128..).zip(&residents) {
        for k in 0..=n {
            let id = VisitId(uuid(0xF000 + n * 16 + k));
            let start = NOW - (10 - i64::try_from(k).unwrap()) * HOUR;
            v.edit(*r, |f, e| f.log_visit(e, id, &record(start)));
        }
        let ticket = FollowUpId(uuid(0xE000 + n));
        v.edit(*r, |f, e| {
            f.open_follow_up(e, ticket, None, "回访", None, None)
        });
    }
    v.sync(&t).await;
    let mut snapshot = Vec::new();
    for r in &residents {
        snapshot.push(assert_projected(&t, *r).await);
    }
    assert!(t.store.check_projections().await.unwrap().is_clean());

    execute(&t, WIPE).await;
    assert_eq!(t.store.projection(residents[0]).await.unwrap(), None);
    let check = t.store.check_projections().await.unwrap();
    assert_eq!(check.mismatches.len(), 3, "{check:?}");

    let report = t.store.rebuild_projections().await.unwrap();
    assert_eq!(
        report,
        RebuildReport {
            residents: 3,
            visits: 6,
            services: 12,
            hazards: 12,
            follow_ups: 3,
            catalogs: 1,
            orphans_removed: 0,
            busy: vec![],
        }
    );
    for (r, want) in residents.iter().zip(&snapshot) {
        assert_eq!(t.store.projection(*r).await.unwrap().as_ref(), Some(want));
    }
    assert!(t.store.check_projections().await.unwrap().is_clean());

    // Damaged rows, and rows that name no case file: the check finds them, a rebuild
    // repairs them.
    execute(
        &t,
        "UPDATE visit_rows SET notes = 'tampered' WHERE id IN (SELECT id FROM visit_rows LIMIT 1);
         INSERT INTO visit_services (resident, visit, position, service_type)
         SELECT id, id, 0, id FROM documents WHERE station IS NULL;",
    )
    .await;
    let check = t.store.check_projections().await.unwrap();
    assert_eq!(check.mismatches.len(), 2, "{check:?}");
    assert!(check.mismatches.iter().any(|m| m.doc == DISTRICT.into()));
    let report = t.store.rebuild_projections().await.unwrap();
    assert_eq!(report.orphans_removed, 1);
    for (r, want) in residents.iter().zip(&snapshot) {
        assert_eq!(t.store.projection(*r).await.unwrap().as_ref(), Some(want));
    }
    assert!(t.store.check_projections().await.unwrap().is_clean());

    // Wiped again, then one change: the append sees the rows do not show the heads it
    // was checked against, and writes the whole document, not just the new visit.
    execute(&t, WIPE).await;
    let late = VisitId(uuid(0xFFFF));
    v.edit(residents[2], |f, e| {
        f.log_visit(e, late, &record(NOW - HOUR))
    });
    v.sync(&t).await;
    let p = assert_projected(&t, residents[2]).await;
    assert_eq!(p.visits.len(), 4);
    assert_eq!(t.store.projection(residents[0]).await.unwrap(), None);
}

/// A catalog projects to its district's rows, rewritten whole with each change; the
/// check notices rows that differ and the rebuild brings them back. A catalog
/// projects no resident.
async fn a_catalog_projects_its_entries(t: TestStore) {
    use server::store::catalog_rows::CatalogRow;
    use sync_core::doc::catalog::EntryInput;
    let mut c = Phone::coordinator();
    let principal = c.auth.principal.clone();
    let editor = Editor {
        principal: &principal,
        now: NOW,
    };
    let (alliance, unit, old_unit) = (uuid(0xA11), uuid(0x0417), uuid(0x0418));
    let entry = |kind, id, name, name_en, parent, archived| EntryInput {
        kind,
        id,
        name,
        name_en,
        parent,
        archived,
    };
    let mut catalog = CatalogDoc::create(c.replica.actor().clone(), &editor, DISTRICT).unwrap();
    catalog
        .put_entries(
            &editor,
            &[
                entry(
                    CatalogKind::Alliance,
                    alliance,
                    "医疗卫生联盟",
                    "Health alliance",
                    None,
                    false,
                ),
                entry(
                    CatalogKind::Unit,
                    unit,
                    "区中心医院",
                    "District hospital",
                    Some(alliance),
                    false,
                ),
                entry(
                    CatalogKind::Unit,
                    old_unit,
                    "社区诊所",
                    "Clinic",
                    Some(alliance),
                    false,
                ),
            ],
        )
        .unwrap();
    c.replica.save_catalog(&catalog).unwrap();
    c.sync(&t).await;
    let row = |kind, id, name: &str, name_en: &str, parent, archived| CatalogRow {
        kind,
        id,
        name: name.into(),
        name_en: name_en.into(),
        parent,
        archived,
    };
    let mut expected = vec![
        row(
            CatalogKind::Alliance,
            alliance,
            "医疗卫生联盟",
            "Health alliance",
            None,
            false,
        ),
        row(
            CatalogKind::Unit,
            unit,
            "区中心医院",
            "District hospital",
            Some(alliance),
            false,
        ),
        row(
            CatalogKind::Unit,
            old_unit,
            "社区诊所",
            "Clinic",
            Some(alliance),
            false,
        ),
    ];
    expected.sort();
    assert_eq!(t.store.catalog_rows(DISTRICT).await.unwrap(), expected);

    // A rename and a retirement reach the rows.
    let mut catalog = c.replica.catalog(DISTRICT.into()).unwrap().unwrap();
    catalog
        .put_entries(
            &editor,
            &[
                entry(
                    CatalogKind::Unit,
                    unit,
                    "区人民医院",
                    "District People's Hospital",
                    Some(alliance),
                    false,
                ),
                entry(
                    CatalogKind::Unit,
                    old_unit,
                    "社区诊所",
                    "Clinic",
                    Some(alliance),
                    true,
                ),
            ],
        )
        .unwrap();
    c.replica.save_catalog(&catalog).unwrap();
    c.sync(&t).await;
    for r in &mut expected {
        if r.id == unit {
            r.name = "区人民医院".into();
            r.name_en = "District People's Hospital".into();
        }
        if r.id == old_unit {
            r.archived = true;
        }
    }
    expected.sort();
    assert_eq!(t.store.catalog_rows(DISTRICT).await.unwrap(), expected);
    assert_eq!(
        t.store.catalog_rows(DistrictId(uuid(0xD9))).await.unwrap(),
        vec![]
    );
    assert_eq!(
        t.store.projection(ResidentId(DISTRICT.0)).await.unwrap(),
        None
    );
    assert_eq!(
        t.store.check_projections().await.unwrap(),
        CheckReport::default()
    );

    // Damaged rows: the check says which catalog, the rebuild restores them.
    execute(&t, "DELETE FROM catalog_rows WHERE kind = 'units'").await;
    let check = t.store.check_projections().await.unwrap();
    assert_eq!(check.mismatches.len(), 1, "{check:?}");
    assert_eq!(check.mismatches[0].doc, DISTRICT.into());
    let rebuilt = t.store.rebuild_projections().await.unwrap();
    assert_eq!(rebuilt.catalogs, 1, "{rebuilt:?}");
    assert_eq!(t.store.catalog_rows(DISTRICT).await.unwrap(), expected);
    assert_eq!(
        t.store.check_projections().await.unwrap(),
        CheckReport::default()
    );

    // A database from before the table: a store opened on it projects the catalog.
    execute(&t, "DELETE FROM catalog_rows").await;
    let reopened = server::store::SqlStore::connect(&t.url, server::store::StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(reopened.catalog_rows(DISTRICT).await.unwrap(), expected);
}

async fn a_schema_1_document_projects_before_and_after_its_migration(t: TestStore) {
    let old = Automerge::load(&sync_core::doc::migrate::schema1_example()).unwrap();
    let append = |after: &Automerge, before: Vec<ChangeHash>| {
        let changes = after.get_changes(&before);
        let after = after.clone();
        let store = &t.store;
        async move {
            store
                .append(Append {
                    doc: RESIDENT.into(),
                    place: place_of(&after).unwrap(),
                    expected_heads: &before,
                    changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect(),
                    hashes: changes.iter().map(|c| c.hash()).collect(),
                    after: &after,
                    device: None,
                    user: None,
                    received_at: NOW,
                })
                .await
                .unwrap()
        }
    };
    assert!(matches!(
        append(&old, vec![]).await,
        AppendOutcome::Stored(_)
    ));
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.resident.profile.visit_every_days, Some(14));

    // The server's migration: an ordinary change, as the sync step stores it.
    let mut migrated = old.clone();
    assert!(sync_core::doc::migrate::migrate(&mut migrated, NOW).unwrap());
    assert!(matches!(
        append(&migrated, old.get_heads()).await,
        AppendOutcome::Stored(_)
    ));
    let q = assert_projected(&t, RESIDENT).await;
    assert_eq!(p, q);
}

/// Two phones set the same profile field concurrently: the resident row counts the
/// conflict (the resident list flags it) until a coordinator resolves it.
async fn a_profile_conflict_is_counted_until_resolved(t: TestStore) {
    let mut c = Phone::coordinator();
    c.register(RESIDENT, STATION_A, "王阿婆");
    c.sync(&t).await;
    let mut other = Phone::new(2, COORDINATOR, Role::Coordinator, Scope::District(DISTRICT));
    other.sync(&t).await;
    let phone = |n: &str| FieldValue::Text(n.into());
    c.edit(RESIDENT, |f, e| {
        f.update_profile(e, ProfileField::Phone, &phone("13900000001"))
    });
    other.edit(RESIDENT, |f, e| {
        f.update_profile(e, ProfileField::Phone, &phone("13900000002"))
    });
    c.sync(&t).await;
    other.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.resident.profile_conflicts, 1);
    other.sync(&t).await;
    other.edit(RESIDENT, |f, e| {
        f.resolve_conflict(e, ProfileField::Phone, &phone("13900000002"))
    });
    other.sync(&t).await;
    let p = assert_projected(&t, RESIDENT).await;
    assert_eq!(p.resident.profile_conflicts, 0);
}

conformance!(
    a_profile_conflict_is_counted_until_resolved,
    projections_follow_every_kind_of_change,
    a_refused_batch_writes_no_projection_rows,
    an_append_whose_projection_fails_stores_nothing,
    wiped_projections_rebuild_to_the_same_rows,
    a_catalog_projects_its_entries,
    a_schema_1_document_projects_before_and_after_its_migration,
);
