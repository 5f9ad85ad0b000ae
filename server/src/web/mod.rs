//! The coordinators' web pages: server-rendered HTML (askama, escaped by default) in
//! Chinese and English, behind a password sign-in, for station staff, coordinators and
//! admins. Every page reads the SQL projections, and every query is limited to the
//! user's scope in its `WHERE` clause ([`scope`]). Reviews are written into the
//! resident's Automerge document through the core, like any other change.

mod access; // The access log (issue 16).
mod accounts; // Editing and disabling accounts (issue 12).
mod admin; // Administration (issue 5).
mod care; // A resident's volunteers, profile and station (issue 12).
mod conflicts;
mod export;
mod follow_ups; // Follow-up tickets (issue 5).
mod history;
mod hubs; // Station hubs (issue 15).
mod i18n;
mod lists;
mod quarantine; // Refused changes (issue 12).
mod residents;
mod review;
mod roster; // Roster import (issue 5).
#[doc(hidden)]
pub use roster::check_offline as roster_check_offline; // For the fuzzer (fuzz/).
mod scope;
mod session;
mod stats;
mod templates;
pub(crate) mod text;
mod visits;

use crate::error::Error;
use crate::http::AppState;
use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use i18n::Lang;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

/// Settings of the web pages.
#[derive(Clone, Copy, Debug, Default)]
pub struct WebSettings {
    /// Mark the session cookie `Secure` (HTTPS only).
    pub secure_cookies: bool,
}

/// No inline scripts or styles, nothing from elsewhere, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages, with their security headers.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    let header = |name, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/web/visits") }))
        .route("/web", get(|| async { Redirect::to("/web/visits") }))
        .route("/web/", get(|| async { Redirect::to("/web/visits") }))
        .route("/web/login", get(session::login_page).post(session::login))
        .route("/web/logout", post(session::logout))
        .route("/web/lang/{lang}", get(i18n::switch))
        .route("/web/static/style.css", get(style))
        .route("/web/visits", get(visits::log))
        // Statistics and exports.
        .route("/web/stats", get(stats::page))
        .route("/web/visits/export.csv", get(export::csv))
        .route("/web/visits/export.xlsx", get(export::xlsx))
        .route("/web/follow-ups", get(lists::follow_ups))
        // Follow-up tickets (issue 5).
        .route(
            "/web/follow-ups/{resident}/{follow_up}",
            get(follow_ups::page),
        )
        .route(
            "/web/follow-ups/{resident}/{follow_up}/comment",
            post(follow_ups::comment),
        )
        .route(
            "/web/follow-ups/{resident}/{follow_up}/assign",
            post(follow_ups::assign),
        )
        .route(
            "/web/follow-ups/{resident}/{follow_up}/close",
            post(follow_ups::close),
        )
        .route(
            "/web/residents/{resident}/follow-ups",
            post(follow_ups::open),
        )
        .route("/web/due", get(lists::due))
        // Roster import (issue 5): its own, smaller body limit for the upload.
        .route(
            "/web/residents/import",
            get(roster::form)
                .post(roster::upload)
                .layer(axum::extract::DefaultBodyLimit::max(roster::MAX_BODY)),
        )
        .route("/web/residents/import/confirm", post(roster::confirm))
        .route("/web/residents", get(lists::residents))
        .route("/web/residents/{resident}", get(residents::page))
        .route(
            "/web/residents/{resident}/resolve",
            post(conflicts::resolve),
        )
        .route(
            "/web/residents/{resident}/visits/{visit}/review",
            post(review::review),
        )
        // A resident's volunteers, profile and station (issue 12).
        .route("/web/residents/{resident}/volunteers", post(care::assign))
        .route(
            "/web/residents/{resident}/volunteers/{volunteer}/remove",
            post(care::unassign),
        )
        .route("/web/residents/{resident}/profile", post(care::profile))
        .route("/web/residents/{resident}/station", post(care::station))
        .route("/web/residents/{resident}/close", post(care::close))
        .route("/web/residents/{resident}/reopen", post(care::reopen))
        .route("/web/residents/{resident}/erase", post(care::erase))
        // Administration (issue 5): districts (admins), catalog, users, enrolment
        // codes, devices.
        .route("/web/admin", get(admin::index))
        .route(
            "/web/admin/districts",
            get(admin::districts).post(admin::create_district),
        )
        .route(
            "/web/admin/districts/{district}/coordinators",
            post(admin::create_coordinator),
        )
        .route("/web/admin/catalog", get(admin::catalog))
        .route("/web/admin/catalog/{kind}", post(admin::add_entry))
        .route("/web/admin/catalog/{kind}/{id}", post(admin::rename_entry))
        .route(
            "/web/admin/catalog/{kind}/{id}/archive",
            post(admin::archive_entry),
        )
        .route("/web/admin/stations", post(admin::add_station))
        .route("/web/admin/stations/{station}", post(admin::rename_station))
        .route(
            "/web/admin/users",
            get(admin::users).post(admin::create_user),
        )
        .route("/web/admin/users/{user}", get(admin::user_page))
        .route("/web/admin/users/{user}/code", post(admin::issue_code))
        .route("/web/admin/hubs", get(hubs::hubs))
        .route("/web/admin/hubs/code", post(hubs::issue_code))
        .route("/web/admin/hubs/{hub}/revoke", post(hubs::revoke))
        .route("/web/admin/users/{user}/edit", post(accounts::edit))
        .route("/web/admin/users/{user}/disabled", post(accounts::disabled))
        .route(
            "/web/admin/devices/{device}/revoke",
            post(admin::revoke_device),
        )
        // Refused changes (issue 12).
        .route("/web/access-log", get(access::page))
        .route("/web/quarantine", get(quarantine::list))
        .route("/web/quarantine/{number}", get(quarantine::item))
        .route("/web/quarantine/{number}/accept", post(quarantine::accept))
        .route(
            "/web/quarantine/{number}/dismiss",
            post(quarantine::dismiss),
        )
        // Unknown pages under /web/ get an HTML 404; the API keeps its own.
        .route("/web/{*rest}", get(not_found))
        .layer(header(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "same-origin"))
        // Pages hold residents' data: no copies in shared caches or the back button.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

