//! Crash resume: finishing at mount the uploads and deletes that an earlier run journaled
//! but did not confirm.

use super::metadata::Flight;
use super::spool::OwedDelete;
use super::Core;
use crate::remote::{Priority, Remote};

impl<R: Remote> Core<R> {
    /// Finish uploads that an earlier run staged but did not confirm (crash, failed
    /// upload, shutdown timeout). Returns how many landed.
    pub async fn resume_pending(&self) -> usize {
        let owed: Vec<OwedDelete> = self
            .spool
            .owed_deletes()
            .into_iter()
            .filter(|d| d.account == self.opts.account)
            .collect();
        {
            let mut st = self.st();
            for d in owed {
                st.owed_deletes.insert(d.id, d.client);
                st.invalidate_view(d.client);
            }
        }
        self.settle_owed_deletes(Priority::Background).await;
        let mut uploads = Vec::new();
        for (path, j) in self.spool.pending() {
            if j.account != self.opts.account {
                tracing::debug!("spool entry {} belongs to another account", path.display());
                continue;
            }
            if j.abandoned {
                // A rename given up: nothing is uploaded, and its copy, if it landed, is
                // deleted before anything else goes up under that name.
                self.st().abandoned.insert(path, j);
            } else {
                uploads.push((path, j));
            }
        }
        self.clean_all_abandoned().await;
        let mut landed = 0;
        for (path, j) in uploads {
            let _g = self.flight(Flight::Mutate(j.client)).await;
            if self
                .clean_abandoned(j.client, Some(&j.name), Priority::Background)
                .await
                .is_err()
            {
                tracing::warn!("cannot resume '{}' yet; it stays in the spool", j.name);
                continue;
            }
            tracing::info!("resuming staged upload of '{}' for client {}", j.name, j.client);
            // It may have landed before the crash: an exact byte match in the listing
            // means it did (the download is the one extra call this costs). With a
            // record of its attempts, the upload below finds their copies itself.
            let listed = match &j.attempts {
                Some(_) => None,
                None => Some(self.remote.list_files(j.client, Priority::Background).await),
            };
            let already = match listed {
                None => None,
                Some(Ok(files)) => {
                    let mut hit = None;
                    for f in files
                        .iter()
                        .filter(|f| f.name == j.name && f.size == j.size && !j.replaces.contains(&f.id))
                    {
                        if self.same_bytes(&f.id, f.size, &path).await {
                            hit = Some(f.id.clone());
                            break;
                        }
                    }
                    self.store_listing(j.client, files);
                    hit
                }
                Some(Err(e)) => {
                    tracing::warn!("cannot resume '{}': {e}; it stays in the spool", j.name);
                    continue;
                }
            };
            let (new_id, leftovers) = match already {
                Some(id) => (Some(id), Vec::new()),
                None => match self
                    .upload_confirmed(&j, &path, j.attempts.as_ref(), Priority::Background)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(
                            "resumed upload of '{}' failed: {}; it stays in the spool",
                            j.name,
                            e.error
                        );
                        continue;
                    }
                },
            };
            let doomed: Vec<String> = j.replaces.iter().chain(&leftovers).cloned().collect();
            self.delete_replaced(j.client, &doomed, new_id.as_deref(), Priority::Background)
                .await;
            self.spool.remove(&path);
            landed += 1;
        }
        landed
    }
}
