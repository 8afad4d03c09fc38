//! What the mount keeps to itself for a while: scratch files in the private local
//! overlay (never uploaded), atomic savers' temp files waiting for their rename, and
//! closes deferred to the last release; and the rename of a file that is not on the
//! server, which is how a temp file becomes a save with one upload.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::error::{CoreError, CoreResult};
use super::life::{Event, Life, Wait};
use super::patterns::{self, Class, HOLD_EMPTY, HOLD_IDLE};
use super::spool::Attempts;
use super::staged::{lock, Writer};
use super::state::Flight;
use super::state::Key;
use super::{Attr, Core, Ino};
use crate::phi::Name;
use crate::remote::{ClientId, Priority, Remote};

impl<R: Remote> Core<R> {
    /// Whether this close leaves the upload for later. A scratch file is never
    /// uploaded. A temp file waits for its rename (`Wait::Rename`). A file closed before
    /// anything was written waits for its last release (`Wait::Release`): a shell
    /// redirect (`cmd > file`) opens the file, `dup2`s it and closes the first
    /// descriptor before the command writes, so uploading then would put an empty file
    /// on the server while the command runs, and upload twice. A deferred upload is
    /// journaled now, so a crash before it happens loses nothing.
    pub(super) async fn close_defers(&self, ino: Ino) -> CoreResult<bool> {
        let Some(w) = self.st().writer(ino) else {
            return Ok(false);
        };
        let (journal, file, path) = {
            let mut w = lock(&w);
            if *w.life() == Life::Local {
                return Ok(true);
            }
            if !w.life().unsent() {
                return Ok(false);
            }
            if w.size == 0 {
                w.step(Event::ClosedUnwritten);
            }
            if w.wait() == Wait::No {
                return Ok(false);
            }
            // An empty record: nothing sent yet, so nothing to look for before the
            // first upload (no record would make a resume look for an exact copy).
            let journal = w.journal(&self.opts.account, Some(Attempts::default()));
            (journal, w.spool.file.try_clone(), w.spool.path.clone())
        };
        self.spool.commit(&file?, &path, &journal).await?;
        Ok(true)
    }

    /// Upload what closes deferred and is due now: files closed before anything was
    /// written, once released; temp files never renamed, once left alone for
    /// [`HOLD_IDLE`] (every one of them with `all`, at unmount). Runs in the background
    /// loop, woken by the release. Returns how many landed.
    pub async fn upload_due(&self, all: bool) -> usize {
        let now = Instant::now();
        let due: Vec<(Ino, Priority)> = {
            let st = self.st();
            st.writers()
                .filter_map(|(ino, w)| {
                    let w = lock(w);
                    if w.handles > 0 || !w.life().unsent() {
                        return None;
                    }
                    let held = held_until(&w).is_some_and(|t| t > now) && !all;
                    match w.wait() {
                        Wait::No => None,
                        _ if held => None,
                        // The user's own close, only later: user priority.
                        Wait::Release | Wait::Opener => Some((*ino, Priority::User)),
                        // Nobody waits at a screen for a re-send, or a temp file's.
                        Wait::Resend | Wait::Rename => Some((*ino, Priority::Background)),
                    }
                })
                .collect()
        };
        let mut landed = 0;
        for (ino, prio) in due {
            let Some(w) = self.st().writer(ino) else {
                continue;
            };
            // From here on it is an ordinary close: a failure is retried with the others.
            lock(&w).step(Event::Due);
            match self.upload_writer(ino, prio).await {
                Ok(()) => {
                    landed += 1;
                    self.retire_writer(ino);
                }
                // Given up: `give_up` has said so, and it is not retried.
                Err(_) if *lock(&w).life() == Life::GivenUp => {}
                Err(e) => {
                    let name = lock(&w).name.clone();
                    tracing::warn!(
                        "deferred upload of {} failed: {e}; retried in the background",
                        Name(&name)
                    );
                }
            }
        }
        landed
    }

