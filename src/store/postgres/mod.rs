//! A PostgreSQL-coordinated credential store: the same transaction as the file store, for
//! machines (CI runners, dev containers, remote boxes) that share one login.
//!
//! The store itself (connecting, the unlocked read, the kept connection) is here; beside it,
//! `options` holds [`PgOptions`], `transaction` the row-locked [`PgTransaction`] (taking the
//! lock, reading and writing inside it, ending it), `connection` one bounded connection and its
//! TLS, `location` the URL and the password-free location, `schema` the versioned schema.
//!
//! # Schema
//!
//! Created on first use and versioned (see `authstore_schema`), in the connection's default
//! schema (`search_path`):
//!
//! ```sql
//! CREATE TABLE authstore_schema (
//!     singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
//!     version integer NOT NULL                      -- 1
//! );
//! CREATE TABLE authstore_credentials (
//!     key text PRIMARY KEY,                         -- one row per credential key
//!     document text,                                -- the auth document; NULL: logged out
//!     generation bigint NOT NULL DEFAULT 0,         -- bumped by every write
//!     updated_at timestamptz NOT NULL DEFAULT now()
//! );
//! ```
//!
//! The document is stored as **text**, exactly as [`AuthDocument::to_json`] writes it (jsonb
//! would reorder keys); unknown fields survive byte for byte. A logout sets it to NULL and keeps
//! the row, so that the next transaction still has a row to lock. Many processes connecting to
//! a fresh database at once create the schema once: creation runs under an advisory lock.
//!
//! # The transaction
//!
//! [`PgStore::begin`] opens `BEGIN ISOLATION LEVEL READ COMMITTED`, sets `lock_timeout`,
//! `idle_in_transaction_session_timeout` and `statement_timeout` for this transaction only
//! (`SET LOCAL`), and locks the row with `SELECT ... FOR UPDATE`, which also reads it. A key
//! without a row gets one first, in its own statement (`INSERT ... ON CONFLICT DO NOTHING`,
//! committed at once), and is then locked. Inside the lock the caller reads (the row as
//! locked: nobody else can change it meanwhile), decides, writes or removes, and commits.
//!
//! The server releases the row lock at commit or rollback, and also:
//!
//! - at once when the holder dies or its connection closes (the server rolls back);
//! - after the idle timeout when the holder hangs inside the transaction, or its machine
//!   vanishes from the network: the server ends the session
//!   (`idle_in_transaction_session_timeout`). Its later write or commit then fails with
//!   [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable).
//!
//! A waiter gives up after the lock timeout with [`ErrorKind::LockTimeout`](crate::ErrorKind::LockTimeout), naming the holder's
//! server process and `application_name` (`authstore (pid N)`) when the server shows them.
//!
//! # Connections
//!
//! A store keeps at most one idle connection and reuses it: a transaction or a read takes it
//! (or opens a new one when it is taken, closed or missing) and gives it back when it ends
//! cleanly. Sequential use costs one connection; concurrent use within a process opens more,
//! each closed when it is not the one kept. A transaction dropped without
//! [`PgTransaction::commit`] is rolled back in the background and its connection kept; when no
//! runtime is there to do that, its connection is closed, which rolls back too. A kept
//! connection that the server closed meanwhile (a restart) is noticed and replaced before
//! anything is locked. Every round trip is bounded: the row-lock wait by the lock timeout,
//! everything else by the connect timeout.
//!
//! # TLS
//!
//! `sslmode=require` (or libpq's `verify-ca` and `verify-full`) connects with TLS (rustls,
//! ring), verifying the certificate and the host name against the system's roots, or against
//! the certificates in `sslrootcert=PATH` (in the URL), [`PgOptions::ssl_root_cert`] or
//! `PGSSLROOTCERT`. Any other mode connects in plain text.
//!
//! # Security
//!
//! Neither the URL's password nor any token appears in a message, a log or `Debug` output:
//! [`PgStore::location`] is rebuilt from the parsed URL without its password, and errors carry
//! the server's message and SQLSTATE, never a statement's parameters.

