//! The `intakeq-fs` command line: `mount`, `demo`, `mock-server` and `check`. Reads the API key
//! from the environment or a file (never from argv), sets up logging, goes to the
//! background when asked, and wires the HTTP remote, the core and the FUSE session.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use intakeq_fs::check;
use intakeq_fs::core::{Core, Options};
use intakeq_fs::daemon::{self, Readiness};
use intakeq_fs::fake;
use intakeq_fs::limiter::Limiter;
use intakeq_fs::mount::{serve, MountConfig};
use intakeq_fs::remote::http::{HttpOptions, HttpRemote};

const DEFAULT_BASE_URL: &str = "https://intakeq.com/api/v1/";

#[derive(Parser)]
#[command(
    name = "intakeq-fs",
    version,
    about = "Mount an IntakeQ account's client files as a drive"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount an IntakeQ account. The API key comes from INTAKEQ_API_KEY or --api-key-file.
    Mount(MountArgs),
    /// Start a fake IntakeQ with sample data and mount it in the foreground (Ctrl-C unmounts).
    Demo(DemoArgs),
    /// Run the fake IntakeQ server alone and print its base URL.
    MockServer(MockArgs),
    /// Probe the API (read-only, at most 6 calls; --write --client ID adds an upload round
    /// trip) and report how it differs from the contract. Exit 0 safe, 1 unsafe, 2 error.
    Check(check::CheckArgs),
}

#[derive(Args, Clone)]
struct CommonMount {
    /// Stay attached until unmounted (default: return once the mount is ready).
    #[arg(long)]
    foreground: bool,
    /// Refuse every change with EROFS.
    #[arg(long)]
    read_only: bool,
    /// Let other users see the mount (needs user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
    /// How long a listing is trusted, in seconds.
    #[arg(long, default_value_t = 60)]
    metadata_ttl: u64,
    /// How long the client list (/clients, /by-name) is served before it is refreshed in
    /// the background, in seconds (21 calls per refresh for 2,000 clients).
    #[arg(long, default_value_t = 4 * 3600)]
    client_list_ttl: u64,
    /// Share of the daily limit, in percent, that only reading, uploads, deletes and
    /// renames may spend: listings and previews are refused once only this is left.
    #[arg(long, default_value_t = intakeq_fs::limiter::DEFAULT_RESERVE_PERCENT, value_parser = clap::value_parser!(u32).range(0..=100))]
    reserve_percent: u32,
    /// Refuse reads by thumbnailers (tumblerd, *thumbnailer*) with EACCES instead of
    /// downloading for them; file managers' own reads still work, below everything else.
    #[arg(long)]
    no_previews: bool,
    /// Private directory (0700) where listings are kept across mounts
    /// (default $XDG_STATE_HOME/intakeq-fs/listings/<account>).
    #[arg(long)]
    listings_dir: Option<PathBuf>,
    /// Memory budget of the content cache, in MiB.
    #[arg(long, default_value_t = 256)]
    cache_size: u64,
    /// API requests per minute this mount allows itself.
    #[arg(long, default_value_t = 10)]
    rate_limit: u32,
    /// API requests per rolling 24 hours this mount allows itself.
    #[arg(long, default_value_t = 500)]
    daily_limit: u32,
    /// Longest a request may wait for the rate limiter before failing with EAGAIN, seconds.
    #[arg(long, default_value_t = 120)]
    max_wait: u64,
    /// Where written data waits for upload (default $XDG_STATE_HOME/intakeq-fs/spool).
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Private directory for downloads too large for the memory cache.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Disk budget for those downloads once nobody reads them, in MiB (emptied at exit).
    #[arg(long, default_value_t = 1024)]
    disk_cache_size: u64,
    /// Log file (default: stderr in the foreground, $XDG_STATE_HOME/intakeq-fs/intakeq-fs.log otherwise).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// How long unmount waits for running uploads, seconds.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// Seconds between retries of uploads that failed at close().
    #[arg(long, default_value_t = 30, hide = true)]
    retry_interval: u64,
    /// FUSE session threads.
    #[arg(long, default_value_t = 2, hide = true)]
    fuse_threads: usize,
}

#[derive(Args)]
struct MountArgs {
    mountpoint: PathBuf,
    /// API base URL [env: INTAKEQ_BASE_URL].
    #[arg(long)]
    base_url: Option<String>,
    /// Read the API key from the first line of this file (instead of INTAKEQ_API_KEY).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    #[command(flatten)]
    common: CommonMount,
}

