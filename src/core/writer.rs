//! Writers: the staged bytes of a file being written, shared by its write handles, from
//! create/open to the last release: open without download (`fill` when needed), write,
//! truncate, flush, release and the writer's retirement. Its life cycle is `life.rs`.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::error::{CoreError, CoreResult};
use super::life::{Event, Life, Wait};
use super::staged::{lock, stage, truncate_staged, Writer};
use super::state::DirKey;
use super::state::{Handle, Key};
use super::{names, patterns, Attr, Core, Fh, Ino, Kind, OpenMode, Opened};
use crate::phi::Name;
use crate::remote::{Priority, Remote};

/// How a truncate came: with the open (`O_TRUNC`: the caller means to empty the file)
/// or on a handle or path (`ftruncate`, `truncate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Truncate {
    ByOpen,
    Handle,
}

/// The name an existing file's new bytes are uploaded under: its server name, unless
/// the mount shows it under a twin's tagged name (`stem (tag).ext`), which it then keeps
/// on the server too, so the twins' names stay as they are across remounts.
fn upload_name(server_name: &str, shown: Option<&str>) -> String {
    match shown {
        Some(s) if s != names::legal(server_name) => s.to_string(),
        _ => server_name.to_string(),
    }
}

/// Refuse, before any byte is staged, a name the upload could not store exactly
/// (`names::uncarriable`), unless it is a scratch name, which never leaves the mount.
pub(super) fn refuse_uncarriable(name: &str) -> CoreResult<()> {
    if patterns::class(name) == patterns::Class::Scratch {
        return Ok(());
    }
    match names::uncarriable(name) {
        Some(why) => {
            tracing::warn!("refusing the name {}: {why}", Name(name));
            Err(CoreError::Invalid(why))
        }
        None => Ok(()),
    }
}

