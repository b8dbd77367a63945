//! Lock hand-off to a waiter in another process: authstore's transaction lock
//! (`FileStore::begin`, dropped to release) against raw `flock(2)` on a file of its own.
//!
//! Each iteration: this process holds the lock; the waiter process is told to acquire it and
//! blocks; after a pause (so that the waiter is surely asleep in the kernel) this process takes a
//! CLOCK_MONOTONIC timestamp and releases; the waiter takes one as soon as its acquire returns and
//! sends it back. The hand-off latency is the difference: wake-up, return to the caller, and, for
//! authstore, the in-process bookkeeping around the system call (clearing and writing the holder
//! note, the helper thread's hand-back to the async waiter). The two variants alternate, each
//! with its own waiter process and lock file.
//!
//! `cargo bench --bench lock_handoff` (add `-- --quick` for fewer iterations).

mod common;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use authstore::store::{FileStore, StoreOptions};
use serde_json::json;

/// Set in the environment of a waiter process: which lock it takes.
const ROLE: &str = "AUTHSTORE_BENCH_LOCK_WAITER";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    Authstore,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Raw => "raw",
            Variant::Authstore => "authstore",
        }
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let home = PathBuf::from(std::env::args().nth(1).expect("the lock directory"));
        waiter(
            if role == "raw" {
                Variant::Raw
            } else {
                Variant::Authstore
            },
            &home,
        );
        return;
    }
    let Some(options) = common::options("lock_handoff") else {
        return;
    };
    common::print_machine();
    let iterations = if options.quick { 200 } else { 2000 };
    let pause = Duration::from_millis(2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let raw_dir = common::scratch_dir("lock-raw-");
    let authstore_dir = common::scratch_dir("lock-authstore-");
    let mut raw = Waiter::start(Variant::Raw, raw_dir.path());
    let mut ours = Waiter::start(Variant::Authstore, authstore_dir.path());
    let raw_lock = open_raw(raw_dir.path());
    let store = FileStore::new(authstore_dir.path(), StoreOptions::default());

    let mut raw_samples = Vec::new();
    let mut our_samples = Vec::new();
    // How long the release call itself takes in the holder (part of the hand-off).
    let mut raw_release = Vec::new();
    let mut our_release = Vec::new();
    for i in 0..iterations + 20 {
        // Raw flock: hold, let the waiter block, release.
        flock(&raw_lock, libc::LOCK_EX);
        raw.send("go");
        std::thread::sleep(pause);
        let released = common::monotonic_ns();
        flock(&raw_lock, libc::LOCK_UN);
        let raw_release_returned = common::monotonic_ns();
        let acquired = raw.timestamp();

        // authstore: the same with the transaction lock.
        let transaction = runtime.block_on(store.begin()).expect("auth.lock acquired");
        ours.send("go");
        std::thread::sleep(pause);
        let our_released = common::monotonic_ns();
        drop(transaction);
        let our_release_returned = common::monotonic_ns();
        let our_acquired = ours.timestamp();

        if i >= 20 {
            // The first rounds warm up caches and the waiters' runtimes.
            raw_samples.push(acquired.saturating_sub(released) as f64);
            our_samples.push(our_acquired.saturating_sub(our_released) as f64);
            raw_release.push(raw_release_returned.saturating_sub(released) as f64);
            our_release.push(our_release_returned.saturating_sub(our_released) as f64);
        }
    }
    raw.stop();
    ours.stop();

    let raw = common::Summary::of(&raw_samples);
    let ours = common::Summary::of(&our_samples);
    let raw_release = common::Summary::of(&raw_release);
    let our_release = common::Summary::of(&our_release);
    let rows: Vec<Vec<String>> = [
        ("raw flock (baseline)", raw, raw_release),
        ("authstore auth.lock", ours, our_release),
    ]
    .iter()
    .map(|(name, s, release)| {
        vec![
            (*name).to_owned(),
            common::nanos(s.p50),
            common::nanos(s.p10),
            common::nanos(s.p90),
            common::nanos(s.p99),
            common::nanos(s.mean),
            common::nanos(release.p50),
        ]
    })
    .collect();
    let mut table = vec![
        [
            "hand-off to another process",
            "median",
            "p10",
            "p90",
            "p99",
            "mean",
            "of which release call",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    table.extend(rows);
    println!("\n{iterations} hand-offs each\n");
    common::print_table(&table);
    let ratio = ours.p50 / raw.p50;
    println!(
        "\nauthstore hand-off / raw flock hand-off (medians): {ratio:.2}x (target: at most 1.2x): {}",
        if ratio <= 1.2 { "met" } else { "MISSED" }
    );
    common::write_results(
        "lock_handoff",
        options,
        json!({
            "unit": "ns from release to acquire",
            "iterations": iterations,
            "raw_flock": raw.to_json(),
            "authstore": ours.to_json(),
            "raw_release_call": raw_release.to_json(),
            "authstore_release_call": our_release.to_json(),
            "ratio_p50": ratio,
            "ratio_mean": ours.mean / raw.mean,
            "target_met": ratio <= 1.2,
        }),
    );
}

/// A waiter process (this same benchmark binary, in the waiter role).
struct Waiter {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Waiter {
    fn start(variant: Variant, dir: &Path) -> Self {
        let exe = std::env::current_exe().expect("this benchmark's path");
        let mut child = Command::new(exe)
            .arg(dir)
            .env(ROLE, variant.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a waiter process starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .expect("the waiter is alive");
    }

    fn timestamp(&mut self) -> u64 {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("the waiter answers");
        line.trim().parse().expect("a timestamp")
    }

    fn stop(mut self) {
        self.send("quit");
        let _ = self.child.wait();
    }
}

/// The waiter role: on each `go`, acquire (blocking), send the time it returned, release.
fn waiter(variant: Variant, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let store = FileStore::new(dir, StoreOptions::default());
    let raw_lock = open_raw(dir);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() != "go" {
            break;
        }
        match variant {
            Variant::Raw => {
                flock(&raw_lock, libc::LOCK_EX);
                let acquired = common::monotonic_ns();
                writeln!(stdout, "{acquired}").expect("stdout");
                stdout.flush().expect("stdout");
                flock(&raw_lock, libc::LOCK_UN);
            }
            Variant::Authstore => {
                let transaction = runtime.block_on(store.begin()).expect("auth.lock");
                let acquired = common::monotonic_ns();
                writeln!(stdout, "{acquired}").expect("stdout");
                stdout.flush().expect("stdout");
                drop(transaction);
            }
        }
    }
}

fn open_raw(dir: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("raw.lock"))
        .expect("the raw lock file opens")
}

/// The baseline: flock(2) itself, blocking.
fn flock(file: &File, operation: libc::c_int) {
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let result = unsafe { libc::flock(file.as_raw_fd(), operation) };
    assert_eq!(
        result,
        0,
        "flock failed: {}",
        std::io::Error::last_os_error()
    );
}
