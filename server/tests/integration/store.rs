//! One conformance suite for the SQL store, run against SQLite and PostgreSQL.

use crate::backends::{TestStore, conformance};
use server::store::{SqlStore, StoreOptions};
use std::collections::BTreeSet;
use sync_core::automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use sync_core::doc::casefile::CaseFile;
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::server::place_of;
use sync_core::protocol::store::{Append, AppendOutcome, Quarantined, ServerStore};
use sync_core::rules::Editor;
use uuid::Uuid;

const NOW: Timestamp = 1_763_942_400_000;

/// The `n`th feed number (from 1) of appends all received at [`NOW`]: numbers start at
/// the receipt time in microseconds and count up from there.
const fn seq(n: u64) -> u64 {
    NOW as u64 * 1000 + n - 1
}
const DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0xD1));
const STATION_A: StationId = StationId(Uuid::from_u128(0x5A));
const STATION_B: StationId = StationId(Uuid::from_u128(0x5B));

fn staff() -> Principal {
    Principal {
        user: UserId(Uuid::from_u128(0xA0)),
        role: Role::Coordinator,
        scope: Scope::District(DISTRICT),
    }
}

fn case_file(n: u128, station: StationId) -> CaseFile {
    case_file_named(n, station, &format!("居民 {n}"))
}

fn case_file_named(n: u128, station: StationId, name: &str) -> CaseFile {
    let p = staff();
    let profile = Profile {
        name: name.to_owned(),
        address: String::new(),
        phone: String::new(),
        birth_year: Some(1940),
        living_situation: None,
        emergency_contact: String::new(),
        needs: String::new(),
        risk_level: None,
        visit_every_days: Some(7),
    };
    let editor = Editor {
        principal: &p,
        now: NOW,
    };
    CaseFile::create(
        ActorId::from(vec![1; 16]),
        &editor,
        ResidentId(Uuid::from_u128(n)),
        DISTRICT,
        station,
        &profile,
    )
    .unwrap()
}

fn visit(file: &mut CaseFile, n: u128, notes_len: usize) {
    let p = staff();
    let editor = Editor {
        principal: &p,
        now: NOW,
    };
    let record = VisitRecord {
        notes: "读".repeat(notes_len),
        ..visit_record()
    };
    file.log_visit(&editor, VisitId(Uuid::from_u128(0xF000 + n)), &record)
        .unwrap();
}

/// A short visit with nothing in it.
fn visit_record() -> VisitRecord {
    VisitRecord {
        project: ProjectId(Uuid::from_u128(0x90)),
        unit: None,
        started_at: NOW - 3_600_000,
        ended_at: NOW - 1_800_000,
        services: vec![],
        condition: Condition {
            wellbeing: Wellbeing::Good,
            systolic: None,
            diastolic: None,
            blood_sugar_dmmol: None,
            remarks: String::new(),
        },
        hazards: vec![],
        notes: String::new(),
        follow_up_needed: false,
    }
}

/// Appends everything in `after` beyond `before`.
async fn append(
    store: &SqlStore,
    doc: DocId,
    before: &[ChangeHash],
    after: &Automerge,
) -> AppendOutcome {
    try_append(store, doc, before, after).await.unwrap()
}

async fn try_append(
    store: &SqlStore,
    doc: DocId,
    before: &[ChangeHash],
    after: &Automerge,
) -> Result<AppendOutcome, server::store::StoreError> {
    let changes = after.get_changes(before);
    store
        .append(Append {
            doc,
            place: place_of(after).unwrap(),
            expected_heads: before,
            changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect(),
            hashes: changes.iter().map(|c| c.hash()).collect(),
            after,
            device: Some(DeviceId(Uuid::from_u128(0xDE))),
            user: Some(staff().user),
            received_at: NOW,
        })
        .await
}

fn sorted(mut h: Vec<ChangeHash>) -> Vec<ChangeHash> {
    h.sort();
    h
}

