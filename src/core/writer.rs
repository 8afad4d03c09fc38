//! Writers: the staged bytes of a file being written, shared by its write handles, from
//! create/open to the last release; write, truncate and the writer's retirement.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::error::{CoreError, CoreResult};
use super::spool::{Attempts, SpoolFile};
use super::state::{Handle, Key};
use super::view::DirKey;
use super::{names, patterns, Attr, Core, Fh, Ino, Kind, OpenMode, Opened};
use crate::phi::Name;
use crate::remote::{ClientId, Priority, Remote};

/// Where a written file's staged bytes stand. This is the one record of a written
/// file's life cycle; it changes only through [`Writer::step`], by this table
/// (rows: the state now; columns: what happened; `·`: cannot happen, ignored):
///
/// | now \ event       | `Changed`  | `UploadStarts` | `Landed(id)`            | `NotLanded`      | `MaybeLanded`   | `Discarded` | `Restored(prev)` |
/// |-------------------|------------|----------------|-------------------------|------------------|-----------------|-------------|------------------|
/// | `Staged`          | `Staged`   | `Uploading`    | ·                       | ·                | ·               | `Discarded` | ·                |
/// | `Uploading`       | `Uploading`| ·              | `Landed`, or `Staged` if written meanwhile | `Failed` (earlier record) | `Failed` (this record) | `Discarded` | · |
/// | `Failed`          | `Failed`   | `Uploading`    | ·                       | ·                | ·               | `Discarded` | ·                |
/// | `Landed`          | `Staged`   | ·              | ·                       | ·                | ·               | `Discarded` | ·                |
/// | `Discarded`       | `Discarded`| ·              | `Discarded`             | `Discarded`      | `Discarded`     | `Discarded` | `prev` (`Staged` if it was `Landed` and was written meanwhile) |
/// | `Local`           | `Local`    | ·              | ·                       | ·                | ·               | `Discarded` | ·                |
/// | `Unconfirmed`     | `Failed` (look first) | ·   | ·                       | ·                | ·               | `Discarded` | ·                |
/// | `GivenUp`         | `GivenUp`  | ·              | ·                       | ·                | ·               | `Discarded` | ·                |
///
/// (`GivenUp` also leaves by `Promoted`, a rename onto another name: see below.)
///
/// A close trusts the server's 2xx (`Accepted`: `Uploading` → `Unconfirmed`, or
/// `Failed` with this attempt's record if written meanwhile): `close()` returns, what
/// the upload replaces is deleted, and the staged bytes and journal entry stay until a
/// listing of the client (one per batch, `metadata.rs`) shows the new file:
/// `Confirmed(id)` → `Landed { id }`; a listing taken after the upload that does not
/// show it is reported and the bytes are sent again (`Missing` → `Staged`).
///
/// Sends are bounded: every upload is counted (`Writer::sends`, `Journal::sends`)
/// before it goes out, and one whose listing never shows it under its name stays
/// counted. When an upload of the same bytes is due with `spool::MAX_SENDS` (3) already sent, nothing is
/// sent: `GiveUp` takes `Staged`, `Failed` or `Uploading` to `GivenUp`, with one
/// warning and the journal entry marked `given_up`, so a later mount does not send it
/// either. A server that renames every upload gets 3 copies, not one every 2 s. The
/// count goes back to 0 when a listing shows the file (`Landed`) or the bytes change.
///
/// Two more events move a file in and out of the local overlay (`overlay.rs`):
/// `Promoted` (a scratch file renamed onto an ordinary name, or a given-up file renamed
/// onto another name, which is a new try with a new count) takes `Local` or `GivenUp`
/// to `Staged`;
/// `Demoted` (a file not on the server renamed onto a scratch name) takes `Staged` or
/// `Failed` to `Local`.
///
/// - A scratch file (`patterns::Class::Scratch`) starts and stays `Local`: kept in the
///   private overlay, never uploaded, gone at unmount.
/// - A file created through the mount starts `Staged` (an empty file is uploaded too);
///   an existing file opened for writing starts `Landed` (its bytes were copied from
///   the server), or `Staged` with `O_TRUNC`.
/// - "Needs upload" ([`Life::unsent`]) is `Staged`, `Uploading` or `Failed`: such a writer
///   is kept after its last close, retried in the background and drained at unmount.
/// - Every upload runs the protocol of `upload.rs` (journal, upload, confirm, delete what
///   it replaces, drop the journal). After `Landed` the file it replaced is deleted, or,
///   if that delete fails, hidden and owed (`State::owed_deletes`, journaled as
///   `<n>.delete`). A rename given up with a copy that may have landed is "abandoned"
///   (`State::abandoned`): that copy is deleted before anything else of the name is
///   uploaded. Those two are fates of server copies, not of staged bytes, so they live
///   in `State`, not here.
/// - `Restored` exists for an unlink whose delete failed: the file is back as it was.
/// - `GivenUp` keeps the writer and its staged bytes (readable through the mount,
///   listed as failed by `intakeq-fs status`, never deleted by the mount); an unlink
///   (`Discarded`) ends it, a rename onto another name (`Promoted`) tries again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// Bytes the server does not have: created, written or truncated since the last
    /// upload that landed.
    Staged,
    /// An upload of the bytes as of `version` is running (under the client's mutation
    /// lock). `attempts` is the record its journal entry carries; `prior` the record
    /// from before it (what stays if it did not land).
    Uploading {
        /// `Writer::version` when the upload started.
        version: u64,
        /// This upload and earlier unconfirmed ones.
        attempts: Attempts,
        /// The record before this upload started.
        prior: Option<Attempts>,
    },
    /// The last upload did not succeed: the bytes wait in the spool for the next close,
    /// the background retry or the next mount. `attempts`: uploads that may have landed
    /// unconfirmed, so the next one looks for their copies before sending.
    Failed {
        /// Earlier uploads that may have landed without confirmation.
        attempts: Option<Attempts>,
    },
    /// The server has the staged bytes, as file `id` if the listing identified it.
    Landed {
        /// The new file's id; `None` if the confirming listing could not tell which.
        id: Option<String>,
    },
    /// Unlinked, or renamed over: the staged bytes are never uploaded, by a close, the
    /// background retry or a later mount (the journal entry is removed).
    Discarded,
    /// A scratch file in the private local overlay: never uploaded, removed at unmount.
    Local,
    /// The server accepted the upload (2xx) but no listing has shown the new file yet:
    /// its id is unknown. The staged bytes and the journal entry stay until one does.
    Unconfirmed {
        /// The accepted upload (and earlier unconfirmed ones): how to find its file.
        attempts: Attempts,
        /// When the server accepted it: only a listing started later can confirm it.
        at: tokio::time::Instant,
    },
    /// `spool::MAX_SENDS` uploads went out and no listing showed the file under its
    /// name: never sent again (not by the background retry, not by a later mount); the
    /// staged bytes and the journal entry (marked `given_up`) stay in the spool.
    GivenUp,
}

