#![cfg(all(target_os = "linux", feature = "simulator", feature = "keyring"))]
//! Codex's encrypted secrets file (`[features] secret_auth_storage` with the keyring store), end
//! to end: real processes of the real binary against the embedded token authority, the
//! passphrase in a real Secret Service item, the file read and written here with the `age`
//! crate as Codex 0.171.0 does (an scrypt recipient; `{"version":1,"secrets":{"global/CODEX_AUTH":
//! "<auth.json>"}}`), independently of the store under test.
//!
//! Like the keyring tests, the ones that need a Secret Service run under
//! `scripts/keyring-tests.sh` and skip elsewhere, saying why. The files the tests seed use a
//! low scrypt work factor, and the binary writes with one (`AUTHSTORE_TEST_SCRYPT_LOG_N`, read
//! only by builds with the `failpoints` feature; other builds write at age's default, as Codex).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use age::secrecy::SecretString;
use authstore_testkit::alice;
use authstore_testkit::binary::*;
use serde_json::{Value, json};

use crate::keyring::{SECRET_SERVICE, account, secret_tool, skip, status_json, write_config};

const ENCRYPTED: &str =
    "cli_auth_credentials_store = \"keyring\"\n[features]\nsecret_auth_storage = true\n";
/// The work factor of the files seeded here (Codex writes about a second's worth: 19 here).
const SEED_LOG_N: u8 = 10;

fn secrets_path(home: &Path) -> PathBuf {
    home.join("secrets").join("codex_auth.age")
}

fn passphrase_attributes(home: &Path) -> Vec<String> {
    vec![
        "service".into(),
        "codex".into(),
        "username".into(),
        format!("secrets|{}", authstore::store::home_fingerprint(home)),
        "target".into(),
        "default".into(),
    ]
}

fn seed_passphrase(home: &Path, passphrase: &str) {
    let attributes = passphrase_attributes(home);
    let label = format!("--label={}@codex:default (keyring v3.6.3)", attributes[3]);
    let mut args = vec!["store".to_owned(), label];
    args.extend(attributes);
    args.extend(["application".into(), "rust-keyring".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = secret_tool(&args, Some(passphrase.as_bytes()));
    assert!(output.status.success(), "secret-tool store failed");
}

fn read_passphrase(home: &Path) -> Option<String> {
    let mut args = vec!["lookup".to_owned()];
    args.extend(passphrase_attributes(home));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = secret_tool(&args, None);
    (output.status.success() && !output.stdout.is_empty())
        .then(|| String::from_utf8(output.stdout).unwrap())
}

fn clear_passphrase(home: &Path) {
    let mut args = vec!["clear".to_owned()];
    args.extend(passphrase_attributes(home));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    secret_tool(&args, None);
}

/// Whether Codex's direct keyring item (`Codex Auth`) exists for the home.
fn codex_item_exists(home: &Path) -> bool {
    let args = [
        "lookup",
        "service",
        "Codex Auth",
        "username",
        &account(home),
        "target",
        "default",
    ];
    !secret_tool(&args, None).stdout.is_empty()
}

/// Writes `plaintext` as Codex's file, encrypted with `passphrase`.
fn seed_file(home: &Path, passphrase: &str, plaintext: &Value) {
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_owned()));
    recipient.set_work_factor(SEED_LOG_N);
    let bytes = age::encrypt(&recipient, &serde_json::to_vec(plaintext).unwrap()).unwrap();
    let dir = home.join("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(secrets_path(home), bytes).unwrap();
}

/// Codex's plaintext for a login, with another entry beside it.
fn plaintext_with(login: &Value) -> Value {
    json!({
        "version": 1,
        "secrets": {
            "global/CODEX_AUTH": serde_json::to_string(login).unwrap(),
            "global/OTHER_SECRET": "kept",
        },
    })
}

/// The file's plaintext, decrypted with the passphrase in the keyring.
fn read_file(home: &Path) -> Value {
    let passphrase = read_passphrase(home).expect("the passphrase is in the keyring");
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase));
    let bytes = std::fs::read(secrets_path(home)).unwrap();
    let plaintext = age::decrypt(&identity, &bytes).expect("the passphrase opens the file");
    serde_json::from_slice(&plaintext).unwrap()
}

