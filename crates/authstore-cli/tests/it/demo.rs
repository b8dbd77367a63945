#![cfg(feature = "simulator")]
//! `authstore demo` end to end, small: real worker processes of the real binary under the three
//! strategies. Asserts correctness from the `--json` figures, never timings. Then the workers on
//! their own, spoken to in the worker protocol as the benchmarks speak it: N sessions on one
//! stale token (naive spends it N times, coordinated once), and a worker that refuses any start
//! signal but the protocol's.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use serde_json::Value;

// The worker protocol, the command line's own types (as the benchmarks use them): the reports
// below are read by the very types the workers write.
use authstore_cli::demo::protocol::{FromWorker, Launch, Mode, Strategy, ToWorker, WorkerReport};

const BIN: &str = env!("CARGO_BIN_EXE_authstore");
/// How long any one step of a worker may take (none comes near it).
const STEP: Duration = Duration::from_secs(60);

fn figures<'a>(summary: &'a Value, strategy: &str) -> &'a Value {
    summary["strategies"]
        .as_array()
        .expect("a strategies array")
        .iter()
        .find(|f| f["strategy"] == strategy)
        .unwrap_or_else(|| panic!("no figures for {strategy}"))
}

fn count(figures: &Value, field: &str) -> u64 {
    figures[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {figures}"))
}

#[test]
fn coordinated_sessions_spend_each_refresh_token_once_and_are_never_forced_to_log_in_again() {
    let started = Instant::now();
    let output = Command::new(BIN)
        .args([
            "demo",
            "--processes",
            "3",
            "--duration",
            "3",
            "--token-lifetime",
            "1",
            "--json",
        ])
        .env_remove("CODEX_HOME")
        .env_remove("AUTHSTORE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the demo starts");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the demo is bounded"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status.code()
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["processes"], 3);

    let coordinated = figures(&summary, "coordinated");
    assert_eq!(count(coordinated, "reuse_rejections"), 0);
    assert_eq!(count(coordinated, "rejected_refreshes"), 0);
    assert_eq!(count(coordinated, "families_revoked"), 0);
    assert_eq!(count(coordinated, "forced_relogins"), 0);
    assert_eq!(count(coordinated, "sessions_forced_to_log_in"), 0);
    assert_eq!(count(coordinated, "sessions"), 3);
    assert!(count(coordinated, "requests_served") > 0);
    assert_eq!(count(coordinated, "requests_failed"), 0);
    let epochs = count(coordinated, "expiry_epochs");
    let calls = count(coordinated, "token_endpoint_calls");
    assert!(epochs >= 1, "a 1 s token expires during a 3 s run");
    assert!(
        calls <= epochs + 1,
        "at most one token-endpoint call per expiry (+1 at the boundary): {calls} calls, {epochs} expiries"
    );
    assert_eq!(count(coordinated, "successful_refreshes"), calls);

    // The baselines ran the same workload and report the same figures.
    for strategy in ["naive", "reread"] {
        let baseline = figures(&summary, strategy);
        assert_eq!(count(baseline, "sessions"), 3);
        assert!(count(baseline, "token_endpoint_calls") >= 1);
        assert!(baseline["latency_us"]["p99"].is_number());
    }

    // Counts and settings only: no token ever reaches the output.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for text in [&*stdout, &*stderr] {
        assert!(!text.contains("rt_"), "a refresh token leaked: {text}");
        assert!(!text.contains("eyJ"), "a JWT leaked: {text}");
    }
}

