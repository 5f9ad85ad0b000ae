//! Sync benchmarks: Linli's batched protocol against Automerge's own per-document sync
//! protocol with a stateless server (a fresh `sync::State` on the server for every
//! request).
//!
//! Run with `cargo bench -p sync-core`. The binary first computes the deterministic
//! figures (round trips and bytes on the wire), prints them as a table and asserts the
//! protocol's targets, so a regression fails the run. Then criterion times:
//!
//! * `log_visit/{ours,baseline_raw_automerge}/N_visits`: `CaseFile::log_visit` (rules
//!   check included) on a case file holding N = 50, 500 and 5,000 visits, against the
//!   byte-identical change written with a plain Automerge transaction (no rules);
//! * `server_one_new_visit/{ours,baseline}/N`: the server's work for a phone's one new
//!   visit, for case files of N visits (ours: `handle_sync_bytes` over a
//!   `MemoryServerStore`; baseline: load the stored document, receive and answer every
//!   round trip of the exchange with a fresh `State`, save after applying changes);
//! * `server_nothing_new/{ours,baseline}/2000_docs`: the server's work for a phone
//!   holding 2,000 case files when nothing is new.

use criterion::{BatchSize, BenchmarkId, Criterion};
use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};
use sync_core::automerge::sync::{Message, State, SyncDoc};
use sync_core::automerge::transaction::{CommitOptions, Transactable, Transaction};
use sync_core::automerge::{
    ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
};
use sync_core::doc::casefile::CaseFile;
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::envelope::SyncResponse;
use sync_core::protocol::replica::{Replica, SyncReport};
use sync_core::protocol::server::{DeviceAuth, Limits, handle_sync_bytes};
use sync_core::protocol::store::{
    DocPlace, MemoryReplicaStore, MemoryServerStore, ReplicaStore, ServerStore,
};
use sync_core::rules::Editor;
use uuid::Uuid;

// ---- fixtures ------------------------------------------------------------------------

/// 2025-11-24T00:00:00Z, the benchmarks' "now".
const NOW: Timestamp = 1_763_942_400_000;
const HOUR: Timestamp = 3_600_000;

const DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0xD1));
const STATION: StationId = StationId(Uuid::from_u128(0x5A));
const PROJECT: ProjectId = ProjectId(Uuid::from_u128(0x90));
const SERVICE_READING: ServiceTypeId = ServiceTypeId(Uuid::from_u128(0x51));
const SERVICE_WIRING: ServiceTypeId = ServiceTypeId(Uuid::from_u128(0x52));
const HAZARD_STRIP: HazardTypeId = HazardTypeId(Uuid::from_u128(0x41));
const STAFF: UserId = UserId(Uuid::from_u128(0xA0));
/// The volunteers who take turns visiting; the first one owns the benchmarked phone.
const VOLUNTEERS: [UserId; 3] = [
    UserId(Uuid::from_u128(0x71)),
    UserId(Uuid::from_u128(0x72)),
    UserId(Uuid::from_u128(0x73)),
];
const STAFF_ACTOR: u8 = 0xA0;
const VOLUNTEER_ACTORS: [u8; 3] = [0x71, 0x72, 0x73];

/// History lengths for the one-new-visit measurement.
const HISTORY: [usize; 3] = [50, 500, 5_000];
/// Case files held by the phone in the nothing-new measurement.
const MANY_DOCS: usize = 2_000;
/// Visits in each of those case files.
const VISITS_PER_SMALL_DOC: usize = 3;

/// Targets (the words).
const TARGET_NEW_VISIT_BYTES: usize = 1024;
const TARGET_NOTHING_NEW_BYTES: usize = 512;

/// A v7-looking, deterministic id: the figures are reproducible byte for byte.
fn id(n: u128) -> Uuid {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    x ^= x >> 67;
    Uuid::from_u128((x & !(0xF << 76) & !(0x3 << 62)) | (0x7 << 76) | (0x2 << 62))
}

