//! Unit tests of the limiter on paused tokio time: order among waiters, the click first,
//! a batch that does not starve browsing, crawls refused at once, the reserve, 429 pauses
//! and --max-wait.

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
    assert!(matches!(err, WouldWait { wait_secs } if wait_secs >= 59));
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn daily_budget_is_enforced() {
    let l = Limiter::new(1000, 3, Duration::from_secs(120));
    for _ in 0..3 {
        l.acquire(Priority::User, "x").await.unwrap();
    }
    assert!(matches!(l.acquire(Priority::User, "x").await, Err(WouldWait { .. })));
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

/// `n` requests of one priority started together; the results in start order.
async fn burst(l: &std::sync::Arc<Limiter>, prio: Priority, n: usize) -> Vec<Result<(), WouldWait>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(prio, "x").await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// `n` requests of one priority started together, not awaited.
fn spawn_burst(
    l: &std::sync::Arc<Limiter>,
    prio: Priority,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<(), WouldWait>>> {
    (0..n)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(prio, "x").await })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_concurrent_listings_as_crawl_never_takes_the_headroom_and_a_click_goes_at_once() {
    use std::sync::Arc;
    let l = Arc::new(Limiter::new(10, 500, Duration::from_secs(120)));
    let t0 = Instant::now();
    let counts = burst(&l, Priority::Browse, 30).await;
    assert_eq!(
        counts.iter().filter(|r| r.is_ok()).count(),
        8,
        "two slots kept for a person"
    );
    assert_eq!(counts.iter().filter(|r| r.is_err()).count(), 22);
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "the crawl's extra listings answered at once"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    l.acquire(Priority::Browse, "click").await.unwrap();
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5),
        "the click took a kept slot at once"
    );
    assert_eq!(l.granted(), 9);
    assert_eq!(l.budget().crawl_refusals, 22);
}

#[tokio::test(start_paused = true)]
async fn item_counts_take_at_most_eight_of_ten_slots_and_the_click_after_them_goes_at_once() {
    use std::sync::Arc;
    let l = Arc::new(Limiter::new(10, 500, Duration::from_secs(120)));
    let t0 = Instant::now();
    let counts = spawn_burst(&l, Priority::Count, 30);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(l.granted(), 8, "counts stop at the headroom");
    l.acquire(Priority::Browse, "click").await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(1500), "the click went at once");
    l.acquire(Priority::User, "open").await.unwrap();
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(1500),
        "and so did the file it opened"
    );
    let mut ok = 0;
    for c in counts {
        ok += usize::from(c.await.unwrap().is_ok());
    }
    assert_eq!(ok, 8, "8 at once; the others answered at once, none queued");
    assert_eq!(l.granted(), 10);
    assert_eq!(l.budget().crawl_refusals, 22);
}

#[tokio::test(start_paused = true)]
async fn thumbnails_leave_the_headroom_to_the_person_who_opens_a_file_meanwhile() {
    use std::sync::Arc;
    let l = Arc::new(Limiter::new(10, 500, Duration::from_secs(300)));
    let t0 = Instant::now();
    let thumbs = spawn_burst(&l, Priority::Preview, 30);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(l.granted(), 8);
    l.acquire(Priority::Browse, "GET files").await.unwrap();
    l.acquire(Priority::User, "GET file").await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(2), "listing and download at once");
    for t in thumbs {
        t.await.unwrap().unwrap();
    }
    assert_eq!(l.granted(), 32, "the previews still all go, 8 a minute");
    assert!(t0.elapsed() >= Duration::from_secs(180));
}

#[tokio::test(start_paused = true)]
async fn a_persons_own_work_takes_every_slot_when_nothing_else_waits() {
    let l = Limiter::new(10, 500, Duration::from_secs(120));
    let t0 = Instant::now();
    for _ in 0..10 {
        l.acquire(Priority::User, "PUT").await.unwrap();
    }
    assert_eq!(t0.elapsed(), Duration::ZERO);
    let b = Limiter::new(10, 500, Duration::from_secs(120));
    for _ in 0..8 {
        b.acquire(Priority::Background, "retry").await.unwrap();
    }
    assert!(b.under_pressure_at(Priority::Refresh), "unattended work would wait now");
    assert!(!b.under_pressure_at(Priority::Browse), "a person's listing would not");
    b.acquire(Priority::Background, "retry").await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(60), "the ninth waited for the minute");
}

