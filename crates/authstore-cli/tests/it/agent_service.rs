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

#[cfg(feature = "postgres")]
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const UNIT: &str = "authstore-agent.service";
const LABEL: &str = "dev.authstore.agent";
/// A store URL with a password, holding characters every quoting scheme must get right.
const SECRET_URL: &str = "postgres://alice:s3cret-pw\"$x`\\y@db.example.com/auth";
const PASSWORD: &str = "s3cret-pw";

fn binary() -> PathBuf {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_authstore")).unwrap()
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
esac
exit 0
"#;

/// Records its arguments; `bootstrap` copies the plist it is given, as a loaded agent, except
/// that the first `$FAIL_BOOTSTRAPS` bootstraps (counted in `$CALLS`) fail as launchd does while
/// it is still removing a label that was booted out.
const FAKE_LAUNCHCTL: &str = r#"#!/bin/sh
printf 'launchctl %s\n' "$*" >> "$CALLS"
case "$1" in
  print) [ -f "$STARTED" ] || { echo "Could not find service" >&2; exit 113; }; echo "state = running" ;;
  print-disabled) printf 'disabled services = {\n}\n' ;;
  bootstrap)
    tries=0
    while read -r call; do case "$call" in "launchctl bootstrap "*) tries=$((tries + 1)) ;; esac; done < "$CALLS"
    if [ "$tries" -le "${FAIL_BOOTSTRAPS:-0}" ]; then
      echo "Bootstrap failed: 5: Input/output error" >&2; exit 5
    fi
    /bin/cp "$3" "$STARTED" ;;
  bootout) /bin/rm -f "$STARTED" ;;
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
        self.command(args).output().unwrap()
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
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (the plist and XML parsers of these tests) is installed");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
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
    let dir = tempfile::tempdir_in(sandbox.root.path()).unwrap();
    let unit_path = dir.path().join(UNIT);
    std::fs::write(&unit_path, unit).unwrap();
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
        command
            .output()
            .expect("systemd-analyze (the systemd package) is installed")
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

#[test]
#[cfg(target_os = "linux")]
fn the_printed_unit_passes_systemd_analyze_verify_and_systemd_reads_back_every_argument() {
    // The program and the Codex home in paths with spaces, %, $, quotes and backslashes: each
    // needs its own escape in ExecStart=, and verify fails when the program is not found.
    let sandbox = Sandbox::with_program_in("bin 100% $PATH");
    let codex_home = sandbox
        .path("Codex 100% $HOME \"q\" \\back 's")
        .display()
        .to_string();
    let store = "postgres://alice@db.example.com/auth?sslmode=require";
    let before = sandbox.tree();
    let unit = sandbox.ok(&[
        "agent",
        "install",
        "--print",
        "--service",
        "systemd",
        "--codex-home",
        &codex_home,
        "--store",
        store,
        "--store-key",
        "k;1 $x",
        "--ahead",
        "900",
    ]);
    assert_eq!(sandbox.tree(), before, "--print changes nothing on disk");
    assert!(unit.contains("\nRestart=on-failure\n"));
    assert!(unit.contains("\nWantedBy=default.target\n"));

    let (argv, complaints) = systemd_reads(&sandbox, &unit);
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    let mut expected = vec![sandbox.program.display().to_string()];
    let mut arguments = agent_arguments(&codex_home, "900");
    let agent = arguments.len() - 3;
    arguments.splice(
        agent..agent,
        ["--store", store, "--store-key", "k;1 $x"].map(str::to_owned),
    );
    expected.extend(arguments);
    assert_eq!(argv, expected);
}

