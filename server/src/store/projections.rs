//! Read-side projections: SQL rows of residents, visits (with their services and
//! hazards) and follow-ups, for the coordinator pages, statistics and exports.
//!
//! The rows are a function of the document alone: [`Projection::of`] flattens what
//! `CaseFile::hydrate` gives. An append writes them in the transaction that stores the
//! changes and the feed entry, so they never show a change the store does not hold. To stay cheap on the sync path an
//! append rewrites only the visits and follow-ups its changes wrote to (located by
//! decoding the changes, as the rules do) and the resident row; a new document, a write
//! to the document root (a station move, a migration) or a change that cannot be
//! located rewrites every row of the document. Each resident row records the heads it
//! shows, and an append to a document whose rows show other heads (wiped, or written
//! before this table existed) rewrites them all, so a missed update never lingers.
//!
//! [`SqlStore::rebuild_projections`] rewrites every row from the stored documents, one
//! document per transaction; [`SqlStore::check_projections`] compares the rows with what
//! the documents project to, for the operator's check. Catalogs have rows of their own
//! ([`super::catalog_rows`]), written, rebuilt and checked alongside.

use super::{Pool, Result, SqlStore, StoreError, heads_bytes, row_text};
use sqlx::Row;
use std::collections::BTreeSet;
use std::sync::LazyLock;
use sync_core::automerge::{Automerge, Change};
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::catalog::CatalogDoc;
use sync_core::doc::paths::{Locator, Target, classify};
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::store::{Append, ServerStore};
use uuid::Uuid;

/// A resident's row: the profile, where the resident lives, and the figures the
/// due-visit and follow-up lists sort on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidentRow {
    /// The resident (and case-file) id.
    pub id: ResidentId,
    /// District.
    pub district: DistrictId,
    /// Station.
    pub station: StationId,
    /// The profile, field by field.
    pub profile: Profile,
    /// When the latest visit that is not tombstoned started.
    pub last_visit_at: Option<Timestamp>,
    /// Visits that are not tombstoned.
    pub live_visits: i64,
    /// Follow-ups still open.
    pub open_follow_ups: i64,
    /// Profile fields holding conflicting values that a person has not resolved.
    pub profile_conflicts: i64,
    /// Set while the case file is closed.
    pub closure: Option<Closure>,
}

/// A visit's row. Tombstoned visits keep their row, flagged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisitRow {
    /// The resident visited.
    pub resident: ResidentId,
    /// The visit.
    pub id: VisitId,
    /// The resident's district.
    pub district: DistrictId,
    /// The resident's station (now, not at the time of the visit).
    pub station: StationId,
    /// The volunteer who made the visit.
    pub volunteer: UserId,
    /// Project.
    pub project: ProjectId,
    /// Unit, if recorded.
    pub unit: Option<UnitId>,
    /// Start, device clock.
    pub started_at: Timestamp,
    /// End, device clock.
    pub ended_at: Timestamp,
    /// Whole minutes from start to end, rounded down.
    pub duration_minutes: i64,
    /// How the resident was doing.
    pub wellbeing: Wellbeing,
    /// Blood pressure, systolic.
    pub systolic: Option<i64>,
    /// Blood pressure, diastolic.
    pub diastolic: Option<i64>,
    /// Blood sugar, tenths of mmol/L.
    pub blood_sugar_dmmol: Option<i64>,
    /// Remarks on the condition.
    pub remarks: String,
    /// Notes.
    pub notes: String,
    /// Someone must follow up.
    pub follow_up_needed: bool,
    /// Deleted.
    pub tombstoned: bool,
    /// `Pending` until reviewed.
    pub review_status: ReviewStatus,
    /// Who reviewed; `None` until reviewed.
    pub reviewer: Option<UserId>,
    /// When.
    pub reviewed_at: Option<Timestamp>,
    /// The reviewer's comment.
    pub review_comment: Option<String>,
    /// Hazards found.
    pub hazards_found: i64,
    /// Of those, fixed on the spot.
    pub hazards_fixed: i64,
}

/// One service given in a visit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRow {
    /// The resident.
    pub resident: ResidentId,
    /// The visit.
    pub visit: VisitId,
    /// Place in the visit's list, from 0.
    pub position: i64,
    /// What was given.
    pub service_type: ServiceTypeId,
}

/// One hazard found in a visit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HazardRow {
    /// The resident.
    pub resident: ResidentId,
    /// The visit.
    pub visit: VisitId,
    /// Place in the visit's list, from 0.
    pub position: i64,
    /// What kind.
    pub hazard_type: HazardTypeId,
    /// How serious.
    pub severity: Severity,
    /// Fixed on the spot.
    pub fixed_on_spot: bool,
    /// Free text.
    pub note: String,
}

/// A follow-up ticket's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowUpRow {
    /// The resident.
    pub resident: ResidentId,
    /// The ticket.
    pub id: FollowUpId,
    /// The resident's district.
    pub district: DistrictId,
    /// The resident's station.
    pub station: StationId,
    /// The visit it was opened from.
    pub visit: Option<VisitId>,
    /// What must be done.
    pub title: String,
    /// Open or closed.
    pub status: FollowUpStatus,
    /// Who must act.
    pub owner: Option<UserId>,
    /// By when.
    pub deadline: Option<Timestamp>,
    /// Who opened it.
    pub opened_by: UserId,
    /// When.
    pub opened_at: Timestamp,
    /// Who closed it.
    pub closed_by: Option<UserId>,
    /// When.
    pub closed_at: Option<Timestamp>,
    /// How it was resolved.
    pub resolution: String,
    /// How many comments it has.
    pub comments: i64,
}

/// Every row one case file projects to, each list in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Projection {
    /// The resident's row.
    pub resident: ResidentRow,
    /// Visit rows, by visit id.
    pub visits: Vec<VisitRow>,
    /// Service rows, by visit id and position.
    pub services: Vec<ServiceRow>,
    /// Hazard rows, by visit id and position.
    pub hazards: Vec<HazardRow>,
    /// Follow-up rows, by ticket id.
    pub follow_ups: Vec<FollowUpRow>,
}

impl Projection {
    /// The rows of a case file.
    pub fn of_file(file: &CaseFile) -> sync_core::Result<Projection> {
        let conflicts = file.conflicts()?.len();
        Ok(Projection::of(&file.hydrate()?, conflicts))
    }

