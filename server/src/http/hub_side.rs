//! What a station hub serves its phones: a one-time challenge; a session for a phone
//! that answers it with its key for this hub (the phone derives that key from its
//! export key, `sync_core::protocol::seal`; the hub holds it from its roster); and the
//! session's channel, in which every call after that goes sealed
//! (`sync_core::protocol::channel`). Phones never sign in at a hub (enrolling there is
//! `hub_enrolment.rs`), and their tokens from the district server mean nothing here.

use super::extract::Json;
use super::{AppState, HttpLimits};
use crate::auth::ACCESS_TOKEN_SECS;
use crate::error::{AuthFailure, Error, Result};
use crate::now_ms;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use sync_core::ids::DeviceId;
use sync_core::protocol::channel::{self, Channel, Reply};
use sync_core::protocol::forward::ForwardResult;
use sync_core::protocol::seal;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

/// A station hub's service: what phones call, nothing else. Phones prove which device
/// they are with their key for this hub (`/api/v1/hub`, `/api/v1/hub/session`), and
/// every call after that goes sealed in the session's channel
/// (`/api/v1/hub/channel`, `sync_core::protocol::channel`): the station's network
/// sees no record, and the phone believes no answer that does not open with the
/// session's key. The sync itself is the district server's. Sign-in, enrolment,
/// administration and the web pages stay on the district server.
pub fn hub_app(state: Arc<AppState>, limits: HttpLimits) -> Router {
    // What a session's calls reach, and nothing from outside does.
    let inside: Router = Router::new()
        .route("/api/v1/hub/held", get(held))
        .route("/api/v1/me", get(super::accounts::me))
        .route("/api/v1/sync", post(super::sync::sync))
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(CatchPanicLayer::new())
        .with_state(state.clone());
    // A sealed call is its body plus the call's few fields and the AEAD's tag.
    let frame_limit = limits.max_body.saturating_add(CALL_OVERHEAD);
    Router::new()
        .route("/", get(status))
        .route("/healthz", get(super::ops::healthz))
        .route("/readyz", get(super::ops::readyz))
        .route("/metrics", get(super::ops::metrics))
        .route("/api/v1/hub", get(challenge))
        .route("/api/v1/hub/session", post(session))
        .route(
            "/api/v1/hub/enrol",
            post(super::hub_enrolment::enrol_at_hub),
        )
        .route(
            "/api/v1/hub/channel",
            post(
                move |State(state): State<Arc<AppState>>, frame: axum::body::Bytes| {
                    call(state, inside.clone(), frame)
                },
            )
            .layer(DefaultBodyLimit::max(frame_limit)),
        )
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Room a sealed call takes beyond its body.
const CALL_OVERHEAD: usize = 64 << 10;
/// The largest answer a call gives (the sync answers keep well below it).
const MAX_REPLY: usize = 64 << 20;

/// How long a challenge may be answered, in milliseconds.
const CHALLENGE_MS: i64 = 5 * 60 * 1000;
/// Challenges outstanding at once, and sessions open at once; beyond this the oldest
/// are dropped.
const MAX_CHALLENGES: usize = 10_000;

pub(crate) fn hub(state: &AppState) -> Result<&crate::hub::HubSide> {
    let hub = side(state)?;
    refuse_if_revoked(hub)?;
    Ok(hub)
}

/// This server's hub side, revoked or not.
fn side(state: &AppState) -> Result<&crate::hub::HubSide> {
    state
        .hub
        .as_ref()
        .ok_or_else(|| Error::NotFound("this server is not a station hub".into()))
}

/// A revoked hub takes nothing more: the phones keep their visits for the district
/// server (`hub_revoked`, which the phone library reports without purging anything).
pub(crate) fn refuse_if_revoked(hub: &crate::hub::HubSide) -> Result<()> {
    if hub.revoked.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::Unauthenticated(AuthFailure::HubRevoked));
    }
    Ok(())
}