#[test]
fn with_a_user_manager_install_enables_the_unit_and_uninstall_leaves_nothing_behind() {
    let sandbox = Sandbox::new();
    sandbox.install_tool("systemctl", FAKE_SYSTEMCTL);
    let codex_home = sandbox.home().join(".codex").display().to_string();
    let before = sandbox.tree();

    let said = sandbox.ok(&["agent", "install", "--service", "systemd", "--ahead", "700"]);
    assert!(said.contains("enabled and started"), "{said}");
    assert_eq!(
        sandbox.take_calls(),
        [
            "systemctl --user is-system-running",
            "systemctl --user daemon-reload",
            "systemctl --user enable --now authstore-agent.service",
        ]
    );
    let unit = std::fs::read_to_string(sandbox.unit_path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(sandbox.path("started")).unwrap(),
        unit,
        "the unit was complete when it was enabled"
    );
    assert_eq!(mode(&sandbox.unit_path()), 0o644);
    let exec = format!(
        "ExecStart={} {}\n",
        binary().display(),
        agent_arguments(&codex_home, "700").join(" ")
    );
    assert!(unit.contains(&exec), "{unit}");

    let status = sandbox.status("systemd");
    assert_eq!(status["installed"], true);
    assert_eq!(status["enabled"], true);
    assert_eq!(status["running"], true);
    assert_eq!(status["path"], sandbox.unit_path().display().to_string());
    assert!(status["agent"].is_null());
    sandbox.take_calls();

    // Installing again restarts a running agent, so that it runs the new unit.
    sandbox.ok(&["agent", "install", "--service", "systemd", "--ahead", "800"]);
    assert_eq!(
        sandbox.take_calls().last().unwrap(),
        "systemctl --user try-restart authstore-agent.service"
    );

    let said = sandbox.ok(&["agent", "uninstall", "--service", "systemd"]);
    assert!(said.contains("removed"), "{said}");
    assert_eq!(
        sandbox.take_calls(),
        [
            "systemctl --user is-system-running",
            "systemctl --user disable --now authstore-agent.service",
            "systemctl --user daemon-reload",
        ]
    );
    assert_eq!(
        sandbox.tree(),
        before,
        "install then uninstall leaves nothing behind"
    );
    let status = sandbox.status("systemd");
    assert_eq!(
        (&status["installed"], &status["enabled"]),
        (&false.into(), &false.into())
    );

    sandbox.take_calls();

    // Nothing installed: a clear message, exit 0, and no command run.
    let said = sandbox.ok(&["agent", "uninstall", "--service", "systemd"]);
    assert!(
        said.contains("no systemd user service to uninstall"),
        "{said}"
    );
    assert!(sandbox.take_calls().is_empty());
}

#[test]
fn without_a_user_manager_install_writes_the_unit_and_says_how_to_enable_it() {
    // No systemctl at all.
    let sandbox = Sandbox::new();
    let before = sandbox.tree();
    let output = sandbox.run(&["agent", "install", "--service", "systemd"]);
    assert_eq!(output.status.code(), Some(0));
    let said = String::from_utf8(output.stdout).unwrap();
    assert!(
        said.contains("systemctl is not on PATH")
            && said.contains("systemctl --user enable --now authstore-agent.service"),
        "{said}"
    );
    assert!(sandbox.unit_path().is_file());
    let status = sandbox.status("systemd");
    assert_eq!(status["installed"], true);
    assert!(status["enabled"].is_null() && status["running"].is_null());
    assert_eq!(status["note"], "systemctl is not on PATH");
    sandbox.ok(&["agent", "uninstall", "--service", "systemd"]);
    assert_eq!(sandbox.tree(), before);

    // systemctl present, but no user manager answers: only the question is asked.
    let sandbox = Sandbox::new();
    sandbox.install_tool("systemctl", FAKE_SYSTEMCTL);
    let before = sandbox.tree();
    let mut command = sandbox.command(&["agent", "install", "--service", "systemd"]);
    let output = command.env("FAKE_MANAGER", "offline").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let said = String::from_utf8(output.stdout).unwrap();
    assert!(
        said.contains("no systemd user manager is running"),
        "{said}"
    );
    assert_eq!(sandbox.take_calls(), ["systemctl --user is-system-running"]);
    assert!(sandbox.unit_path().is_file());

    // Enabled earlier, when a manager ran: without one, uninstall unlinks it itself.
    let wants = sandbox.path("xdg/systemd/user/default.target.wants");
    std::fs::create_dir(&wants).unwrap();
    std::os::unix::fs::symlink(format!("../{UNIT}"), wants.join(UNIT)).unwrap();
    let mut command = sandbox.command(&["agent", "uninstall", "--service", "systemd"]);
    let output = command.env("FAKE_MANAGER", "offline").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(sandbox.take_calls(), ["systemctl --user is-system-running"]);
    assert_eq!(sandbox.tree(), before);
}

