//! `authstore refresh [--force]`: runs the refresh transaction and says what happened.

use authstore::RefreshOutcome;
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
    // The outcome of this call, from the manager: no comparison of its counters.
    let (snapshot, outcome) = manager.refresh(args.force).await?;
    let what = match outcome {
        RefreshOutcome::Refreshed => "refreshed: new tokens from the token endpoint",
        RefreshOutcome::Adopted => "adopted: newer tokens written by another process",
        RefreshOutcome::Fresh => "fresh: no refresh needed",
        // An outcome a later library adds: its own word.
        other => other.as_str(),
    };
    println!("{what}, valid until {}", when(snapshot.expires_at()));
    Ok(exit::SUCCESS)
}
