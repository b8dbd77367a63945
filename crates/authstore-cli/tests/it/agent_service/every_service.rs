//! What install does for every service manager: a store password reaches no service file and no
//! printed one, only a 0600 file the service reads back; settings that live only in the
//! environment are named and copied nowhere by launchd and Task Scheduler; the service's own
//! command line reaches a store whose password only that file holds; and the Codex home is made
//! absolute at install time.

use super::*;

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
                let shell = run_bounded(
                    Command::new("sh")
                        .args([
                            "-c",
                            "set -a; . \"$1\"; printf %s \"$AUTHSTORE_STORE\"",
                            "sh",
                        ])
                        .arg(secret_file),
                );
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
        let output = run_bounded(with_settings(
            sandbox.command(&[&install[..], &["--print"]].concat()),
        ));
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

        let output = run_bounded(with_settings(sandbox.command(&install)));
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
        let output = run_bounded(command);
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
    let output = run_bounded(
        sandbox
            .command(&[&print[..], &["--codex-home", "relative/home"]].concat())
            .current_dir(sandbox.root.path()),
    );
    let unit = String::from_utf8(output.stdout).unwrap();
    let expected = sandbox.path("relative/home");
    assert_eq!(codex_home_of(&unit), expected.display().to_string());

    // From CODEX_HOME, which the service will not have.
    let from_env = sandbox.path("from-env");
    std::fs::create_dir(&from_env).unwrap();
    let output = run_bounded(sandbox.command(&print).env("CODEX_HOME", &from_env));
    let unit = String::from_utf8(output.stdout).unwrap();
    assert_eq!(codex_home_of(&unit), from_env.display().to_string());
}
