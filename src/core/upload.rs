//! Uploads: staged bytes to the server, confirmed by a listing, never blindly repeated; the
//! background retry of failed closes.

use std::collections::HashSet;
use std::path::Path;

use super::error::{CoreError, CoreResult};
use super::metadata::Flight;
use super::spool::{Attempts, Journal};
use super::state::Key;
use super::writer::{lock, Event, Life, Wait};
use super::{Core, Ino};
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
}

impl UploadFailed {
    pub(super) fn not_landed(error: CoreError) -> UploadFailed {
        UploadFailed {
            error,
            maybe_landed: false,
        }
    }

    pub(super) fn maybe_landed(error: CoreError) -> UploadFailed {
        UploadFailed {
            error,
            maybe_landed: true,
        }
    }
}

/// The file an upload of `name` (`size` bytes) became, from a listing taken after it:
/// a file of that exact name and size whose id was not listed before (`before`) and is
/// none of the files it replaces; the newest if several. A new id is what confirms it,
/// never the name alone (an older file of the same name is not it). A file the server
/// stored under another name is not taken for it: another upload running meanwhile may
/// have made a file of the same size, and adopting that one would later delete it. Names
/// the server would change are refused before anything is staged (`patterns::uncarriable`).
fn new_file_of(
    files: &[RemoteFile],
    name: &str,
    size: u64,
    before: &HashSet<String>,
    replaces: &[String],
) -> Option<String> {
    files
        .iter()
        .filter(|f| f.name == name && f.size == size && !before.contains(&f.id) && !replaces.contains(&f.id))
        .max_by_key(|f| (f.created_ms, f.id.clone()))
        .map(|f| f.id.clone())
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
            st.writers
                .iter()
                .filter(|(_, w)| {
                    let w = lock(w);
                    // Deferred closes are `upload_due`'s, on their own schedule.
                    w.life().unsent() && w.handles == 0 && w.wait == Wait::No
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
                        .writers
                        .get(&ino)
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

    /// Upload a writer's staged bytes, learn the new id, then delete what it replaces.
    pub(super) async fn upload_writer(&self, ino: Ino, prio: Priority) -> CoreResult<()> {
        self.uploads.send_modify(|n| *n += 1);
        // Counted down even if this future is dropped half-way.
        let _running = Running(&self.uploads);
        self.upload_writer_inner(ino, prio).await
    }

    async fn upload_writer_inner(&self, ino: Ino, prio: Priority) -> CoreResult<()> {
        let Some(w) = self.st().writers.get(&ino).cloned() else {
            return Ok(());
        };
        let client = lock(&w).client;
        let _g = self.flight(Flight::Mutate(client)).await;
        let name = {
            let w = lock(&w);
            w.life().unsent().then(|| w.name.clone())
        };
        let Some(name) = name else { return Ok(()) };
        self.clean_abandoned(client, Some(&name), prio).await?;
        let known = self.known_ids(client);
        // Step 1 of the protocol (see `land`): journal the bytes as they are now.
        let (j, path, prior, file) = {
            let mut w = lock(&w);
            if !w.life().unsent() {
                return Ok(());
            }
            let prior = w.life().attempts().cloned();
            let mut attempts = prior.clone().unwrap_or(Attempts {
                before: known,
                sizes: Vec::new(),
            });
            attempts.sizes.push(w.size);
            let j = Journal {
                account: self.opts.account.clone(),
                client,
                name: w.name.clone(),
                replaces: w.replaces.clone(),
                size: w.size,
                attempts: Some(attempts.clone()),
                abandoned: false,
            };
            w.step(Event::UploadStarts(attempts));
            (j, w.spool.path.clone(), prior, w.spool.file.try_clone())
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
        // landing forgets the file it replaces).
        let shown = {
            let st = self.st();
            match st.nodes.get(&ino).map(|n| &n.key) {
                Some(Key::Local(l)) => st.locals.get(l).map(|(_, name, _)| name.clone()),
                Some(Key::File(old)) => st.shown.get(old).cloned(),
                _ => None,
            }
        };
        let new_id = match self.land(&path, &j, prior.as_ref(), prio).await {
            Ok(id) => id,
            Err(f) => {
                lock(&w).step(match f.maybe_landed {
                    true => Event::MaybeLanded,
                    false => Event::NotLanded,
                });
                return Err(f.error);
            }
        };
        let mtime = {
            let mut w = lock(&w);
            w.replaces = new_id.iter().cloned().collect();
            w.step(Event::Landed(new_id.clone()));
            w.mtime
        };
        if let Some(id) = &new_id {
            self.cache_staged(id, &path, j.size).await;
            let mut st = self.st();
            // The new file keeps what `stat` and `ls` showed: its name and mtime.
            if let Some(name) = shown {
                st.shown.insert(id.clone(), name);
            }
            st.mtimes.insert(id.clone(), mtime);
            let local = st
                .nodes
                .get(&ino)
                .and_then(|n| if let Key::Local(l) = n.key { Some(l) } else { None });
            if let Some(l) = local {
                st.locals.remove(&l);
            }
            st.rekey(ino, Key::File(id.clone()));
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.size = j.size;
                n.mtime = mtime;
            }
            st.invalidate_view(client);
        }
        Ok(())
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

    /// The one upload protocol, for close (`upload_writer`), rename and crash resume.
    /// The caller has journaled `j` beside the staged bytes at `path` (`Spool::commit`):
    /// from then on a crash is finished by the next mount. Then:
    ///
    /// 1. upload, confirmed by one listing (`upload_confirmed`: never blindly repeated;
    ///    copies of earlier unconfirmed attempts, `prior`, are looked for first);
    /// 2. delete what it replaces, and those copies ([`Core::settle`]);
    /// 3. drop the journal entry ([`Core::settle`]).
    ///
    /// The journal goes last on purpose: a crash between 1 and 3 leaves it, and the
    /// next mount finds the landed copy (by the attempt record and the exact bytes),
    /// adopts it instead of uploading again and deletes what it replaces, so exactly
    /// one file remains under the name. `Ok(None)`: uploaded, but the listing could not
    /// tell which file it is; what it replaces is kept.
    pub(super) async fn land(
        &self,
        path: &Path,
        j: &Journal,
        prior: Option<&Attempts>,
        prio: Priority,
    ) -> Result<Option<String>, UploadFailed> {
        let (id, leftovers) = self.upload_confirmed(j, path, prior, prio).await?;
        self.settle(path, j, id.as_deref(), &leftovers, prio).await;
        Ok(id)
    }

    /// Steps 2 and 3 of [`Core::land`], for an upload known to have landed as `id`:
    /// delete what it replaces and the `leftovers` of earlier attempts (a failed delete
    /// is hidden and owed, journaled on its own), then drop the journal entry.
    pub(super) async fn settle(
        &self,
        path: &Path,
        j: &Journal,
        id: Option<&str>,
        leftovers: &[String],
        prio: Priority,
    ) {
        let doomed: Vec<String> = j.replaces.iter().chain(leftovers).cloned().collect();
        self.delete_replaced(j.client, &doomed, id, prio).await;
        self.spool.drop_journal(path);
    }

    /// Upload a staged file (`path`) where its journal entry `j` says (client, name,
    /// size, what it replaces) and learn its id from one listing. After an ambiguous
    /// failure (the answer was lost, 5xx), the listing decides whether it landed; only
    /// if it shows that it did not is the upload sent once more (at most two attempts),
    /// so an upload is never blindly repeated. `Ok((None, _))`: uploaded, id not
    /// identifiable.
    ///
    /// `prior`: earlier attempts of the same staged file that may have landed
    /// unconfirmed. One listing finds their copies first: an exact copy of the bytes
    /// staged now is adopted instead of uploading again, and the others are returned
    /// (second element) to be deleted along with what this upload replaces.
    pub(super) async fn upload_confirmed(
        &self,
        j: &Journal,
        path: &Path,
        prior: Option<&Attempts>,
        prio: Priority,
    ) -> Result<(Option<String>, Vec<String>), UploadFailed> {
        let (client, name, size, replaces) = (j.client, j.name.as_str(), j.size, &j.replaces[..]);
        let mut leftovers = Vec::new();
        // A record with no size sent yet (a deferred close's journal) has nothing to find.
        if let Some(a) = prior.filter(|a| !a.sizes.is_empty()) {
            let mut adopted = None;
            let found = self
                .find_attempts(client, name, a, replaces, prio)
                .await
                .map_err(UploadFailed::not_landed)?;
            for f in found {
                if adopted.is_none() && f.size == size && self.same_bytes(&f.id, f.size, path).await {
                    tracing::info!("an earlier upload of {} had landed after all", Name(name));
                    adopted = Some(f.id);
                } else {
                    leftovers.push(f.id);
                }
            }
            if adopted.is_some() {
                return Ok((adopted, leftovers));
            }
        }
        let before: HashSet<String> = self.known_ids(client).into_iter().collect();
        let ct = content_type_for(name);
        for attempt in 1..=2 {
            let uploaded = self.remote.upload(client, name, ct, path, prio).await;
            if let Err(e) = &uploaded {
                if !e.is_ambiguous() {
                    tracing::warn!("upload of {} failed: {e}", Name(name));
                    return Err(UploadFailed::not_landed(e.clone().into()));
                }
                tracing::warn!("upload of {} may have failed ({e}); checking the listing", Name(name));
            }
            // Whatever the upload answered, it may have landed until a listing says.
            let files = match self.remote.list_files(client, prio).await {
                Ok(files) => files,
                Err(e) => return Err(UploadFailed::maybe_landed(e.into())),
            };
            let found = new_file_of(&files, name, size, &before, replaces);
            self.store_listing(client, files);
            match (uploaded, found) {
                (Ok(()), Some(id)) => return Ok((Some(id), leftovers)),
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
                    return Ok((Some(id), leftovers));
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
        let files = self.remote.list_files(client, prio).await?;
        let ours = files
            .iter()
            .filter(|f| {
                f.name == name && !a.before.contains(&f.id) && !exclude.contains(&f.id) && a.sizes.contains(&f.size)
            })
            .cloned()
            .collect();
        self.store_listing(client, files);
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
        self.st().writers.values().filter(|w| lock(w).life().unsent()).count()
    }
}
