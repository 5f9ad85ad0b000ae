//! Follow-up tickets on the web: open one from a visit's hazard or concern (or not tied
//! to a visit), assign it and set its deadline, comment on it, close it with a
//! resolution, and a page per ticket (`/web/follow-ups/{resident}/{follow_up}`).
//!
//! Every POST checks the session's CSRF token, then that the resident is in the user's
//! scope (`residents::visible`: otherwise 404, as for the resident page), then the
//! input (a 400 with a code the page explains). The edit itself goes through the
//! core's `CaseFile` methods with `review::edit_case_file`, so the core's rules decide
//! in the end (a refusal is a 403) and the change reaches the phones like any other.
//! The owner is one of the users who may own the ticket ([`owners`]): the resident's
//! station staff, the district's coordinators, and the volunteer of the visit it came
//! from.

use super::i18n::{FollowUpMsgs, Lang};
use super::residents::{user_names, visible};
use super::review::{core_error, edit_case_file};
use super::scope::{Bind, Sql, fetch};
use super::session::WebUser;
use super::templates::{Choice, CommentLine, FollowUpPage};
use super::text::{date, date_time, day_start, short};
use super::{WebError, render, unreadable};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::now_ms;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::schema::limits;
use sync_core::ids::{CommentId, DocId, FollowUpId, ResidentId, UserId, VisitId};
use sync_core::model::FollowUpStatus;
use sync_core::protocol::store::ServerStore;
use uuid::Uuid;

const DAY: i64 = 86_400_000;
/// The last day a deadline may fall on; later years are typing mistakes. (The rules
/// refuse deadlines before 2020.)
const LAST_DEADLINE_DAY: &str = "2099-12-31";

/// Whether a ticket is overdue at `now`, by the core's rule, for a row's status code.
pub(crate) fn is_overdue(status: &str, deadline: Option<i64>, now: i64) -> bool {
    FollowUpStatus::from_code(status).is_some_and(|s| FollowUpStatus::overdue(s, deadline, now))
}

/// A ticket's page.
pub(crate) fn ticket_href(resident: &Uuid, follow_up: &Uuid) -> String {
    format!("/web/follow-ups/{resident}/{follow_up}")
}

fn stored_id(bytes: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|_| Error::Internal("a stored id is not 16 bytes".into()))
}

/// The district and station of a resident (already found in scope).
async fn place(state: &AppState, resident: ResidentId) -> Result<(Uuid, Uuid)> {
    let mut q = Sql::new("SELECT district, station FROM resident_rows WHERE id = ");
    q.bind(Bind::id(&resident.0));
    let row: Option<(Vec<u8>, Vec<u8>)> =
        fetch!(&state.store, q, (Vec<u8>, Vec<u8>), fetch_optional)?;
    let (district, station) =
        row.ok_or_else(|| Error::NotFound(format!("no resident {resident}")))?;
    Ok((stored_id(&district)?, stored_id(&station)?))
}

/// The volunteer of one of the resident's visits; `NotFound` for any other id.
async fn visit_volunteer(state: &AppState, resident: ResidentId, visit: VisitId) -> Result<UserId> {
    let mut q = Sql::new("SELECT volunteer FROM visit_rows WHERE resident = ");
    q.bind(Bind::id(&resident.0))
        .push(" AND id = ")
        .bind(Bind::id(&visit.0));
    let row: Option<(Vec<u8>,)> = fetch!(&state.store, q, (Vec<u8>,), fetch_optional)?;
    let (volunteer,) = row.ok_or_else(|| Error::NotFound(format!("no visit {visit}")))?;
    Ok(UserId(stored_id(&volunteer)?))
}

