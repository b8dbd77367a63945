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
//!
//! Stale credentials, a 401 ([`AuthManager::unauthorized`] with the snapshot the request used,
//! or [`AuthManager::unauthorized_token`] with the access token string) or a forced refresh run
//! the refresh transaction (SPEC §6), one at a time per process (the single-flight: tasks that
//! waited take its result). It takes the store's lock, re-reads, and decides with
//! [`policy::decide`](crate::policy::decide): logged out elsewhere, write nothing; another
//! identity, write nothing and spend nothing; newer credentials of the same identity, adopt them,
//! with no network call when they will do. Otherwise it spends the refresh token once, merges the
//! answer into what the store holds, writes atomically and commits before the lock goes (an
//! answer without a usable access token is a transient failure, but what it rotated is written
//! first: see [`authority`](crate::authority) for how answers are read). On
//! `refresh_token_reused` it adopts the successor another process committed (waiting a bounded
//! while, with the locks released, for one about to commit), else re-login is required; a token
//! the authority rejected for good is never sent again. [`AuthManager::refresh`] says which of
//! these a call did ([`RefreshOutcome`]).
//!
//! This module is the manager's public surface (the handle, its cache and events); beside it,
//! `snapshot` holds [`AuthSnapshot`], `options` [`ManagerOptions`], and `transaction` the refresh
//! transaction itself (SPEC §6: deciding inside the lock, then spending the refresh token at most
//! once), with its recovery from `refresh_token_reused`.

mod headers;
mod options;
mod rotation;
mod snapshot;
mod stats;
mod transaction;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

pub use headers::RequestHeaders;
pub use options::ManagerOptions;
pub use rotation::Rotation;
pub use snapshot::AuthSnapshot;
use stats::Counters;
pub use stats::Stats;
use transaction::Held;

use crate::authority::TokenClient;
use crate::clock::Clock;
use crate::document::{AuthDocument, Freshness};
use crate::error::{Error, Location, ReloginReason, Result};
use crate::policy::{RefreshReason, RejectedToken, documents_verdict};
use crate::rotations::RotationRecord;
use crate::store::{ChangeFeed, ChangeOptions, FileStore, Mark, Store};

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

/// What a call to [`AuthManager::refresh`] did to obtain the credentials it returned.
///
/// It is the outcome of that one call: other tasks sharing the manager do not change it (a
/// comparison of [`Stats`] before and after the call counts their work too). Non-exhaustive,
/// so that a later kind of outcome is not a breaking change: a `match` needs a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// The call's transaction spent the refresh token: new tokens came from the token endpoint
    /// and were stored. Also when the store held newer credentials of the same identity that
    /// still had to be refreshed (adopted, then refreshed). Counted in [`Stats::refreshed`].
    Refreshed,
    /// Newer credentials of the same identity that the call did not obtain itself were adopted
    /// instead of refreshing: written by another process and found inside the lock
    /// ([`Stats::adopted`]), or, after the authority answered `refresh_token_reused`, the
    /// successor another process committed ([`Stats::reuse_recovered`]), or obtained by
    /// another task of this manager whose transaction this call waited for (the in-process
    /// single-flight; counted once, as that task's outcome).
    Adopted,
    /// No refresh was needed: the credentials were fresh, as cached or as a plain re-read of
    /// the store found them (including fresh credentials another process wrote meanwhile), and
    /// no transaction ran.
    Fresh,
}

impl RefreshOutcome {
    /// The outcome in one word: `"refreshed"`, `"adopted"` or `"fresh"`, the first word of what
    /// `authstore refresh` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshOutcome::Refreshed => "refreshed",
            RefreshOutcome::Adopted => "adopted",
            RefreshOutcome::Fresh => "fresh",
        }
    }
}

