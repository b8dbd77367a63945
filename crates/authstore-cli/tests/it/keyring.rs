#![cfg(all(target_os = "linux", feature = "simulator", feature = "keyring"))]
//! The keyring store, end to end: real processes of the real binary against the embedded token
//! authority, with Codex's login in a real Secret Service item.
//!
//! The tests that need a Secret Service skip themselves, saying why, when none answers on the
//! session bus (so `cargo test` stays green on any machine); `scripts/keyring-tests.sh` runs
//! them for real inside `dbus-run-session` with gnome-keyring, and sets
//! `AUTHSTORE_KEYRING_TESTS=1`, which turns a missing Secret Service into a failure. Items are
//! seeded and read with `secret-tool` (libsecret), as another program would, with the
//! attributes Codex's `keyring` crate gives them. The tests that need no Secret Service (the
//! configuration, no bus at all) run everywhere.
//!
//! One test locks the login collection, so the tests that touch the Secret Service take turns
//! (`SECRET_SERVICE`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use authstore_simulator::Identity;
use authstore_testkit::alice;
use authstore_testkit::binary::*;
use serde_json::{Value, json};

/// The tests that use the Secret Service, one at a time.
pub(crate) static SECRET_SERVICE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SERVICE: &str = "Codex Auth";

pub(crate) fn account(home: &Path) -> String {
    format!("cli|{}", authstore::store::home_fingerprint(home))
}

pub(crate) fn secret_tool(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new("secret-tool")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("secret-tool runs");
    if let Some(input) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Whether a Secret Service answers: a probe item is stored and read back. `None` when it does,
/// else why not.
fn secret_service_missing() -> Option<String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return Some("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset)".into());
    }
    let probe = ["service", "authstore-probe", "username", "probe"];
    let mut store = vec!["store", "--label=authstore probe"];
    store.extend(probe);
    if Command::new("secret-tool")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("secret-tool (libsecret-tools) is not installed".into());
    }
    let stored = secret_tool(&store, Some(b"x"));
    let mut lookup = vec!["lookup"];
    lookup.extend(probe);
    let read = secret_tool(&lookup, None);
    if stored.status.success() && read.stdout == b"x" {
        None
    } else {
        Some(format!(
            "no Secret Service answers on the session bus: {}",
            String::from_utf8_lossy(&stored.stderr).trim()
        ))
    }
}

/// Skips the calling test (returns `true`) unless the keyring script runs the tests (they write
/// items into the session's keyring, which on a desktop is the user's own), and there a Secret
/// Service that does not answer is a failure.
pub(crate) fn skip() -> bool {
    if std::env::var_os("AUTHSTORE_KEYRING_TESTS").is_none() {
        eprintln!(
            "skipped: needs a Secret Service of its own; scripts/keyring-tests.sh runs this test \
             with one (AUTHSTORE_KEYRING_TESTS=1)"
        );
        return true;
    }
    if let Some(why) = secret_service_missing() {
        panic!("AUTHSTORE_KEYRING_TESTS is set but {why}");
    }
    false
}

fn item_attributes(home: &Path) -> Vec<String> {
    vec![
        "service".into(),
        SERVICE.into(),
        "username".into(),
        account(home),
        "target".into(),
        "default".into(),
    ]
}

/// Stores `document` as Codex's `keyring` crate does: compact JSON, its label and attributes.
fn seed_item(home: &Path, document: &Value) {
    let label = format!(
        "--label={}@{SERVICE}:default (keyring v3.6.3)",
        account(home)
    );
    let mut args = vec!["store".to_owned(), label];
    args.extend(item_attributes(home));
    args.extend(["application".into(), "rust-keyring".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let compact = serde_json::to_vec(document).unwrap();
    let output = secret_tool(&args, Some(&compact));
    assert!(output.status.success(), "secret-tool store: {output:?}");
}

/// The item's secret, parsed; `None` when there is no item.
fn read_item(home: &Path) -> Option<Value> {
    let mut args = vec!["lookup".to_owned()];
    args.extend(item_attributes(home));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = secret_tool(&args, None);
    if !output.status.success() || output.stdout.is_empty() {
        return None;
    }
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        !text.contains('\n'),
        "the item holds compact JSON, as Codex writes it"
    );
    Some(serde_json::from_str(&text).expect("the item holds JSON"))
}

/// The object paths of the items that match (to see that an update was made in place).
fn item_paths(home: &Path) -> Vec<String> {
    let mut args = vec!["search".to_owned(), "--all".to_owned()];
    args.extend(item_attributes(home));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = secret_tool(&args, None);
    // secret-tool prints the paths on stderr or stdout depending on its version.
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text.lines()
        .filter(|line| line.starts_with('['))
        .map(str::to_owned)
        .collect()
}

pub(crate) fn write_config(home: &Path, config: &str) {
    std::fs::write(home.join("config.toml"), config).unwrap();
}

pub(crate) async fn status_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["status", "--json"];
    all.extend(args);
    let output = env.run(&all).await;
    serde_json::from_str(&stdout(&output)).unwrap_or_else(|_| panic!("status --json: {output:?}"))
}

