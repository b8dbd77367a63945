#![cfg(all(unix, feature = "codex-interop"))] // Unix only: Codex runs in a Linux network namespace
//! Interoperability with the real Codex CLI (`@openai/codex` 0.171.0): real Codex processes
//! beside real `authstore` processes on one `CODEX_HOME`, against the embedded token authority
//! (family revocation on reuse).
//!
//! Run it with `bash scripts/codex-interop.sh`, which installs Codex from the npm registry and
//! runs this suite inside one new network namespace that has nothing but loopback. Every test
//! first checks that it is in such a namespace and that `CODEX_BIN` names the Codex binary, and
//! refuses to start Codex otherwise: Codex tries to reach its service at start-up, and no test may
//! send traffic off this machine. The token authority runs in this process, on 127.0.0.1, inside
//! the same namespace.
//!
//! What Codex 0.171.0 does (see SPEC §4): on a stale token it calls the token endpoint first,
//! without any lock, then takes `auth.lock` (blocking), re-reads `auth.json`, and writes only when
//! the file did not change meanwhile (under a non-blocking `auth.json.lock`). `codex features list`
//! makes exactly one refresh on a stale token and none on a fresh one; `codex login status` only
//! reads.
//!
//! [`editors`] runs `codex app-server` processes the way editor windows do, with and without
//! `authstore agent` beside them.
//!
//! authstore processes here send `client_id` [`AUTHSTORE_CLIENT_ID`]
//! (`CODEX_APP_SERVER_LOGIN_CLIENT_ID`), so that every request the authority sees can be
//! attributed to Codex or to authstore. The figures each test prints (`figures: ...`) are
//! observations, not assertions.

mod editors;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use authstore::document::{access_token_expiry, format_timestamp};
use authstore::store::{FileStore, StoreOptions};
use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use authstore_testkit::alice;
use authstore_testkit::binary::{assert_no_token_presented_twice, assert_success, bin, stdout};
use authstore_testkit::eventually;
use authstore_testkit::process::wait_output_bounded;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The `client_id` authstore processes send in these tests (Codex sends its own).
const AUTHSTORE_CLIENT_ID: &str = "authstore-interop";
/// No process in these tests may take longer than this; passing it means a hang.
const BOUND: Duration = Duration::from_secs(60);
/// Access-token lifetime that is stale at once for Codex and authstore (both refresh when fewer
/// than 5 minutes are left).
const STALE: Duration = Duration::from_secs(60);
const FRESH: Duration = Duration::from_secs(3600);

