#![cfg(all(unix, feature = "codex-interop"))] // Unix only: Codex runs in a Linux network namespace
//! Interoperability with the real Codex CLI (`@openai/codex` 0.171.0): real Codex processes
//! beside real `authstore` processes on one `CODEX_HOME`, against the embedded token authority
//! (family revocation on reuse).
//!
//! Run it with `bash scripts/codex-interop.sh`, which installs Codex from the npm registry and
//! runs this suite inside one new network namespace that has nothing but loopback. Every test
//! first checks that it is in such a namespace and that `CODEX_BIN` names the Codex binary, and
//! refuses to start Codex otherwise: Codex tries to reach its service at start-up, and no test may
//! send traffic off this machine. The token authority runs in this process, on 127.0.0.1, inside
//! the same namespace.
//!
//! What Codex 0.171.0 does (see SPEC §4): on a stale token it calls the token endpoint first,
//! without any lock, then takes `auth.lock` (blocking), re-reads `auth.json`, and writes only when
//! the file did not change meanwhile (under a non-blocking `auth.json.lock`). `codex features list`
//! makes exactly one refresh on a stale token and none on a fresh one; `codex login status` only
//! reads.
//!
//! - [`lab`]: the fixture: [`lab::Lab`], one Codex home beside the token authority, the check
//!   that this process is in a loopback-only network namespace, and the runners of Codex and
//!   authstore processes (an agent's events included);
//! - [`files`]: each reads what the other writes; Codex spends exactly the refresh token authstore
//!   wrote, and authstore makes no call on the tokens Codex just obtained;
//! - [`locking`]: a Codex refresh that wants to commit waits for authstore's transaction, and
//!   keeps the newer file authstore wrote meanwhile;
//! - [`races`]: Codex processes racing on a stale token spend it repeatedly unless authstore kept
//!   it fresh, and neither kind of process deadlocks the other;
//! - [`agent`]: with `authstore agent` running, Codex never calls the token endpoint over many
//!   token lifetimes;
//! - [`editors`]: `codex app-server` processes the way editor windows run them, with and without
//!   `authstore agent` or `authstore broker` beside them;
//! - [`broker`]: `authstore broker` as Codex's token endpoint: forced refreshes of app-servers
//!   and `codex exec` make at most one authority call per round and no reuse, and `authstore`
//!   processes pointed at it beside Codex finish without waiting for their own lock;
//! - [`keyring`]: Codex's keyring store and its encrypted secrets file (a Secret Service that
//!   the script starts inside the namespace): each reads what the other writes, and a race of
//!   forced refreshes, `codex exec` and `authstore token` through the broker makes at most one
//!   authority call per round and never an `auth.json`.
//!
//! authstore processes here send `client_id` [`lab::AUTHSTORE_CLIENT_ID`]
//! (`CODEX_APP_SERVER_LOGIN_CLIENT_ID`), so that every request the authority sees can be
//! attributed to Codex or to authstore. The figures each test prints (`figures: ...`) are
//! observations, not assertions.

mod agent;
mod broker;
mod editors;
mod files;
mod keyring;
mod lab;
mod locking;
mod races;
mod sandbox;
