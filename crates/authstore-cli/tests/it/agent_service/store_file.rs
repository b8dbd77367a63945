//! `--store-file` (`AUTHSTORE_STORE_FILE`), which the service definitions use instead of a URL
//! with a password: it names the path when it cannot read the URL, warns when the file is
//! readable by other users, and judges the mode of the file it read, not what the path names
//! afterwards.

use super::*;

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
    let output = run_bounded(
        sandbox
            .command(&["status"])
            .env("AUTHSTORE_STORE_FILE", &missing),
    );
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
    let deadline = std::time::Instant::now() + BOUND;
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
    let output = finish_bounded(child);
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains("postgres"), "{said}");
    assert!(said.contains("readable by other users"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
}

/// One grammar for a store URL, `agent install` included: a store the agent could not open (a
/// libpq `key=value` string, another database's URL) is refused before anything is written,
/// exit 2, and the refusal never echoes the URL (it may hold a password); the same URL is
/// refused by a one-shot command in the same words.
#[test]
fn install_refuses_a_store_url_the_agent_could_not_open_and_writes_nothing() {
    let sandbox = Sandbox::new();
    let before = sandbox.tree();
    for url in [
        "host=db user=alice password=s3cret-pw",
        "mysql://alice:s3cret-pw@db/auth",
    ] {
        for print in [false, true] {
            let mut args = vec!["agent", "install", "--service", "systemd", "--store", url];
            if print {
                args.push("--print");
            }
            let output = sandbox.run(&args);
            let said = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{said}");
            assert!(said.contains("postgres://"), "{said}");
            assert!(!said.contains(PASSWORD), "{said}");
            assert!(output.stdout.is_empty(), "nothing printed for {url:?}");
        }
        let output = sandbox.run(&["status", "--store", url]);
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{said}");
        assert!(
            said.contains("--store: the store URL must start with postgres://"),
            "{said}"
        );
        assert!(!said.contains(PASSWORD), "{said}");
    }
    assert_eq!(sandbox.tree(), before, "a refused install writes nothing");
    assert!(sandbox.take_calls().is_empty(), "no service tool was run");
}
