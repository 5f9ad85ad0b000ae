//! The records and enums apps see, converted from and to the core's types with `From`
//! (and `TryFrom` where the app's text must parse). Ids travel as UUID text, times as
//! Unix milliseconds.

use crate::error::LinliError;
use std::str::FromStr;
use sync_core::ids::*;
use sync_core::model;

/// Parses an id the app passed.
pub(crate) fn parse_id<T: FromStr>(what: &str, text: &str) -> Result<T, LinliError> {
    text.trim()
        .parse()
        .map_err(|_| LinliError::invalid(format!("{what} {text:?} is not a UUID")))
}

macro_rules! mirror_enum {
    ($(#[$doc:meta])* $name:ident = $core:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl From<model::$core> for $name {
            fn from(v: model::$core) -> Self {
                match v { $(model::$core::$variant => $name::$variant),+ }
            }
        }

        impl From<$name> for model::$core {
            fn from(v: $name) -> Self {
                match v { $($name::$variant => model::$core::$variant),+ }
            }
        }
    };
}

mirror_enum!(
    /// What a user may do.
    UserRole = Role { Volunteer, StationStaff, Coordinator, Admin }
);
mirror_enum!(
    /// Who the resident lives with.
    LivingSituation = LivingSituation { Alone, WithSpouse, WithFamily, Other }
);
mirror_enum!(
    /// How closely the resident must be watched.
    RiskLevel = RiskLevel { Low, Medium, High }
);
mirror_enum!(
    /// How the resident was doing.
    Wellbeing = Wellbeing { Good, Fair, Poor, Urgent }
);
mirror_enum!(
    /// How serious a hazard is.
    Severity = Severity { Low, Medium, High, Critical }
);
mirror_enum!(
    /// Where a visit stands in review.
    ReviewStatus = ReviewStatus { Pending, Approved, NeedsAttention }
);
mirror_enum!(
    /// The lists a district's catalog holds.
    CatalogKind = CatalogKind { Station, Alliance, Unit, Project, ServiceType, HazardType }
);
mirror_enum!(
    /// Whether a follow-up is open.
    FollowUpStatus = FollowUpStatus { Open, Closed }
);

/// Who this phone is enrolled as.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Identity {
    /// The server the phone syncs with.
    pub server_url: String,
    /// This device.
    pub device_id: String,
    /// The user.
    pub user_id: String,
    /// The user's name as others see it.
    pub display_name: String,
    /// The user's role.
    pub role: UserRole,
    /// The district the user works in.
    pub district_id: String,
}

/// A resident's profile.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ProfileRecord {
    /// Full name.
    pub name: String,
    /// Home address.
    #[uniffi(default)]
    pub address: String,
    /// Phone number.
    #[uniffi(default)]
    pub phone: String,
    /// Year of birth.
    #[uniffi(default)]
    pub birth_year: Option<i64>,
    /// Who the resident lives with.
    #[uniffi(default)]
    pub living_situation: Option<LivingSituation>,
    /// Emergency contact.
    #[uniffi(default)]
    pub emergency_contact: String,
    /// Needs.
    #[uniffi(default)]
    pub needs: String,
    /// Risk level.
    #[uniffi(default)]
    pub risk_level: Option<RiskLevel>,
    /// A visit is due every this many days.
    #[uniffi(default)]
    pub visit_every_days: Option<i64>,
}

impl From<model::Profile> for ProfileRecord {
    fn from(p: model::Profile) -> Self {
        ProfileRecord {
            name: p.name,
            address: p.address,
            phone: p.phone,
            birth_year: p.birth_year,
            living_situation: p.living_situation.map(Into::into),
            emergency_contact: p.emergency_contact,
            needs: p.needs,
            risk_level: p.risk_level.map(Into::into),
            visit_every_days: p.visit_every_days,
        }
    }
}

impl From<ProfileRecord> for model::Profile {
    fn from(p: ProfileRecord) -> Self {
        model::Profile {
            name: p.name,
            address: p.address,
            phone: p.phone,
            birth_year: p.birth_year,
            living_situation: p.living_situation.map(Into::into),
            emergency_contact: p.emergency_contact,
            needs: p.needs,
            risk_level: p.risk_level.map(Into::into),
            visit_every_days: p.visit_every_days,
        }
    }
}

/// The resident's condition as observed.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ConditionRecord {
    /// Overall impression.
    pub wellbeing: Wellbeing,
    /// Blood pressure, systolic, mmHg.
    #[uniffi(default)]
    pub systolic: Option<i64>,
    /// Blood pressure, diastolic, mmHg.
    #[uniffi(default)]
    pub diastolic: Option<i64>,
    /// Blood sugar in tenths of mmol/L.
    #[uniffi(default)]
    pub blood_sugar_dmmol: Option<i64>,
    /// Remarks.
    #[uniffi(default)]
    pub remarks: String,
}

