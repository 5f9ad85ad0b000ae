//! The domain types: what a case file and a catalog hold once hydrated, and who may
//! act on them. See `DOMAIN.md` for the words.

use crate::ids::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A closed set of values stored in documents as short, stable text codes.
macro_rules! code_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code stored in documents.
            pub const fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// Parses a stored code; `None` for an unknown one.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

code_enum!(
    /// What a user may do. Ordered by reach.
    Role {
        Volunteer = "volunteer",
        StationStaff = "station_staff",
        Coordinator = "coordinator",
        Admin = "admin",
    }
);

impl Role {
    /// Staff, coordinators and admins review visits, edit restricted profile fields and
    /// decide follow-ups.
    pub fn is_staff(self) -> bool {
        self != Role::Volunteer
    }
}

/// Which residents' case files a user may see and write. Resolved by the host from its
/// relational tables (assignments, station coverage) and handed to the core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// A volunteer: the residents assigned to them, within one district.
    Residents {
        /// The district the volunteer works in (its catalog is readable).
        district: DistrictId,
        /// The residents assigned.
        residents: BTreeSet<ResidentId>,
    },
    /// Station staff: every resident of these stations.
    Stations {
        /// The district the stations belong to.
        district: DistrictId,
        /// The stations covered.
        stations: BTreeSet<StationId>,
    },
    /// A coordinator or admin: the whole district.
    District(DistrictId),
}

impl Scope {
    /// The district this scope lies in.
    pub fn district(&self) -> DistrictId {
        match self {
            Scope::Residents { district, .. } | Scope::Stations { district, .. } => *district,
            Scope::District(d) => *d,
        }
    }

    /// Whether a resident living at `station` in `district` is within this scope.
    pub fn covers(&self, resident: ResidentId, district: DistrictId, station: StationId) -> bool {
        if district != self.district() {
            return false;
        }
        match self {
            Scope::Residents { residents, .. } => residents.contains(&resident),
            Scope::Stations { stations, .. } => stations.contains(&station),
            Scope::District(_) => true,
        }
    }
}

/// The authenticated user on whose behalf changes are made or checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Who.
    pub user: UserId,
    /// With which role.
    pub role: Role,
    /// Over which residents.
    pub scope: Scope,
}

code_enum!(
    /// Who the resident lives with.
    LivingSituation {
        Alone = "alone",
        WithSpouse = "with_spouse",
        WithFamily = "with_family",
        Other = "other",
    }
);

code_enum!(
    /// How closely the resident must be watched.
    RiskLevel {
        Low = "low",
        Medium = "medium",
        High = "high",
    }
);

/// A resident's profile. Fields merge one by one across devices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Full name. Restricted.
    pub name: String,
    /// Home address.
    pub address: String,
    /// Phone number.
    pub phone: String,
    /// Year of birth. Restricted.
    pub birth_year: Option<i64>,
    /// Who the resident lives with.
    pub living_situation: Option<LivingSituation>,
    /// Emergency contact, free text.
    pub emergency_contact: String,
    /// Needs, free text.
    pub needs: String,
    /// Risk level. Restricted.
    pub risk_level: Option<RiskLevel>,
    /// A visit is due every this many days. Restricted.
    pub visit_every_days: Option<i64>,
}

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// When a resident is next due a visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisitDue {
    /// A visit frequency is set but nobody has visited yet: due now.
    NeverVisited,
    /// Due at this time: the last live visit's start plus the frequency.
    At(Timestamp),
}

/// One local day: `[start, start + DAY_MS)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalDay {
    /// Local midnight, Unix ms.
    pub start: Timestamp,
}

impl LocalDay {
    /// The local day holding `now`, in a zone `utc_offset_minutes` east of UTC
    /// (Shanghai: 480).
    pub fn of(now: Timestamp, utc_offset_minutes: i32) -> LocalDay {
        let offset = i64::from(utc_offset_minutes) * 60_000;
        let local = now.saturating_add(offset);
        LocalDay {
            start: local.div_euclid(DAY_MS) * DAY_MS - offset,
        }
    }

    /// The next local midnight.
    pub fn end(self) -> Timestamp {
        self.start.saturating_add(DAY_MS)
    }
}

/// Where a resident stands for a visit on a local day (see [`Profile::due_on`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DueOn {
    /// A visit frequency is set and nobody has visited yet.
    NeverVisited,
    /// The next visit fell due before the day began.
    Overdue,
    /// The next visit falls due within the day.
    DueToday,
}

