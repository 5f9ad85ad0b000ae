//! The visit log: every live visit in the user's scope, newest first, filtered and
//! paged with a keyset (start time, resident, visit), so a page is as quick at the end
//! of the log as at its start and rows never shift between pages.

use super::i18n::Lang;
use super::scope::{Bind, Sql, fetch};
use super::session::WebUser;
use super::templates::{Choice, Select, VisitLine, VisitsPage};
use super::text::{Names, date_time, day_start, short};
use super::{WebError, render};
use crate::error::{Error, Result};
use crate::http::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::Response;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use sync_core::model::ReviewStatus;
use uuid::Uuid;

/// Rows per page.
pub(crate) const PAGE: usize = 50;

/// The filters as the form sends them; empty means "any".
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub station: String,
    #[serde(default)]
    pub alliance: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub volunteer: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub hazards: String,
    #[serde(default)]
    pub review: String,
    /// The keyset cursor: the last row of the previous page.
    #[serde(default)]
    pub after: String,
}

fn uuid(field: &str, text: &str) -> Result<Option<Uuid>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(text)
        .map(Some)
        .map_err(|_| Error::bad_request("bad_filter", format!("{field}: {text:?} is not an id")))
}

/// Where a page ends: the last row's start, resident and visit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    started_at: i64,
    resident: Uuid,
    visit: Uuid,
}

impl Cursor {
    fn encode(&self) -> String {
        format!(
            "{}_{}_{}",
            self.started_at,
            self.resident.simple(),
            self.visit.simple()
        )
    }

    fn decode(text: &str) -> Result<Option<Cursor>> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let bad = || Error::bad_request("bad_cursor", "the page link is damaged; start again");
        let mut parts = text.trim().split('_');
        let (Some(t), Some(r), Some(v), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Some(Cursor {
            started_at: t.parse().map_err(|_| bad())?,
            resident: Uuid::parse_str(r).map_err(|_| bad())?,
            visit: Uuid::parse_str(v).map_err(|_| bad())?,
        }))
    }
}

/// One row of the log as selected.
pub(crate) type LogRow = (
    Vec<u8>,         // resident
    Vec<u8>,         // visit
    Vec<u8>,         // station
    Vec<u8>,         // volunteer
    Vec<u8>,         // project
    i64,             // started_at
    i64,             // duration_minutes
    String,          // wellbeing
    String,          // review_status
    i64,             // hazards_found
    bool,            // follow_up_needed
    String,          // resident's name
    Option<String>,  // station's name
    Option<String>,  // volunteer's name
    Option<Vec<u8>>, // unit
    String,          // notes
);

/// A hazard of a visit on the page: resident, visit, type, severity, fixed.
type HazardOnPage = (Vec<u8>, Vec<u8>, Vec<u8>, String, bool);

pub(crate) fn uuid_of(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}

/// A visit's alliance (NULL if none), for `v` a `visit_rows` row: the alliance of the
/// unit the volunteer served for or, for a visit recorded without a unit, of the
/// project it was under, as the district's catalog (`catalog_rows`) says.
pub(crate) const ALLIANCE_OF_VISIT: &str = "(SELECT c.parent FROM catalog_rows c \
     WHERE c.district = v.district \
     AND c.kind = CASE WHEN v.unit IS NULL THEN 'projects' ELSE 'units' END \
     AND c.id = COALESCE(v.unit, v.project))";

