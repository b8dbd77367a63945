//! The agent as a systemd user unit: `$XDG_CONFIG_HOME/systemd/user/authstore-agent.service`
//! (default `~/.config/systemd/user/`), enabled with `systemctl --user enable --now`.
//!
//! `ExecStart=` is written by systemd's command-line rules (systemd.service(5), "Command
//! lines"; systemd.syntax(7)): a word with anything but plain characters is double-quoted, and
//! inside it `\` and `"` are backslash-escaped and control characters written as `\xNN`; `%`
//! becomes `%%` (specifiers are expanded everywhere, the program path included); `$` becomes `$$`
//! in the arguments (systemd substitutes variables there at start) but not in the program path,
//! which it does not substitute (`systemd-analyze verify` finds a program at `/a$b/x` written
//! as `/a$b/x`, not as `/a$$b/x`; checked with systemd 252).
//!
//! A store URL holding a password goes into `authstore-agent.env` beside the unit (0600), as
//! `AUTHSTORE_STORE="..."` read through `EnvironmentFile=`, and so do the settings of
//! `SERVICE_ENVIRONMENT` set where install runs (`HTTPS_PROXY="..."`: a proxy URL may hold a
//! password, so never in the unit, which names them only): in double quotes, where systemd's
//! environment-file parser (the shell's rules) takes `\` followed by one of `"` `\` `` ` `` `$`
//! as that character. systemd ignores files in its unit directories whose names are not units.
//! Install writes the unit before that file and puts the unit back as it was when the file
//! cannot be written, so that a failed install leaves neither a stray secret nor a unit naming
//! a file that is not there.
//!
//! Whether a user manager runs is asked of `systemctl --user is-system-running`, whose stdout
//! names the manager's state, or `offline` when there is none to ask, whatever the exit code
//! (which is also non-zero for a manager that runs `degraded`).
//!
//! Verified here: the unit passes `systemd-analyze verify --user`, systemd's parser reads the
//! command line back exactly (paths with spaces, `%`, `$`, quotes and backslashes), and a shell
//! reads the environment file back exactly (the `agent_service` tests). Enabling is verified only
//! as the commands run (stand-in `systemctl`): no user manager runs in this container.

use std::path::{Path, PathBuf};

use authstore::error::Error;
use authstore::store::file::Visibility;

use super::{
    AgentCommand, BrokerService, CREATED_MARKER, Homes, Kind, ServiceState, Tool, create_dirs,
    decode_dirs, encode_dirs, remove_created_dirs, remove_file, write_file,
};

pub(super) const UNIT_NAME: &str = "authstore-agent.service";
/// The broker's socket (`install --broker`): same name as the service, which systemd then
/// passes it to.
pub(super) const SOCKET_NAME: &str = "authstore-agent.socket";

struct Paths {
    dir: PathBuf,
    unit: PathBuf,
    env: PathBuf,
    socket: PathBuf,
    /// The session's environment (environment.d(5)): the token URL naming the broker.
    session_env_dir: PathBuf,
    session_env: PathBuf,
}

impl Paths {
    fn new(homes: &Homes) -> Self {
        let dir = homes.config.join("systemd").join("user");
        let session_env_dir = homes.config.join("environment.d");
        Self {
            unit: dir.join(UNIT_NAME),
            env: dir.join("authstore-agent.env"),
            socket: dir.join(SOCKET_NAME),
            session_env: session_env_dir.join("60-authstore-broker.conf"),
            session_env_dir,
            dir,
        }
    }
}

/// The socket unit: systemd holds the broker's port from login to logout, whether the agent
/// runs or not, so that no other local user's process can take it and receive the refresh
/// tokens Codex sends there.
fn socket_unit(broker: &BrokerService) -> String {
    format!(
        "# The authstore broker's port: systemd holds it for the whole session and passes it to\n\
         # {UNIT_NAME} (socket activation), so that while no broker runs no other process can take\n\
         # it. Written by `authstore agent install --broker`; `authstore agent uninstall` removes it.\n\
         \n[Unit]\nDescription=authstore broker: the Codex token endpoint on {listen}\n\n\
         [Socket]\nListenStream={listen}\n\n[Install]\nWantedBy=sockets.target\n",
        listen = broker.listen
    )
}

