//! A resident's care on the web (issue 12): the volunteers assigned to them, the
//! profile fields staff keep up to date (phone, address, visit frequency, risk) and the
//! station whose community they live in. The forms sit on the resident's page.
//!
//! Assignments are relational: the identity store's `assign`/`unassign`, the same
//! functions (and checks) as the API, and the volunteer's phone receives or purges the
//! case file at its next sync. Profile and station edits go through the core's
//! `CaseFile::update_profile` and `set_station` under the user's web actor
//! (`review::edit_case_file`), so the rules that judge a phone's edit judge these and
//! the phones receive them by sync. Each POST checks the CSRF token, then that the
//! resident is in the user's scope (else 404).

use super::i18n::{CareMsgs, Lang};
use super::residents::visible;
use super::review::edit_case_file;
use super::session::WebUser;
use super::templates::Choice;
use super::{WebError, unreadable};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::now_ms;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;
use sync_core::ids::{ResidentId, StationId, UserId};
use sync_core::model::{Closure, ClosureReason, Profile, RiskLevel, Role};

/// The banner of a closed case file, closed by `by` (a name).
pub(crate) fn closed_banner(lang: Lang, c: &Closure, by: &str) -> String {
    let mut banner = lang
        .care()
        .closed_banner
        .replace("{reason}", lang.closure_reason(c.reason))
        .replace("{by}", by)
        .replace("{date}", &super::text::date(c.at));
    if !c.note.is_empty() {
        banner.push(' ');
        banner.push_str(&c.note);
    }
    banner
}
use uuid::Uuid;

/// The forms the resident page shows to users who may edit.
#[derive(Debug)]
pub(crate) struct CareForms {
    pub r: &'static CareMsgs,
    /// `/web/residents/{id}`: the forms post below it.
    pub base: String,
    pub phone: String,
    pub address: String,
    pub visit_every_days: String,
    pub risks: Vec<Choice>,
    /// Assigned volunteers: (id, name).
    pub volunteers: Vec<(String, String)>,
    /// Volunteers of the district not assigned yet.
    pub volunteer_choices: Vec<Choice>,
    /// The district's stations (coordinators and admins move residents).
    pub stations: Vec<Choice>,
    /// Closing: the reasons to choose from (empty when the file is closed).
    pub close_reasons: Vec<Choice>,
    /// Set while the file is closed (its banner): the page offers to reopen it.
    pub closed: Option<String>,
    /// A closed file, and a user who manages the district: the page offers to erase
    /// the resident's personal data.
    pub may_erase: bool,
}

