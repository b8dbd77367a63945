//! The demo's orchestration: one fresh authority and Codex home per strategy, N worker processes
//! of this binary, their reports and the authority's counters turned into one row per strategy.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authstore::document::AuthDocument;
use authstore::simulator::{Identity, Simulator, SimulatorConfig};
use authstore::store::{FileStore, StoreOptions};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::protocol::{FromWorker, Histogram, Launch, Mode, Strategy, ToWorker, WorkerReport};
use super::worker::{DEMO_ACCOUNT, DEMO_USER};

/// How long the workers of one strategy may take to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the planned end the workers may take to report.
const REPORT_GRACE: Duration = Duration::from_secs(60);
/// How much of a failed worker's stderr to show.
const STDERR_TAIL: usize = 2000;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Worker processes per strategy.
    pub(crate) processes: u32,
    /// How long each strategy runs.
    pub(crate) duration: Duration,
    /// Lifetime of the access tokens the authority issues (whole seconds: JWT `exp` is).
    pub(crate) token_lifetime: Duration,
    /// How long before expiry a token counts as stale, for every strategy alike.
    pub(crate) refresh_window: Duration,
    /// The pause between two requests of a session.
    pub(crate) pause: (Duration, Duration),
    /// Global options given to every worker (lock and request timeouts).
    pub(crate) worker_options: Vec<OsString>,
    /// The strategies, in order.
    pub(crate) strategies: Vec<Strategy>,
    /// Say on stderr what is running.
    pub(crate) progress: bool,
}

/// The figures of a whole run, printed as a table or as JSON.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) processes: u32,
    pub(crate) duration_secs: f64,
    pub(crate) token_lifetime_secs: u64,
    pub(crate) refresh_window_ms: u64,
    pub(crate) strategies: Vec<Figures>,
    /// Whether `coordinated` made no reuse and forced no re-login (and served requests).
    pub(crate) ok: bool,
    pub(crate) verdict: String,
}

/// One strategy's row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figures {
    pub(crate) strategy: &'static str,
    /// Requests the token endpoint received.
    pub(crate) token_endpoint_calls: u64,
    /// Of those, answered with new tokens.
    pub(crate) successful_refreshes: u64,
    /// How many times the shared token expired during the run: the refreshes one process alone
    /// would have needed (see [`expiry_epochs`]).
    pub(crate) expiry_epochs: u64,
    /// `token_endpoint_calls / expiry_epochs`: 1 is the minimum.
    pub(crate) refreshes_per_epoch: f64,
    /// Refreshes refused as `refresh_token_reused` (each one revokes the token family).
    pub(crate) reuse_rejections: u64,
    /// Refreshes refused for any reason (reuse, revoked family).
    pub(crate) rejected_refreshes: u64,
    pub(crate) families_revoked: u64,
    /// Times a session was forced to log in again.
    pub(crate) forced_relogins: u64,
    /// Sessions forced to log in again at least once.
    pub(crate) sessions_forced_to_log_in: u64,
    pub(crate) sessions: u64,
    /// Credential requests answered with credentials.
    pub(crate) requests_served: u64,
    pub(crate) requests_failed: u64,
    /// Newer credentials adopted from disk instead of refreshing.
    pub(crate) adopted: u64,
    /// Time to get credentials, per served request.
    pub(crate) latency_us: Latency,
    pub(crate) run_secs: f64,
    /// The first failure a worker saw other than a forced re-login, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

