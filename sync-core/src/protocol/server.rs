//! The server's half of a sync: stored state + request → response, with every duty of
//! `DESIGN.md` but authentication (the host authenticates and hands in a
//! [`DeviceAuth`]): scope, authorship, rules on a loaded copy, atomic append or
//! quarantine, receipts, deliveries, purges and the new cursor.

use super::envelope::*;
use super::forward::Taken;
use super::store::*;
use crate::doc::catalog::CatalogDoc;
use crate::doc::{DocKind, header, migrate};
use crate::ids::{DeviceId, DocId, StationId, Timestamp};
use crate::model::{Catalog, Principal};
use crate::rules::{self, Editor, Violation};
use automerge::sync::{Message, State, SyncDoc};
use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The authenticated device a request comes from.
#[derive(Clone, Debug)]
pub struct DeviceAuth {
    /// The device.
    pub device: DeviceId,
    /// Its user, role and resolved scope.
    pub principal: Principal,
    /// The Automerge actor ids registered to this device. Changes by any other actor
    /// are refused: nobody writes under another device's name.
    pub actors: Vec<ActorId>,
}

/// Limits on one response.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Stop adding deliveries once the response holds this many bytes (at least one
    /// document is always delivered).
    pub response_bytes: usize,
    /// Feed entries read per request.
    pub feed_entries: usize,
    /// Retries when another writer moves a document's heads.
    pub append_retries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            response_bytes: 4 << 20,
            feed_entries: 5_000,
            append_retries: 8,
        }
    }
}

/// Protocol codes for rejections that are not rule violations.
pub mod codes {
    /// A change or sync message does not parse.
    pub const MALFORMED: &str = "malformed";
    /// A change names an actor not registered to the device.
    pub const FOREIGN_ACTOR: &str = "foreign_actor";
    /// The document's id does not match its header.
    pub const WRONG_DOCUMENT: &str = "wrong_document";
    /// The document is busy; retry. Nothing was stored and nothing quarantined.
    pub const BUSY: &str = "busy";
    /// The device has used up its daily quarantine allowance: the refused batch was
    /// not stored, and the phone keeps it.
    pub const QUARANTINE_FULL: &str = "quarantine_full";
    /// A refused batch cannot be accepted: it builds on changes the server lacks.
    pub const MISSING_DEPENDENCIES: &str = "missing_dependencies";
    /// The document was erased (a person's decision, at the resident's request or by
    /// the retention rule): nothing of it is taken or kept, and the phone deletes it.
    pub const ERASED: &str = "erased";
    /// A station hub does not hold this document (another station's resident, or one
    /// whose history it lacks): nothing was stored and nothing quarantined, and the
    /// phone keeps its changes for the district server.
    pub const NOT_HERE: &str = "not_here";
    /// Changes under repair build on another device's that this server lacks (a
    /// station hub took both and has not handed them on yet): nothing of them was
    /// stored or quarantined; the phone keeps them and the repair goes on at its next
    /// sync.
    pub const NEEDS_OTHERS: &str = "needs_others";
    /// The phone's copy holds, beyond the record, only other devices' changes that
    /// were refused here (kept in the quarantine for a person, or decided), or that
    /// the district server refused after a station hub took them: the phone starts its
    /// copy again from the record. Nothing of the phone's own is dropped, and nothing
    /// was stored or quarantined.
    pub const NOT_IN_RECORD: &str = "not_in_record";
    /// The phone's copy holds other devices' changes this server lacks and did not
    /// refuse (it was restored from a backup): they come back from their own devices.
    /// Nothing was stored or quarantined; the phone keeps its copy.
    pub const HELD_FOR_OTHERS: &str = "held_for_others";
    /// Changes under repair build on another device's that a person dismissed from the
    /// quarantine: they can never join the record as they are, so they are kept in
    /// the quarantine themselves, for a person to decide on, and the phone sets them
    /// aside.
    pub const BUILDS_ON_DISMISSED: &str = "builds_on_dismissed";
}

/// Why repaired changes are refused after what they build on was dismissed.
const BUILDS_ON_DISMISSED_REASON: &str = "these changes build on another device's that a coordinator dismissed; they are kept for a coordinator to decide on";

/// Why a phone's copy starts again from the record.
const NOT_IN_RECORD_REASON: &str = "this copy held another device's changes that were refused and wait for a person's decision; it starts again from the record";

/// Why a phone's copy of other devices' changes is left alone.
const HELD_FOR_OTHERS_REASON: &str = "this copy holds another device's changes that this server does not hold; they come back from that device";

/// Why repaired changes wait.
const NEEDS_OTHERS_REASON: &str = "these changes build on another device's that this server does not hold yet; the phone keeps them and hands them over once that device (or the station hub) has";

/// Why a station hub leaves an upload to the district server.
const NOT_HERE_REASON: &str = "this station hub does not hold this resident's file; the phone keeps the changes for the district server";

/// How much of the district a server holds, and for whom it checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// The district server: everything.
    District,
    /// The district server taking a request a station's hub forwarded: only that
    /// station's case files may be written; anything else is refused (quarantined).
    Forwarded(StationId),
    /// A station hub: it holds one station's case files (and the district's catalog).
    /// What it does not hold is left to the district server: neither taken nor
    /// refused, and a phone's copy of it neither repaired nor purged.
    Hub(StationId),
}

impl Reach {
    fn station(self) -> Option<StationId> {
        match self {
            Reach::District => None,
            Reach::Forwarded(s) | Reach::Hub(s) => Some(s),
        }
    }
}

/// Why an upload to an erased document is refused.
const ERASED_REASON: &str =
    "this resident's data was erased from the server; the phone deletes its copy";

