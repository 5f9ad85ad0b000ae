//! The statistics page and the visit log's exports over HTTP. Every expected figure is
//! counted here, in Rust, from the visits this test made (not by the server's SQL);
//! every figure's link is followed to check that it lists exactly the visits behind
//! it; the exports are read back (csv, calamine) and compared cell by cell; and a
//! station's staff try to count or export another station's visits.

use crate::backends::{TestStore, conformance};
use crate::web_client::{Browser, STAFF_PASSWORD, unescape};
use crate::world::{COORDINATOR_PASSWORD, World};
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use std::collections::{BTreeMap, BTreeSet};
use sync_core::doc::catalog::{CatalogDoc, EntryInput};
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::rules::Editor;
use time::macros::{format_description, offset};
use time::{Date, OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

/// Every visit the log lists for `href`, following its pages.
async fn listed(b: &mut Browser, href: &str) -> BTreeSet<Uuid> {
    let mut out = BTreeSet::new();
    let mut next = Some(href.to_owned());
    while let Some(path) = next.take() {
        let html = b.page(&path).await;
        for (i, _) in html.match_indices("#visit-") {
            out.insert(html[i + 7..i + 7 + 36].parse().unwrap());
        }
        if let Some(i) = html.find("id=\"next-page\"") {
            let before = &html[..i];
            let start = before.rfind("href=\"").unwrap() + 6;
            next = Some(unescape(before[start..].split('"').next().unwrap()));
        }
    }
    out
}

/// The figures of a row as the page shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shown {
    visits: i64,
    services: i64,
    residents: i64,
    participations: i64,
    volunteers: i64,
    hours: String,
    hazards_found: i64,
    hazards_fixed: i64,
}

/// The rows of the figures table: label → (figures, link), and the totals.
fn figures(html: &str) -> (BTreeMap<String, (Shown, String)>, (Shown, String)) {
    let row = |chunk: &str| {
        let start = chunk.find("<a href=\"").unwrap() + 9;
        let href = unescape(chunk[start..].split('"').next().unwrap());
        let label_start = chunk[start..].find('>').unwrap() + start + 1;
        let label = unescape(chunk[label_start..].split("</a>").next().unwrap());
        let value = |class: &str| -> String {
            let marker = format!("class=\"{class}\" href=\"");
            let at = chunk
                .find(&marker)
                .unwrap_or_else(|| panic!("{class} in {chunk}"));
            let from = chunk[at..].find('>').unwrap() + at + 1;
            let text = chunk[from..].split("</a>").next().unwrap().to_owned();
            // Every figure links to the same visits as its row.
            let link_start = at + marker.len();
            assert_eq!(
                unescape(chunk[link_start..].split('"').next().unwrap()),
                href,
                "{class} links elsewhere"
            );
            text
        };
        let n = |class: &str| value(class).parse::<i64>().unwrap();
        let shown = Shown {
            visits: n("visits"),
            services: n("services"),
            residents: n("residents"),
            participations: n("participations"),
            volunteers: n("volunteers"),
            hours: value("hours"),
            hazards_found: n("hazards-found"),
            hazards_fixed: n("hazards-fixed"),
        };
        (label, shown, href)
    };
    let mut groups = BTreeMap::new();
    for chunk in html.split("<tr class=\"group\">").skip(1) {
        let chunk = chunk.split("</tr>").next().unwrap();
        let (label, shown, href) = row(chunk);
        assert!(
            groups.insert(label, (shown, href)).is_none(),
            "a label twice"
        );
    }
    let total = html.split("<tr class=\"total\">").nth(1).unwrap();
    let (_, shown, href) = row(total.split("</tr>").next().unwrap());
    (groups, (shown, href))
}

/// A visit as this test made it.
#[derive(Clone, Debug)]
struct Made {
    id: Uuid,
    resident: Uuid,
    resident_name: &'static str,
    station: Uuid,
    volunteer: Uuid,
    volunteer_name: &'static str,
    project: Uuid,
    unit: Option<Uuid>,
    started_at: i64,
    minutes: i64,
    services: Vec<Uuid>,
    /// (type, severity, fixed)
    hazards: Vec<(Uuid, Severity, bool)>,
    notes: String,
    tombstoned: bool,
}

