//! Enrolling a phone at a station hub (`crate::enrolment`): the hub's `POST
//! /api/v1/enrol`, and the district server's adoption of what a hub enrolled, from the
//! hub (`POST /api/v1/hubs/enrolments`) or from the phone (`POST /api/v1/enrol/adopt`).

use super::AppState;
use super::accounts::{DeviceCredential, EnrolRequest, limited};
use super::caller::ClientAddr;
use super::extract::Json;
use super::hubs::HubCaller;
use crate::enrolment::Enrolled;
use crate::error::{AuthFailure, Error, Result};
use crate::now_ms;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use sync_core::protocol::channel;
use utoipa::ToSchema;
use uuid::Uuid;

/// A device credential from a station hub: the district server's (with an empty access
/// token: the phone gets its first from the district server), and what the phone needs
/// to be adopted there.
#[derive(Debug, Serialize)]
pub(crate) struct HubCredential {
    #[serde(flatten)]
    credential: DeviceCredential,
    /// Where the phone syncs from now on (and where it refreshes its token).
    district_url: String,
    /// The hub that enrolled it.
    hub: Uuid,
    /// The hub's signed account of the enrolment, for `POST /api/v1/enrol/adopt`.
    certificate: String,
}

/// `POST /api/v1/hub/enrol` on a hub: a call sealed in the enrolment channel of the
/// code the `linli-code` header names (`sync_core::protocol::channel::code_lookup`),
/// whose body is the [`EnrolRequest`] (its `code` ignored: the channel's key is the
/// code). The code is taken once and the device minted; the answer is sealed, whatever
/// its status. A code the hub does not hold, or a frame that does not open, is refused
/// in the clear.
pub(crate) async fn enrol_at_hub(
    State(state): State<Arc<AppState>>,
    addr: ClientAddr,
    headers: HeaderMap,
    frame: axum::body::Bytes,
) -> Result<Response> {
    limited(&state.rate_limits.enrol_per_address, &addr.key())?;
    let hub = super::hub_side::hub(&state)?;
    let lookup = headers
        .get(channel::CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| hex::decode(v.trim()).ok())
        .ok_or_else(|| {
            Error::bad_request(
                "malformed",
                format!("name the code in the {} header", channel::CODE_HEADER),
            )
        })?;
    let code_hash = state
        .store
        .hub_code_by_lookup(&lookup)
        .await?
        .ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
    let refused = || Error::bad_request("channel_refused", "the call does not open with this code");
    let (session, _) = channel::frame_of(&frame).map_err(|_| refused())?;
    let sealed_with = channel::enrolment_channel(&code_hash, hub.id, session);
    let (seq, call) = sealed_with.open_call(&frame).map_err(|_| refused())?;
    let answer = match serde_json::from_slice::<EnrolRequest>(&call.body) {
        Ok(request) => mint(&state, hub, &code_hash, &request.device_name)
            .await
            .map(|credential| axum::Json(credential).into_response())
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => Error::bad_request("malformed", format!("not an enrolment: {e}")).into_response(),
    };
    super::hub_side::sealed(&sealed_with, seq, answer, 1 << 20).await
}

async fn mint(
    state: &AppState,
    hub: &crate::hub::HubSide,
    code_hash: &[u8; 32],
    device_name: &str,
) -> Result<HubCredential> {
    let district_url = hub
        .district_url()
        .ok_or_else(crate::enrolment::not_linked)?;
    let minted = state
        .store
        .mint_device(hub.id, code_hash, device_name, now_ms())
        .await?;
    Ok(HubCredential {
        credential: DeviceCredential {
            device_id: minted.enrolled.device,
            user: (&minted.user).into(),
            actors: vec![hex::encode(&minted.enrolled.actor)],
            refresh_token: minted.refresh_token,
            access_token: String::new(),
            expires_in: 0,
            export_key: hex::encode(&minted.enrolled.export_key),
        },
        district_url,
        hub: hub.id,
        certificate: minted.certificate,
    })
}

