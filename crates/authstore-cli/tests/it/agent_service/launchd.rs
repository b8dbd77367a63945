//! launchd: the plist parses with the keys launchd reads and every string escaped; install
//! bootstraps the agent and uninstall boots it out, leaving nothing; a reinstall tries bootstrap
//! again, a bounded number of times, while launchd is still removing the old agent.

use super::*;

/// The names launchctl is given for the agent of a sandbox.
struct Names {
    /// The domain of this user's GUI session.
    domain: String,
    /// The agent's service in it.
    service: String,
    plist: String,
}

impl Names {
    /// What install asks launchctl: whether the agent is loaded, to boot it out first when it
    /// is (`loaded`), to enable it, then `bootstraps` times to bootstrap the plist.
    fn install_calls(&self, loaded: bool, bootstraps: usize) -> Vec<String> {
        let Self {
            domain,
            service,
            plist,
        } = self;
        let mut calls = vec![format!("launchctl print {service}")];
        if loaded {
            calls.push(format!("launchctl bootout {service}"));
        }
        calls.push(format!("launchctl enable {service}"));
        calls.extend((0..bootstraps).map(|_| format!("launchctl bootstrap {domain} {plist}")));
        calls
    }
}

/// A sandbox with the stand-in launchctl, and the names launchctl is given there.
fn with_launchctl() -> (Sandbox, Names) {
    let sandbox = Sandbox::new();
    sandbox.install_tool("launchctl", FAKE_LAUNCHCTL);
    // SAFETY: getuid(2) cannot fail.
    let domain = format!("gui/{}", unsafe { libc::getuid() });
    let names = Names {
        service: format!("{domain}/{LABEL}"),
        plist: sandbox.plist_path().display().to_string(),
        domain,
    };
    (sandbox, names)
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
    let (sandbox, names) = with_launchctl();
    let Names {
        domain,
        service,
        plist,
    } = &names;
    let before = sandbox.tree();

    sandbox.ok(&["agent", "install", "--service", "launchd"]);
    assert_eq!(sandbox.take_calls(), names.install_calls(false, 1));
    assert_eq!(
        std::fs::read(sandbox.path("started")).unwrap(),
        std::fs::read(plist).unwrap()
    );
    let status = sandbox.status("launchd");
    assert_eq!(
        (&status["installed"], &status["enabled"], &status["running"]),
        (&true.into(), &true.into(), &true.into())
    );
    sandbox.take_calls();

    // Loaded already: booted out first, so that the new plist is the one that runs.
    sandbox.ok(&["agent", "install", "--service", "launchd", "--ahead", "900"]);
    assert_eq!(sandbox.take_calls(), names.install_calls(true, 1));

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
    let (sandbox, names) = with_launchctl();
    sandbox.ok(&["agent", "install", "--service", "launchd"]);
    sandbox.take_calls();

    // The first bootstrap after the bootout fails; the second loads the new plist.
    let reinstall = ["agent", "install", "--service", "launchd", "--ahead", "900"];
    let output = run_bounded(sandbox.command(&reinstall).env("FAIL_BOOTSTRAPS", "1"));
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert_eq!(sandbox.take_calls(), names.install_calls(true, 2));
    assert_eq!(
        std::fs::read(sandbox.path("started")).unwrap(),
        std::fs::read(&names.plist).unwrap(),
        "the new plist is loaded"
    );

    // Failing every time: a bounded number of tries, then launchctl's last error, exit 1.
    let output = run_bounded(sandbox.command(&reinstall).env("FAIL_BOOTSTRAPS", "1000"));
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
fn launchd_install_broker_holds_the_port_in_sockets_and_sets_the_session_token_url() {
    let (sandbox, names) = with_launchctl();
    let before = sandbox.tree();
    let url = "http://127.0.0.1:61999/oauth/token";
    let env_label = "dev.authstore.broker-environment";
    let env_service = format!("{}/{env_label}", names.domain);
    let env_plist = sandbox
        .home()
        .join(format!("Library/LaunchAgents/{env_label}.plist"));
    let install = [
        "agent",
        "install",
        "--service",
        "launchd",
        "--broker",
        "--listen",
        "127.0.0.1:61999",
    ];
    let plistlib = |path: &Path| -> Value {
        let script =
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))";
        serde_json::from_str(&python(script, b"", &[path.to_str().unwrap()])).unwrap()
    };

    sandbox.ok(&install);
    let calls = sandbox.take_calls();
    let setenv = format!("launchctl setenv CODEX_REFRESH_TOKEN_URL_OVERRIDE {url}");
    let env_bootstrap = format!(
        "launchctl bootstrap {} {}",
        names.domain,
        env_plist.display()
    );
    assert!(
        calls.contains(&setenv) && calls.contains(&env_bootstrap),
        "{calls:?}"
    );
    let agent = plistlib(&sandbox.plist_path());
    assert_eq!(
        agent["Sockets"]["Broker"],
        serde_json::json!({"SockNodeName": "127.0.0.1", "SockServiceName": "61999",
                           "SockType": "stream", "SockFamily": "IPv4"})
    );
    let environment = plistlib(&env_plist);
    assert_eq!(environment["Label"], env_label);
    assert_eq!(
        environment["ProgramArguments"],
        serde_json::json!([
            "/bin/launchctl",
            "setenv",
            "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
            url
        ])
    );
    assert_eq!(environment["RunAtLoad"], true);

    // A reinstall without the broker takes it all back.
    sandbox.ok(&["agent", "install", "--service", "launchd"]);
    let calls = sandbox.take_calls();
    assert!(
        calls.contains(&"launchctl unsetenv CODEX_REFRESH_TOKEN_URL_OVERRIDE".to_owned())
            && calls.contains(&format!("launchctl bootout {env_service}")),
        "{calls:?}"
    );
    assert!(!env_plist.exists());
    assert!(plistlib(&sandbox.plist_path()).get("Sockets").is_none());

    // IPv6 where the address is; uninstall takes it all back.
    sandbox.ok(&[
        "agent",
        "install",
        "--service",
        "launchd",
        "--broker",
        "--listen",
        "[::1]:61999",
    ]);
    assert_eq!(
        plistlib(&sandbox.plist_path())["Sockets"]["Broker"]["SockFamily"],
        "IPv6"
    );
    sandbox.take_calls();
    sandbox.ok(&["agent", "uninstall", "--service", "launchd"]);
    let calls = sandbox.take_calls();
    assert!(
        calls.contains(&"launchctl unsetenv CODEX_REFRESH_TOKEN_URL_OVERRIDE".to_owned())
            && calls.contains(&format!("launchctl bootout {env_service}"))
            && calls.contains(&format!("launchctl bootout {}", names.service)),
        "{calls:?}"
    );
    assert_eq!(
        sandbox.tree(),
        before,
        "install then uninstall leaves nothing behind"
    );
}
