//! The one error type of the crate, with a [`ErrorKind`] callers can match on.
//!
//! Messages say what happened, to which path, and what the user can do. None of them ever
//! contains a token.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the user has to log in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloginReason {
    /// The authority says the refresh token expired.
    Expired,
    /// The refresh token was already spent (`refresh_token_reused`) and nobody holds its successor.
    Reused,
    /// The authority revoked the token or its family (`refresh_token_invalidated`).
    Revoked,
    /// The authority rejected the grant (`invalid_grant`) or answered HTTP 401.
    Rejected,
    /// Another account or user logged in meanwhile; their credentials are not adopted.
    IdentityChanged,
}

impl ReloginReason {
    fn describe(self) -> &'static str {
        match self {
            ReloginReason::Expired => "the refresh token expired",
            ReloginReason::Reused => "the refresh token was already used",
            ReloginReason::Revoked => "the refresh token was revoked",
            ReloginReason::Rejected => "the token authority rejected the refresh token",
            ReloginReason::IdentityChanged => "another account or user logged in",
        }
    }
}

/// What kind of failure an [`Error`] is; stable for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No credentials on disk.
    NotLoggedIn,
    /// The credentials can no longer be refreshed; the user must log in again.
    ReloginRequired(ReloginReason),
    /// The transaction lock was not acquired before the deadline.
    LockTimeout,
    /// The filesystem does not support advisory locks.
    LockUnsupported,
    /// `auth.json` is not a valid credentials document; it was left untouched.
    InvalidFile,
    /// `auth.json` exists but cannot be read (a directory, no permission); left untouched.
    Unreadable,
    /// A filesystem operation failed.
    Io,
    /// The token authority could not be reached or answered with a temporary failure.
    Transient,
    /// A shared credential store (a database) could not be reached or failed for now.
    StoreUnavailable,
    /// A value given by the caller is unusable.
    InvalidInput,
}

/// An authstore error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No credentials at `path`.
    #[error(
        "not logged in: {path} holds no tokens; log in first (codex login, or authstore login --from FILE)"
    )]
    NotLoggedIn {
        /// The `auth.json` path.
        path: PathBuf,
    },
    /// The user must log in again.
    #[error("re-login required: {}; credentials at {path} were left as they are; log in again", reason.describe())]
    ReloginRequired {
        /// The `auth.json` path.
        path: PathBuf,
        /// Why.
        reason: ReloginReason,
    },
    /// The lock deadline passed.
    #[error("timed out after {waited:?} waiting for the lock {path}{}; try again, or stop the holder", holder.as_deref().map(|h| format!(" held by {h}")).unwrap_or_default())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
        /// What the holder wrote into the lock file (pid, program, start time), when readable.
        holder: Option<String>,
    },
    /// Locks are not supported where the lock file lives.
    #[error(
        "cannot lock {path}: the filesystem does not support advisory locks ({source}); move CODEX_HOME to a local filesystem, or opt in to running without locks (--unlocked), unsafe with concurrent processes"
    )]
    LockUnsupported {
        /// The lock file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not a valid credentials document.
    #[error(
        "{path} is not a valid auth.json: {reason}; it was left untouched; fix or remove it, then log in again"
    )]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// Why it is invalid.
        reason: String,
    },
    /// The file exists but cannot be read.
    #[error(
        "cannot read {path}: {source}; it was left untouched; check that it is a readable file"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A filesystem step failed.
    #[error("could not {step} {path}: {source}")]
    Io {
        /// What was being done (e.g. "rename the temporary file over").
        step: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The authority is temporarily unavailable.
    #[error(
        "token refresh temporarily failed: {reason}; credentials at {path} are unchanged; try again later"
    )]
    Transient {
        /// The `auth.json` path.
        path: PathBuf,
        /// What went wrong (never a token).
        reason: String,
    },
    /// A shared credential store (a database) failed for now.
    #[error("the credential store {location} is unavailable: {reason}; try again later")]
    StoreUnavailable {
        /// Where the store is (credentials in a URL are never shown).
        location: String,
        /// What went wrong (never a token).
        reason: String,
    },
    /// A value given by the caller is unusable.
    #[error("{0}")]
    InvalidInput(String),
}

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotLoggedIn { .. } => ErrorKind::NotLoggedIn,
            Error::ReloginRequired { reason, .. } => ErrorKind::ReloginRequired(*reason),
            Error::LockTimeout { .. } => ErrorKind::LockTimeout,
            Error::LockUnsupported { .. } => ErrorKind::LockUnsupported,
            Error::InvalidFile { .. } => ErrorKind::InvalidFile,
            Error::Unreadable { .. } => ErrorKind::Unreadable,
            Error::Io { .. } => ErrorKind::Io,
            Error::Transient { .. } => ErrorKind::Transient,
            Error::StoreUnavailable { .. } => ErrorKind::StoreUnavailable,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
        }
    }

    pub(crate) fn io(step: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            step,
            path: path.to_owned(),
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
