//! The worker: one long-lived session of one strategy, run as its own process by the demo and
//! the benchmarks (`authstore demo-worker`, a hidden command).
//!
//! Protocol on stdio (see [`protocol`](super::protocol), shared with the benchmarks): once its
//! session is set up the worker prints [`FromWorker::Ready`]; it starts when it reads
//! [`ToWorker::Go`] on stdin; at the end it prints [`FromWorker::Report`] and exits 0. No line,
//! and nothing on stderr, ever holds a token.
//!
//! Modes:
//! - [`Mode::Loop`] (the demo): ask for credentials in a loop, with a pause of 1 to 5 ms between
//!   requests (an editor or CLI session making API calls), until the duration has passed.
//! - [`Mode::Once`] (the amplification benchmark): ask once, on a token that is already stale.
//!   Baseline sessions read `auth.json` while getting ready, as a session does at startup; the
//!   coordinated session reads it on its first request (its first read is inside the timing).
//! - [`Mode::Force`] (the throughput benchmark): obtain new tokens `count` times back to back.
//!
//! **Forced re-login.** A permanent refresh failure (`refresh_token_reused`, a revoked family, ...)
//! is what makes a real user log in again. The worker counts it, and when given a login URL it
//! then logs in again at the embedded authority (the stand-in for the browser flow), installs
//! the new login in `auth.json` as a login command would, and goes on; without one, the session
//! stops asking. Logging in again starts a new token family, so the session can keep working;
//! it is the same real-world cost either way: one interruption of the user per forced re-login.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authstore::authority::{AuthorityConfig, TokenClient};
use authstore::document::{AuthDocument, Freshness};
use authstore::error::{Error, ErrorKind, ReloginReason};
use authstore::simulator::Identity;
use authstore::store::StoreOptions;
use authstore::{AuthManager, ManagerOptions};

use super::baselines::{Baseline, Kind};
use super::protocol::{FromWorker, Mode, Strategy, ToWorker, WorkerReport};

/// The identity every demo login belongs to.
pub(crate) const DEMO_ACCOUNT: &str = "acct-demo";
/// See [`DEMO_ACCOUNT`].
pub(crate) const DEMO_USER: &str = "user-demo";

/// How a worker runs.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) strategy: Strategy,
    pub(crate) mode: Mode,
    /// How long [`Mode::Loop`] runs.
    pub(crate) duration: Duration,
    /// How many refreshes [`Mode::Force`] makes.
    pub(crate) count: u64,
    /// When the session's tokens count as stale.
    pub(crate) freshness: Freshness,
    /// The pause between two requests of [`Mode::Loop`]: uniformly in this range.
    pub(crate) pause: (Duration, Duration),
    /// Where to log in again after a permanent failure (`POST /sim/login`); `None`: stop asking.
    pub(crate) login_url: Option<String>,
    /// Whether a coordinated session watches the directory (else one `stat` per call).
    pub(crate) watch: bool,
}

/// Where the session lives.
#[derive(Debug, Clone)]
pub(crate) struct WorkerEnv {
    pub(crate) home: PathBuf,
    pub(crate) store: StoreOptions,
    pub(crate) authority: AuthorityConfig,
}

/// Why one request for credentials failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The refresh token is dead: the user has to log in again.
    Permanent(ReloginReason),
    /// Try again later.
    Transient(String),
    /// Anything else.
    Other(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error.kind() {
            ErrorKind::ReloginRequired(reason) => Failure::Permanent(reason),
            ErrorKind::Transient | ErrorKind::LockTimeout => Failure::Transient(error.to_string()),
            _ => Failure::Other(error.to_string()),
        }
    }
}

/// One session of one strategy.
enum Session {
    Baseline(Box<Baseline>),
    Coordinated(AuthManager),
}

impl Session {
    async fn new(
        strategy: Strategy,
        env: &WorkerEnv,
        config: &WorkerConfig,
    ) -> Result<Self, String> {
        let freshness = config.freshness;
        let kind = match strategy {
            Strategy::Coordinated => {
                let options = ManagerOptions::default()
                    .store(env.store.clone())
                    .authority(env.authority.clone())
                    .freshness(freshness)
                    .watch(config.watch);
                let manager =
                    AuthManager::new(env.home.clone(), options).map_err(|e| e.to_string())?;
                return Ok(Session::Coordinated(manager));
            }
            Strategy::Naive => Kind::Naive,
            Strategy::Reread => Kind::Reread,
        };
        let client = TokenClient::new(env.authority.clone());
        let mut baseline = Baseline::new(kind, env.home.clone(), client, freshness);
        baseline.load().await?;
        Ok(Session::Baseline(Box::new(baseline)))
    }

    /// Credentials for one request; returns when they expire.
    async fn credentials(&mut self) -> Result<Option<SystemTime>, Failure> {
        match self {
            Session::Baseline(session) => session.credentials().await,
            Session::Coordinated(manager) => Ok(manager.auth().await?.expires_at()),
        }
    }

    async fn force(&mut self) -> Result<(), Failure> {
        match self {
            Session::Baseline(session) => session.force().await.map(drop),
            Session::Coordinated(manager) => {
                manager.force_refresh().await.map(drop).map_err(Into::into)
            }
        }
    }

