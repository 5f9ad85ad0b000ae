//! Linli's Automerge documents: the resident case file and the district catalog, with
//! typed operations, typed reads, conflicts, history and schema migration.

pub mod casefile;
pub mod catalog;
pub mod conflicts;
pub mod history;
pub mod migrate;
pub mod paths;
pub mod schema;

use crate::error::{Error, Result};
use crate::rules::{self, Editor};
use automerge::transaction::Transaction;
use automerge::{Automerge, Change, ChangeHash, ROOT, ReadDoc, ScalarValue};
use schema::*;
use uuid::Uuid;

/// What a document is, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// A resident's case file.
    Resident,
    /// A district's catalog.
    Catalog,
}

/// The kind, id and schema version a document declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Case file or catalog.
    pub kind: DocKind,
    /// The document's id (resident or district id).
    pub id: Uuid,
    /// The schema version it was written with.
    pub schema: u64,
}

/// Reads a document's header. An empty document has none.
pub fn header(doc: &Automerge) -> Result<Option<Header>> {
    let kind = match opt_str(doc, &ROOT, KIND)? {
        None => return Ok(None),
        Some(k) if k == KIND_RESIDENT => DocKind::Resident,
        Some(k) if k == KIND_CATALOG => DocKind::Catalog,
        Some(k) => return Err(malformed(format!("unknown document kind {k:?}"))),
    };
    let schema = match scalar(doc, &ROOT, SCHEMA) {
        Some(ScalarValue::Uint(v)) => v,
        Some(ScalarValue::Int(v)) if v >= 0 => v.unsigned_abs(),
        _ => return Err(malformed("schema version is missing")),
    };
    Ok(Some(Header {
        kind,
        id: id(doc, &ROOT, ID)?,
        schema,
    }))
}

pub(crate) fn check_header(doc: &Automerge, expected: &str) -> Result<Uuid> {
    let h = header(doc)?.ok_or_else(|| malformed("the document is empty"))?;
    let kind = match h.kind {
        DocKind::Resident => KIND_RESIDENT,
        DocKind::Catalog => KIND_CATALOG,
    };
    if kind != expected {
        return Err(malformed(format!(
            "expected a {expected} document, found a {kind}"
        )));
    }
    if h.schema > CURRENT_SCHEMA {
        return Err(Error::SchemaTooNew {
            found: h.schema,
            supported: CURRENT_SCHEMA,
        });
    }
    Ok(h.id)
}

/// The changes `doc` holds past `before`. For a local edit (one change committed on top
/// of `before`) that change alone, found by its hash: Automerge 0.12 answers
/// `get_changes` by collecting changes from the whole op set, which costs a phone
/// milliseconds per write on a resident with a long history. Anything else (a merge,
/// several changes) goes to `get_changes`.
pub fn changes_since(doc: &Automerge, before: &[ChangeHash]) -> Vec<Change> {
    let heads = doc.get_heads();
    if heads == before {
        return Vec::new();
    }
    if let [head] = heads[..]
        && let Some(change) = doc.get_change_by_hash(&head)
    {
        let mut deps = change.deps().to_vec();
        let mut before = before.to_vec();
        deps.sort();
        before.sort();
        if deps == before {
            return vec![change];
        }
    }
    doc.get_changes(before)
}

/// Commits `write` as one change authored by `editor`, then runs the rules on it. A
/// refused change is rolled back out of `doc` (rebuilding it at the previous heads:
/// the rare path) and reported as [`Error::Rejected`].
pub(crate) fn commit_checked(
    doc: &mut Automerge,
    editor: &Editor<'_>,
    write: impl FnOnce(&mut Transaction<'_>) -> Result<()>,
) -> Result<Option<ChangeHash>> {
    let before = doc.get_heads();
    let mut tx = doc.transaction();
    if let Err(e) = write(&mut tx) {
        tx.rollback();
        return Err(e);
    }
    let (hash, _) = tx.commit_with(casefile::commit_options(editor));
    let Some(hash) = hash else {
        return Ok(None);
    };
    let change = doc
        .get_change_by_hash(&hash)
        .ok_or_else(|| malformed("the new change is missing"))?;
    if let Err(violation) = rules::check(editor, doc, &before, std::slice::from_ref(&change)) {
        let actor = doc.get_actor().clone();
        *doc = doc.fork_at(&before)?.with_actor(actor);
        return Err(violation.into());
    }
    Ok(Some(hash))
}
