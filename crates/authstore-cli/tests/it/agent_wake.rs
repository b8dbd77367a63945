#![cfg(all(target_os = "linux", feature = "simulator"))] // libfaketime: LD_PRELOAD into glibc
//! After a suspend the agent refreshes within 2 s of the wake when the token is inside its
//! window, every time.
//!
//! A suspend is the wall clock jumping forward while the monotonic clock stands still, and the
//! kernel telling the timers that asked (`TFD_TIMER_CANCEL_ON_SET`) that the clock changed. The
//! test makes exactly that happen to a real agent process, without sleeping for it: the agent
//! runs under libfaketime (`LD_PRELOAD`), with the monotonic clock left alone
//! (`DONT_FAKE_MONOTONIC=1`) and its wall-clock offset read from a file on every clock read
//! (`FAKETIME_TIMESTAMP_FILE`, `FAKETIME_NO_CACHE=1`), which the test replaces to jump an hour
//! ahead. Rust's `SystemTime::now` is glibc's `clock_gettime(CLOCK_REALTIME)`, which libfaketime
//! intercepts; `Instant` (`CLOCK_MONOTONIC`) passes through. The agent's wall-clock timer is a
//! kernel timer it arms by direct system call, so libfaketime's jump alone wakes nothing: the
//! kernel's announcement is made real by setting the system clock to the current time (root, or
//! `CAP_SYS_TIME`), which moves no clock and cancels every such timer, as a resume does.
//!
//! The token authority (this process) issues `exp` by the real clock while the agent's clock is
//! ahead by the offset, so before each jump the test sets the lifetime of the next tokens so that
//! the agent sees `CALM` seconds left on a fresh token (far outside its window: its next
//! scheduled look is `CALM - 600` s away) and, after a jump of `JUMP`, `CALM - JUMP` = 400 s:
//! inside its 600 s window. A refresh within 2 s can then only come from noticing the jump.
//!
//! Needs Debian's `faketime` package and the right to set the clock. Missing either, the test
//! fails in CI (`CI=true`) and is skipped with a printed reason elsewhere. A static binary
//! (`AUTHSTORE_TEST_BINARY`) cannot be preloaded: the test says so and skips.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use authstore_simulator::Identity;
use authstore_testkit::agent_process::{Agent, status_json};
use authstore_testkit::binary::*;

/// Where Debian's `faketime` package puts the library (the thread-safe build), per architecture.
fn libfaketime_path() -> PathBuf {
    let arch = std::env::consts::ARCH;
    PathBuf::from(format!(
        "/usr/lib/{arch}-linux-gnu/faketime/libfaketimeMT.so.1"
    ))
}
/// One simulated suspend.
const JUMP: u64 = 3600;
/// What the agent sees left on a freshly issued token.
const CALM: u64 = 4000;
/// The agent's window.
const AHEAD: &str = "600";
/// The promise: the refresh follows the wake within this.
const WAKE_DEADLINE: Duration = Duration::from_secs(2);
const SUSPENDS: u64 = 4;

/// Whether libfaketime is there; when not, fails in CI and skips (saying why) elsewhere.
fn libfaketime() -> Option<PathBuf> {
    let library = libfaketime_path();
    if library.exists() {
        return Some(library);
    }
    let reason = format!(
        "{} is missing (apt-get install faketime)",
        library.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the wake test needs libfaketime: {reason}"
    );
    eprintln!("skipped: {reason}");
    None
}

/// Sets the system clock to the time it reads now (a step back of the microsecond in between):
/// the kernel cancels every timer armed with `TFD_TIMER_CANCEL_ON_SET`, as on a resume. Whether
/// this process may; when it may not, fails in CI and skips (saying why) elsewhere.
fn announce_clock_set() -> bool {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls get a valid pointer to a timespec that lives across the call.
    let set = unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) == 0
            && libc::clock_settime(libc::CLOCK_REALTIME, &now) == 0
    };
    if !set {
        let reason = format!(
            "setting the clock to the current time failed ({}): run as root for the kernel's clock-change announcement",
            std::io::Error::last_os_error()
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the wake test needs it: {reason}"
        );
        eprintln!("skipped: {reason}");
    }
    set
}

/// Sets the agent's wall-clock offset, atomically (a reader never sees a half-written file).
fn set_offset(file: &Path, secs: u64) {
    let temp = file.with_extension("tmp");
    std::fs::write(&temp, format!("+{secs}\n")).unwrap();
    std::fs::rename(&temp, file).unwrap();
}

