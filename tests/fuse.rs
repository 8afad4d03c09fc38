//! FUSE tier: the real binary mounted for real against the fake server, driven with
//! `std::fs` and real tools (`ls`, `cat`, `cp`, `mv`, `rm`, `find`, `touch`, `rsync`,
//! `tar`, `df`), checking bytes on the server side through the fake's state and the
//! number of API calls where caching is promised.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use common::*;
use intakeq_fs::fake::demo::pseudo_random_bytes;
use intakeq_fs::fake::store::{Endpoint, Fault};

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

#[test]
fn ls_cat_and_attributes_through_the_mount() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let out = ok("ls", &[&"-l", &m.p("clients/1001")]);
    for n in ["Intake Forms", "Insurance", "_folder-gone", "notes.txt"] {
        assert!(out.contains(n), "{n} not in ls -l output:\n{out}");
    }
    assert_eq!(fs::read(m.p("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    assert_eq!(ok("cat", &[&m.p("clients/1001/Insurance/card.png")]).len(), 5000);
    let names: Vec<String> = fs::read_dir(m.p("clients/1001/Intake Forms"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"consent.pdf".into()) && names.contains(&"consent (f00000003).pdf".into()));
    let md = fs::metadata(m.p("clients/1001/notes.txt")).unwrap();
    assert_eq!(md.len(), 12);
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert_eq!(md.uid(), unsafe { libc::getuid() });
    let created = srv.store.file("f00000001").unwrap().created_ms;
    assert_eq!(md.mtime() * 1000 + md.mtime_nsec() / 1_000_000, created);
    assert_eq!(
        fs::metadata(m.p("clients/1001")).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let ls_clients = ok("ls", &[&m.p("clients")]);
    assert_eq!(ls_clients.split_whitespace().collect::<Vec<_>>(), ["1001", "1002"]);
    assert_eq!(errno_of(&fs::metadata(m.p("clients/999")).unwrap_err()), libc::ENOENT);
    assert_eq!(errno_of(&fs::metadata(m.p("clients/abc")).unwrap_err()), libc::ENOENT);
    let df = ok("df", &[&m.mnt]);
    assert!(df.contains("intakeq"), "df output: {df}");
    let (status, _, _) = m.unmount();
    assert!(status.success());
}

#[test]
fn second_read_and_warm_listing_cost_no_calls() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    ok("cat", &[&m.p("clients/1001/notes.txt")]);
    assert_eq!(srv.store.count(Endpoint::Download), 1);
    // Drop the kernel's page cache for the file so the read reaches the daemon.
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
    ok("cat", &[&m.p("clients/1001/notes.txt")]);
    assert_eq!(srv.store.count(Endpoint::Download), 1, "second cat made no download");
    let before = srv.store.total_requests();
    ok("ls", &[&"-l", &m.p("clients/1001")]);
    ok("ls", &[&"-lR", &m.p("clients/1001")]);
    assert_eq!(srv.store.total_requests(), before, "warm ls -l makes no call");
}

#[test]
fn find_over_a_2000_file_client_makes_one_listing_call() {
    let store = account();
    intakeq_fs::fake::demo::add_bulk_client(&store, 5000, 2000, 10);
    let srv = server(store);
    let m = mount(&srv, &[]);
    srv.store.reset_counts();
    let out = ok("find", &[&m.p("clients/5000"), &"-type", &"f"]);
    assert_eq!(out.lines().count(), 2000);
    assert_eq!(srv.store.count(Endpoint::ListFiles), 1);
    assert_eq!(
        srv.store.total_requests(),
        1,
        "folders were fetched at mount; one files listing"
    );
    let out = ok("ls", &[&"-l", &m.p("clients/5000")]);
    assert_eq!(
        out.lines().count(),
        2003,
        "total line, the 2 account-wide folders, 2000 files"
    );
    assert_eq!(srv.store.total_requests(), 1);
}

#[test]
fn cp_in_cp_over_and_echo_overwrite_land_on_the_server() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("scan.pdf");
    let data = pseudo_random_bytes(9, 300_000);
    fs::write(&src, &data).unwrap();
    ok("cp", &[&src, &m.p("clients/1002/")]);
    let f = &srv.store.files_named(1002, "scan.pdf")[0];
    assert_eq!(f.data, data);
    assert_eq!(f.folder_id, None);
    assert_eq!(f.content_type, "application/pdf");
    // cp over an existing file: new bytes uploaded, old file deleted, one remains.
    let data2 = pseudo_random_bytes(10, 1000);
    fs::write(&src, &data2).unwrap();
    ok("cp", &[&src, &m.p("clients/1002/scan.pdf")]);
    let files = srv.store.files_named(1002, "scan.pdf");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].data, data2);
    assert_eq!(fs::read(m.p("clients/1002/scan.pdf")).unwrap(), data2);
    // Shell redirection overwrite and append.
    ok(
        "sh",
        &[
            &"-c",
            &format!("echo replaced > '{}'", m.p("clients/1001/notes.txt").display()),
        ],
    );
    assert_eq!(&srv.store.files_named(1001, "notes.txt")[0].data[..], b"replaced\n");
    ok(
        "sh",
        &[
            &"-c",
            &format!("echo more >> '{}'", m.p("clients/1001/notes.txt").display()),
        ],
    );
    let files = srv.store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1);
    assert_eq!(&files[0].data[..], b"replaced\nmore\n");
    // touch makes an empty file; touch of an existing file is a harmless no-op.
    // It is uploaded once left alone for `HOLD_EMPTY` (10 s) after its last release (a
    // close with nothing written defers: see the shell-redirect test; a new empty file
    // may still be named, as Explorer's "New text document" is).
    ok("touch", &[&m.p("clients/1002/empty.txt")]);
    wait_for(|| !srv.store.files_named(1002, "empty.txt").is_empty());
    assert_eq!(srv.store.files_named(1002, "empty.txt")[0].data.len(), 0);
    let uploads = srv.store.count(Endpoint::Upload);
    ok("touch", &[&m.p("clients/1002/empty.txt")]);
    ok("chmod", &[&"644", &m.p("clients/1002/empty.txt")]);
    assert_eq!(srv.store.count(Endpoint::Upload), uploads);
}

