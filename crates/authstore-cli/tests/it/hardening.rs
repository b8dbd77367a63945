#![cfg(all(unix, feature = "simulator"))] // Unix only: modes, mount namespaces and signals
//! Black-box hardening: broken files, failing filesystems, a misbehaving authority, permissions,
//! links, and secrets in output. Every case checks the exit code, the message, and that no file
//! changed.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use authstore_simulator::Fault;
use authstore_testkit::alice;
use authstore_testkit::binary::*;

/// A clear error: the expected exit code, one or two lines naming `path`, never a panic.
fn assert_clear_error(output: &Output, code: i32, path: &Path) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {message}");
    let lines = message.lines().filter(|l| !l.trim().is_empty()).count();
    assert!((1..=2).contains(&lines), "one or two lines: {message}");
    assert!(!message.contains("panicked"), "{message}");
    assert!(
        message.contains(&*path.to_string_lossy()),
        "names {}: {message}",
        path.display()
    );
}

/// Every file in `dir` with a digest of its bytes and its mode, to prove that nothing changed.
/// Digests, not bytes: a failure message must not print the tokens inside.
fn snapshot_dir(dir: &Path) -> Vec<(String, u64, u32)> {
    use std::hash::{Hash, Hasher};
    let digest = |bytes: Vec<u8>| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        hasher.finish()
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, digest(std::fs::read(&p).unwrap()), mode)
        })
        .collect();
    files.sort();
    files
}

