//! The rules, one test per rule, from both sides:
//!
//! * the phone's typed operations on [`CaseFile`] and [`CatalogDoc`], which refuse a
//!   forbidden write with the exact [`Violation`] and leave the document as it was;
//! * an attacker's modified app, which skips those checks, writes raw Automerge
//!   changes and uploads them straight to the server, which must refuse them, store
//!   nothing and keep the bytes in quarantine.
//!
//! Writes the typed API cannot express (a forged author, a deleted visit, an edited
//! comment…) are checked with [`rules::check`] on a raw change as well, so that their
//! exact violation is pinned too.

use crate::support::*;
use std::collections::BTreeSet;
use std::fmt::Debug;
use sync_core::Error;
use sync_core::automerge::transaction::{CommitOptions, Transactable, Transaction};
use sync_core::automerge::{
    Automerge, AutomergeError, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
};
use sync_core::doc::casefile::{CaseFile, FieldValue, ProfileField};
use sync_core::doc::catalog::{CatalogDoc, EntryInput};
use sync_core::doc::schema::limits;
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::envelope::{
    Bytes, DocUpload, Receipt, SyncRequest, SyncResponse, held_digest, to_wire_hashes,
};
use sync_core::protocol::server::{DeviceAuth, Limits, codes, handle_sync};
use sync_core::protocol::store::{MemoryServerStore, ServerStore};
use sync_core::rules::{self, Editor, Violation};
use uuid::Uuid;

// ---- fixtures ------------------------------------------------------------------------

/// Station A; assigned to both volunteers.
const R1: ResidentId = ResidentId(Uuid::from_u128(0x1001));
/// Station A; assigned to nobody.
const R2: ResidentId = ResidentId(Uuid::from_u128(0x1002));
/// Not registered in the fixtures.
const R3: ResidentId = ResidentId(Uuid::from_u128(0x1003));
/// Volunteer 1's visit to R1.
const VISIT_1: VisitId = VisitId(Uuid::from_u128(0xF1));
/// Volunteer 2's visit to R1.
const VISIT_2: VisitId = VisitId(Uuid::from_u128(0xF2));
const NEW_VISIT: VisitId = VisitId(Uuid::from_u128(0xF9));
/// Opened by staff A on visit 1, owned by volunteer 1.
const TICKET: FollowUpId = FollowUpId(Uuid::from_u128(0xE1));
const NEW_TICKET: FollowUpId = FollowUpId(Uuid::from_u128(0xE9));
/// Volunteer 1's comment on the ticket.
const COMMENT: CommentId = CommentId(Uuid::from_u128(0xCC1));
const NEW_COMMENT: CommentId = CommentId(Uuid::from_u128(0xCC9));
const OTHER_DISTRICT: DistrictId = DistrictId(Uuid::from_u128(0xD2));
const ADMIN: UserId = UserId(Uuid::from_u128(0xAD));

fn vol1() -> Principal {
    volunteer(VOLUNTEER_1, &[R1])
}

fn vol2() -> Principal {
    volunteer(VOLUNTEER_2, &[R1])
}

fn staff_a() -> Principal {
    staff(STAFF_A, STATION_A)
}

fn staff_b() -> Principal {
    staff(STAFF_B, STATION_B)
}

fn admin() -> Principal {
    Principal {
        user: ADMIN,
        role: Role::Admin,
        scope: Scope::District(DISTRICT),
    }
}

fn text(n: usize) -> String {
    "字".repeat(n)
}

