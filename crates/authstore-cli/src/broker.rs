//! `authstore broker`: a token endpoint for one Codex home, so that every refresh an unmodified
//! Codex makes (it sends them to `CODEX_REFRESH_TOKEN_URL_OVERRIDE`) goes through the refresh
//! transaction (SPEC §9).
//!
//! # What it answers
//!
//! `POST /oauth/token` with the refresh grant, as Codex sends it (JSON) or as RFC 6749 writes it
//! (form-encoded), is decided by [`AuthManager::rotate`]:
//!
//! * the store's current refresh token: the refresh transaction runs (one call to the upstream
//!   however many requests arrive at once; the others adopt its result), and the answer carries
//!   the new `id_token`, `access_token` and `refresh_token`;
//! * a refresh token of the same account and user that the home rotated away no longer than
//!   `--reuse-interval` ago (whoever rotated it: this broker, another authstore process, Codex
//!   itself; see [`authstore::rotations`]): the store's current tokens, no upstream call;
//! * anything else (another home's token, an old login's, another grant): forwarded to the
//!   upstream unchanged, and its answer passed back unchanged, which is what the client would
//!   have got without the broker. So is a request marked as coming from inside another authstore
//!   transaction ([`IN_TRANSACTION_HEADER`]): that process holds `auth.lock` and is spending the
//!   token itself, and running the transaction here would wait for its lock.
//!
//! * a sandbox's secret ([`authstore::sandboxes`]): the host's current access and id tokens
//!   (refreshed through the transaction when stale) with the same secret as the refresh token;
//!   a secret the home's registry does not hold: `invalid_grant` (401, the authority's shape),
//!   nothing sent upstream.
//!
//! `POST /oauth/revoke` (Codex's logout) is forwarded; of a sandbox's secret, it removes that
//! sandbox (its entry and its `auth.json`) and nothing else. `GET /authstore/broker` says who the
//! broker is (its home's [fingerprint](authstore::store::home_fingerprint) and pid, for
//! `status`; [`probe`]). Anything else is a 404, a malformed or
//! oversized body a 400, both in the OAuth error shape; none of them touches the store. The
//! upstream unreachable, slow or answering 5xx, a lock that stays held: a 502, 503 or 504 (Codex
//! keeps its tokens and retries on any status but 401); a refresh token the upstream rejected
//! for good: its status and error code, as the upstream sent them.
//!
//! # Trust
//!
//! By default the broker listens on loopback, where every local user's processes can reach it;
//! it hands out tokens only for a refresh token the caller already holds (the current one, or
//! one of the same login rotated away moments ago), so a local process learns nothing it could
//! not get by sending that token to the upstream itself. On another address (given explicitly,
//! with a warning) requests from peers that are not on loopback get no answer from the store
//! but a sandbox's: only a sandbox secret is answered there (the container's bridge), never the
//! host's refresh token, and nothing is forwarded.
//! The request bodies are secrets: they are never logged, and neither are the answers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authstore::authority::{
    self, AuthorityConfig, CLIENT_ID_ENV, DEFAULT_TOKEN_URL, IN_TRANSACTION_HEADER,
    MAX_ANSWER_BYTES,
};
use authstore::error::{Error, ErrorKind, ReloginReason};
use authstore::sandboxes;
use authstore::secret::Secret;
use authstore::store::StoreConfig;
use authstore::{AuthManager, AuthSnapshot, ManagerOptions, Rotation};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{Cli, exit};

mod activation;
mod holder;
pub(crate) mod probe;

/// Where the broker listens by default: loopback, on a port above Linux's ephemeral range
/// (32768-60999), so that no outgoing connection is ever handed it.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:61455";
/// The path of the token endpoint; the revoke endpoint is beside it.
pub(crate) const TOKEN_PATH: &str = "/oauth/token";
const REVOKE_PATH: &str = "/oauth/revoke";
/// A refresh request is a few hundred bytes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 512;
/// The longest reuse interval accepted: the record keeps rotations for an hour.
const MAX_REUSE_INTERVAL: u64 = 600;

