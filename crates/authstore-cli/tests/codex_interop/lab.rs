//! The fixture of the suite: [`Lab`], one Codex home (under the cargo target directory: Codex
//! warns about a home under /tmp) beside the embedded token authority, with runners for the real
//! Codex binary (only inside a loopback-only network namespace: [`isolated_codex_bin`]) and the
//! real `authstore` binary; who sent each refresh request; a reader that watches `auth.json` for
//! a torn file ([`Sampler`]); a burst of Codex processes ([`codex_burst`]); and an `authstore
//! agent` whose events are collected as they come ([`Agent`]).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use authstore::document::access_token_expiry;
use authstore_simulator::Identity;
use authstore_testkit::binary::{Env, assert_success, captured};
use authstore_testkit::home::Home;
use authstore_testkit::process::{BOUND, output_bounded};
use authstore_testkit::{token, with_unknown_fields};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The `client_id` authstore processes send in these tests (Codex sends its own).
pub const AUTHSTORE_CLIENT_ID: &str = "authstore-interop";
/// Access-token lifetime that is stale at once for Codex and authstore (both refresh when fewer
/// than 5 minutes are left).
pub const STALE: Duration = Duration::from_secs(60);
pub const FRESH: Duration = Duration::from_secs(3600);

/// The veths [`isolated_codex_bin`] accepts beside `lo`.
static TEST_VETHS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Lets Codex run beside the veth `name`, which the caller made between this namespace and a
/// new one of its own holding nothing but loopback and the veth's other end.
pub fn allow_test_veth(name: &str) {
    TEST_VETHS.lock().unwrap().push(name.to_owned());
}

/// Asserts that this process sees no network interface but `lo`, and returns the Codex binary
/// named by `CODEX_BIN`. Called before every Codex launch.
///
/// `/proc/self/net/dev` lists the interfaces of this process's own network namespace
/// (`/sys/class/net` would still show the host's inside `unshare --net`, sysfs not being
/// remounted).
///
/// The one exception is a veth whose other end is in a namespace this test made itself and
/// that has nothing but loopback and that veth either ([`allow_test_veth`], the sandboxes'):
/// nothing behind it leads off this machine.
pub fn isolated_codex_bin() -> PathBuf {
    let devices = std::fs::read_to_string("/proc/self/net/dev")
        .expect("read /proc/self/net/dev to check the network namespace");
    let allowed = TEST_VETHS.lock().unwrap().clone();
    let interfaces: Vec<&str> = devices
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .filter(|name| !allowed.iter().any(|veth| veth == name))
        .collect();
    assert!(
        interfaces == ["lo"],
        "refusing to run Codex: this process sees the network interfaces {interfaces:?}, and \
         Codex may only run in a network namespace that has nothing but loopback. Run this \
         suite with `bash scripts/codex-interop.sh`."
    );
    let bin = std::env::var_os("CODEX_BIN").map(PathBuf::from).expect(
        "CODEX_BIN is not set: it must name the Codex 0.171.0 binary; \
         `bash scripts/codex-interop.sh` installs Codex and sets it",
    );
    assert!(
        bin.is_file(),
        "CODEX_BIN={} is not a file; `bash scripts/codex-interop.sh` installs Codex",
        bin.display()
    );
    bin
}

/// One Codex home beside the token authority (an [`Env`], which runs authstore there), the
/// Codex binary, and a user home for Codex beside the Codex home. Derefs to its [`Env`]: `sim`,
/// `home()`, `dir()`, `disk()`.
pub struct Lab {
    env: Env,
    codex_bin: PathBuf,
    /// Where Codex and authstore processes send their refreshes: the authority, or a broker
    /// in front of it ([`Lab::start_broker`]).
    token_url: String,
    /// Codex processes reach this process's D-Bus session bus ([`Lab::pass_session_bus`]).
    session_bus: bool,
}

impl Deref for Lab {
    type Target = Env;

    fn deref(&self) -> &Env {
        &self.env
    }
}

impl Lab {
    pub async fn new() -> Self {
        let codex_bin = isolated_codex_bin();
        // Under the cargo target directory, not /tmp: Codex warns about a home under /tmp.
        let home = Home::named_in(Path::new(env!("CARGO_TARGET_TMPDIR")), "codex-home");
        std::fs::create_dir(home.dir().join("user-home")).unwrap();
        let env = Env::in_home(home).await.with_request_timeout(10);
        let token_url = env.sim.token_url();
        Self {
            env,
            codex_bin,
            token_url,
            session_bus: false,
        }
    }

