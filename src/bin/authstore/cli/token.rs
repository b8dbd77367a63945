//! `authstore token`: a credential helper. Prints a valid access token, refreshing it through
//! the transaction when stale, so that any number of callers cause one refresh.

use std::io::Write;

use authstore::error::Error;
use serde_json::json;

use super::{Cli, exit, when};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print {"access_token", "account_id", "expires_at"} as one JSON line
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let manager = cli.manager().await?;
    let snapshot = manager.auth().await?;
    let Some(token) = snapshot.access_token() else {
        return Err(Error::not_logged_in(manager.location()));
    };
    let line = if args.json {
        json!({
            "access_token": token.expose(),
            "account_id": snapshot.account_id(),
            "expires_at": snapshot.expires_at().map(|_| when(snapshot.expires_at())),
        })
        .to_string()
    } else {
        token.expose().to_owned()
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (the caller went away) is not worth a panic.
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return Ok(exit::OTHER);
    }
    Ok(exit::SUCCESS)
}
