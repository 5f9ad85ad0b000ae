//! The visit log's exports: CSV (UTF-8 with a byte-order mark, which Excel in China
//! needs to read it as UTF-8) and XLSX, of every visit the log's filters select (all
//! pages, newest first), one row per visit, headers in the page's language. Above
//! [`LIMIT`] visits the export is refused with a message asking for narrower filters,
//! rather than cut short without saying.

use super::WebError;
use super::i18n::Lang;
use super::scope::{Bind, Sql, fetch};
use super::session::WebUser;
use super::stats::{catalog_names, pick};
use super::text::{SHANGHAI, date_time, short};
use super::visits::{ALLIANCE_OF_VISIT, Filters, push_filters, uuid_of};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::identity::User;
use axum::extract::{Query, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

/// The most visits one export holds.
pub(crate) const LIMIT: usize = 100_000;

/// One visit as selected.
type ExportRow = (
    Vec<u8>,         // resident
    Vec<u8>,         // visit
    i64,             // started_at
    i64,             // duration_minutes
    String,          // review_status
    String,          // notes
    Vec<u8>,         // project
    Option<Vec<u8>>, // unit
    Option<Vec<u8>>, // alliance
    String,          // resident's name
    Option<String>,  // station's name
    Option<String>,  // volunteer's name
    Vec<u8>,         // station
    Vec<u8>,         // volunteer
);

/// A hazard of a visit: resident, visit, type, severity, fixed on the spot.
type HazardRow = (Vec<u8>, Vec<u8>, Vec<u8>, String, bool);

/// The table: headers, then one row of cells per visit.
#[derive(Debug)]
pub(crate) struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

/// A cell: text, or a whole number (the duration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Text(String),
    Int(i64),
}

