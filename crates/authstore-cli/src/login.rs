//! `authstore login --from FILE`: installs an auth document under the lock, validated first.

use std::io::Read;
use std::path::PathBuf;

use authstore::document::{AuthDocument, MAX_DOCUMENT_BYTES};
use authstore::error::Error;

use super::{Cli, exit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The auth.json document to install ("-" for standard input)
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let bytes = read_source(&args.from)?;
    let document = AuthDocument::parse(&bytes)
        .map_err(|e| Error::invalid_file(args.from.clone(), e.to_string()))?;
    let manager = cli.manager().await?;
    let snapshot = manager.login(document).await?;
    let claims = snapshot.claims();
    println!(
        "logged in: {} written (email {}, account {})",
        manager.location(),
        claims.email.as_deref().unwrap_or("unknown"),
        snapshot.account_id().unwrap_or("unknown"),
    );
    super::sandbox::after_host_change(cli, &manager).await;
    Ok(exit::SUCCESS)
}

fn read_source(path: &PathBuf) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    let limit = MAX_DOCUMENT_BYTES + 1;
    let result = if path.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| {
        Error::invalid_input(format!(
            "cannot read {}: {e}; pass the path of an auth.json document",
            path.display()
        ))
    })?;
    Ok(bytes)
}
