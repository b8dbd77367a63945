#![cfg(unix)] // Unix only: a throwaway PostgreSQL cluster run as the postgres user
//! The PostgreSQL store against a real server: a throwaway cluster these tests start themselves
//! (`authstore_testkit::postgres`), on loopback.
//!
//! Real processes contend for the row lock: the test binary re-executes itself as the worker
//! (`worker_entry` does nothing unless `AUTHSTORE_PG_WORKER` is set), so each worker is a
//! separate OS process with its own connection, as separate machines would be.
#![cfg(feature = "postgres")]

use std::future::Future;
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use authstore::ErrorKind;
use authstore::document::AuthDocument;
use authstore::store::postgres::{PgOptions, PgStore};
use authstore_testkit::postgres::{Cluster, wait_bounded};
use serde_json::json;

const MODE_ENV: &str = "AUTHSTORE_PG_WORKER";
const URL_ENV: &str = "AUTHSTORE_PG_WORKER_URL";
const KEY_ENV: &str = "AUTHSTORE_PG_WORKER_KEY";
const CYCLES_ENV: &str = "AUTHSTORE_PG_WORKER_CYCLES";
const GATE_ENV: &str = "AUTHSTORE_PG_WORKER_GATE";

const KEY: &str = "default";
/// No single step of a test may take longer than this.
const BOUND: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The worker: one process standing for one machine.

#[tokio::test]
async fn worker_entry() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    let url = std::env::var(URL_ENV).unwrap();
    let key = std::env::var(KEY_ENV).unwrap();
    match mode.as_str() {
        // Locked read-modify-write cycles of `x_counter`, reporting each one's timings.
        "cycles" => {
            let cycles: u64 = std::env::var(CYCLES_ENV).unwrap().parse().unwrap();
            let store = connect(&url, &key, options()).await;
            for _ in 0..cycles {
                let started = Instant::now();
                let mut transaction = store.begin().await.unwrap();
                let lock_wait = transaction.lock_wait();
                let mut document = transaction.read().await.unwrap().expect("logged in");
                let counter = document.extra["x_counter"].as_u64().unwrap();
                // Widen the window in which an unlocked read-modify-write would lose an update.
                tokio::task::yield_now().await;
                document
                    .extra
                    .insert("x_counter".into(), json!(counter + 1));
                transaction.write(&document).await.unwrap();
                transaction.commit().await.unwrap();
                say(&format!(
                    "CYCLE {} {}",
                    lock_wait.as_micros(),
                    started.elapsed().as_micros()
                ));
            }
        }
        // Takes the row lock, writes without committing, and waits to be killed.
        "hold" => {
            let store = connect(&url, &key, options()).await;
            let mut transaction = store.begin().await.unwrap();
            let mut document = transaction.read().await.unwrap().expect("logged in");
            document.extra.insert("x_counter".into(), json!(999));
            transaction.write(&document).await.unwrap();
            say("LOCKED");
            tokio::time::sleep(Duration::from_secs(120)).await;
            panic!("the holder was not killed");
        }
        // Waits at the gate, then connects to a fresh database and logs in under its own key.
        "connect" => {
            let gate = std::path::PathBuf::from(std::env::var(GATE_ENV).unwrap());
            say("READY");
            let deadline = Instant::now() + BOUND;
            while !gate.exists() {
                assert!(Instant::now() < deadline, "the gate never opened");
                std::thread::sleep(Duration::from_millis(1));
            }
            let store = connect(&url, &key, options()).await;
            write_committed(&store, &fixture(0)).await;
            say("DONE");
        }
        other => panic!("unknown worker mode {other}"),
    }
}

/// What a worker tells the test, on a line of its own. libtest may print on the same line
/// before it ("test worker_entry ... "), so the message starts after a marker.
fn say(message: &str) {
    println!("\n@@{message}");
}

