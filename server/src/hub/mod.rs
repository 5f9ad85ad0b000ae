//! A station hub: the same server, run at a station on a small machine, that the
//! station's phones sync with when its uplink to the district server is slow or down
//! (issue 15). See `ARCHITECTURE.md`, "Station hubs".
//!
//! - It serves phones the ordinary sync protocol over its own store, with the core's
//!   rules and its station's scope, and keeps every request with uploads in an outbox,
//!   as the phone sent and sealed it.
//! - While the uplink works it mirrors its station from the district server (the
//!   roster of users and devices, and every case file of the station with the
//!   district's catalog, by the same feed a phone reads), and forwards the outbox in
//!   the order received; the district server checks every request again as its
//!   phone's.

pub mod store;
pub mod upstream;

use crate::error::{Error, Result};
use crate::http::AppState;
use crate::now_ms;
use crate::store::SqlStore;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_core::automerge::{Automerge, Change, ChangeHash};
use sync_core::ids::{DocId, StationId};
use sync_core::protocol::channel;
use sync_core::protocol::envelope::{Bytes, DocDelivery, SyncRequest, SyncResponse, held_digest};
use sync_core::protocol::forward::{ForwardItem, ForwardRequest, ForwardResponse, ForwardResult};
use sync_core::protocol::server::place_of;
use sync_core::protocol::store::{Append, AppendOutcome, ServerStore};
use tokio::sync::Notify;
use upstream::{Upstream, UpstreamError};
use uuid::Uuid;

/// Requests forwarded per batch.
const BATCH: i64 = 50;
/// Forward a request this many times while the district server lacks what it builds
/// on, then leave it waiting for a person (it stays in the outbox).
const MAX_ATTEMPTS: i64 = 20;
/// Pull rounds per cycle (each answers up to the server's response limit).
const MAX_PULL_ROUNDS: usize = 64;

/// What the serving side of a hub shares with its links to the district server.
#[derive(Debug)]
pub struct HubSide {
    /// The hub's id (phones derive their key for it from this).
    pub id: Uuid,
    /// Its station.
    pub station: StationId,
    /// Wakes the forwarder when a phone's request lands in the outbox.
    pub wake: Notify,
    /// Challenges handed out and not yet used, with their expiry (ms): each works once.
    pub(crate) challenges: Mutex<HashMap<Uuid, i64>>,
    /// Phones' sessions, by id (the challenge each answered).
    pub(crate) sessions: Mutex<HashMap<[u8; channel::SESSION], Session>>,
    /// The district server revoked this hub: it takes nothing more from phones, which
    /// keep their visits for the district server.
    pub revoked: AtomicBool,
    /// How its link to the district server has gone, for the station's staff.
    pub(crate) link: Mutex<LinkState>,
    /// The district server's address, once a cycle has begun: phones enrolled here
    /// sync there.
    district_url: Mutex<Option<String>>,
}

/// A phone's session at the hub: its calls come sealed in the session's channel.
#[derive(Debug)]
pub(crate) struct Session {
    /// The session's key.
    pub channel: channel::Channel,
    /// The access token the hub made for the device; it never leaves the hub, and its
    /// calls carry it inside.
    pub token: String,
    /// Until when (ms).
    pub until: i64,
    /// The highest call number taken: each is taken once, and only upwards.
    pub last: Option<u64>,
}

/// How a hub's link to the district server has gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    /// When a cycle with the district server last finished.
    pub last_ok_at: Option<i64>,
    /// Since when cycles have failed, and why the last one did.
    pub failing: Option<(i64, String)>,
}

impl HubSide {
    /// The serving side of hub `id` at `station`.
    pub fn new(id: Uuid, station: StationId) -> Self {
        HubSide {
            id,
            station,
            wake: Notify::new(),
            challenges: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            revoked: AtomicBool::new(false),
            link: Mutex::new(LinkState::default()),
            district_url: Mutex::new(None),
        }
    }

