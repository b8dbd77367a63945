//! Task Scheduler: the task XML is well formed in its namespace, with the logon trigger, the
//! settings and the command line quoted as `CommandLineToArgvW` reads it; install writes the
//! same task as UTF-16LE with a byte-order mark, and uninstall removes it.

use super::*;

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

/// Records its arguments; `/Query` answers as for a registered task once `/Create` ran.
const FAKE_SCHTASKS: &str = r#"#!/bin/sh
printf 'schtasks %s\n' "$*" >> "$CALLS"
case "$1" in
  /Create) : > "$STARTED" ;;
  /Delete) /bin/rm -f "$STARTED" ;;
  /Query) [ -f "$STARTED" ] || exit 1 ;;
esac
exit 0
"#;

/// Records its arguments, as `setx` and `reg` are asked.
const FAKE_RECORDER: &str = r#"#!/bin/sh
printf '%s %s\n' "${0##*/}" "$*" >> "$CALLS"
exit 0
"#;

#[test]
fn install_broker_sets_the_user_token_url_and_a_reinstall_without_it_or_uninstall_removes_it() {
    let sandbox = Sandbox::new();
    sandbox.install_tool("schtasks", FAKE_SCHTASKS);
    sandbox.install_tool("setx", FAKE_RECORDER);
    sandbox.install_tool("reg", FAKE_RECORDER);
    let home = sandbox.path("codex").display().to_string();
    let install = |broker: bool| {
        let mut args = vec![
            "agent",
            "install",
            "--service",
            "windows",
            "--codex-home",
            &home,
        ];
        if broker {
            args.extend(["--broker", "--listen", "127.0.0.1:61999"]);
        }
        sandbox.ok(&args);
        sandbox.take_calls()
    };
    let set = "setx CODEX_REFRESH_TOKEN_URL_OVERRIDE http://127.0.0.1:61999/oauth/token";
    let delete = r"reg delete HKCU\Environment /v CODEX_REFRESH_TOKEN_URL_OVERRIDE /f";
    let before = sandbox.tree();

    let calls = install(true);
    assert!(calls.iter().any(|call| call == set), "{calls:?}");
    assert!(
        !calls.iter().any(|call| call.starts_with("reg ")),
        "{calls:?}"
    );

    // A reinstall without the broker takes the token URL back; one more leaves it alone.
    let calls = install(false);
    assert!(calls.iter().any(|call| call == delete), "{calls:?}");
    assert!(
        !calls.iter().any(|call| call.starts_with("setx ")),
        "{calls:?}"
    );
    let calls = install(false);
    assert!(
        !calls.iter().any(|call| call.starts_with("reg ")),
        "{calls:?}"
    );

    install(true);
    sandbox.ok(&["agent", "uninstall", "--service", "windows"]);
    let calls = sandbox.take_calls();
    assert!(calls.iter().any(|call| call == delete), "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|call| call == "schtasks /Delete /TN authstore-agent /F"),
        "{calls:?}"
    );
    assert_eq!(sandbox.tree(), before);
}
