//! Codex's other credential stores (SPEC §10) with real Codex: the keyring store
//! (`cli_auth_credentials_store = "keyring"`: the Secret Service item `Codex Auth` /
//! `cli|<16 hex>`) and the encrypted secrets file (`[features] secret_auth_storage = true`:
//! `secrets/codex_auth.age`, its passphrase in the item `codex` / `secrets|<16 hex>`).
//!
//! In each store: each program reads what the other writes (authstore's login is what Codex
//! refreshes with, and authstore prints Codex's refreshed token with no call of its own); and a
//! race on one stale token through `authstore broker` (app-servers forcing refreshes and
//! `authstore token` processes, with `codex exec` in the keyring) makes at most one authority
//! call at start-up and per round, all of them the broker's, no `refresh_token_reused`, no failed
//! request, and leaves the store on the authority's current refresh token. No `auth.json` ever
//! appears in the home (a thread looks for one every millisecond).
//!
//! The tests need a Secret Service: `scripts/codex-interop.sh` runs the suite inside a private
//! D-Bus session with gnome-keyring, started inside the namespace (a session bus on an abstract
//! socket belongs to its network namespace), and sets `CODEX_INTEROP_KEYRING=1`, which turns a
//! Secret Service that does not answer into a failure. Without it they skip, saying why. The
//! tests read the stores as another program would: the items with `secret-tool`, the secrets
//! file with the `age` crate and the passphrase from its item.
//!
//! Each Codex decryption of the secrets file costs about 1.7 s of CPU and 512 MiB (scrypt at the
//! work factor age picks), so that race is smaller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use age::secrecy::SecretString;
use authstore_testkit::alice;
use authstore_testkit::binary::{assert_no_token_presented_twice, stderr, stdout};
use authstore_testkit::process::BOUND;
use authstore_testkit::token;
use serde_json::{Value, json};

use crate::broker::{EXEC, assert_no_refresh_failure_in};
use crate::editors::{Answer, AppServer};
use crate::lab::*;

/// Set to `1` by `scripts/codex-interop.sh`, which starts a Secret Service for the suite: the
/// tests of this module then fail when none answers, instead of skipping.
const REQUESTED: &str = "CODEX_INTEROP_KEYRING";

/// Between two rounds of forced refreshes.
const ROUND_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Store {
    /// The login in the keyring item `Codex Auth` / `cli|<16 hex>`.
    Keyring,
    /// The login in `secrets/codex_auth.age`, its passphrase in the item `codex` /
    /// `secrets|<16 hex>`.
    SecretsFile,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Keyring => "keyring",
            Store::SecretsFile => "secrets file",
        }
    }
}

fn secret_tool(args: &[&str]) -> Output {
    StdCommand::new("secret-tool")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("secret-tool runs")
}

/// `None` when a Secret Service answers on the session bus (a probe item is stored and read
/// back), else why not.
fn secret_service_missing() -> Option<String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return Some("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset)".into());
    }
    let probe = ["service", "authstore-probe", "username", "codex-interop"];
    let mut store = StdCommand::new("secret-tool");
    store
        .args(["store", "--label=authstore probe"])
        .args(probe)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let Ok(mut child) = store.spawn() else {
        return Some("secret-tool (libsecret-tools) is not installed".into());
    };
    {
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(b"x");
    }
    let stored = child.wait_with_output().unwrap();
    let mut lookup = vec!["lookup"];
    lookup.extend(probe);
    if stored.status.success() && secret_tool(&lookup).stdout == b"x" {
        None
    } else {
        Some(format!(
            "no Secret Service answers on the session bus: {}",
            String::from_utf8_lossy(&stored.stderr).trim()
        ))
    }
}

/// Whether the calling test runs: only when the script asked for these tests, and then a Secret
/// Service that does not answer is a failure.
fn secret_service() -> bool {
    if std::env::var_os(REQUESTED).is_none_or(|value| value != "1") {
        eprintln!(
            "skipped: needs a Secret Service of its own; scripts/codex-interop.sh runs this test \
             with one ({REQUESTED}=1)"
        );
        return false;
    }
    if let Some(why) = secret_service_missing() {
        panic!("{REQUESTED}=1 but {why}");
    }
    true
}

