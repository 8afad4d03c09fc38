//! Private local state: creating and re-checking the directories and files that hold
//! staged records, cached downloads and logs, so that no other local user can read
//! them, plant files in them or redirect them through a symlink.
//!
//! A private directory is a real directory (not a symlink) owned by the running user
//! with no group or other permission bits; it is created 0700 whatever the umask and
//! checked every time it is reused. A private file is opened with `O_NOFOLLOW` and
//! created 0600.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Why a location cannot be used: one line, naming the path and how to fix it.
fn refuse(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} is not private: {why}", path.display()),
    )
}

/// Check that `path` is a directory owned by us with no group/other bits, without
/// following a symlink at `path` itself.
pub fn check_private_dir(path: &Path) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    if md.file_type().is_symlink() {
        return Err(refuse(path, "it is a symbolic link"));
    }
    if !md.is_dir() {
        return Err(refuse(path, "it is not a directory"));
    }
    if md.uid() != euid() {
        return Err(refuse(
            path,
            &format!("it is owned by uid {}, not by this user", md.uid()),
        ));
    }
    if md.mode() & 0o077 != 0 {
        return Err(refuse(
            path,
            &format!(
                "its mode is {:o}; run `chmod 700 {}` if nobody else can have written to it",
                md.mode() & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}

/// An existing directory of ours that others could read but never write (an older
/// version created the state directory with the umask's 0755): made 0700. One that
/// others could write to is left alone and refused by [`check_private_dir`].
fn tighten_readable(path: &Path) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    if md.is_dir() && md.uid() == euid() && md.mode() & 0o077 != 0 && md.mode() & 0o022 == 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
        tracing::info!("{}: made private (mode 700)", path.display());
    }
    Ok(())
}

/// Create `path` (and missing parents, 0700) if needed, then check it is private.
/// An existing directory of ours that others can read but not write is made 0700; one
/// that others can write to (or of another owner, or a symlink) is refused, since
/// someone else may have put files in it.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(_) => tighten_readable(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if fs::symlink_metadata(parent).is_err() {
                    fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
                }
            }
            match fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => {
                    // The umask may have removed bits we need (0700 exactly).
                    fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    check_private_dir(path)
}

/// `<parent>/intakeq-fs-<uid>`, created private inside a directory the user named
/// (`--cache-dir`, `--spool-dir`): the given directory itself is never changed.
pub fn private_subdir(parent: &Path) -> io::Result<PathBuf> {
    if !fs::metadata(parent)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", parent.display()),
        ));
    }
    let dir = parent.join(format!("intakeq-fs-{}", euid()));
    ensure_private_dir(&dir)?;
    Ok(dir)
}

/// Open (creating 0600) a file for appending, refusing a symlink, a file of another
/// user and one writable by others; one of ours that others can only read (a log an
/// older version created 0644) is made 0600. For files in the mount's own private
/// directories.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    open_private(path, false, Existing::Tighten)
}

/// Open (creating 0600) a file the user named (`--log-file`, `log_file=`) for
/// appending: like [`open_private_append`], but an existing file that others can read
/// or write is refused, never chmod-ed. A root mount given `log_file=/etc/passwd`
/// must not make it 0600 (nor write to it).
pub fn open_given_append(path: &Path) -> io::Result<File> {
    open_private(path, false, Existing::Refuse)
}

/// What to do with an existing file of ours that is not private.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Made 0600 if others can only read it; refused if they can write it.
    Tighten,
    /// Refused, left as it is.
    Refuse,
}

/// [`open_private_append`], also open for reading (the quota ledger reads back what
/// every mount appended).
pub fn open_private_append_read(path: &Path) -> io::Result<File> {
    open_private(path, true, Existing::Tighten)
}

fn open_private(path: &Path, read: bool, existing: Existing) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(read)
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refuse(path, "it is a symbolic link")
            } else {
                e
            }
        })?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(refuse(path, "it is not a regular file"));
    }
    if md.uid() != euid() {
        return Err(refuse(
            path,
            &format!("it is owned by uid {}, not by this user", md.uid()),
        ));
    }
    if md.mode() & 0o077 != 0 {
        let mode = md.mode() & 0o777;
        if existing == Existing::Refuse || md.mode() & 0o022 != 0 {
            return Err(refuse(
                path,
                &format!("its mode is {mode:o} and it is not changed; give a new file, or `chmod 600` it first"),
            ));
        }
        // Our own file that others can only read: tighten it (an older version
        // created logs 0644).
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// The run-time directory (`$XDG_RUNTIME_DIR`) if it is set and private.
pub fn runtime_dir() -> Option<PathBuf> {
    let d = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())?);
    check_private_dir(&d).ok().map(|()| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn created_0700_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b/c");
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o000) };
        let r = ensure_private_dir(&d);
        unsafe { libc::umask(old) };
        r.unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        ensure_private_dir(&d).unwrap();
    }

    #[test]
    fn reused_directories_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&open).unwrap_err().to_string();
        assert!(err.contains("mode is 777") && err.contains("chmod 700"), "{err}");
        assert_eq!(
            mode(&open),
            0o777,
            "a directory others could write to is never chmod-ed"
        );

        let readable = tmp.path().join("readable");
        fs::create_dir(&readable).unwrap();
        fs::set_permissions(&readable, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&readable).unwrap();
        assert_eq!(mode(&readable), 0o700, "one only readable by others is tightened");

        let target = tmp.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");

        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(ensure_private_dir(&file)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
    }

    #[test]
    fn given_directories_get_a_private_subdirectory_and_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        let sub = private_subdir(tmp.path()).unwrap();
        assert_eq!(sub, tmp.path().join(format!("intakeq-fs-{}", euid())));
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(fs::symlink_metadata(tmp.path()).unwrap().mode() & 0o7777, 0o1777);
        assert_eq!(private_subdir(tmp.path()).unwrap(), sub, "reused");
    }

    #[test]
    fn private_files_refuse_symlinks_and_are_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("x.log");
        let old = unsafe { libc::umask(0o000) };
        let r = open_private_append(&log);
        unsafe { libc::umask(old) };
        r.unwrap();
        assert_eq!(mode(&log), 0o600);
        fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();
        open_private_append(&log).unwrap();
        assert_eq!(mode(&log), 0o600, "an old 0644 log is tightened");

        let given = tmp.path().join("given.log");
        fs::write(&given, b"someone's file\n").unwrap();
        fs::set_permissions(&given, fs::Permissions::from_mode(0o644)).unwrap();
        let err = open_given_append(&given).unwrap_err().to_string();
        assert!(err.contains("mode is 644"), "{err}");
        assert_eq!(mode(&given), 0o644, "a given file is never chmod-ed");
        assert_eq!(fs::read(&given).unwrap(), b"someone's file\n");
        fs::set_permissions(&given, fs::Permissions::from_mode(0o600)).unwrap();
        open_given_append(&given).unwrap();
        let fresh = tmp.path().join("fresh.log");
        open_given_append(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(open_private_append(&log).is_err(), "writable by others: refused");
        assert_eq!(mode(&log), 0o666);

        let link = tmp.path().join("link.log");
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), &link).unwrap();
        let err = open_private_append(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!tmp.path().join("elsewhere").exists());
    }
}
