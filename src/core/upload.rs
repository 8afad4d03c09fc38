//! Uploads: staged bytes to the server, confirmed by a listing, never blindly repeated; the
//! background retry of failed closes.

use std::collections::HashSet;
use std::path::Path;

use tokio::time::Instant;

use super::error::{CoreError, CoreResult};
use super::life::{Event, Life, Wait};
use super::spool::{Attempts, Journal, MAX_SENDS};
use super::staged::{lock, Origin};
use super::state::Flight;
use super::state::Key;
use super::{names, Core, Ino};
use crate::audit::{Op, Record};
use crate::phi::Name;
use crate::remote::{content_type_for, ClientId, Priority, Remote, RemoteFile};

/// An upload that did not succeed. `maybe_landed`: an upload this call sent may have
/// landed all the same (the listing that would tell failed), so whoever tries again
/// must look first; false when a listing showed it did not, or nothing was sent.
#[derive(Debug)]
pub(super) struct UploadFailed {
    /// What `close()` reports.
    pub(super) error: CoreError,
    /// The upload may have landed: look before sending again.
    pub(super) maybe_landed: bool,
    /// Nothing was sent and nothing will be: `MAX_SENDS` uploads went out unseen, or
    /// the name cannot be carried (the journal entry is to be marked `given_up`).
    pub(super) given_up: bool,
}

impl UploadFailed {
    pub(super) fn not_landed(error: CoreError) -> UploadFailed {
        UploadFailed {
            error,
            maybe_landed: false,
            given_up: false,
        }
    }

    fn given_up(error: CoreError) -> UploadFailed {
        UploadFailed {
            error,
            maybe_landed: false,
            given_up: true,
        }
    }

    pub(super) fn maybe_landed(error: CoreError) -> UploadFailed {
        UploadFailed {
            error,
            maybe_landed: true,
            given_up: false,
        }
    }
}

/// The file an upload of `name` (`size` bytes) became, from a listing taken after it:
/// a file of that exact name and size whose id was not listed before (`before`) and is
/// none of the files it replaces; the newest if several. A new id is what confirms it,
/// never the name alone (an older file of the same name is not it). A file the server
/// stored under another name is not taken for it: another upload running meanwhile may
/// have made a file of the same size, and adopting that one would later delete it. Names
/// the server would change are refused before anything is staged (`names::uncarriable`).
fn new_file_of(
    files: &[RemoteFile],
    name: &str,
    size: u64,
    before: &HashSet<String>,
    replaces: &[String],
) -> Option<String> {
    files
        .iter()
        .filter(|f| {
            is_ours(f, name, &[size], |id| {
                before.contains(id) || replaces.iter().any(|r| r == id)
            })
        })
        .max_by_key(|f| (f.created_ms, f.id.clone()))
        .map(|f| f.id.clone())
}

/// Whether listed file `f` can be what an upload of `name` left on the server: its
/// exact name, one of the `sizes` sent, and an id that is none of the files `known`
/// says are not it (listed before the upload, replaced by it, claimed by another
/// upload, owed a delete). The one test of "which listed file is ours": a new id is
/// what confirms an upload, never the name alone.
pub(super) fn is_ours(f: &RemoteFile, name: &str, sizes: &[u64], known: impl Fn(&str) -> bool) -> bool {
    f.name == name && sizes.contains(&f.size) && !known(&f.id)
}

/// Whether a copy that an earlier, unconfirmed attempt left on the server can hold the
/// bytes staged now: then the listing's candidate is downloaded and compared, and an
/// exact copy adopted instead of uploading again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Earlier {
    /// The bytes have not changed since that attempt started.
    MayMatch,
    /// Written since: an earlier copy holds older bytes.
    Older,
    /// Unknown: an older version's journal kept no attempt record. A listed file of the
    /// name and size is taken for an earlier attempt's only if its bytes are exactly the
    /// staged ones; no other file is counted as a leftover (none is deleted for it).
    ExactOnly,
}

/// Whether the caller of an upload holds the client's mutation lock already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mutating {
    /// Take it for the upload.
    Take,
    /// Held by the caller (a rename uploading its copy).
    Held,
}

/// How an upload is confirmed before the caller goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Confirm {
    /// The server's 2xx is trusted; a later listing learns the id (a close).
    Answer,
    /// One listing now learns the id (a resumed journal, an open file's rename copy).
    Listing,
}

/// Whether a listing has shown the new file yet (then its journal entry goes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    Yes,
    NotYet,
}

