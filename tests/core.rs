//! Core tier: the filesystem core driven directly against the in-memory fake remote,
//! asserting both what the core answers and what the fake account then holds, and
//! the exact number of API calls each operation costs.

mod harness;

use std::time::Duration;

use intakeq_fs::core::{Core, CoreError, Kind, OpenMode, Options, ROOT_INO};
use intakeq_fs::fake::store::{Endpoint, Fault, Store};
use intakeq_fs::remote::memory::MemRemote;

struct T {
    store: Store,
    core: Core<MemRemote>,
    _dir: tempfile::TempDir,
}

fn opts(dir: &std::path::Path) -> Options {
    harness::options(dir, "test-account")
}

fn account() -> Store {
    let s = Store::new();
    s.add_client(1001, "Ada", "Lovelace");
    s.add_client(1002, "Alan", "Turing");
    s.add_client(1003, "Empty", "Client");
    s.add_folder("fo1", "Intake Forms");
    s.add_folder("fo2", "Insurance");
    s.add_file(1001, "notes.txt", None, &b"hello notes"[..]);
    s.add_file(1001, "card.png", Some("fo2"), vec![7u8; 5000]);
    s.add_file(1001, "consent.pdf", Some("fo1"), &b"first"[..]);
    s.add_file(1001, "consent.pdf", Some("fo1"), &b"second"[..]);
    s.add_file(1001, "a/b.txt", None, &b"slash"[..]);
    s.add_file(1001, "..", None, &b"dots"[..]);
    s.add_file(1001, "lost.txt", Some("gone"), &b"unlisted folder"[..]);
    s.add_file(1001, "Insurance", None, &b"a file named like a folder"[..]);
    s.add_file(1002, "other.txt", None, &b"other client"[..]);
    s
}

fn setup() -> T {
    setup_with(account(), |_| {})
}

fn setup_with(store: Store, f: impl FnOnce(&mut Options)) -> T {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    f(&mut o);
    let core = Core::new(MemRemote::new(store.clone()), o).unwrap();
    T { store, core, _dir: dir }
}

impl T {
    async fn path(&self, p: &str) -> Result<u64, CoreError> {
        ino_at(&self.core, p).await
    }

    async fn ls(&self, p: &str) -> Vec<String> {
        let ino = self.path(p).await.unwrap();
        let fh = self.core.opendir(ino).await.unwrap();
        let names = self.core.readdir(fh, 0).unwrap().into_iter().map(|e| e.name).collect();
        self.core.releasedir(fh);
        names
    }

    async fn cat(&self, p: &str) -> Result<Vec<u8>, CoreError> {
        let ino = self.path(p).await?;
        let o = self.core.open(ino, OpenMode::default()).await?;
        let mut out = Vec::new();
        loop {
            let chunk = self.core.read(o.fh, out.len() as u64, 65536).await?;
            if chunk.is_empty() {
                break;
            }
            out.extend(chunk);
        }
        self.core.release(o.fh);
        Ok(out)
    }

    async fn put(&self, dir: &str, name: &str, data: &[u8]) -> Result<(), CoreError> {
        let parent = self.path(dir).await?;
        let (_, o) = self.core.create(parent, name).await?;
        self.core.write(o.fh, 0, data).await?;
        let r = self.core.flush(o.fh).await;
        self.core.release(o.fh);
        r
    }

    fn calls(&self) -> u64 {
        self.store.total_requests()
    }

    fn server_names(&self, client: u64) -> Vec<String> {
        self.store.files_of(client).into_iter().map(|f| f.name).collect()
    }
}

/// The inode at path `p` (from the root), looked up one part at a time.
async fn ino_at(core: &Core<MemRemote>, p: &str) -> Result<u64, CoreError> {
    let mut ino = ROOT_INO;
    for part in p.split('/').filter(|s| !s.is_empty()) {
        ino = core.lookup(ino, part).await?.ino;
    }
    Ok(ino)
}

/// The bytes at path `p` through `core` (lookup, open, read, release).
async fn read_through(core: &Core<MemRemote>, p: &str) -> Vec<u8> {
    let ino = ino_at(core, p).await.unwrap();
    let o = core.open(ino, OpenMode::default()).await.unwrap();
    let bytes = core.read(o.fh, 0, 1 << 20).await.unwrap();
    core.release(o.fh);
    bytes
}

/// A core over `store` with its spool in `dir`: the account mounted (again).
fn core_in(store: &Store, dir: &std::path::Path) -> Core<MemRemote> {
    Core::new(MemRemote::new(store.clone()), opts(dir)).unwrap()
}

/// Create `name` for client 1002 and write `data`; close fails under a 503 on
/// `endpoint` (`times` requests); then the process dies: no release, no shutdown.
async fn crash_with_staged_upload(
    store: &Store,
    dir: &std::path::Path,
    name: &str,
    data: &[u8],
    endpoint: Endpoint,
    times: Option<u32>,
) {
    let core = core_in(store, dir);
    let top = ino_at(&core, "clients/1002").await.unwrap();
    let (_, o) = core.create(top, name).await.unwrap();
    core.write(o.fh, 0, data).await.unwrap();
    store.push_fault(
        Some(endpoint),
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        times,
    );
    assert!(core.flush(o.fh).await.is_err());
}

#[tokio::test]
async fn listing_a_client_cold_costs_two_calls_and_warm_costs_none() {
    let t = setup();
    let names = t.ls("/clients/1001").await;
    assert_eq!(t.store.count(Endpoint::ListFiles), 1);
    assert_eq!(t.store.count(Endpoint::ListFolders), 1);
    assert_eq!(t.calls(), 2, "lookup by listing the files, then the folders");
    for n in [
        ".",
        "..",
        "Intake Forms",
        "Insurance",
        "_folder-gone",
        "notes.txt",
        "a\u{2215}b.txt",
        "_..",
        "Insurance (f00000008)",
    ] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    assert_eq!(
        t.ls("/clients/1001/Intake Forms").await,
        [".", "..", "consent (f00000003).pdf", "consent.pdf"],
        "of twins, the newest shows the plain name"
    );
    assert_eq!(t.ls("/clients/1001/_folder-gone").await, [".", "..", "lost.txt"]);
    t.ls("/clients/1001").await;
    assert_eq!(t.calls(), 2, "warm listing makes no call");
}

#[tokio::test]
async fn names_are_stable_across_listings() {
    let t = setup_with(account(), |o| o.metadata_ttl = Duration::ZERO);
    let a = t.ls("/clients/1001/Intake Forms").await;
    let b = t.ls("/clients/1001/Intake Forms").await;
    assert_eq!(a, b);
    // Deleting an unrelated file does not rename the others.
    t.store.delete("f00000001");
    let c = t.ls("/clients/1001/Intake Forms").await;
    assert_eq!(a, c);
}

#[tokio::test]
async fn clients_resolve_without_listing_them_and_unknown_ones_do_not() {
    let t = setup();
    assert!(t.path("/clients/1003").await.is_ok(), "client with no files exists");
    assert_eq!(
        t.store.count(Endpoint::ListClients),
        1,
        "empty listing is confirmed by one search"
    );
    assert_eq!(t.path("/clients/999").await, Err(CoreError::NotFound));
    let before = t.calls();
    assert_eq!(t.path("/clients/abc").await, Err(CoreError::NotFound));
    assert_eq!(t.path("/clients/01001").await, Err(CoreError::NotFound));
    assert_eq!(
        t.path("/clients/999").await,
        Err(CoreError::NotFound),
        "negative answer is cached"
    );
    assert_eq!(t.calls(), before, "no calls for names that cannot be clients");
    let root = t.ls("/clients").await;
    assert_eq!(root, [".", "..", "1001", "1002", "1003"]);
}

#[tokio::test]
async fn unknown_client_answering_404_is_enoent_too() {
    let store = account();
    store.lock().unknown_client_files = intakeq_fs::fake::store::UnknownClientFiles::NotFound;
    let t = setup_with(store, |_| {});
    assert_eq!(t.path("/clients/999").await, Err(CoreError::NotFound));
    assert_eq!(t.store.count(Endpoint::ListClients), 0);
}

#[tokio::test]
async fn probe_names_cost_no_call() {
    let t = setup();
    t.path("/clients/1001").await.unwrap();
    let before = t.calls();
    let folder = t.path("/clients/1001").await.unwrap();
    for n in [
        ".DS_Store",
        "._notes.txt",
        ".hidden",
        "desktop.ini",
        ".git",
        ".Trash-1000",
        "autorun.inf",
    ] {
        assert_eq!(t.core.lookup(folder, n).await.unwrap_err(), CoreError::NotFound);
    }
    assert_eq!(t.calls(), before);
    // ... and desktop metadata is never uploaded.
    assert!(matches!(
        t.core.create(folder, ".DS_Store").await,
        Err(CoreError::NotPermitted(_))
    ));
    assert!(matches!(
        t.core.create(folder, "._notes.txt").await,
        Err(CoreError::NotPermitted(_))
    ));
    assert_eq!(t.store.count(Endpoint::Upload), 0);
}

