//! The private spool: where written data waits for its upload, on disk (files 0600 in
//! a 0700 directory), never only in memory. Each staged upload is `<n>.data` plus,
//! from the moment `close()` starts the upload, a fsynced journal entry `<n>.json`
//! saying where it goes and what it replaces, so a later mount can finish the job.
//!
//! The directory is private (owned by this user, 0700, not a symlink) and checked at
//! every open; entries found in it that are not this user's own regular files, or that
//! cannot be parsed, are refused and reported, never acted on (docs/SEMANTICS.md,
//! "Security").

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::blocking;
use super::content::Mode0600;

pub use super::journal::{Attempts, Journal, OwedDelete, MAX_SENDS};
pub use super::spool_lock::{lock, SpoolLock};

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    seq: AtomicU64,
}

/// One staged file.
#[derive(Debug)]
pub struct SpoolFile {
    pub path: PathBuf,
    pub file: File,
}

impl SpoolFile {
    pub fn journal_path(&self) -> PathBuf {
        journal_of(&self.path)
    }
}

impl Spool {
    /// Open (creating, 0700) the spool directory; an existing one must be private
    /// (owned by this user, no group/other bits, not a symlink) or it is refused.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        crate::private_dir::ensure_private_dir(dir)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            seq: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new empty file in the scratch overlay (`<spool>/scratch/`, private): never
    /// journaled, never uploaded, emptied at mount and unmount.
    pub fn create_scratch(&self) -> std::io::Result<SpoolFile> {
        let dir = self.dir.join("scratch");
        crate::private_dir::ensure_private_dir(&dir)?;
        self.create_in(&dir)
    }