/// A directory where a file is to be written makes the write fail even as root (a file cannot
/// be renamed over a non-empty directory).
fn block_with_a_directory(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::write(path.join("keep"), "").unwrap();
}

#[test]
fn a_failed_systemd_install_leaves_no_secret_file_and_no_unit_naming_a_missing_one() {
    let install = [
        "agent",
        "install",
        "--service",
        "systemd",
        "--store",
        SECRET_URL,
    ];
    let env_file = |sandbox: &Sandbox| sandbox.unit_path().with_file_name("authstore-agent.env");

    // The unit cannot be written: the environment file with the password is not left behind.
    let sandbox = Sandbox::new();
    block_with_a_directory(&sandbox.unit_path());
    let output = sandbox.run(&install);
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains(&sandbox.unit_path().display().to_string()),
        "{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");
    assert!(!env_file(&sandbox).exists(), "the secret file stays behind");

    // The environment file cannot be written: no unit is left naming it, and the directories
    // install created are gone again.
    let sandbox = Sandbox::new();
    block_with_a_directory(&env_file(&sandbox));
    let before = sandbox.tree();
    let output = sandbox.run(&install);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(sandbox.tree(), before);

    // A reinstall that fails there keeps the unit that was installed.
    let sandbox = Sandbox::new();
    sandbox.ok(&["agent", "install", "--service", "systemd"]);
    let installed = std::fs::read(sandbox.unit_path()).unwrap();
    block_with_a_directory(&env_file(&sandbox));
    let output = sandbox.run(&install);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(std::fs::read(sandbox.unit_path()).unwrap(), installed);
}

#[test]
fn the_launchd_plist_parses_with_the_keys_launchd_reads_and_every_string_escaped() {
    let sandbox = Sandbox::new();
    let codex_home = sandbox.path("a&b <c> \"d\" 'e'").display().to_string();
    let plist = sandbox.ok(&[
        "agent",
        "install",
        "--print",
        "--service",
        "launchd",
        "--codex-home",
        &codex_home,
    ]);
    assert_eq!(
        sandbox.tree().len(),
        1,
        "--print changes nothing on disk: HOME stays empty"
    );
    let parsed = python(
        "import json, plistlib, sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))",
        plist.as_bytes(),
        &[],
    );
    let parsed: Value = serde_json::from_str(&parsed).unwrap();
    assert_eq!(parsed["Label"], LABEL);
    let mut expected = vec![binary().display().to_string()];
    expected.extend(agent_arguments(&codex_home, "600"));
    assert_eq!(parsed["ProgramArguments"], serde_json::json!(expected));
    assert_eq!(parsed["RunAtLoad"], true);
    assert_eq!(parsed["KeepAlive"], true);
    let logs = sandbox.home().join("Library/Logs").display().to_string();
    for key in ["StandardOutPath", "StandardErrorPath"] {
        assert!(parsed[key].as_str().unwrap().starts_with(&logs), "{key}");
    }
}