#[tokio::test]
async fn reading_downloads_once_then_serves_from_cache() {
    let t = setup();
    assert_eq!(t.cat("/clients/1001/notes.txt").await.unwrap(), b"hello notes");
    assert_eq!(t.store.count(Endpoint::Download), 1);
    assert_eq!(t.cat("/clients/1001/notes.txt").await.unwrap(), b"hello notes");
    assert_eq!(t.store.count(Endpoint::Download), 1, "second read is free");
    assert_eq!(
        t.cat("/clients/1001/Insurance/card.png").await.unwrap(),
        vec![7u8; 5000]
    );
}

#[tokio::test]
async fn concurrent_reads_of_one_file_share_one_download() {
    let store = account();
    let big = intakeq_fs::fake::demo::pseudo_random_bytes(1, 3 << 20);
    store.add_file(1002, "big.bin", None, big.clone());
    let t = setup_with(store, |_| {});
    let (a, b, c) = tokio::join!(
        t.cat("/clients/1002/big.bin"),
        t.cat("/clients/1002/big.bin"),
        t.cat("/clients/1002/big.bin")
    );
    assert_eq!(a.unwrap(), big);
    assert_eq!(b.unwrap(), big);
    assert_eq!(c.unwrap(), big);
    assert_eq!(t.store.count(Endpoint::Download), 1);
}

#[tokio::test]
async fn files_larger_than_the_memory_budget_stream_through_disk() {
    let store = account();
    let big = intakeq_fs::fake::demo::pseudo_random_bytes(2, 2 << 20);
    store.add_file(1002, "big.bin", None, big.clone());
    let t = setup_with(store, |o| o.cache_bytes = 1 << 20);
    assert_eq!(t.cat("/clients/1002/big.bin").await.unwrap(), big);
}

#[tokio::test]
async fn empty_files_need_no_download() {
    let store = account();
    store.add_file(1002, "empty.txt", None, Vec::new());
    let t = setup_with(store, |_| {});
    assert_eq!(t.cat("/clients/1002/empty.txt").await.unwrap(), b"");
    assert_eq!(t.store.count(Endpoint::Download), 0);
}

#[tokio::test]
async fn truncated_downloads_are_never_served_as_complete() {
    let t = setup();
    t.store
        .push_fault(Some(Endpoint::Download), Fault::ShortBody { bytes: 3 }, Some(1));
    assert!(matches!(t.cat("/clients/1001/notes.txt").await, Err(CoreError::Io(_))));
    t.store
        .push_fault(Some(Endpoint::Download), Fault::CutBody { bytes: 2 }, Some(1));
    assert!(matches!(t.cat("/clients/1001/notes.txt").await, Err(CoreError::Io(_))));
    assert_eq!(
        t.cat("/clients/1001/notes.txt").await.unwrap(),
        b"hello notes",
        "a later read retries"
    );
}

#[tokio::test]
async fn create_uploads_at_close_and_one_listing_later_learns_the_id() {
    let t = setup();
    t.ls("/clients/1002").await;
    let before = t.calls();
    t.put("/clients/1002", "new.txt", b"fresh bytes").await.unwrap();
    assert_eq!(t.calls() - before, 1, "close returns on the upload's 2xx");
    assert_eq!(t.cat("/clients/1002/new.txt").await.unwrap(), b"fresh bytes");
    assert_eq!(t.calls() - before, 1, "read back from the staged bytes");
    assert_eq!(t.core.confirm_due(true).await, 1);
    assert_eq!(t.calls() - before, 2, "one listing learns the id");
    let f = &t.store.files_named(1002, "new.txt")[0];
    assert_eq!(&f.data[..], b"fresh bytes");
    assert_eq!(f.folder_id, None);
    assert_eq!(f.content_type, "text/plain");
    assert!(t.ls("/clients/1002").await.contains(&"new.txt".to_string()));
    assert_eq!(t.cat("/clients/1002/new.txt").await.unwrap(), b"fresh bytes");
    assert_eq!(t.calls() - before, 2, "own write is visible and readable without calls");
}

#[tokio::test]
async fn empty_files_upload_too() {
    let t = setup();
    t.put("/clients/1002", "empty.txt", b"").await.unwrap();
    assert_eq!(t.store.files_named(1002, "empty.txt").len(), 1);
}

#[tokio::test]
async fn overwrite_uploads_then_deletes_the_old_file() {
    let t = setup();
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    let o = t.core.open(ino, trunc()).await.unwrap();
    t.core.write(o.fh, 0, b"replaced").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    let files = t.store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1, "one file of that name remains");
    assert_eq!(&files[0].data[..], b"replaced");
    assert_eq!(
        t.path("/clients/1001/notes.txt").await.unwrap(),
        ino,
        "same inode after overwrite"
    );
    assert_eq!(t.cat("/clients/1001/notes.txt").await.unwrap(), b"replaced");
}

#[tokio::test]
async fn appending_keeps_the_old_bytes() {
    let t = setup();
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    let o = t
        .core
        .open(
            ino,
            OpenMode {
                write: true,
                truncate: false,
            },
        )
        .await
        .unwrap();
    t.core.write(o.fh, 11, b" + more").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    assert_eq!(
        &t.store.files_named(1001, "notes.txt")[0].data[..],
        b"hello notes + more"
    );
}

#[tokio::test]
async fn a_failed_overwrite_keeps_the_old_file_and_the_new_data() {
    let t = setup();
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    let o = t.core.open(ino, trunc()).await.unwrap();
    t.core.write(o.fh, 0, b"new version").await.unwrap();
    t.store.push_fault(
        Some(Endpoint::Upload),
        Fault::Status {
            status: 400,
            retry_after: None,
        },
        Some(1),
    );
    assert!(t.core.flush(o.fh).await.is_err());
    assert_eq!(
        &t.store.files_named(1001, "notes.txt")[0].data[..],
        b"hello notes",
        "old file untouched"
    );
    assert_eq!(t.core.pending_uploads(), 1, "new data still staged");
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    let files = t.store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1);
    assert_eq!(&files[0].data[..], b"new version");
}

#[tokio::test]
async fn an_upload_whose_answer_was_lost_is_found_not_repeated() {
    let t = setup();
    t.store
        .push_fault(Some(Endpoint::Upload), Fault::DropAfterEffect, Some(1));
    t.put("/clients/1002", "x.txt", b"once").await.unwrap();
    assert_eq!(t.store.files_named(1002, "x.txt").len(), 1, "stored exactly once");
    assert_eq!(t.store.count(Endpoint::Upload), 1);
}

#[tokio::test]
async fn writing_into_a_folder_is_refused_and_nothing_is_uploaded() {
    let t = setup();
    let folder = t.path("/clients/1001/Intake Forms").await.unwrap();
    assert!(matches!(
        t.core.create(folder, "x.pdf").await,
        Err(CoreError::NotPermitted(_))
    ));
    let f = t.path("/clients/1001/Intake Forms/consent.pdf").await.unwrap();
    assert!(matches!(
        t.core
            .open(
                f,
                OpenMode {
                    write: true,
                    truncate: true
                }
            )
            .await,
        Err(CoreError::NotPermitted(_))
    ));
    assert_eq!(t.store.count(Endpoint::Upload), 0);
}

#[tokio::test]
async fn unlink_deletes_with_one_call_and_the_entry_goes_at_once() {
    let t = setup();
    let dir = t.path("/clients/1001/Intake Forms").await.unwrap();
    let before = t.calls();
    t.core.unlink(dir, "consent.pdf").await.unwrap();
    assert_eq!(t.calls() - before, 1);
    assert!(
        t.store.file("f00000004").is_none(),
        "the file shown under the name goes"
    );
    assert!(t.store.file("f00000003").is_some());
    // Removing one path never renames another: the surviving twin keeps its name for
    // the life of the mount.
    assert_eq!(
        t.ls("/clients/1001/Intake Forms").await,
        [".", "..", "consent (f00000003).pdf"]
    );
    assert_eq!(
        t.cat("/clients/1001/Intake Forms/consent (f00000003).pdf")
            .await
            .unwrap(),
        b"first"
    );
}

#[tokio::test]
async fn rename_within_a_client_moves_the_bytes_and_keeps_one_copy() {
    let t = setup();
    let top = t.path("/clients/1001").await.unwrap();
    t.cat("/clients/1001/notes.txt").await.unwrap();
    let before = t.store.count(Endpoint::Download);
    t.core
        .rename(top, "notes.txt", top, "renamed.txt", false)
        .await
        .unwrap();
    assert_eq!(t.store.count(Endpoint::Download), before, "cached bytes are reused");
    assert!(t.store.files_named(1001, "notes.txt").is_empty());
    assert_eq!(&t.store.files_named(1001, "renamed.txt")[0].data[..], b"hello notes");
    assert_eq!(t.cat("/clients/1001/renamed.txt").await.unwrap(), b"hello notes");
}

