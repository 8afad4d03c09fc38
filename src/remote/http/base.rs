//! The base-URL rules and the TLS set-up, once, for both HTTP clients of the program:
//! the mount's (`HttpRemote`) and `intakeq-fs check`'s. A base URL is http(s), a base,
//! with a host, no query or fragment, never a user name or password (refused, never
//! echoed); plain `http://` only to this machine unless the caller allows it.

use std::fmt;
use std::sync::Once;

use reqwest::Url;

/// Why a base URL is refused. Its text never contains the URL's password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseUrlError {
    /// Not a URL at all.
    Unparsable(String),
    /// Not an http(s) URL with a host.
    NotHttp,
    /// A query or a fragment.
    QueryOrFragment,
    /// `user:pass@`: never accepted (the key has its own ways in), never shown.
    Credentials,
    /// Plain http to another host, not allowed by the caller.
    PlainHttp { host: String },
}

impl fmt::Display for BaseUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseUrlError::Unparsable(e) => write!(f, "invalid API base URL: {e}"),
            BaseUrlError::NotHttp => write!(f, "invalid API base URL: it must be an http:// or https:// URL with a host"),
            BaseUrlError::QueryOrFragment => write!(f, "invalid API base URL: it must not have a query or fragment"),
            BaseUrlError::Credentials => write!(
                f,
                "invalid API base URL: it must not carry a user name or password (the key goes in INTAKEQ_API_KEY, a credential, the keyring or --api-key-file)"
            ),
            BaseUrlError::PlainHttp { host } => write!(
                f,
                "refusing plain http:// to {host}: the API key and files would cross the network unencrypted; \
                 use https:// (or, knowingly, --insecure-plain-http)"
            ),
        }
    }
}

/// Check a base URL by the rules above; returns it with a trailing `/`.
pub fn parse_base_url(s: &str, allow_plain_http: bool) -> Result<Url, BaseUrlError> {
    // `Url`'s own error text never includes the input.
    let mut base = Url::parse(s.trim()).map_err(|e| BaseUrlError::Unparsable(e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() || base.host().is_none() {
        return Err(BaseUrlError::NotHttp);
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(BaseUrlError::QueryOrFragment);
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(BaseUrlError::Credentials);
    }
    if base.scheme() == "http" && !is_loopback(&base) && !allow_plain_http {
        return Err(BaseUrlError::PlainHttp {
            host: base.host_str().unwrap_or("?").to_string(),
        });
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

/// 127.0.0.0/8, ::1 (also as ::ffff:127.x) and `localhost`: the only hosts plain http
/// may reach.
pub fn is_loopback(u: &Url) -> bool {
    let Some(host) = u.host_str() else { return false };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
        Ok(std::net::IpAddr::V6(a)) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost."),
    }
}

static CRYPTO_PROVIDER: Once = Once::new();

/// reqwest is built without a default rustls provider: install ring once per process
/// (another part of the program may have installed one already; that is fine).
pub fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
