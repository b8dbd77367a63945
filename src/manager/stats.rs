//! Outcome counters of a manager. Relaxed atomics: they are statistics, not synchronization.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What a manager did since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Refreshes that reached the authority and were written.
    pub refreshed: u64,
    /// Newer credentials written by another process, adopted without a network call.
    pub adopted: u64,
    /// `refresh_token_reused` answers recovered by adopting the successor from disk.
    pub reuse_recovered: u64,
    /// Permanent failures and identity changes returned as re-login required.
    pub relogin_required: u64,
    /// Transient refresh failures.
    pub transient_failures: u64,
    /// Transactions started (each one held `auth.lock`).
    pub transactions: u64,
    /// Total time spent waiting for `auth.lock`, in microseconds.
    pub lock_wait_micros: u64,
    /// Times `auth.json` was read and parsed.
    pub disk_reads: u64,
    /// Times the store was asked whether it changed (a `stat` of `auth.json` when no directory
    /// watch is available; 0 with a watch).
    pub metadata_checks: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    refreshed: AtomicU64,
    adopted: AtomicU64,
    reuse_recovered: AtomicU64,
    relogin_required: AtomicU64,
    transient_failures: AtomicU64,
    transactions: AtomicU64,
    lock_wait_micros: AtomicU64,
    disk_reads: AtomicU64,
}

impl Counters {
    pub(super) fn refreshed(&self) {
        self.refreshed.fetch_add(1, Relaxed);
    }
    pub(super) fn adopted(&self) {
        self.adopted.fetch_add(1, Relaxed);
    }
    pub(super) fn reuse_recovered(&self) {
        self.reuse_recovered.fetch_add(1, Relaxed);
    }
    pub(super) fn relogin_required(&self) {
        self.relogin_required.fetch_add(1, Relaxed);
    }
    pub(super) fn transient_failure(&self) {
        self.transient_failures.fetch_add(1, Relaxed);
    }
    pub(super) fn transaction(&self, waited: Duration) {
        self.transactions.fetch_add(1, Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.lock_wait_micros.fetch_add(micros, Relaxed);
    }
    pub(super) fn disk_read(&self) {
        self.disk_reads.fetch_add(1, Relaxed);
    }
    /// The counters, with `metadata_checks` as the change feed counted them.
    pub(super) fn snapshot(&self, metadata_checks: u64) -> Stats {
        Stats {
            refreshed: self.refreshed.load(Relaxed),
            adopted: self.adopted.load(Relaxed),
            reuse_recovered: self.reuse_recovered.load(Relaxed),
            relogin_required: self.relogin_required.load(Relaxed),
            transient_failures: self.transient_failures.load(Relaxed),
            transactions: self.transactions.load(Relaxed),
            lock_wait_micros: self.lock_wait_micros.load(Relaxed),
            disk_reads: self.disk_reads.load(Relaxed),
            metadata_checks,
        }
    }
}