/// The session's environment (environment.d(5), read by the user manager at login): Codex
/// refreshes at the broker.
fn session_environment(broker: &BrokerService) -> String {
    format!(
        "# Codex sends its refreshes to the authstore broker (`authstore agent install --broker`;\n\
         # `authstore agent uninstall` removes this file).\n{}={}\n",
        authstore::authority::TOKEN_URL_ENV,
        broker.url
    )
}

/// The environment file beside the unit (0600): the secret store URL and the settings of
/// [`super::SERVICE_ENVIRONMENT`] set where install runs.
pub(super) fn environment_path(homes: &Homes) -> PathBuf {
    Paths::new(homes).env
}

/// The unit file for one agent command.
pub(super) struct Unit<'a> {
    agent: &'a AgentCommand,
    env_file: PathBuf,
    created: &'a [PathBuf],
}

impl<'a> Unit<'a> {
    pub(super) fn new(homes: &Homes, agent: &'a AgentCommand, created: &'a [PathBuf]) -> Self {
        Self {
            agent,
            env_file: Paths::new(homes).env,
            created,
        }
    }

    pub(super) fn render(&self) -> String {
        let mut unit = String::from(
            "# The authstore agent: keeps the Codex tokens fresh ahead of Codex's own refresh.\n\
             # Written by `authstore agent install`; `authstore agent uninstall` removes it.\n",
        );
        if !self.created.is_empty() {
            unit += &format!("# {CREATED_MARKER} {}\n", encode_dirs(self.created));
        }
        unit += "\n[Unit]\nDescription=authstore agent: keeps the Codex tokens fresh\n";
        if self.agent.broker.is_some() {
            // The broker's port comes from the socket unit, which must be listening first.
            unit += &format!("Requires={SOCKET_NAME}\nAfter={SOCKET_NAME}\n");
        }
        unit += "\n[Service]\nType=simple\n";
        let mut words = vec![exec_word(&self.agent.program, true)];
        words.extend(
            self.agent
                .arguments
                .iter()
                .map(|argument| exec_word(argument, false)),
        );
        unit += &format!("ExecStart={}\n", words.join(" "));
        let carried: Vec<&str> = self
            .agent
            .carried_environment()
            .map(|(name, _)| name)
            .collect();
        if self.agent.secret_store.is_some() {
            unit += "# The store URL holds a password: it is AUTHSTORE_STORE in this file (0600),\n\
                     # which `authstore agent install` writes (--print does not).\n";
        }
        if !carried.is_empty() {
            unit += &format!(
                "# {}: set where install ran, and not passed on by the service manager, so in\n\
                 # this file too (0600: a proxy URL may hold a password; --print does not write it).\n",
                carried.join(", ")
            );
        }
        if self.agent.secret_store.is_some() || !carried.is_empty() {
            unit += &format!(
                "EnvironmentFile={}\n",
                escape_specifiers(&self.env_file.display().to_string())
            );
        }
        unit += "Restart=on-failure\nRestartSec=5\n\
                 # Exit 2 is a usage or configuration error, which restarting cannot fix.\n\
                 RestartPreventExitStatus=2\n\n[Install]\nWantedBy=default.target\n";
        unit
    }
}

/// What `install --print` shows: the unit, and with a broker the socket unit and the session's
/// environment, each after a line naming the file.
pub(super) fn print(homes: &Homes, agent: &AgentCommand) -> String {
    let unit = Unit::new(homes, agent, &[]).render();
    let Some(broker) = &agent.broker else {
        return unit;
    };
    let paths = Paths::new(homes);
    format!(
        "# ==> {} <==\n{unit}\n# ==> {} <==\n{}\n# ==> {} <==\n{}",
        paths.unit.display(),
        paths.socket.display(),
        socket_unit(broker),
        paths.session_env.display(),
        session_environment(broker)
    )
}

