//! For operators and tools: liveness, readiness, metrics, the OpenAPI document.

use super::AppState;
use super::{accounts, events, recover, sync};
use crate::error::{Error, Result};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// The database answers: the server can take syncs.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = String), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str> {
    if *state.stopping.borrow() {
        return Err(Error::Store(crate::store::StoreError::Corrupt(
            "shutting down".into(),
        )));
    }
    state.store.ping().await?;
    Ok("ready")
}

/// Prometheus metrics, text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition", body = String)))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse> {
    state
        .metrics
        .cached_docs
        .set(i64::try_from(state.store.cached_docs()).unwrap_or(i64::MAX));
    let body = state
        .metrics
        .encode()
        .map_err(|e| Error::Internal(format!("encoding metrics: {e}")))?;
    Ok((
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The HTTP API, described.
#[derive(OpenApi)]
#[openapi(
    info(title = "Linli server", description = "Sync, access and administration for Linli (邻里)."),
    modifiers(&BearerAuth),
    paths(
        healthz, readyz, metrics, openapi,
        accounts::login, accounts::enrol, accounts::refresh, accounts::me,
        accounts::create_district, accounts::create_station, accounts::create_user,
        accounts::issue_code, accounts::revoke, accounts::assign, accounts::unassign,
        sync::sync, recover::recover, events::events,
    ),
    components(schemas(crate::error::ErrorBody))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