fn invalid(field: &str, reason: impl Into<String>) -> Violation {
    Violation::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A visit record starting at `start`, adjusted by `change`.
fn rec(start: Timestamp, change: impl FnOnce(&mut VisitRecord)) -> VisitRecord {
    let mut r = record(start);
    change(&mut r);
    r
}

/// R1's case file on one device: two visits, a ticket owned by volunteer 1 and a
/// comment by volunteer 1.
fn case_file() -> CaseFile {
    let (sa, p1, p2) = (staff_a(), vol1(), vol2());
    let mut f = new_case_file(&sa, actor(1), R1, STATION_A);
    f.log_visit(&editor(&p1), VISIT_1, &record(NOW - 5 * HOUR))
        .expect("log visit 1");
    f.log_visit(&editor(&p2), VISIT_2, &record(NOW - 3 * HOUR))
        .expect("log visit 2");
    f.open_follow_up(
        &editor(&sa),
        TICKET,
        Some(VISIT_1),
        "更换燃气软管",
        Some(VOLUNTEER_1),
        Some(NOW + 7 * DAY),
    )
    .expect("open ticket");
    f.comment_follow_up(&editor(&p1), TICKET, COMMENT, "已联系家属")
        .expect("comment");
    f
}

// ---- the local path ------------------------------------------------------------------

/// A typed document, for checking that a refused write left it as it was.
trait Typed {
    type Hydrated: PartialEq + Debug;
    fn automerge(&self) -> &Automerge;
    fn state(&self) -> Self::Hydrated;
}

impl Typed for CaseFile {
    type Hydrated = Resident;
    fn automerge(&self) -> &Automerge {
        self.doc()
    }
    fn state(&self) -> Resident {
        self.hydrate().expect("hydrate case file")
    }
}

impl Typed for CatalogDoc {
    type Hydrated = Catalog;
    fn automerge(&self) -> &Automerge {
        self.doc()
    }
    fn state(&self) -> Catalog {
        self.hydrate().expect("hydrate catalog")
    }
}

/// Runs a typed operation that must be refused; returns the violation after checking
/// that the document's heads and content did not move.
#[track_caller]
fn refused<D: Typed, T: Debug>(
    d: &mut D,
    op: impl FnOnce(&mut D) -> sync_core::Result<T>,
) -> Violation {
    let heads = d.automerge().get_heads();
    let before = d.state();
    match op(d) {
        Err(Error::Rejected(v)) => {
            assert_eq!(d.automerge().get_heads(), heads, "heads moved after {v:?}");
            assert_eq!(d.state(), before, "content changed after {v:?}");
            v
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Runs a typed operation that must be accepted and write one change.
#[track_caller]
fn accepted<D: Typed>(d: &mut D, op: impl FnOnce(&mut D) -> sync_core::Result<Option<ChangeHash>>) {
    match op(d) {
        Ok(Some(hash)) => assert_eq!(d.automerge().get_heads(), vec![hash]),
        other => panic!("expected the write to be accepted, got {other:?}"),
    }
}

// ---- raw writes ----------------------------------------------------------------------

type Tx<'a> = Transaction<'a>;
type Written = Result<(), AutomergeError>;
type RawWrite = fn(&mut Tx<'_>) -> Written;

fn bytes(u: Uuid) -> ScalarValue {
    ScalarValue::Bytes(u.as_bytes().to_vec())
}

fn ts(t: Timestamp) -> ScalarValue {
    ScalarValue::Timestamp(t)
}

/// The object at a path of map keys.
fn at<R: ReadDoc>(doc: &R, path: &[&str]) -> ObjId {
    let mut obj = ROOT;
    for key in path {
        obj = match doc.get(&obj, *key) {
            Ok(Some((Value::Object(_), id))) => id,
            other => panic!("no object at {key} of {path:?}: {other:?}"),
        };
    }
    obj
}

fn visit_obj<R: ReadDoc>(doc: &R, id: VisitId) -> ObjId {
    at(doc, &["visits", id.to_string().as_str()])
}

fn ticket_obj<R: ReadDoc>(doc: &R, id: FollowUpId) -> ObjId {
    at(doc, &["follow_ups", id.to_string().as_str()])
}

fn comment_obj<R: ReadDoc>(doc: &R, ticket: FollowUpId, id: CommentId) -> ObjId {
    at(
        doc,
        &[
            "follow_ups",
            ticket.to_string().as_str(),
            "comments",
            id.to_string().as_str(),
        ],
    )
}

/// A whole visit, written raw, leaving out the keys in `omit`.
fn raw_visit_without(
    tx: &mut Tx<'_>,
    id: VisitId,
    volunteer: UserId,
    start: Timestamp,
    omit: &[&str],
) -> Result<ObjId, AutomergeError> {
    let visits = at(&*tx, &["visits"]);
    let v = tx.put_object(&visits, id.to_string().as_str(), ObjType::Map)?;
    let fields = [
        ("volunteer", bytes(volunteer.0)),
        ("project", bytes(PROJECT.0)),
        ("started_at", ts(start)),
        ("ended_at", ts(start + HOUR)),
        ("notes", ScalarValue::Str("读报".into())),
    ];
    for (key, value) in fields {
        if !omit.contains(&key) {
            tx.put(&v, key, value)?;
        }
    }
    if !omit.contains(&"condition") {
        let c = tx.put_object(&v, "condition", ObjType::Map)?;
        if !omit.contains(&"wellbeing") {
            tx.put(&c, "wellbeing", "good")?;
        }
    }
    Ok(v)
}

fn raw_visit(
    tx: &mut Tx<'_>,
    id: VisitId,
    volunteer: UserId,
    start: Timestamp,
) -> Result<ObjId, AutomergeError> {
    raw_visit_without(tx, id, volunteer, start, &[])
}

fn raw_review(tx: &mut Tx<'_>, visit: VisitId, reviewer: UserId, status: &str) -> Written {
    let v = visit_obj(&*tx, visit);
    let r = tx.put_object(&v, "review", ObjType::Map)?;
    tx.put(&r, "status", status)?;
    tx.put(&r, "reviewer", bytes(reviewer.0))?;
    tx.put(&r, "comment", "")?;
    tx.put(&r, "at", ts(NOW))
}

fn raw_ticket(
    tx: &mut Tx<'_>,
    id: FollowUpId,
    opened_by: UserId,
    title: &str,
) -> Result<ObjId, AutomergeError> {
    let all = at(&*tx, &["follow_ups"]);
    let f = tx.put_object(&all, id.to_string().as_str(), ObjType::Map)?;
    tx.put(&f, "title", title)?;
    tx.put(&f, "opened_by", bytes(opened_by.0))?;
    tx.put(&f, "opened_at", ts(NOW))?;
    tx.put(&f, "status", "open")?;
    tx.put_object(&f, "comments", ObjType::Map)?;
    Ok(f)
}

fn raw_comment(
    tx: &mut Tx<'_>,
    ticket: FollowUpId,
    id: CommentId,
    author: UserId,
    body: &str,
) -> Result<ObjId, AutomergeError> {
    let all = at(
        &*tx,
        &["follow_ups", ticket.to_string().as_str(), "comments"],
    );
    let c = tx.put_object(&all, id.to_string().as_str(), ObjType::Map)?;
    tx.put(&c, "author", bytes(author.0))?;
    tx.put(&c, "at", ts(NOW))?;
    tx.put(&c, "text", body)?;
    Ok(c)
}

/// A new resident's case file, written raw (what `CaseFile::create` writes).
fn raw_case_file(tx: &mut Tx<'_>, id: ResidentId, station: StationId, by: UserId) -> Written {
    tx.put(ROOT, "schema", ScalarValue::Uint(2))?;
    tx.put(ROOT, "kind", "resident")?;
    tx.put(ROOT, "id", bytes(id.0))?;
    tx.put(ROOT, "district", bytes(DISTRICT.0))?;
    tx.put(ROOT, "station", bytes(station.0))?;
    tx.put(ROOT, "created_by", bytes(by.0))?;
    tx.put(ROOT, "created_at", ts(NOW))?;
    let p = tx.put_object(ROOT, "profile", ObjType::Map)?;
    tx.put(&p, "name", "李老伯")?;
    tx.put_object(ROOT, "visits", ObjType::Map)?;
    tx.put_object(ROOT, "follow_ups", ObjType::Map)?;
    Ok(())
}

fn put_notes(tx: &mut Tx<'_>, visit: VisitId, notes: &str) -> Written {
    let v = visit_obj(&*tx, visit);
    tx.put(&v, "notes", notes)
}

fn put_profile(tx: &mut Tx<'_>, key: &str, value: ScalarValue) -> Written {
    let p = at(&*tx, &["profile"]);
    tx.put(&p, key, value)
}

fn put_tombstone(tx: &mut Tx<'_>, visit: VisitId, value: bool) -> Written {
    let v = visit_obj(&*tx, visit);
    tx.put(&v, "tombstoned", value)
}

/// Commits `write` as one raw change with this message and time; returns the heads
/// before it.
fn commit_raw(
    doc: &mut Automerge,
    author: Option<&str>,
    time: Timestamp,
    write: impl FnOnce(&mut Tx<'_>) -> Written,
) -> Vec<ChangeHash> {
    let before = doc.get_heads();
    let mut tx = doc.transaction();
    write(&mut tx).expect("raw write");
    let options = match author {
        Some(a) => CommitOptions::default().with_message(a.to_owned()),
        None => CommitOptions::default(),
    };
    let (hash, _) = tx.commit_with(options.with_time(time));
    assert!(hash.is_some(), "the raw write wrote nothing");
    before
}

/// Runs the rules, as `principal`, on a raw change written on a copy of `doc` with
/// this message and time.
fn check_signed(
    doc: &Automerge,
    principal: &Principal,
    author: Option<&str>,
    time: Timestamp,
    write: impl FnOnce(&mut Tx<'_>) -> Written,
) -> Result<(), Violation> {
    let mut copy = doc.clone();
    let before = commit_raw(&mut copy, author, time, write);
    let changes = copy.get_changes(&before);
    rules::check(
        &Editor {
            principal,
            now: NOW,
        },
        &copy,
        &before,
        &changes,
    )
}

/// [`check_signed`], signed by the principal now.
fn check_raw(
    doc: &Automerge,
    principal: &Principal,
    write: impl FnOnce(&mut Tx<'_>) -> Written,
) -> Result<(), Violation> {
    let author = principal.user.to_string();
    check_signed(doc, principal, Some(&author), NOW, write)
}

#[track_caller]
fn assert_invalid(result: Result<(), Violation>, field: &str, reason_has: &str) {
    match result {
        Err(Violation::Invalid { field: f, reason }) => {
            assert_eq!(f, field, "{reason}");
            assert!(
                reason.contains(reason_has),
                "{reason:?} does not mention {reason_has:?}"
            );
        }
        other => panic!("expected {field} to be invalid, got {other:?}"),
    }
}

// ---- the server's side ---------------------------------------------------------------

/// A server holding the district catalog, R1 (two visits, a ticket and a comment) and
/// R2, and the honest phones that wrote them, all in sync.
struct World {
    server: MemoryServerStore,
    staff: Phone,
    v1: Phone,
    v2: Phone,
    coord: Phone,
}

fn world() -> World {
    let server = MemoryServerStore::new();
    let mut coord = Phone::new(9, coordinator());
    coord
        .replica
        .save_catalog(&new_catalog(actor(9)))
        .expect("save catalog");
    coord.sync(&server);
    let mut staff = Phone::new(1, staff_a());
    for r in [R1, R2] {
        let file = new_case_file(staff.principal(), actor(1), r, STATION_A);
        staff.replica.save_case_file(&file).expect("save case file");
    }
    staff.sync(&server);
    let mut v1 = Phone::new(2, vol1());
    let mut v2 = Phone::new(3, vol2());
    v1.sync(&server);
    v2.sync(&server);
    v1.edit(R1, |f, e| {
        f.log_visit(e, VISIT_1, &record(NOW - 5 * HOUR))
            .expect("log visit 1");
    });
    v1.sync(&server);
    v2.edit(R1, |f, e| {
        f.log_visit(e, VISIT_2, &record(NOW - 3 * HOUR))
            .expect("log visit 2");
    });
    v2.sync(&server);
    staff.sync(&server);
    staff.edit(R1, |f, e| {
        f.open_follow_up(
            e,
            TICKET,
            Some(VISIT_1),
            "更换燃气软管",
            Some(VOLUNTEER_1),
            Some(NOW + 7 * DAY),
        )
        .expect("open ticket");
    });
    staff.sync(&server);
    v1.sync(&server);
    v1.edit(R1, |f, e| {
        f.comment_follow_up(e, TICKET, COMMENT, "已联系家属")
            .expect("comment");
    });
    v1.sync(&server);
    for phone in [&mut staff, &mut v1, &mut v2, &mut coord] {
        phone.sync(&server);
    }
    assert!(server.quarantined().is_empty());
    assert_eq!(v2.hydrate(R1), staff.hydrate(R1));
    World {
        server,
        staff,
        v1,
        v2,
        coord,
    }
}

/// Raw changes to upload, and the attacker's heads once they are applied.
#[derive(Clone, Debug)]
struct Forged {
    doc: DocId,
    heads: Vec<ChangeHash>,
    changes: Vec<Vec<u8>>,
}

/// The case file as a phone holds it, writing under the phone's actor.
fn copy_of(phone: &Phone, id: ResidentId) -> Automerge {
    phone
        .replica
        .case_file(id.into())
        .expect("load case file")
        .expect("case file held")
        .into_doc()
}

fn catalog_copy(phone: &Phone) -> Automerge {
    phone
        .replica
        .catalog(DISTRICT.into())
        .expect("load catalog")
        .expect("catalog held")
        .into_doc()
}

/// One raw change on `doc`, with this message and time.
fn forge(
    mut doc: Automerge,
    id: DocId,
    author: Option<&str>,
    time: Timestamp,
    write: impl FnOnce(&mut Tx<'_>) -> Written,
) -> Forged {
    let before = commit_raw(&mut doc, author, time, write);
    Forged {
        doc: id,
        heads: doc.get_heads(),
        changes: doc
            .get_changes(&before)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect(),
    }
}

/// One raw change on a fresh copy of the phone's case file, signed by its user now.
fn attack(phone: &Phone, id: ResidentId, write: impl FnOnce(&mut Tx<'_>) -> Written) -> Forged {
    let author = phone.auth.principal.user.to_string();
    forge(copy_of(phone, id), id.into(), Some(&author), NOW, write)
}

/// The same, on the phone's copy of the district catalog.
fn attack_catalog(phone: &Phone, write: impl FnOnce(&mut Tx<'_>) -> Written) -> Forged {
    let author = phone.auth.principal.user.to_string();
    forge(
        catalog_copy(phone),
        DISTRICT.into(),
        Some(&author),
        NOW,
        write,
    )
}

/// Uploads the forged changes in a hand-built request, through the envelope. The
/// request lists what the phone holds (nothing), so the answer is a whole one: a
/// receipt only ever comes with a cursor past the change (a request whose digest the
/// server does not recognise gets its receipts held back).
fn send(server: &MemoryServerStore, auth: &DeviceAuth, forged: &Forged) -> SyncResponse {
    let request = SyncRequest {
        cursor: 0,
        held_digest: held_digest(&[]),
        held: Some(Vec::new()),
        uploads: vec![DocUpload {
            doc: forged.doc,
            heads: to_wire_hashes(&forged.heads),
            changes: forged.changes.iter().cloned().map(Bytes).collect(),
        }],
        fallback: Vec::new(),
        clock: NOW,
        refused: Vec::new(),
    };
    let request = SyncRequest::decode(&request.encode()).expect("decode request");
    match pollster::block_on(handle_sync(server, auth, &request, NOW, Limits::default())) {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The stored document's heads, sorted; `None` if nothing is stored.
fn stored_heads(server: &MemoryServerStore, doc: DocId) -> Option<Vec<ChangeHash>> {
    let loaded = match pollster::block_on(server.load(doc)) {
        Ok(d) => d,
        Err(never) => match never {},
    };
    loaded.map(|d| {
        let mut heads = d.get_heads();
        heads.sort();
        heads
    })
}

/// Uploads and checks the refusal: the expected code and no receipt in the response,
/// the stored document untouched, the bytes in quarantine under that code.
#[track_caller]
fn refused_by_server(
    server: &MemoryServerStore,
    auth: &DeviceAuth,
    forged: &Forged,
    code: &str,
) -> SyncResponse {
    let before = stored_heads(server, forged.doc);
    let quarantined = server.quarantined().len();
    let response = send(server, auth, forged);
    let found: Vec<&str> = response
        .rejections
        .iter()
        .filter(|r| r.doc == forged.doc)
        .map(|r| r.code.as_str())
        .collect();
    assert_eq!(found, [code], "{response:#?}");
    assert!(
        response.receipts.iter().all(|r| r.doc != forged.doc),
        "a refused upload was receipted: {response:#?}"
    );
    assert_eq!(
        stored_heads(server, forged.doc),
        before,
        "the stored document changed"
    );
    let q = server.quarantined();
    assert_eq!(q.len(), quarantined + 1, "nothing was quarantined");
    let item = q.last().expect("quarantined");
    assert_eq!(item.doc, forged.doc);
    assert_eq!(item.code, code);
    assert_eq!(item.bytes, forged.changes);
    assert_eq!(item.device, auth.device);
    assert_eq!(item.user, auth.principal.user);
    response
}

/// Uploads and checks the acceptance: a receipt for the uploaded heads, now stored.
#[track_caller]
fn accepted_by_server(server: &MemoryServerStore, auth: &DeviceAuth, forged: &Forged) {
    let quarantined = server.quarantined().len();
    let response = send(server, auth, forged);
    assert!(response.rejections.is_empty(), "{response:#?}");
    assert_eq!(
        response.receipts,
        vec![Receipt {
            doc: forged.doc,
            heads: to_wire_hashes(&forged.heads),
        }]
    );
    let mut heads = forged.heads.clone();
    heads.sort();
    assert_eq!(stored_heads(server, forged.doc), Some(heads));
    assert_eq!(server.quarantined().len(), quarantined);
}

/// An honest phone's sync: its upload of `doc` receipted, nothing refused.
#[track_caller]
fn sync_accepted(phone: &mut Phone, server: &MemoryServerStore, doc: impl Into<DocId>) {
    let doc = doc.into();
    let reports = phone.sync(server);
    assert!(
        reports.iter().all(|r| r.rejections.is_empty()),
        "{reports:#?}"
    );
    assert!(reports[0].receipted.contains(&doc), "{reports:#?}");
}

// ======================================================================================
// Local path: typed operations (and the rules on raw changes)
// ======================================================================================

#[test]
fn the_author_of_a_change_must_be_the_acting_user() {
    let mut file = case_file();
    let p1 = vol1();
    let notes = |tx: &mut Tx<'_>| put_notes(tx, VISIT_1, "补记");
    let v2 = VOLUNTEER_2.to_string();
    let wrong = check_signed(file.doc(), &p1, Some(&v2), NOW, notes);
    assert_eq!(
        wrong,
        Err(Violation::WrongAuthor {
            expected: VOLUNTEER_1,
            found: Some(v2.clone()),
        })
    );
    assert_eq!(wrong.map_err(|v| v.code()), Err("wrong_author"));
    assert_eq!(
        check_signed(file.doc(), &p1, None, NOW, notes),
        Err(Violation::WrongAuthor {
            expected: VOLUNTEER_1,
            found: None,
        })
    );
    assert_eq!(
        check_signed(file.doc(), &p1, Some("volunteer one"), NOW, notes),
        Err(Violation::WrongAuthor {
            expected: VOLUNTEER_1,
            found: Some("volunteer one".into()),
        })
    );
    // Signed by the acting user: accepted.
    let own = VOLUNTEER_1.to_string();
    assert_eq!(
        check_signed(file.doc(), &p1, Some(&own), NOW, notes),
        Ok(())
    );
    // The typed operations sign every change with the editor's id.
    let amended = rec(NOW - 5 * HOUR, |r| r.notes = "补记".into());
    accepted(&mut file, |f| {
        f.amend_visit(&editor(&p1), VISIT_1, &amended)
    });
    let head = file.doc().get_heads()[0];
    let change = file.doc().get_change_by_hash(&head).expect("change");
    assert_eq!(change.message().map(str::to_owned), Some(own));
    assert_eq!(change.timestamp(), NOW);
}

#[test]
fn a_volunteer_writes_only_to_their_assigned_residents() {
    let mut file = case_file();
    let elsewhere = volunteer(VOLUNTEER_1, &[R2]);
    let other_district = Principal {
        scope: Scope::Residents {
            district: OTHER_DISTRICT,
            residents: [R1].into(),
        },
        ..vol1()
    };
    for p in [&elsewhere, &other_district] {
        let v = refused(&mut file, |f| {
            f.log_visit(&editor(p), NEW_VISIT, &record(NOW - HOUR))
        });
        assert_eq!(v, Violation::OutOfScope);
        assert_eq!(v.code(), "out_of_scope");
        let v = refused(&mut file, |f| {
            f.update_profile(
                &editor(p),
                ProfileField::Address,
                &FieldValue::Text("华沙六村 14号".into()),
            )
        });
        assert_eq!(v, Violation::OutOfScope);
        let v = refused(&mut file, |f| {
            f.comment_follow_up(&editor(p), TICKET, NEW_COMMENT, "我来看看")
        });
        assert_eq!(v, Violation::OutOfScope);
    }
    let assigned = vol1();
    accepted(&mut file, |f| {
        f.log_visit(&editor(&assigned), NEW_VISIT, &record(NOW - HOUR))
    });
    accepted(&mut file, |f| {
        f.comment_follow_up(&editor(&assigned), TICKET, NEW_COMMENT, "我来看看")
    });
}

#[test]
fn station_staff_write_only_to_their_stations_residents() {
    let mut file = case_file();
    let sb = staff_b();
    let v = refused(&mut file, |f| {
        f.update_profile(
            &editor(&sb),
            ProfileField::RiskLevel,
            &FieldValue::Text("high".into()),
        )
    });
    assert_eq!(v, Violation::OutOfScope);
    let v = refused(&mut file, |f| {
        f.review_visit(&editor(&sb), VISIT_1, ReviewStatus::Approved, "")
    });
    assert_eq!(v, Violation::OutOfScope);
    let v = refused(&mut file, |f| f.tombstone_visit(&editor(&sb), VISIT_1));
    assert_eq!(v, Violation::OutOfScope);
    let sa = staff_a();
    accepted(&mut file, |f| {
        f.update_profile(
            &editor(&sa),
            ProfileField::RiskLevel,
            &FieldValue::Text("high".into()),
        )
    });
    accepted(&mut file, |f| {
        f.review_visit(&editor(&sa), VISIT_1, ReviewStatus::Approved, "")
    });
}

#[test]
fn a_coordinator_writes_anywhere_in_their_district_and_nowhere_else() {
    let mut file = case_file();
    let foreign = Principal {
        scope: Scope::District(OTHER_DISTRICT),
        ..coordinator()
    };
    let v = refused(&mut file, |f| {
        f.review_visit(&editor(&foreign), VISIT_1, ReviewStatus::Approved, "")
    });
    assert_eq!(v, Violation::OutOfScope);
    let c = coordinator();
    accepted(&mut file, |f| {
        f.review_visit(&editor(&c), VISIT_1, ReviewStatus::Approved, "")
    });
    // Any station of the district.
    let mut at_b = new_case_file(&staff_b(), actor(5), R3, STATION_B);
    let v = refused(&mut at_b, |f| {
        f.update_profile(
            &editor(&foreign),
            ProfileField::VisitEveryDays,
            &FieldValue::Int(3),
        )
    });
    assert_eq!(v, Violation::OutOfScope);
    accepted(&mut at_b, |f| {
        f.update_profile(
            &editor(&c),
            ProfileField::VisitEveryDays,
            &FieldValue::Int(3),
        )
    });
}

#[test]
fn staff_cannot_move_a_resident_to_a_station_outside_their_scope() {
    let mut file = case_file();
    let (sa, sb, p1, c) = (staff_a(), staff_b(), vol1(), coordinator());
    // Out of their station…
    let v = refused(&mut file, |f| f.set_station(&editor(&sa), STATION_B));
    assert_eq!(v, Violation::OutOfScope);
    // …or into it from another.
    let v = refused(&mut file, |f| f.set_station(&editor(&sb), STATION_B));
    assert_eq!(v, Violation::OutOfScope);
    // A volunteer moves nobody, even with the resident in scope.
    let v = refused(&mut file, |f| f.set_station(&editor(&p1), STATION_B));
    assert_eq!(
        v,
        Violation::RoleNotAllowed {
            role: Role::Volunteer,
            action: "move a resident to another station".into(),
        }
    );
    assert_eq!(v.code(), "role_not_allowed");
    // Staff covering both stations, and the coordinator, may.
    let both = Principal {
        scope: Scope::Stations {
            district: DISTRICT,
            stations: [STATION_A, STATION_B].into(),
        },
        ..staff_a()
    };
    let mut moved = file.clone();
    accepted(&mut moved, |f| f.set_station(&editor(&both), STATION_B));
    assert_eq!(moved.station().expect("station"), STATION_B);
    accepted(&mut file, |f| f.set_station(&editor(&c), STATION_B));
    assert_eq!(file.hydrate().expect("hydrate").station, STATION_B);
}

#[test]
fn only_staff_register_residents() {
    let assigned = volunteer(VOLUNTEER_1, &[R3]);
    let create = |p: &Principal, station| {
        CaseFile::create(
            actor(7),
            &editor(p),
            R3,
            DISTRICT,
            station,
            &profile("李老伯"),
        )
    };
    match create(&assigned, STATION_A) {
        Err(Error::Rejected(v)) => assert_eq!(
            v,
            Violation::RoleNotAllowed {
                role: Role::Volunteer,
                action: "register a resident".into(),
            }
        ),
        other => panic!("a volunteer registered a resident: {other:?}"),
    }
    // Staff register only at their own station.
    match create(&staff_b(), STATION_A) {
        Err(Error::Rejected(v)) => assert_eq!(v, Violation::OutOfScope),
        other => panic!("staff registered a resident elsewhere: {other:?}"),
    }
    let file = create(&staff_a(), STATION_A).expect("staff registers");
    let res = file.hydrate().expect("hydrate");
    assert_eq!((res.id, res.station), (R3, STATION_A));
    assert_eq!(res.profile, profile("李老伯"));
    let file = create(&coordinator(), STATION_B).expect("coordinator registers");
    assert_eq!(file.station().expect("station"), STATION_B);
}

#[test]
fn visits_are_logged_only_under_ones_own_id() {
    let mut file = case_file();
    let (p1, p2, sa) = (vol1(), vol2(), staff_a());
    // (The record's writer is not the named volunteer: NotOwner on the visit.)
    let not_own = |r: Result<(), Violation>| match r {
        Err(Violation::NotOwner { what }) => {
            assert!(what.starts_with(&format!("visit {NEW_VISIT}")), "{what}")
        }
        other => panic!("expected NotOwner, got {other:?}"),
    };
    not_own(check_raw(file.doc(), &p1, |tx| {
        raw_visit(tx, NEW_VISIT, VOLUNTEER_2, NOW - HOUR).map(drop)
    }));
    not_own(check_raw(file.doc(), &sa, |tx| {
        raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR).map(drop)
    }));

    // Under one's own id: accepted, raw or typed.
    let own = check_raw(file.doc(), &p1, |tx| {
        raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR).map(drop)
    });
    assert_eq!(own, Ok(()));
    accepted(&mut file, |f| {
        f.log_visit(&editor(&p1), NEW_VISIT, &record(NOW - HOUR))
    });
    let visit = file.visit(NEW_VISIT).expect("read").expect("logged");
    assert_eq!(visit.volunteer, VOLUNTEER_1);
    // The visit's volunteer never changes afterwards.
    let v = check_raw(file.doc(), &p2, |tx| {
        let v = visit_obj(&*tx, NEW_VISIT);
        tx.put(&v, "volunteer", bytes(VOLUNTEER_2.0))
    });
    assert_eq!(
        v,
        Err(Violation::Immutable {
            field: format!("the volunteer of visit {NEW_VISIT}"),
        })
    );
    // Logging under an id already taken is refused before anything is written.
    let v = refused(&mut file, |f| {
        f.log_visit(&editor(&p2), NEW_VISIT, &record(NOW - HOUR))
    });
    assert_eq!(
        v,
        Violation::AlreadyExists {
            what: format!("visit {NEW_VISIT}"),
        }
    );
}

#[test]
fn only_its_volunteer_amends_a_visit() {
    let mut file = case_file();
    let (p1, p2, sa, c) = (vol1(), vol2(), staff_a(), coordinator());
    let amended = rec(NOW - 5 * HOUR, |r| {
        r.notes = "补记：血压偏高".into();
        r.condition.systolic = Some(150);
    });
    for who in [&p2, &sa, &c] {
        let v = refused(&mut file, |f| {
            f.amend_visit(&editor(who), VISIT_1, &amended)
        });
        assert_eq!(
            v,
            Violation::NotOwner {
                what: format!("visit {VISIT_1}"),
            }
        );
        assert_eq!(v.code(), "not_owner");
    }
    accepted(&mut file, |f| {
        f.amend_visit(&editor(&p1), VISIT_1, &amended)
    });
    let visit = file.visit(VISIT_1).expect("read").expect("visit");
    assert_eq!(visit.record, amended);
}

#[test]
fn a_visit_is_tombstoned_by_its_volunteer_or_by_staff_in_scope() {
    let mut file = case_file();
    let (p1, p2, sa, sb) = (vol1(), vol2(), staff_a(), staff_b());
    let v = refused(&mut file, |f| f.tombstone_visit(&editor(&p2), VISIT_1));
    assert_eq!(
        v,
        Violation::NotOwner {
            what: format!("visit {VISIT_1}"),
        }
    );
    let v = refused(&mut file, |f| f.tombstone_visit(&editor(&sb), VISIT_1));
    assert_eq!(v, Violation::OutOfScope);
    accepted(&mut file, |f| f.tombstone_visit(&editor(&p1), VISIT_1));
    accepted(&mut file, |f| f.tombstone_visit(&editor(&sa), VISIT_2));
    let res = file.hydrate().expect("hydrate");
    assert_eq!(res.visits.len(), 2);
    assert!(res.visits.iter().all(|v| v.tombstoned));
}

#[test]
fn a_tombstone_is_never_undone() {
    let mut file = case_file();
    let (p1, sa, c) = (vol1(), staff_a(), coordinator());
    accepted(&mut file, |f| f.tombstone_visit(&editor(&p1), VISIT_1));
    let immutable = Err(Violation::Immutable {
        field: format!("the tombstone of visit {VISIT_1}"),
    });
    for who in [&p1, &sa, &c] {
        let undone = check_raw(file.doc(), who, |tx| put_tombstone(tx, VISIT_1, false));
        assert_eq!(undone, immutable);
        let removed = check_raw(file.doc(), who, |tx| {
            let v = visit_obj(&*tx, VISIT_1);
            tx.delete(&v, "tombstoned")
        });
        assert_eq!(removed, immutable);
    }
    // Tombstoning again writes nothing and is no error.
    assert_eq!(
        file.tombstone_visit(&editor(&p1), VISIT_1).expect("again"),
        None
    );
    assert!(
        file.visit(VISIT_1)
            .expect("read")
            .expect("visit")
            .tombstoned
    );
}

#[test]
fn volunteers_never_write_review_fields() {
    let mut file = case_file();
    let (p1, sa, c) = (vol1(), staff_a(), coordinator());
    let not_allowed = Violation::RoleNotAllowed {
        role: Role::Volunteer,
        action: "review a visit".into(),
    };
    let v = refused(&mut file, |f| {
        f.review_visit(&editor(&p1), VISIT_1, ReviewStatus::Approved, "没问题")
    });
    assert_eq!(v, not_allowed);
    accepted(&mut file, |f| {
        f.review_visit(
            &editor(&sa),
            VISIT_1,
            ReviewStatus::NeedsAttention,
            "请补充血压记录",
        )
    });
    // Not one field of an existing review, nor removing it.
    let status = check_raw(file.doc(), &p1, |tx| {
        let r = at(&*tx, &["visits", VISIT_1.to_string().as_str(), "review"]);
        tx.put(&r, "status", "approved")
    });
    assert_eq!(status, Err(not_allowed.clone()));
    let removed = check_raw(file.doc(), &p1, |tx| {
        let v = visit_obj(&*tx, VISIT_1);
        tx.delete(&v, "review")
    });
    assert_eq!(removed, Err(not_allowed));
    // Coordinators review too.
    accepted(&mut file, |f| {
        f.review_visit(&editor(&c), VISIT_1, ReviewStatus::Approved, "已补充")
    });
    let review = file
        .visit(VISIT_1)
        .expect("read")
        .expect("visit")
        .review
        .expect("reviewed");
    assert_eq!(
        (review.status, review.reviewer),
        (ReviewStatus::Approved, COORDINATOR)
    );
}

#[test]
fn a_review_names_the_reviewing_user() {
    let mut file = case_file();
    let (sa, c) = (staff_a(), coordinator());
    let wrong = Err(invalid("reviewer", "must be the reviewing user"));
    let forged = check_raw(file.doc(), &sa, |tx| {
        raw_review(tx, VISIT_1, COORDINATOR, "approved")
    });
    assert_eq!(forged, wrong);
    let own = check_raw(file.doc(), &sa, |tx| {
        raw_review(tx, VISIT_1, STAFF_A, "approved")
    });
    assert_eq!(own, Ok(()));
    // The typed review signs with the editor; editing someone else's review in part
    // would leave it under their name: refused.
    accepted(&mut file, |f| {
        f.review_visit(&editor(&c), VISIT_1, ReviewStatus::Approved, "好")
    });
    let review = file.visit(VISIT_1).expect("read").expect("visit").review;
    assert_eq!(review.map(|r| r.reviewer), Some(COORDINATOR));
    let partial = check_raw(file.doc(), &sa, |tx| {
        let r = at(&*tx, &["visits", VISIT_1.to_string().as_str(), "review"]);
        tx.put(&r, "comment", "改一下")
    });
    assert_eq!(partial, wrong);
}

#[test]
fn only_staff_edit_restricted_profile_fields_and_the_station() {
    use ProfileField as F;
    let mut file = case_file();
    let (p1, sa) = (vol1(), staff_a());
    let restricted = [
        (F::Name, FieldValue::Text("王秀英".into())),
        (F::BirthYear, FieldValue::Int(1940)),
        (F::RiskLevel, FieldValue::Text("high".into())),
        (F::VisitEveryDays, FieldValue::Int(3)),
    ];
    for (field, value) in &restricted {
        assert!(field.is_restricted());
        let expected = Violation::RoleNotAllowed {
            role: Role::Volunteer,
            action: format!("edit the restricted field {}", field.key()),
        };
        let v = refused(&mut file, |f| f.update_profile(&editor(&p1), *field, value));
        assert_eq!(v, expected);
        // Nor clear it while "resolving a conflict".
        let v = refused(&mut file, |f| {
            f.resolve_conflict(&editor(&p1), *field, &FieldValue::Empty)
        });
        assert_eq!(v, expected);
    }
    let v = refused(&mut file, |f| f.set_station(&editor(&p1), STATION_B));
    assert_eq!(
        v,
        Violation::RoleNotAllowed {
            role: Role::Volunteer,
            action: "move a resident to another station".into(),
        }
    );
    // Volunteers keep the other fields up to date.
    let open = [
        (F::Address, FieldValue::Text("华沙六村 14号 502室".into())),
        (F::Phone, FieldValue::Text("13800000001".into())),
        (F::LivingSituation, FieldValue::Text("with_family".into())),
        (
            F::EmergencyContact,
            FieldValue::Text("儿子 13700000000".into()),
        ),
        (F::Needs, FieldValue::Text("需要助听器".into())),
    ];
    for (field, value) in &open {
        assert!(!field.is_restricted());
        accepted(&mut file, |f| f.update_profile(&editor(&p1), *field, value));
    }
    // Staff edit the restricted ones.
    for (field, value) in &restricted {
        accepted(&mut file, |f| f.update_profile(&editor(&sa), *field, value));
    }
    let p = file.profile().expect("profile");
    assert_eq!(
        (
            p.name.as_str(),
            p.birth_year,
            p.risk_level,
            p.visit_every_days
        ),
        ("王秀英", Some(1940), Some(RiskLevel::High), Some(3))
    );
    assert_eq!(p.living_situation, Some(LivingSituation::WithFamily));
}

#[test]
fn nothing_ever_removes_a_visit() {
    let file = case_file();
    let key = VISIT_1.to_string();
    let removed = Err(Violation::VisitRemoved(VISIT_1));
    for who in [vol1(), staff_a(), coordinator(), admin()] {
        let deleted = check_raw(file.doc(), &who, |tx| {
            let visits = at(&*tx, &["visits"]);
            tx.delete(&visits, key.as_str())
        });
        assert_eq!(deleted, removed, "{:?} deleted the key", who.role);
        assert_eq!(deleted.map_err(|v| v.code()), Err("visit_removed"));
        let replaced = check_raw(file.doc(), &who, |tx| {
            let visits = at(&*tx, &["visits"]);
            tx.put_object(&visits, key.as_str(), ObjType::Map).map(drop)
        });
        assert_eq!(replaced, removed, "{:?} replaced the visit", who.role);
        // Even by an identical copy under the same id.
        let recreated = check_raw(file.doc(), &who, |tx| {
            raw_visit(tx, VISIT_1, VOLUNTEER_1, NOW - 5 * HOUR).map(drop)
        });
        assert_eq!(recreated, removed, "{:?} recreated the visit", who.role);
        let map_replaced = check_raw(file.doc(), &who, |tx| {
            tx.put_object(ROOT, "visits", ObjType::Map).map(drop)
        });
        assert_eq!(
            map_replaced,
            Err(Violation::Immutable {
                field: "visits".into(),
            }),
            "{:?} replaced the visits map",
            who.role
        );
        let map_deleted = check_raw(file.doc(), &who, |tx| tx.delete(ROOT, "visits"));
        assert_eq!(
            map_deleted,
            Err(Violation::Immutable {
                field: "visits".into(),
            })
        );
    }
    // A tombstone is how a visit goes: it stays in the case file.
    let mut file = file;
    let p1 = vol1();
    accepted(&mut file, |f| f.tombstone_visit(&editor(&p1), VISIT_1));
    let res = file.hydrate().expect("hydrate");
    assert_eq!(res.visits.len(), 2);
    assert_eq!(
        res.live_visits().map(|v| v.id).collect::<Vec<_>>(),
        [VISIT_2]
    );
}

#[test]
fn follow_up_decisions_are_made_by_staff_or_the_owner() {
    let base = case_file();
    let (p1, p2, sa) = (vol1(), vol2(), staff_a());
    let not_owner = Violation::NotOwner {
        what: format!("the decisions on follow-up {TICKET}"),
    };
    let mut file = base.clone();
    let v = refused(&mut file, |f| {
        f.close_follow_up(&editor(&p2), TICKET, "已处理")
    });
    assert_eq!(v, not_owner);
    let v = refused(&mut file, |f| {
        f.assign_follow_up(&editor(&p2), TICKET, Some(VOLUNTEER_2), None)
    });
    assert_eq!(v, not_owner);
    let decisions: [(&str, ScalarValue); 6] = [
        ("owner", bytes(VOLUNTEER_2.0)),
        ("deadline", ts(NOW + DAY)),
        ("status", ScalarValue::Str("closed".into())),
        ("closed_by", bytes(VOLUNTEER_2.0)),
        ("closed_at", ts(NOW)),
        ("resolution", ScalarValue::Str("已处理".into())),
    ];
    for (key, value) in decisions {
        let r = check_raw(file.doc(), &p2, |tx| {
            let t = ticket_obj(&*tx, TICKET);
            tx.put(&t, key, value)
        });
        assert_eq!(r, Err(not_owner.clone()), "{key}");
    }
    // The owner decides.
    accepted(&mut file, |f| {
        f.assign_follow_up(&editor(&p1), TICKET, Some(VOLUNTEER_1), Some(NOW + 3 * DAY))
    });
    accepted(&mut file, |f| {
        f.close_follow_up(&editor(&p1), TICKET, "已更换软管")
    });
    let t = &file.hydrate().expect("hydrate").follow_ups[0];
    assert_eq!(
        (t.status, t.closed_by, t.deadline),
        (
            FollowUpStatus::Closed,
            Some(VOLUNTEER_1),
            Some(NOW + 3 * DAY)
        )
    );
    // Staff decide on any ticket; once reassigned, the new owner decides, not the old.
    let mut file = base;
    accepted(&mut file, |f| {
        f.assign_follow_up(&editor(&sa), TICKET, Some(VOLUNTEER_2), Some(NOW + DAY))
    });
    let v = refused(&mut file, |f| {
        f.close_follow_up(&editor(&p1), TICKET, "已处理")
    });
    assert_eq!(v, not_owner);
    accepted(&mut file, |f| {
        f.close_follow_up(&editor(&p2), TICKET, "已处理")
    });
}

#[test]
fn a_follow_ups_title_and_opener_never_change() {
    let mut file = case_file();
    let ticket = TICKET.to_string();
    for who in [staff_a(), coordinator(), vol1()] {
        // (Values that differ from the stored ones: Automerge writes nothing otherwise.)
        let fields: [(&str, ScalarValue); 4] = [
            ("title", ScalarValue::Str("别的事".into())),
            ("opened_by", bytes(ADMIN.0)),
            ("opened_at", ts(NOW - DAY)),
            ("visit", bytes(VISIT_2.0)),
        ];
        for (key, value) in fields {
            let r = check_raw(file.doc(), &who, |tx| {
                let t = ticket_obj(&*tx, TICKET);
                tx.put(&t, key, value)
            });
            assert_eq!(
                r,
                Err(Violation::Immutable {
                    field: format!("{key} of follow-up {TICKET}"),
                }),
                "{:?} wrote {key}",
                who.role
            );
        }
        let whole = Err(Violation::Immutable {
            field: format!("follow-up {TICKET}"),
        });
        let replaced = check_raw(file.doc(), &who, |tx| {
            raw_ticket(tx, TICKET, who.user, "更换燃气软管").map(drop)
        });
        assert_eq!(replaced, whole);
        let deleted = check_raw(file.doc(), &who, |tx| {
            let all = at(&*tx, &["follow_ups"]);
            tx.delete(&all, ticket.as_str())
        });
        assert_eq!(deleted, whole);
    }
    // A ticket is opened under the opener's own name.
    let p2 = vol2();
    let forged = check_raw(file.doc(), &p2, |tx| {
        raw_ticket(tx, NEW_TICKET, VOLUNTEER_1, "送药").map(drop)
    });
    assert_eq!(
        forged,
        Err(invalid("opened_by", "must be the opening user"))
    );
    accepted(&mut file, |f| {
        f.open_follow_up(&editor(&p2), NEW_TICKET, None, "送药", None, None)
    });
    let res = file.hydrate().expect("hydrate");
    let t = res
        .follow_ups
        .iter()
        .find(|t| t.id == NEW_TICKET)
        .expect("opened");
    assert_eq!((t.title.as_str(), t.opened_by), ("送药", VOLUNTEER_2));
}

#[test]
fn comments_are_create_only_and_signed_by_their_author() {
    let mut file = case_file();
    let (p1, p2, sa) = (vol1(), vol2(), staff_a());
    let immutable = Err(Violation::Immutable {
        field: format!("comment {COMMENT}"),
    });
    for who in [&p1, &sa] {
        let edited = check_raw(file.doc(), who, |tx| {
            let c = comment_obj(&*tx, TICKET, COMMENT);
            tx.put(&c, "text", "改过的评论")
        });
        assert_eq!(edited, immutable, "{:?} edited", who.role);
        let cleared = check_raw(file.doc(), who, |tx| {
            let c = comment_obj(&*tx, TICKET, COMMENT);
            tx.delete(&c, "text")
        });
        assert_eq!(cleared, immutable);
        let deleted = check_raw(file.doc(), who, |tx| {
            let all = at(
                &*tx,
                &["follow_ups", TICKET.to_string().as_str(), "comments"],
            );
            tx.delete(&all, COMMENT.to_string().as_str())
        });
        assert_eq!(deleted, immutable, "{:?} deleted", who.role);
    }
    // A new comment under someone else's name.
    let forged = check_raw(file.doc(), &p2, |tx| {
        raw_comment(tx, TICKET, NEW_COMMENT, VOLUNTEER_1, "我同意").map(drop)
    });
    assert_eq!(
        forged,
        Err(invalid("comment author", "must be the commenting user"))
    );
    // Anyone in scope comments under their own name.
    let own = check_raw(file.doc(), &p2, |tx| {
        raw_comment(tx, TICKET, NEW_COMMENT, VOLUNTEER_2, "我同意").map(drop)
    });
    assert_eq!(own, Ok(()));
    accepted(&mut file, |f| {
        f.comment_follow_up(&editor(&p2), TICKET, NEW_COMMENT, "我周六也去")
    });
    let t = &file.hydrate().expect("hydrate").follow_ups[0];
    assert_eq!(
        t.comments
            .iter()
            .map(|c| (c.id, c.author))
            .collect::<Vec<_>>(),
        [(COMMENT, VOLUNTEER_1), (NEW_COMMENT, VOLUNTEER_2)]
    );
}

/// Reposting a comment under an id already taken replaces the comment object: an edit
/// of someone else's comment by another path.
#[test]
fn a_comment_cannot_be_replaced_by_reposting_its_id() {
    let mut file = case_file();
    let p2 = vol2();
    // Under the original author's name: the comment now says something else.
    let impersonated = check_raw(file.doc(), &p2, |tx| {
        raw_comment(tx, TICKET, COMMENT, VOLUNTEER_1, "我不管了").map(drop)
    });
    assert_eq!(
        impersonated,
        Err(Violation::Immutable {
            field: format!("comment {COMMENT}"),
        })
    );
    // The typed operation, reusing the id (refused by the rules, or up front as
    // `log_visit` and `open_follow_up` do).
    let v = refused(&mut file, |f| {
        f.comment_follow_up(&editor(&p2), TICKET, COMMENT, "覆盖")
    });
    assert!(
        matches!(
            v,
            Violation::Immutable { .. } | Violation::AlreadyExists { .. }
        ),
        "{v:?}"
    );
}

#[test]
fn server_refuses_a_comment_replaced_under_its_id() {
    let w = world();
    let forged = attack(&w.v2, R1, |tx| {
        raw_comment(tx, TICKET, COMMENT, VOLUNTEER_1, "我不管了").map(drop)
    });
    refused_by_server(&w.server, &w.v2.auth, &forged, "immutable");
    let t = &stored_resident(&w.server, R1).follow_ups[0];
    assert_eq!(t.comments[0].text, "已联系家属");
}

#[test]
fn profile_values_are_validated() {
    use FieldValue::{Empty, Int, Text};
    use ProfileField as F;
    let mut file = case_file();
    let (p1, sa) = (vol1(), staff_a());
    let too_long = |field: &str, n: usize, max: usize| {
        invalid(field, format!("is {n} characters long, more than {max}"))
    };
    let cases = [
        (&sa, F::Name, Empty, invalid("name", "must not be empty")),
        (
            &sa,
            F::Name,
            Text("   ".into()),
            invalid("name", "must not be empty"),
        ),
        (&sa, F::Name, Text(text(201)), too_long("name", 201, 200)),
        (
            &p1,
            F::Address,
            Text(text(201)),
            too_long("address", 201, 200),
        ),
        (&p1, F::Phone, Text(text(201)), too_long("phone", 201, 200)),
        (
            &p1,
            F::EmergencyContact,
            Text(text(201)),
            too_long("emergency_contact", 201, 200),
        ),
        (
            &p1,
            F::Needs,
            Text(text(4001)),
            too_long("needs", 4001, 4000),
        ),
        (
            &p1,
            F::Phone,
            Int(13_800_000_000),
            invalid("phone", "has the wrong type"),
        ),
        (
            &sa,
            F::BirthYear,
            Text("1938".into()),
            invalid("birth_year", "has the wrong type"),
        ),
        (
            &p1,
            F::LivingSituation,
            Text("commune".into()),
            invalid("living_situation", "unknown living situation \"commune\""),
        ),
        (
            &sa,
            F::RiskLevel,
            Text("extreme".into()),
            invalid("risk_level", "unknown risk level \"extreme\""),
        ),
        (
            &sa,
            F::BirthYear,
            Int(1889),
            invalid("birth_year", "birth year 1889 is implausible"),
        ),
        (
            &sa,
            F::BirthYear,
            Int(2031),
            invalid("birth_year", "birth year 2031 is implausible"),
        ),
        (
            &sa,
            F::VisitEveryDays,
            Int(0),
            invalid(
                "visit_every_days",
                "0 days between visits is out of range (1 to 366)",
            ),
        ),
        (
            &sa,
            F::VisitEveryDays,
            Int(367),
            invalid(
                "visit_every_days",
                "367 days between visits is out of range (1 to 366)",
            ),
        ),
    ];
    for (who, field, value, expected) in cases {
        let v = refused(&mut file, |f| f.update_profile(&editor(who), field, &value));
        assert_eq!(v, expected, "{field:?} = {value:?}");
        assert_eq!(v.code(), "invalid");
    }
    // At the limits: accepted.
    let fine = [
        (&sa, F::Name, Text(text(200))),
        (&p1, F::Address, Text(text(200))),
        (&p1, F::Needs, Text(text(4000))),
        (&p1, F::Phone, Empty),
        (&p1, F::LivingSituation, Text("other".into())),
        (&sa, F::RiskLevel, Text("low".into())),
        (&sa, F::BirthYear, Int(1890)),
        (&sa, F::VisitEveryDays, Int(366)),
        (&sa, F::BirthYear, Int(2030)),
        (&sa, F::VisitEveryDays, Int(1)),
    ];
    for (who, field, value) in fine {
        accepted(&mut file, |f| f.update_profile(&editor(who), field, &value));
    }
}

#[test]
fn visit_records_are_validated() {
    let mut file = case_file();
    let p1 = vol1();
    let start = NOW - 5 * HOUR;
    let too_long =
        |field: &str, n: usize| invalid(field, format!("is {n} characters long, more than 4000"));
    let hazard = record(start).hazards[0].clone();
    let out_of_range = |field: &str, n: i64| invalid(field, format!("{n} is out of range"));
    // Refused both when logged and when amended.
    let cases = [
        (
            rec(start, |r| r.notes = text(4001)),
            too_long("notes", 4001),
        ),
        (
            rec(start, |r| r.condition.remarks = text(4001)),
            too_long("remarks", 4001),
        ),
        (
            rec(start, |r| r.hazards[0].note = text(4001)),
            too_long("hazard note", 4001),
        ),
        (
            rec(start, |r| r.services = vec![SERVICE_READING; 51]),
            invalid("services", "lists more than 50"),
        ),
        (
            rec(start, |r| r.hazards = vec![hazard.clone(); 51]),
            invalid("hazards", "lists more than 50"),
        ),
        (
            rec(start, |r| r.ended_at = start - 1),
            invalid("ended_at", "is before started_at"),
        ),
        (
            rec(start, |r| r.ended_at = start + 12 * HOUR + 1),
            invalid("ended_at", "makes the visit longer than 12 hours"),
        ),
        (
            rec(start, |r| r.condition.systolic = Some(301)),
            out_of_range("systolic", 301),
        ),
        (
            rec(start, |r| r.condition.systolic = Some(39)),
            out_of_range("systolic", 39),
        ),
        (
            rec(start, |r| r.condition.diastolic = Some(201)),
            out_of_range("diastolic", 201),
        ),
        (
            rec(start, |r| r.condition.diastolic = Some(19)),
            out_of_range("diastolic", 19),
        ),
        (
            rec(start, |r| r.condition.blood_sugar_dmmol = Some(501)),
            out_of_range("blood_sugar_dmmol", 501),
        ),
        (
            rec(start, |r| r.condition.blood_sugar_dmmol = Some(4)),
            out_of_range("blood_sugar_dmmol", 4),
        ),
    ];
    for (r, expected) in &cases {
        let v = refused(&mut file, |f| f.log_visit(&editor(&p1), NEW_VISIT, r));
        assert_eq!(&v, expected);
        let v = refused(&mut file, |f| f.amend_visit(&editor(&p1), VISIT_1, r));
        assert_eq!(&v, expected);
    }
    // Start times: not before 2020, not more than a day ahead of the checking clock.
    let early = limits::EARLIEST - DAY;
    let v = refused(&mut file, |f| {
        f.log_visit(&editor(&p1), NEW_VISIT, &record(early))
    });
    assert_eq!(v, invalid("started_at", format!("{early} is before 2020")));
    let ahead = NOW + DAY + 1;
    let v = refused(&mut file, |f| {
        f.log_visit(&editor(&p1), NEW_VISIT, &record(ahead))
    });
    assert_eq!(
        v,
        invalid(
            "started_at",
            format!("{ahead} is more than a day in the future")
        )
    );
    // At the limits: accepted.
    let fine = [
        rec(start, |r| r.notes = text(4000)),
        rec(start, |r| r.services = vec![SERVICE_READING; 50]),
        rec(start, |r| r.hazards = vec![hazard.clone(); 50]),
        rec(start, |r| r.ended_at = start + 12 * HOUR),
        rec(start, |r| r.ended_at = start),
        rec(start, |r| {
            r.condition.systolic = Some(300);
            r.condition.diastolic = Some(20);
            r.condition.blood_sugar_dmmol = Some(5);
        }),
        rec(start, |r| {
            r.condition.systolic = Some(40);
            r.condition.diastolic = Some(200);
            r.condition.blood_sugar_dmmol = Some(500);
        }),
        record(limits::EARLIEST),
        record(NOW + DAY),
    ];
    for (i, r) in fine.iter().enumerate() {
        let id = VisitId(uuid(0xF100 + i as u128));
        accepted(&mut file, |f| f.log_visit(&editor(&p1), id, r));
    }
    accepted(&mut file, |f| {
        f.amend_visit(&editor(&p1), VISIT_1, &fine[0])
    });
}

/// The start of a visit is a timestamp like any other: an amendment may not move it
/// before 2020 or more than a day into the future.
#[test]
fn amending_a_visit_cannot_move_its_start_out_of_bounds() {
    let mut file = case_file();
    let p1 = vol1();
    let early = limits::EARLIEST - DAY;
    let v = refused(&mut file, |f| {
        f.amend_visit(&editor(&p1), VISIT_1, &record(early))
    });
    assert_eq!(v, invalid("started_at", format!("{early} is before 2020")));
    let ahead = NOW + 30 * DAY;
    let v = refused(&mut file, |f| {
        f.amend_visit(&editor(&p1), VISIT_1, &record(ahead))
    });
    assert_eq!(
        v,
        invalid(
            "started_at",
            format!("{ahead} is more than a day in the future")
        )
    );
    accepted(&mut file, |f| {
        f.amend_visit(&editor(&p1), VISIT_1, &record(NOW - 6 * HOUR))
    });
}

/// Every timestamp a change writes is held to the same bounds as a visit's start: a
/// ticket's opening and closing times and a comment's time too.
#[test]
fn follow_up_and_comment_times_are_validated() {
    let file = case_file();
    let (p2, sa) = (vol2(), staff_a());
    let old = limits::EARLIEST - DAY;
    let ahead = NOW + 30 * DAY;
    let refused_as_invalid = |what: &str, r: Result<(), Violation>| {
        assert!(
            matches!(r, Err(Violation::Invalid { .. })),
            "{what}: expected an invalid time, got {r:?}"
        );
    };
    for t in [old, ahead] {
        refused_as_invalid(
            "opened_at",
            check_raw(file.doc(), &sa, |tx| {
                let f = raw_ticket(tx, NEW_TICKET, STAFF_A, "送药")?;
                tx.put(&f, "opened_at", ts(t))
            }),
        );
        refused_as_invalid(
            "closed_at",
            check_raw(file.doc(), &sa, |tx| {
                let f = ticket_obj(&*tx, TICKET);
                tx.put(&f, "status", "closed")?;
                tx.put(&f, "closed_by", bytes(STAFF_A.0))?;
                tx.put(&f, "closed_at", ts(t))
            }),
        );
        refused_as_invalid(
            "comment at",
            check_raw(file.doc(), &p2, |tx| {
                let c = raw_comment(tx, TICKET, NEW_COMMENT, VOLUNTEER_2, "好")?;
                tx.put(&c, "at", ts(t))
            }),
        );
    }
    // Now: accepted.
    let r = check_raw(file.doc(), &sa, |tx| {
        raw_ticket(tx, NEW_TICKET, STAFF_A, "送药").map(drop)
    });
    assert_eq!(r, Ok(()));
}

#[test]
fn change_times_are_validated() {
    let file = case_file();
    let p1 = vol1();
    let own = VOLUNTEER_1.to_string();
    let notes = |tx: &mut Tx<'_>| put_notes(tx, VISIT_1, "补记");
    let early = limits::EARLIEST - 1;
    assert_eq!(
        check_signed(file.doc(), &p1, Some(&own), early, notes),
        Err(invalid("change time", format!("{early} is before 2020")))
    );
    let ahead = NOW + DAY + 1;
    assert_eq!(
        check_signed(file.doc(), &p1, Some(&own), ahead, notes),
        Err(invalid(
            "change time",
            format!("{ahead} is more than a day in the future")
        ))
    );
    // A clock a day ahead, or one long behind (an offline phone), is fine.
    assert_eq!(
        check_signed(file.doc(), &p1, Some(&own), NOW + DAY, notes),
        Ok(())
    );
    assert_eq!(
        check_signed(file.doc(), &p1, Some(&own), limits::EARLIEST, notes),
        Ok(())
    );
}

#[test]
fn follow_ups_reviews_and_comments_are_validated() {
    let mut file = case_file();
    let (p1, sa) = (vol1(), staff_a());
    let open = |title: &str, deadline| {
        let title = title.to_owned();
        move |f: &mut CaseFile| {
            f.open_follow_up(
                &editor(&staff_a()),
                NEW_TICKET,
                None,
                &title,
                None,
                deadline,
            )
        }
    };
    assert_eq!(
        refused(&mut file, open("", None)),
        invalid("title", "must not be empty")
    );
    assert_eq!(
        refused(&mut file, open("  ", None)),
        invalid("title", "must not be empty")
    );
    assert_eq!(
        refused(&mut file, open(&text(201), None)),
        invalid("title", "is 201 characters long, more than 200")
    );
    assert_eq!(
        refused(&mut file, open("送药", Some(limits::EARLIEST - 1))),
        invalid("deadline", "is before 2020")
    );
    let unknown_visit = check_raw(file.doc(), &sa, |tx| {
        let t = raw_ticket(tx, NEW_TICKET, STAFF_A, "送药")?;
        tx.put(&t, "visit", bytes(NEW_VISIT.0))
    });
    assert_eq!(
        unknown_visit,
        Err(invalid(
            "visit",
            format!("{NEW_VISIT} is not a visit of this resident")
        ))
    );
    assert_eq!(
        refused(&mut file, |f| f.close_follow_up(
            &editor(&sa),
            TICKET,
            &text(4001)
        )),
        invalid("resolution", "is 4001 characters long, more than 4000")
    );
    assert_eq!(
        refused(&mut file, |f| {
            f.comment_follow_up(&editor(&p1), TICKET, NEW_COMMENT, " ")
        }),
        invalid("comment", "must not be empty")
    );
    assert_eq!(
        refused(&mut file, |f| {
            f.comment_follow_up(&editor(&p1), TICKET, NEW_COMMENT, &text(4001))
        }),
        invalid("comment", "is 4001 characters long, more than 4000")
    );
    assert_eq!(
        refused(&mut file, |f| {
            f.review_visit(&editor(&sa), VISIT_1, ReviewStatus::Approved, &text(4001))
        }),
        invalid("review comment", "is 4001 characters long, more than 4000")
    );
    // At the limits: accepted.
    accepted(&mut file, open(&text(200), Some(limits::EARLIEST)));
    accepted(&mut file, |f| {
        f.comment_follow_up(&editor(&p1), TICKET, NEW_COMMENT, &text(4000))
    });
    accepted(&mut file, |f| {
        f.review_visit(&editor(&sa), VISIT_1, ReviewStatus::Approved, &text(4000))
    });
    accepted(&mut file, |f| {
        f.close_follow_up(&editor(&sa), TICKET, &text(4000))
    });
}

#[test]
fn required_fields_and_enum_codes_are_enforced() {
    let file = case_file();
    let (p1, sa) = (vol1(), staff_a());
    let new_visit = format!("visit {NEW_VISIT}");
    for missing in [
        "project",
        "started_at",
        "ended_at",
        "condition",
        "wellbeing",
    ] {
        let r = check_raw(file.doc(), &p1, |tx| {
            raw_visit_without(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR, &[missing]).map(drop)
        });
        assert_invalid(r, &new_visit, &format!("{missing} is missing"));
    }
    // Without a volunteer, nobody owns the record being written.
    let r = check_raw(file.doc(), &p1, |tx| {
        raw_visit_without(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR, &["volunteer"]).map(drop)
    });
    assert_eq!(
        r,
        Err(Violation::NotOwner {
            what: format!("visit {NEW_VISIT}"),
        })
    );
    // Unknown codes.
    let r = check_raw(file.doc(), &p1, |tx| {
        raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR)?;
        let c = at(
            &*tx,
            &["visits", NEW_VISIT.to_string().as_str(), "condition"],
        );
        tx.put(&c, "wellbeing", "ecstatic")
    });
    assert_invalid(
        r,
        &new_visit,
        "wellbeing has the unknown value \"ecstatic\"",
    );
    let r = check_raw(file.doc(), &p1, |tx| {
        let v = raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR)?;
        let list = tx.put_object(&v, "hazards", ObjType::List)?;
        let h = tx.insert_object(&list, 0, ObjType::Map)?;
        tx.put(&h, "type", bytes(HAZARD_STRIP.0))?;
        tx.put(&h, "severity", "apocalyptic")
    });
    assert_invalid(
        r,
        &new_visit,
        "severity has the unknown value \"apocalyptic\"",
    );
    let r = check_raw(file.doc(), &sa, |tx| {
        raw_review(tx, VISIT_1, STAFF_A, "rubber_stamped")
    });
    assert_invalid(
        r,
        &format!("visit {VISIT_1}"),
        "status has the unknown value \"rubber_stamped\"",
    );
    let r = check_raw(file.doc(), &sa, |tx| {
        let t = ticket_obj(&*tx, TICKET);
        tx.put(&t, "status", "maybe")
    });
    assert_invalid(
        r,
        &format!("follow-up {TICKET}"),
        "status has the unknown value \"maybe\"",
    );
    // Ids are 16 bytes; times are numbers.
    let r = check_raw(file.doc(), &p1, |tx| {
        let v = raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR)?;
        tx.put(&v, "project", ScalarValue::Bytes(vec![1, 2, 3]))
    });
    assert_invalid(r, &new_visit, "project is not a 16-byte id");
    let r = check_raw(file.doc(), &p1, |tx| {
        let v = visit_obj(&*tx, VISIT_1);
        tx.put(&v, "ended_at", "下午三点")
    });
    assert_invalid(r, &format!("visit {VISIT_1}"), "ended_at is not a number");
    // A complete visit with known codes: accepted.
    let r = check_raw(file.doc(), &p1, |tx| {
        raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR).map(drop)
    });
    assert_eq!(r, Ok(()));
}

#[test]
fn writes_outside_the_schema_are_refused() {
    let file = case_file();
    let (p1, sa) = (vol1(), staff_a());
    let unknown = |path: String| Err(Violation::UnknownField { path });
    let r = check_raw(file.doc(), &p1, |tx| {
        let v = visit_obj(&*tx, VISIT_1);
        tx.put(&v, "colour", "blue")
    });
    assert_eq!(r, unknown(format!("visits/{VISIT_1}/colour")));
    assert_eq!(r.map_err(|v| v.code()), Err("unknown_field"));
    let r = check_raw(file.doc(), &p1, |tx| {
        let v = raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR)?;
        tx.put(&v, "colour", "blue")
    });
    assert_eq!(r, unknown(format!("visits/{NEW_VISIT}/colour")));
    let r = check_raw(file.doc(), &p1, |tx| {
        put_profile(tx, "favourite_food", ScalarValue::Str("饺子".into()))
    });
    assert_eq!(r, unknown("profile/favourite_food".into()));
    let r = check_raw(file.doc(), &p1, |tx| {
        let visits = at(&*tx, &["visits"]);
        tx.put(&visits, "not-an-id", "x")
    });
    assert_eq!(r, unknown("visits/not-an-id".into()));
    let r = check_raw(file.doc(), &sa, |tx| {
        let all = at(&*tx, &["follow_ups"]);
        tx.put(&all, "not-an-id", "x")
    });
    assert_eq!(r, unknown("follow_ups/not-an-id".into()));
    let r = check_raw(file.doc(), &sa, |tx| {
        let p = at(&*tx, &["profile"]);
        let m = tx.put_object(&p, "address", ObjType::Map)?;
        tx.put(&m, "street", "华沙路")
    });
    // Refused at the first wrong write: a map where the schema has a value.
    assert_eq!(
        r,
        Err(Violation::Invalid {
            field: "profile/address".into(),
            reason: "has the wrong type (an object)".into(),
        })
    );
    // A scalar of a type no profile field holds is not taken for a cleared field (the
    // rules fuzzer found bytes in the address accepted, which the reader refuses).
    for value in [
        bytes(STATION_A.0),
        ScalarValue::Boolean(true),
        ScalarValue::F64(1.5),
        ScalarValue::Null,
        ScalarValue::counter(1),
    ] {
        for key in ["address", "birth_year"] {
            let r = check_raw(file.doc(), &sa, |tx| {
                let p = at(&*tx, &["profile"]);
                tx.put(&p, key, value.clone())
            });
            assert_invalid(r, key, "has the wrong type");
        }
    }
    // A new key at the root is refused too (the root's keys are fixed at creation).
    let r = check_raw(file.doc(), &sa, |tx| tx.put(ROOT, "colour", "blue"));
    assert_eq!(
        r,
        Err(Violation::Immutable {
            field: "colour".into(),
        })
    );
    // A known field: accepted.
    let r = check_raw(file.doc(), &p1, |tx| {
        put_profile(tx, "needs", ScalarValue::Str("助行器".into()))
    });
    assert_eq!(r, Ok(()));
}

/// Unknown keys are refused wherever they are written, not only directly under a visit
/// or the profile: inside a visit's condition or review, in a new ticket, in a new
/// comment.
#[test]
fn unknown_fields_inside_nested_and_new_objects_are_refused() {
    let file = case_file();
    let (p1, p2, sa) = (vol1(), vol2(), staff_a());
    let visit = VISIT_1.to_string();
    let condition = check_raw(file.doc(), &p1, |tx| {
        let c = at(&*tx, &["visits", visit.as_str(), "condition"]);
        tx.put(&c, "mood", "grumpy")
    });
    assert_eq!(
        condition,
        Err(Violation::UnknownField {
            path: format!("visits/{VISIT_1}/condition/mood"),
        })
    );
    let review = check_raw(file.doc(), &sa, |tx| {
        raw_review(tx, VISIT_1, STAFF_A, "approved")?;
        let r = at(&*tx, &["visits", visit.as_str(), "review"]);
        tx.put(&r, "score", 3)
    });
    assert_eq!(
        review,
        Err(Violation::UnknownField {
            path: format!("visits/{VISIT_1}/review/score"),
        })
    );
    let hazard = check_raw(file.doc(), &p1, |tx| {
        let list = at(&*tx, &["visits", visit.as_str(), "hazards"]);
        let first = match tx.get(&list, 0)? {
            Some((Value::Object(_), id)) => id,
            other => panic!("no hazard: {other:?}"),
        };
        tx.put(&first, "blob", "x")
    });
    assert!(
        matches!(&hazard, Err(Violation::UnknownField { path }) if path.ends_with("/blob")),
        "{hazard:?}"
    );
    let ticket = check_raw(file.doc(), &p2, |tx| {
        let t = raw_ticket(tx, NEW_TICKET, VOLUNTEER_2, "送药")?;
        tx.put(&t, "priority", "urgent")
    });
    assert_eq!(
        ticket,
        Err(Violation::UnknownField {
            path: format!("follow_ups/{NEW_TICKET}/priority"),
        })
    );
    let comment = check_raw(file.doc(), &p2, |tx| {
        let c = raw_comment(tx, TICKET, NEW_COMMENT, VOLUNTEER_2, "好")?;
        tx.put(&c, "mood", "happy")
    });
    assert_eq!(
        comment,
        Err(Violation::UnknownField {
            path: format!("follow_ups/{TICKET}/comments/{NEW_COMMENT}/mood"),
        })
    );
}

#[test]
fn only_coordinators_and_admins_edit_the_catalog() {
    let mut cat = new_catalog(actor(9));
    let entry = EntryInput {
        kind: CatalogKind::ServiceType,
        id: uuid(0x53),
        name: "测血压",
        name_en: "Blood pressure",
        parent: None,
        archived: false,
    };
    for who in [vol1(), staff_a()] {
        let v = refused(&mut cat, |c| {
            c.put_entries(&editor(&who), std::slice::from_ref(&entry))
        });
        assert_eq!(
            v,
            Violation::RoleNotAllowed {
                role: who.role,
                action: "edit the catalog".into(),
            }
        );
    }
    match CatalogDoc::create(actor(1), &editor(&staff_a()), DISTRICT) {
        Err(Error::Rejected(v)) => assert_eq!(
            v,
            Violation::RoleNotAllowed {
                role: Role::StationStaff,
                action: "edit the catalog".into(),
            }
        ),
        other => panic!("staff created a catalog: {other:?}"),
    }
    let foreign = Principal {
        scope: Scope::District(OTHER_DISTRICT),
        ..coordinator()
    };
    let v = refused(&mut cat, |c| {
        c.put_entries(&editor(&foreign), std::slice::from_ref(&entry))
    });
    assert_eq!(v, Violation::OutOfScope);
    let (c, a) = (coordinator(), admin());
    accepted(&mut cat, |cat| {
        cat.put_entries(&editor(&c), std::slice::from_ref(&entry))
    });
    let second = EntryInput {
        id: uuid(0x54),
        name: "陪同就医",
        name_en: "Hospital escort",
        ..entry
    };
    accepted(&mut cat, |cat| cat.put_entries(&editor(&a), &[second]));
    let names: Vec<String> = cat
        .hydrate()
        .expect("hydrate")
        .service_types
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["检查电线", "测血压", "读报", "陪同就医"]);
}

#[test]
fn catalog_entries_are_archived_never_deleted() {
    let mut cat = new_catalog(actor(9));
    let station = STATION_A.0.to_string();
    for who in [coordinator(), admin()] {
        let deleted = check_raw(cat.doc(), &who, |tx| {
            let list = at(&*tx, &["stations"]);
            tx.delete(&list, station.as_str())
        });
        assert_eq!(
            deleted,
            Err(Violation::Immutable {
                field: format!("stations entry {station} (archive it instead)"),
            })
        );
        assert_eq!(deleted.map_err(|v| v.code()), Err("immutable"));
        let list_replaced = check_raw(cat.doc(), &who, |tx| {
            tx.put_object(ROOT, "stations", ObjType::Map).map(drop)
        });
        assert_eq!(
            list_replaced,
            Err(Violation::Immutable {
                field: "stations".into(),
            })
        );
        let list_deleted = check_raw(cat.doc(), &who, |tx| tx.delete(ROOT, "stations"));
        assert_eq!(
            list_deleted,
            Err(Violation::Immutable {
                field: "stations".into(),
            })
        );
    }
    // Archiving keeps the entry.
    let c = coordinator();
    let archived = EntryInput {
        kind: CatalogKind::Station,
        id: STATION_A.0,
        name: "华沙居民区党群服务站",
        name_en: "Huasha station",
        parent: None,
        archived: true,
    };
    accepted(&mut cat, |cat| cat.put_entries(&editor(&c), &[archived]));
    let stations = cat.hydrate().expect("hydrate").stations;
    assert_eq!(stations.len(), 2);
    assert!(stations.iter().any(|s| s.id == STATION_A && s.archived));
}

#[test]
fn catalog_entries_are_validated() {
    let mut cat = new_catalog(actor(9));
    let c = coordinator();
    let long = text(201);
    let entry = |name: &'static str| EntryInput {
        kind: CatalogKind::HazardType,
        id: uuid(0x42),
        name,
        name_en: "Gas hose",
        parent: None,
        archived: false,
    };
    let v = refused(&mut cat, |cat| cat.put_entries(&editor(&c), &[entry(" ")]));
    assert_eq!(v, invalid("name", "must not be empty"));
    let v = refused(&mut cat, |cat| {
        cat.put_entries(
            &editor(&c),
            &[EntryInput {
                name: &long,
                ..entry("x")
            }],
        )
    });
    assert_eq!(v, invalid("name", "is 201 characters long, more than 200"));
    let v = refused(&mut cat, |cat| {
        cat.put_entries(
            &editor(&c),
            &[EntryInput {
                name_en: &long,
                ..entry("燃气软管老化")
            }],
        )
    });
    assert_eq!(
        v,
        invalid("name_en", "is 201 characters long, more than 200")
    );
    let station = STATION_A.0.to_string();
    let r = check_raw(cat.doc(), &c, |tx| {
        let e = at(&*tx, &["stations", station.as_str()]);
        tx.put(&e, "colour", "red")
    });
    assert_eq!(
        r,
        Err(Violation::UnknownField {
            path: format!("stations/{station}/colour"),
        })
    );
    let max = text(200);
    accepted(&mut cat, |cat| {
        cat.put_entries(
            &editor(&c),
            &[EntryInput {
                name: &max,
                ..entry("x")
            }],
        )
    });
}

// ======================================================================================
// The attacker's side: raw changes uploaded straight to the server
// ======================================================================================

#[test]
fn server_refuses_a_volunteer_writing_review_fields() {
    let mut w = world();
    let forged = attack(&w.v1, R1, |tx| {
        raw_review(tx, VISIT_1, VOLUNTEER_1, "approved")
    });
    refused_by_server(&w.server, &w.v1.auth, &forged, "role_not_allowed");
    let forged = attack(&w.v2, R1, |tx| {
        raw_review(tx, VISIT_1, VOLUNTEER_2, "needs_attention")
    });
    refused_by_server(&w.server, &w.v2.auth, &forged, "role_not_allowed");
    // Staff review; the review reaches the volunteer.
    w.staff.edit(R1, |f, e| {
        f.review_visit(e, VISIT_1, ReviewStatus::Approved, "记录完整")
            .expect("review");
    });
    sync_accepted(&mut w.staff, &w.server, R1);
    w.v1.sync(&w.server);
    let res = w.v1.hydrate(R1);
    let v = res.visits.iter().find(|v| v.id == VISIT_1).expect("visit");
    assert_eq!(v.review_status(), ReviewStatus::Approved);
    assert_eq!(w.server.quarantined().len(), 2);
}

#[test]
fn server_refuses_a_volunteer_editing_another_volunteers_visit() {
    let w = world();
    let forged = attack(&w.v2, R1, |tx| put_notes(tx, VISIT_1, "他没来"));
    refused_by_server(&w.server, &w.v2.auth, &forged, "not_owner");
    let forged = attack(&w.v2, R1, |tx| put_tombstone(tx, VISIT_1, true));
    refused_by_server(&w.server, &w.v2.auth, &forged, "not_owner");
    let forged = attack(&w.v2, R1, |tx| {
        let c = at(&*tx, &["visits", VISIT_1.to_string().as_str(), "condition"]);
        tx.put(&c, "systolic", 180)
    });
    refused_by_server(&w.server, &w.v2.auth, &forged, "not_owner");
    // Its own volunteer amends it.
    let forged = attack(&w.v1, R1, |tx| put_notes(tx, VISIT_1, "读报一小时"));
    accepted_by_server(&w.server, &w.v1.auth, &forged);
    let res = stored_resident(&w.server, R1);
    let v = res.visits.iter().find(|v| v.id == VISIT_1).expect("visit");
    assert_eq!(v.record.notes, "读报一小时");
}

#[test]
fn server_refuses_a_volunteer_deleting_a_visit() {
    let w = world();
    let key = VISIT_1.to_string();
    let forged = attack(&w.v1, R1, |tx| {
        let visits = at(&*tx, &["visits"]);
        tx.delete(&visits, key.as_str())
    });
    refused_by_server(&w.server, &w.v1.auth, &forged, "visit_removed");
    let forged = attack(&w.v1, R1, |tx| {
        let visits = at(&*tx, &["visits"]);
        tx.put_object(&visits, key.as_str(), ObjType::Map).map(drop)
    });
    refused_by_server(&w.server, &w.v1.auth, &forged, "visit_removed");
    let forged = attack(&w.v1, R1, |tx| {
        tx.put_object(ROOT, "visits", ObjType::Map).map(drop)
    });
    refused_by_server(&w.server, &w.v1.auth, &forged, "immutable");
    // Staff cannot either.
    let forged = attack(&w.staff, R1, |tx| {
        let visits = at(&*tx, &["visits"]);
        tx.delete(&visits, VISIT_2.to_string().as_str())
    });
    refused_by_server(&w.server, &w.staff.auth, &forged, "visit_removed");
    // The tombstone is accepted, and the visit stays.
    let forged = attack(&w.v1, R1, |tx| put_tombstone(tx, VISIT_1, true));
    accepted_by_server(&w.server, &w.v1.auth, &forged);
    let res = stored_resident(&w.server, R1);
    assert_eq!(res.visits.len(), 2);
    assert_eq!(
        res.live_visits().map(|v| v.id).collect::<Vec<_>>(),
        [VISIT_2]
    );
}

#[test]
fn server_refuses_changes_by_an_actor_not_registered_to_the_device() {
    let w = world();
    let author = VOLUNTEER_1.to_string();
    let notes = |tx: &mut Tx<'_>| put_notes(tx, VISIT_1, "补记");
    // An actor nobody registered, and the actor of volunteer 2's phone.
    for foreign in [actor(66), actor(3)] {
        let doc = copy_of(&w.v1, R1).with_actor(foreign);
        let forged = forge(doc, R1.into(), Some(&author), NOW, notes);
        let response = refused_by_server(&w.server, &w.v1.auth, &forged, codes::FOREIGN_ACTOR);
        assert_eq!(response.rejections[0].code, "foreign_actor");
    }
    // The device's own actor: accepted.
    accepted_by_server(&w.server, &w.v1.auth, &attack(&w.v1, R1, notes));
}

#[test]
fn server_refuses_a_change_signed_by_another_user() {
    let w = world();
    let notes = |tx: &mut Tx<'_>| put_notes(tx, VISIT_1, "补记");
    let v2 = VOLUNTEER_2.to_string();
    let staff = STAFF_A.to_string();
    for author in [Some(v2.as_str()), Some(staff.as_str()), Some("admin"), None] {
        let forged = forge(copy_of(&w.v1, R1), R1.into(), author, NOW, notes);
        refused_by_server(&w.server, &w.v1.auth, &forged, "wrong_author");
    }
    accepted_by_server(&w.server, &w.v1.auth, &attack(&w.v1, R1, notes));
}

#[test]
fn server_refuses_a_volunteer_writing_outside_their_scope() {
    let w = world();
    // R2 was never delivered to volunteer 1; their modified app got a copy elsewhere.
    assert!(w.v1.replica.case_file(R2.into()).expect("load").is_none());
    let leaked = copy_of(&w.staff, R2).with_actor(actor(2));
    let author = VOLUNTEER_1.to_string();
    let forged = forge(leaked, R2.into(), Some(&author), NOW, |tx| {
        put_profile(tx, "needs", ScalarValue::Str("无".into()))
    });
    refused_by_server(&w.server, &w.v1.auth, &forged, "out_of_scope");
    // Their own resident: accepted.
    let forged = attack(&w.v1, R1, |tx| {
        put_profile(tx, "needs", ScalarValue::Str("无".into()))
    });
    accepted_by_server(&w.server, &w.v1.auth, &forged);
}

#[test]
fn server_refuses_staff_moving_a_resident_out_of_their_scope() {
    let mut w = world();
    let to_b = |tx: &mut Tx<'_>| tx.put(ROOT, "station", bytes(STATION_B.0));
    refused_by_server(
        &w.server,
        &w.staff.auth,
        &attack(&w.staff, R1, to_b),
        "out_of_scope",
    );
    refused_by_server(
        &w.server,
        &w.v1.auth,
        &attack(&w.v1, R1, to_b),
        "role_not_allowed",
    );
    // The coordinator may; the resident then leaves staff A's phone.
    w.coord.edit(R1, |f, e| {
        f.set_station(e, STATION_B).expect("move");
    });
    sync_accepted(&mut w.coord, &w.server, R1);
    assert_eq!(stored_resident(&w.server, R1).station, STATION_B);
    let reports = w.staff.sync(&w.server);
    assert!(
        reports.iter().any(|r| r.purged.contains(&R1.into())),
        "{reports:#?}"
    );
}

#[test]
fn server_refuses_garbage_bytes_as_a_change() {
    let w = world();
    let garbage = Forged {
        doc: R1.into(),
        heads: Vec::new(),
        changes: vec![b"definitely not an automerge change".to_vec()],
    };
    refused_by_server(&w.server, &w.v1.auth, &garbage, codes::MALFORMED);
    let good = attack(&w.v1, R1, |tx| put_notes(tx, VISIT_1, "补记"));
    // A real change cut short.
    let mut cut = good.clone();
    let half = cut.changes[0].len() / 2;
    cut.changes[0].truncate(half);
    refused_by_server(&w.server, &w.v1.auth, &cut, "malformed");
    // A good change with garbage after it: the whole upload is refused.
    let mut mixed = good.clone();
    mixed.changes.push(vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0]);
    refused_by_server(&w.server, &w.v1.auth, &mixed, "malformed");
    accepted_by_server(&w.server, &w.v1.auth, &good);
}

#[test]
fn server_refuses_a_volunteer_registering_a_resident() {
    let mut w = world();
    // Volunteer 1 is assigned R3 before staff registered it; their app builds the file.
    let mut auth = w.v1.auth.clone();
    auth.principal = volunteer(VOLUNTEER_1, &[R1, R3]);
    let author = VOLUNTEER_1.to_string();
    let doc = Automerge::new().with_actor(actor(2));
    let forged = forge(doc, R3.into(), Some(&author), NOW, |tx| {
        raw_case_file(tx, R3, STATION_A, VOLUNTEER_1)
    });
    refused_by_server(&w.server, &auth, &forged, "role_not_allowed");
    assert_eq!(stored_heads(&w.server, R3.into()), None);
    // Nor staff at a station not theirs.
    let author = STAFF_A.to_string();
    let doc = Automerge::new().with_actor(actor(1));
    let forged = forge(doc, R3.into(), Some(&author), NOW, |tx| {
        raw_case_file(tx, R3, STATION_B, STAFF_A)
    });
    refused_by_server(&w.server, &w.staff.auth, &forged, "out_of_scope");
    assert_eq!(stored_heads(&w.server, R3.into()), None);
    // Staff register at their own station.
    let file = new_case_file(w.staff.principal(), actor(1), R3, STATION_A);
    w.staff.replica.save_case_file(&file).expect("save");
    sync_accepted(&mut w.staff, &w.server, R3);
    assert_eq!(stored_resident(&w.server, R3).station, STATION_A);
}

#[test]
fn server_refuses_undoing_a_tombstone() {
    let mut w = world();
    w.v1.edit(R1, |f, e| {
        f.tombstone_visit(e, VISIT_1).expect("tombstone");
    });
    sync_accepted(&mut w.v1, &w.server, R1);
    w.staff.sync(&w.server);
    let forged = attack(&w.v1, R1, |tx| put_tombstone(tx, VISIT_1, false));
    refused_by_server(&w.server, &w.v1.auth, &forged, "immutable");
    let forged = attack(&w.staff, R1, |tx| {
        let v = visit_obj(&*tx, VISIT_1);
        tx.delete(&v, "tombstoned")
    });
    refused_by_server(&w.server, &w.staff.auth, &forged, "immutable");
    // Staff tombstone the other visit; both stay tombstoned.
    let forged = attack(&w.staff, R1, |tx| put_tombstone(tx, VISIT_2, true));
    accepted_by_server(&w.server, &w.staff.auth, &forged);
    let res = stored_resident(&w.server, R1);
    assert!(res.visits.iter().all(|v| v.tombstoned));
}

#[test]
fn server_refuses_a_visit_logged_under_another_volunteers_id() {
    let w = world();
    let forged = attack(&w.v1, R1, |tx| {
        raw_visit(tx, NEW_VISIT, VOLUNTEER_2, NOW - HOUR).map(drop)
    });
    refused_by_server(&w.server, &w.v1.auth, &forged, "not_owner");
    let forged = attack(&w.v1, R1, |tx| {
        raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR).map(drop)
    });
    accepted_by_server(&w.server, &w.v1.auth, &forged);
    let res = stored_resident(&w.server, R1);
    let v = res
        .visits
        .iter()
        .find(|v| v.id == NEW_VISIT)
        .expect("logged");
    assert_eq!(v.volunteer, VOLUNTEER_1);
}

#[test]
fn server_refuses_restricted_profile_fields_from_a_volunteer() {
    let mut w = world();
    let writes: [(&str, ScalarValue); 4] = [
        ("name", ScalarValue::Str("王秀英".into())),
        ("birth_year", ScalarValue::Int(1950)),
        ("risk_level", ScalarValue::Str("low".into())),
        ("visit_every_days", ScalarValue::Int(30)),
    ];
    for (key, value) in writes.clone() {
        let forged = attack(&w.v1, R1, |tx| put_profile(tx, key, value));
        refused_by_server(&w.server, &w.v1.auth, &forged, "role_not_allowed");
    }
    let forged = attack(&w.v1, R1, |tx| {
        put_profile(tx, "address", ScalarValue::Str("华沙六村 14号".into()))
    });
    accepted_by_server(&w.server, &w.v1.auth, &forged);
    // Staff may, all four in one change (on top of the volunteer's).
    w.staff.sync(&w.server);
    let forged = attack(&w.staff, R1, |tx| {
        for (key, value) in writes {
            put_profile(tx, key, value)?;
        }
        Ok(())
    });
    accepted_by_server(&w.server, &w.staff.auth, &forged);
    let p = stored_resident(&w.server, R1).profile;
    assert_eq!(
        (
            p.name.as_str(),
            p.birth_year,
            p.risk_level,
            p.visit_every_days
        ),
        ("王秀英", Some(1950), Some(RiskLevel::Low), Some(30))
    );
}

#[test]
fn server_refuses_follow_up_and_comment_tampering() {
    let w = world();
    // Volunteer 2 does not own the ticket.
    let forged = attack(&w.v2, R1, |tx| {
        let t = ticket_obj(&*tx, TICKET);
        tx.put(&t, "status", "closed")
    });
    refused_by_server(&w.server, &w.v2.auth, &forged, "not_owner");
    // Nobody retitles it.
    let forged = attack(&w.staff, R1, |tx| {
        let t = ticket_obj(&*tx, TICKET);
        tx.put(&t, "title", "不用管了")
    });
    refused_by_server(&w.server, &w.staff.auth, &forged, "immutable");
    // Nobody edits a comment, its author included.
    let forged = attack(&w.v1, R1, |tx| {
        let c = comment_obj(&*tx, TICKET, COMMENT);
        tx.put(&c, "text", "改了")
    });
    refused_by_server(&w.server, &w.v1.auth, &forged, "immutable");
    // Nobody comments under another's name.
    let forged = attack(&w.v2, R1, |tx| {
        raw_comment(tx, TICKET, NEW_COMMENT, VOLUNTEER_1, "我不去了").map(drop)
    });
    refused_by_server(&w.server, &w.v2.auth, &forged, "invalid");
    // The owner closes it; volunteer 2 comments under their own name.
    let forged = attack(&w.v1, R1, |tx| {
        let t = ticket_obj(&*tx, TICKET);
        tx.put(&t, "status", "closed")
    });
    accepted_by_server(&w.server, &w.v1.auth, &forged);
    let mut v2 = copy_of(&w.v2, R1);
    let mut stored = match pollster::block_on(w.server.load(R1.into())) {
        Ok(d) => d.expect("stored"),
        Err(never) => match never {},
    };
    v2.merge(&mut stored).expect("merge");
    let author = VOLUNTEER_2.to_string();
    let forged = forge(v2, R1.into(), Some(&author), NOW, |tx| {
        raw_comment(tx, TICKET, NEW_COMMENT, VOLUNTEER_2, "我周六也去").map(drop)
    });
    accepted_by_server(&w.server, &w.v2.auth, &forged);
    let t = &stored_resident(&w.server, R1).follow_ups[0];
    assert_eq!(t.status, FollowUpStatus::Closed);
    assert_eq!(t.comments.len(), 2);
}

#[test]
fn server_refuses_catalog_edits_by_staff_and_deleted_entries() {
    let w = world();
    let station = STATION_A.0.to_string();
    let new_type = |tx: &mut Tx<'_>| {
        let list = at(&*tx, &["service_types"]);
        let e = tx.put_object(&list, uuid(0x53).to_string().as_str(), ObjType::Map)?;
        tx.put(&e, "name", "测血压")?;
        tx.put(&e, "name_en", "")?;
        tx.put(&e, "archived", false)
    };
    for phone in [&w.staff, &w.v1] {
        let forged = attack_catalog(phone, new_type);
        refused_by_server(&w.server, &phone.auth, &forged, "role_not_allowed");
    }
    let forged = attack_catalog(&w.coord, |tx| {
        let list = at(&*tx, &["stations"]);
        tx.delete(&list, station.as_str())
    });
    refused_by_server(&w.server, &w.coord.auth, &forged, "immutable");
    // The coordinator adds and archives.
    let forged = attack_catalog(&w.coord, |tx| {
        new_type(tx)?;
        let e = at(&*tx, &["stations", station.as_str()]);
        tx.put(&e, "archived", true)
    });
    accepted_by_server(&w.server, &w.coord.auth, &forged);
}

#[test]
fn server_refuses_invalid_values() {
    let w = world();
    let cases: [(&str, RawWrite); 5] = [
        ("invalid", |tx| {
            raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR)?;
            let c = at(
                &*tx,
                &["visits", NEW_VISIT.to_string().as_str(), "condition"],
            );
            tx.put(&c, "systolic", 301)
        }),
        ("invalid", |tx| {
            raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW + 2 * DAY).map(drop)
        }),
        ("invalid", |tx| {
            let v = raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR)?;
            tx.put(&v, "notes", text(4001))
        }),
        ("invalid", |tx| {
            raw_visit_without(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR, &["condition"]).map(drop)
        }),
        ("unknown_field", |tx| {
            let v = visit_obj(&*tx, VISIT_1);
            tx.put(&v, "colour", "blue")
        }),
    ];
    for (code, write) in cases {
        refused_by_server(&w.server, &w.v1.auth, &attack(&w.v1, R1, write), code);
    }
    // A change stamped two days ahead.
    let author = VOLUNTEER_1.to_string();
    let forged = forge(
        copy_of(&w.v1, R1),
        R1.into(),
        Some(&author),
        NOW + 2 * DAY,
        |tx| put_notes(tx, VISIT_1, "补记"),
    );
    refused_by_server(&w.server, &w.v1.auth, &forged, "invalid");
    let forged = attack(&w.v1, R1, |tx| {
        raw_visit(tx, NEW_VISIT, VOLUNTEER_1, NOW - HOUR).map(drop)
    });
    accepted_by_server(&w.server, &w.v1.auth, &forged);
}