/// A lab whose Codex processes reach the session bus, its every Codex URL on the authority, in
/// `store`; returns it with the managed configuration file for app-servers.
async fn lab_in(store: Store) -> (Lab, PathBuf) {
    let mut lab = Lab::new().await;
    lab.pass_session_bus();
    let managed = lab.configure_for_app_servers();
    let path = lab.home().join("config.toml");
    let urls = std::fs::read_to_string(&path).unwrap();
    // The store's key at the top level, before the tables.
    let mut config = format!("cli_auth_credentials_store = \"keyring\"\n{urls}");
    if store == Store::SecretsFile {
        config.push_str("\n[features]\nsecret_auth_storage = true\n");
    }
    std::fs::write(&path, config).unwrap();
    (lab, managed)
}

/// The attributes of one of Codex's keyring items for this home.
fn item(service: &str, account: String) -> Vec<String> {
    vec![
        "service".into(),
        service.into(),
        "username".into(),
        account,
        "target".into(),
        "default".into(),
    ]
}

fn lookup(attributes: &[String]) -> Option<Vec<u8>> {
    let mut args = vec!["lookup"];
    args.extend(attributes.iter().map(String::as_str));
    let output = secret_tool(&args);
    (output.status.success() && !output.stdout.is_empty()).then_some(output.stdout)
}

fn fingerprint(home: &Path) -> String {
    authstore::store::home_fingerprint(home)
}

fn secrets_path(home: &Path) -> PathBuf {
    home.join("secrets").join("codex_auth.age")
}

/// The login `store` holds (`None` when it holds none), read as another program would.
fn login_in(lab: &Lab, store: Store) -> Option<Value> {
    let home = lab.home();
    match store {
        Store::Keyring => {
            let secret = lookup(&item("Codex Auth", format!("cli|{}", fingerprint(home))))?;
            Some(serde_json::from_slice(&secret).expect("the keyring item holds JSON"))
        }
        Store::SecretsFile => {
            let bytes = std::fs::read(secrets_path(home)).ok()?;
            let passphrase = lookup(&item("codex", format!("secrets|{}", fingerprint(home))))
                .expect("the secrets file's passphrase is in the keyring");
            let identity = age::scrypt::Identity::new(SecretString::from(
                String::from_utf8(passphrase).expect("the passphrase is text"),
            ));
            // A decryption at Codex's work factor: about a second of CPU.
            let plaintext = tokio::task::block_in_place(|| age::decrypt(&identity, &bytes))
                .expect("the passphrase in the keyring opens secrets/codex_auth.age");
            let plaintext: Value = serde_json::from_slice(&plaintext).unwrap();
            assert_eq!(plaintext["version"], json!(1), "the secrets file's version");
            let login = plaintext["secrets"]["global/CODEX_AUTH"].as_str()?;
            Some(serde_json::from_str(login).expect("the login entry holds JSON"))
        }
    }
}

/// The tokens of `login`, to keep them out of failure messages.
fn tokens_of(login: &Value) -> Vec<String> {
    ["id_token", "access_token", "refresh_token"]
        .iter()
        .filter_map(|name| login["tokens"][name].as_str().map(str::to_owned))
        .collect()
}

/// Looks for `auth.json` in the home every millisecond on its own thread, until stopped.
struct NoAuthJson {
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl NoAuthJson {
    fn start(path: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, polls, seen) = (stop.clone(), polls.clone(), seen.clone());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    if std::fs::symlink_metadata(&path).is_ok() {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    polls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Self {
            stop,
            polls,
            seen,
            thread,
        }
    }

    /// Stops; asserts that no poll saw `auth.json` and that there is none; returns the polls.
    fn finish(self, lab: &Lab) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        let (polls, seen) = (
            self.polls.load(Ordering::SeqCst),
            self.seen.load(Ordering::SeqCst),
        );
        assert_eq!(
            seen, 0,
            "auth.json was in the home in {seen} of {polls} polls"
        );
        assert!(!lab.auth_path().exists(), "the home holds an auth.json");
        polls
    }
}