#[tokio::test]
async fn rename_over_an_existing_file_replaces_it() {
    let t = setup();
    let top = t.path("/clients/1001").await.unwrap();
    t.put("/clients/1001", ".notes.txt.swp", b"editor save").await.unwrap();
    t.core
        .rename(top, ".notes.txt.swp", top, "notes.txt", false)
        .await
        .unwrap();
    let names = t.server_names(1001);
    assert_eq!(names.iter().filter(|n| *n == "notes.txt").count(), 1);
    assert!(!names.contains(&".notes.txt.swp".to_string()));
    assert_eq!(t.cat("/clients/1001/notes.txt").await.unwrap(), b"editor save");
    assert_eq!(
        t.core.rename(top, "renamed-missing", top, "x", true).await.unwrap_err(),
        CoreError::NotFound
    );
}

#[tokio::test]
async fn rename_elsewhere_is_cross_device() {
    let t = setup();
    let top = t.path("/clients/1001").await.unwrap();
    let folder = t.path("/clients/1001/Insurance").await.unwrap();
    let other = t.path("/clients/1002").await.unwrap();
    assert_eq!(
        t.core.rename(top, "notes.txt", folder, "n.txt", false).await,
        Err(CoreError::CrossDevice)
    );
    assert_eq!(
        t.core.rename(top, "notes.txt", other, "n.txt", false).await,
        Err(CoreError::CrossDevice)
    );
    assert_eq!(t.store.count(Endpoint::Upload), 0);
}

#[tokio::test]
async fn truncate_without_an_open_handle_uploads_the_shorter_file() {
    let t = setup();
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    let a = t.core.setattr(ino, None, Some(5)).await.unwrap();
    assert_eq!(a.size, 5);
    assert_eq!(&t.store.files_named(1001, "notes.txt")[0].data[..], b"hello");
    let a = t.core.setattr(ino, None, None).await.unwrap();
    assert_eq!(a.kind, Kind::File);
}

#[tokio::test]
async fn read_only_refuses_every_change() {
    let t = setup_with(account(), |o| o.read_only = true);
    let top = t.path("/clients/1001").await.unwrap();
    assert_eq!(t.core.create(top, "x").await.unwrap_err(), CoreError::ReadOnly);
    assert_eq!(t.core.unlink(top, "notes.txt").await.unwrap_err(), CoreError::ReadOnly);
    assert_eq!(
        t.core.rename(top, "notes.txt", top, "y", false).await.unwrap_err(),
        CoreError::ReadOnly
    );
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    assert_eq!(
        t.core
            .open(
                ino,
                OpenMode {
                    write: true,
                    truncate: true
                }
            )
            .await
            .unwrap_err(),
        CoreError::ReadOnly
    );
    assert_eq!(t.cat("/clients/1001/notes.txt").await.unwrap(), b"hello notes");
    assert_eq!(t.store.count(Endpoint::Upload) + t.store.count(Endpoint::Delete), 0);
}

#[tokio::test]
async fn a_staged_upload_survives_a_crash_and_lands_on_the_next_mount() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    crash_with_staged_upload(
        &store,
        dir.path(),
        "kept.txt",
        b"must not be lost",
        Endpoint::Upload,
        None,
    )
    .await;
    store.clear_faults();
    assert!(store.files_named(1002, "kept.txt").is_empty());
    let core = core_in(&store, dir.path());
    assert_eq!(core.resume_pending().await, 1);
    assert_eq!(&store.files_named(1002, "kept.txt")[0].data[..], b"must not be lost");
    assert_eq!(core.resume_pending().await, 0, "the spool is empty afterwards");
    assert_eq!(read_through(&core, "clients/1002/kept.txt").await, b"must not be lost");
}

#[tokio::test]
async fn a_resumed_upload_that_fails_again_is_retried_by_the_background_loop_not_left_for_the_next_mount() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    crash_with_staged_upload(
        &store,
        dir.path(),
        "later.txt",
        b"still mine",
        Endpoint::Upload,
        Some(2),
    )
    .await;
    // A clear refusal this time (a 503 may have landed, and counts toward the bound).
    store.clear_faults();
    store.push_fault(
        Some(Endpoint::Upload),
        Fault::Status {
            status: 400,
            retry_after: None,
        },
        None,
    );
    let core = core_in(&store, dir.path());
    assert_eq!(core.resume_pending().await, 0, "the server still refuses");
    assert_eq!(core.pending_uploads(), 1, "a failed close of this run now");
    store.clear_faults();
    store.reset_counts();
    assert_eq!(core.retry_failed_uploads().await, 1);
    assert_eq!(&store.files_named(1002, "later.txt")[0].data[..], b"still mine");
    assert_eq!(store.files_named(1002, "later.txt").len(), 1);
    assert_eq!(store.count(Endpoint::Upload), 1);
    assert_eq!(core.pending_uploads(), 0);
    assert_eq!(core.resume_pending().await, 0, "nothing left in the spool");
    assert_eq!(read_through(&core, "clients/1002/later.txt").await, b"still mine");
}

#[tokio::test]
async fn a_resumed_upload_that_had_landed_is_not_stored_twice() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    {
        // The upload is accepted; the process dies before a listing confirms it.
        let core = core_in(&store, dir.path());
        let top = ino_at(&core, "clients/1002").await.unwrap();
        let (_, o) = core.create(top, "once.txt").await.unwrap();
        core.write(o.fh, 0, b"exactly once").await.unwrap();
        core.flush(o.fh).await.unwrap();
    }
    store.reset_counts();
    let core = core_in(&store, dir.path());
    assert_eq!(core.resume_pending().await, 1);
    assert_eq!(store.files_named(1002, "once.txt").len(), 1);
    assert_eq!(store.count(Endpoint::Upload), 0, "found, not sent again");
    assert_eq!(core.resume_pending().await, 0, "and its journal entry is gone");
    assert_eq!(read_through(&core, "clients/1002/once.txt").await, b"exactly once");
}

/// What a version before attempt records journaled for `name` in client 1002 (bytes
/// `data`, replacing `replaces`), then died.
async fn older_journal(dir: &std::path::Path, name: &str, data: &[u8], replaces: Vec<String>) {
    use intakeq_fs::core::spool::{Journal, Spool};
    let spool = Spool::open(&dir.join("spool")).unwrap();
    let sf = spool.create().unwrap();
    std::io::Write::write_all(&mut &sf.file, data).unwrap();
    let mut j = Journal::new("test-account", 1002, name, replaces, data.len() as u64);
    j.attempts = None;
    spool.commit(&sf.file, &sf.path, &j).await.unwrap();
}

#[tokio::test]
async fn an_older_journal_without_a_record_adopts_its_exact_copy_and_touches_no_other_file() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    let old = store.add_file(1002, "plan.txt", None, &b"old plan"[..]);
    // The upload had landed before the crash; a file of the same name and size with
    // other bytes is someone else's and must stay.
    let landed = store.add_file(1002, "plan.txt", None, &b"new plan"[..]);
    let stranger = store.add_file(1002, "plan.txt", None, &b"odd plan"[..]);
    older_journal(dir.path(), "plan.txt", b"new plan", vec![old.clone()]).await;
    store.reset_counts();
    let core = core_in(&store, dir.path());
    assert_eq!(core.resume_pending().await, 1);
    let ids: Vec<String> = store.files_named(1002, "plan.txt").into_iter().map(|f| f.id).collect();
    assert_eq!(ids, vec![landed, stranger], "the replaced file went, nothing else");
    assert_eq!(store.count(Endpoint::Upload), 0, "adopted, not sent again");
    assert_eq!(store.count(Endpoint::Delete), 1);
    assert_eq!(core.resume_pending().await, 0, "its journal entry is gone");
}

#[tokio::test]
async fn an_older_journal_without_a_landed_copy_is_uploaded_once_and_leaves_a_same_size_file() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    let stranger = store.add_file(1002, "plan.txt", None, &b"odd plan"[..]);
    older_journal(dir.path(), "plan.txt", b"new plan", Vec::new()).await;
    store.reset_counts();
    let core = core_in(&store, dir.path());
    assert_eq!(core.resume_pending().await, 1);
    let files = store.files_named(1002, "plan.txt");
    assert_eq!(files.len(), 2, "the same-size file is not taken for a leftover");
    assert_eq!(files[0].id, stranger);
    assert_eq!(&files[1].data[..], b"new plan");
    assert_eq!(store.count(Endpoint::Upload), 1);
    assert_eq!(store.count(Endpoint::Delete), 0);
}

