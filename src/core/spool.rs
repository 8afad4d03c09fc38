//! The private spool: where written data waits for its upload, on disk (files 0600 in
//! a 0700 directory), never only in memory. Each staged upload is `<n>.data` plus,
//! from the moment `close()` starts the upload, a fsynced journal entry `<n>.json`
//! saying where it goes and what it replaces, so a later mount can finish the job.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::blocking;
use super::content::Mode0600;
use crate::remote::ClientId;

/// What a staged upload is for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Journal {
    /// Which account (a hash of base URL and key) the upload belongs to: a spool
    /// shared by two accounts never sends one account's file to the other.
    pub account: String,
    pub client: ClientId,
    pub name: String,
    /// Files to delete once the upload is confirmed (the overwritten file, the
    /// rename source, an earlier upload of the same handle).
    pub replaces: Vec<String>,
    pub size: u64,
    /// Upload attempts of this staged file so far (this one included), any of which may
    /// have landed without being confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Attempts>,
    /// Given up (a rename that failed): nothing is to be uploaded, and copies that
    /// `attempts` may have left are to be deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
}

/// Uploads that may have landed unconfirmed (their confirming listing failed): the file
/// ids listed before the first of them, and the size each sent. A file of the same name
/// outside `before` with one of those sizes is one of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempts {
    pub before: Vec<String>,
    pub sizes: Vec<u64>,
}

/// A file replaced through the mount (overwrite, rename) whose DELETE failed: it is
/// hidden from the mount and deleted later, by the background retry or the next mount.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwedDelete {
    pub account: String,
    pub client: ClientId,
    pub id: String,
}

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
    /// Open (creating) the spool directory and make it private.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            seq: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new empty staged file.
    pub fn create(&self) -> std::io::Result<SpoolFile> {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{ms}-{}-{n}.data", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&path)?;
        Ok(SpoolFile { path, file })
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

    /// Deletes an earlier run owed.
    pub fn owed_deletes(&self) -> Vec<OwedDelete> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("delete"))
            .filter_map(|p| fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok()))
            .collect()
    }

    /// Staged uploads with a journal entry: what an earlier run did not finish.
    pub fn pending(&self) -> Vec<(PathBuf, Journal)> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&self.dir) else { return out };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let data = p.with_extension("data");
            match fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
            {
                Some(j) if data.exists() => out.push((data, j)),
                _ => tracing::warn!("spool: ignoring unreadable journal entry {}", p.display()),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

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
    let prepare = || -> std::io::Result<File> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode_0600()
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
        };
        spool.commit(&sf.file, &sf.path, &j).await.unwrap();
        assert_eq!(fs::metadata(sf.journal_path()).unwrap().mode() & 0o777, 0o600);
        assert_eq!(spool.pending(), vec![(sf.path.clone(), j)]);
        spool.remove(&sf.path);
        assert!(spool.pending().is_empty());
        assert!(!sf.path.exists());
    }
}
