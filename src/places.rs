//! Where a mount keeps its state (bin side): the default state directory (XDG, home,
//! systemd's `StateDirectory=`, the private run-time directory, or none), the private
//! subdirectories made inside directories the user names, and `Places`, every path one
//! mount uses (spool, cache, log, status, quota ledger, name secret).

use std::path::{Path, PathBuf};

use intakeq_fs::private_dir::{ensure_private_dir, open_given_append, private_subdir};

use crate::cli::CommonMount;

/// The state directory of a root mount with no home (an fstab mount at boot): where
/// a systemd unit's `StateDirectory=intakeq-fs` puts it, on disk, so staged uploads
/// survive a reboot (a run-time directory would not).
pub(crate) const SYSTEM_STATE_DIR: &str = "/var/lib/intakeq-fs";

/// Where the mount keeps its state by default: `$XDG_STATE_HOME/intakeq-fs`, else
/// `~/.local/state/intakeq-fs`, else (no home) for root `$STATE_DIRECTORY` (what
/// systemd's `StateDirectory=` sets) or [`SYSTEM_STATE_DIR`], and for other users
/// `$XDG_RUNTIME_DIR/intakeq-fs` if that directory is private; otherwise there is no
/// private place and the mount refuses to start. Created 0700 and checked
/// (`private_dir`).
pub(crate) fn state_dir() -> Result<PathBuf, String> {
    let dir = default_state_dir(
        |v| std::env::var_os(v).filter(|d| !d.is_empty()).map(PathBuf::from),
        intakeq_fs::private_dir::euid(),
        intakeq_fs::private_dir::runtime_dir,
    )?;
    ensure_private_dir(&dir).map_err(|e| format!("state directory: {e}"))?;
    Ok(dir)
}

/// [`state_dir`]'s choice, from the environment (`var`), the effective uid and the
/// private run-time directory, if any.
pub(crate) fn default_state_dir(
    var: impl Fn(&str) -> Option<PathBuf>,
    euid: u32,
    runtime_dir: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(d) = var("XDG_STATE_HOME") {
        Ok(d.join("intakeq-fs"))
    } else if let Some(h) = var("HOME") {
        Ok(h.join(".local/state/intakeq-fs"))
    } else if euid == 0 {
        // systemd may list several directories, separated by ':'; the first is ours.
        let given = var("STATE_DIRECTORY")
            .and_then(|d| d.to_str().and_then(|d| d.split(':').next()).map(PathBuf::from))
            .filter(|d| d.is_absolute());
        Ok(given.unwrap_or_else(|| PathBuf::from(SYSTEM_STATE_DIR)))
    } else if let Some(r) = runtime_dir() {
        Ok(r.join("intakeq-fs"))
    } else {
        Err(
            "no private place for the mount's state: HOME, XDG_STATE_HOME and XDG_RUNTIME_DIR are \
                    unset (or not private); set HOME, or pass --spool-dir, --cache-dir and --log-file"
                .into(),
        )
    }
}

/// A directory the user named: created 0700 if missing, never changed otherwise; the
/// mount's own private `intakeq-fs-<uid>` directory is made inside it.
pub(crate) fn given_dir(d: &Path, what: &str) -> Result<PathBuf, String> {
    if std::fs::symlink_metadata(d).is_err() {
        ensure_private_dir(d).map_err(|e| format!("{what}: cannot create {}: {e}", d.display()))?;
    }
    private_subdir(d).map_err(|e| format!("{what}: {e}"))
}

/// The account's own private directory inside the directory the user named
/// (`DIR/intakeq-fs-<uid>/<account>`): two accounts given the same directory never
/// see each other's state (docs/SEMANTICS.md, "Security").
pub(crate) fn given_account_dir(d: &Path, what: &str, account: &str) -> Result<PathBuf, String> {
    let dir = given_dir(d, what)?.join(account);
    ensure_private_dir(&dir).map_err(|e| format!("{what}: {e}"))?;
    Ok(dir)
}