/// A hazard found in the home.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct HazardRecord {
    /// The hazard type's id, from the catalog.
    pub hazard_type: String,
    /// How serious.
    pub severity: Severity,
    /// Fixed on the spot.
    #[uniffi(default)]
    pub fixed_on_spot: bool,
    /// Free text.
    #[uniffi(default)]
    pub note: String,
}

/// What a volunteer records about a visit: to log it, to amend it, and as read back.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct VisitInput {
    /// The project's id, from the catalog.
    pub project: String,
    /// The unit's id, if known.
    #[uniffi(default)]
    pub unit: Option<String>,
    /// Start (device clock, Unix ms).
    pub started_at: i64,
    /// End.
    pub ended_at: i64,
    /// Service type ids, from the catalog.
    #[uniffi(default)]
    pub services: Vec<String>,
    /// How the resident was doing.
    pub condition: ConditionRecord,
    /// Hazards found.
    #[uniffi(default)]
    pub hazards: Vec<HazardRecord>,
    /// Notes.
    #[uniffi(default)]
    pub notes: String,
    /// Whether someone must follow up.
    #[uniffi(default)]
    pub follow_up_needed: bool,
}

impl TryFrom<VisitInput> for model::VisitRecord {
    type Error = LinliError;
    fn try_from(v: VisitInput) -> Result<Self, LinliError> {
        Ok(model::VisitRecord {
            project: parse_id("project", &v.project)?,
            unit: v.unit.map(|u| parse_id("unit", &u)).transpose()?,
            started_at: v.started_at,
            ended_at: v.ended_at,
            services: v
                .services
                .iter()
                .map(|s| parse_id("service type", s))
                .collect::<Result<_, _>>()?,
            condition: model::Condition {
                wellbeing: v.condition.wellbeing.into(),
                systolic: v.condition.systolic,
                diastolic: v.condition.diastolic,
                blood_sugar_dmmol: v.condition.blood_sugar_dmmol,
                remarks: v.condition.remarks,
            },
            hazards: v
                .hazards
                .into_iter()
                .map(|h| {
                    Ok(model::Hazard {
                        hazard_type: parse_id("hazard type", &h.hazard_type)?,
                        severity: h.severity.into(),
                        fixed_on_spot: h.fixed_on_spot,
                        note: h.note,
                    })
                })
                .collect::<Result<_, LinliError>>()?,
            notes: v.notes,
            follow_up_needed: v.follow_up_needed,
        })
    }
}

impl From<model::VisitRecord> for VisitInput {
    fn from(r: model::VisitRecord) -> Self {
        VisitInput {
            project: r.project.to_string(),
            unit: r.unit.map(|u| u.to_string()),
            started_at: r.started_at,
            ended_at: r.ended_at,
            services: r.services.iter().map(ToString::to_string).collect(),
            condition: ConditionRecord {
                wellbeing: r.condition.wellbeing.into(),
                systolic: r.condition.systolic,
                diastolic: r.condition.diastolic,
                blood_sugar_dmmol: r.condition.blood_sugar_dmmol,
                remarks: r.condition.remarks,
            },
            hazards: r
                .hazards
                .into_iter()
                .map(|h| HazardRecord {
                    hazard_type: h.hazard_type.to_string(),
                    severity: h.severity.into(),
                    fixed_on_spot: h.fixed_on_spot,
                    note: h.note,
                })
                .collect(),
            notes: r.notes,
            follow_up_needed: r.follow_up_needed,
        }
    }
}

/// A coordinator's or staff member's review of a visit.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ReviewInfo {
    /// The verdict.
    pub status: ReviewStatus,
    /// Who reviewed.
    pub reviewer: String,
    /// The comment for the volunteer.
    pub comment: String,
    /// When (Unix ms).
    pub at: i64,
}

impl From<model::Review> for ReviewInfo {
    fn from(r: model::Review) -> Self {
        ReviewInfo {
            status: r.status.into(),
            reviewer: r.reviewer.to_string(),
            comment: r.comment,
            at: r.at,
        }
    }
}

/// One visit in a resident's timeline.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct VisitInfo {
    /// The visit's id.
    pub id: String,
    /// The volunteer who made it.
    pub volunteer: String,
    /// What was recorded.
    pub record: VisitInput,
    /// Deleted (visits are only ever tombstoned).
    pub tombstoned: bool,
    /// The review, if any.
    pub review: Option<ReviewInfo>,
    /// The server holds every write to this visit (it sent a receipt).
    pub receipted: bool,
}

