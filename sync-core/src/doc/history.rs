//! A document's edit history, for the audit trail coordinators see: every change with
//! its time, device, user and what it touched.

use super::paths::{Locator, Target, classify};
use crate::error::Result;
use crate::ids::{FollowUpId, Timestamp, UserId, VisitId};
use crate::model::CatalogKind;
use automerge::Automerge;
use std::collections::BTreeSet;

/// What one change touched, summarised.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touched {
    /// A header field or container at the root (creation, station, schema).
    Root(String),
    /// A profile field.
    Profile(String),
    /// A visit (created, amended, tombstoned or reviewed).
    Visit(VisitId),
    /// A follow-up ticket or its comments.
    FollowUp(FollowUpId),
    /// A catalog entry.
    Catalog(CatalogKind, uuid::Uuid),
    /// Something outside Linli's schema.
    Other(String),
}

/// One change in a document's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The change hash, hex.
    pub hash: String,
    /// When, by the writing device's clock (Unix ms).
    pub at: Timestamp,
    /// The device's Automerge actor, hex.
    pub actor: String,
    /// The author, when the change names one (migrations name none).
    pub user: Option<UserId>,
    /// What it touched.
    pub touched: BTreeSet<Touched>,
}

/// The history of `doc`, oldest first (a causal order: no change precedes its
/// dependencies).
pub fn history(doc: &Automerge) -> Result<Vec<HistoryEntry>> {
    let mut out = Vec::new();
    let mut locator = Locator::new(doc);
    for change in doc.get_changes(&[]) {
        let mut touched = BTreeSet::new();
        for touch in locator.touches(&change)? {
            touched.insert(match classify(&touch) {
                Target::Root(k) => Touched::Root(k),
                // Closing writes the closure's fields: one entry, "closure".
                Target::Closure(_) => Touched::Root(crate::doc::schema::CLOSURE.to_owned()),
                Target::Profile(k) => Touched::Profile(k),
                Target::Visit { id, .. } => Touched::Visit(id),
                Target::FollowUp { id, .. } | Target::Comment { follow_up: id, .. } => {
                    Touched::FollowUp(id)
                }
                Target::CatalogEntry { kind, id, .. } => Touched::Catalog(kind, id),
                Target::Unknown => Touched::Other(touch.display()),
            });
        }
        out.push(HistoryEntry {
            hash: change.hash().to_string(),
            at: change.timestamp(),
            actor: change.actor_id().to_hex_string(),
            user: change.message().and_then(|m| m.parse().ok()),
            touched,
        });
    }
    Ok(out)
}