/// Asserts that `output` succeeded; its stderr, if shown, is redacted.
fn assert_ran(lab: &Lab, output: &Output, what: &str, tokens: &[String]) {
    assert!(
        output.status.success(),
        "{what} exited {:?}: {}",
        output.status.code(),
        redacted(lab, &stderr(output), tokens)
    );
}

/// Asserts that `login` holds the authority's current refresh token of `family`.
fn assert_current(lab: &Lab, login: &Value, family: u64, what: &str) {
    let held = token(login, "refresh_token");
    assert!(
        lab.sim.current_refresh_token(family).as_deref() == Some(held.as_str()),
        "{what} does not hold the authority's current refresh token"
    );
}

/// authstore installs a stale login in `store`; `codex login status` reads it, `codex features
/// list` refreshes with exactly its refresh token and stores Codex's tokens there; `authstore
/// token` then prints Codex's access token with no call.
async fn each_reads_what_the_other_writes(store: Store) {
    let (lab, _) = lab_in(store).await;
    let watcher = NoAuthJson::start(lab.auth_path());
    let login = lab.new_login(&alice(), STALE);
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    let mut known = tokens_of(&login);

    let started = Instant::now();
    lab.authstore_login(&login).await;
    let login_took = started.elapsed();
    let installed = login_in(&lab, store).expect("authstore login wrote the store");
    assert!(
        installed["tokens"] == login["tokens"],
        "the {} does not hold the tokens authstore login installed",
        store.name()
    );
    assert_eq!(
        installed["x_custom"],
        json!({"kept": true}),
        "unknown fields"
    );

    let (status, status_took) = lab.run_codex(&["login", "status"]).await;
    assert_ran(&lab, &status, "codex login status", &known);
    assert!(
        stderr(&status).contains("Logged in using ChatGPT"),
        "codex login status: {}",
        redacted(&lab, &stderr(&status), &known)
    );
    assert_eq!(lab.sim.refresh_calls(), 0, "codex login status refreshed");

    let (features, features_took) = lab.run_codex(&["features", "list"]).await;
    assert_ran(&lab, &features, "codex features list", &known);
    let presented = lab.sim.presented_refresh_tokens();
    assert_eq!(presented.len(), 1, "codex features list on a stale token");
    assert!(
        presented[0] == token(&login, "refresh_token"),
        "Codex presented another refresh token than the one authstore wrote"
    );
    let written = login_in(&lab, store).expect("the store holds a login after Codex's refresh");
    known.extend(tokens_of(&written));
    assert!(
        token(&written, "access_token") != token(&login, "access_token"),
        "Codex stored no new token in the {}",
        store.name()
    );
    assert_current(&lab, &written, family, "the store after Codex's refresh");

    let (printed, token_took) = lab.run_authstore(&["token"]).await;
    assert_ran(&lab, &printed, "authstore token", &known);
    assert!(
        stdout(&printed) == token(&written, "access_token"),
        "authstore token printed another access token than the one Codex stored"
    );
    let (status_json, _) = lab.run_authstore(&["status", "--json"]).await;
    assert_ran(&lab, &status_json, "authstore status --json", &known);
    let status_json: Value = serde_json::from_str(&stdout(&status_json)).unwrap();
    assert_eq!(status_json["logged_in"], json!(true));
    assert_eq!(status_json["credentials_store"]["store"], json!("keyring"));
    let secrets_file = status_json["credentials_store"]["secrets_file"].clone();
    match store {
        Store::Keyring => assert_eq!(secrets_file, Value::Null),
        Store::SecretsFile => assert_eq!(
            secrets_file,
            json!(secrets_path(lab.home()).display().to_string())
        ),
    }
    assert_eq!(
        lab.sim.refresh_calls(),
        1,
        "authstore called the authority although Codex had just refreshed"
    );
    assert_eq!(lab.calls_by_client(), BTreeMap::from([("codex", 1)]));
    assert_no_token_presented_twice(&lab.sim);
    let polls = watcher.finish(&lab);
    println!(
        "figures: {} both ways: authstore login --from {}ms; codex login status {}ms; codex \
         features list on authstore's stale token: 1 call, {}ms; authstore token on Codex's \
         tokens: 0 calls, {}ms; no auth.json in {polls} polls",
        store.name(),
        millis(login_took),
        millis(status_took),
        millis(features_took),
        millis(token_took),
    );
}

