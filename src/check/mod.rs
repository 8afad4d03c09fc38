//! `intakeq-fs check`: an opt-in probe of the real service that compares every answer
//! with the API contract (`intakeq-files-api.md`) and reports each deviation with what
//! it means for the mount. Read-only by default; `--write --client ID` adds one upload
//! round trip of a marker file in the named client.
//!
//! The check makes its own raw requests (its own reqwest client, no redirects followed,
//! the key sent only to the base URL's origin, plain http only to loopback) because it
//! must see statuses, headers and bodies exactly as sent, which the mount's tolerant
//! remote layer hides. It spends at most [`budget`] calls, paced, never retries, and
//! never keeps or prints names or file contents: see [`shape`] for how answers are
//! described and [`report`] for the verdict and exit codes.

pub mod report;
pub mod shape;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use reqwest::Url;
use serde_json::Value;
use tokio::time::Instant;

pub use report::{Finding, Report, Severity, Step, EXIT_ERROR, EXIT_SAFE, EXIT_UNSAFE};
use shape::{describe_body, describe_mime, describe_retry_after, describe_string, escape_exact, RowsShape};

use crate::remote::ClientId;

/// The marker file's name: a double-quoted word (multipart and `Content-Disposition`
/// quoting), precomposed Latin accents (Unicode normalisation) and CJK (UTF-8 beyond
/// Latin-1). It starts with `intakeq-fs check` so a person can tell what it is.
pub const MARKER_NAME: &str = "intakeq-fs check \"quoted\" \u{e9} \u{fc} \u{65e5}\u{672c}.txt";
/// The marker file's content type.
pub const MARKER_CONTENT_TYPE: &str = "text/plain";
/// The marker file's bytes.
pub const MARKER_BYTES: &[u8] = b"intakeq-fs check: a marker file of the upload round trip; safe to delete.\n";
/// A client id that no account is expected to have (the largest 32-bit id).
pub const UNKNOWN_CLIENT: ClientId = 2_147_483_647;
/// The made-up key of the rejected-key probe.
pub const BAD_KEY: &str = "intakeq-fs-check-deliberately-invalid-key";
/// Calls of the read-only probe: folders, clients, files, download, unknown client, bad key.
pub const READ_CALLS: u32 = 6;
/// Calls the write round trip adds: upload, list, download, delete, list.
pub const WRITE_CALLS: u32 = 5;
/// The standard plan's per-minute limit, the default pace.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 10;
/// Largest listing or error body examined.
const MAX_KEPT_BODY: usize = 32 << 20;
/// The header carrying the key.
const AUTH_HEADER: &str = "X-Auth-Key";
/// 2000-01-01 in Unix seconds: older `DateCreated` values are out of range.
const Y2000_SECS: i64 = 946_684_800;

/// Why the check could not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    /// `--write` without `--client`.
    #[error("--write needs --client ID: the round trip only ever touches the one client you name")]
    WriteNeedsClient,
    /// The base URL is malformed, or plain http to a host other than loopback.
    #[error("invalid API base URL: {0}")]
    BaseUrl(String),
    /// The key has bytes a header cannot carry.
    #[error("the API key contains characters that cannot be sent in a header")]
    KeyNotSendable,
    /// reqwest could not be set up.
    #[error("cannot set up HTTP: {0}")]
    Http(String),
}

/// What to check and how.
pub struct CheckOptions {
    /// The API base URL, e.g. `https://intakeq.com/api/v1/`.
    pub base_url: String,
    /// The account's key (sent only as `X-Auth-Key` to the base URL's origin).
    pub api_key: String,
    /// The client to probe (and, with `write`, the only one written to).
    pub client: Option<ClientId>,
    /// Add the upload round trip.
    pub write: bool,
    /// Most calls per rolling minute (0: no pacing).
    pub rate_per_minute: u32,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for any read.
    pub read_timeout: Duration,
}

