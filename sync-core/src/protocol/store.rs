//! What the protocol needs from storage, as traits, with in-memory implementations for
//! tests and benchmarks. The server implements [`ServerStore`] over SQL; the phone
//! library implements [`ReplicaStore`] over its encrypted SQLite file.

use super::envelope::Decision;
use crate::ids::{DeviceId, DistrictId, DocId, StationId, Timestamp, UserId};
use crate::model::Scope;
use automerge::{Automerge, ChangeHash};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Mutex;

/// Where a stored document sits, for scope queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocPlace {
    /// Its district.
    pub district: DistrictId,
    /// Its station; `None` for a district's catalog.
    pub station: Option<StationId>,
    /// A closed case file: it is not delivered to phones (they purge it), and stays
    /// writable by whoever's scope covers its place.
    pub closed: bool,
}

impl DocPlace {
    /// Whether document `doc`, sitting here, lies in `scope`: a catalog for everyone
    /// in its district, a case file as [`Scope::covers`] decides.
    pub fn in_scope(&self, doc: DocId, scope: &Scope) -> bool {
        match self.station {
            None => self.district == scope.district(),
            Some(station) => scope.covers(doc.into(), self.district, station),
        }
    }
}

/// Accepted changes to one document, to be stored in one transaction together with a
/// feed entry (and, on the server, the projections of `after`).
#[derive(Debug)]
pub struct Append<'a> {
    /// Which document.
    pub doc: DocId,
    /// Where it sits (after the changes).
    pub place: DocPlace,
    /// The heads the changes were checked against. The store refuses the append with
    /// [`AppendOutcome::HeadsMoved`] when the stored document has moved on since.
    pub expected_heads: &'a [ChangeHash],
    /// The new changes, raw, in causal order.
    pub changes: Vec<Vec<u8>>,
    /// Their hashes, in the same order.
    pub hashes: Vec<ChangeHash>,
    /// The document with the changes applied.
    pub after: &'a Automerge,
    /// The uploading device (`None` for the server's own changes, such as migrations).
    pub device: Option<DeviceId>,
    /// The uploading user.
    pub user: Option<UserId>,
    /// The server's clock at receipt.
    pub received_at: Timestamp,
}

/// The result of an [`Append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored, under this feed sequence number.
    Stored(u64),
    /// Another writer got there first; reload and check again.
    HeadsMoved,
}

/// A refused batch, kept until a coordinator accepts or dismisses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// Which document.
    pub doc: DocId,
    /// The district of the device's user: whose coordinators decide.
    pub district: DistrictId,
    /// From which device.
    pub device: DeviceId,
    /// Whose.
    pub user: UserId,
    /// The violation or protocol code.
    pub code: String,
    /// Why, for people.
    pub reason: String,
    /// The refused bytes (raw changes or a sync message).
    pub bytes: Vec<Vec<u8>>,
    /// When.
    pub at: Timestamp,
}

/// How far some changes to a document were refused ([`ServerStore::refusals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Every one was refused: a phone whose copy holds only such changes beyond the
    /// record starts its copy again from the record.
    pub all: bool,
    /// At least one is in a batch a person dismissed: a change built on it can never
    /// join the record as it is.
    pub dismissed: bool,
}

impl Refusals {
    /// Of `hashes`, given the quarantined batches of their document (their byte
    /// strings, and whether a person dismissed them: see
    /// [`refused_hashes`](super::server::refused_hashes)) and the changes refused
    /// elsewhere (a station hub's record of the district server's refusals).
    pub fn of<'a>(
        hashes: &[ChangeHash],
        batches: impl IntoIterator<Item = (&'a [Vec<u8>], bool)>,
        elsewhere: impl IntoIterator<Item = ChangeHash>,
    ) -> Refusals {
        let mut refused: BTreeSet<ChangeHash> = elsewhere.into_iter().collect();
        let mut dismissed = BTreeSet::new();
        for (bytes, was_dismissed) in batches {
            let held = super::server::refused_hashes(bytes);
            if was_dismissed {
                dismissed.extend(held.iter().copied());
            }
            refused.extend(held);
        }
        Refusals {
            all: hashes.iter().all(|h| refused.contains(h)),
            dismissed: hashes.iter().any(|h| dismissed.contains(h)),
        }
    }
}

