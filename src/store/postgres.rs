//! A PostgreSQL-coordinated credential store: the same transaction as the file store, for
//! machines (CI runners, dev containers, remote boxes) that share one login.
//!
//! Skeleton: the API the manager uses. Implemented in full by the postgres backend work.

use std::time::Duration;

use crate::document::AuthDocument;
use crate::error::Result;

/// How the PostgreSQL store connects and waits. Every setter states its default.
#[derive(Debug, Clone)]
pub struct PgOptions {
    lock_timeout: Duration,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
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

    /// How long to wait for a connection. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// One credential key in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    location: String,
    _options: PgOptions,
}

impl PgStore {
    /// Connects to `url` for the credential `key`, creating the (versioned) schema on first use.
    ///
    /// # Errors
    /// [`crate::Error::StoreUnavailable`] when the database cannot be reached.
    pub async fn connect(url: &str, key: &str, options: PgOptions) -> Result<Self> {
        let _ = (url, key);
        Ok(Self {
            location: String::new(),
            _options: options,
        })
    }

    /// Where the store is, for messages: the URL without its password, and the key.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Reads the document without locking; `None` when logged out.
    ///
    /// # Errors
    /// [`crate::Error::StoreUnavailable`], [`crate::Error::InvalidFile`].
    pub async fn read(&self) -> Result<Option<AuthDocument>> {
        unimplemented!("postgres backend")
    }

    /// Starts a transaction holding the row lock (bounded by the lock timeout).
    ///
    /// # Errors
    /// [`crate::Error::LockTimeout`], [`crate::Error::StoreUnavailable`].
    pub async fn begin(&self) -> Result<PgTransaction> {
        unimplemented!("postgres backend")
    }
}

/// A transaction holding the credential row's lock. Dropping it without [`PgTransaction::commit`]
/// rolls back.
#[derive(Debug)]
pub struct PgTransaction {
    _private: (),
}

impl PgTransaction {
    /// Re-reads the row inside the lock.
    ///
    /// # Errors
    /// [`crate::Error::StoreUnavailable`], [`crate::Error::InvalidFile`].
    pub async fn read(&mut self) -> Result<Option<AuthDocument>> {
        unimplemented!("postgres backend")
    }

    /// Stores `document` (bumping the generation); durable at commit.
    ///
    /// # Errors
    /// [`crate::Error::StoreUnavailable`].
    pub async fn write(&mut self, document: &AuthDocument) -> Result<()> {
        let _ = document;
        unimplemented!("postgres backend")
    }

    /// Marks the credential logged out; returns whether it held credentials.
    ///
    /// # Errors
    /// [`crate::Error::StoreUnavailable`].
    pub async fn remove(&mut self) -> Result<bool> {
        unimplemented!("postgres backend")
    }

    /// Commits and releases the row lock.
    ///
    /// # Errors
    /// [`crate::Error::StoreUnavailable`]: after a refresh, that is the lineage-loss window.
    pub async fn commit(self) -> Result<()> {
        unimplemented!("postgres backend")
    }

    /// How long acquiring the row lock took.
    pub fn lock_wait(&self) -> Duration {
        Duration::ZERO
    }
}