#[test]
fn launchd_install_bootstraps_the_agent_and_uninstall_boots_it_out_leaving_nothing() {
    let sandbox = Sandbox::new();
    sandbox.install_tool("launchctl", FAKE_LAUNCHCTL);
    // SAFETY: getuid(2) cannot fail.
    let domain = format!("gui/{}", unsafe { libc::getuid() });
    let service = format!("{domain}/{LABEL}");
    let plist = sandbox.plist_path().display().to_string();
    let before = sandbox.tree();

    sandbox.ok(&["agent", "install", "--service", "launchd"]);
    assert_eq!(
        sandbox.take_calls(),
        [
            format!("launchctl print {service}"),
            format!("launchctl enable {service}"),
            format!("launchctl bootstrap {domain} {plist}"),
        ]
    );
    assert_eq!(
        std::fs::read(sandbox.path("started")).unwrap(),
        std::fs::read(&plist).unwrap()
    );
    let status = sandbox.status("launchd");
    assert_eq!(
        (&status["installed"], &status["enabled"], &status["running"]),
        (&true.into(), &true.into(), &true.into())
    );
    sandbox.take_calls();

    // Loaded already: booted out first, so that the new plist is the one that runs.
    sandbox.ok(&["agent", "install", "--service", "launchd", "--ahead", "900"]);
    assert_eq!(
        sandbox.take_calls(),
        [
            format!("launchctl print {service}"),
            format!("launchctl bootout {service}"),
            format!("launchctl enable {service}"),
            format!("launchctl bootstrap {domain} {plist}"),
        ]
    );

    // A log launchd would have written goes too.
    std::fs::write(sandbox.home().join("Library/Logs/authstore-agent.log"), "x").unwrap();
    sandbox.ok(&["agent", "uninstall", "--service", "launchd"]);
    assert_eq!(
        sandbox.take_calls(),
        [
            format!("launchctl print {service}"),
            format!("launchctl bootout {service}"),
        ]
    );
    assert_eq!(
        sandbox.tree(),
        before,
        "install then uninstall leaves nothing behind"
    );

    // Without launchctl: written, one line on how to load it, exit 0.
    let sandbox = Sandbox::new();
    let said = sandbox.ok(&["agent", "install", "--service", "launchd"]);
    let how = format!(
        "launchctl bootstrap {domain} '{}'",
        sandbox.plist_path().display()
    );
    assert!(
        said.contains("launchctl is not on PATH") && said.contains(&how),
        "{said}"
    );
}

#[test]
fn launchd_reinstall_tries_bootstrap_again_while_launchd_is_still_removing_the_old_agent() {
    let sandbox = Sandbox::new();
    sandbox.install_tool("launchctl", FAKE_LAUNCHCTL);
    // SAFETY: getuid(2) cannot fail.
    let domain = format!("gui/{}", unsafe { libc::getuid() });
    let service = format!("{domain}/{LABEL}");
    let plist = sandbox.plist_path().display().to_string();
    sandbox.ok(&["agent", "install", "--service", "launchd"]);
    sandbox.take_calls();

    // The first bootstrap after the bootout fails; the second loads the new plist.
    let reinstall = ["agent", "install", "--service", "launchd", "--ahead", "900"];
    let output = sandbox
        .command(&reinstall)
        .env("FAIL_BOOTSTRAPS", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert_eq!(
        sandbox.take_calls(),
        [
            format!("launchctl print {service}"),
            format!("launchctl bootout {service}"),
            format!("launchctl enable {service}"),
            format!("launchctl bootstrap {domain} {plist}"),
            format!("launchctl bootstrap {domain} {plist}"),
        ]
    );
    assert_eq!(
        std::fs::read(sandbox.path("started")).unwrap(),
        std::fs::read(&plist).unwrap(),
        "the new plist is loaded"
    );

    // Failing every time: a bounded number of tries, then launchctl's last error, exit 1.
    let output = sandbox
        .command(&reinstall)
        .env("FAIL_BOOTSTRAPS", "1000")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Bootstrap failed: 5: Input/output error") && said.contains("10 times"),
        "{said}"
    );
    let bootstraps = sandbox
        .take_calls()
        .iter()
        .filter(|call| call.starts_with("launchctl bootstrap "))
        .count();
    assert_eq!(bootstraps, 10);
}

