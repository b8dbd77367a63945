//! One active `authstore agent` per Codex home, and what it tells other processes about itself.
//!
//! # Protocol
//!
//! * `authstore-agent.lock` in the home is the **agent lock**: the active agent holds it (an
//!   exclusive advisory lock, through `lock.rs` like every lock call) for its whole life. It is
//!   neither `auth.lock` nor `auth.json`: Codex and transactions never see it, and a standby
//!   agent waiting for it blocks nobody. A second agent finds it held, says it is a standby, and
//!   waits in the kernel's lock call (no polling); the kernel releases the lock when the active
//!   agent exits or dies, SIGKILL included, and the standby takes over at once. The file is
//!   created 0600 and never deleted.
//! * `authstore-agent.json` beside it is the **presence note**: `{"pid", "since", "next_check"}`
//!   (RFC 3339 times), written by the active agent only, after it took the lock, and rewritten
//!   whenever it plans its next look. It is a separate file because a lock on Windows is
//!   mandatory (nobody could read a note inside the locked file), and it is rewritten in place
//!   (one fixed-size record at offset 0, never truncated, the descriptor kept open) rather than
//!   replaced: no fsync, no new inode, and no event for the directory watch of other authstore
//!   processes (which on Linux listens for creations, renames and close-after-write only).
//! * [`FileStore::active_agent`] is how `status` (and anything else) learns who keeps the home
//!   fresh: the note counts only while the agent lock is held, so a stopped or killed agent is
//!   never reported. On Linux the kernel names the holder (`/proc/locks`), and its pid is the one
//!   reported: it is the pid as the reader sees it, which differs from the note's own when the
//!   agent runs in another PID namespace (a container sharing the home). Elsewhere a shared
//!   try-lock tells whether the lock is held, and the note is trusted as the holder's (a new
//!   agent writes it microseconds after taking the lock).
//! * A reader can race the in-place rewrite and read a mix of two records of the same length,
//!   which may still parse (with a `next_check` made of both). So a note counts only when two
//!   reads in a row give the same bytes: a rewrite happens at most about once a second, and
//!   each read takes microseconds.
//! * With a shared store (`--store postgres://…`) the agent lock is still per local home: one
//!   agent per machine and home, and agents on several machines may run at once (the shared
//!   store's transaction keeps their refreshes apart).
//!
//! # Verified where
//!
//! Linux (the whole suite): the lock, the hand-off to a standby after SIGTERM and SIGKILL, and
//! the holder from `/proc/locks` (the command line's `agent_standby` tests, and this module's tests). macOS
//! uses the same `flock` and the try-lock path (no `/proc/locks`), compiled and linted for only.
//! Windows: `LockFileEx` (std's `File::lock`) through the same code, the note readable because
//! it is a separate file opened with std's default sharing (read, write, delete); compiled and
//! linted for only.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::DateTime;
use serde_json::json;

use super::FileStore;
use super::lock::{self, AgentLock, Holding};
use crate::document::format_timestamp;
use crate::error::{Error, Result};
use crate::store::sys;

/// The agent lock in a Codex home: held by the one active `authstore agent`.
pub const AGENT_LOCK_FILE: &str = "authstore-agent.lock";
/// The active agent's presence note, beside the agent lock.
pub const AGENT_NOTE_FILE: &str = "authstore-agent.json";

/// The note is one record of this many bytes (JSON padded with spaces, then a newline).
const NOTE_BYTES: usize = 256;
/// A note is read back at most this long.
const MAX_NOTE_BYTES: u64 = 4096;

/// The active agent of a home, as it describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPresence {
    /// Its process id.
    pub pid: u32,
    /// When it became the active agent.
    pub since: SystemTime,
    /// When it will next look at the credentials; `None` before its first look.
    pub next_check: Option<SystemTime>,
}

