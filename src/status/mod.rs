//! `intakeq-fs status`: each daemon publishes what it is doing as a small JSON file
//! (0600, `<state>/run/<pid>.json`, replaced atomically every second when it changes,
//! removed at unmount), and the `status` command reads those files: no API call, no
//! socket, works while the daemon is stuck waiting for the rate limit. Also the
//! tracing layer that remembers the last warnings and errors for it. Reading and
//! printing them is `show.rs`.

mod show;

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::core::status::CoreStatus;
use crate::core::Core;
use crate::limiter::Limiter;
use crate::remote::Remote;

/// Format of the status file; bumped when a field changes meaning.
pub const STATUS_VERSION: u32 = 1;
/// How many recent warnings and errors a status file carries.
const RECENT_ERRORS: usize = 10;
/// How often the daemon looks for a change to publish.
const TICK: Duration = Duration::from_secs(1);
/// Republished at least this often, so a reader can tell a live daemon from a stuck one.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// What one daemon publishes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    /// [`STATUS_VERSION`].
    pub version: u32,
    /// The daemon's process id.
    pub pid: u32,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The account's hashed id (`core::account_id`), never the key.
    pub account: String,
    /// The API base URL.
    pub base_url: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// When the daemon started (Unix seconds).
    pub started_at: u64,
    /// When this file was written (Unix seconds).
    pub updated_at: u64,
    /// Uploads, owed deletes and renames given up.
    pub core: CoreStatus,
    /// The request budget.
    pub requests: Requests,
    /// The last warnings and errors logged, oldest first.
    pub last_errors: Vec<LoggedError>,
}

/// The limiter's numbers as published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    /// Requests sent in the last 60 s.
    pub used_last_minute: u64,
    /// `--rate-limit`.
    pub per_minute: u64,
    /// Requests sent in the last 24 h (rolling).
    pub used_last_day: u64,
    /// `--daily-limit`.
    pub per_day: u64,
    /// Seconds until a request could go, as of `updated_at` (0: now).
    pub next_free_in_secs: u64,
    /// Seconds left of a pause the server imposed (429), if any.
    pub paused_for_secs: Option<u64>,
    /// Requests a user is waiting on.
    pub users_waiting: u64,
    /// Requests sent since the mount started.
    pub since_mount: u64,
}

/// One warning or error from the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedError {
    /// When (Unix seconds).
    pub at: u64,
    /// `WARN` or `ERROR`.
    pub level: String,
    /// The log line's text (the log never holds names or the key at this level).
    pub message: String,
}

/// The last warnings and errors, filled by [`ErrorsLayer`].
static RECENT: Mutex<VecDeque<LoggedError>> = Mutex::new(VecDeque::new());

/// A tracing layer that remembers the last [`RECENT_ERRORS`] warnings and errors for
/// the status file. Install it beside the log's own layer.
#[derive(Debug, Default)]
pub struct ErrorsLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorsLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let level = *event.metadata().level();
        if level > tracing::Level::WARN {
            return;
        }
        let mut text = MessageText(String::new());
        event.record(&mut text);
        let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(LoggedError {
            at: unix_now(),
            level: level.to_string(),
            message: text.0,
        });
    }
}

/// Collects an event's message and fields into one line.
struct MessageText(
    /// The line so far.
    String,
);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        } else {
            self.0.push_str(&format!("{}={value:?}", field.name()));
        }
    }
}

/// The warnings and errors remembered so far, oldest first.
pub fn recent_errors() -> Vec<LoggedError> {
    RECENT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The directory of status files under the private state directory.
pub fn run_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("run")
}

