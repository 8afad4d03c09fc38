//! The upload protocol itself: land a journaled upload (upload, never blindly
//! repeated; confirm; delete what it replaces; drop the journal), which listed file is an
//! upload's (`is_ours`), and the copies earlier unconfirmed attempts left. Run for every
//! writer by `upload.rs`'s `upload_writer`, its only caller.

use std::collections::HashSet;
use std::path::Path;

use tokio::time::Instant;

use super::error::{CoreError, CoreResult};
use super::names;
use super::spool::{Attempts, Journal, MAX_SENDS};
use super::Core;
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

impl<R: Remote> Core<R> {
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
        // A file written again after an upload that may have landed unconfirmed (a
        // second `:w` before the first save's confirming listing): its new bytes cannot
        // be an earlier copy, and their size tells them apart from every earlier one. So
        // nothing is looked for first: it is uploaded, and the one listing that confirms
        // it also names the earlier copies, deleted with what it replaces. The save costs
        // what any save costs (an upload, a delete, its confirming listing), not a
        // listing more. With a size sent before, the copies are looked for first, as
        // then the listing could not tell the new file from an earlier copy.
        let superseded = prior
            .filter(|_| compare == Earlier::Older && confirm == Confirm::Answer)
            .filter(|a| !a.sizes.is_empty() && !a.sizes.contains(&size));
        let confirm = match superseded {
            Some(_) => Confirm::Listing,
            None => confirm,
        };
        // A record with no size sent yet (a deferred close's journal) has nothing to find.
        if let Some(a) = prior.filter(|a| !a.sizes.is_empty() && superseded.is_none()) {
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
            if let (Some(a), Some(id)) = (superseded, &found) {
                let exclude: Vec<String> = replaces.iter().chain([id]).cloned().collect();
                leftovers.extend(self.attempts_in(&files, name, a, &exclude).into_iter().map(|f| f.id));
            }
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
        let ours = self.attempts_in(&files, name, a, exclude);
        self.store_listing(client, files, started);
        Ok(ours)
    }

    /// The copies in `files` that earlier unconfirmed uploads (`a`) of `name` may have
    /// left: a new id (not listed before the first attempt, not in `exclude`) of one of
    /// the sizes sent. A copy may be in the listing the mount already had, so only the
    /// attempt record's `before` counts as listed before. A replaced file whose delete
    /// is still owed is nobody's copy.
    fn attempts_in(&self, files: &[RemoteFile], name: &str, a: &Attempts, exclude: &[String]) -> Vec<RemoteFile> {
        let owed: HashSet<String> = self.st().owed_deletes.keys().cloned().collect();
        files
            .iter()
            .filter(|f| {
                is_ours(f, name, &a.sizes, |id| {
                    a.before.iter().any(|b| b == id) || exclude.iter().any(|e| e == id) || owed.contains(id)
                })
            })
            .cloned()
            .collect()
    }

    /// Whether server file `id` holds exactly the staged bytes at `path` (downloads it,
    /// or uses the cached copy).
    pub(super) async fn same_bytes(&self, id: &str, size: u64, path: &Path) -> bool {
        let Ok(entry) = self.content_entry(id, size).await else {
            return false;
        };
        entry.same_as_file(path).await.unwrap_or(false)
    }
}
