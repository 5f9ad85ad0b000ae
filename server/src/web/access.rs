//! The access log on the web (issue 16): every view of a resident's page, every export
//! of visits and every refused batch opened is recorded (`SqlStore::record_access`)
//! before the data is shown, and `/web/access-log` lists the district's entries for its
//! coordinators and admins, newest first, by resident or by user. A read that cannot be
//! recorded is not served.

use super::admin::administers;
use super::i18n::Lang;
use super::residents::{names_by_id, user_names};
use super::session::WebUser;
use super::text::{date_time, short};
use super::{WebError, render, unreadable};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::identity::User;
use crate::now_ms;
use crate::store::access::{AccessAction, AccessQuery};
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use sync_core::ids::{ResidentId, UserId};
use uuid::Uuid;

/// Entries a page shows.
const PAGE: i64 = 100;

/// Records that `user` read something, before it is shown.
pub(crate) async fn record(
    state: &AppState,
    user: &User,
    action: AccessAction,
    resident: Option<ResidentId>,
    detail: &str,
) -> Result<()> {
    state
        .store
        .record_access(user.id, user.district, action, resident, detail, now_ms())
        .await?;
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogQuery {
    #[serde(default)]
    resident: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    before: String,
}

/// A line of the page.
#[derive(Debug)]
pub(crate) struct AccessLine {
    pub at: String,
    pub who: String,
    pub who_href: String,
    pub action: &'static str,
    pub resident: String,
    pub resident_href: Option<String>,
    pub detail: String,
}

#[derive(Debug, Template)]
#[template(path = "access_log.html")]
pub(crate) struct AccessPage {
    pub c: super::templates::Chrome,
    pub a: &'static super::i18n::AccessMsgs,
    /// What the page is narrowed to, said in words.
    pub narrowed: Option<String>,
    pub lines: Vec<AccessLine>,
    pub next: Option<String>,
}

fn uuid_param(name: &str, text: &str) -> Result<Option<Uuid>> {
    match text.trim() {
        "" => Ok(None),
        t => Uuid::parse_str(t)
            .map(Some)
            .map_err(|_| Error::bad_request("bad_filter", format!("{name}: {t:?} is not an id"))),
    }
}

/// `GET /web/access-log?resident=…&user=…&before=…`.
pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|e| unreadable(lang, e))?;
    async {
        let district = administers(&user.user)?;
        let a = lang.access();
        let resident = uuid_param("resident", &query.resident)?.map(ResidentId);
        let by = uuid_param("user", &query.user)?.map(UserId);
        let before = match query.before.trim() {
            "" => None,
            t => Some(t.parse::<i64>().map_err(|_| {
                Error::bad_request("bad_filter", format!("before: {t:?} is not a number"))
            })?),
        };
        let entries = state
            .store
            .access_log(
                &AccessQuery {
                    district: Some(district),
                    resident,
                    user: by,
                    before,
                },
                PAGE + 1,
            )
            .await?;
        let more = entries.len() > usize::try_from(PAGE).unwrap_or(100);
        let entries = &entries[..entries.len().min(usize::try_from(PAGE).unwrap_or(100))];
        let people = user_names(&state, entries.iter().map(|e| e.user).chain(by)).await?;
        let residents = resident_names(
            &state,
            entries.iter().filter_map(|e| e.resident).chain(resident),
        )
        .await?;
        let person = |u: &UserId| people.get(u).cloned().unwrap_or_else(|| short(&u.0));
        let named = |r: &ResidentId| residents.get(r).cloned().unwrap_or_else(|| short(&r.0));
        let lines = entries
            .iter()
            .map(|e| AccessLine {
                at: date_time(e.at),
                who: person(&e.user),
                who_href: format!("/web/access-log?user={}", e.user.0),
                action: a.action(e.action),
                resident: e.resident.as_ref().map(named).unwrap_or_default(),
                resident_href: e.resident.map(|r| format!("/web/residents/{}", r.0)),
                detail: e.detail.clone(),
            })
            .collect();
        let narrowed = match (resident, by) {
            (Some(r), _) => Some(a.about.replace("{name}", &named(&r))),
            (None, Some(u)) => Some(a.by.replace("{name}", &person(&u))),
            (None, None) => None,
        };
        let next = more.then(|| {
            let last = entries.last().map_or(0, |e| e.seq);
            let mut link = format!("/web/access-log?before={last}");
            if let Some(r) = resident {
                link.push_str(&format!("&resident={}", r.0));
            }
            if let Some(u) = by {
                link.push_str(&format!("&user={}", u.0));
            }
            link
        });
        render(&AccessPage {
            c: user.chrome(lang, "/web/access-log"),
            a,
            narrowed,
            lines,
            next,
        })
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// The names of residents, from their rows (a resident whose rows are gone keeps its
/// short id).
async fn resident_names(
    state: &AppState,
    ids: impl IntoIterator<Item = ResidentId>,
) -> Result<HashMap<ResidentId, String>> {
    let ids = ids.into_iter().map(|r| r.0).collect();
    names_by_id(
        state,
        "SELECT id, name FROM resident_rows WHERE id IN ",
        ids,
    )
    .await
    .map(|names| names.into_iter().map(|(r, n)| (ResidentId(r), n)).collect())
}
