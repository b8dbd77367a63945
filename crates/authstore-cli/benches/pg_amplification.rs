//! Refresh amplification over PostgreSQL, side by side with the file store: N processes of the
//! real binary find one stale token at once. How many token-endpoint calls, how many refused as
//! reuse, and how long until every process holds a fresh token? For N = 1, 2, 4, ..., 64.
//!
//! - **postgres**: N machines, each with its own Codex home (its local `auth.json` a mirror of
//!   the stale login), all on one database of a throwaway cluster this benchmark starts and
//!   stops; each runs `authstore --store postgres://... token`, as a machine would.
//! - **file**: N processes on one machine, one shared `auth.json`, each running
//!   `authstore token`: the same command and the same timing as the postgres side.
//! - **file, pre-started** (reference): the `coordinated` sessions of the `amplification`
//!   benchmark (`demo-worker --mode once`, set up before the start signal), which leave process
//!   start-up out of the timing. `demo-worker` has no `--store`, hence no postgres counterpart.
//!
//! Same authority settings for all three (family revocation; a login with 60 s left, stale for
//! the 5-minute refresh window; refreshed tokens live an hour); the variants alternate run by run.
//!
//! `cargo bench --features postgres --bench pg_amplification` (add `-- --quick` for N ≤ 16 and
//! one run each). Needs the PostgreSQL server programs (`initdb`, `pg_ctl`), like the tests.
// Unix only (processes, CLOCK_MONOTONIC, flock, a PostgreSQL cluster); elsewhere empty.
#![cfg_attr(not(unix), no_main)]
#![cfg(unix)]

mod common;
use authstore_testkit::postgres as pg;

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use common::protocol::{Launch, Mode, Strategy};
use serde_json::{Value, json};

/// The ways of getting the token, in the order they run: the three above, then the same
/// `token` commands on a login that is still fresh (no refresh: the floor of starting N
/// processes, connecting and reading, on this machine).
const VARIANTS: [&str; 5] = [
    "postgres",
    "file",
    "file_prestarted",
    "postgres_fresh",
    "file_fresh",
];

/// Generous bounds for the one-shot commands (none should come near them).
const COMMAND_OPTIONS: [&str; 4] = ["--lock-timeout", "30", "--request-timeout", "10"];

