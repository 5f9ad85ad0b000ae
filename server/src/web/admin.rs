//! The administration pages (issue 5): a district's catalog, its users, enrolment codes
//! shown as QR codes, and devices.
//!
//! - Coordinators and admins administer their own district; everyone else gets 403 on
//!   every page and every POST ([`administers`]). A user, device or station outside the
//!   district, or a user the signed-in user may not manage (`User::may_manage`), is a
//!   404.
//! - Catalog entries are written into the district's catalog document through the core
//!   (`CatalogDoc::put_entries`, whose rules allow coordinators and admins of the
//!   district) with the same load, edit, append-with-heads step as a review
//!   ([`edit_document`]), so phones receive them at their next sync and `catalog_rows`,
//!   which these pages and the filters read, follows in the append's transaction.
//!   Entries are never deleted: archiving takes them out of the menus.
//! - Stations, users, codes and devices are the identity store's, through its
//!   existing functions (`create_station`, `create_user`, `issue_enrolment_code`,
//!   `revoke_device`) and the new `rename_station`; a station is also named in the
//!   catalog, where the phones learn its name.
//! - An enrolment code is shown as text and as a QR code of exactly that text, drawn
//!   here as inline SVG by the `qrcode` crate (no image, no script).
//! - Admins (the bootstrap admin, who has no district, among them) see the district
//!   list: they create districts (`create_district`) and each district's coordinators
//!   (`create_user`, `may_create`); everyone else gets 403 there ([`creates_districts`]).

use super::i18n::{AdminMsgs, Lang};
use super::review::edit_document;
use super::session::WebUser;
use super::templates::Chrome;
use super::text::date_time;
use super::{WebError, render};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::identity::User;
use crate::now_ms;
use crate::store::catalog_rows::CatalogRow;
use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use qrcode::QrCode;
use qrcode::render::svg;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use sync_core::doc::catalog::{CatalogDoc, EntryInput};
use sync_core::ids::{DeviceId, DistrictId, DocId, StationId, UserId};
use sync_core::model::{Catalog, CatalogKind, Role};
use uuid::Uuid;

/// The catalog lists edited here; stations are the identity store's.
const EDITABLE: [CatalogKind; 5] = [
    CatalogKind::Alliance,
    CatalogKind::Unit,
    CatalogKind::Project,
    CatalogKind::ServiceType,
    CatalogKind::HazardType,
];

/// The district `user` administers: coordinators' and admins' own. Everyone else,
/// and an account without a district, is refused.
pub(crate) fn administers(user: &User) -> Result<DistrictId> {
    match (user.role, user.district) {
        (Role::Coordinator | Role::Admin, Some(district)) => Ok(district),
        (Role::Coordinator | Role::Admin, None) => Err(Error::Forbidden(
            "this account belongs to no district: it administers none".into(),
        )),
        _ => Err(Error::Forbidden(
            "only coordinators and admins administer the district".into(),
        )),
    }
}

/// A page's answer, or the error as a page in the user's language.
pub(crate) fn page(lang: Lang, result: Result<Response>) -> Result<Response, WebError> {
    result.map_err(|e| WebError::new(lang, e))
}

/// A form: refused as unreadable only once the user is known to administer.
pub(crate) fn form<T>(form: Result<Form<T>, FormRejection>) -> Result<T> {
    form.map(|Form(f)| f)
        .map_err(|e| Error::bad_request("malformed", e.to_string()))
}

/// An id from a URL or form (400 `bad_id` otherwise).
pub(crate) fn parse_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text.trim())
        .map_err(|_| Error::bad_request("bad_id", format!("{text:?} is not an id")))
}

/// The last value of the field `key` in a form read as pairs (forms with repeated
/// keys, such as checkboxes, are read that way); empty when absent.
pub(crate) fn last_field<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// A name from a form: trimmed, within the catalog's limit and without control
/// characters, as [`crate::identity::checked_name`]. `required`: not empty.
fn name(text: &str, required: bool) -> Result<String> {
    if !required && text.trim().is_empty() {
        return Ok(String::new());
    }
    crate::identity::checked_name(text).map(str::to_owned)
}

/// `?saved=1` and the like: which notice the page shows after a form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    #[serde(default)]
    saved: String,
    #[serde(default)]
    created: String,
    #[serde(default)]
    revoked: String,
    #[serde(default)]
    disabled: String,
    #[serde(default)]
    enabled: String,
}

fn notice_query(query: Result<Query<NoticeQuery>, QueryRejection>) -> Result<NoticeQuery> {
    query
        .map(|Query(q)| q)
        .map_err(|e| Error::bad_request("malformed", e.to_string()))
}

// ---- The catalog ----------------------------------------------------------------

/// An entry as the catalog page lists it.
#[derive(Debug)]
pub(crate) struct EntryLine {
    pub id: String,
    pub name: String,
    pub name_en: String,
    pub parent: String,
    pub archived: bool,
}

