//! What reading the login costs in each store Codex keeps it in: `authstore token` (a fresh
//! token: a read, no refresh) in a file home, a keyring home and a home with Codex's encrypted
//! secrets file, and beside them Codex's own load of the same login (`codex login status`).
//!
//! Each row runs the command as a separate process, back to back, and reads the child's wall
//! time, CPU time (user + system) and peak memory (`wait4`'s `ru_maxrss`). The baseline is the
//! file home's `authstore token`, in the same run. The encrypted homes' files are written by
//! `authstore login` of the release binary, at age's default scrypt work factor (about a second
//! of this machine's time, as Codex's own writes); their `log2 N` is printed.
//!
//! It needs a Secret Service: when not already inside one, it runs itself again inside
//! `dbus-run-session` with gnome-keyring (as `scripts/keyring-tests.sh` does; HOME and the
//! runtime directory on a scratch directory) and, where it may (`unshare -n`, as root), in a
//! network namespace with nothing in it, so that the Codex rows can run: real Codex runs
//! nowhere else. Codex is `target/codex-0.171.0` (installed by `scripts/codex-interop.sh`) or
//! `CODEX_BIN`; without it the Codex rows are left out, saying so.
//!
//! `cargo bench -p authstore-cli --bench credential_stores` (about a minute; `-- --quick`: 3
//! runs a row instead of 9). Linux only.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::json;

const INNER: &str = "AUTHSTORE_BENCH_STORES_INNER";
const NETNS: &str = "AUTHSTORE_BENCH_STORES_NETNS";

fn main() {
    let Some(options) = common::options("credential_stores") else {
        return;
    };
    if std::env::var_os(INNER).is_none() {
        outer();
        return;
    }
    common::print_machine();
    let runs = if options.quick { 3 } else { 9 };
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_authstore"));
    let scratch = common::scratch_dir("credential-stores-");
    let login = scratch.path().join("login.json");
    let document = common::realistic_document();
    std::fs::write(&login, serde_json::to_vec(&document).unwrap()).unwrap();

    let homes = [
        ("file", ""),
        ("keyring", "cli_auth_credentials_store = \"keyring\"\n"),
        (
            "encrypted",
            "cli_auth_credentials_store = \"keyring\"\n[features]\nsecret_auth_storage = true\n",
        ),
    ];
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let mut baseline = None;
    for (store, config) in homes {
        let home = scratch.path().join(store);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("config.toml"), config).unwrap();
        let made = Command::new(&binary)
            .arg("--codex-home")
            .arg(&home)
            .args(["login", "--from"])
            .arg(&login)
            .output()
            .expect("authstore login runs");
        assert!(made.status.success(), "login into the {store} home failed");
        let work_factor = secrets_work_factor(&home);
        let mut token = Command::new(&binary);
        token.arg("--codex-home").arg(&home).arg("token");
        let sample = measure(&mut token, runs);
        let base = *baseline.get_or_insert(sample);
        let mut record = |command: &str, sample: Sample| {
            let ratio = (command != "authstore token" || store != "file")
                .then(|| sample.wall_ms / base.wall_ms);
            rows.push(row(
                &format!("{command} ({store})"),
                &sample,
                ratio,
                work_factor,
            ));
            results.push(json!({
                "command": command, "store": store, "runs": runs,
                "wall_ms": sample.wall_ms, "cpu_ms": sample.cpu_ms,
                "max_rss_mib": sample.max_rss_mib, "vs_file": ratio,
                "scrypt_log_n": work_factor,
            }));
        };
        record("authstore token", sample);
        if store == "keyring" {
            continue;
        }
        match codex_binary() {
            Some(codex) if std::env::var_os(NETNS).is_some() => {
                let mut status = Command::new(&codex);
                // A fresh login needs no refresh; should Codex try one, it goes to a closed
                // loopback port of a namespace with nothing else in it.
                status
                    .args(["login", "status"])
                    .env("CODEX_HOME", &home)
                    .env(
                        "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
                        "http://127.0.0.1:9/oauth/token",
                    );
                record("codex login status", measure(&mut status, runs));
            }
            Some(_) => println!("(Codex rows left out: no network namespace of their own)"),
            None => println!(
                "(Codex rows left out: no Codex; run scripts/codex-interop.sh once, or set CODEX_BIN)"
            ),
        }
    }
    let mut table = vec![vec![
        "command (store)".to_owned(),
        "wall, median".to_owned(),
        "CPU, median".to_owned(),
        "peak memory".to_owned(),
        "vs authstore token (file)".to_owned(),
        "scrypt log2 N".to_owned(),
    ]];
    table.extend(rows);
    common::print_table(&table);
    let path = common::write_results(
        "credential_stores",
        options,
        json!({ "runs": runs, "rows": results }),
    );
    println!("results: {}", path.display());
}