fn actor(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

fn staff() -> Principal {
    Principal {
        user: STAFF,
        role: Role::StationStaff,
        scope: Scope::Stations {
            district: DISTRICT,
            stations: BTreeSet::from([STATION]),
        },
    }
}

fn volunteer(user: UserId, residents: &[ResidentId]) -> Principal {
    Principal {
        user,
        role: Role::Volunteer,
        scope: Scope::Residents {
            district: DISTRICT,
            residents: residents.iter().copied().collect(),
        },
    }
}

fn editor(p: &Principal) -> Editor<'_> {
    Editor {
        principal: p,
        now: NOW,
    }
}

fn profile() -> Profile {
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

fn record(start: Timestamp) -> VisitRecord {
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

fn place() -> DocPlace {
    DocPlace {
        district: DISTRICT,
        station: Some(STATION),
        closed: false,
    }
}

/// Builds case files through the public API: created by station staff, then visits
/// logged with `CaseFile::log_visit` (rules checked) by volunteers taking turns, each
/// on their own device (actor), one change per visit as the app makes them.
struct Builder {
    doc: Automerge,
    visits: usize,
    seed: u128,
    volunteers: Vec<Principal>,
}

impl Builder {
    fn new(resident: ResidentId, seed: u128) -> Self {
        let s = staff();
        let file = CaseFile::create(
            actor(STAFF_ACTOR),
            &editor(&s),
            resident,
            DISTRICT,
            STATION,
            &profile(),
        )
        .expect("create case file");
        let volunteers = VOLUNTEERS
            .iter()
            .map(|u| volunteer(*u, &[resident]))
            .collect();
        Builder {
            doc: file.into_doc(),
            visits: 0,
            seed,
            volunteers,
        }
    }

    /// Logs visits until the file holds `total`, eight hours apart, ending a day ago.
    fn grow_to(&mut self, total: usize, span: usize) {
        while self.visits < total {
            let turn = self.visits % VOLUNTEERS.len();
            let doc = std::mem::take(&mut self.doc);
            let mut file = CaseFile::from_doc(doc.with_actor(actor(VOLUNTEER_ACTORS[turn])))
                .expect("case file");
            let age = i64::try_from(span - self.visits).expect("small") * 8 * HOUR;
            let visit = VisitId(id(self.seed + self.visits as u128));
            file.log_visit(
                &editor(&self.volunteers[turn]),
                visit,
                &record(NOW - 24 * HOUR - age),
            )
            .expect("log visit");
            self.doc = file.into_doc();
            self.visits += 1;
        }
    }
}

/// The baseline for `log_visit`: the same visit written with a plain Automerge
/// transaction, without the rules check. Writes exactly the operations `log_visit`
/// writes for a new visit, in the same order, with the same commit message and time, so
/// the change is byte-identical (asserted in `main`).
fn raw_log_visit(doc: &mut Automerge, user: UserId, visit: VisitId, r: &VisitRecord) -> ChangeHash {
    fn bytes(u: &Uuid) -> ScalarValue {
        ScalarValue::Bytes(u.as_bytes().to_vec())
    }
    fn put(tx: &mut Transaction<'_>, obj: &ObjId, key: &str, value: ScalarValue) {
        tx.put(obj, key, value).expect("put");
    }
    let mut tx = doc.transaction();
    let visits = match tx.get(ROOT, "visits").expect("read") {
        Some((Value::Object(ObjType::Map), visits)) => visits,
        _ => panic!("a case file has a visits map"),
    };
    let v = tx
        .put_object(&visits, visit.to_string().as_str(), ObjType::Map)
        .expect("put visit");
    put(&mut tx, &v, "volunteer", bytes(&user.0));
    put(&mut tx, &v, "project", bytes(&r.project.0));
    if let Some(unit) = r.unit {
        put(&mut tx, &v, "unit", bytes(&unit.0));
    }
    put(
        &mut tx,
        &v,
        "started_at",
        ScalarValue::Timestamp(r.started_at),
    );
    put(&mut tx, &v, "ended_at", ScalarValue::Timestamp(r.ended_at));
    let list = tx
        .put_object(&v, "services", ObjType::List)
        .expect("services");
    for (i, service) in r.services.iter().enumerate() {
        tx.insert(&list, i, bytes(&service.0)).expect("service");
    }
    let c = tx
        .put_object(&v, "condition", ObjType::Map)
        .expect("condition");
    put(
        &mut tx,
        &c,
        "wellbeing",
        r.condition.wellbeing.code().into(),
    );
    for (key, value) in [
        ("systolic", r.condition.systolic),
        ("diastolic", r.condition.diastolic),
        ("blood_sugar_dmmol", r.condition.blood_sugar_dmmol),
    ] {
        if let Some(n) = value {
            put(&mut tx, &c, key, ScalarValue::Int(n));
        }
    }
    if !r.condition.remarks.is_empty() {
        put(&mut tx, &c, "remarks", r.condition.remarks.as_str().into());
    }
    let list = tx
        .put_object(&v, "hazards", ObjType::List)
        .expect("hazards");
    for (i, h) in r.hazards.iter().enumerate() {
        let m = tx.insert_object(&list, i, ObjType::Map).expect("hazard");
        put(&mut tx, &m, "type", bytes(&h.hazard_type.0));
        put(&mut tx, &m, "severity", h.severity.code().into());
        put(
            &mut tx,
            &m,
            "fixed_on_spot",
            ScalarValue::Boolean(h.fixed_on_spot),
        );
        if !h.note.is_empty() {
            put(&mut tx, &m, "note", h.note.as_str().into());
        }
    }
    put(&mut tx, &v, "notes", r.notes.as_str().into());
    put(
        &mut tx,
        &v,
        "follow_up_needed",
        ScalarValue::Boolean(r.follow_up_needed),
    );
    let (hash, _) = tx.commit_with(
        CommitOptions::default()
            .with_message(user.to_string())
            .with_time(NOW),
    );
    hash.expect("a change")
}

// ---- our protocol --------------------------------------------------------------------

/// Round trips and bytes of one exchange.
#[derive(Clone, Copy, Debug, Default)]
struct Wire {
    round_trips: usize,
    messages: usize,
    request_bytes: usize,
    response_bytes: usize,
}

impl Wire {
    fn total(&self) -> usize {
        self.request_bytes + self.response_bytes
    }

    fn add(&mut self, other: Wire) {
        self.round_trips += other.round_trips;
        self.messages += other.messages;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
    }
}

/// A phone: its replica and the identity the server authenticated.
struct Phone {
    replica: Replica<MemoryReplicaStore>,
    auth: DeviceAuth,
}

impl Phone {
    fn new(store: MemoryReplicaStore, principal: Principal, actor_byte: u8) -> Self {
        let a = actor(actor_byte);
        Phone {
            replica: Replica::new(store, a.clone()),
            auth: DeviceAuth {
                device: DeviceId(Uuid::from_u128(0xDE00 + u128::from(actor_byte))),
                principal,
                actors: vec![a],
            },
        }
    }

    fn settled(&self, report: &SyncReport) -> bool {
        !report.more
            && report.repairing.is_empty()
            && !self.replica.store().need_held().expect("need_held")
            && self.replica.pending_changes().expect("pending") == 0
    }

    /// Syncs through the encoded envelope until the phone has nothing pending and the
    /// server nothing more, counting round trips and bytes.
    fn sync(&mut self, server: &MemoryServerStore) -> (Wire, Vec<SyncReport>) {
        let mut wire = Wire::default();
        let mut reports = Vec::new();
        for _ in 0..50 {
            let request = self.replica.prepare(NOW).expect("prepare").encode();
            let response = pollster::block_on(handle_sync_bytes(
                server,
                &self.auth,
                &request,
                NOW,
                Limits::default(),
            ))
            .expect("server step");
            wire.round_trips += 1;
            wire.messages += 2;
            wire.request_bytes += request.len();
            wire.response_bytes += response.len();
            let response = SyncResponse::decode(&response).expect("decode response");
            let report = self.replica.apply(&response).expect("apply");
            let done = self.settled(&report);
            reports.push(report);
            if done {
                return (wire, reports);
            }
        }
        panic!("our sync did not settle in 50 round trips: {reports:#?}");
    }

    fn heads(&self, doc: DocId) -> Vec<ChangeHash> {
        let bytes = self
            .replica
            .store()
            .load_doc(doc)
            .expect("load")
            .expect("held");
        let mut heads = Automerge::load(&bytes).expect("loads").get_heads();
        heads.sort();
        heads
    }
}

/// A server store holding `docs`, recording that `device` holds `held`: the state right
/// after the phone's last sync, rebuilt cheaply for every timed iteration.
fn seeded_server(
    docs: &[(DocId, &[u8])],
    held: Option<(DeviceId, &BTreeSet<DocId>)>,
) -> MemoryServerStore {
    let server = MemoryServerStore::new();
    for (doc, saved) in docs {
        server.put_doc(*doc, place(), saved.to_vec());
    }
    if let Some((device, held)) = held {
        pollster::block_on(server.set_device_docs(device, held)).expect("device docs");
    }
    server
}

fn server_heads(server: &MemoryServerStore, doc: DocId) -> Vec<ChangeHash> {
    let mut heads = pollster::block_on(server.load(doc))
        .expect("load")
        .expect("stored")
        .get_heads();
    heads.sort();
    heads
}

// ---- the baseline: Automerge's sync protocol, stateless server -----------------------

/// One request on a stateless server: load the stored document, receive the message
/// with a fresh `State`, save if it changed, answer.
fn baseline_server_step(stored: &[u8], request: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut doc = Automerge::load(stored).expect("stored document loads");
    let before = doc.get_heads();
    let mut state = State::new();
    let message = Message::decode(request).expect("request decodes");
    doc.receive_sync_message(&mut state, message)
        .expect("receive");
    let saved = (doc.get_heads() != before).then(|| doc.save());
    let reply = doc.generate_sync_message(&mut state).map(|m| m.encode());
    (reply, saved)
}

/// Runs Automerge's sync protocol between a phone (which keeps `phone_state` across the
/// exchange) and a stateless server until the phone has nothing more to send. Returns
/// the wire figures and the phone's requests, in order.
fn baseline_exchange(
    phone: &mut Automerge,
    phone_state: &mut State,
    stored: &mut Vec<u8>,
) -> (Wire, Vec<Vec<u8>>) {
    let mut wire = Wire::default();
    let mut requests = Vec::new();
    while let Some(message) = phone.generate_sync_message(phone_state) {
        assert!(wire.round_trips < 50, "the baseline did not settle");
        let request = message.encode();
        let (reply, saved) = baseline_server_step(stored, &request);
        wire.round_trips += 1;
        wire.messages += 1;
        wire.request_bytes += request.len();
        requests.push(request);
        if let Some(saved) = saved {
            *stored = saved;
        }
        if let Some(reply) = reply {
            wire.messages += 1;
            wire.response_bytes += reply.len();
            phone
                .receive_sync_message(phone_state, Message::decode(&reply).expect("reply"))
                .expect("phone receives");
        }
    }
    let mut ours = phone.get_heads();
    let mut theirs = Automerge::load(stored).expect("loads").get_heads();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "the baseline exchange did not converge");
    (wire, requests)
}

/// The phone's sync state in steady state: after a completed sync with the server,
/// persisted the way Automerge documents for reuse across connections
/// (`State::encode`, which keeps the shared heads).
fn baseline_steady_state(phone: &Automerge, stored: &[u8]) -> (State, State) {
    let mut phone = phone.clone();
    let mut stored = stored.to_vec();
    let mut state = State::new();
    baseline_exchange(&mut phone, &mut state, &mut stored);
    let persisted = State::decode(&state.encode()).expect("state decodes");
    (persisted, state)
}

// ---- measurement 1: one new visit ----------------------------------------------------

struct NewVisitCase {
    visits: usize,
    doc: DocId,
    /// The stored (and phone's) document before the new visit.
    saved: Vec<u8>,
    /// The phone's replica store in steady state.
    phone_store: MemoryReplicaStore,
    held: BTreeSet<DocId>,
    /// Our request carrying the new visit (encoded).
    request: Vec<u8>,
    ours: Wire,
    baseline: Wire,
    /// The baseline's phone requests (for timing the server side).
    baseline_requests: Vec<Vec<u8>>,
    /// The baseline when the phone keeps its in-memory state from the previous exchange.
    baseline_in_memory: Wire,
}

fn new_visit_phone(store: MemoryReplicaStore, resident: ResidentId) -> Phone {
    Phone::new(
        store,
        volunteer(VOLUNTEERS[0], &[resident]),
        VOLUNTEER_ACTORS[0],
    )
}

fn new_visit_case(builder: &Builder, resident: ResidentId) -> NewVisitCase {
    let doc: DocId = resident.into();
    let saved = builder.doc.save();
    let visits = builder.visits;

    // Steady state: the server holds the case file, the phone got it and is current.
    let server = seeded_server(&[(doc, &saved)], None);
    let mut phone = new_visit_phone(MemoryReplicaStore::new(), resident);
    let (_, reports) = phone.sync(&server);
    assert_eq!(reports.iter().map(|r| r.received_changes).sum::<usize>(), 1);
    let phone_store = phone.replica.store().clone();
    let held: BTreeSet<DocId> =
        pollster::block_on(server.device_docs(phone.auth.device)).expect("device docs");
    assert_eq!(held, BTreeSet::from([doc]));

    // The phone logs one visit and syncs.
    let mut file = phone.replica.case_file(doc).expect("load").expect("held");
    let principal = phone.auth.principal.clone();
    let visit = VisitId(id(0xF1F1_0000 + visits as u128));
    file.log_visit(&editor(&principal), visit, &record(NOW - HOUR))
        .expect("log visit");
    phone.replica.save_case_file(&file).expect("save");
    assert_eq!(phone.replica.pending_changes().expect("pending"), 1);
    let request = phone.replica.prepare(NOW).expect("prepare").encode();
    let (ours, reports) = phone.sync(&server);
    assert!(
        reports.iter().any(|r| r.receipted == vec![doc]),
        "no receipt: {reports:#?}"
    );
    assert!(reports.iter().all(|r| r.rejections.is_empty()));
    assert!(
        phone
            .replica
            .unreceipted_visits(doc)
            .expect("unreceipted")
            .is_empty()
    );
    assert_eq!(phone.heads(doc), server_heads(&server, doc));
    assert!(server.quarantined().is_empty());

    // The baseline, on the same documents: the phone's copy with the same new visit,
    // the server's stored copy without it.
    let phone_doc = file.doc().clone();
    let (persisted, in_memory) = baseline_steady_state(&builder.doc, &saved);
    let mut stored = saved.clone();
    let (baseline, baseline_requests) =
        baseline_exchange(&mut phone_doc.clone(), &mut persisted.clone(), &mut stored);
    let mut stored = saved.clone();
    let (baseline_in_memory, _) =
        baseline_exchange(&mut phone_doc.clone(), &mut in_memory.clone(), &mut stored);

    NewVisitCase {
        visits,
        doc,
        saved,
        phone_store,
        held,
        request,
        ours,
        baseline,
        baseline_requests,
        baseline_in_memory,
    }
}

// ---- measurement 2: nothing new, 2,000 case files ------------------------------------

struct NothingNewCase {
    docs: Vec<(DocId, Vec<u8>)>,
    device: DeviceId,
    held: BTreeSet<DocId>,
    request: Vec<u8>,
    ours: Wire,
    baseline: Wire,
    /// Per document: the phone's requests (for timing the server side).
    baseline_requests: Vec<Vec<Vec<u8>>>,
    /// The baseline when the phone keeps its in-memory state from the previous exchange.
    baseline_in_memory: Wire,
}

fn nothing_new_case() -> NothingNewCase {
    let mut docs = Vec::with_capacity(MANY_DOCS);
    for n in 0..MANY_DOCS {
        let resident = ResidentId(id(0x1_0000 + n as u128));
        let mut b = Builder::new(resident, 0x100_0000 + (n as u128) * 16);
        b.grow_to(VISITS_PER_SMALL_DOC, VISITS_PER_SMALL_DOC);
        docs.push((DocId::from(resident), b.doc.save()));
    }
    let refs: Vec<(DocId, &[u8])> = docs.iter().map(|(d, s)| (*d, s.as_slice())).collect();
    let server = seeded_server(&refs, None);

    // Station staff's phone holds every case file of the station and is current.
    let mut phone = Phone::new(MemoryReplicaStore::new(), staff(), STAFF_ACTOR);
    let (first, _) = phone.sync(&server);
    assert_eq!(
        phone.replica.doc_ids().expect("ids").len(),
        MANY_DOCS,
        "initial sync: {first:?}"
    );
    let held = pollster::block_on(server.device_docs(phone.auth.device)).expect("held");
    assert_eq!(held.len(), MANY_DOCS);

    let request = phone.replica.prepare(NOW).expect("prepare").encode();
    let (ours, reports) = phone.sync(&server);
    assert!(
        reports
            .iter()
            .all(|r| r.received_changes == 0 && r.purged.is_empty()),
        "{reports:#?}"
    );

    // The baseline: one Automerge sync per document, stateless server, the phone's
    // state persisted from its previous sync.
    let mut baseline = Wire::default();
    let mut baseline_in_memory = Wire::default();
    let mut baseline_requests = Vec::with_capacity(MANY_DOCS);
    for (_, saved) in &docs {
        let phone_doc = Automerge::load(saved).expect("loads");
        let (mut persisted, mut in_memory) = baseline_steady_state(&phone_doc, saved);
        let mut stored = saved.clone();
        let (wire, requests) =
            baseline_exchange(&mut phone_doc.clone(), &mut persisted, &mut stored);
        baseline.add(wire);
        baseline_requests.push(requests);
        let mut stored = saved.clone();
        let (wire, _) = baseline_exchange(&mut phone_doc.clone(), &mut in_memory, &mut stored);
        baseline_in_memory.add(wire);
    }

    NothingNewCase {
        docs,
        device: phone.auth.device,
        held,
        request,
        ours,
        baseline,
        baseline_requests,
        baseline_in_memory,
    }
}

// ---- the report ----------------------------------------------------------------------

fn ratio(baseline: usize, ours: usize) -> String {
    if ours == 0 {
        "n/a".into()
    } else {
        format!("{:.1}×", baseline as f64 / ours as f64)
    }
}

fn print_report(cases: &[NewVisitCase], many: &NothingNewCase) {
    println!();
    println!("== sync-core wire figures (deterministic) ==");
    println!();
    println!(
        "1. One new visit, steady state (target for ours: 1 round trip, ≤ {TARGET_NEW_VISIT_BYTES} bytes)"
    );
    println!(
        "| visits | saved case file | ours RT | ours bytes (req + resp) | baseline RT | baseline bytes (req + resp) | ratio (bytes) | target met |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|:---:|");
    for c in cases {
        let met = c.ours.round_trips == 1 && c.ours.total() <= TARGET_NEW_VISIT_BYTES;
        println!(
            "| {} | {} B | {} | {} ({} + {}) | {} | {} ({} + {}) | {} | {} |",
            c.visits,
            c.saved.len(),
            c.ours.round_trips,
            c.ours.total(),
            c.ours.request_bytes,
            c.ours.response_bytes,
            c.baseline.round_trips,
            c.baseline.total(),
            c.baseline.request_bytes,
            c.baseline.response_bytes,
            ratio(c.baseline.total(), c.ours.total()),
            if met { "yes" } else { "NO" },
        );
    }
    println!();
    println!("   baseline variant, phone keeping its in-memory State from the previous exchange:");
    for c in cases {
        println!(
            "   {} visits: {} RT, {} bytes ({} + {})",
            c.visits,
            c.baseline_in_memory.round_trips,
            c.baseline_in_memory.total(),
            c.baseline_in_memory.request_bytes,
            c.baseline_in_memory.response_bytes,
        );
    }
    println!();
    println!(
        "2. Nothing new, phone holding {MANY_DOCS} case files (target for ours: 1 round trip, ≤ {TARGET_NOTHING_NEW_BYTES} bytes)"
    );
    println!("| | round trips | messages | request bytes | response bytes | total bytes |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, w) in [("ours", &many.ours), ("baseline", &many.baseline)] {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            w.round_trips,
            w.messages,
            w.request_bytes,
            w.response_bytes,
            w.total()
        );
    }
    let met = many.ours.round_trips == 1 && many.ours.total() <= TARGET_NOTHING_NEW_BYTES;
    println!(
        "   baseline variant, phone keeping its in-memory States: {} RT, {} messages, {} bytes",
        many.baseline_in_memory.round_trips,
        many.baseline_in_memory.messages,
        many.baseline_in_memory.total(),
    );
    println!(
        "   ratio (baseline/ours, bytes): {}; target met: {}",
        ratio(many.baseline.total(), many.ours.total()),
        if met { "yes" } else { "NO" }
    );
    println!();
}