impl<R: Remote> Core<R> {
    /// Open a file for writing: join its writer, or stage its current bytes (all of
    /// them, unless truncating) in a new one.
    pub(super) async fn open_writer(
        &self,
        ino: Ino,
        parent: Ino,
        file_id: Option<String>,
        mode: OpenMode,
    ) -> CoreResult<Opened> {
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
            st.writer(ino).inspect(|w| {
                let mut w = lock(w);
                w.handles += 1;
                w.by = crate::audit::caller().or(w.by);
            })
        };
        if let Some(w) = existing {
            if mode.truncate {
                self.truncate_writer(&w, 0, Truncate::ByOpen).await?;
                // A close before the next write is a redirect's first close: it waits
                // for the last release, as on a file opened afresh.
                lock(&w).step(Event::EmptiedByOpen);
            }
        } else {
            let Some(id) = file_id else {
                return Err(CoreError::NotFound);
            };
            let (server_name, size) = self.remote_name_size(client, &id)?;
            let (name, listed_mtime) = {
                let st = self.st();
                let shown = st.shown.get(&id);
                (
                    upload_name(&server_name, shown.map(String::as_str)),
                    st.nodes.get(&ino).map(|n| n.mtime),
                )
            };
            // A listed file whose name the upload cannot carry (CR/LF, a backslash, a
            // trailing space) would come back under another name, never confirmed:
            // refused before anything is staged; the file on the server stays as it is.
            refuse_uncarriable(&name)?;
            // Nothing is downloaded here: the current bytes are fetched only when a read,
            // a partial write or a size change needs them (`fill`). An overwrite (a
            // truncate to 0 first, as smbd does) never waits for bytes it replaces.
            let spool = self.spool.create()?;
            let staged = if mode.truncate { 0 } else { size };
            let life = match mode.truncate {
                true => Life::Staged,
                false => Life::Landed { id: Some(id.clone()) },
            };
            let mut w = Writer::new(client, name, spool, staged, vec![id.clone()], life);
            if let (false, Some(m)) = (mode.truncate, listed_mtime) {
                w.mtime = m;
                w.unfilled = Some((id, size));
            }
            let spool_path = w.spool.path.clone();
            let raced = !self.st().add_writer(ino, w);
            if raced {
                // Another opener staged it first: use theirs.
                self.spool.remove(&spool_path);
                return Box::pin(self.open(ino, mode)).await;
            }
        }
        let mut st = self.st();
        let fh = st.add_handle(Handle::Write { ino, opener: None });
        Ok(Opened {
            fh,
            keep_cache: false,
            direct: false,
        })
    }

    /// Note which process opened write handle `fh` (its thread group id): its close
    /// uploads, a forked child's does not ([`Core::flush_by`]). Unknown (`None`, or
    /// never noted): every close uploads.
    pub fn opened_by(&self, fh: Fh, process: Option<u32>) {
        if let Some(Handle::Write { opener, .. }) = self.st().handles.get_mut(&fh) {
            *opener = process;
        }
    }

    /// A handle is closed for good (after its last `flush`). Returns whether the file
    /// went back to what the server holds behind the kernel's back (an abandoned
    /// overwrite, [`Writer::emptied`]): then the kernel's cached size must be dropped.
    pub fn release(&self, fh: Fh) -> bool {
        let handle = self.st().handles.remove(&fh);
        let mut reverted = false;
        if let Some(Handle::Read { sniff: Some(p), .. }) = handle {
            self.st().sniffs.end(p);
        }
        if let Some(Handle::Write { ino, .. }) = handle {
            let Some(w) = self.st().writer(ino) else {
                return false;
            };
            {
                let mut w = lock(&w);
                w.handles = w.handles.saturating_sub(1);
                if w.handles == 0 && w.emptied {
                    // An overwrite abandoned before its first byte: the server file stays.
                    tracing::warn!(
                        "{} was emptied by a truncate and closed without being written: left unchanged on the server (open it with O_TRUNC, as `: > file` does, to empty it)",
                        Name(&w.name)
                    );
                    w.step(Event::Discarded);
                    self.spool.drop_journal(&w.spool.path);
                    reverted = true;
                } else if w.handles == 0 && w.wait() != Wait::No && w.life().unsent() {
                    // Its close deferred the upload: the background loop takes it now
                    // (`Wait::Release`, `Wait::Opener`) or once it has been left alone
                    // (`Wait::Rename`, a new empty file).
                    w.step(Event::Released(tokio::time::Instant::now()));
                    self.wake.notify_one();
                } else if w.life().unsent() && w.handles == 0 {
                    tracing::error!(
                        "upload of {} did not succeed; its data is kept in the spool at {} and retried",
                        Name(&w.name),
                        w.spool.path.display()
                    );
                }
            }
            self.retire_writer(ino);
        }
        reverted
    }

    /// Forget a writer once nobody has it open and nothing of it is left to upload.
    pub(super) fn retire_writer(&self, ino: Ino) {
        let mut st = self.st();
        let Some(w) = st.writer(ino) else { return };
        let w = lock(&w);
        if w.handles > 0 || w.life().keeps_writer() {
            return;
        }
        self.spool.remove(&w.spool.path);
        drop(w);
        st.remove_writer(ino);
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
                tracing::warn!("refusing to create {} in a folder: the upload API cannot choose a folder, so the file would land outside it", Name(name));
                return Err(CoreError::NotPermitted("creating in a folder"));
            }
            Key::File(_) | Key::Local(_) | Key::NameLink(_) => return Err(CoreError::NotDir),
            Key::Root | Key::Clients | Key::ByName => {
                return Err(CoreError::NotPermitted("only client directories hold files"))
            }
        };
        if name.len() > names::NAME_MAX {
            return Err(CoreError::NameTooLong);
        }
        refuse_uncarriable(name)?;
        if names::is_probe_name(name) {
            tracing::info!(
                "refusing to create {}: desktop metadata files are not uploaded",
                Name(name)
            );
            return Err(CoreError::NotPermitted("desktop metadata file"));
        }
        let class = patterns::class(name);
        let taken = match class {
            // A scratch file costs no call: only what is in memory can clash.
            patterns::Class::Scratch => self.cached_entry(client, name).is_some(),
            _ => {
                let view = self.view(client).await?;
                view.get(&DirKey::Top).is_some_and(|d| d.by_name.contains_key(name))
            }
        };
        if taken {
            return Err(CoreError::Exists);
        }
        let spool = match class {
            patterns::Class::Scratch => self.spool.create_scratch()?,
            _ => self.spool.create()?,
        };
        let mut st = self.st();
        st.next_local += 1;
        let local = st.next_local;
        let ino = st.ino_for(Key::Local(local), parent, Kind::File);
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.mtime = SystemTime::now();
        }
        st.locals.insert(local, (client, name.to_string(), ino));
        // An empty file is uploaded too.
        let (life, wait) = match class {
            patterns::Class::Scratch => (Life::Local, Wait::No),
            patterns::Class::Temp => (Life::Staged, Wait::Rename),
            patterns::Class::Ordinary => (Life::Staged, Wait::No),
        };
        let mut w = Writer::new(client, name.to_string(), spool, 0, Vec::new(), life);
        w.step(Event::Created(wait));
        st.set_writer(ino, w);
        st.invalidate_view(client);
        let fh = st.add_handle(Handle::Write { ino, opener: None });
        let node = st.nodes.get(&ino).ok_or(CoreError::NotFound)?;
        let attr = self.attr_of(ino, node, &st);
        Ok((
            attr,
            Opened {
                fh,
                keep_cache: false,
                direct: false,
            },
        ))
    }

    /// Stage written bytes, after fetching the file's current bytes if this handle
    /// has not needed them yet ([`Core::fill`]).
    pub async fn write(&self, fh: Fh, offset: u64, data: &[u8]) -> CoreResult<u32> {
        let w = self.writer_of(fh)?;
        self.fill(&w).await?;
        stage(&w, offset, data)
    }

    /// Stage written bytes at once (local disk only, no network), or `None` when the
    /// file's current bytes must be fetched first: then call [`Core::write`].
    pub fn try_write(&self, fh: Fh, offset: u64, data: &[u8]) -> Option<CoreResult<u32>> {
        let w = match self.writer_of(fh) {
            Ok(w) => w,
            Err(e) => return Some(Err(e)),
        };
        if lock(&w).unfilled.is_some() {
            return None;
        }
        Some(stage(&w, offset, data))
    }

    /// Put the server file's current bytes into the writer's spool file, once, if an
    /// open for writing left them out. Serialised with truncation by the fill gate.
    pub(super) async fn fill(&self, w: &Arc<Mutex<Writer>>) -> CoreResult<()> {
        let gate = lock(w).fill_gate.clone();
        let _g = gate.lock().await;
        let Some((id, size)) = lock(w).unfilled.clone() else {
            return Ok(());
        };
        let entry = self.content_entry(&id, size).await?;
        entry.wait_complete().await?;
        let file = lock(w).spool.file.try_clone()?;
        entry.copy_to(&file).await?;
        lock(w).unfilled = None;
        Ok(())
    }

    /// Set a writer's size (a truncate, or an open with `O_TRUNC` when it is already
    /// open). To 0 no current bytes are needed; to another size they are fetched first.
    pub(super) async fn truncate_writer(&self, w: &Arc<Mutex<Writer>>, size: u64, how: Truncate) -> CoreResult<()> {
        if size > 0 {
            if lock(w).unfilled.as_ref().is_some_and(|(_, listed)| *listed == size) {
                return Ok(());
            }
            self.fill(w).await?;
            return truncate_staged(w, size);
        }
        let gate = lock(w).fill_gate.clone();
        let _g = gate.lock().await;
        let was = lock(w).unfilled.take();
        truncate_staged(w, 0)?;
        if let (Some((_, listed)), Truncate::Handle) = (was, how) {
            // A non-empty file emptied without O_TRUNC and not written yet: the start
            // of an overwrite that may still be abandoned (see `Writer::emptied`).
            lock(w).emptied = listed > 0;
        }
        Ok(())
    }

    pub(super) fn writer_of(&self, fh: Fh) -> CoreResult<Arc<Mutex<Writer>>> {
        let st = self.st();
        match st.handles.get(&fh) {
            Some(Handle::Write { ino, .. }) => st.writer(*ino).ok_or(CoreError::BadHandle),
            _ => Err(CoreError::BadHandle),
        }
    }

    /// `close()`/`fsync()`: upload what was written, if anything. Errors here are what
    /// `close()` reports.
    pub async fn flush(&self, fh: Fh) -> CoreResult<()> {
        self.flush_by(fh, None).await
    }

    /// `close()` by `process` (its thread group id, when known). The opener's close (or
    /// one whose process is unknown) uploads and reports the upload's result: the
    /// honest close. A close by another process sharing the descriptor (a forked child
    /// of the shell whose redirect opened the file, exiting) only journals the bytes
    /// and returns 0: the opener's close uploads them, or the last release if the
    /// opener closed first (`Wait::Opener`).
    pub async fn flush_by(&self, fh: Fh, process: Option<u32>) -> CoreResult<()> {
        let (ino, opener) = match self.st().handles.get(&fh) {
            Some(Handle::Write { ino, opener }) => (*ino, *opener),
            Some(_) => return Ok(()),
            None => return Err(CoreError::BadHandle),
        };
        let by_child = matches!((opener, process), (Some(o), Some(p)) if o != p);
        if let Some(w) = self.st().writer(ino) {
            let mut w = lock(&w);
            w.step(match by_child {
                true => Event::ClosedByChild,
                false => Event::ClosedByOpener,
            });
        }
        if self.close_defers(ino).await? {
            return Ok(());
        }
        self.upload_writer(ino, Priority::User).await
    }

    /// A writer whose file was unlinked or replaced: its staged bytes must never be
    /// uploaded (by a close or by `resume_pending`). Its spool entry goes now if no
    /// handle is open, else at the last release.
    pub(super) fn discard_writer(&self, ino: Ino) {
        let Some(w) = self.st().writer(ino) else {
            return;
        };
        {
            let mut w = lock(&w);
            w.step(Event::Discarded);
            self.spool.drop_journal(&w.spool.path);
        }
        self.retire_writer(ino);
    }
}
