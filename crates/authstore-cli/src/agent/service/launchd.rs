//! The agent as a launchd LaunchAgent (macOS): `~/Library/LaunchAgents/dev.authstore.agent.plist`,
//! loaded with `launchctl bootstrap gui/$UID`.
//!
//! The label is reverse-DNS because launchd labels share one namespace per user and that is
//! Apple's convention for keeping them unique (`com.apple.*`, `homebrew.mxcl.*`); nothing
//! resolves it. The file is named after the label, as launchd expects.
//!
//! The plist: `ProgramArguments` (this binary's absolute path first, then every option
//! explicit), `RunAtLoad` (start at login and at bootstrap), `KeepAlive` (start again whenever
//! it exits; launchd throttles restarts to one per 10 s), both output streams appended to
//! `~/Library/Logs/authstore-agent.log`. Every string is XML-escaped (`&`, `<`, `>`, `"`, `'`);
//! control characters, which XML 1.0 cannot hold, are refused before anything is written.
//!
//! launchd has no environment file, and `EnvironmentVariables` would put a store password into
//! the plist in clear. So a `--store` URL that holds a password is written to
//! `~/Library/Application Support/authstore/agent-store-url` (0600), and the agent reads it
//! with `--store-file`. The settings of `SERVICE_ENVIRONMENT` (proxies, Codex's overrides) are
//! not copied into the plist either: install and `--print` name each one set, on stderr, as one
//! the agent will not see, and suggest `launchctl setenv` (not verified here to reach an agent
//! bootstrapped afterwards, though that is what it is documented to do).
//!
//! Install: `launchctl print gui/$UID/dev.authstore.agent` tells whether it is loaded; if so
//! `launchctl bootout` first (so that the new plist is the one that runs), then `launchctl
//! enable` (undoes an earlier `launchctl disable`, which would make bootstrap fail) and
//! `launchctl bootstrap gui/$UID <plist>`, tried up to 10 times 300 ms apart while it fails
//! (after a bootout launchd may still be removing the label: "Bootstrap failed: 5: Input/output
//! error"). Uninstall: `bootout`, then the files go. Status:
//! loaded and `state = running` in `launchctl print`; disabled per `launchctl print-disabled`.
//!
//! With `--broker` the agent is also the user's Codex token endpoint on a fixed loopback port,
//! and the plist gets a `Sockets` entry `Broker` for that address (`SockNodeName`,
//! `SockServiceName`, `SockType` stream, `SockFamily` IPv4 or IPv6 as the address is): launchd
//! binds the port when the agent is loaded, at login, and holds it for the whole session whether
//! the agent is running or not, so that no other local user's process can take it between two
//! runs; the broker takes the socket with `launch_activate_socket`. The session's token URL is
//! set by a second LaunchAgent, `dev.authstore.broker-environment.plist`, which runs `launchctl
//! setenv CODEX_REFRESH_TOKEN_URL_OVERRIDE <url>` at load (the usual way to give every program of
//! a GUI session a variable from login on); install bootstraps it and runs the same `setenv` for
//! the session already open. Uninstall, and a reinstall without `--broker`, run `launchctl
//! unsetenv`, boot that agent out and remove its plist.
//!
//! Not verified: no macOS here. The plist is parsed by Python's `plistlib` (the keys and values
//! launchd reads) and the launchctl commands are those a stand-in `launchctl` records
//! (the `agent_service` tests); that launchd accepts them and starts the agent is not run. The
//! wording of `launchctl print` (`state = running`) is launchd's on macOS 11 to 14 as documented
//! by its output, not checked against a real system here.

use std::path::{Path, PathBuf};

use authstore::error::Error;
use authstore::store::file::Visibility;

use super::{
    AgentCommand, BrokerService, Homes, Kind, ServiceState, Tool, create_dirs, decode_dirs,
    remove_created_dirs, remove_file, store_file_contents, write_file, xml_created_dirs_comment,
};

pub(super) const LABEL: &str = "dev.authstore.agent";

/// The LaunchAgent that sets the session's token URL to the broker (`install --broker`).
pub(super) const ENVIRONMENT_LABEL: &str = "dev.authstore.broker-environment";

/// The key of the broker's socket in `Sockets`, which the broker asks launchd for by name.
const SOCKET_NAME: &str = "Broker";

struct Paths {
    plist: PathBuf,
    /// The broker's session environment agent ([`ENVIRONMENT_LABEL`]).
    environment: PathBuf,
    log: PathBuf,
    store_file: PathBuf,
}

