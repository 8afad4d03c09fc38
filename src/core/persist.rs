//! Listings kept across mounts: the client list, the folders and each client's files,
//! as small JSON records sealed with an AEAD (ChaCha20-Poly1305, from `ring`) under a
//! key derived from the API key, so a disk read without the key shows no name; in a
//! private directory (0700, files 0600, written to a temp file and renamed into place,
//! opened with `O_NOFOLLOW`, and read back only when they are regular files owned by us
//! and private). Records older than the retention, and the directories of accounts not
//! mounted for as long, are removed at mount. Each record carries when it was fetched,
//! so a remount treats it by its real age, and the account it belongs to (a hash of base
//! URL and key): a record of another account is ignored and reported, never served.
//! They hold client and file names (PHI): docs/SEMANTICS.md, "Listings on disk", says
//! what is exposed at rest.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::SecureRandom;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::state::Listing;
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

/// What a sealed record starts with (then the nonce, then the sealed JSON and its tag).
const SEALED: &[u8; 8] = b"IQFS-L1\0";

/// The key kept listings of one account are sealed with: HKDF-SHA256 of the API key,
/// with the account (`core::account_id`) as context. Only a holder of the API key can
/// make it, so the records read as noise on a disk (or a backup) without it.
pub fn listings_key(api_key: &str, account: &str) -> [u8; 32] {
    struct Len;
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = [0u8; 32];
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"intakeq-fs kept listings v1");
    let info = [account.as_bytes()];
    // `expand` fails only for lengths over 255 hashes and `fill` only on a length
    // mismatch; 32 bytes is neither.
    if let Ok(okm) = salt.extract(api_key.as_bytes()).expand(&info, Len) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// The private directory the records live in.
pub(super) struct Disk {
    /// The directory (0700, ours).
    dir: PathBuf,
    /// The account the records are for (`core::account_id`): written into each record,
    /// bound to its seal, and checked when it is read back.
    account: String,
    /// Seals and opens the records (`listings_key`).
    key: LessSafeKey,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Looks like an account directory (`core::account_id`: 32 hex digits).
fn is_account_dir_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A record name an older version used (`clients.json`, `folders.json`, `files-N.json`).
fn is_record_name(name: &str) -> bool {
    name == CLIENTS
        || name == FOLDERS
        || name
            .strip_prefix("files-")
            .and_then(|r| r.strip_suffix(".json"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Is the file at `p` a sealed record (starts with `SEALED`)?
fn is_sealed(p: &Path) -> bool {
    let mut head = [0u8; SEALED.len()];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == SEALED)
}

/// Remove what is older than `keep`: records in `dir`, and (in its parent) directories
/// of other accounts that no mount has opened for that long; and, whatever their age,
/// the plain records an older version left (in `dir`, or in the parent, where a given
/// `--listings-dir` kept every account's records), which hold names in the clear. Only
/// our own regular files and our own directories named like accounts are touched.
fn sweep(dir: &Path, account: &str, keep: Duration) {
    let old = |md: &std::fs::Metadata| {
        md.uid() == uid()
            && md
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > keep)
    };
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let plain = is_record_name(&e.file_name().to_string_lossy()) && !is_sealed(&e.path());
            if e.metadata()
                .is_ok_and(|md| md.is_file() && md.uid() == uid() && (old(&md) || plain))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let Some(parent) = dir.parent() else { return };
    let Ok(rd) = std::fs::read_dir(parent) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let md = match std::fs::symlink_metadata(e.path()) {
            Ok(md) => md,
            Err(_) => continue,
        };
        if md.is_file() && md.uid() == uid() && is_record_name(&name) && !is_sealed(&e.path()) {
            // An older version's plain record of a given --listings-dir.
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        if name != account && is_account_dir_name(&name) && md.is_dir() && old(&md) {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => tracing::info!(
                    "removed the kept listings of an account not mounted for {} days",
                    keep.as_secs() / 86_400
                ),
                Err(e) => tracing::warn!("cannot remove old kept listings: {e}"),
            }
        }
    }
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
    /// Records older than `keep` and other accounts' directories not opened for as long
    /// are removed now; this directory's time is set to now (it was mounted).
    pub(super) fn open(dir: &Path, account: &str, key: &[u8; 32], keep: Duration) -> std::io::Result<Disk> {
        crate::private_dir::ensure_private_dir(dir)?;
        sweep(dir, account, keep);
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.set_modified(SystemTime::now());
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, key)
            .map(LessSafeKey::new)
            .map_err(|_| std::io::Error::other("cannot make the listings key"))?;
        Ok(Disk {
            dir: dir.to_path_buf(),
            account: account.to_string(),
            key,
        })
    }

    /// What a record's seal is bound to: its name and the account, so a record cannot be
    /// moved to another name or account and still open.
    fn aad(&self, name: &str) -> Vec<u8> {
        format!("{}\n{name}", self.account).into_bytes()
    }

