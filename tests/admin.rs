//! FUSE tier for what the IT person sees: the mount's type, refused mountpoints and
//! spools, extended attributes, `df`, `status`, mounting through `mount -t` and the
//! systemd readiness message. The real binary mounted against the fake server.

mod common;

use std::fs;
use std::process::{Command, Output, Stdio};

use common::*;

/// Run `intakeq-fs mount` in the foreground with the test's server and key, for a mount
/// that is expected to be refused before it starts (so it returns by itself).
fn refused_mount(srv: &Server, mnt: &std::path::Path, spool: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .arg("mount")
        .arg(mnt)
        .args(["--base-url", &srv.base, "--foreground"])
        .arg("--spool-dir")
        .arg(spool)
        .arg("--cache-dir")
        .arg(spool.with_extension("cache"))
        .args(extra)
        .env("INTAKEQ_API_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Lines addressed to the user (the foreground log may repeat the error).
fn user_lines(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.starts_with("intakeq-fs: ")).count()
}

/// The type field of the /proc/mounts line of `p`.
fn proc_mounts_type(p: &std::path::Path) -> Option<String> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let p = p.to_string_lossy();
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(1) == Some(&&*p)).then(|| f[2].to_string())
    })
}

#[test]
fn the_mount_shows_as_fuse_intakeq_fs_in_proc_mounts_and_findmnt() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    assert_eq!(proc_mounts_type(&m.mnt).as_deref(), Some("fuse.intakeq-fs"));
    let out = ok("findmnt", &[&"-n", &"-o", &"FSTYPE,SOURCE", &m.mnt]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["fuse.intakeq-fs", "intakeq"]
    );
    let (status, _, _) = m.unmount();
    assert!(status.success());
}

#[test]
fn mounting_on_an_already_mounted_directory_fails_with_one_line_and_exit_1() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let other = tempfile::tempdir().unwrap();
    srv.store.reset_counts();
    let out = refused_mount(&srv, &m.mnt, &other.path().join("spool"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert_eq!(user_lines(&err), 1, "one line: {err}");
    assert!(err.contains("already a mount point (fuse.intakeq-fs)"), "{err}");
    assert_eq!(srv.store.total_requests(), 0, "refused before any call");
    // The first mount is untouched and still the only one there.
    let stacked = fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some(&*m.mnt.to_string_lossy()))
        .count();
    assert_eq!(stacked, 1);
    assert_eq!(ok("ls", &[&m.p("clients")]).split_whitespace().count(), 2);
}

