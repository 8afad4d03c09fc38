//! FUSE tier for browsing (issues 13, 14, 11.1): `/by-name` symlinks through the kernel,
//! listings kept across a remount, thumbnailers told apart by their process name, and a
//! file manager's own previews by its thread's name and open flags.

mod common;

use common::*;
use intakeq_fs::fake::store::Endpoint;

#[test]
fn by_name_symlinks_lead_to_the_client_folders() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let root = ok("ls", &[&m.mnt]);
    assert_eq!(root, "by-name\nclients\n");
    let names = ok("ls", &[&m.p("by-name")]);
    assert_eq!(names, "Ada Lovelace (1001)\nAlan Turing (1002)\n");
    let link = std::fs::read_link(m.p("by-name/Ada Lovelace (1001)")).unwrap();
    assert_eq!(link, std::path::Path::new("../clients/1001"));
    let inside = ok("ls", &[&m.p("by-name/Ada Lovelace (1001)/")]);
    assert_eq!(inside, ok("ls", &[&m.p("clients/1001")]));
    assert!(inside.contains("notes.txt"));
    assert_eq!(
        std::fs::read(m.p("by-name/Alan Turing (1002)/other.txt")).unwrap(),
        b"other client"
    );
    // check_access, one page of clients, two client listings, one download.
    assert_eq!(srv.store.count(Endpoint::ListClients), 1);
    assert_eq!(srv.store.count(Endpoint::ListFiles), 2);
    assert_eq!(srv.store.total_requests(), 5);
}

#[test]
fn listings_kept_by_one_mount_serve_the_next_without_a_call() {
    use std::os::unix::fs::MetadataExt;
    let srv = server(account());
    let m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients")]);
    ok("ls", &[&m.p("clients/1001")]);
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    // `--listings-dir DIR` keeps them in the private `DIR/intakeq-fs-<uid>/<account>`.
    let kept = dir
        .path()
        .join("listings")
        .join(format!("intakeq-fs-{}", unsafe { libc::geteuid() }));
    assert_eq!(std::fs::metadata(&kept).unwrap().mode() & 0o777, 0o700);
    // One private directory per account inside it, holding 0600 records.
    let accounts: Vec<_> = std::fs::read_dir(&kept).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(accounts.len(), 1);
    assert_eq!(std::fs::metadata(&accounts[0]).unwrap().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&accounts[0]).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.metadata().unwrap().mode() & 0o777, 0o600, "{:?}", e.file_name());
    }
    srv.store.reset_counts();
    let m = mount_in(dir, &srv, &[]);
    assert_eq!(ok("ls", &[&m.p("clients")]), "1001\n1002\n");
    assert!(ok("ls", &[&m.p("clients/1001")]).contains("notes.txt"));
    assert_eq!(
        ok("ls", &[&m.p("by-name")]),
        "Ada Lovelace (1001)\nAlan Turing (1002)\n"
    );
    assert_eq!(srv.store.total_requests(), 1, "only the key check at mount");
}

/// `/bin/cat` under another name: its process name (`/proc/<pid>/comm`) is `name`.
fn cat_named(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/cat", &p).unwrap();
    p
}

#[test]
fn with_no_previews_a_thumbnailer_is_refused_and_cat_still_reads() {
    let srv = server(account());
    let m = mount(&srv, &["--no-previews"]);
    let tools = tempfile::tempdir().unwrap();
    let thumb = cat_named(tools.path(), "tumblerd");
    let out = run(thumb.to_str().unwrap(), &[&m.p("clients/1001/notes.txt")]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("Permission denied"), "{}", stderr_of(&out));
    assert_eq!(srv.store.count(Endpoint::Download), 0);
    assert_eq!(ok("cat", &[&m.p("clients/1001/notes.txt")]), "hello notes\n");
    // The bytes are here now: a thumbnail of them costs nothing and is served.
    assert_eq!(
        ok(thumb.to_str().unwrap(), &[&m.p("clients/1001/notes.txt")]),
        "hello notes\n"
    );
    assert_eq!(srv.store.count(Endpoint::Download), 1);
}

