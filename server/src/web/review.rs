//! Reviewing a visit from the web: the server writes the review into the resident's
//! Automerge document for the signed-in user, through the core's `review_visit` (which
//! runs the core's rules), under the actor the server holds for that user's web edits,
//! and stores it with the normal append. The feed announces it, and the volunteer's
//! phone receives it at its next sync like any other change.
//!
//! The write itself, [`edit_document`], serves any document the pages edit: case files
//! (reviews, conflict choices) and district catalogs (the administration pages).

use super::WebError;
use super::i18n::Lang;
use super::residents::visible;
use super::session::WebUser;
use crate::error::{Error, Result};
use crate::http::{Announcing, AppState};
use crate::now_ms;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;
use sync_core::automerge::{ActorId, Automerge, Change};
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::catalog::CatalogDoc;
use sync_core::doc::migrate;
use sync_core::ids::{DistrictId, DocId, ResidentId, VisitId};
use sync_core::model::ReviewStatus;
use sync_core::protocol::server::place_of;
use sync_core::protocol::store::{Append, AppendOutcome, ServerStore};
use sync_core::rules::Editor;
use uuid::Uuid;

/// Attempts when another writer moves the document between load and append.
const RETRIES: usize = 8;

#[derive(Debug, Deserialize)]
pub(crate) struct ReviewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    comment: String,
}

/// `POST /web/residents/{resident}/visits/{visit}/review`.
pub(crate) async fn review(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path((resident, visit)): Path<(String, String)>,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| super::unreadable(lang, e))?;
    write(&state, &user, &resident, &visit, &form)
        .await
        .map(|(resident, visit)| {
            Redirect::to(&format!(
                "/web/residents/{resident}?reviewed=1#visit-{visit}"
            ))
            .into_response()
        })
        .map_err(|e| WebError::new(lang, e))
}

async fn write(
    state: &AppState,
    user: &WebUser,
    resident: &str,
    visit: &str,
    form: &ReviewForm,
) -> Result<(Uuid, Uuid)> {
    user.check_csrf(&form.csrf)?;
    let resident = visible(state, &user.user, resident).await?;
    let visit = VisitId(
        Uuid::parse_str(visit.trim()).map_err(|_| Error::NotFound(format!("no visit {visit}")))?,
    );
    let status = match ReviewStatus::from_code(form.status.trim()) {
        Some(s @ (ReviewStatus::Approved | ReviewStatus::NeedsAttention)) => s,
        _ => {
            return Err(Error::bad_request(
                "bad_status",
                "a review approves or asks for attention",
            ));
        }
    };
    let comment = form.comment.trim();
    edit_case_file(state, user, resident, |file, editor| {
        file.review_visit(editor, visit, status, comment)
    })
    .await?;
    tracing::info!(user = %user.user.id, %resident, %visit, "visit reviewed on the web");
    Ok((resident.0, visit.0))
}

