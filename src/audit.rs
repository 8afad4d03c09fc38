//! The audit log (`--audit-log PATH`): one JSON line per upload (and the listing that
//! confirms it), delete, rename and opening for reading of a patient's file, naming the person (the FUSE caller's uid
//! and user name) on whose behalf it was done. Private (0600, `O_NOFOLLOW`, never an
//! existing file others could read), rotated by size, names only as keyed hashes
//! unless `--audit-names`; the key never appears in it.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

tokio::task_local! {
    /// The uid of the person a task works for (the FUSE caller), set by the adapter.
    static CALLER: u32;
}

/// Run `fut` on behalf of user `uid`: what it records names them.
pub async fn acting_for<F: Future>(uid: Option<u32>, fut: F) -> F::Output {
    match uid {
        Some(u) => CALLER.scope(u, fut).await,
        None => fut.await,
    }
}

/// The uid of the person the current task works for, if any (background work: none).
pub fn caller() -> Option<u32> {
    CALLER.try_with(|u| *u).ok()
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A file's bytes went to the server (a new file, or a new version that replaces).
    Upload,
    /// A file was deleted from the server (by the person, or replaced by a new version).
    Delete,
    /// A file got another name.
    Rename,
    /// A file was opened for reading.
    Read,
    /// An upload the server accepted without saying its id shows in a listing as this
    /// file (the `upload` line before it has `file_id: null`).
    Confirm,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Upload => "upload",
            Op::Delete => "delete",
            Op::Rename => "rename",
            Op::Read => "read",
            Op::Confirm => "confirm",
        }
    }
}

/// One line of the log.
#[derive(Debug)]
pub struct Record<'a> {
    pub op: Op,
    /// The person: the FUSE caller's uid (`None`: the mount's own background work,
    /// e.g. a retry, with nobody at the keyboard).
    pub uid: Option<u32>,
    pub client: u64,
    /// The server's id of the file (the new one for an upload), when known.
    pub file_id: Option<&'a str>,
    pub size: Option<u64>,
    /// The file's name (and for a rename, `to` is the new one).
    pub name: &'a str,
    pub to: Option<&'a str>,
    /// `Ok`, or the one-line reason it failed.
    pub result: Result<(), String>,
}

/// An open audit log.
pub struct AuditLog {
    path: PathBuf,
    names: bool,
    max_bytes: u64,
    keep: u32,
    file: Mutex<File>,
    users: Mutex<HashMap<u32, Option<String>>>,
}

impl AuditLog {
    /// Open (create 0600, or append to a private file of ours) `path`. `names`: write
    /// file names as they are (PHI) instead of their keyed hash. Rotated to `path.1` …
    /// `path.<keep>` once it reaches `max_bytes`.
    pub fn open(path: &Path, names: bool, max_bytes: u64, keep: u32) -> std::io::Result<AuditLog> {
        let file = crate::private_dir::open_given_append(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            names,
            max_bytes,
            keep: keep.max(1),
            file: Mutex::new(file),
            users: Mutex::new(HashMap::new()),
        })
    }

    /// Append one record. A failure to write is logged (without the record) and
    /// otherwise ignored: the operation it describes has already happened.
    pub fn record(&self, r: &Record<'_>) {
        let user = r.uid.and_then(|u| self.user_name(u));
        let line = self.line(r, user.as_deref());
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::warn!("cannot write the audit log {}: {e}", self.path.display());
            return;
        }
        if f.metadata().is_ok_and(|m| m.len() >= self.max_bytes) {
            match self.rotate() {
                Ok(new) => *f = new,
                Err(e) => tracing::warn!("cannot rotate the audit log {}: {e}", self.path.display()),
            }
        }
    }

    fn line(&self, r: &Record<'_>, user: Option<&str>) -> String {
        let name = |n: &str| match self.names {
            true => n.to_string(),
            false => crate::phi::Name(n).hashed(),
        };
        let mut v = serde_json::json!({
            "time": rfc3339(SystemTime::now()),
            "uid": r.uid,
            "user": user,
            "op": r.op.as_str(),
            "client": r.client,
            "file_id": r.file_id,
            "size": r.size,
            "name": name(r.name),
            "result": match &r.result {
                Ok(()) => "ok".to_string(),
                Err(e) => e.clone(),
            },
        });
        if let (Some(to), Some(o)) = (r.to, v.as_object_mut()) {
            o.insert("to".into(), serde_json::Value::String(name(to)));
        }
        let mut s = v.to_string();
        s.push('\n');
        s
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.entry(uid).or_insert_with(|| crate::owner::user_name(uid)).clone()
    }

    /// `path.<keep-1>` → `path.<keep>` … `path` → `path.1`, then a new `path`.
    fn rotate(&self) -> std::io::Result<File> {
        let nth = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        for n in (1..self.keep).rev() {
            let from = nth(n);
            if from.exists() {
                std::fs::rename(&from, nth(n + 1))?;
            }
        }
        std::fs::rename(&self.path, nth(1))?;
        crate::private_dir::open_given_append(&self.path)
    }
}

/// `2026-12-05T08:01:17Z` (UTC, seconds).
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(op: Op, name: &'static str) -> Record<'static> {
        Record {
            op,
            uid: Some(0),
            client: 1001,
            file_id: Some("f-1"),
            size: Some(12),
            name,
            to: None,
            result: Ok(()),
        }
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_457_677);
        assert_eq!(rfc3339(t), "2026-12-05T08:01:17Z");
        let leap = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn lines_are_json_with_the_person_and_hashed_names_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, false, 1 << 20, 3).unwrap();
        log.record(&record(Op::Upload, "Jane Doe intake.pdf"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("Jane"), "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["op"], "upload");
        assert_eq!(v["uid"], 0);
        assert_eq!(v["user"], "root");
        assert_eq!(v["client"], 1001);
        assert_eq!(v["file_id"], "f-1");
        assert_eq!(v["size"], 12);
        assert_eq!(v["result"], "ok");
        assert!(v["name"].as_str().unwrap().starts_with("name#"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn names_are_written_only_when_asked_and_rotation_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, true, 200, 2).unwrap();
        for _ in 0..10 {
            log.record(&record(Op::Read, "notes.txt"));
        }
        assert!(std::fs::read_to_string(&path).unwrap_or_default().len() < 400);
        let first = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
        assert!(first.contains("\"name\":\"notes.txt\""), "{first}");
        assert!(dir.path().join("audit.log.2").exists());
        assert!(!dir.path().join("audit.log.3").exists());
    }
}
