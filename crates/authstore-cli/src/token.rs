//! `authstore token`: a credential helper. Prints a valid access token, refreshing it through
//! the transaction when stale, so that any number of callers cause one refresh.
//!
//! The formats are the shapes the callers already parse: a bare token (scripts, Codex's
//! provider `auth` command, `apiKeyHelper`), JSON with the request headers, kubectl's
//! `ExecCredential` (`client.authentication.k8s.io/v1`) and the Bazel credential-helper answer.
//! None ever holds the refresh token or the id token. The `token_formats` tests parse each as
//! its consumer does.
//!
//! `--rejected-stdin` is the 401 path ([`AuthManager::unauthorized_token`]): the access token a
//! request was rejected with arrives on standard input (never on a command line, where other
//! users can read it), and what is printed replaces it. It is not offered as a SHA-256 digest:
//! a digest names no account or user, so a store that already holds a newer token could not be
//! proven the same identity's, and would have to be refused (tests: `token_rejected`).
//!
//! [`AuthManager::unauthorized_token`]: authstore::AuthManager::unauthorized_token

use std::io::Write;
use std::time::{Duration, SystemTime};

use authstore::document::{Freshness, format_timestamp_seconds};
use authstore::error::Error;
use authstore::secret::Secret;
use authstore::{AuthSnapshot, RequestHeaders};
use serde_json::{Map, Value, json};

use super::{Cli, exit, when};

/// The largest `--min-valid`: a year, far beyond any access token's life, and small enough that
/// `now + SECS` cannot overflow.
const MAX_MIN_VALID: u64 = 365 * 24 * 60 * 60;

/// The most `--rejected-stdin` reads: far more than any access token (ChatGPT's are about
/// 2 KiB), little enough that a wrong pipe cannot fill the memory.
const MAX_REJECTED: u64 = 64 * 1024;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to print [default: raw]: the bare token; JSON with the request headers; a kubectl
    /// ExecCredential; a Bazel credential-helper answer
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<Format>,

    /// The same as --format json
    #[arg(long)]
    json: bool,

    /// Refresh first when the access token has fewer than SECS seconds left (the default, 300,
    /// applies when SECS is smaller; with no known expiry, the usual age rule decides)
    #[arg(
        long,
        value_name = "SECS",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(..=MAX_MIN_VALID)
    )]
    min_valid: Option<u64>,

    /// A request made with this access token got HTTP 401: read that token from standard
    /// input (one line) and print its replacement. The store's token still the rejected one:
    /// refreshed, once however many processes report it; a newer one of the same account and
    /// user already there: that one, with no call to the token endpoint; another account's or
    /// user's login: exit 4, nothing printed. The token never goes on a command line.
    #[arg(long)]
    rejected_stdin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The access token alone, one line
    Raw,
    /// {"access_token", "account_id", "expires_at", "headers"}
    Json,
    /// kubectl's ExecCredential, client.authentication.k8s.io/v1
    ExecCredential,
    /// The Bazel / EngFlow credential-helper response: {"headers", "expires"}
    Bazel,
}

impl Args {
    /// The format asked for; `--json` with another `--format` is a contradiction.
    fn format(&self) -> Result<Format, Error> {
        match (self.json, self.format) {
            (true, Some(format)) if format != Format::Json => Err(Error::invalid_input(format!(
                "--json means --format json; it cannot be combined with --format {}",
                clap::ValueEnum::to_possible_value(&format)
                    .map(|value| value.get_name().to_owned())
                    .unwrap_or_default()
            ))),
            (true, _) => Ok(Format::Json),
            (false, format) => Ok(format.unwrap_or(Format::Raw)),
        }
    }

    /// The staleness rule: the default one, with its window widened to `--min-valid`. Never
    /// narrowed, so that a small SECS cannot hand out a token Codex would refresh itself. It
    /// changes only the window before a known `exp`: a token without one cannot be measured
    /// against SECS, and refreshing it on every call would make every caller refresh.
    fn freshness(&self) -> Freshness {
        let default = Freshness::default();
        let asked = Duration::from_secs(self.min_valid.unwrap_or(0));
        Freshness {
            refresh_window: default.refresh_window.max(asked),
            ..default
        }
    }
}