/// Runs every strategy in turn.
///
/// # Errors
/// A message when the authority cannot start, a worker cannot be started, or a worker fails
/// or does not report in time.
pub(crate) async fn run(settings: &Settings) -> Result<Summary, String> {
    let exe = crate::own_executable()
        .map_err(|e| format!("cannot find this program to start the workers: {e}"))?;
    let mut strategies = Vec::new();
    for &strategy in &settings.strategies {
        if settings.progress {
            eprintln!(
                "authstore demo: {:<11} {} processes for {} ...",
                strategy.name(),
                settings.processes,
                seconds(settings.duration)
            );
        }
        strategies.push(run_strategy(strategy, settings, &exe).await?);
    }
    let coordinated = strategies.iter().find(|f| f.strategy == "coordinated");
    let (ok, verdict) = match coordinated {
        None => (false, "coordinated was not run".to_owned()),
        Some(f) if f.reuse_rejections > 0 || f.forced_relogins > 0 => (
            false,
            format!(
                "FAILED: coordinated made {} reuse rejection(s) and forced {} re-login(s); \
                 it must make none",
                f.reuse_rejections, f.forced_relogins
            ),
        ),
        Some(f) if f.requests_served == 0 => (
            false,
            format!(
                "FAILED: coordinated served no request{}",
                f.first_error
                    .as_deref()
                    .map(|e| format!(" (first error: {e})"))
                    .unwrap_or_default()
            ),
        ),
        Some(f) => (
            true,
            format!(
                "coordinated: every refresh token spent once, no reuse, no forced re-login \
                 ({} calls for {} expiries)",
                f.token_endpoint_calls, f.expiry_epochs
            ),
        ),
    };
    Ok(Summary {
        processes: settings.processes,
        duration_secs: settings.duration.as_secs_f64(),
        token_lifetime_secs: settings.token_lifetime.as_secs(),
        refresh_window_ms: u64::try_from(settings.refresh_window.as_millis()).unwrap_or(u64::MAX),
        strategies,
        ok,
        verdict,
    })
}

