//! `authstore`, the command line: argument parsing, logging, exit codes; one module per
//! command. The `authstore` binary is [`main`]; the Python package's `authstore` command calls
//! [`main_from`] with its own argv, so that both are the same program.
//!
//! A crate of its own, beside the library (`authstore`) and the embedded token authority
//! (`authstore-simulator`): the library has no command-line dependency (clap, clap_complete,
//! clap_mangen, tracing-subscriber), and the Python extension links this crate instead of
//! compiling its source a second time.
//!
//! What this crate exports besides the entry points, for its other front-ends and its tests:
//! [`status::Status`] (the `status --json` snapshot, which the Python package's `status()`
//! returns), [`watch::event_json`] (the `watch --json` event lines, which its `watch()` yields)
//! and, with the `simulator` feature, [`demo::protocol`] (what the demo's worker processes say,
//! for the multi-process benchmarks). Everything else is private: the command line's interface
//! is its arguments, its output and its exit codes ([`exit`]), as SPEC §7 states them.
//!
//! - [`agent`](mod@agent): `authstore agent`, and under it the user-service installers
//!   (`agent install`/`uninstall`/`status` for systemd, launchd and Task Scheduler);
//! - [`broker`](mod@broker): `authstore broker`, the token endpoint Codex is pointed at (the agent
//!   runs it with `--broker`), with socket activation and the probe `status` uses;
//! - one module per other command: `token`, `refresh`, `status`, `login`, `logout`, `watch`,
//!   `completions` (and `man`), and with `simulator` `authority` and `demo`.
//!
//! The module docs link to the private modules they describe (they are for the next
//! maintainer): read them with `cargo doc -p authstore-cli --document-private-items`.
#![allow(
    rustdoc::private_intra_doc_links,
    reason = "the docs describe the private modules, for maintainers"
)]

mod agent;
#[cfg(feature = "simulator")]
mod authority;
mod broker;
mod completions;
#[cfg(feature = "simulator")]
pub mod demo;
mod login;
mod logout;
mod refresh;
mod sandbox;
pub mod status;
mod token;
pub mod watch;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use authstore::error::{Error, ErrorKind, Location};
use authstore::store::{
    CredentialsStore, FileStore, StoreConfig, StoreOptions, StoreUrl, credentials,
    resolve_codex_home,
};
use authstore::{AuthManager, ManagerOptions};
use clap::{Parser, Subcommand};

/// Exit codes (SPEC §7), stable for scripts.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_LOGGED_IN: u8 = 3;
    pub const RELOGIN_REQUIRED: u8 = 4;
    pub const UNAVAILABLE: u8 = 5;
    pub const INVALID_FILE: u8 = 6;
}

/// Share one Codex auth.json between many processes without ever reusing a rotated refresh
/// token.
#[derive(Debug, Parser)]
#[command(name = "authstore", version = env!("AUTHSTORE_VERSION"), about, long_about = None, args_override_self = true)]
pub(crate) struct Cli {
    /// The Codex home holding auth.json [default: $CODEX_HOME, else ~/.codex]
    #[arg(long, global = true, value_name = "DIR")]
    codex_home: Option<PathBuf>,

    /// Seconds to wait for another process's transaction before giving up (exit 5)
    #[arg(long, global = true, value_name = "SECS", default_value_t = 60.0)]
    lock_timeout: f64,

    /// Seconds to wait for the token endpoint before giving up (exit 5)
    #[arg(long, global = true, value_name = "SECS", default_value_t = 20.0)]
    request_timeout: f64,