/// Runs this benchmark again inside a D-Bus session with gnome-keyring (and, where it may, a
/// network namespace of its own).
fn outer() {
    for tool in ["dbus-run-session", "gnome-keyring-daemon", "secret-tool"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |status| !status.success())
        {
            println!(
                "credential_stores: skipped: {tool} is not installed (Debian: dbus, gnome-keyring, \
                 libsecret-tools; scripts/keyring-tests.sh installs them)"
            );
            return;
        }
    }
    let scratch = common::scratch_dir("credential-stores-session-");
    let home = scratch.path().join("home");
    let runtime = scratch.path().join("runtime");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let me = std::env::current_exe().expect("this benchmark's path");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let script = "echo -n bench | gnome-keyring-daemon --unlock --components=secrets >/dev/null \
                  && gnome-keyring-daemon --start --components=secrets >/dev/null \
                  && for _ in $(seq 50); do \
                       echo -n p | secret-tool store --label=p service authstore-probe username p \
                         2>/dev/null && break; sleep 0.1; done; exec \"$@\"";
    let session = |netns: bool| {
        let mut command = if netns {
            let mut command = Command::new("unshare");
            command.args(["-n", "--", "dbus-run-session", "--"]);
            command
        } else {
            let mut command = Command::new("dbus-run-session");
            command.arg("--");
            command
        };
        command
            .args(["sh", "-c", script, "sh"])
            .arg(&me)
            .args(&args)
            .env(INNER, "1")
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env(
                "CARGO_HOME",
                std::env::var_os("CARGO_HOME").unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cargo")
                        .into_os_string()
                }),
            )
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        if netns {
            command.env(NETNS, "1");
        }
        command
    };
    // In a namespace with no network when it may make one (Codex runs there and nowhere else).
    let netns = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|status| status.success());
    let status = session(netns).status().expect("dbus-run-session runs");
    assert!(
        status.success(),
        "the benchmark failed inside its D-Bus session"
    );
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    max_rss_mib: f64,
}

/// Medians of `runs` runs of `command` (which must succeed), and the largest peak memory.
fn measure(command: &mut Command, runs: usize) -> Sample {
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut rss: f64 = 0.0;
    for _ in 0..runs {
        let started = Instant::now();
        let child = command.spawn().expect("the command starts");
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our child, not yet waited for; both pointers are valid.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let wall = started.elapsed();
        assert_eq!(waited, pid, "wait4");
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{command:?} failed"
        );
        std::mem::forget(child);
        let cpu = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
        walls.push(wall.as_secs_f64() * 1e3);
        cpus.push(cpu(usage.ru_utime) + cpu(usage.ru_stime));
        rss = rss.max(usage.ru_maxrss as f64 / 1024.0);
    }
    Sample {
        wall_ms: median(&mut walls),
        cpu_ms: median(&mut cpus),
        max_rss_mib: rss,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn row(name: &str, sample: &Sample, ratio: Option<f64>, work_factor: Option<u8>) -> Vec<String> {
    vec![
        name.to_owned(),
        format!("{:.1} ms", sample.wall_ms),
        format!("{:.1} ms", sample.cpu_ms),
        format!("{:.0} MiB", sample.max_rss_mib),
        ratio.map_or("baseline".to_owned(), |r| format!("{r:.1}×")),
        work_factor.map_or("-".to_owned(), |n| n.to_string()),
    ]
}

/// The scrypt `log2 N` in the header of the home's secrets file, when it has one.
fn secrets_work_factor(home: &Path) -> Option<u8> {
    let bytes = std::fs::read(home.join("secrets").join("codex_auth.age")).ok()?;
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    let line = header.lines().find(|line| line.starts_with("-> scrypt "))?;
    line.split(' ').nth(3)?.parse().ok()
}

fn codex_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CODEX_BIN") {
        return Some(PathBuf::from(path));
    }
    let vendor =
        common::target_dir().join("codex-0.171.0/node_modules/@openai/codex-linux-x64/vendor");
    std::fs::read_dir(vendor)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin/codex"))
        .find(|path| path.is_file())
}
