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