/// Writes one edit into a resident's case file for the signed-in user (see
/// [`edit_document`]). The caller has checked the CSRF token and that the resident is
/// in scope. Returns what `edit` returned on the attempt that was stored.
pub(crate) async fn edit_case_file<T>(
    state: &AppState,
    user: &WebUser,
    resident: ResidentId,
    edit: impl Fn(&mut CaseFile, &Editor<'_>) -> sync_core::Result<T>,
) -> Result<T> {
    edit_document::<CaseFile, T>(state, user, DocId(resident.0), edit).await
}

/// A document the web pages write to through the core.
pub(crate) trait WebDoc: Sized {
    /// Wraps a loaded document, checking its kind.
    fn wrap(doc: Automerge) -> sync_core::Result<Self>;
    /// Gives the document back.
    fn into_automerge(self) -> Automerge;
    /// The document to begin with when `id` is not stored yet, written by `editor` as
    /// `actor`; `None` when such a document must exist already.
    fn create(actor: ActorId, editor: &Editor<'_>, id: DocId) -> Option<sync_core::Result<Self>>;
}

impl WebDoc for CaseFile {
    fn wrap(doc: Automerge) -> sync_core::Result<Self> {
        CaseFile::from_doc(doc)
    }
    fn into_automerge(self) -> Automerge {
        self.into_doc()
    }
    fn create(_: ActorId, _: &Editor<'_>, _: DocId) -> Option<sync_core::Result<Self>> {
        // A case file is made by registering a resident, never by an edit.
        None
    }
}

impl WebDoc for CatalogDoc {
    fn wrap(doc: Automerge) -> sync_core::Result<Self> {
        CatalogDoc::from_doc(doc)
    }
    fn into_automerge(self) -> Automerge {
        self.into_doc()
    }
    fn create(actor: ActorId, editor: &Editor<'_>, id: DocId) -> Option<sync_core::Result<Self>> {
        // A district's first catalog entry creates its catalog (the rules check that
        // the editor may write the catalog of this district).
        Some(CatalogDoc::create(actor, editor, DistrictId(id.0)))
    }
}

/// Writes one edit into a document for the signed-in user: loads the document
/// (migrating an old one, as the sync step does, and storing the migration with the
/// edit) or begins it ([`WebDoc::create`]), runs `edit` through the core under the
/// user's principal and web actor (the core's rules check it), and appends the new
/// changes with the heads it started from, retrying when another writer got there
/// first. The feed announces the changes, so phones receive them at their next sync.
/// The caller has checked the CSRF token and the user's right to the document.
/// Returns what `edit` returned on the attempt that was stored.
pub(crate) async fn edit_document<D: WebDoc, T>(
    state: &AppState,
    user: &WebUser,
    doc_id: DocId,
    edit: impl Fn(&mut D, &Editor<'_>) -> sync_core::Result<T>,
) -> Result<T> {
    let principal = state.store.principal(&user.user).await?.ok_or_else(|| {
        Error::Forbidden("this account belongs to no district: it edits no document".into())
    })?;
    let actor = state.store.web_actor(user.user.id).await?;
    let store = Announcing {
        store: &state.store,
        events: &state.events,
    };
    for _ in 0..RETRIES {
        let now = now_ms();
        let editor = Editor {
            principal: &principal,
            now,
        };
        let (before, mut file) = match store.load(doc_id).await? {
            Some(mut doc) => {
                let before = doc.get_heads();
                migrate::migrate(&mut doc, now).map_err(core_error)?;
                doc.set_actor(actor.clone());
                (before, D::wrap(doc).map_err(core_error)?)
            }
            None => match D::create(actor.clone(), &editor, doc_id) {
                Some(created) => (Vec::new(), created.map_err(core_error)?),
                None => return Err(Error::NotFound(format!("no document {doc_id}"))),
            },
        };
        let value = edit(&mut file, &editor).map_err(core_error)?;
        let after = file.into_automerge();
        let new: Vec<Change> = after.get_changes(&before);
        if new.is_empty() {
            // Nothing to store: the document already says exactly this.
            return Ok(value);
        }
        let place = place_of(&after)
            .ok_or_else(|| Error::Internal(format!("document {doc_id} has no place")))?;
        let outcome = store
            .append(Append {
                doc: doc_id,
                place,
                expected_heads: &before,
                changes: new.iter().map(|c| c.raw_bytes().to_vec()).collect(),
                hashes: new.iter().map(Change::hash).collect(),
                after: &after,
                device: None,
                user: Some(user.user.id),
                received_at: now,
            })
            .await?;
        match outcome {
            AppendOutcome::Stored(_) => return Ok(value),
            AppendOutcome::HeadsMoved => continue,
        }
    }
    Err(Error::Conflict(format!(
        "document {doc_id} kept changing; try again"
    )))
}

/// The core's refusal, as the page shows it.
pub(crate) fn core_error(e: sync_core::Error) -> Error {
    match e {
        sync_core::Error::NotFound(what) => Error::NotFound(what),
        // A value the rules find invalid is bad input (400); anything else they refuse
        // is not the user's to do (403).
        sync_core::Error::Rejected(v @ sync_core::rules::Violation::Invalid { .. }) => {
            Error::bad_request("invalid", v.to_string())
        }
        sync_core::Error::Rejected(v) => Error::Forbidden(v.to_string()),
        other => Error::Internal(format!("editing a document: {other}")),
    }
}
