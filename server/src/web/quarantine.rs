//! Refused changes (issue 12): what phones uploaded and the rules refused, for the
//! district's coordinators and admins to decide on (`/web/quarantine`). Each batch is
//! shown decoded (who sent it, from which device, for which resident, what it wrote,
//! why it was refused) by applying it to a copy of the stored document. A coordinator
//! accepts it into the record through the core's `accept_refused` (the rules judge it
//! again as its author's; the coordinator vouches only for scope and time) or dismisses
//! it with a reason. Either decision reaches the phone at its next sync, which until
//! then keeps the refused changes with their reason: nothing a volunteer wrote goes
//! without a person's decision.

use super::admin::administers;
use super::i18n::{Lang, QuarantineMsgs};
use super::residents::user_names;
use super::session::WebUser;
use super::templates::Chrome;
use super::text::{date_time, short};
use super::{WebError, render, unreadable};
use crate::error::{Error, Result};
use crate::http::{Announcing, AppState};
use crate::now_ms;
use crate::store::quarantine::{QuarantineDecision, QuarantineRow};
use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;
use sync_core::automerge::{Automerge, Change, ReadDoc};
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::paths::written;
use sync_core::ids::{DistrictId, ResidentId};
use sync_core::model::{Principal, Scope};
use sync_core::protocol::server::{DeviceAuth, accept_refused, codes};
use sync_core::protocol::store::ServerStore;

/// Batches listed on one page.
const LIST_LIMIT: i64 = 200;
/// The longest dismissal reason, in characters.
const NOTE_MAX: usize = 500;

/// Refusals whose bytes cannot be accepted whatever a person says: they do not parse,
/// or name another device's actor or another document.
fn acceptable(code: &str) -> bool {
    ![
        codes::MALFORMED,
        codes::FOREIGN_ACTOR,
        codes::WRONG_DOCUMENT,
    ]
    .contains(&code)
}

/// A batch as the list and its page show it.
#[derive(Debug)]
pub(crate) struct RefusedLine {
    pub number: u64,
    pub href: String,
    pub received: String,
    pub who: String,
    pub device: String,
    pub resident: String,
    pub resident_href: Option<String>,
    pub what: Vec<String>,
    pub code: String,
    pub why: String,
    pub decision: Option<String>,
    pub acceptable: bool,
}

#[derive(Debug, Template)]
#[template(path = "quarantine.html")]
pub(crate) struct ListPage {
    pub c: Chrome,
    pub q: &'static QuarantineMsgs,
    pub decided: bool,
    pub lines: Vec<RefusedLine>,
}

#[derive(Debug, Template)]
#[template(path = "quarantine_item.html")]
pub(crate) struct ItemPage {
    pub c: Chrome,
    pub q: &'static QuarantineMsgs,
    pub notice: Option<&'static str>,
    pub line: RefusedLine,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    decided: String,
    #[serde(default)]
    done: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

/// `GET /web/quarantine`: the district's refused batches awaiting a decision (or,
/// with `?decided=1`, those decided).
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|e| unreadable(lang, e))?;
    list_page(&state, &user, lang, &query)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn list_page(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    query: &ListQuery,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let decided = !query.decided.is_empty();
    let rows = state
        .store
        .quarantine_list(district, decided, LIST_LIMIT)
        .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        lines.push(line(state, lang, row).await?);
    }
    let here = if decided {
        "/web/quarantine?decided=1"
    } else {
        "/web/quarantine"
    };
    render(&ListPage {
        c: user.chrome(lang, here),
        q: lang.quarantine(),
        decided,
        lines,
    })
}

/// `GET /web/quarantine/{number}`: one batch, with its accept and dismiss forms.
pub(crate) async fn item(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(number): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|e| unreadable(lang, e))?;
    item_page(&state, &user, lang, &number, &query)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn item_page(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    number: &str,
    query: &ListQuery,
) -> Result<Response> {
    let district = administers(&user.user)?;
    let row = find(state, district, number).await?;
    let q = lang.quarantine();
    let notice = match query.done.as_str() {
        "accepted" => Some(q.notice_accepted),
        "dismissed" => Some(q.notice_dismissed),
        _ => None,
    };
    let (number, doc) = (row.number, row.item.doc);
    let line = line(state, lang, row).await?;
    // Recorded before it is shown; a catalog's batch concerns no resident.
    super::access::record(
        state,
        &user.user,
        crate::store::access::AccessAction::ViewRefused,
        line.resident_href.is_some().then_some(ResidentId(doc.0)),
        &format!("#{number}"),
    )
    .await?;
    render(&ItemPage {
        c: user.chrome(lang, &line.href),
        q,
        notice,
        line,
    })
}

