//! The namespace: lookup, getattr, opendir/readdir and statfs; attributes as the kernel
//! sees them, served from memory wherever possible. Lookup and opendir fetch their
//! listings at `Priority::Browse` (`bursts::browsing`). A directory whose listing
//! cannot be had fails opendir (EAGAIN or EIO): it never shows as empty.

use std::sync::Arc;
use std::time::SystemTime;

use super::bursts::{browsing, Browser};
use super::error::{CoreError, CoreResult};
use super::staged::lock;
use super::state::DirKey;
use super::state::{Handle, Key, Node, State};
use super::writer::Truncate;
use super::{
    names, patterns, Attr, Core, DirEntry, Fh, Ino, Kind, OpenMode, StatFs, BY_NAME_DIR, BY_NAME_INO, CLIENTS_DIR,
    CLIENTS_INO,
};
use crate::remote::{ClientId, Priority, Remote};

impl<R: Remote> Core<R> {
    pub(super) fn attr_of(&self, ino: Ino, node: &Node, st: &State) -> Attr {
        let (size, mtime, perm) = match node.kind {
            Kind::Dir => (0, self.mounted_at, if self.opts.allow_other { 0o755 } else { 0o700 }),
            Kind::File => {
                let (size, mtime) = match st.writer_ref(ino).map(|w| w.lock()) {
                    Some(Ok(w)) => (w.size, w.mtime),
                    _ => (node.size, node.mtime),
                };
                (size, mtime, if self.opts.allow_other { 0o644 } else { 0o600 })
            }
            Kind::Symlink => (node.size, node.mtime, 0o777),
        };
        Attr {
            ino,
            kind: node.kind,
            size,
            mtime,
            perm,
        }
    }

    pub(super) fn attr(&self, ino: Ino) -> CoreResult<Attr> {
        let st = self.st();
        let node = st.nodes.get(&ino).ok_or(CoreError::NotFound)?;
        Ok(self.attr_of(ino, node, &st))
    }

    pub(super) fn key_of(&self, ino: Ino) -> CoreResult<(Key, Ino)> {
        let st = self.st();
        let node = st.nodes.get(&ino).ok_or(CoreError::NotFound)?;
        Ok((node.key.clone(), node.parent))
    }

    /// The client and directory a directory inode stands for.
    pub(super) fn client_dir(&self, ino: Ino) -> CoreResult<(ClientId, DirKey)> {
        match self.key_of(ino)?.0 {
            Key::Client(c) => Ok((c, DirKey::Top)),
            Key::Folder(c, f) => Ok((c, DirKey::Folder(f))),
            Key::File(_) | Key::Local(_) | Key::NameLink(_) => Err(CoreError::NotDir),
            Key::Root | Key::Clients | Key::ByName => {
                Err(CoreError::NotPermitted("only client directories hold files"))
            }
        }
    }

    pub async fn lookup(&self, parent: Ino, name: &str) -> CoreResult<Attr> {
        self.lookup_by(parent, name, None).await
    }

    /// `lookup` for `process` (its thread group id, when known): its listings go at
    /// `Priority::Browse`, or at `Priority::Count` in a burst (`limiter::BURST_GAP`).
    pub async fn lookup_by(&self, parent: Ino, name: &str, browser: Option<Browser>) -> CoreResult<Attr> {
        browsing(browser, self.lookup_browsing(parent, name)).await
    }

