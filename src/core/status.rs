//! Read-only counts for `intakeq-fs status`: uploads not yet on the server (with their
//! names, for the user's own terminal only; never logged), owed deletes and renames
//! given up. Reads `State` and the spool; changes nothing and makes no call.

use serde::{Deserialize, Serialize};

use super::life::Life;
use super::Core;
use crate::remote::{ClientId, Remote};

/// One upload the server does not have yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// The client it goes to.
    pub client: ClientId,
    /// The name it is uploaded under (PHI: shown to the user, never logged).
    pub name: String,
    /// Staged bytes.
    pub size: u64,
    /// `open` (still being written), `waiting` (closed, upload due), `uploading`,
    /// `failed` (retried in the background and at the next mount), `failed, given up`
    /// ([`GIVEN_UP`]: kept in the spool, never sent again), or `earlier run` (left in
    /// the spool by an earlier mount, not resumed yet).
    pub state: String,
}

/// The state of an upload the mount gave up on (`spool::MAX_SENDS` uploads that no
/// listing showed under its name): failed, kept in the spool, never retried.
pub const GIVEN_UP: &str = "failed, given up";

/// What the core has not finished.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreStatus {
    /// Uploads not confirmed yet, failed ones included.
    pub uploads: Vec<UploadStatus>,
    /// Uploads running right now (with their confirming listing and deletes).
    pub uploads_running: usize,
    /// Replaced files whose DELETE failed, to be deleted later.
    pub owed_deletes: usize,
    /// Renames given up whose copies may need cleaning up.
    pub renames_given_up: usize,
}

impl<R: Remote> Core<R> {
    /// A snapshot for the status file; no call, no change.
    pub fn status(&self) -> CoreStatus {
        let mut out = CoreStatus {
            uploads_running: self.uploads_in_flight(),
            ..CoreStatus::default()
        };
        let mine: Vec<std::path::PathBuf> = {
            let st = self.st();
            out.owed_deletes = st.owed_deletes.len();
            out.renames_given_up = st.abandoned.len();
            let mut paths = Vec::new();
            for w in st.writers().map(|(_, w)| w) {
                let w = w.lock().unwrap_or_else(|p| p.into_inner());
                paths.push(w.spool.path.clone());
                let state = match w.life() {
                    Life::Staged if w.handles > 0 => "open",
                    Life::Staged => "waiting",
                    Life::Uploading { .. } => "uploading",
                    Life::Failed { .. } => "failed",
                    Life::Unconfirmed { .. } => "uploaded, id not yet listed",
                    Life::GivenUp => GIVEN_UP,
                    Life::Landed { .. } | Life::Discarded | Life::Local => continue,
                };
                out.uploads.push(UploadStatus {
                    client: w.client,
                    name: w.name.clone(),
                    size: w.size,
                    state: state.to_string(),
                });
            }
            paths
        };
        for (path, j) in journals(self.spool.dir()) {
            if j.account == self.opts.account && !j.abandoned && !mine.contains(&path) {
                out.uploads.push(UploadStatus {
                    client: j.client,
                    name: j.name,
                    size: j.size,
                    state: match j.given_up {
                        true => GIVEN_UP,
                        false => "earlier run",
                    }
                    .to_string(),
                });
            }
        }
        out.uploads
            .sort_by(|a, b| (a.client, &a.name).cmp(&(b.client, &b.name)));
        out
    }
}

/// The spool's journal entries (staged path, entry), read quietly: the status is
/// refreshed every few seconds and must not repeat the resume's warnings.
fn journals(dir: &std::path::Path) -> Vec<(std::path::PathBuf, super::spool::Journal)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .filter_map(|p| {
            let j = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            Some((p.with_extension("data"), j))
        })
        .collect()
}
