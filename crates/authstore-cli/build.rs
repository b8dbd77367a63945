//! Names the build in `authstore --version`: `authstore 0.1.0 (abc1234 2026-12-07)`.
//!
//! The commit comes from `AUTHSTORE_COMMIT` when set (a packager building from a source tarball
//! that knows its commit), else from git when this crate sits in the work tree of a git checkout
//! of the project, else nothing: a build from an sdist or a source tarball without `.git` says
//! the version only. The result is `AUTHSTORE_VERSION` for `env!`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=AUTHSTORE_COMMIT");
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let commit = match std::env::var("AUTHSTORE_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => Some(commit.trim().to_owned()),
        _ => git_commit(&manifest_dir),
    };
    let full = match commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!("cargo:rustc-env=AUTHSTORE_VERSION={full}");
}

/// `abc1234 2026-12-07` of HEAD, when `dir` is inside a git work tree whose top level is the
/// project's (an unpacked source tarball inside some other repository is not).
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let project = dir.parent()?.parent()?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(project).ok()? {
        return None;
    }
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch's ref and packed-refs (a
    // commit). Only files that exist: cargo reruns on every build for a missing one.
    let mut watched = Vec::new();
    if let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) {
        watched.push(PathBuf::from(&git_dir).join("HEAD"));
    }
    if let Some(common) = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    ) {
        let common = PathBuf::from(common);
        watched.push(common.join("packed-refs"));
        if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            watched.push(common.join(reference));
        }
    }
    for path in watched.iter().filter(|path| path.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let line = git(dir, &["log", "-1", "--format=%h %cs"])?;
    (!line.is_empty()).then_some(line)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8(output.stdout).ok()?.trim().to_owned())
}
