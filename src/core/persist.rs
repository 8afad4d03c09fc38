//! Listings kept across mounts: the client list, the folders and each client's files,
//! as small JSON records in a private directory (0700, files 0600, written to a temp
//! file and renamed into place, opened with `O_NOFOLLOW`, and read back only when they
//! are regular files owned by us and private). Each record carries when it was fetched,
//! so a remount treats it by its real age, and the account it belongs to (a hash of base
//! URL and key): a record of another account is ignored and reported, never served.
//! They hold client and file names (PHI): docs/SEMANTICS.md, "Listings on disk", says
//! what is exposed at rest.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::time::Instant;

use super::metadata::Listing;
use super::Core;
use crate::remote::{Client, ClientId, Folder, Remote, RemoteFile};

/// The client list's record.
pub(super) const CLIENTS: &str = "clients.json";
/// The folders' record.
pub(super) const FOLDERS: &str = "folders.json";
/// Largest record read back (a client with very many files stays well below).
const MAX_RECORD: u64 = 64 << 20;

/// The record of client `c`'s files.
pub(super) fn files_name(c: ClientId) -> String {
    format!("files-{c}.json")
}

/// The private directory the records live in.
#[derive(Debug)]
pub(super) struct Disk {
    /// The directory (0700, ours).
    dir: PathBuf,
    /// The account the records are for (`core::account_id`): written into each record
    /// and checked when it is read back.
    account: String,
}

/// The field of a record that names its account.
const ACCOUNT: &str = "account";

fn uid() -> u32 {
    crate::private_dir::euid()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Disk {
    /// Create (0700) or check the directory with the same rules as every private place
    /// (`private_dir::ensure_private_dir`: ours, not a symlink, nobody else may write).
    pub(super) fn open(dir: &Path, account: &str) -> std::io::Result<Disk> {
        crate::private_dir::ensure_private_dir(dir)?;
        Ok(Disk {
            dir: dir.to_path_buf(),
            account: account.to_string(),
        })
    }

    /// Write `name` atomically (temp file 0600, then rename). Failures are logged and
    /// otherwise ignored: the records are a cache.
    pub(super) fn save(&self, name: &str, record: &Value) {
        let mut record = record.clone();
        if let Some(fields) = record.as_object_mut() {
            fields.insert(ACCOUNT.into(), Value::String(self.account.clone()));
        }
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(record.to_string().as_bytes())?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!("cannot keep a listing in {}: {e}", self.dir.display());
        }
    }

    /// Read `name` back, if it is a private regular file of ours holding JSON.
    pub(super) fn load(&self, name: &str) -> Option<Value> {
        let path = self.dir.join(name);
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("ignoring kept listing {}: {e}", path.display());
                }
                return None;
            }
        };
        let md = f.metadata().ok()?;
        if !md.is_file() || md.uid() != uid() || md.mode() & 0o077 != 0 || md.len() > MAX_RECORD {
            tracing::warn!(
                "ignoring kept listing {}: not a private regular file of ours",
                path.display()
            );
            return None;
        }
        let mut text = String::new();
        f.read_to_string(&mut text).ok()?;
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.get(ACCOUNT).and_then(Value::as_str) == Some(self.account.as_str()) => Some(v),
            Ok(_) => {
                // Never served: its client ids would be another practice's patients.
                tracing::warn!(
                    "ignoring kept listing {}: it belongs to another account (or to a version that did not record one)",
                    path.display()
                );
                None
            }
            Err(e) => {
                tracing::debug!("ignoring unreadable kept listing {}: {e}", path.display());
                None
            }
        }
    }
}

pub(super) fn clients_record(rows: &[Client]) -> Value {
    let rows: Vec<Value> = rows.iter().map(|c| json!({"id": c.id, "name": c.name})).collect();
    json!({"fetched_ms": now_ms(), "clients": rows})
}

