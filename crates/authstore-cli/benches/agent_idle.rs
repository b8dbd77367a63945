//! What `authstore agent` costs at rest: context switches (every wake-up of every thread) of
//! real processes of the release binary, with a fresh token, over a window of minutes.
//!
//! Rows, all measured over the same window, side by side:
//! 1. **baseline**: `authstore watch`, the same binary and runtime waiting on the same directory
//!    watch with nothing scheduled: the floor for a process of this binary that waits.
//! 2. **agent**: `authstore agent`, its token three hours from expiry (its next look is its
//!    safety-net interval away, 15 min).
//! 3. **agent --broker**: the same, also the home's token endpoint, idle in `accept`.
//! 4. **control**: a shell that wakes once a second (`while :; do sleep 1; done`), to show the
//!    counting sees wake-ups: about 3,600 an hour or more.
//! 5. With `AUTHSTORE_BENCH_KEYRING=1`, in a session with a Secret Service of its own
//!    (`bash scripts/keyring-tests.sh --bench`, gnome-keyring in a private D-Bus session):
//!    **watch, keyring** and **agent, keyring**, the login in Codex's keyring item
//!    (`cli_auth_credentials_store = "keyring"`, seeded with `secret-tool`), which they learn
//!    of from the Secret Service's signals. Before the signals the agent looked at the item
//!    every 30 s and `watch` every 250 ms.
//!
//! Each process gets a home of its own and a settling time first (a runtime's blocking threads
//! linger 10 s after their last job). Counting: every second this process reads
//! `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of every thread in
//! `/proc/PID/task/*/status` (reading `/proc` does not wake the process read); a thread that
//! exits during the window counts what it did up to the last reading. The target (issue: at
//! most 60 wake-ups an hour) is printed beside the agent's rows, extrapolated from the window.
//!
//! `cargo bench -p authstore-cli --bench agent_idle` (10 minutes; `-- --quick`, or
//! `AUTHSTORE_BENCH_QUICK=1`: 2 minutes). Linux only (`/proc`).
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use serde_json::{Value, json};

/// The target, for the agent with a fresh token.
const TARGET_PER_HOUR: f64 = 60.0;
/// Before the window: the start-up's threads and timers wind down.
const SETTLE: Duration = Duration::from_secs(15);

