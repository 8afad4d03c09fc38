//! Mounting: checks the mountpoint (no stacking, no hidden files), mounts as
//! `fuse.intakeq-fs`, builds the FUSE session over a core, reports readiness, unmounts on
//! SIGINT/SIGTERM (lazily if the mount is busy) and returns when the kernel ends the
//! session, whichever way it was unmounted.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL, SessionUnmounter};

use crate::core::Core;
use crate::daemon::Readiness;
use crate::fuse::FuseFs;
use crate::remote::Remote;

/// The file system type the mount shows in /proc/mounts, `findmnt` and `df -T`
/// (what `updatedb.conf`'s PRUNEFS and `mount -t` name).
pub const FS_TYPE: &str = "fuse.intakeq-fs";
/// The mount's source as `df` shows it.
pub const FS_NAME: &str = "intakeq";

/// How to mount and serve.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// Where (an empty directory, not already a mount point).
    pub mountpoint: PathBuf,
    /// Mount read-only (the core refuses changes too).
    pub read_only: bool,
    /// Let other users in (`allow_other`).
    pub allow_other: bool,
    /// Who the files belong to and their modes (`--uid`, `--gid`, `--umask`).
    pub owner: crate::owner::Owner,
    /// FUSE session threads.
    pub fuse_threads: usize,
    /// How long the kernel may keep attributes and entries.
    pub metadata_ttl: Duration,
    /// How long unmount waits for running uploads.
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
        MountOption::FSName(FS_NAME.into()),
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
    let fs = FuseFs::new(core.clone(), rt.handle().clone(), cfg.metadata_ttl, cfg.owner);
    let notifier = fs.notifier_slot();
    let (session, mut unmounter) = match mount_directly(&cfg.mountpoint, cfg.read_only, cfg.allow_other) {
        Ok(Some(fd)) => {
            let session = fuser::Session::from_fd(fs, fd, config.acl, config)
                .map_err(|e| format!("cannot start the FUSE session at {}: {e}", cfg.mountpoint.display()));
            match session {
                Ok(s) => (s, Unmounter::Direct(cfg.mountpoint.clone())),
                Err(msg) => {
                    Unmounter::Direct(cfg.mountpoint.clone()).unmount_lazily();
                    return Err(msg);
                }
            }
        }
        // Not allowed to mount (not root): fusermount3 does it, and names the type too.
        Ok(None) => {
            let mut session = fuser::Session::new(fs, &cfg.mountpoint, &config)
                .map_err(|e| format!("cannot mount at {}: {e}", cfg.mountpoint.display()))?;
            let unmounter = Unmounter::Fuser(session.unmount_callable(), cfg.mountpoint.clone());
            (session, unmounter)
        }
        Err(e) => return Err(format!("cannot mount at {}: {e}", cfg.mountpoint.display())),
    };
    let _ = notifier.set(session.notifier());
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
            unmounter.unmount_lazily();
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
    rt.spawn_blocking(move || {
        // Answered by the session once `run` below starts serving: then the mount
        // answers, and systemd may start what needs it.
        if std::fs::metadata(&mp).is_ok() {
            crate::daemon::notify_systemd(&format!("READY=1\nSTATUS=mounted at {}", mp.display()));
        }
        raise_readahead(&mp);
    });
    readiness.ready();
    let result = match session.run() {
        // A lazily detached mount whose kernel connection is torn down as the last
        // file closes ends with ECONNABORTED instead of ENODEV, depending on timing:
        // either way the filesystem is gone, which is a normal end.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
            tracing::debug!("FUSE connection closed by the kernel ({e})");
            Ok(())
        }
        r => r.map_err(|e| format!("FUSE session ended with an error: {e}")),
    };
    crate::daemon::notify_systemd("STOPPING=1\nSTATUS=unmounted; finishing uploads");
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

/// Who unmounts: fuser (it mounted through fusermount3) or we (we mounted directly).
enum Unmounter {
    /// fuser's own unmounter, and the mountpoint for a lazy detach.
    Fuser(SessionUnmounter, PathBuf),
    /// Mounted by `mount_directly`: `umount2` on this path.
    Direct(PathBuf),
}

impl Unmounter {
    fn unmount(&mut self) -> std::io::Result<()> {
        match self {
            Unmounter::Fuser(u, _) => u.unmount(),
            Unmounter::Direct(p) => umount2(p, false),
        }
    }