#[test]
fn server_refuses_a_batch_whole_when_one_change_is_bad() {
    let w = world();
    let mut doc = copy_of(&w.v1, R1);
    let author = VOLUNTEER_1.to_string();
    let start = doc.get_heads();
    commit_raw(&mut doc, Some(&author), NOW, |tx| {
        put_notes(tx, VISIT_1, "补记")
    });
    commit_raw(&mut doc, Some(&author), NOW, |tx| {
        let visits = at(&*tx, &["visits"]);
        tx.delete(&visits, VISIT_2.to_string().as_str())
    });
    let forged = Forged {
        doc: R1.into(),
        heads: doc.get_heads(),
        changes: doc
            .get_changes(&start)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect(),
    };
    assert_eq!(forged.changes.len(), 2);
    refused_by_server(&w.server, &w.v1.auth, &forged, "visit_removed");
    let res = stored_resident(&w.server, R1);
    let v = res.visits.iter().find(|v| v.id == VISIT_1).expect("visit");
    assert_eq!(v.record.notes, record(0).notes);
}

#[test]
fn honest_phones_sync_on_after_an_attack() {
    let mut w = world();
    let forged = attack(&w.v1, R1, |tx| {
        let visits = at(&*tx, &["visits"]);
        tx.delete(&visits, VISIT_2.to_string().as_str())
    });
    refused_by_server(&w.server, &w.v1.auth, &forged, "visit_removed");
    // The same device goes on syncing honestly.
    w.v1.edit(R1, |f, e| {
        f.log_visit(e, NEW_VISIT, &record(NOW - HOUR)).expect("log");
    });
    sync_accepted(&mut w.v1, &w.server, R1);
    w.v2.sync(&w.server);
    assert_eq!(w.v2.hydrate(R1), w.v1.hydrate(R1));
    assert_eq!(w.v2.hydrate(R1).visits.len(), 3);
    assert_eq!(w.server.quarantined().len(), 1);
}