pub(crate) async fn run(cli: &Cli, args: &Args) -> Result<u8, Error> {
    let format = args.format()?;
    let freshness = args.freshness();
    // The manager decides inside the transaction with the same window, so that of N callers
    // the first refreshes and the others adopt its tokens.
    let rejected = if args.rejected_stdin {
        Some(read_rejected(std::io::stdin().lock())?)
    } else {
        None
    };
    let manager = cli
        .manager_with(|options| options.watch(false).freshness(freshness))
        .await?;
    let snapshot = match &rejected {
        Some(rejected) => {
            let replacement = manager.unauthorized_token(rejected.expose(), None).await?;
            // A newer token adopted from the store may itself be stale: then refresh it as any
            // stale token (the transaction again, guarded against the snapshot just adopted),
            // so that what is printed is as fresh as what `token` alone prints.
            if replacement.is_stale(SystemTime::now(), &freshness) {
                manager.auth().await?
            } else {
                replacement
            }
        }
        None => manager.auth().await?,
    };
    let (Some(token), Some(headers)) = (snapshot.access_token(), snapshot.request_headers()) else {
        return Err(Error::not_logged_in(manager.location()));
    };
    if let (Some(secs), Some(expires_at)) = (args.min_valid, snapshot.expires_at()) {
        let left = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if left < Duration::from_secs(secs) {
            // Only when SECS exceeds the lifetime of the tokens the authority issues: then
            // every call refreshes.
            tracing::warn!(
                "the access token is valid for {}s, less than --min-valid {secs}: the authority \
                 issues shorter-lived tokens",
                left.as_secs()
            );
        }
    }
    let line = match format {
        Format::Raw => token.expose().to_owned(),
        Format::Json => json_output(&snapshot, token, &headers),
        Format::ExecCredential => exec_credential(&snapshot, token),
        Format::Bazel => bazel(&snapshot, &headers),
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

/// The rejected access token from `input` (standard input): one line, its line ending dropped,
/// at most [`MAX_REJECTED`] bytes. The errors never show what was read.
fn read_rejected(input: impl std::io::Read) -> Result<Secret, Error> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    input
        .take(MAX_REJECTED + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| {
            Error::invalid_input(format!(
                "--rejected-stdin: cannot read standard input: {error}"
            ))
        })?;
    if bytes.len() as u64 > MAX_REJECTED {
        return Err(Error::invalid_input(format!(
            "--rejected-stdin: standard input holds more than {MAX_REJECTED} bytes; expected \
             one access token on one line"
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::invalid_input("--rejected-stdin: standard input is not UTF-8"))?;
    let line = text
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(text);
    if line.is_empty() {
        return Err(Error::invalid_input(
            "--rejected-stdin: standard input is empty; expected the access token that got \
             HTTP 401, on one line",
        ));
    }
    if !authstore::authority::is_token_string(line) {
        return Err(Error::invalid_input(
            "--rejected-stdin: standard input is not one access token on one line (it holds \
             whitespace, control characters or more lines)",
        ));
    }
    Ok(Secret::new(line))
}

/// `--format json`: the fields `--json` always printed, plus the headers as name → value.
fn json_output(snapshot: &AuthSnapshot, token: &Secret, headers: &RequestHeaders) -> String {
    let headers: Map<String, Value> = headers
        .expose()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), json!(value)))
        .collect();
    json!({
        "access_token": token.expose(),
        "account_id": snapshot.account_id(),
        "expires_at": snapshot.expires_at().map(|_| when(snapshot.expires_at())),
        "headers": headers,
    })
    .to_string()
}

/// kubectl's `ExecCredential`. `expirationTimestamp` is optional there: without it kubectl
/// keeps the token until a request is refused, so it is left out when the expiry is unknown.
fn exec_credential(snapshot: &AuthSnapshot, token: &Secret) -> String {
    let mut status = json!({ "token": token.expose() });
    if let Some(expires_at) = snapshot.expires_at() {
        status["expirationTimestamp"] = json!(format_timestamp_seconds(expires_at));
    }
    json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": status,
    })
    .to_string()
}

/// The Bazel credential-helper response: every header as a list of values; `expires` only when
/// known (Bazel then caches for its own `--credential_helper_cache_duration`).
fn bazel(snapshot: &AuthSnapshot, headers: &RequestHeaders) -> String {
    let headers: Map<String, Value> = headers
        .expose()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), json!([value])))
        .collect();
    let mut response = json!({ "headers": headers });
    if let Some(expires_at) = snapshot.expires_at() {
        response["expires"] = json!(format_timestamp_seconds(expires_at));
    }
    response.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rejected_token_is_one_line_of_standard_input() {
        for input in ["tok.en.x\n", "tok.en.x\r\n", "tok.en.x"] {
            let token = read_rejected(input.as_bytes()).unwrap();
            assert_eq!(token.expose(), "tok.en.x");
        }
    }

    #[test]
    fn bad_standard_input_is_a_usage_error_that_never_shows_it() {
        let long = "x".repeat(MAX_REJECTED as usize + 1);
        for input in [
            "",
            "\n",
            "secret-one\nsecret-two\n",
            "secret with spaces",
            long.as_str(),
        ] {
            let error = read_rejected(input.as_bytes()).unwrap_err();
            assert_eq!(error.kind(), authstore::ErrorKind::InvalidInput);
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("secret"), "the input is not shown");
            assert!(!shown.contains("xxxx"), "the input is not shown");
        }
        let error = read_rejected(&[0xff, 0xfe][..]).unwrap_err();
        assert_eq!(error.kind(), authstore::ErrorKind::InvalidInput);
    }
}
