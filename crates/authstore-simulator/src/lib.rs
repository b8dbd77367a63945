//! An embedded local OAuth token authority for tests, demos and benchmarks.
//!
//! A crate of its own: it imports nothing from the `authstore` library (it is the other side of
//! the wire), so a program that only shares a login never compiles it, and the library's
//! `simulator` feature re-exports it as `authstore::simulator` for those who want it there.
//!
//! [`Simulator`] serves plain HTTP on loopback and speaks the refresh
//! protocol the way Codex does:
//!
//! - `POST /oauth/token` with JSON
//!   `{"client_id":..,"grant_type":"refresh_token","refresh_token":..}`
//!   answers `200 {"id_token":..,"access_token":..,"refresh_token":..}`.
//!   Other grant types get `400 {"error":"unsupported_grant_type"}`; a body
//!   that is not such JSON gets `400 {"error":"invalid_request"}`; refused
//!   tokens get `401 {"error":{"code":..,"message":..}}` (see
//!   [`RefreshError`]).
//! - `POST /oauth/revoke` with `{"token":..}` answers `200 {}` and revokes
//!   the family of a known refresh token.
//! - `GET /healthz` answers `ok`. For standalone use there are also
//!   `POST /sim/login` (optional [`Identity`] JSON body; answers a new
//!   auth.json document) and `GET /sim/stats` (answers [`Stats`]).
//!
//! # Semantics
//!
//! - **Families.** [`Simulator::issue_login`] starts a login lineage (a
//!   *family*) and returns its first tokens.
//! - **Rotation.** Each refresh token is good for exactly one refresh: using
//!   the family's current token returns a new one and spends the old one.
//!   With [`SimulatorConfig::rotate_refresh_tokens`] off, the refresh token
//!   stays valid and is left out of responses.
//! - **Reuse detection.** Presenting a spent token answers
//!   `refresh_token_reused`. With [`SimulatorConfig::family_revocation`]
//!   (the default) this also revokes the family, so its current token then
//!   answers `refresh_token_invalidated`.
//! - **Reuse interval.** Within [`SimulatorConfig::reuse_interval`] of being
//!   spent, a token is still accepted and answered with the very successor
//!   tokens it was first exchanged for (Auth0-style leeway).
//! - **Expiry.** Optional [`SimulatorConfig::refresh_token_lifetime`]
//!   (`refresh_token_expired`); id and access tokens carry an `exp` of
//!   now + [`SimulatorConfig::access_token_lifetime`].
//! - **Tokens.** Id and access tokens are unsigned JWTs (`alg: none`) with
//!   `exp`, `iat`, a unique `jti`, `email`, the
//!   `https://api.openai.com/auth` claims (`chatgpt_account_id`,
//!   `chatgpt_user_id`, `user_id`, `chatgpt_plan_type`) and
//!   `https://api.openai.com/profile`; claims for absent [`Identity`] fields
//!   are left out. Refresh tokens are opaque `rt_<family>_<seq>_<hex>`
//!   strings that never repeat.
//! - **Faults.** [`Simulator::set_fault`] injects latency, error statuses,
//!   scripted error codes, connection resets, garbage bodies or hangs into
//!   refresh requests, persistently or for the next N requests
//!   ([`Fault::FailNext`]). A [`RefreshHook`] runs before each refresh is
//!   processed and may change its outcome.
//! - **Accounting.** Counters ([`Simulator::stats`]), every request's method
//!   and target ([`Simulator::requests`]), every presented refresh token in
//!   arrival order, and the families' current tokens, so tests can
//!   assert that each refresh token was spent exactly once.
//!
//! The server is a deliberately small HTTP/1.1 implementation (keep-alive,
//! `Content-Length` bodies) on a [`tokio::net::TcpListener`] rather than a
//! framework, because faults such as resets and hangs need direct control of
//! the socket. It runs on the tokio runtime that called
//! [`Simulator::start`] and stops on [`Simulator::shutdown`] or when the last
//! handle is dropped.
//!
//! Token strings are secrets even here: neither logs (`tracing` events carry
//! families, counts and codes only) nor `Debug` output show them.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use authstore_simulator::{Fault, Identity, Simulator, SimulatorConfig};
//!
//! let sim = Simulator::start(SimulatorConfig::default()).await?;
//! let auth = sim.auth_json(&Identity::new("acct-1", "user-1"));
//! // Point the code under test at sim.token_url() and auth ...
//! sim.set_fault(Fault::next(1, Fault::Status(503)));
//! // ... then check that the token was spent exactly once.
//! assert_eq!(sim.reuse_rejections(), 0);
//! # let _ = auth;
//! # Ok(())
//! # }
//! ```

