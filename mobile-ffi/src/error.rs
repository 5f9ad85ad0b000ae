//! The library's one public error. Apps switch on the variant (its name is the stable
//! code, listed in the crate README); messages are for people.

use crate::store::StoreError;

/// Everything a call into the library can fail with. (Text fields are `detail`, not
/// `message`: Kotlin exceptions already have a `message`, and uniffi would clash.)
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum LinliError {
    /// The key does not open this store. Nothing was read or written: ask the
    /// keystore for the right key (or, if it is lost, delete the folder and enrol again).
    #[error("the key does not open this store")]
    WrongKey,
    /// The key is not 32 bytes.
    #[error("the key must be 32 bytes, got {len}")]
    BadKey {
        /// The length given.
        len: u32,
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
    /// The server could not be reached, timed out or is overloaded (`retryable`: try
    /// again later; nothing was lost).
    #[error("network: {detail}")]
    Network {
        /// Whether trying again later may succeed.
        retryable: bool,
        /// What happened.
        detail: String,
    },
    /// The server refused the request (an unknown or expired enrolment code, a
    /// disabled account…), with its stable code.
    #[error("the server refused ({code}): {detail}")]
    Refused {
        /// The server's code, e.g. `bad_credentials`, `user_disabled`.
        code: String,
        /// The server's message.
        detail: String,
    },
    /// This device was revoked. Every resident's data has been deleted from the phone;
    /// enrol again to continue.
    #[error("this device was revoked and its data deleted; enrol again")]
    Revoked,
    /// The rules refuse this action (the same rules the server runs). `code` is the
    /// rule's stable code (`role_not_allowed`, `not_owner`, `invalid`, …).
    #[error("not allowed ({code}): {reason}")]
    NotAllowed {
        /// The violation's stable code.
        code: String,
        /// Why, for people.
        reason: String,
    },
    /// The resident, visit or other thing named is not on this phone.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// An argument is not valid (an id that is not a UUID, an unknown catalog id…).
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
    #[error("the sync was cancelled")]
    Cancelled,
    /// A bug in the library (it caught a panic). Nothing was lost; please report it.
    #[error("internal error: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
}

impl LinliError {
    /// The stable code of this error, as the README lists it.
    pub fn code(&self) -> &'static str {
        match self {
            LinliError::WrongKey => "wrong_key",
            LinliError::BadKey { .. } => "bad_key",
            LinliError::Storage { .. } => "storage",
            LinliError::NotEnrolled => "not_enrolled",
            LinliError::AlreadyEnrolled => "already_enrolled",
            LinliError::Network { .. } => "network",
            LinliError::Refused { .. } => "refused",
            LinliError::Revoked => "revoked",
            LinliError::NotAllowed { .. } => "not_allowed",
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

/// The stable code of an error (`wrong_key`, `network`, …), for apps that log or
/// switch on text.
#[uniffi::export]
pub fn error_code(error: &LinliError) -> String {
    error.code().to_owned()
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