async fn an_empty_store_holds_nothing(t: TestStore) {
    let s = &t.store;
    let doc = DocId(Uuid::from_u128(1));
    assert!(s.load(doc).await.unwrap().is_none());
    assert_eq!(s.feed_head().await.unwrap(), 0);
    assert!(
        s.docs_in_scope(&Scope::District(DISTRICT))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.device_docs(DeviceId(Uuid::from_u128(2)))
            .await
            .unwrap()
            .is_empty()
    );
    let page = s.feed_since(0, &BTreeSet::from([doc]), 10).await.unwrap();
    assert!(page.entries.is_empty());
    assert_eq!(page.complete_to, u64::MAX);
}

async fn appended_documents_load_back_across_processes(t: TestStore) {
    let s = &t.store;
    let mut file = case_file(1, STATION_A);
    let id: DocId = file.id().into();
    assert_eq!(
        append(s, id, &[], file.doc()).await,
        AppendOutcome::Stored(seq(1))
    );
    let before = file.doc().get_heads();
    visit(&mut file, 1, 10);
    assert_eq!(
        append(s, id, &before, file.doc()).await,
        AppendOutcome::Stored(seq(2))
    );

    let loaded = s.load(id).await.unwrap().unwrap();
    assert_eq!(sorted(loaded.get_heads()), sorted(file.doc().get_heads()));
    // A second handle (another server process) has an empty cache and reads SQL.
    let other = SqlStore::connect(&t.url, StoreOptions::default())
        .await
        .unwrap();
    let fresh = other.load(id).await.unwrap().unwrap();
    assert_eq!(
        CaseFile::from_doc(fresh).unwrap().hydrate().unwrap(),
        file.hydrate().unwrap()
    );
    assert_eq!(other.feed_head().await.unwrap(), seq(2));
}

async fn a_stale_append_is_refused_and_stores_nothing(t: TestStore) {
    let s = &t.store;
    let mut file = case_file(1, STATION_A);
    let id: DocId = file.id().into();
    append(s, id, &[], file.doc()).await;
    let base = file.doc().get_heads();
    let mut a =
        CaseFile::from_doc(file.doc().fork().with_actor(ActorId::from(vec![2; 16]))).unwrap();
    visit(&mut file, 1, 5);
    visit(&mut a, 2, 5);
    assert_eq!(
        append(s, id, &base, file.doc()).await,
        AppendOutcome::Stored(seq(2))
    );
    // `a` was checked against the old heads: another writer got there first.
    assert_eq!(
        append(s, id, &base, a.doc()).await,
        AppendOutcome::HeadsMoved
    );
    // A "new" document that already exists.
    let other = case_file(1, STATION_A);
    assert_eq!(
        append(s, id, &[], other.doc()).await,
        AppendOutcome::HeadsMoved
    );
    // Heads for a document that does not exist.
    let ghost = case_file(9, STATION_A);
    assert_eq!(
        append(s, ghost.id().into(), &base, ghost.doc()).await,
        AppendOutcome::HeadsMoved
    );
    assert_eq!(s.feed_head().await.unwrap(), seq(2));
    let stored = s.load(id).await.unwrap().unwrap();
    assert_eq!(sorted(stored.get_heads()), sorted(file.doc().get_heads()));
}

async fn concurrent_writers_of_one_document_serialise(t: TestStore) {
    let s = std::sync::Arc::new(t);
    let file = case_file(1, STATION_A);
    let id: DocId = file.id().into();
    append(&s, id, &[], file.doc()).await;
    let base = file.doc().get_heads();
    let mut tasks = Vec::new();
    for n in 0..6u8 {
        let s = s.clone();
        let mut mine = CaseFile::from_doc(
            file.doc()
                .fork()
                .with_actor(ActorId::from(vec![10 + n; 16])),
        )
        .unwrap();
        visit(&mut mine, u128::from(n), 5);
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            append(&s, id, &base, mine.doc()).await
        }));
    }
    let mut stored = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), AppendOutcome::Stored(_)) {
            stored += 1;
        }
    }
    assert_eq!(stored, 1, "exactly one writer wins against the same heads");
    assert_eq!(s.feed_head().await.unwrap(), seq(2));
}

