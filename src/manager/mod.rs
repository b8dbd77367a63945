//! [`AuthManager`]: cached credentials that stay fresh, refreshed through the cross-process
//! transaction.
//!
//! The hot path, [`AuthManager::auth`] on a fresh cached token, is an uncontended mutex, a look
//! at the store's change feed and an `Arc` clone: with a directory watch that look is an atomic
//! load (no read, no parse, no system call). When another process changes the credentials, the
//! feed says so and the next call re-reads them.
//!
//! The manager works on any [`Store`] through its interface alone: it never
//! asks which backend it runs on.

mod headers;
mod stats;

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

pub use headers::RequestHeaders;
use stats::Counters;
pub use stats::Stats;

use crate::authority::{AuthorityConfig, RefreshFailure, TokenClient, TokenResponse};
use crate::clock::Clock;
use crate::document::{AuthDocument, Freshness, IdClaims, Identity};
use crate::error::{Error, Location, ReloginReason, Result};
use crate::policy::{Decision, RefreshReason, decide, documents_verdict};
use crate::secret::Secret;
use crate::store::{ChangeFeed, ChangeOptions, FileStore, Mark, Store, StoreOptions, Transaction};

/// Credentials as read at one moment: the document and what its tokens say. Immutable; the
/// manager hands out `Arc`s of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSnapshot {
    document: AuthDocument,
    identity: Identity,
    expires_at: Option<SystemTime>,
    /// Parsed once here, so that the staleness check on the hot path parses nothing.
    last_refresh: Option<SystemTime>,
}

impl AuthSnapshot {
    fn new(document: AuthDocument) -> Self {
        Self {
            identity: document.identity(),
            expires_at: document.expires_at(),
            last_refresh: document.last_refresh_time(),
            document,
        }
    }

    /// The whole document.
    pub fn document(&self) -> &AuthDocument {
        &self.document
    }

    /// The access token to send with requests; `None` for API-key-only auth.
    pub fn access_token(&self) -> Option<&Secret> {
        self.document.access_token()
    }

    /// The API key, for API-key auth.
    pub fn api_key(&self) -> Option<&Secret> {
        self.document.openai_api_key.as_ref()
    }

    /// Account and user id.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The account id, when known.
    pub fn account_id(&self) -> Option<&str> {
        self.identity.account_id.as_deref()
    }

    /// When the access token expires, when readable.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The headers to send with a request made with these credentials (`Authorization: Bearer`,
    /// and `ChatGPT-Account-Id` when the account is known); `None` for API-key-only auth.
    pub fn request_headers(&self) -> Option<RequestHeaders> {
        let token = self.access_token()?;
        Some(RequestHeaders::new(token, self.account_id()))
    }

    /// The id token's claims (email, plan, ...).
    pub fn claims(&self) -> IdClaims {
        self.document.id_claims()
    }

    fn is_stale(&self, now: SystemTime, freshness: &Freshness) -> bool {
        self.document.tokens.is_some()
            && freshness.is_stale(self.expires_at, self.last_refresh, now)
    }
}

/// How a manager is set up. Every setter states its default.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    freshness: Freshness,
    store: StoreOptions,
    authority: AuthorityConfig,
    clock: Clock,
    watch: bool,
    reuse_settle: Duration,
    revalidate: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            freshness: Freshness::default(),
            store: StoreOptions::default(),
            authority: AuthorityConfig::from_env(),
            clock: Clock::system(),
            watch: true,
            reuse_settle: Duration::from_secs(2),
            revalidate: Duration::from_secs(1),
        }
    }
}

impl ManagerOptions {
    /// The staleness rule. Default: [`Freshness::default`] (5 minutes before `exp`; 8 days
    /// after `last_refresh` when `exp` is unknown).
    pub fn freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = freshness;
        self
    }

    /// Lock deadline, parse retry, unlocked opt-in. Default: [`StoreOptions::default`].
    pub fn store(mut self, store: StoreOptions) -> Self {
        self.store = store;
        self
    }

    /// The token endpoint. Default: [`AuthorityConfig::from_env`].
    pub fn authority(mut self, authority: AuthorityConfig) -> Self {
        self.authority = authority;
        self
    }

    /// Where `now` comes from. Default: the system clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether to watch the directory for changes (else: one `stat` per call). Default: true.
    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// With a shared store (nothing to watch), how long a fresh cached token is trusted before
    /// the store is asked again for changes made elsewhere. Default: 1 s.
    pub fn revalidate(mut self, every: Duration) -> Self {
        self.revalidate = every;
        self
    }

    /// After `refresh_token_reused` with an unchanged disk, how long to wait for the process that
    /// spent the token to commit its successor. Default: 2 s.
    pub fn reuse_settle(mut self, settle: Duration) -> Self {
        self.reuse_settle = settle;
        self
    }
}

