//! `authstore agent install | uninstall | status`: the agent as a user service that starts at
//! login and is restarted when it fails, on the platform's own service manager: a systemd user
//! unit ([`systemd`]), a launchd LaunchAgent ([`launchd`]) or a Task Scheduler logon task
//! ([`windows`]).
//!
//! The model shared by the three: the service runs the absolute path of this very binary
//! (`current_exe`, canonicalized) with every option written out explicitly (the Codex home made
//! absolute at install time, the timeouts, the store key, `--ahead`), so that it does not depend
//! on the environment the service manager gives it. A `--store` URL that holds a password is never
//! written into the definition: systemd reads it from a 0600 `EnvironmentFile=` beside the unit;
//! launchd and Task Scheduler have no such thing, so the agent reads it from a 0600 file through
//! `--store-file` (a global option, also usable by hand).
//!
//! Settings that live only in the environment ([`SERVICE_ENVIRONMENT`]: the proxies, Codex's
//! endpoint overrides, CA certificates, the log filter) are not passed on by a service manager
//! from the shell install runs in. systemd gets those that are set in the same 0600 file (a
//! proxy URL may hold a password, so never in the unit); a plist is readable by every user and
//! task XML has no place for them, so for launchd and Task Scheduler install (and `--print`)
//! says on stderr, one line per setting, that the service will not see it and what to do.
//!
//! Install writes the files first and then asks the service manager to load and start them. When
//! the manager's tool is missing or no manager runs (a container, an SSH session without a user
//! manager), the files stay written and one line says how to start them later; the exit code is
//! 0. Uninstall stops and removes everything install wrote, and the directories install created
//! when they are empty again (install records them in the definition). Nothing here talks to the
//! network.
//!
//! What is verified where: the systemd unit is checked by `systemd-analyze verify --user` and its
//! command line read back from systemd's own parser (the `agent_service` tests); the launchd plist
//! and the Task Scheduler XML are parsed by Python's `plistlib` and `xml.etree`, and the commands
//! that install and uninstall run are recorded by stand-in `systemctl`/`launchctl` scripts. No real
//! launchd or Task Scheduler runs here: see [`launchd`] and [`windows`] for what that leaves
//! unverified.

mod launchd;
mod systemd;
mod windows;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use authstore::store::AgentPresence;
use serde_json::{Value, json};

use super::{DEFAULT_AHEAD_SECS, warn_if_inside_codex_window};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// A systemd user unit
    Systemd,
    /// A launchd LaunchAgent (macOS)
    Launchd,
    /// A Task Scheduler logon task (Windows)
    #[value(alias = "task-scheduler")]
    Windows,
}

impl Kind {
    fn for_this_platform() -> Self {
        if cfg!(target_os = "macos") {
            Kind::Launchd
        } else if cfg!(windows) {
            Kind::Windows
        } else {
            Kind::Systemd
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Systemd => "systemd",
            Kind::Launchd => "launchd",
            Kind::Windows => "windows",
        }
    }
}

impl ServiceArg {
    fn kind(&self) -> Kind {
        self.service.unwrap_or_else(Kind::for_this_platform)
    }
}

/// Runs one of the service subcommands; prints its own error and returns the exit code.
pub(crate) fn run(cli: &Cli, command: &Command) -> u8 {
    let outcome = match command {
        Command::Install(args) => install(cli, args),
        Command::Uninstall(args) => uninstall(args.kind()),
        Command::Status(args) => status(cli, args),
    };
    match outcome {
        Ok(()) => exit::SUCCESS,
        Err(failure) => {
            eprintln!("authstore: {}", failure.message);
            failure.exit
        }
    }
}

