//! `authstore demo`: the race between processes that share one `auth.json`, and its cure, shown
//! side by side on the embedded token authority.
//!
//! For each strategy the demo starts a fresh token authority on loopback (rotating refresh
//! tokens, revoking the whole family when a spent one comes back), logs in on a fresh temporary
//! Codex home, and runs N worker processes of this very binary (the hidden `demo-worker`
//! command), each a long-lived session asking for credentials in a loop while short-lived access
//! tokens expire many times. The parent then reads the authority's counters and the workers'
//! reports and prints one row per strategy.
//!
//! - [`run`](mod@run): the orchestration (authority, homes, processes, the table);
//! - [`worker`](mod@worker): the worker process: one session, its request loop, its report;
//! - [`baselines`]: the `naive` and `reread` strategies, **baselines for comparison only**: they
//!   reproduce how Codex shared the file before and after March 2026 and are not part of the
//!   library;
//! - `coordinated` is the library itself: [`authstore::AuthManager::auth`].
#![cfg(feature = "simulator")]

mod baselines;
mod histogram;
mod run;
mod worker;

use serde::{Deserialize, Serialize};

pub(crate) use run::{Settings, run};
pub(crate) use worker::{Mode, WorkerConfig, WorkerEnv, run as run_worker};

/// How the sessions of one run share `auth.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Strategy {
    /// Baseline: refresh from the process's own cached copy; no re-read, no lock.
    Naive,
    /// Baseline: re-read and adopt compatible newer auth before refreshing; no lock.
    Reread,
    /// authstore: the cross-process refresh transaction.
    Coordinated,
}

impl Strategy {
    /// All of them, in the order the demo runs them.
    pub(crate) const ALL: [Strategy; 3] =
        [Strategy::Naive, Strategy::Reread, Strategy::Coordinated];

    /// The name used on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Reread => "reread",
            Strategy::Coordinated => "coordinated",
        }
    }
}
