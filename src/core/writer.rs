//! Writers: the staged bytes of a file being written, shared by its write handles, from
//! create/open to the last release; write, truncate and the writer's retirement.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::error::{CoreError, CoreResult};
use super::spool::{Attempts, SpoolFile};
use super::state::{Handle, Key};
use super::view::DirKey;
use super::{names, Attr, Core, Fh, Ino, Kind, OpenMode, Opened};
use crate::remote::{ClientId, Priority, Remote};

/// A file being written: shared by all its open write handles, kept after they close
/// while its upload has not succeeded.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) client: ClientId,
    pub(super) name: String,
    pub(super) spool: SpoolFile,
    pub(super) size: u64,
    pub(super) dirty: bool,
    pub(super) version: u64,
    pub(super) replaces: Vec<String>,
    pub(super) handles: usize,
    pub(super) unlinked: bool,
    /// Earlier closes whose upload may have landed without confirmation.
    pub(super) attempts: Option<Attempts>,
}

/// Truncate (or extend) a writer's staged bytes; a change makes them due for upload.
pub(super) fn truncate_staged(w: &Mutex<Writer>, size: u64) -> CoreResult<()> {
    let mut w = lock(w);
    if w.size != size {
        w.spool.file.set_len(size)?;
        w.size = size;
        w.dirty = true;
        w.version += 1;
    }
    Ok(())
}

pub(super) fn lock(w: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl<R: Remote> Core<R> {
    pub fn release(&self, fh: Fh) {
        let handle = self.st().handles.remove(&fh);
        if let Some(Handle::Write { ino }) = handle {
            let Some(w) = self.st().writers.get(&ino).cloned() else {
                return;
            };
            {
                let mut w = lock(&w);
                w.handles = w.handles.saturating_sub(1);
                if w.dirty && !w.unlinked && w.handles == 0 {
                    tracing::error!(
                        "upload of '{}' did not succeed; its data is kept in the spool at {} and retried",
                        w.name,
                        w.spool.path.display()
                    );
                }
            }
            self.retire_writer(ino);
        }
    }

    /// Forget a writer once nobody has it open and nothing of it is left to upload.
    pub(super) fn retire_writer(&self, ino: Ino) {
        let mut st = self.st();
        let Some(w) = st.writers.get(&ino).cloned() else { return };
        let w = lock(&w);
        if w.handles > 0 || (w.dirty && !w.unlinked) {
            return;
        }
        self.spool.remove(&w.spool.path);
        drop(w);
        st.writers.remove(&ino);
        let local = st
            .nodes
            .get(&ino)
            .and_then(|n| if let Key::Local(l) = n.key { Some(l) } else { None });
        if let Some(l) = local {
            // A local file that never reached the server (unlinked before upload).
            if let Some((c, _, _)) = st.locals.remove(&l) {
                st.invalidate_view(c);
            }
        }
    }

    pub async fn create(&self, parent: Ino, name: &str) -> CoreResult<(Attr, Opened)> {
        if self.opts.read_only {
            return Err(CoreError::ReadOnly);
        }
        let client = match self.key_of(parent)?.0 {
            Key::Client(c) => c,
            Key::Folder(..) => {
                tracing::warn!("refusing to create '{name}' in a folder: the upload API cannot choose a folder, so the file would land outside it");
                return Err(CoreError::NotPermitted("creating in a folder"));
            }
            Key::File(_) | Key::Local(_) => return Err(CoreError::NotDir),
            Key::Root | Key::Clients => return Err(CoreError::NotPermitted("only client directories hold files")),
        };
        if name.len() > names::NAME_MAX {
            return Err(CoreError::NameTooLong);
        }
        if names::is_probe_name(name) {
            tracing::info!("refusing to create '{name}': desktop metadata files are not uploaded");
            return Err(CoreError::NotPermitted("desktop metadata file"));
        }
        let view = self.view(client).await?;
        if view.get(&DirKey::Top).is_some_and(|d| d.by_name.contains_key(name)) {
            return Err(CoreError::Exists);
        }
        let spool = self.spool.create()?;
        let mut st = self.st();
        st.next_local += 1;
        let local = st.next_local;
        let ino = st.ino_for(Key::Local(local), parent, Kind::File);
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.mtime = SystemTime::now();
        }
        st.locals.insert(local, (client, name.to_string(), ino));
        st.writers.insert(
            ino,
            Arc::new(Mutex::new(Writer {
                client,
                name: name.to_string(),
                spool,
                size: 0,
                dirty: true, // an empty file is uploaded too
                version: 0,
                replaces: Vec::new(),
                handles: 1,
                unlinked: false,
                attempts: None,
            })),
        );
        st.invalidate_view(client);
        let fh = st.add_handle(Handle::Write { ino });
        let node = st.nodes.get(&ino).ok_or(CoreError::NotFound)?;
        let attr = self.attr_of(ino, node, &st);
        Ok((attr, Opened { fh, keep_cache: false }))
    }

    /// Stage written bytes: local disk only, no network.
    pub fn write(&self, fh: Fh, offset: u64, data: &[u8]) -> CoreResult<u32> {
        let w = self.writer_of(fh)?;
        let mut w = lock(&w);
        w.spool.file.write_all_at(data, offset)?;
        w.size = w.size.max(offset + data.len() as u64);
        w.dirty = true;
        w.version += 1;
        Ok(data.len() as u32)
    }

    pub(super) fn writer_of(&self, fh: Fh) -> CoreResult<Arc<Mutex<Writer>>> {
        let st = self.st();
        match st.handles.get(&fh) {
            Some(Handle::Write { ino }) => st.writers.get(ino).cloned().ok_or(CoreError::BadHandle),
            _ => Err(CoreError::BadHandle),
        }
    }

    /// `close()`/`fsync()`: upload what was written, if anything. Errors here are what
    /// `close()` reports.
    pub async fn flush(&self, fh: Fh) -> CoreResult<()> {
        let ino = match self.st().handles.get(&fh) {
            Some(Handle::Write { ino }) => *ino,
            Some(_) => return Ok(()),
            None => return Err(CoreError::BadHandle),
        };
        self.upload_writer(ino, Priority::User).await
    }

    /// A writer whose file was unlinked or replaced: its staged bytes must never be
    /// uploaded (by a close or by `resume_pending`). Its spool entry goes now if no
    /// handle is open, else at the last release.
    pub(super) fn discard_writer(&self, ino: Ino) {
        let Some(w) = self.st().writers.get(&ino).cloned() else {
            return;
        };
        {
            let mut w = lock(&w);
            w.unlinked = true;
            w.dirty = false;
            w.attempts = None;
            let _ = std::fs::remove_file(w.spool.journal_path());
        }
        self.retire_writer(ino);
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
        .or_else(|| self.st().writers.get(&ino).cloned());
        if let Some(w) = writer {
            truncate_staged(&w, size)?;
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
            truncate_staged(&w, size)?;
            self.flush(opened.fh).await
        }
        .await;
        self.release(opened.fh);
        result?;
        self.attr(ino)
    }
}