/// What a daemon says about itself that does not change while it runs.
#[derive(Clone, Debug)]
pub struct MountInfo {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The hashed account id.
    pub account: String,
    /// The API base URL.
    pub base_url: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Build the status of a running mount.
pub fn snapshot<R: Remote>(core: &Core<R>, limiter: &Limiter, info: &MountInfo, started_at: u64) -> StatusFile {
    let l = limiter.snapshot();
    StatusFile {
        version: STATUS_VERSION,
        pid: std::process::id(),
        mountpoint: info.mountpoint.clone(),
        account: info.account.clone(),
        base_url: info.base_url.clone(),
        read_only: info.read_only,
        started_at,
        updated_at: unix_now(),
        core: core.status(),
        requests: Requests {
            used_last_minute: l.used_last_minute,
            per_minute: l.per_minute,
            used_last_day: l.used_last_day,
            per_day: l.per_day,
            next_free_in_secs: l.next_free_in.as_secs_f64().ceil() as u64,
            paused_for_secs: l.paused_for.map(|d| d.as_secs_f64().ceil() as u64),
            users_waiting: l.users_waiting,
            since_mount: l.granted,
        },
        last_errors: recent_errors(),
    }
}

/// Write `status` to `path` atomically (temp file 0600 + rename), in a 0700 directory.
pub fn write_status(path: &Path, status: &StatusFile) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::private_dir::ensure_private_dir(dir)?;
    }
    let json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(&json)?;
    std::fs::rename(&tmp, path)
}

/// The daemon's publishing task and the switch that stops it.
pub struct Publisher {
    /// Set to true at unmount.
    stop: tokio::sync::watch::Sender<bool>,
    /// The loop.
    task: tokio::task::JoinHandle<()>,
    /// The status file, removed by [`Publisher::stop`].
    path: PathBuf,
}