/// What happens to a writer; see the table on [`Life`].
#[derive(Debug)]
pub(super) enum Event {
    /// Bytes were written or the size changed.
    Changed,
    /// An upload starts; its journal entry carries this attempt record.
    UploadStarts(Attempts),
    /// The upload's bytes are on the server (as this id, if known).
    Landed(Option<String>),
    /// The upload did not land (a listing showed it missing, or nothing was sent).
    NotLanded,
    /// The upload may have landed (the listing that would tell failed).
    MaybeLanded,
    /// The file was unlinked or renamed over.
    Discarded,
    /// The server answered the upload with a 2xx (the close trusts it).
    Accepted,
    /// A listing shows the accepted upload as this file.
    Confirmed(String),
    /// A listing taken after the accepted upload does not show it.
    Missing,
    /// `spool::MAX_SENDS` uploads were sent unseen (or the name cannot be carried):
    /// no more are.
    GiveUp,
    /// A scratch file was renamed onto an ordinary name, or a given-up file onto
    /// another name: its bytes are due for upload.
    Promoted,
    /// A file not on the server was renamed onto a scratch name: it stays local.
    Demoted,
    /// An unlink failed: back to `prev`, which was the state at `version`.
    Restored {
        /// The state before the unlink.
        prev: Life,
        /// `Writer::version` when it was discarded.
        version: u64,
    },
}

impl Life {
    /// The server does not have the staged bytes yet (and should get them).
    pub(super) fn unsent(&self) -> bool {
        matches!(self, Life::Staged | Life::Uploading { .. } | Life::Failed { .. })
    }

    /// Uploads of these bytes that may have landed without confirmation.
    pub(super) fn attempts(&self) -> Option<&Attempts> {
        match self {
            Life::Failed { attempts } | Life::Uploading { prior: attempts, .. } => attempts.as_ref(),
            Life::Unconfirmed { attempts, .. } => Some(attempts),
            Life::Staged | Life::Landed { .. } | Life::Discarded | Life::Local | Life::GivenUp => None,
        }
    }

    /// The writer holds bytes nobody else has: kept after its last close.
    pub(super) fn keeps_writer(&self) -> bool {
        self.unsent() || matches!(self, Life::Local | Life::Unconfirmed { .. } | Life::GivenUp)
    }
}

