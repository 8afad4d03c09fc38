//! Who is waiting for a request and what each may spend: the classes (`Priority`), their
//! order among waiters (`next_up`), the headroom only a person's own work may take
//! (`headroom_of`), and the error of a request refused or held too long (`WouldWait`).

use std::collections::BTreeMap;

/// Who is waiting for a request, and what it is for. The limiter serves them in this
/// order (ties: oldest first, except listings: newest first; `User` and `Browse` take
/// turns by arrival), keeps a reserve of the daily budget that only `User` and
/// `Background` (real work) may spend, and keeps the last slots of every minute (the
/// headroom) for what a person waits on at a screen: `User` and `Browse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Real work a user is blocked on: reading contents, uploads, deletes, renames and
    /// the listings that confirm them.
    User,
    /// A listing a user's process asked for (lookup, opendir). Newest first; takes turns
    /// with `User` by arrival (a batch of uploads never overtakes it); a crawl's
    /// listings fail at once instead of queueing; never spends the reserve.
    Browse,
    /// Real work nobody waits on right now: resumed uploads, retries, owed deletes.
    Background,
    /// Listings nobody waits on: the client list, refreshes behind a stale answer.
    /// Never spends the reserve.
    Refresh,
    /// A listing a process asked for while another listing of the same process was
    /// still under way: a file manager counting the items of the folders it shows (a
    /// burst), not a person's click. Never queued: one that would have to wait answers
    /// at once (a file manager may hold the person's folder behind its count jobs);
    /// never takes the headroom; never spends the reserve.
    Count,
    /// Reads by thumbnailers and a file manager's own previews: below everything a user
    /// asked for; never spends the reserve.
    Preview,
}

/// A request the limiter would make wait longer than `--max-wait` (or one it refuses
/// at once: a crawl's listing, an item count, a preview behind the reserve).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limit: request would wait {wait_secs} s, more than --max-wait")]
pub struct WouldWait {
    /// How long it would have waited (0: refused at once).
    pub wait_secs: u64,
}

impl Priority {
    /// Rank in the queue: lower goes first, except that `User` and `Browse` take turns
    /// by arrival ([`next_up`]).
    pub(super) fn rank(self) -> u8 {
        match self {
            Priority::User => 0,
            Priority::Browse => 1,
            Priority::Background => 2,
            Priority::Refresh => 3,
            Priority::Count => 4,
            Priority::Preview => 5,
        }
    }

    /// Is a person waiting for it at a screen? Only these may take the headroom, the
    /// last slots of a minute ([`headroom_of`]).
    pub fn is_attended(self) -> bool {
        match self {
            Priority::User | Priority::Browse => true,
            Priority::Background | Priority::Refresh | Priority::Count | Priority::Preview => false,
        }
    }

    /// Is it a listing that a newer one of its kind displaces while both wait?
    pub(super) fn newest_first(self) -> bool {
        match self {
            Priority::Browse | Priority::Count => true,
            Priority::User | Priority::Background | Priority::Refresh | Priority::Preview => false,
        }
    }

    /// May this request spend the daily reserve? Only real work may.
    pub fn may_spend_reserve(self) -> bool {
        match self {
            Priority::User | Priority::Background => true,
            Priority::Browse | Priority::Refresh | Priority::Count | Priority::Preview => false,
        }
    }
}

/// Who goes next among the waiters (tickets in arrival order). A person's listing and
/// user work take turns by arrival: the newest waiting listing (`Browse`) goes before
/// the oldest waiting `User` request if it came first, else that request does. Rank
/// alone would let a batch starve browsing: a `cp -r` queues each upload as the previous
/// one returns, so a listing ranked below uploads would wait for the whole batch (or
/// fail at `--max-wait`); by arrival it waits behind at most the upload queued before
/// it. With neither waiting, the lowest rank goes first, oldest first within it.
/// (Unattended work waiting while only the headroom is left is never first when a
/// person's request waits too: `User` and `Browse` come before every other rank.)
pub(super) fn next_up(waiting: &BTreeMap<u64, Priority>) -> Option<u64> {
    let listing = waiting
        .iter()
        .filter(|(_, p)| **p == Priority::Browse)
        .map(|(t, _)| *t)
        .next_back();
    let user = waiting.iter().find(|(_, p)| **p == Priority::User).map(|(t, _)| *t);
    match (listing, user) {
        (Some(l), Some(u)) => Some(l.min(u)),
        (Some(t), None) | (None, Some(t)) => Some(t),
        (None, None) => waiting.iter().map(|(t, p)| (p.rank(), *t)).min().map(|(_, t)| t),
    }
}

/// The headroom of a per-minute limit: how many of a minute's slots only a person's
/// own work (`User`, `Browse`) may take. A fifth of the limit (2 of the default 10, 4
/// of 20), at least 1 from a limit of 2 up, none at a limit of 1 (else unattended work
/// could never run).
pub fn headroom_of(per_minute: usize) -> usize {
    if per_minute <= 1 {
        0
    } else {
        (per_minute / 5).max(1)
    }
}
