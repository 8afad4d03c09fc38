//! The spool's exclusive lock (`<spool>/lock`, holding the holder's pid): one daemon
//! per spool, and a refused second one names the process that has it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::content::Mode0600;

/// An exclusive `flock` on `<spool>/lock`, held for the daemon's life: two daemons never
/// share a spool (each would resume and upload the other's staged files). The file holds
/// the holder's pid, so the refused one can say who has it. The kernel drops the lock
/// when the process exits, however it exits.
#[derive(Debug)]
pub struct SpoolLock {
    /// The open lock file; closing it releases the lock.
    _file: File,
}

/// Take the spool's lock (creating the directory, 0700, if needed), or say which
/// process holds it. Errors are one-line messages for the user.
pub fn lock(dir: &Path) -> Result<SpoolLock, String> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let prepare = || -> std::io::Result<File> {
        crate::private_dir::ensure_private_dir(dir)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode_0600()
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join("lock"))
    };
    let mut file = prepare().map_err(|e| format!("cannot open the spool directory {}: {e}", dir.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(format!("cannot lock the spool directory {}: {e}", dir.display()));
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let holder = match pid.trim() {
            "" => "another process".to_string(),
            p => format!("process {p}"),
        };
        return Err(format!(
            "the spool directory {} is in use by {holder} (another intakeq-fs mount of this account); unmount it first or pass another --spool-dir",
            dir.display()
        ));
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()));
    if let Err(e) = written {
        tracing::warn!("spool: cannot record our pid in the lock file: {e}");
    }
    Ok(SpoolLock { _file: file })
}