impl Publisher {
    /// Start publishing `<dir>/<account>/<pid>.json` for this mount (the account's own
    /// private directory, made 0700 if missing).
    pub fn start<R: Remote>(
        rt: &tokio::runtime::Runtime,
        core: Arc<Core<R>>,
        limiter: Arc<Limiter>,
        info: MountInfo,
        dir: &Path,
    ) -> Publisher {
        let dir = dir.join(&info.account);
        if let Err(e) = crate::private_dir::ensure_private_dir(&dir) {
            tracing::warn!("cannot make the status directory {}: {e}", dir.display());
        }
        let path = dir.join(format!("{}.json", std::process::id()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let file = path.clone();
        let started_at = unix_now();
        let task = rt.spawn(async move {
            let mut last: Option<(StatusFile, tokio::time::Instant)> = None;
            let mut warned = false;
            loop {
                let mut now = snapshot(&core, &limiter, &info, started_at);
                let same = last.as_ref().is_some_and(|(prev, at)| {
                    now.updated_at = prev.updated_at;
                    *prev == now && at.elapsed() < HEARTBEAT
                });
                if !same {
                    now.updated_at = unix_now();
                    match write_status(&file, &now) {
                        Ok(()) => warned = false,
                        Err(e) if !warned => {
                            tracing::warn!("cannot write the status file {}: {e}", file.display());
                            warned = true;
                        }
                        Err(_) => {}
                    }
                    last = Some((now, tokio::time::Instant::now()));
                }
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Publisher { stop, task, path }
    }

    /// Stop publishing and remove the status file.
    pub fn stop(self, rt: &tokio::runtime::Runtime) {
        self.stop.send_replace(true);
        let _ = rt.block_on(self.task);
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove the status file {}: {e}", self.path.display());
            }
        }
        // The account's directory too, once no other mount of it publishes there.
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

pub use self::show::{read_all, remove_stale, render, run_cli, Found, StatusArgs};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::status::UploadStatus;

    fn sample() -> StatusFile {
        StatusFile {
            version: STATUS_VERSION,
            pid: 4242,
            mountpoint: "/home/u/intakeq".into(),
            account: "ab12".into(),
            base_url: "https://intakeq.com/api/v1/".into(),
            read_only: false,
            started_at: 1000,
            updated_at: 4600,
            core: CoreStatus {
                uploads: vec![
                    UploadStatus {
                        client: 1001,
                        name: "scan.pdf".into(),
                        size: 300,
                        state: "waiting".into(),
                    },
                    UploadStatus {
                        client: 1002,
                        name: "a.txt".into(),
                        size: 5,
                        state: "failed".into(),
                    },
                ],
                uploads_running: 0,
                owed_deletes: 1,
                renames_given_up: 0,
            },
            requests: Requests {
                used_last_minute: 10,
                per_minute: 10,
                used_last_day: 123,
                per_day: 500,
                next_free_in_secs: 44,
                paused_for_secs: None,
                users_waiting: 2,
                since_mount: 130,
            },
            last_errors: vec![LoggedError {
                at: 4540,
                level: "WARN".into(),
                message: "flush (upload): server error 500".into(),
            }],
        }
    }

    #[test]
    fn the_text_report_says_what_is_pending_and_when_the_next_slot_is() {
        let f = Found {
            path: PathBuf::new(),
            status: sample(),
            alive: true,
        };
        assert_eq!(
            render(&f, 4602),
            "/home/u/intakeq  (pid 4242, up 1 h 0 min, status 2 s old)\n\
             \x20 account:  ab12 (https://intakeq.com/api/v1/)\n\
             \x20 uploads:  1 pending, 1 failed, 0 running\n\
             \x20   waiting     1001/scan.pdf (300 bytes)\n\
             \x20   failed      1002/a.txt (5 bytes)\n\
             \x20 deletes owed: 1\n\
             \x20 requests: 10/10 in the last minute, 123/500 in the last 24 h, 130 since mount\n\
             \x20 next free request slot: in 42 s, 2 request(s) waiting\n\
             \x20 last errors:\n\
             \x20   1 min 2 s ago  WARN  flush (upload): server error 500\n"
        );
    }

    #[test]
    fn names_and_messages_are_printed_with_control_characters_escaped() {
        let mut st = sample();
        st.core.uploads[0].name = "evil\r\nX-Injected: 1\u{1b}[2J.txt".into();
        st.last_errors[0].message = "bad\nline".into();
        let text = render(
            &Found {
                path: PathBuf::new(),
                status: st,
                alive: true,
            },
            4700,
        );
        assert!(text.contains("evil\\r\\nX-Injected: 1\\u{1b}[2J.txt"), "{text}");
        assert!(text.contains("bad\\nline"));
        assert!(!text.contains('\u{1b}') && !text.contains('\r'));
    }

    #[test]
    fn a_dead_daemons_file_is_removed_and_a_live_ones_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = StatusFile {
            pid: 999_999_999,
            ..sample()
        };
        let alive = StatusFile {
            pid: std::process::id(),
            ..sample()
        };
        write_status(&tmp.path().join("999999999.json"), &dead).unwrap();
        write_status(&tmp.path().join("me.json"), &alive).unwrap();
        // This test binary is not named intakeq-fs, so both read as not running.
        assert_eq!(read_all(tmp.path()).iter().filter(|f| !f.alive).count(), 2);
        assert_eq!(remove_stale(tmp.path()), 2);
        // In an account's directory, a file naming another account is not read.
        let acct = tmp.path().join("0123");
        std::fs::create_dir(&acct).unwrap();
        write_status(&acct.join("1.json"), &dead).unwrap();
        assert!(read_all(tmp.path()).is_empty(), "sample() names another account");
        assert!(read_all(tmp.path()).is_empty());
    }

    #[test]
    fn a_dead_daemons_file_is_reported_stale() {
        let f = Found {
            path: PathBuf::new(),
            status: sample(),
            alive: false,
        };
        let text = render(&f, 4700);
        assert!(text.starts_with("/home/u/intakeq  (pid 4242): NOT RUNNING: stale status, last written 1 min 40 s ago"));
    }

    #[test]
    fn status_files_are_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("4242.json");
        write_status(&path, &sample()).unwrap();
        let mode =
            |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let found = read_all(path.parent().unwrap());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].status, sample());
        assert!(!found[0].alive, "pid 4242 is not an intakeq-fs here");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temp left"
        );
    }
}