/// A comment on a follow-up.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct CommentInfo {
    /// Its id.
    pub id: String,
    /// Who wrote it.
    pub author: String,
    /// When.
    pub at: i64,
    /// What.
    pub text: String,
}

/// A follow-up ticket.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct FollowUpInfo {
    /// Its id.
    pub id: String,
    /// The visit it was opened from.
    pub visit: Option<String>,
    /// What must be done.
    pub title: String,
    /// Who opened it.
    pub opened_by: String,
    /// When.
    pub opened_at: i64,
    /// Who must act.
    pub owner: Option<String>,
    /// By when.
    pub deadline: Option<i64>,
    /// Open or closed.
    pub status: FollowUpStatus,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// When.
    pub closed_at: Option<i64>,
    /// How it was resolved.
    pub resolution: String,
    /// Comments, oldest first.
    pub comments: Vec<CommentInfo>,
}

impl From<model::FollowUp> for FollowUpInfo {
    fn from(f: model::FollowUp) -> Self {
        FollowUpInfo {
            id: f.id.to_string(),
            visit: f.visit.map(|v| v.to_string()),
            title: f.title,
            opened_by: f.opened_by.to_string(),
            opened_at: f.opened_at,
            owner: f.owner.map(|o| o.to_string()),
            deadline: f.deadline,
            status: f.status.into(),
            closed_by: f.closed_by.map(|c| c.to_string()),
            closed_at: f.closed_at,
            resolution: f.resolution,
            comments: f
                .comments
                .into_iter()
                .map(|c| CommentInfo {
                    id: c.id.to_string(),
                    author: c.author.to_string(),
                    at: c.at,
                    text: c.text,
                })
                .collect(),
        }
    }
}

/// A resident's whole case file: profile, visit timeline (newest first) and follow-ups.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ResidentDetail {
    /// The resident's id.
    pub id: String,
    /// District.
    pub district_id: String,
    /// Station.
    pub station_id: String,
    /// The profile.
    pub profile: ProfileRecord,
    /// Every visit, tombstoned ones included, newest first.
    pub visits: Vec<VisitInfo>,
    /// Follow-up tickets, oldest first.
    pub follow_ups: Vec<FollowUpInfo>,
}

/// A resident in a list.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ResidentSummary {
    /// The resident's id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Station.
    pub station_id: String,
    /// Risk level.
    pub risk_level: Option<RiskLevel>,
    /// Required visit frequency in days.
    pub visit_every_days: Option<i64>,
    /// Start of the last live visit.
    pub last_visit_at: Option<i64>,
    /// When the next visit is due; null (none) if no frequency is set or never visited.
    pub next_visit_due_at: Option<i64>,
}

/// Why a resident is on today's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum DueStatus {
    /// A frequency is set and nobody has visited yet.
    NeverVisited,
    /// The visit was due before today.
    Overdue,
    /// The visit falls due today.
    DueToday,
}

/// A resident due or overdue for a visit.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct DueResident {
    /// Why.
    pub status: DueStatus,
    /// The resident.
    pub resident: ResidentSummary,
}

/// One catalog entry.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct CatalogEntryInfo {
    /// Its id.
    pub id: String,
    /// Name in Chinese.
    pub name: String,
    /// Name in English.
    pub name_en: String,
    /// The containing entry (a unit's or project's alliance).
    pub parent: Option<String>,
    /// Retired: not offered for new visits.
    pub archived: bool,
}

fn entries<I: std::fmt::Display>(list: Vec<model::CatalogEntry<I>>) -> Vec<CatalogEntryInfo> {
    list.into_iter()
        .map(|e| CatalogEntryInfo {
            id: e.id.to_string(),
            name: e.name,
            name_en: e.name_en,
            parent: e.parent.map(|p| p.to_string()),
            archived: e.archived,
        })
        .collect()
}

/// The district's catalog.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct CatalogInfo {
    /// Service stations.
    pub stations: Vec<CatalogEntryInfo>,
    /// Alliances.
    pub alliances: Vec<CatalogEntryInfo>,
    /// Units.
    pub units: Vec<CatalogEntryInfo>,
    /// Projects.
    pub projects: Vec<CatalogEntryInfo>,
    /// Service types.
    pub service_types: Vec<CatalogEntryInfo>,
    /// Hazard types.
    pub hazard_types: Vec<CatalogEntryInfo>,
}

impl From<model::Catalog> for CatalogInfo {
    fn from(c: model::Catalog) -> Self {
        CatalogInfo {
            stations: entries(c.stations),
            alliances: entries(c.alliances),
            units: entries(c.units),
            projects: entries(c.projects),
            service_types: entries(c.service_types),
            hazard_types: entries(c.hazard_types),
        }
    }
}

