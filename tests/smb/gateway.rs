//! The SMB tier's harness: a real `smbd` on a loopback port serving a real mount of the
//! fake with the share definition of `contrib/samba/smb.conf.example`, desk accounts
//! (Linux users in a group, with Samba passwords), and `smbclient` to drive it.
//!
//! The share's settings are the contrib file's own: the test copies it and swaps in only
//! its places (mount path, smbd's state directories, the port, the test's group names),
//! appending those to `[global]` after the file's values (in smb.conf the last value of a
//! parameter wins). So what a test shows is what the documented configuration does.
//!
//! `IQFS_SMB_LEGACY=1` runs the tier against a mount without the ownership, audit and
//! no-delete options (before they exist): the shares get `force user = root` so desks
//! can write at all, and the tests that need those options fail on their own asserts.
//! `IQFS_SMB_LEGACY=desks` leaves the options out too but keeps each desk its own user
//! (what reads look like through today's 0644/0755 modes).

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use intakeq_fs::fake::store::Store;

use crate::common::{bin, mount_in, Mount, Server};

/// The share definition under test, as shipped.
pub const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/samba/smb.conf.example");

/// The writers' share and the front desks' read-only share of the contrib file.
pub const SHARE: &str = "intakeq";
pub const VIEW: &str = "intakeq-view";

/// The Linux group the mount names (`--gid`): everyone with a desk.
pub const CLINIC: &str = "iqfs-clinic";
/// The group that may change records (the writers' share).
pub const WRITERS: &str = "iqfs-clinic-write";

/// A desk: a Linux account (no home, no shell) with a Samba password.
#[derive(Clone, Copy, Debug)]
pub struct Desk {
    /// Linux and Samba user name.
    pub user: &'static str,
    /// Its Samba password (test only).
    pub pass: &'static str,
    /// Whether it is in [`WRITERS`] as well as [`CLINIC`].
    pub writer: bool,
}

pub const DESK1: Desk = Desk {
    user: "iqfs-desk1",
    pass: "desk1-pw-7c2e",
    writer: true,
};
pub const DESK2: Desk = Desk {
    user: "iqfs-desk2",
    pass: "desk2-pw-41ab",
    writer: true,
};
/// A front desk: reads through the view share only.
pub const FRONT: Desk = Desk {
    user: "iqfs-front",
    pass: "front-pw-93d0",
    writer: false,
};
pub const DESKS: [Desk; 3] = [DESK1, DESK2, FRONT];

/// Whether the tier runs against today's mount (see the module comment).
pub fn legacy() -> bool {
    std::env::var_os("IQFS_SMB_LEGACY").is_some_and(|v| v == "1" || v == "desks")
}

/// Whether the shares get `force user = root` (`IQFS_SMB_LEGACY=1`).
fn forced_root() -> bool {
    std::env::var_os("IQFS_SMB_LEGACY").is_some_and(|v| v == "1")
}

/// Why this machine cannot run the tier, if it cannot. CI runs as root with Samba
/// installed (scripts/setup-deps.sh), so there a reason is a failure, not a skip.
pub fn cannot_run() -> Option<String> {
    let mut why = Vec::new();
    if unsafe { libc::geteuid() } != 0 {
        why.push("not root (smbd, useradd and the desks' accounts need it)".to_string());
    }
    for t in [
        "smbd",
        "smbclient",
        "smbpasswd",
        "testparm",
        "useradd",
        "groupadd",
        "usermod",
    ] {
        if !on_path(t) {
            why.push(format!(
                "{t} is missing (scripts/setup-deps.sh installs samba and smbclient)"
            ));
        }
    }
    if why.is_empty() {
        return None;
    }
    let why = why.join("; ");
    assert!(std::env::var_os("CI").is_none(), "the SMB tier must run in CI: {why}");
    Some(why)
}

/// Skip the calling test (with a line saying why) when the tier cannot run here.
#[macro_export]
macro_rules! need_smbd {
    () => {
        if let Some(why) = $crate::gateway::cannot_run() {
            eprintln!("SKIPPED (SMB tier): {why}");
            return;
        }
    };
}