async fn concurrent_appends_get_gap_free_feed_numbers(t: TestStore) {
    let s = std::sync::Arc::new(t);
    let mut tasks = Vec::new();
    for n in 0..8u128 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let file = case_file(100 + n, STATION_A);
            append(&s, file.id().into(), &[], file.doc()).await
        }));
    }
    let mut seqs = BTreeSet::new();
    for t in tasks {
        match t.await.unwrap() {
            AppendOutcome::Stored(seq) => assert!(seqs.insert(seq)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seqs, (1..=8).map(seq).collect());
    let all: BTreeSet<DocId> = (0..8).map(|n| DocId(Uuid::from_u128(100 + n))).collect();
    let page = s.feed_since(0, &all, 100).await.unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=8).map(seq).collect::<Vec<_>>()
    );
    assert!(s.feed_contains(seq(8)).await.unwrap());
    assert!(!s.feed_contains(seq(9)).await.unwrap());
    assert!(!s.feed_contains(7).await.unwrap());
    // The head and the cursor's entry in one read: a cursor below the head that names
    // no entry is the one a phone of a restored server holds.
    let head = seq(8);
    assert_eq!(s.feed_head_holding(seq(3)).await.unwrap(), (head, true));
    assert_eq!(s.feed_head_holding(7).await.unwrap(), (head, false));
    assert_eq!(s.feed_head_holding(0).await.unwrap(), (head, true));
    assert_eq!(s.feed_head_holding(head).await.unwrap(), (head, true));
    assert_eq!(s.feed_head_holding(seq(9)).await.unwrap(), (head, true));
    assert_eq!(s.feed_head_holding(u64::MAX).await.unwrap(), (head, true));
}

/// Many writers at once (SQLite commits them in groups): new documents, contenders for
/// one document, and a stale writer, all at the same moment. Every append gets the
/// answer that matches what is stored, and the feed has no gap.
async fn a_crowd_of_appends_stores_exactly_what_it_answers(t: TestStore) {
    let s = std::sync::Arc::new(t);
    let shared = case_file(1, STATION_A);
    let shared_id: DocId = shared.id().into();
    append(&s, shared_id, &[], shared.doc()).await;
    let base = shared.doc().get_heads();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40u128 {
        let s = s.clone();
        let (shared, base) = (shared.doc().clone(), base.clone());
        tasks.spawn(async move {
            match n % 4 {
                // A new document of its own.
                0 | 1 => {
                    let file = case_file(1000 + n, STATION_B);
                    let id = file.id().into();
                    (id, None, append(&s, id, &[], file.doc()).await)
                }
                // One of ten contenders with a visit for the shared document.
                2 => {
                    let mut mine =
                        CaseFile::from_doc(shared.fork().with_actor(ActorId::from(vec![
                            n as u8
                                + 10;
                            16
                        ])))
                        .unwrap();
                    visit(&mut mine, n, 5);
                    let heads = mine.doc().get_heads();
                    (
                        shared_id,
                        Some(heads),
                        append(&s, shared_id, &base, mine.doc()).await,
                    )
                }
                // A "new" document that already exists.
                _ => {
                    let again = case_file(1, STATION_A);
                    (
                        shared_id,
                        None,
                        append(&s, shared_id, &[], again.doc()).await,
                    )
                }
            }
        });
    }
    let mut seqs = BTreeSet::new();
    let mut winners = Vec::new();
    let mut new_docs = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let (doc, heads, outcome) = done.unwrap();
        match outcome {
            AppendOutcome::Stored(seq) => {
                assert!(seqs.insert(seq), "feed number {seq} given twice");
                match heads {
                    Some(h) => winners.push(h),
                    None => assert!(new_docs.insert(doc), "{doc} stored twice as new"),
                }
            }
            AppendOutcome::HeadsMoved => assert_eq!(doc, shared_id),
        }
    }
    assert_eq!(new_docs.len(), 20, "every new document is stored");
    assert_eq!(
        winners.len(),
        1,
        "exactly one contender wins against the same heads"
    );
    assert_eq!(seqs, (2..=22).map(seq).collect(), "the feed has no gap");
    let stored = s.load(shared_id).await.unwrap().unwrap();
    assert_eq!(sorted(stored.get_heads()), sorted(winners.remove(0)));
    for doc in &new_docs {
        assert!(s.load(*doc).await.unwrap().is_some());
    }
    let report = s.check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.documents, 21);
}

