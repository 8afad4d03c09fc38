//! Reading: opening files, the content cache entry of a file (one shared download), and
//! reads served from the cache or from staged bytes.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use super::content::Entry;
use super::error::{CoreError, CoreResult};
use super::state::{Handle, Key};
use super::writer::{lock, truncate_staged, Writer};
use super::{Core, Fh, Ino, OpenMode, Opened};
use crate::remote::{ClientId, Priority, Remote, RemoteError};

impl<R: Remote> Core<R> {
    pub async fn open(&self, ino: Ino, mode: OpenMode) -> CoreResult<Opened> {
        let (key, parent) = self.key_of(ino)?;
        let file_id = match &key {
            Key::File(id) => Some(id.clone()),
            Key::Local(_) => None,
            _ => return Err(CoreError::IsDir),
        };
        if !mode.write {
            let mut st = self.st();
            let keep_cache = !st.nodes.get(&ino).is_some_and(|n| n.content_changed) && !st.writers.contains_key(&ino);
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.content_changed = false;
            }
            let fh = st.add_handle(Handle::Read { ino, entry: None });
            return Ok(Opened { fh, keep_cache });
        }
        if self.opts.read_only {
            return Err(CoreError::ReadOnly);
        }
        let client = match self.key_of(parent)?.0 {
            Key::Client(c) => c,
            _ => {
                tracing::warn!("refusing to write into a folder: the upload API cannot choose a folder, so the file would land outside it");
                return Err(CoreError::NotPermitted("writing into a folder"));
            }
        };
        // Join an existing writer under the state lock, the lock `retire_writer` holds
        // while it checks for handles: a writer is never retired under a new opener.
        let existing = {
            let st = self.st();
            st.writers.get(&ino).cloned().inspect(|w| lock(w).handles += 1)
        };
        if let Some(w) = existing {
            if mode.truncate {
                truncate_staged(&w, 0)?;
            }
        } else {
            let Some(id) = file_id else {
                return Err(CoreError::NotFound);
            };
            let (name, size) = self.remote_name_size(client, &id)?;
            // The whole current content is needed to modify it in place; wait for it
            // before staging anything, so an abandoned open leaves no spool file behind.
            let current = match mode.truncate {
                true => None,
                false => {
                    let entry = self.content_entry(&id, size).await?;
                    entry.wait_complete().await?;
                    Some(entry)
                }
            };
            let spool = self.spool.create()?;
            let staged = if mode.truncate { 0 } else { size };
            if let Some(entry) = current {
                if let Err(e) = entry.copy_to(&spool.file).await {
                    self.spool.remove(&spool.path);
                    return Err(e);
                }
            }
            let w = Writer {
                client,
                name,
                spool,
                size: staged,
                dirty: mode.truncate,
                version: 0,
                replaces: vec![id],
                handles: 1,
                unlinked: false,
                attempts: None,
            };
            let spool_path = w.spool.path.clone();
            let raced = {
                let mut st = self.st();
                match st.writers.entry(ino) {
                    std::collections::hash_map::Entry::Occupied(_) => true,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(Arc::new(Mutex::new(w)));
                        false
                    }
                }
            };
            if raced {
                // Another opener staged it first: use theirs.
                self.spool.remove(&spool_path);
                return Box::pin(self.open(ino, mode)).await;
            }
        }
        let mut st = self.st();
        let fh = st.add_handle(Handle::Write { ino });
        Ok(Opened { fh, keep_cache: false })
    }

    pub(super) fn remote_name_size(&self, c: ClientId, id: &str) -> CoreResult<(String, u64)> {
        let st = self.st();
        st.clients
            .get(&c)
            .and_then(|cs| cs.listing.as_ref())
            .and_then(|l| l.files.iter().find(|f| f.id == id))
            .map(|f| (f.name.clone(), f.size))
            .ok_or(CoreError::NotFound)
    }

    /// The cached entry for a file, starting its download if needed (single flight).
    ///
    /// The download runs in its own task from the first byte on: a reader that gives
    /// up (killed caller) never leaves a half-started entry behind for the others.
    pub(super) async fn content_entry(&self, id: &str, size: u64) -> CoreResult<Arc<Entry>> {
        let entry = {
            let mut cache = self.cache();
            if let Some(e) = cache.get(id) {
                return Ok(e);
            }
            cache.start(id, size)?
        };
        if size == 0 {
            // Nothing to fetch: the listing says the file is empty.
            entry.fill(Box::pin(futures_util::stream::empty())).await;
            return Ok(entry);
        }
        let (remote, e, file) = (self.remote.clone(), entry.clone(), id.to_string());
        tokio::spawn(async move {
            match remote.download(&file, size, Priority::User).await {
                Ok(stream) => e.fill(stream).await,
                Err(err) => {
                    if err == RemoteError::NotFound {
                        tracing::debug!(file, "file is gone from the server");
                    }
                    e.fail(err);
                }
            }
        });
        Ok(entry)
    }

    pub async fn read(&self, fh: Fh, offset: u64, size: u32) -> CoreResult<Vec<u8>> {
        let (ino, pinned) = match self.st().handles.get(&fh) {
            Some(Handle::Read { ino, entry }) => (*ino, entry.clone()),
            Some(Handle::Write { ino }) => (*ino, None),
            _ => return Err(CoreError::BadHandle),
        };
        if let Some(entry) = pinned {
            return entry.read(offset, size).await;
        }
        let (writer, key, node_size) = {
            let st = self.st();
            let node = st.nodes.get(&ino).ok_or(CoreError::NotFound)?;
            (st.writers.get(&ino).cloned(), node.key.clone(), node.size)
        };
        if let Some(w) = writer {
            let w = lock(&w);
            if offset >= w.size {
                return Ok(Vec::new());
            }
            let n = (w.size - offset).min(u64::from(size)) as usize;
            let mut buf = vec![0u8; n];
            w.spool.file.read_exact_at(&mut buf, offset)?;
            return Ok(buf);
        }
        let Key::File(id) = key else {
            return Err(CoreError::NotFound);
        };
        let entry = self.content_entry(&id, node_size).await?;
        let data = entry.read(offset, size).await;
        if let Err(e) = &data {
            // Never serve a failed download again: the next read starts afresh.
            self.cache().remove(&id);
            if *e == CoreError::NotFound {
                // Deleted on the server since it was listed: drop the stale entry.
                if let Some(c) = self.client_of(ino) {
                    self.forget_file(c, &id);
                }
            }
        } else if let Some(Handle::Read { entry: slot, .. }) = self.st().handles.get_mut(&fh) {
            *slot = Some(entry);
        }
        data
    }
}
