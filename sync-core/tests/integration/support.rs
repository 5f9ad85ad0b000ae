//! Shared fixtures: a small district, principals, phones and a sync driver.

#![allow(dead_code)]

use std::collections::BTreeSet;
use sync_core::automerge::ActorId;
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::catalog::{CatalogDoc, EntryInput};
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::envelope::{SyncRequest, SyncResponse};
use sync_core::protocol::replica::{Replica, SyncReport};
use sync_core::protocol::server::{DeviceAuth, Limits, handle_sync};
use sync_core::protocol::store::{MemoryReplicaStore, MemoryServerStore, ServerStore};
use sync_core::rules::Editor;
use uuid::Uuid;

/// 2025-11-24T00:00:00Z, the tests' "now".
pub const NOW: Timestamp = 1_763_942_400_000;
pub const HOUR: Timestamp = 3_600_000;
pub const DAY: Timestamp = 24 * HOUR;

pub fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub const DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0xD1));
pub const STATION_A: StationId = StationId(Uuid::from_u128(0x5A));
pub const STATION_B: StationId = StationId(Uuid::from_u128(0x5B));
pub const PROJECT: ProjectId = ProjectId(Uuid::from_u128(0x90));
pub const SERVICE_READING: ServiceTypeId = ServiceTypeId(Uuid::from_u128(0x51));
pub const SERVICE_WIRING: ServiceTypeId = ServiceTypeId(Uuid::from_u128(0x52));
pub const HAZARD_STRIP: HazardTypeId = HazardTypeId(Uuid::from_u128(0x41));

pub const COORDINATOR: UserId = UserId(Uuid::from_u128(0xC0));
pub const STAFF_A: UserId = UserId(Uuid::from_u128(0xA0));
pub const STAFF_B: UserId = UserId(Uuid::from_u128(0xB0));
pub const VOLUNTEER_1: UserId = UserId(Uuid::from_u128(0x71));
pub const VOLUNTEER_2: UserId = UserId(Uuid::from_u128(0x72));

pub fn resident(n: u128) -> ResidentId {
    ResidentId(uuid(0x1000 + n))
}

pub fn coordinator() -> Principal {
    Principal {
        user: COORDINATOR,
        role: Role::Coordinator,
        scope: Scope::District(DISTRICT),
    }
}

pub fn staff(user: UserId, station: StationId) -> Principal {
    Principal {
        user,
        role: Role::StationStaff,
        scope: Scope::Stations {
            district: DISTRICT,
            stations: BTreeSet::from([station]),
        },
    }
}

pub fn volunteer(user: UserId, residents: &[ResidentId]) -> Principal {
    Principal {
        user,
        role: Role::Volunteer,
        scope: Scope::Residents {
            district: DISTRICT,
            residents: residents.iter().copied().collect(),
        },
    }
}

pub fn editor(p: &Principal) -> Editor<'_> {
    Editor {
        principal: p,
        now: NOW,
    }
}

