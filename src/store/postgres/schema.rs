//! The schema: created on first use, versioned, and safe when many processes connect to a fresh
//! database at once.
//!
//! `authstore_schema` holds one row with the schema version. A process whose quick check finds
//! the current version does nothing more. Otherwise it takes a transaction-scoped advisory lock
//! (so that concurrent creators queue instead of racing: `CREATE TABLE IF NOT EXISTS` alone is
//! not safe against itself), checks again, and creates or migrates.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::connection::{Conn, Failure};

/// The version this build creates and understands.
pub(super) const VERSION: i32 = 1;

/// Key of the advisory lock that serializes schema changes ("authstor").
const LOCK_KEY: i64 = 0x6175_7468_7374_6f72;

/// Version 1: a row per credential key. `document` is the auth document as text, byte for byte
/// as authstore wrote it (not jsonb, which would reorder keys); NULL means logged out, and the
/// row stays so that it can be locked.
const CREATE_V1: &str = "\
CREATE TABLE authstore_credentials (
    key text PRIMARY KEY,
    document text,
    generation bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO authstore_schema (version) VALUES (1)";

/// Why the schema could not be made ready.
pub(super) enum SchemaError {
    /// The database failed or could not be reached.
    Failure(Failure),
    /// The database holds a newer schema than this build understands.
    Newer(i32),
}

impl From<Failure> for SchemaError {
    fn from(failure: Failure) -> Self {
        SchemaError::Failure(failure)
    }
}

/// Makes sure the current schema exists, creating it when missing. `bound` limits each round
/// trip and the wait for another process that is creating it.
pub(super) async fn ensure(conn: &mut Conn, bound: Duration) -> Result<(), SchemaError> {
    match version(conn, bound).await {
        Ok(Some(version)) if version == VERSION => return Ok(()),
        Ok(Some(version)) if version > VERSION => return Err(SchemaError::Newer(version)),
        Ok(_) => {}
        Err(failure) if failure.is(&SqlState::UNDEFINED_TABLE) => {}
        Err(failure) => return Err(failure.into()),
    }
    let wait = bound.as_millis().clamp(1, i32::MAX as u128);
    conn.batch(
        &format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; \
             SET LOCAL lock_timeout = '{wait}ms'; \
             SELECT pg_advisory_xact_lock({LOCK_KEY}); \
             CREATE TABLE IF NOT EXISTS authstore_schema ( \
                 singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), \
                 version integer NOT NULL)"
        ),
        bound,
    )
    .await?;
    let outcome = match version(conn, bound).await? {
        None => conn
            .batch(CREATE_V1, bound)
            .await
            .map_err(SchemaError::from),
        Some(version) if version == VERSION => Ok(()),
        Some(version) if version > VERSION => Err(SchemaError::Newer(version)),
        // No older version exists yet; a later build migrates from here, step by step.
        Some(version) => Err(SchemaError::Failure(Failure {
            code: None,
            reason: format!("unknown authstore schema version {version}"),
            lost: false,
            cause: None,
        })),
    };
    match outcome {
        Ok(()) => conn.batch("COMMIT", bound).await.map_err(SchemaError::from),
        Err(error) => {
            let _ = conn.batch("ROLLBACK", bound).await;
            Err(error)
        }
    }
}

async fn version(conn: &mut Conn, bound: Duration) -> Result<Option<i32>, Failure> {
    let row = conn
        .query_raw_opt("SELECT version FROM authstore_schema", bound)
        .await?;
    Ok(row.and_then(|row| row.try_get::<_, i32>(0).ok()))
}
