//! A shared store mirrored into the local `auth.json`: [`Mirrored`].
//!
//! Machines that share one login keep it in a shared store (PostgreSQL), but local programs,
//! Codex among them, read only `$CODEX_HOME/auth.json`. `Mirrored` runs every transaction on
//! the shared store and, after each commit and each read that found something new, makes the
//! local file equal to what the shared store holds: written with the file store's own
//! transaction (its locks, its durable atomic write), or removed after a logout.
//!
//! The shared store is the truth; the mirror is a copy for readers. Mirroring happens after the
//! shared store committed, never while its lock is held. Inside the file's lock the shared store
//! is read again and its newest state is what gets written, so that two processes mirroring at
//! once leave the newer document, whichever takes the file lock last. A mirror that cannot be
//! written is logged, not returned: the credentials are safe in the shared store, and the next
//! change, or the next read that finds the file changed since it was mirrored (someone else
//! rewrote or removed it), mirrors again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::file::watch::FileStamp;
use super::{BoxFuture, ChangeFeed, ChangeOptions, FileStore, Store, Transaction};
use crate::document::AuthDocument;
use crate::error::{Location, Result};

/// A shared store `S` whose document is copied into a local `auth.json` after every change.
#[derive(Debug)]
pub struct Mirrored<S> {
    shared: Arc<S>,
    mirror: Arc<Mirror>,
}

#[derive(Debug)]
struct Mirror {
    file: FileStore,
    /// The shared store again, read inside the file's lock.
    shared: Arc<dyn Store>,
    /// What was last copied into the file, and the file's metadata right after, so that an
    /// unchanged row over an untouched file costs one `stat` and no lock. std Mutex: nothing
    /// awaits while it is held.
    last: Mutex<Option<(Option<AuthDocument>, Option<FileStamp>)>>,
}

impl<S: Store + 'static> Mirrored<S> {
    /// `shared`, mirrored into the `auth.json` of `file`.
    pub fn new(shared: S, file: FileStore) -> Self {
        let shared = Arc::new(shared);
        Self {
            mirror: Arc::new(Mirror {
                file,
                shared: shared.clone(),
                last: Mutex::new(None),
            }),
            shared,
        }
    }

    /// The shared store.
    pub fn shared(&self) -> &S {
        &self.shared
    }

    /// The local file it is mirrored into.
    pub fn mirror(&self) -> &FileStore {
        &self.mirror.file
    }
}

impl Mirror {
    /// Makes the local file hold what the shared store holds, `document` having been seen
    /// there last; nothing to do when that was copied already and the file is as it was left.
    async fn copy(&self, document: Option<&AuthDocument>) {
        {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((copied, stamp)) = last.as_ref()
                && copied.as_ref() == document
                && FileStamp::of(self.file.auth_path()) == *stamp
            {
                return;
            }
        }
        let result = async {
            self.file.ensure_home()?;
            let mut transaction = self.file.begin().await?;
            // Read again under the file's lock: a process that saw an older row must not write
            // it over a newer copy another process just made.
            let latest = self.shared.read().await?;
            let current = transaction.read().await.ok().flatten();
            match &latest {
                Some(latest) if current.as_ref() != Some(latest) => {
                    transaction.write(latest).await?;
                }
                None if current.is_some() => {
                    transaction.remove().await?;
                }
                _ => {}
            }
            let stamp = FileStamp::of(self.file.auth_path());
            Ok::<_, crate::Error>((latest, stamp))
        }
        .await;
        match result {
            Ok(copied) => {
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(copied);
            }
            Err(error) => tracing::warn!(
                "could not mirror the shared credentials into {}: {}",
                self.file.auth_path().display(),
                error.report()
            ),
        }
    }
}

impl<S: Store + 'static> Store for Mirrored<S> {
    fn location(&self) -> Location {
        self.shared.location()
    }

    fn read(&self) -> BoxFuture<'_, Result<Option<AuthDocument>>> {
        Box::pin(async move {
            let document = self.shared.read().await?;
            self.mirror.copy(document.as_ref()).await;
            Ok(document)
        })
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>>> {
        Box::pin(async move {
            let inner = self.shared.begin().await?;
            Ok(Box::new(MirroredTransaction {
                inner,
                mirror: self.mirror.clone(),
                state: None,
            }) as Box<dyn Transaction>)
        })
    }

    fn changes(&self, options: ChangeOptions) -> Box<dyn ChangeFeed> {
        self.shared.changes(options)
    }

    fn local_file(&self) -> Option<&FileStore> {
        Some(&self.mirror.file)
    }
}

/// A transaction on the shared store that mirrors what it leaves behind once committed.
#[derive(Debug)]
struct MirroredTransaction {
    inner: Box<dyn Transaction>,
    mirror: Arc<Mirror>,
    /// The document as read or written last in this transaction: what the shared store holds
    /// at commit.
    state: Option<Option<AuthDocument>>,
}

impl Transaction for MirroredTransaction {
    fn read(&mut self) -> BoxFuture<'_, Result<Option<AuthDocument>>> {
        Box::pin(async move {
            let document = self.inner.read().await?;
            self.state = Some(document.clone());
            Ok(document)
        })
    }

    fn write<'a>(&'a mut self, document: &'a AuthDocument) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner.write(document).await?;
            self.state = Some(Some(document.clone()));
            Ok(())
        })
    }

    fn remove(&mut self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            let removed = self.inner.remove().await?;
            self.state = Some(None);
            Ok(removed)
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        let MirroredTransaction {
            inner,
            mirror,
            state,
        } = *self;
        Box::pin(async move {
            inner.commit().await?;
            if let Some(state) = state {
                mirror.copy(state.as_ref()).await;
            }
            Ok(())
        })
    }

    fn lock_wait(&self) -> Duration {
        self.inner.lock_wait()
    }

    fn idle_limit(&self) -> Option<Duration> {
        self.inner.idle_limit()
    }
}