async fn not_found(lang: Lang) -> Response {
    WebError::new(lang, Error::NotFound("no such page".into())).into_response()
}

/// A query string or form the page cannot read: a 400 page, not axum's plain text.
pub(crate) fn unreadable(lang: Lang, e: impl std::fmt::Display) -> WebError {
    WebError::new(lang, Error::bad_request("malformed", e.to_string()))
}

/// Renders a template as an HTML response.
pub(crate) fn render(page: &impl Template) -> Result<Response, Error> {
    page.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| Error::Internal(format!("rendering a page: {e}")))
}

/// An error shown as a page in the user's language. Internals are logged, never shown.
#[derive(Debug)]
pub(crate) struct WebError {
    lang: Lang,
    error: Error,
}

impl WebError {
    pub fn new(lang: Lang, error: Error) -> Self {
        WebError { lang, error }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let t = self.lang.msgs();
        let (status, message, detail) = match &self.error {
            Error::BadRequest { code, message } => (
                StatusCode::BAD_REQUEST,
                self.lang
                    .bad_request_reason(code)
                    .unwrap_or(t.error_bad_request),
                message.clone(),
            ),
            Error::Unreadable { status, message } => {
                (*status, t.error_bad_request, message.clone())
            }
            Error::Unauthenticated(_) => {
                (StatusCode::UNAUTHORIZED, t.error_forbidden, String::new())
            }
            Error::Forbidden(m) => (StatusCode::FORBIDDEN, t.error_forbidden, m.clone()),
            // Never say whether it exists outside the user's scope.
            Error::NotFound(_) => (StatusCode::NOT_FOUND, t.error_not_found, String::new()),
            Error::Conflict(_) => (StatusCode::CONFLICT, t.error_conflict, String::new()),
            Error::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                t.error_rate_limited,
                String::new(),
            ),
            Error::Store(e) => {
                tracing::error!(error = %e, "storage failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    t.error_unavailable,
                    String::new(),
                )
            }
            Error::Config(_) | Error::Internal(_) => {
                tracing::error!(error = %self.error, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    t.error_internal,
                    String::new(),
                )
            }
        };
        let page = templates::ErrorPage {
            c: templates::Chrome::new(self.lang, "/web/visits", None),
            message,
            detail,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message).into_response(),
        }
    }
}
