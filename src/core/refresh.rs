//! Refresh behind the answer: listings served stale (the client list past
//! `client_list_ttl`, a client's files or the folders while the budget is under
//! pressure) are fetched again by one background loop at `Priority::Refresh`, so no
//! user's click waits for them and none of them spends the daily reserve.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::state::{fresh, Due, Flight};
use super::Core;
use crate::remote::{Priority, Remote, RemoteError};

/// How long the loop rests after the limiter said no (budget spent for now).
const BACKOFF: Duration = Duration::from_secs(60);

impl<R: Remote> Core<R> {
    /// Note that `d` was served stale; the refresher fetches it when a slot is free.
    pub(super) fn due(&self, d: Due) {
        if self.st().due.insert(d) {
            self.refresh_due.notify_one();
        }
    }

    /// Listings waiting to be refreshed (for a status display and tests).
    pub fn refreshes_due(&self) -> usize {
        self.st().due.len()
    }

    /// Fetch everything due once, at `Priority::Refresh`. Returns how many were
    /// fetched; what the limiter refused stays due.
    pub async fn refresh_due(&self) -> usize {
        let mut done = 0;
        loop {
            let Some(d) = self.st().due.first().copied() else { break };
            match self.refresh_one(d).await {
                Ok(()) => {
                    self.st().due.remove(&d);
                    done += 1;
                }
                Err(RemoteError::WouldWait { .. }) | Err(RemoteError::RateLimited) => break,
                Err(e) => {
                    tracing::debug!(?d, "refresh failed: {e}");
                    self.st().due.remove(&d);
                }
            }
        }
        done
    }

    async fn refresh_one(&self, d: Due) -> Result<(), RemoteError> {
        let since = Instant::now();
        match d {
            Due::ClientList => {
                let young = self
                    .st()
                    .client_list
                    .as_ref()
                    .is_some_and(|(_, at)| at.elapsed() < self.opts.client_list_ttl);
                if !young {
                    self.fetch_client_list(Priority::Refresh, Some(since)).await?;
                }
                Ok(())
            }
            Due::Folders => {
                let _g = self.flight(Flight::Folders).await;
                if matches!(&self.st().folders, Some((_, at)) if fresh(*at, self.opts.metadata_ttl, Some(since))) {
                    return Ok(());
                }
                let folders = self.remote.list_folders(Priority::Refresh).await?;
                self.store_folders(folders);
                Ok(())
            }
            Due::Files(c) => {
                let _g = self.flight(Flight::Files(c)).await;
                let is_fresh = self
                    .st()
                    .clients
                    .get(&c)
                    .and_then(|cs| cs.listing.as_ref())
                    .is_some_and(|l| fresh(l.at, self.opts.metadata_ttl, Some(since)));
                if !is_fresh {
                    let started = tokio::time::Instant::now();
                    let files = self.remote.list_files(c, Priority::Refresh).await?;
                    self.store_listing(c, files, started);
                }
                Ok(())
            }
        }
    }

    /// The refresher: runs until `stop` turns true (spawned beside `run_background`).
    pub async fn run_refresh(&self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = self.refresh_due.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // A refresh may wait a minute for a slot: stopping (unmount) never waits for
            // it. Listings are read-only, so an abandoned one leaves nothing half done.
            tokio::select! {
                _ = self.refresh_due() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if self.refreshes_due() > 0 {
                // The limiter refused: rest, then try again (woken early by nothing).
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                self.refresh_due.notify_one();
            }
        }
    }
}
