//! FUSE tier for browsing (issues 13, 14, 11.1): `/by-name` symlinks through the kernel,
//! listings kept across a remount, and thumbnailers told apart by their process name.

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
    // `--listings-dir DIR` keeps them in the private `DIR/intakeq-fs-<uid>`.
    let kept = dir
        .path()
        .join("listings")
        .join(format!("intakeq-fs-{}", unsafe { libc::geteuid() }));
    assert_eq!(std::fs::metadata(&kept).unwrap().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&kept).unwrap() {
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