fn main() {
    let Some(options) = common::options("agent_idle") else {
        return;
    };
    common::print_machine();
    let window = if options.quick {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(600)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the token authority");
    let simulator = runtime
        .block_on(Simulator::start(SimulatorConfig {
            access_token_lifetime: Duration::from_secs(3 * 3600),
            ..SimulatorConfig::default()
        }))
        .expect("the token authority starts");
    let logs = common::scratch_dir("agent-idle-logs-");

    let mut rows: Vec<(&str, &[&str], Login)> = vec![
        ("baseline: watch", &["watch", "--json"], Login::File),
        ("agent", &["agent", "--json"], Login::File),
        (
            "agent --broker",
            &["agent", "--json", "--broker", "--listen", "127.0.0.1:0"],
            Login::File,
        ),
        ("control: once a second", &[], Login::File),
    ];
    if std::env::var("AUTHSTORE_BENCH_KEYRING").is_ok_and(|v| v == "1") {
        rows.push(("watch, keyring", &["watch", "--json"], Login::Keyring));
        rows.push(("agent, keyring", &["agent", "--json"], Login::Keyring));
    } else {
        println!(
            "(keyring rows: set AUTHSTORE_BENCH_KEYRING=1 in a session with a Secret Service, or run `bash scripts/keyring-tests.sh --bench`)"
        );
    }
    let mut processes: Vec<Idle> = rows
        .iter()
        .map(|(name, args, login)| Idle::start(name, args, *login, &simulator, logs.path()))
        .collect();
    println!(
        "\nsettling {} s, then counting over {} s",
        SETTLE.as_secs(),
        window.as_secs()
    );
    std::thread::sleep(SETTLE);
    for process in &mut processes {
        process.read();
        process.first = process.last.clone();
    }
    let started = Instant::now();
    while started.elapsed() < window {
        std::thread::sleep(Duration::from_secs(1));
        for process in &mut processes {
            process.read();
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    let mut table = vec![vec![
        "process".to_owned(),
        "threads seen".to_owned(),
        "switches".to_owned(),
        "per hour".to_owned(),
        "target".to_owned(),
    ]];
    let mut results = Vec::new();
    for process in &mut processes {
        let switches = process.switches();
        let per_hour = switches as f64 * 3600.0 / seconds;
        let target = process.name.starts_with("agent").then_some(TARGET_PER_HOUR);
        table.push(vec![
            process.name.to_owned(),
            process.last.len().to_string(),
            switches.to_string(),
            format!("{per_hour:.0}"),
            target.map_or("-".into(), |t| {
                format!("<= {t:.0} {}", if per_hour <= t { "met" } else { "MISSED" })
            }),
        ]);
        results.push(json!({
            "process": process.name,
            "threads": process.last.len(),
            "switches": switches,
            "seconds": seconds,
            "per_hour": per_hour,
            "target_per_hour": target,
        }));
        process.stop();
    }
    println!();
    common::print_table(&table);
    assert_eq!(
        simulator.stats().successful_refreshes,
        0,
        "nothing was due: every token stayed fresh"
    );
    runtime.block_on(simulator.shutdown());
    common::write_results(
        "agent_idle",
        options,
        json!({"window_secs": seconds, "rows": results}),
    );
}

/// Where a row's login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    /// `auth.json`.
    File,
    /// Codex's keyring item, written by `secret-tool` as Codex's `keyring` crate writes it.
    Keyring,
}

/// Stores `login` as Codex's item for `home`, through libsecret's `secret-tool`.
fn seed_keyring_item(home: &Path, login: &Value) {
    use std::io::Write;
    let account = format!("cli|{}", authstore::store::home_fingerprint(home));
    let mut child = Command::new("secret-tool")
        .arg("store")
        .arg(format!(
            "--label={account}@Codex Auth:default (keyring v3.6.3)"
        ))
        .args([
            "service",
            "Codex Auth",
            "username",
            &account,
            "target",
            "default",
        ])
        .args(["application", "rust-keyring"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("secret-tool (libsecret-tools) runs");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(login.to_string().as_bytes())
        .expect("the login is written to secret-tool");
    assert!(
        child.wait().expect("secret-tool ends").success(),
        "secret-tool stored the item (is a Secret Service running?)"
    );
}

/// One idle process and its threads' context switches.
struct Idle {
    name: &'static str,
    child: Child,
    _home: tempfile::TempDir,
    /// Per thread id: (voluntary + involuntary) at the first reading of the window.
    first: HashMap<u32, u64>,
    /// Per thread id: at the latest reading.
    last: HashMap<u32, u64>,
}

impl Idle {
    fn start(
        name: &'static str,
        args: &[&str],
        store: Login,
        simulator: &Simulator,
        logs: &Path,
    ) -> Self {
        let home = common::scratch_dir("agent-idle-home-");
        let login = simulator.auth_json(&Identity::new("acct-idle", "user-idle"));
        if store == Login::Keyring {
            fs::write(
                home.path().join("config.toml"),
                "cli_auth_credentials_store = \"keyring\"\n",
            )
            .expect("config.toml is written");
            seed_keyring_item(home.path(), &login);
        } else {
            let path = home.path().join("auth.json");
            fs::write(&path, login.to_string()).expect("the login is written");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .expect("auth.json is 0600");
        }
        let stderr = File::create(logs.join(format!("{}.log", common::unix_ns())))
            .expect("a log can be created");
        let mut command = if args.is_empty() {
            let mut shell = Command::new("sh");
            shell.args(["-c", "while :; do sleep 1; done"]);
            shell
        } else {
            let mut authstore = Command::new(common::BIN);
            authstore.arg("--codex-home").arg(home.path()).args(args);
            authstore
        };
        let mut child = command
            .env_remove("CODEX_HOME")
            .env_remove("AUTHSTORE_LOG")
            .env_remove("AUTHSTORE_STORE")
            .env_remove("AUTHSTORE_STORE_FILE")
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", simulator.token_url())
            .env("AUTHSTORE_UPSTREAM_TOKEN_URL", simulator.token_url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the authstore binary starts");
        // Ready once it said so: the agent's "active" line; `watch` prints nothing until a
        // change, so it gets the settling time alone.
        if name.starts_with("agent") {
            let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            let mut line = String::new();
            loop {
                line.clear();
                let read = stdout.read_line(&mut line).expect("the agent's output");
                assert!(read > 0, "{name} stopped before it became active");
                let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if event["event"] == "active" {
                    break;
                }
            }
            // The rest of its output goes nowhere: it writes one line per event, and at rest
            // there are none.
            std::thread::spawn(move || for _ in stdout.lines() {});
        }
        Self {
            name,
            child,
            _home: home,
            first: HashMap::new(),
            last: HashMap::new(),
        }
    }

    /// Reads every thread's counters.
    fn read(&mut self) {
        let tasks = format!("/proc/{}/task", self.child.id());
        let entries = fs::read_dir(&tasks)
            .unwrap_or_else(|error| panic!("{}: {tasks}: {error} (did it exit?)", self.name));
        for entry in entries.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
                continue; // exited between the listing and the read
            };
            let switches: u64 = status
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches:")
                        || l.starts_with("nonvoluntary_ctxt_switches:")
                })
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            self.last.insert(tid, switches);
        }
    }

    /// Switches during the window, over every thread seen (born during it: from zero).
    fn switches(&self) -> u64 {
        self.last
            .iter()
            .map(|(tid, last)| last - self.first.get(tid).copied().unwrap_or(0))
            .sum()
    }

    fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}
