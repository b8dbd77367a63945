#![cfg(unix)] // the stand-in service tools are shell scripts; file modes are Unix's
//! `authstore agent install | uninstall | status`: the service definitions are what systemd,
//! launchd and Task Scheduler read, install and uninstall run the service manager's commands and
//! leave nothing behind, a store password reaches no definition, and settings that live only in
//! the environment (a proxy with its password) reach systemd's 0600 file or a warning, never a
//! definition.
//!
//! Every run of the real binary gets a temporary HOME and XDG_CONFIG_HOME, an emptied
//! environment, and a PATH that holds only stand-in `systemctl` / `launchctl` scripts (which
//! record their arguments) or nothing at all: no real service manager is ever asked anything.
//! systemd's own parser (`systemd-analyze verify --user`) checks the unit; Python's `plistlib`
//! and `xml.etree` parse the plist and the task XML.

//!
//! This module holds the fixture: [`Sandbox`] (the temporary user, its stand-in tools, the binary
//! run in it), the readers of the definitions (systemd's own, Python's) and the settings the
//! tests put in the environment. The tests, by platform and topic:
//!
//! - [`systemd`]: the unit as systemd reads it, install and uninstall with and without a user
//!   manager, a failed install, and the environment file that carries settings;
//! - [`launchd`]: the plist as launchd reads it, bootstrap and bootout, and the retried bootstrap;
//! - [`windows_task`]: the Task Scheduler XML, and the UTF-16 file install writes;
//! - [`every_service`]: what holds for every service manager: no store password and no setting
//!   of the environment in any definition, the service's command line reaching the store, and
//!   the Codex home made absolute;
//! - [`store_file`]: `--store-file`, which the definitions use to read the password from a 0600
//!   file.

mod every_service;
mod launchd;
mod store_file;
mod systemd;
mod windows_task;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use authstore_testkit::binary::bin;
use authstore_testkit::process::{BOUND, finish_bounded, run_bounded};
use serde_json::Value;

const UNIT: &str = "authstore-agent.service";
const LABEL: &str = "dev.authstore.agent";
/// A store URL with a password, holding characters every quoting scheme must get right.
const SECRET_URL: &str = "postgres://alice:s3cret-pw\"$x`\\y@db.example.com/auth";
const PASSWORD: &str = "s3cret-pw";

/// The binary under test (the testkit's: this build's, or `AUTHSTORE_TEST_BINARY`), as the
/// definitions name it: an absolute path without links.
fn binary() -> PathBuf {
    std::fs::canonicalize(bin()).unwrap()
}

/// A temporary user: `root/home` is HOME, `root/xdg` XDG_CONFIG_HOME (not created), `root/tools`
/// the PATH, `root/calls` what the stand-in tools were asked.
struct Sandbox {
    root: tempfile::TempDir,
    program: PathBuf,
}

/// Records its arguments; answers like systemd with a running user manager (or the state
/// `$FAKE_MANAGER` names); `enable --now` copies the unit it finds, as a started service,
/// and links it into default.target.wants as systemctl does (`disable` unlinks it).
const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
printf 'systemctl %s\n' "$*" >> "$CALLS"
case "$*" in
  "--user is-system-running") echo "${FAKE_MANAGER:-running}" ;;
  "--user is-enabled authstore-agent.service") if [ -f "$STARTED" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  "--user is-active authstore-agent.service") if [ -f "$STARTED" ]; then echo active; else echo inactive; exit 3; fi ;;
  "--user enable --now authstore-agent.service")
    /bin/cp "$XDG_CONFIG_HOME/systemd/user/authstore-agent.service" "$STARTED"
    /bin/mkdir -p "$XDG_CONFIG_HOME/systemd/user/default.target.wants"
    /bin/ln -s ../authstore-agent.service "$XDG_CONFIG_HOME/systemd/user/default.target.wants/" ;;
  "--user disable --now authstore-agent.service")
    /bin/rm -f "$STARTED" "$XDG_CONFIG_HOME/systemd/user/default.target.wants/authstore-agent.service" ;;
  "--user enable --now authstore-agent.socket")
    /bin/mkdir -p "$XDG_CONFIG_HOME/systemd/user/sockets.target.wants"
    /bin/ln -s ../authstore-agent.socket "$XDG_CONFIG_HOME/systemd/user/sockets.target.wants/" ;;
  "--user disable --now authstore-agent.socket")
    /bin/rm -f "$XDG_CONFIG_HOME/systemd/user/sockets.target.wants/authstore-agent.socket" ;;