/// Every visit `filters` select for `user`, as a table in `lang`.
pub(crate) async fn table(
    state: &AppState,
    user: &User,
    filters: &Filters,
    lang: Lang,
) -> Result<Table> {
    let (t, s) = (lang.msgs(), lang.stats());
    let mut filters = filters.clone();
    filters.after = String::new();
    let mut q = Sql::new(
        "SELECT v.resident, v.id, v.started_at, v.duration_minutes, v.review_status, v.notes, \
         v.project, v.unit, ",
    );
    q.push(ALLIANCE_OF_VISIT).push(
        ", r.name, s.name, u.display_name, v.station, v.volunteer \
         FROM visit_rows v \
         JOIN resident_rows r ON r.id = v.resident \
         LEFT JOIN stations s ON s.id = v.station \
         LEFT JOIN users u ON u.id = v.volunteer \
         WHERE ",
    );
    push_filters(&mut q, user, &filters)?;
    q.push(" ORDER BY v.started_at DESC, v.resident DESC, v.id DESC LIMIT ")
        .bind(Bind::Int(i64::try_from(LIMIT + 1).unwrap_or(i64::MAX)));
    let rows: Vec<ExportRow> = fetch!(&state.store, q, ExportRow, fetch_all)?;
    if rows.len() > LIMIT {
        return Err(Error::bad_request("export_too_large", s.export_too_large));
    }

    let names = catalog_names(state, user).await?;
    let name = |id: &Uuid| {
        names
            .get(id)
            .map(|n| pick(n, lang))
            .unwrap_or_else(|| short(id))
    };
    let separator = if lang == Lang::Zh { "、" } else { ", " };

    // Services and hazards of the same visits, selected by the same conditions.
    // Joined from the selected visits, so the filters' indexes drive the query.
    let mut q = Sql::new(
        "SELECT xs.resident, xs.visit, xs.service_type FROM visit_rows v \
         JOIN visit_services xs ON xs.resident = v.resident AND xs.visit = v.id WHERE ",
    );
    push_filters(&mut q, user, &filters)?;
    q.push(" ORDER BY xs.resident, xs.visit, xs.position");
    let found: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> =
        fetch!(&state.store, q, (Vec<u8>, Vec<u8>, Vec<u8>), fetch_all)?;
    let mut services: HashMap<(Vec<u8>, Vec<u8>), Vec<String>> = HashMap::new();
    for (r, v, service) in found {
        services
            .entry((r, v))
            .or_default()
            .push(name(&uuid_of(&service)));
    }
    let mut q = Sql::new(
        "SELECT xh.resident, xh.visit, xh.hazard_type, xh.severity, xh.fixed_on_spot \
         FROM visit_rows v JOIN visit_hazards xh ON xh.resident = v.resident AND xh.visit = v.id \
         WHERE ",
    );
    push_filters(&mut q, user, &filters)?;
    q.push(" ORDER BY xh.resident, xh.visit, xh.position");
    let found: Vec<HazardRow> = fetch!(&state.store, q, HazardRow, fetch_all)?;
    let mut hazards: HashMap<(Vec<u8>, Vec<u8>), Vec<String>> = HashMap::new();
    for (r, v, hazard, severity, fixed) in found {
        hazards.entry((r, v)).or_default().push(format!(
            "{} ({}, {})",
            name(&uuid_of(&hazard)),
            t.severity(&severity),
            if fixed { t.fixed_on_spot } else { t.not_fixed }
        ));
    }

    let rows = rows
        .into_iter()
        .map(|r| {
            let key = (r.0.clone(), r.1.clone());
            vec![
                Cell::Text(date_time(r.2)),
                Cell::Text(r.9),
                Cell::Text(r.10.unwrap_or_else(|| short(&uuid_of(&r.12)))),
                Cell::Text(r.11.unwrap_or_else(|| short(&uuid_of(&r.13)))),
                Cell::Text(name(&uuid_of(&r.6))),
                Cell::Text(r.7.map(|u| name(&uuid_of(&u))).unwrap_or_default()),
                Cell::Text(r.8.map(|a| name(&uuid_of(&a))).unwrap_or_default()),
                Cell::Text(
                    services
                        .remove(&key)
                        .map(|s| s.join(separator))
                        .unwrap_or_default(),
                ),
                Cell::Text(
                    hazards
                        .remove(&key)
                        .map(|h| h.join(separator))
                        .unwrap_or_default(),
                ),
                Cell::Int(r.3),
                Cell::Text(t.review_status(&r.4).to_owned()),
                Cell::Text(r.5),
                Cell::Text(uuid_of(&r.1).to_string()),
            ]
        })
        .collect();
    Ok(Table {
        headers: vec![
            s.col_date,
            t.resident,
            t.station,
            t.volunteer,
            t.project,
            t.unit,
            t.alliance,
            t.services,
            t.hazards,
            s.col_duration,
            t.review,
            t.notes,
            s.col_visit_id,
        ],
        rows,
    })
}