fn main() {
    let Some(options) = common::options("pg_amplification") else {
        return;
    };
    if options.plot {
        println!("pg_amplification: no plots; the table and the JSON results are all it makes");
        return;
    }
    let sizes: &[usize] = if options.quick {
        &[1, 2, 4, 8, 16]
    } else {
        &[1, 2, 4, 8, 16, 32, 64]
    };
    let repeats = if options.quick { 1 } else { 5 };
    common::print_machine();

    let cluster = pg::Cluster::start();
    let database = cluster.create_database("bench");
    let url = cluster.url(&database);
    let server_version = cluster.psql("postgres", "SHOW server_version");
    println!(
        "PostgreSQL {server_version}, a throwaway cluster on 127.0.0.1:{} (same machine)",
        cluster.port()
    );
    println!(
        "N processes find one stale token at once; {repeats} run(s) each, medians shown; \
         postgres: one Codex home per process, file: one shared home\n"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the token authority");
    let logs = common::scratch_dir("pg-amplification-logs-");

    let mut runs: Vec<Vec<Vec<Value>>> = vec![vec![Vec::new(); VARIANTS.len()]; sizes.len()];
    let mut key = 0;
    for _ in 0..repeats {
        for (i, &n) in sizes.iter().enumerate() {
            for (v, variant) in VARIANTS.iter().enumerate() {
                let authority = Authority::start(&runtime);
                let stale = &authority.stale;
                let fresh = &authority.fresh;
                key += 1;
                let key = format!("bench-{key}");
                let run = match *variant {
                    "postgres" => run_postgres(&authority, stale, &url, &key, n, logs.path()),
                    "file" => run_file(&authority, stale, n, logs.path()),
                    "file_prestarted" => run_file_prestarted(&authority, n, logs.path()),
                    "postgres_fresh" => run_postgres(&authority, fresh, &url, &key, n, logs.path()),
                    _ => run_file(&authority, fresh, n, logs.path()),
                };
                authority.stop(&runtime);
                runs[i][v].push(run);
            }
        }
    }
    // Stops the server and removes its directory.
    drop(cluster);

    let rows: Vec<Value> = sizes
        .iter()
        .zip(&runs)
        .map(|(&n, by_variant)| {
            let mut row = json!({ "processes": n });
            for (variant, variant_runs) in VARIANTS.iter().zip(by_variant) {
                row[*variant] = aggregate(variant_runs);
            }
            row["ratio_all_fresh_pg_over_file"] =
                json!(p50(&row, "postgres", "all_fresh_ms") / p50(&row, "file", "all_fresh_ms"));
            row
        })
        .collect();
    let mut table = vec![header()];
    table.extend(rows.iter().map(table_row));
    common::print_table(&table);
    let all_good = rows.iter().all(|row| {
        let n = row["processes"].as_u64().unwrap_or(0);
        VARIANTS.iter().all(|v| {
            let runs = row[*v]["runs"].as_array().map_or(&[][..], Vec::as_slice);
            let calls = if v.ends_with("_fresh") { 0 } else { 1 };
            runs.iter().all(|r| {
                r["calls"] == calls
                    && r["reuse_rejections"] == 0
                    && r["fresh"].as_u64() == Some(n)
                    && r.get("mirrors_updated")
                        .is_none_or(|m| m.as_u64() == Some(n))
            })
        })
    });
    println!(
        "\n{}",
        if all_good {
            "every run: 1 token-endpoint call (0 when fresh), 0 reuse, every process and mirror fresh"
        } else {
            "SOME RUNS made more calls than needed, saw reuse, or left a process or a mirror stale"
        }
    );
    common::write_results(
        "pg_amplification",
        options,
        json!({
            "postgres_version": server_version,
            "repeats": repeats,
            "rows": rows,
        }),
    );
}

/// A fresh token authority for one run, and two logins it issued: one stale, one fresh.
struct Authority {
    simulator: Simulator,
    stale: Value,
    fresh: Value,
}

impl Authority {
    fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let simulator = runtime
            .block_on(Simulator::start(SimulatorConfig {
                family_revocation: true,
                access_token_lifetime: Duration::from_secs(3600),
                ..SimulatorConfig::default()
            }))
            .expect("the token authority starts");
        // 60 s left: stale for the default 5-minute window. Refreshed tokens live an hour.
        let identity = Identity::new("acct-bench", "user-bench");
        let fresh = simulator.auth_json(&identity);
        simulator.set_access_token_lifetime(Duration::from_secs(60));
        let stale = simulator.auth_json(&identity);
        simulator.set_access_token_lifetime(Duration::from_secs(3600));
        Self {
            simulator,
            stale,
            fresh,
        }
    }

    fn stale_token(&self) -> &str {
        self.stale["tokens"]["access_token"].as_str().unwrap_or("")
    }

    fn write_login(home: &Path, login: &Value) {
        std::fs::create_dir_all(home).expect("a Codex home can be created");
        let path = home.join("auth.json");
        std::fs::write(&path, login.to_string()).expect("login written");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("auth.json made private");
    }

    fn stop(self, runtime: &tokio::runtime::Runtime) {
        runtime.block_on(self.simulator.shutdown());
    }
}

