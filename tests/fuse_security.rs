//! FUSE tier, security: the real binary started the way an attacker or a careless
//! administrator would leave things (a readable key file, no home directory, a shared
//! or planted spool, a plain-http URL), checking it refuses with one line or keeps the
//! key and the records private.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use intakeq_fs::fake::store::Endpoint;

fn mode(p: &std::path::Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn uid() -> u32 {
    unsafe { libc::geteuid() }
}

/// `intakeq-fs mount <mnt> --base-url <base> <extra>` with the key in the environment,
/// run to completion (it must fail, or go to the background).
fn mount_cmd(mnt: &std::path::Path, base: &str, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut c = Command::new(bin());
    c.arg("mount").arg(mnt).args(["--base-url", base]);
    for e in extra {
        c.arg(e);
    }
    c.env("INTAKEQ_API_KEY", KEY);
    c
}

/// The error a failed start ends with: exit 1, the key nowhere in stderr, and the last
/// line `intakeq-fs: <one line>` (in the foreground, log lines come before it).
fn final_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "must fail with 1: {}", stderr_of(out));
    let err = stderr_of(out);
    assert!(!err.contains(KEY), "{err}");
    let last = err.trim().lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("intakeq-fs: "), "{err}");
    last
}

/// A start refused before anything else happened: exactly one line.
fn one_line_error(out: &Output) -> String {
    let last = final_error(out);
    assert_eq!(stderr_of(out).trim().lines().count(), 1, "one line: {}", stderr_of(out));
    last
}

