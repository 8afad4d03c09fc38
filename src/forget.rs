//! `intakeq-fs forget`: remove everything this machine keeps for one account (kept
//! listings, the content cache, the quota ledger), except uploads not yet sent, which
//! are listed and kept unless `--discard-uploads` is given.

use std::path::{Path, PathBuf};

use crate::core::spool::{self, Spool};

/// `forget`'s command line.
#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// The account's API address (as given to `mount`); INTAKEQ_BASE_URL, else IntakeQ's.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Read the key from this file instead of INTAKEQ_API_KEY (the account is chosen
    /// by base URL and key, as for `mount`).
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// The `--spool-dir` the account was mounted with, if any.
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// The `--cache-dir` the account was mounted with, if any.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// The `--listings-dir` the account was mounted with, if any.
    #[arg(long)]
    pub listings_dir: Option<PathBuf>,
    /// Also discard uploads not yet sent (listed first). Without it they are kept and
    /// `forget` removes nothing else either.
    #[arg(long)]
    pub discard_uploads: bool,
}

/// The account's places, resolved as `mount` resolves them.
#[derive(Debug)]
pub struct Places {
    /// Its spool (staged uploads and their journal).
    pub spool: PathBuf,
    /// Its content cache directory.
    pub cache: PathBuf,
    /// Its kept listings, if any place is known.
    pub listings: Option<PathBuf>,
    /// Its quota ledger, if any place is known.
    pub quota: Option<PathBuf>,
}

/// Remove what `places` holds. Refused while a mount of the account runs (its spool is
/// locked), and while uploads wait unless `discard_uploads`. Returns the report to print.
pub fn forget(places: &Places, account: &str, discard_uploads: bool) -> Result<String, String> {
    let mut report = String::new();
    if places.spool.is_dir() {
        // Held to the end: no mount of the account may start meanwhile.
        let _lock = spool::lock(&places.spool).map_err(|e| format!("{e}; unmount it first"))?;
        let s = Spool::open(&places.spool).map_err(|e| format!("spool {}: {e}", places.spool.display()))?;
        let pending: Vec<_> = s.pending().into_iter().filter(|(_, j)| j.account == account).collect();
        let orphans = s.orphans();
        if !pending.is_empty() || !orphans.is_empty() {
            report.push_str("uploads not yet sent:\n");
            for (_, j) in &pending {
                let name: String = j
                    .name
                    .chars()
                    .map(|c| {
                        if c.is_control() {
                            c.escape_default().to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                report.push_str(&format!("  client {}: {} ({} bytes)\n", j.client, name, j.size));
            }
            if !orphans.is_empty() {
                report.push_str(&format!("  {} file(s) written but never closed\n", orphans.len()));
            }
            if !discard_uploads {
                return Err(format!(
                    "{report}nothing was removed: mount the account to send them, or run `intakeq-fs forget --discard-uploads` to lose them"
                ));
            }
        }
        drop(s);
        remove_dir(&places.spool, "spool (staged uploads)", &mut report);
    }
    remove_dir(&places.cache, "content cache", &mut report);
    if let Some(l) = &places.listings {
        remove_dir(l, "kept listings (client and file names)", &mut report);
    }
    if let Some(q) = &places.quota {
        if std::fs::symlink_metadata(q).is_ok() {
            match std::fs::remove_file(q) {
                Ok(()) => report.push_str(&format!("removed the quota ledger {}\n", q.display())),
                Err(e) => report.push_str(&format!("cannot remove {}: {e}\n", q.display())),
            }
        }
    }
    if report.is_empty() {
        report.push_str("nothing was kept for this account here\n");
    }
    Ok(report)
}

/// Remove `dir` (ours, not a symlink) and say so in `report`.
fn remove_dir(dir: &Path, what: &str, report: &mut String) {
    match std::fs::symlink_metadata(dir) {
        Ok(md) if md.is_dir() => match std::fs::remove_dir_all(dir) {
            Ok(()) => report.push_str(&format!("removed the {what}: {}\n", dir.display())),
            Err(e) => report.push_str(&format!("cannot remove the {what} {}: {e}\n", dir.display())),
        },
        Ok(_) => report.push_str(&format!("left {} alone: not a directory\n", dir.display())),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::spool::Journal;

    fn places(root: &Path) -> Places {
        Places {
            spool: root.join("spool"),
            cache: root.join("cache"),
            listings: Some(root.join("listings")),
            quota: Some(root.join("quota")),
        }
    }

    fn kept(root: &Path) {
        for d in ["cache", "listings"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(root.join(d).join("f"), "x").unwrap();
        }
        std::fs::write(root.join("quota"), "1\n").unwrap();
        Spool::open(&root.join("spool")).unwrap();
    }

    #[test]
    fn everything_kept_for_the_account_goes() {
        let tmp = tempfile::tempdir().unwrap();
        kept(tmp.path());
        let report = forget(&places(tmp.path()), "acct", false).unwrap();
        for gone in ["spool", "cache", "listings", "quota"] {
            assert!(!tmp.path().join(gone).exists(), "{gone}: {report}");
        }
        assert!(report.contains("kept listings"), "{report}");
    }

    #[tokio::test]
    async fn uploads_not_yet_sent_are_listed_and_kept_unless_discarded() {
        let tmp = tempfile::tempdir().unwrap();
        kept(tmp.path());
        let s = Spool::open(&tmp.path().join("spool")).unwrap();
        let sf = s.create().unwrap();
        let j = Journal {
            account: "acct".into(),
            client: 1001,
            name: "intake\r\n.pdf".into(),
            replaces: vec![],
            size: 4,
            attempts: None,
            abandoned: false,
            sends: 0,
            given_up: false,
        };
        s.commit(&sf.file, &sf.path, &j).await.unwrap();
        let err = forget(&places(tmp.path()), "acct", false).unwrap_err();
        assert!(err.contains("client 1001: intake\\r\\n.pdf (4 bytes)"), "{err}");
        assert!(err.contains("nothing was removed"), "{err}");
        for kept in ["spool", "cache", "listings", "quota"] {
            assert!(tmp.path().join(kept).exists(), "{kept}");
        }
        let report = forget(&places(tmp.path()), "acct", true).unwrap();
        assert!(report.contains("client 1001"), "listed first: {report}");
        assert!(!tmp.path().join("spool").exists());
    }
}