fn assert_targets(cases: &[NewVisitCase], many: &NothingNewCase) {
    for c in cases {
        assert_eq!(
            c.ours.round_trips, 1,
            "one new visit at {} visits took {} round trips",
            c.visits, c.ours.round_trips
        );
        assert!(
            c.ours.total() <= TARGET_NEW_VISIT_BYTES,
            "one new visit at {} visits took {} bytes (target {TARGET_NEW_VISIT_BYTES})",
            c.visits,
            c.ours.total()
        );
    }
    assert_eq!(many.ours.round_trips, 1, "nothing-new sync round trips");
    assert!(
        many.ours.total() <= TARGET_NOTHING_NEW_BYTES,
        "nothing-new sync took {} bytes (target {TARGET_NOTHING_NEW_BYTES})",
        many.ours.total()
    );
}

// ---- timing --------------------------------------------------------------------------

fn bench_log_visit(c: &mut Criterion, files: &[(usize, CaseFile)]) {
    let visit = VisitId(id(0xBE7C_0000));
    let rec = record(NOW - HOUR);
    let mut group = c.benchmark_group("log_visit");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    for (visits, file) in files {
        let principal = volunteer(VOLUNTEERS[0], &[file.id()]);
        let file = CaseFile::from_doc(file.doc().clone().with_actor(actor(VOLUNTEER_ACTORS[0])))
            .expect("case file");
        group.bench_function(BenchmarkId::new("ours", format!("{visits}_visits")), |b| {
            // Every iteration logs the same new visit into a fresh copy of the file
            // (the copy is made outside the timed part).
            b.iter_batched(
                || file.clone(),
                |mut f| {
                    f.log_visit(&editor(&principal), visit, &rec)
                        .expect("log visit");
                    f
                },
                BatchSize::PerIteration,
            );
        });
        let raw = file.doc().clone();
        let user = principal.user;
        group.bench_function(
            BenchmarkId::new("baseline_raw_automerge", format!("{visits}_visits")),
            |b| {
                b.iter_batched(
                    || raw.clone(),
                    |mut doc| {
                        raw_log_visit(&mut doc, user, visit, &rec);
                        doc
                    },
                    BatchSize::PerIteration,
                );
            },
        );
    }
    group.finish();
}