fn install(cli: &Cli, args: &InstallArgs) -> Result<(), Failure> {
    warn_if_inside_codex_window(args.ahead);
    let agent = AgentCommand::from_cli(cli, args.ahead)?;
    let homes = Homes::from_env()?;
    report_environment(args.service.kind(), &homes, &agent, args.print);
    match (args.service.kind(), args.print) {
        (Kind::Systemd, true) => print(&systemd::Unit::new(&homes, &agent, &[]).render()),
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

fn uninstall(kind: Kind) -> Result<(), Failure> {
    let homes = Homes::from_env()?;
    match kind {
        Kind::Systemd => systemd::uninstall(&homes),
        Kind::Launchd => launchd::uninstall(&homes),
        Kind::Windows => windows::uninstall(&homes),
    }
}

fn status(cli: &Cli, args: &StatusArgs) -> Result<(), Failure> {
    let homes = Homes::from_env()?;
    let state = match args.service.kind() {
        Kind::Systemd => systemd::state(&homes),
        Kind::Launchd => launchd::state(&homes),
        Kind::Windows => windows::state(&homes),
    };
    // The agent process keeping this Codex home fresh, whether the service or one started by
    // hand; none when the home cannot be resolved.
    let agent = cli.file_store().ok().and_then(|home| home.active_agent());
    if args.json {
        let mut json = state.json();
        json["agent"] = agent.as_ref().map_or(Value::Null, AgentPresence::to_json);
        println!("{json}");
    } else {
        print!("{}", state.describe());
        match &agent {
            Some(agent) => println!("agent:     {}", agent.describe()),
            None => println!("agent:     none"),
        }
    }
    Ok(())
}

fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::other(format!("cannot write to stdout: {error}")))
}

/// Why a service command failed, and its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    exit: u8,
}

impl Failure {
    /// Something the user gave (or the environment lacks) makes the command impossible (exit 2).
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: exit::USAGE,
        }
    }

    /// The machine refused: a file could not be written, a tool failed (exit 1).
    fn other(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: exit::OTHER,
        }
    }

    fn io(step: &str, path: &Path, error: std::io::Error) -> Self {
        Self::other(format!("cannot {step} {}: {error}", path.display()))
    }
}

/// The agent command line a service runs: this binary, then every option explicit.
pub(crate) struct AgentCommand {
    /// The absolute, canonical path of this binary.
    program: String,
    /// The global options and `agent --ahead N`, without the store URL when it is secret.
    arguments: Vec<String>,
    /// A `--store` URL that holds (or may hold) a password: the service gets it out of band.
    secret_store: Option<String>,
    /// The settings of [`SERVICE_ENVIRONMENT`] set where install runs, in that order.
    environment: Vec<Setting>,
}

impl AgentCommand {
    fn from_cli(cli: &Cli, ahead: u64) -> Result<Self, Failure> {
        let program = crate::own_executable()
            .and_then(|path| path.canonicalize())
            .map_err(|error| Failure::other(format!("cannot find this program's path: {error}")))?;
        let program = utf8(&without_verbatim_prefix(program), "this program's path")?;
        let home = cli
            .home()
            .map_err(|error| Failure::usage(error.report().to_string()))?;
        let home = std::path::absolute(&home)
            .map_err(|error| Failure::io("make absolute", &home, error))?;
        let mut arguments = vec![
            "--codex-home".to_owned(),
            utf8(&home, "the Codex home")?,
            "--lock-timeout".to_owned(),
            cli.lock_timeout.to_string(),
            "--request-timeout".to_owned(),
            cli.request_timeout.to_string(),
        ];
        let mut secret_store = None;
        match (&cli.store, &cli.store_file) {
            (Some(_), Some(_)) => return Err(Failure::usage(crate::BOTH_STORES)),
            (Some(url), None) if may_hold_password(url) => secret_store = Some(url.clone()),
            (Some(url), None) => arguments.extend(["--store".to_owned(), url.clone()]),
            (None, Some(path)) => {
                let path = std::path::absolute(path)
                    .map_err(|error| Failure::io("make absolute", path, error))?;
                arguments.extend(["--store-file".to_owned(), utf8(&path, "--store-file")?]);
            }
            (None, None) => {}
        }
        if cli.store.is_some() || cli.store_file.is_some() {
            arguments.extend(["--store-key".to_owned(), cli.store_key.clone()]);
        }
        if cli.unlocked {
            arguments.push("--unlocked".to_owned());
        }
        if cli.verbose > 0 {
            arguments.push(format!("-{}", "v".repeat(cli.verbose.into())));
        }
        arguments.extend(["agent".to_owned(), "--ahead".to_owned(), ahead.to_string()]);
        // XML (plists, task files) cannot hold control characters, and no sane path has them.
        if let Some(word) = std::iter::once(&program)
            .chain(&arguments)
            .find(|word| word.chars().any(char::is_control))
        {
            return Err(Failure::usage(format!(
                "{word:?} contains a control character and cannot be written into a service definition"
            )));
        }
        if secret_store
            .as_ref()
            .is_some_and(|url| url.chars().any(char::is_control))
        {
            return Err(Failure::usage(
                "the --store URL contains a control character (a line break?); give it on one line",
            ));
        }
        Ok(Self {
            program,
            arguments,
            secret_store,
            environment: Setting::from_env(),
        })
    }