/// A coordinator accepts a refused batch (`raw`, the quarantined changes of `doc`):
/// the changes are checked again by the rules as the device's user (`auth`, whose
/// scope is the deciding coordinator's: the person vouches for where the visit
/// belongs) with the clock of the changes themselves (the person vouches for when),
/// and appended like an upload of that device, so authorship stays the device's. Every
/// other rule still holds: what a volunteer may not write stays refused. Returns the
/// refusal's code and reason when the batch still cannot be stored; nothing is then
/// stored or quarantined again.
pub async fn accept_refused<S: ServerStore>(
    store: &S,
    auth: &DeviceAuth,
    doc: DocId,
    raw: &[Vec<u8>],
    now: Timestamp,
) -> Result<Result<(), (String, String)>, S::Error> {
    let mut changes = Vec::with_capacity(raw.len());
    for bytes in raw {
        match parse_change(bytes) {
            Ok(c) => changes.push(c),
            Err(reason) => return Ok(Err((codes::MALFORMED.to_owned(), reason))),
        }
    }
    let clock = changes.iter().map(Change::timestamp).max().unwrap_or(now);
    let mut step = Step::new(store, auth, now, clock, Limits::default(), Reach::District);
    if let Err(reason) = step.checker.check_authorship(&changes) {
        return Ok(Err((codes::FOREIGN_ACTOR.to_owned(), reason)));
    }
    let catalog = step.district_catalog().await?;
    Ok(
        match step
            .apply_and_store(doc, &changes, catalog.as_ref())
            .await?
        {
            Ok(Applied::Stored { .. }) => Ok(()),
            Ok(Applied::MissingDeps) => Err((
                codes::MISSING_DEPENDENCIES.to_owned(),
                "the changes build on changes the server does not hold".to_owned(),
            )),
            Err((code, _)) if code == codes::BUSY => {
                Err((code, "the document is busy; try again".to_owned()))
            }
            Err(refused) => Err(refused),
        },
    )
}

/// Why a batch answered `busy` was not stored.
const BUSY_REASON: &str = "the document is busy; sync again";

/// A failure of the step: storage only. Everything wrong with the request itself
/// becomes a rejection in the response.
#[derive(Debug, thiserror::Error)]
pub enum StepError<E: std::error::Error + 'static> {
    /// The request bytes are not a sync request.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The store failed.
    #[error("storage failed: {0}")]
    Store(#[source] E),
}

/// Decodes a request (of any version a server still reads), runs [`handle_sync`] and
/// encodes the response in the request's version.
pub async fn handle_sync_bytes<S: ServerStore>(
    store: &S,
    auth: &DeviceAuth,
    request: &[u8],
    now: Timestamp,
    limits: Limits,
) -> Result<Vec<u8>, StepError<S::Error>> {
    let (request, version) = SyncRequest::decode_versioned(request)?;
    let response = handle_sync(store, auth, &request, now, limits)
        .await
        .map_err(StepError::Store)?;
    Ok(response.encode_version(version))
}

/// One sync exchange on the server.
pub async fn handle_sync<S: ServerStore>(
    store: &S,
    auth: &DeviceAuth,
    request: &SyncRequest,
    now: Timestamp,
    limits: Limits,
) -> Result<SyncResponse, S::Error> {
    sync_step(store, auth, request, now, limits, Reach::District).await
}

/// One sync exchange on a station hub, which holds `station`'s case files and the
/// district's catalog. Everything is as on the district server but for two things.
/// What the hub does not hold (an upload to a document it has no trace of that is not
/// a new case file of its station: another station's resident, or one whose history
/// it lacks) is answered `not_here`, and the phone's copies of such documents are
/// neither repaired nor purged. And the hub quarantines nothing: a refusal (with the
/// rules' code and reason) carries quarantine number 0, so the phone keeps the changes
/// and hands them to the district server, where a person can decide; the hub's copy of
/// scope may lag the district server's, so nor does it purge a document it just
/// refused.
pub async fn handle_sync_at_hub<S: ServerStore>(
    store: &S,
    auth: &DeviceAuth,
    station: StationId,
    request: &SyncRequest,
    now: Timestamp,
    limits: Limits,
) -> Result<SyncResponse, S::Error> {
    sync_step(store, auth, request, now, limits, Reach::Hub(station)).await
}

async fn sync_step<S: ServerStore>(
    store: &S,
    auth: &DeviceAuth,
    request: &SyncRequest,
    now: Timestamp,
    limits: Limits,
    reach: Reach,
) -> Result<SyncResponse, S::Error> {
    let mut step = Step::new(store, auth, now, request.clock, limits, reach);

    let recorded = store.device_docs(auth.device).await?;
    let known = match &request.held {
        Some(list) => Some(list.iter().copied().collect::<BTreeSet<_>>()),
        None if held_digest(&recorded) == request.held_digest => Some(recorded.clone()),
        None => None,
    };

    step.take_uploads(&request.uploads).await?;
    for message in &request.fallback {
        step.fallback(message).await?;
    }
    if !request.refused.is_empty() {
        step.response.decisions = store.decisions(auth.device, &request.refused).await?;
    }

    match known {
        Some(known) => step.deliver(request.cursor, known, &recorded).await?,
        None => {
            // The phone holds something other than what we recorded (a response was
            // lost): ask for its list before delivering anything.
            step.response.need_held = true;
            step.response.cursor = request.cursor;
        }
    }
    step.hold_back_early_receipts();
    Ok(step.response)
}

/// A phone's request that a station hub took while the district server was out of
/// reach, and now forwards. The host has checked that the phone sealed it
/// ([`super::seal`]) and hands in the phone's device, so authorship stays the
/// phone's: its uploads are checked and stored exactly as if the phone had synced
/// here (every rule, the device's actors, the user's scope, judged by the phone's
/// clock), restricted to the hub's `station`. Refusals are quarantined here, under the
/// device. Nothing is delivered and the device's cursor and held documents are left
/// alone: the phone talks to the hub, which has its own feed. Receipts are final.
pub async fn handle_forwarded<S: ServerStore>(
    store: &S,
    auth: &DeviceAuth,
    station: StationId,
    request: &SyncRequest,
    now: Timestamp,
    limits: Limits,
) -> Result<Taken, S::Error> {
    let mut step = Step::new(
        store,
        auth,
        now,
        request.clock,
        limits,
        Reach::Forwarded(station),
    );
    step.take_uploads(&request.uploads).await?;
    Ok(Taken {
        receipts: step.response.receipts,
        rejections: step.response.rejections,
        missing: step.response.fallback.iter().map(|f| f.doc).collect(),
    })
}