esac
exit 0
"#;

/// Records its arguments; `bootstrap` copies the plist it is given, as a loaded agent (the
/// broker's environment agent apart from the agent), except
/// that the first `$FAIL_BOOTSTRAPS` bootstraps (counted in `$CALLS`) fail as launchd does while
/// it is still removing a label that was booted out.
const FAKE_LAUNCHCTL: &str = r#"#!/bin/sh
printf 'launchctl %s\n' "$*" >> "$CALLS"
# The broker's environment agent is loaded into $STARTED.env, the agent into $STARTED.
case "$2$3" in *broker-environment*) loaded="$STARTED.env" ;; *) loaded="$STARTED" ;; esac
case "$1" in
  print) [ -f "$loaded" ] || { echo "Could not find service" >&2; exit 113; }; echo "state = running" ;;
  print-disabled) printf 'disabled services = {\n}\n' ;;
  bootstrap)
    tries=0
    while read -r call; do case "$call" in "launchctl bootstrap "*) tries=$((tries + 1)) ;; esac; done < "$CALLS"
    if [ "$tries" -le "${FAIL_BOOTSTRAPS:-0}" ]; then
      echo "Bootstrap failed: 5: Input/output error" >&2; exit 5
    fi
    /bin/cp "$3" "$loaded" ;;
  bootout) /bin/rm -f "$loaded" ;;
esac
exit 0
"#;

impl Sandbox {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["home", "tools"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        Self {
            root,
            program: binary(),
        }
    }

    /// The same, running a link to the binary at `dir` (inside the sandbox).
    #[cfg(target_os = "linux")] // for systemd-analyze
    fn with_program_in(dir: &str) -> Self {
        let mut sandbox = Self::new();
        let dir = sandbox.root.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("authstore");
        if std::fs::hard_link(binary(), &program).is_err() {
            std::fs::copy(binary(), &program).unwrap();
        }
        sandbox.program = program;
        sandbox
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn home(&self) -> PathBuf {
        self.path("home")
    }

    fn unit_path(&self) -> PathBuf {
        self.path("xdg/systemd/user").join(UNIT)
    }

    fn plist_path(&self) -> PathBuf {
        self.home()
            .join("Library/LaunchAgents")
            .join(format!("{LABEL}.plist"))
    }

    fn install_tool(&self, name: &str, script: &str) {
        let path = self.path("tools").join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .env_clear()
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.path("xdg"))
            .env("PATH", self.path("tools"))
            .env("CALLS", self.path("calls"))
            .env("STARTED", self.path("started"))
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command(args))
    }

    /// Runs and expects exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "authstore {args:?}: exit {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn status(&self, kind: &str) -> Value {
        serde_json::from_str(&self.ok(&["agent", "status", "--json", "--service", kind])).unwrap()
    }

    /// What the stand-in tools were asked, one line per call; and forgets it.
    fn take_calls(&self) -> Vec<String> {
        let calls = std::fs::read_to_string(self.path("calls")).unwrap_or_default();
        let _ = std::fs::remove_file(self.path("calls"));
        calls.lines().map(str::to_owned).collect()
    }

    /// Every file and directory under HOME and XDG_CONFIG_HOME, with file contents.
    fn tree(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        let mut tree = BTreeMap::new();
        for top in [self.home(), self.path("xdg")] {
            collect(&top, &mut tree);
        }
        tree
    }
}