    /// Lets every Codex process started afterwards reach this process's D-Bus session bus
    /// (`DBUS_SESSION_BUS_ADDRESS`, and `XDG_RUNTIME_DIR` when set), for Codex's keyring store:
    /// the Secret Service that `scripts/codex-interop.sh` starts inside the namespace. Without
    /// it Codex sees no bus ([`Lab::codex`] clears its environment).
    pub fn pass_session_bus(&mut self) {
        self.session_bus = true;
    }

    pub fn codex(&self, args: &[&str]) -> Command {
        isolated_codex_bin();
        let mut command = Command::new(&self.codex_bin);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir().join("user-home"))
            .env("CODEX_HOME", self.home())
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", &self.token_url);
        if self.session_bus {
            for name in ["DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"] {
                if let Some(value) = std::env::var_os(name) {
                    command.env(name, value);
                }
            }
        }
        captured(&mut command);
        command
    }

    /// The [`Env`]'s authstore command, sending [`AUTHSTORE_CLIENT_ID`], its refreshes going
    /// where Codex's go.
    pub fn authstore(&self, args: &[&str]) -> Command {
        let mut command = self.env.command(args);
        command
            .env("CODEX_APP_SERVER_LOGIN_CLIENT_ID", AUTHSTORE_CLIENT_ID)
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", &self.token_url);
        command
    }

    /// Starts `authstore broker` on this home (a free loopback port, its upstream the
    /// authority), and points every Codex and authstore process started afterwards at it. The
    /// broker sends [`AUTHSTORE_CLIENT_ID`], so that the authority tells its calls from the ones
    /// Codex makes itself.
    pub async fn start_broker(&mut self) -> Broker {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        let upstream = self.sim.token_url();
        let mut child = self
            .authstore(&["broker", "--listen", "127.0.0.1:0", "--upstream", &upstream])
            .spawn()
            .expect("start authstore broker");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("the broker printed its address within the bound")
            .expect("read the broker's stdout")
            .expect("the broker printed a line before closing stdout");
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the broker's first line is not its address: {first}"))
            .to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with("/oauth/token"),
            "the broker listens on {url}"
        );
        // Both pipes are drained, so that the broker never blocks on a full one.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        self.token_url = url;
        Broker { child, stderr }
    }

    /// Points every Codex and authstore process started afterwards at `url` (a broker this test
    /// started itself).
    pub fn point_at(&mut self, url: String) {
        self.token_url = url;
    }

    /// The Codex binary.
    pub fn codex_bin(&self) -> &Path {
        &self.codex_bin
    }

    /// Runs Codex to completion (bounded); returns its output and how long it ran.
    pub async fn run_codex(&self, args: &[&str]) -> (Output, Duration) {
        timed(self.codex(args)).await
    }

    pub async fn run_authstore(&self, args: &[&str]) -> (Output, Duration) {
        timed(self.authstore(args)).await
    }

    /// A new login for `identity` (a new token family) whose tokens live `lifetime`, with
    /// unknown fields, as a document; tokens issued afterwards live an hour.
    pub fn new_login(&self, identity: &Identity, lifetime: Duration) -> Value {
        with_unknown_fields(self.env.new_login(identity, lifetime))
    }

    /// Installs `document` with `authstore login --from`.
    pub async fn authstore_login(&self, document: &Value) {
        let file = self.login_file(document);
        let (output, _) = self
            .run_authstore(&["login", "--from", file.to_str().unwrap()])
            .await;
        assert_success(&output);
    }

    /// Refresh requests so far, by who sent them ("codex" or "authstore").
    pub fn calls_by_client(&self) -> BTreeMap<&'static str, usize> {
        self.calls_by_client_since(0)
    }

    /// Refresh requests after the first `since`, by who sent them.
    pub fn calls_by_client_since(&self, since: usize) -> BTreeMap<&'static str, usize> {
        let mut calls = BTreeMap::new();
        for event in self.sim.refresh_events().into_iter().skip(since) {
            *calls.entry(sender(&event.client_id)).or_default() += 1;
        }
        calls
    }
}

