//! Turning what the server or reqwest says into a `RemoteError`: status mapping, an
//! error body's `Message` (bounded, never other body bytes), redirects (reported, never
//! followed), and network errors stripped of URLs, with local read failures of an
//! upload kept apart.

use std::fmt;

use reqwest::StatusCode;
use serde::Deserialize;

use super::RemoteError;

/// Most bytes of an error body read to find its `Message`.
pub(super) const MAX_ERROR_BODY: usize = 16 * 1024;
/// Longest `Message` carried into an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// A 3xx: never followed (the key must not go elsewhere), reported with its target
/// host only (never a query string or the key).
pub(super) fn redirect_error(resp: &reqwest::Response, what: &str) -> RemoteError {
    let target = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| resp.url().join(l).ok())
        .map(|u| match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => "an unknown location".into(),
        })
        .unwrap_or_else(|| "an unknown location".into());
    RemoteError::Protocol(format!(
        "{what}: the server redirected (HTTP {}) to {target}; redirects are never followed",
        resp.status().as_u16()
    ))
}

/// The `Message` of an error body, if it has one; never other body bytes.
pub(super) async fn error_message(mut resp: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "Message", alias = "message")]
        message: Option<String>,
    }
    let body: ErrorBody = serde_json::from_slice(&buf).ok()?;
    let msg = body.message?;
    let msg: String = msg
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    Some(msg)
}

pub(super) fn status_error(status: StatusCode, message: Option<String>) -> RemoteError {
    let code = status.as_u16();
    match code {
        401 | 403 => RemoteError::Unauthorized { status: code },
        404 => RemoteError::NotFound,
        429 => RemoteError::RateLimited,
        500..=599 => RemoteError::Server { status: code },
        _ => RemoteError::Rejected {
            status: code,
            message: message.unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_string()),
        },
    }
}

/// An error and its sources, joined, without the URL.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// A read error of the local file being uploaded, kept distinguishable inside
/// reqwest's error chain.
#[derive(Debug)]
pub(super) struct LocalRead(pub(super) std::io::Error);

impl fmt::Display for LocalRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading the file to upload: {}", self.0)
    }
}

impl std::error::Error for LocalRead {}

fn local_read_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(l) = x.downcast_ref::<LocalRead>() {
            return Some(l.to_string());
        }
        cur = x.source();
    }
    None
}

pub(super) fn network_error(e: &reqwest::Error) -> RemoteError {
    // A failure reading our own upload source is local and left nothing behind.
    if let Some(local) = local_read_in(e) {
        return RemoteError::LocalIo(local);
    }
    // Build the text from a copy without the URL: no query strings in errors.
    let text = if e.is_timeout() {
        format!("timed out ({})", chain(e))
    } else {
        chain(e)
    };
    let text = match e.url() {
        Some(u) => text.replace(u.as_str(), "<url>"),
        None => text,
    };
    RemoteError::Network(text)
}