    /// Installs a new login, as a login command would.
    async fn install(&mut self, document: AuthDocument) -> Result<(), String> {
        match self {
            Session::Baseline(session) => session.install(document).await,
            Session::Coordinated(manager) => {
                manager.reset();
                manager
                    .login(document)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn counts(&self) -> (u64, u64) {
        match self {
            Session::Baseline(session) => (session.refreshed, session.adopted),
            Session::Coordinated(manager) => {
                let stats = manager.stats();
                (stats.refreshed, stats.adopted + stats.reuse_recovered)
            }
        }
    }
}

/// Runs a worker: sets up the session, says [`FromWorker::Ready`], waits for [`ToWorker::Go`]
/// on stdin, works, says [`FromWorker::Report`].
///
/// # Errors
/// A message when the session cannot be set up, stdin closes or says something else before the
/// start signal, or logging in again fails.
pub(crate) async fn run(env: WorkerEnv, config: WorkerConfig) -> Result<(), String> {
    if config.mode == Mode::Force && config.strategy != Strategy::Coordinated {
        // Forcing refreshes through a baseline only measures how fast it revokes its family.
        return Err("--mode force is only meaningful with --strategy coordinated".into());
    }
    let mut session = Session::new(config.strategy, &env, &config).await?;
    let login = match &config.login_url {
        Some(url) => Some(Login::new(url.clone())?),
        None => None,
    };
    say(&FromWorker::Ready {})?;
    wait_for_go().await?;

    let mut report = WorkerReport {
        pid: std::process::id(),
        go_at_unix_ns: unix_nanos(),
        ..WorkerReport::default()
    };
    match config.mode {
        Mode::Loop => run_loop(&mut session, &config, login.as_ref(), &mut report).await?,
        Mode::Once => {
            let started = Instant::now();
            let outcome = session.credentials().await;
            let elapsed = started.elapsed();
            record(&mut report, fresh(outcome, &config.freshness), elapsed);
            report.forced_relogins = report.permanent_failures;
        }
        Mode::Force => {
            for _ in 0..config.count {
                let started = Instant::now();
                let outcome = session.force().await.map(|()| true);
                record(&mut report, outcome, started.elapsed());
            }
        }
    }
    report.done_at_unix_ns = unix_nanos();
    (report.refreshed, report.adopted) = session.counts();
    say(&FromWorker::Report(report))
}

async fn run_loop(
    session: &mut Session,
    config: &WorkerConfig,
    login: Option<&Login>,
    report: &mut WorkerReport,
) -> Result<(), String> {
    let deadline = Instant::now() + config.duration;
    let mut random = SplitMix(u64::from(std::process::id()) ^ unix_nanos());
    while Instant::now() < deadline {
        let started = Instant::now();
        let outcome = session.credentials().await;
        let elapsed = started.elapsed();
        let permanent = matches!(outcome, Err(Failure::Permanent(_)));
        record(report, fresh(outcome, &config.freshness), elapsed);
        if permanent {
            // The user is interrupted and logs in again.
            report.forced_relogins += 1;
            let Some(login) = login else {
                break;
            };
            let document = login.fresh().await?;
            session.install(document).await?;
        }
        let (low, high) = config.pause;
        let span = high.saturating_sub(low).as_nanos() as u64;
        let pause = low + Duration::from_nanos(random.next() % span.max(1));
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    Ok(())
}

/// Whether credentials expiring at `expires_at` are fresh now.
fn fresh(
    outcome: Result<Option<SystemTime>, Failure>,
    freshness: &Freshness,
) -> Result<bool, Failure> {
    outcome.map(|expires_at| !freshness.is_stale(expires_at, None, SystemTime::now()))
}

fn record(report: &mut WorkerReport, outcome: Result<bool, Failure>, elapsed: Duration) {
    match outcome {
        Ok(fresh) => {
            report.served += 1;
            report.fresh_at_end = fresh;
            report.latency.record(elapsed);
            return;
        }
        Err(Failure::Permanent(reason)) => {
            report.permanent_failures += 1;
            if reason == ReloginReason::Reused {
                report.reused += 1;
            }
            report
                .first_error
                .get_or_insert_with(|| format!("re-login required ({reason:?})"));
        }
        Err(Failure::Transient(why)) => {
            report.transient_failures += 1;
            report.first_error.get_or_insert(why);
        }
        Err(Failure::Other(why)) => {
            report.other_errors += 1;
            report.first_error.get_or_insert(why);
        }
    }
    report.failed += 1;
    report.fresh_at_end = false;
}

/// Logging in again at the embedded authority: the stand-in for a user going through the
/// browser login.
struct Login {
    url: String,
    http: reqwest::Client,
}

impl Login {
    fn new(url: String) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { url, http })
    }

    async fn fresh(&self) -> Result<AuthDocument, String> {
        let identity = Identity::new(DEMO_ACCOUNT, DEMO_USER);
        let response = self
            .http
            .post(&self.url)
            .json(&identity)
            .send()
            .await
            .map_err(|e| format!("logging in again at {} failed: {e}", self.url))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!(
                "logging in again at {} answered HTTP {status}",
                self.url
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("logging in again at {} failed: {e}", self.url))?;
        AuthDocument::parse(&bytes).map_err(|e| {
            format!(
                "the login answer from {} is not an auth.json: {e}",
                self.url
            )
        })
    }
}

/// Waits for the start signal: [`ToWorker::Go`] on stdin.
async fn wait_for_go() -> Result<(), String> {
    let (read, line) = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map(|read| (read, line))
    })
    .await
    .map_err(|e| format!("cannot wait for the start signal: {e}"))?
    .map_err(|e| format!("cannot read the start signal on stdin: {e}"))?;
    if read == 0 {
        return Err("stdin closed before the start signal".into());
    }
    match ToWorker::decode(&line) {
        Ok(ToWorker::Go {}) => Ok(()),
        Err(error) => Err(format!("expected the start signal on stdin: {error}")),
    }
}

/// Prints one message on stdout, as one line, and flushes it.
fn say(message: &FromWorker) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", message.encode())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Pauses need to differ between workers, not to be unpredictable.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
