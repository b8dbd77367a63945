//! `authstore sandbox add|list|remove`: access-only Codex homes for containers, VMs and per-task
//! sandboxes (SPEC §9, [`authstore::sandboxes`]). A sandbox's `auth.json` holds the host's
//! access and id tokens and a secret of its own instead of the refresh token; the agent rewrites
//! it after every refresh of the host ([`follow_host`]), and the broker answers its refreshes.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use authstore::AuthManager;
use authstore::error::Error;
use authstore::sandboxes::{FreshnessReport, Registry, Sandbox};
use authstore::store::Store;
use serde_json::json;

use super::{Cli, broker, exit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Make the sandbox NAME (or log it in again): a directory whose auth.json Codex accepts,
    /// holding the host's access token and a secret of its own instead of the refresh token
    Add {
        /// 1 to 64 letters, digits, '.', '_' or '-'
        name: String,
        /// Its directory [default: sandboxes/NAME in the Codex home]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The broker's token URL as the sandbox's Codex reaches it (printed for
        /// CODEX_REFRESH_TOKEN_URL_OVERRIDE) [default: the broker's default loopback address]
        #[arg(long, value_name = "URL")]
        broker_url: Option<String>,
        /// Print {"name", "dir", "env"} as JSON
        #[arg(long)]
        json: bool,
    },
    /// List the sandboxes of this Codex home (never a secret)
    List {
        /// One JSON array
        #[arg(long)]
        json: bool,
    },
    /// Remove the sandbox NAME: its secret is refused from now on, so that its Codex is told to
    /// log in again at its next refresh; its directory is left as it is
    Remove {
        /// The sandbox's name
        name: String,
    },
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let home = cli.file_store()?;
    let registry = Registry::in_home(home.home());
    match &args.command {
        Command::Add {
            name,
            dir,
            broker_url,
            json,
        } => {
            authstore::sandboxes::validate_name(name)?;
            // Fresh host tokens first (refreshed through the transaction when stale), so that
            // the sandbox starts with a token well outside Codex's window.
            let manager = cli.manager().await?;
            let snapshot = manager.auth().await?;
            let (sandbox, _secret) = registry
                .add(name, dir.as_deref(), snapshot.document(), SystemTime::now())
                .await?;
            let url = broker_url.clone().unwrap_or_else(|| {
                format!("http://{}{}", broker::DEFAULT_LISTEN, broker::TOKEN_PATH)
            });
            let dir = sandbox.dir.display().to_string();
            if *json {
                println!(
                    "{}",
                    json!({
                        "name": sandbox.name,
                        "dir": dir,
                        "env": {"CODEX_HOME": dir, "CODEX_REFRESH_TOKEN_URL_OVERRIDE": url},
                    })
                );
            } else {
                println!(
                    "sandbox {}: {dir}/auth.json (no refresh token of the host's in it)",
                    sandbox.name
                );
                println!(
                    "run Codex there with CODEX_HOME={dir} CODEX_REFRESH_TOKEN_URL_OVERRIDE={url}"
                );
                println!("keep it fresh with `authstore agent --broker` on the host");
            }
            Ok(exit::SUCCESS)
        }
        Command::List { json } => {
            let sandboxes = registry.list()?;
            if *json {
                let list: Vec<_> = sandboxes.iter().map(describe).collect();
                println!("{}", serde_json::Value::Array(list));
            } else if sandboxes.is_empty() {
                println!(
                    "no sandboxes ({} does not list any)",
                    registry.path().display()
                );
            } else {
                for sandbox in &sandboxes {
                    let state = if sandbox.is_logged_in() {
                        "logged in "
                    } else {
                        "logged out"
                    };
                    println!("{:<24} {state}  {}", sandbox.name, sandbox.dir.display());
                }
            }
            Ok(exit::SUCCESS)
        }
        Command::Remove { name } => match registry.remove(name).await? {
            Some(sandbox) => {
                println!(
                    "removed sandbox {}: its secret is refused from now on (Codex there is told to \
                     log in again at its next refresh); {} is left as it is",
                    sandbox.name,
                    sandbox.dir.display()
                );
                Ok(exit::SUCCESS)
            }
            None => Err(Error::invalid_input(format!(
                "no sandbox named {name} in {} (`authstore sandbox list` shows them)",
                registry.path().display()
            ))),
        },
    }
}

fn describe(sandbox: &Sandbox) -> serde_json::Value {
    let created = UNIX_EPOCH + std::time::Duration::from_millis(sandbox.created_at);
    json!({
        "name": sandbox.name,
        "dir": sandbox.dir.display().to_string(),
        "logged_in": sandbox.is_logged_in(),
        "created_at": authstore::document::format_timestamp_seconds(created),
    })
}

/// Brings the home's sandboxes in line with the login the host's store (`host`: the file, the
/// keyring, a shared store) holds now: after a refresh or an adopted login of the same account
/// and user, their tokens; after a logout or a login of another identity, logged out. Nothing
/// to do (and nothing read but one `stat`) for a home without sandboxes. Returns what it did,
/// for the agent's report.
pub(crate) async fn follow_host(home: &Path, host: &dyn Store) -> Result<FreshnessReport, Error> {
    let registry = Registry::in_home(home);
    if !registry.path().exists() {
        return Ok(FreshnessReport::default());
    }
    // A broken host login says nothing about who is logged in (an error: the sandboxes are left
    // be).
    let host = host.read().await?;
    registry.keep_fresh(host.as_ref(), SystemTime::now()).await
}

/// After `login` or `logout` changed the host's login (through `manager`): the sandboxes follow
/// at once (without waiting for the agent), and stderr says which were logged out. A failure
/// here is a warning: the host's change is done, and the agent brings them in line when it next
/// looks.
pub(crate) async fn after_host_change(cli: &Cli, manager: &AuthManager) {
    let Ok(home) = cli.file_store() else { return };
    match follow_host(home.home(), manager.store()).await {
        Ok(report) => {
            if !report.logged_out.is_empty() {
                eprintln!(
                    "authstore: logged out the sandboxes {}",
                    report.logged_out.join(", ")
                );
            }
            for (name, why) in &report.skipped {
                eprintln!("authstore: warning: sandbox {name} not updated: {why}");
            }
        }
        Err(error) => eprintln!(
            "authstore: warning: the sandboxes were not updated: {}",
            error.report()
        ),
    }
}