/// N machines on one database: machine 0 logs in through the store, every machine's mirror
/// holds that login, then N machines run `token` at once.
fn run_postgres(
    authority: &Authority,
    login: &Value,
    url: &str,
    key: &str,
    n: usize,
    logs: &Path,
) -> Value {
    let root = common::scratch_dir("pg-amplification-machines-");
    let token_url = authority.simulator.token_url();
    let store = |home: &Path| -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--store".into(),
            url.into(),
            "--store-key".into(),
            key.into(),
            "--codex-home".into(),
            home.into(),
        ];
        args.extend(COMMAND_OPTIONS.map(OsString::from));
        args
    };
    let installer = root.path().join("machine-0");
    std::fs::create_dir_all(&installer).expect("a Codex home can be created");
    let file = root.path().join("login.json");
    std::fs::write(&file, login.to_string()).expect("login written");
    let output = Command::new(common::BIN)
        .args(store(&installer))
        .arg("login")
        .arg("--from")
        .arg(&file)
        .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", &token_url)
        .env_remove("AUTHSTORE_STORE")
        .env_remove("AUTHSTORE_STORE_KEY")
        .env_remove("CODEX_HOME")
        .output()
        .expect("authstore login runs");
    assert!(
        output.status.success(),
        "login through the store failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let homes: Vec<_> = (1..=n)
        .map(|m| root.path().join(format!("machine-{m}")))
        .collect();
    let commands: Vec<Vec<OsString>> = homes
        .iter()
        .map(|home| {
            Authority::write_login(home, login);
            let mut args = store(home);
            args.push("token".into());
            args
        })
        .collect();
    let outcomes = common::gated::run(
        Path::new(common::BIN),
        &commands,
        &[("CODEX_REFRESH_TOKEN_URL_OVERRIDE", &token_url)],
        logs,
    );
    let mut result = summarize(authority, &outcomes);
    let new_token = common_token(authority, &outcomes);
    let mirrors = homes
        .iter()
        .filter(|home| {
            let text = std::fs::read_to_string(home.join("auth.json")).unwrap_or_default();
            let disk: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            new_token.is_some() && disk["tokens"]["access_token"].as_str() == new_token.as_deref()
        })
        .count();
    result["mirrors_updated"] = json!(mirrors);
    result
}

/// N processes on one machine, one `auth.json`: each runs `token` at once.
fn run_file(authority: &Authority, login: &Value, n: usize, logs: &Path) -> Value {
    let home = common::scratch_dir("pg-amplification-home-");
    Authority::write_login(home.path(), login);
    let mut args: Vec<OsString> = vec!["--codex-home".into(), home.path().into()];
    args.extend(COMMAND_OPTIONS.map(OsString::from));
    args.push("token".into());
    let commands = vec![args; n];
    let token_url = authority.simulator.token_url();
    let outcomes = common::gated::run(
        Path::new(common::BIN),
        &commands,
        &[("CODEX_REFRESH_TOKEN_URL_OVERRIDE", &token_url)],
        logs,
    );
    summarize(authority, &outcomes)
}

/// The `coordinated` run of the `amplification` benchmark: pre-started sessions on one
/// `auth.json`, asking once on the start signal.
fn run_file_prestarted(authority: &Authority, n: usize, logs: &Path) -> Value {
    let home = common::scratch_dir("pg-amplification-home-");
    Authority::write_login(home.path(), &authority.stale);
    let launch = Launch {
        refresh_window_ms: 300_000,
        ..Launch::new(Strategy::Coordinated, Mode::Once)
    };
    let (go, reports) = common::run_workers(
        n,
        home.path(),
        &authority.simulator.token_url(),
        &launch,
        logs,
    );
    let done = common::done_ms(go, &reports);
    let stats = authority.simulator.stats();
    let fresh = reports.iter().filter(|r| r.fresh_at_end).count();
    json!({
        "calls": stats.refresh_calls,
        "reuse_rejections": stats.reuse_rejections,
        "rejected": stats.rejected_refreshes,
        "fresh": fresh,
        "failed": common::sum(&reports, |r| r.failed),
        "all_fresh_ms": done.iter().copied().fold(0.0, f64::max),
        "median_process_ms": common::Summary::of(&done).p50,
    })
}

/// The token every successful process printed, when they agree and it is not the stale one.
fn common_token(authority: &Authority, outcomes: &[common::gated::Outcome]) -> Option<String> {
    let mut printed = outcomes
        .iter()
        .filter(|o| o.succeeded())
        .map(|o| o.first_line.as_str());
    let first = printed.next()?;
    (first != authority.stale_token() && printed.all(|t| t == first)).then(|| first.to_owned())
}