    /// When the background loop next has something to do: a temp file left alone falls
    /// due for upload, or a client's accepted uploads for their confirming listing.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let held = {
            let st = self.st();
            st.writers()
                .map(|(_, w)| w)
                .filter_map(|w| {
                    let w = lock(w);
                    (w.handles == 0 && w.life().unsent()).then(|| held_until(&w)).flatten()
                })
                .min()
        };
        let confirm = self.confirm_times().into_values().min();
        held.into_iter().chain(confirm).min()
    }

    /// Rename a file that is not on the server (a temp file being saved, a scratch
    /// file, a file whose upload is still due). Closed and onto an ordinary name: its
    /// bytes go up under the new name first (`rename_local_closed`: one upload, one
    /// delete), and nothing changes unless they land. Still open: nothing is copied, its
    /// staged bytes take the new name and replace what it showed at their close. Onto a
    /// scratch name they stay local and are never uploaded.
    pub(super) async fn rename_local(
        &self,
        client: ClientId,
        src: Ino,
        w: Arc<Mutex<Writer>>,
        new_name: &str,
        dst: Option<Attr>,
    ) -> CoreResult<()> {
        let to_scratch = patterns::class(new_name) == Class::Scratch;
        if !to_scratch && lock(&w).handles == 0 {
            // Closed: the rename is its upload, and changes nothing until that lands.
            return self.rename_local_closed(client, src, w, new_name, dst).await;
        }
        {
            let _g = self.flight(Flight::Mutate(client)).await;
            let mut replaced = self.replaced_by_rename(client, dst.as_ref(), new_name).await?;
            // Copies that failed closes left under the old name go too, once the bytes
            // land under the new one (or now, if they become a scratch file).
            let (old_name, attempts) = {
                let w = lock(&w);
                (w.name.clone(), w.life().attempts().cloned())
            };
            if let Some(a) = attempts {
                let found = self
                    .find_attempts(client, &old_name, &a, &replaced, Priority::User)
                    .await?;
                replaced.extend(found.into_iter().map(|f| f.id));
            }
            if to_scratch && !replaced.is_empty() {
                // A server file under a scratch name (left by an older version) is
                // replaced by one that never leaves the mount: it goes.
                self.delete_files(client, &replaced, Priority::User).await?;
            }
            {
                let mut w = lock(&w);
                w.name = new_name.to_string();
                if to_scratch {
                    w.step(Event::RenamedScratch);
                    self.spool.drop_journal(&w.spool.path);
                } else {
                    if matches!(w.life(), Life::Local | Life::GivenUp) {
                        // A scratch file becomes a document; a given-up one gets a new
                        // name, which is a new try.
                        self.spool.adopt(&mut w.spool)?;
                    }
                    w.step(Event::Renamed(replaced));
                }
            }
            let mut st = self.st();
            st.rename_local_entry(src, new_name);
            st.invalidate_view(client);
        }
        if let Some(d) = dst {
            self.discard_writer(d.ino);
            let mut st = self.st();
            if let Some(Key::Local(l)) = st.nodes.get(&d.ino).map(|n| n.key.clone()) {
                st.locals.remove(&l);
            }
        }
        Ok(())
    }

    /// What a rename onto `new_name` replaces on the server: the destination's file
    /// and the copies its failed closes may have left. The caller holds the client's
    /// mutation lock.
    pub(super) async fn replaced_by_rename(
        &self,
        client: ClientId,
        dst: Option<&Attr>,
        new_name: &str,
    ) -> CoreResult<Vec<String>> {
        let Some(d) = dst else { return Ok(Vec::new()) };
        let mut ids: Vec<String> = match self.st().nodes.get(&d.ino).map(|n| &n.key) {
            Some(Key::File(id)) => vec![id.clone()],
            _ => Vec::new(),
        };
        let attempts = self
            .st()
            .writer_ref(d.ino)
            .and_then(|w| lock(w).life().attempts().cloned());
        if let Some(a) = attempts {
            let found = self.find_attempts(client, new_name, &a, &ids, Priority::User).await?;
            ids.extend(found.into_iter().map(|f| f.id));
        }
        Ok(ids)
    }

    /// Forget the scratch overlay (at unmount): it never had anywhere to go.
    pub fn drop_scratch(&self) {
        self.spool.clear_scratch();
    }

    /// The files in the local overlay (scratch files) right now, for tests and status.
    pub fn scratch_files(&self) -> usize {
        self.st()
            .writers()
            .map(|(_, w)| w)
            .filter(|w| *lock(w).life() == Life::Local)
            .count()
    }
}

/// Until when a released writer whose upload was deferred is held back: a temp file
/// waits [`HOLD_IDLE`] for its rename; a new file still empty ([`HOLD_EMPTY`]) for the
/// name a person types (Explorer's and Finder's "New document" creates it first).
/// `None`: due now.
fn held_until(w: &Writer) -> Option<Instant> {
    let released = w.released_at()?;
    match w.wait() {
        Wait::Rename => Some(released + HOLD_IDLE),
        // New: nothing on the server it replaces, and no earlier upload of it (a file
        // emptied right after a save replaces that save, whose id may not be known yet).
        Wait::Release | Wait::Opener if w.size == 0 && w.replaces().is_empty() && w.life().attempts().is_none() => {
            Some(released + HOLD_EMPTY)
        }
        Wait::No | Wait::Release | Wait::Opener | Wait::Resend => None,
    }
}

/// A rename of a server file onto a scratch name is refused: the bytes would leave the
/// server for an overlay that vanishes at unmount.
pub(super) fn refuse_server_to_scratch(new_name: &str) -> CoreResult<()> {
    match patterns::class(new_name) {
        Class::Scratch => Err(CoreError::NotPermitted(
            "a file on the server cannot become a scratch file",
        )),
        Class::Ordinary | Class::Temp => Ok(()),
    }
}
