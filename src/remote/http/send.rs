//! Sending a call: one attempt (auth header, status mapping, a 429 pausing the shared
//! limiter), the overall answer deadline, bounded listing bodies, and retries of
//! idempotent calls with exponential backoff.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode, Url};
use tokio::time::Instant;

use super::errors::{error_message, network_error, redirect_error, status_error, MAX_ERROR_BODY};
use super::{parse, HttpRemote, Priority, RemoteError};

/// How long to pause everyone after a 429 that carries no `Retry-After`: the
/// per-minute window's length.
const DEFAULT_429_PAUSE: Duration = Duration::from_secs(60);
/// Longest pause a 429's `Retry-After` may impose: a larger value (or one that does not
/// fit a duration) would freeze the mount for no reason a rate limit can have.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);
/// Longest single backoff between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const AUTH_HEADER: &str = "X-Auth-Key";

/// What a successful attempt should hand back.
#[derive(Clone, Copy)]
pub(super) enum Want {
    /// The whole body (listings).
    Body,
    /// The response, body unread (downloads).
    Stream,
    /// Nothing (deletes, uploads).
    Nothing,
}

pub(super) enum Answer {
    Body(Bytes),
    Stream(reqwest::Response),
    Done,
}

/// A failed call, with whether an earlier attempt may have taken effect.
pub(super) struct Failed {
    pub(super) err: RemoteError,
    pub(super) earlier_ambiguous: bool,
}

