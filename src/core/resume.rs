//! Crash resume: finishing at mount the uploads and deletes that an earlier run journaled
//! but did not confirm.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::life::{Event, Life};
use super::spool::{Journal, SpoolFile};
use super::staged::{lock, Origin, Writer};
use super::{names, Core, Ino};
use crate::phi::Name;
use crate::remote::{Priority, Remote};

/// How long staged bytes without a journal entry (orphans) are kept before removal.
pub const ORPHAN_KEEP: Duration = Duration::from_secs(7 * 86_400);

impl<R: Remote> Core<R> {
    /// Deletes an earlier run owed, read when the core is made: the files they replaced
    /// are hidden from the first listing on, and deleted by `resume_pending`.
    pub(super) fn inherit_owed_deletes(&self) {
        let mut st = self.st();
        for d in self.spool.owed_deletes() {
            if d.account == self.opts.account {
                st.owed_deletes.insert(d.id, d.client);
            }
        }
    }

    /// Uploads an earlier run journaled and did not confirm, read when the core is made
    /// (and again by `resume_pending`, for entries that appeared since): each becomes a
    /// writer whose close failed (`resumed_writer`), and its client's kept listing is
    /// not served (it predates the upload, which may have landed). Entries given up,
    /// abandoned or with a name the upload cannot carry are left to `resume_pending`.
    /// Returns this account's entries, read once.
    pub(super) fn inherit_journals(&self) -> Vec<(PathBuf, Journal)> {
        let mine: Vec<(PathBuf, Journal)> = self
            .spool
            .pending()
            .into_iter()
            .filter(|(path, j)| {
                let mine = j.account == self.opts.account;
                if !mine {
                    tracing::debug!("spool entry {} belongs to another account", path.display());
                }
                mine
            })
            .collect();
        for (path, j) in &mine {
            let resumable = !j.given_up
                && !j.abandoned
                && names::uncarriable(&j.name).is_none()
                && self.writer_staged_at(path).is_none();
            if resumable && self.resumed_writer(path, j.clone()).is_some() {
                self.st().resumed_clients.insert(j.client);
            }
        }
        mine
    }

    /// Staged bytes an earlier run wrote but never closed (the process died while a
    /// file was open): nothing says where they belong, so they are never uploaded. They
    /// are reported at mount, kept for [`ORPHAN_KEEP`] so a person can rescue them from
    /// the spool, then removed. Runs before this run stages anything.
    pub(super) fn sweep_orphans(&self) {
        let orphans = self.spool.orphans();
        if orphans.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let (old, young): (Vec<_>, Vec<_>) = orphans
            .into_iter()
            .partition(|(_, at)| now.duration_since(*at).unwrap_or_default() > ORPHAN_KEEP);
        for (path, _) in &old {
            self.spool.remove(path);
        }
        tracing::warn!(
            "spool {}: {} staged file(s) of files that were open when an earlier run died are kept for {} days \
             (never uploaded: nothing says where they belong); {} older one(s) removed",
            self.spool.dir().display(),
            young.len(),
            ORPHAN_KEEP.as_secs() / 86_400,
            old.len()
        );
    }

    /// The mount's background work until `stop` turns true: finish what an earlier
    /// run journaled, then retry failed closes every `every`. A step under way when
    /// `stop` comes is finished, never dropped half-way: unmount waits for this future
    /// (within `--drain-timeout`) after setting `stop`.
    pub async fn run_background(&self, every: Duration, mut stop: watch::Receiver<bool>) {
        if !*stop.borrow() {
            let n = self.resume_pending().await;
            if n > 0 {
                tracing::info!("{n} staged upload(s) from an earlier run completed");
            }
            self.background_steps(every, &mut stop).await;
        }
        // Unmount (also one that came before the loop started): what closes deferred goes
        // up now, temp files as they are; accepted uploads are confirmed so their journal
        // entries can go.
        self.upload_due(true).await;
        self.confirm_due(true).await;
    }

