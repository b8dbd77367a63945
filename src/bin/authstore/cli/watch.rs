//! `authstore watch [--json]`: one line per change any process makes to auth.json.

use std::io::Write;

use authstore::changes::{ChangeKind, ChangeWatcher};
use authstore::document::format_timestamp;
use authstore::error::Error;
use authstore::store::FileStore;

use super::{Cli, exit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// One JSON object per line: {"time","event","account_id","user_id","email","expires_at"}
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let store = FileStore::new(cli.home()?, cli.store_options()?);
    let path = store.auth_path().to_owned();
    let mut watcher = ChangeWatcher::new(store)?;
    eprintln!("authstore: watching {} for changes", path.display());
    let mut stdout = std::io::stdout();
    loop {
        let event = tokio::select! {
            event = watcher.next() => event,
            _ = tokio::signal::ctrl_c() => return Ok(exit::SUCCESS),
        };
        let time = format_timestamp(std::time::SystemTime::now());
        let line = if args.json {
            let mut value = serde_json::to_value(&event).unwrap_or_default();
            value["time"] = time.into();
            value.to_string()
        } else {
            let kind = match event.event {
                ChangeKind::Refreshed => "refreshed",
                ChangeKind::LoggedIn => "logged-in",
                ChangeKind::LoggedOut => "logged-out",
                ChangeKind::IdentityChanged => "identity-changed",
            };
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