/// Appends to a `WHERE` clause over `visit_rows v` the user's scope, live visits only,
/// and every filter but the page cursor: what the log, the exports and the statistics
/// all select.
pub(crate) fn push_filters(
    q: &mut Sql,
    user: &crate::identity::User,
    filters: &Filters,
) -> Result<()> {
    q.scope(user, "v.district", "v.station")?;
    q.push(" AND NOT v.tombstoned");
    if !filters.from.trim().is_empty() {
        q.push(" AND v.started_at >= ")
            .bind(Bind::Int(day_start(&filters.from)?));
    }
    if !filters.to.trim().is_empty() {
        // Through the end of the day named.
        q.push(" AND v.started_at < ")
            .bind(Bind::Int(day_start(&filters.to)? + 86_400_000));
    }
    if let Some(s) = uuid("station", &filters.station)? {
        q.push(" AND v.station = ").bind(Bind::id(&s));
    }
    // The statistics group by the same expression, so their figures drill down
    // exactly; "none" selects the visits of no alliance, or without a unit.
    match filters.alliance.trim() {
        "none" => {
            q.push(" AND ").push(ALLIANCE_OF_VISIT).push(" IS NULL");
        }
        text => {
            if let Some(a) = uuid("alliance", text)? {
                q.push(" AND ")
                    .push(ALLIANCE_OF_VISIT)
                    .push(" = ")
                    .bind(Bind::id(&a));
            }
        }
    }
    if filters.unit.trim() == "none" {
        q.push(" AND v.unit IS NULL");
    } else if let Some(u) = uuid("unit", &filters.unit)? {
        q.push(" AND v.unit = ").bind(Bind::id(&u));
    }
    if let Some(p) = uuid("project", &filters.project)? {
        q.push(" AND v.project = ").bind(Bind::id(&p));
    }
    if let Some(v) = uuid("volunteer", &filters.volunteer)? {
        q.push(" AND v.volunteer = ").bind(Bind::id(&v));
    }
    if let Some(s) = uuid("service", &filters.service)? {
        q.push(
            " AND EXISTS (SELECT 1 FROM visit_services vs WHERE vs.resident = v.resident \
             AND vs.visit = v.id AND vs.service_type = ",
        )
        .bind(Bind::id(&s))
        .push(")");
    }
    match filters.hazards.trim() {
        "" => {}
        "yes" => {
            q.push(" AND v.hazards_found > 0");
        }
        "no" => {
            q.push(" AND v.hazards_found = 0");
        }
        other => {
            return Err(Error::bad_request(
                "bad_filter",
                format!("hazards: {other:?} is neither yes nor no"),
            ));
        }
    }
    if !filters.review.trim().is_empty() {
        let status = ReviewStatus::from_code(filters.review.trim()).ok_or_else(|| {
            Error::bad_request(
                "bad_filter",
                format!("review: unknown status {:?}", filters.review),
            )
        })?;
        q.push(" AND v.review_status = ")
            .bind(Bind::Text(status.code().to_owned()));
    }
    Ok(())
}

