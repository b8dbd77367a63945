//! Refresh amplification: N processes (real processes of the real binary) find one stale token
//! at the same moment. How many token-endpoint calls does that cost, how many are refused as
//! reuse, how many sessions are forced to log in again, and how long until every process holds
//! a fresh token (or has failed)? For N = 1, 2, 4, ..., 64 and the three strategies of the demo.
//!
//! `cargo bench --bench amplification` (add `-- --quick` for N ≤ 16 and one repetition, which
//! leaves the plots alone; `-- --plot` only redraws `benches/results/*.svg` from the last
//! results).
// Unix only (processes, CLOCK_MONOTONIC, flock, a PostgreSQL cluster); elsewhere empty.
#![cfg_attr(not(unix), no_main)]
#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::Duration;

use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use common::protocol::{Launch, Mode, Strategy};
use common::svg::{Chart, Series};
use serde_json::{Value, json};

const STRATEGIES: [Strategy; 3] = Strategy::ALL;

fn main() {
    let Some(options) = common::options("amplification") else {
        return;
    };
    if options.plot {
        match plot() {
            Ok(()) => {}
            Err(message) => {
                eprintln!("amplification: {message}");
                std::process::exit(1);
            }
        }
        return;
    }
    let sizes: &[usize] = if options.quick {
        &[1, 2, 4, 8, 16]
    } else {
        &[1, 2, 4, 8, 16, 32, 64]
    };
    let repeats = if options.quick { 1 } else { 3 };
    common::print_machine();
    println!("N processes find one stale token at once; {repeats} run(s) each, medians shown\n");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the token authority");
    let logs = common::scratch_dir("amplification-logs-");

    let mut rows = vec![header()];
    let mut results = Vec::new();
    for strategy in STRATEGIES {
        for &n in sizes {
            let runs: Vec<Value> = (0..repeats)
                .map(|_| run_once(&runtime, strategy, n, logs.path()))
                .collect();
            let result = aggregate(strategy, n, &runs);
            rows.push(row(&result));
            results.push(result);
        }
    }
    common::print_table(&rows);
    common::write_results("amplification", options, json!(results));
    if options.quick {
        // The committed plots come from full runs; `-- --plot` draws these anyway.
        println!("quick run: plots not redrawn (cargo bench --bench amplification -- --plot does)");
    } else if let Err(message) = plot() {
        eprintln!("amplification: {message}");
    }
}

/// One run: a fresh authority and home, a login whose access token is already stale, N workers
/// asking once.
fn run_once(runtime: &tokio::runtime::Runtime, strategy: Strategy, n: usize, logs: &Path) -> Value {
    let simulator = runtime
        .block_on(Simulator::start(SimulatorConfig {
            family_revocation: true,
            access_token_lifetime: Duration::from_secs(3600),
            ..SimulatorConfig::default()
        }))
        .expect("the token authority starts");
    let home = common::scratch_dir("amplification-home-");
    // 60 s left: stale for a 5-minute refresh window. Refreshed tokens live an hour.
    simulator.set_access_token_lifetime(Duration::from_secs(60));
    let login = simulator.auth_json(&Identity::new("acct-bench", "user-bench"));
    simulator.set_access_token_lifetime(Duration::from_secs(3600));
    std::fs::write(home.path().join("auth.json"), login.to_string()).expect("login written");

    let launch = Launch {
        refresh_window_ms: 300_000,
        ..Launch::new(strategy, Mode::Once)
    };
    let (go, reports) = common::run_workers(n, home.path(), &simulator.token_url(), &launch, logs);
    let stats = simulator.stats();
    runtime.block_on(simulator.shutdown());

    let done = common::done_ms(go, &reports);
    let fresh = reports.iter().filter(|r| r.fresh_at_end).count();
    json!({
        "calls": stats.refresh_calls,
        "successful": stats.successful_refreshes,
        "reuse_rejections": stats.reuse_rejections,
        "rejected": stats.rejected_refreshes,
        "families_revoked": stats.families_revoked,
        "forced_relogins": common::sum(&reports, |r| r.forced_relogins),
        "fresh_sessions": fresh,
        "settled_ms": done.iter().copied().fold(0.0, f64::max),
        "median_session_ms": common::Summary::of(&done).p50,
    })
}