impl Paths {
    fn new(homes: &Homes) -> Self {
        let library = homes.home.join("Library");
        let agents = library.join("LaunchAgents");
        Self {
            plist: agents.join(format!("{LABEL}.plist")),
            environment: agents.join(format!("{ENVIRONMENT_LABEL}.plist")),
            log: library.join("Logs").join("authstore-agent.log"),
            store_file: library
                .join("Application Support")
                .join("authstore")
                .join("agent-store-url"),
        }
    }
}

/// The LaunchAgent plist for one agent command.
pub(super) struct Agent<'a> {
    agent: &'a AgentCommand,
    paths: Paths,
    created: &'a [PathBuf],
}

impl<'a> Agent<'a> {
    pub(super) fn new(homes: &Homes, agent: &'a AgentCommand, created: &'a [PathBuf]) -> Self {
        Self {
            agent,
            paths: Paths::new(homes),
            created,
        }
    }

    pub(super) fn render(&self) -> String {
        let mut plist = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
             <!-- The authstore agent: keeps the Codex tokens fresh ahead of Codex's own refresh.\n     \
             Written by `authstore agent install`; `authstore agent uninstall` removes it. -->\n",
        );
        if !self.created.is_empty() {
            plist += &xml_created_dirs_comment(self.created);
        }
        let store_file = self
            .agent
            .secret_store
            .as_ref()
            .map(|_| self.paths.store_file.display().to_string());
        if store_file.is_some() {
            plist += "<!-- The store URL holds a password: the agent reads it from the 0600 file named after\n     \
                      store-file below, which `authstore agent install` writes (the print option does not). -->\n";
        }
        plist += "<plist version=\"1.0\">\n<dict>\n";
        plist += &format!("\t<key>Label</key>\n\t<string>{LABEL}</string>\n");
        plist += "\t<key>ProgramArguments</key>\n\t<array>\n";
        let arguments = self.agent.arguments_with_store_file(store_file.as_deref());
        for argument in std::iter::once(&self.agent.program).chain(&arguments) {
            plist += &format!("\t\t<string>{}</string>\n", xml_escape(argument));
        }
        plist +=
            "\t</array>\n\t<key>RunAtLoad</key>\n\t<true/>\n\t<key>KeepAlive</key>\n\t<true/>\n";
        let log = xml_escape(&self.paths.log.display().to_string());
        plist += &format!(
            "\t<key>StandardOutPath</key>\n\t<string>{log}</string>\n\
             \t<key>StandardErrorPath</key>\n\t<string>{log}</string>\n"
        );
        if let Some(broker) = &self.agent.broker {
            // launchd binds the broker's port at load and holds it until logout, so that it is
            // never free for another user's process while the agent is not running.
            let family = if broker.listen.is_ipv6() {
                "IPv6"
            } else {
                "IPv4"
            };
            plist += &format!(
                "\t<key>Sockets</key>\n\t<dict>\n\t\t<key>{SOCKET_NAME}</key>\n\t\t<dict>\n\
                 \t\t\t<key>SockNodeName</key>\n\t\t\t<string>{node}</string>\n\
                 \t\t\t<key>SockServiceName</key>\n\t\t\t<string>{port}</string>\n\
                 \t\t\t<key>SockType</key>\n\t\t\t<string>stream</string>\n\
                 \t\t\t<key>SockFamily</key>\n\t\t\t<string>{family}</string>\n\
                 \t\t</dict>\n\t</dict>\n",
                node = broker.listen.ip(),
                port = broker.listen.port(),
            );
        }
        plist += "</dict>\n</plist>\n";
        plist
    }
}

/// The LaunchAgent that points every program of the GUI session at the broker: it runs
/// `launchctl setenv` once at each login.
pub(super) fn environment_plist(broker: &BrokerService) -> String {
    let name = authstore::authority::TOKEN_URL_ENV;
    // "the broker option", not its flag: an XML comment cannot hold two hyphens in a row.
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Codex sends its refreshes to the authstore broker: sets {name} for the GUI session at login.\n     \
         Written by `authstore agent install` with the broker option; `authstore agent uninstall`\n     removes it. -->\n\
         <plist version=\"1.0\">\n<dict>\n\
         \t<key>Label</key>\n\t<string>{ENVIRONMENT_LABEL}</string>\n\
         \t<key>ProgramArguments</key>\n\t<array>\n\
         \t\t<string>/bin/launchctl</string>\n\t\t<string>setenv</string>\n\
         \t\t<string>{name}</string>\n\t\t<string>{url}</string>\n\
         \t</array>\n\t<key>RunAtLoad</key>\n\t<true/>\n</dict>\n</plist>\n",
        url = xml_escape(&broker.url),
    )
}