#[test]
fn the_task_scheduler_xml_is_well_formed_in_its_namespace_and_install_writes_it_utf16() {
    let sandbox = Sandbox::new();
    let codex_home = sandbox.path("A B \"q\"\\").display().to_string();
    let xml = sandbox.ok(&[
        "agent",
        "install",
        "--print",
        "--service",
        "windows",
        "--codex-home",
        &codex_home,
    ]);
    let script = r#"
import json, sys, xml.etree.ElementTree as ET
data = open(sys.argv[1], 'rb').read() if len(sys.argv) > 1 else sys.stdin.buffer.read()
root = ET.fromstring(data)
ns = {'t': 'http://schemas.microsoft.com/windows/2004/02/mit/task'}
text = lambda path: root.find(path, ns).text
print(json.dumps({
    'tag': root.tag,
    'logon': root.find('t:Triggers/t:LogonTrigger', ns) is not None,
    'hidden': text('t:Settings/t:Hidden'),
    'limit': text('t:Settings/t:ExecutionTimeLimit'),
    'restart': text('t:Settings/t:RestartOnFailure/t:Count'),
    'command': text('t:Actions/t:Exec/t:Command'),
    'arguments': text('t:Actions/t:Exec/t:Arguments'),
}))
"#;
    let parsed: Value = serde_json::from_str(&python(script, xml.as_bytes(), &[])).unwrap();
    assert_eq!(
        parsed["tag"],
        "{http://schemas.microsoft.com/windows/2004/02/mit/task}Task"
    );
    assert_eq!(parsed["logon"], true);
    assert_eq!(parsed["hidden"], "true");
    assert_eq!(parsed["limit"], "PT0S");
    assert_eq!(parsed["restart"], "999");
    assert_eq!(parsed["command"], binary().display().to_string());
    // CommandLineToArgvW quoting: the quote escaped, the trailing backslash doubled.
    let quoted_home = format!(
        "\"{}\\\\\"",
        codex_home.trim_end_matches('\\').replace('"', "\\\"")
    );
    assert!(
        parsed["arguments"]
            .as_str()
            .unwrap()
            .starts_with(&format!("--codex-home {quoted_home} --lock-timeout 60")),
        "{}",
        parsed["arguments"]
    );

    // Install (no schtasks here) writes the same task as UTF-16LE with a byte-order mark.
    let before = sandbox.tree();
    let said = sandbox.ok(&[
        "agent",
        "install",
        "--service",
        "windows",
        "--codex-home",
        &codex_home,
    ]);
    assert!(said.contains("schtasks /Create /XML"), "{said}");
    let task = sandbox
        .home()
        .join("AppData/Local/authstore/agent-task.xml");
    let bytes = std::fs::read(&task).unwrap();
    assert_eq!(bytes[..2], [0xFF, 0xFE]);
    let from_file: Value =
        serde_json::from_str(&python(script, b"", &[task.to_str().unwrap()])).unwrap();
    assert_eq!(from_file, parsed);
    sandbox.ok(&["agent", "uninstall", "--service", "windows"]);
    assert_eq!(sandbox.tree(), before);
}