impl Profile {
    /// The due rule, the one the phone's due list and the coordinators' page both use:
    /// a resident whose profile sets a visit frequency is never visited, overdue (the
    /// next visit fell due before `day` began) or due today (it falls due within
    /// `day`); otherwise, or without a frequency, not due. With the time it fell due
    /// (`None` for never visited), to sort by.
    ///
    /// In SQL over `resident_rows` the residents this lists are exactly those with
    /// `visit_every_days > 0 AND (last_visit_at IS NULL OR last_visit_at +
    /// visit_every_days * DAY_MS < day.end())`; the server's due page uses that filter
    /// and its tests check that the two agree.
    pub fn due_on(
        &self,
        last_visit_at: Option<Timestamp>,
        day: LocalDay,
    ) -> Option<(DueOn, Option<Timestamp>)> {
        match self.visit_due(last_visit_at)? {
            VisitDue::NeverVisited => Some((DueOn::NeverVisited, None)),
            VisitDue::At(t) if t < day.start => Some((DueOn::Overdue, Some(t))),
            VisitDue::At(t) if t < day.end() => Some((DueOn::DueToday, Some(t))),
            VisitDue::At(_) => None,
        }
    }

    /// When the next visit is due after a last live visit at `last_visit_at`; `None`
    /// when the profile sets no visit frequency.
    pub fn visit_due(&self, last_visit_at: Option<Timestamp>) -> Option<VisitDue> {
        let days = self.visit_every_days.filter(|d| *d > 0)?;
        Some(match last_visit_at {
            None => VisitDue::NeverVisited,
            Some(last) => VisitDue::At(last.saturating_add(days.saturating_mul(DAY_MS))),
        })
    }
}

code_enum!(
    /// Why a case file was closed.
    ClosureReason {
        MovedAway = "moved_away",
        InHospital = "in_hospital",
        Deceased = "deceased",
        Other = "other",
    }
);

/// A closed case file: no longer visited, so it leaves the phones and the due lists,
/// and everything recorded in it stays on the server. Staff, coordinators and admins
/// close and reopen case files; reopening removes the closure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    /// Why.
    pub reason: ClosureReason,
    /// A note for colleagues (where the resident moved, which hospital).
    pub note: String,
    /// When it was closed.
    pub at: Timestamp,
    /// Who closed it.
    pub by: UserId,
}

/// A resident's whole case file, hydrated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resident {
    /// The resident (and case-file document) id.
    pub id: ResidentId,
    /// District.
    pub district: DistrictId,
    /// The station whose community the resident lives in. Restricted.
    pub station: StationId,
    /// The profile.
    pub profile: Profile,
    /// Every visit, tombstoned ones included, ordered by start time then id.
    pub visits: Vec<Visit>,
    /// Every follow-up ticket, ordered by opening time then id.
    pub follow_ups: Vec<FollowUp>,
    /// Set while the case file is closed.
    pub closure: Option<Closure>,
}

impl Resident {
    /// The visits that are not tombstoned.
    pub fn live_visits(&self) -> impl Iterator<Item = &Visit> {
        self.visits.iter().filter(|v| !v.tombstoned)
    }

    /// When the last live visit started.
    pub fn last_visit_at(&self) -> Option<Timestamp> {
        self.live_visits().map(|v| v.started_at).max()
    }
}

code_enum!(
    /// How the resident was doing.
    Wellbeing {
        Good = "good",
        Fair = "fair",
        Poor = "poor",
        Urgent = "urgent",
    }
);

/// The resident's condition as observed in a visit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Overall impression.
    pub wellbeing: Wellbeing,
    /// Blood pressure, systolic, mmHg.
    pub systolic: Option<i64>,
    /// Blood pressure, diastolic, mmHg.
    pub diastolic: Option<i64>,
    /// Blood sugar in tenths of mmol/L (so 6.1 mmol/L is 61).
    pub blood_sugar_dmmol: Option<i64>,
    /// Remarks.
    pub remarks: String,
}

code_enum!(
    /// How serious a hazard is.
    Severity {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
);

/// A hazard found in the home.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hazard {
    /// What kind, from the catalog.
    pub hazard_type: HazardTypeId,
    /// How serious.
    pub severity: Severity,
    /// Fixed on the spot (a worn power strip replaced, say).
    pub fixed_on_spot: bool,
    /// Free text.
    pub note: String,
}

code_enum!(
    /// Where a visit stands in the coordinators' review.
    ReviewStatus {
        Pending = "pending",
        Approved = "approved",
        NeedsAttention = "needs_attention",
    }
);

