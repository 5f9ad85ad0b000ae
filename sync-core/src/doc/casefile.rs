//! The resident case file: one Automerge document per resident holding the profile,
//! every visit and every follow-up ticket.

use super::schema::*;
use crate::error::{Error, Result};
use crate::ids::*;
use crate::model::*;
use crate::rules::{self, Editor};
use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};

/// A resident's profile fields, as stored. Restricted fields are written only by
/// station staff, coordinators and admins.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ProfileField {
    /// Full name (restricted).
    Name,
    /// Home address.
    Address,
    /// Phone number.
    Phone,
    /// Year of birth (restricted).
    BirthYear,
    /// Who the resident lives with: a [`LivingSituation`] code.
    LivingSituation,
    /// Emergency contact.
    EmergencyContact,
    /// Needs.
    Needs,
    /// A [`RiskLevel`] code (restricted).
    RiskLevel,
    /// Days between visits (restricted).
    VisitEveryDays,
}

impl ProfileField {
    /// Every field.
    pub const ALL: &'static [ProfileField] = &[
        ProfileField::Name,
        ProfileField::Address,
        ProfileField::Phone,
        ProfileField::BirthYear,
        ProfileField::LivingSituation,
        ProfileField::EmergencyContact,
        ProfileField::Needs,
        ProfileField::RiskLevel,
        ProfileField::VisitEveryDays,
    ];

    /// The key in the document.
    pub const fn key(self) -> &'static str {
        match self {
            ProfileField::Name => "name",
            ProfileField::Address => "address",
            ProfileField::Phone => "phone",
            ProfileField::BirthYear => "birth_year",
            ProfileField::LivingSituation => "living_situation",
            ProfileField::EmergencyContact => "emergency_contact",
            ProfileField::Needs => "needs",
            ProfileField::RiskLevel => "risk_level",
            ProfileField::VisitEveryDays => "visit_every_days",
        }
    }

    /// Looks a field up by its key.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.key() == key)
    }

    /// Only staff, coordinators and admins may write it.
    pub const fn is_restricted(self) -> bool {
        matches!(
            self,
            ProfileField::Name
                | ProfileField::BirthYear
                | ProfileField::RiskLevel
                | ProfileField::VisitEveryDays
        )
    }

    /// Checks a value for this field: type, enum membership, length and range.
    pub fn validate(self, value: &FieldValue) -> Result<(), String> {
        use ProfileField as F;
        match (self, value) {
            (F::Name, FieldValue::Text(t)) if t.trim().is_empty() => {
                Err("must not be empty".into())
            }
            (F::Name | F::Address | F::Phone | F::EmergencyContact, FieldValue::Text(t)) => {
                check_len(t, limits::SHORT_TEXT)
            }
            (F::Needs, FieldValue::Text(t)) => check_len(t, limits::LONG_TEXT),
            (F::LivingSituation, FieldValue::Text(t)) => LivingSituation::from_code(t)
                .map(|_| ())
                .ok_or_else(|| format!("unknown living situation {t:?}")),
            (F::RiskLevel, FieldValue::Text(t)) => RiskLevel::from_code(t)
                .map(|_| ())
                .ok_or_else(|| format!("unknown risk level {t:?}")),
            (F::BirthYear, FieldValue::Int(y)) if (1890..=2030).contains(y) => Ok(()),
            (F::BirthYear, FieldValue::Int(y)) => Err(format!("birth year {y} is implausible")),
            (F::VisitEveryDays, FieldValue::Int(d)) if (1..=366).contains(d) => Ok(()),
            (F::VisitEveryDays, FieldValue::Int(d)) => Err(format!(
                "{d} days between visits is out of range (1 to 366)"
            )),
            (F::Name, FieldValue::Empty) => Err("must not be empty".into()),
            (_, FieldValue::Empty) => Ok(()),
            (_, _) => Err("has the wrong type".into()),
        }
    }
}

pub(crate) fn check_len(text: &str, max: usize) -> Result<(), String> {
    let n = text.chars().count();
    if n > max {
        Err(format!("is {n} characters long, more than {max}"))
    } else {
        Ok(())
    }
}

/// A profile field's value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FieldValue {
    /// Text, or an enum code.
    Text(String),
    /// A number.
    Int(i64),
    /// Cleared.
    Empty,
}

impl FieldValue {
    pub(crate) fn to_scalar(&self) -> Option<ScalarValue> {
        match self {
            FieldValue::Text(t) => Some(ScalarValue::Str(t.as_str().into())),
            FieldValue::Int(i) => Some(ScalarValue::Int(*i)),
            FieldValue::Empty => None,
        }
    }

    pub(crate) fn from_scalar(value: &ScalarValue) -> Self {
        match value {
            ScalarValue::Str(s) => FieldValue::Text(s.to_string()),
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => FieldValue::Int(*i),
            ScalarValue::Uint(u) => FieldValue::Int(i64::try_from(*u).unwrap_or(i64::MAX)),
            _ => FieldValue::Empty,
        }
    }
}

