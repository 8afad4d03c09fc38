//! A written file's life cycle as one pure state machine (`Cycle`): where its staged
//! bytes stand (`Life`), why a close leaves the upload for later (`Wait`), what the next
//! upload replaces, when its last handle was released, and how many sends it has had.
//! Everything changes only through [`Cycle::step`], by the tables below. No I/O, no locks.
//!
//! ## Where the staged bytes stand
//!
//! Rows: the state now. Columns: what happened. `=`: stays as it is (the event means
//! nothing in that state); `·`: cannot happen (a bug: `debug_assert!` in tests, an
//! error and no change in production). `¹`: if the bytes were written since the upload
//! started, `Staged` instead; `²`: `Failed`, keeping the earlier attempts; `³`: `Failed`,
//! with this attempt's record; `⁴`: back to the state before the unlink (`Staged` if
//! that was `Landed` and the bytes changed since, `Failed` if it was `Uploading`).
//!
//! | now \ event   | Changed  | UploadStarts | Landed   | NotLanded | MaybeLanded | Accepted      | Confirmed | Missing  | GiveUp  | Renamed    | RenamedScratch | Discarded | Restored |
//! |---------------|----------|--------------|----------|-----------|-------------|---------------|-----------|----------|---------|------------|----------------|-----------|----------|
//! | Staged        | =        | Uploading    | ·        | ·         | ·           | ·             | ·         | ·        | GivenUp | =          | Local          | Discarded | ·        |
//! | Uploading     | =        | ·            | Landed¹  | Failed²   | Failed³     | Unconfirmed³  | ·         | ·        | GivenUp | ·          | ·              | Discarded | ·        |
//! | Failed        | =        | Uploading    | ·        | ·         | ·           | ·             | ·         | ·        | GivenUp | =          | Local          | Discarded | ·        |
//! | Landed        | Staged   | ·            | ·        | ·         | ·           | ·             | ·         | ·        | ·       | ·          | ·              | Discarded | ·        |
//! | Unconfirmed   | Failed³  | ·            | ·        | ·         | ·           | ·             | Landed    | Staged   | ·       | ·          | ·              | Discarded | ·        |
//! | Local         | =        | ·            | ·        | ·         | ·           | ·             | ·         | ·        | ·       | Staged     | =              | Discarded | ·        |
//! | GivenUp       | =        | =            | ·        | ·         | ·           | ·             | ·         | ·        | =       | Staged     | ·              | Discarded | ·        |
//! | Discarded     | =        | =            | =        | =         | =           | =             | =         | =        | =       | =          | =              | =         | ⁴        |
//!
//! - `Changed`: bytes were written or the size changed. `UploadStarts`: an upload of
//!   the bytes as they are now begins (its journal entry carries the attempt record).
//!   `Landed(id)` / `NotLanded` / `MaybeLanded`: what the listing after it showed.
//!   `Accepted`: the server answered 2xx (a close trusts it); `Confirmed(id)`: a later
//!   listing shows it; `Missing`: a listing taken after it does not. `GiveUp`:
//!   `spool::MAX_SENDS` uploads went out unseen (or the name cannot be carried).
//!   `Renamed` / `RenamedScratch`: a file not on the server renamed onto an ordinary
//!   name (a scratch file becomes a document; a given-up one gets a new try) or onto a
//!   scratch name (it stays local). `Discarded`: unlinked or renamed over; `Restored`:
//!   that unlink's delete failed.
//! - A `Discarded` writer ignores everything but `Restored`: its bytes are never
//!   uploaded, and a close or retry that was under way when it was unlinked ends quietly.
//! - `GivenUp` ignores `Changed`, `UploadStarts` and `GiveUp` (nothing is sent again);
//!   only an unlink or a rename ends it.
//!
//! ## Why a close does not upload yet (`Wait`), and the rest of the record
//!
//! | event                         | effect |
//! |-------------------------------|--------|
//! | `Created(wait)`               | the wait a new file starts with (`Rename` for an atomic saver's temp file) |
//! | `ClosedUnwritten`             | `No` → `Release`, if `Staged` and never written, or unsent and not written since an open emptied it (size 0: the caller checks) |
//! | `EmptiedByOpen`               | remembers that the bytes as they are now were emptied by an open (`O_TRUNC`): a redirect over a file saved a moment ago, whose writer is still there |
//! | `ClosedByChild`               | `No`/`Release` → `Opener`, if the bytes are unsent |
//! | `ClosedByOpener`              | `Opener`/`Resend` → `No` |
//! | `Changed`                     | `Release` → `No`; sends → 0 |
//! | `Released(t)`                 | remembers `t` if a deferred upload waits (wait not `No`, bytes unsent) |
//! | `Due`                         | → `No`: the deferred upload runs now |
//! | `Missing`                     | → `Resend` (sent again as background work) |
//! | `Renamed`, `RenamedScratch`   | → `No`; replaces: + what the name showed (`Renamed`), or nothing (`RenamedScratch`); a `Local`/`GivenUp` file's sends → 0 |
//! | `Accepted`                    | replaces → nothing (deleted by the upload that was accepted) |
//! | `Landed(Some(id))`, `Confirmed(id)` | replaces → `[id]` (the next upload replaces this one); sends → 0 |
//! | `Moved(id)`                   | replaces → `[id]` (the open file's copy under its new name) |
//! | `SendsCounted(n)`             | sends → `n` (from the journal, after an upload or a rename's copy) |

