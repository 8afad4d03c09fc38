//! The check's raw HTTP: one reqwest call at a time within the budget and the pace,
//! the account key only to the base URL's origin, redirects reported and never
//! followed, bodies kept or only counted, and the answers that stop the check (429,
//! 5xx, a rejected key, a network failure) recorded as they happen. The steps that use
//! it live in `read.rs` and `write.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::Url;
use serde_json::Value;
use tokio::time::Instant;

use super::report::{Finding, Report, Severity, Step};
use super::shape::{describe_body, describe_mime, describe_retry_after, describe_string};
use super::{service_name, AUTH_HEADER, MAX_KEPT_BODY};
use crate::remote::ClientId;

/// A file or folder id as text (ids may come as numbers), if the mount would accept
/// it (`remote::parse::valid_id`: not empty, `.` or `..`, no `/`, `\\` or control
/// characters): every id the check puts in a URL comes through here, so a `..` never
/// turns `files/<id>` into the base URL.
pub(super) fn id_text(v: Option<&Value>) -> Option<String> {
    raw_id_text(v).filter(|id| crate::remote::parse::valid_id(id))
}

/// An id field as text (string or integer), valid or not: only to count the invalid.
pub(super) fn raw_id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// A client id from a row field (integer, or digits in a string).
pub(super) fn client_id(v: Option<&Value>) -> Option<ClientId> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The check stops: the reason is already in the report.
pub(super) struct Halt;

/// Why a call produced no answer to judge.
pub(super) enum Fail {
    /// Nothing further can be learnt (network, key rejected, rate limited, budget).
    Halt,
    /// This call's answer cannot be judged (a redirect), the next calls can still run.
    Skip,
    /// The check stops, but the call may have taken effect: its answer was lost (network
    /// failure) or a server error. The round trip then lists to see whether its upload
    /// landed, so it can clean up.
    Lost,
}

impl From<Halt> for Fail {
    fn from(_: Halt) -> Fail {
        Fail::Halt
    }
}

/// A call's answer.
pub(super) struct Answer {
    /// The HTTP status.
    pub(super) status: u16,
    /// The answer's headers.
    pub(super) headers: HeaderMap,
    /// The body, if kept (listings, error bodies, the marker's bytes).
    pub(super) body: Vec<u8>,
    /// Bytes received (kept or only counted).
    pub(super) received: u64,
}

