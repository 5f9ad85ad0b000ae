//! The phone's half of a sync: what to send, and how to take the answer in.
//!
//! A [`Replica`] wraps a [`ReplicaStore`]. The app edits documents through
//! [`CaseFile`] (which runs the rules before anything is committed), saves them with
//! [`Replica::save_case_file`], and syncs with [`Replica::prepare`] → transport →
//! [`Replica::apply`]. Any request may be lost, repeated or answered out of order: the
//! replica stays consistent and the next sync repairs what the last one missed.

use super::envelope::*;
use super::store::{DocSyncState, Refused, ReplicaStore};
use crate::doc::casefile::CaseFile;
use crate::doc::catalog::CatalogDoc;
use crate::doc::paths::{Written, written};
use crate::error::Error;
use crate::ids::{DocId, Timestamp, VisitId};
use automerge::sync::{Message, State, SyncDoc};
use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Mutex, OnceLock, PoisonError};

/// A replica failure: the store's, or the core's.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError<E: std::error::Error + 'static> {
    /// The store failed.
    #[error("local storage failed: {0}")]
    Store(#[source] E),
    /// The core refused something (a malformed document or response).
    #[error(transparent)]
    Core(#[from] Error),
}

type R<T, E> = std::result::Result<T, ReplicaError<E>>;

/// The bytes of changes one request uploads at most (whole documents; a larger
/// document goes alone): three quarters of a server's default body limit (16 MiB),
/// leaving room for the envelope, so that a phone back from weeks offline, or a
/// station's first upload of its records, is never refused as too large.
pub const UPLOAD_BUDGET: usize = 12 << 20;

/// What one sync did, for the app to show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Changes uploaded.
    pub sent_changes: usize,
    /// Changes (and whole documents) received.
    pub received_changes: usize,
    /// Documents whose uploads the server receipted.
    pub receipted: Vec<DocId>,
    /// Uploads the server refused. The phone keeps each refused batch (see
    /// [`Replica::refused`]) and resets its copy of the document to the server's; the
    /// server keeps the bytes in its quarantine for a coordinator to decide on.
    pub rejections: Vec<Rejection>,
    /// Coordinators' decisions on earlier refusals that arrived with this answer.
    pub decisions: Vec<Decision>,
    /// Documents removed from the phone (left its scope).
    pub purged: Vec<DocId>,
    /// Documents being repaired with Automerge's sync protocol.
    pub repairing: Vec<DocId>,
    /// The server has more: sync again.
    pub more: bool,
}

/// The phone's replica.
#[derive(Debug)]
pub struct Replica<S> {
    store: S,
    actor: ActorId,
    /// The documents loaded or saved last.
    loaded: Mutex<VecDeque<Loaded>>,
}

/// A document [`Replica`] keeps loaded.
#[derive(Debug)]
struct Loaded {
    id: DocId,
    /// The saved bytes it was loaded from; `None` for one the replica saved itself
    /// (found again by its heads, which the store keeps).
    bytes: Option<Vec<u8>>,
    doc: Automerge,
}

/// Documents [`Replica`] keeps loaded. A sync loads each document it uploads twice (to
/// prepare the request, then to take the receipt in), and Automerge's load rebuilds a
/// document from its columns: on a resident with a long history, milliseconds.
const LOADED: usize = 4;

