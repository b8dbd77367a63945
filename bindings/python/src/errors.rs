//! The exception classes, and how a library [`Error`] becomes one. The message is the command
//! line's (`Error::report`: what happened, where, and what to do), which never holds a token.
//!
//! The classes are authstore's own (`except authstore.Unavailable`) and, where one fits,
//! Python's too (`except TimeoutError`, `except ConnectionError`, `except ValueError`): a lock
//! or a token endpoint that did not answer in time is a [`LockTimeout`](Classes::lock_timeout)
//! or a `NetworkTimeout`, both `Unavailable` and `TimeoutError`; an endpoint or store that
//! could not be reached is `Unreachable`, `Unavailable` and `ConnectionError`; `InvalidFile` is
//! also a `ValueError`. Which network failure it was is the library's
//! [`Error::network_failure`], not a reading of the message. A class with two bases is made
//! with `type(name, bases, namespace)` when the module is initialised: `create_exception!`
//! takes one base.

use authstore::error::{Error, ErrorKind, NetworkFailure, ReloginReason};
use pyo3::exceptions::{PyConnectionError, PyException, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

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

/// The classes with two bases, made once per interpreter.
struct Classes {
    /// `InvalidFile(AuthstoreError, ValueError)`.
    invalid_file: Py<PyType>,
    /// `LockTimeout(Unavailable, TimeoutError)`.
    lock_timeout: Py<PyType>,
    /// `NetworkTimeout(Unavailable, TimeoutError)`.
    network_timeout: Py<PyType>,
    /// `Unreachable(Unavailable, ConnectionError)`.
    unreachable: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&'static Classes> {
    CLASSES.get_or_try_init(py, || {
        let make = |name: &str, bases: Bound<'_, PyTuple>, doc: &str| -> PyResult<Py<PyType>> {
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "authstore")?;
            namespace.set_item("__doc__", doc)?;
            let class = py
                .get_type::<PyType>()
                .call1((name, bases, namespace))?
                .cast_into::<PyType>()?;
            Ok(class.unbind())
        };
        let authstore_error = py.get_type::<AuthstoreError>();
        let unavailable = py.get_type::<Unavailable>();
        Ok(Classes {
            invalid_file: make(
                "InvalidFile",
                PyTuple::new(py, [authstore_error, py.get_type::<PyValueError>()])?,
                "auth.json is not a valid credentials document, or cannot be read; it was left \
                 untouched. Also a ValueError.",
            )?,
            lock_timeout: make(
                "LockTimeout",
                PyTuple::new(py, [unavailable.clone(), py.get_type::<PyTimeoutError>()])?,
                "Another process held the lock past lock_timeout. An Unavailable and a \
                 TimeoutError; kind lock_timeout.",
            )?,
            network_timeout: make(
                "NetworkTimeout",
                PyTuple::new(py, [unavailable.clone(), py.get_type::<PyTimeoutError>()])?,
                "The token endpoint (or the shared store) did not answer in time. An \
                 Unavailable and a TimeoutError; kind transient (store_unavailable).",
            )?,
            unreachable: make(
                "Unreachable",
                PyTuple::new(py, [unavailable, py.get_type::<PyConnectionError>()])?,
                "The token endpoint (or the shared store) could not be reached: connection \
                 refused, no route, no such host, TLS failed. An Unavailable and a \
                 ConnectionError; kind transient (store_unavailable).",
            )?,
        })
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let classes = classes(py)?;
    m.add("AuthstoreError", py.get_type::<AuthstoreError>())?;
    m.add("NotLoggedIn", py.get_type::<NotLoggedIn>())?;
    m.add("ReloginRequired", py.get_type::<ReloginRequired>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("InvalidFile", classes.invalid_file.bind(py))?;
    m.add("LockTimeout", classes.lock_timeout.bind(py))?;
    m.add("NetworkTimeout", classes.network_timeout.bind(py))?;
    m.add("Unreachable", classes.unreachable.bind(py))?;
    Ok(())
}

/// Which class an error is raised as, and its `kind`.
enum Class {
    Base,
    NotLoggedIn,
    ReloginRequired,
    Unavailable,
    InvalidFile,
    LockTimeout,
    NetworkTimeout,
    Unreachable,
}

/// The exception for `error`, with `kind`, `path` and (for a re-login) `reason` set.
pub(crate) fn to_py(error: Error) -> PyErr {
    let message = error.report().to_string();
    let unavailable = || match error.network_failure() {
        Some(NetworkFailure::TimedOut) => Class::NetworkTimeout,
        Some(NetworkFailure::Unreachable) => Class::Unreachable,
        _ => Class::Unavailable,
    };
    let (class, kind) = match error.kind() {
        ErrorKind::NotLoggedIn => (Class::NotLoggedIn, "not_logged_in"),
        ErrorKind::ReloginRequired(_) => (Class::ReloginRequired, "relogin_required"),
        ErrorKind::LockTimeout => (Class::LockTimeout, "lock_timeout"),
        ErrorKind::Transient => (unavailable(), "transient"),
        ErrorKind::StoreUnavailable => (unavailable(), "store_unavailable"),
        ErrorKind::InvalidFile => (Class::InvalidFile, "invalid_file"),
        ErrorKind::Unreadable => (Class::InvalidFile, "unreadable"),
        // A value the caller passed: Python's own class for that.
        ErrorKind::InvalidInput => return PyValueError::new_err(message),
        ErrorKind::LockUnsupported => (Class::Base, "lock_unsupported"),
        _ => (Class::Base, "other"),
    };
    Python::attach(|py| {
        let exception = new_err(py, class, message);
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
        exception
    })
}

fn new_err(py: Python<'_>, class: Class, message: String) -> PyErr {
    let two_bases = |pick: fn(&Classes) -> &Py<PyType>, fallback: fn(String) -> PyErr| {
        // The classes are made when the module is initialised, so this finds them; were that
        // ever to fail, the error keeps its authstore class and loses only Python's.
        match classes(py) {
            Ok(classes) => PyErr::from_type(pick(classes).bind(py).clone(), message.clone()),
            Err(_) => fallback(message.clone()),
        }
    };
    match class {
        Class::Base => AuthstoreError::new_err(message),
        Class::NotLoggedIn => NotLoggedIn::new_err(message),
        Class::ReloginRequired => ReloginRequired::new_err(message),
        Class::Unavailable => Unavailable::new_err(message),
        Class::InvalidFile => two_bases(|c| &c.invalid_file, AuthstoreError::new_err),
        Class::LockTimeout => two_bases(|c| &c.lock_timeout, Unavailable::new_err),
        Class::NetworkTimeout => two_bases(|c| &c.network_timeout, Unavailable::new_err),
        Class::Unreachable => two_bases(|c| &c.unreachable, Unavailable::new_err),
    }
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