    async fn lookup_browsing(&self, parent: Ino, name: &str) -> CoreResult<Attr> {
        match self.key_of(parent)?.0 {
            Key::Root => match name {
                CLIENTS_DIR => self.attr(CLIENTS_INO),
                BY_NAME_DIR => self.attr(BY_NAME_INO),
                _ => Err(CoreError::NotFound),
            },
            Key::ByName => {
                let ino = self
                    .by_name_view()
                    .await?
                    .by_name
                    .get(name)
                    .copied()
                    .ok_or(CoreError::NotFound)?;
                self.attr(ino)
            }
            Key::Clients => {
                let c = names::parse_client_id(name).ok_or(CoreError::NotFound)?;
                self.ensure_client(c).await?;
                let ino = self.st().ino_for(Key::Client(c), CLIENTS_INO, Kind::Dir);
                self.attr(ino)
            }
            // Scratch files live in the local overlay: looked up without a call (an
            // editor checks for its swap file on every open).
            Key::Client(c) if patterns::class(name) == patterns::Class::Scratch => {
                let ino = self.cached_entry(c, name).ok_or(CoreError::NotFound)?;
                self.attr(ino)
            }
            Key::Client(c) | Key::Folder(c, _) => {
                let (_, dir) = self.client_dir(parent)?;
                let view = match self.cached_view(c) {
                    Some(v) if names::is_probe_name(name) => v,
                    None if names::is_probe_name(name) => return Err(CoreError::NotFound),
                    _ => self.view(c).await?,
                };
                let ino = view
                    .get(&dir)
                    .and_then(|d| d.by_name.get(name))
                    .copied()
                    .ok_or(CoreError::NotFound)?;
                self.attr(ino)
            }
            Key::File(_) | Key::Local(_) | Key::NameLink(_) => Err(CoreError::NotDir),
        }
    }

    /// The entry `name` of client `c`'s own directory if memory knows it: a file created
    /// through the mount, or an entry of the cached view. No call.
    pub(super) fn cached_entry(&self, c: ClientId, name: &str) -> Option<Ino> {
        let local = {
            let st = self.st();
            st.locals
                .values()
                .find(|(lc, n, _)| *lc == c && n == name)
                .map(|(_, _, ino)| *ino)
        };
        local.or_else(|| self.cached_view(c)?.get(&DirKey::Top)?.by_name.get(name).copied())
    }

