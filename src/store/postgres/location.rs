//! The connection string: what tokio-postgres is given, what the TLS setup takes from it, and
//! the printable location, which never holds a password.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::Config;
use tokio_postgres::config::{Host, SslMode};

use crate::error::{Error, Result};

/// A connection string, parsed.
pub(super) struct Parsed {
    /// What tokio-postgres connects with (it holds the password: never printed).
    pub(super) config: Config,
    /// `sslrootcert=` from the URL: the certificates to trust instead of the system's.
    pub(super) ssl_root_cert: Option<PathBuf>,
}

/// Parses a `postgres://` URL (or a libpq `key=value` string).
///
/// In URL form, two libpq parameters that tokio-postgres does not know are understood here:
/// `sslrootcert=PATH` (the certificates to trust) and `sslmode=verify-ca` / `verify-full`
/// (both mean `require` here, which always verifies the certificate and the host name).
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming what is wrong, never echoing the string (it may hold a
/// password).
pub(super) fn parse(url: &str) -> Result<Parsed> {
    let (rewritten, ssl_root_cert) = take_libpq_parameters(url);
    let config = Config::from_str(&rewritten).map_err(|error| {
        let mut reason = error.to_string();
        if let Some(source) = std::error::Error::source(&error) {
            let _ = write!(reason, ": {source}");
        }
        Error::invalid_input(format!(
            "the store URL is not a valid PostgreSQL connection string ({reason}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require]"
        ))
    })?;
    if config.get_hosts().is_empty() {
        return Err(Error::invalid_input(
            "the store URL names no host; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
        ));
    }
    Ok(Parsed {
        config,
        ssl_root_cert,
    })
}

/// Removes `sslrootcert` from a URL's query (returning it) and maps libpq's verifying SSL modes
/// to `require`. Splits the URL the way tokio-postgres does (credentials end at the first `@`).
fn take_libpq_parameters(url: &str) -> (String, Option<PathBuf>) {
    let Some(scheme_end) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.starts_with(scheme).then_some(scheme.len()))
    else {
        return (url.to_owned(), None);
    };
    let after_credentials = url[scheme_end..]
        .find('@')
        .map_or(scheme_end, |at| scheme_end + at + 1);
    let Some(query_start) = url[after_credentials..]
        .find('?')
        .map(|q| after_credentials + q)
    else {
        return (url.to_owned(), None);
    };
    let mut root_cert = None;
    let mut kept = Vec::new();
    for parameter in url[query_start + 1..].split('&') {
        match parameter.split_once('=') {
            Some(("sslrootcert", value)) => {
                root_cert = Some(PathBuf::from(percent_decode(value)));
            }
            Some(("sslmode", "verify-ca" | "verify-full")) => kept.push("sslmode=require"),
            _ => kept.push(parameter),
        }
    }
    let mut rewritten = url[..query_start].to_owned();
    if !kept.is_empty() {
        rewritten.push('?');
        rewritten.push_str(&kept.join("&"));
    }
    (rewritten, root_cert)
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether every host is on this machine (a Unix socket or a loopback address), where a plain
/// connection exposes nothing.
pub(super) fn is_local(config: &Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    })
}

/// The printable location: `postgres://USER@HOST:PORT/DATABASE#KEY`, rebuilt from the parsed
/// configuration, so that it cannot hold a password whatever the URL looked like.
pub(super) fn describe(config: &Config, key: &str) -> String {
    let mut location = String::from("postgres://");
    if let Some(user) = config.get_user() {
        location.push_str(user);
        location.push('@');
    }
    let ports = config.get_ports();
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut socket_dirs: Vec<String> = Vec::new();
    let mut hosts = Vec::new();
    for (index, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(index).or(if ports.len() == 1 {
            ports.first()
        } else {
            None
        });
        match host {
            Host::Tcp(name) => {
                let name = if name.contains(':') {
                    format!("[{name}]")
                } else {
                    name.clone()
                };
                hosts.push(match port {
                    Some(port) if *port != 5432 => format!("{name}:{port}"),
                    _ => name,
                });
            }
            #[cfg(unix)]
            Host::Unix(dir) => socket_dirs.push(dir.display().to_string()),
        }
    }
    location.push_str(&hosts.join(","));
    location.push('/');
    if let Some(dbname) = config.get_dbname() {
        location.push_str(dbname);
    }
    let mut query = Vec::new();
    for dir in socket_dirs {
        query.push(format!("host={dir}"));
    }
    if config.get_ssl_mode() == SslMode::Require {
        query.push("sslmode=require".into());
    }
    if !query.is_empty() {
        location.push('?');
        location.push_str(&query.join("&"));
    }
    location.push('#');
    location.push_str(key);
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(url: &str) -> String {
        describe(&parse(url).unwrap().config, "default")
    }

    #[test]
    fn the_location_never_holds_the_password() {
        assert_eq!(
            location("postgres://alice:s3cret@db.example.com:5433/auth?sslmode=require"),
            "postgres://alice@db.example.com:5433/auth?sslmode=require#default"
        );
        assert_eq!(
            location("postgresql://alice:s3cret@db.example.com/auth?password=other"),
            "postgres://alice@db.example.com/auth#default"
        );
        assert_eq!(
            location("host=db.example.com user=bob password=s3cret dbname=auth"),
            "postgres://bob@db.example.com/auth#default"
        );
        assert_eq!(
            location("postgres://bob@%2Frun%2Fpostgresql/auth"),
            "postgres://bob@/auth?host=/run/postgresql#default"
        );
        assert_eq!(
            location("postgres://[::1]:6000,127.0.0.1:6001/auth"),
            "postgres://[::1]:6000,127.0.0.1:6001/auth#default"
        );
    }

    #[test]
    fn local_hosts_are_told_apart() {
        let local = |url: &str| is_local(&parse(url).unwrap().config);
        assert!(local("postgres://127.0.0.1/auth"));
        assert!(local("postgres://localhost,[::1]/auth"));
        assert!(local("postgres://%2Frun%2Fpostgresql/auth"));
        assert!(!local("postgres://db.example.com/auth"));
        assert!(!local("postgres://127.0.0.1,10.0.0.5/auth"));
    }

    #[test]
    fn libpq_parameters_are_understood() {
        let parsed = parse(
            "postgres://a:p%3Fw@db/auth?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(parsed.ssl_root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(parsed.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(parsed.config.get_password(), Some(&b"p?w"[..]));
        let parsed = parse("postgres://db/auth?sslmode=verify-ca").unwrap();
        assert_eq!(parsed.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(parsed.ssl_root_cert, None);
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "postgres://u:s3cret@db/auth?sslmode=sometimes",
            "postgres://u:s3cret@db/auth?frobnicate=1",
            "postgres://u:s3cret@/auth",
            "s3cret",
            "",
        ] {
            let error = parse(url).err().unwrap();
            assert_eq!(error.kind(), crate::error::ErrorKind::InvalidInput, "{url}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn percent_decoding_tolerates_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
