//! The refresh transaction (SPEC §6) of an [`AuthManager`]: lock, re-read, decide, maybe
//! spend the refresh token once, merge, write atomically; and the recovery when the authority
//! answers `refresh_token_reused`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{AuthEvent, AuthManager, AuthSnapshot, RefreshOutcome};
use crate::authority::{RefreshFailure, TokenResponse};
use crate::document::AuthDocument;
use crate::error::{Error, ReloginReason, Result};
use crate::policy::{
    Decision, RefreshReason, RejectedToken, Verdict, decide, decide_rejected_token,
    documents_verdict, rejected_token_verdict,
};
use crate::secret::Secret;
use crate::store::Transaction;

/// What the transaction starts from: the snapshot the caller held (for
/// [`RefreshReason::Unauthorized`], the one whose access token got the 401), or only the access
/// token a request was rejected with. Every decision about the store's state is asked of it, so
/// that both are held to the same rules.
pub(super) enum Held {
    /// A snapshot this manager (or another) handed out.
    Snapshot(Arc<AuthSnapshot>),
    /// An access token the caller holds, with the identity it names; only for
    /// [`RefreshReason::Unauthorized`].
    Token(RejectedToken),
}

impl Held {
    /// Step 3 of the transaction ([`decide`], or [`decide_rejected_token`]).
    fn decide(
        &self,
        disk: Option<&AuthDocument>,
        reason: RefreshReason,
        now: SystemTime,
        freshness: &crate::document::Freshness,
    ) -> Decision {
        match self {
            Held::Snapshot(held) => decide(&held.document, disk, reason, now, freshness),
            Held::Token(rejected) => decide_rejected_token(rejected, disk),
        }
    }

    /// May the holder adopt `disk`?
    fn verdict(&self, disk: &AuthDocument) -> Verdict {
        match self {
            Held::Snapshot(held) => documents_verdict(&held.document, disk),
            Held::Token(rejected) => rejected_token_verdict(rejected, disk),
        }
    }

    /// Whether `snapshot` is the very snapshot held.
    fn is(&self, snapshot: &Arc<AuthSnapshot>) -> bool {
        matches!(self, Held::Snapshot(held) if Arc::ptr_eq(held, snapshot))
    }
}

/// What the transaction decided inside the lock, before anything was spent.
enum Decided {
    /// Newer credentials another process wrote were adopted (and the transaction ended):
    /// nothing to spend.
    Adopted(Arc<AuthSnapshot>),
    /// A refresh token to spend, with the lock still held. Boxed: a document is large, and
    /// one allocation per refresh costs nothing beside the network call that follows.
    Spend(Box<Spend>),
}

/// What [`AuthManager::spend`] needs: the open transaction (the lock), the state the
/// transaction continues with (the held one, or a different one adopted from the store) and
/// its refresh token.
struct Spend {
    transaction: Box<dyn Transaction>,
    base: AuthDocument,
    refresh_token: Secret,
}

