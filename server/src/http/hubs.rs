//! The district server's side of station hubs (issue 15): codes that enrol a hub for
//! one station, the hub's own rotating credential, its revocation, and the forwarding
//! of what its phones sent while the uplink was down. See `ARCHITECTURE.md`, "Station
//! hubs".

use super::AppState;
use super::accounts::{limited, now_secs};
use super::caller::{Caller, ClientAddr, bearer};
use super::events::Announcing;
use super::extract::{Json, Path};
use super::sync::ENVELOPE;
use crate::auth::ACCESS_TOKEN_SECS;
use crate::error::{AuthFailure, Error, Result};
use crate::hubs::Hub;
use crate::identity::Device;
use crate::now_ms;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use sync_core::ids::{DeviceId, StationId, UserId};
use sync_core::model::{Principal, Role, Scope};
use sync_core::protocol::envelope::{Rejection, SyncRequest};
use sync_core::protocol::forward::{
    ForwardItem, ForwardOutcome, ForwardRequest, ForwardResponse, ForwardResult, Taken, codes,
};
use sync_core::protocol::server::{DeviceAuth, Limits, handle_forwarded, handle_sync};
use sync_core::protocol::store::{Quarantined, ServerStore};
use utoipa::ToSchema;
use uuid::Uuid;

/// An authenticated station hub: its token verified, the hub loaded and checked on
/// every request, so a revocation takes effect at once.
#[derive(Debug)]
pub(crate) struct HubCaller(pub Hub);

impl FromRequestParts<Arc<AppState>> for HubCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self> {
        let claims = bearer(parts)
            .and_then(|token| state.keys.verify_hub(token))
            .map_err(Error::Unauthenticated)?;
        let hub = state
            .store
            .hub(claims.sub)
            .await?
            .ok_or(Error::Unauthenticated(AuthFailure::Invalid))?;
        if hub.revoked_at.is_some() {
            return Err(Error::Unauthenticated(AuthFailure::HubRevoked));
        }
        state.store.touch_hub(&hub, now_ms()).await?;
        Ok(HubCaller(hub))
    }
}

/// The station a hub code is for.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct HubCodeRequest {
    station: Uuid,
}

/// A one-time hub code.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HubCodeResponse {
    code: String,
    /// Milliseconds since the epoch.
    expires_at: i64,
}

/// Issues a one-time code, valid 15 minutes, that enrols a hub for a station of the
/// caller's district (coordinators and admins). Only from a password sign-in.
#[utoipa::path(post, path = "/api/v1/hub-codes", tag = "hubs", security(("bearer" = [])),
    request_body = HubCodeRequest,
    responses((status = 201, body = HubCodeResponse),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "No such station in a district the caller manages", body = crate::error::ErrorBody)))]
pub(crate) async fn issue_code(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<HubCodeRequest>,
) -> Result<(StatusCode, Json<HubCodeResponse>)> {
    let station = StationId(request.station);
    let (code, expires_at) = issue_hub_code(&state, &caller, station).await?;
    Ok((
        StatusCode::CREATED,
        Json(HubCodeResponse { code, expires_at }),
    ))
}

/// Issues a hub code for `station` if the caller may: shared by the API and the page.
pub(crate) async fn issue_hub_code(
    state: &AppState,
    caller: &Caller,
    station: StationId,
) -> Result<(String, i64)> {
    if caller.device.is_some() {
        return Err(Error::Forbidden(
            "hub codes are issued from a password sign-in, not from a device".into(),
        ));
    }
    let district = state.store.station_district(station).await?;
    if !district.is_some_and(|d| caller.user.may_manage_hubs(d)) {
        return Err(Error::NotFound(format!(
            "no station {station} whose hubs you manage"
        )));
    }
    let issued = state
        .store
        .issue_hub_code(caller.user.id, station, now_ms())
        .await?;
    tracing::info!(by = %caller.user.id, %station, "hub code issued");
    Ok(issued)
}

/// A hub enrolling with its code.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct HubEnrolRequest {
    code: String,
    /// A name for people, e.g. "Huasha station's hub".
    #[serde(default)]
    name: String,
}

