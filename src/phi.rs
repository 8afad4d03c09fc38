//! Keeping patients' data (file and client names) out of the logs: log lines print
//! names through [`Name`], which shows a short tag keyed with a random per-install
//! secret (HMAC-SHA256) unless the mount was started with `--log-names` (documented as
//! exposing PHI). Without the secret a guessed name cannot be confirmed from a log.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use ring::rand::SecureRandom;

/// The key names in logs are tagged with: the install's secret once read
/// ([`use_secret_file`]), else a random one for this process.
static SECRET: OnceLock<ring::hmac::Key> = OnceLock::new();

fn random_secret() -> [u8; 32] {
    let mut b = [0u8; 32];
    // With no randomness at all the tags are still HMACs, just of a fixed key.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b
}

fn secret() -> &'static ring::hmac::Key {
    SECRET.get_or_init(|| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &random_secret()))
}

/// Use the install's secret in `path` (32 random bytes, 0600, ours, no symlink), made
/// on first use, so tags in logs match across runs. Call once at start-up, before any
/// name is logged; a later call changes nothing.
pub fn use_secret_file(path: &Path) -> std::io::Result<()> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    let mut f = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let made = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path);
            match made {
                Ok(mut w) => {
                    w.write_all(&random_secret())?;
                    w.sync_all()?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {} // another mount made it
                Err(e) => return Err(e),
            }
            open()?
        }
        Err(e) => return Err(e),
    };
    let md = f.metadata()?;
    if !md.is_file() || md.uid() != crate::private_dir::euid() || md.mode() & 0o077 != 0 {
        return Err(std::io::Error::other("the name secret is not a private file of ours"));
    }
    let mut b = Vec::new();
    Read::by_ref(&mut f).take(64).read_to_end(&mut b)?;
    if b.len() < 32 {
        return Err(std::io::Error::other("the name secret is too short"));
    }
    let _ = SECRET.set(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b));
    Ok(())
}

static SHOW_NAMES: AtomicBool = AtomicBool::new(false);

/// Set once at start-up from the command line: `true` lets logs print names.
pub fn set_show_names(show: bool) {
    SHOW_NAMES.store(show, Ordering::Relaxed);
}

/// Whether logs may print file and client names.
pub fn show_names() -> bool {
    SHOW_NAMES.load(Ordering::Relaxed)
}

/// Displays a file/client name for logs: the name itself only when [`show_names`] is
/// on, else `name#` and 8 hex digits of an HMAC of the name under the install's secret,
/// so two log lines about one file can be matched without revealing it, and a guessed
/// name cannot be confirmed without the secret.
pub struct Name<'a>(pub &'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if show_names() {
            write!(f, "'{}'", self.0)
        } else {
            write!(f, "name#{}", hash8(self.0))
        }
    }
}

impl Name<'_> {
    /// `name#` and the keyed hash, whatever [`show_names`] says (for the audit log).
    pub fn hashed(&self) -> String {
        format!("name#{}", hash8(self.0))
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// 8 hex digits of HMAC-SHA256 of `s` under the secret.
fn hash8(s: &str) -> String {
    let tag = ring::hmac::sign(secret(), s.as_bytes());
    tag.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, because the switch is process-wide and tests run in parallel.
    #[test]
    fn names_are_hashed_unless_shown() {
        let hidden = Name("Jane Doe - psychiatric evaluation.pdf").to_string();
        assert!(!hidden.contains("Jane"), "{hidden}");
        assert!(
            hidden.starts_with("name#") && hidden.len() == "name#".len() + 8,
            "{hidden}"
        );
        assert!(hidden["name#".len()..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            hidden,
            Name("Jane Doe - psychiatric evaluation.pdf").to_string(),
            "stable"
        );
        assert_ne!(hidden, Name("Jane Doe - psychiatric evaluation.pdf ").to_string());
        // Keyed: the same name under another secret gets another tag.
        let other = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[9u8; 32]);
        let tag = ring::hmac::sign(&other, b"Jane Doe - psychiatric evaluation.pdf");
        let other8: String = tag.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(hidden["name#".len()..], other8);
        set_show_names(true);
        assert_eq!(Name("a.pdf").to_string(), "'a.pdf'");
        set_show_names(false);
        assert!(!show_names());
    }

    #[test]
    fn the_install_secret_is_made_once_private_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("name-key");
        use_secret_file(&p).unwrap();
        let first = std::fs::read(&p).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        use_secret_file(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), first, "kept, not remade");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(use_secret_file(&link).is_err(), "never through a symlink");
    }
}
