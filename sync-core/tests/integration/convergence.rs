//! Convergence under faults: a server and four phones make random offline edits and
//! sync in random orders while requests and responses are dropped, duplicated,
//! delayed and replayed, and the server is backed up and restored from its backup.
//! After a final fault-free phase every replica hydrates to the server's state for its
//! scope, no visit is lost and nothing was quarantined.

use crate::support::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use sync_core::doc::casefile::{CaseFile, FieldValue, ProfileField};
use sync_core::ids::{DocId, ResidentId, VisitId};
use sync_core::model::{Principal, Resident, ReviewStatus};
use sync_core::protocol::envelope::{SyncRequest, SyncResponse};
use sync_core::protocol::server::codes;
use sync_core::protocol::store::{MemoryServerStore, ServerStore};

const RESIDENTS: u8 = 4;
/// Phones: 0 staff (station A), 1 coordinator, 2 and 3 volunteers.
const PHONES: usize = 4;

#[derive(Clone, Debug)]
enum Fault {
    None,
    DropRequest,
    DropResponse,
    Duplicate,
    /// Keep the response and deliver it later, after other exchanges.
    Delay,
    /// Send the request prepared at the previous sync again, now.
    Replay,
}

#[derive(Clone, Debug)]
enum Op {
    /// Staff registers even residents at station A, the coordinator odd ones at B.
    Create {
        resident: u8,
    },
    Profile {
        phone: usize,
        resident: u8,
        field: u8,
        value: u8,
    },
    Visit {
        phone: usize,
        resident: u8,
    },
    Amend {
        phone: usize,
        resident: u8,
        which: u8,
        notes: u8,
    },
    Tombstone {
        phone: usize,
        resident: u8,
        which: u8,
    },
    Review {
        phone: usize,
        resident: u8,
        which: u8,
        approve: bool,
    },
    Sync {
        phone: usize,
        fault: Fault,
    },
    DeliverDelayed {
        phone: usize,
    },
    /// Back the server up (everything it stores, as a database dump holds it).
    Backup,
    /// Restore the server from the last backup: whatever it stored since is gone from
    /// it, and the phones must bring it back.
    Restore,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        4 => Just(Fault::None),
        1 => Just(Fault::DropRequest),
        1 => Just(Fault::DropResponse),
        1 => Just(Fault::Duplicate),
        1 => Just(Fault::Delay),
        1 => Just(Fault::Replay),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let phone = 0..PHONES;
    let res = 0..RESIDENTS;
    prop_oneof![
        2 => res.clone().prop_map(|resident| Op::Create { resident }),
        2 => (phone.clone(), res.clone(), 0u8..4, 0u8..3)
            .prop_map(|(phone, resident, field, value)| Op::Profile { phone, resident, field, value }),
        4 => (phone.clone(), res.clone()).prop_map(|(phone, resident)| Op::Visit { phone, resident }),
        2 => (phone.clone(), res.clone(), any::<u8>(), 0u8..4)
            .prop_map(|(phone, resident, which, notes)| Op::Amend { phone, resident, which, notes }),
        1 => (phone.clone(), res.clone(), any::<u8>())
            .prop_map(|(phone, resident, which)| Op::Tombstone { phone, resident, which }),
        2 => (0usize..2, res, any::<u8>(), any::<bool>())
            .prop_map(|(phone, resident, which, approve)| Op::Review { phone, resident, which, approve }),
        5 => (phone.clone(), fault()).prop_map(|(phone, fault)| Op::Sync { phone, fault }),
        1 => phone.prop_map(|phone| Op::DeliverDelayed { phone }),
        1 => Just(Op::Backup),
        1 => Just(Op::Restore),
    ]
}