/// The catalog of the test's district: ids and (Chinese, English) names.
struct Cat {
    alliance_1: Uuid,
    alliance_2: Uuid,
    unit_1: Uuid,
    unit_2: Uuid,
    unit_3: Uuid,
    project_1: Uuid,
    project_2: Uuid,
    project_3: Uuid,
    service_1: Uuid,
    service_2: Uuid,
    hazard: Uuid,
    names: BTreeMap<Uuid, (&'static str, &'static str)>,
    parents: BTreeMap<Uuid, Uuid>,
}

impl Cat {
    fn new() -> Cat {
        let id = |n: u128| Uuid::from_u128(0x5747_0000 + n);
        let cat = Cat {
            alliance_1: id(1),
            alliance_2: id(2),
            unit_1: id(11),
            unit_2: id(12),
            unit_3: id(13),
            project_1: id(21),
            project_2: id(22),
            project_3: id(23),
            service_1: id(31),
            service_2: id(32),
            hazard: id(41),
            names: BTreeMap::new(),
            parents: BTreeMap::new(),
        };
        let names = [
            (cat.alliance_1, ("医疗卫生联盟", "Health alliance")),
            (cat.alliance_2, ("文化联盟", "Culture alliance")),
            (cat.unit_1, ("区中心医院", "District hospital")),
            (cat.unit_2, ("文化馆", "Culture centre")),
            (cat.unit_3, ("独立志愿队", "Independent team")),
            (cat.project_1, ("健康守护", "Health watch")),
            (cat.project_2, ("读报陪伴", "Reading company")),
            // A hostile name: the table and the chart must show it as text.
            (
                cat.project_3,
                ("其他&项目<script>alert(1)</script>", "Other project"),
            ),
            (cat.service_1, ("理发", "Haircut")),
            (cat.service_2, ("读报", "Reading")),
            (cat.hazard, ("电线老化", "Old wiring")),
        ];
        let parents = [
            (cat.unit_1, cat.alliance_1),
            (cat.unit_2, cat.alliance_2),
            (cat.project_1, cat.alliance_1),
            (cat.project_2, cat.alliance_2),
        ];
        Cat {
            names: names.into_iter().collect(),
            parents: parents.into_iter().collect(),
            ..cat
        }
    }

    fn zh(&self, id: &Uuid) -> String {
        self.names[id].0.to_owned()
    }

    fn en(&self, id: &Uuid) -> String {
        self.names[id].1.to_owned()
    }

    /// A visit's alliance, as the README defines it: its unit's, or for a visit
    /// without a unit its project's.
    fn alliance(&self, v: &Made) -> Option<Uuid> {
        match v.unit {
            Some(u) => self.parents.get(&u).copied(),
            None => self.parents.get(&v.project).copied(),
        }
    }

    fn entries(&self) -> Vec<EntryInput<'_>> {
        let kind = |id: &Uuid| match id.as_u128() - 0x5747_0000 {
            1..=9 => CatalogKind::Alliance,
            11..=19 => CatalogKind::Unit,
            21..=29 => CatalogKind::Project,
            31..=39 => CatalogKind::ServiceType,
            _ => CatalogKind::HazardType,
        };
        self.names
            .iter()
            .map(|(id, (zh, en))| EntryInput {
                kind: kind(id),
                id: *id,
                name: zh,
                name_en: en,
                parent: self.parents.get(id).copied(),
                archived: false,
            })
            .collect()
    }
}

