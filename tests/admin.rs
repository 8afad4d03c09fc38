//! FUSE tier for what the IT person sees: the mount's type, refused mountpoints and
//! spools, extended attributes, `df`, `status`, mounting through `mount -t` and the
//! systemd readiness message. The real binary mounted against the fake server.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output, Stdio};

use common::*;
use intakeq_fs::fake::store::Endpoint;

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
    // `--spool-dir DIR` keeps the spool in the private `DIR/intakeq-fs-<uid>/<account>`.
    let private = |d: &std::path::Path| {
        d.join(format!("intakeq-fs-{}", unsafe { libc::geteuid() }))
            .join(intakeq_fs::core::account_id(&srv.base, KEY))
    };
    let lock = fs::read_to_string(private(&spool).join("lock")).unwrap();
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
        fs::read_to_string(private(&m2.dir.path().join("spool")).join("lock"))
            .unwrap()
            .trim(),
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

/// Mount in the foreground like `common::mount`, with the private state directory (and
/// so the status files) under `state`.
fn mount_with_state(srv: &Server, state: &std::path::Path) -> Mount {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let log = dir.path().join("log.txt");
    let child = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args(["--base-url", &srv.base, "--foreground"])
        .args(["--rate-limit", "100000", "--daily-limit", "100000"])
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("INTAKEQ_API_KEY", KEY)
        .env("XDG_STATE_HOME", state)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let m = Mount {
        dir,
        mnt,
        child: Some(child),
        log,
    };
    m.wait_mounted();
    m
}