#[test]
fn the_demo_refuses_bad_settings_with_a_usage_error() {
    for args in [
        &["demo", "--processes", "0"][..],
        &["demo", "--token-lifetime", "0"],
        &["demo", "--duration", "-1"],
        &["demo", "--duration", "0"],
    ] {
        let output = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the demo starts");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn the_hidden_worker_never_runs_on_the_users_home_or_against_a_remote_authority() {
    let home = tempfile::tempdir().expect("a temporary home");
    let cases: [(&[&str], Option<&str>); 3] = [
        (&["demo-worker", "--strategy", "naive"], None),
        (
            &[
                "--codex-home",
                "HOME",
                "demo-worker",
                "--strategy",
                "coordinated",
            ],
            Some("https://auth.example.com/oauth/token"),
        ),
        (
            &[
                "--codex-home",
                "HOME",
                "demo-worker",
                "--strategy",
                "naive",
                "--login-url",
                "http://192.0.2.1/sim/login",
            ],
            Some("http://127.0.0.1:9/oauth/token"),
        ),
    ];
    for (args, token_url) in cases {
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "HOME" {
                    home.path().to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .stdin(Stdio::null())
            .env_remove("CODEX_HOME");
        match token_url {
            Some(url) => command.env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", url),
            None => command.env_remove("CODEX_REFRESH_TOKEN_URL_OVERRIDE"),
        };
        let output = command.output().expect("the worker starts");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}: it never got ready");
    }
}

/// A `demo-worker` process, its stdout read line by line on a thread so that every wait is
/// bounded.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Everything the worker printed on stdout, to check that no token is in it.
    printed: String,
}

impl Worker {
    fn spawn(home: &Path, token_url: &str, launch: &Launch) -> Self {
        let mut child = Command::new(BIN)
            .arg("--codex-home")
            .arg(home)
            .args(launch.to_args())
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", token_url)
            .env_remove("CODEX_HOME")
            .env_remove("AUTHSTORE_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            printed: String::new(),
        }
    }

    fn message(&mut self) -> FromWorker {
        let line = self
            .lines
            .recv_timeout(STEP)
            .expect("the worker sends a line in time");
        self.printed.push_str(&line);
        self.printed.push('\n');
        FromWorker::decode(&line).unwrap_or_else(|e| panic!("not a protocol message: {e}"))
    }

    fn expect_ready(&mut self) {
        let message = self.message();
        assert_eq!(
            message,
            FromWorker::Ready {},
            "the first message says ready"
        );
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("the worker reads its stdin");
    }

    fn report(&mut self) -> WorkerReport {
        match self.message() {
            FromWorker::Report(report) => report,
            other => panic!("expected a report, got {}", other.kind()),
        }
    }

    /// Closes stdin and waits (bounded) for the exit; returns the status and stderr.
    fn finish(mut self) -> (ExitStatus, String, String) {
        self.stdin.take();
        let (sender, exited) = mpsc::channel();
        let mut child = self.child;
        std::thread::spawn(move || {
            let output = child.wait().map(|status| {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                (status, stderr)
            });
            let _ = sender.send(output);
        });
        let (status, stderr) = exited
            .recv_timeout(STEP)
            .expect("the worker exits in time")
            .expect("the worker can be waited for");
        (status, stderr, self.printed)
    }
}

/// A fresh authority (family revocation on reuse), and a Codex home holding one of its logins
/// whose access token is already stale (60 s left, refresh window 5 minutes).
fn stale_login(runtime: &tokio::runtime::Runtime) -> (Simulator, tempfile::TempDir) {
    let simulator = runtime
        .block_on(Simulator::start(SimulatorConfig {
            family_revocation: true,
            ..SimulatorConfig::default()
        }))
        .expect("the token authority starts");
    simulator.set_access_token_lifetime(Duration::from_secs(60));
    let login = simulator.auth_json(&Identity::new("acct-test", "user-test"));
    simulator.set_access_token_lifetime(Duration::from_secs(3600));
    let home = tempfile::tempdir().expect("a temporary home");
    std::fs::write(home.path().join("auth.json"), login.to_string()).expect("login written");
    (simulator, home)
}

