//! Where the manager keeps credentials: the local file store, or a shared PostgreSQL store
//! mirrored into the local `auth.json`. One transaction shape for both: lock, read, write or
//! remove, commit.

use std::path::PathBuf;
use std::time::Duration;

use crate::document::AuthDocument;
use crate::error::Result;
#[cfg(feature = "postgres")]
use crate::store::postgres::{PgStore, PgTransaction};
use crate::store::{FileStore, Transaction};

/// The store the manager's transactions run on.
#[derive(Debug)]
pub(super) enum Backend {
    /// `auth.json` in the Codex home, under its locks.
    File(FileStore),
    /// A PostgreSQL row, locked per transaction; `mirror` is the local `auth.json` that local
    /// programs (Codex among them) read, kept equal to the row.
    #[cfg(feature = "postgres")]
    Postgres {
        /// The shared store.
        store: PgStore,
        /// The local Codex home.
        mirror: FileStore,
    },
}

impl Backend {
    /// The local file store (the mirror, for a shared store).
    pub(super) fn local(&self) -> &FileStore {
        match self {
            Backend::File(store) => store,
            #[cfg(feature = "postgres")]
            Backend::Postgres { mirror, .. } => mirror,
        }
    }

    /// Where the credentials are, for messages.
    pub(super) fn location(&self) -> PathBuf {
        match self {
            Backend::File(store) => store.auth_path().to_owned(),
            #[cfg(feature = "postgres")]
            Backend::Postgres { store, .. } => PathBuf::from(store.location()),
        }
    }

    /// Whether changes by others can only be seen by asking the store (no directory watch).
    pub(super) fn is_remote(&self) -> bool {
        !matches!(self, Backend::File(_))
    }

    /// Reads without locking.
    pub(super) async fn read(&self) -> Result<Option<AuthDocument>> {
        match self {
            Backend::File(store) => store.read(),
            #[cfg(feature = "postgres")]
            Backend::Postgres { store, .. } => store.read().await,
        }
    }

    /// Starts a transaction (bounded wait for the lock).
    pub(super) async fn begin(&self) -> Result<Tx<'_>> {
        match self {
            Backend::File(store) => store.begin().await.map(Tx::File),
            #[cfg(feature = "postgres")]
            Backend::Postgres { store, .. } => store.begin().await.map(Tx::Postgres),
        }
    }

    /// Makes the local `auth.json` equal to `document` (or removes it) after a shared store
    /// changed. A failure is logged, not returned: the credentials are safe in the shared store,
    /// and the next change mirrors again.
    pub(super) async fn mirror(&self, document: Option<&AuthDocument>) {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres { mirror, .. } = self {
            let result = async {
                mirror.ensure_home()?;
                let mut transaction = mirror.begin().await?;
                let current = transaction.read().ok().flatten();
                match document {
                    Some(document) if current.as_ref() != Some(document) => {
                        transaction.write(document).await
                    }
                    None if current.is_some() => transaction.remove().await.map(|_| ()),
                    _ => Ok(()),
                }
            }
            .await;
            if let Err(error) = result {
                tracing::warn!(
                    "could not mirror the shared credentials into {}: {error}",
                    mirror.auth_path().display()
                );
            }
        }
        #[cfg(not(feature = "postgres"))]
        let _ = document;
    }
}

/// A transaction on either store. Dropping it without `commit` releases the lock; on PostgreSQL
/// it also rolls back (the file store's writes are durable as they happen).
#[derive(Debug)]
pub(super) enum Tx<'a> {
    File(Transaction<'a>),
    #[cfg(feature = "postgres")]
    Postgres(PgTransaction),
}

impl Tx<'_> {
    pub(super) async fn read(&mut self) -> Result<Option<AuthDocument>> {
        match self {
            Tx::File(transaction) => transaction.read(),
            #[cfg(feature = "postgres")]
            Tx::Postgres(transaction) => transaction.read().await,
        }
    }

    pub(super) async fn write(&mut self, document: &AuthDocument) -> Result<()> {
        match self {
            Tx::File(transaction) => transaction.write(document).await,
            #[cfg(feature = "postgres")]
            Tx::Postgres(transaction) => transaction.write(document).await,
        }
    }

    pub(super) async fn remove(&mut self) -> Result<bool> {
        match self {
            Tx::File(transaction) => transaction.remove().await,
            #[cfg(feature = "postgres")]
            Tx::Postgres(transaction) => transaction.remove().await,
        }
    }

    pub(super) async fn commit(self) -> Result<()> {
        match self {
            Tx::File(_) => Ok(()),
            #[cfg(feature = "postgres")]
            Tx::Postgres(transaction) => transaction.commit().await,
        }
    }

    pub(super) fn lock_wait(&self) -> Duration {
        match self {
            Tx::File(transaction) => transaction.lock_wait(),
            #[cfg(feature = "postgres")]
            Tx::Postgres(transaction) => transaction.lock_wait(),
        }
    }
}