async fn chunks_compact_into_snapshots_without_loss(t: TestStore) {
    let s = &t.store;
    let mut file = case_file(1, STATION_A);
    let id: DocId = file.id().into();
    append(s, id, &[], file.doc()).await;
    // ~3 KB per visit: the chunks pass 64 KB several times over.
    for n in 0..60 {
        let before = file.doc().get_heads();
        visit(&mut file, n, 1_000);
        assert!(matches!(
            append(s, id, &before, file.doc()).await,
            AppendOutcome::Stored(_)
        ));
    }
    let other = SqlStore::connect(&t.url, StoreOptions::default())
        .await
        .unwrap();
    let fresh = CaseFile::from_doc(other.load(id).await.unwrap().unwrap()).unwrap();
    assert_eq!(fresh.hydrate().unwrap().visits.len(), 60);
    assert_eq!(fresh.hydrate().unwrap(), file.hydrate().unwrap());
}

async fn scopes_select_their_documents(t: TestStore) {
    let s = &t.store;
    for (n, station) in [(1, STATION_A), (2, STATION_A), (3, STATION_B)] {
        let f = case_file(n, station);
        append(s, f.id().into(), &[], f.doc()).await;
    }
    let other_district = {
        let mut p = staff();
        p.scope = Scope::District(DistrictId(Uuid::from_u128(0xD2)));
        p
    };
    let ids = |ns: &[u128]| {
        ns.iter()
            .map(|n| DocId(Uuid::from_u128(*n)))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        s.docs_in_scope(&Scope::District(DISTRICT)).await.unwrap(),
        ids(&[1, 2, 3])
    );
    assert!(
        s.docs_in_scope(&other_district.scope)
            .await
            .unwrap()
            .is_empty()
    );
    let station_a = Scope::Stations {
        district: DISTRICT,
        stations: BTreeSet::from([STATION_A]),
    };
    assert_eq!(s.docs_in_scope(&station_a).await.unwrap(), ids(&[1, 2]));
    let volunteer = Scope::Residents {
        district: DISTRICT,
        residents: [3, 7]
            .into_iter()
            .map(|n| ResidentId(Uuid::from_u128(n)))
            .collect(),
    };
    assert_eq!(s.docs_in_scope(&volunteer).await.unwrap(), ids(&[3]));
    // A volunteer's residents are looked up by id; one of another district's
    // volunteers naming them gets nothing.
    let elsewhere = Scope::Residents {
        district: DistrictId(Uuid::from_u128(0xD2)),
        residents: [1, 3]
            .into_iter()
            .map(|n| ResidentId(Uuid::from_u128(n)))
            .collect(),
    };
    assert!(s.docs_in_scope(&elsewhere).await.unwrap().is_empty());
}

