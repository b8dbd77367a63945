//! `authstore demo`: the race between processes that share one `auth.json`, and its cure, shown
//! side by side on the embedded token authority.
//!
//! **This is the command line's code, not the library's.** Nothing here is exported by
//! `authstore` (the library) or should be copied from here: it uses the library the way any
//! program would.
//!
//! For each strategy the demo starts a fresh token authority on loopback (rotating refresh
//! tokens, revoking the whole family when a spent one comes back), logs in on a fresh temporary
//! Codex home, and runs N worker processes of this very binary (the hidden `demo-worker`
//! command), each a long-lived session asking for credentials in a loop while short-lived access
//! tokens expire many times. The parent then reads the authority's counters and the workers'
//! reports and prints one row per strategy. The multi-process benchmarks (`benches/`) run the
//! same workers.
//!
//! - [`run`](mod@run): the orchestration (authority, homes, processes, the table);
//! - [`worker`](mod@worker): the worker process: one session, its request loop, its report;
//! - [`protocol`](mod@protocol): what the parent and a worker say to each other (the
//!   `demo-worker` arguments, the start signal, the report), as serde types read strictly;
//!   public, for the benchmarks and the demo's tests, which start the same workers;
//! - [`baselines`]: the `naive` and `reread` strategies, **baselines for comparison only**: they
//!   reproduce how Codex shared the file before and after March 2026, deliberately unsafe (no
//!   lock), built from the library's pieces (an unlocked [`authstore::store::FileStore`], the
//!   decisions of [`authstore::policy`], the token client and its merge) so that only the
//!   missing coordination differs;
//! - `coordinated` is the library itself: [`authstore::AuthManager::auth`];
//! - [`command`](mod@command): the `demo` and `demo-worker` subcommands' arguments.

mod baselines;
pub(crate) mod command;
mod histogram;
pub mod protocol;
mod run;
mod worker;

pub(crate) use protocol::{Launch, Strategy};
pub(crate) use run::{Settings, run};
pub(crate) use worker::{WorkerConfig, WorkerEnv, run as run_worker};