#[test]
fn the_key_is_wiped_from_the_daemons_environment_and_core_dumps_are_off() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let pid = m.pid();
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let text = String::from_utf8_lossy(&environ);
    assert!(
        text.contains("INTAKEQ_FS_LOG=debug"),
        "the block is readable and still holds other variables"
    );
    assert!(!text.contains(KEY), "the key is readable in /proc/{pid}/environ");
    assert!(!text.contains("INTAKEQ_API_KEY"), "the variable is gone from the block");
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(KEY));
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert_eq!(core.split_whitespace().collect::<Vec<_>>()[4..6], ["0", "0"], "{core}");
    // The mount works with the wiped key.
    assert_eq!(fs::read(m.p("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    let (status, log, _) = m.unmount();
    assert!(status.success());
    assert!(!log.contains(KEY));
    assert!(!log.contains('\u{1b}'), "no ANSI codes in a log that is not a terminal");
}

#[test]
fn a_key_file_others_can_read_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let key = dir.path().join("key");
    fs::write(&key, format!("{KEY}\n")).unwrap();
    let spool = dir.path().join("spool");
    let cache = dir.path().join("cache");
    let run = || {
        Command::new(bin())
            .arg("mount")
            .arg(&mnt)
            .args(["--base-url", "http://127.0.0.1:9/api/v1/", "--foreground"])
            .arg("--api-key-file")
            .arg(&key)
            .arg("--spool-dir")
            .arg(&spool)
            .arg("--cache-dir")
            .arg(&cache)
            .env_remove("INTAKEQ_API_KEY")
            .output()
            .unwrap()
    };
    for m in [0o644, 0o640, 0o604, 0o660] {
        fs::set_permissions(&key, fs::Permissions::from_mode(m)).unwrap();
        let err = one_line_error(&run());
        assert!(err.contains(&format!("chmod 600 {}", key.display())), "{m:o}: {err}");
    }
    // At 0600 the key file is accepted: the failure is now the unreachable server.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let err = final_error(&run());
    assert!(!err.contains("chmod"), "{err}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

#[test]
fn plain_http_to_another_host_is_refused_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let t0 = Instant::now();
    // 192.0.2.1 is TEST-NET-1: a connection attempt would hang until the connect timeout.
    let out = mount_cmd(&mnt, "http://192.0.2.1/api/v1/", &[&"--foreground"])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("refusing plain http://") && err.contains("--insecure-plain-http"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(!is_mounted(&mnt));
}

/// Run `c` as an ordinary user (nobody) when the tests run as root, so that what a
/// user mount with no home does can be checked either way.
fn as_a_user(c: &mut Command) -> &mut Command {
    if uid() == 0 {
        unsafe {
            c.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    c
}

#[test]
fn with_no_private_home_a_user_mount_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let bare = |extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = mount_cmd(&mnt, "http://127.0.0.1:9/api/v1/", extra);
        c.env_clear().env("INTAKEQ_API_KEY", KEY).env("PATH", "/usr/bin:/bin");
        as_a_user(&mut c).output().unwrap()
    };
    let err = one_line_error(&bare(&[]));
    assert!(err.contains("no private place"), "{err}");
    let err = one_line_error(&bare(&[&"--foreground"]));
    assert!(err.contains("no private place"), "the spool needs one too: {err}");

    // A run-time directory that is private is used instead.
    let run = dir.path().join("run");
    fs::create_dir(&run).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
    if uid() == 0 {
        std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
    }
    let mut c = mount_cmd(&mnt, "http://127.0.0.1:9/api/v1/", &[&"--foreground"]);
    c.env_clear().env("INTAKEQ_API_KEY", KEY).env("XDG_RUNTIME_DIR", &run);
    let err = final_error(&as_a_user(&mut c).output().unwrap());
    assert!(err.contains("127.0.0.1:9"), "got as far as the server: {err}");
    assert_eq!(mode(&run.join("intakeq-fs")), 0o700);

    // One that others can write to is not.
    fs::set_permissions(&run, fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = mount_cmd(&mnt, "http://127.0.0.1:9/api/v1/", &[&"--foreground"]);
    c.env_clear().env("INTAKEQ_API_KEY", KEY).env("XDG_RUNTIME_DIR", &run);
    let err = one_line_error(&as_a_user(&mut c).output().unwrap());
    assert!(err.contains("no private place"), "{err}");

    // Explicit places need no home at all.
    let mut c = mount_cmd(
        &mnt,
        "http://127.0.0.1:9/api/v1/",
        &[
            &"--foreground",
            &"--spool-dir",
            &dir.path().join("s"),
            &"--cache-dir",
            &dir.path().join("c"),
        ],
    );
    c.env_clear().env("INTAKEQ_API_KEY", KEY);
    let err = final_error(&c.output().unwrap());
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

#[test]
fn a_root_mount_with_no_home_keeps_its_state_where_systemd_puts_it() {
    if uid() != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    // An fstab mount at boot: root, no HOME, no XDG_*; a unit's `StateDirectory=`
    // sets STATE_DIRECTORY (without it, /var/lib/intakeq-fs: see main.rs's unit test).
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let state = dir.path().join("var-lib-intakeq-fs");
    let mut c = mount_cmd(&mnt, "http://127.0.0.1:9/api/v1/", &[&"--foreground"]);
    c.env_clear()
        .env("INTAKEQ_API_KEY", KEY)
        .env("PATH", "/usr/bin:/bin")
        .env("STATE_DIRECTORY", &state);
    let err = final_error(&c.output().unwrap());
    assert!(err.contains("127.0.0.1:9"), "started, got as far as the server: {err}");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("spool")), 0o700);
}

#[test]
fn an_existing_log_file_that_is_not_private_is_refused_never_chmod_ed() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    // What `log_file=/etc/passwd` in an fstab line would name: someone's 0644 file.
    let theirs = dir.path().join("passwd");
    fs::write(&theirs, b"root:x:0:0:root:/root:/bin/bash\n").unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o644)).unwrap();
    let out = mount_cmd(&mnt, "http://127.0.0.1:9/api/v1/", &[&"--log-file", &theirs])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("cannot open log file") && err.contains("mode is 644"),
        "{err}"
    );
    assert_eq!(mode(&theirs), 0o644, "never chmod-ed");
    assert_eq!(
        fs::read(&theirs).unwrap(),
        b"root:x:0:0:root:/root:/bin/bash\n",
        "nor written"
    );
}