/// The login entry of the file, parsed.
fn login_in_file(home: &Path) -> Option<Value> {
    read_file(home)["secrets"]["global/CODEX_AUTH"]
        .as_str()
        .map(|text| serde_json::from_str(text).unwrap())
}

/// The binary in this home, writing with a cheap work factor, logging at debug level (to count
/// decryptions).
async fn run(env: &Env, args: &[&str]) -> Output {
    let mut command = env.command(args);
    command
        .env("AUTHSTORE_TEST_SCRYPT_LOG_N", "10")
        .env("AUTHSTORE_LOG", "authstore=debug");
    run_bounded(command).await
}

fn decryptions(output: &Output) -> usize {
    stderr(output).matches("secrets file decrypted").count()
}

/// The secrets must not be on stderr (stdout holds the one token `token` prints).
fn assert_no_secret_in_stderr(output: &Output, secrets: &[&str]) {
    let stderr = stderr(output);
    for (i, secret) in secrets.iter().enumerate() {
        assert!(!stderr.contains(secret), "secret #{i} in stderr");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_token_processes_on_a_stale_login_in_the_secrets_file_make_one_refresh() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), ENCRYPTED);
    let passphrase = "c2VjcmV0cy1wYXNzcGhyYXNlLWZvci10ZXN0cy0wMDA=";
    seed_passphrase(env.home(), passphrase);
    let stale =
        authstore_testkit::with_unknown_fields(env.new_login(&alice(), Duration::from_secs(60)));
    seed_file(env.home(), passphrase, &plaintext_with(&stale));

    let runs: Vec<_> = (0..8).map(|_| run(&env, &["token"])).collect();
    let outputs = futures::future::join_all(runs).await;
    for output in &outputs {
        assert_success(output);
        // One decryption of the file it found, and one of the file the winner wrote while it
        // waited for the lock, at most.
        assert!(decryptions(output) <= 2, "{}", decryptions(output));
        assert_no_secret_in_stderr(
            output,
            &[
                passphrase,
                stale["tokens"]["refresh_token"].as_str().unwrap(),
            ],
        );
    }
    assert_eq!(env.sim.refresh_calls(), 1, "one authority call for eight");
    assert_eq!(env.sim.reuse_rejections(), 0);
    let login = login_in_file(env.home()).expect("the login is in the file");
    let access = login["tokens"]["access_token"].as_str().unwrap();
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
        login["tokens"]["refresh_token"].as_str(),
        env.sim.current_refresh_token(family).as_deref(),
        "the file ends on the authority's current refresh token"
    );
    // Unknown fields of the login and the file's other entries are kept.
    assert_eq!(login["x_custom"], json!({"kept": true}));
    assert_eq!(login["tokens"]["x_token_extra"], json!("kept"));
    let file = read_file(env.home());
    assert_eq!(file["version"], json!(1));
    assert_eq!(file["secrets"]["global/OTHER_SECRET"], json!("kept"));
    // Where Codex reads it, and nowhere else.
    let bytes = std::fs::read(secrets_path(env.home())).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    assert!(!env.auth_path().exists(), "no auth.json");
    assert!(!codex_item_exists(env.home()), "no Codex Auth item");
    let leftovers: Vec<_> = std::fs::read_dir(env.home().join("secrets"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != "codex_auth.age")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(secrets_path(env.home()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(read_passphrase(env.home()).as_deref(), Some(passphrase));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_decrypts_the_file_once_and_status_names_the_file_and_its_passphrase() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), ENCRYPTED);
    let passphrase = "b25lLWRlY3J5cHRpb24tcGVyLWNvbW1hbmQtdGVzdA==";
    seed_passphrase(env.home(), passphrase);
    let stale = env.new_login(&alice(), Duration::from_secs(60));
    seed_file(env.home(), passphrase, &plaintext_with(&stale));

    // Read, find it stale, lock, re-read, refresh, write: one decryption.
    let output = run(&env, &["token"]).await;
    assert_success(&output);
    assert_eq!(env.sim.refresh_calls(), 1);
    assert_eq!(decryptions(&output), 1, "a command decrypts once");
    // A fresh login: one decryption, no refresh.
    let output = run(&env, &["token"]).await;
    assert_success(&output);
    assert_eq!(decryptions(&output), 1);
    assert_eq!(env.sim.refresh_calls(), 1);

    let status = status_json(&env, &[]).await;
    assert_eq!(status["logged_in"], json!(true), "{status}");
    let store = &status["credentials_store"];
    assert_eq!(store["store"], json!("keyring"));
    assert_eq!(
        store["secrets_file"],
        json!(secrets_path(env.home()).display().to_string())
    );
    assert_eq!(store["keyring_item"]["service"], json!("codex"));
    assert_eq!(
        store["keyring_item"]["account"],
        json!(format!(
            "secrets|{}",
            authstore::store::home_fingerprint(env.home())
        ))
    );
    assert!(status["path"].as_str().unwrap().ends_with("codex_auth.age"));
    let text = stdout(&env.run(&["status"]).await);
    assert!(text.contains("encrypted in"), "{text}");
    assert!(!text.contains(passphrase));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_creates_the_passphrase_and_the_file_and_logout_removes_only_the_login_entry() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), ENCRYPTED);
    clear_passphrase(env.home());
    let login =
        authstore_testkit::with_unknown_fields(env.new_login(&alice(), Duration::from_secs(3600)));
    let from = env.login_file(&login);
    let output = run(&env, &["login", "--from", from.to_str().unwrap()]).await;
    assert_success(&output);

    // The passphrase, as Codex makes one: base64 of 32 random bytes.
    let passphrase = read_passphrase(env.home()).expect("login created the passphrase");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&passphrase)
        .expect("base64");
    assert_eq!(raw.len(), 32);
    let stored = login_in_file(env.home()).expect("login wrote the file");
    assert_eq!(stored["tokens"], login["tokens"]);
    assert_eq!(stored["x_custom"], json!({"kept": true}));
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::fs::metadata(env.home().join("secrets")).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    }
    assert!(!env.auth_path().exists());
    assert!(!codex_item_exists(env.home()));
    assert_eq!(
        stdout(&run(&env, &["token"]).await),
        login["tokens"]["access_token"].as_str().unwrap()
    );

    // Another program's entry beside the login.
    let mut file = read_file(env.home());
    file["secrets"]["global/OTHER_SECRET"] = json!("kept");
    seed_file(env.home(), &passphrase, &file);
    let output = run(&env, &["logout"]).await;
    assert_success(&output);
    let file = read_file(env.home());
    assert!(
        file["secrets"].get("global/CODEX_AUTH").is_none(),
        "logged out"
    );
    assert_eq!(file["secrets"]["global/OTHER_SECRET"], json!("kept"));
    assert_eq!(
        read_passphrase(env.home()),
        Some(passphrase),
        "passphrase kept"
    );
    assert_eq!(run(&env, &["token"]).await.status.code(), Some(3));
}

