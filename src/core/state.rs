//! The inode table, open handles and the core's shared state: what each inode stands for
//! and which handle is which.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::content::Entry;
use super::metadata::ClientState;
use super::spool::Journal;
use super::writer::Writer;
use super::{DirEntry, Fh, Ino, Kind};
use crate::remote::{ClientId, Folder};

/// What an inode stands for. Keys are never reused for another thing, so an inode
/// number always means the same client, folder or file id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Root,
    Clients,
    Client(ClientId),
    /// A folder directory inside a client, listed or not.
    Folder(ClientId, String),
    File(String),
    /// A file created through the mount and not yet confirmed by the server.
    Local(u64),
}

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) key: Key,
    pub(super) parent: Ino,
    pub(super) kind: Kind,
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
    /// The bytes behind this inode changed through the mount (overwrite, rename):
    /// the kernel must drop its cached pages at the next open.
    pub(super) content_changed: bool,
}

#[derive(Debug)]
pub(super) enum Handle {
    Dir(Arc<Vec<DirEntry>>),
    /// Reading a file: the content entry is pinned on first read, so eviction from the
    /// cache index never restarts a download under an open reader.
    Read {
        ino: Ino,
        entry: Option<Arc<Entry>>,
    },
    Write {
        ino: Ino,
    },
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) nodes: HashMap<Ino, Node>,
    pub(super) by_key: HashMap<Key, Ino>,
    pub(super) next_ino: Ino,
    pub(super) folders: Option<(Vec<Folder>, Instant)>,
    pub(super) client_list: Option<(Vec<ClientId>, Instant)>,
    pub(super) clients: HashMap<ClientId, ClientState>,
    /// Local (not yet uploaded) files: id -> (client, name, ino).
    pub(super) locals: HashMap<u64, (ClientId, String, Ino)>,
    pub(super) next_local: u64,
    pub(super) writers: HashMap<Ino, Arc<Mutex<Writer>>>,
    /// Replaced files whose DELETE failed: hidden, and deleted later (file id -> client).
    pub(super) owed_deletes: HashMap<String, ClientId>,
    pub(super) handles: HashMap<Fh, Handle>,
    pub(super) next_fh: Fh,
    /// Renames given up without knowing whether their copy landed (journal entries
    /// marked `abandoned`): spool path -> entry. Cleaned up before anything else is
    /// uploaded under the same name.
    pub(super) abandoned: BTreeMap<PathBuf, Journal>,
}

impl State {
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