    /// The rows of a hydrated case file with `conflicts` conflicting profile fields.
    pub fn of(r: &Resident, conflicts: usize) -> Projection {
        let place = Place {
            resident: r.id,
            district: r.district,
            station: r.station,
        };
        let mut p = Projection {
            resident: ResidentRow {
                id: r.id,
                district: r.district,
                station: r.station,
                profile: row_profile(&r.profile),
                last_visit_at: r.last_visit_at(),
                live_visits: count(r.live_visits()),
                open_follow_ups: count(
                    r.follow_ups
                        .iter()
                        .filter(|f| f.status == FollowUpStatus::Open),
                ),
                profile_conflicts: i64::try_from(conflicts).unwrap_or(i64::MAX),
                closure: r.closure.as_ref().map(|c| Closure {
                    note: row_text(&c.note),
                    ..c.clone()
                }),
            },
            visits: Vec::with_capacity(r.visits.len()),
            services: Vec::new(),
            hazards: Vec::new(),
            follow_ups: r.follow_ups.iter().map(|f| place.follow_up(f)).collect(),
        };
        for v in &r.visits {
            let (visit, services, hazards) = place.visit(v);
            p.visits.push(visit);
            p.services.extend(services);
            p.hazards.extend(hazards);
        }
        p.sort();
        p
    }

    fn sort(&mut self) {
        self.visits.sort_by_key(|v| v.id);
        self.services.sort_by_key(|s| (s.visit, s.position));
        self.hazards.sort_by_key(|h| (h.visit, h.position));
        self.follow_ups.sort_by_key(|f| f.id);
    }
}

/// A profile as its row holds it (see [`row_text`]).
fn row_profile(p: &Profile) -> Profile {
    Profile {
        name: row_text(&p.name),
        address: row_text(&p.address),
        phone: row_text(&p.phone),
        emergency_contact: row_text(&p.emergency_contact),
        needs: row_text(&p.needs),
        ..p.clone()
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> i64 {
    i64::try_from(items.count()).unwrap_or(i64::MAX)
}

/// Where a case file's rows belong.
struct Place {
    resident: ResidentId,
    district: DistrictId,
    station: StationId,
}

impl Place {
    fn visit(&self, v: &Visit) -> (VisitRow, Vec<ServiceRow>, Vec<HazardRow>) {
        let r = &v.record;
        let row = VisitRow {
            resident: self.resident,
            id: v.id,
            district: self.district,
            station: self.station,
            volunteer: v.volunteer,
            project: r.project,
            unit: r.unit,
            started_at: r.started_at,
            ended_at: r.ended_at,
            duration_minutes: r.ended_at.saturating_sub(r.started_at) / 60_000,
            wellbeing: r.condition.wellbeing,
            systolic: r.condition.systolic,
            diastolic: r.condition.diastolic,
            blood_sugar_dmmol: r.condition.blood_sugar_dmmol,
            remarks: row_text(&r.condition.remarks),
            notes: row_text(&r.notes),
            follow_up_needed: r.follow_up_needed,
            tombstoned: v.tombstoned,
            review_status: v.review_status(),
            reviewer: v.review.as_ref().map(|x| x.reviewer),
            reviewed_at: v.review.as_ref().map(|x| x.at),
            review_comment: v.review.as_ref().map(|x| row_text(&x.comment)),
            hazards_found: count(r.hazards.iter()),
            hazards_fixed: count(r.hazards.iter().filter(|h| h.fixed_on_spot)),
        };
        let services = (0..)
            .zip(&r.services)
            .map(|(position, s)| ServiceRow {
                resident: self.resident,
                visit: v.id,
                position,
                service_type: *s,
            })
            .collect();
        let hazards = (0..)
            .zip(&r.hazards)
            .map(|(position, h)| HazardRow {
                resident: self.resident,
                visit: v.id,
                position,
                hazard_type: h.hazard_type,
                severity: h.severity,
                fixed_on_spot: h.fixed_on_spot,
                note: row_text(&h.note),
            })
            .collect();
        (row, services, hazards)
    }

    fn follow_up(&self, f: &FollowUp) -> FollowUpRow {
        FollowUpRow {
            resident: self.resident,
            id: f.id,
            district: self.district,
            station: self.station,
            visit: f.visit,
            title: row_text(&f.title),
            status: f.status,
            owner: f.owner,
            deadline: f.deadline,
            opened_by: f.opened_by,
            opened_at: f.opened_at,
            closed_by: f.closed_by,
            closed_at: f.closed_at,
            resolution: row_text(&f.resolution),
            comments: count(f.comments.iter()),
        }
    }
}

// ---- writing -------------------------------------------------------------------------

/// A statement of a write plan. Plans are worked out in Rust, before a transaction
/// opens where possible, and run on either backend by `run_plan!`.
#[derive(Debug)]
pub(super) struct Stmt {
    pub(super) sql: &'static str,
    /// The same statement for SQLite, where it differs: with anonymous parameters
    /// (`?`), which SQLite binds in constant time, where it looks numbered ones up by
    /// name in a list (quadratic in a many-row insert's parameters).
    pub(super) sqlite: Option<&'static str>,
    pub(super) args: Vec<Arg>,
}

impl Stmt {
    pub(super) fn new(sql: &'static str, args: Vec<Arg>) -> Stmt {
        Stmt {
            sql,
            sqlite: None,
            args,
        }
    }

    /// The statement's text for SQLite (`true`) or PostgreSQL.
    pub(super) fn text(&self, sqlite: bool) -> &'static str {
        match self.sqlite {
            Some(text) if sqlite => text,
            _ => self.sql,
        }
    }
}

/// An argument of a [`Stmt`].
#[derive(Debug)]
pub(super) enum Arg {
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Bool(bool),
}

fn id(u: &Uuid) -> Arg {
    Arg::Bytes(u.as_bytes().to_vec())
}

fn opt_id(u: Option<&Uuid>) -> Arg {
    Arg::OptBytes(u.map(|u| u.as_bytes().to_vec()))
}

fn opt_code(code: Option<&'static str>) -> Arg {
    Arg::OptText(code.map(str::to_owned))
}

const DELETE_ALL: [&str; 4] = [
    "DELETE FROM visit_services WHERE resident = $1",
    "DELETE FROM visit_hazards WHERE resident = $1",
    "DELETE FROM visit_rows WHERE resident = $1",
    "DELETE FROM follow_up_rows WHERE resident = $1",
];

const DELETE_VISIT: [&str; 3] = [
    "DELETE FROM visit_services WHERE resident = $1 AND visit = $2",
    "DELETE FROM visit_hazards WHERE resident = $1 AND visit = $2",
    "DELETE FROM visit_rows WHERE resident = $1 AND id = $2",
];

const DELETE_FOLLOW_UP: &str = "DELETE FROM follow_up_rows WHERE resident = $1 AND id = $2";

/// Rows of one table inserted by one statement: a case file's first upload has dozens of
/// visits, and every statement is a round trip (to SQLite's worker thread, or to
/// PostgreSQL). Rows go in runs of [`RUNS`] (64, then the remainder's binary digits),
/// so each table has a few statement texts for the backends to keep prepared; 64 rows
/// of 24 columns stay far below both backends' limits on parameters.
#[derive(Debug)]
pub(super) struct RowInsert {
    columns: usize,
    /// The statement for `RUNS[i]` rows, with numbered parameters (PostgreSQL).
    numbered: Vec<String>,
    /// The same with anonymous ones (SQLite; see [`Stmt::sqlite`]).
    anonymous: Vec<String>,
}

const RUNS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

impl RowInsert {
    fn new(head: &str, columns: usize) -> RowInsert {
        let texts = |param: &dyn Fn(usize) -> String| -> Vec<String> {
            RUNS.iter()
                .map(|&rows| {
                    let groups: Vec<String> = (0..rows)
                        .map(|r| {
                            let params: Vec<String> =
                                (1..=columns).map(|c| param(r * columns + c)).collect();
                            format!("({})", params.join(", "))
                        })
                        .collect();
                    format!("{head} VALUES {}", groups.join(", "))
                })
                .collect()
        };
        RowInsert {
            columns,
            numbered: texts(&|n| format!("${n}")),
            anonymous: texts(&|_| "?".to_owned()),
        }
    }

    /// The statements inserting `rows` rows whose arguments, row after row, are `args`.
    fn statements(&'static self, mut rows: usize, args: Vec<Arg>, out: &mut Vec<Stmt>) {
        let mut args = args.into_iter();
        for (i, size) in RUNS.iter().enumerate() {
            while rows >= *size {
                out.push(Stmt {
                    sql: &self.numbered[i],
                    sqlite: Some(&self.anonymous[i]),
                    args: args.by_ref().take(size * self.columns).collect(),
                });
                rows -= size;
            }
        }
    }
}

static INSERT_VISIT: LazyLock<RowInsert> = LazyLock::new(|| {
    RowInsert::new(
        "INSERT INTO visit_rows (resident, id, district, station, volunteer, project, unit,
         started_at, ended_at, duration_minutes, wellbeing, systolic, diastolic,
         blood_sugar_dmmol, remarks, notes, follow_up_needed, tombstoned, review_status,
         reviewer, reviewed_at, review_comment, hazards_found, hazards_fixed)",
        24,
    )
});

