//! The statistics page: what the organisers count (beneficiary-visits, services,
//! residents served, volunteer participations and hours, hazards) for a period, under
//! the visit log's filters and the user's scope, broken down by alliance, unit,
//! project, station or month.
//!
//! The figures are counted over exactly the rows the visit log selects
//! ([`push_filters`]: scope first, then the filters), and each row of figures links to
//! the log with the same filters plus the row's key, so a figure and the visits behind
//! it can never disagree. Definitions:
//!
//! - visits (人次): live visit records (not tombstoned);
//! - services: the service entries of those visits (a visit with three services
//!   counts three, whatever the service filter);
//! - residents: distinct residents among those visits;
//! - participations: distinct (volunteer, Shanghai calendar day) pairs: a volunteer
//!   visiting three residents on one day participated once that day;
//! - volunteers: distinct volunteers; hours: the visits' whole minutes added up;
//! - hazards found, and of those fixed on the spot.

use super::i18n::Lang;
use super::scope::{Bind, Sql, fetch};
use super::session::WebUser;
use super::templates::{Choice, Select, StatsPage};
use super::text::{Names, SHANGHAI, day_start};
use super::visits::{Filters, link, push_filters, selects, uuid_of};
use super::{WebError, render};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::identity::User;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::Response;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use sync_core::model::Role;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, Time};
use uuid::Uuid;

/// Monthly figures cover at most this many months (one line and bar each).
const MAX_MONTHS: usize = 240;

/// What the figures are broken down by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Dimension {
    #[default]
    Alliance,
    Unit,
    Project,
    Station,
    Month,
}

impl Dimension {
    const ALL: [Dimension; 5] = [
        Dimension::Alliance,
        Dimension::Unit,
        Dimension::Project,
        Dimension::Station,
        Dimension::Month,
    ];

    fn code(self) -> &'static str {
        match self {
            Dimension::Alliance => "alliance",
            Dimension::Unit => "unit",
            Dimension::Project => "project",
            Dimension::Station => "station",
            Dimension::Month => "month",
        }
    }

    fn from_code(code: &str) -> Result<Dimension> {
        match code.trim() {
            "" => Ok(Dimension::default()),
            code => Dimension::ALL
                .into_iter()
                .find(|d| d.code() == code)
                .ok_or_else(|| {
                    Error::bad_request("bad_filter", format!("by: unknown grouping {code:?}"))
                }),
        }
    }
}

/// The page's own parameters besides the visit log's filters. `from` and `to` absent
/// (not empty) mean the current month.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StatsQuery {
    #[serde(default)]
    by: String,
    from: Option<String>,
    to: Option<String>,
}

/// The figures of one group (or of all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    pub visits: i64,
    pub services: i64,
    pub residents: i64,
    pub participations: i64,
    pub volunteers: i64,
    pub minutes: i64,
    pub hazards_found: i64,
    pub hazards_fixed: i64,
}