pub(super) fn install(homes: &Homes, agent: &AgentCommand) -> Result<(), Error> {
    let paths = Paths::new(homes);
    let reinstall = paths.unit.exists();
    // A reinstall keeps the record of what the first install created.
    let mut created = recorded_dirs(&paths.unit);
    let mut created_now = create_dirs(&paths.dir)?;
    if agent.broker.is_some() {
        created_now.extend(create_dirs(&paths.session_env_dir)?);
    }
    created.extend(created_now.iter().cloned());
    if let Err(failure) = write_unit_and_environment(&paths, homes, agent, &created) {
        remove_created_dirs(&created_now);
        return Err(failure);
    }
    let had_broker = paths.socket.exists();
    write_broker_files(&paths, agent.broker.as_ref())?;
    match user_manager() {
        Err(why) => println!(
            "{why}, so {UNIT_NAME} is written but not enabled; to enable and start it: \
             systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}"
        ),
        Ok(()) => {
            if had_broker && agent.broker.is_none() {
                // A reinstall without the broker: its socket goes, and the session's token URL.
                systemctl(&["disable", "--now", SOCKET_NAME])?;
                systemctl(&["unset-environment", authstore::authority::TOKEN_URL_ENV])?;
            }
            systemctl(&["daemon-reload"])?;
            if let Some(broker) = &agent.broker {
                // The socket first: the service gets it when it starts.
                systemctl(&["enable", "--now", SOCKET_NAME])?;
                let setting = format!("{}={}", authstore::authority::TOKEN_URL_ENV, broker.url);
                systemctl(&["set-environment", &setting])?;
            }
            systemctl(&["enable", "--now", UNIT_NAME])?;
            if reinstall {
                // `enable --now` leaves a running agent alone: restart it with the new unit.
                systemctl(&["try-restart", UNIT_NAME])?;
            }
            println!(
                "enabled and started {UNIT_NAME}; see it with: systemctl --user status {UNIT_NAME}"
            );
        }
    }
    if let Some(broker) = &agent.broker {
        println!(
            "Codex refreshes at {url} in sessions started from now on (and in services the user \
             manager starts); in this shell: export {name}={url}",
            url = broker.url,
            name = authstore::authority::TOKEN_URL_ENV
        );
    }
    Ok(())
}

/// With a broker, the socket unit and the session's environment; without one, neither (a
/// reinstall without `--broker` takes them back).
fn write_broker_files(paths: &Paths, broker: Option<&BrokerService>) -> Result<(), Error> {
    match broker {
        Some(broker) => {
            write_file(
                &paths.socket,
                socket_unit(broker).as_bytes(),
                Visibility::Readable,
            )?;
            println!("wrote {}", paths.socket.display());
            write_file(
                &paths.session_env,
                session_environment(broker).as_bytes(),
                Visibility::Readable,
            )?;
            println!("wrote {}", paths.session_env.display());
        }
        None => {
            for path in [&paths.socket, &paths.session_env] {
                if remove_file(path)? {
                    println!("removed {}", path.display());
                }
            }
        }
    }
    Ok(())
}

/// Writes the unit, then the environment file (or removes one an earlier install wrote). The
/// unit first: when it cannot be written, no secret is left behind. When the environment file
/// then cannot be written, the unit is put back as it was, so that no unit is left naming a
/// file that is not there or holds an old URL.
fn write_unit_and_environment(
    paths: &Paths,
    homes: &Homes,
    agent: &AgentCommand,
    created: &[PathBuf],
) -> Result<(), Error> {
    let previous_unit = std::fs::read(&paths.unit).ok();
    let unit = Unit::new(homes, agent, created).render();
    write_file(&paths.unit, unit.as_bytes(), Visibility::Readable)?;
    let carried: Vec<(&str, &str)> = agent.carried_environment().collect();
    let environment = if agent.secret_store.is_some() || !carried.is_empty() {
        environment_file(agent.secret_store.as_deref(), &carried)
            .and_then(|contents| write_file(&paths.env, &contents, Visibility::Private))
    } else {
        remove_file(&paths.env).map(drop)
    };
    if let Err(failure) = environment {
        let _ = match previous_unit {
            Some(previous) => write_file(&paths.unit, &previous, Visibility::Readable),
            None => remove_file(&paths.unit).map(drop),
        };
        return Err(failure);
    }
    println!("wrote {}", paths.unit.display());
    let mut held = Vec::new();
    if agent.secret_store.is_some() {
        held.push("the --store URL, which holds a password".to_owned());
    }
    if !carried.is_empty() {
        let names: Vec<&str> = carried.iter().map(|(name, _)| *name).collect();
        held.push(format!("{}, set here", names.join(", ")));
    }
    if !held.is_empty() {
        println!("wrote {} (0600: {})", paths.env.display(), held.join("; "));
    }
    Ok(())
}