struct Step<'a, S> {
    reach: Reach,
    store: &'a S,
    auth: &'a DeviceAuth,
    now: Timestamp,
    limits: Limits,
    response: SyncResponse,
    /// Changes the phone sent, per document, so they are not sent back.
    uploaded: BTreeMap<DocId, BTreeSet<ChangeHash>>,
    /// Documents with accepted uploads.
    accepted: BTreeSet<DocId>,
    /// Documents this request's uploads created: everything the feed holds of them is
    /// the phone's own.
    created: BTreeSet<DocId>,
    /// Per receipted document, the feed number that holds what was receipted: the
    /// receipt goes out only in a response whose cursor reaches it (see
    /// [`Step::hold_back_early_receipts`]).
    receipt_floor: BTreeMap<DocId, u64>,
    /// The district's catalog, once loaded (inner `None`: the district has none).
    catalog: Option<Option<Arc<Catalog>>>,
    /// What checking an upload needs, shared with checks running elsewhere.
    checker: Arc<Checker>,
    /// Run each upload's check through [`ServerStore::run_check`].
    offload: bool,
}

/// What checking a device's changes needs, owned, so that a check can run on another
/// thread.
#[derive(Debug)]
struct Checker {
    principal: Principal,
    /// The actors registered to the device.
    actors: Vec<ActorId>,
    /// The clock the rules judge by: the server's, or the phone's where it runs ahead
    /// (a phone offline for weeks drifts, and a visit dated by a fast clock is still a
    /// visit; the host records the skew for coordinators). A slow clock needs nothing:
    /// its times are in the past.
    now: Timestamp,
    /// The one station whose case files the changes may touch, for a request a
    /// station's hub forwards, or on the station's hub (the user's scope may reach
    /// further).
    station: Option<StationId>,
    /// On a station hub: a document beyond its station is left to the district
    /// server (`not_here`) rather than refused.
    hub: bool,
}

/// Case files checked and stored at once within one request.
const UPLOADS_AT_ONCE: usize = 32;

/// What storing a device's changes to one document came to.
enum Applied {
    /// Stored (or there was nothing new): the document with them applied, the feed
    /// number that holds them, and whether they created it (the server had none).
    Stored {
        doc: Box<Automerge>,
        floor: u64,
        created: bool,
    },
    /// The server lacks what they build on.
    MissingDeps,
}

enum Checked {
    /// Stored, or there was nothing new to store: the feed number that holds them.
    Stored(u64),
    /// The server lacks the changes' dependencies.
    MissingDeps,
}

/// What became of one document's upload, for the step to record in its response.
enum Uploaded {
    /// Stored now or before: the receipt's heads, the feed number that holds them, and
    /// whether the upload created the document.
    Stored {
        heads: Vec<Hash>,
        floor: u64,
        created: bool,
    },
    /// The changes build on changes the server lacks: Automerge's own sync message,
    /// from what the server holds, starts the repair, asking for those by hash.
    MissingDeps(Option<Message>, Vec<ChangeHash>),
    /// Refused: the code and the reason.
    Refused(String, String),
}

/// New changes that passed every check, ready to store.
enum Vetted {
    /// The server lacks the changes' dependencies.
    MissingDeps,
    /// Nothing new.
    Nothing,
    Ready {
        new: Vec<Change>,
        place: DocPlace,
    },
}

impl Checker {
    fn editor(&self) -> Editor<'_> {
        Editor {
            principal: &self.principal,
            now: self.now,
        }
    }

    /// Whether a document sitting at `place` lies within the station a forwarded
    /// request is restricted to (the district's catalog always does).
    fn within_station(&self, place: &DocPlace) -> bool {
        match (self.station, place.station) {
            (Some(only), Some(station)) => only == station,
            _ => true,
        }
    }

    fn check_authorship(&self, changes: &[Change]) -> Result<(), String> {
        for c in changes {
            if !self.actors.contains(c.actor_id()) {
                return Err(format!(
                    "change {} was made by actor {}, which is not registered to this device",
                    c.hash(),
                    c.actor_id()
                ));
            }
        }
        Ok(())
    }

    /// What the new changes in `doc` since `before` are, checked against the rules, or
    /// why they are refused. Reading a document that a device's crafted (well-formed,
    /// correctly hashed) change has made inconsistent can panic inside Automerge, so
    /// all of it runs guarded: a panic here refuses the upload as malformed, and the
    /// document it read is dropped by the caller.
    fn vet(
        &self,
        id: DocId,
        doc: &Automerge,
        before: &[ChangeHash],
        missing_deps_fall_back: bool,
        catalog: Option<&Catalog>,
    ) -> Result<Vetted, (String, String)> {
        let vet = || {
            if missing_deps_fall_back && !doc.get_missing_deps(&[]).is_empty() {
                return Ok(Vetted::MissingDeps);
            }
            // Not taken from the upload itself: collecting the changes from the
            // document also proves it consistent (a crafted change that leaves it
            // otherwise panics here, guarded, rather than later in the store).
            let new = doc.get_changes(before);
            if new.is_empty() {
                return Ok(Vetted::Nothing);
            }
            if let Err(reason) = self.check_authorship(&new) {
                return Err((codes::FOREIGN_ACTOR.to_owned(), reason));
            }
            match header(doc) {
                Ok(Some(h)) if DocId(h.id) == id => {}
                Ok(Some(h)) => {
                    return Err((
                        codes::WRONG_DOCUMENT.to_owned(),
                        format!("document {id} declares the id {}", h.id),
                    ));
                }
                _ => {}
            }
            if let Err(v) = rules::check_with_catalog(&self.editor(), doc, before, &new, catalog) {
                return Err((v.code().to_owned(), v.to_string()));
            }
            let Some(place) = place_of(doc) else {
                let v = Violation::Invalid {
                    field: "document".into(),
                    reason: "has no district".into(),
                };
                return Err((v.code().to_owned(), v.to_string()));
            };
            if !self.within_station(&place) {
                if self.hub {
                    return Err((codes::NOT_HERE.to_owned(), NOT_HERE_REASON.to_owned()));
                }
                let v = Violation::OutOfScope;
                return Err((v.code().to_owned(), v.to_string()));
            }
            Ok(Vetted::Ready { new, place })
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(vet)).unwrap_or_else(|_| {
            Err((
                codes::MALFORMED.to_owned(),
                "the changes leave the document inconsistent: Automerge refused them".to_owned(),
            ))
        })
    }

    /// Applies `changes` to `doc` and checks them: the part of an upload that takes
    /// CPU, not storage. Returns the document, its heads before, and the verdict.
    fn apply_and_vet(
        &self,
        id: DocId,
        mut doc: Automerge,
        changes: Vec<Change>,
        catalog: Option<&Catalog>,
    ) -> (Automerge, Vec<ChangeHash>, Result<Vetted, (String, String)>) {
        let before = doc.get_heads();
        if let Err(e) = untrusted(|| doc.apply_changes(changes)) {
            let reason = format!("the changes do not apply: {e}");
            return (doc, before, Err((codes::MALFORMED.to_owned(), reason)));
        }
        let vetted = self.vet(id, &doc, &before, true, catalog);
        (doc, before, vetted)
    }
}

