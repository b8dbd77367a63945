//! `authstore watch [--json]`: one line per change any process makes to auth.json.

use std::io::Write;
use std::sync::Arc;

use authstore::changes::{ChangeEvent, ChangeWatcher};
use authstore::document::format_timestamp;
use authstore::error::Error;
use authstore::store::Store;

use super::{Cli, exit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// One JSON object per line: {"time","event","account_id","user_id","email","expires_at"}
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    // The shared store itself when there is one (changes made on any machine), else auth.json.
    let store: Arc<dyn Store> = Arc::from(cli.store_config()?.store().await?);
    let location = store.location();
    let mut watcher = ChangeWatcher::with_store(store).await?;
    eprintln!("authstore: watching {location} for changes");
    let mut stdout = std::io::stdout();
    let mut unavailable = false;
    loop {
        let next = tokio::select! {
            next = watcher.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(exit::SUCCESS),
        };
        let event = match next {
            Ok(event) => {
                if std::mem::take(&mut unavailable) {
                    eprintln!("authstore: {location} is reachable again");
                }
                event
            }
            Err(error) => {
                // A long-running watch rides out an outage, saying so once.
                if !std::mem::replace(&mut unavailable, true) {
                    eprintln!("authstore: warning: {}; still watching", error.report());
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = tokio::signal::ctrl_c() => return Ok(exit::SUCCESS),
                }
            }
        };
        let time = format_timestamp(std::time::SystemTime::now());
        let line = if args.json {
            event_json(&event, &time).to_string()
        } else {
            let kind = event.event.name();
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            format!(
                "{time} {kind} account={} user={} expires={}",
                or_dash(&event.account_id),
                or_dash(&event.user_id),
                or_dash(&event.expires_at)
            )
        };
        // Line-buffered on purpose: editors read one event per line as it happens.
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(exit::SUCCESS);
        }
    }
}

/// The object `watch --json` prints for `event`, noticed at `time` (RFC 3339); also the Python
/// package's `AuthManager.watch()` events.
pub fn event_json(event: &ChangeEvent, time: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    value["time"] = time.into();
    value
}