/// Medians over the runs (counts vary between runs for the baselines: the race is a race).
fn aggregate(strategy: Strategy, n: usize, runs: &[Value]) -> Value {
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
    json!({
        "strategy": strategy.name(),
        "processes": n,
        "calls": median("calls"),
        "calls_max": max("calls"),
        "reuse_rejections": median("reuse_rejections"),
        "reuse_rejections_max": max("reuse_rejections"),
        "rejected": median("rejected"),
        "forced_relogins": median("forced_relogins"),
        "fresh_sessions": median("fresh_sessions"),
        "settled_ms": median("settled_ms"),
        "median_session_ms": median("median_session_ms"),
        "runs": runs,
    })
}

fn header() -> Vec<String> {
    [
        "strategy",
        "N",
        "endpoint calls",
        "(max)",
        "reused",
        "rejected",
        "forced re-login",
        "fresh",
        "all settled",
        "median session",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn row(result: &Value) -> Vec<String> {
    let f = |field: &str| result[field].as_f64().unwrap_or(f64::NAN);
    vec![
        result["strategy"].as_str().unwrap_or("?").to_owned(),
        result["processes"].to_string(),
        format!("{}", f("calls")),
        result["calls_max"].to_string(),
        format!("{}", f("reuse_rejections")),
        format!("{}", f("rejected")),
        format!("{}", f("forced_relogins")),
        format!("{}/{}", f("fresh_sessions"), result["processes"]),
        common::nanos(f("settled_ms") * 1e6),
        common::nanos(f("median_session_ms") * 1e6),
    ]
}

/// Redraws `benches/results/amplification.svg` and `latency.svg` from the last results.
fn plot() -> Result<(), String> {
    let document = common::read_results("amplification")?;
    let results = document["results"]
        .as_array()
        .ok_or("the results hold no array")?;
    let colors = ["#d62728", "#ff7f0e", "#2ca02c"];
    let series = |field: &str| -> Vec<Series> {
        STRATEGIES
            .iter()
            .zip(colors)
            .map(|(strategy, color)| Series {
                name: strategy.name().to_owned(),
                color,
                dashed: false,
                points: results
                    .iter()
                    .filter(|r| r["strategy"] == strategy.name())
                    .filter_map(|r| Some((r["processes"].as_f64()?, r[field].as_f64()?)))
                    .collect(),
            })
            .collect()
    };
    let sizes: Vec<f64> = results
        .iter()
        .filter_map(|r| r["processes"].as_f64())
        .collect();
    let mut calls = series("calls");
    calls.insert(
        0,
        Series {
            name: "ideal: 1".into(),
            color: "#777777",
            dashed: true,
            points: sizes.iter().map(|&n| (n, 1.0)).collect(),
        },
    );
    let machine = &document["machine"];
    let subtitle = format!(
        "{} CPUs, {}",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("unknown CPU")
    );
    let charts = [
        (
            "amplification.svg",
            Chart {
                title: "Token-endpoint calls when N processes find one stale token".into(),
                x_label: format!("processes (N)  ·  {subtitle}"),
                y_label: "token-endpoint calls (median of runs)".into(),
                log_x: true,
                log_y: true,
                series: calls,
            },
        ),
        (
            "latency.svg",
            Chart {
                title: "Time until every process holds a fresh token or has failed".into(),
                x_label: format!("processes (N)  ·  {subtitle}"),
                y_label: "milliseconds after the start signal (median of runs)".into(),
                log_x: true,
                log_y: true,
                series: series("settled_ms"),
            },
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, chart) in charts {
        let path = dir.join(name);
        std::fs::write(&path, chart.render())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("plot written to {}", path.display());
    }
    Ok(())
}