/// Where the broker listens and where it sends what it does not answer itself: `authstore
/// broker`'s options, and `authstore agent --broker`'s.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// The address to listen on (port 0 picks a free one); loopback unless given. Under
    /// socket activation (LISTEN_FDS) the socket the service manager passes is used instead
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub(crate) listen: SocketAddr,

    /// The real token endpoint, where the broker's own refreshes and forwarded requests go
    #[arg(
        long,
        value_name = "URL",
        env = "AUTHSTORE_UPSTREAM_TOKEN_URL",
        default_value = DEFAULT_TOKEN_URL
    )]
    pub(crate) upstream: String,

    /// Seconds during which a refresh token this home rotated away is answered with the tokens
    /// that replaced it (0 turns it off)
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(crate) reuse_interval: u64,
}

impl Options {
    /// The store the broker serves, with the upstream as its token endpoint: the broker's own
    /// refreshes go there, never to `CODEX_REFRESH_TOKEN_URL_OVERRIDE`, which names the broker
    /// itself once the user's session points Codex at it.
    pub(crate) fn store_config(&self, cli: &Cli) -> Result<StoreConfig, Error> {
        if self.reuse_interval > MAX_REUSE_INTERVAL {
            return Err(Error::invalid_input(format!(
                "--reuse-interval {}: at most {MAX_REUSE_INTERVAL} seconds",
                self.reuse_interval
            )));
        }
        authority::check_token_url(&self.upstream)
            .map_err(|error| Error::invalid_input(format!("--upstream: {error}")))?;
        let client_id = std::env::var(CLIENT_ID_ENV)
            .ok()
            .filter(|id| !id.is_empty());
        Ok(cli
            .store_config()?
            .token_url(Some(self.upstream.clone()))
            .client_id(client_id))
    }
}

/// A bound listening socket, and its address.
pub(crate) struct Listening {
    listener: TcpListener,
    address: SocketAddr,
}

impl Listening {
    /// The token endpoint's URL, as Codex is to be pointed at it.
    pub(crate) fn url(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.address)
    }
}

/// Binds `options.listen` (or takes the socket a service manager passed), refusing an upstream
/// at the same address and warning about one off loopback.
pub(crate) async fn listen(options: &Options) -> Result<Listening, Error> {
    let listener = match activation::passed_listener()? {
        Some(listener) => listener,
        None => bind(options.listen).await?,
    };
    let address = listener
        .local_addr()
        .map_err(|e| Error::invalid_input(format!("cannot listen on {}: {e}", options.listen)))?;
    refuse_itself(&options.upstream, address)?;
    if !address.ip().is_loopback() {
        eprintln!(
            "authstore: warning: listening on {address}, which is not loopback: clients that are \
             not on this machine's loopback get no tokens from this home"
        );
    }
    Ok(Listening { listener, address })
}

/// What every request handler shares.
pub(crate) struct Broker {
    manager: AuthManager,
    /// The home's fingerprint, which `status` compares with its own.
    home: String,
    upstream: AuthorityConfig,
    http: reqwest::Client,
    reuse_interval: Duration,
    /// The home's sandboxes, whose secrets it answers (none for a store with no local home).
    sandboxes: Option<sandboxes::Registry>,
}

pub(crate) async fn run(cli: &Cli, options: &Options) -> Result<u8, Error> {
    let config = options.store_config(cli)?;
    let listening = listen(options).await?;
    let manager = config.manager(ManagerOptions::default()).await?;
    let home = cli.file_store().ok();
    let broker = Broker::new(manager, options, home.as_ref().map(|h| h.home())).await?;
    println!("listening on {}", listening.url());
    // The first line is how a caller learns the port: it must not wait in a buffer.
    std::io::Write::flush(&mut std::io::stdout()).ok();
    tokio::select! {
        () = broker.serve(listening) => {}
        () = super::agent::shutdown_signal() => {}
    }
    Ok(exit::SUCCESS)
}

impl Broker {
    /// A broker answering from `manager`'s store (whose token endpoint is the upstream). What
    /// the home holds now is read first: it is what the first rotation made elsewhere is seen
    /// against.
    /// `sandbox_home`: the Codex home whose sandbox registry it answers (the store's own local
    /// file's home when `None`; a keyring store has none).
    pub(crate) async fn new(
        manager: AuthManager,
        options: &Options,
        sandbox_home: Option<&std::path::Path>,
    ) -> Result<Arc<Self>, Error> {
        let upstream = manager.authority().clone();
        manager.look_for_rotation().await;
        let home = manager
            .local_file()
            .map(|file| authstore::store::home_fingerprint(file.home()))
            .unwrap_or_default();
        let sandboxes = sandbox_home
            .or_else(|| manager.local_file().map(|file| file.home()))
            .map(sandboxes::Registry::in_home);
        Ok(Arc::new(Self {
            home,
            sandboxes,
            http: forwarding_client(&upstream)?,
            manager,
            upstream,
            reuse_interval: Duration::from_secs(options.reuse_interval),
        }))
    }