/// The query for one page of the log: the scope first, then each filter, then the
/// keyset; at most `limit` rows.
pub(crate) fn log_query(
    user: &crate::identity::User,
    filters: &Filters,
    limit: usize,
) -> Result<Sql> {
    let mut q = Sql::new(
        "SELECT v.resident, v.id, v.station, v.volunteer, v.project, v.started_at, \
         v.duration_minutes, v.wellbeing, v.review_status, v.hazards_found, v.follow_up_needed, r.name, s.name, u.display_name, v.unit, v.notes \
         FROM visit_rows v \
         CROSS JOIN resident_rows r \
         LEFT JOIN stations s ON s.id = v.station \
         LEFT JOIN users u ON u.id = v.volunteer \
         WHERE r.id = v.resident AND ",
    );
    // CROSS JOIN keeps visit_rows the outer loop on SQLite (PostgreSQL plans it as any
    // inner join): walking the (district|station, started_at) index newest first stops
    // after a page, where starting from the residents would sort every visit.
    push_filters(&mut q, user, filters)?;
    let cursor = Cursor::decode(&filters.after)?;
    // A bound on the start time on every page, the first too, so SQLite plans every
    // page alike: down the (district|station, started_at, resident, id) index from the
    // bound, stopping after a page (migration 0004; `BENCHMARKS.md`).
    q.push(" AND v.started_at <= ").bind(Bind::Int(
        cursor.as_ref().map_or(i64::MAX, |c| c.started_at),
    ));
    if let Some(c) = cursor {
        q.push(" AND (v.started_at, v.resident, v.id) < (")
            .bind(Bind::Int(c.started_at))
            .push(", ")
            .bind(Bind::id(&c.resident))
            .push(", ")
            .bind(Bind::id(&c.visit))
            .push(")");
    }
    q.push(" ORDER BY v.started_at DESC, v.resident DESC, v.id DESC LIMIT ");
    q.bind(Bind::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    Ok(q)
}

/// `GET /web/visits`.
pub(crate) async fn log(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    uri: Uri,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(filters) = filters.map_err(|e| super::unreadable(lang, e))?;
    page(&state, lang, &user, &uri, &filters)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn page(
    state: &AppState,
    lang: Lang,
    user: &WebUser,
    uri: &Uri,
    filters: &Filters,
) -> Result<Response> {
    let t = lang.msgs();
    let names = Names::of(&state.store, user.user.district).await?;
    let mut rows: Vec<LogRow> = fetch!(
        &state.store,
        log_query(&user.user, filters, PAGE + 1)?,
        LogRow,
        fetch_all
    )?;
    let more = rows.len() > PAGE;
    rows.truncate(PAGE);

    let (mut services, mut hazards) = details(state, &rows, &names, lang).await?;

    let separator = if lang == Lang::Zh { "、" } else { ", " };
    let next = if more {
        rows.last().map(|r| {
            let cursor = Cursor {
                started_at: r.5,
                resident: uuid_of(&r.0),
                visit: uuid_of(&r.1),
            };
            link(&Filters {
                after: cursor.encode(),
                ..filters.clone()
            })
        })
    } else {
        None
    };
    // Residents on this page whose profile holds unresolved conflicting values.
    let conflicted: std::collections::HashSet<Vec<u8>> = if rows.is_empty() {
        Default::default()
    } else {
        let mut q = Sql::new("SELECT id FROM resident_rows WHERE profile_conflicts > 0 AND id IN ");
        q.bind_list(rows.iter().map(|r| Bind::Bytes(r.0.clone())));
        fetch!(&state.store, q, (Vec<u8>,), fetch_all)?
            .into_iter()
            .map(|(id,)| id)
            .collect()
    };
    let lines = rows
        .into_iter()
        .map(|r| {
            let key = (r.0.clone(), r.1.clone());
            let (resident, visit) = (uuid_of(&r.0), uuid_of(&r.1));
            VisitLine {
                conflict: conflicted.contains(&r.0),
                href: format!("/web/residents/{resident}#visit-{visit}"),
                resident: r.11,
                when: date_time(r.5),
                station: r.12.unwrap_or_else(|| short(&uuid_of(&r.2))),
                volunteer: r.13.unwrap_or_else(|| short(&uuid_of(&r.3))),
                project: names.name(&uuid_of(&r.4), lang),
                minutes: r.6,
                wellbeing: t.wellbeing(&r.7),
                review_code: ReviewStatus::from_code(&r.8)
                    .unwrap_or(ReviewStatus::Pending)
                    .code(),
                review: t.review_status(&r.8),
                hazards: hazards
                    .remove(&key)
                    .map(|h| h.join(separator))
                    .unwrap_or_default(),
                hazards_found: r.9,
                services: services
                    .remove(&key)
                    .map(|s| s.join(separator))
                    .unwrap_or_default(),
                follow_up: r.10,
            }
        })
        .collect();

    let selects = selects(state, user, filters, &names, lang).await?;
    let here = uri
        .path_and_query()
        .map_or("/web/visits", |p| p.as_str())
        .to_owned();
    let page = VisitsPage {
        c: user.chrome(lang, &here),
        from: filters.from.trim().to_owned(),
        to: filters.to.trim().to_owned(),
        selects,
        lines,
        first: (!filters.after.trim().is_empty()).then(|| {
            link(&Filters {
                after: String::new(),
                ..filters.clone()
            })
        }),
        next,
        export_query: link(&Filters {
            after: String::new(),
            ..filters.clone()
        })
        .trim_start_matches("/web/visits")
        .to_owned(),
    };
    render(&page)
}

/// What a visit's services and hazards say, keyed by (resident, visit).
pub(crate) type Details = HashMap<(Vec<u8>, Vec<u8>), Vec<String>>;

/// The services and hazards of `rows`, named in `lang`, read by resident and visit
/// (the tables' primary keys), a few hundred visits per query.
pub(crate) async fn details(
    state: &AppState,
    rows: &[LogRow],
    names: &Names,
    lang: Lang,
) -> Result<(Details, Details)> {
    let t = lang.msgs();
    let mut services = Details::new();
    let mut hazards = Details::new();
    for chunk in rows.chunks(400) {
        let residents: Vec<Bind> = chunk
            .iter()
            .map(|r| r.0.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(Bind::Bytes)
            .collect();
        let keys: Vec<Bind> = chunk.iter().map(|r| Bind::Bytes(r.1.clone())).collect();
        let mut q =
            Sql::new("SELECT resident, visit, service_type FROM visit_services WHERE resident IN ");
        q.bind_list(residents.clone())
            .push(" AND visit IN ")
            .bind_list(keys.clone())
            .push(" ORDER BY position");
        let found: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> =
            fetch!(&state.store, q, (Vec<u8>, Vec<u8>, Vec<u8>), fetch_all)?;
        for (r, v, s) in found {
            services
                .entry((r, v))
                .or_default()
                .push(names.name(&uuid_of(&s), lang));
        }
        let mut q = Sql::new(
            "SELECT resident, visit, hazard_type, severity, fixed_on_spot FROM visit_hazards \
             WHERE resident IN ",
        );
        q.bind_list(residents)
            .push(" AND visit IN ")
            .bind_list(keys)
            .push(" ORDER BY position");
        let found: Vec<HazardOnPage> = fetch!(&state.store, q, HazardOnPage, fetch_all)?;
        for (r, v, h, severity, fixed) in found {
            hazards.entry((r, v)).or_default().push(format!(
                "{} ({}, {})",
                names.name(&uuid_of(&h), lang),
                t.severity(&severity),
                if fixed { t.fixed_on_spot } else { t.not_fixed }
            ));
        }
    }
    Ok((services, hazards))
}

/// The log's URL for `filters`, leaving out the empty ones.
pub(crate) fn link(f: &Filters) -> String {
    let pairs: Vec<(&str, &str)> = [
        ("from", &f.from),
        ("to", &f.to),
        ("station", &f.station),
        ("alliance", &f.alliance),
        ("unit", &f.unit),
        ("project", &f.project),
        ("volunteer", &f.volunteer),
        ("service", &f.service),
        ("hazards", &f.hazards),
        ("review", &f.review),
        ("after", &f.after),
    ]
    .into_iter()
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| (k, v.trim()))
    .collect();
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    if query.is_empty() {
        "/web/visits".into()
    } else {
        format!("/web/visits?{query}")
    }
}

fn choices(options: Vec<(String, String)>, selected: &str) -> Vec<Choice> {
    options
        .into_iter()
        .map(|(value, label)| Choice {
            selected: value == selected.trim(),
            value,
            label,
        })
        .collect()
}

/// The filter menus. Stations and volunteers come from the scope, so a menu never
/// names what the user may not see.
pub(crate) async fn selects(
    state: &AppState,
    user: &WebUser,
    f: &Filters,
    names: &Names,
    lang: Lang,
) -> Result<Vec<Select>> {
    let t = lang.msgs();
    let mut q = Sql::new("SELECT s.id, s.name FROM stations s WHERE ");
    q.scope(&user.user, "s.district", "s.id")?
        .push(" ORDER BY s.name");
    let stations: Vec<(Vec<u8>, String)> = fetch!(&state.store, q, (Vec<u8>, String), fetch_all)?;
    // Each volunteer probes their own visits (the `(volunteer, started_at)` index) for
    // one in scope, rather than a scan of every visit in scope for their ids.
    let mut q = Sql::new(
        "SELECT u.id, u.display_name FROM users u WHERE u.role = 'volunteer' AND EXISTS \
         (SELECT 1 FROM visit_rows v WHERE v.volunteer = u.id AND ",
    );
    q.scope(&user.user, "v.district", "v.station")?
        .push(") ORDER BY u.display_name");
    let volunteers: Vec<(Vec<u8>, String)> = fetch!(&state.store, q, (Vec<u8>, String), fetch_all)?;
    let ids = |rows: Vec<(Vec<u8>, String)>| {
        rows.into_iter()
            .map(|(id, name)| (uuid_of(&id).to_string(), name))
            .collect::<Vec<_>>()
    };
    let c = &names.catalog;
    // "none": the visits of no alliance, or without a unit (the statistics link them).
    let s = lang.stats();
    let none_first = |mut options: Vec<(String, String)>, label: &str| {
        options.insert(0, ("none".to_owned(), label.to_owned()));
        options
    };
    let reviews = ReviewStatus::ALL
        .iter()
        .map(|s| (s.code().to_owned(), t.review_status(s.code()).to_owned()))
        .collect();
    let hazards = vec![
        ("yes".to_owned(), t.hazards_yes.to_owned()),
        ("no".to_owned(), t.hazards_no.to_owned()),
    ];
    Ok(vec![
        Select::new("station", t.station, choices(ids(stations), &f.station)),
        Select::new(
            "alliance",
            t.alliance,
            choices(
                none_first(names.options(&c.alliances, |i| i.0, lang), s.no_alliance),
                &f.alliance,
            ),
        ),
        Select::new(
            "unit",
            t.unit,
            choices(
                none_first(names.options(&c.units, |i| i.0, lang), s.no_unit),
                &f.unit,
            ),
        ),
        Select::new(
            "project",
            t.project,
            choices(names.options(&c.projects, |i| i.0, lang), &f.project),
        ),
        Select::new(
            "volunteer",
            t.volunteer,
            choices(ids(volunteers), &f.volunteer),
        ),
        Select::new(
            "service",
            t.service,
            choices(names.options(&c.service_types, |i| i.0, lang), &f.service),
        ),
        Select::new("hazards", t.hazards, choices(hazards, &f.hazards)),
        Select::new("review", t.review, choices(reviews, &f.review)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_damaged_ones_are_refused() {
        let c = Cursor {
            started_at: 1_772_640_000_000,
            resident: Uuid::from_u128(7),
            visit: Uuid::from_u128(9),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), Some(c));
        assert_eq!(Cursor::decode("").unwrap(), None);
        for bad in [
            "1_2",
            "x_00000000000000000000000000000007_00000000000000000000000000000009",
            "1_a_b_c",
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_keep_only_the_filters_set() {
        assert_eq!(link(&Filters::default()), "/web/visits");
        let f = Filters {
            review: "pending".into(),
            from: "2026-03-01".into(),
            ..Filters::default()
        };
        assert_eq!(link(&f), "/web/visits?from=2026-03-01&review=pending");
    }
}
