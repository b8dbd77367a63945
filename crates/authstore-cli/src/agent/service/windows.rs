//! The agent as a Windows Task Scheduler task, `authstore-agent`: started at the user's logon,
//! registered with `schtasks /Create /XML <file> /TN authstore-agent /F`, and started at once
//! with `schtasks /Run`.
//!
//! The task (schema 1.2, namespace `http://schemas.microsoft.com/windows/2004/02/mit/task`): a
//! `LogonTrigger` for the installing user (`%USERDOMAIN%\%USERNAME%`), running as that user
//! with their interactive token and least privilege; `RestartOnFailure` every minute, up to 999
//! times (the schema's limits: at least `PT1M`, at most 999); `ExecutionTimeLimit` `PT0S` (no
//! limit); `Hidden`; on batteries too; one instance at a time. `Command` is this binary's absolute
//! path; `Arguments` are quoted by the rules Windows programs split their command line with
//! (`CommandLineToArgvW`: a word with a space, a tab or a quote is wrapped in quotes, a quote is
//! written `\"` and backslashes before a quote are doubled).
//!
//! The file install writes (and keeps, as the record of the installation) is
//! `%LOCALAPPDATA%\authstore\agent-task.xml`, encoded UTF-16 little-endian with a byte-order mark
//! and declared `encoding="UTF-16"`: that is how Task Scheduler exports tasks, and the form
//! `schtasks /XML` is documented to read (a UTF-8 file is refused by some Windows versions).
//! `--print` writes the same task as UTF-8 text declared `encoding="UTF-8"`, because stdout is
//! UTF-8; install converts it. Task XML carries no environment variables, so a store URL with a
//! password goes into `%LOCALAPPDATA%\authstore\agent-store-url` and the agent reads it with
//! `--store-file`. A logon task gets the user's environment variables, not those of the shell
//! install runs in: install and `--print` name each setting of `SERVICE_ENVIRONMENT` set here,
//! on stderr, and suggest `setx` (it cannot tell whether one already is a user variable).
//!
//! With `--broker` the agent is also the user's Codex token endpoint on a fixed loopback port.
//! Task Scheduler has no socket activation, so nothing holds that port while the agent is not
//! running (before logon has started it, between a failure and the restart a minute later):
//! another local user's process could bind it then and receive the refresh tokens Codex sends.
//! `status` names the process holding the port on Linux only; on Windows it says that a
//! non-broker answers (or nothing does), not who. The session's token URL goes into the user
//! environment (`HKCU\Environment`) with `setx CODEX_REFRESH_TOKEN_URL_OVERRIDE <url>`, which
//! new logons and programs started afterwards get (not the shells already open); uninstall and a
//! reinstall without `--broker` remove it with `reg delete HKCU\Environment /v ... /f`, but only
//! when the task being replaced ran a broker, so that a value the user set is left alone.
//!
//! Not verified: there is no Windows here and Wine has no Task Scheduler. The XML is checked to be
//! well-formed with the namespace and the elements above (Python's `xml.etree`), not against
//! Microsoft's schema nor registered. Known limits, unverified: the agent is a console program,
//! so a logon task with an interactive token may show a console window (`Hidden` hides the task
//! in Task Scheduler's list, not the window); Task Scheduler documents `RestartOnFailure` for a
//! task that fails, and whether it counts a non-zero exit of a running program as such is not
//! checked; `schtasks /Query` output (the status `Running`) is read in English only, else the
//! state is reported as unknown.

use std::path::{Path, PathBuf};

use super::launchd::xml_escape;
use authstore::error::Error;
use authstore::store::file::Visibility;

use super::{
    AgentCommand, Homes, Kind, ServiceState, Tool, create_dirs, decode_dirs, remove_created_dirs,
    remove_file, store_file_contents, write_file, xml_created_dirs_comment,
};

pub(super) const TASK_NAME: &str = "authstore-agent";

struct Paths {
    task: PathBuf,
    store_file: PathBuf,
}

impl Paths {
    fn new(homes: &Homes) -> Self {
        let dir = homes.local_data.join("authstore");
        Self {
            task: dir.join("agent-task.xml"),
            store_file: dir.join("agent-store-url"),
        }
    }
}

/// The Task Scheduler task for one agent command.
pub(super) struct Task<'a> {
    agent: &'a AgentCommand,
    paths: Paths,
    created: Vec<PathBuf>,
}

