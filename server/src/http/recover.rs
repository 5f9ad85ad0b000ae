//! A revoked phone's sealed export, handed over by the same user's newly enrolled
//! phone (`sync_core::protocol::export`, issue 12). The server opens it with the old
//! device's export key and keeps each document's unsynced changes in quarantine under
//! the old device and user, with the code `recovered`, for a coordinator to accept or
//! dismiss on the refused-changes page. An export is taken once per device.

use super::AppState;
use super::caller::Caller;
use crate::error::{Error, Result};
use crate::now_ms;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Serialize;
use std::sync::Arc;
use sync_core::protocol::export::{Export, ExportError};
use sync_core::protocol::store::Quarantined;
use utoipa::ToSchema;

/// The quarantine code of a recovered batch.
pub(crate) const RECOVERED: &str = "recovered";

/// What the server kept of an export.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Recovered {
    /// Batches now in quarantine, awaiting a coordinator.
    kept: u64,
}

/// Hands over a revoked device's sealed export. The caller must be an enrolled device
/// of the same user as the revoked one.
#[utoipa::path(post, path = "/api/v1/recover", tag = "sync",
    security(("bearer" = [])),
    request_body(content = super::ops::Binary, content_type = "application/octet-stream", description = "A sealed export (`LNEX`)"),
    responses(
        (status = 200, body = Recovered),
        (status = 400, description = "Not an export, or one this server cannot open (`malformed`)", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Not an enrolled device, or the export is another user's (`forbidden`)", body = crate::error::ErrorBody),
        (status = 409, description = "This export was recovered already (`conflict`)", body = crate::error::ErrorBody),
        (status = 413, description = "The body is larger than the server accepts"),
        (status = 503, description = "Storage unavailable; nothing was kept, retry", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn recover(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Recovered>> {
    let device = caller.device()?;
    let malformed = |e: ExportError| Error::bad_request("malformed", e.to_string());
    let old = Export::device_of(&body).map_err(malformed)?;
    let (key, recovered) = state
        .store
        .device_export_key(old)
        .await?
        .ok_or_else(|| malformed(ExportError::UnknownDevice(old)))?;
    let export = Export::open(&body, |_| Some(key)).map_err(malformed)?;
    let owner = state
        .store
        .device(old)
        .await?
        .ok_or_else(|| malformed(ExportError::UnknownDevice(old)))?;
    if owner.user != caller.user.id || export.user != caller.user.id {
        return Err(Error::Forbidden(
            "this export belongs to another user's device".into(),
        ));
    }
    if recovered {
        return Err(Error::Conflict(format!(
            "the export of device {old} was recovered already"
        )));
    }
    let district = caller.principal(&state).await?.scope.district();
    let now = now_ms();
    let mut kept = 0;
    // Every batch first, then the mark: a failure part-way leaves the export to be
    // handed over again (a duplicate batch at worst), never half taken.
    for batch in export.batches {
        let item = Quarantined {
            doc: batch.doc,
            district,
            device: old,
            user: export.user,
            code: RECOVERED.to_owned(),
            reason: format!(
                "never synced: recovered from the revoked device {:?} by {:?}",
                owner.name, device.name
            ),
            bytes: batch.changes.into_iter().map(|b| b.0).collect(),
            at: now,
        };
        state.store.keep_recovered(item).await?;
        kept += 1;
    }
    state.store.mark_export_recovered(old, now).await?;
    tracing::info!(device = %device.id, revoked = %old, kept, "revoked device's export recovered");
    Ok(Json(Recovered { kept }))
}
