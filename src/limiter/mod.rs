//! The one request limiter every API call passes through: a sliding per-minute window,
//! a rolling daily budget with a reserve that listings and previews may not spend,
//! server-imposed pauses (429), an order among waiters (see [`Priority`]: user work
//! and a person's listings by arrival, then background work, the newest listing before
//! older ones, previews last), crawls that fail at once instead of queueing, and a
//! bound on how long any caller may be made to wait.
//!
//! # Listings (`Priority::Browse`)
//! A file manager that counts the items of 30 folders and the user who double-clicks
//! one of them look the same to the kernel: an opendir. Three rules keep the click first:
//! - Newest first, and only one waits: a listing that arrives while an older one waits
//!   for a slot displaces it (the older answers [`WouldWait`] at once), so
//!   a burst of counts leaves at most one waiter and a later click takes its place.
//! - A batch does not starve browsing: a listing and `User` work (uploads, reads) go in
//!   the order they arrived, so a listing waits behind at most the request each running
//!   copy queued before it, never behind the rest of a `cp -r` ([`next_up`]).
//! - A sequential crawl (`find`) fails fast: once half the per-minute limit of listings
//!   arrived within the last minute, a listing that would have to wait and follows the
//!   previous one within [`CRAWL_GAP`] answers at once. A listing after a pause (a
//!   person's click) still waits for its slot.
//!
//! # Across restarts
//! With a ledger ([`Limiter::with_ledger`], `ledger.rs`), every grant is also appended to
//! a private per-account file and the windows are filled from it: a remount, or a second
//! mount of the account on this machine, starts from what was already spent.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use self::ledger::Ledger;

mod classes;
pub mod ledger;

use self::classes::next_up;
pub use self::classes::{headroom_of, Priority, WouldWait};

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// A listing that follows the previous one more closely than this, while the minute's
/// budget is spent on listings, belongs to a crawl (module doc).
pub const CRAWL_GAP: Duration = Duration::from_secs(2);
/// A listing of a process that follows the previous one of the same process more
/// closely than this, while that one is still under way, is part of a burst: a file
/// manager counting the items of the folders it shows (`Priority::Count`, decided by
/// the core, which knows the process). A person's click comes later than this after
/// the burst; a sequential crawl (`find`) never has two listings under way at once.
pub const BURST_GAP: Duration = Duration::from_millis(500);
/// Share of the daily budget kept for real work unless set otherwise.
pub const DEFAULT_RESERVE_PERCENT: u32 = 20;

#[derive(Debug)]
struct State {
    /// Grants within the last minute, oldest first.
    minute: VecDeque<Instant>,
    /// Grants within the last 24 hours, oldest first.
    day: VecDeque<Instant>,
    /// Nobody goes before this (the server said 429).
    paused_until: Option<Instant>,
    /// Requests waiting now: ticket -> priority (tickets grow, so the map is in arrival order).
    waiting: BTreeMap<u64, Priority>,
    /// Next ticket to hand out.
    next_ticket: u64,
    /// Waiting listings displaced by a newer one: they answer `WouldWait` at their next look.
    displaced: HashSet<u64>,
    /// When listings (`Browse`) arrived within the last minute, oldest first.
    browse_arrivals: VecDeque<Instant>,
    /// When listings of any kind (`Browse`, `Count`, `Refresh`) arrived within the last
    /// minute: how busy listing is, for crawl detection.
    listing_arrivals: VecDeque<Instant>,
    /// Requests let through so far.
    granted: u64,
    /// Listings and previews refused because only the reserve was left.
    reserve_refusals: u64,
    /// Listings refused at once as part of a crawl or displaced by a newer one.
    crawl_refusals: u64,
}

/// What the limiter has spent and holds back, for a status display. Costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Requests granted within the last minute.
    pub used_minute: usize,
    /// Requests granted within the last 24 hours.
    pub used_day: usize,
    /// The per-minute limit.
    pub per_minute: usize,
    /// The daily limit.
    pub per_day: usize,
    /// How much of the daily limit only real work (contents, uploads, deletes, renames) may spend.
    pub reserve: usize,
    /// True while listings and previews are refused to protect the reserve.
    pub listings_held_back: bool,
    /// Listings and previews refused so far to protect the reserve.
    pub reserve_refusals: u64,
    /// Listings refused at once so far as part of a crawl.
    pub crawl_refusals: u64,
    /// How long until the next request could go (zero: now).
    pub next_slot_in: Duration,
}

