//! Noticing changes other processes make to `auth.json`, without a system call per `auth()`:
//! the file store's [`ChangeFeed`].
//!
//! An atomic rename replaces the file's inode, so the directory is watched, not the file. The
//! watcher thread counts the changes it sees and wakes anyone waiting for one; a [`Mark`] is
//! that count, so "changed since" is one atomic load. Where no watch can be set up (the
//! directory is missing, inotify is exhausted, an exotic filesystem), or none is wanted, the
//! feed compares the file's metadata instead: one `stat` per look.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::{BoxFuture, ChangeFeed, ChangeOptions, Mark, MarkKind};

/// How often a feed without a watch looks at the file's metadata while someone waits.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The file store's change feed: a directory watch when one can be set up, else the file's
/// metadata.
#[derive(Debug)]
pub(crate) enum FileChanges {
    Watched {
        signal: Arc<ChangeSignal>,
        _watch: DirectoryWatch,
    },
    Stat {
        path: PathBuf,
        checks: AtomicU64,
    },
}

impl FileChanges {
    pub(crate) fn start(auth_path: &Path, options: ChangeOptions) -> Self {
        if options.watch {
            let signal = Arc::new(ChangeSignal::default());
            if let Some(watch) = DirectoryWatch::start(auth_path, signal.clone()) {
                return FileChanges::Watched {
                    signal,
                    _watch: watch,
                };
            }
        }
        FileChanges::Stat {
            path: auth_path.to_owned(),
            checks: AtomicU64::new(0),
        }
    }
}

impl ChangeFeed for FileChanges {
    fn mark(&self) -> Mark {
        Mark(match self {
            FileChanges::Watched { signal, .. } => {
                MarkKind::Count(signal.generation.load(Ordering::Acquire))
            }
            FileChanges::Stat { path, .. } => MarkKind::Stamp(FileStamp::of(path)),
        })
    }

    fn changed_since(&self, mark: &Mark) -> bool {
        match (self, &mark.0) {
            (FileChanges::Watched { signal, .. }, MarkKind::Count(count)) => {
                signal.is_lost() || signal.generation.load(Ordering::Acquire) != *count
            }
            (FileChanges::Stat { path, checks }, MarkKind::Stamp(stamp)) => {
                checks.fetch_add(1, Ordering::Relaxed);
                FileStamp::of(path) != *stamp
            }
            _ => true,
        }
    }

    fn wait<'a>(&'a self, mark: &'a Mark) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match self {
                FileChanges::Watched { signal, .. } if !signal.is_lost() => {
                    let notified = signal.notify.notified();
                    if !self.changed_since(mark) {
                        notified.await;
                    }
                }
                // The watch is gone (its directory was removed or moved): every look now
                // re-reads, and a waiter is paced like one without a watch, never spun.
                FileChanges::Watched { .. } => tokio::time::sleep(POLL_INTERVAL).await,
                FileChanges::Stat { .. } => {
                    while !self.changed_since(mark) {
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                }
            }
        })
    }

    fn is_watching(&self) -> bool {
        matches!(self, FileChanges::Watched { signal, .. } if !signal.is_lost())
    }

    fn checks(&self) -> u64 {
        match self {
            FileChanges::Watched { .. } => 0,
            FileChanges::Stat { checks, .. } => checks.load(Ordering::Relaxed),
        }
    }
}

/// What the watcher thread and the feed share.
#[derive(Debug, Default)]
pub(crate) struct ChangeSignal {
    /// Counts changes seen, so that a mark can tell whether one happened.
    generation: AtomicU64,
    /// Wakes waiters on every change.
    notify: Notify,
    /// Set when the watch can no longer report changes.
    lost: AtomicBool,
}

