//! `authstore broker`, a real process of the release binary in front of the embedded token
//! authority on loopback, asked as Codex asks it (the JSON refresh grant).
//!
//! 1. **Latency**: one refresh through the broker against the same refresh straight to the
//!    authority. The direct chain rotates its own login along the authority's answers; the
//!    broker is sent its home's current refresh token each time, so every request is a whole
//!    transaction (lock, re-read, rotation record, one authority call, durable write, answer).
//!    Diagnostic rows, alternating with them, split the difference: the same broker on a tmpfs
//!    home (fsync costs nothing there), the library's transaction in this process with no broker
//!    in front (`AuthManager::force_refresh`), the two durable writes alone, and a round trip to
//!    the broker that does not touch the store; the library's transaction on tmpfs too.
//! 2. **Concurrency**: N HTTP clients (N = 1, 4, 16, 64, each with its own connection, open
//!    before the batch starts) post the home's current refresh token at once. Every batch must
//!    cost exactly one authority call and give every client the same new tokens (asserted); the
//!    wall time of the batch is compared with N = 1. Diagnostic columns: the same clients
//!    presenting the token the batch just spent (answered from the rotation record), and
//!    requests the broker answers without its store (the floor of N round trips here).
//!
//! `cargo bench -p authstore-cli --bench broker` (add `-- --quick`, or set
//! `AUTHSTORE_BENCH_QUICK=1`, for fewer iterations).
// Unix only (processes, SIGTERM, tmpfs); elsewhere empty.
#![cfg_attr(not(unix), no_main)]
#![cfg(unix)]

mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authstore::store::StoreConfig;
use authstore::store::file::{Visibility, write_file_durably};
use authstore::{AuthManager, ManagerOptions};
use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

/// What Codex sends as its client id.
const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// The issue's targets: at most this much more than the direct refresh at the median, and a
/// batch of N at most this many times the batch of one.
const TARGET_EXTRA_MS: f64 = 1.0;
const TARGET_BATCH_RATIO: f64 = 1.2;
const WARM_UP: usize = 10;