    /// Detach now; the kernel finishes when the last user lets go.
    fn unmount_lazily(&self) {
        match self {
            Unmounter::Fuser(_, p) => lazy_unmount(p),
            Unmounter::Direct(p) => {
                if let Err(e) = umount2(p, true) {
                    tracing::error!("lazy unmount of {} failed: {e}", p.display());
                }
            }
        }
    }
}

/// `umount2(2)`, lazily (MNT_DETACH) if asked.
#[cfg(target_os = "linux")]
fn umount2(p: &Path, lazy: bool) -> std::io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: a valid NUL-terminated path; umount2 touches no memory of ours.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Only Linux mounts directly (`mount_directly`), so nothing else unmounts this way.
#[cfg(not(target_os = "linux"))]
fn umount2(_p: &Path, _lazy: bool) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Elsewhere (macOS: macFUSE) fuser mounts, with its own helper.
#[cfg(not(target_os = "linux"))]
fn mount_directly(_mountpoint: &Path, _read_only: bool, _allow_other: bool) -> std::io::Result<Option<OwnedFd>> {
    Ok(None)
}

#[cfg(target_os = "linux")]
/// Mount `/dev/fuse` at `mountpoint` with the type `fuse.intakeq-fs` (fuser's own direct
/// mount always says plain `fuse`, which `updatedb`'s PRUNEFS cannot tell apart).
/// `Ok(None)`: not allowed (not root), the caller lets fusermount3 do it.
fn mount_directly(mountpoint: &Path, read_only: bool, allow_other: bool) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: opening a device node by a constant path.
    let raw = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!("fd={raw},rootmode=40000,user_id={uid},group_id={gid},default_permissions");
    if allow_other {
        data.push_str(",allow_other");
    }
    let mut flags = libc::MS_NODEV | libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NOATIME;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    let target = CString::new(mountpoint.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let source = CString::new(FS_NAME).map_err(std::io::Error::other)?;
    let fstype = CString::new(FS_TYPE).map_err(std::io::Error::other)?;
    let data = CString::new(data).map_err(std::io::Error::other)?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        return Ok(Some(fd));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EPERM) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Refuse a mountpoint that is already a mount point (a second daemon would stack on the
/// first) or that holds files (the mount would hide them) unless `nonempty`. Returns the
/// mountpoint made absolute. Errors are one-line messages for the user.
pub fn check_mountpoint(p: &Path, nonempty: bool) -> Result<PathBuf, String> {
    let abs = std::path::absolute(p).map_err(|e| format!("mountpoint {}: {e}", p.display()))?;
    // A dead FUSE mount cannot be resolved (ENOTCONN): look it up unresolved, too.
    let real = std::fs::canonicalize(&abs).unwrap_or_else(|_| abs.clone());
    if let Some(fstype) = mounted_at(&real).or_else(|| mounted_at(&abs)) {
        return Err(format!(
            "{} is already a mount point ({fstype}); unmount it first (fusermount3 -u {})",
            p.display(),
            p.display()
        ));
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("mountpoint {} is not a directory", p.display())),
        Err(e) => return Err(format!("mountpoint {}: {e}", p.display())),
    }
    if !nonempty {
        let has_entries = std::fs::read_dir(&real)
            .map_err(|e| format!("mountpoint {}: {e}", p.display()))?
            .next()
            .is_some();
        if has_entries {
            return Err(format!(
                "mountpoint {} is not empty (the mount would hide its files); use an empty directory or pass --nonempty",
                p.display()
            ));
        }
    }
    Ok(real)
}

/// The file system type mounted at exactly `p`, from /proc/self/mountinfo.
pub fn mounted_at(p: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = p.as_os_str().as_bytes();
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let at = unescape_mountinfo(fields.get(4)?);
        if at != want {
            return None;
        }
        // After the optional fields comes "-", then the type.
        let dash = fields.iter().position(|f| *f == "-")?;
        fields.get(dash + 1).map(|t| t.to_string())
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
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
    // Scratch files (swap, lock, journal files) never leave the mount.
    core.drop_scratch();
    let left = core.uploads_in_flight();
    if settled.is_err() || left > 0 {
        tracing::warn!("{left} upload(s) still running at exit; they stay in the spool for the next mount");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo(r"/tmp/my\040drive"), b"/tmp/my drive");
        assert_eq!(unescape_mountinfo(r"/a\134b\011c"), b"/a\\b\tc");
        assert_eq!(unescape_mountinfo(r"/plain\04"), b"/plain\\04");
    }
}