/// Two phones log a visit under the same id without having seen each other's. The
/// server holds the first; the second is refused as replacing it, whichever of the two
/// Automerge's tie-break would show, so neither record is hidden as a conflict loser.
#[test]
fn a_concurrent_visit_under_a_taken_id_is_refused_whichever_would_show() {
    let (sa, p1, p2) = (staff_a(), vol1(), vol2());
    let base = new_case_file(&sa, actor(1), R1, STATION_A);
    let saved = base.doc().save();
    let mut shown = BTreeSet::new();
    for (first, second) in [(3, 4), (4, 3)] {
        let mut a = CaseFile::load(&saved, actor(first)).unwrap();
        let mut b = CaseFile::load(&saved, actor(second)).unwrap();
        a.log_visit(&editor(&p1), NEW_VISIT, &record(NOW - HOUR))
            .unwrap();
        b.log_visit(&editor(&p2), NEW_VISIT, &record(NOW - 2 * HOUR))
            .unwrap();
        let mut server = a.doc().clone();
        let before = server.get_heads();
        let changes = b.doc().get_changes(&base.doc().get_heads());
        server.apply_changes(changes.clone()).unwrap();
        let merged = CaseFile::from_doc(server.clone())
            .unwrap()
            .hydrate()
            .unwrap();
        shown.insert(merged.visits[0].volunteer);
        assert_eq!(
            rules::check(&editor(&p2), &server, &before, &changes),
            Err(Violation::VisitRemoved(NEW_VISIT)),
            "actors {first} then {second}"
        );
    }
    assert_eq!(shown, BTreeSet::from([VOLUNTEER_1, VOLUNTEER_2]));
}