/// One list of the catalog page.
#[derive(Debug)]
pub(crate) struct KindSection {
    pub code: &'static str,
    pub title: &'static str,
    pub has_parent: bool,
    pub entries: Vec<EntryLine>,
}

#[derive(Debug, Template)]
#[template(path = "admin_catalog.html")]
pub(crate) struct CatalogPage {
    pub c: Chrome,
    pub a: &'static AdminMsgs,
    pub notice: Option<&'static str>,
    /// The district's stations (the identity store's), with their catalog names.
    pub stations: Vec<EntryLine>,
    pub kinds: Vec<KindSection>,
    /// The alliances a unit or project may join: (id, name), archived ones left out.
    pub alliances: Vec<(String, String)>,
}

fn kind_title(a: &AdminMsgs, kind: CatalogKind) -> &'static str {
    match kind {
        CatalogKind::Station => a.stations,
        CatalogKind::Alliance => a.alliances,
        CatalogKind::Unit => a.units,
        CatalogKind::Project => a.projects,
        CatalogKind::ServiceType => a.service_types,
        CatalogKind::HazardType => a.hazard_types,
    }
}

fn has_parent(kind: CatalogKind) -> bool {
    matches!(kind, CatalogKind::Unit | CatalogKind::Project)
}

/// The name of a row in `lang`, the other language's when empty.
fn row_name(row: &CatalogRow, lang: Lang) -> String {
    let (first, second) = match lang {
        Lang::Zh => (&row.name, &row.name_en),
        Lang::En => (&row.name_en, &row.name),
    };
    if first.is_empty() { second } else { first }.clone()
}

/// `GET /web/admin`: the catalog is the first administration page of a district's
/// coordinator or admin; an admin without a district starts at the district list.
/// Anyone else is sent to the catalog, which refuses them.
pub(crate) async fn index(user: WebUser) -> Redirect {
    if administers(&user.user).is_err() && user.user.may_create_district() {
        Redirect::to("/web/admin/districts")
    } else {
        Redirect::to("/web/admin/catalog")
    }
}

/// `GET /web/admin/catalog`.
pub(crate) async fn catalog(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    page(lang, catalog_page(&state, &user, lang, query).await)
}

async fn catalog_page(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let query = notice_query(query)?;
    let a = lang.admin();
    let rows = state.store.catalog_rows(district).await?;
    let names: HashMap<Uuid, String> = rows.iter().map(|r| (r.id, row_name(r, lang))).collect();
    let mut kinds = Vec::new();
    for kind in EDITABLE {
        let mut entries: Vec<EntryLine> = rows
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| EntryLine {
                id: r.id.to_string(),
                name: r.name.clone(),
                name_en: r.name_en.clone(),
                parent: r
                    .parent
                    .map(|p| names.get(&p).cloned().unwrap_or_else(|| p.to_string()))
                    .unwrap_or_default(),
                archived: r.archived,
            })
            .collect();
        // Live entries first, each group by name.
        entries.sort_by(|x, y| (x.archived, &x.name).cmp(&(y.archived, &y.name)));
        kinds.push(KindSection {
            code: kind.code(),
            title: kind_title(a, kind),
            has_parent: has_parent(kind),
            entries,
        });
    }
    let mut alliances: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r.kind == CatalogKind::Alliance && !r.archived)
        .map(|r| (r.id.to_string(), row_name(r, lang)))
        .collect();
    alliances.sort_by(|x, y| x.1.cmp(&y.1));
    let stations = state
        .store
        .stations_in(district)
        .await?
        .into_iter()
        .map(|(id, name)| EntryLine {
            id: id.0.to_string(),
            name_en: rows
                .iter()
                .find(|r| r.kind == CatalogKind::Station && r.id == id.0)
                .map(|r| r.name_en.clone())
                .unwrap_or_default(),
            name,
            parent: String::new(),
            archived: false,
        })
        .collect();
    render(&CatalogPage {
        c: user.chrome(lang, "/web/admin/catalog"),
        a,
        notice: (!query.saved.is_empty()).then_some(a.saved),
        stations,
        kinds,
        alliances,
    })
}

/// An editable list named in a URL; anything else is no page.
fn editable(code: &str) -> Result<CatalogKind> {
    CatalogKind::from_code(code)
        .filter(|k| EDITABLE.contains(k))
        .ok_or_else(|| Error::NotFound(format!("no catalog list {code:?}")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EntryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    name_en: String,
    #[serde(default)]
    parent: String,
}

/// A unit's or project's alliance from a form: none, or a live alliance of the catalog.
fn parent_of(kind: CatalogKind, text: &str, rows: &[CatalogRow]) -> Result<Option<Uuid>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || Error::bad_request("bad_parent", format!("{text:?} is not a live alliance"));
    if !has_parent(kind) {
        return Err(bad());
    }
    let id = Uuid::parse_str(text).map_err(|_| bad())?;
    let live = rows
        .iter()
        .any(|r| r.kind == CatalogKind::Alliance && r.id == id && !r.archived);
    if live { Ok(Some(id)) } else { Err(bad()) }
}

fn saved(kind: CatalogKind) -> Response {
    Redirect::to(&format!("/web/admin/catalog?saved=1#{}", kind.code())).into_response()
}

/// `POST /web/admin/catalog/{kind}`: adds an entry.
pub(crate) async fn add_entry(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(kind): Path<String>,
    f: Result<Form<EntryForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, add(&state, &user, &kind, f).await)
}

