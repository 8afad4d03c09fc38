//! A written file's staged bytes and what is known about them (`Writer`), shared by its
//! write handles and kept after they close while the server lacks the bytes: data and
//! small pure operations on it, no I/O beyond its own spool file, no `Core`. The ops
//! that open, write, flush and release one are `writer.rs`; its life cycle `life.rs`.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::error::CoreResult;
use super::land::Confirm;
use super::life::{Cycle, Event, Life, Wait};
use super::spool::{Attempts, Journal, SpoolFile};
use crate::remote::ClientId;

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
    /// Open write handles.
    pub(super) handles: usize,
    /// Modification time as shown: the last write or size change (for a file opened
    /// and not changed yet, its listed mtime). Kept for the new file once uploaded.
    pub(super) mtime: SystemTime,
    /// The server file whose bytes the spool does not hold yet (its id and size): an
    /// open for writing does not download, so an overwrite never waits for bytes it is
    /// about to replace. Filled (`Core::fill`) before the first read, partial write or
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
    pub(super) fill_gate: Arc<tokio::sync::Mutex<()>>,
    /// Where the staged bytes came from: how their upload is confirmed and recorded.
    pub(super) origin: Origin,
    /// Its life cycle (`life.rs`): where the staged bytes stand, why a close waits,
    /// what the next upload replaces, the send count; changed only by [`Writer::step`].
    cycle: Cycle,
}

/// Where a writer's staged bytes came from. Every upload is a writer's, sent by the one
/// protocol (`Core::upload_writer`); the origin only says how the server's answer is
/// taken and what the audit log records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// Written through the mount (a created or overwritten file): its close trusts the
    /// server's 2xx, and a later listing, one per batch, learns the new file's id.
    Written,
    /// A journal entry an earlier run left (a crash, a failed upload, a shutdown that
    /// timed out), resumed at mount as a failed close: one listing confirms it at once.
    Resumed {
        /// Its journal carries an attempt record. One written by an older version has
        /// none: then only an exact copy of its bytes on the server is taken for an
        /// earlier attempt's, and no other file of its name is touched.
        recorded: bool,
    },
    /// A rename's copy of a server file under its new name (the API has no rename).
    /// Audited as the rename, not as an upload.
    RenameCopy {
        /// The source is open for writing and its writer carries on: one listing
        /// confirms the copy at once, so the writer can take the copy's id.
        source_open: bool,
    },
}

impl Origin {
    /// How an upload of these bytes is confirmed: a close's 2xx is trusted; a resumed
    /// journal, and the copy of an open file (whose writer takes the copy's id), are
    /// confirmed by one listing at once.
    pub(super) fn confirm(self) -> Confirm {
        match self {
            Origin::Written | Origin::RenameCopy { source_open: false } => Confirm::Answer,
            Origin::Resumed { .. } | Origin::RenameCopy { source_open: true } => Confirm::Listing,
        }
    }

    /// A rename's copy: shown under its own name, audited as the rename, and holding
    /// the source's bytes (whose cache entry moves along), so it is not cached again.
    pub(super) fn is_copy(self) -> bool {
        matches!(self, Origin::RenameCopy { .. })
    }
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
            handles: 1,
            mtime: SystemTime::now(),
            unfilled: None,
            emptied: false,
            by: crate::audit::caller(),
            fill_gate: Arc::new(tokio::sync::Mutex::new(())),
            origin: Origin::Written,
            cycle: Cycle::new(life, replaces),
        }
    }

    /// The staged bytes changed (a write or a size change).
    fn changed(&mut self) {
        self.emptied = false;
        self.mtime = SystemTime::now();
        self.step(Event::Changed);
    }

    /// The one place a writer's life cycle changes (`life.rs`'s tables). A transition
    /// the table calls impossible changes nothing; `Cycle::step` reports it.
    pub(super) fn step(&mut self, event: Event) {
        let _ = self.cycle.step(event);
    }

    pub(super) fn life(&self) -> &Life {
        self.cycle.life()
    }

    pub(super) fn wait(&self) -> Wait {
        self.cycle.wait()
    }

    pub(super) fn replaces(&self) -> &[String] {
        self.cycle.replaces()
    }

    pub(super) fn released_at(&self) -> Option<tokio::time::Instant> {
        self.cycle.released_at()
    }

    pub(super) fn sends(&self) -> u32 {
        self.cycle.sends()
    }

    pub(super) fn version(&self) -> u64 {
        self.cycle.version()
    }

    pub(super) fn uploading_current(&self) -> bool {
        self.cycle.uploading_current()
    }

    pub(super) fn prior_may_match(&self) -> bool {
        self.cycle.prior_may_match()
    }

    /// The journal entry for uploading the bytes staged now, with `attempts` (the
    /// uploads of them that may have landed, this one included) and the sends so far.
    pub(super) fn journal(&self, account: &str, attempts: Option<Attempts>) -> Journal {
        let mut j = Journal::new(account, self.client, &self.name, self.replaces().to_vec(), self.size);
        j.attempts = attempts;
        j.sends = self.sends();
        j
    }
}

/// Write `data` into a filled writer's staged bytes at `offset`.
pub(super) fn stage(w: &Mutex<Writer>, offset: u64, data: &[u8]) -> CoreResult<u32> {
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

pub(super) fn lock(w: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}