/// The processes of a race on one stale token through the broker.
struct Shape {
    /// App-servers, started one after another (each refreshes a stale token as it starts).
    editors: usize,
    /// `codex exec` on the stale token, started with the app-servers.
    execs: usize,
    /// `authstore token` processes started with the app-servers.
    tokens_at_start: usize,
    /// Rounds in which every app-server forces a refresh at once.
    rounds: usize,
    /// `authstore token` processes beside each round.
    tokens_per_round: usize,
}

/// What a race did.
struct Race {
    startup_calls: u64,
    calls_per_round: Vec<u64>,
    /// Authority calls by client ("authstore": the broker and authstore processes; "codex":
    /// Codex itself).
    calls_by_client: BTreeMap<&'static str, usize>,
    answered: usize,
    /// Failed answers, described (no token), with their counts.
    failures: BTreeMap<String, usize>,
    /// Answers or printed tokens that are not an access token the store held at some point.
    unknown_tokens: usize,
    /// Exit codes of the `authstore token` processes that failed.
    token_failures: Vec<Option<i32>>,
    tokens_run: usize,
    /// Reads of the store (after the start-up, after each round) that did not find the
    /// authority's current refresh token.
    reads_off_the_current_token: usize,
    execs: Vec<(Option<i32>, Duration)>,
    exec_stderr: BTreeMap<String, usize>,
    reuse: u64,
    revoked: bool,
    auth_json_polls: u64,
    took: Duration,
}

impl Race {
    fn figures(&self, store: Store, shape: &Shape) -> String {
        format!(
            "figures: {} race through the broker: {} app-servers, {} codex exec, {} authstore token \
             at start then {} per round, {} forced rounds in {}ms: {} authority calls at start-up, \
             then per round {:?} (by client {:?}); {} answered, {} failed {:?}; authstore token: \
             {} run, {} failed; {} tokens the store never held; store reads off the current token: {}; \
             reuse {}, family revoked: {}; codex exec exit codes and times {:?}; no auth.json in \
             {} polls",
            store.name(),
            shape.editors,
            shape.execs,
            shape.tokens_at_start,
            shape.tokens_per_round,
            shape.rounds,
            millis(self.took),
            self.startup_calls,
            self.calls_per_round,
            self.calls_by_client,
            self.answered,
            self.failures.values().sum::<usize>(),
            self.failures,
            self.tokens_run,
            self.token_failures.len(),
            self.unknown_tokens,
            self.reads_off_the_current_token,
            self.reuse,
            self.revoked,
            self.execs
                .iter()
                .map(|(code, took)| (*code, millis(*took)))
                .collect::<Vec<_>>(),
            self.auth_json_polls,
        )
    }
}

/// `count` `authstore token` processes at once, each with a lock timeout shorter than its
/// request timeout (one waiting on the broker while the broker waits on its lock fails). In
/// the secrets file every holder of `auth.lock` (Codex, the broker, authstore) decrypts and
/// encrypts with scrypt, about 1.5 s of CPU each on a 2-core machine, so a queue of them takes
/// longer than the 5 s that is ample with the keyring item.
async fn authstore_tokens(lab: &Lab, store: Store, count: usize) -> Vec<Output> {
    let timeouts: &[&str] = match store {
        Store::Keyring => &["--lock-timeout", "5"],
        Store::SecretsFile => &["--lock-timeout", "45", "--request-timeout", "60"],
    };
    let args: Vec<&str> = timeouts.iter().copied().chain(["token"]).collect();
    futures::future::join_all((0..count).map(|_| lab.run_authstore(&args)))
        .await
        .into_iter()
        .map(|(output, _)| output)
        .collect()
}

