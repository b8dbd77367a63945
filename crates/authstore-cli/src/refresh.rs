//! `authstore refresh [--force]`: runs the refresh transaction and says what happened.

use authstore::error::Error;

use super::{Cli, exit, when};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Obtain new tokens even when the current ones are fresh
    #[arg(long)]
    force: bool,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let manager = cli.manager().await?;
    let before = manager.stats();
    let snapshot = if args.force {
        manager.force_refresh().await?
    } else {
        manager.auth().await?
    };
    let after = manager.stats();
    let what = if after.refreshed > before.refreshed {
        "refreshed: new tokens from the token endpoint"
    } else if after.adopted + after.reuse_recovered > before.adopted + before.reuse_recovered {
        "adopted: newer tokens written by another process"
    } else {
        "fresh: no refresh needed"
    };
    println!("{what}, valid until {}", when(snapshot.expires_at()));
    Ok(exit::SUCCESS)
}