/// The batch a URL names, in the user's district; otherwise 404, whatever exists.
async fn find(state: &AppState, district: DistrictId, number: &str) -> Result<QuarantineRow> {
    let not_found = || Error::NotFound(format!("no refused batch {number}"));
    let n: u64 = number.trim().parse().map_err(|_| not_found())?;
    state
        .store
        .quarantine_row(district, n)
        .await?
        .ok_or_else(not_found)
}

/// `POST /web/quarantine/{number}/accept`.
pub(crate) async fn accept(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(number): Path<String>,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    accept_batch(&state, &user, lang, &number, &form)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn accept_batch(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    number: &str,
    form: &DecideForm,
) -> Result<Response> {
    user.check_csrf(&form.csrf)?;
    let district = administers(&user.user)?;
    let row = find(state, district, number).await?;
    if row.decision.is_some() {
        return Err(Error::Conflict(format!(
            "refused batch {} was decided already",
            row.number
        )));
    }
    if !acceptable(&row.item.code) {
        return Err(Error::bad_request(
            "not_acceptable",
            format!("a {} refusal cannot be accepted", row.item.code),
        ));
    }
    let author = state
        .store
        .user(row.item.user)
        .await?
        .ok_or_else(|| Error::Internal(format!("the author {} is gone", row.item.user)))?;
    // The coordinator vouches for scope (the district's) and time; the author's role
    // and authorship (the device's actors) are checked as for any upload.
    let auth = DeviceAuth {
        device: row.item.device,
        principal: Principal {
            user: author.id,
            role: author.role,
            scope: Scope::District(district),
        },
        actors: state.store.device_actors(row.item.device).await?,
    };
    let store = Announcing {
        store: &state.store,
        events: &state.events,
    };
    let now = now_ms();
    if let Err((code, reason)) =
        accept_refused(&store, &auth, row.item.doc, &row.item.bytes, now).await?
    {
        return Err(Error::Forbidden(format!(
            "{} ({code}: {reason})",
            lang.quarantine().refused_again
        )));
    }
    let decided = state
        .store
        .decide_quarantined(
            row.number,
            &QuarantineDecision {
                accepted: true,
                by: user.user.id,
                at: now,
                note: user.user.display_name.clone(),
            },
        )
        .await?;
    if !decided {
        // Another coordinator decided meanwhile; the changes are stored either way.
        return Err(Error::Conflict(format!(
            "refused batch {} was decided meanwhile",
            row.number
        )));
    }
    tracing::info!(by = %user.user.id, batch = row.number, doc = %row.item.doc, "refused batch accepted");
    Ok(Redirect::to(&format!("/web/quarantine/{}?done=accepted", row.number)).into_response())
}

/// `POST /web/quarantine/{number}/dismiss`.
pub(crate) async fn dismiss(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(number): Path<String>,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| unreadable(lang, e))?;
    dismiss_batch(&state, &user, &number, &form)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn dismiss_batch(
    state: &AppState,
    user: &WebUser,
    number: &str,
    form: &DecideForm,
) -> Result<Response> {
    user.check_csrf(&form.csrf)?;
    let district = administers(&user.user)?;
    let row = find(state, district, number).await?;
    let note = form.note.trim();
    if note.is_empty() || note.chars().count() > NOTE_MAX {
        return Err(Error::bad_request(
            "bad_note",
            format!("a dismissal says why, in 1 to {NOTE_MAX} characters"),
        ));
    }
    let decided = state
        .store
        .decide_quarantined(
            row.number,
            &QuarantineDecision {
                accepted: false,
                by: user.user.id,
                at: now_ms(),
                note: format!("{}：{note}", user.user.display_name),
            },
        )
        .await?;
    if !decided {
        return Err(Error::Conflict(format!(
            "refused batch {} was decided already",
            row.number
        )));
    }
    tracing::info!(by = %user.user.id, batch = row.number, doc = %row.item.doc, "refused batch dismissed");
    Ok(Redirect::to(&format!("/web/quarantine/{}?done=dismissed", row.number)).into_response())
}

/// A batch decoded for people.
async fn line(state: &AppState, lang: Lang, row: QuarantineRow) -> Result<RefusedLine> {
    let q = lang.quarantine();
    let item = &row.item;
    let stored = state.store.load(item.doc).await?;
    let existed = stored.is_some();
    let decoded = decode(stored.unwrap_or_default(), &item.bytes);
    let mut names = user_names(
        state,
        std::iter::once(item.user).chain(row.decision.as_ref().map(|d| d.by)),
    )
    .await?;
    let device = state
        .store
        .device(item.device)
        .await?
        .map_or_else(|| short(&item.device.0), |d| d.name);
    let (resident, what) = match decoded {
        Some((resident, visits, written)) => {
            let volunteers = user_names(state, visits.iter().map(|v| v.volunteer)).await?;
            names.extend(volunteers);
            let mut what: Vec<String> = visits
                .iter()
                .map(|v| {
                    q.visit_line
                        .replace("{date}", &date_time(v.started_at))
                        .replace(
                            "{volunteer}",
                            names
                                .get(&v.volunteer)
                                .map_or(&short(&v.volunteer.0), |n| n),
                        )
                        .replace("{notes}", &v.record.notes)
                })
                .collect();
            if visits.is_empty() && !written.visits.is_empty() {
                what.push(q.visits_n.replace("{n}", &written.visits.len().to_string()));
            }
            if !written.profile.is_empty() {
                let fields: Vec<&str> = written.profile.iter().map(String::as_str).collect();
                what.push(q.profile_fields.replace("{fields}", &fields.join(", ")));
            }
            if !written.follow_ups.is_empty() {
                let n = written.follow_ups.len().to_string();
                what.push(q.follow_ups_n.replace("{n}", &n));
            }
            if written.other > 0 {
                what.push(q.other_n.replace("{n}", &written.other.to_string()));
            }
            let mut name = resident;
            if !existed {
                name.push(' ');
                name.push_str(q.new_resident);
            }
            (name, what)
        }
        None => (short(&item.doc.0), vec![q.unreadable.to_owned()]),
    };
    let decision = row.decision.as_ref().map(|d| {
        let what = if d.accepted { q.accepted } else { q.dismissed };
        let by = names.get(&d.by).cloned().unwrap_or_else(|| short(&d.by.0));
        let note = if d.accepted {
            String::new()
        } else {
            format!(" — {}", d.note)
        };
        format!("{what} ({by}, {}){note}", date_time(d.at))
    });
    Ok(RefusedLine {
        number: row.number,
        href: format!("/web/quarantine/{}", row.number),
        received: date_time(item.at),
        who: names
            .get(&item.user)
            .cloned()
            .unwrap_or_else(|| short(&item.user.0)),
        device,
        resident,
        resident_href: existed.then(|| format!("/web/residents/{}", item.doc.0)),
        what,
        code: item.code.clone(),
        why: item.reason.clone(),
        acceptable: row.decision.is_none() && acceptable(&item.code),
        decision,
    })
}

/// The resident's name, the visits the batch wrote (as they read with it applied) and
/// what else it wrote; `None` when the bytes do not apply to the stored document.
fn decode(
    mut doc: Automerge,
    raw: &[Vec<u8>],
) -> Option<(
    String,
    Vec<sync_core::model::Visit>,
    sync_core::doc::paths::Written,
)> {
    let run = move || {
        let changes: Vec<Change> = raw
            .iter()
            .map(|b| Change::from_bytes(b.clone()).ok())
            .collect::<Option<_>>()?;
        doc.apply_changes(changes.iter().cloned()).ok()?;
        if !doc.get_missing_deps(&[]).is_empty() {
            return None;
        }
        let what = written(&doc, &changes).ok()?;
        let resident = CaseFile::from_doc(doc).ok()?.hydrate().ok()?;
        let visits = resident
            .visits
            .into_iter()
            .filter(|v| what.visits.contains(&v.id))
            .collect();
        Some((resident.profile.name, visits, what))
    };
    // Automerge panics on some malformed changes; a page must not.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .ok()
        .flatten()
}
