//! The limiter's spending on disk: every request granted is one line (Unix milliseconds)
//! appended to a private file per account, so a remount, or a second mount of the same
//! account on this machine, starts from what was already spent instead of from zero and
//! then colliding with the server's 429s. Each limiter reads back every line appended
//! since it last looked, its own included, so all mounts of one account share one budget.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines older than this are of no use (the daily window).
const KEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// A ledger with more lines than this is rewritten with only the last day's.
const COMPACT_OVER: usize = 20_000;

/// One account's ledger file, open for appending and reading.
#[derive(Debug)]
pub struct Ledger {
    /// The file (0600, ours, not a symlink), opened with `O_APPEND`.
    file: File,
    /// How far it has been read.
    read_to: u64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Ledger {
    /// Open (creating, 0600) the ledger at `path`; the directory must already be private.
    /// The rules of every private file apply (`private_dir`): a symlink or another
    /// user's file is refused.
    pub fn open(path: &Path) -> std::io::Result<Ledger> {
        let file = crate::private_dir::open_private_append_read(path)?;
        let mut ledger = Ledger { file, read_to: 0 };
        ledger.compact_if_long()?;
        Ok(ledger)
    }

    /// Record one request granted at `ms` (one line: appends of this size are atomic, so
    /// two mounts appending at once never mix their lines).
    pub fn record(&mut self, ms: u64) -> std::io::Result<()> {
        self.file.write_all(format!("{ms}\n").as_bytes())
    }

    /// The grants appended since the last call (by any mount of the account, this one
    /// included) that are less than a day old, in the order they were written.
    pub fn new_entries(&mut self) -> Vec<u64> {
        let mut text = String::new();
        if self.file.seek(SeekFrom::Start(self.read_to)).is_err() {
            return Vec::new();
        }
        if self.file.read_to_string(&mut text).is_err() {
            return Vec::new();
        }
        // Only whole lines: a line being written by another mount is read next time.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.read_to += whole as u64;
        let oldest = now_ms().saturating_sub(KEEP.as_millis() as u64);
        text[..whole]
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .filter(|ms| *ms >= oldest)
            .collect()
    }

    /// Keep the file short: past `COMPACT_OVER` lines, rewrite it with the last day's
    /// (under an exclusive lock, so two mounts never compact at once).
    fn compact_if_long(&mut self) -> std::io::Result<()> {
        let mut text = String::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_string(&mut text)?;
        if text.lines().count() <= COMPACT_OVER {
            return Ok(());
        }
        use std::os::fd::AsRawFd;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Ok(());
        }
        let oldest = now_ms().saturating_sub(KEEP.as_millis() as u64);
        let kept: String = text
            .lines()
            .filter(|l| l.trim().parse::<u64>().is_ok_and(|ms| ms >= oldest))
            .map(|l| format!("{}\n", l.trim()))
            .collect();
        self.file.set_len(0)?;
        self.file.write_all(kept.as_bytes())?;
        // SAFETY: as above.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_written_by_one_ledger_are_read_by_another_and_old_ones_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        let mut a = Ledger::open(&path).unwrap();
        let mut b = Ledger::open(&path).unwrap();
        let now = now_ms();
        a.record(now - 1000).unwrap();
        a.record(now - KEEP.as_millis() as u64 - 5).unwrap();
        b.record(now).unwrap();
        assert_eq!(b.new_entries(), [now - 1000, now]);
        assert_eq!(b.new_entries(), Vec::<u64>::new(), "read once");
        assert_eq!(a.new_entries(), [now - 1000, now], "its own lines too");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_ledger_is_made_private_and_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::write(&open, b"").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        Ledger::open(&open).unwrap();
        assert_eq!(std::fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(Ledger::open(&link).is_err());
    }
}