    /// Serves `listening` until the future is dropped, following the store's rotations
    /// meanwhile.
    pub(crate) async fn serve(self: Arc<Self>, listening: Listening) {
        tracing::info!(address = %listening.address, upstream = %self.upstream.url(), "broker ready");
        let follower = self.manager.clone();
        let follow = tokio::spawn(async move { follower.follow_rotations().await });
        // Aborted with the future: a broker that stops also stops following.
        let _follow = AbortOnDrop(follow);
        accept(listening.listener, self).await;
    }
}

/// Stops a task when dropped: what follows the store ends with the broker, and the agent's
/// broker with the agent.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address).await.map_err(|error| {
        let hint = match error.kind() {
            std::io::ErrorKind::AddrInUse => {
                ": another process holds it (`authstore status` names a broker of this home)"
            }
            _ => "",
        };
        Error::invalid_input(format!("cannot listen on {address}: {error}{hint}"))
    })
}

/// A broker whose upstream is itself would send every refresh back to itself.
fn refuse_itself(upstream: &str, address: SocketAddr) -> Result<(), Error> {
    let Ok(url) = reqwest::Url::parse(upstream) else {
        return Ok(());
    };
    let port = url.port_or_known_default();
    let host = url.host_str().unwrap_or_default();
    let host_is_here = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified() || ip == address.ip(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if host_is_here && port == Some(address.port()) {
        return Err(Error::invalid_input(format!(
            "--upstream {upstream} is this broker's own address: give the real token endpoint"
        )));
    }
    Ok(())
}

fn forwarding_client(upstream: &AuthorityConfig) -> Result<reqwest::Client, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if authority::is_loopback_url(upstream.url()) {
        builder = builder.no_proxy();
    }
    builder
        .timeout(upstream.timeout())
        .connect_timeout(upstream.timeout())
        .user_agent(concat!("authstore/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::invalid_input(format!("cannot build the HTTP client: {e}")))
}

/// Accepts connections until the future is dropped; each is served on a task of its own.
async fn accept(listener: TcpListener, broker: Arc<Broker>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, a connection reset before it was accepted: the next one
                // may do. Paced, so that a persistent failure does not spin.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let broker = broker.clone();
                async move { Ok::<_, std::convert::Infallible>(broker.handle(peer, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// A refresh request, as read from its body.
enum Grant {
    /// `grant_type=refresh_token` with a refresh token.
    Refresh(Secret),
    /// Another grant: not the broker's to answer.
    Other,
}

impl Broker {
    async fn handle(&self, peer: SocketAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        if request.method() == Method::GET && path == probe::IDENTITY_PATH {
            return json_response(
                StatusCode::OK,
                &json!({
                    "authstore_broker": env!("CARGO_PKG_VERSION"),
                    "home": self.home,
                    "pid": std::process::id(),
                }),
            );
        }
        let token = match (request.method(), path.as_str()) {
            (&Method::POST, TOKEN_PATH) => true,
            (&Method::POST, REVOKE_PATH) => false,
            _ => {
                return oauth_error(
                    StatusCode::NOT_FOUND,
                    "invalid_request",
                    "no such endpoint: the broker answers POST /oauth/token and /oauth/revoke",
                );
            }
        };
        let in_transaction = request.headers().contains_key(IN_TRANSACTION_HEADER);
        let content_type = request.headers().get(CONTENT_TYPE).cloned();
        let body = match Limited::new(request.into_body(), MAX_REQUEST_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body is too long or could not be read",
                );
            }
        };
        // A dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d.
        let off_loopback = !peer.ip().to_canonical().is_loopback();
        if !token {
            if let Some(secret) =
                read_revoked(content_type.as_ref(), &body).filter(sandboxes::is_sandbox_secret)
            {
                return self.revoke_sandbox(&secret).await;
            }
            if off_loopback {
                return refused_off_loopback(peer);
            }
            tracing::info!("forwarding a revocation");
            let url = self.upstream.revoke_url();
            return self.forward(&url, content_type, body).await;
        }
        let grant = match read_grant(content_type.as_ref(), &body) {
            Ok(grant) => grant,
            Err(_) if off_loopback => return refused_off_loopback(peer),
            Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
        };
        match grant {
            // A sandbox's secret, from wherever its Codex runs (a container's bridge, say).
            Grant::Refresh(presented) if sandboxes::is_sandbox_secret(&presented) => {
                self.refresh_sandbox(&presented).await
            }
            // Only this machine's processes are answered from the store (and forwarded).
            _ if off_loopback => refused_off_loopback(peer),
            Grant::Refresh(_) if in_transaction => {
                tracing::info!("forwarding a refresh made inside another authstore transaction");
                self.forward(self.upstream.url(), content_type, body).await
            }
            Grant::Refresh(presented) => self.refresh(&presented, content_type, body).await,
            Grant::Other => {
                tracing::info!("forwarding a request of another grant type");
                self.forward(self.upstream.url(), content_type, body).await
            }
        }
    }

    /// A sandbox's Codex refreshes: the host's current access and id tokens (refreshed through
    /// the transaction when stale), with the sandbox's own secret as the refresh token. A secret
    /// the registry does not hold (removed, logged out, never issued) gets `invalid_grant`, as
    /// the authority answers a token it never issued; nothing is sent upstream.
    async fn refresh_sandbox(&self, presented: &Secret) -> Response<Full<Bytes>> {
        let Some(sandbox) = self.sandboxes.as_ref().and_then(|r| r.find(presented)) else {
            tracing::info!("refused a sandbox secret that is not registered");
            return authority_error(
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "this sandbox was removed or logged out: add it again on the host (authstore sandbox add)",
            );
        };
        let snapshot = match self.manager.auth().await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                return match error.kind() {
                    ErrorKind::NotLoggedIn | ErrorKind::ReloginRequired(_) => {
                        tracing::info!(sandbox = %sandbox.name, error = %error.report(), "the host cannot serve its sandbox");
                        authority_error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_grant",
                            "the host is not logged in: log in on the host, then add the sandbox again",
                        )
                    }
                    _ => {
                        tracing::info!(sandbox = %sandbox.name, error = %error.report(), "the host's refresh failed for now");
                        oauth_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "temporarily_unavailable",
                            &error.to_string(),
                        )
                    }
                };
            }
        };
        if !sandboxes::Registry::is_for(&sandbox, snapshot.document()) {
            // Never another identity's tokens: the agent logs this sandbox out.
            tracing::info!(sandbox = %sandbox.name, "the host holds another account's or user's login");
            return authority_error(
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "the host is logged in as another account or user: add the sandbox again",
            );
        }
        tracing::info!(sandbox = %sandbox.name, "answered a sandbox's refresh");
        let login = sandboxes::sandbox_login(snapshot.document(), presented, SystemTime::now());
        tokens(&AuthSnapshot::new(login))
    }

    /// Codex's logout inside a sandbox: that sandbox is removed (its entry and its `auth.json`),
    /// nothing else. RFC 7009: the answer is 200 whether or not the secret was known.
    async fn revoke_sandbox(&self, presented: &Secret) -> Response<Full<Bytes>> {
        if let Some(registry) = &self.sandboxes {
            match registry.revoke(presented).await {
                Ok(Some(sandbox)) => {
                    tracing::info!(sandbox = %sandbox.name, "a sandbox's secret was revoked: sandbox removed")
                }
                Ok(None) => tracing::info!("revocation of a sandbox secret that is not registered"),
                Err(error) => {
                    tracing::info!(error = %error.report(), "cannot revoke a sandbox secret");
                    return oauth_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "the sandbox registry cannot be written now",
                    );
                }
            }
        }
        json_response(StatusCode::OK, &json!({}))
    }

    async fn refresh(
        &self,
        presented: &Secret,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        match self.manager.rotate(presented, self.reuse_interval).await {
            Ok(Rotation::Current { snapshot, outcome }) => {
                tracing::info!(%outcome, "answered the current refresh token");
                tokens(&snapshot)
            }
            Ok(Rotation::RotatedAway { snapshot }) => {
                tracing::info!("answered a refresh token rotated away moments ago");
                tokens(&snapshot)
            }
            Ok(Rotation::Unknown) => {
                tracing::info!("forwarding a refresh token this home does not hold");
                self.forward(self.upstream.url(), content_type, body).await
            }
            // A kind of answer a later library adds: not this broker's to give.
            Ok(_) => self.forward(self.upstream.url(), content_type, body).await,
            Err(error) => self.failed(&error, content_type, body).await,
        }
    }

    async fn failed(
        &self,
        error: &Error,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        match error.kind() {
            ErrorKind::NotLoggedIn
            | ErrorKind::ReloginRequired(ReloginReason::IdentityChanged)
            | ErrorKind::InvalidFile
            | ErrorKind::Unreadable => {
                tracing::info!(error = %error.report(), "the store cannot answer; forwarding");
                self.forward(self.upstream.url(), content_type, body).await
            }
            ErrorKind::ReloginRequired(reason) => {
                let (status, code) = match error.rejection() {
                    Some((status, code)) => (status, code.to_owned()),
                    None => (401, reason_code(reason).to_owned()),
                };
                tracing::info!(status, %code, "the upstream rejected the refresh token");
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
                oauth_error(status, &code, &error.to_string())
            }
            _ => {
                tracing::info!(error = %error.report(), "the refresh failed for now");
                let status = match error.network_failure() {
                    Some(authstore::error::NetworkFailure::TimedOut) => StatusCode::GATEWAY_TIMEOUT,
                    Some(_) => StatusCode::BAD_GATEWAY,
                    None => StatusCode::SERVICE_UNAVAILABLE,
                };
                oauth_error(status, "temporarily_unavailable", &error.to_string())
            }
        }
    }

    /// Sends the request on to the upstream as it came, and its answer back as it came (at
    /// most [`MAX_ANSWER_BYTES`] of it).
    async fn forward(
        &self,
        url: &str,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let mut request = self.http.post(url).body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::info!(timeout = error.is_timeout(), "the upstream did not answer");
                let status = if error.is_timeout() {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return oauth_error(
                    status,
                    "temporarily_unavailable",
                    "the upstream token endpoint could not be reached",
                );
            }
        };
        let status = answer.status();
        let content_type = answer.headers().get(CONTENT_TYPE).cloned();
        let body = match read_bounded(answer).await {
            Some(body) => body,
            None => {
                return oauth_error(
                    StatusCode::BAD_GATEWAY,
                    "temporarily_unavailable",
                    "the upstream's answer was too long or broke off",
                );
            }
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() =
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if let Some(content_type) = content_type {
            response.headers_mut().insert(CONTENT_TYPE, content_type);
        }
        no_store(&mut response);
        response
    }
}

