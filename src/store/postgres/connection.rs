//! One connection to the server: opening it (TLS or not), bounding every round trip, and
//! turning what went wrong into a reason that names no secret.

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// Why a statement failed. The reason never holds a parameter value, so never a token.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    /// The server's SQLSTATE, when it gave one.
    pub(super) code: Option<SqlState>,
    /// What went wrong, for a message.
    pub(super) reason: String,
    /// Whether the connection is gone (closed, reset, ended by the server, or silent past the
    /// bound): it must not be used again.
    pub(super) lost: bool,
    /// The client library's error, for a failure that is not the server's answer (a refused or
    /// broken connection): the real cause, kept as the error's `source()`.
    pub(super) cause: Option<Arc<tokio_postgres::Error>>,
}

impl Failure {
    pub(super) fn is(&self, code: &SqlState) -> bool {
        self.code.as_ref() == Some(code)
    }
}

/// The statements the store runs, prepared once per connection.
#[derive(Clone, Copy)]
pub(super) enum Sql {
    Read,
    Generation,
    LockRow,
    EnsureRow,
    Write,
    Remove,
    Holder,
}

const STATEMENTS: usize = 7;

impl Sql {
    fn text(self) -> &'static str {
        match self {
            // `xmin` (the row version's transaction) changes with every new version of the row, also
            // one written by hand or restored from a backup without bumping the generation.
            Sql::Read => {
                "SELECT document, generation, xmin::text FROM authstore_credentials WHERE key = $1"
            }
            Sql::Generation => {
                "SELECT generation, xmin::text FROM authstore_credentials WHERE key = $1"
            }
            Sql::LockRow => {
                "SELECT document, generation FROM authstore_credentials WHERE key = $1 FOR UPDATE"
            }
            Sql::EnsureRow => {
                "INSERT INTO authstore_credentials (key) VALUES ($1) ON CONFLICT (key) DO NOTHING"
            }
            Sql::Write => {
                "UPDATE authstore_credentials \
                 SET document = $2, generation = generation + 1, updated_at = now() \
                 WHERE key = $1 RETURNING generation"
            }
            Sql::Remove => {
                "UPDATE authstore_credentials \
                 SET document = NULL, generation = generation + 1, updated_at = now() \
                 WHERE key = $1 AND document IS NOT NULL RETURNING generation"
            }
            // The row lock's holder: a row locked FOR UPDATE carries the locking transaction's
            // id in xmax, and that transaction holds an exclusive lock on its own id.
            Sql::Holder => {
                "SELECT l.pid, a.application_name, host(a.client_addr), \
                        extract(epoch FROM now() - a.xact_start)::float8 \
                 FROM authstore_credentials c \
                 JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = c.xmax \
                                AND l.granted AND l.mode = 'ExclusiveLock' \
                 LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE c.key = $1"
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What ended a connection, as its background task saw it.
type Ended = Arc<Mutex<Option<Failure>>>;

/// An open connection, with its prepared statements.
pub(super) struct Conn {
    client: Client,
    ended: Ended,
    statements: [Option<Statement>; STATEMENTS],
}

impl Conn {
    /// Whether the connection can still be used.
    pub(super) fn is_usable(&self) -> bool {
        !self.client.is_closed() && lock(&self.ended).is_none()
    }

    /// Why the connection ended, once it has.
    pub(super) fn ended(&self) -> Option<String> {
        if let Some(failure) = lock(&self.ended).as_ref() {
            return Some(failure.reason.clone());
        }
        self.client
            .is_closed()
            .then(|| "the connection was closed".to_owned())
    }

    /// Runs one or more statements with the simple protocol (no parameters), within `bound`.
    pub(super) async fn batch(&self, sql: &str, bound: Duration) -> Result<(), Failure> {
        self.bounded(bound, self.client.batch_execute(sql)).await
    }

    /// Runs a statement without parameters that returns at most one row, within `bound`.
    pub(super) async fn query_raw_opt(
        &self,
        sql: &str,
        bound: Duration,
    ) -> Result<Option<tokio_postgres::Row>, Failure> {
        self.bounded(bound, self.client.query_opt(sql, &[])).await
    }

    /// Runs a prepared statement that returns at most one row, within `bound`.
    pub(super) async fn query_opt(
        &mut self,
        sql: Sql,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        bound: Duration,
    ) -> Result<Option<tokio_postgres::Row>, Failure> {
        let statement = self.statement(sql, bound).await?;
        self.bounded(bound, self.client.query_opt(&statement, params))
            .await
    }

    /// Runs a prepared statement and returns the number of rows it touched, within `bound`.
    pub(super) async fn execute(
        &mut self,
        sql: Sql,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        bound: Duration,
    ) -> Result<u64, Failure> {
        let statement = self.statement(sql, bound).await?;
        self.bounded(bound, self.client.execute(&statement, params))
            .await
    }

    async fn statement(&mut self, sql: Sql, bound: Duration) -> Result<Statement, Failure> {
        if let Some(statement) = &self.statements[sql.index()] {
            return Ok(statement.clone());
        }
        let statement = self.bounded(bound, self.client.prepare(sql.text())).await?;
        self.statements[sql.index()] = Some(statement.clone());
        Ok(statement)
    }

    /// Awaits `future` for at most `bound`; a connection silent past it counts as lost.
    async fn bounded<T>(
        &self,
        bound: Duration,
        future: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(bound, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failure(error)),
            Err(_) => Err(Failure {
                code: None,
                reason: format!("the server did not answer within {}", seconds(bound)),
                lost: true,
                cause: None,
            }),
        }
    }

    fn failure(&self, error: tokio_postgres::Error) -> Failure {
        let failure = describe(error);
        if failure.lost
            && failure.code.is_none()
            && let Some(ended) = lock(&self.ended).clone()
        {
            // "connection closed" says less than what the background task saw end it (for
            // example the server ending an idle transaction).
            return ended;
        }
        failure
    }
}

/// Opens a connection within `bound` (TCP or socket, TLS, authentication).
pub(super) async fn open(
    config: &Config,
    tls: Option<&MakeRustlsConnect>,
    bound: Duration,
) -> Result<Conn, Failure> {
    let opening = async {
        match tls {
            Some(tls) => spawn::<MakeRustlsConnect>(config.connect(tls.clone()).await?),
            None => spawn::<NoTls>(config.connect(NoTls).await?),
        }
    };
    match tokio::time::timeout(bound, opening).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(error)) => Err(describe(error)),
        Err(_) => Err(Failure {
            code: None,
            reason: format!("no connection within {}", seconds(bound)),
            lost: true,
            cause: None,
        }),
    }
}