static INSERT_SERVICE: LazyLock<RowInsert> = LazyLock::new(|| {
    RowInsert::new(
        "INSERT INTO visit_services (resident, visit, position, service_type)",
        4,
    )
});

static INSERT_HAZARD: LazyLock<RowInsert> = LazyLock::new(|| {
    RowInsert::new(
        "INSERT INTO visit_hazards (resident, visit, position, hazard_type, severity,
         fixed_on_spot, note)",
        7,
    )
});

static INSERT_FOLLOW_UP: LazyLock<RowInsert> = LazyLock::new(|| {
    RowInsert::new(
        "INSERT INTO follow_up_rows (resident, id, district, station, visit, title, status,
         owner, deadline, opened_by, opened_at, closed_by, closed_at, resolution, comments)",
        15,
    )
});

/// The figures are counted from the visit and follow-up rows written just before, in
/// the same transaction, so an append that touched one visit need not read the others.
const UPSERT_RESIDENT: &str = "INSERT INTO resident_rows (id, district, station, name, address,
    phone, birth_year, living_situation, emergency_contact, needs, risk_level,
    visit_every_days, heads, profile_conflicts, closed_reason, closed_note, closed_at,
    closed_by, last_visit_at, live_visits, open_follow_ups)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
      (SELECT MAX(started_at) FROM visit_rows WHERE resident = $1 AND NOT tombstoned),
      (SELECT COUNT(*) FROM visit_rows WHERE resident = $1 AND NOT tombstoned),
      (SELECT COUNT(*) FROM follow_up_rows WHERE resident = $1 AND status = 'open'))
    ON CONFLICT (id) DO UPDATE SET district = excluded.district, station = excluded.station,
      name = excluded.name, address = excluded.address, phone = excluded.phone,
      birth_year = excluded.birth_year, living_situation = excluded.living_situation,
      emergency_contact = excluded.emergency_contact, needs = excluded.needs,
      risk_level = excluded.risk_level, visit_every_days = excluded.visit_every_days,
      heads = excluded.heads, profile_conflicts = excluded.profile_conflicts,
      closed_reason = excluded.closed_reason, closed_note = excluded.closed_note,
      closed_at = excluded.closed_at, closed_by = excluded.closed_by,
      last_visit_at = excluded.last_visit_at,
      live_visits = excluded.live_visits, open_follow_ups = excluded.open_follow_ups";

/// Rows of residents that have no case file (none are made today: documents are never
/// deleted, and catalogs are never projected), per table.
const DELETE_ORPHANS: [&str; 5] = [
    "DELETE FROM resident_rows WHERE id NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)",
    "DELETE FROM visit_rows WHERE resident NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)",
    "DELETE FROM visit_services WHERE resident NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)",
    "DELETE FROM visit_hazards WHERE resident NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)",
    "DELETE FROM follow_up_rows WHERE resident NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)",
];

const ORPHANS: &str = "SELECT id FROM resident_rows WHERE id NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)
    UNION SELECT resident FROM visit_rows WHERE resident NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)
    UNION SELECT resident FROM visit_services WHERE resident NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)
    UNION SELECT resident FROM visit_hazards WHERE resident NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)
    UNION SELECT resident FROM follow_up_rows WHERE resident NOT IN (SELECT id FROM documents WHERE station IS NOT NULL)";

/// Statements that rewrite some or all of one case file's rows.
#[derive(Debug, Default)]
pub(super) struct Plan(Vec<Planned>);

/// A statement of a plan, or rows that one or a few statements insert.
#[derive(Debug)]
enum Planned {
    One(Stmt),
    Rows {
        table: &'static RowInsert,
        rows: usize,
        args: Vec<Arg>,
    },
}

impl Plan {
    fn push(&mut self, sql: &'static str, args: Vec<Arg>) {
        self.0.push(Planned::One(Stmt::new(sql, args)));
    }

    /// A row for `table`, inserted together with the rows pushed for it just before.
    fn row(&mut self, table: &'static LazyLock<RowInsert>, row: Vec<Arg>) {
        let table: &'static RowInsert = table;
        match self.0.last_mut() {
            Some(Planned::Rows {
                table: last,
                rows,
                args,
            }) if std::ptr::eq(*last, table) => {
                *rows += 1;
                args.extend(row);
            }
            _ => self.0.push(Planned::Rows {
                table,
                rows: 1,
                args: row,
            }),
        }
    }

    /// Everything, from a whole projection.
    fn full(p: &Projection, heads: Vec<u8>) -> Plan {
        let mut plan = Plan::default();
        for sql in DELETE_ALL {
            plan.push(sql, vec![id(&p.resident.id.0)]);
        }
        for v in &p.visits {
            plan.visit(v);
        }
        for s in &p.services {
            plan.service(s);
        }
        for h in &p.hazards {
            plan.hazard(h);
        }
        for f in &p.follow_ups {
            plan.follow_up(f);
        }
        let r = &p.resident;
        let place = Place {
            resident: r.id,
            district: r.district,
            station: r.station,
        };
        plan.resident(
            &place,
            &r.profile,
            r.profile_conflicts,
            r.closure.as_ref(),
            heads,
        );
        plan
    }