/// Where the budget stands (see [`Limiter::snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimiterSnapshot {
    /// Requests let through in the last 60 s.
    pub used_last_minute: u64,
    /// The per-minute limit.
    pub per_minute: u64,
    /// Requests let through in the last 24 h.
    pub used_last_day: u64,
    /// The rolling daily limit.
    pub per_day: u64,
    /// How long until a request could go (zero: now).
    pub next_free_in: Duration,
    /// A pause the server imposed (429) still running.
    pub paused_for: Option<Duration>,
    /// User requests waiting for a slot.
    pub users_waiting: u64,
    /// Requests let through since the mount started.
    pub granted: u64,
}

/// Shared by every request of a mount.
pub struct Limiter {
    /// Requests per sliding minute.
    per_minute: usize,
    /// The last slots of a minute that only attended work may take ([`headroom_of`]).
    headroom: usize,
    /// Requests per rolling 24 hours.
    per_day: usize,
    /// The part of `per_day` that listings and previews may not spend.
    reserve: usize,
    /// Longest any caller waits before `WouldWait`.
    max_wait: Duration,
    /// Everything that changes, behind a std mutex never held across `.await`.
    state: Mutex<State>,
    /// Woken whenever a slot was taken, a waiter left or a pause was set.
    changed: Notify,
    /// Context for the progress line of long waits (set by the daemon).
    wait_note: std::sync::OnceLock<Box<dyn Fn() -> String + Send + Sync>>,
    /// The account's spending on disk, shared with other mounts of it (lock order:
    /// `state`, then this).
    ledger: Option<Mutex<Ledger>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("per_minute", &self.per_minute)
            .field("per_day", &self.per_day)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub fn new(per_minute: u32, per_day: u32, max_wait: Duration) -> Limiter {
        let per_day = per_day.max(1) as usize;
        Limiter {
            per_minute: per_minute.max(1) as usize,
            headroom: headroom_of(per_minute.max(1) as usize),
            per_day,
            reserve: reserve_of(per_day, DEFAULT_RESERVE_PERCENT),
            max_wait,
            state: Mutex::new(State {
                minute: VecDeque::new(),
                day: VecDeque::new(),
                paused_until: None,
                waiting: BTreeMap::new(),
                next_ticket: 0,
                displaced: HashSet::new(),
                browse_arrivals: VecDeque::new(),
                listing_arrivals: VecDeque::new(),
                granted: 0,
                reserve_refusals: 0,
                crawl_refusals: 0,
            }),
            changed: Notify::new(),
            wait_note: std::sync::OnceLock::new(),
            ledger: None,
        }
    }

    /// Keep the spending in the ledger file at `path` (its directory must be private):
    /// what earlier runs and other mounts of the account spent in the last day counts.
    pub fn with_ledger(mut self, path: &std::path::Path) -> std::io::Result<Limiter> {
        self.ledger = Some(Mutex::new(Ledger::open(path)?));
        {
            let mut s = self.lock();
            self.absorb(&mut s);
        }
        Ok(self)
    }

    /// Fill the windows with the grants the ledger gained since the last look (other
    /// mounts' and this one's). Small local file I/O under the state lock.
    fn absorb(&self, s: &mut State) {
        let Some(ledger) = &self.ledger else { return };
        let entries = ledger.lock().unwrap_or_else(|p| p.into_inner()).new_entries();
        if entries.is_empty() {
            return;
        }
        let (now, now_ms) = (Instant::now(), ledger::now_ms());
        for ms in entries {
            let age = Duration::from_millis(now_ms.saturating_sub(ms));
            let Some(at) = now.checked_sub(age) else { continue };
            insert_sorted(&mut s.day, at);
            if age < MINUTE {
                insert_sorted(&mut s.minute, at);
            }
        }
    }

