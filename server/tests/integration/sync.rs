//! The sync protocol over the SQL store: phones, a coordinator and an attacker.

use crate::backends::{TestStore, conformance};
use std::collections::BTreeSet;
use sync_core::automerge::transaction::{CommitOptions, Transactable};
use sync_core::automerge::{ActorId, ReadDoc};
use sync_core::doc::casefile::CaseFile;
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::envelope::{Bytes, DocUpload, SyncRequest, SyncResponse, to_wire_hashes};
use sync_core::protocol::replica::{Replica, SyncReport};
use sync_core::protocol::server::{DeviceAuth, Limits, handle_sync_bytes};
use sync_core::protocol::store::MemoryReplicaStore;
use sync_core::rules::Editor;
use uuid::Uuid;

const NOW: Timestamp = 1_763_942_400_000;
const DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0xD1));
const STATION: StationId = StationId(Uuid::from_u128(0x5A));
const RESIDENT: ResidentId = ResidentId(Uuid::from_u128(0x1001));

struct Phone {
    replica: Replica<MemoryReplicaStore>,
    auth: DeviceAuth,
}

impl Phone {
    fn new(n: u8, user: u128, role: Role, scope: Scope) -> Self {
        let actor = ActorId::from(vec![n; 16]);
        Phone {
            replica: Replica::new(MemoryReplicaStore::new(), actor.clone()),
            auth: DeviceAuth {
                device: DeviceId(Uuid::from_u128(0xDE00 + u128::from(n))),
                principal: Principal {
                    user: UserId(Uuid::from_u128(user)),
                    role,
                    scope,
                },
                actors: vec![actor],
            },
        }
    }

    fn editor(&self) -> Editor<'_> {
        Editor {
            principal: &self.auth.principal,
            now: NOW,
        }
    }

    async fn send(&mut self, t: &TestStore, request: &SyncRequest) -> SyncReport {
        let response = handle_sync_bytes(
            &t.store,
            &self.auth,
            &request.encode(),
            NOW,
            Limits::default(),
        )
        .await
        .unwrap();
        self.replica
            .apply(&SyncResponse::decode(&response).unwrap())
            .unwrap()
    }

    async fn sync(&mut self, t: &TestStore) -> SyncReport {
        let request = self.replica.prepare(NOW).unwrap();
        self.send(t, &request).await
    }

    fn resident(&self) -> Resident {
        self.replica
            .case_file(RESIDENT.into())
            .unwrap()
            .unwrap()
            .hydrate()
            .unwrap()
    }
}

fn record() -> VisitRecord {
    VisitRecord {
        project: ProjectId(Uuid::from_u128(0x90)),
        unit: None,
        started_at: NOW - 3_600_000,
        ended_at: NOW - 1_800_000,
        services: vec![ServiceTypeId(Uuid::from_u128(0x51))],
        condition: Condition {
            wellbeing: Wellbeing::Fair,
            systolic: Some(150),
            diastolic: Some(95),
            blood_sugar_dmmol: None,
            remarks: "头晕".into(),
        },
        hazards: vec![],
        notes: "建议复查血压".into(),
        follow_up_needed: true,
    }
}