    /// `utimes` (`touch -m`, `cp -p`, `rsync -a`): the server keeps no mtime, so the one
    /// given is shown for the rest of the mount (a second `rsync -a` in the same mount
    /// then skips files it already sent), and a file being written keeps it for its
    /// upload. No call; ignored on a read-only mount and on directories.
    pub fn set_mtime(&self, ino: Ino, mtime: SystemTime) {
        if self.opts.read_only {
            return;
        }
        let mut st = self.st();
        let Some(node) = st.nodes.get(&ino) else { return };
        if node.kind != Kind::File {
            return;
        }
        let key = node.key.clone();
        if let Some(w) = st.writer_ref(ino) {
            lock(w).mtime = mtime;
        }
        if let Key::File(id) = key {
            st.mtimes.insert(id, mtime);
        }
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.mtime = mtime;
        }
    }

    /// `truncate`/`ftruncate` and the no-op attribute changes (`chmod`, `chown`,
    /// `utimes`) that `cp -p`, `rsync -a` and `touch` make.
    pub async fn setattr(&self, ino: Ino, fh: Option<Fh>, size: Option<u64>) -> CoreResult<Attr> {
        let Some(size) = size else { return self.attr(ino) };
        if self.opts.read_only {
            return Err(CoreError::ReadOnly);
        }
        let writer = match fh {
            Some(fh) => self.writer_of(fh).ok(),
            None => None,
        }
        .or_else(|| self.st().writer(ino));
        if let Some(w) = writer {
            self.truncate_writer(&w, size, Truncate::Handle).await?;
            let idle = lock(&w).handles == 0;
            if idle {
                // Nobody has it open (its last close failed): like any truncate of a
                // file that is not open, it is uploaded at once.
                self.upload_writer(ino, Priority::User).await?;
                self.retire_writer(ino);
            }
            return self.attr(ino);
        }
        if self.attr(ino)?.kind == Kind::Dir {
            return Err(CoreError::IsDir);
        }
        // Truncating a file that is not open: stage, truncate, upload, done.
        let opened = self
            .open(
                ino,
                OpenMode {
                    write: true,
                    truncate: size == 0,
                },
            )
            .await?;
        let result = async {
            let w = self.writer_of(opened.fh)?;
            // truncate(2) of a file nobody has open: meant, like O_TRUNC.
            self.truncate_writer(&w, size, Truncate::ByOpen).await?;
            // Not a close: never deferred.
            self.upload_writer(ino, Priority::User).await
        }
        .await;
        self.release(opened.fh);
        result?;
        self.attr(ino)
    }

    /// Attributes from memory: no call (the kernel re-validates names through lookup).
    pub fn getattr(&self, ino: Ino) -> CoreResult<Attr> {
        self.attr(ino)
    }

    /// List a directory: a snapshot kept in a handle so paging through it is consistent.
    pub async fn opendir(&self, ino: Ino) -> CoreResult<Fh> {
        self.opendir_by(ino, None).await
    }

    /// `opendir` for `process`, as [`Core::lookup_by`].
    pub async fn opendir_by(&self, ino: Ino, browser: Option<Browser>) -> CoreResult<Fh> {
        browsing(browser, self.opendir_browsing(ino)).await
    }

    async fn opendir_browsing(&self, ino: Ino) -> CoreResult<Fh> {
        let (key, parent) = self.key_of(ino)?;
        let rows: Vec<(String, Ino)> = match key {
            Key::Root => vec![
                (CLIENTS_DIR.to_string(), CLIENTS_INO),
                (BY_NAME_DIR.to_string(), BY_NAME_INO),
            ],
            Key::Clients => {
                let list = self.client_list().await?;
                let mut st = self.st();
                list.iter()
                    .map(|c| (c.id.to_string(), st.ino_for(Key::Client(c.id), CLIENTS_INO, Kind::Dir)))
                    .collect()
            }
            Key::ByName => self.by_name_view().await?.entries.clone(),
            Key::Client(c) | Key::Folder(c, _) => {
                let (_, dir) = self.client_dir(ino)?;
                let view = self.view(c).await?;
                view.get(&dir).map(|d| d.entries.clone()).unwrap_or_default()
            }
            Key::File(_) | Key::Local(_) | Key::NameLink(_) => return Err(CoreError::NotDir),
        };
        let mut st = self.st();
        let mut out = Vec::with_capacity(rows.len() + 2);
        for (name, i) in [(".".to_string(), ino), ("..".to_string(), parent)]
            .into_iter()
            .chain(rows)
        {
            if let Some(node) = st.nodes.get(&i) {
                out.push(DirEntry {
                    name,
                    attr: self.attr_of(i, node, &st),
                });
            }
        }
        let fh = st.add_handle(Handle::Dir(Arc::new(out)));
        Ok(fh)
    }

    /// Entries of an open directory from `offset` on.
    pub fn readdir(&self, fh: Fh, offset: u64) -> CoreResult<Vec<DirEntry>> {
        match self.st().handles.get(&fh) {
            Some(Handle::Dir(entries)) => Ok(entries.iter().skip(offset as usize).cloned().collect()),
            _ => Err(CoreError::BadHandle),
        }
    }

    pub fn releasedir(&self, fh: Fh) {
        self.st().handles.remove(&fh);
    }

    /// Sizes for `df`: the API reports no quota, so a large fixed size; the inode
    /// count is consistent (`files` = used + free, so `df -i` shows the inodes in use).
    pub fn statfs(&self) -> StatFs {
        let used_inodes = self.st().nodes.len() as u64;
        let files = u64::from(u32::MAX).max(used_inodes);
        let blocks = 1u64 << 28; // 1 TiB of 4 KiB blocks: the API reports no quota.
        let used = self.cache().used() / 4096;
        StatFs {
            blocks,
            bfree: blocks - used,
            bavail: blocks - used,
            files,
            ffree: files - used_inodes,
            bsize: 4096,
            namelen: names::NAME_MAX as u32,
        }
    }

    /// The client a file or directory inode belongs to.
    pub(super) fn client_of(&self, ino: Ino) -> Option<ClientId> {
        let st = self.st();
        let mut cur = ino;
        for _ in 0..4 {
            let node = st.nodes.get(&cur)?;
            match &node.key {
                Key::Client(c) | Key::Folder(c, _) => return Some(*c),
                Key::Root | Key::Clients | Key::ByName | Key::NameLink(_) => return None,
                Key::File(_) | Key::Local(_) => cur = node.parent,
            }
        }
        None
    }
}