/// Shanghai wall-clock time to Unix ms.
fn at(text: &str) -> i64 {
    let t = PrimitiveDateTime::parse(
        text,
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    )
    .unwrap()
    .assume_offset(offset!(+8));
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// Unix ms to Shanghai `YYYY-MM-DD HH:MM`, and the day.
fn shanghai(ms: i64) -> (String, Date) {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .to_offset(offset!(+8));
    let text = t
        .format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
        .unwrap();
    (text, t.date())
}

struct Data {
    w: World,
    cat: Cat,
    visits: Vec<Made>,
    station_names: BTreeMap<Uuid, &'static str>,
}

/// Three residents at two stations, two volunteers, and visits across March and
/// April 2026 (one on each side of the month's end in Shanghai, which UTC would put
/// in the same month), one deleted, one before the period.
async fn data(t: TestStore) -> Data {
    let w = World::new(t).await;
    let cat = Cat::new();
    let mut coordinator = w.coordinator_phone().await;

    // The district's catalog, written by the coordinator's phone.
    let principal = coordinator.principal(ResidentId(Uuid::nil()), w.station_a);
    let editor = Editor {
        principal: &principal,
        now: server::now_ms(),
    };
    let mut catalog = CatalogDoc::create(
        coordinator.replica.actor().clone(),
        &editor,
        coordinator.district,
    )
    .unwrap();
    catalog.put_entries(&editor, &cat.entries()).unwrap();
    coordinator.replica.save_catalog(&catalog).unwrap();
    coordinator.sync().await.unwrap();

    let r1 = w.resident(&mut coordinator, w.station_a, "王阿婆").await;
    let r2 = w.resident(&mut coordinator, w.station_a, "张老伯").await;
    let r3 = w.resident(&mut coordinator, w.station_b, "李阿姨").await;
    let mut v1 = w.volunteer("wang").await;
    let mut v2 = w.volunteer("zhang").await;
    for (v, r) in [(&v1, r1), (&v1, r2), (&v2, r2), (&v2, r3)] {
        w.assign(v.user, r).await;
    }
    v1.sync().await.unwrap();
    v2.sync().await.unwrap();

    let (a, b) = (w.station_a.0, w.station_b.0);
    let plan = [
        // volunteer, resident, station, start, minutes, project, unit, services, hazards
        (
            1,
            r1,
            a,
            "2026-03-05 09:00",
            60,
            cat.project_1,
            Some(cat.unit_1),
            vec![cat.service_1, cat.service_2],
            vec![(cat.hazard, Severity::High, true)],
            "读报，理发",
            false,
        ),
        (
            1,
            r2,
            a,
            "2026-03-05 14:00",
            30,
            cat.project_2,
            Some(cat.unit_1),
            vec![cat.service_2],
            vec![],
            "聊天",
            false,
        ),
        (
            2,
            r2,
            a,
            "2026-03-20 10:00",
            45,
            cat.project_2,
            None,
            vec![cat.service_1],
            vec![
                (cat.hazard, Severity::Low, false),
                (cat.hazard, Severity::Medium, true),
            ],
            "检查电线, \"插座\"\n已更换",
            false,
        ),
        (
            2,
            r3,
            b,
            "2026-03-31 23:30",
            90,
            cat.project_3,
            None,
            vec![],
            vec![],
            "",
            false,
        ),
        (
            2,
            r3,
            b,
            "2026-04-01 00:10",
            20,
            cat.project_1,
            Some(cat.unit_3),
            vec![cat.service_1],
            vec![],
            "unit without alliance",
            false,
        ),
        (
            1,
            r1,
            a,
            "2026-04-02 08:00",
            15,
            cat.project_1,
            Some(cat.unit_2),
            vec![cat.service_2],
            vec![(cat.hazard, Severity::Critical, true)],
            "=HYPERLINK(\"http://example.invalid\",\"x\")",
            false,
        ),
        (
            1,
            r2,
            a,
            "2026-04-02 09:00",
            25,
            cat.project_1,
            Some(cat.unit_1),
            vec![cat.service_1],
            vec![],
            "deleted",
            true,
        ),
        (
            2,
            r3,
            b,
            "2026-02-28 10:00",
            40,
            cat.project_1,
            Some(cat.unit_1),
            vec![cat.service_1],
            vec![],
            "before the period",
            false,
        ),
    ];
    let mut visits = Vec::new();
    for (
        who,
        resident,
        station,
        start,
        minutes,
        project,
        unit,
        services,
        hazards,
        notes,
        deleted,
    ) in plan
    {
        let phone = if who == 1 { &mut v1 } else { &mut v2 };
        let started_at = at(start);
        let record = VisitRecord {
            project: ProjectId(project),
            unit: unit.map(UnitId),
            started_at,
            ended_at: started_at + minutes * 60_000 + 59_000,
            services: services.iter().copied().map(ServiceTypeId).collect(),
            condition: Condition {
                wellbeing: Wellbeing::Good,
                systolic: None,
                diastolic: None,
                blood_sugar_dmmol: None,
                remarks: String::new(),
            },
            hazards: hazards
                .iter()
                .map(|&(h, severity, fixed)| Hazard {
                    hazard_type: HazardTypeId(h),
                    severity,
                    fixed_on_spot: fixed,
                    note: String::new(),
                })
                .collect(),
            notes: notes.into(),
            follow_up_needed: false,
        };
        let id = VisitId(Uuid::now_v7());
        phone.edit(resident, |file, editor| {
            file.log_visit(editor, id, &record).unwrap();
            if deleted {
                file.tombstone_visit(editor, id).unwrap();
            }
        });
        visits.push(Made {
            id: id.0,
            resident: resident.0,
            resident_name: match resident {
                r if r == r1 => "王阿婆",
                r if r == r2 => "张老伯",
                _ => "李阿姨",
            },
            station,
            volunteer: phone.user.0,
            volunteer_name: if who == 1 { "wang" } else { "zhang" },
            project,
            unit,
            started_at,
            minutes,
            services,
            hazards,
            notes: notes.into(),
            tombstoned: deleted,
        });
    }
    v1.sync().await.unwrap();
    v2.sync().await.unwrap();
    let station_names = BTreeMap::from([(a, "华沙六村党群服务站"), (b, "翔宇品城党群服务站")]);
    Data {
        w,
        cat,
        visits,
        station_names,
    }
}

/// The figures of `visits`, counted here.
fn expect(visits: &[&Made]) -> Shown {
    let distinct = |f: &dyn Fn(&Made) -> String| {
        visits.iter().map(|v| f(v)).collect::<BTreeSet<_>>().len() as i64
    };
    let minutes: i64 = visits.iter().map(|v| v.minutes).sum();
    let tenths = (minutes * 10 + 30) / 60;
    Shown {
        visits: visits.len() as i64,
        services: visits.iter().map(|v| v.services.len() as i64).sum(),
        residents: distinct(&|v| v.resident.to_string()),
        participations: distinct(&|v| format!("{} {}", v.volunteer, shanghai(v.started_at).1)),
        volunteers: distinct(&|v| v.volunteer.to_string()),
        hours: format!("{}.{}", tenths / 10, tenths % 10),
        hazards_found: visits.iter().map(|v| v.hazards.len() as i64).sum(),
        hazards_fixed: visits
            .iter()
            .map(|v| v.hazards.iter().filter(|h| h.2).count() as i64)
            .sum(),
    }
}

const PERIOD: &str = "from=2026-03-01&to=2026-04-30";

impl Data {
    /// The live visits of the period.
    fn in_period(&self) -> Vec<&Made> {
        let (from, to) = (at("2026-03-01 00:00"), at("2026-05-01 00:00"));
        self.visits
            .iter()
            .filter(|v| !v.tombstoned && v.started_at >= from && v.started_at < to)
            .collect()
    }

    /// The Chinese label of `v`'s group under `by`.
    fn label(&self, by: &str, v: &Made) -> String {
        match by {
            "alliance" => (self.cat.alliance(v))
                .map(|a| self.cat.zh(&a))
                .unwrap_or_else(|| "无联盟".into()),
            "unit" => v
                .unit
                .map(|u| self.cat.zh(&u))
                .unwrap_or_else(|| "无单位".into()),
            "project" => self.cat.zh(&v.project),
            "station" => self.station_names[&v.station].to_owned(),
            "month" => shanghai(v.started_at).0[..7].to_owned(),
            _ => unreachable!(),
        }
    }

    /// Expected groups: label → (figures, the visits).
    fn groups<'a>(
        &self,
        by: &str,
        visits: &[&'a Made],
    ) -> BTreeMap<String, (Shown, BTreeSet<Uuid>)> {
        let mut grouped: BTreeMap<String, Vec<&'a Made>> = BTreeMap::new();
        for v in visits {
            grouped.entry(self.label(by, v)).or_default().push(v);
        }
        grouped
            .into_iter()
            .map(|(label, vs)| {
                let ids = vs.iter().map(|v| v.id).collect();
                (label, (expect(&vs), ids))
            })
            .collect()
    }
}

/// Checks a statistics page against the visits it should count, and follows every
/// link to the visit log.
async fn check_page(b: &mut Browser, d: &Data, query: &str, by: &str, visits: &[&Made]) {
    let html = b.page(&format!("/web/stats?{query}")).await;
    let (shown, (total, total_href)) = figures(&html);
    let expected = d.groups(by, visits);
    assert_eq!(
        shown.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "groups by {by} for {query}"
    );
    for (label, (figures, ids)) in &expected {
        let (got, href) = &shown[label];
        assert_eq!(got, figures, "{label} by {by} for {query}");
        assert_eq!(&listed(b, href).await, ids, "{label}'s visits: {href}");
    }
    assert_eq!(total, expect(visits), "totals for {query}");
    let all: BTreeSet<Uuid> = visits.iter().map(|v| v.id).collect();
    assert_eq!(listed(b, &total_href).await, all, "the totals' visits");
    // The chart has a bar per group, in the table's order, each labelled with its
    // group and its beneficiary-visits, and as long as its value says.
    let bars = chart(&html);
    let table: Vec<(String, i64)> = table_order(&html)
        .into_iter()
        .map(|label| {
            let visits = shown[&label].0.visits;
            (short(&label), visits)
        })
        .collect();
    assert_eq!(
        bars.iter()
            .map(|b| (b.label.clone(), b.value))
            .collect::<Vec<_>>(),
        table,
        "the chart of {query}"
    );
    if by == "month" {
        let months: Vec<&String> = bars.iter().map(|b| &b.label).collect();
        assert!(months.is_sorted(), "months in order: {months:?}");
    }
    let longest = bars.iter().map(|b| b.value).max().unwrap_or(0);
    let full = bars.iter().map(|b| b.width).max().unwrap_or(0);
    for b in &bars {
        assert!(b.width > 0, "{b:?}");
        // Pixels are whole: a bar may be a pixel off at either end.
        assert!(
            (b.width * longest - full * b.value).abs() <= 2 * longest,
            "{b:?} against {full} px for {longest}"
        );
    }
    // Labels are user data: nothing in them becomes markup.
    assert!(!html.contains("<script>alert"), "{html}");
}

/// A bar of the chart as the page draws it.
#[derive(Debug)]
struct ChartBar {
    label: String,
    value: i64,
    width: i64,
}

/// A label as the chart shortens it: 16 characters, then an ellipsis.
fn short(label: &str) -> String {
    let mut out: String = label.chars().take(16).collect();
    if label.chars().count() > 16 {
        out.push('…');
    }
    out
}

/// The group labels of the figures table, top to bottom.
fn table_order(html: &str) -> Vec<String> {
    (html.split("<tr class=\"group\">").skip(1))
        .map(|chunk| {
            let link = &chunk[chunk.find("<a href=\"").unwrap()..];
            let text = &link[link.find('>').unwrap() + 1..];
            unescape(text.split("</a>").next().unwrap())
        })
        .collect()
}

/// An attribute of an SVG element's opening tag, as a number.
fn attr(tag: &str, name: &str) -> f64 {
    let marker = format!(" {name}=\"");
    let at = tag
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {tag}"))
        + marker.len();
    tag[at..].split('"').next().unwrap().parse().unwrap()
}

/// The chart's bars, top to bottom: each group label (a `<text>` anchored at its end,
/// left of the axis), the value written on the same line (anchored at its start), and
/// the bar's width (the filled `<rect>` across that line).
fn chart(html: &str) -> Vec<ChartBar> {
    let start = html.find("id=\"chart\"").expect("a chart");
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    // (y, anchor, text)
    let texts: Vec<(f64, String, String)> = (svg.split("<text").skip(1))
        .map(|t| {
            let (tag, rest) = t.split_once('>').unwrap();
            let text = unescape(rest.split("</text>").next().unwrap().trim());
            let anchor = tag.split("text-anchor=\"").nth(1).unwrap();
            (
                attr(tag, "y"),
                anchor.split('"').next().unwrap().to_owned(),
                text,
            )
        })
        .collect();
    let bars: Vec<(f64, f64, f64)> = (svg.split("<rect").skip(1))
        .map(|r| r.split('>').next().unwrap())
        .filter(|tag| tag.contains("fill=\"#8A1C1C\""))
        .map(|tag| (attr(tag, "y"), attr(tag, "height"), attr(tag, "width")))
        .collect();
    let mut out = Vec::new();
    for (y, anchor, label) in &texts {
        if anchor != "end" {
            continue;
        }
        let values: Vec<&String> = (texts.iter())
            .filter(|(vy, a, _)| vy == y && a == "start")
            .map(|(_, _, v)| v)
            .collect();
        assert_eq!(values.len(), 1, "one value beside {label}");
        let across: Vec<f64> = (bars.iter())
            .filter(|(top, height, _)| top <= y && *y <= top + height)
            .map(|(_, _, width)| *width)
            .collect();
        assert_eq!(across.len(), 1, "one bar beside {label}");
        let bar = ChartBar {
            label: label.clone(),
            value: values[0].parse().unwrap(),
            width: across[0] as i64,
        };
        out.push((*y, bar));
    }
    assert_eq!(out.len(), bars.len(), "a label for every bar");
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.into_iter().map(|(_, bar)| bar).collect()
}

/// Every dimension's figures, against counts made here, and every figure's link.
async fn statistics_count_what_the_log_lists(t: TestStore) {
    let d = data(t).await;
    let mut b = Browser::new(&d.w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    let period = d.in_period();
    assert_eq!(period.len(), 6);
    for by in ["alliance", "unit", "project", "station", "month"] {
        check_page(&mut b, &d, &format!("{PERIOD}&by={by}"), by, &period).await;
    }
    // The months split at Shanghai's midnight, not UTC's.
    let html = b.page(&format!("/web/stats?{PERIOD}&by=month")).await;
    let (months, _) = figures(&html);
    assert_eq!(months["2026-03"].0.visits, 4);
    assert_eq!(months["2026-04"].0.visits, 2);
    assert!(
        months["2026-04"]
            .1
            .contains("from=2026-04-01&to=2026-04-30")
    );

    // The log's filters apply: visits with hazards, by unit.
    let hazardous: Vec<&Made> = period
        .iter()
        .copied()
        .filter(|v| !v.hazards.is_empty())
        .collect();
    check_page(
        &mut b,
        &d,
        &format!("{PERIOD}&hazards=yes&by=unit"),
        "unit",
        &hazardous,
    )
    .await;
    // An alliance filter, by project.
    let first: Vec<&Made> = (period.iter().copied())
        .filter(|v| d.cat.alliance(v) == Some(d.cat.alliance_1))
        .collect();
    check_page(
        &mut b,
        &d,
        &format!("{PERIOD}&alliance={}&by=project", d.cat.alliance_1),
        "project",
        &first,
    )
    .await;
    // An open period: everything live, by month.
    let live: Vec<&Made> = d.visits.iter().filter(|v| !v.tombstoned).collect();
    check_page(&mut b, &d, "from=&to=&by=month", "month", &live).await;

    // By default: this month in Shanghai, by alliance.
    let html = b.page("/web/stats").await;
    let today = OffsetDateTime::now_utc().to_offset(offset!(+8)).date();
    let first_day = today.replace_day(1).unwrap();
    assert!(
        html.contains(&format!("value=\"{first_day}\"")),
        "the period starts on {first_day}"
    );
    let this_month: Vec<&Made> = (live.iter().copied())
        .filter(|v| shanghai(v.started_at).1 >= first_day && shanghai(v.started_at).1 <= today)
        .collect();
    assert_eq!(figures(&html).1.0, expect(&this_month));

    // An admin (no district) counts the same, names and drill-down included.
    let answer =
        d.w.server
            .post(
                "/api/v1/users",
                Some(&d.w.admin_token),
                &serde_json::json!({ "login": "admin2", "display_name": "admin2",
                "role": "admin", "password": STAFF_PASSWORD }),
            )
            .await;
    answer.expect(201);
    let mut admin = Browser::new(&d.w.server);
    admin.sign_in("admin2", STAFF_PASSWORD).await.expect(303);
    for by in ["alliance", "unit"] {
        check_page(&mut admin, &d, &format!("{PERIOD}&by={by}"), by, &period).await;
    }

    // English labels; bad parameters are refused.
    b.get("/web/lang/en?back=/web/stats").await;
    let html = b.page(&format!("/web/stats?{PERIOD}&by=alliance")).await;
    assert!(
        html.contains("Health alliance") && html.contains("No alliance"),
        "{html}"
    );
    b.get(&format!("/web/stats?{PERIOD}&by=colour"))
        .await
        .expect(400);
    // A bad date is explained in the page's language, with the value at fault below.
    let refused = b.get("/web/stats?from=2026-13-01").await;
    refused.expect(400);
    let page = refused.text();
    assert!(
        page.contains("Dates are written year-month-day") && page.contains("2026-13-01"),
        "{page}"
    );
    b.get("/web/lang/zh?back=/web/stats").await;
    let refused = b.get("/web/stats?from=2026-13-01").await;
    refused.expect(400);
    assert!(refused.text().contains("日期应写成“年-月-日”"));
    b.get("/web/stats?from=1900-01-01&to=2100-01-01&by=month")
        .await
        .expect(400);
}

/// A station's staff count their stations' visits only, whatever they ask for.
async fn staff_never_count_another_stations_visits(t: TestStore) {
    let d = data(t).await;
    let w = &d.w;
    let answer = w
        .server
        .post(
            "/api/v1/users",
            Some(&w.coordinator_token),
            &serde_json::json!({ "login": "staff_a", "display_name": "staff_a",
                "role": "station_staff", "stations": [w.station_a.0], "password": STAFF_PASSWORD }),
        )
        .await;
    answer.expect(201);
    let mut s = Browser::new(&w.server);
    // Signed out, nothing.
    for path in [
        "/web/stats",
        "/web/visits/export.csv",
        "/web/visits/export.xlsx",
    ] {
        s.get(path).await.expect(303);
    }
    s.sign_in("staff_a", STAFF_PASSWORD).await.expect(303);
    let mine: Vec<&Made> = (d.in_period().into_iter())
        .filter(|v| v.station == w.station_a.0)
        .collect();
    assert_eq!(mine.len(), 4);
    for by in ["alliance", "unit", "station", "month"] {
        check_page(&mut s, &d, &format!("{PERIOD}&by={by}"), by, &mine).await;
    }
    // Asking for station B's visits by filter finds none.
    let html = s
        .page(&format!(
            "/web/stats?{PERIOD}&by=station&station={}",
            w.station_b.0
        ))
        .await;
    let (groups, (total, _)) = figures(&html);
    assert!(groups.is_empty(), "{groups:?}");
    assert_eq!(total, expect(&[]));
    // Nor by a group's key that only B's visits have: project 3, no unit.
    let html = s
        .page(&format!(
            "/web/stats?{PERIOD}&by=project&project={}",
            d.cat.project_3
        ))
        .await;
    assert_eq!(figures(&html).1.0.visits, 0);
    // Nor in an export.
    let csv = s
        .get(&format!("/web/visits/export.csv?station={}", w.station_b.0))
        .await;
    csv.expect(200);
    let rows = read_csv(&csv.body);
    assert_eq!(rows.len(), 1, "the header only: {rows:?}");
    let csv = s.get("/web/visits/export.csv").await;
    let ids: BTreeSet<String> = read_csv(&csv.body)[1..]
        .iter()
        .map(|r| r[12].clone())
        .collect();
    let expected: BTreeSet<String> = (d.visits.iter())
        .filter(|v| !v.tombstoned && v.station == w.station_a.0)
        .map(|v| v.id.to_string())
        .collect();
    assert_eq!(ids, expected);
}

fn read_csv(body: &[u8]) -> Vec<Vec<String>> {
    assert!(body.starts_with(b"\xEF\xBB\xBF"), "a byte-order mark first");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&body[3..])
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The row an export should hold for `v`, in Chinese or English.
fn expected_row(d: &Data, v: &Made, zh: bool) -> Vec<String> {
    let name = |id: &Uuid| if zh { d.cat.zh(id) } else { d.cat.en(id) };
    let sep = if zh { "、" } else { ", " };
    let severity = |s: Severity| match (s, zh) {
        (Severity::Low, true) => "低",
        (Severity::Medium, true) => "中",
        (Severity::High, true) => "高",
        (Severity::Critical, true) => "危急",
        (Severity::Low, false) => "low",
        (Severity::Medium, false) => "medium",
        (Severity::High, false) => "high",
        (Severity::Critical, false) => "critical",
    };
    let fixed = |f: bool| match (f, zh) {
        (true, true) => "已当场整改",
        (false, true) => "未整改",
        (true, false) => "fixed on the spot",
        (false, false) => "not fixed",
    };
    vec![
        shanghai(v.started_at).0,
        v.resident_name.to_owned(),
        d.station_names[&v.station].to_owned(),
        v.volunteer_name.to_owned(),
        name(&v.project),
        v.unit.map(|u| name(&u)).unwrap_or_default(),
        d.cat.alliance(v).map(|a| name(&a)).unwrap_or_default(),
        v.services.iter().map(name).collect::<Vec<_>>().join(sep),
        (v.hazards.iter())
            .map(|&(h, s, f)| format!("{} ({}, {})", name(&h), severity(s), fixed(f)))
            .collect::<Vec<_>>()
            .join(sep),
        v.minutes.to_string(),
        if zh { "待审核" } else { "Pending" }.to_owned(),
        v.notes.clone(),
        v.id.to_string(),
    ]
}

/// The exports hold exactly the visits the log's filters select, all of them, newest
/// first, cell by cell.
async fn exports_hold_the_filtered_visits(t: TestStore) {
    let d = data(t).await;
    let mut b = Browser::new(&d.w.server);
    b.sign_in("coordinator", COORDINATOR_PASSWORD)
        .await
        .expect(303);
    // The log links both exports with its filters.
    let log = b.page(&format!("/web/visits?{PERIOD}&hazards=no")).await;
    let log = unescape(&log);
    assert!(log.contains(&format!("/web/visits/export.csv?{PERIOD}&hazards=no\"")));
    assert!(log.contains("/web/visits/export.xlsx?"));

    let mut selected: Vec<&Made> = d.in_period();
    selected.sort_by_key(|v| std::cmp::Reverse((v.started_at, v.resident, v.id)));

    // CSV, in Chinese (the default).
    let answer = b.get(&format!("/web/visits/export.csv?{PERIOD}")).await;
    answer.expect(200);
    assert_eq!(answer.headers[CONTENT_TYPE], "text/csv; charset=utf-8");
    let disposition = answer.headers[CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"linli-visits-20")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let rows = read_csv(&answer.body);
    assert_eq!(
        rows[0],
        [
            "日期时间",
            "服务对象",
            "服务站",
            "志愿者",
            "项目",
            "单位",
            "联盟",
            "服务",
            "隐患",
            "时长（分钟）",
            "审核",
            "记录",
            "走访编号"
        ]
    );
    assert_eq!(rows.len(), selected.len() + 1);
    for (row, v) in rows[1..].iter().zip(&selected) {
        let mut expected = expected_row(&d, v, true);
        // A note that a spreadsheet would run as a formula is made inert.
        if expected[11].starts_with('=') {
            expected[11] = format!("'{}", expected[11]);
        }
        assert_eq!(row, &expected);
    }

    // A filter narrows the export as it narrows the log.
    let answer = b
        .get(&format!("/web/visits/export.csv?{PERIOD}&unit=none"))
        .await;
    let ids: Vec<String> = read_csv(&answer.body)[1..]
        .iter()
        .map(|r| r[12].clone())
        .collect();
    let no_unit: Vec<String> = (selected.iter())
        .filter(|v| v.unit.is_none())
        .map(|v| v.id.to_string())
        .collect();
    assert_eq!(ids, no_unit);
    assert_eq!(ids.len(), 2);

    // XLSX, in English.
    b.get("/web/lang/en?back=/web/visits").await;
    let answer = b.get(&format!("/web/visits/export.xlsx?{PERIOD}")).await;
    answer.expect(200);
    assert_eq!(
        answer.headers[CONTENT_TYPE],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let disposition = answer.headers[CONTENT_DISPOSITION].to_str().unwrap();
    assert!(disposition.ends_with(".xlsx\""), "{disposition}");
    use calamine::{Data as Cell, Reader, Xlsx, open_workbook_from_rs};
    let mut book: Xlsx<_> =
        open_workbook_from_rs(std::io::Cursor::new(answer.body.clone())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let rows: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Cell::String(s) => s.clone(),
                    Cell::Float(f) => format!("{f}"),
                    Cell::Int(n) => n.to_string(),
                    Cell::Empty => String::new(),
                    other => panic!("unexpected cell {other:?}"),
                })
                .collect()
        })
        .collect();
    assert_eq!(rows[0][0], "Date and time");
    assert_eq!(rows[0][12], "Visit id");
    assert_eq!(rows.len(), selected.len() + 1);
    for (row, v) in rows[1..].iter().zip(&selected) {
        // In a workbook the note stays as typed: a string cell is never a formula.
        assert_eq!(row, &expected_row(&d, v, false));
    }
    // The duration is a number.
    assert!(matches!(sheet.get((1, 9)), Some(Cell::Float(_))));

    // A bad filter is refused, not exported as everything.
    b.get("/web/visits/export.csv?hazards=maybe")
        .await
        .expect(400);
}

conformance!(
    statistics_count_what_the_log_lists,
    staff_never_count_another_stations_visits,
    exports_hold_the_filtered_visits,
);