#[test]
fn state_is_private_whatever_the_umask_and_given_directories_are_left_alone() {
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let out = unsafe {
        mount_cmd(&mnt, &srv.base, &[&"--rate-limit", &"1000", &"--cache-dir", &shared])
            .env("HOME", &home)
            .env_remove("XDG_STATE_HOME")
            .stdout(Stdio::null())
            .pre_exec(|| {
                libc::umask(0);
                Ok(())
            })
            .output()
            .unwrap()
    };
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(fs::read(mnt.join("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    let state = home.join(".local/state/intakeq-fs");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&home.join(".local")), 0o700);
    assert_eq!(mode(&state.join("spool")), 0o700);
    let spools: Vec<_> = fs::read_dir(state.join("spool")).unwrap().flatten().collect();
    assert_eq!(spools.len(), 1);
    assert_eq!(mode(&spools[0].path()), 0o700);
    let log = state.join("intakeq-fs.log");
    assert_eq!(mode(&log), 0o600, "the log is created 0600 even at umask 000");
    assert_eq!(mode(&shared), 0o1777, "a directory the user names is never changed");
    assert_eq!(mode(&shared.join(format!("intakeq-fs-{}", uid()))), 0o700);
    assert!(ok("fusermount3", &[&"-u", &mnt]).is_empty());
    let t0 = Instant::now();
    while is_mounted(&mnt) {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\u{1b}') && !text.contains(KEY), "{text}");

    // Reused: a state directory someone made writable for others is refused, as is a
    // private directory replaced by a symlink.
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
    let out = mount_cmd(&mnt, &srv.base, &[&"--cache-dir", &shared])
        .env("HOME", &home)
        .env_remove("XDG_STATE_HOME")
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("not private") && err.contains("chmod 700"), "{err}");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let sub = shared.join(format!("intakeq-fs-{}", uid()));
    fs::remove_dir_all(&sub).unwrap();
    std::os::unix::fs::symlink(&home, &sub).unwrap();
    let out = mount_cmd(&mnt, &srv.base, &[&"--cache-dir", &shared])
        .env("HOME", &home)
        .env_remove("XDG_STATE_HOME")
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_journal_entry_planted_by_another_user_is_refused_never_uploaded() {
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    // The spool the mount will use: <spool-dir>/intakeq-fs-<uid>/<account>.
    let spool = account_spool(dir.path(), &srv);
    fs::create_dir_all(&spool).unwrap();
    fs::set_permissions(dir.path().join("spool"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(spool.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o700)).unwrap();
    let account = intakeq_fs::core::account_id(&srv.base, KEY);
    let journal = serde_json::json!({
        "account": account, "client": 1001, "name": "planted.pdf", "replaces": ["f00000001"], "size": 4
    });
    fs::write(spool.join("1-1-1.data"), b"evil").unwrap();
    fs::write(spool.join("1-1-1.json"), journal.to_string()).unwrap();
    let owed = serde_json::json!({"account": account, "client": 1001, "id": "f00000001"});
    fs::write(spool.join("00000000000000aa.delete"), owed.to_string()).unwrap();
    for f in ["1-1-1.data", "1-1-1.json", "00000000000000aa.delete"] {
        if std::os::unix::fs::chown(spool.join(f), Some(4242), Some(4242)).is_err() {
            eprintln!("not root: cannot plant another user's files; skipped");
            return;
        }
    }
    let m = mount_in(dir, &srv, &[]);
    let t0 = Instant::now();
    while !m.log_text().contains("refused 1 journal entry") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no warning; log:\n{}",
            m.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(m.log_text().contains("refused 1 owed delete"), "{}", m.log_text());
    assert_eq!(fs::read(m.p("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    assert_eq!(srv.store.count(Endpoint::Upload), 0);
    assert_eq!(srv.store.count(Endpoint::Delete), 0);
    assert!(srv.store.files_named(1001, "planted.pdf").is_empty());
    assert!(srv.store.file("f00000001").is_some());
    let log = m.log_text();
    assert!(!log.contains("planted.pdf"), "no file names in the warning");
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    let spool = account_spool(dir.path(), &srv);
    assert!(spool.join("1-1-1.json").exists(), "left in place");
}

/// A proxy in front of the fake server that forwards every request except DELETE,
/// which it answers with a 307 to `to`. Returns its base URL.
fn redirecting_proxy(srv: &Server, to: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream: std::net::SocketAddr = srv
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let listener = srv.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    srv.rt.spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let first = text.lines().next().unwrap_or("").to_string();
                let path = first.split(' ').nth(1).unwrap_or("/").to_string();
                if first.starts_with("DELETE ") {
                    let answer = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{to}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = c.write_all(answer.as_bytes()).await;
                    return;
                }
                let mut lines: Vec<&str> = text
                    .trim_end()
                    .split("\r\n")
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .collect();
                lines.push("Connection: close");
                let head = format!("{}\r\n\r\n", lines.join("\r\n"));
                let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await else { return };
                if u.write_all(head.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
            });
        }
    });
    format!("http://{addr}/api/v1/")
}

#[test]
fn rm_of_a_file_whose_delete_is_redirected_fails_and_the_key_stays_home() {
    let srv = server(account());
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let proxy = redirecting_proxy(&srv, target.local_addr().unwrap());
    // The mount talks to the proxy; the store behind it is inspected directly.
    let srv = Server { base: proxy, ..srv };
    let m = mount(&srv, &[]);
    assert_eq!(fs::read(m.p("clients/1001/notes.txt")).unwrap(), b"hello notes\n");
    let out = run("rm", &[&m.p("clients/1001/notes.txt")]);
    assert!(!out.status.success(), "rm must fail when its DELETE is redirected");
    assert!(fs::metadata(m.p("clients/1001/notes.txt")).is_ok(), "the entry stays");
    assert!(srv.store.file("f00000001").is_some(), "nothing was deleted");
    assert_eq!(
        srv.store.count(Endpoint::Delete),
        0,
        "the DELETE never reached the server"
    );
    assert!(
        matches!(target.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the redirect target was contacted"
    );
    assert!(
        m.log_text().contains("redirects are never followed"),
        "{}",
        m.log_text()
    );
    let (status, _, _) = m.unmount();
    assert!(status.success());
}

#[test]
fn at_the_default_log_level_a_failed_upload_is_logged_without_the_file_name() {
    let store = account();
    store.push_fault(
        Some(Endpoint::Upload),
        intakeq_fs::fake::store::Fault::Status {
            status: 400,
            retry_after: None,
        },
        None,
    );
    let srv = server(store);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("log.txt");
    let (spool, cache) = (dir.path().join("spool"), dir.path().join("cache"));
    let mut child = mount_cmd(
        &mnt,
        &srv.base,
        &[&"--foreground", &"--spool-dir", &spool, &"--cache-dir", &cache],
    )
    .env_remove("INTAKEQ_FS_LOG")
    .stdout(Stdio::null())
    .stderr(fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let t0 = Instant::now();
    while !is_mounted(&mnt) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let src = dir.path().join("src.pdf");
    fs::write(&src, b"private").unwrap();
    let out = run(
        "cp",
        &[&src, &mnt.join("clients/1002/Jane Doe psychiatric evaluation.pdf")],
    );
    assert!(!out.status.success(), "the upload was refused");
    assert!(Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .unwrap()
        .success());
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("name#"),
        "the failure is logged, naming the file by hash: {text}"
    );
    assert!(!text.contains("Jane"), "{text}");
    assert!(!text.contains("psychiatric"), "{text}");
}

/// Two practices, one `--listings-dir` (and one `--spool-dir` and `--cache-dir`): the
/// second account lists its own clients, with a call to its own server, and never
/// shows the first's, whose kept records stay where they are and are never served.
#[test]
fn two_accounts_given_the_same_directories_never_see_each_others_clients() {
    let practice_a = server(account());
    let m = mount(&practice_a, &[]);
    assert_eq!(ok("ls", &[&m.p("clients")]), "1001\n1002\n");
    assert!(ok("ls", &[&m.p("by-name")]).contains("Ada Lovelace (1001)"));
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    let b = intakeq_fs::fake::store::Store::new();
    b.add_client(2001, "Grace", "Hopper");
    b.add_file(2001, "intake.txt", None, &b"practice b"[..]);
    let practice_b = server(b);
    let m = mount_in(dir, &practice_b, &[]);
    assert_eq!(ok("ls", &[&m.p("clients")]), "2001\n", "B's own clients only");
    assert_eq!(ok("ls", &[&m.p("by-name")]), "Grace Hopper (2001)\n");
    assert!(practice_b.store.count(Endpoint::ListClients) >= 1, "asked B's server");
    assert!(!m.p("clients/1001").exists());
    // Each account keeps its records in its own private directory.
    let kept = m.dir.path().join("listings").join(format!("intakeq-fs-{}", uid()));
    let accounts: Vec<_> = fs::read_dir(&kept).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(accounts.len(), 2, "{accounts:?}");
    for a in &accounts {
        assert_eq!(mode(a), 0o700);
    }
    assert_eq!(practice_a.store.total_requests(), 2, "A was never asked again");
}

/// A kept record of another account (copied in by hand, or left by another account in
/// a shared directory) does not open with this account's key: ignored with a warning and
/// fetched again, never served.
#[test]
fn a_kept_listing_of_another_account_is_ignored() {
    let practice_a = server(account());
    let m = mount(&practice_a, &[]);
    assert_eq!(ok("ls", &[&m.p("clients")]), "1001\n1002\n");
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    let b = intakeq_fs::fake::store::Store::new();
    b.add_client(2001, "Grace", "Hopper");
    let practice_b = server(b);
    let kept = dir.path().join("listings").join(format!("intakeq-fs-{}", uid()));
    let a_dir = fs::read_dir(&kept).unwrap().next().unwrap().unwrap().path();
    let b_dir = kept.join(intakeq_fs::core::account_id(&practice_b.base, KEY));
    fs::create_dir(&b_dir).unwrap();
    fs::set_permissions(&b_dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::copy(a_dir.join("clients.json"), b_dir.join("clients.json")).unwrap();
    let m = mount_in(dir, &practice_b, &[]);
    assert_eq!(ok("ls", &[&m.p("clients")]), "2001\n");
    assert_eq!(practice_b.store.count(Endpoint::ListClients), 1, "fetched, not served");
    assert!(
        m.log_text().contains("does not open with this account's key"),
        "{}",
        m.log_text()
    );
}

/// A base URL with a user name and password is refused in one line that never repeats
/// them (they would reach the terminal, the log and the journal), by mount and check.
#[test]
fn a_base_url_with_a_password_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let url = "https://staff:Hunter2-secret@intakeq.example/api/v1/";
    let out = mount_cmd(&mnt, url, &[&"--foreground"]).output().unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("user name or password"), "{err}");
    assert!(!stderr_of(&out).contains("Hunter2"), "{}", stderr_of(&out));
    assert!(!is_mounted(&mnt));
    let out = Command::new(bin())
        .args(["check", "--base-url", url])
        .env("INTAKEQ_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!stderr_of(&out).contains("Hunter2") && !String::from_utf8_lossy(&out.stdout).contains("Hunter2"));
}

/// The key file must be the mounting user's (or root's), reached through no symlink.
#[test]
fn a_key_file_through_a_symlink_or_of_another_user_is_refused() {
    use std::os::unix::fs::symlink;
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let key = dir.path().join("key");
    fs::write(&key, KEY).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("key-link");
    symlink(&key, &link).unwrap();
    let mut c = mount_cmd(&mnt, &srv.base, &[&"--foreground", &"--api-key-file", &link]);
    c.env_remove("INTAKEQ_API_KEY");
    let err = one_line_error(&c.output().unwrap());
    assert!(err.contains("symlink"), "{err}");
    if uid() == 0 {
        std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
        let mut c = mount_cmd(&mnt, &srv.base, &[&"--foreground", &"--api-key-file", &key]);
        c.env_remove("INTAKEQ_API_KEY");
        let err = one_line_error(&c.output().unwrap());
        assert!(err.contains("must belong to the mounting user or root"), "{err}");
    }
    assert_eq!(srv.store.total_requests(), 0);
    assert!(!is_mounted(&mnt));
}

/// Kept listings are sealed with a key derived from the API key: read from the disk
/// they show no client or file name; with `--no-keep-listings` nothing is written.
#[test]
fn kept_listings_show_no_name_on_disk_and_none_are_kept_by_choice() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    assert!(ok("ls", &[&m.p("by-name")]).contains("Ada Lovelace (1001)"));
    assert!(ok("ls", &[&m.p("clients/1001")]).contains("notes.txt"));
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    let kept = dir.path().join("listings").join(format!("intakeq-fs-{}", uid()));
    let mut files = 0;
    for account in fs::read_dir(&kept).unwrap() {
        for f in fs::read_dir(account.unwrap().path()).unwrap() {
            let bytes = fs::read(f.unwrap().path()).unwrap();
            for name in ["Lovelace", "Turing", "notes.txt", "Insurance"] {
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(name),
                    "{name} readable at rest"
                );
            }
            files += 1;
        }
    }
    assert!(files >= 3, "clients, folders and a client's files were kept");
    // They still serve the next mount (with the key) without a call.
    srv.store.reset_counts();
    let m = mount_in(dir, &srv, &[]);
    assert!(ok("ls", &[&m.p("by-name")]).contains("Ada Lovelace (1001)"));
    assert_eq!(srv.store.count(Endpoint::ListClients), 0);
    drop(m);
    let srv = server(account());
    let m = mount(&srv, &["--no-keep-listings"]);
    assert!(ok("ls", &[&m.p("clients/1001")]).contains("notes.txt"));
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    let kept = dir.path().join("listings");
    assert!(
        !kept.exists() || fs::read_dir(&kept).unwrap().count() == 0,
        "nothing written"
    );
}

/// `intakeq-fs forget` removes what the machine keeps for the account (kept listings,
/// cache, quota ledger) and the next mount lists again; uploads not yet sent would be
/// listed and kept (unit-tested in `forget.rs`).
#[test]
fn forget_removes_what_is_kept_for_the_account() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    assert!(ok("ls", &[&m.p("by-name")]).contains("Ada Lovelace (1001)"));
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    let d = dir.path();
    let out = Command::new(bin())
        .args(["forget", "--base-url", &srv.base])
        .arg("--spool-dir")
        .arg(d.join("spool"))
        .arg("--cache-dir")
        .arg(d.join("cache"))
        .arg("--listings-dir")
        .arg(d.join("listings"))
        .env("INTAKEQ_API_KEY", KEY)
        .env("XDG_STATE_HOME", d.join("state"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}{}", stderr_of(&out));
    assert!(said.contains("removed the kept listings"), "{said}");
    assert!(said.contains("removed the quota ledger"), "{said}");
    let account = intakeq_fs::core::account_id(&srv.base, KEY);
    let kept = d.join("listings").join(format!("intakeq-fs-{}", uid())).join(&account);
    assert!(!kept.exists());
    assert!(!account_spool(d, &srv).exists());
    srv.store.reset_counts();
    let m = mount_in(dir, &srv, &[]);
    assert!(ok("ls", &[&m.p("by-name")]).contains("Ada Lovelace (1001)"));
    assert_eq!(srv.store.count(Endpoint::ListClients), 1, "listed again");
}

/// `intakeq-fs mount` in the background with only private places in `dir`, and no key
/// in the environment: the key must come from somewhere else.
fn mount_without_key(dir: &std::path::Path, mnt: &std::path::Path, base: &str) -> Command {
    let mut c = mount_cmd(mnt, base, &[]);
    c.env_remove("INTAKEQ_API_KEY")
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--no-keep-listings")
        .arg("--log-file")
        .arg(dir.join("log.txt"));
    c
}

/// A system service's key comes from its systemd credential (`LoadCredentialEncrypted=`
/// decrypts it into `$CREDENTIALS_DIRECTORY`): no key file, no environment variable.
#[test]
fn a_systemd_credential_gives_the_key() {
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let creds = dir.path().join("credentials");
    fs::create_dir(&creds).unwrap();
    fs::write(creds.join("intakeq-api-key"), format!("{KEY}\n")).unwrap();
    fs::set_permissions(creds.join("intakeq-api-key"), fs::Permissions::from_mode(0o400)).unwrap();
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o500)).unwrap();
    let out = mount_without_key(dir.path(), &mnt, &srv.base)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(ok("ls", &[&mnt.join("clients/1001")]).contains("notes.txt"));
    fusermount_u(&mnt);
    // Without it (and nothing else), the mount says every way to give one.
    let out = mount_without_key(dir.path(), &mnt, &srv.base)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("no API key") && err.contains("key set") && err.contains("LoadCredentialEncrypted"),
        "{err}"
    );
    // A credential others could read is refused like a key file.
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(creds.join("intakeq-api-key"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = mount_without_key(dir.path(), &mnt, &srv.base)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    assert!(one_line_error(&out).contains("accessible by group or others"));
    assert!(!is_mounted(&mnt));
}

/// A desktop user keeps the key in the Secret Service (`intakeq-fs key set`, the key on
/// stdin) and mounts with no key anywhere else; `key forget` removes it. Run under a
/// private D-Bus session with GNOME Keyring, as Debian's packages provide them.
#[test]
fn the_desktop_keyring_keeps_the_key_and_mount_reads_it() {
    let have = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    if !(have("dbus-run-session") && have("gnome-keyring-daemon") && have("secret-tool")) {
        // scripts/setup-deps.sh installs them (CI does); say so rather than pass.
        panic!("dbus-run-session, gnome-keyring-daemon and secret-tool are needed: run scripts/setup-deps.sh");
    }
    let srv = server(account());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    let script = format!(
        r#"set -e
eval "$(printf 'login-password\n' | gnome-keyring-daemon --unlock --components=secrets --daemonize 2>/dev/null)"
printf '%s\n' "$KEY_FOR_TEST" | "$BIN" key set
unset KEY_FOR_TEST
secret-tool lookup service intakeq-fs key default >/dev/null
"$BIN" mount "$MNT" --base-url "$BASE" --spool-dir "$DIR/spool" --cache-dir "$DIR/cache" --no-keep-listings --log-file "$DIR/log.txt"
ls "$MNT/clients/1001"
pid=$(pgrep -f "mount $MNT --base-url" | head -n1)
[ -n "$pid" ] && [ -r "/proc/$pid/environ" ] || {{ echo NO-DAEMON-FOUND; exit 1; }}
if tr '\0' '\n' < /proc/$pid/environ | grep -q -- "{KEY}"; then echo KEY-IN-ENVIRON; fi
if tr '\0' ' ' < /proc/$pid/cmdline | grep -q -- "{KEY}"; then echo KEY-IN-ARGV; fi
fusermount3 -u "$MNT" || {{ sleep 1; fusermount3 -u "$MNT"; }}
"$BIN" key forget
if "$BIN" mount "$MNT" --base-url "$BASE" --foreground 2>"$DIR/err.txt"; then echo MOUNTED-WITHOUT-KEY; fi
cat "$DIR/err.txt"
"#
    );
    let out = Command::new("dbus-run-session")
        .args(["--", "bash", "-c", &script])
        .env_remove("INTAKEQ_API_KEY")
        .env("HOME", &home)
        .env_remove("XDG_RUNTIME_DIR")
        .env("KEY_FOR_TEST", KEY)
        .env("BIN", bin())
        .env("MNT", &mnt)
        .env("BASE", &srv.base)
        .env("DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr_of(&out));
    assert!(stdout.contains("notes.txt"), "{stdout}");
    assert!(!stdout.contains("KEY-IN-"), "{stdout}");
    assert!(!stdout.contains("MOUNTED-WITHOUT-KEY"), "{stdout}");
    assert!(stdout.contains("no API key"), "{stdout}");
    assert!(!stderr_of(&out).contains(KEY));
    assert!(!is_mounted(&mnt));
}