/// Who this hub is, and a challenge to answer.
#[derive(Debug, Serialize)]
pub(crate) struct HubInfo {
    /// The hub's id: phones derive their key for this hub from it.
    hub: Uuid,
    /// Its station.
    station: Uuid,
    /// Hex: answer it within five minutes, once.
    challenge: String,
}

/// `GET /api/v1/hub`: the hub's id and a one-time challenge.
pub(crate) async fn challenge(State(state): State<Arc<AppState>>) -> Result<Json<HubInfo>> {
    let hub = hub(&state)?;
    let nonce = Uuid::from_bytes(crate::auth::random_bytes::<16>()?);
    let now = now_ms();
    let mut open = hub
        .challenges
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Someone asking without answering only pushes out the oldest.
    make_room(&mut open, now, |until| *until);
    open.insert(nonce, now + CHALLENGE_MS);
    Ok(Json(HubInfo {
        hub: hub.id,
        station: hub.station.0,
        challenge: hex::encode(nonce.as_bytes()),
    }))
}

/// A phone's answer to a challenge.
#[derive(Debug, Deserialize)]
pub(crate) struct SessionRequest {
    device: Uuid,
    /// Hex, as given.
    challenge: String,
    /// Hex: `sync_core::protocol::seal::hub_proof` of the challenge's bytes.
    proof: String,
    /// Hex, 16 to 64 bytes the phone chose: the hub answers with its own proof of them
    /// (`hub_proof` in the answer), so the phone knows it talks to the district's hub,
    /// and the session's channel key is derived from them too.
    #[serde(default)]
    nonce: Option<String>,
}

/// A session at this hub: its id is the challenge answered, and its calls go sealed
/// to `/api/v1/hub/channel`.
#[derive(Debug, Serialize)]
pub(crate) struct SessionResponse {
    /// Seconds it lives.
    expires_in: u64,
    /// Hex: `sync_core::protocol::seal::hub_answer` of the phone's nonce.
    hub_proof: String,
}

