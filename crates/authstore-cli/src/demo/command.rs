//! `authstore demo`: the race between processes sharing one auth.json under three strategies,
//! side by side, on the embedded token authority (see [`crate::demo`]); and the hidden
//! `authstore demo-worker`, one session of the demo run as its own process.

use std::ffi::OsString;
use std::time::Duration;

use authstore::authority::AuthorityConfig;
use authstore::document::Freshness;
use authstore::error::Error;

use crate::demo::{self, Launch, Strategy};
use crate::{Cli, exit, seconds};

/// How long before expiry the demo's tokens count as stale, for every strategy alike.
const REFRESH_WINDOW: Duration = Duration::from_millis(500);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Worker processes per strategy, each a long-lived session asking for credentials
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    processes: u32,

    /// Seconds each strategy runs
    #[arg(long, value_name = "SECS", default_value_t = 12.0)]
    duration: f64,

    /// Lifetime of the access tokens the authority issues, in whole seconds (they count as
    /// stale 0.5 s before they expire)
    #[arg(long, value_name = "SECS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    token_lifetime: u64,

    /// Print the figures as one JSON object instead of a table
    #[arg(long)]
    json: bool,
}

/// One session of the demo (or of a benchmark), as its own process. Not for humans: its
/// arguments and its messages on stdio are `crate::demo::protocol`, shared with the benchmarks.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    launch: Launch,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let duration = seconds("--duration", args.duration)?;
    if duration.is_zero() {
        return Err(Error::invalid_input(
            "--duration 0: expected a positive number of seconds",
        ));
    }
    // Lock and request timeouts apply to the workers; the demo runs on its own temporary homes
    // and its own authority, so neither the home nor a store carries over.
    let worker_options: Vec<OsString> = cli
        .global_args(None, None, false)
        .into_iter()
        .map(OsString::from)
        .collect();
    let settings = demo::Settings {
        processes: args.processes,
        duration,
        token_lifetime: Duration::from_secs(args.token_lifetime),
        refresh_window: REFRESH_WINDOW,
        pause: (Duration::from_millis(1), Duration::from_millis(5)),
        worker_options,
        strategies: Strategy::ALL.to_vec(),
        progress: !args.json,
    };
    let summary = match demo::run(&settings).await {
        Ok(summary) => summary,
        Err(message) => {
            eprintln!("authstore demo: {message}");
            return Ok(exit::OTHER);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("authstore demo: cannot encode the figures: {error}");
                return Ok(exit::OTHER);
            }
        }
    } else {
        print!("\n{}", summary.table());
    }
    if summary.ok {
        Ok(exit::SUCCESS)
    } else {
        eprintln!("authstore demo: {}", summary.verdict);
        Ok(exit::OTHER)
    }
}

pub(crate) async fn run_worker(cli: &Cli, args: &WorkerArgs) -> Result<u8, Error> {
    let args = &args.launch;
    if args.pause_min_us > args.pause_max_us {
        return Err(Error::invalid_input(
            "--pause-min-us must not exceed --pause-max-us",
        ));
    }
    // An internal command: it never runs on the user's own Codex home, nor against a token
    // endpoint that is not on this machine.
    let Some(home) = cli.codex_home.clone() else {
        return Err(Error::invalid_input(
            "demo-worker is internal to `authstore demo` and needs an explicit --codex-home",
        ));
    };
    let authority = AuthorityConfig::from_env()
        .request_timeout(seconds("--request-timeout", cli.request_timeout)?);
    let urls = [Some(authority.url()), args.login_url.as_deref()];
    if let Some(url) = urls
        .into_iter()
        .flatten()
        .find(|url| !authstore::authority::is_loopback_url(url))
    {
        return Err(Error::invalid_input(format!(
            "demo-worker only talks to a token authority on this machine, not {url}"
        )));
    }
    let env = demo::WorkerEnv {
        home,
        store: cli.store_options()?,
        authority,
    };
    let config = demo::WorkerConfig {
        strategy: args.strategy,
        mode: args.mode,
        duration: seconds("--duration", args.duration)?,
        count: args.count,
        freshness: Freshness {
            refresh_window: Duration::from_millis(args.refresh_window_ms),
            ..Freshness::default()
        },
        pause: (
            Duration::from_micros(args.pause_min_us),
            Duration::from_micros(args.pause_max_us),
        ),
        login_url: args.login_url.clone(),
        watch: !args.no_watch,
    };
    match demo::run_worker(env, config).await {
        Ok(()) => Ok(exit::SUCCESS),
        Err(message) => {
            eprintln!("authstore demo-worker: {message}");
            Ok(exit::OTHER)
        }
    }
}
