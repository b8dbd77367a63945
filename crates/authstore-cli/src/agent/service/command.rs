//! The service subcommands themselves: `agent install` (or `--print`), `agent uninstall`,
//! `agent status`, for the service manager of this platform or the one `--service` names.

use std::io::Write;

use authstore::error::Error;
use authstore::store::AgentPresence;
use serde_json::Value;

use super::{AgentCommand, BrokerService, Homes, Kind, launchd, systemd, windows};
use crate::agent::{DEFAULT_AHEAD_SECS, warn_if_inside_codex_window};
use crate::broker::probe::TokenUrl;
use crate::{Cli, exit};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Install the agent as a user service that starts at login and restarts when it fails,
    /// running with the global options and --ahead given here
    Install(InstallArgs),
    /// Stop, disable and remove the user service (and its store file)
    Uninstall(ServiceArg),
    /// Whether the user service is installed, enabled and running
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    service: ServiceArg,

    /// Write the service definition to stdout and change nothing
    #[arg(long)]
    print: bool,

    /// The agent's --ahead: refresh when fewer than this many seconds are left
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_AHEAD_SECS)]
    ahead: u64,

    /// Also make the agent this user's Codex token endpoint (`agent --broker`): a broker on a
    /// fixed loopback port, held by the service manager where it can (socket activation), and
    /// CODEX_REFRESH_TOKEN_URL_OVERRIDE set for the user's session
    #[arg(long)]
    broker: bool,

    /// The broker's address
    #[arg(long, value_name = "ADDR:PORT", default_value = crate::broker::DEFAULT_LISTEN, requires = "broker")]
    listen: std::net::SocketAddr,

    /// The real token endpoint behind the broker [default: AUTHSTORE_UPSTREAM_TOKEN_URL, else
    /// CODEX_REFRESH_TOKEN_URL_OVERRIDE when it is set and not the broker, else Codex's]
    #[arg(long, value_name = "URL", requires = "broker")]
    upstream: Option<String>,
}

