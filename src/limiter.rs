//! The one request limiter every API call passes through: a sliding per-minute window,
//! a rolling daily budget, server-imposed pauses (429), user work before background
//! work, and a bound on how long any caller may be made to wait.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::remote::{Priority, RemoteError};

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug)]
struct State {
    minute: VecDeque<Instant>,
    day: VecDeque<Instant>,
    paused_until: Option<Instant>,
    users_waiting: usize,
    granted: u64,
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
    per_minute: usize,
    per_day: usize,
    max_wait: Duration,
    state: Mutex<State>,
    changed: Notify,
    /// Context for the progress line of long waits (set by the daemon).
    wait_note: std::sync::OnceLock<Box<dyn Fn() -> String + Send + Sync>>,
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
        Limiter {
            per_minute: per_minute.max(1) as usize,
            per_day: per_day.max(1) as usize,
            max_wait,
            state: Mutex::new(State {
                minute: VecDeque::new(),
                day: VecDeque::new(),
                paused_until: None,
                users_waiting: 0,
                granted: 0,
            }),
            changed: Notify::new(),
            wait_note: std::sync::OnceLock::new(),
        }
    }

    /// A limiter that never makes anyone wait (tests of other layers).
    pub fn unlimited() -> Limiter {
        Limiter::new(u32::MAX, u32::MAX, Duration::from_secs(3600))
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
            users_waiting: s.users_waiting as u64,
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

    /// The server said "slow down" (429): nobody goes before `until`.
    pub fn pause_until(&self, until: Instant) {
        let mut s = self.lock();
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// The earliest instant a request may go, given the state now.
    fn next_slot(&self, s: &mut State, now: Instant) -> Instant {
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
        if s.minute.len() >= self.per_minute {
            let idx = s.minute.len() - self.per_minute;
            at = at.max(s.minute[idx] + MINUTE);
        }
        if s.day.len() >= self.per_day {
            let idx = s.day.len() - self.per_day;
            at = at.max(s.day[idx] + DAY);
        }
        at
    }

    /// Wait for permission to send one request. `what` names it for the log line
    /// ("GET files"). Fails with [`RemoteError::WouldWait`] instead of waiting longer
    /// than `--max-wait` in total.
    pub async fn acquire(&self, prio: Priority, what: &str) -> Result<(), RemoteError> {
        let start = Instant::now();
        let mut logged = false;
        let mut counted_as_user = false;
        let result = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (at, blocked_by_user) = {
                let mut s = self.lock();
                if prio == Priority::User && !counted_as_user {
                    s.users_waiting += 1;
                    counted_as_user = true;
                }
                let at = self.next_slot(&mut s, now);
                let blocked = prio == Priority::Background && s.users_waiting > 0;
                if at <= now && !blocked {
                    s.minute.push_back(now);
                    s.day.push_back(now);
                    s.granted += 1;
                    if counted_as_user {
                        s.users_waiting -= 1;
                        counted_as_user = false;
                    }
                    break Ok(());
                }
                (at, blocked)
            };
            let waited = now.duration_since(start);
            let remaining = at.saturating_duration_since(now);
            if waited + remaining > self.max_wait {
                break Err(RemoteError::WouldWait {
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
            if blocked_by_user && at <= now {
                // Only user work is ahead of us: wait for it to be served.
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
        if counted_as_user {
            self.lock().users_waiting -= 1;
        }
        self.changed.notify_waiters();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn per_minute_window_spaces_requests() {
        let l = Limiter::new(2, 100, Duration::from_secs(120));
        let t0 = Instant::now();
        l.acquire(Priority::User, "a").await.unwrap();
        l.acquire(Priority::User, "b").await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1));
        l.acquire(Priority::User, "c").await.unwrap();
        assert!(t0.elapsed() >= Duration::from_secs(60));
        assert_eq!(l.granted(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn snapshot_counts_the_windows_and_the_next_free_slot() {
        let l = Limiter::new(2, 100, Duration::from_secs(120));
        l.acquire(Priority::User, "a").await.unwrap();
        tokio::time::advance(Duration::from_secs(18)).await;
        l.acquire(Priority::User, "b").await.unwrap();
        let s = l.snapshot();
        assert_eq!(
            (s.used_last_minute, s.per_minute, s.used_last_day, s.per_day),
            (2, 2, 2, 100)
        );
        assert_eq!(s.next_free_in, Duration::from_secs(42));
        assert_eq!((s.paused_for, s.users_waiting, s.granted), (None, 0, 2));
        tokio::time::advance(Duration::from_secs(42)).await;
        let s = l.snapshot();
        assert_eq!((s.used_last_minute, s.used_last_day), (1, 2));
        assert_eq!(s.next_free_in, Duration::ZERO);
    }

    #[test]
    fn the_wait_note_is_appended_to_the_progress_line_once_set() {
        let l = Limiter::new(1, 1, Duration::from_secs(1));
        assert_eq!(l.wait_note(), "");
        l.set_wait_note(Box::new(|| "3 upload(s) queued".to_string()));
        assert_eq!(l.wait_note(), ", 3 upload(s) queued");
        l.set_wait_note(Box::new(|| "ignored".to_string()));
        assert_eq!(l.wait_note(), ", 3 upload(s) queued", "set once");
        let quiet = Limiter::new(1, 1, Duration::from_secs(1));
        quiet.set_wait_note(Box::new(String::new));
        assert_eq!(quiet.wait_note(), "", "nothing queued: no note");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_longer_than_max_wait_fail_at_once() {
        let l = Limiter::new(1, 100, Duration::from_secs(10));
        l.acquire(Priority::User, "a").await.unwrap();
        let t0 = Instant::now();
        let err = l.acquire(Priority::User, "b").await.unwrap_err();
        assert!(matches!(err, RemoteError::WouldWait { wait_secs } if wait_secs >= 59));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn daily_budget_is_enforced() {
        let l = Limiter::new(1000, 3, Duration::from_secs(120));
        for _ in 0..3 {
            l.acquire(Priority::User, "x").await.unwrap();
        }
        assert!(matches!(
            l.acquire(Priority::User, "x").await,
            Err(RemoteError::WouldWait { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_from_server_delays_everyone() {
        let l = Limiter::new(1000, 1000, Duration::from_secs(120));
        let t0 = Instant::now();
        l.pause_until(t0 + Duration::from_secs(30));
        l.acquire(Priority::User, "x").await.unwrap();
        assert!(t0.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn user_requests_go_before_background_ones() {
        use std::sync::Arc;
        let l = Arc::new(Limiter::new(1, 1000, Duration::from_secs(600)));
        l.acquire(Priority::User, "first").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let bg = {
            let (l, o) = (l.clone(), order.clone());
            tokio::spawn(async move {
                l.acquire(Priority::Background, "bg").await.unwrap();
                o.lock().unwrap().push("bg");
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let user = {
            let (l, o) = (l.clone(), order.clone());
            tokio::spawn(async move {
                l.acquire(Priority::User, "user").await.unwrap();
                o.lock().unwrap().push("user");
            })
        };
        user.await.unwrap();
        bg.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["user", "bg"]);
    }
}
