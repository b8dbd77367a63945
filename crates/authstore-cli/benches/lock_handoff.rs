//! Lock hand-off to a waiter in another process: authstore's transaction lock
//! (`FileStore::begin`, dropped to release) against raw `flock(2)` on a file of its own.
//!
//! Each iteration: this process holds the lock; the waiter process is told to acquire it and
//! blocks; after a pause (so that the waiter is surely asleep in the kernel) this process takes a
//! CLOCK_MONOTONIC timestamp and releases; the waiter takes one as soon as its acquire returns and
//! sends it back. The hand-off latency is the difference: wake-up, return to the caller, and, for
//! authstore, the in-process bookkeeping around the system call (clearing and writing the holder
//! note, the helper thread's hand-back to the async waiter). The variants alternate, each with
//! its own waiter process and lock file.
//!
//! Four diagnostic variants sit between the two and show where the difference goes: raw
//! `flock` plus the holder note written the way authstore writes it (opened per transaction;
//! truncate and write after acquiring, truncate before releasing; a contended waiter reads the
//! note first), the same with the note written in place (`pwrite` of a fixed-size record,
//! blanked before releasing, never truncated), and raw `flock` waited for in a helper thread
//! that hands the lock back to an async task, as authstore waits; and authstore itself with a
//! waiter whose runtime is multi-threaded, as the command-line tool's is.
//!
//! `cargo bench --bench lock_handoff` (add `-- --quick` for fewer iterations).
// Unix only (processes, CLOCK_MONOTONIC, flock, a PostgreSQL cluster); elsewhere empty.
#![cfg_attr(not(unix), no_main)]
#![cfg(unix)]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use authstore::store::{FileStore, StoreOptions};
use serde_json::json;

/// Set in the environment of a waiter process: which lock it takes.
const ROLE: &str = "AUTHSTORE_BENCH_LOCK_WAITER";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// flock(2) on a descriptor kept open: the physical limit.
    Raw,
    /// flock(2) plus authstore's holder note, with raw system calls.
    TruncatedNote,
    /// flock(2) plus a holder note written in place.
    InPlaceNote,
    /// flock(2) waited for in a helper thread and handed back to an async task, as authstore
    /// waits (no note).
    HelperThread,
    /// `FileStore::begin` in a waiter whose runtime is multi-threaded, as the command-line
    /// tool's is (the measured variant's waiter runs a current-thread runtime).
    AuthstoreMultiThread,
    /// `FileStore::begin`, and dropping the transaction.
    Authstore,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Variant::Raw,
        Variant::TruncatedNote,
        Variant::InPlaceNote,
        Variant::HelperThread,
        Variant::AuthstoreMultiThread,
        Variant::Authstore,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Raw => "raw",
            Variant::TruncatedNote => "truncated-note",
            Variant::InPlaceNote => "in-place-note",
            Variant::HelperThread => "helper-thread",
            Variant::AuthstoreMultiThread => "authstore-multi-thread",
            Variant::Authstore => "authstore",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Raw => "raw flock (baseline)",
            Variant::TruncatedNote => "  flock + note, truncated (diagnostic)",
            Variant::InPlaceNote => "  flock + note, in place (diagnostic)",
            Variant::HelperThread => "  flock in a helper thread (diagnostic)",
            Variant::AuthstoreMultiThread => "  authstore, multi-thread waiter (diagnostic)",
            Variant::Authstore => "authstore auth.lock",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// A lock held by one of the variants.
enum Held {
    Raw,
    File(File),
    Transaction(authstore::store::FileTransaction),
}

/// One variant's lock in one process.
struct Lock {
    variant: Variant,
    dir: PathBuf,
    raw: File,
    store: FileStore,
}

impl Lock {
    fn new(variant: Variant, dir: &Path) -> Self {
        Self {
            variant,
            dir: dir.to_owned(),
            raw: open_raw(dir),
            store: FileStore::new(dir, StoreOptions::default()),
        }
    }

    /// Acquires, blocking.
    fn acquire(&self, runtime: &tokio::runtime::Runtime) -> Held {
        match self.variant {
            Variant::Raw => {
                flock(&self.raw, libc::LOCK_EX);
                Held::Raw
            }
            Variant::TruncatedNote | Variant::InPlaceNote => {
                // Opened per transaction, as authstore opens auth.lock, and the only descriptor
                // of its file (a second one open elsewhere changes what ext4 does on close).
                let path = self.dir.join("note.lock");
                let mut file = open_file(&path);
                // SAFETY: flock on a descriptor we own; no memory is passed.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                    // Contended: read whom we wait for, as authstore does (open, read, close).
                    let _ = std::fs::read(&path);
                    flock(&file, libc::LOCK_EX);
                }
                if self.variant == Variant::TruncatedNote {
                    file.set_len(0).expect("truncate");
                    file.seek(SeekFrom::Start(0)).expect("seek");
                    file.write_all(&note()).expect("write");
                } else {
                    file.write_all_at(&note(), 0).expect("write");
                }
                Held::File(file)
            }
            Variant::HelperThread => {
                let file = open_file(&self.dir.join("thread.lock"));
                // SAFETY: flock on a descriptor we own; no memory is passed.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                    return Held::File(file);
                }
                let (sender, receiver) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    flock(&file, libc::LOCK_EX);
                    let _ = sender.send(file);
                });
                Held::File(
                    runtime
                        .block_on(receiver)
                        .expect("the helper thread hands back"),
                )
            }
            Variant::Authstore | Variant::AuthstoreMultiThread => {
                Held::Transaction(runtime.block_on(self.store.begin()).expect("auth.lock"))
            }
        }
    }

    /// Releases.
    fn release(&self, held: Held) {
        match held {
            Held::Raw => flock(&self.raw, libc::LOCK_UN),
            Held::File(file) => {
                match self.variant {
                    Variant::TruncatedNote => file.set_len(0).expect("truncate"),
                    Variant::InPlaceNote => {
                        file.write_all_at(&[b' '; NOTE_BYTES], 0).expect("write")
                    }
                    _ => {}
                }
                flock(&file, libc::LOCK_UN);
            }
            Held::Transaction(transaction) => drop(transaction),
        }
    }
}

