//! `authstore agent`: keeps the credentials fresh ahead of the window in which Codex refreshes,
//! so that Codex processes never call the token endpoint themselves.
//!
//! Codex calls the token endpoint before it takes its lock: N Codex processes that find one
//! stale token make N calls, and N−1 are rejected as reused. With the agent refreshing (through
//! the transaction, on the file store or a shared store mirrored into the local `auth.json`)
//! before Codex's 5-minute window opens, Codex never finds a stale token.
//!
//! What it cannot pre-empt (an editor asking for a forced refresh, a 401, a machine that slept
//! through the window) `--broker` covers: the active agent is then also the home's token
//! endpoint ([`broker`](super::broker)), and its own refreshes go to the upstream.

use std::io::Write;
use std::time::{Duration, SystemTime};

use authstore::document::{Freshness, format_timestamp};
use authstore::error::{Error, ErrorKind};
use authstore::store::{ActiveAgent, FileStore};
use authstore::{AuthEvent, ManagerOptions};
use serde_json::json;

use super::{Cli, exit, when};

pub(crate) mod service;
mod wake;

/// Codex refreshes when its access token has less than this left.
const CODEX_WINDOW: Duration = Duration::from_secs(300);
/// `--ahead` when not given, for the agent and for the service that runs it.
pub(crate) const DEFAULT_AHEAD_SECS: u64 = 600;
/// The longest sleep between looks at a store that cannot be watched (a shared store, a
/// directory without a watch, the keyring on macOS and Windows or without its signals), so that
/// logins, logouts and changes are seen.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// The longest sleep between looks at a watched store (`auth.json` under a directory watch, the
/// keyring item under the Secret Service's signals), whose changes wake the agent anyway: only a
/// safety net, a few wake-ups an hour.
const MAX_SLEEP_WATCHED: Duration = Duration::from_secs(15 * 60);
/// The longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    /// The user-service commands; without one, this process is the agent
    #[command(subcommand)]
    pub(crate) service: Option<service::Command>,

    /// Refresh when the access token has less than this many seconds left (more than Codex's
    /// 300, so that Codex never finds it stale)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_AHEAD_SECS)]
    ahead: u64,

    /// One JSON object per line: {"time","event",...}
    #[arg(long)]
    json: bool,

    /// Also be this home's token endpoint (`authstore broker`), once this agent is the active
    /// one: point CODEX_REFRESH_TOKEN_URL_OVERRIDE at it
    #[arg(long)]
    broker: bool,

    #[command(flatten)]
    broker_options: super::broker::Options,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    warn_if_inside_codex_window(args.ahead);
    let ahead = Duration::from_secs(args.ahead);
    let freshness = Freshness {
        refresh_window: ahead,
        ..Freshness::default()
    };
    let manager = if args.broker {
        // The agent's own refreshes go to the upstream too: the session's token URL is the
        // broker, which is this process.
        let config = args.broker_options.store_config(cli)?;
        config
            .manager(ManagerOptions::default().freshness(freshness))
            .await?
    } else {
        cli.manager_with(|options| options.freshness(freshness))
            .await?
    };
    let mut report = Reporter { json: args.json };
    report.line(
        "started",
        json!({"location": manager.location().to_string(), "ahead_secs": args.ahead}),
    );
    let mut events = manager.subscribe();
    // One listener for the whole run, installed before the first refresh, so that a signal that
    // arrives mid-refresh is not lost; the refresh in progress finishes (cancelling it could lose
    // a token the authority already rotated) and the agent stops right after.
    let (stop_sender, mut stop) = tokio::sync::watch::channel(false);
    let signalled = shutdown_signal();
    tokio::spawn(async move {
        signalled.await;
        let _ = stop_sender.send(true);
    });
    // One active agent per local home (with --store too: the lock is the home's). A second agent
    // waits as a standby, in the kernel's lock call, and takes over when the first stops or dies.
    let home = cli.file_store()?;
    let mut active = if cli.unlocked {
        eprintln!(
            "authstore: warning: --unlocked: this agent takes no agent lock, so another agent on this home is not excluded"
        );
        None
    } else {
        let agent = match try_become_agent(&home).await? {
            Some(agent) => agent,
            None => {
                report.line(
                    "standby",
                    json!({
                        "active_pid": home.active_agent().map(|agent| agent.pid),
                        "lock": home.agent_lock_path().display().to_string(),
                    }),
                );
                tokio::select! {
                    agent = home.become_agent() => agent?,
                    _ = stop.changed() => {
                        report.line("stopped", json!({}));
                        return Ok(exit::SUCCESS);
                    }
                }
            }
        };
        report.line(
            "active",
            json!({"pid": agent.presence().pid, "since": format_timestamp(agent.presence().since)}),
        );
        Some(agent)
    };
    // The token endpoint, once this agent is the active one (a standby must not hold the port:
    // it could answer nothing a running broker would not).
    let _broker = if args.broker {
        let listening = super::broker::listen(&args.broker_options).await?;
        report.line("broker", json!({"url": listening.url()}));
        let broker =
            super::broker::Broker::new(manager.clone(), &args.broker_options, Some(home.home()))
                .await?;
        Some(super::broker::AbortOnDrop(tokio::spawn(
            broker.serve(listening),
        )))
    } else {
        None
    };
    let mut alarm = wake::Alarm::start();
    let mut backoff = wake::Backoff::default();
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some(jump) = alarm.jumped() {
            report_jump(&mut report, jump, &mut backoff);
        }
        // Taken before the look: a change made during it (by anyone) ends the next wait at once.
        let mark = manager.change_mark();
        // Changes wake the agent only when they are pushed to it; a store that is looked at
        // instead is looked at on the agent's own (shorter) schedule.
        let watching = manager.is_watching();
        let longest = if watching {
            MAX_SLEEP_WATCHED
        } else {
            MAX_SLEEP
        };
        let wait = match manager.auth().await {
            Ok(snapshot) => {
                backoff.reset();
                while let Ok(event) = events.try_recv() {
                    report_event(&mut report, &event, snapshot.expires_at());
                }
                next_check(snapshot.expires_at(), ahead, longest)
            }
            Err(error) => {
                while events.try_recv().is_ok() {}
                let wait = match error.kind() {
                    // Waiting for someone to log in (again): the watch says when; without one,
                    // look every few seconds.
                    ErrorKind::NotLoggedIn if watching => longest,
                    ErrorKind::NotLoggedIn => Duration::from_secs(2),
                    ErrorKind::ReloginRequired(_) => {
                        manager.reset();
                        if watching {
                            longest
                        } else {
                            Duration::from_secs(5)
                        }
                    }
                    // The authority or the store is down for now: back off, bounded, unless
                    // the token Codex reads is inside Codex's own window.
                    _ => {
                        let codex_expiry = match manager.local_file() {
                            Some(file) => file
                                .read()
                                .await
                                .ok()
                                .flatten()
                                .and_then(|d| d.expires_at()),
                            None => None,
                        };
                        backoff.after_failure(codex_expiry, SystemTime::now())
                    }
                };
                report.line(
                    "waiting",
                    json!({"reason": error.report().to_string(), "retry_in_secs": wait.as_secs_f64()}),
                );
                wait
            }
        };
        // The sandboxes follow every change of the host's login the look saw or made.
        match super::sandbox::follow_host(home.home(), manager.store()).await {
            Ok(done) => report_sandboxes(&mut report, &done),
            Err(error) => report.line("sandboxes", json!({"error": error.report().to_string()})),
        }
        let deadline = SystemTime::now() + wait;
        if let Some(agent) = active.as_mut() {
            agent.set_next_check(Some(deadline));
        }
        tokio::select! {
            // In this order: a jump the alarm sees when armed is reported before anything else.
            biased;
            // The deadline on the wall clock, or a wake from suspend or a clock set before it.
            jump = alarm.until(deadline) => {
                if let Some(jump) = jump {
                    report_jump(&mut report, jump, &mut backoff);
                }
            }
            _ = stop.changed() => {}
            // Another process logged in, out, or wrote new tokens.
            () = manager.changed(&mark), if watching => {}
        }
    }
    report.line("stopped", json!({}));
    Ok(exit::SUCCESS)
}

