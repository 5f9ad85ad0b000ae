//! The server's one error type, converted to an HTTP status and a stable code exactly
//! once, in [`IntoResponse`]. Internal details are logged, never sent.

use crate::store::StoreError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why a request was not authenticated. Each is a 401 with its own code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No bearer token.
    Missing,
    /// The token does not verify: forged, wrongly signed, malformed, wrong algorithm.
    Invalid,
    /// The token verified but has expired: refresh it.
    Expired,
    /// The device was revoked: purge the local data.
    Revoked,
    /// The station hub was revoked: it stops serving phones.
    HubRevoked,
    /// The phone's session at a station hub ended (it expired, or the hub
    /// restarted): start another.
    SessionEnded,
    /// The user is disabled or gone.
    UserDisabled,
    /// Wrong login or password, or an unknown, used or expired enrolment code, or an
    /// unknown refresh token.
    BadCredentials,
}

impl AuthFailure {
    /// The stable code clients switch on.
    pub fn code(self) -> &'static str {
        match self {
            AuthFailure::Missing => "unauthenticated",
            AuthFailure::Invalid => "invalid_token",
            AuthFailure::Expired => "token_expired",
            AuthFailure::Revoked => "device_revoked",
            AuthFailure::HubRevoked => "hub_revoked",
            AuthFailure::SessionEnded => "hub_session_ended",
            AuthFailure::UserDisabled => "user_disabled",
            AuthFailure::BadCredentials => "bad_credentials",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "send an access token: Authorization: Bearer <token>",
            AuthFailure::Invalid => "the access token is not valid; sign in or enrol again",
            AuthFailure::Expired => "the access token has expired; refresh it",
            AuthFailure::Revoked => {
                "this device was revoked; delete its local data and enrol again"
            }
            AuthFailure::HubRevoked => {
                "this station hub was revoked; its phones sync with the district server"
            }
            AuthFailure::SessionEnded => "the session at this station hub has ended; start another",
            AuthFailure::UserDisabled => "this account is disabled",
            AuthFailure::BadCredentials => "the credentials were not accepted",
        }
    }
}

/// Everything a request or command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not authenticated (401).
    #[error("not authenticated: {}", .0.code())]
    Unauthenticated(AuthFailure),
    /// Authenticated but not allowed (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The thing named does not exist, or is outside the caller's scope (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (400), with a stable code.
    #[error("bad request ({code}): {message}")]
    BadRequest {
        /// The stable code.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The request's body or path is not what the endpoint takes, as the HTTP layer
    /// found it: 400 or 422 (`malformed`), 413 (`too_large`) or 415
    /// (`unsupported_media_type`).
    #[error("unreadable request ({status}): {message}")]
    Unreadable {
        /// The status the HTTP layer chose.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
    /// The request conflicts with what exists (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Too many attempts (429).
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the next attempt may succeed.
        retry_after_secs: u64,
    },
    /// Storage failed (503: retry later).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A setting is missing or wrong (operator commands and start-up).
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else that is the server's fault (500).
    #[error("internal error: {0}")]
    Internal(String),
}

/// `Result` with the server's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl Error {
    /// A request the HTTP layer could not read, with its status.
    pub fn unreadable(status: StatusCode, message: impl Into<String>) -> Self {
        Error::Unreadable {
            status,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Store(StoreError::Database(e))
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code to switch on (`invalid_token`, `device_revoked`, `malformed`, …).
    pub code: String,
    /// What was wrong and what to do, for people.
    pub message: String,
    /// Set when the device must delete its local data (it was revoked).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub purge: bool,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            Error::Unauthenticated(f) => (StatusCode::UNAUTHORIZED, f.code(), f.message().into()),
            Error::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            Error::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            Error::BadRequest { code, message } => {
                (StatusCode::BAD_REQUEST, *code, message.clone())
            }
            Error::Unreadable { status, message } => {
                let code = match *status {
                    StatusCode::PAYLOAD_TOO_LARGE => "too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    _ => "malformed",
                };
                (*status, code, message.clone())
            }
            Error::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            Error::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                self.to_string(),
            ),
            Error::Store(e) => {
                tracing::error!(error = %e, "storage failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the server could not reach its storage; nothing was lost, retry later".into(),
                )
            }
            Error::Config(_) | Error::Internal(_) => {
                tracing::error!(error = %self, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed; nothing was lost, retry later".into(),
                )
            }
        };
        let purge = matches!(self, Error::Unauthenticated(AuthFailure::Revoked));
        let mut response = (
            status,
            Json(ErrorBody {
                code: code.into(),
                message,
                purge,
            }),
        )
            .into_response();
        match self {
            Error::RateLimited { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Error::Unauthenticated(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"linli\""),
                );
            }
            _ => {}
        }
        response
    }
}
