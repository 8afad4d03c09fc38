//! Who the mount's files belong to, as the kernel sees them: `--uid`, `--gid` and
//! `--umask` (a user or group given by name or number, resolved once at mount through
//! the system's user database), and the mode each kind of inode then shows.

use std::ffi::CString;

/// The owner, group and mode bits every inode of the mount shows. With
/// `default_permissions` the kernel checks each caller against them, so a gateway can
/// let a group of Linux accounts (the desks behind Samba) write without `force user`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// Bits taken away from 0777 (directories) and 0666 (files); `None`: the mount's
    /// own defaults (private 0700/0600, or 0755/0644 with `--allow-other`).
    pub umask: Option<u16>,
}

impl Owner {
    /// The mounting user and group, with the default modes.
    pub fn mounting_user() -> Owner {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Owner { uid, gid, umask: None }
    }

    /// From the command line's `--uid`, `--gid` and `--umask` (each optional).
    pub fn from_args(uid: Option<&str>, gid: Option<&str>, umask: Option<&str>) -> Result<Owner, String> {
        let mut o = Owner::mounting_user();
        if let Some(u) = uid {
            o.uid = user_id(u)?;
        }
        if let Some(g) = gid {
            o.gid = group_id(g)?;
        }
        if let Some(m) = umask {
            o.umask = Some(parse_umask(m)?);
        }
        Ok(o)
    }

    /// Whether any of the three was given (then the mount is meant to be shared).
    pub fn is_shared(&self) -> bool {
        let me = Owner::mounting_user();
        self.umask.is_some() || self.uid != me.uid || self.gid != me.gid
    }

    /// The mode bits an inode shows: with a umask, 0777 or 0666 less the umask (a
    /// symlink stays 0777, as on every Linux filesystem); without, the core's own.
    pub fn perm(&self, is_dir: bool, is_symlink: bool, core_perm: u16) -> u16 {
        match self.umask {
            None => core_perm,
            Some(_) if is_symlink => 0o777,
            Some(m) if is_dir => 0o777 & !m,
            Some(m) => 0o666 & !m,
        }
    }
}

/// An octal umask such as `0007`, `007` or `22`.
pub fn parse_umask(s: &str) -> Result<u16, String> {
    match u16::from_str_radix(s.trim(), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("umask {s:?}: give octal mode bits, e.g. 0007 or 022")),
    }
}

/// A user by number or by name.
pub fn user_id(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let c = CString::new(s).map_err(|_| format!("user {s:?}: not a valid name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be filled in.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives its use and `out`
    // points into `pw` or is null.
    let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return Err(format!("user {s:?}: no such user"));
    }
    Ok(pw.pw_uid)
}

/// A group by number or by name.
pub fn group_id(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let c = CString::new(s).map_err(|_| format!("group {s:?}: not a valid name"))?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: an all-zero group is a valid value to be filled in.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `user_id`.
    let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return Err(format!("group {s:?}: no such group"));
    }
    Ok(gr.gr_gid)
}

/// The name of user `uid`, if the user database has one (for the audit log).
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in `user_id`.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `user_id`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points at a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_umask_takes_bits_from_0777_and_0666() {
        let o = Owner {
            uid: 0,
            gid: 0,
            umask: Some(0o007),
        };
        assert_eq!(o.perm(true, false, 0o700), 0o770);
        assert_eq!(o.perm(false, false, 0o600), 0o660);
        assert_eq!(o.perm(false, true, 0o777), 0o777);
        let none = Owner {
            uid: 0,
            gid: 0,
            umask: None,
        };
        assert_eq!(none.perm(true, false, 0o700), 0o700);
    }

    #[test]
    fn umasks_are_octal_and_bounded() {
        assert_eq!(parse_umask("0007"), Ok(0o7));
        assert_eq!(parse_umask("022"), Ok(0o22));
        assert!(parse_umask("1777").is_err());
        assert!(parse_umask("9").is_err());
        assert!(parse_umask("").is_err());
    }

    #[test]
    fn users_and_groups_by_name_or_number() {
        assert_eq!(user_id("root"), Ok(0));
        assert_eq!(user_id("1234"), Ok(1234));
        assert_eq!(group_id("root"), Ok(0));
        assert!(user_id("no-such-user-iqfs").is_err());
        assert!(group_id("no-such-group-iqfs").is_err());
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