    fn visit(&mut self, v: &VisitRow) {
        self.row(
            &INSERT_VISIT,
            vec![
                id(&v.resident.0),
                id(&v.id.0),
                id(&v.district.0),
                id(&v.station.0),
                id(&v.volunteer.0),
                id(&v.project.0),
                opt_id(v.unit.as_ref().map(|u| &u.0)),
                Arg::Int(v.started_at),
                Arg::Int(v.ended_at),
                Arg::Int(v.duration_minutes),
                Arg::Text(v.wellbeing.code().to_owned()),
                Arg::OptInt(v.systolic),
                Arg::OptInt(v.diastolic),
                Arg::OptInt(v.blood_sugar_dmmol),
                Arg::Text(v.remarks.clone()),
                Arg::Text(v.notes.clone()),
                Arg::Bool(v.follow_up_needed),
                Arg::Bool(v.tombstoned),
                Arg::Text(v.review_status.code().to_owned()),
                opt_id(v.reviewer.as_ref().map(|u| &u.0)),
                Arg::OptInt(v.reviewed_at),
                Arg::OptText(v.review_comment.clone()),
                Arg::Int(v.hazards_found),
                Arg::Int(v.hazards_fixed),
            ],
        );
    }

    fn service(&mut self, s: &ServiceRow) {
        self.row(
            &INSERT_SERVICE,
            vec![
                id(&s.resident.0),
                id(&s.visit.0),
                Arg::Int(s.position),
                id(&s.service_type.0),
            ],
        );
    }

    fn hazard(&mut self, h: &HazardRow) {
        self.row(
            &INSERT_HAZARD,
            vec![
                id(&h.resident.0),
                id(&h.visit.0),
                Arg::Int(h.position),
                id(&h.hazard_type.0),
                Arg::Text(h.severity.code().to_owned()),
                Arg::Bool(h.fixed_on_spot),
                Arg::Text(h.note.clone()),
            ],
        );
    }

    fn follow_up(&mut self, f: &FollowUpRow) {
        self.row(
            &INSERT_FOLLOW_UP,
            vec![
                id(&f.resident.0),
                id(&f.id.0),
                id(&f.district.0),
                id(&f.station.0),
                opt_id(f.visit.as_ref().map(|v| &v.0)),
                Arg::Text(f.title.clone()),
                Arg::Text(f.status.code().to_owned()),
                opt_id(f.owner.as_ref().map(|u| &u.0)),
                Arg::OptInt(f.deadline),
                id(&f.opened_by.0),
                Arg::Int(f.opened_at),
                opt_id(f.closed_by.as_ref().map(|u| &u.0)),
                Arg::OptInt(f.closed_at),
                Arg::Text(f.resolution.clone()),
                Arg::Int(f.comments),
            ],
        );
    }

    /// Last in every plan: its figures count the rows written before it.
    fn resident(
        &mut self,
        place: &Place,
        p: &Profile,
        conflicts: i64,
        closure: Option<&Closure>,
        heads: Vec<u8>,
    ) {
        self.push(
            UPSERT_RESIDENT,
            vec![
                id(&place.resident.0),
                id(&place.district.0),
                id(&place.station.0),
                Arg::Text(p.name.clone()),
                Arg::Text(p.address.clone()),
                Arg::Text(p.phone.clone()),
                Arg::OptInt(p.birth_year),
                opt_code(p.living_situation.map(LivingSituation::code)),
                Arg::Text(p.emergency_contact.clone()),
                Arg::Text(p.needs.clone()),
                opt_code(p.risk_level.map(RiskLevel::code)),
                Arg::OptInt(p.visit_every_days),
                Arg::Bytes(heads),
                Arg::Int(conflicts),
                opt_code(closure.map(|c| c.reason.code())),
                Arg::OptText(closure.map(|c| c.note.clone())),
                Arg::OptInt(closure.map(|c| c.at)),
                opt_id(closure.map(|c| &c.by.0)),
            ],
        );
    }

    pub(super) fn into_statements(self) -> Vec<Stmt> {
        let mut out = Vec::with_capacity(self.0.len());
        for planned in self.0 {
            match planned {
                Planned::One(stmt) => out.push(stmt),
                Planned::Rows { table, rows, args } => table.statements(rows, args, &mut out),
            }
        }
        out
    }
}

/// The visits and follow-ups some changes wrote to.
#[derive(Debug, Default)]
struct Touched {
    visits: BTreeSet<VisitId>,
    follow_ups: BTreeSet<FollowUpId>,
    /// Visits the changes made at a key their author found empty, and did not remove
    /// or make again: new, unless another phone made one of the same id concurrently.
    made: BTreeSet<VisitId>,
}

/// What `changes` wrote to besides the profile, or `None` when they wrote to the
/// document root (a new document, a station move, a migration) or outside the schema,
/// or cannot be located: then every row is rewritten.
fn touched(doc: &Automerge, changes: &[Vec<u8>]) -> Option<Touched> {
    let mut out = Touched::default();
    // Visits whose key the changes wrote more than once, or removed, or overwrote.
    let mut made_again = BTreeSet::new();
    let mut locator = Locator::new(doc);
    for raw in changes {
        let change = Change::try_from(raw.as_slice()).ok()?;
        for touch in locator.touches(&change).ok()? {
            match classify(&touch) {
                // The resident row, closure included, is rewritten with every append.
                Target::Profile(_) | Target::Closure(_) => {}
                Target::Visit { id, field } => {
                    out.visits.insert(id);
                    if field.is_none() {
                        if touch.make && !touch.replaces && !made_again.contains(&id) {
                            out.made.insert(id);
                        } else {
                            made_again.insert(id);
                        }
                    }
                }
                Target::FollowUp { id, .. } | Target::Comment { follow_up: id, .. } => {
                    out.follow_ups.insert(id);
                }
                Target::Root(_) | Target::CatalogEntry { .. } | Target::Unknown => return None,
            }
        }
    }
    out.made.retain(|id| !made_again.contains(id));
    Some(out)
}

fn unprojectable(doc: DocId, e: sync_core::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "document {doc} cannot be projected: {e}; check it with the operator tools"
    ))
}

/// The whole projection of a case file.
fn full(doc: DocId, file: &CaseFile) -> Result<Projection> {
    Projection::of_file(file).map_err(|e| unprojectable(doc, e))
}