pub(super) fn uninstall(homes: &Homes) -> Result<(), Error> {
    let paths = Paths::new(homes);
    let broker_files = [&paths.socket, &paths.session_env];
    if !paths.unit.exists() && !paths.env.exists() && !broker_files.iter().any(|p| p.exists()) {
        println!(
            "no systemd user service to uninstall: {} does not exist",
            paths.unit.display()
        );
        return Ok(());
    }
    let created = recorded_dirs(&paths.unit);
    let manager = user_manager();
    let had_broker = paths.socket.exists();
    if manager.is_ok() {
        match systemctl(&["disable", "--now", UNIT_NAME]) {
            Ok(()) => println!("stopped and disabled {UNIT_NAME}"),
            // Still remove the files: that is what was asked for.
            Err(failure) => eprintln!("authstore: warning: {}", failure.report()),
        }
        if had_broker {
            let steps = [
                vec!["disable", "--now", SOCKET_NAME],
                vec!["unset-environment", authstore::authority::TOKEN_URL_ENV],
            ];
            for step in steps {
                if let Err(failure) = systemctl(&step) {
                    eprintln!("authstore: warning: {}", failure.report());
                }
            }
            println!("stopped and disabled {SOCKET_NAME}");
        }
    }
    for path in [&paths.unit, &paths.env, &paths.socket, &paths.session_env] {
        if remove_file(path)? {
            println!("removed {}", path.display());
        }
    }
    // `enable` links the unit into default.target.wants; `disable` unlinks it, but only through
    // a running manager. Without one, unlink it here, and drop the directory when it is empty.
    for (target, unit) in [("default", UNIT_NAME), ("sockets", SOCKET_NAME)] {
        let wants = paths.dir.join(format!("{target}.target.wants"));
        let link = wants.join(unit);
        if link.symlink_metadata().is_ok() && remove_file(&link)? {
            println!("removed {} (the link enable made)", link.display());
        }
        let _ = std::fs::remove_dir(&wants);
    }
    for dir in remove_created_dirs(&created) {
        println!("removed {} (install created it)", dir.display());
    }
    match manager {
        Ok(()) => systemctl(&["daemon-reload"])?,
        Err(why) => println!("{why}, so nothing was stopped or disabled"),
    }
    Ok(())
}

pub(super) fn state(homes: &Homes) -> ServiceState {
    let paths = Paths::new(homes);
    let installed = paths.unit.exists();
    let mut state = ServiceState {
        kind: Kind::Systemd,
        path: paths.unit,
        installed,
        enabled: None,
        running: None,
        note: None,
    };
    match user_manager() {
        Err(why) => state.note = Some(why),
        Ok(()) => {
            let enabled = Tool::run("systemctl", ["--user", "is-enabled", UNIT_NAME]);
            state.enabled = enabled.stdout().map(|answer| answer.starts_with("enabled"));
            let active = Tool::run("systemctl", ["--user", "is-active", UNIT_NAME]);
            state.running = active
                .stdout()
                .map(|answer| matches!(answer, "active" | "reloading"));
        }
    }
    state
}

/// Whether a systemd user manager answers; if not, why not (for the message).
fn user_manager() -> Result<(), String> {
    match Tool::run("systemctl", ["--user", "is-system-running"]) {
        Tool::Missing => Err("systemctl is not on PATH".to_owned()),
        Tool::Ran { stdout, .. } => {
            match stdout.lines().last().unwrap_or_default().trim() {
                "running" | "degraded" | "starting" | "initializing" | "maintenance" => Ok(()),
                // "offline", "stopping", or a message about the bus.
                _ => Err("no systemd user manager is running".to_owned()),
            }
        }
    }
}

fn systemctl(args: &[&str]) -> Result<(), Error> {
    let command = format!("systemctl --user {}", args.join(" "));
    Tool::run(
        "systemctl",
        std::iter::once("--user").chain(args.iter().copied()),
    )
    .require(&command)
    .map(drop)
}

fn recorded_dirs(unit: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(unit)
        .map(|text| decode_dirs(&text))
        .unwrap_or_default()
}

/// One word of `ExecStart=`: quoted when it holds anything but plain characters, `%` and (in
/// arguments) `$` doubled.
fn exec_word(word: &str, is_program: bool) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:=@".contains(c);
    let mut escaped = String::new();
    for c in word.chars() {
        match c {
            '%' => escaped.push_str("%%"),
            '$' if !is_program => escaped.push_str("$$"),
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            c if c.is_ascii_control() => escaped.push_str(&format!("\\x{:02x}", c as u32)),
            c => escaped.push(c),
        }
    }
    if !word.is_empty() && word.chars().all(plain) {
        escaped
    } else {
        format!("\"{escaped}\"")
    }
}

