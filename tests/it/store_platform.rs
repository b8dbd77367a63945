//! The file store's platform-facing behaviour, written to compile and run on every platform
//! (Unix here; Windows under Wine or on Windows itself): the lock excludes another holder, the
//! durable write replaces a file that a reader holds open, the holder note never breaks a
//! reader, and the manager's watch notices a replacement made by someone else.
//!
//! On Windows, `LockFileEx` locks are mandatory byte-range locks: a locked `auth.lock` cannot be
//! read through another handle. These tests hold there too, because nothing ever needs to read
//! a locked `auth.lock` to be correct (the holder note is for messages only).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::time::{Duration, SystemTime};

use authstore::ErrorKind;
use authstore::store::{FileStore, StoreOptions, TRANSACTION_LOCK_FILE};
use authstore::{AuthManager, ManagerOptions};
use authstore_testkit::{ALICE, document};

fn store(home: &std::path::Path, deadline: Duration) -> FileStore {
    FileStore::new(home, StoreOptions::default().lock_deadline(deadline))
}

/// Writes `document` in a transaction of its own.
async fn write(store: &FileStore, document: &authstore::document::AuthDocument) {
    store.begin().await.unwrap().write(document).await.unwrap();
}

/// A holder outside authstore's own bookkeeping: another handle on `auth.lock`, locked the way
/// Codex locks it (flock on Unix, LockFileEx on Windows).
#[allow(clippy::disallowed_methods)] // the test plays another program holding the lock
fn foreign_holder(home: &std::path::Path) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(home.join(TRANSACTION_LOCK_FILE))
        .unwrap();
    file.lock().unwrap();
    file
}

#[tokio::test]
async fn a_transaction_waits_for_another_holder_of_auth_lock_and_gives_up_at_its_deadline() {
    let home = tempfile::tempdir().unwrap();
    let holder = foreign_holder(home.path());
    let error = store(home.path(), Duration::from_millis(300))
        .begin()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::LockTimeout, "{}", error.report());
    assert_eq!(
        error.path(),
        Some(home.path().join(TRANSACTION_LOCK_FILE).as_path())
    );
    assert!(error.lock_waited() >= Some(Duration::from_millis(300)));

    // Released, the lock is taken at once.
    drop(holder);
    let transaction = store(home.path(), Duration::from_secs(20)).begin().await;
    assert!(transaction.is_ok());
}

#[tokio::test]
async fn the_durable_write_replaces_a_file_a_reader_holds_open() {
    let home = tempfile::tempdir().unwrap();
    let store = store(home.path(), Duration::from_secs(20));
    let now = SystemTime::now();
    let old = document(ALICE, 1, now, 3600);
    let new = document(ALICE, 2, now, 3600);
    write(&store, &old).await;

    // A reader (Codex, an editor) has the old file open while the new one is renamed over it.
    let mut reader = File::open(store.auth_path()).unwrap();
    write(&store, &new).await;
    let mut seen = Vec::new();
    reader.read_to_end(&mut seen).unwrap();
    assert!(
        seen == old.to_json(),
        "the open reader keeps the old, whole file"
    );
    assert_eq!(store.read().await.unwrap(), Some(new));
    let names: Vec<String> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "no temporary file left: {names:?}");
}

#[tokio::test]
async fn the_durable_write_outlasts_a_reader_that_holds_the_file_for_a_moment() {
    let home = tempfile::tempdir().unwrap();
    let store = store(home.path(), Duration::from_secs(20));
    let now = SystemTime::now();
    let new = document(ALICE, 2, now, 3600);
    write(&store, &document(ALICE, 1, now, 3600)).await;

    // A reader opens the file, and closes it a moment after the write began. Where the system
    // refuses to replace an open file (Windows without POSIX rename semantics, Wine), the write
    // waits it out instead of failing with a rotated token in hand.
    let path = store.auth_path().to_owned();
    let (opened, wait_for_open) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let file = File::open(path).unwrap();
        opened.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(file);
    });
    wait_for_open.recv().unwrap();
    store.begin().await.unwrap().write(&new).await.unwrap();
    reader.join().unwrap();
    assert_eq!(store.read().await.unwrap(), Some(new));
}

#[tokio::test]
async fn reading_the_holder_note_during_a_transaction_never_fails_a_reader() {
    let home = tempfile::tempdir().unwrap();
    let store = store(home.path(), Duration::from_secs(20));
    let now = SystemTime::now();
    let mut transaction = store.begin().await.unwrap();
    transaction
        .write(&document(ALICE, 1, now, 3600))
        .await
        .unwrap();
    // The note is best effort: Unix shows it; Windows may refuse to read a locked range, and
    // then there is simply no note. Neither is an error, and `auth.json` reads as usual.
    let note = store.lock_holder();
    if cfg!(unix) {
        let note = note.expect("the holder wrote a note");
        assert!(
            note.contains(&format!("pid {}", std::process::id())),
            "{note}"
        );
    }
    assert!(store.read().await.unwrap().is_some());
    drop(transaction);
    assert_eq!(store.lock_holder(), None, "the note is cleared on release");
}

#[tokio::test]
async fn the_manager_notices_a_replacement_written_by_someone_else() {
    let home = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let writer = store(home.path(), Duration::from_secs(20));
    write(&writer, &document(ALICE, 1, now, 3600)).await;
    let manager = AuthManager::new(home.path(), ManagerOptions::default()).unwrap();
    let first = manager.auth().await.unwrap();

    let newer = document(ALICE, 2, now, 7200);
    write(&writer, &newer).await;
    let seen = authstore_testkit::eventually(Duration::from_secs(10), async || {
        manager.auth().await.unwrap().document() == &newer
    })
    .await;
    assert!(seen, "the newer document was adopted");
    assert!(first.document() != &newer);
    if manager.is_watching() {
        assert_eq!(manager.stats().metadata_checks, 0, "a watch costs no stat");
    }
}

// Linux: inotify reports the watched directory's removal. On Windows a directory that a watch
// holds open stays "delete pending" and cannot be created again until the watch lets go, so the
// scenario does not arise there in this form.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_watcher_whose_directory_is_removed_keeps_looking_and_sees_the_next_login() {
    use authstore::changes::{ChangeKind, ChangeWatcher};
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let store = store(&home, Duration::from_secs(20));
    let now = SystemTime::now();
    write(&store, &document(ALICE, 1, now, 3600)).await;
    let mut watcher = ChangeWatcher::new(store.clone()).await.unwrap();

    std::fs::remove_dir_all(&home).unwrap();
    let bound = Duration::from_secs(20);
    let event = tokio::time::timeout(bound, watcher.next()).await.unwrap();
    assert_eq!(event.unwrap().event, ChangeKind::LoggedOut);
    // The watch is gone with its directory; the watcher goes on looking, paced: while nothing
    // changes it reports nothing (a watcher that spun would never let this timeout fire).
    let quiet = tokio::time::timeout(Duration::from_millis(600), watcher.next()).await;
    assert!(quiet.is_err(), "no change, no event");
    std::fs::create_dir(&home).unwrap();
    write(&store, &document(ALICE, 2, now, 3600)).await;
    let event = tokio::time::timeout(bound, watcher.next()).await.unwrap();
    assert_eq!(event.unwrap().event, ChangeKind::LoggedIn);
    assert!(!watcher.is_watching(), "the lost watch is reported");
}
