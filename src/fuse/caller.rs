//! Who is asking: which kind of reader a request comes from (by its process name), and
//! the watchdog that answers EINTR for a caller that is being killed.

use std::time::Duration;

use crate::core::{CoreError, Reader};

/// Thumbnailers, by the start of their process name (`/proc/<pid>/comm`, at most 15
/// bytes): their reads are previews (`Reader::Thumbnailer`).
const THUMBNAILERS: &[&str] = &["tumbler", "ffmpegthumbnail", "totem-video-thu"];
/// File managers that read files for their own previews and type sniffing
/// (`Reader::FileManager`). KDE's `kioworker` is here, not among the thumbnailers: the
/// same binary makes Dolphin's thumbnails and its copies.
const FILE_MANAGERS: &[&str] = &[
    "pcmanfm",
    "pcmanfm-qt",
    "thunar",
    "Thunar",
    "nautilus",
    "nemo",
    "caja",
    "dolphin",
    "spacefm",
    "kioworker",
];

/// Who is reading, from the name of the calling thread's process (thread names are
/// the application's own choice, so they are not trusted). Thumbnailers are also
/// recognised by "thumb" in the name, or a name cut to 15 bytes ending in "-thum"
/// (gnome-thumbnail-*, gdk-pixbuf-thumbnailer, evince-thumbnailer, ...).
pub(super) fn reader_of(tid: u32) -> Reader {
    if tid == 0 {
        return Reader::User; // outside our pid namespace: cannot tell
    }
    let tgid = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| tid.to_string());
    let comm = std::fs::read_to_string(format!("/proc/{tgid}/comm")).unwrap_or_default();
    let name = comm.trim();
    if name.contains("thumb") || name.ends_with("-thum") || THUMBNAILERS.iter().any(|t| name.starts_with(t)) {
        Reader::Thumbnailer
    } else if FILE_MANAGERS.contains(&name) {
        Reader::FileManager
    } else {
        Reader::User
    }
}

/// Run a data-fetching operation, but answer EINTR as soon as the calling process is
/// being killed (Ctrl-C on `cat`). fuser does not deliver FUSE_INTERRUPT, and the kernel
/// waits uninterruptibly for a request the daemon holds, so without this a killed
/// process would hang in D state until the network gave up. A fatal signal shows in
/// /proc as SIGKILL pending on the thread (the kernel converts it so).
pub(super) async fn unless_killed<T>(
    pid: u32,
    fut: impl std::future::Future<Output = Result<T, CoreError>>,
) -> Result<T, CoreError> {
    tokio::pin!(fut);
    // Fast path: most operations (cached data) finish at the first poll; no timer.
    if let std::task::Poll::Ready(out) = futures_util::poll!(&mut fut) {
        return out;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                if being_killed(pid) {
                    tracing::debug!(pid, "caller is being killed; giving up on its request");
                    return Err(CoreError::Interrupted);
                }
            }
        }
    }
}

/// True if thread `tid` has SIGKILL pending (a fatal signal is being delivered).
fn being_killed(tid: u32) -> bool {
    if tid == 0 {
        return false; // the caller is outside our pid namespace: cannot tell
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    let kill_bit = 1u64 << (libc::SIGKILL - 1);
    status.lines().any(|l| {
        let v = l.strip_prefix("SigPnd:").or_else(|| l.strip_prefix("ShdPnd:"));
        v.and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|m| m & kill_bit != 0)
    })
}
