//! `intakeq-fs check`: an opt-in probe of the real service that compares every answer
//! with the API contract (`intakeq-files-api.md`) and reports each deviation with what
//! it means for the mount. Read-only by default; `--write --client ID` adds one upload
//! round trip of a marker file in the named client, and `--chunked` a second one whose
//! upload has no `Content-Length`.
//!
//! The check makes its own raw requests (its own reqwest client, no redirects followed,
//! the key sent only to the base URL's origin, plain http only to loopback) because it
//! must see statuses, headers and bodies exactly as sent, which the mount's tolerant
//! remote layer hides. It spends at most [`budget`] calls, paced, never retries, and
//! never keeps or prints names or file contents.
//!
//! # Layout
//! - `mod.rs`: options, the command line, the base URL rules, [`run`].
//! - `probe.rs`: the raw HTTP (one call within budget and pace, what stops the check).
//! - `read.rs`: the read-only steps and how each answer is judged.
//! - `file_rows.rs`: how the rows of a client's file listing are judged.
//! - `write.rs`: the upload round trip in the named client, one function per step.
//! - [`shape`]: answers described without their data.
//! - [`report`]: findings, severities, exit codes, text and JSON.

mod file_rows;
mod probe;
mod read;
pub mod report;
pub mod shape;
mod write;

use std::process::ExitCode;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::Url;

use probe::Prober;
pub use report::{Finding, Report, Severity, Step, EXIT_ERROR, EXIT_SAFE, EXIT_UNSAFE};

use crate::remote::http::{install_crypto_provider, is_loopback, parse_base_url};
use crate::remote::ClientId;

/// The marker file's name: a double-quoted word (multipart and `Content-Disposition`
/// quoting), precomposed Latin accents (Unicode normalisation) and CJK (UTF-8 beyond
/// Latin-1). It starts with `intakeq-fs check` so a person can tell what it is.
pub const MARKER_NAME: &str = "intakeq-fs check \"quoted\" \u{e9} \u{fc} \u{65e5}\u{672c}.txt";
/// The second marker's name (`--chunked`): plain ASCII, so only the missing length is
/// new in its round trip.
pub const MARKER_NAME_CHUNKED: &str = "intakeq-fs check chunked.txt";
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
/// Calls `--chunked` adds: the same round trip again, its upload without a length.
pub const CHUNKED_CALLS: u32 = 5;
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
    /// `--chunked` without `--write`.
    #[error("--chunked needs --write: it is a second upload round trip")]
    ChunkedNeedsWrite,
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
    /// Add a second round trip whose upload has no `Content-Length` (needs `write`).
    pub chunked: bool,
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
            chunked: false,
            rate_per_minute: DEFAULT_RATE_PER_MINUTE,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// The most calls a check with these options makes.
pub fn budget(write: bool, chunked: bool) -> u32 {
    match (write, chunked) {
        (false, _) => READ_CALLS,
        (true, false) => READ_CALLS + WRITE_CALLS,
        (true, true) => READ_CALLS + WRITE_CALLS + CHUNKED_CALLS,
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
    /// With --write: a second round trip whose upload is sent without Content-Length
    /// (chunked), to learn whether uploads could stream while a file is written (5 more calls).
    #[arg(long, requires = "write")]
    pub chunked: bool,
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
    opts.chunked = args.chunked;
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
    if opts.chunked && !opts.write {
        return Err(CheckError::ChunkedNeedsWrite);
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
    let budget = budget(opts.write, opts.chunked);
    let service = service_name(&base);
    let pace = if opts.rate_per_minute > 0 {
        format!(", paced to at most {} per minute", opts.rate_per_minute)
    } else {
        String::new()
    };
    let mode = match (opts.write, opts.chunked) {
        (false, _) => "read-only",
        (true, false) => "write",
        (true, true) => "write, chunked",
    };
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

/// The base URL by the mount's own rules (`remote::http::base`), plain http only to
/// loopback: the check never has the mount's `--insecure-plain-http`.
fn parse_base(s: &str) -> Result<Url, CheckError> {
    parse_base_url(s, false).map_err(|e| CheckError::BaseUrl(e.to_string()))
}

/// `host` or `host:port`.
fn service_name(u: &Url) -> String {
    let host = u.host_str().unwrap_or("?");
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::probe::file_path;
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
        let base = parse_base("https://intakeq.com/api/v1/").unwrap();
        let u = base.join(&file_path("//evil.example/x")).unwrap();
        assert_eq!(u.origin(), base.origin());
    }

    #[test]
    fn marker_name_exercises_quotes_and_non_ascii() {
        assert!(MARKER_NAME.contains('"'));
        assert!(!MARKER_NAME.is_ascii());
        assert!(MARKER_NAME.starts_with("intakeq-fs check"));
        assert_eq!(budget(false, false), 6);
        assert_eq!(budget(true, false), 11);
        assert_eq!(budget(true, true), 16);
        assert!(MARKER_NAME_CHUNKED.is_ascii() && MARKER_NAME_CHUNKED.starts_with("intakeq-fs check"));
    }
}