/// A remount after a crash that followed an accepted upload: while the upload resumes
/// (its first listing is slow), a lookup of the file finds it. The resumed upload is
/// not one of the mount's own changes in the listing kept from before the crash, so
/// that listing is not served for it (before: ENOENT until the resume was done).
#[tokio::test]
async fn a_file_whose_upload_resumes_at_mount_is_found_meanwhile() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    // Listings kept on disk, as a mount keeps them by default.
    let kept = |dir: &std::path::Path| {
        let mut o = opts(dir);
        o.state_dir = Some(dir.join("state"));
        Core::new(MemRemote::new(store.clone()), o).unwrap()
    };
    {
        let core = kept(dir.path());
        let top = ino_at(&core, "clients/1002").await.unwrap();
        let (_, o) = core.create(top, "resumed.txt").await.unwrap();
        core.write(o.fh, 0, b"accepted, then the crash").await.unwrap();
        core.flush(o.fh).await.unwrap();
    }
    let core = std::sync::Arc::new(kept(dir.path()));
    store.push_fault(
        Some(Endpoint::ListFiles),
        Fault::Delay(std::time::Duration::from_millis(300)),
        Some(1),
    );
    let resume = tokio::spawn({
        let core = core.clone();
        async move { core.resume_pending().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        read_through(&core, "clients/1002/resumed.txt").await,
        b"accepted, then the crash"
    );
    assert_eq!(resume.await.unwrap(), 1);
    assert_eq!(store.files_named(1002, "resumed.txt").len(), 1);
}

/// While an earlier run's journaled upload is being sent again, the client's listing is
/// not held back as for a batch of this mount's own (whose files the mount shows): a file
/// added on the server meanwhile is found once the listing is due.
#[tokio::test]
async fn a_resumed_upload_under_way_does_not_hold_its_clients_listing_back() {
    use intakeq_fs::core::spool::{Attempts, Journal, Spool};
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    {
        // A deferred close's journal: nothing sent yet, so nothing to look for first.
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let sf = spool.create().unwrap();
        std::io::Write::write_all(&mut &sf.file, b"resumed bytes").unwrap();
        let mut j = Journal::new("test-account", 1002, "resumed.txt", Vec::new(), 13);
        j.attempts = Some(Attempts::default());
        spool.commit(&sf.file, &sf.path, &j).await.unwrap();
    }
    let core = {
        let mut o = opts(dir.path());
        o.metadata_ttl = std::time::Duration::ZERO;
        std::sync::Arc::new(Core::new(MemRemote::new(store.clone()), o).unwrap())
    };
    ino_at(&core, "clients/1002/other.txt").await.unwrap();
    store.add_file(1002, "web.txt", None, &b"added in the web app"[..]);
    store.push_fault(
        Some(Endpoint::Upload),
        Fault::Delay(std::time::Duration::from_millis(300)),
        Some(1),
    );
    let resume = tokio::spawn({
        let core = core.clone();
        async move { core.resume_pending().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        read_through(&core, "clients/1002/web.txt").await,
        b"added in the web app"
    );
    assert_eq!(resume.await.unwrap(), 1);
}

/// A temp file written again while its rename's upload is under way (opened by its old
/// name meanwhile): the rename lands the copy, and the file carries on under the new name;
/// its later upload replaces that copy, so the server ends with one file of the last bytes.
#[tokio::test]
async fn a_temp_file_written_while_its_rename_uploads_carries_on_under_the_new_name() {
    let t = std::sync::Arc::new(setup());
    let top = t.path("/clients/1001").await.unwrap();
    let (_, o) = t.core.create(top, "sedX1b2C3").await.unwrap();
    t.core.write(o.fh, 0, b"first").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    assert_eq!(t.store.count(Endpoint::Upload), 0, "a temp file waits for its rename");
    t.store.push_fault(
        Some(Endpoint::Upload),
        Fault::Delay(std::time::Duration::from_millis(300)),
        Some(1),
    );
    let rename = tokio::spawn({
        let t = t.clone();
        async move { t.core.rename(top, "sedX1b2C3", top, "saved.txt", false).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let ino = t.path("/clients/1001/sedX1b2C3").await.unwrap();
    let o = t
        .core
        .open(
            ino,
            OpenMode {
                write: true,
                truncate: false,
            },
        )
        .await
        .unwrap();
    t.core.write(o.fh, 5, b" and more").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    rename.await.unwrap().unwrap();
    assert_eq!(t.cat("/clients/1001/saved.txt").await.unwrap(), b"first and more");
    t.core.upload_due(true).await;
    t.core.confirm_due(true).await;
    let files = t.store.files_named(1001, "saved.txt");
    assert_eq!(files.len(), 1, "the copy was replaced");
    assert_eq!(&files[0].data[..], b"first and more");
    assert!(t.store.files_named(1001, "sedX1b2C3").is_empty());
}

#[tokio::test]
async fn mkdir_like_operations_are_not_in_the_core_and_dirs_cannot_be_unlinked() {
    let t = setup();
    let top = t.path("/clients/1001").await.unwrap();
    assert_eq!(t.core.unlink(top, "Insurance").await.unwrap_err(), CoreError::IsDir);
    assert!(matches!(
        t.core.rename(top, "Insurance", top, "X", false).await,
        Err(CoreError::NotPermitted(_))
    ));
}

#[tokio::test]
async fn an_upload_lost_before_it_landed_is_sent_again_once() {
    let t = setup();
    t.store.push_fault(Some(Endpoint::Upload), Fault::Drop, Some(1));
    t.put("/clients/1002", "y.txt", b"twice sent, once stored")
        .await
        .unwrap();
    assert_eq!(t.store.files_named(1002, "y.txt").len(), 1);
    assert_eq!(
        t.store.count(Endpoint::Upload),
        2,
        "retried only after the listing showed it missing"
    );
    t.store.push_fault(Some(Endpoint::Upload), Fault::Drop, Some(2));
    assert!(
        t.put("/clients/1002", "z.txt", b"x").await.is_err(),
        "never more than two attempts"
    );
    assert!(t.store.files_named(1002, "z.txt").is_empty());
}

#[tokio::test]
async fn a_file_deleted_elsewhere_reads_as_enoent_and_leaves_the_listing() {
    let t = setup();
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    t.store.delete("f00000001");
    let o = t.core.open(ino, OpenMode::default()).await.unwrap();
    assert_eq!(t.core.read(o.fh, 0, 10).await.unwrap_err(), CoreError::NotFound);
    t.core.release(o.fh);
    assert!(!t.ls("/clients/1001").await.contains(&"notes.txt".to_string()));
}

#[tokio::test]
async fn staged_uploads_of_another_account_are_left_alone() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    crash_with_staged_upload(&store, dir.path(), "a.txt", b"account one", Endpoint::Upload, None).await;
    store.clear_faults();
    let mut other = opts(dir.path());
    other.account = "another-account".into();
    let core = Core::new(MemRemote::new(store.clone()), other).unwrap();
    assert_eq!(core.resume_pending().await, 0);
    assert!(store.files_named(1002, "a.txt").is_empty());
    let core = core_in(&store, dir.path());
    assert_eq!(core.resume_pending().await, 1);
}

#[tokio::test]
async fn concurrent_listings_of_one_client_share_one_call() {
    let t = setup();
    let (a, b, c) = tokio::join!(
        t.ls("/clients/1001"),
        t.ls("/clients/1001"),
        t.ls("/clients/1001/Insurance")
    );
    assert_eq!(a, b);
    assert!(c.contains(&"card.png".to_string()));
    assert_eq!(t.store.count(Endpoint::ListFiles), 1);
    assert_eq!(t.store.count(Endpoint::ListFolders), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_max_wait_fails_with_again_instead_of_hanging() {
    use intakeq_fs::limiter::Limiter;
    use std::sync::Arc;
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    // Two requests a minute, and no caller may wait more than 10 s.
    let limiter = Arc::new(Limiter::new(2, 500, Duration::from_secs(10)));
    let core = Core::new(MemRemote::with_limiter(store.clone(), limiter), opts(dir.path())).unwrap();
    let c = ino_at(&core, "clients/1001").await.unwrap(); // 1 call
    core.opendir(c).await.unwrap(); // folders: 2nd call
    let t0 = tokio::time::Instant::now();
    let err = ino_at(&core, "clients/1002").await.unwrap_err();
    assert!(matches!(err, CoreError::Again(_)), "{err:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "failed at once, did not sleep 60 s"
    );
    assert_eq!(store.total_requests(), 2);
}

#[tokio::test]
async fn a_reader_that_gives_up_does_not_wedge_the_download_for_others() {
    let t = setup();
    t.path("/clients/1001/notes.txt").await.unwrap();
    t.store.push_fault(
        Some(Endpoint::Download),
        Fault::Delay(Duration::from_millis(300)),
        Some(1),
    );
    // The first reader is abandoned while the download is still starting (as the FUSE
    // adapter does for a killed caller).
    let gave_up = tokio::time::timeout(Duration::from_millis(50), t.cat("/clients/1001/notes.txt")).await;
    assert!(gave_up.is_err());
    let data = tokio::time::timeout(Duration::from_secs(5), t.cat("/clients/1001/notes.txt")).await;
    assert_eq!(data.expect("second reader was not wedged").unwrap(), b"hello notes");
    assert_eq!(t.store.count(Endpoint::Download), 1, "and it shared the first download");
}

fn status(status: u16) -> Fault {
    Fault::Status {
        status,
        retry_after: None,
    }
}

#[tokio::test]
async fn a_background_retry_finds_an_upload_that_landed_unconfirmed() {
    let t = setup();
    let dir = t.path("/clients/1002").await.unwrap();
    let (_, o) = t.core.create(dir, "r.txt").await.unwrap();
    t.core.write(o.fh, 0, b"landed").await.unwrap();
    // The upload lands but its answer is lost; the listing that would tell fails.
    t.store
        .push_fault(Some(Endpoint::Upload), Fault::DropAfterEffect, Some(1));
    t.store.push_fault(Some(Endpoint::ListFiles), status(500), Some(1));
    assert!(t.core.flush(o.fh).await.is_err());
    t.core.release(o.fh);
    assert_eq!(t.core.pending_uploads(), 1);
    assert_eq!(t.core.retry_failed_uploads().await, 1);
    assert_eq!(t.store.files_named(1002, "r.txt").len(), 1, "stored exactly once");
    assert_eq!(
        t.store.count(Endpoint::Upload),
        1,
        "found by the listing, not sent again"
    );
    assert_eq!(t.core.pending_uploads(), 0);
}

#[tokio::test]
async fn an_unlinked_file_whose_close_failed_is_never_retried() {
    let t = setup();
    let dir = t.path("/clients/1002").await.unwrap();
    let (_, o) = t.core.create(dir, "r.txt").await.unwrap();
    t.core.write(o.fh, 0, b"unwanted").await.unwrap();
    t.store.push_fault(Some(Endpoint::Upload), status(400), Some(1));
    assert!(t.core.flush(o.fh).await.is_err());
    t.core.release(o.fh);
    t.core.unlink(dir, "r.txt").await.unwrap();
    assert_eq!(t.core.retry_failed_uploads().await, 0);
    assert_eq!(t.core.resume_pending().await, 0);
    assert!(t.store.files_named(1002, "r.txt").is_empty());
    assert_eq!(t.store.count(Endpoint::Upload), 1);
}

#[tokio::test]
async fn an_unlink_during_a_background_retry_deletes_what_the_retry_landed() {
    let t = setup();
    let dir = t.path("/clients/1002").await.unwrap();
    let (_, o) = t.core.create(dir, "r.txt").await.unwrap();
    t.core.write(o.fh, 0, b"racing").await.unwrap();
    t.store.push_fault(Some(Endpoint::Upload), status(400), Some(1));
    assert!(t.core.flush(o.fh).await.is_err());
    t.core.release(o.fh);
    // The retry's upload is on the wire when `rm` comes.
    t.store.push_fault(
        Some(Endpoint::Upload),
        Fault::Delay(Duration::from_millis(200)),
        Some(1),
    );
    let (_, unlinked) = tokio::join!(t.core.retry_failed_uploads(), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.core.unlink(dir, "r.txt").await
    });
    unlinked.unwrap();
    assert!(
        t.store.files_named(1002, "r.txt").is_empty(),
        "the unlinked file stays gone"
    );
    assert_eq!(t.core.lookup(dir, "r.txt").await.unwrap_err(), CoreError::NotFound);
    assert_eq!(t.core.pending_uploads(), 0);
    assert_eq!(t.core.resume_pending().await, 0);
    assert!(t.store.files_named(1002, "r.txt").is_empty());
}

#[tokio::test]
async fn a_replaced_file_whose_delete_failed_is_hidden_then_deleted() {
    let t = setup();
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    let o = t.core.open(ino, trunc()).await.unwrap();
    t.core.write(o.fh, 0, b"new bytes").await.unwrap();
    t.store.push_fault(
        Some(Endpoint::Delete),
        Fault::Status {
            status: 400,
            retry_after: None,
        },
        Some(1),
    );
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    assert_eq!(
        t.store.files_named(1001, "notes.txt").len(),
        2,
        "both versions are on the server"
    );
    let names = t.ls("/clients/1001").await;
    assert_eq!(
        names.iter().filter(|n| n.starts_with("notes")).count(),
        1,
        "only the new one shows: {names:?}"
    );
    assert_eq!(t.cat("/clients/1001/notes.txt").await.unwrap(), b"new bytes");
    assert_eq!(t.core.owed_deletes().len(), 1);
    t.core.retry_failed_uploads().await;
    assert!(t.core.owed_deletes().is_empty());
    let files = t.store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1);
    assert_eq!(&files[0].data[..], b"new bytes");
}

#[tokio::test]
async fn a_delete_still_owed_at_a_crash_is_done_by_the_next_mount() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    {
        let core = core_in(&store, dir.path());
        let ino = ino_at(&core, "clients/1001/notes.txt").await.unwrap();
        let o = core.open(ino, trunc()).await.unwrap();
        core.write(o.fh, 0, b"v2").await.unwrap();
        store.push_fault(
            Some(Endpoint::Delete),
            Fault::Status {
                status: 403,
                retry_after: None,
            },
            Some(1),
        );
        core.flush(o.fh).await.unwrap();
        core.release(o.fh);
        assert_eq!(store.files_named(1001, "notes.txt").len(), 2);
        // The process dies before the background retry.
    }
    let core = core_in(&store, dir.path());
    core.resume_pending().await;
    let files = store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1, "the replaced file was deleted at the next mount");
    assert_eq!(&files[0].data[..], b"v2");
    assert!(core.owed_deletes().is_empty());
}

/// The upload protocol drops the journal entry only after the replaced file is dealt
/// with: a crash between "upload confirmed" and "old file deleted" is finished by the
/// next mount, which adopts the landed copy instead of uploading again.
#[tokio::test]
async fn a_crash_between_the_confirmed_upload_and_the_delete_leaves_one_file() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    {
        let core = core_in(&store, dir.path());
        let ino = ino_at(&core, "clients/1001/notes.txt").await.unwrap();
        let o = core.open(ino, trunc()).await.unwrap();
        core.write(o.fh, 0, b"new bytes").await.unwrap();
        // The DELETE of the replaced file never answers; the process dies meanwhile.
        store.push_fault(Some(Endpoint::Delete), Fault::Delay(Duration::from_secs(3600)), Some(1));
        let flushed = tokio::time::timeout(Duration::from_millis(500), core.flush(o.fh)).await;
        assert!(flushed.is_err(), "still waiting for the delete when the crash comes");
        assert_eq!(
            store.files_named(1001, "notes.txt").len(),
            2,
            "new copy landed, old not deleted"
        );
        assert_eq!(store.count(Endpoint::Upload), 1);
    }
    store.clear_faults();
    store.reset_counts();
    let core = core_in(&store, dir.path());
    assert_eq!(core.resume_pending().await, 1);
    let left = store.files_named(1001, "notes.txt");
    assert_eq!(left.len(), 1, "exactly one file remains under the name");
    assert_eq!(&left[0].data[..], b"new bytes");
    assert_eq!(
        store.count(Endpoint::Upload),
        0,
        "the landed copy is adopted, not sent again"
    );
    assert_eq!(store.count(Endpoint::Delete), 1);
    assert_eq!(core.resume_pending().await, 0, "the spool is empty afterwards");
}

/// Unmount stops the background loop between steps: a retry under way is finished
/// (its upload lands), never dropped half-way.
#[tokio::test(start_paused = true)]
async fn a_retry_under_way_when_the_mount_stops_is_finished_not_dropped() {
    let t = setup();
    t.store.push_fault(
        Some(Endpoint::Upload),
        Fault::Status {
            status: 400,
            retry_after: None,
        },
        Some(1),
    );
    assert!(t.put("/clients/1002", "late.txt", b"finish me").await.is_err());
    assert_eq!(t.core.pending_uploads(), 1);
    t.store
        .push_fault(Some(Endpoint::Upload), Fault::Delay(Duration::from_secs(5)), Some(1));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopper = async {
        while t.store.count(Endpoint::Upload) < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.send_replace(true);
    };
    tokio::join!(t.core.run_background(Duration::from_secs(1), stopped), stopper);
    assert_eq!(&t.store.files_named(1002, "late.txt")[0].data[..], b"finish me");
    assert_eq!(t.core.pending_uploads(), 0);
    assert_eq!(t.core.uploads_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_background_loop_stops_at_once() {
    let t = setup();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = tokio::time::Instant::now();
    let stopper = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.send_replace(true);
    };
    tokio::join!(t.core.run_background(Duration::from_secs(3600), stopped), stopper);
    assert!(started.elapsed() < Duration::from_secs(3), "not a whole interval");
}

/// Staged bytes of a file that was open when the process died have no journal entry:
/// never uploaded, kept for a week at mount, then removed.
#[tokio::test]
async fn orphaned_staged_bytes_are_kept_for_a_while_then_removed_never_uploaded() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    {
        let core = core_in(&store, dir.path());
        let top = ino_at(&core, "clients/1002").await.unwrap();
        let (_, o) = core.create(top, "open-when-killed.txt").await.unwrap();
        core.write(o.fh, 0, b"half written").await.unwrap();
        // kill -9: no flush, no release.
    }
    let data: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    assert_eq!(data.len(), 1);
    let old = spool.join("1-1-1.data");
    std::fs::write(&old, b"from long ago").unwrap();
    let long_ago = std::time::SystemTime::now() - intakeq_fs::core::ORPHAN_KEEP - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let core = core_in(&store, dir.path());
    assert!(data[0].exists(), "a young orphan is kept for rescue");
    assert!(!old.exists(), "an orphan older than ORPHAN_KEEP is removed");
    assert_eq!(core.resume_pending().await, 0);
    assert_eq!(store.count(Endpoint::Upload), 0, "orphans are never uploaded");
}

#[tokio::test]
async fn names_the_upload_cannot_carry_are_refused_before_anything_is_staged() {
    let t = setup();
    let top = t.path("/clients/1002").await.unwrap();
    let calls = t.calls();
    for bad in [
        "new\nline.txt",
        "Icon\r",
        "back\\slash.txt",
        " leading.txt",
        "trailing.txt ",
    ] {
        assert!(
            matches!(t.core.create(top, bad).await, Err(CoreError::Invalid(_))),
            "{bad:?}"
        );
        assert!(
            matches!(
                t.core.rename(top, "other.txt", top, bad, false).await,
                Err(CoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(t.calls(), calls, "refused without a call");
    assert_eq!(t.server_names(1002), ["other.txt"]);
    let staged = std::fs::read_dir(t._dir.path().join("spool")).unwrap().count();
    assert_eq!(staged, 0, "nothing staged");
    // A scratch name never leaves the mount, so it may hold anything.
    assert!(t.core.create(top, "#new\nline#").await.is_ok());
}

/// A 2xx is not enough: the new file must show in the listing (new id, same size),
/// else close fails and the bytes stay staged.
#[tokio::test]
async fn an_upload_accepted_but_never_listed_is_reported_and_sent_again() {
    let t = setup();
    t.store.push_fault(Some(Endpoint::Upload), Fault::Discard, Some(1));
    t.put("/clients/1002", "vanished.txt", b"keep me").await.unwrap();
    assert!(t.store.files_named(1002, "vanished.txt").is_empty());
    assert_eq!(t.core.confirm_due(true).await, 1, "the confirming listing");
    assert_eq!(t.core.pending_uploads(), 1, "not dropped: due again");
    assert_eq!(t.cat("/clients/1002/vanished.txt").await.unwrap(), b"keep me");
    assert_eq!(t.core.upload_due(false).await, 1, "sent again");
    assert_eq!(t.core.confirm_due(true).await, 1);
    assert_eq!(&t.store.files_named(1002, "vanished.txt")[0].data[..], b"keep me");
    assert_eq!(t.store.count(Endpoint::Upload), 2);
    assert_eq!(t.core.pending_uploads(), 0);
}

/// A client holding two `dup.txt` (IntakeQ allows it): every write, overwrite, rename
/// and removal changes only the file shown under the path used, and a twin keeps its
/// name, in this mount and the next.
/// Overwrite client 1001's `notes.txt` with `data` (open with O_TRUNC, write, close).
async fn save(t: &T, data: &[u8]) {
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    let o = t.core.open(ino, trunc()).await.unwrap();
    t.core.write(o.fh, 0, data).await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
}

/// The requests since the last reset, in order.
fn requests(t: &T) -> Vec<Endpoint> {
    t.store.lock().requests.iter().map(|(e, _)| *e).collect()
}

/// vim's second `:w` before the first save's confirming listing (`CONFIRM_SETTLE`): the
/// first save's file is not known by id yet. It is uploaded at once, and the listing
/// that confirms it names the first save's file too, which goes: 1 upload, 1 listing,
/// 1 delete, and no listing later. Before: a listing first to find the first save's
/// file, the upload, the delete, and the batch's listing 2 s later (one listing more).
#[tokio::test]
async fn a_second_save_before_the_first_is_listed_costs_what_any_save_costs() {
    let t = setup();
    t.cat("/clients/1001/notes.txt").await.unwrap();
    t.store.reset_counts();
    save(&t, b"first save\n").await;
    assert_eq!(requests(&t), [Endpoint::Upload, Endpoint::Delete]);
    t.store.reset_counts();
    save(&t, b"first save\nsecond save\n").await;
    assert_eq!(requests(&t), [Endpoint::Upload, Endpoint::ListFiles, Endpoint::Delete]);
    assert_eq!(t.core.confirm_due(true).await, 0, "nothing is left to confirm");
    let files = t.store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1, "the first save's file went");
    assert_eq!(&files[0].data[..], b"first save\nsecond save\n");
    assert_eq!(
        t.cat("/clients/1001/notes.txt").await.unwrap(),
        b"first save\nsecond save\n"
    );
}

/// `: > notes.txt` right after a save (before its confirming listing): the open empties
/// the file, and its close, with nothing written, waits for the last release as a
/// redirect's first close does (no empty upload while the command runs); at the release
/// it is due at once, not held as a new empty file awaiting its name (`HOLD_EMPTY`).
#[tokio::test]
async fn a_file_emptied_right_after_a_save_goes_up_at_its_release_not_at_its_first_close() {
    let t = setup();
    t.cat("/clients/1001/notes.txt").await.unwrap();
    save(&t, b"first save\n").await;
    t.store.reset_counts();
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    let o = t.core.open(ino, trunc()).await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    assert_eq!(t.store.count(Endpoint::Upload), 0, "the first close uploads nothing");
    t.core.release(o.fh);
    assert_eq!(t.core.upload_due(false).await, 1, "due at its release");
    let files = t.store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1);
    assert!(files[0].data.is_empty());
}

/// The same with a second save of the first one's size: then the listing could not tell
/// the new file from the first save's, so that one is looked for first (a listing more).
#[tokio::test]
async fn a_second_save_of_the_same_size_looks_for_the_first_ones_file_first() {
    let t = setup();
    t.cat("/clients/1001/notes.txt").await.unwrap();
    save(&t, b"version 1").await;
    t.store.reset_counts();
    save(&t, b"version 2").await;
    assert_eq!(requests(&t), [Endpoint::ListFiles, Endpoint::Upload, Endpoint::Delete]);
    t.core.confirm_due(true).await;
    let files = t.store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1);
    assert_eq!(&files[0].data[..], b"version 2");
}

#[tokio::test]
async fn a_path_names_exactly_one_twin_and_the_other_keeps_its_name() {
    let store = account();
    let older = store.add_file(1002, "dup.txt", None, &b"older twin"[..]);
    let newer = store.add_file(1002, "dup.txt", None, &b"newer twin"[..]);
    let t = setup_with(store, |_| {});
    let tagged = format!("dup ({older}).txt");
    let dirs = [".", "..", "Intake Forms", "Insurance"];
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        t.ls("/clients/1002").await,
        [&dirs[..], &["other.txt", &tagged, "dup.txt"]].concat()
    );
    assert_eq!(t.cat("/clients/1002/dup.txt").await.unwrap(), b"newer twin");
    let top = t.path("/clients/1002").await.unwrap();
    // cp mine.txt dup.txt, twice: the file shown as dup.txt is replaced, the twin never.
    for mine in [&b"mine"[..], &b"mine again"[..]] {
        let ino = t.path("/clients/1002/dup.txt").await.unwrap();
        let o = t.core.open(ino, trunc()).await.unwrap();
        t.core.write(o.fh, 0, mine).await.unwrap();
        t.core.flush(o.fh).await.unwrap();
        t.core.release(o.fh);
        assert_eq!(t.cat("/clients/1002/dup.txt").await.unwrap(), mine);
        assert_eq!(t.cat(&format!("/clients/1002/{tagged}")).await.unwrap(), b"older twin");
        assert!(t.store.file(&older).is_some(), "the twin the user never named stays");
    }
    assert!(
        t.store.file(&newer).is_none(),
        "the file shown under the name was replaced"
    );
    // Writing through the twin's tagged name keeps that name, on the server too.
    let ino = t.path(&format!("/clients/1002/{tagged}")).await.unwrap();
    let o = t.core.open(ino, trunc()).await.unwrap();
    t.core.write(o.fh, 0, b"edited twin").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    assert_eq!(
        sorted(t.ls("/clients/1002").await),
        sorted(
            [&dirs[..], &["other.txt", "dup.txt", &tagged]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect()
        )
    );
    assert_eq!(t.cat("/clients/1002/dup.txt").await.unwrap(), b"mine again");
    assert_eq!(t.cat(&format!("/clients/1002/{tagged}")).await.unwrap(), b"edited twin");
    assert_eq!(&t.store.files_named(1002, &tagged)[0].data[..], b"edited twin");
    // Removing dup.txt renames nothing.
    t.core.unlink(top, "dup.txt").await.unwrap();
    assert_eq!(
        sorted(t.ls("/clients/1002").await),
        sorted(
            [&dirs[..], &["other.txt", &tagged]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect()
        )
    );
    // The next mount shows the same names.
    let again = Core::new(MemRemote::new(t.store.clone()), opts(&t._dir.path().join("again"))).unwrap();
    let dir = ino_at(&again, "clients/1002").await.unwrap();
    let fh = again.opendir(dir).await.unwrap();
    let names: Vec<String> = again.readdir(fh, 0).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, [&dirs[..], &["other.txt", &tagged]].concat());
}

/// Two plain `rsync -a` runs into a directory holding two `report.pdf`: each run
/// replaces the file shown as report.pdf (temp file, then rename over it); the other
/// original is never touched.
#[tokio::test]
async fn renaming_over_a_twin_twice_never_deletes_the_other_twin() {
    let store = account();
    let first = store.add_file(1002, "report.pdf", None, &b"original 1"[..]);
    let second = store.add_file(1002, "report.pdf", None, &b"original 2"[..]);
    let t = setup_with(store, |_| {});
    let top = t.path("/clients/1002").await.unwrap();
    for run in [&b"run 1"[..], &b"run 2"[..]] {
        t.put("/clients/1002", ".report.pdf.a1B2c3", run).await.unwrap();
        t.core
            .rename(top, ".report.pdf.a1B2c3", top, "report.pdf", false)
            .await
            .unwrap();
        assert_eq!(t.cat("/clients/1002/report.pdf").await.unwrap(), run);
    }
    assert!(
        t.store.file(&first).is_some(),
        "the twin shown with a tag survives both runs"
    );
    assert!(t.store.file(&second).is_none());
    let mut held: Vec<Vec<u8>> = t
        .store
        .files_named(1002, "report.pdf")
        .into_iter()
        .map(|f| f.data.to_vec())
        .collect();
    held.sort();
    assert_eq!(held, [b"original 1".to_vec(), b"run 2".to_vec()]);
}

fn trunc() -> OpenMode {
    OpenMode {
        write: true,
        truncate: true,
    }
}

/// `cmd > file`: bash opens the file (O_TRUNC), dup2s it onto stdout and closes the
/// first descriptor before the command writes. That first close must neither upload
/// nor leave the server holding an empty file; the command's bytes go up once.
#[tokio::test]
async fn a_shell_redirect_uploads_once_and_never_an_empty_file() {
    let t = setup();
    let ino = t.path("/clients/1001/notes.txt").await.unwrap();
    t.store.reset_counts();
    let o = t.core.open(ino, trunc()).await.unwrap();
    t.core.flush(o.fh).await.unwrap(); // close(3) after dup2(3, 1)
    assert_eq!(t.calls(), 0, "nothing written yet: nothing sent");
    assert_eq!(&t.store.files_named(1001, "notes.txt")[0].data[..], b"hello notes");
    t.core.write(o.fh, 0, b"command output\n").await.unwrap();
    t.core.flush(o.fh).await.unwrap(); // the command exits: close(1)
    t.core.release(o.fh);
    let held = t.store.files_named(1001, "notes.txt");
    assert_eq!(held.len(), 1);
    assert_eq!(&held[0].data[..], b"command output\n");
    assert_eq!(t.store.count(Endpoint::Upload), 1);
    assert_eq!(t.store.count(Endpoint::Delete), 1);
    assert_eq!(t.core.upload_due(true).await, 0, "nothing left over");
    // A new file the same way.
    let top = t.path("/clients/1002").await.unwrap();
    t.store.reset_counts();
    let (_, o) = t.core.create(top, "report.txt").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    assert!(
        t.store.files_named(1002, "report.txt").is_empty(),
        "no empty copy, not even for a moment"
    );
    t.core.write(o.fh, 0, b"report").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    assert_eq!(&t.store.files_named(1002, "report.txt")[0].data[..], b"report");
    assert_eq!(t.store.count(Endpoint::Upload), 1);
}

/// `touch new.txt`: created and closed with nothing written; uploaded (empty) once its
/// last descriptor is released and it has been left alone for `HOLD_EMPTY` (the time a
/// person takes to type the name of a "New text document").
#[tokio::test]
async fn an_empty_new_file_is_uploaded_once_left_alone_after_its_release() {
    let t = setup();
    let top = t.path("/clients/1002").await.unwrap();
    let (_, o) = t.core.create(top, "empty.txt").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    assert!(t.store.files_named(1002, "empty.txt").is_empty());
    tokio::time::pause();
    t.core.release(o.fh);
    assert_eq!(t.core.pending_uploads(), 1);
    assert_eq!(t.core.upload_due(false).await, 0, "held while a name may be typed");
    tokio::time::advance(intakeq_fs::core::patterns::HOLD_EMPTY).await;
    assert_eq!(t.core.upload_due(false).await, 1);
    assert_eq!(&t.store.files_named(1002, "empty.txt")[0].data[..], b"");
    assert_eq!(t.core.pending_uploads(), 0);
}

/// Editors' swap, lock and backup files and databases' journals live in the private
/// local overlay: visible and usable, 0 calls, never uploaded.
#[tokio::test]
async fn scratch_files_stay_home_and_cost_no_call() {
    let t = setup();
    let top = t.path("/clients/1001").await.unwrap();
    t.cat("/clients/1001/notes.txt").await.unwrap();
    t.store.reset_counts();
    for name in [
        ".notes.txt.swp",
        "notes.txt~",
        ".~lock.notes.txt#",
        "db.sqlite-journal",
        "4913",
    ] {
        assert_eq!(
            t.core.lookup(top, name).await.unwrap_err(),
            CoreError::NotFound,
            "looked up without a call"
        );
        let (_, o) = t.core.create(top, name).await.unwrap();
        t.core.write(o.fh, 0, b"scratch bytes").await.unwrap();
        t.core.flush(o.fh).await.unwrap();
        t.core.release(o.fh);
        assert_eq!(t.cat(&format!("/clients/1001/{name}")).await.unwrap(), b"scratch bytes");
    }
    t.core
        .rename(top, ".notes.txt.swp", top, ".notes.txt.swx", false)
        .await
        .unwrap();
    t.core.unlink(top, ".notes.txt.swx").await.unwrap();
    assert_eq!(t.core.upload_due(true).await, 0);
    assert_eq!(t.core.retry_failed_uploads().await, 0);
    assert_eq!(t.calls(), 0, "scratch files cost no call");
    assert!(t.ls("/clients/1001").await.contains(&"notes.txt~".to_string()));
    assert_eq!(t.core.scratch_files(), 4);
    assert!(!t
        .server_names(1001)
        .iter()
        .any(|n| n.contains("notes.txt~") || n.contains("swp")));
    // Renaming one onto a real name is an ordinary save: one upload, one delete.
    t.core.rename(top, "notes.txt~", top, "notes.txt", false).await.unwrap();
    assert_eq!(t.store.count(Endpoint::Upload), 1);
    assert_eq!(t.store.count(Endpoint::Delete), 1);
    assert_eq!(&t.store.files_named(1001, "notes.txt")[0].data[..], b"scratch bytes");
    // A file on the server cannot become a scratch file (it would vanish at unmount).
    assert!(matches!(
        t.core.rename(top, "notes.txt", top, "notes.txt~", false).await,
        Err(CoreError::NotPermitted(_))
    ));
    assert_eq!(t.store.files_named(1001, "notes.txt").len(), 1);
}

/// `sed -i`, rsync, GIO: write a temp file, then rename it over the real name. The
/// temp file never reaches the server; the save is one upload and one delete.
#[tokio::test]
async fn an_atomic_save_is_one_upload_and_the_temp_file_never_reaches_the_server() {
    let t = setup();
    let top = t.path("/clients/1001").await.unwrap();
    for temp in ["sedX1b2C3", ".notes.txt.Ab12Cd", ".goutputstream-QW12ER"] {
        t.store.reset_counts();
        let (_, o) = t.core.create(top, temp).await.unwrap();
        t.core.write(o.fh, 0, temp.as_bytes()).await.unwrap();
        t.core.flush(o.fh).await.unwrap();
        t.core.release(o.fh);
        assert_eq!(t.store.count(Endpoint::Upload), 0, "{temp}: not at close");
        t.core.rename(top, temp, top, "notes.txt", false).await.unwrap();
        assert_eq!(t.store.count(Endpoint::Upload), 1, "{temp}");
        assert_eq!(t.store.count(Endpoint::Delete), 1, "{temp}");
        assert_eq!(
            t.store.count(Endpoint::ListFiles),
            0,
            "{temp}: the rename returns on the 2xx"
        );
        assert_eq!(t.core.confirm_due(true).await, 1, "{temp}: one listing learns the id");
        let held = t.store.files_named(1001, "notes.txt");
        assert_eq!(held.len(), 1);
        assert_eq!(&held[0].data[..], temp.as_bytes());
        assert!(t.store.files_named(1001, temp).is_empty());
        assert_eq!(t.cat("/clients/1001/notes.txt").await.unwrap(), temp.as_bytes());
    }
}

/// A file named like a temp file but never renamed is still uploaded under its own name
/// once it has been closed and left alone: nothing copied in is lost.
#[tokio::test(start_paused = true)]
async fn a_temp_file_never_renamed_is_uploaded_once_left_alone() {
    let t = setup();
    let top = t.path("/clients/1002").await.unwrap();
    let (_, o) = t.core.create(top, "scan.tmp").await.unwrap();
    t.core.write(o.fh, 0, b"kept").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    assert_eq!(t.core.upload_due(false).await, 0, "waits for its rename");
    tokio::time::sleep(intakeq_fs::core::patterns::HOLD_IDLE + Duration::from_millis(10)).await;
    assert_eq!(t.core.upload_due(false).await, 1);
    assert_eq!(&t.store.files_named(1002, "scan.tmp")[0].data[..], b"kept");
}

/// What `stat` shows after close is what it shows after any later listing.
#[tokio::test]
async fn a_written_file_keeps_the_mtime_stat_showed_after_later_listings() {
    let t = setup_with(account(), |o| o.metadata_ttl = Duration::ZERO);
    let top = t.path("/clients/1002").await.unwrap();
    let (attr, o) = t.core.create(top, "x.txt").await.unwrap();
    t.core.write(o.fh, 0, b"bytes").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    let after_close = t.core.getattr(attr.ino).unwrap();
    t.core.release(o.fh);
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.ls("/clients/1002").await; // a new listing (TTL 0)
    let later = t.core.lookup(top, "x.txt").await.unwrap();
    assert_eq!(later.ino, after_close.ino);
    assert_eq!(later.size, after_close.size);
    assert_eq!(later.mtime, after_close.mtime);
}

/// Issue 10's minimums: N new files cost N uploads and one listing for the batch; an
/// overwrite and a mv cost one upload and one delete on the user's path; reading back
/// what was written costs nothing.
#[tokio::test(start_paused = true)]
async fn a_batch_costs_one_upload_per_file_and_one_listing() {
    let t = setup();
    t.ls("/clients/1002").await;
    t.store.reset_counts();
    for i in 0..30 {
        t.put(
            "/clients/1002",
            &format!("scan{i:02}.pdf"),
            format!("scan {i}").as_bytes(),
        )
        .await
        .unwrap();
    }
    assert_eq!(t.store.count(Endpoint::Upload), 30);
    assert_eq!(t.calls(), 30, "no listing on the close path");
    assert_eq!(t.core.confirm_due(false).await, 0, "not while the batch is running");
    tokio::time::sleep(intakeq_fs::core::CONFIRM_SETTLE).await;
    assert_eq!(t.core.confirm_due(false).await, 1);
    assert_eq!(t.calls(), 31, "30 uploads + 1 listing");
    for i in 0..30 {
        assert_eq!(
            t.cat(&format!("/clients/1002/scan{i:02}.pdf")).await.unwrap(),
            format!("scan {i}").as_bytes()
        );
    }
    assert!(t.ls("/clients/1002").await.contains(&"scan29.pdf".to_string()));
    assert_eq!(t.calls(), 31, "read back and listed from memory");
    assert_eq!(t.core.resume_pending().await, 0, "every journal entry is gone");
    // Overwrite of a listed file, and mv: one upload and one delete each.
    let top = t.path("/clients/1002").await.unwrap();
    let ino = t.path("/clients/1002/other.txt").await.unwrap();
    t.store.reset_counts();
    let o = t.core.open(ino, trunc()).await.unwrap();
    t.core.write(o.fh, 0, b"over").await.unwrap();
    t.core.flush(o.fh).await.unwrap();
    t.core.release(o.fh);
    assert_eq!(
        (t.store.count(Endpoint::Upload), t.store.count(Endpoint::Delete)),
        (1, 1)
    );
    assert_eq!(t.calls(), 2);
    t.store.reset_counts();
    t.core
        .rename(top, "scan00.pdf", top, "renamed.pdf", false)
        .await
        .unwrap();
    assert_eq!(
        (t.store.count(Endpoint::Upload), t.store.count(Endpoint::Delete)),
        (1, 1)
    );
    assert_eq!(t.calls(), 2, "the content was cached: no download");
    assert_eq!(t.cat("/clients/1002/renamed.pdf").await.unwrap(), b"scan 0");
    tokio::time::sleep(intakeq_fs::core::CONFIRM_SETTLE).await;
    assert_eq!(t.core.confirm_due(false).await, 1, "one listing for both");
    assert_eq!(t.store.files_named(1002, "renamed.pdf").len(), 1);
    assert!(t.store.files_named(1002, "scan00.pdf").is_empty());
}

/// An id the account does not have is remembered for as long as the client list is
/// trusted (`--client-list-ttl`), not just the listing TTL: probing ids on an
/// `--allow-other` mount costs the owner's budget once per id, not once a minute.
#[tokio::test(start_paused = true)]
async fn an_unknown_client_id_stays_unknown_without_calls_for_the_client_list_ttl() {
    let t = setup();
    assert_eq!(t.path("/clients/999").await, Err(CoreError::NotFound));
    let before = t.calls();
    tokio::time::sleep(Duration::from_secs(600)).await; // ten listing TTLs
    assert_eq!(t.path("/clients/999").await, Err(CoreError::NotFound));
    assert_eq!(t.calls(), before, "still known not to exist");
}

/// A client directory's extended attributes name the client (from the client list the
/// mount already holds for /clients and /by-name): no call.
#[tokio::test]
async fn a_client_directory_shows_its_id_and_name_as_attributes_without_a_call() {
    let t = setup();
    t.ls("/clients").await;
    let ino = t.path("/clients/1001").await.unwrap();
    let before = t.calls();
    let attrs = t.core.xattrs(ino).unwrap();
    let get = |k: &str| {
        attrs
            .iter()
            .find(|(n, _)| n.ends_with(k))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(get("client_id").as_deref(), Some("1001"));
    assert_eq!(get("client_name").as_deref(), Some("Ada Lovelace"));
    assert_eq!(t.calls(), before);
}

/// At unmount the background loop uploads what is still deferred (a temp file never
/// renamed, before its idle time is up) and confirms accepted uploads, so nothing is
/// left journaled for the next mount.
#[tokio::test(start_paused = true)]
async fn unmount_uploads_held_temp_files_and_confirms_accepted_uploads() {
    let t = setup();
    t.put("/clients/1002", "scan.tmp", b"never renamed").await.unwrap();
    t.put("/clients/1002", "new.txt", b"accepted").await.unwrap();
    assert!(t.store.files_named(1002, "scan.tmp").is_empty());
    t.store.reset_counts();
    let (stop, stopped) = tokio::sync::watch::channel(true);
    t.core.run_background(Duration::from_secs(3600), stopped).await;
    drop(stop);
    assert_eq!(&t.store.files_named(1002, "scan.tmp")[0].data[..], b"never renamed");
    assert_eq!(t.store.count(Endpoint::Upload), 1);
    assert_eq!(t.store.count(Endpoint::ListFiles), 1, "one listing confirms both");
    assert_eq!(t.core.pending_uploads(), 0);
    assert_eq!(t.core.resume_pending().await, 0, "no journal entry left");
}

/// Scratch files of a run that died are removed when the next one starts.
#[tokio::test]
async fn scratch_files_of_a_crashed_run_are_cleared_at_the_next_mount() {
    let store = account();
    let dir = tempfile::tempdir().unwrap();
    {
        let core = core_in(&store, dir.path());
        let top = ino_at(&core, "clients/1002").await.unwrap();
        let (_, o) = core.create(top, ".notes.txt.swp").await.unwrap();
        core.write(o.fh, 0, b"swap").await.unwrap();
        // kill -9
    }
    let scratch = dir.path().join("spool/scratch");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 1);
    let _core = core_in(&store, dir.path());
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    assert_eq!(store.count(Endpoint::Upload), 0);
}
