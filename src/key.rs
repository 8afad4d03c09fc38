//! Reading the API key, from the first of: `--api-key-file` (a private regular file of
//! the mounting user or root, reached through no symlink and no directory another user
//! could write to), `INTAKEQ_API_KEY` (wiped from the environment block once read), a
//! systemd credential (`$CREDENTIALS_DIRECTORY/intakeq-api-key`), the desktop's Secret
//! Service (`intakeq-fs key set`). README, "Every way to give the key", ranks them.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The API key, from the first source that has one: `--api-key-file` if given, else
/// `INTAKEQ_API_KEY`, else the systemd credential, else the Secret Service's entry
/// `default`. The variable's bytes are wiped from the process's environment block and
/// it is removed, so neither `/proc/<pid>/environ` nor a child process shows it. Called
/// while single-threaded.
pub fn read_key(file: Option<&Path>) -> Result<String, String> {
    let env = std::env::var("INTAKEQ_API_KEY").unwrap_or_default().trim().to_string();
    crate::harden::wipe_env_var("INTAKEQ_API_KEY");
    let key = match file {
        Some(p) => read_key_file(p)?,
        None if !env.is_empty() => env,
        None => match crate::keystore::credential_path() {
            // systemd made it (0400, ours, in the service's private credentials
            // directory): checked like any key file all the same.
            Some(p) => read_key_file(&p)?,
            None => crate::keystore::lookup(crate::keystore::DEFAULT_NAME)?.unwrap_or_default(),
        },
    };
    if key.is_empty() {
        return Err(
            "no API key: give it with `intakeq-fs key set` (desktop keyring), a systemd credential \
             (LoadCredentialEncrypted=intakeq-api-key), INTAKEQ_API_KEY, or --api-key-file FILE"
                .into(),
        );
    }
    Ok(key)
}

/// The first line of key file `p`, after checking where it lives and who owns it:
/// anyone who could replace the file (its owner, or whoever may write to a directory on
/// its path) could swap in another account's key, and staff uploads would go there.
fn read_key_file(p: &Path) -> Result<String, String> {
    let shown = p.display();
    check_key_path(p).map_err(|why| format!("API key file {shown}: {why}"))?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!("API key file {shown}: it is a symlink; name the file itself"),
            _ => format!("cannot read API key file {shown}: {e}"),
        })?;
    let md = f
        .metadata()
        .map_err(|e| format!("cannot read API key file {shown}: {e}"))?;
    if !md.is_file() {
        return Err(format!("API key file {shown}: not a regular file"));
    }
    let me = crate::private_dir::euid();
    if md.uid() != me && md.uid() != 0 {
        return Err(format!(
            "API key file {shown} belongs to user {}: it must belong to the mounting user or root",
            md.uid()
        ));
    }
    if md.mode() & 0o077 != 0 {
        return Err(format!(
            "API key file {shown} is accessible by group or others (mode {:o}); fix it with `chmod 600 {shown}`",
            md.mode() & 0o777,
        ));
    }
    let mut text = String::new();
    f.take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read API key file {shown}: {e}"))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Every directory on the way to `p` must be a real directory (no symlink) owned by the
/// mounting user or root, and not writable by group or others unless it is sticky (as
/// `/tmp` is: there nobody else may replace our file).
fn check_key_path(p: &Path) -> Result<(), String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot tell where it is: {e}"))?
            .join(p)
    };
    let me = crate::private_dir::euid();
    let mut at = PathBuf::new();
    let parts: Vec<Component> = abs.components().collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        let md = match std::fs::symlink_metadata(&at) {
            Ok(md) => md,
            Err(e) if last => return Err(format!("cannot read it: {e}")),
            Err(e) => return Err(format!("cannot check {}: {e}", at.display())),
        };
        if md.file_type().is_symlink() {
            return Err(format!(
                "{} is a symlink; name the file by a path without symlinks",
                at.display()
            ));
        }
        if last {
            break;
        }
        let sticky = md.mode() & libc::S_ISVTX != 0;
        if md.uid() != me && md.uid() != 0 {
            return Err(format!("the directory {} belongs to another user", at.display()));
        }
        if md.mode() & 0o022 != 0 && !sticky {
            return Err(format!(
                "the directory {} may be written by group or others, who could replace the key",
                at.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_in(dir: &Path) -> PathBuf {
        let p = dir.join("key");
        std::fs::write(&p, "the-key\nsecond line\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn private_tmp() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn a_private_key_file_gives_its_first_line() {
        let d = private_tmp();
        assert_eq!(read_key_file(&key_in(d.path())).unwrap(), "the-key");
    }

    #[test]
    fn a_key_file_reached_through_a_symlink_is_refused() {
        let d = private_tmp();
        let key = key_in(d.path());
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        assert!(read_key_file(&link).unwrap_err().contains("symlink"));
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let dirlink = d.path().join("dirlink");
        std::os::unix::fs::symlink(&sub, &dirlink).unwrap();
        key_in(&sub);
        let err = read_key_file(&dirlink.join("key")).unwrap_err();
        assert!(err.contains("symlink"), "{err}");
    }

    #[test]
    fn a_key_file_in_a_directory_others_can_write_is_refused_unless_sticky() {
        let d = private_tmp();
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let key = key_in(&open);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = read_key_file(&key).unwrap_err();
        assert!(err.contains("may be written by group or others"), "{err}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(read_key_file(&key).unwrap(), "the-key", "a sticky directory is fine");
    }

    #[test]
    fn a_key_file_of_another_user_is_refused() {
        let d = private_tmp();
        let key = key_in(d.path());
        if crate::private_dir::euid() != 0 {
            return; // only root can give a file away; CI runs as root
        }
        std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
        let err = read_key_file(&key).unwrap_err();
        assert!(err.contains("belongs to user 65534"), "{err}");
    }

    #[test]
    fn a_readable_key_file_is_refused() {
        let d = private_tmp();
        let key = key_in(d.path());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_key_file(&key).unwrap_err().contains("chmod 600"));
    }
}