    /// The loop of `run_background`, until `stop` turns true.
    async fn background_steps(&self, every: Duration, stop: &mut watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.tick().await;
        loop {
            // A temp file left alone falls due at a known time; a deferred close at its
            // release, which wakes us.
            let next_due = self.next_due();
            let held = async {
                match next_due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {
                    self.upload_due(false).await;
                    self.retry_failed_uploads().await;
                    self.confirm_due(false).await;
                }
                _ = self.wake.notified() => {
                    self.upload_due(false).await;
                }
                _ = held => {
                    self.upload_due(false).await;
                    self.confirm_due(false).await;
                }
                () = async { drop(stop.wait_for(|s| *s).await) } => return,
            }
        }
    }

    /// Finish uploads that an earlier run staged but did not confirm (crash, failed
    /// upload, shutdown timeout). Each journal entry becomes a writer that failed its
    /// close (`Origin::Resumed`), sent by the one upload protocol; one that does not land
    /// now is retried by the background loop with this run's failed closes. Returns how
    /// many landed.
    pub async fn resume_pending(&self) -> usize {
        self.settle_owed_deletes(Priority::Background).await;
        let mut ours = Vec::new();
        let mut given_up = 0;
        for (path, j) in self.inherit_journals() {
            if j.given_up {
                // Sent `MAX_SENDS` times unseen by an earlier run: kept, never sent again.
                given_up += 1;
            } else if j.abandoned {
                // A rename given up: nothing is uploaded, and its copy, if it landed, is
                // deleted before anything else goes up under that name.
                self.st().abandoned.insert(path, j);
            } else if let Some(ino) = self.writer_staged_at(&path) {
                if !self.st().writer_ref(ino).is_some_and(|w| lock(w).life().unsent()) {
                    // Accepted and waiting for its listing: not resume's.
                    continue;
                }
                // An earlier run's journal, or a failed close of this run.
                ours.push(ino);
            } else if names::uncarriable(&j.name).is_some() {
                // Journaled by an older version: never sent, and worth no call.
                self.give_up(&path, &mut j.clone()).await;
            }
        }
        if given_up > 0 {
            tracing::info!(
                "spool {}: {given_up} upload(s) given up by an earlier run are kept there and not sent \
                 (`intakeq-fs status` lists them)",
                self.spool.dir().display()
            );
        }
        self.clean_all_abandoned().await;
        let mut landed = 0;
        for ino in ours {
            match self.upload_writer(ino, Priority::Background).await {
                Ok(()) => {
                    landed += 1;
                    self.retire_writer(ino);
                }
                Err(e) => {
                    let name = self
                        .st()
                        .writer_ref(ino)
                        .map(|w| lock(w).name.clone())
                        .unwrap_or_default();
                    tracing::warn!(
                        "resumed upload of {} did not succeed: {e}; it stays in the spool and is retried",
                        Name(&name)
                    );
                }
            }
        }
        landed
    }

    /// The writer whose staged bytes are at `path`, if one of this run's is.
    fn writer_staged_at(&self, path: &Path) -> Option<Ino> {
        let st = self.st();
        let found = st
            .writers()
            .find(|(_, w)| lock(w).spool.path == path)
            .map(|(ino, _)| *ino);
        found
    }

    /// An earlier run's journal entry `j` for the staged bytes at `path`, as a writer
    /// whose close failed: no file of the mount shows it (a detached inode), its attempt
    /// record and send count carry on. `None` if the staged bytes cannot be opened (the
    /// entry stays in the spool for the next mount).
    fn resumed_writer(&self, path: &Path, j: Journal) -> Option<Ino> {
        let file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("spool: cannot open staged bytes {}: {e}; kept", path.display());
                return None;
            }
        };
        let mtime = file.metadata().and_then(|m| m.modified()).ok();
        tracing::info!("resuming staged upload of {} for client {}", Name(&j.name), j.client);
        let recorded = j.attempts.is_some();
        let spool = SpoolFile {
            path: path.to_path_buf(),
            file,
        };
        let mut w = Writer::new(
            j.client,
            j.name,
            spool,
            j.size,
            j.replaces,
            Life::Failed { attempts: j.attempts },
        );
        w.handles = 0;
        w.origin = Origin::Resumed { recorded };
        if let Some(m) = mtime {
            w.mtime = m;
        }
        w.step(Event::SendsCounted(j.sends));
        Some(self.st().add_detached_writer(w))
    }
}
