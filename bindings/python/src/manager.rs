//! `AuthManager` and `Credentials`: the library's manager for Python. Each manager owns a tokio
//! runtime; a blocking call runs on it with the GIL released, so other Python threads keep
//! running while one waits for the lock or the token endpoint. The manager is `Sync` (frozen):
//! threads share one, and its single-flight makes their refreshes one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use authstore::document::{AuthDocument, Freshness};
use authstore::error::Error;
use authstore::store::credentials;
use authstore::store::{Store, StoreConfig, StoreUrl, codex_home_from_path, resolve_codex_home};
use authstore::{AuthSnapshot, ManagerOptions};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::to_py;
use crate::watch::Watch;

/// Credentials from a manager, and the manager that shares auth.json with every other process.
#[pyclass(frozen, module = "authstore")]
pub(crate) struct AuthManager {
    manager: authstore::AuthManager,
    runtime: Arc<tokio::runtime::Runtime>,
    /// The store it was made from: status and watch read it again, without mirroring, as the
    /// command line does.
    config: StoreConfig,
    /// The process that made the manager: a forked child has none of the runtime's threads.
    pid: u32,
}

#[pymethods]
impl AuthManager {
    #[new]
    #[pyo3(signature = (
        codex_home=None,
        *,
        lock_timeout=60.0,
        request_timeout=20.0,
        store=None,
        store_key="default",
        token_url=None,
        client_id=None,
        refresh_window=300.0,
        refresh_interval=691_200.0,
        credentials_store=None,
    ))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each
    fn new(
        py: Python<'_>,
        codex_home: Option<PathBuf>,
        lock_timeout: f64,
        request_timeout: f64,
        store: Option<String>,
        store_key: &str,
        token_url: Option<String>,
        client_id: Option<String>,
        refresh_window: f64,
        refresh_interval: f64,
        credentials_store: Option<String>,
    ) -> PyResult<Self> {
        let lock_timeout = seconds("lock_timeout", lock_timeout)?;
        let request_timeout = seconds("request_timeout", request_timeout)?;
        let freshness = Freshness {
            refresh_window: seconds("refresh_window", refresh_window)?,
            refresh_interval: seconds("refresh_interval", refresh_interval)?,
        };
        // A home, or the path of its auth.json.
        let home = match codex_home {
            Some(path) => codex_home_from_path(&path),
            None => resolve_codex_home(None),
        }
        .map_err(to_py)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("authstore")
            .enable_all()
            .build()
            .map_err(|e| {
                crate::errors::AuthstoreError::new_err(format!(
                    "cannot start the async runtime: {e}"
                ))
            })?;
        let shared = store
            .map(|url| {
                StoreUrl::parse(&url)
                    .map_err(|error| Error::invalid_input(format!("store=: {error}")))
            })
            .transpose()
            .map_err(to_py)?;
        let config = StoreConfig::new(home)
            .shared(shared)
            .key(store_key)
            .lock_timeout(lock_timeout)
            .request_timeout(request_timeout)
            .token_url(token_url)
            .client_id(client_id)
            .credentials_store(
                credentials::override_from(credentials_store.as_deref(), "credentials_store=")
                    .map_err(to_py)?,
            );
        // Before anything is opened or connected: a bad endpoint is the caller's ValueError.
        config.check().map_err(to_py)?;
        let options = ManagerOptions::default().freshness(freshness);
        let manager = py
            .detach(|| {
                let _entered = runtime.enter();
                runtime.block_on(config.manager(options))
            })
            .map_err(to_py)?;
        Ok(Self {
            manager,
            runtime: Arc::new(runtime),
            config,
            pid: std::process::id(),
        })
    }

    /// Where the credentials live: the path of auth.json, or the shared store's location.
    #[getter]
    fn location(&self) -> String {
        self.manager.location().to_string()
    }

    /// Fresh credentials, refreshed (once across all processes) when stale.
    fn credentials(&self, py: Python<'_>) -> PyResult<Credentials> {
        let manager = self.manager.clone();
        self.block(py, async move { manager.auth().await })
            .map(Credentials::from)
    }

    /// A valid access token.
    fn token(&self, py: Python<'_>) -> PyResult<String> {
        let manager = self.manager.clone();
        let snapshot = self.block(py, async move { manager.auth().await })?;
        match snapshot.access_token() {
            Some(token) => Ok(token.expose().to_owned()),
            None => Err(to_py(Error::not_logged_in(self.manager.location()))),
        }
    }

    /// Recovery after a request got HTTP 401, made with `rejected`: the Credentials it used, or
    /// the access token string it sent (its identity from its claims, or `account_id`). Adopts
    /// newer credentials of the same identity another process wrote, or refreshes; another
    /// identity's login is refused (ReloginRequired, reason identity_changed).
    #[pyo3(signature = (rejected, *, account_id=None))]
    fn unauthorized(
        &self,
        py: Python<'_>,
        rejected: &Bound<'_, PyAny>,
        account_id: Option<String>,
    ) -> PyResult<Credentials> {
        let manager = self.manager.clone();
        if let Ok(credentials) = rejected.cast::<Credentials>() {
            if account_id.is_some() {
                return Err(PyValueError::new_err(
                    "account_id= is for an access token string; Credentials name their own \
                     account",
                ));
            }
            let held = credentials.get().snapshot.clone();
            return self
                .block(py, async move { manager.unauthorized(&held).await })
                .map(Credentials::from);
        }
        let Ok(token) = rejected.cast::<PyString>() else {
            return Err(PyTypeError::new_err(
                "unauthorized() takes the Credentials or the access token (str) the rejected \
                 request was made with",
            ));
        };
        let token: String = token.extract()?;
        self.block(py, async move {
            manager
                .unauthorized_token(&token, account_id.as_deref())
                .await
        })
        .map(Credentials::from)
    }

    /// Refreshes when stale (or now with force=True); says what happened.
    #[pyo3(signature = (force=false))]
    fn refresh(&self, py: Python<'_>, force: bool) -> PyResult<&'static str> {
        let manager = self.manager.clone();
        let (_, outcome) = self.block(py, async move { manager.refresh(force).await })?;
        // The same words as `authstore refresh`; this call's own outcome, whatever other
        // threads sharing the manager do meanwhile.
        Ok(outcome.as_str())
    }

    /// Installs `document` (a dict, or JSON text or bytes) under the lock.
    fn login(&self, py: Python<'_>, document: &Bound<'_, PyAny>) -> PyResult<Credentials> {
        let bytes: Vec<u8> = if let Ok(text) = document.cast::<PyString>() {
            text.extract::<String>()?.into_bytes()
        } else if let Ok(bytes) = document.extract::<Vec<u8>>() {
            bytes
        } else if document.cast::<PyDict>().is_ok() {
            let json = py.import("json")?;
            let text = json.call_method1("dumps", (document,))?;
            text.extract::<String>()?.into_bytes()
        } else {
            return Err(PyTypeError::new_err(
                "login() takes the auth.json document as a dict or as JSON text",
            ));
        };
        let parsed = AuthDocument::parse(&bytes).map_err(|e| {
            PyValueError::new_err(format!("the document is not a valid auth.json: {e}"))
        })?;
        let manager = self.manager.clone();
        self.block(py, async move { manager.login(parsed).await })
            .map(Credentials::from)
    }

    /// Removes the credentials under the lock; with revoke=True also revokes the refresh token
    /// (best effort). Returns whether there was anything to remove.
    #[pyo3(signature = (revoke=false))]
    fn logout(&self, py: Python<'_>, revoke: bool) -> PyResult<bool> {
        let manager = self.manager.clone();
        self.block(py, async move { manager.logout(revoke).await })
    }

    /// What `authstore status --json` prints, as a dict (never a secret).
    fn status(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let config = self.config.clone();
        let value = self.block(py, async move {
            let local = config.file_store();
            let status = authstore_cli::status::Status::read_home(&local, &config).await?;
            Ok(status.json())
        })?;
        json_to_py(py, &value)
    }

    /// An iterator of the events `authstore watch --json` prints, one dict per change any
    /// process makes; with `timeout`, it ends when no change comes within that many seconds.
    #[pyo3(signature = (timeout=None))]
    fn watch(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Watch> {
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        let config = self.config.clone();
        let store = self.block(py, async move {
            let store: Arc<dyn Store> = Arc::from(config.store().await?);
            Ok(store)
        })?;
        Watch::start(py, self.runtime.clone(), store, timeout)
    }

    fn __repr__(&self) -> String {
        format!("AuthManager({:?})", self.manager.location().to_string())
    }
}

impl AuthManager {
    /// Runs `future` on this manager's runtime with the GIL released.
    fn block<T: Send>(
        &self,
        py: Python<'_>,
        future: impl Future<Output = Result<T, Error>> + Send,
    ) -> PyResult<T> {
        if std::process::id() != self.pid {
            return Err(crate::errors::AuthstoreError::new_err(
                "this AuthManager was made before a fork, and its threads stayed in the parent; \
                 make a new AuthManager in this process",
            ));
        }
        py.detach(|| self.runtime.block_on(future)).map_err(to_py)
    }
}

/// Credentials for one request. `repr` and `str` never show a token.
#[pyclass(frozen, module = "authstore")]
pub(crate) struct Credentials {
    snapshot: Arc<AuthSnapshot>,
}

impl From<Arc<AuthSnapshot>> for Credentials {
    fn from(snapshot: Arc<AuthSnapshot>) -> Self {
        Self { snapshot }
    }
}

#[pymethods]
impl Credentials {
    /// The access token (None for an API-key login).
    #[getter]
    fn access_token(&self) -> Option<String> {
        self.snapshot.access_token().map(|t| t.expose().to_owned())
    }

    /// The ChatGPT account id, when known.
    #[getter]
    fn account_id(&self) -> Option<String> {
        self.snapshot.account_id().map(str::to_owned)
    }

    /// The ChatGPT user id (from the id token), when known.
    #[getter]
    fn user_id(&self) -> Option<String> {
        self.snapshot.identity().user_id.clone()
    }

    /// The user's email (from the id token), when known.
    #[getter]
    fn email(&self) -> Option<String> {
        self.snapshot.claims().email
    }

    /// The ChatGPT plan (`plus`, `pro`, ...; from the id token), when known.
    #[getter]
    fn plan_type(&self) -> Option<String> {
        self.snapshot.claims().plan
    }

    /// When the access token expires: an aware UTC datetime, or None when unknown.
    #[getter]
    fn expires_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(expires_at) = self.snapshot.expires_at() else {
            return Ok(None);
        };
        let seconds = match expires_at.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_secs_f64(),
            Err(before) => -before.duration().as_secs_f64(),
        };
        let datetime = py.import("datetime")?;
        let utc = datetime.getattr("timezone")?.getattr("utc")?;
        datetime
            .getattr("datetime")?
            .call_method1("fromtimestamp", (seconds, utc))
            .map(Some)
    }

    /// The request headers: Authorization, and ChatGPT-Account-Id when the account is known.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let headers = PyDict::new(py);
        if let Some(request) = self.snapshot.request_headers() {
            for (name, value) in request.expose() {
                headers.set_item(name, value)?;
            }
        }
        Ok(headers)
    }

    fn __repr__(&self) -> String {
        let expires = self
            .snapshot
            .expires_at()
            .map(authstore::document::format_timestamp);
        format!(
            "Credentials(account_id={}, expires_at={}, access_token=<hidden>)",
            python_literal(self.snapshot.account_id()),
            python_literal(expires.as_deref()),
        )
    }

    fn __str__(&self) -> String {
        self.__repr__()
    }
}

fn python_literal(value: Option<&str>) -> String {
    value.map_or_else(|| "None".into(), |v| format!("{v:?}"))
}

pub(crate) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name}={value}: expected a finite number of seconds (>= 0)"
        ))
    })
}

/// A JSON value as the Python object `json.loads` makes of it.
pub(crate) fn json_to_py(py: Python<'_>, value: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let json = py.import("json")?;
    Ok(json.call_method1("loads", (value.to_string(),))?.unbind())
}
