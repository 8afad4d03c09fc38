//! Uploading a writer (`upload_writer`, the one way anything is uploaded: a close, a
//! deferred or failed close, a resumed journal, a rename's copy), its give-up, the
//! background retry of failed closes, and drain support. The protocol it runs is `land.rs`.

use std::path::Path;

use super::error::{CoreError, CoreResult};
use super::land::Earlier;
use super::life::{Event, Life, Wait};
use super::spool::{Attempts, Journal};
use super::staged::{lock, Origin};
use super::state::Flight;
use super::state::Key;
use super::{Core, Ino};
use crate::audit::{Op, Record};
use crate::phi::Name;
use crate::remote::{Priority, Remote};

/// Whether the caller of an upload holds the client's mutation lock already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mutating {
    /// Take it for the upload.
    Take,
    /// Held by the caller (a rename uploading its copy).
    Held,
}

/// One running upload in `Core::uploads`, counted down when dropped.
struct Running<'a>(&'a tokio::sync::watch::Sender<usize>);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl<R: Remote> Core<R> {
    /// Retry uploads that failed at `close()` and are no longer open (the background
    /// retry loop calls this), after cleaning up renames given up. Returns how many
    /// uploads landed.
    pub async fn retry_failed_uploads(&self) -> usize {
        self.clean_all_abandoned().await;
        self.settle_owed_deletes(Priority::Background).await;
        let inos: Vec<Ino> = {
            let st = self.st();
            st.writers()
                .filter(|(_, w)| {
                    let w = lock(w);
                    // Deferred closes are `upload_due`'s, on their own schedule.
                    w.life().unsent() && w.handles == 0 && w.wait() == Wait::No
                })
                .map(|(ino, _)| *ino)
                .collect()
        };
        let mut landed = 0;
        for ino in inos {
            match self.upload_writer(ino, Priority::Background).await {
                Ok(()) => {
                    // Unlinked or renamed over meanwhile: its bytes were discarded, not sent.
                    let discarded = self
                        .st()
                        .writer_ref(ino)
                        .is_none_or(|w| *lock(w).life() == Life::Discarded);
                    if !discarded {
                        landed += 1;
                    }
                    self.retire_writer(ino);
                }
                Err(e) => tracing::debug!("retry of a failed upload did not succeed yet: {e}"),
            }
        }
        if landed > 0 {
            tracing::info!("{landed} earlier failed upload(s) completed");
        }
        landed
    }

    /// Uploads (with their confirming listing and deletes) running now.
    pub fn uploads_in_flight(&self) -> usize {
        *self.uploads.borrow()
    }