/// `intakeq-fs status ARGS` with the state directory `state`.
fn status(state: &std::path::Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(bin());
    c.arg("status").env("XDG_STATE_HOME", state);
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run `status` until its output contains `want` (the daemon republishes every second).
fn status_until(state: &std::path::Path, want: &str) -> String {
    for _ in 0..200 {
        let out = stdout_of(&status(state, &[]));
        if out.contains(want) {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "status never showed {want:?}; last:\n{}",
        stdout_of(&status(state, &[]))
    );
}

#[test]
fn status_shows_a_failed_upload_by_name_the_budget_and_the_last_error_without_a_call() {
    use intakeq_fs::fake::store::Fault;
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let srv = server(account());
    let state = tempfile::tempdir().unwrap();
    let m = mount_with_state(&srv, state.path());
    ok("ls", &[&m.p("clients/1002")]);
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
    assert_eq!(unsafe { libc::close(f.into_raw_fd()) }, -1, "close reports the failure");
    let text = status_until(state.path(), "1 failed");
    let before = srv.store.total_requests();
    let out = status(state.path(), &[&m.mnt]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(srv.store.total_requests(), before, "status spends no call");
    let text2 = stdout_of(&out);
    for t in [&text, &text2] {
        assert!(
            t.starts_with(&format!("{}  (pid {}, up ", m.mnt.display(), m.pid())),
            "{t}"
        );
        assert!(t.contains("  uploads:  0 pending, 1 failed, 0 running\n"), "{t}");
        assert!(t.contains("    failed      1002/precious.txt (12 bytes)\n"), "{t}");
        assert!(t.contains("/100000 in the last minute"), "{t}");
        assert!(t.contains("  deletes owed: 0\n"), "{t}");
        assert!(t.contains("next free request slot: now"), "{t}");
        assert!(t.contains("  last errors:\n"), "{t}");
        assert!(t.lines().any(|l| l.contains("WARN") && l.contains("flush")), "{t}");
        assert!(!t.contains(KEY));
    }
    let account = intakeq_fs::core::account_id(&srv.base, KEY);
    assert!(text2.contains(&format!("  account:  {account} ")), "{text2}");
    // JSON for scripts; the file itself is private.
    let json: serde_json::Value = serde_json::from_slice(&status(state.path(), &[&"--json"]).stdout).unwrap();
    assert_eq!(json[0]["running"], true);
    assert_eq!(json[0]["core"]["uploads"][0]["name"], "precious.txt");
    assert_eq!(json[0]["core"]["uploads"][0]["state"], "failed");
    // In the account's own directory.
    let file = state.path().join(format!("intakeq-fs/run/{account}/{}.json", m.pid()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // Another mountpoint: nothing there.
    let none = status(state.path(), &[&m.dir.path()]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stdout_of(&none).starts_with("no intakeq-fs mount of this user at "));
    // A daemon killed outright leaves a stale file, reported as such.
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    let mut m = m;
    wait_exit(m.child.as_mut().unwrap(), std::time::Duration::from_secs(10));
    m.child = None;
    let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&m.mnt).status();
    let out = status(state.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "no mount running");
    assert!(
        stdout_of(&out).contains("NOT RUNNING: stale status"),
        "{}",
        stdout_of(&out)
    );
    assert!(stdout_of(&out).contains("failed      1002/precious.txt"));
}

#[test]
fn the_status_file_goes_at_unmount() {
    let srv = server(account());
    let state = tempfile::tempdir().unwrap();
    let m = mount_with_state(&srv, state.path());
    status_until(state.path(), &format!("(pid {}, up ", m.pid()));
    let (st, _, _) = m.unmount();
    assert!(st.success());
    let run = state.path().join("intakeq-fs/run");
    assert_eq!(
        fs::read_dir(&run).unwrap().count(),
        0,
        "nothing left in {}",
        run.display()
    );
    let out = status(state.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_of(&out), "no intakeq-fs mount of this user is running\n");
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    let bash = ok(bin(), &[&"completions", &"bash"]);
    assert!(
        bash.contains("complete -F _intakeq-fs") || bash.contains("complete -F _intakeq__fs"),
        "{bash}"
    );
    for word in ["mount", "status", "--api-key-file", "--nonempty"] {
        assert!(bash.contains(word), "{word} missing from the bash completion");
    }
    assert!(ok(bin(), &[&"completions", &"zsh"]).starts_with("#compdef intakeq-fs"));
    let man = ok(bin(), &[&"man"]);
    assert!(
        man.starts_with(".ie \\n(.g .ds Aq") || man.contains(".TH intakeq-fs 1"),
        "{man}"
    );
    for section in ["INTAKEQ-FS MOUNT", "INTAKEQ-FS STATUS", "INTAKEQ-FS DEMO"] {
        assert!(man.contains(section), "{section} missing from the man page");
    }
    assert!(man.contains("api\\-key\\-file"), "mount's options are in the man page");
}

/// Point /usr/local/bin/intakeq-fs at the binary under test: `mount(8)` runs helpers
/// with the default PATH, so `mount.fuse3` finds `intakeq-fs` only there (or in /usr/bin).
/// Removed again when the returned guard drops, so no later run (the package's smoke
/// test, a user's `mount -t`) finds a binary under test there.
fn install_on_default_path() -> impl Drop {
    struct Unlink(&'static std::path::Path);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = fs::remove_file(self.0);
        }
    }
    let link = std::path::Path::new("/usr/local/bin/intakeq-fs");
    if let Ok(md) = fs::symlink_metadata(link) {
        assert!(
            md.file_type().is_symlink(),
            "{} is a real file: remove it to run this test",
            link.display()
        );
    }
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(bin(), &tmp).unwrap();
    fs::rename(&tmp, link).unwrap();
    Unlink(link)
}

fn wait_gone(pid: u32) {
    for _ in 0..600 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("process {pid} did not exit");
}

#[test]
fn mount_t_fuse_intakeq_fs_with_o_options_mounts_like_an_fstab_line() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mount -t needs root");
        return;
    }
    let _on_path = install_on_default_path();
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let (mnt, key) = (dir.path().join("mnt"), dir.path().join("key"));
    fs::create_dir(&mnt).unwrap();
    fs::write(&key, format!("{KEY}\n")).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let opts = format!(
        "api_key_file={},base_url={},spool_dir={},cache_dir={},log_file={},rate_limit=1000,daily_limit=1000,_netdev,nofail",
        key.display(),
        srv.base,
        p("spool"),
        p("cache"),
        p("log.txt")
    );
    srv.store.reset_counts();
    let out = Command::new("mount")
        .args(["-t", "fuse.intakeq-fs", "intakeq"])
        .arg(&mnt)
        .args(["-o", &opts])
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "mount -t failed: {}", stderr_of(&out));
    // `mount` returned: the daemon went to the background once the mount was ready.
    assert_eq!(proc_mounts_type(&mnt).as_deref(), Some("fuse.intakeq-fs"));
    assert_eq!(
        ok("ls", &[&mnt.join("clients")]).split_whitespace().collect::<Vec<_>>(),
        ["1001", "1002"]
    );
    assert_eq!(fs::read(mnt.join("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    assert_eq!(srv.store.count(Endpoint::ListFolders), 1, "the mount's access check");
    assert_eq!(srv.store.count(Endpoint::ListClients), 1);
    let spool = account_spool(dir.path(), &srv);
    let pid: u32 = fs::read_to_string(spool.join("lock")).unwrap().trim().parse().unwrap();
    let st = status(&dir.path().join("state"), &[&mnt]);
    assert_eq!(st.status.code(), Some(0), "{}", stdout_of(&st));
    assert!(stdout_of(&st).contains(&format!("(pid {pid}, ")));
    assert!(!fs::read_to_string("/proc/mounts").unwrap().contains(KEY));
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(KEY),
        "the key is not in argv"
    );
    ok("umount", &[&mnt]);
    wait_gone(pid);
    assert!(!is_mounted(&mnt));
    let log = fs::read_to_string(dir.path().join("log.txt")).unwrap();
    assert!(log.contains("unmounted"), "{log}");
}

#[test]
fn a_bad_mount_option_fails_with_one_line_and_exit_1() {
    let out = Command::new(bin())
        .args(["intakeq", "/nonexistent-mnt", "-o", "api_key_file=/k,frobnicate=1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out),
        "intakeq-fs: unknown mount option \"frobnicate\" (see `man intakeq-fs` or the README's fstab section)\n"
    );
}

#[test]
fn under_systemd_the_daemon_says_ready_once_the_mount_answers_and_stopping_at_unmount() {
    use std::os::unix::net::UnixDatagram;
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut child = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args(["--base-url", &srv.base, "--foreground"])
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("INTAKEQ_API_KEY", KEY)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within 30 s");
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        format!("READY=1\nSTATUS=mounted at {}", mnt.display())
    );
    // Ready means answering: a stat and a listing work at once.
    assert!(is_mounted(&mnt));
    assert!(mnt.join("clients/1001").is_dir());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("STOPPING=1 at unmount");
    assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=unmounted; finishing uploads");
    let st = wait_exit(&mut child, std::time::Duration::from_secs(30));
    assert!(st.success());
    assert!(!is_mounted(&mnt));
}

#[test]
fn the_shipped_user_unit_is_type_notify_and_uses_only_real_flags() {
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/systemd/intakeq-fs.service"
    ))
    .unwrap();
    let line = |k: &str| -> String {
        unit.lines()
            .find(|l| l.starts_with(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in the unit"))
            .to_string()
    };
    assert_eq!(line("Type"), "Type=notify");
    let start = line("ExecStart");
    assert!(
        start.starts_with("ExecStart=/usr/bin/intakeq-fs mount %h/IntakeQ --foreground "),
        "{start}"
    );
    assert!(line("ExecStop").contains("fusermount3 -u"));
    let help = ok(bin(), &[&"mount", &"--help"]);
    for flag in start.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "{flag} is not a flag of intakeq-fs mount");
    }
    let stop: u64 = line("TimeoutStopSec")["TimeoutStopSec=".len()..].parse().unwrap();
    let drain: u64 = start
        .split("--drain-timeout ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(stop > drain, "systemd must not kill a draining daemon");
}

/// The system template (intakeq-fs@.service) and its example configuration use only
/// real flags, get the key from an encrypted credential, run as the packaged user with
/// one capability, and never get a mount namespace that would hide the mount.
#[test]
fn the_shipped_system_unit_runs_as_its_user_with_only_real_flags_and_no_private_mounts() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/systemd/");
    let unit = fs::read_to_string(format!("{dir}intakeq-fs@.service")).unwrap();
    let conf = fs::read_to_string(format!("{dir}intakeq-fs-instance.conf.example")).unwrap();
    let value = |text: &str, k: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}="))
            .to_string()
    };
    assert_eq!(value(&unit, "Type"), "notify");
    assert_eq!(value(&unit, "User"), "intakeq-fs");
    assert_eq!(value(&unit, "CapabilityBoundingSet"), "CAP_SYS_ADMIN");
    assert_eq!(value(&unit, "NoNewPrivileges"), "yes");
    assert!(value(&unit, "LoadCredentialEncrypted").starts_with("intakeq-api-key:"));
    for hiding in [
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "PrivateMounts=",
        "ProtectKernelTunables=",
        "ProtectControlGroups=",
        "ReadOnlyPaths=",
        "MountFlags=",
    ] {
        assert!(
            !unit.lines().any(|l| l.starts_with(hiding)),
            "{hiding} would hide the mount from Samba"
        );
    }
    let help = ok(bin(), &[&"mount", &"--help"]);
    let start = value(&unit, "ExecStart");
    assert!(
        start.starts_with("/usr/bin/intakeq-fs mount ${MOUNTPOINT} --foreground "),
        "{start}"
    );
    let options = value(&conf, "OPTIONS");
    let flags = start.split_whitespace().chain(options.split_whitespace());
    for flag in flags.filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "{flag} is not a flag of intakeq-fs mount");
    }
    let stop: u64 = value(&unit, "TimeoutStopSec").parse().unwrap();
    assert!(stop > 60, "longer than --drain-timeout 60");
}