/// The raw-Automerge baseline writes the very change `log_visit` writes.
fn assert_raw_matches(files: &[(usize, CaseFile)]) {
    let visit = VisitId(id(0xBE7C_0000));
    let rec = record(NOW - HOUR);
    for (visits, file) in files {
        let principal = volunteer(VOLUNTEERS[0], &[file.id()]);
        let doc = file.doc().clone().with_actor(actor(VOLUNTEER_ACTORS[0]));
        let mut ours = CaseFile::from_doc(doc.clone()).expect("case file");
        let logged = ours
            .log_visit(&editor(&principal), visit, &rec)
            .expect("log visit")
            .expect("a change");
        let mut raw = doc;
        let written = raw_log_visit(&mut raw, principal.user, visit, &rec);
        assert_eq!(
            logged, written,
            "at {visits} visits the raw-Automerge baseline writes a different change"
        );
    }
}

fn bench_server_new_visit(c: &mut Criterion, cases: &[NewVisitCase]) {
    let mut group = c.benchmark_group("server_one_new_visit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for case in cases {
        let phone = new_visit_phone(case.phone_store.clone(), ResidentId::from(case.doc));
        let device = phone.auth.device;
        group.bench_function(BenchmarkId::new("ours", case.visits), |b| {
            b.iter_batched(
                || seeded_server(&[(case.doc, &case.saved)], Some((device, &case.held))),
                |server| {
                    let response = pollster::block_on(handle_sync_bytes(
                        &server,
                        &phone.auth,
                        &case.request,
                        NOW,
                        Limits::default(),
                    ))
                    .expect("server step");
                    (server, response)
                },
                BatchSize::LargeInput,
            );
        });
        group.bench_function(BenchmarkId::new("baseline", case.visits), |b| {
            b.iter(|| {
                // Every round trip of the exchange, each on a stateless server.
                let mut stored = case.saved.clone();
                let mut replies = Vec::new();
                for request in &case.baseline_requests {
                    let (reply, saved) = baseline_server_step(&stored, request);
                    if let Some(saved) = saved {
                        stored = saved;
                    }
                    replies.push(reply);
                }
                black_box((stored, replies))
            });
        });
    }
    group.finish();
}