impl InstallArgs {
    /// The broker the service runs, when `--broker` was given.
    fn broker(&self) -> Result<Option<BrokerService>, Error> {
        if !self.broker {
            return Ok(None);
        }
        if !self.listen.ip().is_loopback() {
            return Err(Error::invalid_input(format!(
                "--listen {}: the broker a service runs for the user's session listens on \
                 loopback only",
                self.listen
            )));
        }
        if self.listen.port() == 0 {
            return Err(Error::invalid_input(
                "--listen: the user's session is pointed at one fixed port; give one that is not 0",
            ));
        }
        let url = format!("http://{}{}", self.listen, crate::broker::TOKEN_PATH);
        let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let upstream = self
            .upstream
            .clone()
            .or_else(|| from_env("AUTHSTORE_UPSTREAM_TOKEN_URL"))
            .or_else(|| from_env(authstore::authority::TOKEN_URL_ENV).filter(|set| *set != url))
            .unwrap_or_else(|| authstore::authority::DEFAULT_TOKEN_URL.to_owned());
        authstore::authority::check_token_url(&upstream)
            .map_err(|error| Error::invalid_input(format!("--upstream: {error}")))?;
        if upstream == url {
            return Err(Error::invalid_input(format!(
                "--upstream {upstream} is the broker itself: give the real token endpoint"
            )));
        }
        Ok(Some(BrokerService {
            listen: self.listen,
            url,
            upstream,
        }))
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServiceArg {
    /// The service manager [default: systemd on Linux, launchd on macOS, windows (Task
    /// Scheduler) on Windows]
    #[arg(long, value_enum, value_name = "KIND")]
    service: Option<Kind>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    service: ServiceArg,

    /// Print the state as one JSON object
    #[arg(long)]
    json: bool,
}

impl ServiceArg {
    fn kind(&self) -> Kind {
        self.service.unwrap_or_else(Kind::for_this_platform)
    }
}

/// Runs one of the service subcommands. Its errors are the library's [`Error`], printed and
/// mapped to exit codes as every command's are: what the user gave (or the environment lacks)
/// is [`InvalidInput`](authstore::ErrorKind::InvalidInput) (exit 2), a file that cannot be
/// written or a service tool that fails is [`Io`](authstore::ErrorKind::Io) (exit 1).
pub(crate) async fn run(cli: &Cli, command: &Command) -> Result<u8, Error> {
    match command {
        Command::Install(args) => install(cli, args),
        Command::Uninstall(args) => uninstall(args.kind()),
        Command::Status(args) => status(cli, args).await,
    }
    .map(|()| exit::SUCCESS)
}

fn install(cli: &Cli, args: &InstallArgs) -> Result<(), Error> {
    warn_if_inside_codex_window(args.ahead);
    let agent = AgentCommand::from_cli(cli, args.ahead, args.broker()?)?;
    let homes = Homes::from_env()?;
    report_environment(args.service.kind(), &homes, &agent, args.print);
    match (args.service.kind(), args.print) {
        (Kind::Systemd, true) => print(&systemd::print(&homes, &agent)),
        (Kind::Systemd, false) => systemd::install(&homes, &agent),
        (Kind::Launchd, true) => print(&launchd::Agent::new(&homes, &agent, &[]).render()),
        (Kind::Launchd, false) => launchd::install(&homes, &agent),
        (Kind::Windows, true) => print(&windows::Task::new(&homes, &agent).render_utf8()),
        (Kind::Windows, false) => windows::install(&homes, &agent),
    }
}

/// One line on stderr for each setting of [`SERVICE_ENVIRONMENT`] set here that the service will
/// not see, saying what to do; and under systemd's `--print`, one for each that install would
/// write into the 0600 file (which `--print` does not write).
fn report_environment(kind: Kind, homes: &Homes, agent: &AgentCommand, print: bool) {
    for setting in &agent.environment {
        let name = setting.name;
        match (kind, &setting.value) {
            (Kind::Systemd, Ok(_)) if print => eprintln!(
                "authstore: note: {name} is set here: install writes it into {} (0600), which the \
                 unit reads; --print writes nothing",
                systemd::environment_path(homes).display()
            ),
            (Kind::Systemd, Ok(_)) => {}
            (Kind::Systemd, Err(why)) => eprintln!(
                "authstore: warning: {name} is set here, but {why}, so it cannot be written into \
                 {} and the service will not see it; fix its value, or run `authstore agent` \
                 yourself where it is set",
                systemd::environment_path(homes).display()
            ),
            (Kind::Launchd, _) => eprintln!(
                "authstore: warning: {name} is set here, but the launchd agent will not see it: \
                 its plist is readable by every user, so install does not copy it there; to give \
                 it to the agent, run `launchctl setenv {name} <value>` before installing (it \
                 lasts until logout), or run `authstore agent` yourself where it is set"
            ),
            (Kind::Windows, _) => eprintln!(
                "authstore: warning: {name} is set here, but the task will not see it unless it \
                 is one of your user environment variables (a logon task gets those, not this \
                 shell's; task XML has no safe place for it); make it one with `setx {name} \
                 <value>`, then log on again"
            ),
        }
    }
}

fn uninstall(kind: Kind) -> Result<(), Error> {
    let homes = Homes::from_env()?;
    match kind {
        Kind::Systemd => systemd::uninstall(&homes),
        Kind::Launchd => launchd::uninstall(&homes),
        Kind::Windows => windows::uninstall(&homes),
    }
}

async fn status(cli: &Cli, args: &StatusArgs) -> Result<(), Error> {
    let homes = Homes::from_env()?;
    let state = match args.service.kind() {
        Kind::Systemd => systemd::state(&homes),
        Kind::Launchd => launchd::state(&homes),
        Kind::Windows => windows::state(&homes),
    };
    // The agent process keeping this Codex home fresh, whether the service or one started by
    // hand; none when the home cannot be resolved.
    let store = cli.file_store().ok();
    let agent = store.as_ref().and_then(|home| home.active_agent());
    let token_url = match &store {
        Some(home) => Some(TokenUrl::check(home.home()).await),
        None => None,
    };
    if let Some(warning) = token_url.as_ref().and_then(TokenUrl::warning) {
        eprintln!("authstore: warning: {warning}");
    }
    if args.json {
        let mut json = state.json();
        json["agent"] = agent.as_ref().map_or(Value::Null, AgentPresence::to_json);
        json["token_url"] = token_url.as_ref().map_or(Value::Null, TokenUrl::json);
        println!("{json}");
    } else {
        print!("{}", state.describe());
        match &agent {
            Some(agent) => println!("agent:     {}", agent.describe()),
            None => println!("agent:     none"),
        }
        if let Some(token_url) = &token_url {
            println!("token URL: {}", token_url.describe());
        }
    }
    Ok(())
}

fn print(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| Error::system(format!("cannot write to stdout: {error}")))
}