/// Counts and times of one run of gated `token` commands. No token is kept in the result.
fn summarize(authority: &Authority, outcomes: &[common::gated::Outcome]) -> Value {
    let stats = authority.simulator.stats();
    let stale = authority.stale_token();
    let fresh: Vec<&common::gated::Outcome> = outcomes
        .iter()
        .filter(|o| o.succeeded() && !o.first_line.is_empty() && o.first_line != stale)
        .collect();
    let mut distinct: Vec<&str> = fresh.iter().map(|o| o.first_line.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let answered: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.answered_after)
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let exited: Vec<f64> = outcomes
        .iter()
        .map(|o| o.exited_after.as_secs_f64() * 1e3)
        .collect();
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.succeeded())
        .map(|o| format!("exit {:?}: {}", o.status.code(), o.stderr.trim()))
        .collect();
    if let Some(first) = failures.first() {
        eprintln!(
            "pg_amplification: {} process(es) failed; {first}",
            failures.len()
        );
    }
    json!({
        "calls": stats.refresh_calls,
        "reuse_rejections": stats.reuse_rejections,
        "rejected": stats.rejected_refreshes,
        "fresh": fresh.len(),
        "distinct_tokens": distinct.len(),
        "failed": failures.len(),
        "first_failure": failures.first(),
        "all_fresh_ms": if fresh.len() == outcomes.len() {
            answered.iter().copied().fold(0.0, f64::max)
        } else {
            f64::NAN
        },
        "median_process_ms": common::Summary::of(&answered).p50,
        "all_exited_ms": exited.iter().copied().fold(0.0, f64::max),
    })
}

/// Medians over the runs, with the runs kept.
fn aggregate(runs: &[Value]) -> Value {
    let median = |field: &str| {
        let values: Vec<f64> = runs.iter().filter_map(|r| r[field].as_f64()).collect();
        common::Summary::of(&values).p50
    };
    let max = |field: &str| {
        runs.iter()
            .filter_map(|r| r[field].as_u64())
            .max()
            .unwrap_or(0)
    };
    let min = |field: &str| {
        runs.iter()
            .filter_map(|r| r[field].as_u64())
            .min()
            .unwrap_or(0)
    };
    let mut result = json!({
        "calls": median("calls"),
        "calls_max": max("calls"),
        "reuse_rejections_max": max("reuse_rejections"),
        "fresh_min": min("fresh"),
        "all_fresh_ms": {
            "p50": median("all_fresh_ms"),
            "min": runs.iter().filter_map(|r| r["all_fresh_ms"].as_f64()).fold(f64::NAN, f64::min),
            "max": runs.iter().filter_map(|r| r["all_fresh_ms"].as_f64()).fold(f64::NAN, f64::max),
        },
        "median_process_ms": median("median_process_ms"),
        "runs": runs,
    });
    if runs.iter().any(|r| r.get("mirrors_updated").is_some()) {
        result["mirrors_updated_min"] = json!(min("mirrors_updated"));
    }
    result
}

fn p50(row: &Value, variant: &str, field: &str) -> f64 {
    row[variant][field]["p50"].as_f64().unwrap_or(f64::NAN)
}

fn header() -> Vec<String> {
    [
        "N",
        "calls pg/file",
        "reused pg/file",
        "fresh pg/file",
        "mirrors",
        "all fresh: pg",
        "file",
        "pg/file",
        "file, pre-started",
        "no refresh: pg",
        "file",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn table_row(row: &Value) -> Vec<String> {
    let n = row["processes"].as_u64().unwrap_or(0);
    let pair = |field: &str| format!("{} / {}", row["postgres"][field], row["file"][field]);
    let ms = |variant: &str| common::nanos(p50(row, variant, "all_fresh_ms") * 1e6);
    vec![
        n.to_string(),
        pair("calls_max"),
        pair("reuse_rejections_max"),
        format!(
            "{}/{n} / {}/{n}",
            row["postgres"]["fresh_min"], row["file"]["fresh_min"]
        ),
        format!("{}/{n}", row["postgres"]["mirrors_updated_min"]),
        ms("postgres"),
        ms("file"),
        format!(
            "{:.2}x",
            row["ratio_all_fresh_pg_over_file"]
                .as_f64()
                .unwrap_or(f64::NAN)
        ),
        ms("file_prestarted"),
        ms("postgres_fresh"),
        ms("file_fresh"),
    ]
}
