//! Live events: every accepted change is announced, as a server-sent event, to the
//! listeners whose scope holds the document. Events only say *that* a document
//! changed; clients fetch the change the usual way (phones sync, pages reload).

use super::AppState;
use super::caller::Caller;
use crate::error::{AuthFailure, Error, Result};
use crate::store::{Pool, SqlStore};
use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use sync_core::automerge::Automerge;
use sync_core::ids::{DeviceId, DistrictId, DocId, StationId, UserId};
use sync_core::model::Scope;
use sync_core::protocol::envelope::Decision;
use sync_core::protocol::store::{
    Append, AppendOutcome, DocPlace, FeedPage, Quarantined, Refusals, ServerStore,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// A document changed.
#[derive(Clone, Copy, Debug)]
pub struct Changed {
    /// The feed entry that recorded the change.
    pub seq: u64,
    /// The document.
    pub doc: DocId,
    /// Where it sits, to decide who hears of it.
    pub place: DocPlace,
}

/// The body of a `changed` event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChangedEvent {
    /// The feed sequence number of the change.
    seq: u64,
    /// The document (a resident's id, or a district catalog's).
    doc: uuid::Uuid,
}

/// The store as the sync step sees it: every stored append is announced.
pub(crate) struct Announcing<'a> {
    pub store: &'a SqlStore,
    pub events: &'a broadcast::Sender<Changed>,
}

impl ServerStore for Announcing<'_> {
    type Error = <SqlStore as ServerStore>::Error;

    async fn load(&self, doc: DocId) -> Result<Option<Automerge>, Self::Error> {
        self.store.load(doc).await
    }

    async fn is_erased(&self, doc: DocId) -> Result<bool, Self::Error> {
        self.store.is_erased(doc).await
    }

    async fn append(&self, append: Append<'_>) -> Result<AppendOutcome, Self::Error> {
        let (doc, place) = (append.doc, append.place);
        let outcome = self.store.append(append).await?;
        if let AppendOutcome::Stored(seq) = outcome {
            announce(self.store, self.events, Changed { seq, doc, place });
        }
        Ok(outcome)
    }

    async fn quarantine(&self, item: Quarantined) -> Result<Option<u64>, Self::Error> {
        self.store.quarantine(item).await
    }

    async fn decisions(
        &self,
        device: DeviceId,
        numbers: &[u64],
    ) -> Result<Vec<Decision>, Self::Error> {
        self.store.decisions(device, numbers).await
    }

    async fn docs_in_scope(&self, scope: &Scope) -> Result<BTreeSet<DocId>, Self::Error> {
        self.store.docs_in_scope(scope).await
    }

    async fn feed_since(
        &self,
        cursor: u64,
        docs: &BTreeSet<DocId>,
        limit: usize,
    ) -> Result<FeedPage, Self::Error> {
        self.store.feed_since(cursor, docs, limit).await
    }

    async fn feed_contains(&self, seq: u64) -> Result<bool, Self::Error> {
        self.store.feed_contains(seq).await
    }

    async fn doc_feed_head(&self, doc: DocId) -> Result<u64, Self::Error> {
        self.store.doc_feed_head(doc).await
    }

    async fn feed_head(&self) -> Result<u64, Self::Error> {
        self.store.feed_head().await
    }

    async fn feed_head_holding(&self, cursor: u64) -> Result<(u64, bool), Self::Error> {
        self.store.feed_head_holding(cursor).await
    }

    async fn device_docs(&self, device: DeviceId) -> Result<BTreeSet<DocId>, Self::Error> {
        self.store.device_docs(device).await
    }

    async fn refusals(
        &self,
        doc: DocId,
        hashes: &[sync_core::automerge::ChangeHash],
    ) -> Result<Refusals, Self::Error> {
        self.store.refusals(doc, hashes).await
    }

    async fn run_check<T, F>(&self, work: F) -> Result<T, Self::Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.store.run_check(work).await
    }

    async fn set_device_docs(
        &self,
        device: DeviceId,
        docs: &BTreeSet<DocId>,
    ) -> Result<(), Self::Error> {
        self.store.set_device_docs(device, docs).await
    }
}

const CHANNEL: &str = crate::store::ANNOUNCE_CHANNEL;

/// Tells listeners of every server process. On PostgreSQL the store has announced the
/// append already, with a `NOTIFY` in its transaction, so servers sharing the database
/// hear each other's changes (each hears its own through [`relay_notifications`]); on
/// SQLite there is one process.
fn announce(store: &SqlStore, events: &broadcast::Sender<Changed>, changed: Changed) {
    if let Pool::Sqlite(_) = store.pool() {
        // No listeners is fine.
        let _ = events.send(changed);
    }
}

#[cfg(test)]
fn encode(c: &Changed) -> String {
    format!("{} {}", c.seq, crate::store::announced(c.doc, &c.place))
}

fn decode(payload: &str) -> Option<Changed> {
    let mut parts = payload.split(' ');
    let seq = parts.next()?.parse().ok()?;
    let doc = DocId(uuid::Uuid::parse_str(parts.next()?).ok()?);
    let district = DistrictId(uuid::Uuid::parse_str(parts.next()?).ok()?);
    let station = match parts.next()? {
        "-" => None,
        s => Some(StationId(uuid::Uuid::parse_str(s).ok()?)),
    };
    // Announcements from a server before case files could close have no fifth part.
    let closed = parts.next() == Some("1");
    Some(Changed {
        seq,
        doc,
        place: DocPlace {
            district,
            station,
            closed,
        },
    })
}

