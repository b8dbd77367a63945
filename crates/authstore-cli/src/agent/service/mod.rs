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

mod command;
mod files;
mod launchd;
mod systemd;
mod windows;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use crate::Cli;
use authstore::error::Error;
use serde_json::{Value, json};

pub(crate) use command::{Command, run};
/// The service managers.
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

use files::{
    CREATED_MARKER, create_dirs, decode_dirs, encode_dirs, remove_created_dirs, remove_file,
    store_file_contents, write_file, xml_created_dirs_comment,
};

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
    /// The broker the agent also runs (`--broker`), for the user's session.
    broker: Option<BrokerService>,
}

/// The broker a service runs for the user's session: `agent --broker` on a fixed loopback
/// address, which the session's `CODEX_REFRESH_TOKEN_URL_OVERRIDE` names.
pub(crate) struct BrokerService {
    /// Where it listens (the service manager's socket, where there is one).
    pub(crate) listen: std::net::SocketAddr,
    /// `http://ADDR:PORT/oauth/token`: the value of the session's token URL.
    pub(crate) url: String,
    /// The real token endpoint behind it.
    pub(crate) upstream: String,
}

impl AgentCommand {
    fn from_cli(cli: &Cli, ahead: u64, broker: Option<BrokerService>) -> Result<Self, Error> {
        let program = crate::own_executable()
            .and_then(|path| path.canonicalize())
            .map_err(|error| Error::system(format!("cannot find this program's path: {error}")))?;
        let program = utf8(&without_verbatim_prefix(program), "this program's path")?;
        let home = cli.home()?;
        let home =
            std::path::absolute(&home).map_err(|error| Error::io("make absolute", &home, error))?;
        // The store as the library reads it (one grammar): a URL that is refused here would
        // only be refused later by the agent the service starts.
        let mut secret_store = None;
        let store = match (&cli.store, &cli.store_file) {
            (Some(_), Some(_)) => return Err(Error::invalid_input(crate::BOTH_STORES)),
            (Some(_), None) => match cli.store_url()? {
                Some(url) if url.may_hold_password() => {
                    secret_store = Some(url.as_str().to_owned());
                    Some(Vec::new())
                }
                Some(url) => Some(vec!["--store".to_owned(), url.as_str().to_owned()]),
                None => None,
            },
            (None, Some(path)) => {
                let path = std::path::absolute(path)
                    .map_err(|error| Error::io("make absolute", path, error))?;
                Some(vec![
                    "--store-file".to_owned(),
                    utf8(&path, "--store-file")?,
                ])
            }
            (None, None) => None,
        };
        let mut arguments = cli.global_args(Some(utf8(&home, "the Codex home")?), store, true);
        arguments.extend(["agent".to_owned(), "--ahead".to_owned(), ahead.to_string()]);
        if let Some(broker) = &broker {
            arguments.extend([
                "--broker".to_owned(),
                "--listen".to_owned(),
                broker.listen.to_string(),
                "--upstream".to_owned(),
                broker.upstream.clone(),
            ]);
        }
        // XML (plists, task files) cannot hold control characters, and no sane path has them.
        if let Some(word) = std::iter::once(&program)
            .chain(&arguments)
            .find(|word| word.chars().any(char::is_control))
        {
            return Err(Error::invalid_input(format!(
                "{word:?} contains a control character and cannot be written into a service definition"
            )));
        }
        let mut environment = Setting::from_env();
        if broker.is_some() {
            // The agent is given its upstream explicitly; the session's token URL is the
            // broker, which the service needs not know.
            environment.retain(|setting| setting.name != authstore::authority::TOKEN_URL_ENV);
        }
        Ok(Self {
            program,
            arguments,
            secret_store,
            environment,
            broker,
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

fn utf8(path: &Path, what: &str) -> Result<String, Error> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        Error::invalid_input(format!(
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
    fn from_env() -> Result<Self, Error> {
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
            .ok_or_else(|| Error::invalid_input("HOME is not set; a user service needs a home"))?;
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
    fn require(self, command: &str) -> Result<String, Error> {
        match self {
            Tool::Ran {
                success: true,
                stdout,
                ..
            } => Ok(stdout),
            Tool::Ran { stderr, .. } => Err(Error::system(format!(
                "`{command}` failed: {}",
                if stderr.is_empty() {
                    "no message"
                } else {
                    &stderr
                }
            ))),
            Tool::Missing => Err(Error::system(format!(
                "`{command}` could not be run: the program is not on PATH"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