/// A path in a unit setting that takes it whole: only specifiers need escaping.
fn escape_specifiers(value: &str) -> String {
    value.replace('%', "%%")
}

/// `AUTHSTORE_STORE="..."` and `NAME="..."` for each carried setting, read back by systemd's
/// environment-file parser as the values.
fn environment_file(
    secret_store: Option<&str>,
    settings: &[(&str, &str)],
) -> Result<Vec<u8>, Error> {
    if secret_store.is_some_and(|url| url.chars().any(char::is_control)) {
        return Err(Error::invalid_input(
            "the --store URL contains a control character (a line break?); give it on one line",
        ));
    }
    let mut text = format!(
        "# The authstore agent's environment ({UNIT_NAME}, EnvironmentFile=). 0600: it may hold \
         a password.\n"
    );
    let assignments = secret_store
        .map(|url| ("AUTHSTORE_STORE", url))
        .into_iter()
        .chain(settings.iter().copied());
    for (name, value) in assignments {
        // Settings with control characters are not carried (see `Setting::from_env`).
        if value.chars().any(char::is_control) {
            continue;
        }
        text += &format!("{name}=\"{}\"\n", double_quoted(value));
    }
    Ok(text.into_bytes())
}

/// The inside of a double-quoted value in an environment file: `"`, `\`, `` ` `` and `$`
/// backslash-escaped (the shell's rules, which systemd's parser follows).
fn double_quoted(value: &str) -> String {
    let mut quoted = String::new();
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an `ExecStart=` word back by systemd's documented rules (quotes, C escapes, `%%`,
    /// `$$`): the inverse that `exec_word` must satisfy.
    fn systemd_reads(word: &str, is_program: bool) -> String {
        let inner = word
            .strip_prefix('"')
            .and_then(|w| w.strip_suffix('"'))
            .unwrap_or(word);
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next().unwrap() {
                    'x' => {
                        let hex: String = chars.by_ref().take(2).collect();
                        out.push(u8::from_str_radix(&hex, 16).unwrap() as char);
                    }
                    other => out.push(other),
                },
                '%' => {
                    assert_eq!(chars.next(), Some('%'), "a lone % is a specifier");
                    out.push('%');
                }
                '$' if !is_program => {
                    assert_eq!(chars.next(), Some('$'), "a lone $ is a variable");
                    out.push('$');
                }
                c => {
                    assert!(
                        word.starts_with('"') || !c.is_whitespace(),
                        "unquoted space"
                    );
                    out.push(c);
                }
            }
        }
        out
    }

    #[test]
    fn exec_words_round_trip_by_systemds_rules() {
        for word in [
            "/home/a b/100% sure/.codex",
            "/home/$USER/${X}/.codex",
            "back\\slash \"quoted\" 'single'",
            "tab\there",
            ";",
            "",
            "plain/path-1.0:x=y@z",
        ] {
            for is_program in [false, true] {
                let escaped = exec_word(word, is_program);
                assert_eq!(systemd_reads(&escaped, is_program), word, "{escaped}");
            }
        }
        assert_eq!(exec_word("/usr/bin/authstore", true), "/usr/bin/authstore");
        assert_eq!(exec_word("a$b", true), "\"a$b\"");
        assert_eq!(exec_word("a$b", false), "\"a$$b\"");
        assert_eq!(exec_word(";", false), "\";\"");
    }

    #[test]
    fn the_environment_file_quotes_what_the_shell_and_systemd_would_expand() {
        let text = String::from_utf8(
            environment_file(
                Some("postgres://u:p\"a$s`s\\w@h/db"),
                &[("HTTPS_PROXY", "http://u:p$w@proxy:3128")],
            )
            .unwrap(),
        )
        .unwrap();
        assert!(text.contains(r#"AUTHSTORE_STORE="postgres://u:p\"a\$s\`s\\w@h/db""#));
        assert!(text.contains(r#"HTTPS_PROXY="http://u:p\$w@proxy:3128""#));
        assert!(environment_file(Some("postgres://u:p@h/db\nX=1"), &[]).is_err());
    }
}