impl<'a, S: ServerStore> Step<'a, S> {
    fn new(
        store: &'a S,
        auth: &'a DeviceAuth,
        now: Timestamp,
        clock: Timestamp,
        limits: Limits,
        reach: Reach,
    ) -> Self {
        Step {
            reach,
            store,
            auth,
            now,
            limits,
            response: SyncResponse::default(),
            uploaded: BTreeMap::new(),
            accepted: BTreeSet::new(),
            created: BTreeSet::new(),
            receipt_floor: BTreeMap::new(),
            catalog: None,
            checker: Arc::new(Checker {
                principal: auth.principal.clone(),
                actors: auth.actors.clone(),
                now: now.max(clock),
                station: reach.station(),
                hub: matches!(reach, Reach::Hub(_)),
            }),
            offload: false,
        }
    }

    /// Checks and stores a request's uploads, recording each one's receipt or refusal.
    async fn take_uploads(&mut self, uploads: &[DocUpload]) -> Result<(), S::Error> {
        // The district's catalog first: visits in the same request may name its new
        // entries.
        let catalog_doc = self.catalog_id();
        let (catalogs, cases): (Vec<&DocUpload>, Vec<&DocUpload>) =
            uploads.iter().partition(|u| u.doc == catalog_doc);
        for upload in catalogs {
            let catalog = self.district_catalog().await?;
            let (hashes, uploaded) = self.upload(upload, catalog.as_ref()).await?;
            self.record(upload, hashes, uploaded).await?;
        }
        // Case files are independent of each other: several are checked and stored at
        // once, so that a station's first upload of hundreds of them shares commits (one
        // group commit on SQLite, a connection each on PostgreSQL) instead of paying one
        // each. The answers are recorded in the request's order.
        let catalog = self.district_catalog().await?;
        // With several, each one's rules run where the host says (on another core).
        self.offload = cases.len() > 1;
        let mut uploaded = Vec::with_capacity(cases.len());
        {
            // A loop rather than a stream combinator: a closure over the borrowed uploads
            // would not be general enough for the host's `Send` future.
            let mut running = FuturesOrdered::new();
            for upload in &cases {
                if running.len() == UPLOADS_AT_ONCE
                    && let Some(done) = running.next().await
                {
                    uploaded.push(done);
                }
                running.push_back(self.upload(upload, catalog.as_ref()));
            }
            while let Some(done) = running.next().await {
                uploaded.push(done);
            }
        }
        for (upload, result) in cases.into_iter().zip(uploaded) {
            let (hashes, uploaded) = result?;
            self.record(upload, hashes, uploaded).await?;
        }
        Ok(())
    }

    /// The caller's district's catalog document.
    fn catalog_id(&self) -> DocId {
        DocId::from(self.auth.principal.scope.district())
    }

    /// Refuses `bytes` for `doc`: quarantined (but a busy or erased document's), and
    /// answered with `heads`, the refused upload's heads (none for a sync message).
    async fn reject(
        &mut self,
        doc: DocId,
        heads: Vec<Hash>,
        code: &str,
        reason: String,
        bytes: Vec<Vec<u8>>,
    ) -> Result<(), S::Error> {
        let mut rejection = Rejection {
            doc,
            code: code.to_owned(),
            message: reason,
            heads,
            quarantine: 0,
        };
        // An erased document's changes are not kept anywhere: erasing was the decision.
        // A station hub keeps nothing either: its scope and catalog are copies that may
        // lag, and a person decides only on the district server. The phone keeps the
        // refused changes (quarantine number 0) and hands them over there.
        let hub = matches!(self.reach, Reach::Hub(_));
        let kept_nowhere = [
            codes::BUSY,
            codes::ERASED,
            codes::NOT_HERE,
            codes::NEEDS_OTHERS,
            codes::NOT_IN_RECORD,
            codes::HELD_FOR_OTHERS,
        ];
        if !kept_nowhere.contains(&code) && !hub {
            let kept = self
                .store
                .quarantine(Quarantined {
                    doc,
                    district: self.auth.principal.scope.district(),
                    device: self.auth.device,
                    user: self.auth.principal.user,
                    code: code.to_owned(),
                    reason: rejection.message.clone(),
                    bytes,
                    at: self.now,
                })
                .await?;
            match kept {
                Some(number) => rejection.quarantine = number,
                None => {
                    rejection.message = format!(
                        "refused ({}: {}), and this device's quarantine is full for today, \
                         so the server kept nothing: the phone keeps the changes; ask a \
                         coordinator",
                        rejection.code, rejection.message
                    );
                    rejection.code = codes::QUARANTINE_FULL.to_owned();
                }
            }
        }
        self.response.rejections.push(rejection);
        Ok(())
    }

    /// Notes that the phone's changes to `doc` are stored, in feed entry `floor` or
    /// before: the phone holds the document, and its receipt waits for that entry.
    fn stored(&mut self, doc: DocId, floor: u64) {
        let held_back = self.receipt_floor.entry(doc).or_default();
        *held_back = (*held_back).max(floor);
        self.accepted.insert(doc);
        if doc == self.catalog_id() {
            // The catalog changed: visits later in the request see it.
            self.catalog = None;
        }
    }