#[test]
fn a_new_file_costs_one_upload_and_one_listing() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients/1002")]);
    srv.store.reset_counts();
    fs::write(m.p("clients/1002/new.txt"), b"abc").unwrap();
    assert_eq!(srv.store.count(Endpoint::Upload), 1);
    assert_eq!(srv.store.total_requests(), 1, "close returns on the upload's 2xx");
    assert_eq!(fs::read(m.p("clients/1002/new.txt")).unwrap(), b"abc");
    assert_eq!(
        srv.store.total_requests(),
        1,
        "reading back what we wrote costs nothing"
    );
    // A moment later, one listing learns the new file's id.
    wait_for(|| srv.store.count(Endpoint::ListFiles) == 1);
    assert_eq!(fs::read(m.p("clients/1002/new.txt")).unwrap(), b"abc");
    assert_eq!(
        srv.store.total_requests(),
        2,
        "one upload, one listing; reading back what we wrote costs nothing"
    );
}

#[test]
fn cp_r_out_and_tar_out_match_the_server() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy");
    ok("cp", &[&"-r", &m.p("clients/1001"), &out]);
    assert_eq!(fs::read(out.join("notes.txt")).unwrap(), b"hello notes\n");
    assert_eq!(
        fs::read(out.join("Intake Forms/consent (f00000003).pdf")).unwrap(),
        b"first"
    );
    assert_eq!(fs::read(out.join("_folder-gone/lost.txt")).unwrap(), b"unlisted folder");
    assert_eq!(srv.store.count(Endpoint::Download), 5, "one download per file");
    assert_eq!(
        srv.store.count(Endpoint::ListFiles),
        1,
        "one listing for the whole tree"
    );
    let tarball = dir.path().join("c.tar");
    ok("tar", &[&"-cf", &tarball, &"-C", &m.p("clients"), &"1001"]);
    assert_eq!(srv.store.count(Endpoint::Download), 5, "tar reads from the cache");
    let list = ok("tar", &[&"-tf", &tarball]);
    assert!(list.contains("1001/Insurance/card.png"));
}

#[test]
fn tar_and_rsync_into_the_mount() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.txt"), b"alpha").unwrap();
    fs::write(src.join("b.bin"), pseudo_random_bytes(3, 70_000)).unwrap();
    ok("rsync", &[&"-a", &format!("{}/", src.display()), &m.p("clients/1002/")]);
    assert_eq!(&srv.store.files_named(1002, "a.txt")[0].data[..], b"alpha");
    assert_eq!(
        srv.store.files_named(1002, "b.bin")[0].data,
        pseudo_random_bytes(3, 70_000)
    );
    let names: Vec<String> = srv.store.files_of(1002).into_iter().map(|f| f.name).collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "rsync temp files are gone: {names:?}"
    );
    let tarball = dir.path().join("t.tar");
    fs::write(src.join("c.txt"), b"from tar").unwrap();
    ok("tar", &[&"-cf", &tarball, &"-C", &src, &"c.txt"]);
    ok("tar", &[&"-xf", &tarball, &"-C", &m.p("clients/1002")]);
    assert_eq!(&srv.store.files_named(1002, "c.txt")[0].data[..], b"from tar");
    // cp -p (preserving mode and times) works: those changes are accepted as no-ops.
    ok("cp", &[&"-p", &src.join("a.txt"), &m.p("clients/1001/a-copy.txt")]);
    assert_eq!(&srv.store.files_named(1001, "a-copy.txt")[0].data[..], b"alpha");
}