impl AuthManager {
    /// The refresh transaction (SPEC §6) for the held snapshot `held`: the in-process
    /// single-flight, then [`decide_locked`](Self::decide_locked) and, when it says so,
    /// [`spend`](Self::spend).
    ///
    /// Why two functions: up to the decision nothing has been spent, so deciding may end at any
    /// point (an error, a logout found, another identity, an adoption) by letting the lock go,
    /// and the store is as it was. Spending may not: once the request is sent the authority may
    /// have rotated the token, and its successor exists only in this process until it is
    /// written, so from there to the commit the code is one straight path that keeps the lock.
    /// The decided value carries the transaction across the seam: nothing can spend a token
    /// without having decided inside the lock that holds it.
    ///
    /// The outcome is never [`RefreshOutcome::Fresh`]: this is the path taken when the held
    /// credentials would not do.
    pub(super) async fn refresh_held(
        &self,
        held: Held,
        reason: RefreshReason,
    ) -> Result<(Arc<AuthSnapshot>, RefreshOutcome)> {
        if let Held::Snapshot(snapshot) = &held
            && snapshot.document.tokens.is_none()
        {
            return Err(Error::invalid_input(format!(
                "{} holds an API key, not tokens: there is nothing to refresh",
                self.location()
            )));
        }
        let _flight = self.inner.flight.lock().await;
        let now = self.inner.clock.now();

        // Another task of this process may have finished the work while this one waited. Its
        // result is in the cache (possibly marked changed by the feed seeing its own write).
        // A rotation of the token the transaction this call waited for spent: its successor,
        // as long as nothing newer has been read since.
        if reason == RefreshReason::Rotation
            && let Some(successor) = self.successor_of(&held)
        {
            return Ok((successor, RefreshOutcome::Adopted));
        }
        // Not otherwise for a rotation: the cache may be older than the store the presented
        // token was found in, and the client must get what replaced its token, nothing older.
        if reason != RefreshReason::Rotation
            && let Some(current) = self.cached_snapshot()
            && !held.is(&current)
            && held.decide(Some(&current.document), reason, now, &self.inner.freshness)
                == Decision::Adopt
        {
            return Ok((current, RefreshOutcome::Adopted));
        }

        match self.decide_locked(&held, reason, now).await? {
            Decided::Adopted(snapshot) => Ok((snapshot, RefreshOutcome::Adopted)),
            Decided::Spend(spend) => self.spend(spend, &held, now).await,
        }
    }

    /// Steps 1 to 3 of the transaction: takes the lock, re-reads the store and applies
    /// [`decide`]. A logout found, another identity and a refresh token already rejected for
    /// good end here as errors, with nothing written and nothing spent; newer credentials that
    /// need no refresh are adopted. Otherwise the lock is handed on, in [`Decided::Spend`].
    async fn decide_locked(
        &self,
        held: &Held,
        reason: RefreshReason,
        now: SystemTime,
    ) -> Result<Decided> {
        let mut transaction = self.begin().await?;
        // Taken inside the lock: nothing changes the store until this transaction ends, but
        // this process's own writes.
        let mark = self.inner.feed.mark();
        let disk = transaction.read().await?;
        self.observe(disk.as_ref(), now).await;
        let decision = held.decide(disk.as_ref(), reason, now, &self.inner.freshness);
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
                return Ok(Decided::Adopted(snapshot));
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
        self.record_spend(&base, &refresh_token, now).await;
        Ok(Decided::Spend(Box::new(Spend {
            transaction,
            base,
            refresh_token,
        })))
    }