/// A worker process, killed if the test ends before it does.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn spawn(mode: &str, url: &str, key: &str, env: &[(&str, String)]) -> Worker {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "postgres_store::worker_entry",
                "--test-threads",
                "1",
                "--nocapture",
            ])
            .env(MODE_ENV, mode)
            .env(URL_ENV, url)
            .env(KEY_ENV, key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(message) = line.strip_prefix("@@") else {
                    continue;
                };
                if sender.send(message.to_owned()).is_err() {
                    break;
                }
            }
        });
        Worker { child, lines }
    }

    /// Waits (bounded) for a line that starts with `prefix`.
    fn wait_for(&self, prefix: &str) {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(_) => panic!("the worker never printed {prefix}"),
            }
        }
    }

    /// Waits (bounded) for the worker to succeed; returns the lines it printed.
    fn finish(mut self) -> Vec<String> {
        let status = wait_bounded(&mut self.child, Duration::from_secs(60));
        assert!(status.success(), "worker failed: {status}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lines = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            lines.push(line);
        }
        lines
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn an_idle_timeout_not_longer_than_the_token_request_is_refused_naming_both() {
    // Checked before connecting: no server is needed to refuse it.
    let error = PgStore::connect(
        "postgres://alice:s3cret-pw@127.0.0.1:1/auth",
        KEY,
        options()
            .token_request_timeout(Duration::from_secs(20))
            .idle_timeout(Duration::from_secs(20)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let message = error.to_string();
    assert!(message.contains("idle timeout (20.0 s)"), "{message}");
    assert!(
        message.contains("token request timeout (20.0 s)"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn a_manager_refuses_a_store_whose_idle_timeout_its_token_requests_outlast() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("idle_rule");
    let store = connect(
        &cluster.url(&database),
        KEY,
        options()
            .token_request_timeout(Duration::from_millis(500))
            .idle_timeout(Duration::from_secs(1)),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let manager_options = authstore::ManagerOptions::default().authority(
        authstore::authority::AuthorityConfig::from_env().request_timeout(Duration::from_secs(5)),
    );
    let error =
        authstore::AuthManager::with_postgres(home.path(), store, manager_options).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let message = error.to_string();
    assert!(message.contains("idle timeout (1.0 s)"), "{message}");
    assert!(
        message.contains("token request timeout (5.0 s)"),
        "{message}"
    );
}

#[tokio::test]
async fn no_retry_starts_that_the_transactions_idle_timeout_could_cut_short() {
    use authstore::authority::AuthorityConfig;
    use authstore_simulator::{Fault, Identity, Simulator, SimulatorConfig};

    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    sim.set_access_token_lifetime(Duration::from_secs(60)); // inside the 5-minute window
    let login = sim.auth_json(&Identity::new("acct-1", "user-1"));
    let cluster = Cluster::shared();
    let database = cluster.create_database("retry_budget");
    // The server ends a transaction idle for 1.5 s; a token request may take 1 s. A 503 is safe
    // to retry (the token was not spent), but a retry starting now could still be waiting for
    // its answer when the server releases the row lock: the rotated token could not be stored.
    let store = connect(
        &cluster.url(&database),
        KEY,
        options()
            .token_request_timeout(Duration::from_secs(1))
            .idle_timeout(Duration::from_millis(1500)),
    )
    .await;
    write_committed(
        &store,
        &AuthDocument::parse(login.to_string().as_bytes()).unwrap(),
    )
    .await;
    sim.set_fault(Fault::Status(503));
    let home = tempfile::tempdir().unwrap();
    let manager = authstore::AuthManager::with_postgres(
        home.path(),
        store,
        authstore::ManagerOptions::default().authority(
            AuthorityConfig::from_env()
                .token_url(sim.token_url())
                .request_timeout(Duration::from_secs(1)),
        ),
    )
    .unwrap();
    let error = bounded(manager.auth()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient, "{}", error.report());
    assert_eq!(
        sim.refresh_calls(),
        1,
        "no retry (the file store retries a 503 twice: manager_scenarios)"
    );
}

#[tokio::test]
async fn a_row_changed_by_hand_without_its_generation_is_read_anew() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("by_hand");
    let store = connect(&cluster.url(&database), KEY, options()).await;
    write_committed(&store, &fixture(1)).await;
    assert_eq!(bounded(store.read()).await.unwrap(), Some(fixture(1)));

    // An operator restores an older document by hand; the generation stays as it was.
    let text = String::from_utf8(fixture(2).to_json()).unwrap();
    cluster.psql(
        &database,
        &format!(
            "UPDATE authstore_credentials SET document = $doc${text}$doc$ WHERE key = '{KEY}'"
        ),
    );
    assert_eq!(
        bounded(store.read()).await.unwrap(),
        Some(fixture(2)),
        "the remembered document is not trusted once the row's version moved"
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn options() -> PgOptions {
    PgOptions::default()
        .lock_timeout(Duration::from_secs(20))
        .idle_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
}

async fn connect(url: &str, key: &str, options: PgOptions) -> PgStore {
    bounded(PgStore::connect(url, key, options))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("finished in time")
}

/// A document whose unknown fields (top level and in `tokens`), key order and escapes must
/// survive every write byte for byte.
fn fixture(counter: u64) -> AuthDocument {
    // A fixed time, so that every call builds the same document.
    let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let mut value =
        authstore_testkit::document_json(authstore_testkit::ALICE, 1, issued, 3600, true);
    let object = value.as_object_mut().unwrap();
    object.insert("zeta_unknown".into(), json!([3, 2, 1]));
    object.insert(
        "alpha_unknown".into(),
        json!({"z": 1, "a": {"nested": "h\u{e9}llo \u{2603} \"quoted\"\n"}}),
    );
    object.insert("x_counter".into(), json!(counter));
    let document = authstore_testkit::parse(&value);
    let text = String::from_utf8(document.to_json()).unwrap();
    assert!(text.find("zeta_unknown") < text.find("alpha_unknown"));
    document
}

fn with_counter(document: &AuthDocument, counter: u64) -> AuthDocument {
    let mut document = document.clone();
    document.extra.insert("x_counter".into(), json!(counter));
    document
}

async fn write_committed(store: &PgStore, document: &AuthDocument) {
    let mut transaction = bounded(store.begin()).await.unwrap();
    bounded(transaction.write(document)).await.unwrap();
    bounded(transaction.commit()).await.unwrap();
}

/// The stored document column, byte for byte (hex through psql, so nothing is reformatted).
fn stored_text(cluster: &Cluster, database: &str, key: &str) -> Option<String> {
    let hex = cluster.psql(
        database,
        &format!(
            "SELECT coalesce(encode(convert_to(document, 'UTF8'), 'hex'), 'NULL') \
             FROM authstore_credentials WHERE key = '{key}'"
        ),
    );
    if hex == "NULL" || hex.is_empty() {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Some(String::from_utf8(bytes).unwrap())
}

/// Asserts that the row of [`KEY`] stores exactly `expected`. A failure says where the texts
/// part, not what they hold (the fixture's tokens are fake, but no test prints a token).
fn assert_stored(cluster: &Cluster, database: &str, expected: Option<&str>) {
    let stored = stored_text(cluster, database, KEY);
    match (stored.as_deref(), expected) {
        (Some(stored), Some(expected)) if stored != expected => {
            let at = stored
                .bytes()
                .zip(expected.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(stored.len().min(expected.len()));
            panic!(
                "the stored document differs from the expected one at byte {at} \
                 ({} bytes stored, {} expected)",
                stored.len(),
                expected.len()
            );
        }
        (stored, expected) => assert_eq!(
            stored.is_some(),
            expected.is_some(),
            "stored document present: {}, expected: {}",
            stored.is_some(),
            expected.is_some()
        ),
    }
}

fn json_text(document: &AuthDocument) -> String {
    String::from_utf8(document.to_json()).unwrap()
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

// ---------------------------------------------------------------------------------------------
// Concurrency across processes.

#[test]
fn processes_doing_locked_read_modify_write_cycles_lose_no_update() {
    const PROCESSES: u64 = 6;
    const CYCLES: u64 = 25;
    let cluster = Cluster::shared();
    let database = cluster.create_database("cycles");
    let url = cluster.url(&database);
    let runtime = multi_thread_runtime();
    let initial = fixture(0);
    let store = runtime.block_on(async {
        let store = connect(&url, KEY, options()).await;
        write_committed(&store, &initial).await;
        store
    });

    let started = Instant::now();
    let workers: Vec<Worker> = (0..PROCESSES)
        .map(|_| Worker::spawn("cycles", &url, KEY, &[(CYCLES_ENV, CYCLES.to_string())]))
        .collect();
    let lines: Vec<String> = workers.into_iter().flat_map(Worker::finish).collect();
    let elapsed = started.elapsed();

    // Every increment is there, and the document is what this process would have written,
    // byte for byte: unknown fields, their order and their escapes all survived.
    let expected = with_counter(&initial, PROCESSES * CYCLES);
    assert_stored(cluster, &database, Some(&json_text(&expected)));
    let generation = runtime.block_on(bounded(store.generation())).unwrap();
    assert_eq!(generation, 1 + PROCESSES * CYCLES);

    let (mut waits, mut totals): (Vec<u128>, Vec<u128>) = lines
        .iter()
        .filter_map(|line| line.strip_prefix("CYCLE "))
        .map(|rest| {
            let (wait, total) = rest.split_once(' ').unwrap();
            (
                wait.parse::<u128>().unwrap(),
                total.parse::<u128>().unwrap(),
            )
        })
        .unzip();
    assert_eq!(totals.len() as u64, PROCESSES * CYCLES);
    waits.sort_unstable();
    totals.sort_unstable();
    eprintln!(
        "{PROCESSES} processes x {CYCLES} cycles in {elapsed:.2?} ({:.0} transactions/s); \
         transaction p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms; lock wait p50 {:.2} ms, p95 {:.2} ms",
        (PROCESSES * CYCLES) as f64 / elapsed.as_secs_f64(),
        percentile(&totals, 0.5),
        percentile(&totals, 0.95),
        percentile(&totals, 1.0),
        percentile(&waits, 0.5),
        percentile(&waits, 0.95),
    );
}

#[test]
fn killing_the_row_lock_holder_lets_the_next_process_proceed_at_once() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("kill");
    let url = cluster.url(&database);
    let runtime = multi_thread_runtime();
    let initial = fixture(0);
    let store = runtime.block_on(async {
        let store = connect(&url, KEY, options()).await;
        write_committed(&store, &initial).await;
        store
    });

    let mut holder = Worker::spawn("hold", &url, KEY, &[]);
    holder.wait_for("LOCKED");
    let waiting = runtime.spawn({
        let store = store.clone();
        async move { store.begin().await }
    });
    // The waiter is queued behind the holder's row lock before the holder dies.
    let deadline = Instant::now() + BOUND;
    while cluster.psql(
        &database,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    ) != "1"
    {
        assert!(Instant::now() < deadline, "the waiter never queued");
        std::thread::sleep(Duration::from_millis(20));
    }

    let killed = Instant::now();
    holder.child.kill().unwrap(); // SIGKILL
    let _ = holder.child.wait();
    let mut transaction = runtime
        .block_on(bounded(waiting))
        .unwrap()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    let hand_off = killed.elapsed();

    // The holder's uncommitted write died with it.
    let document = runtime
        .block_on(transaction.read())
        .unwrap()
        .expect("logged in");
    assert_eq!(document, initial);
    // Released by the server when the connection dropped, not by the idle timeout (30 s).
    assert!(
        hand_off < Duration::from_secs(10),
        "hand-off took {hand_off:?}"
    );
    eprintln!(
        "row lock handed off {hand_off:.2?} after SIGKILL of its holder (waited {:.2?} in all)",
        transaction.lock_wait()
    );
    runtime.block_on(transaction.commit()).unwrap();
}

#[test]
fn the_schema_is_created_once_when_eight_processes_connect_to_a_fresh_database() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("schema");
    let url = cluster.url(&database);
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("open");
    let workers: Vec<Worker> = (0..8)
        .map(|i| {
            Worker::spawn(
                "connect",
                &url,
                &format!("machine-{i}"),
                &[(GATE_ENV, gate.display().to_string())],
            )
        })
        .collect();
    for worker in &workers {
        worker.wait_for("READY");
    }
    std::fs::write(&gate, b"").unwrap();
    for worker in workers {
        worker.finish();
    }
    assert_eq!(
        cluster.psql(
            &database,
            "SELECT count(*), min(version), max(version) FROM authstore_schema"
        ),
        "1|1|1"
    );
    assert_eq!(
        cluster.psql(
            &database,
            "SELECT count(*) FROM authstore_credentials WHERE document IS NOT NULL"
        ),
        "8"
    );
}

// ---------------------------------------------------------------------------------------------
// Timeouts.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_idle_inside_its_transaction_is_ended_by_the_server() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("idle");
    let url = cluster.url(&database);
    // A 1 s idle timeout is only allowed beside token requests that take less: the store
    // refuses a combination in which the server could end a refresh in flight.
    let holder = connect(
        &url,
        KEY,
        options()
            .token_request_timeout(Duration::from_millis(500))
            .idle_timeout(Duration::from_secs(1)),
    )
    .await;
    let waiter = connect(&url, KEY, options()).await;
    write_committed(&waiter, &fixture(0)).await;

    let mut held = bounded(holder.begin()).await.unwrap();
    // The holder now hangs (a stuck process, a vanished machine): it sends nothing.
    let mut transaction = bounded(waiter.begin())
        .await
        .unwrap_or_else(|e| panic!("begin: {e}"));
    eprintln!(
        "the server ended the idle holder; the waiter got the row lock after {:.2?}",
        transaction.lock_wait()
    );
    bounded(transaction.write(&fixture(1))).await.unwrap();
    bounded(transaction.commit()).await.unwrap();

    // The holder learns it lost the transaction when it next speaks.
    let error = bounded(held.write(&fixture(2))).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StoreUnavailable, "{error}");
    assert!(error.to_string().contains("idle"), "{error}");
    let error = bounded(held.commit()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StoreUnavailable, "{error}");
    assert!(error.to_string().contains("commit failed"), "{error}");

    assert_stored(cluster, &database, Some(&json_text(&fixture(1))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_past_the_lock_timeout_is_a_lock_timeout_naming_the_holder() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("timeout");
    let url = cluster.url(&database);
    let holder = connect(&url, KEY, options()).await;
    let waiter = connect(
        &url,
        KEY,
        options().lock_timeout(Duration::from_millis(300)),
    )
    .await;
    write_committed(&holder, &fixture(0)).await;

    let held = bounded(holder.begin()).await.unwrap();
    let error = bounded(waiter.begin()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::LockTimeout, "{error}");
    let message = error.to_string();
    // The error is opaque: its location, wait and holder are read through accessors.
    let path = error.location().map(ToString::to_string);
    let waited = error
        .lock_waited()
        .expect("a lock timeout says how long it waited");
    let named = error.lock_holder().map(str::to_owned);
    assert_eq!(error.path(), None, "a store's location is not a file path");
    assert_eq!(path.as_deref(), Some(waiter.location()));
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let named = named.expect("the holder is named");
    assert!(
        named.contains(&format!("authstore (pid {})", std::process::id())),
        "{named}"
    );
    eprintln!("{message}");

    // Once the holder is done, the same waiter gets the lock.
    held.rollback().await;
    let transaction = bounded(waiter.begin()).await.unwrap();
    assert_eq!(transaction.generation(), 1);
}

// ---------------------------------------------------------------------------------------------
// The server going away.

const PASSWORD: &str = "pw-s3cret-never-shown";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_unavailable_and_no_secret_is_shown() {
    let cluster = Cluster::start();
    let database = cluster.create_database("stopped");
    // Trust authentication ignores the password; the point is that it is never shown.
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{database}",
        cluster.port()
    );
    let store = connect(&url, KEY, options().connect_timeout(Duration::from_secs(5))).await;
    let document =
        authstore_testkit::document(authstore_testkit::ALICE, 1, SystemTime::now(), 3600);
    write_committed(&store, &document).await;
    let tokens = document.tokens.as_ref().unwrap();
    let secrets = [
        PASSWORD,
        tokens.refresh_token.expose(),
        tokens.access_token.expose(),
        tokens.id_token.expose(),
    ];
    let shows_no_secret = |text: &str| {
        if secrets.iter().any(|secret| text.contains(secret)) {
            let redacted = secrets.iter().fold(text.to_owned(), |text, secret| {
                text.replace(secret, "[SECRET]")
            });
            panic!("a secret in: {redacted}");
        }
    };
    shows_no_secret(store.location());
    shows_no_secret(&format!("{store:?}"));

    let mut in_flight = bounded(store.begin()).await.unwrap();
    shows_no_secret(&format!("{in_flight:?}"));
    cluster.stop();

    let mut errors = vec![
        bounded(in_flight.write(&document)).await.unwrap_err(),
        bounded(in_flight.commit()).await.unwrap_err(),
        bounded(store.read()).await.unwrap_err(),
        bounded(store.begin()).await.unwrap_err(),
        bounded(store.generation()).await.unwrap_err(),
    ];
    errors.push(
        bounded(PgStore::connect(&url, KEY, options()))
            .await
            .unwrap_err(),
    );
    for error in &errors {
        assert_eq!(error.kind(), ErrorKind::StoreUnavailable, "{error}");
        shows_no_secret(&error.to_string());
        shows_no_secret(&format!("{error:?}"));
        assert!(error.to_string().contains(store.location()), "{error}");
    }
    eprintln!("{}", errors[2]);

    // Back up: the committed document is there, and the same store works again.
    cluster.start_again();
    assert_eq!(bounded(store.read()).await.unwrap(), Some(document));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_database_mid_run_loses_no_committed_document() {
    let cluster = Cluster::start();
    let database = cluster.create_database("restart");
    let url = cluster.url(&database);
    let store = connect(&url, KEY, options()).await;
    let idle = connect(&url, KEY, options()).await; // keeps a connection across the restart
    write_committed(&store, &fixture(1)).await;
    assert_eq!(bounded(idle.read()).await.unwrap(), Some(fixture(1)));

    let mut in_flight = bounded(store.begin()).await.unwrap();
    bounded(in_flight.write(&fixture(2))).await.unwrap();
    cluster.restart();

    // The transaction in flight fails cleanly; the committed document is intact.
    let error = bounded(in_flight.commit()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StoreUnavailable, "{error}");
    assert!(error.to_string().contains("commit failed"), "{error}");
    assert_stored(&cluster, &database, Some(&json_text(&fixture(1))));

    // A store whose kept connection died in the restart reconnects before locking anything.
    let mut transaction = bounded(idle.begin())
        .await
        .unwrap_or_else(|e| panic!("begin after restart: {e}"));
    assert_eq!(bounded(transaction.read()).await.unwrap(), Some(fixture(1)));
    bounded(transaction.write(&fixture(3))).await.unwrap();
    bounded(transaction.commit()).await.unwrap();
    assert_eq!(bounded(store.read()).await.unwrap(), Some(fixture(3)));
    assert_eq!(bounded(store.generation()).await.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------------
// The row and its document.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_keeps_the_row_and_reads_as_logged_out() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("logout");
    let store = connect(&cluster.url(&database), KEY, options()).await;
    assert_eq!(bounded(store.read()).await.unwrap(), None);
    assert_eq!(bounded(store.generation()).await.unwrap(), 0);

    // A key without a row gets one, so that it can be locked.
    let mut transaction = bounded(store.begin()).await.unwrap();
    assert_eq!(bounded(transaction.read()).await.unwrap(), None);
    assert!(!bounded(transaction.remove()).await.unwrap());
    bounded(transaction.commit()).await.unwrap();
    write_committed(&store, &fixture(0)).await;

    let mut transaction = bounded(store.begin()).await.unwrap();
    assert!(bounded(transaction.remove()).await.unwrap());
    assert_eq!(bounded(transaction.read()).await.unwrap(), None);
    bounded(transaction.commit()).await.unwrap();
    assert_eq!(bounded(store.read()).await.unwrap(), None);
    assert_eq!(bounded(store.generation()).await.unwrap(), 2);
    assert_eq!(
        cluster.psql(
            &database,
            "SELECT count(*), count(document) FROM authstore_credentials"
        ),
        "1|0"
    );

    // A transaction dropped without commit changes nothing and releases the lock.
    let mut transaction = bounded(store.begin()).await.unwrap();
    bounded(transaction.write(&fixture(5))).await.unwrap();
    drop(transaction);
    let transaction = bounded(store.begin()).await.unwrap();
    assert_eq!(transaction.generation(), 2);
    drop(transaction);
    assert_eq!(bounded(store.read()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_document_that_does_not_parse_is_invalid_and_left_untouched() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("invalid");
    let store = connect(&cluster.url(&database), KEY, options()).await;
    write_committed(&store, &fixture(0)).await;
    let broken = r#"{"tokens": {"id_token": "x", "access_token": "y", "refresh_token": 5}}"#;
    cluster.psql(
        &database,
        &format!("UPDATE authstore_credentials SET document = '{broken}'"),
    );

    let error = bounded(store.read()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidFile, "{error}");
    assert!(error.to_string().contains(store.location()), "{error}");
    let mut transaction = bounded(store.begin()).await.unwrap();
    let error = bounded(transaction.read()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidFile, "{error}");
    drop(transaction);
    assert_stored(cluster, &database, Some(broken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_with_a_clear_error() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("newer");
    let url = cluster.url(&database);
    connect(&url, KEY, options()).await;
    cluster.psql(&database, "UPDATE authstore_schema SET version = 99");
    let error = bounded(PgStore::connect(&url, KEY, options()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StoreUnavailable, "{error}");
    assert!(error.to_string().contains("version 99"), "{error}");
    assert!(error.to_string().contains("upgrade authstore"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// TLS.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_when_the_url_requires_it_and_the_certificate_is_verified() {
    let cluster = Cluster::shared();
    let database = cluster.create_database("tls");
    let url = format!(
        "{}?sslmode=require&sslrootcert={}",
        cluster.url(&database),
        cluster.ca_certificate().display()
    );
    let store = connect(&url, KEY, options()).await;
    assert!(
        store.location().contains("sslmode=require"),
        "{}",
        store.location()
    );
    write_committed(&store, &fixture(0)).await;
    assert_eq!(bounded(store.read()).await.unwrap(), Some(fixture(0)));
    // The connection the store keeps is encrypted.
    assert_eq!(
        cluster.psql(
            &database,
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = current_database() AND a.application_name LIKE 'authstore%' \
             AND s.ssl"
        ),
        "1"
    );

    // Without the test CA, the server's certificate is not trusted: no connection.
    let untrusted = format!("{}?sslmode=require", cluster.url(&database));
    let error = bounded(PgStore::connect(&untrusted, KEY, options()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StoreUnavailable, "{error}");
    // The cause (rustls's verdict) is in the source chain, which the report prints.
    let report = error.report().to_string();
    assert!(report.contains("certificate"), "{report}");
}