impl AgentPresence {
    /// `{"pid": N, "since": "RFC 3339", "next_check": "RFC 3339" | null}`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "pid": self.pid,
            "since": format_timestamp(self.since),
            "next_check": self.next_check.map(format_timestamp),
        })
    }

    /// `pid N since TIME next check TIME|unknown`, for people.
    pub fn describe(&self) -> String {
        format!(
            "pid {} since {} next check {}",
            self.pid,
            format_timestamp(self.since),
            self.next_check
                .map(format_timestamp)
                .unwrap_or_else(|| "unknown".into())
        )
    }

    fn from_json(text: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
        let time = |field: &str| {
            DateTime::parse_from_rfc3339(value.get(field)?.as_str()?)
                .ok()
                .map(SystemTime::from)
        };
        Some(Self {
            pid: u32::try_from(value.get("pid")?.as_u64()?).ok()?,
            since: time("since")?,
            next_check: match value.get("next_check")? {
                serde_json::Value::Null => None,
                _ => Some(time("next_check")?),
            },
        })
    }
}

/// This process as the active agent of a home: holds the agent lock until dropped (or until
/// the process ends, however it ends).
#[derive(Debug)]
pub struct ActiveAgent {
    note: File,
    note_path: PathBuf,
    presence: AgentPresence,
    _lock: AgentLock,
}

impl ActiveAgent {
    fn start(lock: AgentLock, note_path: PathBuf) -> Result<Self> {
        let note = sys::open_lock_file(&note_path)
            .map_err(|e| Error::io("open the agent note", &note_path, e))?;
        let mut agent = Self {
            note,
            note_path,
            presence: AgentPresence {
                pid: std::process::id(),
                since: whole_micros(SystemTime::now()),
                next_check: None,
            },
            _lock: lock,
        };
        // A longer file (left by hand) would never parse; ours is one record.
        agent
            .note
            .set_len(NOTE_BYTES as u64)
            .and_then(|()| agent.write_note())
            .map_err(|e| Error::io("write the agent note", &agent.note_path, e))?;
        Ok(agent)
    }

    /// What this agent tells other processes about itself.
    pub fn presence(&self) -> &AgentPresence {
        &self.presence
    }

    /// Records when this agent will look next. A failed write is logged, not returned: the
    /// note is for other processes' information and the agent goes on keeping the home fresh.
    pub fn set_next_check(&mut self, next_check: Option<SystemTime>) {
        self.presence.next_check = next_check.map(whole_micros);
        if let Err(error) = self.write_note() {
            tracing::debug!(path = %self.note_path.display(), %error, "could not update the agent note");
        }
    }

    fn write_note(&mut self) -> io::Result<()> {
        let text = self.presence.to_json().to_string();
        let mut record = [b' '; NOTE_BYTES];
        let len = text.len().min(NOTE_BYTES - 1);
        record[..len].copy_from_slice(&text.as_bytes()[..len]);
        record[NOTE_BYTES - 1] = b'\n';
        self.note.seek(SeekFrom::Start(0))?;
        self.note.write_all(&record)
    }
}

impl FileStore {
    /// The agent lock in this home ([`AGENT_LOCK_FILE`]).
    pub fn agent_lock_path(&self) -> PathBuf {
        self.home().join(AGENT_LOCK_FILE)
    }

    /// The active agent's presence note in this home ([`AGENT_NOTE_FILE`]).
    pub fn agent_note_path(&self) -> PathBuf {
        self.home().join(AGENT_NOTE_FILE)
    }

    /// Becomes the active agent of this home if there is none (creating the home, 0700, when it
    /// is missing); `Ok(None)` when another process is the active agent.
    ///
    /// # Errors
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the home, the lock file or the note cannot
    /// be created or written; [`ErrorKind::LockUnsupported`](crate::ErrorKind::LockUnsupported)
    /// on a filesystem that cannot lock.
    pub fn try_become_agent(&self) -> Result<Option<ActiveAgent>> {
        self.ensure_home()?;
        match lock::try_acquire_agent_lock(&self.agent_lock_path())? {
            Some(lock) => ActiveAgent::start(lock, self.agent_note_path()).map(Some),
            None => Ok(None),
        }
    }

    /// Waits, as a standby, until this home has no active agent, and becomes it. No deadline
    /// and no polling: the wait ends the moment the active agent stops or dies. Dropping the
    /// future abandons the wait.
    ///
    /// # Errors
    /// As [`FileStore::try_become_agent`].
    pub async fn become_agent(&self) -> Result<ActiveAgent> {
        self.ensure_home()?;
        let lock = lock::wait_for_agent_lock(&self.agent_lock_path()).await?;
        ActiveAgent::start(lock, self.agent_note_path())
    }

