//! The core's shared state and the data types it holds: what each inode stands for
//! (`Key`, `Node`), which handle is which, the per-client listings and views
//! (`ClientState`, `Listing`, `DirKey`, `DirView`), `/by-name` (`ByNameView`), what a
//! single flight guards (`Flight`), listings due a refresh (`Due`). Data only: the
//! behaviour lives in the files that answer each question (`core/mod.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::bursts::PerProcess;
use super::content::Entry;
use super::spool::Journal;
use super::staged::Writer;
use super::{DirEntry, Fh, Ino, Kind};
use crate::remote::{Client, ClientId, Folder, RemoteFile};

/// What an inode stands for. Keys are never reused for another thing, so an inode
/// number always means the same client, folder or file id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// `/`.
    Root,
    /// `/clients`.
    Clients,
    /// `/clients/<id>`.
    Client(ClientId),
    /// `/by-name`.
    ByName,
    /// `/by-name/<Name> (<id>)`: a symlink to `../clients/<id>`.
    NameLink(ClientId),
    /// A folder directory inside a client, listed or not.
    Folder(ClientId, String),
    /// A server file, by its id.
    File(String),
    /// A file created through the mount and not yet confirmed by the server.
    Local(u64),
}

/// One inode.
#[derive(Clone, Debug)]
pub(super) struct Node {
    /// What it stands for.
    pub(super) key: Key,
    /// The directory it was last seen in.
    pub(super) parent: Ino,
    /// File or directory.
    pub(super) kind: Kind,
    /// Size as listed (a writer's staged size takes precedence while it exists).
    pub(super) size: u64,
    /// Modification time as shown (`DateCreated`, or the creation time for local files).
    pub(super) mtime: SystemTime,
    /// The bytes behind this inode changed through the mount (overwrite, rename):
    /// the kernel must drop its cached pages at the next open.
    pub(super) content_changed: bool,
}

/// What an open file handle is.
#[derive(Debug)]
pub(super) enum Handle {
    /// A directory listing snapshot, paged through by readdir.
    Dir(Arc<Vec<DirEntry>>),
    /// Reading a file: the content entry is pinned on first read, so eviction from the
    /// cache index never restarts a download under an open reader.
    Read {
        /// The file.
        ino: Ino,
        /// Its content entry, once the first read pinned it.
        entry: Option<Arc<Entry>>,
        /// What its download goes at (`Preview` for thumbnailers and file managers).
        prio: crate::remote::Priority,
        /// A file manager's content sniff, counted for its process (`Sniffs`) until
        /// released.
        sniff: Option<u32>,
    },
    /// Writing a file: the writer is `State::writer(ino)`.
    Write {
        /// The file.
        ino: Ino,
        /// The process that opened it (its thread group id), when known: its close is
        /// the one that uploads; a forked child's close of the same descriptor does not.
        opener: Option<u32>,
    },
}

/// Everything the core knows, behind `Core::state` (see the lock order in `mod.rs`).
#[derive(Debug, Default)]
pub(super) struct State {
    /// The inode table.
    pub(super) nodes: HashMap<Ino, Node>,
    /// Inode of each key (keys are never reused).
    pub(super) by_key: HashMap<Key, Ino>,
    /// Last inode number handed out.
    pub(super) next_ino: Ino,
    /// The account's folders, with when they were listed.
    pub(super) folders: Option<(Vec<Folder>, Instant)>,
    /// The account's clients (id and name, by id), with when they were listed.
    pub(super) client_list: Option<(Arc<Vec<Client>>, Instant)>,
    /// `/by-name` as shown, computed from `client_list` (dropped when it changes).
    pub(super) by_name: Option<Arc<ByNameView>>,
    /// Listings served stale that the refresher fetches again, at `Priority::Refresh`.
    pub(super) due: BTreeSet<Due>,
    /// Per client: its listing, views and whether it exists.
    pub(super) clients: HashMap<ClientId, ClientState>,
    /// Local (not yet uploaded) files: id -> (client, name, ino).
    pub(super) locals: HashMap<u64, (ClientId, String, Ino)>,
    /// Last local id handed out.
    pub(super) next_local: u64,
    /// Files being written (or whose upload is still due), by inode.
    writers: HashMap<Ino, Arc<Mutex<Writer>>>,
    /// Replaced files whose DELETE failed: hidden, and deleted later (file id -> client).
    pub(super) owed_deletes: HashMap<String, ClientId>,
    /// The name each file id was shown under in this mount. A file keeps it for the
    /// mount's life, so the user's own writes and deletes never move a twin's name; an
    /// upload that replaces a file inherits its name (docs/SEMANTICS.md, "Names").
    pub(super) shown: HashMap<String, String>,
    /// The mtime shown for files this mount uploaded (their last write), kept over the
    /// server's `DateCreated` so a later listing never changes what `stat` showed.
    pub(super) mtimes: HashMap<String, SystemTime>,
    /// Open handles.
    pub(super) handles: HashMap<Fh, Handle>,
    /// Next handle number to hand out.
    pub(super) next_fh: Fh,
    /// Renames given up without knowing whether their copy landed (journal entries
    /// marked `abandoned`): spool path -> entry. Cleaned up before anything else is
    /// uploaded under the same name.
    pub(super) abandoned: BTreeMap<PathBuf, Journal>,
    /// File managers' content sniffs under way and recent, per process.
    pub(super) sniffs: Sniffs,
    /// Clients an earlier run's journaled uploads go to: their kept listings predate
    /// those uploads, so they are not served (a fresh listing is fetched instead).
    pub(super) resumed_clients: std::collections::HashSet<ClientId>,
}