/// Why a close does not upload a writer's bytes (yet): see `overlay.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Close uploads.
    No,
    /// An atomic saver's temp file: its rename is the save. Uploaded as it is once it
    /// has been closed and left alone for `patterns::HOLD_IDLE`.
    Rename,
    /// Closed before anything was written (a shell redirect closes its first
    /// descriptor before the command writes; `touch`): uploaded at the last release.
    Release,
    /// Closed by a process other than its opener (a forked child of the shell whose
    /// redirect opened it, exiting): the opener's close uploads, or the last release if
    /// the opener closed first. A script that runs ten commands into one redirect costs
    /// one upload, not ten.
    Opener,
    /// Accepted, but a later listing did not show it: sent again by the background
    /// loop as unattended work (it never takes the slots kept for a person).
    Resend,
}

/// A file being written: shared by all its open write handles, kept after they close
/// while its bytes are [`Life::unsent`].
#[derive(Debug)]
pub(super) struct Writer {
    /// The client whose directory the file is in (uploads go there).
    pub(super) client: ClientId,
    /// The exact name the file is uploaded under.
    pub(super) name: String,
    /// The staged bytes (and, while an upload is due, its journal entry).
    pub(super) spool: SpoolFile,
    /// Size of the staged bytes.
    pub(super) size: u64,
    /// Counts changes to the staged bytes, so an upload knows whether the bytes it sent
    /// are still the latest.
    pub(super) version: u64,
    /// The `version` the last upload started with: a copy it left on the server holds
    /// the bytes of that version.
    sent_version: Option<u64>,
    /// Server files the next upload replaces (deleted once it is confirmed): the file
    /// opened for writing, or what the last upload landed as.
    pub(super) replaces: Vec<String>,
    /// Open write handles.
    pub(super) handles: usize,
    /// Modification time as shown: the last write or size change (for a file opened
    /// and not changed yet, its listed mtime). Kept for the new file once uploaded.
    pub(super) mtime: SystemTime,
    /// Why a close does not upload yet (`Wait::No`: it does).
    pub(super) wait: Wait,
    /// When the last handle was released (for `Wait::Rename`'s idle time).
    pub(super) released_at: Option<tokio::time::Instant>,
    /// Uploads of these bytes sent that no listing has shown under the name
    /// (`Journal::sends`); back to 0 once one lands or the bytes change.
    pub(super) sends: u32,
    /// The server file whose bytes the spool does not hold yet (its id and size): an
    /// open for writing does not download, so an overwrite never waits for bytes it is
    /// about to replace. Filled ([`Core::fill`]) before the first read, partial write or
    /// size change other than to 0; while set, the writer is unchanged (`Landed`).
    pub(super) unfilled: Option<(String, u64)>,
    /// Emptied by a truncate to 0 of a listed non-empty file that was opened without
    /// `O_TRUNC`, and not written since: an overwrite abandoned before its first byte
    /// (an SMB desk that gave up). Never uploaded: the file stays as it is on the server.
    pub(super) emptied: bool,
    /// The person (uid) who last opened it, for the audit log of uploads that run
    /// later in the background.
    pub(super) by: Option<u32>,
    /// Serialises filling with truncation, so a fill never lands after a truncate.
    fill_gate: Arc<tokio::sync::Mutex<()>>,
    /// Where the staged bytes stand; changed only by [`Writer::step`].
    life: Life,
}

impl Writer {
    pub(super) fn new(
        client: ClientId,
        name: String,
        spool: SpoolFile,
        size: u64,
        replaces: Vec<String>,
        life: Life,
    ) -> Writer {
        Writer {
            client,
            name,
            spool,
            size,
            version: 0,
            sent_version: None,
            replaces,
            handles: 1,
            mtime: SystemTime::now(),
            wait: Wait::No,
            released_at: None,
            sends: 0,
            unfilled: None,
            emptied: false,
            by: crate::audit::caller(),
            fill_gate: Arc::new(tokio::sync::Mutex::new(())),
            life,
        }
    }

    /// The staged bytes changed (a write or a size change).
    fn changed(&mut self) {
        self.version += 1;
        self.emptied = false;
        // New bytes: their uploads are not re-sends of the old ones.
        self.sends = 0;
        self.mtime = SystemTime::now();
        if self.wait == Wait::Release {
            // Written at last: the next close uploads as usual.
            self.wait = Wait::No;
        }
        self.step(Event::Changed);
    }