#[test]
fn a_store_password_reaches_no_service_file_and_no_printed_one_only_a_0600_file() {
    for kind in ["systemd", "launchd", "windows"] {
        let sandbox = Sandbox::new();
        let install = ["agent", "install", "--service", kind, "--store", SECRET_URL];
        let printed = sandbox.ok(&[&install[..], &["--print"]].concat());
        assert!(
            !printed.contains(PASSWORD),
            "{kind} --print shows the password"
        );
        assert!(printed.contains("--store-key"), "{kind}: {printed}");

        let before = sandbox.tree();
        let output = sandbox.run(&install);
        assert!(output.status.success());
        let said =
            String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        assert!(!said.contains(PASSWORD), "{kind}: {said}");
        let secret_files: Vec<PathBuf> = sandbox
            .tree()
            .into_iter()
            .filter_map(|(path, contents)| {
                let contents = contents?;
                let as_text = String::from_utf8_lossy(&contents).into_owned();
                let utf16: Vec<u16> = contents
                    .chunks_exact(2)
                    .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                    .collect();
                let as_utf16 = String::from_utf16_lossy(&utf16);
                (as_text.contains(PASSWORD) || as_utf16.contains(PASSWORD)).then_some(path)
            })
            .collect();
        assert_eq!(secret_files.len(), 1, "{kind}: {secret_files:?}");
        let secret_file = &secret_files[0];
        assert_eq!(mode(secret_file), 0o600, "{kind}");

        // The service gets the URL back exactly.
        let url = match kind {
            "systemd" => {
                let unit = std::fs::read_to_string(sandbox.unit_path()).unwrap();
                assert!(unit.contains(&format!("EnvironmentFile={}\n", secret_file.display())));
                // systemd's environment-file syntax is the shell's: a shell reads it back.
                let shell = Command::new("sh")
                    .args([
                        "-c",
                        "set -a; . \"$1\"; printf %s \"$AUTHSTORE_STORE\"",
                        "sh",
                    ])
                    .arg(secret_file)
                    .output()
                    .unwrap();
                String::from_utf8(shell.stdout).unwrap()
            }
            _ => {
                let definition = if kind == "launchd" {
                    std::fs::read_to_string(sandbox.plist_path()).unwrap()
                } else {
                    printed.clone()
                };
                assert!(
                    definition.contains(&format!("--store-file {}", secret_file.display()))
                        || definition.contains(&format!(
                            "<string>--store-file</string>\n\t\t<string>{}</string>",
                            secret_file.display()
                        ))
                );
                std::fs::read_to_string(secret_file)
                    .unwrap()
                    .trim_end()
                    .to_owned()
            }
        };
        assert!(
            url == SECRET_URL,
            "{kind}: the service reads the URL back unchanged"
        );
        sandbox.ok(&["agent", "uninstall", "--service", kind]);
        assert_eq!(
            sandbox.tree(),
            before,
            "{kind}: uninstall removes the secret file too"
        );
    }
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

#[test]
fn systemd_carries_the_environments_settings_in_the_0600_file_and_never_in_the_unit() {
    let sandbox = Sandbox::new();
    sandbox.install_tool("systemctl", FAKE_SYSTEMCTL);
    let env_file = sandbox.unit_path().with_file_name("authstore-agent.env");
    let before = sandbox.tree();
    let install = ["agent", "install", "--service", "systemd"];

    // --print: the unit names the file, stderr says what install would write there.
    let output = with_settings(sandbox.command(&[&install[..], &["--print"]].concat()))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(sandbox.tree(), before, "--print changes nothing on disk");
    let printed = String::from_utf8(output.stdout).unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    for name in [
        "HTTPS_PROXY",
        "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
        "no_proxy",
    ] {
        assert!(
            said.lines()
                .any(|line| line.contains(name) && line.contains(&env_file.display().to_string())),
            "{name}: {said}"
        );
    }
    assert!(printed.contains(&format!("EnvironmentFile={}\n", env_file.display())));
    assert!(!printed.contains(PROXY_PASSWORD) && !printed.contains(TOKEN_URL));

    let output = with_settings(sandbox.command(&install)).output().unwrap();
    let said = String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned();
    assert!(output.status.success(), "{said}");
    assert!(
        !said.contains(PROXY_PASSWORD) && !said.contains(TOKEN_URL),
        "{said}"
    );
    assert_eq!(mode(&env_file), 0o600);
    let unit = std::fs::read_to_string(sandbox.unit_path()).unwrap();
    assert!(unit.contains(&format!("EnvironmentFile={}\n", env_file.display())));
    assert!(
        !unit.contains(PROXY_PASSWORD) && !unit.contains(TOKEN_URL),
        "{unit}"
    );
    #[cfg(target_os = "linux")]
    {
        let (_, complaints) = systemd_reads(&sandbox, &unit);
        assert!(complaints.trim().is_empty(), "{complaints}");
    }
    // systemd's environment-file syntax is the shell's: a shell reads the values back.
    let shell = Command::new("sh")
        .args([
            "-c",
            "set -a; . \"$1\"; printf '%s\\n' \"$HTTPS_PROXY\" \"$CODEX_REFRESH_TOKEN_URL_OVERRIDE\" \"$no_proxy\"",
            "sh",
        ])
        .arg(&env_file)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(shell.stdout).unwrap(),
        format!("{PROXY}\n{TOKEN_URL}\nlocalhost,127.0.0.1\n")
    );

    // A value no environment file line can hold is left out, with a warning naming it.
    let output = with_settings(sandbox.command(&install))
        .env("ALL_PROXY", "http://proxy.example\nINJECTED=1")
        .output()
        .unwrap();
    assert!(output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.lines()
            .any(|line| line.contains("ALL_PROXY") && line.contains("will not see it")),
        "{said}"
    );
    let carried = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        carried.contains("HTTPS_PROXY=")
            && !carried.contains("ALL_PROXY")
            && !carried.contains("INJECTED"),
        "{carried}"
    );

    // Installed again without them: the file goes, and the unit no longer names it.
    sandbox.ok(&install);
    assert!(!env_file.exists());
    let unit = std::fs::read_to_string(sandbox.unit_path()).unwrap();
    assert!(!unit.contains("EnvironmentFile="), "{unit}");
    sandbox.ok(&["agent", "uninstall", "--service", "systemd"]);
    assert_eq!(sandbox.tree(), before);
}