#[test]
fn mv_rm_and_refused_operations() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    // mv within a client's top level: emulated rename.
    ok(
        "mv",
        &[&m.p("clients/1001/notes.txt"), &m.p("clients/1001/renamed.txt")],
    );
    assert!(srv.store.files_named(1001, "notes.txt").is_empty());
    assert_eq!(
        &srv.store.files_named(1001, "renamed.txt")[0].data[..],
        b"hello notes\n"
    );
    assert!(!m.p("clients/1001/notes.txt").exists());
    assert_eq!(fs::read(m.p("clients/1001/renamed.txt")).unwrap(), b"hello notes\n");
    // mv into a folder: EXDEV, mv falls back to copy, which is refused (EPERM); the
    // source stays.
    let out = run(
        "mv",
        &[&m.p("clients/1001/renamed.txt"), &m.p("clients/1001/Insurance/")],
    );
    assert!(!out.status.success());
    assert_eq!(srv.store.files_named(1001, "renamed.txt").len(), 1, "source kept");
    assert_eq!(
        errno_of(&fs::rename(m.p("clients/1001/renamed.txt"), m.p("clients/1002/x.txt")).unwrap_err()),
        libc::EXDEV
    );
    // Writing into a folder is refused, nothing uploaded.
    let e = fs::write(m.p("clients/1001/Insurance/new.txt"), b"x").unwrap_err();
    assert_eq!(errno_of(&e), libc::EPERM);
    assert!(m.log_text().contains("cannot choose a folder"), "log says why");
    // rm: one DELETE, gone at once.
    let deletes = srv.store.count(Endpoint::Delete);
    ok("rm", &[&m.p("clients/1001/Insurance/card.png")]);
    assert_eq!(srv.store.count(Endpoint::Delete), deletes + 1);
    assert!(srv.store.file("f00000002").is_none());
    assert!(!m.p("clients/1001/Insurance/card.png").exists());
    // Directories cannot be made or removed.
    assert_eq!(
        errno_of(&fs::create_dir(m.p("clients/1001/New")).unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno_of(&fs::remove_dir(m.p("clients/1001/Insurance")).unwrap_err()),
        libc::EPERM
    );
    let out = run("rm", &[&"-r", &m.p("clients/1001/Intake Forms")]);
    assert!(!out.status.success());
}

#[test]
fn read_only_mount_refuses_changes_with_erofs() {
    let srv = server(account());
    let m = mount(&srv, &["--read-only"]);
    assert_eq!(fs::read(m.p("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    assert_eq!(
        errno_of(&fs::write(m.p("clients/1001/x.txt"), b"x").unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno_of(&fs::remove_file(m.p("clients/1001/notes.txt")).unwrap_err()),
        libc::EROFS
    );
    assert_eq!(
        errno_of(&fs::create_dir(m.p("clients/1001/New")).unwrap_err()),
        libc::EROFS
    );
    let renamed = fs::rename(m.p("clients/1001/notes.txt"), m.p("clients/1001/n2.txt"));
    assert_eq!(errno_of(&renamed.unwrap_err()), libc::EROFS);
    assert_eq!(srv.store.count(Endpoint::Upload) + srv.store.count(Endpoint::Delete), 0);
}

#[test]
fn a_failed_upload_is_reported_by_close_and_kept_for_the_next_mount() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    srv.store.push_fault(
        Some(Endpoint::Upload),
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        None,
    );
    let mut f = fs::File::create(m.p("clients/1002/precious.txt")).unwrap();
    f.write_all(b"consent form").unwrap();
    // close() is where the upload happens: std's File::drop ignores errors, so use libc.
    use std::os::fd::IntoRawFd;
    let fd = f.into_raw_fd();
    let rc = unsafe { libc::close(fd) };
    assert_eq!(rc, -1, "close reports the failed upload");
    assert!(srv.store.files_named(1002, "precious.txt").is_empty());
    // Kill the daemon outright; the staged data must survive it.
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    let mut m = m;
    wait_exit(m.child.as_mut().unwrap(), Duration::from_secs(10));
    m.child = None;
    let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&m.mnt).status();
    srv.store.clear_faults();
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    drop(m);
    let m2 = mount_in(dir, &srv, &[]);
    let t0 = std::time::Instant::now();
    while srv.store.files_named(1002, "precious.txt").is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "resumed upload did not land; log:\n{}",
            m2.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        &srv.store.files_named(1002, "precious.txt")[0].data[..],
        b"consent form"
    );
}

