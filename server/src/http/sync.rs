//! The sync endpoint: the core's protocol over one HTTP POST.

use super::AppState;
use super::caller::Caller;
use super::events::Announcing;
use super::metrics::{CodeLabel, OutcomeLabel};
use crate::error::{Error, Result};
use crate::now_ms;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use sync_core::automerge::{Change, ChangeHash};
use sync_core::protocol::envelope::{Hash, Rejection, SyncRequest};
use sync_core::protocol::seal;
use sync_core::protocol::server::{DeviceAuth, Limits, handle_sync, handle_sync_at_hub};
use utoipa::ToSchema;
use uuid::Uuid;

/// The media type of sync envelopes.
pub(crate) const ENVELOPE: &str = "application/vnd.linli.sync";

/// One sync exchange. The body is a sync request envelope, version 2 or 1 (see
/// `PROTOCOL.md`); the answer is a sync response envelope of the same version. Rejected
/// uploads are answered inside the envelope (200) with a reason code; their bytes are
/// kept in quarantine for a coordinator's decision.
#[utoipa::path(post, path = "/api/v1/sync", tag = "sync",
    security(("bearer" = [])),
    params(("linli-seal" = Option<String>, Header, description = "The device's seal of the body: HMAC-SHA256 under the upload key derived from its export key, 64 hex digits. Optional (older phones send none); checked when present")),
    request_body(content = super::ops::Binary, content_type = "application/vnd.linli.sync", description = "A sync request envelope"),
    responses(
        (status = 200, description = "A sync response envelope", content_type = "application/vnd.linli.sync", body = super::ops::Binary),
        (status = 400, description = "The body is not a sync request (code `malformed`), or its `linli-seal` header is not the device's seal of it (code `bad_seal`)", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated; `device_revoked` carries `purge: true`", body = crate::error::ErrorBody),
        (status = 403, description = "Not an enrolled device", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than the server accepts"),
        (status = 503, description = "Storage unavailable; nothing was stored, retry", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn sync(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let started = Instant::now();
    let seal = match &state.hub {
        None => check_seal(&caller, &headers, &body).map(|()| None),
        Some(hub) => super::hub_side::refuse_if_revoked(hub).map(|()| presented_seal(&headers)),
    };
    let result = match seal {
        Ok(seal) => step(&state, &caller, &body, seal).await,
        Err(e) => Err(e),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(Error::BadRequest { .. }) => "malformed",
        Err(_) => "failed",
    };
    state
        .metrics
        .syncs
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
    state
        .metrics
        .sync_seconds
        .observe(started.elapsed().as_secs_f64());
    state.metrics.sync_request_bytes.inc_by(body.len() as u64);
    let bytes = result?;
    state.metrics.sync_response_bytes.inc_by(bytes.len() as u64);
    Ok(([(CONTENT_TYPE, ENVELOPE)], bytes).into_response())
}

/// A sealed request must carry the device's own seal of its body
/// (`sync_core::protocol::seal`). The bearer token already says who is calling; the
/// check here makes sure the phone's sealing works on every sync, so that the requests
/// a station hub forwards (which only the seal vouches for) are not the first to try
/// it. An unsealed request is an older phone's, and is taken.
fn check_seal(caller: &Caller, headers: &HeaderMap, body: &[u8]) -> Result<()> {
    let Some(value) = headers.get(seal::HEADER) else {
        return Ok(());
    };
    let bad = |why: &str| Err(Error::bad_request("bad_seal", why.to_owned()));
    let Some(seal) = value.to_str().ok().and_then(seal::from_header) else {
        return bad("the linli-seal header is not 64 hex digits");
    };
    let Some(keys) = caller.device.as_ref().and_then(|d| d.keys.as_ref()) else {
        return bad("this device has no export key to check a seal with");
    };
    if !keys.verify(body, &seal) {
        return bad("the request's seal does not match its body under this device's key");
    }
    Ok(())
}

/// At a station hub: the seal the request carries, if it is one. The hub cannot check
/// it (only the phone and the district server hold its key); the step refuses uploads
/// without one, which the hub could never hand on.
fn presented_seal(headers: &HeaderMap) -> Option<[u8; 32]> {
    headers
        .get(seal::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(seal::from_header)
}

/// After a hub's step: keeps the request in the outbox, byte for byte with its seal
/// and the documents whose uploads the hub took, for the district server to take as
/// the phone's. Written before the answer leaves, so no receipt goes out for what the
/// outbox does not hold; if the hub stops first, the phone never had a receipt and
/// sends the changes again. What the hub refused or left to the district server is
/// not forwarded: the phone keeps it.
async fn hold(
    state: &AppState,
    hub: &crate::hub::HubSide,
    device: &crate::identity::Device,
    body: &[u8],
    seal: &[u8; 32],
    response: &sync_core::protocol::envelope::SyncResponse,
) -> Result<()> {
    let docs: std::collections::BTreeSet<_> = response.receipts.iter().map(|r| r.doc).collect();
    if docs.is_empty() {
        return Ok(());
    }
    let docs: Vec<_> = docs.into_iter().collect();
    state
        .store
        .outbox_push(device.id, now_ms(), body, seal, &docs)
        .await?;
    hub.wake.notify_one();
    Ok(())
}

async fn step(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
    seal: Option<[u8; 32]>,
) -> Result<Vec<u8>> {
    let device = caller.device()?;
    let (request, version) = SyncRequest::decode_versioned(body)
        .map_err(|e| Error::bad_request("malformed", format!("not a sync request: {e}")))?;
    // A hub hands uploads on only with the phone's seal.
    let held = match (&state.hub, request.uploads.is_empty()) {
        (Some(hub), false) => Some((
            hub,
            seal.ok_or_else(|| {
                Error::bad_request(
                    "seal_required",
                    "a station hub takes only sealed uploads, which it can hand on to the \
                     district server; update the app, or sync at the district server"
                        .to_owned(),
                )
            })?,
        )),
        _ => None,
    };
    let now = now_ms();
    // The phone's clock against ours, for the devices page (0: the phone did not say).
    let skew = (request.clock != 0).then(|| request.clock.saturating_sub(now));
    let auth = DeviceAuth {
        device: device.id,
        principal: caller.principal(state).await?,
        actors: caller.actors.clone(),
    };
    let store = Announcing {
        store: &state.store,
        events: &state.events,
    };
    let response = match &state.hub {
        None => handle_sync(&store, &auth, &request, now, Limits::default()).await,
        Some(hub) => {
            let limits = Limits::default();
            handle_sync_at_hub(&store, &auth, hub.station, &request, now, limits).await
        }
    };
    let response = response?;
    if let Some((hub, seal)) = held {
        hold(state, hub, device, body, &seal, &response).await?;
    }
    state
        .metrics
        .receipts
        .inc_by(response.receipts.len() as u64);
    for rejection in &response.rejections {
        state
            .metrics
            .rejections
            .get_or_create(&CodeLabel {
                code: rejection.code.clone(),
            })
            .inc();
        tracing::warn!(device = %device.id, doc = %rejection.doc, code = %rejection.code, "upload rejected and quarantined");
    }
    state.store.touch_device(device, now, skew).await?;
    Ok(response.encode_version(version))
}

/// An upload of the calling device that the server refused into its quarantine and
/// no person has decided on yet.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RefusedUpload {
    /// The document.
    #[schema(value_type = String, format = Uuid)]
    doc: Uuid,
    /// Why, as a stable code.
    code: String,
    /// Why, for people.
    message: String,
    /// The refused upload's heads (hex change hashes).
    heads: Vec<String>,
    /// Its quarantine number.
    quarantine: u64,
}

impl RefusedUpload {
    pub(crate) fn of(rejection: Rejection) -> Self {
        RefusedUpload {
            doc: rejection.doc.0,
            code: rejection.code,
            message: rejection.message,
            heads: rejection.heads.iter().map(|h| hex::encode(h.0)).collect(),
            quarantine: rejection.quarantine,
        }
    }
}

/// The calling device's refused uploads awaiting a decision.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RefusedUploads {
    refused: Vec<RefusedUpload>,
}

/// How many of a device's undecided refusals one answer lists.
const REFUSED_LIMIT: i64 = 200;

/// The calling device's refused uploads that await a coordinator's decision, newest
/// first (at most 200). A phone that left visits at a station hub asks before it syncs
/// here: what the district server refused after the hub took it is then set aside on
/// the phone, with its reason, as any refusal is.
#[utoipa::path(get, path = "/api/v1/sync/refused", tag = "sync",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The device's undecided refusals", body = RefusedUploads),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Not an enrolled device", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn refused(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<RefusedUploads>> {
    let device = caller.device()?;
    let rows = state
        .store
        .quarantine_open_of_device(device.id, REFUSED_LIMIT)
        .await?;
    let refused = rows
        .into_iter()
        .map(|row| {
            RefusedUpload::of(Rejection {
                doc: row.item.doc,
                heads: heads_of(&row.item.bytes),
                code: row.item.code,
                message: row.item.reason,
                quarantine: row.number,
            })
        })
        .collect();
    Ok(Json(RefusedUploads { refused }))
}

/// The heads of a refused batch of raw changes: those no other change of the batch
/// depends on. None for bytes that do not parse (a refused sync message, or damage).
fn heads_of(raw: &[Vec<u8>]) -> Vec<Hash> {
    let parse = || {
        raw.iter()
            .map(|b| Change::from_bytes(b.clone()).ok())
            .collect::<Option<Vec<Change>>>()
    };
    // Automerge panics on some malformed changes; an answer must not.
    let Ok(Some(changes)) = std::panic::catch_unwind(parse) else {
        return Vec::new();
    };
    let deps: BTreeSet<ChangeHash> = changes.iter().flat_map(|c| c.deps().to_vec()).collect();
    changes
        .iter()
        .map(Change::hash)
        .filter(|h| !deps.contains(h))
        .map(|h| Hash(h.0))
        .collect()
}