#[test]
fn launchd_and_task_scheduler_name_each_setting_the_service_will_not_see_and_copy_none() {
    for kind in ["launchd", "windows"] {
        let sandbox = Sandbox::new();
        sandbox.install_tool("launchctl", FAKE_LAUNCHCTL);
        let install = ["agent", "install", "--service", kind];
        let warned = |output: &Output| {
            let said = String::from_utf8_lossy(&output.stderr);
            for name in [
                "HTTPS_PROXY",
                "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
                "no_proxy",
            ] {
                let lines = said
                    .lines()
                    .filter(|line| line.contains(&format!(" {name} is set here")))
                    .count();
                assert_eq!(lines, 1, "{kind} {name}: {said}");
            }
            assert!(said.contains("will not see it"), "{kind}: {said}");
            assert!(
                !said.contains(PROXY_PASSWORD) && !said.contains(TOKEN_URL),
                "{kind}: {said}"
            );
        };

        let before = sandbox.tree();
        let output = with_settings(sandbox.command(&[&install[..], &["--print"]].concat()))
            .output()
            .unwrap();
        assert!(output.status.success());
        assert_eq!(sandbox.tree(), before, "{kind}: --print changes nothing");
        warned(&output);
        let printed = String::from_utf8(output.stdout).unwrap();
        for text in [
            PROXY_PASSWORD,
            TOKEN_URL,
            "HTTPS_PROXY",
            "EnvironmentVariables",
        ] {
            assert!(!printed.contains(text), "{kind} --print: {text}");
        }

        let output = with_settings(sandbox.command(&install)).output().unwrap();
        assert!(output.status.success());
        warned(&output);
        // No file install wrote holds the settings, as UTF-8 or as UTF-16.
        for (path, contents) in sandbox.tree() {
            let Some(contents) = contents else { continue };
            let utf16: Vec<u16> = contents
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            for text in [
                String::from_utf8_lossy(&contents).into_owned(),
                String::from_utf16_lossy(&utf16),
            ] {
                assert!(
                    !text.contains(PROXY_PASSWORD) && !text.contains(TOKEN_URL),
                    "{kind}: {}",
                    path.display()
                );
            }
        }
        if kind == "launchd" {
            let plist = std::fs::read_to_string(sandbox.plist_path()).unwrap();
            assert!(!plist.contains("HTTPS_PROXY"), "{plist}");
        }
    }
}