    /// Keeps back the receipts whose changes sit in feed entries beyond the response's
    /// cursor (the cursor stayed behind: the server asked for the held list, or the
    /// response filled up). A phone must never hold a receipt its cursor has not
    /// passed: a server restored from a backup between the two could not tell, from
    /// the cursor, that it lost the change, and the phone would never send it again.
    /// Kept back, the change stays pending on the phone, goes up again at the next
    /// sync (the server already has it) and is receipted once the cursor has caught up.
    fn hold_back_early_receipts(&mut self) {
        let cursor = self.response.cursor;
        let floor = &self.receipt_floor;
        self.response
            .receipts
            .retain(|r| floor.get(&r.doc).is_none_or(|seq| *seq <= cursor));
    }

    /// Adds a repair message to the response, asking by hash for `wanted`: what the
    /// device's changes build on that it did not send. Automerge's sync leaves out what
    /// the other side's Bloom filter seems to hold, and a filter's false positive (about
    /// one change in a hundred) would leave the same change out of every round of a
    /// repair that starts afresh each time: asked for by hash, it comes.
    fn push_fallback(&mut self, doc: DocId, message: Option<Message>, wanted: &[ChangeHash]) {
        if let Some(mut m) = message {
            m.need.extend_from_slice(wanted);
            m.need.sort_unstable();
            m.need.dedup();
            self.response.fallback.push(FallbackMessage {
                doc,
                message: Bytes(m.encode()),
            });
        }
    }

    /// Every retry found the document moved by another writer.
    async fn busy(&mut self, doc: DocId, raw: Vec<Vec<u8>>) -> Result<(), S::Error> {
        let reason = BUSY_REASON.to_owned();
        self.reject(doc, Vec::new(), codes::BUSY, reason, raw).await
    }

    /// Loads a document, migrating it forward (as the server) if it is old.
    async fn load(&self, doc: DocId) -> Result<Automerge, S::Error> {
        let Some(mut loaded) = self.store.load(doc).await? else {
            return Ok(Automerge::new());
        };
        let before = loaded.get_heads();
        if let Ok(true) = migrate::migrate(&mut loaded, self.now) {
            let hashes: Vec<ChangeHash> = loaded
                .get_changes(&before)
                .iter()
                .map(Change::hash)
                .collect();
            if let Some(place) = place_of(&loaded) {
                let changes = loaded
                    .get_changes(&before)
                    .iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect();
                // If another writer migrated first, the next load sees its migration.
                self.store
                    .append(Append {
                        doc,
                        place,
                        expected_heads: &before,
                        changes,
                        hashes,
                        after: &loaded,
                        device: None,
                        user: None,
                        received_at: self.now,
                    })
                    .await?;
            }
        }
        Ok(loaded)
    }

    /// The caller's district's catalog (what visits may name), loaded once per step.
    async fn district_catalog(&mut self) -> Result<Option<Arc<Catalog>>, S::Error> {
        if let Some(cached) = &self.catalog {
            return Ok(cached.clone());
        }
        let id = self.catalog_id();
        let catalog = self
            .store
            .load(id)
            .await?
            .and_then(|d| CatalogDoc::from_doc(d).ok())
            .and_then(|c| c.hydrate().ok())
            .map(Arc::new);
        self.catalog = Some(catalog.clone());
        Ok(catalog)
    }

    /// Whether an existing document lies in the caller's scope.
    fn in_scope(&self, doc: &Automerge) -> bool {
        match (header(doc), place_of(doc)) {
            (Ok(Some(h)), Some(place)) => {
                place.in_scope(DocId(h.id), &self.auth.principal.scope)
                    && self.checker.within_station(&place)
            }
            _ => false,
        }
    }

    /// Stores the new changes in `doc` since `before` that the rules accepted.
    async fn store_vetted(
        &self,
        id: DocId,
        doc: &Automerge,
        before: &[ChangeHash],
        vetted: Result<Vetted, (String, String)>,
    ) -> Result<Result<Checked, (String, String)>, S::Error> {
        let (new, place) = match vetted {
            Ok(Vetted::MissingDeps) => return Ok(Ok(Checked::MissingDeps)),
            Ok(Vetted::Nothing) => {
                // Stored before (a receipt that was lost): the document's latest entry
                // holds it, or an earlier one.
                let floor = self.store.doc_feed_head(id).await?;
                return Ok(Ok(Checked::Stored(floor)));
            }
            Ok(Vetted::Ready { new, place }) => (new, place),
            Err(refused) => return Ok(Err(refused)),
        };
        let outcome = self
            .store
            .append(Append {
                doc: id,
                place,
                expected_heads: before,
                changes: new.iter().map(|c| c.raw_bytes().to_vec()).collect(),
                hashes: new.iter().map(Change::hash).collect(),
                after: doc,
                device: Some(self.auth.device),
                user: Some(self.auth.principal.user),
                received_at: self.now,
            })
            .await?;
        match outcome {
            AppendOutcome::Stored(seq) => Ok(Ok(Checked::Stored(seq))),
            AppendOutcome::HeadsMoved => Ok(Err((codes::BUSY.to_owned(), String::new()))),
        }
    }

