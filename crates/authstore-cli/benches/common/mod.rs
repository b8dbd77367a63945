//! What the benchmarks share: options, the machine description, statistics, tables, JSON
//! results in `target/bench-results/`, and worker processes of the real binary.
#![allow(dead_code)] // each benchmark uses a different subset

pub mod gated;
/// The worker protocol: the command line's own types (`authstore_cli::demo::protocol`), so that
/// the benchmarks and the workers they start cannot disagree on it.
pub use authstore_cli::demo::protocol;
pub mod svg;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use protocol::{FromWorker, Launch, ToWorker, WorkerReport};

/// Command-line options every benchmark understands (after `cargo bench --bench NAME --`).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `--quick` (or `AUTHSTORE_BENCH_QUICK=1`): fewer iterations, smaller N.
    pub quick: bool,
    /// `--plot`: only regenerate the plots from the last results.
    pub plot: bool,
}

/// Parses the options; `None` when the binary was not started by `cargo bench` (for example by
/// `cargo test --all-targets`), in which case the benchmark should not run.
pub fn options(name: &str) -> Option<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if !has("--bench") {
        println!("{name}: a benchmark; run it with `cargo bench --bench {name}`");
        return None;
    }
    let quick = has("--quick")
        || std::env::var("AUTHSTORE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    Some(Options {
        quick,
        plot: has("--plot"),
    })
}

/// The target directory (where `target/bench-results/` goes).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // Set by Cargo for benchmarks: `<target>/tmp`.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_owned()
}

/// A scratch directory on the same filesystem as the target directory (a real disk, unlike a
/// tmpfs `/tmp` on some machines).
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = fs::create_dir_all(base);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .or_else(|_| tempfile::Builder::new().prefix(prefix).tempdir())
        .expect("a scratch directory can be created")
}

/// Writes `results` to `target/bench-results/NAME.json` with the machine description.
pub fn write_results(name: &str, options: Options, results: Value) -> PathBuf {
    let dir = target_dir().join("bench-results");
    fs::create_dir_all(&dir).expect("target/bench-results can be created");
    let path = dir.join(format!("{name}.json"));
    let document = json!({
        "bench": name,
        "quick": options.quick,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "machine": machine(),
        "results": results,
    });
    let text = serde_json::to_string_pretty(&document).expect("results encode");
    fs::write(&path, text + "\n").expect("results can be written");
    println!("\nresults written to {}", path.display());
    path
}

/// Reads `target/bench-results/NAME.json`.
pub fn read_results(name: &str) -> Result<Value, String> {
    let path = target_dir()
        .join("bench-results")
        .join(format!("{name}.json"));
    let text = fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e}; run the benchmark first",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// The machine, as far as Linux tells: CPUs, model, memory, kernel, filesystems, load.
pub fn machine() -> Value {
    let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned());
    let memory_kib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok());
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "memory_gib": memory_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "tmp_filesystem": filesystem_of(Path::new("/tmp")),
        "scratch_filesystem": filesystem_of(Path::new(env!("CARGO_TARGET_TMPDIR"))),
        "load_average": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

/// The filesystem type of the mount holding `path` (from `/proc/mounts`).
pub fn filesystem_of(path: &Path) -> Option<String> {
    let path = fs::canonicalize(path).ok()?;
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount = fields.next()?;
            let kind = fields.next()?;
            path.starts_with(mount)
                .then(|| (mount.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

/// Prints the machine in one line.
pub fn print_machine() {
    let m = machine();
    println!(
        "machine: {} CPUs ({}), {} GiB, Linux {}, /tmp on {}, scratch on {}, load {}",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("unknown"),
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or("?"),
        m["tmp_filesystem"].as_str().unwrap_or("?"),
        m["scratch_filesystem"].as_str().unwrap_or("?"),
        m["load_average"].as_str().unwrap_or("?"),
    );
}

/// Summary statistics of samples (in any unit).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if sorted.is_empty() {
                return f64::NAN;
            }
            let rank = (q * (sorted.len() - 1) as f64).round() as usize;
            sorted[rank.min(sorted.len() - 1)]
        };
        Self {
            count: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
            p10: at(0.10),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            min: at(0.0),
            max: at(1.0),
        }
    }

    pub fn to_json(self) -> Value {
        json!({
            "count": self.count, "mean": self.mean, "p10": self.p10, "p50": self.p50,
            "p90": self.p90, "p99": self.p99, "min": self.min, "max": self.max,
        })
    }
}

/// Prints rows as an aligned table; the first row is the header.
pub fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
        if i == 0 {
            println!(
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1))
            );
        }
    }
}