mod connection;
mod location;
mod options;
mod schema;
mod transaction;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use self::connection::{Conn, Failure, Sql};
pub use self::options::PgOptions;
pub use self::transaction::PgTransaction;
use crate::document::AuthDocument;
use crate::error::{Error, Location, Result};
use crate::store::{BoxFuture, ChangeFeed, ChangeOptions, FileStore, PollFeed, Store, Transaction};

/// The environment variable that names a shared store (`postgres://...`).
pub const STORE_ENV: &str = "AUTHSTORE_STORE";

/// The credential key used when none is configured.
pub const DEFAULT_KEY: &str = "default";

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i32 = schema::VERSION;

/// Longest accepted credential key, in bytes.
const MAX_KEY_BYTES: usize = 256;

/// The store URL from `AUTHSTORE_STORE`, when it is set to a `postgres://` or
/// `postgresql://` URL.
pub fn url_from_env() -> Option<String> {
    std::env::var(STORE_ENV)
        .ok()
        .map(|url| url.trim().to_owned())
        .filter(|url| is_postgres_url(url))
}

/// Whether `url` names a PostgreSQL store (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A version of the credential row: its generation and `xmin`.
type RowVersion = (u64, String);

/// One credential key in a PostgreSQL database. A cheap `Clone` handle: clones share the kept
/// connection.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The parsed URL; holds the password, so never printed.
    config: tokio_postgres::Config,
    /// Present when the URL asks for TLS.
    tls: Option<MakeRustlsConnect>,
    key: String,
    location: String,
    options: PgOptions,
    /// The kept idle connection. std Mutex, because nothing awaits while it is held.
    idle: Mutex<Option<Conn>>,
    /// The last document read without locking, and the row's version (generation and `xmin`)
    /// then; `None` as the version when the key had no row.
    seen: Mutex<Option<(Option<RowVersion>, Option<AuthDocument>)>>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.inner.location)
            .field("tls", &self.inner.tls.is_some())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` for the credential `key`, creating the (versioned) schema on first use.
    ///
    /// `url` is a `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAMS]` URL (or a libpq
    /// `key=value` string). The connection's `application_name` is `authstore (pid N)`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a URL that does not parse, a key that is empty, longer than
    /// 256 bytes or holds control characters, or unusable TLS root certificates;
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) when the database cannot be reached, refuses the login, or
    /// the schema cannot be created (the role needs `CREATE` on the schema the first time) or is
    /// newer than this build.
    pub async fn connect(url: &str, key: &str, options: PgOptions) -> Result<Self> {
        validate_key(key)?;
        options.check_idle_timeout(options.request_timeout)?;
        let parsed = location::parse(url)?;
        let mut config = parsed.config;
        config.application_name(format!("authstore (pid {})", std::process::id()));
        config.connect_timeout(options.connect_timeout);
        let root_cert = options
            .ssl_root_cert
            .clone()
            .or(parsed.ssl_root_cert)
            .or_else(|| std::env::var_os("PGSSLROOTCERT").map(PathBuf::from));
        let tls = connection::tls(&config, root_cert.as_deref())?;
        if tls.is_none() && !location::is_local(&config) {
            tracing::warn!(
                location = %location::describe(&config, key),
                "connecting to the credential store without TLS; add sslmode=require to the URL"
            );
        }
        let store = PgStore {
            inner: Arc::new(Inner {
                location: location::describe(&config, key),
                config,
                tls,
                key: key.to_owned(),
                options,
                idle: Mutex::new(None),
                seen: Mutex::new(None),
            }),
        };
        let (mut conn, _) = store.connection().await?;
        match schema::ensure(&mut conn, store.inner.options.connect_timeout).await {
            Ok(()) => store.put_back(conn),
            Err(schema::SchemaError::Newer(version)) => {
                return Err(store.unavailable(format!(
                    "the database holds authstore schema version {version}, newer than this authstore understands ({SCHEMA_VERSION}); upgrade authstore"
                )));
            }
            Err(schema::SchemaError::Failure(failure)) => {
                let mut reason = format!("cannot create the schema: {}", failure.reason);
                if failure.is(&SqlState::INSUFFICIENT_PRIVILEGE) {
                    reason.push_str("; the role needs CREATE on the database's schema the first time, or create the tables beforehand (see the README)");
                }
                return Err(store.unavailable(reason));
            }
        }
        tracing::debug!(location = %store.inner.location, "connected to the credential store");
        Ok(store)
    }

    /// Where the store is, for messages: the URL without its password, and the key
    /// (`postgres://USER@HOST:PORT/DATABASE#KEY`).
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The credential key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The options in force.
    pub fn options(&self) -> &PgOptions {
        &self.inner.options
    }

    /// Reads the document without locking; `None` when logged out.
    ///
    /// The store remembers the last document it read with the row's version (its generation and
    /// `xmin`, which every new version of the row changes, even one written by hand): while the
    /// version is unchanged, a read asks only for it (`SELECT generation, xmin`, a few bytes) and
    /// returns the remembered document; only a changed row is fetched and parsed.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable),
    /// [`ErrorKind::InvalidFile`](crate::ErrorKind::InvalidFile).
    pub async fn read(&self) -> Result<Option<AuthDocument>> {
        let seen = lock(&self.inner.seen).clone();
        if let Some((seen_version, document)) = seen
            && self.row_version().await? == seen_version
        {
            return Ok(document);
        }
        let row = self.query_unlocked(Sql::Read).await?;
        let (text, version) = match row {
            Some(row) => row
                .try_get::<_, Option<String>>(0)
                .and_then(|text| {
                    let version = (generation(row.try_get::<_, i64>(1)?), row.try_get(2)?);
                    Ok((text, Some(version)))
                })
                .map_err(|e| self.unavailable(format!("unexpected row: {e}")))?,
            None => (None, None),
        };
        let document = self.parse(text.as_deref())?;
        *lock(&self.inner.seen) = Some((version, document.clone()));
        Ok(document)
    }

    /// The row's version: its generation and `xmin`; `None` when the key has no row.
    async fn row_version(&self) -> Result<Option<RowVersion>> {
        let row = self.query_unlocked(Sql::Generation).await?;
        row.map(|row| {
            Ok((
                generation(row.try_get::<_, i64>(0)?),
                row.try_get::<_, String>(1)?,
            ))
        })
        .transpose()
        .map_err(|e: tokio_postgres::Error| self.unavailable(format!("unexpected row: {e}")))
    }

    /// The row's generation, bumped by every write and logout; 0 when the key was never
    /// written. Cheap: a way to see whether anything changed since the last look.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable).
    pub async fn generation(&self) -> Result<u64> {
        Ok(self
            .row_version()
            .await?
            .map_or(0, |(generation, _)| generation))
    }

    /// Runs `sql` (one parameter: the key) outside a transaction, on the kept connection when
    /// there is one, replacing it once when the server closed it meanwhile.
    async fn query_unlocked(&self, sql: Sql) -> Result<Option<tokio_postgres::Row>> {
        let bound = self.inner.options.connect_timeout;
        let (mut conn, mut pooled) = self.connection().await?;
        loop {
            match conn.query_opt(sql, &[&self.inner.key], bound).await {
                Ok(row) => {
                    self.put_back(conn);
                    return Ok(row);
                }
                Err(failure) if failure.lost && pooled => {
                    (conn, pooled) = (self.open().await?, false);
                }
                Err(failure) => {
                    if conn.is_usable() {
                        self.put_back(conn);
                    }
                    return Err(self.unavailable(failure.reason));
                }
            }
        }
    }

    /// The kept connection when it is usable (`true`), else a new one.
    async fn connection(&self) -> Result<(Conn, bool)> {
        let kept = lock(&self.inner.idle).take();
        match kept {
            Some(conn) if conn.is_usable() => Ok((conn, true)),
            _ => Ok((self.open().await?, false)),
        }
    }

    async fn open(&self) -> Result<Conn> {
        connection::open(
            &self.inner.config,
            self.inner.tls.as_ref(),
            self.inner.options.connect_timeout,
        )
        .await
        .map_err(|failure| self.unavailable_because("cannot connect", failure))
    }

    /// Keeps `conn` for the next transaction, unless one is kept already.
    fn put_back(&self, conn: Conn) {
        if !conn.is_usable() {
            return;
        }
        let mut idle = lock(&self.inner.idle);
        if idle.as_ref().is_none_or(|kept| !kept.is_usable()) {
            *idle = Some(conn);
        }
    }

    /// Unavailable because of `failure`, while doing `what`: the client library's error, when
    /// there is one, becomes the source; else the reason is spelled out.
    fn unavailable_because(&self, what: &str, failure: Failure) -> Error {
        match failure.cause {
            Some(cause) => {
                Error::store_unavailable(self.location_for_errors(), what, Some(Box::new(cause)))
            }
            None => self.unavailable(format!("{what}: {}", failure.reason)),
        }
    }

    fn unavailable(&self, reason: String) -> Error {
        Error::store_unavailable(self.location_for_errors(), reason, None)
    }

    fn location_for_errors(&self) -> Location {
        Location::Store(self.inner.location.clone())
    }

    fn parse(&self, text: Option<&str>) -> Result<Option<AuthDocument>> {
        text.map(|text| {
            AuthDocument::parse(text.as_bytes())
                .map_err(|error| Error::invalid_file(self.location_for_errors(), error.to_string()))
        })
        .transpose()
    }
}