/// Where this mount keeps its spool, cache and log: all private.
pub(crate) struct Places {
    pub(crate) spool: PathBuf,
    pub(crate) cache: PathBuf,
    /// `None`: log to stderr.
    pub(crate) log: Option<PathBuf>,
    /// The log file was named by the user (`--log-file`, `log_file=`): an existing one
    /// that is not private is refused, never chmod-ed.
    pub(crate) log_given: bool,
    /// The account's quota ledger (shared by its mounts on this machine); `None` for the
    /// demo, whose made-up account lives for one run.
    pub(crate) quota: Option<PathBuf>,
}

impl Places {
    pub(crate) fn resolve(c: &CommonMount, account: &str, default_log: bool) -> Result<Places, String> {
        let mut state: Option<PathBuf> = None;
        let mut state_dir = || -> Result<PathBuf, String> {
            if state.is_none() {
                state = Some(state_dir()?);
            }
            Ok(state.clone().unwrap_or_default())
        };
        let spool = match &c.spool_dir {
            Some(d) => {
                let spool = given_account_dir(d, "spool directory", account)?;
                // An earlier version kept every account's entries in the shared level.
                if let Ok(own) = intakeq_fs::core::spool::Spool::open(&spool) {
                    own.adopt_from(&given_dir(d, "spool directory")?, account);
                }
                spool
            }
            None => {
                let all = state_dir()?.join("spool");
                ensure_private_dir(&all).map_err(|e| format!("spool directory: {e}"))?;
                all.join(account)
            }
        };
        ensure_private_dir(&spool).map_err(|e| format!("spool directory: {e}"))?;
        let cache = match &c.cache_dir {
            Some(d) => given_account_dir(d, "cache directory", account)?,
            None => {
                let all = state_dir()?.join("cache");
                ensure_private_dir(&all).map_err(|e| format!("cache directory: {e}"))?;
                all.join(account)
            }
        };
        ensure_private_dir(&cache).map_err(|e| format!("cache directory: {e}"))?;
        let log = match &c.log_file {
            Some(f) => {
                if let Some(parent) = f.parent().filter(|p| !p.as_os_str().is_empty()) {
                    if std::fs::symlink_metadata(parent).is_err() {
                        ensure_private_dir(parent).map_err(|e| format!("log directory: {e}"))?;
                    }
                }
                // Checked now, before going to the background, so a refusal is seen.
                open_given_append(f).map_err(|e| format!("cannot open log file {}: {e}", f.display()))?;
                Some(f.clone())
            }
            None if default_log => Some(state_dir()?.join("intakeq-fs.log")),
            None => None,
        };
        Ok(Places {
            spool,
            cache,
            log,
            log_given: c.log_file.is_some(),
            quota: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<PathBuf> + 'a {
        move |v| vars.iter().find(|(k, _)| *k == v).map(|(_, x)| PathBuf::from(x))
    }

    #[test]
    fn a_root_mount_with_no_home_keeps_its_state_in_var_lib() {
        let none = || None;
        let run = || Some(PathBuf::from("/run/user/0"));
        assert_eq!(
            default_state_dir(env(&[]), 0, run).unwrap(),
            PathBuf::from("/var/lib/intakeq-fs"),
            "on disk, not in the run-time directory: staged uploads survive a reboot"
        );
        assert_eq!(
            default_state_dir(env(&[("STATE_DIRECTORY", "/var/lib/iq:/var/lib/other")]), 0, none).unwrap(),
            PathBuf::from("/var/lib/iq")
        );
        assert_eq!(
            default_state_dir(env(&[("STATE_DIRECTORY", "relative")]), 0, none).unwrap(),
            PathBuf::from("/var/lib/intakeq-fs")
        );
        assert_eq!(
            default_state_dir(env(&[("HOME", "/root")]), 0, none).unwrap(),
            PathBuf::from("/root/.local/state/intakeq-fs")
        );
        // Another user with no home: the private run-time directory, or nothing.
        assert_eq!(
            default_state_dir(env(&[("STATE_DIRECTORY", "/var/lib/iq")]), 1000, || Some(
                PathBuf::from("/run/user/1000")
            ))
            .unwrap(),
            PathBuf::from("/run/user/1000/intakeq-fs")
        );
        let err = default_state_dir(env(&[]), 1000, none).unwrap_err();
        assert!(err.contains("no private place"), "{err}");
    }
}