/// A text cell that a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, or a
/// tab or carriage return first), made inert with a leading apostrophe: CSV files are
/// opened by Excel, and names and notes are typed by volunteers.
pub(crate) fn inert(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

/// The table as CSV: a byte-order mark, then RFC 4180 rows.
pub(crate) fn csv_bytes(table: &Table) -> Result<Vec<u8>> {
    let failed = |e: csv::Error| Error::Internal(format!("writing CSV: {e}"));
    let mut out = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    out.write_record(&table.headers).map_err(failed)?;
    for row in &table.rows {
        out.write_record(row.iter().map(|c| match c {
            Cell::Text(t) => inert(t).into_owned(),
            Cell::Int(n) => n.to_string(),
        }))
        .map_err(failed)?;
    }
    out.into_inner()
        .map_err(|e| Error::Internal(format!("writing CSV: {e}")))
}

/// The table as an XLSX workbook: strings are written as strings (never formulas), the
/// duration as a number.
pub(crate) fn xlsx_bytes(table: &Table, sheet: &str) -> Result<Vec<u8>> {
    use rust_xlsxwriter::{Format, Workbook};
    let failed = |e: rust_xlsxwriter::XlsxError| Error::Internal(format!("writing XLSX: {e}"));
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name(sheet).map_err(failed)?;
    let bold = Format::new().set_bold();
    for (col, h) in (0_u16..).zip(&table.headers) {
        ws.write_string_with_format(0, col, *h, &bold)
            .map_err(failed)?;
    }
    for (row, cells) in (1_u32..).zip(&table.rows) {
        for (col, cell) in (0_u16..).zip(cells) {
            match cell {
                Cell::Text(t) => ws.write_string(row, col, t).map(|_| ()),
                // Durations are minutes: far below 2^53, exact as a float.
                Cell::Int(n) => ws
                    .write_number(row, col, i32::try_from(*n).map_or(f64::NAN, f64::from))
                    .map(|_| ()),
            }
            .map_err(failed)?;
        }
    }
    ws.set_freeze_panes(1, 0).map_err(failed)?;
    ws.set_column_width(0, 17).map_err(failed)?;
    ws.set_column_width(12, 38).map_err(failed)?;
    book.save_to_buffer().map_err(failed)
}

/// `linli-visits-2026-03-05.csv`: today's date in Shanghai.
fn file_name(extension: &str) -> String {
    let today = OffsetDateTime::now_utc()
        .to_offset(SHANGHAI)
        .date()
        .format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default();
    format!("linli-visits-{today}.{extension}")
}

fn attachment(content_type: &'static str, extension: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", file_name(extension)),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /web/visits/export.csv`.
pub(crate) async fn csv(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    RawQuery(raw): RawQuery,
    Query(filters): Query<Filters>,
) -> Result<Response, WebError> {
    let table = table(&state, &user.user, &filters, lang)
        .await
        .map_err(|e| WebError::new(lang, e))?;
    logged(&state, &user, "csv", raw, &table)
        .await
        .map_err(|e| WebError::new(lang, e))?;
    let body = csv_bytes(&table).map_err(|e| WebError::new(lang, e))?;
    Ok(attachment("text/csv; charset=utf-8", "csv", body))
}

/// Records the export in the access log (its format, size and filters) before it is
/// served.
async fn logged(
    state: &AppState,
    user: &WebUser,
    format: &str,
    filters: Option<String>,
    table: &Table,
) -> Result<()> {
    let detail = format!(
        "{format}, {} visits{}",
        table.rows.len(),
        filters
            .filter(|f| !f.is_empty())
            .map(|f| format!(", {f}"))
            .unwrap_or_default()
    );
    super::access::record(
        state,
        &user.user,
        crate::store::access::AccessAction::ExportVisits,
        None,
        &detail,
    )
    .await
}

/// `GET /web/visits/export.xlsx`.
pub(crate) async fn xlsx(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    RawQuery(raw): RawQuery,
    Query(filters): Query<Filters>,
) -> Result<Response, WebError> {
    let table = table(&state, &user.user, &filters, lang)
        .await
        .map_err(|e| WebError::new(lang, e))?;
    logged(&state, &user, "xlsx", raw, &table)
        .await
        .map_err(|e| WebError::new(lang, e))?;
    let sheet = lang.msgs().visits_title;
    let body = xlsx_bytes(&table, sheet).map_err(|e| WebError::new(lang, e))?;
    Ok(attachment(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_made_inert() {
        assert_eq!(inert("=1+1"), "'=1+1");
        assert_eq!(inert("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(inert("-3"), "'-3");
        assert_eq!(inert("王阿婆"), "王阿婆");
        assert_eq!(inert(""), "");
    }

    #[test]
    fn csv_has_a_bom_and_quotes() {
        let table = Table {
            headers: vec!["a", "b"],
            rows: vec![vec![Cell::Text("x, \"y\"\nz".into()), Cell::Int(7)]],
        };
        let bytes = csv_bytes(&table).unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
        assert_eq!(&bytes[3..], b"a,b\n\"x, \"\"y\"\"\nz\",7\n");
    }
}