/// A hub's credential.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HubCredential {
    hub_id: Uuid,
    station: Uuid,
    district: Uuid,
    /// Long-lived, rotated on every use, revocable.
    refresh_token: String,
    /// Short-lived bearer token for the hub endpoints.
    access_token: String,
    /// Seconds the access token lives.
    expires_in: u64,
}

/// Exchanges a one-time hub code for a hub credential.
#[utoipa::path(post, path = "/api/v1/hubs/enrol", tag = "hubs", request_body = HubEnrolRequest,
    responses((status = 200, body = HubCredential),
        (status = 401, description = "Unknown, used or expired code (`bad_credentials`)", body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody)))]
pub(crate) async fn enrol(
    State(state): State<Arc<AppState>>,
    addr: ClientAddr,
    Json(request): Json<HubEnrolRequest>,
) -> Result<Json<HubCredential>> {
    limited(&state.rate_limits.enrol_per_address, &addr.key())?;
    let enrolled = state
        .store
        .enrol_hub(&request.code, &request.name, now_ms())
        .await?;
    let hub = enrolled.hub;
    tracing::info!(hub = %hub.id, station = %hub.station, "hub enrolled");
    Ok(Json(HubCredential {
        hub_id: hub.id,
        station: hub.station.0,
        district: hub.district.0,
        access_token: state.keys.issue_hub(hub.id, now_secs())?,
        refresh_token: enrolled.refresh_token,
        expires_in: ACCESS_TOKEN_SECS,
    }))
}

/// A hub refreshing its access token.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct HubRefreshRequest {
    refresh_token: String,
}

/// New hub tokens: keep the new refresh token, forget the old.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HubTokens {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// Rotates a hub's refresh token and issues an access token.
#[utoipa::path(post, path = "/api/v1/hubs/token", tag = "hubs", request_body = HubRefreshRequest,
    responses((status = 200, body = HubTokens),
        (status = 401, description = "Unknown token (`bad_credentials`) or revoked hub (`hub_revoked`)", body = crate::error::ErrorBody)))]
pub(crate) async fn refresh(
    State(state): State<Arc<AppState>>,
    Json(request): Json<HubRefreshRequest>,
) -> Result<Json<HubTokens>> {
    let (hub, refresh_token) = state
        .store
        .rotate_hub_refresh(&request.refresh_token)
        .await?;
    Ok(Json(HubTokens {
        access_token: state.keys.issue_hub(hub.id, now_secs())?,
        refresh_token,
        expires_in: ACCESS_TOKEN_SECS,
    }))
}