impl ChangeSignal {
    /// Whether the watch stopped working (its directory went away): from then on every look
    /// re-reads, as without a watch.
    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn lost(&self) {
        self.lost.store(true, Ordering::Release);
        self.changed();
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

/// Watches the directories holding `auth.json` (and its symlink target). Dropping it stops the
/// watch.
pub(crate) struct DirectoryWatch {
    #[cfg(target_os = "linux")]
    _watch: linux::InotifyWatch,
    #[cfg(not(target_os = "linux"))]
    _watcher: notify::RecommendedWatcher,
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
        #[cfg(target_os = "linux")]
        {
            linux::InotifyWatch::start(&dirs, names, signal).map(|watch| Self { _watch: watch })
        }
        #[cfg(not(target_os = "linux"))]
        {
            portable_watcher(&dirs, names, signal).map(|watcher| Self { _watcher: watcher })
        }
    }
}

/// Linux: inotify directly, subscribed only to what replaces or rewrites a file (create, delete,
/// rename, close after writing). A general-purpose watcher also subscribes to opens, reads and
/// attribute changes, which would wake every watching process many times per transaction.
#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

    use super::ChangeSignal;

    pub(super) struct InotifyWatch {
        watches: Watches,
        descriptors: Vec<WatchDescriptor>,
        stop: Arc<AtomicBool>,
    }

    impl InotifyWatch {
        pub(super) fn start(
            dirs: &[PathBuf],
            names: Vec<OsString>,
            signal: Arc<ChangeSignal>,
        ) -> Option<Self> {
            let mut inotify = Inotify::init().ok()?;
            let mask = WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MOVED_FROM
                | WatchMask::MOVED_TO
                | WatchMask::CLOSE_WRITE
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF;
            let mut watches = inotify.watches();
            let mut descriptors = Vec::new();
            for dir in dirs {
                match watches.add(dir, mask) {
                    Ok(descriptor) => descriptors.push(descriptor),
                    Err(error) => {
                        tracing::debug!(dir = %dir.display(), %error, "cannot watch; falling back to metadata checks");
                        return None;
                    }
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = stop.clone();
            let descriptors_at_start = descriptors.len();
            let mut remaining = descriptors_at_start;
            std::thread::Builder::new()
                .name("authstore-watch".into())
                .spawn(move || {
                    let mut buffer = [0u8; 4096];
                    loop {
                        let events = match inotify.read_events_blocking(&mut buffer) {
                            Ok(events) => events,
                            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {
                                continue;
                            }
                            Err(_) => {
                                signal.lost();
                                return;
                            }
                        };
                        let mut changed = false;
                        let mut moved_away = false;
                        for event in events {
                            if event.mask.contains(EventMask::IGNORED) {
                                remaining = remaining.saturating_sub(1);
                            }
                            // A watched directory that was moved keeps its watch under its new
                            // name: events for the path that now stands in its place would never
                            // come.
                            moved_away |= event.mask.contains(EventMask::MOVE_SELF);
                            changed |= event.mask.contains(EventMask::Q_OVERFLOW)
                                || event.mask.contains(EventMask::DELETE_SELF)
                                || event.name.is_some_and(|n| names.iter().any(|m| m == n));
                        }
                        if stopping.load(Ordering::Acquire) {
                            return;
                        }
                        if changed {
                            signal.changed();
                        }
                        if remaining < descriptors_at_start || moved_away {
                            // A watched directory went away or moved: the watch can no longer
                            // see every change. From now on every look re-reads.
                            signal.lost();
                            return;
                        }
                    }
                })
                .ok()?;
            Some(Self {
                watches,
                descriptors,
                stop,
            })
        }
    }

    impl Drop for InotifyWatch {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            // Removing the watches wakes the thread (IN_IGNORED); it sees `stop` and ends,
            // closing the inotify descriptor.
            for descriptor in self.descriptors.drain(..) {
                let _ = self.watches.remove(descriptor);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn portable_watcher(
    dirs: &[PathBuf],
    names: Vec<OsString>,
    signal: Arc<ChangeSignal>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
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
    for dir in dirs {
        if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %dir.display(), %error, "cannot watch; falling back to metadata checks");
            return None;
        }
    }
    Some(watcher)
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
        fs::metadata(path).ok().map(|meta| Self::of_metadata(&meta))
    }

    /// The stamp of a file already opened (its `fstat`).
    pub(crate) fn of_metadata(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: meta.ino(),
            #[cfg(unix)]
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}
