//! `intakeq-fs mount` (bin side): reading the key, choosing the places, going to the
//! background, then wiring the limiter, the HTTP remote, the core and the FUSE session
//! (`run_mount`), the key check at mount and the status file's publisher.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use intakeq_fs::core::{Core, Options};
use intakeq_fs::daemon::{self, Readiness};
use intakeq_fs::limiter::Limiter;
use intakeq_fs::mount::{serve, MountConfig};
use intakeq_fs::private_dir::ensure_private_dir;
use intakeq_fs::remote::http::{HttpOptions, HttpRemote};
use intakeq_fs::remote::RemoteError;

use crate::cli::{CommonMount, MountArgs};
use crate::places::{given_account_dir, state_dir, Places};
use crate::{init_logging, DEFAULT_BASE_URL};

pub(crate) fn cmd_mount(mut a: MountArgs) -> Result<(), String> {
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

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("intakeq-io")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

pub(crate) fn run_mount(
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
        ..Options::new(places.spool.clone(), places.cache.clone(), &account)
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
pub(crate) const KEY_CHECK_MAX_WAIT: Duration = Duration::from_secs(2);

/// The one call that proves the key and the address work (its answer, the folders, is
/// kept): before the mount appears when a slot is free within [`KEY_CHECK_MAX_WAIT`],
/// else in the background once one is. A slot further away than `max_wait` (the day is
/// spent) fails the mount at once, as every call would fail (docs/SEMANTICS.md, "The key
/// check at mount never holds the mount back").
pub(crate) fn check_key(
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
pub(crate) fn publish_status(
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