fn bench_server_nothing_new(c: &mut Criterion, many: &NothingNewCase) {
    let mut group = c.benchmark_group("server_nothing_new");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    let refs: Vec<(DocId, &[u8])> = many.docs.iter().map(|(d, s)| (*d, s.as_slice())).collect();
    let auth = DeviceAuth {
        device: many.device,
        principal: staff(),
        actors: vec![actor(STAFF_ACTOR)],
    };
    let server = seeded_server(&refs, Some((many.device, &many.held)));
    let name = format!("{MANY_DOCS}_docs");
    group.bench_function(BenchmarkId::new("ours", &name), |b| {
        b.iter(|| {
            pollster::block_on(handle_sync_bytes(
                &server,
                &auth,
                &many.request,
                NOW,
                Limits::default(),
            ))
            .expect("server step")
        });
    });
    group.bench_function(BenchmarkId::new("baseline", &name), |b| {
        b.iter(|| {
            let mut replies = 0usize;
            for ((_, saved), requests) in many.docs.iter().zip(&many.baseline_requests) {
                for request in requests {
                    let (reply, _) = baseline_server_step(saved, request);
                    replies += reply.map_or(0, |r| r.len());
                }
            }
            replies
        });
    });
    group.finish();
}

fn main() {
    let started = Instant::now();
    let resident = ResidentId(id(0x1));
    let mut builder = Builder::new(resident, 0x10_0000);
    let span = *HISTORY.iter().max().expect("history lengths");
    let mut cases = Vec::new();
    let mut files = Vec::new();
    for visits in HISTORY {
        builder.grow_to(visits, span);
        files.push((
            visits,
            CaseFile::from_doc(builder.doc.clone()).expect("case file"),
        ));
        cases.push(new_visit_case(&builder, resident));
    }
    let many = nothing_new_case();
    eprintln!(
        "fixtures built and exchanges counted in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    print_report(&cases, &many);
    assert_targets(&cases, &many);
    assert_raw_matches(&files);

    let mut c = Criterion::default().configure_from_args();
    bench_log_visit(&mut c, &files);
    bench_server_new_visit(&mut c, &cases);
    bench_server_nothing_new(&mut c, &many);
    c.final_summary();
}
