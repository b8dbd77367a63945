//! A shared store mirrored into the local `auth.json`: [`Mirrored`].
//!
//! Machines that share one login keep it in a shared store (PostgreSQL), but local programs,
//! Codex among them, read only `$CODEX_HOME/auth.json`. `Mirrored` runs every transaction on
//! the shared store and, after each commit and each read that found something new, makes the
//! local file equal to what the shared store holds: written with the file store's own
//! transaction (its locks, its durable atomic write), or removed after a logout.
//!
//! The shared store is the truth; the mirror is a copy for readers. Mirroring happens after the
//! shared store committed, never while its lock is held, and a mirror that cannot be written is
//! logged, not returned: the credentials are safe in the shared store, and the next change (or
//! the next read that sees the file differ) mirrors again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{BoxFuture, ChangeFeed, ChangeOptions, FileStore, Store, Transaction};
use crate::document::AuthDocument;
use crate::error::{Location, Result};

/// A shared store `S` whose document is copied into a local `auth.json` after every change.
#[derive(Debug)]
pub struct Mirrored<S> {
    shared: S,
    mirror: Arc<Mirror>,
}

#[derive(Debug)]
struct Mirror {
    file: FileStore,
    /// What was last copied into the file, so that an unchanged row costs no file lock. std
    /// Mutex: nothing awaits while it is held.
    last: Mutex<Option<Option<AuthDocument>>>,
}

impl<S: Store> Mirrored<S> {
    /// `shared`, mirrored into the `auth.json` of `file`.
    pub fn new(shared: S, file: FileStore) -> Self {
        Self {
            shared,
            mirror: Arc::new(Mirror {
                file,
                last: Mutex::new(None),
            }),
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
    /// Makes the local file hold `document` (or no file), unless it was already copied.
    async fn copy(&self, document: Option<&AuthDocument>) {
        {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.as_ref().is_some_and(|last| last.as_ref() == document) {
                return;
            }
        }
        let result = async {
            self.file.ensure_home()?;
            let mut transaction = self.file.begin().await?;
            let current = transaction.read().await.ok().flatten();
            match document {
                Some(document) if current.as_ref() != Some(document) => {
                    transaction.write(document).await
                }
                None if current.is_some() => transaction.remove().await.map(|_| ()),
                _ => Ok(()),
            }
        }
        .await;
        match result {
            Ok(()) => {
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(document.cloned());
            }
            Err(error) => tracing::warn!(
                "could not mirror the shared credentials into {}: {}",
                self.file.auth_path().display(),
                error.report()
            ),
        }
    }
}

impl<S: Store> Store for Mirrored<S> {
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
}