/// A resident's case file.
#[derive(Debug, Clone)]
pub struct CaseFile {
    doc: Automerge,
    id: ResidentId,
}

impl CaseFile {
    /// Creates the case file of a new resident, written by `editor` on the device whose
    /// Automerge actor is `actor`.
    pub fn create(
        actor: ActorId,
        editor: &Editor<'_>,
        id: ResidentId,
        district: DistrictId,
        station: StationId,
        profile: &Profile,
    ) -> Result<Self> {
        let mut file = CaseFile {
            doc: Automerge::new().with_actor(actor),
            id,
        };
        file.edit(editor, |tx| {
            tx.put(ROOT, SCHEMA, ScalarValue::Uint(CURRENT_SCHEMA))?;
            tx.put(ROOT, KIND, KIND_RESIDENT)?;
            tx.put(ROOT, ID, bytes_of(&id.0))?;
            tx.put(ROOT, DISTRICT, bytes_of(&district.0))?;
            tx.put(ROOT, STATION, bytes_of(&station.0))?;
            tx.put(ROOT, CREATED_BY, bytes_of(&editor.principal.user.0))?;
            tx.put(ROOT, CREATED_AT, ts(editor.now))?;
            let p = tx.put_object(ROOT, PROFILE, ObjType::Map)?;
            tx.put_object(ROOT, VISITS, ObjType::Map)?;
            tx.put_object(ROOT, FOLLOW_UPS, ObjType::Map)?;
            for (field, value) in profile_values(profile) {
                if let Some(v) = value.to_scalar() {
                    tx.put(&p, field.key(), v)?;
                }
            }
            Ok(())
        })?;
        Ok(file)
    }

    /// Wraps a loaded document, checking that it is a case file this build can read.
    pub fn from_doc(doc: Automerge) -> Result<Self> {
        let id = super::check_header(&doc, KIND_RESIDENT)?;
        Ok(CaseFile {
            doc,
            id: ResidentId(id),
        })
    }