async fn read_bounded(mut answer: reqwest::Response) -> Option<Bytes> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.ok()? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body.into())
}

/// Whether a body is form-encoded (RFC 6749's requests); anything else is read as JSON, as Codex
/// sends it.
fn is_form(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// Reads the grant from a JSON body (as Codex sends it) or a form-encoded one (RFC 6749).
fn read_grant(content_type: Option<&HeaderValue>, body: &[u8]) -> Result<Grant, &'static str> {
    let form = is_form(content_type);
    let (grant_type, refresh_token) = if form {
        let mut grant_type = None;
        let mut refresh_token = None;
        for (name, value) in form_urlencoded::parse(body) {
            match name.as_ref() {
                "grant_type" => grant_type = Some(value.into_owned()),
                "refresh_token" => refresh_token = Some(value.into_owned()),
                _ => {}
            }
        }
        (grant_type, refresh_token)
    } else {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return Err("the body is neither a JSON object nor form-encoded");
        };
        let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
        (text("grant_type"), text("refresh_token"))
    };
    match grant_type.as_deref() {
        Some("refresh_token") => {}
        Some(_) => return Ok(Grant::Other),
        None => return Err("the request names no grant_type"),
    }
    match refresh_token {
        Some(token) if authority::is_token_string(&token) => Ok(Grant::Refresh(Secret::new(token))),
        _ => Err("the refresh grant carries no usable refresh_token"),
    }
}