impl CareForms {
    /// The forms for a resident with `profile` at `station`, for `user`.
    pub(crate) async fn load(
        state: &AppState,
        lang: Lang,
        user: &WebUser,
        resident: ResidentId,
        profile: &Profile,
        station: StationId,
        closed: Option<String>,
    ) -> Result<CareForms> {
        let district = user.user.district.ok_or_else(|| {
            Error::Forbidden("this account belongs to no district: it edits nothing".into())
        })?;
        let assigned = state.store.assigned_volunteers(resident).await?;
        let mut volunteers = Vec::new();
        let mut volunteer_choices = Vec::new();
        for u in state.store.users_in(district).await? {
            if u.role != Role::Volunteer || u.disabled {
                continue;
            }
            if assigned.contains(&u.id) {
                volunteers.push((u.id.0.to_string(), u.display_name));
            } else {
                volunteer_choices.push(Choice {
                    value: u.id.0.to_string(),
                    label: u.display_name,
                    selected: false,
                });
            }
        }
        let r = lang.care();
        let t = lang.msgs();
        let current = profile.risk_level.map(|l| l.code()).unwrap_or_default();
        let risks = std::iter::once(("", r.not_set))
            .chain(["low", "medium", "high"].map(|c| (c, t.risk(c))))
            .map(|(code, label)| Choice {
                value: code.to_owned(),
                label: label.to_owned(),
                selected: code == current,
            })
            .collect();
        let stations = if matches!(user.user.role, Role::Coordinator | Role::Admin) {
            state
                .store
                .stations_in(district)
                .await?
                .into_iter()
                .map(|(id, name)| Choice {
                    selected: id == station,
                    value: id.0.to_string(),
                    label: name,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(CareForms {
            r,
            base: format!("/web/residents/{}", resident.0),
            phone: profile.phone.clone(),
            address: profile.address.clone(),
            visit_every_days: profile
                .visit_every_days
                .map(|d| d.to_string())
                .unwrap_or_default(),
            risks,
            volunteers,
            volunteer_choices,
            stations,
            close_reasons: if closed.is_some() {
                Vec::new()
            } else {
                ClosureReason::ALL
                    .iter()
                    .map(|reason| Choice {
                        value: reason.code().to_owned(),
                        label: lang.closure_reason(*reason).to_owned(),
                        selected: false,
                    })
                    .collect()
            },
            may_erase: closed.is_some() && super::admin::administers(&user.user).is_ok(),
            closed,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AssignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    volunteer: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    visit_every_days: String,
    #[serde(default)]
    risk_level: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CloseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EraseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    station: String,
}

fn back(resident: ResidentId, notice: &str) -> Response {
    Redirect::to(&format!("/web/residents/{}?care={notice}#care", resident.0)).into_response()
}

fn user_id(text: &str) -> Result<UserId> {
    super::admin::parse_id(text).map(UserId)
}

/// The user's principal: the identity store's assignment checks take one.
async fn principal(state: &AppState, user: &WebUser) -> Result<sync_core::model::Principal> {
    state.store.principal(&user.user).await?.ok_or_else(|| {
        Error::Forbidden("this account belongs to no district: it assigns nobody".into())
    })
}

/// `POST /web/residents/{resident}/volunteers`: assigns a volunteer.
pub(crate) async fn assign(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    form: Result<Form<AssignForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let resident = visible(&state, &user.user, &resident).await?;
        let volunteer = user_id(&form.volunteer)?;
        let by = principal(&state, &user).await?;
        state
            .store
            .assign(&by, volunteer, resident, now_ms())
            .await?;
        tracing::info!(by = %user.user.id, %volunteer, %resident, "volunteer assigned on the web");
        Ok(back(resident, "assigned"))
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// `POST /web/residents/{resident}/volunteers/{volunteer}/remove`: unassigns one.
pub(crate) async fn unassign(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path((resident, volunteer)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let resident = visible(&state, &user.user, &resident).await?;
        let volunteer = user_id(&volunteer)?;
        let by = principal(&state, &user).await?;
        state.store.unassign(&by, volunteer, resident).await?;
        tracing::info!(by = %user.user.id, %volunteer, %resident, "volunteer unassigned on the web");
        Ok(back(resident, "unassigned"))
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// A number of days from the form (empty: not set).
fn days(text: &str) -> Result<Option<i64>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        Error::bad_request(
            "bad_profile",
            format!("visit_every_days: {text:?} is not a number of days"),
        )
    })
}

/// A risk level from the form (empty: not set).
fn risk(code: &str) -> Result<Option<RiskLevel>> {
    match code.trim() {
        "" => Ok(None),
        c => RiskLevel::from_code(c).map(Some).ok_or_else(|| {
            Error::bad_request("bad_profile", format!("risk_level: unknown level {c:?}"))
        }),
    }
}

/// `POST /web/residents/{resident}/profile`: saves the changed profile fields.
pub(crate) async fn profile(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    form: Result<Form<ProfileForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let resident = visible(&state, &user.user, &resident).await?;
        let visit_every_days = days(&form.visit_every_days)?;
        let risk_level = risk(&form.risk_level)?;
        let changed = edit_case_file(&state, &user, resident, |file, editor| {
            let wanted = Profile {
                phone: form.phone.trim().to_owned(),
                address: form.address.trim().to_owned(),
                visit_every_days,
                risk_level,
                ..file.profile()?
            };
            file.edit_profile(editor, &wanted)
                .map(|fields| fields.len())
        })
        .await?;
        tracing::info!(by = %user.user.id, %resident, changed, "profile edited on the web");
        Ok(back(
            resident,
            if changed > 0 { "saved" } else { "unchanged" },
        ))
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// `POST /web/residents/{resident}/station`: moves the resident to another station of
/// the district.
pub(crate) async fn station(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    form: Result<Form<StationForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let resident = visible(&state, &user.user, &resident).await?;
        let station = StationId(Uuid::parse_str(form.station.trim()).map_err(|_| {
            Error::bad_request(
                "unknown_station",
                format!("{:?} is not a station", form.station),
            )
        })?);
        // The station must be one of the user's district's: the rules know only ids.
        if state.store.station_district(station).await? != user.user.district {
            return Err(Error::bad_request(
                "unknown_station",
                format!("station {station} is not in this district"),
            ));
        }
        edit_case_file(&state, &user, resident, |file, editor| {
            file.set_station(editor, station)
        })
        .await?;
        tracing::info!(by = %user.user.id, %resident, %station, "resident moved on the web");
        Ok(back(resident, "moved"))
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// `POST /web/residents/{resident}/close`: closes the case file with a reason (staff of
/// its station, coordinators and admins; the core's rules decide). The phones purge
/// it at their next sync, after uploading what they have not synced.
pub(crate) async fn close(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    form: Result<Form<CloseForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let resident = visible(&state, &user.user, &resident).await?;
        let reason = ClosureReason::from_code(form.reason.trim()).ok_or_else(|| {
            Error::bad_request(
                "bad_reason",
                format!("{:?} is not a reason to close a case file", form.reason),
            )
        })?;
        let note = form.note.trim().to_owned();
        edit_case_file(&state, &user, resident, |file, editor| {
            file.close(editor, reason, &note)
        })
        .await?;
        tracing::info!(by = %user.user.id, %resident, reason = reason.code(), "case file closed on the web");
        Ok(back(resident, "closed"))
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// `POST /web/residents/{resident}/reopen`: reopens a closed case file; the phones in
/// its scope receive it again at their next sync.
pub(crate) async fn reopen(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let resident = visible(&state, &user.user, &resident).await?;
        edit_case_file(&state, &user, resident, |file, editor| file.reopen(editor)).await?;
        tracing::info!(by = %user.user.id, %resident, "case file reopened on the web");
        Ok(back(resident, "reopened"))
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// `POST /web/residents/{resident}/erase`: erases the resident's personal data from the
/// server (`SqlStore::erase_resident`), at their request. Only the district's
/// coordinators and admins, only a closed case file, and only when the form repeats the
/// resident's name: it cannot be undone.
pub(crate) async fn erase(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    form: Result<Form<EraseForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let district = super::admin::administers(&user.user)?;
        let resident = visible(&state, &user.user, &resident).await?;
        let row = state
            .store
            .projection(resident)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no resident {resident}")))?
            .resident;
        if row.closure.is_none() {
            return Err(Error::Conflict(
                "close the case file before erasing the resident's data".into(),
            ));
        }
        if form.confirm.trim() != row.profile.name.trim() {
            return Err(Error::bad_request(
                "confirm_mismatch",
                "type the resident's name exactly to confirm the erasure",
            ));
        }
        let erased = state
            .store
            .erase_resident(
                resident,
                district,
                Some(user.user.id),
                crate::store::erasure::ErasureReason::Request,
                now_ms(),
            )
            .await?
            .ok_or_else(|| Error::NotFound(format!("no case file {resident}")))?;
        tracing::warn!(by = %user.user.id, %resident, visits_kept = erased.visits_kept,
            quarantined_deleted = erased.quarantined_deleted, "resident's personal data erased on the web");
        Ok(Redirect::to("/web/residents?files=closed&erased=1").into_response())
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}