    /// Remove every scratch file (at unmount, and at mount after a crash).
    pub fn clear_scratch(&self) {
        let dir = self.dir.join("scratch");
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                remove_quietly(&e.path());
            }
        }
    }

    /// Move a scratch file into the spool proper (it was renamed onto an ordinary
    /// name and is due for upload, so its journal must be where resume looks).
    pub fn adopt(&self, sf: &mut SpoolFile) -> std::io::Result<()> {
        if sf.path.parent() == Some(self.dir.as_path()) {
            return Ok(());
        }
        let to = self.fresh_path(&self.dir);
        fs::rename(&sf.path, &to)?;
        sf.path = to;
        Ok(())
    }

    /// A new empty staged file.
    pub fn create(&self) -> std::io::Result<SpoolFile> {
        self.create_in(&self.dir)
    }

    fn create_in(&self, dir: &Path) -> std::io::Result<SpoolFile> {
        let path = self.fresh_path(dir);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&path)?;
        Ok(SpoolFile { path, file })
    }

    /// A name no staged file has: time, pid and a counter.
    fn fresh_path(&self, dir: &Path) -> PathBuf {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        dir.join(format!("{ms}-{}-{n}.data", std::process::id()))
    }

    /// Make the staged bytes (`file`, staged at `data`) and their journal entry durable
    /// before uploading. The fsyncs run on the blocking pool.
    pub async fn commit(&self, file: &File, data: &Path, journal: &Journal) -> std::io::Result<()> {
        let file = file.try_clone()?;
        let (dir, path) = (self.dir.clone(), journal_of(data));
        let json = serde_json::to_vec(journal).map_err(std::io::Error::other)?;
        blocking(move || {
            file.sync_all()?;
            write_durably(&dir, &path, &json)
        })
        .await
    }

    /// Rewrite the journal entry of the staged file at `data` (no fsync of the data:
    /// it was made durable when the entry was first committed). On the blocking pool.
    pub async fn record(&self, data: &Path, journal: &Journal) -> std::io::Result<()> {
        let (dir, path) = (self.dir.clone(), journal_of(data));
        let json = serde_json::to_vec(journal).map_err(std::io::Error::other)?;
        blocking(move || write_durably(&dir, &path, &json)).await
    }

    /// Forget a staged file once the server has it (or it was never wanted).
    pub fn remove(&self, path: &Path) {
        remove_quietly(path);
        remove_quietly(&journal_of(path));
    }

    /// The upload of the staged file at `data` is settled (landed and what it replaced
    /// dealt with, or discarded): its journal entry goes, so no later mount acts on it.
    /// The staged bytes stay while a writer still serves reads from them.
    pub fn drop_journal(&self, data: &Path) {
        remove_quietly(&journal_of(data));
    }

    fn owed_path(&self, id: &str) -> PathBuf {
        self.dir
            .join(format!("{:016x}.delete", super::names::fnv1a(id.as_bytes())))
    }

    /// Record, durably, that a replaced file still has to be deleted.
    pub async fn owe_delete(&self, d: &OwedDelete) -> std::io::Result<()> {
        let (dir, path) = (self.dir.clone(), self.owed_path(&d.id));
        let json = serde_json::to_vec(d).map_err(std::io::Error::other)?;
        blocking(move || write_durably(&dir, &path, &json)).await
    }

    /// The replaced file is gone from the server.
    pub fn settle_delete(&self, id: &str) {
        if let Err(e) = fs::remove_file(self.owed_path(id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("spool: cannot remove an owed delete: {e}");
            }
        }
    }

    /// Deletes an earlier run owed. Entries that are not this user's own regular files
    /// or cannot be parsed are refused (left in place) and reported in one warning.
    pub fn owed_deletes(&self) -> Vec<OwedDelete> {
        let mut refused = Refused::default();
        let mut out = Vec::new();
        for p in self.entries("delete") {
            match read_own(&p).and_then(|b| serde_json::from_slice::<OwedDelete>(&b).map_err(std::io::Error::other)) {
                Ok(d) => out.push(d),
                Err(_) => refused.add(&p),
            }
        }
        refused.report(&self.dir, "owed delete");
        out
    }

    /// Staged uploads with a journal entry: what an earlier run did not finish. Entries
    /// whose journal or data file is not this user's own regular file (symlink, another
    /// owner) or whose journal cannot be parsed are refused (left in place, never
    /// uploaded) and reported in one warning with their count, without file names.
    pub fn pending(&self) -> Vec<(PathBuf, Journal)> {
        let mut refused = Refused::default();
        let mut out = Vec::new();
        for p in self.entries("json") {
            let data = p.with_extension("data");
            let journal =
                read_own(&p).and_then(|b| serde_json::from_slice::<Journal>(&b).map_err(std::io::Error::other));
            match journal {
                Ok(j) if check_own(&data).is_ok() => out.push((data, j)),
                _ => refused.add(&p),
            }
        }
        refused.report(&self.dir, "journal entry");
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Staged data with no journal entry, and when each was last written: bytes written
    /// but never closed before the process died. Meaningful only before this run stages
    /// anything (a file being written now has no journal entry either). Files that are
    /// not this user's own regular files are left out.
    pub fn orphans(&self) -> Vec<(PathBuf, SystemTime)> {
        let mut out: Vec<(PathBuf, SystemTime)> = self
            .entries("data")
            .into_iter()
            .filter(|p| fs::symlink_metadata(p.with_extension("json")).is_err())
            .filter_map(|p| {
                let md = check_own(&p).ok()?;
                Some((p, md.modified().ok()?))
            })
            .collect();
        out.sort();
        out
    }

    /// Move `account`'s entries (journaled uploads with their data, owed deletes) from
    /// `old` into this spool: an earlier version kept one spool for every account in a
    /// given `--spool-dir`; each account now has its own. Other accounts' entries stay
    /// where they are. Returns how many moved. Data moves before its journal entry, so
    /// a crash in between leaves the data as an orphan here (kept, never uploaded
    /// blindly), never a journal entry without its data.
    pub fn adopt_from(&self, old: &Path, account: &str) -> usize {
        if old == self.dir || !old.is_dir() {
            return 0;
        }
        let old = Spool {
            dir: old.to_path_buf(),
            seq: AtomicU64::new(0),
        };
        let mut moved = 0;
        let into = |p: &Path| p.file_name().map(|n| self.dir.join(n));
        for (data, j) in old.pending() {
            if j.account != account {
                continue;
            }
            let journal = journal_of(&data);
            if let (Some(to_data), Some(to_journal)) = (into(&data), into(&journal)) {
                if fs::rename(&data, &to_data)
                    .and_then(|()| fs::rename(&journal, &to_journal))
                    .is_ok()
                {
                    moved += 1;
                }
            }
        }
        for p in old.entries("delete") {
            let ours = read_own(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<OwedDelete>(&b).ok())
                .is_some_and(|d| d.account == account);
            if let Some(to) = into(&p).filter(|_| ours) {
                if fs::rename(&p, to).is_ok() {
                    moved += 1;
                }
            }
        }
        if moved > 0 {
            tracing::info!(
                "spool: moved {moved} unfinished entries of this account from the shared spool {} into its own {}",
                old.dir.display(),
                self.dir.display()
            );
        }
        moved
    }

    /// Paths in the spool directory with this extension.
    fn entries(&self, ext: &str) -> Vec<PathBuf> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
            .collect();
        v.sort();
        v
    }
}