/// N sessions of `strategy`, each set up on the stale login, asked once at the same signal.
fn ask_once(strategy: Strategy, n: usize) -> (authstore_simulator::Stats, Vec<WorkerReport>) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the authority");
    let (simulator, home) = stale_login(&runtime);
    let launch = Launch {
        refresh_window_ms: 300_000,
        ..Launch::new(strategy, Mode::Once)
    };
    let mut workers: Vec<Worker> = (0..n)
        .map(|_| Worker::spawn(home.path(), &simulator.token_url(), &launch))
        .collect();
    for worker in &mut workers {
        worker.expect_ready();
    }
    for worker in &mut workers {
        worker.send(&ToWorker::Go {}.encode());
    }
    let mut reports = Vec::new();
    for mut worker in workers {
        reports.push(worker.report());
        let (status, stderr, printed) = worker.finish();
        assert!(status.success(), "the worker exits 0: {status}; {stderr}");
        for text in [&*printed, &*stderr] {
            assert!(!text.contains("rt_"), "a refresh token leaked");
            assert!(!text.contains("eyJ"), "a JWT leaked");
        }
    }
    let stats = simulator.stats();
    runtime.block_on(simulator.shutdown());
    (stats, reports)
}

fn sum(reports: &[WorkerReport], count: fn(&WorkerReport) -> u64) -> u64 {
    reports.iter().map(count).sum()
}

#[test]
fn naive_sessions_on_one_stale_token_each_spend_it_and_all_but_one_must_log_in_again() {
    let (stats, reports) = ask_once(Strategy::Naive, 3);
    // Each presents the refresh token it read at startup: the first rotates it, the second is
    // refused as reused (revoking the family), the third finds the family revoked.
    assert_eq!(stats.refresh_calls, 3);
    assert_eq!(stats.successful_refreshes, 1);
    assert_eq!(stats.reuse_rejections, 1);
    assert_eq!(stats.rejected_refreshes, 2);
    assert_eq!(stats.families_revoked, 1);
    assert_eq!(sum(&reports, |r| r.refreshed), 1);
    assert_eq!(sum(&reports, |r| r.served), 1);
    assert_eq!(sum(&reports, |r| r.forced_relogins), 2);
    assert_eq!(sum(&reports, |r| r.adopted), 0);
    assert_eq!(reports.iter().filter(|r| r.fresh_at_end).count(), 1);
}

#[test]
fn coordinated_sessions_on_one_stale_token_spend_it_once_and_all_end_fresh() {
    let (stats, reports) = ask_once(Strategy::Coordinated, 3);
    assert_eq!(stats.refresh_calls, 1);
    assert_eq!(stats.successful_refreshes, 1);
    assert_eq!(stats.reuse_rejections, 0);
    assert_eq!(stats.rejected_refreshes, 0);
    assert_eq!(sum(&reports, |r| r.refreshed), 1);
    assert_eq!(sum(&reports, |r| r.served), 3);
    assert_eq!(sum(&reports, |r| r.failed), 0);
    assert_eq!(sum(&reports, |r| r.forced_relogins), 0);
    assert!(reports.iter().all(|r| r.fresh_at_end));
}

#[test]
fn a_worker_that_reads_anything_but_the_start_signal_stops_without_asking() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the authority");
    let (simulator, home) = stale_login(&runtime);
    for line in [
        "go",
        r#"{"message":"go","now":true}"#,
        r#"{"message":"ready"}"#,
    ] {
        let launch = Launch::new(Strategy::Naive, Mode::Once);
        let mut worker = Worker::spawn(home.path(), &simulator.token_url(), &launch);
        worker.expect_ready();
        worker.send(line);
        let (status, stderr, printed) = worker.finish();
        assert_eq!(status.code(), Some(1), "{line}: {stderr}");
        assert!(stderr.contains("start signal"), "{line}: {stderr}");
        assert_eq!(printed.lines().count(), 1, "{line}: nothing after ready");
    }
    assert_eq!(simulator.stats().refresh_calls, 0, "no worker asked");
    runtime.block_on(simulator.shutdown());
}