async fn add(
    state: &AppState,
    user: &WebUser,
    kind: &str,
    f: Result<Form<EntryForm>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let kind = editable(kind)?;
    let (zh, en) = (name(&f.name, true)?, name(&f.name_en, false)?);
    let rows = state.store.catalog_rows(district).await?;
    let parent = parent_of(kind, &f.parent, &rows)?;
    // Chosen once, so a retried write adds the same entry.
    let id = Uuid::now_v7();
    edit_document::<CatalogDoc, _>(state, user, DocId::from(district), |doc, editor| {
        doc.put_entries(
            editor,
            &[EntryInput {
                kind,
                id,
                name: &zh,
                name_en: &en,
                parent,
                archived: false,
            }],
        )
    })
    .await?;
    tracing::info!(user = %user.user.id, %district, kind = kind.code(), %id, "catalog entry added");
    Ok(saved(kind))
}

/// An entry as the stored catalog has it now: (name, name_en, parent, archived).
type EntryNow = (String, String, Option<Uuid>, bool);

fn entry_in(catalog: &Catalog, kind: CatalogKind, id: Uuid) -> Option<EntryNow> {
    macro_rules! find {
        ($list:ident) => {
            catalog
                .$list
                .iter()
                .find(|e| e.id.0 == id)
                .map(|e| (e.name.clone(), e.name_en.clone(), e.parent, e.archived))
        };
    }
    match kind {
        CatalogKind::Station => find!(stations),
        CatalogKind::Alliance => find!(alliances),
        CatalogKind::Unit => find!(units),
        CatalogKind::Project => find!(projects),
        CatalogKind::ServiceType => find!(service_types),
        CatalogKind::HazardType => find!(hazard_types),
    }
}

/// Changes one existing entry of the district's catalog, reading it from the document
/// being edited (not from the rows), so a retry never undoes a concurrent edit of
/// another field.
async fn change_entry(
    state: &AppState,
    user: &WebUser,
    district: DistrictId,
    kind: CatalogKind,
    id: Uuid,
    change: impl Fn(&mut EntryNow),
) -> Result<()> {
    edit_document::<CatalogDoc, _>(state, user, DocId::from(district), |doc, editor| {
        let mut entry = entry_in(&doc.hydrate()?, kind, id)
            .ok_or_else(|| sync_core::Error::NotFound(format!("no {} entry {id}", kind.code())))?;
        change(&mut entry);
        let (name, name_en, parent, archived) = &entry;
        doc.put_entries(
            editor,
            &[EntryInput {
                kind,
                id,
                name,
                name_en,
                parent: *parent,
                archived: *archived,
            }],
        )
    })
    .await
    .map(drop)
}

/// The entry named by a URL: a well-formed id (else 400) of this district's list
/// (else 404).
async fn existing(
    state: &AppState,
    district: DistrictId,
    kind: CatalogKind,
    id: &str,
) -> Result<Uuid> {
    let id = parse_id(id)?;
    let rows = state.store.catalog_rows(district).await?;
    if rows.iter().any(|r| r.kind == kind && r.id == id) {
        Ok(id)
    } else {
        Err(Error::NotFound(format!("no {} entry {id}", kind.code())))
    }
}

/// `POST /web/admin/catalog/{kind}/{id}`: renames an entry (both languages).
pub(crate) async fn rename_entry(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path((kind, id)): Path<(String, String)>,
    f: Result<Form<EntryForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, rename(&state, &user, &kind, &id, f).await)
}

async fn rename(
    state: &AppState,
    user: &WebUser,
    kind: &str,
    id: &str,
    f: Result<Form<EntryForm>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let kind = editable(kind)?;
    let id = existing(state, district, kind, id).await?;
    let (zh, en) = (name(&f.name, true)?, name(&f.name_en, false)?);
    change_entry(state, user, district, kind, id, |e| {
        e.0.clone_from(&zh);
        e.1.clone_from(&en);
    })
    .await?;
    tracing::info!(user = %user.user.id, %district, kind = kind.code(), %id, "catalog entry renamed");
    Ok(saved(kind))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ArchiveForm {
    #[serde(default)]
    csrf: String,
    /// `1` archives, `0` restores.
    #[serde(default)]
    archived: String,
}

/// `POST /web/admin/catalog/{kind}/{id}/archive`: archives (or restores) an entry.
pub(crate) async fn archive_entry(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path((kind, id)): Path<(String, String)>,
    f: Result<Form<ArchiveForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, archive(&state, &user, &kind, &id, f).await)
}