#[test]
fn a_file_managers_content_type_sniffing_costs_one_download_per_unclear_name() {
    let store = account();
    for name in [
        "scan",
        "export.dat",
        "letter.txt",
        "photo.jpg",
        "notes.md",
        "backup.bin",
    ] {
        store.add_file(1002, name, None, &b"%PDF-1.4 sniff me\n"[..]);
    }
    let srv = server(store);
    let m = mount(&srv, &[]);
    let dir = m.p("clients/1002");
    ok("ls", &[&dir]);
    srv.store.reset_counts();
    // What Nautilus asks for each row: the content type, sniffed when the name is unclear.
    let out = ok("gio", &[&"list", &"-a", &"standard::content-type", &dir]);
    let sniffed = srv.store.count(Endpoint::Download);
    srv.store.reset_counts();
    ok("gio", &[&"list", &"-a", &"standard::fast-content-type", &dir]);
    assert_eq!(srv.store.total_requests(), 0, "the fast type comes from the name only");
    // scan, export.dat and backup.bin: no extension, an unknown one, and one that only
    // says "bytes". .txt, .md, .jpg and .pdf are taken from the name. The listing
    // was warm, so the downloads are the only calls.
    assert_eq!(sniffed, 3, "{out}");
    assert!(
        out.contains("scan\t18\t(regular)\tstandard::content-type=application/pdf"),
        "{out}"
    );
    // Sniffed once: the bytes stay in the cache, so the next look is free.
    srv.store.reset_counts();
    ok("gio", &[&"list", &"-a", &"standard::content-type", &dir]);
    assert_eq!(srv.store.total_requests(), 0);
}