/// One feed entry: the changes one accepted batch added to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEntry {
    /// Monotonic, gap-free per store.
    pub seq: u64,
    /// Which document.
    pub doc: DocId,
    /// The changes the batch added.
    pub hashes: Vec<ChangeHash>,
}

/// A page of the feed for one phone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedPage {
    /// The relevant entries, ascending.
    pub entries: Vec<FeedEntry>,
    /// Every relevant entry with a sequence number up to this one is in `entries`
    /// (`u64::MAX`: through the end of the feed). A store may scan a window of the feed
    /// and filter it, and say here how far it looked.
    pub complete_to: u64,
}

/// The server's storage. Methods are `async` so that a server can implement them over
/// a database without blocking; the core itself never awaits anything but these.
pub trait ServerStore: Sync {
    /// Storage failures.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stored document, if any.
    fn load(
        &self,
        doc: DocId,
    ) -> impl Future<Output = Result<Option<Automerge>, Self::Error>> + Send;

    /// Whether the document was erased: it is gone, and may not be made again from a
    /// phone's copy.
    fn is_erased(&self, doc: DocId) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Stores accepted changes, a feed entry and projections atomically.
    fn append(
        &self,
        append: Append<'_>,
    ) -> impl Future<Output = Result<AppendOutcome, Self::Error>> + Send;

    /// Keeps a refused batch and returns its quarantine number (never 0), or `None`
    /// when the device has used up its quarantine allowance ([`QUARANTINE_PER_DAY`]):
    /// the batch is then refused without being stored, and the phone keeps it. The
    /// same batch again (same device, document and bytes) while the first awaits a
    /// decision is kept once: its number comes back. A batch that holds every byte
    /// string of an undecided batch of the same device and document, and more, takes
    /// its place (with its code and reason) under its number.
    fn quarantine(
        &self,
        item: Quarantined,
    ) -> impl Future<Output = Result<Option<u64>, Self::Error>> + Send;

    /// The decisions taken on the device's quarantined batches among `numbers`
    /// (others' numbers and undecided batches are left out).
    fn decisions(
        &self,
        device: DeviceId,
        numbers: &[u64],
    ) -> impl Future<Output = Result<Vec<Decision>, Self::Error>> + Send;

    /// Every document the scope covers, catalog included, but closed case files (see
    /// [`DocPlace::closed`]): what a phone of this scope should hold.
    fn docs_in_scope(
        &self,
        scope: &Scope,
    ) -> impl Future<Output = Result<BTreeSet<DocId>, Self::Error>> + Send;

    /// Feed entries after `cursor` for documents in `docs`, ascending, at most `limit`
    /// of them, and how far the page is complete.
    fn feed_since(
        &self,
        cursor: u64,
        docs: &BTreeSet<DocId>,
        limit: usize,
    ) -> impl Future<Output = Result<FeedPage, Self::Error>> + Send;

    /// Whether the feed holds an entry numbered `seq`. A phone's cursor always names
    /// one; when it does not, the server lost history (it was restored from a backup).
    fn feed_contains(&self, seq: u64) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// The latest feed number among `doc`'s entries; 0 when it has none.
    fn doc_feed_head(&self, doc: DocId) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// The latest feed sequence number.
    fn feed_head(&self) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// The latest feed number, and whether a phone's `cursor` names an entry the feed
    /// holds: [`ServerStore::feed_contains`] where `0 < cursor < head`, `true`
    /// otherwise (no cursor yet, or one at or past the head, which the caller judges
    /// by the head). Every sync asks both; a database answers them in one query.
    fn feed_head_holding(
        &self,
        cursor: u64,
    ) -> impl Future<Output = Result<(u64, bool), Self::Error>> + Send {
        async move {
            let head = self.feed_head().await?;
            let holds = cursor == 0 || cursor >= head || self.feed_contains(cursor).await?;
            Ok((head, holds))
        }
    }

