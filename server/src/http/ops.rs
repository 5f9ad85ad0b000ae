//! For operators and tools: liveness, readiness, metrics, the OpenAPI document.

use super::AppState;
use super::{accounts, events, hub_enrolment, hubs, recover, sync};
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
    responses((status = 200, description = "OpenMetrics text exposition",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
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

/// A binary body (a sync envelope, a sealed export), documented as what it is: bytes
/// (`type: string, format: binary`), not a JSON array of numbers.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // only described, never built: the handlers take the raw body
pub(crate) struct Binary(Vec<u8>);

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

/// Documents the error answers every operation of a kind can give, from the extractors
/// and layers they share rather than from the handler: an unreadable, oversized,
/// mistyped or ill-shaped body, a path id that is not a UUID, a missing or refused
/// token, a role that may not, and the database away. A handler's own description of
/// a status, where it has one, is kept.
struct SharedErrors;

impl SharedErrors {
    fn add(op: &mut utoipa::openapi::path::Operation, status: u16, description: &str) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build()
                    .into()
            });
    }
}

impl Modify for SharedErrors {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for (path, item) in api.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let json_body = op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                if op.request_body.is_some() {
                    Self::add(
                        op,
                        413,
                        "The body is larger than the server takes (`too_large`)",
                    );
                    Self::add(
                        op,
                        415,
                        if json_body {
                            "The body is not `Content-Type: application/json` (`unsupported_media_type`)"
                        } else {
                            "The body is not of the content type this operation takes (`unsupported_media_type`)"
                        },
                    );
                    Self::add(op, 400, "The body cannot be read (`malformed`)");
                }
                if json_body {
                    Self::add(
                        op,
                        422,
                        "The JSON does not have the fields this operation takes (`malformed`)",
                    );
                }
                if path.contains('{') {
                    Self::add(op, 400, "An id in the path is not a UUID (`malformed`)");
                }
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    Self::add(
                        op,
                        401,
                        "No access token, or one that is expired, forged or revoked",
                    );
                    Self::add(op, 403, "The caller's role or scope does not allow this");
                }
                if !matches!(path.as_str(), "/healthz" | "/metrics" | "/api/openapi.json") {
                    Self::add(
                        op,
                        503,
                        "The database is away or the server is shutting down; retry later",
                    );
                }
            }
        }
    }
}

/// The HTTP API, described.
#[derive(OpenApi)]
#[openapi(
    info(title = "Linli server", description = "Sync, access and administration for Linli (邻里)."),
    modifiers(&BearerAuth, &SharedErrors),
    paths(
        healthz, readyz, metrics, openapi,
        accounts::login, accounts::enrol, accounts::refresh, accounts::me,
        accounts::create_district, accounts::create_station, accounts::create_user,
        accounts::issue_code, accounts::revoke, accounts::assign, accounts::unassign,
        sync::sync, sync::refused, recover::recover, events::events,
        hubs::issue_code, hubs::enrol, hubs::refresh, hubs::revoke, hubs::forward, hubs::pull,
        hubs::roster, hub_enrolment::adopt_from_hub, hub_enrolment::adopt,
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