/// A ticket's district, station, owner and visit's volunteer, as selected.
type TicketSql = (Vec<u8>, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// A ticket as the projection holds it: where it is, its owner, and the volunteer of
/// the visit it was opened from.
struct TicketRow {
    district: Uuid,
    station: Uuid,
    owner: Option<UserId>,
    volunteer: Option<UserId>,
}

impl TicketRow {
    /// Who may own the ticket ([`owners`]), plus its current owner even if they no
    /// longer could (a staff member moved to another station): changing only the
    /// deadline must not drop the owner.
    async fn owners(&self, state: &AppState) -> Result<Vec<(UserId, String)>> {
        let mut list = owners(state, self.district, self.station, self.volunteer).await?;
        if let Some(current) = self.owner
            && !list.iter().any(|(u, _)| *u == current)
        {
            let name = user_names(state, [current])
                .await?
                .remove(&current)
                .unwrap_or_else(|| short(&current.0));
            list.push((current, name));
        }
        Ok(list)
    }
}

/// The ticket the URL names, if its resident is in the user's scope and it is one of
/// that resident's tickets; otherwise `NotFound`, whatever the ids say.
async fn ticket(
    state: &AppState,
    user: &WebUser,
    resident: &str,
    follow_up: &str,
) -> Result<(ResidentId, FollowUpId, TicketRow)> {
    let resident = visible(state, &user.user, resident).await?;
    let not_found = || Error::NotFound(format!("no follow-up {follow_up}"));
    let id = FollowUpId(Uuid::parse_str(follow_up.trim()).map_err(|_| not_found())?);
    let mut q = Sql::new(
        "SELECT f.district, f.station, f.owner, v.volunteer FROM follow_up_rows f \
         LEFT JOIN visit_rows v ON v.resident = f.resident AND v.id = f.visit \
         WHERE f.resident = ",
    );
    q.bind(Bind::id(&resident.0))
        .push(" AND f.id = ")
        .bind(Bind::id(&id.0));
    let row: Option<TicketSql> = fetch!(&state.store, q, TicketSql, fetch_optional)?;
    let (district, station, owner, volunteer) = row.ok_or_else(not_found)?;
    let user_id = |bytes: Option<Vec<u8>>| bytes.map(|b| stored_id(&b).map(UserId)).transpose();
    Ok((
        resident,
        id,
        TicketRow {
            district: stored_id(&district)?,
            station: stored_id(&station)?,
            owner: user_id(owner)?,
            volunteer: user_id(volunteer)?,
        },
    ))
}

/// Who may own a ticket of a resident at `station` in `district`: the station's staff,
/// the district's coordinators and, for a ticket from a visit, that visit's volunteer;
/// accounts that are not disabled. By name.
pub(crate) async fn owners(
    state: &AppState,
    district: Uuid,
    station: Uuid,
    volunteer: Option<UserId>,
) -> Result<Vec<(UserId, String)>> {
    let mut q = Sql::new("SELECT u.id, u.display_name FROM users u WHERE u.district = ");
    q.bind(Bind::id(&district))
        .push(
            " AND u.disabled_at IS NULL AND (u.role = 'coordinator' OR (u.role = 'station_staff' \
             AND u.id IN (SELECT user_id FROM staff_stations WHERE station = ",
        )
        .bind(Bind::id(&station))
        .push("))");
    if let Some(v) = volunteer {
        q.push(" OR u.id = ").bind(Bind::id(&v.0));
    }
    q.push(") ORDER BY u.display_name, u.id");
    let rows: Vec<(Vec<u8>, String)> = fetch!(&state.store, q, (Vec<u8>, String), fetch_all)?;
    rows.into_iter()
        .map(|(id, name)| Ok((UserId(stored_id(&id)?), name)))
        .collect()
}

/// The owners as a menu, "unassigned" first, `selected` chosen.
pub(crate) fn owner_choices(
    m: &FollowUpMsgs,
    owners: &[(UserId, String)],
    selected: Option<UserId>,
) -> Vec<Choice> {
    std::iter::once(Choice {
        value: String::new(),
        label: m.unassigned.to_owned(),
        selected: selected.is_none(),
    })
    .chain(owners.iter().map(|(id, name)| Choice {
        value: id.0.to_string(),
        label: name.clone(),
        selected: selected == Some(*id),
    }))
    .collect()
}

/// The owner a form names: nobody (empty), or one of `owners`.
fn chosen_owner(text: &str, owners: &[(UserId, String)]) -> Result<Option<UserId>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(text)
        .ok()
        .map(UserId)
        .filter(|id| owners.iter().any(|(o, _)| o == id))
        .map(Some)
        .ok_or_else(|| {
            Error::bad_request(
                "unknown_owner",
                format!("{text:?} may not own this follow-up"),
            )
        })
}

