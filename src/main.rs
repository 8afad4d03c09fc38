//! The `intakeq-fs` command line: `mount`, `demo`, `mock-server`, `check`, `status`,
//! `forget`, `key`, `completions` and `man`. Reads the API key (`key.rs`, never from
//! argv), sets up logging, goes to the background when asked, and wires the HTTP
//! remote, the core and the FUSE session.
//! Also decides where local state lives (always private: see `private_dir`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use intakeq_fs::check;
use intakeq_fs::core::{Core, Options};
use intakeq_fs::daemon::{self, Readiness};
use intakeq_fs::fake;
use intakeq_fs::limiter::Limiter;
use intakeq_fs::mount::{serve, MountConfig};
use intakeq_fs::private_dir::{ensure_private_dir, open_given_append, open_private_append, private_subdir};
use intakeq_fs::remote::http::{HttpOptions, HttpRemote};
use intakeq_fs::remote::RemoteError;

mod cli;

use cli::{Cli, Cmd, CommonMount, DemoArgs, MockArgs, MountArgs};

const DEFAULT_BASE_URL: &str = "https://intakeq.com/api/v1/";

fn main() -> ExitCode {
    limit_malloc_retention();
    // `mount -t fuse.intakeq-fs` (fstab) runs us as `intakeq-fs SOURCE DIR -o OPTIONS`.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match intakeq_fs::mount_helper::translate(&args) {
        Some(Ok(ordinary)) => Cli::parse_from(ordinary),
        Some(Err(msg)) => {
            eprintln!("intakeq-fs: {msg}");
            return ExitCode::FAILURE;
        }
        None => Cli::parse(),
    };
    let result = match cli.cmd {
        Cmd::Mount(a) => cmd_mount(*a),
        Cmd::Demo(a) => cmd_demo(a),
        Cmd::MockServer(a) => cmd_mock(a),
        Cmd::Check(a) => return cmd_check(a),
        Cmd::Status(a) => match state_dir() {
            Ok(dir) => return intakeq_fs::status::run_cli(a, &dir),
            Err(e) => Err(e),
        },
        Cmd::Forget(a) => cmd_forget(a),
        Cmd::Completions { shell } => cmd_completions(shell),
        Cmd::Man => cmd_man(),
        Cmd::Key { action } => cmd_key(action),
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

/// The state directory of a root mount with no home (an fstab mount at boot): where
/// a systemd unit's `StateDirectory=intakeq-fs` puts it, on disk, so staged uploads
/// survive a reboot (a run-time directory would not).
const SYSTEM_STATE_DIR: &str = "/var/lib/intakeq-fs";

/// Where the mount keeps its state by default: `$XDG_STATE_HOME/intakeq-fs`, else
/// `~/.local/state/intakeq-fs`, else (no home) for root `$STATE_DIRECTORY` (what
/// systemd's `StateDirectory=` sets) or [`SYSTEM_STATE_DIR`], and for other users
/// `$XDG_RUNTIME_DIR/intakeq-fs` if that directory is private; otherwise there is no
/// private place and the mount refuses to start. Created 0700 and checked
/// (`private_dir`).
fn state_dir() -> Result<PathBuf, String> {
    let dir = default_state_dir(
        |v| std::env::var_os(v).filter(|d| !d.is_empty()).map(PathBuf::from),
        intakeq_fs::private_dir::euid(),
        intakeq_fs::private_dir::runtime_dir,
    )?;
    ensure_private_dir(&dir).map_err(|e| format!("state directory: {e}"))?;
    Ok(dir)
}

/// [`state_dir`]'s choice, from the environment (`var`), the effective uid and the
/// private run-time directory, if any.
fn default_state_dir(
    var: impl Fn(&str) -> Option<PathBuf>,
    euid: u32,
    runtime_dir: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(d) = var("XDG_STATE_HOME") {
        Ok(d.join("intakeq-fs"))
    } else if let Some(h) = var("HOME") {
        Ok(h.join(".local/state/intakeq-fs"))
    } else if euid == 0 {
        // systemd may list several directories, separated by ':'; the first is ours.
        let given = var("STATE_DIRECTORY")
            .and_then(|d| d.to_str().and_then(|d| d.split(':').next()).map(PathBuf::from))
            .filter(|d| d.is_absolute());
        Ok(given.unwrap_or_else(|| PathBuf::from(SYSTEM_STATE_DIR)))
    } else if let Some(r) = runtime_dir() {
        Ok(r.join("intakeq-fs"))
    } else {
        Err(
            "no private place for the mount's state: HOME, XDG_STATE_HOME and XDG_RUNTIME_DIR are \
                    unset (or not private); set HOME, or pass --spool-dir, --cache-dir and --log-file"
                .into(),
        )
    }
}

/// A directory the user named: created 0700 if missing, never changed otherwise; the
/// mount's own private `intakeq-fs-<uid>` directory is made inside it.
fn given_dir(d: &Path, what: &str) -> Result<PathBuf, String> {
    if std::fs::symlink_metadata(d).is_err() {
        ensure_private_dir(d).map_err(|e| format!("{what}: cannot create {}: {e}", d.display()))?;
    }
    private_subdir(d).map_err(|e| format!("{what}: {e}"))
}

/// The account's own private directory inside the directory the user named
/// (`DIR/intakeq-fs-<uid>/<account>`): two accounts given the same directory never
/// see each other's state (docs/SEMANTICS.md, "Security").
fn given_account_dir(d: &Path, what: &str, account: &str) -> Result<PathBuf, String> {
    let dir = given_dir(d, what)?.join(account);
    ensure_private_dir(&dir).map_err(|e| format!("{what}: {e}"))?;
    Ok(dir)
}

/// Where this mount keeps its spool, cache and log: all private.
struct Places {
    spool: PathBuf,
    cache: PathBuf,
    /// `None`: log to stderr.
    log: Option<PathBuf>,
    /// The log file was named by the user (`--log-file`, `log_file=`): an existing one
    /// that is not private is refused, never chmod-ed.
    log_given: bool,
    /// The account's quota ledger (shared by its mounts on this machine); `None` for the
    /// demo, whose made-up account lives for one run.
    quota: Option<PathBuf>,
}

impl Places {
    fn resolve(c: &CommonMount, account: &str, default_log: bool) -> Result<Places, String> {
        let mut state: Option<PathBuf> = None;
        let mut state_dir = || -> Result<PathBuf, String> {
            if state.is_none() {
                state = Some(state_dir()?);
            }
            Ok(state.clone().unwrap_or_default())
        };
        let spool = match &c.spool_dir {
            Some(d) => {
                let spool = given_account_dir(d, "spool directory", account)?;
                // An earlier version kept every account's entries in the shared level.
                if let Ok(own) = intakeq_fs::core::spool::Spool::open(&spool) {
                    own.adopt_from(&given_dir(d, "spool directory")?, account);
                }
                spool
            }
            None => {
                let all = state_dir()?.join("spool");
                ensure_private_dir(&all).map_err(|e| format!("spool directory: {e}"))?;
                all.join(account)
            }
        };
        ensure_private_dir(&spool).map_err(|e| format!("spool directory: {e}"))?;
        let cache = match &c.cache_dir {
            Some(d) => given_account_dir(d, "cache directory", account)?,
            None => {
                let all = state_dir()?.join("cache");
                ensure_private_dir(&all).map_err(|e| format!("cache directory: {e}"))?;
                all.join(account)
            }
        };
        ensure_private_dir(&cache).map_err(|e| format!("cache directory: {e}"))?;
        let log = match &c.log_file {
            Some(f) => {
                if let Some(parent) = f.parent().filter(|p| !p.as_os_str().is_empty()) {
                    if std::fs::symlink_metadata(parent).is_err() {
                        ensure_private_dir(parent).map_err(|e| format!("log directory: {e}"))?;
                    }
                }
                // Checked now, before going to the background, so a refusal is seen.
                open_given_append(f).map_err(|e| format!("cannot open log file {}: {e}", f.display()))?;
                Some(f.clone())
            }
            None if default_log => Some(state_dir()?.join("intakeq-fs.log")),
            None => None,
        };
        Ok(Places {
            spool,
            cache,
            log,
            log_given: c.log_file.is_some(),
            quota: None,
        })
    }
}

/// Log lines go to `file` (created 0600, never through a symlink) or stderr; ANSI
/// colours only when stderr is a terminal. Warnings and errors are also remembered for
/// the status file (`status::ErrorsLayer`).
fn init_logging(file: Option<&Path>, given: bool) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("INTAKEQ_FS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let open = if given { open_given_append } else { open_private_append };
            let f = open(path).map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            let fmt = builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).finish();
            fmt.with(intakeq_fs::status::ErrorsLayer).init();
        }
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .finish()
            .with(intakeq_fs::status::ErrorsLayer)
            .init(),
    }
    Ok(())
}

