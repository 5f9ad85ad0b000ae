//! A resident's page: profile, follow-ups and the visit timeline, from the projection.
//! Outside the user's scope the page does not exist (404), whatever the id.

use super::conflicts;
use super::follow_ups;
use super::history;
use super::i18n::Lang;
use super::review::core_error;
use super::scope::{Bind, Sql, fetch};
use super::session::WebUser;
use super::templates::{FollowUpLine, ResidentPage, TimelineVisit};
use super::text::{Names, date, date_time, short};
use super::{WebError, render};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::identity::User;
use crate::now_ms;
use crate::store::access::AccessAction;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::history::history;
use sync_core::doc::schema::limits;
use sync_core::ids::{DocId, FollowUpId, ResidentId, UserId, VisitId};
use sync_core::protocol::store::ServerStore;
use uuid::Uuid;

/// The resident `text` names, if it is an id and the resident lies in `user`'s scope;
/// otherwise `NotFound`, the same answer for "no such resident" and "not yours".
pub(crate) async fn visible(state: &AppState, user: &User, text: &str) -> Result<ResidentId> {
    let not_found = || Error::NotFound(format!("no resident {text} in your scope"));
    let id = Uuid::parse_str(text.trim()).map_err(|_| not_found())?;
    let mut q = Sql::new("SELECT r.id FROM resident_rows r WHERE r.id = ");
    q.bind(Bind::id(&id)).push(" AND ");
    q.scope(user, "r.district", "r.station")?;
    let found: Option<(Vec<u8>,)> = fetch!(&state.store, q, (Vec<u8>,), fetch_optional)?;
    found.map(|_| ResidentId(id)).ok_or_else(not_found)
}

/// Display names of users, by id.
pub(crate) async fn user_names(
    state: &AppState,
    ids: impl IntoIterator<Item = UserId>,
) -> Result<HashMap<UserId, String>> {
    // Collected first: a lazy iterator held across the await would not be `Send`.
    let ids: BTreeSet<Uuid> = ids.into_iter().map(|u| u.0).collect();
    names_by_id(
        state,
        "SELECT id, display_name FROM users WHERE id IN ",
        ids,
    )
    .await
    .map(|names| names.into_iter().map(|(u, n)| (UserId(u), n)).collect())
}

/// Names by id from `select` (`SELECT id, <name> FROM <table> WHERE id IN `, the list
/// of `ids` appended).
pub(crate) async fn names_by_id(
    state: &AppState,
    select: &'static str,
    ids: BTreeSet<Uuid>,
) -> Result<HashMap<Uuid, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = Sql::new(select);
    q.bind_list(ids.iter().map(Bind::id));
    let rows: Vec<(Vec<u8>, String)> = fetch!(&state.store, q, (Vec<u8>, String), fetch_all)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, name)| Uuid::from_slice(&id).ok().map(|u| (u, name)))
        .collect())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    #[serde(default)]
    reviewed: String,
    #[serde(default)]
    resolved: String,
    #[serde(default)]
    care: String,
}