    /// `SEALED`, a random nonce, then `plain` sealed (with its tag).
    fn seal(&self, name: &str, plain: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| std::io::Error::other("no random bytes for a nonce"))?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(name)),
                &mut sealed,
            )
            .map_err(|_| std::io::Error::other("cannot seal a kept listing"))?;
        let mut out = Vec::with_capacity(SEALED.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plain record of a sealed one, if this key and name open it.
    fn open_sealed(&self, name: &str, bytes: &[u8]) -> Option<Vec<u8>> {
        let rest = bytes.strip_prefix(SEALED.as_slice())?;
        if rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(self.aad(name)), &mut buf)
            .ok()?;
        Some(plain.to_vec())
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
            f.write_all(&self.seal(name, record.to_string().as_bytes())?)?;
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
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).ok()?;
        let Some(text) = self.open_sealed(name, &bytes) else {
            // A plain record of an older version holds names in the clear: it goes. A
            // sealed one this key cannot open (another key, or tampered) is ignored.
            if !bytes.starts_with(SEALED) {
                let _ = std::fs::remove_file(&path);
                tracing::info!("removed an unsealed kept listing of an older version");
            } else {
                tracing::warn!(
                    "ignoring kept listing {}: it does not open with this account's key",
                    path.display()
                );
            }
            return None;
        };
        match serde_json::from_slice::<Value>(&text) {
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
        if self.st().resumed_clients.contains(&c) {
            // An earlier run's upload into it may have landed after it was taken.
            return false;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
    const MONTH: Duration = Duration::from_secs(30 * 86_400);

    fn disk(dir: &Path, key: &[u8; 32]) -> Disk {
        Disk::open(dir, ACCOUNT, key, MONTH).unwrap()
    }

    fn aged(p: &Path, days: u64) {
        let f = std::fs::File::open(p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
            .unwrap();
    }

    #[test]
    fn a_kept_record_holds_no_name_and_opens_only_with_its_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(ACCOUNT);
        let key = listings_key("the-api-key", ACCOUNT);
        assert_ne!(key, listings_key("another-key", ACCOUNT));
        assert_ne!(key, listings_key("the-api-key", "another account"));
        let d = disk(&dir, &key);
        let rec = clients_record(&[Client {
            id: 1001,
            name: "Ada Lovelace".into(),
        }]);
        d.save(CLIENTS, &rec);
        let bytes = std::fs::read(dir.join(CLIENTS)).unwrap();
        assert!(bytes.starts_with(SEALED));
        for needle in [&b"Lovelace"[..], b"1001", b"clients", ACCOUNT.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{needle:?} readable at rest"
            );
        }
        let back = d.load(CLIENTS).unwrap();
        assert_eq!(back["clients"][0]["name"], "Ada Lovelace");
        assert!(disk(&dir, &listings_key("another-key", ACCOUNT))
            .load(CLIENTS)
            .is_none());
        // Moved to another record's name, it does not open either.
        std::fs::rename(dir.join(CLIENTS), dir.join(FOLDERS)).unwrap();
        assert!(d.load(FOLDERS).is_none());
    }

    #[test]
    fn an_unsealed_record_of_an_older_version_is_removed_unread() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(ACCOUNT);
        let d = disk(&dir, &[1; 32]);
        let plain = json!({"account": ACCOUNT, "fetched_ms": now_ms(), "clients": [{"id": 1, "name": "Ada"}]});
        std::fs::write(dir.join(CLIENTS), plain.to_string()).unwrap();
        std::fs::set_permissions(dir.join(CLIENTS), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert!(d.load(CLIENTS).is_none());
        assert!(!dir.join(CLIENTS).exists());
    }

    #[test]
    fn an_older_versions_plain_records_are_removed_at_mount_wherever_they_lie() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(ACCOUNT);
        std::fs::create_dir(&dir).unwrap();
        for p in [
            dir.join("files-1001.json"),
            tmp.path().join(CLIENTS),
            tmp.path().join("files-7.json"),
        ] {
            std::fs::write(&p, r#"{"clients":[{"id":1,"name":"Ada"}]}"#).unwrap();
        }
        std::fs::write(tmp.path().join("notes.json"), "not ours to judge").unwrap();
        let d = disk(&dir, &[1; 32]);
        d.save(FOLDERS, &folders_record(&[]));
        let _ = disk(&dir, &[1; 32]);
        assert!(!dir.join("files-1001.json").exists());
        assert!(!tmp.path().join(CLIENTS).exists() && !tmp.path().join("files-7.json").exists());
        assert!(tmp.path().join("notes.json").exists(), "other files are left alone");
        assert!(dir.join(FOLDERS).exists(), "a sealed record stays");
    }

    #[test]
    fn old_records_and_accounts_not_mounted_for_the_retention_are_removed_at_mount() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(ACCOUNT);
        let d = disk(&dir, &[1; 32]);
        d.save(CLIENTS, &clients_record(&[]));
        d.save(FOLDERS, &folders_record(&[]));
        aged(&dir.join(CLIENTS), 31);
        let gone = tmp.path().join("fedcba9876543210fedcba9876543210");
        let recent = tmp.path().join("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        let not_ours = tmp.path().join("notes");
        for other in [&gone, &recent, &not_ours] {
            std::fs::create_dir(other).unwrap();
            std::fs::write(other.join("clients.json"), "x").unwrap();
        }
        aged(&gone, 31);
        aged(&recent, 29);
        aged(&not_ours, 400);
        aged(&dir, 400);
        let _ = disk(&dir, &[1; 32]);
        assert!(!dir.join(CLIENTS).exists(), "a 31-day-old record goes");
        assert!(dir.join(FOLDERS).exists());
        assert!(!gone.exists(), "an account not mounted for 31 days goes");
        assert!(recent.exists() && not_ours.exists());
        assert!(
            dir.exists(),
            "this account's own directory stays, and is marked mounted now"
        );
        let age = std::fs::metadata(&dir).unwrap().modified().unwrap().elapsed().unwrap();
        assert!(age < Duration::from_secs(60));
    }
}