    /// Loads a saved case file and sets the actor this device writes with.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self> {
        Self::from_doc(Automerge::load(bytes)?.with_actor(actor))
    }

    /// The resident's id.
    pub fn id(&self) -> ResidentId {
        self.id
    }

    /// The underlying document.
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// Gives the document back.
    pub fn into_doc(self) -> Automerge {
        self.doc
    }

    /// The station the resident belongs to.
    pub fn station(&self) -> Result<StationId> {
        id(&self.doc, &ROOT, STATION)
    }

    /// The district.
    pub fn district(&self) -> Result<DistrictId> {
        id(&self.doc, &ROOT, DISTRICT)
    }

    /// Runs `write` in one transaction committed as one change by `editor`, then checks
    /// the change with the core's rules. A refused change is undone and nothing of it
    /// remains in the document.
    pub(crate) fn edit(
        &mut self,
        editor: &Editor<'_>,
        write: impl FnOnce(&mut Transaction<'_>) -> Result<()>,
    ) -> Result<Option<ChangeHash>> {
        let hash = super::commit_checked(&mut self.doc, editor, write)?;
        Ok(hash)
    }

    /// Sets one profile field.
    pub fn update_profile(
        &mut self,
        editor: &Editor<'_>,
        field: ProfileField,
        value: &FieldValue,
    ) -> Result<Option<ChangeHash>> {
        self.edit(editor, |tx| {
            let p = ensure_map(tx, &ROOT, PROFILE)?;
            put_opt(tx, &p, field.key(), value.to_scalar())
        })
    }

    /// Brings the profile to `wanted` in one change: every field that differs from the
    /// profile now is written (each checked as [`ProfileField::validate`]) and the rest
    /// left alone, so an edit form saved unchanged writes nothing and makes no conflict
    /// with another device's concurrent edit of another field. Returns the fields
    /// written; the rules decide, by role, whether they may be.
    pub fn edit_profile(
        &mut self,
        editor: &Editor<'_>,
        wanted: &Profile,
    ) -> Result<Vec<ProfileField>> {
        let now = profile_values(&self.profile()?);
        let changed: Vec<(ProfileField, FieldValue)> = profile_values(wanted)
            .into_iter()
            .zip(now)
            .filter(|(new, old)| new.1 != old.1)
            .map(|(new, _)| new)
            .collect();
        for (field, value) in &changed {
            field.validate(value).map_err(|reason| {
                Error::Rejected(rules::Violation::Invalid {
                    field: field.key().to_owned(),
                    reason,
                })
            })?;
        }
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        self.edit(editor, |tx| {
            let p = ensure_map(tx, &ROOT, PROFILE)?;
            for (field, value) in &changed {
                put_opt(tx, &p, field.key(), value.to_scalar())?;
            }
            Ok(())
        })?;
        Ok(changed.into_iter().map(|(field, _)| field).collect())
    }

    /// Resolves a conflict on a profile field by writing the chosen value; the new write
    /// supersedes every concurrent one.
    pub fn resolve_conflict(
        &mut self,
        editor: &Editor<'_>,
        field: ProfileField,
        value: &FieldValue,
    ) -> Result<Option<ChangeHash>> {
        self.edit(editor, |tx| {
            let p = ensure_map(tx, &ROOT, PROFILE)?;
            match value.to_scalar() {
                Some(v) => tx.put(&p, field.key(), v)?,
                None => tx.delete(&p, field.key())?,
            }
            Ok(())
        })
    }

    /// Moves the resident to another station (staff and above).
    pub fn set_station(
        &mut self,
        editor: &Editor<'_>,
        station: StationId,
    ) -> Result<Option<ChangeHash>> {
        self.edit(editor, |tx| {
            put_if_changed(tx, &ROOT, STATION, bytes_of(&station.0))
        })
    }

    /// Logs a new visit under the editor's own id.
    pub fn log_visit(
        &mut self,
        editor: &Editor<'_>,
        visit: VisitId,
        record: &VisitRecord,
    ) -> Result<Option<ChangeHash>> {
        let key = visit.to_string();
        if self.visit_obj(visit).is_some() {
            return Err(Error::Rejected(rules::Violation::AlreadyExists {
                what: format!("visit {visit}"),
            }));
        }
        self.edit(editor, |tx| {
            let visits = ensure_map(tx, &ROOT, VISITS)?;
            let v = tx.put_object(&visits, key.as_str(), ObjType::Map)?;
            tx.put(&v, V_VOLUNTEER, bytes_of(&editor.principal.user.0))?;
            write_record(tx, &v, record, None)
        })
    }

    /// Amends a visit: writes only the fields that differ from what is stored.
    pub fn amend_visit(
        &mut self,
        editor: &Editor<'_>,
        visit: VisitId,
        record: &VisitRecord,
    ) -> Result<Option<ChangeHash>> {
        let v = self.existing_visit(visit)?;
        let old = read_record(&self.doc, &v)?;
        self.edit(editor, |tx| write_record(tx, &v, record, Some(&old)))
    }

    /// Marks a visit deleted. Visits are never removed.
    pub fn tombstone_visit(
        &mut self,
        editor: &Editor<'_>,
        visit: VisitId,
    ) -> Result<Option<ChangeHash>> {
        let v = self.existing_visit(visit)?;
        self.edit(editor, |tx| {
            put_if_changed(tx, &v, V_TOMBSTONED, ScalarValue::Boolean(true))
        })
    }

    /// Reviews a visit (staff and above).
    pub fn review_visit(
        &mut self,
        editor: &Editor<'_>,
        visit: VisitId,
        status: ReviewStatus,
        comment: &str,
    ) -> Result<Option<ChangeHash>> {
        let v = self.existing_visit(visit)?;
        self.edit(editor, |tx| {
            // The review is replaced whole so status, reviewer and comment stay together.
            let r = tx.put_object(&v, V_REVIEW, ObjType::Map)?;
            tx.put(&r, R_STATUS, status.code())?;
            tx.put(&r, R_REVIEWER, bytes_of(&editor.principal.user.0))?;
            tx.put(&r, R_COMMENT, comment)?;
            tx.put(&r, R_AT, ts(editor.now))?;
            Ok(())
        })
    }

    /// Opens a follow-up ticket.
    #[allow(clippy::too_many_arguments)]
    pub fn open_follow_up(
        &mut self,
        editor: &Editor<'_>,
        follow_up: FollowUpId,
        visit: Option<VisitId>,
        title: &str,
        owner: Option<UserId>,
        deadline: Option<Timestamp>,
    ) -> Result<Option<ChangeHash>> {
        if self.follow_up_obj(follow_up).is_some() {
            return Err(Error::Rejected(rules::Violation::AlreadyExists {
                what: format!("follow-up {follow_up}"),
            }));
        }
        if let Some(v) = visit {
            self.existing_visit(v)?;
        }
        self.edit(editor, |tx| {
            let all = ensure_map(tx, &ROOT, FOLLOW_UPS)?;
            let f = tx.put_object(&all, follow_up.to_string().as_str(), ObjType::Map)?;
            if let Some(v) = visit {
                tx.put(&f, F_VISIT, bytes_of(&v.0))?;
            }
            tx.put(&f, F_TITLE, title)?;
            tx.put(&f, F_OPENED_BY, bytes_of(&editor.principal.user.0))?;
            tx.put(&f, F_OPENED_AT, ts(editor.now))?;
            if let Some(o) = owner {
                tx.put(&f, F_OWNER, bytes_of(&o.0))?;
            }
            if let Some(d) = deadline {
                tx.put(&f, F_DEADLINE, ts(d))?;
            }
            tx.put(&f, F_STATUS, FollowUpStatus::Open.code())?;
            tx.put_object(&f, F_COMMENTS, ObjType::Map)?;
            Ok(())
        })
    }

    /// Assigns a follow-up and sets its deadline (staff and above, or its owner).
    pub fn assign_follow_up(
        &mut self,
        editor: &Editor<'_>,
        follow_up: FollowUpId,
        owner: Option<UserId>,
        deadline: Option<Timestamp>,
    ) -> Result<Option<ChangeHash>> {
        let f = self.existing_follow_up(follow_up)?;
        self.edit(editor, |tx| {
            put_opt(tx, &f, F_OWNER, owner.map(|o| bytes_of(&o.0)))?;
            put_opt(tx, &f, F_DEADLINE, deadline.map(ts))
        })
    }

    /// Comments on a follow-up.
    pub fn comment_follow_up(
        &mut self,
        editor: &Editor<'_>,
        follow_up: FollowUpId,
        comment: CommentId,
        text: &str,
    ) -> Result<Option<ChangeHash>> {
        let f = self.existing_follow_up(follow_up)?;
        let exists = get_obj(&self.doc, &f, F_COMMENTS)
            .and_then(|all| get_obj(&self.doc, &all, &comment.to_string()))
            .is_some();
        if exists {
            return Err(Error::Rejected(rules::Violation::AlreadyExists {
                what: format!("comment {comment}"),
            }));
        }
        self.edit(editor, |tx| {
            let all = ensure_map(tx, &f, F_COMMENTS)?;
            let c = tx.put_object(&all, comment.to_string().as_str(), ObjType::Map)?;
            tx.put(&c, M_AUTHOR, bytes_of(&editor.principal.user.0))?;
            tx.put(&c, M_AT, ts(editor.now))?;
            tx.put(&c, M_TEXT, text)?;
            Ok(())
        })
    }

    /// Closes a follow-up (staff and above, or its owner).
    pub fn close_follow_up(
        &mut self,
        editor: &Editor<'_>,
        follow_up: FollowUpId,
        resolution: &str,
    ) -> Result<Option<ChangeHash>> {
        let f = self.existing_follow_up(follow_up)?;
        self.edit(editor, |tx| {
            tx.put(&f, F_STATUS, FollowUpStatus::Closed.code())?;
            tx.put(&f, F_CLOSED_BY, bytes_of(&editor.principal.user.0))?;
            tx.put(&f, F_CLOSED_AT, ts(editor.now))?;
            tx.put(&f, F_RESOLUTION, resolution)?;
            Ok(())
        })
    }

    /// Closes the case file (staff and above): it leaves the phones at their next sync
    /// and the due lists, and everything in it stays. Closing a closed file replaces
    /// its closure.
    pub fn close(
        &mut self,
        editor: &Editor<'_>,
        reason: ClosureReason,
        note: &str,
    ) -> Result<Option<ChangeHash>> {
        self.edit(editor, |tx| {
            let c = tx.put_object(&ROOT, CLOSURE, ObjType::Map)?;
            tx.put(&c, C_REASON, reason.code())?;
            tx.put(&c, C_NOTE, note)?;
            tx.put(&c, C_AT, ts(editor.now))?;
            tx.put(&c, C_BY, bytes_of(&editor.principal.user.0))?;
            Ok(())
        })
    }

    /// Reopens a closed case file (staff and above): phones in its scope receive it
    /// again. Nothing happens to an open one.
    pub fn reopen(&mut self, editor: &Editor<'_>) -> Result<Option<ChangeHash>> {
        if get_obj(&self.doc, &ROOT, CLOSURE).is_none() {
            return Ok(None);
        }
        self.edit(editor, |tx| {
            tx.delete(&ROOT, CLOSURE)?;
            Ok(())
        })
    }

    /// The closure, while the case file is closed.
    pub fn closure(&self) -> Result<Option<Closure>> {
        read_closure(&self.doc)
    }

    pub(crate) fn visit_obj(&self, visit: VisitId) -> Option<ObjId> {
        let visits = get_obj(&self.doc, &ROOT, VISITS)?;
        get_obj(&self.doc, &visits, &visit.to_string())
    }

    /// How many values `visits/<visit>` holds: one for a visit, more when phones made
    /// visits of the same id concurrently, none for no visit.
    pub fn visit_values(&self, visit: VisitId) -> usize {
        get_obj(&self.doc, &ROOT, VISITS).map_or(0, |visits| {
            self.doc
                .get_all(&visits, visit.to_string())
                .map_or(0, |values| values.len())
        })
    }

    fn existing_visit(&self, visit: VisitId) -> Result<ObjId> {
        self.visit_obj(visit)
            .ok_or_else(|| Error::NotFound(format!("visit {visit}")))
    }

    fn follow_up_obj(&self, follow_up: FollowUpId) -> Option<ObjId> {
        let all = get_obj(&self.doc, &ROOT, FOLLOW_UPS)?;
        get_obj(&self.doc, &all, &follow_up.to_string())
    }

    fn existing_follow_up(&self, follow_up: FollowUpId) -> Result<ObjId> {
        self.follow_up_obj(follow_up)
            .ok_or_else(|| Error::NotFound(format!("follow-up {follow_up}")))
    }

    // ---- typed reads ---------------------------------------------------------------

    /// The whole case file as domain types.
    pub fn hydrate(&self) -> Result<Resident> {
        hydrate_resident(&self.doc)
    }

    /// The profile alone.
    pub fn profile(&self) -> Result<Profile> {
        read_profile(&self.doc)
    }

    /// One visit.
    pub fn visit(&self, visit: VisitId) -> Result<Option<Visit>> {
        self.visit_obj(visit)
            .map(|v| read_visit(&self.doc, visit, &v))
            .transpose()
    }

    /// One follow-up ticket.
    pub fn follow_up(&self, follow_up: FollowUpId) -> Result<Option<FollowUp>> {
        self.follow_up_obj(follow_up)
            .map(|f| read_follow_up(&self.doc, follow_up, &f))
            .transpose()
    }

    /// The start time of the latest live visit, read without hydrating every visit.
    pub fn last_visit_at(&self) -> Result<Option<Timestamp>> {
        last_visit_at(&self.doc)
    }
}