/// `GET /web/residents/{resident}`.
pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|e| super::unreadable(lang, e))?;
    let t = lang.msgs();
    let r = lang.care();
    let notice = if !query.reviewed.is_empty() {
        Some(t.review_sent)
    } else if !query.resolved.is_empty() {
        Some(t.resolved)
    } else {
        match query.care.as_str() {
            "assigned" => Some(r.notice_assigned),
            "unassigned" => Some(r.notice_unassigned),
            "saved" => Some(r.notice_saved),
            "unchanged" => Some(r.notice_unchanged),
            "moved" => Some(r.notice_moved),
            "closed" => Some(r.notice_closed),
            "reopened" => Some(r.notice_reopened),
            _ => None,
        }
    };
    show(&state, lang, &user, &resident, notice)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn show(
    state: &AppState,
    lang: Lang,
    user: &WebUser,
    text: &str,
    notice: Option<&'static str>,
) -> Result<Response> {
    let t = lang.msgs();
    let id = visible(state, &user.user, text).await?;
    super::access::record(state, &user.user, AccessAction::ViewResident, Some(id), "").await?;
    let p = state
        .store
        .projection(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no resident {id}")))?;
    let names = Names::of(&state.store, Some(p.resident.district)).await?;
    let station = state.store.station_name(p.resident.station).await?;
    // The document itself, for what the projection does not hold: conflicting values
    // and the history of changes.
    let file = state
        .store
        .load(DocId(id.0))
        .await?
        .ok_or_else(|| Error::NotFound(format!("no case file {id}")))
        .and_then(|doc| CaseFile::from_doc(doc).map_err(core_error))?;
    let conflicts = file.conflicts().map_err(core_error)?;
    let changes = history(file.doc()).map_err(core_error)?;
    let closure = p.resident.closure.clone();
    let people = user_names(
        state,
        p.visits
            .iter()
            .flat_map(|v| std::iter::once(v.volunteer).chain(v.reviewer))
            .chain(conflicts::authors(&conflicts))
            .chain(changes.iter().filter_map(|c| c.user))
            .chain(p.follow_ups.iter().filter_map(|f| f.owner))
            .chain(closure.as_ref().map(|c| c.by))
            .collect::<Vec<_>>(),
    )
    .await?;
    let actors: BTreeSet<String> = changes.iter().map(|c| c.actor.clone()).collect();
    let devices = history::actor_names(state, t, &actors).await?;
    let person = |u: &UserId| people.get(u).cloned().unwrap_or_else(|| short(&u.0));
    let separator = if lang == Lang::Zh { "、" } else { ", " };

    let profile = &p.resident.profile;
    let facts = vec![
        (t.address, profile.address.clone()),
        (t.phone, profile.phone.clone()),
        (
            t.birth_year,
            profile
                .birth_year
                .map(|y| y.to_string())
                .unwrap_or_default(),
        ),
        (
            t.living_situation,
            profile
                .living_situation
                .map(|l| t.living(l.code()).to_owned())
                .unwrap_or_default(),
        ),
        (t.emergency_contact, profile.emergency_contact.clone()),
        (t.needs, profile.needs.clone()),
        (
            t.risk_level,
            profile
                .risk_level
                .map(|r| t.risk(r.code()).to_owned())
                .unwrap_or_default(),
        ),
        (
            t.visit_every_days,
            profile
                .visit_every_days
                .map(|d| d.to_string())
                .unwrap_or_default(),
        ),
        (
            t.last_visit,
            p.resident.last_visit_at.map(date).unwrap_or_default(),
        ),
        (t.live_visits, p.resident.live_visits.to_string()),
        (t.open_follow_ups, p.resident.open_follow_ups.to_string()),
    ];

    // Only users with a district act through the core's rules, which decide in the end.
    let may_review = user.user.district.is_some();
    let m = lang.follow_ups();
    let now = now_ms();
    // Who may own a new ticket; a visit's form adds the visit's volunteer.
    let owners = if may_review {
        follow_ups::owners(state, p.resident.district.0, p.resident.station.0, None).await?
    } else {
        Vec::new()
    };
    let mut visits: Vec<_> = p.visits.iter().collect();
    visits.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    let timeline = visits
        .into_iter()
        .map(|v| {
            let services = p
                .services
                .iter()
                .filter(|s| s.visit == v.id)
                .map(|s| names.name(&s.service_type.0, lang))
                .collect::<Vec<_>>()
                .join(separator);
            let hazards = p
                .hazards
                .iter()
                .filter(|h| h.visit == v.id)
                .map(|h| {
                    let mut s = format!(
                        "{} ({}, {})",
                        names.name(&h.hazard_type.0, lang),
                        t.severity(h.severity.code()),
                        if h.fixed_on_spot {
                            t.fixed_on_spot
                        } else {
                            t.not_fixed
                        }
                    );
                    if !h.note.is_empty() {
                        s.push_str(": ");
                        s.push_str(&h.note);
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(separator);
            let blood_pressure = match (v.systolic, v.diastolic) {
                (Some(s), Some(d)) => format!("{s}/{d} mmHg"),
                _ => String::new(),
            };
            let found: Vec<_> = p.hazards.iter().filter(|h| h.visit == v.id).collect();
            let open_form =
                may_review && !v.tombstoned && (v.follow_up_needed || !found.is_empty());
            let open_owners = if open_form {
                let mut list = owners.clone();
                if !list.iter().any(|(u, _)| *u == v.volunteer) {
                    list.push((v.volunteer, person(&v.volunteer)));
                }
                follow_ups::owner_choices(m, &list, None)
            } else {
                Vec::new()
            };
            // The title offered: the hazards not fixed on the spot (else all of them),
            // else the volunteer's remarks or notes, else the visit's day.
            let unfixed: Vec<_> = found.iter().filter(|h| !h.fixed_on_spot).collect();
            let described = if unfixed.is_empty() {
                found.iter().collect()
            } else {
                unfixed
            };
            let mut open_title = described
                .iter()
                .map(|h| {
                    let name = names.name(&h.hazard_type.0, lang);
                    if h.note.is_empty() {
                        name
                    } else {
                        format!("{name}: {}", h.note)
                    }
                })
                .collect::<Vec<_>>()
                .join(separator);
            if open_title.is_empty() {
                open_title = [&v.remarks, &v.notes]
                    .into_iter()
                    .find(|t| !t.trim().is_empty())
                    .map(|t| t.trim().to_owned())
                    .unwrap_or_else(|| m.fallback_title.replace("{date}", &date(v.started_at)));
            }
            let open_title: String = open_title.chars().take(limits::SHORT_TEXT).collect();
            TimelineVisit {
                id: v.id.to_string(),
                open_form,
                open_title,
                open_owners,
                anchor: format!("visit-{}", v.id),
                when: date_time(v.started_at),
                volunteer: person(&v.volunteer),
                project: names.name(&v.project.0, lang),
                minutes: v.duration_minutes,
                wellbeing: t.wellbeing(v.wellbeing.code()),
                blood_pressure,
                remarks: v.remarks.clone(),
                notes: v.notes.clone(),
                services,
                hazards,
                follow_up: v.follow_up_needed,
                deleted: v.tombstoned,
                review: t.review_status(v.review_status.code()),
                review_code: v.review_status.code(),
                reviewer: v.reviewer.as_ref().map(&person).unwrap_or_default(),
                reviewed_at: v.reviewed_at.map(date_time).unwrap_or_default(),
                review_comment: v.review_comment.clone().unwrap_or_default(),
                review_action: if may_review && !v.tombstoned {
                    format!("/web/residents/{}/visits/{}/review", id.0, v.id)
                } else {
                    String::new()
                },
            }
        })
        .collect();
    let mut follow_ups: Vec<_> = p.follow_ups.iter().collect();
    follow_ups.sort_by_key(|f| std::cmp::Reverse(f.opened_at));
    let follow_ups = follow_ups
        .into_iter()
        .map(|f| FollowUpLine {
            href: follow_ups::ticket_href(&id.0, &f.id.0),
            owner: f.owner.as_ref().map_or_else(String::new, &person),
            overdue: follow_ups::is_overdue(f.status.code(), f.deadline, now),
            title: f.title.clone(),
            status: t.follow_up_status(f.status.code()),
            deadline: f.deadline.map(date).unwrap_or_default(),
            opened: date(f.opened_at),
            comments: f.comments,
        })
        .collect();
    let visit_days: HashMap<VisitId, String> = p
        .visits
        .iter()
        .map(|v| (v.id, date(v.started_at)))
        .collect();
    let titles: HashMap<FollowUpId, String> = p
        .follow_ups
        .iter()
        .map(|f| (f.id, f.title.clone()))
        .collect();
    let history_cut = changes.len() > history::SHOWN;
    let history = history::lines(
        t,
        &changes,
        person,
        &devices,
        |v| visit_days.get(v).cloned(),
        |f| titles.get(f).cloned(),
    );
    let closed = closure
        .as_ref()
        .map(|c| super::care::closed_banner(lang, c, &person(&c.by)));
    let care = if may_review {
        Some(
            super::care::CareForms::load(
                state,
                lang,
                user,
                id,
                &p.resident.profile,
                p.resident.station,
                closed.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let page = ResidentPage {
        access_link: super::admin::administers(&user.user).is_ok().then(|| {
            (
                format!("/web/access-log?resident={}", id.0),
                lang.access().resident_link,
            )
        }),
        closed,
        care,
        c: user.chrome(lang, &format!("/web/residents/{}", id.0)),
        name: p.resident.profile.name.clone(),
        station: station.unwrap_or_else(|| short(&p.resident.station.0)),
        facts,
        visits: timeline,
        follow_ups,
        conflicts: conflicts::lines(t, &conflicts, person),
        resolve_action: if may_review {
            format!("/web/residents/{}/resolve", id.0)
        } else {
            String::new()
        },
        history,
        history_cut,
        notice,
        m,
        open_action: if may_review {
            format!("/web/residents/{}/follow-ups", id.0)
        } else {
            String::new()
        },
        owners: follow_ups::owner_choices(m, &owners, None),
    };
    render(&page)
}