/// Rewrites the rows of the touched visits and follow-ups, and the resident row.
fn partial(doc: DocId, file: &CaseFile, touched: &Touched, heads: Vec<u8>) -> Result<Plan> {
    let bad = |e| unprojectable(doc, e);
    let place = Place {
        resident: file.id(),
        district: file.district().map_err(bad)?,
        station: file.station().map_err(bad)?,
    };
    let mut plan = Plan::default();
    let resident = || id(&place.resident.0);
    for v in &touched.visits {
        // The rows show the document before these changes (the plan runs only then,
        // see `Pending::take_plan`), where a visit they made is not: it has no rows to
        // delete. Unless a phone made one of the same id concurrently, whose rows are
        // there.
        if !(touched.made.contains(v) && file.visit_values(*v) == 1) {
            for sql in DELETE_VISIT {
                plan.push(sql, vec![resident(), id(&v.0)]);
            }
        }
        if let Some(visit) = file.visit(*v).map_err(bad)? {
            let (row, services, hazards) = place.visit(&visit);
            plan.visit(&row);
            services.iter().for_each(|s| plan.service(s));
            hazards.iter().for_each(|h| plan.hazard(h));
        }
    }
    for f in &touched.follow_ups {
        plan.push(DELETE_FOLLOW_UP, vec![resident(), id(&f.0)]);
        if let Some(ticket) = file.follow_up(*f).map_err(bad)? {
            plan.follow_up(&place.follow_up(&ticket));
        }
    }
    let profile = file.profile().map_err(bad)?;
    let conflicts = file.conflicts().map_err(bad)?.len();
    let closure = file.closure().map_err(bad)?;
    plan.resident(
        &place,
        &profile,
        i64::try_from(conflicts).unwrap_or(i64::MAX),
        closure.as_ref(),
        heads,
    );
    Ok(plan)
}

/// An append's projection, worked out before its transaction opens, and the copy of
/// the document that the cache keeps afterwards (read for the projection on the way:
/// `CaseFile` owns its document, and the cache needed a copy anyway).
#[derive(Debug)]
pub(super) enum Pending {
    /// A catalog: its district's rows are rewritten whole.
    Catalog {
        catalog: CatalogDoc,
        plan: Vec<Stmt>,
    },
    /// A case file.
    Resident {
        doc: DocId,
        file: CaseFile,
        /// The rows the append's changes affect.
        plan: Plan,
        /// `plan` rewrites every row of the document.
        whole: bool,
        /// The document's heads after the append.
        heads: Vec<u8>,
    },
}

impl Pending {
    pub(super) fn new(a: &Append<'_>) -> Result<Pending> {
        let copy = a.after.clone();
        if a.place.station.is_none() {
            let (catalog, rows) = super::catalog_rows::project(a.doc, copy)?;
            let plan = super::catalog_rows::plan(catalog.district(), &rows);
            return Ok(Pending::Catalog { catalog, plan });
        }
        let heads = heads_bytes(&copy.get_heads());
        let file = CaseFile::from_doc(copy).map_err(|e| unprojectable(a.doc, e))?;
        if DocId::from(file.id()) != a.doc {
            return Err(StoreError::Corrupt(format!(
                "document {} declares the id {}",
                a.doc,
                file.id()
            )));
        }
        let touched = if a.expected_heads.is_empty() {
            None
        } else {
            touched(file.doc(), &a.changes)
        };
        let (plan, whole) = match &touched {
            Some(t) => (partial(a.doc, &file, t, heads.clone())?, false),
            None => (Plan::full(&full(a.doc, &file)?, heads.clone()), true),
        };
        Ok(Pending::Resident {
            doc: a.doc,
            file,
            plan,
            whole,
            heads,
        })
    }

    /// Whether the document is a case file, whose rows record the heads they show.
    pub(super) fn is_case_file(&self) -> bool {
        matches!(self, Pending::Resident { .. })
    }

    /// The statements to run. `current`: the stored rows show the heads the append
    /// was checked against, so rewriting what the changes touched is enough.
    pub(super) fn take_plan(&mut self, current: bool) -> Result<Vec<Stmt>> {
        match self {
            Pending::Catalog { plan, .. } => Ok(std::mem::take(plan)),
            Pending::Resident {
                plan, whole: true, ..
            } => Ok(std::mem::take(plan).into_statements()),
            Pending::Resident { plan, .. } if current => Ok(std::mem::take(plan).into_statements()),
            Pending::Resident {
                doc, file, heads, ..
            } => Ok(Plan::full(&full(*doc, file)?, heads.clone()).into_statements()),
        }
    }

    /// Puts back the statements [`Pending::take_plan`] gave, once the transaction they
    /// ran in has failed and the append is to be written again. They may be the whole
    /// document's rows where only the touched ones were due, which is never wrong.
    pub(super) fn restore_plan(&mut self, stmts: Vec<Stmt>) {
        match self {
            Pending::Catalog { plan, .. } => *plan = stmts,
            Pending::Resident { plan, .. } => {
                *plan = Plan(stmts.into_iter().map(Planned::One).collect());
            }
        }
    }

    /// The document after the append.
    pub(super) fn doc(&self) -> &Automerge {
        match self {
            Pending::Catalog { catalog, .. } => catalog.doc(),
            Pending::Resident { file, .. } => file.doc(),
        }
    }

    pub(super) fn into_doc(self) -> Automerge {
        match self {
            Pending::Catalog { catalog, .. } => catalog.into_doc(),
            Pending::Resident { file, .. } => file.into_doc(),
        }
    }
}

// ---- reading, rebuilding, checking -----------------------------------------------------

/// Typed column reads shared by both backends' rows.
trait Fields {
    fn bytes(&self, col: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error>;
}

macro_rules! fields_of {
    ($row:ty) => {
        impl Fields for $row {
            fn bytes(&self, col: &str) -> Result<Vec<u8>, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
                self.try_get(col)
            }
            fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(col)
            }
            fn text(&self, col: &str) -> Result<String, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(col)
            }
            fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
                self.try_get(col)
            }
        }
    };
}
fields_of!(sqlx::sqlite::SqliteRow);
fields_of!(sqlx::postgres::PgRow);

fn uuid_of(bytes: &[u8], col: &str) -> Result<Uuid> {
    Uuid::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt(format!("projection column {col} is not a 16-byte id")))
}

fn id_col<I: From<Uuid>>(r: &impl Fields, col: &str) -> Result<I> {
    uuid_of(&r.bytes(col)?, col).map(I::from)
}

fn opt_id_col<I: From<Uuid>>(r: &impl Fields, col: &str) -> Result<Option<I>> {
    r.opt_bytes(col)?
        .map(|b| uuid_of(&b, col).map(I::from))
        .transpose()
}

fn parse<T>(code: &str, col: &str, from_code: fn(&str) -> Option<T>) -> Result<T> {
    from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("projection column {col} holds {code:?}")))
}

fn code_col<T>(r: &impl Fields, col: &str, from_code: fn(&str) -> Option<T>) -> Result<T> {
    parse(&r.text(col)?, col, from_code)
}