const BROKEN_FILES: &[(&str, &[u8])] = &[
    ("empty", b""),
    ("truncated", br#"{"tokens": {"id_token": "a", "access_tok"#),
    ("not json", b"this is not json"),
    ("not utf-8", b"{\"tokens\": \"\xff\xfe\"}"),
    (
        "wrong types",
        br#"{"tokens": {"id_token": 1, "access_token": 2, "refresh_token": 3}}"#,
    ),
    (
        "missing required fields",
        br#"{"tokens": {"id_token": "a"}}"#,
    ),
    ("null", b"null"),
    ("an array", b"[1, 2, 3]"),
    (
        "bad timestamp",
        br#"{"OPENAI_API_KEY": null, "last_refresh": "soon"}"#,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_give_exit_6_and_stay_byte_for_byte_unchanged() {
    let env = Env::new().await;
    let nested = "[".repeat(100_000).into_bytes();
    let huge = {
        let mut doc = br#"{"x_pad": ""#.to_vec();
        doc.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 16));
        doc.extend(br#""}"#);
        doc
    };
    let mut corpus: Vec<(&str, Vec<u8>)> =
        BROKEN_FILES.iter().map(|(n, b)| (*n, b.to_vec())).collect();
    corpus.push(("deeply nested", nested));
    corpus.push(("larger than 1 MiB", huge));
    let login_source = env.home().join("source.json");
    std::fs::write(&login_source, env.sim.auth_json(&alice()).to_string()).unwrap();

    for (name, bytes) in &corpus {
        std::fs::write(env.auth_path(), bytes).unwrap();
        let commands = [
            &["token"][..],
            &["token", "--json"],
            &["refresh"],
            &["refresh", "--force"],
            &["status", "--json"],
            &["logout"],
        ];
        let outputs = futures::future::join_all(commands.iter().map(|args| env.run(args))).await;
        for (args, output) in commands.iter().zip(outputs) {
            assert_clear_error(&output, 6, &env.auth_path());
            assert!(
                std::fs::read(env.auth_path()).unwrap() == *bytes,
                "{name}: {args:?} changed the file"
            );
        }
        // login --from a broken file: refused, nothing installed.
        let source = env.home().join("broken-source.json");
        std::fs::write(&source, bytes).unwrap();
        std::fs::remove_file(env.auth_path()).unwrap();
        let output = env
            .run(&["login", "--from", source.to_str().unwrap()])
            .await;
        assert_clear_error(&output, 6, &source);
        assert!(
            !env.auth_path().exists(),
            "{name}: login installed a broken file"
        );
    }
    assert_eq!(env.sim.refresh_calls(), 0);

    // No tokens at all is simply "not logged in".
    for bytes in [&b"{}"[..], br#"{"OPENAI_API_KEY": null}"#] {
        std::fs::write(env.auth_path(), bytes).unwrap();
        for args in [&["token"][..], &["refresh"], &["status"]] {
            let output = env.run(args).await;
            assert_eq!(
                output.status.code(),
                Some(3),
                "{args:?}: {}",
                stderr(&output)
            );
            assert!(
                std::fs::read(env.auth_path()).unwrap() == bytes,
                "the file changed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_faults_give_typed_errors_and_change_nothing() {
    let env = Env::new().await;
    env.login_stale(&alice());

    // auth.json is a directory.
    let odd = tempfile::tempdir().unwrap();
    std::fs::create_dir(odd.path().join("auth.json")).unwrap();
    let output = env
        .run(&["--codex-home", odd.path().to_str().unwrap(), "token"])
        .await;
    assert_clear_error(&output, 6, &odd.path().join("auth.json"));

    // The lock file cannot be opened (here: it is a directory).
    let before = snapshot_dir(env.home());
    std::fs::create_dir(env.home().join("auth.lock")).unwrap();
    let output = env.run(&["refresh", "--force"]).await;
    assert_clear_error(&output, 1, &env.home().join("auth.lock"));
    assert_eq!(snapshot_dir(env.home()), before);
    std::fs::remove_dir(env.home().join("auth.lock")).unwrap();

    // A missing CODEX_HOME.
    let missing = env.home().join("missing");
    let mut fresh = tokio::process::Command::new(bin());
    fresh
        .arg("token")
        .env("CODEX_HOME", &missing)
        .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", env.sim.token_url());
    let output = run_bounded(fresh).await;
    assert_clear_error(&output, 2, &missing);
    let output = env
        .run(&["--codex-home", missing.to_str().unwrap(), "token"])
        .await;
    assert_clear_error(&output, 3, &missing.join("auth.json"));
    assert!(!missing.exists());

    // A filesystem without lock support: a typed error, and an explicit opt-in to run unlocked.
    // Only this build's binary has the failpoints (AUTHSTORE_TEST_BINARY is a release build).
    if cfg!(feature = "failpoints") && bin_is_this_build() {
        // On such a filesystem the lock file can be created; it is locking that fails.
        std::fs::File::create(env.home().join("auth.lock")).unwrap();
        let before = snapshot_dir(env.home());
        let mut command = env.command(&["refresh", "--force"]);
        command.env("AUTHSTORE_FAILPOINT", "lock-unsupported");
        let output = run_bounded(command).await;
        assert_clear_error(&output, 1, &env.home().join("auth.lock"));
        assert!(stderr(&output).contains("--unlocked"));
        assert_eq!(snapshot_dir(env.home()), before);
        let mut command = env.command(&["--unlocked", "refresh", "--force"]);
        command.env("AUTHSTORE_FAILPOINT", "lock-unsupported");
        assert_success(&run_bounded(command).await);
    }
    assert_eq!(env.sim.reuse_rejections(), 0);
}

/// Runs `script` as root in a private mount namespace, so that mounts vanish with it. `None`
/// when this machine does not allow it (not root, no unshare).
async fn in_mount_namespace(script: &str) -> Option<Output> {
    let mut command = tokio::process::Command::new("unshare");
    command.args(["-m", "--propagation", "private", "sh", "-ec", script]);
    let output = tokio::time::timeout(BOUND, command.output())
        .await
        .ok()?
        .ok()?;
    let message = stderr(&output);
    if message.contains("unshare failed") || message.contains("Operation not permitted") {
        eprintln!("skipped: cannot create a mount namespace here: {message}");
        return None;
    }
    Some(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_home_and_a_full_disk_fail_cleanly() {
    let env = Env::new().await;
    let document = env.sim.auth_json(&alice());
    let source = env.home().join("source.json");
    std::fs::write(&source, document.to_string()).unwrap();
    let mount = tempfile::tempdir().unwrap();
    let m = mount.path().display();
    let url = env.sim.token_url();
    let src = source.display();
    let bin = bin();

    // Read-only: a login cannot create anything; exit 1 naming the path; the file is as it was.
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs {m}; cp {src} {m}/auth.json; chmod 600 {m}/auth.json; \
         mount -o remount,ro {m}; \
         set +e; CODEX_REFRESH_TOKEN_URL_OVERRIDE={url} {bin} --codex-home {m} login --from {src} 2>&1; \
         echo \"exit=$?\"; cmp {src} {m}/auth.json && echo unchanged; ls -a {m}"
    );
    if let Some(output) = in_mount_namespace(&script).await {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("exit=1"), "{text}");
        assert!(text.contains("Read-only file system"), "{text}");
        assert!(text.contains(&format!("{m}")), "{text}");
        assert!(text.contains("unchanged"), "{text}");
    }

    // Full disk: the durable write fails at the write step; auth.json keeps its old bytes and no
    // temporary file is left.
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {m}; cp {src} {m}/auth.json; chmod 600 {m}/auth.json; \
         touch {m}/auth.lock {m}/auth.json.lock; cp {m}/auth.json {m}/before; \
         dd if=/dev/zero of={m}/filler bs=4k 2>/dev/null || true; \
         set +e; CODEX_REFRESH_TOKEN_URL_OVERRIDE={url} {bin} --codex-home {m} refresh --force 2>&1; \
         echo \"exit=$?\"; cmp {m}/before {m}/auth.json && echo unchanged; echo FILES:; ls -a {m}"
    );
    if let Some(output) = in_mount_namespace(&script).await {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("exit=1"), "{text}");
        assert!(text.contains("No space left on device"), "{text}");
        assert!(text.contains("unchanged"), "{text}");
        let files = text.split("FILES:").nth(1).unwrap_or_default();
        assert!(!files.contains(".tmp"), "a temporary file was left: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_authority_gives_exit_5_within_the_timeout_and_releases_the_lock() {
    let env = Env::new().await;
    let faults = [
        ("HTTP 500", Fault::Status(500)),
        ("HTTP 503", Fault::Status(503)),
        ("connection reset", Fault::Reset),
        ("unparseable 2xx", Fault::Garbage),
        ("hang", Fault::Hang),
    ];
    for (name, fault) in faults {
        env.login_stale(&alice());
        let before = std::fs::read(env.auth_path()).unwrap();
        env.sim.set_fault(fault);
        let started = Instant::now();
        let output = env.run(&["--request-timeout", "2", "token"]).await;
        let took = started.elapsed();
        assert_eq!(output.status.code(), Some(5), "{name}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("temporarily"),
            "{name}: {}",
            stderr(&output)
        );
        assert!(
            std::fs::read(env.auth_path()).unwrap() == before,
            "{name}: the file changed"
        );
        // Bounded: the request timeout plus the bounded retries, far below the lock deadline.
        assert!(took < Duration::from_secs(15), "{name} took {took:?}");
        // The lock was released: a writer gets it at once.
        env.sim.set_fault(Fault::None);
        let output = env
            .run(&["--lock-timeout", "1", "refresh", "--force"])
            .await;
        assert_success(&output);
    }
    // Slow but within the timeout: success.
    env.login_stale(&alice());
    env.sim
        .set_fault(Fault::Latency(Duration::from_millis(500)));
    assert_success(&env.run(&["token"]).await);
    assert_eq!(env.sim.reuse_rejections(), 0);
}

/// Answers that carry a rotation beside something malformed: the rotated refresh token is
/// stored, no empty or malformed token is written or printed, an answer without a usable
/// access token is exit 5 said once, and the next command refreshes with the stored rotation
/// (no reuse, so the login survives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_never_cost_a_rotation_nor_hand_out_an_unusable_token() {
    use serde_json::{Value, json};
    let env = Env::new().await;
    let set = |field: &str, value: Option<Value>| Fault::Rewrite {
        fields: vec![(field.to_owned(), value)],
        pad: 0,
    };
    let cases = [
        (
            "an empty access token",
            set("access_token", Some(json!(""))),
            5,
        ),
        (
            "a blank access token",
            set("access_token", Some(json!("  "))),
            5,
        ),
        ("no access token", set("access_token", None), 5),
        (
            "a number for the access token",
            set("access_token", Some(json!(7))),
            5,
        ),
        (
            "an object for the id token",
            set("id_token", Some(json!({"email": "x"}))),
            0,
        ),
        (
            "an array for the id token",
            set("id_token", Some(json!(["x"]))),
            0,
        ),
    ];
    for (name, fault, code) in cases {
        env.login_stale(&alice());
        let before = env.disk();
        env.sim.set_fault(Fault::next(1, fault));
        let output = env.run(&["token"]).await;
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{name}: {said}");
        let disk = env.disk();
        for field in ["id_token", "access_token", "refresh_token"] {
            let token = disk["tokens"][field].as_str().unwrap_or_default();
            assert!(
                !token.is_empty() && !token.contains(char::is_whitespace),
                "{name}: tokens.{field} is not a token"
            );
        }
        assert_ne!(
            disk["tokens"]["refresh_token"], before["tokens"]["refresh_token"],
            "{name}: the rotated refresh token was stored"
        );
        if code == 5 {
            assert!(output.stdout.is_empty(), "{name}: something was printed");
            assert_eq!(
                said.matches("without a usable access token").count(),
                1,
                "{name}, said once: {said}"
            );
            assert_eq!(
                disk["tokens"]["access_token"],
                before["tokens"]["access_token"]
            );
        } else {
            assert_eq!(
                stdout(&output),
                disk["tokens"]["access_token"].as_str().unwrap()
            );
            assert!(said.contains("malformed id_token"), "{name}: {said}");
        }
        // The next command spends the stored rotation: no reuse.
        let output = env.run(&["token"]).await;
        assert_success(&output);
        assert_eq!(env.sim.reuse_rejections(), 0, "{name}");
    }
    assert_no_token_presented_twice(&env.sim);
}

/// A 64 MiB answer: read no further than 1 MiB (exit 5), and the process stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_refused_and_memory_stays_bounded() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let before = std::fs::read(env.auth_path()).unwrap();
    env.sim.set_fault(Fault::next(
        1,
        Fault::Rewrite {
            fields: Vec::new(),
            pad: 64 * 1024 * 1024,
        },
    ));
    let mut command = std::process::Command::new(bin());
    command
        .arg("--codex-home")
        .arg(env.home())
        .args(["--request-timeout", "20", "token"])
        .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", env.sim.token_url())
        .env_remove("CODEX_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    #[allow(
        clippy::zombie_processes,
        reason = "reaped below by wait4, which also gives its peak resident size"
    )]
    let pid = command.spawn().unwrap().id() as libc::pid_t;
    // Reaped here with wait4, for its peak resident size; a watchdog kills a hang (and stops
    // looking once the child is reaped, so that it never signals a reused pid).
    let reaped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = std::thread::spawn({
        let reaped = reaped.clone();
        move || {
            let deadline = Instant::now() + BOUND;
            while Instant::now() < deadline {
                if reaped.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: kill(2) of our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let (status, peak_kib) = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, writing into the two locals.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        reaped.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(waited, pid);
        (status, usage.ru_maxrss)
    })
    .await
    .unwrap();
    watchdog.join().unwrap();
    eprintln!("figures: peak resident size {peak_kib} KiB on a 64 MiB answer");
    assert!(libc::WIFEXITED(status), "the command was killed");
    assert_eq!(libc::WEXITSTATUS(status), 5);
    assert!(peak_kib < 48 * 1024, "peak resident size {peak_kib} KiB");
    assert!(
        std::fs::read(env.auth_path()).unwrap() == before,
        "the file changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_are_private_and_symlinks_stay_links() {
    let env = Env::new().await;
    // A home we create is 0700, auth.json and the lock files 0600.
    let home = env.home().join("new-home");
    let source = env.home().join("source.json");
    std::fs::write(&source, env.sim.auth_json(&alice()).to_string()).unwrap();
    assert_success(
        &env.run(&[
            "--codex-home",
            home.to_str().unwrap(),
            "login",
            "--from",
            source.to_str().unwrap(),
        ])
        .await,
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700);
    for name in ["auth.json", "auth.lock", "auth.json.lock"] {
        assert_eq!(mode(&home.join(name)), 0o600, "{name}");
    }

    // A loose auth.json comes back 0600 after the next write.
    env.login_stale(&alice());
    std::fs::set_permissions(env.auth_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_success(&env.run(&["refresh", "--force"]).await);
    assert_eq!(mode(&env.auth_path()), 0o600);

    // A symlinked auth.json stays a symlink; its target is updated.
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("real-auth.json");
    std::fs::rename(env.auth_path(), &target).unwrap();
    symlink(&target, env.auth_path()).unwrap();
    let before = std::fs::read(&target).unwrap();
    assert_success(&env.run(&["refresh", "--force"]).await);
    assert!(
        std::fs::symlink_metadata(env.auth_path())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_ne!(std::fs::read(&target).unwrap(), before);
    assert_eq!(mode(&target), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_prints_a_token_at_the_most_verbose_log_level() {
    let env = Env::new().await;
    let mut secrets: Vec<String> = Vec::new();
    let mut remember = |document: &serde_json::Value| {
        for field in ["id_token", "access_token", "refresh_token"] {
            secrets.push(document["tokens"][field].as_str().unwrap().to_owned());
        }
    };
    let first = env.login_stale(&alice());
    remember(&first);
    let source = env.home().join("source.json");
    std::fs::write(&source, first.to_string()).unwrap();

    let runs: Vec<(Vec<&str>, bool)> = vec![
        (vec!["status"], false),
        (vec!["status", "--json"], false),
        (vec!["refresh"], false),
        (vec!["refresh", "--force"], false),
        (vec!["token"], true),
        (vec!["token", "--json"], true),
        (vec!["logout"], false),
        // Installs the first login again: its refresh token was spent, so the next refresh is
        // rejected as reused (family revoked) and must say so without printing a token.
        (vec!["login", "--from", source.to_str().unwrap()], false),
        (vec!["refresh", "--force"], false),
        (vec!["token"], false),
        (vec!["logout", "--revoke"], false),
    ];
    let mut outputs = Vec::new();
    for (args, prints_token) in runs {
        let mut command = env.command(&args);
        command.env("AUTHSTORE_LOG", "trace");
        let output = run_bounded(command).await;
        if let Some(current) = authstore_testkit::read_auth(env.home()) {
            remember(&current);
        }
        outputs.push((args, prints_token, output));
    }
    // Every token any run saw or produced, including those the authority issued.
    secrets.extend(env.sim.presented_refresh_tokens());
    secrets.sort();
    secrets.dedup();
    let mut relogin_seen = false;
    for (args, prints_token, output) in &outputs {
        let out = String::from_utf8_lossy(&output.stdout);
        let err = String::from_utf8_lossy(&output.stderr);
        relogin_seen |= output.status.code() == Some(4);
        for secret in &secrets {
            assert!(
                !err.contains(secret.as_str()),
                "{args:?} logged a token on stderr"
            );
            if !prints_token {
                assert!(
                    !out.contains(secret.as_str()),
                    "{args:?} printed a token on stdout"
                );
            }
        }
        if args.starts_with(&["refresh"]) {
            assert!(
                err.contains("TRACE") || err.contains("DEBUG"),
                "{args:?}: no trace output"
            );
        }
    }
    assert!(relogin_seen, "the spent-token refresh failed as expected");
    assert!(
        secrets.len() >= 6,
        "the scan covered the tokens of both logins"
    );
}