impl Answer {
    pub(super) fn header(&self, name: reqwest::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(super) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Content-Type: …; body: …`.
    pub(super) fn describe(&self) -> String {
        let ct = match self.header(CONTENT_TYPE) {
            Some(v) => describe_mime(v),
            None => "absent".to_string(),
        };
        format!("Content-Type: {ct}; body: {}", describe_body(&self.body))
    }
}

/// Which key a call carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyUse {
    /// The account's key.
    Real,
    /// The made-up key of the rejected-key probe.
    Bad,
}

/// Whether to keep the body or only count it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// Keep up to [`MAX_KEPT_BODY`] bytes.
    Body,
    /// Count the bytes of a 2xx answer, keep nothing (the account's file contents).
    CountOnly,
}

/// The probe in progress: the client, the budget and pace, and the report so far.
pub(super) struct Prober<'p> {
    /// No redirects, https only unless loopback.
    pub(super) http: reqwest::Client,
    /// The API base URL; every request goes to its origin.
    pub(super) base: Url,
    /// The account's key, marked sensitive.
    pub(super) key: HeaderValue,
    /// The made-up key.
    pub(super) bad_key: HeaderValue,
    /// Calls per rolling minute (0: unpaced).
    pub(super) rate: u32,
    /// When recent calls were sent, for pacing.
    pub(super) sent: Vec<Instant>,
    /// Where one line per call goes (stderr for the command line).
    pub(super) progress: &'p mut (dyn FnMut(&str) + Send),
    /// The report being built.
    pub(super) report: Report,
    /// The folder ids `GET folders` listed, if it could be read.
    pub(super) folder_ids: Option<BTreeSet<String>>,
}

impl Prober<'_> {
    /// A GET of `path?query` for a step that judges its answer: `Ok(None)` when the answer
    /// cannot be judged (a redirect: the next steps still run), `Err(Halt)` when the check
    /// stops.
    pub(super) async fn get(
        &mut self,
        request: String,
        purpose: &str,
        path: &str,
        query: Option<&str>,
        key: KeyUse,
        keep: Keep,
    ) -> Result<Option<(usize, Answer)>, Halt> {
        let rb = self.http.get(self.url(path, query)?);
        match self.call(request, purpose, rb, key, keep).await {
            (idx, Ok(a)) => Ok(Some((idx, a))),
            (_, Err(Fail::Skip)) => Ok(None),
            (_, Err(Fail::Halt | Fail::Lost)) => Err(Halt),
        }
    }

    pub(super) fn url(&self, path: &str, query: Option<&str>) -> Result<Url, Halt> {
        let mut u = self.base.join(path).map_err(|_| Halt)?;
        u.set_query(query);
        // The key goes to the base URL's origin only.
        if u.origin() != self.base.origin() {
            return Err(Halt);
        }
        Ok(u)
    }

    pub(super) fn find(&mut self, code: &'static str, severity: Severity, step: &str, observed: String, meaning: &str) {
        self.report.findings.push(Finding {
            code,
            severity,
            step: step.to_string(),
            observed,
            meaning: meaning.to_string(),
        });
    }

    pub(super) fn stop(&mut self, why: String) -> Halt {
        if self.report.incomplete.is_none() {
            self.report.incomplete = Some(why);
        }
        Halt
    }

    pub(super) fn observe(&mut self, idx: usize, line: String) {
        if let Some(s) = self.report.steps.get_mut(idx) {
            s.observations.push(line);
        }
    }

    /// Wait so that no more than `rate` calls fall in any minute.
    async fn pace(&mut self) {
        if self.rate == 0 {
            return;
        }
        let window = Duration::from_secs(60);
        let now = Instant::now();
        self.sent.retain(|t| now.duration_since(*t) < window);
        if self.sent.len() >= self.rate as usize {
            if let Some(first) = self.sent.first() {
                let wait = window.saturating_sub(now.duration_since(*first));
                (self.progress)(&format!(
                    "  pacing: waiting {} s to stay under {} calls per minute",
                    wait.as_millis().div_ceil(1000),
                    self.rate
                ));
                tokio::time::sleep(wait).await;
            }
        }
        self.sent.push(Instant::now());
    }

    /// Send one request, within the budget, never retried, redirects reported and not
    /// followed. Returns the step's index and the answer; statuses that stop the check
    /// (429, 5xx, a rejected account key) and network errors are recorded here.
    pub(super) async fn call(
        &mut self,
        request: String,
        purpose: &str,
        rb: reqwest::RequestBuilder,
        key: KeyUse,
        keep: Keep,
    ) -> (usize, Result<Answer, Fail>) {
        self.report.steps.push(Step {
            request: request.clone(),
            purpose: purpose.to_string(),
            ..Step::default()
        });
        let idx = self.report.steps.len() - 1;
        if self.report.calls >= self.report.budget {
            self.report.steps[idx].error = Some("not sent: the call budget is spent".into());
            return (idx, Err(self.stop("the call budget is spent".into()).into()));
        }
        self.pace().await;
        self.report.calls += 1;
        let header = match key {
            KeyUse::Real => self.key.clone(),
            KeyUse::Bad => self.bad_key.clone(),
        };
        let n = self.report.calls;
        let budget = self.report.budget;
        let result = rb.header(AUTH_HEADER, header).send().await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let text = network_text(&e);
                (self.progress)(&format!("[{n}/{budget}] {request} → network error"));
                self.report.steps[idx].error = Some(text.clone());
                let _ = self.stop(format!("{request}: {text}"));
                return (idx, Err(Fail::Lost));
            }
        };
        let status = resp.status().as_u16();
        self.report.steps[idx].status = Some(status);
        (self.progress)(&format!("[{n}/{budget}] {request} → {status}"));
        if (300..400).contains(&status) {
            self.redirected(idx, &request, status, resp.headers());
            return (idx, Err(Fail::Skip));
        }
        let answer = match self.receive(idx, &request, resp, keep).await {
            Ok(a) => a,
            Err(f) => return (idx, Err(f)),
        };
        (idx, self.stops_the_check(idx, &request, key, answer))
    }

    /// A redirect: where to (described, never followed), and the finding.
    fn redirected(&mut self, idx: usize, request: &str, status: u16, headers: &HeaderMap) {
        let target = match headers.get(LOCATION).and_then(|v| v.to_str().ok()) {
            None => "no Location header".to_string(),
            Some(loc) => match self.base.join(loc) {
                Ok(u) if u.origin() == self.base.origin() => "the same host".to_string(),
                Ok(u) => format!("host {}", service_name(&u)),
                Err(_) => format!("an unparsable Location ({})", describe_string(loc)),
            },
        };
        self.observe(idx, format!("redirect to {target} (not followed)"));
        self.find(
            "redirect",
            Severity::Unsafe,
            request,
            format!("answered {status} redirecting to {target}"),
            "the service redirects this call: the mount must not follow redirects with the key \
             (a redirect to another host would receive it), and until it handles this call's \
             redirect without the key the call fails",
        );
    }

    /// Read the body: kept up to [`MAX_KEPT_BODY`] (or, for a 2xx with
    /// [`Keep::CountOnly`], only counted). A body cut off stops the check like a lost
    /// answer.
    async fn receive(
        &mut self,
        idx: usize,
        request: &str,
        mut resp: reqwest::Response,
        keep: Keep,
    ) -> Result<Answer, Fail> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let success = (200..300).contains(&status);
        let keep_body = keep == Keep::Body || !success;
        let mut body = Vec::new();
        let mut received = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    received += c.len() as u64;
                    if keep_body && body.len() < MAX_KEPT_BODY {
                        body.extend_from_slice(&c);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let text = format!("the body failed after {received} bytes: {}", network_text(&e));
                    self.report.steps[idx].error = Some(text.clone());
                    let _ = self.stop(format!("{request}: {text}"));
                    return Err(Fail::Lost);
                }
            }
        }
        if keep_body && received > MAX_KEPT_BODY as u64 {
            self.observe(
                idx,
                format!("body of {received} bytes: only the first {MAX_KEPT_BODY} examined"),
            );
        }
        Ok(Answer {
            status,
            headers,
            body,
            received,
        })
    }

    /// The answer, or why it stops the check: rate limited (429), the account key
    /// rejected (401, 403), a server error (5xx, which may have taken effect).
    fn stops_the_check(&mut self, idx: usize, request: &str, key: KeyUse, answer: Answer) -> Result<Answer, Fail> {
        let status = answer.status;
        if status == 429 {
            self.observe_rate_limit(idx, &answer);
            return Err(self
                .stop(format!(
                    "rate limited (429) at {request}; not retried: run the check again after a few minutes, \
                     with nothing else using the account"
                ))
                .into());
        }
        if key == KeyUse::Real && (status == 401 || status == 403) {
            self.observe(idx, answer.describe());
            return Err(self
                .stop(format!(
                    "the key was rejected ({status}) at {request}: check the key and the account's IP allow-list"
                ))
                .into());
        }
        if status >= 500 {
            self.observe(idx, answer.describe());
            let _ = self.stop(format!("server error ({status}) at {request}; not retried"));
            return Err(Fail::Lost);
        }
        Ok(answer)
    }

    /// A 429's `Retry-After` and other rate headers (names only), and its body's shape.
    fn observe_rate_limit(&mut self, idx: usize, answer: &Answer) {
        let retry = describe_retry_after(answer.header(RETRY_AFTER));
        let mut rate_headers: Vec<String> = answer
            .headers
            .keys()
            .map(|k| k.as_str().to_string())
            .filter(|k| k.contains("rate") || k.contains("limit") || k.contains("quota"))
            .collect();
        rate_headers.sort();
        let others = if rate_headers.is_empty() {
            "none".to_string()
        } else {
            rate_headers.join(", ")
        };
        self.observe(idx, format!("Retry-After: {retry}; other rate headers: {others}"));
        self.observe(idx, answer.describe());
    }

    /// A GET with the account key whose 2xx body is a JSON array: the rows, or `None`
    /// (recorded) when the answer is not one.
    pub(super) fn json_rows(&mut self, idx: usize, a: &Answer) -> Option<Vec<Value>> {
        self.observe(idx, a.describe());
        match serde_json::from_slice::<Value>(&a.body) {
            Ok(Value::Array(rows)) => Some(rows),
            _ => None,
        }
    }
}

/// `files/<id>`, the id percent-encoded as one path segment.
pub(super) fn file_path(id: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    format!("files/{}", percent_encoding::utf8_percent_encode(id, SEGMENT))
}

/// A network error's text without the URL.
fn network_text(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "network error".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    match e.url() {
        Some(u) => out.replace(u.as_str(), "<url>"),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacing_waits_out_the_minute_once_the_rate_is_used() {
        crate::remote::http::install_crypto_provider();
        let mut lines = Vec::new();
        let mut progress = |l: &str| lines.push(l.to_string());
        let mut p = Prober {
            http: reqwest::Client::builder().build().unwrap(),
            base: Url::parse("https://intakeq.com/api/v1/").unwrap(),
            key: HeaderValue::from_static("k"),
            bad_key: HeaderValue::from_static("b"),
            rate: 2,
            sent: Vec::new(),
            progress: &mut progress,
            report: Report::default(),
            folder_ids: None,
        };
        let t0 = Instant::now();
        p.pace().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        p.pace().await;
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        p.pace().await;
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(60),
            "the third call waits for the first to age out"
        );
        p.pace().await;
        assert_eq!(t0.elapsed(), Duration::from_secs(70));
        drop(p);
        assert_eq!(
            lines,
            vec![
                "  pacing: waiting 50 s to stay under 2 calls per minute".to_string(),
                "  pacing: waiting 10 s to stay under 2 calls per minute".to_string()
            ]
        );
    }

    #[test]
    fn file_paths_stay_one_segment() {
        assert_eq!(file_path("a/../../b?c"), "files/a%2F..%2F..%2Fb%3Fc");
        assert_eq!(file_path("f0001"), "files/f0001");
    }
}
