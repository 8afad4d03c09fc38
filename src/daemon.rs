//! Going to the background with a readiness handshake: the parent waits on a pipe
//! until the child reports "mounted" or an error, and exits with that outcome, so a
//! script that runs `intakeq-fs mount` knows the drive is usable when it returns.

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