impl<'a> Task<'a> {
    pub(super) fn new(homes: &Homes, agent: &'a AgentCommand) -> Self {
        Self {
            agent,
            paths: Paths::new(homes),
            created: Vec::new(),
        }
    }

    /// The task as UTF-8 text, for stdout.
    pub(super) fn render_utf8(&self) -> String {
        self.render("UTF-8")
    }

    /// The task as `schtasks /XML` reads it: UTF-16LE with a byte-order mark.
    fn render_utf16(&self) -> Vec<u8> {
        let text = self.render("UTF-16");
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        bytes
    }

    fn render(&self, encoding: &str) -> String {
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"{encoding}\"?>\n\
             <!-- The authstore agent: keeps the Codex tokens fresh ahead of Codex's own refresh.\n     \
             Written by `authstore agent install`; `authstore agent uninstall` removes it. -->\n"
        );
        if !self.created.is_empty() {
            xml += &xml_created_dirs_comment(&self.created);
        }
        let store_file = self
            .agent
            .secret_store
            .as_ref()
            .map(|_| self.paths.store_file.display().to_string());
        if store_file.is_some() {
            xml += "<!-- The store URL holds a password: the agent reads it from the 0600 file named after\n     \
                    store-file below, which `authstore agent install` writes (the print option does not). -->\n";
        }
        let user = current_user();
        let user_id = |indent: &str| match &user {
            Some(user) => format!("{indent}<UserId>{}</UserId>\n", xml_escape(user)),
            None => String::new(),
        };
        xml += "<Task version=\"1.2\" xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\">\n";
        xml += "  <RegistrationInfo>\n    <Description>The authstore agent: keeps the Codex tokens fresh ahead of Codex's own refresh.</Description>\n  </RegistrationInfo>\n";
        xml += "  <Triggers>\n    <LogonTrigger>\n      <Enabled>true</Enabled>\n";
        xml += &user_id("      ");
        xml += "    </LogonTrigger>\n  </Triggers>\n";
        xml += "  <Principals>\n    <Principal id=\"Author\">\n";
        xml += &user_id("      ");
        xml += "      <LogonType>InteractiveToken</LogonType>\n      <RunLevel>LeastPrivilege</RunLevel>\n    </Principal>\n  </Principals>\n";
        xml += "  <Settings>\n\
                \x20   <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n\
                \x20   <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n\
                \x20   <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n\
                \x20   <AllowHardTerminate>true</AllowHardTerminate>\n\
                \x20   <StartWhenAvailable>true</StartWhenAvailable>\n\
                \x20   <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>\n\
                \x20   <IdleSettings>\n\
                \x20     <StopOnIdleEnd>false</StopOnIdleEnd>\n\
                \x20     <RestartOnIdle>false</RestartOnIdle>\n\
                \x20   </IdleSettings>\n\
                \x20   <AllowStartOnDemand>true</AllowStartOnDemand>\n\
                \x20   <Enabled>true</Enabled>\n\
                \x20   <Hidden>true</Hidden>\n\
                \x20   <RunOnlyIfIdle>false</RunOnlyIfIdle>\n\
                \x20   <WakeToRun>false</WakeToRun>\n\
                \x20   <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>\n\
                \x20   <Priority>7</Priority>\n\
                \x20   <RestartOnFailure>\n\
                \x20     <Interval>PT1M</Interval>\n\
                \x20     <Count>999</Count>\n\
                \x20   </RestartOnFailure>\n\
                \x20 </Settings>\n";
        let arguments: Vec<String> = self
            .agent
            .arguments_with_store_file(store_file.as_deref())
            .iter()
            .map(|argument| command_line_word(argument))
            .collect();
        xml += &format!(
            "  <Actions Context=\"Author\">\n    <Exec>\n      <Command>{}</Command>\n      <Arguments>{}</Arguments>\n    </Exec>\n  </Actions>\n</Task>\n",
            xml_escape(&self.agent.program),
            xml_escape(&arguments.join(" "))
        );
        xml
    }
}

