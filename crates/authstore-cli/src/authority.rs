//! `authstore authority`: runs the embedded token authority on loopback, for trying editors and
//! scripts against rotation and reuse detection without an account.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use authstore::document::AuthDocument;
use authstore::error::Error;
use authstore::simulator::{Identity, Simulator, SimulatorConfig};

use super::{Cli, exit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Loopback port to listen on (0: any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// Lifetime of issued access tokens, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    access_ttl: u64,

    /// Keep a token family alive when a spent refresh token comes back (default: revoke it)
    #[arg(long)]
    no_family_revocation: bool,

    /// Also log in: write a fresh auth.json for a test identity into the Codex home
    #[arg(long)]
    login: bool,

    /// With --login: the lifetime of that login's access token, in seconds [default: as
    /// --access-ttl]; e.g. 60 for a login that is stale at once while its successors are not
    #[arg(long, value_name = "SECS", requires = "login")]
    login_access_ttl: Option<u64>,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let config = SimulatorConfig {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        family_revocation: !args.no_family_revocation,
        access_token_lifetime: Duration::from_secs(args.access_ttl),
        ..SimulatorConfig::default()
    };
    let simulator = Simulator::start(config).await.map_err(|e| {
        Error::invalid_input(format!("cannot listen on 127.0.0.1:{}: {e}", args.port))
    })?;
    println!("listening on {}", simulator.base_url());
    println!(
        "use it with: export CODEX_REFRESH_TOKEN_URL_OVERRIDE={}",
        simulator.token_url()
    );
    if args.login {
        if let Some(ttl) = args.login_access_ttl {
            simulator.set_access_token_lifetime(Duration::from_secs(ttl));
        }
        let value = simulator.auth_json(&Identity::new("acct-demo", "user-demo"));
        simulator.set_access_token_lifetime(Duration::from_secs(args.access_ttl));
        let document = AuthDocument::parse(value.to_string().as_bytes()).map_err(|e| {
            Error::invalid_input(format!("the authority issued an invalid document: {e}"))
        })?;
        let manager = cli.manager().await?;
        manager.login(document).await?;
        println!("logged in: wrote {}", manager.location());
    }
    let _ = tokio::signal::ctrl_c().await;
    simulator.shutdown().await;
    Ok(exit::SUCCESS)
}