/// What a list of residents shows of a case file, read from a borrowed document
/// without hydrating its visits (a phone refreshes it on every write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The station.
    pub station: StationId,
    /// The profile.
    pub profile: Profile,
    /// The start of the latest live visit.
    pub last_visit_at: Option<Timestamp>,
    /// Set while the case file is closed.
    pub closure: Option<Closure>,
}

/// Reads the [`Listing`] of a case file; an error if `doc` is not one this build reads.
pub fn listing(doc: &Automerge) -> Result<Listing> {
    super::check_header(doc, KIND_RESIDENT)?;
    Ok(Listing {
        station: id(doc, &ROOT, STATION)?,
        profile: read_profile(doc)?,
        last_visit_at: last_visit_at(doc)?,
        closure: read_closure(doc)?,
    })
}

/// The [`Listing`] of `doc` after `changes`, made on `before`, given `previous`, the
/// listing at `before`. When the changes only add visits, or write a visit's fields
/// other than its start and tombstone (a review, an amended note), or touch follow-ups,
/// the listing follows from `previous` and the new visits alone, without reading every
/// visit again: what a phone does on almost every write, on a resident with a thousand
/// visits. Anything else (the profile, the station, a closure, a visit's start or
/// tombstone, many changes at once) reads the whole listing again.
pub fn listing_after(
    doc: &Automerge,
    before: &[ChangeHash],
    previous: &Listing,
    changes: &[automerge::Change],
) -> Result<Listing> {
    use super::paths::{Target, classify, touches_all};
    if changes.len() > 8 {
        return listing(doc);
    }
    let Some(visits) = get_obj(doc, &ROOT, VISITS) else {
        return listing(doc);
    };
    let mut new_visits = std::collections::BTreeSet::new();
    for touch in touches_all(doc, changes)? {
        match classify(&touch) {
            Target::Visit { id, field } => {
                let key = id.to_string();
                let existed = matches!(doc.get_at(&visits, key.as_str(), before), Ok(Some(_)));
                if !existed {
                    new_visits.insert(key);
                } else if field
                    .as_deref()
                    .is_none_or(|f| f == V_STARTED || f == V_TOMBSTONED)
                {
                    return listing(doc);
                }
            }
            Target::FollowUp { .. } | Target::Comment { .. } => {}
            _ => return listing(doc),
        }
    }
    let mut last = previous.last_visit_at;
    for key in new_visits {
        let Some(v) = get_obj(doc, &visits, &key) else {
            continue;
        };
        if !bool_or_false(doc, &v, V_TOMBSTONED)? {
            last = last.max(Some(int(doc, &v, V_STARTED)?));
        }
    }
    Ok(Listing {
        last_visit_at: last,
        ..previous.clone()
    })
}