pub fn actor(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

pub fn profile(name: &str) -> Profile {
    Profile {
        name: name.to_owned(),
        address: "华沙六村 12号 301室".to_owned(),
        phone: "13800000000".to_owned(),
        birth_year: Some(1938),
        living_situation: Some(LivingSituation::Alone),
        emergency_contact: "女儿 13900000000".to_owned(),
        needs: "行动不便".to_owned(),
        risk_level: Some(RiskLevel::Medium),
        visit_every_days: Some(7),
    }
}

pub fn record(start: Timestamp) -> VisitRecord {
    VisitRecord {
        project: PROJECT,
        unit: None,
        started_at: start,
        ended_at: start + HOUR,
        services: vec![SERVICE_READING, SERVICE_WIRING],
        condition: Condition {
            wellbeing: Wellbeing::Good,
            systolic: Some(135),
            diastolic: Some(85),
            blood_sugar_dmmol: None,
            remarks: "精神不错".to_owned(),
        },
        hazards: vec![Hazard {
            hazard_type: HAZARD_STRIP,
            severity: Severity::Medium,
            fixed_on_spot: true,
            note: "更换老化插线板".to_owned(),
        }],
        notes: "读报半小时".to_owned(),
        follow_up_needed: false,
    }
}

/// A case file created by `author` (staff or coordinator) at station A.
pub fn new_case_file(
    author: &Principal,
    actor_id: ActorId,
    id: ResidentId,
    station: StationId,
) -> CaseFile {
    CaseFile::create(
        actor_id,
        &editor(author),
        id,
        DISTRICT,
        station,
        &profile("王阿婆"),
    )
    .expect("create case file")
}

pub fn new_catalog(actor_id: ActorId) -> CatalogDoc {
    let c = coordinator();
    let mut cat = CatalogDoc::create(actor_id, &editor(&c), DISTRICT).expect("create catalog");
    let entries = [
        EntryInput {
            kind: CatalogKind::Station,
            id: STATION_A.0,
            name: "华沙居民区党群服务站",
            name_en: "Huasha station",
            parent: None,
            archived: false,
        },
        EntryInput {
            kind: CatalogKind::Station,
            id: STATION_B.0,
            name: "象屿品城党群服务站",
            name_en: "Xiangyu station",
            parent: None,
            archived: false,
        },
        EntryInput {
            kind: CatalogKind::Project,
            id: PROJECT.0,
            name: "安守晚晴天",
            name_en: "Safe twilight",
            parent: None,
            archived: false,
        },
        EntryInput {
            kind: CatalogKind::ServiceType,
            id: SERVICE_READING.0,
            name: "读报",
            name_en: "Reading aloud",
            parent: None,
            archived: false,
        },
        EntryInput {
            kind: CatalogKind::ServiceType,
            id: SERVICE_WIRING.0,
            name: "检查电线",
            name_en: "Wiring check",
            parent: None,
            archived: false,
        },
        EntryInput {
            kind: CatalogKind::HazardType,
            id: HAZARD_STRIP.0,
            name: "老化插线板",
            name_en: "Worn power strip",
            parent: None,
            archived: false,
        },
    ];
    cat.put_entries(&editor(&c), &entries)
        .expect("catalog entries");
    cat
}

/// The server's copy of a resident's case file (it must be stored).
pub fn stored_case_file(server: &MemoryServerStore, id: ResidentId) -> CaseFile {
    let doc = match pollster::block_on(server.load(id.into())) {
        Ok(d) => d.expect("stored"),
        Err(never) => match never {},
    };
    CaseFile::from_doc(doc).expect("case file")
}

/// The server's copy of a resident's case file, hydrated.
pub fn stored_resident(server: &MemoryServerStore, id: ResidentId) -> Resident {
    stored_case_file(server, id).hydrate().expect("hydrate")
}

/// A phone: a replica plus the identity the server authenticated it as.
pub struct Phone {
    pub replica: Replica<MemoryReplicaStore>,
    pub auth: DeviceAuth,
}

impl Phone {
    pub fn new(n: u8, principal: Principal) -> Self {
        let a = actor(n);
        Phone {
            replica: Replica::new(MemoryReplicaStore::new(), a.clone()),
            auth: DeviceAuth {
                device: DeviceId(uuid(0xDE00 + u128::from(n))),
                principal,
                actors: vec![a],
            },
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.auth.principal
    }

    pub fn editor(&self) -> Editor<'_> {
        Editor {
            principal: &self.auth.principal,
            now: NOW,
        }
    }

    /// Opens, edits and saves a case file.
    pub fn edit(&mut self, id: ResidentId, f: impl FnOnce(&mut CaseFile, &Editor<'_>)) {
        let mut file = self
            .replica
            .case_file(id.into())
            .expect("load")
            .expect("held");
        let principal = self.auth.principal.clone();
        f(
            &mut file,
            &Editor {
                principal: &principal,
                now: NOW,
            },
        );
        self.replica.save_case_file(&file).expect("save");
    }

    pub fn hydrate(&self, id: ResidentId) -> Resident {
        self.replica
            .case_file(id.into())
            .expect("load")
            .expect("held")
            .hydrate()
            .expect("hydrate")
    }

    /// Sends `request` to the server step through the encoded envelope and returns
    /// the decoded response, not yet applied (so tests can lose, delay or replay it).
    pub fn serve(&self, server: &MemoryServerStore, request: &SyncRequest) -> SyncResponse {
        let request = SyncRequest::decode(&request.encode()).expect("decode request");
        let response = pollster::block_on(handle_sync(
            server,
            &self.auth,
            &request,
            NOW,
            Limits::default(),
        ))
        .expect("server step");
        SyncResponse::decode(&response.encode()).expect("decode response")
    }

    /// One request/response, through the encoded envelope.
    pub fn sync_once(&mut self, server: &MemoryServerStore) -> SyncReport {
        let request = self.replica.prepare(NOW).expect("prepare");
        let response = self.serve(server, &request);
        self.replica.apply(&response).expect("apply")
    }

    /// Syncs up to 20 rounds while the server has more, a repair is under way or the
    /// server asked for the held list; the reports, and whether it settled (a repair
    /// may wait on another phone, which holds the changes it builds on).
    fn sync_rounds(&mut self, server: &MemoryServerStore) -> (Vec<SyncReport>, bool) {
        let mut reports = Vec::new();
        for _ in 0..20 {
            let r = self.sync_once(server);
            let again = r.more || !r.repairing.is_empty() || self.replica.store().need_held_flag();
            // The repair waits on another phone: asking again now changes nothing.
            let waits = r.rejections.iter().any(|j| {
                use sync_core::protocol::server::codes;
                j.code == codes::NEEDS_OTHERS || j.code == codes::HELD_FOR_OTHERS
            });
            reports.push(r);
            if waits {
                return (reports, false);
            }
            if !again {
                return (reports, true);
            }
        }
        (reports, false)
    }

    /// [`Phone::sync`] that may stop unsettled; whether it settled.
    pub fn sync_for_a_while(&mut self, server: &MemoryServerStore) -> bool {
        self.sync_rounds(server).1
    }

    /// Syncs until the server has nothing more and no repair is under way.
    pub fn sync(&mut self, server: &MemoryServerStore) -> Vec<SyncReport> {
        match self.sync_rounds(server) {
            (reports, true) => reports,
            (reports, false) => panic!("sync did not settle in 20 rounds: {reports:#?}"),
        }
    }
}

pub trait NeedHeld {
    fn need_held_flag(&self) -> bool;
}

impl NeedHeld for MemoryReplicaStore {
    fn need_held_flag(&self) -> bool {
        use sync_core::protocol::store::ReplicaStore;
        self.need_held().unwrap_or(false)
    }
}