    /// The documents the server believes the device holds.
    fn device_docs(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = Result<BTreeSet<DocId>, Self::Error>> + Send;

    /// How far `hashes`, changes to `doc`, were refused here: in any device's
    /// quarantined batch, decided or not, or, on a station hub, by the district server
    /// after the hub took them ([`Refusals::of`]).
    fn refusals(
        &self,
        doc: DocId,
        hashes: &[ChangeHash],
    ) -> impl Future<Output = Result<Refusals, Self::Error>> + Send;

    /// Runs `work`, a check that takes a while (the rules on one uploaded document),
    /// and returns its result. The server step hands each document of a request with
    /// several in, so that a host with threads to spare (the server: tokio's blocking
    /// pool) checks a station's first upload on every core. By default it runs here;
    /// an error means the host could not run it (its pool shut down, say).
    fn run_check<T, F>(&self, work: F) -> impl Future<Output = Result<T, Self::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        std::future::ready(Ok(work()))
    }

    /// Records the documents the device holds once this response reaches it.
    fn set_device_docs(
        &self,
        device: DeviceId,
        docs: &BTreeSet<DocId>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// How much one device may put in quarantine in 24 hours: refused batches and their
/// bytes. A phone past it gets `quarantine_full` and keeps its changes; one enrolled
/// device cannot fill the server's disk with refusals.
pub const QUARANTINE_PER_DAY: QuarantineAllowance = QuarantineAllowance {
    batches: 200,
    bytes: 16 << 20,
};

/// A device's daily quarantine allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuarantineAllowance {
    /// Refused batches kept.
    pub batches: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl QuarantineAllowance {
    /// Whether a device that kept `batches` batches of `bytes` bytes in the last 24
    /// hours may keep another of `more` bytes.
    pub fn admits(&self, batches: u64, bytes: u64, more: u64) -> bool {
        batches < self.batches && bytes.saturating_add(more) <= self.bytes
    }
}

impl Quarantined {
    /// The size the batch's bytes count for against the allowance.
    pub fn size(&self) -> u64 {
        self.bytes.iter().map(|b| b.len() as u64).sum()
    }
}

#[derive(Clone, Debug)]
struct StoredDoc {
    saved: Vec<u8>,
    heads: Vec<ChangeHash>,
    place: DocPlace,
}

#[derive(Clone, Debug, Default)]
struct MemoryServerInner {
    docs: BTreeMap<DocId, StoredDoc>,
    feed: Vec<FeedEntry>,
    quarantine: Vec<Quarantined>,
    decisions: BTreeMap<u64, Decision>,
    device_docs: BTreeMap<DeviceId, BTreeSet<DocId>>,
    erased: BTreeSet<DocId>,
    /// Checks handed to [`ServerStore::run_check`].
    checks_run: usize,
}

/// An in-memory [`ServerStore`]: documents saved whole, a vector feed.
#[derive(Debug, Default)]
pub struct MemoryServerStore {
    inner: Mutex<MemoryServerInner>,
}

impl MemoryServerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a document directly, bypassing the protocol (seeding, and tests that
    /// model a server restored from an old backup).
    pub fn put_doc(&self, doc: DocId, place: DocPlace, saved: Vec<u8>) {
        let mut heads = Automerge::load(&saved)
            .map(|d| d.get_heads())
            .unwrap_or_default();
        heads.sort();
        self.lock().docs.insert(
            doc,
            StoredDoc {
                saved,
                heads,
                place,
            },
        );
    }

    /// Everything quarantined so far; a batch's quarantine number is its index + 1.
    pub fn quarantined(&self) -> Vec<Quarantined> {
        self.lock().quarantine.clone()
    }

    /// Records a person's decision on a quarantined batch (tests model a coordinator).
    pub fn decide(&self, decision: Decision) {
        self.lock().decisions.insert(decision.quarantine, decision);
    }

    /// A backup: a copy of everything stored now (documents, feed, quarantine,
    /// decisions, what each device holds), as a database dump holds it. Restoring is
    /// using the copy in place of this store.
    pub fn backup(&self) -> MemoryServerStore {
        MemoryServerStore {
            inner: Mutex::new(self.lock().clone()),
        }
    }

    /// Erases a document, as the server's erasure does: it is gone with its
    /// quarantined batches' bytes, and may not be made again. (Feed entries and
    /// quarantine slots stay: here a feed position and a quarantine number are indices.)
    pub fn erase(&self, doc: DocId) {
        let mut inner = self.lock();
        inner.docs.remove(&doc);
        for q in inner.quarantine.iter_mut().filter(|q| q.doc == doc) {
            q.bytes.clear();
        }
        inner.erased.insert(doc);
    }

    /// How many checks the server step handed to [`ServerStore::run_check`].
    pub fn checks_run(&self) -> usize {
        self.lock().checks_run
    }

    /// Ids of every stored document.
    pub fn doc_ids(&self) -> Vec<DocId> {
        self.lock().docs.keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryServerInner> {
        // A panic while holding the lock cannot leave the maps half-written in a way
        // that matters to tests, so a poisoned lock is simply taken over.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerStore for MemoryServerStore {
    type Error = Infallible;

    /// Counts the check, and runs it here.
    async fn run_check<T, F>(&self, work: F) -> Result<T, Infallible>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.lock().checks_run += 1;
        Ok(work())
    }

    async fn load(&self, doc: DocId) -> Result<Option<Automerge>, Infallible> {
        let saved = self.lock().docs.get(&doc).map(|d| d.saved.clone());
        // What this store saved always loads.
        Ok(saved.and_then(|b| Automerge::load(&b).ok()))
    }

    async fn is_erased(&self, doc: DocId) -> Result<bool, Infallible> {
        Ok(self.lock().erased.contains(&doc))
    }

    async fn append(&self, append: Append<'_>) -> Result<AppendOutcome, Infallible> {
        let mut inner = self.lock();
        let current = inner
            .docs
            .get(&append.doc)
            .map(|d| d.heads.as_slice())
            .unwrap_or_default();
        let mut expected = append.expected_heads.to_vec();
        expected.sort();
        if expected != current {
            return Ok(AppendOutcome::HeadsMoved);
        }
        let mut heads = append.after.get_heads();
        heads.sort();
        inner.docs.insert(
            append.doc,
            StoredDoc {
                saved: append.after.save(),
                heads,
                place: append.place,
            },
        );
        // Numbers rise with the wall clock (in microseconds), as the server's do, so a
        // store restored from a backup numbers new entries above every cursor given out
        // before; and at least one above the last.
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let seq = inner
            .feed
            .last()
            .map_or(1, |e| e.seq.saturating_add(1))
            .max(clock);
        inner.feed.push(FeedEntry {
            seq,
            doc: append.doc,
            hashes: append.hashes,
        });
        Ok(AppendOutcome::Stored(seq))
    }

    async fn quarantine(&self, item: Quarantined) -> Result<Option<u64>, Infallible> {
        let mut inner = self.lock();
        let undecided = |(number, q): &(u64, &Quarantined)| {
            q.device == item.device && q.doc == item.doc && !inner.decisions.contains_key(number)
        };
        let same = (1u64..)
            .zip(&inner.quarantine)
            .filter(undecided)
            .find(|(_, q)| q.bytes == item.bytes);
        if let Some((number, _)) = same {
            return Ok(Some(number));
        }
        // All of an undecided batch and more: it grows in place.
        let grown = (1u64..)
            .zip(&inner.quarantine)
            .filter(undecided)
            .find(|(_, q)| !q.bytes.is_empty() && q.bytes.iter().all(|b| item.bytes.contains(b)))
            .map(|(number, _)| number);
        if let Some(number) = grown {
            let at = usize::try_from(number - 1).unwrap_or(usize::MAX);
            if let Some(kept) = inner.quarantine.get_mut(at) {
                let first = kept.at;
                *kept = item;
                kept.at = first;
            }
            return Ok(Some(number));
        }
        let day = item.at.saturating_sub(24 * 3600 * 1000);
        let (batches, bytes) = inner
            .quarantine
            .iter()
            .filter(|q| q.device == item.device && q.at > day)
            .fold((0, 0), |(n, b), q| (n + 1, b + q.size()));
        if !QUARANTINE_PER_DAY.admits(batches, bytes, item.size()) {
            return Ok(None);
        }
        inner.quarantine.push(item);
        Ok(Some(inner.quarantine.len() as u64))
    }

    async fn decisions(
        &self,
        device: DeviceId,
        numbers: &[u64],
    ) -> Result<Vec<Decision>, Infallible> {
        let inner = self.lock();
        Ok(numbers
            .iter()
            .filter(|n| {
                usize::try_from(**n)
                    .ok()
                    .and_then(|i| inner.quarantine.get(i.wrapping_sub(1)))
                    .is_some_and(|q| q.device == device)
            })
            .filter_map(|n| inner.decisions.get(n).cloned())
            .collect())
    }

    async fn docs_in_scope(&self, scope: &Scope) -> Result<BTreeSet<DocId>, Infallible> {
        let inner = self.lock();
        Ok(inner
            .docs
            .iter()
            .filter(|(id, d)| !d.place.closed && d.place.in_scope(**id, scope))
            .map(|(id, _)| *id)
            .collect())
    }

    async fn feed_since(
        &self,
        cursor: u64,
        docs: &BTreeSet<DocId>,
        limit: usize,
    ) -> Result<FeedPage, Infallible> {
        let inner = self.lock();
        let start = inner.feed.partition_point(|e| e.seq <= cursor);
        let entries: Vec<FeedEntry> = inner.feed[start..]
            .iter()
            .filter(|e| docs.contains(&e.doc))
            .take(limit)
            .cloned()
            .collect();
        let complete_to = match entries.last() {
            Some(last) if entries.len() >= limit => last.seq,
            _ => u64::MAX,
        };
        Ok(FeedPage {
            entries,
            complete_to,
        })
    }

    async fn feed_contains(&self, seq: u64) -> Result<bool, Infallible> {
        let inner = self.lock();
        Ok(inner.feed.binary_search_by_key(&seq, |e| e.seq).is_ok())
    }

    async fn doc_feed_head(&self, doc: DocId) -> Result<u64, Infallible> {
        let inner = self.lock();
        Ok(inner
            .feed
            .iter()
            .rev()
            .find(|e| e.doc == doc)
            .map_or(0, |e| e.seq))
    }

    async fn feed_head(&self) -> Result<u64, Infallible> {
        Ok(self.lock().feed.last().map_or(0, |e| e.seq))
    }

    async fn device_docs(&self, device: DeviceId) -> Result<BTreeSet<DocId>, Infallible> {
        Ok(self
            .lock()
            .device_docs
            .get(&device)
            .cloned()
            .unwrap_or_default())
    }

    async fn refusals(&self, doc: DocId, hashes: &[ChangeHash]) -> Result<Refusals, Infallible> {
        let inner = self.lock();
        let batches = (1u64..)
            .zip(&inner.quarantine)
            .filter(|(_, q)| q.doc == doc)
            .map(|(number, q)| {
                let dismissed = inner.decisions.get(&number).is_some_and(|d| !d.accepted);
                (q.bytes.as_slice(), dismissed)
            });
        Ok(Refusals::of(hashes, batches, []))
    }

    async fn set_device_docs(
        &self,
        device: DeviceId,
        docs: &BTreeSet<DocId>,
    ) -> Result<(), Infallible> {
        self.lock().device_docs.insert(device, docs.clone());
        Ok(())
    }
}

/// Per-document state a phone keeps for sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocSyncState {
    /// Heads the server has (receipted, or delivered by it). Changes after these are
    /// uploaded at the next sync.
    pub acked: Vec<ChangeHash>,
    /// The server has told the phone it holds this document (delivered or receipted).
    pub known_to_server: bool,
    /// Local changes wait to be receipted.
    pub pending: bool,
    /// Repairing through Automerge's sync protocol: the encoded `sync::State` and the
    /// next message to send.
    pub fallback: Option<(Vec<u8>, Vec<u8>)>,
}

/// The phone's storage. Synchronous: phones use an embedded database on a worker
/// thread. Every method is one durable write or read.
pub trait ReplicaStore {
    /// Storage failures.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Every document id held.
    fn doc_ids(&self) -> Result<Vec<DocId>, Self::Error>;
    /// A held document, saved.
    fn load_doc(&self, doc: DocId) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Stores a document (whole) and its sync state in one write.
    fn save_doc(
        &mut self,
        doc: DocId,
        saved: &[u8],
        state: &DocSyncState,
    ) -> Result<(), Self::Error>;
    /// Stores a document after edits or merges, and its sync state, in one write. The
    /// default saves the document whole; a store that keeps change chunks overrides it
    /// to append only what is new since its last save (a phone logging one visit must
    /// not rewrite a large snapshot).
    fn save_doc_changes(
        &mut self,
        doc: DocId,
        current: &Automerge,
        state: &DocSyncState,
    ) -> Result<(), Self::Error> {
        self.save_doc(doc, &current.save(), state)
    }
    /// The sync state of a held document.
    fn sync_state(&self, doc: DocId) -> Result<Option<DocSyncState>, Self::Error>;
    /// The heads of a held document as last saved, for a store that keeps them: a
    /// receipt for exactly those heads settles the document without loading it (a
    /// station's first upload is receipted hundreds of documents at once). `None`: not
    /// kept, and the document is loaded instead.
    fn saved_heads(&self, doc: DocId) -> Result<Option<Vec<ChangeHash>>, Self::Error> {
        let _ = doc;
        Ok(None)
    }
    /// Documents with local changes to upload or a repair under way.
    fn pending_docs(&self) -> Result<Vec<DocId>, Self::Error> {
        let mut out = Vec::new();
        for id in self.doc_ids()? {
            if self
                .sync_state(id)?
                .is_some_and(|s| s.pending || s.fallback.is_some())
            {
                out.push(id);
            }
        }
        Ok(out)
    }
    /// Documents the server knows this phone holds.
    fn known_docs(&self) -> Result<Vec<DocId>, Self::Error> {
        let mut out = Vec::new();
        for id in self.doc_ids()? {
            if self.sync_state(id)?.is_some_and(|s| s.known_to_server) {
                out.push(id);
            }
        }
        Ok(out)
    }
    /// Updates the sync state alone.
    fn save_sync_state(&mut self, doc: DocId, state: &DocSyncState) -> Result<(), Self::Error>;
    /// Deletes a document and its state.
    fn purge(&mut self, doc: DocId) -> Result<(), Self::Error>;
    /// The feed cursor.
    fn cursor(&self) -> Result<u64, Self::Error>;
    /// Stores the feed cursor.
    fn set_cursor(&mut self, cursor: u64) -> Result<(), Self::Error>;
    /// Whether the server asked for the full list of held documents.
    fn need_held(&self) -> Result<bool, Self::Error>;
    /// Records whether the server asked for it.
    fn set_need_held(&mut self, need: bool) -> Result<(), Self::Error>;
    /// Keeps (or replaces, by quarantine number) a refused upload.
    fn put_refused(&mut self, refused: &Refused) -> Result<(), Self::Error>;
    /// Every refused upload kept, oldest first.
    fn refused(&self) -> Result<Vec<Refused>, Self::Error>;
    /// Forgets a refused upload.
    fn remove_refused(&mut self, quarantine: u64) -> Result<(), Self::Error>;
}

/// An upload the server refused, kept on the phone until a person decides on it: a
/// coordinator accepts it (it is then on the server and the phone forgets it here) or
/// dismisses it (the phone shows the note until the volunteer has read it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The server's quarantine number for the refused bytes.
    pub quarantine: u64,
    /// Which document.
    pub doc: DocId,
    /// The rejection's code.
    pub code: String,
    /// The rejection's sentence.
    pub message: String,
    /// The document as the phone held it, the refused changes included (an Automerge
    /// save), so the phone can still show what was refused after its copy was reset.
    pub saved: Vec<u8>,
    /// The refused changes (those the server had not receipted).
    pub changes: Vec<ChangeHash>,
    /// The decision, once one came back and it was a dismissal.
    pub dismissed: Option<Decision>,
}

/// An in-memory [`ReplicaStore`].
#[derive(Debug, Default, Clone)]
pub struct MemoryReplicaStore {
    docs: BTreeMap<DocId, (Vec<u8>, DocSyncState)>,
    /// The heads of documents saved from a loaded document (not from bytes).
    heads: BTreeMap<DocId, Vec<ChangeHash>>,
    cursor: u64,
    need_held: bool,
    refused: BTreeMap<u64, Refused>,
}

impl MemoryReplicaStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ReplicaStore for MemoryReplicaStore {
    type Error = Infallible;

