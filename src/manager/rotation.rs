//! A refresh token presented by a client for rotation ([`AuthManager::rotate`], what the broker
//! asks for every refresh a Codex process sends it), and the rotation record every manager keeps
//! up to date ([`rotations`](crate::rotations)).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::transaction::{Held, finish_read_only};
use super::{AuthManager, AuthSnapshot, RefreshOutcome};
use crate::document::AuthDocument;
use crate::error::Result;
use crate::policy::RefreshReason;
use crate::rotations::rotation_between;
use crate::secret::Secret;

/// What [`AuthManager::rotate`] found the presented refresh token to be.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Rotation {
    /// The store's current refresh token: the refresh transaction ran for it, and these are
    /// the credentials it ended with (spent once however many clients presented it at once,
    /// or adopted from another process that got there first).
    Current {
        /// The credentials to answer with.
        snapshot: Arc<AuthSnapshot>,
        /// What the transaction did.
        outcome: RefreshOutcome,
    },
    /// A refresh token of this login that was rotated away within the reuse interval: the
    /// store's current credentials of the same account and user (refreshed first if they were
    /// stale). Nothing was spent for it.
    RotatedAway {
        /// The credentials to answer with.
        snapshot: Arc<AuthSnapshot>,
    },
    /// Neither: another home's token, an old login's, or one this home never held. The caller
    /// must not answer it with this store's credentials.
    Unknown,
}

impl AuthManager {
    /// A client presents `presented` to be rotated, as a token endpoint receives it: the
    /// store's current refresh token goes through the refresh transaction
    /// ([`Rotation::Current`]; N clients presenting it at once cost one call to the token
    /// endpoint), a token of this login rotated away no longer than `reuse_interval` ago is
    /// answered with what replaced it ([`Rotation::RotatedAway`], no call), and anything else
    /// is [`Rotation::Unknown`]. `Duration::ZERO` turns the reuse interval off.
    ///
    /// Unlike [`AuthManager::auth`], this does not hold the manager to the identity it read
    /// first: the presented token names the login. Another account's or user's credentials in
    /// the store are never handed out for it.
    ///
    /// # Errors
    /// As [`AuthManager::auth`]; a store that changed to another identity while the
    /// transaction waited for the lock is
    /// [`ReloginReason::IdentityChanged`](crate::error::ReloginReason::IdentityChanged), and one
    /// that was logged out meanwhile is [`NotLoggedIn`](crate::ErrorKind::NotLoggedIn).
    pub async fn rotate(&self, presented: &Secret, reuse_interval: Duration) -> Result<Rotation> {
        let now = self.inner.clock.now();
        let disk = self.inner.store.read().await?;
        self.observe(disk.as_ref(), now).await;
        if let Some(answer) = self
            .rotation_of(presented, disk, reuse_interval, now)
            .await?
        {
            return Ok(answer);
        }
        // Not in the record yet: a writer holding the lock records the token it spends before
        // it sends it, and a rotation made outside the lock (Codex refreshes first, then takes
        // the lock to commit) is committed under it. Inside the lock, both are settled.
        let mut transaction = self.begin().await?;
        let disk = transaction.read().await;
        finish_read_only(transaction).await;
        let disk = disk?;
        self.observe(disk.as_ref(), now).await;
        Ok(self
            .rotation_of(presented, disk, reuse_interval, now)
            .await?
            .unwrap_or(Rotation::Unknown))
    }

    /// [`AuthManager::rotate`] for what the store holds, `disk`; `None` when the presented token
    /// is neither current nor recorded.
    async fn rotation_of(
        &self,
        presented: &Secret,
        disk: Option<AuthDocument>,
        reuse_interval: Duration,
        now: SystemTime,
    ) -> Result<Option<Rotation>> {
        let Some(disk) = disk.filter(|document| document.tokens.is_some()) else {
            return Ok(Some(Rotation::Unknown));
        };
        if disk.refresh_token() == Some(presented) {
            let held = Arc::new(AuthSnapshot::new(disk));
            let (snapshot, outcome) = self
                .refresh_held(Held::Snapshot(held), RefreshReason::Rotation)
                .await?;
            return Ok(Some(Rotation::Current { snapshot, outcome }));
        }
        let Some(record) = &self.inner.rotations else {
            return Ok(None);
        };
        if !record.rotated_away(presented, &disk, now, reuse_interval) {
            return Ok(None);
        }
        let current = Arc::new(AuthSnapshot::new(disk));
        let snapshot = if current.is_stale(now, &self.inner.freshness) {
            // What replaced the token is itself about to expire: the client asked for tokens
            // to use, so refresh them (once, like any stale credentials).
            let (snapshot, _) = self
                .refresh_held(Held::Snapshot(current), RefreshReason::Proactive)
                .await?;
            snapshot
        } else {
            current
        };
        Ok(Some(Rotation::RotatedAway { snapshot }))
    }

    /// Notes what a read of the store found: when it is a rotation of what this manager saw
    /// before (another process, or Codex itself, moved the login on), the token rotated away
    /// goes into the record. Best effort.
    pub(super) async fn observe(&self, disk: Option<&AuthDocument>, now: SystemTime) {
        let before = {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *seen, disk.cloned())
        };
        let (Some(before), Some(after), Some(record)) = (before, disk, &self.inner.rotations)
        else {
            return;
        };
        let Some(token) = rotation_between(&before, after) else {
            return;
        };
        // When the token stopped being current: the successor's last_refresh when it says so
        // (never later than now), else now, when it was seen.
        let at = after
            .last_refresh_time()
            .filter(|at| *at <= now)
            .unwrap_or(now);
        if let Err(error) = record.record(token, &before.identity(), at).await {
            tracing::debug!(error = %error.report(), "could not record a rotation seen in the store");
        }
    }

    /// Records the token a transaction is about to spend (SPEC §9: before it is sent, so that
    /// its successor is never visible before the entry). Best effort: a home where the record
    /// cannot be written still refreshes.
    pub(super) async fn record_spend(&self, base: &AuthDocument, token: &Secret, now: SystemTime) {
        let Some(record) = &self.inner.rotations else {
            return;
        };
        if let Err(error) = record.record(token, &base.identity(), now).await {
            tracing::debug!(error = %error.report(), "could not record the refresh token being spent");
        }
    }

    /// Remembers `document` as what the store holds, after this manager wrote it: its own
    /// rotation is already recorded, and must not be seen again as another's.
    pub(super) fn saw(&self, document: &AuthDocument) {
        *self.inner.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(document.clone());
    }
}

impl AuthManager {
    /// Reads the store after every change made to it, until the future is dropped, so that a
    /// rotation another process makes (Codex refreshing by itself, without the broker) is in
    /// the record before a client presents the token it replaced. For a long-running token
    /// endpoint in front of the home; it waits on the store's change feed, and reads only when
    /// the feed says something changed.
    pub async fn follow_rotations(&self) {
        loop {
            let mark = self.inner.feed.mark();
            self.look_for_rotation().await;
            self.inner.feed.wait(&mark).await;
        }
    }

    /// Reads the store once and records a rotation since this manager's last read, if there
    /// was one. A token endpoint calls it before it answers its first request, so that what
    /// the home holds when it starts is what later rotations are seen against.
    pub async fn look_for_rotation(&self) {
        match self.inner.store.read().await {
            Ok(disk) => self.observe(disk.as_ref(), self.inner.clock.now()).await,
            Err(error) => {
                tracing::debug!(error = %error.report(), "could not read the store to follow its rotations");
            }
        }
    }
}