    /// Whether a copy an earlier upload left on the server can hold exactly the bytes
    /// staged now: only if they have not changed since that upload started. Otherwise
    /// it holds older bytes (or, if written during the upload, a mix), and downloading
    /// it to compare would cost a call to learn what is already known.
    pub(super) fn prior_may_match(&self) -> bool {
        self.sent_version.is_none_or(|v| v == self.version)
    }

    pub(super) fn life(&self) -> &Life {
        &self.life
    }

    /// The one place a writer's [`Life`] changes (see its table).
    pub(super) fn step(&mut self, event: Event) {
        use Life::*;
        let starts = matches!(event, Event::UploadStarts(_));
        let now = std::mem::replace(&mut self.life, Discarded);
        self.life = match (now, event) {
            (Discarded, Event::Restored { prev, version }) => match prev {
                Landed { .. } if version != self.version => Staged,
                Uploading { attempts, .. } => Failed {
                    attempts: Some(attempts),
                },
                prev => prev,
            },
            (_, Event::Discarded) | (Discarded, _) => Discarded,
            (Local | GivenUp, Event::Promoted) => {
                self.sends = 0;
                Staged
            }
            (Uploading { version, attempts, .. }, Event::Accepted) if version == self.version => Unconfirmed {
                attempts,
                at: tokio::time::Instant::now(),
            },
            (Uploading { attempts, .. }, Event::Accepted) => Failed {
                attempts: Some(attempts),
            },
            (Unconfirmed { .. }, Event::Confirmed(id)) => Landed { id: Some(id) },
            (Unconfirmed { .. }, Event::Missing) => Staged,
            (Unconfirmed { attempts, .. }, Event::Changed) => Failed {
                attempts: Some(attempts),
            },
            (Staged | Failed { .. }, Event::Demoted) => Local,
            (Landed { .. }, Event::Changed) => Staged,
            (now, Event::Changed) => now,
            (Staged, Event::UploadStarts(attempts)) => Uploading {
                version: self.version,
                attempts,
                prior: None,
            },
            (Failed { attempts: prior }, Event::UploadStarts(attempts)) => Uploading {
                version: self.version,
                attempts,
                prior,
            },
            (Uploading { version, .. }, Event::Landed(id)) if version == self.version => Landed { id },
            (Uploading { .. }, Event::Landed(_)) => Staged,
            (Uploading { prior, .. }, Event::NotLanded) => Failed { attempts: prior },
            (Uploading { attempts, .. }, Event::MaybeLanded) => Failed {
                attempts: Some(attempts),
            },
            (Staged | Failed { .. } | Uploading { .. }, Event::GiveUp) => GivenUp,
            (now, event) => {
                tracing::debug!(?now, ?event, "writer: transition that cannot happen, ignored");
                now
            }
        };
        if starts && matches!(self.life, Uploading { .. }) {
            self.sent_version = Some(self.version);
        }
        if matches!(self.life, Landed { .. }) {
            self.sends = 0;
        }
    }
}

/// How a truncate came: with the open (`O_TRUNC`: the caller means to empty the file)
/// or on a handle or path (`ftruncate`, `truncate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Truncate {
    ByOpen,
    Handle,
}

/// Write `data` into a filled writer's staged bytes at `offset`.
fn stage(w: &Mutex<Writer>, offset: u64, data: &[u8]) -> CoreResult<u32> {
    let mut w = lock(w);
    w.spool.file.write_all_at(data, offset)?;
    w.size = w.size.max(offset + data.len() as u64);
    w.changed();
    Ok(data.len() as u32)
}