#[test]
fn sigterm_unmounts_cleanly_and_exits_zero() {
    let srv = server(account());
    let mut m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients")]);
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    let st = wait_exit(m.child.as_mut().unwrap(), Duration::from_secs(20));
    m.child = None;
    assert!(st.success(), "exit status {st:?}; log:\n{}", m.log_text());
    assert!(!is_mounted(&m.mnt));
}

#[test]
fn background_mount_returns_when_ready_and_fusermount_ends_it() {
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let out = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args(["--base-url", &srv.base, "--rate-limit", "1000"])
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .arg("--log-file")
        .arg(dir.path().join("log.txt"))
        .env("INTAKEQ_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Usable the moment the command returns.
    assert_eq!(fs::read(mnt.join("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    // The key is in no process's argv and in no log line.
    let log = fs::read_to_string(dir.path().join("log.txt")).unwrap();
    assert!(!log.contains(KEY));
    fusermount_u(&mnt);
    let t0 = std::time::Instant::now();
    while is_mounted(&mnt) {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_key_unreachable_server_and_missing_mountpoint_fail_with_one_line() {
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let try_mount = |base: &str, key: &str, mnt: &std::path::Path| {
        Command::new(bin())
            .arg("mount")
            .arg(mnt)
            .args(["--base-url", base])
            .arg("--spool-dir")
            .arg(dir.path().join("spool"))
            .arg("--log-file")
            .arg(dir.path().join("log.txt"))
            .env("INTAKEQ_API_KEY", key)
            // The quota ledger of its own: the unreachable server's account is the same
            // in every run, and runs within a minute would find its minute spent (then
            // the mount appears at once and checks the key in the background).
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .output()
            .unwrap()
    };
    let out = try_mount(&srv.base, "wrong-key", &mnt);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("rejected"), "{err}");
    assert!(!err.contains("wrong-key"));
    assert!(!is_mounted(&mnt));
    let out = try_mount("http://127.0.0.1:9/api/v1/", KEY, &mnt);
    assert!(!out.status.success());
    assert_eq!(stderr_of(&out).trim().lines().count(), 1, "{}", stderr_of(&out));
    let out = try_mount(&srv.base, KEY, &dir.path().join("missing"));
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("missing"));
    let out = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .env_remove("INTAKEQ_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("INTAKEQ_API_KEY"));
}

#[test]
fn big_file_copies_in_and_out_byte_exact() {
    let store = account();
    let data = pseudo_random_bytes(77, 20 << 20);
    store.add_file(1002, "remote-big.bin", None, data.clone());
    let srv = server(store);
    // A 16 MiB memory cache: the 20 MiB file streams through the private disk cache.
    let m = mount(&srv, &["--cache-size", "16"]);
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("back.bin");
    ok("cp", &[&m.p("clients/1002/remote-big.bin"), &back]);
    let mut got = Vec::new();
    fs::File::open(&back).unwrap().read_to_end(&mut got).unwrap();
    assert!(got == data, "bytes out differ");
    let src = dir.path().join("big.bin");
    let data2 = pseudo_random_bytes(78, 20 << 20);
    fs::write(&src, &data2).unwrap();
    ok("cp", &[&src, &m.p("clients/1002/big.bin")]);
    assert!(
        srv.store.files_named(1002, "big.bin")[0].data == data2,
        "bytes in differ"
    );
}

#[test]
fn ctrl_c_on_a_cat_stuck_behind_a_slow_server_returns_promptly() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients/1001")]);
    srv.store
        .push_fault(Some(Endpoint::Download), Fault::Delay(Duration::from_secs(8)), Some(1));
    let mut cat = Command::new("cat")
        .arg(m.p("clients/1001/notes.txt"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(cat.try_wait().unwrap().is_none(), "cat is waiting on the slow server");
    let t0 = std::time::Instant::now();
    unsafe { libc::kill(cat.id() as i32, libc::SIGINT) };
    let st = wait_exit(&mut cat, Duration::from_secs(15));
    assert!(!st.success());
    let took = t0.elapsed();
    // Not a timing assertion on performance: without interrupt handling this takes the
    // full 20 s delay (or longer with retries); "promptly" here means well under it.
    assert!(took < Duration::from_secs(5), "cat took {took:?} to die");
    // A synchronous request (lookup of a client whose listing is slow): the kernel
    // waits for the daemon uninterruptibly, so the daemon must notice the caller dying.
    srv.store
        .push_fault(Some(Endpoint::ListFiles), Fault::Delay(Duration::from_secs(8)), Some(1));
    let mut ls = Command::new("ls")
        .arg(m.p("clients/1002"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(ls.try_wait().unwrap().is_none(), "ls is waiting on the slow server");
    let t0 = std::time::Instant::now();
    unsafe { libc::kill(ls.id() as i32, libc::SIGINT) };
    wait_exit(&mut ls, Duration::from_secs(25));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "ls took {took:?} to die");
    // Newer kernels release a killed caller themselves; the daemon must also stop
    // waiting on its behalf (older kernels wait for that answer).
    let t0 = std::time::Instant::now();
    while !m.log_text().contains("giving up on its request") {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "daemon kept waiting for a dead caller"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The mount is still healthy and the file readable once the server answers.
    srv.store.clear_faults();
    assert_eq!(fs::read(m.p("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
}

#[test]
fn a_truncated_download_never_yields_wrong_bytes() {
    let store = account();
    let data = pseudo_random_bytes(5, 3 << 20);
    store.add_file(1002, "big.bin", None, data.clone());
    let srv = server(store);
    let m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients/1002")]);
    srv.store
        .push_fault(Some(Endpoint::Download), Fault::CutBody { bytes: 1 << 20 }, Some(1));
    let out = run("cat", &[&m.p("clients/1002/big.bin")]);
    assert!(!out.status.success(), "a cut body is an error, not a short file");
    assert!(
        out.stdout.len() < data.len() && data.starts_with(&out.stdout),
        "only correct bytes were served"
    );
    srv.store
        .push_fault(Some(Endpoint::Download), Fault::ShortBody { bytes: 1000 }, Some(1));
    let out = run("cat", &[&m.p("clients/1002/big.bin")]);
    assert!(!out.status.success(), "a body shorter than Size is an error");
    assert!(data.starts_with(&out.stdout));
    let out = run("cat", &[&m.p("clients/1002/big.bin")]);
    assert!(out.status.success());
    assert!(out.stdout == data, "the next read downloads again, completely");
}

#[test]
fn an_overwrite_whose_upload_fails_keeps_the_old_file() {
    let srv = server(account());
    let m = mount(&srv, &["--retry-interval", "1"]);
    ok("ls", &[&m.p("clients/1001")]);
    srv.store.push_fault(
        Some(Endpoint::Upload),
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("new.txt");
    fs::write(&src, b"new version").unwrap();
    let out = run("cp", &[&src, &m.p("clients/1001/notes.txt")]);
    assert!(!out.status.success(), "cp reports the failed upload");
    let files = srv.store.files_named(1001, "notes.txt");
    assert_eq!(files.len(), 1);
    assert_eq!(&files[0].data[..], b"hello notes\n", "old file untouched");
    srv.store.clear_faults();
    // Retried in the background; then the old file goes.
    let t0 = std::time::Instant::now();
    loop {
        let files = srv.store.files_named(1001, "notes.txt");
        if files.len() == 1 && &files[0].data[..] == b"new version" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "staged overwrite never landed: {files:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_during_an_upload_lets_it_finish() {
    let srv = server(account());
    let mut m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients/1002")]);
    srv.store
        .push_fault(Some(Endpoint::Upload), Fault::Delay(Duration::from_secs(2)), Some(1));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("late.txt");
    fs::write(&src, b"landed during shutdown").unwrap();
    let mut cp = Command::new("cp")
        .arg(&src)
        .arg(m.p("clients/1002/late.txt"))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    assert!(
        wait_exit(&mut cp, Duration::from_secs(20)).success(),
        "cp's close saw the upload succeed"
    );
    let st = wait_exit(m.child.as_mut().unwrap(), Duration::from_secs(20));
    m.child = None;
    assert!(st.success(), "daemon exits 0; log:\n{}", m.log_text());
    assert_eq!(
        &srv.store.files_named(1002, "late.txt")[0].data[..],
        b"landed during shutdown"
    );
    assert!(!is_mounted(&m.mnt));
}

#[test]
fn call_counts_for_rm_and_mv_hit_their_minimum() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients/1001")]);
    srv.store.reset_counts();
    ok("rm", &[&m.p("clients/1001/notes.txt")]);
    assert_eq!(srv.store.total_requests(), 1, "rm of a listed file: one DELETE");
    fs::write(m.p("clients/1001/a.txt"), b"abc").unwrap();
    // Once the listing that learns a.txt's id has come, mv costs its minimum.
    wait_for(|| srv.store.count(Endpoint::ListFiles) == 1);
    srv.store.reset_counts();
    ok("mv", &[&m.p("clients/1001/a.txt"), &m.p("clients/1001/b.txt")]);
    assert_eq!(srv.store.count(Endpoint::Upload), 1);
    assert_eq!(srv.store.count(Endpoint::Delete), 1);
    assert_eq!(
        srv.store.total_requests(),
        2,
        "mv of a cached file: upload + delete; the new id comes from a later listing"
    );
    assert_eq!(&srv.store.files_named(1001, "b.txt")[0].data[..], b"abc");
    assert_eq!(fs::read(m.p("clients/1001/b.txt")).unwrap(), b"abc");
    wait_for(|| srv.store.count(Endpoint::ListFiles) == 1);
    assert_eq!(srv.store.total_requests(), 3);
}

#[test]
fn allow_other_mounts_use_0644_and_0755() {
    let srv = server(account());
    let m = mount(&srv, &["--allow-other"]);
    assert_eq!(
        fs::metadata(m.p("clients/1001/notes.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    assert_eq!(
        fs::metadata(m.p("clients/1001")).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(&*m.mnt.to_string_lossy()))
        .unwrap()
        .to_string();
    assert!(line.contains("allow_other"), "{line}");
}

/// `sh -c script` in `dir` as user `uid` with only the supplementary groups `groups`.
fn sh_as(uid: u32, groups: &[u32], dir: &std::path::Path, script: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let groups = groups.to_vec();
    let mut c = Command::new("sh");
    c.args(["-c", script]).current_dir(dir);
    unsafe {
        c.pre_exec(move || {
            let primary = groups.first().copied().unwrap_or(65534);
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(primary) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().unwrap()
}

#[test]
fn a_shared_mount_shows_the_given_owner_and_lets_only_its_group_write() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to other users needs root");
        return;
    }
    let srv = server(account());
    let m = mount(
        &srv,
        &["--allow-other", "--uid", "root", "--gid", "100", "--umask", "0007"],
    );
    // The test's own temp directory must let the desk user reach the mount point.
    fs::set_permissions(m.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dir = fs::metadata(m.p("clients/1001")).unwrap();
    assert_eq!((dir.mode() & 0o777, dir.uid(), dir.gid()), (0o770, 0, 100));
    let file = fs::metadata(m.p("clients/1001/notes.txt")).unwrap();
    assert_eq!((file.mode() & 0o777, file.uid(), file.gid()), (0o660, 0, 100));
    let before = srv.store.total_requests();
    // A member of the group (a desk behind Samba) writes; the server gets it under its name.
    let desk = sh_as(
        65534,
        &[100],
        &m.p("clients/1001"),
        "echo from the desk > desk.txt && cat notes.txt",
    );
    assert!(desk.status.success(), "{}", stderr_of(&desk));
    assert_eq!(String::from_utf8_lossy(&desk.stdout), "hello notes\n");
    assert_eq!(&srv.store.files_named(1001, "desk.txt")[0].data[..], b"from the desk\n");
    // Anyone else is turned away by the kernel, before the mount is asked anything.
    let requests = srv.store.total_requests();
    let other = sh_as(65534, &[65534], m.dir.path(), "cat mnt/clients/1001/notes.txt");
    assert!(!other.status.success());
    assert!(stderr_of(&other).contains("Permission denied"), "{}", stderr_of(&other));
    let other = sh_as(65534, &[65534], m.dir.path(), "echo x > mnt/clients/1001/intruder.txt");
    assert!(stderr_of(&other).contains("Permission denied"), "{}", stderr_of(&other));
    assert_eq!(srv.store.total_requests(), requests);
    assert!(srv.store.files_named(1001, "intruder.txt").is_empty());
    assert!(requests > before);
}

/// A shared mount's audit log says who did what: each upload, rename and read under
/// the uid and user name of the person whose process did it, names hashed, and with
/// `--no-delete` a desk's `rm` of a file on the server is refused and removes nothing.
#[test]
fn the_audit_log_names_each_person_and_no_delete_keeps_the_servers_files() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to other users needs root");
        return;
    }
    let srv = server(account());
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.log");
    let m = mount(
        &srv,
        &[
            "--allow-other",
            "--gid",
            "100",
            "--umask",
            "0007",
            "--no-delete",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    fs::set_permissions(m.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dir = m.p("clients/1001");
    let desk = sh_as(
        65534,
        &[100],
        &dir,
        "echo from the desk > desk.txt && cat notes.txt >/dev/null && mv desk.txt desk2.txt",
    );
    assert!(desk.status.success(), "{}", stderr_of(&desk));
    let rm = sh_as(65534, &[100], &dir, "rm notes.txt");
    assert!(stderr_of(&rm).contains("Operation not permitted"), "{}", stderr_of(&rm));
    fs::write(dir.join("root.txt"), b"by root").unwrap();
    assert_eq!(srv.store.files_named(1001, "notes.txt").len(), 1, "nothing deleted");
    assert_eq!(
        &srv.store.files_named(1001, "desk2.txt")[0].data[..],
        b"from the desk\n"
    );
    let text = fs::read_to_string(&audit).unwrap();
    assert_eq!(fs::metadata(&audit).unwrap().mode() & 0o777, 0o600);
    assert!(
        !text.contains("desk") && !text.contains("notes"),
        "names are hashed: {text}"
    );
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by = |op: &str, uid: u32| {
        lines
            .iter()
            .filter(|v| v["op"] == op && v["uid"] == uid && v["result"] == "ok" && v["client"] == 1001)
            .count()
    };
    assert_eq!(by("upload", 65534), 1, "{text}");
    assert_eq!(by("read", 65534), 1, "{text}");
    assert_eq!(by("rename", 65534), 1, "{text}");
    assert_eq!(by("upload", 0), 1, "{text}");
    assert!(
        lines
            .iter()
            .filter(|v| v["uid"] == 65534)
            .all(|v| v["user"] == "nobody"),
        "{text}"
    );
    // The rename's copy replaced the old one (a delete); notes.txt was never deleted.
    let notes = srv.store.files_named(1001, "notes.txt")[0].id.clone();
    assert!(
        lines
            .iter()
            .all(|v| v["op"] != "delete" || v["file_id"] != notes.as_str()),
        "{text}"
    );
    // An accepted upload learns its id from the confirming listing, recorded then
    // (under the person who wrote it, though the listing runs in the background).
    let root_txt = srv.store.files_named(1001, "root.txt")[0].id.clone();
    wait_for(|| {
        fs::read_to_string(&audit).unwrap().lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["op"] == "confirm" && v["file_id"] == root_txt.as_str() && v["uid"] == 0
        })
    });
    assert!(!text.contains(KEY));
}

#[test]
fn private_mounts_do_not_allow_other_users() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(&*m.mnt.to_string_lossy()))
        .unwrap()
        .to_string();
    assert!(!line.contains("allow_other"), "{line}");
    assert!(line.contains("default_permissions"), "{line}");
}

#[test]
fn demo_mounts_sample_data_and_ctrl_c_unmounts_with_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("demo");
    fs::create_dir(&mnt).unwrap();
    let mut child = Command::new(bin())
        .arg("demo")
        .arg(&mnt)
        .stderr(fs::File::create(dir.path().join("demo.log")).unwrap())
        .env_remove("INTAKEQ_API_KEY")
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !is_mounted(&mnt) {
        assert!(t0.elapsed() < Duration::from_secs(20), "demo did not mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    let clients = fs::read_dir(mnt.join("clients")).unwrap().count();
    assert!(clients >= 3, "demo has several clients");
    let out = ok("find", &[&mnt.join("clients"), &"-type", &"f"]);
    assert!(out.lines().count() >= 10, "demo has files:\n{out}");
    let banner = fs::read_to_string(dir.path().join("demo.log")).unwrap();
    for what in [
        "Try first:",
        &format!("\nTry first:\n  ls {}/clients ", mnt.display()),
        "they do NOT survive the demo",
        &format!("fusermount3 -u {}", mnt.display()),
    ] {
        assert!(banner.contains(what), "the demo says {what:?}:\n{banner}");
    }
    // Every file the banner names exists in the demo data.
    for f in [
        "clients/1001/session-notes.txt",
        "clients/1001/payments.csv",
        "clients/1002",
    ] {
        assert!(mnt.join(f).exists(), "{f}");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = wait_exit(&mut child, Duration::from_secs(20));
    assert!(
        st.success(),
        "{}",
        fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default()
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_busy_mount_is_detached_lazily_and_open_files_keep_working() {
    let srv = server(account());
    let mut m = mount(&srv, &[]);
    let mut held = fs::File::open(m.p("clients/1001/notes.txt")).unwrap();
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    let t0 = std::time::Instant::now();
    while is_mounted(&m.mnt) {
        assert!(t0.elapsed() < Duration::from_secs(10), "mount was not detached");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = String::new();
    held.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello notes\n", "the open file still reads after the detach");
    assert!(
        m.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "daemon serves until the last file closes"
    );
    drop(held);
    let st = wait_exit(m.child.as_mut().unwrap(), Duration::from_secs(20));
    m.child = None;
    assert!(st.success(), "exit {st:?}; log:\n{}", m.log_text());
}

#[test]
fn kill_9_right_after_cp_loses_nothing() {
    let srv = server(account());
    let mut m = mount(&srv, &[]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("consent.pdf");
    let data = pseudo_random_bytes(11, 200_000);
    fs::write(&src, &data).unwrap();
    ok("cp", &[&src, &m.p("clients/1002/consent.pdf")]);
    // cp has returned: close() returned 0, which means the server has it.
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    wait_exit(m.child.as_mut().unwrap(), Duration::from_secs(10));
    m.child = None;
    let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&m.mnt).status();
    assert_eq!(srv.store.files_named(1002, "consent.pdf")[0].data, data);
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    drop(m);
    let m2 = mount_in(dir, &srv, &[]);
    assert_eq!(fs::read(m2.p("clients/1002/consent.pdf")).unwrap(), data);
    assert_eq!(
        srv.store.files_named(1002, "consent.pdf").len(),
        1,
        "the remount uploads nothing twice"
    );
}

/// The limiter's spending is kept in a private per-account ledger: a remount starts
/// from what was spent in the last minute and day, instead of from zero and then
/// colliding with the server's 429s. With the minute spent, the remount still appears
/// at once (its key check waits for the next slot in the background, and is dropped at
/// unmount) and serves what the first mount kept, with no call. With a slot further
/// away than `--max-wait`, the mount fails at once, with no call.
#[test]
fn a_remount_counts_the_requests_an_earlier_mount_spent_and_appears_at_once() {
    let srv = server(account());
    let m = mount(&srv, &["--rate-limit", "3"]);
    assert_eq!(fs::read(m.p("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    let spent = srv.store.total_requests();
    assert_eq!(spent, 3, "the key check, one listing, one download");
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    // `mount_in` fails the test unless the mount appears within 20 s (the minute's wait
    // would have kept it away for about 60).
    let m2 = mount_in(dir, &srv, &["--rate-limit", "3"]);
    let names: Vec<String> = fs::read_dir(m2.p("clients/1001"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"notes.txt".to_string()), "{names:?}");
    let log = m2.log_text();
    assert!(
        log.contains("the mount appears now and checks its key at the next free slot"),
        "{log}"
    );
    assert_eq!(srv.store.total_requests(), spent, "the minute is still spent: no call");
    let t0 = std::time::Instant::now();
    let (status, _, dir) = m2.unmount();
    assert!(status.success());
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the waiting key check does not hold the unmount"
    );
    let out = Command::new(common::bin())
        .arg("mount")
        .arg(dir.path().join("mnt"))
        .args(["--base-url", &srv.base, "--foreground", "--daily-limit", "1000"])
        .args(["--rate-limit", "3", "--max-wait", "1"])
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("INTAKEQ_API_KEY", KEY)
        .env("XDG_STATE_HOME", dir.path().join("state")) // where `mount` keeps the ledger
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("cannot use the IntakeQ API"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(srv.store.total_requests(), spent, "no call");
}

/// What an SMB desk's overwrite does (smbd opens read-write, then truncates): with the
/// old bytes never needed, the open waits for nothing and nothing is downloaded.
#[test]
fn an_overwrite_that_truncates_first_downloads_nothing() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let p = m.p("clients/1001/notes.txt");
    assert_eq!(fs::metadata(&p).unwrap().len(), 12);
    let before = srv.store.total_requests();
    let mut f = fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
    f.set_len(0).unwrap();
    f.write_all(b"the desk's new version\n").unwrap();
    drop(f);
    let on_server = srv.store.files_named(1001, "notes.txt");
    assert_eq!(on_server.len(), 1);
    assert_eq!(&on_server[0].data[..], b"the desk's new version\n");
    assert_eq!(srv.store.count(Endpoint::Download), 0);
    assert_eq!(srv.store.count(Endpoint::Upload), 1);
    assert_eq!(srv.store.count(Endpoint::Delete), 1);
    // The upload's confirming listing at most.
    assert!(
        srv.store.total_requests() - before <= 3,
        "{}",
        srv.store.total_requests() - before
    );
}

/// An overwrite abandoned after its truncate and before its first byte (a desk that
/// gave up) leaves the patient's file as it was, on the server and in the mount; an
/// open with O_TRUNC (`: > file`) still empties a file.
#[test]
fn an_overwrite_abandoned_before_its_first_byte_leaves_the_file() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let p = m.p("clients/1001/notes.txt");
    assert_eq!(fs::metadata(&p).unwrap().len(), 12);
    let before = srv.store.total_requests();
    let f = fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    assert_eq!(srv.store.total_requests(), before, "nothing sent");
    assert_eq!(&srv.store.files_named(1001, "notes.txt")[0].data[..], b"hello notes\n");
    // The last close (release) reaches the mount just after close() returns; then the
    // kernel is told to forget the size 0 it cached.
    wait_for(|| fs::metadata(&p).unwrap().len() == 12);
    assert_eq!(fs::read(&p).unwrap(), b"hello notes\n");
    // A partial edit still works: the current bytes are fetched for it.
    let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"more\n").unwrap();
    drop(f);
    assert_eq!(
        &srv.store.files_named(1001, "notes.txt")[0].data[..],
        b"hello notes\nmore\n"
    );
    let ok = Command::new("sh")
        .arg("-c")
        .arg(": > notes.txt")
        .current_dir(m.p("clients/1001"))
        .status()
        .unwrap();
    assert!(ok.success());
    // Nothing was written before the close: uploaded at the last release, which reaches
    // the mount just after the shell's close returned (as for a redirect's first close).
    wait_for(|| {
        let on_server = srv.store.files_named(1001, "notes.txt");
        on_server.len() == 1 && on_server[0].data.is_empty()
    });
}