    /// Wait until no upload is running (drain at unmount).
    pub async fn uploads_settled(&self) {
        let mut rx = self.uploads.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Upload a writer's staged bytes, learn the new id, then delete what it replaces:
    /// the one way anything is uploaded (a close, a deferred or failed close, a journal
    /// an earlier run left, a rename's copy), and the only caller of [`Core::land`].
    pub(super) async fn upload_writer(&self, ino: Ino, prio: Priority) -> CoreResult<()> {
        self.upload_writer_as(ino, prio, Mutating::Take).await
    }

    /// [`Core::upload_writer`] for a caller that holds the client's mutation lock (a
    /// rename, which uploads its copy as part of one mutation).
    pub(super) async fn upload_writer_held(&self, ino: Ino, prio: Priority) -> CoreResult<()> {
        self.upload_writer_as(ino, prio, Mutating::Held).await
    }

    async fn upload_writer_as(&self, ino: Ino, prio: Priority, mutating: Mutating) -> CoreResult<()> {
        self.uploads.send_modify(|n| *n += 1);
        // Counted down even if this future is dropped half-way.
        let _running = Running(&self.uploads);
        // For the person who wrote it, even when it runs later in the background.
        let by = self.st().writer_ref(ino).and_then(|w| lock(w).by);
        crate::audit::acting_for(
            crate::audit::caller().or(by),
            self.upload_writer_inner(ino, prio, mutating),
        )
        .await
    }

    async fn upload_writer_inner(&self, ino: Ino, prio: Priority, mutating: Mutating) -> CoreResult<()> {
        let Some(w) = self.st().writer(ino) else {
            return Ok(());
        };
        let (client, origin) = {
            let w = lock(&w);
            (w.client, w.origin)
        };
        let _g = match mutating {
            Mutating::Take => Some(self.flight(Flight::Mutate(client)).await),
            Mutating::Held => None,
        };
        let name = {
            let w = lock(&w);
            if *w.life() == Life::GivenUp {
                // A close after the give-up must not look like a success.
                return Err(CoreError::Io(format!(
                    "the upload of {} was given up; its bytes are kept in the spool",
                    Name(&w.name)
                )));
            }
            // An overwrite abandoned before its first byte is never sent (`Writer::emptied`).
            (w.life().unsent() && !w.emptied).then(|| w.name.clone())
        };
        let Some(name) = name else { return Ok(()) };
        self.clean_abandoned(client, Some(&name), prio).await?;
        let known = self.known_ids(client);
        // An older version's journal has no attempt record: only an exact copy of its
        // bytes is taken for an earlier attempt's, and it stays without a record.
        let legacy = origin == Origin::Resumed { recorded: false };
        // Step 1 of the protocol (see `land`): journal the bytes as they are now.
        let (mut j, path, prior, compare, file) = {
            let mut w = lock(&w);
            if !w.life().unsent() {
                return Ok(());
            }
            let prior = w.life().attempts().cloned();
            let compare = match (legacy, w.prior_may_match()) {
                (true, _) => Earlier::ExactOnly,
                (false, true) => Earlier::MayMatch,
                (false, false) => Earlier::Older,
            };
            let mut attempts = prior.clone().unwrap_or(Attempts {
                before: known,
                sizes: Vec::new(),
            });
            attempts.sizes.push(w.size);
            let j = w.journal(&self.opts.account, (!legacy).then(|| attempts.clone()));
            let prior = match legacy {
                true => Some(Attempts {
                    before: Vec::new(),
                    sizes: vec![w.size],
                }),
                false => prior,
            };
            w.step(Event::UploadStarts(attempts));
            (j, w.spool.path.clone(), prior, compare, w.spool.file.try_clone())
        };
        let journaled = match file {
            Ok(file) => self.spool.commit(&file, &path, &j).await,
            Err(e) => Err(e),
        };
        if let Err(e) = journaled {
            lock(&w).step(Event::NotLanded);
            return Err(e.into());
        }
        // The name the file shows now, for the new file to keep (read before landing:
        // landing forgets the file it replaces). A rename's copy shows its own name.
        let shown = match origin.is_copy() {
            true => None,
            false => {
                let st = self.st();
                match st.nodes.get(&ino).map(|n| &n.key) {
                    Some(Key::Local(l)) => st.locals.get(l).map(|(_, name, _)| name.clone()),
                    Some(Key::File(old)) => st.shown.get(old).cloned(),
                    _ => None,
                }
            }
        };
        let landed = self
            .land(&path, &mut j, prior.as_ref(), compare, prio, origin.confirm())
            .await;
        if !origin.is_copy() {
            // A rename's copy is recorded as the rename, by its caller.
            self.audit(Record {
                op: Op::Upload,
                uid: crate::audit::caller(),
                client,
                file_id: landed.as_ref().ok().and_then(|u| u.id.as_deref()),
                size: Some(j.size),
                name: &j.name,
                to: None,
                result: landed.as_ref().map(|_| ()).map_err(|f| f.error.to_string()),
            });
        }
        {
            let mut w = lock(&w);
            if w.uploading_current() {
                // Not written meanwhile: these are still the bytes the count is about.
                w.step(Event::SendsCounted(j.sends));
            }
        }
        let up = match landed {
            Ok(up) => up,
            Err(f) if f.given_up => {
                lock(&w).step(Event::GiveUp);
                j.attempts = prior.filter(|_| !legacy);
                self.give_up(&path, &mut j).await;
                return Err(f.error);
            }
            Err(f) => {
                lock(&w).step(match f.maybe_landed {
                    true => Event::MaybeLanded,
                    false => Event::NotLanded,
                });
                return Err(f.error);
            }
        };
        let Some(id) = up.id else {
            // Accepted (2xx): what it replaced is deleted; its id comes from the next
            // listing of the client, one per batch (`confirm_due`, `confirm_from_listing`).
            {
                lock(&w).step(Event::Accepted);
            }
            self.await_listing(ino, client, shown);
            self.wake.notify_one();
            return Ok(());
        };
        let mtime = {
            let mut w = lock(&w);
            w.step(Event::Landed(Some(id.clone())));
            w.mtime
        };
        if !origin.is_copy() {
            self.cache_staged(&id, &path, j.size).await;
        }
        self.became(ino, client, &id, shown, j.size, mtime);
        Ok(())
    }

    /// Mark the journal entry of the staged bytes at `path` given up (never sent again,
    /// by this mount or a later one; kept in the spool), with the one warning it gets.
    pub(super) async fn give_up(&self, path: &Path, j: &mut Journal) {
        j.given_up = true;
        tracing::warn!(
            "upload of {} to client {} given up after {} upload(s) that no listing shows under its name \
             (the server stores another name); not sent again: its bytes stay in the spool at {}, \
             and `intakeq-fs status` lists it as failed",
            Name(&j.name),
            j.client,
            j.sends,
            path.display()
        );
        if let Err(e) = self.spool.record(path, j).await {
            tracing::warn!("spool: cannot mark a journal entry given up: {e}");
        }
    }

    /// Keep the bytes just uploaded as the new file's cache entry (small files only), so
    /// reading them back costs no call. The read runs on the blocking pool.
    async fn cache_staged(&self, id: &str, path: &Path, size: u64) {
        if size > self.opts.cache_bytes / 4 {
            return;
        }
        let p = path.to_path_buf();
        if let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || std::fs::read(p)).await {
            if bytes.len() as u64 == size {
                self.cache().put_complete(id, bytes);
            }
        }
    }

    /// Writers whose data is not on the server yet (for shutdown and tests).
    pub fn pending_uploads(&self) -> usize {
        self.st()
            .writers()
            .map(|(_, w)| w)
            .filter(|w| lock(w).life().unsent())
            .count()
    }
}