fn report_sandboxes(report: &mut Reporter, done: &authstore::sandboxes::FreshnessReport) {
    if done.written.is_empty() && done.logged_out.is_empty() && done.skipped.is_empty() {
        return;
    }
    let skipped: Vec<_> = done
        .skipped
        .iter()
        .map(|(name, why)| json!({"name": name, "why": why}))
        .collect();
    report.line(
        "sandboxes",
        json!({"written": done.written, "logged_out": done.logged_out, "skipped": skipped}),
    );
}

fn report_jump(report: &mut Reporter, jump: wake::ClockJump, backoff: &mut wake::Backoff) {
    report.line("clock_jumped", json!({"by_secs": jump.signed_secs()}));
    // A wake earns the one-second retries again: the network is coming back.
    backoff.reset();
}

/// An agent that refreshes only inside Codex's own window leaves Codex refreshing too: said by
/// the agent and by `agent install`.
pub(crate) fn warn_if_inside_codex_window(ahead_secs: u64) {
    if Duration::from_secs(ahead_secs) <= CODEX_WINDOW {
        eprintln!(
            "authstore: warning: --ahead {ahead_secs} is not more than Codex's own window (300 s): Codex may still refresh"
        );
    }
}

/// Becomes the home's active agent unless another agent is: a reader (`status`) that probes the
/// agent lock with a shared try-lock makes a claim fail for a moment with nobody active, which
/// must not turn this agent into a standby.
async fn try_become_agent(home: &FileStore) -> Result<Option<ActiveAgent>, Error> {
    for _ in 0..10 {
        if let Some(agent) = home.try_become_agent()? {
            return Ok(Some(agent));
        }
        if home.active_agent().is_some() {
            return Ok(None);
        }
        // Held, yet no agent describes itself: a probe, or an agent microseconds from writing
        // its note. Either is over in well under this.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(None)
}

/// When to look again: when the token enters the agent's window, but at least a second from now
/// (a token whose whole life is shorter than the window is refreshed at half its remaining life,
/// not in a loop) and at most `longest`.
fn next_check(expires_at: Option<SystemTime>, ahead: Duration, longest: Duration) -> Duration {
    let Some(remaining) = expires_at.and_then(|exp| exp.duration_since(SystemTime::now()).ok())
    else {
        return Duration::from_secs(1);
    };
    let until_window = remaining.checked_sub(ahead).unwrap_or(remaining / 2);
    until_window.clamp(Duration::from_secs(1), longest)
}

fn report_event(report: &mut Reporter, event: &AuthEvent, expires_at: Option<SystemTime>) {
    let name = match event {
        AuthEvent::Refreshed => "refreshed",
        AuthEvent::Adopted => "adopted",
        AuthEvent::LoggedIn => "logged_in",
        AuthEvent::LoggedOut => "logged_out",
        AuthEvent::IdentityChanged => "identity_changed",
    };
    report.line(name, json!({"expires_at": when(expires_at)}));
}

/// Listens for SIGINT and SIGTERM from now on (the handlers are installed before this returns)
/// and resolves on the first of them.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Writes one line per event to stdout, as text or JSON. Never a token.
struct Reporter {
    json: bool,
}

impl Reporter {
    fn line(&mut self, event: &str, mut fields: serde_json::Value) {
        let time = format_timestamp(SystemTime::now());
        let line = if self.json {
            fields["time"] = time.into();
            fields["event"] = event.into();
            fields.to_string()
        } else {
            let details = fields
                .as_object()
                .map(|map| {
                    map.iter()
                        .map(|(k, v)| match v.as_str() {
                            Some(text) => format!("{k}={text}"),
                            None => format!("{k}={v}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            format!("{time} {event} {details}").trim_end().to_owned()
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    }
}