impl State {
    /// The writer of `ino`, if the file is being written (or waits for its upload).
    pub(super) fn writer(&self, ino: Ino) -> Option<Arc<Mutex<Writer>>> {
        self.writers.get(&ino).cloned()
    }

    /// The same, borrowed (for a look under the state lock).
    pub(super) fn writer_ref(&self, ino: Ino) -> Option<&Arc<Mutex<Writer>>> {
        self.writers.get(&ino)
    }

    pub(super) fn has_writer(&self, ino: Ino) -> bool {
        self.writers.contains_key(&ino)
    }

    /// Every writer, with its inode.
    pub(super) fn writers(&self) -> impl Iterator<Item = (&Ino, &Arc<Mutex<Writer>>)> {
        self.writers.iter()
    }

    /// Give `ino` the writer `w`, unless it has one already (then `false`: the caller
    /// raced another opener and uses theirs).
    pub(super) fn add_writer(&mut self, ino: Ino, w: Writer) -> bool {
        match self.writers.entry(ino) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Arc::new(Mutex::new(w)));
                true
            }
        }
    }

    /// Make `w` the writer of `ino` (a created file, or an inode that becomes a copy's).
    pub(super) fn set_writer(&mut self, ino: Ino, w: Writer) {
        self.writers.insert(ino, Arc::new(Mutex::new(w)));
    }

    /// Make the existing writer `w` the writer of `ino` (a rename's copy handed to the
    /// renamed inode).
    pub(super) fn put_writer(&mut self, ino: Ino, w: Arc<Mutex<Writer>>) {
        self.writers.insert(ino, w);
    }

    /// `ino` is no longer written (its writer retired or moved to another inode).
    pub(super) fn remove_writer(&mut self, ino: Ino) -> Option<Arc<Mutex<Writer>>> {
        self.writers.remove(&ino)
    }

    /// Give a writer that no file of the mount shows (a resumed journal, an open file's
    /// rename copy) an inode number of its own: never a node, never handed to the kernel.
    pub(super) fn add_detached_writer(&mut self, w: Writer) -> Ino {
        self.next_ino += 1;
        let ino = self.next_ino;
        self.writers.insert(ino, Arc::new(Mutex::new(w)));
        ino
    }

    pub(super) fn ino_for(&mut self, key: Key, parent: Ino, kind: Kind) -> Ino {
        if let Some(ino) = self.by_key.get(&key) {
            return *ino;
        }
        self.next_ino += 1;
        let ino = self.next_ino;
        self.by_key.insert(key.clone(), ino);
        self.nodes.insert(
            ino,
            Node {
                key,
                parent,
                kind,
                size: 0,
                mtime: UNIX_EPOCH,
                content_changed: false,
            },
        );
        ino
    }

    /// Point an existing inode at a new key (a local file got its server id, or an
    /// overwrite/rename replaced the file behind it).
    pub(super) fn rekey(&mut self, ino: Ino, key: Key) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            self.by_key.remove(&node.key);
            node.key = key.clone();
            node.content_changed = true;
        }
        if let Some(old) = self.by_key.insert(key, ino) {
            if old != ino {
                self.nodes.remove(&old);
            }
        }
    }

    /// The local file behind `ino` (not on the server yet) shows as `name` now.
    pub(super) fn rename_local_entry(&mut self, ino: Ino, name: &str) {
        if let Some(Key::Local(l)) = self.nodes.get(&ino).map(|n| n.key.clone()) {
            if let Some(entry) = self.locals.get_mut(&l) {
                entry.1 = name.to_string();
            }
        }
    }

    pub(super) fn client(&mut self, c: ClientId) -> &mut ClientState {
        self.clients.entry(c).or_default()
    }

    /// Register an open handle and hand out its number (never reused in a mount).
    pub(super) fn add_handle(&mut self, h: Handle) -> Fh {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        fh
    }

    pub(super) fn invalidate_view(&mut self, c: ClientId) {
        self.client(c).view = None;
    }
}