    /// Checks and stores one document's upload. Changes nothing in the step, so that
    /// several run at once; [`Step::record`] puts the outcome in the response. Returns
    /// the hashes of the changes that parsed, which are not sent back.
    async fn upload(
        &self,
        upload: &DocUpload,
        catalog: Option<&Arc<Catalog>>,
    ) -> Result<(Vec<ChangeHash>, Uploaded), S::Error> {
        let id = upload.doc;
        let mut changes = Vec::with_capacity(upload.changes.len());
        for bytes in &upload.changes {
            match parse_change(&bytes.0) {
                Ok(c) => changes.push(c),
                Err(reason) => {
                    return Ok((
                        Vec::new(),
                        Uploaded::Refused(codes::MALFORMED.into(), reason),
                    ));
                }
            }
        }
        let hashes = changes.iter().map(Change::hash).collect();
        if let Err(reason) = self.checker.check_authorship(&changes) {
            return Ok((
                hashes,
                Uploaded::Refused(codes::FOREIGN_ACTOR.into(), reason),
            ));
        }
        let uploaded = match self.apply_and_store(id, &changes, catalog).await? {
            Ok(Applied::Stored {
                doc,
                floor,
                created,
            }) => Uploaded::Stored {
                heads: upload
                    .heads
                    .iter()
                    .filter(|h| doc.get_change_by_hash(&ChangeHash::from(**h)).is_some())
                    .copied()
                    .collect(),
                floor,
                created,
            },
            Ok(Applied::MissingDeps) => {
                // We lack what these changes build on (a restored backup, say): repair
                // with Automerge's own protocol, starting from what we hold. A station
                // hub that holds nothing of the document leaves it to the district
                // server instead.
                let stored = self.load(id).await?;
                if stored.is_empty() && matches!(self.reach, Reach::Hub(_)) {
                    Uploaded::Refused(codes::NOT_HERE.into(), NOT_HERE_REASON.into())
                } else {
                    let sent: BTreeSet<ChangeHash> = changes.iter().map(Change::hash).collect();
                    let wanted: BTreeSet<ChangeHash> = changes
                        .iter()
                        .flat_map(Change::deps)
                        .filter(|d| !sent.contains(d) && stored.get_change_by_hash(d).is_none())
                        .copied()
                        .collect();
                    Uploaded::MissingDeps(
                        stored.generate_sync_message(&mut State::new()),
                        wanted.into_iter().collect(),
                    )
                }
            }
            Err((code, reason)) => Uploaded::Refused(code, reason),
        };
        Ok((hashes, uploaded))
    }

    /// Records what became of one document's upload in the response: its receipt, the
    /// start of a repair, or its refusal (quarantined).
    async fn record(
        &mut self,
        upload: &DocUpload,
        hashes: Vec<ChangeHash>,
        uploaded: Uploaded,
    ) -> Result<(), S::Error> {
        let id = upload.doc;
        self.uploaded.entry(id).or_default().extend(hashes);
        match uploaded {
            Uploaded::Stored {
                heads,
                floor,
                created,
            } => {
                if created {
                    self.created.insert(id);
                }
                self.stored(id, floor);
                self.response.receipts.push(Receipt { doc: id, heads });
                Ok(())
            }
            Uploaded::MissingDeps(message, wanted) => {
                self.push_fallback(id, message, &wanted);
                Ok(())
            }
            Uploaded::Refused(code, reason) => {
                let raw = upload.changes.iter().map(|b| b.0.clone()).collect();
                self.reject(id, upload.heads.clone(), &code, reason, raw)
                    .await
            }
        }
    }

    /// Applies a device's parsed changes to the stored document, checks and stores
    /// them, and tries again while other writers move the document. Otherwise the
    /// refusal's code and reason (`busy` when every try found the document moved).
    async fn apply_and_store(
        &self,
        id: DocId,
        changes: &[Change],
        catalog: Option<&Arc<Catalog>>,
    ) -> Result<Result<Applied, (String, String)>, S::Error> {
        for _ in 0..=self.limits.append_retries {
            let doc = self.load(id).await?;
            if doc.is_empty() && self.store.is_erased(id).await? {
                return Ok(Err((codes::ERASED.to_owned(), ERASED_REASON.to_owned())));
            }
            if !doc.is_empty() && !self.in_scope(&doc) {
                let v = Violation::OutOfScope;
                return Ok(Err((v.code().to_owned(), v.to_string())));
            }
            let created = doc.is_empty();
            let (doc, before, vetted) = if self.offload {
                let checker = Arc::clone(&self.checker);
                let catalog = catalog.cloned();
                let changes = changes.to_vec();
                self.store
                    .run_check(move || checker.apply_and_vet(id, doc, changes, catalog.as_deref()))
                    .await?
            } else {
                self.checker
                    .apply_and_vet(id, doc, changes.to_vec(), catalog.map(|c| &**c))
            };
            match self.store_vetted(id, &doc, &before, vetted).await? {
                Ok(Checked::Stored(floor)) => {
                    return Ok(Ok(Applied::Stored {
                        doc: Box::new(doc),
                        floor,
                        created,
                    }));
                }
                Ok(Checked::MissingDeps) => return Ok(Ok(Applied::MissingDeps)),
                Err((code, _)) if code == codes::BUSY => continue,
                Err(refused) => return Ok(Err(refused)),
            }
        }
        Ok(Err((codes::BUSY.to_owned(), BUSY_REASON.to_owned())))
    }