fn identity_b() -> Identity {
    Identity::new("acct-2", "user-bob")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_seeded_as_codex_writes_it_is_read_by_token_and_status_names_the_keyring() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), "cli_auth_credentials_store = \"keyring\"\n");
    let login = env.new_login(&alice(), Duration::from_secs(3600));
    seed_item(env.home(), &login);

    let output = env.run(&["token"]).await;
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        login["tokens"]["access_token"].as_str().unwrap()
    );
    assert_eq!(env.sim.refresh_calls(), 0);

    let status = status_json(&env, &[]).await;
    assert_eq!(status["logged_in"], json!(true), "{status}");
    assert_eq!(status["credentials_store"]["store"], json!("keyring"));
    assert_eq!(status["credentials_store"]["source"], json!("config"));
    assert_eq!(
        status["credentials_store"]["keyring_item"]["account"],
        json!(account(env.home()))
    );
    assert!(status["path"].as_str().unwrap().contains("keyring item"));
    let text = stdout(&env.run(&["status"]).await);
    assert!(
        text.contains("credentials:  keyring (cli_auth_credentials_store in"),
        "{text}"
    );
    assert!(!text.contains(login["tokens"]["access_token"].as_str().unwrap()));
    assert!(
        !env.auth_path().exists(),
        "keyring mode writes no auth.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_token_processes_on_a_stale_keyring_login_make_one_refresh_and_update_the_item_in_place()
 {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), "cli_auth_credentials_store = \"keyring\"\n");
    let stale =
        authstore_testkit::with_unknown_fields(env.new_login(&alice(), Duration::from_secs(60)));
    seed_item(env.home(), &stale);
    let paths_before = item_paths(env.home());
    assert_eq!(paths_before.len(), 1, "{paths_before:?}");

    let runs: Vec<_> = (0..8).map(|_| env.run(&["token"])).collect();
    let outputs = futures::future::join_all(runs).await;
    for output in &outputs {
        assert_success(output);
    }
    assert_eq!(
        env.sim.refresh_calls(),
        1,
        "one authority call for eight processes"
    );
    assert_eq!(env.sim.reuse_rejections(), 0);
    let item = read_item(env.home()).expect("the item is there");
    let access = item["tokens"]["access_token"].as_str().unwrap();
    assert_ne!(access, stale["tokens"]["access_token"].as_str().unwrap());
    assert!(
        outputs.iter().all(|o| stdout(o) == access),
        "one token for all"
    );
    let family = env
        .sim
        .family_of(stale["tokens"]["refresh_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        item["tokens"]["refresh_token"].as_str(),
        env.sim.current_refresh_token(family).as_deref(),
        "the item ends on the authority's current refresh token"
    );
    assert_eq!(item["x_custom"], json!({"kept": true}));
    assert_eq!(item["tokens"]["x_token_extra"], json!("kept"));
    assert_eq!(item_paths(env.home()), paths_before, "updated in place");
    assert!(
        !env.auth_path().exists(),
        "keyring mode writes no auth.json"
    );
    // Codex's lock files are the ones taken.
    assert!(env.home().join("auth.lock").exists());
    assert!(env.home().join("auth.json.lock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_creates_the_item_as_codex_does_and_logout_deletes_it() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), "cli_auth_credentials_store = \"keyring\"\n");
    let login =
        authstore_testkit::with_unknown_fields(env.new_login(&alice(), Duration::from_secs(3600)));
    let from = env.login_file(&login);
    let output = env.run(&["login", "--from", from.to_str().unwrap()]).await;
    assert_success(&output);
    let item = read_item(env.home()).expect("login created the item");
    assert_eq!(item["tokens"], login["tokens"]);
    assert_eq!(item["x_custom"], json!({"kept": true}));
    let mut args = vec!["search".to_owned(), "--all".to_owned()];
    args.extend(item_attributes(env.home()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let found = secret_tool(&args, None);
    // Attributes go to stderr and the rest to stdout (libsecret's secret-tool); the secret
    // line is left out of any failure message.
    let text: String = format!(
        "{}{}",
        String::from_utf8_lossy(&found.stdout),
        String::from_utf8_lossy(&found.stderr)
    )
    .lines()
    .filter(|line| !line.starts_with("secret ="))
    .map(|line| format!("{line}\n"))
    .collect();
    let label = format!(
        "label = {}@Codex Auth:default (keyring v3.6.3)",
        account(env.home())
    );
    assert!(text.contains(&label), "{text}");
    assert!(
        text.contains("attribute.application = rust-keyring"),
        "{text}"
    );
    assert!(
        !env.auth_path().exists(),
        "keyring mode writes no auth.json"
    );

    let output = env.run(&["logout"]).await;
    assert_success(&output);
    assert_eq!(
        read_item(env.home()),
        None,
        "logout deletes the item, as Codex's does"
    );
    assert!(!env.auth_path().exists());
    assert_eq!(env.run(&["token"]).await.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_option_and_the_environment_override_the_config() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    let file_login = env.new_login(&alice(), Duration::from_secs(3600));
    env.home_write(&file_login);
    let keyring_login = env.new_login(&identity_b(), Duration::from_secs(3600));
    seed_item(env.home(), &keyring_login);
    let file_token = file_login["tokens"]["access_token"].as_str().unwrap();
    let keyring_token = keyring_login["tokens"]["access_token"].as_str().unwrap();

    // No config: the file, by default.
    let output = env.run(&["token"]).await;
    assert_eq!(stdout(&output), file_token);
    let status = status_json(&env, &[]).await;
    assert_eq!(status["credentials_store"]["source"], json!("default"));

    let output = env.run(&["--credentials-store", "keyring", "token"]).await;
    assert_success(&output);
    assert_eq!(stdout(&output), keyring_token);
    let mut command = env.command(&["token"]);
    command.env("AUTHSTORE_CREDENTIALS_STORE", "keyring");
    let output = run_bounded(command).await;
    assert_eq!(stdout(&output), keyring_token);

    write_config(env.home(), "cli_auth_credentials_store = \"keyring\"\n");
    assert_eq!(stdout(&env.run(&["token"]).await), keyring_token);
    let output = env.run(&["--credentials-store", "file", "token"]).await;
    assert_eq!(stdout(&output), file_token);
    let status = status_json(&env, &["--credentials-store", "file"]).await;
    assert_eq!(status["credentials_store"]["store"], json!("file"));
    assert_eq!(status["credentials_store"]["source"], json!("override"));
    assert!(
        status["credentials_store"]["reason"]
            .as_str()
            .unwrap()
            .contains("--credentials-store")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reads_the_keyring_first_and_the_file_when_the_keyring_has_no_login() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), "cli_auth_credentials_store = \"auto\"\n");
    let file_login = env.new_login(&alice(), Duration::from_secs(3600));
    env.home_write(&file_login);
    assert_eq!(
        stdout(&env.run(&["token"]).await),
        file_login["tokens"]["access_token"].as_str().unwrap()
    );
    let status = status_json(&env, &[]).await;
    assert_eq!(status["credentials_store"]["store"], json!("auto"));
    assert_eq!(status["credentials_store"]["answered"], json!("file"));

    let keyring_login = env.new_login(&alice(), Duration::from_secs(3600));
    seed_item(env.home(), &keyring_login);
    assert_eq!(
        stdout(&env.run(&["token"]).await),
        keyring_login["tokens"]["access_token"].as_str().unwrap()
    );
    let status = status_json(&env, &[]).await;
    assert_eq!(status["credentials_store"]["answered"], json!("keyring"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_collection_is_exit_5_with_what_to_do_and_nothing_is_written() {
    let _turn = SECRET_SERVICE.lock().await;
    if std::env::var_os("AUTHSTORE_KEYRING_LOCK_TEST").is_none() {
        eprintln!(
            "skipped: it locks the login collection; scripts/keyring-tests.sh runs it alone in \
             a D-Bus session of its own (AUTHSTORE_KEYRING_LOCK_TEST=1)"
        );
        return;
    }
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), "cli_auth_credentials_store = \"keyring\"\n");
    let stale = env.new_login(&alice(), Duration::from_secs(60));
    seed_item(env.home(), &stale);

    // Locked through the Secret Service API (gnome-keyring locks without a prompt); it stays
    // locked: the script runs this test alone, in a D-Bus session of its own.
    let locked = Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            "array:objpath:/org/freedesktop/secrets/collection/login",
        ])
        .output()
        .expect("dbus-send runs");
    assert!(locked.status.success(), "lock: {locked:?}");
    let output = env.run(&["token"]).await;
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    let message = stderr(&output);
    assert!(message.lines().count() <= 2, "{message}");
    assert!(message.contains("keyring item"), "{message}");
    assert!(message.contains("locked"), "{message}");
    assert!(message.contains("--credentials-store file"), "{message}");
    assert!(stdout(&output).is_empty());
    assert_eq!(env.sim.refresh_calls(), 0, "nothing spent");
    assert!(!env.auth_path().exists(), "nothing written to the file");
    let _ = stale;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_service_auto_falls_back_to_the_file_and_keyring_is_exit_5() {
    // No Secret Service needed: the bus address leads nowhere.
    let env = Env::new().await;
    let login = env.new_login(&alice(), Duration::from_secs(3600));
    env.home_write(&login);
    let nowhere = format!("unix:path={}", env.dir().join("no-bus").display());

    write_config(env.home(), "cli_auth_credentials_store = \"auto\"\n");
    let mut command = env.command(&["token"]);
    command.env("DBUS_SESSION_BUS_ADDRESS", &nowhere);
    let output = run_bounded(command).await;
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        login["tokens"]["access_token"].as_str().unwrap()
    );
    let mut command = env.command(&["status", "--json"]);
    command.env("DBUS_SESSION_BUS_ADDRESS", &nowhere);
    let status: Value = serde_json::from_str(&stdout(&run_bounded(command).await)).unwrap();
    assert_eq!(status["credentials_store"]["answered"], json!("file"));
    assert!(
        status["credentials_store"]["keyring_error"].is_string(),
        "{status}"
    );

    write_config(env.home(), "cli_auth_credentials_store = \"keyring\"\n");
    let before = std::fs::read(env.auth_path()).unwrap();
    let mut command = env.command(&["token"]);
    command.env("DBUS_SESSION_BUS_ADDRESS", &nowhere);
    let output = run_bounded(command).await;
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    let message = stderr(&output);
    assert!(message.lines().count() <= 2, "{message}");
    assert!(message.contains("keyring item"), "{message}");
    assert!(message.contains("--credentials-store file"), "{message}");
    assert_eq!(
        std::fs::read(env.auth_path()).unwrap(),
        before,
        "auth.json untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_an_error_naming_it() {
    let env = Env::new().await;
    let login = env.new_login(&alice(), Duration::from_secs(3600));
    env.home_write(&login);

    write_config(env.home(), "cli_auth_credentials_store = keyring\n");
    for args in [&["token"][..], &["status", "--json"][..]] {
        let output = env.run(args).await;
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let message = stderr(&output);
        assert!(message.contains("config.toml"), "{message}");
        assert!(message.lines().count() <= 2, "{message}");
        assert!(stdout(&output).is_empty());
    }
    // The file store named explicitly steps around it.
    let output = env.run(&["--credentials-store", "file", "token"]).await;
    assert_success(&output);
}

trait HomeWrite {
    fn home_write(&self, document: &Value);
}

impl HomeWrite for Env {
    /// Writes `document` as `auth.json`, 0600.
    fn home_write(&self, document: &Value) {
        authstore_testkit::write_auth(self.home(), document);
        #[cfg(unix)]
        std::fs::set_permissions(
            self.auth_path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
}

/// Every context switch (voluntary and not) of every thread of `pid` so far, by thread: one
/// reading of `/proc/PID/task/*/status`, which does not wake the process read.
fn context_switches(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut threads = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let switches: u64 = status
            .lines()
            .filter(|line| {
                line.starts_with("voluntary_ctxt_switches:")
                    || line.starts_with("nonvoluntary_ctxt_switches:")
            })
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        threads.insert(task.file_name().to_string_lossy().into_owned(), switches);
    }
    threads
}

/// The context switches `pid` makes over `window`, read every 100 ms so that a thread that
/// ends during it counts what it did up to its last reading.
async fn context_switches_over(pid: u32, window: Duration) -> u64 {
    let start = context_switches(pid);
    let mut last = start.clone();
    let until = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last.extend(context_switches(pid));
    }
    last.iter()
        .map(|(thread, now)| now - start.get(thread).copied().unwrap_or(0))
        .sum()
}

/// At rest, a reader that waits on a watched item makes at most this many context switches in
/// [`REST_WINDOW`]; one that polls the item every 250 ms (what `watch` did) reads it 12 times in
/// it, each read a D-Bus connection of its own with several round trips, well over a hundred
/// switches (measured: several hundred; the agent's poll of a second, five reads, well over
/// this too).
const AT_REST_MOST: u64 = 20;
const REST_WINDOW: Duration = Duration::from_secs(3);

/// Starts `authstore watch --json` and waits until it says it is watching; returns it with its
/// stdout line by line (its stderr kept open).
async fn start_watch(
    env: &Env,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut watch = env.command(&["watch", "--json"]).spawn().unwrap();
    let lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut notes = tokio::io::BufReader::new(watch.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(BOUND, notes.next_line())
        .await
        .expect("watch starts in time")
        .unwrap();
    assert!(
        ready
            .as_deref()
            .is_some_and(|line| line.contains("watching")),
        "{ready:?}"
    );
    (watch, lines, notes)
}

/// `authstore watch` in keyring mode learns of a change that another program (libsecret's
/// `secret-tool`, not authstore) made to Codex's item from the Secret Service's signal, and
/// at rest it does not read the item again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_a_change_another_program_made_to_the_item_and_does_not_poll_at_rest() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), "cli_auth_credentials_store = \"keyring\"\n");
    seed_item(
        env.home(),
        &env.new_login(&alice(), Duration::from_secs(3600)),
    );
    let (mut watch, mut events, _notes) = start_watch(&env).await;
    let pid = watch.id().unwrap();

    let switches = context_switches_over(pid, REST_WINDOW).await;
    eprintln!("watch at rest: {switches} context switches in {REST_WINDOW:?}");
    assert!(
        switches <= AT_REST_MOST,
        "watch at rest made {switches} context switches in {REST_WINDOW:?}: it polls the item"
    );

    // Bob logs in with Codex: the item is replaced by another program.
    seed_item(
        env.home(),
        &env.new_login(&identity_b(), Duration::from_secs(3600)),
    );
    let seen = tokio::time::Instant::now();
    let line = tokio::time::timeout(Duration::from_secs(2), events.next_line())
        .await
        .expect("watch reports the change within 2 s")
        .unwrap()
        .expect("a line");
    eprintln!("watch reported the change after {:?}", seen.elapsed());
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "identity_changed", "{event}");
    assert_eq!(event["user_id"], "user-bob", "{event}");
    watch.start_kill().unwrap();
    let _ = watch.wait().await;
}

/// The agent in keyring mode with a fresh token sleeps until the item changes, as on a watched
/// `auth.json`: its next look is its safety net away (15 minutes, not the 30 s of a store it must
/// look at), it does not wake at rest, and a change another program makes wakes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_in_keyring_mode_sleeps_until_the_item_changes() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), "cli_auth_credentials_store = \"keyring\"\n");
    seed_item(
        env.home(),
        &env.new_login(&alice(), Duration::from_secs(3 * 3600)),
    );
    let mut agent = authstore_testkit::agent_process::Agent::start(&env, "600");
    agent.wait_for("active").await;
    // After each look its note says when it looks next.
    let next_check = async || {
        let status = status_json(&env, &[]).await;
        status["agent"]["next_check"]
            .as_str()
            .map(|next| chrono::DateTime::parse_from_rfc3339(next).unwrap())
    };
    let idle_by = tokio::time::Instant::now() + BOUND;
    let planned = loop {
        if let Some(next) = next_check().await {
            break next;
        }
        assert!(
            tokio::time::Instant::now() < idle_by,
            "the agent never planned its next look"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ahead = planned.signed_duration_since(chrono::Utc::now());
    assert!(
        ahead > chrono::TimeDelta::seconds(60),
        "the agent looks again in {ahead}: it does not wait on the keyring's signals"
    );

    let switches = context_switches_over(agent.pid, REST_WINDOW).await;
    eprintln!("agent at rest: {switches} context switches in {REST_WINDOW:?}");
    assert!(
        switches <= AT_REST_MOST,
        "the agent at rest made {switches} context switches in {REST_WINDOW:?}"
    );

    // Another program writes newer tokens for the same login into the item (Codex refreshed):
    // the agent looks at once (a plain re-read that finds them fresh reports nothing), and plans
    // its next look from then.
    seed_item(
        env.home(),
        &env.new_login(&alice(), Duration::from_secs(4 * 3600)),
    );
    let seen = tokio::time::Instant::now();
    let looked_by = seen + Duration::from_secs(5);
    loop {
        if next_check().await.is_some_and(|next| next > planned) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < looked_by,
            "the agent did not look within 5 s of the change: it waits for its next look"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("the agent looked after {:?}", seen.elapsed());
    assert_eq!(env.sim.refresh_calls(), 0);
    agent.end(libc::SIGTERM).await;
}