/// Certificates a hub hands on.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Certificates {
    /// Each as the hub gave it to its phone.
    certificates: Vec<String>,
}

/// What became of each.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Adoptions {
    answers: Vec<AdoptionAnswer>,
}

/// What became of one enrolment.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdoptionAnswer {
    /// The device, where the certificate named one.
    device: Option<Uuid>,
    /// `adopted`, `revoked` (the device exists, revoked: its records go to a
    /// coordinator's quarantine) or `refused` (not adopted: see `message`).
    outcome: String,
    message: String,
}

/// The hub hands on the devices it enrolled; each is adopted (or refused) as the
/// phone's own certificate would be. Only this hub's certificates are taken.
#[utoipa::path(post, path = "/api/v1/hubs/enrolments", tag = "hubs",
    security(("bearer" = [])),
    request_body = Certificates,
    responses(
        (status = 200, body = Adoptions),
        (status = 401, description = "Not a hub's token, or the hub was revoked (`hub_revoked`)", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn adopt_from_hub(
    State(state): State<Arc<AppState>>,
    HubCaller(hub): HubCaller,
    Json(request): Json<Certificates>,
) -> Result<Json<Adoptions>> {
    let mut answers = Vec::with_capacity(request.certificates.len());
    for certificate in request.certificates.iter().take(500) {
        let store = &state.store;
        let read = Enrolled::verified(certificate, |claimed| async move {
            Ok(if claimed == hub.id {
                store.hub_enrol_key(hub.id).await?
            } else {
                None
            })
        })
        .await;
        let answer = match read {
            Ok(enrolled) => match store.adopt_enrolment(&hub, &enrolled, now_ms()).await {
                Ok(adoption) => AdoptionAnswer {
                    device: Some(enrolled.device),
                    outcome: adoption.code().into(),
                    message: String::new(),
                },
                Err(e @ (Error::BadRequest { .. } | Error::Conflict(_))) => AdoptionAnswer {
                    device: Some(enrolled.device),
                    outcome: "refused".into(),
                    message: e.to_string(),
                },
                Err(e) => return Err(e),
            },
            Err(e) => AdoptionAnswer {
                device: None,
                outcome: "refused".into(),
                message: e.to_string(),
            },
        };
        answers.push(answer);
    }
    Ok(Json(Adoptions { answers }))
}

/// A phone's certificate from the hub that enrolled it.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct AdoptRequest {
    certificate: String,
}

/// The phone brings the certificate its hub gave it, when it meets the district server
/// before the hub could hand it on: the device is adopted (or found adopted), and the
/// phone's refresh token works from then on. A certificate no hub of this district
/// signed is refused; so is one dated after its hub was revoked.
#[utoipa::path(post, path = "/api/v1/enrol/adopt", tag = "access",
    request_body = AdoptRequest,
    responses(
        (status = 200, body = AdoptionAnswer),
        (status = 400, description = "Not a certificate a hub of this server signed (`bad_certificate`)", body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody),
    ))]
pub(crate) async fn adopt(
    State(state): State<Arc<AppState>>,
    addr: ClientAddr,
    Json(request): Json<AdoptRequest>,
) -> Result<Json<AdoptionAnswer>> {
    limited(&state.rate_limits.enrol_per_address, &addr.key())?;
    let store = &state.store;
    let enrolled = Enrolled::verified(&request.certificate, |hub| async move {
        store.hub_enrol_key(hub).await
    })
    .await?;
    let hub = store
        .hub(enrolled.hub)
        .await?
        .ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
    if hub
        .revoked_at
        .is_some_and(|revoked| enrolled.enrolled_at >= revoked)
    {
        return Err(Error::Unauthenticated(AuthFailure::BadCredentials));
    }
    let adoption = store.adopt_enrolment(&hub, &enrolled, now_ms()).await?;
    Ok(Json(AdoptionAnswer {
        device: Some(enrolled.device),
        outcome: adoption.code().into(),
        message: String::new(),
    }))
}