/// The answer for credentials, in the authority's shape.
fn tokens(snapshot: &AuthSnapshot) -> Response<Full<Bytes>> {
    let Some(tokens) = snapshot.document().tokens.as_ref() else {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the store holds no tokens",
        );
    };
    let mut answer = json!({
        "id_token": tokens.id_token.expose(),
        "access_token": tokens.access_token.expose(),
        "refresh_token": tokens.refresh_token.expose(),
        "token_type": "Bearer",
    });
    if let Some(expires_in) = snapshot
        .expires_at()
        .and_then(|at| at.duration_since(SystemTime::now()).ok())
    {
        answer["expires_in"] = json!(expires_in.as_secs());
    }
    json_response(StatusCode::OK, &answer)
}

/// The refusal of a request from off loopback that is not a sandbox's.
fn refused_off_loopback(peer: SocketAddr) -> Response<Full<Bytes>> {
    tracing::info!(%peer, "refused a request from off loopback");
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "this broker answers only clients on its loopback, and sandboxes",
    )
}

/// An error in the shape the authority sends for a refresh it refuses (`{"error": {"code",
/// "message"}}`), which Codex reads as permanent on a 401: "log in again".
fn authority_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// The token a revocation names (RFC 7009 `token`, form-encoded or JSON as Codex sends it).
fn read_revoked(content_type: Option<&HeaderValue>, body: &[u8]) -> Option<Secret> {
    let form = is_form(content_type);
    let token = if form {
        form_urlencoded::parse(body)
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => fields
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    };
    token
        .filter(|t| authority::is_token_string(t))
        .map(Secret::new)
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    no_store(&mut response);
    response
}

