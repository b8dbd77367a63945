//! The HTTP side of the authority: accept loop, routing, the token and
//! revoke endpoints, fault injection and accounting.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::authority::{Authority, Identity};
use super::http::{self, Request, Response};

/// A fault to inject into `POST /oauth/token` requests, set with
/// [`Simulator::set_fault`](super::Simulator::set_fault).
///
/// Faults apply to well-formed refresh requests only (malformed ones are
/// answered 400 as usual), after the [`RefreshHook`] ran. Apart from
/// [`Fault::Latency`] and [`Fault::ResetAfterRefresh`], a faulted request
/// never reaches the authority: the presented token is not spent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// No fault: answer normally.
    #[default]
    None,
    /// Wait this long, then answer normally.
    Latency(Duration),
    /// Answer this status with body `{"error":"server_error"}`. Codes
    /// outside `200..=599` are sent as 500.
    Status(u16),
    /// Answer `status` with body `{"error":{"code":<code>,"message":..}}`,
    /// e.g. a scripted `refresh_token_reused` (see [`Fault::reused`]).
    Code {
        /// HTTP status to answer.
        status: u16,
        /// The `error.code` to report.
        code: String,
    },
    /// Drop the connection (with a TCP reset) without answering.
    Reset,
    /// Perform the refresh (spending the presented token and rotating the
    /// family), then drop the connection: the successor token is lost.
    ResetAfterRefresh,
    /// Answer 200 with the unparseable body `<html>not json`.
    Garbage,
    /// Never answer; the connection stays open until the simulator stops.
    Hang,
    /// Perform the refresh (spending the presented token and rotating the family), then answer
    /// its `200` with `fields` replaced (`None`: removed) and, when `pad` is not zero, a field
    /// `x_pad` of `pad` bytes: a malformed or oversized answer that still carries the rotation.
    /// A refused refresh is answered as usual.
    Rewrite {
        /// Top-level fields of the answer to set (`Some`) or remove (`None`).
        fields: Vec<(String, Option<Value>)>,
        /// The size of the added `x_pad` string.
        pad: usize,
    },
    /// Apply `fault` to the next `count` refresh requests, then revert to
    /// [`Fault::None`]. A nested `FailNext` applies its own inner fault.
    FailNext {
        /// How many requests remain to fail.
        count: u32,
        /// The fault to apply to each of them.
        fault: Box<Fault>,
    },
}

impl Fault {
    /// [`Fault::FailNext`]: apply `fault` to the next `count` requests only.
    pub fn next(count: u32, fault: Fault) -> Self {
        Self::FailNext {
            count,
            fault: Box::new(fault),
        }
    }

    /// A scripted `401 refresh_token_reused` answer (nothing is spent or
    /// revoked).
    pub fn reused() -> Self {
        Self::Code {
            status: 401,
            code: "refresh_token_reused".into(),
        }
    }

    /// Splits into the fault for the current request and the fault left
    /// for the following ones.
    fn split(self) -> (Fault, Fault) {
        match self {
            Self::FailNext { count: 0, .. } => (Self::None, Self::None),
            Self::FailNext { count, fault } => {
                let now = (*fault).clone().split().0;
                let rest = if count > 1 {
                    Self::FailNext {
                        count: count - 1,
                        fault,
                    }
                } else {
                    Self::None
                };
                (now, rest)
            }
            other => (other.clone(), other),
        }
    }
}

/// A refresh request as it arrived, passed to the [`RefreshHook`].
/// `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshEvent {
    /// 1-based arrival number among refresh requests.
    pub seq: u64,
    /// The presented refresh token.
    pub refresh_token: String,
    /// The `client_id` sent with it, if any.
    pub client_id: Option<String>,
    /// The family that issued the token, if the authority knows it.
    pub family: Option<u64>,
}

impl fmt::Debug for RefreshEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshEvent")
            .field("seq", &self.seq)
            .field("client_id", &self.client_id)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

/// Called for every well-formed refresh request after it is recorded and
/// before any fault or token processing, so it can change the outcome (set
/// a fault, spend or revoke tokens through the handle). It runs on the
/// server task: keep it short and non-blocking-ish.
pub type RefreshHook = Arc<dyn Fn(&RefreshEvent) + Send + Sync>;

/// A snapshot of the authority's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// `POST /oauth/token` requests, well-formed or not.
    pub refresh_calls: u64,
    /// Refreshes answered with tokens (reuse-interval replays included).
    pub successful_refreshes: u64,
    /// Refreshes refused because the token was already spent.
    pub reuse_rejections: u64,
    /// Refreshes refused for any reason by the authority (reuse, expiry,
    /// revocation, unknown token); injected faults not included.
    pub rejected_refreshes: u64,
    /// Spent tokens accepted within the reuse interval.
    pub reuse_interval_replays: u64,
    /// Refresh requests that had a fault applied.
    pub faults_injected: u64,
    /// `POST /oauth/revoke` requests.
    pub revoke_calls: u64,
    /// Families (logins) issued.
    pub families_issued: u64,
    /// Families revoked, by reuse detection, the revoke endpoint or the
    /// handle.
    pub families_revoked: u64,
    /// HTTP requests being handled right now.
    pub in_flight_requests: u64,
    /// The most HTTP requests ever handled at the same time.
    pub max_concurrent_requests: u64,
}

