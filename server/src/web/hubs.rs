//! Station hubs on the coordinators' pages (issue 15): the district's hubs, when each
//! last reached the district server, a one-time code that enrols a new hub for a
//! station (shown once, with the command to run at the station), and revocation.

use super::admin::{CsrfOnly, administers, form, page, parse_id, qr_svg};
use super::i18n::{AdminMsgs, Lang};
use super::session::WebUser;
use super::templates::Chrome;
use super::text::date_time;
use super::{WebError, render};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::now_ms;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use sync_core::ids::StationId;

/// One hub as the page lists it.
#[derive(Debug)]
pub(crate) struct HubLine {
    pub id: String,
    pub name: String,
    pub station: String,
    pub enrolled: String,
    pub last_seen: String,
    /// What it still held for the district server at its last call.
    pub waiting: String,
    pub revoked: bool,
}

#[derive(Debug, Template)]
#[template(path = "admin_hubs.html")]
pub(crate) struct HubsPage {
    pub c: Chrome,
    pub a: &'static AdminMsgs,
    pub hubs: Vec<HubLine>,
    pub stations: Vec<(String, String)>,
    pub notice: Option<&'static str>,
}

/// `GET /web/admin/hubs`: the district's station hubs.
pub(crate) async fn hubs(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    query: axum::extract::Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    page(
        lang,
        hubs_page(&state, &user, lang, query.contains_key("revoked")).await,
    )
}

async fn hubs_page(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    revoked: bool,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let a = lang.admin();
    let stations = state.store.stations_in(district).await?;
    let names: HashMap<StationId, &str> =
        stations.iter().map(|(id, n)| (*id, n.as_str())).collect();
    let hubs = state
        .store
        .hubs_in(district)
        .await?
        .into_iter()
        .map(|h| HubLine {
            id: h.id.to_string(),
            station: names
                .get(&h.station)
                .copied()
                .unwrap_or_default()
                .to_owned(),
            name: h.name,
            enrolled: date_time(h.enrolled_at),
            last_seen: h
                .last_seen_at
                .map(date_time)
                .unwrap_or_else(|| a.hub_never.to_owned()),
            waiting: match h.waiting {
                None => "—".to_owned(),
                Some((n, Some(oldest))) if n > 0 => {
                    format!("{n} ({} {})", a.hub_waiting_since, date_time(oldest))
                }
                Some((n, _)) => n.to_string(),
            },
            revoked: h.revoked_at.is_some(),
        })
        .collect();
    render(&HubsPage {
        c: user.chrome(lang, "/web/admin/hubs"),
        a,
        hubs,
        stations: stations
            .iter()
            .map(|(id, n)| (id.0.to_string(), n.clone()))
            .collect(),
        notice: revoked.then_some(a.hub_revoked),
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct HubCodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    station: String,
}

#[derive(Debug, Template)]
#[template(path = "admin_hub_code.html")]
pub(crate) struct HubCodePage {
    pub c: Chrome,
    pub a: &'static AdminMsgs,
    pub station: String,
    pub code: String,
    /// An `<svg>` element drawn here (see `admin::qr_svg`).
    pub qr_svg: String,
    pub expires: String,
    /// This server's address as the coordinator reached it, for the command.
    pub upstream: String,
}

/// `POST /web/admin/hubs/code`: a one-time code that enrols a hub for a station of the
/// district, shown once.
pub(crate) async fn issue_code(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    headers: HeaderMap,
    f: Result<Form<HubCodeForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, code(&state, &user, lang, &headers, f).await)
}

async fn code(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    headers: &HeaderMap,
    f: Result<Form<HubCodeForm>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let station = StationId(parse_id(&f.station)?);
    let name = state
        .store
        .stations_in(district)
        .await?
        .into_iter()
        .find(|(id, _)| *id == station)
        .map(|(_, name)| name)
        .filter(|_| user.user.may_manage_hubs(district))
        .ok_or_else(|| Error::NotFound(format!("no station {station} in your district")))?;
    let (code, expires_at) = state
        .store
        .issue_hub_code(user.user.id, station, now_ms())
        .await?;
    tracing::info!(by = %user.user.id, %station, "hub code issued on the web");
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    let scheme = if state.web.secure_cookies {
        "https"
    } else {
        "http"
    };
    render(&HubCodePage {
        c: user.chrome(lang, "/web/admin/hubs"),
        a: lang.admin(),
        station: name,
        qr_svg: qr_svg(&code)?,
        code,
        expires: date_time(expires_at),
        upstream: format!("{scheme}://{host}"),
    })
}

/// `POST /web/admin/hubs/{hub}/revoke`: revokes a hub of the district; it is refused
/// at its next call.
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(id): Path<String>,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, revoke_hub(&state, &user, &id, f).await)
}

async fn revoke_hub(
    state: &AppState,
    user: &WebUser,
    id: &str,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(f.csrf())?;
    let id = parse_id(id)?;
    let not_found = || Error::NotFound(format!("no hub {id} in your district"));
    let hub = state.store.hub(id).await?.ok_or_else(not_found)?;
    if hub.district != district || !user.user.may_manage_hubs(district) {
        return Err(not_found());
    }
    state
        .store
        .revoke_hub(hub.id, user.user.id, now_ms())
        .await?;
    tracing::info!(by = %user.user.id, hub = %hub.id, "hub revoked on the web");
    Ok(Redirect::to("/web/admin/hubs?revoked=1").into_response())
}