/// RFC 6749 §5.1: an answer that carries tokens is not to be cached.
fn no_store(response: &mut Response<Full<Bytes>>) {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The error code an authority sends for `reason`, for a rejection whose answer was not kept
/// (a token found reused and not recovered).
fn reason_code(reason: ReloginReason) -> &'static str {
    match reason {
        ReloginReason::Expired => "refresh_token_expired",
        ReloginReason::Reused => "refresh_token_reused",
        ReloginReason::Revoked => "refresh_token_invalidated",
        _ => "invalid_grant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(
        content_type: Option<&'static str>,
        body: &str,
    ) -> Result<Option<String>, &'static str> {
        let content_type = content_type.map(HeaderValue::from_static);
        read_grant(content_type.as_ref(), body.as_bytes()).map(|grant| match grant {
            Grant::Refresh(token) => Some(token.expose().to_owned()),
            Grant::Other => None,
        })
    }

    #[test]
    fn refresh_grants_are_read_as_codex_sends_them_and_as_rfc_6749_writes_them() {
        let codex = r#"{"client_id":"app_x","grant_type":"refresh_token","refresh_token":"rt-1"}"#;
        assert_eq!(
            grant(Some("application/json"), codex),
            Ok(Some("rt-1".into()))
        );
        assert_eq!(grant(None, codex), Ok(Some("rt-1".into())));
        let form = "grant_type=refresh_token&refresh_token=rt%2B1&client_id=app_x";
        assert_eq!(
            grant(
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                form
            ),
            Ok(Some("rt+1".into()))
        );
        assert_eq!(
            grant(
                Some("application/json"),
                r#"{"grant_type":"authorization_code","code":"c"}"#
            ),
            Ok(None)
        );
    }

    #[test]
    fn malformed_grants_are_refused() {
        for (content_type, body) in [
            (Some("application/json"), "{not json"),
            (Some("application/json"), "[1,2]"),
            (Some("application/json"), r#"{"refresh_token":"rt"}"#),
            (
                Some("application/json"),
                r#"{"grant_type":"refresh_token"}"#,
            ),
            (
                Some("application/json"),
                r#"{"grant_type":"refresh_token","refresh_token":""}"#,
            ),
            (
                Some("application/json"),
                r#"{"grant_type":"refresh_token","refresh_token":" a b "}"#,
            ),
            (
                Some("application/json"),
                r#"{"grant_type":"refresh_token","refresh_token":7}"#,
            ),
            (
                Some("application/x-www-form-urlencoded"),
                "grant_type=refresh_token",
            ),
        ] {
            assert!(grant(content_type, body).is_err(), "{body}");
        }
    }

    #[test]
    fn an_upstream_at_the_brokers_own_address_is_refused() {
        let address: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        for own in [
            "http://127.0.0.1:40000/oauth/token",
            "http://localhost:40000/oauth/token",
            "http://0.0.0.0:40000/x",
            "http://[::1]:40000/oauth/token",
        ] {
            assert!(refuse_itself(own, address).is_err(), "{own}");
        }
        for other in [
            "http://127.0.0.1:40001/oauth/token",
            "https://auth.openai.com/oauth/token",
        ] {
            assert!(refuse_itself(other, address).is_ok(), "{other}");
        }
    }
}