/// Revokes a hub of the caller's district: its next request is refused with
/// `hub_revoked`.
#[utoipa::path(post, path = "/api/v1/hubs/{hub}/revoke", tag = "hubs", security(("bearer" = [])),
    params(("hub" = Uuid, Path, description = "The hub id")),
    responses((status = 204), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(hub): Path<Uuid>,
) -> Result<StatusCode> {
    revoke_hub(&state, &caller, hub).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes `hub` if the caller may: shared by the API and the page.
pub(crate) async fn revoke_hub(state: &AppState, caller: &Caller, hub: Uuid) -> Result<()> {
    let not_found = || Error::NotFound(format!("no hub {hub} you manage"));
    let found = state.store.hub(hub).await?.ok_or_else(not_found)?;
    if caller.device.is_some() || !caller.user.may_manage_hubs(found.district) {
        return Err(not_found());
    }
    state
        .store
        .revoke_hub(found.id, caller.user.id, now_ms())
        .await?;
    tracing::info!(by = %caller.user.id, hub = %found.id, "hub revoked");
    Ok(())
}

/// Takes a batch of phone requests a hub held (a forward request, `LNSY` kind 3) and
/// answers one outcome per item (kind 4). Each item's seal must be its device's seal of
/// the body; its uploads are then checked and stored as that device's, restricted to
/// the hub's station. An item refused whole stored nothing.
#[utoipa::path(post, path = "/api/v1/hubs/forward", tag = "hubs",
    security(("bearer" = [])),
    request_body(content = super::ops::Binary, content_type = "application/vnd.linli.sync", description = "A forward request"),
    responses(
        (status = 200, description = "A forward response", content_type = "application/vnd.linli.sync", body = super::ops::Binary),
        (status = 400, description = "The body is not a forward request (`malformed`)", body = crate::error::ErrorBody),
        (status = 401, description = "Not a hub's token, or the hub was revoked (`hub_revoked`)", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than the server accepts"),
        (status = 503, description = "Storage unavailable; retry", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn forward(
    State(state): State<Arc<AppState>>,
    HubCaller(hub): HubCaller,
    body: Bytes,
) -> Result<Response> {
    let request = ForwardRequest::decode(&body)
        .map_err(|e| Error::bad_request("malformed", format!("not a forward request: {e}")))?;
    let mut answer = ForwardResponse {
        items: Vec::with_capacity(request.items.len()),
    };
    for item in &request.items {
        let result = take(&state, &hub, item).await?;
        if let ForwardResult::Refused { code, message } = &result {
            tracing::warn!(hub = %hub.id, device = %item.device, %code, %message, "forwarded request refused");
        }
        answer.items.push(ForwardOutcome {
            id: item.id,
            result,
        });
    }
    Ok(([(CONTENT_TYPE, ENVELOPE)], answer.encode()).into_response())
}

fn refused(code: &str, message: impl Into<String>) -> ForwardResult {
    ForwardResult::Refused {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// One forwarded phone request.
async fn take(state: &AppState, hub: &Hub, item: &ForwardItem) -> Result<ForwardResult> {
    let not_here = || {
        refused(
            codes::NOT_THIS_STATION,
            format!(
                "device {} does not work in this hub's district",
                item.device
            ),
        )
    };
    let Some(device) = state.store.device(item.device).await? else {
        return Ok(not_here());
    };
    let Some(user) = state.store.user(device.user).await? else {
        return Ok(not_here());
    };
    if user.district != Some(hub.district) {
        return Ok(not_here());
    }
    // Only the phone and this server hold the key behind the seal: a hub cannot make
    // one, so it cannot upload anything under a phone's name.
    let sealed = device
        .keys
        .as_ref()
        .is_some_and(|k| k.verify(&item.body.0, &item.seal));
    if !sealed {
        return Ok(refused(
            codes::BAD_SEAL,
            "the seal is not this device's seal of the body",
        ));
    }
    let Ok((mut request, _)) = SyncRequest::decode_versioned(&item.body.0) else {
        return Ok(refused(codes::MALFORMED, "the body is not a sync request"));
    };
    // Only what the hub took: what it left to this server the phone still holds, and
    // sends here itself.
    request.uploads.retain(|u| item.docs.contains(&u.doc));
    let now = now_ms();
    // The phone wrote this, but its device or account was shut off meanwhile: nothing
    // is taken, and nothing is lost either. Every upload waits in quarantine for a
    // coordinator, as a revoked phone's recovered export does.
    let shut_off = if device.revoked_at.is_some() {
        Some(("device_revoked", "this device was revoked"))
    } else if user.disabled {
        Some(("user_disabled", "this account is disabled"))
    } else {
        None
    };
    if let Some(why) = shut_off {
        return Ok(ForwardResult::Taken(
            quarantine_all(state, &device, hub, &request, why, now).await?,
        ));
    }
    let Some(principal) = state.store.principal(&user).await? else {
        return Ok(not_here());
    };
    let auth = DeviceAuth {
        device: device.id,
        principal,
        actors: state.store.device_actors(device.id).await?,
    };
    let store = Announcing {
        store: &state.store,
        events: &state.events,
    };
    let taken =
        handle_forwarded(&store, &auth, hub.station, &request, now, Limits::default()).await?;
    state.metrics.receipts.inc_by(taken.receipts.len() as u64);
    Ok(ForwardResult::Taken(taken))
}

/// Keeps every upload of a request in quarantine, with a code and a reason.
async fn quarantine_all(
    state: &AppState,
    device: &Device,
    hub: &Hub,
    request: &SyncRequest,
    (code, reason): (&str, &str),
    now: i64,
) -> Result<Taken> {
    let mut taken = Taken::default();
    for upload in &request.uploads {
        let number = state
            .store
            .quarantine(Quarantined {
                doc: upload.doc,
                district: hub.district,
                device: device.id,
                user: device.user,
                code: code.to_owned(),
                reason: reason.to_owned(),
                bytes: upload.changes.iter().map(|c| c.0.clone()).collect(),
                at: now,
            })
            .await?;
        taken.rejections.push(Rejection {
            doc: upload.doc,
            code: code.to_owned(),
            message: reason.to_owned(),
            heads: upload.heads.clone(),
            quarantine: number.unwrap_or(0),
        });
    }
    Ok(taken)
}

/// The hub's roster: the district's users with their scope narrowed to the hub's
/// station, and their devices with the keys they prove themselves with to this hub.
#[utoipa::path(get, path = "/api/v1/hubs/roster", tag = "hubs", security(("bearer" = [])),
    params(Backlog),
    responses((status = 200, body = crate::hubs::Roster),
        (status = 401, description = "Not a hub's token, or the hub was revoked (`hub_revoked`)", body = crate::error::ErrorBody)))]
pub(crate) async fn roster(
    State(state): State<Arc<AppState>>,
    HubCaller(hub): HubCaller,
    Extension(limit): Extension<ForwardLimit>,
    Query(backlog): Query<Backlog>,
) -> Result<Json<crate::hubs::Roster>> {
    if let Some(waiting) = backlog.waiting {
        state
            .store
            .record_hub_backlog(&hub, waiting.max(0), backlog.oldest)
            .await?;
    }
    let mut roster = state.store.hub_roster(&hub).await?;
    roster.forward_limit = limit.0;
    Ok(Json(roster))
}

/// What a hub still holds for the district server, as it says when it fetches its
/// roster: shown to coordinators on the hubs page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct Backlog {
    /// Phones' requests waiting in its outbox.
    waiting: Option<i64>,
    /// When it took the oldest of them (Unix ms).
    oldest: Option<i64>,
}

/// The largest body `/api/v1/hubs/forward` takes, for the roster to tell hubs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForwardLimit(pub u64);

/// The hub's own sync with the district server: what its station holds (every case
/// file of the station and the district's catalog), by the same feed and cursor a
/// phone's sync uses, with the hub as a station's staff member who writes nothing. The
/// phones' uploads go up through `/api/v1/hubs/forward`, never here.
#[utoipa::path(post, path = "/api/v1/hubs/sync", tag = "hubs",
    security(("bearer" = [])),
    request_body(content = super::ops::Binary, content_type = "application/vnd.linli.sync", description = "A sync request envelope without uploads"),
    responses(
        (status = 200, description = "A sync response envelope", content_type = "application/vnd.linli.sync", body = super::ops::Binary),
        (status = 400, description = "Not a sync request, or one with uploads (`malformed`)", body = crate::error::ErrorBody),
        (status = 401, description = "Not a hub's token, or the hub was revoked (`hub_revoked`)", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than the server accepts"),
        (status = 503, description = "Storage unavailable; retry", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn pull(
    State(state): State<Arc<AppState>>,
    HubCaller(hub): HubCaller,
    body: Bytes,
) -> Result<Response> {
    let (request, version) = SyncRequest::decode_versioned(&body)
        .map_err(|e| Error::bad_request("malformed", format!("not a sync request: {e}")))?;
    if !request.uploads.is_empty() || !request.fallback.is_empty() {
        return Err(Error::bad_request(
            "malformed",
            "a hub uploads nothing here: its phones' requests go to /api/v1/hubs/forward",
        ));
    }
    let auth = DeviceAuth {
        device: DeviceId(hub.id),
        principal: Principal {
            user: UserId(hub.id),
            role: Role::StationStaff,
            scope: Scope::Stations {
                district: hub.district,
                stations: [hub.station].into(),
            },
        },
        actors: Vec::new(),
    };
    let response = handle_sync(&state.store, &auth, &request, now_ms(), Limits::default()).await?;
    Ok(([(CONTENT_TYPE, ENVELOPE)], response.encode_version(version)).into_response())
}
