//! Reading: opening files, the content cache entry of a file (one shared download), and
//! reads served from the cache or from staged bytes.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::content::Entry;
use super::error::{CoreError, CoreResult};
use super::staged::lock;
use super::state::{Handle, Key};
use super::{Core, Fh, Ino, OpenMode, Opened, Reader};
use crate::remote::{ClientId, Priority, Remote, RemoteError};

impl<R: Remote> Core<R> {
    pub async fn open(&self, ino: Ino, mode: OpenMode) -> CoreResult<Opened> {
        self.open_for(ino, mode, Reader::User).await
    }

    /// Open on behalf of `reader`: a thumbnailer's or file manager's read downloads at
    /// `Priority::Preview`; with previews off a thumbnailer's or a file manager's own
    /// preview's open fails at once unless the bytes are already here.
    pub async fn open_for(&self, ino: Ino, mode: OpenMode, reader: Reader) -> CoreResult<Opened> {
        self.open_for_by(ino, mode, reader, None).await
    }

    /// `open_for` by `process` (its thread group id, when known). A file manager's own
    /// content sniff that stands alone in its process (none under way, none in the last
    /// `BURST_GAP`: the sniff of the file a person just double-clicked, before the file
    /// manager launches its application) goes at the person's priority; sniffs in a row
    /// (a folder being shown) stay previews. With previews off it is refused as before.
    pub async fn open_for_by(
        &self,
        ino: Ino,
        mode: OpenMode,
        reader: Reader,
        process: Option<u32>,
    ) -> CoreResult<Opened> {
        let (key, parent) = self.key_of(ino)?;
        let prio = match reader {
            Reader::User => Priority::User,
            Reader::FileManager | Reader::FileManagerPreview | Reader::Thumbnailer => Priority::Preview,
        };
        let preview = matches!(reader, Reader::Thumbnailer | Reader::FileManagerPreview);
        if preview && !self.opts.previews && !mode.write {
            let cached = matches!(&key, Key::File(id) if self.cache().get(id).is_some());
            if !cached && !self.st().has_writer(ino) {
                tracing::debug!(ino, "preview refused: previews are off");
                return Err(CoreError::PreviewsOff);
            }
        }
        let file_id = match &key {
            Key::File(id) => Some(id.clone()),
            Key::Local(_) => None,
            _ => return Err(CoreError::IsDir),
        };
        if !mode.write {
            let sniff = match (reader, process, &file_id) {
                (Reader::FileManagerPreview, Some(p), Some(_)) if self.opts.previews => Some(p),
                _ => None,
            };
            let alone = sniff.is_some_and(|p| self.st().sniffs.start(p, crate::limiter::BURST_GAP));
            let prio = match alone {
                true => {
                    tracing::debug!(
                        ino,
                        "a file manager's lone sniff: a person's double-click, at user priority"
                    );
                    Priority::User
                }
                false => prio,
            };
            // Audited at the open, which always reaches the mount: a second reader's
            // reads may be served from the kernel's page cache and never arrive.
            if let (Some(id), true) = (&file_id, self.audit.get().is_some()) {
                let size = self.st().nodes.get(&ino).map(|n| n.size).unwrap_or(0);
                self.audit_read(ino, id, size);
            }
            let mut st = self.st();
            let keep_cache = !st.nodes.get(&ino).is_some_and(|n| n.content_changed) && !st.has_writer(ino);
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.content_changed = false;
            }
            let fh = st.add_handle(Handle::Read {
                ino,
                entry: None,
                prio,
                sniff,
            });
            return Ok(Opened {
                fh,
                keep_cache,
                direct: preview,
            });
        }
        self.open_writer(ino, parent, file_id, mode).await
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
        self.content_entry_at(id, size, Priority::User).await
    }

    /// `content_entry`, downloading at `prio` if a download starts. A read that is not
    /// a preview and finds the file's preview download still waiting for its answer
    /// cancels it (its readers get EAGAIN) and downloads at its own priority, so a
    /// double-click never waits behind the thumbnails queued before it.
    pub(super) async fn content_entry_at(&self, id: &str, size: u64, prio: Priority) -> CoreResult<Arc<Entry>> {
        if prio != Priority::Preview {
            let queued = self.previews_lock().remove(id);
            if let Some(task) = queued {
                task.abort();
                let old = self.cache().get(id);
                if let Some(old) = old {
                    if !old.is_done() {
                        old.fail(RemoteError::WouldWait { wait_secs: 0 });
                        self.cache().remove(id);
                        tracing::debug!(file = id, "a user's read takes over a queued preview download");
                    }
                }
            }
        }
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
        let queued = self.queued_previews.clone();
        // Held until the task is registered, so it cannot deregister before that.
        let mut previews = self.previews_lock();
        let task = tokio::spawn(async move {
            let answer = remote.download(&file, size, prio).await;
            if prio == Priority::Preview {
                // Answered: from here on a user's read shares this download.
                let mut q = queued.lock().unwrap_or_else(|p| p.into_inner());
                if q.get(&file).is_some_and(|h| h.id() == tokio::task::id()) {
                    q.remove(&file);
                }
            }
            match answer {
                Ok(stream) => e.fill(stream).await,
                Err(err) => {
                    if err == RemoteError::NotFound {
                        tracing::debug!(file, "file is gone from the server");
                    }
                    e.fail(err);
                }
            }
        });
        if prio == Priority::Preview {
            previews.insert(id.to_string(), task.abort_handle());
        }
        drop(previews);
        Ok(entry)
    }

    fn previews_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, tokio::task::AbortHandle>> {
        self.queued_previews.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn read(&self, fh: Fh, offset: u64, size: u32) -> CoreResult<Vec<u8>> {
        let (ino, pinned, prio) = match self.st().handles.get(&fh) {
            Some(Handle::Read { ino, entry, prio, .. }) => (*ino, entry.clone(), *prio),
            Some(Handle::Write { ino, .. }) => (*ino, None, Priority::User),
            _ => return Err(CoreError::BadHandle),
        };
        if let Some(entry) = pinned {
            return entry.read(offset, size).await;
        }
        let (writer, key, node_size) = {
            let st = self.st();
            let node = st.nodes.get(&ino).ok_or(CoreError::NotFound)?;
            (st.writer(ino), node.key.clone(), node.size)
        };
        if let Some(w) = writer {
            // Opened for writing and not read or changed yet: its bytes come first.
            self.fill(&w).await?;
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
        let entry = self.content_entry_at(&id, node_size, prio).await?;
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

    /// An opening of server file `id` for reading, in the audit log.
    fn audit_read(&self, ino: Ino, id: &str, size: u64) {
        let Some(c) = self.client_of(ino) else { return };
        let name = self.remote_name_size(c, id).map(|(n, _)| n).unwrap_or_default();
        self.audit(crate::audit::Record {
            op: crate::audit::Op::Read,
            uid: crate::audit::caller(),
            client: c,
            file_id: Some(id),
            size: Some(size),
            name: &name,
            to: None,
            result: Ok(()),
        });
    }
}
