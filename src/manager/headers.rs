//! The HTTP headers a request made with the credentials carries: `Authorization: Bearer` and,
//! for the ChatGPT backend, `ChatGPT-Account-Id` when the account is known. Computed here once,
//! so that the `authstore token` formats and the language bindings send the same headers.
//!
//! Verified by unit tests below (values, the account header's absence, a redacted `Debug`) and
//! end to end by `token_formats` in the command line's tests (`crates/authstore-cli/tests/it`).

use crate::secret::Secret;

/// The request headers for one access token. `Debug` shows the account id but never the token;
/// the values are read with [`RequestHeaders::expose`], where they are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    /// The whole `Authorization` value, `Bearer <access token>`.
    authorization: Secret,
    account_id: Option<String>,
}

impl RequestHeaders {
    /// The header that carries the bearer token.
    pub const AUTHORIZATION: &'static str = "Authorization";
    /// The header naming the ChatGPT account (workspace) the request is for.
    pub const ACCOUNT_ID: &'static str = "ChatGPT-Account-Id";

    pub(crate) fn new(access_token: &Secret, account_id: Option<&str>) -> Self {
        Self {
            authorization: Secret::new(format!("Bearer {}", access_token.expose())),
            account_id: account_id.map(str::to_owned),
        }
    }

    /// The account the requests are for, when known (not a secret).
    pub fn account_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }

    /// `(name, value)` pairs, `Authorization` first, then `ChatGPT-Account-Id` when the account
    /// is known. Call it only where the headers leave the process on purpose.
    pub fn expose(&self) -> Vec<(&'static str, &str)> {
        let mut headers = vec![(Self::AUTHORIZATION, self.authorization.expose())];
        if let Some(account) = &self.account_id {
            headers.push((Self::ACCOUNT_ID, account.as_str()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_account_header_in_order() {
        let headers = RequestHeaders::new(&Secret::new("at-1"), Some("acct-1"));
        assert_eq!(
            headers.expose(),
            [
                ("Authorization", "Bearer at-1"),
                ("ChatGPT-Account-Id", "acct-1")
            ]
        );
    }

    #[test]
    fn no_account_header_when_the_account_is_unknown() {
        let headers = RequestHeaders::new(&Secret::new("at-1"), None);
        assert_eq!(headers.expose(), [("Authorization", "Bearer at-1")]);
        assert_eq!(headers.account_id(), None);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let headers = RequestHeaders::new(&Secret::new("at-very-secret"), Some("acct-1"));
        let shown = format!("{headers:?}");
        assert!(!shown.contains("at-very-secret"));
        assert!(shown.contains("acct-1"));
    }
}