impl<S: ReplicaStore> Replica<S> {
    /// A replica over `store`, writing as the device's `actor`.
    pub fn new(store: S, actor: ActorId) -> Self {
        Replica {
            store,
            actor,
            loaded: Mutex::new(VecDeque::with_capacity(LOADED)),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably (hosts use it for their own tables).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Changes the actor later writes use (a phone learns its actor when it enrols).
    pub fn set_actor(&mut self, actor: ActorId) {
        self.actor = actor;
    }

    /// The device's Automerge actor.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// A held document, from the store. A copy of one kept loaded is that document when
    /// it has the heads the store saved last (the same heads are the same changes), or
    /// was loaded from exactly the same saved bytes: whatever wrote the store since, and
    /// however, the heads or the bytes tell.
    fn load(&self, doc: DocId) -> R<Option<Automerge>, S::Error> {
        let d = match self.source(doc)? {
            None => return Ok(None),
            Some(Source::Loaded(d)) => *d,
            Some(Source::Saved(bytes)) => {
                let d = Automerge::load(&bytes).map_err(Error::from)?;
                let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
                keep(&mut loaded, doc, Some(bytes), d.clone());
                d
            }
        };
        Ok(Some(d.with_actor(self.actor.clone())))
    }

    /// A held document as kept loaded, or its saved bytes to load (see [`Self::load`]).
    fn source(&self, doc: DocId) -> R<Option<Source>, S::Error> {
        let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.iter().any(|l| l.id == doc)
            && let Some(saved) = self.store.saved_heads(doc).map_err(ReplicaError::Store)?
            && let Some(l) = loaded
                .iter()
                .find(|l| l.id == doc && same_heads(&l.doc.get_heads(), &saved))
        {
            return Ok(Some(Source::Loaded(Box::new(l.doc.clone()))));
        }
        let Some(bytes) = self.store.load_doc(doc).map_err(ReplicaError::Store)? else {
            return Ok(None);
        };
        if let Some(l) = loaded
            .iter()
            .find(|l| l.id == doc && l.bytes.as_ref() == Some(&bytes))
        {
            return Ok(Some(Source::Loaded(Box::new(l.doc.clone()))));
        }
        Ok(Some(Source::Saved(bytes)))
    }

    /// Keeps `doc`, just saved, loaded: a phone that logs a visit and then shows the
    /// resident or syncs reads it back at once.
    fn remember(&self, id: DocId, doc: &Automerge) {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        keep(&mut loaded, id, None, doc.clone());
    }

    fn state(&self, doc: DocId) -> R<DocSyncState, S::Error> {
        Ok(self
            .store
            .sync_state(doc)
            .map_err(ReplicaError::Store)?
            .unwrap_or_default())
    }

    /// Every held document id.
    pub fn doc_ids(&self) -> R<Vec<DocId>, S::Error> {
        self.store.doc_ids().map_err(ReplicaError::Store)
    }

    /// Opens a held case file.
    pub fn case_file(&self, doc: DocId) -> R<Option<CaseFile>, S::Error> {
        match self.load(doc)? {
            None => Ok(None),
            Some(d) => Ok(Some(CaseFile::from_doc(d)?)),
        }
    }

    /// Opens a held catalog.
    pub fn catalog(&self, doc: DocId) -> R<Option<CatalogDoc>, S::Error> {
        match self.load(doc)? {
            None => Ok(None),
            Some(d) => Ok(Some(CatalogDoc::from_doc(d)?)),
        }
    }

    /// Durably saves a case file after local edits; its new changes wait for the next sync.
    pub fn save_case_file(&mut self, file: &CaseFile) -> R<(), S::Error> {
        self.save_local(file.id().into(), file.doc())
    }

    /// Durably saves a catalog after local edits.
    pub fn save_catalog(&mut self, catalog: &CatalogDoc) -> R<(), S::Error> {
        self.save_local(catalog.district().into(), catalog.doc())
    }

    fn save_local(&mut self, id: DocId, doc: &Automerge) -> R<(), S::Error> {
        let mut state = self.state(id)?;
        state.pending = unreceipted(doc, &state.acked);
        self.store
            .save_doc_changes(id, doc, &state)
            .map_err(ReplicaError::Store)?;
        self.remember(id, doc);
        Ok(())
    }

    /// How many local changes wait to be receipted.
    pub fn pending_changes(&self) -> R<usize, S::Error> {
        let mut n = 0;
        for id in self.store.pending_docs().map_err(ReplicaError::Store)? {
            let state = self.state(id)?;
            if let Some(doc) = self.load(id)? {
                n += doc.get_changes(&state.acked).len();
            }
        }
        Ok(n)
    }

    /// Visits of a case file with writes the server has not receipted yet.
    pub fn unreceipted_visits(&self, doc: DocId) -> R<BTreeSet<VisitId>, S::Error> {
        let state = self.state(doc)?;
        let Some(d) = self.load(doc)? else {
            return Ok(BTreeSet::new());
        };
        Ok(written(&d, &d.get_changes(&state.acked))?.visits)
    }

    /// Visits of a case file with writes beyond `heads` (hashes the phone does not hold
    /// are ignored): what a station hub holds but the district server has not yet
    /// confirmed, say.
    pub fn visits_written_since(
        &self,
        doc: DocId,
        heads: &[ChangeHash],
    ) -> R<BTreeSet<VisitId>, S::Error> {
        let Some(d) = self.load(doc)? else {
            return Ok(BTreeSet::new());
        };
        Ok(written(&d, &d.get_changes(&held_of(&d, heads)))?.visits)
    }

    /// Whether every change of `doc` the server receipted lies within `heads` (hashes
    /// the phone does not hold are ignored).
    pub fn receipted_within(&self, doc: DocId, heads: &[ChangeHash]) -> R<bool, S::Error> {
        let state = self.state(doc)?;
        let Some(d) = self.load(doc)? else {
            return Ok(true);
        };
        // An acked head within `heads`' history brings its own history along.
        let beyond: BTreeSet<ChangeHash> = d
            .get_changes(&held_of(&d, heads))
            .iter()
            .map(|c| c.hash())
            .collect();
        Ok(state.acked.iter().all(|h| !beyond.contains(h)))
    }

    /// The uploads the server refused that wait for a person's decision, or whose
    /// dismissal the volunteer has not yet acknowledged. Nothing written on this phone
    /// is deleted without a person's decision: a refused upload stays here, with its
    /// reason, until a coordinator accepts it or the volunteer acknowledges its
    /// dismissal.
    pub fn refused(&self) -> R<Vec<Refused>, S::Error> {
        self.store.refused().map_err(ReplicaError::Store)
    }

    /// The refused upload's document as the phone held it (refused changes included)
    /// and what those changes wrote.
    pub fn refused_contents(&self, refused: &Refused) -> R<(Automerge, Written), S::Error> {
        let doc = Automerge::load(&refused.saved).map_err(Error::from)?;
        let changes: Vec<Change> = refused
            .changes
            .iter()
            .filter_map(|h| doc.get_change_by_hash(h))
            .collect();
        let what = written(&doc, &changes)?;
        Ok((doc, what))
    }

    /// The volunteer has read a coordinator's dismissal: forget the refused upload.
    /// One still awaiting a decision cannot be forgotten; `Ok(false)` then, or when
    /// there is no such upload.
    pub fn acknowledge_dismissal(&mut self, quarantine: u64) -> R<bool, S::Error> {
        let dismissed = self
            .refused()?
            .iter()
            .any(|r| r.quarantine == quarantine && r.dismissed.is_some());
        if dismissed {
            self.store
                .remove_refused(quarantine)
                .map_err(ReplicaError::Store)?;
        }
        Ok(dismissed)
    }

    /// Everything this phone wrote that the server has not received, per document: the
    /// local changes beyond the acked heads. (Refused uploads are already in the
    /// server's quarantine.) What a revoked phone seals for the server
    /// ([`super::export`]) before it deletes the residents' data.
    pub fn unsynced(&self) -> R<Vec<super::export::ExportBatch>, S::Error> {
        let mut out = Vec::new();
        for id in self.store.pending_docs().map_err(ReplicaError::Store)? {
            let state = self.state(id)?;
            let Some(doc) = self.load(id)? else { continue };
            let changes: Vec<Bytes> = doc
                .get_changes(&state.acked)
                .iter()
                .map(|c| Bytes(c.raw_bytes().to_vec()))
                .collect();
            if !changes.is_empty() {
                out.push(super::export::ExportBatch { doc: id, changes });
            }
        }
        Ok(out)
    }

    /// Builds the next request. `now` is the phone's clock (Unix ms): the server judges
    /// the times this phone wrote by it if it runs ahead of the server's. Its uploads
    /// keep to [`UPLOAD_BUDGET`]; what waits beyond goes in the next request.
    pub fn prepare(&self, now: Timestamp) -> R<SyncRequest, S::Error> {
        self.prepare_within(now, UPLOAD_BUDGET, &BTreeSet::new())
    }

    /// [`Replica::prepare`] with uploads (and repair messages) of at most `budget`
    /// bytes, whole documents at a time, but never none while something waits: a
    /// request never outgrows what a server takes because much waited, and one
    /// document's changes are never split. Documents in `parked` (refused earlier in
    /// this sync with nothing kept, so asking again changes nothing) are left out.
    pub fn prepare_within(
        &self,
        now: Timestamp,
        budget: usize,
        parked: &BTreeSet<DocId>,
    ) -> R<SyncRequest, S::Error> {
        let known = self.store.known_docs().map_err(ReplicaError::Store)?;
        let mut request = SyncRequest {
            cursor: self.store.cursor().map_err(ReplicaError::Store)?,
            held_digest: held_digest(&known),
            held: None,
            uploads: Vec::new(),
            fallback: Vec::new(),
            clock: now,
            refused: self
                .refused()?
                .iter()
                .filter(|r| r.dismissed.is_none())
                .map(|r| r.quarantine)
                .collect(),
        };
        if self.store.need_held().map_err(ReplicaError::Store)? {
            request.held = Some(known);
        }
        let pending: Vec<DocId> = self
            .store
            .pending_docs()
            .map_err(ReplicaError::Store)?
            .into_iter()
            .filter(|id| !parked.contains(id))
            .collect();
        let mut bytes = 0usize;
        // In batches: each one's documents read from the store in order, then loaded and
        // their changes collected on the phone's cores at once (a station's first upload
        // holds hundreds), then taken in order within the budget.
        for batch in pending.chunks(PREPARE_AT_ONCE) {
            if bytes >= budget {
                break;
            }
            let mut read = Vec::with_capacity(batch.len());
            for &id in batch {
                let state = self.state(id)?;
                if let Some((_, message)) = state.fallback {
                    read.push((id, ToSend::Repair(message)));
                    continue;
                }
                let Some(source) = self.source(id)? else {
                    continue;
                };
                read.push((id, ToSend::Changes(source, state.acked)));
            }
            let collected = in_parallel(read, |(id, to_send)| {
                let out = match to_send {
                    ToSend::Repair(message) => Ok(Collected::Repair(message)),
                    ToSend::Changes(source, acked) => source.into_doc().map(|doc| {
                        // Most often one visit written on top of what the server has:
                        // found by its hash, without collecting every change.
                        let changes = crate::doc::changes_since(&doc, &acked);
                        Collected::Changes(doc.get_heads(), changes)
                    }),
                };
                (id, out)
            });
            for (id, collected) in collected {
                if bytes >= budget {
                    break;
                }
                match collected? {
                    Collected::Repair(message) => {
                        if bytes > 0 && bytes.saturating_add(message.len()) > budget {
                            continue;
                        }
                        bytes = bytes.saturating_add(message.len());
                        request.fallback.push(FallbackMessage {
                            doc: id,
                            message: Bytes(message),
                        });
                    }
                    Collected::Changes(heads, changes) => {
                        if changes.is_empty() {
                            continue;
                        }
                        let size: usize = changes.iter().map(|c| c.raw_bytes().len()).sum();
                        if bytes > 0 && bytes.saturating_add(size) > budget {
                            continue;
                        }
                        bytes = bytes.saturating_add(size);
                        request.uploads.push(DocUpload {
                            doc: id,
                            heads: to_wire_hashes(&heads),
                            changes: changes
                                .iter()
                                .map(|c| Bytes(c.raw_bytes().to_vec()))
                                .collect(),
                        });
                    }
                }
            }
        }
        Ok(request)
    }

    /// Takes a response in. Safe to call with a stale, repeated or reordered response.
    pub fn apply(&mut self, response: &SyncResponse) -> R<SyncReport, S::Error> {
        let mut report = SyncReport {
            more: response.more,
            ..SyncReport::default()
        };
        for receipt in &response.receipts {
            let receipted = to_change_hashes(&receipt.heads);
            let saved = self
                .store
                .saved_heads(receipt.doc)
                .map_err(ReplicaError::Store)?;
            let mut state = self.state(receipt.doc)?;
            match saved {
                // The receipt names the document as saved: everything is on the server.
                Some(saved) if same_heads(&saved, &receipted) => {
                    state.acked = saved;
                    state.pending = false;
                }
                _ => {
                    let Some(doc) = self.load(receipt.doc)? else {
                        continue;
                    };
                    let heads = held_of(&doc, &receipted);
                    state.acked = merge_heads(&doc, &state.acked, &heads);
                    state.pending = unreceipted(&doc, &state.acked);
                }
            }
            state.known_to_server = true;
            self.store
                .save_sync_state(receipt.doc, &state)
                .map_err(ReplicaError::Store)?;
            report.receipted.push(receipt.doc);
        }
        let mut reset = false;
        let mut settled = BTreeSet::new();
        for rejection in &response.rejections {
            report.rejections.push(rejection.clone());
            // Busy, or a station hub that does not hold the document: nothing was
            // taken or kept; the changes stay pending for the next sync (or the
            // district server).
            if rejection.code == super::server::codes::BUSY
                || rejection.code == super::server::codes::NOT_HERE
            {
                continue;
            }
            // The resident's data was erased by a person's decision: the phone lets
            // its copy go too, unsynced changes included, and keeps nothing aside.
            if rejection.code == super::server::codes::ERASED {
                self.store
                    .purge(rejection.doc)
                    .map_err(ReplicaError::Store)?;
                settled.insert(rejection.doc);
                if !response.purge.contains(&rejection.doc) {
                    report.purged.push(rejection.doc);
                }
                continue;
            }
            // Our copy holds, beyond the record, only other devices' changes that were
            // refused (they wait in the quarantine for a person, or were decided): start
            // again from the record, which the server sends whole at once. Unless we
            // wrote since, or hold something of our own still to hand over: then keep
            // everything for the next sync.
            if rejection.code == super::server::codes::NOT_IN_RECORD {
                if self.written_since(rejection.doc, &rejection.heads)?
                    || self.holds_own_unacked(rejection.doc)?
                {
                    continue;
                }
                self.store
                    .purge(rejection.doc)
                    .map_err(ReplicaError::Store)?;
                settled.insert(rejection.doc);
                reset = true;
                continue;
            }
            // Our copy holds changes the server will not accept as they are, and every
            // later change builds on them: keep them aside, with the reason, until a
            // person decides, and start again from the server's copy. Unless we wrote
            // more since the refused upload: then keep everything, so the next sync
            // hands that over too. And if the server kept nothing (its quarantine for
            // this device is full), nobody could decide: keep the document as it is.
            if rejection.quarantine == 0 {
                continue;
            }
            if self.written_since(rejection.doc, &rejection.heads)? {
                report.more = true;
                continue;
            }
            self.keep_refused(rejection)?;
            self.store
                .purge(rejection.doc)
                .map_err(ReplicaError::Store)?;
            settled.insert(rejection.doc);
            reset = true;
        }
        self.take_decisions(&response.decisions)?;
        report.decisions.clone_from(&response.decisions);
        for delivery in &response.docs {
            report.received_changes += self.take_delivery(delivery, &mut report)?;
        }
        for id in &response.purge {
            // Never drop what was never handed over: a visit logged while this sync
            // was under way is uploaded (and quarantined) first, then purged.
            let unsent = !settled.contains(id) && self.state(*id)?.pending;
            if unsent {
                report.more = true;
                continue;
            }
            self.store.purge(*id).map_err(ReplicaError::Store)?;
            report.purged.push(*id);
        }
        for message in &response.fallback {
            self.take_fallback(message, &mut report)?;
        }
        // After a reset, tell the server at once what we hold so it sends the
        // document again, and have the app sync again.
        report.more |= reset;
        self.store
            .set_need_held(response.need_held || reset)
            .map_err(ReplicaError::Store)?;
        let cursor = self.store.cursor().map_err(ReplicaError::Store)?;
        if response.cursor > cursor {
            self.store
                .set_cursor(response.cursor)
                .map_err(ReplicaError::Store)?;
        }
        Ok(report)
    }

    /// The server this phone syncs with now is known to hold only `heads` of `doc`
    /// (hashes the phone does not hold are ignored), whatever another server (a
    /// station hub) receipted: the changes beyond them are pending again, so the next
    /// request hands them over. The server stores what it holds already only once.
    pub fn hand_over_beyond(&mut self, doc: DocId, heads: &[ChangeHash]) -> R<(), S::Error> {
        let Some(d) = self.load(doc)? else {
            return Ok(());
        };
        let mut state = self.state(doc)?;
        state.acked = held_of(&d, heads);
        state.pending = !d.get_changes(&state.acked).is_empty();
        self.store
            .save_sync_state(doc, &state)
            .map_err(ReplicaError::Store)
    }

    /// A refusal the district server made of an upload a station hub had taken (and
    /// receipted as held at the station), relayed by the hub: the phone sets the
    /// refused changes aside as for any refusal, under the district server's
    /// quarantine number and with its reason, and starts its copy of the document
    /// again from the server's (at the next sync). `confirmed` are the heads the
    /// district server is known to hold of the document; everything beyond them was
    /// refused with the upload.
    ///
    /// Whether it set anything aside. Nothing happens when the refusal is already set
    /// aside, when the phone no longer holds the refused changes, or when it wrote
    /// more since: later changes build on the refused ones but are not in the
    /// district server's quarantine, so the copy stays as it is, pending nothing.
    pub fn take_relayed_refusal(
        &mut self,
        rejection: &Rejection,
        confirmed: &[ChangeHash],
    ) -> R<bool, S::Error> {
        if rejection.quarantine == 0 || rejection.heads.is_empty() {
            return Ok(false);
        }
        if self
            .refused()?
            .iter()
            .any(|r| r.quarantine == rejection.quarantine)
        {
            return Ok(false);
        }
        let Some(doc) = self.load(rejection.doc)? else {
            return Ok(false);
        };
        // Heads other than the refused upload's: the phone no longer holds what was
        // refused, or wrote more since.
        if moved_from(&doc, &rejection.heads) {
            return Ok(false);
        }
        if !self.set_aside(rejection, &doc, &held_of(&doc, confirmed))? {
            return Ok(false);
        }
        self.store
            .purge(rejection.doc)
            .map_err(ReplicaError::Store)?;
        self.store
            .set_need_held(true)
            .map_err(ReplicaError::Store)?;
        Ok(true)
    }

    /// Sets a refused upload aside: the document as held, and which changes the
    /// server has not receipted. Idempotent per quarantine number.
    fn keep_refused(&mut self, rejection: &Rejection) -> R<(), S::Error> {
        let Some(doc) = self.load(rejection.doc)? else {
            return Ok(());
        };
        let state = self.state(rejection.doc)?;
        self.set_aside(rejection, &doc, &state.acked)?;
        Ok(())
    }

    /// Keeps `doc` as held with its changes beyond `receipted` as the refused upload;
    /// whether there were any.
    fn set_aside(
        &mut self,
        rejection: &Rejection,
        doc: &Automerge,
        receipted: &[ChangeHash],
    ) -> R<bool, S::Error> {
        let changes: Vec<ChangeHash> = doc
            .get_changes(receipted)
            .iter()
            .map(Change::hash)
            .collect();
        if changes.is_empty() {
            return Ok(false);
        }
        self.store
            .put_refused(&Refused {
                quarantine: rejection.quarantine,
                doc: rejection.doc,
                code: rejection.code.clone(),
                message: rejection.message.clone(),
                saved: doc.save(),
                changes,
                dismissed: None,
            })
            .map_err(ReplicaError::Store)?;
        Ok(true)
    }

    /// An accepted refusal is now on the server: forget it here. A dismissed one stays
    /// with its note until the volunteer acknowledges it.
    fn take_decisions(&mut self, decisions: &[Decision]) -> R<(), S::Error> {
        if decisions.is_empty() {
            return Ok(());
        }
        for mut refused in self.refused()? {
            let Some(d) = decisions
                .iter()
                .find(|d| d.quarantine == refused.quarantine)
            else {
                continue;
            };
            if d.accepted {
                self.store
                    .remove_refused(refused.quarantine)
                    .map_err(ReplicaError::Store)?;
            } else if refused.dismissed.is_none() {
                refused.dismissed = Some(d.clone());
                self.store
                    .put_refused(&refused)
                    .map_err(ReplicaError::Store)?;
            }
        }
        Ok(())
    }

    /// Whether the document has changes beyond `heads` (which the server refused).
    /// Whether `doc` holds a change of this phone's the server has not acknowledged.
    fn holds_own_unacked(&self, doc: DocId) -> R<bool, S::Error> {
        let Some(d) = self.load(doc)? else {
            return Ok(false);
        };
        let acked = held_of(&d, &self.state(doc)?.acked);
        Ok(d.get_changes(&acked)
            .iter()
            .any(|c| c.actor_id() == &self.actor))
    }

    fn written_since(&self, doc: DocId, heads: &[Hash]) -> R<bool, S::Error> {
        if heads.is_empty() {
            return Ok(false);
        }
        Ok(self.load(doc)?.is_some_and(|d| moved_from(&d, heads)))
    }

    fn take_delivery(
        &mut self,
        delivery: &DocDelivery,
        report: &mut SyncReport,
    ) -> R<usize, S::Error> {
        let id = delivery.doc;
        let mut state = self.state(id)?;
        let mut doc = self
            .load(id)?
            .unwrap_or_else(|| Automerge::new().with_actor(self.actor.clone()));
        let mut received: Vec<ChangeHash> = Vec::new();
        let mut count = 0;
        if let Some(snapshot) = &delivery.snapshot {
            let incoming = Automerge::load(&snapshot.0).map_err(Error::from)?;
            received.extend(incoming.get_heads());
            count += 1;
            if doc.is_empty() {
                doc = incoming.with_actor(self.actor.clone());
            } else {
                doc.load_incremental(&snapshot.0).map_err(Error::from)?;
            }
        }
        let mut changes = Vec::with_capacity(delivery.changes.len());
        for bytes in &delivery.changes {
            let change = Change::from_bytes(bytes.0.clone()).map_err(Error::from)?;
            received.push(change.hash());
            changes.push(change);
        }
        count += changes.len();
        doc.apply_changes(changes).map_err(Error::from)?;
        state.known_to_server = true;
        if doc.get_missing_deps(&[]).is_empty() {
            state.acked = merge_heads(&doc, &state.acked, &received);
        } else if state.fallback.is_none() {
            // We lack what these changes build on: repair with Automerge's protocol.
            let mut sync = State::new();
            if let Some(m) = doc.generate_sync_message(&mut sync) {
                state.fallback = Some((sync.encode(), m.encode()));
                report.repairing.push(id);
            }
        }
        state.pending = state.fallback.is_some() || !doc.get_changes(&state.acked).is_empty();
        self.store
            .save_doc_changes(id, &doc, &state)
            .map_err(ReplicaError::Store)?;
        Ok(count)
    }

    fn take_fallback(
        &mut self,
        message: &FallbackMessage,
        report: &mut SyncReport,
    ) -> R<(), S::Error> {
        let id = message.doc;
        let incoming = Message::decode(&message.message.0)
            .map_err(|e| Error::Malformed(format!("a repair message does not parse: {e}")))?;
        let server_heads = incoming.heads.clone();
        let mut state = self.state(id)?;
        let mut doc = self
            .load(id)?
            .unwrap_or_else(|| Automerge::new().with_actor(self.actor.clone()));
        let mut sync = match &state.fallback {
            Some((encoded, _)) => State::decode(encoded).unwrap_or_else(|_| State::new()),
            None => State::new(),
        };
        doc.receive_sync_message(&mut sync, incoming)
            .map_err(Error::from)?;
        let in_sync = doc.get_missing_deps(&[]).is_empty() && {
            let mut ours = doc.get_heads();
            let mut theirs = server_heads.clone();
            ours.sort();
            theirs.sort();
            ours == theirs
        };
        if in_sync {
            state.fallback = None;
            state.acked = doc.get_heads();
            state.known_to_server = true;
        } else {
            let next = doc
                .generate_sync_message(&mut sync)
                .or_else(|| doc.generate_sync_message(&mut State::new()));
            state.fallback = next.map(|m| (sync.encode(), m.encode()));
            report.repairing.push(id);
        }
        state.pending = state.fallback.is_some() || !doc.get_changes(&state.acked).is_empty();
        if doc.is_empty() {
            self.store
                .save_sync_state(id, &state)
                .map_err(ReplicaError::Store)?;
        } else {
            self.store
                .save_doc_changes(id, &doc, &state)
                .map_err(ReplicaError::Store)?;
        }
        Ok(())
    }
}

/// The union of two sets of heads, without hashes that are direct dependencies of
/// others in the set. Every hash must be in `doc`.
fn merge_heads(doc: &Automerge, a: &[ChangeHash], b: &[ChangeHash]) -> Vec<ChangeHash> {
    let mut all: BTreeSet<ChangeHash> = a
        .iter()
        .chain(b)
        .copied()
        // Only the metadata: `get_change_by_hash` rebuilds the change's bytes.
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .collect();
    let deps: BTreeSet<ChangeHash> = all
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h))
        .flat_map(|m| m.deps.into_iter())
        .collect();
    all.retain(|h| !deps.contains(h));
    all.into_iter().collect()
}

