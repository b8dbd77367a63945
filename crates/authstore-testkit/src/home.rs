//! A temporary Codex home: the directory the processes of a test share, and its `auth.json`.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A Codex home in a temporary directory of its own, removed with it.
pub struct Home {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    /// A new temporary directory (in the system's temporary directory) that is the home itself.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().to_owned();
        Self { dir, path }
    }

    /// A new temporary directory under `parent` whose subdirectory `name` is the home; the rest
    /// of the directory is room for what a test keeps beside the home. (Codex warns about a home
    /// under /tmp: its interop suite makes homes under the cargo target directory.)
    pub fn named_in(parent: &Path, name: &str) -> Self {
        let dir = tempfile::tempdir_in(parent).expect("a temporary directory");
        let path = dir.path().join(name);
        std::fs::create_dir(&path).expect("the home is created");
        Self { dir, path }
    }

    /// The home: what `--codex-home` (or `CODEX_HOME`) names.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary directory: the home itself ([`Home::new`]), or the directory around it
    /// ([`Home::named_in`]). Files a test writes for its processes (a login to install, a
    /// configuration) go here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn auth_path(&self) -> PathBuf {
        self.path.join("auth.json")
    }

    pub fn write_auth(&self, document: &Value) {
        crate::write_auth(&self.path, document);
    }

    /// `auth.json`, parsed; `None` when there is none.
    pub fn read_auth(&self) -> Option<Value> {
        crate::read_auth(&self.path)
    }

    /// `auth.json`, which must exist and parse.
    pub fn disk(&self) -> Value {
        self.read_auth().expect("auth.json exists and parses")
    }
}