#[derive(Args)]
struct DemoArgs {
    mountpoint: PathBuf,
    /// The demo's own fake server has no real limit; 600/min keeps browsing snappy.
    #[arg(long, default_value_t = 600)]
    rate_limit: u32,
}

#[derive(Args)]
struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The key the fake accepts (a fake key, so argv is fine). Default: INTAKEQ_API_KEY or "demo-key".
    #[arg(long)]
    api_key: Option<String>,
    /// Load the demo data set.
    #[arg(long)]
    demo: bool,
    /// Answer shapes where the contract is unconfirmed: `contract` (the likely ones) or
    /// `alt` (the plausible alternatives; see src/fake/profile.rs).
    #[arg(long, value_enum, default_value_t = fake::profile::Profile::Contract)]
    profile: fake::profile::Profile,
}

fn main() -> ExitCode {
    limit_malloc_retention();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Mount(a) => cmd_mount(a),
        Cmd::Demo(a) => cmd_demo(a),
        Cmd::MockServer(a) => cmd_mock(a),
        Cmd::Check(a) => return cmd_check(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("intakeq-fs: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Cache buffers of several MiB come and go; glibc's default keeps freed ones that size
/// in the heap, so RSS drifts above the cache budget. Serving allocations above 4 MiB
/// from mmap returns them to the system on free, while read buffers (at most 1 MiB)
/// stay on the heap (docs/BENCHMARKS.md, peak RSS rows).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_retention() {
    // SAFETY: runs first in main, before any thread exists; it only sets a malloc
    // tuning parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        // Fixing the mmap threshold also fixes the trim threshold at 128 KiB, which
        // would hand every freed read buffer back and fault it in again.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_retention() {}

fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("intakeq-fs");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/intakeq-fs"),
        None => std::env::temp_dir().join(format!("intakeq-fs-{}", unsafe { libc::getuid() })),
    }
}

fn init_logging(file: Option<&Path>) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INTAKEQ_FS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// The API key: INTAKEQ_API_KEY, or the first line of --api-key-file. Removed from
/// our environment once read so no child process inherits it.
fn read_key(file: Option<&Path>) -> Result<String, String> {
    let key = match file {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("cannot read API key file {}: {e}", p.display()))?;
            text.lines().next().unwrap_or("").trim().to_string()
        }
        None => std::env::var("INTAKEQ_API_KEY").unwrap_or_default().trim().to_string(),
    };
    // SAFETY (edition 2021: safe fn): called before any thread is started.
    std::env::remove_var("INTAKEQ_API_KEY");
    if key.is_empty() {
        return Err("no API key: set INTAKEQ_API_KEY or pass --api-key-file FILE".into());
    }
    Ok(key)
}

/// `check`: the key is read as for `mount`; the check owns everything else.
fn cmd_check(a: check::CheckArgs) -> ExitCode {
    match read_key(a.api_key_file.as_deref()) {
        Ok(key) => check::run_cli(a, key, DEFAULT_BASE_URL),
        Err(msg) => {
            eprintln!("intakeq-fs: {msg}");
            ExitCode::from(check::EXIT_ERROR)
        }
    }
}

fn check_mountpoint(p: &Path) -> Result<(), String> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("mountpoint {} is not a directory", p.display())),
        Err(e) => Err(format!("mountpoint {}: {e}", p.display())),
    }
}