/// On PostgreSQL, relays `NOTIFY` announcements into this process's listeners until
/// the server stops; reconnects after a lost connection. Does nothing on SQLite.
pub(crate) async fn relay_notifications(state: Arc<AppState>) {
    let Pool::Postgres(pool) = state.store.pool() else {
        return;
    };
    // The listener holds its connection for as long as it listens: it gets a pool of
    // its own, so the requests keep every one of the `--db-connections` (a server
    // started with one would otherwise have none left and time out on every request).
    let listening_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut stopping = state.stopping.subscribe();
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&listening_pool).await?;
            listener.listen(CHANNEL).await?;
            loop {
                let n = listener.recv().await?;
                match decode(n.payload()) {
                    Some(changed) => {
                        let _ = state.events.send(changed);
                    }
                    None => tracing::warn!(payload = n.payload(), "unreadable announcement"),
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = listening => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "live announcements interrupted; reconnecting");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            () = async { let _ = stopping.wait_for(|s| *s).await; } => return,
        }
    }
}

/// Decrements the listener gauge when a stream ends.
struct Listening(Arc<AppState>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.metrics.live_listeners.dec();
    }
}

/// How often a live stream re-checks its listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recheck(pub std::time::Duration);

/// The listener's scope now, or why its stream must end: the device was revoked, the
/// account disabled or removed from every district.
async fn current_scope(state: &AppState, user: UserId, device: Option<DeviceId>) -> Result<Scope> {
    if let Some(device) = device {
        let still = state.store.device(device).await?;
        if !still.is_some_and(|d| d.user == user && d.revoked_at.is_none()) {
            return Err(Error::Unauthenticated(AuthFailure::Revoked));
        }
    }
    let Some(user) = state.store.user(user).await? else {
        return Err(Error::Unauthenticated(AuthFailure::Invalid));
    };
    if user.disabled {
        return Err(Error::Unauthenticated(AuthFailure::UserDisabled));
    }
    Caller {
        user,
        device: None,
        actors: Vec::new(),
    }
    .principal(state)
    .await
    .map(|p| p.scope)
}

fn changed_event(c: &Changed) -> Option<Event> {
    Event::default()
        .event("changed")
        .json_data(ChangedEvent {
            seq: c.seq,
            doc: c.doc.0,
        })
        .ok()
}

/// Server-sent events announcing changes in the caller's scope. A `lagged` event means
/// announcements were dropped: sync or reload everything. The stream re-checks its
/// listener every half minute: a new scope applies from then on, and a revoked device
/// or disabled account gets an `ended` event and the stream closes (reconnecting is
/// then refused with 401).
#[utoipa::path(get, path = "/api/v1/events", tag = "sync",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An endless `text/event-stream` of `changed` events (data: ChangedEvent), `lagged` events, and an `ended` event (data: the error code) when the listener lost access", content_type = "text/event-stream", body = ChangedEvent),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    Extension(Recheck(every)): Extension<Recheck>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let mut scope = caller.principal(&state).await?.scope;
    let (user, device) = (caller.user.id, caller.device.map(|d| d.id));
    let (tx, rx) = mpsc::channel::<Event>(64);
    let mut changes = state.events.subscribe();
    let mut stopping = state.stopping.subscribe();
    state.metrics.live_listeners.inc();
    tokio::spawn(async move {
        let _guard = Listening(state.clone());
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                () = async { let _ = stopping.wait_for(|s| *s).await; } => return,
                () = tx.closed() => return,
                _ = recheck.tick() => match current_scope(&state, user, device).await {
                    Ok(now) => {
                        scope = now;
                        continue;
                    }
                    // The database is away: keep the scope we had, and try again.
                    Err(Error::Store(e)) => {
                        tracing::warn!(error = %e, "could not re-check a live listener");
                        continue;
                    }
                    Err(e) => {
                        let code = match &e {
                            Error::Unauthenticated(f) => f.code(),
                            _ => "forbidden",
                        };
                        let _ = tx.send(Event::default().event("ended").data(code)).await;
                        return;
                    }
                },
                message = changes.recv() => match message {
                    Ok(c) if c.place.in_scope(c.doc, &scope) => changed_event(&c),
                    Ok(_) => None,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        Some(Event::default().event("lagged").data(""))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if let Some(event) = event
                && tx.send(event).await.is_err()
            {
                return;
            }
        }
    });
    let stream = ReceiverStream::new(rx).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_through_their_text_form() {
        for station in [None, Some(StationId(uuid::Uuid::from_u128(3)))] {
            let c = Changed {
                seq: 42,
                doc: DocId(uuid::Uuid::from_u128(1)),
                place: DocPlace {
                    district: DistrictId(uuid::Uuid::from_u128(2)),
                    station,
                    closed: station.is_some(),
                },
            };
            let back = decode(&encode(&c)).unwrap();
            assert_eq!((back.seq, back.doc, back.place), (c.seq, c.doc, c.place));
        }
        assert!(decode("x y z").is_none());
        assert!(decode("").is_none());
    }
}