/// Mutable state, behind one mutex that is never held across an await or
/// while the hook runs.
pub(crate) struct State {
    pub authority: Authority,
    pub fault: Fault,
    pub hook: Option<RefreshHook>,
    /// Counters; the family and concurrency fields are filled in by
    /// [`Shared::stats`].
    pub counters: Stats,
    pub events: Vec<RefreshEvent>,
    /// Every request that was read whole, as `(method, target)`, in arrival order.
    pub requests: Vec<(String, String)>,
}

/// State shared by the handles and the server tasks.
pub(crate) struct Shared {
    state: Mutex<State>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Shared {
    pub fn new(authority: Authority, hook: Option<RefreshHook>) -> Self {
        Self {
            state: Mutex::new(State {
                authority,
                fault: Fault::None,
                hook,
                counters: Stats::default(),
                events: Vec::new(),
                requests: Vec::new(),
            }),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stats(&self) -> Stats {
        let state = self.lock();
        Stats {
            families_issued: state.authority.families_issued(),
            families_revoked: state.authority.families_revoked(),
            in_flight_requests: self.in_flight.load(Ordering::SeqCst),
            max_concurrent_requests: self.max_in_flight.load(Ordering::SeqCst),
            ..state.counters.clone()
        }
    }

    fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }
}

/// Counts one request in flight until dropped (also when a hung request's
/// task is aborted).
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves connections until `shutdown` changes or its sender is dropped.
/// Returning drops every connection task, hung ones included.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(error) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    tracing::debug!("token authority stopped");
}

/// What to do with the connection after handling a request.
enum Reply {
    Send(Response),
    Reset,
    Hang,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self::Send(Response::json(status, &body))
    }

    fn error(status: u16, error: &str) -> Self {
        Self::json(status, json!({ "error": error }))
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    loop {
        let request = match http::read_request(&mut stream).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => {
                if let Some(response) = error.response() {
                    let _ = http::write_response(&mut stream, &response, false).await;
                }
                return;
            }
        };
        let _in_flight = shared.enter();
        shared
            .lock()
            .requests
            .push((request.method.clone(), request.target.clone()));
        match route(&shared, &request).await {
            Reply::Send(response) => {
                let written =
                    http::write_response(&mut stream, &response, request.keep_alive).await;
                if written.is_err() || !request.keep_alive {
                    return;
                }
            }
            Reply::Reset => {
                // Zero linger turns the close into a TCP reset.
                let _ = stream.get_ref().set_zero_linger();
                return;
            }
            Reply::Hang => std::future::pending::<()>().await,
        }
    }
}

const ROUTES: [&str; 5] = [
    "/healthz",
    "/oauth/token",
    "/oauth/revoke",
    "/sim/login",
    "/sim/stats",
];