    /// The settings of [`SERVICE_ENVIRONMENT`] that a definition (systemd's environment file)
    /// can hold, with their values.
    fn carried_environment(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.environment.iter().filter_map(|setting| {
            setting
                .value
                .as_deref()
                .ok()
                .map(|value| (setting.name, value))
        })
    }

    /// The arguments after the program, with `--store-file PATH` first when the secret store URL
    /// is passed through a file.
    fn arguments_with_store_file(&self, store_file: Option<&str>) -> Vec<String> {
        let mut arguments = Vec::new();
        if let Some(path) = store_file {
            arguments.extend(["--store-file".to_owned(), path.to_owned()]);
        }
        arguments.extend(self.arguments.iter().cloned());
        arguments
    }
}

/// Whether a store URL (or libpq key=value string) may hold a password: a `user:password@`, or
/// anything that could name a `password` parameter. Conservative: a URL that merely might is
/// kept out of the definition too.
fn may_hold_password(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.contains("pass") || lower.contains('%') {
        return true;
    }
    match url.split_once("://") {
        Some((_, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            authority
                .rsplit_once('@')
                .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        }
        // A key=value connection string without "password" in it.
        None => false,
    }
}

/// Settings the agent reads only from its environment, which a service manager does not pass on
/// from the shell install runs in: the proxies reqwest reads (through hyper-util; each in both
/// spellings, the upper-case one first as it reads them), Codex's token endpoint and client id
/// overrides, the CA certificates rustls-native-certs reads, the root certificate the postgres
/// store reads as libpq does, and the log filter.
const SERVICE_ENVIRONMENT: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    authstore::authority::TOKEN_URL_ENV,
    authstore::authority::CLIENT_ID_ENV,
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PGSSLROOTCERT",
    "AUTHSTORE_LOG",
];

/// One setting of [`SERVICE_ENVIRONMENT`] that is set where install runs (possibly empty, which
/// is not the same as unset to every reader: an empty `HTTPS_PROXY` hides `https_proxy`).
struct Setting {
    name: &'static str,
    /// The value, or why no definition can hold it.
    value: Result<String, &'static str>,
}

impl Setting {
    fn from_env() -> Vec<Self> {
        let mut settings: Vec<Self> = Vec::new();
        for &name in SERVICE_ENVIRONMENT {
            // Windows' names are case-insensitive: `https_proxy` is `HTTPS_PROXY` again.
            if cfg!(windows)
                && settings
                    .iter()
                    .any(|setting| setting.name.eq_ignore_ascii_case(name))
            {
                continue;
            }
            let Some(value) = std::env::var_os(name) else {
                continue;
            };
            let value = match value.into_string() {
                Ok(value) if value.chars().any(char::is_control) => {
                    Err("its value holds a control character (a line break?)")
                }
                Ok(value) => Ok(value),
                Err(_) => Err("its value is not valid UTF-8"),
            };
            settings.push(Self { name, value });
        }
        settings
    }
}

/// `\\?\C:\...` (what `canonicalize` returns on Windows) becomes `C:\...`, which every Windows
/// program understands; anything else is returned as it is.
fn without_verbatim_prefix(path: PathBuf) -> PathBuf {
    let text = path.to_string_lossy();
    match text.strip_prefix(r"\\?\") {
        Some(rest) if rest.as_bytes().get(1) == Some(&b':') && !rest.contains("\\\\?") => {
            PathBuf::from(rest.to_owned())
        }
        _ => path,
    }
}

fn utf8(path: &Path, what: &str) -> Result<String, Failure> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        Failure::usage(format!(
            "{what} ({}) is not valid UTF-8 and cannot be written into a service definition",
            path.display()
        ))
    })
}