    fn doc_ids(&self) -> Result<Vec<DocId>, Infallible> {
        Ok(self.docs.keys().copied().collect())
    }
    fn load_doc(&self, doc: DocId) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.docs.get(&doc).map(|(b, _)| b.clone()))
    }
    fn save_doc(
        &mut self,
        doc: DocId,
        saved: &[u8],
        state: &DocSyncState,
    ) -> Result<(), Infallible> {
        self.docs.insert(doc, (saved.to_vec(), state.clone()));
        self.heads.remove(&doc);
        Ok(())
    }
    fn save_doc_changes(
        &mut self,
        doc: DocId,
        current: &Automerge,
        state: &DocSyncState,
    ) -> Result<(), Infallible> {
        // In memory, compressing the columns costs time and saves nothing that matters.
        self.save_doc(doc, &current.save_nocompress(), state)?;
        self.heads.insert(doc, current.get_heads());
        Ok(())
    }
    fn sync_state(&self, doc: DocId) -> Result<Option<DocSyncState>, Infallible> {
        Ok(self.docs.get(&doc).map(|(_, s)| s.clone()))
    }
    fn saved_heads(&self, doc: DocId) -> Result<Option<Vec<ChangeHash>>, Infallible> {
        Ok(self.heads.get(&doc).cloned())
    }
    fn save_sync_state(&mut self, doc: DocId, state: &DocSyncState) -> Result<(), Infallible> {
        if let Some((_, s)) = self.docs.get_mut(&doc) {
            *s = state.clone();
        }
        Ok(())
    }
    fn purge(&mut self, doc: DocId) -> Result<(), Infallible> {
        self.docs.remove(&doc);
        self.heads.remove(&doc);
        Ok(())
    }
    fn cursor(&self) -> Result<u64, Infallible> {
        Ok(self.cursor)
    }
    fn set_cursor(&mut self, cursor: u64) -> Result<(), Infallible> {
        self.cursor = cursor;
        Ok(())
    }
    fn need_held(&self) -> Result<bool, Infallible> {
        Ok(self.need_held)
    }
    fn set_need_held(&mut self, need: bool) -> Result<(), Infallible> {
        self.need_held = need;
        Ok(())
    }
    fn put_refused(&mut self, refused: &Refused) -> Result<(), Infallible> {
        self.refused.insert(refused.quarantine, refused.clone());
        Ok(())
    }
    fn refused(&self) -> Result<Vec<Refused>, Infallible> {
        Ok(self.refused.values().cloned().collect())
    }
    fn remove_refused(&mut self, quarantine: u64) -> Result<(), Infallible> {
        self.refused.remove(&quarantine);
        Ok(())
    }
}