#[test]
fn thumbnailers_and_file_managers_never_spend_the_reserve_that_a_users_read_may() {
    let srv = server(account());
    // 10 a day, half kept for real work.
    let m = mount(&srv, &["--daily-limit", "10", "--reserve-percent", "50"]);
    let tools = tempfile::tempdir().unwrap();
    let thumb = cat_named(tools.path(), "ffmpegthumbnailer");
    let fm = cat_named(tools.path(), "pcmanfm");
    // key check, two listings, two downloads: 5 of 10, the rest is the reserve.
    assert_eq!(ok("cat", &[&m.p("clients/1001/notes.txt")]), "hello notes\n");
    assert_eq!(
        ok(fm.to_str().unwrap(), &[&m.p("clients/1002/other.txt")]),
        "other client"
    );
    assert_eq!(srv.store.total_requests(), 5);
    for tool in [&thumb, &fm] {
        let out = run(tool.to_str().unwrap(), &[&m.p("clients/1001/Insurance/card.png")]);
        assert!(!out.status.success(), "{tool:?} spent the reserve");
        assert!(
            stderr_of(&out).contains("Resource temporarily unavailable"),
            "{}",
            stderr_of(&out)
        );
    }
    assert_eq!(srv.store.total_requests(), 5);
    assert_eq!(
        std::fs::read(m.p("clients/1001/Insurance/card.png")).unwrap(),
        vec![7u8; 5000]
    );
    assert_eq!(srv.store.count(Endpoint::Download), 3);
    assert!(m
        .log_text()
        .contains("refused: the last 5 requests of the day are kept"));
}

/// Read `path` the way a file manager's thread does: in a child process (this test
/// binary again, running `file_manager_thread_reads`) whose process name is `pcmanfm`,
/// from a thread named `thread`, opening with `O_RDONLY | extra_flags`. The bytes, or
/// the error's text.
fn read_as_pcmanfm(thread: &str, path: &std::path::Path, extra_flags: i32) -> Result<Vec<u8>, String> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "file_manager_thread_reads",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IQFS_FM_PATH", path)
        .env("IQFS_FM_THREAD", thread)
        .env("IQFS_FM_FLAGS", extra_flags.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // libtest prints "test file_manager_thread_reads ... " on the same line.
    for line in stdout.lines() {
        if let Some((_, hex)) = line.split_once("FM-READ ") {
            let hex = hex.trim();
            return Ok((0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect());
        }
        if let Some((_, err)) = line.split_once("FM-ERR ") {
            return Err(err.trim().to_string());
        }
    }
    panic!("helper said nothing: {stdout}\n{}", stderr_of(&out));
}

/// Not a test: the child process of `read_as_pcmanfm`.
#[test]
#[ignore = "helper, run in a child process by read_as_pcmanfm"]
fn file_manager_thread_reads() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let (Ok(path), Ok(thread), Ok(flags)) = (
        std::env::var("IQFS_FM_PATH"),
        std::env::var("IQFS_FM_THREAD"),
        std::env::var("IQFS_FM_FLAGS"),
    ) else {
        return;
    };
    // The process name is the main thread's name (`/proc/<pid>/comm`).
    let pid = std::process::id();
    std::fs::write(format!("/proc/self/task/{pid}/comm"), "pcmanfm").unwrap();
    let flags: i32 = flags.parse().unwrap();
    let line = std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            let mut data = Vec::new();
            let r = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(&path)
                .and_then(|mut f| f.read_to_end(&mut data));
            match r {
                Ok(_) => format!(
                    "FM-READ {}",
                    data.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ),
                Err(e) => format!("FM-ERR {e}"),
            }
        })
        .unwrap()
        .join()
        .unwrap();
    println!("{line}");
}

#[test]
fn with_no_previews_a_file_managers_own_thumbnails_and_sniffing_are_refused_and_its_copies_read() {
    let srv = server(account());
    let m = mount(&srv, &["--no-previews"]);
    let card = m.p("clients/1001/Insurance/card.png");
    ok("ls", &[&m.p("clients/1001/Insurance")]);
    srv.store.reset_counts();
    // pcmanfm's thumbnail thread, and GIO's content sniffing (O_NOATIME) in its pool.
    let thumb = read_as_pcmanfm("loader", &card, 0).unwrap_err();
    assert!(thumb.contains("Permission denied"), "{thumb}");
    let sniff = read_as_pcmanfm("pool-pcmanfm", &card, libc::O_NOATIME).unwrap_err();
    assert!(sniff.contains("Permission denied"), "{sniff}");
    assert_eq!(srv.store.total_requests(), 0);
    // A copy (ctrl+c / ctrl+v, drag) runs in the same pool with a plain open.
    assert_eq!(read_as_pcmanfm("pool-pcmanfm", &card, 0).unwrap(), vec![7u8; 5000]);
    assert_eq!(srv.store.count(Endpoint::Download), 1);
    // The bytes are here now: the thumbnail costs nothing and is served.
    assert_eq!(read_as_pcmanfm("loader", &card, 0).unwrap(), vec![7u8; 5000]);
    assert_eq!(srv.store.total_requests(), 1);
}