/// A change the manager made or saw, for long-running processes that want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthEvent {
    /// New tokens were obtained by this process and written.
    Refreshed,
    /// Newer credentials written by another process were adopted.
    Adopted,
    /// Credentials were installed.
    LoggedIn,
    /// Credentials were removed (here or elsewhere).
    LoggedOut,
    /// Another account or user logged in; their credentials were not adopted.
    IdentityChanged,
}

/// Cached, self-refreshing credentials over one [`Store`]. Cheap to clone: clones share the
/// cache, the single-flight and the change feed.
#[derive(Debug, Clone)]
pub struct AuthManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    /// How changes made elsewhere are noticed: a watch, a metadata check, or a poll of a shared
    /// store; the manager does not know which.
    feed: Box<dyn ChangeFeed>,
    client: TokenClient,
    freshness: Freshness,
    clock: Clock,
    reuse_settle: Duration,
    /// std Mutex: nothing awaits while it is held, and uncontended it costs no system call.
    cache: Mutex<Cache>,
    /// One refresh transaction at a time in this process; waiters then reuse its result.
    flight: tokio::sync::Mutex<()>,
    /// Refresh tokens the authority rejected for good, by fingerprint: never sent again.
    dead: Mutex<HashMap<u64, ReloginReason>>,
    counters: Counters,
    events: broadcast::Sender<AuthEvent>,
}

#[derive(Debug, Default)]
struct Cache {
    snapshot: Option<Arc<AuthSnapshot>>,
    /// When `snapshot` was known to be what the store holds.
    mark: Option<Mark>,
    /// The store now holds another identity; `auth()` fails until [`AuthManager::reset`].
    identity_changed: bool,
}

impl AuthManager {
    /// A manager for the Codex home `home`: its `auth.json`, under Codex's locks.
    ///
    /// # Errors
    /// None today (the HTTP client is built on the first refresh); kept fallible so that setting
    /// up a store can report problems without an API change.
    pub fn new(home: impl Into<PathBuf>, options: ManagerOptions) -> Result<Self> {
        let store = FileStore::new(home, options.store.clone());
        Self::with_store(store, options)
    }

    /// A manager whose credentials live in a shared PostgreSQL store (one login for many
    /// machines), mirrored into `auth.json` in the local Codex home `home` after every change.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming both values when the
    /// store's idle timeout is not longer than the token request timeout (the server could end
    /// a transaction while its token request is in flight, and the rotated token would be
    /// lost).
    #[cfg(feature = "postgres")]
    pub fn with_postgres(
        home: impl Into<PathBuf>,
        store: crate::store::postgres::PgStore,
        options: ManagerOptions,
    ) -> Result<Self> {
        store
            .options()
            .check_idle_timeout(options.authority.timeout())?;
        let mirror = FileStore::new(home, options.store.clone());
        Self::with_store(crate::store::Mirrored::new(store, mirror), options)
    }