async fn the_feed_pages_by_window_and_limit(t: TestStore) {
    let s = &t.store;
    let mut files: Vec<CaseFile> = (1..=3).map(|n| case_file(n, STATION_A)).collect();
    for f in &files {
        append(s, f.id().into(), &[], f.doc()).await;
    }
    for round in 0..3 {
        for f in files.iter_mut() {
            let before = f.doc().get_heads();
            visit(f, round, 5);
            append(s, f.id().into(), &before, f.doc()).await;
        }
    }
    // 12 entries: docs 1,2,3 created (1-3), then visits round-robin (4-12). A phone
    // holding one document reads its entries by document.
    let only_2 = BTreeSet::from([DocId(Uuid::from_u128(2))]);
    let page = s.feed_since(0, &only_2, 100).await.unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![seq(2), seq(5), seq(8), seq(11)]
    );
    assert_eq!(page.complete_to, u64::MAX);
    let page = s.feed_since(seq(2), &only_2, 2).await.unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![seq(5), seq(8)]
    );
    assert_eq!(
        page.complete_to,
        seq(8),
        "complete only as far as it returned"
    );
    let first = &page.entries[0];
    assert_eq!(first.hashes.len(), 1);
    assert!(
        files[1]
            .doc()
            .get_change_by_hash(&first.hashes[0])
            .is_some()
    );

    // Read by document or in a window wide enough, the same entries.
    let windowed = SqlStore::connect(
        &t.url,
        StoreOptions {
            feed_by_doc_max: 0,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let two = BTreeSet::from([DocId(Uuid::from_u128(1)), DocId(Uuid::from_u128(3))]);
    for (cursor, limit) in [(0, 100), (seq(3), 100), (seq(3), 3), (seq(12), 100)] {
        let listed = |p: sync_core::protocol::store::FeedPage| {
            let entries: Vec<_> = p
                .entries
                .iter()
                .map(|e| (e.seq, e.doc, e.hashes.clone()))
                .collect();
            (entries, p.complete_to)
        };
        assert_eq!(
            listed(s.feed_since(cursor, &two, limit).await.unwrap()),
            listed(windowed.feed_since(cursor, &two, limit).await.unwrap()),
            "from {cursor}, at most {limit}"
        );
    }

    // A narrow window: the store says how far it looked.
    let narrow = narrow_store(&t).await;
    let page = narrow.feed_since(0, &only_2, 100).await.unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![seq(2)]
    );
    assert_eq!(page.complete_to, seq(4));
}

/// A phone that holds nothing yet (a new phone, or every resident new to it) does not
/// page through the district's feed: its first sync ends in one exchange with the
/// cursor at the head, whatever else the feed holds.
async fn a_new_phone_skips_a_feed_it_holds_nothing_of(t: TestStore) {
    use sync_core::protocol::envelope::SyncRequest;
    use sync_core::protocol::server::{DeviceAuth, Limits, handle_sync};
    // The store scans four feed entries a request, and station B's twelve case files
    // with a visit each fill 24.
    let narrow = narrow_store(&t).await;
    for n in 1..=12 {
        let mut f = case_file(n, STATION_B);
        append(&narrow, f.id().into(), &[], f.doc()).await;
        let before = f.doc().get_heads();
        visit(&mut f, n, 5);
        append(&narrow, f.id().into(), &before, f.doc()).await;
    }
    let mine = case_file(100, STATION_A);
    append(&narrow, mine.id().into(), &[], mine.doc()).await;
    let auth = DeviceAuth {
        device: DeviceId(Uuid::from_u128(0xDE2)),
        principal: Principal {
            user: UserId(Uuid::from_u128(0xA2)),
            role: Role::StationStaff,
            scope: Scope::Stations {
                district: DISTRICT,
                stations: BTreeSet::from([STATION_A]),
            },
        },
        actors: vec![],
    };
    let first = SyncRequest {
        held: Some(Vec::new()),
        clock: NOW,
        ..SyncRequest::default()
    };
    let response = handle_sync(&narrow, &auth, &first, NOW, Limits::default())
        .await
        .unwrap();
    let delivered: Vec<DocId> = response.docs.iter().map(|d| d.doc).collect();
    assert_eq!(delivered, vec![DocId::from(mine.id())]);
    assert!(!response.more, "one exchange: {response:?}");
    assert_eq!(response.cursor, narrow.feed_head().await.unwrap());

    // The next sync carries on from the head: station B's later visits are not its
    // business, station A's are.
    let mut other = case_file(3, STATION_B);
    let loaded = narrow.load(other.id().into()).await.unwrap().unwrap();
    other = CaseFile::from_doc(loaded).unwrap();
    let before = other.doc().get_heads();
    visit(&mut other, 0x300, 5);
    append(&narrow, other.id().into(), &before, other.doc()).await;
    let next = SyncRequest {
        cursor: response.cursor,
        held: Some(vec![DocId::from(mine.id())]),
        clock: NOW,
        ..SyncRequest::default()
    };
    let response = handle_sync(&narrow, &auth, &next, NOW, Limits::default())
        .await
        .unwrap();
    assert!(response.docs.is_empty() && !response.more, "{response:?}");
    assert_eq!(response.cursor, narrow.feed_head().await.unwrap());

    // A new phone whose first sync uploads a case file it created: the feed holds
    // nothing of that file but its own upload, so one exchange still ends it.
    let created = case_file(200, STATION_A);
    let coordinator = DeviceAuth {
        device: DeviceId(Uuid::from_u128(0xDE3)),
        principal: staff(),
        actors: vec![ActorId::from(vec![1; 16])],
    };
    let upload = SyncRequest {
        held: Some(Vec::new()),
        clock: NOW,
        uploads: vec![sync_core::protocol::envelope::DocUpload {
            doc: created.id().into(),
            heads: created
                .doc()
                .get_heads()
                .into_iter()
                .map(Into::into)
                .collect(),
            changes: created
                .doc()
                .get_changes(&[])
                .iter()
                .map(|c| sync_core::protocol::envelope::Bytes(c.raw_bytes().to_vec()))
                .collect(),
        }],
        ..SyncRequest::default()
    };
    let response = handle_sync(&narrow, &coordinator, &upload, NOW, Limits::default())
        .await
        .unwrap();
    assert_eq!(response.receipts.len(), 1, "{response:?}");
    assert!(response.rejections.is_empty(), "{response:?}");
    assert!(!response.more, "one exchange: {response:?}");
    assert_eq!(response.cursor, narrow.feed_head().await.unwrap());
    // Everything else in its district (13 case files) came whole.
    assert_eq!(response.docs.len(), 13);
}

