//! Forced-refresh throughput with N contending processes against the serial limit. The same
//! number of forced refreshes (`AuthManager::force_refresh`, each a whole transaction: lock,
//! re-read, token request, durable write) is made by one process back to back (the serial
//! limit), then split over N processes of the real binary that contend for the lock. Every
//! run also checks exactly-once spending: as many token-endpoint calls as refreshes, every
//! presented refresh token distinct, no reuse.
//!
//! `cargo bench --bench force_throughput` (add `-- --quick` for fewer refreshes and runs).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use authstore::simulator::{Identity, Simulator, SimulatorConfig};
use serde_json::{Value, json};

fn main() {
    let Some(options) = common::options("force_throughput") else {
        return;
    };
    common::print_machine();
    let total: usize = if options.quick { 96 } else { 480 };
    let sizes: &[usize] = if options.quick {
        &[1, 4, 16]
    } else {
        &[1, 2, 4, 8, 16]
    };
    let repeats = if options.quick { 1 } else { 3 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the token authority");
    let logs = common::scratch_dir("force-logs-");
    println!(
        "{total} forced refreshes per run, split over N processes; {repeats} run(s), medians\n"
    );

    let mut results = Vec::new();
    for &n in sizes {
        let runs: Vec<Value> = (0..repeats)
            .map(|_| run_once(&runtime, n, total, logs.path()))
            .collect();
        let per_second: Vec<f64> = runs
            .iter()
            .filter_map(|r| r["per_second"].as_f64())
            .collect();
        let median = common::Summary::of(&per_second).p50;
        results.push(json!({
            "processes": n,
            "refreshes": total,
            "per_second": median,
            "runs": runs,
        }));
    }
    let serial = results[0]["per_second"].as_f64().unwrap_or(f64::NAN);
    let mut table = vec![
        [
            "processes",
            "refreshes",
            "refreshes/s",
            "vs serial",
            "per refresh",
            "endpoint calls",
            "reused",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for result in &mut results {
        let rate = result["per_second"].as_f64().unwrap_or(f64::NAN);
        result["vs_serial"] = json!(rate / serial);
        let runs = result["runs"].as_array().cloned().unwrap_or_default();
        let calls: u64 = runs
            .iter()
            .filter_map(|r| r["calls"].as_u64())
            .max()
            .unwrap_or(0);
        let reused: u64 = runs
            .iter()
            .filter_map(|r| r["reuse_rejections"].as_u64())
            .sum();
        let n = result["processes"].as_u64().unwrap_or(0);
        table.push(vec![
            if n == 1 {
                "1 (serial limit)".to_owned()
            } else {
                n.to_string()
            },
            total.to_string(),
            format!("{rate:.0}"),
            format!("{:.0}%", 100.0 * rate / serial),
            common::nanos(1e9 / rate),
            calls.to_string(),
            reused.to_string(),
        ]);
    }
    common::print_table(&table);
    let at_16 = results
        .iter()
        .find(|r| r["processes"] == 16)
        .and_then(|r| r["vs_serial"].as_f64());
    if let Some(ratio) = at_16 {
        println!(
            "\n16 processes reach {:.0}% of the serial limit (target: at least 90%): {}",
            100.0 * ratio,
            if ratio >= 0.9 { "met" } else { "MISSED" }
        );
    }
    common::write_results(
        "force_throughput",
        options,
        json!({
            "refreshes_per_run": total,
            "serial_per_second": serial,
            "by_processes": results,
            "ratio_at_16": at_16,
            "target_met": at_16.map(|r| r >= 0.9),
        }),
    );
}

fn run_once(
    runtime: &tokio::runtime::Runtime,
    n: usize,
    total: usize,
    logs: &std::path::Path,
) -> Value {
    let simulator = runtime
        .block_on(Simulator::start(SimulatorConfig {
            family_revocation: true,
            access_token_lifetime: Duration::from_secs(3600),
            ..SimulatorConfig::default()
        }))
        .expect("the token authority starts");
    let home = common::scratch_dir("force-home-");
    let login = simulator.auth_json(&Identity::new("acct-bench", "user-bench"));
    std::fs::write(home.path().join("auth.json"), login.to_string()).expect("login written");
    let args: Vec<String> = vec![
        "--strategy=coordinated".into(),
        "--mode=force".into(),
        format!("--count={}", total / n),
    ];
    let (go, reports) = common::run_workers(n, home.path(), &simulator.token_url(), &args, logs);
    let stats = simulator.stats();
    let presented = simulator.presented_refresh_tokens();
    runtime.block_on(simulator.shutdown());

    let distinct: HashSet<&String> = presented.iter().collect();
    let refreshes = common::sum(&reports, "served");
    assert_eq!(
        common::sum(&reports, "failed"),
        0,
        "a forced refresh failed"
    );
    assert_eq!(refreshes as usize, total, "every forced refresh was made");
    assert_eq!(stats.refresh_calls as usize, total, "one call per refresh");
    assert_eq!(
        distinct.len(),
        presented.len(),
        "every refresh token spent once"
    );
    assert_eq!(stats.reuse_rejections, 0);
    let end = reports
        .iter()
        .filter_map(|r| r["done_at_unix_ns"].as_u64())
        .max()
        .unwrap_or(go);
    let seconds = end.saturating_sub(go) as f64 / 1e9;
    json!({
        "seconds": seconds,
        "per_second": total as f64 / seconds,
        "calls": stats.refresh_calls,
        "reuse_rejections": stats.reuse_rejections,
    })
}