fn last_visit_at(doc: &Automerge) -> Result<Option<Timestamp>> {
    let Some(visits) = get_obj(doc, &ROOT, VISITS) else {
        return Ok(None);
    };
    let mut last = None;
    // One pass over the map's entries: looking each visit up by its key again costs
    // as much as the rest together (a phone refreshes this on every write).
    for entry in doc.map_range(&visits, ..) {
        if !matches!(entry.value, automerge::ValueRef::Object(ObjType::Map)) {
            continue;
        }
        let v = entry.id();
        if bool_or_false(doc, &v, V_TOMBSTONED)? {
            continue;
        }
        let start = int(doc, &v, V_STARTED)?;
        last = last.max(Some(start));
    }
    Ok(last)
}

fn profile_values(p: &Profile) -> Vec<(ProfileField, FieldValue)> {
    let text = |s: &str| {
        if s.is_empty() {
            FieldValue::Empty
        } else {
            FieldValue::Text(s.to_owned())
        }
    };
    let int = |i: Option<i64>| i.map_or(FieldValue::Empty, FieldValue::Int);
    let code =
        |c: Option<&'static str>| c.map_or(FieldValue::Empty, |c| FieldValue::Text(c.into()));
    vec![
        (ProfileField::Name, text(&p.name)),
        (ProfileField::Address, text(&p.address)),
        (ProfileField::Phone, text(&p.phone)),
        (ProfileField::BirthYear, int(p.birth_year)),
        (
            ProfileField::LivingSituation,
            code(p.living_situation.map(|l| l.code())),
        ),
        (ProfileField::EmergencyContact, text(&p.emergency_contact)),
        (ProfileField::Needs, text(&p.needs)),
        (
            ProfileField::RiskLevel,
            code(p.risk_level.map(|r| r.code())),
        ),
        (ProfileField::VisitEveryDays, int(p.visit_every_days)),
    ]
}