/// A second store on `t`'s database that scans four feed entries a request.
async fn narrow_store(t: &TestStore) -> SqlStore {
    SqlStore::connect(
        &t.url,
        StoreOptions {
            feed_window: 4,
            // Every phone reads the feed in the window, however few documents it holds.
            feed_by_doc_max: 0,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn device_records_and_quarantine_persist(t: TestStore) {
    let s = &t.store;
    let device = DeviceId(Uuid::from_u128(0xDE));
    let a: BTreeSet<DocId> = [1, 2, 3]
        .into_iter()
        .map(|n| DocId(Uuid::from_u128(n)))
        .collect();
    let b: BTreeSet<DocId> = [2, 3, 4]
        .into_iter()
        .map(|n| DocId(Uuid::from_u128(n)))
        .collect();
    s.set_device_docs(device, &a).await.unwrap();
    assert_eq!(s.device_docs(device).await.unwrap(), a);
    s.set_device_docs(device, &b).await.unwrap();
    assert_eq!(s.device_docs(device).await.unwrap(), b);
    assert!(
        s.device_docs(DeviceId(Uuid::from_u128(0xDF)))
            .await
            .unwrap()
            .is_empty()
    );

    let item = Quarantined {
        doc: DocId(Uuid::from_u128(1)),
        district: DISTRICT,
        device,
        user: staff().user,
        code: "role_not_allowed".into(),
        reason: "a volunteer may not review a visit".into(),
        bytes: vec![vec![1, 2, 3], vec![]],
        at: NOW,
    };
    let first = s.quarantine(item.clone()).await.unwrap().unwrap();
    assert_eq!(s.quarantined(10).await.unwrap(), vec![item.clone()]);

    // Decisions reach only the device that sent the batch, and only once taken.
    assert!(s.decisions(device, &[first]).await.unwrap().is_empty());
    let decision = server::store::quarantine::QuarantineDecision {
        accepted: false,
        by: staff().user,
        at: NOW,
        note: "重复记录".into(),
    };
    assert!(s.decide_quarantined(first, &decision).await.unwrap());
    assert!(
        !s.decide_quarantined(first, &decision).await.unwrap(),
        "decided once"
    );
    let decided = s.decisions(device, &[first, 999_999]).await.unwrap();
    assert_eq!(decided.len(), 1);
    assert_eq!(
        (decided[0].accepted, decided[0].note.as_str()),
        (false, "重复记录")
    );
    let other = DeviceId(Uuid::from_u128(0xDF));
    assert!(s.decisions(other, &[first]).await.unwrap().is_empty());
    let row = s.quarantine_row(DISTRICT, first).await.unwrap().unwrap();
    assert_eq!(row.decision.unwrap().note, "重复记录");
    assert!(
        s.quarantine_row(DistrictId(Uuid::from_u128(0xD2)), first)
            .await
            .unwrap()
            .is_none(),
        "another district's coordinators do not see it"
    );

    // A batch holding all of an undecided one and more (the volunteer wrote again on
    // top of the refused changes) grows it in place, under its number; one that does
    // not hold all of it is a batch of its own.
    let writer = DeviceId(Uuid::from_u128(0xD3));
    let batch = |bytes: &[&[u8]]| Quarantined {
        device: writer,
        bytes: bytes.iter().map(|b| b.to_vec()).collect(),
        code: "out_of_scope".into(),
        ..item.clone()
    };
    let grows = s.quarantine(batch(&[b"a"])).await.unwrap().unwrap();
    let grown = Quarantined {
        reason: "later".into(),
        ..batch(&[b"a", b"b"])
    };
    assert_eq!(s.quarantine(grown.clone()).await.unwrap(), Some(grows));
    let apart = s.quarantine(batch(&[b"b", b"c"])).await.unwrap().unwrap();
    assert_ne!(apart, grows);
    let kept: Vec<_> = s
        .quarantined(1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|q| q.device == writer)
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept.iter()
            .any(|q| q.bytes == grown.bytes && q.reason == "later")
    );

    // One device's garbage is bounded per day; the next day, and other devices, are not
    // held back by it.
    let allowance = sync_core::protocol::store::QUARANTINE_PER_DAY;
    let nth = |n: u64| Quarantined {
        bytes: vec![n.to_le_bytes().to_vec()],
        ..item.clone()
    };
    for n in 1..allowance.batches {
        let number = s.quarantine(nth(n)).await.unwrap();
        assert!(number.is_some());
        // The same batch refused again, undecided: the same number, kept once.
        assert_eq!(s.quarantine(nth(n)).await.unwrap(), number);
    }
    assert_eq!(s.quarantine(nth(0)).await.unwrap(), None);
    let stored = s
        .quarantined(1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|q| q.device == item.device)
        .count();
    assert_eq!(stored as u64, allowance.batches);
    let tomorrow = Quarantined {
        at: NOW + 24 * 3_600_000 + 1,
        ..item.clone()
    };
    assert!(s.quarantine(tomorrow).await.unwrap().is_some());
    let elsewhere = Quarantined {
        device: other,
        ..item.clone()
    };
    assert!(s.quarantine(elsewhere).await.unwrap().is_some());
    // A batch past the byte allowance is refused even as the first of a day.
    let huge = Quarantined {
        device: DeviceId(Uuid::from_u128(0xE0)),
        bytes: vec![vec![0; usize::try_from(allowance.bytes).unwrap() + 1]],
        ..item
    };
    assert_eq!(s.quarantine(huge).await.unwrap(), None);
}

/// A crowd of new case files, one of which the database refuses (a trigger this test
/// installs refuses one name). Appends are committed in groups: the refused one fails
/// alone, and every other is stored, numbered without a gap and loads back.
async fn an_append_the_database_refuses_fails_alone(t: TestStore) {
    const BAD: u128 = 5;
    const REFUSED: &str = "拒收的居民";
    let trigger = if t.store.backend() == "postgres" {
        format!(
            "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.name = '{REFUSED}' THEN RAISE EXCEPTION 'refused by the test'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_one BEFORE INSERT ON resident_rows
               FOR EACH ROW EXECUTE FUNCTION refuse_one();"
        )
    } else {
        format!(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON resident_rows
               WHEN NEW.name = '{REFUSED}'
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        )
    };
    t.try_execute(&trigger).await.unwrap();
    let s = std::sync::Arc::new(t);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..24u128 {
        let s = s.clone();
        tasks.spawn(async move {
            let file = if n == BAD {
                case_file_named(3000 + n, STATION_A, REFUSED)
            } else {
                case_file(3000 + n, STATION_A)
            };
            let id: DocId = file.id().into();
            (n, id, try_append(&s, id, &[], file.doc()).await)
        });
    }
    let mut seqs = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let (n, id, outcome) = done.unwrap();
        match outcome {
            Ok(AppendOutcome::Stored(seq)) => {
                assert_ne!(n, BAD, "the refused case file was stored");
                assert!(seqs.insert(seq), "feed number {seq} given twice");
                assert!(s.load(id).await.unwrap().is_some(), "{n} does not load");
            }
            Err(e) => {
                assert_eq!(n, BAD, "{n} failed with the refused one: {e}");
                assert!(
                    s.load(id).await.unwrap().is_none(),
                    "a failed append stored"
                );
            }
            Ok(other) => panic!("{n}: {other:?}"),
        }
    }
    assert_eq!(seqs, (1..=23).map(seq).collect());
    let all: BTreeSet<DocId> = (0..24).map(|n| DocId(Uuid::from_u128(3000 + n))).collect();
    let page = s.feed_since(0, &all, 100).await.unwrap();
    assert_eq!(page.entries.len(), 23);
}

/// PostgreSQL's `text` takes no NUL character, which a pasted note can carry. A case
/// file holding NULs in its profile and in a visit's note and remarks is stored on both backends: the document keeps every character as written, and its
/// rows show each NUL as U+FFFD, so pages and reports read the same on either
/// backend and the projection check finds nothing to mend.
async fn text_holding_a_nul_is_stored_and_its_rows_show_a_replacement(t: TestStore) {
    let mut file = case_file_named(4000, STATION_A, "王\0阿姨");
    let p = staff();
    let editor = Editor {
        principal: &p,
        now: NOW,
    };
    let mut record = visit_record();
    record.notes = "量了血压\0".to_owned();
    record.condition.remarks = "\0".to_owned();
    let visit = VisitId(Uuid::from_u128(0xF4000));
    file.log_visit(&editor, visit, &record).unwrap();
    let id: DocId = file.id().into();
    assert!(matches!(
        append(&t.store, id, &[], file.doc()).await,
        AppendOutcome::Stored(_)
    ));

    let loaded = CaseFile::from_doc(t.store.load(id).await.unwrap().unwrap()).unwrap();
    let resident = loaded.hydrate().unwrap();
    assert_eq!(
        resident.profile.name, "王\0阿姨",
        "the document lost the NUL"
    );
    assert_eq!(resident.visits[0].record.notes, "量了血压\0");

    let rows = t
        .store
        .projection(ResidentId(Uuid::from_u128(4000)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows.resident.profile.name, "王\u{FFFD}阿姨");
    assert_eq!(rows.visits[0].notes, "量了血压\u{FFFD}");
    assert_eq!(rows.visits[0].remarks, "\u{FFFD}");
    let report = t.store.check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

conformance!(
    an_empty_store_holds_nothing,
    an_append_the_database_refuses_fails_alone,
    text_holding_a_nul_is_stored_and_its_rows_show_a_replacement,
    appended_documents_load_back_across_processes,
    a_stale_append_is_refused_and_stores_nothing,
    concurrent_writers_of_one_document_serialise,
    concurrent_appends_get_gap_free_feed_numbers,
    a_crowd_of_appends_stores_exactly_what_it_answers,
    chunks_compact_into_snapshots_without_loss,
    scopes_select_their_documents,
    the_feed_pages_by_window_and_limit,
    a_new_phone_skips_a_feed_it_holds_nothing_of,
    device_records_and_quarantine_persist,
);

/// PostgreSQL only: the store keeps its read connections between reads. When
/// PostgreSQL cuts them (a restart, an operator ending sessions), the next read is
/// still answered, on a new connection, not refused with the cut one's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_connection_was_cut_is_answered_on_a_new_one() {
    let t = crate::backends::postgres().await;
    let file = case_file(1, STATION_A);
    let id: DocId = file.id().into();
    append(&t.store, id, &[], file.doc()).await;
    assert_eq!(t.store.feed_head().await.unwrap(), seq(1));
    t.try_execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    assert_eq!(t.store.feed_head().await.unwrap(), seq(1));
    assert_eq!(
        t.store
            .device_docs(DeviceId(Uuid::from_u128(0xDE)))
            .await
            .unwrap(),
        BTreeSet::new()
    );
    t.store.ping().await.unwrap();
}