pub(super) fn install(homes: &Homes, agent: &AgentCommand) -> Result<(), Error> {
    let paths = Paths::new(homes);
    let mut created = recorded_dirs(&paths.plist);
    for file in [&paths.plist, &paths.log] {
        created.extend(create_dirs(parent(file))?);
    }
    match &agent.secret_store {
        Some(url) => {
            created.extend(create_dirs(parent(&paths.store_file))?);
            write_file(
                &paths.store_file,
                &store_file_contents(url),
                Visibility::Private,
            )?;
            println!(
                "wrote {} (0600: the --store URL, which holds a password)",
                paths.store_file.display()
            );
        }
        None => {
            remove_file(&paths.store_file)?;
        }
    }
    let plist = Agent::new(homes, agent, &created).render();
    write_file(&paths.plist, plist.as_bytes(), Visibility::Readable)?;
    println!("wrote {}", paths.plist.display());
    let had_broker = paths.environment.exists();
    if let Some(broker) = &agent.broker {
        write_file(
            &paths.environment,
            environment_plist(broker).as_bytes(),
            Visibility::Readable,
        )?;
        println!("wrote {}", paths.environment.display());
    }
    let domain = gui_domain();
    let service = format!("{domain}/{LABEL}");
    let plist_path = paths.plist.display().to_string();
    match Tool::run("launchctl", ["print", &service]) {
        Tool::Missing => println!(
            "launchctl is not on PATH, so {LABEL} is written but not loaded; to load and start \
             it: launchctl bootstrap {domain} '{plist_path}'"
        ),
        Tool::Ran { success, .. } => {
            if success {
                launchctl(&["bootout", &service])?;
            }
            launchctl(&["enable", &service])?;
            bootstrap(&domain, &plist_path)?;
            println!("loaded and started {LABEL}; see it with: launchctl print {service}");
        }
    }
    match &agent.broker {
        Some(broker) => load_environment(&domain, &paths, broker)?,
        None if had_broker => remove_environment(&domain, &paths)?,
        None => {}
    }
    Ok(())
}

/// Points the session at the broker: now (`launchctl setenv`) and at every login (the
/// environment agent, loaded again so that launchd runs the plist just written).
fn load_environment(domain: &str, paths: &Paths, broker: &BrokerService) -> Result<(), Error> {
    let name = authstore::authority::TOKEN_URL_ENV;
    let service = format!("{domain}/{ENVIRONMENT_LABEL}");
    let plist = paths.environment.display().to_string();
    match Tool::run("launchctl", ["setenv", name, &broker.url]) {
        Tool::Missing => println!(
            "launchctl is not on PATH, so the session's {name} is unchanged; to set it: \
             launchctl setenv {name} {url} && launchctl bootstrap {domain} '{plist}'",
            url = broker.url
        ),
        ran => {
            ran.require(&format!("launchctl setenv {name} {}", broker.url))?;
            if matches!(
                Tool::run("launchctl", ["print", &service]),
                Tool::Ran { success: true, .. }
            ) {
                launchctl(&["bootout", &service])?;
            }
            launchctl(&["enable", &service])?;
            bootstrap(domain, &plist)?;
            println!(
                "set {name}={} for this session and every login ({ENVIRONMENT_LABEL})",
                broker.url
            );
        }
    }
    Ok(())
}

/// Takes the broker's token URL back out of the session and removes the environment agent.
fn remove_environment(domain: &str, paths: &Paths) -> Result<(), Error> {
    let name = authstore::authority::TOKEN_URL_ENV;
    let service = format!("{domain}/{ENVIRONMENT_LABEL}");
    match Tool::run("launchctl", ["unsetenv", name]) {
        Tool::Missing => println!(
            "launchctl is not on PATH, so the session's {name} stays; to remove it: launchctl unsetenv {name}"
        ),
        ran => {
            ran.require(&format!("launchctl unsetenv {name}"))?;
            if matches!(
                Tool::run("launchctl", ["print", &service]),
                Tool::Ran { success: true, .. }
            ) {
                launchctl(&["bootout", &service])?;
            }
            println!("removed {name} from the session and unloaded {ENVIRONMENT_LABEL}");
        }
    }
    if remove_file(&paths.environment)? {
        println!("removed {}", paths.environment.display());
    }
    Ok(())
}