type Case<'a> = (&'static str, Box<dyn Fn() + 'a>, i32, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_keyring_cannot_open_or_a_newer_version_is_refused_and_left_untouched() {
    let _turn = SECRET_SERVICE.lock().await;
    if skip() {
        return;
    }
    let env = Env::new().await;
    write_config(env.home(), ENCRYPTED);
    let passphrase = "cmlnaHQtcGFzc3BocmFzZS1vZi10aGUta2V5cmluZw==";
    let stale = env.new_login(&alice(), Duration::from_secs(60));

    // (case, how it is seeded, the exit code, a word the error must say)
    let cases: [Case<'_>; 4] = [
        (
            "another passphrase",
            Box::new(|| {
                seed_passphrase(env.home(), passphrase);
                seed_file(
                    env.home(),
                    "d3JvbmctcGFzc3BocmFzZQ==",
                    &plaintext_with(&stale),
                );
            }),
            6,
            "passphrase",
        ),
        (
            "no passphrase",
            Box::new(|| {
                seed_file(env.home(), passphrase, &plaintext_with(&stale));
                clear_passphrase(env.home());
            }),
            6,
            "passphrase",
        ),
        (
            "not an age file",
            Box::new(|| {
                seed_passphrase(env.home(), passphrase);
                std::fs::write(secrets_path(env.home()), b"{\"tokens\":{}}").unwrap();
            }),
            6,
            "age",
        ),
        (
            "a newer version",
            Box::new(|| {
                seed_passphrase(env.home(), passphrase);
                let mut newer = plaintext_with(&stale);
                newer["version"] = json!(2);
                seed_file(env.home(), passphrase, &newer);
            }),
            1,
            "newer",
        ),
    ];
    for (case, seed, code, says) in cases {
        seed();
        let before = std::fs::read(secrets_path(env.home())).unwrap();
        let output = run(&env, &["token"]).await;
        assert_eq!(
            output.status.code(),
            Some(code),
            "{case}: {}",
            stderr(&output)
        );
        // The error, without the debug log lines.
        let message = stderr(&output)
            .lines()
            .filter(|line| !line.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(message.lines().count() <= 2, "{case}: {message}");
        assert!(message.contains("codex_auth.age"), "{case}: {message}");
        assert!(message.contains(says), "{case}: {message}");
        assert!(!message.contains(passphrase), "{case}");
        assert!(stdout(&output).is_empty(), "{case}");
        assert_eq!(
            std::fs::read(secrets_path(env.home())).unwrap(),
            before,
            "{case}: the file is left untouched"
        );
        assert_eq!(env.sim.refresh_calls(), 0, "{case}: nothing spent");
        assert!(!env.auth_path().exists(), "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keyring_auto_reads_auth_json_and_keyring_is_exit_5_naming_the_passphrase() {
    // No Secret Service needed: the bus address leads nowhere.
    let env = Env::new().await;
    let login = env.new_login(&alice(), Duration::from_secs(3600));
    authstore_testkit::write_auth(env.home(), &login);
    let nowhere = format!("unix:path={}", env.dir().join("no-bus").display());

    write_config(
        env.home(),
        "cli_auth_credentials_store = \"auto\"\n[features]\nsecret_auth_storage = true\n",
    );
    // No secrets file: auto reads auth.json, as Codex.
    let mut command = env.command(&["token"]);
    command.env("DBUS_SESSION_BUS_ADDRESS", &nowhere);
    let output = run_bounded(command).await;
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        login["tokens"]["access_token"].as_str().unwrap()
    );

    // A secrets file whose passphrase cannot be fetched: keyring mode says so, exit 5.
    seed_file(
        env.home(),
        "bm8ta2V5cmluZy1hbnN3ZXJz",
        &plaintext_with(&login),
    );
    let before = std::fs::read(secrets_path(env.home())).unwrap();
    write_config(env.home(), ENCRYPTED);
    let mut command = env.command(&["token"]);
    command.env("DBUS_SESSION_BUS_ADDRESS", &nowhere);
    let output = run_bounded(command).await;
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    let message = stderr(&output);
    assert!(message.lines().count() <= 2, "{message}");
    assert!(
        message.contains("\"codex\""),
        "names the passphrase item: {message}"
    );
    assert!(message.contains("--credentials-store file"), "{message}");
    assert_eq!(std::fs::read(secrets_path(env.home())).unwrap(), before);
    // And auto falls back to auth.json, as Codex's does when the keyring does not answer.
    write_config(
        env.home(),
        "cli_auth_credentials_store = \"auto\"\n[features]\nsecret_auth_storage = true\n",
    );
    let mut command = env.command(&["token"]);
    command.env("DBUS_SESSION_BUS_ADDRESS", &nowhere);
    let output = run_bounded(command).await;
    assert_success(&output);
    assert_eq!(
        stdout(&output),
        login["tokens"]["access_token"].as_str().unwrap()
    );
}
