//! [`PgTransaction`]: the credential row locked for one transaction (see the module docs of
//! [`postgres`](super), "The transaction"): taking the row lock (creating the row first when the
//! key has none, naming the holder on a timeout), reading and writing inside it, and ending it
//! by commit, rollback or drop.

use std::fmt;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use super::connection::{Conn, Failure, Sql, seconds};
use super::{PgStore, generation};
use crate::document::AuthDocument;
use crate::error::{Error, Result};
use crate::store::{BoxFuture, Transaction};

impl PgStore {
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

/// A timeout for a `SET` statement: whole milliseconds, at least 1 (0 would mean "none").
pub(super) fn millis(duration: Duration) -> u128 {
    duration.as_millis().clamp(1, i32::MAX as u128)
}