async fn archive(
    state: &AppState,
    user: &WebUser,
    kind: &str,
    id: &str,
    f: Result<Form<ArchiveForm>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let kind = editable(kind)?;
    let id = existing(state, district, kind, id).await?;
    let archived = match f.archived.trim() {
        "1" => true,
        "0" => false,
        other => {
            return Err(Error::bad_request(
                "bad_value",
                format!("archived is 1 or 0, not {other:?}"),
            ));
        }
    };
    change_entry(state, user, district, kind, id, |e| e.3 = archived).await?;
    tracing::info!(user = %user.user.id, %district, kind = kind.code(), %id, archived, "catalog entry archived");
    Ok(saved(kind))
}

/// `POST /web/admin/stations`: creates a station (identity store) and names it in the
/// catalog, which is where phones learn stations' names.
pub(crate) async fn add_station(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    f: Result<Form<EntryForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, station(&state, &user, f).await)
}

async fn station(
    state: &AppState,
    user: &WebUser,
    f: Result<Form<EntryForm>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let (zh, en) = (name(&f.name, true)?, name(&f.name_en, false)?);
    let station = state
        .store
        .create_station(district, &zh, now_ms())
        .await
        .map_err(|e| match e {
            Error::Conflict(m) => Error::bad_request("station_taken", m),
            other => other,
        })?;
    name_station(state, user, district, station, &zh, &en).await?;
    tracing::info!(user = %user.user.id, %district, %station, "station created on the web");
    Ok(Redirect::to("/web/admin/catalog?saved=1#stations").into_response())
}

/// Names a station in the district's catalog (adding its entry if the station was
/// made elsewhere, by the API or an operator command), keeping whether it is archived.
async fn name_station(
    state: &AppState,
    user: &WebUser,
    district: DistrictId,
    station: StationId,
    zh: &str,
    en: &str,
) -> Result<()> {
    edit_document::<CatalogDoc, _>(state, user, DocId::from(district), |doc, editor| {
        let archived =
            entry_in(&doc.hydrate()?, CatalogKind::Station, station.0).is_some_and(|e| e.3);
        doc.put_entries(
            editor,
            &[EntryInput {
                kind: CatalogKind::Station,
                id: station.0,
                name: zh,
                name_en: en,
                parent: None,
                archived,
            }],
        )
    })
    .await
    .map(drop)
}

/// `POST /web/admin/stations/{station}`: renames a station, in the identity store and
/// in the catalog.
pub(crate) async fn rename_station(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(id): Path<String>,
    f: Result<Form<EntryForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, station_rename(&state, &user, &id, f).await)
}

async fn station_rename(
    state: &AppState,
    user: &WebUser,
    id: &str,
    f: Result<Form<EntryForm>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let station = StationId(parse_id(id)?);
    let (zh, en) = (name(&f.name, true)?, name(&f.name_en, false)?);
    state
        .store
        .rename_station(district, station, &zh)
        .await
        .map_err(|e| match e {
            Error::Conflict(m) => Error::bad_request("station_taken", m),
            other => other,
        })?;
    name_station(state, user, district, station, &zh, &en).await?;
    tracing::info!(user = %user.user.id, %district, %station, "station renamed on the web");
    Ok(Redirect::to("/web/admin/catalog?saved=1#stations").into_response())
}

// ---- Users, codes and devices ---------------------------------------------------

/// A user as the users page lists it.
#[derive(Debug)]
pub(crate) struct UserLine {
    /// The user's page, when the signed-in user manages them.
    pub href: Option<String>,
    pub name: String,
    pub login: String,
    pub role: &'static str,
    pub stations: String,
    pub disabled: bool,
}

#[derive(Debug, Template)]
#[template(path = "admin_users.html")]
pub(crate) struct UsersPage {
    pub c: Chrome,
    pub a: &'static AdminMsgs,
    pub users: Vec<UserLine>,
    /// The roles the signed-in user may create: (code, name).
    pub roles: Vec<(&'static str, &'static str)>,
    /// (id, name).
    pub stations: Vec<(String, String)>,
}

/// `GET /web/admin/users`.
pub(crate) async fn users(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
) -> Result<Response, WebError> {
    page(lang, users_page(&state, &user, lang).await)
}

async fn users_page(state: &AppState, user: &WebUser, lang: Lang) -> Result<Response> {
    let district = administers(&user.user)?;
    let a = lang.admin();
    let stations = state.store.stations_in(district).await?;
    let station_names: HashMap<StationId, &str> =
        stations.iter().map(|(id, n)| (*id, n.as_str())).collect();
    let mut covered: HashMap<UserId, Vec<&str>> = HashMap::new();
    for (u, s) in state.store.staff_stations_in(district).await? {
        if let Some(n) = station_names.get(&s) {
            covered.entry(u).or_default().push(n);
        }
    }
    let users = state
        .store
        .users_in(district)
        .await?
        .into_iter()
        .map(|u| UserLine {
            href: user
                .user
                .may_manage(&u)
                .then(|| format!("/web/admin/users/{}", u.id.0)),
            stations: covered
                .get(&u.id)
                .map(|names| {
                    let mut names = names.clone();
                    names.sort_unstable();
                    names.join("、")
                })
                .unwrap_or_default(),
            name: u.display_name,
            login: u.login,
            role: a.role_name(u.role),
            disabled: u.disabled,
        })
        .collect();
    let roles = Role::ALL
        .iter()
        .filter(|r| user.user.may_create(**r, Some(district)))
        .map(|r| (r.code(), a.role_name(*r)))
        .collect();
    render(&UsersPage {
        c: user.chrome(lang, "/web/admin/users"),
        a,
        users,
        roles,
        stations: stations
            .into_iter()
            .map(|(id, n)| (id.0.to_string(), n))
            .collect(),
    })
}