pub(super) fn uninstall(homes: &Homes) -> Result<(), Error> {
    let paths = Paths::new(homes);
    if !paths.plist.exists() && !paths.store_file.exists() && !paths.environment.exists() {
        println!(
            "no launchd agent to uninstall: {} does not exist",
            paths.plist.display()
        );
        return Ok(());
    }
    let created = recorded_dirs(&paths.plist);
    let service = format!("{}/{LABEL}", gui_domain());
    match Tool::run("launchctl", ["print", &service]) {
        Tool::Missing => println!("launchctl is not on PATH, so nothing was stopped"),
        Tool::Ran { success: false, .. } => {}
        Tool::Ran { success: true, .. } => match launchctl(&["bootout", &service]) {
            Ok(()) => println!("stopped and unloaded {LABEL}"),
            // Still remove the files: that is what was asked for.
            Err(failure) => eprintln!("authstore: warning: {}", failure.report()),
        },
    }
    if paths.environment.exists() {
        remove_environment(&gui_domain(), &paths)?;
    }
    for path in [&paths.plist, &paths.store_file, &paths.log] {
        if remove_file(path)? {
            println!("removed {}", path.display());
        }
    }
    for dir in remove_created_dirs(&created) {
        println!("removed {} (install created it)", dir.display());
    }
    Ok(())
}

pub(super) fn state(homes: &Homes) -> ServiceState {
    let paths = Paths::new(homes);
    let installed = paths.plist.exists();
    let mut state = ServiceState {
        kind: Kind::Launchd,
        path: paths.plist,
        installed,
        enabled: None,
        running: None,
        note: None,
    };
    let domain = gui_domain();
    match Tool::run("launchctl", ["print", &format!("{domain}/{LABEL}")]) {
        Tool::Missing => state.note = Some("launchctl is not on PATH".to_owned()),
        Tool::Ran {
            success, stdout, ..
        } => {
            state.running = Some(success && stdout.contains("state = running"));
            let disabled = Tool::run("launchctl", ["print-disabled", &domain])
                .stdout()
                .is_some_and(|listing| {
                    listing.lines().any(|line| {
                        line.contains(&format!("\"{LABEL}\""))
                            && (line.contains("=> disabled") || line.contains("=> true"))
                    })
                });
            state.enabled = Some(installed && !disabled);
        }
    }
    state
}

/// How many times install tries `launchctl bootstrap`, and how long it waits between tries.
const BOOTSTRAP_ATTEMPTS: u32 = 10;
const BOOTSTRAP_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

/// `launchctl bootstrap DOMAIN PLIST`, tried again while it fails: right after `bootout`,
/// launchd may still be removing the label, and bootstrap then fails ("Bootstrap failed: 5:
/// Input/output error"). Fails with the last attempt's error after [`BOOTSTRAP_ATTEMPTS`].
fn bootstrap(domain: &str, plist: &str) -> Result<(), Error> {
    let args = ["bootstrap", domain, plist];
    let mut attempt = 1;
    loop {
        match launchctl(&args) {
            Ok(()) => return Ok(()),
            Err(failure) if attempt >= BOOTSTRAP_ATTEMPTS => {
                return Err(Error::system(format!(
                    "{} (tried {attempt} times, {} ms apart)",
                    failure.report(),
                    BOOTSTRAP_RETRY_DELAY.as_millis()
                )));
            }
            Err(_) => {
                attempt += 1;
                std::thread::sleep(BOOTSTRAP_RETRY_DELAY);
            }
        }
    }
}

fn launchctl(args: &[&str]) -> Result<(), Error> {
    let command = format!("launchctl {}", args.join(" "));
    Tool::run("launchctl", args).require(&command).map(drop)
}

/// The user's GUI session domain, `gui/UID`.
fn gui_domain() -> String {
    #[cfg(unix)]
    {
        // SAFETY: getuid(2) cannot fail and touches no memory of ours.
        let uid = unsafe { libc::getuid() };
        format!("gui/{uid}")
    }
    #[cfg(not(unix))]
    {
        "gui/$(id -u)".to_owned()
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

fn recorded_dirs(plist: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(plist)
        .map(|text| decode_dirs(&text))
        .unwrap_or_default()
}

/// Text for an XML element or attribute (the caller has refused control characters).
pub(super) fn xml_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_covers_the_five_markup_characters() {
        assert_eq!(
            xml_escape(r#"a&b<c>d"e'f"#),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f"
        );
    }
}