#[test]
fn store_file_reads_the_url_and_names_the_path_when_it_cannot() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("no such file");
    let empty = sandbox.path("empty");
    std::fs::write(&empty, "\n").unwrap();
    let not_a_file = sandbox.home();
    for (path, why) in [
        (&missing, "does not exist"),
        (&empty, "is empty"),
        (&not_a_file, "cannot be read"),
    ] {
        let output = sandbox.run(&["status", "--store-file", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{why}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.contains(&path.display().to_string()) && said.contains(why),
            "{said}"
        );
    }
    // The environment variable names the file as well.
    let output = sandbox
        .command(&["status"])
        .env("AUTHSTORE_STORE_FILE", &missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));

    // A readable file: its URL is what the store is opened with (this one is not postgres).
    let file = sandbox.path("store-url");
    std::fs::write(&file, "mysql://alice:s3cret-pw@db/auth\n").unwrap();
    let output = sandbox.run(&["status", "--store-file", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("postgres"), "{said}");
    assert!(
        !said.contains(PASSWORD) && !said.contains("--store-file"),
        "{said}"
    );
    // Written with the umask's 0644 here: a warning says so; at 0600 there is none.
    assert!(said.contains("readable by other users"), "{said}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = sandbox.run(&["status", "--store-file", file.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("readable by other users"));

    let output = sandbox.run(&[
        "status",
        "--store",
        "postgres://db/auth",
        "--store-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("give one of them"));
}

/// The mode judged is the mode of the file the URL was read from. The file is a FIFO (0644)
/// that the test replaces with a 0600 file after writing the URL and before closing it: reading
/// ends only at that close, so a check of the path after the read would see the 0600 file.
#[test]
fn store_file_judges_the_mode_of_the_file_it_read_not_what_the_path_names_afterwards() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let sandbox = Sandbox::new();
    let path = sandbox.path("store-url");
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo(3) touches nothing else.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = sandbox
        .command(&["status", "--store-file", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Opening a FIFO for writing without blocking fails until the reader has it open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(writer) => break writer,
            Err(error) if error.raw_os_error() == Some(libc::ENXIO) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "authstore never opened the store file"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("{error}"),
        }
    };
    writer
        .write_all(b"mysql://alice:s3cret-pw@db/auth\n")
        .unwrap();
    let private = sandbox.path("private");
    // Not postgres either: nothing here may try to connect anywhere.
    std::fs::write(&private, "mysql://other@db/auth\n").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&private, &path).unwrap();
    drop(writer);
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains("postgres"), "{said}");
    assert!(said.contains("readable by other users"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
}

/// The service's own command line, run with `status --json` in place of `agent --ahead N` and
/// an emptied environment: it reaches the shared store, although no definition holds the
/// password (the test cluster trusts loopback connections, so the password is carried, not
/// checked).
#[cfg(all(target_os = "linux", feature = "postgres"))]
#[test]
fn the_service_command_lines_reach_a_store_whose_password_only_the_0600_file_holds() {
    let cluster = authstore_testkit::postgres::Cluster::shared();
    let database = cluster.create_database("service");
    let url = cluster
        .url(&database)
        .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    let location = format!("127.0.0.1:{}/{database}#default", cluster.port());
    let status_of = |mut argv: Vec<String>, env_file: Option<&Path>| {
        argv.truncate(argv.len() - 3);
        argv.extend(["status", "--json"].map(str::to_owned));
        // As systemd does with EnvironmentFile=: the variables, then the program.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("[ -n \"$ENV_FILE\" ] && { set -a; . \"$ENV_FILE\"; set +a; }; exec \"$@\"")
            .arg("sh")
            .args(&argv)
            .env_clear()
            .env("ENV_FILE", env_file.unwrap_or(Path::new("")))
            .env("PATH", "/usr/bin:/bin");
        let output = command.output().unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "not logged in: {said}");
        let status: Value = serde_json::from_slice(&output.stdout).unwrap();
        let path = status["path"].as_str().unwrap().to_owned();
        assert!(
            path.ends_with(&location) && !path.contains(PASSWORD),
            "{path}"
        );
    };

    let sandbox = Sandbox::new();
    sandbox.ok(&["agent", "install", "--service", "systemd", "--store", &url]);
    let unit = std::fs::read_to_string(sandbox.unit_path()).unwrap();
    let (argv, _) = systemd_reads(&sandbox, &unit);
    let env_file = sandbox.unit_path().with_file_name("authstore-agent.env");
    status_of(argv, Some(&env_file));

    sandbox.ok(&["agent", "install", "--service", "launchd", "--store", &url]);
    let argv = python(
        "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))['ProgramArguments']))",
        b"",
        &[sandbox.plist_path().to_str().unwrap()],
    );
    status_of(serde_json::from_str(&argv).unwrap(), None);
}

#[test]
fn the_codex_home_is_made_absolute_at_install_time_whichever_way_it_was_given() {
    let sandbox = Sandbox::new();
    let codex_home_of = |unit: &str| {
        let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        let rest = exec.split_once(" --codex-home ").unwrap().1;
        rest.split_once(" --lock-timeout").unwrap().0.to_owned()
    };
    let print = ["agent", "install", "--print", "--service", "systemd"];

    // Relative to the directory install runs in.
    let output = sandbox
        .command(&[&print[..], &["--codex-home", "relative/home"]].concat())
        .current_dir(sandbox.root.path())
        .output()
        .unwrap();
    let unit = String::from_utf8(output.stdout).unwrap();
    let expected = sandbox.path("relative/home");
    assert_eq!(codex_home_of(&unit), expected.display().to_string());

    // From CODEX_HOME, which the service will not have.
    let from_env = sandbox.path("from-env");
    std::fs::create_dir(&from_env).unwrap();
    let output = sandbox
        .command(&print)
        .env("CODEX_HOME", &from_env)
        .output()
        .unwrap();
    let unit = String::from_utf8(output.stdout).unwrap();
    assert_eq!(codex_home_of(&unit), from_env.display().to_string());
}
