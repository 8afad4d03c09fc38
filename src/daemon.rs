//! Going to the background with a readiness handshake: the parent waits on a pipe
//! until the child reports "mounted" or an error, and exits with that outcome, so a
//! script that runs `intakeq-fs mount` knows the drive is usable when it returns.
//! Also systemd's readiness protocol (`Type=notify`): one datagram to `$NOTIFY_SOCKET`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// The child's end: report once, then the pipe closes.
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// Foreground mode: nothing to report to.
    pub fn none() -> Readiness {
        Readiness { pipe: None }
    }

    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"OK\n");
        }
    }

    pub fn failed(&mut self, msg: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(format!("ERR {msg}\n").as_bytes());
        }
    }
}

/// Fork. In the parent this never returns: it exits 0 once the child says ready,
/// 1 with the child's message otherwise. In the child it returns the reporter,
/// after detaching from the terminal (new session, stdio on /dev/null).
/// Must be called before any thread is started.
pub fn daemonize() -> std::io::Result<Readiness> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fds were just created and are owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded at this point (documented precondition).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        drop(wr);
        let mut answer = String::new();
        let _ = File::from(rd).read_to_string(&mut answer);
        let answer = answer.trim();
        if answer == "OK" {
            std::process::exit(0);
        }
        let msg = answer
            .strip_prefix("ERR ")
            .unwrap_or("the mount process exited before the mount was ready");
        eprintln!("intakeq-fs: {msg}");
        std::process::exit(1);
    }
    drop(rd);
    // SAFETY: plain syscalls on fds we own.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(Readiness {
        pipe: Some(File::from(wr)),
    })
}

/// Tell systemd (`Type=notify`) how the service stands, e.g. `READY=1`: one datagram to
/// `$NOTIFY_SOCKET`, as `sd_notify(3)` sends it. Without that variable (not started by
/// systemd) it does nothing. Best effort: a failure is logged, never fatal.
pub fn notify_systemd(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = notify_to(&socket, state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Send `state` to the notify socket at `socket`: a path, or `@name` for an abstract
/// socket.
pub fn notify_to(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = socket.as_bytes();
    let addr = match bytes.first() {
        #[cfg(target_os = "linux")]
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..])?
        }
        Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(socket))?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract name",
            ))
        }
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn notify_sends_one_datagram_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1\nSTATUS=mounted").unwrap();
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=mounted");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn notify_reaches_an_abstract_socket_and_refuses_nonsense() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("intakeq-fs-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        let err = notify_to(std::ffi::OsStr::new("relative/path"), "READY=1").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