/// Truncate (or extend) a writer's staged bytes; a change makes them due for upload.
pub(super) fn truncate_staged(w: &Mutex<Writer>, size: u64) -> CoreResult<()> {
    let mut w = lock(w);
    if w.size != size {
        w.spool.file.set_len(size)?;
        w.size = size;
        w.changed();
    }
    Ok(())
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

pub(super) fn lock(w: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(|p| p.into_inner())
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
            st.writers.get(&ino).cloned().inspect(|w| {
                let mut w = lock(w);
                w.handles += 1;
                w.by = crate::audit::caller().or(w.by);
            })
        };
        if let Some(w) = existing {
            if mode.truncate {
                self.truncate_writer(&w, 0, Truncate::ByOpen).await?;
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
            let raced = {
                let mut st = self.st();
                match st.writers.entry(ino) {
                    std::collections::hash_map::Entry::Occupied(_) => true,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(Arc::new(Mutex::new(w)));
                        false
                    }
                }
            };
            if raced {
                // Another opener staged it first: use theirs.
                self.spool.remove(&spool_path);
                return Box::pin(self.open(ino, mode)).await;
            }
        }
        let mut st = self.st();
        let fh = st.add_handle(Handle::Write { ino, opener: None });
        Ok(Opened { fh, keep_cache: false })
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
        if let Some(Handle::Write { ino, .. }) = handle {
            let Some(w) = self.st().writers.get(&ino).cloned() else {
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
                } else if w.handles == 0 && w.wait != Wait::No && w.life.unsent() {
                    // Its close deferred the upload: the background loop takes it now
                    // (`Wait::Release`, `Wait::Opener`) or once it has been left alone
                    // (`Wait::Rename`).
                    w.released_at = Some(tokio::time::Instant::now());
                    self.wake.notify_one();
                } else if w.life.unsent() && w.handles == 0 {
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
        let Some(w) = st.writers.get(&ino).cloned() else { return };
        let w = lock(&w);
        if w.handles > 0 || w.life.keeps_writer() {
            return;
        }
        self.spool.remove(&w.spool.path);
        drop(w);
        st.writers.remove(&ino);
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
        st.writers.insert(
            ino,
            // An empty file is uploaded too.
            Arc::new(Mutex::new({
                let (life, wait) = match class {
                    patterns::Class::Scratch => (Life::Local, Wait::No),
                    patterns::Class::Temp => (Life::Staged, Wait::Rename),
                    patterns::Class::Ordinary => (Life::Staged, Wait::No),
                };
                let mut w = Writer::new(client, name.to_string(), spool, 0, Vec::new(), life);
                w.wait = wait;
                w
            })),
        );
        st.invalidate_view(client);
        let fh = st.add_handle(Handle::Write { ino, opener: None });
        let node = st.nodes.get(&ino).ok_or(CoreError::NotFound)?;
        let attr = self.attr_of(ino, node, &st);
        Ok((attr, Opened { fh, keep_cache: false }))
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
            Some(Handle::Write { ino, .. }) => st.writers.get(ino).cloned().ok_or(CoreError::BadHandle),
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
        if let Some(w) = self.st().writers.get(&ino).cloned() {
            let mut w = lock(&w);
            match (by_child, w.wait) {
                (true, Wait::No | Wait::Release) if w.life.unsent() => w.wait = Wait::Opener,
                (false, Wait::Opener | Wait::Resend) => w.wait = Wait::No,
                _ => {}
            }
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
        let Some(w) = self.st().writers.get(&ino).cloned() else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::spool::Attempts;

    fn writer() -> Writer {
        let spool = SpoolFile {
            path: std::path::PathBuf::from("unused.data"),
            file: tempfile::tempfile().unwrap(),
        };
        Writer::new(1, "a.txt".into(), spool, 0, Vec::new(), Life::Staged)
    }

    fn attempt() -> Event {
        Event::UploadStarts(Attempts {
            before: Vec::new(),
            sizes: vec![0],
        })
    }

    #[test]
    fn a_given_up_writer_is_kept_never_due_and_ends_by_an_unlink_or_a_new_name() {
        let mut w = writer();
        w.sends = 3;
        w.step(Event::GiveUp);
        assert_eq!(*w.life(), Life::GivenUp);
        assert!(!w.life().unsent() && w.life().keeps_writer());
        w.changed();
        w.step(attempt());
        assert_eq!(*w.life(), Life::GivenUp, "written again or due: still given up");
        w.step(Event::Discarded);
        assert_eq!(*w.life(), Life::Discarded);

        let mut w = writer();
        w.sends = 3;
        w.step(Event::GiveUp);
        w.step(Event::Promoted);
        assert_eq!((w.life(), w.sends), (&Life::Staged, 0), "renamed: a new try");

        let mut w = writer();
        w.step(attempt());
        w.sends = 2;
        w.step(Event::Landed(Some("f1".into())));
        assert_eq!(w.sends, 0, "a listing showed it: the count starts again");
    }

    #[test]
    fn an_earlier_copy_can_match_only_while_the_bytes_it_sent_are_the_latest() {
        let mut w = writer();
        assert!(w.prior_may_match(), "nothing sent yet");
        w.step(attempt());
        w.step(Event::Accepted);
        assert!(matches!(w.life(), Life::Unconfirmed { .. }));
        assert!(w.prior_may_match(), "accepted, unchanged since");
        w.changed();
        assert!(matches!(w.life(), Life::Failed { .. }));
        assert!(!w.prior_may_match(), "changed after the copy was sent");
        w.step(attempt());
        assert!(w.prior_may_match(), "the latest attempt sends the latest bytes");
        w.changed();
        w.step(Event::Accepted);
        assert!(matches!(w.life(), Life::Failed { .. }));
        assert!(
            !w.prior_may_match(),
            "written during the upload: the copy is older or a mix"
        );
    }
}