async fn two_phones_and_a_coordinator_converge(t: TestStore) {
    let mut coordinator = Phone::new(1, 0xC0, Role::Coordinator, Scope::District(DISTRICT));
    let catalog = crate::phone::test_catalog(
        coordinator.replica.actor().clone(),
        &coordinator.editor(),
        DISTRICT,
    );
    coordinator.replica.save_catalog(&catalog).unwrap();
    let profile = Profile {
        name: "王阿婆".into(),
        address: "华沙六村".into(),
        phone: String::new(),
        birth_year: Some(1936),
        living_situation: Some(LivingSituation::Alone),
        emergency_contact: String::new(),
        needs: String::new(),
        risk_level: Some(RiskLevel::High),
        visit_every_days: Some(7),
    };
    let file = CaseFile::create(
        coordinator.replica.actor().clone(),
        &coordinator.editor(),
        RESIDENT,
        DISTRICT,
        STATION,
        &profile,
    )
    .unwrap();
    coordinator.replica.save_case_file(&file).unwrap();
    assert_eq!(coordinator.sync(&t).await.receipted.len(), 2);

    let scope = || Scope::Residents {
        district: DISTRICT,
        residents: BTreeSet::from([RESIDENT]),
    };
    let mut v1 = Phone::new(2, 0x71, Role::Volunteer, scope());
    let mut v2 = Phone::new(3, 0x72, Role::Volunteer, scope());
    v1.sync(&t).await;
    v2.sync(&t).await;
    let (a, b) = (
        VisitId(Uuid::from_u128(0xF1)),
        VisitId(Uuid::from_u128(0xF2)),
    );
    for (phone, id) in [(&mut v1, a), (&mut v2, b)] {
        let mut f = phone.replica.case_file(RESIDENT.into()).unwrap().unwrap();
        let principal = phone.auth.principal.clone();
        f.log_visit(
            &Editor {
                principal: &principal,
                now: NOW,
            },
            id,
            &record(),
        )
        .unwrap();
        phone.replica.save_case_file(&f).unwrap();
    }
    assert_eq!(v1.sync(&t).await.receipted, vec![RESIDENT.into()]);
    assert_eq!(v2.sync(&t).await.receipted, vec![RESIDENT.into()]);
    v1.sync(&t).await;
    assert_eq!(v1.resident(), v2.resident());
    assert_eq!(v1.resident().visits.len(), 2);

    coordinator.sync(&t).await;
    let mut f = coordinator
        .replica
        .case_file(RESIDENT.into())
        .unwrap()
        .unwrap();
    f.review_visit(
        &coordinator.editor(),
        a,
        ReviewStatus::NeedsAttention,
        "请联系社区医生",
    )
    .unwrap();
    coordinator.replica.save_case_file(&f).unwrap();
    coordinator.sync(&t).await;
    v1.sync(&t).await;
    v2.sync(&t).await;
    for phone in [&v1, &v2] {
        let r = phone.resident();
        let visit = r.visits.iter().find(|v| v.id == a).unwrap();
        assert_eq!(visit.review.as_ref().unwrap().comment, "请联系社区医生");
    }
    assert!(t.store.quarantined(10).await.unwrap().is_empty());
}

/// A coordinator registers the resident `name`; a volunteer assigned to them syncs it.
async fn registered(t: &TestStore, name: &str) -> (Phone, Phone) {
    let mut coordinator = Phone::new(1, 0xC0, Role::Coordinator, Scope::District(DISTRICT));
    let profile = Profile {
        name: name.into(),
        address: String::new(),
        phone: String::new(),
        birth_year: None,
        living_situation: None,
        emergency_contact: String::new(),
        needs: String::new(),
        risk_level: None,
        visit_every_days: None,
    };
    let file = CaseFile::create(
        coordinator.replica.actor().clone(),
        &coordinator.editor(),
        RESIDENT,
        DISTRICT,
        STATION,
        &profile,
    )
    .unwrap();
    coordinator.replica.save_case_file(&file).unwrap();
    coordinator.sync(t).await;
    let mut v = Phone::new(
        2,
        0x71,
        Role::Volunteer,
        Scope::Residents {
            district: DISTRICT,
            residents: BTreeSet::from([RESIDENT]),
        },
    );
    v.sync(t).await;
    (coordinator, v)
}