/// The deadline a form's `YYYY-MM-DD` names: the last millisecond of that day in
/// Shanghai, so a ticket due today is overdue from tomorrow. Empty: no deadline.
pub(crate) fn deadline(text: &str) -> Result<Option<i64>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let start = day_start(text)?;
    if start < limits::EARLIEST || start > day_start(LAST_DEADLINE_DAY)? {
        return Err(Error::bad_request(
            "bad_deadline",
            format!("{:?} is not between 2020 and 2099", text.trim()),
        ));
    }
    Ok(Some(start + DAY - 1))
}

/// A form's text, trimmed: not empty (`empty_code`), at most `max` characters.
fn text_field(text: &str, max: usize, empty_code: &'static str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::bad_request(empty_code, "is empty"));
    }
    let n = text.chars().count();
    if n > max {
        return Err(Error::bad_request(
            "too_long",
            format!("{n} characters, more than {max}"),
        ));
    }
    Ok(text.to_owned())
}

/// Refuses an edit of a closed ticket; `Ok(Err(…))` carries the page's 400 out of the
/// core's edit without writing anything.
fn open_ticket(file: &CaseFile, id: FollowUpId) -> sync_core::Result<Result<()>> {
    let ticket = file
        .follow_up(id)?
        .ok_or_else(|| sync_core::Error::NotFound(format!("follow-up {id}")))?;
    Ok(if ticket.status == FollowUpStatus::Closed {
        Err(Error::bad_request(
            "already_closed",
            format!("follow-up {id} is closed"),
        ))
    } else {
        Ok(())
    })
}

fn redirect(resident: ResidentId, id: FollowUpId, done: &str) -> Response {
    Redirect::to(&format!("{}?done={done}", ticket_href(&resident.0, &id.0))).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct OpenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    /// The visit it comes from; empty for a ticket not tied to a visit.
    #[serde(default)]
    visit: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    deadline: String,
}

/// `POST /web/residents/{resident}/follow-ups`: opens a ticket.
pub(crate) async fn open(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    form: Result<Form<OpenForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let resident = visible(&state, &user.user, &resident).await?;
        let visit = match form.visit.trim() {
            "" => None,
            v => Some(VisitId(
                Uuid::parse_str(v).map_err(|_| Error::NotFound(format!("no visit {v}")))?,
            )),
        };
        let volunteer = match visit {
            Some(v) => Some(visit_volunteer(&state, resident, v).await?),
            None => None,
        };
        let title = text_field(&form.title, limits::SHORT_TEXT, "empty_title")?;
        let deadline = deadline(&form.deadline)?;
        let (district, station) = place(&state, resident).await?;
        let owner = chosen_owner(
            &form.owner,
            &owners(&state, district, station, volunteer).await?,
        )?;
        let id = FollowUpId(Uuid::now_v7());
        edit_case_file(&state, &user, resident, |file, editor| {
            file.open_follow_up(editor, id, visit, &title, owner, deadline)
        })
        .await?;
        tracing::info!(user = %user.user.id, %resident, follow_up = %id, "follow-up opened on the web");
        Ok(redirect(resident, id, "opened"))
    }
    .await
    .map_err(|e| WebError::new(lang, e))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CommentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

/// `POST /web/follow-ups/{resident}/{follow_up}/comment`.
pub(crate) async fn comment(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path((resident, follow_up)): Path<(String, String)>,
    form: Result<Form<CommentForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let (resident, id, _) = ticket(&state, &user, &resident, &follow_up).await?;
        let text = text_field(&form.text, limits::LONG_TEXT, "empty_comment")?;
        let comment = CommentId(Uuid::now_v7());
        edit_case_file(&state, &user, resident, |file, editor| {
            file.comment_follow_up(editor, id, comment, &text)
        })
        .await?;
        tracing::info!(user = %user.user.id, %resident, follow_up = %id, "follow-up commented on the web");
        Ok(redirect(resident, id, "commented"))
    }
    .await
    .map_err(|e| WebError::new(lang, e))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AssignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    deadline: String,
}