/// `POST /web/admin/users`: creates a user in the signed-in user's district. Read as
/// pairs, since the stations box may be ticked several times.
pub(crate) async fn create_user(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    f: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, create(&state, &user, f).await)
}

async fn create(
    state: &AppState,
    user: &WebUser,
    f: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let pairs = form(f)?;
    let one = |key: &str| last_field(&pairs, key);
    user.check_csrf(one("csrf"))?;
    let role = Role::from_code(one("role").trim()).ok_or_else(|| {
        Error::bad_request(
            "unknown_role",
            "role is volunteer, station_staff, coordinator or admin",
        )
    })?;
    if !user.user.may_create(role, Some(district)) {
        return Err(Error::Forbidden(format!(
            "a {} cannot create a {role}",
            user.user.role
        )));
    }
    let stations = pairs
        .iter()
        .filter(|(k, v)| k == "stations" && !v.trim().is_empty())
        .map(|(_, v)| parse_id(v).map(StationId))
        .collect::<Result<Vec<_>>>()?;
    // A station of another district is not found, like its users and devices.
    let ours = state.store.stations_in(district).await?;
    if let Some(s) = stations.iter().find(|s| !ours.iter().any(|(o, _)| o == *s)) {
        return Err(Error::NotFound(format!("no station {s} in your district")));
    }
    let password = Some(one("password")).filter(|p| !p.is_empty());
    let created = new_user(
        state,
        user,
        NewUser {
            district,
            role,
            login: one("login"),
            display_name: one("display_name"),
            stations: &stations,
            password,
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/web/admin/users/{}?created=1", created.0)).into_response())
}

/// A user to create from a form, whose district and stations are already known to be
/// ones the signed-in user may name.
struct NewUser<'a> {
    district: DistrictId,
    role: Role,
    login: &'a str,
    display_name: &'a str,
    stations: &'a [StationId],
    password: Option<&'a str>,
}

/// Creates a user from a form, for the users page and the district list alike: the
/// role must be one the signed-in user may create there (`may_create`, else 403), the
/// name as a catalog name; the identity store checks the login, the stations and the
/// password, and a taken login is a 400.
async fn new_user(state: &AppState, user: &WebUser, new: NewUser<'_>) -> Result<UserId> {
    let NewUser { district, role, .. } = new;
    if !user.user.may_create(role, Some(district)) {
        return Err(Error::Forbidden(format!(
            "a {} cannot create a {role} there",
            user.user.role
        )));
    }
    let display_name = name(new.display_name, true)?;
    let created = state
        .store
        .create_user(
            new.login,
            &display_name,
            role,
            Some(district),
            new.stations,
            new.password,
            now_ms(),
        )
        .await
        .map_err(|e| match e {
            Error::Conflict(m) => Error::bad_request("login_taken", m),
            other => other,
        })?;
    tracing::info!(by = %user.user.id, user = %created, %role, %district, "user created on the web");
    Ok(created)
}

/// The user named by a URL: a well-formed id (else 400) of a user of `district` whom
/// `me` manages (else 404: whether it exists elsewhere is not said).
async fn managed(state: &AppState, me: &User, district: DistrictId, id: &str) -> Result<User> {
    let id = UserId(parse_id(id)?);
    state
        .store
        .user(id)
        .await?
        .filter(|t| t.district == Some(district) && me.may_manage(t))
        .ok_or_else(|| Error::NotFound(format!("no user {id} you manage")))
}

/// A device as a user's page lists it.
#[derive(Debug)]
pub(crate) struct DeviceLine {
    pub id: String,
    pub name: String,
    pub enrolled: String,
    pub last_seen: Option<String>,
    pub revoked: Option<String>,
    /// How far its clock was off at its last sync, and whether that is flagged.
    pub clock: Option<(String, bool)>,
    /// Its refused uploads awaiting a decision.
    pub awaiting: i64,
}

#[derive(Debug, Template)]
#[template(path = "admin_user.html")]
pub(crate) struct UserPage {
    pub c: Chrome,
    pub a: &'static AdminMsgs,
    pub notice: Option<&'static str>,
    pub id: String,
    pub name: String,
    pub login: String,
    pub role: &'static str,
    pub stations: String,
    pub disabled: bool,
    pub devices: Vec<DeviceLine>,
    pub acc: &'static super::i18n::AccountMsgs,
    /// The district's stations with whether this user covers each (staff only).
    pub station_choices: Vec<(String, String, bool)>,
    /// The user is the one signed in (who cannot disable themselves here).
    pub is_self: bool,
    /// The district's stations with a hub working: id, name. A code for one of them
    /// also enrols a phone at that hub while its uplink is down.
    pub hub_stations: Vec<(String, String)>,
}

/// `GET /web/admin/users/{user}`: the user and their devices.
pub(crate) async fn user_page(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(id): Path<String>,
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    page(lang, one_user(&state, &user, lang, &id, query).await)
}

async fn one_user(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    id: &str,
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let query = notice_query(query)?;
    let target = managed(state, &user.user, district, id).await?;
    let a = lang.admin();
    let stations = state.store.stations_in(district).await?;
    let mut covered: Vec<&str> = Vec::new();
    let mut covered_ids = Vec::new();
    for (u, s) in state.store.staff_stations_in(district).await? {
        if u == target.id
            && let Some((_, n)) = stations.iter().find(|(id, _)| *id == s)
        {
            covered.push(n);
            covered_ids.push(s);
        }
    }
    covered.sort_unstable();
    let station_choices = if target.role == Role::StationStaff {
        stations
            .iter()
            .map(|(id, n)| (id.0.to_string(), n.clone(), covered_ids.contains(id)))
            .collect()
    } else {
        Vec::new()
    };
    let mut hub_stations: Vec<(String, String)> = Vec::new();
    for hub in state.store.hubs_in(district).await? {
        let id = hub.station.0.to_string();
        if hub.revoked_at.is_none() && !hub_stations.iter().any(|(s, _)| *s == id) {
            let name = stations
                .iter()
                .find(|(s, _)| *s == hub.station)
                .map_or_else(|| id.clone(), |(_, n)| n.clone());
            hub_stations.push((id, name));
        }
    }
    let devices = state
        .store
        .devices_of(target.id)
        .await?
        .into_iter()
        .map(|d| DeviceLine {
            id: d.id.0.to_string(),
            name: d.name,
            enrolled: date_time(d.enrolled_at),
            last_seen: d.last_seen_at.map(date_time),
            revoked: d.revoked_at.map(date_time),
            clock: d.clock_skew_ms.map(|ms| a.clock_skew(ms)),
            awaiting: d.awaiting,
        })
        .collect();
    let acc = lang.accounts();
    let notice = if !query.created.is_empty() {
        Some(a.user_created)
    } else if !query.revoked.is_empty() {
        Some(a.device_revoked)
    } else if !query.saved.is_empty() {
        Some(acc.notice_saved)
    } else if !query.disabled.is_empty() {
        Some(acc.notice_disabled)
    } else if !query.enabled.is_empty() {
        Some(acc.notice_enabled)
    } else {
        None
    };
    let here = format!("/web/admin/users/{}", target.id.0);
    render(&UserPage {
        c: user.chrome(lang, &here),
        a,
        notice,
        id: target.id.0.to_string(),
        name: target.display_name,
        login: target.login,
        role: a.role_name(target.role),
        stations: covered.join("、"),
        disabled: target.disabled,
        devices,
        acc,
        station_choices,
        is_self: target.id == user.user.id,
        hub_stations,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

impl CsrfOnly {
    /// The form's CSRF token.
    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Template)]
#[template(path = "admin_code.html")]
pub(crate) struct CodePage {
    pub c: Chrome,
    pub a: &'static AdminMsgs,
    pub user_href: String,
    pub name: String,
    pub code: String,
    /// The QR code, an `<svg>` element made here (safe to insert unescaped: it holds
    /// only the crate's numbers and colours, never the user's text).
    pub qr_svg: String,
    pub expires: String,
    /// The station whose hub also takes the code, if it was issued for one.
    pub at_station: Option<String>,
}

/// `POST /web/admin/users/{user}/code`: issues a one-time enrolment code and shows it,
/// once, as text and as a QR code.
pub(crate) async fn issue_code(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(id): Path<String>,
    f: Result<Form<CodeForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, code(&state, &user, lang, &id, f).await)
}

/// The enrolment code form: for the district server only, or also for a station's hub.
#[derive(Debug, Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    csrf: String,
    /// A station of the district whose hub also takes the code (empty: none).
    #[serde(default)]
    station: String,
}

async fn code(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    id: &str,
    f: Result<Form<CodeForm>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let target = managed(state, &user.user, district, id).await?;
    let station = match f.station.trim() {
        "" => None,
        station => {
            let station = station
                .parse()
                .ok()
                .map(StationId)
                .ok_or_else(|| Error::bad_request("bad_station", "not a station id"))?;
            let name = state
                .store
                .stations_in(district)
                .await?
                .into_iter()
                .find(|(s, _)| *s == station)
                .map(|(_, n)| n)
                .ok_or_else(|| Error::NotFound(format!("no station {} here", station.0)))?;
            Some((station, name))
        }
    };
    let (code, expires_at) = match &station {
        None => {
            state
                .store
                .issue_enrolment_code(user.user.id, target.id, now_ms())
                .await?
        }
        Some((station, _)) => {
            state
                .store
                .issue_hub_enrolment_code(user.user.id, target.id, *station, now_ms())
                .await?
        }
    };
    tracing::info!(by = %user.user.id, user = %target.id, hub_station = ?station.as_ref().map(|s| s.0), "enrolment code issued on the web");
    let user_href = format!("/web/admin/users/{}", target.id.0);
    render(&CodePage {
        c: user.chrome(lang, &user_href),
        a: lang.admin(),
        user_href,
        name: target.display_name,
        qr_svg: qr_svg(&code)?,
        code,
        expires: date_time(expires_at),
        at_station: station.map(|(_, name)| name),
    })
}

/// The QR code of exactly `code`, as an inline `<svg>` element.
pub(crate) fn qr_svg(code: &str) -> Result<String> {
    let qr = QrCode::new(code.as_bytes())
        .map_err(|e| Error::Internal(format!("drawing the QR code: {e}")))?;
    Ok(svg_of(&qr))
}

fn svg_of(qr: &QrCode) -> String {
    let image = qr
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    // The XML declaration belongs to a file, not to an element inside a page.
    match image.find("<svg") {
        Some(start) => image[start..].to_owned(),
        None => image,
    }
}

/// `POST /web/admin/devices/{device}/revoke`: revokes a device of a user the signed-in
/// user manages in their district.
pub(crate) async fn revoke_device(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(id): Path<String>,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, revoke(&state, &user, &id, f).await)
}