/// The user's directories the service files go into, read from the environment once.
pub(crate) struct Homes {
    /// `$HOME` (on Windows `%USERPROFILE%`).
    home: PathBuf,
    /// `$XDG_CONFIG_HOME` when set to an absolute path, else `~/.config`.
    config: PathBuf,
    /// `%LOCALAPPDATA%`, else `~/AppData/Local`.
    local_data: PathBuf,
}

impl Homes {
    fn from_env() -> Result<Self, Failure> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME")
            .or_else(|| {
                if cfg!(windows) {
                    var("USERPROFILE")
                } else {
                    None
                }
            })
            .ok_or_else(|| Failure::usage("HOME is not set; a user service needs a home"))?;
        // The XDG base directory specification: a relative value is to be ignored.
        let config = var("XDG_CONFIG_HOME")
            .filter(|dir| dir.is_absolute())
            .unwrap_or_else(|| home.join(".config"));
        let local_data = var("LOCALAPPDATA").unwrap_or_else(|| home.join("AppData").join("Local"));
        Ok(Self {
            home,
            config,
            local_data,
        })
    }
}

/// What the platform says about the installed service. `None`: it cannot tell (`note` says why).
pub(crate) struct ServiceState {
    kind: Kind,
    /// The definition whose presence means "installed".
    path: PathBuf,
    installed: bool,
    enabled: Option<bool>,
    running: Option<bool>,
    /// Why `enabled` or `running` is unknown.
    note: Option<String>,
}

impl ServiceState {
    fn json(&self) -> Value {
        json!({
            "service": self.kind.name(),
            "path": self.path.display().to_string(),
            "installed": self.installed,
            "enabled": self.enabled,
            "running": self.running,
            "note": self.note,
        })
    }

    fn describe(&self) -> String {
        let yes_no = |value: Option<bool>| match value {
            Some(true) => "yes".to_owned(),
            Some(false) => "no".to_owned(),
            None => match &self.note {
                Some(note) => format!("unknown ({note})"),
                None => "unknown".to_owned(),
            },
        };
        format!(
            "service:   {} ({})\ninstalled: {}\nenabled:   {}\nrunning:   {}\n",
            self.kind.name(),
            self.path.display(),
            if self.installed { "yes" } else { "no" },
            yes_no(self.enabled),
            yes_no(self.running),
        )
    }
}

/// What running a service manager's tool gave.
enum Tool {
    /// Not on `PATH` (or not executable).
    Missing,
    Ran {
        success: bool,
        stdout: String,
        stderr: String,
    },
}

impl Tool {
    /// Runs `program args...` (found on `PATH`) to completion, stdin closed.
    fn run<I, S>(program: &str, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = Process::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output();
        match output {
            Ok(output) => Tool::Ran {
                success: output.status.success(),
                stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            },
            Err(_) => Tool::Missing,
        }
    }

    /// The trimmed stdout, whatever the exit status; `None` when the tool is missing.
    fn stdout(&self) -> Option<&str> {
        match self {
            Tool::Missing => None,
            Tool::Ran { stdout, .. } => Some(stdout),
        }
    }

    /// Succeeds, or fails naming the command and what it printed on stderr.
    fn require(self, command: &str) -> Result<String, Failure> {
        match self {
            Tool::Ran {
                success: true,
                stdout,
                ..
            } => Ok(stdout),
            Tool::Ran { stderr, .. } => Err(Failure::other(format!(
                "`{command}` failed: {}",
                if stderr.is_empty() {
                    "no message"
                } else {
                    &stderr
                }
            ))),
            Tool::Missing => Err(Failure::other(format!(
                "`{command}` could not be run: the program is not on PATH"
            ))),
        }
    }
}

/// Creates `dir` and its missing parents; returns those it created, outermost first, so that
/// uninstall can remove exactly those again.
fn create_dirs(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|ancestor| !ancestor.exists())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(dir)
        .map_err(|error| Failure::io("create the directory", dir, error))?;
    Ok(missing.into_iter().rev().collect())
}