    /// A shared credential store for many machines (postgres://...); the local auth.json in
    /// the Codex home becomes its mirror
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "AUTHSTORE_STORE",
        hide_env_values = true
    )]
    store: Option<String>,

    /// Read the shared store's URL from this file (one line), so that a password stays out of
    /// command lines and service definitions
    #[arg(long, global = true, value_name = "PATH", env = "AUTHSTORE_STORE_FILE")]
    store_file: Option<PathBuf>,

    /// The credential's key in the shared store
    #[arg(
        long,
        global = true,
        value_name = "KEY",
        env = "AUTHSTORE_STORE_KEY",
        default_value = "default"
    )]
    store_key: String,

    /// Run without the cross-process locks, on filesystems that cannot lock (unsafe with
    /// concurrent processes)
    #[arg(long, global = true)]
    unlocked: bool,

    /// Where the Codex home keeps its login, whatever cli_auth_credentials_store in its
    /// config.toml says: auth.json (file), the OS keyring item Codex uses (keyring), or the
    /// keyring when it holds the login and answers, else the file (auto). Also
    /// AUTHSTORE_CREDENTIALS_STORE [default: as the config says, else file]
    #[arg(long, global = true, value_name = "STORE", value_parser = ["file", "keyring", "auto"])]
    credentials_store: Option<String>,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); AUTHSTORE_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a valid access token, refreshing it (once across all processes) when stale
    Token(token::Args),
    /// Refresh the tokens when stale, or now with --force
    Refresh(refresh::Args),
    /// Show who is logged in and when the tokens expire (never a secret)
    Status(status::Args),
    /// Install an auth.json document from FILE, under the lock
    Login(login::Args),
    /// Remove auth.json under the lock
    Logout(logout::Args),
    /// Print one line per change any process makes to auth.json, until interrupted
    Watch(watch::Args),
    /// Keep the tokens fresh ahead of Codex's refresh window, until SIGINT or SIGTERM
    Agent(agent::Args),
    /// Be the token endpoint of this Codex home (point CODEX_REFRESH_TOKEN_URL_OVERRIDE at it),
    /// so that every Codex refresh goes through the transaction; until SIGINT or SIGTERM
    Broker(broker::Options),
    /// Access-only Codex homes for containers and sandboxes: the host's access token and a
    /// secret of their own, never the host's refresh token (add, list, remove)
    Sandbox(sandbox::Args),
    /// Print shell completions (bash, zsh, fish, powershell, elvish) on stdout
    Completions(completions::Args),
    /// Print the man page (roff) on stdout, e.g. authstore man > ~/.local/share/man/man1/authstore.1
    Man,
    /// Run the embedded token authority on loopback (rotation, reuse detection), until interrupted
    #[cfg(feature = "simulator")]
    Authority(authority::Args),
    /// Show the race between processes sharing auth.json, and its cure, on an embedded token
    /// authority: naive, reread and coordinated (authstore) side by side
    #[cfg(feature = "simulator")]
    Demo(demo::command::Args),
    /// One session of the demo or a benchmark, as its own process (internal)
    #[cfg(feature = "simulator")]
    #[command(hide = true)]
    DemoWorker(demo::command::WorkerArgs),
}

/// The `authstore` binary: the command line for this process's arguments.
pub fn main() -> ExitCode {
    ExitCode::from(main_from(std::env::args_os()))
}

/// The whole command for the arguments `args` (the program name first); returns the exit code.
/// The binary's `main` and the Python package's `authstore` command both call it.
pub fn main_from(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            let _ = error.print();
            return code;
        }
    };
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("authstore: cannot start the async runtime: {error}");
            return exit::OTHER;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("authstore: {}", error.report());
            if let Some(help) = help(&error) {
                eprintln!("help: {help}");
            }
            exit_code(&error)
        }
    }
}

/// The program that runs this command line, when it is not this executable: the Python
/// package's `authstore` command runs inside the Python interpreter, whose executable would not
/// understand `demo-worker` or `agent`.
static OWN_EXECUTABLE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Names the program that runs this command line, for [`own_executable`]; the first call wins.
pub fn set_own_executable(path: PathBuf) {
    let _ = OWN_EXECUTABLE.set(path);
}

/// The program that runs this command line: the one [`set_own_executable`] named, else this
/// executable. The demo starts its workers with it, and `agent install` writes it into the
/// service definition.
pub(crate) fn own_executable() -> std::io::Result<PathBuf> {
    match OWN_EXECUTABLE.get() {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe(),
    }
}