async fn route(shared: &Shared, request: &Request) -> Reply {
    match (request.method.as_str(), request.path()) {
        ("GET", "/healthz") => Reply::Send(Response::text(200, "text/plain", "ok")),
        ("POST", "/oauth/token") => token(shared, &request.body).await,
        ("POST", "/oauth/revoke") => revoke(shared, &request.body),
        ("POST", "/sim/login") => login(shared, &request.body),
        ("GET", "/sim/stats") => Reply::json(200, json!(shared.stats())),
        (_, path) if ROUTES.contains(&path) => Reply::error(405, "method_not_allowed"),
        _ => Reply::error(404, "not_found"),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    refresh_token: Option<String>,
    client_id: Option<String>,
}

async fn token(shared: &Shared, body: &[u8]) -> Reply {
    shared.lock().counters.refresh_calls += 1;
    let Ok(request) = serde_json::from_slice::<TokenRequest>(body) else {
        return Reply::error(400, "invalid_request");
    };
    if request.grant_type != "refresh_token" {
        return Reply::error(400, "unsupported_grant_type");
    }
    let Some(refresh_token) = request.refresh_token else {
        return Reply::error(400, "invalid_request");
    };

    let (event, hook) = {
        let mut state = shared.lock();
        let event = RefreshEvent {
            seq: state.events.len() as u64 + 1,
            family: state.authority.family_of(&refresh_token),
            refresh_token,
            client_id: request.client_id,
        };
        state.events.push(event.clone());
        (event, state.hook.clone())
    };
    if let Some(hook) = hook {
        hook(&event);
    }

    let fault = {
        let mut state = shared.lock();
        let (fault, rest) = std::mem::take(&mut state.fault).split();
        state.fault = rest;
        if fault != Fault::None {
            state.counters.faults_injected += 1;
        }
        fault
    };
    if fault != Fault::None {
        tracing::debug!(seq = event.seq, ?fault, "injecting fault");
    }
    match fault {
        Fault::None | Fault::FailNext { .. } => {}
        Fault::Latency(delay) => tokio::time::sleep(delay).await,
        Fault::Status(status) => {
            let status = if (200..=599).contains(&status) {
                status
            } else {
                500
            };
            return Reply::error(status, "server_error");
        }
        Fault::Code { status, code } => {
            let status = if (200..=599).contains(&status) {
                status
            } else {
                500
            };
            let message = format!("injected fault: {code}");
            return Reply::json(
                status,
                json!({ "error": { "code": code, "message": message } }),
            );
        }
        Fault::Reset => return Reply::Reset,
        Fault::ResetAfterRefresh => {
            let _ = refresh(shared, &event.refresh_token);
            return Reply::Reset;
        }
        Fault::Garbage => return Reply::Send(Response::text(200, "text/html", "<html>not json")),
        Fault::Rewrite { fields, pad } => {
            return match refresh(shared, &event.refresh_token) {
                Reply::Send(response) if response.status == 200 => {
                    Reply::Send(rewritten(&response, &fields, pad))
                }
                other => other,
            };
        }
        Fault::Hang => return Reply::Hang,
    }
    refresh(shared, &event.refresh_token)
}

/// `response`'s JSON body with `fields` set or removed and `pad` bytes added ([`Fault::Rewrite`]).
fn rewritten(response: &Response, fields: &[(String, Option<Value>)], pad: usize) -> Response {
    let mut body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|_| json!({}));
    if let Some(object) = body.as_object_mut() {
        for (name, value) in fields {
            match value {
                Some(value) => object.insert(name.clone(), value.clone()),
                None => object.remove(name),
            };
        }
        if pad > 0 {
            object.insert("x_pad".into(), Value::String("x".repeat(pad)));
        }
    }
    Response::json(response.status, &body)
}

/// Lets the authority decide, counts the outcome and builds the answer.
fn refresh(shared: &Shared, refresh_token: &str) -> Reply {
    let mut state = shared.lock();
    match state.authority.refresh(refresh_token) {
        Ok(refreshed) => {
            state.counters.successful_refreshes += 1;
            if refreshed.replayed {
                state.counters.reuse_interval_replays += 1;
            }
            let tokens = refreshed.tokens;
            let mut body = json!({
                "id_token": tokens.id_token,
                "access_token": tokens.access_token,
            });
            if refreshed.rotated {
                body["refresh_token"] = tokens.refresh_token.into();
            }
            Reply::json(200, body)
        }
        Err(error) => {
            state.counters.rejected_refreshes += 1;
            if error == super::RefreshError::Reused {
                state.counters.reuse_rejections += 1;
            }
            tracing::debug!(code = error.code(), "refresh rejected");
            Reply::json(
                401,
                json!({ "error": { "code": error.code(), "message": error.message() } }),
            )
        }
    }
}

#[derive(Deserialize)]
struct RevokeRequest {
    token: String,
}

/// RFC 7009 style: 200 `{}` whether or not the token was known; a known
/// refresh token revokes its whole family.
fn revoke(shared: &Shared, body: &[u8]) -> Reply {
    let mut state = shared.lock();
    state.counters.revoke_calls += 1;
    let Ok(request) = serde_json::from_slice::<RevokeRequest>(body) else {
        return Reply::error(400, "invalid_request");
    };
    if let Some(family) = state.authority.family_of(&request.token) {
        state.authority.revoke_family(family);
    }
    Reply::json(200, json!({}))
}

/// `POST /sim/login` with an optional [`Identity`] body: starts a family and
/// answers its auth.json document (for demos driving a standalone server).
fn login(shared: &Shared, body: &[u8]) -> Reply {
    let identity = if body.iter().all(u8::is_ascii_whitespace) {
        Identity::default()
    } else {
        match serde_json::from_slice::<Identity>(body) {
            Ok(identity) => identity,
            Err(_) => return Reply::error(400, "invalid_request"),
        }
    };
    let issued = shared.lock().authority.issue_login(&identity);
    Reply::json(200, issued.to_auth_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_counts_down() {
        let (now, rest) = Fault::next(2, Fault::Status(503)).split();
        assert_eq!(now, Fault::Status(503));
        let (now, rest) = rest.split();
        assert_eq!(now, Fault::Status(503));
        assert_eq!(rest, Fault::None);
        assert_eq!(
            Fault::next(0, Fault::Hang).split(),
            (Fault::None, Fault::None)
        );
        let (now, rest) = Fault::Garbage.split();
        assert_eq!((now, rest), (Fault::Garbage, Fault::Garbage));
    }
}