/// Removes the directories install created, innermost first, each only when it is empty.
fn remove_created_dirs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut dirs = dirs.to_vec();
    dirs.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    for dir in dirs {
        if std::fs::remove_dir(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// Prefixes the comment of a definition that records the directories install created.
const CREATED_MARKER: &str = "authstore-created-dirs:";

/// How created directories are recorded inside a definition: a JSON array of paths, on one line.
fn encode_dirs(dirs: &[PathBuf]) -> String {
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned())
}

/// The comment line of an XML definition (plist, task) that records `created`. `--` cannot
/// appear in an XML comment: dashes are written as JSON escapes.
fn xml_created_dirs_comment(created: &[PathBuf]) -> String {
    format!(
        "<!-- {CREATED_MARKER} {} -->\n",
        encode_dirs(created).replace('-', "\\u002d")
    )
}

/// The directories recorded in `text` (see [`encode_dirs`]).
fn decode_dirs(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split_once(CREATED_MARKER))
        .filter_map(|(_, rest)| {
            let json = rest.trim().trim_end_matches("-->").trim();
            serde_json::from_str::<Vec<String>>(json).ok()
        })
        .flatten()
        .map(PathBuf::from)
        .collect()
}

/// Writes `contents` to `path` atomically (a temporary file in the same directory, renamed over
/// it). `private`: 0600 from creation, for a file holding a store URL with its password; else
/// 0644, as service managers expect their definitions.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), Failure> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .map_err(|error| Failure::io("create a file in", dir, error))?;
    file.write_all(contents)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|error| Failure::io("write", path, error))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|error| Failure::io("set the permissions of", path, error))?;
    }
    #[cfg(not(unix))]
    let _ = private; // Windows: the file inherits the ACL of the user's profile directory.
    file.persist(path)
        .map_err(|error| Failure::io("write", path, error.error))?;
    Ok(())
}

/// Removes `path` if it exists; returns whether it did.
fn remove_file(path: &Path) -> Result<bool, Failure> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Failure::io("remove", path, error)),
    }
}

/// What a `--store-file` holds (launchd and Task Scheduler cannot pass a secret environment
/// variable): the URL on one line. Written 0600 by [`write_file`].
fn store_file_contents(url: &str) -> Vec<u8> {
    format!("{url}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_with_a_password_or_a_possible_password_parameter_are_secret() {
        for secret in [
            "postgres://alice:s3cret@db.example.com/auth",
            "postgresql://alice:@db/auth",
            "postgres://alice@db/auth?password=s3cret",
            "postgres://alice@db/auth?PassWord=s3cret",
            "postgres://alice@db/auth?pass%77ord=s3cret",
            "host=db user=alice password=s3cret",
        ] {
            assert!(may_hold_password(secret), "{secret}");
        }
        for plain in [
            "postgres://alice@db.example.com:5432/auth?sslmode=require",
            "postgres:///auth?host=/run/postgresql",
            "host=db user=alice dbname=auth",
        ] {
            assert!(!may_hold_password(plain), "{plain}");
        }
    }

    #[test]
    fn a_verbatim_windows_path_loses_its_prefix_and_others_are_kept() {
        assert_eq!(
            without_verbatim_prefix(PathBuf::from(r"\\?\C:\Users\a\authstore.exe")),
            PathBuf::from(r"C:\Users\a\authstore.exe")
        );
        for kept in [r"\\?\UNC\server\share\a.exe", "/usr/bin/authstore"] {
            assert_eq!(
                without_verbatim_prefix(PathBuf::from(kept)),
                PathBuf::from(kept)
            );
        }
    }

    #[test]
    fn created_directories_round_trip_through_their_record() {
        let dirs = vec![
            PathBuf::from("/home/a b/.config"),
            PathBuf::from("/home/a b/.config/sys\"temd--x"),
        ];
        let line = format!("# {CREATED_MARKER} {}", encode_dirs(&dirs));
        assert_eq!(decode_dirs(&line), dirs);
        // In an XML comment, with the dashes escaped.
        let comment = xml_created_dirs_comment(&dirs);
        let inside = comment
            .trim_end()
            .strip_prefix("<!--")
            .and_then(|c| c.strip_suffix("-->"))
            .unwrap();
        assert!(!inside.contains("--"), "{comment}");
        assert_eq!(decode_dirs(&comment), dirs);
    }
}