/// Longest journal entry or owed delete read (a real one is a few hundred bytes).
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// `path`'s metadata if it is a regular file owned by this user (not a symlink).
fn check_own(path: &Path) -> std::io::Result<fs::Metadata> {
    let md = fs::symlink_metadata(path)?;
    if !md.file_type().is_file() || md.uid() != crate::private_dir::euid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not this user's own regular file",
        ));
    }
    Ok(md)
}

/// The bytes of a spool entry, opened without following a symlink and refused unless
/// it is this user's own regular file.
fn read_own(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let md = f.metadata()?;
    if !md.file_type().is_file() || md.uid() != crate::private_dir::euid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not this user's own regular file",
        ));
    }
    let mut buf = Vec::new();
    f.take(MAX_ENTRY_BYTES).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Spool entries refused in one scan, reported together.
#[derive(Default)]
struct Refused {
    count: usize,
}

impl Refused {
    fn add(&mut self, _path: &Path) {
        self.count += 1;
    }

    fn report(&self, dir: &Path, what: &str) {
        if self.count > 0 {
            tracing::warn!(
                "spool {}: refused {} {what}(s) that are not this user's own files or cannot be read; \
                 left in place, never acted on",
                dir.display(),
                self.count
            );
        }
    }
}

/// Write `json` to `path` so that a crash leaves either the old file or the whole new
/// one: temp file (0600), fsync, rename, fsync of the directory `dir`. Blocking.
fn write_durably(dir: &Path, path: &Path, json: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode_0600()
        .open(&tmp)?;
    f.write_all(json)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The journal entry of the staged file at `data`.
fn journal_of(data: &Path) -> PathBuf {
    data.with_extension("json")
}

/// Remove a spool file; one that is already gone is fine.
fn remove_quietly(p: &Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("spool: cannot remove {}: {e}", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn spool_is_private_and_journal_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(&tmp.path().join("s")).unwrap();
        assert_eq!(fs::metadata(spool.dir()).unwrap().mode() & 0o777, 0o700);
        let sf = spool.create().unwrap();
        assert_eq!(fs::metadata(&sf.path).unwrap().mode() & 0o777, 0o600);
        assert!(spool.pending().is_empty(), "no journal, nothing pending");
        let j = Journal {
            account: "a1".into(),
            client: 7,
            name: "a.txt".into(),
            replaces: vec!["f1".into()],
            size: 0,
            attempts: None,
            abandoned: false,
            sends: 0,
            given_up: false,
        };
        spool.commit(&sf.file, &sf.path, &j).await.unwrap();
        assert_eq!(fs::metadata(sf.journal_path()).unwrap().mode() & 0o777, 0o600);
        assert_eq!(spool.pending(), vec![(sf.path.clone(), j)]);
        spool.remove(&sf.path);
        assert!(spool.pending().is_empty());
        assert!(!sf.path.exists());
    }

    #[tokio::test]
    async fn an_accounts_entries_move_out_of_a_shared_spool_and_others_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = Spool::open(&tmp.path().join("shared")).unwrap();
        for (account, name) in [("a1", "mine.txt"), ("b2", "theirs.txt")] {
            let sf = shared.create().unwrap();
            shared
                .commit(&sf.file, &sf.path, &journal(account, name))
                .await
                .unwrap();
        }
        for (account, id) in [("a1", "f1"), ("b2", "f2")] {
            let d = OwedDelete {
                account: account.into(),
                client: 7,
                id: id.into(),
            };
            shared.owe_delete(&d).await.unwrap();
        }
        let own = Spool::open(&tmp.path().join("shared").join("a1")).unwrap();
        assert_eq!(own.adopt_from(shared.dir(), "a1"), 2);
        let names = |s: &Spool| s.pending().into_iter().map(|(_, j)| j.name).collect::<Vec<_>>();
        assert_eq!(names(&own), ["mine.txt"]);
        assert_eq!(names(&shared), ["theirs.txt"]);
        assert_eq!(own.owed_deletes().len(), 1);
        assert_eq!(shared.owed_deletes()[0].account, "b2");
        assert_eq!(own.adopt_from(shared.dir(), "a1"), 0, "nothing left to move");
    }

    fn journal(account: &str, name: &str) -> Journal {
        Journal {
            account: account.into(),
            client: 7,
            name: name.into(),
            replaces: vec![],
            size: 1,
            attempts: None,
            abandoned: false,
            sends: 0,
            given_up: false,
        }
    }

    #[tokio::test]
    async fn entries_that_are_not_our_own_are_refused_and_left_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(&tmp.path().join("s")).unwrap();
        let good = spool.create().unwrap();
        spool
            .commit(&good.file, &good.path, &journal("a1", "good.txt"))
            .await
            .unwrap();

        // Unparseable journal with data.
        fs::write(spool.dir().join("1-1-1.data"), b"x").unwrap();
        fs::write(spool.dir().join("1-1-1.json"), b"{not json").unwrap();
        // A journal that is a symlink to a valid entry elsewhere.
        let elsewhere = tmp.path().join("planted.json");
        fs::write(&elsewhere, serde_json::to_vec(&journal("a1", "planted.txt")).unwrap()).unwrap();
        fs::write(spool.dir().join("2-2-2.data"), b"x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.dir().join("2-2-2.json")).unwrap();
        // A valid journal whose data file is a symlink.
        fs::write(
            spool.dir().join("3-3-3.json"),
            serde_json::to_vec(&journal("a1", "c.txt")).unwrap(),
        )
        .unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.dir().join("3-3-3.data")).unwrap();
        // Owed deletes: one good, one planted as a symlink, one unparseable.
        let owed = OwedDelete {
            account: "a1".into(),
            client: 7,
            id: "f1".into(),
        };
        spool.owe_delete(&owed).await.unwrap();
        let planted = tmp.path().join("planted.delete");
        fs::write(
            &planted,
            serde_json::to_vec(&OwedDelete {
                id: "f2".into(),
                ..owed.clone()
            })
            .unwrap(),
        )
        .unwrap();
        std::os::unix::fs::symlink(&planted, spool.dir().join("x.delete")).unwrap();
        fs::write(spool.dir().join("y.delete"), b"[]").unwrap();

        // Another user's journal and owed delete (needs root to plant; skipped otherwise).
        let foreign = spool.dir().join("4-4-4.json");
        fs::write(&foreign, serde_json::to_vec(&journal("a1", "foreign.txt")).unwrap()).unwrap();
        fs::write(spool.dir().join("4-4-4.data"), b"x").unwrap();
        let foreign_delete = spool.dir().join("z.delete");
        fs::write(
            &foreign_delete,
            serde_json::to_vec(&OwedDelete {
                id: "f3".into(),
                ..owed.clone()
            })
            .unwrap(),
        )
        .unwrap();
        let as_root = std::os::unix::fs::chown(&foreign, Some(12345), None).is_ok();
        if as_root {
            std::os::unix::fs::chown(&foreign_delete, Some(12345), None).unwrap();
        }

        let pending = spool.pending();
        let names: Vec<&str> = pending.iter().map(|(_, j)| j.name.as_str()).collect();
        if as_root {
            assert_eq!(names, ["good.txt"]);
            assert_eq!(spool.owed_deletes(), vec![owed]);
        } else {
            assert_eq!(names, ["good.txt", "foreign.txt"]);
            assert_eq!(spool.owed_deletes().len(), 2);
        }
        for left in [
            "1-1-1.json",
            "2-2-2.json",
            "3-3-3.json",
            "x.delete",
            "y.delete",
            "4-4-4.json",
        ] {
            assert!(
                fs::symlink_metadata(spool.dir().join(left)).is_ok(),
                "{left} left in place"
            );
        }
    }

    #[test]
    fn a_spool_directory_that_is_not_private_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("s");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            Spool::open(&d).unwrap_err().kind(),
            std::io::ErrorKind::PermissionDenied
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        assert_eq!(
            Spool::open(&link).unwrap_err().kind(),
            std::io::ErrorKind::PermissionDenied
        );
    }

    #[tokio::test]
    async fn orphans_are_staged_data_without_a_journal_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(&tmp.path().join("s")).unwrap();
        let committed = spool.create().unwrap();
        spool
            .commit(&committed.file, &committed.path, &journal("a1", "a.txt"))
            .await
            .unwrap();
        let orphan = spool.create().unwrap();
        let before = SystemTime::now() - std::time::Duration::from_secs(5);
        std::os::unix::fs::symlink(tmp.path(), spool.dir().join("9-9-9.data")).unwrap();
        let found = spool.orphans();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, orphan.path);
        assert!(found[0].1 >= before && found[0].1 <= SystemTime::now());
    }
}
