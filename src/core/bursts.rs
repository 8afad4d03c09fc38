//! Who a listing is for, and whether a browsing process's listing is a person's click or
//! one of its file manager's item counts (`Priority::Count`): the task-local asker set by
//! lookup and opendir, and the per-process record of listings under way and just ended.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::limiter::BURST_GAP;
use crate::remote::{ClientId, Priority};

tokio::task_local! {
    /// Who the listings fetched on this task's behalf are for: inside lookup and
    /// opendir ([`browsing`]) a process browsing, elsewhere a change that needs them.
    static ASKER: Asker;
}

/// The process behind a lookup or opendir, as the FUSE adapter knows it from the
/// request: its thread group id, and whether it is a file manager (by its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Browser {
    /// The thread group id.
    pub process: u32,
    /// A file manager (Thunar, Nautilus, pcmanfm, ...): its listings of one client after
    /// another, each asked as the previous one ends, are item counts.
    pub file_manager: bool,
}

/// Who a listing is for.
#[derive(Clone, Copy, Debug)]
struct Asker {
    /// `Browse` inside lookup and opendir, `User` for a change that needs the listing.
    prio: Priority,
    /// The process that browses, when known: its bursts are counts.
    browser: Option<Browser>,
}

/// Run `fut` (a lookup or opendir) with its listings at `Priority::Browse`, or at
/// `Priority::Count` when they are a file manager's item counts ([`Bursts::ask`]).
pub(super) async fn browsing<T>(browser: Option<Browser>, fut: impl Future<Output = T>) -> T {
    let asker = Asker {
        prio: Priority::Browse,
        browser,
    };
    ASKER.scope(asker, fut).await
}

/// The priority listings of the current task go at, before the burst rule.
pub(super) fn listing_priority() -> Priority {
    ASKER.try_with(|a| a.prio).unwrap_or(Priority::User)
}

/// What one process has under way (listings, or a file manager's content sniffs), and
/// when the last of them started and ended.
#[derive(Clone, Copy, Debug)]
pub(super) struct Activity {
    /// Under way now.
    pub(super) under_way: usize,
    /// When the last one started.
    pub(super) started: Instant,
    /// When the last one ended.
    pub(super) ended: Option<Instant>,
}

impl Activity {
    /// Something started or ended within `gap` before `now`.
    pub(super) fn within(&self, gap: Duration, now: Instant) -> bool {
        let recent = |t: Instant| now.duration_since(t) < gap;
        recent(self.started) || self.ended.is_some_and(recent)
    }
}

/// [`Activity`] per process: the record behind telling a person's click from what a
/// file manager does on its own (item counts here, content sniffs in `state.rs`).
#[derive(Debug, Default)]
pub(super) struct PerProcess {
    by_process: HashMap<u32, Activity>,
}

impl PerProcess {
    /// `process` starts one now: its activity as it was before (`None`: nothing known).
    /// Processes with nothing under way and nothing within `keep` are forgotten first.
    pub(super) fn start(&mut self, process: u32, keep: Duration) -> Option<Activity> {
        let now = Instant::now();
        self.by_process.retain(|_, a| a.under_way > 0 || a.within(keep, now));
        let before = self.by_process.get(&process).copied();
        let a = self.by_process.entry(process).or_insert(Activity {
            under_way: 0,
            started: now,
            ended: None,
        });
        a.under_way += 1;
        a.started = now;
        before
    }

    /// One that `process` started has ended.
    pub(super) fn end(&mut self, process: u32) {
        if let Some(a) = self.by_process.get_mut(&process) {
            a.under_way = a.under_way.saturating_sub(1);
            a.ended = Some(Instant::now());
        }
    }
}

/// Listings under way and just ended, per browsing process, for telling a count from a
/// click.
#[derive(Debug, Default)]
pub(super) struct Bursts {
    listings: PerProcess,
}

/// One listing of a process under way; counted out when dropped.
pub(super) struct Asking {
    /// The priority it goes at.
    pub(super) prio: Priority,
    /// Where it is counted, and under which process.
    counted: Option<(Arc<std::sync::Mutex<Bursts>>, u32)>,
}