/// Asserts that this process sees no network interface but `lo`, and returns the Codex binary
/// named by `CODEX_BIN`. Called before every Codex launch.
///
/// `/proc/self/net/dev` lists the interfaces of this process's own network namespace
/// (`/sys/class/net` would still show the host's inside `unshare --net`, sysfs not being
/// remounted).
fn isolated_codex_bin() -> PathBuf {
    let devices = std::fs::read_to_string("/proc/self/net/dev")
        .expect("read /proc/self/net/dev to check the network namespace");
    let interfaces: Vec<&str> = devices
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
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

/// One Codex home, the token authority, and the temp directory around them.
struct Lab {
    /// Under the cargo target directory, not /tmp: Codex warns about a home under /tmp.
    dir: tempfile::TempDir,
    sim: Simulator,
    codex_bin: PathBuf,
}

impl Lab {
    async fn new() -> Self {
        let codex_bin = isolated_codex_bin();
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::create_dir(dir.path().join("codex-home")).unwrap();
        std::fs::create_dir(dir.path().join("user-home")).unwrap();
        let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
        Self {
            dir,
            sim,
            codex_bin,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("codex-home")
    }

    fn auth_path(&self) -> PathBuf {
        self.home().join("auth.json")
    }

    fn codex(&self, args: &[&str]) -> Command {
        isolated_codex_bin();
        let mut command = Command::new(&self.codex_bin);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("user-home"))
            .env("CODEX_HOME", self.home())
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", self.sim.token_url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    fn authstore(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .arg("--codex-home")
            .arg(self.home())
            .args(["--lock-timeout", "20", "--request-timeout", "10"])
            .args(args)
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", self.sim.token_url())
            .env("CODEX_APP_SERVER_LOGIN_CLIENT_ID", AUTHSTORE_CLIENT_ID)
            .env_remove("CODEX_HOME")
            .env_remove("AUTHSTORE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs Codex to completion (bounded); returns its output and how long it ran.
    async fn run_codex(&self, args: &[&str]) -> (Output, Duration) {
        timed(self.codex(args)).await
    }

    async fn run_authstore(&self, args: &[&str]) -> (Output, Duration) {
        timed(self.authstore(args)).await
    }

    /// A new login for `identity` (a new token family) whose tokens live `lifetime`, with
    /// unknown fields, as a document; tokens issued afterwards live an hour.
    fn new_login(&self, identity: &Identity, lifetime: Duration) -> Value {
        self.sim.set_access_token_lifetime(lifetime);
        let mut document = self.sim.auth_json(identity);
        self.sim.set_access_token_lifetime(FRESH);
        document["x_custom"] = json!({"kept": true});
        document["tokens"]["x_token_extra"] = json!("kept");
        document
    }

    /// Installs `document` with `authstore login --from`.
    async fn authstore_login(&self, document: &Value) {
        let file = self.dir.path().join("login.json");
        std::fs::write(&file, serde_json::to_vec_pretty(document).unwrap()).unwrap();
        let (output, _) = self
            .run_authstore(&["login", "--from", file.to_str().unwrap()])
            .await;
        assert_success(&output);
    }

    fn disk(&self) -> Value {
        let bytes = std::fs::read(self.auth_path()).expect("auth.json exists");
        serde_json::from_slice(&bytes).expect("auth.json parses")
    }

    fn lock_inode(&self) -> u64 {
        std::fs::metadata(self.home().join("auth.lock"))
            .expect("auth.lock exists")
            .ino()
    }

    /// Refresh requests so far, by who sent them ("codex" or "authstore").
    fn calls_by_client(&self) -> BTreeMap<&'static str, usize> {
        self.calls_by_client_since(0)
    }

    /// Refresh requests after the first `since`, by who sent them.
    fn calls_by_client_since(&self, since: usize) -> BTreeMap<&'static str, usize> {
        let mut calls = BTreeMap::new();
        for event in self.sim.refresh_events().into_iter().skip(since) {
            *calls.entry(sender(&event.client_id)).or_default() += 1;
        }
        calls
    }

    /// The first refresh request after the first `since` that presented a token already
    /// presented: (who spent it first, who presented it again). That is the reuse, which
    /// revokes the family; later repeats only meet the revoked family. Every token's first
    /// presentation succeeds while its family is not revoked: tokens come only from the authority.
    fn first_reuse(&self, since: usize) -> Option<(&'static str, &'static str)> {
        let mut first: HashMap<String, &'static str> = HashMap::new();
        for (index, event) in self.sim.refresh_events().into_iter().enumerate() {
            let presenter = sender(&event.client_id);
            match first.get(&event.refresh_token) {
                Some(&spender) if index >= since => return Some((spender, presenter)),
                Some(_) => {}
                None => {
                    first.insert(event.refresh_token, presenter);
                }
            }
        }
        None
    }

    /// Holds each refresh request that presents a token of a family in `gates` at the authority,
    /// before the token is processed, until that family's gate opens.
    fn hold_families(&self, gates: HashMap<u64, Gate>) {
        self.sim.set_on_refresh(Some(Arc::new(move |event| {
            if let Some(gate) = event.family.and_then(|family| gates.get(&family)) {
                tokio::task::block_in_place(|| gate.wait());
            }
        })));
    }
}

/// Closed until opened. Dropping any handle opens it, so that a failing test never leaves a
/// request parked; waiting is bounded by [`BOUND`] anyway.
#[derive(Clone, Default)]
struct Gate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.0.open.lock().unwrap() = true;
        self.0.changed.notify_all();
    }

    fn wait(&self) {
        let open = self.0.open.lock().unwrap();
        let _ = self
            .0
            .changed
            .wait_timeout_while(open, BOUND, |open| !*open);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// Who sent a refresh request with this `client_id`: "authstore" or "codex".
fn sender(client_id: &Option<String>) -> &'static str {
    if client_id.as_deref() == Some(AUTHSTORE_CLIENT_ID) {
        "authstore"
    } else {
        "codex"
    }
}

async fn timed(mut command: Command) -> (Output, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(BOUND, command.output())
        .await
        .expect("the process finished within the bound (a hang otherwise)")
        .expect("the process started");
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

fn token(document: &Value, name: &str) -> String {
    document["tokens"][name]
        .as_str()
        .unwrap_or_else(|| panic!("tokens.{name} is a string"))
        .to_owned()
}

fn expiry_of(access_token: &str) -> SystemTime {
    access_token_expiry(access_token).expect("the access token carries exp")
}

/// Whether process `pid` is blocked waiting for a flock on the file with inode `inode`, as the
/// kernel reports it in /proc/locks (`N: -> FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`).
fn blocked_on_flock(pid: u32, inode: u64) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let pid = pid.to_string();
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"->")
            && fields.get(2) == Some(&"FLOCK")
            && fields.get(5) == Some(&pid.as_str())
            && fields
                .get(6)
                .and_then(|id| id.rsplit(':').next())
                .and_then(|id| id.parse::<u64>().ok())
                == Some(inode)
    })
}

