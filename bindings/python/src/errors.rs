//! The exception classes, and how a library [`Error`] becomes one. The message is the command
//! line's (`Error::report`: what happened, where, and what to do), which never holds a token.

use authstore::error::{Error, ErrorKind, ReloginReason};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    authstore,
    AuthstoreError,
    PyException,
    "Base class of authstore's errors. Attributes: kind (str), path (str or None)."
);
pyo3::create_exception!(
    authstore,
    NotLoggedIn,
    AuthstoreError,
    "No credentials in the store: log in (codex login, or AuthManager.login)."
);
pyo3::create_exception!(
    authstore,
    ReloginRequired,
    AuthstoreError,
    "The credentials can no longer be refreshed; the user must log in again. Attribute: reason."
);
pyo3::create_exception!(
    authstore,
    Unavailable,
    AuthstoreError,
    "Try again later: the lock was not acquired in time, the token authority or the shared store \
     could not be reached."
);
pyo3::create_exception!(
    authstore,
    InvalidFile,
    AuthstoreError,
    "auth.json is not a valid credentials document, or cannot be read; it was left untouched."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("AuthstoreError", py.get_type::<AuthstoreError>())?;
    m.add("NotLoggedIn", py.get_type::<NotLoggedIn>())?;
    m.add("ReloginRequired", py.get_type::<ReloginRequired>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("InvalidFile", py.get_type::<InvalidFile>())?;
    Ok(())
}

/// The exception for `error`, with `kind`, `path` and (for a re-login) `reason` set.
pub(crate) fn to_py(error: Error) -> PyErr {
    let message = error.report().to_string();
    let (exception, kind) = match error.kind() {
        ErrorKind::NotLoggedIn => (NotLoggedIn::new_err(message), "not_logged_in"),
        ErrorKind::ReloginRequired(_) => (ReloginRequired::new_err(message), "relogin_required"),
        ErrorKind::LockTimeout => (Unavailable::new_err(message), "lock_timeout"),
        ErrorKind::Transient => (Unavailable::new_err(message), "transient"),
        ErrorKind::StoreUnavailable => (Unavailable::new_err(message), "store_unavailable"),
        ErrorKind::InvalidFile => (InvalidFile::new_err(message), "invalid_file"),
        ErrorKind::Unreadable => (InvalidFile::new_err(message), "unreadable"),
        // A value the caller passed: Python's own class for that.
        ErrorKind::InvalidInput => return PyValueError::new_err(message),
        ErrorKind::LockUnsupported => (AuthstoreError::new_err(message), "lock_unsupported"),
        _ => (AuthstoreError::new_err(message), "other"),
    };
    Python::attach(|py| {
        let value = exception.value(py);
        let path = error.path().map(|p| p.display().to_string());
        let reason = match error.kind() {
            ErrorKind::ReloginRequired(reason) => Some(reason_name(reason)),
            _ => None,
        };
        // Setting attributes on a fresh exception object cannot fail in practice; an error
        // here would only lose the attribute, never the exception.
        let _ = value.setattr("kind", kind);
        let _ = value.setattr("path", path);
        let _ = value.setattr("reason", reason);
    });
    exception
}

fn reason_name(reason: ReloginReason) -> &'static str {
    match reason {
        ReloginReason::Expired => "expired",
        ReloginReason::Reused => "reused",
        ReloginReason::Revoked => "revoked",
        ReloginReason::Rejected => "rejected",
        ReloginReason::IdentityChanged => "identity_changed",
        _ => "other",
    }
}