/// Whether `doc` holds changes past the receipted heads `acked` (changes it holds).
/// Exactly when one of its heads is not among them: a head the server has must be one
/// of them, as nothing follows it. This is what `get_changes(acked)` would say, without
/// collecting every change since.
fn unreceipted(doc: &Automerge, acked: &[ChangeHash]) -> bool {
    doc.get_heads().iter().any(|h| !acked.contains(h))
}

/// Documents whose uploads [`Replica::prepare_within`] works out at once.
const PREPARE_AT_ONCE: usize = 64;

/// Where a held document comes from: kept loaded, or saved bytes to load.
enum Source {
    Loaded(Box<Automerge>),
    Saved(Vec<u8>),
}

impl Source {
    fn into_doc(self) -> Result<Automerge, Error> {
        match self {
            Source::Loaded(doc) => Ok(*doc),
            Source::Saved(bytes) => Ok(Automerge::load(&bytes)?),
        }
    }
}

/// What a pending document sends, as read from the store.
enum ToSend {
    /// The next message of a repair under way.
    Repair(Vec<u8>),
    /// Its changes since the acked heads.
    Changes(Source, Vec<ChangeHash>),
}

/// What a pending document sends, worked out.
enum Collected {
    Repair(Vec<u8>),
    /// Its heads, and its changes since the acked heads.
    Changes(Vec<ChangeHash>, Vec<Change>),
}

