//! Who is asking: the calling thread's process, which kind of reader a request comes
//! from (by its process name, and within a file manager by its thread's name and open
//! flags), and the watchdog that answers EINTR for a caller that is being killed.

use std::time::Duration;

use crate::core::{Browser, CoreError, Reader};

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

/// Threads of a file manager's own process that only ever read for a preview, by their
/// name (`/proc/<tid>/comm`). Observed (docs/SEMANTICS.md, "Previews"): pcmanfm (libfm
/// 1.3) makes its image thumbnails in-process in a thread it names `loader`, opening
/// each image three times; its copies run in the GIO pool threads (`pool-pcmanfm`).
const PREVIEW_THREADS: &[&str] = &["loader"];

/// Who is reading: the calling thread `tid` (the FUSE request's pid) of process `tgid`
/// ([`process_of`]) opening with `flags`. Reads `/proc` for the names and leaves the
/// rule to `classify`.
pub(super) fn reader_of(tgid: Option<u32>, tid: u32, flags: i32) -> Reader {
    let Some(tgid) = tgid else {
        return Reader::User; // outside our pid namespace: cannot tell
    };
    let process = std::fs::read_to_string(format!("/proc/{tgid}/comm")).unwrap_or_default();
    let thread = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm")).unwrap_or_default();
    classify(process.trim(), thread.trim(), flags)
}

/// The browsing process behind a lookup or opendir from thread `tid`: its thread
/// group id and whether it is a file manager (by its name), for telling its item counts
/// from a person's click. `None` outside our pid namespace.
pub(super) fn browser_of(tid: u32) -> Option<Browser> {
    let process = process_of(tid)?;
    let name = std::fs::read_to_string(format!("/proc/{process}/comm")).unwrap_or_default();
    Some(Browser {
        process,
        file_manager: FILE_MANAGERS.contains(&name.trim()),
    })
}

/// The process (thread group id) of the calling thread `tid` (the FUSE request's
/// pid); `None` when the caller is outside our pid namespace (tid 0). A thread that is
/// already gone counts as its own process.
pub(super) fn process_of(tid: u32) -> Option<u32> {
    if tid == 0 {
        return None;
    }
    let tgid = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(tid);
    Some(tgid)
}

/// The rule, from the calling process's name, the calling thread's name and the open's
/// flags. The process name decides the kind: thumbnailers by their name, "thumb" in it,
/// or a name cut to 15 bytes ending in "-thum" (gnome-thumbnail-*,
/// gdk-pixbuf-thumbnailer, evince-thumbnailer, ...); file managers by their name.
/// Within a file manager's process a read is its own preview when the thread is one of
/// `PREVIEW_THREADS` or the open carries `O_NOATIME`: GIO sniffs a file's content type
/// (4 KiB, when the name does not tell) with `O_RDONLY|O_NOATIME`, while its copies open
/// with plain `O_RDONLY` (observed in pcmanfm's pool threads, Thunar's main thread and
/// Nautilus's pool threads). Thread names are the application's own choice, so they
/// are only used to put more of a file manager's reads among the previews, never to
/// raise a read above its process's kind.
pub(super) fn classify(process: &str, thread: &str, flags: i32) -> Reader {
    if process.contains("thumb") || process.ends_with("-thum") || THUMBNAILERS.iter().any(|t| process.starts_with(t)) {
        Reader::Thumbnailer
    } else if FILE_MANAGERS.contains(&process) {
        if PREVIEW_THREADS.contains(&thread) || flags & libc::O_NOATIME != 0 {
            Reader::FileManagerPreview
        } else {
            Reader::FileManager
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const RD: i32 = libc::O_RDONLY;
    const SNIFF: i32 = libc::O_RDONLY | libc::O_NOATIME;

    #[test]
    fn pcmanfms_thumbnail_thread_is_a_preview_and_its_pool_threads_are_not() {
        assert_eq!(classify("pcmanfm", "loader", RD), Reader::FileManagerPreview);
        // Copies (ctrl+c / ctrl+v, drag) run in GIO's pool: the file manager, never refused.
        assert_eq!(classify("pcmanfm", "pool-pcmanfm", RD), Reader::FileManager);
        assert_eq!(classify("pcmanfm", "pcmanfm", RD), Reader::FileManager);
    }

    #[test]
    fn gio_content_sniffing_with_o_noatime_is_a_file_managers_preview() {
        assert_eq!(classify("pcmanfm", "pool-pcmanfm", SNIFF), Reader::FileManagerPreview);
        assert_eq!(classify("thunar", "thunar", SNIFF), Reader::FileManagerPreview);
        assert_eq!(
            classify("nautilus", "pool-org.gnome.", SNIFF),
            Reader::FileManagerPreview
        );
        assert_eq!(classify("thunar", "pool-thunar", RD), Reader::FileManager);
    }

    #[test]
    fn thread_names_and_o_noatime_never_matter_outside_a_file_manager() {
        // `tar --atime-preserve=system`, `rsync --open-noatime`, a program naming a thread "loader".
        assert_eq!(classify("tar", "tar", SNIFF), Reader::User);
        assert_eq!(classify("rsync", "loader", RD), Reader::User);
        assert_eq!(classify("eog", "loader", SNIFF), Reader::User);
    }

    #[test]
    fn thumbnailers_by_process_name_whatever_the_thread() {
        assert_eq!(classify("tumblerd", "pool-tumblerd", RD), Reader::Thumbnailer);
        assert_eq!(classify("gdk-pixbuf-thum", "gdk-pixbuf-thum", RD), Reader::Thumbnailer);
        assert_eq!(classify("evince-thumbnai", "loader", RD), Reader::Thumbnailer);
        assert_eq!(classify("ffmpegthumbnail", "x", RD), Reader::Thumbnailer);
        assert_eq!(classify("cat", "cat", RD), Reader::User);
    }
}