fn main() {
    let Some(options) = common::options("broker") else {
        return;
    };
    common::print_machine();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the token authority and the clients");
    let simulator = runtime
        .block_on(Simulator::start(SimulatorConfig {
            family_revocation: true,
            access_token_lifetime: Duration::from_secs(3600),
            ..SimulatorConfig::default()
        }))
        .expect("the token authority starts");
    let logs = common::scratch_dir("broker-logs-");

    let latency = latency(&runtime, &simulator, options, logs.path());
    let concurrency = concurrency(&runtime, &simulator, options, logs.path());

    let stats = simulator.stats();
    assert_eq!(
        stats.reuse_rejections, 0,
        "no refresh token was spent twice"
    );
    assert_eq!(stats.families_revoked, 0, "no family was revoked");
    runtime.block_on(simulator.shutdown());
    common::write_results(
        "broker",
        options,
        json!({
            "latency": latency,
            "concurrency": concurrency,
            "authority": {
                "refresh_calls": stats.refresh_calls,
                "reuse_rejections": stats.reuse_rejections,
                "families_revoked": stats.families_revoked,
            },
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// Latency

/// The rows of the latency table, in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Direct,
    Broker,
    BrokerTmpfs,
    InProcess,
    InProcessTmpfs,
    DurableWrites,
    RoundTrip,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct to the authority (baseline)",
            Self::Broker => "through the broker",
            Self::BrokerTmpfs => "  broker, home on tmpfs (diagnostic)",
            Self::InProcess => "  library transaction, no broker (diagnostic)",
            Self::InProcessTmpfs => "  library transaction, tmpfs (diagnostic)",
            Self::DurableWrites => "  the two durable writes alone (diagnostic)",
            Self::RoundTrip => "  broker round trip, no store (diagnostic)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Broker => "broker",
            Self::BrokerTmpfs => "broker_tmpfs",
            Self::InProcess => "library_transaction",
            Self::InProcessTmpfs => "library_transaction_tmpfs",
            Self::DurableWrites => "durable_writes",
            Self::RoundTrip => "broker_round_trip",
        }
    }
}

fn latency(
    runtime: &tokio::runtime::Runtime,
    simulator: &Simulator,
    options: common::Options,
    logs: &Path,
) -> Value {
    let iterations = if options.quick { 100 } else { 600 };
    let client = client();
    let token_url = simulator.token_url();

    // The direct chain: a login of its own, rotated along the authority's answers.
    let mut direct_token = simulator
        .issue_login(&Identity::new("acct-direct", "user-direct"))
        .refresh_token;

    let home = common::scratch_dir("broker-home-");
    log_in(simulator, home.path(), "broker");
    let broker = BrokerProcess::start(home.path(), &token_url, logs);

    // tmpfs has no disk behind it: fsync returns at once, so these rows are the broker and the
    // transaction without waiting for the disk. Skipped where /dev/shm is not a tmpfs.
    let tmpfs = common::filesystem_of(Path::new("/dev/shm")).as_deref() == Some("tmpfs");
    let tmpfs_dir = || {
        tmpfs.then(|| {
            tempfile::Builder::new()
                .prefix("authstore-broker-bench-")
                .tempdir_in("/dev/shm")
                .expect("a home on /dev/shm")
        })
    };
    let tmpfs_home = tmpfs_dir();
    let tmpfs_broker = tmpfs_home.as_ref().map(|home| {
        log_in(simulator, home.path(), "tmpfs");
        BrokerProcess::start(home.path(), &token_url, logs)
    });

    // The transaction without the broker: the same library, in this process, on a home of its
    // own, what `authstore refresh --force` does.
    let library_home = common::scratch_dir("broker-library-");
    log_in(simulator, library_home.path(), "library");
    let manager = library_manager(runtime, library_home.path(), &token_url);
    let library_tmpfs_home = tmpfs_dir();
    let tmpfs_manager = library_tmpfs_home.as_ref().map(|home| {
        log_in(simulator, home.path(), "library-tmpfs");
        library_manager(runtime, home.path(), &token_url)
    });

    // The durable writes a broker refresh makes (the rotation record, then auth.json), with the
    // broker home's own bytes, in a directory of their own on the same filesystem.
    let writes_dir = common::scratch_dir("broker-writes-");

    let mut variants = vec![
        Variant::Direct,
        Variant::Broker,
        Variant::InProcess,
        Variant::DurableWrites,
        Variant::RoundTrip,
    ];
    if tmpfs {
        variants.insert(2, Variant::BrokerTmpfs);
        variants.insert(4, Variant::InProcessTmpfs);
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let calls_before = simulator.refresh_calls();
    let mut refreshes = 0u64;
    println!(
        "latency: {iterations} refreshes per row, the rows alternating (the order rotating), after \
         {WARM_UP} to warm up"
    );
    for iteration in 0..WARM_UP + iterations {
        for &index in &order {
            let nanos = match variants[index] {
                Variant::Direct => {
                    let (nanos, next) =
                        runtime.block_on(refresh_over_http(&client, &token_url, &direct_token));
                    direct_token = next;
                    refreshes += 1;
                    nanos
                }
                Variant::Broker => {
                    refreshes += 1;
                    broker_refresh(runtime, &client, &broker, home.path())
                }
                Variant::BrokerTmpfs => {
                    let (Some(broker), Some(home)) = (&tmpfs_broker, &tmpfs_home) else {
                        unreachable!("the row exists only with its broker")
                    };
                    refreshes += 1;
                    broker_refresh(runtime, &client, broker, home.path())
                }
                Variant::InProcess => {
                    refreshes += 1;
                    forced_refresh(runtime, &manager)
                }
                Variant::InProcessTmpfs => {
                    let Some(manager) = &tmpfs_manager else {
                        unreachable!("the row exists only with its manager")
                    };
                    refreshes += 1;
                    forced_refresh(runtime, manager)
                }
                Variant::DurableWrites => durable_writes(home.path(), writes_dir.path()),
                Variant::RoundTrip => runtime.block_on(round_trip(&client, &broker.url)),
            };
            if iteration >= WARM_UP {
                samples[index].push(nanos);
            }
        }
        order.rotate_left(1);
    }
    assert_eq!(
        simulator.refresh_calls() - calls_before,
        refreshes,
        "one authority call per refresh, through the broker too"
    );
    let broker_stderr = broker.stop();
    let tmpfs_stderr = tmpfs_broker.map(BrokerProcess::stop);

    let summaries: Vec<(Variant, common::Summary)> = variants
        .iter()
        .zip(&samples)
        .map(|(&variant, samples)| (variant, common::Summary::of(samples)))
        .collect();
    let of = |wanted: Variant| {
        summaries
            .iter()
            .find(|(variant, _)| *variant == wanted)
            .map(|(_, summary)| *summary)
    };
    let direct = of(Variant::Direct).expect("the baseline row");
    let mut table = vec![
        ["refresh", "median", "p90", "p99", "mean", "median − direct"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for (variant, summary) in &summaries {
        let versus = match variant {
            Variant::Direct => "-".to_owned(),
            Variant::DurableWrites | Variant::RoundTrip => "(a part)".to_owned(),
            _ => signed(summary.p50 - direct.p50),
        };
        table.push(vec![
            variant.label().to_owned(),
            common::nanos(summary.p50),
            common::nanos(summary.p90),
            common::nanos(summary.p99),
            common::nanos(summary.mean),
            versus,
        ]);
    }
    println!();
    common::print_table(&table);

    let broker_row = of(Variant::Broker).expect("the broker row");
    let extra_ms = (broker_row.p50 - direct.p50) / 1e6;
    let met = extra_ms <= TARGET_EXTRA_MS;
    println!(
        "\nthe broker adds {extra_ms:.2} ms at the median (target: at most {TARGET_EXTRA_MS} ms): {}",
        if met { "met" } else { "MISSED" }
    );
    // Differences of medians: an estimate of each part, not an exact sum.
    let part = |variant: Variant| of(variant).map(|s| s.p50);
    let minus = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    let parts = [
        (
            "the transaction over a bare request (library − direct)",
            minus(part(Variant::InProcess), Some(direct.p50)),
        ),
        (
            "  its disk waits (library − library on tmpfs)",
            minus(part(Variant::InProcess), part(Variant::InProcessTmpfs)),
        ),
        (
            "    the two durable writes alone, for scale",
            part(Variant::DurableWrites),
        ),
        (
            "  the rest: lock, reads, record, JSON (library on tmpfs − direct)",
            minus(part(Variant::InProcessTmpfs), Some(direct.p50)),
        ),
        (
            "the broker in front of it (broker − library)",
            minus(part(Variant::Broker), part(Variant::InProcess)),
        ),
        (
            "  on tmpfs (broker on tmpfs − library on tmpfs)",
            minus(part(Variant::BrokerTmpfs), part(Variant::InProcessTmpfs)),
        ),
        (
            "  an HTTP round trip to the broker alone, for scale",
            part(Variant::RoundTrip),
        ),
    ];
    println!("where it goes (differences of medians):");
    let width = parts
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    for (name, value) in &parts {
        if let Some(value) = value {
            println!("  {name:<width$}  {:>10}", signed(*value));
        }
    }
    for (name, stderr) in [
        ("broker", Some(broker_stderr)),
        ("tmpfs broker", tmpfs_stderr),
    ] {
        if let Some(stderr) = stderr
            && !stderr.trim().is_empty()
        {
            println!("the {name} wrote {} bytes to stderr", stderr.len());
        }
    }

    let mut rows = serde_json::Map::new();
    for (variant, summary) in &summaries {
        rows.insert(variant.key().to_owned(), summary.to_json());
    }
    json!({
        "unit": "ns per refresh",
        "iterations": iterations,
        "rows": rows,
        "broker_minus_direct_p50_ms": extra_ms,
        "parts_p50_ns": parts
            .iter()
            .map(|(name, value)| json!({"part": name.trim(), "ns": value}))
            .collect::<Vec<_>>(),
        "target_extra_ms": TARGET_EXTRA_MS,
        "target_met": met,
    })
}

/// The library's manager for `home`, as the broker builds its own (default options, the
/// authority as its token endpoint).
fn library_manager(runtime: &tokio::runtime::Runtime, home: &Path, token_url: &str) -> AuthManager {
    runtime
        .block_on(
            StoreConfig::new(home)
                .token_url(Some(token_url.to_owned()))
                .manager(ManagerOptions::default()),
        )
        .expect("a manager for the library's home")
}

/// `AuthManager::force_refresh`, what `authstore refresh --force` does: the time it takes.
fn forced_refresh(runtime: &tokio::runtime::Runtime, manager: &AuthManager) -> f64 {
    let started = Instant::now();
    runtime
        .block_on(manager.force_refresh())
        .expect("the library's forced refresh");
    started.elapsed().as_nanos() as f64
}

/// One forced refresh through `broker`, presenting what its home holds now; the time of the
/// request. The answer must be the home's new tokens.
fn broker_refresh(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    broker: &BrokerProcess,
    home: &Path,
) -> f64 {
    let current = current_refresh_token(home);
    let (nanos, next) = runtime.block_on(refresh_over_http(client, &broker.url, &current));
    assert_ne!(next, current, "the broker rotated the token");
    assert!(
        next == current_refresh_token(home),
        "the broker answered with what it stored"
    );
    nanos
}

/// A refresh as Codex sends it; the time from sending the request until the whole answer was
/// read, and the refresh token it carries.
async fn refresh_over_http(
    client: &reqwest::Client,
    url: &str,
    refresh_token: &str,
) -> (f64, String) {
    let body = grant(refresh_token);
    let started = Instant::now();
    let response = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("the token endpoint answers");
    let status = response.status();
    let bytes = response.bytes().await.expect("the answer's body");
    let nanos = started.elapsed().as_nanos() as f64;
    (nanos, new_refresh_token(status, &bytes))
}

/// A request the broker answers without reading its store (a 404): the HTTP hop alone.
async fn round_trip(client: &reqwest::Client, url: &str) -> f64 {
    let started = Instant::now();
    let response = client.get(url).send().await.expect("the broker answers");
    let status = response.status();
    response.bytes().await.expect("the answer's body");
    let nanos = started.elapsed().as_nanos() as f64;
    assert_eq!(status.as_u16(), 404, "the broker answers only POST here");
    nanos
}

/// The durable writes of one broker refresh: the rotation record (written before the token is
/// spent), then auth.json; each is temp file, write, fsync, rename, fsync of the directory.
/// The bytes are the broker home's own (read outside the timing), so the sizes are real.
fn durable_writes(home: &Path, dir: &Path) -> f64 {
    let record = fs::read(home.join(authstore::rotations::ROTATIONS_FILE)).unwrap_or_default();
    let auth = fs::read(home.join("auth.json")).expect("the broker home's auth.json");
    let started = Instant::now();
    write_file_durably(
        &dir.join(authstore::rotations::ROTATIONS_FILE),
        &record,
        Visibility::Private,
    )
    .expect("the record's durable write");
    write_file_durably(&dir.join("auth.json"), &auth, Visibility::Private)
        .expect("auth.json's durable write");
    started.elapsed().as_nanos() as f64
}

// ---------------------------------------------------------------------------------------------
// Concurrency

fn concurrency(
    runtime: &tokio::runtime::Runtime,
    simulator: &Simulator,
    options: common::Options,
    logs: &Path,
) -> Value {
    let sizes: [usize; 4] = [1, 4, 16, 64];
    let rounds = if options.quick { 8 } else { 40 };
    let home = common::scratch_dir("broker-batch-");
    log_in(simulator, home.path(), "batch");
    let broker = BrokerProcess::start(home.path(), &simulator.token_url(), logs);
    // One client per simulated Codex process, each with a connection of its own.
    let largest = sizes.iter().copied().max().unwrap_or(1);
    let clients: Vec<reqwest::Client> = (0..largest).map(|_| client()).collect();
    println!(
        "\nconcurrency: N clients post the home's current refresh token at once; {rounds} batches \
         per N, the sizes alternating (the order rotating), medians"
    );

    let mut batches: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut rotated_away: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut floors: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut calls: Vec<Vec<u64>> = vec![Vec::new(); sizes.len()];
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    // One warm-up round (not counted), then the measured ones.
    for round in 0..=rounds {
        for &index in &order {
            let n = sizes[index];
            let clients = &clients[..n];
            // Connections open and idle before the batch, as a Codex process's would be; this
            // also warms the broker's connection tasks.
            runtime.block_on(floor_batch(clients, &broker.url));
            let (nanos, delta, spent) =
                runtime.block_on(refresh_batch(clients, &broker.url, simulator, home.path()));
            // Diagnostics with the same N clients and connections: the token just spent
            // presented again (answered from the rotation record, without the lock), and
            // requests the broker answers without its store.
            let rotated = runtime.block_on(rotated_batch(
                clients,
                &broker.url,
                simulator,
                home.path(),
                &spent,
            ));
            let floor = runtime.block_on(floor_batch(clients, &broker.url));
            if round > 0 {
                batches[index].push(nanos);
                rotated_away[index].push(rotated);
                floors[index].push(floor);
                calls[index].push(delta);
            }
        }
        order.rotate_left(1);
    }
    broker.stop();

    let summaries: Vec<common::Summary> = batches.iter().map(|b| common::Summary::of(b)).collect();
    let one = summaries[0].p50;
    let mut table = vec![
        [
            "N clients",
            "batches",
            "authority calls/batch",
            "median batch",
            "p90",
            "vs N = 1",
            "token rotated away (diag.)",
            "no store (diag.)",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    let mut results = Vec::new();
    for (index, &n) in sizes.iter().enumerate() {
        let summary = summaries[index];
        let floor = common::Summary::of(&floors[index]);
        let rotated = common::Summary::of(&rotated_away[index]);
        let ratio = summary.p50 / one;
        let (min_calls, max_calls) = (
            calls[index].iter().copied().min().unwrap_or(0),
            calls[index].iter().copied().max().unwrap_or(0),
        );
        table.push(vec![
            n.to_string(),
            batches[index].len().to_string(),
            if min_calls == max_calls {
                max_calls.to_string()
            } else {
                format!("{min_calls}–{max_calls}")
            },
            common::nanos(summary.p50),
            common::nanos(summary.p90),
            format!("{ratio:.2}x"),
            common::nanos(rotated.p50),
            common::nanos(floor.p50),
        ]);
        results.push(json!({
            "clients": n,
            "batches": batches[index].len(),
            "authority_calls_per_batch": {"min": min_calls, "max": max_calls},
            "batch_ns": summary.to_json(),
            "ratio_to_one": ratio,
            "rotated_away_batch_ns": rotated.to_json(),
            "floor_ns": floor.to_json(),
            "target_met": ratio <= TARGET_BATCH_RATIO,
        }));
    }
    println!();
    common::print_table(&table);
    let worst = summaries
        .iter()
        .map(|s| s.p50 / one)
        .fold(f64::NAN, f64::max);
    let met = worst <= TARGET_BATCH_RATIO;
    println!(
        "\none authority call per batch for every N; the largest batch takes {worst:.2}x the time \
         of one (target: at most {TARGET_BATCH_RATIO}x): {}",
        if met { "met" } else { "MISSED" }
    );
    json!({
        "unit": "ns per batch (from the first request sent to the last answer read)",
        "rounds": rounds,
        "by_clients": results,
        "worst_ratio": worst,
        "target_ratio": TARGET_BATCH_RATIO,
        "target_met": met,
    })
}

/// N clients post the home's current refresh token at once; the wall time of the batch, the
/// authority calls it cost and the token it spent. Every client must get the tokens the home
/// ends on.
async fn refresh_batch(
    clients: &[reqwest::Client],
    url: &str,
    simulator: &Simulator,
    home: &Path,
) -> (f64, u64, String) {
    let current = current_refresh_token(home);
    let before = simulator.refresh_calls();
    let (nanos, answers) = post_at_once(clients, url, &current).await;
    let delta = simulator.refresh_calls() - before;
    assert_eq!(
        delta,
        1,
        "{} simultaneous refreshes of one token cost one authority call",
        clients.len()
    );
    let stored = current_refresh_token(home);
    assert_ne!(stored, current, "the home moved on");
    assert!(
        answers.iter().all(|answer| *answer == stored),
        "every client got the tokens the home now holds"
    );
    (nanos, delta, current)
}

/// N clients post `spent`, the token the last batch rotated away, at once: within the reuse
/// interval the broker answers each with what replaced it, from the rotation record, taking
/// no lock and calling no one (asserted).
async fn rotated_batch(
    clients: &[reqwest::Client],
    url: &str,
    simulator: &Simulator,
    home: &Path,
    spent: &str,
) -> f64 {
    let stored = current_refresh_token(home);
    let before = simulator.refresh_calls();
    let (nanos, answers) = post_at_once(clients, url, spent).await;
    assert_eq!(simulator.refresh_calls(), before, "no authority call");
    assert!(
        answers.iter().all(|answer| *answer == stored),
        "every client got the token that replaced its own"
    );
    nanos
}

/// Every client posts the refresh grant for `refresh_token` at once; the time from the first
/// request until the last answer was read, and the refresh token of each answer.
async fn post_at_once(
    clients: &[reqwest::Client],
    url: &str,
    refresh_token: &str,
) -> (f64, Vec<String>) {
    let body = grant(refresh_token);
    let started = Instant::now();
    let answers = futures::future::join_all(clients.iter().map(|client| {
        let request = client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
        async move {
            let response = request.send().await.expect("the broker answers");
            let status = response.status();
            let bytes = response.bytes().await.expect("the answer's body");
            new_refresh_token(status, &bytes)
        }
    }))
    .await;
    (started.elapsed().as_nanos() as f64, answers)
}

/// N requests at once that the broker answers without its store (404): what N round trips
/// cost on this machine, whatever the broker does with a refresh.
async fn floor_batch(clients: &[reqwest::Client], url: &str) -> f64 {
    let started = Instant::now();
    let statuses = futures::future::join_all(clients.iter().map(|client| async move {
        let response = client.get(url).send().await.expect("the broker answers");
        let status = response.status().as_u16();
        response.bytes().await.expect("the answer's body");
        status
    }))
    .await;
    let nanos = started.elapsed().as_nanos() as f64;
    assert!(statuses.iter().all(|&status| status == 404));
    nanos
}

// ---------------------------------------------------------------------------------------------
// Shared

/// A running `authstore broker` on a free loopback port; stopped with SIGTERM.
struct BrokerProcess {
    child: Child,
    url: String,
    stderr_path: PathBuf,
}

impl BrokerProcess {
    /// `authstore --codex-home HOME broker --listen 127.0.0.1:0 --upstream URL`; returns once it
    /// printed the URL it listens on.
    fn start(home: &Path, upstream: &str, logs: &Path) -> Self {
        let stderr_path = logs.join(format!("broker-{}.log", common::unix_ns()));
        let stderr = File::create(&stderr_path).expect("a broker log can be created");
        let mut child = Command::new(common::BIN)
            .arg("--codex-home")
            .arg(home)
            .args(["broker", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .env_remove("CODEX_HOME")
            .env_remove("AUTHSTORE_LOG")
            .env_remove("AUTHSTORE_STORE")
            .env_remove("AUTHSTORE_STORE_FILE")
            .env_remove("CODEX_REFRESH_TOKEN_URL_OVERRIDE")
            .env_remove(authstore::authority::CLIENT_ID_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the authstore binary starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        let read = stdout.read_line(&mut first).unwrap_or(0);
        let url = first
            .trim_end()
            .strip_prefix("listening on ")
            .map(str::to_owned);
        let mut broker = Self {
            child,
            url: url.clone().unwrap_or_default(),
            stderr_path,
        };
        if read == 0 || url.is_none() {
            broker.fail("its address");
        }
        // Keep reading stdout so that the broker never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        broker
    }

    /// Stops the broker (SIGTERM, as a service manager would) and returns its stderr.
    fn stop(mut self) -> String {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a signal to our own child, which has not been waited for yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(_)) => self.fail("a clean exit"),
                _ if Instant::now() > deadline => self.fail("its exit after SIGTERM"),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        let mut stderr = String::new();
        if let Ok(mut file) = File::open(&self.stderr_path) {
            let _ = file.read_to_string(&mut stderr);
        }
        panic!("the broker stopped before {what} ({status:?}); its stderr:\n{stderr}");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A client as a Codex process has one: keep-alive, no proxy on loopback.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// The refresh grant as Codex sends it.
fn grant(refresh_token: &str) -> Vec<u8> {
    json!({
        "client_id": CODEX_CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    })
    .to_string()
    .into_bytes()
}

/// The refresh token of a 200 answer; anything else fails the benchmark, naming the status and
/// the error code only (the body may hold tokens).
fn new_refresh_token(status: reqwest::StatusCode, body: &[u8]) -> String {
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status != reqwest::StatusCode::OK {
        let code = answer["error"]["code"]
            .as_str()
            .or_else(|| answer["error"].as_str())
            .unwrap_or("?");
        panic!("a refresh was answered {status} ({code})");
    }
    answer["refresh_token"]
        .as_str()
        .expect("the answer carries a refresh token")
        .to_owned()
}

/// Writes a new login of its own (a family at the authority) as `home`'s auth.json, 0600.
fn log_in(simulator: &Simulator, home: &Path, name: &str) {
    let login = simulator.auth_json(&Identity::new(
        format!("acct-{name}"),
        format!("user-{name}"),
    ));
    let path = home.join("auth.json");
    fs::write(&path, login.to_string()).expect("the login is written");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("auth.json is 0600");
}

/// The refresh token `home` holds now.
fn current_refresh_token(home: &Path) -> String {
    let bytes = fs::read(home.join("auth.json")).expect("the home's auth.json");
    let document: Value = serde_json::from_slice(&bytes).expect("auth.json is JSON");
    document["tokens"]["refresh_token"]
        .as_str()
        .expect("the home holds a refresh token")
        .to_owned()
}

/// A difference in time, with its sign.
fn signed(ns: f64) -> String {
    if ns < 0.0 {
        format!("−{}", common::nanos(-ns))
    } else {
        format!("+{}", common::nanos(ns))
    }
}