/// What an upload came to.
#[derive(Debug)]
pub(super) struct Uploaded {
    /// The new file's id, if a listing showed it (`None`: the server's 2xx was trusted
    /// and the id is learned from a later listing).
    pub(super) id: Option<String>,
    /// Copies that earlier unconfirmed attempts left: deleted with what it replaces.
    pub(super) leftovers: Vec<String>,
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
        let shown = match origin {
            Origin::RenameCopy { .. } => None,
            Origin::Written | Origin::Resumed { .. } => {
                let st = self.st();
                match st.nodes.get(&ino).map(|n| &n.key) {
                    Some(Key::Local(l)) => st.locals.get(l).map(|(_, name, _)| name.clone()),
                    Some(Key::File(old)) => st.shown.get(old).cloned(),
                    _ => None,
                }
            }
        };
        let confirm = match origin {
            Origin::Written | Origin::RenameCopy { source_open: false } => Confirm::Answer,
            Origin::Resumed { .. } | Origin::RenameCopy { source_open: true } => Confirm::Listing,
        };
        let landed = self.land(&path, &mut j, prior.as_ref(), compare, prio, confirm).await;
        if !matches!(origin, Origin::RenameCopy { .. }) {
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
        if !matches!(origin, Origin::RenameCopy { .. }) {
            // A rename's copy holds the source's bytes, whose cache entry moves along.
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

    /// The one upload protocol, run by [`Core::upload_writer`] for every writer (a close,
    /// a journal resumed from an earlier run, a rename's copy).
    /// The caller has journaled `j` beside the staged bytes at `path` (`Spool::commit`):
    /// from then on a crash is finished by the next mount. Then:
    ///
    /// 1. upload (`upload_confirmed`: never blindly repeated; copies of earlier
    ///    unconfirmed attempts, `prior`, are looked for first). With `Confirm::Answer` (a
    ///    close) the server's 2xx is final; else one listing confirms the new file;
    /// 2. delete what it replaces, and those copies ([`Core::settle`]);
    /// 3. drop the journal entry once a listing has shown the new file ([`Core::settle`],
    ///    or later, `confirm_from_listing`).
    ///
    /// The journal goes last on purpose: a crash between 1 and 3 leaves it, and the
    /// next mount finds the landed copy (by the attempt record and the exact bytes),
    /// adopts it instead of uploading again and deletes what it replaces, so exactly
    /// one file remains under the name.
    pub(super) async fn land(
        &self,
        path: &Path,
        j: &mut Journal,
        prior: Option<&Attempts>,
        compare: Earlier,
        prio: Priority,
        confirm: Confirm,
    ) -> Result<Uploaded, UploadFailed> {
        let up = self.upload_confirmed(j, path, prior, compare, prio, confirm).await?;
        let seen = match up.id {
            Some(_) => Seen::Yes,
            None => Seen::NotYet,
        };
        self.settle(path, j, &up.leftovers, prio, seen).await;
        Ok(up)
    }

    /// Steps 2 and 3 of [`Core::land`], for an upload the server has (confirmed by a
    /// listing, or accepted with a 2xx): delete what it replaces and the `leftovers` of
    /// earlier attempts (a failed delete is hidden and owed, journaled on its own); drop
    /// the journal entry if a listing has shown the new file (`Seen::Yes`).
    pub(super) async fn settle(&self, path: &Path, j: &Journal, leftovers: &[String], prio: Priority, seen: Seen) {
        let doomed: Vec<String> = j.replaces.iter().chain(leftovers).cloned().collect();
        self.delete_replaced(j.client, &doomed, prio).await;
        if seen == Seen::Yes {
            self.spool.drop_journal(path);
        }
    }

    /// Upload a staged file (`path`) where its journal entry `j` says (client, name,
    /// size, what it replaces) and learn its id from one listing. Every send is counted
    /// in `j.sends` and recorded in the journal before it goes out (a clear refusal,
    /// which stored nothing, is taken back); with `MAX_SENDS` sent, or a name the
    /// upload cannot carry (`names::uncarriable`), nothing is sent (`given_up`). After an ambiguous
    /// failure (the answer was lost, 5xx), the listing decides whether it landed; only
    /// if it shows that it did not is the upload sent once more (at most two attempts),
    /// so an upload is never blindly repeated. `Ok((None, _))`: uploaded, id not
    /// identifiable.
    ///
    /// `prior`: earlier attempts of the same staged file that may have landed
    /// unconfirmed. One listing finds their copies first: with `Earlier::MayMatch` (the staged
    /// bytes may be the ones an attempt sent), an exact copy of the bytes staged now is
    /// adopted instead of uploading again; the others are returned (`leftovers`) to be
    /// deleted along with what this upload replaces, once it has landed.
    pub(super) async fn upload_confirmed(
        &self,
        j: &mut Journal,
        path: &Path,
        prior: Option<&Attempts>,
        compare: Earlier,
        prio: Priority,
        confirm: Confirm,
    ) -> Result<Uploaded, UploadFailed> {
        let (client, name, size, replaces) = (j.client, j.name.clone(), j.size, j.replaces.clone());
        let (name, replaces) = (name.as_str(), &replaces[..]);
        let mut leftovers = Vec::new();
        // A record with no size sent yet (a deferred close's journal) has nothing to find.
        if let Some(a) = prior.filter(|a| !a.sizes.is_empty()) {
            let mut adopted = None;
            let found = self
                .find_attempts(client, name, a, replaces, prio)
                .await
                .map_err(UploadFailed::not_landed)?;
            for f in found {
                if adopted.is_none()
                    && compare != Earlier::Older
                    && f.size == size
                    && self.same_bytes(&f.id, f.size, path).await
                {
                    tracing::info!("an earlier upload of {} had landed after all", Name(name));
                    adopted = Some(f.id);
                } else if compare != Earlier::ExactOnly {
                    leftovers.push(f.id);
                }
            }
            if adopted.is_some() {
                return Ok(Uploaded { id: adopted, leftovers });
            }
        }
        let before: HashSet<String> = self.known_ids(client).into_iter().collect();
        let ct = content_type_for(name);
        for attempt in 1..=2 {
            if let Some(why) = names::uncarriable(name) {
                return Err(UploadFailed::given_up(CoreError::Invalid(why)));
            }
            if j.sends >= MAX_SENDS {
                return Err(UploadFailed::given_up(CoreError::Io(format!(
                    "{MAX_SENDS} uploads were sent and no listing shows the file under its name"
                ))));
            }
            j.sends += 1;
            self.spool
                .record(path, j)
                .await
                .map_err(|e| UploadFailed::not_landed(e.into()))?;
            let uploaded = self.remote.upload(client, name, ct, path, prio).await;
            if uploaded.as_ref().is_err_and(|e| !e.is_ambiguous()) {
                // A clear refusal stored nothing: it does not count.
                j.sends -= 1;
                let _ = self.spool.record(path, j).await;
            }
            if uploaded.is_ok() && confirm == Confirm::Answer {
                // The server has it; a later listing learns its id.
                return Ok(Uploaded { id: None, leftovers });
            }
            if let Err(e) = &uploaded {
                if !e.is_ambiguous() {
                    tracing::warn!("upload of {} failed: {e}", Name(name));
                    return Err(UploadFailed::not_landed(e.clone().into()));
                }
                tracing::warn!("upload of {} may have failed ({e}); checking the listing", Name(name));
            }
            // Whatever the upload answered, it may have landed until a listing says.
            let started = Instant::now();
            let files = match self.remote.list_files(client, prio).await {
                Ok(files) => files,
                Err(e) => return Err(UploadFailed::maybe_landed(e.into())),
            };
            let found = new_file_of(&files, name, size, &before, replaces);
            self.store_listing(client, files, started);
            match (uploaded, found) {
                (Ok(()), Some(id)) => {
                    return Ok(Uploaded {
                        id: Some(id),
                        leftovers,
                    })
                }
                (Ok(()), None) => {
                    // The server said yes, but no new file of that size is listed: it
                    // may still appear (the next attempt looks first), so close fails
                    // and the bytes stay in the spool; what it replaces is kept.
                    tracing::warn!(
                        "upload of {} was accepted but no new file of {size} bytes is listed",
                        Name(name)
                    );
                    return Err(UploadFailed::maybe_landed(CoreError::Io(
                        "the upload was accepted but the file is not in the listing".into(),
                    )));
                }
                (Err(_), Some(id)) => {
                    tracing::info!("upload of {} had landed after all", Name(name));
                    return Ok(Uploaded {
                        id: Some(id),
                        leftovers,
                    });
                }
                (Err(e), None) if attempt == 2 => {
                    tracing::warn!("upload of {} failed: {e}", Name(name));
                    return Err(UploadFailed::not_landed(e.into()));
                }
                (Err(_), None) => tracing::info!("upload of {} did not land; trying once more", Name(name)),
            }
        }
        Err(UploadFailed::maybe_landed(CoreError::Io(format!(
            "upload of {} failed",
            Name(name)
        ))))
    }

    /// Copies that earlier unconfirmed uploads (`a`) of `name` left on the server, from
    /// one listing.
    pub(super) async fn find_attempts(
        &self,
        client: ClientId,
        name: &str,
        a: &Attempts,
        exclude: &[String],
        prio: Priority,
    ) -> CoreResult<Vec<RemoteFile>> {
        let started = Instant::now();
        let files = self.remote.list_files(client, prio).await?;
        // A replaced file whose delete is still owed is nobody's copy: never adopted.
        let owed: HashSet<String> = self.st().owed_deletes.keys().cloned().collect();
        let ours = files
            .iter()
            .filter(|f| {
                is_ours(f, name, &a.sizes, |id| {
                    a.before.iter().any(|b| b == id) || exclude.iter().any(|e| e == id) || owed.contains(id)
                })
            })
            .cloned()
            .collect();
        self.store_listing(client, files, started);
        Ok(ours)
    }

    /// Whether server file `id` holds exactly the staged bytes at `path` (downloads it,
    /// or uses the cached copy).
    pub(super) async fn same_bytes(&self, id: &str, size: u64, path: &Path) -> bool {
        let Ok(entry) = self.content_entry(id, size).await else {
            return false;
        };
        entry.same_as_file(path).await.unwrap_or(false)
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
