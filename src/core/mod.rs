//! The filesystem core: the tree of clients, folders and files, inode numbers, open
//! handles, metadata caching, staged writes and their uploads. It answers with data
//! (attributes, entries, bytes) or a [`CoreError`], never with FUSE replies, and talks
//! to IntakeQ only through the [`Remote`] trait.
//!
//! # Layout
//! One file per question a maintainer asks; each holds one `impl Core` block.
//! - `state.rs`: the shared state and the data types it holds (`Key`, `Node`, `Handle`,
//!   `State`, `ClientState`, `Listing`, `DirView`, `Flight`, `Due`); it imports no other
//!   core file that imports it back (tests/layout.rs checks there is no import circle).
//!   `staged.rs`: a written file's staged bytes (`Writer`).
//! - `metadata.rs`: listings (folders, a client's files, the client list), their TTL and
//!   single flight. `bursts.rs`: which priority a browsing process's listing goes at (a
//!   click, or a file manager's item count). `view.rs`: the names a directory
//!   shows, computed from them. `refresh.rs`: stale listings served at once and
//!   refreshed behind, at `Priority::Refresh`. `persist.rs`: listings kept on disk
//!   across mounts. `byname.rs`: `/by-name/`, one symlink per client.
//! - `namespace.rs`: lookup, getattr, readdir, statfs. `read.rs`: open and read.
//! - `life.rs`: a written file's life cycle, pure (`Cycle`, `Life`, `Wait`, `Event`,
//!   with the transition tables and a test that checks every cell). `writer.rs`: open
//!   for writing (no download: filled lazily), write, truncate, flush, release.
//!   `overlay.rs`: what stays local for a while (scratch files, temp files awaiting their
//!   rename, deferred closes), with `patterns.rs` (which names are which).
//!   `upload.rs`: `upload_writer`, the one way anything is uploaded (every upload is a
//!   writer: a close, a resumed journal, a rename's copy), and the background retry.
//!   `land.rs`: the protocol it runs (journal, upload, confirm, delete what it
//!   replaces, drop the journal).
//! - `delete.rs`: unlink, replaced files, owed deletes, renames given up.
//!   `rename.rs`: rename. `resume.rs`: what an earlier run left in the spool, and the
//!   background loop.
//! - `content.rs` (downloaded bytes), `spool.rs` (staged bytes and journal on disk),
//!   `names.rs` (name mapping), `error.rs` (`CoreError`).
//! - `xattr.rs`: metadata as extended attributes (`user.intakeq.*`), from memory only.
//!   `status.rs`: read-only counts for `intakeq-fs status`.
//!
//! # Invariants
//! - An inode number always means the same client, folder or file id (`Key`s are never
//!   reused); an overwrite or rename re-points the inode the user holds (`State::rekey`).
//! - `close()` returning 0 means the server has the bytes; until then they are in the
//!   spool, and from the moment an upload starts its journal entry is on disk.
//! - Staged bytes of a file that was unlinked or renamed over are never uploaded.
//! - No request is blindly repeated when its first attempt may have taken effect: a
//!   listing decides first.
//!
//! # Locks, and the order they are taken in
//! 1. Flight locks (`Core::flight`, tokio mutexes, held across `.await`): one per
//!    listing (`Folders`, `Files(c)`, `Clients`) so concurrent callers share one
//!    request, and `Mutate(c)`, which serialises a client's uploads, deletes and renames.
//!    A task holds at most one; the mutation paths call the remote directly while they
//!    hold `Mutate(c)`, never a listing's flight.
//! 2. `Core::state` (std mutex, never held across `.await`), then a `Writer`'s mutex
//!    (state → writer, never the reverse: `retire_writer` checks a writer's handles under
//!    the state lock so a new opener cannot join a writer being retired).
//! 3. `Core::content` (std mutex, never held across `.await`), then an `Entry`'s backing
//!    (cache → entry). The state and content locks are never held together.
//!
//!    A writer's fill gate (tokio mutex, held across `.await` while its current bytes
//!    are fetched into the spool, or while it is truncated to 0) is taken with no other
//!    lock held; the writer's own mutex only briefly inside it.
//! 4. `Core::flights` (std mutex) only to find a flight lock; nothing else under it.
//!    `Core::queued_previews` (std mutex) likewise: only to insert, take or remove.
//!
//! Listing files on disk (`persist.rs`) are written after the state lock is released.

mod bursts;
pub use self::bursts::Browser;
mod byname;
mod confirm;
pub mod content;
mod delete;
pub mod error;
pub mod journal;
mod land;
mod life;
mod metadata;
pub mod names;
mod namespace;
mod overlay;
pub mod patterns;
mod persist;
pub use self::persist::listings_key;
mod read;
mod refresh;
mod rename;
mod resume;
pub mod spool;
mod spool_lock;
mod staged;
pub use self::confirm::CONFIRM_SETTLE;
pub use self::resume::ORPHAN_KEEP;
mod state;
pub mod status;
mod upload;
mod view;
mod writer;
pub mod xattr;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use self::content::ContentCache;
pub use self::error::{CoreError, CoreResult};
use self::spool::Spool;
use self::state::Flight;
use self::state::{Key, State};
use crate::remote::Remote;