/// What a modified app does: writes `key` = `value` straight into the resident's
/// profile, skipping the phone library's checks, and uploads the raw change. Returns
/// the report and the change's bytes.
async fn upload_raw_profile_write(
    t: &TestStore,
    v: &mut Phone,
    key: &str,
    value: &str,
) -> (SyncReport, Vec<u8>) {
    let mut doc = v
        .replica
        .case_file(RESIDENT.into())
        .unwrap()
        .unwrap()
        .into_doc();
    let before = doc.get_heads();
    let mut tx = doc.transaction();
    let profile_obj = match tx.get(sync_core::automerge::ROOT, "profile").unwrap() {
        Some((_, id)) => id,
        None => panic!("no profile"),
    };
    tx.put(&profile_obj, key, value).unwrap();
    tx.commit_with(
        CommitOptions::default()
            .with_message(v.auth.principal.user.to_string())
            .with_time(NOW),
    );
    let changes = doc.get_changes(&before);
    assert_eq!(changes.len(), 1);
    let request = SyncRequest {
        cursor: 0,
        held_digest: [0; 16],
        held: Some(vec![RESIDENT.into()]),
        uploads: vec![DocUpload {
            doc: RESIDENT.into(),
            heads: to_wire_hashes(&doc.get_heads()),
            changes: vec![Bytes(changes[0].raw_bytes().to_vec())],
        }],
        fallback: vec![],
        ..SyncRequest::default()
    };
    (v.send(t, &request).await, changes[0].raw_bytes().to_vec())
}

async fn an_attack_is_refused_and_kept_only_in_quarantine(t: TestStore) {
    // A volunteer's modified app writes a restricted field straight into the document.
    let (_coordinator, mut v) = registered(&t, "李老伯").await;
    let (report, change) = upload_raw_profile_write(&t, &mut v, "risk_level", "low").await;
    assert!(report.receipted.is_empty());
    assert_eq!(report.rejections[0].code, "role_not_allowed");
    let q = t.store.quarantined(10).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].bytes, vec![change]);
    use sync_core::protocol::store::ServerStore;
    let stored = CaseFile::from_doc(t.store.load(RESIDENT.into()).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored.profile().unwrap().risk_level, None);
    // One feed entry: the resident's registration; nothing of the attack.
    let all = std::collections::BTreeSet::from([RESIDENT.into()]);
    assert_eq!(
        t.store
            .feed_since(0, &all, 100)
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
}

/// A NUL character (PostgreSQL's `text` takes none) in a volunteer's visit note is
/// receipted on both backends and reaches the coordinator as written; one in a key a
/// modified app writes is refused, and its refusal, whose reason names the key, is
/// kept in quarantine rather than failing the sync.
async fn a_nul_in_text_syncs_and_a_nul_in_a_refused_key_is_quarantined(t: TestStore) {
    let (mut coordinator, mut v) = registered(&t, "张阿姨").await;
    let mut f = v.replica.case_file(RESIDENT.into()).unwrap().unwrap();
    let record = VisitRecord {
        notes: "粘贴来的\0备注".into(),
        ..record()
    };
    let principal = v.auth.principal.clone();
    let editor = Editor {
        principal: &principal,
        now: NOW,
    };
    f.log_visit(&editor, VisitId(Uuid::from_u128(0xF1)), &record)
        .unwrap();
    v.replica.save_case_file(&f).unwrap();
    let report = v.sync(&t).await;
    assert_eq!(report.receipted, vec![RESIDENT.into()], "{report:?}");
    coordinator.sync(&t).await;
    assert_eq!(
        coordinator.resident().visits[0].record.notes,
        "粘贴来的\0备注"
    );

    let (report, change) = upload_raw_profile_write(&t, &mut v, "nick\0name", "x").await;
    assert!(report.receipted.is_empty());
    assert_eq!(report.rejections.len(), 1, "{report:?}");
    let q = t.store.quarantined(10).await.unwrap();
    assert_eq!(q.len(), 1);
    assert!(q[0].reason.contains("nick\u{FFFD}name"), "{}", q[0].reason);
    assert_eq!(q[0].bytes, vec![change]);
}

conformance!(
    two_phones_and_a_coordinator_converge,
    an_attack_is_refused_and_kept_only_in_quarantine,
    a_nul_in_text_syncs_and_a_nul_in_a_refused_key_is_quarantined
);
