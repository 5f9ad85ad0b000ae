//! Which parts of a document a change wrote. Rules authorise by these paths and the
//! history shows them, so both read the change's own operations rather than the
//! merged effect: a write that lost a concurrent race is still a write.

use crate::doc::schema::malformed;
use crate::error::Result;
use automerge::{Automerge, Change, ObjId, Prop, ReadDoc, legacy};
use std::collections::{BTreeSet, HashMap};

/// One step of a path: a map key, or a position in a list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    /// A map key.
    Key(String),
    /// A list element.
    Index,
}

/// One operation of a change, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    /// From the root to the written key.
    pub path: Vec<Seg>,
    /// The operation removed the key rather than setting it.
    pub delete: bool,
    /// The operation created an object (map or list) at the key.
    pub make: bool,
    /// The operation overwrote or removed values the change's author saw at the key
    /// (its predecessors). `false` for a key its author found empty, which may still
    /// hold values written concurrently.
    pub replaces: bool,
}

impl Touch {
    /// The map key at `depth`, if that step is a key.
    pub fn key(&self, depth: usize) -> Option<&str> {
        match self.path.get(depth) {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// `a/b/#/c` for messages.
    pub fn display(&self) -> String {
        self.path
            .iter()
            .map(|s| match s {
                Seg::Key(k) => k.as_str(),
                Seg::Index => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Locates every operation of `change` in `doc`, which must already contain it.
pub fn touches(doc: &Automerge, change: &Change) -> Result<Vec<Touch>> {
    Locator::new(doc).touches(change)
}

/// Locates every operation of `changes`, all contained in `doc`, in order, with one
/// [`Locator`] for them all.
pub fn touches_all<'c>(
    doc: &Automerge,
    changes: impl IntoIterator<Item = &'c Change>,
) -> Result<Vec<Touch>> {
    let mut locator = Locator::new(doc);
    let mut out = Vec::new();
    for change in changes {
        out.extend(locator.touches(change)?);
    }
    Ok(out)
}

/// Locates the operations of several changes in one document, remembering the path
/// of every object it has met: the root, `visits` and a visit that many changes write
/// into are looked up once. An object a change makes is located from the operation
/// that makes it (its parent's path and the key it is made at), so a new visit's fields
/// cost no lookup in the document at all; Automerge's parent lookup seeks through the
/// op set, and a station's first upload writes thousands of new objects.
#[derive(Debug)]
pub struct Locator<'a> {
    doc: &'a Automerge,
    paths: HashMap<legacy::ObjectId, Vec<Seg>>,
}

impl<'a> Locator<'a> {
    /// A locator over `doc`, which must contain every change it is asked about.
    pub fn new(doc: &'a Automerge) -> Self {
        Locator {
            doc,
            paths: HashMap::new(),
        }
    }

    /// Locates every operation of `change`.
    pub fn touches(&mut self, change: &Change) -> Result<Vec<Touch>> {
        let expanded = change.decode();
        let mut out = Vec::with_capacity(expanded.operations.len());
        for (counter, op) in (expanded.start_op.get()..).zip(&expanded.operations) {
            let mut path = match self.paths.get(&op.obj) {
                Some(p) => p.clone(),
                None => {
                    let p = object_path(self.doc, &op.obj)?;
                    self.paths.insert(op.obj.clone(), p.clone());
                    p
                }
            };
            path.push(match &op.key {
                legacy::Key::Map(k) => Seg::Key(k.to_string()),
                legacy::Key::Seq(_) => Seg::Index,
            });
            let make = matches!(op.action, legacy::OpType::Make(_));
            if make {
                // The operation's id is the object's: the change's first op number
                // counts up through its operations.
                if path.len() > MAX_DEPTH {
                    return Err(too_deep());
                }
                let made = legacy::ObjectId::Id(legacy::OpId::new(counter, &expanded.actor_id));
                self.paths.insert(made, path.clone());
            }
            out.push(Touch {
                path,
                delete: matches!(op.action, legacy::OpType::Delete),
                make,
                replaces: !op.pred.is_empty(),
            });
        }
        Ok(out)
    }
}

fn object_path(doc: &Automerge, obj: &legacy::ObjectId) -> Result<Vec<Seg>> {
    let id = match obj {
        legacy::ObjectId::Root => return Ok(Vec::new()),
        legacy::ObjectId::Id(legacy::OpId(counter, actor)) => {
            // `actor` is a parsed ActorId, so its hex form is always valid here.
            doc.import_obj(&format!("{counter}@{actor}"))
                .map_err(|_| malformed("a change writes into an unknown object"))?
        }
    };
    path_of(doc, &id)
}

/// Deeper than any object of Linli's documents nests: a path that goes on beyond it is
/// a crafted change's (objects made inside each other in a loop, which Automerge would
/// follow for ever).
const MAX_DEPTH: usize = 32;

fn too_deep() -> crate::Error {
    malformed("a change makes objects nested deeper than a document's, or inside each other")
}

pub(crate) fn path_of(doc: &Automerge, id: &ObjId) -> Result<Vec<Seg>> {
    let parents = doc
        .parents(id)
        .map_err(|_| malformed("a change writes into an unknown object"))?;
    let mut path: Vec<Seg> = parents
        .take(MAX_DEPTH + 1)
        .map(|parent| match parent.prop {
            Prop::Map(k) => Seg::Key(k),
            Prop::Seq(_) => Seg::Index,
        })
        .collect();
    if path.len() > MAX_DEPTH {
        return Err(too_deep());
    }
    path.reverse();
    Ok(path)
}

/// What a touched path is, in Linli's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A key at the document root (header fields, or a container).
    Root(String),
    /// `profile/<field>`.
    Profile(String),
    /// `visits/<id>`, or a field within it (`field` is the first key under the visit).
    Visit {
        /// The visit.
        id: crate::ids::VisitId,
        /// `None` for the visit object itself.
        field: Option<String>,
    },
    /// `follow_ups/<id>`, or a field within it.
    FollowUp {
        /// The ticket.
        id: crate::ids::FollowUpId,
        /// `None` for the ticket object itself.
        field: Option<String>,
    },
    /// `follow_ups/<id>/comments/<comment>`, or a field within it.
    Comment {
        /// The ticket.
        follow_up: crate::ids::FollowUpId,
        /// The comment.
        id: crate::ids::CommentId,
        /// `None` for the comment object itself.
        field: Option<String>,
    },
    /// `closure/<field>`: a closed case file's closure.
    Closure(String),
    /// `<catalog list>/<id>`, or a field within it.
    CatalogEntry {
        /// Which list.
        kind: crate::model::CatalogKind,
        /// The entry.
        id: uuid::Uuid,
        /// `None` for the entry object itself.
        field: Option<String>,
    },
    /// Anywhere else: not part of Linli's schema.
    Unknown,
}

/// Classifies a touched path.
pub fn classify(touch: &Touch) -> Target {
    use super::schema::{CLOSURE, F_COMMENTS, FOLLOW_UPS, PROFILE, VISITS};
    let key = |d| touch.key(d);
    let id_at = |d| key(d).and_then(|k| uuid::Uuid::parse_str(k).ok());
    let field_at = |d: usize| -> Result<Option<String>, ()> {
        match touch.path.get(d) {
            None => Ok(None),
            Some(Seg::Key(k)) => Ok(Some(k.clone())),
            Some(Seg::Index) => Err(()),
        }
    };
    let Some(first) = key(0) else {
        return Target::Unknown;
    };
    if touch.path.len() == 1 {
        return Target::Root(first.to_owned());
    }
    match first {
        PROFILE if touch.path.len() == 2 => {
            key(1).map_or(Target::Unknown, |k| Target::Profile(k.to_owned()))
        }
        CLOSURE if touch.path.len() == 2 => {
            key(1).map_or(Target::Unknown, |k| Target::Closure(k.to_owned()))
        }
        CLOSURE => Target::Unknown,
        VISITS => match (id_at(1), field_at(2)) {
            (Some(id), Ok(field)) => Target::Visit {
                id: id.into(),
                field,
            },
            _ => Target::Unknown,
        },
        FOLLOW_UPS => match (id_at(1), field_at(2)) {
            (Some(fid), Ok(Some(f))) if f == F_COMMENTS && touch.path.len() > 3 => {
                match (id_at(3), field_at(4)) {
                    (Some(cid), Ok(field)) => Target::Comment {
                        follow_up: fid.into(),
                        id: cid.into(),
                        field,
                    },
                    _ => Target::Unknown,
                }
            }
            (Some(id), Ok(field)) => Target::FollowUp {
                id: id.into(),
                field,
            },
            _ => Target::Unknown,
        },
        other => match (
            crate::model::CatalogKind::from_code(other),
            id_at(1),
            field_at(2),
        ) {
            (Some(kind), Some(id), Ok(field)) => Target::CatalogEntry { kind, id, field },
            _ => Target::Unknown,
        },
    }
}

/// What a batch of changes wrote, by kind: to show a person a pending or refused batch
/// (the phone's refused list, the coordinators' quarantine page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Visits created or edited.
    pub visits: BTreeSet<crate::ids::VisitId>,
    /// Profile fields written.
    pub profile: BTreeSet<String>,
    /// Follow-up tickets written (their comments included).
    pub follow_ups: BTreeSet<crate::ids::FollowUpId>,
    /// Other writes (the document's header, catalog entries).
    pub other: usize,
}

/// What `changes`, all contained in `doc`, wrote.
pub fn written<'a>(
    doc: &Automerge,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Result<Written> {
    let mut out = Written::default();
    for t in touches_all(doc, changes)? {
        match classify(&t) {
            Target::Visit { id, .. } => {
                out.visits.insert(id);
            }
            Target::Profile(field) => {
                out.profile.insert(field);
            }
            Target::FollowUp { id, .. } | Target::Comment { follow_up: id, .. } => {
                out.follow_ups.insert(id);
            }
            _ => out.other += 1,
        }
    }
    Ok(out)
}