/// A coordinator's or staff member's review of a visit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The verdict.
    pub status: ReviewStatus,
    /// Who reviewed.
    pub reviewer: UserId,
    /// A comment that reaches the volunteer's phone.
    pub comment: String,
    /// When.
    pub at: Timestamp,
}

/// What a volunteer records about one visit. Used to log and to amend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitRecord {
    /// Under which project.
    pub project: ProjectId,
    /// For which unit the volunteer served, if known.
    pub unit: Option<UnitId>,
    /// Start, device clock.
    pub started_at: Timestamp,
    /// End, device clock.
    pub ended_at: Timestamp,
    /// Services given.
    pub services: Vec<ServiceTypeId>,
    /// How the resident was doing.
    pub condition: Condition,
    /// Hazards found.
    pub hazards: Vec<Hazard>,
    /// Notes.
    pub notes: String,
    /// Whether someone must follow up.
    pub follow_up_needed: bool,
}

/// One visit as stored in a case file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// The visit id.
    pub id: VisitId,
    /// The volunteer who made and owns the visit.
    pub volunteer: UserId,
    /// What was recorded.
    pub record: VisitRecord,
    /// Deleted. Visits are never removed; the flag keeps concurrent edits.
    pub tombstoned: bool,
    /// The review, if any.
    pub review: Option<Review>,
    /// Convenience copy of `record.started_at`.
    pub started_at: Timestamp,
}

impl Visit {
    /// The review status, `Pending` when nobody has reviewed.
    pub fn review_status(&self) -> ReviewStatus {
        self.review
            .as_ref()
            .map_or(ReviewStatus::Pending, |r| r.status)
    }
}

code_enum!(
    /// Whether a follow-up ticket is open.
    FollowUpStatus {
        Open = "open",
        Closed = "closed",
    }
);

impl FollowUpStatus {
    /// Whether a ticket in `status` with `deadline` is overdue at `now`: open and past
    /// its deadline. The one rule for every host, whether it holds the ticket or a row
    /// of it.
    pub fn overdue(status: FollowUpStatus, deadline: Option<Timestamp>, now: Timestamp) -> bool {
        status == FollowUpStatus::Open && deadline.is_some_and(|d| d < now)
    }
}

/// A comment on a follow-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// Comment id.
    pub id: CommentId,
    /// Who wrote it.
    pub author: UserId,
    /// When.
    pub at: Timestamp,
    /// What.
    pub text: String,
}

/// A follow-up ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// Ticket id.
    pub id: FollowUpId,
    /// The visit it was opened from, if any.
    pub visit: Option<VisitId>,
    /// What must be done.
    pub title: String,
    /// Who opened it.
    pub opened_by: UserId,
    /// When.
    pub opened_at: Timestamp,
    /// Who must act on it.
    pub owner: Option<UserId>,
    /// By when.
    pub deadline: Option<Timestamp>,
    /// Open or closed.
    pub status: FollowUpStatus,
    /// Who closed it.
    pub closed_by: Option<UserId>,
    /// When.
    pub closed_at: Option<Timestamp>,
    /// How it was resolved.
    pub resolution: String,
    /// Comments, oldest first.
    pub comments: Vec<Comment>,
}

impl FollowUp {
    /// Open and past its deadline at `now`.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        FollowUpStatus::overdue(self.status, self.deadline, now)
    }
}

/// A district's catalog, hydrated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Service stations.
    pub stations: Vec<CatalogEntry<StationId>>,
    /// Alliances.
    pub alliances: Vec<CatalogEntry<AllianceId>>,
    /// Member units; `parent` is the alliance.
    pub units: Vec<CatalogEntry<UnitId>>,
    /// Projects; `parent` is the alliance running them.
    pub projects: Vec<CatalogEntry<ProjectId>>,
    /// Service types.
    pub service_types: Vec<CatalogEntry<ServiceTypeId>>,
    /// Hazard types.
    pub hazard_types: Vec<CatalogEntry<HazardTypeId>>,
}

/// One entry of a catalog list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry<I> {
    /// Its id.
    pub id: I,
    /// Name in Chinese.
    pub name: String,
    /// Name in English.
    pub name_en: String,
    /// The containing entry's id (a unit's or project's alliance), if any.
    pub parent: Option<uuid::Uuid>,
    /// Retired entries stay so old visits still resolve, but are not offered.
    pub archived: bool,
}