    /// Step 4 of the transaction, still inside the lock: the one token-endpoint call (retried
    /// only where that is safe), the merge into the state decided on, the atomic write and
    /// commit; on `refresh_token_reused`, the recovery; a permanent failure remembered so that
    /// the token is not sent again; a transient one reported with the store untouched, but for
    /// a `2xx` without a usable access token, whose rotation (a new refresh or id token) is
    /// stored before the failure is reported: the authority has spent the old token already.
    async fn spend(
        &self,
        spend: Box<Spend>,
        held: &Held,
        now: SystemTime,
    ) -> Result<(Arc<AuthSnapshot>, RefreshOutcome)> {
        let Spend {
            mut transaction,
            base,
            refresh_token,
        } = *spend;
        // A store that ends an idle transaction (PostgreSQL) must still hold the lock when the
        // answer comes: no retry starts that could outlast it (a second apart, for the write).
        let hold_until = transaction
            .idle_limit()
            .map(|limit| Instant::now() + limit.saturating_sub(Duration::from_secs(1)));
        match self.refresh_with_retry(&refresh_token, hold_until).await {
            Ok(response) if !response.is_usable() => {
                // A 2xx without a usable access token: the refresh failed, but what the answer
                // did rotate (a new refresh token, a new id token) is stored all the same, in
                // this transaction: the authority has already spent the old refresh token.
                if response.has_tokens() {
                    let stored = response.merge_into(&base, now);
                    // Seen before it is written: a follower of the store that reads the new
                    // file before this transaction ends must not take it for another's rotation.
                    self.saw(&stored);
                    transaction.write(&stored).await?;
                    let mark = self.inner.feed.mark();
                    if let Err(error) = transaction.commit().await {
                        tracing::error!(
                            "the authority rotated the refresh token but storing the new one \
                             failed: this login's lineage may be lost: {}",
                            error.report()
                        );
                        return Err(error);
                    }
                    self.install(AuthSnapshot::new(stored), mark);
                } else {
                    drop(transaction);
                }
                self.inner.counters.transient_failure();
                let error = Error::transient(
                    self.location(),
                    "the token endpoint answered without a usable access token",
                    None,
                );
                // The caller reports it: logged here only for -v, so that it is said once.
                tracing::debug!("{}", error.report());
                Err(error)
            }
            Ok(response) => {
                // From here until the store holds it, the rotated token exists only in this
                // process: a crash now loses it (the one window no client can close). Keep it
                // short: merge, write and commit, nothing else.
                let received = Instant::now();
                let refreshed = response.merge_into(&base, now);
                // Seen before it is written: a follower of the store (the broker's) that reads
                // the new file before this transaction ends must not record it again.
                self.saw(&refreshed);
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
                *self
                    .inner
                    .last_spent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) =
                    Some((fingerprint(&refresh_token), snapshot.clone()));
                self.emit(AuthEvent::Refreshed);
                Ok((snapshot, RefreshOutcome::Refreshed))
            }
            Err(RefreshFailure::Permanent {
                reason: ReloginReason::Reused,
                ..
            }) => {
                let snapshot = self
                    .recover_from_reuse(transaction, held, &refresh_token)
                    .await?;
                Ok((snapshot, RefreshOutcome::Adopted))
            }
            Err(RefreshFailure::Permanent {
                reason: relogin,
                status,
                code,
            }) => {
                drop(transaction);
                // The caller reports the error; the status and code are for -v.
                tracing::info!(status, %code, "the token authority rejected the refresh token");
                self.remember_dead(&refresh_token, relogin);
                self.inner.counters.relogin_required();
                Err(self.relogin(relogin).with_rejection(status, code))
            }
            Err(RefreshFailure::Transient {
                reason: why,
                source,
                ..
            }) => {
                drop(transaction);
                let network = source
                    .as_deref()
                    .and_then(crate::authority::network_failure);
                let error = Error::transient(
                    self.location(),
                    why,
                    source
                        .map(|source| Box::new(source) as Box<dyn std::error::Error + Send + Sync>),
                )
                .with_network(network);
                // The caller reports it: logged here only for -v, so that it is said once.
                tracing::debug!("{}", error.report());
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
        held: &Held,
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
        held: &Held,
        spent: &Secret,
    ) -> Result<Option<Arc<AuthSnapshot>>> {
        let mark = self.inner.feed.mark();
        let disk = transaction.read().await?;
        self.observe(disk.as_ref(), self.inner.clock.now()).await;
        let Some(disk) = disk else {
            return Ok(None);
        };
        let moved_on = disk.refresh_token().is_some_and(|token| token != spent);
        if moved_on && held.verdict(&disk).is_compatible() {
            self.inner.counters.reuse_recovered();
            tracing::info!("refresh token was spent by another process; adopted its successor");
            let snapshot = self.install(AuthSnapshot::new(disk), mark);
            self.emit(AuthEvent::Adopted);
            return Ok(Some(snapshot));
        }
        Ok(None)
    }

    pub(super) async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let transaction = self.inner.store.begin().await?;
        self.inner.counters.transaction(transaction.lock_wait());
        Ok(transaction)
    }

    /// What this manager's last transaction got for the held snapshot's refresh token, when it
    /// spent exactly that token and its result is still what the cache holds.
    fn successor_of(&self, held: &Held) -> Option<Arc<AuthSnapshot>> {
        let Held::Snapshot(held) = held else {
            return None;
        };
        let spent = fingerprint(held.document.refresh_token()?);
        let (last, successor) = self
            .inner
            .last_spent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let current = self.cached_snapshot()?;
        (last == spent && Arc::ptr_eq(&current, &successor)).then_some(successor)
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
pub(super) async fn finish_read_only(transaction: Box<dyn Transaction>) {
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