    /// The district server's address, once a cycle has begun.
    pub fn district_url(&self) -> Option<String> {
        self.district_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How its link to the district server has gone.
    pub fn link(&self) -> LinkState {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What one cycle with the district server did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cycle {
    /// Case files and catalogs that received changes.
    pub pulled_docs: usize,
    /// Requests the district server answered for.
    pub forwarded: usize,
    /// Requests still waiting in the outbox.
    pub waiting: i64,
}

/// One exchange with the district server: the roster, what the station's documents
/// gained there, every request waiting in the outbox (oldest first), then the
/// documents again (a forwarded visit the district server merged, a review made since).
pub async fn cycle(state: &AppState, upstream: &Upstream) -> Result<Cycle, UpstreamError> {
    if let Some(hub) = &state.hub {
        *hub.district_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(upstream.base());
    }
    let done = exchange(state, upstream).await;
    if let Some(hub) = &state.hub {
        if let Err(UpstreamError::Revoked) = &done {
            hub.revoked.store(true, Ordering::SeqCst);
        }
        let now = now_ms();
        let mut link = hub
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &done {
            Ok(_) => {
                link.last_ok_at = Some(now);
                link.failing = None;
            }
            Err(e) => {
                let since = link.failing.as_ref().map_or(now, |(since, _)| *since);
                link.failing = Some((since, e.to_string()));
            }
        }
    }
    done
}

async fn exchange(state: &AppState, upstream: &Upstream) -> Result<Cycle, UpstreamError> {
    let roster = upstream.roster(state.store.outbox_counts().await?).await?;
    state
        .store
        .apply_roster_if_changed(&roster, now_ms())
        .await?;
    // The devices enrolled here first: their requests follow in the outbox.
    hand_on_enrolments(&state.store, upstream).await?;
    let mut done = Cycle {
        pulled_docs: pull(&state.store, upstream).await?,
        ..Cycle::default()
    };
    done.forwarded = forward(&state.store, upstream, roster.forward_limit).await?;
    if done.forwarded > 0 {
        done.pulled_docs += pull(&state.store, upstream).await?;
    }
    done.waiting = state.store.outbox_counts().await?.waiting;
    Ok(done)
}

/// Hands the district server the devices this hub enrolled and it has not answered
/// for, and records its answers.
async fn hand_on_enrolments(store: &SqlStore, upstream: &Upstream) -> Result<(), UpstreamError> {
    let waiting = store.hub_enrolments_waiting().await?;
    if waiting.is_empty() {
        return Ok(());
    }
    let body = serde_json::json!({
        "certificates": waiting.iter().map(|(_, c)| c).collect::<Vec<_>>(),
    });
    let answer = upstream.enrolments(body.to_string().into_bytes()).await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| {
        UpstreamError::Unreachable(format!("the enrolments answer is not JSON: {e}"))
    })?;
    let answers = answer["answers"].as_array().cloned().unwrap_or_default();
    let now = now_ms();
    for ((device, _), answer) in waiting.iter().zip(&answers) {
        let outcome = answer["outcome"].as_str().unwrap_or_default();
        let message = answer["message"].as_str().unwrap_or_default();
        if outcome != "adopted" {
            tracing::warn!(%device, outcome, message, "the district server did not adopt a device enrolled here as it was");
        }
        store
            .hub_enrolment_answered(*device, &format!("{outcome} {message}"), now)
            .await?;
    }
    Ok(())
}

/// Keeps the hub's link to the district server: a cycle at once, then whenever a
/// phone's request arrives or `every` passes, until `stop` says so. A failed cycle
/// (the uplink is down) is tried again at the next turn; nothing is lost meanwhile.
pub async fn keep_linked(
    state: Arc<AppState>,
    upstream: Upstream,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(hub) = state.hub.as_ref() else {
        return;
    };
    loop {
        match cycle(&state, &upstream).await {
            Ok(done) => tracing::debug!(?done, "hub cycle"),
            Err(UpstreamError::Revoked) => {
                tracing::error!(
                    "this hub was revoked on the district server; it takes nothing more from phones"
                );
                return;
            }
            Err(e) => tracing::info!(error = %e, "hub cycle did not finish; trying again later"),
        }
        tokio::select! {
            () = hub.wake.notified() => {}
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Pulls what the district server holds for the station into the hub's store; how
/// many documents gained something.
async fn pull(store: &SqlStore, upstream: &Upstream) -> Result<usize, UpstreamError> {
    let mut changed = 0;
    let mut send_held = false;
    for _ in 0..MAX_PULL_ROUNDS {
        let mirrored = store.hub_mirrored().await?;
        let request = SyncRequest {
            cursor: store.hub_cursor().await?,
            held_digest: held_digest(&mirrored),
            held: send_held.then(|| mirrored.iter().copied().collect()),
            clock: now_ms(),
            ..SyncRequest::default()
        };
        let bytes = upstream.pull(request.encode()).await?;
        let response = SyncResponse::decode(&bytes).map_err(|e| {
            UpstreamError::Unreachable(format!("the district server's answer does not decode: {e}"))
        })?;
        if !response.fallback.is_empty() {
            // The district server lost track of what we hold (it was restored from a
            // backup): start the mirror again; what comes merges into what is here.
            store.reset_hub_mirror().await?;
            return Ok(changed);
        }
        let mut delivered = Vec::with_capacity(response.docs.len());
        for delivery in &response.docs {
            if merge(store, delivery).await? {
                changed += 1;
            }
            delivered.push(delivery.doc);
        }
        // What the district server no longer delivers here (a resident moved to
        // another station, a closed file) leaves the hub without a trace: its phones'
        // copies are then left to the district server, which purges them itself.
        for doc in &response.purge {
            store.forget_document(*doc).await?;
        }
        store
            .set_hub_mirror(response.cursor, &delivered, &response.purge)
            .await?;
        send_held = response.need_held;
        if !response.more && !response.need_held {
            return Ok(changed);
        }
    }
    Ok(changed)
}

/// Merges what the district server delivered of one document (a saved document, or
/// changes) into the hub's copy and stores what was new; whether anything was.
async fn merge(store: &SqlStore, delivery: &DocDelivery) -> Result<bool, UpstreamError> {
    let doc = delivery.doc;
    for _ in 0..8 {
        let held = store.load(doc).await?;
        // A file new to the hub starts from the saved document as it is (loaded, the
        // compact way), not merged change by change into an empty one.
        let fresh = held.is_none() && delivery.snapshot.is_some();
        let mut merged = held.unwrap_or_else(Automerge::new);
        let before = merged.get_heads();
        // The district server checked these bytes; still, nothing here may panic.
        let apply = |merged: &mut Automerge| -> bool {
            if let Some(saved) = &delivery.snapshot {
                let Ok(mut saved) = Automerge::load(&saved.0) else {
                    return false;
                };
                if fresh {
                    *merged = saved;
                } else if merged.merge(&mut saved).is_err() {
                    return false;
                }
            }
            let mut changes = Vec::with_capacity(delivery.changes.len());
            for bytes in &delivery.changes {
                match Change::from_bytes(bytes.0.clone()) {
                    Ok(change) => changes.push(change),
                    Err(_) => return false,
                }
            }
            merged.apply_changes(changes).is_ok()
        };
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(&mut merged)));
        if !matches!(applied, Ok(true)) {
            return Err(UpstreamError::Unreachable(format!(
                "the district server sent changes to {doc} that do not apply"
            )));
        }
        let new = merged.get_changes(&before);
        if new.is_empty() {
            return Ok(false);
        }
        let Some(place) = place_of(&merged) else {
            return Ok(false);
        };
        let outcome = store
            .append(Append {
                doc,
                place,
                expected_heads: &before,
                changes: new.iter().map(|c| c.raw_bytes().to_vec()).collect(),
                hashes: new.iter().map(|c| c.hash()).collect::<Vec<ChangeHash>>(),
                after: &merged,
                device: None,
                user: None,
                received_at: now_ms(),
            })
            .await?;
        if let AppendOutcome::Stored(_) = outcome {
            return Ok(true);
        }
        // A phone wrote to the document meanwhile: merge again.
    }
    Err(UpstreamError::Local(Error::Internal(format!(
        "document {doc} kept moving while the hub merged it"
    ))))
}

/// Forwards the outbox, oldest first, in batches that fit the uplink and the district
/// server's `limit` (bytes of a forward body, 0 if not known); how many requests the
/// district server answered for.
async fn forward(
    store: &SqlStore,
    upstream: &Upstream,
    limit: u64,
) -> Result<usize, UpstreamError> {
    // The most one request may take, leaving room for the batch's own envelope.
    let ceiling = match usize::try_from(limit).unwrap_or(usize::MAX) {
        0 => usize::MAX,
        limit => limit.saturating_sub(1 << 10),
    };
    let budget = upstream.forward_bytes().min(ceiling);
    let mut answered = 0;
    let mut skip = BTreeSet::new();
    // After the district server found a batch too large: one request at a time.
    let mut one_at_a_time = false;
    loop {
        let most = if one_at_a_time { 1 } else { BATCH };
        let mut waiting: Vec<_> = store
            .outbox_waiting(BATCH + i64::try_from(skip.len()).unwrap_or(i64::MAX))
            .await?
            .into_iter()
            .filter(|item| !skip.contains(&item.id))
            .collect();
        if let Some(first) = waiting.first()
            && item_bytes(first) > ceiling
        {
            too_large(
                store,
                first.id,
                "it is larger than the district server takes",
            )
            .await?;
            answered += 1;
            continue;
        }
        let take = batch_len(
            waiting.iter().map(item_bytes),
            usize::try_from(most).unwrap_or(1),
            budget,
        );
        waiting.truncate(take);
        if waiting.is_empty() {
            return Ok(answered);
        }
        let batch = ForwardRequest {
            items: waiting
                .iter()
                .map(|item| ForwardItem {
                    id: u64::try_from(item.id).unwrap_or_default(),
                    device: item.device,
                    received_at: item.received_at,
                    body: Bytes(item.body.clone()),
                    seal: item.seal,
                    docs: item.docs.clone(),
                })
                .collect(),
        };
        let bytes = match upstream.forward(batch.encode()).await {
            Ok(bytes) => bytes,
            Err(UpstreamError::Refused { status: 413, .. }) if waiting.len() > 1 => {
                one_at_a_time = true;
                continue;
            }
            Err(UpstreamError::Refused {
                status: 413,
                message,
            }) => {
                too_large(store, waiting[0].id, &message).await?;
                answered += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let answer = ForwardResponse::decode(&bytes).map_err(|e| {
            UpstreamError::Unreachable(format!("the forward answer does not decode: {e}"))
        })?;
        let mut record = Vec::with_capacity(answer.items.len());
        for outcome in &answer.items {
            let Some(item) = waiting
                .iter()
                .find(|i| u64::try_from(i.id).ok() == Some(outcome.id))
            else {
                continue;
            };
            // Uploads that build on what the district server lacks go again later
            // (what they build on may be further down this batch); the rest is done.
            let again = matches!(&outcome.result, ForwardResult::Taken(t) if !t.missing.is_empty())
                && item.attempts + 1 < MAX_ATTEMPTS;
            if again {
                record.push((item.id, None));
                skip.insert(item.id);
            } else {
                record.push((item.id, Some(&outcome.result)));
                answered += 1;
            }
        }
        // Changes the district server refused into its quarantine are not part of
        // the record: the hub starts its copy of those files again from the district
        // server's (the next pull), before any phone can read the refusal, so that
        // the phone which set them aside does not receive them back from here.
        // The refused changes are remembered, so that a phone which received them from
        // here before the refusal starts its copy again too (`not_in_record`).
        let mut refused: BTreeMap<DocId, Vec<ChangeHash>> = BTreeMap::new();
        for outcome in &answer.items {
            let ForwardResult::Taken(taken) = &outcome.result else {
                continue;
            };
            let request = waiting
                .iter()
                .find(|i| u64::try_from(i.id).ok() == Some(outcome.id))
                .and_then(|i| SyncRequest::decode(&i.body).ok());
            for r in taken.rejections.iter().filter(|r| r.quarantine != 0) {
                let hashes = refused.entry(r.doc).or_default();
                let upload = request
                    .as_ref()
                    .and_then(|q| q.uploads.iter().find(|u| u.doc == r.doc));
                for change in upload.into_iter().flat_map(|u| u.changes.iter()) {
                    if let Ok(change) = Change::from_bytes(change.0.clone()) {
                        hashes.push(change.hash());
                    }
                }
            }
        }
        for (doc, hashes) in refused {
            store.reset_hub_document(doc, &hashes).await?;
        }
        store.outbox_record(&record, now_ms()).await?;
        // An item the answer left out would be asked about again forever.
        for item in &waiting {
            if !answer
                .items
                .iter()
                .any(|o| u64::try_from(item.id).ok() == Some(o.id))
            {
                skip.insert(item.id);
            }
        }
    }
}

/// The bytes an outbox request takes in a forward body: the phone's request, its
/// seal, ids and the documents the hub took.
fn item_bytes(item: &store::OutboxItem) -> usize {
    item.body.len() + 128 + 17 * item.docs.len()
}

/// A request larger than the district server takes can never be handed on, and must
/// not hold up every one behind it: it is answered as refused. The phone that sent it
/// still holds its changes, and hands them over itself at the district server (it
/// counts them as held at the station until then).
async fn too_large(store: &SqlStore, id: i64, why: &str) -> Result<(), UpstreamError> {
    tracing::warn!(
        id,
        why,
        "an outbox request is too large for the district server"
    );
    let refused = ForwardResult::Refused {
        code: "too_large".into(),
        message: format!("the district server would not take this request: {why}"),
    };
    store
        .outbox_record(&[(id, Some(&refused))], now_ms())
        .await?;
    Ok(())
}

/// How many of the waiting requests (their body sizes, oldest first) the next batch
/// takes: at most `most`, and no more than `budget` bytes, but never none: a request
/// larger than the budget goes alone.
fn batch_len(sizes: impl IntoIterator<Item = usize>, most: usize, budget: usize) -> usize {
    let mut bytes = 0usize;
    let mut take = 0;
    for size in sizes {
        if take >= most || (take > 0 && bytes.saturating_add(size) > budget) {
            break;
        }
        bytes = bytes.saturating_add(size);
        take += 1;
    }
    take
}

#[cfg(test)]
mod tests {
    use super::batch_len;

    #[test]
    fn a_batch_keeps_to_its_count_and_bytes_and_a_large_request_goes_alone() {
        assert_eq!(batch_len([10; 80], 50, 1 << 20), 50);
        assert_eq!(batch_len([400, 400, 400, 10], 50, 1000), 2);
        assert_eq!(batch_len([5000, 10, 10], 50, 1000), 1, "alone");
        assert_eq!(batch_len([10, 5000, 10], 50, 1000), 1, "not with another");
        assert_eq!(batch_len([10, 10], 1, 1000), 1);
        assert_eq!(batch_len([], 50, 1000), 0);
    }
}
