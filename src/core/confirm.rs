//! Learning an accepted upload's id: the API's answer carries none, so a listing of the
//! client taken after it (one per batch, `CONFIRM_SETTLE` after the client's last
//! upload, or any listing the user causes first) names the new file; the writer then
//! becomes that file (its journal entry goes, its staged bytes become the cache entry).
//! One that a later listing lacks is reported and sent again, never dropped.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::time::Instant;

use super::error::CoreResult;
use super::land::is_ours;
use super::life::{Event, Life};
use super::spool::MAX_SENDS;
use super::staged::{lock, Origin, Writer};
use super::state::Key;
use super::{Core, Ino};
use crate::audit::{Op, Record};
use crate::phi::Name;
use crate::remote::{ClientId, Priority, Remote, RemoteFile};

/// How long after the last accepted upload of a client its confirming listing waits,
/// so that a batch (`cp -r`, `tar -x`, rsync) is confirmed by one listing.
pub const CONFIRM_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

impl<R: Remote> Core<R> {
    /// The file behind `ino` is now server file `id`: it keeps what `stat` and `ls`
    /// showed (its name and mtime) and its inode.
    pub(super) fn became(
        &self,
        ino: Ino,
        client: ClientId,
        id: &str,
        shown: Option<String>,
        size: u64,
        mtime: SystemTime,
    ) {
        let mut st = self.st();
        if let Some(name) = shown {
            st.shown.insert(id.to_string(), name);
        }
        st.mtimes.insert(id.to_string(), mtime);
        if !st.nodes.contains_key(&ino) {
            // A writer no file showed (a resumed journal, a rename's copy): the listing
            // shows the new file under an inode of its own.
            st.invalidate_view(client);
            return;
        }
        let local = st
            .nodes
            .get(&ino)
            .and_then(|n| if let Key::Local(l) = n.key { Some(l) } else { None });
        if let Some(l) = local {
            st.locals.remove(&l);
        }
        st.rekey(ino, Key::File(id.to_string()));
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.size = size;
            n.mtime = mtime;
        }
        st.invalidate_view(client);
    }

    /// An accepted upload whose id is not known yet: the file it replaced is gone from
    /// the server, so the inode is shown as a local file under its name until a listing
    /// names the new file.
    pub(super) fn await_listing(&self, ino: Ino, client: ClientId, shown: Option<String>) {
        let mut st = self.st();
        let Some(Key::File(_)) = st.nodes.get(&ino).map(|n| &n.key) else {
            return;
        };
        let Some(name) = shown.or_else(|| st.writer_ref(ino).map(|w| lock(w).name.clone())) else {
            return;
        };
        st.next_local += 1;
        let l = st.next_local;
        st.locals.insert(l, (client, name, ino));
        st.rekey(ino, Key::Local(l));
        st.invalidate_view(client);
    }

    /// Accepted uploads of client `c` that this listing, started at `started`, can
    /// confirm: a file of the same name and size whose id was not listed before the
    /// upload. Each becomes that file (its journal entry goes, its staged bytes become
    /// the cache entry). One that a listing started after it does not show is reported
    /// and sent again, never dropped. No call: it runs on every listing stored.
    pub(super) fn confirm_from_listing(&self, c: ClientId, files: &[RemoteFile], started: Instant) {
        let waiting: Vec<(Ino, Arc<Mutex<Writer>>)> = {
            let st = self.st();
            st.writers()
                .filter(|(ino, w)| {
                    let w = lock(w);
                    // A rename's copy is confirmed once the renamed inode has it.
                    let handed = !matches!(w.origin, Origin::RenameCopy { .. }) || st.nodes.contains_key(ino);
                    w.client == c && handed && matches!(w.life(), Life::Unconfirmed { at, .. } if *at <= started)
                })
                .map(|(ino, w)| (*ino, w.clone()))
                .collect()
        };
        // Files whose delete is still owed are nobody's new file.
        let mut claimed: HashSet<String> = self.st().owed_deletes.keys().cloned().collect();
        for (ino, w) in waiting {
            let (name, size, before) = {
                let w = lock(&w);
                let before = w.life().attempts().map(|a| a.before.clone()).unwrap_or_default();
                (w.name.clone(), w.size, before)
            };
            let hit = files
                .iter()
                .filter(|f| {
                    is_ours(f, &name, &[size], |id| {
                        before.iter().any(|b| b == id) || claimed.contains(id)
                    })
                })
                .max_by_key(|f| (f.created_ms, f.id.clone()));
            let Some(f) = hit else {
                let mut w = lock(&w);
                if w.sends() < MAX_SENDS {
                    // At the bound, `give_up`'s warning is the one this gets.
                    tracing::warn!(
                        "upload of {} was accepted but the listing does not show it; sending it again",
                        Name(&name)
                    );
                }
                w.step(Event::Missing);
                self.wake.notify_one();
                continue;
            };
            claimed.insert(f.id.clone());
            let (mtime, path, file, by) = {
                let mut w = lock(&w);
                w.step(Event::Confirmed(f.id.clone()));
                (w.mtime, w.spool.path.clone(), w.spool.file.try_clone(), w.by)
            };
            self.spool.drop_journal(&path);
            self.audit(Record {
                op: Op::Confirm,
                uid: by,
                client: c,
                file_id: Some(&f.id),
                size: Some(size),
                name: &name,
                to: None,
                result: Ok(()),
            });
            let shown = {
                let st = self.st();
                match st.nodes.get(&ino).map(|n| &n.key) {
                    Some(Key::Local(l)) => st.locals.get(l).map(|(_, n, _)| n.clone()),
                    _ => None,
                }
            };
            self.became(ino, c, &f.id, shown, size, mtime);
            // The staged bytes are the new file's bytes: reading it back costs no call.
            if let Ok(file) = file {
                self.cache().put_file(&f.id, file, size);
            }
            self.retire_writer(ino);
        }
    }

    /// One listing per client whose accepted uploads have settled (none accepted for
    /// [`CONFIRM_SETTLE`]), to learn their ids: a batch of N uploads costs one listing.
    /// With `all` (unmount), every such client now. Returns how many listings it took.
    pub async fn confirm_due(&self, all: bool) -> usize {
        let now = Instant::now();
        let due: Vec<ClientId> = self
            .confirm_times()
            .into_iter()
            .filter(|(_, t)| all || *t <= now)
            .map(|(c, _)| c)
            .collect();
        let mut listed = 0;
        for c in due {
            let started = Instant::now();
            match self.remote.list_files(c, Priority::Background).await {
                Ok(files) => {
                    listed += 1;
                    self.store_listing(c, files, started);
                }
                Err(e) => tracing::debug!("confirming listing of client {c} failed: {e}; tried again later"),
            }
        }
        listed
    }

    /// One listing of client `c` now, which confirms its accepted uploads.
    pub(super) async fn confirm_now(&self, c: ClientId, prio: Priority) -> CoreResult<()> {
        let started = Instant::now();
        let files = self.remote.list_files(c, prio).await?;
        self.store_listing(c, files, started);
        Ok(())
    }

    /// Per client with accepted uploads, when its confirming listing is due: the last
    /// acceptance plus [`CONFIRM_SETTLE`], and not while another upload into that client
    /// is under way (sending, or waiting for a slot at the limiter): at the real limits a
    /// `cp -r` pauses a minute at a time between uploads, and the batch has not settled.
    pub(super) fn confirm_times(&self) -> BTreeMap<ClientId, Instant> {
        let st = self.st();
        let mut out: BTreeMap<ClientId, Instant> = BTreeMap::new();
        let mut busy = Vec::new();
        for w in st.writers().map(|(_, w)| w) {
            let w = lock(w);
            match w.life() {
                Life::Unconfirmed { at, .. } => {
                    let due = *at + CONFIRM_SETTLE;
                    let e = out.entry(w.client).or_insert(due);
                    *e = (*e).max(due);
                }
                Life::Uploading { .. } => busy.push(w.client),
                _ => {}
            }
        }
        let later = Instant::now() + CONFIRM_SETTLE;
        for c in busy {
            if let Some(due) = out.get_mut(&c) {
                *due = (*due).max(later);
            }
        }
        out
    }

    /// Is a batch of ours running into client `c`: an upload under way, or accepted and
    /// not yet confirmed by a listing? Then the listing in hand, with our own changes,
    /// is what the client holds as far as this mount can know, and the batch's
    /// confirming listing refreshes it (docs/SEMANTICS.md, "Freshness"). Only uploads
    /// the mount shows count: a journal resumed from an earlier run, or a rename's copy,
    /// is not among "our own changes" in the listing in hand (a remount after a crash
    /// would otherwise serve a listing from before the upload, and the file would be
    /// missing while its upload resumes).
    pub(super) fn batch_running(&self, c: ClientId) -> bool {
        let st = self.st();
        let running = st.writers().any(|(ino, w)| {
            let w = lock(w);
            w.client == c
                && st.nodes.contains_key(ino)
                && matches!(w.life(), Life::Uploading { .. } | Life::Unconfirmed { .. })
        });
        running
    }
}
