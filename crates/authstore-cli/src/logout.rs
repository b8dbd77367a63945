//! `authstore logout [--revoke]`: removes auth.json under the lock.

use authstore::error::Error;

use super::{Cli, exit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Also revoke the refresh token at the token authority (best effort)
    #[arg(long)]
    revoke: bool,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let manager = cli.manager().await?;
    if manager.logout(args.revoke).await? {
        println!("logged out: removed {}", manager.location());
    } else {
        println!("already logged out: {} does not exist", manager.location());
    }
    super::sandbox::after_host_change(cli, &manager).await;
    Ok(exit::SUCCESS)
}