#[test]
fn mounting_on_a_non_empty_directory_fails_unless_nonempty_is_given() {
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    fs::write(mnt.join("keep.txt"), b"local").unwrap();
    let out = refused_mount(&srv, &mnt, &dir.path().join("spool"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert_eq!(user_lines(&err), 1, "one line: {err}");
    assert!(err.contains("is not empty") && err.contains("--nonempty"), "{err}");
    assert!(!is_mounted(&mnt));
    assert_eq!(srv.store.total_requests(), 0);
    // With --nonempty it mounts over the file, which comes back after unmount.
    let m = mount_in(dir, &srv, &["--nonempty"]);
    assert!(!m.p("keep.txt").exists());
    assert!(m.p("clients/1001").is_dir());
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    assert_eq!(fs::read(dir.path().join("mnt/keep.txt")).unwrap(), b"local");
}

#[test]
fn two_daemons_never_share_a_spool_and_the_second_names_the_holder() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let spool = m.dir.path().join("spool");
    let lock = fs::read_to_string(spool.join("lock")).unwrap();
    assert_eq!(lock.trim(), m.pid().to_string());
    let other = tempfile::tempdir().unwrap();
    srv.store.reset_counts();
    let out = refused_mount(&srv, other.path(), &spool, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert_eq!(user_lines(&err), 1, "one line: {err}");
    assert!(err.contains(&format!("in use by process {}", m.pid())), "{err}");
    assert!(!is_mounted(other.path()));
    assert_eq!(srv.store.total_requests(), 0, "refused before any call");
    // Once the first daemon is gone, the spool is free again.
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    let m2 = mount_in(dir, &srv, &[]);
    assert_eq!(
        fs::read_to_string(m2.dir.path().join("spool/lock")).unwrap().trim(),
        m2.pid().to_string()
    );
}

/// `getfattr -d` of `p`: the `name="value"` lines.
fn getfattr(p: &std::path::Path) -> Vec<String> {
    ok("getfattr", &[&"-d", &"--absolute-names", &p])
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn getfattr_shows_a_files_intakeq_metadata_without_a_call() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients/1001")]);
    srv.store.reset_counts();
    let card = srv.store.files_named(1001, "card.png").remove(0);
    let created = intakeq_fs::core::xattr::iso8601_utc(card.created_ms);
    assert_eq!(
        getfattr(&m.p("clients/1001/Insurance/card.png")),
        [
            "user.intakeq.client_id=\"1001\"".to_string(),
            "user.intakeq.content_type=\"image/png\"".to_string(),
            format!("user.intakeq.date_created=\"{created}\""),
            "user.intakeq.folder=\"Insurance\"".to_string(),
            "user.intakeq.folder_id=\"fo2\"".to_string(),
            format!("user.intakeq.id=\"{}\"", card.id),
            "user.intakeq.size=\"5000\"".to_string(),
        ]
    );
    let one = ok(
        "getfattr",
        &[
            &"--only-values",
            &"-n",
            &"user.intakeq.id",
            &m.p("clients/1001/notes.txt"),
        ],
    );
    assert_eq!(one, srv.store.files_named(1001, "notes.txt")[0].id);
    assert_eq!(getfattr(&m.p("clients/1001")), ["user.intakeq.client_id=\"1001\""]);
    assert_eq!(
        getfattr(&m.p("clients/1001/Intake Forms")),
        [
            "user.intakeq.client_id=\"1001\"",
            "user.intakeq.folder=\"Intake Forms\"",
            "user.intakeq.folder_id=\"fo1\""
        ]
    );
    let missing = run(
        "getfattr",
        &[&"-n", &"user.intakeq.nope", &m.p("clients/1001/notes.txt")],
    );
    assert!(
        stderr_of(&missing).contains("No such attribute"),
        "{}",
        stderr_of(&missing)
    );
    assert_eq!(srv.store.total_requests(), 0, "attributes come from the listing");
}

#[test]
fn setting_or_removing_attributes_fails_with_enotsup_and_cp_a_still_copies_in() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let notes = m.p("clients/1001/notes.txt");
    let set = run("setfattr", &[&"-n", &"user.note", &"-v", &"x", &notes]);
    assert!(!set.status.success());
    assert!(
        stderr_of(&set).contains("Operation not supported"),
        "{}",
        stderr_of(&set)
    );
    let rm = run("setfattr", &[&"-x", &"user.intakeq.id", &notes]);
    assert!(!rm.status.success());
    assert!(stderr_of(&rm).contains("Operation not supported"), "{}", stderr_of(&rm));
    assert!(getfattr(&notes).iter().any(|l| l.starts_with("user.intakeq.id=")));
    // A local file with attributes: cp -a takes ENOTSUP as "no attributes here".
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("tagged.txt");
    fs::write(&src, b"tagged\n").unwrap();
    if run("setfattr", &[&"-n", &"user.tag", &"-v", &"1", &src])
        .status
        .success()
    {
        ok("cp", &[&"-a", &src, &m.p("clients/1002/")]);
        assert_eq!(&srv.store.files_named(1002, "tagged.txt")[0].data[..], b"tagged\n");
    }
}

#[test]
fn df_and_df_i_show_consistent_numbers() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    ok("ls", &[&m.p("clients/1001")]);
    let nums = |args: &[&dyn AsRef<std::ffi::OsStr>]| -> Vec<u64> {
        let out = ok("df", args);
        let line = out.lines().nth(1).unwrap().to_string();
        line.split_whitespace().map(|n| n.parse().unwrap()).collect()
    };
    let i = nums(&[&"--output=itotal,iused,iavail", &m.mnt]);
    let df_i = ok("df", &[&"-i", &m.mnt]);
    let iused = df_i
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    assert_eq!(iused, i[1].to_string(), "df -i shows a plain count:\n{df_i}");
    assert_eq!(i[0], i[1] + i[2], "total = used + free: {i:?}");
    assert!(i[1] >= 4 && i[1] < 100, "the inodes known to the mount: {i:?}");
    let b = nums(&[&"-B1", &"--output=size,used,avail", &m.mnt]);
    assert_eq!(b[0], 1 << 40);
    assert_eq!(b[0], b[1] + b[2], "{b:?}");
}

#[test]
fn gio_trash_fails_as_trash_not_supported_and_the_file_stays() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let notes = m.p("clients/1001/notes.txt");
    ok("ls", &[&m.p("clients/1001")]);
    srv.store.reset_counts();
    // GLib cannot create <mount>/.Trash-$uid (mkdir is refused) and reports
    // G_IO_ERROR_NOT_SUPPORTED, on which file managers offer "delete permanently".
    let out = Command::new("gio")
        .arg("trash")
        .arg(&notes)
        .env("HOME", m.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("Unable to find or create trash directory"),
        "{}",
        stderr_of(&out)
    );
    assert!(notes.exists());
    assert!(!m.p(".Trash-0").exists() && !m.p(".Trash").exists());
    assert_eq!(srv.store.files_named(1001, "notes.txt").len(), 1);
    assert_eq!(srv.store.total_requests(), 0);
    // "Delete permanently" is an unlink, which works.
    fs::remove_file(&notes).unwrap();
    assert!(srv.store.files_named(1001, "notes.txt").is_empty());
}
