//! Rename within a client: the API has no rename, so the bytes are uploaded under the new
//! name, confirmed, and what they replace is deleted.

use std::sync::{Arc, Mutex};

use super::blocking;
use super::error::{CoreError, CoreResult};
use super::life::{Event, Life};
use super::overlay::refuse_server_to_scratch;
use super::spool::{Attempts, SpoolFile};
use super::staged::{lock, Origin, Writer};
use super::state::Flight;
use super::state::Key;
use super::writer::refuse_uncarriable;
use super::{names, patterns, Attr, Core, Ino, Kind};
use crate::phi::Name;
use crate::remote::{ClientId, Priority, Remote};

impl<R: Remote> Core<R> {
    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> CoreResult<()> {
        let Some((client, src, dst)) = self.rename_ends(parent, name, new_parent, new_name, no_replace).await? else {
            return Ok(());
        };
        // A file not on the server yet (an atomic saver's temp file, a scratch file)
        // moves without a copy: its rename is its upload.
        let is_local = |core: &Self| -> CoreResult<Option<Arc<Mutex<Writer>>>> {
            let w = core.st().writer(src.ino);
            Ok(match (core.key_of(src.ino)?.0, w) {
                (Key::Local(_), Some(w)) if !matches!(lock(&w).life(), Life::Unconfirmed { .. }) => Some(w),
                _ => None,
            })
        };
        if let Some(w) = is_local(self)? {
            return self.rename_local(client, src.ino, w, new_name, dst).await;
        }
        if self.rename_by_name_only(client, &src, new_name, dst.is_some())? {
            return Ok(());
        }
        refuse_server_to_scratch(new_name)?;
        // Staged bytes that are not on the server yet go up first, under the old name.
        self.upload_writer(src.ino, Priority::User).await?;
        let accepted = self
            .st()
            .writer_ref(src.ino)
            .is_some_and(|w| matches!(lock(w).life(), Life::Unconfirmed { .. }));
        if accepted {
            // On the server but not listed yet: one listing learns its id, and it moves
            // like any file on the server (or, if the listing lacks it, like a local one).
            self.confirm_now(client, Priority::User).await?;
            if let Some(w) = is_local(self)? {
                return self.rename_local(client, src.ino, w, new_name, dst).await;
            }
        }
        let _g = self.flight(Flight::Mutate(client)).await;
        let (src_file, dst_file) = {
            let st = self.st();
            let id_of = |ino: Ino| match st.nodes.get(&ino).map(|n| &n.key) {
                Some(Key::File(id)) => Some(id.clone()),
                _ => None,
            };
            (id_of(src.ino), dst.as_ref().and_then(|d| id_of(d.ino)))
        };
        let Some(src_id) = src_file else {
            // Still local (an unlinked or failed upload): nothing on the server to move.
            return Err(CoreError::Io("the file is not on the server yet".into()));
        };
        // A copy that an earlier, given-up rename to this name may have left goes first,
        // so that the copy made now is never taken for it.
        self.clean_abandoned(client, Some(new_name), Priority::User).await?;
        // The destination's staged bytes are replaced too, with any copies its failed
        // closes may have left on the server.
        let dst_writer = dst.as_ref().and_then(|d| self.st().writer(d.ino));
        let dst_attempts = dst_writer.as_ref().and_then(|w| lock(w).life().attempts().cloned());
        let dst_leftovers = match &dst_attempts {
            Some(a) => {
                let exclude: Vec<String> = [src_id.clone()].into_iter().chain(dst_file.clone()).collect();
                self.find_attempts(client, new_name, a, &exclude, Priority::User)
                    .await?
            }
            None => Vec::new(),
        };
        let writer = self.st().writer(src.ino);
        let staged = self.stage_copy(writer.as_ref(), &src_id, src.size).await?;
        let mut replaces = vec![src_id.clone()];
        replaces.extend(dst_file);
        replaces.extend(dst_leftovers.into_iter().map(|f| f.id));
        let origin = Origin::RenameCopy {
            source_open: writer.is_some(),
        };
        let copy = self.copy_writer(client, src.ino, origin, staged, new_name, replaces)?;
        // The copy is a writer like any other: the one upload protocol sends it. A closed
        // file's copy is trusted on the server's 2xx (its id comes from a later listing);
        // an open one's is confirmed at once, since its writer carries on.
        let sent = self.upload_writer_held(copy, Priority::User).await;
        let life = self.st().writer_ref(copy).map(|w| lock(w).life().clone());
        let dst = dst.map(|d| d.ino);
        match (sent, life) {
            (Ok(()), Some(Life::Landed { id: Some(new_id) })) => {
                self.audit_rename(client, &src_id, name, new_name, Some(&new_id), src.size);
                self.renamed(client, src.ino, &src_id, &new_id, new_name, dst);
                if let Some(w) = writer {
                    let mut w = lock(&w);
                    w.name = new_name.to_string();
                    w.step(Event::Moved(new_id));
                }
                self.retire_writer(copy);
                Ok(())
            }
            (Ok(()), Some(Life::Unconfirmed { .. })) => {
                self.audit_rename(client, &src_id, name, new_name, None, src.size);
                self.renamed_unconfirmed(client, src.ino, copy, new_name, dst);
                Ok(())
            }
            (Ok(()), _) => {
                let e = CoreError::Io("renamed copy uploaded but not found; the original is kept".into());
                self.end_copy(copy, None, e).await
            }
            (Err(e), life) => self.end_copy(copy, life, e).await,
        }
    }

