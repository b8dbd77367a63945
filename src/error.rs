//! The one error type of the crate: an [`Error`] with a [`kind`](Error::kind) callers match on,
//! the [`Location`] it concerns, and the real cause as its [`source`](std::error::Error::source).
//!
//! Shaped like walkdir's and tempfile's errors: the type is opaque (fields private, so that it
//! can grow), [`ErrorKind`] is `#[non_exhaustive]`, and `Display` says what happened and where
//! **without** the cause, so that a printer walking the `source()` chain shows each cause once.
//! [`Error::report`] is that printer, with the advice on what to do: the command-line tool's
//! one-line messages are `authstore: {error.report()}`.
//!
//! None of the messages ever contains a token, and a store's location never shows a password.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the user has to log in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

/// What kind of failure an [`Error`] is; stable for matching. New kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No credentials in the store.
    NotLoggedIn,
    /// The credentials can no longer be refreshed; the user must log in again.
    ReloginRequired(ReloginReason),
    /// The transaction lock was not acquired before the deadline.
    LockTimeout,
    /// The filesystem does not support advisory locks.
    LockUnsupported,
    /// The stored document is not a valid credentials document; it was left untouched.
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
    /// The credentials are kept in a way this version cannot share yet (Codex's encrypted
    /// secrets file), or this build lacks the store they are in.
    Unsupported,
}

/// How a request to the token endpoint or to a shared store failed on its way there, when it
/// did: what a front-end maps to its platform's "timed out" and "cannot connect" errors (the
/// Python package's `TimeoutError` and `ConnectionError`). See [`Error::network_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkFailure {
    /// The other side did not answer in time: connecting, or answering the request.
    TimedOut,
    /// The other side could not be reached: the connection was refused, no route led there, its
    /// name did not resolve, or the TLS handshake failed.
    Unreachable,
}

/// Where the credentials (or the lock) an error concerns are.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A file: `auth.json`, or one of its lock files.
    File(PathBuf),
    /// A shared store, as shown to people: for PostgreSQL `postgres://USER@HOST:PORT/DB#KEY`,
    /// never with a password.
    Store(String),
}

impl Location {
    /// The file's path, when the location is a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::File(path) => Some(path),
            Location::Store(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Store(store) => f.write_str(store),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::File(path)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Location::File(path.to_owned())
    }
}

/// An authstore error. See the [module documentation](self).
pub struct Error {
    /// Boxed, so that a `Result` stays two words wide.
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    location: Option<Location>,
    detail: Detail,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    /// Set where the failure is known first-hand (the HTTP client's own flags); otherwise
    /// [`Error::network_failure`] reads the source chain.
    network: Option<NetworkFailure>,
    /// For a refresh token the authority rejected: its HTTP status and error code.
    rejection: Option<(u16, String)>,
}

