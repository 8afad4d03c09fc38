//! The namespace: lookup, getattr, opendir/readdir and statfs; attributes as the kernel
//! sees them, served from memory wherever possible. Lookup and opendir fetch their
//! listings at `Priority::Browse` (`metadata::browsing`). A directory whose listing
//! cannot be had fails opendir (EAGAIN or EIO): it never shows as empty.

use std::sync::Arc;

use super::error::{CoreError, CoreResult};
use super::metadata::browsing;
use super::state::{Handle, Key, Node, State};
use super::view::DirKey;
use super::{names, Attr, Core, DirEntry, Fh, Ino, Kind, StatFs, BY_NAME_DIR, BY_NAME_INO, CLIENTS_DIR, CLIENTS_INO};
use crate::remote::{ClientId, Remote};

impl<R: Remote> Core<R> {
    pub(super) fn attr_of(&self, ino: Ino, node: &Node, st: &State) -> Attr {
        let (size, perm) = match node.kind {
            Kind::Dir => (0, if self.opts.allow_other { 0o755 } else { 0o700 }),
            Kind::File => {
                let size = match st.writers.get(&ino) {
                    Some(w) => w.lock().map(|w| w.size).unwrap_or(node.size),
                    None => node.size,
                };
                (size, if self.opts.allow_other { 0o644 } else { 0o600 })
            }
            Kind::Symlink => (node.size, 0o777),
        };
        let mtime = if node.kind == Kind::Dir {
            self.mounted_at
        } else {
            node.mtime
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
        browsing(self.lookup_browsing(parent, name)).await
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

    /// Attributes from memory: no call (the kernel re-validates names through lookup).
    pub fn getattr(&self, ino: Ino) -> CoreResult<Attr> {
        self.attr(ino)
    }

    /// List a directory: a snapshot kept in a handle so paging through it is consistent.
    pub async fn opendir(&self, ino: Ino) -> CoreResult<Fh> {
        browsing(self.opendir_browsing(ino)).await
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

    pub fn statfs(&self) -> StatFs {
        let files = self.st().nodes.len() as u64;
        let blocks = 1u64 << 28; // 1 TiB of 4 KiB blocks: the API reports no quota.
        let used = self.cache().used() / 4096;
        StatFs {
            blocks,
            bfree: blocks - used,
            bavail: blocks - used,
            files,
            ffree: u64::from(u32::MAX),
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