code_enum!(
    /// The lists a catalog holds.
    CatalogKind {
        Station = "stations",
        Alliance = "alliances",
        Unit = "units",
        Project = "projects",
        ServiceType = "service_types",
        HazardType = "hazard_types",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_due_rule_counts_whole_local_days() {
        // 2025-11-24 00:30 in Shanghai is 2025-11-23 16:30 UTC.
        let now = 1_763_915_400_000;
        let day = LocalDay::of(now, 480);
        assert_eq!(day.start, 1_763_913_600_000); // 2025-11-23 16:00 UTC
        assert_eq!(LocalDay::of(day.start, 480), day);
        assert_eq!(LocalDay::of(day.end() - 1, 480), day);
        let weekly = Profile {
            visit_every_days: Some(7),
            ..Profile::default()
        };
        let at = |ms| weekly.due_on(Some(ms), day).map(|(d, _)| d);
        assert_eq!(weekly.due_on(None, day), Some((DueOn::NeverVisited, None)));
        // Visited a week ago minus a minute: due later today, though not yet this moment.
        assert_eq!(at(now - 7 * DAY_MS + 60_000), Some(DueOn::DueToday));
        assert_eq!(at(day.start - 7 * DAY_MS), Some(DueOn::DueToday));
        assert_eq!(at(day.start - 7 * DAY_MS - 1), Some(DueOn::Overdue));
        assert_eq!(at(day.end() - 7 * DAY_MS), None, "due tomorrow");
        // No frequency, or a nonsense one: never listed, however long ago the visit.
        for every in [None, Some(0), Some(-3)] {
            let p = Profile {
                visit_every_days: every,
                ..Profile::default()
            };
            assert_eq!(p.due_on(None, day), None);
            assert_eq!(p.due_on(Some(0), day), None);
        }
    }
    use uuid::Uuid;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for r in Role::ALL {
            assert_eq!(Role::from_code(r.code()), Some(*r));
        }
        for s in ReviewStatus::ALL {
            assert_eq!(ReviewStatus::from_code(s.code()), Some(*s));
        }
        assert_eq!(Severity::from_code("catastrophic"), None);
        assert!(!Role::Volunteer.is_staff() && Role::StationStaff.is_staff());
    }

    #[test]
    fn scopes_cover_what_they_name_within_their_district() {
        let d = DistrictId(Uuid::from_u128(1));
        let other = DistrictId(Uuid::from_u128(2));
        let (s1, s2) = (
            StationId(Uuid::from_u128(10)),
            StationId(Uuid::from_u128(11)),
        );
        let (r1, r2) = (
            ResidentId(Uuid::from_u128(20)),
            ResidentId(Uuid::from_u128(21)),
        );
        let volunteer = Scope::Residents {
            district: d,
            residents: BTreeSet::from([r1]),
        };
        assert!(volunteer.covers(r1, d, s2));
        assert!(!volunteer.covers(r2, d, s1));
        assert!(!volunteer.covers(r1, other, s1));
        let staff = Scope::Stations {
            district: d,
            stations: BTreeSet::from([s1]),
        };
        assert!(staff.covers(r2, d, s1) && !staff.covers(r2, d, s2));
        assert!(Scope::District(d).covers(r2, d, s2) && !Scope::District(d).covers(r2, other, s2));
    }

    #[test]
    fn a_visit_is_due_the_frequency_after_the_last_one() {
        let mut p = Profile {
            name: "王阿婆".into(),
            address: String::new(),
            phone: String::new(),
            birth_year: None,
            living_situation: None,
            emergency_contact: String::new(),
            needs: String::new(),
            risk_level: None,
            visit_every_days: None,
        };
        assert_eq!(p.visit_due(Some(5)), None);
        p.visit_every_days = Some(0);
        assert_eq!(p.visit_due(None), None);
        p.visit_every_days = Some(7);
        assert_eq!(p.visit_due(None), Some(VisitDue::NeverVisited));
        assert_eq!(
            p.visit_due(Some(1_000)),
            Some(VisitDue::At(1_000 + 7 * DAY_MS))
        );
        assert_eq!(p.visit_due(Some(i64::MAX)), Some(VisitDue::At(i64::MAX)));
    }

    #[test]
    fn a_follow_up_is_overdue_only_while_open_and_past_its_deadline() {
        let u = UserId(Uuid::from_u128(1));
        let mut f = FollowUp {
            id: FollowUpId(Uuid::from_u128(2)),
            visit: None,
            title: "t".into(),
            opened_by: u,
            opened_at: 0,
            owner: None,
            deadline: Some(100),
            status: FollowUpStatus::Open,
            closed_by: None,
            closed_at: None,
            resolution: String::new(),
            comments: vec![],
        };
        assert!(!f.is_overdue(100) && f.is_overdue(101));
        f.status = FollowUpStatus::Closed;
        assert!(!f.is_overdue(101));
    }
}
