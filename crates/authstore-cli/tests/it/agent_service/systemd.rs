//! systemd: the printed unit passes `systemd-analyze verify` and systemd reads back every
//! argument; install enables it through a user manager (or says how, without one) and uninstall
//! leaves nothing behind; a failed install leaves no secret file and no unit naming a missing
//! one; settings of the environment go to the 0600 environment file, never into the unit.

use super::*;

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
    let output = run_bounded(command.env("FAKE_MANAGER", "offline"));
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
    let output = run_bounded(command.env("FAKE_MANAGER", "offline"));
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
fn systemd_carries_the_environments_settings_in_the_0600_file_and_never_in_the_unit() {
    let sandbox = Sandbox::new();
    sandbox.install_tool("systemctl", FAKE_SYSTEMCTL);
    let env_file = sandbox.unit_path().with_file_name("authstore-agent.env");
    let before = sandbox.tree();
    let install = ["agent", "install", "--service", "systemd"];

    // --print: the unit names the file, stderr says what install would write there.
    let output = run_bounded(with_settings(
        sandbox.command(&[&install[..], &["--print"]].concat()),
    ));
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

    let output = run_bounded(with_settings(sandbox.command(&install)));
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
    let shell = run_bounded(Command::new("sh")
        .args([
            "-c",
            "set -a; . \"$1\"; printf '%s\\n' \"$HTTPS_PROXY\" \"$CODEX_REFRESH_TOKEN_URL_OVERRIDE\" \"$no_proxy\"",
            "sh",
        ])
        .arg(&env_file)
        .env_clear());
    assert_eq!(
        String::from_utf8(shell.stdout).unwrap(),
        format!("{PROXY}\n{TOKEN_URL}\nlocalhost,127.0.0.1\n")
    );

    // A value no environment file line can hold is left out, with a warning naming it.
    let output = run_bounded(
        with_settings(sandbox.command(&install))
            .env("ALL_PROXY", "http://proxy.example\nINJECTED=1"),
    );
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
fn install_with_the_broker_holds_its_port_in_a_socket_unit_and_points_the_session_at_it() {
    let sandbox = Sandbox::new();
    sandbox.install_tool("systemctl", FAKE_SYSTEMCTL);
    let before = sandbox.tree();
    let upstream = "http://127.0.0.1:9/oauth/token";
    let broker = "http://127.0.0.1:61999/oauth/token";
    let install = [
        "agent",
        "install",
        "--service",
        "systemd",
        "--broker",
        "--listen",
        "127.0.0.1:61999",
        "--upstream",
        upstream,
    ];

    let said = sandbox.ok(&install);

    assert!(
        said.contains(&format!("export CODEX_REFRESH_TOKEN_URL_OVERRIDE={broker}")),
        "{said}"
    );
    assert_eq!(
        sandbox.take_calls(),
        [
            "systemctl --user is-system-running",
            "systemctl --user daemon-reload",
            "systemctl --user enable --now authstore-agent.socket",
            &format!("systemctl --user set-environment CODEX_REFRESH_TOKEN_URL_OVERRIDE={broker}"),
            "systemctl --user enable --now authstore-agent.service",
        ]
    );
    let unit = std::fs::read_to_string(sandbox.unit_path()).unwrap();
    assert!(unit.contains("\nRequires=authstore-agent.socket\nAfter=authstore-agent.socket\n"));
    assert!(
        unit.contains(&format!(
            "agent --ahead 600 --broker --listen 127.0.0.1:61999 --upstream {upstream}\n"
        )),
        "{unit}"
    );
    let socket = sandbox.path("xdg/systemd/user/authstore-agent.socket");
    let socket_unit = std::fs::read_to_string(&socket).unwrap();
    assert!(
        socket_unit.contains("\n[Socket]\nListenStream=127.0.0.1:61999\n"),
        "{socket_unit}"
    );
    let session = sandbox.path("xdg/environment.d/60-authstore-broker.conf");
    let session_env = std::fs::read_to_string(&session).unwrap();
    assert!(session_env.ends_with(&format!("\nCODEX_REFRESH_TOKEN_URL_OVERRIDE={broker}\n")));
    #[cfg(target_os = "linux")]
    {
        // systemd loads the pair: the socket unit beside the service it activates.
        let (argv, complaints) =
            systemd_reads_beside(&sandbox, &unit, &[("authstore-agent.socket", &socket_unit)]);
        assert!(complaints.trim().is_empty(), "{complaints}");
        assert!(argv.ends_with(&["--upstream".to_owned(), upstream.to_owned()]));
    }

    // Reinstalling without the broker takes the socket and the session's token URL back.
    sandbox.ok(&["agent", "install", "--service", "systemd"]);
    let calls = sandbox.take_calls();
    assert!(
        calls.contains(&"systemctl --user disable --now authstore-agent.socket".to_owned()),
        "{calls:?}"
    );
    assert!(calls.contains(
        &"systemctl --user unset-environment CODEX_REFRESH_TOKEN_URL_OVERRIDE".to_owned()
    ));
    assert!(!socket.exists() && !session.exists());

    sandbox.ok(&install);
    sandbox.take_calls();
    sandbox.ok(&["agent", "uninstall", "--service", "systemd"]);
    assert_eq!(
        sandbox.take_calls(),
        [
            "systemctl --user is-system-running",
            "systemctl --user disable --now authstore-agent.service",
            "systemctl --user disable --now authstore-agent.socket",
            "systemctl --user unset-environment CODEX_REFRESH_TOKEN_URL_OVERRIDE",
            "systemctl --user daemon-reload",
        ]
    );
    assert_eq!(
        sandbox.tree(),
        before,
        "install then uninstall leaves nothing behind"
    );
}

#[test]
fn install_with_the_broker_refuses_an_address_the_session_cannot_safely_be_pointed_at() {
    let sandbox = Sandbox::new();
    sandbox.install_tool("systemctl", FAKE_SYSTEMCTL);
    let before = sandbox.tree();
    for listen in ["0.0.0.0:61455", "127.0.0.1:0"] {
        let output = sandbox.run(&[
            "agent",
            "install",
            "--service",
            "systemd",
            "--broker",
            "--listen",
            listen,
        ]);
        assert_eq!(output.status.code(), Some(2), "{listen}");
    }
    // The broker's options without --broker are a usage error.
    let output = sandbox.run(&[
        "agent",
        "install",
        "--service",
        "systemd",
        "--listen",
        "127.0.0.1:1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(sandbox.tree(), before);
    assert!(sandbox.take_calls().is_empty());

    let printed = sandbox.ok(&[
        "agent",
        "install",
        "--print",
        "--service",
        "systemd",
        "--broker",
    ]);
    assert!(
        printed.contains("authstore-agent.socket <==\n"),
        "{printed}"
    );
    assert!(printed.contains("ListenStream=127.0.0.1:61455\n"));
    assert!(
        printed.contains("CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:61455/oauth/token\n")
    );
    assert_eq!(sandbox.tree(), before, "--print changes nothing");
}