/// Runs the connection's I/O in a background task that records why it ended.
fn spawn<T>(
    (client, connection): (Client, tokio_postgres::Connection<Socket, T::Stream>),
) -> Result<Conn, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let ended: Ended = Arc::default();
    let record = ended.clone();
    tokio::spawn(async move {
        let failure = match connection.await {
            Ok(()) => Failure {
                code: None,
                reason: "the connection was closed".into(),
                lost: true,
                cause: None,
            },
            Err(error) => describe(error),
        };
        *lock(&record) = Some(Failure {
            lost: true,
            ..failure
        });
    });
    Ok(Conn {
        client,
        ended,
        statements: Default::default(),
    })
}

/// A reason for `error` that never holds a parameter value or a password: the server's message
/// and SQLSTATE, or the chain of I/O causes.
fn describe(error: tokio_postgres::Error) -> Failure {
    if let Some(db) = error.as_db_error() {
        let code = db.code().clone();
        let mut reason = match &code {
            c if *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => {
                "the server ended the transaction because it sat idle longer than the idle timeout"
                    .to_owned()
            }
            c if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW =>
            {
                format!(
                    "the server is shutting down or restarting ({})",
                    db.message()
                )
            }
            _ => format!("the server said: {}", db.message()),
        };
        let _ = write!(reason, " (SQLSTATE {})", code.code());
        if let Some(hint) = db.hint() {
            let _ = write!(reason, "; hint: {hint}");
        }
        let fatal = matches!(db.severity(), "FATAL" | "PANIC");
        return Failure {
            code: Some(code),
            reason,
            lost: fatal || error.is_closed(),
            cause: None,
        };
    }
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let _ = write!(reason, ": {cause}");
        source = cause.source();
    }
    Failure {
        code: None,
        reason,
        lost: true,
        cause: Some(Arc::new(error)),
    }
}

/// The TLS connector for a configuration that asks for TLS (`sslmode=require`); `None` for
/// plain connections (`disable`, and `prefer`, which here means plain: a certificate that
/// cannot be verified would otherwise fail a connection that libpq would make).
///
/// Certificates are verified against `root_cert` (PEM) when given, else the system's roots.
pub(super) fn tls(config: &Config, root_cert: Option<&Path>) -> Result<Option<MakeRustlsConnect>> {
    if config.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid_input(format!("cannot set up TLS: {e}")))?;
    let builder = match root_cert {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let unusable = |reason: String| {
                Error::invalid_input(format!(
                    "cannot use the root certificates in {}: {reason}",
                    path.display()
                ))
            };
            let mut roots = rustls::RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| unusable(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| unusable(e.to_string()))?;
            let (added, _ignored) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(unusable("no usable certificate in the file".into()));
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder.with_platform_verifier().map_err(|e| {
                Error::invalid_input(format!("cannot load the system's root certificates: {e}"))
            })?
        }
    };
    Ok(Some(MakeRustlsConnect::new(builder.with_no_client_auth())))
}

/// A duration for a message: "1.5 s", "250 ms".
pub(super) fn seconds(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// std Mutex: nothing awaits while it is held, and a poisoned one still holds a usable value.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
