//! A PostgreSQL-coordinated credential store: the same transaction as the file store, for
//! machines (CI runners, dev containers, remote boxes) that share one login.
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
mod schema;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use self::connection::{Conn, Failure, Sql, seconds};
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

/// How the PostgreSQL store connects and waits. Every setter states its default.
#[derive(Debug, Clone)]
pub struct PgOptions {
    lock_timeout: Duration,
    idle_timeout: Duration,
    request_timeout: Duration,
    connect_timeout: Duration,
    ssl_root_cert: Option<PathBuf>,
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

    /// Starts a transaction holding the row lock (bounded by the lock timeout).
    ///
    /// # Errors
    /// [`ErrorKind::LockTimeout`](crate::ErrorKind::LockTimeout) naming the holder when the server shows it;
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) when the database cannot be reached or fails.
    pub async fn begin(&self) -> Result<PgTransaction> {
        let started = Instant::now();
        let mut row_ensured = false;
        let mut attempts = 0;
        let (mut conn, mut pooled) = self.connection().await?;
        loop {
            attempts += 1;
            match self.lock_row(&mut conn).await {
                Ok(Some((document, generation, lock_wait))) => {
                    tracing::debug!(location = %self.inner.location, waited = ?lock_wait, "row lock acquired");
                    return Ok(PgTransaction {
                        store: self.clone(),
                        conn: Some(Box::new(conn)),
                        document,
                        generation,
                        lock_wait,
                        broken: None,
                    });
                }
                Ok(None) if !row_ensured => {
                    // No row for this key yet: create it in its own committed statement, then
                    // lock it like any other.
                    let bound = self.inner.options.connect_timeout;
                    let ensured = match conn.batch("ROLLBACK", bound).await {
                        Ok(()) => {
                            conn.execute(Sql::EnsureRow, &[&self.inner.key], bound)
                                .await
                        }
                        Err(failure) => Err(failure),
                    };
                    if let Err(failure) = ensured {
                        return Err(self.unavailable(failure.reason));
                    }
                    row_ensured = true;
                }
                Ok(None) => {
                    return Err(self.unavailable(
                        "the credential row was deleted while it was being locked".into(),
                    ));
                }
                Err(failure) if failure.is(&SqlState::LOCK_NOT_AVAILABLE) => {
                    let waited = started.elapsed();
                    let holder = self.holder(&mut conn).await;
                    if conn.is_usable() {
                        self.put_back(conn);
                    }
                    tracing::debug!(location = %self.inner.location, ?waited, ?holder, "row lock timeout");
                    return Err(Error::lock_timeout(
                        self.location_for_errors(),
                        waited,
                        holder,
                    ));
                }
                Err(failure) if failure.lost && pooled && attempts < 3 => {
                    // The kept connection was closed meanwhile (a server restart): nothing was
                    // locked, so open a new one and start again.
                    tracing::debug!(location = %self.inner.location, reason = %failure.reason, "kept connection lost; reconnecting");
                    (conn, pooled) = self.open().await.map(|conn| (conn, false))?;
                }
                Err(failure) => {
                    if !failure.lost {
                        let _ = conn
                            .batch("ROLLBACK", self.inner.options.connect_timeout)
                            .await;
                        if conn.is_usable() {
                            self.put_back(conn);
                        }
                    }
                    return Err(self.unavailable(failure.reason));
                }
            }
        }
    }

    /// Opens the transaction and locks the row; `None` when the key has no row.
    async fn lock_row(
        &self,
        conn: &mut Conn,
    ) -> Result<Option<(Option<String>, u64, Duration)>, Failure> {
        let options = &self.inner.options;
        let bound = options.connect_timeout;
        let lock = millis(options.lock_timeout);
        let idle = millis(options.idle_timeout);
        let statement = millis(options.lock_timeout + bound);
        conn.batch(
            &format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; \
                 SET LOCAL lock_timeout = '{lock}ms'; \
                 SET LOCAL idle_in_transaction_session_timeout = '{idle}ms'; \
                 SET LOCAL statement_timeout = '{statement}ms'"
            ),
            bound,
        )
        .await?;
        let asked = Instant::now();
        let row = conn
            .query_opt(
                Sql::LockRow,
                &[&self.inner.key],
                options.lock_timeout + bound,
            )
            .await?;
        let waited = asked.elapsed();
        let Some(row) = row else { return Ok(None) };
        let decoded = row
            .try_get::<_, Option<String>>(0)
            .and_then(|document| Ok((document, row.try_get::<_, i64>(1)?)));
        match decoded {
            Ok((document, number)) => Ok(Some((document, generation(number), waited))),
            Err(e) => Err(Failure {
                code: None,
                reason: format!("unexpected row: {e}"),
                lost: true,
                cause: None,
            }),
        }
    }

    /// Who holds the row lock, as the server shows it, after a lock timeout. Best effort.
    async fn holder(&self, conn: &mut Conn) -> Option<String> {
        let bound = self
            .inner
            .options
            .connect_timeout
            .min(Duration::from_secs(2));
        conn.batch("ROLLBACK", bound).await.ok()?;
        let row = conn
            .query_opt(Sql::Holder, &[&self.inner.key], bound)
            .await
            .ok()??;
        let pid: i32 = row.try_get(0).ok()?;
        let mut holder = format!("server process {pid}");
        if let Some(name) = row.try_get::<_, Option<String>>(1).ok().flatten() {
            let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
            if !name.is_empty() {
                holder.push_str(&format!(" ({name})"));
            }
        }
        if let Some(address) = row.try_get::<_, Option<String>>(2).ok().flatten() {
            holder.push_str(&format!(" from {address}"));
        }
        if let Some(age) = row.try_get::<_, Option<f64>>(3).ok().flatten()
            && age.is_finite()
            && age >= 0.0
        {
            holder.push_str(&format!(
                ", in its transaction for {}",
                seconds(Duration::from_secs_f64(age))
            ));
        }
        Some(holder)
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

/// A transaction holding the credential row's lock. Dropping it without [`PgTransaction::commit`]
/// rolls back.
pub struct PgTransaction {
    store: PgStore,
    /// `None` once committed or rolled back, or after a failure. Boxed: a transaction is moved
    /// around, a connection is large.
    conn: Option<Box<Conn>>,
    /// The row's document as locked, then as written: nobody else can change it meanwhile.
    document: Option<String>,
    generation: u64,
    lock_wait: Duration,
    /// Why the transaction can no longer commit, once a statement failed.
    broken: Option<String>,
}

impl fmt::Debug for PgTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the document: it holds tokens.
        f.debug_struct("PgTransaction")
            .field("location", &self.store.inner.location)
            .field("generation", &self.generation)
            .field("lock_wait", &self.lock_wait)
            .field("open", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl PgTransaction {
    /// Re-reads the row inside the lock. The row cannot change while the lock is held, so this
    /// is the row as locked, or as this transaction wrote it.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) after a failed statement; [`ErrorKind::InvalidFile`](crate::ErrorKind::InvalidFile) when the
    /// stored document does not parse (it is left untouched).
    pub async fn read(&mut self) -> Result<Option<AuthDocument>> {
        self.check()?;
        self.store.parse(self.document.as_deref())
    }

    /// Stores `document` (bumping the generation); durable at commit.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable).
    pub async fn write(&mut self, document: &AuthDocument) -> Result<()> {
        let text = String::from_utf8(document.to_json())
            .map_err(|_| Error::invalid_input("the document is not UTF-8"))?;
        let store = self.store.clone();
        let row = self
            .run(Sql::Write, &[&store.inner.key, &text], "write")
            .await?;
        let Some(row) = row else {
            return Err(self.fail("the credential row is missing".into()));
        };
        self.generation = generation(row.try_get::<_, i64>(0).unwrap_or_default());
        self.document = Some(text);
        Ok(())
    }

    /// Marks the credential logged out (the document becomes NULL, the row stays); returns
    /// whether it held credentials.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable).
    pub async fn remove(&mut self) -> Result<bool> {
        let store = self.store.clone();
        let row = self.run(Sql::Remove, &[&store.inner.key], "remove").await?;
        self.document = None;
        match row {
            Some(row) => {
                self.generation = generation(row.try_get::<_, i64>(0).unwrap_or_default());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Commits and releases the row lock.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable), saying that the commit failed: after a refresh, that is the
    /// lineage-loss window (the authority rotated the token, and the new one may be lost).
    pub async fn commit(mut self) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(self.store.unavailable(format!(
                "the commit failed: an earlier statement failed ({reason}); nothing was stored"
            )));
        }
        let Some(conn) = self.conn.take() else {
            return Err(self
                .store
                .unavailable("the commit failed: the transaction has ended".into()));
        };
        if let Some(reason) = conn.ended() {
            // The connection ended before COMMIT was sent: the server rolled back.
            return Err(self.store.unavailable(format!(
                "the commit failed: the connection ended before it ({reason}); nothing was stored"
            )));
        }
        match conn
            .batch("COMMIT", self.store.inner.options.connect_timeout)
            .await
        {
            Ok(()) => {
                tracing::debug!(location = %self.store.inner.location, generation = self.generation, "committed");
                self.store.put_back(*conn);
                Ok(())
            }
            Err(failure) if failure.code.is_some() && !failure.lost => Err(self.store.unavailable(
                format!("the commit failed ({}); nothing was stored", failure.reason),
            )),
            Err(failure) => Err(self.store.unavailable(format!(
                "the commit failed ({}); whether it was stored is unknown",
                failure.reason
            ))),
        }
    }

    /// Rolls back and releases the row lock (what dropping the transaction does, awaited).
    pub async fn rollback(mut self) {
        if let Some(conn) = self.conn.take()
            && self.broken.is_none()
            && conn
                .batch("ROLLBACK", self.store.inner.options.connect_timeout)
                .await
                .is_ok()
        {
            self.store.put_back(*conn);
        }
    }

    /// How long acquiring the row lock took.
    pub fn lock_wait(&self) -> Duration {
        self.lock_wait
    }

    /// The row's generation as locked, or after this transaction's last write.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(reason) => Err(self
                .store
                .unavailable(format!("the transaction failed earlier ({reason})"))),
            None => Ok(()),
        }
    }

    async fn run(
        &mut self,
        sql: Sql,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &str,
    ) -> Result<Option<tokio_postgres::Row>> {
        self.check()?;
        let bound = self.store.inner.options.connect_timeout;
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.fail("the transaction has ended".into()));
        };
        match conn.query_opt(sql, params, bound).await {
            Ok(row) => Ok(row),
            Err(failure) => Err(self.fail(format!("could not {what}: {}", failure.reason))),
        }
    }

    /// Marks the transaction failed (the server rolls it back) and returns the error.
    fn fail(&mut self, reason: String) -> Error {
        self.broken = Some(reason.clone());
        // Closing the connection ends the transaction on the server at once.
        self.conn = None;
        self.store.unavailable(reason)
    }
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // Without a runtime, dropping the connection closes it: the server rolls back.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            if conn
                .batch("ROLLBACK", store.inner.options.connect_timeout)
                .await
                .is_ok()
            {
                store.put_back(*conn);
            }
        });
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

impl Transaction for PgTransaction {
    fn read(&mut self) -> BoxFuture<'_, Result<Option<AuthDocument>>> {
        Box::pin(PgTransaction::read(self))
    }

    fn write<'a>(&'a mut self, document: &'a AuthDocument) -> BoxFuture<'a, Result<()>> {
        Box::pin(PgTransaction::write(self, document))
    }

    fn remove(&mut self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(PgTransaction::remove(self))
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(PgTransaction::commit(*self))
    }

    fn lock_wait(&self) -> Duration {
        PgTransaction::lock_wait(self)
    }

    fn idle_limit(&self) -> Option<Duration> {
        Some(self.store.inner.options.idle_timeout)
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

/// A timeout for a `SET` statement: whole milliseconds, at least 1 (0 would mean "none").
fn millis(duration: Duration) -> u128 {
    duration.as_millis().clamp(1, i32::MAX as u128)
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
    use super::*;

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
