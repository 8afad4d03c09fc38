//! Shared harness for the FUSE tier: a fake IntakeQ server in the test process, the
//! real `intakeq-fs` binary mounted against it, and helpers to run real tools.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use intakeq_fs::fake::store::Store;

pub const KEY: &str = "test-key-3f9c1e7a5b";
/// The fake server's admin token (`X-Admin-Token` on `/_admin/` requests).
pub const ADMIN_TOKEN: &str = "test-admin-token-8d41";

/// The account's own spool inside a test mount's `--spool-dir` (`dir/spool`):
/// `spool/intakeq-fs-<uid>/<account>`.
pub fn account_spool(dir: &std::path::Path, srv: &Server) -> PathBuf {
    dir.join("spool")
        .join(format!("intakeq-fs-{}", unsafe { libc::geteuid() }))
        .join(intakeq_fs::core::account_id(&srv.base, KEY))
}

pub struct Server {
    pub rt: tokio::runtime::Runtime,
    pub base: String,
    pub store: Store,
}

pub fn server(store: Store) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr, _task) = rt
        .block_on(intakeq_fs::fake::server::spawn(
            store.clone(),
            ([127, 0, 0, 1], 0).into(),
            KEY.to_string(),
            ADMIN_TOKEN.to_string(),
        ))
        .unwrap();
    Server {
        rt,
        base: intakeq_fs::fake::server::base_url(addr),
        store,
    }
}

pub struct Mount {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
}

/// `fusermount3 -u mnt`. A program a test ran may still be closing its last
/// descriptor in the mount (EBUSY for a moment on a loaded machine): tried again briefly.
pub fn fusermount_u(mnt: &Path) {
    let mut tries = 0;
    while !Command::new("fusermount3")
        .arg("-u")
        .arg(mnt)
        .status()
        .unwrap()
        .success()
    {
        tries += 1;
        assert!(tries < 10, "fusermount3 -u failed");
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_intakeq-fs")
}

pub fn is_mounted(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = p.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// Mount in the foreground with generous limits (tests count calls, not wait for them).
pub fn mount(srv: &Server, extra: &[&str]) -> Mount {
    mount_in(tempfile::tempdir().unwrap(), srv, extra)
}

/// Mount reusing a directory (and so its spool) from an earlier mount.
pub fn mount_in(dir: tempfile::TempDir, srv: &Server, extra: &[&str]) -> Mount {
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let log = dir
        .path()
        .join(format!("log-{}.txt", Instant::now().elapsed().as_nanos()));
    let child = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args(["--base-url", &srv.base, "--foreground"])
        // Generous limits unless the test sets its own.
        .args(
            [["--rate-limit", "100000"], ["--daily-limit", "100000"]]
                .into_iter()
                .filter(|[flag, _]| !extra.contains(flag))
                .flatten(),
        )
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--listings-dir")
        .arg(dir.path().join("listings"))
        .args(extra)
        .env("INTAKEQ_API_KEY", KEY)
        .env("INTAKEQ_FS_LOG", "debug")
        // The quota ledger is per account (base URL and key): with the shared default
        // place, a mount on a port an earlier run used within the day would start with
        // that run's spending, and tests with a small --daily-limit would flake.
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
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

impl Mount {
    pub fn wait_mounted(&self) {
        let t0 = Instant::now();
        while !is_mounted(&self.mnt) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "mount did not appear; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel.trim_start_matches('/'))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `fusermount3 -u`, then the daemon must exit 0 on its own.
    pub fn unmount(mut self) -> (ExitStatus, String, tempfile::TempDir) {
        fusermount_u(&self.mnt);
        let status = wait_exit(self.child.as_mut().unwrap(), Duration::from_secs(30));
        self.child = None;
        let log = self.log_text();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, log, dir)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.mnt).status();
            let t0 = Instant::now();
            while c.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run a tool; return its output (not asserting success).
pub fn run(cmd: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(cmd);
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

/// Run a tool that must succeed; return stdout.
pub fn ok(cmd: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Wait (at most 20 s) until `cond` holds: for effects that come a moment after the
/// call that caused them (an upload at a file's last release). Panics if it never does.
pub fn wait_for(mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(20), "condition never held");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small account most tests start from.
pub fn account() -> Store {
    let s = Store::new();
    s.add_client(1001, "Ada", "Lovelace");
    s.add_client(1002, "Alan", "Turing");
    s.add_folder("fo1", "Intake Forms");
    s.add_folder("fo2", "Insurance");
    s.add_file(1001, "notes.txt", None, &b"hello notes\n"[..]);
    s.add_file(1001, "card.png", Some("fo2"), vec![7u8; 5000]);
    s.add_file(1001, "consent.pdf", Some("fo1"), &b"first"[..]);
    s.add_file(1001, "consent.pdf", Some("fo1"), &b"second"[..]);
    s.add_file(1001, "lost.txt", Some("gone"), &b"unlisted folder"[..]);
    s.add_file(1002, "other.txt", None, &b"other client"[..]);
    s
}

/// The calls a piece of work cost, by endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calls {
    pub upload: u64,
    pub delete: u64,
    pub list_files: u64,
    pub download: u64,
}

pub fn calls(store: &Store) -> Calls {
    use intakeq_fs::fake::store::Endpoint;
    Calls {
        upload: store.count(Endpoint::Upload),
        delete: store.count(Endpoint::Delete),
        list_files: store.count(Endpoint::ListFiles),
        download: store.count(Endpoint::Download),
    }
}

/// The calls once the mount is done: the listing that learns an upload's id comes a
/// moment after the save returned (one per batch, `CONFIRM_SETTLE` after the last
/// upload), so wait (at most 20 s) for the counts to reach `want`, then check they stay
/// there for longer than `CONFIRM_SETTLE` (a listing still to come would be counted).
pub fn settled(store: &Store, want: Calls) {
    let t0 = Instant::now();
    while calls(store) != want && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(intakeq_fs::core::CONFIRM_SETTLE + Duration::from_millis(700));
    assert_eq!(calls(store), want);
}