const NOTE_BYTES: usize = 128;

/// The target: authstore's hand-off at most this many times raw flock's (medians).
const TARGET: f64 = 2.0;

/// A holder note like authstore's, padded to a fixed size.
fn note() -> Vec<u8> {
    let mut note = format!(
        "pid {} (lock_handoff) since 2026-11-29T14:00:00.000000Z\n",
        std::process::id()
    )
    .into_bytes();
    note.resize(NOTE_BYTES, b' ');
    note
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let dir = PathBuf::from(std::env::args().nth(1).expect("the lock directory"));
        waiter(Variant::from_name(&role).expect("a known variant"), &dir);
        return;
    }
    let Some(options) = common::options("lock_handoff") else {
        return;
    };
    common::print_machine();
    let iterations = if options.quick { 200 } else { 2000 };
    let warmup = 20;
    let pause = Duration::from_millis(2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let dirs: Vec<tempfile::TempDir> = Variant::ALL
        .iter()
        .map(|v| common::scratch_dir(&format!("lock-{}-", v.name())))
        .collect();
    let mut waiters: Vec<Waiter> = Variant::ALL
        .iter()
        .zip(&dirs)
        .map(|(&v, dir)| Waiter::start(v, dir.path()))
        .collect();
    let locks: Vec<Lock> = Variant::ALL
        .iter()
        .zip(&dirs)
        .map(|(&v, dir)| Lock::new(v, dir.path()))
        .collect();

    let mut handoff: Vec<Vec<f64>> = vec![Vec::new(); locks.len()];
    // How long the release call itself takes in the holder (part of the hand-off).
    let mut release: Vec<Vec<f64>> = vec![Vec::new(); locks.len()];
    for i in 0..iterations + warmup {
        for (k, (lock, waiter)) in locks.iter().zip(&mut waiters).enumerate() {
            // Hold, let the waiter block, release; the waiter says when its acquire returned.
            let held = lock.acquire(&runtime);
            waiter.send("go");
            std::thread::sleep(pause);
            let released = common::monotonic_ns();
            lock.release(held);
            let release_returned = common::monotonic_ns();
            let acquired = waiter.timestamp();
            if i >= warmup {
                // The first rounds warm up caches and the waiters' runtimes.
                handoff[k].push(acquired.saturating_sub(released) as f64);
                release[k].push(release_returned.saturating_sub(released) as f64);
            }
        }
    }
    for waiter in waiters {
        waiter.stop();
    }

    let summaries: Vec<(common::Summary, common::Summary)> = handoff
        .iter()
        .zip(&release)
        .map(|(h, r)| (common::Summary::of(h), common::Summary::of(r)))
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
    for (variant, (s, r)) in Variant::ALL.iter().zip(&summaries) {
        table.push(vec![
            variant.label().to_owned(),
            common::nanos(s.p50),
            common::nanos(s.p10),
            common::nanos(s.p90),
            common::nanos(s.p99),
            common::nanos(s.mean),
            common::nanos(r.p50),
        ]);
    }
    println!("\n{iterations} hand-offs each\n");
    common::print_table(&table);
    let raw = summaries[0].0;
    let ours = summaries[Variant::ALL
        .iter()
        .position(|&v| v == Variant::Authstore)
        .expect("the measured variant")]
    .0;
    let ratio = ours.p50 / raw.p50;
    println!(
        "\nauthstore hand-off / raw flock hand-off (medians): {ratio:.2}x (target: at most {TARGET}x): {}",
        if ratio <= TARGET { "met" } else { "MISSED" }
    );
    let mut variants = serde_json::Map::new();
    for (variant, (s, r)) in Variant::ALL.iter().zip(&summaries) {
        variants.insert(
            variant.name().to_owned(),
            json!({"handoff": s.to_json(), "release_call": r.to_json()}),
        );
    }
    common::write_results(
        "lock_handoff",
        options,
        json!({
            "unit": "ns from release to acquire",
            "iterations": iterations,
            "variants": variants,
            "ratio_p50": ratio,
            "ratio_mean": ours.mean / raw.mean,
            "target_met": ratio <= TARGET,
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
    let runtime = if variant == Variant::AuthstoreMultiThread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("a runtime");
    let lock = Lock::new(variant, dir);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() != "go" {
            break;
        }
        let held = lock.acquire(&runtime);
        let acquired = common::monotonic_ns();
        writeln!(stdout, "{acquired}").expect("stdout");
        stdout.flush().expect("stdout");
        lock.release(held);
    }
}

fn open_raw(dir: &Path) -> File {
    open_file(&dir.join("raw.lock"))
}

fn open_file(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("the lock file opens")
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
