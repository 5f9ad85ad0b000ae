//! Exports of the visit log: every visit the filters select within the user's scope
//! (the same query as the page, without its page size), as CSV (UTF-8 with a BOM, so
//! Excel on a Chinese Windows reads it) or as an Excel workbook. Headers follow the
//! page's language. Text a spreadsheet would take for a formula is defused.

use super::i18n::Lang;
use super::scope::fetch;
use super::session::WebUser;
use super::text::{Names, date_time};
use super::visits::{Filters, LogRow, details, log_query, uuid_of};
use super::{WebError, unreadable};
use crate::error::{Error, Result};
use crate::http::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The most visits one export holds; narrow the filters (a period) for more.
pub(crate) const MAX_ROWS: usize = 100_000;

/// A text cell as a spreadsheet should show it: never as a formula.
fn defused(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

/// One exported visit: text cells and the duration.
struct Line {
    cells: Vec<String>,
    minutes: i64,
}

/// The header, and the visits as lines, in the log's order.
async fn lines(
    state: &AppState,
    user: &WebUser,
    lang: Lang,
    filters: &Filters,
) -> Result<(Vec<&'static str>, Vec<Line>)> {
    let t = lang.msgs();
    let names = Names::of(&state.store, user.user.district).await?;
    let filters = Filters {
        after: String::new(),
        ..filters.clone()
    };
    let rows: Vec<LogRow> = fetch!(
        &state.store,
        log_query(&user.user, &filters, &names, MAX_ROWS + 1)?,
        LogRow,
        fetch_all
    )?;
    if rows.len() > MAX_ROWS {
        return Err(Error::bad_request(
            "too_many",
            format!("more than {MAX_ROWS} visits match; choose a shorter period"),
        ));
    }
    let (mut services, mut hazards) = details(state, &rows, &names, lang).await?;
    let separator = if lang == Lang::Zh { "、" } else { ", " };
    let header = vec![
        t.when,
        t.resident,
        t.station,
        t.volunteer,
        t.project,
        t.unit,
        t.duration,
        t.wellbeing,
        t.services,
        t.hazards,
        t.review,
        t.follow_up,
        t.notes,
    ];
    let lines = rows
        .into_iter()
        .map(|r| {
            let key = (r.0.clone(), r.1.clone());
            let cells = vec![
                date_time(r.5),
                r.11,
                r.12.unwrap_or_default(),
                r.13.unwrap_or_default(),
                names.name(&uuid_of(&r.4), lang),
                r.14.map(|u| names.name(&uuid_of(&u), lang))
                    .unwrap_or_default(),
                t.wellbeing(&r.7).to_owned(),
                services
                    .remove(&key)
                    .map(|s| s.join(separator))
                    .unwrap_or_default(),
                hazards
                    .remove(&key)
                    .map(|h| h.join(separator))
                    .unwrap_or_default(),
                t.review_status(&r.8).to_owned(),
                if r.10 {
                    t.follow_up.to_owned()
                } else {
                    String::new()
                },
                r.15,
            ];
            Line {
                cells: cells.iter().map(|c| defused(c)).collect(),
                minutes: r.6,
            }
        })
        .collect();
    Ok((header, lines))
}

/// The duration sits seventh; the other cells are text.
const MINUTES_AT: usize = 6;

fn download(content_type: &'static str, name: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response()
}

/// `GET /web/visits/export.csv?…filters`.
pub(crate) async fn csv(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(filters) = filters.map_err(|e| unreadable(lang, e))?;
    async {
        let (header, lines) = lines(&state, &user, lang, &filters).await?;
        let mut out = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
        let broken = |e: csv::Error| Error::Internal(format!("writing CSV: {e}"));
        out.write_record(&header).map_err(broken)?;
        for line in lines {
            let mut record = line.cells;
            record.insert(MINUTES_AT, line.minutes.to_string());
            out.write_record(&record).map_err(broken)?;
        }
        let body = out
            .into_inner()
            .map_err(|e| Error::Internal(format!("writing CSV: {e}")))?;
        Ok(download(
            "text/csv; charset=utf-8",
            "attachment; filename=\"linli-visits.csv\"",
            body,
        ))
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// `GET /web/visits/export.xlsx?…filters`.
pub(crate) async fn xlsx(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(filters) = filters.map_err(|e| unreadable(lang, e))?;
    async {
        let (header, lines) = lines(&state, &user, lang, &filters).await?;
        let broken = |e: rust_xlsxwriter::XlsxError| Error::Internal(format!("writing XLSX: {e}"));
        let mut book = rust_xlsxwriter::Workbook::new();
        let bold = rust_xlsxwriter::Format::new().set_bold();
        let sheet = book.add_worksheet();
        sheet.set_name(lang.msgs().visits_title).map_err(broken)?;
        for (col, title) in (0u16..).zip(&header) {
            sheet
                .write_string_with_format(0, col, *title, &bold)
                .map_err(broken)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(broken)?;
        for (row, line) in (1u32..).zip(&lines) {
            let mut col = 0u16;
            for (i, cell) in line.cells.iter().enumerate() {
                if i == MINUTES_AT {
                    sheet
                        .write_number(row, col, line.minutes as f64)
                        .map_err(broken)?;
                    col += 1;
                }
                // Strings stay strings in a workbook: no formula is ever written.
                sheet.write_string(row, col, cell).map_err(broken)?;
                col += 1;
            }
        }
        let body = book.save_to_buffer().map_err(broken)?;
        Ok(download(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "attachment; filename=\"linli-visits.xlsx\"",
            body,
        ))
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        assert_eq!(
            defused("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(defused("+1"), "'+1");
        assert_eq!(defused("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defused("读报聊天"), "读报聊天");
        assert_eq!(defused(""), "");
    }
}
