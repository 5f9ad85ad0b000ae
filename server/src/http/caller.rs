//! Who is calling: the bearer token verified, its user (and device) loaded and checked
//! on every request, so a revocation or a disabled account takes effect at once.

use super::AppState;
use crate::error::{AuthFailure, Error, Result};
use crate::identity::{Device, User};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::net::SocketAddr;
use std::sync::Arc;
use sync_core::automerge::ActorId;
use sync_core::ids::{DeviceId, UserId};
use sync_core::model::Principal;

/// An authenticated caller: a user, through an enrolled device or a password login.
#[derive(Debug)]
pub(crate) struct Caller {
    pub user: User,
    pub device: Option<Device>,
    /// The actors registered to the device, read with it (none without one).
    pub actors: Vec<ActorId>,
}

impl Caller {
    /// The role and scope the caller acts with.
    pub async fn principal(&self, state: &AppState) -> Result<Principal> {
        state.store.principal(&self.user).await?.ok_or_else(|| {
            Error::Forbidden("this account belongs to no district: it holds no case files".into())
        })
    }

    /// The device, for endpoints only an enrolled device may call.
    pub fn device(&self) -> Result<&Device> {
        self.device.as_ref().ok_or_else(|| {
            Error::Forbidden("only an enrolled device may sync; enrol with a code first".into())
        })
    }
}

pub(crate) fn bearer(parts: &Parts) -> Result<&str, AuthFailure> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthFailure::Missing)?
        .to_str()
        .map_err(|_| AuthFailure::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Invalid);
    }
    Ok(token.trim())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self> {
        let claims = bearer(parts)
            .and_then(|token| state.keys.verify(token))
            .map_err(Error::Unauthenticated)?;
        let invalid = Error::Unauthenticated(AuthFailure::Invalid);
        let (user, device, actors) = match claims.dev {
            Some(id) => {
                let (device, user, actors) = state
                    .store
                    .device_with_user(DeviceId(id))
                    .await?
                    .filter(|(d, _, _)| d.user.0 == claims.sub)
                    .ok_or(invalid)?;
                if device.revoked_at.is_some() {
                    return Err(Error::Unauthenticated(AuthFailure::Revoked));
                }
                (user, Some(device), actors)
            }
            None => {
                let user = state.store.user(UserId(claims.sub)).await?.ok_or(invalid)?;
                (user, None, Vec::new())
            }
        };
        if user.disabled {
            return Err(Error::Unauthenticated(AuthFailure::UserDisabled));
        }
        Ok(Caller {
            user,
            device,
            actors,
        })
    }
}

/// The client's address, when the server knows it (it does behind `serve`).
#[derive(Debug)]
pub(crate) struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

impl ClientAddr {
    /// A key for per-address rate limits.
    pub fn key(&self) -> String {
        self.0
            .map_or_else(|| "unknown".into(), |a| a.ip().to_string())
    }
}