async fn revoke(
    state: &AppState,
    user: &WebUser,
    id: &str,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let id = DeviceId(parse_id(id)?);
    let not_found = || Error::NotFound(format!("no device {id} you manage"));
    let device = state.store.device(id).await?.ok_or_else(not_found)?;
    let owner = managed(state, &user.user, district, &device.user.0.to_string())
        .await
        .map_err(|_| not_found())?;
    state
        .store
        .revoke_device(device.id, Some(user.user.id), now_ms())
        .await?;
    tracing::info!(by = %user.user.id, device = %device.id, "device revoked on the web");
    Ok(Redirect::to(&format!("/web/admin/users/{}?revoked=1", owner.id.0)).into_response())
}

// ---- Districts (admins) ----------------------------------------------------------

/// Refuses anyone who may not create districts: only admins may (`may_create_district`,
/// the API's rule too), the bootstrap admin among them.
fn creates_districts(user: &User) -> Result<()> {
    if user.may_create_district() {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only admins see the district list and create districts".into(),
        ))
    }
}

/// A district as the district list shows it.
#[derive(Debug)]
pub(crate) struct DistrictLine {
    pub id: String,
    pub name: String,
    pub stations: i64,
    pub users: i64,
}

#[derive(Debug, Template)]
#[template(path = "admin_districts.html")]
pub(crate) struct DistrictsPage {
    pub c: Chrome,
    pub a: &'static AdminMsgs,
    pub notice: Option<&'static str>,
    pub districts: Vec<DistrictLine>,
    pub acc: &'static super::i18n::AccountMsgs,
    /// Accounts of no district (the first start's admin): id, login, disabled, self.
    pub districtless: Vec<(String, String, bool, bool)>,
}

