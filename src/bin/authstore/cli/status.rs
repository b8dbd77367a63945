//! `authstore status`: who is logged in and when the tokens expire. Reads without locking and
//! never prints a secret.

use std::time::SystemTime;

use authstore::document::{Freshness, format_timestamp};
use authstore::error::Error;
use authstore::store::FileStore;
use serde_json::json;

use super::{Cli, exit, when};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print the status as one JSON object
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let store = FileStore::new(cli.home()?, cli.store_options()?);
    let document = store.read()?;
    if store.is_readable_by_others() {
        eprintln!(
            "authstore: warning: {} is readable by other users; run: chmod 600 {}",
            store.auth_path().display(),
            store.auth_path().display()
        );
    }
    let holder = store.lock_holder();
    let now = SystemTime::now();
    let logged_in = document
        .as_ref()
        .is_some_and(|d| d.tokens.is_some() || d.openai_api_key.is_some());
    let identity = document.as_ref().map(|d| d.identity()).unwrap_or_default();
    let claims = document.as_ref().map(|d| d.id_claims()).unwrap_or_default();
    let expires_at = document.as_ref().and_then(|d| d.expires_at());
    let refresh_due = document
        .as_ref()
        .is_some_and(|d| d.is_stale(now, &Freshness::default()));
    let mode = document.as_ref().and_then(|d| {
        d.auth_mode.clone().or_else(|| {
            if d.tokens.is_some() {
                Some("chatgpt".into())
            } else {
                d.openai_api_key.as_ref().map(|_| "apikey".into())
            }
        })
    });
    if args.json {
        let status = json!({
            "path": store.auth_path(),
            "logged_in": logged_in,
            "auth_mode": mode,
            "email": claims.email,
            "plan": claims.plan,
            "account_id": identity.account_id,
            "user_id": identity.user_id,
            "expires_at": expires_at.map(format_timestamp),
            "last_refresh": document.as_ref().and_then(|d| d.last_refresh.clone()),
            "refresh_due": refresh_due,
            "lock_holder": holder,
        });
        println!("{status}");
    } else {
        let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
        println!("path:         {}", store.auth_path().display());
        if !logged_in {
            println!("logged in:    no");
        } else {
            println!("logged in:    yes ({})", or_unknown(mode));
            println!("email:        {}", or_unknown(claims.email));
            println!("plan:         {}", or_unknown(claims.plan));
            println!("account id:   {}", or_unknown(identity.account_id));
            println!("user id:      {}", or_unknown(identity.user_id));
            println!("expires at:   {}", when(expires_at));
            println!(
                "last refresh: {}",
                or_unknown(document.as_ref().and_then(|d| d.last_refresh.clone()))
            );
            println!("refresh due:  {}", if refresh_due { "yes" } else { "no" });
        }
        println!("lock holder:  {}", holder.unwrap_or_else(|| "none".into()));
    }
    Ok(if logged_in {
        exit::SUCCESS
    } else {
        exit::NOT_LOGGED_IN
    })
}