/// Schedules per run: 40 in CI; `LINLI_CONVERGENCE_CASES=10000` for the long run
/// `RELIABILITY.md` reports.
fn cases() -> u32 {
    std::env::var("LINLI_CONVERGENCE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40)
}

struct Sim {
    server: MemoryServerStore,
    phones: Vec<Phone>,
    delayed: Vec<Vec<SyncResponse>>,
    last_request: Vec<Option<SyncRequest>>,
    /// Every visit a phone was told it saved.
    logged: BTreeSet<(ResidentId, VisitId)>,
    next_visit: u128,
    backup: Option<MemoryServerStore>,
}

fn res_id(n: u8) -> ResidentId {
    resident(u128::from(n))
}

impl Sim {
    fn new() -> Self {
        let all: Vec<ResidentId> = (0..RESIDENTS).map(res_id).collect();
        let mut phones = vec![
            Phone::new(1, staff(STAFF_A, STATION_A)),
            Phone::new(2, coordinator()),
            Phone::new(3, volunteer(VOLUNTEER_1, &all)),
            Phone::new(4, volunteer(VOLUNTEER_2, &all)),
        ];
        let catalog = new_catalog(actor(2));
        phones[1]
            .replica
            .save_catalog(&catalog)
            .expect("save catalog");
        Sim {
            server: MemoryServerStore::new(),
            phones,
            delayed: vec![Vec::new(); PHONES],
            last_request: vec![None; PHONES],
            logged: BTreeSet::new(),
            next_visit: 0,
            backup: None,
        }
    }

    fn file(&self, phone: usize, r: u8) -> Option<CaseFile> {
        self.phones[phone]
            .replica
            .case_file(res_id(r).into())
            .expect("load")
    }

    fn save(&mut self, phone: usize, file: &CaseFile) {
        self.phones[phone]
            .replica
            .save_case_file(file)
            .expect("save");
    }

    /// The case file of `r` on `phone` and one of the phone user's own visits in it,
    /// chosen by `which`; `None` if the phone holds no such file or visit.
    fn own_visit(&self, phone: usize, r: u8, which: u8) -> Option<(CaseFile, VisitId)> {
        let file = self.file(phone, r)?;
        let me = self.phones[phone].principal().user;
        let own: Vec<VisitId> = file
            .hydrate()
            .expect("hydrate")
            .visits
            .iter()
            .filter(|v| v.volunteer == me)
            .map(|v| v.id)
            .collect();
        let id = *own.get(usize::from(which) % own.len().max(1))?;
        Some((file, id))
    }

    fn principal(&self, phone: usize) -> Principal {
        self.phones[phone].principal().clone()
    }

    fn exchange(&self, phone: usize, request: &SyncRequest) -> SyncResponse {
        self.phones[phone].serve(&self.server, request)
    }

    fn apply(&mut self, phone: usize, response: &SyncResponse) {
        let report = self.phones[phone].replica.apply(response).expect("apply");
        // After a restore a repair may wait on another phone (`needs_others`,
        // `held_for_others`: nothing refused or kept, the phone hands its own over
        // later and the others' come from their devices); anything else is a refusal.
        let refused: Vec<_> = report
            .rejections
            .iter()
            .filter(|r| {
                r.quarantine != 0
                    || (r.code != codes::NEEDS_OTHERS && r.code != codes::HELD_FOR_OTHERS)
            })
            .collect();
        assert!(
            refused.is_empty(),
            "honest edits were rejected: {refused:?}"
        );
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Create { resident } => {
                let (phone, station) = if resident % 2 == 0 {
                    (0, STATION_A)
                } else {
                    (1, STATION_B)
                };
                if self.file(phone, resident).is_some() || self.server_has(resident) {
                    return;
                }
                let p = self.principal(phone);
                let a = self.phones[phone].replica.actor().clone();
                let file = new_case_file(&p, a, res_id(resident), station);
                self.save(phone, &file);
            }
            Op::Profile {
                phone,
                resident,
                field,
                value,
            } => {
                let Some(mut file) = self.file(phone, resident) else {
                    return;
                };
                let p = self.principal(phone);
                let fields = if p.role.is_staff() {
                    [
                        ProfileField::Address,
                        ProfileField::Needs,
                        ProfileField::RiskLevel,
                        ProfileField::VisitEveryDays,
                    ]
                } else {
                    [
                        ProfileField::Address,
                        ProfileField::Needs,
                        ProfileField::Phone,
                        ProfileField::EmergencyContact,
                    ]
                };
                let f = fields[usize::from(field) % fields.len()];
                let v = match f {
                    ProfileField::RiskLevel => {
                        FieldValue::Text(["low", "medium", "high"][usize::from(value)].into())
                    }
                    ProfileField::VisitEveryDays => {
                        FieldValue::Int([7, 14, 30][usize::from(value)])
                    }
                    _ => FieldValue::Text(format!("值 {value} from {phone}")),
                };
                file.update_profile(&editor(&p), f, &v)
                    .expect("allowed profile edit");
                self.save(phone, &file);
            }
            Op::Visit { phone, resident } => {
                let Some(mut file) = self.file(phone, resident) else {
                    return;
                };
                let p = self.principal(phone);
                self.next_visit += 1;
                let id = VisitId(uuid(0xAB00_0000 + self.next_visit));
                let start = NOW - 10 * DAY + (self.next_visit as i64) * HOUR;
                file.log_visit(&editor(&p), id, &record(start))
                    .expect("log visit");
                self.save(phone, &file);
                self.logged.insert((res_id(resident), id));
            }
            Op::Amend {
                phone,
                resident,
                which,
                notes,
            } => {
                let Some((mut file, id)) = self.own_visit(phone, resident, which) else {
                    return;
                };
                let mut rec = file.visit(id).expect("read").expect("visit").record;
                rec.notes = format!("补记 {notes}");
                rec.follow_up_needed = notes % 2 == 0;
                let p = self.principal(phone);
                file.amend_visit(&editor(&p), id, &rec)
                    .expect("amend own visit");
                self.save(phone, &file);
            }
            Op::Tombstone {
                phone,
                resident,
                which,
            } => {
                let Some((mut file, id)) = self.own_visit(phone, resident, which) else {
                    return;
                };
                let p = self.principal(phone);
                file.tombstone_visit(&editor(&p), id)
                    .expect("tombstone own visit");
                self.save(phone, &file);
            }
            Op::Review {
                phone,
                resident,
                which,
                approve,
            } => {
                let Some(mut file) = self.file(phone, resident) else {
                    return;
                };
                let visits = file.hydrate().expect("hydrate").visits;
                if visits.is_empty() {
                    return;
                }
                let id = visits[usize::from(which) % visits.len()].id;
                let status = if approve {
                    ReviewStatus::Approved
                } else {
                    ReviewStatus::NeedsAttention
                };
                let p = self.principal(phone);
                file.review_visit(&editor(&p), id, status, "已阅")
                    .expect("review");
                self.save(phone, &file);
            }
            Op::Sync { phone, ref fault } => {
                let request = self.phones[phone].replica.prepare(NOW).expect("prepare");
                let previous = self.last_request[phone].replace(request.clone());
                match fault {
                    Fault::None => {
                        let r = self.exchange(phone, &request);
                        self.apply(phone, &r);
                    }
                    Fault::DropRequest => {}
                    Fault::DropResponse => {
                        self.exchange(phone, &request);
                    }
                    Fault::Duplicate => {
                        let first = self.exchange(phone, &request);
                        let second = self.exchange(phone, &request);
                        self.apply(phone, &first);
                        self.apply(phone, &second);
                        self.apply(phone, &first);
                    }
                    Fault::Delay => {
                        let r = self.exchange(phone, &request);
                        self.delayed[phone].push(r);
                    }
                    Fault::Replay => {
                        if let Some(old) = previous {
                            let r = self.exchange(phone, &old);
                            self.apply(phone, &r);
                        }
                    }
                }
            }
            Op::DeliverDelayed { phone } => {
                if let Some(r) = self.delayed[phone].first().cloned() {
                    self.delayed[phone].remove(0);
                    self.apply(phone, &r);
                }
            }
            Op::Backup => self.backup = Some(self.server.backup()),
            Op::Restore => {
                if let Some(backup) = self.backup.take() {
                    self.server = backup;
                }
            }
        }
    }

    fn server_has(&self, r: u8) -> bool {
        pollster::block_on(self.server.load(res_id(r).into()))
            .expect("load")
            .is_some()
    }

    fn settle(&mut self) {
        // Late responses arrive, then everyone syncs without faults until quiet.
        for phone in 0..PHONES {
            for r in std::mem::take(&mut self.delayed[phone]) {
                self.apply(phone, &r);
            }
        }
        // After a restore, a phone's repair may wait on another phone's (the one
        // holding what it builds on): passes go on until every phone settles.
        for pass in 0..8 {
            let mut settled = true;
            for phone in 0..PHONES {
                settled &= self.phones[phone].sync_for_a_while(&self.server);
            }
            if settled && pass >= 2 {
                return;
            }
        }
        panic!("the phones did not settle in 8 passes");
    }

    fn server_residents(&self) -> BTreeMap<DocId, Resident> {
        let mut out = BTreeMap::new();
        for id in self.server.doc_ids() {
            let doc = pollster::block_on(self.server.load(id))
                .expect("load")
                .expect("stored");
            if let Ok(file) = CaseFile::from_doc(doc) {
                out.insert(id, file.hydrate().expect("server doc hydrates"));
            }
        }
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn replicas_converge_and_no_visit_is_lost(ops in proptest::collection::vec(op(), 1..60)) {
        let mut sim = Sim::new();
        for op in &ops {
            sim.run(op);
        }
        sim.settle();

        let server = sim.server_residents();
        for (resident, visit) in &sim.logged {
            let r = server.get(&DocId::from(*resident));
            prop_assert!(
                r.is_some_and(|r| r.visits.iter().any(|v| v.id == *visit)),
                "visit {visit} of {resident} was lost"
            );
        }
        for (n, phone) in sim.phones.iter().enumerate() {
            let scope = &phone.principal().scope;
            let mut expected = BTreeSet::new();
            for (id, res) in &server {
                if scope.covers(res.id, res.district, res.station) {
                    expected.insert(*id);
                    prop_assert_eq!(&phone.hydrate(res.id), res, "phone {} diverged on {}", n, id);
                }
            }
            let catalog = DocId::from(DISTRICT);
            let held: BTreeSet<DocId> = phone
                .replica
                .doc_ids()
                .expect("ids")
                .into_iter()
                .filter(|id| *id != catalog)
                .collect();
            prop_assert_eq!(held, expected, "phone {} holds the wrong residents", n);
            prop_assert_eq!(phone.replica.pending_changes().expect("pending"), 0, "phone {} has unsynced changes", n);
        }
        prop_assert!(sim.server.quarantined().is_empty(), "quarantined: {:?}", sim.server.quarantined());
    }
}
