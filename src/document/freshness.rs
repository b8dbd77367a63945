//! When tokens need a refresh: a pure function of the token's times and an injected `now`.

use std::time::{Duration, SystemTime};

/// The staleness rule of the spec: the access token's `exp` within `refresh_window` of now;
/// when `exp` cannot be read, `last_refresh` older than `refresh_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// How long before `exp` a token counts as stale. Default: 5 minutes.
    pub refresh_window: Duration,
    /// How old `last_refresh` may get when `exp` is unknown. Default: 8 days.
    pub refresh_interval: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            refresh_window: Duration::from_secs(5 * 60),
            refresh_interval: Duration::from_secs(8 * 24 * 60 * 60),
        }
    }
}

impl Freshness {
    /// Whether tokens with this expiry and last refresh are stale at `now`. With neither known,
    /// the age of the tokens cannot be told and they are stale.
    ///
    /// Any durations are accepted: a window reaching past the end of time makes every token
    /// stale, an interval reaching past it makes no `last_refresh` too old (never a panic).
    pub fn is_stale(
        &self,
        expires_at: Option<SystemTime>,
        last_refresh: Option<SystemTime>,
        now: SystemTime,
    ) -> bool {
        match (expires_at, last_refresh) {
            (Some(exp), _) => now
                .checked_add(self.refresh_window)
                .is_none_or(|edge| edge >= exp),
            (None, Some(refreshed)) => refreshed
                .checked_add(self.refresh_interval)
                .is_some_and(|due| due <= now),
            (None, None) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn expiry_decides_when_known() {
        let f = Freshness::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let old = Some(now - Duration::from_secs(30 * 86_400));
        assert!(!f.is_stale(Some(now + Duration::from_secs(301)), old, now));
        assert!(f.is_stale(Some(now + Duration::from_secs(300)), None, now));
        assert!(f.is_stale(Some(now - Duration::from_secs(1)), None, now));
    }

    #[test]
    fn last_refresh_decides_without_expiry() {
        let f = Freshness::default();
        let now = UNIX_EPOCH + Duration::from_secs(10_000_000);
        assert!(!f.is_stale(None, Some(now - Duration::from_secs(7 * 86_400)), now));
        assert!(f.is_stale(None, Some(now - Duration::from_secs(8 * 86_400)), now));
        assert!(f.is_stale(None, None, now));
    }

    #[test]
    fn durations_past_the_end_of_time_do_not_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let f = Freshness {
            refresh_window: Duration::MAX,
            refresh_interval: Duration::MAX,
        };
        assert!(f.is_stale(Some(now + Duration::from_secs(86_400)), None, now));
        assert!(!f.is_stale(None, Some(now - Duration::from_secs(1)), now));
        let zero = Freshness {
            refresh_window: Duration::ZERO,
            refresh_interval: Duration::ZERO,
        };
        assert!(!zero.is_stale(Some(now + Duration::from_secs(1)), None, now));
        assert!(zero.is_stale(None, Some(now), now));
    }
}