pub(super) fn ms_to_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    }
}

/// Which directory of a client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum DirKey {
    /// The client's own directory (files with no folder, and the folder directories).
    Top,
    /// A folder directory, by folder id.
    Folder(String),
}

/// One directory as shown.
#[derive(Debug, Default)]
pub(super) struct DirView {
    /// Entries in listing order.
    pub(super) entries: Vec<(String, Ino)>,
    /// The same, by name.
    pub(super) by_name: HashMap<String, Ino>,
}

impl DirView {
    pub(super) fn push(&mut self, name: String, ino: Ino) {
        self.by_name.insert(name.clone(), ino);
        self.entries.push((name, ino));
    }
}

/// `/by-name` as shown.
#[derive(Debug, Default)]
pub(super) struct ByNameView {
    /// Entries in client-list order (by id).
    pub(super) entries: Vec<(String, Ino)>,
    /// The same, by name.
    pub(super) by_name: HashMap<String, Ino>,
}

#[derive(Debug)]
pub(super) struct Listing {
    /// The rows, as the server sent them.
    pub(super) files: Vec<RemoteFile>,
    /// When they were fetched.
    pub(super) at: Instant,
}

#[derive(Debug, Default)]
pub(super) struct ClientState {
    /// The client's files, once listed.
    pub(super) listing: Option<Listing>,
    /// Its directories as shown, computed from the listing (dropped when it changes).
    pub(super) view: Option<Arc<HashMap<DirKey, DirView>>>,
    /// Existence known from the Clients API, with when we learned it.
    pub(super) known: Option<(bool, Instant)>,
}

/// Which fetch a single-flight lock guards.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Flight {
    /// `GET folders`.
    Folders,
    /// `GET files?clientId=`.
    Files(ClientId),
    /// The client list (all pages).
    Clients,
    /// Mutations of one client (uploads, deletes, renames) run one at a time.
    Mutate(ClientId),
}

/// Fresh if younger than the TTL, or fetched after `since` (by the request we
/// queued behind: single flight even with a TTL of zero).
pub(super) fn fresh(at: Instant, ttl: Duration, since: Option<Instant>) -> bool {
    at.elapsed() < ttl || since.is_some_and(|s| at >= s)
}

/// A file manager's own content sniffs under way and recent, per process: one alone
/// (none under way, none within `limiter::BURST_GAP`) is the sniff of the file a person
/// just double-clicked, which waits for nothing but the person's own turn; sniffs in a
/// row (a folder being shown) stay previews.
#[derive(Debug, Default)]
pub(super) struct Sniffs {
    sniffs: PerProcess,
}

impl Sniffs {
    /// Count a sniff by `process` starting now; whether it stands alone (a click).
    pub(super) fn start(&mut self, process: u32, gap: Duration) -> bool {
        let now = Instant::now();
        let before = self.sniffs.start(process, Duration::from_secs(60));
        before.is_none_or(|a| a.under_way == 0 && !a.within(gap, now))
    }

    /// A sniff by `process` ended (its handle was released).
    pub(super) fn end(&mut self, process: u32) {
        self.sniffs.end(process);
    }
}

/// A listing to fetch again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Due {
    /// The client list (all pages).
    ClientList,
    /// `GET folders`.
    Folders,
    /// One client's files.
    Files(ClientId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sniff_alone_is_a_click_and_sniffs_in_a_row_are_not() {
        let gap = Duration::from_millis(500);
        let mut s = Sniffs::default();
        assert!(s.start(7, gap), "the first sniff of a process stands alone");
        assert!(!s.start(7, gap), "another while it is under way does not");
        assert!(s.start(8, gap), "another process's is its own");
        s.end(7);
        s.end(7);
        assert!(!s.start(7, gap), "right after the last ended: a folder being shown");
        s.end(7);
        tokio::time::advance(gap).await;
        assert!(
            s.start(7, gap),
            "alone again once the process has been quiet for the gap"
        );
    }
}
