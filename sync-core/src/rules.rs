//! The rules: one pure function, run by the phone before it commits a change locally
//! and by the server before it accepts a change from a phone. Given who is acting, the
//! document before and after, and the changes, it accepts or names the violation.
//!
//! The rules authorise by what each change's own operations wrote (see
//! [`crate::doc::paths`]), then validate every touched object in the resulting state.

use crate::doc::casefile::{ProfileField, check_len, read_follow_up, read_visit};
use crate::doc::paths::{Target, classify, touches_all};
use crate::doc::schema::{self, *};
use crate::doc::{DocKind, header};
use crate::ids::*;
use crate::model::*;
use automerge::{Automerge, Change, ChangeHash, ObjId, ROOT, ReadDoc, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, btree_map};

/// Who is acting, and the acting host's clock.
#[derive(Clone, Copy, Debug)]
pub struct Editor<'a> {
    /// The authenticated user.
    pub principal: &'a Principal,
    /// Now, by the host's clock (Unix ms).
    pub now: Timestamp,
}

/// Why a change was refused. `code()` is stable; apps and the server switch on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The change does not name the acting user as its author.
    #[error("the change is signed by {found:?}, not by the acting user {expected}")]
    WrongAuthor {
        /// The acting user.
        expected: UserId,
        /// What the change's message says.
        found: Option<String>,
    },
    /// The resident or catalog is outside the user's scope.
    #[error("this resident or catalog is outside your scope")]
    OutOfScope,
    /// The user's role may not do this.
    #[error("a {role} may not {action}")]
    RoleNotAllowed {
        /// The acting role.
        role: Role,
        /// What was attempted.
        action: String,
    },
    /// Only the owner (the visit's volunteer, the comment's author…) may do this.
    #[error("only its owner may change {what}")]
    NotOwner {
        /// What was touched.
        what: String,
    },
    /// A visit was removed or replaced. Visits are never removed: tombstone them.
    #[error("visit {0} would be removed; visits are only ever tombstoned")]
    VisitRemoved(VisitId),
    /// A field that is fixed once written was changed.
    #[error("{field} cannot be changed once written")]
    Immutable {
        /// The field.
        field: String,
    },
    /// Something with this id already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What.
        what: String,
    },
    /// A write outside Linli's schema.
    #[error("{path} is not a field of this document")]
    UnknownField {
        /// Where.
        path: String,
    },
    /// A visit names a project, unit, service type or hazard type that the district's
    /// catalog does not hold.
    #[error("{what} {id} is not in the district's catalog; sync to get the current catalog")]
    UnknownReference {
        /// Which list: `project`, `unit`, `service type`, `hazard type`.
        what: String,
        /// The id named.
        id: uuid::Uuid,
    },
    /// A value failed validation.
    #[error("{field} {reason}")]
    Invalid {
        /// Which field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Violation {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Violation::WrongAuthor { .. } => "wrong_author",
            Violation::OutOfScope => "out_of_scope",
            Violation::RoleNotAllowed { .. } => "role_not_allowed",
            Violation::NotOwner { .. } => "not_owner",
            Violation::VisitRemoved(_) => "visit_removed",
            Violation::Immutable { .. } => "immutable",
            Violation::AlreadyExists { .. } => "already_exists",
            Violation::UnknownField { .. } => "unknown_field",
            Violation::UnknownReference { .. } => "unknown_reference",
            Violation::Invalid { .. } => "invalid",
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Violation {
    Violation::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn role_not_allowed(role: Role, action: &str) -> Violation {
    Violation::RoleNotAllowed {
        role,
        action: action.to_owned(),
    }
}

/// Checks `changes`, already applied to `after`, made by `editor`. `before` are the
/// document's heads before they were applied (empty for a new document).
pub fn check(
    editor: &Editor<'_>,
    after: &Automerge,
    before: &[ChangeHash],
    changes: &[Change],
) -> Result<(), Violation> {
    check_touched(editor, after, before, changes).map(drop)
}

/// [`check`] and then [`check_catalog_refs`], finding what the changes touched once
/// for both (the server's check of an upload).
pub fn check_with_catalog(
    editor: &Editor<'_>,
    after: &Automerge,
    before: &[ChangeHash],
    changes: &[Change],
    catalog: Option<&Catalog>,
) -> Result<(), Violation> {
    let touched = check_touched(editor, after, before, changes)?;
    catalog_refs(after, &touched, catalog)
}

/// [`check`], returning what the changes touched.
fn check_touched(
    editor: &Editor<'_>,
    after: &Automerge,
    before: &[ChangeHash],
    changes: &[Change],
) -> Result<Vec<crate::doc::paths::Touch>, Violation> {
    let user = editor.principal.user;
    for c in changes {
        let found = c.message();
        if found.and_then(|m| m.parse::<UserId>().ok()) != Some(user) {
            return Err(Violation::WrongAuthor {
                expected: user,
                found: found.map(str::to_owned),
            });
        }
        check_time("change time", c.timestamp(), editor.now)?;
    }
    let header = header(after)
        .map_err(|e| invalid("document", e.to_string()))?
        .ok_or_else(|| invalid("document", "is not a Linli document (no kind)"))?;
    // Older documents are fine to write to (readers understand every older layout and
    // the server migrates them); a newer one this build cannot validate.
    if header.schema > CURRENT_SCHEMA {
        return Err(invalid(
            "schema",
            format!(
                "{} is newer than this build's {CURRENT_SCHEMA}; update the app",
                header.schema
            ),
        ));
    }
    let touched = touched_by(after, changes)?;
    let ctx = Ctx {
        editor,
        after,
        before,
        is_new: before.is_empty(),
    };
    match header.kind {
        DocKind::Resident => ctx.check_resident(&touched)?,
        DocKind::Catalog => ctx.check_catalog(header.id, &touched)?,
    }
    Ok(touched)
}

/// A visit names only what its district's catalog holds: its project, unit, service
/// types and hazard types (archived entries too, so an old visit stays amendable).
/// Checks the visits that `changes` (already in `after`) create or whose references
/// they write; `catalog` is the district's, `None` when it has none yet. Run by the
/// server step after [`check`], and by the phone library before it keeps a visit.
pub fn check_catalog_refs(
    after: &Automerge,
    changes: &[Change],
    catalog: Option<&Catalog>,
) -> Result<(), Violation> {
    if catalog.is_none() {
        return Ok(());
    }
    let touched = touched_by(after, changes)?;
    catalog_refs(after, &touched, catalog)
}

/// Where `changes` (already in `after`) wrote, or why they cannot be located.
fn touched_by(
    after: &Automerge,
    changes: &[Change],
) -> Result<Vec<crate::doc::paths::Touch>, Violation> {
    touches_all(after, changes).map_err(|e| invalid("change", e.to_string()))
}

/// [`check_catalog_refs`] for the paths the changes touched.
fn catalog_refs(
    after: &Automerge,
    touched: &[crate::doc::paths::Touch],
    catalog: Option<&Catalog>,
) -> Result<(), Violation> {
    let Some(cat) = catalog else {
        return Ok(());
    };
    let mut visits = BTreeSet::new();
    for t in touched {
        if let Target::Visit { id, field } = classify(t)
            && field
                .as_deref()
                .is_none_or(|f| [V_PROJECT, V_UNIT, V_SERVICES, V_HAZARDS].contains(&f))
        {
            visits.insert(id);
        }
    }
    if visits.is_empty() {
        return Ok(());
    }
    let unknown = |what: &str, id: uuid::Uuid| Violation::UnknownReference {
        what: what.to_owned(),
        id,
    };
    let Some(all) = schema::get_obj(after, &ROOT, VISITS) else {
        return Ok(());
    };
    for id in visits {
        let Some(obj) = schema::get_obj(after, &all, &id.to_string()) else {
            continue;
        };
        let visit = read_visit(after, id, &obj).map_err(|e| invalid("visit", e.to_string()))?;
        let r = &visit.record;
        if !cat.projects.iter().any(|e| e.id == r.project) {
            return Err(unknown("project", r.project.0));
        }
        if let Some(unit) = r.unit
            && !cat.units.iter().any(|e| e.id == unit)
        {
            return Err(unknown("unit", unit.0));
        }
        if let Some(s) = r
            .services
            .iter()
            .find(|s| !cat.service_types.iter().any(|e| e.id == **s))
        {
            return Err(unknown("service type", s.0));
        }
        if let Some(h) = r
            .hazards
            .iter()
            .find(|h| !cat.hazard_types.iter().any(|e| e.id == h.hazard_type))
        {
            return Err(unknown("hazard type", h.hazard_type.0));
        }
    }
    Ok(())
}

fn check_time(field: &str, t: Timestamp, now: Timestamp) -> Result<(), Violation> {
    if t < limits::EARLIEST {
        return Err(invalid(field, format!("{t} is before 2020")));
    }
    if t > now.saturating_add(limits::CLOCK_SKEW_MS) {
        return Err(invalid(
            field,
            format!("{t} is more than a day in the future"),
        ));
    }
    Ok(())
}

fn len(field: &str, text: &str, max: usize) -> Result<(), Violation> {
    check_len(text, max).map_err(|r| invalid(field, r))
}

/// A visit the changes write, as found and read once by the rules' walk over them.
struct SeenVisit {
    obj: ObjId,
    /// The visit as it stands after the changes, or why it cannot be read.
    read: Result<Visit, String>,
    /// Its volunteer.
    owner: Option<UserId>,
}

struct Ctx<'a> {
    editor: &'a Editor<'a>,
    after: &'a Automerge,
    before: &'a [ChangeHash],
    is_new: bool,
}

impl Ctx<'_> {
    fn role(&self) -> Role {
        self.editor.principal.role
    }

    fn user(&self) -> UserId {
        self.editor.principal.user
    }

    /// The object at `parent/key` in the document as it was before.
    fn obj_before(&self, parent: &ObjId, key: &str) -> Option<ObjId> {
        if self.is_new {
            return None;
        }
        match self.after.get_at(parent, key, self.before).ok().flatten() {
            Some((Value::Object(_), id)) => Some(id),
            _ => None,
        }
    }

    fn scalar_before(&self, parent: &ObjId, key: &str) -> Option<automerge::ScalarValue> {
        if self.is_new {
            return None;
        }
        match self.after.get_at(parent, key, self.before).ok().flatten() {
            Some((Value::Scalar(s), _)) => Some(s.into_owned()),
            _ => None,
        }
    }

    fn id_before<I: From<uuid::Uuid>>(&self, parent: &ObjId, key: &str) -> Option<I> {
        self.scalar_before(parent, key)
            .and_then(|v| uuid_of(&v, key).ok())
            .map(I::from)
    }

    fn check_resident(&self, touched: &[crate::doc::paths::Touch]) -> Result<(), Violation> {
        let doc = self.after;
        let bad = |e: crate::error::Error| invalid("resident", e.to_string());
        let resident: ResidentId = schema::id(doc, &ROOT, ID).map_err(bad)?;
        let district: DistrictId = schema::id(doc, &ROOT, DISTRICT).map_err(bad)?;
        let station: StationId = schema::id(doc, &ROOT, STATION).map_err(bad)?;
        let scope = &self.editor.principal.scope;
        if !scope.covers(resident, district, station) {
            return Err(Violation::OutOfScope);
        }
        if !self.is_new {
            let was: Option<(DistrictId, StationId)> = self
                .id_before(&ROOT, DISTRICT)
                .zip(self.id_before(&ROOT, STATION));
            if let Some((d, s)) = was
                && !scope.covers(resident, d, s)
            {
                return Err(Violation::OutOfScope);
            }
        } else if !self.role().is_staff() {
            return Err(role_not_allowed(self.role(), "register a resident"));
        }

        let visits_before = self.obj_before(&ROOT, VISITS);
        let follow_ups_before = self.obj_before(&ROOT, FOLLOW_UPS);
        let visit_before = |id: VisitId| {
            visits_before
                .as_ref()
                .and_then(|all| self.obj_before(all, &id.to_string()))
        };
        let follow_up_before = |id: FollowUpId| {
            follow_ups_before
                .as_ref()
                .and_then(|all| self.obj_before(all, &id.to_string()))
        };

        let mut new_visits = BTreeSet::new();
        let mut new_follow_ups = BTreeSet::new();
        let mut new_comments = BTreeSet::new();
        for t in touched {
            match classify(t) {
                Target::Visit { id, field: None } => {
                    if t.delete || visit_before(id).is_some() {
                        return Err(Violation::VisitRemoved(id));
                    }
                    new_visits.insert(id);
                }
                Target::FollowUp { id, field: None } => {
                    if t.delete || follow_up_before(id).is_some() {
                        return Err(Violation::Immutable {
                            field: format!("follow-up {id}"),
                        });
                    }
                    new_follow_ups.insert(id);
                }
                Target::Comment {
                    follow_up,
                    id,
                    field: None,
                } => {
                    let existed = follow_up_before(follow_up)
                        .and_then(|t| self.obj_before(&t, F_COMMENTS))
                        .and_then(|all| self.obj_before(&all, &id.to_string()))
                        .is_some();
                    if t.delete || existed {
                        return Err(Violation::Immutable {
                            field: format!("comment {id}"),
                        });
                    }
                    new_comments.insert(id);
                }
                _ => {}
            }
        }

        let mut check_visits = BTreeSet::new();
        let mut reviewed = BTreeSet::new();
        let mut check_follow_ups = BTreeSet::new();
        let mut check_profile = BTreeSet::new();
        let mut restarted = BTreeSet::new();
        let mut closed = BTreeSet::new();
        let mut closure_written = false;
        let visits_now = get_obj(doc, &ROOT, VISITS);
        // A station's first upload creates hundreds of visits: their objects are found
        // in one pass over the visits rather than a lookup each.
        let visit_objs: Option<BTreeMap<String, ObjId>> = match &visits_now {
            Some(all) if new_visits.len() > 8 => Some(
                doc.map_range(all, ..)
                    .filter(|item| matches!(item.value, automerge::ValueRef::Object(_)))
                    .map(|item| (item.key.to_string(), item.id()))
                    .collect(),
            ),
            _ => None,
        };
        let mut visits_seen: BTreeMap<VisitId, SeenVisit> = BTreeMap::new();
        for t in touched {
            let target = classify(t);
            if matches!(
                target,
                Target::Profile(_)
                    | Target::Visit { .. }
                    | Target::FollowUp { .. }
                    | Target::Comment { .. }
            ) {
                check_shape(t)?;
            }
            match target {
                Target::Root(key) => {
                    let creating = self.is_new
                        && [
                            SCHEMA, KIND, ID, DISTRICT, STATION, CREATED_BY, CREATED_AT, PROFILE,
                            VISITS, FOLLOW_UPS,
                        ]
                        .contains(&key.as_str());
                    if creating {
                        continue;
                    }
                    if key == CLOSURE {
                        // Closing (the map written) and reopening (deleted).
                        if !self.role().is_staff() {
                            return Err(role_not_allowed(
                                self.role(),
                                "close or reopen a case file",
                            ));
                        }
                        closure_written = true;
                        continue;
                    }
                    if key == STATION && !t.delete {
                        if !self.role().is_staff() {
                            return Err(role_not_allowed(
                                self.role(),
                                "move a resident to another station",
                            ));
                        }
                        continue;
                    }
                    // Header fields and containers (replacing `visits` would drop every
                    // visit) are fixed once the document exists.
                    return Err(Violation::Immutable { field: key });
                }
                Target::Profile(key) => {
                    let field = ProfileField::from_key(&key)
                        .ok_or_else(|| Violation::UnknownField { path: t.display() })?;
                    if field.is_restricted() && !self.role().is_staff() && !self.is_new {
                        return Err(role_not_allowed(
                            self.role(),
                            &format!("edit the restricted field {key}"),
                        ));
                    }
                    check_profile.insert(field);
                }
                Target::Visit { id, field: None } => {
                    check_visits.insert(id);
                }
                Target::Visit {
                    id,
                    field: Some(field),
                } => {
                    let created_now = new_visits.contains(&id);
                    // A new visit touches a dozen fields, and is validated whole below:
                    // read it once.
                    let seen = match visits_seen.entry(id) {
                        btree_map::Entry::Occupied(seen) => seen.into_mut(),
                        btree_map::Entry::Vacant(slot) => {
                            let key = id.to_string();
                            let v = match &visit_objs {
                                Some(objs) => objs.get(&key).cloned(),
                                None => visits_now.as_ref().and_then(|all| get_obj(doc, all, &key)),
                            }
                            .ok_or_else(|| Violation::UnknownField { path: t.display() })?;
                            let read = read_visit(doc, id, &v).map_err(|e| e.to_string());
                            let owner = match &read {
                                Ok(visit) => Some(visit.volunteer),
                                Err(_) => opt_id(doc, &v, V_VOLUNTEER).ok().flatten(),
                            };
                            slot.insert(SeenVisit {
                                obj: v,
                                read,
                                owner,
                            })
                        }
                    };
                    let (v, own) = (&seen.obj, seen.owner == Some(self.user()));
                    match field.as_str() {
                        V_VOLUNTEER if !created_now => {
                            return Err(Violation::Immutable {
                                field: format!("the volunteer of visit {id}"),
                            });
                        }
                        V_VOLUNTEER => {}
                        V_REVIEW => {
                            if !self.role().is_staff() {
                                return Err(role_not_allowed(self.role(), "review a visit"));
                            }
                            reviewed.insert(id);
                        }
                        V_TOMBSTONED => {
                            if !own && !self.role().is_staff() {
                                return Err(Violation::NotOwner {
                                    what: format!("visit {id}"),
                                });
                            }
                            let was = self
                                .scalar_before(v, V_TOMBSTONED)
                                .is_some_and(|s| s == automerge::ScalarValue::Boolean(true));
                            let is = bool_or_false(doc, v, V_TOMBSTONED).unwrap_or(false);
                            if was && !is {
                                return Err(Violation::Immutable {
                                    field: format!("the tombstone of visit {id}"),
                                });
                            }
                        }
                        f if VISIT_RECORD_FIELDS.contains(&f) => {
                            if f == V_STARTED {
                                restarted.insert(id);
                            }
                            if !own {
                                return Err(Violation::NotOwner {
                                    what: format!("visit {id}"),
                                });
                            }
                        }
                        _ => return Err(Violation::UnknownField { path: t.display() }),
                    }
                    check_visits.insert(id);
                }
                Target::FollowUp { id, field: None } => {
                    check_follow_ups.insert(id);
                }
                Target::FollowUp {
                    id,
                    field: Some(field),
                } => {
                    if field == F_CLOSED_AT || field == F_CLOSED_BY {
                        closed.insert(id);
                    }
                    if !new_follow_ups.contains(&id) {
                        let before = follow_up_before(id)
                            .ok_or_else(|| Violation::UnknownField { path: t.display() })?;
                        if FOLLOW_UP_DECISIONS.contains(&field.as_str()) {
                            let owner: Option<UserId> = self.id_before(&before, F_OWNER);
                            if !self.role().is_staff() && owner != Some(self.user()) {
                                return Err(Violation::NotOwner {
                                    what: format!("the decisions on follow-up {id}"),
                                });
                            }
                        } else {
                            return Err(Violation::Immutable {
                                field: format!("{field} of follow-up {id}"),
                            });
                        }
                    }
                    check_follow_ups.insert(id);
                }
                Target::Comment {
                    follow_up,
                    id,
                    field,
                } => {
                    let created = new_comments.contains(&id);
                    if !created || (field.is_none() && t.delete) {
                        return Err(Violation::Immutable {
                            field: format!("comment {id}"),
                        });
                    }
                    check_follow_ups.insert(follow_up);
                }
                Target::Closure(field) => {
                    if !CLOSURE_FIELDS.contains(&field.as_str()) {
                        return Err(Violation::UnknownField { path: t.display() });
                    }
                    if !self.role().is_staff() {
                        return Err(role_not_allowed(self.role(), "close or reopen a case file"));
                    }
                    closure_written = true;
                }
                Target::CatalogEntry { .. } | Target::Unknown => {
                    return Err(Violation::UnknownField { path: t.display() });
                }
            }
        }
        if closure_written {
            self.validate_closure()?;
        }

        // Nothing ever removes a visit. Every path that could (deleting or replacing a
        // visit, replacing the map) was refused above; as a second line, the map must
        // not have shrunk. Counting keeps this O(1) in the number of visits.
        if let Some(all_before) = &visits_before {
            let before = self.after.length_at(all_before, self.before);
            let after = get_obj(doc, &ROOT, VISITS).map_or(0, |all| doc.length(&all));
            if after < before {
                return Err(invalid(
                    "visits",
                    format!("would shrink from {before} to {after}"),
                ));
            }
        }

        // Validate everything touched, in the state after the changes.
        if self.is_new {
            check_profile.extend(ProfileField::ALL.iter().copied());
        }
        if get_obj(doc, &ROOT, PROFILE).is_none() {
            return Err(invalid("profile", "is missing"));
        }
        for field in check_profile {
            crate::doc::casefile::profile_field_value(doc, field)
                .and_then(|value| field.validate(&value))
                .map_err(|r| invalid(field.key(), r))?;
        }
        for id in check_visits {
            let created = new_visits.contains(&id);
            self.validate_visit(
                id,
                visits_seen.remove(&id),
                reviewed.contains(&id),
                created || restarted.contains(&id),
                created,
            )?;
        }
        for id in check_follow_ups {
            self.validate_follow_up(id, new_follow_ups.contains(&id), closed.contains(&id))?;
        }
        Ok(())
    }

    /// A closure as written: a known reason, a short note, a plausible time, and the
    /// writing user as its author. A reopened (deleted) closure needs nothing.
    fn validate_closure(&self) -> Result<(), Violation> {
        let closure = crate::doc::casefile::read_closure(self.after)
            .map_err(|e| invalid("closure", e.to_string()))?;
        let Some(c) = closure else {
            return Ok(());
        };
        len("closure note", &c.note, limits::SHORT_TEXT)?;
        check_time("closure time", c.at, self.editor.now)?;
        if c.by != self.user() {
            return Err(invalid("closure", "must name the closing user"));
        }
        Ok(())
    }

    /// Validates visit `id` as it stands after the changes (`seen`: found and read
    /// already).
    fn validate_visit(
        &self,
        id: VisitId,
        seen: Option<SeenVisit>,
        reviewed: bool,
        start_written: bool,
        created: bool,
    ) -> Result<(), Violation> {
        let doc = self.after;
        let field = format!("visit {id}");
        let (v, visit) = match seen {
            Some(seen) => (seen.obj, seen.read),
            None => {
                let v = get_obj(doc, &ROOT, VISITS)
                    .and_then(|all| get_obj(doc, &all, &id.to_string()))
                    .ok_or_else(|| invalid(&field, "is missing"))?;
                let visit = read_visit(doc, id, &v).map_err(|e| e.to_string());
                (v, visit)
            }
        };
        let visit = visit.map_err(|e| invalid(&field, e))?;
        if created && visit.volunteer != self.user() {
            return Err(Violation::NotOwner {
                what: format!("{field}: visits are logged under one's own id"),
            });
        }
        let r = &visit.record;
        if start_written {
            check_time("started_at", r.started_at, self.editor.now)?;
        }
        if r.ended_at < r.started_at {
            return Err(invalid("ended_at", "is before started_at"));
        }
        if r.ended_at - r.started_at > limits::MAX_VISIT_MS {
            return Err(invalid("ended_at", "makes the visit longer than 12 hours"));
        }
        if r.services.len() > limits::LIST_ITEMS {
            return Err(invalid(
                "services",
                format!("lists more than {}", limits::LIST_ITEMS),
            ));
        }
        if r.hazards.len() > limits::LIST_ITEMS {
            return Err(invalid(
                "hazards",
                format!("lists more than {}", limits::LIST_ITEMS),
            ));
        }
        len("notes", &r.notes, limits::LONG_TEXT)?;
        len("remarks", &r.condition.remarks, limits::LONG_TEXT)?;
        for h in &r.hazards {
            len("hazard note", &h.note, limits::LONG_TEXT)?;
        }
        let c = &r.condition;
        for (name, value, range) in [
            ("systolic", c.systolic, 40..=300),
            ("diastolic", c.diastolic, 20..=200),
            ("blood_sugar_dmmol", c.blood_sugar_dmmol, 5..=500),
        ] {
            if let Some(n) = value
                && !range.contains(&n)
            {
                return Err(invalid(name, format!("{n} is out of range")));
            }
        }
        if reviewed {
            // The review this change wrote: another reviewer's, written at the same
            // time, may be the one the merge shows; both are kept.
            let reviews = crate::doc::casefile::read_reviews(doc, &v)
                .map_err(|e| invalid("review", e.to_string()))?;
            if reviews.is_empty() {
                return Err(invalid("review", "is incomplete"));
            }
            let review = reviews
                .iter()
                .find(|r| r.reviewer == self.user())
                .ok_or_else(|| invalid("reviewer", "must be the reviewing user"))?;
            check_time("review time", review.at, self.editor.now)?;
            len("review comment", &review.comment, limits::LONG_TEXT)?;
        }
        Ok(())
    }

    fn validate_follow_up(
        &self,
        id: FollowUpId,
        created: bool,
        closed: bool,
    ) -> Result<(), Violation> {
        let doc = self.after;
        let field = format!("follow-up {id}");
        let f = get_obj(doc, &ROOT, FOLLOW_UPS)
            .and_then(|all| get_obj(doc, &all, &id.to_string()))
            .ok_or_else(|| invalid(&field, "is missing"))?;
        let ticket = read_follow_up(doc, id, &f).map_err(|e| invalid(&field, e.to_string()))?;
        if created && ticket.opened_by != self.user() {
            return Err(invalid("opened_by", "must be the opening user"));
        }
        if created {
            check_time("opened_at", ticket.opened_at, self.editor.now)?;
        }
        if closed {
            if ticket.closed_by.is_some_and(|u| u != self.user()) {
                return Err(invalid("closed_by", "must be the closing user"));
            }
            if let Some(at) = ticket.closed_at {
                check_time("closed_at", at, self.editor.now)?;
            }
        }
        if ticket.title.trim().is_empty() {
            return Err(invalid("title", "must not be empty"));
        }
        len("title", &ticket.title, limits::SHORT_TEXT)?;
        len("resolution", &ticket.resolution, limits::LONG_TEXT)?;
        if let Some(d) = ticket.deadline
            && d < limits::EARLIEST
        {
            return Err(invalid("deadline", "is before 2020"));
        }
        if let Some(v) = ticket.visit {
            let exists = get_obj(doc, &ROOT, VISITS)
                .and_then(|all| get_obj(doc, &all, &v.to_string()))
                .is_some();
            if !exists {
                return Err(invalid(
                    "visit",
                    format!("{v} is not a visit of this resident"),
                ));
            }
        }
        for c in &ticket.comments {
            if c.text.trim().is_empty() {
                return Err(invalid("comment", "must not be empty"));
            }
            len("comment", &c.text, limits::LONG_TEXT)?;
        }
        // Comments this batch added must be the acting user's own.
        let comments_before = self
            .obj_before(&ROOT, FOLLOW_UPS)
            .and_then(|all| self.obj_before(&all, &id.to_string()))
            .and_then(|t| self.obj_before(&t, F_COMMENTS));
        for c in &ticket.comments {
            let existed = comments_before
                .as_ref()
                .is_some_and(|all| self.obj_before(all, &c.id.to_string()).is_some());
            if !existed && c.author != self.user() {
                return Err(invalid("comment author", "must be the commenting user"));
            }
            if !existed {
                check_time("comment time", c.at, self.editor.now)?;
            }
        }
        Ok(())
    }

    fn check_catalog(
        &self,
        district: uuid::Uuid,
        touched: &[crate::doc::paths::Touch],
    ) -> Result<(), Violation> {
        if !matches!(self.role(), Role::Coordinator | Role::Admin) {
            return Err(role_not_allowed(self.role(), "edit the catalog"));
        }
        if self.editor.principal.scope.district().0 != district {
            return Err(Violation::OutOfScope);
        }
        let doc = self.after;
        let mut entries = BTreeSet::new();
        for t in touched {
            match classify(t) {
                Target::Root(key) => {
                    let creating = self.is_new
                        && ([SCHEMA, KIND, ID, DISTRICT].contains(&key.as_str())
                            || CatalogKind::from_code(&key).is_some());
                    if !creating {
                        return Err(Violation::Immutable { field: key });
                    }
                }
                Target::CatalogEntry { kind, id, field } => {
                    if t.delete && field.is_none() {
                        return Err(Violation::Immutable {
                            field: format!("{kind} entry {id} (archive it instead)"),
                        });
                    }
                    if let Some(f) = &field
                        && ![E_NAME, E_NAME_EN, E_PARENT, E_ARCHIVED].contains(&f.as_str())
                    {
                        return Err(Violation::UnknownField { path: t.display() });
                    }
                    entries.insert((kind, id));
                }
                _ => return Err(Violation::UnknownField { path: t.display() }),
            }
        }
        for (kind, id) in entries {
            let list = get_obj(doc, &ROOT, kind.code())
                .ok_or_else(|| invalid(kind.code(), "is missing"))?;
            let entry = crate::doc::catalog::read_entry::<_, uuid::Uuid>(doc, &list, id)
                .map_err(|e| invalid(kind.code(), e.to_string()))?
                .ok_or_else(|| invalid(kind.code(), format!("entry {id} is missing")))?;
            if entry.name.trim().is_empty() {
                return Err(invalid("name", "must not be empty"));
            }
            len("name", &entry.name, limits::SHORT_TEXT)?;
            len("name_en", &entry.name_en, limits::SHORT_TEXT)?;
        }
        Ok(())
    }
}