impl HttpRemote {
    /// Exponential backoff with jitter taken from the clock (no RNG needed).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .opts
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut x = u64::from(nanos) ^ (u64::from(attempt) << 32);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let permille = (x % 500) as u32;
        base + base * permille / 1000
    }

    /// One attempt: send, then map the status. 429 pauses the limiter.
    pub(super) async fn attempt(
        &self,
        rb: reqwest::RequestBuilder,
        what: &str,
        want: Want,
    ) -> Result<Answer, RemoteError> {
        let resp = rb
            .header(AUTH_HEADER, self.key.clone())
            .send()
            .await
            .map_err(|e| network_error(&e))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(redirect_error(&resp, what));
        }
        if status.is_success() {
            return match want {
                Want::Body => self.bounded_body(resp, what).await.map(Answer::Body),
                Want::Stream => Ok(Answer::Stream(resp)),
                Want::Nothing => {
                    // Read a small answer so the connection can be reused; its content
                    // does not matter, and a large one is not read at all.
                    let mut resp = resp;
                    let mut read = 0usize;
                    while read < MAX_ERROR_BODY {
                        match resp.chunk().await {
                            Ok(Some(c)) => read = read.saturating_add(c.len()),
                            _ => break,
                        }
                    }
                    Ok(Answer::Done)
                }
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let pause = retry_after(resp.headers()).unwrap_or(DEFAULT_429_PAUSE);
            tracing::debug!("{what}: HTTP 429, pausing requests for {} s", pause.as_secs());
            if let Some(until) = Instant::now().checked_add(pause) {
                self.limiter.pause_until(until);
            }
        }
        let message = error_message(resp).await;
        Err(status_error(status, message))
    }

    /// A listing body, read as it arrives and refused once it passes
    /// `max_listing_bytes` (announced or actual).
    async fn bounded_body(&self, mut resp: reqwest::Response, what: &str) -> Result<Bytes, RemoteError> {
        let max = self.opts.max_listing_bytes;
        let too_big = || RemoteError::Protocol(format!("{what}: the answer is larger than {max} bytes; refusing it"));
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_big());
        }
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| network_error(&e))? {
            if buf.len().saturating_add(chunk.len()) > max {
                return Err(too_big());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// One attempt within the overall answer deadline (headers and, for listings, the
    /// whole body). Downloads' bodies are bounded by inactivity only.
    async fn attempt_in_time(
        &self,
        rb: reqwest::RequestBuilder,
        what: &str,
        want: Want,
    ) -> Result<Answer, RemoteError> {
        let deadline = self.opts.answer_deadline;
        match tokio::time::timeout(deadline, self.attempt(rb, what, want)).await {
            Ok(r) => r,
            Err(_) => Err(RemoteError::Network(format!(
                "timed out: no complete answer within {} s",
                deadline.as_secs_f32()
            ))),
        }
    }

    /// An idempotent call: every attempt goes through the limiter; network errors,
    /// timeouts, 5xx and 429 are retried up to `max_retries` times. An attempt that
    /// ran out its whole answer deadline is not retried (a server that slow will not
    /// be faster the next time, and the caller has waited long enough).
    pub(super) async fn idempotent(
        &self,
        method: Method,
        url: Url,
        what: &str,
        prio: Priority,
        want: Want,
    ) -> Result<Answer, Failed> {
        let mut attempt = 0u32;
        let mut earlier_ambiguous = false;
        loop {
            if let Err(err) = self.limiter.acquire(prio, what).await {
                tracing::warn!("{what} failed: {err}");
                return Err(Failed {
                    err: err.into(),
                    earlier_ambiguous,
                });
            }
            let rb = self.client.request(method.clone(), url.clone());
            let started = Instant::now();
            let err = match self.attempt_in_time(rb, what, want).await {
                Ok(a) => return Ok(a),
                Err(e) => e,
            };
            let out_of_time = started.elapsed() >= self.opts.answer_deadline;
            let retryable = !out_of_time
                && matches!(
                    err,
                    RemoteError::Network(_) | RemoteError::Server { .. } | RemoteError::RateLimited
                );
            if !retryable || attempt >= self.opts.max_retries {
                if err == RemoteError::NotFound {
                    tracing::debug!("{what}: not found");
                } else if retryable {
                    tracing::warn!("{what} failed after {} attempts: {err}", attempt + 1);
                } else {
                    tracing::warn!("{what} failed: {err}");
                }
                return Err(Failed { err, earlier_ambiguous });
            }
            earlier_ambiguous |= err.is_ambiguous();
            if err == RemoteError::RateLimited {
                // The limiter was paused; the next acquire waits it out.
                tracing::debug!("{what}: rate limited, retrying after the pause");
            } else {
                let wait = self.backoff(attempt);
                tracing::debug!(
                    "{what}: attempt {} failed ({err}), retrying in {} ms",
                    attempt + 1,
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
        }
    }

    /// A listing's body (bounded), or the call's error.
    pub(super) async fn get_body(&self, url: Url, what: &str, prio: Priority) -> Result<Bytes, RemoteError> {
        match self.idempotent(Method::GET, url, what, prio, Want::Body).await {
            Ok(Answer::Body(b)) => Ok(b),
            Ok(_) => Err(RemoteError::Protocol(format!("{what}: no body"))),
            Err(f) => Err(f.err),
        }
    }

    /// Rows of a listing; a parse failure of the whole body is logged.
    pub(super) fn rows<T>(
        &self,
        what: &str,
        parsed: Result<parse::Parsed<T>, RemoteError>,
    ) -> Result<Vec<T>, RemoteError> {
        match parsed {
            Ok(p) => {
                if p.skipped > 0 {
                    tracing::warn!(
                        "{what}: skipped {} row(s) that could not be used (invalid id, size or shape); \
                         the other {} are shown",
                        p.skipped,
                        p.rows.len()
                    );
                }
                Ok(p.rows)
            }
            Err(e) => {
                tracing::warn!("{e}");
                Err(e)
            }
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?)
}

/// `Retry-After` seconds, capped at [`MAX_RETRY_AFTER`] (also a number too large for
/// any integer type); anything else is absent.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = v.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retry_after_is_capped_and_never_overflows() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        for huge in [
            "301",
            "99999999999",
            "18446744073709551615",
            "18446744073709551616",
            &"9".repeat(400),
        ] {
            assert_eq!(parse_retry_after(huge), Some(MAX_RETRY_AFTER), "{huge}");
        }
        for absent in ["", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "+5", "0x10"] {
            assert_eq!(parse_retry_after(absent), None, "{absent}");
        }
    }

    proptest! {
        #[test]
        fn retry_after_never_panics_and_stays_within_the_cap(v in ".{0,40}", n in any::<u64>()) {
            if let Some(d) = parse_retry_after(&v) {
                prop_assert!(d <= MAX_RETRY_AFTER);
            }
            let d = parse_retry_after(&n.to_string()).unwrap();
            prop_assert_eq!(d, Duration::from_secs(n).min(MAX_RETRY_AFTER));
            prop_assert!(Instant::now().checked_add(d).is_some());
        }
    }
}
