//! Making the API key hard to steal from a running mount: the process is not dumpable
//! (no ptrace by the same user, no core file, `/proc/<pid>/mem` and `environ` closed to
//! others), core dumps are off, and the key's bytes are wiped from the environment block
//! the process started with (what `/proc/<pid>/environ` shows).

use std::ffi::CString;

/// Not dumpable, no core files. Call first thing (before the key is read) and again in
/// a forked child. Failures are returned for the log; they do not stop the mount.
pub fn harden_process() -> Result<(), String> {
    // SAFETY: plain syscalls with constant arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(format!(
                "cannot make the process non-dumpable: {}",
                std::io::Error::last_os_error()
            ));
        }
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::setrlimit(libc::RLIMIT_CORE, &none) != 0 {
            return Err(format!(
                "cannot disable core dumps: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Remove `name` from the environment, then overwrite its `NAME=value` string in place
/// with zero bytes. The string is the one in the block the kernel set up at exec (what
/// `/proc/<pid>/environ` reads) as long as nothing called `setenv` on `name` before.
/// Must be called while the process has a single thread.
pub fn wipe_env_var(name: &str) {
    let Ok(cname) = CString::new(name) else { return };
    // SAFETY: single-threaded (documented precondition), so nothing changes the
    // environment meanwhile. getenv returns a pointer to the value inside the
    // environment string `NAME=value\0`; the bytes before it are checked to be `NAME=`
    // before the whole string is overwritten (after unsetenv has dropped the pointer to
    // it, so nothing reads it any more). unsetenv never frees such strings.
    unsafe {
        let value = libc::getenv(cname.as_ptr());
        let entry = if value.is_null() {
            None
        } else {
            let len = libc::strlen(value);
            let start = value.sub(name.len() + 1);
            let prefix = std::slice::from_raw_parts(start as *const u8, name.len() + 1);
            (prefix[..name.len()] == *name.as_bytes() && prefix[name.len()] == b'=')
                .then_some((start, name.len() + 1 + len))
                .or(Some((value, len)))
        };
        // Edition 2021: a safe fn; called while single-threaded.
        std::env::remove_var(name);
        if let Some((start, len)) = entry {
            std::ptr::write_bytes(start, 0, len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `f` in a forked child (so the test process keeps its own settings) and
    /// return its exit code.
    fn in_child(f: fn() -> i32) -> i32 {
        // SAFETY: the child only makes syscalls and exits with _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::_exit(f());
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status));
            libc::WEXITSTATUS(status)
        }
    }

    #[test]
    fn hardened_process_is_not_dumpable_and_has_no_core_limit() {
        let code = in_child(|| {
            if harden_process().is_err() {
                return 10;
            }
            // SAFETY: plain syscalls.
            unsafe {
                let dumpable = libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0);
                let mut lim = libc::rlimit {
                    rlim_cur: 1,
                    rlim_max: 1,
                };
                if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) != 0 {
                    return 11;
                }
                if dumpable == 0 && lim.rlim_cur == 0 && lim.rlim_max == 0 {
                    0
                } else {
                    12
                }
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn a_wiped_variable_leaves_no_trace_in_the_environment_block() {
        // In a child started with a known variable, so the block is its own.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "harden::tests::wipe_child",
                "--nocapture",
                "--include-ignored",
            ])
            .env("INTAKEQ_WIPE_TEST", "s3cret-value-Z")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("WIPED-OK"), "{text}");
    }

    /// Runs only inside the child started by the test above.
    #[test]
    #[ignore]
    fn wipe_child() {
        if std::env::var_os("INTAKEQ_WIPE_TEST").is_none() {
            return;
        }
        wipe_env_var("INTAKEQ_WIPE_TEST");
        let block = std::fs::read("/proc/self/environ").unwrap();
        let block = String::from_utf8_lossy(&block);
        assert!(!block.contains("s3cret-value-Z"), "{block}");
        assert!(!block.contains("INTAKEQ_WIPE_TEST"), "{block}");
        assert!(std::env::var_os("INTAKEQ_WIPE_TEST").is_none());
        println!("WIPED-OK");
    }
}