/// `POST /web/follow-ups/{resident}/{follow_up}/assign`: sets the owner and the
/// deadline (empty fields clear them).
pub(crate) async fn assign(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path((resident, follow_up)): Path<(String, String)>,
    form: Result<Form<AssignForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let (resident, id, row) = ticket(&state, &user, &resident, &follow_up).await?;
        let deadline = deadline(&form.deadline)?;
        let owner = chosen_owner(&form.owner, &row.owners(&state).await?)?;
        edit_case_file(&state, &user, resident, |file, editor| {
            Ok(match open_ticket(file, id)? {
                Ok(()) => file.assign_follow_up(editor, id, owner, deadline).map(|_| Ok(()))?,
                closed => closed,
            })
        })
        .await??;
        tracing::info!(user = %user.user.id, %resident, follow_up = %id, "follow-up assigned on the web");
        Ok(redirect(resident, id, "assigned"))
    }
    .await
    .map_err(|e| WebError::new(lang, e))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CloseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    resolution: String,
}

/// `POST /web/follow-ups/{resident}/{follow_up}/close`.
pub(crate) async fn close(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path((resident, follow_up)): Path<(String, String)>,
    form: Result<Form<CloseForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(&form.csrf)?;
        let (resident, id, _) = ticket(&state, &user, &resident, &follow_up).await?;
        let resolution = text_field(&form.resolution, limits::LONG_TEXT, "empty_resolution")?;
        edit_case_file(&state, &user, resident, |file, editor| {
            Ok(match open_ticket(file, id)? {
                Ok(()) => file.close_follow_up(editor, id, &resolution).map(|_| Ok(()))?,
                closed => closed,
            })
        })
        .await??;
        tracing::info!(user = %user.user.id, %resident, follow_up = %id, "follow-up closed on the web");
        Ok(redirect(resident, id, "closed"))
    }
    .await
    .map_err(|e| WebError::new(lang, e))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    #[serde(default)]
    done: String,
}