#[test]
fn the_headroom_is_a_fifth_of_the_rate_limit_and_at_least_one_slot() {
    let table: Vec<(usize, usize)> = [1, 2, 4, 5, 9, 10, 15, 20, 60]
        .iter()
        .map(|&n| (n, headroom_of(n)))
        .collect();
    assert_eq!(
        table,
        vec![
            (1, 0),
            (2, 1),
            (4, 1),
            (5, 1),
            (9, 1),
            (10, 2),
            (15, 3),
            (20, 4),
            (60, 12)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_newer_listing_displaces_an_older_waiting_one() {
    use std::sync::Arc;
    let l = Arc::new(Limiter::new(1, 500, Duration::from_secs(120)));
    l.acquire(Priority::User, "first").await.unwrap();
    let old = {
        let l = l.clone();
        tokio::spawn(async move { l.acquire(Priority::Browse, "old").await })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let t1 = Instant::now();
    let new = {
        let l = l.clone();
        tokio::spawn(async move { l.acquire(Priority::Browse, "new").await })
    };
    assert!(matches!(old.await.unwrap(), Err(WouldWait { .. })));
    assert_eq!(t1.elapsed(), Duration::ZERO);
    new.await.unwrap().unwrap();
    assert_eq!(t1.elapsed(), Duration::from_secs(50));
}

#[tokio::test(start_paused = true)]
async fn a_sequential_crawl_fails_fast_before_the_headroom_and_a_later_click_goes_at_once() {
    let l = Limiter::new(10, 500, Duration::from_secs(120));
    let t0 = Instant::now();
    for _ in 0..8 {
        l.acquire(Priority::Browse, "find").await.unwrap();
    }
    for _ in 0..100 {
        assert!(matches!(
            l.acquire(Priority::Browse, "find").await,
            Err(WouldWait { .. })
        ));
    }
    assert_eq!(t0.elapsed(), Duration::ZERO);
    tokio::time::sleep(CRAWL_GAP).await;
    l.acquire(Priority::Browse, "click").await.unwrap();
    assert_eq!(t0.elapsed(), CRAWL_GAP, "the click took a kept slot at once");
    assert_eq!(l.granted(), 9);
}

#[tokio::test(start_paused = true)]
async fn listings_and_previews_never_spend_the_reserve() {
    let l = Limiter::new(1000, 10, Duration::from_secs(120)).with_reserve_percent(20);
    for _ in 0..8 {
        l.acquire(Priority::Refresh, "GET files").await.unwrap();
    }
    for p in [Priority::Browse, Priority::Refresh, Priority::Preview] {
        assert!(matches!(
            l.acquire(p, "x").await,
            Err(WouldWait { wait_secs }) if wait_secs > 23 * 3600
        ));
    }
    let b = l.budget();
    assert!(b.listings_held_back);
    assert_eq!((b.used_day, b.reserve, b.reserve_refusals), (8, 2, 3));
    l.acquire(Priority::User, "GET file").await.unwrap();
    l.acquire(Priority::Background, "POST files").await.unwrap();
    assert_eq!(l.granted(), 10);
}

#[tokio::test(start_paused = true)]
async fn previews_go_after_everything_a_user_asked_for() {
    let waiters = [
        (Priority::Preview, "preview"),
        (Priority::Refresh, "refresh"),
        (Priority::Background, "bg"),
        (Priority::User, "user"),
    ];
    assert_eq!(grant_order(&waiters).await, vec!["user", "bg", "refresh", "preview"]);
}

/// The order in which `waiters` are granted, each arriving 1 s after the one before
/// while a limiter of 1 a minute has just spent its minute.
async fn grant_order(waiters: &[(Priority, &'static str)]) -> Vec<&'static str> {
    use std::sync::Arc;
    let l = Arc::new(Limiter::new(1, 1000, Duration::from_secs(3600)));
    l.acquire(Priority::User, "first").await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for &(p, name) in waiters {
        let (l, o) = (l.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            l.acquire(p, name).await.unwrap();
            o.lock().unwrap().push(name);
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let out = order.lock().unwrap().clone();
    out
}

#[tokio::test(start_paused = true)]
async fn a_listing_waits_behind_the_one_upload_queued_before_it_not_the_rest_of_the_batch() {
    use std::sync::Arc;
    let l = Arc::new(Limiter::new(1, 1000, Duration::from_secs(3600)));
    l.acquire(Priority::User, "first").await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let push = |o: &Arc<Mutex<Vec<&'static str>>>, what| o.lock().unwrap().push(what);
    // Another client's confirming listing and a refresh were already due.
    let mut tasks = Vec::new();
    for (p, name) in [(Priority::Background, "confirm"), (Priority::Refresh, "refresh")] {
        let (l, o) = (l.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            l.acquire(p, name).await.unwrap();
            push(&o, name);
        }));
    }
    // `cp -r` of 5 files: each close queues its upload as soon as the previous returned.
    let copy = {
        let (l, o) = (l.clone(), order.clone());
        tokio::spawn(async move {
            for _ in 0..5 {
                l.acquire(Priority::User, "POST file").await.unwrap();
                push(&o, "upload");
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let listing = {
        let (l, o) = (l.clone(), order.clone());
        tokio::spawn(async move {
            l.acquire(Priority::Browse, "GET files").await.unwrap();
            push(&o, "listing");
        })
    };
    listing.await.unwrap();
    copy.await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        vec!["upload", "listing", "upload", "upload", "upload", "upload", "confirm", "refresh"]
    );
}

#[tokio::test(start_paused = true)]
async fn user_work_and_a_listing_go_in_the_order_they_came() {
    let waiters = [
        (Priority::User, "read"),
        (Priority::Browse, "listing"),
        (Priority::User, "save"),
    ];
    assert_eq!(grant_order(&waiters).await, vec!["read", "listing", "save"]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_leaves_the_queue() {
    use std::sync::Arc;
    let l = Arc::new(Limiter::new(1, 1000, Duration::from_secs(600)));
    l.acquire(Priority::User, "first").await.unwrap();
    let gone = {
        let l = l.clone();
        tokio::spawn(async move { l.acquire(Priority::User, "killed").await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    gone.abort();
    let t0 = Instant::now();
    l.acquire(Priority::Background, "bg").await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(59));
}

#[tokio::test(start_paused = true)]
async fn budget_and_pressure_show_what_is_spent_without_taking_anything() {
    let l = Limiter::new(2, 10, Duration::from_secs(120));
    assert!(!l.under_pressure());
    l.acquire(Priority::User, "a").await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    l.acquire(Priority::User, "b").await.unwrap();
    assert!(l.under_pressure(), "the minute is spent");
    let b = l.budget();
    assert_eq!(
        (b.used_minute, b.used_day, b.per_minute, b.per_day, b.reserve),
        (2, 2, 2, 10, 2)
    );
    assert_eq!(b.next_slot_in, Duration::from_secs(40));
    assert!(!b.listings_held_back);
    assert_eq!(l.granted(), 2, "looking took nothing");
}

#[tokio::test]
async fn mounts_of_one_account_share_one_budget_through_the_ledger_and_a_remount_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota");
    let limiter = || {
        Limiter::new(2, 500, Duration::ZERO)
            .with_reserve_percent(0)
            .with_ledger(&path)
            .unwrap()
    };
    let a = limiter();
    let b = limiter();
    a.acquire(Priority::User, "GET folders").await.unwrap();
    b.acquire(Priority::User, "GET folders").await.unwrap();
    assert!(
        matches!(a.acquire(Priority::User, "GET folders").await, Err(WouldWait { .. })),
        "the other mount's request counts"
    );
    drop((a, b));
    let again = limiter();
    assert_eq!(again.budget().used_minute, 2, "a remount starts from what was spent");
    assert_eq!(again.budget().used_day, 2);
    assert!(matches!(
        again.acquire(Priority::User, "GET folders").await,
        Err(WouldWait { .. })
    ));
}

/// On loopback a file manager's counts come one after the other, each answered before
/// the next is asked, so they look like clicks until the crawl rule sees them. The
/// client list's pages count as listings for that rule, so the counts stop at the
/// headroom and the person's click and the file it opens both go at once.
#[tokio::test(start_paused = true)]
async fn sequential_counts_after_the_client_list_leave_the_headroom_to_the_click() {
    let l = Limiter::new(10, 500, Duration::from_secs(120));
    let t0 = Instant::now();
    l.acquire(Priority::User, "GET folders (key check)").await.unwrap();
    for _ in 0..3 {
        l.acquire(Priority::Refresh, "GET clients").await.unwrap();
    }
    let mut counted = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        if l.acquire(Priority::Browse, "GET files (count)").await.is_ok() {
            counted += 1;
        }
    }
    assert_eq!(counted, 4, "the counts stop 2 short of the minute's 10");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = Instant::now();
    l.acquire(Priority::Browse, "GET files (click)").await.unwrap();
    l.acquire(Priority::User, "GET file (double-click)").await.unwrap();
    assert_eq!(asked.elapsed(), Duration::ZERO, "both at once");
    assert_eq!(l.granted(), 10);
    assert!(t0.elapsed() < Duration::from_secs(4));
}