pub type Ino = u64;
pub type Fh = u64;
pub const ROOT_INO: Ino = 1;
const CLIENTS_INO: Ino = 2;
const BY_NAME_INO: Ino = 3;
/// The client directories, by id, under the root.
pub const CLIENTS_DIR: &str = "clients";
/// One symlink per client, `<Name> (<id>)` -> `../clients/<id>`, under the root.
pub const BY_NAME_DIR: &str = "by-name";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// A `/by-name/` entry: a symlink to a client directory.
    Symlink,
}

/// Attributes as the core knows them; the adapter adds owner and block counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
}

#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: String,
    pub attr: Attr,
}

/// How a file is being opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

/// Who is reading, as far as the adapter can tell (from the calling process): decides
/// the priority of the download and whether `Options::previews` refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Anyone else: an application the user opened the file with, `cp`, a script.
    User,
    /// A file manager's own process where its copies cannot be told apart from its
    /// other reads (a copy runs in the same GIO thread pool as libfm's type sniffing):
    /// `Priority::Preview`, never refused.
    FileManager,
    /// A file manager's own preview, told apart by the thread or the open's flags
    /// (libfm's thumbnail thread `loader`, GIO's content sniffing with `O_NOATIME`):
    /// `Priority::Preview`, refused at once when previews are off, like a thumbnailer.
    FileManagerPreview,
    /// A thumbnailer (tumblerd, gnome and ffmpeg thumbnailers, ...): `Priority::Preview`,
    /// refused at once when previews are off.
    Thumbnailer,
}

/// What `open`/`create` hand back.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: Fh,
    /// The kernel may keep cached pages from earlier opens (content unchanged).
    pub keep_cache: bool,
    /// Reads bypass the kernel's page cache (a preview's handle): a thumbnailer's read
    /// waiting for its download then holds no page of the file locked, so a person's
    /// read of the same file reaches the mount and takes the download over at once
    /// instead of waiting in the kernel behind the preview.
    pub direct: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// The core's settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub read_only: bool,
    pub metadata_ttl: Duration,
    pub cache_bytes: u64,
    pub allow_other: bool,
    pub spool_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// Disk budget for downloads too large for memory (unlinked temp files).
    pub disk_cache_bytes: u64,
    /// Identifies the account (see [`account_id`]); journal entries of other
    /// accounts are left alone.
    pub account: String,
    /// How long the client list (`/clients`, `/by-name`) is served before it is
    /// refreshed behind the answer, at `Priority::Refresh`.
    pub client_list_ttl: Duration,
    /// Private directory (0700, files 0600) where listings and the client list are kept
    /// across mounts; `None`: kept in memory only (`--no-keep-listings`).
    pub state_dir: Option<PathBuf>,
    /// The key kept listings are sealed with (`persist::listings_key`, derived from the
    /// API key): without it they read as noise.
    pub listings_key: [u8; 32],
    /// How long kept listings, and the listings of accounts not mounted meanwhile, are
    /// kept (`--keep-listings-days`, default 30 days).
    pub keep_listings_for: Duration,
    /// Serve reads by thumbnailers (`Priority::Preview`); false: they fail at once.
    pub previews: bool,
}

impl Options {
    /// The options of a mount whose staged bytes go to `spool_dir`, large downloads to
    /// `cache_dir`, for `account` ([`account_id`]), with the command line's defaults:
    /// read-write, private, listings trusted 60 s, the client list 4 h, 256 MiB of
    /// memory and 1 GiB of disk cache, previews served, and listings kept in memory only
    /// (`state_dir: None`; set it together with `listings_key`, which seals them).
    pub fn new(spool_dir: PathBuf, cache_dir: PathBuf, account: &str) -> Options {
        Options {
            read_only: false,
            metadata_ttl: Duration::from_secs(60),
            cache_bytes: 256 << 20,
            allow_other: false,
            spool_dir,
            cache_dir,
            disk_cache_bytes: 1 << 30,
            account: account.to_string(),
            client_list_ttl: Duration::from_secs(4 * 3600),
            state_dir: None,
            listings_key: [0; 32],
            keep_listings_for: Duration::from_secs(30 * 86_400),
            previews: true,
        }
    }
}

/// A stable, non-reversible tag for an account: FNV-1a of base URL and key. It names
/// the default spool directory and is written in journal entries; the key itself is
/// never written anywhere.
pub fn account_id(base_url: &str, key: &str) -> String {
    let h1 = names::fnv1a(format!("{base_url}\n{key}").as_bytes());
    let h2 = names::fnv1a(format!("{key}\n{base_url}").as_bytes());
    format!("{h1:016x}{h2:016x}")
}