pub(super) fn folders_record(rows: &[Folder]) -> Value {
    let rows: Vec<Value> = rows.iter().map(|f| json!({"id": f.id, "name": f.name})).collect();
    json!({"fetched_ms": now_ms(), "folders": rows})
}

/// A client's listing as fetched at `at` (its age is kept, not reset by the save).
pub(super) fn files_record(rows: &[RemoteFile], at: Instant) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|f| {
            json!({"id": f.id, "name": f.name, "size": f.size, "created_ms": f.created_ms,
                   "content_type": f.content_type, "folder_id": f.folder_id})
        })
        .collect();
    let fetched = now_ms().saturating_sub(at.elapsed().as_millis() as i64);
    json!({"fetched_ms": fetched, "files": rows})
}

/// The instant a record fetched at `fetched_ms` (wall clock) corresponds to, so its
/// age counts from then; `None` if it is older than this clock can express.
fn fetched_at(record: &Value) -> Option<Instant> {
    let ms = record.get("fetched_ms")?.as_i64()?;
    let age = Duration::from_millis(now_ms().saturating_sub(ms).max(0) as u64);
    Instant::now().checked_sub(age)
}

fn rows<'a>(record: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    record.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

impl<R: Remote> Core<R> {
    /// At mount: the client list and the folders kept by an earlier mount, with their age.
    /// Client listings are read when first needed (`load_listing`).
    pub(super) fn load_saved(&self) {
        let Some(disk) = &self.disk else { return };
        if let Some(rec) = disk.load(CLIENTS) {
            if let Some(at) = fetched_at(&rec) {
                let list: Vec<Client> = rows(&rec, "clients")
                    .filter_map(|r| {
                        Some(Client {
                            id: r.get("id")?.as_u64()?,
                            name: text(r, "name")?,
                        })
                    })
                    .collect();
                tracing::debug!("{} clients kept from an earlier mount", list.len());
                let list = std::sync::Arc::new(list);
                let mut st = self.st();
                for r in list.iter() {
                    st.client(r.id).known = Some((true, at));
                }
                st.client_list = Some((list, at));
            }
        }
        if let Some(rec) = disk.load(FOLDERS) {
            if let Some(at) = fetched_at(&rec) {
                let folders: Vec<Folder> = rows(&rec, "folders")
                    .filter_map(|r| {
                        Some(Folder {
                            id: text(r, "id")?,
                            name: text(r, "name")?,
                        })
                    })
                    .collect();
                self.st().folders = Some((folders, at));
            }
        }
    }

    /// Read client `c`'s kept listing into memory, if there is one and memory has none.
    pub(super) fn load_listing(&self, c: ClientId) -> bool {
        let Some(disk) = &self.disk else { return false };
        let Some(rec) = disk.load(&files_name(c)) else {
            return false;
        };
        let Some(at) = fetched_at(&rec) else { return false };
        let files: Vec<RemoteFile> = rows(&rec, "files")
            .filter_map(|r| {
                Some(RemoteFile {
                    id: text(r, "id")?,
                    name: text(r, "name")?,
                    size: r.get("size")?.as_u64()?,
                    created_ms: r.get("created_ms")?.as_i64()?,
                    content_type: text(r, "content_type").unwrap_or_default(),
                    folder_id: text(r, "folder_id"),
                })
            })
            .collect();
        let mut st = self.st();
        let cs = st.client(c);
        if cs.listing.is_some() {
            return true;
        }
        cs.listing = Some(Listing { files, at });
        cs.view = None;
        true
    }

    /// How old the listing of `c` in memory is (kept ones count from when they were
    /// fetched), for a status display; no call.
    pub fn listing_age(&self, c: ClientId) -> Option<Duration> {
        let st = self.st();
        st.clients.get(&c)?.listing.as_ref().map(|l| l.at.elapsed())
    }

    /// How old the client list is; no call.
    pub fn client_list_age(&self) -> Option<Duration> {
        self.st().client_list.as_ref().map(|(_, at)| at.elapsed())
    }
}
