//! `intakeq-fs status` itself: finding the status files of this user's mounts (a dead
//! daemon's removed), and printing them with control characters escaped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::*;

/// Options of `intakeq-fs status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Only the mount at this path (default: every mount of this user).
    pub mountpoint: Option<PathBuf>,
    /// Print the status files as one JSON array instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One status file as read back, and whether its daemon still runs.
#[derive(Debug)]
pub struct Found {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file's content.
    pub status: StatusFile,
    /// The daemon process is alive (else the file is stale: it crashed or was killed).
    pub alive: bool,
}

/// Every status file under `dir` (in each account's directory, and at the top as an
/// older version left them), oldest mount first. A file in an account's directory
/// that names another account is ignored.
pub fn read_all(dir: &Path) -> Vec<Found> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Option<String>)> = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let account = e.file_name().to_string_lossy().into_owned();
            if let Ok(inner) = std::fs::read_dir(&p) {
                files.extend(inner.flatten().map(|f| (f.path(), Some(account.clone()))));
            }
        } else {
            files.push((p, None));
        }
    }
    let mut out: Vec<Found> = files
        .into_iter()
        .filter(|(p, _)| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .filter_map(|(p, account)| {
            let status = serde_json::from_slice::<StatusFile>(&std::fs::read(&p).ok()?).ok()?;
            if account.is_some_and(|a| a != status.account) {
                tracing::debug!("ignoring a status file of another account in {}", p.display());
                return None;
            }
            Some((status, p))
        })
        .map(|(status, path)| Found {
            alive: process_alive(status.pid),
            status,
            path,
        })
        .collect();
    out.sort_by_key(|f| (f.status.started_at, f.status.pid));
    out
}

/// Remove the status files of daemons that no longer run (crashed or killed): they
/// hold upload names and must not outlive what they describe. Run by the next mount
/// and by `status` (which shows each once first). Returns how many went.
pub fn remove_stale(dir: &Path) -> usize {
    read_all(dir)
        .into_iter()
        .filter(|f| !f.alive && std::fs::remove_file(&f.path).is_ok())
        .count()
}

/// `s` with every control character (CR, LF, ESC, DEL, C1 ...) shown escaped, so a
/// server's name cannot break lines or send terminal sequences.
fn escaped(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Is `pid` a running intakeq-fs?
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "intakeq-fs")
}

/// `intakeq-fs status`: exit 0 if at least one matching mount runs, 1 otherwise.
pub fn run_cli(a: StatusArgs, state_dir: &Path) -> ExitCode {
    let mut found = read_all(&run_dir(state_dir));
    if let Some(mp) = &a.mountpoint {
        let want = std::fs::canonicalize(mp)
            .or_else(|_| std::path::absolute(mp))
            .unwrap_or_else(|_| mp.clone());
        found.retain(|f| f.status.mountpoint == want);
    }
    let running = found.iter().any(|f| f.alive);
    if a.json {
        let all: Vec<serde_json::Value> = found
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(&f.status).unwrap_or_default();
                v["running"] = serde_json::Value::Bool(f.alive);
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(all));
    } else if found.is_empty() {
        match &a.mountpoint {
            Some(mp) => println!("no intakeq-fs mount of this user at {}", mp.display()),
            None => println!("no intakeq-fs mount of this user is running"),
        }
    } else {
        let now = unix_now();
        for f in &found {
            print!("{}", render(f, now));
        }
    }
    // Shown once, then gone: a dead daemon's file keeps upload names.
    for f in found.iter().filter(|f| !f.alive) {
        let _ = std::fs::remove_file(&f.path);
    }
    if running {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The text report of one mount, as of `now` (Unix seconds).
pub fn render(f: &Found, now: u64) -> String {
    let s = &f.status;
    let mut out = String::new();
    let age = now.saturating_sub(s.updated_at);
    if f.alive {
        out.push_str(&format!(
            "{}  (pid {}, up {}, status {} s old{})\n",
            escaped(&s.mountpoint.to_string_lossy()),
            s.pid,
            duration_text(now.saturating_sub(s.started_at)),
            age,
            if s.read_only { ", read-only" } else { "" }
        ));
    } else {
        out.push_str(&format!(
            "{}  (pid {}): NOT RUNNING: stale status, last written {} ago; what it had not uploaded stays in its spool for the next mount\n",
            escaped(&s.mountpoint.to_string_lossy()),
            s.pid,
            duration_text(age)
        ));
    }
    out.push_str(&format!("  account:  {} ({})\n", s.account, s.base_url));
    let failed = s.core.uploads.iter().filter(|u| u.state.starts_with("failed")).count();
    out.push_str(&format!(
        "  uploads:  {} pending, {} failed, {} running\n",
        s.core.uploads.len() - failed,
        failed,
        s.core.uploads_running
    ));
    for u in &s.core.uploads {
        out.push_str(&format!(
            "    {:<11} {}/{} ({} bytes)\n",
            u.state,
            u.client,
            escaped(&u.name),
            u.size
        ));
    }
    out.push_str(&format!("  deletes owed: {}", s.core.owed_deletes));
    if s.core.renames_given_up > 0 {
        out.push_str(&format!(", renames given up: {}", s.core.renames_given_up));
    }
    out.push('\n');
    let r = &s.requests;
    let next = r.next_free_in_secs.saturating_sub(age);
    out.push_str(&format!(
        "  requests: {}/{} in the last minute, {}/{} in the last 24 h, {} since mount\n",
        r.used_last_minute, r.per_minute, r.used_last_day, r.per_day, r.since_mount
    ));
    let slot = if next == 0 {
        "now".to_string()
    } else {
        format!("in {}", duration_text(next))
    };
    out.push_str(&format!("  next free request slot: {slot}"));
    if let Some(p) = r.paused_for_secs.filter(|p| *p > age) {
        out.push_str(&format!(" (the server asked for a pause of {} s)", p - age));
    }
    if r.users_waiting > 0 {
        out.push_str(&format!(", {} request(s) waiting", r.users_waiting));
    }
    out.push('\n');
    if s.last_errors.is_empty() {
        out.push_str("  last errors: none\n");
    } else {
        out.push_str("  last errors:\n");
        for e in &s.last_errors {
            out.push_str(&format!(
                "    {} ago  {:<5} {}\n",
                duration_text(now.saturating_sub(e.at)),
                e.level,
                escaped(&e.message)
            ));
        }
    }
    out
}

/// "42 s", "3 min 5 s", "2 h 3 min".
fn duration_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}
