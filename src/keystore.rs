//! Where the API key may live besides the environment and a key file: a systemd
//! credential (`$CREDENTIALS_DIRECTORY/intakeq-api-key`, decrypted by systemd from
//! `LoadCredentialEncrypted=`) and the desktop's Secret Service (GNOME Keyring, KWallet,
//! KeePassXC), reached through libsecret's own client, `secret-tool`, with the key on
//! a pipe, never in argv. `intakeq-fs key set` / `key forget` live here too.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The credential's name in `LoadCredentialEncrypted=intakeq-api-key:…`.
pub const CREDENTIAL: &str = "intakeq-api-key";

/// The Secret Service item's attributes: `service=intakeq-fs key=<name>`.
const SERVICE: &str = "intakeq-fs";

/// The entry `key set` writes and `mount` reads when no name is given.
pub const DEFAULT_NAME: &str = "default";

/// The systemd credential's path, if the service was given one.
pub fn credential_path() -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let p = PathBuf::from(dir).join(CREDENTIAL);
    p.exists().then_some(p)
}

/// The key kept in the Secret Service under `name`: `Ok(None)` if there is none, or no
/// Secret Service to ask (no `secret-tool`, no session bus).
pub fn lookup(name: &str) -> Result<Option<String>, String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        return Ok(None);
    }
    let out = match Command::new("secret-tool")
        .args(["lookup", "service", SERVICE, "key", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot ask the Secret Service (secret-tool): {e}")),
    };
    // secret-tool exits 1 with no output when there is no such item.
    if !out.status.success() || out.stdout.is_empty() {
        return Ok(None);
    }
    let key = String::from_utf8(out.stdout)
        .map_err(|_| "the key kept in the Secret Service is not text".to_string())?
        .trim()
        .to_string();
    Ok(Some(key).filter(|k| !k.is_empty()))
}

/// Keep `key` in the Secret Service under `name` (replacing what was there).
pub fn store(name: &str, key: &str) -> Result<(), String> {
    let mut child = Command::new("secret-tool")
        .args([
            "store",
            "--label",
            &format!("intakeq-fs API key ({name})"),
            "service",
            SERVICE,
            "key",
            name,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool(&e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(key.as_bytes())
            .map_err(|e| format!("cannot hand the key to secret-tool: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("secret-tool: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "the Secret Service refused the key: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Remove the key kept under `name`. `Ok(false)`: there was none.
pub fn forget(name: &str) -> Result<bool, String> {
    if lookup(name)?.is_none() {
        return Ok(false);
    }
    let out = Command::new("secret-tool")
        .args(["clear", "service", SERVICE, "key", name])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing_tool(&e))?;
    match out.status.success() {
        true => Ok(true),
        false => Err(format!(
            "the Secret Service did not remove the key: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

fn missing_tool(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            "secret-tool is not installed (Debian: apt install libsecret-tools); it talks to the desktop's keyring"
                .into()
        }
        _ => format!("cannot run secret-tool: {e}"),
    }
}

/// The key typed at a terminal (echo off) or piped on stdin: its first line.
pub fn read_from_stdin() -> Result<String, String> {
    let tty = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
    let mut line = String::new();
    if tty {
        eprint!("IntakeQ API key (not shown): ");
        let _echo = EchoOff::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the key: {e}"))?;
        eprintln!();
    } else {
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut line)
            .map_err(|e| format!("cannot read the key: {e}"))?;
    }
    let key = line.lines().next().unwrap_or("").trim().to_string();
    match key.is_empty() {
        true => Err("no key given on stdin".into()),
        false => Ok(key),
    }
}

/// Terminal echo turned off until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: an all-zero termios is a valid value to be filled in; the calls only
        // touch it and the terminal on stdin.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
            }
        }
    }
}
