//! [`AuthManager`]: cached credentials that stay fresh, refreshed through the cross-process
//! transaction.
//!
//! The hot path, [`AuthManager::auth`] on a fresh cached token, is a flag check, an uncontended
//! mutex and an `Arc` clone: no read, no parse, no stat. A directory watch marks the cache dirty
//! when another process changes `auth.json`; the next call re-reads it.

mod backend;
mod stats;

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

use crate::store::file::watch::{ChangeSignal, DirectoryWatch, FileStamp};
use backend::{Backend, Tx};
use stats::Counters;
pub use stats::Stats;

use crate::authority::{AuthorityConfig, RefreshFailure, TokenClient, TokenResponse};
use crate::clock::Clock;
use crate::document::{AuthDocument, Freshness, IdClaims, Identity};
use crate::error::{Error, ReloginReason, Result};
use crate::policy::{Decision, RefreshReason, decide, documents_verdict};
use crate::secret::Secret;
use crate::store::{FileStore, StoreOptions};

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

/// Cached, self-refreshing credentials for one Codex home. Cheap to clone: clones share the
/// cache, the single-flight and the watch.
#[derive(Debug, Clone)]
pub struct AuthManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    client: TokenClient,
    freshness: Freshness,
    clock: Clock,
    reuse_settle: Duration,
    /// std Mutex: nothing awaits while it is held, and uncontended it costs no system call.
    cache: Mutex<Cache>,
    signal: Arc<ChangeSignal>,
    /// `None` when watching is unavailable; then `stamp` is compared on every call (file store)
    /// or the store is asked again after `revalidate` (shared store).
    watch: Option<DirectoryWatch>,
    stamp: Mutex<Option<FileStamp>>,
    validated_at: Mutex<Option<Instant>>,
    revalidate: Duration,
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
    /// The disk now holds another identity; `auth()` fails until [`AuthManager::reset`].
    identity_changed: bool,
}

impl AuthManager {
    /// A manager for the Codex home `home`.
    ///
    /// # Errors
    /// None today (the HTTP client is built on the first refresh); kept fallible so that setting
    /// up a store can report problems without an API change.
    pub fn new(home: impl Into<PathBuf>, options: ManagerOptions) -> Result<Self> {
        let store = FileStore::new(home, options.store.clone());
        Self::with_backend(Backend::File(store), options)
    }

    /// A manager whose credentials live in a shared PostgreSQL store (one login for many
    /// machines), mirrored into `auth.json` in the local Codex home `home` after every change.
    ///
    /// # Errors
    /// None today; see [`AuthManager::new`].
    #[cfg(feature = "postgres")]
    pub fn with_postgres(
        home: impl Into<PathBuf>,
        store: crate::store::postgres::PgStore,
        options: ManagerOptions,
    ) -> Result<Self> {
        let mirror = FileStore::new(home, options.store.clone());
        Self::with_backend(Backend::Postgres { store, mirror }, options)
    }