    /// The active agent of this home, if one is running: its note, counted only while the
    /// agent lock is held, with the holder's pid as the kernel names it to this process where
    /// it does (another PID namespace numbers the same process differently). Reads two small
    /// files and locks nothing for longer than a try; changes nothing.
    pub fn active_agent(&self) -> Option<AgentPresence> {
        let holder = match lock::holding(&self.agent_lock_path()) {
            Holding::Free => return None,
            Holding::Held { pid } => pid,
        };
        let note = read_note(&self.agent_note_path())?;
        Some(match holder {
            Some(pid) => AgentPresence { pid, ..note },
            // Not named: another system, or a holder outside this process's PID namespace.
            None => note,
        })
    }
}

/// `time` to the microsecond, as the note writes it, so that what this process holds is what
/// others read.
fn whole_micros(time: SystemTime) -> SystemTime {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since_epoch) => {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::from_micros(
                    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX),
                )
        }
        Err(_) => time,
    }
}

/// The note at `path`, read again when a read raced its rewrite.
/// The note at `path`, once two reads in a row agree (a read that raced the agent's in-place
/// rewrite can mix two records); `None` when it is missing, unreadable, or still changing
/// after a few reads.
fn read_note(path: &Path) -> Option<AgentPresence> {
    let read = || -> Option<String> {
        let mut text = String::new();
        let file = OpenOptions::new().read(true).open(path).ok()?;
        file.take(MAX_NOTE_BYTES).read_to_string(&mut text).ok()?;
        Some(text)
    };
    let mut previous = read()?;
    for _ in 0..4 {
        let text = read()?;
        if text == previous {
            return AgentPresence::from_json(&text);
        }
        previous = text;
    }
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn the_note_names_the_agent_only_while_it_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("home"), StoreOptions::default());
        assert_eq!(store.active_agent(), None, "no home, no agent");

        let mut agent = store
            .try_become_agent()
            .unwrap()
            .expect("the first is active");
        let seen = store.active_agent().expect("the active agent is seen");
        assert_eq!(seen.pid, std::process::id());
        assert_eq!(seen.next_check, None);
        let next = SystemTime::now() + Duration::from_secs(30);
        agent.set_next_check(Some(next));
        let seen = store.active_agent().unwrap();
        // Written to the microsecond.
        let drift = next
            .duration_since(seen.next_check.unwrap())
            .unwrap_or_else(|e| e.duration());
        assert!(drift < Duration::from_micros(1), "{drift:?}");
        assert_eq!(&seen, agent.presence());

        // A second claim on the same home (another open file description) is refused.
        assert!(store.try_become_agent().unwrap().is_none());
        drop(agent);
        // The note stays on disk, but nobody holds the lock: no agent.
        assert!(store.agent_note_path().exists());
        assert_eq!(store.active_agent(), None);
    }

    #[test]
    fn a_standby_becomes_active_when_the_lock_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path(), StoreOptions::default());
        let first = store.try_become_agent().unwrap().unwrap();
        let runtime = runtime();
        let waiting = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), store.become_agent()).await
        });
        assert!(
            waiting.is_err(),
            "the standby waits while the first is active"
        );
        drop(first);
        let second = runtime
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), store.become_agent()).await
            })
            .expect("taken over once released")
            .unwrap();
        assert_eq!(store.active_agent().as_ref(), Some(second.presence()));
    }

    #[test]
    fn a_torn_or_foreign_note_is_no_presence() {
        let cases = [
            "",
            "{\"pid\": 12, \"since\": \"2026-12-04T15:00:00Z\", \"next_check\": null} }",
            "{\"pid\": -1, \"since\": \"2026-12-04T15:00:00Z\", \"next_check\": null}",
            "{\"pid\": 12, \"since\": \"yesterday\", \"next_check\": null}",
            "{\"pid\": 12, \"since\": \"2026-12-04T15:00:00Z\"}",
        ];
        for case in cases {
            assert_eq!(AgentPresence::from_json(case), None, "{case}");
        }
        let good = "{\"pid\": 12, \"since\": \"2026-12-04T15:00:00Z\", \"next_check\": \"2026-12-04T15:00:30.5Z\"}   \n";
        let presence = AgentPresence::from_json(good).unwrap();
        assert_eq!(presence.pid, 12);
        assert_eq!(
            presence.to_json()["next_check"],
            "2026-12-04T15:00:30.500000Z"
        );
    }
}
