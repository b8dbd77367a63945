//! `authstore status`: who is logged in and when the tokens expire. Reads without locking and
//! never prints a secret. With `--store`, it reports the shared store's login, and the local
//! `auth.json` as that store's mirror.

use std::time::SystemTime;

use authstore::document::{AuthDocument, Freshness, IdClaims, Identity, format_timestamp};
use authstore::error::{Error, Location};
#[cfg(feature = "keyring")]
use authstore::store::keyring::Answered;
use authstore::store::{
    AgentPresence, CredentialsChoice, CredentialsStore, FileStore, Store, StoreConfig,
};
use serde_json::{Value, json};

use super::broker::probe::TokenUrl;
use super::{Cli, exit, when};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print the status as one JSON object
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let local = cli.file_store()?;
    let config = cli.store_config()?;
    let status = Status::read_home(&local, &config).await?;
    if local.is_readable_by_others() {
        eprintln!(
            "authstore: warning: {} is readable by other users; run: chmod 600 {}",
            local.auth_path().display(),
            local.auth_path().display()
        );
    }
    let Status {
        location,
        document,
        holder,
        mirror,
        logged_in,
        identity,
        claims,
        expires_at,
        refresh_due,
        mode,
        agent,
        token_url,
        ..
    } = &status;
    if let Some(warning) = token_url.warning() {
        eprintln!("authstore: warning: {warning}");
    }
    let logged_in = *logged_in;
    if args.json {
        println!("{}", status.json());
    } else {
        let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
        let label = if mirror.is_some() || matches!(location, Location::Store(_)) {
            "store:"
        } else {
            "path:"
        };
        println!("{label:<14}{location}");
        if let Some(credentials) = &status.credentials {
            println!("credentials:  {}", credentials.describe());
        }
        if !logged_in {
            println!("logged in:    no");
        } else {
            println!("logged in:    yes ({})", or_unknown(mode.clone()));
            println!("email:        {}", or_unknown(claims.email.clone()));
            println!("plan:         {}", or_unknown(claims.plan.clone()));
            println!("account id:   {}", or_unknown(identity.account_id.clone()));
            println!("user id:      {}", or_unknown(identity.user_id.clone()));
            println!("expires at:   {}", when(*expires_at));
            println!(
                "last refresh: {}",
                or_unknown(document.as_ref().and_then(|d| d.last_refresh.clone()))
            );
            println!("refresh due:  {}", if *refresh_due { "yes" } else { "no" });
        }
        if let Some(mirror) = &mirror {
            println!(
                "local mirror: {} ({})",
                local.auth_path().display(),
                mirror.describe()
            );
        } else {
            println!(
                "lock holder:  {}",
                holder.clone().unwrap_or_else(|| "none".into())
            );
        }
        match &agent {
            Some(agent) => println!("agent:        {}", agent.describe()),
            None => println!("agent:        none"),
        }
        println!("token URL:    {}", token_url.describe());
    }
    Ok(if logged_in {
        exit::SUCCESS
    } else {
        exit::NOT_LOGGED_IN
    })
}

/// What `status` reports, read once: printed by the command, and returned as a dict by the
/// Python package's `AuthManager.status()`.
pub struct Status {
    location: Location,
    document: Option<AuthDocument>,
    holder: Option<String>,
    mirror: Option<Mirror>,
    /// The local `auth.json`, as shown beside a shared store.
    local_path: String,
    pub(crate) logged_in: bool,
    identity: Identity,
    claims: IdClaims,
    expires_at: Option<SystemTime>,
    refresh_due: bool,
    mode: Option<String>,
    /// The agent keeping this home fresh, if one runs (its lock is the local home's, with a
    /// shared store too).
    agent: Option<AgentPresence>,
    /// Where this environment's Codex sends its refreshes, and whether this home's broker
    /// answers there.
    token_url: TokenUrl,
    /// Which of the home's own stores holds the login and why (none with a shared store).
    credentials: Option<Credentials>,
}

/// The home's own store, as `status` reports it.
struct Credentials {
    choice: CredentialsChoice,
    /// For `auto`: which store answered.
    answered: Option<&'static str>,
    /// For `auto`: why the keyring did not answer.
    keyring_error: Option<String>,
    /// The keyring item, for keyring and auto (with the secrets file: its passphrase's).
    item: Option<Value>,
    /// With `secret_auth_storage`: the encrypted file that holds the login.
    secrets_file: Option<String>,
}

impl Credentials {
    fn json(&self) -> Value {
        json!({
            "store": self.choice.store.as_str(),
            "source": self.choice.source.as_str(),
            "reason": self.choice.describe_source(),
            "config": self.choice.config_path.as_ref().map(|p| p.display().to_string()),
            "answered": self.answered,
            "keyring_error": self.keyring_error,
            "keyring_item": self.item,
            "secrets_file": self.secrets_file,
        })
    }

    fn describe(&self) -> String {
        let mut line = format!("{} ({})", self.choice.store, self.choice.describe_source());
        if let Some(path) = &self.secrets_file {
            line.push_str(&format!("; encrypted in {path}"));
        }
        if let Some(answered) = self.answered {
            line.push_str(&format!("; {answered} answered"));
        }
        if let Some(error) = &self.keyring_error {
            line.push_str(&format!(" (the keyring did not: {error})"));
        }
        line
    }
}