/// `GET /web/admin/districts`: every district, a form to create one and, per district,
/// a form to create a coordinator.
pub(crate) async fn districts(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    page(lang, districts_page(&state, &user, lang, query).await)
}

async fn districts_page(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Response> {
    creates_districts(&user.user)?;
    let query = notice_query(query)?;
    let a = lang.admin();
    let notice = if !query.created.is_empty() {
        Some(a.district_created)
    } else if !query.saved.is_empty() {
        Some(a.coordinator_created)
    } else {
        None
    };
    let districts = state
        .store
        .districts()
        .await?
        .into_iter()
        .map(|d| DistrictLine {
            id: d.id.0.to_string(),
            name: d.name,
            stations: d.stations,
            users: d.users,
        })
        .collect();
    let districtless = state
        .store
        .districtless_admins()
        .await?
        .into_iter()
        .map(|u| {
            (
                u.id.0.to_string(),
                u.login,
                u.disabled,
                u.id == user.user.id,
            )
        })
        .collect();
    render(&DistrictsPage {
        c: user.chrome(lang, "/web/admin/districts"),
        a,
        notice,
        districts,
        acc: lang.accounts(),
        districtless,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct DistrictForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /web/admin/districts`: creates a district.
pub(crate) async fn create_district(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    f: Result<Form<DistrictForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, new_district(&state, &user, f).await)
}

async fn new_district(
    state: &AppState,
    user: &WebUser,
    f: Result<Form<DistrictForm>, FormRejection>,
) -> Result<Response> {
    creates_districts(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    // The identity store checks the name (empty, too long), as for the API.
    let district = state
        .store
        .create_district(&f.name, now_ms())
        .await
        .map_err(|e| match e {
            Error::Conflict(m) => Error::bad_request("district_taken", m),
            other => other,
        })?;
    tracing::info!(by = %user.user.id, %district, "district created on the web");
    Ok(Redirect::to(&format!(
        "/web/admin/districts?created=1#district-{}",
        district.0
    ))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct CoordinatorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

/// `POST /web/admin/districts/{district}/coordinators`: creates a coordinator of the
/// district, who signs in with the password given here.
pub(crate) async fn create_coordinator(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(district): Path<String>,
    f: Result<Form<CoordinatorForm>, FormRejection>,
) -> Result<Response, WebError> {
    page(lang, coordinator(&state, &user, &district, f).await)
}

async fn coordinator(
    state: &AppState,
    user: &WebUser,
    district: &str,
    f: Result<Form<CoordinatorForm>, FormRejection>,
) -> Result<Response> {
    creates_districts(&user.user)?;
    let f = form(f)?;
    user.check_csrf(&f.csrf)?;
    let district = DistrictId(parse_id(district)?);
    if !state
        .store
        .districts()
        .await?
        .iter()
        .any(|d| d.id == district)
    {
        return Err(Error::NotFound(format!("no district {district}")));
    }
    // A coordinator works on the web: without a password they could not sign in.
    if f.password.is_empty() {
        return Err(Error::bad_request(
            "weak_password",
            "a coordinator needs a password to sign in",
        ));
    }
    new_user(
        state,
        user,
        NewUser {
            district,
            role: Role::Coordinator,
            login: &f.login,
            display_name: &f.display_name,
            stations: &[],
            password: Some(&f.password),
        },
    )
    .await?;
    Ok(Redirect::to(&format!(
        "/web/admin/districts?saved=1#district-{}",
        district.0
    ))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::doc::schema::limits;

    fn user(role: Role, district: Option<u128>) -> User {
        User {
            id: UserId(Uuid::from_u128(1)),
            login: "u".into(),
            display_name: String::new(),
            role,
            district: district.map(|d| DistrictId(Uuid::from_u128(d))),
            disabled: false,
        }
    }

    #[test]
    fn only_coordinators_and_admins_of_a_district_administer_it() {
        let d = DistrictId(Uuid::from_u128(7));
        assert_eq!(administers(&user(Role::Coordinator, Some(7))).ok(), Some(d));
        assert_eq!(administers(&user(Role::Admin, Some(7))).ok(), Some(d));
        for refused in [
            user(Role::StationStaff, Some(7)),
            user(Role::Volunteer, Some(7)),
            user(Role::Admin, None),
        ] {
            assert!(matches!(administers(&refused), Err(Error::Forbidden(_))));
        }
    }

    #[test]
    fn only_admins_reach_the_district_list() {
        assert!(creates_districts(&user(Role::Admin, None)).is_ok());
        assert!(creates_districts(&user(Role::Admin, Some(7))).is_ok());
        for refused in [
            user(Role::Coordinator, Some(7)),
            user(Role::Coordinator, None),
            user(Role::StationStaff, Some(7)),
            user(Role::Volunteer, Some(7)),
        ] {
            assert!(matches!(
                creates_districts(&refused),
                Err(Error::Forbidden(_))
            ));
        }
    }

    #[test]
    fn the_qr_code_holds_exactly_the_code() {
        let code = "7KQ2M9XW4HTPZ0BCN5RD";
        let svg = qr_svg(code).unwrap();
        // The crate was given exactly the code's bytes: the same drawing as a QR code
        // made here from them, and not that of anything near it.
        assert_eq!(svg, svg_of(&QrCode::new(code.as_bytes()).unwrap()));
        for near in [
            format!("{code} "),
            code.to_lowercase(),
            format!("linli:{code}"),
            code[1..].to_owned(),
        ] {
            assert_ne!(
                svg,
                svg_of(&QrCode::new(near.as_bytes()).unwrap()),
                "{near}"
            );
        }
        // An element to put in a page: no XML declaration, no script, no text.
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<?xml") && !svg.contains("<script") && !svg.contains(code));
    }

    #[test]
    fn names_are_trimmed_required_and_bounded() {
        assert_eq!(name("  联盟 ", true).unwrap(), "联盟");
        assert_eq!(name(" ", false).unwrap(), "");
        assert!(matches!(
            name(" ", true),
            Err(Error::BadRequest {
                code: "empty_name",
                ..
            })
        ));
        assert!(matches!(
            name("联\u{0}盟", false),
            Err(Error::BadRequest {
                code: "control_character",
                ..
            })
        ));
        let long = "长".repeat(limits::SHORT_TEXT + 1);
        assert!(matches!(
            name(&long, true),
            Err(Error::BadRequest {
                code: "name_too_long",
                ..
            })
        ));
        assert!(name(&"长".repeat(limits::SHORT_TEXT), true).is_ok());
    }
}
