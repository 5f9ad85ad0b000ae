//! The library's one public error. Apps switch on the variant (its name is the stable
//! code, listed in the crate README); the message says what happened, for people and
//! logs.

use crate::store::StoreError;

/// Everything a call into the library can fail with.
///
/// Across the FFI this is a *flat* error: each variant becomes an exception class
/// (`LinliException.WrongKey` in Kotlin, `LinliError.WrongKey` in Swift and Python)
/// whose message is the text below, so `e.message` in Kotlin, `str(e)` in Python and
/// `localizedDescription` in Swift read as a sentence. The variant is the stable code:
/// everything an app must act on differently has a variant of its own, and what it only
/// shows (the rule's code, the server's code) is in the message, in parentheses. Rust
/// callers also get the fields.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum LinliError {
    /// The key does not open this store. Nothing was read or written: ask the
    /// keystore for the right key (or, if it is lost, delete the folder and enrol again).
    #[error("the key does not open this store; nothing was read or written")]
    WrongKey,
    /// The key is not 32 bytes.
    #[error("the key must be 32 bytes, got {len}")]
    BadKey {
        /// The length given.
        len: usize,
    },
    /// The local store failed (disk full, damaged file). What was saved before stays saved.
    #[error("local storage failed: {detail}")]
    Storage {
        /// What failed.
        detail: String,
    },
    /// The phone is not enrolled yet: call `enrol` first.
    #[error("this phone is not enrolled; enrol it with a code first")]
    NotEnrolled,
    /// The phone is already enrolled.
    #[error("this phone is already enrolled")]
    AlreadyEnrolled,
    /// The server could not be reached, timed out or is overloaded. Always worth
    /// trying again later; nothing was lost.
    #[error("the server could not be reached; try again later ({detail})")]
    Network {
        /// What happened.
        detail: String,
    },
    /// The server does not accept the enrolment code (unknown, used or expired) or,
    /// later, this phone's credential: enrol again with a new code (`erase` first, after
    /// syncing what can be synced).
    #[error("the server does not accept this code or credential; enrol again ({detail})")]
    BadCredentials {
        /// The server's message.
        detail: String,
    },
    /// The user's account is disabled: a coordinator can enable it again. Nothing on
    /// the phone was deleted.
    #[error("this account is disabled; ask a coordinator ({detail})")]
    AccountDisabled {
        /// The server's message.
        detail: String,
    },
    /// The server refused the request for another reason, with its stable code.
    #[error("the server refused ({code}): {detail}")]
    Refused {
        /// The server's code, e.g. `too_large`.
        code: String,
        /// The server's message.
        detail: String,
    },
    /// This device was revoked. Every resident's data has been deleted from the phone
    /// (what it never synced kept sealed for the server); enrol again to continue.
    #[error("this device was revoked and its data deleted; enrol again")]
    Revoked,
    /// The rules refuse this action (the same rules the server runs). `code` is the
    /// rule's stable code (`role_not_allowed`, `not_owner`, `out_of_scope`, `invalid`,
    /// `unknown_reference`…), shown in the message in parentheses.
    #[error("not allowed ({code}): {reason}")]
    NotAllowed {
        /// The violation's stable code.
        code: String,
        /// Why, for people.
        reason: String,
    },
    /// A refused upload cannot be acknowledged before a coordinator has decided on it.
    #[error("a coordinator has not decided on this refused upload yet")]
    AwaitingDecision,
    /// The resident, visit or other thing named is not on this phone.
    #[error("{what} not found on this phone")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// An argument is not valid (an id that is not a UUID, a server address that is not
    /// a URL…): a bug in the app.
    #[error("invalid input: {detail}")]
    InvalidInput {
        /// What was wrong.
        detail: String,
    },
    /// The server sent something this build cannot read, or a stored document is
    /// damaged. Nothing was lost; update the app if it persists.
    #[error("malformed data: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// The sync was cancelled. What was exchanged before is kept; sync again to resume.
    #[error("the sync was cancelled; what was exchanged is kept")]
    Cancelled,
    /// A bug in the library (it caught a panic). Nothing was lost; please report it.
    #[error("internal error in the phone library: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
}