impl Status {
    /// What `status` reports for a home: the shared store's login when `config` names one
    /// (`local` its mirror), else the home's own store as Codex chooses it (the file, the
    /// keyring, or `auto`), and which one that is and why. `authstore status` and the Python
    /// package's `status()` both print this.
    pub async fn read_home(local: &FileStore, config: &StoreConfig) -> Result<Self, Error> {
        let shared = match config.shared_url() {
            Some(_) => Some(config.store().await?),
            None => None,
        };
        // Without a shared store, the home's own store, as Codex chooses it.
        let choice = match shared {
            Some(_) => None,
            None => Some(config.credentials()?),
        };
        Ok(match choice {
            Some(choice) if choice.store != CredentialsStore::File => {
                Status::read_keyring(local, config, choice).await?
            }
            choice => {
                let mut status = Status::read(local, shared.as_deref()).await?;
                status.credentials = choice.map(|choice| Credentials {
                    choice,
                    answered: None,
                    keyring_error: None,
                    item: None,
                    secrets_file: None,
                });
                status
            }
        })
    }

    /// Reads the credentials (the shared store's when there is one, else the local file's)
    /// without locking; `local` is the Codex home's `auth.json`.
    pub async fn read(local: &FileStore, shared: Option<&dyn Store>) -> Result<Self, Error> {
        let (location, document, holder) = match shared {
            Some(store) => (store.location(), store.read().await?, None),
            None => (
                Store::location(local),
                local.read().await?,
                local.lock_holder(),
            ),
        };
        // With a shared store, the local file is its mirror: what local programs read.
        let mirror = match shared {
            Some(_) => Some(match local.read().await {
                Ok(copy) => Mirror {
                    logged_in: is_logged_in(copy.as_ref()),
                    in_sync: copy == document,
                    error: None,
                },
                Err(error) => Mirror {
                    logged_in: false,
                    in_sync: false,
                    error: Some(error.report().to_string()),
                },
            }),
            None => None,
        };
        Ok(Self::from_parts(local, location, document, holder, mirror).await)
    }

    /// Reads the keyring store (`choice`: keyring or auto) without locking.
    #[cfg(feature = "keyring")]
    async fn read_keyring(
        local: &FileStore,
        config: &StoreConfig,
        choice: CredentialsChoice,
    ) -> Result<Self, Error> {
        let store = config.keyring_store(&choice);
        // With the encrypted secrets file, the keyring holds its passphrase.
        let item = match store.secrets_file() {
            Some(secrets) => secrets.passphrase_item(),
            None => store.item(),
        };
        let secrets_file = store
            .secrets_file()
            .map(|secrets| secrets.path().display().to_string());
        let item_json = json!({
            "service": item.service,
            "account": item.account,
            "target": item.target,
        });
        let (location, document, answered, keyring_error) = if store.is_auto() {
            let read = store.read_auto().await?;
            let location = match read.answered {
                Answered::Keyring => Store::location(&store),
                Answered::File => Store::location(local),
            };
            (
                location,
                read.document,
                Some(read.answered.as_str()),
                read.keyring_error.map(|e| e.report().to_string()),
            )
        } else {
            (
                Store::location(&store),
                store.read_item().await?,
                None,
                None,
            )
        };
        let mut status =
            Self::from_parts(local, location, document, local.lock_holder(), None).await;
        status.credentials = Some(Credentials {
            choice,
            answered,
            keyring_error,
            item: Some(item_json),
            secrets_file,
        });
        Ok(status)
    }

    #[cfg(not(feature = "keyring"))]
    async fn read_keyring(
        _local: &FileStore,
        config: &StoreConfig,
        _choice: CredentialsChoice,
    ) -> Result<Self, Error> {
        // The library says why (built without the keyring).
        config.store().await?;
        unreachable!("a keyring store opened without the keyring feature")
    }

    async fn from_parts(
        local: &FileStore,
        location: Location,
        document: Option<AuthDocument>,
        holder: Option<String>,
        mirror: Option<Mirror>,
    ) -> Self {
        let now = SystemTime::now();
        let logged_in = is_logged_in(document.as_ref());
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
        Self {
            location,
            document,
            holder,
            mirror,
            local_path: local.auth_path().display().to_string(),
            logged_in,
            identity,
            claims,
            expires_at,
            refresh_due,
            mode,
            agent: local.active_agent(),
            token_url: TokenUrl::check(local.home()).await,
            credentials: None,
        }
    }

    /// The object `status --json` prints.
    pub fn json(&self) -> Value {
        json!({
            "path": self.location.to_string(),
            "logged_in": self.logged_in,
            "auth_mode": self.mode,
            "email": self.claims.email,
            "plan": self.claims.plan,
            "account_id": self.identity.account_id,
            "user_id": self.identity.user_id,
            "expires_at": self.expires_at.map(format_timestamp),
            "last_refresh": self.document.as_ref().and_then(|d| d.last_refresh.clone()),
            "refresh_due": self.refresh_due,
            "lock_holder": self.holder,
            "mirror": self.mirror.as_ref().map(|m| m.json(&self.local_path)),
            "agent": self.agent.as_ref().map(AgentPresence::to_json),
            "token_url": self.token_url.json(),
            "credentials_store": self.credentials.as_ref().map(Credentials::json),
        })
    }
}

fn is_logged_in(document: Option<&AuthDocument>) -> bool {
    document.is_some_and(AuthDocument::has_credentials)
}

/// The local `auth.json` beside a shared store.
struct Mirror {
    logged_in: bool,
    /// Whether it holds exactly what the shared store holds.
    in_sync: bool,
    /// Why it could not be read.
    error: Option<String>,
}

impl Mirror {
    fn json(&self, path: &str) -> Value {
        json!({
            "path": path,
            "logged_in": self.logged_in,
            "in_sync": self.in_sync,
            "error": self.error,
        })
    }

    fn describe(&self) -> String {
        match &self.error {
            Some(error) => format!("unreadable: {error}"),
            None if self.in_sync => "in sync with the store".into(),
            None => "differs from the store; the next change of the store mirrors it".into(),
        }
    }
}