/// `POST /api/v1/hub/session`: a session token for a device that proves itself.
pub(crate) async fn session(
    State(state): State<Arc<AppState>>,
    Json(request): Json<SessionRequest>,
) -> Result<Response> {
    let hub = hub(&state)?;
    let refused = || Error::Unauthenticated(AuthFailure::BadCredentials);
    let challenge = hex::decode(request.challenge.trim())
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(refused)?;
    // A challenge works once, whatever the answer.
    let fresh = hub
        .challenges
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&challenge)
        .is_some_and(|until| until > now_ms());
    if !fresh {
        return Err(refused());
    }
    let device = DeviceId(request.device);
    let key = state
        .store
        .hub_device_key(device)
        .await?
        .ok_or_else(refused)?;
    let proof = hex::decode(request.proof.trim()).map_err(|_| refused())?;
    if !seal::verify_hub_proof(&key, challenge.as_bytes(), device.0, &proof) {
        return Err(refused());
    }
    let nonce = match request.nonce.as_deref().map(|n| hex::decode(n.trim())) {
        Some(Ok(n)) if (16..=64).contains(&n.len()) => n,
        _ => {
            return Err(Error::bad_request(
                "bad_nonce",
                "send a nonce of 16 to 64 bytes, in hex",
            ));
        }
    };
    let hub_proof = hex::encode(seal::hub_answer(
        &key,
        hub.id,
        device.0,
        &nonce,
        challenge.as_bytes(),
    ));
    let found = state.store.device(device).await?.ok_or_else(refused)?;
    if found.revoked_at.is_some() {
        // The phone deletes its residents' data on this answer, so the hub proves it
        // is the district's hub here too: a device posing as one cannot wipe phones.
        let failure = AuthFailure::Revoked;
        let body = serde_json::json!({
            "code": failure.code(),
            "message": failure.message(),
            "purge": true,
            "hub_proof": hub_proof,
        });
        return Ok((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
    }
    let user = state.store.user(found.user).await?.ok_or_else(refused)?;
    if user.disabled {
        return Err(Error::Unauthenticated(AuthFailure::UserDisabled));
    }
    let now = now_ms();
    let opened = crate::hub::Session {
        channel: Channel::new(&key, hub.id, device.0, &nonce, *challenge.as_bytes()),
        token: state
            .keys
            .issue(user.id.0, Some(device.0), super::accounts::now_secs())?,
        until: now.saturating_add(i64::try_from(ACCESS_TOKEN_SECS).unwrap_or(i64::MAX) * 1000),
        last: None,
    };
    let mut sessions = hub
        .sessions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    make_room(&mut sessions, now, |s| s.until);
    sessions.insert(*challenge.as_bytes(), opened);
    drop(sessions);
    Ok(Json(SessionResponse {
        expires_in: ACCESS_TOKEN_SECS,
        hub_proof,
    })
    .into_response())
}

/// `POST /api/v1/hub/channel`: one call of a phone's session, sealed in its channel.
/// The hub opens it, makes the call as the session's device, and seals the answer,
/// whatever its status. A frame that does not open, or comes again, is refused here
/// in the clear (and the phone believes nothing of such a refusal but that it failed).
async fn call(state: Arc<AppState>, inside: Router, frame: axum::body::Bytes) -> Result<Response> {
    let hub = hub(&state)?;
    let refused =
        |why: &str| Error::bad_request("channel_refused", format!("the call was not taken: {why}"));
    let (session, _) = channel::frame_of(&frame).map_err(|_| refused("it is not a sealed call"))?;
    let now = now_ms();
    let (sealed_with, token) = {
        let sessions = hub
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match sessions.get(&session) {
            Some(open) if open.until > now => (open.channel.clone(), open.token.clone()),
            _ => return Err(Error::Unauthenticated(AuthFailure::SessionEnded)),
        }
    };
    let (seq, call) = sealed_with
        .open_call(&frame)
        .map_err(|e| refused(&e.to_string()))?;
    {
        let mut sessions = hub
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(open) = sessions.get_mut(&session) else {
            return Err(Error::Unauthenticated(AuthFailure::SessionEnded));
        };
        if open.last.is_some_and(|last| seq <= last) {
            return Err(refused("its number was used already"));
        }
        open.last = Some(seq);
    }
    let method = match call.method.as_str() {
        "GET" => axum::http::Method::GET,
        "POST" => axum::http::Method::POST,
        _ => return Err(refused("only GET and POST are called")),
    };
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(&call.path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(media) = &call.content_type {
        request = request.header(header::CONTENT_TYPE, media);
    }
    if let Some(seal) = &call.seal {
        request = request.header(seal::HEADER, seal);
    }
    let request = request
        .body(axum::body::Body::from(call.body))
        .map_err(|_| refused("its path or headers are not valid"))?;
    let Ok(answer) = tower::ServiceExt::oneshot(inside, request).await;
    sealed(&sealed_with, seq, answer, MAX_REPLY).await
}

/// `answer`, the hub's answer to call `seq` (read up to `limit` bytes), sealed in
/// `channel` whatever its status.
pub(crate) async fn sealed(
    channel: &Channel,
    seq: u64,
    answer: Response,
    limit: usize,
) -> Result<Response> {
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = axum::body::to_bytes(answer.into_body(), limit)
        .await
        .map_err(|e| Error::Internal(format!("reading a sealed call's answer: {e}")))?;
    let reply = Reply {
        status,
        content_type,
        body: body.to_vec(),
    };
    Ok((
        [(header::CONTENT_TYPE, channel::MEDIA_TYPE)],
        channel.seal_reply(seq, &reply),
    )
        .into_response())
}

/// Before one more entry goes into `open` (challenges, sessions): those whose time
/// (`until`, ms) has passed go, and at the bound the one that ends first.
fn make_room<K: Copy + Eq + std::hash::Hash, V>(
    open: &mut std::collections::HashMap<K, V>,
    now: i64,
    until: impl Fn(&V) -> i64,
) {
    open.retain(|_, v| until(v) > now);
    if open.len() >= MAX_CHALLENGES {
        let oldest = open.iter().min_by_key(|(_, v)| until(v)).map(|(k, _)| *k);
        if let Some(k) = oldest {
            open.remove(&k);
        }
    }
}

/// What the district server holds of a phone's uploads through this hub.
#[derive(Debug, Serialize)]
pub(crate) struct Held {
    /// The district server's receipts for what this hub forwarded: per document, heads
    /// it now holds (hex change hashes).
    receipts: Vec<HeldReceipt>,
    /// Uploads the district server refused after this hub took them: kept in its
    /// quarantine under the device, for a coordinator.
    refused: Vec<super::sync::RefusedUpload>,
    /// Requests of this device still waiting to be forwarded.
    waiting: i64,
}

/// One final receipt.
#[derive(Debug, Serialize)]
pub(crate) struct HeldReceipt {
    doc: Uuid,
    heads: Vec<String>,
}

/// How many of a device's latest forwarded requests the answer covers.
const HELD_LIMIT: i64 = 500;

/// `GET /api/v1/hub/held`: the district server's answers for what this hub took from
/// the calling device, so the phone can tell "held at the station" from "held by the
/// district server".
pub(crate) async fn held(
    State(state): State<Arc<AppState>>,
    caller: super::caller::Caller,
) -> Result<Json<Held>> {
    let device = caller.device()?;
    let (waiting, answers) = state.store.outbox_of(device.id, HELD_LIMIT).await?;
    let mut held = Held {
        receipts: Vec::new(),
        refused: Vec::new(),
        waiting,
    };
    for answer in answers {
        let ForwardResult::Taken(taken) = answer else {
            continue;
        };
        held.receipts
            .extend(taken.receipts.into_iter().map(|r| HeldReceipt {
                doc: r.doc.0,
                heads: r.heads.iter().map(|h| hex::encode(h.0)).collect(),
            }));
        held.refused.extend(
            taken
                .rejections
                .into_iter()
                .map(super::sync::RefusedUpload::of),
        );
    }
    Ok(Json(held))
}

/// The hub's page for the station's staff: whether it reaches the district server and
/// what it still holds for it. Counts only: no one's records.
#[derive(Debug, askama::Template)]
#[template(path = "hub_status.html")]
pub(crate) struct StatusPage {
    hub: String,
    station: String,
    revoked: bool,
    last_ok: Option<String>,
    failing: Option<(String, String)>,
    waiting: i64,
    oldest: Option<String>,
    forwarded: i64,
}

/// `GET /` on a hub.
pub(crate) async fn status(State(state): State<Arc<AppState>>) -> Result<Response> {
    use crate::web::text::date_time;
    // A revoked hub still tells its staff so.
    let hub = side(&state)?;
    let counts = state.store.outbox_counts().await?;
    let link = hub.link();
    let page = StatusPage {
        hub: hub.id.to_string(),
        station: state
            .store
            .station_name(hub.station)
            .await?
            .unwrap_or_else(|| hub.station.0.to_string()),
        revoked: hub.revoked.load(std::sync::atomic::Ordering::SeqCst),
        last_ok: link.last_ok_at.map(date_time),
        failing: link.failing.map(|(since, why)| (date_time(since), why)),
        waiting: counts.waiting,
        oldest: counts.oldest_waiting_at.map(date_time),
        forwarded: counts.forwarded,
    };
    let html = askama::Template::render(&page)
        .map_err(|e| Error::Internal(format!("the hub's page: {e}")))?;
    Ok(axum::response::Html(html).into_response())
}