/// Who sent a refresh request with this `client_id`: "authstore" or "codex".
pub fn sender(client_id: &Option<String>) -> &'static str {
    if client_id.as_deref() == Some(AUTHSTORE_CLIENT_ID) {
        "authstore"
    } else {
        "codex"
    }
}

pub async fn timed(command: Command) -> (Output, Duration) {
    let started = Instant::now();
    let output = output_bounded(command).await;
    (output, started.elapsed())
}

pub fn expiry_of(access_token: &str) -> SystemTime {
    access_token_expiry(access_token).expect("the access token carries exp")
}

/// Asserts that auth.json holds the authority's current refresh token of `family`.
pub fn assert_current_token_on_disk(lab: &Lab, family: u64) {
    let on_disk = token(&lab.disk(), "refresh_token");
    assert_eq!(
        lab.sim.family_of(&on_disk),
        Some(family),
        "auth.json holds a refresh token of another family"
    );
    assert!(
        lab.sim.current_refresh_token(family).as_deref() == Some(on_disk.as_str()),
        "auth.json holds a spent refresh token, not the family's current one"
    );
}

/// Every token this test has seen (those of auth.json when there is one, every refresh token
/// presented to the authority, and `others`), to keep them out of what a failure message shows.
fn known_tokens(lab: &Lab, others: &[String]) -> Vec<String> {
    let mut tokens = lab.sim.presented_refresh_tokens();
    let disk = authstore_testkit::read_auth(lab.home()).unwrap_or_default();
    for name in ["id_token", "access_token", "refresh_token"] {
        if let Some(value) = disk["tokens"][name].as_str() {
            tokens.push(value.to_owned());
        }
    }
    tokens.extend(others.iter().cloned());
    tokens.retain(|token| !token.is_empty());
    tokens
}

/// `text` with every token the test knows of (see [`known_tokens`]) replaced by `<token>`.
pub fn redacted(lab: &Lab, text: &str, others: &[String]) -> String {
    known_tokens(lab, others)
        .iter()
        .fold(text.to_owned(), |text, token| {
            text.replace(token.as_str(), "<token>")
        })
}

/// Asserts that `text` (a process's log) holds none of the tokens the test knows of.
pub fn assert_no_token_in(lab: &Lab, text: &str, what: &str) {
    assert_none_of_these_tokens_in(lab, text, what, &[]);
}

/// Asserts that `text` holds none of the tokens the test knows of, nor any of `others` (tokens
/// read from a store other than auth.json).
pub fn assert_none_of_these_tokens_in(lab: &Lab, text: &str, what: &str, others: &[String]) {
    let found = known_tokens(lab, others)
        .iter()
        .filter(|token| text.contains(token.as_str()))
        .count();
    assert_eq!(found, 0, "{what} holds {found} tokens");
}

pub fn millis(duration: Duration) -> u128 {
    duration.as_millis()
}

pub fn summary(durations: &[Duration]) -> String {
    let mut sorted = durations.to_vec();
    sorted.sort();
    match (sorted.first(), sorted.last()) {
        (Some(min), Some(max)) => format!(
            "n={} min={}ms median={}ms max={}ms",
            sorted.len(),
            millis(*min),
            millis(sorted[sorted.len() / 2]),
            millis(*max)
        ),
        _ => "n=0".into(),
    }
}

/// What a burst of `codex features list` processes on one home does to the authority.
pub struct Burst {
    pub calls: u64,
    pub successes: u64,
    /// Refused as `refresh_token_reused`.
    pub reuse: u64,
    /// Refused for any reason (reuse, or a family revoked by an earlier reuse).
    pub rejected: u64,
    pub durations: Vec<Duration>,
}

pub async fn codex_burst(lab: &Lab, processes: usize) -> Burst {
    let before = lab.sim.stats();
    let runs: Vec<_> = (0..processes)
        .map(|_| lab.run_codex(&["features", "list"]))
        .collect();
    let mut durations = Vec::new();
    for (output, took) in futures::future::join_all(runs).await {
        assert_success(&output);
        durations.push(took);
    }
    let after = lab.sim.stats();
    Burst {
        calls: after.refresh_calls - before.refresh_calls,
        successes: after.successful_refreshes - before.successful_refreshes,
        reuse: after.reuse_rejections - before.reuse_rejections,
        rejected: after.rejected_refreshes - before.rejected_refreshes,
        durations,
    }
}