/// A stale login in `store`, the broker on the home, then `shape`'s processes on that stale
/// token at once, then its rounds of forced refreshes (with `authstore token` beside each).
async fn race(store: Store, shape: &Shape) -> (Lab, Race) {
    let (mut lab, managed) = lab_in(store).await;
    let watcher = NoAuthJson::start(lab.auth_path());
    let login = lab.new_login(&alice(), STALE);
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    lab.authstore_login(&login).await;
    let broker = lab.start_broker().await;
    // Every access token the store held: an answer must be one of them.
    let mut held = vec![token(&login, "access_token")];
    let mut known = tokens_of(&login);

    let started = Instant::now();
    let exec_runs = futures::future::join_all((0..shape.execs).map(|_| lab.run_codex(EXEC)));
    let session = async {
        let start_editors = async {
            let mut editors = Vec::new();
            for editor in 0..shape.editors {
                editors.push(AppServer::start(&lab, &managed, editor).await);
            }
            editors
        };
        let (mut editors, mut printed) = futures::future::join(
            start_editors,
            authstore_tokens(&lab, store, shape.tokens_at_start),
        )
        .await;
        let startup_calls = lab.sim.refresh_calls();
        // What the store holds after the start-up, then after each round, and whether that was
        // the authority's current refresh token then.
        let read = || {
            let login = login_in(&lab, store).expect("the store holds the login");
            let current = lab.sim.current_refresh_token(family).as_deref()
                == login["tokens"]["refresh_token"].as_str();
            (login, current)
        };
        let mut after = vec![read()];
        let mut calls_per_round = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..shape.rounds {
            let before = lab.sim.refresh_calls();
            let forced = futures::future::join_all(
                editors
                    .iter_mut()
                    .map(|editor| editor.auth_status_refreshing(true)),
            );
            let (round, round_printed) = tokio::time::timeout(
                BOUND,
                futures::future::join(
                    forced,
                    authstore_tokens(&lab, store, shape.tokens_per_round),
                ),
            )
            .await
            .expect("a round finished within the bound");
            calls_per_round.push(lab.sim.refresh_calls() - before);
            answers.extend(round);
            printed.extend(round_printed);
            after.push(read());
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        for editor in editors {
            editor.stop().await;
        }
        (startup_calls, calls_per_round, answers, printed, after)
    };
    let (exec_outputs, (startup_calls, calls_per_round, answers, printed, after)) =
        tokio::time::timeout(BOUND * 2, futures::future::join(exec_runs, session))
            .await
            .expect("the race finished within the bound");
    let took = started.elapsed();
    let broker_stderr = broker.stop().await;

    let mut reads_off_the_current_token = 0;
    for (login, current) in &after {
        held.push(token(login, "access_token"));
        known.extend(tokens_of(login));
        if !current {
            reads_off_the_current_token += 1;
        }
    }
    let mut answered = 0;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut unknown_tokens = 0;
    for answer in answers {
        match answer {
            Answer::Token(access) => {
                answered += 1;
                if !held.contains(&access) {
                    unknown_tokens += 1;
                    known.push(access);
                }
            }
            Answer::Failed(described) => *failures.entry(described).or_default() += 1,
        }
    }
    let mut token_failures = Vec::new();
    for output in &printed {
        if !output.status.success() {
            token_failures.push(output.status.code());
        } else if !held.contains(&stdout(output)) {
            unknown_tokens += 1;
            known.push(stdout(output));
        }
    }
    let mut execs = Vec::new();
    let mut exec_stderr: BTreeMap<String, usize> = BTreeMap::new();
    for (output, took) in exec_outputs {
        execs.push((output.status.code(), took));
        let text = String::from_utf8_lossy(&output.stderr);
        for line in redacted(&lab, &text, &known).lines() {
            // Without its timestamp, so that equal lines count together.
            let line = match line.split_once(' ') {
                Some((first, rest)) if first.ends_with('Z') && first.starts_with("20") => rest,
                _ => line,
            };
            *exec_stderr
                .entry(line.chars().take(160).collect())
                .or_default() += 1;
        }
    }
    assert_none_of_these_tokens_in(&lab, &broker_stderr, "the broker's stderr", &known);
    let auth_json_polls = watcher.finish(&lab);
    let run = Race {
        startup_calls,
        calls_per_round,
        calls_by_client: lab.calls_by_client(),
        answered,
        failures,
        unknown_tokens,
        tokens_run: printed.len(),
        token_failures,
        reads_off_the_current_token,
        execs,
        exec_stderr,
        reuse: lab.sim.reuse_rejections(),
        revoked: lab.sim.is_family_revoked(family),
        auth_json_polls,
        took,
    };
    // The end: the store (the file opening with the passphrase in the keyring) holds the
    // authority's current refresh token.
    let last = login_in(&lab, store).expect("the store holds the login at the end");
    assert_current(
        &lab,
        &last,
        family,
        &format!("the {} at the end", store.name()),
    );
    (lab, run)
}

/// The assertions of a race (after its figures are printed).
fn assert_race(lab: &Lab, store: Store, shape: &Shape, run: &Race) {
    println!("{}", run.figures(store, shape));
    assert!(
        run.startup_calls <= 1,
        "{} authority calls at start-up on one stale token",
        run.startup_calls
    );
    assert!(
        run.calls_per_round.iter().all(|&calls| calls <= 1),
        "authority calls per round of forced refreshes: {:?}",
        run.calls_per_round
    );
    assert_eq!(
        run.calls_by_client.get("codex"),
        None,
        "Codex called the authority directly"
    );
    assert_eq!(
        lab.sim.refresh_calls() as usize,
        run.calls_by_client.values().sum::<usize>()
    );
    assert_no_token_presented_twice(&lab.sim);
    assert_eq!(run.reuse, 0, "refresh_token_reused");
    assert!(!run.revoked, "the family was revoked");
    assert_eq!(
        run.failures.values().sum::<usize>(),
        0,
        "editor requests failed: {:?}",
        run.failures
    );
    assert_eq!(run.answered, shape.editors * shape.rounds);
    assert!(
        run.token_failures.is_empty(),
        "authstore token exit codes (5: it waited for its lock until the timeout): {:?}",
        run.token_failures
    );
    assert_eq!(
        run.tokens_run,
        shape.tokens_at_start + shape.tokens_per_round * shape.rounds
    );
    assert_eq!(
        run.unknown_tokens,
        0,
        "tokens that the {} never held were handed out",
        store.name()
    );
    assert_eq!(
        run.reads_off_the_current_token,
        0,
        "the {} was not on the authority's current refresh token after the start-up or a round",
        store.name()
    );
    assert_no_refresh_failure_in(&run.exec_stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_the_keyring_codex_reads_what_authstore_writes_and_authstore_what_codex_writes() {
    if !secret_service() {
        return;
    }
    each_reads_what_the_other_writes(Store::Keyring).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_the_keyring_forced_refreshes_codex_exec_and_authstore_token_through_the_broker_make_one_authority_call_per_round()
 {
    if !secret_service() {
        return;
    }
    let shape = Shape {
        editors: 3,
        execs: 1,
        tokens_at_start: 6,
        rounds: 3,
        tokens_per_round: 3,
    };
    let (lab, run) = race(Store::Keyring, &shape).await;
    assert_race(&lab, Store::Keyring, &shape, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_the_secrets_file_codex_reads_what_authstore_writes_and_authstore_what_codex_writes() {
    if !secret_service() {
        return;
    }
    each_reads_what_the_other_writes(Store::SecretsFile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_the_secrets_file_forced_refreshes_and_authstore_token_through_the_broker_make_one_authority_call_per_round()
 {
    if !secret_service() {
        return;
    }
    let shape = Shape {
        editors: 2,
        execs: 0,
        tokens_at_start: 3,
        rounds: 2,
        tokens_per_round: 1,
    };
    let (lab, run) = race(Store::SecretsFile, &shape).await;
    assert_race(&lab, Store::SecretsFile, &shape, &run);
}