pub(super) fn install(homes: &Homes, agent: &AgentCommand) -> Result<(), Error> {
    let mut task = Task::new(homes, agent);
    task.created = recorded_dirs(&task.paths.task);
    task.created.extend(create_dirs(
        task.paths.task.parent().unwrap_or(Path::new(".")),
    )?);
    match &agent.secret_store {
        Some(url) => {
            write_file(
                &task.paths.store_file,
                &store_file_contents(url),
                Visibility::Private,
            )?;
            println!(
                "wrote {} (the --store URL, which holds a password)",
                task.paths.store_file.display()
            );
        }
        None => {
            remove_file(&task.paths.store_file)?;
        }
    }
    let had_broker = recorded_broker(&task.paths.task);
    write_file(&task.paths.task, &task.render_utf16(), Visibility::Readable)?;
    println!("wrote {}", task.paths.task.display());
    let file = task.paths.task.display().to_string();
    let create = ["/Create", "/XML", &file, "/TN", TASK_NAME, "/F"];
    match Tool::run("schtasks", create) {
        Tool::Missing => println!(
            "schtasks is not on PATH, so the task is written but not registered; to register \
             and start it: schtasks /Create /XML \"{file}\" /TN {TASK_NAME} /F && schtasks /Run /TN {TASK_NAME}"
        ),
        ran => {
            ran.require(&format!("schtasks {}", create.join(" ")))?;
            schtasks(&["/Run", "/TN", TASK_NAME])?;
            println!(
                "registered and started the task {TASK_NAME}; see it with: schtasks /Query /TN {TASK_NAME}"
            );
        }
    }
    match &agent.broker {
        Some(broker) => set_user_token_url(&broker.url)?,
        None if had_broker => remove_user_token_url()?,
        None => {}
    }
    Ok(())
}

/// The user environment's token URL (`HKCU\Environment`): what new logons and newly started
/// programs get, so every Codex started from then on sends its refreshes to the broker.
fn set_user_token_url(url: &str) -> Result<(), Error> {
    let name = authstore::authority::TOKEN_URL_ENV;
    match Tool::run("setx", [name, url]) {
        Tool::Missing => println!(
            "setx is not on PATH, so the user environment is unchanged; to point Codex at the \
             broker: setx {name} {url}"
        ),
        ran => {
            ran.require(&format!("setx {name} {url}"))?;
            println!(
                "set {name}={url} in the user environment (programs started from now on get it)"
            );
        }
    }
    Ok(())
}

/// Takes the broker's token URL back out of the user environment.
fn remove_user_token_url() -> Result<(), Error> {
    let name = authstore::authority::TOKEN_URL_ENV;
    let args = ["delete", r"HKCU\Environment", "/v", name, "/f"];
    match Tool::run("reg", args) {
        Tool::Missing => println!(
            "reg is not on PATH, so {name} stays in the user environment; to remove it: reg {}",
            args.join(" ")
        ),
        // Already absent (the user removed it) is what was wanted.
        Tool::Ran { success: false, .. } => {}
        Tool::Ran { .. } => println!("removed {name} from the user environment"),
    }
    Ok(())
}

/// Whether the task installed at `task` runs a broker (its arguments hold `--broker`).
fn recorded_broker(task: &Path) -> bool {
    read_task(task).is_some_and(|xml| {
        xml.split("<Arguments>")
            .nth(1)
            .and_then(|rest| rest.split("</Arguments>").next())
            .is_some_and(|arguments| arguments.split(' ').any(|word| word == "--broker"))
    })
}

pub(super) fn uninstall(homes: &Homes) -> Result<(), Error> {
    let paths = Paths::new(homes);
    let registered = matches!(
        Tool::run("schtasks", ["/Query", "/TN", TASK_NAME]),
        Tool::Ran { success: true, .. }
    );
    if !registered && !paths.task.exists() && !paths.store_file.exists() {
        println!(
            "no Task Scheduler task to uninstall: {TASK_NAME} is not registered and {} does not exist",
            paths.task.display()
        );
        return Ok(());
    }
    let created = recorded_dirs(&paths.task);
    let had_broker = recorded_broker(&paths.task);
    if registered {
        // Not running is fine: /End then fails, and the task is deleted all the same.
        let _ = Tool::run("schtasks", ["/End", "/TN", TASK_NAME]);
        schtasks(&["/Delete", "/TN", TASK_NAME, "/F"])?;
        println!("stopped and deleted the task {TASK_NAME}");
    }
    for path in [&paths.task, &paths.store_file] {
        if remove_file(path)? {
            println!("removed {}", path.display());
        }
    }
    for dir in remove_created_dirs(&created) {
        println!("removed {} (install created it)", dir.display());
    }
    if had_broker {
        remove_user_token_url()?;
    }
    Ok(())
}