impl Store for PgStore {
    fn location(&self) -> Location {
        self.location_for_errors()
    }

    fn read(&self) -> BoxFuture<'_, Result<Option<AuthDocument>>> {
        Box::pin(PgStore::read(self))
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>>> {
        Box::pin(async move {
            let transaction = PgStore::begin(self).await?;
            Ok(Box::new(transaction) as Box<dyn Transaction>)
        })
    }

    /// Nothing to watch: what was read stays valid for `options.poll`, then the next read asks
    /// for the row's generation (see [`PgStore::read`]).
    fn changes(&self, options: ChangeOptions) -> Box<dyn ChangeFeed> {
        Box::new(PollFeed { poll: options.poll })
    }

    fn local_file(&self) -> Option<&FileStore> {
        None
    }
}

fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(Error::invalid_input(format!(
            "the credential key must be 1 to {MAX_KEY_BYTES} bytes long, without control characters"
        )));
    }
    Ok(())
}

fn generation(number: i64) -> u64 {
    u64::try_from(number).unwrap_or(0)
}

/// std Mutex: nothing awaits while it is held, and a poisoned one still holds a usable value.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
#[cfg(test)]
mod tests {
    use super::transaction::millis;
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("default").is_ok());
        assert!(validate_key("ci/runner-pool:1").is_ok());
        for bad in ["", "a\nb", &"k".repeat(MAX_KEY_BYTES + 1)] {
            assert_eq!(
                validate_key(bad).unwrap_err().kind(),
                crate::error::ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn timeouts_never_become_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), i32::MAX as u128);
    }

    #[tokio::test]
    async fn an_unreachable_database_is_unavailable_and_the_password_stays_hidden() {
        // Port 1 on loopback: nothing listens there.
        let error = PgStore::connect(
            "postgres://alice:s3cret-pw@127.0.0.1:1/auth",
            DEFAULT_KEY,
            PgOptions::default().connect_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), crate::error::ErrorKind::StoreUnavailable);
        let message = error.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(
            message.contains("postgres://alice@127.0.0.1:1/auth#default"),
            "{message}"
        );
    }
}
