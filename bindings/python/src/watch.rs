//! `AuthManager.watch()`: an iterator of the events `authstore watch --json` prints. A task on
//! the manager's runtime follows the store and sends each event into a channel; `__next__`
//! waits on the channel with the GIL released, in short slices so that Ctrl-C
//! (KeyboardInterrupt) gets through. Receiving from a channel can be abandoned without losing
//! an event, which a cancelled `ChangeWatcher::next` could not promise.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authstore::changes::ChangeWatcher;
use authstore::document::format_timestamp;
use authstore::error::Error;
use authstore::store::Store;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use tokio::sync::mpsc;

use crate::errors::to_py;
use crate::manager::json_to_py;

/// How long one wait holds before Python checks its signals.
const SLICE: Duration = Duration::from_millis(100);

/// An iterator of change events (dicts); ends after `timeout` seconds without a change.
#[pyclass(frozen, module = "authstore")]
pub(crate) struct Watch {
    runtime: Arc<tokio::runtime::Runtime>,
    events: Mutex<mpsc::Receiver<Result<serde_json::Value, Error>>>,
    task: tokio::task::JoinHandle<()>,
    timeout: Option<Duration>,
}

impl Watch {
    pub(crate) fn start(
        py: Python<'_>,
        runtime: Arc<tokio::runtime::Runtime>,
        store: Arc<dyn Store>,
        timeout: Option<Duration>,
    ) -> PyResult<Self> {
        // The watch starts before this returns: a change made right after is reported.
        let watcher = py
            .detach(|| runtime.block_on(ChangeWatcher::with_store(store)))
            .map_err(to_py)?;
        let (sender, receiver) = mpsc::channel(64);
        let task = runtime.spawn(follow(watcher, sender));
        Ok(Self {
            runtime,
            events: Mutex::new(receiver),
            task,
            timeout,
        })
    }
}

/// Sends every event, and every failure (after which the watch goes on, as the command's does),
/// until the iterator is dropped.
async fn follow(
    mut watcher: ChangeWatcher,
    sender: mpsc::Sender<Result<serde_json::Value, Error>>,
) {
    loop {
        let next = watcher.next().await.map(|event| {
            let time = format_timestamp(std::time::SystemTime::now());
            authstore_cli::watch::event_json(&event, &time)
        });
        let failed = next.is_err();
        if sender.send(next).await.is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[pymethods]
impl Watch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            let slice = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(PyStopIteration::new_err(()));
                    }
                    left.min(SLICE)
                }
                None => SLICE,
            };
            let received = py.detach(|| {
                let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
                self.runtime
                    .block_on(async { tokio::time::timeout(slice, events.recv()).await })
            });
            match received {
                Ok(Some(Ok(event))) => return json_to_py(py, &event),
                Ok(Some(Err(error))) => return Err(to_py(error)),
                Ok(None) => return Err(PyStopIteration::new_err(())),
                Err(_elapsed) => py.check_signals()?,
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