/// What a kind needs beyond its location.
enum Detail {
    None,
    LockTimeout {
        waited: Duration,
        holder: Option<String>,
    },
    /// The step of a filesystem operation ("rename the temporary file over").
    Step(&'static str),
    /// Why, in words (never a token).
    Reason(String),
}

impl Error {
    fn new(kind: ErrorKind, location: Option<Location>, detail: Detail) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                location,
                detail,
                source: None,
                network: None,
                rejection: None,
            }),
        }
    }

    /// Records how the request failed on the network, as the HTTP client told it.
    pub(crate) fn with_network(mut self, network: Option<NetworkFailure>) -> Self {
        self.inner.network = network;
        self
    }

    /// Records what the authority answered when it rejected the refresh token.
    pub(crate) fn with_rejection(mut self, status: u16, code: String) -> Self {
        self.inner.rejection = Some((status, code));
        self
    }

    /// For a re-login required because the token authority rejected the refresh token in
    /// this call: the HTTP status it answered and its error code (`none` when it gave none),
    /// as a token endpoint in front of it must pass them on. `None` for every other error,
    /// including a token rejected earlier and not sent again.
    pub fn rejection(&self) -> Option<(u16, &str)> {
        self.inner
            .rejection
            .as_ref()
            .map(|(status, code)| (*status, code.as_str()))
    }

    fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// No credentials at `location`.
    pub fn not_logged_in(location: impl Into<Location>) -> Self {
        Self::new(ErrorKind::NotLoggedIn, Some(location.into()), Detail::None)
    }

    /// A value given by the caller is unusable; `message` says which and what to do.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::InvalidInput,
            None,
            Detail::Reason(message.into()),
        )
    }

    /// The credentials are kept where this version cannot share them; `message` says where
    /// and what to do.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, None, Detail::Reason(message.into()))
    }

    pub(crate) fn relogin(location: impl Into<Location>, reason: ReloginReason) -> Self {
        Self::new(
            ErrorKind::ReloginRequired(reason),
            Some(location.into()),
            Detail::None,
        )
    }

    pub(crate) fn lock_timeout(
        location: impl Into<Location>,
        waited: Duration,
        holder: Option<String>,
    ) -> Self {
        Self::new(
            ErrorKind::LockTimeout,
            Some(location.into()),
            Detail::LockTimeout { waited, holder },
        )
    }

    pub(crate) fn lock_unsupported(path: &Path, source: io::Error) -> Self {
        Self::new(ErrorKind::LockUnsupported, Some(path.into()), Detail::None).with_source(source)
    }

    /// `location` holds no valid credentials document; `reason` says why (never a token).
    pub fn invalid_file(location: impl Into<Location>, reason: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::InvalidFile,
            Some(location.into()),
            Detail::Reason(reason.into()),
        )
    }

    pub(crate) fn unreadable(path: &Path, source: io::Error) -> Self {
        Self::new(ErrorKind::Unreadable, Some(path.into()), Detail::None).with_source(source)
    }

    /// A filesystem operation on `path` failed at `step` (a verb phrase: "write", "create the
    /// directory"), because of `source`.
    pub fn io(step: &'static str, path: &Path, source: io::Error) -> Self {
        Self::new(ErrorKind::Io, Some(path.into()), Detail::Step(step)).with_source(source)
    }

    /// An operation of the operating system that concerns no one file failed (a program that
    /// could not be run, or that failed), said in `message`: kind [`ErrorKind::Io`].
    pub fn system(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, None, Detail::Reason(message.into()))
    }

    pub(crate) fn transient(
        location: impl Into<Location>,
        reason: impl Into<String>,
        source: Option<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::because(ErrorKind::Transient, location.into(), reason.into(), source)
    }

    #[cfg_attr(not(any(feature = "postgres", feature = "keyring")), allow(dead_code))]
    pub(crate) fn store_unavailable(
        location: impl Into<Location>,
        reason: impl Into<String>,
        source: Option<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::because(
            ErrorKind::StoreUnavailable,
            location.into(),
            reason.into(),
            source,
        )
    }

    fn because(
        kind: ErrorKind,
        location: Location,
        reason: String,
        source: Option<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        let mut error = Self::new(kind, Some(location), Detail::Reason(reason));
        error.inner.source = source;
        error
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Where the credentials or the lock concerned are: a file or a shared store.
    pub fn location(&self) -> Option<&Location> {
        self.inner.location.as_ref()
    }

    /// The file concerned, when the location is a file.
    pub fn path(&self) -> Option<&Path> {
        self.inner.location.as_ref().and_then(Location::path)
    }

    /// For a lock timeout: how long this process waited.
    pub fn lock_waited(&self) -> Option<Duration> {
        match &self.inner.detail {
            Detail::LockTimeout { waited, .. } => Some(*waited),
            _ => None,
        }
    }

    /// For a lock timeout: who holds the lock, when known (a pid and program, or a database
    /// server process and its `application_name`).
    pub fn lock_holder(&self) -> Option<&str> {
        match &self.inner.detail {
            Detail::LockTimeout { holder, .. } => holder.as_deref(),
            _ => None,
        }
    }

    /// For a [`Transient`](ErrorKind::Transient) or
    /// [`StoreUnavailable`](ErrorKind::StoreUnavailable) error: whether the token endpoint or
    /// the store did not answer in time or could not be reached at all. `None` for every other
    /// kind (a [`LockTimeout`](ErrorKind::LockTimeout) is not a network failure), and for a
    /// failure that is neither (an HTTP 503, a connection reset after the request was sent, a
    /// server's error answer).
    ///
    /// Read from what the HTTP client says of its own error, else from the `std::io::Error`s of
    /// the [`source`](StdError::source) chain (`TimedOut`; `ConnectionRefused`,
    /// `HostUnreachable`, `NetworkUnreachable`, `AddrNotAvailable`).
    pub fn network_failure(&self) -> Option<NetworkFailure> {
        if !matches!(
            self.inner.kind,
            ErrorKind::Transient | ErrorKind::StoreUnavailable
        ) {
            return None;
        }
        if let Some(network) = self.inner.network {
            return Some(network);
        }
        let mut cause = self.source();
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::TimedOut => return Some(NetworkFailure::TimedOut),
                    io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::AddrNotAvailable => return Some(NetworkFailure::Unreachable),
                    _ => {}
                }
            }
            cause = error.source();
        }
        None
    }

    /// What the user can do about it, when there is advice to give. In the library's terms
    /// (what to do, not which option of which front-end does it): the command line adds its
    /// own `help:` line naming its options.
    pub fn advice(&self) -> Option<&'static str> {
        Some(match self.inner.kind {
            ErrorKind::NotLoggedIn => "log in first (codex login)",
            ErrorKind::ReloginRequired(_) => "log in again",
            ErrorKind::LockTimeout => "try again, or stop the holder",
            ErrorKind::LockUnsupported => {
                "move CODEX_HOME to a local filesystem, or opt in to running without locks, unsafe with concurrent processes"
            }
            ErrorKind::InvalidFile => "it was left untouched; fix or remove it, then log in again",
            ErrorKind::Unreadable => "it was left untouched; check that it is a readable file",
            ErrorKind::Transient => "the credentials are unchanged; try again later",
            ErrorKind::StoreUnavailable => "try again later",
            ErrorKind::Io | ErrorKind::InvalidInput | ErrorKind::Unsupported => return None,
        })
    }

    /// The whole message for people: what happened and where, every cause in the `source()`
    /// chain once, then the advice. One line.
    pub fn report(&self) -> Report<'_> {
        Report(self)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = self
            .inner
            .location
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        match (&self.inner.kind, &self.inner.detail) {
            (ErrorKind::NotLoggedIn, _) => write!(f, "not logged in: {location} holds no tokens"),
            (ErrorKind::ReloginRequired(reason), _) => write!(
                f,
                "re-login required: {}; credentials at {location} were left as they are",
                reason.describe()
            ),
            (ErrorKind::LockTimeout, Detail::LockTimeout { waited, holder }) => {
                write!(
                    f,
                    "timed out after {waited:?} waiting for the lock {location}"
                )?;
                match holder {
                    Some(holder) => write!(f, " held by {holder}"),
                    None => Ok(()),
                }
            }
            (ErrorKind::LockUnsupported, _) => write!(
                f,
                "cannot lock {location}: the filesystem does not support advisory locks"
            ),
            (ErrorKind::InvalidFile, Detail::Reason(reason)) => {
                write!(f, "{location} is not a valid auth.json: {reason}")
            }
            (ErrorKind::Unreadable, _) => write!(f, "cannot read {location}"),
            (ErrorKind::Io, Detail::Step(step)) => write!(f, "could not {step} {location}"),
            (ErrorKind::Io, Detail::Reason(message)) => f.write_str(message),
            (ErrorKind::Transient, Detail::Reason(reason)) => {
                write!(
                    f,
                    "token refresh temporarily failed for {location}: {reason}"
                )
            }
            (ErrorKind::StoreUnavailable, Detail::Reason(reason)) => {
                write!(
                    f,
                    "the credential store {location} is unavailable: {reason}"
                )
            }
            (ErrorKind::InvalidInput | ErrorKind::Unsupported, Detail::Reason(message)) => {
                f.write_str(message)
            }
            (kind, _) => write!(f, "{kind:?} at {location}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message and the causes, never more: no field holds a token, and this keeps
        // `unwrap()` failures readable.
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.inner.kind)
            .field("message", &self.to_string());
        if let Some(source) = &self.inner.source {
            debug.field("source", &source.to_string());
        }
        debug.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// [`Error::report`]: the error, its causes and the advice, on one line.
pub struct Report<'a>(&'a Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        if let Some(advice) = self.0.advice() {
            write!(f, "; {advice}")?;
        }
        Ok(())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_the_cause_to_the_source_chain_and_the_report_shows_it_once() {
        let cause = io::Error::new(io::ErrorKind::PermissionDenied, "Permission denied");
        let error = Error::unreadable(Path::new("/home/a/.codex/auth.json"), cause);
        assert_eq!(error.to_string(), "cannot read /home/a/.codex/auth.json");
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("Permission denied")
        );
        let report = error.report().to_string();
        assert_eq!(
            report,
            "cannot read /home/a/.codex/auth.json: Permission denied; it was left untouched; check that it is a readable file"
        );
        assert_eq!(report.matches("Permission denied").count(), 1);
    }

    #[test]
    fn a_store_location_is_not_a_path() {
        let error = Error::lock_timeout(
            Location::Store("postgres://alice@db:5432/auth#default".into()),
            Duration::from_millis(300),
            Some("server process 42 (authstore (pid 7))".into()),
        );
        assert_eq!(error.kind(), ErrorKind::LockTimeout);
        assert_eq!(error.path(), None);
        assert_eq!(
            error.location(),
            Some(&Location::Store(
                "postgres://alice@db:5432/auth#default".into()
            ))
        );
        assert_eq!(error.lock_waited(), Some(Duration::from_millis(300)));
        assert_eq!(
            error.lock_holder(),
            Some("server process 42 (authstore (pid 7))")
        );
        assert!(
            error
                .report()
                .to_string()
                .ends_with("; try again, or stop the holder")
        );
    }

    #[test]
    fn an_error_is_one_pointer_wide_in_a_result() {
        assert_eq!(
            std::mem::size_of::<Result<()>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn network_failures_are_read_from_the_io_errors_of_the_source_chain() {
        let because = |kind: io::ErrorKind| {
            Error::store_unavailable(
                Location::Store("postgres://u@db/auth#default".into()),
                "cannot connect",
                Some(Box::new(io::Error::new(kind, "connect"))),
            )
        };
        assert_eq!(
            because(io::ErrorKind::ConnectionRefused).network_failure(),
            Some(NetworkFailure::Unreachable)
        );
        assert_eq!(
            because(io::ErrorKind::TimedOut).network_failure(),
            Some(NetworkFailure::TimedOut)
        );
        assert_eq!(
            because(io::ErrorKind::PermissionDenied).network_failure(),
            None
        );
        // What the HTTP client said first-hand wins; other kinds never have one.
        let told = Error::transient(Path::new("/h/auth.json"), "the token request failed", None)
            .with_network(Some(NetworkFailure::TimedOut));
        assert_eq!(told.network_failure(), Some(NetworkFailure::TimedOut));
        let lock = Error::lock_timeout(Path::new("/h/auth.lock"), Duration::from_secs(1), None);
        assert_eq!(lock.network_failure(), None);
        let unreadable = Error::unreadable(
            Path::new("/h/auth.json"),
            io::Error::new(io::ErrorKind::TimedOut, "nfs"),
        );
        assert_eq!(unreadable.network_failure(), None);
    }
}
