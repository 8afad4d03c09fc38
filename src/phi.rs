//! Keeping patients' data (file and client names) out of the logs: log lines print
//! names through [`Name`], which shows a short stable hash unless the mount was
//! started with `--log-names` (documented as exposing PHI).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

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
/// on, else `name#` and 8 hex digits of a stable hash (FNV-1a) of the name, so two log
/// lines about one file can be matched without revealing it.
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

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// 8 hex digits of FNV-1a (32 bit fold of the 64 bit hash): stable across releases.
fn hash8(s: &str) -> String {
    let h = crate::core::names::fnv1a(s.as_bytes());
    format!("{:08x}", (h ^ (h >> 32)) as u32)
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
        set_show_names(true);
        assert_eq!(Name("a.pdf").to_string(), "'a.pdf'");
        set_show_names(false);
        assert!(!show_names());
    }
}
