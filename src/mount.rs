//! Mounting: builds the FUSE session over a core, reports readiness, unmounts on
//! SIGINT/SIGTERM (lazily if the mount is busy) and returns when the kernel ends the
//! session, whichever way it was unmounted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};

use crate::core::Core;
use crate::daemon::Readiness;
use crate::fuse::FuseFs;
use crate::remote::Remote;

#[derive(Clone, Debug)]
pub struct MountConfig {
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub allow_other: bool,
    pub fuse_threads: usize,
    pub metadata_ttl: Duration,
    pub drain_timeout: Duration,
    /// How often failed closes are retried in the background.
    pub retry_interval: Duration,
}

/// Mount `core` and serve until unmounted. Errors are one-line messages for the user.
pub fn serve<R: Remote>(
    rt: &tokio::runtime::Runtime,
    core: Arc<Core<R>>,
    cfg: &MountConfig,
    readiness: &mut Readiness,
) -> Result<(), String> {
    let mut options = vec![
        MountOption::FSName("intakeq".into()),
        MountOption::Subtype("intakeq-fs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    if cfg.read_only {
        options.push(MountOption::RO);
    }
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if cfg.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(cfg.fuse_threads.max(1));
    let fs = FuseFs::new(core.clone(), rt.handle().clone(), cfg.metadata_ttl);
    let mut session = fuser::Session::new(fs, &cfg.mountpoint, &config)
        .map_err(|e| format!("cannot mount at {}: {e}", cfg.mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    let mountpoint = cfg.mountpoint.clone();
    // Installed now, before the mount is reported ready: a signal that arrives at once
    // must unmount, not kill the process with the default action.
    let signals = {
        let _rt = rt.enter();
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    };
    rt.spawn(async move {
        wait_for_signal(signals).await;
        tracing::info!("signal received: unmounting {}", mountpoint.display());
        if let Err(e) = unmounter.unmount() {
            tracing::warn!("unmount failed ({e}); detaching lazily");
            lazy_unmount(&mountpoint);
        }
    });
    let background = {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (core, every) = (core.clone(), cfg.retry_interval);
        let task = rt.spawn(async move {
            // Listings served stale are refreshed beside the upload work (`run_refresh`).
            tokio::join!(core.run_background(every, stopped.clone()), core.run_refresh(stopped));
        });
        Background { stop, task }
    };
    tracing::info!("mounted at {}", cfg.mountpoint.display());
    let mp = cfg.mountpoint.clone();
    rt.spawn_blocking(move || raise_readahead(&mp));
    readiness.ready();
    let result = session
        .run()
        .map_err(|e| format!("FUSE session ended with an error: {e}"));
    drain(rt, &core, background, cfg.drain_timeout);
    tracing::info!("unmounted {}", cfg.mountpoint.display());
    result
}

/// The core's background work (`Core::run_background`) and the switch that stops it.
struct Background {
    /// Set to true at unmount: the loop finishes its step and returns.
    stop: tokio::sync::watch::Sender<bool>,
    /// The loop itself, awaited by `drain`.
    task: tokio::task::JoinHandle<()>,
}

type Signals = (
    std::io::Result<tokio::signal::unix::Signal>,
    std::io::Result<tokio::signal::unix::Signal>,
);

async fn wait_for_signal(signals: Signals) {
    let (Ok(mut int), Ok(mut term)) = signals else {
        tracing::warn!("cannot install signal handlers; unmount with fusermount3 -u");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// The kernel offers FUSE mounts 128 KiB of readahead, so a sequential read arrives as
/// 128 KiB requests. Where allowed (root), raise the mount's readahead to 1 MiB through
/// its backing device in sysfs: fewer, larger requests (docs/BENCHMARKS.md, row 1).
/// Best effort: anything that fails leaves the kernel's default.
fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    // The stat is answered by the session, which runs once this function's caller
    // returns to serve: this runs on its own thread, so it just waits for it.
    let Ok(md) = std::fs::metadata(mountpoint) else { return };
    let dev = md.dev();
    let path = format!("/sys/class/bdi/{}:{}/read_ahead_kb", libc::major(dev), libc::minor(dev));
    match std::fs::write(&path, "1024") {
        Ok(()) => tracing::debug!("readahead raised to 1 MiB ({path})"),
        Err(e) => tracing::debug!("readahead left at the kernel default ({path}: {e})"),
    }
}

/// `fusermount3 -u -z`: detach now, finish when the last user lets go.
fn lazy_unmount(mountpoint: &Path) {
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        tracing::error!("lazy unmount of {} failed", mountpoint.display());
    }
}

/// Give uploads still running a bounded time to finish; what does not finish stays in
/// the spool for the next mount.
fn drain<R: Remote>(rt: &tokio::runtime::Runtime, core: &Core<R>, background: Background, timeout: Duration) {
    background.stop.send_replace(true);
    let settled = rt.block_on(async {
        // The background step under way finishes; then whatever close is still uploading.
        let all = async {
            let _ = background.task.await;
            core.uploads_settled().await;
        };
        tokio::time::timeout(timeout, all).await
    });
    let left = core.uploads_in_flight();
    if settled.is_err() || left > 0 {
        tracing::warn!("{left} upload(s) still running at exit; they stay in the spool for the next mount");
    }
}