/// Checks that a write below the profile, a visit, a ticket or a comment lands on a
/// known key, and creates objects exactly where the schema has them.
fn check_shape(t: &crate::doc::paths::Touch) -> Result<(), Violation> {
    use crate::doc::paths::Seg::{self, Index, Key};
    const CONDITION: &[&str] = &[C_WELLBEING, C_SYSTOLIC, C_DIASTOLIC, C_SUGAR, C_REMARKS];
    const HAZARD: &[&str] = &[H_TYPE, H_SEVERITY, H_FIXED, H_NOTE];
    const REVIEW: &[&str] = &[R_STATUS, R_REVIEWER, R_COMMENT, R_AT];
    const VISIT_SCALARS: &[&str] = &[
        V_VOLUNTEER,
        V_PROJECT,
        V_UNIT,
        V_STARTED,
        V_ENDED,
        V_NOTES,
        V_FOLLOW_UP,
        V_TOMBSTONED,
    ];
    const TICKET_SCALARS: &[&str] = &[
        F_VISIT,
        F_TITLE,
        F_OPENED_BY,
        F_OPENED_AT,
        F_OWNER,
        F_DEADLINE,
        F_STATUS,
        F_CLOSED_BY,
        F_CLOSED_AT,
        F_RESOLUTION,
    ];
    const COMMENT: &[&str] = &[M_AUTHOR, M_AT, M_TEXT];
    let is = |s: &Seg, keys: &[&str]| matches!(s, Key(k) if keys.contains(&k.as_str()));
    let key = |s: &Seg, k: &str| matches!(s, Key(x) if x == k);
    let p = &t.path;
    // Some(true): an object belongs here; Some(false): a scalar; None: nothing does.
    let object = match p.as_slice() {
        [Key(_), _] if key(&p[0], PROFILE) => Some(false),
        [root, _] if key(root, VISITS) || key(root, FOLLOW_UPS) => Some(true),
        [root, _, f] if key(root, VISITS) => match f {
            Key(k) if [V_CONDITION, V_SERVICES, V_HAZARDS, V_REVIEW].contains(&k.as_str()) => {
                Some(true)
            }
            _ if is(f, VISIT_SCALARS) => Some(false),
            _ => None,
        },
        [root, _, f, k] if key(root, VISITS) && key(f, V_CONDITION) && is(k, CONDITION) => {
            Some(false)
        }
        [root, _, f, Index] if key(root, VISITS) && key(f, V_SERVICES) => Some(false),
        [root, _, f, Index] if key(root, VISITS) && key(f, V_HAZARDS) => Some(true),
        [root, _, f, Index, k] if key(root, VISITS) && key(f, V_HAZARDS) && is(k, HAZARD) => {
            Some(false)
        }
        [root, _, f, k] if key(root, VISITS) && key(f, V_REVIEW) && is(k, REVIEW) => Some(false),
        [root, _, f] if key(root, FOLLOW_UPS) && key(f, F_COMMENTS) => Some(true),
        [root, _, f] if key(root, FOLLOW_UPS) && is(f, TICKET_SCALARS) => Some(false),
        [root, _, f, _] if key(root, FOLLOW_UPS) && key(f, F_COMMENTS) => Some(true),
        [root, _, f, _, k] if key(root, FOLLOW_UPS) && key(f, F_COMMENTS) && is(k, COMMENT) => {
            Some(false)
        }
        _ => None,
    };
    match object {
        None => Err(Violation::UnknownField { path: t.display() }),
        Some(false) if t.make => Err(invalid(t.display(), "has the wrong type (an object)")),
        Some(true) if !t.make && !t.delete => {
            Err(invalid(t.display(), "has the wrong type (not an object)"))
        }
        Some(_) => Ok(()),
    }
}