    /// Count one grant now: through the ledger when there is one (read back by
    /// `absorb`, like every other mount's), else straight into the windows.
    fn spend(&self, s: &mut State, now: Instant) {
        if let Some(ledger) = &self.ledger {
            let written = ledger
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(ledger::now_ms());
            match written {
                Ok(()) => return self.absorb(s),
                Err(e) => tracing::warn!("cannot record a request in the quota ledger: {e}"),
            }
        }
        s.minute.push_back(now);
        s.day.push_back(now);
    }

    /// Keep `percent` of the daily budget (0–100) for real work.
    pub fn with_reserve_percent(mut self, percent: u32) -> Limiter {
        self.reserve = reserve_of(self.per_day, percent.min(100));
        self
    }

    /// A limiter that never makes anyone wait (tests of other layers).
    pub fn unlimited() -> Limiter {
        Limiter::new(u32::MAX, u32::MAX, Duration::from_secs(3600)).with_reserve_percent(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the budget stands now, for `intakeq-fs status`. Read-only: it only drops
    /// window entries that have expired, as `acquire` would.
    pub fn snapshot(&self) -> LimiterSnapshot {
        let now = Instant::now();
        let mut s = self.lock();
        let at = self.next_slot(&mut s, now);
        LimiterSnapshot {
            used_last_minute: s.minute.len() as u64,
            per_minute: self.per_minute as u64,
            used_last_day: s.day.len() as u64,
            per_day: self.per_day as u64,
            next_free_in: at.saturating_duration_since(now),
            paused_for: s.paused_until.map(|p| p.saturating_duration_since(now)),
            users_waiting: s.waiting.values().filter(|p| **p == Priority::User).count() as u64,
            granted: s.granted,
        }
    }

    /// Add context to the "waiting N s for the rate limit" progress line (e.g. how many
    /// uploads are queued). Set once, by the daemon; later calls are ignored.
    pub fn set_wait_note(&self, note: Box<dyn Fn() -> String + Send + Sync>) {
        let _ = self.wait_note.set(note);
    }

    /// The note for a progress line: ", 3 uploads queued" or empty.
    fn wait_note(&self) -> String {
        match self.wait_note.get().map(|f| f()) {
            Some(n) if !n.is_empty() => format!(", {n}"),
            _ => String::new(),
        }
    }

    /// How many requests were let through so far.
    pub fn granted(&self) -> u64 {
        self.lock().granted
    }

    /// What is spent and held back now (for `status` and the log); no call.
    pub fn budget(&self) -> Budget {
        let now = Instant::now();
        let mut s = self.lock();
        let at = self.next_slot(&mut s, now);
        Budget {
            used_minute: s.minute.len(),
            used_day: s.day.len(),
            per_minute: self.per_minute,
            per_day: self.per_day,
            reserve: self.reserve,
            listings_held_back: self.in_reserve(&s),
            reserve_refusals: s.reserve_refusals,
            crawl_refusals: s.crawl_refusals,
            next_slot_in: at.saturating_duration_since(now),
        }
    }

    /// Would a person's listing have to wait for a slot now (the minute's budget is
    /// spent, a pause is on, or only the reserve is left)? Lets the core serve a stale
    /// listing instead of queueing for a fresh one. No call, nothing taken.
    pub fn under_pressure(&self) -> bool {
        self.under_pressure_at(Priority::Browse)
    }

    /// Would a listing at `prio` have to wait now? Unattended ones (counts, refreshes)
    /// already do when only the headroom is left.
    pub fn under_pressure_at(&self, prio: Priority) -> bool {
        let now = Instant::now();
        let mut s = self.lock();
        self.next_slot_for(&mut s, now, prio.is_attended()) > now || self.in_reserve(&s)
    }

    /// True when what is left of the day is the reserve.
    fn in_reserve(&self, s: &State) -> bool {
        s.day.len() + self.reserve >= self.per_day
    }

    /// The server said "slow down" (429): nobody goes before `until`.
    pub fn pause_until(&self, until: Instant) {
        let mut s = self.lock();
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// The earliest instant a person's request may go, given the state now.
    fn next_slot(&self, s: &mut State, now: Instant) -> Instant {
        self.next_slot_for(s, now, true)
    }

    /// The earliest instant a request may go: an `attended` one (a person's, see
    /// [`Priority::is_attended`]) may take every slot of the minute, any other only
    /// those outside the headroom.
    fn next_slot_for(&self, s: &mut State, now: Instant, attended: bool) -> Instant {
        self.absorb(s);
        while s.minute.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
            s.minute.pop_front();
        }
        while s.day.front().is_some_and(|t| now.duration_since(*t) >= DAY) {
            s.day.pop_front();
        }
        let mut at = now;
        if let Some(p) = s.paused_until {
            if p > at {
                at = p;
            } else {
                s.paused_until = None;
            }
        }
        let per_minute = if attended {
            self.per_minute
        } else {
            self.per_minute - self.headroom
        };
        if s.minute.len() >= per_minute {
            let idx = s.minute.len() - per_minute;
            at = at.max(s.minute[idx] + MINUTE);
        }
        if s.day.len() >= self.per_day {
            let idx = s.day.len() - self.per_day;
            at = at.max(s.day[idx] + DAY);
        }
        at
    }

    /// When the reserve stops being all that is left (the oldest grant that must age
    /// out has aged out).
    fn reserve_frees_at(&self, s: &State, now: Instant) -> Instant {
        let idx = s.day.len().saturating_sub(self.per_day - self.reserve);
        s.day.get(idx).map_or(now, |t| *t + DAY)
    }

    /// A listing arrives (`Browse` or `Count`): displace the waiting listings of its
    /// kind if it has to wait itself, and for `Browse` note it for crawl detection.
    /// Returns whether it belongs to a sequential crawl. Counts are not noted: a burst
    /// of them is concurrent, not a crawl, and the click after it is a click.
    fn listing_arrives(&self, s: &mut State, ticket: u64, prio: Priority, now: Instant) -> bool {
        if self.next_slot_for(s, now, prio.is_attended()) > now {
            let older: Vec<u64> = s
                .waiting
                .iter()
                .filter(|(t, p)| **p == prio && **t != ticket)
                .map(|(t, _)| *t)
                .collect();
            s.displaced.extend(older);
        }
        if prio == Priority::Count {
            // The listing that started this burst came as `Browse` (nothing of its
            // process was under way yet): it was no click, so the click after the
            // burst must not look close to it.
            while s
                .browse_arrivals
                .back()
                .is_some_and(|t| now.duration_since(*t) < BURST_GAP)
            {
                s.browse_arrivals.pop_back();
            }
        }
        if prio != Priority::Browse {
            return false;
        }
        for w in [&mut s.browse_arrivals, &mut s.listing_arrivals] {
            while w.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
                w.pop_front();
            }
        }
        // Busy: half the per-minute limit of listings of any kind arrived within the
        // minute (the client list's pages and a file manager's counts included: on
        // loopback a file manager's first counts come one after the other and look like
        // clicks). At least 2 before: a person's one action may cost two listings in a
        // row (a client's files, then the folders), even at a tiny --rate-limit.
        let busy = s.listing_arrivals.len() >= (self.per_minute / 2).max(2);
        let close = s
            .browse_arrivals
            .back()
            .is_some_and(|t| now.duration_since(*t) < CRAWL_GAP);
        s.browse_arrivals.push_back(now);
        busy && close
    }

    /// Is `ticket` first in the queue ([`next_up`])?
    fn first(s: &State, ticket: u64) -> bool {
        next_up(&s.waiting) == Some(ticket)
    }

    /// Wait for permission to send one request. `what` names it for the log line
    /// ("GET files"). Fails with [`WouldWait`] instead of waiting longer
    /// than `--max-wait` in total, at once for a listing or preview when only the
    /// reserve is left, and at once for a listing of a crawl (module doc).
    pub async fn acquire(&self, prio: Priority, what: &str) -> Result<(), WouldWait> {
        let start = Instant::now();
        let (ticket, crawl) = {
            let mut s = self.lock();
            let ticket = s.next_ticket;
            s.next_ticket += 1;
            s.waiting.insert(ticket, prio);
            let crawl = prio.newest_first() && self.listing_arrives(&mut s, ticket, prio, start);
            if matches!(prio, Priority::Browse | Priority::Count | Priority::Refresh) {
                s.listing_arrivals.push_back(start);
            }
            (ticket, crawl)
        };
        // A crawl's listings are nobody's click: they never take the headroom.
        let attended = prio.is_attended() && !crawl;
        // Leaves the queue however this future ends, dropped (a killed caller) included.
        let _queued = Queued { limiter: self, ticket };
        // Displaced listings must hear about it now, not at their slot.
        self.changed.notify_waiters();
        let mut logged = false;
        let result = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (at, first) = {
                let mut s = self.lock();
                let at = self.next_slot_for(&mut s, now, attended);
                if s.displaced.remove(&ticket) {
                    s.crawl_refusals += 1;
                    tracing::debug!("{what}: a newer listing takes this one's place in the queue");
                    break Err(WouldWait {
                        wait_secs: at.saturating_duration_since(now).as_secs().max(1),
                    });
                }
                if !prio.may_spend_reserve() && self.in_reserve(&s) {
                    s.reserve_refusals += 1;
                    if s.reserve_refusals == 1 || s.reserve_refusals % 100 == 0 {
                        tracing::info!(
                            "{what} refused: the last {} requests of the day are kept for reading, uploads, deletes and renames ({} refused so far)",
                            self.reserve,
                            s.reserve_refusals
                        );
                    }
                    let free = self.reserve_frees_at(&s, now);
                    break Err(WouldWait {
                        wait_secs: free.saturating_duration_since(now).as_secs().max(1),
                    });
                }
                let first = Self::first(&s, ticket);
                if at <= now && first {
                    self.spend(&mut s, now);
                    s.granted += 1;
                    tracing::debug!("{what}: granted at {prio:?}");
                    break Ok(());
                }
                // An item count never waits either: a file manager may hold the folder the
                // person opens behind its count jobs (Thunar does), so a waiting count
                // would make the click wait with it. It shows no count instead.
                if (crawl || prio == Priority::Count) && at > now {
                    s.crawl_refusals += 1;
                    tracing::debug!(
                        "{what}: part of a crawl or of item counts while the minute's budget is spent; not queued"
                    );
                    break Err(WouldWait {
                        wait_secs: at.saturating_duration_since(now).as_secs().max(1),
                    });
                }
                (at, first)
            };
            let waited = now.duration_since(start);
            let remaining = at.saturating_duration_since(now);
            if waited + remaining > self.max_wait {
                break Err(WouldWait {
                    wait_secs: (waited + remaining).as_secs(),
                });
            }
            if !logged && remaining >= Duration::from_secs(1) {
                tracing::info!(
                    "rate limit: waiting {} s for {}{}",
                    remaining.as_secs().max(1),
                    what,
                    self.wait_note()
                );
                logged = true;
            }
            if at <= now && !first {
                // Someone ahead of us takes this slot: wait for them to be served.
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            } else {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
        };
        result
    }
}

/// A place in the limiter's queue, given up when dropped.
struct Queued<'a> {
    /// The limiter queued at.
    limiter: &'a Limiter,
    /// Our ticket.
    ticket: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        {
            let mut s = self.limiter.lock();
            s.waiting.remove(&self.ticket);
            s.displaced.remove(&self.ticket);
        }
        self.limiter.changed.notify_waiters();
    }
}

/// The reserve for `percent` of `per_day`.
/// Insert keeping the window sorted (grants of other mounts may arrive late).
fn insert_sorted(w: &mut VecDeque<Instant>, at: Instant) {
    let i = w.partition_point(|t| *t <= at);
    w.insert(i, at);
}

fn reserve_of(per_day: usize, percent: u32) -> usize {
    per_day.saturating_mul(percent as usize) / 100
}

#[cfg(test)]
mod tests;