/// The filesystem core over a remote `R`.
pub struct Core<R: Remote> {
    /// Shared with download tasks, which outlive the request that started them.
    remote: Arc<R>,
    opts: Options,
    state: Mutex<State>,
    content: Mutex<ContentCache>,
    flights: Mutex<HashMap<Flight, Arc<tokio::sync::Mutex<()>>>>,
    spool: Spool,
    mounted_at: SystemTime,
    /// Uploads (with their confirming listing and deletes) running now; drain at
    /// unmount waits for this to reach 0.
    uploads: tokio::sync::watch::Sender<usize>,
    /// Wakes the background loop when a close deferred an upload to the last release
    /// (`overlay.rs`).
    wake: tokio::sync::Notify,
    /// Preview downloads still waiting for their answer (file id -> their task): a
    /// user's read of the same file cancels one and downloads at its own priority.
    queued_previews: Arc<Mutex<HashMap<String, tokio::task::AbortHandle>>>,
    /// Listings under way per browsing process: a burst of them is a file manager's
    /// item counts (`metadata::Bursts`). Held only to count one in or out.
    bursts: Arc<Mutex<self::bursts::Bursts>>,
    /// Wakes the refresher (`run_refresh`) when a stale listing was served.
    refresh_due: tokio::sync::Notify,
    /// Listings kept on disk across mounts, if `Options::state_dir` is set.
    disk: Option<persist::Disk>,
    /// The audit log, if the mount keeps one (`set_audit`, once, before serving).
    audit: std::sync::OnceLock<Arc<crate::audit::AuditLog>>,
    /// `--no-delete`: a person's unlink of a file on the server is refused.
    no_delete: std::sync::atomic::AtomicBool,
}

impl<R: Remote> std::fmt::Debug for Core<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("opts", &self.opts).finish_non_exhaustive()
    }
}

impl<R: Remote> Core<R> {
    pub fn new(remote: R, opts: Options) -> std::io::Result<Core<R>> {
        let spool = Spool::open(&opts.spool_dir)?;
        std::fs::create_dir_all(&opts.cache_dir)?;
        std::fs::set_permissions(&opts.cache_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let mut st = State::default();
        st.next_ino = 0;
        st.next_fh = 1;
        let root = st.ino_for(Key::Root, ROOT_INO, Kind::Dir);
        let clients = st.ino_for(Key::Clients, ROOT_INO, Kind::Dir);
        let by_name = st.ino_for(Key::ByName, ROOT_INO, Kind::Dir);
        debug_assert_eq!((root, clients, by_name), (ROOT_INO, CLIENTS_INO, BY_NAME_INO));
        let disk = match &opts.state_dir {
            Some(dir) => Some(persist::Disk::open(
                dir,
                &opts.account,
                &opts.listings_key,
                opts.keep_listings_for,
            )?),
            None => None,
        };
        let core = Core {
            remote: Arc::new(remote),
            content: Mutex::new(ContentCache::new(
                opts.cache_bytes,
                opts.disk_cache_bytes,
                opts.cache_dir.clone(),
            )),
            opts,
            state: Mutex::new(st),
            flights: Mutex::new(HashMap::new()),
            spool,
            mounted_at: SystemTime::now(),
            uploads: tokio::sync::watch::Sender::new(0),
            wake: tokio::sync::Notify::new(),
            queued_previews: Arc::new(Mutex::new(HashMap::new())),
            bursts: Arc::default(),
            refresh_due: tokio::sync::Notify::new(),
            disk,
            audit: std::sync::OnceLock::new(),
            no_delete: std::sync::atomic::AtomicBool::new(false),
        };
        core.inherit_owed_deletes();
        core.inherit_journals();
        core.sweep_orphans();
        // Scratch files of an earlier run that died: they never had anywhere to go.
        core.spool.clear_scratch();
        core.load_saved();
        Ok(core)
    }

    pub fn remote(&self) -> &R {
        &self.remote
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Keep an audit log of uploads, deletes, renames and reads (set once, at mount).
    pub fn set_audit(&self, log: Arc<crate::audit::AuditLog>) {
        let _ = self.audit.set(log);
    }

    /// Refuse a person's unlink of a file on the server with EPERM (`--no-delete`):
    /// a desk's delete of a whole client folder removes nothing. Saves still replace.
    pub fn refuse_deletes(&self) {
        self.no_delete.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Write `r` to the audit log, if there is one.
    fn audit(&self, r: crate::audit::Record<'_>) {
        if let Some(a) = self.audit.get() {
            a.record(&r);
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache(&self) -> MutexGuard<'_, ContentCache> {
        self.content.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Run blocking file work (fsync, copies, whole-file reads and compares) on tokio's
/// blocking pool, never on a runtime worker that other requests are waiting for.
async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<std::io::Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::from(std::io::Error::other(e)))?
}
