//! [`PgOptions`]: how the PostgreSQL store connects and waits, and the rule that keeps its
//! idle timeout longer than a token request.

use std::path::PathBuf;
use std::time::Duration;

use super::connection::seconds;
use crate::error::{Error, Result};

/// How the PostgreSQL store connects and waits. Every setter states its default.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub(super) lock_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) ssl_root_cert: Option<PathBuf>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            ssl_root_cert: None,
        }
    }
}

impl PgOptions {
    /// How long to wait for the row lock (`SET LOCAL lock_timeout`). Default: 60 s.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long a transaction may sit idle before the server ends it and releases the row lock
    /// (`idle_in_transaction_session_timeout`); must exceed the token request timeout.
    /// Default: 30 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The token request timeout of the managers that use this store (see
    /// [`AuthorityConfig::request_timeout`](crate::authority::AuthorityConfig::request_timeout)):
    /// the idle timeout must be longer, or the server could end a transaction, and release the
    /// row lock, while its holder waits for the authority's answer; the rotated token would
    /// then be lost. Default: 20 s, the authority client's default.
    pub fn token_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long to wait for a connection, and for the server's answer to any statement other
    /// than the row-lock wait. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A PEM file of the certificates to trust for TLS instead of the system's roots.
    /// Default: `sslrootcert=` from the URL, else `PGSSLROOTCERT`, else the system's roots.
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_root_cert = Some(path.into());
        self
    }

    /// The configured lock timeout.
    pub fn lock_timeout_value(&self) -> Duration {
        self.lock_timeout
    }

    /// The configured idle timeout.
    pub fn idle_timeout_value(&self) -> Duration {
        self.idle_timeout
    }

    /// The rule that keeps a rotated token from being lost: a transaction's holder may sit
    /// idle in it for as long as a token request takes, so the server must not end it sooner.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming both values when the
    /// idle timeout is not longer than `request_timeout`.
    pub(crate) fn check_idle_timeout(&self, request_timeout: Duration) -> Result<()> {
        if self.idle_timeout > request_timeout {
            return Ok(());
        }
        Err(Error::invalid_input(format!(
            "the shared store's idle timeout ({}) must be longer than the token request timeout ({}): \
             the server would end a transaction, and release its lock, while the token request is \
             still in flight, and a rotated token could be lost; raise the idle timeout or lower the \
             request timeout",
            seconds(self.idle_timeout),
            seconds(request_timeout)
        )))
    }
}
