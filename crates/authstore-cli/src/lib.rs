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
mod completions;
#[cfg(feature = "simulator")]
pub mod demo;
mod login;
mod logout;
mod refresh;
pub mod status;
mod token;
pub mod watch;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use authstore::error::{Error, ErrorKind};
use authstore::store::{FileStore, Store, StoreOptions, resolve_codex_home};
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
#[command(name = "authstore", version, about, long_about = None, args_override_self = true)]
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
            Some(command) => Ok(agent::service::run(&cli, command)),
            None => agent::run(&cli, args).await,
        },
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
        resolve_codex_home(self.codex_home.as_deref())
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
        let request_timeout = seconds("--request-timeout", self.request_timeout)?;
        let authority =
            authstore::authority::AuthorityConfig::from_env().request_timeout(request_timeout);
        let options = adjust(
            ManagerOptions::default()
                .store(self.store_options()?)
                .authority(authority),
        );
        match self.shared_store().await? {
            None => AuthManager::new(self.home()?, options),
            Some(shared) => shared.manager(self.home()?, options),
        }
    }

    /// The shared store `--store` (or `--store-file`) names, connected; `None` without one.
    pub(crate) async fn shared_store(&self) -> Result<Option<SharedStore>, Error> {
        let Some(url) = self.store_url()? else {
            return Ok(None);
        };
        SharedStore::connect(self, &url).await.map(Some)
    }

    /// The shared store's URL: `--store`, or the contents of `--store-file`.
    fn store_url(&self) -> Result<Option<String>, Error> {
        match (&self.store, &self.store_file) {
            (Some(_), Some(_)) => Err(Error::invalid_input(BOTH_STORES)),
            (Some(url), None) => Ok(Some(url.clone())),
            (None, Some(path)) => read_store_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The local file store in the Codex home.
    pub(crate) fn file_store(&self) -> Result<FileStore, Error> {
        Ok(FileStore::new(self.home()?, self.store_options()?))
    }
}

/// The shared credential store named by `--store`.
#[cfg(feature = "postgres")]
pub(crate) struct SharedStore(authstore::store::postgres::PgStore);

#[cfg(feature = "postgres")]
impl SharedStore {
    async fn connect(cli: &Cli, url: &str) -> Result<Self, Error> {
        use authstore::store::postgres::{PgOptions, PgStore, is_postgres_url};
        if !is_postgres_url(url) {
            return Err(Error::invalid_input("--store takes a postgres://... URL"));
        }
        let request_timeout = seconds("--request-timeout", cli.request_timeout)?;
        let pg_options = PgOptions::default()
            .lock_timeout(seconds("--lock-timeout", cli.lock_timeout)?)
            .token_request_timeout(request_timeout)
            // Longer than a refresh can take, so that only a hung holder is cut off.
            .idle_timeout(request_timeout + Duration::from_secs(10));
        PgStore::connect(url, &cli.store_key, pg_options)
            .await
            .map(SharedStore)
    }

    fn manager(self, home: PathBuf, options: ManagerOptions) -> Result<AuthManager, Error> {
        AuthManager::with_postgres(home, self.0, options)
    }

    /// The store itself, for reading and watching it (no mirroring: those only look).
    pub(crate) fn into_store(self) -> Box<dyn Store> {
        Box::new(self.0)
    }
}

/// Without the postgres feature there is no shared store to connect to.
#[cfg(not(feature = "postgres"))]
pub(crate) enum SharedStore {}

#[cfg(not(feature = "postgres"))]
impl SharedStore {
    async fn connect(_cli: &Cli, _url: &str) -> Result<Self, Error> {
        Err(Error::invalid_input(
            "--store needs authstore built with the postgres feature (cargo install --features postgres)",
        ))
    }

    fn manager(self, _home: PathBuf, _options: ManagerOptions) -> Result<AuthManager, Error> {
        match self {}
    }

    pub(crate) fn into_store(self) -> Box<dyn Store> {
        match self {}
    }
}

const BOTH_STORES: &str = "--store (AUTHSTORE_STORE) and --store-file (AUTHSTORE_STORE_FILE) both name a \
     store; give one of them";

/// The store URL in the file `--store-file` names: its first line, trimmed.
///
/// The file is opened once, and its mode is checked on that open handle: the file whose URL is
/// used is the file whose permissions are judged, even if the path is replaced meanwhile.
fn read_store_file(path: &std::path::Path) -> Result<String, Error> {
    use std::io::Read;
    let unreadable = |error: std::io::Error| {
        let what = match error.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_owned(),
            _ => format!("cannot be read ({error})"),
        };
        Error::invalid_input(format!(
            "--store-file {}: the file {what}; write the store URL into it (one line, mode 0600), \
             or give --store",
            path.display()
        ))
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(unreadable)?;
    #[cfg(unix)]
    if let Ok(metadata) = file.metadata() {
        use std::os::unix::fs::PermissionsExt;
        // Any group or other permission bit, as the library's check of auth.json (which the
        // binary cannot call: it is the library's own).
        if metadata.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "authstore: warning: {} is readable by other users; run: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    match text
        .lines()
        .next()
        .map(str::trim)
        .filter(|url| !url.is_empty())
    {
        Some(url) => Ok(url.to_owned()),
        None => Err(Error::invalid_input(format!(
            "--store-file {}: the file is empty; write the store URL into it (one line)",
            path.display()
        ))),
    }
}

fn seconds(option: &str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Error::invalid_input(format!("{option} {value}: expected a number of seconds"))
    })
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