/// Nanoseconds for humans.
pub fn nanos(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes on one machine (unlike
/// `Instant`, whose values cannot be sent to another process).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The real binary, built by Cargo for benchmarks.
pub const BIN: &str = env!("CARGO_BIN_EXE_authstore");

/// A worker process of the real binary (`authstore demo-worker`), spoken to in the [`protocol`]:
/// it says it is ready, starts on the start signal, and ends with its report.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr_path: PathBuf,
}

impl Worker {
    /// Starts `authstore --codex-home HOME demo-worker ...` with `launch` against `token_url`;
    /// its stderr goes to a file in `logs`, shown if it fails.
    pub fn spawn(home: &Path, token_url: &str, launch: &Launch, logs: &Path) -> Self {
        let stderr_path = logs.join(format!("worker-{}.log", unique()));
        let stderr = File::create(&stderr_path).expect("a worker log can be created");
        let mut child = Command::new(BIN)
            .arg("--codex-home")
            .arg(home)
            .args(launch.to_args())
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", token_url)
            .env_remove("CODEX_HOME")
            .env_remove("AUTHSTORE_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the authstore binary starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
            stderr_path,
        }
    }

    /// The next message; a line that is not one (a field missing or renamed, say) fails the
    /// benchmark.
    fn message(&mut self, what: &str) -> FromWorker {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => self.fail(what),
        }
        match FromWorker::decode(&line) {
            Ok(message) => message,
            Err(error) => panic!("a worker sent a line that cannot be read ({error})"),
        }
    }

    pub fn wait_ready(&mut self) {
        match self.message("ready") {
            FromWorker::Ready {} => {}
            other => panic!("a worker sent {} instead of ready", other.kind()),
        }
    }

    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("started once");
        let line = format!("{}\n", ToWorker::Go {}.encode());
        if stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .is_err()
        {
            self.fail("the start signal");
        }
    }

    /// The worker's report; it must then exit 0.
    pub fn report(mut self) -> WorkerReport {
        let report = match self.message("its report") {
            FromWorker::Report(report) => report,
            other => panic!("a worker sent {} instead of its report", other.kind()),
        };
        self.stdin.take();
        let status = self.child.wait().expect("a worker can be waited for");
        if !status.success() {
            self.fail("exit status 0");
        }
        let _ = fs::remove_file(&self.stderr_path);
        report
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        let mut stderr = String::new();
        if let Ok(mut file) = File::open(&self.stderr_path) {
            let _ = file.read_to_string(&mut stderr);
        }
        panic!("a worker stopped before {what} ({status:?}); its stderr:\n{stderr}");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts `count` workers, waits until all are ready, starts them together, and returns their
/// reports with the wall-clock time (ns since the epoch) just before the first start signal.
pub fn run_workers(
    count: usize,
    home: &Path,
    token_url: &str,
    launch: &Launch,
    logs: &Path,
) -> (u64, Vec<WorkerReport>) {
    let mut workers: Vec<Worker> = (0..count)
        .map(|_| Worker::spawn(home, token_url, launch, logs))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for worker in &mut workers {
        worker.wait_ready();
        assert!(Instant::now() < deadline, "workers took too long to start");
    }
    let go = unix_ns();
    for worker in &mut workers {
        worker.go();
    }
    let reports = workers.into_iter().map(Worker::report).collect();
    (go, reports)
}

/// Sums a count over worker reports: `sum(&reports, |r| r.failed)`.
pub fn sum(reports: &[WorkerReport], count: fn(&WorkerReport) -> u64) -> u64 {
    reports.iter().map(count).sum()
}

/// Milliseconds from `go` (ns since the epoch, from [`run_workers`]) until each worker was done.
pub fn done_ms(go: u64, reports: &[WorkerReport]) -> Vec<f64> {
    reports
        .iter()
        .map(|r| r.done_at_unix_ns.saturating_sub(go) as f64 / 1e6)
        .collect()
}

/// An auth.json the size of a real one (a Codex id token carries many claims), fresh for a year.
pub fn realistic_document() -> authstore::document::AuthDocument {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(std::time::Duration::ZERO)
        .as_secs();
    let auth_claims = json!({
        "chatgpt_account_id": "3f0b2c9e-5a41-4d7e-9b1a-2c6d8e4f7a10",
        "chatgpt_user_id": "user-Zk4vQx8rT2mN6pL9sW1yB3cD",
        "user_id": "user-Zk4vQx8rT2mN6pL9sW1yB3cD",
        "chatgpt_plan_type": "plus",
        "chatgpt_subscription_active_start": "2026-01-01T00:00:00+00:00",
        "chatgpt_subscription_active_until": "2027-01-01T00:00:00+00:00",
        "organizations": [{"id": "org-7hJk2LmN4pQr6StU8vWx", "is_default": true, "role": "owner", "title": "Personal"}],
    });
    let id_token = authstore::document::unsigned_jwt(&json!({
        "aud": ["app_EMoamEEZ73f0CkXaXp7hrann"], "auth_provider": "google",
        "email": "someone@example.com", "email_verified": true, "exp": now + 31_536_000,
        "iat": now, "iss": "https://auth.openai.com", "jti": "0b8c6d1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e",
        "sub": "google-oauth2|104857392016485739201", "https://api.openai.com/auth": auth_claims,
    }));
    let access_token = authstore::document::unsigned_jwt(&json!({
        "aud": ["https://api.openai.com/v1"], "client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
        "exp": now + 31_536_000, "iat": now, "iss": "https://auth.openai.com",
        "jti": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "scp": ["openid", "profile", "email", "offline_access"],
        "sub": "google-oauth2|104857392016485739201", "https://api.openai.com/auth": auth_claims,
        "https://api.openai.com/profile": {"email": "someone@example.com", "email_verified": true},
    }));
    let value = json!({
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id_token,
            "access_token": access_token,
            "refresh_token": format!("rt_{}", "x".repeat(60)),
            "account_id": "3f0b2c9e-5a41-4d7e-9b1a-2c6d8e4f7a10",
        },
        "last_refresh": "2026-11-29T14:00:00.000000Z",
    });
    authstore::document::AuthDocument::parse(value.to_string().as_bytes())
        .expect("the fixture parses")
}
