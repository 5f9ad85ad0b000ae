//! The core's one error type.

use crate::rules::Violation;

/// Everything that can go wrong in the core. Messages say what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Automerge refused an operation or could not load bytes.
    #[error("document error: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// A change could not be parsed.
    #[error("malformed change: {0}")]
    Change(#[from] automerge::LoadChangeError),
    /// A document does not have the shape Linli expects.
    #[error("malformed document: {0}")]
    Malformed(String),
    /// The document was written by a newer version of Linli than this one.
    #[error(
        "document schema {found} is newer than this build supports ({supported}); update the app"
    )]
    SchemaTooNew {
        /// The document's version.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
    /// The rules refused a change.
    #[error("not allowed: {0}")]
    Rejected(#[from] Violation),
    /// A visit, follow-up or other item named by the caller does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A sync message could not be decoded.
    #[error("malformed sync message: {0}")]
    Decode(#[from] crate::protocol::DecodeError),
}

/// `Result` with the core's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