    fn with_backend(backend: Backend, options: ManagerOptions) -> Result<Self> {
        let client = TokenClient::new(options.authority.clone());
        let signal = Arc::new(ChangeSignal::default());
        // Start dirty: the first call reads the store.
        signal.dirty.store(true, Ordering::Release);
        let watch = if options.watch && !backend.is_remote() {
            DirectoryWatch::start(backend.local().auth_path(), signal.clone())
        } else {
            None
        };
        let (events, _) = broadcast::channel(64);
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                client,
                freshness: options.freshness,
                clock: options.clock,
                reuse_settle: options.reuse_settle,
                cache: Mutex::default(),
                signal,
                watch,
                stamp: Mutex::default(),
                validated_at: Mutex::default(),
                revalidate: options.revalidate,
                flight: tokio::sync::Mutex::new(()),
                dead: Mutex::default(),
                counters: Counters::default(),
                events,
            }),
        })
    }

    /// The local file store (for a shared store: the local mirror).
    pub fn store(&self) -> &FileStore {
        self.inner.backend.local()
    }

    /// The local `auth.json` path.
    pub fn auth_path(&self) -> &Path {
        self.inner.backend.local().auth_path()
    }

    /// Where the credentials live: the local `auth.json`, or the shared store's location.
    pub fn location(&self) -> PathBuf {
        self.inner.backend.location()
    }

    /// Whether changes are noticed by a directory watch (else by one `stat` per call).
    pub fn is_watching(&self) -> bool {
        self.inner.watch.is_some()
    }

    /// Counters of what this manager did.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Events for every change this manager makes or notices.
    pub fn subscribe(&self) -> broadcast::Receiver<AuthEvent> {
        self.inner.events.subscribe()
    }

    /// Fresh credentials: the cached ones when fresh and unchanged on disk, else re-read, and
    /// refreshed through the transaction when stale.
    ///
    /// # Errors
    /// [`Error::NotLoggedIn`], [`Error::ReloginRequired`] (including an identity change on disk),
    /// [`Error::InvalidFile`], [`Error::LockTimeout`], [`Error::Transient`] and I/O errors.
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

    /// Installs `document` under the lock, replacing whatever is there (creating the home
    /// directory, 0700, when missing). The manager then holds this identity.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the document has neither tokens nor an API key; lock and
    /// I/O errors.
    pub async fn login(&self, document: AuthDocument) -> Result<Arc<AuthSnapshot>> {
        if document.tokens.is_none() && document.openai_api_key.is_none() {
            return Err(Error::invalid_input(
                "the document holds neither tokens nor an API key; nothing to log in with",
            ));
        }
        let _flight = self.inner.flight.lock().await;
        if !self.inner.backend.is_remote() {
            self.inner.backend.local().ensure_home()?;
        }
        let mut transaction = self.begin().await?;
        transaction.write(&document).await?;
        transaction.commit().await?;
        self.inner.backend.mirror(Some(&document)).await;
        let snapshot = self.install(AuthSnapshot::new(document));
        self.emit(AuthEvent::LoggedIn);
        Ok(snapshot)
    }

    /// Removes `auth.json` under the lock; with `revoke`, then revokes its refresh token, best
    /// effort. Returns whether there was anything to remove. An invalid file is left untouched.
    ///
    /// # Errors
    /// [`Error::InvalidFile`], lock and I/O errors.
    pub async fn logout(&self, revoke: bool) -> Result<bool> {
        let _flight = self.inner.flight.lock().await;
        let mut transaction = self.begin().await?;
        let existing = transaction.read().await?;
        let removed = transaction.remove().await?;
        transaction.commit().await?;
        self.inner.backend.mirror(None).await;
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

    /// Forgets the held credentials and identity: the next call adopts whatever is on disk, even
    /// another user's. Call it after the user chose to switch accounts.
    pub fn reset(&self) {
        self.clear_cache();
        self.inner.signal.dirty.store(true, Ordering::Release);
    }

    /// The cached snapshot when nothing can have changed on disk since it was read.
    fn cached_if_unchanged(&self) -> Option<Arc<AuthSnapshot>> {
        if self.inner.signal.dirty.load(Ordering::Acquire) || self.inner.signal.is_lost() {
            return None;
        }
        if self.inner.backend.is_remote() {
            let validated = *self
                .inner
                .validated_at
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if validated.is_none_or(|at| at.elapsed() >= self.inner.revalidate) {
                return None;
            }
        } else if self.inner.watch.is_none() {
            let stamp = FileStamp::of(self.auth_path());
            self.inner.counters.metadata_check();
            let cached = self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *cached != stamp {
                return None;
            }
        }
        self.cached_snapshot()
    }

    /// The cached snapshot regardless of the dirty flag, unless another identity took over.
    fn cached_snapshot(&self) -> Option<Arc<AuthSnapshot>> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.identity_changed {
            return None;
        }
        cache.snapshot.clone()
    }

    /// Re-reads the disk (no lock) and updates the cache, refusing another identity.
    async fn reload(&self) -> Result<Arc<AuthSnapshot>> {
        self.inner.signal.dirty.store(false, Ordering::Release);
        let stamp = if self.inner.watch.is_none() && !self.inner.backend.is_remote() {
            FileStamp::of(self.auth_path())
        } else {
            None
        };
        self.inner.counters.disk_read();
        let read_at = Instant::now();
        let disk = match self.inner.backend.read().await {
            Ok(disk) => disk,
            Err(error) => {
                // Read again next time rather than trusting a cache we could not check.
                self.inner.signal.dirty.store(true, Ordering::Release);
                return Err(error);
            }
        };
        *self
            .inner
            .validated_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(read_at);
        let Some(disk) = disk.filter(|d| d.tokens.is_some() || d.openai_api_key.is_some()) else {
            if self.inner.backend.is_remote() {
                self.inner.backend.mirror(None).await;
            }
            let was_logged_in = self.clear_cache();
            if was_logged_in {
                self.emit(AuthEvent::LoggedOut);
            }
            return Err(self.not_logged_in());
        };
        let previous = self.cached_snapshot();
        let snapshot = self.adopt_read(disk, stamp)?;
        // Mirror only what changed: a shared store is re-read every `revalidate`, and the local
        // file already equals an unchanged row.
        let changed = previous.is_none_or(|previous| !Arc::ptr_eq(&previous, &snapshot));
        if changed && self.inner.backend.is_remote() {
            self.inner.backend.mirror(Some(&snapshot.document)).await;
        }
        Ok(snapshot)
    }

    /// Puts what a plain read found into the cache, unless it is another identity's.
    fn adopt_read(
        &self,
        disk: AuthDocument,
        stamp: Option<FileStamp>,
    ) -> Result<Arc<AuthSnapshot>> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = cache.snapshot.clone() {
            if held.document == disk {
                cache.identity_changed = false;
                *self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
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
        cache.identity_changed = false;
        *self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
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
                self.auth_path().display()
            )));
        }
        let _flight = self.inner.flight.lock().await;
        let now = self.inner.clock.now();

        // Another task of this process may have finished the work while this one waited. Its
        // result is in the cache (possibly marked dirty by the watch seeing its own write).
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
            // `decide` answers LoggedOut whenever the disk holds no tokens, so the other
            // decisions always come with a disk state.
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
                drop(transaction);
                self.inner.counters.adopted();
                self.inner.backend.mirror(Some(&adopted)).await;
                let snapshot = self.install(AuthSnapshot::new(adopted));
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
        match self.refresh_with_retry(&refresh_token).await {
            Ok(response) => {
                // From here until the rename, the rotated token exists only in this process: a
                // crash now loses it (the one window no client can close). Keep it short: merge
                // and write, nothing else.
                let received = Instant::now();
                let refreshed = response.merge_into(&base, now);
                transaction.write(&refreshed).await?;
                if let Err(error) = transaction.commit().await {
                    tracing::error!(
                        "the authority rotated the refresh token but storing the new one failed: \
                         this login's lineage may be lost: {}",
                        error.report()
                    );
                    return Err(error);
                }
                let window = received.elapsed();
                self.inner.backend.mirror(Some(&refreshed)).await;
                self.inner.counters.refreshed();
                tracing::info!(
                    commit_window_us = window.as_micros() as u64,
                    "refreshed the tokens"
                );
                let snapshot = self.install(AuthSnapshot::new(refreshed));
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
                tracing::warn!("token refresh failed temporarily: {why}");
                self.inner.counters.transient_failure();
                Err(Error::transient(
                    self.location(),
                    why,
                    source
                        .map(|source| Box::new(source) as Box<dyn std::error::Error + Send + Sync>),
                ))
            }
        }
    }

    /// One refresh request, retried (bounded, jittered) only when the failure proves the token
    /// was not spent: retrying after a timeout could present a token the authority already
    /// rotated, which is the very reuse this crate exists to prevent.
    async fn refresh_with_retry(
        &self,
        refresh_token: &Secret,
    ) -> Result<TokenResponse, RefreshFailure> {
        const RETRY_DELAYS_MS: [u64; 2] = [200, 600];
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
        mut transaction: Tx<'_>,
        held: &AuthSnapshot,
        spent: &Secret,
    ) -> Result<Arc<AuthSnapshot>> {
        if let Some(snapshot) = self.adopt_successor(&mut transaction, held, spent).await? {
            return Ok(snapshot);
        }
        drop(transaction);
        let deadline = Instant::now() + self.inner.reuse_settle;
        let mut seen = self.inner.signal.generation.load(Ordering::Acquire);
        while Instant::now() < deadline {
            let notified = self.inner.signal.notify.notified();
            let now_seen = self.inner.signal.generation.load(Ordering::Acquire);
            if now_seen == seen {
                // Poll as well: the watch may be unavailable.
                let wait = deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                let _ = tokio::time::timeout(wait, notified).await;
            }
            seen = self.inner.signal.generation.load(Ordering::Acquire);
            let moved = self
                .inner
                .backend
                .read()
                .await
                .ok()
                .flatten()
                .and_then(|d| d.refresh_token().cloned())
                .is_some_and(|token| &token != spent);
            if moved {
                break;
            }
        }
        let mut transaction = self.begin().await?;
        if let Some(snapshot) = self.adopt_successor(&mut transaction, held, spent).await? {
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
        transaction: &mut Tx<'_>,
        held: &AuthSnapshot,
        spent: &Secret,
    ) -> Result<Option<Arc<AuthSnapshot>>> {
        let Some(disk) = transaction.read().await? else {
            return Ok(None);
        };
        let moved_on = disk.refresh_token().is_some_and(|token| token != spent);
        if moved_on && documents_verdict(&held.document, &disk).is_compatible() {
            self.inner.counters.reuse_recovered();
            tracing::info!("refresh token was spent by another process; adopted its successor");
            self.inner.backend.mirror(Some(&disk)).await;
            let snapshot = self.install(AuthSnapshot::new(disk));
            self.emit(AuthEvent::Adopted);
            return Ok(Some(snapshot));
        }
        Ok(None)
    }

    async fn begin(&self) -> Result<Tx<'_>> {
        let transaction = self.inner.backend.begin().await?;
        self.inner.counters.transaction(transaction.lock_wait());
        Ok(transaction)
    }

    fn install(&self, snapshot: AuthSnapshot) -> Arc<AuthSnapshot> {
        let snapshot = Arc::new(snapshot);
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.snapshot = Some(snapshot.clone());
        cache.identity_changed = false;
        // Our own write also reaches the watch; re-reading once is cheap and keeps this simple.
        if self.inner.watch.is_none() && !self.inner.backend.is_remote() {
            *self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner()) =
                FileStamp::of(self.auth_path());
        }
        *self
            .inner
            .validated_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        snapshot
    }

    /// Clears the cache; returns whether it held credentials.
    fn clear_cache(&self) -> bool {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.identity_changed = false;
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