/// Writes a visit's record into `v`: every field when `old` is `None` (`v` was just
/// made, and holds nothing to compare with), else only the fields that differ.
fn write_record<T: Transactable + ReadDoc>(
    tx: &mut T,
    v: &ObjId,
    r: &VisitRecord,
    old: Option<&VisitRecord>,
) -> Result<()> {
    let put = |tx: &mut T, key: &str, value: Option<ScalarValue>| -> Result<()> {
        match (old, value) {
            (None, Some(value)) => Ok(tx.put(v, key, value)?),
            (None, None) => Ok(()),
            (Some(_), value) => put_opt(tx, v, key, value),
        }
    };
    put(tx, V_PROJECT, Some(bytes_of(&r.project.0)))?;
    put(tx, V_UNIT, r.unit.map(|u| bytes_of(&u.0)))?;
    put(tx, V_STARTED, Some(ts(r.started_at)))?;
    put(tx, V_ENDED, Some(ts(r.ended_at)))?;
    if old.is_none_or(|o| o.services != r.services) {
        let list = tx.put_object(v, V_SERVICES, ObjType::List)?;
        for (i, s) in r.services.iter().enumerate() {
            tx.insert(&list, i, bytes_of(&s.0))?;
        }
    }
    if old.is_none_or(|o| o.condition != r.condition) {
        let c = tx.put_object(v, V_CONDITION, ObjType::Map)?;
        let cond = &r.condition;
        tx.put(&c, C_WELLBEING, cond.wellbeing.code())?;
        for (key, value) in [
            (C_SYSTOLIC, cond.systolic),
            (C_DIASTOLIC, cond.diastolic),
            (C_SUGAR, cond.blood_sugar_dmmol),
        ] {
            if let Some(n) = value {
                tx.put(&c, key, n)?;
            }
        }
        if !cond.remarks.is_empty() {
            tx.put(&c, C_REMARKS, cond.remarks.as_str())?;
        }
    }
    if old.is_none_or(|o| o.hazards != r.hazards) {
        let list = tx.put_object(v, V_HAZARDS, ObjType::List)?;
        for (i, h) in r.hazards.iter().enumerate() {
            let m = tx.insert_object(&list, i, ObjType::Map)?;
            tx.put(&m, H_TYPE, bytes_of(&h.hazard_type.0))?;
            tx.put(&m, H_SEVERITY, h.severity.code())?;
            tx.put(&m, H_FIXED, h.fixed_on_spot)?;
            if !h.note.is_empty() {
                tx.put(&m, H_NOTE, h.note.as_str())?;
            }
        }
    }
    put(tx, V_NOTES, Some(ScalarValue::Str(r.notes.as_str().into())))?;
    put(
        tx,
        V_FOLLOW_UP,
        Some(ScalarValue::Boolean(r.follow_up_needed)),
    )?;
    Ok(())
}

// ---- hydration -----------------------------------------------------------------------

pub(crate) fn hydrate_resident(doc: &Automerge) -> Result<Resident> {
    let root = Scanned::of(doc, &ROOT);
    let mut visits = read_entries(doc, root.obj(VISITS), read_visit)?;
    visits.sort_by_key(|v| (v.started_at, v.id));
    let mut follow_ups = read_entries(doc, root.obj(FOLLOW_UPS), read_follow_up)?;
    follow_ups.sort_by_key(|f| (f.opened_at, f.id));
    Ok(Resident {
        id: root.id(ID)?,
        district: root.id(DISTRICT)?,
        station: root.id(STATION)?,
        profile: profile_of(doc, root.obj(PROFILE))?,
        visits,
        follow_ups,
        closure: closure_of(doc, root.obj(CLOSURE))?,
    })
}