impl LinliError {
    /// The stable code of this error, as the README lists it: the variant's name in
    /// snake case.
    pub fn code(&self) -> &'static str {
        match self {
            LinliError::WrongKey => "wrong_key",
            LinliError::BadKey { .. } => "bad_key",
            LinliError::Storage { .. } => "storage",
            LinliError::NotEnrolled => "not_enrolled",
            LinliError::AlreadyEnrolled => "already_enrolled",
            LinliError::Network { .. } => "network",
            LinliError::BadCredentials { .. } => "bad_credentials",
            LinliError::AccountDisabled { .. } => "account_disabled",
            LinliError::Refused { .. } => "refused",
            LinliError::Revoked => "revoked",
            LinliError::NotAllowed { .. } => "not_allowed",
            LinliError::AwaitingDecision => "awaiting_decision",
            LinliError::NotFound { .. } => "not_found",
            LinliError::InvalidInput { .. } => "invalid_input",
            LinliError::Malformed { .. } => "malformed",
            LinliError::Cancelled => "cancelled",
            LinliError::Internal { .. } => "internal",
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        LinliError::InvalidInput {
            detail: message.into(),
        }
    }

    pub(crate) fn storage(message: impl std::fmt::Display) -> Self {
        LinliError::Storage {
            detail: message.to_string(),
        }
    }
}

impl From<StoreError> for LinliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WrongKey => LinliError::WrongKey,
            StoreError::Damaged(m) => LinliError::Malformed { detail: m },
            other => LinliError::storage(other),
        }
    }
}

impl From<sync_core::Error> for LinliError {
    fn from(e: sync_core::Error) -> Self {
        match e {
            sync_core::Error::Rejected(v) => LinliError::NotAllowed {
                code: v.code().to_owned(),
                reason: v.to_string(),
            },
            sync_core::Error::NotFound(what) => LinliError::NotFound { what },
            other => LinliError::Malformed {
                detail: other.to_string(),
            },
        }
    }
}

impl From<sync_core::protocol::replica::ReplicaError<StoreError>> for LinliError {
    fn from(e: sync_core::protocol::replica::ReplicaError<StoreError>) -> Self {
        match e {
            sync_core::protocol::replica::ReplicaError::Store(s) => s.into(),
            sync_core::protocol::replica::ReplicaError::Core(c) => c.into(),
        }
    }
}

/// `Result` with the library's error.
pub type Result<T, E = LinliError> = std::result::Result<T, E>;

/// Runs `f`, turning a panic into [`LinliError::Internal`] so none crosses the FFI.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Err(LinliError::Internal { detail: message })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LinliError as E;

    /// One of each variant; the `match` fails to compile when a variant is added and not
    /// listed here.
    fn every_error() -> Vec<E> {
        let text = || "x".to_owned();
        let all = vec![
            E::WrongKey,
            E::BadKey { len: 3 },
            E::Storage { detail: text() },
            E::NotEnrolled,
            E::AlreadyEnrolled,
            E::Network { detail: text() },
            E::BadCredentials { detail: text() },
            E::AccountDisabled { detail: text() },
            E::Refused {
                code: "too_large".into(),
                detail: text(),
            },
            E::Revoked,
            E::NotAllowed {
                code: "not_owner".into(),
                reason: text(),
            },
            E::AwaitingDecision,
            E::NotFound { what: text() },
            E::InvalidInput { detail: text() },
            E::Malformed { detail: text() },
            E::Cancelled,
            E::Internal { detail: text() },
        ];
        for e in &all {
            match e {
                E::WrongKey
                | E::BadKey { .. }
                | E::Storage { .. }
                | E::NotEnrolled
                | E::AlreadyEnrolled
                | E::Network { .. }
                | E::BadCredentials { .. }
                | E::AccountDisabled { .. }
                | E::Refused { .. }
                | E::Revoked
                | E::NotAllowed { .. }
                | E::AwaitingDecision
                | E::NotFound { .. }
                | E::InvalidInput { .. }
                | E::Malformed { .. }
                | E::Cancelled
                | E::Internal { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_error_has_a_sentence_and_its_variant_name_as_code() {
        let mut codes = std::collections::BTreeSet::new();
        for e in every_error() {
            let message = e.to_string();
            assert!(message.len() > 12, "{e:?}: {message:?}");
            assert!(message.is_ascii(), "messages are English: {message:?}");
            assert!(
                message.starts_with(|c: char| c.is_ascii_lowercase()),
                "{message:?}"
            );
            // The variant's name (what Kotlin, Swift and Python see) is the code.
            let variant = format!("{e:?}");
            let name: String = variant.split([' ', '{']).next().unwrap_or_default().into();
            let snake: String = name
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let sep = (c.is_ascii_uppercase() && i > 0).then_some('_');
                    sep.into_iter().chain(c.to_lowercase())
                })
                .collect();
            assert_eq!(e.code(), snake);
            assert!(codes.insert(e.code()), "two variants share {}", e.code());
        }
    }

    #[test]
    fn the_readme_lists_every_code() {
        let readme = include_str!("../README.md");
        for e in every_error() {
            let row = format!("| `{}` |", e.code());
            assert!(readme.contains(&row), "README's error table lacks {row}");
        }
    }
}