mod authority;
mod http;
mod server;
mod tokens;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use authority::{Identity, IssuedTokens, RefreshError};
pub use server::{Fault, RefreshEvent, RefreshHook, Stats};

use authority::{Authority, Policy};
use server::Shared;

/// How the authority behaves. Start from [`SimulatorConfig::default()`].
#[derive(Clone)]
pub struct SimulatorConfig {
    /// Where to listen; default `127.0.0.1:0` (an ephemeral port).
    pub addr: SocketAddr,
    /// Issue a new refresh token on every refresh (default `true`). When
    /// `false`, the presented token stays valid and responses omit
    /// `refresh_token`.
    pub rotate_refresh_tokens: bool,
    /// Revoke the whole family when a spent token is presented (default
    /// `true`).
    pub family_revocation: bool,
    /// How long a spent token is still accepted, answered with the successor
    /// it was first exchanged for (default zero: never).
    pub reuse_interval: Duration,
    /// How long refresh tokens stay usable after being issued (default
    /// `None`: forever).
    pub refresh_token_lifetime: Option<Duration>,
    /// Lifetime of id and access tokens, i.e. their `exp` (default one hour).
    pub access_token_lifetime: Duration,
    /// Hook run for every refresh request; see [`RefreshHook`].
    pub on_refresh: Option<RefreshHook>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            rotate_refresh_tokens: true,
            family_revocation: true,
            reuse_interval: Duration::ZERO,
            refresh_token_lifetime: None,
            access_token_lifetime: Duration::from_secs(3600),
            on_refresh: None,
        }
    }
}

impl fmt::Debug for SimulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatorConfig")
            .field("addr", &self.addr)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field("family_revocation", &self.family_revocation)
            .field("reuse_interval", &self.reuse_interval)
            .field("refresh_token_lifetime", &self.refresh_token_lifetime)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .field("on_refresh", &self.on_refresh.is_some())
            .finish()
    }
}

/// Handle to a running token authority. Cheap to clone; the server stops on
/// [`shutdown`](Self::shutdown) or when the last handle is dropped. A
/// [`RefreshHook`] that captures a handle keeps the server alive until
/// `shutdown`; capture a [`WeakSimulator`] instead.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