#[test]
fn with_previews_on_a_file_managers_own_thumbnail_and_sniffing_download() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients/1001/Insurance")]);
    ok("ls", &[&m.p("clients/1001")]);
    srv.store.reset_counts();
    let card = m.p("clients/1001/Insurance/card.png");
    assert_eq!(read_as_pcmanfm("loader", &card, 0).unwrap(), vec![7u8; 5000]);
    assert_eq!(
        read_as_pcmanfm("pool-pcmanfm", &m.p("clients/1001/notes.txt"), libc::O_NOATIME).unwrap(),
        b"hello notes\n"
    );
    assert_eq!(srv.store.count(Endpoint::Download), 2);
    assert_eq!(srv.store.total_requests(), 2);
}

/// Issue 20's account: clients 1001..=1040 with a file each, and 30 scans in 1001.
fn busy_account() -> intakeq_fs::fake::store::Store {
    let s = account();
    for c in 1003..=1040 {
        s.add_client(c, "Client", &c.to_string());
        s.add_file(c, "intake.txt", None, format!("intake of {c}").into_bytes());
    }
    for i in 1..=30 {
        s.add_file(1001, &format!("scan-{i:02}.jpg"), None, vec![i as u8; 2000]);
    }
    s
}

/// `thumb` (a thumbnailer by its name) started on client 1001's 30 scans, once their
/// folder is listed; returned when it has taken every slot it may (the mount's 2 calls,
/// the listing and its first downloads: 6 of them, stopped 2 short of the minute's 10)
/// and its next download waits.
fn thumbnailing_30_scans(m: &Mount, srv: &Server, thumb: &std::path::Path) -> std::process::Child {
    ok("ls", &[&m.p("clients/1001")]);
    let scans: Vec<String> = (1..=30)
        .map(|i| {
            m.p(&format!("clients/1001/scan-{i:02}.jpg"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let child = std::process::Command::new(thumb)
        .args(&scans)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while srv.store.count(Endpoint::Download) < 6 && t0.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    child
}

/// At the real limits (10 a minute), a thumbnailer reading a client's 30 scans takes
/// what the minute has but its last 2 slots: a person opening a file in another client
/// meanwhile (its folder's listing and its download) is served at once, not after the
/// minute (58 s before the headroom).
#[test]
fn a_person_opens_a_file_at_once_while_a_thumbnailer_reads_30_scans() {
    let srv = server(busy_account());
    let m = mount(&srv, &["--rate-limit", "10"]);
    let tools = tempfile::tempdir().unwrap();
    let thumb = cat_named(tools.path(), "tumblerd");
    let mut thumbnailer = thumbnailing_30_scans(&m, &srv, &thumb);
    let previews = srv.store.count(Endpoint::Download);
    assert_eq!(
        previews, 6,
        "previews stop 2 short of the minute's 10 (the key check and the listing spent 2)"
    );
    let asked = std::time::Instant::now();
    assert_eq!(ok("cat", &[&m.p("clients/1002/other.txt")]), "other client");
    let took = asked.elapsed();
    thumbnailer.kill().unwrap();
    thumbnailer.wait().unwrap();
    assert!(took < std::time::Duration::from_secs(10), "the person waited {took:?}");
    assert_eq!(srv.store.count(Endpoint::Download), 7, "the person's one download");
    assert_eq!(
        srv.store.count(Endpoint::ListFiles),
        2,
        "1001's and then 1002's listing"
    );
}

/// The same, with the file manager's own content sniff in front of the person's file:
/// Thunar reads the first 4 KiB of the file a person double-clicked (`O_NOATIME`, its
/// type) before it launches the application. A sniff that stands alone in its process is
/// that click, served at the person's priority (before: a preview, behind the
/// thumbnailer, 26.6 s in the file-manager bench).
#[test]
fn a_file_managers_lone_sniff_is_a_click_served_while_a_thumbnailer_reads_30_scans() {
    let srv = server(busy_account());
    let m = mount(&srv, &["--rate-limit", "10"]);
    let tools = tempfile::tempdir().unwrap();
    let thumb = cat_named(tools.path(), "tumblerd");
    // GNU dd opens with O_NOATIME when asked: the shape of GIO's content sniff.
    let thunar = tools.path().join("thunar");
    std::fs::copy("/bin/dd", &thunar).unwrap();
    let mut thumbnailer = thumbnailing_30_scans(&m, &srv, &thumb);
    assert_eq!(
        srv.store.count(Endpoint::Download),
        6,
        "previews stop 2 short of the minute"
    );
    ok("ls", &[&m.p("clients/1002")]);
    let asked = std::time::Instant::now();
    let input = format!("if={}", m.p("clients/1002/other.txt").display());
    let out = run(
        thunar.to_str().unwrap(),
        &[&input, &"of=/dev/null", &"bs=4096", &"count=1", &"iflag=noatime"],
    );
    let took = asked.elapsed();
    thumbnailer.kill().unwrap();
    thumbnailer.wait().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        took < std::time::Duration::from_secs(10),
        "the click's sniff waited {took:?}"
    );
    assert_eq!(
        srv.store.count(Endpoint::Download),
        7,
        "the sniffed file's one download"
    );
}

/// The person double-clicks the very file the thumbnailer is waiting to download (a
/// file manager's first file is the thumbnailer's first too): the person's read takes
/// the queued preview download over and is served at once. A preview's handle reads
/// past the kernel's page cache, so its read waiting in the mount holds no page of the
/// file locked; before, the person's read waited in the kernel behind it for the next
/// minute (26.9 s in the file-manager bench).
#[test]
fn a_person_opens_at_once_the_file_a_thumbnailer_is_waiting_to_download() {
    let srv = server(busy_account());
    let m = mount(&srv, &["--rate-limit", "10"]);
    let tools = tempfile::tempdir().unwrap();
    let thumb = cat_named(tools.path(), "tumblerd");
    let mut thumbnailer = thumbnailing_30_scans(&m, &srv, &thumb);
    assert_eq!(
        srv.store.count(Endpoint::Download),
        6,
        "previews stop 2 short of the minute; the 7th scan's download waits"
    );
    let asked = std::time::Instant::now();
    let got = std::fs::read(m.p("clients/1001/scan-07.jpg")).unwrap();
    let took = asked.elapsed();
    thumbnailer.kill().unwrap();
    thumbnailer.wait().unwrap();
    assert_eq!(got, vec![7u8; 2000]);
    assert!(took < std::time::Duration::from_secs(10), "the person waited {took:?}");
    assert_eq!(
        srv.store.count(Endpoint::Download),
        7,
        "the person's one download, taken over from the thumbnailer"
    );
}

/// A file manager counting the items of 30 client folders from one process (30 threads
/// listing at once), then the person double-clicking one more folder 1.5 s later in the
/// same process: the counts take what the minute has but its last 2 slots, and the
/// click is a click (not the next step of a crawl): listed at once (before: EAGAIN).
#[test]
fn a_click_after_item_counts_from_the_same_process_is_listed_at_once() {
    use intakeq_fs::fake::store::Fault;
    let srv = server(busy_account());
    let m = mount(&srv, &["--rate-limit", "10"]);
    ok("ls", &[&m.p("clients")]);
    // Each listing takes 200 ms to answer, as over a network: the counts overlap.
    srv.store.push_fault(
        Some(Endpoint::ListFiles),
        Fault::Delay(std::time::Duration::from_millis(200)),
        None,
    );
    let before = srv.store.total_requests();
    let counts: Vec<_> = (1003..=1032)
        .map(|c| {
            let dir = m.p(&format!("clients/{c}"));
            std::thread::spawn(move || std::fs::read_dir(dir).map(|d| d.count()))
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let asked = std::time::Instant::now();
    let click =
        std::fs::read_dir(m.p("clients/1040")).map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name() == "intake.txt"));
    let took = asked.elapsed();
    assert!(click.unwrap(), "the click lists the folder");
    assert!(took < std::time::Duration::from_secs(10), "the click waited {took:?}");
    let spent = srv.store.total_requests() - before;
    assert_eq!(
        (spent, srv.store.count(Endpoint::ListFiles)),
        (7, 7),
        "6 counts (8 of the minute's 10 with the mount's 2) and the click"
    );
    drop(m);
    for c in counts {
        let _ = c.join().unwrap();
    }
}

/// `find` over 40 client folders at the real limits still fails fast: the listings the
/// minute allows but the headroom, "Resource temporarily unavailable" for the rest,
/// within seconds, and the person's click after it is listed at once.
#[test]
fn find_over_many_clients_fails_fast_and_leaves_the_headroom() {
    let srv = server(busy_account());
    let m = mount(&srv, &["--rate-limit", "10"]);
    ok("ls", &[&m.p("clients")]);
    let before = srv.store.total_requests();
    let t0 = std::time::Instant::now();
    let out = run("find", &[&m.p("clients"), &"-name", &"intake.txt"]);
    let took = t0.elapsed();
    assert!(!out.status.success(), "some folders could not be listed");
    assert!(stderr_of(&out).contains("Resource temporarily unavailable"));
    assert!(took < std::time::Duration::from_secs(10), "find took {took:?}");
    assert_eq!(
        srv.store.total_requests() - before,
        6,
        "8 of the minute's 10 with the mount's 2: the headroom is left"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(ok("ls", &[&m.p("clients/1040")]).contains("intake.txt"));
    assert_eq!(srv.store.total_requests() - before, 7);
}

/// `du` over 40 client folders at the real limits fails fast like `find`: what the
/// minute allows but the headroom, "Resource temporarily unavailable" for the rest,
/// within seconds, and a person's folder is listed at once after it.
#[test]
fn du_over_many_clients_fails_fast_and_leaves_the_headroom() {
    let srv = server(busy_account());
    let m = mount(&srv, &["--rate-limit", "10"]);
    ok("ls", &[&m.p("clients")]);
    let before = srv.store.total_requests();
    let t0 = std::time::Instant::now();
    let out = run("du", &[&"-s", &m.p("clients")]);
    let took = t0.elapsed();
    assert!(!out.status.success(), "some folders could not be read");
    assert!(
        stderr_of(&out).contains("Resource temporarily unavailable"),
        "{}",
        stderr_of(&out)
    );
    assert!(took < std::time::Duration::from_secs(10), "du took {took:?}");
    assert_eq!(
        srv.store.total_requests() - before,
        6,
        "8 of the minute's 10 with the mount's 2: the headroom is left"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(ok("ls", &[&m.p("clients/1040")]).contains("intake.txt"));
    assert_eq!(srv.store.total_requests() - before, 7);
}

/// A thumbnailer that maps the file instead of reading it (private or shared, read-only)
/// still gets its bytes, though a preview's handle reads past the page cache (the mount
/// asks the kernel for `FUSE_DIRECT_IO_ALLOW_MMAP`).
#[test]
fn a_thumbnailer_can_map_the_file_it_previews() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let path = m.p("clients/1001/Insurance/card.png");
    for flag in [libc::MAP_PRIVATE, libc::MAP_SHARED] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "thumbnailer_maps", "--nocapture"])
            .env("IQFS_MAP_PATH", &path)
            .env("IQFS_MAP_FLAG", flag.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("MAPPED ").map(|(_, r)| r.trim().to_string()));
        assert_eq!(line.as_deref(), Some("5000 bytes of 7"), "flag {flag}: {stdout}");
    }
    assert_eq!(srv.store.count(Endpoint::Download), 1, "one download for both");
}

/// Not a test: the child process of `a_thumbnailer_can_map_the_file_it_previews`, named
/// `tumblerd`, mapping the file read-only with the given flag.
#[test]
#[ignore = "helper, run in a child process"]
fn thumbnailer_maps() {
    use std::os::fd::AsRawFd;
    let (Ok(path), Ok(flag)) = (std::env::var("IQFS_MAP_PATH"), std::env::var("IQFS_MAP_FLAG")) else {
        return;
    };
    let pid = std::process::id();
    std::fs::write(format!("/proc/self/task/{pid}/comm"), "tumblerd").unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let flag: i32 = flag.parse().unwrap();
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, flag, f.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        println!("MAPPED failed: {}", std::io::Error::last_os_error());
        return;
    }
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
    let all_seven = bytes.iter().all(|b| *b == 7);
    println!("MAPPED {len} bytes of {}", if all_seven { "7" } else { "other" });
    unsafe { libc::munmap(p, len) };
}