impl fmt::Display for RefreshOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// The home's rotation record, when the store has a local home.
    rotations: Option<RotationRecord>,
    /// What this manager last saw in the store, to notice a rotation made elsewhere.
    seen: Mutex<Option<AuthDocument>>,
    /// The refresh token this manager's last transaction spent (by fingerprint), and what it
    /// got for it: clients that presented that same token meanwhile take it without a
    /// transaction of their own.
    last_spent: Mutex<Option<(u64, Arc<AuthSnapshot>)>>,
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
        let client = TokenClient::new(options.authority.clone()).in_transaction();
        let feed = store.changes(ChangeOptions {
            watch: options.watch,
            poll: options.revalidate,
        });
        let (events, _) = broadcast::channel(64);
        let rotations = store
            .local_file()
            .map(|file| RotationRecord::in_home(file.home()));
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
                rotations,
                seen: Mutex::default(),
                last_spent: Mutex::default(),
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

    /// The token endpoint this manager refreshes at.
    pub fn authority(&self) -> &crate::authority::AuthorityConfig {
        self.inner.client.config()
    }

    /// Whether changes are pushed by a watch (a directory watch on `auth.json`, the Secret
    /// Service's signals for a keyring item on Linux), else looked for: one `stat` per call on
    /// the file store, a poll of a shared store or of a keyring item.
    pub fn is_watching(&self) -> bool {
        self.inner.feed.is_watching()
    }

    /// Where the store's history of changes stands now, for [`AuthManager::changed`]: take it
    /// before a look at the credentials, so that a change made during the look is not missed.
    pub fn change_mark(&self) -> Mark {
        self.inner.feed.mark()
    }

    /// Resolves once the store changed (any process's write, this manager's own included) after
    /// `mark`: at once when it already has. With a watch ([`AuthManager::is_watching`]) nothing
    /// wakes before the watch reports a change; without one this looks on the feed's own
    /// interval, so a caller that wants to sleep long should wait on a timer instead. Bound it
    /// with a timeout of your own.
    pub async fn changed(&self, mark: &Mark) {
        self.inner.feed.wait(mark).await;
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
    /// and refreshed through the transaction when stale. [`AuthManager::refresh`] with `false`,
    /// without the outcome.
    ///
    /// # Errors
    /// Of kinds [`NotLoggedIn`](crate::ErrorKind::NotLoggedIn),
    /// [`ReloginRequired`](crate::ErrorKind::ReloginRequired) (including an identity change),
    /// [`InvalidFile`](crate::ErrorKind::InvalidFile),
    /// [`LockTimeout`](crate::ErrorKind::LockTimeout),
    /// [`Transient`](crate::ErrorKind::Transient),
    /// [`StoreUnavailable`](crate::ErrorKind::StoreUnavailable) and I/O errors.
    pub async fn auth(&self) -> Result<Arc<AuthSnapshot>> {
        let (snapshot, _) = self.refresh(false).await?;
        Ok(snapshot)
    }

    /// Recovery after a request made with `rejected`'s access token got HTTP 401: adopts
    /// different credentials another process wrote, or refreshes. Always pass the snapshot that
    /// was used for the request, not a newer one.
    ///
    /// # Errors
    /// As [`AuthManager::auth`].
    pub async fn unauthorized(&self, rejected: &Arc<AuthSnapshot>) -> Result<Arc<AuthSnapshot>> {
        let (snapshot, _) = self
            .refresh_held(
                Held::Snapshot(rejected.clone()),
                RefreshReason::Unauthorized,
            )
            .await?;
        Ok(snapshot)
    }

    /// Recovery after a request made with the access token `access_token` got HTTP 401, for a
    /// caller that holds that token rather than the snapshot it came from (a token its program
    /// got elsewhere, or kept from a request it made): what [`AuthManager::unauthorized`] does,
    /// with the identity the token names ([`RejectedToken`]: its JWT claims, or `account_id`
    /// for a token without them).
    ///
    /// A store that holds another access token of the same identity is adopted, with no call
    /// to the token endpoint; one that still holds `access_token` is refreshed; another
    /// account's or user's login, or one whose identity cannot be proven the same (an opaque
    /// token whose account alone is named, a store that names its user), is never adopted:
    /// [`ReloginReason::IdentityChanged`], with nothing written and nothing spent. This also
    /// protects a manager that has never read the store: the identity is the token's, not
    /// whatever the manager happened to read first.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) as [`RejectedToken::new`]
    /// says; then as [`AuthManager::auth`].
    pub async fn unauthorized_token(
        &self,
        access_token: &str,
        account_id: Option<&str>,
    ) -> Result<Arc<AuthSnapshot>> {
        let rejected = RejectedToken::new(access_token, account_id)?;
        let (snapshot, _) = self
            .refresh_held(Held::Token(rejected), RefreshReason::Unauthorized)
            .await?;
        Ok(snapshot)
    }

    /// Obtains new tokens now, whatever their age. [`AuthManager::refresh`] with `true`,
    /// without the outcome.
    ///
    /// # Errors
    /// As [`AuthManager::auth`].
    pub async fn force_refresh(&self) -> Result<Arc<AuthSnapshot>> {
        let (snapshot, _) = self.refresh(true).await?;
        Ok(snapshot)
    }

    /// Fresh credentials and what it took to get them: without `force`, what
    /// [`AuthManager::auth`] does (the refresh transaction runs only when the credentials are
    /// stale); with `force`, what [`AuthManager::force_refresh`] does (the transaction runs and
    /// asks for new tokens whatever their age, so the outcome is never
    /// [`RefreshOutcome::Fresh`]).
    ///
    /// The outcome is this call's own, also when other tasks share the manager: use it rather
    /// than comparing [`AuthManager::stats`] before and after, which counts their work too.
    ///
    /// # Errors
    /// As [`AuthManager::auth`].
    pub async fn refresh(&self, force: bool) -> Result<(Arc<AuthSnapshot>, RefreshOutcome)> {
        if force {
            let held = match self.cached_if_unchanged() {
                Some(snapshot) => snapshot,
                None => self.reload().await?,
            };
            return self
                .refresh_held(Held::Snapshot(held), RefreshReason::Forced)
                .await;
        }
        let now = self.inner.clock.now();
        if let Some(snapshot) = self.cached_if_unchanged()
            && !snapshot.is_stale(now, &self.inner.freshness)
        {
            return Ok((snapshot, RefreshOutcome::Fresh));
        }
        let snapshot = self.reload().await?;
        if !snapshot.is_stale(now, &self.inner.freshness) {
            return Ok((snapshot, RefreshOutcome::Fresh));
        }
        self.refresh_held(Held::Snapshot(snapshot), RefreshReason::Proactive)
            .await
    }

    /// Installs `document` under the lock, replacing whatever is there (the file store creates
    /// a missing home directory, 0700). The manager then holds this identity.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when the document has neither
    /// tokens nor an API key; lock, store and I/O errors.
    pub async fn login(&self, document: AuthDocument) -> Result<Arc<AuthSnapshot>> {
        if !document.has_credentials() {
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
        self.observe(disk.as_ref(), self.inner.clock.now()).await;
        let Some(disk) = disk.filter(AuthDocument::has_credentials) else {
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

    fn install(&self, snapshot: AuthSnapshot, mark: Mark) -> Arc<AuthSnapshot> {
        self.saw(&snapshot.document);
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
}