/// A handle that does not keep the server running; see
/// [`Simulator::downgrade`].
#[derive(Clone)]
pub struct WeakSimulator {
    inner: Weak<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// Dropping it (with the last handle) also stops the server.
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Simulator {
    /// Binds [`SimulatorConfig::addr`] and serves on the current tokio
    /// runtime.
    pub async fn start(config: SimulatorConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let authority = Authority::new(Policy {
            rotate_refresh_tokens: config.rotate_refresh_tokens,
            family_revocation: config.family_revocation,
            reuse_interval: config.reuse_interval,
            refresh_token_lifetime: config.refresh_token_lifetime,
            access_token_lifetime: config.access_token_lifetime,
        });
        let shared = Arc::new(Shared::new(authority, config.on_refresh));
        let (shutdown, signal) = watch::channel(false);
        let task = tokio::spawn(server::run(listener, Arc::clone(&shared), signal));
        tracing::debug!(%addr, "token authority listening");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                addr,
                shutdown,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Stops the server and waits for it: the port is closed and open
    /// connections (hung ones included) are dropped. Also clears the hook.
    /// Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shared.lock().hook = None;
        self.inner.shutdown.send_replace(true);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// A handle that does not keep the server alive.
    pub fn downgrade(&self) -> WeakSimulator {
        WeakSimulator {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// `{base_url}/oauth/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base_url())
    }

    /// `{base_url}/oauth/revoke`.
    pub fn revoke_url(&self) -> String {
        format!("{}/oauth/revoke", self.base_url())
    }

    /// Starts a new family for `identity` and returns its first tokens.
    pub fn issue_login(&self, identity: &Identity) -> IssuedTokens {
        self.inner.shared.lock().authority.issue_login(identity)
    }

    /// Starts a new family and returns it as a Codex-shaped auth.json
    /// document (see [`IssuedTokens::to_auth_json`]).
    pub fn auth_json(&self, identity: &Identity) -> Value {
        self.issue_login(identity).to_auth_json()
    }

    /// Refreshes out of band, as another client would, with the same rules
    /// as the token endpoint, but without faults, hook or accounting. When
    /// rotation is off, the returned refresh token is the presented one.
    pub fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens, RefreshError> {
        let refreshed = self.inner.shared.lock().authority.refresh(refresh_token)?;
        Ok(refreshed.tokens)
    }

    /// Revokes a family as the revoke endpoint would; returns whether it was
    /// active.
    pub fn revoke_family(&self, family: u64) -> bool {
        self.inner.shared.lock().authority.revoke_family(family)
    }

    /// Sets the fault for the following refresh requests
    /// ([`Fault::None`] clears it).
    pub fn set_fault(&self, fault: Fault) {
        self.inner.shared.lock().fault = fault;
    }

    /// The fault currently in force ([`Fault::FailNext`] counts down and
    /// reverts to [`Fault::None`]).
    pub fn fault(&self) -> Fault {
        self.inner.shared.lock().fault.clone()
    }

    /// Replaces the refresh hook.
    pub fn set_on_refresh(&self, hook: Option<RefreshHook>) {
        self.inner.shared.lock().hook = hook;
    }

    /// Changes the lifetime of id and access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.inner
            .shared
            .lock()
            .authority
            .policy
            .access_token_lifetime = lifetime;
    }

    /// A snapshot of all counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats()
    }

    /// `POST /oauth/token` requests so far, well-formed or not.
    pub fn refresh_calls(&self) -> u64 {
        self.stats().refresh_calls
    }

    /// Refreshes answered with tokens.
    pub fn successful_refreshes(&self) -> u64 {
        self.stats().successful_refreshes
    }

    /// Refreshes refused as `refresh_token_reused` by reuse detection
    /// (scripted [`Fault::Code`] answers not included).
    pub fn reuse_rejections(&self) -> u64 {
        self.stats().reuse_rejections
    }

    /// `POST /oauth/revoke` requests so far.
    pub fn revoke_calls(&self) -> u64 {
        self.stats().revoke_calls
    }

    /// Families revoked so far, for any reason.
    pub fn families_revoked(&self) -> u64 {
        self.stats().families_revoked
    }

    /// The most HTTP requests ever handled at the same time.
    pub fn max_concurrent_requests(&self) -> u64 {
        self.stats().max_concurrent_requests
    }

    /// Every refresh token presented to the token endpoint in well-formed
    /// requests, in arrival order (faulted requests included).
    pub fn presented_refresh_tokens(&self) -> Vec<String> {
        let state = self.inner.shared.lock();
        state
            .events
            .iter()
            .map(|e| e.refresh_token.clone())
            .collect()
    }

    /// Every well-formed refresh request, in arrival order.
    pub fn refresh_events(&self) -> Vec<RefreshEvent> {
        self.inner.shared.lock().events.clone()
    }

    /// Every request the server read whole, any route, as `(method, target)` (the target with
    /// its query string) in arrival order: what a client under test asked of this authority.
    /// Bodies, where tokens travel, are not kept here.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.inner.shared.lock().requests.clone()
    }

    /// The family's latest refresh token (also when the family is revoked).
    pub fn current_refresh_token(&self, family: u64) -> Option<String> {
        self.inner
            .shared
            .lock()
            .authority
            .current_refresh_token(family)
    }

    /// The family that issued `refresh_token`, spent or not.
    pub fn family_of(&self, refresh_token: &str) -> Option<u64> {
        self.inner.shared.lock().authority.family_of(refresh_token)
    }

    /// Whether the family exists and is revoked.
    pub fn is_family_revoked(&self, family: u64) -> bool {
        self.inner.shared.lock().authority.is_revoked(family)
    }
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.inner.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WeakSimulator {
    /// The handle, if the simulator still has a strong handle somewhere.
    pub fn upgrade(&self) -> Option<Simulator> {
        self.inner.upgrade().map(|inner| Simulator { inner })
    }
}

impl fmt::Debug for WeakSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSimulator").finish_non_exhaustive()
    }
}

/// Runs a standalone authority: prints `listening on http://127.0.0.1:PORT`
/// to stdout, then serves until Ctrl-C. Use `POST /sim/login` to get an
/// auth.json document.
pub async fn serve_until_ctrl_c(config: SimulatorConfig) -> io::Result<()> {
    let simulator = Simulator::start(config).await?;
    println!("listening on {}", simulator.base_url());
    let result = tokio::signal::ctrl_c().await;
    simulator.shutdown().await;
    result
}