fn opt_code_col<T>(
    r: &impl Fields,
    col: &str,
    from_code: fn(&str) -> Option<T>,
) -> Result<Option<T>> {
    r.opt_text(col)?
        .map(|c| parse(&c, col, from_code))
        .transpose()
}

fn resident_row(r: &impl Fields) -> Result<(ResidentRow, Vec<u8>)> {
    let row = ResidentRow {
        id: id_col(r, "id")?,
        district: id_col(r, "district")?,
        station: id_col(r, "station")?,
        profile: Profile {
            name: r.text("name")?,
            address: r.text("address")?,
            phone: r.text("phone")?,
            birth_year: r.opt_int("birth_year")?,
            living_situation: opt_code_col(r, "living_situation", LivingSituation::from_code)?,
            emergency_contact: r.text("emergency_contact")?,
            needs: r.text("needs")?,
            risk_level: opt_code_col(r, "risk_level", RiskLevel::from_code)?,
            visit_every_days: r.opt_int("visit_every_days")?,
        },
        last_visit_at: r.opt_int("last_visit_at")?,
        live_visits: r.int("live_visits")?,
        open_follow_ups: r.int("open_follow_ups")?,
        profile_conflicts: r.int("profile_conflicts")?,
        closure: match opt_code_col(r, "closed_reason", ClosureReason::from_code)? {
            None => None,
            Some(reason) => Some(Closure {
                reason,
                note: r.opt_text("closed_note")?.unwrap_or_default(),
                at: r.opt_int("closed_at")?.unwrap_or(0),
                by: opt_id_col(r, "closed_by")?.unwrap_or(UserId(Uuid::nil())),
            }),
        },
    };
    Ok((row, r.bytes("heads")?))
}

fn visit_row(r: &impl Fields) -> Result<VisitRow> {
    Ok(VisitRow {
        resident: id_col(r, "resident")?,
        id: id_col(r, "id")?,
        district: id_col(r, "district")?,
        station: id_col(r, "station")?,
        volunteer: id_col(r, "volunteer")?,
        project: id_col(r, "project")?,
        unit: opt_id_col(r, "unit")?,
        started_at: r.int("started_at")?,
        ended_at: r.int("ended_at")?,
        duration_minutes: r.int("duration_minutes")?,
        wellbeing: code_col(r, "wellbeing", Wellbeing::from_code)?,
        systolic: r.opt_int("systolic")?,
        diastolic: r.opt_int("diastolic")?,
        blood_sugar_dmmol: r.opt_int("blood_sugar_dmmol")?,
        remarks: r.text("remarks")?,
        notes: r.text("notes")?,
        follow_up_needed: r.flag("follow_up_needed")?,
        tombstoned: r.flag("tombstoned")?,
        review_status: code_col(r, "review_status", ReviewStatus::from_code)?,
        reviewer: opt_id_col(r, "reviewer")?,
        reviewed_at: r.opt_int("reviewed_at")?,
        review_comment: r.opt_text("review_comment")?,
        hazards_found: r.int("hazards_found")?,
        hazards_fixed: r.int("hazards_fixed")?,
    })
}

fn service_row(r: &impl Fields) -> Result<ServiceRow> {
    Ok(ServiceRow {
        resident: id_col(r, "resident")?,
        visit: id_col(r, "visit")?,
        position: r.int("position")?,
        service_type: id_col(r, "service_type")?,
    })
}

fn hazard_row(r: &impl Fields) -> Result<HazardRow> {
    Ok(HazardRow {
        resident: id_col(r, "resident")?,
        visit: id_col(r, "visit")?,
        position: r.int("position")?,
        hazard_type: id_col(r, "hazard_type")?,
        severity: code_col(r, "severity", Severity::from_code)?,
        fixed_on_spot: r.flag("fixed_on_spot")?,
        note: r.text("note")?,
    })
}

fn follow_up_row(r: &impl Fields) -> Result<FollowUpRow> {
    Ok(FollowUpRow {
        resident: id_col(r, "resident")?,
        id: id_col(r, "id")?,
        district: id_col(r, "district")?,
        station: id_col(r, "station")?,
        visit: opt_id_col(r, "visit")?,
        title: r.text("title")?,
        status: code_col(r, "status", FollowUpStatus::from_code)?,
        owner: opt_id_col(r, "owner")?,
        deadline: r.opt_int("deadline")?,
        opened_by: id_col(r, "opened_by")?,
        opened_at: r.int("opened_at")?,
        closed_by: opt_id_col(r, "closed_by")?,
        closed_at: r.opt_int("closed_at")?,
        resolution: r.text("resolution")?,
        comments: r.int("comments")?,
    })
}

/// One resident's rows as stored, possibly incomplete.
#[derive(Debug)]
struct Stored {
    /// The resident row and the heads it shows.
    resident: Option<(ResidentRow, Vec<u8>)>,
    visits: Vec<VisitRow>,
    services: Vec<ServiceRow>,
    hazards: Vec<HazardRow>,
    follow_ups: Vec<FollowUpRow>,
}

/// What [`SqlStore::rebuild_projections`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Case files projected.
    pub residents: usize,
    /// Visit rows written.
    pub visits: usize,
    /// Service rows written.
    pub services: usize,
    /// Hazard rows written.
    pub hazards: usize,
    /// Follow-up rows written.
    pub follow_ups: usize,
    /// Catalogs whose rows were rewritten.
    pub catalogs: usize,
    /// Rows removed because they named no case file.
    pub orphans_removed: u64,
    /// Case files (and catalogs) that changed under every attempt to rebuild them;
    /// their rows are as the appends left them. Run the rebuild again.
    pub busy: Vec<DocId>,
}

/// What [`SqlStore::check_projections`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Case files compared.
    pub residents: usize,
    /// Where the rows differ from what the documents project to.
    pub mismatches: Vec<Mismatch>,
}

impl CheckReport {
    /// Every projection matches its document.
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// A case file whose rows differ from what it projects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The document (or, for rows without a case file, the id they name).
    pub doc: DocId,
    /// What differs.
    pub problem: String,
}

/// How rebuilding one document went.
enum Rebuilt {
    Written(Box<Projection>),
    /// The document is no longer stored.
    Gone,
    /// It changed under every attempt.
    Busy,
}

/// Attempts per document before a rebuild or a check gives up on one that keeps
/// changing under it.
const ATTEMPTS: usize = 5;

/// Writes a plan for `$doc` if the stored document still has `$heads`, inside `$tx`
/// whose backend lock is held; evaluates to whether it did.
macro_rules! rewrite_if_unchanged {
    ($tx:ident, $doc:expr, $heads:expr, $plan:expr, $sqlite:expr) => {{
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT heads FROM documents WHERE id = $1")
                .bind($doc.0.as_bytes().to_vec())
                .fetch_optional(&mut *$tx)
                .await?;
        if stored.as_deref() == Some($heads) {
            run_plan!($tx, $plan, $sqlite);
            $tx.commit().await?;
            true
        } else {
            false
        }
    }};
}

