//! A small district the targets start from: a catalog, a resident at station A with a
//! visit, its review and a follow-up, the people who wrote them, and a server that
//! stores it all. Built once per process; every input starts from a copy.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use sync_core::automerge::{ActorId, Automerge};
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::catalog::{CatalogDoc, EntryInput};
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::envelope::SyncRequest;
use sync_core::protocol::replica::Replica;
use sync_core::protocol::server::{DeviceAuth, Limits, handle_sync};
use sync_core::protocol::store::{MemoryReplicaStore, MemoryServerStore, ServerStore};
use sync_core::rules::Editor;
use uuid::Uuid;

/// 2025-11-24T00:00:00Z, the fixtures' "now".
pub const NOW: Timestamp = 1_763_942_400_000;
/// An hour in milliseconds.
pub const HOUR: Timestamp = 3_600_000;

pub const DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0xD1));
pub const OTHER_DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0xD2));
pub const STATION_A: StationId = StationId(Uuid::from_u128(0x5A));
pub const STATION_B: StationId = StationId(Uuid::from_u128(0x5B));
pub const PROJECT: ProjectId = ProjectId(Uuid::from_u128(0x90));
pub const SERVICE: ServiceTypeId = ServiceTypeId(Uuid::from_u128(0x51));
pub const HAZARD: HazardTypeId = HazardTypeId(Uuid::from_u128(0x41));
pub const RESIDENT: ResidentId = ResidentId(Uuid::from_u128(0x1001));
pub const VISIT: VisitId = VisitId(Uuid::from_u128(0x7001));
pub const FOLLOW_UP: FollowUpId = FollowUpId(Uuid::from_u128(0xF001));

pub const COORDINATOR: UserId = UserId(Uuid::from_u128(0xC0));
pub const STAFF_A: UserId = UserId(Uuid::from_u128(0xA0));
pub const STAFF_B: UserId = UserId(Uuid::from_u128(0xB0));
pub const VOLUNTEER: UserId = UserId(Uuid::from_u128(0x71));
pub const STRANGER: UserId = UserId(Uuid::from_u128(0x72));

/// The Automerge actor of fixture device `n`.
pub fn actor(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
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

/// Everyone the targets act as: the resident's volunteer, a volunteer with no
/// residents, staff of the resident's station and of another, the district's
/// coordinator and a coordinator of another district.
pub fn principals() -> Vec<Principal> {
    vec![
        volunteer(VOLUNTEER, &[RESIDENT]),
        volunteer(STRANGER, &[]),
        staff(STAFF_A, STATION_A),
        staff(STAFF_B, STATION_B),
        coordinator(),
        Principal {
            user: UserId(Uuid::from_u128(0xC2)),
            role: Role::Coordinator,
            scope: Scope::District(OTHER_DISTRICT),
        },
    ]
}

pub fn editor(p: &Principal) -> Editor<'_> {
    Editor {
        principal: p,
        now: NOW,
    }
}

pub fn profile() -> Profile {
    Profile {
        name: "王阿婆".to_owned(),
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

pub fn record() -> VisitRecord {
    VisitRecord {
        project: PROJECT,
        unit: None,
        started_at: NOW - 2 * HOUR,
        ended_at: NOW - HOUR,
        services: vec![SERVICE],
        condition: Condition {
            wellbeing: Wellbeing::Good,
            systolic: Some(135),
            diastolic: Some(85),
            blood_sugar_dmmol: None,
            remarks: "精神不错".to_owned(),
        },
        hazards: vec![Hazard {
            hazard_type: HAZARD,
            severity: Severity::Medium,
            fixed_on_spot: true,
            note: "更换老化插线板".to_owned(),
        }],
        notes: "读报半小时".to_owned(),
        follow_up_needed: false,
    }
}

/// The district's catalog: two stations, a project, a service type and a hazard type.
fn fill_catalog(mut cat: CatalogDoc) -> CatalogDoc {
    let c = coordinator();
    let entry = |kind, id: Uuid, name| EntryInput {
        kind,
        id,
        name,
        name_en: name,
        parent: None,
        archived: false,
    };
    cat.put_entries(
        &editor(&c),
        &[
            entry(CatalogKind::Station, STATION_A.0, "华沙居民区党群服务站"),
            entry(CatalogKind::Station, STATION_B.0, "象屿品城党群服务站"),
            entry(CatalogKind::Project, PROJECT.0, "安守晚晴天"),
            entry(CatalogKind::ServiceType, SERVICE.0, "读报"),
            entry(CatalogKind::HazardType, HAZARD.0, "老化插线板"),
        ],
    )
    .expect("catalog entries");
    cat
}

/// The base documents as the server stores them, built once.
pub struct Base {
    pub catalog: Automerge,
    pub case_file: Automerge,
}

pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let store = &server().0;
        let load = |doc: DocId| match pollster::block_on(store.load(doc)) {
            Ok(d) => d.expect("stored"),
            Err(never) => match never {},
        };
        Base {
            catalog: load(DISTRICT.into()),
            case_file: load(RESIDENT.into()),
        }
    })
}

