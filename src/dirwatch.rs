//! Noticing changes other processes make to `auth.json`, without a system call per `auth()`.
//!
//! An atomic rename replaces the file's inode, so the directory is watched, not the file. The
//! watcher thread marks the cache dirty and wakes anyone waiting for a change; where no watch
//! can be set up (the directory is missing, inotify is exhausted, an exotic filesystem), the
//! manager falls back to comparing the file's metadata once per call.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// What the watcher thread and the manager share.
#[derive(Debug, Default)]
pub(crate) struct ChangeSignal {
    /// Set when `auth.json` may have changed since the cache was filled.
    pub(crate) dirty: AtomicBool,
    /// Counts changes seen, so a waiter can tell whether one happened.
    pub(crate) generation: AtomicU64,
    /// Wakes waiters on every change.
    pub(crate) notify: Notify,
}

impl ChangeSignal {
    fn changed(&self) {
        self.dirty.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

/// Watches the directories holding `auth.json` (and its symlink target). Dropping it stops the
/// watch.
pub(crate) struct DirectoryWatch {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for DirectoryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectoryWatch")
    }
}

impl DirectoryWatch {
    /// Starts watching; `None` when the platform or the directory does not allow it.
    pub(crate) fn start(auth_path: &Path, signal: Arc<ChangeSignal>) -> Option<Self> {
        let mut names: Vec<OsString> = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut add = |path: &Path| {
            if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_owned());
                }
                names.push(name.to_owned());
            }
        };
        add(auth_path);
        if let Ok(target) = fs::canonicalize(auth_path) {
            add(&target);
        }
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match event {
                    // Reads (ours included) are not changes; counting them would loop.
                    Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
                    Ok(event) => {
                        let concerns_auth = event
                            .paths
                            .iter()
                            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)));
                        if concerns_auth || event.need_rescan() {
                            signal.changed();
                        }
                    }
                    // A watch error means events may have been lost: assume a change.
                    Err(_) => signal.changed(),
                }
            })
            .ok()?;
        for dir in &dirs {
            if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::debug!(dir = %dir.display(), %error, "cannot watch; falling back to metadata checks");
                return None;
            }
        }
        Some(Self { _watcher: watcher })
    }
}

/// The metadata of `auth.json` that changes whenever its contents are replaced or rewritten: the
/// fallback when no watch is possible. One `stat` per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: u64,
    #[cfg(unix)]
    ctime: (i64, i64),
}

impl FileStamp {
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let meta = fs::metadata(path).ok()?;
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: meta.ino(),
            #[cfg(unix)]
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}