async fn run_strategy(
    strategy: Strategy,
    settings: &Settings,
    exe: &Path,
) -> Result<Figures, String> {
    let home = tempfile::Builder::new()
        .prefix("authstore-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary Codex home: {e}"))?;
    let simulator = Simulator::start(SimulatorConfig {
        family_revocation: true,
        access_token_lifetime: settings.token_lifetime,
        ..SimulatorConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the token authority on loopback: {e}"))?;
    let result = drive(strategy, settings, exe, home.path(), &simulator).await;
    simulator.shutdown().await;
    result
}

async fn drive(
    strategy: Strategy,
    settings: &Settings,
    exe: &Path,
    home: &Path,
    simulator: &Simulator,
) -> Result<Figures, String> {
    let login = simulator.auth_json(&Identity::new(DEMO_ACCOUNT, DEMO_USER));
    let document = AuthDocument::parse(login.to_string().as_bytes())
        .map_err(|e| format!("the authority issued an invalid login: {e}"))?;
    let first_expiry = document
        .expires_at()
        .ok_or("the authority issued an access token without expiry")?;
    let store = FileStore::new(home, StoreOptions::default());
    let mut transaction = store.begin().await.map_err(|e| e.to_string())?;
    transaction
        .write(&document)
        .await
        .map_err(|e| e.to_string())?;
    drop(transaction);

    let launch = Launch {
        duration: settings.duration.as_secs_f64(),
        refresh_window_ms: u64::try_from(settings.refresh_window.as_millis()).unwrap_or(u64::MAX),
        pause_min_us: u64::try_from(settings.pause.0.as_micros()).unwrap_or(u64::MAX),
        pause_max_us: u64::try_from(settings.pause.1.as_micros()).unwrap_or(u64::MAX),
        login_url: Some(format!("{}/sim/login", simulator.base_url())),
        ..Launch::new(strategy, Mode::Loop)
    };
    let mut args: Vec<OsString> = vec!["--codex-home".into(), home.into()];
    args.extend(settings.worker_options.iter().cloned());
    args.extend(launch.to_args().into_iter().map(OsString::from));
    let mut workers = Vec::new();
    for _ in 0..settings.processes {
        workers.push(Worker::spawn(exe, &args, &simulator.token_url())?);
    }
    let ready_by = Instant::now() + READY_TIMEOUT;
    for worker in &mut workers {
        worker.expect_ready(ready_by).await?;
    }
    let go = SystemTime::now();
    for worker in &mut workers {
        worker.go().await?;
    }
    let report_by = Instant::now() + settings.duration + REPORT_GRACE;
    let mut reports = Vec::new();
    for worker in workers {
        reports.push(worker.report(report_by).await?);
    }
    let stats = simulator.stats();

    let end = reports
        .iter()
        .map(|r| r.done_at_unix_ns)
        .max()
        .map_or(go, |ns| UNIX_EPOCH + Duration::from_nanos(ns));
    let epochs = expiry_epochs(
        unix_secs(first_expiry),
        settings.refresh_window.as_secs_f64(),
        settings.token_lifetime.as_secs_f64(),
        unix_secs(go),
        unix_secs(end),
    );
    let mut latency = Histogram::default();
    for report in &reports {
        latency.merge(&report.latency);
    }
    let micros = |q: f64| {
        latency
            .quantile(q)
            .map_or(0.0, |d| d.as_nanos() as f64 / 1e3)
    };
    let sum = |field: fn(&WorkerReport) -> u64| reports.iter().map(field).sum::<u64>();
    Ok(Figures {
        strategy: strategy.name(),
        token_endpoint_calls: stats.refresh_calls,
        successful_refreshes: stats.successful_refreshes,
        expiry_epochs: epochs,
        refreshes_per_epoch: stats.refresh_calls as f64 / epochs.max(1) as f64,
        reuse_rejections: stats.reuse_rejections,
        rejected_refreshes: stats.rejected_refreshes,
        families_revoked: stats.families_revoked,
        forced_relogins: sum(|r| r.forced_relogins),
        sessions_forced_to_log_in: sum(|r| u64::from(r.forced_relogins > 0)),
        sessions: reports.len() as u64,
        requests_served: sum(|r| r.served),
        requests_failed: sum(|r| r.failed),
        adopted: sum(|r| r.adopted),
        latency_us: Latency {
            p50: micros(0.5),
            p99: micros(0.99),
            max: latency.max().map_or(0.0, |d| d.as_nanos() as f64 / 1e3),
        },
        run_secs: end.duration_since(go).unwrap_or_default().as_secs_f64(),
        first_error: reports
            .iter()
            .filter(|r| r.transient_failures + r.other_errors > 0)
            .find_map(|r| r.first_error.clone()),
    })
}

/// How many times the shared token goes stale between `start` and `end` (seconds since the
/// epoch) for one process that refreshes the moment it does: the minimum number of refreshes.
/// Tokens expire at whole seconds (`exp = ceil(issued + lifetime)`) and count as stale `window`
/// before; a token already stale at `start` counts once, refreshed at `start`.
pub(crate) fn expiry_epochs(
    first_expiry: f64,
    window: f64,
    lifetime: f64,
    start: f64,
    end: f64,
) -> u64 {
    if lifetime <= window {
        return 0; // every token would be stale at birth; the settings rule this out
    }
    let mut expiry = first_expiry;
    let mut epochs = 0;
    loop {
        let stale = expiry - window;
        if stale >= end {
            return epochs;
        }
        epochs += 1;
        expiry = (stale.max(start) + lifetime).ceil();
    }
}

fn unix_secs(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One worker process and its pipes.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
}

impl Worker {
    fn spawn(exe: &Path, args: &[OsString], token_url: &str) -> Result<Self, String> {
        let mut child = Command::new(exe)
            .args(args)
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", token_url)
            .env_remove("CODEX_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a worker ({}): {e}", exe.display()))?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("a worker started without its pipes".into());
        };
        let stderr = tokio::spawn(async move {
            // Drained to the end so the worker never blocks on a full pipe; only the tail is kept.
            let mut tail = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stderr.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                tail.extend_from_slice(&buffer[..read]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            let start = tail.len().saturating_sub(STDERR_TAIL);
            String::from_utf8_lossy(&tail[start..]).trim().to_owned()
        });
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
            stderr,
        })
    }

    async fn line(&mut self, by: Instant, waiting_for: &str) -> Result<String, String> {
        match tokio::time::timeout_at(by, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) | Ok(Err(_)) => Err(self.failure(waiting_for).await),
            Err(_) => Err(format!(
                "a worker (pid {}) did not send {waiting_for} in time",
                self.child.id().unwrap_or(0)
            )),
        }
    }

    /// The next message; a line that is not one stops the worker.
    async fn message(&mut self, by: Instant, waiting_for: &str) -> Result<FromWorker, String> {
        let line = self.line(by, waiting_for).await?;
        match FromWorker::decode(&line) {
            Ok(message) => Ok(message),
            Err(error) => {
                let failure = self.failure(waiting_for).await;
                Err(format!(
                    "a worker sent a line that cannot be read ({error}); {failure}"
                ))
            }
        }
    }

    async fn expect_ready(&mut self, by: Instant) -> Result<(), String> {
        match self.message(by, "ready").await? {
            FromWorker::Ready {} => Ok(()),
            other => Err(format!("a worker sent {} instead of ready", other.kind())),
        }
    }

    async fn go(&mut self) -> Result<(), String> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err("a worker was started twice".into());
        };
        let line = format!("{}\n", ToWorker::Go {}.encode());
        let sent = stdin
            .write_all(line.as_bytes())
            .await
            .and(stdin.flush().await);
        if sent.is_err() {
            return Err(self.failure("the start signal").await);
        }
        Ok(())
    }

    async fn report(mut self, by: Instant) -> Result<WorkerReport, String> {
        let report = match self.message(by, "its report").await? {
            FromWorker::Report(report) => report,
            other => {
                return Err(format!(
                    "a worker sent {} instead of its report",
                    other.kind()
                ));
            }
        };
        self.stdin.take();
        match tokio::time::timeout_at(by, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(report),
            _ => Err(self.failure("an exit status of 0").await),
        }
    }

    /// Describes a worker that stopped early: its exit status and the tail of its stderr.
    async fn failure(&mut self, waiting_for: &str) -> String {
        self.stdin.take();
        let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let status = match status {
            Ok(Ok(status)) => status.to_string(),
            _ => "still running".to_owned(),
        };
        let _ = self.child.start_kill();
        let stderr = tokio::time::timeout(Duration::from_secs(5), &mut self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let stderr = if stderr.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n{stderr}")
        };
        format!("a worker stopped before {waiting_for} ({status}){stderr}")
    }
}