/// Where a tool is: on PATH, or in /usr/sbin or /sbin (a PATH without them is common,
/// and smbd, useradd and groupadd live there).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub fn on_path(name: &str) -> bool {
    tool(name).is_some()
}

/// A command for a tool found by [`tool`].
fn cmd(name: &str) -> Command {
    Command::new(tool(name).unwrap_or_else(|| name.into()))
}

fn sh(name: &str, args: &[&str]) -> Output {
    cmd(name).args(args).output().unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The number of a group, or None if it does not exist.
pub fn gid_of(group: &str) -> Option<u32> {
    let out = sh("getent", &["group", group]);
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':').nth(2).and_then(|g| g.trim().parse().ok())
}

/// The uid of a user, or None if it does not exist.
pub fn uid_of(user: &str) -> Option<u32> {
    let out = sh("id", &["-u", user]);
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Create the desks' groups and accounts if this machine lacks them (once per process;
/// the same names every run, so a machine gains three system users, not one per run).
pub fn ensure_desks() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for g in [CLINIC, WRITERS] {
            if gid_of(g).is_none() {
                let out = sh("groupadd", &["--system", g]);
                assert!(
                    gid_of(g).is_some(),
                    "groupadd {g}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        for d in DESKS {
            let groups = if d.writer {
                format!("{CLINIC},{WRITERS}")
            } else {
                CLINIC.to_string()
            };
            if uid_of(d.user).is_none() {
                let out = sh(
                    "useradd",
                    &[
                        "--system",
                        "--no-create-home",
                        "--shell",
                        "/usr/sbin/nologin",
                        "-G",
                        &groups,
                        d.user,
                    ],
                );
                assert!(
                    uid_of(d.user).is_some(),
                    "useradd {}: {}",
                    d.user,
                    String::from_utf8_lossy(&out.stderr)
                );
            } else {
                let out = sh("usermod", &["-aG", &groups, d.user]);
                assert!(
                    out.status.success(),
                    "usermod {}: {}",
                    d.user,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    });
}

/// The contrib file with this test's places swapped in, and this test's own `[global]`
/// lines appended to its `[global]` section (the last value wins).
pub fn test_conf(mnt: &Path, state: &Path, port: u16) -> String {
    let contrib = fs::read_to_string(CONTRIB).unwrap();
    let contrib = contrib
        .replace("/srv/intakeq", &mnt.display().to_string())
        .replace("@clinic-write", &format!("@{WRITERS}"))
        .replace("@clinic", &format!("@{CLINIC}"));
    let s = state.display();
    let ours = format!(
        "   # tests/smb.rs: this test's own places, after the contrib file's values\n\
         \x20  smb ports = {port}\n\
         \x20  interfaces = lo\n\
         \x20  bind interfaces only = yes\n\
         \x20  lock directory = {s}/lock\n\
         \x20  state directory = {s}/state\n\
         \x20  cache directory = {s}/cache\n\
         \x20  private dir = {s}/private\n\
         \x20  pid directory = {s}/pid\n\
         \x20  ncalrpc dir = {s}/ncalrpc\n\
         \x20  binddns dir = {s}/binddns\n\
         \x20  passdb backend = tdbsam:{s}/passdb.tdb\n\
         \x20  log file = {s}/log.%m\n\
         \x20  rpc start on demand helpers = no\n\
         \x20  usershare path =\n"
    );
    let mut out = String::new();
    let mut in_global = false;
    for line in contrib.lines() {
        let header = line.trim_start().starts_with('[');
        if header && in_global {
            out.push_str(&ours);
            in_global = false;
        }
        out.push_str(line);
        out.push('\n');
        if header {
            in_global = line.trim() == "[global]";
            if !in_global && forced_root() {
                out.push_str("   force user = root\n");
            }
        }
    }
    if in_global {
        out.push_str(&ours);
    }
    out
}

/// A free loopback port (a moment's race with other processes; `Gateway::start`
/// retries on another port if smbd cannot bind it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The mount's options for a gateway, as contrib/samba documents them (the audit log in
/// the test's directory), plus `extra`.
pub fn gateway_args(audit: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["--allow-other".into()];
    if !extra.contains(&"--max-wait") {
        v.extend(["--max-wait".into(), "15".into()]);
    }
    if !legacy() {
        let gid = gid_of(CLINIC).unwrap().to_string();
        v.extend(["--gid".into(), gid, "--umask".into(), "0007".into()]);
        v.extend(["--audit-log".into(), audit.display().to_string()]);
    }
    for e in extra {
        if legacy() && *e == "--no-delete" {
            continue;
        }
        v.push(e.to_string());
    }
    v
}

/// Fail at once, with the reason, if the mount lacks an option a test needs (rather than
/// 20 s later with "mount did not appear").
pub fn require_options(args: &[String]) {
    static HELP: OnceLock<String> = OnceLock::new();
    let help = HELP.get_or_init(|| {
        let out = Command::new(bin()).args(["mount", "--help"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let missing: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--") && !help.contains(a.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "FEATURE NOT IN YET: the mount has no {missing:?} (issue 22's options); \
         IQFS_SMB_LEGACY=1 runs this tier without them"
    );
}

/// smbd in the foreground, in its own process group (each connection is a forked child).
struct Smbd {
    child: Child,
    log: PathBuf,
}

impl Drop for Smbd {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let t0 = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A running gateway: smbd serving the contrib shares over a mount of the fake.
/// Dropped in field order: smbd (and its connection children) first, then the mount.
pub struct Gateway {
    /// Held for its `Drop`: smbd stops before the mount goes.
    _smbd: Smbd,
    pub mount: Mount,
    /// The port smbd listens on (127.0.0.1 and ::1).
    pub port: u16,
    /// smbd's state (passdb, locks, logs) and the config it runs.
    pub state: tempfile::TempDir,
    /// Where desks' local files are (smbclient's working directory).
    pub local: tempfile::TempDir,
    /// The mount's `--audit-log`.
    pub audit: PathBuf,
}

impl Gateway {
    /// Mount the fake with the gateway's options (plus `extra`) and start smbd over it.
    pub fn start(srv: &Server, extra: &[&str]) -> Gateway {
        ensure_desks();
        let dir = tempfile::tempdir().unwrap();
        // smbd reaches the share as each desk's own user: the path to it must be
        // traversable (the test's directory is 0700 root otherwise).
        fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
        let audit = dir.path().join("audit.log");
        let args = gateway_args(&audit, extra);
        require_options(&args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mount = mount_in(dir, srv, &args);
        let state = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        for d in [
            "lock", "state", "cache", "private", "pid", "ncalrpc", "binddns", "client",
        ] {
            fs::create_dir_all(state.path().join(d)).unwrap();
        }
        let c = state.path().join("client");
        fs::write(
            state.path().join("client.conf"),
            format!(
                "[global]\n   client min protocol = SMB2_10\n   lock directory = {0}\n   \
                 state directory = {0}\n   cache directory = {0}\n   private dir = {0}\n",
                c.display()
            ),
        )
        .unwrap();
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = state.path().join("smb.conf");
            fs::write(&conf, test_conf(&mount.mnt, state.path(), port)).unwrap();
            for d in DESKS {
                set_password(&conf, d);
            }
            let log = state.path().join(format!("smbd-{port}.log"));
            let child = cmd("smbd")
                .args(["--foreground", "--no-process-group", "--debug-stdout", "-s"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log).unwrap())
                .stderr(Stdio::from(fs::File::create(log.with_extension("err")).unwrap()))
                .process_group(0)
                .spawn()
                .expect("smbd");
            let mut smbd = Smbd { child, log };
            if wait_listening(&mut smbd, port) {
                return Gateway {
                    _smbd: smbd,
                    mount,
                    port,
                    state,
                    local,
                    audit,
                };
            }
            last = fs::read_to_string(&smbd.log).unwrap_or_default();
        }
        panic!("smbd never accepted on its port; its log:\n{last}");
    }

    /// Run `smbclient //127.0.0.1/<share> -c <cmds>` as `desk`, in the desks' local
    /// directory, with `extra` options (e.g. `-t 2`). Output is stdout then stderr.
    pub fn smb(&self, desk: Desk, share: &str, cmds: &str, extra: &[&str]) -> Smb {
        let out = cmd("smbclient")
            .arg(format!("//127.0.0.1/{share}"))
            .args(["-p", &self.port.to_string()])
            .arg("-s")
            .arg(self.state.path().join("client.conf"))
            .args(["-U", &format!("{}%{}", desk.user, desk.pass)])
            .args(extra)
            .args(["-c", cmds])
            .current_dir(self.local.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Smb {
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// A local file for desks to `put`.
    pub fn local_file(&self, name: &str, bytes: &[u8]) {
        fs::write(self.local.path().join(name), bytes).unwrap();
    }

    pub fn local_path(&self, name: &str) -> PathBuf {
        self.local.path().join(name)
    }

    /// List a client's directory through the mount (as root, outside Samba), so that
    /// the listing a test then counts from is already in memory; then zero the counts.
    pub fn primed(&self, store: &Store, client: u64) {
        let n = fs::read_dir(self.mount.p(&format!("clients/{client}")))
            .unwrap()
            .count();
        assert!(n > 0);
        store.reset_counts();
    }

    /// The audit log's lines, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
            .collect()
    }
}

/// What one smbclient run did.
#[derive(Debug)]
pub struct Smb {
    /// stdout then stderr: NT_STATUS_* lines show what the desk was told.
    pub text: String,
}

impl Smb {
    /// The first NT status an error line names (`NT_STATUS_ACCESS_DENIED`), if any.
    pub fn status(&self) -> Option<&str> {
        self.text
            .split(|c: char| c.is_whitespace() || c == ':')
            .find(|w| w.starts_with("NT_STATUS_"))
    }
}

fn set_password(conf: &Path, d: Desk) {
    let mut child = cmd("smbpasswd")
        .arg("-c")
        .arg(conf)
        .args(["-a", "-s", d.user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{0}\n{0}", d.pass).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "smbpasswd -a {}: {}{}",
        d.user,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wait (at most 15 s) until smbd accepts on `port`; false if it exited first (port taken).
fn wait_listening(smbd: &mut Smbd, port: u16) -> bool {
    let t0 = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while t0.elapsed() < Duration::from_secs(15) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if smbd.child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The names a client holds on the server, sorted.
pub fn names(store: &Store, client: u64) -> Vec<String> {
    let mut v: Vec<String> = store.files_of(client).into_iter().map(|f| f.name).collect();
    v.sort();
    v
}

/// The bytes of every file of that name the client holds on the server.
pub fn bytes_of(store: &Store, client: u64, name: &str) -> Vec<Vec<u8>> {
    store
        .files_named(client, name)
        .into_iter()
        .map(|f| f.data.to_vec())
        .collect()
}

/// Watches a file on the server from a thread, every 5 ms, until finished: each stretch
/// of time it was missing or held 0 bytes (what a desk's abandoned overwrite must never
/// cause).
pub struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Watch {
    pub fn start(store: &Store, client: u64, name: &str) -> Watch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (store, name, stopped) = (store.clone(), name.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            // (what, from ms, to ms) for each stretch of a bad state.
            let mut stretches: Vec<(&str, u128, u128)> = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let files = store.files_named(client, &name);
                let bad = if files.is_empty() {
                    Some("no file")
                } else if files.iter().any(|f| f.data.is_empty()) {
                    Some("a 0-byte file")
                } else {
                    None
                };
                let at = t0.elapsed().as_millis();
                match (bad, stretches.last_mut()) {
                    (Some(what), Some(last)) if last.0 == what && at - last.2 < 50 => last.2 = at,
                    (Some(what), _) => stretches.push((what, at, at)),
                    (None, _) => {}
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            stretches
                .into_iter()
                .map(|(what, from, to)| format!("{what} from {from} ms to {to} ms"))
                .collect()
        });
        Watch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop watching; what was seen (empty: the file was there with bytes throughout).
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map(|t| t.join().unwrap()).unwrap_or_default()
    }
}