/// A review that came back on one of my visits.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ReviewFeedback {
    /// The resident.
    pub resident_id: String,
    /// The resident's name.
    pub resident_name: String,
    /// The visit.
    pub visit_id: String,
    /// The review.
    pub review: ReviewInfo,
}

/// A follow-up on one of my residents.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct FollowUpFeedback {
    /// The resident.
    pub resident_id: String,
    /// The resident's name.
    pub resident_name: String,
    /// The ticket.
    pub follow_up: FollowUpInfo,
}

/// What came back from coordinators.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Feedback {
    /// Reviews of my visits, newest first.
    pub reviews: Vec<ReviewFeedback>,
    /// Follow-ups on the residents this phone holds, open ones first.
    pub follow_ups: Vec<FollowUpFeedback>,
}

/// A visit, by resident.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, uniffi::Record)]
pub struct VisitRef {
    /// The resident.
    pub resident_id: String,
    /// The visit.
    pub visit_id: String,
}

/// What waits to be synced.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct SyncStatus {
    /// Local changes the server has not receipted.
    pub pending_changes: i64,
    /// Visits with writes the server has not receipted.
    pub unreceipted_visits: Vec<VisitRef>,
    /// Visits a station hub holds (its receipt came) that the district server has
    /// not confirmed yet: "held at the station", not yet "held by the district
    /// server".
    pub held_at_station: Vec<VisitRef>,
    /// Refused uploads kept on the phone (see `refusedChanges`): awaiting a
    /// coordinator's decision, or dismissed and not yet acknowledged.
    pub refused: i64,
}

/// A visit in a refused upload, as the phone held it.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct RefusedVisit {
    /// The visit.
    pub visit_id: String,
    /// When it started (the phone's clock).
    pub started_at: i64,
    /// Its notes.
    pub notes: String,
}

/// An upload the server refused, kept on the phone until a person decides. The app
/// shows it with its reason; a coordinator accepts it (it then leaves this list and
/// reaches the record) or dismisses it (`dismissed` holds their note, and the volunteer
/// acknowledges it with `acknowledgeRefused`).
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct RefusedChange {
    /// The server's quarantine number.
    pub quarantine: i64,
    /// The resident.
    pub resident_id: String,
    /// The resident's name, as the phone held the case file.
    pub resident_name: String,
    /// The refused visits.
    pub visits: Vec<RefusedVisit>,
    /// Other writes refused with them (profile fields, follow-ups).
    pub other_changes: i64,
    /// The refusal's stable code (`out_of_scope`, `invalid`, …).
    pub code: String,
    /// Why, for people.
    pub reason: String,
    /// A coordinator's dismissal note, once one has arrived; null (none) while awaiting.
    pub dismissed: Option<String>,
}

/// An upload the server refused. The refused changes are kept on the phone (see
/// `refusedChanges`) and in the server's quarantine; the phone's copy of the
/// document was reset to the server's.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct RejectionInfo {
    /// The resident (or catalog) id.
    pub doc_id: String,
    /// The stable code (a rule's code, or a protocol code).
    pub code: String,
    /// Why, for people.
    pub reason: String,
}

/// What one sync did.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct SyncOutcome {
    /// Changes uploaded.
    pub sent_changes: i64,
    /// Changes (and whole documents) received.
    pub received_changes: i64,
    /// Residents whose uploads the server receipted.
    pub receipted: Vec<String>,
    /// Uploads the server refused.
    pub rejections: Vec<RejectionInfo>,
    /// Residents removed from the phone (reassigned away).
    pub purged: Vec<String>,
    /// Round trips made.
    pub rounds: i32,
    /// Bytes sent in sync requests.
    pub bytes_sent: i64,
    /// Bytes received in sync responses.
    pub bytes_received: i64,
    /// Documents whose never-synced changes a revoked device's export handed to the
    /// server in this sync (for a coordinator's decision).
    pub recovered: i64,
    /// Nothing is left to exchange (false: the round limit was reached; sync again).
    pub complete: bool,
    /// The station hub this sync went to (`sync_at_hub`), or none for the district
    /// server. A hub's receipts mean the visits are held at the station; it hands them
    /// on to the district server when its uplink works.
    pub hub: Option<String>,
    /// At a hub: residents whose changes held at a station the district server now
    /// confirms holding.
    pub held_by_district: Vec<String>,
    /// At a hub: uploads the district server refused after the hub took them, kept
    /// in its quarantine for a coordinator.
    pub refused_by_district: Vec<RejectionInfo>,
}

/// A visit id made on the phone (UUIDv7, sorted by time).
pub(crate) fn new_visit_id() -> VisitId {
    VisitId(uuid::Uuid::now_v7())
}

/// A count for the foreign languages, which get signed integers only (Java has no
/// unsigned types); no count on a phone comes near `i64::MAX`.
pub(crate) fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
