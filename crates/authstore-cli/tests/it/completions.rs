//! Shell completions and the man page come from the same clap definitions as the parser.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_authstore");
const COMMANDS: [&str; 8] = [
    "token",
    "refresh",
    "status",
    "login",
    "logout",
    "watch",
    "agent",
    "completions",
];

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("AUTHSTORE_STORE")
        .output()
        .expect("authstore runs")
}

fn stdout_of(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "{args:?}: exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn completions_for_every_shell_name_every_command_and_the_global_options() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        for command in COMMANDS {
            assert!(script.contains(command), "{shell}: no {command}");
        }
        assert!(script.contains("codex-home"), "{shell}: no global option");
    }
}

#[test]
fn the_bash_completion_script_is_valid_bash() {
    let script = stdout_of(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authstore.bash");
    std::fs::write(&path, script).unwrap();
    let Ok(checked) = Command::new("bash").arg("-n").arg(&path).output() else {
        eprintln!("no bash here; syntax not checked");
        return;
    };
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn the_man_page_is_roff_for_section_1_and_lists_the_commands() {
    let page = stdout_of(&["man"]);
    assert!(
        page.contains(".TH authstore 1"),
        "{}",
        &page[..page.len().min(200)]
    );
    for command in COMMANDS {
        assert!(page.contains(command), "no {command} in the man page");
    }
    assert!(page.contains("CODEX_HOME") || page.contains("codex\\-home"));
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let output = run(&["completions", "nosh"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nosh") && stderr.contains("bash"),
        "{stderr}"
    );
}