fn seconds_of(value: &serde_json::Value) -> f64 {
    let text = value.as_str().expect("an RFC 3339 time");
    let time = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    time.timestamp_millis() as f64 / 1000.0
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_suspend_the_agent_refreshes_within_two_seconds_every_time() {
    let Some(library) = libfaketime() else {
        return;
    };
    if !announce_clock_set() {
        return;
    }
    let env = Env::new().await;
    let clock_dir = tempfile::tempdir().unwrap();
    let offset_file: PathBuf = clock_dir.path().join("offset");
    // The agent starts an hour ahead, which also shows that the preload took effect.
    let mut offset = JUMP;
    set_offset(&offset_file, offset);
    env.sim
        .set_access_token_lifetime(Duration::from_secs(offset + CALM));
    authstore_testkit::write_auth(
        env.home(),
        &env.sim.auth_json(&Identity::new("acct-1", "user-1")),
    );

    let mut command = env.command(&["agent", "--json", "--ahead", AHEAD]);
    command
        .env("LD_PRELOAD", &library)
        .env("DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
        .env("FAKETIME_NO_CACHE", "1");
    let mut agent = Agent::spawn(command);
    let started = agent.wait_for("started").await;
    let ahead_by = seconds_of(&started["time"]) - now_secs();
    if (ahead_by - JUMP as f64).abs() > 60.0 {
        assert!(
            std::env::var_os("AUTHSTORE_TEST_BINARY").is_some(),
            "the agent's clock is {ahead_by:.0} s ahead, not {JUMP}: libfaketime did not take effect"
        );
        eprintln!("skipped: {} is not preloadable (static?)", bin());
        return;
    }
    agent.wait_for("active").await;
    // Jump only once the agent has looked and planned its next look (its note says when): a
    // jump before its first look would be seen by that look, not by the wake detection.
    let idle_by = Instant::now() + BOUND;
    while status_json(&env).await["agent"]["next_check"].is_null() {
        assert!(
            Instant::now() < idle_by,
            "the agent never planned its next look"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        env.sim.successful_refreshes(),
        0,
        "nothing due at the start"
    );

    let mut delays = Vec::new();
    for suspend in 1..=SUSPENDS {
        // Tokens issued from now on show CALM seconds left once the clock has jumped again.
        offset += JUMP;
        env.sim
            .set_access_token_lifetime(Duration::from_secs(offset + CALM));
        let refreshes = env.sim.successful_refreshes();
        set_offset(&offset_file, offset);
        let woke = Instant::now();
        assert!(announce_clock_set(), "the clock could be set a moment ago");
        // The jump is reported before the refresh it causes; or just after it, when the jump
        // lands during a look the agent makes anyway (one follows each refresh: its own write is
        // a change of the file).
        let (mut jumped, mut refreshed) = (None, None);
        while jumped.is_none() || refreshed.is_none() {
            let event = tokio::time::timeout(WAKE_DEADLINE, agent.next_event())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "suspend {suspend}: no refresh within {WAKE_DEADLINE:?} of the wake (seen: jump {jumped:?}, refresh after {refreshed:?})"
                    )
                });
            match event["event"].as_str() {
                Some("clock_jumped") => jumped = event["by_secs"].as_f64(),
                Some("refreshed") => refreshed = Some(woke.elapsed()),
                _ => {}
            }
        }
        let delay = refreshed.expect("the loop ends on a refresh");
        assert!(
            delay < WAKE_DEADLINE,
            "suspend {suspend}: refreshed {delay:?} after the wake"
        );
        let jumped = jumped.expect("the agent reported the jump");
        assert!(
            (jumped - JUMP as f64).abs() < 5.0,
            "suspend {suspend}: jump of {jumped} s"
        );
        assert_eq!(
            env.sim.successful_refreshes(),
            refreshes + 1,
            "suspend {suspend}: one refresh per wake"
        );
        delays.push(delay);
    }
    eprintln!("refresh after each wake: {delays:?}");
    assert_no_token_presented_twice(&env.sim);
    assert!(agent.end(libc::SIGTERM).await.success());
}

/// The `retry_in_secs` of the agent's next `n` "waiting" events.
async fn retries(agent: &mut Agent, n: usize) -> Vec<f64> {
    let mut waits = Vec::new();
    while waits.len() < n {
        let event = agent.wait_for("waiting").await;
        waits.push(event["retry_in_secs"].as_f64().expect("retry_in_secs"));
    }
    waits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_codex_window_an_unreachable_authority_is_retried_every_second() {
    let env = Env::new().await;
    env.sim.set_fault(authstore_simulator::Fault::Status(503));

    // 400 s left: inside the agent's window, outside Codex's: the usual doubling back-off.
    env.sim.set_access_token_lifetime(Duration::from_secs(400));
    authstore_testkit::write_auth(
        env.home(),
        &env.sim.auth_json(&Identity::new("acct-1", "user-1")),
    );
    let mut agent = Agent::start(&env, AHEAD);
    assert_eq!(retries(&mut agent, 3).await, [1.0, 2.0, 4.0]);
    assert!(agent.end(libc::SIGTERM).await.success());

    // 100 s left, as after a wake: Codex's window is open, so every second.
    env.sim.set_access_token_lifetime(Duration::from_secs(100));
    authstore_testkit::write_auth(
        env.home(),
        &env.sim.auth_json(&Identity::new("acct-1", "user-1")),
    );
    let mut agent = Agent::start(&env, AHEAD);
    assert_eq!(retries(&mut agent, 4).await, [1.0, 1.0, 1.0, 1.0]);
    // And the refresh follows as soon as the authority answers.
    env.sim.set_fault(authstore_simulator::Fault::None);
    agent.wait_for("refreshed").await;
    assert!(agent.end(libc::SIGTERM).await.success());
}