/// A device as the server authenticated it.
pub fn device(n: u8, principal: Principal) -> DeviceAuth {
    DeviceAuth {
        device: DeviceId(Uuid::from_u128(0xDE00 + u128::from(n))),
        principal,
        actors: vec![actor(n)],
    }
}

/// The volunteer's phone (device 3), which holds the case file and the catalog.
pub fn volunteer_device() -> DeviceAuth {
    device(3, volunteer(VOLUNTEER, &[RESIDENT]))
}

/// A phone: its replica and how the server knows it.
struct Phone {
    replica: Replica<MemoryReplicaStore>,
    auth: DeviceAuth,
}

impl Phone {
    fn new(auth: DeviceAuth) -> Self {
        Phone {
            replica: Replica::new(MemoryReplicaStore::new(), auth.actors[0].clone()),
            auth,
        }
    }

    /// Syncs until settled, keeping each request's bytes.
    fn sync(&mut self, server: &MemoryServerStore, requests: &mut Vec<Vec<u8>>) {
        for _ in 0..8 {
            let request: SyncRequest = self.replica.prepare(NOW).expect("prepare");
            requests.push(request.encode());
            let response = pollster::block_on(handle_sync(
                server,
                &self.auth,
                &request,
                NOW,
                Limits::default(),
            ))
            .expect("server step");
            let report = self.replica.apply(&response).expect("apply");
            if !report.more && self.replica.pending_changes().expect("pending") == 0 {
                return;
            }
        }
        panic!("the fixture phone did not settle");
    }

    fn edit(&mut self, f: impl FnOnce(&mut CaseFile, &Editor<'_>)) {
        let mut file = self
            .replica
            .case_file(RESIDENT.into())
            .expect("load")
            .expect("held");
        f(&mut file, &editor(&self.auth.principal.clone()));
        self.replica.save_case_file(&file).expect("save");
    }
}

/// A server storing the catalog and the resident's case file (made by station A's
/// staff, a visit by the volunteer, reviewed, with a follow-up), each written on its
/// writer's phone and synced; and the requests that did it (encoded), which seed the
/// envelope corpus. Built once; inputs run on a [`MemoryServerStore::backup`] of it.
pub fn server() -> &'static (MemoryServerStore, Vec<Vec<u8>>) {
    static SERVER: OnceLock<(MemoryServerStore, Vec<Vec<u8>>)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = MemoryServerStore::new();
        let mut requests = Vec::new();
        let mut coordinator = Phone::new(device(1, coordinator()));
        let cat = CatalogDoc::create(actor(1), &editor(&coordinator.auth.principal), DISTRICT)
            .expect("create catalog");
        coordinator
            .replica
            .save_catalog(&fill_catalog(cat))
            .expect("save");
        coordinator.sync(&server, &mut requests);

        let mut staff = Phone::new(device(2, staff(STAFF_A, STATION_A)));
        let file = CaseFile::create(
            actor(2),
            &editor(&staff.auth.principal),
            RESIDENT,
            DISTRICT,
            STATION_A,
            &profile(),
        )
        .expect("create case file");
        staff.replica.save_case_file(&file).expect("save");
        staff.sync(&server, &mut requests);

        let mut volunteer = Phone::new(volunteer_device());
        volunteer.sync(&server, &mut requests);
        volunteer.edit(|f, e| {
            f.log_visit(e, VISIT, &record()).expect("log visit");
        });
        volunteer.sync(&server, &mut requests);

        staff.sync(&server, &mut requests);
        staff.edit(|f, e| {
            f.review_visit(e, VISIT, ReviewStatus::Approved, "好")
                .expect("review");
            f.open_follow_up(
                e,
                FOLLOW_UP,
                Some(VISIT),
                "更换门锁",
                Some(VOLUNTEER),
                Some(NOW + 24 * HOUR),
            )
            .expect("follow-up");
        });
        staff.sync(&server, &mut requests);
        volunteer.sync(&server, &mut requests);
        (server, requests)
    })
}