impl Figures {
    /// Hours to a tenth, rounded half up: `12.5`.
    pub fn hours(&self) -> String {
        let tenths = (self.minutes * 10 + 30) / 60;
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// One calendar month (Shanghai) of the period.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MonthSpan {
    /// `2026-03`.
    key: String,
    start_ms: i64,
    end_ms: i64,
    /// The month's days within the period, for the drill-down link.
    from: Date,
    to: Date,
}

fn ymd(d: Date) -> String {
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

fn parse_day(text: &str) -> Result<Date> {
    Date::parse(text.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| Error::bad_request("bad_date", format!("{text:?} is not a date")))
}

fn ms_of(d: Date) -> i64 {
    let t = d.with_time(Time::MIDNIGHT).assume_offset(SHANGHAI);
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn date_of(ms: i64) -> Date {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.to_offset(SHANGHAI).date())
        .unwrap_or(Date::MIN)
}

fn first_of_month(d: Date) -> Date {
    d.replace_day(1).unwrap_or(d)
}

fn next_month(d: Date) -> Option<Date> {
    let (year, month) = match d.month() {
        Month::December => (d.year() + 1, Month::January),
        m => (d.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).ok()
}

/// The months from `first`'s through `last`'s, each clipped to [first, last].
fn months(first: Date, last: Date) -> Result<Vec<MonthSpan>> {
    let mut out = Vec::new();
    let mut start = first_of_month(first);
    while start <= last {
        if out.len() >= MAX_MONTHS {
            return Err(Error::bad_request(
                "too_many_months",
                "monthly figures cover at most 240 months",
            ));
        }
        let Some(next) = next_month(start) else { break };
        let end = next.previous_day().unwrap_or(start);
        out.push(MonthSpan {
            key: start
                .format(format_description!("[year]-[month]"))
                .unwrap_or_default(),
            start_ms: ms_of(start),
            end_ms: ms_of(next),
            from: start.max(first),
            to: end.min(last),
        });
        start = next;
    }
    Ok(out)
}

/// The current month in Shanghai, as (first day, last day).
fn this_month() -> (Date, Date) {
    let today = OffsetDateTime::now_utc().to_offset(SHANGHAI).date();
    let first = first_of_month(today);
    let last = next_month(first)
        .and_then(|n| n.previous_day())
        .unwrap_or(today);
    (first, last)
}

/// The SQL for the group key of a visit `v` (a nullable id), for the breakdowns that
/// SQL keys; months are keyed in Rust from the visit's start. A visit's alliance is
/// `c.parent` of [`ALLIANCE_JOIN`].
fn sql_key(by: Dimension) -> &'static str {
    match by {
        Dimension::Station => "v.station",
        Dimension::Unit => "v.unit",
        Dimension::Project => "v.project",
        Dimension::Alliance => "c.parent",
        Dimension::Month => "NULL",
    }
}

/// [`ALLIANCE_OF_VISIT`](super::visits::ALLIANCE_OF_VISIT) as a join: the catalog row of the visit's unit or, without
/// one, of its project (at most one: `(district, kind, id)` is the table's key), whose
/// parent is the alliance. The same value as the filter's scalar subquery, which
/// PostgreSQL runs once per visit; joined, it reads the small catalog once.
const ALLIANCE_JOIN: &str = " LEFT JOIN catalog_rows c ON c.district = v.district \
     AND c.kind = CASE WHEN v.unit IS NULL THEN 'projects' ELSE 'units' END \
     AND c.id = COALESCE(v.unit, v.project)";

/// One selected visit as the figures count it: group key, resident, volunteer,
/// minutes, hazards found and fixed, services, start.
type VisitRow = (Option<Vec<u8>>, Vec<u8>, Vec<u8>, i64, i64, i64, i64, i64);

/// The running count of one group: sums, and the sets behind the distinct counts.
#[derive(Debug, Default)]
struct Tally {
    sums: Figures,
    residents: HashSet<Uuid>,
    volunteers: HashSet<Uuid>,
    /// (volunteer, Shanghai day) pairs.
    participations: HashSet<(Uuid, i64)>,
}

impl Tally {
    fn add(&mut self, resident: Uuid, volunteer: Uuid, day: i64, row: &VisitRow) {
        self.sums.visits += 1;
        self.sums.minutes += row.3;
        self.sums.hazards_found += row.4;
        self.sums.hazards_fixed += row.5;
        self.sums.services += row.6;
        self.residents.insert(resident);
        self.volunteers.insert(volunteer);
        self.participations.insert((volunteer, day));
    }

    fn figures(self) -> Figures {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        Figures {
            residents: count(self.residents.len()),
            volunteers: count(self.volunteers.len()),
            participations: count(self.participations.len()),
            ..self.sums
        }
    }
}

/// The figures per group key (an id, or a month's `YYYY-MM`; `None` for visits of no
/// alliance or unit) and the totals, counted in one pass over the rows the visit log
/// would list. One query that reads each selected visit once, instead of an aggregate
/// query per figure and per grouping: the distinct counts (residents, volunteers,
/// participations) need the rows anyway, and a month holds a few thousand visits.
async fn figures(
    state: &AppState,
    user: &User,
    filters: &Filters,
    by: Dimension,
    months: &[MonthSpan],
) -> Result<(HashMap<Option<Vec<u8>>, Figures>, Figures)> {
    let mut q = Sql::new("SELECT ");
    q.push(sql_key(by)).push(
        " AS k, v.resident, v.volunteer, v.duration_minutes, v.hazards_found, \
         v.hazards_fixed, (SELECT COUNT(*) FROM visit_services vs WHERE vs.resident = \
         v.resident AND vs.visit = v.id), v.started_at FROM visit_rows v",
    );
    if by == Dimension::Alliance {
        q.push(ALLIANCE_JOIN);
    }
    q.push(" WHERE ");
    push_filters(&mut q, user, filters)?;
    let rows: Vec<VisitRow> = fetch!(&state.store, q, VisitRow, fetch_all)?;

    let mut groups: HashMap<Option<Vec<u8>>, Tally> = HashMap::new();
    let mut totals = Tally::default();
    for row in &rows {
        let (resident, volunteer) = (uuid_of(&row.1), uuid_of(&row.2));
        let started_at = row.7;
        let day = (started_at + 28_800_000).div_euclid(86_400_000);
        totals.add(resident, volunteer, day, row);
        let key = match by {
            // The months are in order and contiguous.
            Dimension::Month => months
                .get(months.partition_point(|m| m.end_ms <= started_at))
                .filter(|m| m.start_ms <= started_at)
                .map(|m| m.key.as_bytes().to_vec()),
            _ => row.0.clone(),
        };
        groups
            .entry(key)
            .or_default()
            .add(resident, volunteer, day, row);
    }
    Ok((
        groups.into_iter().map(|(k, t)| (k, t.figures())).collect(),
        totals.figures(),
    ))
}

/// The names of the catalog entries the user may see, by id, in both languages.
pub(crate) async fn catalog_names(
    state: &AppState,
    user: &User,
) -> Result<HashMap<Uuid, (String, String)>> {
    let mut q = Sql::new("SELECT id, name, name_en FROM catalog_rows WHERE ");
    match (user.role, user.district) {
        (Role::Admin, _) => {
            q.push("1 = 1");
        }
        (_, Some(d)) => {
            q.push("district = ").bind(Bind::id(&d.0));
        }
        (_, None) => {
            q.push("1 = 0");
        }
    }
    let rows: Vec<(Vec<u8>, String, String)> =
        fetch!(&state.store, q, (Vec<u8>, String, String), fetch_all)?;
    Ok(rows
        .into_iter()
        .map(|(id, zh, en)| (uuid_of(&id), (zh, en)))
        .collect())
}

/// `zh` or `en` by the language, the other when empty.
pub(crate) fn pick(names: &(String, String), lang: Lang) -> String {
    let (first, second) = match lang {
        Lang::Zh => (&names.0, &names.1),
        Lang::En => (&names.1, &names.0),
    };
    if first.is_empty() {
        second.clone()
    } else {
        first.clone()
    }
}

/// A row of the figures table.
#[derive(Debug)]
pub(crate) struct GroupLine {
    pub label: String,
    pub href: String,
    pub f: Figures,
    pub hours: String,
}

/// The chart, drawn by plotters' SVG backend: an `<svg>` element to inline in the page.
/// Every label and value in it went through the backend's escaping of text and
/// attributes, so the template may print it unescaped.
#[derive(Debug, Default)]
pub(crate) struct ChartSvg(pub String);

/// The chart's width, left label area (16 CJK characters at 13 px), and each bar's
/// row, in pixels.
const CHART_WIDTH: u32 = 720;
const LABEL_AREA: u32 = 220;
const BAR_STEP: u32 = 26;
/// Below the bars: the value axis and its numbers.
const AXIS_AREA: u32 = 28;
/// Right of the longest bar: its value.
const VALUE_ROOM: u32 = 56;
/// plotters writes a font's size divided by 1.24 (its em estimate): about 13 px.
const FONT_SIZE: f64 = 16.0;
const INK: RGBColor = RGBColor(0x1d, 0x23, 0x27);
const BAR: RGBColor = RGBColor(0x8a, 0x1c, 0x1c);
const GRID: RGBColor = RGBColor(0xdc, 0xdf, 0xe2);

/// A group's label as the chart shows it: 16 characters at most.
fn short_label(label: &str) -> String {
    let mut out: String = label.chars().take(16).collect();
    if label.chars().count() > 16 {
        out.push('…');
    }
    out
}

/// Horizontal bars of beneficiary-visits, one per line in the table's order (months
/// in order), top to bottom, each labelled with its group and its value, over a value
/// axis from 0. The fonts are the browser's: plotters is built without a font backend
/// (its SVG text is `<text>` with a generic family, sized by a rough estimate that
/// only the right-hand labels would use), so no font file is read or shipped.
/// Empty when there are no lines.
fn chart(lines: &[GroupLine]) -> Result<ChartSvg> {
    let n = lines.len();
    if n == 0 {
        return Ok(ChartSvg::default());
    }
    let failed = |e: &dyn std::fmt::Display| Error::Internal(format!("drawing the chart: {e}"));
    let rows = u32::try_from(n).map_err(|e| failed(&e))?;
    let height = 8 + BAR_STEP.saturating_mul(rows).saturating_add(AXIS_AREA);
    let max = lines.iter().map(|l| l.f.visits).max().unwrap_or(0).max(1);
    let labels: Vec<String> = lines.iter().map(|l| short_label(&l.label)).collect();
    // The y axis counts half rows upwards: line `l` (from the top) spans
    // `2 * (n - 1 - l)` to that plus 2, its label at the middle. (plotters' segmented
    // coordinates have no room for a single group: their span would be zero.)
    let bottom_of = |l: usize| 2 * (n - 1 - l);
    let label_of = |y: &usize| {
        (y % 2 == 1)
            .then(|| n.checked_sub(y / 2 + 1))
            .flatten()
            .and_then(|l| labels.get(l))
            .cloned()
            .unwrap_or_default()
    };
    let font = || ("sans-serif", FONT_SIZE).into_font().color(&INK);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, height)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin_top(8)
            .margin_right(VALUE_ROOM)
            .set_label_area_size(LabelAreaPosition::Left, LABEL_AREA)
            .set_label_area_size(LabelAreaPosition::Bottom, AXIS_AREA)
            // A label on every line, where plotters would pick "nice" numbers.
            .build_cartesian_2d(
                0..max,
                (0..2 * n).with_key_points((0..n).map(|l| bottom_of(l) + 1).collect()),
            )
            .map_err(|e| failed(&e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label_of)
            .x_labels(6)
            .x_label_formatter(&|v: &i64| v.to_string())
            .label_style(font())
            .axis_style(INK)
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(|e| failed(&e))?;
        chart
            .draw_series(lines.iter().enumerate().map(|(l, line)| {
                let y = bottom_of(l);
                let mut bar = Rectangle::new([(0, y), (line.f.visits, y + 2)], BAR.filled());
                bar.set_margin(3, 3, 0, 0);
                bar
            }))
            .map_err(|e| failed(&e))?;
        let value_font = font().pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(lines.iter().enumerate().map(|(l, line)| {
                EmptyElement::at((line.f.visits, bottom_of(l) + 1))
                    + Text::new(line.f.visits.to_string(), (6, 0), value_font.clone())
            }))
            .map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(ChartSvg(svg))
}

/// `GET /web/stats`.
pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    uri: Uri,
    Query(filters): Query<Filters>,
    Query(query): Query<StatsQuery>,
) -> Result<Response, WebError> {
    build(&state, lang, &user, &uri, filters, &query)
        .await
        .map_err(|e| WebError::new(lang, e))
}

async fn build(
    state: &AppState,
    lang: Lang,
    user: &WebUser,
    uri: &Uri,
    mut filters: Filters,
    query: &StatsQuery,
) -> Result<Response> {
    let s = lang.stats();
    let by = Dimension::from_code(&query.by)?;
    // The period: the current month unless the form says otherwise.
    let (month_first, month_last) = this_month();
    filters.from = query.from.clone().unwrap_or_else(|| ymd(month_first));
    filters.to = query.to.clone().unwrap_or_else(|| ymd(month_last));
    filters.after = String::new();
    let (from, to) = (filters.from.trim(), filters.to.trim());
    // Refuse bad dates before anything else (push_filters would too).
    if !from.is_empty() {
        day_start(from)?;
    }
    if !to.is_empty() {
        day_start(to)?;
    }

    let months = if by == Dimension::Month {
        // An open end is the first or last visit selected.
        let mut q =
            Sql::new("SELECT MIN(v.started_at), MAX(v.started_at) FROM visit_rows v WHERE ");
        push_filters(&mut q, &user.user, &filters)?;
        let (min, max): (Option<i64>, Option<i64>) =
            fetch!(&state.store, q, (Option<i64>, Option<i64>), fetch_one)?;
        let first = if from.is_empty() {
            min.map(date_of)
        } else {
            Some(parse_day(from)?)
        };
        let last = if to.is_empty() {
            max.map(date_of)
        } else {
            Some(parse_day(to)?)
        };
        match (first, last) {
            (Some(first), Some(last)) => months(first, last)
                .map_err(|_| Error::bad_request("too_many_months", s.too_many_months.to_owned()))?,
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };

    let (groups, totals) = figures(state, &user.user, &filters, by, &months).await?;

    // Names of the groups.
    let catalog = catalog_names(state, &user.user).await?;
    let mut q = Sql::new("SELECT s.id, s.name FROM stations s WHERE ");
    q.scope(&user.user, "s.district", "s.id")?;
    let stations: HashMap<Uuid, String> = fetch!(&state.store, q, (Vec<u8>, String), fetch_all)?
        .into_iter()
        .map(|(id, name)| (uuid_of(&id), name))
        .collect();

    // (month's place, a "none" group, the line)
    let mut lines: Vec<(Option<i64>, bool, GroupLine)> = Vec::new();
    for (key, f) in groups {
        let mut target = filters.clone();
        let (order, label) = match (&key, by) {
            (None, Dimension::Alliance) => {
                target.alliance = "none".into();
                (Some(i64::MAX), s.no_alliance.to_owned())
            }
            (None, Dimension::Unit) => {
                target.unit = "none".into();
                (Some(i64::MAX), s.no_unit.to_owned())
            }
            (None, _) => continue, // not reached: the filters bound every other key
            (Some(bytes), Dimension::Month) => {
                let key = String::from_utf8_lossy(bytes).into_owned();
                let Some(m) = months.iter().position(|m| m.key == key) else {
                    continue;
                };
                target.from = ymd(months[m].from);
                target.to = ymd(months[m].to);
                (i64::try_from(m).ok(), key)
            }
            (Some(bytes), dim) => {
                let id = uuid_of(bytes);
                let label = match dim {
                    Dimension::Station => stations
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| super::text::short(&id)),
                    _ => catalog
                        .get(&id)
                        .map(|n| pick(n, lang))
                        .unwrap_or_else(|| super::text::short(&id)),
                };
                let id = id.to_string();
                match dim {
                    Dimension::Alliance => target.alliance = id,
                    Dimension::Unit => target.unit = id,
                    Dimension::Project => target.project = id,
                    Dimension::Station => target.station = id,
                    Dimension::Month => {}
                }
                (None, label)
            }
        };
        lines.push((
            order.filter(|&o| o != i64::MAX),
            order == Some(i64::MAX),
            GroupLine {
                label,
                href: link(&target),
                hours: f.hours(),
                f,
            },
        ));
    }
    // Months in order; other groups by visits, most first, then by name; "none" last.
    lines.sort_by(|(oa, na, a), (ob, nb, b)| {
        (oa.cmp(ob).then(na.cmp(nb)))
            .then(b.f.visits.cmp(&a.f.visits))
            .then(a.label.cmp(&b.label))
    });
    let lines: Vec<GroupLine> = lines.into_iter().map(|(_, _, l)| l).collect();

    let names = Names::of(&state.store, user.user.district).await?;
    let menus = selects(state, user, &filters, &names, lang).await?;
    // The period is the page's own inputs; "by" is a menu without "any".
    let by_choices: Vec<Choice> = Dimension::ALL
        .into_iter()
        .map(|d| Choice {
            value: d.code().to_owned(),
            label: match d {
                Dimension::Alliance => s.by_alliance,
                Dimension::Unit => s.by_unit,
                Dimension::Project => s.by_project,
                Dimension::Station => s.by_station,
                Dimension::Month => s.by_month,
            }
            .to_owned(),
            selected: d == by,
        })
        .collect();
    let here = uri
        .path_and_query()
        .map_or("/web/stats", |p| p.as_str())
        .to_owned();
    let page = StatsPage {
        c: user.chrome(lang, &here),
        s,
        from: from.to_owned(),
        to: to.to_owned(),
        by: Select::new("by", s.by, by_choices),
        selects: menus,
        chart: chart(&lines)?,
        total_href: link(&filters),
        total_hours: totals.hours(),
        totals,
        lines,
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_clipped_to_the_period() {
        let d = |t: &str| parse_day(t).unwrap();
        let m = months(d("2026-01-15"), d("2026-03-02")).unwrap();
        assert_eq!(
            m.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
            ["2026-01", "2026-02", "2026-03"]
        );
        assert_eq!(
            (ymd(m[0].from), ymd(m[0].to)),
            ("2026-01-15".into(), "2026-01-31".into())
        );
        assert_eq!(
            (ymd(m[1].from), ymd(m[1].to)),
            ("2026-02-01".into(), "2026-02-28".into())
        );
        assert_eq!(
            (ymd(m[2].from), ymd(m[2].to)),
            ("2026-03-01".into(), "2026-03-02".into())
        );
        assert_eq!(m[1].start_ms, day_start("2026-02-01").unwrap());
        assert_eq!(m[1].end_ms, day_start("2026-03-01").unwrap());
        let m = months(d("2025-12-31"), d("2026-01-01")).unwrap();
        assert_eq!(m.len(), 2);
        assert!(months(d("1970-01-01"), d("2026-01-01")).is_err());
    }

    #[test]
    fn the_chart_writes_its_labels_as_text() {
        let line = |label: &str, visits| GroupLine {
            label: label.into(),
            href: String::new(),
            f: Figures {
                visits,
                ..Figures::default()
            },
            hours: String::new(),
        };
        let svg = chart(&[
            line("<script>alert(1)</script>", 3),
            line("A & \"B\"", 1),
            line("华沙六村党群服务站", 2),
        ])
        .unwrap()
        .0;
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<script"), "{svg}");
        // Shortened to 16 characters, then escaped.
        assert!(svg.contains(">\n&lt;script&gt;alert(1)…\n</text>"), "{svg}");
        assert!(svg.contains(">\nA &amp; &quot;B&quot;\n</text>"), "{svg}");
        assert!(svg.contains(">\n华沙六村党群服务站\n</text>"), "{svg}");
        for value in ["3", "2", "1"] {
            assert!(svg.contains(&format!(">\n{value}\n</text>")), "{svg}");
        }
        // No font is named but the browser's generic one.
        assert!(svg.contains("font-family=\"sans-serif\""));
        assert!(chart(&[]).unwrap().0.is_empty());
        // One line, or many: each has its label and value.
        let one = chart(&[line("一", 7)]).unwrap().0;
        assert!(
            one.contains(">\n一\n</text>") && one.contains(">\n7\n</text>"),
            "{one}"
        );
        let months: Vec<GroupLine> = (1..=240).map(|m| line(&format!("m{m}"), m)).collect();
        let many = chart(&months).unwrap().0;
        for m in 1..=240 {
            assert!(many.contains(&format!(">\nm{m}\n</text>")), "m{m}");
            assert!(many.contains(&format!(">\n{m}\n</text>")), "{m}");
        }
    }

    #[test]
    fn hours_round_to_tenths() {
        let h = |minutes| {
            Figures {
                minutes,
                ..Figures::default()
            }
            .hours()
        };
        assert_eq!(h(0), "0.0");
        assert_eq!(h(90), "1.5");
        assert_eq!(h(100), "1.7");
        assert_eq!(h(59), "1.0");
        assert_eq!(h(2), "0.0");
    }
}
