//! [`ManagerOptions`]: how a manager is set up.

use std::time::Duration;

use crate::authority::AuthorityConfig;
use crate::clock::Clock;
use crate::document::Freshness;
use crate::store::StoreOptions;

/// How a manager is set up. Every setter states its default.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub(super) freshness: Freshness,
    pub(super) store: StoreOptions,
    pub(super) authority: AuthorityConfig,
    pub(super) clock: Clock,
    pub(super) watch: bool,
    pub(super) reuse_settle: Duration,
    pub(super) revalidate: Duration,
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

    /// Whether to watch for changes: the directory of `auth.json` (else: one `stat` per call),
    /// the Secret Service's signals for a keyring item on Linux (else: the item polled every
    /// [`revalidate`](Self::revalidate)). Default: true.
    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// With a store that is not watched (a shared store, a keyring item on macOS and Windows),
    /// how long a fresh cached token is trusted before the store is asked again for changes
    /// made elsewhere. Default: 1 s.
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