    /// A manager over any [`Store`].
    ///
    /// # Errors
    /// None today; see [`AuthManager::new`].
    pub fn with_store(store: impl Store + 'static, options: ManagerOptions) -> Result<Self> {
        let client = TokenClient::new(options.authority.clone());
        let feed = store.changes(ChangeOptions {
            watch: options.watch,
            poll: options.revalidate,
        });
        let (events, _) = broadcast::channel(64);
        Ok(Self {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                feed,
                client,
                freshness: options.freshness,
                clock: options.clock,
                reuse_settle: options.reuse_settle,
                cache: Mutex::default(),
                flight: tokio::sync::Mutex::new(()),
                dead: Mutex::default(),
                counters: Counters::default(),
                events,
            }),
        })
    }

    /// The store the credentials live in.
    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The local `auth.json` (for a shared store: its local mirror), when there is one.
    pub fn local_file(&self) -> Option<&FileStore> {
        self.inner.store.local_file()
    }

    /// Where the credentials live: the local `auth.json`, or the shared store's location.
    pub fn location(&self) -> Location {
        self.inner.store.location()
    }

    /// Whether changes are pushed by a directory watch (else looked for: one `stat` per call
    /// on the file store, a poll of a shared store).
    pub fn is_watching(&self) -> bool {
        self.inner.feed.is_watching()
    }

    /// Counters of what this manager did.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot(self.inner.feed.checks())
    }

    /// Events for every change this manager makes or notices.
    pub fn subscribe(&self) -> broadcast::Receiver<AuthEvent> {
        self.inner.events.subscribe()
    }

    /// Fresh credentials: the cached ones when fresh and unchanged in the store, else re-read,
    /// and refreshed through the transaction when stale.
    ///
    /// # Errors
    /// Of kinds [`NotLoggedIn`](crate::ErrorKind::NotLoggedIn),
    /// [`ReloginRequired`](crate::ErrorKind::ReloginRequired) (including an identity change),
    /// [`InvalidFile`](crate::ErrorKind::InvalidFile),
    /// [`LockTimeout`](crate::ErrorKind::LockTimeout),
    /// [`Transient`](crate::ErrorKind::Transient),
    /// [`StoreUnavailable`](crate::ErrorKind::StoreUnavailable) and I/O errors.
    pub async fn auth(&self) -> Result<Arc<AuthSnapshot>> {
        let now = self.inner.clock.now();
        if let Some(snapshot) = self.cached_if_unchanged()
            && !snapshot.is_stale(now, &self.inner.freshness)
        {
            return Ok(snapshot);
        }
        let snapshot = self.reload().await?;
        if !snapshot.is_stale(now, &self.inner.freshness) {
            return Ok(snapshot);
        }
        self.refresh_held(snapshot, RefreshReason::Proactive).await
    }

    /// Recovery after a request made with `rejected`'s access token got HTTP 401: adopts
    /// different credentials another process wrote, or refreshes. Always pass the snapshot that
    /// was used for the request, not a newer one.
    ///
    /// # Errors
    /// As [`AuthManager::auth`].
    pub async fn unauthorized(&self, rejected: &Arc<AuthSnapshot>) -> Result<Arc<AuthSnapshot>> {
        self.refresh_held(rejected.clone(), RefreshReason::Unauthorized)
            .await
    }

    /// Obtains new tokens now, whatever their age.
    ///
    /// # Errors
    /// As [`AuthManager::auth`].
    pub async fn force_refresh(&self) -> Result<Arc<AuthSnapshot>> {
        let held = match self.cached_if_unchanged() {
            Some(snapshot) => snapshot,
            None => self.reload().await?,
        };
        self.refresh_held(held, RefreshReason::Forced).await
    }

    /// Installs `document` under the lock, replacing whatever is there (the file store creates
    /// a missing home directory, 0700). The manager then holds this identity.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when the document has neither
    /// tokens nor an API key; lock, store and I/O errors.
    pub async fn login(&self, document: AuthDocument) -> Result<Arc<AuthSnapshot>> {
        if document.tokens.is_none() && document.openai_api_key.is_none() {
            return Err(Error::invalid_input(
                "the document holds neither tokens nor an API key; nothing to log in with",
            ));
        }
        let _flight = self.inner.flight.lock().await;
        self.inner.store.prepare_login()?;
        let mut transaction = self.begin().await?;
        transaction.write(&document).await?;
        let mark = self.inner.feed.mark();
        transaction.commit().await?;
        let snapshot = self.install(AuthSnapshot::new(document), mark);
        self.emit(AuthEvent::LoggedIn);
        Ok(snapshot)
    }

    /// Removes the credentials under the lock; with `revoke`, then revokes their refresh token,
    /// best effort. Returns whether there was anything to remove. An invalid document is left
    /// untouched.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidFile`](crate::ErrorKind::InvalidFile), lock, store and I/O errors.
    pub async fn logout(&self, revoke: bool) -> Result<bool> {
        let _flight = self.inner.flight.lock().await;
        let mut transaction = self.begin().await?;
        let existing = transaction.read().await?;
        let removed = transaction.remove().await?;
        transaction.commit().await?;
        self.clear_cache();
        self.emit(AuthEvent::LoggedOut);
        if revoke
            && let Some(token) = existing.as_ref().and_then(AuthDocument::refresh_token)
            && let Err(reason) = self.inner.client.revoke(token).await
        {
            tracing::warn!("could not revoke the refresh token: {reason}");
        }
        Ok(removed)
    }

    /// Forgets the held credentials and identity: the next call adopts whatever the store
    /// holds, even another user's. Call it after the user chose to switch accounts.
    pub fn reset(&self) {
        self.clear_cache();
    }

    /// The cached snapshot when nothing can have changed in the store since it was read.
    fn cached_if_unchanged(&self) -> Option<Arc<AuthSnapshot>> {
        let (snapshot, mark) = {
            let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.identity_changed {
                return None;
            }
            (cache.snapshot.clone()?, cache.mark.clone()?)
        };
        (!self.inner.feed.changed_since(&mark)).then_some(snapshot)
    }

    /// The cached snapshot, changed in the store or not, unless another identity took over.
    fn cached_snapshot(&self) -> Option<Arc<AuthSnapshot>> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.identity_changed {
            return None;
        }
        cache.snapshot.clone()
    }

    /// Re-reads the store (no lock) and updates the cache, refusing another identity.
    async fn reload(&self) -> Result<Arc<AuthSnapshot>> {
        let mark = self.inner.feed.mark();
        self.inner.counters.disk_read();
        // On an error the cache keeps its old mark, so the next call reads again rather than
        // trusting a cache that could not be checked.
        let disk = self.inner.store.read().await?;
        let Some(disk) = disk.filter(|d| d.tokens.is_some() || d.openai_api_key.is_some()) else {
            let was_logged_in = self.clear_cache();
            if was_logged_in {
                self.emit(AuthEvent::LoggedOut);
            }
            return Err(self.not_logged_in());
        };
        self.adopt_read(disk, mark)
    }

    /// Puts what a plain read found into the cache, unless it is another identity's.
    fn adopt_read(&self, disk: AuthDocument, mark: Mark) -> Result<Arc<AuthSnapshot>> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = cache.snapshot.clone() {
            if held.document == disk {
                cache.identity_changed = false;
                cache.mark = Some(mark);
                return Ok(held);
            }
            if !documents_verdict(&held.document, &disk).is_compatible() {
                let first_time = !cache.identity_changed;
                cache.identity_changed = true;
                drop(cache);
                if first_time {
                    self.emit(AuthEvent::IdentityChanged);
                }
                return Err(self.relogin(ReloginReason::IdentityChanged));
            }
        }
        let snapshot = Arc::new(AuthSnapshot::new(disk));
        cache.snapshot = Some(snapshot.clone());
        cache.mark = Some(mark);
        cache.identity_changed = false;
        Ok(snapshot)
    }

    /// The refresh transaction (SPEC §6) for the held snapshot `held`.
    async fn refresh_held(
        &self,
        held: Arc<AuthSnapshot>,
        reason: RefreshReason,
    ) -> Result<Arc<AuthSnapshot>> {
        if held.document.tokens.is_none() {
            return Err(Error::invalid_input(format!(
                "{} holds an API key, not tokens: there is nothing to refresh",
                self.location()
            )));
        }
        let _flight = self.inner.flight.lock().await;
        let now = self.inner.clock.now();

        // Another task of this process may have finished the work while this one waited. Its
        // result is in the cache (possibly marked changed by the feed seeing its own write).
        if let Some(current) = self.cached_snapshot()
            && !Arc::ptr_eq(&current, &held)
            && decide(
                &held.document,
                Some(&current.document),
                reason,
                now,
                &self.inner.freshness,
            ) == Decision::Adopt
        {
            return Ok(current);
        }

        let mut transaction = self.begin().await?;
        // Taken inside the lock: nothing changes the store until this transaction ends, but
        // this process's own writes.
        let mark = self.inner.feed.mark();
        let disk = transaction.read().await?;
        let decision = decide(
            &held.document,
            disk.as_ref(),
            reason,
            now,
            &self.inner.freshness,
        );
        tracing::debug!(?reason, ?decision, "refresh transaction decided");
        let base = match (decision, disk) {
            // `decide` answers LoggedOut whenever the store holds no tokens, so the other
            // decisions always come with a stored state.
            (Decision::LoggedOut, _) | (_, None) => {
                drop(transaction);
                self.clear_cache();
                self.emit(AuthEvent::LoggedOut);
                return Err(self.not_logged_in());
            }
            (Decision::IdentityChanged(verdict), Some(_)) => {
                drop(transaction);
                tracing::info!(?verdict, "another identity is logged in; not adopting it");
                self.inner
                    .cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .identity_changed = true;
                self.inner.counters.relogin_required();
                self.emit(AuthEvent::IdentityChanged);
                return Err(self.relogin(ReloginReason::IdentityChanged));
            }
            (Decision::Adopt, Some(adopted)) => {
                self.inner.counters.adopted();
                let snapshot = self.install(AuthSnapshot::new(adopted), mark);
                finish_read_only(transaction).await;
                self.emit(AuthEvent::Adopted);
                return Ok(snapshot);
            }
            (Decision::Refresh { .. }, Some(base)) => base,
        };

        let Some(refresh_token) = base.refresh_token().cloned() else {
            return Err(self.not_logged_in());
        };
        if let Some(reason) = self.known_dead(&refresh_token) {
            tracing::debug!("refresh token already rejected for good; not sending it again");
            return Err(self.relogin(reason));
        }
        // A store that ends an idle transaction (PostgreSQL) must still hold the lock when the
        // answer comes: no retry starts that could outlast it (a second apart, for the write).
        let hold_until = transaction
            .idle_limit()
            .map(|limit| Instant::now() + limit.saturating_sub(Duration::from_secs(1)));
        match self.refresh_with_retry(&refresh_token, hold_until).await {
            Ok(response) => {
                // From here until the store holds it, the rotated token exists only in this
                // process: a crash now loses it (the one window no client can close). Keep it
                // short: merge, write and commit, nothing else.
                let received = Instant::now();
                let refreshed = response.merge_into(&base, now);
                transaction.write(&refreshed).await?;
                let mark = self.inner.feed.mark();
                if let Err(error) = transaction.commit().await {
                    tracing::error!(
                        "the authority rotated the refresh token but storing the new one failed: \
                         this login's lineage may be lost: {}",
                        error.report()
                    );
                    return Err(error);
                }
                let window = received.elapsed();
                self.inner.counters.refreshed();
                tracing::info!(
                    commit_window_us = window.as_micros() as u64,
                    "refreshed the tokens"
                );
                let snapshot = self.install(AuthSnapshot::new(refreshed), mark);
                self.emit(AuthEvent::Refreshed);
                Ok(snapshot)
            }
            Err(RefreshFailure::Permanent {
                reason: ReloginReason::Reused,
                ..
            }) => {
                self.recover_from_reuse(transaction, &held, &refresh_token)
                    .await
            }
            Err(RefreshFailure::Permanent {
                reason: relogin,
                status,
                code,
            }) => {
                drop(transaction);
                tracing::warn!(status, %code, "the token authority rejected the refresh token");
                self.remember_dead(&refresh_token, relogin);
                self.inner.counters.relogin_required();
                Err(self.relogin(relogin))
            }
            Err(RefreshFailure::Transient {
                reason: why,
                source,
                ..
            }) => {
                drop(transaction);
                let error = Error::transient(
                    self.location(),
                    why,
                    source
                        .map(|source| Box::new(source) as Box<dyn std::error::Error + Send + Sync>),
                );
                tracing::warn!("{}", error.report());
                self.inner.counters.transient_failure();
                Err(error)
            }
        }
    }

    /// One refresh request, retried (bounded, jittered) only when the failure proves the token
    /// was not spent: retrying after a timeout could present a token the authority already
    /// rotated, which is the very reuse this crate exists to prevent.
    ///
    /// With `hold_until` (the moment the store would end the transaction), an attempt starts
    /// only if its delay and a whole request timeout fit before it: an answer that arrived after
    /// the store released the lock could not be stored, and the rotated token would be lost.
    async fn refresh_with_retry(
        &self,
        refresh_token: &Secret,
        hold_until: Option<Instant>,
    ) -> Result<TokenResponse, RefreshFailure> {
        const RETRY_DELAYS_MS: [u64; 2] = [200, 600];
        let request_timeout = self.inner.client.config().timeout();
        let mut attempt = 0;
        loop {
            let result = self.inner.client.refresh(refresh_token).await;
            match &result {
                Err(RefreshFailure::Transient {
                    retry_safe: true,
                    reason,
                    ..
                }) if attempt < RETRY_DELAYS_MS.len() => {
                    let delay = jittered(Duration::from_millis(RETRY_DELAYS_MS[attempt]));
                    if hold_until
                        .is_some_and(|until| Instant::now() + delay + request_timeout > until)
                    {
                        tracing::info!(
                            "token refresh failed ({reason}); no time left in the transaction to retry"
                        );
                        return result;
                    }
                    tracing::info!("token refresh failed ({reason}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }

    /// After `refresh_token_reused`: adopt the successor if some process committed it, waiting a
    /// bounded while (with the locks released) for one that spent the token outside the lock and
    /// is about to commit.
    async fn recover_from_reuse(
        &self,
        mut transaction: Box<dyn Transaction>,
        held: &AuthSnapshot,
        spent: &Secret,
    ) -> Result<Arc<AuthSnapshot>> {
        if let Some(snapshot) = self.adopt_successor(&mut transaction, held, spent).await? {
            finish_read_only(transaction).await;
            return Ok(snapshot);
        }
        drop(transaction);
        let deadline = Instant::now() + self.inner.reuse_settle;
        while Instant::now() < deadline {
            let mark = self.inner.feed.mark();
            let moved = self
                .inner
                .store
                .read()
                .await
                .ok()
                .flatten()
                .and_then(|d| d.refresh_token().cloned())
                .is_some_and(|token| &token != spent);
            if moved {
                break;
            }
            // Woken by the feed, and polled as well: the watch may be unavailable.
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            let _ = tokio::time::timeout(wait, self.inner.feed.wait(&mark)).await;
        }
        let mut transaction = self.begin().await?;
        if let Some(snapshot) = self.adopt_successor(&mut transaction, held, spent).await? {
            finish_read_only(transaction).await;
            return Ok(snapshot);
        }
        drop(transaction);
        self.remember_dead(spent, ReloginReason::Reused);
        self.inner.counters.relogin_required();
        tracing::warn!("the refresh token was already used and no process holds its successor");
        Err(self.relogin(ReloginReason::Reused))
    }

    async fn adopt_successor(
        &self,
        transaction: &mut Box<dyn Transaction>,
        held: &AuthSnapshot,
        spent: &Secret,
    ) -> Result<Option<Arc<AuthSnapshot>>> {
        let mark = self.inner.feed.mark();
        let Some(disk) = transaction.read().await? else {
            return Ok(None);
        };
        let moved_on = disk.refresh_token().is_some_and(|token| token != spent);
        if moved_on && documents_verdict(&held.document, &disk).is_compatible() {
            self.inner.counters.reuse_recovered();
            tracing::info!("refresh token was spent by another process; adopted its successor");
            let snapshot = self.install(AuthSnapshot::new(disk), mark);
            self.emit(AuthEvent::Adopted);
            return Ok(Some(snapshot));
        }
        Ok(None)
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let transaction = self.inner.store.begin().await?;
        self.inner.counters.transaction(transaction.lock_wait());
        Ok(transaction)
    }

    fn install(&self, snapshot: AuthSnapshot, mark: Mark) -> Arc<AuthSnapshot> {
        let snapshot = Arc::new(snapshot);
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.snapshot = Some(snapshot.clone());
        // With a watch, this process's own write reaches it too and causes one re-read: cheap,
        // and simpler than telling our events from others'.
        cache.mark = Some(mark);
        cache.identity_changed = false;
        snapshot
    }

    /// Clears the cache; returns whether it held credentials.
    fn clear_cache(&self) -> bool {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.identity_changed = false;
        cache.mark = None;
        cache.snapshot.take().is_some()
    }

    fn emit(&self, event: AuthEvent) {
        // No receiver is fine: nobody asked.
        let _ = self.inner.events.send(event);
    }

    fn not_logged_in(&self) -> Error {
        Error::not_logged_in(self.location())
    }

    fn relogin(&self, reason: ReloginReason) -> Error {
        Error::relogin(self.location(), reason)
    }

    fn known_dead(&self, token: &Secret) -> Option<ReloginReason> {
        let dead = self.inner.dead.lock().unwrap_or_else(|e| e.into_inner());
        dead.get(&fingerprint(token)).copied()
    }

    fn remember_dead(&self, token: &Secret, reason: ReloginReason) {
        let mut dead = self.inner.dead.lock().unwrap_or_else(|e| e.into_inner());
        dead.insert(fingerprint(token), reason);
    }
}

/// Ends a transaction that wrote nothing. It is committed rather than dropped so that a
/// mirroring store copies what it read; a failure changes nothing that was stored.
async fn finish_read_only(transaction: Box<dyn Transaction>) {
    if let Err(error) = transaction.commit().await {
        tracing::debug!(error = %error.report(), "ending a read-only transaction failed");
    }
}

/// `base` scaled by a factor in [0.5, 1.5), so that processes failing together do not retry
/// together.
fn jittered(base: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    std::process::id().hash(&mut hasher);
    Instant::now().hash(&mut hasher);
    let unit = (hasher.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(0.5 + unit)
}

/// A refresh token's in-memory fingerprint: the set of dead tokens never holds the tokens.
fn fingerprint(token: &Secret) -> u64 {
    let mut hasher = DefaultHasher::new();
    token.expose().hash(&mut hasher);
    hasher.finish()
}