fn cmd_mount(a: MountArgs) -> Result<(), String> {
    let key = read_key(a.api_key_file.as_deref())?;
    check_mountpoint(&a.mountpoint)?;
    let base = a
        .base_url
        .or_else(|| std::env::var("INTAKEQ_BASE_URL").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let mut readiness = if a.common.foreground {
        init_logging(a.common.log_file.as_deref())?;
        Readiness::none()
    } else {
        let log = a
            .common
            .log_file
            .clone()
            .unwrap_or_else(|| state_dir().join("intakeq-fs.log"));
        let r = daemon::daemonize().map_err(|e| format!("cannot go to the background: {e}"))?;
        init_logging(Some(&log))?;
        r
    };
    let result = run_mount(&base, key, &a.mountpoint, &a.common, &mut readiness);
    if let Err(msg) = &result {
        tracing::error!("{msg}");
        readiness.failed(msg);
    }
    result
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("intakeq-io")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn run_mount(
    base: &str,
    key: String,
    mountpoint: &Path,
    c: &CommonMount,
    readiness: &mut Readiness,
) -> Result<(), String> {
    let rt = runtime()?;
    let account = intakeq_fs::core::account_id(base, &key);
    let limiter = Arc::new(
        Limiter::new(c.rate_limit, c.daily_limit, Duration::from_secs(c.max_wait))
            .with_reserve_percent(c.reserve_percent),
    );
    let remote = HttpRemote::new(base, key, limiter, HttpOptions::default()).map_err(|e| format!("{e}"))?;
    let state = state_dir();
    let opts = Options {
        read_only: c.read_only,
        metadata_ttl: Duration::from_secs(c.metadata_ttl),
        cache_bytes: c.cache_size.saturating_mul(1 << 20),
        allow_other: c.allow_other,
        spool_dir: c
            .spool_dir
            .clone()
            .unwrap_or_else(|| state.join("spool").join(&account)),
        cache_dir: c.cache_dir.clone().unwrap_or_else(|| state.join("cache")),
        disk_cache_bytes: c.disk_cache_size.saturating_mul(1 << 20),
        client_list_ttl: Duration::from_secs(c.client_list_ttl),
        state_dir: Some(
            c.listings_dir
                .clone()
                .unwrap_or_else(|| state.join("listings").join(&account)),
        ),
        previews: !c.no_previews,
        account,
    };
    let core = Arc::new(
        Core::new(remote, opts).map_err(|e| format!("cannot prepare the spool, cache or listings directory: {e}"))?,
    );
    rt.block_on(core.check_access())
        .map_err(|e| format!("cannot use the IntakeQ API at {base}: {e}"))?;
    let cfg = MountConfig {
        mountpoint: mountpoint.to_path_buf(),
        read_only: c.read_only,
        allow_other: c.allow_other,
        fuse_threads: c.fuse_threads,
        metadata_ttl: Duration::from_secs(c.metadata_ttl),
        drain_timeout: Duration::from_secs(c.drain_timeout),
        retry_interval: Duration::from_secs(c.retry_interval),
    };
    serve(&rt, core, &cfg, readiness)
}

fn cmd_demo(a: DemoArgs) -> Result<(), String> {
    init_logging(None)?;
    check_mountpoint(&a.mountpoint)?;
    let key = format!("demo-{}", std::process::id());
    // The fake server runs on its own small runtime beside the mount's.
    let server_rt = runtime()?;
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (bound, _task) = server_rt
        .block_on(fake::server::spawn(fake::demo::demo_store(), addr, key.clone()))
        .map_err(|e| format!("cannot start the demo server: {e}"))?;
    let base = fake::server::base_url(bound);
    eprintln!(
        "intakeq-fs demo: fake IntakeQ at {base}; mounting at {} (Ctrl-C to unmount)",
        a.mountpoint.display()
    );
    let tmp = std::env::temp_dir().join(format!("intakeq-fs-demo-{}", std::process::id()));
    let common = CommonMount {
        foreground: true,
        read_only: false,
        allow_other: false,
        metadata_ttl: 60,
        client_list_ttl: 3600,
        reserve_percent: intakeq_fs::limiter::DEFAULT_RESERVE_PERCENT,
        no_previews: false,
        listings_dir: Some(tmp.join("listings")),
        cache_size: 256,
        rate_limit: a.rate_limit,
        daily_limit: u32::MAX,
        max_wait: 120,
        spool_dir: Some(tmp.join("spool")),
        cache_dir: Some(tmp.join("cache")),
        disk_cache_size: 1024,
        retry_interval: 30,
        log_file: None,
        drain_timeout: 10,
        fuse_threads: 2,
    };
    let result = run_mount(&base, key, &a.mountpoint, &common, &mut Readiness::none());
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn cmd_mock(a: MockArgs) -> Result<(), String> {
    init_logging(None)?;
    let key = a
        .api_key
        .or_else(|| std::env::var("INTAKEQ_API_KEY").ok().filter(|k| !k.is_empty()))
        .unwrap_or_else(|| "demo-key".into());
    let store = if a.demo {
        fake::demo::demo_store()
    } else {
        fake::store::Store::new()
    };
    store.set_profile(a.profile);
    let rt = runtime()?;
    rt.block_on(async move {
        let (bound, task) = fake::server::spawn(store, a.listen, key)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
        println!("{}", fake::server::base_url(bound));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = task => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}