/// A case file's closure, or `None` while it is open.
pub(crate) fn read_closure<R: ReadDoc>(doc: &R) -> Result<Option<Closure>> {
    closure_of(doc, get_obj(doc, &ROOT, CLOSURE))
}

fn closure_of<R: ReadDoc>(doc: &R, closure: Option<ObjId>) -> Result<Option<Closure>> {
    let Some(c) = closure else {
        return Ok(None);
    };
    let c = Scanned::of(doc, &c);
    Ok(Some(Closure {
        reason: c
            .code(C_REASON, ClosureReason::from_code)?
            .ok_or_else(|| malformed("closure reason is missing"))?,
        note: c.str_or_empty(C_NOTE)?,
        at: c.int(C_AT)?,
        by: c.id(C_BY)?,
    }))
}

/// Reads every entry of the id-keyed map `all` with `read`, in one pass over the map.
fn read_entries<R: ReadDoc, I: From<uuid::Uuid> + Copy, T>(
    doc: &R,
    all: Option<ObjId>,
    read: fn(&R, I, &ObjId) -> Result<T>,
) -> Result<Vec<T>> {
    let Some(all) = all else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in doc.map_range(&all, ..) {
        let id = uuid::Uuid::parse_str(&entry.key)
            .map(I::from)
            .map_err(|_| malformed(format!("{:?} is not an id", entry.key)))?;
        if let automerge::ValueRef::Object(_) = entry.value {
            out.push(read(doc, id, &entry.id())?);
        }
    }
    Ok(out)
}

pub(crate) fn read_profile<R: ReadDoc>(doc: &R) -> Result<Profile> {
    profile_of(doc, get_obj(doc, &ROOT, PROFILE))
}

fn profile_of<R: ReadDoc>(doc: &R, profile: Option<ObjId>) -> Result<Profile> {
    let Some(p) = profile else {
        return Err(malformed("profile is missing"));
    };
    let f = Scanned::of(doc, &p);
    let s = |field: ProfileField| f.str_or_empty(field.key());
    let mut visit_every_days = f.opt_int(ProfileField::VisitEveryDays.key())?;
    if visit_every_days.is_none() {
        // Schema 1 kept a frequency label; read it in place for documents not yet migrated.
        visit_every_days = super::migrate::v1_frequency_days(doc, &p)?;
    }
    Ok(Profile {
        name: s(ProfileField::Name)?,
        address: s(ProfileField::Address)?,
        phone: s(ProfileField::Phone)?,
        birth_year: f.opt_int(ProfileField::BirthYear.key())?,
        living_situation: f.code(
            ProfileField::LivingSituation.key(),
            LivingSituation::from_code,
        )?,
        emergency_contact: s(ProfileField::EmergencyContact)?,
        needs: s(ProfileField::Needs)?,
        risk_level: f.code(ProfileField::RiskLevel.key(), RiskLevel::from_code)?,
        visit_every_days,
    })
}

/// The record (what its volunteer wrote) of the visit `v`.
pub(crate) fn read_record<R: ReadDoc>(doc: &R, v: &ObjId) -> Result<VisitRecord> {
    record_of(doc, &Scanned::of(doc, v))
}

fn record_of<R: ReadDoc>(doc: &R, v: &Scanned<'_>) -> Result<VisitRecord> {
    let condition = match v.obj(V_CONDITION) {
        None => return Err(malformed("visit condition is missing")),
        Some(c) => {
            let c = Scanned::of(doc, &c);
            Condition {
                wellbeing: c
                    .code(C_WELLBEING, Wellbeing::from_code)?
                    .ok_or_else(|| malformed("wellbeing is missing"))?,
                systolic: c.opt_int(C_SYSTOLIC)?,
                diastolic: c.opt_int(C_DIASTOLIC)?,
                blood_sugar_dmmol: c.opt_int(C_SUGAR)?,
                remarks: c.str_or_empty(C_REMARKS)?,
            }
        }
    };
    let mut hazards = Vec::new();
    if let Some(list) = v.obj(V_HAZARDS) {
        for item in doc.list_range(&list, ..) {
            let automerge::ValueRef::Object(ObjType::Map) = item.value else {
                return Err(malformed("a hazard is not a map"));
            };
            let h = Scanned::of(doc, &item.id());
            hazards.push(Hazard {
                hazard_type: h.id(H_TYPE)?,
                severity: h
                    .code(H_SEVERITY, Severity::from_code)?
                    .ok_or_else(|| malformed("hazard severity is missing"))?,
                fixed_on_spot: h.bool_or_false(H_FIXED)?,
                note: h.str_or_empty(H_NOTE)?,
            });
        }
    }
    Ok(VisitRecord {
        project: v.id(V_PROJECT)?,
        unit: v.opt_id(V_UNIT)?,
        started_at: v.int(V_STARTED)?,
        ended_at: v.int(V_ENDED)?,
        services: ids_in(doc, v.obj(V_SERVICES).as_ref(), V_SERVICES)?,
        condition,
        hazards,
        notes: v.str_or_empty(V_NOTES)?,
        follow_up_needed: v.bool_or_false(V_FOLLOW_UP)?,
    })
}