use tokio::time::Instant;

use super::spool::Attempts;

/// Where a written file's staged bytes stand (rows of the first table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// Bytes the server does not have: created, written or truncated since the last
    /// upload that landed.
    Staged,
    /// An upload of the bytes as of `version` is running (under the client's mutation
    /// lock). `attempts` is the record its journal entry carries; `prior` the record
    /// from before it (what stays if it did not land).
    Uploading {
        /// The cycle's `version` when the upload started.
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
    /// The server has the staged bytes, as file `id` if the listing identified it (a
    /// file opened for writing and not changed yet starts here).
    Landed {
        /// The file's id; `None` if the confirming listing could not tell which.
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
        at: Instant,
    },
    /// `spool::MAX_SENDS` uploads went out and no listing showed the file under its
    /// name: never sent again (not by the background retry, not by a later mount); the
    /// staged bytes and the journal entry (marked `given_up`) stay in the spool.
    GivenUp,
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
    /// descriptor before the command writes; `touch`): uploaded at the last release
    /// (a new empty file once left alone for `patterns::HOLD_EMPTY`).
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

/// What happens to a writer (columns of the tables).
#[derive(Debug)]
pub(super) enum Event {
    Changed,
    UploadStarts(Attempts),
    Landed(Option<String>),
    NotLanded,
    MaybeLanded,
    Accepted,
    Confirmed(String),
    Missing,
    GiveUp,
    /// Renamed onto an ordinary name; what the name showed on the server is replaced.
    Renamed(Vec<String>),
    RenamedScratch,
    Discarded,
    Restored {
        /// The state before the unlink.
        prev: Life,
        /// The cycle's `version` when it was discarded.
        version: u64,
    },
    Created(Wait),
    ClosedUnwritten,
    /// An open with `O_TRUNC` emptied the bytes.
    EmptiedByOpen,
    ClosedByChild,
    ClosedByOpener,
    Released(Instant),
    Due,
    Moved(String),
    SendsCounted(u32),
}

/// A transition the table says cannot happen.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Impossible(pub(super) String);

/// The life-cycle record of one written file (see the module's tables).
#[derive(Debug)]
pub(super) struct Cycle {
    life: Life,
    wait: Wait,
    /// Server files the next upload replaces (deleted once it is confirmed): the file
    /// opened for writing, or what the last upload landed as.
    replaces: Vec<String>,
    /// When the last handle was released while an upload was deferred.
    released_at: Option<Instant>,
    /// Uploads of these bytes sent that no listing has shown under the name
    /// (`Journal::sends`); back to 0 once one lands or the bytes change.
    sends: u32,
    /// Counts changes to the staged bytes, so an upload knows whether the bytes it sent
    /// are still the latest.
    version: u64,
    /// The `version` the last upload started with: a copy it left on the server holds
    /// the bytes of that version.
    sent_version: Option<u64>,
    /// The `version` an open with `O_TRUNC` emptied the bytes to.
    emptied_at: Option<u64>,
}

impl Cycle {
    pub(super) fn new(life: Life, replaces: Vec<String>) -> Cycle {
        Cycle {
            life,
            wait: Wait::No,
            replaces,
            released_at: None,
            sends: 0,
            version: 0,
            sent_version: None,
            emptied_at: None,
        }
    }

    pub(super) fn life(&self) -> &Life {
        &self.life
    }

    pub(super) fn wait(&self) -> Wait {
        self.wait
    }

    pub(super) fn replaces(&self) -> &[String] {
        &self.replaces
    }

    pub(super) fn released_at(&self) -> Option<Instant> {
        self.released_at
    }

    pub(super) fn sends(&self) -> u32 {
        self.sends
    }

    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// The upload under way is of the bytes as they are now (not written since).
    pub(super) fn uploading_current(&self) -> bool {
        matches!(self.life, Life::Uploading { version, .. } if version == self.version)
    }

    /// Whether a copy an earlier upload left on the server can hold exactly the bytes
    /// staged now: only if they have not changed since that upload started. Otherwise
    /// it holds older bytes (or, if written during the upload, a mix), and downloading
    /// it to compare would cost a call to learn what is already known.
    pub(super) fn prior_may_match(&self) -> bool {
        self.sent_version.is_none_or(|v| v == self.version)
    }

    /// The one place the record changes (see the module's tables). An impossible
    /// transition leaves it as it was and is returned (and fails a debug build).
    pub(super) fn step(&mut self, event: Event) -> Result<(), Impossible> {
        let (was_unsent, was_staged) = (self.life.unsent(), self.life == Life::Staged);
        let was_local = matches!(self.life, Life::Local | Life::GivenUp);
        let now = std::mem::replace(&mut self.life, Life::Discarded);
        let next = match self.next(now, &event) {
            (next, None) => next,
            (now, Some(why)) => {
                self.life = now;
                debug_assert!(false, "writer: {why}");
                tracing::error!("writer: {why}; ignored");
                return Err(Impossible(why));
            }
        };
        // The rest of the record (the second table), from the state before the event.
        match &event {
            Event::Changed => {
                self.version += 1;
                self.sends = 0;
                if self.wait == Wait::Release {
                    self.wait = Wait::No;
                }
            }
            Event::Created(w) => self.wait = *w,
            Event::ClosedUnwritten => {
                let unwritten = (was_staged && self.version == 0) || self.emptied_at == Some(self.version);
                if self.wait == Wait::No && was_unsent && unwritten {
                    self.wait = Wait::Release;
                }
            }
            Event::EmptiedByOpen => self.emptied_at = Some(self.version),
            Event::ClosedByChild => {
                if matches!(self.wait, Wait::No | Wait::Release) && was_unsent {
                    self.wait = Wait::Opener;
                }
            }
            Event::ClosedByOpener => {
                if matches!(self.wait, Wait::Opener | Wait::Resend) {
                    self.wait = Wait::No;
                }
            }
            Event::Released(t) => {
                if self.wait != Wait::No && was_unsent {
                    self.released_at = Some(*t);
                }
            }
            Event::Due => self.wait = Wait::No,
            Event::Missing => self.wait = Wait::Resend,
            Event::Renamed(ids) => {
                self.wait = Wait::No;
                self.replaces.extend(ids.iter().cloned());
                if was_local {
                    self.sends = 0;
                }
            }
            Event::RenamedScratch => {
                self.wait = Wait::No;
                self.replaces.clear();
            }
            Event::Accepted => self.replaces.clear(),
            Event::Landed(Some(id)) | Event::Confirmed(id) | Event::Moved(id) => self.replaces = vec![id.clone()],
            Event::SendsCounted(n) => self.sends = *n,
            Event::UploadStarts(_) => {
                if matches!(next, Life::Uploading { .. }) {
                    self.sent_version = Some(self.version);
                }
            }
            Event::Landed(None)
            | Event::NotLanded
            | Event::MaybeLanded
            | Event::GiveUp
            | Event::Discarded
            | Event::Restored { .. } => {}
        }
        if matches!(next, Life::Landed { .. }) {
            self.sends = 0;
        }
        self.life = next;
        Ok(())
    }

    /// The first table: the next state, or the state unchanged and why the transition
    /// cannot happen.
    fn next(&self, now: Life, event: &Event) -> (Life, Option<String>) {
        use Life::*;
        let v = self.version;
        let next = match (now, event) {
            (Discarded, Event::Restored { prev, version }) => match prev.clone() {
                Landed { .. } if *version != v => Staged,
                Uploading { attempts, .. } => Failed {
                    attempts: Some(attempts),
                },
                prev => prev,
            },
            (Discarded, _) => Discarded,
            (_, Event::Discarded) => Discarded,
            // Events that only touch the rest of the record.
            (
                now,
                Event::Created(_)
                | Event::ClosedUnwritten
                | Event::EmptiedByOpen
                | Event::ClosedByChild
                | Event::ClosedByOpener
                | Event::Released(_)
                | Event::Due
                | Event::Moved(_)
                | Event::SendsCounted(_),
            ) => now,
            (Landed { .. }, Event::Changed) => Staged,
            (Unconfirmed { attempts, .. }, Event::Changed) => Failed {
                attempts: Some(attempts),
            },
            (now @ (Staged | Uploading { .. } | Failed { .. } | Local | GivenUp), Event::Changed) => now,
            (Staged, Event::UploadStarts(attempts)) => Uploading {
                version: v,
                attempts: attempts.clone(),
                prior: None,
            },
            (Failed { attempts: prior }, Event::UploadStarts(attempts)) => Uploading {
                version: v,
                attempts: attempts.clone(),
                prior,
            },
            (GivenUp, Event::UploadStarts(_) | Event::GiveUp) => GivenUp,
            (Uploading { version, .. }, Event::Landed(id)) if version == v => Landed { id: id.clone() },
            (Uploading { .. }, Event::Landed(_)) => Staged,
            (Uploading { prior, .. }, Event::NotLanded) => Failed { attempts: prior },
            (Uploading { attempts, .. }, Event::MaybeLanded) => Failed {
                attempts: Some(attempts),
            },
            (Uploading { version, attempts, .. }, Event::Accepted) if version == v => Unconfirmed {
                attempts,
                at: Instant::now(),
            },
            (Uploading { attempts, .. }, Event::Accepted) => Failed {
                attempts: Some(attempts),
            },
            (Unconfirmed { .. }, Event::Confirmed(id)) => Landed { id: Some(id.clone()) },
            (Unconfirmed { .. }, Event::Missing) => Staged,
            (Staged | Failed { .. } | Uploading { .. }, Event::GiveUp) => GivenUp,
            (Local | GivenUp, Event::Renamed(_)) => Staged,
            (now @ (Staged | Failed { .. }), Event::Renamed(_)) => now,
            (Staged | Failed { .. } | Local, Event::RenamedScratch) => Local,
            (now, event) => {
                let why = format!("{event:?} cannot happen to a writer in state {now:?}");
                return (now, Some(why));
            }
        };
        (next, None)
    }
}

#[cfg(test)]
mod tests;