    async fn fallback(&mut self, fallback: &FallbackMessage) -> Result<(), S::Error> {
        let id = fallback.doc;
        let raw = vec![fallback.message.0.clone()];
        let message = match untrusted(|| Message::decode(&fallback.message.0)) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .reject(
                        id,
                        Vec::new(),
                        codes::MALFORMED,
                        format!("the sync message does not parse: {e}"),
                        raw,
                    )
                    .await;
            }
        };
        for _ in 0..=self.limits.append_retries {
            let mut doc = self.load(id).await?;
            let existed = !doc.is_empty();
            if !existed && matches!(self.reach, Reach::Hub(_)) {
                let reason = NOT_HERE_REASON.to_owned();
                return self
                    .reject(id, Vec::new(), codes::NOT_HERE, reason, raw)
                    .await;
            }
            if !existed && self.store.is_erased(id).await? {
                return self
                    .reject(id, Vec::new(), codes::ERASED, ERASED_REASON.to_owned(), raw)
                    .await;
            }
            if existed && !self.in_scope(&doc) {
                let v = Violation::OutOfScope;
                return self
                    .reject(id, Vec::new(), v.code(), v.to_string(), raw)
                    .await;
            }
            let before = doc.get_heads();
            let mut state = State::new();
            if let Err(e) = untrusted(|| doc.receive_sync_message(&mut state, message.clone())) {
                return self
                    .reject(
                        id,
                        Vec::new(),
                        codes::MALFORMED,
                        format!("the sync message does not apply: {e}"),
                        raw,
                    )
                    .await;
            }
            // What the changes sent build on and the message left out, to ask for.
            let wanted = doc.get_missing_deps(&[]);
            // Keep only what this device wrote and can be applied now. A phone under
            // repair may hold other devices' changes that we lost (a restored backup):
            // those come back from their own devices; changes whose dependencies are
            // still missing wait in the phone's next round. Nothing unchecked is stored.
            let mut before = before;
            let received = doc.get_changes(&before);
            let others: Vec<ChangeHash> = received
                .iter()
                .filter(|c| !self.auth.actors.contains(c.actor_id()))
                .map(Change::hash)
                .collect();
            let foreign = !others.is_empty();
            if foreign && others.len() == received.len() && doc.get_missing_deps(&[]).is_empty() {
                // Nothing of this device's own: asking again would bring the same.
                let (code, reason, heads) = if self.store.refusals(id, &others).await?.all {
                    let heads = message.heads.iter().map(|h| Hash(h.0)).collect();
                    (codes::NOT_IN_RECORD, NOT_IN_RECORD_REASON, heads)
                } else {
                    (codes::HELD_FOR_OTHERS, HELD_FOR_OTHERS_REASON, Vec::new())
                };
                return self
                    .reject(id, heads, code, reason.to_owned(), Vec::new())
                    .await;
            }
            // This device's changes that build on another device's we lack: they wait
            // until that device (or a station hub) hands those over.
            let mut waiting_on_others = false;
            if foreign || !doc.get_missing_deps(&[]).is_empty() {
                let mut keep: Vec<Change> = received
                    .into_iter()
                    .filter(|c| self.auth.actors.contains(c.actor_id()))
                    .collect();
                let own = keep.len();
                // At most twice: the second pass keeps only what applied in the first.
                loop {
                    doc = self.load(id).await?;
                    before = doc.get_heads();
                    if let Err(e) = untrusted(|| doc.apply_changes(keep)) {
                        let reason = format!("the changes do not apply: {e}");
                        return self
                            .reject(id, Vec::new(), codes::MALFORMED, reason, raw)
                            .await;
                    }
                    if doc.get_missing_deps(&[]).is_empty() {
                        break;
                    }
                    keep = doc.get_changes(&before);
                }
                waiting_on_others = foreign && doc.get_changes(&before).len() < own;
            }
            let catalog = self.district_catalog().await?;
            let vetted = self
                .checker
                .vet(id, &doc, &before, false, catalog.as_deref());
            let stored = self.store_vetted(id, &doc, &before, vetted).await?;
            if waiting_on_others && let Ok(Checked::Stored(floor)) = stored {
                self.stored(id, floor);
                let refused = self.store.refusals(id, &others).await?;
                if refused.all && refused.dismissed {
                    let heads = message.heads.iter().map(|h| Hash(h.0)).collect();
                    let reason = BUILDS_ON_DISMISSED_REASON.to_owned();
                    return self
                        .reject(id, heads, codes::BUILDS_ON_DISMISSED, reason, raw)
                        .await;
                }
                let reason = NEEDS_OTHERS_REASON.to_owned();
                return self
                    .reject(id, Vec::new(), codes::NEEDS_OTHERS, reason, raw)
                    .await;
            }
            match stored {
                Ok(Checked::Stored(floor)) => {
                    self.stored(id, floor);
                    if !doc.is_empty() && !self.in_scope(&doc) {
                        return Ok(());
                    }
                    self.push_fallback(id, doc.generate_sync_message(&mut state), &wanted);
                    return Ok(());
                }
                Ok(Checked::MissingDeps) => {
                    self.push_fallback(id, doc.generate_sync_message(&mut state), &wanted);
                    return Ok(());
                }
                Err((code, _)) if code == codes::BUSY => continue,
                Err((code, reason)) => {
                    return self.reject(id, Vec::new(), &code, reason, raw).await;
                }
            }
        }
        self.busy(id, raw).await
    }

    async fn deliver(
        &mut self,
        cursor: u64,
        mut known: BTreeSet<DocId>,
        recorded: &BTreeSet<DocId>,
    ) -> Result<(), S::Error> {
        let scope = self.store.docs_in_scope(&self.auth.principal.scope).await?;
        known.extend(self.accepted.iter().copied());
        let mut purge = Vec::new();
        let mut elsewhere = BTreeSet::new();
        for doc in known.difference(&scope).copied().collect::<Vec<_>>() {
            let untraced =
                self.store.load(doc).await?.is_none() && !self.store.is_erased(doc).await?;
            // A station hub holds one station: the phone's other documents are the
            // district server's business. They stay recorded as held, so the phone's
            // digest still matches.
            if untraced && matches!(self.reach, Reach::Hub(_)) {
                elsewhere.insert(doc);
                continue;
            }
            // A document the phone holds that this server has no trace of (neither
            // stored nor erased) was lost here: the server was restored from a backup
            // older than the document. Purging the phone's copy could lose its last
            // copy; ask the phone to hand it over again instead (Automerge's sync from
            // an empty document), as its authors' devices sync.
            if untraced {
                self.push_fallback(
                    doc,
                    Automerge::new().generate_sync_message(&mut State::new()),
                    &[],
                );
                known.remove(&doc);
                continue;
            }
            purge.push(doc);
        }
        if matches!(self.reach, Reach::Hub(_)) {
            // What the hub just refused stays on the phone for the district server: no
            // purge may take it away first.
            purge.retain(|d| !self.response.rejections.iter().any(|r| r.doc == *d));
            elsewhere.extend(self.response.rejections.iter().map(|r| r.doc));
        }
        self.response.purge = purge;
        known.retain(|d| scope.contains(d) || elsewhere.contains(d));

        // Read the head first: entries committed after it are left for the next sync.
        let (head, holds) = self.store.feed_head_holding(cursor).await?;
        // A phone's cursor always names a feed entry. One this server does not hold
        // means it lost history: it was restored from a backup older than the phone's
        // last sync, and the phone may hold changes it lost. Then every document the
        // phone holds is repaired with Automerge's own protocol from the server's copy
        // (each side sends what the other lacks), and the feed goes on from the head.
        // (A cursor at the head names the head's entry; one beyond it names none: only
        // a cursor below the head needs the look-up.)
        let restored = cursor > head || !holds;
        let cursor = if restored { head } else { cursor };
        if restored {
            for doc in known.iter().copied().collect::<Vec<_>>() {
                let stored = self.load(doc).await?;
                if !stored.is_empty() {
                    self.push_fallback(doc, stored.generate_sync_message(&mut State::new()), &[]);
                }
            }
        }
        let mut size = 0usize;
        let mut full = false;

        // Documents new to the phone travel whole.
        for doc in scope.difference(&known).copied().collect::<Vec<_>>() {
            if full {
                self.response.more = true;
                break;
            }
            let loaded = self.load(doc).await?;
            if loaded.is_empty() {
                continue;
            }
            let snapshot = loaded.save();
            size += snapshot.len();
            self.response.docs.push(DocDelivery {
                doc,
                snapshot: Some(Bytes(snapshot)),
                changes: Vec::new(),
            });
            known.insert(doc);
            full = size >= self.limits.response_bytes;
        }
        let new_docs: BTreeSet<DocId> = self.response.docs.iter().map(|d| d.doc).collect();

        // Then what changed since the cursor in documents the phone already holds. A
        // phone that held none but what its uploads just created (its first sync, or
        // every document new to it) needs nothing of the feed up to the head: what it
        // receives whole was read after the head, the rest will come whole too, and
        // what it created holds only its own changes. Its cursor goes to the head at
        // once, rather than paging through a district's feed for nothing.
        let held: BTreeSet<DocId> = known.difference(&new_docs).copied().collect();
        let needs_feed = held.iter().any(|d| !self.created.contains(d));
        let mut new_cursor = head.max(cursor);
        if !full && needs_feed {
            let page = self
                .store
                .feed_since(cursor, &held, self.limits.feed_entries)
                .await?;
            if page.complete_to < head {
                self.response.more = true;
                new_cursor = page.complete_to.max(cursor);
            }
            let entries = page.entries;
            let mut loaded: BTreeMap<DocId, Automerge> = BTreeMap::new();
            let mut deliveries: BTreeMap<DocId, usize> = BTreeMap::new();
            for entry in entries.iter().filter(|e| e.seq <= head) {
                let skip = self.uploaded.get(&entry.doc);
                let wanted: Vec<&ChangeHash> = entry
                    .hashes
                    .iter()
                    .filter(|h| skip.is_none_or(|s| !s.contains(h)))
                    .collect();
                if !wanted.is_empty() {
                    if let std::collections::btree_map::Entry::Vacant(slot) =
                        loaded.entry(entry.doc)
                    {
                        slot.insert(self.store.load(entry.doc).await?.unwrap_or_default());
                    }
                    let d = &loaded[&entry.doc];
                    let slot = *deliveries.entry(entry.doc).or_insert_with(|| {
                        self.response.docs.push(DocDelivery {
                            doc: entry.doc,
                            snapshot: None,
                            changes: Vec::new(),
                        });
                        self.response.docs.len() - 1
                    });
                    for h in wanted {
                        if let Some(c) = d.get_change_by_hash(h) {
                            size += c.raw_bytes().len();
                            self.response.docs[slot]
                                .changes
                                .push(Bytes(c.raw_bytes().to_vec()));
                        }
                    }
                }
                if size >= self.limits.response_bytes {
                    self.response.more = true;
                    new_cursor = entry.seq;
                    break;
                }
            }
        }
        if full && needs_feed {
            // Deliveries of new documents filled the response; the feed waits.
            new_cursor = cursor;
        }
        self.response.cursor = new_cursor;
        // The steady state (nothing added or purged) writes nothing.
        if &known != recorded {
            self.store.set_device_docs(self.auth.device, &known).await?;
        }
        Ok(())
    }
}