fn collect(path: &Path, tree: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return;
    };
    if metadata.file_type().is_symlink() {
        let target = std::fs::read_link(path).unwrap();
        tree.insert(
            path.to_owned(),
            Some(target.into_os_string().into_encoded_bytes()),
        );
    } else if metadata.is_dir() {
        tree.insert(path.to_owned(), None);
        for entry in std::fs::read_dir(path).unwrap() {
            collect(&entry.unwrap().path(), tree);
        }
    } else {
        tree.insert(path.to_owned(), Some(std::fs::read(path).unwrap()));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs python3 with `script`, `input` on stdin and `args`; returns its stdout.
fn python(script: &str, input: &[u8], args: &[&str]) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (the plist and XML parsers of these tests) is installed");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let output = finish_bounded(child);
    assert!(
        output.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Splits systemd's dump of a command line (double quotes, `\` before `"`, `\`, `` ` ``, `$`).
#[cfg(target_os = "linux")]
fn split_systemd_dump(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                ' ' if !quoted => break,
                '"' => quoted = !quoted,
                '\\' => word.push(chars.next().unwrap()),
                c => word.push(c),
            }
        }
        words.push(word);
    }
    words
}

/// Has systemd load `unit` (`systemd-analyze verify --user`, which fails on any error, such as
/// a program that is not there) and returns the command line as systemd parsed it, `$$`
/// substituted as at start, and what verify complained about at its normal log level.
#[cfg(target_os = "linux")]
fn systemd_reads(sandbox: &Sandbox, unit: &str) -> (Vec<String>, String) {
    systemd_reads_beside(sandbox, unit, &[])
}

/// [`systemd_reads`], with other units (name, contents) beside the unit, as install writes them.
#[cfg(target_os = "linux")]
fn systemd_reads_beside(
    sandbox: &Sandbox,
    unit: &str,
    beside: &[(&str, &str)],
) -> (Vec<String>, String) {
    let dir = tempfile::tempdir_in(sandbox.root.path()).unwrap();
    let unit_path = dir.path().join(UNIT);
    std::fs::write(&unit_path, unit).unwrap();
    for (name, contents) in beside {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let verify = |debug: bool| {
        let mut command = Command::new("systemd-analyze");
        command
            .args(["verify", "--user"])
            .arg(&unit_path)
            .env("HOME", sandbox.home())
            // A user manager's runtime directory: without one, --user cannot start as root.
            .env("XDG_RUNTIME_DIR", &runtime);
        if debug {
            command.env("SYSTEMD_LOG_LEVEL", "debug");
        }
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-analyze (the systemd package) is installed");
        finish_bounded(child)
    };
    let checked = verify(false);
    let complaints = String::from_utf8_lossy(&checked.stderr).into_owned();
    assert!(
        checked.status.success(),
        "systemd-analyze verify: {complaints}"
    );
    // systemd's dump of the unit it loaded shows the command line as it parsed it; `$$` is
    // substituted at start, in the arguments only.
    let debug = verify(true);
    let dump = String::from_utf8_lossy(&[debug.stdout, debug.stderr].concat()).into_owned();
    let parsed = dump
        .lines()
        .find_map(|line| line.trim().strip_prefix("Command Line: "))
        .expect("the debug dump shows the command line");
    let mut argv = split_systemd_dump(parsed);
    for argument in argv.iter_mut().skip(1) {
        *argument = argument.replace("$$", "$");
    }
    (argv, complaints)
}

/// The arguments every install writes after the program, with the Codex home `home`.
fn agent_arguments(home: &str, ahead: &str) -> Vec<String> {
    [
        "--codex-home",
        home,
        "--lock-timeout",
        "60",
        "--request-timeout",
        "20",
        "agent",
        "--ahead",
        ahead,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Settings that live only in the environment, as install finds them set: a proxy URL with a
/// password (and characters the environment file must quote), the token endpoint override.
const PROXY: &str = "http://bob:pr0xy-pw\"$x`\\@proxy.example:3128";
const PROXY_PASSWORD: &str = "pr0xy-pw";
const TOKEN_URL: &str = "http://127.0.0.1:9/oauth/token";

fn with_settings(mut command: Command) -> Command {
    command
        .env("HTTPS_PROXY", PROXY)
        .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", TOKEN_URL)
        .env("no_proxy", "localhost,127.0.0.1");
    command
}