/// The review held in the map `r`.
pub(crate) fn read_review<R: ReadDoc>(doc: &R, r: &ObjId) -> Result<Review> {
    let r = Scanned::of(doc, r);
    Ok(Review {
        status: r
            .code(R_STATUS, ReviewStatus::from_code)?
            .ok_or_else(|| malformed("review status is missing"))?,
        reviewer: r.id(R_REVIEWER)?,
        comment: r.str_or_empty(R_COMMENT)?,
        at: r.int(R_AT)?,
    })
}

/// Every review of the visit `v`: one, or several written at once by different
/// reviewers (the one shown is Automerge's winner, the others stay in the history).
pub(crate) fn read_reviews<R: ReadDoc>(doc: &R, v: &ObjId) -> Result<Vec<Review>> {
    let mut out = Vec::new();
    for (value, id) in doc.get_all(v, V_REVIEW)? {
        if let automerge::Value::Object(ObjType::Map) = value {
            out.push(read_review(doc, &id)?);
        }
    }
    Ok(out)
}

pub(crate) fn read_visit<R: ReadDoc>(doc: &R, id: VisitId, v: &ObjId) -> Result<Visit> {
    let v = Scanned::of(doc, v);
    let record = record_of(doc, &v)?;
    let review = match v.obj(V_REVIEW) {
        None => None,
        Some(r) => Some(read_review(doc, &r)?),
    };
    Ok(Visit {
        id,
        volunteer: v.id(V_VOLUNTEER)?,
        started_at: record.started_at,
        record,
        tombstoned: v.bool_or_false(V_TOMBSTONED)?,
        review,
    })
}

pub(crate) fn read_follow_up<R: ReadDoc>(doc: &R, id: FollowUpId, f: &ObjId) -> Result<FollowUp> {
    let f = Scanned::of(doc, f);
    let mut comments = read_entries(doc, f.obj(F_COMMENTS), |doc, id, c| {
        let c = Scanned::of(doc, c);
        Ok(Comment {
            id,
            author: c.id(M_AUTHOR)?,
            at: c.int(M_AT)?,
            text: c.str_or_empty(M_TEXT)?,
        })
    })?;
    comments.sort_by_key(|c| (c.at, c.id));
    Ok(FollowUp {
        id,
        visit: f.opt_id(F_VISIT)?,
        title: f.str_or_empty(F_TITLE)?,
        opened_by: f.id(F_OPENED_BY)?,
        opened_at: f.int(F_OPENED_AT)?,
        owner: f.opt_id(F_OWNER)?,
        deadline: f.opt_int(F_DEADLINE)?,
        status: f
            .code(F_STATUS, FollowUpStatus::from_code)?
            .ok_or_else(|| malformed("follow-up status is missing"))?,
        closed_by: f.opt_id(F_CLOSED_BY)?,
        closed_at: f.opt_int(F_CLOSED_AT)?,
        resolution: f.str_or_empty(F_RESOLUTION)?,
        comments,
    })
}

/// A profile field's current value: `Empty` when absent, `Err` for a value of a type no
/// profile field holds.
pub(crate) fn profile_field_value<R: ReadDoc>(
    doc: &R,
    field: ProfileField,
) -> std::result::Result<FieldValue, String> {
    let Some(p) = get_obj(doc, &ROOT, PROFILE) else {
        return Ok(FieldValue::Empty);
    };
    match scalar(doc, &p, field.key()) {
        None => Ok(FieldValue::Empty),
        Some(
            s @ (ScalarValue::Str(_)
            | ScalarValue::Int(_)
            | ScalarValue::Uint(_)
            | ScalarValue::Timestamp(_)),
        ) => Ok(FieldValue::from_scalar(&s)),
        // Bytes, a boolean, a float, a counter, null: no profile field holds one, and
        // the reader refuses it; taking it for "cleared" would let it in.
        Some(_) => Err("has the wrong type".into()),
    }
}

/// Commits with the editor as author (change message = user id, time = editor's clock).
pub(crate) fn commit_options(editor: &Editor<'_>) -> CommitOptions {
    CommitOptions::default()
        .with_message(editor.principal.user.to_string())
        .with_time(editor.now)
}
