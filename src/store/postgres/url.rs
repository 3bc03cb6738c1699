//! `--database-url`: a `postgres://` URL, with libpq's `sslmode` and
//! `sslrootcert` understood here (the driver knows neither `verify-full` nor
//! `sslrootcert`), and a form fit to print: the password never appears in a
//! log line or an error.

use std::path::PathBuf;
use std::time::Duration;

use postgres::config::{Host, SslMode};

/// A connection attempt that gets no answer gives up after this long,
/// rather than holding a request (or a start-up) indefinitely.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the connection is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TLS, the server's certificate checked against `root_cert` (a PEM file
    /// of CA certificates; `None`: the system's CA bundle) and its name
    /// against the host: libpq's `sslmode=verify-full`.
    VerifiedTls { root_cert: Option<PathBuf> },
    /// Every host is a Unix socket: local, no TLS to be had.
    UnixSocket,
    /// `sslmode=disable` on a network host: plain text, said loudly.
    Plaintext,
}

#[derive(Clone)]
pub struct PostgresUrl {
    config: postgres::Config,
    transport: Transport,
    shown: String,
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &self.shown)
            .field("transport", &self.transport)
            .finish()
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Why a URL was refused; never quotes the URL itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the database URL must start with postgres:// or postgresql://")]
    Scheme,
    #[error(
        "sslmode={0} is not supported: the connection is verified (sslmode=verify-full, the \
         default) or, on a trusted network only, sslmode=disable"
    )]
    SslMode(String),
    #[error("the database URL is not valid: {0}")]
    Invalid(String),
    #[error("the database URL names no host (give one, or host=/path/to/socket/dir)")]
    NoHost,
}

impl PostgresUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        let rest = text
            .strip_prefix("postgres://")
            .or_else(|| text.strip_prefix("postgresql://"))
            .ok_or(UrlError::Scheme)?;
        let (base, query) = match rest.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (rest, None),
        };
        let mut sslmode = None;
        let mut root_cert = None;
        let mut passed = form_urlencoded::Serializer::new(String::new());
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "sslmode" => sslmode = Some(value.into_owned()),
                "sslrootcert" => root_cert = Some(PathBuf::from(&*value)),
                _ => {
                    passed.append_pair(&key, &value);
                }
            }
        }
        let passed = passed.finish();
        let driver_url = if passed.is_empty() {
            format!("postgres://{base}")
        } else {
            format!("postgres://{base}?{passed}")
        };
        let mut config: postgres::Config = driver_url.parse().map_err(|e: postgres::Error| {
            // The driver's message names the problem, never the value.
            UrlError::Invalid(e.to_string())
        })?;
        let hosts = config.get_hosts();
        if hosts.is_empty() {
            return Err(UrlError::NoHost);
        }
        let all_sockets =
            hosts.iter().all(|h| matches!(h, Host::Unix(_))) && config.get_hostaddrs().is_empty();
        let transport = if all_sockets {
            Transport::UnixSocket
        } else {
            match sslmode.as_deref() {
                None | Some("verify-full") => Transport::VerifiedTls { root_cert },
                Some("disable") => Transport::Plaintext,
                Some(other) => return Err(UrlError::SslMode(other.to_owned())),
            }
        };
        config.ssl_mode(match transport {
            Transport::VerifiedTls { .. } => SslMode::Require,
            Transport::UnixSocket | Transport::Plaintext => SslMode::Disable,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        // A peer that vanished without closing must be noticed, not waited on.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("secure-api");
        }
        Ok(Self {
            config,
            transport,
            shown: redact(text),
        })
    }

    pub fn config(&self) -> &postgres::Config {
        &self.config
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

/// The URL with its password (in the user part or a `password=` parameter)
/// replaced by `***`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_full_is_the_default_and_the_only_tls_mode() {
        let url = PostgresUrl::parse("postgres://app:pw@db.example.com:5433/secure").unwrap();
        assert_eq!(url.transport(), &Transport::VerifiedTls { root_cert: None });
        assert_eq!(url.config().get_ssl_mode(), SslMode::Require);
        assert_eq!(url.config().get_dbname(), Some("secure"));

        let url = PostgresUrl::parse(
            "postgresql://app@db.example.com/secure?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=2",
        )
        .unwrap();
        assert_eq!(
            url.transport(),
            &Transport::VerifiedTls {
                root_cert: Some(PathBuf::from("/etc/ca.pem"))
            }
        );
        assert_eq!(
            url.config().get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );

        for weaker in ["require", "verify-ca", "prefer", "allow"] {
            let refused = PostgresUrl::parse(&format!("postgres://h/db?sslmode={weaker}"));
            assert_eq!(refused.unwrap_err(), UrlError::SslMode(weaker.to_owned()));
        }
    }

    #[test]
    fn disable_is_plaintext_and_sockets_need_no_tls() {
        let url = PostgresUrl::parse("postgres://app:pw@10.0.0.5/db?sslmode=disable").unwrap();
        assert_eq!(url.transport(), &Transport::Plaintext);
        assert_eq!(url.config().get_ssl_mode(), SslMode::Disable);

        let url = PostgresUrl::parse("postgres://app@%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(url.transport(), &Transport::UnixSocket);
        let url = PostgresUrl::parse("postgres:///db?host=/run/postgresql").unwrap();
        assert_eq!(url.transport(), &Transport::UnixSocket);
        assert_eq!(url.config().get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn refusals_and_the_printed_form_never_show_the_password() {
        for bad in [
            "mysql://root:hunter2@h/db",
            "postgres://root:hunter2@h/db?bogus_option=1",
            "postgres:///db",
            "postgres://root:hunter2@h:notaport/db",
        ] {
            let error = PostgresUrl::parse(bad).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{bad}: {error}");
        }
        let url = PostgresUrl::parse("postgres://root:hunter2@h:5432/db?sslmode=disable").unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://root:***@h:5432/db?sslmode=disable"
        );
        assert!(!format!("{url:?}").contains("hunter2"));
        let url = PostgresUrl::parse("postgres://h/db?user=root&password=hunter2").unwrap();
        assert_eq!(url.to_string(), "postgres://h/db?user=root&password=***");
    }
}