async fn run(cli: Cli) -> Result<u8, Error> {
    match &cli.command {
        Command::Token(args) => token::run(&cli, args).await,
        Command::Refresh(args) => refresh::run(&cli, args).await,
        Command::Status(args) => status::run(&cli, args).await,
        Command::Login(args) => login::run(&cli, args).await,
        Command::Logout(args) => logout::run(&cli, args).await,
        Command::Watch(args) => watch::run(&cli, args).await,
        Command::Agent(args) => match &args.service {
            Some(command) => agent::service::run(&cli, command).await,
            None => agent::run(&cli, args).await,
        },
        Command::Broker(args) => broker::run(&cli, args).await,
        Command::Sandbox(args) => sandbox::run(&cli, args).await,
        Command::Completions(args) => completions::run(args),
        Command::Man => completions::run_man(),
        #[cfg(feature = "simulator")]
        Command::Authority(args) => authority::run(&cli, args).await,
        #[cfg(feature = "simulator")]
        Command::Demo(args) => demo::command::run(&cli, args).await,
        #[cfg(feature = "simulator")]
        Command::DemoWorker(args) => demo::command::run_worker(&cli, args).await,
    }
}

impl Cli {
    pub(crate) fn home(&self) -> Result<PathBuf, Error> {
        resolve_codex_home(self.codex_home.as_deref()).map_err(|error| {
            match (error.kind(), &self.codex_home) {
                (ErrorKind::InvalidInput, None) => {
                    Error::invalid_input(format!("{error}, or pass --codex-home DIR"))
                }
                _ => error,
            }
        })
    }

    /// The store the global options name: the Codex home, `--store` or `--store-file`, the
    /// waits. Read by the library's one grammar ([`StoreConfig`]).
    pub(crate) fn store_config(&self) -> Result<StoreConfig, Error> {
        Ok(StoreConfig::new(self.home()?)
            .credentials_store(self.credentials_override()?)
            .shared(self.store_url()?)
            .key(self.store_key.clone())
            .lock_timeout(seconds("--lock-timeout", self.lock_timeout)?)
            .request_timeout(seconds("--request-timeout", self.request_timeout)?)
            .unlocked(self.unlocked))
    }

    /// `--credentials-store`, else `AUTHSTORE_CREDENTIALS_STORE` (when set and non-empty),
    /// with how it was given.
    pub(crate) fn credentials_override(&self) -> Result<Option<(CredentialsStore, String)>, Error> {
        credentials::override_from(self.credentials_store.as_deref(), "--credentials-store")
    }

    pub(crate) fn store_options(&self) -> Result<StoreOptions, Error> {
        Ok(StoreOptions::default()
            .lock_deadline(seconds("--lock-timeout", self.lock_timeout)?)
            .unlocked(self.unlocked))
    }

    /// The manager for a one-shot command.
    pub(crate) async fn manager(&self) -> Result<AuthManager, Error> {
        // A one-shot command reads the file once; a watch would only cost a thread.
        self.manager_with(|options| options.watch(false)).await
    }

    /// A manager over the configured store (the local file, or `--store`), with `adjust`
    /// applied to the options.
    pub(crate) async fn manager_with(
        &self,
        adjust: impl FnOnce(ManagerOptions) -> ManagerOptions,
    ) -> Result<AuthManager, Error> {
        let config = self.store_config()?;
        config.manager(adjust(ManagerOptions::default())).await
    }