impl SqlStore {
    /// One resident's projection as stored; `None` when the resident has no row.
    pub async fn projection(&self, resident: ResidentId) -> Result<Option<Projection>> {
        let stored = self.stored_projection(resident).await?;
        Ok(stored.resident.map(|(row, _)| Projection {
            resident: row,
            visits: stored.visits,
            services: stored.services,
            hazards: stored.hazards,
            follow_ups: stored.follow_ups,
        }))
    }

    /// Reads every row naming `resident`, in one snapshot.
    async fn stored_projection(&self, resident: ResidentId) -> Result<Stored> {
        let id = resident.0.as_bytes().to_vec();
        macro_rules! rows {
            ($tx:ident, $sql:literal, $read:ident) => {
                sqlx::query($sql)
                    .bind(id.clone())
                    .fetch_all(&mut *$tx)
                    .await?
                    .iter()
                    .map(|r| $read(r))
                    .collect::<Result<Vec<_>>>()?
            };
        }
        macro_rules! read_all {
            ($tx:ident) => {{
                let resident = sqlx::query("SELECT * FROM resident_rows WHERE id = $1")
                    .bind(id.clone())
                    .fetch_optional(&mut *$tx)
                    .await?
                    .map(|r| resident_row(&r))
                    .transpose()?;
                let mut stored = Stored {
                    resident,
                    visits: rows!(
                        $tx,
                        "SELECT * FROM visit_rows WHERE resident = $1",
                        visit_row
                    ),
                    services: rows!(
                        $tx,
                        "SELECT * FROM visit_services WHERE resident = $1",
                        service_row
                    ),
                    hazards: rows!(
                        $tx,
                        "SELECT * FROM visit_hazards WHERE resident = $1",
                        hazard_row
                    ),
                    follow_ups: rows!(
                        $tx,
                        "SELECT * FROM follow_up_rows WHERE resident = $1",
                        follow_up_row
                    ),
                };
                $tx.commit().await?;
                stored.visits.sort_by_key(|v| v.id);
                stored.services.sort_by_key(|s| (s.visit, s.position));
                stored.hazards.sort_by_key(|h| (h.visit, h.position));
                stored.follow_ups.sort_by_key(|f| f.id);
                stored
            }};
        }
        Ok(match &self.pool {
            // A SQLite transaction reads one snapshot from its first read on.
            Pool::Sqlite(p) => {
                let mut tx = p.begin().await?;
                read_all!(tx)
            }
            Pool::Postgres(p) => {
                let mut tx = p
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                read_all!(tx)
            }
        })
    }

    /// Case-file ids, in order.
    async fn case_files(&self) -> Result<Vec<DocId>> {
        self.ids(
            "SELECT id FROM documents WHERE station IS NOT NULL ORDER BY id",
            &[],
        )
        .await
    }

    /// Deletes and rewrites every projection from the stored documents, one document
    /// per transaction, so it can run on a live server: appends go on meanwhile, and a
    /// page reads each resident's rows either old or new, never half-written.
    pub async fn rebuild_projections(&self) -> Result<RebuildReport> {
        let mut report = RebuildReport::default();
        for sql in DELETE_ORPHANS {
            report.orphans_removed += with_pool!(self, p => sqlx::query(sql)
                .execute(p)
                .await?
                .rows_affected());
        }
        for doc in self.case_files().await? {
            match self.rebuild_one(doc).await? {
                Rebuilt::Written(p) => {
                    report.residents += 1;
                    report.visits += p.visits.len();
                    report.services += p.services.len();
                    report.hazards += p.hazards.len();
                    report.follow_ups += p.follow_ups.len();
                }
                Rebuilt::Gone => {}
                Rebuilt::Busy => report.busy.push(doc),
            }
        }
        let (catalogs, busy) = self.rebuild_catalogs().await?;
        report.catalogs = catalogs;
        report.busy.extend(busy);
        Ok(report)
    }

    async fn rebuild_one(&self, doc: DocId) -> Result<Rebuilt> {
        for _ in 0..ATTEMPTS {
            let Some(loaded) = self.load(doc).await? else {
                return Ok(Rebuilt::Gone);
            };
            if let Some(p) = self.rewrite_from(doc, loaded).await? {
                return Ok(Rebuilt::Written(Box::new(p)));
            }
        }
        Ok(Rebuilt::Busy)
    }

    /// Rewrites `doc`'s rows from `loaded`, projected outside any lock, if the store
    /// still holds exactly that version; `None` if an append moved it on meanwhile.
    async fn rewrite_from(&self, doc: DocId, loaded: Automerge) -> Result<Option<Projection>> {
        let heads = heads_bytes(&loaded.get_heads());
        let file = CaseFile::from_doc(loaded).map_err(|e| unprojectable(doc, e))?;
        let projection = full(doc, &file)?;
        let plan = Plan::full(&projection, heads.clone()).into_statements();
        let written = self.write_if_unchanged(doc, &heads, plan).await?;
        Ok(written.then_some(projection))
    }

    /// Runs `plan` if `doc` is still stored at `heads`, under the lock appends take;
    /// `false` if an append moved it on.
    pub(super) async fn write_if_unchanged(
        &self,
        doc: DocId,
        heads: &[u8],
        plan: Vec<Stmt>,
    ) -> Result<bool> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                rewrite_if_unchanged!(tx, doc, heads, plan, true)
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                super::lock_document(&mut tx, doc.0.as_bytes()).await?;
                rewrite_if_unchanged!(tx, doc, heads, plan, false)
            }
        })
    }

    /// Compares every case file's rows with what its document projects to, and looks
    /// for rows that name no case file. Reads only; [`Self::rebuild_projections`]
    /// repairs what it finds.
    pub async fn check_projections(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        for doc in self.case_files().await? {
            report.residents += 1;
            if let Some(problem) = self.check_one(doc).await? {
                report.mismatches.push(Mismatch { doc, problem });
            }
        }
        for doc in self.ids(ORPHANS, &[]).await? {
            report.mismatches.push(Mismatch {
                doc,
                problem: "rows name a resident that has no case file".into(),
            });
        }
        report.mismatches.extend(self.check_catalogs().await?);
        Ok(report)
    }

    async fn check_one(&self, doc: DocId) -> Result<Option<String>> {
        let mut problem = None;
        for _ in 0..ATTEMPTS {
            let Some(loaded) = self.load(doc).await? else {
                return Ok(None);
            };
            let heads = heads_bytes(&loaded.get_heads());
            let expected = match CaseFile::from_doc(loaded).and_then(|f| Projection::of_file(&f)) {
                Ok(p) => p,
                Err(e) => return Ok(Some(format!("the document cannot be projected: {e}"))),
            };
            let stored = self.stored_projection(doc.into()).await?;
            problem = differences(&expected, &heads, &stored);
            // Rows of other heads are expected if an append landed meanwhile.
            if problem.is_none() || self.stored_heads(doc).await?.as_ref() == Some(&heads) {
                return Ok(problem);
            }
        }
        Ok(problem)
    }
}