pub(super) fn state(homes: &Homes) -> ServiceState {
    let paths = Paths::new(homes);
    let mut state = ServiceState {
        kind: Kind::Windows,
        installed: paths.task.exists(),
        path: paths.task,
        enabled: None,
        running: None,
        note: None,
    };
    match Tool::run(
        "schtasks",
        ["/Query", "/TN", TASK_NAME, "/FO", "CSV", "/NH"],
    ) {
        Tool::Missing => state.note = Some("schtasks is not on PATH".to_owned()),
        Tool::Ran { success: false, .. } => {
            state.enabled = Some(false);
            state.running = Some(false);
        }
        Tool::Ran { stdout, .. } => {
            state.installed = true;
            // "TaskName","Next Run Time","Status"
            let status = stdout
                .rsplit(',')
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"');
            match status {
                "Running" => (state.enabled, state.running) = (Some(true), Some(true)),
                "Ready" | "Queued" => (state.enabled, state.running) = (Some(true), Some(false)),
                "Disabled" => (state.enabled, state.running) = (Some(false), Some(false)),
                other => state.note = Some(format!("schtasks reports the status {other:?}")),
            }
        }
    }
    state
}

fn schtasks(args: &[&str]) -> Result<(), Error> {
    let command = format!("schtasks {}", args.join(" "));
    Tool::run("schtasks", args).require(&command).map(drop)
}

/// `DOMAIN\user` of the installing user, as the logon trigger and the principal name it.
fn current_user() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (var("USERDOMAIN"), var("USERNAME")) {
        (Some(domain), Some(user)) => Some(format!("{domain}\\{user}")),
        (None, Some(user)) => Some(user),
        _ => None,
    }
}

fn recorded_dirs(task: &Path) -> Vec<PathBuf> {
    read_task(task).map_or_else(Vec::new, |xml| decode_dirs(&xml))
}

/// The task file install wrote (UTF-16LE), as text.
fn read_task(task: &Path) -> Option<String> {
    let bytes = std::fs::read(task).ok()?;
    let units: Vec<u16> = bytes
        .strip_prefix(&[0xFF, 0xFE])
        .unwrap_or(&bytes)
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// One word of a Windows command line, as `CommandLineToArgvW` (and the C runtime) split it.
fn command_line_word(word: &str) -> String {
    if !word.is_empty() && !word.contains([' ', '\t', '\n', '\u{b}', '"']) {
        return word.to_owned();
    }
    let mut quoted = String::from("\"");
    let mut backslashes = 0;
    for c in word.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                quoted.push_str(&"\\".repeat(2 * backslashes + 1));
                quoted.push('"');
                backslashes = 0;
            }
            c => {
                quoted.push_str(&"\\".repeat(backslashes));
                quoted.push(c);
                backslashes = 0;
            }
        }
    }
    quoted.push_str(&"\\".repeat(2 * backslashes));
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a command line as `CommandLineToArgvW` documents (for arguments after the first).
    fn split(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek().is_none() {
                return words;
            }
            let (mut word, mut quoted, mut backslashes) = (String::new(), false, 0usize);
            while let Some(&c) = chars.peek() {
                if (c == ' ' || c == '\t') && !quoted {
                    break;
                }
                chars.next();
                match c {
                    '\\' => backslashes += 1,
                    '"' => {
                        word.push_str(&"\\".repeat(backslashes / 2));
                        if backslashes % 2 == 1 {
                            word.push('"');
                        } else {
                            quoted = !quoted;
                        }
                        backslashes = 0;
                    }
                    c => {
                        word.push_str(&"\\".repeat(backslashes));
                        word.push(c);
                        backslashes = 0;
                    }
                }
            }
            word.push_str(&"\\".repeat(backslashes));
            words.push(word);
        }
    }

    #[test]
    fn command_line_words_split_back_into_the_arguments() {
        let words = [
            r"C:\Users\A B\.codex",
            r"C:\trailing\",
            r#"say "hi"\"#,
            r"\\server\share\x",
            "",
            "plain",
        ];
        let line: Vec<String> = words.iter().map(|w| command_line_word(w)).collect();
        assert_eq!(split(&line.join(" ")), words);
        assert_eq!(command_line_word(r"C:\a\b"), r"C:\a\b");
    }
}