/// Asserts that auth.json holds the authority's current refresh token of `family`.
fn assert_current_token_on_disk(lab: &Lab, family: u64) {
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

fn millis(duration: Duration) -> u128 {
    duration.as_millis()
}

fn summary(durations: &[Duration]) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codex_reads_what_authstore_writes_and_makes_no_refresh_call_on_its_fresh_tokens() {
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), FRESH);
    lab.authstore_login(&login).await;

    let (status, status_took) = lab.run_codex(&["login", "status"]).await;
    assert!(
        status.status.success(),
        "codex login status after authstore login: exit {:?}: {}",
        status.status.code(),
        stderr(&status)
    );
    assert!(stderr(&status).contains("Logged in using ChatGPT"));

    let (features, fresh_took) = lab.run_codex(&["features", "list"]).await;
    assert_success(&features);
    assert_eq!(
        lab.sim.refresh_calls(),
        0,
        "Codex refreshed authstore's fresh tokens"
    );

    let (refresh, _) = lab.run_authstore(&["refresh", "--force"]).await;
    assert_success(&refresh);
    assert!(stdout(&refresh).starts_with("refreshed"));
    assert_eq!(lab.sim.refresh_calls(), 1);

    let written = std::fs::read(lab.auth_path()).unwrap();
    let (status, _) = lab.run_codex(&["login", "status"]).await;
    assert!(
        status.status.success(),
        "codex login status after authstore refresh --force: exit {:?}: {}",
        status.status.code(),
        stderr(&status)
    );
    assert!(stderr(&status).contains("Logged in using ChatGPT"));
    let (features, _) = lab.run_codex(&["features", "list"]).await;
    assert_success(&features);
    assert_eq!(
        lab.sim.refresh_calls(),
        1,
        "Codex refreshed the fresh tokens authstore's refresh wrote"
    );
    // Codex wrote nothing: authstore's file, unknown fields included, stays byte for byte.
    assert!(
        std::fs::read(lab.auth_path()).unwrap() == written,
        "Codex rewrote auth.json"
    );
    assert_eq!(lab.disk()["x_custom"], json!({"kept": true}));
    println!(
        "figures: codex login status {}ms; codex features list on fresh tokens {}ms, 0 calls",
        millis(status_took),
        millis(fresh_took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codex_spends_exactly_the_refresh_token_authstore_wrote() {
    let lab = Lab::new().await;
    // `codex login status` says "Logged in using ChatGPT" even for `{}`; this proves that Codex
    // parses the tokens in authstore's file: it refreshes with exactly the refresh token there.
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    // authstore's own refresh writes a token that is stale again (60 s lifetime).
    lab.sim.set_access_token_lifetime(STALE);
    let (refresh, _) = lab.run_authstore(&["refresh", "--force"]).await;
    assert_success(&refresh);
    lab.sim.set_access_token_lifetime(FRESH);
    let written = token(&lab.disk(), "refresh_token");
    assert!(written != token(&login, "refresh_token"));

    let (features, took) = lab.run_codex(&["features", "list"]).await;
    assert_success(&features);
    let presented = lab.sim.presented_refresh_tokens();
    assert_eq!(presented.len(), 2, "authstore's refresh, then one by Codex");
    assert!(
        presented[1] == written,
        "Codex presented another refresh token than the one authstore wrote"
    );
    let family = lab.sim.family_of(&written).unwrap();
    assert_current_token_on_disk(&lab, family);
    assert_no_token_presented_twice(&lab.sim);
    println!(
        "figures: codex features list on authstore's stale token: 1 call, {}ms",
        millis(took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authstore_reads_what_codex_writes_and_makes_no_further_call() {
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();

    let (features, took) = lab.run_codex(&["features", "list"]).await;
    assert_success(&features);
    assert_eq!(
        lab.sim.refresh_calls(),
        1,
        "codex features list refreshes a stale token once"
    );
    let written_by_codex = lab.disk();
    let access = token(&written_by_codex, "access_token");
    assert!(
        access != token(&login, "access_token"),
        "Codex wrote no new token"
    );
    assert_current_token_on_disk(&lab, family);
    // What Codex 0.171.0 does to the file (SPEC §2: this is why authstore keeps nothing of its
    // own in auth.json).
    assert!(
        written_by_codex.get("x_custom").is_none()
            && written_by_codex["tokens"].get("x_token_extra").is_none(),
        "Codex 0.171.0 was seen to drop unknown fields; it kept them here"
    );

    let (printed, _) = lab.run_authstore(&["token"]).await;
    assert_success(&printed);
    assert!(
        stdout(&printed) == access,
        "authstore token printed another access token than the one Codex wrote"
    );

    let (json_token, _) = lab.run_authstore(&["token", "--json"]).await;
    assert_success(&json_token);
    let json_token: Value = serde_json::from_str(&stdout(&json_token)).unwrap();
    assert!(json_token["access_token"].as_str() == Some(access.as_str()));
    assert_eq!(json_token["account_id"], json!("acct-1"));

    let expires_at = format_timestamp(expiry_of(&access));
    let (status, _) = lab.run_authstore(&["status", "--json"]).await;
    assert_success(&status);
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["logged_in"], json!(true));
    assert_eq!(status["expires_at"], json!(expires_at));
    assert_eq!(json_token["expires_at"], json!(expires_at));
    assert_eq!(status["refresh_due"], json!(false));
    assert_eq!(status["account_id"], json!("acct-1"));
    assert_eq!(status["user_id"], json!("user-alice"));
    // Codex writes last_refresh with nanoseconds; authstore reads it.
    assert!(status["last_refresh"].is_string(), "last_refresh unread");

    assert_eq!(
        lab.sim.refresh_calls(),
        1,
        "authstore called the authority although Codex had just refreshed"
    );
    // And authstore can carry on from Codex's tokens.
    let (refresh, _) = lab.run_authstore(&["refresh", "--force"]).await;
    assert_success(&refresh);
    assert_current_token_on_disk(&lab, family);
    assert_no_token_presented_twice(&lab.sim);
    println!(
        "figures: codex features list on a stale token: 1 call, {}ms; authstore then 0 calls for \
         token, token --json, status --json",
        millis(took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_codex_refresh_that_wants_to_commit_while_authstore_holds_the_transaction_waits_and_loses_nothing()
 {
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let spent_by_codex = token(&login, "refresh_token");
    let family = lab.sim.family_of(&spent_by_codex).unwrap();
    let before = std::fs::read(lab.auth_path()).unwrap();

    // authstore's transaction, as every authstore writer holds it: auth.lock, taken through the
    // library in this process. (An authstore refresh of the same stale token would spend it a
    // second time: that race is Codex's, which calls the endpoint before taking any lock.)
    let store = FileStore::new(lab.home(), StoreOptions::default());
    let transaction = store.begin().await.unwrap();
    let inode = lab.lock_inode();

    let sampler = Sampler::start(&lab.auth_path());
    let started = Instant::now();
    let mut codex = lab.codex(&["features", "list"]).spawn().unwrap();
    let pid = codex.id().unwrap();
    let blocked = eventually(BOUND, async || blocked_on_flock(pid, inode)).await;
    assert!(blocked, "Codex never waited for auth.lock");
    let blocked_after = started.elapsed();
    assert_eq!(
        lab.sim.refresh_calls(),
        1,
        "Codex calls the token endpoint before it takes the lock"
    );

    // Hold the transaction two more seconds: Codex keeps waiting and writes nothing.
    let hold = Duration::from_secs(2);
    let hold_started = Instant::now();
    while hold_started.elapsed() < hold {
        assert!(
            codex.try_wait().unwrap().is_none(),
            "Codex finished while authstore held auth.lock"
        );
        assert!(
            blocked_on_flock(pid, inode),
            "Codex stopped waiting for auth.lock while authstore held it"
        );
        assert!(
            std::fs::read(lab.auth_path()).unwrap() == before,
            "Codex wrote auth.json while authstore held auth.lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(transaction);
    let released = started.elapsed();

    let output = wait_output_bounded(codex).await;
    let finished = started.elapsed();
    assert_success(&output);
    let (_, torn) = sampler.finish();
    assert_eq!(torn, 0, "a reader saw a missing or torn auth.json");
    // Codex committed the tokens it had obtained: nothing lost, nothing spent twice.
    assert!(token(&lab.disk(), "refresh_token") != spent_by_codex);
    assert_current_token_on_disk(&lab, family);
    assert_eq!(lab.sim.refresh_calls(), 1);
    assert_no_token_presented_twice(&lab.sim);
    println!(
        "figures: Codex POSTed and blocked on auth.lock {}ms after start; lock released at {}ms; \
         Codex committed and exited at {}ms ({}ms after the release); 1 call, 0 reuse",
        millis(blocked_after),
        millis(released),
        millis(finished),
        millis(finished - released)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authstore_writing_while_a_codex_refresh_is_in_flight_makes_codex_keep_authstore_s_file() {
    let lab = Lab::new().await;
    // Login A, stale: Codex refreshes it. Login B of the same user, fresh: authstore installs it
    // with `login --from` while Codex's call is in flight, then `refresh --force`s it, holding its
    // transaction (auth.lock) when Codex wants to commit A's new tokens. Both calls are parked at
    // the authority until the test opens their gates, so the order is certain.
    let login_a = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login_a).await;
    let family_a = lab
        .sim
        .family_of(&token(&login_a, "refresh_token"))
        .unwrap();
    let login_b = lab.new_login(&alice(), FRESH);
    let family_b = lab
        .sim
        .family_of(&token(&login_b, "refresh_token"))
        .unwrap();
    let (gate_a, gate_b) = (Gate::default(), Gate::default());
    lab.hold_families(HashMap::from([
        (family_a, gate_a.clone()),
        (family_b, gate_b.clone()),
    ]));

    let sampler = Sampler::start(&lab.auth_path());
    let started = Instant::now();
    let codex = lab.codex(&["features", "list"]).spawn().unwrap();
    let codex_pid = codex.id().unwrap();
    assert!(
        eventually(BOUND, async || lab.sim.refresh_calls() == 1).await,
        "Codex never called the token endpoint"
    );

    lab.authstore_login(&login_b).await;
    let mut refresh = lab.authstore(&["refresh", "--force"]).spawn().unwrap();
    assert!(
        eventually(BOUND, async || lab.sim.refresh_calls() == 2).await,
        "authstore refresh --force never called the token endpoint"
    );
    let logged_in = std::fs::read(lab.auth_path()).unwrap();

    // Codex gets its answer and wants to commit: it waits for authstore's transaction.
    gate_a.open();
    let inode = lab.lock_inode();
    let blocked = eventually(BOUND, async || blocked_on_flock(codex_pid, inode)).await;
    assert!(blocked, "Codex did not wait for auth.lock");
    let blocked_at = started.elapsed();
    assert!(
        refresh.try_wait().unwrap().is_none(),
        "authstore's refresh ended before its answer came"
    );
    assert!(
        std::fs::read(lab.auth_path()).unwrap() == logged_in,
        "auth.json changed while authstore held auth.lock"
    );

    gate_b.open();
    let refreshed = wait_output_bounded(refresh).await;
    let authstore_done = started.elapsed();
    assert_success(&refreshed);
    assert!(stdout(&refreshed).starts_with("refreshed"));
    let codex_output = wait_output_bounded(codex).await;
    let codex_done = started.elapsed();
    assert_success(&codex_output);
    let (_, torn) = sampler.finish();
    assert_eq!(torn, 0, "a reader saw a missing or torn auth.json");

    // Codex re-read auth.json under the lock, saw authstore's newer login, and did not write:
    // the file holds B's current tokens, with authstore's unknown fields.
    let disk = lab.disk();
    assert_current_token_on_disk(&lab, family_b);
    assert_eq!(disk["x_custom"], json!({"kept": true}));
    assert_no_token_presented_twice(&lab.sim);
    assert_eq!(
        lab.calls_by_client(),
        BTreeMap::from([("authstore", 1), ("codex", 1)])
    );
    assert!(!lab.sim.is_family_revoked(family_a) && !lab.sim.is_family_revoked(family_b));
    println!(
        "figures: Codex's call in flight, authstore login --from and refresh --force of a newer \
         login; Codex got its answer and blocked on auth.lock behind authstore at {}ms; authstore \
         done at {}ms; Codex done at {}ms ({}ms later) and kept authstore's file (its own new \
         tokens for the older login discarded); 2 calls, 0 reuse",
        millis(blocked_at),
        millis(authstore_done),
        millis(codex_done),
        millis(codex_done - authstore_done)
    );
}

/// What a burst of `codex features list` processes on one home does to the authority.
struct Burst {
    calls: u64,
    successes: u64,
    /// Refused as `refresh_token_reused`.
    reuse: u64,
    /// Refused for any reason (reuse, or a family revoked by an earlier reuse).
    rejected: u64,
    durations: Vec<Duration>,
}

async fn codex_burst(lab: &Lab, processes: usize) -> Burst {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codex_processes_racing_on_a_stale_token_spend_it_repeatedly_unless_authstore_kept_it_fresh()
 {
    const CODEX_PROCESSES: usize = 6;
    // Without authstore: Codex's own race (it calls the endpoint before taking any lock).
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    let alone = codex_burst(&lab, CODEX_PROCESSES).await;
    // Each Codex that read the stale file before the first commit calls the endpoint with the
    // same token: one succeeds, the others are refused (the first as reused, which revokes the
    // family under this authority, the rest as invalidated).
    assert!(alone.calls >= 1);
    assert_eq!(alone.successes, 1, "exactly one refresh succeeds");
    assert_eq!(alone.rejected, alone.calls - 1);
    let revoked = lab.sim.is_family_revoked(family);
    assert_eq!(revoked, alone.reuse > 0);
    println!(
        "figures: {CODEX_PROCESSES} codex features list at once on one stale token, no authstore: \
         {} calls, 1 success, {} refused as reused, {} as invalidated, family revoked: {revoked}; \
         {}",
        alone.calls,
        alone.reuse,
        alone.rejected - alone.reuse,
        summary(&alone.durations)
    );

    // With authstore having refreshed the token first (what a keep-fresh agent does): Codex
    // finds fresh tokens and makes no call at all.
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    let (refresh, _) = lab.run_authstore(&["refresh"]).await;
    assert_success(&refresh);
    assert!(stdout(&refresh).starts_with("refreshed"));
    let kept_fresh = codex_burst(&lab, CODEX_PROCESSES).await;
    assert_eq!(
        kept_fresh.calls, 0,
        "Codex refreshed tokens authstore kept fresh"
    );
    assert_current_token_on_disk(&lab, family);
    assert_no_token_presented_twice(&lab.sim);
    println!(
        "figures: the same after `authstore refresh`: {} calls, {} reuse; {}",
        kept_fresh.calls,
        kept_fresh.reuse,
        summary(&kept_fresh.durations)
    );
}

/// Reads auth.json in a loop on its own thread until stopped; counts reads and failures (a
/// missing, torn or unparseable file).
struct Sampler {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(path: &Path) -> Self {
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
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        (
            self.reads.load(Ordering::SeqCst),
            self.failures.load(Ordering::SeqCst),
        )
    }
}

enum Who {
    Codex,
    Authstore,
}

/// One round: `codex features list` and `authstore token` / `refresh --force` processes started
/// together on one home; returns (who, exit code, duration) per process.
async fn mixed_round(
    lab: &Lab,
    codex: usize,
    tokens: usize,
    forced: usize,
) -> Vec<(Who, i32, Duration)> {
    let mut commands = Vec::new();
    for i in 0..codex.max(tokens).max(forced) {
        if i < codex {
            commands.push((Who::Codex, lab.codex(&["features", "list"])));
        }
        if i < tokens {
            commands.push((Who::Authstore, lab.authstore(&["token"])));
        }
        if i < forced {
            commands.push((Who::Authstore, lab.authstore(&["refresh", "--force"])));
        }
    }
    let runs = commands.into_iter().map(|(who, command)| async move {
        let (output, took) = timed(command).await;
        (who, output.status.code().unwrap_or(-1), took)
    });
    futures::future::join_all(runs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neither_deadlocks_the_other_when_codex_and_authstore_processes_run_together() {
    const ROUNDS: usize = 8;
    let lab = Lab::new().await;
    let mut codex_times = Vec::new();
    let mut authstore_times = Vec::new();
    let mut authstore_exits: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut reads, mut torn) = (0, 0);
    let mut revoked_rounds = 0;
    let mut reuse_pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();

    // Stale rounds: every token the authority issues lives 60 s, so every process refreshes.
    for round in 0..ROUNDS {
        let login = lab.new_login(&alice(), STALE);
        lab.authstore_login(&login).await;
        let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
        lab.sim.set_access_token_lifetime(STALE);
        let before = (lab.sim.refresh_calls(), lab.sim.reuse_rejections());
        let events_before = lab.sim.refresh_events().len();
        let sampler = Sampler::start(&lab.auth_path());
        let results = tokio::time::timeout(BOUND, mixed_round(&lab, 3, 2, 2))
            .await
            .expect("a round finished within the bound: no deadlock");
        let (r, t) = sampler.finish();
        (reads, torn) = (reads + r, torn + t);
        lab.sim.set_access_token_lifetime(FRESH);
        for (who, code, took) in results {
            match who {
                Who::Codex => {
                    assert_eq!(code, 0, "codex features list failed");
                    codex_times.push(took);
                }
                Who::Authstore => {
                    // 4: re-login required, when Codex's unlocked refresh got the family revoked.
                    assert!(
                        code == 0 || code == 4,
                        "authstore exited {code} (round {round})"
                    );
                    *authstore_exits.entry(code).or_default() += 1;
                    authstore_times.push(took);
                }
            }
        }
        let disk = lab.disk();
        assert_eq!(
            lab.sim.family_of(&token(&disk, "refresh_token")),
            Some(family)
        );
        revoked_rounds += usize::from(lab.sim.is_family_revoked(family));
        let reuse = lab.first_reuse(events_before);
        // authstore processes exclude each other: only Codex, which calls the endpoint before
        // taking any lock, can be on one side of a reuse.
        assert!(
            reuse != Some(("authstore", "authstore")),
            "an authstore process presented a token another authstore process had spent"
        );
        if let Some(pair) = reuse {
            *reuse_pairs.entry(pair).or_default() += 1;
        }
        println!(
            "figures: stale round {round}: {} calls by client {:?}, {} reuse (spent by, presented \
             again by: {reuse:?}), family revoked: {}",
            lab.sim.refresh_calls() - before.0,
            lab.calls_by_client_since(events_before),
            lab.sim.reuse_rejections() - before.1,
            lab.sim.is_family_revoked(family),
        );
    }
    let stale_reuse = lab.sim.reuse_rejections();
    let stale_calls = lab.calls_by_client();

    // Kept-fresh rounds: authstore refreshed first; then the same mix, tokens living an hour.
    let reuse_before = lab.sim.reuse_rejections();
    let codex_calls_before = stale_calls.get("codex").copied().unwrap_or(0);
    for round in 0..ROUNDS {
        let login = lab.new_login(&alice(), STALE);
        lab.authstore_login(&login).await;
        let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
        let (refresh, _) = lab.run_authstore(&["refresh"]).await;
        assert_success(&refresh);
        let sampler = Sampler::start(&lab.auth_path());
        let results = tokio::time::timeout(BOUND, mixed_round(&lab, 3, 2, 2))
            .await
            .expect("a round finished within the bound: no deadlock");
        let (r, t) = sampler.finish();
        (reads, torn) = (reads + r, torn + t);
        for (who, code, took) in results {
            assert_eq!(code, 0, "a process failed in kept-fresh round {round}");
            match who {
                Who::Codex => codex_times.push(took),
                Who::Authstore => authstore_times.push(took),
            }
        }
        assert_current_token_on_disk(&lab, family);
    }
    let codex_calls_fresh =
        lab.calls_by_client().get("codex").copied().unwrap_or(0) - codex_calls_before;
    assert_eq!(
        codex_calls_fresh, 0,
        "Codex refreshed although authstore kept the tokens fresh"
    );
    assert_eq!(
        lab.sim.reuse_rejections(),
        reuse_before,
        "a token was reused although authstore kept the tokens fresh"
    );
    assert_eq!(torn, 0, "a reader saw a missing or torn auth.json");

    println!(
        "figures: {ROUNDS} stale rounds (3 codex + 2 token + 2 refresh --force each): calls by \
         client {stale_calls:?}, {stale_reuse} reuse (spent by, presented again by: \
         {reuse_pairs:?}), {revoked_rounds} of {ROUNDS} families revoked, authstore exits \
         {authstore_exits:?}"
    );
    println!(
        "figures: {ROUNDS} kept-fresh rounds: 0 Codex calls, 0 reuse; auth.json read {reads} \
         times during all rounds, never torn"
    );
    println!("figures: codex features list {}", summary(&codex_times));
    println!(
        "figures: authstore token/refresh {}",
        summary(&authstore_times)
    );
}

/// The agent run: access tokens live a little longer than Codex's 5-minute window, and the agent
/// refreshes when fewer than [`AGENT_AHEAD_SECS`] are left, so it refreshes every 8 s (the
/// authority rounds `exp` up to a whole second) while Codex, using real time too, always finds
/// more than 300 s left.
const AGENT_TOKEN_LIFETIME: Duration = Duration::from_secs(312);
const AGENT_AHEAD_SECS: u64 = 305;
/// Agent refresh cycles (token lifetimes, as the agent lives them) the run covers.
const AGENT_CYCLES: usize = 5;
/// After the last counted refresh, Codex keeps running on its token this long.
const AGENT_TAIL: Duration = Duration::from_secs(2);
/// The run stops here even if the agent fell behind (the assertions then fail).
const AGENT_RUN_CAP: Duration = Duration::from_secs(52);

/// `authstore agent --json` running beside the test, its event lines collected as they come, each
/// with the moment it was read.
struct Agent {
    child: Child,
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
    stdout: tokio::task::JoinHandle<()>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Agent {
    fn spawn(lab: &Lab, ahead_secs: u64) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        let mut child = lab
            .authstore(&["agent", "--json", "--ahead", &ahead_secs.to_string()])
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
    fn moments(&self, event: &str) -> Vec<Instant> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, value)| value["event"] == event)
            .map(|(at, _)| *at)
            .collect()
    }

    fn count(&self, event: &str) -> usize {
        self.moments(event).len()
    }

    /// SIGTERM, then waits (bounded); returns the exit status, every event and stderr.
    async fn terminate(mut self) -> (std::process::ExitStatus, Vec<Value>, String) {
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

/// One finished process of the agent run.
struct Run {
    exit: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the commands `make` builds one after another until `stop` is set.
async fn repeat_until(stop: &AtomicBool, make: impl Fn() -> Command) -> Vec<Run> {
    let mut runs = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let (output, took) = timed(make()).await;
        runs.push(Run {
            exit: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            stderr: stderr(&output),
            took,
        });
    }
    runs
}

/// Seconds the access token in auth.json has left (negative when expired), or `None` when the
/// file cannot be read whole.
fn seconds_left_on_disk(lab: &Lab) -> Option<f64> {
    let bytes = std::fs::read(lab.auth_path()).ok()?;
    let document: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = access_token_expiry(document["tokens"]["access_token"].as_str()?)?;
    Some(match exp.duration_since(SystemTime::now()) {
        Ok(left) => left.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    })
}

/// Issue 6: with `authstore agent` keeping the token ahead of Codex's window, real Codex processes
/// running all the time over several token lifetimes never call the token endpoint and never
/// report a refresh failure. The control, the same `codex features list` burst on a stale token
/// without the agent, runs at the end in this same lab (it shows that these Codex processes do
/// reach this authority when their token is stale) and, racing, in
/// `codex_processes_racing_on_a_stale_token_spend_it_repeatedly_unless_authstore_kept_it_fresh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_agent_running_codex_never_calls_the_token_endpoint_over_many_token_lifetimes() {
    const FEATURES_WORKERS: usize = 4;
    const STATUS_WORKERS: usize = 1;
    const TOKEN_WORKERS: usize = 2;
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), AGENT_TOKEN_LIFETIME);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    lab.sim.set_access_token_lifetime(AGENT_TOKEN_LIFETIME);

    let agent = Agent::spawn(&lab, AGENT_AHEAD_SECS);
    assert!(
        eventually(BOUND, async || agent.count("started") == 1).await,
        "the agent never reported `started`"
    );

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    // Watches auth.json and the agent; stops the workers once the agent has refreshed
    // AGENT_CYCLES times and Codex has run AGENT_TAIL on the last token.
    let watch = async {
        let (mut lowest, mut samples, mut unreadable) = (f64::MAX, 0_u64, 0_u64);
        loop {
            match seconds_left_on_disk(&lab) {
                Some(left) => lowest = lowest.min(left),
                None => unreadable += 1,
            }
            samples += 1;
            let covered = agent
                .moments("refreshed")
                .get(AGENT_CYCLES - 1)
                .is_some_and(|last| last.elapsed() >= AGENT_TAIL);
            if covered || started.elapsed() >= AGENT_RUN_CAP {
                stop.store(true, Ordering::SeqCst);
                return (lowest, samples, unreadable);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let features = (0..FEATURES_WORKERS)
        .map(|_| repeat_until(&stop, || lab.codex(&["features", "list"])))
        .collect::<Vec<_>>();
    let status = (0..STATUS_WORKERS)
        .map(|_| repeat_until(&stop, || lab.codex(&["login", "status"])))
        .collect::<Vec<_>>();
    let tokens = (0..TOKEN_WORKERS)
        .map(|_| repeat_until(&stop, || lab.authstore(&["token"])))
        .collect::<Vec<_>>();
    let ((lowest, samples, unreadable), features, status, tokens) = tokio::join!(
        watch,
        futures::future::join_all(features),
        futures::future::join_all(status),
        futures::future::join_all(tokens),
    );
    let ran = started.elapsed();
    let features: Vec<Run> = features.into_iter().flatten().collect();
    let status: Vec<Run> = status.into_iter().flatten().collect();
    let tokens: Vec<Run> = tokens.into_iter().flatten().collect();

    // SIGTERM while the agent sleeps: it has reported every refresh the authority served it, and
    // its next check is more than a second away.
    let authstore_calls = || lab.calls_by_client().get("authstore").copied().unwrap_or(0);
    assert!(
        eventually(BOUND, async || {
            agent.count("refreshed") == authstore_calls()
                && seconds_left_on_disk(&lab)
                    .is_some_and(|left| left >= AGENT_AHEAD_SECS as f64 + 1.0)
        })
        .await,
        "the agent did not settle between refreshes"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refreshed_at = agent.moments("refreshed");
    let (agent_status, agent_events, agent_stderr) = agent.terminate().await;

    // The figures before the assertions, so that a failure shows them.
    let calls = lab.calls_by_client();
    let total_calls = lab.sim.refresh_calls();
    let agent_refreshes = agent_events
        .iter()
        .filter(|event| event["event"] == "refreshed")
        .count();
    let codex_calls = total_calls as i64 - agent_refreshes as i64;
    let mut event_counts: BTreeMap<String, usize> = BTreeMap::new();
    for event in &agent_events {
        let name = event["event"].as_str().unwrap_or("?").to_owned();
        *event_counts.entry(name).or_default() += 1;
    }
    let cycles: Vec<Duration> = refreshed_at.windows(2).map(|w| w[1] - w[0]).collect();
    let mut codex_stderr: BTreeMap<&str, usize> = BTreeMap::new();
    for run in features.iter().chain(&status) {
        *codex_stderr.entry(run.stderr.as_str()).or_default() += 1;
    }
    println!(
        "figures: agent run {}ms (tokens live {}s, agent --ahead {AGENT_AHEAD_SECS}): agent \
         events {event_counts:?}, refresh cycle {}; {} codex features list ({FEATURES_WORKERS} \
         at a time) {}; {} codex login status {}; {} authstore token {}; authority: {total_calls} \
         refresh calls, by client {calls:?}, Codex calls (total minus agent refreshes) \
         {codex_calls}, {} reuse; auth.json read {samples} times, lowest {lowest:.1}s left, \
         {unreadable} unreadable; Codex stderr (text: runs) {codex_stderr:?}; agent stderr {:?}",
        millis(ran),
        AGENT_TOKEN_LIFETIME.as_secs(),
        summary(&cycles),
        features.len(),
        summary(&features.iter().map(|run| run.took).collect::<Vec<_>>()),
        status.len(),
        summary(&status.iter().map(|run| run.took).collect::<Vec<_>>()),
        tokens.len(),
        summary(&tokens.iter().map(|run| run.took).collect::<Vec<_>>()),
        lab.sim.reuse_rejections(),
        agent_stderr,
    );

    assert!(
        agent_refreshes >= AGENT_CYCLES,
        "the agent refreshed {agent_refreshes} times in {}ms; the run needs {AGENT_CYCLES} cycles",
        millis(ran)
    );
    assert!(
        !features.is_empty() && !status.is_empty() && !tokens.is_empty(),
        "every kind of worker ran"
    );
    for run in features.iter().chain(&status) {
        assert_eq!(run.exit, Some(0), "a Codex process failed: {}", run.stderr);
        assert!(
            !run.stderr.contains("Failed to refresh"),
            "a Codex process reported a refresh failure: {}",
            run.stderr
        );
    }
    for run in &status {
        assert!(
            run.stderr.contains("Logged in using ChatGPT"),
            "codex login status: {}",
            run.stderr
        );
    }
    for run in &tokens {
        assert_eq!(run.exit, Some(0), "authstore token failed: {}", run.stderr);
        assert!(!run.stdout.is_empty(), "authstore token printed nothing");
    }
    // No Codex process called the token endpoint: every call came from the agent. Both ways of
    // telling: the client_id Codex sends, and the total minus the agent's own `refreshed` events
    // (which also shows that no `authstore token` process had to refresh).
    assert_eq!(calls.get("codex"), None, "Codex called the token endpoint");
    assert_eq!(codex_calls, 0, "refresh calls the agent did not report");
    assert_eq!(
        calls,
        BTreeMap::from([("authstore", agent_refreshes)]),
        "refresh calls by client"
    );
    assert_no_token_presented_twice(&lab.sim);
    assert!(!lab.sim.is_family_revoked(family));
    assert_current_token_on_disk(&lab, family);
    assert_eq!(unreadable, 0, "a reader saw a missing or torn auth.json");
    assert!(
        lowest > 300.0,
        "auth.json held a token with only {lowest:.1}s left: inside Codex's window"
    );
    // The agent: active at once (no other agent on this home), nothing but its refreshes, then
    // a clean stop on SIGTERM.
    assert_eq!(
        event_counts,
        BTreeMap::from([
            ("active".to_owned(), 1),
            ("refreshed".to_owned(), agent_refreshes),
            ("started".to_owned(), 1),
            ("stopped".to_owned(), 1),
        ]),
        "agent events"
    );
    assert_eq!(agent_events.last().unwrap()["event"], json!("stopped"));
    assert!(
        agent_status.success(),
        "the agent did not stop cleanly on SIGTERM: {agent_status}; stderr: {agent_stderr}"
    );

    // The control, without the agent: the same burst on a stale token in this lab calls the
    // endpoint (so the zero above is the agent's doing, not Codex looking elsewhere).
    let stale = lab.new_login(&alice(), STALE);
    lab.authstore_login(&stale).await;
    let control = codex_burst(&lab, FEATURES_WORKERS).await;
    assert!(
        control.calls >= 1,
        "without the agent, Codex made no call on a stale token"
    );
    assert_eq!(control.successes, 1, "exactly one refresh succeeds");
    println!(
        "figures: control, agent stopped, {FEATURES_WORKERS} codex features list at once on a \
         stale token: {} calls, {} refused as reused, {} as invalidated; {}",
        control.calls,
        control.reuse,
        control.rejected - control.reuse,
        summary(&control.durations)
    );
}
