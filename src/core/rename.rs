//! Rename within a client: the API has no rename, so the bytes are uploaded under the new
//! name, confirmed, and what they replace is deleted.

use std::sync::{Arc, Mutex};

use super::blocking;
use super::error::{CoreError, CoreResult};
use super::life::{Event, Life};
use super::overlay::refuse_server_to_scratch;
use super::spool::{Attempts, Journal, SpoolFile};
use super::staged::{lock, Writer};
use super::state::Flight;
use super::state::Key;
use super::upload::{Confirm, Earlier, Seen, Uploaded};
use super::writer::refuse_uncarriable;
use super::{names, patterns, Attr, Core, Ino, Kind};
use crate::phi::Name;
use crate::remote::{ClientId, Priority, Remote};

/// What became of a renamed file's copy.
enum Copied {
    /// A listing showed it as this file.
    Landed(String),
    /// The server accepted it (2xx); a later listing learns its id. With the uploads
    /// sent so far (`Journal::sends`).
    Accepted(Attempts, u32),
}

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
        let journal = Journal::new(&self.opts.account, client, new_name, replaces, src.size);
        // A closed file's copy is trusted on the server's 2xx (its id comes from a later
        // listing); an open one's is confirmed at once, since its writer carries on.
        let confirm = match writer {
            None => Confirm::Answer,
            Some(_) => Confirm::Listing,
        };
        match self.upload_copy(&staged, journal, confirm).await {
            Ok(Copied::Landed(new_id)) => {
                self.audit_rename(client, &src_id, name, new_name, Some(&new_id), src.size);
                self.renamed(client, src.ino, &src_id, &new_id, new_name, dst.map(|d| d.ino));
                if let Some(w) = writer {
                    let mut w = lock(&w);
                    w.name = new_name.to_string();
                    w.step(Event::Moved(new_id));
                }
                self.spool.remove(&staged.path);
                Ok(())
            }
            Ok(Copied::Accepted(attempts, sends)) => {
                self.audit_rename(client, &src_id, name, new_name, None, src.size);
                self.renamed_unconfirmed(client, src.ino, staged, attempts, new_name, dst.map(|d| d.ino));
                if let Some(w) = self.st().writer_ref(src.ino) {
                    lock(w).step(Event::SendsCounted(sends));
                }
                Ok(())
            }
            Err((e, keep_staged)) => {
                if !keep_staged {
                    self.spool.remove(&staged.path);
                }
                e
            }
        }
    }

    /// The copy was accepted (2xx) and what it replaced is gone, but its id is not known
    /// yet: the source inode shows it as a local file under the new name, its staged
    /// copy kept by an unconfirmed writer until a listing names it (`upload.rs`).
    fn renamed_unconfirmed(
        &self,
        client: ClientId,
        src: Ino,
        staged: SpoolFile,
        attempts: Attempts,
        new_name: &str,
        dst: Option<Ino>,
    ) {
        let size = attempts.sizes.last().copied().unwrap_or(0);
        let mut w = Writer::new(
            client,
            new_name.to_string(),
            staged,
            size,
            Vec::new(),
            Life::Unconfirmed {
                attempts,
                at: tokio::time::Instant::now(),
            },
        );
        w.handles = 0;
        let mut st = self.st();
        if let Some(m) = st.nodes.get(&src).map(|n| self.attr_of(src, n, &st).mtime) {
            w.mtime = m;
        }
        st.next_local += 1;
        let l = st.next_local;
        st.locals.insert(l, (client, new_name.to_string(), src));
        st.rekey(src, Key::Local(l));
        if let Some(n) = st.nodes.get_mut(&src) {
            n.content_changed = false; // same bytes
        }
        st.set_writer(src, w);
        st.invalidate_view(client);
        drop(st);
        self.drop_destination(dst);
        self.wake.notify_one();
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
        let staged = self.spool.create()?;
        // A writer that never needed the file's bytes has none of its own: copy the download.
        let writer = writer.filter(|w| lock(w).unfilled.is_none());
        let copied = match writer {
            Some(w) => {
                let (from, to) = (lock(w).spool.path.clone(), staged.path.clone());
                blocking(move || std::fs::copy(from, to).map(|_| ()).map_err(CoreError::from)).await
            }
            None => match self.content_entry(src_id, size).await {
                Ok(e) => e.copy_to(&staged.file).await,
                Err(e) => Err(e),
            },
        };
        match copied {
            Ok(()) => Ok(staged),
            Err(e) => {
                self.spool.remove(&staged.path);
                Err(e)
            }
        }
    }

    /// Upload the staged copy under its new name by the upload protocol (`land`); the
    /// new file's id. On failure, the error and whether the staged copy must stay in
    /// the spool (a rename given up whose copy may have landed: `clean_abandoned`
    /// deletes that copy before anything else of the name is uploaded).
    async fn upload_copy(
        &self,
        staged: &SpoolFile,
        mut journal: Journal,
        confirm: Confirm,
    ) -> Result<Copied, (CoreResult<()>, bool)> {
        let fail = |e: CoreError| (Err(e), false);
        let size = staged.file.metadata().map_err(|e| fail(e.into()))?.len();
        journal.size = size;
        journal.attempts = Some(Attempts {
            before: self.known_ids(journal.client),
            sizes: vec![size],
        });
        self.spool
            .commit(&staged.file, &staged.path, &journal)
            .await
            .map_err(|e| fail(e.into()))?;
        let new_id = match self
            .land(
                &staged.path,
                &mut journal,
                None,
                Earlier::MayMatch,
                Priority::User,
                confirm,
            )
            .await
        {
            Ok(Uploaded { id: None, .. }) if confirm == Confirm::Answer => {
                return Ok(Copied::Accepted(
                    journal.attempts.clone().unwrap_or_default(),
                    journal.sends,
                ));
            }
            Ok(up) => up.id,
            // The listing showed that the copy did not land: nothing changed.
            Err(f) if !f.maybe_landed => return Err(fail(f.error)),
            Err(f) => {
                // The copy may have landed all the same: one more listing decides.
                let attempt = journal.attempts.clone().unwrap_or_default();
                let found = self
                    .find_attempts(
                        journal.client,
                        &journal.name,
                        &attempt,
                        &journal.replaces,
                        Priority::User,
                    )
                    .await;
                match found {
                    Ok(found) if !found.is_empty() => {
                        let id = found
                            .into_iter()
                            .max_by_key(|f| (f.created_ms, f.id.clone()))
                            .map(|f| f.id);
                        // It did: the rest of the protocol as for any landed upload.
                        self.settle(&staged.path, &journal, &[], Priority::User, Seen::Yes)
                            .await;
                        id
                    }
                    Ok(_) => return Err(fail(f.error)),
                    Err(_) => {
                        // Cannot tell: the copy, if it landed, is deleted later
                        // (`clean_abandoned`), before anything else of that name.
                        journal.abandoned = true;
                        let keep = self.spool.commit(&staged.file, &staged.path, &journal).await.is_ok();
                        self.st().abandoned.insert(staged.path.clone(), journal);
                        return Err((Err(f.error), keep));
                    }
                }
            }
        };
        new_id.map(Copied::Landed).ok_or_else(|| {
            fail(CoreError::Io(
                "renamed copy uploaded but not found; the original is kept".into(),
            ))
        })
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
