#![cfg(unix)] // Unix only: SIGKILLed lock holders
//! Real processes contending for the transaction lock: no update is lost.
//!
//! The test binary re-executes itself as the worker (`worker_entry` does nothing unless
//! `AUTHSTORE_TEST_WORKER_HOME` is set), so each worker is a separate OS process.

use std::process::Command;
use std::time::Duration;

use authstore::store::{FileStore, StoreOptions};
use serde_json::json;

use authstore_testkit::process::wait_bounded;

const WORKER_ENV: &str = "AUTHSTORE_TEST_WORKER_HOME";
const CYCLES_ENV: &str = "AUTHSTORE_TEST_WORKER_CYCLES";
const HOLD_ENV: &str = "AUTHSTORE_TEST_HOLDER_HOME";

/// Holds the transaction lock until killed, announcing it on stdout.
#[tokio::test]
async fn holder_entry() {
    let Ok(home) = std::env::var(HOLD_ENV) else {
        return;
    };
    let store = FileStore::new(home, StoreOptions::default());
    let _transaction = store.begin().await.unwrap();
    println!("holding");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_lock_timeout_names_the_lock_and_its_holder_and_a_killed_holder_hands_off_at_once() {
    use std::io::BufRead;
    let home = tempfile::tempdir().unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store_processes::holder_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(HOLD_ENV, home.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(holder.stdout.take().unwrap()).lines();
    let ready = lines.find(|l| l.as_ref().is_ok_and(|l| l.contains("holding")));
    assert!(ready.is_some(), "the holder took the lock");

    let store = FileStore::new(
        home.path(),
        StoreOptions::default().lock_deadline(Duration::from_millis(300)),
    );
    let error = store.begin().await.unwrap_err();
    assert_eq!(error.kind(), authstore::ErrorKind::LockTimeout);
    let message = error.to_string();
    assert!(message.contains("auth.lock"), "{message}");
    assert!(
        message.contains(&format!("pid {}", holder.id())),
        "names the holder: {message}"
    );

    // The kernel releases the lock of a process that dies: the next one proceeds at once.
    let waiting = tokio::spawn(async move {
        let store = FileStore::new(home.path(), StoreOptions::default());
        let started = std::time::Instant::now();
        let result = store.begin().await.map(|_| started.elapsed());
        (result, home)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.kill().unwrap();
    holder.wait().unwrap();
    let (result, _home) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiter got the lock")
        .unwrap();
    assert!(result.is_ok(), "the waiter proceeds after the holder died");
}

#[tokio::test]
async fn worker_entry() {
    let (Ok(home), Ok(cycles)) = (std::env::var(WORKER_ENV), std::env::var(CYCLES_ENV)) else {
        return;
    };
    let cycles: u64 = cycles.parse().unwrap();
    let store = FileStore::new(
        home,
        StoreOptions::default().lock_deadline(Duration::from_secs(60)),
    );
    for _ in 0..cycles {
        let mut transaction = store.begin().await.unwrap();
        let mut document = transaction.read().await.unwrap().expect("auth.json exists");
        let counter = document.extra["x_counter"].as_u64().unwrap();
        // Widen the window in which an unlocked read-modify-write would lose an update.
        tokio::task::yield_now().await;
        document
            .extra
            .insert("x_counter".into(), json!(counter + 1));
        transaction.write(&document).await.unwrap();
    }
}

#[test]
fn processes_doing_locked_read_modify_write_cycles_lose_no_update() {
    const PROCESSES: u64 = 8;
    const CYCLES: u64 = 25;
    let home = tempfile::tempdir().unwrap();
    let mut initial = authstore_testkit::document_json(
        authstore_testkit::ALICE,
        1,
        std::time::SystemTime::now(),
        3600,
        true,
    );
    initial["x_counter"] = json!(0);
    authstore_testkit::write_auth(home.path(), &initial);

    let exe = std::env::current_exe().unwrap();
    let workers: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "store_processes::worker_entry",
                    "--test-threads",
                    "1",
                ])
                .env(WORKER_ENV, home.path())
                .env(CYCLES_ENV, CYCLES.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut worker in workers {
        let status = wait_bounded(&mut worker, Duration::from_secs(120));
        assert!(status.success(), "worker failed: {status}");
    }

    let disk = authstore_testkit::read_auth(home.path()).unwrap();
    assert_eq!(disk["x_counter"], json!(PROCESSES * CYCLES));
    // Unknown fields and tokens survived every cycle.
    assert_eq!(disk["x_custom"], initial["x_custom"]);
    assert!(disk["tokens"] == initial["tokens"], "the tokens changed");
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_lock_files_are_private_and_survive_transactions() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let store = FileStore::new(home.path(), StoreOptions::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut transaction = store.begin().await.unwrap();
        let document = authstore_testkit::document(
            authstore_testkit::ALICE,
            1,
            std::time::SystemTime::now(),
            3600,
        );
        transaction.write(&document).await.unwrap();
    });
    for name in ["auth.lock", "auth.json.lock", "auth.json"] {
        let mode = std::fs::metadata(home.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    // The holder note is cleared on release.
    assert_eq!(store.lock_holder(), None);
}