impl CheckOptions {
    /// Options with the default pace and timeouts.
    pub fn new(base_url: &str, api_key: String) -> CheckOptions {
        CheckOptions {
            base_url: base_url.to_string(),
            api_key,
            client: None,
            write: false,
            rate_per_minute: DEFAULT_RATE_PER_MINUTE,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// The most calls a check with these options makes.
pub fn budget(write: bool) -> u32 {
    if write {
        READ_CALLS + WRITE_CALLS
    } else {
        READ_CALLS
    }
}

/// The command line of `intakeq-fs check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// API base URL [env: INTAKEQ_BASE_URL].
    #[arg(long)]
    pub base_url: Option<String>,
    /// Read the API key from the first line of this file (instead of INTAKEQ_API_KEY).
    #[arg(long)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// The client to probe; with --write, the only client written to.
    #[arg(long)]
    pub client: Option<ClientId>,
    /// Add an upload round trip of one marker file in --client (5 more calls).
    #[arg(long, requires = "client")]
    pub write: bool,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Most API calls per minute the check allows itself.
    #[arg(long, default_value_t = DEFAULT_RATE_PER_MINUTE)]
    pub rate_limit: u32,
}

/// Run `intakeq-fs check` with a key already read: announce the budget on stderr,
/// print the report on stdout, and exit 0 (safe), 1 (unsafe) or 2 (error).
pub fn run_cli(args: CheckArgs, api_key: String, default_base_url: &str) -> ExitCode {
    let base = args
        .base_url
        .or_else(|| std::env::var("INTAKEQ_BASE_URL").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| default_base_url.to_string());
    let mut opts = CheckOptions::new(&base, api_key);
    opts.client = args.client;
    opts.write = args.write;
    opts.rate_per_minute = args.rate_limit;
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("intakeq-fs: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut progress = |line: &str| eprintln!("{line}");
    match rt.block_on(run(&opts, &mut progress)) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("intakeq-fs: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Run the check. Problems with the service end up in the report; only a check that
/// cannot start is an error.
pub async fn run(opts: &CheckOptions, progress: &mut (dyn FnMut(&str) + Send)) -> Result<Report, CheckError> {
    if opts.write && opts.client.is_none() {
        return Err(CheckError::WriteNeedsClient);
    }
    let base = parse_base(&opts.base_url)?;
    let mut key = HeaderValue::from_str(&opts.api_key).map_err(|_| CheckError::KeyNotSendable)?;
    key.set_sensitive(true);
    let mut bad_key = HeaderValue::from_static(BAD_KEY);
    bad_key.set_sensitive(true);
    install_crypto_provider();
    let loopback = is_loopback(&base);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!loopback)
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout)
        .user_agent(concat!("intakeq-fs-check/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CheckError::Http(e.to_string()))?;
    let budget = budget(opts.write);
    let service = service_name(&base);
    let pace = if opts.rate_per_minute > 0 {
        format!(", paced to at most {} per minute", opts.rate_per_minute)
    } else {
        String::new()
    };
    let mode = if opts.write { "write" } else { "read-only" };
    progress(&format!(
        "intakeq-fs check: at most {budget} API calls ({mode}) to {service}{pace}"
    ));
    let mut p = Prober {
        http,
        base,
        key,
        bad_key,
        rate: opts.rate_per_minute,
        sent: Vec::new(),
        progress,
        report: Report {
            tool: concat!("intakeq-fs ", env!("CARGO_PKG_VERSION")).to_string(),
            service,
            mode: mode.to_string(),
            budget,
            ..Report::default()
        },
        folder_ids: None,
    };
    let _ = p.probe(opts).await;
    Ok(p.report)
}

static CRYPTO_PROVIDER: Once = Once::new();

/// reqwest is built without a default rustls provider: install ring once per process
/// (another part of the program may have installed one already; that is fine).
fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The base URL, normalised to end in `/`; https, or http to loopback only.
fn parse_base(s: &str) -> Result<Url, CheckError> {
    let mut base = Url::parse(s.trim()).map_err(|e| CheckError::BaseUrl(e.to_string()))?;
    if base.cannot_be_a_base() || base.host().is_none() {
        return Err(CheckError::BaseUrl("it must be an https:// URL with a host".into()));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(CheckError::BaseUrl("it must not have a query or fragment".into()));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(CheckError::BaseUrl("it must not carry a user name or password".into()));
    }
    match base.scheme() {
        "https" => {}
        "http" if is_loopback(&base) => {}
        "http" => {
            return Err(CheckError::BaseUrl(
                "plain http is allowed only to loopback (the key would travel unencrypted)".into(),
            ))
        }
        _ => return Err(CheckError::BaseUrl("it must be an https:// URL".into())),
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

fn is_loopback(u: &Url) -> bool {
    let Some(host) = u.host_str() else { return false };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// `host` or `host:port`.
fn service_name(u: &Url) -> String {
    let host = u.host_str().unwrap_or("?");
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(i64::MAX / 2)
}

/// A file or folder id as text (ids may come as numbers).
fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// A client id from a row field (integer, or digits in a string).
fn client_id(v: Option<&Value>) -> Option<ClientId> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The check stops: the reason is already in the report.
struct Halt;

/// Why a call produced no answer to judge.
enum Fail {
    /// Nothing further can be learnt (network, key rejected, rate limited, budget).
    Halt,
    /// This call's answer cannot be judged (a redirect), the next calls can still run.
    Skip,
}

impl From<Halt> for Fail {
    fn from(_: Halt) -> Fail {
        Fail::Halt
    }
}

/// A call's answer.
struct Answer {
    /// The HTTP status.
    status: u16,
    /// The answer's headers.
    headers: HeaderMap,
    /// The body, if kept (listings, error bodies, the marker's bytes).
    body: Vec<u8>,
    /// Bytes received (kept or only counted).
    received: u64,
}

impl Answer {
    fn header(&self, name: reqwest::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Content-Type: …; body: …`.
    fn describe(&self) -> String {
        let ct = match self.header(CONTENT_TYPE) {
            Some(v) => describe_mime(v),
            None => "absent".to_string(),
        };
        format!("Content-Type: {ct}; body: {}", describe_body(&self.body))
    }
}

/// Which key a call carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    /// The account's key.
    Real,
    /// The made-up key of the rejected-key probe.
    Bad,
}

/// Whether to keep the body or only count it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Keep up to [`MAX_KEPT_BODY`] bytes.
    Body,
    /// Count the bytes of a 2xx answer, keep nothing (the account's file contents).
    CountOnly,
}

/// The probe in progress: the client, the budget and pace, and the report so far.
struct Prober<'p> {
    /// No redirects, https only unless loopback.
    http: reqwest::Client,
    /// The API base URL; every request goes to its origin.
    base: Url,
    /// The account's key, marked sensitive.
    key: HeaderValue,
    /// The made-up key.
    bad_key: HeaderValue,
    /// Calls per rolling minute (0: unpaced).
    rate: u32,
    /// When recent calls were sent, for pacing.
    sent: Vec<Instant>,
    /// Where one line per call goes (stderr for the command line).
    progress: &'p mut (dyn FnMut(&str) + Send),
    /// The report being built.
    report: Report,
    /// The folder ids `GET folders` listed, if it could be read.
    folder_ids: Option<BTreeSet<String>>,
}

impl Prober<'_> {
    fn url(&self, path: &str, query: Option<&str>) -> Result<Url, Halt> {
        let mut u = self.base.join(path).map_err(|_| Halt)?;
        u.set_query(query);
        // The key goes to the base URL's origin only.
        if u.origin() != self.base.origin() {
            return Err(Halt);
        }
        Ok(u)
    }

    fn find(&mut self, code: &'static str, severity: Severity, step: &str, observed: String, meaning: &str) {
        self.report.findings.push(Finding {
            code,
            severity,
            step: step.to_string(),
            observed,
            meaning: meaning.to_string(),
        });
    }

    fn stop(&mut self, why: String) -> Halt {
        if self.report.incomplete.is_none() {
            self.report.incomplete = Some(why);
        }
        Halt
    }

    fn observe(&mut self, idx: usize, line: String) {
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
                    wait.as_secs() + 1,
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
    async fn call(
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
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                let text = network_text(&e);
                (self.progress)(&format!("[{n}/{budget}] {request} → network error"));
                self.report.steps[idx].error = Some(text.clone());
                return (idx, Err(self.stop(format!("{request}: {text}")).into()));
            }
        };
        let status = resp.status().as_u16();
        self.report.steps[idx].status = Some(status);
        (self.progress)(&format!("[{n}/{budget}] {request} → {status}"));
        let headers = resp.headers().clone();
        if (300..400).contains(&status) {
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
                &request,
                format!("answered {status} redirecting to {target}"),
                "the service redirects this call: the mount must not follow redirects with the key \
                 (a redirect to another host would receive it), and until it handles this call's \
                 redirect without the key the call fails",
            );
            return (idx, Err(Fail::Skip));
        }
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
                    return (idx, Err(self.stop(format!("{request}: {text}")).into()));
                }
            }
        }
        if keep_body && received > MAX_KEPT_BODY as u64 {
            self.observe(
                idx,
                format!("body of {received} bytes: only the first {MAX_KEPT_BODY} examined"),
            );
        }
        let answer = Answer {
            status,
            headers,
            body,
            received,
        };
        if status == 429 {
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
            return (
                idx,
                Err(self
                    .stop(format!(
                        "rate limited (429) at {request}; not retried: run the check again after a few minutes, \
                         with nothing else using the account"
                    ))
                    .into()),
            );
        }
        if key == KeyUse::Real && (status == 401 || status == 403) {
            self.observe(idx, answer.describe());
            return (
                idx,
                Err(self
                    .stop(format!(
                        "the key was rejected ({status}) at {request}: check the key and the account's IP allow-list"
                    ))
                    .into()),
            );
        }
        if status >= 500 {
            self.observe(idx, answer.describe());
            return (
                idx,
                Err(self
                    .stop(format!("server error ({status}) at {request}; not retried"))
                    .into()),
            );
        }
        (idx, Ok(answer))
    }

    /// A GET with the account key whose 2xx body is a JSON array: the rows, or `None`
    /// (recorded) when the answer is not one.
    fn json_rows(&mut self, idx: usize, a: &Answer) -> Option<Vec<Value>> {
        self.observe(idx, a.describe());
        match serde_json::from_slice::<Value>(&a.body) {
            Ok(Value::Array(rows)) => Some(rows),
            _ => None,
        }
    }

    async fn probe(&mut self, opts: &CheckOptions) -> Result<(), Halt> {
        self.folders().await?;
        let first = self.clients().await?;
        let client = opts.client.or(first);
        let rows = match client {
            Some(c) => self.files(c, opts.client.is_some()).await?,
            None => None,
        };
        if let Some(rows) = &rows {
            self.download_smallest(rows).await?;
        }
        self.unknown_client().await?;
        self.bad_key().await?;
        if opts.write {
            match (opts.client, &rows) {
                (Some(c), Some(rows)) => self.round_trip(c, rows).await?,
                _ => {
                    return Err(self.stop(
                        "the upload round trip did not run: the client's listing before it could not be read".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn folders(&mut self) -> Result<(), Halt> {
        let req = "GET folders".to_string();
        let url = self.url("folders", None)?;
        let rb = self.http.get(url);
        let (idx, r) = self
            .call(req.clone(), "the account's folders", rb, KeyUse::Real, Keep::Body)
            .await;
        let a = match r {
            Ok(a) => a,
            Err(Fail::Skip) => return Ok(()),
            Err(Fail::Halt) => return Err(Halt),
        };
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            self.find(
                "folders-unreadable",
                Severity::Unsafe,
                &req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "the mount lists folders to start and to place files: it would refuse to mount",
            );
            return Ok(());
        };
        let shape = RowsShape::of(&rows, &["Id", "Name"]);
        for l in shape.describe_lines() {
            self.observe(idx, l);
        }
        let id = shape.field("Id");
        if id.count("integer") > 0 && id.count_other_than(&["string", "integer"]) == 0 && id.missing == 0 {
            self.find(
                "folder-id-number",
                Severity::Handled,
                &req,
                format!("folder Id: {}", id.describe()),
                "folder ids come as numbers: the mount must read them as text (row-by-row tolerant parsing)",
            );
        } else if id.count_other_than(&["string"]) > 0 || id.missing > 0 || shape.non_objects > 0 {
            self.find(
                "folder-id-unreadable",
                Severity::Degraded,
                &req,
                format!("folder Id: {}", id.describe()),
                "folders without a readable Id cannot be shown: their files appear nowhere or at the top level",
            );
        }
        let name = shape.field("Name");
        if name.count_other_than(&["string"]) > 0 || name.missing > 0 {
            self.find(
                "folder-name-unreadable",
                Severity::Degraded,
                &req,
                format!("folder Name: {}", name.describe()),
                "folders without a Name string cannot be shown under their name",
            );
        }
        self.folder_ids = Some(
            rows.iter()
                .filter_map(|r| id_text(r.get("Id")))
                .collect::<BTreeSet<String>>(),
        );
        Ok(())
    }

    /// `GET clients` page 1 with the profile: the first client's id, if any.
    async fn clients(&mut self) -> Result<Option<ClientId>, Halt> {
        let req = "GET clients?includeProfile=true&page=1".to_string();
        let url = self.url("clients", Some("includeProfile=true&page=1"))?;
        let rb = self.http.get(url);
        let (idx, r) = self
            .call(req.clone(), "the first page of clients", rb, KeyUse::Real, Keep::Body)
            .await;
        let a = match r {
            Ok(a) => a,
            Err(Fail::Skip) => return Ok(None),
            Err(Fail::Halt) => return Err(Halt),
        };
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            self.find(
                "clients-unreadable",
                Severity::Degraded,
                &req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "`ls clients/` fails, and clients without files cannot be opened; paths of clients \
                 with files still work",
            );
            return Ok(None);
        };
        let shape = RowsShape::of(&rows, &["ClientId", "ClientNumber", "Name", "FirstName", "LastName"]);
        for l in shape.describe_lines() {
            self.observe(idx, l);
        }
        let cid = shape.field("ClientId");
        let num = shape.field("ClientNumber");
        if rows.is_empty() {
            self.observe(idx, "no clients on the first page".into());
        } else if cid.count("integer") == rows.len() {
            // As the contract says.
        } else if cid.missing == rows.len() && num.count("integer") + num.count("string") == rows.len() {
            self.find(
                "client-rows-short-form",
                Severity::Degraded,
                &req,
                format!(
                    "rows carry ClientNumber ({}) and no ClientId, although includeProfile=true was sent",
                    num.describe()
                ),
                "the service ignores includeProfile=true: the mount must take the id from ClientNumber, \
                 else `ls clients/` fails and clients without files cannot be opened",
            );
        } else if cid.count_other_than(&["integer", "string"]) == 0 && cid.missing == 0 {
            self.find(
                "client-id-string",
                Severity::Handled,
                &req,
                format!("ClientId: {}", cid.describe()),
                "client ids come as strings: the mount must parse them as numbers (tolerant parsing)",
            );
        } else {
            self.find(
                "client-id-unreadable",
                Severity::Degraded,
                &req,
                format!("ClientId: {}; ClientNumber: {}", cid.describe(), num.describe()),
                "some clients have no readable id: they are missing from `ls clients/`",
            );
        }
        Ok(rows
            .iter()
            .find_map(|r| client_id(r.get("ClientId")).or_else(|| client_id(r.get("ClientNumber")))))
    }

    /// `GET files?clientId=c`: the rows, judged against the contract.
    async fn files(&mut self, c: ClientId, named: bool) -> Result<Option<Vec<Value>>, Halt> {
        let req = format!("GET files?clientId={c}");
        let purpose = if named {
            "the files of the client named with --client"
        } else {
            "the files of the first client listed"
        };
        let url = self.url("files", Some(&format!("clientId={c}")))?;
        let rb = self.http.get(url);
        let (idx, r) = self.call(req.clone(), purpose, rb, KeyUse::Real, Keep::Body).await;
        let a = match r {
            Ok(a) => a,
            Err(Fail::Skip) => return Ok(None),
            Err(Fail::Halt) => return Err(Halt),
        };
        if a.status == 404 && named {
            self.observe(idx, a.describe());
            return Err(self.stop(format!(
                "client {c} was not found (404): check the id given with --client"
            )));
        }
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            self.find(
                "files-unreadable",
                Severity::Unsafe,
                &req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "the mount cannot list a client's files, nor confirm its uploads",
            );
            return Ok(None);
        };
        self.judge_file_rows(idx, &req, &rows);
        if rows.is_empty() {
            self.observe(
                idx,
                "the client has no files: the download is not probed (name a client with files with --client)".into(),
            );
        }
        Ok(Some(rows))
    }

    fn judge_file_rows(&mut self, idx: usize, req: &str, rows: &[Value]) {
        let shape = RowsShape::of(
            rows,
            &["Id", "DateCreated", "Size", "FileName", "ContentType", "FolderId"],
        );
        for l in shape.describe_lines() {
            self.observe(idx, l);
        }
        if shape.non_objects > 0 {
            self.find(
                "file-row-not-object",
                Severity::Unsafe,
                req,
                format!("{} of {} rows are not objects", shape.non_objects, shape.rows),
                "files listed that way are invisible to the mount, which then cannot confirm uploads",
            );
        }
        let id = shape.field("Id");
        if id.missing > 0 || id.count_other_than(&["string", "integer"]) > 0 {
            self.find(
                "file-id-unreadable",
                Severity::Unsafe,
                req,
                format!("Id: {}", id.describe()),
                "files without a readable Id cannot be read or deleted, and uploads cannot be confirmed",
            );
        } else if id.count("integer") > 0 {
            self.find(
                "file-id-number",
                Severity::Handled,
                req,
                format!("Id: {}", id.describe()),
                "file ids come as numbers: the mount must read them as text (tolerant parsing)",
            );
        }
        let name = shape.field("FileName");
        if name.missing > 0 || name.count_other_than(&["string"]) > 0 {
            self.find(
                "file-name-unreadable",
                Severity::Unsafe,
                req,
                format!("FileName: {}", name.describe()),
                "the mount finds its uploads by name: without FileName it cannot confirm or overwrite safely",
            );
        }
        let size = shape.field("Size");
        if size.missing > 0 || size.count_other_than(&["integer"]) > 0 {
            self.find(
                "file-size-unreadable",
                Severity::Unsafe,
                req,
                format!("Size: {}", size.describe()),
                "the mount checks every download against Size: files without an integer Size cannot be read",
            );
        }
        let date = shape.field("DateCreated");
        if date.missing > 0 || date.count_other_than(&["integer", "float"]) > 0 {
            self.find(
                "date-unreadable",
                Severity::Unsafe,
                req,
                format!("DateCreated: {}", date.describe()),
                "the mount picks the newest same-named file by DateCreated to confirm an upload; \
                 without it an overwrite could delete the wrong copy",
            );
        } else if date.count("float") > 0 {
            self.find(
                "date-float",
                Severity::Handled,
                req,
                format!("DateCreated: {}", date.describe()),
                "dates come with a fraction: the mount must round them (tolerant parsing)",
            );
        }
        let (mut secs, mut odd) = (0usize, 0usize);
        let now = now_ms();
        for v in rows
            .iter()
            .filter_map(|r| r.get("DateCreated"))
            .filter_map(Value::as_f64)
        {
            let v = v as i64;
            let ms_ok = (Y2000_SECS * 1000..=now + 2 * 86_400_000).contains(&v);
            let s_ok = (Y2000_SECS..=now / 1000 + 2 * 86_400).contains(&v);
            if s_ok {
                secs += 1;
            } else if !ms_ok {
                odd += 1;
            }
        }
        if secs > 0 {
            self.find(
                "date-seconds",
                Severity::Degraded,
                req,
                format!("DateCreated of {secs} row(s) reads as Unix seconds, not milliseconds"),
                "file times show as January 1970, and uploads within one second cannot be told apart by date",
            );
        }
        if odd > 0 {
            self.find(
                "date-out-of-range",
                Severity::Degraded,
                req,
                format!("DateCreated of {odd} row(s) is neither milliseconds nor seconds since 1970 after 2000"),
                "file times are shown wrong",
            );
        }
        let ct = shape.field("ContentType");
        if ct.missing > 0 || ct.count_other_than(&["string"]) > 0 {
            self.find(
                "content-type-missing",
                Severity::Handled,
                req,
                format!("ContentType: {}", ct.describe()),
                "the mount does not need ContentType (it only shows it nowhere); nothing to change",
            );
        }
        let folder = shape.field("FolderId");
        if folder.missing > 0 || folder.count_other_than(&["string", "null", "integer"]) > 0 {
            self.find(
                "folder-id-absent",
                Severity::Degraded,
                req,
                format!("FolderId: {}", folder.describe()),
                "files in folders show at the client's top level instead of in their folder",
            );
        } else if folder.count("integer") > 0 {
            self.find(
                "file-folder-id-number",
                Severity::Handled,
                req,
                format!("FolderId: {}", folder.describe()),
                "folder ids in file rows come as numbers: the mount must read them as text",
            );
        }
        if let Some(known) = &self.folder_ids {
            let unknown = rows
                .iter()
                .filter_map(|r| id_text(r.get("FolderId")))
                .filter(|f| !known.contains(f))
                .count();
            if unknown > 0 {
                // The mount shows such files in a `_folder-<id>` directory.
                self.observe(
                    idx,
                    format!("{unknown} row(s) name a FolderId that GET folders did not list"),
                );
            }
        }
    }

    /// `GET files/<id>` of the smallest listed file that is not empty (an empty body
    /// proves little about `Size`): bytes counted, never kept.
    async fn download_smallest(&mut self, rows: &[Value]) -> Result<(), Halt> {
        let smallest = rows
            .iter()
            .filter_map(|r| Some((id_text(r.get("Id"))?, r.get("Size")?.as_u64()?, r)))
            .min_by_key(|(_, size, _)| (*size == 0, *size));
        let Some((id, size, row)) = smallest else {
            return Ok(());
        };
        let listed_ct = row.get("ContentType").and_then(Value::as_str).map(str::to_string);
        let listed_name = row.get("FileName").and_then(Value::as_str).map(str::to_string);
        let req = "GET files/<id of the smallest file>".to_string();
        let url = self.url(&file_path(&id), None)?;
        let rb = self.http.get(url);
        let (idx, r) = self
            .call(
                req.clone(),
                "one download: the smallest file's bytes are counted and discarded",
                rb,
                KeyUse::Real,
                Keep::CountOnly,
            )
            .await;
        let a = match r {
            Ok(a) => a,
            Err(Fail::Skip) => return Ok(()),
            Err(Fail::Halt) => return Err(Halt),
        };
        self.observe(idx, format!("file id: {}", describe_string(&id)));
        if !a.is_success() {
            self.observe(idx, a.describe());
            self.find(
                "download-failed",
                Severity::Unsafe,
                &req,
                format!(
                    "a file just listed answered {} with {}",
                    a.status,
                    describe_body(&a.body)
                ),
                "listed files cannot be read",
            );
            return Ok(());
        }
        self.describe_download(idx, &a, listed_ct.as_deref(), listed_name.as_deref());
        self.observe(idx, format!("received {} bytes; listed Size {size}", a.received));
        if a.received != size {
            self.find(
                "size-mismatch",
                Severity::Unsafe,
                &req,
                format!("the body has {} bytes, the listing's Size says {size}", a.received),
                "the mount checks every download against Size: such files fail to read (EIO) and show the \
                 wrong size",
            );
        }
        Ok(())
    }

    /// Observations on a download's headers.
    fn describe_download(&mut self, idx: usize, a: &Answer, listed_ct: Option<&str>, listed_name: Option<&str>) {
        let ct = match a.header(CONTENT_TYPE) {
            Some(v) => {
                let same = listed_ct.is_some_and(|l| l.eq_ignore_ascii_case(v.split(';').next().unwrap_or("").trim()));
                format!(
                    "Content-Type: {} ({} the listed ContentType)",
                    describe_mime(v),
                    if same { "same as" } else { "differs from" }
                )
            }
            None => "Content-Type: absent".to_string(),
        };
        self.observe(idx, ct);
        let cd = match a.header(CONTENT_DISPOSITION) {
            Some(v) => {
                let d = shape::parse_disposition(v);
                let same = match (&d.name, listed_name) {
                    (Some(n), Some(l)) => {
                        if n == l {
                            "equals the listed FileName byte for byte"
                        } else {
                            "differs from the listed FileName"
                        }
                    }
                    _ => "carries no name",
                };
                format!("Content-Disposition: {}; its name {same}", d.describe())
            }
            None => "Content-Disposition: absent".to_string(),
        };
        self.observe(idx, cd);
        let cl = match a.header(CONTENT_LENGTH).map(|v| v.trim().parse::<u64>()) {
            Some(Ok(n)) if n == a.received => "Content-Length: equals the bytes received",
            Some(Ok(_)) => "Content-Length: differs from the bytes received",
            Some(Err(_)) => "Content-Length: not a number",
            None => "Content-Length: absent (chunked)",
        };
        self.observe(idx, cl.to_string());
        let ranges = a
            .headers
            .get("accept-ranges")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                if v.trim().eq_ignore_ascii_case("bytes") {
                    "bytes"
                } else {
                    "other"
                }
            })
            .unwrap_or("absent");
        self.observe(idx, format!("Accept-Ranges: {ranges}"));
    }

    /// `GET files?clientId=<an id no account has>`: `[]` or 404?
    async fn unknown_client(&mut self) -> Result<(), Halt> {
        let req = format!("GET files?clientId={UNKNOWN_CLIENT}");
        let url = self.url("files", Some(&format!("clientId={UNKNOWN_CLIENT}")))?;
        let rb = self.http.get(url);
        let (idx, r) = self
            .call(
                req.clone(),
                "a client id that does not exist",
                rb,
                KeyUse::Real,
                Keep::Body,
            )
            .await;
        let a = match r {
            Ok(a) => a,
            Err(Fail::Skip) => return Ok(()),
            Err(Fail::Halt) => return Err(Halt),
        };
        self.observe(idx, a.describe());
        match a.status {
            200 => {
                if !matches!(serde_json::from_slice::<Value>(&a.body), Ok(Value::Array(ref v)) if v.is_empty()) {
                    self.observe(idx, "(this id has files in the account; nothing to conclude)".into());
                }
            }
            404 => self.find(
                "unknown-client-404",
                Severity::Handled,
                &req,
                format!("answered 404 with {}, not []", describe_body(&a.body)),
                "unknown client answers 404 not []: the mount takes 404 as \"no such client\" and can skip \
                 the client search it makes after an empty listing",
            ),
            s => self.find(
                "unknown-client-status",
                Severity::Degraded,
                &req,
                format!("answered {s} with {}", describe_body(&a.body)),
                "opening a client id that does not exist fails with an I/O error instead of \"no such file\"",
            ),
        }
        Ok(())
    }

    /// `GET folders` with a made-up key: the rejected-key answer's shape.
    async fn bad_key(&mut self) -> Result<(), Halt> {
        let req = "GET folders (made-up key)".to_string();
        let url = self.url("folders", None)?;
        let rb = self.http.get(url);
        let (idx, r) = self
            .call(
                req.clone(),
                "what a rejected key looks like",
                rb,
                KeyUse::Bad,
                Keep::Body,
            )
            .await;
        let a = match r {
            Ok(a) => a,
            Err(Fail::Skip) => return Ok(()),
            Err(Fail::Halt) => return Err(Halt),
        };
        self.observe(idx, a.describe());
        let body = serde_json::from_slice::<Value>(&a.body).ok();
        let has_message = body
            .as_ref()
            .and_then(|b| b.get("Message"))
            .is_some_and(Value::is_string);
        match a.status {
            401 if has_message => {}
            401 if a.body.is_empty() => self.find(
                "unauthorized-empty-body",
                Severity::Handled,
                &req,
                format!("401 with an empty body ({})", a.describe()),
                "a rejected key answers 401 with an empty body: the mount reports it from the status alone \
                 (no service message to show)",
            ),
            401 => self.find(
                "unauthorized-body-other",
                Severity::Handled,
                &req,
                format!("401 with {}", describe_body(&a.body)),
                "a rejected key's answer has no {\"Message\"}: the mount reports it from the status alone",
            ),
            403 => self.find(
                "unauthorized-403",
                Severity::Handled,
                &req,
                format!("403 with {}", describe_body(&a.body)),
                "a rejected key answers 403, not 401: the mount treats both as a rejected key",
            ),
            s if (200..300).contains(&s) => self.find(
                "bad-key-accepted",
                Severity::Unsafe,
                &req,
                format!("a made-up key was answered {s}"),
                "the service did not check the key: the answers above may not be this account's",
            ),
            s => self.find(
                "bad-key-status",
                Severity::Degraded,
                &req,
                format!("a made-up key was answered {s} with {}", describe_body(&a.body)),
                "a rejected key is not recognised as such: mounting with a wrong key fails with a vague error",
            ),
        }
        Ok(())
    }

    /// Upload a marker, list, download, compare, delete, list: only in client `c`, and
    /// only the file whose id was not listed before.
    async fn round_trip(&mut self, c: ClientId, before: &[Value]) -> Result<(), Halt> {
        let ids_before: BTreeSet<String> = before.iter().filter_map(|r| id_text(r.get("Id"))).collect();
        let marker = escape_exact(MARKER_NAME);
        let req = format!("POST files/{c}");
        let part = reqwest::multipart::Part::bytes(MARKER_BYTES)
            .file_name(MARKER_NAME)
            .mime_str(MARKER_CONTENT_TYPE)
            .map_err(|_| Halt)?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let url = self.url(&format!("files/{c}"), None)?;
        let rb = self.http.post(url).multipart(form);
        self.report.leftover = Some(format!(
            "the check may have left its marker file \"{marker}\" in client {c}: delete it in IntakeQ"
        ));
        let (idx, r) = self
            .call(
                req.clone(),
                "upload the marker file (multipart part `file`, as the mount sends it)",
                rb,
                KeyUse::Real,
                Keep::Body,
            )
            .await;
        let upload = match r {
            Ok(a) => Some(a),
            Err(Fail::Skip) => None,
            Err(Fail::Halt) => return Err(Halt),
        };
        self.observe(
            idx,
            format!(
                "sent: name \"{marker}\" ({} bytes of UTF-8), {} bytes, {MARKER_CONTENT_TYPE}",
                MARKER_NAME.len(),
                MARKER_BYTES.len()
            ),
        );
        let mut answered_id = None;
        let mut accepted = false;
        if let Some(a) = &upload {
            self.observe(idx, a.describe());
            accepted = a.is_success();
            let body = serde_json::from_slice::<Value>(&a.body).ok();
            answered_id = body.as_ref().and_then(|b| id_text(b.get("Id")));
            if !accepted {
                self.find(
                    "upload-rejected",
                    Severity::Degraded,
                    &req,
                    format!("answered {} with {}", a.status, describe_body(&a.body)),
                    "the service refused a name with quotes and non-ASCII letters: the mount's uploads of \
                     such names fail at close() (the data stays in the spool, nothing is lost)",
                );
            } else if a.body.is_empty() {
                // As the contract says.
            } else if answered_id.is_some() && body.as_ref().and_then(Value::as_object).is_some_and(|o| o.len() == 1) {
                self.find(
                    "upload-answer-id",
                    Severity::Handled,
                    &req,
                    format!("answered {} with {}", a.status, describe_body(&a.body)),
                    "uploads answer {Id}: confirmation listings can be skipped",
                );
            } else {
                self.find(
                    "upload-answer-other",
                    Severity::Handled,
                    &req,
                    format!("answered {} with {}", a.status, describe_body(&a.body)),
                    "the upload answer has a body other than {Id}: the mount ignores it and confirms by listing",
                );
            }
        }

        // List: which file is new?
        let list_req = format!("GET files?clientId={c} (after the upload)");
        let url = self.url("files", Some(&format!("clientId={c}")))?;
        let rb = self.http.get(url);
        let (idx, r) = self
            .call(
                list_req.clone(),
                "find the marker file: the id not listed before",
                rb,
                KeyUse::Real,
                Keep::Body,
            )
            .await;
        let a = match r {
            Ok(a) => a,
            Err(_) => return Err(self.stop(format!("{list_req}: no answer to judge"))),
        };
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            return Err(self.stop(format!("{list_req}: the listing could not be read")));
        };
        let new: Vec<&Value> = rows
            .iter()
            .filter(|r| id_text(r.get("Id")).is_some_and(|id| !ids_before.contains(&id)))
            .collect();
        self.observe(idx, format!("{} row(s), {} not listed before", rows.len(), new.len()));
        let name_of = |r: &Value| r.get("FileName").and_then(Value::as_str).map(str::to_string);
        let own: Option<&Value> = if let Some(aid) = &answered_id {
            new.iter().copied().find(|r| id_text(r.get("Id")).as_ref() == Some(aid))
        } else {
            None
        }
        .or_else(|| {
            let exact: Vec<&Value> = new
                .iter()
                .copied()
                .filter(|r| name_of(r).as_deref() == Some(MARKER_NAME))
                .collect();
            if exact.len() == 1 {
                return exact.first().copied();
            }
            // A name changed by the service: only if it is the one new file and still
            // recognisably the marker.
            match new.as_slice() {
                [one] if name_of(one).is_some_and(|n| n.contains("intakeq-fs")) => Some(*one),
                _ => None,
            }
        });
        let Some(own) = own else {
            if new.is_empty() {
                if accepted {
                    self.report.leftover = None;
                    self.find(
                        "upload-not-listed",
                        Severity::Unsafe,
                        &req,
                        "the upload was answered with success but no new file is listed".into(),
                        "the mount cannot confirm its uploads: close() would fail or upload again",
                    );
                    return Err(
                        self.stop("the uploaded marker file is not listed: nothing to download or delete".into())
                    );
                }
                self.report.leftover = None;
                self.observe(idx, "nothing was stored".into());
                return Ok(());
            }
            return Err(self.stop(format!(
                "{} new file(s) appeared and none is recognisably the marker (someone else may be uploading to \
                 client {c}): the check deleted nothing",
                new.len()
            )));
        };
        let Some(own_id) = id_text(own.get("Id")) else {
            return Err(self.stop("the marker file has no readable Id".into()));
        };
        self.report.leftover = Some(format!(
            "the check's marker file (id {own_id}) is still in client {c}: delete it in IntakeQ"
        ));
        self.observe(idx, format!("marker file id: {own_id}"));
        if answered_id.as_ref().is_some_and(|aid| *aid != own_id) {
            self.observe(idx, "the id the upload answered differs from the listed one".into());
        }
        let stored_name = name_of(own);
        match stored_name.as_deref() {
            Some(n) if n == MARKER_NAME => self.observe(idx, "stored FileName: byte-exact as sent".into()),
            Some(n) => {
                let shown = escape_exact(n);
                self.observe(idx, format!("stored FileName: \"{shown}\""));
                self.find(
                    "stored-name-differs",
                    Severity::Unsafe,
                    &list_req,
                    format!("sent \"{marker}\", stored \"{shown}\""),
                    "the mount finds its uploads by their exact name: such names are not confirmed (close() \
                     fails or uploads again) and show under a different name",
                );
            }
            None => {}
        }
        let stored_size = own.get("Size").and_then(Value::as_u64);
        self.observe(
            idx,
            format!(
                "stored Size: {}; FolderId: {}; ContentType: {}",
                stored_size
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unreadable".into()),
                own.get("FolderId").map(shape::kind).unwrap_or("absent"),
                own.get("ContentType")
                    .and_then(Value::as_str)
                    .map(describe_mime)
                    .unwrap_or_else(|| "absent".into())
            ),
        );
        if stored_size.is_some_and(|s| s != MARKER_BYTES.len() as u64) {
            self.find(
                "stored-size-differs",
                Severity::Unsafe,
                &list_req,
                format!(
                    "sent {} bytes, listed Size {}",
                    MARKER_BYTES.len(),
                    stored_size.unwrap_or(0)
                ),
                "sizes of uploaded files are wrong: reading them back fails (EIO)",
            );
        }
        if own.get("FolderId").is_some_and(|f| !f.is_null()) {
            self.find(
                "upload-in-folder",
                Severity::Degraded,
                &list_req,
                "the uploaded file landed in a folder".into(),
                "files written to a client's directory move into a folder directory after upload",
            );
        }

        // Download and compare.
        let dl_req = format!("GET files/{own_id}");
        let url = self.url(&file_path(&own_id), None)?;
        let rb = self.http.get(url);
        let (idx, r) = self
            .call(
                dl_req.clone(),
                "download the marker file and compare",
                rb,
                KeyUse::Real,
                Keep::Body,
            )
            .await;
        match r {
            Ok(a) if a.is_success() => {
                let listed_ct = own.get("ContentType").and_then(Value::as_str);
                self.describe_download(idx, &a, listed_ct, stored_name.as_deref());
                if a.body == MARKER_BYTES {
                    self.observe(idx, "bytes: identical to the ones sent".into());
                } else {
                    self.observe(
                        idx,
                        format!("bytes: {} received, differ from the ones sent", a.received),
                    );
                    self.find(
                        "stored-bytes-differ",
                        Severity::Unsafe,
                        &dl_req,
                        format!(
                            "sent {} bytes, got back {} different bytes",
                            MARKER_BYTES.len(),
                            a.received
                        ),
                        "the service changes file contents: files written through the mount come back different",
                    );
                }
            }
            Ok(a) => {
                self.observe(idx, a.describe());
                self.find(
                    "download-failed",
                    Severity::Unsafe,
                    &dl_req,
                    format!("the marker file just listed answered {}", a.status),
                    "uploaded files cannot be read back",
                );
            }
            Err(Fail::Skip) => {}
            Err(Fail::Halt) => return Err(Halt),
        }

        // Delete our file, and only it.
        let del_req = format!("DELETE files/{own_id}");
        let url = self.url(&file_path(&own_id), None)?;
        let rb = self.http.delete(url);
        let (idx, r) = self
            .call(
                del_req.clone(),
                "delete the marker file (its own id only)",
                rb,
                KeyUse::Real,
                Keep::Body,
            )
            .await;
        match r {
            Ok(a) => {
                self.observe(idx, a.describe());
                if !a.is_success() {
                    self.find(
                        "delete-failed",
                        Severity::Unsafe,
                        &del_req,
                        format!("answered {} with {}", a.status, describe_body(&a.body)),
                        "the mount cannot delete files: rm fails and an overwrite leaves the old copy",
                    );
                }
            }
            Err(Fail::Skip) => {}
            Err(Fail::Halt) => return Err(Halt),
        }

        // List again: gone? The others untouched?
        let req = format!("GET files?clientId={c} (after the delete)");
        let url = self.url("files", Some(&format!("clientId={c}")))?;
        let rb = self.http.get(url);
        let (idx, r) = self
            .call(
                req.clone(),
                "confirm the marker is gone and nothing else changed",
                rb,
                KeyUse::Real,
                Keep::Body,
            )
            .await;
        let a = match r {
            Ok(a) => a,
            Err(_) => return Err(self.stop(format!("{req}: no answer to judge"))),
        };
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            return Err(self.stop(format!("{req}: the listing could not be read")));
        };
        let ids_after: BTreeSet<String> = rows.iter().filter_map(|r| id_text(r.get("Id"))).collect();
        if ids_after.contains(&own_id) {
            self.observe(idx, "the marker file is still listed".into());
            self.find(
                "delete-not-effective",
                Severity::Unsafe,
                &req,
                "the deleted file is still listed".into(),
                "deletes do not take effect (or not at once): rm and overwrite leave files behind",
            );
        } else {
            self.observe(idx, "the marker file is gone".into());
            self.report.leftover = None;
        }
        let lost = ids_before.difference(&ids_after).count();
        if lost == 0 {
            self.observe(idx, "every file listed before the check is still listed".into());
        } else {
            self.observe(
                idx,
                format!(
                    "{lost} file(s) listed before the check are gone: someone else changed this client meanwhile \
                     (the check deleted only its marker, id {own_id})"
                ),
            );
        }
        Ok(())
    }
}

/// `files/<id>`, the id percent-encoded as one path segment.
fn file_path(id: &str) -> String {
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

    #[test]
    fn base_url_allows_plain_http_only_to_loopback() {
        assert!(parse_base("https://intakeq.com/api/v1").is_ok());
        assert_eq!(
            parse_base("https://intakeq.com/api/v1").unwrap().as_str(),
            "https://intakeq.com/api/v1/"
        );
        assert!(parse_base("http://127.0.0.1:8080/api/v1/").is_ok());
        assert!(parse_base("http://localhost:8080/api/v1/").is_ok());
        assert!(parse_base("http://[::1]:8080/api/v1/").is_ok());
        assert!(matches!(
            parse_base("http://intakeq.com/api/v1/"),
            Err(CheckError::BaseUrl(_))
        ));
        assert!(matches!(parse_base("ftp://intakeq.com/"), Err(CheckError::BaseUrl(_))));
        assert!(matches!(
            parse_base("https://u:p@intakeq.com/"),
            Err(CheckError::BaseUrl(_))
        ));
        assert!(matches!(
            parse_base("https://intakeq.com/?x=1"),
            Err(CheckError::BaseUrl(_))
        ));
    }

    #[test]
    fn file_ids_stay_one_segment_at_the_base_origin() {
        assert_eq!(file_path("a/../../b?c"), "files/a%2F..%2F..%2Fb%3Fc");
        let base = parse_base("https://intakeq.com/api/v1/").unwrap();
        let u = base.join(&file_path("//evil.example/x")).unwrap();
        assert_eq!(u.origin(), base.origin());
    }

    #[test]
    fn marker_name_exercises_quotes_and_non_ascii() {
        assert!(MARKER_NAME.contains('"'));
        assert!(!MARKER_NAME.is_ascii());
        assert!(MARKER_NAME.starts_with("intakeq-fs check"));
        assert_eq!(budget(false), 6);
        assert_eq!(budget(true), 11);
    }
}