impl Drop for Asking {
    fn drop(&mut self) {
        if let Some((bursts, process)) = &self.counted {
            let mut b = bursts.lock().unwrap_or_else(|p| p.into_inner());
            b.listings.end(*process);
        }
    }
}

impl Bursts {
    /// A listing of `client` for the current task is about to be fetched: at which
    /// priority, counted as under way until the returned guard drops. A browsing
    /// process's listing is a count when
    /// - another of its listings is under way and arrived within [`BURST_GAP`] (a file
    ///   manager counting the folders it shows from several threads at once), or
    /// - it is a file manager's, asked within [`BURST_GAP`] after its previous listing
    ///   ended (counting one folder after another: on a fast link the counts never
    ///   overlap; and Thunar asks again at once for a count refused with EAGAIN).
    ///
    /// Otherwise it keeps the task's priority. A person's click on a folder comes later
    /// than that after the file manager's last count; a shell's `ls a b`, `find` or `tar`
    /// are not file managers and keep `Browse` (the crawl rule is theirs).
    pub(super) fn ask(bursts: &Arc<std::sync::Mutex<Bursts>>, client: Option<ClientId>) -> Asking {
        let asker = ASKER.try_with(|a| *a).unwrap_or(Asker {
            prio: Priority::User,
            browser: None,
        });
        let Some(browser) = asker.browser.filter(|_| asker.prio == Priority::Browse) else {
            return Asking {
                prio: asker.prio,
                counted: None,
            };
        };
        let now = Instant::now();
        let recent = |t: Instant| now.duration_since(t) < BURST_GAP;
        let before = {
            let mut b = bursts.lock().unwrap_or_else(|p| p.into_inner());
            b.listings.start(browser.process, BURST_GAP)
        };
        let concurrent = before.is_some_and(|a| a.under_way > 0 && recent(a.started));
        let in_turn = browser.file_manager && before.is_some_and(|a| a.ended.is_some_and(recent));
        let prio = if concurrent || in_turn {
            Priority::Count
        } else {
            Priority::Browse
        };
        tracing::debug!(
            process = browser.process,
            file_manager = browser.file_manager,
            client,
            concurrent,
            in_turn,
            "a browsing process's listing goes at {prio:?}"
        );
        Asking {
            prio,
            counted: Some((bursts.clone(), browser.process)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fm(process: u32) -> Option<Browser> {
        Some(Browser {
            process,
            file_manager: true,
        })
    }

    async fn ask_as(b: &Arc<std::sync::Mutex<Bursts>>, who: Option<Browser>, client: ClientId) -> Asking {
        browsing(who, async { Bursts::ask(b, Some(client)) }).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_managers_listings_one_after_another_are_counts_and_a_later_one_is_a_click() {
        let b = Arc::default();
        let first = ask_as(&b, fm(7), 1).await;
        assert_eq!(first.prio, Priority::Browse, "the folder it opens");
        drop(first);
        for c in 2..6 {
            let a = ask_as(&b, fm(7), c).await;
            assert_eq!(a.prio, Priority::Count, "counted in turn: client {c}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            drop(a);
        }
        tokio::time::sleep(BURST_GAP).await;
        assert_eq!(ask_as(&b, fm(7), 9).await.prio, Priority::Browse, "the person's click");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_count_asked_again_is_a_count_and_a_shell_or_another_process_are_not() {
        let b = Arc::default();
        drop(ask_as(&b, fm(7), 1).await);
        let again = ask_as(&b, fm(7), 1).await;
        assert_eq!(again.prio, Priority::Count, "Thunar asks again for a refused count");
        drop(again);
        tokio::time::sleep(BURST_GAP).await;
        assert_eq!(
            ask_as(&b, fm(7), 1).await.prio,
            Priority::Browse,
            "the same folder, later"
        );
        let shell = Some(Browser {
            process: 8,
            file_manager: false,
        });
        drop(ask_as(&b, shell, 1).await);
        assert_eq!(
            ask_as(&b, shell, 2).await.prio,
            Priority::Browse,
            "`ls a b` is not a count"
        );
        drop(ask_as(&b, fm(9), 3).await);
        assert_eq!(ask_as(&b, fm(10), 4).await.prio, Priority::Browse, "another process");
    }
}