/// The machine's cores, asked once. `available_parallelism` reads the cgroup files
/// each time it is called on Linux and Android: 8 % of the CPU the load bench's phones
/// spent syncing one new visit at a time.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` over `items`, in order, spread over the machine's cores (at most 4): a phone
/// has several, and loading documents is most of the work of preparing a large upload.
fn in_parallel<T: Send, U: Send>(items: Vec<T>, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    // One document (the usual sync) does not ask for the cores.
    let threads = match items.len() {
        0 | 1 => 1,
        n => cores().min(4).min(n),
    };
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let part: Vec<T> = items.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let running: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || part.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        running
            .into_iter()
            .flat_map(|r| {
                r.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Puts a document first among those kept loaded (replacing its older copy), and lets
/// the least recently kept go beyond [`LOADED`].
fn keep(loaded: &mut VecDeque<Loaded>, id: DocId, bytes: Option<Vec<u8>>, doc: Automerge) {
    loaded.retain(|l| l.id != id);
    if loaded.len() >= LOADED {
        loaded.pop_back();
    }
    loaded.push_front(Loaded { id, bytes, doc });
}

/// Whether two sets of heads are the same, in whatever order.
fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    a.len() == b.len() && a.iter().all(|h| b.contains(h))
}

/// Whether a `Result` from the core is a rules refusal.
pub fn is_rejection(error: &Error) -> bool {
    matches!(error, Error::Rejected(_))
}

/// Whether `doc`'s heads are other than `heads`.
fn moved_from(doc: &Automerge, heads: &[Hash]) -> bool {
    !same_heads(&doc.get_heads(), &to_change_hashes(heads))
}

/// The hashes of `heads` that `doc` holds (a server may name changes the phone has not
/// received).
fn held_of(doc: &Automerge, heads: &[ChangeHash]) -> Vec<ChangeHash> {
    heads
        .iter()
        .filter(|h| doc.get_change_meta_by_hash(h).is_some())
        .copied()
        .collect()
}
