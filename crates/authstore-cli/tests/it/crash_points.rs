#![cfg(all(unix, feature = "failpoints", feature = "simulator"))] // Unix only: SIGKILL at failpoints
//! Crash safety: a process killed at each step of the durable write leaves `auth.json` old or
//! new, never torn, and the next writer removes its temporary file. Real processes, killed by
//! SIGKILL at test-only failpoints (`--features failpoints`).

use std::os::unix::process::ExitStatusExt;

use authstore_simulator::Identity;
use authstore_testkit::binary::*;
use rstest::rstest;

#[rstest]
#[case::after_create("after-create", false)]
#[case::after_write("after-write", false)]
#[case::after_fsync("after-fsync", false)]
#[case::after_rename("after-rename", true)]
#[case::after_dir_fsync("after-dir-fsync", true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_at_each_step_leaves_the_old_or_the_new_file(
    #[case] step: &str,
    #[case] renamed: bool,
) {
    let env = Env::new().await;
    let old = env.login_stale(&Identity::new("acct-1", "user-alice"));
    let old_bytes = std::fs::read(env.auth_path()).unwrap();

    let mut command = env.command(&["refresh", "--force"]);
    command.env("AUTHSTORE_FAILPOINT", step);
    let output = run_bounded(command).await;
    assert_eq!(output.status.signal(), Some(9), "{step}: killed by SIGKILL");
    assert_eq!(
        env.sim.successful_refreshes(),
        1,
        "{step}: the token was rotated"
    );

    // Never torn: the file parses, and is exactly the old one or the new one.
    let disk = env.disk();
    let temps = || {
        std::fs::read_dir(env.home())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with(".auth.json.") && name.ends_with(".tmp")
            })
            .count()
    };
    let rotated_rt = env.sim.presented_refresh_tokens()[0].clone();
    if renamed {
        assert!(disk != old, "{step}: the new file is in place");
        assert!(disk["tokens"]["refresh_token"].as_str() != Some(rotated_rt.as_str()));
        assert_eq!(disk["x_custom"], old["x_custom"]);
        assert_eq!(temps(), 0, "{step}: the rename consumed the temporary file");
    } else {
        assert!(
            std::fs::read(env.auth_path()).unwrap() == old_bytes,
            "{step}: the old file is untouched"
        );
        assert_eq!(
            temps(),
            1,
            "{step}: the crashed writer left its temporary file"
        );
    }

    // The next command is not held up by the dead holder. Before the rename the rotated token
    // died with the process: that is the window no client can close, and it ends in a re-login.
    let next = env.run(&["token"]).await;
    let expected = if renamed { 0 } else { 4 };
    assert_eq!(
        next.status.code(),
        Some(expected),
        "{step}: {}",
        String::from_utf8_lossy(&next.stderr)
    );

    // The next writer removes the temporary file.
    let fresh = env.home().join("fresh.json");
    std::fs::write(
        &fresh,
        env.sim
            .auth_json(&Identity::new("acct-1", "user-alice"))
            .to_string(),
    )
    .unwrap();
    assert_success(&env.run(&["login", "--from", fresh.to_str().unwrap()]).await);
    assert_eq!(temps(), 0, "{step}: the next writer cleaned up");
}