/// Parses a change a device sent. Automerge does not check a change's checksum when
/// it parses one, and a corrupted change can get far into a document before anything
/// notices.
fn parse_change(bytes: &[u8]) -> Result<Change, String> {
    let change = untrusted(|| Change::from_bytes(bytes.to_vec()))
        .map_err(|e| format!("a change does not parse: {e}"))?;
    // The chunk header: 4 magic bytes, then the first 4 bytes of the change's hash.
    if bytes.get(4..8) != Some(&change.hash().0[..4]) {
        return Err(format!(
            "change {} does not match its checksum: it was damaged",
            change.hash()
        ));
    }
    Ok(change)
}

/// Runs an Automerge call on a device's bytes. Automerge trusts what it parses and
/// applies and panics on some malformed input (a sequence number out of order, an
/// actor index out of range, one past `u32` in a change's columns, which the envelope
/// fuzzer found); from a device that is a malformed upload, not a failed server. The
/// document the call worked on must be dropped after an error.
fn untrusted<T, E: std::fmt::Display>(apply: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(apply)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("Automerge refused them".to_owned()),
    }
}

/// The changes a quarantined batch holds (its byte strings are raw changes, or a
/// repair's sync message whose chunks are changes), by hash; what does not parse as
/// changes is left out.
pub fn refused_hashes(bytes: &[Vec<u8>]) -> Vec<ChangeHash> {
    let hash = |b: &[u8]| untrusted(|| Change::from_bytes(b.to_vec())).map(|c| c.hash());
    let mut out = Vec::new();
    for b in bytes {
        if let Ok(h) = hash(b) {
            out.push(h);
        } else if let Ok(message) = untrusted(|| Message::decode(b)) {
            out.extend(message.changes.iter().filter_map(|c| hash(c).ok()));
        }
    }
    out
}

/// Where a document sits, from its header.
pub fn place_of(doc: &Automerge) -> Option<DocPlace> {
    use crate::doc::schema::{DISTRICT, STATION, id};
    let h = header(doc).ok()??;
    let district = id(doc, &automerge::ROOT, DISTRICT).ok()?;
    let station = match h.kind {
        DocKind::Resident => Some(id(doc, &automerge::ROOT, STATION).ok()?),
        DocKind::Catalog => None,
    };
    let closed = h.kind == DocKind::Resident
        && crate::doc::schema::get_obj(doc, &automerge::ROOT, crate::doc::schema::CLOSURE)
            .is_some();
    Some(DocPlace {
        district,
        station,
        closed,
    })
}