/// `GET path` on `addr` with these extra header lines; the status code.
fn http_status(addr: &str, path: &str, headers: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn the_mock_server_prints_a_random_admin_token_and_its_admin_api_requires_it() {
    let start = || {
        let mut server = Command::new(bin())
            .args(["mock-server", "--listen", "127.0.0.1:0", "--demo", "--api-key", KEY])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (mut base, mut header) = (String::new(), String::new());
        {
            use std::io::BufRead;
            let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
            out.read_line(&mut base).unwrap();
            out.read_line(&mut header).unwrap();
        }
        (server, base.trim().to_string(), header.trim().to_string())
    };
    let (mut server, base, header) = start();
    let (mut other, _, other_header) = start();
    let _ = other.kill();
    let _ = other.wait();
    let token = header
        .strip_prefix("X-Admin-Token: ")
        .unwrap_or_else(|| panic!("{header:?}"));
    assert_eq!(token.len(), 32, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_ne!(header, other_header, "random per start");
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1/")
        .to_string();
    let files = "/_admin/files?clientId=1001";
    assert_eq!(
        http_status(&addr, files, ""),
        401,
        "no token: a local user reads nothing"
    );
    assert_eq!(http_status(&addr, files, &format!("{other_header}\r\n")), 401);
    assert_eq!(http_status(&addr, files, &format!("{header}\r\n")), 200);
    let _ = server.kill();
    let _ = server.wait();
}