/// What differs between the rows a document projects to and the stored ones.
fn differences(expected: &Projection, heads: &[u8], stored: &Stored) -> Option<String> {
    let Some((resident, stored_heads)) = &stored.resident else {
        return Some("the resident row is missing".into());
    };
    let mut out = Vec::new();
    if stored_heads != heads {
        out.push("rows show other heads than the document's");
    }
    if resident != &expected.resident {
        out.push("the resident row differs");
    }
    if stored.visits != expected.visits {
        out.push("visit rows differ");
    }
    if stored.services != expected.services {
        out.push("service rows differ");
    }
    if stored.hazards != expected.hazards {
        out.push("hazard rows differ");
    }
    if stored.follow_ups != expected.follow_ups {
        out.push("follow-up rows differ");
    }
    (!out.is_empty()).then(|| out.join("; "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use sync_core::automerge::ActorId;
    use sync_core::protocol::server::place_of;
    use sync_core::protocol::store::AppendOutcome;
    use sync_core::rules::Editor;

    const NOW: Timestamp = 1_763_942_400_000;

    /// The append of resident 1's changes in `after` beyond `before`.
    fn append_of<'a>(
        before: &'a [sync_core::automerge::ChangeHash],
        after: &'a Automerge,
    ) -> Append<'a> {
        let changes = after.get_changes(before);
        Append {
            doc: DocId(Uuid::from_u128(1)),
            place: place_of(after).unwrap(),
            expected_heads: before,
            changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect(),
            hashes: changes.iter().map(|c| c.hash()).collect(),
            after,
            device: None,
            user: None,
            received_at: NOW,
        }
    }

    async fn append(
        store: &SqlStore,
        before: &[sync_core::automerge::ChangeHash],
        after: &Automerge,
    ) {
        let outcome = store.append(append_of(before, after)).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Stored(_)));
    }

    /// A rebuild projects outside the lock; if an append lands in between, the
    /// rebuild's older rows must not overwrite the append's.
    #[tokio::test]
    async fn a_rebuild_never_writes_over_a_newer_append() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.sqlite").display());
        let store = SqlStore::connect(&url, StoreOptions::default())
            .await
            .unwrap();
        let (staff, mut file) = staff_editor_file();
        let editor = Editor {
            principal: &staff,
            now: NOW,
        };
        append(&store, &[], file.doc()).await;
        let old = file.doc().clone();
        let ticket = FollowUpId(Uuid::from_u128(0xE1));
        file.open_follow_up(&editor, ticket, None, "送药", None, None)
            .unwrap();
        append(&store, &old.get_heads(), file.doc()).await;
        let doc = DocId(Uuid::from_u128(1));
        let newer = store.projection(file.id()).await.unwrap();
        assert_eq!(newer.as_ref().map(|p| p.follow_ups.len()), Some(1));

        assert_eq!(store.rewrite_from(doc, old).await.unwrap(), None);
        assert_eq!(store.projection(file.id()).await.unwrap(), newer);
        let current = file.doc().clone();
        assert_eq!(store.rewrite_from(doc, current).await.unwrap(), newer);
    }

    fn staff_editor_file() -> (Principal, CaseFile) {
        let staff = Principal {
            user: UserId(Uuid::from_u128(0xC0)),
            role: Role::Coordinator,
            scope: Scope::District(DistrictId(Uuid::from_u128(0xD1))),
        };
        let editor = Editor {
            principal: &staff,
            now: NOW,
        };
        let profile = Profile {
            name: "周阿姨".into(),
            address: String::new(),
            phone: String::new(),
            birth_year: None,
            living_situation: None,
            emergency_contact: String::new(),
            needs: String::new(),
            risk_level: None,
            visit_every_days: None,
        };
        let file = CaseFile::create(
            ActorId::from(vec![1; 16]),
            &editor,
            ResidentId(Uuid::from_u128(1)),
            DistrictId(Uuid::from_u128(0xD1)),
            StationId(Uuid::from_u128(0x5A)),
            &profile,
        )
        .unwrap();
        (staff, file)
    }

    fn record(notes: &str) -> VisitRecord {
        VisitRecord {
            project: ProjectId(Uuid::from_u128(0x90)),
            unit: None,
            started_at: NOW - 3_600_000,
            ended_at: NOW - 1_800_000,
            services: vec![],
            condition: Condition {
                wellbeing: Wellbeing::Good,
                systolic: None,
                diastolic: None,
                blood_sugar_dmmol: None,
                remarks: String::new(),
            },
            hazards: vec![],
            notes: notes.into(),
            follow_up_needed: false,
        }
    }

    /// How many deletes an append of `after` over `before` plans when the rows show
    /// `before`.
    fn deletes_planned(before: &Automerge, after: &Automerge) -> usize {
        let heads = before.get_heads();
        let mut pending = Pending::new(&append_of(&heads, after)).unwrap();
        let plan = pending.take_plan(true).unwrap();
        plan.iter().filter(|s| s.sql.starts_with("DELETE")).count()
    }

    /// A visit the changes make has no rows yet: its plan deletes none. An amended
    /// visit's rows are deleted and written again; so are a visit's that another phone
    /// made concurrently at the same id (which the rules refuse, but a document may
    /// hold).
    #[test]
    fn only_a_visit_made_at_an_empty_key_skips_the_deletes() {
        let (staff, mut file) = staff_editor_file();
        let editor = Editor {
            principal: &staff,
            now: NOW,
        };
        let a = VisitId(Uuid::from_u128(0xF1));
        let created = file.doc().clone();
        file.log_visit(&editor, a, &record("读报")).unwrap();
        assert_eq!(deletes_planned(&created, file.doc()), 0);

        let logged = file.doc().clone();
        file.amend_visit(&editor, a, &record("读报，量血压"))
            .unwrap();
        assert_eq!(deletes_planned(&logged, file.doc()), DELETE_VISIT.len());

        // Two phones make visit `b` concurrently; the second's changes arrive on a
        // document that holds the first's.
        let b = VisitId(Uuid::from_u128(0xF2));
        let mut one =
            CaseFile::from_doc(file.doc().fork().with_actor(ActorId::from(vec![2; 16]))).unwrap();
        let mut two =
            CaseFile::from_doc(file.doc().fork().with_actor(ActorId::from(vec![3; 16]))).unwrap();
        one.log_visit(&editor, b, &record("一")).unwrap();
        two.log_visit(&editor, b, &record("二")).unwrap();
        let first = one.doc().clone();
        let mut both = one.doc().clone();
        both.merge(&mut two.doc().clone()).unwrap();
        assert_eq!(deletes_planned(&first, &both), DELETE_VISIT.len());
    }
}