    /// The shared store's URL: `--store`, or the contents of `--store-file`.
    pub(crate) fn store_url(&self) -> Result<Option<StoreUrl>, Error> {
        match (&self.store, &self.store_file) {
            (Some(_), Some(_)) => Err(Error::invalid_input(BOTH_STORES)),
            (Some(url), None) => StoreUrl::parse(url)
                .map(Some)
                .map_err(|error| Error::invalid_input(format!("--store: {error}"))),
            (None, Some(path)) => StoreUrl::read_file(path, || {
                eprintln!(
                    "authstore: warning: {} is readable by other users; run: chmod 600 {}",
                    path.display(),
                    path.display()
                );
            })
            .map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The global options again, as arguments for another process of this program (the demo's
    /// workers, the agent a user service starts), in one order: `--codex-home` when `home` is
    /// given, the timeouts, with a `store` the words the caller chose for it (none when a
    /// secret URL travels out of band) and `--store-key`, `--unlocked`, and the `-v`s when
    /// `verbosity`.
    pub(crate) fn global_args(
        &self,
        home: Option<String>,
        store: Option<Vec<String>>,
        verbosity: bool,
    ) -> Vec<String> {
        let mut arguments = Vec::new();
        if let Some(home) = home {
            arguments.extend(["--codex-home".to_owned(), home]);
        }
        arguments.extend([
            "--lock-timeout".to_owned(),
            self.lock_timeout.to_string(),
            "--request-timeout".to_owned(),
            self.request_timeout.to_string(),
        ]);
        if let Some(store) = store {
            arguments.extend(store);
            arguments.extend(["--store-key".to_owned(), self.store_key.clone()]);
        }
        if self.unlocked {
            arguments.push("--unlocked".to_owned());
        }
        if let Some(store) = &self.credentials_store {
            arguments.extend(["--credentials-store".to_owned(), store.clone()]);
        }
        if verbosity && self.verbose > 0 {
            arguments.push(format!("-{}", "v".repeat(self.verbose.into())));
        }
        arguments
    }

    /// The local file store in the Codex home.
    pub(crate) fn file_store(&self) -> Result<FileStore, Error> {
        Ok(FileStore::new(self.home()?, self.store_options()?))
    }
}

const BOTH_STORES: &str = "--store (AUTHSTORE_STORE) and --store-file (AUTHSTORE_STORE_FILE) both name a \
     store; give one of them";

fn seconds(option: &str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Error::invalid_input(format!("{option} {value}: expected a number of seconds"))
    })
}

/// The command line's own advice after the library's (which names no option): what to type.
fn help(error: &Error) -> Option<&'static str> {
    let in_keyring = matches!(error.location(), Some(Location::Store(store)) if store.starts_with("keyring item"));
    match error.kind() {
        ErrorKind::StoreUnavailable if in_keyring => Some(
            "unlock the keyring (or start its Secret Service), or use the file store: --credentials-store file",
        ),
        ErrorKind::NotLoggedIn => Some(
            "log in with `codex login`, or install a document with `authstore login --from FILE`",
        ),
        ErrorKind::LockUnsupported => Some(
            "`--unlocked` runs without the locks on such a filesystem (unsafe with concurrent processes)",
        ),
        _ => None,
    }
}

pub(crate) fn exit_code(error: &Error) -> u8 {
    match error.kind() {
        ErrorKind::NotLoggedIn => exit::NOT_LOGGED_IN,
        ErrorKind::ReloginRequired(_) => exit::RELOGIN_REQUIRED,
        ErrorKind::LockTimeout | ErrorKind::Transient | ErrorKind::StoreUnavailable => {
            exit::UNAVAILABLE
        }
        ErrorKind::InvalidFile | ErrorKind::Unreadable => exit::INVALID_FILE,
        ErrorKind::InvalidInput => exit::USAGE,
        // Io, LockUnsupported, and any kind a newer library adds.
        _ => exit::OTHER,
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "authstore=warn",
        1 => "authstore=info",
        2 => "authstore=debug",
        _ => "authstore=trace",
    };
    let filter = std::env::var("AUTHSTORE_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // Not `init`: a Python process may run the command line more than once.
        .try_init()
        .ok();
}

/// Formats an optional time for humans.
pub(crate) fn when(time: Option<std::time::SystemTime>) -> String {
    time.map(authstore::document::format_timestamp)
        .unwrap_or_else(|| "unknown".into())
}
