#![cfg(all(unix, feature = "simulator"))] // Unix only: modes, signals and an in-place rewriter
//! Real processes of the real binary against the embedded token authority (family revocation
//! on reuse): the multi-process guarantees, end to end.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use authstore::{AuthManager, ManagerOptions};
use authstore_simulator::{Fault, Identity};
use authstore_testkit::alice;
use authstore_testkit::binary::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_token_commands_on_a_stale_token_make_one_refresh_and_print_the_same_token() {
    let env = Env::new().await;
    let before = env.login_stale(&alice());

    let runs: Vec<_> = (0..32).map(|_| env.run(&["token"])).collect();
    let outputs = futures::future::join_all(runs).await;
    for output in &outputs {
        assert_success(output);
    }
    assert_eq!(env.sim.refresh_calls(), 1);
    let disk = env.disk();
    let on_disk = disk["tokens"]["access_token"].as_str().unwrap().to_owned();
    assert!(on_disk != before["tokens"]["access_token"].as_str().unwrap());
    let same = outputs.iter().all(|o| stdout(o) == on_disk);
    assert!(same, "every process prints the token now on disk");
    assert_eq!(disk["x_custom"], json!({"kept": true}));
    assert_eq!(disk["tokens"]["x_token_extra"], json!("kept"));
    let mode = std::fs::metadata(env.auth_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_processes_forcing_ten_refreshes_each_spend_every_token_exactly_once() {
    let env = Env::new().await;
    env.login_stale(&alice());

    let loops: Vec<_> = (0..16)
        .map(|_| async {
            let mut codes = Vec::new();
            for _ in 0..10 {
                codes.push(env.run(&["refresh", "--force"]).await);
            }
            codes
        })
        .collect();
    let outputs: Vec<Output> = futures::future::join_all(loops)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(outputs.len(), 160);
    for output in &outputs {
        assert_success(output);
        assert!(stdout(output).starts_with("refreshed"));
    }
    assert_eq!(env.sim.successful_refreshes(), 160);
    assert_eq!(env.sim.reuse_rejections(), 0);
    assert_no_token_presented_twice(&env.sim);
    let on_disk = env.disk()["tokens"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let family = env
        .sim
        .family_of(&on_disk)
        .expect("a token the authority issued");
    assert!(env.sim.current_refresh_token(family).as_deref() == Some(on_disk.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_rewriting_auth_json_in_place_never_makes_a_command_fail() {
    let env = Env::new().await;
    env.login_stale(&alice());
    assert_success(&env.run(&["refresh"]).await);
    let fresh = std::fs::read(env.auth_path()).unwrap();

    // Like Codex up to 0.145: truncate, pause, write, over and over, ignoring the lock.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rewriter = std::thread::spawn({
        let (path, stop) = (env.auth_path(), stop.clone());
        move || {
            let mut rewrites = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(3));
                let (head, tail) = fresh.split_at(fresh.len() / 2);
                file.write_all(head).unwrap();
                std::thread::sleep(Duration::from_millis(3));
                file.write_all(tail).unwrap();
                drop(file);
                rewrites += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            rewrites
        }
    });
    for _ in 0..40 {
        let output = env.run(&["token"]).await;
        assert_success(&output);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rewrites = rewriter.join().unwrap();
    assert!(rewrites > 10, "the rewriter ran ({rewrites} rewrites)");
    assert_eq!(env.sim.refresh_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_killed_during_refreshes_never_leave_a_torn_file_or_a_stuck_lock() {
    let env = Env::new().await;
    env.sim.set_fault(Fault::Latency(Duration::from_millis(40)));
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for round in 0..12u64 {
        env.login_stale(&alice());
        let mut children: Vec<_> = (0..4)
            .map(|_| env.command(&["refresh", "--force"]).spawn().unwrap())
            .collect();
        // Kill one process at a moment that moves through the transaction from round to round.
        tokio::time::sleep(Duration::from_millis(5 + (round * 13) % 120)).await;
        children[0].start_kill().unwrap();
        for child in &mut children {
            let _ = tokio::time::timeout(BOUND, child.wait()).await.unwrap();
        }
        // The file always parses, and the next command is not held up by the dead holder.
        env.disk();
        let next = env.run(&["token"]).await;
        let code = next.status.code().unwrap();
        assert!(
            code == 0 || code == 4,
            "exit {code}: {}",
            String::from_utf8_lossy(&next.stderr)
        );
        *outcomes
            .entry(if code == 0 { "ok" } else { "relogin" }.into())
            .or_default() += 1;
        let leftovers = std::fs::read_dir(env.home())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0, "the next writer removes temporary files");
    }
    eprintln!("after a kill, the next command: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_during_another_process_refresh_ends_logged_out() {
    let env = Env::new().await;
    env.login_stale(&alice());
    env.sim
        .set_fault(Fault::Latency(Duration::from_millis(500)));

    let refreshing = env.command(&["refresh", "--force"]).spawn().unwrap();
    assert!(
        authstore_testkit::eventually(Duration::from_secs(10), async || env.sim.refresh_calls()
            == 1)
        .await
    );
    let logout = env.run(&["logout"]).await;
    assert_success(&logout);
    let refreshed = tokio::time::timeout(BOUND, refreshing.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&refreshed);
    assert!(!env.auth_path().exists(), "the logout stands");
    let token = env.run(&["token"]).await;
    assert_eq!(token.status.code(), Some(3));
    assert!(!env.auth_path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_as_another_user_gives_a_long_running_manager_identity_changed() {
    let env = Env::new().await;
    env.sim.set_access_token_lifetime(Duration::from_secs(3600));
    authstore_testkit::write_auth(env.home(), &env.sim.auth_json(&alice()));
    let options = ManagerOptions::default()
        .authority(authstore::authority::AuthorityConfig::default().token_url(env.sim.token_url()));
    let manager = AuthManager::new(env.home(), options).unwrap();
    let held = manager.auth().await.unwrap();

    let bob = env.sim.auth_json(&Identity::new("acct-1", "user-bob"));
    let bob_file = env.home().join("bob.json");
    std::fs::write(&bob_file, bob.to_string()).unwrap();
    assert_success(
        &env.run(&["login", "--from", bob_file.to_str().unwrap()])
            .await,
    );

    let changed = authstore_testkit::eventually(Duration::from_secs(10), async || {
        manager.auth().await.is_err_and(|e| {
            e.kind()
                == authstore::error::ErrorKind::ReloginRequired(
                    authstore::error::ReloginReason::IdentityChanged,
                )
        })
    })
    .await;
    assert!(changed);
    for attempt in [
        manager.force_refresh().await,
        manager.unauthorized(&held).await,
    ] {
        assert!(
            attempt.is_err_and(|e| matches!(
                e.kind(),
                authstore::error::ErrorKind::ReloginRequired(_)
            ))
        );
    }
    assert!(env.disk() == bob, "the old user's tokens are never written");
    assert_eq!(env.sim.refresh_calls(), 0);
}

/// Starts `authstore ARGS` (a `watch`) and waits until it says that it is watching; returns
/// the process and its stdout and stderr, line by line (stderr kept open: a watch that could not
/// write to it would fail).
async fn start_watch(
    env: &Env,
    args: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let mut watch = env.command(args).spawn().unwrap();
    let lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut notes = BufReader::new(watch.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(BOUND, notes.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(ready.is_some_and(|line| line.contains("watching")));
    (watch, lines, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_refresh_logout_and_login_made_by_other_processes() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let (mut watch, mut events, _notes) = start_watch(&env, &["watch", "--json"]).await;

    let mut next_event = async || -> Value {
        let line = tokio::time::timeout(BOUND, events.next_line())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&line).unwrap()
    };
    assert_success(&env.run(&["refresh", "--force"]).await);
    let event = next_event().await;
    assert_eq!(event["event"], "refreshed");
    assert_eq!(event["account_id"], "acct-1");
    let text = event.to_string();
    assert!(
        !text.contains("rt_") && !text.contains("eyJ"),
        "no token in events"
    );

    let saved = env.home().join("saved.json");
    std::fs::copy(env.auth_path(), &saved).unwrap();
    assert_success(&env.run(&["logout"]).await);
    assert_eq!(next_event().await["event"], "logged_out");

    assert_success(&env.run(&["login", "--from", saved.to_str().unwrap()]).await);
    assert_eq!(next_event().await["event"], "logged_in");
    watch.start_kill().unwrap();
}

/// `watch`'s text lines name each event as its `--json` lines, the agent and the Python package
/// do (`logged_in`, not `logged-in`): one vocabulary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_text_lines_name_events_as_its_json_lines_do() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let (mut watch, mut lines, _notes) = start_watch(&env, &["watch"]).await;
    let mut next_word = async || -> String {
        let line = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("a line");
        // `TIME EVENT account=... user=... expires=...`
        line.split(' ').nth(1).expect("an event word").to_owned()
    };
    let saved = env.home().join("saved.json");
    std::fs::copy(env.auth_path(), &saved).unwrap();
    assert_success(&env.run(&["logout"]).await);
    assert_eq!(next_word().await, "logged_out");
    assert_success(&env.run(&["login", "--from", saved.to_str().unwrap()]).await);
    assert_eq!(next_word().await, "logged_in");
    assert_success(&env.run(&["refresh", "--force"]).await);
    assert_eq!(next_word().await, "refreshed");
    watch.start_kill().unwrap();
}

/// The library's message names no option of the command line; the command line adds its own
/// `help:` line (one more line, never more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_is_not_logged_in_says_what_to_type_in_a_help_line() {
    let env = Env::new().await;
    let output = env.run(&["token"]).await;
    assert_eq!(output.status.code(), Some(3));
    let said = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(
        lines[0].starts_with("authstore: not logged in") && !lines[0].contains("--from"),
        "{said}"
    );
    assert!(
        lines[1].starts_with("help: ") && lines[1].contains("authstore login --from FILE"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_never_prints_a_secret_and_warns_about_a_readable_file() {
    let env = Env::new().await;
    let document = env.login_stale(&alice());
    std::fs::set_permissions(env.auth_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [&["status"][..], &["status", "--json"][..]] {
        let output = env.run(args).await;
        assert_success(&output);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for field in ["id_token", "access_token", "refresh_token"] {
            let secret = document["tokens"][field].as_str().unwrap();
            assert!(!all.contains(secret), "status printed the {field}");
        }
        assert!(all.contains("readable by other users"));
    }
    let status: Value =
        serde_json::from_str(&stdout(&env.run(&["status", "--json"]).await)).unwrap();
    assert_eq!(status["account_id"], "acct-1");
    assert_eq!(status["user_id"], "user-alice");
    assert_eq!(status["refresh_due"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_waits_for_the_lock_says_whom_it_waits_for() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let store =
        authstore::store::FileStore::new(env.home(), authstore::store::StoreOptions::default());
    let held = store.begin().await.unwrap();
    let waiting = env.command(&["token"]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(held);
    let output = tokio::time::timeout(BOUND, waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&output);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("Blocking waiting for file lock"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "names the holder: {message}"
    );
}