/// `check`: the key is read as for `mount`; the check owns everything else.
fn cmd_check(a: check::CheckArgs) -> ExitCode {
    // As for `mount`: before the key is read, no core file or ptrace can ever hold it.
    if let Err(e) = intakeq_fs::harden::harden_process() {
        eprintln!("intakeq-fs: {e}");
        return ExitCode::from(check::EXIT_ERROR);
    }
    match intakeq_fs::key::read_key(a.api_key_file.as_deref()) {
        Ok(key) => check::run_cli(a, key, DEFAULT_BASE_URL),
        Err(msg) => {
            eprintln!("intakeq-fs: {msg}");
            ExitCode::from(check::EXIT_ERROR)
        }
    }
}

/// `forget`: the account from base URL and key as for `mount`, its places as `mount`
/// resolves them (without creating any), then `forget::forget`.
fn cmd_forget(a: intakeq_fs::forget::ForgetArgs) -> Result<(), String> {
    let _ = intakeq_fs::harden::harden_process();
    let key = intakeq_fs::key::read_key(a.api_key_file.as_deref())?;
    let base = a
        .base_url
        .clone()
        .or_else(|| std::env::var("INTAKEQ_BASE_URL").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    // Checked as `mount` checks it; the account is the hash of the text as given, as
    // `mount` computes it.
    let http = HttpOptions {
        allow_plain_http: true,
        ..HttpOptions::default()
    };
    intakeq_fs::remote::http::check_base_url(&base, &http).map_err(|e| e.to_string())?;
    let account = intakeq_fs::core::account_id(&base, &key);
    drop(key);
    let state = state_dir().ok();
    let mine = |given: &Option<PathBuf>, default: &str| -> Option<PathBuf> {
        match given {
            Some(d) => Some(
                d.join(format!("intakeq-fs-{}", intakeq_fs::private_dir::euid()))
                    .join(&account),
            ),
            None => state.as_ref().map(|s| s.join(default).join(&account)),
        }
    };
    let places = intakeq_fs::forget::Places {
        spool: mine(&a.spool_dir, "spool").ok_or("no state directory: pass --spool-dir")?,
        cache: mine(&a.cache_dir, "cache").ok_or("no state directory: pass --cache-dir")?,
        listings: mine(&a.listings_dir, "listings"),
        quota: state.as_ref().map(|s| s.join("quota").join(&account)),
    };
    println!("account {account}");
    print!("{}", intakeq_fs::forget::forget(&places, &account, a.discard_uploads)?);
    Ok(())
}

/// `key set` / `key forget`: the desktop keyring's entry that `mount` reads when no
/// other source gives a key.
fn cmd_key(action: cli::KeyAction) -> Result<(), String> {
    use intakeq_fs::keystore;
    let _ = intakeq_fs::harden::harden_process();
    match action {
        cli::KeyAction::Set => {
            let key = keystore::read_from_stdin()?;
            keystore::store(keystore::DEFAULT_NAME, &key)?;
            eprintln!("intakeq-fs: the API key is kept in the desktop keyring; `intakeq-fs mount DIR` reads it");
        }
        cli::KeyAction::Forget => match keystore::forget(keystore::DEFAULT_NAME)? {
            true => eprintln!("intakeq-fs: the API key was removed from the desktop keyring"),
            false => eprintln!("intakeq-fs: the desktop keyring holds no intakeq-fs key"),
        },
    }
    Ok(())
}

fn cmd_mount(mut a: MountArgs) -> Result<(), String> {
    // Before the key is read: no core file or ptrace can ever hold it.
    let hardened = intakeq_fs::harden::harden_process();
    let key = intakeq_fs::key::read_key(a.api_key_file.as_deref())?;
    intakeq_fs::phi::set_show_names(a.common.log_names);
    a.mountpoint = intakeq_fs::mount::check_mountpoint(&a.mountpoint, a.common.nonempty)?;
    let base = a
        .base_url
        .or_else(|| std::env::var("INTAKEQ_BASE_URL").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let http = HttpOptions {
        allow_plain_http: a.insecure_plain_http,
        ..HttpOptions::default()
    };
    intakeq_fs::remote::http::check_base_url(&base, &http).map_err(|e| e.to_string())?;
    let account = intakeq_fs::core::account_id(&base, &key);
    let mut places = Places::resolve(&a.common, &account, !a.common.foreground)?;
    // Names in logs are tagged with the install's secret (before any is logged).
    let name_secret = state_dir().and_then(|s| {
        intakeq_fs::phi::use_secret_file(&s.join("name-key")).map_err(|e| format!("the secret for names in logs: {e}"))
    });
    places.quota = state_dir().ok().and_then(|s| {
        let dir = s.join("quota");
        ensure_private_dir(&dir).ok()?;
        Some(dir.join(&account))
    });
    let mut readiness = if a.common.foreground {
        init_logging(places.log.as_deref(), places.log_given)?;
        Readiness::none()
    } else {
        let r = daemon::daemonize().map_err(|e| format!("cannot go to the background: {e}"))?;
        // The child of a fork: make sure it is as hardened as its parent was.
        let _ = intakeq_fs::harden::harden_process();
        init_logging(places.log.as_deref(), places.log_given)?;
        r
    };
    if let Err(e) = hardened {
        tracing::warn!("{e}");
    }
    if let Err(e) = name_secret {
        tracing::warn!("{e}; names in this run's log are tagged with a secret of this run only");
    }
    if a.insecure_plain_http {
        tracing::warn!("--insecure-plain-http: the API key and files may cross the network unencrypted");
    }
    let result = run_mount(&base, key, &a.mountpoint, &a.common, &places, http, &mut readiness);
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
    places: &Places,
    http: HttpOptions,
    readiness: &mut Readiness,
) -> Result<(), String> {
    let rt = runtime()?;
    let account = intakeq_fs::core::account_id(base, &key);
    let limiter = Limiter::new(c.rate_limit, c.daily_limit, Duration::from_secs(c.max_wait))
        .with_reserve_percent(c.reserve_percent);
    // What this account already spent today, by earlier runs and other mounts, counts.
    let limiter = Arc::new(match &places.quota {
        Some(path) => limiter
            .with_ledger(path)
            .map_err(|e| format!("quota ledger {}: {e}", path.display()))?,
        None => limiter,
    });
    let listings_key = intakeq_fs::core::listings_key(&key, &account);
    let remote = HttpRemote::new(base, key, limiter.clone(), http).map_err(|e| format!("{e}"))?;
    // Held until this function returns: no second daemon may share the spool.
    let _spool_lock = intakeq_fs::core::spool::lock(&places.spool)?;
    let opts = Options {
        read_only: c.read_only,
        metadata_ttl: Duration::from_secs(c.metadata_ttl),
        cache_bytes: c.cache_size.saturating_mul(1 << 20),
        allow_other: c.allow_other,
        spool_dir: places.spool.clone(),
        cache_dir: places.cache.clone(),
        disk_cache_bytes: c.disk_cache_size.saturating_mul(1 << 20),
        client_list_ttl: Duration::from_secs(c.client_list_ttl),
        // Listings are kept beside the rest of the private state, or in a private
        // subdirectory of the directory given (which is never changed).
        state_dir: match &c.listings_dir {
            _ if c.no_keep_listings => None,
            Some(d) => Some(given_account_dir(d, "listings directory", &account)?),
            None => state_dir().ok().map(|s| s.join("listings").join(&account)),
        },
        listings_key,
        keep_listings_for: Duration::from_secs(c.keep_listings_days.saturating_mul(86_400)),
        previews: !c.no_previews,
        account,
    };
    let core = Arc::new(
        Core::new(remote, opts).map_err(|e| format!("cannot prepare the spool, cache or listings directory: {e}"))?,
    );
    if let Some(p) = &c.audit_log {
        let log = intakeq_fs::audit::AuditLog::open(p, c.audit_names, 10 << 20, 5)
            .map_err(|e| format!("audit log {}: {e}", p.display()))?;
        core.set_audit(Arc::new(log));
    }
    if c.no_delete {
        core.refuse_deletes();
    }
    check_key(&rt, &core, &limiter, Duration::from_secs(c.max_wait), base)?;
    let info = intakeq_fs::status::MountInfo {
        mountpoint: mountpoint.to_path_buf(),
        account: core.options().account.clone(),
        base_url: base.to_string(),
        read_only: c.read_only,
    };
    let publisher = publish_status(&rt, &core, limiter, info);
    if publisher.is_none() {
        tracing::warn!("no private state directory: `intakeq-fs status` will not see this mount");
    }
    let cfg = MountConfig {
        mountpoint: mountpoint.to_path_buf(),
        read_only: c.read_only,
        allow_other: c.allow_other,
        owner: intakeq_fs::owner::Owner::from_args(c.uid.as_deref(), c.gid.as_deref(), c.umask.as_deref())?,
        fuse_threads: c.fuse_threads,
        metadata_ttl: Duration::from_secs(c.metadata_ttl),
        drain_timeout: Duration::from_secs(c.drain_timeout),
        retry_interval: Duration::from_secs(c.retry_interval),
    };
    let result = serve(&rt, core, &cfg, readiness);
    if let Some(p) = publisher {
        p.stop(&rt);
    }
    result
}

/// Longest wait for a request slot that the mount-time key check may take before the
/// mount appears. A longer wait (within `--max-wait`) means this account's minute was
/// spent by an earlier run (the quota ledger says so): the mount then appears at once and
/// checks its key at the next free slot, instead of keeping `mount` (and systemd)
/// waiting up to a minute.
const KEY_CHECK_MAX_WAIT: Duration = Duration::from_secs(2);

/// The one call that proves the key and the address work (its answer, the folders, is
/// kept): before the mount appears when a slot is free within [`KEY_CHECK_MAX_WAIT`],
/// else in the background once one is. A slot further away than `max_wait` (the day is
/// spent) fails the mount at once, as every call would fail (docs/SEMANTICS.md, "The key
/// check at mount never holds the mount back").
fn check_key(
    rt: &tokio::runtime::Runtime,
    core: &Arc<Core<HttpRemote>>,
    limiter: &Limiter,
    max_wait: Duration,
    base: &str,
) -> Result<(), String> {
    let wait = limiter.budget().next_slot_in;
    if wait <= KEY_CHECK_MAX_WAIT || wait > max_wait {
        return rt
            .block_on(core.check_access())
            .map_err(|e| format!("cannot use the IntakeQ API at {base}: {e}"));
    }
    tracing::info!(
        "no request slot for {} s (this account's minute was spent by an earlier run): the mount appears now and \
         checks its key at the next free slot",
        wait.as_secs().max(1)
    );
    let (core, base) = (core.clone(), base.to_string());
    // Dropped with the runtime at unmount if the slot has not come by then.
    rt.spawn(async move {
        match core.check_access().await {
            Ok(()) => tracing::info!("key check: the IntakeQ API accepts the key"),
            Err(e @ RemoteError::Unauthorized { .. }) => tracing::error!(
                "cannot use the IntakeQ API at {base}: {e}; every call of this mount will fail: unmount it and \
                 fix the key"
            ),
            Err(e) => tracing::warn!("key check at {base} did not complete: {e}; the next call will tell"),
        }
    });
    Ok(())
}

/// The status file `intakeq-fs status` reads, and the note on long rate-limit waits
/// ("3 uploads queued").
fn publish_status(
    rt: &tokio::runtime::Runtime,
    core: &Arc<Core<HttpRemote>>,
    limiter: Arc<Limiter>,
    info: intakeq_fs::status::MountInfo,
) -> Option<intakeq_fs::status::Publisher> {
    let weak = Arc::downgrade(core);
    limiter.set_wait_note(Box::new(move || match weak.upgrade().map(|c| c.pending_uploads()) {
        Some(n) if n > 0 => format!("{n} upload(s) queued"),
        _ => String::new(),
    }));
    let dir = intakeq_fs::status::run_dir(&state_dir().ok()?);
    // What dead daemons left (upload names) goes with this mount.
    intakeq_fs::status::remove_stale(&dir);
    Some(intakeq_fs::status::Publisher::start(
        rt,
        core.clone(),
        limiter,
        info,
        &dir,
    ))
}

fn cmd_demo(a: DemoArgs) -> Result<(), String> {
    init_logging(None, false)?;
    let mountpoint = intakeq_fs::mount::check_mountpoint(&a.mountpoint, false)?;
    let key = format!("demo-{}", std::process::id());
    // The fake server runs on its own small runtime beside the mount's.
    let server_rt = runtime()?;
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let token = fake::server::random_token().map_err(|e| format!("cannot make the admin token: {e}"))?;
    let (bound, _task) = server_rt
        .block_on(fake::server::spawn(
            fake::demo::demo_store(),
            addr,
            key.clone(),
            token.clone(),
        ))
        .map_err(|e| format!("cannot start the demo server: {e}"))?;
    let base = fake::server::base_url(bound);
    eprint!("{}", demo_banner(&base, &mountpoint, &token));
    let tmp = std::env::temp_dir().join(format!("intakeq-fs-demo-{}", std::process::id()));
    ensure_private_dir(&tmp).map_err(|e| format!("demo directory: {e}"))?;
    let common = CommonMount {
        foreground: true,
        read_only: false,
        allow_other: false,
        uid: None,
        gid: None,
        umask: None,
        audit_log: None,
        audit_names: false,
        no_delete: false,
        metadata_ttl: 60,
        client_list_ttl: 3600,
        reserve_percent: intakeq_fs::limiter::DEFAULT_RESERVE_PERCENT,
        no_previews: false,
        listings_dir: Some(tmp.join("listings")),
        no_keep_listings: false,
        keep_listings_days: 30,
        cache_size: 256,
        rate_limit: a.rate_limit,
        daily_limit: u32::MAX,
        max_wait: 120,
        spool_dir: Some(tmp.join("spool")),
        cache_dir: Some(tmp.join("cache")),
        disk_cache_size: 1024,
        retry_interval: 30,
        log_file: None,
        log_names: true,
        drain_timeout: 10,
        fuse_threads: 2,
        nonempty: false,
    };
    // Demo data is made up: names in its log are harmless and make it readable.
    intakeq_fs::phi::set_show_names(true);
    let places = Places::resolve(&common, "demo", false)?;
    let result = run_mount(
        &base,
        key,
        &mountpoint,
        &common,
        &places,
        HttpOptions::default(),
        &mut Readiness::none(),
    );
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// What the demo prints first: where it is, what to try, whether writes survive, how
/// to stop it.
fn demo_banner(base: &str, mnt: &Path, admin_token: &str) -> String {
    let m = mnt.display();
    let exe = std::env::current_exe().unwrap_or_else(|_| "intakeq-fs".into());
    let try_first = [
        (format!("ls {m}/clients"), "the clients, by id"),
        (format!("ls -l {m}/clients/1001"), "one client's files and folders"),
        (format!("cat {m}/clients/1001/session-notes.txt"), "read a file"),
        (
            format!("getfattr -d {m}/clients/1001/payments.csv"),
            "its IntakeQ id, type and date",
        ),
        (format!("cp /etc/hostname {m}/clients/1002/"), "upload a file"),
        (
            format!("{} status", exe.display()),
            "pending uploads and the request budget",
        ),
    ];
    let width = try_first.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut out =
        format!("intakeq-fs demo: a fake IntakeQ with 5 sample clients ({base}), mounted at {m}\n\nTry first:\n");
    for (cmd, what) in &try_first {
        out.push_str(&format!("  {cmd:<width$}   {what}\n"));
    }
    out.push_str(&format!(
        "\nWrites (cp, editors, mv, rm) work, against the fake server inside this process:\n\
         they do NOT survive the demo. Nothing reaches a real IntakeQ account.\n\
         Stop: Ctrl-C here; if you put the demo in the background, `fusermount3 -u {m}`\n\
         (or `kill %1`) unmounts it the same way.\n\
         The fake's admin API ({admin}/counts, …) answers only with the header\n\
         `{header}: {admin_token}`.\n\n",
        admin = format_args!("{}/_admin", base.trim_end_matches('/').trim_end_matches("/api/v1")),
        header = fake::server::ADMIN_TOKEN_HEADER,
    ));
    out
}

fn cmd_mock(a: MockArgs) -> Result<(), String> {
    init_logging(None, false)?;
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
    let token = fake::server::random_token().map_err(|e| format!("cannot make the admin token: {e}"))?;
    let rt = runtime()?;
    rt.block_on(async move {
        let (bound, task) = fake::server::spawn(store, a.listen, key, token.clone())
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
        // Line 1: the base URL; line 2: the header `/_admin/` requires, as it is sent.
        println!("{}", fake::server::base_url(bound));
        println!("{}: {token}", fake::server::ADMIN_TOKEN_HEADER);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = task => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// `completions SHELL`: generated from the clap definition, so it never drifts.
fn cmd_completions(shell: clap_complete::Shell) -> Result<(), String> {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "intakeq-fs", &mut std::io::stdout());
    Ok(())
}

/// `man`: the man page, generated from the clap definition: the command, then each
/// subcommand's options.
fn cmd_man() -> Result<(), String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        clap_mangen::Man::new(cmd.clone()).render(out)?;
        for sub in cmd.get_subcommands() {
            writeln!(out, ".SH \"INTAKEQ-FS {}\"", sub.get_name().to_uppercase())?;
            if let Some(about) = sub.get_about() {
                writeln!(out, "{}", about.to_string().replace('\\', "\\\\"))?;
            }
            clap_mangen::Man::new(sub.clone().bin_name(format!("intakeq-fs {}", sub.get_name())))
                .render_synopsis_section(out)?;
            clap_mangen::Man::new(sub.clone()).render_options_section(out)?;
        }
        Ok(())
    };
    render(&mut out).map_err(|e| format!("cannot render the man page: {e}"))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| format!("cannot write the man page: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<PathBuf> + 'a {
        move |v| vars.iter().find(|(k, _)| *k == v).map(|(_, x)| PathBuf::from(x))
    }

    #[test]
    fn a_root_mount_with_no_home_keeps_its_state_in_var_lib() {
        let none = || None;
        let run = || Some(PathBuf::from("/run/user/0"));
        assert_eq!(
            default_state_dir(env(&[]), 0, run).unwrap(),
            PathBuf::from("/var/lib/intakeq-fs"),
            "on disk, not in the run-time directory: staged uploads survive a reboot"
        );
        assert_eq!(
            default_state_dir(env(&[("STATE_DIRECTORY", "/var/lib/iq:/var/lib/other")]), 0, none).unwrap(),
            PathBuf::from("/var/lib/iq")
        );
        assert_eq!(
            default_state_dir(env(&[("STATE_DIRECTORY", "relative")]), 0, none).unwrap(),
            PathBuf::from("/var/lib/intakeq-fs")
        );
        assert_eq!(
            default_state_dir(env(&[("HOME", "/root")]), 0, none).unwrap(),
            PathBuf::from("/root/.local/state/intakeq-fs")
        );
        // Another user with no home: the private run-time directory, or nothing.
        assert_eq!(
            default_state_dir(env(&[("STATE_DIRECTORY", "/var/lib/iq")]), 1000, || Some(
                PathBuf::from("/run/user/1000")
            ))
            .unwrap(),
            PathBuf::from("/run/user/1000/intakeq-fs")
        );
        let err = default_state_dir(env(&[]), 1000, none).unwrap_err();
        assert!(err.contains("no private place"), "{err}");
    }
}