impl Summary {
    /// The human-readable table, with a legend and the verdict.
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "{} processes per strategy, {} each; access tokens live {} s and count as stale \
             {} ms before expiry\n\n",
            self.processes,
            seconds(Duration::from_secs_f64(self.duration_secs)),
            self.token_lifetime_secs,
            self.refresh_window_ms,
        );
        out.push_str(&format!(
            "{:<12} {:>8} {:>7} {:>11} {:>7} {:>10} {:>9} {:>10} {:>9} {:>9}\n",
            "strategy",
            "expiries",
            "calls",
            "calls/epoch",
            "reused",
            "re-logins",
            "sessions",
            "served",
            "p50",
            "p99"
        ));
        for f in &self.strategies {
            out.push_str(&format!(
                "{:<12} {:>8} {:>7} {:>11.1} {:>7} {:>10} {:>9} {:>10} {:>9} {:>9}\n",
                f.strategy,
                f.expiry_epochs,
                f.token_endpoint_calls,
                f.refreshes_per_epoch,
                f.reuse_rejections,
                f.forced_relogins,
                format!("{}/{}", f.sessions_forced_to_log_in, f.sessions),
                thousands(f.requests_served),
                micros(f.latency_us.p50),
                micros(f.latency_us.p99),
            ));
        }
        out.push_str(
            "\nexpiries: times the shared token went stale; calls: requests to the token endpoint \
             (1 per expiry is the minimum);\nreused: refresh_token_reused answers, each revoking \
             the token family; re-logins: times a session was forced to log in again;\nsessions: \
             sessions forced to log in at least once; served: credential requests answered; \
             p50/p99: time to get credentials.\n",
        );
        for f in &self.strategies {
            if let Some(error) = &f.first_error {
                out.push_str(&format!("{}: first failure: {error}\n", f.strategy));
            }
        }
        out.push('\n');
        out.push_str(&self.verdict);
        out.push('\n');
        out
    }
}

fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs:.1} s")
    }
}

fn micros(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_follow_whole_second_expiries() {
        // Token of 2 s issued at t = 100.2: exp 103, stale at 102.5; then every 2 s.
        assert_eq!(expiry_epochs(103.0, 0.5, 2.0, 100.3, 112.3), 5);
        // 102.5, 104.5, 106.5, 108.5, 110.5 are inside [100.3, 112.3); 112.5 is not.
        assert_eq!(expiry_epochs(103.0, 0.5, 2.0, 100.3, 112.6), 6);
        // Already stale at the start: refreshed at the start, then whole seconds again.
        assert_eq!(expiry_epochs(101.0, 0.5, 2.0, 100.7, 105.0), 3);
        assert_eq!(expiry_epochs(101.0, 2.0, 2.0, 100.0, 200.0), 0);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(micros(0.42), "0.4 µs");
        assert_eq!(micros(2500.0), "2.5 ms");
    }
}