/// Reads auth.json in a loop on its own thread until stopped; counts reads and failures (a
/// missing, torn or unparseable file).
pub struct Sampler {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    pub fn start(path: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (path, stop, reads, failures) = (
                path.to_owned(),
                stop.clone(),
                reads.clone(),
                failures.clone(),
            );
            move || {
                while !stop.load(Ordering::SeqCst) {
                    let whole = std::fs::read(&path).ok().is_some_and(|bytes| {
                        serde_json::from_slice::<Value>(&bytes)
                            .is_ok_and(|v| v["tokens"]["refresh_token"].is_string())
                    });
                    reads.fetch_add(1, Ordering::SeqCst);
                    if !whole {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Self {
            stop,
            reads,
            failures,
            thread,
        }
    }

    /// (reads, failures)
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        (
            self.reads.load(Ordering::SeqCst),
            self.failures.load(Ordering::SeqCst),
        )
    }
}

/// A running `authstore broker` ([`Lab::start_broker`]).
pub struct Broker {
    child: Child,
    stderr: tokio::task::JoinHandle<String>,
}

impl Broker {
    /// SIGTERM, then waits (bounded); asserts that it stopped cleanly and returns its stderr.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().expect("the broker is running") as i32;
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM");
        let status = tokio::time::timeout(BOUND, self.child.wait())
            .await
            .expect("the broker stopped within the bound after SIGTERM")
            .expect("wait for the broker");
        let stderr = tokio::time::timeout(BOUND, &mut self.stderr)
            .await
            .expect("the broker's stderr closed")
            .unwrap();
        assert!(
            status.success(),
            "the broker ended with {status}; stderr: {stderr}"
        );
        stderr
    }
}

/// `authstore agent --json` running beside the test, its event lines collected as they come, each
/// with the moment it was read.
pub struct Agent {
    child: Child,
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
    stdout: tokio::task::JoinHandle<()>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Agent {
    pub fn spawn(lab: &Lab, ahead_secs: u64) -> Self {
        Self::spawn_with(lab, &["--ahead", &ahead_secs.to_string()])
    }

    /// `authstore agent --json` with `args` (e.g. `--broker --listen ...`).
    pub fn spawn_with(lab: &Lab, args: &[&str]) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        let mut command_line = vec!["agent", "--json"];
        command_line.extend_from_slice(args);
        let mut child = lab
            .authstore(&command_line)
            .spawn()
            .expect("start authstore agent");
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdout = tokio::spawn({
            let events = events.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let event: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|_| json!({"event": "unparsed", "line": line}));
                    events.lock().unwrap().push((Instant::now(), event));
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        Self {
            child,
            events,
            stdout,
            stderr,
        }
    }

    /// The moments at which the agent reported `event`.
    pub fn moments(&self, event: &str) -> Vec<Instant> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, value)| value["event"] == event)
            .map(|(at, _)| *at)
            .collect()
    }

    pub fn count(&self, event: &str) -> usize {
        self.moments(event).len()
    }

    /// The first `event` the agent reported, waiting for it (bounded).
    pub async fn first(&self, event: &str) -> Value {
        let started = Instant::now();
        loop {
            let found = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|(_, value)| value["event"] == event)
                .map(|(_, value)| value.clone());
            if let Some(found) = found {
                return found;
            }
            assert!(
                started.elapsed() < BOUND,
                "the agent reported no {event} within {BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits (bounded); returns the exit status, every event and stderr.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, Vec<Value>, String) {
        let pid = self.child.id().expect("the agent is running") as i32;
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM");
        let status = tokio::time::timeout(BOUND, self.child.wait())
            .await
            .expect("the agent stopped within the bound after SIGTERM")
            .expect("wait for the agent");
        tokio::time::timeout(BOUND, &mut self.stdout)
            .await
            .expect("the agent's stdout closed")
            .unwrap();
        let stderr = tokio::time::timeout(BOUND, &mut self.stderr)
            .await
            .expect("the agent's stderr closed")
            .unwrap();
        let events = std::mem::take(&mut *self.events.lock().unwrap())
            .into_iter()
            .map(|(_, value)| value)
            .collect();
        (status, events, stderr)
    }
}
