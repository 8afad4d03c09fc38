//! Browsing tier: what listings, the client list, `/by-name`, previews and kept listings
//! cost against the real limits (issues 13, 14 and 11.1). The core over the in-memory
//! remote with a real limiter on paused tokio time; every test asserts the exact API
//! calls spent and, where the limiter is involved, exactly when an answer came.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use intakeq_fs::core::{Browser, Core, CoreError, Kind, OpenMode, Options, Reader, ROOT_INO};
use intakeq_fs::fake::store::{Endpoint, Fault, Store};
use intakeq_fs::limiter::{Limiter, CRAWL_GAP};
use intakeq_fs::remote::memory::MemRemote;
use tokio::time::Instant;

fn opts(dir: &std::path::Path) -> Options {
    Options {
        state_dir: Some(dir.join("listings")),
        ..harness::options(dir, "test-account")
    }
}

/// An account of `n` clients (ids 1001..), client 1001 with 30 scans.
fn account(n: u64) -> Store {
    let s = Store::new();
    s.add_folder("fo1", "Intake Forms");
    for i in 0..n {
        s.add_client(1001 + i, "Client", &format!("Number{i}"));
        s.add_file(1001 + i, "intake.pdf", None, &b"form"[..]);
    }
    for i in 1..=30 {
        s.add_file(1001, &format!("scan-{i:02}.jpg"), None, vec![i as u8; 1000]);
    }
    s
}

struct T {
    store: Store,
    core: Arc<Core<MemRemote>>,
    limiter: Arc<Limiter>,
    dir: tempfile::TempDir,
}

/// A mount of `store` at the real limits (10/min, 500/day, --max-wait 120 s).
fn mount(store: &Store) -> T {
    mount_with(store, tempfile::tempdir().unwrap(), 10, 500, |_| {})
}

fn mount_with(store: &Store, dir: tempfile::TempDir, per_min: u32, per_day: u32, f: impl FnOnce(&mut Options)) -> T {
    let limiter = Arc::new(Limiter::new(per_min, per_day, Duration::from_secs(120)));
    let mut o = opts(dir.path());
    f(&mut o);
    let core = Core::new(MemRemote::with_limiter(store.clone(), limiter.clone()), o).unwrap();
    T {
        store: store.clone(),
        core: Arc::new(core),
        limiter,
        dir,
    }
}

impl T {
    async fn ino(&self, p: &str) -> Result<u64, CoreError> {
        let mut ino = ROOT_INO;
        for part in p.split('/').filter(|s| !s.is_empty()) {
            ino = self.core.lookup(ino, part).await?.ino;
        }
        Ok(ino)
    }

    async fn ls(&self, p: &str) -> Result<Vec<String>, CoreError> {
        let ino = self.ino(p).await?;
        let fh = self.core.opendir(ino).await?;
        let names = self.core.readdir(fh, 2).unwrap().into_iter().map(|e| e.name).collect();
        self.core.releasedir(fh);
        Ok(names)
    }

    async fn cat_as(&self, p: &str, reader: Reader) -> Result<Vec<u8>, CoreError> {
        let ino = self.ino(p).await?;
        let o = self.core.open_for(ino, OpenMode::default(), reader).await?;
        let r = self.core.read(o.fh, 0, 1 << 20).await;
        self.core.release(o.fh);
        r
    }

    fn calls(&self, e: Endpoint) -> u64 {
        self.store.count(e)
    }
}