    /// A rename's copy that did not become a file the mount can show: abandoned if it
    /// may have landed (`clean_abandoned` deletes it if it did), kept in the spool if
    /// given up (`give_up` marked its journal entry: never sent again), else dropped
    /// (not sent, or a listing showed that it did not land: nothing changed). The
    /// rename fails with `e`.
    async fn end_copy(&self, copy: Ino, life: Option<Life>, e: CoreError) -> CoreResult<()> {
        match life {
            Some(Life::Failed { attempts: Some(a) }) => self.abandon_copy(copy, a).await,
            Some(Life::GivenUp) => drop(self.st().remove_writer(copy)),
            _ => self.drop_copy(copy),
        }
        Err(e)
    }

    /// The writer of a rename's copy (staged at `staged`, to be uploaded as `new_name`,
    /// replacing `replaces`), under an inode of its own that no file shows: nobody can
    /// open it, and the source keeps its name and inode until the copy is on the server.
    fn copy_writer(
        &self,
        client: ClientId,
        src: Ino,
        origin: Origin,
        staged: SpoolFile,
        new_name: &str,
        replaces: Vec<String>,
    ) -> CoreResult<Ino> {
        let size = match staged.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                self.spool.remove(&staged.path);
                return Err(e.into());
            }
        };
        let mut w = Writer::new(client, new_name.to_string(), staged, size, replaces, Life::Staged);
        w.handles = 0;
        w.origin = origin;
        let mut st = self.st();
        // The renamed file keeps its mtime.
        if let Some(m) = st.nodes.get(&src).map(|n| self.attr_of(src, n, &st).mtime) {
            w.mtime = m;
        }
        Ok(st.add_detached_writer(w))
    }

    /// A rename's copy that did not land (or was never sent): its writer and staged
    /// bytes go; the source is as it was.
    fn drop_copy(&self, copy: Ino) {
        let w = self.st().remove_writer(copy);
        if let Some(w) = w {
            let w = lock(&w);
            self.spool.remove(&w.spool.path);
        }
    }

    /// A rename given up while its copy may have landed (the listing that would tell
    /// failed): the copy is never completed, and is deleted if it did land, before
    /// anything else is uploaded under its name (`clean_abandoned`; a later mount too,
    /// from the journal entry marked `abandoned`).
    async fn abandon_copy(&self, copy: Ino, attempts: Attempts) {
        let Some(w) = self.st().remove_writer(copy) else {
            return;
        };
        let (mut journal, file, path) = {
            let w = lock(&w);
            (
                w.journal(&self.opts.account, Some(attempts)),
                w.spool.file.try_clone(),
                w.spool.path.clone(),
            )
        };
        journal.abandoned = true;
        let kept = match file {
            Ok(file) => self.spool.commit(&file, &path, &journal).await.is_ok(),
            Err(_) => false,
        };
        if !kept {
            tracing::warn!("spool: cannot record a given-up rename's copy; only this mount cleans it up");
        }
        self.st().abandoned.insert(path, journal);
    }

    /// The copy was accepted (2xx) and what it replaced is gone, but its id is not known
    /// yet: its writer becomes the source inode's, which shows it as a local file under
    /// the new name until a listing names it (`confirm.rs`).
    fn renamed_unconfirmed(&self, client: ClientId, src: Ino, copy: Ino, new_name: &str, dst: Option<Ino>) {
        let mut st = self.st();
        let Some(w) = st.remove_writer(copy) else {
            return;
        };
        st.next_local += 1;
        let l = st.next_local;
        st.locals.insert(l, (client, new_name.to_string(), src));
        st.rekey(src, Key::Local(l));
        if let Some(n) = st.nodes.get_mut(&src) {
            n.content_changed = false; // same bytes
        }
        // From here on it is the file's own writer: a re-send is an ordinary upload.
        lock(&w).origin = Origin::Written;
        st.put_writer(src, w);
        st.invalidate_view(client);
        drop(st);
        self.drop_destination(dst);
        self.wake.notify_one();
    }

    /// Rename a closed file that is not on the server yet (an atomic saver's temp file,
    /// a file whose upload failed) onto an ordinary name: its bytes go up under the new
    /// name as a copy, by the one upload protocol, before anything changes. Landed, the
    /// inode becomes the new file and what the name showed goes; not landed, nothing
    /// changed and the rename fails with the upload's error (the saver's rename is its
    /// save, so it reports the save honestly).
    pub(super) async fn rename_local_closed(
        &self,
        client: ClientId,
        src: Ino,
        w: Arc<Mutex<Writer>>,
        new_name: &str,
        dst: Option<Attr>,
    ) -> CoreResult<()> {
        let _g = self.flight(Flight::Mutate(client)).await;
        let mut replaced = self.replaced_by_rename(client, dst.as_ref(), new_name).await?;
        let (old_name, attempts, mut replaces, version) = {
            let w = lock(&w);
            (
                w.name.clone(),
                w.life().attempts().cloned(),
                w.replaces().to_vec(),
                w.version(),
            )
        };
        // Copies that failed closes left under the old name go too, once the bytes
        // land under the new one.
        if let Some(a) = attempts {
            let found = self
                .find_attempts(client, &old_name, &a, &replaced, Priority::User)
                .await?;
            replaced.extend(found.into_iter().map(|f| f.id));
        }
        replaces.extend(replaced);
        let staged = self.copy_staged(&w).await?;
        // The first upload of these bytes: audited and cached as one (`Origin::Written`).
        let copy = self.copy_writer(client, src, Origin::Written, staged, new_name, replaces)?;
        let sent = self.upload_writer_held(copy, Priority::User).await;
        let life = self.st().writer_ref(copy).map(|c| lock(c).life().clone());
        // Opened and written while the copy went up: the writer carries on under the
        // new name (its next upload replaces the copy), like an open file's rename.
        let carried_on = {
            let w = lock(&w);
            w.handles > 0 || w.version() != version
        };
        let dst = dst.map(|d| d.ino);
        match (sent, life) {
            (Ok(()), Some(Life::Landed { id: Some(new_id) })) => {
                if carried_on {
                    self.rename_writer(client, src, &w, new_name, Some(new_id));
                } else {
                    self.end_writer(src, &w);
                    let (size, mtime) = {
                        let c = self.st().writer(copy);
                        c.map(|c| {
                            let c = lock(&c);
                            (c.size, c.mtime)
                        })
                        .unwrap_or((0, std::time::SystemTime::now()))
                    };
                    self.became(src, client, &new_id, None, size, mtime);
                }
                self.retire_writer(copy);
                self.drop_destination(dst);
                Ok(())
            }
            (Ok(()), Some(Life::Unconfirmed { .. })) => {
                if carried_on {
                    // Its next upload must replace the copy, whose id one listing learns
                    // now (a rare race: the temp file written while its rename went up).
                    let copy_w = self.st().writer(copy);
                    if let Err(e) = self.confirm_now(client, Priority::User).await {
                        tracing::debug!("the renamed copy's listing failed: {e}; both may remain");
                    }
                    let landed = copy_w.and_then(|c| match lock(&c).life() {
                        Life::Landed { id } => id.clone(),
                        _ => None,
                    });
                    self.rename_writer(client, src, &w, new_name, landed);
                } else {
                    self.end_writer(src, &w);
                    let mut st = self.st();
                    if let Some(c) = st.remove_writer(copy) {
                        st.put_writer(src, c);
                    }
                    st.rename_local_entry(src, new_name);
                    st.invalidate_view(client);
                }
                self.drop_destination(dst);
                Ok(())
            }
            (Ok(()), _) => {
                let e = CoreError::Io("the upload landed but was not found; the file is kept".into());
                self.end_copy(copy, None, e).await
            }
            (Err(e), life) => self.end_copy(copy, life, e).await,
        }
    }

    /// A local file's writer whose bytes are on the server now as its rename's copy: it
    /// ends (its staged bytes and journal entry go); the inode stays.
    fn end_writer(&self, src: Ino, w: &Arc<Mutex<Writer>>) {
        let path = lock(w).spool.path.clone();
        self.spool.remove(&path);
        self.st().remove_writer(src);
    }

    /// A local file renamed while it carries on being written: it shows and is uploaded
    /// under `new_name`; its next upload replaces the copy (`landed`, if known).
    fn rename_writer(
        &self,
        client: ClientId,
        src: Ino,
        w: &Arc<Mutex<Writer>>,
        new_name: &str,
        landed: Option<String>,
    ) {
        {
            let mut w = lock(w);
            w.name = new_name.to_string();
            if let Some(id) = landed {
                w.step(Event::Moved(id));
            }
        }
        let mut st = self.st();
        st.rename_local_entry(src, new_name);
        st.invalidate_view(client);
    }

    /// A copy of a writer's staged bytes in a new spool file.
    async fn copy_staged(&self, w: &Arc<Mutex<Writer>>) -> CoreResult<SpoolFile> {
        let staged = self.spool.create()?;
        let (from, to) = (lock(w).spool.path.clone(), staged.path.clone());
        match blocking(move || std::fs::copy(from, to).map(|_| ()).map_err(CoreError::from)).await {
            Ok(()) => Ok(staged),
            Err(e) => {
                self.spool.remove(&staged.path);
                Err(e)
            }
        }
    }

    /// A destination that had staged bytes or never reached the server is dropped.
    fn drop_destination(&self, dst: Option<Ino>) {
        if let Some(d) = dst {
            self.discard_writer(d);
            let mut st = self.st();
            if let Some(Key::Local(l)) = st.nodes.get(&d).map(|n| n.key.clone()) {
                st.locals.remove(&l);
            }
        }
    }

    /// The checks before a rename touches anything: the client, the source and the
    /// destination it would replace (`None`: nothing to do, same name).
    async fn rename_ends(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> CoreResult<Option<(ClientId, Attr, Option<Attr>)>> {
        if self.opts.read_only {
            return Err(CoreError::ReadOnly);
        }
        if new_name.len() > names::NAME_MAX {
            return Err(CoreError::NameTooLong);
        }
        refuse_uncarriable(new_name)?;
        let src = self.lookup(parent, name).await?;
        if src.kind == Kind::Dir {
            return Err(CoreError::NotPermitted("renaming directories"));
        }
        let (src_key, _) = self.key_of(parent)?;
        let (dst_key, _) = self.key_of(new_parent)?;
        let client = match (&src_key, &dst_key) {
            (Key::Client(a), Key::Client(b)) if a == b => *a,
            _ => return Err(CoreError::CrossDevice),
        };
        if parent == new_parent && name == new_name {
            return Ok(None);
        }
        let dst = match self.lookup(new_parent, new_name).await {
            Ok(a) => Some(a),
            Err(CoreError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Some(d) = &dst {
            if no_replace {
                return Err(CoreError::Exists);
            }
            if d.kind == Kind::Dir {
                return Err(CoreError::IsDir);
            }
        }
        Ok(Some((client, src, dst)))
    }

    /// Stage the bytes to rename: a copy of the writer's staged bytes if it has any,
    /// else of the (cached) download.
    async fn stage_copy(&self, writer: Option<&Arc<Mutex<Writer>>>, src_id: &str, size: u64) -> CoreResult<SpoolFile> {
        // A writer that never needed the file's bytes has none of its own: copy the download.
        if let Some(w) = writer.filter(|w| lock(w).unfilled.is_none()) {
            return self.copy_staged(w).await;
        }
        let staged = self.spool.create()?;
        let copied = match self.content_entry(src_id, size).await {
            Ok(e) => e.copy_to(&staged.file).await,
            Err(e) => Err(e),
        };
        match copied {
            Ok(()) => Ok(staged),
            Err(e) => {
                self.spool.remove(&staged.path);
                Err(e)
            }
        }
    }

    /// The copy landed as `new_id` and what it replaced is gone: the source inode now
    /// stands for it (same bytes, so its cache entry moves along), and a destination
    /// that had staged bytes or never reached the server is dropped.
    /// A rename that changes only the name the mount shows (no call): a document set
    /// aside by MS Office's save under `~WRL….tmp` (it is deleted, or renamed back, once
    /// the new version is renamed over the document's name), and a file renamed back to
    /// the name the server has for it. Not over another file, and not while the file
    /// has bytes of its own to upload.
    fn rename_by_name_only(&self, client: ClientId, src: &Attr, new_name: &str, over: bool) -> CoreResult<bool> {
        if over || self.st().has_writer(src.ino) {
            return Ok(false);
        }
        let Key::File(id) = self.key_of(src.ino)?.0 else {
            return Ok(false);
        };
        let (server_name, _) = self.remote_name_size(client, &id)?;
        if !patterns::is_office_save(new_name) && new_name != server_name {
            return Ok(false);
        }
        tracing::debug!(
            "{} shown as {}: the server keeps it as it is",
            Name(&server_name),
            Name(new_name)
        );
        self.audit(crate::audit::Record {
            op: crate::audit::Op::Rename,
            uid: crate::audit::caller(),
            client,
            file_id: Some(&id),
            size: Some(src.size),
            name: &server_name,
            to: Some(new_name),
            result: Ok(()),
        });
        let mut st = self.st();
        st.shown.insert(id, new_name.to_string());
        st.invalidate_view(client);
        Ok(true)
    }

    fn audit_rename(&self, client: ClientId, old_id: &str, from: &str, to: &str, new_id: Option<&str>, size: u64) {
        self.audit(crate::audit::Record {
            op: crate::audit::Op::Rename,
            uid: crate::audit::caller(),
            client,
            file_id: new_id.or(Some(old_id)),
            size: Some(size),
            name: from,
            to: Some(to),
            result: Ok(()),
        });
    }

    fn renamed(&self, client: ClientId, src: Ino, src_id: &str, new_id: &str, new_name: &str, dst: Option<Ino>) {
        self.cache().rekey(src_id, new_id);
        let mut st = self.st();
        // The renamed file shows its new name and keeps its mtime.
        st.shown.insert(new_id.to_string(), new_name.to_string());
        if let Some(m) = st.nodes.get(&src).map(|n| self.attr_of(src, n, &st).mtime) {
            st.mtimes.insert(new_id.to_string(), m);
        }
        st.rekey(src, Key::File(new_id.to_string()));
        if let Some(n) = st.nodes.get_mut(&src) {
            n.content_changed = false; // same bytes, new id
        }
        st.invalidate_view(client);
        drop(st);
        self.drop_destination(dst);
    }
}