/// `GET /web/follow-ups/{resident}/{follow_up}`: the ticket, its comments oldest
/// first, and the forms to act on it.
pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path((resident, follow_up)): Path<(String, String)>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|e| unreadable(lang, e))?;
    async {
        let t = lang.msgs();
        let m = lang.follow_ups();
        let (resident, id, row) = ticket(&state, &user, &resident, &follow_up).await?;
        let file = state
            .store
            .load(DocId(resident.0))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no case file {resident}")))
            .and_then(|doc| CaseFile::from_doc(doc).map_err(core_error))?;
        let f = file
            .follow_up(id)
            .map_err(core_error)?
            .ok_or_else(|| Error::NotFound(format!("no follow-up {id}")))?;
        let visit = match f.visit {
            Some(v) => file.visit(v).map_err(core_error)?,
            None => None,
        };
        let (name, station): (String, Option<String>) = {
            let mut q = Sql::new(
                "SELECT r.name, s.name FROM resident_rows r \
                 LEFT JOIN stations s ON s.id = r.station WHERE r.id = ",
            );
            q.bind(Bind::id(&resident.0));
            fetch!(&state.store, q, (String, Option<String>), fetch_one)?
        };
        let people = user_names(
            &state,
            std::iter::once(f.opened_by)
                .chain(f.owner)
                .chain(f.closed_by)
                .chain(visit.as_ref().map(|v| v.volunteer))
                .chain(f.comments.iter().map(|c| c.author))
                .collect::<Vec<_>>(),
        )
        .await?;
        let person = |u: &UserId| people.get(u).cloned().unwrap_or_else(|| short(&u.0));
        let status = f.status.code();
        let may_edit = user.user.district.is_some();
        let open = f.status == FollowUpStatus::Open;
        let action = |what: &str| {
            if may_edit {
                format!("{}/{what}", ticket_href(&resident.0, &id.0))
            } else {
                String::new()
            }
        };
        let owners = if may_edit && open {
            row.owners(&state).await?
        } else {
            Vec::new()
        };
        let notice = match query.done.as_str() {
            "opened" => Some(m.notice_opened),
            "commented" => Some(m.notice_commented),
            "assigned" => Some(m.notice_assigned),
            "closed" => Some(m.notice_closed),
            _ => None,
        };
        let page = FollowUpPage {
            c: user.chrome(lang, &ticket_href(&resident.0, &id.0)),
            m,
            resident: name,
            resident_href: format!("/web/residents/{}", resident.0),
            station: station.unwrap_or_default(),
            title: f.title.clone(),
            status: t.follow_up_status(status),
            status_code: status,
            owner: f
                .owner
                .as_ref()
                .map_or_else(|| m.unassigned.to_owned(), person),
            deadline: f.deadline.map(date).unwrap_or_default(),
            overdue: is_overdue(status, f.deadline, now_ms()),
            opened_by: person(&f.opened_by),
            opened_at: date_time(f.opened_at),
            visit_href: visit
                .as_ref()
                .map(|v| format!("/web/residents/{}#visit-{}", resident.0, v.id))
                .unwrap_or_default(),
            visit_label: visit
                .as_ref()
                .map(|v| format!("{} · {}", date_time(v.started_at), person(&v.volunteer)))
                .unwrap_or_default(),
            closed_by: f.closed_by.as_ref().map(&person).unwrap_or_default(),
            closed_at: f.closed_at.map(date_time).unwrap_or_default(),
            resolution: f.resolution.clone(),
            comments: f
                .comments
                .iter()
                .map(|c| CommentLine {
                    author: person(&c.author),
                    at: date_time(c.at),
                    text: c.text.clone(),
                })
                .collect(),
            comment_action: action("comment"),
            assign_action: if open {
                action("assign")
            } else {
                String::new()
            },
            close_action: if open { action("close") } else { String::new() },
            owners: owner_choices(m, &owners, f.owner),
            deadline_value: f.deadline.map(date).unwrap_or_default(),
            notice,
        };
        render(&page)
    }
    .await
    .map_err(|e| WebError::new(lang, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_end_with_their_day_in_shanghai() {
        assert_eq!(deadline("").unwrap(), None);
        let d = deadline(" 2026-03-01 ").unwrap().unwrap();
        assert_eq!(date(d), "2026-03-01");
        assert_eq!(date(d + 1), "2026-03-02");
        for bad in [
            "2019-12-31",
            "2100-01-01",
            "2026-02-30",
            "tomorrow",
            "2026/03/01",
        ] {
            assert!(deadline(bad).is_err(), "{bad}");
        }
        assert!(is_overdue("open", Some(d), d + 1));
        assert!(!is_overdue("open", Some(d), d));
        assert!(!is_overdue("closed", Some(d), d + 1));
        assert!(!is_overdue("open", None, d));
    }

    #[test]
    fn owners_come_from_the_list_only() {
        let a = UserId(Uuid::from_u128(1));
        let list = vec![(a, "a".to_owned())];
        assert_eq!(chosen_owner("", &list).unwrap(), None);
        assert_eq!(chosen_owner(&a.0.to_string(), &list).unwrap(), Some(a));
        for bad in ["x", "00000000-0000-0000-0000-000000000002"] {
            assert!(matches!(
                chosen_owner(bad, &list),
                Err(Error::BadRequest {
                    code: "unknown_owner",
                    ..
                })
            ));
        }
        assert!(matches!(
            text_field(" ", 5, "empty_title"),
            Err(Error::BadRequest {
                code: "empty_title",
                ..
            })
        ));
        assert!(matches!(
            text_field("邻里邻里邻里", 5, "empty_title"),
            Err(Error::BadRequest {
                code: "too_long",
                ..
            })
        ));
        assert_eq!(text_field(" 邻里 ", 5, "x").unwrap(), "邻里");
    }
}