/// Mount-time check (1 call: folders) and `/clients` listed once (pages of 100).
async fn mounted(t: &T) {
    t.core.check_access().await.unwrap();
    t.ls("/clients").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn opening_a_client_folder_after_the_client_list_ttl_costs_only_its_listing() {
    let t = mount(&account(250));
    mounted(&t).await;
    assert_eq!(t.calls(Endpoint::ListClients), 3, "250 clients: 3 pages");
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    t.store.reset_counts();
    // pcmanfm re-reads /clients, then opens a client folder.
    assert_eq!(t.ls("/clients").await.unwrap().len(), 250);
    assert_eq!(t.ls("/clients/1005").await.unwrap(), vec!["Intake Forms", "intake.pdf"]);
    assert_eq!(
        t.store.total_requests(),
        1,
        "only the client's listing on the click's path"
    );
    assert_eq!(t.calls(Endpoint::ListFiles), 1);
    assert_eq!(
        t.core.refreshes_due(),
        2,
        "client list and folders are refreshed behind"
    );
    assert_eq!(t.core.refresh_due().await, 2);
    assert_eq!(t.calls(Endpoint::ListClients), 3);
    assert_eq!(t.calls(Endpoint::ListFolders), 1);
    assert_eq!(t.core.refreshes_due(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_folder_opens_without_the_client_list_ever_being_fetched() {
    let t = mount(&account(250));
    t.core.check_access().await.unwrap();
    assert_eq!(t.ls("/clients/1200").await.unwrap(), vec!["Intake Forms", "intake.pdf"]);
    assert_eq!(t.calls(Endpoint::ListClients), 0);
    assert_eq!(t.calls(Endpoint::ListFiles), 1);
}

/// A file manager's process (pid 4242) listing client folders: `n` of them from 1002
/// on, all at once (its item counts); each answers when it was listed (since `t0`).
/// The file manager whose counts and clicks the tests play (one process).
const FM: Option<Browser> = Some(Browser {
    process: 4242,
    file_manager: true,
});

fn count_folders(t: &T, n: u64, t0: Instant) -> Vec<tokio::task::JoinHandle<Result<Duration, CoreError>>> {
    (0..n)
        .map(|i| {
            let core = t.core.clone();
            tokio::spawn(async move {
                let clients = core.lookup_by(ROOT_INO, "clients", FM).await?.ino;
                let dir = core.lookup_by(clients, &(1002 + i).to_string(), FM).await?.ino;
                let fh = core.opendir_by(dir, FM).await?;
                core.releasedir(fh);
                Ok::<Duration, CoreError>(t0.elapsed())
            })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_click_after_a_file_managers_item_counts_is_served_at_once_by_the_same_process() {
    let t = mount(&account(40));
    mounted(&t).await; // 2 calls: folders, one page of clients
                       // A listing takes 100 ms to answer, so the counts are under way together, as they
                       // are over a network.
    t.store.push_fault(
        Some(Endpoint::ListFiles),
        Fault::Delay(Duration::from_millis(100)),
        None,
    );
    let t0 = Instant::now();
    let counts = count_folders(&t, 30, t0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The person double-clicks a folder in the same file manager, 1.5 s later.
    let clients = t.core.lookup_by(ROOT_INO, "clients", FM).await.unwrap().ino;
    let dir = t.core.lookup_by(clients, "1040", FM).await.unwrap().ino;
    let fh = t.core.opendir_by(dir, FM).await.unwrap();
    t.core.releasedir(fh);
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(1600),
        "the click was sent at once (and answered 100 ms later)"
    );
    let mut at = Vec::new();
    for c in counts {
        match c.await.unwrap() {
            Ok(d) => at.push(d.as_secs()),
            Err(e) => assert!(matches!(e, CoreError::Again(_)), "{e:?}"),
        }
    }
    let n = |s: u64| at.iter().filter(|d| **d == s).count();
    // 8 of the minute's 10 slots at once (2 went to the mount); the other 24 counts
    // answered at once without a call, none queued for the next minute.
    assert_eq!((n(0), at.len()), (6, 6));
    assert_eq!(t.calls(Endpoint::ListFiles), 7);
    assert_eq!(t.store.total_requests(), 9);
}

/// One count of client `c` by the file manager (lookup and opendir from its process),
/// asked once more at once if refused with EAGAIN, as Thunar does.
async fn count_one(core: Arc<Core<MemRemote>>, c: u64) -> Result<(), CoreError> {
    let clients = core.lookup_by(ROOT_INO, "clients", FM).await?.ino;
    let dir = core.lookup_by(clients, &c.to_string(), FM).await?.ino;
    let fh = match core.opendir_by(dir, FM).await {
        Err(CoreError::Again(_)) => core.opendir_by(dir, FM).await?,
        other => other?,
    };
    core.releasedir(fh);
    Ok(())
}

/// Thunar on a fast link counts the folders it shows two at a time, each pair asked as
/// the previous one ends, and asks again at once for a count refused with EAGAIN (seen
/// in the file-manager bench's log): the first of a pair, and the second ask, overlap
/// nothing. Those are counts too, so they never take the 2 slots kept for a
/// person, and the folder the person opens 3 s later is listed at once (before: the
/// first of each pair went as a click, the minute filled, and the folder waited 56 s).
#[tokio::test(start_paused = true)]
async fn a_file_managers_counts_in_turn_leave_the_person_their_slots() {
    let t = mount(&account(200));
    mounted(&t).await; // 4 calls: folders, 3 pages of clients
                       // A listing answers in 1 ms: a pair's two counts overlap, the pairs do not.
    t.store
        .push_fault(Some(Endpoint::ListFiles), Fault::Delay(Duration::from_millis(1)), None);
    let mut refused = 0;
    for pair in 0..10u64 {
        let a = tokio::spawn(count_one(t.core.clone(), 1001 + 2 * pair));
        tokio::task::yield_now().await;
        let b = tokio::spawn(count_one(t.core.clone(), 1002 + 2 * pair));
        for r in [a.await.unwrap(), b.await.unwrap()] {
            match r {
                Ok(()) => {}
                Err(CoreError::Again(_)) => refused += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    // Counts stop 2 short of the minute: 4 of them after the mount's 4 calls, the rest
    // answered at once without a call (before: the first of each pair went as a click,
    // 15 were listed, the later ones after waiting for the next minutes).
    assert_eq!((t.calls(Endpoint::ListFiles), refused), (4, 16));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t0 = Instant::now();
    let clients = t.core.lookup_by(ROOT_INO, "clients", FM).await.unwrap().ino;
    let dir = t.core.lookup_by(clients, "1100", FM).await.unwrap().ino;
    let fh = t.core.opendir_by(dir, FM).await.unwrap();
    t.core.releasedir(fh);
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(1),
        "the person's folder was listed at once (answered 1 ms later)"
    );
    assert_eq!(t.store.total_requests(), 9);
}

#[tokio::test(start_paused = true)]
async fn find_over_many_clients_fails_fast_once_the_minute_is_spent() {
    let t = mount(&account(200));
    mounted(&t).await; // 4 calls: folders, 3 pages (the third, empty, ends the list)
    let t0 = Instant::now();
    let (mut ok, mut again) = (0, 0);
    for i in 0..200u64 {
        match t.ls(&format!("/clients/{}", 1001 + i)).await {
            Ok(_) => ok += 1,
            Err(CoreError::Again(_)) => again += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    // With the mount's 4 (3 of them the client list's pages, listings too), half the
    // minute's limit of listings is reached after 2 of find's: a crawl from then on,
    // whose listings never take the last 2 slots (kept for a person).
    assert_eq!((ok, again), (4, 196));
    assert_eq!(t0.elapsed(), Duration::ZERO, "nothing waited");
    assert_eq!(t.store.total_requests(), 8);
    assert_eq!(t.limiter.budget().crawl_refusals, 196);
}

#[tokio::test(start_paused = true)]
async fn listings_never_spend_the_reserve_but_reading_does() {
    // 20 a day, 20 % (4) kept for real work.
    let t = mount_with(&account(40), tempfile::tempdir().unwrap(), 1000, 20, |_| {});
    mounted(&t).await; // 2
    let mut listed = 0;
    for i in 0..40u64 {
        if t.ls(&format!("/clients/{}", 1001 + i)).await.is_ok() {
            listed += 1;
        }
    }
    assert_eq!(listed, 14, "16 of 20 for listings");
    let b = t.limiter.budget();
    assert!(b.listings_held_back);
    assert_eq!((b.used_day, b.reserve, b.reserve_refusals), (16, 4, 26));
    // Real work still has its 4.
    assert_eq!(
        t.cat_as("/clients/1001/scan-01.jpg", Reader::User).await.unwrap(),
        vec![1u8; 1000]
    );
    assert_eq!(t.calls(Endpoint::Download), 1);
    assert_eq!(t.store.total_requests(), 17);
}

#[tokio::test(start_paused = true)]
async fn a_stale_listing_is_served_at_once_when_the_minute_is_spent_and_refreshed_behind() {
    let t = mount(&account(40));
    mounted(&t).await;
    t.ls("/clients/1001").await.unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    for i in 0..10u64 {
        // A person's clicks, far enough apart not to look like a crawl.
        tokio::time::sleep(CRAWL_GAP).await;
        t.ls(&format!("/clients/{}", 1010 + i)).await.unwrap();
    }
    t.store.add_file(1001, "new.pdf", None, &b"x"[..]);
    let before = t.store.total_requests();
    let t0 = Instant::now();
    let names = t.ls("/clients/1001").await.unwrap();
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert!(!names.contains(&"new.pdf".to_string()), "the stale listing");
    assert_eq!(t.store.total_requests(), before);
    assert_eq!(t.core.refreshes_due(), 1);
    let refresher = {
        let core = t.core.clone();
        tokio::spawn(async move { core.refresh_due().await })
    };
    assert_eq!(refresher.await.unwrap(), 1);
    assert_eq!(t.store.total_requests(), before + 1);
    assert!(t.ls("/clients/1001").await.unwrap().contains(&"new.pdf".to_string()));
}

#[tokio::test]
async fn a_folder_whose_listing_failed_is_an_error_never_an_empty_folder() {
    let store = account(3);
    let t = mount_with(&store, tempfile::tempdir().unwrap(), 1000, 1000, |_| {});
    mounted(&t).await;
    store.push_fault(
        Some(Endpoint::ListFiles),
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        None,
    );
    let dir = t.ino("/clients/1002").await;
    let err = match dir {
        Ok(ino) => t.core.opendir(ino).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(err, CoreError::Io(_)), "{err:?}");
    store.clear_faults();
    assert_eq!(t.ls("/clients/1002").await.unwrap(), vec!["Intake Forms", "intake.pdf"]);
}

#[tokio::test(start_paused = true)]
async fn listings_survive_a_remount_and_cost_no_call_within_their_ttl() {
    use std::os::unix::fs::MetadataExt;
    let store = account(150);
    let t = mount(&store);
    mounted(&t).await;
    t.ls("/clients/1001").await.unwrap();
    assert_eq!(t.store.total_requests(), 4);
    let dir = t.dir;
    drop(t.core);
    let listings = dir.path().join("listings");
    assert_eq!(std::fs::metadata(&listings).unwrap().mode() & 0o777, 0o700);
    for f in ["clients.json", "folders.json", "files-1001.json"] {
        assert_eq!(
            std::fs::metadata(listings.join(f)).unwrap().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    store.reset_counts();
    let t = mount_with(&store, dir, 10, 500, |_| {});
    assert_eq!(t.ls("/clients").await.unwrap().len(), 150);
    assert_eq!(t.ls("/by-name").await.unwrap().len(), 150);
    assert_eq!(t.ls("/clients/1001").await.unwrap().len(), 32);
    assert_eq!(t.store.total_requests(), 0, "all from the kept listings");
    assert!(t.core.listing_age(1001).unwrap() < Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn kept_listings_that_are_not_private_are_ignored() {
    use std::os::unix::fs::PermissionsExt;
    let store = account(3);
    let t = mount(&store);
    mounted(&t).await;
    let dir = t.dir;
    drop(t.core);
    let f = dir.path().join("listings/clients.json");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    store.reset_counts();
    let t = mount_with(&store, dir, 10, 500, |_| {});
    assert_eq!(t.ls("/clients").await.unwrap().len(), 3);
    assert_eq!(
        t.calls(Endpoint::ListClients),
        1,
        "the world-readable record was not trusted"
    );
}

/// A thumbnailer reading the first 4 KiB of each of client 1001's 30 scans, all at
/// once; each answers when its read was served (since `t0`) or why it failed.
fn thumbnail_all_30(t: &T, t0: Instant) -> Vec<tokio::task::JoinHandle<Result<Duration, CoreError>>> {
    (1..=30)
        .map(|i| {
            let core = t.core.clone();
            tokio::spawn(async move {
                let c = core.lookup(ROOT_INO, "clients").await.unwrap().ino;
                let c = core.lookup(c, "1001").await.unwrap().ino;
                let f = core.lookup(c, &format!("scan-{i:02}.jpg")).await.unwrap().ino;
                let o = core.open_for(f, OpenMode::default(), Reader::Thumbnailer).await?;
                let r = core.read(o.fh, 0, 4096).await;
                core.release(o.fh);
                r.map(|_| t0.elapsed())
            })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_double_click_is_served_at_once_while_30_scans_are_thumbnailed() {
    let t = mount(&account(3));
    mounted(&t).await; // 2
    t.ls("/clients/1001").await.unwrap(); // 3
    let t0 = Instant::now();
    let thumbs = thumbnail_all_30(&t, t0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let data = t.cat_as("/clients/1001/intake.pdf", Reader::User).await.unwrap();
    assert_eq!(data, b"form");
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(1),
        "at once: a slot kept for a person"
    );
    let mut done = Vec::new();
    for th in thumbs {
        match th.await.unwrap() {
            Ok(at) => done.push(at.as_secs()),
            Err(e) => assert!(matches!(e, CoreError::Again(_)), "{e:?}"),
        }
    }
    // Previews never take the last 2 slots of a minute: 5 at once (the mount spent 3),
    // 7 a minute later and 1 more as the click's slot frees, 7 at 120 s; the last 10
    // would wait past --max-wait (120 s) and give up.
    let at = |s: u64| done.iter().filter(|d| **d == s).count();
    assert_eq!((at(0), at(60), at(61), at(120), done.len()), (5, 7, 1, 7, 20));
    assert_eq!(t.calls(Endpoint::Download), 21);
}

#[tokio::test]
async fn with_previews_off_thumbnailers_are_refused_and_the_file_manager_still_copies() {
    let store = account(3);
    let t = mount_with(&store, tempfile::tempdir().unwrap(), 1000, 1000, |o| o.previews = false);
    mounted(&t).await;
    let err = t
        .cat_as("/clients/1001/scan-01.jpg", Reader::Thumbnailer)
        .await
        .unwrap_err();
    assert_eq!(err, CoreError::PreviewsOff);
    assert_eq!(t.calls(Endpoint::Download), 0);
    assert_eq!(
        t.cat_as("/clients/1001/scan-01.jpg", Reader::FileManager)
            .await
            .unwrap(),
        vec![1u8; 1000]
    );
    // Once the bytes are here a thumbnail costs nothing, so it is not refused.
    assert_eq!(
        t.cat_as("/clients/1001/scan-01.jpg", Reader::Thumbnailer)
            .await
            .unwrap(),
        vec![1u8; 1000]
    );
    assert_eq!(t.calls(Endpoint::Download), 1);
}

#[tokio::test]
async fn by_name_holds_one_symlink_per_client_named_like_files() {
    let store = Store::new();
    store.add_client(7, "Jane", "Doe");
    store.add_client(8, "Jane", "Doe");
    store.add_client(9, "A/B", "Slash");
    for i in 0..247 {
        store.add_client(100 + i, "Bulk", &format!("C{i}"));
    }
    let t = mount_with(&store, tempfile::tempdir().unwrap(), 1000, 1000, |_| {});
    t.core.check_access().await.unwrap();
    let names = t.ls("/by-name").await.unwrap();
    assert_eq!(names.len(), 250);
    assert_eq!(&names[..3], ["Jane Doe (7)", "Jane Doe (8)", "A\u{2215}B Slash (9)"]);
    assert_eq!(t.calls(Endpoint::ListClients), 3, "250 clients: 3 pages of 100");
    let link = t
        .core
        .lookup(t.ino("/by-name").await.unwrap(), "Jane Doe (8)")
        .await
        .unwrap();
    assert_eq!(link.kind, Kind::Symlink);
    assert_eq!(t.core.readlink(link.ino).unwrap(), "../clients/8");
    assert_eq!(link.size, "../clients/8".len() as u64);
    assert_eq!(t.ls("/").await.unwrap(), vec!["clients", "by-name"]);
    assert_eq!(t.store.total_requests(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_double_click_on_a_file_whose_thumbnail_is_queued_takes_over_its_download() {
    let t = mount(&account(3));
    mounted(&t).await; // 2
    t.ls("/clients/1001").await.unwrap(); // 3
    let t0 = Instant::now();
    let thumbs = thumbnail_all_30(&t, t0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // scan-20's thumbnail is queued behind 14 others: the user does not wait for them.
    let data = t.cat_as("/clients/1001/scan-20.jpg", Reader::User).await.unwrap();
    assert_eq!(data, vec![20u8; 1000]);
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(1),
        "at once: a slot kept for a person"
    );
    let mut results = Vec::new();
    for th in thumbs {
        results.push(th.await.unwrap());
    }
    assert!(matches!(results[19], Err(CoreError::Again(_))), "{:?}", results[19]);
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 20);
    // 5 previews at once, the user's a second later in a slot kept for a person, 8 at
    // 60-61 s, 7 more at 120 s: scan-20's queued preview was never sent.
    assert_eq!(t.calls(Endpoint::Download), 21);
}

/// The background refresher of `t`'s core, running until told to stop through the sender.
fn start_refresher(t: &T) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let core = t.core.clone();
    (stop, tokio::spawn(async move { core.run_refresh(stopped).await }))
}

#[tokio::test(start_paused = true)]
async fn the_refresher_fetches_what_was_served_stale_and_stops_when_told() {
    let t = mount(&account(250));
    mounted(&t).await;
    let (stop, refresher) = start_refresher(&t);
    tokio::time::sleep(Duration::from_secs(5 * 3600)).await;
    t.store.add_client(5000, "New", "Client");
    t.store.reset_counts();
    assert_eq!(t.ls("/by-name").await.unwrap().len(), 250, "the stale list, at once");
    assert_eq!(t.store.total_requests(), 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(t.calls(Endpoint::ListClients), 3, "refreshed behind, 3 pages");
    assert_eq!(t.core.refreshes_due(), 0);
    assert_eq!(t.ls("/by-name").await.unwrap().last().unwrap(), "New Client (5000)");
    stop.send_replace(true);
    refresher.await.unwrap();
    assert_eq!(t.store.total_requests(), 3);
}

/// An unmount must not wait for background refreshes: stopped while its refresh waits
/// for a slot at the limiter, the refresher returns at once (the remount after it found
/// the spool still locked by the old mount while that waited out the minute).
#[tokio::test(start_paused = true)]
async fn the_refresher_stops_at_once_when_told_while_its_refresh_waits_for_a_slot() {
    let t = mount(&account(250));
    mounted(&t).await;
    let (stop, refresher) = start_refresher(&t);
    tokio::time::sleep(Duration::from_secs(5 * 3600)).await;
    // The minute is spent on ten client folders a person opened.
    for i in 1..=10 {
        tokio::time::sleep(CRAWL_GAP).await;
        t.ls(&format!("/clients/{}", 1001 + i)).await.unwrap();
    }
    t.store.reset_counts();
    // The stale client list serves at once and is due for a refresh, which must wait.
    assert_eq!(t.ls("/by-name").await.unwrap().len(), 250);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(t.store.total_requests(), 0, "the refresh waits for the next slot");
    assert!(
        t.limiter.budget().used_minute >= 8,
        "only the slots kept for a person are left"
    );
    let asked = Instant::now();
    stop.send_replace(true);
    refresher.await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "stopped after {:?}",
        asked.elapsed()
    );
    assert_eq!(t.store.total_requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_file_deleted_through_the_mount_stays_gone_after_a_remount() {
    let store = account(3);
    let t = mount(&store);
    mounted(&t).await;
    t.ls("/clients/1001").await.unwrap();
    let dir = t.ino("/clients/1001").await.unwrap();
    t.core.unlink(dir, "scan-01.jpg").await.unwrap();
    let tmp = t.dir;
    drop(t.core);
    store.reset_counts();
    let t = mount_with(&store, tmp, 10, 500, |_| {});
    let names = t.ls("/clients/1001").await.unwrap();
    assert_eq!(names.len(), 31, "{names:?}");
    assert!(!names.contains(&"scan-01.jpg".to_string()));
    assert_eq!(t.store.total_requests(), 0, "from the kept listing");
}

#[tokio::test(start_paused = true)]
async fn a_copy_into_one_client_lets_another_clients_listing_go_after_at_most_one_upload() {
    let t = mount(&account(3));
    t.core.check_access().await.unwrap();
    t.ls("/clients/1002").await.unwrap();
    let a = t.ino("/clients/1002").await.unwrap();
    // `cp -r` of 20 files into client 1002: look the name up, create, write, close;
    // each close waits for its upload.
    let copy = {
        let core = t.core.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let name = format!("form-{i:02}.pdf");
                assert!(core.lookup(a, &name).await.is_err());
                let (_, o) = core.create(a, &name).await.unwrap();
                core.write(o.fh, 0, b"scanned form").await.unwrap();
                core.flush(o.fh).await.unwrap();
                core.release(o.fh);
            }
        })
    };
    // The copy has spent the minute (8 uploads) and waits for the next slot.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(t.calls(Endpoint::Upload), 8);
    let mark = t.store.lock().requests.len();
    // The user opens another client, never listed.
    assert_eq!(t.ls("/clients/1003").await.unwrap(), vec!["Intake Forms", "intake.pdf"]);
    let before: Vec<Endpoint> = t.store.lock().requests[mark..]
        .iter()
        .take_while(|(_, c)| c.as_deref() != Some("1003"))
        .map(|(e, _)| *e)
        .collect();
    assert_eq!(
        before.iter().filter(|e| **e == Endpoint::Upload).count(),
        1,
        "only the upload queued before the listing went first, not the rest of the copy: {before:?}"
    );
    assert!(
        !before.contains(&Endpoint::ListFolders),
        "the folders the copy's next create fetches (stale after a minute) came after: {before:?}"
    );
    copy.await.unwrap();
    assert_eq!(t.calls(Endpoint::Upload), 20);
}

/// Issue 10 at the real limits: a `cp -r` of 20 files into one client takes two minutes
/// at 10 requests a minute, pausing at the limiter between uploads and outlasting the
/// 60 s listing TTL. It still costs 20 uploads and the one listing that learns their
/// ids once the batch has settled: no confirming listing per pause, no refresh of the
/// client's listing and no folders per minute of copying.
#[tokio::test(start_paused = true)]
async fn a_long_copy_at_the_real_limits_costs_its_uploads_and_one_listing() {
    let t = mount(&account(3));
    t.core.check_access().await.unwrap();
    t.ls("/clients/1002").await.unwrap();
    let a = t.ino("/clients/1002").await.unwrap();
    t.store.reset_counts();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = {
        let core = t.core.clone();
        tokio::spawn(async move { core.run_background(Duration::from_secs(1), stopped).await })
    };
    let started = Instant::now();
    for i in 0..20 {
        let name = format!("form-{i:02}.pdf");
        assert!(t.core.lookup(a, &name).await.is_err());
        let (_, o) = t.core.create(a, &name).await.unwrap();
        t.core
            .write(o.fh, 0, format!("scanned form {i}").as_bytes())
            .await
            .unwrap();
        t.core.flush(o.fh).await.unwrap();
        t.core.release(o.fh);
    }
    assert!(
        started.elapsed() > Duration::from_secs(90),
        "the copy waited for the limiter"
    );
    assert_eq!(t.calls(Endpoint::Upload), 20);
    assert_eq!(t.calls(Endpoint::ListFiles), 0, "no listing while the batch runs");
    assert_eq!(t.calls(Endpoint::ListFolders), 0);
    // The batch settles: one listing learns all 20 ids, 2 s after the last upload.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(t.calls(Endpoint::ListFiles), 1);
    assert_eq!(t.store.total_requests(), 21, "20 uploads + 1 listing");
    stop.send(true).unwrap();
    background.await.unwrap();
    let names = t.ls("/clients/1002").await.unwrap();
    assert_eq!(names.iter().filter(|n| n.starts_with("form-")).count(), 20);
    assert_eq!(t.store.total_requests(), 21, "listing the folder afterwards is free");
}
